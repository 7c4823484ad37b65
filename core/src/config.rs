//! The server's configuration: one TOML document, every key optional, unknown keys refused.
//!
//! [`DEFAULT_CONFIG`] is the complete default configuration with comments (what
//! `rill --print-config` prints); [`Config::default`] is the same values, and a test keeps the
//! two in step. Both runtimes read the same file and turn it into an [`EngineConfig`].

use serde::Deserialize;

use crate::admission::ConnectionLimits;
use crate::api::guard::ApiGuard;
use crate::api::webhook::{WebhookEvent, WebhookUrl};
use crate::auth::{Access, SimpleAuth};
use crate::engine::{
    CallbackConfig, ClusterConfig, ClusterRole, EngineConfig, PublishConflict, PushRule,
    RecordConfig, RedisTarget, RelayConfig, RelayUrl, RoomKeyConfig, SilentAudioConfig,
    WebhookConfig,
};
use crate::hls::{Cleanup, HlsConfig, SegmentFormat};
use crate::http::HttpLimits;
use crate::hub::HubConfig;
use crate::limits::Limits;
use crate::rtmp::server::ServerConfig;
use crate::rtsp::server::{AuthScheme, Credentials, ServerConfig as RtspServerConfig};
use crate::rtsp::RtspLimits;
use crate::scheme::TlsPolicy;
use crate::webui::{port_of, Listening, UiConfig};

/// The complete default configuration, with comments.
pub const DEFAULT_CONFIG: &str = r#"# rill configuration. Every key is optional; these are the defaults.
# Unknown keys are an error, so a typo cannot silently fall back to a default.

# Worker threads, each with its own event loop. 0 = one per CPU core.
workers = 0

[rtmp]
enable = true
addr = "0.0.0.0:1935"
# Chunk size rill sends with (bytes). Larger chunks mean fewer headers and syscalls.
chunk_size = 4096
# Acknowledgement window and peer bandwidth announced to clients (bytes).
window_ack_size = 2500000
peer_bandwidth = 2500000

[http]
# HTTP-FLV (/{app}/{stream}.flv) and WebSocket-FLV (same path, Upgrade: websocket);
# HTTP-TS and WebSocket-TS (/{app}/{stream}.ts); HLS (see [hls]).
enable = true
addr = "0.0.0.0:8080"
# The web UI at / (server, streams, a stream page with an in-page player, play URLs and kick
# buttons; files built into the binary) and /api/server, which tells it the ports listening.
ui = true

[rtsp]
# RTSP publish (ANNOUNCE/RECORD) and play (DESCRIBE/PLAY) of rtsp://host:port/{app}/{stream},
# media interleaved on the TCP connection or over UDP.
enable = true
addr = "0.0.0.0:5544"
# Server port pairs for UDP transport: RTP on an even port, RTCP on the next one.
udp_port_min = 20000
udp_port_max = 20999
# A session with no request and no packet from the client for this long (ms) ends.
session_timeout_ms = 60000
# Authentication challenge: "digest" (MD5) or "basic" (password in clear: trusted networks only).
auth = "digest"
realm = "rill"
# Credentials required to publish (ANNOUNCE) and to play (DESCRIBE); an empty user = no check.
publish_user = ""
publish_password = ""
play_user = ""
play_password = ""

[auth]
# lal's "simple auth": a publisher or player adds ?lal_secret=<hex> to its URL, the lowercase
# hex MD5 of `key` followed by the stream name (the part after the app, without the query):
# rtmp://host/live/test?lal_secret=... with secret md5(key + "test"). Each protocol and
# direction below is checked only when switched on; any switch on needs a key.
# RTSP credentials in [rtsp] apply in addition.
key = ""
# A secret accepted for every stream; empty = none. Anyone who knows it can publish and play.
dangerous_secret = ""
publish_rtmp = false
publish_rtsp = false
play_rtmp = false
# Also WebSocket-FLV, and HTTP-fMP4 and WebSocket-fMP4 (/{app}/{stream}.mp4).
play_http_flv = false
# Also WebSocket-TS.
play_http_ts = false
# The .m3u8 playlists (live and record); segments are not checked.
play_hls = false
play_rtsp = false
# HTTP callback that can refuse: before a publish or play is accepted, rill POSTs JSON
# {action ("publish"|"play"), protocol, app, stream, query, remote_addr, session_id} to this
# http:// or https:// URL and holds the request until the answer: 2xx allows, anything else
# refuses (RTMP NetStream.Publish.Unauthorized / Play.Failed, HTTP 403, RTSP 403). Empty = off.
# An allowed HLS playlist lets the same address fetch it again for 30 s without asking.
http_callback = ""
# Longest wait for the answer (ms), connecting included.
callback_timeout_ms = 3000
# No answer in time, or the receiver unreachable: "deny" or "allow".
callback_on_error = "deny"
# Which publishes and plays ask the callback (the switch names above).
callback_for = ["publish_rtmp", "publish_rtsp", "play_rtmp", "play_http_flv", "play_http_ts", "play_hls", "play_rtsp"]

[api]
# The API (and the web UI) on its own listener, lal's :8083 style, e.g. "127.0.0.1:8083";
# then the HTTP listener serves media and HLS only. Empty = on the HTTP listener.
addr = ""
# Protection of the HTTP API. With a token (or a JWT secret) set, every control endpoint
# (/api/ctrl/*, /control/*) needs "Authorization: Bearer <token>", else 401.
token = ""
# livego's jwt.secret: a JWT signed with HS256 under it, in ?jwt= or as the bearer, is
# accepted too (exp and nbf checked when present). Empty = no JWT.
jwt_secret = ""
# Also protect the statistics (/api/stat/*, /api/server, /metrics, /stat/livestat).
protect_stats = false
# livego's room keys (/control/get|reset|delete?room=): when on, a publisher publishes to
# {app}/{key} (RTMP or RTSP) and the stream is {app}/{room}, which players play; a name that is no
# room's key is refused.
room_keys = false
# Where the keys are kept across restarts; empty = room_keys.json next to the config file
# (in the working directory without one).
room_keys_file = ""

[hls]
# HLS of every stream: /{app}/{stream}.m3u8 (live), /{app}/{stream}/record.m3u8 (record),
# segments /{app}/{stream}/{n}.ts (or {n}.m4s, see segment_format). HLS and LL-HLS make
# every stream's MPEG-TS or fMP4 muxer run; with them off a stream is muxed only while an
# HTTP-TS/WS-TS or fMP4 player, or a TS recording, consumes it (rill_muxed_frames_total).
enable = true
# Segment container: "ts" (MPEG-TS, HLS version 3) or "fmp4" (fragmented MP4 segments with
# an EXT-X-MAP init segment /{app}/{stream}/init{n}.mp4, HLS version 7: HEVC in Safari).
segment_format = "ts"
# Segment duration (ms): a segment ends at the first key frame after it (audio-only
# streams: within half a second after it), or at an earlier key frame when waiting would
# outgrow the playlists' target duration (fixed when the first segment closes).
fragment_ms = 2000
# Segments in the live playlist.
playlist_len = 5
# Directory where segments and playlists are also written as files; empty = memory only.
# Created at start; if it cannot be written the server does not start (exit status 2).
out_path = ""
# When those files are removed: "never", "stream_end" (keep_after_end_ms after the stream
# ends, or when the memory budget forgets it) or
# "window" (as soon as a segment leaves the live playlist; no record playlist file).
cleanup = "stream_end"
# Bytes of older segments kept in memory per stream for the record playlist served over HTTP.
record_max_bytes = 67108864
# Memory for HLS segments over every stream (bytes, per worker; workers share the bytes):
# live windows, record segments and ended streams. Past it, ended streams are forgotten
# first, then the oldest record segments of the stream holding the most; live windows are
# never cut. /metrics shows it as rill_hls_memory_bytes{use="live|record|ended|ll"}.
memory_max_bytes = 268435456
# How long an ended stream's playlists and segments (its record playlist too) stay (ms).
keep_after_end_ms = 60000
# Low-Latency HLS of every stream (fMP4 parts, blocking playlist reload, delta updates):
# /{app}/{stream}/llhls.m3u8. Segments are cut as above (fragment_ms).
ll_enable = true
# true: build a stream's Low-Latency window only while it is asked for (it saves about
# 2.5 MB per stream at 1 Mbit/s that nobody watches as LL-HLS): the first request waits for
# its first segment (one to two key frame intervals), and the window is dropped 30 s after
# the last request. Not the default yet: hls.js sometimes stalls once right after such a
# first answer. false: every stream has its window from its start.
ll_on_demand = false
# Part target duration (ms); players stay about three parts behind the live edge.
ll_part_ms = 300
# Complete segments in the Low-Latency playlist (delta updates skip those older than six
# target durations).
ll_playlist_len = 10

