"""Finding out what the server did: reconciling ambiguous v7 joins, and status sweeps.

A v7 join whose answer was lost may or may not have created an agent, and the agent's
``name`` (the server's dedupe key) does not appear in list or query answers. So the
session lists the channel for agents created since the join was sent (less a clock
slack) that no task of this session knows, and adopts the earliest. The choice is
documented in the README: an agent some other system started in the same channel in
that window could be adopted by mistake; run one name per channel to avoid it.

Sweeps refresh many v7 agents with the list endpoint, one state at a time, page by
page, and leave to single queries only what the lists did not answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from agora_stt_async import state as sm
from agora_stt_async._enums import AgentStatus
from agora_stt_async._errors import APIError, ResponseError, TransportError

if TYPE_CHECKING:
    from agora_stt_async._handle import _Entry
    from agora_stt_async._session import Session

logger: Final = logging.getLogger("agora_stt_async.session")

CLOCK_SLACK_S: Final = 300
"""How far apart the local clock and the server's may be when comparing a join's send
time with an agent's ``create_ts`` (seconds)."""

_RECONCILE_STATES: Final = (AgentStatus.STARTING, AgentStatus.RUNNING, AgentStatus.RECOVERING)
# A lost join's agent is usually STARTING or RUNNING; RECOVERING is listed too so a
# faulting agent is not mistaken for "nothing was created".

_SWEEP_STATES: Final = (AgentStatus.RUNNING, AgentStatus.STARTING, AgentStatus.STOPPING)


async def reconcile_v7(session: Session, entry: _Entry, action: sm.Reconcile) -> sm.AnyEvent:
    """The answer to a ``Reconcile`` action: the agent the join created, or nothing."""
    since = int(action.since) - CLOCK_SLACK_S
    # One reconcile per channel at a time: two lost joins in one channel must not both
    # adopt the same agent.
    async with session._channel_lock(action.channel):
        known = session._known_server_ids()
        candidates = []
        try:
            for status in _RECONCILE_STATES:
                candidates.extend(
                    [
                        agent
                        async for agent in session.client.agents.list(
                            channel=action.channel,
                            state=status,
                            from_time=max(0, since),
                            page_size=session.list_page_size,
                        )
                        if agent.agent_id not in known and (agent.create_ts or since) >= since
                    ]
                )
        except (TransportError, APIError, ResponseError) as error:
            return sm.ReconcileFailed(message=str(error))
        if not candidates:
            return sm.ReconcileFoundNothing()
        # One list per state: an agent that moved from STARTING to RUNNING between two
        # lists is in both. Count it once (the soak logged "2 unknown agents" for one).
        candidates = list({agent.agent_id: agent for agent in candidates}.values())
        candidates.sort(key=lambda agent: (agent.create_ts or 0, agent.agent_id))
        chosen = candidates[0]
        if len(candidates) > 1:
            logger.warning(
                "task %r: %d unknown agents in channel %r since the join; adopting %s",
                entry.record.key,
                len(candidates),
                action.channel,
                chosen.agent_id,
            )
        session._claim(chosen.agent_id, entry)
        return sm.ReconcileFound(
            server_id=chosen.agent_id, status=chosen.status, create_ts=chosen.create_ts
        )


async def refresh_v7(session: Session, entries: Sequence[_Entry]) -> list[_Entry]:
    """Update ``entries`` from list pages; return those the lists did not answer."""
    by_id = {entry.record.agent_id: entry for entry in entries if entry.record.agent_id}
    oldest = min(
        (entry.record.create_ts or int(entry.record.created_at)) for entry in by_id.values()
    )
    from_time = max(0, oldest - CLOCK_SLACK_S)
    remaining = dict(by_id)
    for status in _SWEEP_STATES:
        if not remaining:
            break
        if status is not AgentStatus.RUNNING and not any(
            entry.record.agent_status in (status, None) or status is AgentStatus.STOPPING
            for entry in remaining.values()
        ):
            continue
        try:
            async for page in session.client.agents.list(
                state=status, from_time=from_time, page_size=session.list_page_size
            ).pages():
                now = session._clock.now()
                for agent in page.items:
                    entry = remaining.pop(agent.agent_id, None)
                    if entry is not None:
                        await session._observe(
                            entry, sm.StatusObserved(status=agent.status, observed_at=now)
                        )
                if not remaining:
                    # Every tracked agent is found: the rest of the App ID's agents (other
                    # sessions', other systems') are not ours; don't page through them.
                    break
        except (TransportError, APIError, ResponseError) as error:
            logger.info("list sweep (%s) failed: %s", status, error)
            break
        # Few left: single queries are cheaper than listing another state.
        if len(remaining) < 4:
            break
    return list(remaining.values())
