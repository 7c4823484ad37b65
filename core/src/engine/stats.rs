//! Statistics for the HTTP API and the metrics endpoint.
//!
//! [`Engine::stats`] takes a plain snapshot of one engine ([`EngineStats`]): its locally
//! published streams with their codecs and picture size, its publishing and playing sessions,
//! its connection and byte counts. A runtime with several engines keeps one snapshot per engine
//! (refreshed about once a second) and answers an [`super::Output::StatsRequest`] with
//! [`Engine::answer_stats`], handing it the snapshots of every engine: [`render`] merges them by
//! stream, so a player on one engine is counted with a stream published on another.
//!
//! The JSON follows lal's HTTP API (`/api/stat/lal_info`, `/api/stat/all_group`,
//! `/api/stat/group?stream_name=`): the same envelope (`error_code`, `desp`, `data`), field
//! names, protocol names (`RTMP`, `FLV`, `TS`, `RTSP`) and error codes, so tools written for lal
//! keep working. `/metrics` is the Prometheus text format.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::BytesMut;
use serde::Serialize;

use super::{ConnId, ConnKind, Engine, HttpState, Protocol, Role};
use crate::http::Response;
use crate::hub::Tracks;
use crate::media::Codec;

/// Shortest span (ms) a bitrate is measured over: a snapshot taken sooner after the last
/// measurement of a session reports that measurement again.
pub const RATE_WINDOW_MS: u64 = 1_000;

/// The version of lal's HTTP API whose `/api/stat/*` answers these follow.
pub const LAL_API_VERSION: &str = "v0.4.8";

/// The version of lal's HTTP notifications (webhooks) whose events rill sends.
pub const LAL_NOTIFY_VERSION: &str = "v0.2.4";

/// The `server_id` rill reports in the API and in webhooks (lal's default).
pub const SERVER_ID: &str = "1";

/// lal's `error_code` for success.
pub const ERROR_CODE_SUCC: u32 = 0;
/// lal's `error_code` for a `stream_name` that names no stream.
pub const ERROR_CODE_GROUP_NOT_FOUND: u32 = 1001;
/// lal's `error_code` for a request without a required parameter.
pub const ERROR_CODE_PARAM_MISSING: u32 = 1002;

/// The Prometheus text exposition format's content type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One endpoint of the statistics API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatsRequest {
    /// `GET /api/stat/lal_info`: server information.
    LalInfo,
    /// `GET /api/stat/all_group`: every stream.
    AllGroups,
    /// `GET /api/stat/group?stream_name=NAME`: one stream (`NAME` empty when not given).
    Group(String),
    /// `GET /metrics`: Prometheus text.
    Metrics,
}

impl StatsRequest {
    /// The request an HTTP path (without its query) stands for, with the request's
    /// `stream_name` parameter; `None` for paths that are not the API's.
    pub fn from_path(path: &str, stream_name: Option<&str>) -> Option<StatsRequest> {
        Some(match path {
            "/api/stat/lal_info" => StatsRequest::LalInfo,
            "/api/stat/all_group" => StatsRequest::AllGroups,
            "/api/stat/group" => StatsRequest::Group(stream_name.unwrap_or_default().to_owned()),
            "/metrics" => StatsRequest::Metrics,
            _ => return None,
        })
    }
}

/// A stream published on the engine that took the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStats {
    /// `app/stream`.
    pub key: String,
    /// Video codec, from the stream's video configuration (or `None` before one arrived).
    pub video_codec: Option<Codec>,
    /// Audio codec, from the stream's audio configuration.
    pub audio_codec: Option<Codec>,
    /// Picture width from the H.264/H.265 sequence parameter set (0 when unknown).
    pub width: u32,
    /// Picture height from the sequence parameter set (0 when unknown).
    pub height: u32,
}

/// A publishing or playing session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStats {
    /// The connection (unique in the process: runtimes put the worker in its high bits).
    pub conn: ConnId,
    /// Protocol.
    pub protocol: Protocol,
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
}

