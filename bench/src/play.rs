//! `rill-bench play`: many RTMP or HTTP-FLV players on one mio event loop.
//!
//! Players are opened at a fixed rate, kept for the steady window (from the last one opened
//! until `duration` later), and measured: connect and first-media times, received bitrate,
//! whether media kept up with real time, publisher-to-player delay from stamps, and why any
//! failed. One 64 KiB read buffer serves every connection.
//!
//! Definitions: connect time runs from the TCP connect to `NetStream.Play.Start` (RTMP) or the
//! `200` response head (HTTP-FLV); first-media time from sending play (RTMP: when createStream
//! was answered; HTTP: the request) to the first coded video frame; bitrate counts every byte
//! read from the socket over the player's part of the steady window; a player is behind when
//! its media timestamps (sequence headers left out) span less than 90% of the wall time since
//! its first frame; delay is the wall-clock difference to the publisher's stamp, sampled in the
//! steady window from players that have been playing for 2 s.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rill_core::codec::h264::AvcConfig;
use rill_core::flv::{frame_from_audio_tag, frame_from_video_tag, FlvDemuxer, TagType};
use rill_core::media::{Codec, FrameKind};
use rill_core::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use rill_core::rtmp::message_type;
use serde_json::{json, Value};

use crate::http::{self, ChunkedDecoder, HeadReader};
use crate::net::{self, connect_done, read_some, OutQueue, ReadOutcome};
use crate::stamp;
use crate::stats::{round3, Histogram, Summary};
use crate::url::{HttpUrl, RtmpUrl};
use rill_core::scheme::TlsClient;
use rill_runtime_common::conn_io::ConnIo;
use rill_runtime_common::tls::client_io;

/// Shared read buffer size.
const READ_BUF: usize = 64 * 1024;
/// Most players one run may open.
pub const MAX_PLAYERS: usize = 50_000;
/// Slowest ramp, players per second.
pub const MIN_RATE: f64 = 0.01;
/// Fastest ramp, players per second.
pub const MAX_RATE: f64 = 1e6;
/// Longest steady window.
const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);
/// Bytes a player may have queued for sending before it is dropped (players send little).
const MAX_OUT: usize = 1024 * 1024;
/// A player is behind when its media timestamps cover less than this share of wall time.
const BEHIND_RATIO: f64 = 0.9;
/// Wall time since the first frame needed before "behind" is judged.
const MIN_BEHIND_WALL: Duration = Duration::from_secs(1);
/// Shortest per-player window counted in the bitrate figures.
const MIN_RATE_WINDOW: Duration = Duration::from_secs(1);
/// Delay samples are taken in the steady window from players playing for at least this long,
/// so that the burst of cached frames a server sends to a new player is left out.
const DELAY_SETTLE: Duration = Duration::from_secs(2);
/// Player ids listed per category in the JSON summary.
const MAX_LISTED: usize = 20;

/// Which protocol the players speak, and where to.
#[derive(Clone, Debug)]
pub enum Target {
    /// RTMP `play`.
    Rtmp(RtmpUrl),
    /// HTTP-FLV `GET`.
    HttpFlv(HttpUrl),
}

/// Settings of a `play` run.
#[derive(Clone, Debug)]
pub struct PlayConfig {
    /// Where to play from.
    pub target: Target,
    /// Players to open (at most [`MAX_PLAYERS`]).
    pub players: usize,
    /// Players opened per second.
    pub rate: f64,
    /// Length of the steady window after the last player was opened.
    pub duration: Duration,
    /// How long a player may take from TCP connect to playing.
    pub connect_timeout: Duration,
    /// Players wrap their connection in TLS (not verified).
    pub tls: bool,
    /// Print progress on stderr once a second.
    pub progress: bool,
    /// Stream names the players are spread over: with more than one, player `i` plays stream
    /// `i % streams` of the URL's name (see [`crate::url::nth_stream`]).
    pub streams: usize,
}

