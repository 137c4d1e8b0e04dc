// @stomp/stompjs 7.x against the real broker over ws:// — the STOMP web-app client —
// and, for the cross-protocol cases, MQTT.js on the same broker. Each test names the
// behaviour it checks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import mqtt from 'mqtt';
import { startBroker } from './broker.mjs';

let broker;
before(async () => { broker = await startBroker(); });
after(async () => { await broker.stop(); });

const PROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A connected stompjs client on `b` (default: the shared broker). */
function connect(opts = {}, b = broker) {
  return new Promise((resolve, reject) => {
    let socket;
    const client = new Client({
      webSocketFactory: () => { socket = new WebSocket(`ws://${b.addrs.ws}/stomp`, PROTOCOLS); return socket; },
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      ...opts,
      onConnect: (frame) => resolve({ client, frame, socket }),
      onStompError: (frame) => reject(new Error(`ERROR ${frame.headers.message}: ${frame.body}`)),
      onWebSocketError: (e) => reject(e),
    });
    client.activate();
  });
}

/** Messages of one subscription, awaited one at a time. */
function inbox(client, destination, headers = {}) {
  const queue = [];
  const waiters = [];
  const subscription = client.subscribe(destination, (m) => {
    const w = waiters.shift();
    if (w) w(m); else queue.push(m);
  }, headers);
  return {
    subscription,
    next(timeout = 5000) {
      if (queue.length) return Promise.resolve(queue.shift());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no message on ${destination} in time`)), timeout);
        waiters.push((m) => { clearTimeout(timer); resolve(m); });
      });
    },
    async quiet(ms = 300) {
      await sleep(ms);
      assert.equal(queue.length, 0, `unexpected message on ${destination}: ${queue[0]?.body}`);
    },
  };
}

let receipts = 0;
/** Send a frame through `send(headers)` with a receipt header and wait for the RECEIPT. */
function withReceipt(client, send) {
  const id = `r-${++receipts}`;
  const got = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no RECEIPT ${id}`)), 5000);
    client.watchForReceipt(id, (frame) => { clearTimeout(timer); resolve(frame); });
  });
  send({ receipt: id });
  return got;
}

/** Subscribe and wait until the broker has taken the subscription. */
async function subscribed(client, destination, headers = {}) {
  let box;
  await withReceipt(client, (r) => { box = inbox(client, destination, { ...headers, ...r }); });
  return box;
}

const publish = (client, destination, body, headers = {}) =>
  withReceipt(client, (r) => client.publish({ destination, body, headers: { ...headers, ...r } }));