/// A snapshot of one engine, see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    rates: HashMap<ConnId, Rate>,
    closed_bytes_in: u64,
    closed_bytes_out: u64,
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
            ..EngineStats::default()
        };
        for (&id, c) in &self.conns {
            out.bytes_in = out.bytes_in.saturating_add(c.bytes_in);
            out.bytes_out = out.bytes_out.saturating_add(c.bytes_out);
            if c.closing || c.role == Role::None {
                continue;
            }
            let rate = self.meters.rates.entry(id).or_insert(Rate {
                at_ms: c.started_ms,
                bytes_in: 0,
                bytes_out: 0,
                read_kbits: 0,
                write_kbits: 0,
            });
            let span = now_ms.saturating_sub(rate.at_ms);
            if span >= RATE_WINDOW_MS {
                // bytes per ms times 8 is kbit/s.
                rate.read_kbits = c.bytes_in.saturating_sub(rate.bytes_in).saturating_mul(8) / span;
                rate.write_kbits =
                    c.bytes_out.saturating_sub(rate.bytes_out).saturating_mul(8) / span;
                rate.at_ms = now_ms;
                rate.bytes_in = c.bytes_in;
                rate.bytes_out = c.bytes_out;
            }
            out.sessions.push(SessionStats {
                conn: id,
                protocol: c.protocol,
                role: c.role,
                stream: c.stream_name(),
                peer: c.peer,
                start_unix_ms: wall.saturating_add(c.started_ms),
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
                read_kbits: rate.read_kbits,
                write_kbits: rate.write_kbits,
            });
            if let (Role::Publish, Some(key)) = (c.role, &c.stream) {
                out.streams.push(stream_stats(key, self.hub.tracks(key)));
            }
        }
        let conns = &self.conns;
        self.meters.rates.retain(|id, _| conns.contains_key(id));
        out.sessions.sort_by_key(|s| s.conn);
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

    /// An HTTP request for the statistics API arrived: ask the runtime for the snapshots.
    pub(super) fn request_stats(
        &mut self,
        conn: ConnId,
        request: StatsRequest,
        keep_alive: bool,
        head_only: bool,
    ) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if let ConnKind::Http { state, .. } = &mut c.kind {
                *state = HttpState::AwaitStats {
                    keep_alive,
                    head_only,
                };
                self.outputs
                    .push_back(super::Output::StatsRequest { conn, request });
            }
        }
    }

    /// Answers an [`super::Output::StatsRequest`] of `conn` from `snapshots` (one per engine of
    /// the process, this engine's among them, fresh or at most a few seconds old), then reads
    /// the connection's next request if it stays open.
    pub fn answer_stats(
        &mut self,
        conn: ConnId,
        request: &StatsRequest,
        snapshots: &[EngineStats],
        now_ms: u64,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnKind::Http { state, .. } = &mut c.kind else {
            return;
        };
        let HttpState::AwaitStats {
            keep_alive,
            head_only,
        } = *state
        else {
            return;
        };
        *state = HttpState::AwaitRequest;
        let response = render(request, snapshots);
        if head_only {
            let mut out = BytesMut::with_capacity(256);
            response.encode_head(&mut out);
            c.pending.push_back(out.freeze());
            self.want_transmit(conn);
            if !keep_alive {
                self.close(conn, true, "stats api", now_ms);
            }
        } else {
            self.http_respond(conn, response, keep_alive, "stats api", now_ms);
        }
        if keep_alive {
            // Requests pipelined behind this one waited in the reader.
            self.drain_http(conn, now_ms);
            self.drain_hub(now_ms);
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
    }
}

/// The HTTP response to `request` from the snapshots of every engine: lal's JSON (always status
/// 200, with lal's `error_code` in the body, as lal does) or Prometheus text.
pub fn render(request: &StatsRequest, snapshots: &[EngineStats]) -> Response {
    match request {
        StatsRequest::Metrics => {
            Response::new(200).body(METRICS_CONTENT_TYPE, render_metrics(snapshots))
        }
        _ => Response::json(200, render_json(request, snapshots)),
    }
}

