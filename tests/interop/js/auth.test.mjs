// Authentication and ACL refusals as the browser clients see them: MQTT.js (3.1.1 and
// 5.0) and @stomp/stompjs over ws://, against one broker with a password file, an ACL
// file and JWT (HS256) on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { startBroker, tempDir } from './broker.mjs';

// Light argon2id hashes (64 KiB, 1 pass) of "wonderland" and "builder": quick in debug
// builds; `ferry passwd` writes the default, much heavier, parameters.
const PASSWD = [
  'alice:$argon2id$v=19$m=64,t=1,p=1$m+nUt0+Sn2RB1Hqz+eRs6Q$DTSRZtaBT1TdxSIz00jXXMyTX8d93EzvZaSrDn+u1nI',
  'bob:$argon2id$v=19$m=64,t=1,p=1$ir0AAaotN8I+otxn8f65hQ$w1BgXgV+D4jnii+GruLTW8PT1Zizm9/DTz4OyeniC8s',
].join('\n');
const ACL = `
user alice
topic readwrite alice/#
user bob
topic readwrite bob/#
all
topic read public/#
`;
const SECRET = '0123456789abcdef0123456789abcdef';

let broker;
before(async () => {
  const dir = tempDir('ferry-auth-');
  writeFileSync(join(dir, 'passwd'), `${PASSWD}\n`);
  writeFileSync(join(dir, 'acl'), ACL);
  broker = await startBroker(
    `[auth]\npassword_file = ${JSON.stringify(join(dir, 'passwd'))}\nacl_file = ${JSON.stringify(join(dir, 'acl'))}\n`
    + `[auth.jwt]\nsecret = "${SECRET}"\nleeway = "0s"\n`,
  );
});
after(async () => { await broker.stop(); });

const b64url = (data) => Buffer.from(data).toString('base64url');

/** An HS256 token for `sub`, expiring in `seconds`. */
function token(sub, seconds = 3600, extra = {}) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + seconds, ...extra }));
  const signature = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${signature}`;
}

const url = (query = '') => `ws://${broker.addrs.ws}/mqtt${query}`;

/** Resolves to the client once connected; rejects with the CONNACK error. */
function connect(opts = {}, query = '') {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url(query), { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    client.once('connect', () => resolve(client));
    client.once('error', (e) => { client.end(true); reject(e); });
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

const end = (client) => new Promise((resolve) => client.end(false, {}, resolve));

test('MQTT.js 3.1.1: wrong password gets CONNACK 4, no credentials 5', async () => {
  await assert.rejects(connect({ username: 'alice', password: 'nope' }), (e) => e.code === 4);
  await assert.rejects(connect({}), (e) => e.code === 5);
});

test('MQTT.js 5.0: wrong password gets CONNACK 0x86, no credentials 0x87', async () => {
  await assert.rejects(connect({ protocolVersion: 5, username: 'alice', password: 'nope' }), (e) => e.code === 0x86);
  await assert.rejects(connect({ protocolVersion: 5 }), (e) => e.code === 0x87);
});

test('MQTT.js 5.0: the ACL refuses a publish with PUBACK 0x87 and a subscription with SUBACK 0x87', async () => {
  const alice = await connect({ protocolVersion: 5, username: 'alice', password: 'wonderland' });
  const granted = await alice.subscribeAsync(['alice/in', 'public/news'], { qos: 1 });
  assert.deepEqual(granted.map((g) => g.qos), [1, 1]);
  // MQTT.js turns a SUBACK failure code into an error named after it (0x87).
  await assert.rejects(alice.subscribeAsync('bob/#', { qos: 1 }), /Not authorized/);
  await alice.publishAsync('alice/in', 'mine', { qos: 1 });
  await assert.rejects(alice.publishAsync('bob/in', 'not mine', { qos: 1 }), /Not authorized|135/i);
  await end(alice);
});

test('MQTT.js 3.1.1: a denied publish is dropped silently, a denied subscription gets 0x80', async () => {
  const bob = await connect({ username: 'bob', password: 'builder' });
  const [own] = await bob.subscribeAsync('bob/#', { qos: 1 });
  assert.equal(own.qos, 1);
  // 0x80, the only failure code of MQTT 3.1.1, which MQTT.js calls "Unspecified error".
  await assert.rejects(bob.subscribeAsync('alice/#', { qos: 1 }), /Unspecified error/);
  const alice = await connect({ username: 'alice', password: 'wonderland' });
  let received = 0;
  bob.on('message', () => { received += 1; });
  await alice.publishAsync('bob/in', 'dropped', { qos: 1 }); // still PUBACKed, as Mosquitto does
  await bob.publishAsync('bob/in', 'delivered', { qos: 1 });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(received, 1);
  await end(alice);
  await end(bob);
});

test('MQTT.js: a JWT as the password, and as access_token on the upgrade', async () => {
  // MQTT.js sends no password without a user name; the name must be the token's subject.
  const asPassword = await connect({ protocolVersion: 5, username: 'alice', password: token('alice') });
  await asPassword.publishAsync('alice/jwt', 'ok', { qos: 1 });
  await end(asPassword);
  const asQuery = await connect({ protocolVersion: 5 }, `?access_token=${token('bob')}`);
  await asQuery.publishAsync('bob/jwt', 'ok', { qos: 1 });
  await assert.rejects(asQuery.publishAsync('alice/jwt', 'no', { qos: 1 }), /Not authorized|135/i);
  await end(asQuery);
});

test('a bad access_token fails the WebSocket upgrade with 401', async () => {
  const status = await new Promise((resolve) => {
    const ws = new WebSocket(url(`?access_token=${token('alice', -10)}`), ['mqtt']);
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode));
    ws.on('open', () => { ws.close(); resolve(101); });
    ws.on('error', () => {});
  });
  assert.equal(status, 401);
});

test('MQTT.js: the connection closes when its token expires', async () => {
  const client = await connect({ protocolVersion: 5, username: 'alice', password: token('alice', 2) });
  const closed = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 8000);
    client.once('close', () => { clearTimeout(timer); resolve(true); });
  });
  client.end(true);
  assert.ok(closed, 'the broker closed the connection after exp');
});

/** Resolves to the connected stompjs client, rejects with the ERROR frame's message. */
function stomp(connectHeaders = {}, query = '') {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new WebSocket(`ws://${broker.addrs.ws}/stomp${query}`, ['v12.stomp']),
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      connectHeaders,
      onConnect: () => resolve(client),
      onStompError: (frame) => { client.deactivate(); reject(new Error(frame.headers.message)); },
      onWebSocketError: (e) => reject(e),
    });
    client.activate();
  });
}

test('stompjs: bad passcode and no login get ERROR "access refused"', async () => {
  await assert.rejects(stomp({ login: 'alice', passcode: 'nope' }), /access refused/);
  await assert.rejects(stomp({}), /access refused/);
});

test('stompjs: login, ACL on /topic/ by the MQTT rule, refusal as ERROR', async () => {
  const client = await stomp({ login: 'alice', passcode: 'wonderland' });
  const error = new Promise((resolve) => { client.onStompError = (frame) => resolve(frame.headers.message); });
  client.subscribe('/topic/alice.in', () => {});
  client.publish({ destination: '/topic/bob.in', body: 'not mine' });
  assert.match(await error, /access refused/);
  await client.deactivate();
});

test('stompjs: a JWT as the passcode and as access_token', async () => {
  const byPasscode = await stomp({ passcode: token('bob') });
  await byPasscode.deactivate();
  const byQuery = await stomp({}, `?access_token=${token('bob')}`);
  await byQuery.deactivate();
});
