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
// Errors the page threw, reported with the last step (or with the harness's own error).
const pageErrors = [];

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
  try {
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    // The server's [api] token, typed into the page's prompt for it.
    let tokenPrompts = 0;
    page.on('dialog', (d) => { tokenPrompts += 1; d.accept(process.env.RILL_API_TOKEN || ''); });
    const shot = (name) => page.screenshot({ path: path.join(shots, name), fullPage: true });

    // Streams: the published stream appears with its codecs and resolution.
    await page.goto(base + '/#/streams');
    await page.waitForSelector('#relay-form');
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

    // Server: live numbers, players by protocol.
    await page.goto(base + '/#/');
    await page.waitForFunction(() => /B\/s/.test((document.getElementById('rate-in') || {}).textContent || ''), null, { timeout: 15000 });
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
    await page.waitForSelector('tr[data-session^="FLVSUB"] button.kick', { timeout: 15000 });
    await shot('webui-stream.png');
    say('played', { samples, urls, live: await page.$eval('#state', (e) => e.textContent) });

    // Kick the HTTP-FLV player: the button says so and its row goes.
    const flv = await page.$eval('tr[data-session^="FLVSUB"]', (e) => e.dataset.session);
    await page.click(`tr[data-session="${flv}"] button.kick`);
    let kicked = '';
    try {
      await page.waitForFunction((id) => !document.querySelector(`tr[data-session="${id}"]`), flv, { timeout: 15000 });
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
    await go();

    // Relays from the Streams page's form, from and to this same server: a push to its own RTMP
    // address (refused: the page shows the API's error), a pull of live/web by URL into
    // live/webcopy, an RTSP push of live/web to live/webpush.
    const info = await page.evaluate(() => fetch('/api/server').then((r) => r.json()));
    const rtmp = 'rtmp://127.0.0.1:' + info.listening.rtmp, rtsp = 'rtsp://127.0.0.1:' + info.listening.rtsp;
    await page.goto(base + '/#/streams');
    await page.waitForSelector('#relay-form');
    const startRelay = async (kind, url, stream) => {
      await page.selectOption('#relay-form select[name=kind]', kind);
      await page.fill('#relay-form input[name=url]', url);
      await page.fill('#relay-form input[name=stream]', stream);
      await page.$eval('#relay-result', (e) => { e.textContent = ''; });
      await page.click('#relay-form button');
      await page.waitForFunction(() => document.getElementById('relay-result').textContent !== '', null, { timeout: 15000 });
      return page.$eval('#relay-result', (e) => ({ text: e.textContent, ok: e.className === 'ok' }));
    };
    const t4 = Date.now();
    const refused = await startRelay('push', rtmp + '/live/loop', 'live/web');
    const pulled = await startRelay('pull', rtmp + '/live/web', 'live/webcopy');
    const pushed = await startRelay('push', rtsp + '/live/webpush', 'live/web');
    // Both new streams listed live, the pulled one with the origin's codecs and size.
    await page.waitForFunction(() => ['live/webcopy', 'live/webpush'].every((k) => {
      const r = document.querySelector(`tr[data-stream="${k}"]`);
      return r && r.dataset.live === '1' && r.querySelector('.res').textContent !== '';
    }), null, { timeout: 10000, polling: 100 });
    const copy = await page.$eval('tr[data-stream="live/webcopy"]', (r) => ({
      source: r.querySelector('.source').textContent, codecs: r.querySelector('.codecs').textContent,
      res: r.querySelector('.res').textContent,
    }));
    await shot('webui-streams.png');
    say('relays', { refused, pulled, pushed, copy, ms: Date.now() - t4 });
    await go(); // the test checks them in the API

    // Each relay on its stream's page, stopped by its button.
    const stop = async (stream, kind) => {
      await page.goto(base + '/#/stream/' + stream);
      const row = `#relay-list tr[data-kind="${kind}"]`;
      await page.waitForSelector(row + ' button.stop', { timeout: 10000 });
      const id = await page.$eval(row, (e) => e.dataset.relay);
      if (kind === 'PUSH') {
        await page.waitForFunction(() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames > 25,
          null, { timeout: 10000 }).catch(() => {});
        // The page down to its relays (its play URLs are in the other shot).
        const height = await page.$eval('#action-result', (e) => Math.ceil(e.getBoundingClientRect().bottom + window.scrollY));
        await page.screenshot({ path: path.join(shots, 'webui-relays.png'), fullPage: true, clip: { x: 0, y: 0, width: 1100, height } });
      }
      await page.click(row + ' button.stop');
      let gone = true;
      await page.waitForFunction((r) => !document.querySelector(`tr[data-relay="${r}"]`), id, { timeout: 15000 })
        .catch(() => { gone = false; });
      return { id, gone, result: await page.$eval('#action-result', (e) => e.textContent) };
    };
    say('stopped', { pull: await stop('live/webcopy', 'PULL'), push: await stop('live/web', 'PUSH') });
    await go(); // the test stops the publisher again

    // And the list no longer shows it live.
    await page.goto(base + '/#/streams');
    await page.waitForSelector('#streams');
    await page.waitForFunction(() => !document.querySelector('#streams tr[data-live="1"]'), null, { timeout: 10000 })
      .catch(() => {});
    const stillLive = await page.$$eval('#streams tr[data-live="1"]', (rs) => rs.map((r) => r.dataset.stream));
    say('done', { stillLive, pageErrors, tokenPrompts });
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
})().catch((e) => {
  say('harnessError', { error: String(e), pageErrors });
  process.exitCode = 1;
}).finally(() => lines.close());