/// lal's JSON answer to `request` (an empty object for [`StatsRequest::Metrics`]).
pub fn render_json(request: &StatsRequest, snapshots: &[EngineStats]) -> String {
    let encoded = match request {
        StatsRequest::LalInfo => serde_json::to_string(&Envelope::succ(lal_info(snapshots))),
        StatsRequest::AllGroups => {
            let groups = merge(snapshots).iter().map(JsonGroup::from).collect();
            serde_json::to_string(&Envelope::succ(AllGroups { groups }))
        }
        StatsRequest::Group(name) if name.is_empty() => serde_json::to_string(&Envelope {
            error_code: ERROR_CODE_PARAM_MISSING,
            desp: "param missing",
            data: None::<()>,
        }),
        StatsRequest::Group(name) => {
            let groups = merge(snapshots);
            // lal names a stream without its app; `app/stream` is taken as well.
            let found = groups
                .iter()
                .find(|g| g.stream_name() == name)
                .or_else(|| groups.iter().find(|g| g.key == name));
            match found {
                Some(g) => serde_json::to_string(&Envelope::succ(JsonGroup::from(g))),
                None => serde_json::to_string(&Envelope {
                    error_code: ERROR_CODE_GROUP_NOT_FOUND,
                    desp: "group not found",
                    data: None::<()>,
                }),
            }
        }
        StatsRequest::Metrics => Ok("{}".to_owned()),
    };
    // Serializing these plain structs cannot fail (string keys, no maps of other keys).
    encoded.unwrap_or_else(|_| "{}".to_owned())
}

/// The Prometheus text of every engine's snapshot added up.
pub fn render_metrics(snapshots: &[EngineStats]) -> String {
    const PROTOCOLS: [Protocol; 6] = [
        Protocol::Rtmp,
        Protocol::HttpFlv,
        Protocol::WsFlv,
        Protocol::HttpTs,
        Protocol::WsTs,
        Protocol::Rtsp,
    ];
    let sessions = || snapshots.iter().flat_map(|s| &s.sessions);
    let count = |role: Role, p: Protocol| {
        sessions()
            .filter(|s| s.role == role && s.protocol == p)
            .count()
    };
    let sum = |f: fn(&EngineStats) -> u64| {
        snapshots
            .iter()
            .map(f)
            .fold(0u64, |a, b| a.saturating_add(b))
    };
    let streams = merge(snapshots)
        .iter()
        .filter(|g| g.publisher.is_some())
        .count();
    let mut out = String::with_capacity(1024);
    // Writing to a String cannot fail.
    let mut metric = |name: &str, kind: &str, help: &str, values: &[(Option<Protocol>, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (label, v) in values {
            match label {
                Some(p) => {
                    let _ = writeln!(out, "{name}{{protocol=\"{}\"}} {v}", metric_label(*p));
                }
                None => {
                    let _ = writeln!(out, "{name} {v}");
                }
            }
        }
    };
    metric(
        "rill_streams",
        "gauge",
        "Streams with a live publisher.",
        &[(None, streams as u64)],
    );
    let by_protocol = |role: Role| -> Vec<(Option<Protocol>, u64)> {
        PROTOCOLS
            .iter()
            .map(|p| (Some(*p), count(role, *p) as u64))
            .collect()
    };
    metric(
        "rill_publishers",
        "gauge",
        "Publishing sessions, by protocol.",
        &by_protocol(Role::Publish),
    );
    metric(
        "rill_players",
        "gauge",
        "Playing sessions, by protocol.",
        &by_protocol(Role::Play),
    );
    metric(
        "rill_connections",
        "gauge",
        "Open connections of every kind.",
        &[(None, sum(|s| s.connections))],
    );
    metric(
        "rill_bytes_in_total",
        "counter",
        "Bytes received on every connection since the server started.",
        &[(None, sum(|s| s.bytes_in))],
    );
    metric(
        "rill_bytes_out_total",
        "counter",
        "Bytes sent on every connection since the server started.",
        &[(None, sum(|s| s.bytes_out))],
    );
    out
}

/// A protocol as a metric label value.
fn metric_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Rtmp => "rtmp",
        Protocol::HttpFlv => "http-flv",
        Protocol::WsFlv => "ws-flv",
        Protocol::HttpTs => "http-ts",
        Protocol::WsTs => "ws-ts",
        Protocol::Http => "http",
        Protocol::Rtsp => "rtsp",
    }
}