impl Target {
    /// The target for stream `i` of `streams` (see [`crate::url::nth_stream`]).
    pub fn nth_stream(&self, i: usize, streams: usize) -> Target {
        match self {
            Target::Rtmp(u) => Target::Rtmp(u.nth_stream(i, streams)),
            Target::HttpFlv(u) => Target::HttpFlv(u.nth_stream(i, streams)),
        }
    }
}

/// Media timestamps seen by one player, unwrapped, against wall time.
#[derive(Clone, Copy, Debug, Default)]
pub struct TsSpan {
    first_wall: Option<Instant>,
    last: u32,
    ext: i64,
    min: i64,
    max: i64,
}

impl TsSpan {
    /// Records a message timestamp (32-bit, may wrap or step back a little between tracks).
    pub fn update(&mut self, ts: u32, now: Instant) {
        if self.first_wall.is_none() {
            self.first_wall = Some(now);
            self.ext = i64::from(ts);
            self.min = self.ext;
            self.max = self.ext;
        } else {
            self.ext += i64::from(ts.wrapping_sub(self.last) as i32);
            self.min = self.min.min(self.ext);
            self.max = self.max.max(self.ext);
        }
        self.last = ts;
    }

    /// Milliseconds of media covered so far.
    pub fn span_ms(&self) -> i64 {
        self.max - self.min
    }

    /// Whether the media covers less than [`BEHIND_RATIO`] of the wall time from the first
    /// frame to `at`; `None` before the first frame or within [`MIN_BEHIND_WALL`] of it.
    pub fn behind(&self, at: Instant) -> Option<bool> {
        let wall = at.checked_duration_since(self.first_wall?)?;
        if wall < MIN_BEHIND_WALL {
            return None;
        }
        Some((self.span_ms() as f64) < BEHIND_RATIO * wall.as_secs_f64() * 1000.0)
    }
}

/// The protocol state of one player.
enum Conn {
    Rtmp(Box<ClientSession>),
    Http(Box<HttpPlayer>),
}

/// An HTTP-FLV player: head, then an optionally chunked FLV body.
#[derive(Default)]
struct HttpPlayer {
    /// The GET request, sent once TCP is up.
    request: Bytes,
    head: HeadReader,
    got_head: bool,
    chunked: Option<ChunkedDecoder>,
    demux: FlvDemuxer,
}

/// What is measured about one player.
#[derive(Default)]
struct Metrics {
    started: Option<Instant>,
    play_sent: Option<Instant>,
    playing: Option<Instant>,
    first_video: Option<Instant>,
    ended: Option<Instant>,
    failure: Option<String>,
    bytes: u64,
    window_start: Option<(Instant, u64)>,
    ts: TsSpan,
    nalu_length_size: u8,
    stamps: u64,
}

struct Player {
    sock: Option<TcpStream>,
    tcp_connected: bool,
    conn: Conn,
    /// Plaintext to send.
    out: OutQueue,
    /// With `--tls`: the client transform and the ciphertext it made, not yet written.
    tls: Option<(ConnIo, OutQueue)>,
    m: Metrics,
}

/// Counters across players, for progress and the summary.
#[derive(Default)]
struct Shared {
    delay_us: Histogram,
    total_bytes: u64,
    playing_now: usize,
    failed: usize,
    window_open: bool,
}

impl Metrics {
    fn on_playing(&mut self, now: Instant, shared: &mut Shared) {
        if self.playing.is_none() {
            self.playing = Some(now);
            shared.playing_now += 1;
            if shared.window_open {
                self.window_start = Some((now, self.bytes));
            }
        }
    }

