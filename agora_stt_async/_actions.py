"""The session's actions that talk to the server: one function per ``state`` action.

Each sends one kind of request through the ``AsyncClient`` and turns its outcome into
the event the state machine expects as the answer (see each action's docstring in
``state``). Errors become events here, so the machine, not the I/O code, decides.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from agora_stt_async import state as sm
from agora_stt_async._client import AsyncClient
from agora_stt_async._clock import Clock
from agora_stt_async._enums import AgentStatus, ApiGeneration, LegacyTaskStatus
from agora_stt_async._errors import (
    AgoraSTTError,
    APIError,
    BuilderTokenError,
    BuilderTokenExpiredError,
    ConflictError,
    ConnectError,
    NotFoundError,
    ResponseError,
    TaskAlreadyStartedError,
    TransportError,
    UsageError,
)
from agora_stt_async._models import JoinRequest, LegacyStartRequest

if TYPE_CHECKING:
    from agora_stt_async._handle import _Entry

logger: Final = logging.getLogger("agora_stt_async.session")

ServerStatus = AgentStatus | LegacyTaskStatus
ACQUIRE_ATTEMPTS: Final = 3

# What a request can fail with once sent: no complete answer, a refusal, or a success
# status whose body breaks the spec (ResponseError: the request did take effect).
_FAILURES: Final = (TransportError, APIError, ResponseError)


async def acquire(
    client: AsyncClient, clock: Clock, entry: _Entry, action: sm.AcquireToken
) -> sm.AnyEvent:
    # Tokens cost nothing and an unused one expires by itself: an acquire whose
    # answer was lost is simply asked again.
    error: AgoraSTTError | None = None
    for _ in range(ACQUIRE_ATTEMPTS):
        acquired_at = clock.now()
        try:
            token = await client.legacy.acquire(action.instance_id)
        except _FAILURES as exc:
            error = exc
            if isinstance(exc, APIError) and not exc.retryable:
                break
            continue
        return sm.TokenAcquired(
            token_name=token.token_name, acquired_at=acquired_at, instance_id=token.instance_id
        )
    assert error is not None
    entry.error = error
    return sm.StartRejected(error_kind=type(error).__name__, message=str(error))


async def join(client: AsyncClient, entry: _Entry) -> sm.AnyEvent:
    config = entry.config
    if not isinstance(config, JoinRequest):
        return sm.StartRejected(
            error_kind="UsageError", message="no join request is known for this task"
        )
    try:
        agent = await client.agents.join(config)
    except ConflictError as error:
        return sm.StartConflicted(server_id=None, message=str(error))
    except _FAILURES as error:
        return _start_failure(entry, error)
    return sm.StartSucceeded(
        server_id=agent.agent_id, status=agent.status, create_ts=agent.create_ts
    )


async def legacy_start(
    client: AsyncClient, clock: Clock, entry: _Entry, action: sm.SendStart
) -> sm.AnyEvent:
    config = entry.config
    if not isinstance(config, LegacyStartRequest):
        return sm.StartRejected(
            error_kind="UsageError", message="no start request is known for this task"
        )
    if action.not_after is not None and clock.now() >= action.not_after:
        return sm.TokenExpired(message="the token's window passed before the start was sent")
    try:
        task = await client.legacy.start(action.token_name, config)
    except TaskAlreadyStartedError as error:
        return sm.StartConflicted(server_id=error.task_id, message=str(error))
    except ConflictError as error:
        return sm.StartConflicted(server_id=None, message=str(error))
    except BuilderTokenExpiredError as error:
        return sm.TokenExpired(message=str(error))
    except BuilderTokenError as error:
        entry.error = error
        return sm.StartRejected(error_kind=type(error).__name__, message=str(error))
    except _FAILURES as error:
        return _start_failure(entry, error)
    return sm.StartSucceeded(server_id=task.task_id, status=task.status, create_ts=task.create_ts)


def _start_failure(entry: _Entry, error: TransportError | APIError | ResponseError) -> sm.AnyEvent:
    if isinstance(error, ConnectError):
        # Never reached the server (after the client's own retries): nothing exists.
        entry.error = error
        return sm.StartRejected(error_kind=type(error).__name__, message=str(error))
    if (
        isinstance(error, (TransportError, ResponseError))  # a 200 we cannot read: it ran
        or error.retryable
        or error.status_code >= 500
        or 200 < error.status_code < 300  # 201/206 (spec §6.1): a task may exist
    ):
        # May have been processed: find out instead of guessing.
        return sm.StartOutcomeUnknown(message=str(error))
    entry.error = error
    return sm.StartRejected(error_kind=type(error).__name__, message=str(error))


async def query(
    client: AsyncClient, clock: Clock, entry: _Entry, action: sm.SendQuery
) -> sm.AnyEvent | None:
    try:
        if entry.record.api is ApiGeneration.V7:
            agent = await client.agents.get(action.server_id)
            return sm.StatusObserved(status=agent.status, observed_at=clock.now())
        if action.token_name is None:
            return None
        task = await client.legacy.query(action.server_id, action.token_name)
        return sm.StatusObserved(status=task.status, observed_at=clock.now())
    except NotFoundError as error:
        return sm.NotFoundObserved(message=str(error))
    except _FAILURES as error:
        logger.info("query of task %r failed: %s", entry.record.key, error)
        return None


async def update(client: AsyncClient, entry: _Entry, action: sm.SendUpdate) -> sm.AnyEvent:
    body = entry.pending_update
    if body is None:
        return sm.UpdateFailed(sequence_id=action.sequence_id, message="no update body")
    try:
        if entry.record.api is ApiGeneration.V7:
            agent = await client.agents.update(
                action.server_id, body, sequence_id=action.sequence_id
            )
            status: ServerStatus = agent.status
        else:
            if action.token_name is None:
                raise UsageError("a legacy update needs the task's builder token")
            task = await client.legacy.update(
                action.server_id, action.token_name, body, sequence_id=action.sequence_id
            )
            status = task.status
    except (*_FAILURES, UsageError) as error:
        entry.last_update = error
        return sm.UpdateFailed(sequence_id=action.sequence_id, message=str(error))
    return sm.UpdateSucceeded(sequence_id=action.sequence_id, status=status)


async def leave(client: AsyncClient, action: sm.SendLeave) -> sm.AnyEvent:
    try:
        await client.agents.leave(action.agent_id)
    except NotFoundError as error:
        return sm.NotFoundObserved(message=str(error))
    except _FAILURES as error:
        return sm.StopFailed(message=str(error), maybe_processed=_maybe_processed(error))
    return sm.StopSucceeded()


async def legacy_stop(client: AsyncClient, action: sm.SendStop) -> sm.AnyEvent:
    try:
        await client.legacy.stop(action.task_id, action.token_name)
    except NotFoundError as error:
        return sm.NotFoundObserved(message=str(error))
    except ConflictError:
        return sm.StopSucceeded()  # spec §5.5: a repeated stop answers code 49
    except _FAILURES as error:
        return sm.StopFailed(message=str(error), maybe_processed=_maybe_processed(error))
    return sm.StopSucceeded()


def _maybe_processed(error: TransportError | APIError | ResponseError) -> bool:
    if isinstance(error, ResponseError):
        return True  # a success status: the stop was done, but check
    if isinstance(error, TransportError):
        return error.maybe_processed
    return error.status_code >= 500