/// One stream as seen across every snapshot.
#[derive(Debug)]
pub(super) struct Group<'a> {
    key: &'a str,
    stream: Option<&'a StreamStats>,
    publisher: Option<&'a SessionStats>,
    subs: Vec<&'a SessionStats>,
}

impl<'a> Group<'a> {
    fn app_name(&self) -> &'a str {
        self.key.split_once('/').map_or("", |(app, _)| app)
    }

    fn stream_name(&self) -> &'a str {
        self.key.split_once('/').map_or(self.key, |(_, s)| s)
    }
}

/// The streams of every snapshot by `app/stream`: its publisher and stream details from the
/// engine that has them, its players from every engine.
pub(super) fn merge(snapshots: &[EngineStats]) -> Vec<Group<'_>> {
    let mut groups: BTreeMap<&str, Group<'_>> = BTreeMap::new();
    for snap in snapshots {
        for s in &snap.streams {
            entry(&mut groups, &s.key).stream = Some(s);
        }
        for s in &snap.sessions {
            match s.role {
                Role::Publish => entry(&mut groups, &s.stream).publisher = Some(s),
                Role::Play => entry(&mut groups, &s.stream).subs.push(s),
                Role::None => {}
            }
        }
    }
    let mut out: Vec<Group<'_>> = groups.into_values().collect();
    for g in &mut out {
        g.subs.sort_by_key(|s| s.conn);
    }
    out
}

fn entry<'m, 'a>(groups: &'m mut BTreeMap<&'a str, Group<'a>>, key: &'a str) -> &'m mut Group<'a> {
    groups.entry(key).or_insert_with(|| Group {
        key,
        stream: None,
        publisher: None,
        subs: Vec::new(),
    })
}

/// lal's answer envelope.
#[derive(Serialize)]
struct Envelope<T: Serialize> {
    error_code: u32,
    desp: &'static str,
    data: Option<T>,
}

impl<T: Serialize> Envelope<T> {
    fn succ(data: T) -> Self {
        Envelope {
            error_code: ERROR_CODE_SUCC,
            desp: "succ",
            data: Some(data),
        }
    }
}

/// `data` of `/api/stat/lal_info` (also the body of the `on_server_start` webhook).
#[derive(Serialize)]
pub(super) struct LalInfo {
    server_id: &'static str,
    bin_info: String,
    lal_version: String,
    api_version: &'static str,
    notify_version: &'static str,
    start_time: String,
}

fn lal_info(snapshots: &[EngineStats]) -> LalInfo {
    let started = snapshots
        .iter()
        .map(|s| s.started_unix_ms)
        .min()
        .unwrap_or_default();
    lal_info_at(started, snapshots.len())
}

/// lal's server information for a server of `workers` workers started at `started_unix_ms`.
pub(super) fn lal_info_at(started_unix_ms: u64, workers: usize) -> LalInfo {
    let version = env!("CARGO_PKG_VERSION");
    LalInfo {
        server_id: SERVER_ID,
        bin_info: format!("rill {version}, {workers} workers"),
        lal_version: format!("v{version}"),
        api_version: LAL_API_VERSION,
        notify_version: LAL_NOTIFY_VERSION,
        start_time: format_unix_ms(started_unix_ms),
    }
}

/// `data` of `/api/stat/all_group`.
#[derive(Serialize)]
struct AllGroups<'a> {
    groups: Vec<JsonGroup<'a>>,
}

/// One group (stream) as lal shows it.
#[derive(Serialize)]
pub(super) struct JsonGroup<'a> {
    stream_name: &'a str,
    app_name: &'a str,
    audio_codec: &'static str,
    video_codec: &'static str,
    video_width: u32,
    video_height: u32,
    #[serde(rename = "pub")]
    publisher: JsonSession,
    subs: Vec<JsonSession>,
    /// rill does not pull streams from other servers yet: always the empty session.
    pull: JsonSession,
}

