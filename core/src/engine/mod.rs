//! The sans-IO server: connections in, streams in the middle, bytes out.
//!
//! A runtime accepts sockets and tells the [`Engine`] about them ([`Engine::handle_accept`]),
//! feeds what it reads ([`Engine::handle_input`]), reports closes ([`Engine::handle_close`]) and
//! time ([`Engine::handle_timeout`]). The engine answers with [`Output`]s: which connections have
//! bytes to send (fetch them with [`Engine::poll_transmit`] when the socket can take them), which
//! to close, and session start/end records for the log. After every input the runtime drains
//! [`Engine::poll_output`] until it returns `None`. The engine also opens connections of its own
//! ([`Output::Connect`], answered with [`Engine::handle_connected`], ids from [`conn_id`]) and
//! drives them through the same calls: webhooks are POSTed over them.
//!
//! A stream published on this engine has one publication (`publication.rs`): the only place
//! where the publisher's frames become the shared [`Packet`]s, and the owner of the stream's
//! track description in the hub, its muxers, silent audio, recording, HLS start and end and its
//! announcements to other engines. Input protocols only hand it frames and metadata.
//!
//! Every published stream is also muxed to MPEG-TS once, on the publisher's engine, by its
//! publication's [`crate::ts::TsMuxer`]; the TS bytes travel inside the shared [`Packet`] to HTTP-TS and
//! WS-TS players and to the HLS segmenter ([`Hls`]). Each engine runs its own segmenter over the
//! packets it sees (its local publishers' and, with [`EngineConfig::share_streams`], every other
//! engine's through [`StreamMessage`]s), so an HLS request can be answered by whichever engine
//! accepted it; segments are cut from the shared TS `Bytes`, and each closed segment is joined
//! into one buffer once, by the publisher's engine, which shares it with the others
//! ([`StreamMessage::Segment`]). Only the publisher's engine asks for files to be written
//! ([`Output::WriteFile`]), and only it records its publishers' streams ([`Recorder`],
//! [`Output::AppendFile`]), so every frame is recorded exactly once.
//!
//! Players' backlogs live in the hub's bounded per-player queues, not in the runtime: the runtime
//! asks for more only when its socket has room, so a slow player's backlog is visible to the hub,
//! which drops frames for it or disconnects it without disturbing anyone else.

mod access;
mod callback;
pub mod cluster;
mod command;
pub mod conn_id;
mod control;
mod demand;
mod http_conn;
mod ll_http;
mod notify;
mod outbound;
mod packet;
mod publication;
mod reconfigure;
mod record;
pub mod relay;
pub mod routes;
mod rtmp_conn;
mod rtsp_conn;
mod silent_audio;
mod stats;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use crate::api::guard::ApiGuard;
use crate::auth::SimpleAuth;
use crate::flv;
use crate::hls::{Hls, HlsConfig, HlsOutput};
use crate::http::websocket::WsReader;
use crate::http::{self, HttpLimits, RequestReader, Response};
use crate::hub::{Hub, HubConfig, HubEvent, Tracks};
use crate::id_map::IdMap;
use crate::media::{Codec, Frame};
use crate::rtmp::command::code;
use crate::rtmp::handshake::HANDSHAKE_RANDOM_LEN;
use crate::rtmp::server::{ServerConfig, ServerSession};
use crate::rtsp::server::{ServerConfig as RtspConfig, ServerSession as RtspSession};
use crate::scheme::{Scheme, TlsClient, TlsPolicy};
use crate::stream_key::StreamKey;
use crate::webui::UiConfig;
use publication::{Publication, Sinks};

pub use crate::api::Query;
pub use callback::{CallbackConfig, HLS_VERDICT_TTL_MS};
pub use cluster::{ClusterConfig, ClusterRole, RedisTarget};
pub use command::Command;
pub use control::{room_keys_from_json, RoomKeyConfig};
pub use demand::{MuxedFrames, Wants};
pub use notify::WebhookConfig;
pub use outbound::{OutboundError, OutboundTimeouts};
pub use packet::{FlvForm, Packet, PacketData, PlayerFormat, PlayerWriter, Rebaser};
pub use record::{RecordConfig, Recorder};
pub use relay::{PushRule, RelayConfig, RelayUrl};
pub use silent_audio::{SilentAudio, SilentAudioConfig, SILENT_SAMPLE_RATE};
pub use stats::{EngineStats, SessionStats, StreamStats, RATE_WINDOW_MS};

/// A connection's id, unique in the process: built with [`conn_id::conn_id`] from the owning
/// worker's index and a number local to it (chosen by the runtime for accepted connections, by
/// the engine for those it opens), so a command for a connection reaches its worker.
pub type ConnId = u64;

/// Which listener accepted a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// RTMP (1935).
    Rtmp,
    /// HTTP outputs: HTTP-FLV, WebSocket-FLV, HTTP-TS, WebSocket-TS and HLS (8080).
    Http,
    /// RTSP publish and play (5544).
    Rtsp,
    /// The API's own HTTP listener (`[api] addr`): everything [`Listener::Http`] serves; the
    /// API and the web UI are then served here only.
    Api,
}

impl Listener {
    /// Whether it speaks HTTP ([`Listener::Http`] or [`Listener::Api`]).
    pub fn is_http(self) -> bool {
        matches!(self, Listener::Http | Listener::Api)
    }
}

/// Settings of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// RTMP session settings (chunk size, windows, limits).
    pub rtmp: ServerConfig,
    /// HTTP request limits.
    pub http: HttpLimits,
    /// RTSP session settings (limits, timeout, authentication).
    pub rtsp: RtspConfig,
    /// Stream hub settings (GOP cache, player queues, waits).
    pub hub: HubConfig,
    /// HLS settings.
    pub hls: HlsConfig,
    /// Recording settings.
    pub record: RecordConfig,
    /// A publisher that sends nothing for this long is closed (ms).
    pub publish_idle_timeout_ms: u64,
    /// A connection that neither publishes nor plays is closed after this long idle (ms).
    pub idle_timeout_ms: u64,
    /// Time allowed for an HTTP request head to arrive (ms).
    pub http_head_timeout_ms: u64,
    /// Largest WebSocket frame accepted from a player (they only send pings and closes).
    pub ws_max_frame: usize,
    /// HTTP-FLV and WS-FLV players get Enhanced RTMP tags (HEVC as FourCC `hvc1`) unless their
    /// request says `enhanced=0`; when false (the default), legacy tags (HEVC as codec id 12)
    /// unless it says `enhanced=1`. RTMP players get Enhanced tags when their `connect` lists
    /// `fourCcList`.
    pub flv_enhanced: bool,
    /// Announce local streams with [`Output::Broadcast`] so engines on other threads can serve
    /// their players (set by multi-worker runtimes).
    pub share_streams: bool,
    /// Longest time (ms) media for players is held to be written in one go, so a player gets
    /// one write per window instead of one per frame: far fewer syscalls and TCP segments at
    /// the cost of that much extra delay (40 by default, about one video frame; scaled down
    /// with few players). 0 (`[hub] low_latency`) writes every frame at once.
    pub write_merge_ms: u64,
    /// Players on this engine at which the whole [`EngineConfig::write_merge_ms`] window
    /// applies; with fewer, the window shrinks in proportion (a few players: no wait at all),
    /// so delay is only traded for CPU when there are enough players for it to matter.
    pub write_merge_players: usize,
    /// Publish and play authorization by `lal_secret` (lal's simple auth); off by default.
    pub auth: SimpleAuth,
    /// Who may call the control API and read the statistics (`[api]`); open by default.
    pub api: ApiGuard,
    /// livego's room keys (`[api] room_keys`); off by default.
    pub room_keys: RoomKeyConfig,
    /// Publish and play authorization by an HTTP receiver (`[auth] http_callback`); off by
    /// default.
    pub auth_callback: CallbackConfig,
    /// What a publisher gets for a stream that already has a live publisher.
    pub publish_conflict: PublishConflict,
    /// Silent AAC for streams published without audio.
    pub silent_audio: SilentAudioConfig,
    /// This engine's worker index (0 for a single engine): the high bits of the ids of the
    /// connections it opens; worker 0 also sends the process-wide webhooks.
    pub worker: usize,
    /// How many workers (engines) the process runs.
    pub workers: usize,
    /// Webhooks (`[webhook]`); no receivers: none are sent.
    pub webhook: WebhookConfig,
    /// Relays to and from other servers (`[relay]`); none by default.
    pub relay: RelayConfig,
    /// The web UI (`[http] ui`) and what it is told the server listens on.
    pub ui: UiConfig,
    /// Which TLS targets of relays and webhooks are not verified (`[tls] no_verify`).
    pub tls_client: TlsPolicy,
    /// The cluster registry in Redis (`[cluster]`); off by default.
    pub cluster: ClusterConfig,
}

