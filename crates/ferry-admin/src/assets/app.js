// Ferry's dashboard: plain JavaScript over the admin API of this listener, no framework.
// The WebSocket test client below speaks MQTT 3.1.1 and STOMP 1.2 itself.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const state = { page: 'overview', role: 'viewer', listeners: [], samples: [], timer: null };

async function api(path, options = {}) {
  const resp = await fetch('/api/v1' + path, Object.assign({ credentials: 'same-origin' }, options));
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = { message: text }; }
  if (!resp.ok) {
    const err = new Error((body && body.message) || resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c === undefined || c === null ? '' : String(c)));
  return e;
}

const fmt = (n) => (n === undefined || n === null ? '–' : Number(n).toLocaleString('en'));
function fmtBytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1048576).toFixed(1) + ' MiB';
}
function fmtAge(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  return Math.round(s / 3600) + ' h ago';
}
function fmtUptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return (d ? d + 'd ' : '') + (h ? h + 'h ' : '') + m + 'm ' + (s % 60) + 's';
}
function status(text) { $('#status').textContent = text; }

// ---- pages -------------------------------------------------------------------------

function show(page) {
  state.page = page;
  for (const s of document.querySelectorAll('.page')) s.hidden = s.id !== 'page-' + page;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === page);
  refresh();
}

async function refresh() {
  try {
    if (state.page === 'overview') await overview();
    else if (state.page === 'clients') await clients();
    else if (state.page === 'subscriptions') await subscriptions();
    else if (state.page === 'retained') await retained();
    else if (state.page === 'listeners') await listeners();
    status('updated ' + new Date().toLocaleTimeString());
  } catch (e) {
    status('error: ' + e.message);
  }
}

async function overview() {
  const [s, samples] = await Promise.all([api('/stats'), api('/samples')]);
  $('#version').textContent = 'v' + s.version;
  $('#c-connections').textContent = fmt(s.connections);
  $('#c-by-protocol').textContent = Object.entries(s.by_protocol).map(([k, v]) => k + ' ' + v).join(' · ') || 'none';
  $('#c-by-transport').textContent = Object.entries(s.by_transport).map(([k, v]) => k + ' ' + v).join(' · ') || 'none';
  $('#c-received').textContent = fmt(s.messages_received);
  $('#c-sent').textContent = fmt(s.messages_sent);
  $('#c-dropped').textContent = fmt(s.messages_dropped + (s.sse_dropped || 0));
  $('#c-retained').textContent = fmt(s.retained);
  $('#c-retained-bytes').textContent = fmtBytes(s.retained_bytes);
  $('#c-subscriptions').textContent = fmt(s.subscriptions);
  $('#c-uptime').textContent = fmtUptime(s.uptime_seconds);
  $('#c-sessions').textContent = s.sessions + ' MQTT sessions (' + s.sessions_offline + ' offline)';
  const data = samples.data;
  const rin = [], rout = [], conns = [];
  for (let i = 1; i < data.length; i++) {
    const dt = Math.max(1, data[i].t - data[i - 1].t) / 1000;
    rin.push((data[i].received - data[i - 1].received) / dt);
    rout.push((data[i].sent - data[i - 1].sent) / dt);
    conns.push(data[i].connections);
  }
  if (rin.length) {
    $('#c-rate-in').textContent = rin[rin.length - 1].toFixed(1) + ' /s';
    $('#c-rate-out').textContent = rout[rout.length - 1].toFixed(1) + ' /s';
  }
  chart($('#chart-rates'), [rin, rout], ['#1f6feb', '#d9480f']);
  chart($('#chart-connections'), [conns], ['#2f9e44']);
}

