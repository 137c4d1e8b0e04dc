"""stomp.py 9.x against the real broker over TCP (the STOMP listener), and paho-mqtt
on the same broker for the cross-protocol cases."""

import queue
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
import stomp

from conftest import Broker


class Inbox(stomp.ConnectionListener):
    """Collects what a stomp.py connection receives."""

    def __init__(self):
        self.messages = queue.Queue()
        self.receipts = queue.Queue()
        self.errors = queue.Queue()
        self.connected = queue.Queue()
        self.heartbeats = 0

    def on_connected(self, frame):
        self.connected.put(frame)

    def on_message(self, frame):
        self.messages.put(frame)

    def on_receipt(self, frame):
        self.receipts.put(frame.headers["receipt-id"])

    def on_error(self, frame):
        self.errors.put(frame)

    def on_heartbeat(self):
        self.heartbeats += 1

    def message(self, timeout=5):
        return self.messages.get(timeout=timeout)

    def quiet(self, seconds=0.3):
        with pytest.raises(queue.Empty):
            self.messages.get(timeout=seconds)


def connect(broker, version=stomp.Connection12, heartbeats=(0, 0), auto_decode=True):
    """A connected stomp.py client; its listener is `c.inbox`."""
    if version is stomp.Connection10:  # STOMP 1.0 has no heart-beats
        c = version([broker.addrs["stomp"]], auto_decode=auto_decode)
    else:
        c = version([broker.addrs["stomp"]], heartbeats=heartbeats, auto_decode=auto_decode)
    c.inbox = Inbox()
    c.set_listener("inbox", c.inbox)
    c.connect("guest", "guest", wait=True)
    return c


def receipt(c, send):
    """Call send(receipt_id) and wait for its RECEIPT."""
    rid = str(uuid.uuid4())
    send(rid)
    got = c.inbox.receipts.get(timeout=5)
    assert got == rid
    return rid


def close(*conns):
    for c in conns:
        if c.is_connected():
            c.disconnect()


def test_connect_uses_the_stomp_frame_and_gets_stomp_1_2(broker):
    c = connect(broker)
    frame = c.inbox.connected.get(timeout=5)
    assert frame.headers["version"] == "1.2"
    assert frame.headers["server"].startswith("Ferry/")
    assert frame.headers["session"]
    close(c)


@pytest.mark.parametrize("version", [stomp.Connection10, stomp.Connection11, stomp.Connection12])
def test_send_and_subscribe_with_receipts_in_each_version(broker, version):
    sub = connect(broker, version)
    receipt(sub, lambda r: sub.subscribe("/topic/py.news", id="1", headers={"receipt": r}))
    pub = connect(broker, version)
    receipt(pub, lambda r: pub.send("/topic/py.news", "hello", content_type="text/plain",
                                    headers={"x-from": "py", "receipt": r}))
    m = sub.inbox.message()
    assert m.body == "hello"
    assert m.headers["destination"] == "/topic/py.news"
    assert m.headers["content-type"] == "text/plain"
    assert m.headers["x-from"] == "py"
    close(sub, pub)


def test_binary_body_byte_for_byte(broker):
    sub = connect(broker, auto_decode=False)
    receipt(sub, lambda r: sub.subscribe("/queue/py.bin", id="1", headers={"receipt": r}))
    pub = connect(broker)
    body = b"\x00\xff\x01binary\x00"
    pub.send("/queue/py.bin", body)
    assert sub.inbox.message().body == body
    close(sub, pub)


def test_client_ack_is_cumulative_and_nack_redelivers(broker):
    c = connect(broker)
    receipt(c, lambda r: c.subscribe("/queue/py.client", id="s", ack="client",
                                     headers={"prefetch-count": "2", "receipt": r}))
    for n in range(1, 5):
        c.send("/queue/py.client", f"m{n}")
    first, second = c.inbox.message(), c.inbox.message()
    assert [first.body, second.body] == ["m1", "m2"]
    c.inbox.quiet()
    c.ack(second.headers["ack"])  # covers m1 too
    third = c.inbox.message()
    fourth = c.inbox.message()
    assert [third.body, fourth.body] == ["m3", "m4"]
    c.nack(third.headers["ack"])  # cumulative: m3 (m4 is later) comes back
    again = c.inbox.message()
    assert again.body == "m3"
    assert again.headers["redelivered"] == "true"
    close(c)