/// What happens when a publisher arrives for a stream that already has a live one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishConflict {
    /// The newcomer is refused with a protocol error; the live publisher goes on.
    #[default]
    Reject,
    /// The newcomer takes over and the old publisher is disconnected; players stay and
    /// continue from the newcomer's next key frame (an encoder restarted elsewhere, a backup).
    Kick,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            rtmp: ServerConfig::default(),
            http: HttpLimits::default(),
            rtsp: RtspConfig::default(),
            hub: HubConfig::default(),
            hls: HlsConfig::default(),
            record: RecordConfig::default(),
            publish_idle_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            http_head_timeout_ms: 10_000,
            ws_max_frame: 64 * 1024,
            flv_enhanced: false,
            share_streams: false,
            write_merge_ms: 40,
            write_merge_players: 1000,
            publish_conflict: PublishConflict::Reject,
            auth: SimpleAuth::default(),
            auth_callback: CallbackConfig::default(),
            api: ApiGuard::default(),
            room_keys: RoomKeyConfig::default(),
            silent_audio: SilentAudioConfig::default(),
            worker: 0,
            workers: 1,
            webhook: WebhookConfig::default(),
            relay: RelayConfig::default(),
            ui: UiConfig::default(),
            tls_client: TlsPolicy::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// Protocol of a session, as logged and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// RTMP.
    Rtmp,
    /// HTTP-FLV.
    HttpFlv,
    /// WebSocket-FLV.
    WsFlv,
    /// HTTP-TS.
    HttpTs,
    /// WebSocket-TS.
    WsTs,
    /// HTTP-fMP4.
    HttpFmp4,
    /// WebSocket-fMP4.
    WsFmp4,
    /// An HTTP request that is not a stream (404, preflight, ...).
    Http,
    /// RTSP (TCP interleaved or UDP).
    Rtsp,
}

impl Protocol {
    /// The name logs and `/metrics` give a session of this protocol, over TLS when `tls`
    /// (`RTMPS`, `HTTPS-FLV`, `WSS-FLV`, `HTTPS-TS`, `WSS-TS`, `HTTPS-FMP4`, `WSS-FMP4`, `HTTPS`,
    /// `RTSPS`).
    pub fn name(self, tls: bool) -> &'static str {
        match (self, tls) {
            (Protocol::Rtmp, false) => "RTMP",
            (Protocol::Rtmp, true) => "RTMPS",
            (Protocol::HttpFlv, false) => "HTTP-FLV",
            (Protocol::HttpFlv, true) => "HTTPS-FLV",
            (Protocol::WsFlv, false) => "WS-FLV",
            (Protocol::WsFlv, true) => "WSS-FLV",
            (Protocol::HttpTs, false) => "HTTP-TS",
            (Protocol::HttpTs, true) => "HTTPS-TS",
            (Protocol::WsTs, false) => "WS-TS",
            (Protocol::WsTs, true) => "WSS-TS",
            (Protocol::HttpFmp4, false) => "HTTP-FMP4",
            (Protocol::HttpFmp4, true) => "HTTPS-FMP4",
            (Protocol::WsFmp4, false) => "WS-FMP4",
            (Protocol::WsFmp4, true) => "WSS-FMP4",
            (Protocol::Http, false) => "HTTP",
            (Protocol::Http, true) => "HTTPS",
            (Protocol::Rtsp, false) => "RTSP",
            (Protocol::Rtsp, true) => "RTSPS",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Rtmp => "RTMP",
            Protocol::HttpFlv => "HTTP-FLV",
            Protocol::WsFlv => "WS-FLV",
            Protocol::HttpTs => "HTTP-TS",
            Protocol::WsTs => "WS-TS",
            Protocol::HttpFmp4 => "HTTP-FMP4",
            Protocol::WsFmp4 => "WS-FMP4",
            Protocol::Http => "HTTP",
            Protocol::Rtsp => "RTSP",
        })
    }
}

/// The [`Output::Connect`] for an outbound connection `conn` of `scheme` to `host:port`:
/// every client (relay, webhook) asks for its connection through this, so the scheme decides
/// TLS and `policy` (`[tls] no_verify`) decides verification in one place.
pub(crate) fn connect_output(
    policy: &TlsPolicy,
    conn: ConnId,
    scheme: Scheme,
    host: &str,
    port: u16,
) -> Output {
    Output::Connect {
        conn,
        host: host.to_owned(),
        port,
        tls: policy.client(scheme, host, port),
    }
}

/// Whether a session publishes or plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not (yet) publishing or playing.
    None,
    /// Publishing a stream.
    Publish,
    /// Playing a stream.
    Play,
    /// A relay pulling a stream from another server (it publishes the stream here).
    Pull,
    /// A relay pushing a local stream to another server (it plays the stream here).
    Push,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::None => "-",
            Role::Publish => "publish",
            Role::Play => "play",
            Role::Pull => "pull",
            Role::Push => "push",
        })
    }
}

/// A session record for the log: one at start, one at end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The connection.
    pub conn: ConnId,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Accepted on a TLS listener (RTMPS, HTTPS, RTSPS).
    pub tls: bool,
    /// Publish or play.
    pub role: Role,
    /// `app/stream`, empty when none.
    pub stream: String,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// How long the connection lasted, ms.
    pub duration_ms: u64,
    /// Why it ended (empty at start).
    pub reason: String,
}

/// How much a [`Output::Log`] line matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Something failed that an operator should know about.
    Warn,
    /// Normal operation worth a line.
    Info,
    /// Details for debugging.
    Debug,
}

