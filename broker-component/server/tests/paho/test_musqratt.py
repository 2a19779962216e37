"""MusQraTT's own semantics (docs/design.md §3) and MQTT 5 features, with paho-mqtt 2.x."""

import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def publish_props(**values) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    for k, v in values.items():
        setattr(p, k, v)
    return p


def test_held_message_delivered_on_subscribe(client):
    pub = client(client_id="pub")
    for m in ("one", "two", "three"):
        pub.publish("held/t", m, qos=1)
    sub = client(client_id="sub")
    sub.subscribe("held/t", 1)
    assert [m.payload for m in sub.expect(3)] == [b"one", b"two", b"three"]
    # Held messages are delivered once.
    other = client(client_id="other")
    other.subscribe("held/t", 1)
    other.expect_none()


def test_held_message_wildcard(client):
    client(client_id="pub").publish("hw/a/b", "deep", qos=1)
    sub = client(client_id="sub")
    sub.subscribe("hw/#", 1)
    (m,) = sub.expect(1)
    assert (m.topic, m.payload, m.retain) == ("hw/a/b", b"deep", False)


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5], ids=["v5"], indirect=False)
def test_message_expiry(client, protocol):
    pub = client(client_id="pub", protocol=protocol)
    pub.publish("exp/short", "stale", qos=1, properties=publish_props(MessageExpiryInterval=1))
    pub.publish("exp/long", "fresh", qos=1, properties=publish_props(MessageExpiryInterval=600))
    time.sleep(2.5)
    sub = client(client_id="sub", protocol=protocol)
    sub.subscribe("exp/short", 1)
    sub.subscribe("exp/long", 1)
    (m,) = sub.expect(1)
    assert m.payload == b"fresh"
    remaining = m.properties.MessageExpiryInterval
    assert 0 < remaining <= 600
    sub.expect_none()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5], ids=["v5"], indirect=False)
def test_topic_alias(client, protocol):
    sub = client(client_id="sub", protocol=protocol)
    sub.subscribe("alias/t", 1)
    pub = client(client_id="pub", protocol=protocol)
    pub.publish("alias/t", "first", qos=1, properties=publish_props(TopicAlias=1))
    pub.publish("", "second", qos=1, properties=publish_props(TopicAlias=1))
    got = sub.expect(2)
    assert [(m.topic, m.payload) for m in got] == [("alias/t", b"first"), ("alias/t", b"second")]


SYS_TOPICS = [
    "$SYS/broker/version",
    "$SYS/broker/uptime",
    "$SYS/broker/clients/connected",
    "$SYS/broker/topics/count",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
]


def test_sys_topics(client):
    sub = client(client_id="sys")
    for t in SYS_TOPICS:
        sub.subscribe(t, 0)
    seen = {}
    deadline = time.monotonic() + 20
    while set(seen) != set(SYS_TOPICS) and time.monotonic() < deadline:
        try:
            m = sub.messages.get(timeout=0.5)
        except Exception:
            continue
        seen[m.topic] = m.payload.decode()
    missing = sorted(set(SYS_TOPICS) - set(seen))
    assert not missing, f"no value for {missing}; got {seen}"
    assert seen["$SYS/broker/version"]
    for t in SYS_TOPICS[1:]:
        # Numbers; the uptime may carry a unit like Mosquitto's "12 seconds".
        assert seen[t].split()[0].isdigit(), f"{t} = {seen[t]!r}"
