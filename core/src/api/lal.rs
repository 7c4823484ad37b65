//! lal's HTTP API JSON (`/api/stat/lal_info`, `/api/stat/all_group`,
//! `/api/stat/group?stream_name=`) and the pieces its webhooks share: the same envelope
//! (`error_code`, `desp`, `data`), field names, protocol names (`RTMP`, `FLV`, `TS`, `RTSP`),
//! session ids, time format and error codes, so tools written for lal keep working.

use serde::Serialize;

use super::{merge, Group, Query};
use crate::engine::{ConnId, EngineStats, Protocol, Role, SessionStats};
use crate::http::Response;
use crate::media::Codec;
use crate::stream_key::StreamKey;

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
/// lal's `error_code` for a `session_id` that names no session of the stream.
pub const ERROR_CODE_SESSION_NOT_FOUND: u32 = 1003;
/// lal's `error_code` for a relay that cannot start (bad URL, the stream already has an
/// input); rill also uses it for a push that cannot start.
pub const ERROR_CODE_START_RELAY_PULL_FAIL: u32 = 2001;

/// lal's JSON answer to `query` (an empty object for [`Query::Metrics`]). For
/// [`Query::KickSession`] this only renders the answer; [`answer_json`] also names the session
/// to close.
pub fn render_json(query: &Query, snapshots: &[EngineStats]) -> String {
    answer_json(query, snapshots).0
}

/// lal's JSON answer to `query`, and the session it kicks, if any.
pub fn answer_json(query: &Query, snapshots: &[EngineStats]) -> (String, Option<ConnId>) {
    let mut close = None;
    let encoded = match query {
        Query::LalInfo => serde_json::to_string(&Envelope::succ(lal_info(snapshots))),
        Query::AllGroups => {
            let groups = merge(snapshots).iter().map(JsonGroup::from).collect();
            serde_json::to_string(&Envelope::succ(AllGroups { groups }))
        }
        Query::Group(name) if name.is_empty() => serde_json::to_string(&param_missing()),
        Query::Group(name) => match find_group(&merge(snapshots), name) {
            Some(g) => serde_json::to_string(&Envelope::succ(JsonGroup::from(g))),
            None => serde_json::to_string(&group_not_found()),
        },
        Query::KickSession {
            stream_name,
            session_id,
        } => {
            // lal names a stream without its app: every app's stream of that name may hold
            // the session.
            let groups = merge(snapshots);
            let mut named = groups
                .iter()
                .filter(|g| g.stream_name() == stream_name || g.key == stream_name)
                .peekable();
            let session = named.peek().is_some().then(|| {
                named.find_map(|g| {
                    g.publisher
                        .into_iter()
                        .chain(g.pull)
                        .chain(g.subs.iter().copied())
                        .find(|s| lal_session_id(s.conn, s.protocol, s.role) == *session_id)
                })
            });
            match session {
                None => serde_json::to_string(&group_not_found()),
                Some(None) => serde_json::to_string(&Envelope {
                    error_code: ERROR_CODE_SESSION_NOT_FOUND,
                    desp: "session not found",
                    data: None::<()>,
                }),
                Some(Some(s)) => {
                    close = Some(s.conn);
                    serde_json::to_string(&Envelope {
                        error_code: ERROR_CODE_SUCC,
                        desp: "succ",
                        data: None::<()>,
                    })
                }
            }
        }
        // Answered by the engine, which runs the relays ([`crate::engine::Engine::answer`]).
        Query::Metrics
        | Query::Cluster
        | Query::StartRelayPull(_)
        | Query::StopRelayPull(_)
        | Query::StartRelayPush { .. }
        | Query::StopRelayPush { .. }
        | Query::Livego(_)
        | Query::LivegoStat => Ok("{}".to_owned()),
    };
    // Serializing these plain structs cannot fail (string keys, no maps of other keys).
    (encoded.unwrap_or_else(|_| "{}".to_owned()), close)
}

/// The [`Query::KickSession`] in the JSON body of `POST /api/ctrl/kick_session`
/// (`{"stream_name": .., "session_id": ..}`), or lal's "param missing" answer for a body
/// without both.
pub fn kick_session_query(body: &[u8]) -> Result<Query, String> {
    #[derive(serde::Deserialize)]
    struct Body {
        stream_name: Option<String>,
        session_id: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body {
            stream_name: Some(stream_name),
            session_id: Some(session_id),
        }) if !stream_name.is_empty() && !session_id.is_empty() => Ok(Query::KickSession {
            stream_name,
            session_id,
        }),
        _ => Err(serde_json::to_string(&param_missing()).unwrap_or_else(|_| "{}".to_owned())),
    }
}