[hub]
# GOPs cached per stream so a new player starts at once (0 = wait for the next key frame).
gop_num = 1
# Bounds of that cache.
gop_max_frames = 2048
gop_max_bytes = 33554432
# A player whose queue passes the soft bound loses whole frames until the next key frame;
# past the hard bound it is disconnected. The publisher and other players never notice.
player_queue_soft_bytes = 4194304
player_queue_hard_bytes = 16777216
# The same bounds in media time (ms): a player with more than player_lag_soft_ms queued skips
# to the newest key frame (logged, counted in /metrics as rill_player_skips_total); one that
# took nothing for player_lag_hard_ms of media is disconnected.
player_lag_soft_ms = 5000
player_lag_hard_ms = 20000
# A player asking for a stream that is not live waits this long (ms) before "not found".
play_wait_timeout_ms = 10000
# A publisher that comes back within this time (ms) continues its stream; players stay.
publisher_grace_ms = 5000
# Media for players is held up to write_merge_ms (about one video frame) and written in one
# go: one write per player per window instead of one per frame, which costs far less CPU (a
# third to a half less at 1,000 to 2,000 players) for up to that much extra delay. The window
# grows with the players on a worker and is whole from write_merge_players on: no wait below
# 25 players, 4 ms at 100, 20 ms at 500, 40 ms from 1,000. A new player's start is never held.
# low_latency = true (or write_merge_ms = 0) writes every frame to every player at once.
low_latency = false
write_merge_ms = 40
write_merge_players = 1000
# A publisher for a stream that already has a live one: "reject" it (it gets a protocol
# error), or "kick" the old one (players stay and go on from the newcomer's next key frame).
publish_conflict = "reject"
# Give streams published without audio a silent AAC track (AAC-LC, 48 kHz, mono), for players
# that stall on video alone. It starts once the video has run silent_audio_wait_ms (of its own
# timestamps) past its first frame with no audio, and stops if the publisher's audio arrives.
silent_audio = false
silent_audio_wait_ms = 1000
# HTTP-FLV / WS-FLV players get Enhanced RTMP tags (HEVC as FourCC hvc1; ffmpeg 6.1+, current
# flv.js/mpegts.js) when true; legacy tags (HEVC as codec id 12; ffmpeg 5.1, older players)
# when false. A request chooses with ?enhanced=1 or ?enhanced=0. RTMP players get Enhanced tags
# when their connect lists fourCcList.
flv_enhanced = false

[limits]
# Largest chunk size a peer may announce, and largest RTMP message (bytes).
max_chunk_size = 16777216
max_message_len = 8388608
# Chunk streams per connection, and bytes of partial messages buffered per connection.
max_chunk_streams = 64
max_pending_bytes = 33554432
# AMF nesting depth and element count.
max_amf_depth = 32
max_amf_elements = 65536
# HTTP request head size, header count, request body size (bytes / count).
http_max_head_bytes = 8192
http_max_headers = 64
http_max_body_bytes = 1048576
# Largest WebSocket frame a player may send (bytes).
ws_max_frame = 65536
# RTSP message line length, header count, body size (Content-Length, e.g. an ANNOUNCE's SDP).
rtsp_max_line_bytes = 4096
rtsp_max_headers = 64
rtsp_max_body_bytes = 65536
# Deadlines (ms): RTMP handshake + connect, HTTP request head, RTSP first request (then
# [rtsp] session_timeout_ms applies), idle publisher, idle other.
handshake_timeout_ms = 10000
http_head_timeout_ms = 10000
rtsp_first_request_timeout_ms = 10000
publish_idle_timeout_ms = 30000
idle_timeout_ms = 60000
# TCP connections open at once on all listeners together, and from one client (an IPv4
# address, or an IPv6 /64 prefix).
# 0 = unlimited. Past either limit a new connection is closed at once (HTTP gets a 503),
# before the server allocates anything for it.
max_connections = 20000
max_connections_per_ip = 1000

[record]
# Recording of every published stream (RTMP or RTSP input), one file per publish:
# {out_path}/{app}/{stream}-{unix_ms}.flv and/or .ts, where unix_ms is when the publish began.
# FLV (timestamps from 0) and one long MPEG-TS file (the bytes HTTP-TS players get).
# out_path is created at start when recording is on; if it cannot be written the server
# does not start (exit status 2).
flv = false
ts = false
out_path = "record"

[dump]
# Debug dumps: record every inbound byte of each connection with its time (format in
# docs/dump-format.md; replay with `rill-replay FILE...`). Off by default.
enable = false
dir = "dumps"
# Only keep dumps of connections whose session is about this stream ("app/stream"); empty = all.
stream = ""
# Size cap of one dump file (bytes); recording of that connection stops past it.
max_bytes = 67108864

[webhook]
# lal's HTTP notifications (its [http_notify]): each event is POSTed as JSON, with lal's event
# names and fields, to the URL given for it; an empty URL = that event is not sent.
# http://host:port/path or https:// (certificate checked as [tls] no_verify says). Sending never holds up media: each worker queues
# its events (dropped, counted and logged when the queue is full) and POSTs them over its own
# connections, giving each receiver 2 s to connect and 2 s to answer.
enable = false
# Seconds between two on_update events (every stream, as /api/stat/all_group lists them).
update_interval_sec = 5
# Once at start, with /api/stat/lal_info's fields.
on_server_start = ""
on_update = ""
# A publisher (RTMP, RTSP) starts / stops.
on_pub_start = ""
on_pub_stop = ""
# A player (RTMP, HTTP-FLV, WebSocket-FLV, HTTP-TS, WebSocket-TS, RTSP) starts / stops.
on_sub_start = ""
on_sub_stop = ""
# A relay pull (edge, API) started playing from its origin / ended; `url` is the pulled URL.
on_relay_pull_start = ""
on_relay_pull_stop = ""
# An RTMP client sent `connect` (app, flashVer, tcUrl).
on_rtmp_connect = ""
# An HLS segment was opened ("event": "open") or closed ("close", with its duration).
on_hls_make_ts = ""

[tls]
# PEM certificate chain and private key. The TLS listeners below start only when both are set;
# `rill cert --self-signed DIR` writes a development pair. TLS 1.2 and 1.3 only.
cert = ""
key = ""
# Outbound TLS (rtmps:// relays, https:// webhooks) verifies the peer's certificate against the
# system's roots (/etc/ssl/certs). Targets listed here ("host" or "host:port", as in the URL)
# are not verified: for self-signed origins only; each is warned about at start.
no_verify = []
# More certificates, chosen by the name the client asks for (SNI); the one above serves every
# other name. Reloaded with it on SIGHUP or when a file changes (a pair that fails to load is
# refused with a log line and the old ones stay). Any number of these:
# [[tls.sni]]
# names = ["live.example.org"]
# cert = "/etc/rill/live.pem"
# key = "/etc/rill/live.key"

[rtmps]
# RTMP over TLS (rtmps://host:port/{app}/{stream}).
enable = true
addr = "0.0.0.0:4935"

[https]
# Everything of [http] over TLS, on the same paths (ALPN http/1.1).
enable = true
addr = "0.0.0.0:4433"

[rtsps]
# RTSP over TLS, media interleaved on the TLS connection.
enable = true
addr = "0.0.0.0:5322"

