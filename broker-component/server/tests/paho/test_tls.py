"""TLS listeners (docs/security.md "TLS") with paho-mqtt 2.x's `tls_set`: a round trip at every
QoS over TLS for MQTT 3.1.1 and 5, and client certificates required by the listener (a client
without one is refused, a client with one from the listener's CA gets in). Certificates are made
with Debian's `openssl` CLI."""

from __future__ import annotations

import queue
import re
import ssl
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import START_TIMEOUT, WAIT, broker_bin

MQTTS = re.compile(r"listening on mqtts://127\.0\.0\.1:(\d+)")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """ca.pem/ca.key; server.pem/key for 127.0.0.1; client.pem/key with CN paho-client."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=paho test CA", cwd=d)
    for name, ext in [
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ]:
        (d / f"{name}.ext").write_text(ext)
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={'localhost' if name == 'server' else 'paho-client'}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext", cwd=d)


class TlsBroker:
    """`musqratt serve -c CONF` with one TLS listener on port 0 (no `--listen`: it would replace
    the file's listeners)."""

    def __init__(self, conf: Path):
        self.lines: list[str] = []
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(
            [broker_bin(), "serve", "--in-memory", "-c", str(conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace",
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        with self._cv:
            while not (m := next(filter(None, map(MQTTS.search, self.lines)), None)):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("broker did not start:\n" + "\n".join(self.lines))
                self._cv.wait(min(left, 0.1))
        self.port = int(m.group(1))

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()

    def wait_for(self, needle: str) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: any(needle in l for l in self.lines), WAIT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def pki(tmp_path):
    make_pki(tmp_path)
    return tmp_path


def start(pki: Path, extra: str = "") -> TlsBroker:
    conf = pki / "musqratt.toml"
    conf.write_text(
        '[[listener]]\nbind = "127.0.0.1:0"\n'
        f'tls = {{ cert = "server.pem", key = "server.key"{extra} }}\n'
    )
    return TlsBroker(conf)


def connect(port: int, protocol: int, pki: Path, cert: bool, client_id: str):
    """A paho client over TLS (`tls_set`); returns (client, CONNACK queue, message queue)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if cert:
        c.tls_set(ca_certs=str(pki / "ca.pem"), certfile=str(pki / "client.pem"),
                  keyfile=str(pki / "client.key"))
    else:
        c.tls_set(ca_certs=str(pki / "ca.pem"))
    acks: queue.Queue = queue.Queue()
    msgs: queue.Queue = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: acks.put(rc)
    c.on_message = lambda _c, _u, m: msgs.put(m)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    return c, acks, msgs


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_round_trip_every_qos_over_tls(pki, protocol):
    b = start(pki)
    try:
        sub, acks, msgs = connect(b.port, protocol, pki, False, "paho-tls-sub")
        assert not acks.get(timeout=WAIT).is_failure
        pub, packs, _ = connect(b.port, protocol, pki, False, "paho-tls-pub")
        assert not packs.get(timeout=WAIT).is_failure
        done = threading.Event()
        sub.on_subscribe = lambda *_a: done.set()
        sub.subscribe("paho/tls", 2)
        assert done.wait(WAIT), "no SUBACK"
        for qos in (0, 1, 2):
            info = pub.publish("paho/tls", f"q{qos}".encode() * 1000, qos=qos)
            info.wait_for_publish(WAIT)
            assert info.is_published()
        got = [msgs.get(timeout=WAIT) for _ in range(3)]
        assert [(m.payload, m.qos) for m in got] == [(f"q{q}".encode() * 1000, q) for q in (0, 1, 2)]
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()
    finally:
        b.stop()


def test_required_client_certificate(pki):
    b = start(pki, ', client_ca = "ca.pem"')
    try:
        # Without a certificate the broker refuses the handshake: no CONNACK ever comes.
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-no-cert")
        c.tls_set(ca_certs=str(pki / "ca.pem"))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            c.connect("127.0.0.1", b.port, keepalive=30)
            # TLS 1.3: the refusal arrives after the client's side of the handshake.
            c.socket().recv(1)
        # With one from the listener's CA: in.
        ok, acks, _ = connect(b.port, mqtt.MQTTv5, pki, True, "paho-cert")
        assert not acks.get(timeout=WAIT).is_failure
        ok.disconnect()
        ok.loop_stop()
        assert b.wait_for("TLS handshake failed"), b.lines
    finally:
        b.stop()