impl<'a> From<&Group<'a>> for JsonGroup<'a> {
    fn from(g: &Group<'a>) -> Self {
        let codec = |c: Option<Codec>| c.map_or("", Codec::name);
        JsonGroup {
            stream_name: g.stream_name(),
            app_name: g.app_name(),
            audio_codec: codec(g.stream.and_then(|s| s.audio_codec)),
            video_codec: codec(g.stream.and_then(|s| s.video_codec)),
            video_width: g.stream.map_or(0, |s| s.width),
            video_height: g.stream.map_or(0, |s| s.height),
            publisher: g.publisher.map(JsonSession::from).unwrap_or_default(),
            subs: g.subs.iter().map(|s| JsonSession::from(*s)).collect(),
            pull: JsonSession::default(),
        }
    }
}

/// A session as lal shows it (all empty for a missing publisher or pull, as in lal).
#[derive(Serialize, Default)]
struct JsonSession {
    session_id: String,
    protocol: &'static str,
    base_type: &'static str,
    remote_addr: String,
    start_time: String,
    read_bytes_sum: u64,
    wrote_bytes_sum: u64,
    bitrate_kbits: u64,
    read_bitrate_kbits: u64,
    write_bitrate_kbits: u64,
}

impl From<&SessionStats> for JsonSession {
    fn from(s: &SessionStats) -> Self {
        let publish = s.role == Role::Publish;
        JsonSession {
            session_id: lal_session_id(s.conn, s.protocol, s.role),
            protocol: lal_protocol(s.protocol),
            base_type: lal_base_type(s.role),
            remote_addr: s.peer.to_string(),
            start_time: format_unix_ms(s.start_unix_ms),
            read_bytes_sum: s.bytes_in,
            wrote_bytes_sum: s.bytes_out,
            bitrate_kbits: if publish { s.read_kbits } else { s.write_kbits },
            read_bitrate_kbits: s.read_kbits,
            write_bitrate_kbits: s.write_kbits,
        }
    }
}

/// lal's protocol name of a session: HTTP-FLV and WebSocket-FLV are both `FLV`, likewise `TS`.
pub fn lal_protocol(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Rtmp => "RTMP",
        Protocol::HttpFlv | Protocol::WsFlv => "FLV",
        Protocol::HttpTs | Protocol::WsTs => "TS",
        Protocol::Rtsp => "RTSP",
        Protocol::Http => "HTTP",
    }
}

/// lal's `base_type` of a session: `PUB` for a publisher, `SUB` otherwise.
pub fn lal_base_type(role: Role) -> &'static str {
    if role == Role::Publish {
        "PUB"
    } else {
        "SUB"
    }
}