def test_client_individual_ack_and_unacked_messages_go_to_the_next_consumer(broker):
    a = connect(broker)
    receipt(a, lambda r: a.subscribe("/queue/py.ind", id="a", ack="client-individual",
                                     headers={"prefetch-count": "1", "receipt": r}))
    pub = connect(broker)
    pub.send("/queue/py.ind", "job1")
    pub.send("/queue/py.ind", "job2")
    got = a.inbox.message()
    assert got.body == "job1"
    a.inbox.quiet()
    a.disconnect()  # without ACK
    b = connect(broker)
    b.subscribe("/queue/py.ind", id="b", ack="client-individual")
    first = b.inbox.message()
    assert (first.body, first.headers["redelivered"]) == ("job1", "true")
    b.ack(first.headers["ack"])
    assert b.inbox.message().body == "job2"
    close(b, pub)


def test_stomp_1_1_ack_naming_another_subscription_settles_by_message_id(broker):
    # stomp.py's StompConnection11.ack(id, subscription) lets a caller name the wrong
    # subscription; the message id alone settles the message, as in RabbitMQ.
    c = connect(broker, version=stomp.Connection11)
    receipt(c, lambda r: c.subscribe("/queue/py.ack11", id="right", ack="client-individual",
                                     headers={"receipt": r}))
    pub = connect(broker)
    pub.send("/queue/py.ack11", "settle-me")
    got = c.inbox.message()
    assert got.body == "settle-me"
    receipt(c, lambda r: c.ack(got.headers["message-id"], "wrong", receipt=r))
    assert c.inbox.errors.empty()
    c.disconnect()  # the ACKed message must not come back
    b = connect(broker)
    b.subscribe("/queue/py.ack11", id="b", ack="client-individual")
    b.inbox.quiet(0.5)
    close(b, pub)


def test_transactions_commit_and_abort(broker):
    sub = connect(broker)
    receipt(sub, lambda r: sub.subscribe("/topic/py.tx", id="1", headers={"receipt": r}))
    pub = connect(broker)
    tx = pub.begin()
    pub.send("/topic/py.tx", "inside", headers={"transaction": tx})
    sub.inbox.quiet()
    receipt(pub, lambda r: pub.commit(tx, headers={"receipt": r}))
    assert sub.inbox.message().body == "inside"
    tx = pub.begin()
    pub.send("/topic/py.tx", "dropped", headers={"transaction": tx})
    pub.abort(tx)
    pub.send("/topic/py.tx", "after")
    assert sub.inbox.message().body == "after"
    close(sub, pub)


def test_heart_beats_keep_an_idle_connection_open():
    b = Broker('[stomp]\nheart_beat_send = "100ms"\nheart_beat_receive = "100ms"\n')
    try:
        c = connect(b, heartbeats=(100, 100))
        time.sleep(1.5)
        assert c.inbox.heartbeats >= 5, c.inbox.heartbeats
        assert c.is_connected()
        receipt(c, lambda r: c.send("/topic/py.hb", "alive", headers={"receipt": r}))
        close(c)
    finally:
        b.stop()


def test_an_unsupported_destination_is_an_error(broker):
    c = connect(broker)
    c.send("/exchange/x", "nope")
    err = c.inbox.errors.get(timeout=5)
    assert err.headers["message"] == "invalid destination"
    assert "/topic/, /queue/, /temp-queue/" in err.body


# --- paho-mqtt and stomp.py against one Ferry ---

