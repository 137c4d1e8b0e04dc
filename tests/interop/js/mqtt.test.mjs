// MQTT.js (npm `mqtt` 5.x) against the real broker over ws:// — the browser-dashboard
// client. Each test names the behaviour it checks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { startBroker } from './broker.mjs';

let broker;
before(async () => { broker = await startBroker(); });
after(async () => { await broker.stop(); });

const url = () => `ws://${broker.addrs.ws}/mqtt`;

function connect(opts = {}) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url(), { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    client.once('connect', (ack) => resolve({ client, ack }));
    client.once('error', reject);
  });
}

function nextMessage(client, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no message in time')), timeout);
    client.once('message', (topic, payload, packet) => { clearTimeout(timer); resolve({ topic, payload, packet }); });
  });
}

const end = (client) => new Promise((resolve) => client.end(false, {}, resolve));

test('publish/subscribe at QoS 0, 1 and 2 over ws (MQTT 3.1.1)', async () => {
  const { client: sub } = await connect();
  const granted = await sub.subscribeAsync('dash/+/temp', { qos: 2 });
  assert.equal(granted[0].qos, 2);
  const { client: pub } = await connect();
  for (const qos of [0, 1, 2]) {
    const got = nextMessage(sub);
    await pub.publishAsync('dash/a/temp', `q${qos}`, { qos });
    const { topic, payload, packet } = await got;
    assert.equal(topic, 'dash/a/temp');
    assert.equal(payload.toString(), `q${qos}`);
    assert.equal(packet.qos, qos);
  }
  await end(sub); await end(pub);
});

test('MQTT 3.1 over the mqttv3.1 subprotocol (protocol MQIsdp, level 3)', async () => {
  const { client, ack } = await connect({ protocolId: 'MQIsdp', protocolVersion: 3 });
  assert.equal(ack.returnCode, 0);
  await client.subscribeAsync('old/t', { qos: 1 });
  const got = nextMessage(client);
  await client.publishAsync('old/t', 'hello 3.1', { qos: 1 });
  assert.equal((await got).payload.toString(), 'hello 3.1');
  await end(client);
});

test('a retained message reaches a later subscriber with the retain flag', async () => {
  const { client: pub } = await connect();
  await pub.publishAsync('dash/state', 'ready', { qos: 1, retain: true });
  const { client: sub } = await connect();
  const got = nextMessage(sub);
  await sub.subscribeAsync('dash/state', { qos: 1 });
  const { payload, packet } = await got;
  assert.equal(payload.toString(), 'ready');
  assert.equal(packet.retain, true);
  await pub.publishAsync('dash/state', '', { qos: 1, retain: true });
  await end(sub); await end(pub);
});

test('the will is published when a client drops without DISCONNECT', async () => {
  const { client: watcher } = await connect();
  await watcher.subscribeAsync('dash/wills/#', { qos: 1 });
  const { client: doomed } = await connect({ will: { topic: 'dash/wills/x', payload: 'offline', qos: 1, retain: false } });
  const got = nextMessage(watcher);
  doomed.stream.destroy();
  const { topic, payload } = await got;
  assert.equal(topic, 'dash/wills/x');
  assert.equal(payload.toString(), 'offline');
  doomed.end(true);
  await end(watcher);
});

