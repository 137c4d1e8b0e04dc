"""Authentication and ACL refusals as paho-mqtt (3.1.1 and 5.0, TCP and WebSocket) and
stomp.py (TCP) see them, against one broker with a password file and an ACL file."""

import queue
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import stomp

from conftest import Broker

# Light argon2id hashes (64 KiB, 1 pass) of "wonderland" and "builder": quick in debug
# builds; `ferry passwd` writes the default, much heavier, parameters.
PASSWD = (
    "alice:$argon2id$v=19$m=64,t=1,p=1$m+nUt0+Sn2RB1Hqz+eRs6Q$DTSRZtaBT1TdxSIz00jXXMyTX8d93EzvZaSrDn+u1nI\n"
    "bob:$argon2id$v=19$m=64,t=1,p=1$ir0AAaotN8I+otxn8f65hQ$w1BgXgV+D4jnii+GruLTW8PT1Zizm9/DTz4OyeniC8s\n"
)
ACL = """
user alice
topic readwrite alice/#
queue readwrite jobs.alice
user bob
topic readwrite bob/#
all
topic read public/#
"""


@pytest.fixture(scope="module")
def secured():
    files = tempfile.TemporaryDirectory()
    passwd = Path(files.name) / "passwd"
    acl = Path(files.name) / "acl"
    passwd.write_text(PASSWD)
    acl.write_text(ACL)
    b = Broker(f'[auth]\npassword_file = "{passwd}"\nacl_file = "{acl}"\n')
    yield b
    b.stop()
    files.cleanup()


def mqtt_connect(broker, transport, protocol, username=None, password=None):
    """Connects; returns (client, CONNACK reason) with the network loop running."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, transport=transport, protocol=protocol)
    c.inbox = queue.Queue()
    c.acks = queue.Queue()
    connected = queue.Queue()
    c.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    c.on_message = lambda _c, _u, msg: c.inbox.put(msg)
    c.on_subscribe = lambda _c, _u, _mid, reasons, _p: c.acks.put(reasons)
    if username is not None:
        c.username_pw_set(username, password)
    if transport == "websockets":
        c.ws_set_options(path="/mqtt")
        host, port = broker.addrs["ws"]
    else:
        host, port = broker.addrs["mqtt"]
    c.connect(host, port, keepalive=30)
    c.loop_start()
    reason = connected.get(timeout=10)
    return c, reason


def stop(c):
    c.disconnect()
    c.loop_stop()


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5.0"])
def test_refused_connects(secured, transport, protocol):
    # paho 2 reports a 3.1.1 CONNACK return code (4, 5) as the MQTT 5 reason code of the
    # same meaning (0x86, 0x87); the bytes themselves are checked in tests/mqtt_auth.rs.
    bad, anonymous = 0x86, 0x87
    c, reason = mqtt_connect(secured, transport, protocol, "alice", "nope")
    c.loop_stop()
    assert reason.is_failure and reason.value == bad
    c, reason = mqtt_connect(secured, transport, protocol)
    c.loop_stop()
    assert reason.is_failure and reason.value == anonymous


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
def test_acl_on_subscribe_and_publish_mqtt5(secured, transport):
    alice, reason = mqtt_connect(secured, transport, mqtt.MQTTv5, "alice", "wonderland")
    assert not reason.is_failure
    alice.subscribe([("alice/#", 1), ("bob/#", 1)])
    granted = alice.acks.get(timeout=5)
    assert [r.value for r in granted] == [1, 0x87]
    acked = queue.Queue()
    alice.on_publish = lambda _c, _u, mid, reason, _p: acked.put(reason)
    alice.publish("bob/x", b"no", qos=1)
    assert acked.get(timeout=5).value == 0x87
    alice.publish("alice/x", b"yes", qos=1)
    assert acked.get(timeout=5).value in (0, 0x10)
    assert alice.inbox.get(timeout=5).payload == b"yes"
    stop(alice)


def test_denied_publish_is_dropped_silently_on_mqtt311(secured):
    bob, _ = mqtt_connect(secured, "tcp", mqtt.MQTTv311, "bob", "builder")
    bob.subscribe("bob/#", qos=1)
    assert [r.value for r in bob.acks.get(timeout=5)] == [1]
    alice, _ = mqtt_connect(secured, "tcp", mqtt.MQTTv311, "alice", "wonderland")
    alice.publish("bob/x", b"dropped", qos=1).wait_for_publish(5)
    bob.publish("bob/x", b"kept", qos=1).wait_for_publish(5)
    assert bob.inbox.get(timeout=5).payload == b"kept"
    time.sleep(0.2)
    assert bob.inbox.empty()
    stop(alice)
    stop(bob)


class Listener(stomp.ConnectionListener):
    def __init__(self):
        self.errors = queue.Queue()
        self.messages = queue.Queue()
        self.disconnected = queue.Queue()

    def on_disconnected(self):
        self.disconnected.put(True)

    def on_error(self, frame):
        self.errors.put(frame)

    def on_message(self, frame):
        self.messages.put(frame)


def stomp_conn(broker):
    host, port = broker.addrs["stomp"]
    conn = stomp.Connection12([(host, port)], heartbeats=(0, 0), reconnect_attempts_max=1)
    listener = Listener()
    conn.set_listener("l", listener)
    return conn, listener


def test_stomp_bad_passcode_gets_access_refused(secured):
    conn, listener = stomp_conn(secured)
    with pytest.raises(stomp.exception.ConnectFailedException):
        conn.connect("alice", "nope", wait=True)
    assert listener.errors.get(timeout=5).headers["message"] == "access refused"


def test_stomp_acl_covers_topics_and_queues(secured):
    conn, listener = stomp_conn(secured)
    conn.connect("alice", "wonderland", wait=True)
    conn.subscribe("/queue/jobs.alice", id="q", ack="auto")
    conn.send("/queue/jobs.alice", "job")
    assert listener.messages.get(timeout=5).body == "job"
    conn.send("/topic/bob.x", "not mine")
    assert listener.errors.get(timeout=5).headers["message"] == "access refused"
    # STOMP closes the connection after an ERROR frame; the broker does it.
    assert listener.disconnected.get(timeout=5)
