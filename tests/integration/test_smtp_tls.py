"""SMTP alert credentials only ever travel inside TLS, against real aiosmtpd servers on 127.0.0.1.

STARTTLS on a submission server and SMTPS (implicit TLS) both deliver, logged in, with the server's
certificate checked against a private CA (TRADING_ALERT_SMTP_CAFILE). A login configured without
TLS is refused before any connection, even to a server that would take it in clear text; a server
that does not offer STARTTLS never sees the login. The sinks are built from the TRADING_ALERT_*
variables the way the runner and the Dagster code location build them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from live_runner.ops.alerts import AlertSystem, EmailSink, SmtpPlaintextLogin, sinks_from_env
from live_runner.core.models import Severity

pytestmark = pytest.mark.timeout(60)
USER, PASSWORD = "alerts", "smtp-pa55"


class FixedClock:
    def now_ns(self) -> int:
        return 1_732_631_400 * 10**9


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the CA file the client trusts) and its key."""
    d = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d / "cert.pem", d / "key.pem"


class Server:
    """aiosmtpd with AUTH; records every login attempt and whether it came over TLS."""

    def __init__(self, tls: str, files: tuple[Path, Path] | None = None) -> None:
        self.envelopes: list[Any] = []
        self.logins: list[tuple[str, bool]] = []
        ctx = None
        if files is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*map(str, files))
        kwargs: dict[str, Any] = {"authenticator": self._auth, "auth_require_tls": False}
        if tls == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True, auth_require_tls=True)
        elif tls == "ssl":
            kwargs.update(ssl_context=ctx)
        else:  # a server that takes a login in clear text (the thing the client must refuse)
            kwargs.update(auth_exclude_mechanism=["CRAM-MD5"])
        self.controller = _Controller(self, hostname="127.0.0.1", port=0, **kwargs)
        self.controller.start()

    def _auth(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        self.logins.append((mechanism, server.transport.get_extra_info("ssl_object") is not None))
        return AuthResult(success=ok)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 OK"

    def env(self, **extra: str) -> dict[str, str]:
        return {"TRADING_ALERT_SMTP_HOST": "127.0.0.1", "TRADING_ALERT_SMTP_PORT": str(self.controller.port),
                "TRADING_ALERT_SMTP_USER": USER, "TRADING_ALERT_SMTP_PASSWORD": PASSWORD,
                "TRADING_ALERT_EMAIL_FROM": "runner@example.com", "TRADING_ALERT_EMAIL_TO": "ops@example.com",
                **extra}

    def close(self) -> None:
        self.controller.stop()


class _Controller(Controller):
    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def deliver(env: dict[str, str]) -> AlertSystem:
    system = AlertSystem(sinks_from_env(env), FixedClock(), max_retries=0, backoff_s=0.0)
    system.raise_alert("trading_state:halted", Severity.CRITICAL, "emergency stop", component="ops")
    assert system.close(20)
    return system


@pytest.fixture
def server_factory() -> Iterator:
    made: list[Server] = []

    def make(tls: str, files: tuple[Path, Path] | None = None) -> Server:
        made.append(Server(tls, files))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_starttls_logs_in_inside_tls_and_delivers(server_factory, tls_files) -> None:
    server = server_factory("starttls", tls_files)
    system = deliver(server.env(TRADING_ALERT_SMTP_CAFILE=str(tls_files[0])))  # TLS mode by default
    assert system.stats()["failed"]["email"] == 0 and system.stats()["sent"]["email"] == 1
    assert server.logins and all(over_tls for _, over_tls in server.logins)
    assert b"trading_state:halted" in server.envelopes[0].content


def test_smtps_implicit_tls_delivers(server_factory, tls_files) -> None:
    server = server_factory("ssl", tls_files)
    system = deliver(server.env(TRADING_ALERT_SMTP_TLS="ssl", TRADING_ALERT_SMTP_CAFILE=str(tls_files[0])))
    assert system.stats()["sent"]["email"] == 1
    assert server.logins and all(over_tls for _, over_tls in server.logins) and len(server.envelopes) == 1


def test_an_untrusted_certificate_gets_no_login(server_factory, tls_files) -> None:
    server = server_factory("starttls", tls_files)
    system = deliver(server.env())  # no CA file: the self-signed certificate is not trusted
    assert system.stats()["failed"]["email"] == 1
    assert server.logins == [] and server.envelopes == []


def test_login_without_tls_is_refused_before_connecting(server_factory, caplog) -> None:
    server = server_factory("none")  # it would accept AUTH PLAIN in clear text
    env = server.env(TRADING_ALERT_SMTP_TLS="none", TRADING_ALERT_WEBHOOK_URL="")
    with caplog.at_level("ERROR", logger="live_runner.ops.alerts"):
        system = deliver(env)
    assert "refusing to send SMTP credentials" in caplog.text and "TRADING_ALERT_SMTP_TLS" in caplog.text
    assert system.stats()["failed"]["email"] == 1 and system.stats()["sent"]["log"] == 1
    assert server.logins == [] and server.envelopes == []
    [sink] = [s for s in sinks_from_env(env) if isinstance(s, EmailSink)]
    with pytest.raises(SmtpPlaintextLogin, match="clear text"):
        sink.deliver(_alert())


def test_a_server_without_starttls_never_sees_the_login(server_factory) -> None:
    server = server_factory("none")
    system = deliver(server.env(TRADING_ALERT_SMTP_TLS="starttls"))
    assert system.stats()["failed"]["email"] == 1
    assert server.logins == [] and server.envelopes == []


def test_a_relay_without_login_may_stay_plain(server_factory) -> None:
    server = server_factory("none")
    env = {k: v for k, v in server.env().items() if "USER" not in k and "PASSWORD" not in k}
    system = deliver(env)
    assert system.stats()["sent"]["email"] == 1 and len(server.envelopes) == 1 and server.logins == []


def _alert():
    from live_runner.core.models import Alert

    return Alert(key="k", severity=Severity.CRITICAL, message="m", ts=FixedClock().now_ns())


def test_compose_env_example_and_dagster_list_every_alert_variable() -> None:
    """An operator configures alerts from .env.example; compose passes each variable to the code
    location (runner and Dagster), and the Dagster resource binds each one."""
    import re

    import yaml

    from trading_pipeline.definitions import ALERT_FIELDS

    root = Path(__file__).resolve().parents[2]
    read = set(re.findall(r"TRADING_ALERT_[A-Z_]+", (root / "live_runner" / "ops" / "alert_sinks.py").read_text()))
    assert {"TRADING_ALERT_SMTP_TLS", "TRADING_ALERT_SMTP_STARTTLS", "TRADING_ALERT_SMTP_HOST"} <= read
    example = set(re.findall(r"^(TRADING_ALERT_[A-Z_]+)=", (root / ".env.example").read_text(), re.M))
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    location = set(compose["services"]["code-location"]["environment"])
    assert read <= example, read - example
    assert read <= location, read - location
    assert read <= {f"TRADING_ALERT_{f.upper()}" for f in ALERT_FIELDS}
