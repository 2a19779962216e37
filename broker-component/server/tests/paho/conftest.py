"""Fixtures for the paho-mqtt 2.x tests: a broker per test, and a small synchronous client wrapper.

The broker binary is $MUSQRATT_BIN (default: target/release/musqratt in the workspace). It runs as
`musqratt serve --listen 127.0.0.1:0 --in-memory`: the kernel picks a free port (no race with other
tests for one found beforehand) and the fixture reads it from the `listening on mqtt://127.0.0.1:PORT`
line.
"""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

ROOT = Path(__file__).resolve().parents[4]
START_TIMEOUT = 10.0
WAIT = 5.0

PROTOCOLS = {"v311": mqtt.MQTTv311, "v5": mqtt.MQTTv5}


def broker_bin() -> str:
    return os.environ.get("MUSQRATT_BIN") or str(ROOT / "target" / "release" / "musqratt")


# Every listener announces itself so: mqtt, mqtts, ws (`--listen-ws`) or wss.
LISTENING = re.compile(r"listening on (mqtts?|wss?)://127\.0\.0\.1:(\d+)")


class Broker:
    def __init__(self, *args: str, config: str | None = None, want: tuple[str, ...] = ()):
        """`config`: run with that file's listeners instead of `--listen 127.0.0.1:0` (it must
        have a plain one on 127.0.0.1:0 too); `want`: the other schemes to wait for."""
        self.ports: dict[str, int] = {}
        self._want = ("mqtt", *want, *(["ws"] if "--listen-ws" in args else []))
        listen = ["-c", config] if config else ["--listen", "127.0.0.1:0"]
        self.lines: list[str] = []
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(
            [broker_bin(), "serve", *listen, "--in-memory", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._read, daemon=True).start()
        want = "listening on mqtt://127.0.0.1:PORT"
        deadline = time.monotonic() + START_TIMEOUT
        with self._cv:
            while not self._listening():
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(
                        f"broker {broker_bin()} did not print {want!r} (exit {self.proc.returncode});"
                        " output:\n" + "\n".join(self.lines)
                    )
                self._cv.wait(min(left, 0.1))

    def _listening(self) -> bool:
        """Whether the broker announced the listeners wanted; fills `self.ports` from them."""
        for line in self.lines:
            m = LISTENING.search(line)
            if m:
                self.ports.setdefault(m.group(1), int(m.group(2)))
        return all(s in self.ports for s in self._want)

    @property
    def port(self) -> int:
        return self.ports["mqtt"]

    @property
    def ws_port(self) -> int:
        return self.ports["ws"]

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.stop()


@pytest.fixture(params=sorted(PROTOCOLS))
def protocol(request):
    """Run the test for MQTT 3.1.1 and for MQTT 5."""
    return PROTOCOLS[request.param]


class Client:
    """A paho client on its own network thread, with blocking helpers for tests."""

    def __init__(
        self,
        port: int,
        protocol: int,
        client_id: str = "",
        clean: bool = True,
        session_expiry: int | None = None,
        will: tuple[str, bytes, int] | None = None,
        transport: str = "tcp",
        tls_ca: str | None = None,
    ):
        self.protocol = protocol
        kwargs = {}
        if protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            transport=transport,
            **kwargs,
        )
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connected = threading.Event()
        self._session_present = False
        self._suback: queue.Queue[int] = queue.Queue()
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, m: self.messages.put(m)
        self.c.on_subscribe = lambda _c, _u, mid, _rc, _p: self._suback.put(mid)
        if will:
            self.c.will_set(*will)
        if tls_ca:
            self.c.tls_set(ca_certs=tls_ca)
        connect_kwargs = {}
        if protocol == mqtt.MQTTv5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            if session_expiry is not None:
                props.SessionExpiryInterval = session_expiry
            connect_kwargs = {"clean_start": clean, "properties": props}
        self.c.connect("127.0.0.1", port, keepalive=30, **connect_kwargs)
        self.c.loop_start()
        assert self._connected.wait(WAIT), "no CONNACK"

    def _on_connect(self, _c, _u, flags, reason_code, _props):
        assert not reason_code.is_failure, f"CONNACK refused: {reason_code}"
        self._session_present = flags.session_present
        self._connected.set()

    @property
    def session_present(self) -> bool:
        return self._session_present

    def subscribe(self, topic: str, qos: int = 0) -> None:
        _, mid = self.c.subscribe(topic, qos)
        deadline = time.monotonic() + WAIT
        while True:
            got = self._suback.get(timeout=max(0.0, deadline - time.monotonic()))
            if got == mid:
                return

    def publish(self, topic: str, payload, qos: int = 0, retain: bool = False, properties=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(WAIT)
        assert info.is_published(), f"publish to {topic!r} not acknowledged"

    def expect(self, n: int = 1, timeout: float = WAIT) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        out = []
        for _ in range(n):
            try:
                out.append(self.messages.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"got {len(out)} of {n} messages: {[m.payload for m in out]}")
        return out

    def expect_none(self, timeout: float = 1.5) -> None:
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {m.topic!r}: {m.payload!r}")

    def disconnect(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT (the broker then sends the will)."""
        sock = self.c.socket()
        # Over WebSocket, paho wraps the socket.
        sock = getattr(sock, "_socket", sock)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.c.loop_stop()


@pytest.fixture
def client(broker, protocol):
    """A factory of connected clients for this test's broker and protocol; all closed at the end."""
    made: list[Client] = []

    def make(**kwargs) -> Client:
        c = Client(broker.port, kwargs.pop("protocol", protocol), **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.c.disconnect()  # wakes the network thread, so loop_stop() returns at once
            c.c.loop_stop()
        except Exception:
            pass
