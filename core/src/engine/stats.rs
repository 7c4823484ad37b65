//! Neutral statistics snapshots of one engine, for the HTTP API, the metrics endpoint and
//! webhooks.
//!
//! [`Engine::stats`] takes a plain snapshot of one engine ([`EngineStats`]): its locally
//! published streams with their codecs and picture size, its publishing and playing sessions,
//! its connection and byte counts. A runtime with several engines keeps one snapshot per engine
//! (refreshed about once a second) and answers an [`super::Output::Gather`] with
//! [`Engine::answer`], handing it the snapshots of every engine; [`crate::api`] renders them
//! (merged by stream, so a player on one engine is counted with a stream published on another).

use std::net::SocketAddr;

use super::{ConnId, Engine, Protocol, Role};
use crate::hub::Tracks;
use crate::id_map::IdMap;
use crate::media::Codec;

/// Shortest span (ms) a bitrate is measured over: a snapshot taken sooner after the last
/// measurement of a session reports that measurement again.
pub const RATE_WINDOW_MS: u64 = 1_000;

/// A stream published on the engine that took the snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamStats {
    /// `app/stream`.
    pub key: String,
    /// Video codec, from the stream's track description (`None` before its video is known).
    pub video_codec: Option<Codec>,
    /// Audio codec, from the stream's track description.
    pub audio_codec: Option<Codec>,
    /// Picture width, from the track description (0 when unknown).
    pub width: u32,
    /// Picture height, from the track description (0 when unknown).
    pub height: u32,
    /// Frames per second, from the track description (publisher metadata or SDP), if told.
    pub frame_rate: Option<f64>,
}

/// A publishing or playing session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStats {
    /// The connection (unique in the process: runtimes put the worker in its high bits).
    pub conn: ConnId,
    /// Protocol.
    pub protocol: Protocol,
    /// Over TLS (accepted on the RTMPS, HTTPS or RTSPS listener).
    pub tls: bool,
    /// [`Role::Publish`] or [`Role::Play`].
    pub role: Role,
    /// `app/stream`.
    pub stream: String,
    /// The peer's address.
    pub peer: SocketAddr,
    /// When the connection was accepted, ms since the Unix epoch.
    pub start_unix_ms: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Receive rate over the last measurement (at least [`RATE_WINDOW_MS`]), kbit/s.
    pub read_kbits: u64,
    /// Send rate over the last measurement, kbit/s.
    pub write_kbits: u64,
    /// A relay's other end (`scheme://host:port/path`, no credentials or query), so that any
    /// worker can find a push by its target; empty for other sessions.
    pub relay_url: String,
}

/// A snapshot of one engine, see the module docs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineStats {
    /// When the engine's clock started (its `now_ms` 0), ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// When the snapshot was taken, ms since the Unix epoch.
    pub taken_unix_ms: u64,
    /// Streams whose publisher is on this engine.
    pub streams: Vec<StreamStats>,
    /// Sessions that publish or play (connections still setting up are left out).
    pub sessions: Vec<SessionStats>,
    /// Open connections of every kind.
    pub connections: u64,
    /// Bytes received since the engine started, closed connections included.
    pub bytes_in: u64,
    /// Bytes sent since the engine started, closed connections included.
    pub bytes_out: u64,
    /// Times a slow player skipped to the newest key frame (past the hub's soft bound).
    pub player_skips: u64,
    /// Players disconnected for falling past the hub's hard bound.
    pub slow_players_closed: u64,
    /// Frames the publications of this engine muxed into MPEG-TS and fMP4.
    pub muxed: super::MuxedFrames,
    /// The cluster registry as this engine sees it (`None`: no cluster).
    pub cluster: Option<super::cluster::ClusterStats>,
    /// What HLS holds in memory, by use.
    pub hls: crate::hls::HlsMemory,
}

/// The last bitrate measurement of a connection.
#[derive(Clone, Copy, Debug)]
struct Rate {
    at_ms: u64,
    bytes_in: u64,
    bytes_out: u64,
    read_kbits: u64,
    write_kbits: u64,
}