    /// One audio or video message. Timestamps of configuration messages (sequence headers,
    /// which servers often send with timestamp 0 to late joiners) are left out of the span.
    fn on_media(&mut self, type_id: u8, ts: u32, body: &Bytes, now: Instant, shared: &mut Shared) {
        if type_id != message_type::VIDEO {
            let config = matches!(
                frame_from_audio_tag(ts, body),
                Ok(Some(f)) if f.kind == FrameKind::Config
            );
            if !config {
                self.ts.update(ts, now);
            }
            return;
        }
        let Ok(Some(frame)) = frame_from_video_tag(ts, body) else {
            return;
        };
        match frame.kind {
            FrameKind::Config => {
                if frame.codec == Codec::H264 {
                    if let Ok(config) = AvcConfig::parse(&frame.payload) {
                        self.nalu_length_size = config.nalu_length_size;
                    }
                }
            }
            FrameKind::Coded => {
                self.ts.update(ts, now);
                self.first_video.get_or_insert(now);
                if frame.codec != Codec::H264 {
                    return;
                }
                let ls = if self.nalu_length_size == 0 {
                    4
                } else {
                    self.nalu_length_size
                };
                if let Some(s) = stamp::find_stamp(&frame.payload, ls) {
                    self.stamps += 1;
                    let settled = self
                        .playing
                        .is_some_and(|t| now.duration_since(t) >= DELAY_SETTLE);
                    if shared.window_open && settled {
                        shared
                            .delay_us
                            .record(net::unix_micros().saturating_sub(s.unix_micros));
                    }
                }
            }
            FrameKind::EndOfSequence => {}
        }
    }
}

impl Player {
    fn new(target: &Target, tls: bool, random: &[u8], now: Instant, now_ms: u64) -> Player {
        let conn = match target {
            Target::Rtmp(url) => {
                let config = ClientConfig::new(&url.app, &url.tc_url);
                let mut session = ClientSession::new(config, random, now_ms);
                session.play(&url.stream);
                Conn::Rtmp(Box::new(session))
            }
            Target::HttpFlv(url) => Conn::Http(Box::new(HttpPlayer {
                request: Bytes::from(http::request(url)),
                ..HttpPlayer::default()
            })),
        };
        Player {
            sock: None,
            tcp_connected: false,
            conn,
            out: OutQueue::default(),
            tls: tls.then(|| {
                let target = TlsClient {
                    server_name: "localhost".into(),
                    verify: false,
                };
                // Only a bad server name fails, and this one is fixed.
                let io = client_io(Some(&target)).expect("TLS client for localhost");
                (io, OutQueue::default())
            }),
            m: Metrics {
                started: Some(now),
                ..Metrics::default()
            },
        }
    }

    /// Closes the connection; `reason` is `None` for the normal end of the run.
    fn finish(&mut self, poll: &Poll, now: Instant, reason: Option<String>, shared: &mut Shared) {
        if let Some(mut sock) = self.sock.take() {
            // Closing the socket would remove it from epoll anyway; failure here changes nothing.
            let _ = poll.registry().deregister(&mut sock);
        }
        if self.m.ended.is_none() {
            self.m.ended = Some(now);
            if self.m.playing.is_some() {
                shared.playing_now = shared.playing_now.saturating_sub(1);
            }
            if reason.is_some() {
                shared.failed += 1;
            }
            self.m.failure = reason;
        }
    }