def mqtt_client(broker, protocol=mqtt.MQTTv5):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
    c.inbox = queue.Queue()
    connected = queue.Queue()
    c.on_message = lambda _c, _u, msg: c.inbox.put(msg)
    c.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    subscribed = queue.Queue()
    c.on_subscribe = lambda _c, _u, mid, _codes, _p: subscribed.put(mid)
    c.subscribed = subscribed
    host, port = broker.addrs["mqtt"]
    c.connect(host, port, keepalive=30)
    c.loop_start()
    assert not connected.get(timeout=5).is_failure
    return c


def test_mqtt_publish_reaches_stomp_wildcard_subscriptions(broker):
    s = connect(broker, auto_decode=False)
    for sub_id, dest in (("exact", "plant.line1.temp"), ("one", "plant.*.temp"), ("all", "plant.#")):
        receipt(s, lambda r, i=sub_id, d=dest: s.subscribe(f"/topic/{d}", id=i, headers={"receipt": r}))
    m = mqtt_client(broker)
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/octet-stream"
    props.UserProperty = [("unit", "C")]
    payload = b"\x00\x01 21.5 \xff"
    m.publish("plant/line1/temp", payload, qos=1, properties=props).wait_for_publish(5)
    subs = set()
    for _ in range(3):
        f = s.inbox.message()
        assert f.body == payload
        assert f.headers["destination"] == "/topic/plant.line1.temp"
        assert f.headers["content-length"] == str(len(payload))
        assert f.headers["content-type"] == "application/octet-stream"
        assert f.headers["unit"] == "C"
        subs.add(f.headers["subscription"])
    assert subs == {"exact", "one", "all"}
    m.loop_stop()
    close(s)


def test_stomp_send_reaches_mqtt_filters_with_user_properties(broker):
    subs = []
    for filt in ("plant/line2/temp", "plant/+/temp", "plant/#"):
        m = mqtt_client(broker)
        m.subscribe(filt, qos=1)
        m.subscribed.get(timeout=5)
        subs.append(m)
    s = connect(broker)
    receipt(s, lambda r: s.send("/topic/plant.line2.temp", '{"t":20}', content_type="application/json",
                                headers={"x-site": "lab", "receipt": r}))
    for m in subs:
        msg = m.inbox.get(timeout=5)
        assert msg.topic == "plant/line2/temp"
        assert msg.payload == b'{"t":20}'
        assert msg.qos == 1
        assert msg.properties.ContentType == "application/json"
        assert ("x-site", "lab") in msg.properties.UserProperty
        m.loop_stop()
    close(s)


def test_queue_messages_survive_a_restart_and_an_unacked_one_comes_back_redelivered(tmp_path):
    data = tmp_path / "data"
    first = Broker(data_dir=data)
    try:
        pub = connect(first)
        for n in range(1, 4):
            # The RECEIPT comes once the message is on disk.
            receipt(pub, lambda r: pub.send("/queue/py.durable", f"job{n}", content_type="text/plain",
                                            headers={"x-job": str(n), "receipt": r}))
        sub = connect(first)
        # One at a time: job3 is never sent to this consumer.
        sub.subscribe("/queue/py.durable", id="s", ack="client-individual", headers={"prefetch-count": "1"})
        m = sub.inbox.message()
        assert m.body == "job1"
        sub.ack(m.headers["ack"])
        assert sub.inbox.message().body == "job2"  # delivered, never acknowledged
        # A receipted SEND after the ACK: the ACK is on disk too.
        receipt(sub, lambda r: sub.send("/queue/py.fence", "f", headers={"receipt": r}))
        close(pub, sub)
    finally:
        first.stop()
    second = Broker(data_dir=data)
    try:
        c = connect(second)
        c.subscribe("/queue/py.durable", id="s", ack="client-individual")
        got = [c.inbox.message(), c.inbox.message()]
        assert [m.body for m in got] == ["job2", "job3"]
        assert got[0].headers.get("redelivered") == "true"
        assert "redelivered" not in got[1].headers
        assert got[1].headers["content-type"] == "text/plain"
        assert got[1].headers["x-job"] == "3"
        c.inbox.quiet()
        close(c)
    finally:
        second.stop()
