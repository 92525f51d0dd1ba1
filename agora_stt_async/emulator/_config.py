"""The emulator's settings and its clock. Stdlib plus ``_constants`` only.

Every behaviour the spec leaves open is a field here, with the emulator's default choice
(each marked ``SPEC-SILENT`` where it is made), so a test suite can pin the other reading.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from agora_stt_async import _constants as C


@runtime_checkable
class SupportsNow(Protocol):
    """The one thing the emulator needs from a clock: Unix time in seconds."""

    def now(self) -> float:
        """Current Unix time in seconds."""
        ...


class EmulatorClock:
    """The emulator's clock: real time (or a frozen start) plus an offset that only grows.

    Args:
        start: ``None`` follows ``time.time()``; a number freezes the clock at that Unix
            time, so only ``advance`` moves it (the fully deterministic choice for tests).
    """

    def __init__(self, start: float | None = None) -> None:
        self._start = start
        self._offset = 0.0

    def now(self) -> float:
        """Unix seconds: ``time.time()`` (or ``start``) plus every ``advance`` so far."""
        base = time.time() if self._start is None else self._start
        return base + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0) and return the new ``now()``.

        Raises:
            ValueError: ``seconds`` is negative or not finite; the emulator's time never
                goes backwards (its indexes rely on creation order being time order).
        """
        if not seconds >= 0 or seconds == float("inf"):
            raise ValueError(f"advance takes a finite number of seconds >= 0, got {seconds!r}")
        self._offset += seconds
        return self.now()

    @property
    def offset(self) -> float:
        """Seconds added by ``advance`` so far."""
        return self._offset

    def __repr__(self) -> str:
        return f"EmulatorClock(start={self._start!r}, offset={self._offset!r})"


