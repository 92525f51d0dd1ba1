"""Shared fixtures: both anyio backends, and a clean environment for every test."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Property tests run the same examples on every run and every machine: a failure seen
# once is seen again. HYPOTHESIS_PROFILE=explore turns the randomness back on locally.
settings.register_profile("deterministic", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"debug": True}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Every async test runs on asyncio and on trio."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's AGORA_* variables never leak into a test."""
    for name in (
        "AGORA_APP_ID",
        "AGORA_CUSTOMER_ID",
        "AGORA_CUSTOMER_SECRET",
        "AGORA_STT_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
