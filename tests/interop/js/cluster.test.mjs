// Two Ferry nodes on one nats-server: MQTT.js on one node and @stomp/stompjs on the
// other see each other's messages, once each, with MQTT 5 properties as STOMP headers,
// and a retained message published on one node reaches a new MQTT.js subscriber on the
// other.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import mqtt from 'mqtt';
import { startBroker, startNats } from './broker.mjs';

let nats;
let one;
let two;
before(async () => {
  nats = await startNats();
  const node = (name) => `[cluster]\nnats_url = "${nats.url}"\nnode_name = "${name}"\n`;
  one = await startBroker(node('one'));
  two = await startBroker(node('two'));
});
after(async () => {
  await one?.stop();
  await two?.stop();
  await nats?.stop();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function stomp(b) {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new WebSocket(`ws://${b.addrs.ws}/stomp`, ['v12.stomp', 'v11.stomp', 'v10.stomp']),
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      onConnect: () => resolve(client),
      onStompError: (frame) => reject(new Error(`ERROR ${frame.headers.message}`)),
      onWebSocketError: (e) => reject(e),
    });
    client.activate();
  });
}

async function mqttClient(b, opts = {}) {
  const c = mqtt.connect(`ws://${b.addrs.ws}/mqtt`, { protocolVersion: 5, reconnectPeriod: 0, ...opts });
  await new Promise((resolve, reject) => { c.once('connect', resolve); c.once('error', reject); });
  return c;
}

/** Waits until node `b`'s metric `name` is at least `want`. */
async function metricAtLeast(b, name, want) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const text = await (await fetch(`http://${b.addrs.ws}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(name));
    const v = line ? Number(line.split(' ').pop()) : 0;
    if (v >= want) return;
    if (Date.now() > deadline) throw new Error(`${name} stayed at ${v}`);
    await sleep(50);
  }
}

test('MQTT.js on one node and stompjs on another see each other\'s messages once', async () => {
  const s = await stomp(two);
  const got = [];
  const receipt = new Promise((resolve) => s.watchForReceipt('sub', resolve));
  s.subscribe('/topic/chat.#', (m) => got.push(m), { receipt: 'sub' });
  await receipt;
  await metricAtLeast(two, 'ferry_cluster_nats_subscriptions', 2);

  const m = await mqttClient(one);
  const fromStomp = [];
  m.on('message', (topic, payload, packet) => fromStomp.push({ topic, payload: payload.toString(), packet }));
  await m.subscribeAsync('chat/room', { qos: 1 });
  await metricAtLeast(one, 'ferry_cluster_nats_subscriptions', 1);

  await m.publishAsync('chat/room', 'hello from MQTT', {
    qos: 1,
    properties: { contentType: 'text/plain', userProperties: { who: 'mqtt' } },
  });
  const deadline = Date.now() + 5000;
  while (got.length === 0 && Date.now() < deadline) await sleep(20);
  assert.equal(got.length, 1);
  assert.equal(got[0].body, 'hello from MQTT');
  assert.equal(got[0].headers.destination, '/topic/chat.room');
  assert.equal(got[0].headers['content-type'], 'text/plain');
  assert.equal(got[0].headers.who, 'mqtt');

  // MQTT.js's own message came back from its own node only, once.
  while (fromStomp.length === 0 && Date.now() < deadline) await sleep(20);
  fromStomp.length = 0;

  s.publish({ destination: '/topic/chat.room', body: 'hello from STOMP', headers: { 'content-type': 'text/plain' } });
  const until = Date.now() + 5000;
  while (fromStomp.length === 0 && Date.now() < until) await sleep(20);
  assert.equal(fromStomp.length, 1);
  assert.equal(fromStomp[0].topic, 'chat/room');
  assert.equal(fromStomp[0].payload, 'hello from STOMP');
  assert.equal(fromStomp[0].packet.properties?.contentType, 'text/plain');

  await sleep(300);
  assert.equal(got.length, 2, 'stompjs got the MQTT message and its own, nothing twice');
  assert.equal(fromStomp.length, 1, 'MQTT.js got the STOMP message once');
  await m.endAsync();
  await s.deactivate();
});

test('a message retained on one node reaches a new subscriber on the other', async () => {
  const p = await mqttClient(one);
  await p.publishAsync('status/one', 'up', { qos: 1, retain: true });
  await metricAtLeast(one, 'ferry_cluster_kv_puts', 1);
  await metricAtLeast(two, 'ferry_cluster_kv_applied', 1);
  const c = await mqttClient(two);
  const message = new Promise((resolve) => c.on('message', (topic, payload, packet) => resolve({ topic, payload, packet })));
  await c.subscribeAsync('status/#', { qos: 1 });
  const m = await message;
  assert.equal(m.topic, 'status/one');
  assert.equal(m.payload.toString(), 'up');
  assert.equal(m.packet.retain, true);
  await p.endAsync();
  await c.endAsync();
});