test('CONNECT over v12.stomp negotiates STOMP 1.2 with Ferry\'s CONNECTED headers', async () => {
  const { client, frame, socket } = await connect();
  assert.equal(socket.protocol, 'v12.stomp');
  assert.equal(frame.headers.version, '1.2');
  assert.match(frame.headers.server, /^Ferry\//);
  assert.ok(frame.headers.session);
  await client.deactivate();
});

test('receipts: SUBSCRIBE and SEND are answered after they took effect', async () => {
  const { client: sub } = await connect();
  const box = await subscribed(sub, '/topic/js.receipts');
  const { client: pub } = await connect();
  const receipt = await publish(pub, '/topic/js.receipts', 'after the receipt', { 'x-custom': 'yes' });
  assert.equal(receipt.command, 'RECEIPT');
  const m = await box.next();
  assert.equal(m.body, 'after the receipt');
  assert.equal(m.headers['x-custom'], 'yes');
  assert.equal(m.headers.destination, '/topic/js.receipts');
  await sub.deactivate(); await pub.deactivate();
});

test('ack:auto delivers without acknowledgement', async () => {
  const { client } = await connect();
  const box = await subscribed(client, '/queue/js.auto');
  for (const n of [1, 2, 3]) await publish(client, '/queue/js.auto', `a${n}`);
  for (const n of [1, 2, 3]) assert.equal((await box.next()).body, `a${n}`);
  await client.deactivate();
});

test('ack:client is cumulative and holds the window', async () => {
  const { client } = await connect();
  const box = await subscribed(client, '/queue/js.client', { ack: 'client', 'prefetch-count': '2' });
  for (const n of [1, 2, 3, 4]) await publish(client, '/queue/js.client', `c${n}`);
  const first = await box.next();
  const second = await box.next();
  assert.deepEqual([first.body, second.body], ['c1', 'c2']);
  assert.ok(second.headers.ack, 'STOMP 1.2 MESSAGE carries ack');
  await box.quiet();
  second.ack(); // acknowledges c1 too
  assert.equal((await box.next()).body, 'c3');
  assert.equal((await box.next()).body, 'c4');
  await client.deactivate();
});

test('ack:client-individual acknowledges one message; NACK redelivers it', async () => {
  const { client } = await connect();
  const box = await subscribed(client, '/queue/js.individual', { ack: 'client-individual', 'prefetch-count': '1' });
  await publish(client, '/queue/js.individual', 'i1');
  await publish(client, '/queue/js.individual', 'i2');
  const first = await box.next();
  assert.equal(first.body, 'i1');
  first.nack();
  const again = await box.next();
  assert.equal(again.body, 'i1');
  assert.equal(again.headers.redelivered, 'true');
  again.ack();
  const next = await box.next();
  assert.equal(next.body, 'i2');
  next.ack();
  await client.deactivate();
});

test('unacknowledged queue messages of a closed connection go to another consumer', async () => {
  const { client: a } = await connect();
  const boxA = await subscribed(a, '/queue/js.handover', { ack: 'client' });
  const { client: pub } = await connect();
  await publish(pub, '/queue/js.handover', 'job');
  assert.equal((await boxA.next()).body, 'job');
  a.forceDisconnect();
  const { client: b } = await connect();
  const boxB = await subscribed(b, '/queue/js.handover', { ack: 'client' });
  const m = await boxB.next();
  assert.equal(m.body, 'job');
  assert.equal(m.headers.redelivered, 'true');
  m.ack();
  await b.deactivate(); await pub.deactivate();
});

test('transactions: SENDs and ACKs take effect on COMMIT, ABORT drops', async () => {
  const { client: sub } = await connect();
  const box = await subscribed(sub, '/queue/js.tx', { ack: 'client-individual', 'prefetch-count': '1' });
  const { client: pub } = await connect();
  const tx = pub.begin();
  pub.publish({ destination: '/queue/js.tx', body: 't1', headers: { transaction: tx.id } });
  pub.publish({ destination: '/queue/js.tx', body: 't2', headers: { transaction: tx.id } });
  await box.quiet();
  tx.commit();
  const m1 = await box.next();
  assert.equal(m1.body, 't1');
  const ackTx = sub.begin();
  m1.ack({ transaction: ackTx.id });
  await box.quiet(); // the window stays full until COMMIT
  ackTx.commit();
  assert.equal((await box.next()).body, 't2');
  const dropped = pub.begin();
  pub.publish({ destination: '/queue/js.tx', body: 'never', headers: { transaction: dropped.id } });
  dropped.abort();
  await publish(pub, '/queue/js.tx', 'after-abort');
  await sub.deactivate(); await pub.deactivate();
});

test('heart-beats flow both ways and keep an idle connection open', async () => {
  const hb = await startBroker('[stomp]\nheart_beat_send = "100ms"\nheart_beat_receive = "100ms"\n');
  let beats = 0;
  const { client, frame } = await connect({
    heartbeatIncoming: 100,
    heartbeatOutgoing: 100,
    onHeartbeatReceived: () => { beats += 1; },
  }, hb);
  assert.equal(frame.headers['heart-beat'], '100,100');
  await sleep(1500);
  assert.ok(beats >= 5, `server heart-beats received: ${beats}`);
  assert.ok(client.connected, 'the client\'s heart-beats kept the connection alive');
  await publish(client, '/topic/hb', 'still here');
  await client.deactivate();
  await hb.stop();
});

test('a large body split over WebSocket frames with splitLargeFrames arrives whole', async () => {
  const { client: sub } = await connect();
  const box = await subscribed(sub, '/topic/js.large');
  const { client: pub } = await connect({ splitLargeFrames: true, maxWebSocketChunkSize: 4096 });
  const body = 'ferry-'.repeat(50_000);
  await publish(pub, '/topic/js.large', body);
  const m = await box.next();
  assert.equal(m.body.length, body.length);
  assert.equal(m.body, body);
  assert.equal(m.headers['content-length'], String(body.length));
  await sub.deactivate(); await pub.deactivate();
});

test('a binary body arrives byte for byte', async () => {
  const { client } = await connect();
  const box = await subscribed(client, '/topic/js.binary');
  const bytes = new Uint8Array([0, 255, 1, 254, 0xc3, 0x28]);
  await withReceipt(client, (r) => client.publish({ destination: '/topic/js.binary', binaryBody: bytes, headers: { 'content-type': 'application/octet-stream', ...r } }));
  const m = await box.next();
  assert.deepEqual([...m.binaryBody], [...bytes]);
  assert.equal(m.headers['content-type'], 'application/octet-stream');
  await client.deactivate();
});

test('request/reply through a temp-queue', async () => {
  const { client: server } = await connect();
  server.subscribe('/queue/js.rpc', (m) => {
    server.publish({ destination: m.headers['reply-to'], body: `echo ${m.body}` });
  });
  const { client } = await connect();
  const answers = await subscribed(client, '/temp-queue/answers');
  client.publish({ destination: '/queue/js.rpc', body: 'hi', headers: { 'reply-to': '/temp-queue/answers' } });
  assert.equal((await answers.next()).body, 'echo hi');
  await server.deactivate(); await client.deactivate();
});

test('an unsupported destination gets an ERROR naming the accepted prefixes', async () => {
  const { client } = await connect();
  const error = new Promise((resolve) => { client.onStompError = resolve; });
  client.publish({ destination: '/exchange/amq.direct/x', body: 'x' });
  const frame = await error;
  assert.equal(frame.headers.message, 'invalid destination');
  assert.match(frame.body, /\/topic\/, \/queue\/, \/temp-queue\//);
  await client.deactivate();
});

// --- MQTT.js and stompjs against one Ferry ---

function mqttConnect(opts = {}) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`ws://${broker.addrs.ws}/mqtt`, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 5, ...opts });
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