/// What the engine keeps for statistics between snapshots.
#[derive(Debug, Default)]
pub(super) struct Meters {
    rates: IdMap<ConnId, Rate>,
    closed_bytes_in: u64,
    closed_bytes_out: u64,
    pub(super) player_skips: u64,
    pub(super) slow_players_closed: u64,
    /// Skips not yet in a log line, and when the last line went out.
    skips_unlogged: u64,
    skips_logged_ms: Option<u64>,
}

/// At most one log line about slow players' skips per this long (ms), per engine.
const SKIP_LOG_EVERY_MS: u64 = 10_000;

impl Meters {
    /// The bitrates (kbit/s in, out) of session `id`, started at `started_ms`, with these byte
    /// counts at `now_ms`: measured again once [`RATE_WINDOW_MS`] has passed since the last
    /// measurement, the last one until then.
    fn measure(
        &mut self,
        id: ConnId,
        started_ms: u64,
        bytes_in: u64,
        bytes_out: u64,
        now_ms: u64,
    ) -> (u64, u64) {
        let rate = self.rates.entry(id).or_insert(Rate {
            at_ms: started_ms,
            bytes_in: 0,
            bytes_out: 0,
            read_kbits: 0,
            write_kbits: 0,
        });
        let span = now_ms.saturating_sub(rate.at_ms);
        if span >= RATE_WINDOW_MS {
            // bytes per ms times 8 is kbit/s.
            rate.read_kbits = bytes_in.saturating_sub(rate.bytes_in).saturating_mul(8) / span;
            rate.write_kbits = bytes_out.saturating_sub(rate.bytes_out).saturating_mul(8) / span;
            rate.at_ms = now_ms;
            rate.bytes_in = bytes_in;
            rate.bytes_out = bytes_out;
        }
        (rate.read_kbits, rate.write_kbits)
    }

    /// Counts a skip of `player`, `behind_ms` behind, at `now_ms`; returns a log line when one
    /// is due (the first, then at most one per [`SKIP_LOG_EVERY_MS`] with the count).
    pub(super) fn skipped(
        &mut self,
        player: ConnId,
        behind_ms: u64,
        now_ms: u64,
    ) -> Option<String> {
        self.player_skips = self.player_skips.saturating_add(1);
        self.skips_unlogged = self.skips_unlogged.saturating_add(1);
        if self
            .skips_logged_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < SKIP_LOG_EVERY_MS)
        {
            return None;
        }
        self.skips_logged_ms = Some(now_ms);
        let count = std::mem::take(&mut self.skips_unlogged);
        Some(format!(
            "slow player conn={player} was {behind_ms} ms behind live: skipped to the newest key \
             frame ({count} skips since the previous such line)"
        ))
    }
}

impl Engine {
    /// A snapshot of this engine's streams and sessions at `now_ms` (also measures bitrates:
    /// call it about once a second, not per packet).
    pub fn stats(&mut self, now_ms: u64) -> EngineStats {
        let wall = self.config.rtsp.wallclock_offset_ms;
        let mut out = EngineStats {
            started_unix_ms: wall,
            taken_unix_ms: wall.saturating_add(now_ms),
            connections: self.conns.len() as u64,
            bytes_in: self.meters.closed_bytes_in,
            bytes_out: self.meters.closed_bytes_out,
            player_skips: self.meters.player_skips,
            slow_players_closed: self.meters.slow_players_closed,
            muxed: self.demand.muxed,
            cluster: self.cluster.stats(),
            hls: self.hls.memory(),
            ..EngineStats::default()
        };
        for (&id, c) in &self.conns {
            out.bytes_in = out.bytes_in.saturating_add(c.bytes_in);
            out.bytes_out = out.bytes_out.saturating_add(c.bytes_out);
            if c.closing || c.role == Role::None {
                continue;
            }
            let (read_kbits, write_kbits) =
                self.meters
                    .measure(id, c.started_ms, c.bytes_in, c.bytes_out, now_ms);
            out.sessions.push(SessionStats {
                conn: id,
                protocol: c.protocol,
                tls: c.tls,
                role: c.role,
                stream: c.stream_name(),
                peer: c.peer,
                start_unix_ms: wall.saturating_add(c.started_ms),
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
                read_kbits,
                write_kbits,
                relay_url: String::new(),
            });
            if let (Role::Publish, Some(key)) = (c.role, &c.stream) {
                out.streams.push(stream_stats(key, self.hub.tracks(key)));
            }
        }
        let first_relay = out.sessions.len();
        self.relay.sessions(wall, &mut out);
        for s in &mut out.sessions[first_relay..] {
            let started_ms = s.start_unix_ms.saturating_sub(wall);
            (s.read_kbits, s.write_kbits) =
                self.meters
                    .measure(s.conn, started_ms, s.bytes_in, s.bytes_out, now_ms);
        }
        for key in self.relay.live_pulls() {
            out.streams
                .push(stream_stats(key.as_str(), self.hub.tracks(key)));
        }
        out.sessions.sort_by_key(|s| s.conn);
        let sessions = &out.sessions;
        self.meters
            .rates
            .retain(|id, _| sessions.binary_search_by_key(id, |s| s.conn).is_ok());
        out.streams.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Forgets a connection, adding its byte counts to the engine's totals.
    pub(super) fn forget(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            let m = &mut self.meters;
            m.closed_bytes_in = m.closed_bytes_in.saturating_add(c.bytes_in);
            m.closed_bytes_out = m.closed_bytes_out.saturating_add(c.bytes_out);
            m.rates.remove(&conn);
        }
    }
}