/// The body of `POST /api/ctrl/start_relay_pull`, with lal's defaults for what it leaves out.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct RelayPullRequest {
    /// The URL to pull (required).
    pub url: String,
    /// The stream's name here: `app/stream`, or a bare name whose app is the URL's; empty:
    /// the URL's app and stream.
    pub stream_name: String,
    /// Time allowed from connecting to playing (ms; lal's default 10000).
    pub pull_timeout_ms: i64,
    /// Retries after a failure: 0 never (lal's default), -1 forever.
    pub pull_retry_num: i64,
    /// Stop this long after the last player left (ms): -1 never (lal's default), 0 at once.
    pub auto_stop_pull_after_no_out_ms: i64,
    /// RTSP transport: 0 TCP (default), 1 UDP.
    pub rtsp_mode: i64,
}

impl Default for RelayPullRequest {
    fn default() -> Self {
        RelayPullRequest {
            url: String::new(),
            stream_name: String::new(),
            pull_timeout_ms: 10_000,
            pull_retry_num: 0,
            auto_stop_pull_after_no_out_ms: -1,
            rtsp_mode: 0,
        }
    }
}

/// The [`Query::StartRelayPull`] in the JSON body of `POST /api/ctrl/start_relay_pull`, or lal's
/// "param missing" answer for a body that is not JSON or has no `url`.
pub fn start_relay_pull_query(body: &[u8]) -> Result<Query, String> {
    match serde_json::from_slice::<RelayPullRequest>(body) {
        Ok(r) if !r.url.is_empty() => Ok(Query::StartRelayPull(r)),
        _ => Err(error_json(ERROR_CODE_PARAM_MISSING, "param missing")),
    }
}

/// The [`Query::StartRelayPush`] in the JSON body of `POST /api/ctrl/start_relay_push`
/// (`{"stream_name": .., "url": ..}`), or lal's "param missing" answer.
pub fn start_relay_push_query(body: &[u8]) -> Result<Query, String> {
    #[derive(serde::Deserialize)]
    struct Body {
        stream_name: Option<String>,
        url: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body {
            stream_name: Some(stream_name),
            url: Some(url),
        }) if !stream_name.is_empty() && !url.is_empty() => {
            Ok(Query::StartRelayPush { stream_name, url })
        }
        _ => Err(error_json(ERROR_CODE_PARAM_MISSING, "param missing")),
    }
}

/// The stream key a pull of `url` named `stream_name` publishes: `app/stream` as given, a bare
/// name under the URL's app, or the URL's own `app/stream` when no name is given (without the
/// `.flv` of an HTTP-FLV URL).
pub fn pull_stream_key(url: &str, stream_name: &str) -> Result<StreamKey, String> {
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, path)| path.split(['?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".flv").unwrap_or(path);
    let app = path.split('/').next().unwrap_or("");
    let name = if stream_name.contains('/') {
        stream_name.to_owned()
    } else if stream_name.is_empty() {
        path.to_owned()
    } else {
        format!("{app}/{stream_name}")
    };
    StreamKey::parse(&name).ok_or_else(|| format!("{url:?}: no app/stream to publish as {name:?}"))
}

/// The key of the stream named `name` (bare or `app/stream`) in any snapshot.
pub fn stream_key_of(snapshots: &[EngineStats], name: &str) -> Option<StreamKey> {
    let groups = merge(snapshots);
    find_group(&groups, name).and_then(|g| StreamKey::parse(g.key))
}

/// The relay in `role` ([`Role::Pull`] or [`Role::Push`]) of the stream `name`: `None` when no
/// stream has that name, `Some(None)` when it has no such relay.
pub fn find_relay<'s>(
    snapshots: &'s [EngineStats],
    name: &str,
    role: Role,
) -> Option<Option<&'s SessionStats>> {
    let groups = merge(snapshots);
    let g = find_group(&groups, name)?;
    let key = g.key;
    Some(
        snapshots
            .iter()
            .flat_map(|s| &s.sessions)
            .find(|s| s.role == role && s.stream == key),
    )
}

/// Every relay in `role` of the stream `name` (bare or `app/stream`).
pub fn relays_of<'s>(
    snapshots: &'s [EngineStats],
    name: &'s str,
    role: Role,
) -> impl Iterator<Item = &'s SessionStats> + 's {
    let key = stream_key_of(snapshots, name).map(|k| k.to_string());
    snapshots
        .iter()
        .flat_map(|s| &s.sessions)
        .filter(move |s| s.role == role && key.as_deref() == Some(s.stream.as_str()))
}