    /// Handles received bytes; `Err` carries the reason to close the player.
    fn feed(
        &mut self,
        data: &[u8],
        now: Instant,
        now_ms: u64,
        shared: &mut Shared,
    ) -> Result<(), String> {
        let m = &mut self.m;
        match &mut self.conn {
            Conn::Rtmp(session) => {
                session
                    .handle_input(data, now_ms)
                    .map_err(|e| format!("rtmp: {e}"))?;
                while let Some(ev) = session.poll_event() {
                    match ev {
                        ClientEvent::Playing { .. } => m.on_playing(now, shared),
                        ClientEvent::Media {
                            type_id,
                            timestamp,
                            payload,
                        } => m.on_media(type_id, timestamp, &payload, now, shared),
                        ClientEvent::Rejected { code, .. } => {
                            return Err(format!("rejected: {code}"))
                        }
                        ClientEvent::StreamEnded => return Err("stream ended".to_owned()),
                        _ => {}
                    }
                }
                if m.play_sent.is_none() && session.stream_id() != 0 {
                    // createStream was answered in this input: play went out with it.
                    m.play_sent = Some(now);
                }
                while let Some(b) = session.poll_transmit() {
                    self.out.push(b);
                }
            }
            Conn::Http(h) => {
                let mut body = data;
                if !h.got_head {
                    let Some((head, used)) = h.head.feed(data).map_err(|e| e.to_string())? else {
                        return Ok(());
                    };
                    h.got_head = true;
                    if head.chunked {
                        h.chunked = Some(ChunkedDecoder::default());
                    }
                    m.on_playing(now, shared);
                    body = data.get(used..).unwrap_or_default();
                }
                let HttpPlayer { chunked, demux, .. } = &mut **h;
                match chunked {
                    Some(dec) => dec
                        .decode(body, |piece| demux.push(piece))
                        .map_err(|e| e.to_string())?,
                    None => demux.push(body),
                }
                while let Some(tag) = demux.poll_tag().map_err(|e| e.to_string())? {
                    if tag.tag_type != TagType::Script {
                        m.on_media(tag.tag_type as u8, tag.timestamp, &tag.body, now, shared);
                    }
                }
                if chunked.as_ref().is_some_and(ChunkedDecoder::is_done) {
                    return Err("stream ended".to_owned());
                }
            }
        }
        if self.out.len() > MAX_OUT {
            return Err("send queue overflow".to_owned());
        }
        Ok(())
    }

    /// The TCP connection is up: queue the first bytes.
    fn on_tcp_connected(&mut self, now: Instant) {
        self.tcp_connected = true;
        match &mut self.conn {
            Conn::Rtmp(session) => {
                while let Some(b) = session.poll_transmit() {
                    self.out.push(b);
                }
            }
            Conn::Http(h) => {
                self.out.push(h.request.clone());
                self.m.play_sent = Some(now);
            }
        }
    }

    /// Where a player that is not playing got stuck, for timeout reasons.
    fn stage(&self) -> &'static str {
        if !self.tcp_connected {
            "tcp connect"
        } else if self.m.play_sent.is_none() {
            "handshake/connect"
        } else {
            "play"
        }
    }
}

/// The outcome of a `play` run.
#[derive(Debug)]
pub struct PlayReport {
    json: Value,
    connect_failures: usize,
    connected: usize,
    human: String,
}

impl PlayReport {
    /// The JSON summary.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// Players that never started playing.
    pub fn connect_failures(&self) -> usize {
        self.connect_failures
    }

    /// Players that started playing.
    pub fn connected(&self) -> usize {
        self.connected
    }

    /// A few lines for a human, for stderr.
    pub fn human(&self) -> &str {
        &self.human
    }
}

