//! `rill-bench llhls`: many Low-Latency HLS players on one mio event loop.
//!
//! Each player keeps one keep-alive HTTP/1.1 connection and does what a low-latency client
//! does at the live edge, over and over: a blocking playlist request
//! (`?_HLS_msn=M&_HLS_part=N`) for the part the previous playlist's `EXT-X-PRELOAD-HINT`
//! named, then a `GET` of that part. The first playlist is a plain `GET`.
//!
//! Measured, for parts delivered after a player's first two: the time from the part's
//! completion to its last byte at the player, two ways. "After first" takes, for each part,
//! the earliest blocking answer any player got as its completion (so it is the server's
//! fan-out delay: answering every held request and sending the part). "After end" takes the
//! part's end on the server's clock (its segment's `EXT-X-PROGRAM-DATE-TIME` plus the parts
//! before it): that adds the wait for the next frame that completes a part and the
//! publisher's pacing. Also: how long blocking requests were held, and requests answered
//! without the part (released by the server's bound).

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use serde_json::json;

use crate::http_players::{Conn, HttpPlayersConfig, Ramp, Report, READ_BUF};
use crate::net;
use crate::stats::{Histogram, Summary};

/// Parts a player gets before its delays count (its first ones come from the back of the
/// window).
const SETTLE_PARTS: u32 = 2;

/// What a player waits for.
#[derive(Clone, Copy, Debug)]
enum Waiting {
    Connect,
    /// A playlist, asked at `asked`, blocking for `part` if any.
    Playlist {
        asked: Instant,
        part: Option<(u64, u64)>,
    },
    /// A part: which, and its end on the server's clock (ms since the Unix epoch).
    Part {
        part: (u64, u64),
        end_ms: f64,
    },
}

struct Player {
    conn: Conn,
    waiting: Waiting,
    parts: u32,
    /// The last part it got.
    last: Option<(u64, u64)>,
}

