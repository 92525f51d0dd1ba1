"""Regional hosts and failover bookkeeping (``agora_stt_async._hosts``)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora_stt_async._errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    RequestTimeout,
    UsageError,
    error_from_response,
)
from agora_stt_async._hosts import Area, HostPool, counts_as_host_failure, hosts_for_area

A, B, C, D = "https://a.example", "https://b.example", "https://c.example", "https://d.example"

# --- areas -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("area", "expected"),
    [
        pytest.param(
            Area.US,
            (
                "https://api-us-west-1.agora.io",
                "https://api-us-east-1.agora.io",
                "https://api-us-west-1.sd-rtn.com",
                "https://api-us-east-1.sd-rtn.com",
            ),
            id="us",
        ),
        pytest.param(
            Area.EU,
            (
                "https://api-eu-west-1.agora.io",
                "https://api-eu-central-1.agora.io",
                "https://api-eu-west-1.sd-rtn.com",
                "https://api-eu-central-1.sd-rtn.com",
            ),
            id="eu",
        ),
        pytest.param(
            Area.AP,
            (
                "https://api-ap-southeast-1.agora.io",
                "https://api-ap-northeast-1.agora.io",
                "https://api-ap-southeast-1.sd-rtn.com",
                "https://api-ap-northeast-1.sd-rtn.com",
            ),
            id="ap",
        ),
        pytest.param(
            Area.CN,
            (
                "https://api-cn-east-1.sd-rtn.com",
                "https://api-cn-north-1.sd-rtn.com",
                "https://api-cn-east-1.agora.io",
                "https://api-cn-north-1.agora.io",
            ),
            id="cn-sd-rtn-first",
        ),
        pytest.param(None, ("https://api.agora.io",), id="global-default"),
        pytest.param("eu", hosts_for_area(Area.EU), id="lower-case-name"),
        pytest.param(" CN ", hosts_for_area(Area.CN), id="upper-case-name"),
    ],
)
def test_hosts_for_area(area: Area | str | None, expected: tuple[str, ...]) -> None:
    """Each area lists the community client's hosts in its order, as full base URLs."""
    assert hosts_for_area(area) == expected


def test_hosts_for_area_covers_the_spec_table() -> None:
    """The four areas together hold the 16 regional hosts of spec §2.2, once each."""
    every = [url for area in Area for url in hosts_for_area(area)]
    assert len(every) == len(set(every)) == 16
    assert all(url.startswith("https://api-") for url in every)


@pytest.mark.parametrize("area", ["mars", "", "us-west"])
def test_hosts_for_area_unknown(area: str) -> None:
    """An unknown area name is a ConfigurationError listing the choices."""
    with pytest.raises(ConfigurationError, match="us, eu, ap, cn"):
        hosts_for_area(area)


# --- which failures count --------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(ConnectError("x"), True, id="connect"),
        pytest.param(error_from_response(500, b""), True, id="500"),
        pytest.param(error_from_response(502, b"<html/>"), True, id="502"),
        pytest.param(error_from_response(503, b""), True, id="503"),
        pytest.param(error_from_response(504, b'{"code":504}'), True, id="504-code"),
        pytest.param(RequestTimeout("x"), False, id="timeout"),
        pytest.param(ConnectionLost("x"), False, id="lost"),
        pytest.param(error_from_response(429, b""), False, id="429"),
        pytest.param(error_from_response(400, b'{"code":20}'), False, id="400-code-20"),
        pytest.param(error_from_response(404, b""), False, id="404"),
        pytest.param(ValueError("bug"), False, id="bug"),
    ],
)
def test_counts_as_host_failure(error: BaseException, expected: bool) -> None:
    """Connect errors and 5xx set a host aside; nothing else does."""
    assert counts_as_host_failure(error) is expected


# --- HostPool --------------------------------------------------------------------------


def test_pool_starts_on_the_first_host() -> None:
    """With no failure the first URL is used, again and again."""
    pool = HostPool([A, B, C])
    assert [pool.current(t) for t in (0.0, 100.0, 1e6)] == [A, A, A]
    assert pool.urls == (A, B, C)


def test_pool_moves_on_and_stays_on_the_working_host() -> None:
    """A failure moves to the next host, which is kept after the first one recovers."""
    pool = HostPool([A, B, C])
    pool.report_failure(A, 0.0)
    assert not pool.is_healthy(A, 0.0)
    assert pool.current(0.0) == B
    assert pool.is_healthy(A, 30.0)
    assert pool.current(31.0) == B


def test_pool_moves_in_ring_order() -> None:
    """After B fails, C is next, not A; after D, back to A."""
    pool = HostPool([A, B, C, D])
    pool.report_failure(A, 0.0)
    assert pool.current(0.0) == B
    pool.report_failure(B, 40.0)
    assert pool.current(40.0) == C
    pool.report_failure(C, 41.0)
    assert pool.current(41.0) == D
    pool.report_failure(D, 42.0)
    assert pool.current(42.0) == A


def test_pool_cooldown_doubles_up_to_the_cap() -> None:
    """Each failure after a cooldown doubles it: 30, 60, 120, then the 200 s cap."""
    pool = HostPool([A, B], cooldown_s=30.0, max_cooldown_s=200.0)
    now = 0.0
    for cooldown in (30.0, 60.0, 120.0, 200.0, 200.0):
        pool.report_failure(A, now)
        assert not pool.is_healthy(A, now + cooldown - 0.001)
        assert pool.is_healthy(A, now + cooldown)
        now += cooldown