/// What the engine asks of the runtime.
#[derive(Clone, Debug)]
pub enum Output {
    /// The connection has bytes to send; call [`Engine::poll_transmit`] when its socket can write.
    Transmit(ConnId),
    /// Close the connection; when `flush`, first send what [`Engine::poll_transmit`] still gives.
    Close {
        /// The connection.
        conn: ConnId,
        /// Send pending bytes first.
        flush: bool,
    },
    /// A session started publishing or playing.
    SessionStarted(SessionRecord),
    /// A connection ended (always exactly once per accepted connection).
    SessionEnded(SessionRecord),
    /// Hand this to every other engine of the process ([`Engine::handle_remote`]); only with
    /// [`EngineConfig::share_streams`].
    Broadcast(StreamMessage),
    /// Replace the file at `path` (creating its directory) with the concatenation of `data`
    /// (HLS segments and playlists under the configured out path; the path is built from the
    /// configuration and validated stream names only).
    WriteFile {
        /// The file.
        path: String,
        /// Its new contents, in shared pieces.
        data: Vec<Bytes>,
    },
    /// Append `data` to the recording at `path`, creating its directory and the file (empty)
    /// on the first append of that path (recordings under the configured out path; the path
    /// is built from the configuration and validated stream names only).
    AppendFile {
        /// The file.
        path: String,
        /// Bytes to append, in shared pieces.
        data: Vec<Bytes>,
    },
    /// The recording at `path` is complete: close it (nothing more is appended to it).
    CloseFile {
        /// The file.
        path: String,
    },
    /// The recording at `path`, closed just before, gets a new head: replace its first `len`
    /// bytes with `head` (the rest moves). An FLV recording's closing `onMetaData` with its
    /// duration, size and key frame index. The runtime may do it off the event loop; on failure
    /// the file stays as it was.
    ReplaceFileHead {
        /// The file.
        path: String,
        /// Bytes of the file that `head` replaces.
        len: u64,
        /// The new head.
        head: Bytes,
    },
    /// Remove the file at `path` if it exists.
    RemoveFile {
        /// The file.
        path: String,
    },
    /// An RTSP SETUP asks for UDP (a client's, or one a relay's RTSP client sends): bind a free
    /// port pair (RTP on an even port, RTCP on the next) for `track` of `conn` and answer with
    /// [`Engine::handle_udp_open`].
    OpenUdp {
        /// The RTSP connection.
        conn: ConnId,
        /// The track.
        track: usize,
    },
    /// Send one datagram from the port pair of `track` of `conn` (its RTCP port when `rtcp`).
    SendUdp {
        /// The RTSP connection.
        conn: ConnId,
        /// The track.
        track: usize,
        /// From the RTCP port rather than the RTP port.
        rtcp: bool,
        /// Destination.
        to: SocketAddr,
        /// The whole datagram.
        data: Bytes,
    },
    /// Close every UDP socket opened for `conn` (also due when the connection closes).
    CloseUdp {
        /// The RTSP connection.
        conn: ConnId,
    },
    /// An HTTP request whose answer needs every engine (the statistics API, `/metrics`, kicking
    /// a session): answer it with [`Engine::answer`] and the [`EngineStats`] of every engine of
    /// the process. The connection reads nothing more until then.
    Gather {
        /// The HTTP connection.
        conn: ConnId,
        /// What is asked.
        query: Query,
    },
    /// Hand `command` to the engine of worker `worker` ([`Engine::handle_command`]; this engine
    /// when it is its own worker): it acts on a connection that engine owns
    /// ([`conn_id::worker_of`]).
    Command {
        /// The worker whose engine executes it.
        worker: usize,
        /// What to do.
        command: Command,
    },
    /// Open a TCP connection to `host:port` for the engine (outbound: webhooks, relays), in TLS
    /// when `tls` says so. Resolve `host` (a name or an IP address) off the event loop,
    /// connect, and report with [`Engine::handle_connected`] (the engine's bytes may come before
    /// the TLS handshake is over: the transform holds them); then drive `conn` like an accepted
    /// connection, through the TLS client transform when there is one. An
    /// [`Output::Close`] for `conn` may come before the connection is open: abandon the attempt
    /// (and report nothing).
    Connect {
        /// The id the engine chose for it ([`conn_id::is_outbound`]).
        conn: ConnId,
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// TLS to wrap the connection in (`None`: plain TCP); see [`crate::scheme`].
        tls: Option<TlsClient>,
    },
    /// A line for the server's log (core has no logger).
    Log {
        /// How much it matters.
        level: LogLevel,
        /// The line.
        message: String,
    },
    /// `POST /api/ctrl/reload` on `conn`: reload the configuration file as on SIGHUP and
    /// answer with [`Engine::answer_reload`] (the connection reads nothing more until then).
    Reload {
        /// The API request's connection.
        conn: ConnId,
    },
}

/// What one engine tells the others about the streams published on it, so a player may sit on
/// another thread than its publisher. Packets are shared, never copied.
#[derive(Clone, Debug)]
pub enum StreamMessage {
    /// A stream started (or its publisher came back, or a new publisher took it over).
    Start {
        /// The stream.
        stream: StreamKey,
        /// The publishing connection, so messages of a publisher that was replaced are told
        /// apart from those of its successor.
        publisher: ConnId,
    },
    /// A packet of a started stream.
    Packet {
        /// The stream.
        stream: StreamKey,
        /// The publishing connection.
        publisher: ConnId,
        /// The packet.
        packet: Packet,
    },
    /// What the stream's tracks are (sent again whenever that changes).
    Tracks {
        /// The stream.
        stream: StreamKey,
        /// The publishing connection.
        publisher: ConnId,
        /// The description.
        tracks: Tracks,
    },
    /// A closed HLS segment joined into one buffer by the engine of the stream's publisher
    /// (after the packet that closed it): the receiving engine serves it in place of the
    /// pieces it cut itself when they hold the same bytes ([`Hls::adopt_segment`]), so the
    /// segment is joined once and held once over every worker.
    Segment {
        /// The stream.
        stream: StreamKey,
        /// The segment's sequence number.
        seq: u64,
        /// Its bytes.
        data: Bytes,
    },
    /// What the sending engine's players of a stream consume of its shared encodings, when
    /// that changed: the engine of its publisher muxes only what someone consumes
    /// ([`demand`]).
    Wants {
        /// The stream.
        stream: StreamKey,
        /// The sending engine's index.
        worker: usize,
        /// What its players consume.
        wants: demand::Wants,
    },
    /// The publisher left (the receiving hub applies its grace period).
    End {
        /// The stream.
        stream: StreamKey,
        /// The publishing connection.
        publisher: ConnId,
    },
}

/// The engine's parts a [`Publication`] feeds, borrowed field by field (so the publication,
/// another field, stays borrowable).
macro_rules! sinks {
    ($engine:expr) => {
        Sinks {
            hub: &mut $engine.hub,
            hls: &mut $engine.hls,
            outputs: &mut $engine.outputs,
            recording_dirty: &mut $engine.recording_dirty,
            demand: &mut $engine.demand,
        }
    };
}

/// How long a closing connection may take to accept its last bytes.
const FLUSH_TIMEOUT_MS: u64 = 5_000;

/// Hub ids of remote publishers have the top bit set so they never meet a runtime's ids.
const REMOTE_PUBLISHER_BIT: u64 = 1 << 63;

/// A stream published on another engine, as this engine's hub knows it.
#[derive(Clone, Copy, Debug)]
struct RemoteFeed {
    /// The id standing for the publisher in this engine's hub.
    hub_id: u64,
    /// The publisher's connection on its own engine.
    publisher: ConnId,
}

#[derive(Debug)]
enum HttpState {
    AwaitRequest,
    Waiting {
        format: PlayerFormat,
    },
    /// A request waits for [`Engine::answer`] to an [`Output::Gather`].
    AwaitAnswer {
        keep_alive: bool,
        head_only: bool,
    },
    /// A player or playlist request held for the auth callback's answer ([`callback`]).
    Authorizing,
    /// A Low-Latency HLS request held until what it asks for exists ([`ll_http`]).
    Held {
        ask: http_conn::Ask,
        key: Box<StreamKey>,
        what: ll_http::HeldLl,
    },
    Streaming,
    Done,
}

