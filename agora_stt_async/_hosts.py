"""Regional hosts and failover bookkeeping.

Rule 1: pure logic (layer L2): stdlib, ``_constants`` and ``_errors`` only; never httpx,
anyio or ``_clock``. Rule 2: no I/O, no ``await``, no clock reads: ``now`` (monotonic
seconds) is passed in.

The STT docs name one host, ``https://api.agora.io`` (spec §2.1), and that is the
default. Agora's domain-switching guide for its other REST products (spec §2.2) lists
regional hosts under ``agora.io`` and ``sd-rtn.com``; ``hosts_for_area()`` groups them
into four areas with the ordering of Agora's community client
(``agora-rest-client-python``): the two ``agora.io`` hosts first, then the two
``sd-rtn.com`` hosts, and the reverse for CN. Using them is opt-in: the docs do not say
that STT is deployed in every region (spec §2.2 rule 5).

``HostPool`` keeps requests on the host that works and sets a failing one aside for a
cooldown. Which failures count is the caller's choice; ``counts_as_host_failure()`` is
the rule ``_http.py`` uses:

* ``ConnectError`` counts (DNS, refused, TLS: the host could not be reached);
* an ``APIError`` with HTTP status >= 500 counts (the gateway or the service there is
  failing; another region may not be);
* nothing else does: a 4xx (429 included: the rate limit is per App ID, so moving
  would not help and would only dodge it), an Agora code sent with a 4xx (code 20 on a
  400 is the operation timing out, not the host), and ``RequestTimeout`` /
  ``ConnectionLost`` (the host accepted the request; slowness belongs to the call).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from typing import Final, final

from agora_stt_async._constants import DEFAULT_BASE_URL
from agora_stt_async._errors import APIError, ConfigurationError, ConnectError, UsageError

__all__ = [
    "Area",
    "HostPool",
    "counts_as_host_failure",
    "hosts_for_area",
]


class Area(str, enum.Enum):
    """A group of regional REST hosts (spec §2.2), as in Agora's community client."""

    US = "us"
    EU = "eu"
    AP = "ap"
    CN = "cn"

    @classmethod
    def _missing_(cls, value: object) -> Area | None:
        # Accept "US" as well as "us" (environment variables, CLI flags).
        if isinstance(value, str):
            for member in cls:
                if member.value == value.strip().lower():
                    return member
        return None

    def __str__(self) -> str:
        return self.value


# spec §2.2 table; region prefixes in the community client's order within each area.
_AREA_REGIONS: Final[dict[Area, tuple[str, str]]] = {
    Area.US: ("api-us-west-1", "api-us-east-1"),
    Area.EU: ("api-eu-west-1", "api-eu-central-1"),
    Area.AP: ("api-ap-southeast-1", "api-ap-northeast-1"),
    Area.CN: ("api-cn-east-1", "api-cn-north-1"),
}
_OVERSEA_DOMAIN: Final = "agora.io"
_MAINLAND_DOMAIN: Final = "sd-rtn.com"


def hosts_for_area(area: Area | str | None) -> tuple[str, ...]:
    """The base URLs to try, in order, for ``area``.

    Args:
        area: an ``Area``, its name (``"us"``, ``"EU"``, ...), or ``None`` for the
            single documented global host.

    Returns:
        Full base URLs without a trailing slash, e.g. ``("https://api-us-west-1.agora.io",
        "https://api-us-east-1.agora.io", "https://api-us-west-1.sd-rtn.com",
        "https://api-us-east-1.sd-rtn.com")``; ``("https://api.agora.io",)`` for ``None``.

    Raises:
        ConfigurationError: an unknown area name.
    """
    if area is None:
        return (DEFAULT_BASE_URL,)
    try:
        member = Area(area)
    except ValueError:
        choices = ", ".join(m.value for m in Area)
        raise ConfigurationError(f"unknown area {area!r}; choose one of {choices}") from None
    domains = (_OVERSEA_DOMAIN, _MAINLAND_DOMAIN)
    if member is Area.CN:  # mainland China: the sd-rtn.com hosts first
        domains = (_MAINLAND_DOMAIN, _OVERSEA_DOMAIN)
    return tuple(
        f"https://{region}.{domain}" for domain in domains for region in _AREA_REGIONS[member]
    )


def counts_as_host_failure(error: BaseException) -> bool:
    """Whether ``error`` should set its host aside: ``ConnectError`` or HTTP 5xx."""
    if isinstance(error, ConnectError):
        return True
    return isinstance(error, APIError) and error.status_code >= 500


