// rill's web UI: three views (#/ server, #/streams, #/stream/{app}/{stream}) drawn from the
// JSON the API already serves, polled twice a second, and the API's actions (kick a session,
// start and stop relays). Plain DOM, no framework, no build step.
'use strict';

const POLL_MS = 500;
const main = document.getElementById('main');
const statusLine = document.getElementById('status');
let server = null;   // /api/server: what the server listens on
const RATE_WINDOW_MS = 3000;
const history = [];  // recent /metrics samples, for rates
let player = null;   // the stream page's RillPlayer
let timer = null;

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
// Every request to the API goes through here, so what the API may come to require of all of
// them (an Authorization header) is added in one place.
// Every API call goes through here. With [api] token set, the server answers 401 until the
// page sends the token: asked for once, kept in this browser (localStorage), sent as a bearer.
async function request(path, init = {}, retried = false) {
  const token = localStorage.getItem('rill-api-token');
  const response = await fetch(path, {
    cache: 'no-store', ...init,
    headers: {
      ...(init.body ? { 'Content-Type': 'application/json' } : {}),
      ...(token ? { Authorization: 'Bearer ' + token } : {}),
      ...init.headers,
    },
  });
  if (response.status === 401 && !retried) {
    const entered = window.prompt('This server asks for its API token ([api] token):');
    if (entered) {
      localStorage.setItem('rill-api-token', entered.trim());
      return request(path, init, true);
    }
  }
  return response;
}
const getJson = async (path) => (await request(path)).json();
const postJson = async (path, body) => (await request(path, { method: 'POST', body: JSON.stringify(body) })).json();
const kbits = (k) => (k >= 1000 ? (k / 1000).toFixed(2) + ' Mbit/s' : k + ' kbit/s');
const megabytes = (b) => (b / 1e6).toFixed(2) + ' MB';
const bytesPerSec = (b) => (b >= 1e6 ? (b / 1e6).toFixed(2) + ' MB/s' : (b / 1e3).toFixed(1) + ' kB/s');

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return (d ? d + 'd ' : '') + h + 'h ' + m + 'm ' + (s % 60) + 's';
}

// lal's times are UTC "YYYY-MM-DD HH:MM:SS.mmm".
const lalTime = (t) => Date.parse(t.replace(' ', 'T') + 'Z');