/// Handshake random bytes (the simple handshake does not check them).
fn handshake_random() -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..1536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Opens the players, runs the event loop until the end of the steady window, and reports.
pub fn run(cfg: &PlayConfig) -> io::Result<PlayReport> {
    let n = cfg.players.clamp(1, MAX_PLAYERS);
    let rate = if cfg.rate.is_finite() && cfg.rate > 0.0 {
        cfg.rate.clamp(MIN_RATE, MAX_RATE)
    } else {
        100.0
    };
    let duration = cfg.duration.min(MAX_DURATION);
    let streams = cfg.streams.clamp(1, n);
    let addr = match &cfg.target {
        Target::Rtmp(u) => u.addr,
        Target::HttpFlv(u) => u.addr,
    };
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUF];
    let random = handshake_random();
    let mut players: Vec<Player> = Vec::with_capacity(n);
    let mut shared = Shared::default();

    let start = Instant::now();
    let spawn_at = |i: usize| start + Duration::from_secs_f64(i as f64 / rate);
    let ramp_end = spawn_at(n - 1);
    let end = ramp_end + duration;
    let mut next_progress = start + Duration::from_secs(1);
    let mut last_progress_bytes = 0u64;
    let mut window_bytes_at_open = 0u64;

    loop {
        let now = Instant::now();
        let now_ms = now.duration_since(start).as_millis() as u64;
        while players.len() < n && spawn_at(players.len()) <= now {
            let id = players.len();
            let target = cfg.target.nth_stream(id % streams, streams);
            let mut p = Player::new(&target, cfg.tls, &random, now, now_ms);
            match TcpStream::connect(addr) {
                Ok(mut sock) => {
                    match poll.registry().register(
                        &mut sock,
                        Token(id),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        Ok(()) => p.sock = Some(sock),
                        Err(e) => p.finish(
                            &poll,
                            now,
                            Some(net::io_reason("register", &e)),
                            &mut shared,
                        ),
                    }
                }
                Err(e) => p.finish(&poll, now, Some(net::io_reason("connect", &e)), &mut shared),
            }
            players.push(p);
        }
        if !shared.window_open && players.len() == n && now >= ramp_end {
            shared.window_open = true;
            window_bytes_at_open = shared.total_bytes;
            for p in players
                .iter_mut()
                .filter(|p| p.m.playing.is_some() && p.m.ended.is_none())
            {
                p.m.window_start = Some((now, p.m.bytes));
            }
        }
        if now >= end {
            break;
        }
        if now >= next_progress {
            for p in players.iter_mut() {
                let waited =
                    p.m.started
                        .map_or(Duration::ZERO, |s| now.duration_since(s));
                if p.m.playing.is_none() && p.m.ended.is_none() && waited > cfg.connect_timeout {
                    let reason = format!("timeout in {}", p.stage());
                    p.finish(&poll, now, Some(reason), &mut shared);
                }
            }
            if cfg.progress {
                let secs = now
                    .duration_since(next_progress - Duration::from_secs(1))
                    .as_secs_f64();
                let mbps = (shared.total_bytes - last_progress_bytes) as f64 * 8.0 / secs / 1e6;
                eprintln!(
                    "[{:6.1}s] players {}/{} playing {} failed {} rx {:.1} Mbit/s",
                    now.duration_since(start).as_secs_f64(),
                    players.len(),
                    n,
                    shared.playing_now,
                    shared.failed,
                    mbps
                );
            }
            last_progress_bytes = shared.total_bytes;
            next_progress += Duration::from_secs(1);
        }
        let next_spawn = if players.len() < n {
            spawn_at(players.len())
        } else {
            end
        };
        let deadline = next_spawn.min(next_progress).min(end);
        let timeout = deadline.saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let Some(p) = players.get_mut(ev.token().0) else {
                continue;
            };
            let now = Instant::now();
            let now_ms = now.duration_since(start).as_millis() as u64;
            if let Err(reason) = drive(p, &mut buf, now, now_ms, &mut shared) {
                p.finish(&poll, now, Some(reason), &mut shared);
            }
        }
    }

    let end_at = Instant::now();
    for p in players.iter_mut() {
        p.finish(&poll, end_at, None, &mut shared);
    }
    Ok(report(
        cfg,
        n,
        rate,
        &players,
        &shared,
        end_at,
        window_bytes_at_open,
    ))
}

