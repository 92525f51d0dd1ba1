"""``TaskHandle``: one task of a ``Session``, and the session's in-memory entry for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Final, final

import anyio

from agora_stt_async import state as sm
from agora_stt_async._client import build_update
from agora_stt_async._enums import AgentStatus, ApiGeneration, LegacyTaskStatus
from agora_stt_async._errors import AgoraSTTError, SessionError
from agora_stt_async._models import (
    JoinRequest,
    LanguagePair,
    LegacyStartRequest,
    UidLanguages,
    UpdateRequest,
)

if TYPE_CHECKING:
    from agora_stt_async._session import Session

ServerStatus = AgentStatus | LegacyTaskStatus
StartConfig = JoinRequest | LegacyStartRequest


def check_driven(entry: _Entry, session: Session) -> None:
    """``SessionError`` if ``entry`` is live but no longer this session's: its lease was
    lost and another worker drives it now, so nothing here will ever change it again
    (waiting on it would hang)."""
    record = entry.record
    if not record.phase.is_terminal and session._entries.get(record.key) is not entry:
        raise SessionError(
            f"task {record.key!r} is driven by another worker now (this session's lease "
            "expired); watch or stop it there, or stop it with session.stop(key)"
        )


def stop_refused(record: sm.TaskRecord) -> bool:
    """The last stop of this live task was refused outright: it runs again (ACTIVE) and
    no stop is pending. Whoever still wants it stopped must send a new stop."""
    return record.phase is sm.Phase.ACTIVE and not record.stop_requested


@final
class _Entry:
    """The session's in-memory view of one task: its record and what is waiting on it."""

    __slots__ = (
        "changed",
        "config",
        "error",
        "last_update",
        "lock",
        "pending_update",
        "record",
        "timer",
        "unfinished",
    )

    def __init__(self, record: sm.TaskRecord, config: StartConfig | None) -> None:
        self.record = record
        self.config = config
        self.lock = anyio.Lock()
        self.changed = anyio.Event()
        self.error: AgoraSTTError | None = None
        self.pending_update: UpdateRequest | None = None
        self.last_update: AgoraSTTError | None = None
        self.timer: anyio.CancelScope | None = None
        # True while a drive executes actions, and still True after one was cut off
        # (cancelled or failed) before all its answers were recorded: the next drive
        # then re-establishes the task with state.Recovered (see Session._drive).
        self.unfinished = False

    def set_record(self, record: sm.TaskRecord) -> None:
        self.record = record
        changed, self.changed = self.changed, anyio.Event()
        changed.set()


def _status_matches(status: ServerStatus | None, wanted: ServerStatus) -> bool:
    if status is None:
        return False
    if status == wanted:
        return True
    # A legacy task is "running" when STARTED or IN_PROGRESS (spec §5.3): waiting for
    # AgentStatus.RUNNING on a legacy handle means exactly that.
    return (
        wanted is AgentStatus.RUNNING and isinstance(status, LegacyTaskStatus) and status.is_running
    )