/// lal's envelope with `code` and `desp` and no data, as JSON.
pub fn error_json(code: u32, desp: &str) -> String {
    serde_json::json!({ "error_code": code, "desp": desp, "data": null }).to_string()
}

/// A 200 response with lal's envelope, `code` and `desp` and no data.
pub fn reply(code: u32, desp: &str) -> Response {
    Response::json(200, error_json(code, desp))
}

/// lal's success answer to `start_relay_pull` (and rill's `start_relay_push`).
pub fn pull_started(stream_name: &str, session_id: &str) -> Response {
    let v = serde_json::json!({
        "error_code": ERROR_CODE_SUCC,
        "desp": "succ",
        "data": { "stream_name": stream_name, "session_id": session_id },
    });
    Response::json(200, v.to_string())
}

/// lal's success answer to `stop_relay_pull` (and rill's `stop_relay_push`).
pub fn pull_stopped(session_id: &str) -> Response {
    let v = serde_json::json!({
        "error_code": ERROR_CODE_SUCC,
        "desp": "succ",
        "data": { "session_id": session_id },
    });
    Response::json(200, v.to_string())
}

/// A stream by lal's name (without its app), or by `app/stream`.
fn find_group<'g, 'a>(groups: &'g [Group<'a>], name: &str) -> Option<&'g Group<'a>> {
    groups
        .iter()
        .find(|g| g.stream_name() == name)
        .or_else(|| groups.iter().find(|g| g.key == name))
}

fn param_missing() -> Envelope<()> {
    Envelope {
        error_code: ERROR_CODE_PARAM_MISSING,
        desp: "param missing",
        data: None,
    }
}

fn group_not_found() -> Envelope<()> {
    Envelope {
        error_code: ERROR_CODE_GROUP_NOT_FOUND,
        desp: "group not found",
        data: None,
    }
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
pub(crate) struct LalInfo {
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
pub(crate) fn lal_info_at(started_unix_ms: u64, workers: usize) -> LalInfo {
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
pub(crate) struct JsonGroup<'a> {
    stream_name: &'a str,
    app_name: &'a str,
    audio_codec: &'static str,
    video_codec: &'static str,
    video_width: u32,
    video_height: u32,
    /// Not in lal: frames per second as the publisher told it (0 when not told).
    video_frame_rate: f64,
    #[serde(rename = "pub")]
    publisher: JsonSession,
    subs: Vec<JsonSession>,
    /// The relay pulling the stream from another server (lal's empty session when none).
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
            video_frame_rate: g.stream.and_then(|s| s.frame_rate).unwrap_or(0.0),
            publisher: g.publisher.map(JsonSession::from).unwrap_or_default(),
            subs: g.subs.iter().map(|s| JsonSession::from(*s)).collect(),
            pull: g.pull.map(JsonSession::from).unwrap_or_default(),
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
    /// Not in lal: a relay's other end (the origin of a pull, the target of a push).
    #[serde(skip_serializing_if = "String::is_empty")]
    url: String,
}

impl From<&SessionStats> for JsonSession {
    fn from(s: &SessionStats) -> Self {
        let publish = matches!(s.role, Role::Publish | Role::Pull);
        JsonSession {
            session_id: lal_session_id(s.conn, s.protocol, s.role),
            protocol: lal_protocol(s.protocol, s.tls),
            base_type: lal_base_type(s.role),
            remote_addr: s.peer.to_string(),
            start_time: format_unix_ms(s.start_unix_ms),
            read_bytes_sum: s.bytes_in,
            wrote_bytes_sum: s.bytes_out,
            bitrate_kbits: if publish { s.read_kbits } else { s.write_kbits },
            read_bitrate_kbits: s.read_kbits,
            write_bitrate_kbits: s.write_kbits,
            url: s.relay_url.clone(),
        }
    }
}

/// lal's protocol name of a session: HTTP-FLV and WebSocket-FLV are both `FLV`, likewise `TS`
/// (the container, over TLS or not: logs and `/metrics` tell `HTTPS-FLV` apart); `RTMPS`,
/// `RTSPS` and `HTTPS` over TLS; `FMP4`, which lal does not have.
pub fn lal_protocol(protocol: Protocol, tls: bool) -> &'static str {
    match (protocol, tls) {
        (Protocol::Rtmp, false) => "RTMP",
        (Protocol::Rtmp, true) => "RTMPS",
        (Protocol::HttpFlv | Protocol::WsFlv, _) => "FLV",
        (Protocol::HttpTs | Protocol::WsTs, _) => "TS",
        (Protocol::HttpFmp4 | Protocol::WsFmp4, _) => "FMP4",
        (Protocol::Rtsp, false) => "RTSP",
        (Protocol::Rtsp, true) => "RTSPS",
        (Protocol::Http, false) => "HTTP",
        (Protocol::Http, true) => "HTTPS",
    }
}

/// lal's `base_type` of a session: `PUB` for a publisher, `PULL` and `PUSH` for relays, `SUB`
/// otherwise.
pub fn lal_base_type(role: Role) -> &'static str {
    match role {
        Role::Publish => "PUB",
        Role::Pull => "PULL",
        Role::Push => "PUSH",
        Role::Play | Role::None => "SUB",
    }
}