test('a persistent session resumes with session present and the messages sent while away', async () => {
  const clientId = 'dash-durable';
  const { client: first } = await connect({ clientId, clean: false });
  await first.subscribeAsync('dash/jobs', { qos: 1 });
  await end(first);
  const { client: pub } = await connect();
  await pub.publishAsync('dash/jobs', 'while away', { qos: 1 });
  const received = [];
  const { client: back, ack } = await new Promise((resolve, reject) => {
    const client = mqtt.connect(url(), { clientId, clean: false, reconnectPeriod: 0 });
    client.on('message', (_t, payload) => received.push(payload.toString()));
    client.once('connect', (ack) => resolve({ client, ack }));
    client.once('error', reject);
  });
  assert.equal(ack.sessionPresent, true);
  for (let i = 0; i < 50 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(received, ['while away']);
  await end(back); await end(pub);
});

test('MQTT 5 properties pass through unchanged', async () => {
  const { client: sub } = await connect({ protocolVersion: 5 });
  await sub.subscribeAsync('v5/props', { qos: 1 });
  const { client: pub } = await connect({ protocolVersion: 5 });
  const got = nextMessage(sub);
  await pub.publishAsync('v5/props', '{"t":21}', {
    qos: 1,
    properties: {
      payloadFormatIndicator: true,
      contentType: 'application/json',
      responseTopic: 'v5/reply',
      correlationData: Buffer.from([1, 2, 3]),
      userProperties: { site: 'lab', unit: 'C' },
    },
  });
  const { packet } = await got;
  const p = packet.properties;
  assert.equal(p.contentType, 'application/json');
  assert.equal(p.responseTopic, 'v5/reply');
  assert.deepEqual([...p.correlationData], [1, 2, 3]);
  assert.deepEqual({ ...p.userProperties }, { site: 'lab', unit: 'C' });
  assert.equal(p.payloadFormatIndicator, true);
  await end(sub); await end(pub);
});

test('MQTT 5 request/response works end to end', async () => {
  const { client: responder } = await connect({ protocolVersion: 5 });
  await responder.subscribeAsync('svc/time', { qos: 1 });
  responder.on('message', (_topic, payload, packet) => {
    const { responseTopic, correlationData } = packet.properties;
    responder.publish(responseTopic, `reply to ${payload}`, { qos: 1, properties: { correlationData } });
  });
  const { client: requester } = await connect({ protocolVersion: 5 });
  await requester.subscribeAsync('svc/replies/me', { qos: 1 });
  const got = nextMessage(requester);
  await requester.publishAsync('svc/time', 'now?', { qos: 1, properties: { responseTopic: 'svc/replies/me', correlationData: Buffer.from('req-1') } });
  const { payload, packet } = await got;
  assert.equal(payload.toString(), 'reply to now?');
  assert.equal(packet.properties.correlationData.toString(), 'req-1');
  await end(responder); await end(requester);
});

test('MQTT 5 assigned client identifier for an empty one', async () => {
  const { client, ack } = await connect({ protocolVersion: 5, clientId: '' });
  assert.ok(ack.properties?.assignedClientIdentifier, 'an id is assigned');
  await end(client);
});

test('MQTT 5 no-local keeps a client\'s own messages from it', async () => {
  const { client } = await connect({ protocolVersion: 5 });
  await client.subscribeAsync('v5/chat', { qos: 0, nl: true });
  const { client: other } = await connect({ protocolVersion: 5 });
  const got = nextMessage(client);
  await client.publishAsync('v5/chat', 'mine', { qos: 0 });
  await other.publishAsync('v5/chat', 'theirs', { qos: 0 });
  assert.equal((await got).payload.toString(), 'theirs');
  await end(client); await end(other);
});

test('MQTT 5 shared subscription gives each message to one member', async () => {
  const members = [];
  const counts = [0, 0];
  for (const i of [0, 1]) {
    const { client } = await connect({ protocolVersion: 5 });
    await client.subscribeAsync('$share/workers/v5/jobs', { qos: 1 });
    client.on('message', () => { counts[i] += 1; });
    members.push(client);
  }
  const { client: pub } = await connect({ protocolVersion: 5 });
  for (let i = 0; i < 10; i++) await pub.publishAsync('v5/jobs', `${i}`, { qos: 1 });
  for (let i = 0; i < 50 && counts[0] + counts[1] < 10; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(counts[0] + counts[1], 10, 'every message delivered once');
  assert.deepEqual(counts, [5, 5], 'round-robin');
  for (const c of [...members, pub]) await end(c);
});
