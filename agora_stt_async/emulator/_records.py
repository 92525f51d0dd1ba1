"""The emulator's records and refusals: agents, tasks, builder tokens, events, world errors.

Plain data owned and mutated by ``_world``; no HTTP, no clock reads. Errors are the
service-level refusals the world raises, rendered per API generation by ``_envelopes``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from agora_stt_async._enums import AgentStatus, LegacyTaskStatus
from agora_stt_async.emulator._validate import JoinSpec

MESSAGE_OK: Final = "OK"
MESSAGE_IDLE: Final = "Idle for too long"  # spec §8.2

EventKind = Literal["agent_joined", "agent_left", "task_started", "task_stopped"]


# --- errors (rendered in each generation's envelope by _envelopes) ------------------------------


class WorldError(Exception):
    """Base of the service-level refusals below."""


class UnknownAgent(WorldError):
    """No such agent in this App ID, or not in a state the call allows."""


class UnknownCursor(WorldError):
    """A list ``cursor`` that is not an agent of this App ID."""


class NameInUse(WorldError):
    """A join whose ``name`` belongs to an agent that is not STOPPED/FAILED."""

    def __init__(self, agent: Agent) -> None:
        super().__init__(agent.name)
        self.agent = agent


class StaleSequence(WorldError):
    """Strict mode: ``sequenceId`` not above the last accepted one."""

    def __init__(self, last: int) -> None:
        super().__init__(last)
        self.last = last


class UpdateTooSoon(WorldError):
    """Pacing (optional): an update within ``update_min_interval`` of the previous one."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class TransitionRefused(WorldError):
    """Control API: a forced status the agent's current one cannot lead to."""

    def __init__(self, current: AgentStatus, wanted: AgentStatus) -> None:
        super().__init__(f"cannot force {current.value} to {wanted.value}")
        self.current = current
        self.wanted = wanted


class TokenUnparsable(WorldError):
    """A builder token this emulator never issued (or garbled)."""


class TokenOfOtherApp(WorldError):
    """A builder token issued for another App ID."""


class TokenExpired(WorldError):
    """A builder token used to start more than ``token_ttl`` after acquire."""


class TaskAlreadyStarted(WorldError):
    """The token, or another token of its instanceId, already started task ``task_id``."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id


class TaskAlreadyStopped(WorldError):
    """A repeated stop: task ``task_id`` was already stopped by a stop request."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id


class TaskTokenMismatch(WorldError):
    """The task exists but was started with another builder token."""


class UnknownTask(WorldError):
    """No such task in this App ID, or it has ended."""


# --- records ---------------------------------------------------------------------------------


class Agent:
    """One v7 agent. Mutable; owned by the world."""

    __slots__ = (
        "agent_id",
        "app_id",
        "channel",
        "config",
        "create_ts",
        "created_at",
        "exit_message",
        "joined",
        "last_sequence_id",
        "last_update_at",
        "max_idle_time",
        "name",
        "seq",
        "status",
        "stopping_at",
        "wake_at",
        "wake_gen",
    )

    def __init__(
        self, agent_id: str, app_id: str, spec: JoinSpec, seq: int, now: float, status: AgentStatus
    ) -> None:
        self.agent_id = agent_id
        self.app_id = app_id
        self.name = spec.name
        self.channel = spec.channel
        self.max_idle_time = spec.max_idle_time
        self.config = spec.raw or pack(spec.config)
        self.seq = seq
        self.created_at = now
        self.create_ts = int(now)
        self.status = status
        self.stopping_at = 0.0
        self.exit_message = MESSAGE_OK
        self.joined = False  # its 101 (agent joined) was emitted: on its first RUNNING
        self.last_sequence_id: int | None = None
        self.last_update_at: float | None = None
        self.wake_at: float | None = None
        self.wake_gen = 0

    def describe(self) -> dict[str, object]:
        """A JSON-able summary for the control API."""
        return {
            "agent_id": self.agent_id,
            "app_id": self.app_id,
            "name": self.name,
            "channel": self.channel,
            "status": self.status.value,
            "create_ts": self.create_ts,
        }