/// What a stream's track description tells about it.
fn stream_stats(key: &str, tracks: Option<&Tracks>) -> StreamStats {
    let video = tracks.and_then(|t| t.video.as_ref());
    StreamStats {
        key: key.to_owned(),
        video_codec: video.map(|v| v.codec),
        audio_codec: tracks.and_then(|t| t.audio.as_ref()).map(|a| a.codec),
        width: video.map_or(0, |v| v.width),
        height: video.map_or(0, |v| v.height),
        frame_rate: video.and_then(|v| v.frame_rate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, Listener, Output};

    /// `conn` was sent and whether it was closed.
    fn serve(e: &mut Engine, conn: ConnId, now: u64) -> (String, bool) {
        let mut closed = false;
        while let Some(out) = e.poll_output() {
            match out {
                Output::Gather { conn, query } => {
                    let own = e.stats(now);
                    e.answer(conn, &query, &[own], now);
                }
                Output::Close { conn: c, .. } if c == conn => closed = true,
                _ => {}
            }
        }
        let mut bufs = Vec::new();
        e.poll_transmit(conn, usize::MAX, &mut bufs);
        let bytes: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        (String::from_utf8_lossy(&bytes).into_owned(), closed)
    }

    #[test]
    fn the_engine_answers_pipelined_api_requests_in_order_with_cors_and_keeps_the_connection() {
        let mut e = Engine::new(EngineConfig::default(), 1);
        let peer = "127.0.0.1:40000".parse().expect("addr");
        e.handle_accept(5, Listener::Http, peer, 0);
        e.handle_input(
            5,
            b"GET /api/stat/group?stream_name=nope HTTP/1.1\r\nHost: h\r\n\r\n\
              GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n",
            10,
        );
        let (text, closed) = serve(&mut e, 5, 10);
        assert!(!closed, "keep-alive requests keep the connection");
        let first = text.find("group not found").expect("group answer");
        let second = text.find("rill_connections 1").expect("metrics answer");
        assert!(first < second, "answers in request order:\n{text}");
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
        assert_eq!(text.matches("Access-Control-Allow-Origin: *").count(), 2);
        assert!(text.contains("Content-Type: application/json"));

        // `Connection: close` is honoured; HEAD gets the head only.
        e.handle_input(
            5,
            b"HEAD /api/stat/lal_info HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            20,
        );
        let (text, closed) = serve(&mut e, 5, 20);
        assert!(closed);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(!text.contains("error_code"), "no body for HEAD: {text}");
    }

    #[test]
    fn closed_connections_stay_in_the_byte_totals() {
        let mut e = Engine::new(EngineConfig::default(), 1);
        let peer = "127.0.0.1:40000".parse().expect("addr");
        e.handle_accept(5, Listener::Http, peer, 0);
        e.handle_input(
            5,
            b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            0,
        );
        let _ = serve(&mut e, 5, 0);
        e.handle_close(5, "done", 1);
        let s = e.stats(2);
        assert_eq!(s.connections, 0);
        assert!(s.bytes_in > 40 && s.bytes_out > 40, "{s:?}");
        assert_eq!(s.started_unix_ms, e.config.rtsp.wallclock_offset_ms);
    }
}