// Prometheus text to {name or name{labels}: value}.
function parseMetrics(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

// Players of a group by lal protocol name: "FLV 2, RTMP 1".
function playersByProtocol(subs) {
  const n = {};
  for (const s of subs) n[s.protocol] = (n[s.protocol] || 0) + 1;
  return Object.keys(n).sort().map((p) => p + ' ' + n[p]).join(', ') || '0';
}

const codecsOf = (g) => [g.video_codec, g.audio_codec].filter(Boolean).join(' + ') || '?';
const resolutionOf = (g) => (g.video_width ? g.video_width + 'x' + g.video_height : '');
const fpsOf = (g) => (g.video_frame_rate ? String(Math.round(g.video_frame_rate * 100) / 100) : '');
// What feeds a stream: its publisher, or the relay pulling it from another server.
const sourceOf = (g) => (g ? [g.pub, g.pull].find((s) => s && s.session_id) : undefined);
const live = (g) => Boolean(sourceOf(g));
// Runs the API action `call` and tells its outcome in the element `id`: "what: ok" (with the
// session it names), or "what failed:" and the API's error code and text, or why the request
// failed.
async function attempt(id, what, call) {
  let text, ok = false;
  try {
    const v = await call();
    ok = v.error_code === 0;
    const id = v.data && v.data.session_id, session = id && !what.includes(id) ? ` (${id})` : '';
    text = ok ? `${what}: ok${session}` : `${what} failed: error ${v.error_code}, ${v.desp}`;
  } catch (e) {
    text = `${what} failed: ${e.message}`;
  }
  const el = document.getElementById(id);
  if (el) { el.textContent = text; el.className = ok ? 'ok' : 'bad'; }
}

async function serverPage() {
  const [info, text] = await Promise.all([
    getJson('/api/stat/lal_info'),
    request('/metrics').then((r) => r.text()),
  ]);
  const m = parseMetrics(text), now = Date.now();
  // Rates over the last few seconds of samples (workers' counters are not all taken at once).
  history.push({ at: now, m });
  while (now - history[0].at > RATE_WINDOW_MS) history.shift();
  let rin = '', rout = '';
  const old = history[0], dt = (now - old.at) / 1000;
  if (dt >= 0.9) {
    rin = bytesPerSec((m.rill_bytes_in_total - old.m.rill_bytes_in_total) / dt);
    rout = bytesPerSec((m.rill_bytes_out_total - old.m.rill_bytes_out_total) / dt);
  }
  const d = info.data || {};
  const card = (k, v, id) => `<div class="card" id="${id}"><div class="v">${esc(v)}</div><div class="k">${k}</div></div>`;
  const players = Object.keys(m).filter((k) => k.startsWith('rill_players{'))
    .map((k) => `<tr><td>${esc(/"(.*)"/.exec(k)[1])}</td><td>${m[k]}</td></tr>`).join('');
  const l = server.listening;
  const ports = ['rtmp', 'rtsp', 'http', 'rtmps', 'https', 'rtsps']
    .map((p) => `<tr><td>${p.toUpperCase()}</td><td>${l[p] == null ? '<span class="muted">off</span>' : l[p]}</td></tr>`).join('');
  main.innerHTML = `<h1>Server</h1>
    <div class="cards">
      ${card('version', 'rill ' + server.version, 'version')}
      ${card('uptime', duration(now - lalTime(d.start_time)), 'uptime')}
      ${card('connections', m.rill_connections, 'connections')}
      ${card('streams', m.rill_streams, 'streams')}
      ${card('in', rin || '…', 'rate-in')}
      ${card('out', rout || '…', 'rate-out')}
    </div>
    <h2>Players by protocol</h2><table id="players"><tr><th>protocol</th><th>players</th></tr>${players}</table>
    <h2>Listening</h2><table><tr><th>listener</th><th>port</th></tr>${ports}
      <tr><td>HLS</td><td>${l.hls ? 'on' : 'off'}</td></tr>
      <tr><td>LL-HLS</td><td>${l.llhls ? 'on' : 'off'}</td></tr></table>
    <p class="muted">${esc(d.bin_info || '')}, started ${esc(d.start_time || '')} UTC</p>`;
}

// The streams page: the relay form is built once, the list redrawn every poll.
async function streamsPage(first) {
  if (first) {
    main.innerHTML = `<h1>Streams</h1><div id="stream-list"></div>
      <h2>Start a relay</h2>
      <form id="relay-form" class="relay">
        <select name="kind"><option value="pull">pull</option><option value="push">push</option></select>
        <input name="url" required placeholder="rtmp://other.example/live/cam">
        <input name="stream" placeholder="app/stream here">
        <button>start</button> <span id="relay-result"></span>
      </form>
      <p class="muted">Pull: play the URL (rtmp, rtmps, http(s) …flv, rtsp, rtsps) into the stream
        named here (empty: the URL's app/stream). Push: send the live stream named here to the URL
        (rtmp, rtmps, rtsp, rtsps). Stop them on the stream's page.</p>`;
    document.getElementById('relay-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const f = e.target, url = f.url.value.trim(), stream = f.stream.value.trim();
      const pull = f.kind.value === 'pull';
      const body = pull ? { url, ...(stream ? { stream_name: stream } : {}) } : { stream_name: stream, url };
      attempt('relay-result', pull ? 'pull from ' + url : 'push to ' + url,
        () => postJson(pull ? '/api/ctrl/start_relay_pull' : '/api/ctrl/start_relay_push', body));
    });
  }
  const groups = ((await getJson('/api/stat/all_group')).data || {}).groups || [];
  const rows = groups.map((g) => {
    const key = g.app_name + '/' + g.stream_name, p = sourceOf(g);
    return `<tr data-stream="${esc(key)}" data-live="${p ? 1 : 0}">
      <td><a href="#/stream/${esc(key)}">${esc(key)}</a></td>
      <td class="source">${p ? esc(p.protocol) + (p.base_type === 'PULL' ? ' pull' + (p.url ? ' from ' + esc(p.url) : '') : '') : '<span class="muted">none</span>'}</td>
      <td>${p ? esc(p.remote_addr) : ''}</td><td class="since">${p ? esc(p.start_time) : ''}</td>
      <td class="codecs">${esc(codecsOf(g))}</td><td class="res">${esc(resolutionOf(g))}</td>
      <td class="fps">${esc(fpsOf(g))}</td><td>${p ? kbits(p.bitrate_kbits) : ''}</td>
      <td class="players">${esc(playersByProtocol(g.subs))}</td></tr>`;
  }).join('');
  const list = document.getElementById('stream-list');
  if (!list) return;
  list.innerHTML = `<table id="streams"><tr><th>stream</th><th>publisher</th>
    <th>address</th><th>since (UTC)</th><th>codecs</th><th>resolution</th><th>fps</th>
    <th>bitrate</th><th>players</th></tr>${rows}</table>
    ${groups.length ? '' : '<p class="muted" id="no-streams">No streams.</p>'}`;
}