[relay.pull]
# Edge: a player asking for a stream that is not live here makes rill play
# {origin}/{app}/{stream} from the first origin that answers (the next one on failure; retried
# with backoff, 1 s doubling to 30 s less up to a fifth at random, while players wait for
# hub.play_wait_timeout_ms). One worker pulls a stream for every worker's players. An origin
# that sends no media for 5 s is given up and retried; players stay for
# hub.publisher_grace_ms meanwhile. The scheme picks the protocol:
#   rtmp://host[:port][/path]   RTMP play (port 1935); rtmps:// over TLS (port 443)
#   http://host[:port][/path]   HTTP-FLV, GET {path}/{app}/{stream}.flv (port 80); https://
#     over TLS (port 443)
#   rtsp://[user:pass@]host[:port][/path][?rtsp_mode=0|1]   RTSP play (port 554); a 401 is
#     answered with Digest or Basic from the URL's credentials; media over TCP interleaved, or
#     UDP with rtsp_mode=1 (or rtsp_transport=udp); rtsps:// over TLS (port 322, TCP only).
# TLS origins are verified against the system roots unless [tls] no_verify lists them.
# Empty = no pull on demand (pulls by the API, /api/ctrl/start_relay_pull and /control/pull,
# work without it).
origins = []
# The pull stops this long (ms) after its last player left. A local publisher of the stream
# always wins: the pull stops.
idle_stop_ms = 10000

# Restream: every stream published on `app` ("*" = every app) is published to {url}/{stream}
# with the publisher's query appended, while its publisher is live: rtmp:// (RTMP publish,
# with onMetaData) or rtsp:// (ANNOUNCE/RECORD; credentials and rtsp_mode as for pulls; starts
# once the stream's tracks are known). HTTP-FLV is pull only. A target that is down is
# retried with backoff; a slow one never slows the publisher. Pulled and relayed streams (their
# query carries rill_relay=1) are not pushed; a push to this server's own RTMP address is
# refused. More pushes by the API: /api/ctrl/start_relay_push, /control/push. Any number of these:
# [[relay.push]]
# app = "live"
# urls = ["rtmp://a.example/live", "rtsp://b.example:8554/cams", "rtmps://c.example/app"]

[cluster]
# Origins and edges that find each other through Redis (empty = no cluster). An origin claims
# each stream published on it in Redis (rill:stream:{app}/{stream}, a lease of lease_ms kept
# alive while it publishes); a second publisher of the stream on another origin is closed
# (or takes over, with hub.publish_conflict = "kick"). An edge asked for a stream not live
# here looks its origin up and pulls it from the origin's advertised URL, again when the
# origin changes; players wait hub.play_wait_timeout_ms for a stream nobody publishes.
# rill starts and serves local streams while Redis is unreachable, retrying every few seconds.
# redis://[[user]:password@]host[:port][/db]
redis = ""
# This node's name in the registry; empty = the advertised URL.
node_id = ""
# How other nodes pull from this one: rtmp://host:port or http://host:port (HTTP-FLV); empty =
# rtmp://127.0.0.1:{rtmp port}.
advertise = ""
# origin (registers its streams), edge (pulls from origins) or both.
role = "origin"
# Lease of registry keys (ms); a dead origin's streams move after at most this long.
lease_ms = 3000

[log]
# tracing filter (RUST_LOG overrides): error, warn, info, debug, trace, or per module.
level = "info"
# "text" (one readable line per event) or "json" (one JSON object per line: timestamp,
# level, fields with the message, for log collectors).
format = "text"
"#;

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Worker threads (0 = one per core).
    pub workers: usize,
    /// RTMP listener.
    pub rtmp: RtmpSection,
    /// HTTP listener.
    pub http: HttpSection,
    /// RTSP listener.
    pub rtsp: RtspSection,
    /// Publish and play authorization (lal's simple auth, the HTTP callback).
    pub auth: AuthSection,
    /// API protection.
    pub api: ApiSection,
    /// Stream hub.
    pub hub: HubSection,
    /// HLS.
    pub hls: HlsSection,
    /// Protocol limits and deadlines.
    pub limits: LimitsSection,
    /// Recording.
    pub record: RecordSection,
    /// Debug dumps.
    pub dump: DumpSection,
    /// Webhooks (lal's HTTP notifications).
    pub webhook: WebhookSection,
    /// TLS certificate and key.
    pub tls: TlsSection,
    /// RTMPS listener.
    pub rtmps: RtmpsSection,
    /// HTTPS listener.
    pub https: HttpsSection,
    /// RTSPS listener.
    pub rtsps: RtspsSection,
    /// Relays to and from other servers.
    pub relay: RelaySection,
    /// Origins and edges through Redis.
    pub cluster: ClusterSection,
    /// Logging.
    pub log: LogSection,
}

/// `[tls]`: the certificate and key of every TLS listener (PEM paths; empty = no TLS).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Certificate chain (PEM).
    pub cert: String,
    /// Private key (PEM).
    pub key: String,
    /// Outbound targets (`host` or `host:port`) whose certificates are not verified.
    pub no_verify: Vec<String>,
    /// More certificates, each chosen when a client asks for one of its names (SNI).
    pub sni: Vec<TlsSniSection>,
}

/// One `[[tls.sni]]`: a certificate and key served to clients asking for one of `names`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSniSection {
    /// Server names (exact, case-insensitive) this pair is for.
    pub names: Vec<String>,
    /// Certificate chain (PEM).
    pub cert: String,
    /// Private key (PEM).
    pub key: String,
}

impl TlsSection {
    /// Whether a certificate and key are configured (the TLS listeners start only then).
    pub fn configured(&self) -> bool {
        !self.cert.is_empty() && !self.key.is_empty()
    }
}

/// A TLS listener's section: on only when `[tls]` is configured too.
macro_rules! tls_listener_section {
    ($name:ident, $section:literal, $addr:literal) => {
        #[doc = concat!("`[", $section, "]`: a TLS listener, on only when `[tls]` is configured.")]
        #[derive(Clone, Debug, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            /// Listen (once a certificate is configured).
            pub enable: bool,
            /// Listen address.
            pub addr: String,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    enable: true,
                    addr: $addr.into(),
                }
            }
        }
    };
}

tls_listener_section!(RtmpsSection, "rtmps", "0.0.0.0:4935");
tls_listener_section!(HttpsSection, "https", "0.0.0.0:4433");
tls_listener_section!(RtspsSection, "rtsps", "0.0.0.0:5322");

/// `[cluster]`: the registry of origins and edges in Redis.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// `redis://host[:port][/db]`; empty = no cluster.
    pub redis: String,
    /// This node's name; empty = the advertised URL.
    pub node_id: String,
    /// How other nodes pull from this one; empty = `rtmp://127.0.0.1:{rtmp port}`.
    pub advertise: String,
    /// origin, edge or both.
    pub role: ClusterRole,
    /// Lease of registry keys (ms).
    pub lease_ms: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            redis: String::new(),
            node_id: String::new(),
            advertise: String::new(),
            role: ClusterRole::Origin,
            lease_ms: ClusterConfig::default().lease_ms,
        }
    }
}

impl ClusterSection {
    /// The engine's cluster settings (`rtmp_port` for the default advertised URL), or what is
    /// wrong.
    pub fn cluster_config(&self, rtmp_port: Option<u16>) -> Result<ClusterConfig, ConfigError> {
        let redis = if self.redis.is_empty() {
            None
        } else {
            Some(
                RedisTarget::parse(&self.redis)
                    .map_err(|e| ConfigError(format!("cluster.redis: {e}")))?,
            )
        };
        if self.lease_ms < 300 {
            return Err(ConfigError("cluster.lease_ms must be at least 300".into()));
        }
        let advertise = if self.advertise.is_empty() {
            format!("rtmp://127.0.0.1:{}", rtmp_port.unwrap_or(1935))
        } else {
            self.advertise.trim_end_matches('/').to_owned()
        };
        RelayUrl::parse(&advertise).map_err(|e| ConfigError(format!("cluster.advertise: {e}")))?;
        let node_id = if self.node_id.is_empty() {
            advertise.clone()
        } else {
            self.node_id.clone()
        };
        if node_id.contains(char::is_whitespace) {
            return Err(ConfigError(
                "cluster.node_id must not contain spaces".into(),
            ));
        }
        Ok(ClusterConfig {
            redis,
            node_id,
            advertise,
            role: self.role,
            lease_ms: self.lease_ms,
        })
    }
}

/// `[relay]`: `[relay.pull]` and `[[relay.push]]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
    /// Static pull (edge).
    pub pull: RelayPullSection,
    /// Static pushes.
    pub push: Vec<RelayPushSection>,
}

/// `[relay.pull]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayPullSection {
    /// Origins (`rtmp://`, `http://` or `rtsp://host[:port][/path]`), tried in order.
    pub origins: Vec<String>,
    /// A pull stops this long after its last player left (ms).
    pub idle_stop_ms: u64,
}