@dataclass(frozen=True)
class EmulatorConfig:
    """What the emulator accepts and how it behaves. All durations are seconds.

    ``app_ids`` and ``credentials`` left as ``None`` mean: the emulator defaults
    (``emulatorapp0000000000000000000000``, ``emulator`` / ``emulator-secret``) plus
    ``AGORA_APP_ID`` / ``AGORA_CUSTOMER_ID`` / ``AGORA_CUSTOMER_SECRET`` when set.
    """

    app_ids: tuple[str, ...] | None = None
    """App IDs with STT enabled; any other gets v7 403 / legacy ``invalid_appid!``."""
    credentials: Mapping[str, str] | None = None
    """Customer ID → Customer Secret pairs accepted by Basic auth."""
    rtc_tokens: Mapping[str, float] | None = None
    """RTC tokens accepted by ``Authorization: agora token="…"`` (spec §3.2), each with
    its expiry in Unix seconds: expired → 401 ``Token is expired``, any other value →
    401 ``Invalid token``. ``None`` (default) turns RTC-token auth off: such a header is
    then 401 ``Invalid authentication credentials``, like any unknown scheme."""

    # -- v7 lifecycle (spec §4.3) --
    join_status: Literal["STARTING", "RUNNING"] = "STARTING"
    """Status of a fresh agent: spec §4.2 shows both; the zh-CN ``STARTING`` is likelier."""
    start_delay: float = 1.0
    """STARTING → RUNNING after this long (0 = at once)."""
    stop_delay: float = 0.5
    """STOPPING → STOPPED after this long (0 = at once)."""
    max_lifetime: float = float(C.AGENT_MAX_LIFETIME_S)
    """Hard agent lifetime (newest OpenAPI: 72 h, even with ``maxIdleTime: 0``)."""
    # SPEC-SILENT: leave of an unknown, stopping or stopped agent answers 404 TaskNotFound;
    # public clients treat a failed leave as "already gone" (spec §4.4).
    idempotent_leave: bool = False
    # SPEC-SILENT: a sequenceId not above the last accepted one is applied (Agora's own demo
    # always sends 1, spec §4.6); strict mode answers 400 InvalidFieldValue.
    strict_sequence: bool = False
    update_min_interval: float = 0.0
    """Optional pacing (spec §4.6 asks for 5 s); 0 = not enforced. Violations answer 429."""
    # SPEC-SILENT: the largest list page is undocumented.
    list_max_limit: int = 100

    # -- requests (spec §4.1, §5.2) --
    check_languages: bool = True
    """Refuse language codes outside spec §10 (current table plus the dropped three)."""
    strict_fields: bool = False
    """Refuse unknown body fields (default: ignore them, spec §4.1 [INFERRED])."""
    # SPEC-SILENT: unknown body fields are ignored by default (public clients send some).

    # -- legacy (spec §5) --
    legacy_version: Literal["v5", "v6"] = "v6"
    accept_v5_nested: bool = True
    """Accept the nested 2023 v5 start body (``audio`` / ``config``) too."""
    token_ttl: float = C.TOKEN_TTL_S
    # spec §5.1 [CONFLICT]: the 2024 quickstart gives a started session a 24 h life (the
    # resource ID's validity, up to 48 h), which conflicts with maxIdleTime up to 2592000 s;
    # the emulator follows the quickstart. The 72 h v7 cap is not documented for legacy.
    legacy_max_lifetime: float = 86400.0
    # SPEC-SILENT: a repeated start answers 409 + code 49 ([INFERRED], spec §6.1); the
    # common-errors page's 201 "already running" is the other reading.
    repeat_start_status: Literal[201, 409] = 409
    """Status of a repeated start: 409 or 201; the body is code 49 either way."""
    # spec §5.5, §6.1, §12.17: "a second stop with the same token and taskId → code 49";
    # "stop or query of a finished task → 404". The emulator reads them together: a stop
    # of a task stopped by an earlier stop answers 409 + code 49, a stop of a task that
    # ended on its own (idle, lifetime) 404 "The task is not found". SPEC-SILENT: 409 is
    # the status (as for a repeated start).
    repeat_stop_code: Literal[49, 404] = 49
    """What a repeated stop answers: 49 (409 + code 49, default) or 404 (not found)."""

    # -- channels (no RTC here: a count of hosts per channel name) --
    default_hosts: int = 1
    """Hosts in a channel nobody has set; 0 makes every channel start idle."""

    # -- faults and the control API --
    # SPEC-SILENT (spec §12 [INFERRED]): STT publishes no QPS number; Cloud Recording's is
    # 10 per App ID. Off by default, and clearly not a documented STT behaviour.
    qps_limit: float = 0.0
    """Requests per second per App ID above which the emulator answers 429 with
    ``Retry-After`` (a sliding one-second window of accepted requests); 0 = no limit.
    Only App IDs with STT enabled are limited (others are refused anyway)."""
    code20_status: int = 504
    """HTTP status of an injected code-20 timeout (the spec pairs none with code 20)."""
    control_api: bool = True
    """Serve ``/_emulator/``; ``False`` makes the emulator a pure fake (404 there)."""
    events_kept: int = 1000
    """How many recent lifecycle events ``/_emulator/events`` keeps."""

    # -- NCS callbacks (spec §8, §12.12; see _callbacks) --
    callback_url: str | None = None
    """Where to POST signed callbacks (101 joined, 102 left); ``None`` sends none."""
    callback_secret: str = "emulator-ncs-secret"
    """The NCS secret the callbacks are signed with."""
    callback_loss: float = 0.0
    """Probability (0..1) that a notification is never sent (NCS may lose them)."""
    callback_duplicate: float = 0.0
    """Probability (0..1) that a notification is sent twice, with the same noticeId."""
    callback_reorder: float = 0.0
    """Probability (0..1) that a notification is held back and sent after the next one."""
    callback_retries: int = 3
    """Resends after a non-200 answer, an error or a timeout (spec §8.1: up to 3)."""
    callback_timeout: float = 10.0
    """Seconds to wait for the receiver's answer (spec §8.1: 10 s)."""
    # SPEC-SILENT: the delay between NCS resends is undocumented.
    callback_retry_delay: float = 0.5
    """Seconds between a failed attempt and its resend."""
    callback_poll_interval: float = 0.05
    """How often the running sender applies time-driven changes (seconds)."""

    extra: Mapping[str, object] = field(default_factory=dict)
    """Free-form settings for later extensions; ignored."""


def resolve_app_ids(
    config: EmulatorConfig, environ: Mapping[str, str] | None = None
) -> frozenset[str]:
    """The App IDs with STT enabled: explicit ones, or the default plus ``AGORA_APP_ID``."""
    if config.app_ids is not None:
        return frozenset(config.app_ids)
    env = os.environ if environ is None else environ
    ids = {C.EMULATOR_APP_ID}
    if env.get(C.ENV_APP_ID):
        ids.add(env[C.ENV_APP_ID])
    return frozenset(ids)


def resolve_credentials(
    config: EmulatorConfig, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Accepted Customer ID → Secret pairs: explicit ones, or the default plus the env pair."""
    if config.credentials is not None:
        return dict(config.credentials)
    env = os.environ if environ is None else environ
    pairs = {C.EMULATOR_CUSTOMER_ID: C.EMULATOR_CUSTOMER_SECRET}
    customer_id = env.get(C.ENV_CUSTOMER_ID)
    secret = env.get(C.ENV_CUSTOMER_SECRET)
    if customer_id or secret:
        pairs[customer_id or C.EMULATOR_CUSTOMER_ID] = secret or C.EMULATOR_CUSTOMER_SECRET
    return pairs
