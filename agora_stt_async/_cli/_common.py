"""What every command shares: settings, the exit-code table, running a coroutine, and
turning an error into a clear message and an exit status.

Exit statuses come from one table keyed by error class (``EXIT_CODES``), the way click
gives each exception class its ``exit_code``; the most specific class in an error's MRO
wins. Messages never contain a credential: the SDK's errors carry none, and the CLI
itself only ever names the environment variables, never their values.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final, NoReturn, TypeVar

import anyio
import attrs
import click
from click.core import ParameterSource

from agora_stt_async import (
    AgoraSTTError,
    APIError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    BuilderTokenError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ResponseError,
    RetryPolicy,
    ServerError,
    ServiceNotEnabledError,
    SessionError,
    StopIncompleteError,
    TransportError,
    UsageError,
    ValidationError,
)
from agora_stt_async._cli import _render
from agora_stt_async.stores import StoreError

F = TypeVar("F", bound=Callable[..., object])
_V = TypeVar("_V")

# The variables AsyncClient reads (the SDK's own names; the CLI only ever prints names).
ENV_APP_ID: Final = "AGORA_APP_ID"
ENV_CUSTOMER_ID: Final = "AGORA_CUSTOMER_ID"
ENV_CUSTOMER_SECRET: Final = "AGORA_CUSTOMER_SECRET"
ENV_BASE_URL: Final = "AGORA_STT_BASE_URL"
CREDENTIAL_VARIABLES: Final = (ENV_APP_ID, ENV_CUSTOMER_ID, ENV_CUSTOMER_SECRET)

# The emulator's published test credentials (README "Emulator"); not secrets. Kept here
# because the SDK's constants module is private to the CLI (tests/test_cli.py checks
# these equal the emulator's defaults).
EMULATOR_APP_ID: Final = "emulatorapp0000000000000000000000"
EMULATOR_CUSTOMER_ID: Final = "emulator"
EMULATOR_CUSTOMER_SECRET: Final = "emulator-secret"


# --- exit statuses ---------------------------------------------------------------------

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
"""Tasks leaked, a stop could not be confirmed, or something unexpected."""
EXIT_USAGE: Final = 2
"""Bad command line (click's own ``UsageError`` status)."""
EXIT_AUTH: Final = 3
EXIT_NOT_FOUND: Final = 4
EXIT_INVALID: Final = 5
EXIT_SERVICE: Final = 6


class CLIFailure(Exception):
    """A failure the CLI itself detects (before any request is sent)."""


class CredentialsMissing(CLIFailure):
    """One of the credential environment variables is not set."""


class StoreMissing(CLIFailure):
    """The ``--store`` file does not exist."""


class NothingMatched(CLIFailure):
    """A key or id given on the command line is not known."""


EXIT_CODES: Final[Mapping[type[BaseException], int]] = {
    # bad or missing credentials, or an App ID without STT
    CredentialsMissing: EXIT_AUTH,
    AuthenticationError: EXIT_AUTH,
    PermissionDeniedError: EXIT_AUTH,
    ServiceNotEnabledError: EXIT_AUTH,
    # not found
    NotFoundError: EXIT_NOT_FOUND,
    NothingMatched: EXIT_NOT_FOUND,
    # invalid input: refused locally or by the server as malformed
    ValidationError: EXIT_INVALID,
    ConfigurationError: EXIT_INVALID,
    BadRequestError: EXIT_INVALID,
    BuilderTokenError: EXIT_INVALID,
    ConflictError: EXIT_INVALID,
    StoreMissing: EXIT_INVALID,
    StoreError: EXIT_INVALID,
    # the service (or the way to it) failed
    ServerError: EXIT_SERVICE,
    RateLimitError: EXIT_SERVICE,
    QuotaExceededError: EXIT_SERVICE,
    TransportError: EXIT_SERVICE,
    ResponseError: EXIT_SERVICE,
    APIError: EXIT_SERVICE,
    TimeoutError: EXIT_SERVICE,
    # the rest
    StopIncompleteError: EXIT_FAILURE,
    SessionError: EXIT_FAILURE,
    UsageError: EXIT_FAILURE,
    AgoraSTTError: EXIT_FAILURE,
}
"""Exit status by error class; the first class of the error's MRO found here wins."""

HINTS: Final[Mapping[type[BaseException], str]] = {
    CredentialsMissing: (
        f"set {ENV_APP_ID}, {ENV_CUSTOMER_ID} and {ENV_CUSTOMER_SECRET} "
        "(Agora Console → RESTful API; the emulator's are in the README)"
    ),
    AuthenticationError: (
        f"check {ENV_CUSTOMER_ID} and {ENV_CUSTOMER_SECRET} (Agora Console → RESTful API)"
    ),
    PermissionDeniedError: f"these credentials may not manage the App ID in {ENV_APP_ID}",
    ServiceNotEnabledError: (
        f"check {ENV_APP_ID}, and enable Real-Time STT for it in Agora Console"
    ),
    NotFoundError: "no such agent or task: it may have ended and been cleaned up",
    NothingMatched: "check the id or key (list them first)",
    BuilderTokenError: "pass the builder token that started this task (--token)",
    StoreMissing: "pass the file your service's SqliteStore uses (--store)",
    RateLimitError: "too many requests: wait a little and try again",
    ServerError: "the service failed after retries: try again later",
    TransportError: "the service could not be reached: check --base-url and the network",
    TimeoutError: "the service did not answer in time: try again later",
    StopIncompleteError: "some stops were not confirmed: run the command again",
}


def lookup(table: Mapping[type[BaseException], _V], error: BaseException) -> _V | None:
    """The value of the most specific class of ``error`` found in ``table``."""
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return None


def exit_code_for(error: BaseException) -> int:
    """The exit status for ``error`` (``EXIT_FAILURE`` if no class of it is listed)."""
    code = lookup(EXIT_CODES, error)
    return EXIT_FAILURE if code is None else code


_REQUEST_ID_SUFFIX: Final = re.compile(r" \[request id [^\]]*\]")


def request_id_of(error: BaseException) -> str | None:
    rid = getattr(error, "request_id", None)
    return rid if isinstance(rid, str) and rid else None


def describe(error: BaseException) -> str:
    """``error`` as one line, without its request id (``--verbose`` prints that apart)."""
    text = _REQUEST_ID_SUFFIX.sub("", str(error)) or type(error).__name__
    return text if isinstance(error, CLIFailure) else f"{type(error).__name__}: {text}"


def describe_for(error: BaseException, *, verbose: bool) -> str:
    """``describe(error)``, plus its request id with ``verbose`` (for table cells)."""
    rid = request_id_of(error)
    return describe(error) + (f" (request id {rid})" if verbose and rid else "")


def report(error: BaseException, *, verbose: bool, json_mode: bool) -> int:
    """Print ``error`` (and, with ``json_mode``, a JSON object on stdout); return the status."""
    code = exit_code_for(error)
    message = describe(error)
    hint = lookup(HINTS, error)
    rid = request_id_of(error)
    _render.error(message, hint=hint, request_id=rid if verbose else None)
    if json_mode:
        body: dict[str, object] = {"type": type(error).__name__, "message": message}
        if hint:
            body["hint"] = hint
        if verbose and rid:
            body["request_id"] = rid
        body["exit_code"] = code
        _render.json_object({"error": body})
    return code


# --- settings and options ----------------------------------------------------------------


@attrs.frozen
class Settings:
    """Options every command takes, at the group level or its own.

    ``base_url_given``: the base URL came from ``--base-url`` on the command line, not
    from ``AGORA_STT_BASE_URL``.
    """

    base_url: str | None = None
    verbose: bool = False
    base_url_given: bool = False


BASE_URL_PRECEDENCE: Final = (
    f"A --base-url on the command line, before or after the command, beats {ENV_BASE_URL}; "
    "given both before and after the command with different values, the command is refused."
)


def connection_options(f: F) -> F:
    """``--base-url`` and ``--verbose``, on the group and on each command."""
    return connection_options_defaulting_to("https://api.agora.io")(f)


def connection_options_defaulting_to(default: str) -> Callable[[F], F]:
    """``connection_options`` whose ``--base-url`` help names ``default``."""

    def decorate(f: F) -> F:
        f = click.option(
            "--verbose",
            "-v",
            is_flag=True,
            default=False,
            help="Log each request (with its request id) to stderr; show request ids of failures.",
        )(f)
        return click.option(
            "--base-url",
            envvar=ENV_BASE_URL,
            show_envvar=True,
            metavar="URL",
            default=None,
            help=f"Service base URL (default: {default}). {BASE_URL_PRECEDENCE}",
        )(f)

    return decorate


def json_option(f: F) -> F:
    return click.option(
        "--json", "json_mode", is_flag=True, default=False, help="Print JSON instead of tables."
    )(f)


def base_url_given(ctx: click.Context) -> bool:
    """Whether this command's own ``--base-url`` was typed on the command line."""
    return ctx.get_parameter_source("base_url") is ParameterSource.COMMANDLINE


def settings(ctx: click.Context, base_url: str | None, verbose: bool) -> Settings:
    """The settings of the command of ``ctx``: its own options over the group's.

    Both ``--base-url`` options also read ``AGORA_STT_BASE_URL``, so the value alone
    cannot tell a typed URL from the environment's: where each came from decides. A
    URL typed anywhere on the command line beats the environment (an operator with
    production variables exported who types a local URL must reach the local one).

    Raises:
        click.UsageError: two different URLs typed (before and after the command), or an
            empty one.
    """
    parent = ctx.find_object(Settings) or Settings()
    given = base_url_given(ctx)
    if given and parent.base_url_given and base_url != parent.base_url:
        # SPEC-SILENT (CLI): refused rather than picking one; a stop aimed at the wrong
        # service cannot be undone.
        raise click.UsageError(
            f"--base-url given twice with different values ({parent.base_url} before the "
            f"command, {base_url} after it): give it once"
        )
    if given:
        url, typed = base_url, True
    elif parent.base_url_given:
        url, typed = parent.base_url, True
    else:  # from the environment on both levels (the same value), or unset
        url, typed = base_url or parent.base_url, False
    if typed and not url:
        raise click.UsageError("--base-url must not be empty")
    return Settings(base_url=url, verbose=verbose or parent.verbose, base_url_given=typed)


def make_client(
    settings: Settings, *, retry: RetryPolicy | None = None, fast: bool | None = False
) -> AsyncClient:
    """A client for the configured service, credentials from the environment.

    ``fast=False`` by default: a command sends a handful of requests, and importing
    aiohttp would cost more than it saves.

    Raises:
        CredentialsMissing: a credential variable is unset.
        ConfigurationError: the base URL is unusable.
    """
    missing = [name for name in CREDENTIAL_VARIABLES if not os.environ.get(name)]
    if missing:
        raise CredentialsMissing("missing credentials: " + ", ".join(missing) + " not set")
    return AsyncClient(base_url=settings.base_url, retry=retry, fast=fast)


# --- running ---------------------------------------------------------------------------------


@contextmanager
def sdk_logging(verbose: bool) -> Iterator[None]:
    """Send the SDK's log lines to stderr while a command runs: every request with its
    request id at DEBUG with ``--verbose``, errors only otherwise (a command reports its
    own failures). The SDK's lines carry no secret (redacted at the source)."""
    logger = logging.getLogger("agora_stt_async")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.setLevel(logging.DEBUG if verbose else logging.ERROR)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def call(
    ctx: click.Context,
    settings: Settings,
    fn: Callable[[], Awaitable[_V]],
    *,
    json_mode: bool = False,
) -> _V:
    """Run ``fn`` on asyncio and return its result; on its error, report it and exit
    with that error's status."""
    with sdk_logging(settings.verbose):
        try:
            result = anyio.run(fn, backend="asyncio")
        except (AgoraSTTError, CLIFailure, TimeoutError) as error:
            ctx.exit(report(error, verbose=settings.verbose, json_mode=json_mode))
    return result


def run(
    ctx: click.Context,
    settings: Settings,
    fn: Callable[[], Awaitable[int]],
    *,
    json_mode: bool = False,
) -> NoReturn:
    """Run ``fn`` on asyncio and exit with its status, or with the status of its error."""
    ctx.exit(call(ctx, settings, fn, json_mode=json_mode))


def stdin_is_terminal() -> bool:
    """Whether a person can answer a question on stdin (not a pipe, a file or closed)."""
    stream = sys.stdin
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