def test_pool_success_clears_the_penalty() -> None:
    """A success resets the failure count and ends any cooldown."""
    pool = HostPool([A, B])
    pool.report_failure(A, 0.0)
    pool.report_failure(A, 30.0)  # second failure: 60 s
    pool.report_success(A, 31.0)
    assert pool.is_healthy(A, 31.0)
    pool.report_failure(A, 40.0)  # counts from one again: 30 s
    assert pool.is_healthy(A, 70.0)


def test_pool_in_flight_failure_does_not_extend() -> None:
    """A second failure during the cooldown is the same outage: no doubling, no extension."""
    pool = HostPool([A, B])
    pool.report_failure(A, 0.0)
    pool.report_failure(A, 10.0)
    assert pool.is_healthy(A, 30.0)
    pool.report_failure(A, 30.0)  # after the cooldown: the second failure, 60 s
    assert not pool.is_healthy(A, 89.0)


def test_pool_all_set_aside_returns_the_soonest() -> None:
    """When every host is set aside, the one whose cooldown ends first is used."""
    pool = HostPool([A, B, C])
    pool.report_failure(B, 0.0)
    pool.report_failure(C, 1.0)
    pool.report_failure(A, 2.0)
    assert pool.current(3.0) == B
    assert pool.current(30.0) == B  # healthy again


def test_pool_all_set_aside_tie_goes_in_ring_order() -> None:
    """Equal cooldown ends: the first one after the active host wins."""
    pool = HostPool([A, B, C])
    for url in (A, B, C):
        pool.report_failure(url, 0.0)
    assert pool.current(1.0) == A


def test_pool_single_host_is_always_returned() -> None:
    """A pool of one never answers nothing, however often it fails."""
    pool = HostPool(["https://api.agora.io"])
    for t in range(10):
        pool.report_failure("https://api.agora.io", float(t * 100))
        assert pool.current(float(t * 100)) == "https://api.agora.io"


def test_pool_normalises_and_dedupes() -> None:
    """Trailing slashes are dropped and duplicates kept once."""
    pool = HostPool([A + "/", A, B])
    assert pool.urls == (A, B)
    pool.report_failure(A + "/", 0.0)
    assert pool.current(0.0) == B


def test_pool_for_area() -> None:
    """for_area builds a pool over the area's hosts."""
    pool = HostPool.for_area("ap", cooldown_s=5.0)
    assert pool.urls == hosts_for_area(Area.AP)
    assert pool.cooldown_s == 5.0
    assert HostPool.for_area(None).current(0.0) == "https://api.agora.io"


def test_pool_unknown_url_is_a_usage_error() -> None:
    """Reporting a URL the pool did not hand out is a bug, said loudly."""
    pool = HostPool([A])
    with pytest.raises(UsageError, match="not a base URL"):
        pool.report_failure(B, 0.0)
    with pytest.raises(UsageError):
        pool.report_success(A + "/v1/projects", 0.0)


@pytest.mark.parametrize(
    ("urls", "kwargs"),
    [
        pytest.param([], {}, id="empty"),
        pytest.param([""], {}, id="empty-url"),
        pytest.param([None], {}, id="not-a-string"),
        pytest.param([A], {"cooldown_s": -1.0}, id="negative-cooldown"),
        pytest.param([A], {"cooldown_s": math.nan}, id="nan-cooldown"),
        pytest.param([A], {"max_cooldown_s": math.inf}, id="infinite-cap"),
        pytest.param([A], {"cooldown_s": 60.0, "max_cooldown_s": 30.0}, id="cap-below"),
    ],
)
def test_pool_validation(urls: list[object], kwargs: dict[str, float]) -> None:
    """Bad pools raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        HostPool(urls, **kwargs)  # type: ignore[arg-type]


# --- properties ------------------------------------------------------------------------

URLS = (A, B, C, D)
operations = st.lists(
    st.tuples(
        st.sampled_from(["fail", "ok", "current"]),
        st.integers(0, len(URLS) - 1),
        st.floats(0.0, 100.0),
    ),
    max_size=60,
)


@settings(max_examples=150)
@given(
    size=st.integers(1, len(URLS)),
    ops=operations,
    cooldown=st.one_of(st.just(0.0), st.floats(0.01, 60.0)),
)
def test_property_pool_answers_and_stays_on_a_working_host(
    size: int, ops: list[tuple[str, int, float]], cooldown: float
) -> None:
    """current() always names a pool URL, healthy if any is, and keeps a host that works."""
    urls = URLS[:size]
    pool = HostPool(urls, cooldown_s=cooldown, max_cooldown_s=4 * cooldown)
    now, previous = 0.0, None
    for kind, index, step in ops:
        now += step
        url = urls[index % size]
        if kind == "fail":
            was_healthy = pool.is_healthy(url, now)
            pool.report_failure(url, now)
            if was_healthy and cooldown > 0:
                assert not pool.is_healthy(url, now)
        elif kind == "ok":
            pool.report_success(url, now)
            assert pool.is_healthy(url, now)
        else:
            answer = pool.current(now)
            assert answer in urls
            if any(pool.is_healthy(u, now) for u in urls):
                assert pool.is_healthy(answer, now)
            if previous is not None and pool.is_healthy(previous, now):
                assert answer == previous
            previous = answer
