// permessage-deflate (RFC 7692) end to end: MQTT.js and stompjs in Node, over the `ws`
// library with compression offered, against a Ferry with [websocket.compression] on;
// and a Ferry on its defaults, which declines the offer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import mqtt from 'mqtt';
import { startBroker } from './broker.mjs';

let broker;
let plain;
before(async () => {
  broker = await startBroker('[websocket.compression]\nenabled = true\nthreshold = 64\n');
  plain = await startBroker();
});
after(async () => { await broker.stop(); await plain.stop(); });

/** A 1 KiB JSON body, as a dashboard's feed carries. */
function reading(i) {
  const points = Array.from({ length: 12 }, (_, k) => ({ sensor: `room-${k}`, celsius: 20 + ((i + k) % 7) / 10, unit: 'C' }));
  return JSON.stringify({ seq: i, site: 'lab', points });
}

/** A WebSocket offering permessage-deflate, once open, with the 101 response. */
function opened(b) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://${b.addrs.ws}/stomp`, ['v12.stomp'], { perMessageDeflate: true });
    let res;
    socket.once('upgrade', (r) => { res = r; });
    socket.once('open', () => resolve({ res, socket }));
    socket.once('error', reject);
  });
}

function stompConnect(b) {
  return new Promise((resolve, reject) => {
    let socket;
    const client = new Client({
      webSocketFactory: () => {
        socket = new WebSocket(`ws://${b.addrs.ws}/stomp`, ['v12.stomp'], { perMessageDeflate: true });
        return socket;
      },
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      onConnect: () => resolve({ client, socket }),
      onStompError: (f) => reject(new Error(f.headers.message)),
      onWebSocketError: reject,
    });
    client.activate();
  });
}

test('Ferry with compression on answers the offer without context takeover', async () => {
  const { res, socket } = await opened(broker);
  assert.equal(res.headers['sec-websocket-extensions'], 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
  socket.close();
});

test('Ferry on its defaults declines the offer', async () => {
  const { res, socket } = await opened(plain);
  assert.equal(res.headers['sec-websocket-extensions'], undefined);
  socket.close();
});

test('MQTT.js publishes compressed, a compressed stompjs subscriber receives every message, fewer bytes on the wire', async () => {
  const { client, socket } = await stompConnect(broker);
  const got = [];
  const all = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length} of 50 arrived`)), 10000);
    client.subscribe('/topic/js.deflate.feed', (m) => {
      got.push(m.body);
      if (got.length === 50) { clearTimeout(timer); resolve(); }
    }, { receipt: 'sub-deflate' });
  });
  await new Promise((resolve) => client.watchForReceipt('sub-deflate', resolve));
  const m = mqtt.connect(`ws://${broker.addrs.ws}/mqtt`, { reconnectPeriod: 0, protocolVersion: 5, wsOptions: { perMessageDeflate: true } });
  await new Promise((resolve, reject) => { m.once('connect', resolve); m.once('error', reject); });
  const before = socket._socket.bytesRead;
  let sent = 0;
  for (let i = 0; i < 50; i++) {
    const body = reading(i);
    sent += body.length;
    await m.publishAsync('js/deflate/feed', body, { qos: 1 });
  }
  await all;
  for (let i = 0; i < 50; i++) assert.equal(got[i], reading(i), `message ${i} arrives whole`);
  const onWire = socket._socket.bytesRead - before;
  console.log(`permessage-deflate: ${onWire} bytes on the wire for ${sent} bytes of JSON bodies`);
  assert.ok(onWire * 2 < sent, `compressed: ${onWire} bytes on the wire for ${sent} bytes of bodies`);
  await m.endAsync();
  await client.deactivate();
});

test('stompjs sends compressed and MQTT.js (uncompressed) receives it', async () => {
  const m = mqtt.connect(`ws://${broker.addrs.ws}/mqtt`, { reconnectPeriod: 0, protocolVersion: 5 });
  await new Promise((resolve, reject) => { m.once('connect', resolve); m.once('error', reject); });
  await m.subscribeAsync('js/deflate/cmd', { qos: 1 });
  const arrived = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('nothing on js/deflate/cmd')), 5000);
    m.on('message', (topic, payload) => { clearTimeout(timer); resolve(payload.toString()); });
  });
  const { client } = await stompConnect(broker);
  client.publish({ destination: '/topic/js.deflate.cmd', body: reading(7) });
  assert.equal(await arrived, reading(7));
  await client.deactivate();
  await m.endAsync();
});
