// Opens one test page in headless Debian Chromium (driven by playwright-core, never a
// downloaded browser), waits until the page sets `window.__result`, saves a screenshot and
// prints {result, console, pageErrors} as JSON on stdout.
//   HARNESS_MODULES=target/browser-harness/node_modules node run.cjs URL SCREENSHOT LIMIT_MS
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require(path.join(process.env.HARNESS_MODULES, 'playwright-core'));

const [url, screenshot, limitArg] = process.argv.slice(2);
const limitMs = Number(limitArg || 30000);

(async () => {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rill-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
    viewport: { width: 800, height: 480 },
  });
  const consoleLines = [];
  const pageErrors = [];
  try {
    const page = await context.newPage();
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(url);
    await page.waitForFunction(() => window.__result !== undefined, null, { timeout: limitMs });
    const result = await page.evaluate(() => window.__result);
    await page.screenshot({ path: screenshot });
    process.stdout.write(JSON.stringify({ result, console: consoleLines, pageErrors }));
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
})().catch((e) => {
  process.stdout.write(JSON.stringify({ harnessError: String(e), console: [], pageErrors: [] }));
  process.exitCode = 1;
});