/// Handles readiness of one player: connect completion, reads, writes.
fn drive(
    p: &mut Player,
    buf: &mut [u8],
    now: Instant,
    now_ms: u64,
    shared: &mut Shared,
) -> Result<(), String> {
    let Some(sock) = p.sock.as_ref() else {
        return Ok(());
    };
    if !p.tcp_connected {
        match connect_done(sock) {
            Ok(true) => {
                // Media flows one way; small control messages should not wait for Nagle.
                let _ = sock.set_nodelay(true);
                p.on_tcp_connected(now);
            }
            Ok(false) => return Ok(()),
            Err(e) => return Err(net::io_reason("connect", &e)),
        }
    }
    loop {
        let Some(sock) = p.sock.as_mut() else {
            return Ok(());
        };
        match read_some(sock, buf) {
            Ok(ReadOutcome::Data(n)) => {
                p.m.bytes += n as u64;
                shared.total_bytes += n as u64;
                let wire = buf.get(..n).unwrap_or_default();
                match p.tls.as_mut() {
                    None => p.feed(wire, now, now_ms, shared)?,
                    Some((io, _)) => {
                        let mut plain = Vec::new();
                        io.inbound(wire, &mut |b| plain.extend_from_slice(b))
                            .map_err(|e| net::io_reason("tls", &e))?;
                        p.feed(&plain, now, now_ms, shared)?;
                    }
                }
            }
            Ok(ReadOutcome::WouldBlock) => break,
            Ok(ReadOutcome::Eof) => return Err("closed by server".to_owned()),
            Err(e) => return Err(net::io_reason("read", &e)),
        }
    }
    if let (Some(sock), Some((io, wire))) = (p.sock.as_mut(), p.tls.as_mut()) {
        let mut batch = p.out.take_all();
        let plain = batch.iter().map(Bytes::len).sum();
        io.outbound(&mut batch, plain)
            .map_err(|e| net::io_reason("tls", &e))?;
        batch.into_iter().for_each(|b| wire.push(b));
        if !wire.is_empty() {
            wire.write_to(sock)
                .map_err(|e| net::io_reason("write", &e))?;
        }
    } else if let Some(sock) = p.sock.as_mut() {
        if !p.out.is_empty() {
            p.out
                .write_to(sock)
                .map_err(|e| net::io_reason("write", &e))?;
        }
    }
    Ok(())
}

fn count_reasons<'a>(reasons: impl Iterator<Item = &'a str>) -> Value {
    let mut map: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *map.entry(r).or_default() += 1;
    }
    json!(map)
}

fn summary_json(s: Option<Summary>) -> Value {
    s.map_or(Value::Null, |s| s.to_json())
}

