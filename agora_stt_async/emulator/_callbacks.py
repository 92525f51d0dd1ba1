"""NCS callbacks: the emulator tells a URL when agents join and leave (spec §8, §12.12).

Each lifecycle fact of the world (``WorldEvent``) becomes a notification, built, signed
and sent the way spec §8 describes Agora's:

* ``agent_joined`` → eventType 101, ``agent_left`` → 102 with ``status`` (``STOPPED`` or
  ``FAILED``) and ``message`` (``OK`` on leave and on the lifetime limit, ``Idle for too
  long``, or the injected failure's, e.g. ``RTC connection error``);
* envelope ``{noticeId, productId: 20, eventType, notifyMs, sid, payload}``, ``sid`` and
  ``payload.agent_id`` the agent ID, ``notifyMs`` the send time of this copy;
* headers ``Agora-Signature`` (HMAC-SHA1) and ``Agora-Signature-V2`` (HMAC-SHA256), lower
  hex, over the exact bytes sent, keyed with ``callback_secret`` (this module's own
  hmac code: the emulator does not share the SDK's);
* POST, resent up to ``callback_retries`` times on a non-200 answer, an error or no
  answer within ``callback_timeout`` seconds, with a new ``notifyMs`` each time.

Agora does not promise delivery, and neither does the emulator: with seeded
probabilities a notification is lost (``callback_loss``), sent twice with the same
``noticeId`` (``callback_duplicate``) or held back and sent after the next one
(``callback_reorder``). Two settings of the sender itself go further: with
``reorder_depth`` above 1 a held-back notification waits for 1 to ``reorder_depth``
later ones (a seeded draw), and ``redundant`` is the probability that an event is
also sent as a second notification with a new ``noticeId`` (Agora's "redundant
notifications", spec §8.1). Their draws come from a random stream of their own, so
turning them on changes nothing else of a seeded run.

The world has no background tasks, and facts are made when it is touched. The sender
touches it: ``deliver()`` applies what is due (``world.advance()``), then sends the
queue; ``run()`` does that every ``callback_poll_interval`` seconds or as soon as a fact
is queued. ``run()`` is started by the app's ASGI lifespan (uvicorn) or by a test's task
group; ``deliver()`` is the deterministic choice for tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import math
import random
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import anyio
import anyio.abc
import httpx

from agora_stt_async import _constants as C
from agora_stt_async.emulator._config import EmulatorConfig, SupportsNow
from agora_stt_async.emulator._records import WorldEvent

logger: Final = logging.getLogger("agora_stt_async.emulator.callbacks")

SIGNATURE_HEADER: Final = "Agora-Signature"
SIGNATURE_V2_HEADER: Final = "Agora-Signature-V2"

_EVENT_TYPES: Final = {
    "agent_joined": C.NCS_EVENT_AGENT_JOINED,
    "agent_left": C.NCS_EVENT_AGENT_LEFT,
}
# SPEC-SILENT: legacy tasks' NCS events (spec §8.3) are about caption files, which the
# emulator does not make; task_started/task_stopped send nothing.


@dataclass
class Notice:
    """One notification: what stays the same on every copy and every resend."""

    notice_id: str
    event_type: int
    sid: str
    payload: dict[str, object]
    attempts: list[int] = field(default_factory=list)
    """The HTTP status of each attempt (0: no answer)."""

    def body(self, notify_ms: int) -> bytes:
        """The JSON body of one copy, sent at ``notify_ms``."""
        envelope = {
            "noticeId": self.notice_id,
            "productId": C.NCS_PRODUCT_ID_STT,
            "eventType": self.event_type,
            "notifyMs": notify_ms,
            "sid": self.sid,
            "payload": self.payload,
        }
        return json.dumps(envelope, separators=(",", ":")).encode("utf-8")


def signature_headers(body: bytes, secret: str) -> dict[str, str]:
    """Both NCS signature headers of ``body`` (spec §8.1)."""
    key = secret.encode("utf-8")
    return {
        SIGNATURE_HEADER: hmac.new(key, body, hashlib.sha1).hexdigest(),
        SIGNATURE_V2_HEADER: hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


def _probability(name: str, value: float) -> float:
    number: object = value
    if not (isinstance(number, (int, float)) and math.isfinite(number) and 0 <= number <= 1):
        raise ValueError(f"{name} must be a probability in 0..1, got {value!r}")
    return float(value)


@dataclass
class _Held:
    """Copies of one notice held back until ``overtakers`` later notices are queued."""

    copies: list[Notice]
    overtakers: int


class CallbackSender:
    """Turns world events into signed NCS callbacks and sends them.

    Attributes:
        stats: ``generated``, ``lost``, ``duplicated``, ``redundant`` (a second notice,
            new ``noticeId``), ``reordered`` (sent after a later event), ``delivered``
            (answered 200), ``resent``, ``failed`` (no 200 after every resend).
        sent: the most recent notices taken off the queue, in sending order (a
            duplicated one appears twice), each with its ``attempts``.
        transport: the httpx transport of the sending client (``None``: the network);
            an ``httpx.ASGITransport`` sends to an in-process app.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        clock: SupportsNow,
        seed: int | str,
        advance: Callable[[], object],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.loss = _probability("callback_loss", config.callback_loss)
        self.duplicate = _probability("callback_duplicate", config.callback_duplicate)
        self.reorder = _probability("callback_reorder", config.callback_reorder)
        if config.callback_retries < 0:
            raise ValueError("callback_retries must be >= 0")
        self.clock = clock
        self.seed = seed
        self.transport = transport
        self._advance = advance
        self._lock: anyio.Lock | None = None
        self._wake: anyio.Event | None = None
        self._reorder_depth = 1
        self._redundant = 0.0
        self._sending = 0
        self.reset()

    @property
    def reorder_depth(self) -> int:
        """How many later notices a held-back one may wait for, at most (default 1: the
        next one overtakes it). Above 1, each held-back notice draws 1 to this many.

        Raises:
            ValueError: set to anything but an int >= 1.
        """
        return self._reorder_depth

    @reorder_depth.setter
    def reorder_depth(self, value: int) -> None:
        depth: object = value
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"reorder_depth must be an int >= 1, got {value!r}")
        self._reorder_depth = value

    @property
    def redundant(self) -> float:
        """The probability that an event not lost is also sent as a second notice with a
        new ``noticeId`` and the same payload (default 0; 1 is Agora's "redundant
        notifications" option, spec §8.1). The second notice follows the first.

        Raises:
            ValueError: set to anything but a probability in 0..1.
        """
        return self._redundant

    @redundant.setter
    def redundant(self, value: float) -> None:
        self._redundant = _probability("redundant", value)

    def reset(self) -> None:
        """Forget queued and held notices and the counters; re-seed."""
        self._rng = random.Random(f"{self.seed}/callbacks")
        # The newer settings draw from a stream of their own (see the module docstring).
        self._extra_rng = random.Random(f"{self.seed}/callbacks/extra")
        self._queue: deque[Notice] = deque()
        self._held: list[_Held] = []
        self.stats: Counter[str] = Counter()
        self.sent: deque[Notice] = deque(maxlen=self.config.events_kept)

    @property
    def enabled(self) -> bool:
        """``True`` when ``callback_url`` is set."""
        return self.config.callback_url is not None

    @property
    def pending(self) -> int:
        """Notices queued or held back, not sent yet."""
        return len(self._queue) + sum(len(held.copies) for held in self._held)

    @property
    def idle(self) -> bool:
        """``True`` when no notice is queued, held back or being sent (resends included):
        every notice made so far was answered 200 or given up on."""
        return self.pending == 0 and self._sending == 0

    # -- making notices (synchronous: the world calls it) -------------------------------------

    def on_event(self, event: WorldEvent) -> None:
        """The world's hook: queue the notification of ``event`` (or lose it)."""
        event_type = _EVENT_TYPES.get(event.kind)
        if event_type is None or not self.enabled:
            return
        rng = self._rng
        # Every draw is made for every event, so one setting does not shift the others.
        notice_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        lost = rng.random() < self.loss
        twice = rng.random() < self.duplicate
        hold = rng.random() < self.reorder
        self.stats["generated"] += 1
        if lost:
            self.stats["lost"] += 1
            return
        payload: dict[str, object] = {
            "agent_id": event.id,
            "channel": event.channel,
            # SPEC-SILENT: spec §8.2 [CONFLICT] says ms, the examples show seconds; the
            # emulator sends seconds, as the examples and the REST answers do.
            "start_ts": event.start_ts,
        }
        if event_type == C.NCS_EVENT_AGENT_LEFT:
            payload.update(stop_ts=event.stop_ts, status=event.status, message=event.message)
        notice = Notice(notice_id, event_type, event.id, payload)
        copies = [notice]
        if twice:
            self.stats["duplicated"] += 1
            copies.append(dataclasses.replace(notice, attempts=[]))
        if self._redundant and self._extra_rng.random() < self._redundant:
            self.stats["redundant"] += 1
            other_id = str(uuid.UUID(int=self._extra_rng.getrandbits(128), version=4))
            copies.append(dataclasses.replace(notice, notice_id=other_id, attempts=[]))
        # With depth 1, one notice is held at a time and the next one overtakes it;
        # deeper, several may be held, each until its drawn number of later ones passed.
        if hold and (self._reorder_depth > 1 or not self._held):
            overtakers = 1
            if self._reorder_depth > 1:
                overtakers = self._extra_rng.randint(1, self._reorder_depth)
            self._held.append(_Held(copies, overtakers))
        else:
            self._queue.extend(copies)
            self._overtaken()
        if self._wake is not None:
            self._wake.set()

    def _overtaken(self) -> None:
        """One more notice was queued: release the held ones it was the last to pass.

        Held notices leave in the order they were made (one due takes the earlier ones
        with it), so a released notice never overtakes another held one, and none is
        overtaken by more than ``reorder_depth`` later ones.
        """
        due = 0
        for index, held in enumerate(self._held, 1):
            held.overtakers -= 1
            if held.overtakers <= 0:
                due = index
        for held in self._held[:due]:
            self._queue.extend(held.copies)
            self.stats["reordered"] += 1
        del self._held[:due]

    def _release_held(self) -> None:
        for held in self._held:
            self._queue.extend(held.copies)
        self._held = []

    # -- sending -------------------------------------------------------------------------------

    async def deliver(self, *, flush: bool = True) -> int:
        """Apply the world's due changes, then send every queued notice; return how many
        notices were taken off the queue. ``flush`` also sends a held-back notice that
        no later one has overtaken yet."""
        self._advance()
        if flush:
            self._release_held()
        if not self._queue or self.config.callback_url is None:
            return 0
        if self._lock is None:
            self._lock = anyio.Lock()
        count = 0
        async with (
            self._lock,
            httpx.AsyncClient(
                transport=self.transport, timeout=self.config.callback_timeout
            ) as client,
        ):
            while self._queue:
                notice = self._queue.popleft()
                self.sent.append(notice)
                await self._send(client, self.config.callback_url, notice)
                count += 1
        return count

    async def _send(self, client: httpx.AsyncClient, url: str, notice: Notice) -> None:
        self._sending += 1
        try:
            await self._attempts(client, url, notice)
        finally:
            self._sending -= 1

    async def _attempts(self, client: httpx.AsyncClient, url: str, notice: Notice) -> None:
        for attempt in range(1 + self.config.callback_retries):
            if attempt:
                self.stats["resent"] += 1
                await anyio.sleep(self.config.callback_retry_delay)
            body = notice.body(int(self.clock.now() * 1000))
            headers = {
                "Content-Type": "application/json",
                **signature_headers(body, self.config.callback_secret),
            }
            status = 0
            # In process (ASGITransport) httpx's timeout does not apply: bound it here.
            with anyio.move_on_after(self.config.callback_timeout):
                try:
                    status = (await client.post(url, content=body, headers=headers)).status_code
                except Exception as exc:  # noqa: BLE001 - any failure is "no answer": resend
                    logger.debug("callback %s: %r", notice.notice_id, exc)
            notice.attempts.append(status)
            if status == 200:
                self.stats["delivered"] += 1
                return
        self.stats["failed"] += 1
        logger.info("callback %s: no 200 after %d attempts", notice.notice_id, attempt + 1)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Send callbacks until cancelled: as soon as one is queued, and every
        ``callback_poll_interval`` seconds apply the world's due changes (so a 101 goes
        out when the agent starts, not when someone next asks). Held-back notices are
        sent once a whole interval passes with no new notice: while notices flow, a
        held one waits for its overtakers, however long they take."""
        self._wake = anyio.Event()
        task_status.started()
        quiet = False
        try:
            while True:
                await self.deliver(flush=quiet)
                with anyio.move_on_after(self.config.callback_poll_interval) as scope:
                    await self._wake.wait()
                quiet = scope.cancelled_caught
                self._wake = anyio.Event()
        finally:
            self._wake = None

    def describe(self) -> dict[str, object]:
        """A JSON-able summary for the control API."""
        return {
            "enabled": self.enabled,
            "url": self.config.callback_url,
            "pending": self.pending,
            **{key: self.stats[key] for key in _STAT_KEYS},
        }


_STAT_KEYS: Final = (
    "generated",
    "lost",
    "duplicated",
    "redundant",
    "reordered",
    "delivered",
    "resent",
    "failed",
)