impl Default for RelayPullSection {
    fn default() -> Self {
        RelayPullSection {
            origins: Vec::new(),
            idle_stop_ms: RelayConfig::default().idle_stop_ms,
        }
    }
}

/// One `[[relay.push]]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayPushSection {
    /// The app whose streams are pushed (`*` = every app).
    pub app: String,
    /// Targets (`rtmp://` or `rtsp://host[:port]/path`); a stream goes to `{url}/{stream}`.
    pub urls: Vec<String>,
}

impl RelaySection {
    /// The engine's relay settings, or what is wrong with a URL.
    pub fn relay_config(&self) -> Result<RelayConfig, ConfigError> {
        let parse = |what: &str, u: &String| {
            let parsed = if what == "relay.push.urls" {
                RelayUrl::parse_push(u)
            } else {
                RelayUrl::parse(u)
            };
            parsed.map_err(|e| ConfigError(format!("{what}: {e}")))
        };
        Ok(RelayConfig {
            pull_origins: self
                .pull
                .origins
                .iter()
                .map(|u| parse("relay.pull.origins", u))
                .collect::<Result<_, _>>()?,
            idle_stop_ms: self.pull.idle_stop_ms,
            push: self
                .push
                .iter()
                .map(|r| {
                    Ok(PushRule {
                        app: r.app.clone(),
                        urls: r
                            .urls
                            .iter()
                            .map(|u| parse("relay.push.urls", u))
                            .collect::<Result<_, _>>()?,
                    })
                })
                .collect::<Result<_, ConfigError>>()?,
            own_rtmp: None,
        })
    }
}

/// `[record]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordSection {
    /// Record each publish to an FLV file.
    pub flv: bool,
    /// Record each publish to one MPEG-TS file.
    pub ts: bool,
    /// Directory of the recordings.
    pub out_path: String,
}

impl Default for RecordSection {
    fn default() -> Self {
        let r = RecordConfig::default();
        RecordSection {
            flv: r.flv,
            ts: r.ts,
            out_path: r.out_path,
        }
    }
}

/// `[auth]`: lal's simple auth (its keys as in [`SimpleAuth`]) and the HTTP callback.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// [`SimpleAuth::key`].
    pub key: String,
    /// [`SimpleAuth::dangerous_secret`].
    pub dangerous_secret: String,
    /// [`SimpleAuth::publish_rtmp`].
    pub publish_rtmp: bool,
    /// [`SimpleAuth::publish_rtsp`].
    pub publish_rtsp: bool,
    /// [`SimpleAuth::play_rtmp`].
    pub play_rtmp: bool,
    /// [`SimpleAuth::play_http_flv`].
    pub play_http_flv: bool,
    /// [`SimpleAuth::play_http_ts`].
    pub play_http_ts: bool,
    /// [`SimpleAuth::play_hls`].
    pub play_hls: bool,
    /// [`SimpleAuth::play_rtsp`].
    pub play_rtsp: bool,
    /// The callback's URL; empty = no callback.
    pub http_callback: String,
    /// Longest wait for its answer (ms).
    pub callback_timeout_ms: u64,
    /// What no answer means.
    pub callback_on_error: CallbackOnError,
    /// The accesses that ask it.
    pub callback_for: Vec<Access>,
}

/// `auth.callback_on_error`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOnError {
    /// Refuse.
    #[default]
    Deny,
    /// Allow.
    Allow,
}

impl Default for AuthSection {
    fn default() -> Self {
        let s = SimpleAuth::default();
        let c = CallbackConfig::default();
        AuthSection {
            key: s.key,
            dangerous_secret: s.dangerous_secret,
            publish_rtmp: s.publish_rtmp,
            publish_rtsp: s.publish_rtsp,
            play_rtmp: s.play_rtmp,
            play_http_flv: s.play_http_flv,
            play_http_ts: s.play_http_ts,
            play_hls: s.play_hls,
            play_rtsp: s.play_rtsp,
            http_callback: String::new(),
            callback_timeout_ms: c.timeout_ms,
            callback_on_error: CallbackOnError::Deny,
            callback_for: c.checks,
        }
    }
}

impl AuthSection {
    /// The simple-auth part.
    pub fn simple(&self) -> SimpleAuth {
        SimpleAuth {
            key: self.key.clone(),
            dangerous_secret: self.dangerous_secret.clone(),
            publish_rtmp: self.publish_rtmp,
            publish_rtsp: self.publish_rtsp,
            play_rtmp: self.play_rtmp,
            play_http_flv: self.play_http_flv,
            play_http_ts: self.play_http_ts,
            play_hls: self.play_hls,
            play_rtsp: self.play_rtsp,
        }
    }