test('an MQTT publish reaches STOMP subscribers of the mapped topic and wildcards', async () => {
  const { client } = await connect();
  const boxes = [];
  for (const d of ['sensors.room1.temp', 'sensors.*.temp', 'sensors.#']) boxes.push(await subscribed(client, `/topic/${d}`));
  const m = await mqttConnect();
  const payload = Buffer.from([0x32, 0x31, 0x2e, 0x35, 0x00, 0xff]);
  await m.publishAsync('sensors/room1/temp', payload, {
    qos: 1,
    properties: { contentType: 'application/octet-stream', userProperties: { unit: 'C', site: 'lab' } },
  });
  for (const box of boxes) {
    const got = await box.next();
    assert.deepEqual([...got.binaryBody], [...payload]);
    assert.equal(got.headers.destination, '/topic/sensors.room1.temp');
    assert.equal(got.headers['content-length'], String(payload.length));
    assert.equal(got.headers['content-type'], 'application/octet-stream');
    assert.equal(got.headers.unit, 'C');
    assert.equal(got.headers.site, 'lab');
  }
  await client.deactivate();
  await m.endAsync();
});

test('a STOMP SEND reaches MQTT subscribers with headers as user properties', async () => {
  const subs = [];
  const got = [];
  for (const filter of ['sensors/room2/temp', 'sensors/+/temp', 'sensors/#']) {
    const m = await mqttConnect();
    await m.subscribeAsync(filter, { qos: 1 });
    got.push(new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nothing on ${filter}`)), 5000);
      m.on('message', (topic, payload, packet) => { clearTimeout(timer); resolve({ topic, payload, packet }); });
    }));
    subs.push(m);
  }
  const { client } = await connect();
  await publish(client, '/topic/sensors.room2.temp', '{"t":19.5}', { 'content-type': 'application/json', 'x-site': 'lab' });
  for (const p of got) {
    const { topic, payload, packet } = await p;
    assert.equal(topic, 'sensors/room2/temp');
    assert.equal(payload.toString(), '{"t":19.5}');
    assert.equal(packet.qos, 1);
    assert.equal(packet.properties.contentType, 'application/json');
    assert.equal(packet.properties.userProperties['x-site'], 'lab');
  }
  await client.deactivate();
  for (const m of subs) await m.endAsync();
});

test('a retained MQTT message reaches a new STOMP subscriber', async () => {
  const m = await mqttConnect();
  await m.publishAsync('js/lamps/hall', 'on', { qos: 1, retain: true });
  const { client } = await connect();
  const box = await subscribed(client, '/topic/js.lamps.*');
  const got = await box.next();
  assert.equal(got.body, 'on');
  assert.equal(got.headers.destination, '/topic/js.lamps.hall');
  await m.publishAsync('js/lamps/hall', '', { qos: 1, retain: true });
  await client.deactivate();
  await m.endAsync();
});

test('a STOMP client subscription gets an MQTT QoS 1 message again until it acks', async () => {
  const { client } = await connect();
  const box = await subscribed(client, '/topic/js.orders.#', { ack: 'client-individual' });
  const m = await mqttConnect();
  await m.publishAsync('js/orders/7', 'new', { qos: 1 });
  const first = await box.next();
  first.nack();
  const again = await box.next();
  assert.equal(again.body, 'new');
  assert.equal(again.headers.redelivered, 'true');
  again.ack();
  await box.quiet();
  await client.deactivate();
  await m.endAsync();
});

test('RabbitMQ destinations: /exchange/amq.topic reaches MQTT.js, /exchange/amq.fanout every subscriber, /amq/queue the queue', async () => {
  const m = await mqttConnect();
  await m.subscribeAsync('js/rmq/+', { qos: 1 });
  const toMqtt = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('nothing on js/rmq/+')), 5000);
    m.on('message', (topic, payload) => { clearTimeout(timer); resolve({ topic, payload: payload.toString() }); });
  });
  const fans = [];
  for (let i = 0; i < 2; i++) {
    const { client } = await connect();
    fans.push({ client, box: await subscribed(client, i ? '/exchange/amq.fanout/some.key' : '/exchange/amq.fanout') });
  }
  const { client: worker } = await connect();
  const jobs = await subscribed(worker, '/amq/queue/js.rmq.jobs');
  const { client } = await connect();
  await publish(client, '/exchange/amq.topic/js.rmq.key', 'to-mqtt');
  assert.deepEqual(await toMqtt, { topic: 'js/rmq/key', payload: 'to-mqtt' });
  await publish(client, '/exchange/amq.fanout', 'to-every-fan');
  for (const { box } of fans) {
    const got = await box.next();
    assert.equal(got.body, 'to-every-fan');
    assert.equal(got.headers.destination, '/exchange/amq.fanout');
  }
  await publish(client, '/queue/js.rmq.jobs', 'job');
  assert.equal((await jobs.next()).body, 'job');
  for (const { client: c } of fans) await c.deactivate();
  await worker.deactivate();
  await client.deactivate();
  await m.endAsync();
});