@final
class TaskHandle:
    """One task of a ``Session``: wait for it, watch it, update it, stop it."""

    def __init__(self, session: Session, entry: _Entry) -> None:
        self._session = session
        self._entry = entry

    @property
    def key(self) -> str:
        return self._entry.record.key

    @property
    def record(self) -> sm.TaskRecord:
        """The task's current record (ids, phase, last status, sequence id)."""
        return self._entry.record

    @property
    def status(self) -> ServerStatus | None:
        """The server status last observed (``AgentStatus`` or ``LegacyTaskStatus``), or
        ``None`` before the first.

        Once the task has ended, its final status: STOPPED or FAILED (or their legacy
        twins), also when the server was not asked again after it confirmed the stop
        (a leave or stop answered 200 ends the task; ``record.server_status`` keeps the
        last status the server actually reported). The same final status ``watch()``
        ends with.
        """
        return _current_status(self._entry.record)

    @property
    def agent_id(self) -> str | None:
        return self._entry.record.agent_id

    @property
    def task_id(self) -> str | None:
        return self._entry.record.task_id

    async def wait_for(self, status: ServerStatus, *, timeout: float | None = None) -> ServerStatus:
        """Wait until the task has ``status``, as the ``status`` property reports it (so a
        stop the server confirmed reaches STOPPED); for a legacy task,
        ``AgentStatus.RUNNING`` means STARTED or IN_PROGRESS.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
            SessionError: the task ended (or failed to start) in another status than
                ``status``, or another worker drives it now (a shared store; the lease
                was lost).
        """
        with anyio.fail_after(timeout):
            while True:
                record = self._entry.record
                if _status_matches(_current_status(record), status):
                    return status
                if record.phase.is_terminal:
                    detail = f": {record.last_error}" if record.last_error else ""
                    raise SessionError(
                        f"task {record.key!r} ended in phase {record.phase} "
                        f"(status {record.server_status}) before reaching {status}{detail}"
                    )
                check_driven(self._entry, self._session)
                await _next_change(self._entry, self._session)

    def watch(self) -> AsyncIterator[ServerStatus]:
        """Every new server status of the task; the last one is final (STOPPED or FAILED,
        or their legacy twins), also when the session ended the task itself.

        Raises:
            SessionError: (from the iteration) another worker drives the task now (a
                shared store; this session's lease was lost).
        """
        return _StatusWatcher(self._entry, self._session)

    async def update(
        self,
        request: UpdateRequest | None = None,
        *,
        languages: Sequence[str] | None = None,
        keywords: Sequence[str] | None = None,
        uid_languages_config: Sequence[UidLanguages] | None = None,
        subscribe_audio_uids: Sequence[str] | None = None,
        translate_enable: bool | None = None,
        translate_languages: Sequence[LanguagePair] | None = None,
    ) -> None:
        """Change the running task; the sequence id and ``updateMask`` are handled.

        Raises:
            ValidationError: the fields break a documented limit.
            UsageError: the task is not running.
            APIError, TransportError: the update failed.
        """
        body = build_update(
            request,
            languages=languages,
            keywords=keywords,
            uid_languages_config=uid_languages_config,
            subscribe_audio_uids=subscribe_audio_uids,
            translate_enable=translate_enable,
            translate_languages=translate_languages,
        )
        await self._session._run_in_group(self._session._update(self._entry, body))

    async def stop(self, *, wait: bool = False, timeout: float | None = None) -> None:
        """Stop the task (idempotent). With ``wait``, also wait until the server
        confirms it ended.

        Raises:
            SessionError: the stop could not be confirmed (the task is retried in the
                background and stopped at the latest on session exit).
        """
        if self._entry.record.phase.is_terminal:
            return  # idempotent, also after the session closed
        await self._session._run_in_group(self._session._stop(self._entry))
        if wait:
            with anyio.fail_after(timeout):
                while not self._entry.record.phase.is_terminal:
                    check_driven(self._entry, self._session)
                    if stop_refused(self._entry.record):
                        # A repeat of the stop (after an unclear answer) was refused in
                        # the background: the task runs again. Send a new stop; another
                        # refusal raises SessionError now instead of waiting out timeout.
                        await self._session._run_in_group(self._session._stop(self._entry))
                        continue
                    await _next_change(self._entry, self._session)

    def __repr__(self) -> str:
        r = self._entry.record
        return f"TaskHandle(key={r.key!r}, api={r.api}, phase={r.phase}, status={r.server_status})"


@final
class _StatusWatcher:
    def __init__(self, entry: _Entry, session: Session) -> None:
        self._entry = entry
        self._session = session
        self._last: ServerStatus | None = None
        self._done = False

    def __aiter__(self) -> _StatusWatcher:
        return self

    async def __anext__(self) -> ServerStatus:
        while not self._done:
            record = self._entry.record
            status = record.server_status
            if record.phase.is_terminal:
                # The task is over even if the server's last word was not a final
                # status (a leave answered 200 ends our part): end with one.
                self._done = True
                final = _ended_status(record)
                if final != self._last:
                    return final
                break
            if status is not None and status != self._last:
                self._last = status
                return status
            check_driven(self._entry, self._session)
            await _next_change(self._entry, self._session, waiting=False)
        raise StopAsyncIteration


# SPEC-SILENT: how often to look while a caller waits on a task. While anyone is blocked
# in wait_for() or stop(wait=True) (and no webhooks flow), the session's one sweep runs at
# least this often instead of at the idle ``refresh_interval`` (5 s by default), so the
# wait ends about a second after the change; the sweep is shared, so 500 waiters cost one
# sweep, not 500. watch() is long-lived and follows the idle pace.
WAIT_POLL_S: Final = 1.0


async def _next_change(entry: _Entry, session: Session, *, waiting: bool = True) -> None:
    """Ask for a sweep, then wait until ``entry`` changes; ``waiting`` asks for the
    faster pace while blocked."""
    changed = entry.changed
    session._kick_refresh()
    if not waiting:
        await changed.wait()
        return
    session._waiters += 1
    try:
        await changed.wait()
    finally:
        session._waiters -= 1


def _current_status(record: sm.TaskRecord) -> ServerStatus | None:
    """The status a handle reports: the server's last word, or once the task has ended,
    its final status (see ``TaskHandle.status``)."""
    return _ended_status(record) if record.phase.is_terminal else record.server_status


def _ended_status(record: sm.TaskRecord) -> ServerStatus:
    """An ended task's final status: the server's, if its last word was final; else the
    one the phase means (a stop confirmed by a 200 is STOPPED)."""
    status = record.server_status
    return status if status is not None and status.is_terminal else _final_status(record)


def _final_status(record: sm.TaskRecord) -> ServerStatus:
    failed = record.phase is sm.Phase.FAILED
    if record.api is ApiGeneration.LEGACY:
        return LegacyTaskStatus.FAILURE_STOP if failed else LegacyTaskStatus.STOPPED
    return AgentStatus.FAILED if failed else AgentStatus.STOPPED
