"""No secret escapes a full run (issue 7.6): logs at DEBUG, reprs, errors, CLI output.

Unit-level checks live in ``tests/test_secrets.py``. Here whole runs go through the
emulator with faults: a demo-like ``Session`` run on both APIs whose configs carry every
secret-bearing field (bot tokens, encryption secret and salt, storage keys), a short
soak with every fault kind, recovery from a ``SqliteStore``, and the ``agora-stt demo``
command. Every log record of every logger is captured at DEBUG (formatted, tracebacks
included), with the reprs of the client, session, handles and stored records and the
text of every error; none may contain a secret. Also: TLS verification is on by
default (a self-signed loopback server is refused), and plain ``http://`` to a remote
host needs ``allow_insecure=True``.
"""

from __future__ import annotations

import base64
import logging
import secrets
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import anyio
import httpx
import pytest
from click.testing import CliRunner

from agora_stt_async import (
    AgentStatus,
    AgoraSTTError,
    AsyncClient,
    CaptionConfig,
    ConfigurationError,
    ConnectError,
    JoinRequest,
    LegacyStartRequest,
    NotFoundError,
    RetryPolicy,
    RtcConfig,
    Session,
    StorageConfig,
)
from agora_stt_async import state as sm
from agora_stt_async._cli._app import cli
from agora_stt_async.emulator import (
    FAULT_KINDS,
    EmulatorApp,
    EmulatorConfig,
    FaultConfig,
    create_app,
)
from agora_stt_async.stores import SqliteStore

pytestmark = pytest.mark.anyio

APP_ID: Final = "e2eapp00000000000000000000000000"
CUSTOMER_ID: Final = "e2e-customer"
CUSTOMER_SECRET: Final = "CUSTSECRETe2eQ7w"
BASIC: Final = base64.b64encode(f"{CUSTOMER_ID}:{CUSTOMER_SECRET}".encode()).decode()
PUB_TOKEN: Final = "PUBTOKENe2eQ7w"
SUB_TOKEN: Final = "SUBTOKENe2eQ7w"
ENC_SECRET: Final = "ENCSECRETe2eQ7w"
SALT: Final = base64.b64encode(b"e2eSALT!" * 4).decode()
ACCESS_KEY: Final = "ACCESSKEYe2eQ7w"
SECRET_KEY: Final = "SECRETKEYe2eQ7w"
SECRETS: Final = {
    "customer secret": CUSTOMER_SECRET,
    "authorization header": BASIC,
    "pub bot token": PUB_TOKEN,
    "sub bot token": SUB_TOKEN,
    "encryption secret": ENC_SECRET,
    "encryption salt": SALT,
    "storage access key": ACCESS_KEY,
    "storage secret key": SECRET_KEY,
}
DATA: Final = Path(__file__).parent / "data"


