"""MQTT over WebSocket (`--listen-ws`, docs/security.md "WebSocket") with paho-mqtt's websockets
transport, a real WebSocket MQTT client, against Debian's mosquitto clients on the plain listener:
what one sends the other receives, both ways, for every QoS and both protocol versions."""

from __future__ import annotations

import subprocess
import threading

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