// Every play URL of `key` on the listeners that are on.
function playUrls(key) {
  const l = server.listening, h = location.hostname.includes(':') ? '[' + location.hostname + ']' : location.hostname;
  const out = [];
  const add = (name, scheme, port, path) => { if (port != null) out.push([name, `${scheme}://${h}:${port}/${path}`]); };
  for (const [tls, s] of [[false, ''], [true, 's']]) {
    const web = tls ? l.https : l.http, sfx = tls ? ' (TLS)' : '';
    add('RTMP' + sfx, 'rtmp' + s, tls ? l.rtmps : l.rtmp, key);
    add('RTSP' + sfx, 'rtsp' + s, tls ? l.rtsps : l.rtsp, key);
    add('HTTP-FLV' + sfx, 'http' + s, web, key + '.flv');
    add('WS-FLV' + sfx, 'ws' + s, web, key + '.flv');
    add('HTTP-TS' + sfx, 'http' + s, web, key + '.ts');
    add('WS-TS' + sfx, 'ws' + s, web, key + '.ts');
    add('fMP4' + sfx, 'http' + s, web, key + '.mp4');
    add('WS-fMP4' + sfx, 'ws' + s, web, key + '.mp4');
    if (l.hls) add('HLS' + sfx, 'http' + s, web, key + '.m3u8');
    if (l.llhls) add('LL-HLS' + sfx, 'http' + s, web, key + '/llhls.m3u8');
  }
  return out;
}

function copy(button) {
  const input = button.previousElementSibling;
  input.select();
  const done = () => { button.textContent = 'copied'; setTimeout(() => { button.textContent = 'copy'; }, 1200); };
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(input.value).then(done, () => {});
  else { document.execCommand('copy'); done(); }
}

const kick = (key, id) => attempt('action-result', 'kick ' + id,
  () => postJson('/api/ctrl/kick_session', { stream_name: key, session_id: id }));

// Stops a relay of the stream `key`: its pull by stop_relay_pull, one of its pushes (the stats
// do not name a push's URL, which stop_relay_push takes) by kick_session on its session.
const stopRelay = (key, id, kind) => attempt('action-result', 'stop ' + id, () => (kind === 'PULL'
  ? getJson('/api/ctrl/stop_relay_pull?stream_name=' + encodeURIComponent(key))
  : postJson('/api/ctrl/kick_session', { stream_name: key, session_id: id })));

