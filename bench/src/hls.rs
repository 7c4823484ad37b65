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

use mio::{Events, Poll, Token};
use serde_json::json;

use crate::http_players::{Conn, HttpPlayersConfig, Ramp, Report, READ_BUF};
use crate::stats::{round3, Histogram, Summary};

/// Playlist reload interval when the playlist names no target duration.
const DEFAULT_TARGET: Duration = Duration::from_secs(2);

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
    conn: Conn,
    waiting: Waiting,
    /// The newest segment it has (or is fetching).
    last: Option<u64>,
    /// Segments listed in the last playlist and not fetched yet: sequence number and path.
    queue: Vec<(u64, String)>,
    /// Reload interval (the playlist's target duration).
    target: Duration,
    /// When the last playlist was asked for.
    asked_playlist: Instant,
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

/// Runs the players (see the module docs).
pub fn run(cfg: &HttpPlayersConfig) -> io::Result<Report> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; READ_BUF];
    let playlist_path = cfg.playlist_path();
    let dir = cfg.playlist_dir();
    let mut players: Vec<Player> = Vec::with_capacity(cfg.players);
    let mut ramp = Ramp::new(cfg);
    let mut fetch = Histogram::default();
    let mut statuses: HashMap<u16, u64> = HashMap::new();
    let (mut segments, mut playlists, mut empty_reloads, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    // Counted from the end of the ramp: the steady state.
    let mut steady: Option<(Instant, u64, u64)> = None;
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        while ramp.due(now, players.len()) {
            players.push(Player {
                conn: Conn::open(cfg, poll.registry(), Token(players.len()))?,
                waiting: Waiting::Connect,
                last: None,
                queue: Vec::new(),
                target: DEFAULT_TARGET,
                asked_playlist: now,
            });
            if ramp.done.is_some() {
                steady = Some((now, segments + playlists, bytes));
            }
        }
        if ramp.over(now) {
            break;
        }
        if cfg.progress && now >= last_progress + Duration::from_secs(1) {
            last_progress = now;
            eprintln!(
                "hls: {} players, {segments} segments, {playlists} playlists, {} failed",
                players.len(),
                players.iter().filter(|p| p.conn.failed.is_some()).count()
            );
        }
        // Players whose next playlist is due ask for it.
        for p in players.iter_mut().filter(|p| p.conn.failed.is_none()) {
            if let Waiting::Idle(due) = p.waiting {
                if now >= due {
                    p.conn.send(cfg.request(&playlist_path));
                    p.waiting = Waiting::Playlist;
                    p.asked_playlist = now;
                    p.conn.flush();
                }
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for ev in events.iter() {
            let Some(p) = players.get_mut(ev.token().0) else {
                continue;
            };
            if p.conn.failed.is_some() {
                continue;
            }
            if p.conn.on_ready(&mut buf) {
                p.conn.send(cfg.request(&playlist_path));
                p.waiting = Waiting::Playlist;
                p.asked_playlist = Instant::now();
            }
            while let Some((status, body)) = p.conn.next_response() {
                *statuses.entry(status).or_default() += 1;
                bytes += body.len() as u64;
                let end = body.end;
                let now = Instant::now();
                match p.waiting {
                    Waiting::Playlist if status == 200 => {
                        playlists += 1;
                        let list = parse_playlist(&String::from_utf8_lossy(p.conn.body(body)));
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
                p.conn.consume(end);
                // The next request: a queued segment, or the playlist when it is due.
                if let Some((seq, path)) = p.queue.pop() {
                    p.conn.send(cfg.request(&path));
                    p.waiting = Waiting::Segment(seq, now);
                } else {
                    p.waiting = Waiting::Idle(p.asked_playlist + p.target);
                }
            }
            p.conn.flush();
        }
    }
    let failed: Vec<&str> = players
        .iter()
        .filter_map(|p| p.conn.failed.as_deref())
        .collect();
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
    Ok(Report { json, human })
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
