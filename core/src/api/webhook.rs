//! Webhooks: lal's HTTP notifications (its `http_notify`), as what to send and where. The
//! engine queues and POSTs them itself ([`super::notify`]).
//!
//! Every event is a `POST` of a JSON object to the URL configured for it, with lal's event
//! names and field names, so a receiver written for lal works unchanged:
//! - `on_server_start`: the server information of `/api/stat/lal_info` ([`server_start_json`]);
//! - `on_update`: `server_id` and the `groups` of `/api/stat/all_group` ([`update_json`]);
//! - `on_pub_start`, `on_pub_stop`, `on_sub_start`, `on_sub_stop`, `on_relay_pull_start`,
//!   `on_relay_pull_stop`: one session ([`SessionInfo`]), its id as the statistics API shows it
//!   (a pull's `url` is the URL it pulls from);
//! - `on_rtmp_connect`: an RTMP client's `connect` ([`RtmpConnectInfo`]);
//! - `on_hls_make_ts`: an HLS segment opened or closed ([`HlsMakeTsInfo`]).

use std::fmt;

use serde::Serialize;

use crate::api::lal::{
    lal_base_type, lal_info_at, lal_protocol, lal_session_id, JsonGroup, SERVER_ID,
};
use crate::api::merge;
use crate::engine::{EngineStats, Protocol, Role, SessionRecord};
use crate::scheme::Scheme;
use crate::stream_key::StreamKey;

/// An event a webhook can be configured for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    /// The server started (once).
    ServerStart,
    /// Every stream, periodically.
    Update,
    /// A publisher started.
    PubStart,
    /// A publisher stopped.
    PubStop,
    /// A player started.
    SubStart,
    /// A player stopped.
    SubStop,
    /// A relay pull started playing from another server.
    RelayPullStart,
    /// A relay pull that had started ended.
    RelayPullStop,
    /// An RTMP client sent `connect`.
    RtmpConnect,
    /// An HLS segment was opened or closed.
    HlsMakeTs,
}

impl WebhookEvent {
    /// Every event, in config order.
    pub const ALL: [WebhookEvent; 10] = [
        WebhookEvent::ServerStart,
        WebhookEvent::Update,
        WebhookEvent::PubStart,
        WebhookEvent::PubStop,
        WebhookEvent::SubStart,
        WebhookEvent::SubStop,
        WebhookEvent::RelayPullStart,
        WebhookEvent::RelayPullStop,
        WebhookEvent::RtmpConnect,
        WebhookEvent::HlsMakeTs,
    ];

    /// lal's name of the event (also its key in the config).
    pub fn name(self) -> &'static str {
        match self {
            WebhookEvent::ServerStart => "on_server_start",
            WebhookEvent::Update => "on_update",
            WebhookEvent::PubStart => "on_pub_start",
            WebhookEvent::PubStop => "on_pub_stop",
            WebhookEvent::SubStart => "on_sub_start",
            WebhookEvent::SubStop => "on_sub_stop",
            WebhookEvent::RelayPullStart => "on_relay_pull_start",
            WebhookEvent::RelayPullStop => "on_relay_pull_stop",
            WebhookEvent::RtmpConnect => "on_rtmp_connect",
            WebhookEvent::HlsMakeTs => "on_hls_make_ts",
        }
    }

    /// The event of a session in `role` starting (`start`) or stopping; `None` for
    /// [`Role::None`].
    pub fn of_session(role: Role, start: bool) -> Option<WebhookEvent> {
        Some(match (role, start) {
            (Role::Publish, true) => WebhookEvent::PubStart,
            (Role::Publish, false) => WebhookEvent::PubStop,
            (Role::Play, true) => WebhookEvent::SubStart,
            (Role::Play, false) => WebhookEvent::SubStop,
            (Role::Pull, true) => WebhookEvent::RelayPullStart,
            (Role::Pull, false) => WebhookEvent::RelayPullStop,
            (Role::None | Role::Push, _) => return None,
        })
    }
}

