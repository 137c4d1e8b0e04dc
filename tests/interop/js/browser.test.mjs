// A real browser: Debian's chromium, headless, driven by puppeteer-core (which uses the
// installed browser and downloads nothing). The dashboard loads, lists a client this test
// connected, kicks it and shows a retained message; a page of the test's own runs MQTT.js,
// stompjs and an EventSource against Ferry, and all three see each other's messages.
// Screenshots go to tests/interop/out/browser/ (git-ignored).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import mqtt from 'mqtt';
import { startBroker, tempDir } from './broker.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, '..', 'node_modules');
const out = join(here, '..', 'out', 'browser');
const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';

let broker, browser, pages;

const testPage = `<!doctype html><meta charset="utf-8"><title>ferry browser clients</title>
<script src="/mqtt.min.js"></script><script src="/stomp.umd.min.js"></script>
<body><pre id="log"></pre><script>
const ws = new URLSearchParams(location.search).get('ws');
window.seen = { mqtt: [], stomp: [], sse: [] };
window.ready = { mqtt: false, stomp: false, sse: false };
const log = (s) => { document.getElementById('log').textContent += s + '\\n'; };
const m = mqtt.connect('ws://' + ws + '/mqtt', { clientId: 'browser-mqtt', reconnectPeriod: 0 });
m.on('connect', () => m.subscribe('meet/#', () => { window.ready.mqtt = true; }));
m.on('message', (t, p) => { window.seen.mqtt.push(t + '=' + p); log('mqtt  ' + t + ' ' + p); });
const s = new StompJs.Client({ brokerURL: 'ws://' + ws + '/stomp', reconnectDelay: 0 });
s.onConnect = () => {
  s.subscribe('/topic/meet.#', (msg) => { window.seen.stomp.push(msg.headers.destination + '=' + msg.body); log('stomp ' + msg.headers.destination + ' ' + msg.body); });
  window.ready.stomp = true;
};
s.activate();
const es = new EventSource('http://' + ws + '/api/v1/events?topic=meet/%23');
es.onopen = () => { window.ready.sse = true; };
es.addEventListener('message', (e) => { const d = JSON.parse(e.data); window.seen.sse.push(d.topic + '=' + d.payload); log('sse   ' + d.topic + ' ' + d.payload); });
window.sendAll = async () => {
  m.publish('meet/mqtt', 'from mqtt');
  s.publish({ destination: '/topic/meet.stomp', body: 'from stomp' });
  const r = await fetch('http://' + ws + '/api/v1/publish', { method: 'POST', body: JSON.stringify({ topic: 'meet/sse', payload: 'from the sse page' }) });
  return r.status;
};
</script></body>`;

let server;
function startStatic() {
  const files = {
    '/mqtt.min.js': join(modules, 'mqtt', 'dist', 'mqtt.min.js'),
    '/stomp.umd.min.js': join(modules, '@stomp', 'stompjs', 'bundles', 'stomp.umd.min.js'),
  };
  server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(testPage);
    } else if (files[path]) {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(files[path]));
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

