"""MQTT over WebSocket (`--listen-ws`, docs/security.md "WebSocket") with paho-mqtt's websockets
transport, a real WebSocket MQTT client, against Debian's mosquitto clients on the plain listener:
what one sends the other receives, both ways, for every QoS and both protocol versions."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import WAIT, Broker, Client

VERSION_FLAG = {mqtt.MQTTv311: "mqttv311", mqtt.MQTTv5: "mqttv5"}


@pytest.fixture
def ws_broker():
    b = Broker("--listen-ws", "127.0.0.1:0")
    yield b
    b.stop()


@pytest.fixture
def ws_client(ws_broker, protocol):
    """A factory of paho clients on the WebSocket listener; all closed at the end."""
    made: list[Client] = []

    def make(**kwargs) -> Client:
        c = Client(ws_broker.ws_port, kwargs.pop("protocol", protocol), transport="websockets", **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.c.disconnect()
            c.c.loop_stop()
        except Exception:
            pass


def mosquitto_sub(port: int, protocol: int, *args: str) -> subprocess.Popen:
    """A mosquitto_sub on the plain listener, returned once its SUBACK is in."""
    p = subprocess.Popen(
        ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-d",
         "-V", VERSION_FLAG[protocol], "-F", "%t %q %r %p", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for line in p.stdout:
        if "received SUBACK" in line:
            return p
    raise AssertionError("mosquitto_sub got no SUBACK")


def mosquitto_pub(port: int, protocol: int, *args: str) -> None:
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-V", VERSION_FLAG[protocol], *args],
        check=True, timeout=WAIT * 2,
    )


def lines_of(p: subprocess.Popen) -> list[str]:
    """The messages a `-C N` mosquitto_sub printed (topics here all start with "ws/")."""
    # Not communicate(): with a timeout it reads the pipe itself and misses what the SUBACK
    # loop above already buffered. A thread reads, so a long line cannot block the process.
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(p.stdout.read()), daemon=True)
    reader.start()
    p.wait(timeout=WAIT * 2)
    reader.join(WAIT)
    out = "".join(got)
    assert p.returncode == 0, out
    return [line for line in out.splitlines() if line.startswith("ws/")]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_ws_publisher_to_tcp_subscriber(ws_broker, ws_client, protocol, qos):
    sub = mosquitto_sub(ws_broker.port, protocol, "-t", "ws/up", "-q", "2", "-C", "2")
    pub = ws_client(client_id=f"ws-pub-{qos}")
    pub.publish("ws/up", b"small", qos=qos)
    # Bigger than one read and than a 16-bit frame length: the frame spans reads.
    pub.publish("ws/up", b"x" * 100_000, qos=qos)
    got = lines_of(sub)
    assert got == [f"ws/up {qos} 0 small", f"ws/up {qos} 0 " + "x" * 100_000]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_tcp_publisher_to_ws_subscriber(ws_broker, ws_client, protocol, qos):
    sub = ws_client(client_id=f"ws-sub-{qos}")
    sub.subscribe("ws/down", qos=2)
    mosquitto_pub(ws_broker.port, protocol, "-t", "ws/down", "-q", str(qos), "-m", "hello")
    [m] = sub.expect()
    assert (m.topic, m.payload, m.qos) == ("ws/down", b"hello", qos)


def test_ws_to_ws_and_retained(ws_broker, ws_client, protocol):
    pub = ws_client(client_id="ws-retainer")
    pub.publish("ws/retained", b"kept", qos=1, retain=True)
    late = ws_client(client_id="ws-late")
    late.subscribe("ws/#", qos=1)
    [m] = late.expect()
    assert (m.topic, m.payload, m.retain) == ("ws/retained", b"kept", True)
    pub.publish("ws/live", b"now", qos=2)
    [m] = late.expect()
    # Granted QoS 1: delivered at 1.
    assert (m.topic, m.payload, m.qos, m.retain) == ("ws/live", b"now", 1, False)
    # The retained message reaches a plain TCP client too.
    sub = mosquitto_sub(ws_broker.port, protocol, "-t", "ws/retained", "-C", "1")
    assert lines_of(sub) == ["ws/retained 0 1 kept"]


def test_will_of_a_ws_client_that_vanishes(ws_broker, ws_client, protocol):
    watcher = ws_client(client_id="ws-watcher")
    watcher.subscribe("ws/will", qos=1)
    doomed = ws_client(client_id="ws-doomed", will=("ws/will", b"gone", 1))
    doomed.kill()
    [m] = watcher.expect()
    assert (m.topic, m.payload) == ("ws/will", b"gone")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def wss_broker(tmp_path):
    """A broker with a plain listener and a WebSocket-over-TLS one (`protocol = "websocket"` +
    `tls`), its certificate for 127.0.0.1 signed by a CA made here with openssl."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=musqratt test CA", cwd=tmp_path)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
            cwd=tmp_path)
    (tmp_path / "ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext", cwd=tmp_path)
    conf = tmp_path / "musqratt.toml"
    conf.write_text(
        '[[listener]]\nbind = "127.0.0.1:0"\n\n'
        '[[listener]]\nbind = "127.0.0.1:0"\nprotocol = "websocket"\n'
        'tls = { cert = "server.pem", key = "server.key" }\n'
    )
    b = Broker(config=str(conf), want=("wss",))
    b.ca = str(tmp_path / "ca.pem")
    yield b
    b.stop()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_wss_both_ways_with_tcp(wss_broker, protocol, qos):
    port = wss_broker.ports["wss"]
    ws = Client(port, protocol, client_id=f"wss-{qos}", transport="websockets", tls_ca=wss_broker.ca)
    try:
        ws.subscribe("wss/down", qos=2)
        mosquitto_pub(wss_broker.port, protocol, "-t", "wss/down", "-q", str(qos), "-m", "secret")
        [m] = ws.expect()
        assert (m.topic, m.payload, m.qos) == ("wss/down", b"secret", qos)
        sub = mosquitto_sub(wss_broker.port, protocol, "-t", "ws/up", "-q", "2", "-C", "1")
        ws.publish("ws/up", b"y" * 70_000, qos=qos)
        assert lines_of(sub) == [f"ws/up {qos} 0 " + "y" * 70_000]
    finally:
        ws.disconnect()