#[derive(Debug)]
enum ConnKind {
    Rtmp {
        session: Box<ServerSession>,
        publish_id: Option<u32>,
        play_id: Option<u32>,
    },
    Http {
        reader: Box<RequestReader>,
        ws: Option<Box<WsReader>>,
        state: HttpState,
        /// Accepted on the API's own listener ([`Listener::Api`]).
        api_listener: bool,
    },
    Rtsp(Box<rtsp_conn::RtspConn>),
}

#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    started_ms: u64,
    last_input_ms: u64,
    bytes_in: u64,
    bytes_out: u64,
    protocol: Protocol,
    /// Accepted on a TLS listener.
    tls: bool,
    role: Role,
    /// The stream it publishes or plays (or last asked for).
    stream: Option<StreamKey>,
    kind: ConnKind,
    /// Bytes to send before any media: session output, HTTP heads.
    pending: VecDeque<Bytes>,
    writer: Option<PlayerWriter>,
    closing: bool,
    /// When a flushing close gives up on a peer that does not read.
    close_by_ms: u64,
    /// When the HTTP request head now awaited began (accept, or the previous request).
    head_started_ms: u64,
    timer_armed: bool,
    /// Listed in [`Engine::merging`]: media is waiting for the merge window to end.
    merging: bool,
    /// As a player, it reads Enhanced RTMP tags: an RTMP `connect` with `fourCcList`, or an
    /// HTTP-FLV request by [`EngineConfig::flv_enhanced`] or its `enhanced=` query.
    enhanced_flv: bool,
}

impl Conn {
    /// `app/stream` for records and statistics, empty when none.
    fn stream_name(&self) -> String {
        self.stream
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}

/// The server engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    hub: Hub<Packet>,
    hls: Hls,
    conns: IdMap<ConnId, Conn>,
    outputs: VecDeque<Output>,
    timers: BinaryHeap<Reverse<(u64, ConnId)>>,
    rng: u64,
    /// Streams published on other engines, by name: the hub id standing for their publisher
    /// here, and that publisher's connection on its own engine.
    remote: HashMap<StreamKey, RemoteFeed>,
    next_remote_id: u64,
    /// Players with media held back by [`EngineConfig::write_merge_ms`], and when the window
    /// that holds them ends.
    merging: Vec<ConnId>,
    merge_until: Option<u64>,
    /// The streams published on this engine, by publishing connection.
    publications: IdMap<ConnId, Publication>,
    /// Publications whose recordings have bytes not yet handed out.
    recording_dirty: Vec<ConnId>,
    /// Bitrate measurements and the byte counts of closed connections, for [`Engine::stats`].
    meters: stats::Meters,
    /// Connections this engine opened ([`Output::Connect`]).
    outbound: outbound::Outbound,
    /// Webhooks: queue, requests in flight, started sessions.
    notify: notify::Notify,
    /// Relay pulls and pushes and their RTMP client connections.
    relay: relay::Relays,
    /// The cluster registry client and its connection to Redis.
    cluster: cluster::Cluster,
    /// Requests held for the auth callback's answer.
    callbacks: callback::Callbacks,
    /// The IP blacklist and the room keys.
    control: control::ControlState,
    /// What each stream's shared encodings are consumed by.
    demand: demand::Demand,
}

impl Engine {
    /// A new engine. `seed` feeds the handshake's random bytes (any value; vary it per process).
    pub fn new(config: EngineConfig, seed: u64) -> Self {
        Engine {
            hub: Hub::new(config.hub.clone()),
            hls: Hls::new(config.hls.clone()),
            outbound: outbound::Outbound::new(config.worker),
            notify: notify::Notify::new(config.webhook.clone(), config.worker, config.workers),
            relay: relay::Relays::new(config.relay.clone()),
            cluster: cluster::Cluster::new(config.cluster.clone()),
            callbacks: callback::Callbacks::default(),
            control: control::ControlState::new(&config.room_keys),
            demand: demand::Demand::new(
                demand::Wants::of_hls(&config.hls),
                config.worker,
                config.share_streams,
            ),
            config,
            conns: IdMap::default(),
            outputs: VecDeque::new(),
            timers: BinaryHeap::new(),
            rng: seed | 1,
            remote: HashMap::new(),
            next_remote_id: 0,
            merging: Vec::new(),
            merge_until: None,
            publications: IdMap::default(),
            recording_dirty: Vec::new(),
            meters: stats::Meters::default(),
        }
    }

    /// The stream hub (read-only), for statistics.
    pub fn hub(&self) -> &Hub<Packet> {
        &self.hub
    }

    /// The HLS segmenters (read-only), for statistics.
    pub fn hls(&self) -> &Hls {
        &self.hls
    }

