"""User names and passwords (docs/security.md "Authentication") with paho-mqtt 2.x: the CONNACK
reason codes of MQTT 5 (0x86 Bad User Name or Password, 0x87 Not authorized) and the return codes
of MQTT 3.1.1 (4, 5)."""

from __future__ import annotations

import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from conftest import WAIT, Broker, broker_bin

PASSWORD = "paho-pw-Zq8"


@pytest.fixture
def auth_broker(tmp_path):
    """A broker with `allow_anonymous = false` and a password file from `musqratt passwd -b`."""
    pw = tmp_path / "passwd"
    subprocess.run([broker_bin(), "passwd", "-c", "-b", str(pw), "alice", PASSWORD], check=True)
    conf = tmp_path / "musqratt.toml"
    conf.write_text('[auth]\nallow_anonymous = false\npassword_file = "passwd"\n')
    b = Broker("-c", str(conf))
    yield b
    b.stop()


def connack(port: int, protocol: int, username: str | None, password: str | None):
    """Connects once; returns the CONNACK's reason code (paho's ReasonCode) and disconnects."""
    got: list = []
    done = threading.Event()

    def on_connect(_c, _u, _flags, reason_code, _props):
        got.append(reason_code)
        done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-auth", protocol=protocol)
    c.on_connect = on_connect
    if username is not None:
        c.username_pw_set(username, password)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    try:
        assert done.wait(WAIT), "no CONNACK"
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0]


@pytest.mark.parametrize(
    "username,password,v5_code,v311_code",
    [
        ("alice", PASSWORD, 0x00, 0),
        ("alice", "wrong-pw-Hk3", 0x86, 4),
        ("mallory", PASSWORD, 0x86, 4),
        (None, None, 0x87, 5),
    ],
    ids=["right", "wrong-password", "unknown-user", "anonymous"],
)
def test_connack_codes(auth_broker, username, password, v5_code, v311_code):
    rc = connack(auth_broker.port, mqtt.MQTTv5, username, password)
    assert rc.value == v5_code, str(rc)
    names = {0x00: "Success", 0x86: "Bad user name or password", 0x87: "Not authorized"}
    assert str(rc) == names[v5_code]
    # MQTT 3.1.1: paho turns the return code into a reason code (4 -> 0x86, 5 -> 0x87), one to
    # one, so the reason names the byte the broker sent.
    rc = connack(auth_broker.port, mqtt.MQTTv311, username, password)
    assert rc == mqtt.convert_connack_rc_to_reason_code(v311_code), str(rc)
    leaked = [line for line in auth_broker.lines if password and password in line]
    assert not leaked, leaked