/// A webhook receiver's address: `http[s]://host[:port][/path]` (port 80, or 443 for HTTPS, and
/// path `/` when left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl {
    /// [`Scheme::Http`] or [`Scheme::Https`].
    pub scheme: Scheme,
    /// Host name or IP address (an IPv6 address without its brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl WebhookUrl {
    /// Parses and checks a receiver URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<WebhookUrl, String> {
        let bad = |why: &str| Err(format!("{url:?}: {why}"));
        if url.bytes().any(|b| !b.is_ascii_graphic()) {
            return bad("spaces, control or non-ASCII characters are not allowed");
        }
        let Some((scheme, rest)) =
            Scheme::split(url).filter(|(s, _)| matches!(s, Scheme::Http | Scheme::Https))
        else {
            return bad("expected http[s]://host:port/path");
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains('#') {
            return bad("a fragment (#) is not allowed");
        }
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if authority.contains('@') {
            return bad("user information is not supported");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return bad("unclosed [ in the host");
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return bad("not an IPv6 address between [ and ]");
            }
            match after {
                "" => (host, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => return bad("expected :port after the IPv6 address"),
                },
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let host_ok = !host.is_empty()
            && (host.contains(':')
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'));
        if !host_ok {
            return bad("missing or invalid host");
        }
        let port = match port {
            None => scheme.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return bad("invalid port"),
            },
        };
        Ok(WebhookUrl {
            scheme,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// `host:port` as the `Host` header and `connect` want it (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.path)
    }
}

/// The body of a session event (lal's common session event fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// The server's id.
    pub server_id: &'static str,
    /// The session's id as the statistics API shows it (`RTMPPUBSUB7`, `FLVSUB9`).
    pub session_id: String,
    /// lal's protocol name (`RTMP`, `FLV`, `TS`, `RTSP`).
    pub protocol: &'static str,
    /// `PUB` or `SUB`.
    pub base_type: &'static str,
    /// The peer's address.
    pub remote_addr: String,
    /// The stream's URL on this server (rebuilt from the listener's address and the stream).
    pub url: String,
    /// The app: the stream key's part before `/`.
    pub app_name: String,
    /// The stream name: the stream key's part after `/`.
    pub stream_name: String,
    /// The URL's query (rill sends it empty: the engine does not keep it).
    pub url_param: String,
    /// Whether the stream has a publisher (after this event).
    pub has_in_session: bool,
    /// Whether the stream has players (after this event).
    pub has_out_session: bool,
    /// Bytes received from the peer so far.
    pub read_bytes_sum: u64,
    /// Bytes sent to the peer so far.
    pub wrote_bytes_sum: u64,
}

impl SessionInfo {
    /// The event body for `record` (its role, protocol and stream say which session), with
    /// `listen_addr` the address of the listener it came in on, for the URL. The
    /// `has_*_session` flags start false: the caller knows the stream's other sessions.
    pub fn new(record: &SessionRecord, listen_addr: &str) -> SessionInfo {
        let key = StreamKey::parse(&record.stream);
        let (app, stream) = key
            .as_ref()
            .map_or(("", record.stream.as_str()), |k| (k.app(), k.stream()));
        SessionInfo {
            server_id: SERVER_ID,
            session_id: lal_session_id(record.conn, record.protocol, record.role),
            protocol: lal_protocol(record.protocol, record.tls),
            base_type: lal_base_type(record.role),
            remote_addr: record.peer.to_string(),
            url: stream_url(record.protocol, listen_addr, &record.stream),
            app_name: app.to_owned(),
            stream_name: stream.to_owned(),
            url_param: String::new(),
            has_in_session: false,
            has_out_session: false,
            read_bytes_sum: record.bytes_in,
            wrote_bytes_sum: record.bytes_out,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        // Plain strings, numbers and booleans: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// The URL a session of `protocol` uses for the stream `key` on the listener at `listen_addr`.
pub fn stream_url(protocol: Protocol, listen_addr: &str, key: &str) -> String {
    match protocol {
        Protocol::Rtmp => format!("rtmp://{listen_addr}/{key}"),
        Protocol::HttpFlv => format!("http://{listen_addr}/{key}.flv"),
        Protocol::WsFlv => format!("ws://{listen_addr}/{key}.flv"),
        Protocol::HttpTs => format!("http://{listen_addr}/{key}.ts"),
        Protocol::WsTs => format!("ws://{listen_addr}/{key}.ts"),
        Protocol::HttpFmp4 => format!("http://{listen_addr}/{key}.mp4"),
        Protocol::WsFmp4 => format!("ws://{listen_addr}/{key}.mp4"),
        Protocol::Http => format!("http://{listen_addr}/{key}"),
        Protocol::Rtsp => format!("rtsp://{listen_addr}/{key}"),
    }
}

/// Body of `on_update`.
#[derive(Serialize)]
struct UpdateInfo<'a> {
    server_id: &'static str,
    groups: Vec<JsonGroup<'a>>,
}

/// The `on_update` body: `server_id` and every stream of every worker's snapshot, as
/// `/api/stat/all_group` lists them.
pub fn update_json(snapshots: &[EngineStats]) -> String {
    let groups = merge(snapshots).iter().map(JsonGroup::from).collect();
    let info = UpdateInfo {
        server_id: SERVER_ID,
        groups,
    };
    serde_json::to_string(&info).unwrap_or_else(|_| "{}".to_owned())
}

/// The `on_rtmp_connect` body: lal's fields (`flashVer` and `tcUrl` spelled as in RTMP).
#[derive(Clone, Debug, Serialize)]
pub struct RtmpConnectInfo {
    /// The server's id.
    pub server_id: &'static str,
    /// The connection's session id (`RTMPPUBSUB7`).
    pub session_id: String,
    /// The peer's address.
    pub remote_addr: String,
    /// The app the client connects to.
    pub app: String,
    /// The client's `flashVer`.
    #[serde(rename = "flashVer")]
    pub flash_ver: String,
    /// The client's `tcUrl`.
    #[serde(rename = "tcUrl")]
    pub tc_url: String,
}

/// The `on_hls_make_ts` body: lal's fields, sent when a segment is opened (`event` `open`,
/// duration 0) and when it is closed (`close`, with its duration in seconds).
#[derive(Clone, Debug, Serialize)]
pub struct HlsMakeTsInfo {
    /// The server's id.
    pub server_id: &'static str,
    /// `open` or `close`.
    pub event: &'static str,
    /// The stream name (without its app, as lal names streams).
    pub stream_name: String,
    /// The server's working directory (the files' paths are relative to it when relative).
    pub cwd: String,
    /// The segment's path.
    pub ts_file: String,
    /// The live playlist's path.
    pub live_m3u8_file: String,
    /// The record playlist's path (empty when none is kept).
    pub record_m3u8_file: String,
    /// The segment's sequence number.
    pub id: u64,
    /// The segment's duration in seconds (0 when it opens).
    pub duration: f64,
}

/// The JSON body of an event struct (plain fields: serializing cannot fail).
pub fn to_json<T: Serialize>(info: &T) -> String {
    serde_json::to_string(info).unwrap_or_else(|_| "{}".to_owned())
}

/// The `on_server_start` body: `/api/stat/lal_info`'s fields for a server of `workers` workers
/// started at `started_unix_ms`.
pub fn server_start_json(started_unix_ms: u64, workers: usize) -> String {
    serde_json::to_string(&lal_info_at(started_unix_ms, workers))
        .unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{SessionStats, StreamStats};
    use crate::media::Codec;
    use serde_json::Value;

    fn record(conn: u64, protocol: Protocol, role: Role) -> SessionRecord {
        SessionRecord {
            conn,
            peer: "127.0.0.1:50000".parse().expect("addr"),
            protocol,
            tls: false,
            role,
            stream: "live/hook".into(),
            bytes_in: 1234,
            bytes_out: 5678,
            duration_ms: 10,
            reason: String::new(),
        }
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn session_events_carry_lal_field_names_and_the_api_session_ids() {
        let mut info =
            SessionInfo::new(&record(7, Protocol::Rtmp, Role::Publish), "127.0.0.1:1935");
        info.has_in_session = true;
        let v: Value = serde_json::from_str(&info.to_json()).expect("JSON");
        let mut expected = vec![
            "server_id",
            "session_id",
            "protocol",
            "base_type",
            "remote_addr",
            "url",
            "app_name",
            "stream_name",
            "url_param",
            "has_in_session",
            "has_out_session",
            "read_bytes_sum",
            "wrote_bytes_sum",
        ];
        expected.sort_unstable();
        assert_eq!(keys(&v), expected);
        assert_eq!(v["server_id"], "1");
        assert_eq!(v["session_id"], "RTMPPUBSUB7");
        assert_eq!(v["protocol"], "RTMP");
        assert_eq!(v["base_type"], "PUB");
        assert_eq!(v["remote_addr"], "127.0.0.1:50000");
        assert_eq!(v["url"], "rtmp://127.0.0.1:1935/live/hook");
        assert_eq!(v["app_name"], "live");
        assert_eq!(v["stream_name"], "hook");
        assert_eq!(v["url_param"], "");
        assert_eq!(v["has_in_session"], true);
        assert_eq!(v["has_out_session"], false);
        assert_eq!(v["read_bytes_sum"], 1234);
        assert_eq!(v["wrote_bytes_sum"], 5678);

        let sub = SessionInfo::new(&record(9, Protocol::WsFlv, Role::Play), "0.0.0.0:8080");
        assert_eq!(sub.session_id, "FLVSUB9");
        assert_eq!(sub.protocol, "FLV");
        assert_eq!(sub.base_type, "SUB");
        assert_eq!(sub.url, "ws://0.0.0.0:8080/live/hook.flv");
        let rtsp = SessionInfo::new(&record(3, Protocol::Rtsp, Role::Publish), "h:5544");
        assert_eq!(rtsp.session_id, "RTSPPUB3");
        assert_eq!(rtsp.url, "rtsp://h:5544/live/hook");
    }

    #[test]
    fn session_events_are_named_by_role() {
        use WebhookEvent as E;
        assert_eq!(E::of_session(Role::Publish, true), Some(E::PubStart));
        assert_eq!(E::of_session(Role::Publish, false), Some(E::PubStop));
        assert_eq!(E::of_session(Role::Play, true), Some(E::SubStart));
        assert_eq!(E::of_session(Role::Play, false), Some(E::SubStop));
        assert_eq!(E::of_session(Role::None, true), None);
        assert_eq!(E::of_session(Role::Pull, true), Some(E::RelayPullStart));
        assert_eq!(E::of_session(Role::Pull, false), Some(E::RelayPullStop));
        assert_eq!(E::of_session(Role::Push, true), None);
        let names: Vec<&str> = E::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            [
                "on_server_start",
                "on_update",
                "on_pub_start",
                "on_pub_stop",
                "on_sub_start",
                "on_sub_stop",
                "on_relay_pull_start",
                "on_relay_pull_stop",
                "on_rtmp_connect",
                "on_hls_make_ts"
            ]
        );
    }

    #[test]
    fn update_carries_the_all_group_groups() {
        let snap = EngineStats {
            streams: vec![StreamStats {
                key: "live/hook".into(),
                video_codec: Some(Codec::H264),
                audio_codec: Some(Codec::Aac),
                width: 640,
                height: 360,
                frame_rate: None,
            }],
            sessions: vec![SessionStats {
                conn: 4,
                protocol: Protocol::Rtmp,
                tls: false,
                role: Role::Publish,
                stream: "live/hook".into(),
                peer: "127.0.0.1:1".parse().expect("addr"),
                start_unix_ms: 0,
                bytes_in: 10,
                bytes_out: 20,
                read_kbits: 1,
                write_kbits: 2,
                relay_url: String::new(),
            }],
            ..EngineStats::default()
        };
        let v: Value = serde_json::from_str(&update_json(&[snap])).expect("JSON");
        assert_eq!(keys(&v), ["groups", "server_id"]);
        let g = &v["groups"][0];
        assert_eq!(g["stream_name"], "hook");
        assert_eq!(g["app_name"], "live");
        assert_eq!(g["video_codec"], "H264");
        assert_eq!(g["pub"]["session_id"], "RTMPPUBSUB4");
        assert!(g["subs"].is_array() && g["pull"].is_object(), "{g}");
        let empty: Value = serde_json::from_str(&update_json(&[])).expect("JSON");
        assert_eq!(empty["groups"].as_array().map(Vec::len), Some(0));
    }

    #[test]
    fn server_start_carries_the_lal_info_fields() {
        let v: Value =
            serde_json::from_str(&server_start_json(1_700_000_000_000, 3)).expect("JSON");
        assert_eq!(
            keys(&v),
            [
                "api_version",
                "bin_info",
                "lal_version",
                "notify_version",
                "server_id",
                "start_time"
            ]
        );
        assert_eq!(v["server_id"], "1");
        assert_eq!(v["notify_version"], crate::api::lal::LAL_NOTIFY_VERSION);
        assert_eq!(v["start_time"], "2023-11-14 22:13:20.000");
        assert!(v["bin_info"]
            .as_str()
            .is_some_and(|s| s.contains("3 workers")));
    }

    #[test]
    fn urls_parse_with_defaults() {
        let u = WebhookUrl::parse("http://127.0.0.1:10101/on_pub_start").expect("valid");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 10101, "/on_pub_start")
        );
        assert_eq!(u.to_string(), "http://127.0.0.1:10101/on_pub_start");
        let u = WebhookUrl::parse("HTTP://hooks.example").expect("valid");
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = WebhookUrl::parse("http://h:81?x=1").expect("valid");
        assert_eq!(u.path, "/?x=1");
        let u = WebhookUrl::parse("http://[::1]:9000/a/b?c=d").expect("valid");
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.authority(), "[::1]:9000");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        let https = WebhookUrl::parse("https://h/x").expect("https is taken");
        assert_eq!((https.scheme, https.port), (Scheme::Https, 443));
        assert_eq!(https.to_string(), "https://h:443/x");
        for bad in [
            "",
            "h:80/x",
            "ftp://h/x",
            "http://",
            "http://:80/x",
            "http://h:0/x",
            "http://h:65536/x",
            "http://h:/x",
            "http://h:8o/x",
            "http://h:+80/x",
            "http://user@h/x",
            "http://h/a b",
            "http://h/x#frag",
            "http://[::1/x",
            "http://[nope]:1/x",
            "http://[::1]x/",
            "http://h\u{e9}/x",
            "http://h/\r\nX: y",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
