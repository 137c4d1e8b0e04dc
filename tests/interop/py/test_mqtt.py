"""paho-mqtt 2.x against the real broker, over WebSocket and TCP."""

import queue

import paho.mqtt.client as mqtt
import pytest


def client(broker, transport, protocol=mqtt.MQTTv311, client_id=""):
    """A connected paho client whose messages land in `c.inbox`."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, transport=transport, protocol=protocol)
    c.inbox = queue.Queue()
    connected = queue.Queue()
    c.on_message = lambda _c, _u, msg: c.inbox.put(msg)
    c.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    if transport == "websockets":
        c.ws_set_options(path="/mqtt")
        host, port = broker.addrs["ws"]
    else:
        host, port = broker.addrs["mqtt"]
    c.connect(host, port, keepalive=30)
    c.loop_start()
    assert not connected.get(timeout=5).is_failure
    return c


@pytest.mark.parametrize("transport", ["websockets", "tcp"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_subscribe_each_qos(broker, transport, qos):
    sub = client(broker, transport)
    sub.subscribe("paho/t", qos=qos)
    pub = client(broker, transport)
    # Wait for SUBACK by round-tripping a first message.
    for _ in range(20):
        pub.publish("paho/t", b"probe", qos=qos).wait_for_publish(5)
        try:
            sub.inbox.get(timeout=0.2)
            break
        except queue.Empty:
            continue
    pub.publish("paho/t", b"\x00binary\xff", qos=qos).wait_for_publish(5)
    msg = sub.inbox.get(timeout=5)
    while msg.payload == b"probe":
        msg = sub.inbox.get(timeout=5)
    assert msg.payload == b"\x00binary\xff"
    assert msg.qos == qos
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()


def test_mqtt5_user_properties_over_websocket(broker):
    sub = client(broker, "websockets", protocol=mqtt.MQTTv5)
    sub.subscribe("paho/v5", qos=1)
    pub = client(broker, "websockets", protocol=mqtt.MQTTv5)
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("k", "v")]
    props.ContentType = "text/plain"
    for _ in range(20):
        pub.publish("paho/v5", b"hi", qos=1, properties=props).wait_for_publish(5)
        try:
            msg = sub.inbox.get(timeout=0.3)
            break
        except queue.Empty:
            continue
    assert msg.payload == b"hi"
    assert msg.properties.ContentType == "text/plain"
    assert ("k", "v") in msg.properties.UserProperty
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
