//! `rill-bench hls`: many classic HLS players on one mio event loop, behaving like hls.js at
//! the live edge.
//!
//! Each player keeps one keep-alive HTTP/1.1 connection. It fetches the playlist, starts at
//! the newest segment, fetches every segment it has not had yet, once, in order, then asks
//! for the playlist again one target duration after the previous ask (sooner if that time
//! has already passed), and so on.
//!
//! Measured: the time from sending a segment request to its last byte (p50/p99/max),
//! requests answered per second, bytes received, and how often a playlist brought nothing
//! new (an early reload).

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};

use crate::http::take_response;
use crate::net::{self, connect_done, read_some, OutQueue, ReadOutcome};
use crate::stats::{round3, Histogram, Summary};
use crate::url::HttpUrl;

/// Shared read buffer size.
const READ_BUF: usize = 64 * 1024;
/// Playlist reload interval when the playlist names no target duration.
const DEFAULT_TARGET: Duration = Duration::from_secs(2);

/// Settings of an `hls` run.
#[derive(Clone, Debug)]
pub struct HlsConfig {
    /// The live playlist, `http://host:port/app/stream.m3u8`.
    pub url: HttpUrl,
    /// Players to open.
    pub players: usize,
    /// Players opened per second.
    pub rate: f64,
    /// How long all players run after the last one was opened.
    pub duration: Duration,
    /// Print progress on stderr once a second.
    pub progress: bool,
}

/// What a player waits for.
#[derive(Clone, Copy, Debug)]
enum Waiting {
    Connect,
    /// The playlist (asked at the player's `asked_playlist`).
    Playlist,
    /// Segment `seq`, asked at that instant.
    Segment(u64, Instant),
    /// Nothing: the next playlist is due at that instant.
    Idle(Instant),
}

struct Player {
    sock: TcpStream,
    out: OutQueue,
    inbuf: Vec<u8>,
    waiting: Waiting,
    /// The newest segment it has (or is fetching).
    last: Option<u64>,
    /// Segments listed in the last playlist and not fetched yet: sequence number and path.
    queue: Vec<(u64, String)>,
    /// Reload interval (the playlist's target duration).
    target: Duration,
    /// When the last playlist was asked for.
    asked_playlist: Instant,
    failed: Option<String>,
}

/// What a player needs of a live playlist.
#[derive(Debug, PartialEq)]
struct Playlist {
    target: Option<Duration>,
    /// Every listed segment: its sequence number and URI as written.
    segments: Vec<(u64, String)>,
}

fn parse_playlist(text: &str) -> Playlist {
    let mut seq = 0u64;
    let mut target = None;
    let mut segments = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            seq = v.parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = v.parse::<u64>().ok().map(Duration::from_secs);
        } else if !line.is_empty() && !line.starts_with('#') {
            segments.push((seq, line.to_owned()));
            seq += 1;
        }
    }
    Playlist { target, segments }
}

/// The request path of `uri` from a playlist under `dir` (the playlist's folder, no trailing
/// `/`).
fn resolve(dir: &str, uri: &str) -> String {
    if let Some((_, rest)) = uri.split_once("://") {
        rest.find('/')
            .map_or("/".to_owned(), |i| rest[i..].to_owned())
    } else if uri.starts_with('/') {
        uri.to_owned()
    } else {
        format!("{dir}/{uri}")
    }
}

/// The outcome of a run.
#[derive(Debug)]
pub struct HlsReport {
    json: Value,
    human: String,
}

impl HlsReport {
    /// The summary as JSON.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// A few lines for people.
    pub fn human(&self) -> &str {
        &self.human
    }
}