def test_wss_refuses_an_untrusted_client_side_ca(wss_broker, tmp_path):
    """A client that does not trust the broker's CA cannot connect (the TLS layer is really
    under the WebSocket one)."""
    other = tmp_path / "other"
    other.mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "o.key", "-out", "o.pem", "-days", "2", "-subj", "/CN=other", cwd=other)
    with pytest.raises(Exception, match="certificate verify failed"):
        Client(wss_broker.ports["wss"], mqtt.MQTTv5, transport="websockets", tls_ca=str(other / "o.pem"))


MQTTJS = Path(__file__).resolve().parents[1] / "ws"


@pytest.mark.parametrize("version", [4, 5])
def test_mqttjs_over_ws(ws_broker, version):
    """mqtt.js (npm, tests/ws/package.json): its own pub/sub over WebSocket, and what it
    publishes reaches mosquitto_sub on the plain listener."""
    protocol = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
    topic = f"ws/js{version}"
    sub = mosquitto_sub(ws_broker.port, protocol, "-t", f"{topic}/#", "-q", "2", "-C", "4")
    out = subprocess.run(
        ["node", str(MQTTJS / "mqttjs.mjs"), str(ws_broker.ws_port), str(version), topic],
        capture_output=True, text=True, timeout=WAIT * 4,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "done", lines
    got = sorted((m["topic"], m["payload"], m["qos"]) for m in map(json.loads, lines[:-1]))
    assert got == [
        (f"{topic}/q0", "hello 0", 0),
        (f"{topic}/q1", "hello 1", 1),
        (f"{topic}/q2", "hello 2", 2),
        (f"{topic}/retained", "kept", 1),
    ]
    assert sorted(lines_of(sub)) == [
        f"{topic}/q0 0 0 hello 0",
        f"{topic}/q1 1 0 hello 1",
        f"{topic}/q2 2 0 hello 2",
        f"{topic}/retained 1 0 kept",
    ]