before(async () => {
  assert.ok(existsSync(chromium), `no browser at ${chromium}: apt-get install -y chromium`);
  mkdirSync(out, { recursive: true });
  broker = await startBroker('[admin]\nsample_interval = "500ms"\n');
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    protocolTimeout: 60000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--user-data-dir=${tempDir('ferry-chromium-')}`],
  });
  pages = [];
});

after(async () => {
  for (const p of pages) await p.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
  if (server) server.close();
  if (broker) await broker.stop();
});

async function newPage(width = 1280, height = 900) {
  const page = await browser.newPage();
  pages.push(page);
  await page.setViewport({ width, height });
  page.on('pageerror', (e) => console.error('page error:', e.message));
  return page;
}

test('the dashboard lists a client, kicks it, shows a retained message and its own WebSocket client works', { timeout: 90000 }, async () => {
  const device = await new Promise((resolve, reject) => {
    const c = mqtt.connect(`ws://${broker.addrs.ws}/mqtt`, { clientId: 'dashboard-test-device', reconnectPeriod: 0, connectTimeout: 5000 });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
  await device.subscribeAsync('sensors/#');
  const page = await newPage();
  const dash = `http://${broker.addrs.admin}/`;
  await page.goto(dash + '#overview', { waitUntil: 'load' });
  await page.waitForFunction(() => document.querySelector('#c-connections').textContent.trim() === '1', { timeout: 10000 });
  await new Promise((r) => setTimeout(r, 2500)); // a few samples for the charts
  await page.screenshot({ path: join(out, 'overview.png') });

  await page.goto(dash + '#clients');
  await page.waitForSelector('tr[data-client="dashboard-test-device"]', { timeout: 10000 });
  const row = await page.$eval('tr[data-client="dashboard-test-device"]', (tr) => tr.textContent);
  assert.match(row, /mqtt 3\.1\.1/);
  assert.match(row, /ws/);
  await page.screenshot({ path: join(out, 'clients.png') });
  const closed = new Promise((resolve) => device.once('close', resolve));
  await page.click('button.kick[data-id="dashboard-test-device"]');
  await closed;
  device.end(true);
  await page.waitForFunction(() => !document.querySelector('tr[data-client="dashboard-test-device"]'), { timeout: 10000 });

  const r = await fetch(`http://${broker.addrs.ws}/api/v1/publish`, {
    method: 'POST',
    body: JSON.stringify({ topic: 'sensors/room1/temp', payload: '{"celsius": 21.5}', retain: true }),
  });
  assert.equal(r.status, 202);
  await page.goto(dash + '#retained');
  await page.click('#retained-filter button[type=submit]');
  await page.waitForSelector('tr[data-topic="sensors/room1/temp"]', { timeout: 10000 });
  await page.click('tr[data-topic="sensors/room1/temp"] button.link');
  await page.waitForFunction(() => document.querySelector('#retained-preview').textContent.includes('21.5'));
  await page.screenshot({ path: join(out, 'retained.png') });

  await page.goto(dash + '#client');
  await page.waitForFunction(() => document.querySelector('#ws-url').value.startsWith('ws://'));
  await page.click('#ws-connect');
  await page.waitForFunction(() => document.querySelector('#ws-log').textContent.includes('CONNACK: connected'), { timeout: 10000 });
  await page.click('#ws-subscribe');
  await page.waitForFunction(() => document.querySelector('#ws-log').textContent.includes('SUBACK'), { timeout: 10000 });
  await page.click('#ws-publish');
  await page.waitForFunction(() => document.querySelector('#ws-log').textContent.includes('test/hello → hello from the dashboard'), { timeout: 10000 });
  await page.select('#ws-form select[name=proto]', 'stomp');
  await page.click('#ws-disconnect');
  await page.waitForFunction(() => !document.querySelector('#ws-connect').disabled);
  await page.click('#ws-connect');
  await page.waitForFunction(() => document.querySelector('#ws-log').textContent.includes('CONNECTED (STOMP 1.2)'), { timeout: 10000 });
  await page.click('#ws-subscribe');
  await page.click('#ws-publish');
  await page.waitForFunction(() => document.querySelectorAll('#ws-log li.in').length >= 2, { timeout: 10000 });
  await page.screenshot({ path: join(out, 'ws-client.png') });

  const phone = await newPage(390, 844);
  await phone.goto(dash + '#overview');
  await phone.waitForFunction(() => document.querySelector('#c-connections').textContent.trim() !== '–', { timeout: 10000 });
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling at phone width (${overflow}px)`);
  await phone.screenshot({ path: join(out, 'overview-phone.png'), fullPage: true });
});

test('MQTT.js, stompjs and an EventSource in the browser see each other', { timeout: 60000 }, async () => {
  const port = await startStatic();
  const page = await newPage(900, 600);
  await page.goto(`http://127.0.0.1:${port}/?ws=${broker.addrs.ws}`);
  await page.waitForFunction(() => window.ready.mqtt && window.ready.stomp && window.ready.sse, { timeout: 15000 });
  assert.equal(await page.evaluate(() => window.sendAll()), 200);
  await page.waitForFunction(
    () => ['mqtt', 'stomp', 'sse'].every((k) => window.seen[k].length >= 3),
    { timeout: 15000 },
  );
  const seen = await page.evaluate(() => window.seen);
  for (const topic of ['meet/mqtt', 'meet/stomp', 'meet/sse']) {
    assert.ok(seen.mqtt.some((m) => m.startsWith(topic + '=')), `MQTT.js saw ${topic}: ${seen.mqtt}`);
    assert.ok(seen.sse.some((m) => m.startsWith(topic + '=')), `EventSource saw ${topic}: ${seen.sse}`);
    const dest = '/topic/' + topic.replaceAll('/', '.');
    assert.ok(seen.stomp.some((m) => m.startsWith(dest + '=')), `stompjs saw ${dest}: ${seen.stomp}`);
  }
  await page.screenshot({ path: join(out, 'three-clients.png') });
});

test('Chromium exchanges compressed STOMP messages with a Ferry that has permessage-deflate on', { timeout: 60000 }, async () => {
  const compressing = await startBroker('[websocket.compression]\nenabled = true\nthreshold = 64\n');
  try {
    const page = await newPage(900, 600);
    // A page of an http origin (about:blank's origin is "null", which the origin check refuses).
    await page.goto(`http://${compressing.addrs.ws}/healthz`);
    const result = await page.evaluate((addr) => new Promise((resolve, reject) => {
      // Chromium offers permessage-deflate on every WebSocket; the page speaks STOMP 1.2 itself.
      const ws = new WebSocket(`ws://${addr}/stomp`, ['v12.stomp']);
      const body = JSON.stringify({ readings: Array.from({ length: 40 }, (_, i) => ({ room: `r${i}`, celsius: 20 + (i % 7) / 10 })) });
      const timer = setTimeout(() => reject(new Error('no MESSAGE in time')), 15000);
      ws.onerror = () => reject(new Error('websocket error'));
      ws.onopen = () => {
        ws.send('CONNECT\naccept-version:1.2\nhost:/\n\n\0');
        ws.send('SUBSCRIBE\nid:0\ndestination:/topic/browser.deflate\nreceipt:sub\n\n\0');
      };
      ws.onmessage = (e) => {
        const frame = String(e.data);
        if (frame.startsWith('RECEIPT')) ws.send(`SEND\ndestination:/topic/browser.deflate\n\n${body}\0`);
        if (frame.startsWith('MESSAGE')) {
          clearTimeout(timer);
          const got = frame.slice(frame.indexOf('\n\n') + 2, frame.lastIndexOf('\0'));
          resolve({ extensions: ws.extensions, same: got === body, length: body.length });
          ws.close();
        }
      };
    }), compressing.addrs.ws);
    assert.match(result.extensions, /^permessage-deflate/, 'the extension was negotiated');
    assert.ok(result.same, `the ${result.length}-byte body came back whole`);
  } finally {
    await compressing.stop();
  }
});
