"""A real mosquitto for the integration tests, and a subscriber that collects messages.

The test set-up installs mosquitto, so a missing binary fails the tests (it
never skips them). Each broker (edgepose/devtools/broker.py, the one bench
--e2e and tools/soak.py start too) listens on a free loopback port with
persistence off, so a restart forgets retained messages as a real broker
without persistence would.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from edgepose.devtools import broker as devtools_broker
from edgepose.devtools.broker import BrokerError, find_binary, free_port


def _find_binary(name: str) -> str:
    path = find_binary(name)
    if path is None:
        pytest.fail(
            f"{name} not found on PATH or in /usr/sbin: install mosquitto "
            "(apt-get install mosquitto mosquitto-clients) to run the integration tests",
            pytrace=False,
        )
    return path


class Broker(devtools_broker.Broker):
    """One mosquitto process on a fixed port (devtools/broker.py): a broker that does not
    start fails the test."""

    def start(self) -> None:
        _find_binary("mosquitto")
        try:
            super().start()
        except BrokerError as exc:
            pytest.fail(str(exc), pytrace=False)


def persistent_conf(workdir: Path) -> list[str]:
    """Broker settings that save sessions and queued messages after every change, so a
    durable subscriber survives a SIGKILL of the broker."""
    return [
        "persistence true",
        f"persistence_location {workdir}/",
        "autosave_interval 1",
        "autosave_on_changes true",
        "max_queued_messages 100000",
    ]


def _make_broker(tmp: Path, extra_conf: list[str] | None = None, *, start: bool = True) -> Broker:
    tmp.mkdir(parents=True, exist_ok=True)
    broker = Broker(workdir=tmp, port=free_port(), extra_conf=list(extra_conf or []))
    if start:
        broker.start()
    return broker


@pytest.fixture(scope="session")
def mosquitto_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One anonymous broker for the session. Tests use unique node ids; do not restart it."""
    broker = _make_broker(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Private brokers for tests that stop, freeze, kill or restart theirs:
    make(extra_conf=None, start=True, persistent=False) (see `persistent_conf`)."""
    made: list[Broker] = []

    def make(extra_conf: list[str] | None = None, *, start: bool = True, persistent: bool = False) -> Broker:
        workdir = tmp_path / f"broker{len(made)}"
        conf = list(extra_conf or []) + (persistent_conf(workdir) if persistent else [])
        broker = _make_broker(workdir, conf, start=start)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop()


AUTH_USER = "edgepose"
AUTH_PASSWORD = "test-only-" + uuid.uuid4().hex[:8]


def _password_file(directory: Path) -> Path:
    """A mosquitto password file holding AUTH_USER / AUTH_PASSWORD (mosquitto_passwd -b -c)."""
    pwfile = directory / "passwd"
    subprocess.run(
        [_find_binary("mosquitto_passwd"), "-b", "-c", str(pwfile), AUTH_USER, AUTH_PASSWORD],
        check=True,
        capture_output=True,
    )
    pwfile.chmod(0o600)
    return pwfile


@pytest.fixture(scope="session")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker that wants AUTH_USER / AUTH_PASSWORD (made with mosquitto_passwd -b -c)."""
    tmp = tmp_path_factory.mktemp("mosquitto-auth")
    pwfile = _password_file(tmp)
    broker = _make_broker(tmp, ["allow_anonymous false", f"password_file {pwfile}"])
    yield broker
    broker.stop()


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _write_tls_files(tmp: Path, hostname: str) -> TlsFiles:
    """A throwaway CA and a server certificate for `hostname` (DNS SAN only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgepose test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(tmp / "ca.pem", tmp / "server.pem", tmp / "server.key")
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    files.key_file.chmod(0o600)
    return files


@pytest.fixture(scope="session")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, TlsFiles]]:
    """A TLS-only broker whose certificate names ``localhost`` (not 127.0.0.1)."""
    tmp = tmp_path_factory.mktemp("mosquitto-tls")
    files = _write_tls_files(tmp, "localhost")
    broker = _make_broker(
        tmp,
        [f"cafile {files.ca_file}", f"certfile {files.cert_file}", f"keyfile {files.key_file}"],
    )
    yield broker, files
    broker.stop()


@pytest.fixture(scope="session")
def tls_auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, TlsFiles]]:
    """TLS (a certificate for ``localhost`` made here) and AUTH_USER / AUTH_PASSWORD together."""
    tmp = tmp_path_factory.mktemp("mosquitto-tls-auth")
    files = _write_tls_files(tmp, "localhost")
    pwfile = _password_file(tmp)
    broker = _make_broker(
        tmp,
        [f"cafile {files.ca_file}", f"certfile {files.cert_file}", f"keyfile {files.key_file}",
         "allow_anonymous false", f"password_file {pwfile}"],
    )
    yield broker, files
    broker.stop()


# --- a subscriber that collects messages -------------------------------------------------

Match = Callable[[paho.MQTTMessage], bool]


class Subscriber:
    """A paho client that records every message it gets, for assertions.

    Connected and subscribed when the constructor returns, so nothing
    published afterwards is missed.
    """

    def __init__(self, host: str, port: int, topics: list[str], *, protocol: int = paho.MQTTv311,
                 timeout: float = 5.0, durable: bool = False) -> None:
        """`durable`: a persistent session (clean_session false) that reconnects by itself,
        for brokers that are killed and restarted with persistence on."""
        self.messages: list[paho.MQTTMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = paho.Client(
            callback_api_version=paho.CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            clean_session=False if durable else None if protocol == paho.MQTTv5 else True,
        )
        self._client.reconnect_delay_set(0.2, 1)
        self._client.max_queued_messages_set(0)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.connect(host, port)
        self._client.loop_start()
        self._client.subscribe([(t, 1) for t in topics])
        if not self._subscribed.wait(timeout):
            self.close()
            raise AssertionError(f"subscriber: no SUBACK for {topics} within {timeout} s")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    @staticmethod
    def _matcher(match: str | Match) -> Match:
        if callable(match):
            return match
        return lambda m: m.topic == match

    def matching(self, match: str | Match) -> list[paho.MQTTMessage]:
        pred = self._matcher(match)
        with self._cond:
            return [m for m in self.messages if pred(m)]

    def wait_for(self, match: str | Match, count: int = 1, timeout: float = 5.0) -> list[paho.MQTTMessage]:
        """The first `count` messages matching (a topic or a predicate); AssertionError on timeout."""
        pred = self._matcher(match)
        with self._cond:
            ok = self._cond.wait_for(lambda: sum(1 for m in self.messages if pred(m)) >= count, timeout)
            got = [m for m in self.messages if pred(m)]
            if not ok:
                seen = [(m.topic, bytes(m.payload[:40])) for m in self.messages]
                raise AssertionError(f"got {len(got)} of {count} matching messages in {timeout} s; saw {seen}")
            return got[:count]

    def subscribe_more(self, topic: str, timeout: float = 5.0) -> None:
        """One more subscription, waiting for its SUBACK."""
        done = threading.Event()
        self._client.on_subscribe = lambda *a: done.set()
        self._client.subscribe(topic, 1)
        if not done.wait(timeout):
            raise AssertionError(f"subscriber: no SUBACK for {topic} within {timeout} s")

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5.0)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def subscriber() -> Iterator[Callable[..., Subscriber]]:
    """make(broker, *topics, protocol=paho.MQTTv311) -> a connected, subscribed Subscriber."""
    made: list[Subscriber] = []

    def make(broker: Broker, *topics: str, protocol: int = paho.MQTTv311, durable: bool = False) -> Subscriber:
        sub = Subscriber(broker.host, broker.port, list(topics), protocol=protocol, durable=durable)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


@pytest.fixture
def publishers():
    """make(cfg, node_id, **kw) -> a started MqttPublisher; all are stopped at teardown."""
    from edgepose.mqtt import MqttPublisher

    made: list = []

    def make(cfg, node_id, **kw):
        pub = MqttPublisher(cfg, node_id, **kw).start()
        made.append(pub)
        return pub

    yield make
    for pub in made:
        pub.stop(timeout=1.0)