    /// The worker (index among the process's engines) this engine is: the one
    /// [`conn_id::worker_of`] names for its connections.
    pub fn worker(&self) -> usize {
        self.config.worker
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            // xorshift64*: plenty for handshake filler, which needs no secrecy.
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            v.extend_from_slice(&self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// A connection was accepted on `listener` from `peer`.
    pub fn handle_accept(
        &mut self,
        conn: ConnId,
        listener: Listener,
        peer: SocketAddr,
        now_ms: u64,
    ) {
        self.accept(conn, listener, peer, false, now_ms);
    }

    /// A connection was accepted on the TLS listener of `listener`'s protocol (RTMPS, HTTPS,
    /// RTSPS) from `peer`: the engine sees its plaintext; its records, statistics and metrics
    /// name the protocol with TLS.
    pub fn handle_accept_tls(
        &mut self,
        conn: ConnId,
        listener: Listener,
        peer: SocketAddr,
        now_ms: u64,
    ) {
        self.accept(conn, listener, peer, true, now_ms);
    }

    fn accept(
        &mut self,
        conn: ConnId,
        listener: Listener,
        peer: SocketAddr,
        tls: bool,
        now_ms: u64,
    ) {
        let (kind, protocol) = match listener {
            Listener::Rtmp => {
                let random = self.random_bytes(HANDSHAKE_RANDOM_LEN);
                let session = ServerSession::new(self.config.rtmp.clone(), &random, now_ms);
                (
                    ConnKind::Rtmp {
                        session: Box::new(session),
                        publish_id: None,
                        play_id: None,
                    },
                    Protocol::Rtmp,
                )
            }
            Listener::Http | Listener::Api => (
                ConnKind::Http {
                    reader: Box::new(RequestReader::new(self.config.http.clone())),
                    ws: None,
                    state: HttpState::AwaitRequest,
                    api_listener: listener == Listener::Api,
                },
                Protocol::Http,
            ),
            Listener::Rtsp => {
                let random = self.random_bytes(32);
                let session = RtspSession::new(self.config.rtsp.clone(), &random, now_ms);
                (
                    ConnKind::Rtsp(Box::new(rtsp_conn::RtspConn::new(session, now_ms))),
                    Protocol::Rtsp,
                )
            }
        };
        self.conns.insert(
            conn,
            Conn {
                peer,
                started_ms: now_ms,
                last_input_ms: now_ms,
                bytes_in: 0,
                bytes_out: 0,
                protocol,
                tls,
                role: Role::None,
                stream: None,
                kind,
                pending: VecDeque::new(),
                writer: None,
                closing: false,
                close_by_ms: 0,
                head_started_ms: now_ms,
                timer_armed: false,
                merging: false,
                enhanced_flv: false,
            },
        );
        if self.ip_blocked(peer.ip(), now_ms) {
            return self.close(conn, false, "address blacklisted by the API", now_ms);
        }
        self.arm_timer(conn);
    }

    /// Bytes arrived on a connection.
    pub fn handle_input(&mut self, conn: ConnId, data: &[u8], now_ms: u64) {
        if self.cluster.owns(conn) {
            return self.cluster_input(data, now_ms);
        }
        if self.relay.owns(conn) {
            return self.relay_input(conn, data, now_ms);
        }
        if conn_id::is_outbound(conn) {
            self.outbound.handle_input(conn, data, &mut self.outputs);
            self.pump_outbound(now_ms);
            return self.run_callbacks(now_ms);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closing {
            return;
        }
        c.bytes_in += data.len() as u64;
        c.last_input_ms = now_ms;
        match &mut c.kind {
            ConnKind::Rtmp { session, .. } => {
                let result = session.handle_input(data, now_ms);
                self.drain_rtmp(conn, now_ms);
                if let Err(e) = result {
                    self.close(conn, false, &e.to_string(), now_ms);
                }
            }
            ConnKind::Http {
                reader, ws, state, ..
            } => {
                if let Some(ws) = ws {
                    ws.push(data);
                    self.drain_ws(conn, now_ms);
                } else if !matches!(
                    state,
                    HttpState::AwaitRequest
                        | HttpState::AwaitAnswer { .. }
                        | HttpState::Authorizing
                        | HttpState::Held { .. }
                ) {
                    // A streaming player has nothing more to say: bytes from it are a protocol
                    // error, closed at once rather than buffered or answered mid-body.
                    self.close(conn, false, "bytes from a streaming HTTP player", now_ms);
                } else {
                    match reader.push(data) {
                        Ok(()) => self.drain_http(conn, now_ms),
                        Err(e) => self.http_error(conn, e.status(), &e.to_string(), now_ms),
                    }
                }
            }
            ConnKind::Rtsp(_) => self.rtsp_input(conn, data, now_ms),
        }
        self.drain_hub(now_ms);
    }

    /// The runtime's answer to [`Output::Connect`]: the connection is open (`Ok` with the
    /// peer's address) or could not be made (`Err` with why; the runtime holds nothing more
    /// for it). Unknown ids (the engine gave up on them) are ignored.
    pub fn handle_connected(
        &mut self,
        conn: ConnId,
        result: Result<SocketAddr, String>,
        now_ms: u64,
    ) {
        if self.cluster.owns(conn) {
            return self.cluster_connected(result, now_ms);
        }
        if self.relay.owns(conn) {
            self.relay_connected(conn, result, now_ms);
            return self.drain_hub(now_ms);
        }
        self.outbound
            .handle_connected(conn, result, now_ms, &mut self.outputs);
        self.pump_outbound(now_ms);
        self.run_callbacks(now_ms);
    }

    /// The peer closed the connection, or the socket failed. The engine forgets it.
    pub fn handle_close(&mut self, conn: ConnId, reason: &str, now_ms: u64) {
        if self.cluster.owns(conn) {
            return self.cluster_closed(reason, now_ms);
        }
        if self.relay.owns(conn) {
            return self.relay_closed(conn, reason, now_ms);
        }
        if conn_id::is_outbound(conn) {
            self.outbound.handle_close(conn, reason);
            self.pump_outbound(now_ms);
            return self.run_callbacks(now_ms);
        }
        self.finish(conn, reason, now_ms);
        self.drain_hub(now_ms);
    }

    /// Time passed: expire deadlines (handshakes, idle connections, waiting players, grace periods).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.merge_until.is_some_and(|at| at <= now_ms) {
            self.release_merged();
        }
        self.hub.handle_timeout(now_ms);
        self.hls.handle_timeout(now_ms);
        self.outbound.handle_timeout(now_ms, &mut self.outputs);
        self.pump_outbound(now_ms);
        self.callbacks
            .handle_timeout(now_ms, &self.config.auth_callback);
        self.run_callbacks(now_ms);
        self.relay_timeout(now_ms);
        self.cluster_timeout(now_ms);
        self.sweep_demand(now_ms);
        while let Some(Reverse((at, conn))) = self.timers.peek().copied() {
            if at > now_ms {
                break;
            }
            self.timers.pop();
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.timer_armed = false;
            let closing = c.closing;
            if !closing && matches!(c.kind, ConnKind::Rtsp(_)) {
                self.rtsp_timeout(conn, now_ms);
                continue;
            }
            match self.deadline_of(conn) {
                Some((deadline, _)) if deadline <= now_ms && closing => {
                    // The flush of a closing connection timed out: drop it without more waiting.
                    self.outputs.push_back(Output::Close { conn, flush: false });
                    self.forget(conn);
                }
                Some((deadline, reason)) if deadline <= now_ms => {
                    self.close(conn, false, reason, now_ms)
                }
                Some(_) => self.arm_timer(conn),
                None => {}
            }
        }
        self.drain_hub(now_ms);
    }

    /// The earliest time [`Engine::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        let conn_timer = self.timers.peek().map(|Reverse((at, _))| *at);
        [
            conn_timer,
            self.hub.poll_timeout(),
            self.hls.poll_timeout(),
            self.merge_until,
            self.demand.poll_timeout(),
            self.outbound.poll_timeout(),
            self.notify.poll_timeout(),
            self.relay.poll_timeout(),
            self.cluster.poll_timeout(),
            self.callbacks.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next output. Recordings hand out what they accumulated when the rest is drained,
    /// so one input's frames are appended in one go.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            self.flush_recordings();
        }
        self.outputs.pop_front()
    }