    /// The callback part (no URL when empty or invalid, which [`Config::validate`] refuses).
    pub fn callback(&self) -> CallbackConfig {
        CallbackConfig {
            url: Some(&self.http_callback)
                .filter(|u| !u.is_empty())
                .and_then(|u| WebhookUrl::parse(u).ok()),
            timeout_ms: self.callback_timeout_ms,
            allow_on_error: self.callback_on_error == CallbackOnError::Allow,
            checks: self.callback_for.clone(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.key.is_empty() && self.simple().any_required() {
            return Err(ConfigError(
                "auth: a publish_* or play_* switch is on but auth.key is empty; set a key \
                 (secrets are md5(key + stream name))"
                    .into(),
            ));
        }
        if !self.http_callback.is_empty() {
            WebhookUrl::parse(&self.http_callback)
                .map_err(|e| ConfigError(format!("auth.http_callback: {e}")))?;
        }
        if self.callback_timeout_ms == 0 {
            return Err(ConfigError(
                "auth.callback_timeout_ms must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// `[api]`: who may call the HTTP API (see [`ApiGuard`]).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// The API's own listen address; empty = none.
    pub addr: String,
    /// [`ApiGuard::token`].
    pub token: String,
    /// [`ApiGuard::jwt_secret`].
    pub jwt_secret: String,
    /// [`ApiGuard::protect_stats`].
    pub protect_stats: bool,
    /// [`RoomKeyConfig::enable`].
    pub room_keys: bool,
    /// [`RoomKeyConfig::file`] (the runtime resolves an empty one).
    pub room_keys_file: String,
}

/// `[webhook]`: lal's HTTP notifications. Off by default; an empty URL sends no such event.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSection {
    /// Send webhooks.
    pub enable: bool,
    /// Seconds between two `on_update` events (at least 1).
    pub update_interval_sec: u64,
    /// URL of `on_server_start`.
    pub on_server_start: String,
    /// URL of `on_update`.
    pub on_update: String,
    /// URL of `on_pub_start`.
    pub on_pub_start: String,
    /// URL of `on_pub_stop`.
    pub on_pub_stop: String,
    /// URL of `on_sub_start`.
    pub on_sub_start: String,
    /// URL of `on_sub_stop`.
    pub on_sub_stop: String,
    /// URL of `on_relay_pull_start`.
    pub on_relay_pull_start: String,
    /// URL of `on_relay_pull_stop`.
    pub on_relay_pull_stop: String,
    /// URL of `on_rtmp_connect`.
    pub on_rtmp_connect: String,
    /// URL of `on_hls_make_ts`.
    pub on_hls_make_ts: String,
}

impl Default for WebhookSection {
    fn default() -> Self {
        WebhookSection {
            enable: false,
            update_interval_sec: 5,
            on_server_start: String::new(),
            on_update: String::new(),
            on_pub_start: String::new(),
            on_pub_stop: String::new(),
            on_sub_start: String::new(),
            on_sub_stop: String::new(),
            on_relay_pull_start: String::new(),
            on_relay_pull_stop: String::new(),
            on_rtmp_connect: String::new(),
            on_hls_make_ts: String::new(),
        }
    }
}

impl WebhookSection {
    /// The URL configured for `event` (empty: not sent).
    pub fn url(&self, event: WebhookEvent) -> &str {
        match event {
            WebhookEvent::ServerStart => &self.on_server_start,
            WebhookEvent::Update => &self.on_update,
            WebhookEvent::PubStart => &self.on_pub_start,
            WebhookEvent::PubStop => &self.on_pub_stop,
            WebhookEvent::SubStart => &self.on_sub_start,
            WebhookEvent::SubStop => &self.on_sub_stop,
            WebhookEvent::RelayPullStart => &self.on_relay_pull_start,
            WebhookEvent::RelayPullStop => &self.on_relay_pull_stop,
            WebhookEvent::RtmpConnect => &self.on_rtmp_connect,
            WebhookEvent::HlsMakeTs => &self.on_hls_make_ts,
        }
    }

    /// The receiver of `event`: `None` when webhooks are off or the event has no URL (or an
    /// invalid one, which [`Config::validate`] refuses).
    pub fn receiver(&self, event: WebhookEvent) -> Option<WebhookUrl> {
        let url = self.url(event);
        if !self.enable || url.is_empty() {
            return None;
        }
        WebhookUrl::parse(url).ok()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.update_interval_sec == 0 {
            return Err(ConfigError(
                "webhook.update_interval_sec must be at least 1".into(),
            ));
        }
        for event in WebhookEvent::ALL {
            let url = self.url(event);
            if !url.is_empty() {
                WebhookUrl::parse(url)
                    .map_err(|e| ConfigError(format!("webhook.{}: {e}", event.name())))?;
            }
        }
        Ok(())
    }
}

/// `[dump]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DumpSection {
    /// Record connections.
    pub enable: bool,
    /// Directory of the dump files.
    pub dir: String,
    /// Keep only dumps of this stream (`app/stream`); empty keeps all.
    pub stream: String,
    /// Size cap of one dump file, bytes.
    pub max_bytes: u64,
}

impl Default for DumpSection {
    fn default() -> Self {
        DumpSection {
            enable: false,
            dir: "dumps".into(),
            stream: String::new(),
            max_bytes: 64 << 20,
        }
    }
}

/// `[rtmp]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpSection {
    /// Listen for RTMP.
    pub enable: bool,
    /// Listen address.
    pub addr: String,
    /// Outgoing chunk size.
    pub chunk_size: u32,
    /// Window acknowledgement size announced.
    pub window_ack_size: u32,
    /// Peer bandwidth announced.
    pub peer_bandwidth: u32,
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Listen for HTTP.
    pub enable: bool,
    /// Listen address.
    pub addr: String,
    /// Serve the web UI (on the HTTPS listener too).
    pub ui: bool,
}

/// `[rtsp]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtspSection {
    /// Listen for RTSP.
    pub enable: bool,
    /// Listen address.
    pub addr: String,
    /// Lowest server port for UDP transport.
    pub udp_port_min: u16,
    /// Highest server port for UDP transport.
    pub udp_port_max: u16,
    /// Session timeout (ms).
    pub session_timeout_ms: u64,
    /// Challenge scheme.
    pub auth: RtspAuth,
    /// Challenge realm.
    pub realm: String,
    /// User required to publish (empty: anyone may).
    pub publish_user: String,
    /// Its password.
    pub publish_password: String,
    /// User required to play (empty: anyone may).
    pub play_user: String,
    /// Its password.
    pub play_password: String,
}

/// `rtsp.auth`: the authentication scheme asked of clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspAuth {
    /// Digest (MD5).
    Digest,
    /// Basic.
    Basic,
}

impl Default for RtspSection {
    fn default() -> Self {
        let s = RtspServerConfig::default();
        RtspSection {
            enable: true,
            addr: "0.0.0.0:5544".into(),
            udp_port_min: 20000,
            udp_port_max: 20999,
            session_timeout_ms: s.session_timeout_ms,
            auth: RtspAuth::Digest,
            realm: s.realm,
            publish_user: String::new(),
            publish_password: String::new(),
            play_user: String::new(),
            play_password: String::new(),
        }
    }
}

impl RtspSection {
    /// The RTSP session settings these values describe.
    pub fn server_config(&self) -> RtspServerConfig {
        let creds = |user: &str, password: &str| {
            (!user.is_empty()).then(|| Credentials {
                username: user.to_owned(),
                password: password.to_owned(),
            })
        };
        RtspServerConfig {
            session_timeout_ms: self.session_timeout_ms,
            auth_scheme: match self.auth {
                RtspAuth::Digest => AuthScheme::Digest,
                RtspAuth::Basic => AuthScheme::Basic,
            },
            realm: self.realm.clone(),
            publish_credentials: creds(&self.publish_user, &self.publish_password),
            play_credentials: creds(&self.play_user, &self.play_password),
            ..RtspServerConfig::default()
        }
    }
}

/// `[hub]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSection {
    /// GOPs cached.
    pub gop_num: usize,
    /// Cache bound in packets.
    pub gop_max_frames: usize,
    /// Cache bound in bytes.
    pub gop_max_bytes: usize,
    /// Player queue soft bound.
    pub player_queue_soft_bytes: usize,
    /// Player queue hard bound.
    pub player_queue_hard_bytes: usize,
    /// Player lag soft bound (ms of media queued).
    pub player_lag_soft_ms: u64,
    /// Player lag hard bound (ms of media without taking a packet).
    pub player_lag_hard_ms: u64,
    /// Wait for a stream that is not live (ms).
    pub play_wait_timeout_ms: u64,
    /// Publisher reconnect grace (ms).
    pub publisher_grace_ms: u64,
    /// Every frame to every player at once (no write merging), for the lowest delay.
    pub low_latency: bool,
    /// Longest player write merge window (ms); 0 = none.
    pub write_merge_ms: u64,
    /// Players per worker at which that whole window applies.
    pub write_merge_players: usize,
    /// A second publisher of a live stream: refused, or replaces the first.
    pub publish_conflict: PublishConflict,
    /// Silent AAC for streams published without audio.
    pub silent_audio: bool,
    /// Video time (ms) to wait for real audio before the silent track starts.
    pub silent_audio_wait_ms: u64,
    /// HTTP-FLV players get Enhanced RTMP tags unless their request says otherwise.
    pub flv_enhanced: bool,
}

/// `[hls]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsSection {
    /// Segment streams.
    pub enable: bool,
    /// Segment duration (ms).
    pub fragment_ms: u64,
    /// Segments in the live playlist.
    pub playlist_len: usize,
    /// Directory for files; empty = memory only.
    pub out_path: String,
    /// When files are removed.
    pub cleanup: Cleanup,
    /// Memory for the record playlist per stream (bytes).
    pub record_max_bytes: usize,
    /// Low-Latency HLS.
    pub ll_enable: bool,
    /// Low-Latency HLS windows only while asked for.
    pub ll_on_demand: bool,
    /// Low-Latency HLS part target (ms).
    pub ll_part_ms: u64,
    /// Segments in the Low-Latency HLS playlist.
    pub ll_playlist_len: usize,
    /// Segment container.
    pub segment_format: SegmentFormat,
    /// Memory for segments over every stream (bytes).
    pub memory_max_bytes: usize,
    /// How long an ended stream stays (ms).
    pub keep_after_end_ms: u64,
}

impl Default for HlsSection {
    fn default() -> Self {
        let h = HlsConfig::default();
        HlsSection {
            enable: h.enable,
            fragment_ms: h.fragment_ms,
            playlist_len: h.playlist_len,
            out_path: h.out_path,
            cleanup: h.cleanup,
            record_max_bytes: h.record_max_bytes,
            ll_enable: h.ll_enable,
            ll_on_demand: h.ll_on_demand,
            ll_part_ms: h.ll_part_ms,
            ll_playlist_len: h.ll_playlist_len,
            segment_format: h.segment_format,
            memory_max_bytes: h.memory_max_bytes,
            keep_after_end_ms: h.keep_after_end_ms,
        }
    }
}