function chart(canvas, series, colors) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 180;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext('2d');
  g.scale(ratio, ratio);
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...series.flat());
  const left = 44, bottom = h - 18, top = 8;
  g.strokeStyle = '#dde1e8'; g.fillStyle = '#6b7384'; g.font = '11px system-ui';
  for (let i = 0; i <= 4; i++) {
    const y = bottom - (bottom - top) * i / 4;
    g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
    g.fillText((max * i / 4).toFixed(max < 10 ? 1 : 0), 2, y + 4);
  }
  const n = Math.max(2, ...series.map((s) => s.length));
  g.fillText('last ' + n + ' samples', left, h - 4);
  series.forEach((s, k) => {
    g.strokeStyle = colors[k]; g.lineWidth = 2; g.beginPath();
    s.forEach((v, i) => {
      const x = left + (w - left) * (i + n - s.length) / (n - 1);
      const y = bottom - (bottom - top) * v / max;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  });
}

function params(form) {
  const p = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
  return p.toString();
}

async function clients() {
  const r = await api('/clients?limit=500&' + params($('#client-filter')));
  const body = $('#clients-table tbody');
  body.replaceChildren(...r.data.map((c) => el('tr', { 'data-client': c.clientid || String(c.id) },
    el('td', {}, c.clientid || '(#' + c.id + ')'),
    el('td', {}, c.protocol + (c.version ? ' ' + c.version : '')),
    el('td', {}, c.transport),
    el('td', {}, c.username || ''),
    el('td', {}, c.peer),
    el('td', { title: new Date(c.connected_at).toISOString() }, fmtAge(c.connected_at)),
    el('td', {}, fmt(c.messages_in)),
    el('td', {}, fmt(c.messages_out)),
    el('td', {}, state.role === 'admin'
      ? el('button', { class: 'danger kick', 'data-id': c.clientid || String(c.id), onclick: () => kick(c.clientid || String(c.id)) }, 'Kick')
      : ''))));
  $('#clients-meta').textContent = r.meta.count + ' connection(s)';
}

async function kick(id) {
  try {
    await api('/clients/' + encodeURIComponent(id), { method: 'DELETE' });
    status('kicked ' + id);
  } catch (e) { status('kick failed: ' + e.message); }
  setTimeout(refresh, 300);
}

async function subscriptions() {
  const r = await api('/subscriptions?limit=1000&' + params($('#sub-filter')));
  $('#subs-table tbody').replaceChildren(...r.data.map((s) => el('tr', {},
    el('td', {}, s.topic), el('td', {}, s.clientid || ''), el('td', {}, s.qos), el('td', {}, s.group || ''))));
  $('#subs-meta').textContent = r.meta.count + ' subscription(s)';
}

async function retained() {
  const filter = $('#retained-filter [name=match]').value || '#';
  const r = await api('/retained?limit=1000&match=' + encodeURIComponent(filter));
  $('#retained-table tbody').replaceChildren(...r.data.map((m) => el('tr', { 'data-topic': m.topic },
    el('td', {}, el('button', { class: 'link', onclick: () => preview(m) }, m.topic)),
    el('td', { class: 'preview-cell' }, m.payload_encoding === 'plain' ? m.payload : '(binary, ' + m.size + ' B)'),
    el('td', {}, m.qos),
    el('td', {}, fmtBytes(m.size)),
    el('td', {}, state.role === 'admin' ? el('button', { class: 'danger', onclick: () => dropRetained(m.topic) }, 'Delete') : ''))));
}

function preview(m) {
  const p = $('#retained-preview');
  let text = m.payload;
  if (m.payload_encoding === 'plain') { try { text = JSON.stringify(JSON.parse(m.payload), null, 2); } catch (_) { /* not JSON */ } }
  p.textContent = m.topic + '\n\n' + text + (Object.keys(m.properties).length ? '\n\nproperties: ' + JSON.stringify(m.properties) : '');
  p.hidden = false;
}

async function dropRetained(topic) {
  await api('/retained/' + topic.split('/').map(encodeURIComponent).join('/'), { method: 'DELETE' }).catch((e) => status(e.message));
  retained();
}

async function listeners() {
  const r = await api('/listeners');
  state.listeners = r.data;
  $('#listeners-table tbody').replaceChildren(...r.data.map((l) => el('tr', {},
    el('td', {}, l.name), el('td', {}, l.address), el('td', {}, l.protocol), el('td', {}, l.tls ? 'yes' : 'no'), el('td', {}, fmt(l.connections)))));
}

// ---- a tiny MQTT 3.1.1 and STOMP 1.2 client over WebSocket --------------------------

const enc = new TextEncoder(), dec = new TextDecoder();
function mqttString(s) { const b = enc.encode(s); return [b.length >> 8, b.length & 255, ...b]; }
function mqttPacket(first, body) {
  const len = []; let n = body.length;
  do { let d = n % 128; n = Math.floor(n / 128); if (n > 0) d |= 128; len.push(d); } while (n > 0);
  return new Uint8Array([first, ...len, ...body]);
}
const toStomp = (t) => t.replace(/[/.+]/g, (c) => ({ '/': '.', '.': '/', '+': '*' }[c]));
const fromStomp = (d) => d.replace(/^\/topic\//, '').replace(/[/.*]/g, (c) => ({ '.': '/', '/': '.', '*': '+' }[c]));

class TestClient {
  constructor(proto, url, user, pass, log) {
    Object.assign(this, { proto, log, buf: new Uint8Array(0), nextId: 1 });
    this.ws = new WebSocket(url, proto === 'mqtt' ? ['mqtt'] : ['v12.stomp']);
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => this.hello(user, pass);
    this.ws.onmessage = (ev) => (proto === 'mqtt' ? this.onMqtt(new Uint8Array(ev.data)) : this.onStomp(ev.data));
    this.ws.onclose = (ev) => { clearInterval(this.ping); this.log('sys', 'closed (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + ')'); this.onclose && this.onclose(); };
    this.ws.onerror = () => this.log('sys', 'WebSocket error');
  }
  hello(user, pass) {
    if (this.proto === 'mqtt') {
      const id = 'dashboard-' + Math.random().toString(16).slice(2, 10);
      let flags = 0x02; const payload = [...mqttString(id)];
      if (user) { flags |= 0x80; payload.push(...mqttString(user)); }
      if (pass) { flags |= 0x40; payload.push(...mqttString(pass)); }
      this.ws.send(mqttPacket(0x10, [...mqttString('MQTT'), 4, flags, 0, 60, ...payload]));
      this.ping = setInterval(() => this.ws.readyState === 1 && this.ws.send(new Uint8Array([0xc0, 0])), 30000);
      this.log('sys', 'CONNECT as ' + id);
    } else {
      let f = 'CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n';
      if (user) f += 'login:' + user + '\n';
      if (pass) f += 'passcode:' + pass + '\n';
      this.ws.send(f + '\n\0');
      this.log('sys', 'CONNECT');
    }
  }
  subscribe(filter) {
    if (this.proto === 'mqtt') {
      const id = this.nextId++;
      this.ws.send(mqttPacket(0x82, [id >> 8, id & 255, ...mqttString(filter), 0]));
    } else {
      this.ws.send('SUBSCRIBE\nid:sub-' + this.nextId++ + '\ndestination:/topic/' + toStomp(filter) + '\nack:auto\n\n\0');
    }
    this.log('sys', 'SUBSCRIBE ' + filter);
  }
  publish(topic, payload, retain) {
    if (this.proto === 'mqtt') {
      this.ws.send(mqttPacket(0x30 | (retain ? 1 : 0), [...mqttString(topic), ...enc.encode(payload)]));
    } else {
      this.ws.send('SEND\ndestination:/topic/' + toStomp(topic) + '\ncontent-type:text/plain\n\n' + payload + '\0');
    }
    this.log('out', topic + ' ← ' + payload);
  }
  close() {
    if (this.ws.readyState === 1) this.ws.send(this.proto === 'mqtt' ? new Uint8Array([0xe0, 0]) : 'DISCONNECT\n\n\0');
    this.ws.close(1000);
  }
  onMqtt(bytes) {
    const all = new Uint8Array(this.buf.length + bytes.length);
    all.set(this.buf); all.set(bytes, this.buf.length);
    let at = 0;
    for (;;) {
      if (all.length - at < 2) break;
      let len = 0, mul = 1, i = at + 1, done = false;
      for (; i < all.length && i < at + 5; i++) { len += (all[i] & 127) * mul; mul *= 128; if (!(all[i] & 128)) { done = true; i++; break; } }
      if (!done || all.length < i + len) break;
      this.onPacket(all[at], all.subarray(i, i + len));
      at = i + len;
    }
    this.buf = all.slice(at);
  }
  onPacket(first, body) {
    const type = first >> 4;
    if (type === 2) this.log('sys', body[1] === 0 ? 'CONNACK: connected' : 'CONNACK refused, code ' + body[1]);
    else if (type === 9) this.log('sys', 'SUBACK ' + Array.from(body.subarray(2)).join(','));
    else if (type === 3) {
      const qos = (first >> 1) & 3, tlen = (body[0] << 8) | body[1];
      const topic = dec.decode(body.subarray(2, 2 + tlen));
      const payload = dec.decode(body.subarray(2 + tlen + (qos ? 2 : 0)));
      if (qos === 1) { const id = body.subarray(2 + tlen, 4 + tlen); this.ws.send(new Uint8Array([0x40, 2, id[0], id[1]])); }
      this.log('in', topic + ' → ' + payload + (first & 1 ? ' (retained)' : ''));
    } else if (type === 14) this.log('sys', 'DISCONNECT from the broker');
  }
  onStomp(data) {
    const text = typeof data === 'string' ? data : dec.decode(data);
    for (const frame of text.split('\0')) {
      const f = frame.replace(/^[\r\n]+/, '');
      if (!f) continue;
      const [head, ...rest] = f.split('\n\n');
      const lines = head.split('\n');
      const headers = Object.fromEntries(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]));
      const body = rest.join('\n\n');
      if (lines[0] === 'CONNECTED') this.log('sys', 'CONNECTED (STOMP ' + headers.version + ')');
      else if (lines[0] === 'MESSAGE') this.log('in', fromStomp(headers.destination || '') + ' → ' + body);
      else if (lines[0] === 'ERROR') this.log('sys', 'ERROR: ' + (headers.message || body));
    }
  }
}

function wsLog(kind, text) {
  const log = $('#ws-log');
  log.prepend(el('li', { class: kind }, new Date().toLocaleTimeString() + '  ' + text));
  while (log.children.length > 200) log.lastChild.remove();
}

function setupClient() {
  const form = $('#ws-form');
  const connected = (on) => {
    $('#ws-connect').disabled = on; $('#ws-disconnect').disabled = !on;
    $('#ws-subscribe').disabled = !on; $('#ws-publish').disabled = !on;
    $('#ws-state').textContent = on ? 'connected' : 'disconnected';
  };
  $('#ws-connect').onclick = () => {
    const f = new FormData(form);
    state.client = new TestClient(f.get('proto'), f.get('url'), f.get('user'), f.get('pass'), wsLog);
    state.client.onclose = () => connected(false);
    connected(true);
  };
  $('#ws-disconnect').onclick = () => state.client && state.client.close();
  $('#ws-subscribe').onclick = () => state.client.subscribe(new FormData(form).get('sub'));
  $('#ws-publish').onclick = () => { const f = new FormData(form); state.client.publish(f.get('topic'), f.get('payload'), f.get('retain') === 'on'); };
}

async function start() {
  try {
    const who = await api('/whoami');
    state.role = who.role;
  } catch (e) { status('error: ' + e.message); }
  try {
    await listeners();
    const ws = state.listeners.find((l) => l.name === 'ws') || state.listeners.find((l) => l.name === 'wss');
    if (ws) $('#ws-url').value = (ws.name === 'wss' ? 'wss://' : 'ws://') + location.hostname + ':' + ws.port + '/mqtt';
  } catch (_) { /* shown on the listeners page */ }
  setupClient();
  for (const f of ['#client-filter', '#sub-filter']) $(f).addEventListener('input', refresh);
  $('#retained-filter').addEventListener('submit', (e) => { e.preventDefault(); retained(); });
  $('#retained-clear').onclick = async () => {
    const filter = $('#retained-filter [name=match]').value || '#';
    if (!confirm('Delete every retained message matching ' + filter + '?')) return;
    const r = await api('/retained?match=' + encodeURIComponent(filter), { method: 'DELETE' }).catch((e) => ({ deleted: e.message }));
    status('deleted ' + r.deleted); retained();
  };
  window.addEventListener('hashchange', () => show(location.hash.slice(1) || 'overview'));
  show(location.hash.slice(1) || 'overview');
  state.timer = setInterval(() => { if (state.page !== 'client' && state.page !== 'retained') refresh(); }, 2000);
}

start();
