// rill's in-page player: plain Media Source Extensions on the endless fMP4 stream at
// /{app}/{stream}.mp4. It reads the response box by box, opens a SourceBuffer with the codecs
// of the init segment (ftyp+moov), appends every fragment, keeps near the live edge (jumps
// ahead when it falls behind, trims what was played) and starts over, with a new MediaSource,
// when the stream ends, stalls or begins again with a new init segment (publisher reconnect).
'use strict';

function RillPlayer(video, url) {
  const LIVE_LAG = 1.5;  // seconds behind the buffered end before jumping to it
  const KEEP = 10;       // seconds of played media kept in the buffer
  const STALL_MS = 5000; // no data for this long: start over
  const self = { restarts: 0, error: '', stopped: false };
  let gen = 0, abort = null, queue = [], sb = null, lastData = 0, timer = null;

  const be32 = (b, i) => ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3];
  const str4 = (b, i) => String.fromCharCode(b[i], b[i + 1], b[i + 2], b[i + 3]);
  const find = (b, s) => { for (let i = 0; i + 4 <= b.length; i++) if (str4(b, i) === s) return i; return -1; };
  const hex = (x) => x.toString(16).padStart(2, '0');

  // The MSE codecs string of an init segment: avc1.PPCCLL, hvc1, mp4a.40.2, opus.
  function codecs(init) {
    const list = [], avcc = find(init, 'avcC');
    if (avcc >= 0) list.push('avc1.' + hex(init[avcc + 5]) + hex(init[avcc + 6]) + hex(init[avcc + 7]));
    else if (find(init, 'hvcC') >= 0) list.push('hvc1.1.6.L93.B0');
    if (find(init, 'mp4a') >= 0) list.push('mp4a.40.2');
    if (find(init, 'Opus') >= 0) list.push('opus');
    return list.join(',');
  }

  function pump() {
    if (!sb || sb.updating || !queue.length) return;
    try { sb.appendBuffer(queue.shift()); } catch (e) { restart('append: ' + e.message); }
  }

  // Jump to the live edge when behind, drop what was played long ago.
  function keepLive() {
    if (Date.now() - lastData > STALL_MS) return restart('no data');
    if (!sb || sb.updating || !video.buffered.length) return;
    const end = video.buffered.end(video.buffered.length - 1);
    if (end - video.currentTime > LIVE_LAG) video.currentTime = end - 0.3;
    const start = video.buffered.start(0);
    if (video.currentTime - start > 2 * KEEP) sb.remove(start, video.currentTime - KEEP);
    if (video.paused) video.play().catch(() => {});
  }

  function openSource(init) {
    const type = 'video/mp4; codecs="' + codecs(init) + '"';
    if (!window.MediaSource || !MediaSource.isTypeSupported(type)) throw new Error('unsupported: ' + type);
    const ms = new MediaSource();
    video.src = URL.createObjectURL(ms);
    ms.addEventListener('sourceopen', () => {
      sb = ms.addSourceBuffer(type);
      sb.mode = 'segments';
      sb.addEventListener('updateend', pump);
      pump();
      video.play().catch(() => {});
    }, { once: true });
    queue = [init];
  }

  async function run() {
    abort = new AbortController();
    sb = null; queue = []; lastData = Date.now();
    const res = await fetch(url, { signal: abort.signal, cache: 'no-store' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    const reader = res.body.getReader();
    let buf = new Uint8Array(0), init = null;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) throw new Error('stream ended');
      lastData = Date.now();
      const joined = new Uint8Array(buf.length + value.length);
      joined.set(buf); joined.set(value, buf.length);
      buf = joined;
      let at = 0, boxes = [];
      while (at + 8 <= buf.length) {
        let size = be32(buf, at);
        if (size === 1 && at + 16 <= buf.length) size = be32(buf, at + 8) * 4294967296 + be32(buf, at + 12);
        if (size < 8 || at + size > buf.length) break;
        boxes.push(buf.subarray(at, at + size));
        at += size;
      }
      buf = buf.slice(at);
      for (const box of boxes) {
        const type = str4(box, 4);
        if (type === 'ftyp' && init) throw new Error('new init segment'); // publisher reconnected
        queue.push(box);
        if (!init && type === 'moov') { init = concat(queue); openSource(init); }
      }
      if (init) pump();
    }
  }

  function concat(parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  function restart(why) {
    if (self.stopped || !timer) return; // stopped, or this run was already given up
    self.error = why; self.restarts++;
    if (abort) abort.abort();
    clearInterval(timer); timer = null;
    setTimeout(start, 1000);
  }

  function start() {
    if (self.stopped) return;
    const mine = ++gen;
    timer = setInterval(keepLive, 500);
    run().catch((e) => { if (mine === gen) restart(String(e.message || e)); });
  }

  self.stop = () => { self.stopped = true; clearInterval(timer); if (abort) abort.abort(); video.removeAttribute('src'); video.load(); };
  start();
  return self;
}
