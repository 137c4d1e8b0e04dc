// The admin API and HTTP messaging from Node: fetch, a small Server-Sent Events reader,
// MQTT.js and stompjs as the clients the API lists and kicks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { startBroker } from './broker.mjs';

let broker;
before(async () => { broker = await startBroker(); });
after(async () => { await broker.stop(); });

const admin = (path) => `http://${broker.addrs.admin}/api/v1${path}`;
const pub = (path) => `http://${broker.addrs.ws}/api/v1${path}`;

function connect(opts = {}) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`ws://${broker.addrs.ws}/mqtt`, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

/** Reads `text/event-stream` from a fetch response; calls `onEvent({event, id, data})`. */
async function readEvents(response, onEvent, signal) {
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = response.body.getReader();
  signal.addEventListener('abort', () => reader.cancel().catch(() => {}));
  for (;;) {
    const { value, done } = await reader.read().catch(() => ({ done: true }));
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let at;
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      const ev = { comment: [] };
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) ev.comment.push(line.slice(1).trim());
        else {
          const i = line.indexOf(':');
          ev[line.slice(0, i)] = line.slice(i + 1).replace(/^ /, '');
        }
      }
      onEvent(ev);
    }
  }
}

const until = async (cond, what, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('an MQTT.js client is listed over ws and a kick ends it with DISCONNECT 0x98', async () => {
  const client = await connect({ protocolVersion: 5, clientId: 'node-kick-me' });
  await client.subscribeAsync('node/#');
  const list = await (await fetch(admin('/clients?transport=ws&protocol=mqtt'))).json();
  const me = list.data.find((c) => c.clientid === 'node-kick-me');
  assert.ok(me, JSON.stringify(list));
  assert.equal(me.version, '5.0');
  const one = await (await fetch(admin('/clients/node-kick-me'))).json();
  assert.deepEqual(one.subscriptions.map((s) => s.topic), ['node/#']);
  const disconnected = new Promise((resolve) => client.once('disconnect', resolve));
  const resp = await fetch(admin('/clients/node-kick-me'), { method: 'DELETE' });
  assert.equal(resp.status, 204);
  const packet = await disconnected;
  assert.equal(packet.reasonCode, 0x98);
  client.end(true);
  const gone = await fetch(admin('/clients/node-kick-me'));
  assert.equal(gone.status, 404);
  assert.equal((await gone.json()).error, 'client_not_found');
});

test('a stompjs client is listed and a kick sends it an ERROR frame', async () => {
  let error;
  const stomp = new Client({
    brokerURL: `ws://${broker.addrs.ws}/stomp`,
    webSocketFactory: () => new WebSocket(`ws://${broker.addrs.ws}/stomp`, ['v12.stomp']),
    reconnectDelay: 0,
    onStompError: (frame) => { error = frame.headers.message; },
  });
  const connected = new Promise((resolve) => { stomp.onConnect = resolve; });
  stomp.activate();
  await connected;
  const list = await (await fetch(admin('/clients?protocol=stomp'))).json();
  assert.equal(list.meta.count, 1);
  assert.equal(list.data[0].transport, 'ws');
  const id = encodeURIComponent(list.data[0].clientid);
  assert.equal((await fetch(admin(`/clients/${id}`), { method: 'DELETE' })).status, 204);
  await until(() => error !== undefined, 'the ERROR frame');
  assert.equal(error, 'closed by an administrator');
  await stomp.deactivate();
});

test('HTTP publish reaches MQTT.js and an event stream, retained first', async () => {
  const seed = await fetch(pub('/publish'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ topic: 'node/retained', payload: 'kept', retain: true }),
  });
  assert.equal(seed.status, 202);
  assert.equal((await seed.json()).message, 'no_matching_subscribers');
  const client = await connect();
  await client.subscribeAsync('node/live');
  const got = new Promise((resolve) => client.on('message', (t, p) => t === 'node/live' && resolve(p.toString())));
  const abort = new AbortController();
  const events = [];
  const stream = await fetch(pub('/events?topic=node/%23'), { signal: abort.signal });
  assert.equal(stream.headers.get('content-type'), 'text/event-stream');
  const reading = readEvents(stream, (e) => events.push(e), abort.signal);
  await until(() => events.some((e) => e.event === 'message'), 'the retained message');
  const first = JSON.parse(events.find((e) => e.event === 'message').data);
  assert.deepEqual([first.topic, first.payload, first.retain], ['node/retained', 'kept', true]);
  const r = await fetch(pub('/publish'), {
    method: 'POST',
    body: JSON.stringify({ topic: 'node/live', payload: 'aGVsbG8=', payload_encoding: 'base64', properties: { user_properties: { k: 'v' } } }),
  });
  assert.equal(r.status, 200);
  assert.match((await r.json()).id, /^\d+$/);
  assert.equal(await got, 'hello');
  await until(() => events.some((e) => e.data && JSON.parse(e.data).topic === 'node/live'), 'the live event');
  const live = JSON.parse(events.find((e) => e.data && JSON.parse(e.data).topic === 'node/live').data);
  assert.deepEqual(live.properties.user_properties, { k: 'v' });
  assert.ok(Number(events.at(-1).id) > Number(events[1].id));
  abort.abort();
  await reading;
  client.end(true);
  const bad = await fetch(pub('/publish'), { method: 'POST', body: '{"topic": 1}' });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error, 'bad_request');
  const stats = await (await fetch(admin('/stats'))).json();
  assert.ok(stats.http_publishes >= 2);
});