/// (msn, part) of `…/{msn}.{part}.m4s`.
fn part_of(uri: &str) -> Option<(u64, u64)> {
    let name = uri.rsplit('/').next()?.strip_suffix(".m4s")?;
    let (m, p) = name.split_once('.')?;
    Some((m.parse().ok()?, p.parse().ok()?))
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_once(':')?.1.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` as ms since the Unix epoch.
fn unix_ms_of(date: &str) -> Option<f64> {
    let n = |a: usize, b: usize| -> Option<i64> { date.get(a..b)?.parse().ok() };
    let (y, m, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + n(11, 13)? * 3600 + n(14, 16)? * 60 + n(17, 19)?;
    Some((secs * 1000 + n(20, 23)?) as f64)
}

/// What a player needs of a playlist: the hinted part, and the end of every listed part on
/// the server's clock.
struct Playlist {
    hint: Option<(u64, u64)>,
    ends: Vec<((u64, u64), f64)>,
}

fn parse_playlist(text: &str) -> Playlist {
    let mut clock = None;
    let mut ends = Vec::new();
    let mut hint = None;
    for line in text.lines() {
        if let Some(date) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            clock = unix_ms_of(date);
        } else if line.starts_with("#EXT-X-PART:") {
            let d: f64 = attr(line, "DURATION")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0.0);
            clock = clock.map(|c| c + d * 1000.0);
            if let (Some(p), Some(c)) = (attr(line, "URI").and_then(part_of), clock) {
                ends.push((p, c));
            }
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            hint = attr(line, "URI").and_then(part_of);
        }
    }
    Playlist { hint, ends }
}

/// Runs the players (see the module docs).
pub fn run(cfg: &HttpPlayersConfig) -> io::Result<Report> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; READ_BUF];
    let base = cfg.playlist_dir();
    let playlist_path = cfg.playlist_path();
    let mut players: Vec<Player> = Vec::with_capacity(cfg.players);
    let mut ramp = Ramp::new(cfg);
    let mut held = Histogram::default();
    let mut after_end = Histogram::default();
    let mut released_without_part = 0u64;
    let mut statuses: HashMap<u16, u64> = HashMap::new();
    // Per part: the earliest blocking answer, and when each player got the whole part.
    let mut first_answer: HashMap<(u64, u64), f64> = HashMap::new();
    let mut delivered: Vec<((u64, u64), f64)> = Vec::new();
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        while ramp.due(now, players.len()) {
            players.push(Player {
                conn: Conn::open(cfg, poll.registry(), Token(players.len()))?,
                waiting: Waiting::Connect,
                parts: 0,
                last: None,
            });
        }
        if ramp.over(now) {
            break;
        }
        if cfg.progress && now >= last_progress + Duration::from_secs(1) {
            last_progress = now;
            eprintln!(
                "llhls: {} players, {} parts delivered, {} failed",
                players.len(),
                delivered.len(),
                players.iter().filter(|p| p.conn.failed.is_some()).count()
            );
        }
        poll.poll(&mut events, Some(Duration::from_millis(20)))?;
        for ev in events.iter() {
            let Some(p) = players.get_mut(ev.token().0) else {
                continue;
            };
            if p.conn.failed.is_some() {
                continue;
            }
            if p.conn.on_ready(&mut buf) {
                p.conn.send(cfg.request(&playlist_path));
                p.waiting = Waiting::Playlist {
                    asked: Instant::now(),
                    part: None,
                };
            }
            // Every complete response.
            while let Some((status, body)) = p.conn.next_response() {
                let got_ms = net::unix_micros() as f64 / 1000.0;
                *statuses.entry(status).or_default() += 1;
                let end = body.end;
                match p.waiting {
                    Waiting::Playlist { asked, part } if status == 200 => {
                        let text = String::from_utf8_lossy(p.conn.body(body)).into_owned();
                        let list = parse_playlist(&text);
                        if part.is_some() {
                            held.record(asked.elapsed().as_micros() as u64);
                        }
                        // The part after the last one this player got (the server answers a
                        // request past the end of a segment with the next one's first part).
                        let target = p
                            .last
                            .and_then(|last| list.ends.iter().copied().find(|(q, _)| *q > last));
                        match (target, part, list.hint) {
                            (Some((want, end_ms)), _, _) => {
                                let f = first_answer.entry(want).or_insert(got_ms);
                                *f = f.min(got_ms);
                                p.conn.send(
                                    cfg.request(&format!("{base}/ll/{}.{}.m4s", want.0, want.1)),
                                );
                                p.waiting = Waiting::Part { part: want, end_ms };
                            }
                            (None, asked_for, Some((m, n))) => {
                                if asked_for.is_some() {
                                    released_without_part += 1;
                                }
                                p.conn.send(cfg.request(&format!(
                                    "{playlist_path}?_HLS_msn={m}&_HLS_part={n}"
                                )));
                                p.waiting = Waiting::Playlist {
                                    asked: Instant::now(),
                                    part: Some((m, n)),
                                };
                                // Join at the live edge: the hinted part is the next one.
                                if p.last.is_none() {
                                    p.last = Some(if n > 0 {
                                        (m, n - 1)
                                    } else {
                                        (m.saturating_sub(1), u64::MAX)
                                    });
                                }
                            }
                            (None, _, None) => {
                                p.conn.failed = Some("playlist without a hint".into())
                            }
                        }
                    }
                    Waiting::Part { part, end_ms } if status == 200 => {
                        p.parts += 1;
                        p.last = Some(part);
                        if p.parts > SETTLE_PARTS {
                            after_end.record(((got_ms - end_ms).max(0.0) * 1000.0) as u64);
                            delivered.push((part, got_ms));
                        }
                        let next = (part.0, part.1 + 1);
                        p.conn.send(cfg.request(&format!(
                            "{playlist_path}?_HLS_msn={}&_HLS_part={}",
                            next.0, next.1
                        )));
                        p.waiting = Waiting::Playlist {
                            asked: Instant::now(),
                            part: Some(next),
                        };
                    }
                    _ => {
                        // Not found (the segment ended before the asked part, or the stream is
                        // not there yet): start over from a plain playlist.
                        p.conn.send(cfg.request(&playlist_path));
                        p.waiting = Waiting::Playlist {
                            asked: Instant::now(),
                            part: None,
                        };
                    }
                }
                p.conn.consume(end);
            }
            p.conn.flush();
        }
    }
    let mut after_first = Histogram::default();
    for (part, got) in &delivered {
        if let Some(first) = first_answer.get(part) {
            after_first.record(((got - first).max(0.0) * 1000.0) as u64);
        }
    }
    let failed: Vec<&str> = players
        .iter()
        .filter_map(|p| p.conn.failed.as_deref())
        .collect();
    let ms = |h: &Histogram| h.summary(1000.0).map(|s: Summary| s.to_json());
    let json = json!({
        "players": players.len(),
        "failed": failed.len(),
        "failures": failed.iter().take(20).collect::<Vec<_>>(),
        "parts_delivered": delivered.len(),
        "released_without_part": released_without_part,
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "held_ms": ms(&held),
        "delivery_after_first_answer_ms": ms(&after_first),
        "delivery_after_part_end_ms": ms(&after_end),
    });
    let p99 = |h: &Histogram| h.percentile(99.0).map_or(f64::NAN, |v| v as f64 / 1000.0);
    let p50 = |h: &Histogram| h.percentile(50.0).map_or(f64::NAN, |v| v as f64 / 1000.0);
    let human = format!(
        "llhls: {} players ({} failed), {} parts delivered, {} blocking answers without their \
         part\n  part delivery after the first answer for it: p50 {:.1} ms, p99 {:.1} ms\n  \
         part delivery after its end (server clock): p50 {:.1} ms, p99 {:.1} ms\n",
        players.len(),
        failed.len(),
        delivered.len(),
        released_without_part,
        p50(&after_first),
        p99(&after_first),
        p50(&after_end),
        p99(&after_end),
    );
    Ok(Report { json, human })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_hint_and_part_ends() {
        let text = "#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2026-12-07T06:00:00.000Z\n\
                    #EXT-X-PART:DURATION=0.260,URI=\"ll/4.0.m4s\",INDEPENDENT=YES\n\
                    #EXT-X-PART:DURATION=0.240,URI=\"ll/4.1.m4s\"\n\
                    #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"ll/4.2.m4s\"\n";
        let p = parse_playlist(text);
        assert_eq!(p.hint, Some((4, 2)));
        let base = unix_ms_of("2026-12-07T06:00:00.000Z").unwrap();
        assert_eq!(p.ends, vec![((4, 0), base + 260.0), ((4, 1), base + 500.0)]);
        assert_eq!(unix_ms_of("1970-01-02T00:00:01.500Z"), Some(86_401_500.0));
    }
}