/// `[limits]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest chunk size a peer may set.
    pub max_chunk_size: u32,
    /// Largest RTMP message.
    pub max_message_len: u32,
    /// Chunk streams per connection.
    pub max_chunk_streams: usize,
    /// Partial message bytes per connection.
    pub max_pending_bytes: usize,
    /// AMF nesting depth.
    pub max_amf_depth: usize,
    /// AMF elements per value.
    pub max_amf_elements: usize,
    /// HTTP request head bytes.
    pub http_max_head_bytes: usize,
    /// HTTP headers per request.
    pub http_max_headers: usize,
    /// HTTP request body bytes.
    pub http_max_body_bytes: usize,
    /// WebSocket frame from a player.
    pub ws_max_frame: usize,
    /// RTSP message line (request/status line or header).
    pub rtsp_max_line_bytes: usize,
    /// RTSP headers per message.
    pub rtsp_max_headers: usize,
    /// RTSP message body bytes.
    pub rtsp_max_body_bytes: usize,
    /// RTMP handshake + connect deadline.
    pub handshake_timeout_ms: u64,
    /// HTTP request head deadline.
    pub http_head_timeout_ms: u64,
    /// RTSP first request deadline (the session timeout applies after it).
    pub rtsp_first_request_timeout_ms: u64,
    /// Idle publisher deadline.
    pub publish_idle_timeout_ms: u64,
    /// Idle connection deadline.
    pub idle_timeout_ms: u64,
    /// TCP connections open at once, all listeners together (0 = unlimited).
    pub max_connections: u32,
    /// TCP connections open at once from one client address (0 = unlimited).
    pub max_connections_per_ip: u32,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// tracing filter directive.
    pub level: String,
    /// How log lines are written.
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for RtmpSection {
    fn default() -> Self {
        let s = ServerConfig::default();
        RtmpSection {
            enable: true,
            addr: "0.0.0.0:1935".into(),
            chunk_size: s.chunk_size,
            window_ack_size: s.window_ack_size,
            peer_bandwidth: s.peer_bandwidth,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            enable: true,
            addr: "0.0.0.0:8080".into(),
            ui: true,
        }
    }
}