/// Runs the players (see the module docs).
pub fn run(cfg: &HlsConfig) -> io::Result<HlsReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; READ_BUF];
    let playlist_path = cfg.url.path.split('?').next().unwrap_or("/").to_owned();
    let dir = playlist_path
        .rsplit_once('/')
        .map_or(String::new(), |(d, _)| d.to_owned());
    let request = |path: &str| {
        Bytes::from(format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rill-bench\r\n\r\n",
            cfg.url.host_header
        ))
    };
    let mut players: Vec<Player> = Vec::with_capacity(cfg.players);
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / cfg.rate.max(1e-6));
    let mut next_open = start;
    let mut ramp_done: Option<Instant> = None;
    let mut fetch = Histogram::default();
    let mut statuses: HashMap<u16, u64> = HashMap::new();
    let (mut segments, mut playlists, mut empty_reloads, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    // Counted from the end of the ramp: the steady state.
    let mut steady: Option<(Instant, u64, u64)> = None;
    let mut last_progress = start;
    loop {
        let now = Instant::now();
        while players.len() < cfg.players && now >= next_open {
            let mut p = Player {
                sock: TcpStream::connect(cfg.url.addr)?,
                out: OutQueue::default(),
                inbuf: Vec::new(),
                waiting: Waiting::Connect,
                last: None,
                queue: Vec::new(),
                target: DEFAULT_TARGET,
                asked_playlist: now,
                failed: None,
            };
            poll.registry().register(
                &mut p.sock,
                Token(players.len()),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            players.push(p);
            next_open += interval;
            if players.len() == cfg.players {
                ramp_done = Some(now);
                steady = Some((now, segments + playlists, bytes));
            }
        }
        if ramp_done.is_some_and(|t| now >= t + cfg.duration) {
            break;
        }
        if cfg.progress && now >= last_progress + Duration::from_secs(1) {
            last_progress = now;
            eprintln!(
                "hls: {} players, {segments} segments, {playlists} playlists, {} failed",
                players.len(),
                players.iter().filter(|p| p.failed.is_some()).count()
            );
        }
        // Players whose next playlist is due ask for it.
        for p in players.iter_mut().filter(|p| p.failed.is_none()) {
            if let Waiting::Idle(due) = p.waiting {
                if now >= due {
                    p.out.push(request(&playlist_path));
                    p.waiting = Waiting::Playlist;
                    p.asked_playlist = now;
                    if let Err(e) = p.out.write_to(&mut p.sock) {
                        p.failed = Some(net::io_reason("write", &e));
                    }
                }
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for ev in events.iter() {
            let Some(p) = players.get_mut(ev.token().0) else {
                continue;
            };
            if p.failed.is_some() {
                continue;
            }
            if matches!(p.waiting, Waiting::Connect) {
                match connect_done(&p.sock) {
                    Ok(true) => {
                        let now = Instant::now();
                        p.out.push(request(&playlist_path));
                        p.waiting = Waiting::Playlist;
                        p.asked_playlist = now;
                    }
                    Ok(false) => continue,
                    Err(e) => {
                        p.failed = Some(net::io_reason("connect", &e));
                        continue;
                    }
                }
            }
            loop {
                match read_some(&mut p.sock, &mut buf) {
                    Ok(ReadOutcome::Data(n)) => p.inbuf.extend_from_slice(&buf[..n]),
                    Ok(ReadOutcome::WouldBlock) => break,
                    Ok(ReadOutcome::Eof) => {
                        p.failed = Some("closed by the server".into());
                        break;
                    }
                    Err(e) => {
                        p.failed = Some(net::io_reason("read", &e));
                        break;
                    }
                }
            }
            while p.failed.is_none() {
                let (status, body) = match take_response(&p.inbuf) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        p.failed = Some(e);
                        break;
                    }
                };
                *statuses.entry(status).or_default() += 1;
                bytes += body.len() as u64;
                let end = body.end;
                let now = Instant::now();
                match p.waiting {
                    Waiting::Playlist if status == 200 => {
                        playlists += 1;
                        let list = parse_playlist(&String::from_utf8_lossy(&p.inbuf[body]));
                        p.target = list.target.unwrap_or(DEFAULT_TARGET);
                        // Join at the newest segment; then every segment after the last one.
                        let from = match p.last {
                            Some(last) => last + 1,
                            None => list.segments.last().map_or(0, |(s, _)| *s),
                        };
                        p.queue = list
                            .segments
                            .into_iter()
                            .filter(|(s, _)| *s >= from)
                            .map(|(s, uri)| (s, resolve(&dir, &uri)))
                            .rev()
                            .collect();
                        if p.queue.is_empty() {
                            empty_reloads += 1;
                        }
                    }
                    Waiting::Segment(seq, asked) if status == 200 => {
                        segments += 1;
                        fetch.record(asked.elapsed().as_micros() as u64);
                        p.last = Some(seq);
                    }
                    Waiting::Segment(seq, _) => {
                        // Gone from the window (a slow player): skip it.
                        p.last = Some(seq);
                    }
                    _ => {}
                }
                p.inbuf.drain(..end);
                // The next request: a queued segment, or the playlist when it is due.
                if let Some((seq, path)) = p.queue.pop() {
                    p.out.push(request(&path));
                    p.waiting = Waiting::Segment(seq, now);
                } else {
                    p.waiting = Waiting::Idle(p.asked_playlist + p.target);
                }
            }
            if p.failed.is_none() {
                if let Err(e) = p.out.write_to(&mut p.sock) {
                    p.failed = Some(net::io_reason("write", &e));
                }
            }
        }
    }
    let failed: Vec<&str> = players.iter().filter_map(|p| p.failed.as_deref()).collect();
    let (requests_per_s, mbps) = steady.map_or((0.0, 0.0), |(t, requests, b)| {
        let secs = t.elapsed().as_secs_f64().max(1e-3);
        (
            (segments + playlists - requests) as f64 / secs,
            (bytes - b) as f64 * 8.0 / 1e6 / secs,
        )
    });
    let ms = |h: &Histogram| h.summary(1000.0).map(|s: Summary| s.to_json());
    let json = json!({
        "players": players.len(),
        "failed": failed.len(),
        "failures": failed.iter().take(20).collect::<Vec<_>>(),
        "segments": segments,
        "playlists": playlists,
        "empty_reloads": empty_reloads,
        "requests_per_s": round3(requests_per_s),
        "aggregate_mbps": round3(mbps),
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "segment_fetch_ms": ms(&fetch),
    });
    let pct = |p: f64| fetch.percentile(p).map_or(f64::NAN, |v| v as f64 / 1000.0);
    let human = format!(
        "hls: {} players ({} failed), {segments} segments and {playlists} playlists \
         ({empty_reloads} with nothing new), {requests_per_s:.0} requests/s, {mbps:.1} Mbit/s \
         after the ramp\n  segment fetch (request to last byte): p50 {:.1} ms, p99 {:.1} ms\n",
        players.len(),
        failed.len(),
        pct(50.0),
        pct(99.0),
    );
    Ok(HlsReport { json, human })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlists_give_numbered_segments_and_the_target() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n\
                    #EXT-X-MEDIA-SEQUENCE:17\n#EXTINF:4.000,\ntest/17.ts\n\
                    #EXT-X-DISCONTINUITY\n#EXTINF:3.960,\ntest/18.ts\n";
        let p = parse_playlist(text);
        assert_eq!(p.target, Some(Duration::from_secs(4)));
        assert_eq!(
            p.segments,
            vec![(17, "test/17.ts".to_owned()), (18, "test/18.ts".to_owned())]
        );
    }

    #[test]
    fn segment_uris_resolve_against_the_playlist_folder() {
        assert_eq!(resolve("/live", "test/3.ts"), "/live/test/3.ts");
        assert_eq!(resolve("/live", "/other/3.ts"), "/other/3.ts");
        assert_eq!(resolve("/live", "http://h:8080/x/3.ts"), "/x/3.ts");
        assert_eq!(resolve("", "3.ts"), "/3.ts");
    }
}
