// Drives rill's web UI in headless Debian Chromium (playwright-core, never a downloaded
// browser) step by step with the test (tests/e2e/webui.rs): prints one JSON line per step on
// stdout and, where the test has something to do (publish, kick's other side, stop), waits for
// a line on stdin before going on.
//   HARNESS_MODULES=target/browser-harness/node_modules node webui.cjs BASE_URL SHOT_DIR
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');
const { chromium } = require(path.join(process.env.HARNESS_MODULES, 'playwright-core'));

const [base, shots] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
lines.on('line', () => { const w = waiting.shift(); if (w) w(); });
const go = () => new Promise((resolve) => waiting.push(resolve));
const say = (step, data) => process.stdout.write(JSON.stringify({ step, ...data }) + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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
    viewport: { width: 1100, height: 760 },
  });
  const pageErrors = [];
  try {
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    const shot = (name) => page.screenshot({ path: path.join(shots, name), fullPage: true });

    // Streams: the published stream appears with its codecs and resolution.
    await page.goto(base + '/#/streams');
    await page.waitForSelector('#streams');
    say('ready');
    await go(); // the test publishes
    const t0 = Date.now();
    const row = 'tr[data-stream="live/web"]';
    await page.waitForFunction((sel) => {
      const r = document.querySelector(sel);
      return r && r.querySelector('.res').textContent !== '' && r.querySelector('.codecs').textContent.includes('+');
    }, row, { timeout: 10000, polling: 50 });
    const listedAt = Date.now();
    const cell = (c) => page.$eval(row + ' .' + c, (e) => e.textContent);
    // The publisher's connection was accepted at `since` (UTC, ms), on this machine's clock.
    const since = Date.parse((await cell('since')).replace(' ', 'T') + 'Z');
    say('listed', {
      ms: listedAt - t0, afterAccept: listedAt - since,
      codecs: await cell('codecs'), res: await cell('res'), fps: await cell('fps'),
    });
    await go(); // the test starts an HTTP-FLV player
    await sleep(1500);
    await shot('webui-streams.png');

    // Server: live numbers, players by protocol.
    await page.goto(base + '/#/');
    await page.waitForFunction(() => /B\/s/.test((document.getElementById('rate-in') || {}).textContent || ''), null, { timeout: 5000 });
    const server = await page.evaluate(() => ({
      version: document.getElementById('version').textContent,
      connections: Number(document.querySelector('#connections .v').textContent),
      streams: Number(document.querySelector('#streams .v').textContent),
      rateIn: document.querySelector('#rate-in .v').textContent,
      players: document.getElementById('players').textContent,
    }));
    await shot('webui-server.png');
    say('server', server);

    // The stream page: the player decodes and keeps playing for 10 s.
    await page.goto(base + '/#/stream/live/web');
    await page.waitForFunction(() => {
      const v = document.getElementById('video');
      return v && v.getVideoPlaybackQuality().totalVideoFrames > 0 && v.currentTime > 0;
    }, null, { timeout: 15000 });
    const samples = [];
    for (let i = 0; i <= 10; i++) {
      samples.push(await page.evaluate(() => {
        const v = document.getElementById('video');
        const b = v.buffered;
        return {
          wall: Date.now(), ct: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames,
          edge: b.length ? b.end(b.length - 1) : 0, restarts: window.__player.restarts, error: window.__player.error,
        };
      }));
      if (i < 10) await sleep(1000);
    }
    const urls = await page.$$eval('.urls input', (xs) => xs.map((x) => x.value));
    await page.waitForSelector('tr[data-session^="FLVSUB"] button.kick', { timeout: 5000 });
    await shot('webui-stream.png');
    say('played', { samples, urls, live: await page.$eval('#state', (e) => e.textContent) });

    // Kick the HTTP-FLV player: the button says so and its row goes.
    const flv = await page.$eval('tr[data-session^="FLVSUB"]', (e) => e.dataset.session);
    await page.click(`tr[data-session="${flv}"] button.kick`);
    let kicked = '';
    try {
      await page.waitForFunction((id) => !document.querySelector(`tr[data-session="${id}"]`), flv, { timeout: 5000 });
      kicked = 'row gone';
    } catch (e) { kicked = 'row still there'; }
    say('kicked', { session: flv, kicked });
    await go(); // the test has checked the player and the API

    // Kick the page's own fMP4 session: its player starts over and plays on.
    const own = await page.$eval('tr[data-session^="FMP4SUB"]', (e) => e.dataset.session);
    const t3 = Date.now();
    await page.click(`tr[data-session="${own}"] button.kick`);
    let recovered = true;
    // After the restart (a new MediaSource: the element's counters start again), 25 more
    // frames and a second more of currentTime.
    await page.waitForFunction(() => {
      const v = document.getElementById('video');
      if (window.__player.restarts < 1) return false;
      const q = v.getVideoPlaybackQuality().totalVideoFrames;
      if (!window.__base || q < window.__base.q) window.__base = { q, t: v.currentTime };
      return q - window.__base.q >= 25 && v.currentTime - window.__base.t >= 0.9;
    }, null, { timeout: 15000, polling: 100 }).catch(() => { recovered = false; });
    say('rejoined', {
      recovered, ms: Date.now() - t3, restarts: await page.evaluate(() => window.__player.restarts),
      error: await page.evaluate(() => window.__player.error),
    });
    await go(); // the test stops the publisher

    // The stream is gone: on its page, then from the list.
    const t1 = Date.now();
    await page.waitForSelector('#gone', { timeout: 10000 });
    const goneMs = Date.now() - t1;
    await shot('webui-stream-gone.png');
    const framesThen = await page.evaluate(() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames);
    say('gone', { ms: goneMs });
    await go(); // the test publishes again

    // The player plays the new publisher without a reload.
    const t2 = Date.now();
    await page.waitForFunction((n) => document.getElementById('live')
      && document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames > n + 50, framesThen,
    { timeout: 20000 });
    say('back', { ms: Date.now() - t2, restarts: await page.evaluate(() => window.__player.restarts) });
    await go(); // the test stops the publisher again

    // And the list no longer shows it live.
    await page.goto(base + '/#/streams');
    await page.waitForSelector('#streams');
    await page.waitForFunction(() => !document.querySelector('#streams tr[data-live="1"]'), null, { timeout: 10000 })
      .catch(() => {});
    const stillLive = await page.$$eval('#streams tr[data-live="1"]', (rs) => rs.map((r) => r.dataset.stream));
    say('done', { stillLive, pageErrors });
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
})().catch((e) => {
  say('harnessError', { error: String(e), pageErrors });
  process.exitCode = 1;
}).finally(() => lines.close());
