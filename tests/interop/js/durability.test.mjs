// Retained messages set by MQTT.js survive kill -9 of the real broker: once MQTT.js has
// its PUBACK (the publish callback), the message is on disk, and a client of the
// restarted broker on the same data directory gets it with its MQTT 5 properties.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startBroker, tempDir } from './broker.mjs';

function connect(broker, opts = {}) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`ws://${broker.addrs.ws}/mqtt`, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

test('a retained message acknowledged to MQTT.js is back after kill -9 and a restart', async () => {
  const data = join(tempDir(), 'data');
  const first = await startBroker('', { FERRY_STORAGE__DIR: data });
  const setter = await connect(first, { protocolVersion: 5 });
  const properties = { contentType: 'application/json', userProperties: { site: 'north' } };
  for (const [topic, payload] of [['dash/temp', '{"t":21}'], ['dash/hum', '{"h":40}'], ['dash/hum', '']]) {
    await new Promise((resolve, reject) =>
      setter.publish(topic, payload, { qos: 1, retain: true, properties }, (e) => (e ? reject(e) : resolve())));
  }
  await first.kill9();
  setter.end(true);

  const second = await startBroker('', { FERRY_STORAGE__DIR: data });
  const reader = await connect(second, { protocolVersion: 5 });
  const got = [];
  reader.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), packet }));
  await reader.subscribeAsync('dash/#', { qos: 1 });
  const deadline = Date.now() + 5000;
  while (got.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(got.map((m) => [m.topic, m.payload]), [['dash/temp', '{"t":21}']], 'the cleared topic stays cleared');
  assert.equal(got[0].packet.retain, true);
  assert.equal(got[0].packet.properties.contentType, 'application/json');
  assert.equal(got[0].packet.properties.userProperties.site, 'north');
  await reader.endAsync();
  await second.stop();
});

test('an MQTT.js dashboard with a persistent session gets what was queued for it across kill -9', async () => {
  const data = join(tempDir(), 'data');
  const first = await startBroker('', { FERRY_STORAGE__DIR: data });
  const session = { clientId: 'dashboard-1', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } };
  const dash = await connect(first, session);
  await dash.subscribeAsync('plant/+/temp', { qos: 1 });
  await dash.endAsync();
  // While the dashboard is away, a device publishes; every PUBACK means it is on disk.
  const device = await connect(first, { protocolVersion: 4 });
  for (let i = 0; i < 20; i++) {
    await new Promise((resolve, reject) =>
      device.publish(`plant/${i % 2}/temp`, String(i), { qos: 1 }, (e) => (e ? reject(e) : resolve())));
  }
  device.end(true);
  await first.kill9();

  const second = await startBroker('', { FERRY_STORAGE__DIR: data });
  const got = [];
  const back = await new Promise((resolve, reject) => {
    const client = mqtt.connect(`ws://${second.addrs.ws}/mqtt`, { reconnectPeriod: 0, connectTimeout: 5000, ...session });
    client.on('message', (topic, payload) => got.push(payload.toString()));
    client.once('connect', (connack) => resolve({ client, connack }));
    client.once('error', reject);
  });
  assert.equal(back.connack.sessionPresent, true, 'the session survived the kill');
  const deadline = Date.now() + 5000;
  while (got.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => String(i)), 'every queued message, in order');
  await back.client.endAsync();
  await second.stop();
});