class Task:
    """One legacy task, bound to the builder token that started it."""

    __slots__ = (
        "app_id",
        "channel",
        "config",
        "create_ts",
        "created_at",
        "exit_message",
        "instance_id",
        "last_sequence_id",
        "last_update_at",
        "max_idle_time",
        "minted_before_end",
        "status",
        "stop_requested",
        "task_id",
        "token",
        "wake_at",
        "wake_gen",
    )

    def __init__(self, task_id: str, token: BuilderToken, spec: JoinSpec, now: float) -> None:
        self.task_id = task_id
        self.app_id = token.app_id
        self.token = token.name
        self.instance_id = token.instance_id
        self.channel = spec.channel
        self.max_idle_time = spec.max_idle_time
        self.config = spec.raw or pack(spec.config)
        self.created_at = now
        self.create_ts = int(now)
        self.status = LegacyTaskStatus.IN_PROGRESS
        self.exit_message = MESSAGE_OK
        self.last_sequence_id: int | None = None
        self.last_update_at: float | None = None
        self.wake_at: float | None = None
        self.wake_gen = 0
        self.stop_requested = False  # ended by a stop request (not idle or lifetime)
        # Tokens minted before this task ended (serial < this) may never start a task of
        # its instanceId: set when it ends, None while it runs.
        self.minted_before_end: int | None = None

    def describe(self) -> dict[str, object]:
        """A JSON-able summary for the control API."""
        return {
            "task_id": self.task_id,
            "app_id": self.app_id,
            "instance_id": self.instance_id,
            "channel": self.channel,
            "status": self.status.value,
            "create_ts": self.create_ts,
        }


@dataclass(frozen=True)
class BuilderToken:
    """A parsed builder token (``tokenName`` = ``builderToken`` = ``resourceId``).

    ``serial`` numbers the tokens a world has minted (0, 1, …): "acquired before the last
    task of its instanceId ended" is ``serial < task.minted_before_end``, exact even when
    a frozen clock gives both the same time.
    """

    name: str
    app_id: str
    instance_id: str
    created_at: float
    serial: int = 0

    @property
    def create_ts(self) -> int:
        """Acquire time in Unix seconds, as the API reports it."""
        return int(self.created_at)


@dataclass(frozen=True)
class WorldEvent:
    """A lifecycle fact, the raw material of NCS callbacks (spec §8)."""

    kind: EventKind
    at: float
    app_id: str
    id: str
    channel: str
    start_ts: int
    stop_ts: int | None = None
    status: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Page:
    """One page of the list endpoint."""

    items: list[Agent]
    total: int
    cursor: str


Job: TypeAlias = "Agent | Task"


def pack(config: object) -> bytes:
    """A config as compact JSON bytes: a fraction of the memory of nested dicts."""
    return json.dumps(config, separators=(",", ":")).encode()


def patch(config: bytes, values: dict[str, object]) -> dict[str, object]:
    """Replace each dotted path of ``values`` in a packed config, whole (spec §4.6)."""
    result: dict[str, object] = json.loads(config)
    for path, value in values.items():
        *parents, leaf = path.split(".")
        node = result
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return result


_MAC_BYTES: Final = 24


def mint_token(
    secret: bytes, app_id: str, instance_id: str, now: float, nonce: int, serial: int
) -> BuilderToken:
    """A builder token: App ID, instanceId, acquire time and serial, signed with ``secret``.

    Self-describing, so an unused token costs no memory; real tokens are long URL-safe
    Base64-like strings too (spec §5.1).
    """
    payload = json.dumps([app_id, instance_id, now, nonce, serial], separators=(",", ":")).encode()
    mac = hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return BuilderToken(f"{_b64(payload)}.{_b64(mac)}", app_id, instance_id, now, serial)


def read_token(secret: bytes, name: str | None) -> BuilderToken:
    """Parse and verify a builder token; ``TokenUnparsable`` if it is not one of ours."""
    if not name:
        raise TokenUnparsable(name)
    try:
        head, _, tail = name.partition(".")
        payload = _unb64(head)
        mac = hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(mac, _unb64(tail)):
            raise TokenUnparsable(name)
        app_id, instance_id, created_at, _, serial = json.loads(payload)
        return BuilderToken(name, str(app_id), str(instance_id), float(created_at), int(serial))
    except (ValueError, TypeError) as exc:
        raise TokenUnparsable(name) from exc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