@final
class _Host:
    __slots__ = ("failures", "until", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures = 0  # consecutive failures, reset by a success
        self.until = -math.inf  # set aside until this monotonic time

    def healthy(self, now: float) -> bool:
        return self.until <= now


@final
class HostPool:
    """Which base URL a request goes to; pure bookkeeping over monotonic time.

    Requests stay on the *active* host while it is healthy, even after a host earlier
    in the list recovers (a working connection pool is worth more than the order).
    A reported failure sets a host aside for ``cooldown_s``, doubled on each further
    failure after its cooldown ended, up to ``max_cooldown_s``. The next healthy host
    in ring order then becomes active. If every host is set aside, the one whose
    cooldown ends first is returned: there is always an answer.

    A failure reported while the host is already set aside does not extend it: it is
    the same outage, seen by a request that was already in flight. A success clears
    the host's penalty.

    Not thread-safe; one event loop owns it and no method awaits.
    """

    __slots__ = ("_active", "_hosts", "_index", "cooldown_s", "max_cooldown_s")

    def __init__(
        self, urls: Iterable[str], *, cooldown_s: float = 30.0, max_cooldown_s: float = 300.0
    ) -> None:
        """Args:
            urls: base URLs in order of preference; a trailing ``/`` is dropped and
                duplicates are kept once.
            cooldown_s: seconds a host is set aside after its first failure.
            max_cooldown_s: the longest cooldown after repeated failures.

        Raises:
            ConfigurationError: no URL, an empty or non-string URL, or a cooldown that
                is negative, not finite, or below ``cooldown_s`` for the maximum.
        """
        seen: dict[str, None] = {}
        for url in urls:
            item: object = url  # callers without type checking pass anything
            if not isinstance(item, str) or not item.strip():
                raise ConfigurationError(f"a host URL must be a non-empty string, got {item!r}")
            seen.setdefault(_normalise(item), None)
        if not seen:
            raise ConfigurationError("a host pool needs at least one base URL")
        for name, value in (("cooldown_s", cooldown_s), ("max_cooldown_s", max_cooldown_s)):
            checked: object = value  # callers without type checking pass anything
            if not (isinstance(checked, (int, float)) and math.isfinite(checked) and checked >= 0):
                raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
        if max_cooldown_s < cooldown_s:
            raise ConfigurationError(
                f"max_cooldown_s ({max_cooldown_s!r}) must be >= cooldown_s ({cooldown_s!r})"
            )
        self.cooldown_s = float(cooldown_s)
        self.max_cooldown_s = float(max_cooldown_s)
        self._hosts = tuple(_Host(url) for url in seen)
        self._index = {host.url: i for i, host in enumerate(self._hosts)}
        self._active = 0

    @classmethod
    def for_area(cls, area: Area | str | None, **options: float) -> HostPool:
        """A pool over ``hosts_for_area(area)``; ``options`` as for the constructor."""
        return cls(hosts_for_area(area), **options)

    @property
    def urls(self) -> tuple[str, ...]:
        """Every base URL of the pool, in order of preference."""
        return tuple(host.url for host in self._hosts)

    def current(self, now: float) -> str:
        """The base URL for a request starting at ``now``.

        The active host if it is healthy; else the next healthy host in ring order
        (which becomes active); else the host whose cooldown ends first.
        """
        active = self._hosts[self._active]
        if active.healthy(now):  # the common case, on every request: no list built
            return active.url
        n = len(self._hosts)
        order = [(self._active + step) % n for step in range(n)]
        for i in order:
            if self._hosts[i].healthy(now):
                self._active = i
                return self._hosts[i].url
        # Everything is set aside: min() keeps the first of equal ends, in ring order.
        self._active = min(order, key=lambda i: self._hosts[i].until)
        return self._hosts[self._active].url

    def report_failure(self, url: str, now: float) -> None:
        """``url`` failed at ``now`` (the caller decides what counts; see the module).

        Raises:
            UsageError: ``url`` is not one of the pool's base URLs.
        """
        host = self._host(url)
        if not host.healthy(now):
            return  # already set aside: a request that was in flight saw the same outage
        host.failures += 1
        try:
            cooldown = self.cooldown_s * 2.0 ** (host.failures - 1)
        except OverflowError:
            cooldown = math.inf
        host.until = now + min(self.max_cooldown_s, cooldown)

    def report_success(self, url: str, now: float) -> None:
        """``url`` answered at ``now``: clear its penalty.

        Raises:
            UsageError: ``url`` is not one of the pool's base URLs.
        """
        host = self._host(url)
        host.failures = 0
        host.until = -math.inf

    def is_healthy(self, url: str, now: float) -> bool:
        """Whether ``url`` is not set aside at ``now``.

        Raises:
            UsageError: ``url`` is not one of the pool's base URLs.
        """
        return self._host(url).healthy(now)

    def _host(self, url: str) -> _Host:
        index = self._index.get(_normalise(url))
        if index is None:
            raise UsageError(f"{url!r} is not a base URL of this pool: {self.urls}")
        return self._hosts[index]

    def __repr__(self) -> str:
        return f"HostPool({list(self.urls)!r}, cooldown_s={self.cooldown_s!r})"


def _normalise(url: str) -> str:
    return url.strip().rstrip("/")
