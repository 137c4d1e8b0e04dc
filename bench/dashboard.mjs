// make bench helper: keeps Ferry's dashboard open in a headless Chromium for SECONDS,
// as an operator would leave it, then closes it. Usage: node dashboard.mjs URL SECONDS
// puppeteer-core comes from the interop tests' node_modules (make test installs it).
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(new URL('../tests/interop/package.json', import.meta.url));
const puppeteer = require('puppeteer-core');
const [url, seconds] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'ferry-bench-chromium-'));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`],
});
try {
  const page = await browser.newPage();
  let requests = 0;
  page.on('request', () => { requests += 1; });
  await page.goto(url, { waitUntil: 'load' });
  console.error('ferry-bench: dashboard open');
  await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
  console.error(`ferry-bench: dashboard made ${requests} requests`);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