/// lal's session id: the protocol name, then `PULL` or `PUSH` for a relay, `PUBSUB` for any RTMP
/// server session (publisher or player), `PUB` or `SUB` for the others, then the connection id
/// (`RTMPPUBSUB7`, `FLVSUB9`, `RTMPPULL8`).
pub fn lal_session_id(conn: ConnId, protocol: Protocol, role: Role) -> String {
    let kind = match (protocol, role) {
        (_, Role::Pull) => "PULL",
        (_, Role::Push) => "PUSH",
        (Protocol::Rtmp, _) => "PUBSUB",
        (_, Role::Publish) => "PUB",
        _ => "SUB",
    };
    format!("{}{kind}{conn}", lal_protocol(protocol, false))
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
    use crate::api::test_data::snapshots;

    fn json(request: &Query, snaps: &[EngineStats]) -> serde_json::Value {
        serde_json::from_str(&render_json(request, snaps)).expect("valid JSON")
    }

    #[test]
    fn all_group_has_lal_envelope_and_field_names_and_merges_players_of_every_worker() {
        let v = json(&Query::AllGroups, &snapshots());
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
        let v = json(&Query::Group("cam".into()), &snaps);
        assert_eq!(v["error_code"], 0);
        assert_eq!(v["data"]["stream_name"], "cam");
        assert_eq!(v["data"]["subs"].as_array().map(Vec::len), Some(2));
        let v = json(&Query::Group("live/cam".into()), &snaps);
        assert_eq!(v["data"]["app_name"], "live");

        let v = json(&Query::Group("nope".into()), &snaps);
        assert_eq!(v["error_code"], 1001);
        assert_eq!(v["desp"], "group not found");
        assert!(v["data"].is_null());
        let v = json(&Query::Group(String::new()), &snaps);
        assert_eq!(v["error_code"], 1002);
        assert_eq!(v["desp"], "param missing");
    }

    #[test]
    fn lal_info_names_the_server_and_its_start() {
        let v = json(&Query::LalInfo, &snapshots());
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
    fn times_are_lal_formatted_utc() {
        assert_eq!(format_unix_ms(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_unix_ms(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(format_unix_ms(4_102_444_799_999), "2099-12-31 23:59:59.999");
        // Never panics, even at the end of the range.
        assert!(!format_unix_ms(u64::MAX).is_empty());
    }

    #[test]
    fn kick_session_finds_the_session_on_any_worker_or_gives_lal_error_codes() {
        let snaps = snapshots();
        let kick = |stream: &str, id: &str| {
            let query = Query::KickSession {
                stream_name: stream.into(),
                session_id: id.into(),
            };
            let (json, close) = answer_json(&query, &snaps);
            let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
            (v["error_code"].as_u64(), close)
        };
        let remote = format!("FLVSUB{}", (1u64 << 40) | 16);
        assert_eq!(kick("cam", &remote), (Some(0), Some((1 << 40) | 16)));
        assert_eq!(kick("live/cam", "RTMPPUBSUB1"), (Some(0), Some(1)));
        assert_eq!(kick("cam", "FLVSUB1"), (Some(1003), None), "not a player");
        assert_eq!(
            kick("gone", "FLVSUB2"),
            (Some(1003), None),
            "another stream's"
        );
        assert_eq!(kick("nope", "FLVSUB2"), (Some(1001), None));

        assert_eq!(
            kick_session_query(br#"{"stream_name":"cam","session_id":"FLVSUB2"}"#),
            Ok(Query::KickSession {
                stream_name: "cam".into(),
                session_id: "FLVSUB2".into()
            })
        );
        for bad in [
            &b"{}"[..],
            b"",
            b"[1]",
            br#"{"stream_name":"cam"}"#,
            b"\xff",
        ] {
            let err = kick_session_query(bad).expect_err("refused");
            assert!(err.contains("1002"), "{err}");
        }
    }
}
