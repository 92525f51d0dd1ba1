"""The typed events of NCS callbacks (spec §8.2, §8.3): attrs values, no wire names.

``agora_stt_async.notifications`` re-exports every public name here (users import them
from there, and their ``__module__`` says so); ``_notifications_parse`` reads the wire
and names the class to build (``KINDS``).

Imports: stdlib, attrs and the L0 modules, and ``_notifications_parse`` (for the
timestamp rule and ``ExitReason``) only; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, final

import attrs

from agora_stt_async._enums import AgentStatus
from agora_stt_async._notifications_parse import ExitReason, to_unix_seconds

_PROGRESS_DONE: Final = 10000


def _seconds(value: int | float | None) -> float | None:
    return None if value is None else to_unix_seconds(value)


# --- events --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Event:
    """What every notification carries: the NCS envelope (spec §8.2, §8.3).

    Attributes:
        notice_id: unique per notification; a resend keeps it (dedupe on it).
        event_type: the numeric event type.
        product_id: 20 for Real-Time STT v7; ``None`` if absent.
        notify_ms: when NCS sent this copy, Unix ms; changes on every resend.
        sid: the agent ID for v7 events; ``None`` if absent.
        raw: the whole decoded body, extra fields included (not compared, not shown).
    """

    notice_id: str
    event_type: int
    product_id: int | None = None
    notify_ms: int | float | None = None
    sid: str | None = None
    raw: Mapping[str, object] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def notified_at(self) -> float | None:
        """``notify_ms`` in Unix seconds."""
        return _seconds(self.notify_ms)


@final
@attrs.frozen(kw_only=True)
class AgentJoined(Event):
    """eventType 101: the v7 agent joined its channel.

    ``start_ts`` is kept as sent; ``started_at`` is Unix seconds.
    """

    agent_id: str
    channel: str | None = None
    start_ts: int | float | None = None

    @property
    def started_at(self) -> float | None:
        """When the agent started, Unix seconds (see ``to_unix_seconds``)."""
        return _seconds(self.start_ts)


@final
@attrs.frozen(kw_only=True)
class AgentLeft(Event):
    """eventType 102: the v7 agent left its channel, for good.

    ``status`` is ``AgentStatus.STOPPED`` (leave, idle timeout) or
    ``AgentStatus.FAILED``; ``message`` is kept as sent and ``exit_reason`` classifies it.
    """

    agent_id: str
    status: AgentStatus
    channel: str | None = None
    start_ts: int | float | None = None
    stop_ts: int | float | None = None
    message: str | None = None

    @property
    def exit_reason(self) -> ExitReason:
        """``message`` as an ``ExitReason``; ``UNKNOWN`` for an undocumented one."""
        return ExitReason.from_message(self.message)

    @property
    def started_at(self) -> float | None:
        """When the agent started, Unix seconds (see ``to_unix_seconds``)."""
        return _seconds(self.start_ts)

    @property
    def stopped_at(self) -> float | None:
        """When the agent stopped, Unix seconds (see ``to_unix_seconds``)."""
        return _seconds(self.stop_ts)


@attrs.frozen(kw_only=True)
class LegacyEvent(Event):
    """What every legacy (v5/v6) STT event's ``payload`` carries (spec §8.3).

    Attributes:
        task_id: the legacy task (required: it is how a receiver routes the event).
        cname: the channel.
        sub_bot_uid, pub_bot_uid: the bots' UIDs, as strings.
        sequence: per-task notification counter from 0, to spot loss and resends.
        service_type: 0 STT service, 1 STT module, 2 uploader module.
        service_scene: documented as ``1`` yet shown as a sentence: either is kept.
        sendts: when the event happened, as sent; ``sent_at`` is Unix seconds.
        msg_name: ``details.msgName``.
    """

    task_id: str
    cname: str | None = None
    sub_bot_uid: str | None = None
    pub_bot_uid: str | None = None
    sequence: int | None = None
    service_type: int | None = None
    service_scene: int | str | None = None
    sendts: int | float | None = None
    msg_name: str | None = None

    @property
    def sent_at(self) -> float | None:
        """``sendts`` in Unix seconds (see ``to_unix_seconds``)."""
        return _seconds(self.sendts)


@final
@attrs.frozen(kw_only=True)
class LegacyPlaylistReady(LegacyEvent):
    """eventType 4: the ``.vtt`` M3U8 playlist was uploaded for the first time.

    ``file_list`` is the playlist's file name (a string for this event).
    """

    file_list: str


@final
@attrs.frozen(kw_only=True)
class LegacyUploaderStarted(LegacyEvent):
    """eventType 30: the uploader started; ``status`` 0 means normal."""

    status: int | None = None


@final
@attrs.frozen(kw_only=True)
class UploadedFile:
    """One entry of ``fileList`` in events 31 and 32.

    ``track_type`` is ``"audio"``, ``"video"`` or ``"text"``; ``mode`` 1 is per channel,
    2 per UID; ``slice_start_time`` is kept as sent (documented as Unix ms).
    """

    file_name: str
    track_type: str | None = None
    mode: int | None = None
    slice_start_time: int | float | None = None

    @property
    def slice_started_at(self) -> float | None:
        """``slice_start_time`` in Unix seconds (see ``to_unix_seconds``)."""
        return _seconds(self.slice_start_time)


def _files(items: Iterable[UploadedFile | Mapping[str, Any]]) -> tuple[UploadedFile, ...]:
    # parse() hands over keyword dicts; code building events hands over UploadedFile.
    return tuple(i if isinstance(i, UploadedFile) else UploadedFile(**i) for i in items)


@final
@attrs.frozen(kw_only=True)
class LegacyUploaded(LegacyEvent):
    """eventType 31: every ``.vtt`` file is in your storage."""

    file_list: tuple[UploadedFile, ...] = attrs.field(converter=_files)
    status: int | None = None


@final
@attrs.frozen(kw_only=True)
class LegacyBackedUp(LegacyEvent):
    """eventType 32: every file is uploaded, at least one through Agora Cloud Backup,
    which moves it on to your storage later.
    """

    file_list: tuple[UploadedFile, ...] = attrs.field(converter=_files)
    status: int | None = None


@final
@attrs.frozen(kw_only=True)
class LegacyUploadingProgress(LegacyEvent):
    """eventType 33, once a minute: ``progress`` is uploaded/recorded x 10000."""

    progress: int

    @property
    def fraction(self) -> float:
        """``progress`` as 0.0 .. 1.0 (clamped)."""
        return min(self.progress, _PROGRESS_DONE) / _PROGRESS_DONE

    @property
    def is_done(self) -> bool:
        """``True`` at 10000: after the task exits, that means every file is uploaded."""
        return self.progress >= _PROGRESS_DONE


@final
@attrs.frozen(kw_only=True)
class UnknownEvent(Event):
    """Any other eventType, or a documented number sent by another product (101 from
    Conversational AI, 31 from Cloud Recording...): ``payload`` as decoded.
    """

    payload: object = attrs.field(default=None, eq=False)


@final
@attrs.frozen(kw_only=True)
class UnparsedEvent(Event):
    """A documented eventType whose payload does not have the documented shape.

    ``parse`` returns it instead of raising, so a receiver answers 200: NCS would only
    resend the same body. ``payload`` is kept as decoded, and ``problem`` names the
    first field that did not match, and the JSON type found (never its value). An
    ``UnparsedEvent`` with ``event_type`` 102 still says that the agent ``sid`` left.
    The repr leaves ``payload`` out: it is what did not match, of any size.
    """

    payload: object = attrs.field(default=None, eq=False, repr=False)
    problem: str = ""


KINDS: Final[Mapping[str, type[Event]]] = {
    "joined": AgentJoined,
    "left": AgentLeft,
    "playlist": LegacyPlaylistReady,
    "uploader_started": LegacyUploaderStarted,
    "uploaded": LegacyUploaded,
    "backed_up": LegacyBackedUp,
    "progress": LegacyUploadingProgress,
    "unknown": UnknownEvent,
    "unparsed": UnparsedEvent,
}
"""The event class for each ``kind`` that ``read_body`` names."""
