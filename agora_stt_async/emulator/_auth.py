"""Who may call the emulated service, and how often: auth, the STT switch, the QPS limit.

- Basic auth (spec §3.1): ``Authorization: Basic base64(<Customer ID>:<Customer Secret>)``,
  the scheme case-insensitive (Agora's own Python sample sends ``basic``); anything else
  answers 401 ``{"message": "Invalid authentication credentials"}``.
- RTC-token auth (spec §3.2, §12.2), only when ``EmulatorConfig.rtc_tokens`` is set:
  ``Authorization: agora token="<AccessToken2>"``. The emulator cannot check an
  AccessToken2 signature (it has no App Certificate), so the tokens it accepts are
  configured, each with its expiry: a configured, unexpired token is accepted; an expired
  one answers 401 ``{"message": "Token is expired"}``; any other value (malformed or
  unknown) 401 ``{"message": "Invalid token"}``.
- The STT switch (spec §12.2): an App ID without STT answers v7 403 ``ServiceNotEnabled``
  ([INFERRED]) or legacy 400 ``{"message": "invalid_appid!", "code": 62}`` (spec §6.1).
- The optional QPS limit (``EmulatorConfig.qps_limit``): a sliding one-second window of
  accepted requests per App ID; beyond it, 429 with ``Retry-After``.

No HTTP framework here beyond building the refusal with ``_envelopes``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import re
from collections import deque
from collections.abc import Mapping
from typing import Final

from starlette.responses import Response

from agora_stt_async.emulator._config import SupportsNow
from agora_stt_async.emulator._envelopes import AUTH_FAILED, Generation, json_response

# spec §3.2: the quotes are part of the header value.
_RTC_TOKEN: Final = re.compile(r'token="([^"]+)"')
TOKEN_EXPIRED: Final = {"message": "Token is expired"}  # spec §3.2
TOKEN_INVALID: Final = {"message": "Invalid token"}  # spec §3.2


class Authenticator:
    """Checks a request's ``Authorization`` header and App ID; answers the refusal, if any.

    Args:
        credentials: Customer ID → Customer Secret pairs Basic auth accepts.
        app_ids: App IDs with STT enabled.
        rtc_tokens: RTC tokens accepted by ``agora token="…"``, each with its expiry (Unix
            seconds); ``None`` turns RTC-token auth off (such headers are then 401
            "Invalid authentication credentials", as any other unknown scheme).
        clock: what "expired" is measured against.
    """

    def __init__(
        self,
        credentials: Mapping[str, str],
        app_ids: frozenset[str],
        rtc_tokens: Mapping[str, float] | None,
        clock: SupportsNow,
    ) -> None:
        self._credentials = {cid.encode(): secret.encode() for cid, secret in credentials.items()}
        self.app_ids = app_ids
        self._rtc_tokens = dict(rtc_tokens) if rtc_tokens is not None else None
        self._clock = clock

    def refusal(self, authorization: str, app_id: str, generation: Generation) -> Response | None:
        """``None`` if the call may proceed, else the response that refuses it."""
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "agora" and self._rtc_tokens is not None:
            refused = self._rtc_refusal(value.strip())
            if refused is not None:
                return json_response(refused, 401)
        elif not (scheme == "basic" and self._basic_ok(value)):
            return json_response(AUTH_FAILED, 401)
        if app_id in self.app_ids:
            return None
        if generation == "v7":
            # SPEC-SILENT (spec §12.2 [INFERRED]): v7 answers 403 ServiceNotEnabled.
            detail = "Real-Time STT is not enabled for this App ID"
            return json_response({"detail": detail, "reason": "ServiceNotEnabled"}, 403)
        return json_response({"message": "invalid_appid!", "code": 62}, 400)  # spec §6.1

    def _basic_ok(self, value: str) -> bool:
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        customer_id, colon, secret = decoded.partition(b":")
        expected = self._credentials.get(customer_id)
        return bool(colon) and expected is not None and hmac.compare_digest(secret, expected)

    def _rtc_refusal(self, value: str) -> dict[str, str] | None:
        assert self._rtc_tokens is not None
        match = _RTC_TOKEN.fullmatch(value)
        expiry = self._rtc_tokens.get(match.group(1)) if match else None
        if expiry is None:
            return TOKEN_INVALID
        # SPEC-SILENT (spec §3.2): how the token's channel/uid is checked is undocumented;
        # the emulator checks only that it is one it was given, and its expiry.
        if self._clock.now() >= expiry:
            return TOKEN_EXPIRED
        return None


class QpsLimiter:
    """A sliding one-second window of accepted requests per App ID.

    SPEC-SILENT (spec §7): STT publishes no QPS number; see ``EmulatorConfig.qps_limit``.
    """

    def __init__(self, limit: float, clock: SupportsNow) -> None:
        self._limit = limit
        self._clock = clock
        self.windows: dict[str, deque[float]] = {}
        """Accepted request times per App ID, within the last second."""

    def wait(self, app_id: str) -> int | None:
        """``None`` if a request of ``app_id`` is within the limit (it is counted), else
        the whole seconds to wait (``Retry-After``) until the window has room."""
        now = self._clock.now()
        accepted = self.windows.setdefault(app_id, deque())
        while accepted and accepted[0] <= now - 1.0:
            accepted.popleft()
        if len(accepted) >= self._limit:
            return max(1, math.ceil(accepted[0] + 1.0 - now))
        accepted.append(now)
        return None
