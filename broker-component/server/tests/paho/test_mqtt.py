"""Plain MQTT features with paho-mqtt 2.x, in MQTT 3.1.1 and MQTT 5 (the `protocol` fixture)."""

import paho.mqtt.client as mqtt
import pytest


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_qos_round_trip(client, qos):
    sub = client(client_id="sub")
    sub.subscribe(f"rt/{qos}", qos)
    pub = client(client_id="pub")
    pub.publish(f"rt/{qos}", f"hello {qos}", qos=qos)
    (m,) = sub.expect(1)
    assert (m.topic, m.payload, m.qos, m.retain) == (f"rt/{qos}", f"hello {qos}".encode(), qos, False)


def test_qos_downgrade(client):
    sub = client(client_id="sub")
    sub.subscribe("down", 1)
    client(client_id="pub").publish("down", "x", qos=2)
    (m,) = sub.expect(1)
    assert m.qos == 1


def test_retained(client):
    client(client_id="pub").publish("ret/t", "kept", qos=1, retain=True)
    for i in range(2):
        sub = client(client_id=f"sub{i}")
        sub.subscribe("ret/#", 1)
        (m,) = sub.expect(1)
        assert (m.topic, m.payload, m.retain) == ("ret/t", b"kept", True)
        sub.disconnect()


def test_will_on_abrupt_close(client):
    watcher = client(client_id="watcher")
    watcher.subscribe("will/t", 1)
    doomed = client(client_id="doomed", will=("will/t", b"gone", 1))
    doomed.kill()
    (m,) = watcher.expect(1)
    assert m.payload == b"gone"


def test_no_will_on_clean_disconnect(client):
    watcher = client(client_id="watcher")
    watcher.subscribe("will/t", 1)
    client(client_id="polite", will=("will/t", b"gone", 1)).disconnect()
    watcher.expect_none()


def test_persistent_session(client, protocol):
    v5 = protocol == mqtt.MQTTv5
    opts = dict(client_id="persist", clean=False, session_expiry=300 if v5 else None)
    sub = client(**opts)
    assert not sub.session_present
    sub.subscribe("ps/t", 1)
    sub.disconnect()
    client(client_id="pub").publish("ps/t", "while away", qos=1)
    sub = client(**opts)
    assert sub.session_present
    (m,) = sub.expect(1)
    assert (m.payload, m.qos) == (b"while away", 1)


def test_shared_subscription(client):
    a = client(client_id="a")
    b = client(client_id="b")
    a.subscribe("$share/g/sh/t", 1)
    b.subscribe("$share/g/sh/t", 1)
    pub = client(client_id="pub")
    n = 10
    for i in range(n):
        pub.publish("sh/t", f"m{i}", qos=1)
    got = []
    for _ in range(n):
        m = None
        for s in (a, b):
            try:
                m = s.messages.get(timeout=0.05)
                break
            except Exception:
                continue
        if m is None:
            # wait a bit longer on both before giving up
            for s in (a, b):
                try:
                    m = s.messages.get(timeout=2.5)
                    break
                except Exception:
                    continue
        assert m is not None, f"only {len(got)} of {n} messages arrived: {got}"
        got.append(m.payload.decode())
    a.expect_none(0.5)
    b.expect_none(0.5)
    assert sorted(got) == sorted(f"m{i}" for i in range(n)), got
