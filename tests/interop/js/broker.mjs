// Starts the real ferry binary on ephemeral loopback ports and reads its JSON log
// lines to learn them. Every broker started is killed, and its temporary directory
// removed, when the test process ends.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const bin = process.env.FERRY_TEST_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug', 'ferry');
const started = new Set();
const dirs = new Set();
process.on('exit', () => {
  for (const child of started) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A temporary directory of the test's own, removed when the test process ends. */
export function tempDir(prefix = 'ferry-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

const listeners = ['ws', 'wss', 'mqtt', 'mqtts', 'stomp', 'stomps', 'admin']
  .map((l) => `[listeners.${l}]\nbind = "127.0.0.1:0"\n`).join('');

/** Start a broker; resolves to { addrs: {ws: 'host:port', ...}, stop() }. */
export async function startBroker(extraToml = '', extraEnv = {}) {
  const config = join(tempDir(), 'ferry.toml');
  writeFileSync(config, `[log]\nlevel = "info"\nformat = "json"\n${listeners}${extraToml}`);
  // FERRY_TEST_BIN is the harness's own: the broker would take it for a setting.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'FERRY_TEST_BIN'));
  // Each broker keeps its data in a temporary directory of its own, unless the test
  // restarts one on the same data (FERRY_STORAGE__DIR in extraEnv).
  env.FERRY_STORAGE__DIR = join(tempDir(), 'data');
  Object.assign(env, extraEnv);
  const child = spawn(bin, ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'], env });
  started.add(child);
  const addrs = {};
  const lines = createInterface({ input: child.stderr });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('ferry did not start')), 20000);
    lines.on('line', (line) => {
      let entry;
      try { entry = JSON.parse(line); } catch { return; }
      if (entry.message === 'listening') addrs[entry.listener.replaceAll('"', '')] = entry.addr;
      if (entry.message === 'ferry started') { clearTimeout(timer); resolve(); }
    });
    child.on('exit', (code) => reject(new Error(`ferry exited with ${code}`)));
  });
  await ready;
  return {
    addrs,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      started.delete(child);
    },
    /** SIGKILL: no shutdown of any kind runs. */
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
      started.delete(child);
    },
  };
}

/** A free loopback TCP port. */
async function freePort() {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/**
 * Start a real nats-server with JetStream (for cluster tests): /usr/sbin/nats-server or
 * the one on PATH; throws, with what to install, when there is none. Resolves to
 * { url, stop() } once it accepts connections.
 */
export async function startNats() {
  const { existsSync } = await import('node:fs');
  const { connect } = await import('node:net');
  const candidates = ['/usr/sbin/nats-server', ...(process.env.PATH ?? '').split(':').map((d) => join(d, 'nats-server'))];
  const natsBin = candidates.find((p) => p && existsSync(p));
  if (!natsBin) throw new Error('nats-server not found (neither /usr/sbin/nats-server nor on PATH): install it (Debian: apt-get install nats-server)');
  const port = await freePort();
  const monitor = await freePort();
  const child = spawn(natsBin, ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitor), '-js', '-sd', tempDir('nats-')], { stdio: 'ignore' });
  started.add(child);
  const deadline = Date.now() + 10000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error('nats-server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
      started.delete(child);
    },
  };
}
