"""Access control (docs/security.md "Access control (ACL)") with paho-mqtt 2.x, MQTT 3.1.1 and 5:
SUBACK codes (0x87 Not authorized in v5, 0x80 Failure in 3.1.1), PUBACK 0x87 for a denied v5
PUBLISH (3.1.1: acknowledged, dropped), and deliveries that need read access (a `#` subscriber,
%u / %c patterns). A message that must not arrive is shown not to by a sentinel sent after it
that arrives first."""

from __future__ import annotations

import queue
import threading

import paho.mqtt.client as mqtt
import pytest

from conftest import PROTOCOLS, WAIT, Broker

ACL = """\
# anonymous clients may only publish
topic write data/#

user reader
topic read #
topic deny data/secret/#

pattern read inbox/%u/#
pattern readwrite devices/%c/#
"""


@pytest.fixture
def acl_broker(tmp_path):
    (tmp_path / "acl").write_text(ACL)
    conf = tmp_path / "musqratt.toml"
    conf.write_text('[auth]\nacl_file = "acl"\n')
    b = Broker("-c", str(conf))
    yield b
    b.stop()


class AclClient:
    """A paho client that records SUBACK and PUBACK reason codes and incoming messages."""

    def __init__(self, port: int, protocol: int, client_id: str, username: str | None = None):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        if username is not None:
            self.c.username_pw_set(username)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[tuple[int, list]] = queue.Queue()
        self.pubacks: queue.Queue[tuple[int, object]] = queue.Queue()
        connected = threading.Event()
        self.c.on_connect = lambda _c, _u, _f, rc, _p: (not rc.is_failure) and connected.set()
        self.c.on_message = lambda _c, _u, m: self.messages.put(m)
        self.c.on_subscribe = lambda _c, _u, mid, codes, _p: self.subacks.put((mid, codes))
        self.c.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.put((mid, rc))
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        assert connected.wait(WAIT), "no CONNACK"

    def subscribe(self, topic: str) -> int:
        """The SUBACK's code for `topic` (QoS 0 requested)."""
        _, mid = self.c.subscribe(topic, 0)
        while True:
            got, codes = self.subacks.get(timeout=WAIT)
            if got == mid:
                return codes[0].value

    def publish(self, topic: str, qos: int = 1) -> int:
        """The PUBACK's reason code (paho reports 0 for a 3.1.1 PUBACK)."""
        info = self.c.publish(topic, b"x", qos=qos)
        while True:
            mid, rc = self.pubacks.get(timeout=WAIT)
            if mid == info.mid:
                return rc.value if rc is not None else 0

    def next_topic(self) -> str:
        return self.messages.get(timeout=WAIT).topic

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.mark.parametrize("version", ["v311", "v5"])
def test_subscribe_publish_and_delivery(acl_broker, version):
    protocol = PROTOCOLS[version]
    v5 = protocol == mqtt.MQTTv5
    refused = 0x87 if v5 else 0x80
    port = acl_broker.port
    reader = AclClient(port, protocol, f"reader-{version}", "reader")
    writer = AclClient(port, protocol, f"writer-{version}")
    try:
        assert reader.subscribe("#") == 0
        assert reader.subscribe("data/secret/#") == refused
        assert reader.subscribe("inbox/reader/#") == 0
        assert writer.subscribe("data/#") == refused  # anonymous clients may not read
        # The `#` subscriber gets what it may read, not the denied topic sent before it.
        assert writer.publish("data/secret/1") in (0, 0x10)
        assert writer.publish("data/open/1") == 0
        assert reader.next_topic() == "data/open/1"
        # A denied PUBLISH: 0x87 in v5; 3.1.1 acknowledges it and drops it.
        assert writer.publish("inbox/reader/x") == (0x87 if v5 else 0)
        assert writer.publish("data/open/2") == 0
        assert reader.next_topic() == "data/open/2"
        # %c: a device writes and reads its own subtree only.
        dev = AclClient(port, protocol, f"dev-{version}")
        try:
            assert dev.subscribe(f"devices/dev-{version}/#") == 0
            assert dev.subscribe("devices/other/#") == refused
            assert dev.publish("devices/other/x") == (0x87 if v5 else 0)
            assert dev.publish(f"devices/dev-{version}/x") == 0
            assert dev.next_topic() == f"devices/dev-{version}/x"
        finally:
            dev.close()
    finally:
        reader.close()
        writer.close()
    # One line per connection and interval (the first refusal), whatever was refused.
    assert any("not authorized by the ACL" in line for line in acl_broker.lines)