fn report(
    cfg: &PlayConfig,
    n: usize,
    rate: f64,
    players: &[Player],
    shared: &Shared,
    end_at: Instant,
    window_bytes_at_open: u64,
) -> PlayReport {
    let connected: Vec<&Player> = players.iter().filter(|p| p.m.playing.is_some()).collect();
    let never: Vec<(usize, &Player)> = players
        .iter()
        .enumerate()
        .filter(|(_, p)| p.m.playing.is_none())
        .collect();
    let dropped: Vec<(usize, &Player)> = players
        .iter()
        .enumerate()
        .filter(|(_, p)| p.m.playing.is_some() && p.m.failure.is_some())
        .collect();

    let mut connect_ms: Vec<f64> = connected
        .iter()
        .filter_map(|p| Some(ms(p.m.playing?.duration_since(p.m.started?))))
        .collect();
    let mut first_media_ms: Vec<f64> = connected
        .iter()
        .filter_map(|p| {
            Some(ms(p
                .m
                .first_video?
                .checked_duration_since(p.m.play_sent?)?))
        })
        .collect();
    let mut kbps: Vec<f64> = connected
        .iter()
        .filter_map(|p| {
            let (from, bytes0) = p.m.window_start?;
            let until = p.m.ended.unwrap_or(end_at);
            let window = until.checked_duration_since(from)?;
            (window >= MIN_RATE_WINDOW)
                .then(|| (p.m.bytes - bytes0) as f64 * 8.0 / window.as_secs_f64() / 1000.0)
        })
        .collect();
    let behind: Vec<usize> = players
        .iter()
        .enumerate()
        .filter(|(_, p)| p.m.playing.is_some() && p.m.failure.is_none())
        .filter(|(_, p)| p.m.ts.behind(end_at) == Some(true))
        .map(|(i, _)| i)
        .collect();
    let no_media = connected
        .iter()
        .filter(|p| p.m.first_video.is_none())
        .count();
    let stamped = connected.iter().filter(|p| p.m.stamps > 0).count();
    let window_secs = cfg.duration.as_secs_f64().max(1e-3);
    let aggregate_mbps =
        (shared.total_bytes - window_bytes_at_open) as f64 * 8.0 / window_secs / 1e6;

    let connect = Summary::of(&mut connect_ms);
    let first_media = Summary::of(&mut first_media_ms);
    let rates = Summary::of(&mut kbps);
    let delay = shared.delay_us.summary(1000.0);
    let proto = match &cfg.target {
        Target::Rtmp(_) => "rtmp",
        Target::HttpFlv(_) => "http-flv",
    };
    let json = json!({
        "proto": proto,
        "players": n,
        "streams": cfg.streams.clamp(1, n),
        "rate_per_s": rate,
        "window_s": cfg.duration.as_secs_f64(),
        "connected": connected.len(),
        "failed_to_connect": never.len(),
        "disconnected": dropped.len(),
        "connect_ms": summary_json(connect.clone()),
        "first_media_ms": summary_json(first_media.clone()),
        "bitrate_kbps": rates.as_ref().map_or(Value::Null, |s| json!({
            "count": s.count,
            "min": round3(s.min),
            "p5": round3(s.p5),
            "median": round3(s.p50),
            "mean": round3(s.mean),
        })),
        "aggregate_mbps": round3(aggregate_mbps),
        "behind": behind.len(),
        "behind_ids": behind.iter().take(MAX_LISTED).collect::<Vec<_>>(),
        "no_video": no_media,
        "delay_ms": delay.as_ref().map_or(json!("n/a"), Summary::to_json),
        "stamped_players": stamped,
        "connect_failures": count_reasons(never.iter().map(|(_, p)| {
            p.m.failure.as_deref().unwrap_or("not playing at the end")
        })),
        "connect_failure_ids": never.iter().take(MAX_LISTED).map(|(i, _)| *i).collect::<Vec<_>>(),
        "disconnect_reasons": count_reasons(dropped.iter().filter_map(|(_, p)| p.m.failure.as_deref())),
        "disconnect_ids": dropped.iter().take(MAX_LISTED).map(|(i, _)| *i).collect::<Vec<_>>(),
        "total_rx_bytes": shared.total_bytes,
    });

    let fmt = |s: &Option<Summary>| {
        s.as_ref().map_or("n/a".to_owned(), |s| {
            format!(
                "p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
                s.p50, s.p90, s.p99, s.max
            )
        })
    };
    let mut human = format!(
        "{proto}: {n} players, {} connected, {} failed to connect, {} disconnected, {} behind\n",
        connected.len(),
        never.len(),
        dropped.len(),
        behind.len()
    );
    human += &format!("connect ms:     {}\n", fmt(&connect));
    human += &format!("first media ms: {}\n", fmt(&first_media));
    human += &format!(
        "bitrate kbit/s: {}\n",
        rates.as_ref().map_or("n/a".to_owned(), |s| format!(
            "min {:.0} p5 {:.0} median {:.0}",
            s.min, s.p5, s.p50
        ))
    );
    human += &format!("aggregate:      {aggregate_mbps:.1} Mbit/s\n");
    human += &format!("delay ms:       {}\n", fmt(&delay));
    PlayReport {
        json,
        connect_failures: never.len(),
        connected: connected.len(),
        human,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_span_unwraps_and_tolerates_interleaving() {
        let t0 = Instant::now();
        let mut s = TsSpan::default();
        s.update(u32::MAX - 10, t0);
        s.update(u32::MAX - 20, t0); // audio slightly behind video
        s.update(29, t0); // wrapped
        assert_eq!(s.span_ms(), 50);
    }

    #[test]
    fn behind_compares_media_span_with_wall_time() {
        let t0 = Instant::now();
        let mut s = TsSpan::default();
        assert_eq!(s.behind(t0), None);
        s.update(1000, t0);
        s.update(10_000, t0);
        assert_eq!(s.behind(t0 + Duration::from_millis(500)), None);
        assert_eq!(s.behind(t0 + Duration::from_secs(10)), Some(false));
        // 9 s of media in 9.9 s of wall time is 91%: not behind; in 10.1 s it is.
        assert_eq!(s.behind(t0 + Duration::from_millis(9_900)), Some(false));
        assert_eq!(s.behind(t0 + Duration::from_millis(10_100)), Some(true));
    }

    #[test]
    fn random_is_long_enough_for_the_handshake() {
        assert!(handshake_random().len() >= 1528);
    }
}