/// lal's session id: the protocol name, then `PUBSUB` for any RTMP server session (publisher or
/// player), `PUB` or `SUB` for the others, then the connection id (`RTMPPUBSUB7`, `FLVSUB9`).
pub fn lal_session_id(conn: ConnId, protocol: Protocol, role: Role) -> String {
    let kind = match (protocol, role) {
        (Protocol::Rtmp, _) => "PUBSUB",
        (_, Role::Publish) => "PUB",
        _ => "SUB",
    };
    format!("{}{kind}{conn}", lal_protocol(protocol))
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) for ms since the Unix epoch, lal's time format.
pub fn format_unix_ms(ms: u64) -> String {
    let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, counting in 400-year eras
/// that start on March 1st (so the leap day ends a year).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 = March ... 11 = February.
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, Listener, Output};

    fn session(conn: ConnId, protocol: Protocol, role: Role, stream: &str) -> SessionStats {
        SessionStats {
            conn,
            protocol,
            role,
            stream: stream.to_owned(),
            peer: format!("127.0.0.1:{}", 40_000 + conn % 1000)
                .parse()
                .expect("addr"),
            start_unix_ms: 1_700_000_000_123,
            bytes_in: 1000 + conn,
            bytes_out: 2000 + conn,
            read_kbits: 300,
            write_kbits: 5,
        }
    }

    /// Worker 0 has the publisher of live/cam and one FLV player; worker 1 a WebSocket-FLV
    /// player of it and an RTMP player of a stream whose publisher is gone.
    fn snapshots() -> Vec<EngineStats> {
        vec![
            EngineStats {
                started_unix_ms: 1_700_000_000_000,
                taken_unix_ms: 1_700_000_005_000,
                streams: vec![StreamStats {
                    key: "live/cam".into(),
                    video_codec: Some(Codec::H264),
                    audio_codec: Some(Codec::Aac),
                    width: 1280,
                    height: 720,
                }],
                sessions: vec![
                    session(1, Protocol::Rtmp, Role::Publish, "live/cam"),
                    session(2, Protocol::HttpFlv, Role::Play, "live/cam"),
                ],
                connections: 3,
                bytes_in: 10_000,
                bytes_out: 20_000,
            },
            EngineStats {
                started_unix_ms: 1_700_000_000_001,
                taken_unix_ms: 1_700_000_004_500,
                streams: Vec::new(),
                sessions: vec![
                    session((1 << 40) | 16, Protocol::WsFlv, Role::Play, "live/cam"),
                    session((1 << 40) | 17, Protocol::Rtmp, Role::Play, "app2/gone"),
                ],
                connections: 2,
                bytes_in: 1,
                bytes_out: 2,
            },
        ]
    }

    fn json(request: &StatsRequest, snaps: &[EngineStats]) -> serde_json::Value {
        serde_json::from_str(&render_json(request, snaps)).expect("valid JSON")
    }

    #[test]
    fn all_group_has_lal_envelope_and_field_names_and_merges_players_of_every_worker() {
        let v = json(&StatsRequest::AllGroups, &snapshots());
        assert_eq!(v["error_code"], 0);
        assert_eq!(v["desp"], "succ");
        let groups = v["data"]["groups"].as_array().expect("groups");
        assert_eq!(groups.len(), 2, "{v}");
        let cam = groups
            .iter()
            .find(|g| g["stream_name"] == "cam")
            .expect("cam");
        assert_eq!(cam["app_name"], "live");
        assert_eq!(cam["video_codec"], "H264");
        assert_eq!(cam["audio_codec"], "AAC");
        assert_eq!(
            (cam["video_width"].as_u64(), cam["video_height"].as_u64()),
            (Some(1280), Some(720))
        );
        let p = &cam["pub"];
        assert_eq!(p["session_id"], "RTMPPUBSUB1");
        assert_eq!(p["protocol"], "RTMP");
        assert_eq!(p["base_type"], "PUB");
        assert_eq!(p["remote_addr"], "127.0.0.1:40001");
        assert_eq!(p["start_time"], "2023-11-14 22:13:20.123");
        assert_eq!(p["read_bytes_sum"], 1001);
        assert_eq!(p["wrote_bytes_sum"], 2001);
        assert_eq!(
            p["bitrate_kbits"], 300,
            "a publisher's bitrate is what it sends in"
        );
        assert_eq!(p["read_bitrate_kbits"], 300);
        assert_eq!(p["write_bitrate_kbits"], 5);
        let subs = cam["subs"].as_array().expect("subs");
        assert_eq!(
            subs.len(),
            2,
            "the player on the other worker counts: {cam}"
        );
        assert!(subs
            .iter()
            .all(|s| s["protocol"] == "FLV" && s["base_type"] == "SUB"));
        assert_eq!(subs[0]["session_id"], "FLVSUB2");
        assert_eq!(
            subs[1]["bitrate_kbits"], 5,
            "a player's bitrate is what it is sent"
        );
        // No relay pull: lal's empty session.
        assert_eq!(cam["pull"]["session_id"], "");
        assert_eq!(cam["pull"]["read_bytes_sum"], 0);
        // A stream with players only: no publisher, no codecs.
        let gone = groups
            .iter()
            .find(|g| g["stream_name"] == "gone")
            .expect("gone");
        assert_eq!(gone["app_name"], "app2");
        assert_eq!(gone["pub"]["protocol"], "");
        assert_eq!(gone["video_codec"], "");
        assert_eq!(
            gone["subs"][0]["session_id"],
            format!("RTMPPUBSUB{}", (1u64 << 40) | 17)
        );
    }

    #[test]
    fn group_finds_a_stream_by_name_or_gives_lal_error_codes() {
        let snaps = snapshots();
        let v = json(&StatsRequest::Group("cam".into()), &snaps);
        assert_eq!(v["error_code"], 0);
        assert_eq!(v["data"]["stream_name"], "cam");
        assert_eq!(v["data"]["subs"].as_array().map(Vec::len), Some(2));
        let v = json(&StatsRequest::Group("live/cam".into()), &snaps);
        assert_eq!(v["data"]["app_name"], "live");

        let v = json(&StatsRequest::Group("nope".into()), &snaps);
        assert_eq!(v["error_code"], 1001);
        assert_eq!(v["desp"], "group not found");
        assert!(v["data"].is_null());
        let v = json(&StatsRequest::Group(String::new()), &snaps);
        assert_eq!(v["error_code"], 1002);
        assert_eq!(v["desp"], "param missing");
    }

    #[test]
    fn lal_info_names_the_server_and_its_start() {
        let v = json(&StatsRequest::LalInfo, &snapshots());
        assert_eq!(v["error_code"], 0);
        let d = &v["data"];
        for field in [
            "server_id",
            "bin_info",
            "lal_version",
            "api_version",
            "notify_version",
        ] {
            assert!(d[field].is_string(), "{field}: {d}");
        }
        assert_eq!(d["api_version"], LAL_API_VERSION);
        assert_eq!(
            d["start_time"], "2023-11-14 22:13:20.000",
            "the earliest worker's start"
        );
    }

    #[test]
    fn metrics_add_up_every_worker_in_prometheus_text() {
        let text = render_metrics(&snapshots());
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "rill_streams 1",
            "rill_publishers{protocol=\"rtmp\"} 1",
            "rill_publishers{protocol=\"rtsp\"} 0",
            "rill_players{protocol=\"http-flv\"} 1",
            "rill_players{protocol=\"ws-flv\"} 1",
            "rill_players{protocol=\"rtmp\"} 1",
            "rill_connections 5",
            "rill_bytes_in_total 10001",
            "rill_bytes_out_total 20002",
            "# TYPE rill_bytes_out_total counter",
            "# TYPE rill_players gauge",
        ] {
            assert!(
                lines.contains(&expected),
                "{expected:?} missing in:\n{text}"
            );
        }
        // Every sample line is `name{labels} value` with a numeric value.
        for line in lines.iter().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            assert!(name.starts_with("rill_"), "{line}");
            assert!(value.parse::<u64>().is_ok(), "{line}");
        }
        let r = render(&StatsRequest::Metrics, &snapshots());
        let ct = r.headers.iter().find(|(k, _)| k == "Content-Type");
        assert!(ct.is_some_and(|(_, v)| v.starts_with("text/plain")));
    }

    #[test]
    fn times_are_lal_formatted_utc() {
        assert_eq!(format_unix_ms(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_unix_ms(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(format_unix_ms(4_102_444_799_999), "2099-12-31 23:59:59.999");
        // Never panics, even at the end of the range.
        assert!(!format_unix_ms(u64::MAX).is_empty());
    }

    #[test]
    fn api_paths_are_recognized_and_others_are_not() {
        assert_eq!(
            StatsRequest::from_path("/api/stat/group", Some("x")),
            Some(StatsRequest::Group("x".into()))
        );
        assert_eq!(
            StatsRequest::from_path("/api/stat/group", None),
            Some(StatsRequest::Group(String::new()))
        );
        assert_eq!(
            StatsRequest::from_path("/metrics", None),
            Some(StatsRequest::Metrics)
        );
        assert_eq!(StatsRequest::from_path("/live/cam.flv", None), None);
        assert_eq!(StatsRequest::from_path("/api/stat/all_group/x", None), None);
    }

    /// Runs an engine's outputs; answers stats requests from its own snapshot; returns what
    /// `conn` was sent and whether it was closed.
    fn serve(e: &mut Engine, conn: ConnId, now: u64) -> (String, bool) {
        let mut closed = false;
        while let Some(out) = e.poll_output() {
            match out {
                Output::StatsRequest { conn, request } => {
                    let own = e.stats(now);
                    e.answer_stats(conn, &request, &[own], now);
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