impl Default for HubSection {
    fn default() -> Self {
        let h = HubConfig::default();
        HubSection {
            gop_num: h.gop_num,
            gop_max_frames: h.gop_max_frames,
            gop_max_bytes: h.gop_max_bytes,
            player_queue_soft_bytes: h.player_queue_soft_bytes,
            player_queue_hard_bytes: h.player_queue_hard_bytes,
            player_lag_soft_ms: h.player_lag_soft_ms,
            player_lag_hard_ms: h.player_lag_hard_ms,
            play_wait_timeout_ms: h.play_wait_timeout_ms,
            publisher_grace_ms: h.publisher_grace_ms,
            low_latency: false,
            write_merge_ms: EngineConfig::default().write_merge_ms,
            write_merge_players: EngineConfig::default().write_merge_players,
            publish_conflict: EngineConfig::default().publish_conflict,
            silent_audio: SilentAudioConfig::default().enable,
            silent_audio_wait_ms: SilentAudioConfig::default().wait_ms,
            flv_enhanced: false,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        let l = Limits::default();
        let h = HttpLimits::default();
        let e = EngineConfig::default();
        let c = ConnectionLimits::default();
        let r = RtspLimits::default();
        let rtsp = RtspServerConfig::default();
        LimitsSection {
            max_chunk_size: l.max_chunk_size,
            max_message_len: l.max_message_len,
            max_chunk_streams: l.max_chunk_streams,
            max_pending_bytes: l.max_pending_bytes,
            max_amf_depth: l.max_amf_depth,
            max_amf_elements: l.max_amf_elements,
            http_max_head_bytes: h.max_head_bytes,
            http_max_headers: h.max_headers,
            http_max_body_bytes: h.max_body_bytes,
            ws_max_frame: e.ws_max_frame,
            rtsp_max_line_bytes: r.max_line_bytes,
            rtsp_max_headers: r.max_headers,
            rtsp_max_body_bytes: r.max_body_bytes,
            handshake_timeout_ms: e.rtmp.handshake_timeout_ms,
            http_head_timeout_ms: e.http_head_timeout_ms,
            rtsp_first_request_timeout_ms: rtsp.first_request_timeout_ms,
            publish_idle_timeout_ms: e.publish_idle_timeout_ms,
            idle_timeout_ms: e.idle_timeout_ms,
            max_connections: c.max_connections,
            max_connections_per_ip: c.max_connections_per_ip,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug)]
pub struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses a TOML document; missing keys take their defaults, unknown keys are an error.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.webhook.validate()?;
        self.relay.relay_config()?;
        self.cluster.cluster_config(None)?;
        if !(128..=self.limits.max_chunk_size.min(0x7FFF_FFFF)).contains(&self.rtmp.chunk_size) {
            return Err(ConfigError(format!(
                "rtmp.chunk_size {} must be between 128 and limits.max_chunk_size",
                self.rtmp.chunk_size
            )));
        }
        if self.limits.max_message_len > 0xFF_FFFF {
            return Err(ConfigError(format!(
                "limits.max_message_len {} exceeds what RTMP can carry (16777215)",
                self.limits.max_message_len
            )));
        }
        if self.hls.fragment_ms < 100 || self.hls.playlist_len == 0 {
            return Err(ConfigError(
                "hls.fragment_ms must be at least 100 and hls.playlist_len at least 1".into(),
            ));
        }
        if !(100..=5000).contains(&self.hls.ll_part_ms)
            || self.hls.ll_part_ms > self.hls.fragment_ms
            || self.hls.ll_playlist_len == 0
        {
            return Err(ConfigError(
                "hls.ll_part_ms must be 100..=5000 and at most hls.fragment_ms, and \
                 hls.ll_playlist_len at least 1"
                    .into(),
            ));
        }
        if self.hls.out_path.contains('\0') {
            return Err(ConfigError("hls.out_path contains NUL".into()));
        }
        let rec = &self.record;
        if ((rec.flv || rec.ts) && rec.out_path.is_empty()) || rec.out_path.contains('\0') {
            return Err(ConfigError(
                "record.out_path must be set when record.flv or record.ts is on, without NUL"
                    .into(),
            ));
        }
        let r = &self.rtsp;
        let first_even = r.udp_port_min.saturating_add(r.udp_port_min % 2);
        if r.udp_port_min == 0 || first_even >= r.udp_port_max {
            return Err(ConfigError(format!(
                "rtsp.udp_port_min {} .. udp_port_max {} holds no even/odd port pair",
                r.udp_port_min, r.udp_port_max
            )));
        }
        if r.session_timeout_ms < 1000 || r.realm.contains('"') {
            return Err(ConfigError(
                "rtsp.session_timeout_ms must be at least 1000 and rtsp.realm has no '\"'".into(),
            ));
        }
        if self.limits.rtsp_max_line_bytes < 256 || self.limits.rtsp_max_headers < 8 {
            return Err(ConfigError(
                "limits.rtsp_max_line_bytes must be at least 256 and rtsp_max_headers at least 8"
                    .into(),
            ));
        }
        if self.hub.write_merge_ms > 1000 || self.hub.write_merge_players == 0 {
            return Err(ConfigError(
                "hub.write_merge_ms must be 0..=1000 and hub.write_merge_players at least 1".into(),
            ));
        }
        self.auth.validate()?;
        if !self.api.addr.is_empty() && self.api.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError(format!(
                "api.addr {:?} is not an address:port",
                self.api.addr
            )));
        }
        if self.hub.player_lag_soft_ms > self.hub.player_lag_hard_ms {
            return Err(ConfigError(
                "hub.player_lag_soft_ms exceeds player_lag_hard_ms".into(),
            ));
        }
        if self.hub.player_queue_soft_bytes > self.hub.player_queue_hard_bytes {
            return Err(ConfigError(
                "hub.player_queue_soft_bytes exceeds player_queue_hard_bytes".into(),
            ));
        }
        Ok(())
    }

    /// The connection admission limits (`[limits] max_connections`, `max_connections_per_ip`).
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.limits.max_connections,
            max_connections_per_ip: self.limits.max_connections_per_ip,
        }
    }

    /// The ports listening, as the web UI is told them (TLS ones only with a certificate).
    pub fn listening(&self) -> Listening {
        let tls = self.tls.configured();
        Listening {
            rtmp: port_of(self.rtmp.enable, &self.rtmp.addr),
            rtsp: port_of(self.rtsp.enable, &self.rtsp.addr),
            http: port_of(self.http.enable, &self.http.addr),
            rtmps: port_of(tls && self.rtmps.enable, &self.rtmps.addr),
            https: port_of(tls && self.https.enable, &self.https.addr),
            rtsps: port_of(tls && self.rtsps.enable, &self.rtsps.addr),
            hls: self.hls.enable,
            llhls: self.hls.enable && self.hls.ll_enable,
        }
    }

    /// The engine settings these values describe.
    pub fn engine_config(&self) -> EngineConfig {
        let l = &self.limits;
        let limits = Limits {
            max_chunk_size: l.max_chunk_size,
            max_message_len: l.max_message_len,
            max_chunk_streams: l.max_chunk_streams,
            max_pending_bytes: l.max_pending_bytes,
            max_amf_depth: l.max_amf_depth,
            max_amf_elements: l.max_amf_elements,
        };
        let rtmp = ServerConfig {
            chunk_size: self.rtmp.chunk_size,
            window_ack_size: self.rtmp.window_ack_size,
            peer_bandwidth: self.rtmp.peer_bandwidth,
            handshake_timeout_ms: l.handshake_timeout_ms,
            limits,
            ..ServerConfig::default()
        };
        let h = &self.hub;
        EngineConfig {
            rtmp,
            http: HttpLimits {
                max_head_bytes: l.http_max_head_bytes,
                max_headers: l.http_max_headers,
                max_body_bytes: l.http_max_body_bytes,
            },
            rtsp: RtspServerConfig {
                limits: RtspLimits {
                    max_line_bytes: l.rtsp_max_line_bytes,
                    max_headers: l.rtsp_max_headers,
                    max_body_bytes: l.rtsp_max_body_bytes,
                },
                first_request_timeout_ms: l.rtsp_first_request_timeout_ms,
                ..self.rtsp.server_config()
            },
            hub: HubConfig {
                gop_num: h.gop_num,
                gop_max_frames: h.gop_max_frames,
                gop_max_bytes: h.gop_max_bytes,
                player_queue_soft_bytes: h.player_queue_soft_bytes,
                player_queue_hard_bytes: h.player_queue_hard_bytes,
                player_lag_soft_ms: h.player_lag_soft_ms,
                player_lag_hard_ms: h.player_lag_hard_ms,
                play_wait_timeout_ms: h.play_wait_timeout_ms,
                publisher_grace_ms: h.publisher_grace_ms,
            },
            hls: HlsConfig {
                enable: self.hls.enable,
                fragment_ms: self.hls.fragment_ms,
                playlist_len: self.hls.playlist_len,
                out_path: self.hls.out_path.clone(),
                cleanup: self.hls.cleanup,
                record_max_bytes: self.hls.record_max_bytes,
                ll_enable: self.hls.ll_enable,
                ll_on_demand: self.hls.ll_on_demand,
                ll_part_ms: self.hls.ll_part_ms,
                ll_playlist_len: self.hls.ll_playlist_len,
                segment_format: self.hls.segment_format,
                memory_max_bytes: self.hls.memory_max_bytes,
                keep_after_end_ms: self.hls.keep_after_end_ms,
            },
            record: RecordConfig {
                flv: self.record.flv,
                ts: self.record.ts,
                out_path: self.record.out_path.clone(),
            },
            publish_idle_timeout_ms: l.publish_idle_timeout_ms,
            idle_timeout_ms: l.idle_timeout_ms,
            http_head_timeout_ms: l.http_head_timeout_ms,
            ws_max_frame: l.ws_max_frame,
            flv_enhanced: h.flv_enhanced,
            share_streams: false,
            write_merge_ms: if h.low_latency { 0 } else { h.write_merge_ms },
            write_merge_players: h.write_merge_players,
            publish_conflict: h.publish_conflict,
            auth: self.auth.simple(),
            auth_callback: self.auth.callback(),
            room_keys: RoomKeyConfig {
                enable: self.api.room_keys,
                file: self.api.room_keys_file.clone(),
                keys: Vec::new(),
                secret: Vec::new(),
            },
            api: ApiGuard {
                token: self.api.token.clone(),
                jwt_secret: self.api.jwt_secret.clone(),
                protect_stats: self.api.protect_stats,
                own_listener: !self.api.addr.is_empty(),
            },
            silent_audio: SilentAudioConfig {
                enable: h.silent_audio,
                wait_ms: h.silent_audio_wait_ms,
            },
            worker: 0,
            workers: 1,
            webhook: WebhookConfig {
                receivers: WebhookEvent::ALL
                    .iter()
                    .filter_map(|&e| Some((e, self.webhook.receiver(e)?)))
                    .collect(),
                update_interval_ms: self.webhook.update_interval_sec.max(1).saturating_mul(1000),
                rtmp_addr: self.rtmp.addr.clone(),
                http_addr: self.http.addr.clone(),
                rtsp_addr: self.rtsp.addr.clone(),
                ..WebhookConfig::default()
            },
            tls_client: TlsPolicy {
                no_verify: self.tls.no_verify.clone(),
            },
            // Checked by `validate`; an unchecked bad URL leaves relays off.
            relay: RelayConfig {
                own_rtmp: self
                    .rtmp
                    .enable
                    .then(|| self.rtmp.addr.parse().ok())
                    .flatten(),
                ..self.relay.relay_config().unwrap_or_default()
            },
            ui: UiConfig {
                enable: self.http.ui,
                listening: self.listening(),
            },
            // Checked by `validate`; an unchecked bad section leaves the cluster off.
            cluster: self
                .cluster
                .cluster_config(port_of(self.rtmp.enable, &self.rtmp.addr))
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_default_config_equals_built_in_defaults() {
        let parsed = Config::from_toml(DEFAULT_CONFIG).expect("default config parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn cluster_section() {
        let c = Config::from_toml(
            "[rtmp]\naddr = \"0.0.0.0:1936\"\n[cluster]\nredis = \"redis://r:6380/1\"\nrole = \"edge\"\n",
        )
        .unwrap();
        let k = c.engine_config().cluster;
        let redis = k.redis.expect("cluster on");
        assert_eq!((redis.host.as_str(), redis.port, redis.db), ("r", 6380, 1));
        assert_eq!(k.role, ClusterRole::Edge);
        assert_eq!(k.advertise, "rtmp://127.0.0.1:1936");
        assert_eq!(k.node_id, k.advertise);
        assert_eq!(Config::default().engine_config().cluster.redis, None);
        for bad in [
            "[cluster]\nredis = \"http://r\"\n",
            "[cluster]\nredis = \"redis://r\"\nlease_ms = 10\n",
            "[cluster]\nredis = \"redis://r\"\nadvertise = \"ftp://x\"\n",
            "[cluster]\nrole = \"router\"\n",
        ] {
            assert!(Config::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relay_section() {
        let c = Config::from_toml(
            "[relay.pull]\norigins = [\"rtmp://o:1936\"]\nidle_stop_ms = 500\n\
             [[relay.push]]\napp = \"*\"\nurls = [\"rtmp://t/live\"]\n",
        )
        .unwrap();
        let r = c.engine_config().relay;
        assert_eq!(r.pull_origins[0].port, 1936);
        assert_eq!(r.idle_stop_ms, 500);
        assert_eq!(r.push[0].app, "*");
        assert_eq!(r.push[0].urls[0].path, "live");
        let c = Config::from_toml(
            "[relay.pull]\norigins = [\"http://o:8080\", \"rtsp://u:p@o/x?rtsp_mode=1\"]\n",
        )
        .unwrap();
        let r = c.engine_config().relay;
        assert_eq!(r.pull_origins[0].scheme, crate::scheme::Scheme::Http);
        assert_eq!(r.pull_origins[1].scheme, crate::scheme::Scheme::Rtsp);
        assert!(Config::from_toml("[relay.pull]\norigins = [\"ftp://o\"]\n").is_err());
        // HTTP-FLV relays pull only.
        assert!(Config::from_toml("[[relay.push]]\napp = \"a\"\nurls = [\"http://o\"]\n").is_err());
        assert!(Config::from_toml("[relay.pull]\norigin = []\n").is_err());
        assert!(Config::from_toml("[[relay.push]]\napp = \"a\"\nurl = []\n").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml("[rtmp]\nadress = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("adress"), "{err}");
        assert!(Config::from_toml("bogus = 1\n").is_err());
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = Config::from_toml("[hub]\ngop_num = 2\n").unwrap();
        assert_eq!(c.hub.gop_num, 2);
        assert_eq!(c.rtmp, RtmpSection::default());
    }

    #[test]
    fn silent_audio_reaches_the_engine() {
        assert_eq!(
            Config::default().engine_config().silent_audio,
            SilentAudioConfig {
                enable: false,
                wait_ms: 1000
            }
        );
        let c =
            Config::from_toml("[hub]\nsilent_audio = true\nsilent_audio_wait_ms = 300\n").unwrap();
        assert_eq!(
            c.engine_config().silent_audio,
            SilentAudioConfig {
                enable: true,
                wait_ms: 300
            }
        );
    }

    #[test]
    fn hls_section() {
        let c =
            Config::from_toml("[hls]\nout_path = \"/srv/hls\"\ncleanup = \"window\"\n").unwrap();
        let e = c.engine_config();
        assert_eq!(e.hls.out_path, "/srv/hls");
        assert_eq!(e.hls.cleanup, Cleanup::Window);
        assert!(Config::from_toml("[hls]\ncleanup = \"sometimes\"\n").is_err());
        let fmp4 = Config::from_toml("[hls]\nsegment_format = \"fmp4\"\n").unwrap();
        assert_eq!(fmp4.engine_config().hls.segment_format, SegmentFormat::Fmp4);
        assert!(Config::from_toml("[hls]\nsegment_format = \"mkv\"\n").is_err());
    }

    #[test]
    fn publish_conflict_modes() {
        let e = Config::default().engine_config();
        assert_eq!(e.publish_conflict, PublishConflict::Reject);
        let kick = Config::from_toml("[hub]\npublish_conflict = \"kick\"\n").unwrap();
        assert_eq!(kick.engine_config().publish_conflict, PublishConflict::Kick);
        assert!(Config::from_toml("[hub]\npublish_conflict = \"share\"\n").is_err());
        assert!(Config::from_toml("[hls]\nplaylist_len = 0\n").is_err());
        assert!(Config::from_toml("[hls]\nll_part_ms = 50\n").is_err());
        assert!(Config::from_toml("[hls]\nll_part_ms = 3000\n").is_err());
        assert!(Config::from_toml("[hls]\nll_playlist_len = 0\n").is_err());
        let e = Config::from_toml("[hls]\nll_part_ms = 200\n")
            .unwrap()
            .engine_config();
        assert_eq!(e.hls.ll_part_ms, 200);
    }

    #[test]
    fn record_section() {
        assert!(!Config::default().engine_config().record.enabled());
        let c = Config::from_toml("[record]\nflv = true\nout_path = \"/srv/rec\"\n").unwrap();
        let r = c.engine_config().record;
        assert!(r.flv && !r.ts && r.enabled());
        assert_eq!(r.out_path, "/srv/rec");
        assert!(Config::from_toml("[record]\nts = true\nout_path = \"\"\n").is_err());
        // Off, an empty directory is harmless.
        assert!(Config::from_toml("[record]\nout_path = \"\"\n").is_ok());
        assert!(Config::from_toml("[record]\nmp4 = true\n").is_err());
    }

    #[test]
    fn nonsense_values_are_refused() {
        assert!(Config::from_toml("[rtmp]\nchunk_size = 1\n").is_err());
        assert!(Config::from_toml("[hub]\nwrite_merge_players = 0\n").is_err());
        let small = Config::from_toml("[limits]\nrtsp_max_body_bytes = 1000\n").unwrap();
        assert_eq!(small.engine_config().rtsp.limits.max_body_bytes, 1000);
        assert!(Config::from_toml("[hub]\nwrite_merge_ms = 5000\n").is_err());
        // Merged writes by default; one switch for frame-at-once writing.
        assert_eq!(
            Config::from_toml("")
                .unwrap()
                .engine_config()
                .write_merge_ms,
            40
        );
        let low = Config::from_toml("[hub]\nlow_latency = true\n").unwrap();
        assert_eq!(low.engine_config().write_merge_ms, 0);
        assert!(Config::from_toml("[rtsp]\nudp_port_min = 3001\nudp_port_max = 3001\n").is_err());
        assert!(Config::from_toml("[rtsp]\nauth = \"none\"\n").is_err());
    }

    #[test]
    fn connection_limits() {
        assert_eq!(
            Config::default().connection_limits(),
            ConnectionLimits::default()
        );
        let c = Config::from_toml("[limits]\nmax_connections = 5\nmax_connections_per_ip = 0\n")
            .unwrap();
        let l = c.connection_limits();
        assert_eq!((l.max_connections, l.max_connections_per_ip), (5, 0));
        assert!(Config::from_toml("[limits]\nmax_connections = -1\n").is_err());
    }

    #[test]
    fn auth_section() {
        assert!(!Config::default().engine_config().auth.any_required());
        let c = Config::from_toml(
            "[auth]\nkey = \"k\"\ndangerous_secret = \"d\"\npublish_rtmp = true\n\
             play_hls = true\n",
        )
        .unwrap();
        let a = c.engine_config().auth;
        assert_eq!((a.key.as_str(), a.dangerous_secret.as_str()), ("k", "d"));
        assert!(a.publish_rtmp && a.play_hls);
        assert!(!(a.publish_rtsp || a.play_rtmp || a.play_http_flv || a.play_http_ts));
        assert!(!a.play_rtsp);
        let err = Config::from_toml("[auth]\nplay_rtsp = true\n").unwrap_err();
        assert!(err.to_string().contains("auth.key is empty"), "{err}");
        // A key with every switch off is fine (nothing is checked).
        assert!(Config::from_toml("[auth]\nkey = \"k\"\n").is_ok());
        assert!(Config::from_toml("[auth]\npub_rtmp_enable = true\n").is_err());
    }

    #[test]
    fn rtsp_section() {
        let c = Config::from_toml(
            "[rtsp]\nauth = \"basic\"\npublish_user = \"u\"\npublish_password = \"p\"\n",
        )
        .unwrap();
        let r = c.engine_config().rtsp;
        assert_eq!(r.auth_scheme, AuthScheme::Basic);
        assert_eq!(
            r.publish_credentials.map(|c| (c.username, c.password)),
            Some(("u".into(), "p".into()))
        );
        assert!(r.play_credentials.is_none());
    }

    #[test]
    fn tls_section_takes_sni_pairs_and_no_verify_targets() {
        let c = Config::from_toml(
            "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nno_verify = [\"origin.lan\"]\n\
             [[tls.sni]]\nnames = [\"a.example\"]\ncert = \"a.pem\"\nkey = \"a.key\"\n",
        )
        .unwrap();
        assert_eq!(c.tls.sni.len(), 1);
        assert_eq!(c.tls.sni[0].names, vec!["a.example".to_string()]);
        assert_eq!(
            c.engine_config().tls_client.no_verify,
            vec!["origin.lan".to_string()]
        );
        assert!(Config::from_toml("[[tls.sni]]\nname = \"x\"\n").is_err());
    }

    #[test]
    fn webhook_section() {
        let off = Config::default();
        assert!(off.webhook.receiver(WebhookEvent::PubStart).is_none());
        let c = Config::from_toml(
            "[webhook]\nenable = true\nupdate_interval_sec = 1\n\
             on_pub_start = \"http://127.0.0.1:10101/on_pub_start\"\n",
        )
        .unwrap();
        let url = c
            .webhook
            .receiver(WebhookEvent::PubStart)
            .expect("configured");
        assert_eq!((url.port, url.path.as_str()), (10101, "/on_pub_start"));
        assert!(
            c.webhook.receiver(WebhookEvent::PubStop).is_none(),
            "no URL"
        );
        let err = Config::from_toml("[webhook]\non_update = \"ftp://h/x\"\n").unwrap_err();
        assert!(err.to_string().contains("webhook.on_update"), "{err}");
        assert!(Config::from_toml("[webhook]\non_update = \"https://h/x\"\n").is_ok());
        assert!(Config::from_toml("[webhook]\non_sub_stop = \"h:1/x\"\n").is_err());
        assert!(Config::from_toml("[webhook]\nupdate_interval_sec = 0\n").is_err());
        assert!(Config::from_toml("[webhook]\non_stream_changed = \"http://h/\"\n").is_err());
        let c = Config::from_toml(
            "[webhook]\nenable = true\non_rtmp_connect = \"http://h/c\"\n\
             on_relay_pull_start = \"http://h/p\"\non_hls_make_ts = \"http://h/t\"\n",
        )
        .unwrap();
        for e in [
            WebhookEvent::RtmpConnect,
            WebhookEvent::RelayPullStart,
            WebhookEvent::HlsMakeTs,
        ] {
            assert!(c.webhook.receiver(e).is_some(), "{e:?}");
        }
    }
}