class Capture(logging.Handler):
    """Every record of every logger, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[Capture]:
    root = logging.getLogger()
    handler = Capture()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def assert_clean(texts: list[str]) -> None:
    joined = "\n".join(texts)
    for name, value in SECRETS.items():
        assert value not in joined, f"the {name} leaked: ...{_around(joined, value)}..."


def _around(text: str, value: str) -> str:
    at = text.index(value)
    return text[max(0, at - 120) : at + len(value) + 40]


def emulator(faults: FaultConfig | None = None) -> EmulatorApp:
    return create_app(
        EmulatorConfig(start_delay=0.02, stop_delay=0.0),
        seed=5,
        faults=faults,
        app_ids=[APP_ID],
        credentials={CUSTOMER_ID: CUSTOMER_SECRET},
    )


def client_for(app: EmulatorApp) -> AsyncClient:
    return AsyncClient(
        app_id=APP_ID,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        transport=app.transport(),
        retry=RetryPolicy.testing(),
    )


def rtc(channel: str) -> RtcConfig:
    return RtcConfig(
        channel_name=channel,
        pub_bot_uid="1000",
        pub_bot_token=PUB_TOKEN,
        sub_bot_uid="2000",
        sub_bot_token=SUB_TOKEN,
        cryption_mode=7,
        secret=ENC_SECRET,
        salt=SALT,
    )


CAPTIONS: Final = CaptionConfig(
    storage=StorageConfig(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, bucket="bucket", vendor=1, region=0
    )
)


def config(i: int) -> JoinRequest | LegacyStartRequest:
    channel = f"e2e-{i}"
    if i % 2:
        return LegacyStartRequest(
            languages=["en-US"], rtc_config=rtc(channel), caption_config=CAPTIONS
        )
    return JoinRequest(
        name=f"agent-{channel}",
        languages=["en-US"],
        rtc_config=rtc(channel),
        caption_config=CAPTIONS,
    )


async def lifecycle(session: Session, i: int, texts: list[str]) -> None:
    """start → RUNNING → update → stop; every error's text and the handle's repr kept."""
    try:
        handle = await session.start(f"k{i}", config(i))
        texts.append(repr(handle))
        await handle.wait_for(AgentStatus.RUNNING, timeout=20)
        texts.append(repr(handle.record))
        try:
            await handle.update(languages=["en-US", "fr-FR"])
        except AgoraSTTError as error:
            texts.extend([str(error), repr(error)])
        await handle.stop(wait=True, timeout=20)
    except AgoraSTTError as error:
        texts.extend([str(error), repr(error)])


@pytest.mark.parametrize("fault_rate", [0.0, 0.3])
async def test_secrets_e2e_session_runs(
    captured: Capture, tmp_path: Path, fault_rate: float
) -> None:
    """A demo-like run (clean) and a short soak (every fault kind at 30 %), both APIs,
    then a crash-like restart that recovers from the SQLite file and stops the rest."""
    faults = FaultConfig(rate=fault_rate, kinds=dict.fromkeys(FAULT_KINDS, 1.0), latency=0.01)
    app = emulator(faults)
    texts: list[str] = []
    db = tmp_path / "tasks.db"
    with anyio.fail_after(60):
        async with client_for(app) as client:
            texts += [repr(client), str(client)]
            async with SqliteStore(db) as store:
                async with Session(client, store=store, stop_on_exit=False) as session:
                    async with anyio.create_task_group() as tg:
                        for i in range(16):
                            tg.start_soon(lifecycle, session, i, texts)
                    left = await session.start("left-running", config(101))  # legacy
                    texts += [repr(session), repr(session.statistics()), repr(left)]
                async with Session(client, store=store) as again:
                    report = await again.recover()
                    texts += [repr(report), *(repr(h) for h in again.handles())]
                records = await store.all()
            texts += [repr(record) for record in records]
            texts += [repr(client.statistics())]
    assert len(records) == 17
    assert {record.phase for record in records} <= {sm.Phase.STOPPED, sm.Phase.FAILED}
    # The capture saw the run: the SDK's request lines (with ids from these calls).
    assert any(line.startswith("agora_stt_async DEBUG POST") for line in captured.lines)
    assert len(captured.lines) > 50
    assert_clean(texts + captured.lines)
    # The builder tokens the legacy tasks used are kept in the store (for recovery) but
    # appear nowhere else: URLs in logs mask them.
    tokens = {record.token_name for record in records if record.token_name}
    assert tokens
    joined = "\n".join(texts + captured.lines)
    assert "builderToken=***" in joined
    for token in tokens:
        assert token not in joined, f"a builder token leaked: ...{_around(joined, token)}..."


async def test_secrets_e2e_failed_calls(captured: Capture) -> None:
    """Refused calls (wrong secret, unknown ids, malformed configs) on both APIs."""
    app = emulator()
    texts: list[str] = []
    with anyio.fail_after(20):
        async with client_for(app) as client:
            for call in (
                client.agents.get("nope"),
                client.legacy.query("0" * 32, "BUILDERTOKEN"),
                client.agents.leave("nope"),
            ):
                with pytest.raises(AgoraSTTError) as info:
                    await call
                texts += [str(info.value), repr(info.value)]
        wrong = AsyncClient(
            app_id=APP_ID,
            customer_id=CUSTOMER_ID,
            customer_secret=CUSTOMER_SECRET + "x",
            transport=app.transport(),
            retry=RetryPolicy.testing(),
        )
        async with wrong:
            with pytest.raises(AgoraSTTError) as info:
                await wrong.agents.join(config(0))  # type: ignore[arg-type]
            texts += [str(info.value), repr(info.value), repr(wrong)]
    assert_clean(texts + captured.lines)


def test_secrets_e2e_cli_demo(captured: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    """``agora-stt demo`` with faults: its output and logs never show its credentials."""
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n=None: CUSTOMER_SECRET)
    result = CliRunner().invoke(
        cli, ["demo", "--channels", "12", "--fault-rate", "0.2", "--api", "both", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert "leaked" in result.output
    assert_clean([result.output, *captured.lines])


# --- transport security ------------------------------------------------------------------


@pytest.fixture
def self_signed_server() -> Iterator[str]:
    """A loopback HTTPS server with a self-signed certificate, answering 404 to anything."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(DATA / "selfsigned-cert.pem", DATA / "selfsigned-key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                conn.settimeout(5)
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)
                    body = b'{"detail":"not found","reason":"NotFound"}'
                    tls.sendall(
                        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
            except (OSError, ssl.SSLError):
                conn.close()  # the client refused the certificate

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


async def test_secrets_e2e_tls_verification_is_on(self_signed_server: str) -> None:
    """The default client refuses an untrusted certificate; the same server answers a
    client that does not verify, so the refusal was the certificate check."""
    with anyio.fail_after(20):
        async with AsyncClient(
            app_id=APP_ID,
            customer_id=CUSTOMER_ID,
            customer_secret=CUSTOMER_SECRET,
            base_url=self_signed_server,
            retry=RetryPolicy.none(),
        ) as client:
            with pytest.raises(ConnectError):
                await client.agents.get("a1")
        async with (
            httpx.AsyncClient(verify=False) as insecure,  # the control: no verification
            AsyncClient(
                app_id=APP_ID,
                customer_id=CUSTOMER_ID,
                customer_secret=CUSTOMER_SECRET,
                base_url=self_signed_server,
                http_client=insecure,
                retry=RetryPolicy.none(),
            ) as control,
        ):
            with pytest.raises(NotFoundError):
                await control.agents.get("a1")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "http://api.agora.io"},
        {"base_urls": ["https://api.agora.io", "http://api-us-west-1.agora.io"]},
        {"base_url": "http://192.168.1.20:8000"},
    ],
)
def test_secrets_e2e_plain_http_needs_allow_insecure(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure"):
        AsyncClient(app_id="a", customer_id="b", customer_secret="c", **kwargs)  # type: ignore[arg-type]
    client = AsyncClient(
        app_id="a",
        customer_id="b",
        customer_secret="c",
        allow_insecure=True,
        **kwargs,  # type: ignore[arg-type]
    )
    assert any(url.startswith("http://") for url in client.base_urls)