// The stream page: the player and URLs are built once, the sessions redrawn every poll.
async function streamPage(key, first) {
  if (first) {
    const urls = playUrls(key).map(([n, u]) => `<tr><td>${esc(n)}</td><td><input readonly value="${esc(u)}"><button onclick="copy(this)">copy</button></td></tr>`).join('');
    main.dataset.stream = key;
    main.innerHTML = `<h1>${esc(key)}</h1><div id="state"></div>
      <video id="video" muted autoplay playsinline controls></video>
      <p class="muted" id="playback"></p>
      <h2>Sessions</h2><div id="sessions"></div>
      <h2>Relays</h2><div id="relays"></div>
      <p id="action-result"></p>
      <h2>Play URLs</h2><table class="urls">${urls}</table>`;
    const onClick = (e) => {
      const b = e.target, row = b.closest('tr');
      if (b.tagName !== 'BUTTON' || !row) return;
      b.disabled = true;
      if (b.classList.contains('kick')) kick(key, row.dataset.session);
      else stopRelay(key, row.dataset.relay, row.dataset.kind);
    };
    for (const id of ['sessions', 'relays']) document.getElementById(id).addEventListener('click', onClick);
    player = RillPlayer(document.getElementById('video'), '/' + key + '.mp4');
    window.__player = player;
  }
  const v = await getJson('/api/stat/group?stream_name=' + encodeURIComponent(key));
  const g = v.data, state = document.getElementById('state');
  if (!state || main.dataset.stream !== key) return; // the page changed meanwhile
  state.innerHTML = live(g)
    ? `<p id="live">${esc(codecsOf(g))}, ${esc(resolutionOf(g))} ${fpsOf(g) ? esc(fpsOf(g)) + ' fps' : ''}, ${kbits(g.pub.bitrate_kbits)}</p>`
    : '<p class="gone" id="gone">Stream not live (no publisher).</p>';
  const sessions = g ? [g.pub].filter((s) => s.session_id).concat(g.subs) : [];
  const rows = sessions.map((s) => `<tr data-session="${esc(s.session_id)}"><td>${esc(s.session_id)}</td>
    <td>${esc(s.base_type)}</td><td>${esc(s.protocol)}</td><td>${esc(s.remote_addr)}</td><td>${esc(s.start_time)}</td>
    <td>${kbits(s.bitrate_kbits)}</td>
    <td><button class="kick">kick</button></td></tr>`).join('');
  document.getElementById('sessions').innerHTML = `<table><tr><th>session</th><th>role</th><th>protocol</th>
    <th>address</th><th>since (UTC)</th><th>bitrate</th><th></th></tr>${rows}</table>`;
  // Its relays: the pull feeding it, the pushes sending it on.
  const relays = g ? [g.pull].filter((s) => s && s.session_id).concat(g.subs.filter((s) => s.base_type === 'PUSH')) : [];
  const relayRows = relays.map((s) => `<tr data-relay="${esc(s.session_id)}" data-kind="${esc(s.base_type)}">
    <td>${esc(s.session_id)}</td><td>${s.base_type === 'PULL' ? 'pull from' : 'push to'}</td><td>${esc(s.protocol)}</td>
    <td>${esc(s.url || s.remote_addr)}</td><td>${esc(s.start_time)}</td>
    <td>${megabytes(s.base_type === 'PULL' ? s.read_bytes_sum : s.wrote_bytes_sum)}</td>
    <td><button class="stop">stop</button></td></tr>`).join('');
  document.getElementById('relays').innerHTML = relays.length
    ? `<table id="relay-list"><tr><th>session</th><th>relay</th><th>protocol</th><th>other server</th>
      <th>since (UTC)</th><th>media moved</th><th></th></tr>${relayRows}</table>`
    : '<p class="muted" id="no-relays">No relays (start one on the Streams page).</p>';
  const q = document.getElementById('video').getVideoPlaybackQuality();
  document.getElementById('playback').textContent = `player: ${q.totalVideoFrames} frames decoded, ` +
    `${q.droppedVideoFrames} dropped` + (player.restarts ? `, restarted ${player.restarts}x (${player.error})` : '');
}

// Draws the view named by the location's hash, then again every POLL_MS.
async function show() {
  clearTimeout(timer);
  if (player) { player.stop(); player = null; }
  delete main.dataset.stream;
  const hash = location.hash || '#/';
  const stream = /^#\/stream\/(.+)$/.exec(hash);
  const view = stream ? (first) => streamPage(decodeURIComponent(stream[1]), first)
    : hash === '#/streams' ? streamsPage : serverPage;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('on', a.getAttribute('href') === hash);
  const current = hash;
  let first = true;
  const tick = async () => {
    try {
      if (!server) server = await getJson('/api/server');
      const f = first;
      first = false;
      await view(f);
      statusLine.textContent = 'updated ' + new Date().toLocaleTimeString();
      statusLine.className = '';
    } catch (e) {
      statusLine.textContent = 'server unreachable: ' + e.message;
      statusLine.className = 'bad';
    }
    if (location.hash === current || (current === '#/' && !location.hash)) timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

window.addEventListener('hashchange', show);
show();
