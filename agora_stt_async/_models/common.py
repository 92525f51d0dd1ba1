"""What every parsed result keeps of the HTTP exchange it came from."""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen
class ResponseInfo:
    """The exchange behind a result: status, headers and the request id.

    ``headers`` never includes the request's ``Authorization``: only response headers
    are kept.
    """

    status_code: int
    request_id: str | None
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    elapsed_s: float = 0.0