    /// Appends up to about `budget` bytes for `conn` to `out` (whole messages; may exceed the budget
    /// by one message). Returns the byte count; 0 when there is nothing to send now.
    pub fn poll_transmit(&mut self, conn: ConnId, budget: usize, out: &mut Vec<Bytes>) -> usize {
        if self.cluster.owns(conn) {
            return self.cluster_transmit(out);
        }
        if self.relay.owns(conn) {
            return self.relay_transmit(conn, budget, out);
        }
        if conn_id::is_outbound(conn) {
            return self.outbound.poll_transmit(conn, out);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return 0;
        };
        let mut n = 0;
        if let ConnKind::Rtsp(_) = c.kind {
            while let Some(b) = c.pending.pop_front() {
                n += b.len();
                out.push(b);
            }
            n += self.rtsp_send(conn, budget, out);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.bytes_out += n as u64;
            }
            return n;
        }
        if let ConnKind::Rtmp { session, .. } = &mut c.kind {
            while let Some(b) = session.poll_transmit() {
                c.pending.push_back(b);
            }
        }
        while let Some(b) = c.pending.pop_front() {
            n += b.len();
            out.push(b);
        }
        if let Some(writer) = c.writer.as_mut() {
            while n < budget {
                let Some(packet) = self.hub.poll_packet(conn) else {
                    break;
                };
                n += writer.render(&packet, out);
            }
            if n < budget {
                // Caught up: nothing follows at once, so the last tag is completed now.
                let at = out.len();
                writer.finish(out);
                n += out[at..].iter().map(Bytes::len).sum::<usize>();
            }
            while let Some(codec) = writer.take_enhanced_only() {
                let what = if codec == Codec::Opus {
                    "left out (players ask for it with fourCcList in RTMP connect, or ?enhanced=1 on HTTP-FLV)"
                } else {
                    "sent as Enhanced RTMP"
                };
                self.outputs.push_back(Output::Log {
                    level: LogLevel::Info,
                    message: format!(
                        "player {conn} ({}) did not announce Enhanced RTMP; {} has no legacy FLV form and is {what}",
                        c.peer,
                        codec.name()
                    ),
                });
            }
        }
        c.bytes_out += n as u64;
        n
    }

    fn arm_timer(&mut self, conn: ConnId) {
        if let Some((deadline, _)) = self.deadline_of(conn) {
            if let Some(c) = self.conns.get_mut(&conn) {
                if !c.timer_armed {
                    c.timer_armed = true;
                    self.timers.push(Reverse((deadline, conn)));
                }
            }
        }
    }

    fn deadline_of(&self, conn: ConnId) -> Option<(u64, &'static str)> {
        let c = self.conns.get(&conn)?;
        if c.closing {
            return Some((c.close_by_ms, "peer did not read its last bytes"));
        }
        match &c.kind {
            ConnKind::Rtsp(r) => r
                .session
                .poll_timeout()
                .map(|d| (d, "RTSP session timeout")),
            ConnKind::Rtmp { session, .. } if c.role == Role::None => {
                let idle = c.last_input_ms.saturating_add(self.config.idle_timeout_ms);
                match session.poll_timeout() {
                    Some(d) => Some((d.min(idle), "handshake/connect timeout")),
                    None => Some((idle, "idle timeout")),
                }
            }
            ConnKind::Http {
                state: HttpState::AwaitRequest,
                ..
            } => Some((
                c.head_started_ms
                    .saturating_add(self.config.http_head_timeout_ms),
                "HTTP request head timeout",
            )),
            _ if c.role == Role::Publish => Some((
                c.last_input_ms
                    .saturating_add(self.config.publish_idle_timeout_ms),
                "publisher idle timeout",
            )),
            _ => None,
        }
    }

    fn record(&self, conn: ConnId, now_ms: u64, reason: &str) -> Option<SessionRecord> {
        let c = self.conns.get(&conn)?;
        Some(SessionRecord {
            conn,
            peer: c.peer,
            protocol: c.protocol,
            tls: c.tls,
            role: c.role,
            stream: c.stream_name(),
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            duration_ms: now_ms.saturating_sub(c.started_ms),
            reason: reason.to_owned(),
        })
    }

    /// The server's wall clock (ms since the Unix epoch) at `now_ms`.
    fn wall_ms(&self, now_ms: u64) -> u64 {
        self.config.rtsp.wallclock_offset_ms.saturating_add(now_ms)
    }

    fn want_transmit(&mut self, conn: ConnId) {
        self.outputs.push_back(Output::Transmit(conn));
    }

    /// How long player media waits now: [`EngineConfig::write_merge_ms`] scaled by the player
    /// count over [`EngineConfig::write_merge_players`].
    fn merge_window(&self) -> u64 {
        let full = self.config.write_merge_players.max(1) as u64;
        let players = (self.hub.player_count() as u64).min(full);
        self.config.write_merge_ms.saturating_mul(players) / full
    }

    /// Delays a player's media to the end of the current merge window (one window for all
    /// players, so a frame reaches every player in the same write pass), opening one that ends
    /// at `until` if none is open.
    fn hold(&mut self, conn: ConnId, until: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.merging {
            c.merging = true;
            self.merging.push(conn);
            self.merge_until.get_or_insert(until);
        }
    }

    /// Once in a while: tells the other engines which shared encodings this engine's players
    /// stopped consuming (see [`demand`]).
    fn sweep_demand(&mut self, now_ms: u64) {
        if self.demand.poll_timeout().map_or(true, |at| now_ms < at) {
            return;
        }
        let mut local: HashMap<StreamKey, demand::Wants> = HashMap::new();
        for c in self.conns.values() {
            let format = match (&c.writer, &c.kind) {
                (Some(w), _) => w.format(),
                (
                    None,
                    ConnKind::Http {
                        state: HttpState::Waiting { format },
                        ..
                    },
                ) => *format,
                _ => continue,
            };
            let wants = demand::Wants::of_player(format);
            if let (Some(stream), false) = (&c.stream, wants.is_none()) {
                let all = local.entry(stream.clone()).or_default();
                *all = *all | wants;
            }
        }
        if self.hls.config().ll_on_demand {
            for stream in self.hls.ll().requested(now_ms) {
                let all = local.entry(stream.clone()).or_default();
                *all = *all | demand::Wants::LL;
            }
        }
        let mut gone = Vec::new();
        self.demand.sweep(&local, now_ms, &mut gone);
        self.outputs.extend(gone.into_iter().map(Output::Broadcast));
    }

    /// The merge window ended: every held player gets its batch written.
    fn release_merged(&mut self) {
        self.merge_until = None;
        for conn in std::mem::take(&mut self.merging) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.merging = false;
                self.want_transmit(conn);
            }
        }
    }

    /// Ends `conn`'s session now (detached from the hub, end record emitted) and asks the runtime
    /// to close it, after sending what is pending when `flush`. A closing connection takes no input;
    /// with `flush` it stays known until the runtime reports the close, so its bytes can drain.
    fn close(&mut self, conn: ConnId, flush: bool, reason: &str, now_ms: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closing {
            return;
        }
        c.closing = true;
        c.close_by_ms = now_ms.saturating_add(FLUSH_TIMEOUT_MS);
        c.timer_armed = false;
        c.writer = None;
        if let ConnKind::Rtmp { session, .. } = &mut c.kind {
            while let Some(b) = session.poll_transmit() {
                c.pending.push_back(b);
            }
        }
        if let ConnKind::Rtsp(r) = &c.kind {
            if r.has_udp() {
                self.outputs.push_back(Output::CloseUdp { conn });
            }
            let mut sink = Vec::new();
            self.rtsp_transmits(conn, &mut sink);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.pending.extend(sink);
            }
        }
        self.detach(conn, now_ms);
        if let Some(rec) = self.record(conn, now_ms, reason) {
            self.notify_session(&rec, false, now_ms);
            self.outputs.push_back(Output::SessionEnded(rec));
        }
        self.outputs.push_back(Output::Close { conn, flush });
        if flush {
            self.arm_timer(conn);
        } else {
            self.forget(conn);
        }
    }

    fn detach(&mut self, conn: ConnId, now_ms: u64) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.role == Role::Publish {
            // A kicked publisher's stream lives on: it has no publication left to end.
            if self.publications.contains_key(&conn) {
                self.rtsp_flush_interleaver(conn);
                self.end_publish(conn, now_ms);
            }
        } else {
            // Players, and players still waiting for their stream, are known to the hub.
            self.hub.stop_play(conn);
            self.hls.ll().cancel(conn);
        }
    }

    /// Forgets a connection, reporting its end unless [`Engine::close`] already did.
    fn finish(&mut self, conn: ConnId, reason: &str, now_ms: u64) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.closing {
            self.detach(conn, now_ms);
            if let Some(rec) = self.record(conn, now_ms, reason) {
                self.notify_session(&rec, false, now_ms);
                self.outputs.push_back(Output::SessionEnded(rec));
            }
        }
        self.forget(conn);
    }

    fn start_session(
        &mut self,
        conn: ConnId,
        role: Role,
        protocol: Protocol,
        stream: &StreamKey,
        now_ms: u64,
    ) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.role = role;
            c.protocol = protocol;
            c.stream = Some(stream.clone());
        }
        if let Some(rec) = self.record(conn, now_ms, "") {
            self.notify_session(&rec, true, now_ms);
            self.outputs.push_back(Output::SessionStarted(rec));
        }
        self.arm_timer(conn);
    }

    /// A player's stream is live: answer the play and start sending.
    fn start_player(&mut self, conn: ConnId, now_ms: u64) {
        let chunk_size = self.config.rtmp.chunk_size;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(stream) = c.stream.clone() else {
            return;
        };
        let protocol = match &mut c.kind {
            ConnKind::Rtmp {
                session, play_id, ..
            } => {
                let Some(stream_id) = *play_id else { return };
                // Err: the client withdrew the play; see `answer_rtmp`.
                let _ = session.accept_play(stream_id);
                while let Some(b) = session.poll_transmit() {
                    c.pending.push_back(b);
                }
                let mut w = PlayerWriter::new(PlayerFormat::Rtmp { stream_id }, chunk_size);
                w.set_flv_form(FlvForm::for_player(c.enhanced_flv));
                c.writer = Some(w);
                Protocol::Rtmp
            }
            // RTSP players answer their DESCRIBE once the stream's tracks are described.
            ConnKind::Rtsp(_) => return self.rtsp_player_ready(conn, now_ms),
            ConnKind::Http { state, .. } => {
                let HttpState::Waiting { format } = *state else {
                    return;
                };
                *state = HttpState::Streaming;
                let mut head = BytesMut::with_capacity(256);
                if !format.is_websocket() {
                    http::streaming_response_head(format.content_type(), false, &mut head);
                    c.pending.push_back(head.freeze());
                }
                let mut w = PlayerWriter::new(format, chunk_size);
                w.set_flv_form(FlvForm::for_player(c.enhanced_flv));
                c.writer = Some(w);
                match format {
                    PlayerFormat::WsFlv => Protocol::WsFlv,
                    PlayerFormat::Ts => Protocol::HttpTs,
                    PlayerFormat::WsTs => Protocol::WsTs,
                    PlayerFormat::Fmp4 => Protocol::HttpFmp4,
                    PlayerFormat::WsFmp4 => Protocol::WsFmp4,
                    _ => Protocol::HttpFlv,
                }
            }
        };
        // The FLV header announces audio only if FLV can carry it to this player (Opus only
        // with Enhanced RTMP tags).
        let enhanced = self.conns.get(&conn).is_some_and(|c| c.enhanced_flv);
        let (has_video, has_audio) = self.hub.tracks(&stream).map_or((false, false), |t| {
            (
                t.video.is_some(),
                t.audio
                    .as_ref()
                    .is_some_and(|a| flv::carries_audio(a.codec, enhanced)),
            )
        });
        if let Some(c) = self.conns.get_mut(&conn) {
            if let Some(w) = c.writer.as_mut() {
                let mut head = Vec::new();
                w.start(has_audio || !has_video, has_video || !has_audio, &mut head);
                c.pending.extend(head);
            }
        }
        self.start_session(conn, Role::Play, protocol, &stream, now_ms);
        self.want_transmit(conn);
    }

    /// `conn` publishes `key` from now on (the hub accepted it): its publication starts and
    /// the session is logged. `described` are tracks declared up front (RTSP ANNOUNCE).
    fn publish_started(
        &mut self,
        conn: ConnId,
        key: &StreamKey,
        protocol: Protocol,
        described: Option<Tracks>,
        query: &str,
        now_ms: u64,
    ) {
        self.start_publication(conn, key, described, now_ms);
        self.start_session(conn, Role::Publish, protocol, key, now_ms);
        self.relay_published(key, query, now_ms);
        self.cluster_published(key, conn, now_ms);
    }

    /// The publication of `key` by `publisher` (a connection, or a relay pull) starts.
    fn start_publication(
        &mut self,
        publisher: ConnId,
        key: &StreamKey,
        described: Option<Tracks>,
        now_ms: u64,
    ) {
        let mut sinks = sinks!(self);
        let p = Publication::start(
            key.clone(),
            publisher,
            described,
            &self.config,
            now_ms,
            &mut sinks,
        );
        self.publications.insert(publisher, p);
    }

    /// `conn` asks to play `key`; a stream not live here is pulled from an origin when relay
    /// pull is configured and the player is not itself a relay (`relayed`).
    fn play_or_pull(
        &mut self,
        key: &StreamKey,
        conn: ConnId,
        relayed: bool,
        now_ms: u64,
    ) -> crate::hub::PlayState {
        let state = self.hub.play(key, conn, now_ms);
        // A stream another worker pulls needs that worker told of this player too.
        let puller = self
            .remote
            .get(key)
            .filter(|f| conn_id::is_outbound(f.publisher))
            .map(|f| conn_id::worker_of(f.publisher));
        if state == crate::hub::PlayState::Waiting || puller.is_some() {
            self.relay_wanted(key, relayed, puller, now_ms);
        }
        state
    }

    /// A frame from the publisher on `conn`, with the FLV tag body it came in, if any.
    fn publish_frame(&mut self, conn: ConnId, frame: Frame, flv_body: Option<Bytes>) {
        let Some(p) = self.publications.get_mut(&conn) else {
            return;
        };
        let mut sinks = sinks!(self);
        p.push_frame(frame, flv_body, &mut sinks);
    }

    /// `onMetaData` from the publisher on `conn`.
    fn publish_metadata(&mut self, conn: ConnId, value: &crate::amf::Value, timestamp: u32) {
        let Some(p) = self.publications.get_mut(&conn) else {
            return;
        };
        let mut sinks = sinks!(self);
        p.push_metadata(value, timestamp, &mut sinks);
    }

    /// A local publisher stopped: its publication ends.
    fn end_publish(&mut self, conn: ConnId, now_ms: u64) {
        let Some(p) = self.publications.remove(&conn) else {
            return;
        };
        if conn_id::is_outbound(conn) {
            // A relay pull: its publication ends; static pushes only follow local publishers.
            let mut sinks = sinks!(self);
            return p.end(now_ms, &mut sinks);
        }
        let key = p.key().clone();
        let mut sinks = sinks!(self);
        p.end(now_ms, &mut sinks);
        self.relay_unpublished(&key);
        self.cluster_unpublished(&key, conn, now_ms);
    }

    /// Hands out what the recordings accumulated since the last time.
    fn flush_recordings(&mut self) {
        for conn in std::mem::take(&mut self.recording_dirty) {
            if let Some(p) = self.publications.get_mut(&conn) {
                p.flush_recording(&mut self.outputs);
            }
        }
    }

    /// A message from another engine's [`Output::Broadcast`]: its streams become playable here.
    pub fn handle_remote(&mut self, message: StreamMessage, now_ms: u64) {
        match message {
            StreamMessage::Start { stream, publisher } => {
                self.remote_start(stream, publisher, now_ms)
            }
            StreamMessage::Packet {
                stream,
                publisher,
                packet,
            } => {
                if let Some(feed) = self.remote.get(&stream) {
                    if feed.publisher == publisher {
                        publication::feed_hls(&mut self.hls, &stream, packet.data());
                        self.hub.push(feed.hub_id, packet);
                    }
                }
            }
            StreamMessage::Tracks {
                stream,
                publisher,
                tracks,
            } => {
                if let Some(feed) = self.remote.get(&stream) {
                    if feed.publisher == publisher {
                        self.hub.set_tracks(feed.hub_id, tracks);
                    }
                }
            }
            StreamMessage::Segment { stream, seq, data } => {
                self.hls.adopt_segment(&stream, seq, data);
            }
            StreamMessage::Wants {
                stream,
                worker,
                wants,
            } => self.demand.remote_wants(stream, worker, wants),
            StreamMessage::End { stream, publisher } => {
                if self
                    .remote
                    .get(&stream)
                    .is_some_and(|f| f.publisher == publisher)
                {
                    if let Some(feed) = self.remote.remove(&stream) {
                        self.hub.unpublish(feed.hub_id, now_ms);
                        self.hls.end(&stream, now_ms);
                    }
                }
            }
        }
        self.drain_hub(now_ms);
    }

    /// Another engine's publisher started `stream`. Without takeover, whoever publishes a name
    /// first keeps it. With [`PublishConflict::Kick`] the newest publisher wins everywhere: a
    /// local publisher of the name is kicked and an older remote one is replaced.
    fn remote_start(&mut self, stream: StreamKey, publisher: ConnId, now_ms: u64) {
        let id = REMOTE_PUBLISHER_BIT | self.next_remote_id;
        let feed = RemoteFeed {
            hub_id: id,
            publisher,
        };
        if self.config.publish_conflict == PublishConflict::Kick {
            if self
                .remote
                .get(&stream)
                .is_some_and(|f| f.publisher == publisher)
            {
                return;
            }
            self.next_remote_id += 1;
            if let Some(old) = self.hub.publish_takeover(&stream, id, now_ms) {
                self.kicked(old, &stream, now_ms);
            }
            self.hls.start(&stream, false);
            let wall = self.wall_ms(now_ms);
            self.hls.ll().start(&stream, wall);
            self.remote.insert(stream, feed);
        } else if !self.remote.contains_key(&stream) {
            // A publisher elsewhere wins over a pull here (a pull elsewhere does not, or two
            // pulls started at once would both give way).
            if !conn_id::is_outbound(publisher) {
                self.relay_yield(&stream, now_ms);
            }
            self.next_remote_id += 1;
            // A local publisher of the same name wins; the remote one is ignored here.
            if self.hub.publish(&stream, id, now_ms).is_ok() {
                self.hls.start(&stream, false);
                let wall = self.wall_ms(now_ms);
                self.hls.ll().start(&stream, wall);
                self.remote.insert(stream, feed);
            }
        }
    }

    /// Makes `conn` the publisher of `key`. A live publisher of `key` makes that an error, or,
    /// with [`PublishConflict::Kick`], is disconnected while its players stay.
    pub(super) fn claim_stream(
        &mut self,
        key: &StreamKey,
        conn: ConnId,
        now_ms: u64,
    ) -> Result<(), crate::hub::PublishError> {
        self.relay_yield(key, now_ms);
        // A stream another worker pulls gives way to a local publisher too: it is dropped here
        // (its players stay for the grace period), and this publisher's start makes that
        // worker stop its pull.
        if let Some(feed) = self.remote.get(key).copied() {
            if conn_id::is_outbound(feed.publisher) {
                self.remote.remove(key);
                self.hub.unpublish(feed.hub_id, now_ms);
            }
        }
        if self.config.publish_conflict == PublishConflict::Reject {
            return self.hub.publish(key, conn, now_ms);
        }
        if let Some(old) = self.hub.publish_takeover(key, conn, now_ms) {
            self.kicked(old, key, now_ms);
        }
        Ok(())
    }

    /// `old`, the publisher of `key` until now, was replaced in the hub by a newer publisher.
    fn kicked(&mut self, old: u64, key: &StreamKey, now_ms: u64) {
        if old & REMOTE_PUBLISHER_BIT != 0 {
            // Its own engine kicks it when the newcomer's start reaches it.
            self.remote.remove(key);
            return;
        }
        if let Some(p) = self.publications.remove(&old) {
            p.kicked(&mut self.outputs);
        }
        self.close(
            old,
            true,
            "kicked: a new publisher took over the stream",
            now_ms,
        );
    }

    fn drain_hub(&mut self, now_ms: u64) {
        // Held Low-Latency HLS requests whose part or segment completed (requests pipelined
        // behind them may start players: their events are drained below).
        self.answer_held(now_ms);
        while let Some(event) = self.hub.poll_event() {
            match event {
                HubEvent::PlayerStarted { player, .. } => self.start_player(player, now_ms),
                HubEvent::PlayerWaitExpired { player, .. } => {
                    self.end_player(player, true, "stream not found", now_ms)
                }
                HubEvent::PlayerOverflowed { player, .. }
                    if self.relay_player_overflowed(player, now_ms) => {}
                HubEvent::PlayerOverflowed { player, .. } => {
                    self.meters.slow_players_closed += 1;
                    self.close(player, false, "player too slow: queue overflow", now_ms)
                }
                HubEvent::PlayerSkipped { player, behind_ms } => {
                    if let Some(message) = self.meters.skipped(player, behind_ms, now_ms) {
                        self.outputs.push_back(Output::Log {
                            level: LogLevel::Info,
                            message,
                        });
                    }
                }
                HubEvent::StreamEnded { players, .. } => {
                    for p in players {
                        self.end_player(p, false, "stream ended", now_ms);
                    }
                }
                _ => {}
            }
        }
        let window = self.merge_window();
        while let Some(player) = self.hub.poll_ready() {
            if self.rtsp_mut(player).is_some() {
                self.rtsp_player_ready(player, now_ms);
            } else if window == 0 || self.relay.owns(player) {
                self.want_transmit(player);
            } else {
                self.hold(player, now_ms.saturating_add(window));
            }
        }
        while let Some(o) = self.hls.poll_output() {
            self.outputs.push_back(match o {
                HlsOutput::WriteFile { path, data } => Output::WriteFile { path, data },
                HlsOutput::RemoveFile { path } => Output::RemoveFile { path },
                HlsOutput::Segment(event) => {
                    self.notify_hls_segment(&event, now_ms);
                    continue;
                }
                HlsOutput::Share { key, seq, data } if self.config.share_streams => {
                    Output::Broadcast(StreamMessage::Segment {
                        stream: key,
                        seq,
                        data,
                    })
                }
                HlsOutput::Share { .. } => continue,
            });
        }
    }

    /// Ends a player politely: RTMP status messages, HTTP 404 if nothing was sent yet.
    fn end_player(&mut self, conn: ConnId, never_started: bool, reason: &str, now_ms: u64) {
        if self.relay_player_ended(conn) {
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match &mut c.kind {
            ConnKind::Rtmp {
                session, play_id, ..
            } => {
                if let Some(id) = *play_id {
                    if never_started {
                        // Err: the client withdrew the play; see `answer_rtmp`.
                        let _ = session.reject_play(id, code::PLAY_STREAM_NOT_FOUND, reason);
                    } else {
                        session.end_play(id, reason);
                    }
                }
                self.close(conn, true, reason, now_ms);
            }
            ConnKind::Rtsp(r) => {
                // A DESCRIBE still waiting for the stream gets 404 (Err: none was); the rest end.
                let _ = r.session.reject_describe(404);
                self.rtsp_goodbye(conn);
                self.close(conn, true, reason, now_ms);
            }
            ConnKind::Http { state, .. } => {
                if matches!(
                    state,
                    HttpState::Waiting {
                        format: PlayerFormat::Flv | PlayerFormat::Ts
                    }
                ) {
                    self.http_respond(
                        conn,
                        Response::text(404, reason.to_owned()),
                        false,
                        reason,
                        now_ms,
                    );
                } else {
                    // End the FLV byte stream cleanly with the last tag's PreviousTagSize.
                    if let Some(w) = c.writer.as_mut() {
                        let mut tail = Vec::new();
                        w.finish(&mut tail);
                        c.pending.extend(tail);
                    }
                    self.close(conn, true, reason, now_ms);
                }
            }
        }
    }
}
