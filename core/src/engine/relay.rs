//! Relays: client connections the engine opens to other servers, over RTMP, HTTP-FLV (pull)
//! and RTSP (TCP or UDP), chosen by the scheme of each URL ([`RelayUrl`]).
//!
//! - **Pull (edge)**: a player asks for a stream that is not live here; the engine plays
//!   `{origin}/{app}/{stream}` from the first configured origin that answers and feeds what it
//!   receives to a publication (`engine/publication.rs`), exactly like a local
//!   publisher. The pull stops [`RelayConfig::idle_stop_ms`] after its last player left, and
//!   gives way to a local publisher of the same stream.
//! - **Push (restream)**: every stream published locally on a matching app is published to
//!   `{url}/{stream}` while its publisher is live. The push is a hub player with a bounded queue,
//!   so a slow or dead target never slows the publisher.
//!
//! - **API**: pulls and pushes started and stopped by the HTTP API (lal's
//!   `start_relay_pull`/`stop_relay_pull`, rill's `start_relay_push`/`stop_relay_push`,
//!   livego's `/control/pull` and `/control/push`), with lal's options (timeout, number of
//!   retries, stop after no players); the requests are answered in `relay/api.rs`.
//!
//! Failed attempts are retried with exponential backoff (1 s doubling to 30 s, each delay
//! shortened by up to a fifth at random so that many relays failing together do not retry in
//! step), reset once media has flowed for [`HEALTHY_MS`]; every attempt that fails is logged
//! with its error. A pull that loses its origin keeps its players for the hub's publisher grace
//! period and resumes its stream when it reconnects. Relay connections mark themselves with
//! [`RELAY_PARAM`] in their query: a request carrying it is never pulled on demand, and a
//! stream published with it is not pushed, so two servers relaying to each other cannot loop;
//! a push to this server's own RTMP address is refused.
//!
//! With several workers, a pull on demand runs on one worker per stream
//! ([`pull_owner`]): another worker whose players ask for the stream tells that worker with
//! [`Command::RelayWant`], again every [`WANT_REFRESH_MS`] while it has players, and plays the
//! stream the owner publishes like any stream of another worker.
//!
//! Each connection wraps the client session of its scheme ([`Client`]): RTMP here, HTTP-FLV
//! pulls in `relay/flv.rs`, RTSP pulls and pushes in `relay/rtsp.rs`; this file keeps the
//! policy common to all (attempts, backoff, idle stop, who owns the stream). Their ids come
//! from the engine's outbound id space and they are driven through the same engine calls as
//! any connection.

mod api;
mod flv;
mod rtsp;
mod url;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

use super::conn_id::{self, worker_of};
use super::{
    connect_output, Command, ConnId, Engine, EngineStats, FlvForm, LogLevel, Output, Protocol,
    Role, SessionRecord, SessionStats,
};
use crate::api::lal::RelayPullRequest;
use crate::api::webhook::{SessionInfo, WebhookEvent};
use crate::id_map::IdMap;
use crate::limits::Limits;
use crate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use crate::rtmp::command::DataMessage;
use crate::rtmp::message_type;
use crate::stream_key::StreamKey;

use url::relay_protocol;
pub use url::RelayUrl;

use crate::scheme::Scheme;

/// The query parameter relay connections carry, so the next hop does not relay them back.
pub const RELAY_PARAM: &str = "rill_relay";

/// First retry delay (ms); it doubles after every failed round up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_START_MS: u64 = 1_000;
/// Longest retry delay (ms).
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// Time allowed from asking for a connection to the stream playing or publishing (ms), unless
/// the API says otherwise (lal's default `pull_timeout_ms`).
pub const START_TIMEOUT_MS: u64 = 10_000;
/// A pull whose origin sends nothing for this long is given up and retried (ms): an origin
/// whose publisher left may keep its players connected without a word (nginx-rtmp does).
pub const MEDIA_TIMEOUT_MS: u64 = 5_000;
/// Media flowing this long on one connection resets the backoff (ms).
pub const HEALTHY_MS: u64 = 5_000;
/// How often a worker with players of a stream pulled by another worker says so (ms).
pub const WANT_REFRESH_MS: u64 = 1_000;
/// A pull owner counts remote players this long after their worker last said so (ms).
const WANT_TTL_MS: u64 = 3 * WANT_REFRESH_MS;
/// How often pulls check whether they still have players (ms).
const IDLE_CHECK_MS: u64 = 500;

/// Streams published on apps matching `app` are pushed to every URL of `urls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRule {
    /// The app, or `*` for every app.
    pub app: String,
    /// Targets; the stream goes to `{url}/{stream}`.
    pub urls: Vec<RelayUrl>,
}

/// Relay settings (`[relay.pull]`, `[[relay.push]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Origins pulled from when a player asks for a stream not live here, tried in order
    /// (none: no pull on demand).
    pub pull_origins: Vec<RelayUrl>,
    /// A pull stops this long after its last player left (ms).
    pub idle_stop_ms: u64,
    /// Static pushes.
    pub push: Vec<PushRule>,
    /// This server's RTMP listener, so a push to it is refused (none: not checked).
    pub own_rtmp: Option<SocketAddr>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            pull_origins: Vec::new(),
            idle_stop_ms: 10_000,
            push: Vec::new(),
            own_rtmp: None,
        }
    }
}

/// The delay before retry number `failures` (1 for the first retry): 1 s doubling to 30 s.
pub fn backoff_ms(failures: u32) -> u64 {
    let shift = failures.saturating_sub(1).min(16);
    BACKOFF_START_MS
        .saturating_mul(1u64 << shift)
        .min(BACKOFF_MAX_MS)
}

/// [`backoff_ms`] shortened by up to a fifth according to `random` (any value), so relays that
/// fail together spread their retries: always within 80 % to 100 % of the plain delay.
pub fn backoff_jittered_ms(failures: u32, random: u32) -> u64 {
    let plain = backoff_ms(failures);
    plain - plain * u64::from(random % 201) / 1000
}

/// Whether a query string carries [`RELAY_PARAM`].
pub fn is_relayed(query: &str) -> bool {
    query
        .trim_start_matches('?')
        .split('&')
        .any(|kv| kv.split('=').next() == Some(RELAY_PARAM))
}

/// The query a relay connection sends: `query` (the publisher's or the API URL's, so tokens
/// reach the next hop) and the relay marker.
fn relay_query(query: &str) -> String {
    if query.is_empty() {
        format!("{RELAY_PARAM}=1")
    } else {
        format!("{query}&{RELAY_PARAM}=1")
    }
}

/// The worker that runs the pull on demand of `key` among `workers` (FNV-1a of the name, so
/// every worker picks the same one).
pub fn pull_owner(key: &StreamKey, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let hash = key.as_str().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % workers as u64) as usize
}

/// How a pull started by the API behaves (lal's `start_relay_pull` options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PullOptions {
    /// Time allowed from connecting to playing (ms).
    pub timeout_ms: u64,
    /// Retries after a failure: `None` forever, `Some(0)` never.
    pub retries: Option<u32>,
    /// Stop this long after the last player left: `None` never, `Some(0)` at once.
    pub auto_stop_ms: Option<u64>,
}

impl PullOptions {
    /// lal's request as options (negative numbers mean "forever"/"never" as in lal); its
    /// `rtsp_mode` goes to the URL ([`RelayUrl::rtsp_transport`]).
    pub fn from_request(r: &RelayPullRequest) -> PullOptions {
        PullOptions {
            timeout_ms: u64::try_from(r.pull_timeout_ms)
                .ok()
                .filter(|&t| t > 0)
                .unwrap_or(START_TIMEOUT_MS),
            retries: u32::try_from(r.pull_retry_num).ok(),
            auto_stop_ms: u64::try_from(r.auto_stop_pull_after_no_out_ms).ok(),
        }
    }
}

/// Who a relay connection works for.
#[derive(Clone, Debug)]
enum Owner {
    Pull(StreamKey),
    Push(ConnId),
}

/// A relay connection's client session, by the scheme of its URL.
#[derive(Debug)]
enum Client {
    Rtmp(Box<ClientSession>),
    /// An HTTP-FLV pull (`relay/flv.rs`).
    Flv(Box<flv::FlvPull>),
    /// An RTSP pull or push (`relay/rtsp.rs`).
    Rtsp(Box<rtsp::RtspLink>),
}

impl Client {
    /// Ends the session politely (its last bytes go out with a flushing close).
    fn close(&mut self) {
        match self {
            Client::Rtmp(s) => s.close(),
            Client::Flv(_) => {}
            Client::Rtsp(r) => r.session.teardown(),
        }
    }

    /// The session's own next deadline (RTSP keep-alives, answers and reports).
    fn poll_timeout(&self) -> Option<u64> {
        match self {
            Client::Rtsp(r) => r.session.poll_timeout(),
            _ => None,
        }
    }
}

/// One relay connection.
#[derive(Debug)]
struct Link {
    client: Client,
    owner: Owner,
    /// When the connection gives up unless something happens first (start, media).
    deadline_ms: Option<u64>,
    /// Why it gives up then, for the log.
    deadline_why: &'static str,
    /// The runtime reported the connection open.
    open: bool,
}

/// A stream pulled from an origin.
#[derive(Debug)]
struct Pull {
    /// The id standing for the pull as the stream's publisher (hub, publication, API).
    id: ConnId,
    /// The URL pulled by the API, naming the stream itself; `None`: the configured origins
    /// (on demand).
    url: Option<RelayUrl>,
    /// The query of the API's URL, passed on to the origin.
    query: String,
    options: PullOptions,
    /// The current connection, if any.
    conn: Option<ConnId>,
    /// The origin tried next (or now).
    origin: usize,
    /// Origins that failed in the current round.
    failed_in_round: usize,
    /// Failed rounds since the last healthy stretch.
    failures: u32,
    /// Attempts since the last healthy stretch (for [`PullOptions::retries`]).
    attempts: u32,
    /// When to try again, while waiting.
    retry_at: Option<u64>,
    /// The pull publishes the stream here (it has a publication).
    live: bool,
    /// When the current connection's first media came.
    media_since: Option<u64>,
    /// Since when it has had no players.
    idle_since: Option<u64>,
    /// When another worker last said it has players of the stream.
    remote_want_ms: Option<u64>,
    started_ms: u64,
    /// The origin's address, once connected.
    peer: Option<SocketAddr>,
    bytes_in: u64,
    bytes_out: u64,
}

/// A stream pushed to one target.
#[derive(Debug)]
struct Push {
    key: StreamKey,
    url: RelayUrl,
    /// `url` names the target stream itself (API pushes); otherwise the stream goes to
    /// `{url}/{stream}`.
    full_url: bool,
    /// Started by the API (it also ends with the stream it plays).
    by_api: bool,
    /// The publisher's query, passed on.
    query: String,
    conn: Option<ConnId>,
    failures: u32,
    retry_at: Option<u64>,
    /// Registered as a hub player on `conn`.
    playing: bool,
    /// Timestamp offset so the target sees the stream start near 0.
    base_dts: Option<i64>,
    started_ms: u64,
    peer: Option<SocketAddr>,
    bytes_in: u64,
    bytes_out: u64,
}

impl Push {
    /// The stream's name under `url` (empty when the URL names the target stream itself).
    fn name(&self) -> &str {
        if self.full_url {
            ""
        } else {
            self.key.stream()
        }
    }

    /// The target stream's path on the target server.
    fn path(&self) -> String {
        self.url.full_path(self.name())
    }

    /// The target stream's URL, for logs and the API.
    fn target(&self) -> String {
        self.url.base(&self.path())
    }
}

/// What a pull attempt asks its origin for: `url`'s path and `name` (empty when the URL names
/// the stream itself), with `query` passed on.
struct PullTarget {
    url: RelayUrl,
    name: String,
    query: String,
}

impl fmt::Display for PullTarget {
    /// The pulled stream's URL (never credentials), for logs and webhooks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url.base(&self.url.full_path(&self.name)))?;
        if !self.query.is_empty() {
            write!(f, "?{}", self.query)?;
        }
        Ok(())
    }
}

/// The relays of one engine.
#[derive(Debug, Default)]
pub(super) struct Relays {
    config: RelayConfig,
    links: IdMap<ConnId, Link>,
    pulls: HashMap<StreamKey, Pull>,
    pushes: IdMap<ConnId, Push>,
    /// The last bytes of relay connections closed politely, sent before the close.
    farewells: IdMap<ConnId, Vec<Bytes>>,
    /// Streams pulled by another worker for players here: when to say so again.
    wants: HashMap<StreamKey, u64>,
    /// When pulls next check for players.
    check_at: Option<u64>,
}

impl Relays {
    pub(super) fn new(config: RelayConfig) -> Self {
        Relays {
            config,
            ..Relays::default()
        }
    }

    /// Replaces the configured origins and push rules (a config reload): pulls and pushes
    /// already running go on; new ones follow the new lists.
    pub(super) fn set_config(&mut self, config: RelayConfig) {
        self.config = config;
    }

    /// `conn` is one of the relays' connections.
    pub(super) fn owns(&self, conn: ConnId) -> bool {
        self.links.contains_key(&conn) || self.farewells.contains_key(&conn)
    }

    /// The earliest time relays have work to do.
    pub(super) fn poll_timeout(&self) -> Option<u64> {
        let links = self.links.values().flat_map(|l| {
            let session = l.client.poll_timeout().filter(|_| l.open);
            l.deadline_ms.into_iter().chain(session)
        });
        let pulls = self.pulls.values().filter_map(|p| p.retry_at);
        let pushes = self.pushes.values().filter_map(|p| p.retry_at);
        links.chain(pulls).chain(pushes).chain(self.check_at).min()
    }

    /// How many streams are being pulled (for tests and statistics).
    pub(super) fn pull_count(&self) -> usize {
        self.pulls.len()
    }

    /// How many pushes run (for tests and statistics).
    pub(super) fn push_count(&self) -> usize {
        self.pushes.len()
    }

    /// Counts bytes of a relay connection for its pull or push.
    fn count(&mut self, conn: ConnId, bytes_in: usize, bytes_out: usize) {
        let Some(l) = self.links.get(&conn) else {
            return;
        };
        let (i, o) = match &l.owner {
            Owner::Pull(key) => match self.pulls.get_mut(key) {
                Some(p) => (&mut p.bytes_in, &mut p.bytes_out),
                None => return,
            },
            Owner::Push(id) => match self.pushes.get_mut(id) {
                Some(p) => (&mut p.bytes_in, &mut p.bytes_out),
                None => return,
            },
        };
        *i = i.saturating_add(bytes_in as u64);
        *o = o.saturating_add(bytes_out as u64);
    }

    /// What the pull of `key` asks for now: the API's URL, or the origin it tries.
    fn pull_target(&self, key: &StreamKey) -> Option<PullTarget> {
        let p = self.pulls.get(key)?;
        Some(match &p.url {
            Some(url) => PullTarget {
                url: url.clone(),
                name: String::new(),
                query: p.query.clone(),
            },
            None => PullTarget {
                url: self.config.pull_origins.get(p.origin)?.clone(),
                name: key.to_string(),
                query: String::new(),
            },
        })
    }

    /// The protocol the pull of `key` speaks now, and whether over TLS (for statistics and
    /// webhooks).
    fn pull_protocol(&self, key: &StreamKey) -> (Protocol, bool) {
        self.pull_target(key).map_or((Protocol::Rtmp, false), |t| {
            (relay_protocol(t.url.scheme), t.url.scheme.tls())
        })
    }

    /// The statistics of every pull and push (started at `wall` + their start).
    pub(super) fn sessions(&self, wall: u64, out: &mut EngineStats) {
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        for (key, p) in &self.pulls {
            let (protocol, tls) = self.pull_protocol(key);
            out.sessions.push(SessionStats {
                conn: p.id,
                protocol,
                tls,
                role: Role::Pull,
                stream: key.to_string(),
                peer: p.peer.unwrap_or(unknown),
                start_unix_ms: wall.saturating_add(p.started_ms),
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
                read_kbits: 0,
                write_kbits: 0,
                relay_url: self
                    .pull_target(key)
                    .map(|t| t.url.base(&t.url.full_path(&t.name)))
                    .unwrap_or_default(),
            });
        }
        for (&id, p) in &self.pushes {
            out.sessions.push(SessionStats {
                conn: id,
                protocol: relay_protocol(p.url.scheme),
                tls: p.url.scheme.tls(),
                role: Role::Push,
                stream: p.key.to_string(),
                peer: p.peer.unwrap_or(unknown),
                start_unix_ms: wall.saturating_add(p.started_ms),
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
                read_kbits: 0,
                write_kbits: 0,
                relay_url: p.target(),
            });
        }
    }

    /// The streams pulled here that are live (their publication runs on this engine).
    pub(super) fn live_pulls(&self) -> impl Iterator<Item = &StreamKey> {
        self.pulls.iter().filter(|(_, p)| p.live).map(|(k, _)| k)
    }
}

impl Engine {
    /// How many streams this engine pulls from an origin now.
    pub fn relay_pull_count(&self) -> usize {
        self.relay.pull_count()
    }

    /// How many pushes this engine runs now.
    pub fn relay_push_count(&self) -> usize {
        self.relay.push_count()
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.outputs.push_back(Output::Log { level, message });
    }

    fn relay_random(&mut self) -> u32 {
        let b = self.random_bytes(4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// A player asks for `key`, which is not live here or is pulled by another worker
    /// (`puller`, from the stream's feed): pull it unless the player is itself a relay, no
    /// origin is configured, or a pull already runs. With several workers the worker that
    /// pulls it (the stream's owner, [`pull_owner`], when none does yet) is told of the player.
    pub(super) fn relay_wanted(
        &mut self,
        key: &StreamKey,
        relayed: bool,
        puller: Option<usize>,
        now_ms: u64,
    ) {
        if relayed {
            return;
        }
        if let Some(p) = self.relay.pulls.get_mut(key) {
            p.idle_since = None;
            return;
        }
        let target = match puller {
            Some(w) => w,
            // An edge of a cluster finds the origin in the registry instead.
            None if self.relay.config.pull_origins.is_empty() && !self.cluster_edge() => return,
            None => pull_owner(key, self.config.workers),
        };
        if self.config.share_streams && target != self.config.worker {
            self.outputs.push_back(Output::Command {
                worker: target,
                command: Command::RelayWant { key: key.clone() },
            });
            self.relay
                .wants
                .insert(key.clone(), now_ms.saturating_add(WANT_REFRESH_MS));
            self.relay.check_at.get_or_insert(now_ms + IDLE_CHECK_MS);
            return;
        }
        if puller.is_none() && self.relay.config.pull_origins.is_empty() {
            self.cluster_want(key, now_ms);
        } else if puller.is_none() {
            let options = PullOptions::on_demand(&self.relay.config);
            self.pull_start(key, None, options, now_ms);
        }
    }

    /// A live HLS playlist of `key` was asked for on a cluster edge: HLS clients are no hub
    /// players, so each playlist request counts as one wanting the stream (looked up and
    /// pulled when not live here, and a running pull is kept).
    pub(super) fn relay_wanted_by_hls(&mut self, key: &StreamKey, relayed: bool, now_ms: u64) {
        if !self.cluster_edge() || self.relay.wants.get(key).is_some_and(|&at| at > now_ms) {
            return;
        }
        let puller = self
            .remote
            .get(key)
            .filter(|f| conn_id::is_outbound(f.publisher))
            .map(|f| worker_of(f.publisher));
        let published = self
            .hub
            .streams()
            .any(|s| s.name == key.as_str() && s.publisher.is_some());
        if published && puller.is_none() && !self.relay.pulls.contains_key(key) {
            return;
        }
        self.relay_wanted(key, relayed, puller, now_ms);
    }

    /// The worker pulling `key` for this one's players: the one whose pull feeds it here, or
    /// its owner.
    fn puller_of(&self, key: &StreamKey) -> usize {
        self.remote
            .get(key)
            .filter(|f| conn_id::is_outbound(f.publisher))
            .map_or_else(
                || pull_owner(key, self.config.workers),
                |f| worker_of(f.publisher),
            )
    }

    /// Another worker has players waiting for or playing `key` ([`Command::RelayWant`]): pull
    /// it unless it is live here already, and count those players.
    pub(super) fn relay_remote_want(&mut self, key: &StreamKey, now_ms: u64) {
        if let Some(p) = self.relay.pulls.get_mut(key) {
            p.remote_want_ms = Some(now_ms);
            p.idle_since = None;
            return;
        }
        let live = self
            .hub
            .streams()
            .any(|s| s.name == key.as_str() && s.publisher.is_some());
        if live {
            return;
        }
        if self.relay.config.pull_origins.is_empty() {
            self.cluster_want(key, now_ms);
            return;
        }
        self.pull_start(
            key,
            None,
            PullOptions::on_demand(&self.relay.config),
            now_ms,
        );
        if let Some(p) = self.relay.pulls.get_mut(key) {
            p.remote_want_ms = Some(now_ms);
        }
    }

    /// Starts pulling `key` from `url` (the API's, naming the stream, with the query to pass
    /// on) or the configured origins; the pull's id.
    fn pull_start(
        &mut self,
        key: &StreamKey,
        url: Option<(RelayUrl, String)>,
        options: PullOptions,
        now_ms: u64,
    ) -> ConnId {
        let id = self.outbound.reserve_id();
        let (url, query) = url.map_or((None, String::new()), |(u, q)| (Some(u), q));
        self.relay.pulls.insert(
            key.clone(),
            Pull {
                id,
                url,
                query,
                options,
                conn: None,
                origin: 0,
                failed_in_round: 0,
                failures: 0,
                attempts: 0,
                retry_at: None,
                live: false,
                media_since: None,
                idle_since: None,
                remote_want_ms: None,
                started_ms: now_ms,
                peer: None,
                bytes_in: 0,
                bytes_out: 0,
            },
        );
        self.relay.check_at.get_or_insert(now_ms + IDLE_CHECK_MS);
        self.pull_attempt(key, now_ms);
        id
    }

    /// The URL the pull of `key` tries now, as a string (for logs and webhooks).
    fn pull_url(&self, key: &StreamKey) -> String {
        self.relay
            .pull_target(key)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    fn pull_attempt(&mut self, key: &StreamKey, now_ms: u64) {
        let Some(p) = self.relay.pulls.get_mut(key) else {
            return;
        };
        p.attempts = p.attempts.saturating_add(1);
        p.retry_at = None;
        let timeout = p.options.timeout_ms;
        let Some(target) = self.relay.pull_target(key) else {
            return self.pull_failed(key, "no origin configured", now_ms);
        };
        let owner = Owner::Pull(key.clone());
        let opened = match target.url.scheme {
            Scheme::Rtmp | Scheme::Rtmps => {
                let (app, stream) = target.url.target(&target.name);
                let conn = self.rtmp_link_open(&target.url, &app, owner, timeout, now_ms);
                if let Some(Client::Rtmp(s)) =
                    self.relay.links.get_mut(&conn).map(|l| &mut l.client)
                {
                    s.play(&format!("{stream}?{}", relay_query(&target.query)));
                }
                Ok(conn)
            }
            Scheme::Http | Scheme::Https => self.flv_pull_open(&target, owner, timeout, now_ms),
            Scheme::Rtsp | Scheme::Rtsps => {
                Ok(self.rtsp_pull_open(&target, owner, timeout, now_ms))
            }
        };
        let conn = match opened {
            Ok(conn) => conn,
            Err(why) => return self.pull_failed(key, &why, now_ms),
        };
        if let Some(p) = self.relay.pulls.get_mut(key) {
            p.conn = Some(conn);
        }
    }

    /// Opens an RTMP relay connection to `url`'s `app`.
    fn rtmp_link_open(
        &mut self,
        url: &RelayUrl,
        app: &str,
        owner: Owner,
        timeout_ms: u64,
        now_ms: u64,
    ) -> ConnId {
        let random = self.random_bytes(crate::rtmp::handshake::HANDSHAKE_RANDOM_LEN);
        let config = ClientConfig::new(app, &url.tc_url(app));
        let session = ClientSession::new(config, &random, now_ms);
        let client = Client::Rtmp(Box::new(session));
        self.insert_link(url, client, owner, timeout_ms, now_ms)
    }

    /// Registers a relay connection speaking `client`, which gives up unless started within
    /// `timeout_ms`, and asks the runtime to connect it.
    fn insert_link(
        &mut self,
        url: &RelayUrl,
        client: Client,
        owner: Owner,
        timeout_ms: u64,
        now_ms: u64,
    ) -> ConnId {
        let conn = self.outbound.reserve_id();
        self.relay.links.insert(
            conn,
            Link {
                client,
                owner,
                deadline_ms: Some(now_ms.saturating_add(timeout_ms)),
                deadline_why: "not started in time",
                open: false,
            },
        );
        let connect = connect_output(
            &self.config.tls_client,
            conn,
            url.scheme,
            &url.host,
            url.port,
        );
        self.outputs.push_back(connect);
        conn
    }

    /// The runtime's answer to a relay connection's [`Output::Connect`].
    pub(super) fn relay_connected(
        &mut self,
        conn: ConnId,
        result: Result<SocketAddr, String>,
        now_ms: u64,
    ) {
        match result {
            Ok(addr) => {
                let Some(l) = self.relay.links.get_mut(&conn) else {
                    return;
                };
                l.open = true;
                if let Client::Rtsp(r) = &mut l.client {
                    r.peer = Some(addr);
                }
                match l.owner.clone() {
                    Owner::Pull(key) => {
                        if let Some(p) = self.relay.pulls.get_mut(&key) {
                            p.peer = Some(addr);
                        }
                    }
                    Owner::Push(id) => {
                        if let Some(p) = self.relay.pushes.get_mut(&id) {
                            p.peer = Some(addr);
                        }
                    }
                }
                self.outputs.push_back(Output::Transmit(conn));
            }
            Err(why) => self.link_failed(conn, false, &format!("connect: {why}"), now_ms),
        }
    }

    /// Bytes from a relay connection's peer.
    pub(super) fn relay_input(&mut self, conn: ConnId, data: &[u8], now_ms: u64) {
        self.relay.count(conn, data.len(), 0);
        let Some(l) = self.relay.links.get_mut(&conn) else {
            return;
        };
        let session = match &mut l.client {
            Client::Rtmp(s) => s,
            Client::Flv(_) => return self.flv_input(conn, data, now_ms),
            Client::Rtsp(_) => return self.rtsp_link_input(conn, data, now_ms),
        };
        let result = session.handle_input(data, now_ms);
        let mut events = Vec::new();
        while let Some(e) = session.poll_event() {
            events.push(e);
        }
        let owner = l.owner.clone();
        self.outputs.push_back(Output::Transmit(conn));
        for event in events {
            if !self.relay.links.contains_key(&conn) {
                return;
            }
            match owner.clone() {
                Owner::Pull(key) => self.pull_event(conn, &key, event, now_ms),
                Owner::Push(id) => self.push_event(conn, id, event, now_ms),
            }
        }
        if let Err(e) = result {
            self.link_failed(conn, true, &format!("RTMP: {e}"), now_ms);
        }
        self.drain_hub(now_ms);
    }

    fn pull_event(&mut self, conn: ConnId, key: &StreamKey, event: ClientEvent, now_ms: u64) {
        match event {
            ClientEvent::Playing { .. } => self.pull_started(conn, key, now_ms),
            ClientEvent::Media {
                type_id,
                timestamp,
                payload,
            } if type_id == message_type::VIDEO || type_id == message_type::AUDIO => {
                if let Some(id) = self.pull_media(conn, key, now_ms) {
                    self.on_rtmp_media(id, type_id, timestamp, payload);
                }
            }
            ClientEvent::Metadata { value } => {
                if let Some(id) = self.pull_media(conn, key, now_ms) {
                    self.publish_metadata(id, &value, 0);
                }
            }
            ClientEvent::Rejected { code, description } => {
                self.link_failed(conn, true, &format!("{code}: {description}"), now_ms)
            }
            ClientEvent::StreamEnded => {
                self.link_failed(conn, true, "the origin ended the stream", now_ms)
            }
            _ => {}
        }
    }

    /// The origin accepted the pull of `key` on `conn` (RTMP play, HTTP 200, RTSP PLAY). It may
    /// answer so for a stream it does not have (nginx-rtmp does): the stream goes live here
    /// with its first media, which must come within the pull's timeout.
    fn pull_started(&mut self, conn: ConnId, key: &StreamKey, now_ms: u64) {
        let timeout = self
            .relay
            .pulls
            .get(key)
            .map_or(0, |p| p.options.timeout_ms);
        if let Some(l) = self.relay.links.get_mut(&conn) {
            l.deadline_ms = Some(now_ms.saturating_add(timeout));
            l.deadline_why = "no media in time after play";
        }
    }

    /// Something came from the origin on `conn` for the pull of `key`: the stream goes live here
    /// with the first of it (with the tracks an RTSP origin described), the link gives up after
    /// [`MEDIA_TIMEOUT_MS`] without more, and [`HEALTHY_MS`] of it resets the backoff. The
    /// pull's publisher id while the pull goes on (a local publisher that came first keeps the
    /// stream).
    fn pull_media(&mut self, conn: ConnId, key: &StreamKey, now_ms: u64) -> Option<ConnId> {
        let described = match self.relay.links.get_mut(&conn) {
            Some(l) => {
                l.deadline_ms = Some(now_ms.saturating_add(MEDIA_TIMEOUT_MS));
                l.deadline_why = "no media for 5 s";
                match &mut l.client {
                    Client::Rtsp(r) => r.described.take(),
                    _ => None,
                }
            }
            None => None,
        };
        let p = self.relay.pulls.get(key)?;
        let id = p.id;
        if !p.live {
            if self.hub.publish(key, id, now_ms).is_err() {
                self.pull_stop(key, "the stream is published here", now_ms);
                return None;
            }
            let url = self.pull_url(key);
            self.log(
                LogLevel::Info,
                format!("relay pull {key}: playing from {url}"),
            );
            if let Some(p) = self.relay.pulls.get_mut(key) {
                p.live = true;
                p.failed_in_round = 0;
                p.media_since = None;
            }
            self.start_publication(id, key, described, now_ms);
            self.notify_pull(key, true, "", now_ms);
        }
        let p = self.relay.pulls.get_mut(key)?;
        let since = *p.media_since.get_or_insert(now_ms);
        if now_ms.saturating_sub(since) >= HEALTHY_MS {
            // Healthy: the backoff starts over, this connection is attempt 1.
            p.failures = 0;
            p.attempts = 1;
        }
        Some(id)
    }

    /// `on_relay_pull_start` or `on_relay_pull_stop` for the pull of `key`.
    fn notify_pull(&mut self, key: &StreamKey, start: bool, reason: &str, now_ms: u64) {
        let Some(p) = self.relay.pulls.get(key) else {
            return;
        };
        let event = if start {
            WebhookEvent::RelayPullStart
        } else {
            WebhookEvent::RelayPullStop
        };
        if !self.notify.wants(event) {
            return;
        }
        let (protocol, tls) = self.relay.pull_protocol(key);
        let record = SessionRecord {
            conn: p.id,
            peer: p.peer.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            protocol,
            tls,
            role: Role::Pull,
            stream: key.to_string(),
            bytes_in: p.bytes_in,
            bytes_out: p.bytes_out,
            duration_ms: now_ms.saturating_sub(p.started_ms),
            reason: reason.to_owned(),
        };
        let mut info = SessionInfo::new(&record, "");
        info.url = self.pull_url(key);
        if let Some(s) = self.hub.streams().find(|s| s.name == key.as_str()) {
            info.has_in_session = s.publisher.is_some();
            info.has_out_session = !s.players.is_empty();
        }
        self.notify_event(event, info.to_json(), now_ms);
    }

    /// Ends a relay connection politely: its session's goodbye is sent, then it is closed.
    fn link_close(&mut self, conn: ConnId) {
        let Some(mut l) = self.relay.links.remove(&conn) else {
            return;
        };
        l.client.close();
        let mut last = Vec::new();
        match &mut l.client {
            Client::Rtmp(s) => last.extend(std::iter::from_fn(|| s.poll_transmit())),
            Client::Rtsp(r) => {
                while let Some(t) = r.session.poll_transmit() {
                    if let crate::rtsp::server::Transmit::Tcp(b) = t {
                        last.push(b);
                    }
                }
            }
            Client::Flv(_) => {}
        }
        if l.open && !last.is_empty() {
            self.relay.farewells.insert(conn, last);
        }
        self.outputs.push_back(Output::Close { conn, flush: true });
    }

    /// A relay connection failed or ended: it is closed (when the runtime still holds it),
    /// its owner retries after a backoff.
    fn link_failed(&mut self, conn: ConnId, close: bool, why: &str, now_ms: u64) {
        let Some(link) = self.relay.links.remove(&conn) else {
            return;
        };
        if close {
            self.outputs.push_back(Output::Close { conn, flush: false });
        }
        match link.owner {
            Owner::Pull(key) => self.pull_failed(&key, why, now_ms),
            Owner::Push(id) => self.push_failed(id, why, now_ms),
        }
    }

    fn pull_failed(&mut self, key: &StreamKey, why: &str, now_ms: u64) {
        let url = self.pull_url(key);
        let origins = match self.relay.pulls.get(key) {
            Some(p) if p.url.is_none() => self.relay.config.pull_origins.len().max(1),
            Some(_) => 1,
            None => return,
        };
        let random = self.relay_random();
        let Some(p) = self.relay.pulls.get_mut(key) else {
            return;
        };
        p.conn = None;
        p.media_since = None;
        let was_live = std::mem::replace(&mut p.live, false);
        let attempts = p.attempts;
        let exhausted = p.options.retries.is_some_and(|r| attempts > r);
        p.origin = (p.origin + 1) % origins;
        p.failed_in_round += 1;
        let delay = if p.failed_in_round >= origins {
            p.failed_in_round = 0;
            p.failures = p.failures.saturating_add(1);
            backoff_jittered_ms(p.failures, random)
        } else {
            0
        };
        if !exhausted {
            p.retry_at = Some(now_ms.saturating_add(delay));
        }
        let id = p.id;
        if was_live {
            self.notify_pull(key, false, why, now_ms);
            self.end_publish(id, now_ms);
        }
        if exhausted {
            self.log(
                LogLevel::Warn,
                format!("relay pull {key} from {url} failed: {why}; no retries left, stopped"),
            );
            self.pull_stop(key, "no retries left", now_ms);
            return;
        }
        self.log(
            LogLevel::Warn,
            format!(
                "relay pull {key} from {url} failed: {why} (attempt {attempts}); next attempt in {:.1} s",
                delay as f64 / 1000.0
            ),
        );
    }

    /// Stops the pull of `key` (idle, the API, or a local publisher took the stream); its id.
    fn pull_stop(&mut self, key: &StreamKey, why: &str, now_ms: u64) -> Option<ConnId> {
        if self.relay.pulls.get(key).is_some_and(|p| p.live) {
            self.notify_pull(key, false, why, now_ms);
        }
        let p = self.relay.pulls.remove(key)?;
        if let Some(conn) = p.conn {
            self.link_close(conn);
        }
        if p.live {
            self.end_publish(p.id, now_ms);
        }
        self.log(LogLevel::Info, format!("relay pull {key} stopped: {why}"));
        Some(p.id)
    }

    /// A local publisher claims `key`: a pull of it stops first.
    pub(super) fn relay_yield(&mut self, key: &StreamKey, now_ms: u64) {
        if self.relay.pulls.contains_key(key) {
            self.pull_stop(key, "a local publisher took the stream", now_ms);
        }
    }

    /// Deadlines: start timeouts, retries, idle pulls, wants to repeat.
    pub(super) fn relay_timeout(&mut self, now_ms: u64) {
        self.rtsp_links_timeout(now_ms);
        let expired: Vec<(ConnId, &'static str)> = self
            .relay
            .links
            .iter()
            .filter(|(_, l)| l.deadline_ms.is_some_and(|d| d <= now_ms))
            .map(|(&c, l)| (c, l.deadline_why))
            .collect();
        for (conn, why) in expired {
            // An attempt still connecting is abandoned with a close too.
            self.link_failed(conn, true, why, now_ms);
        }
        if self.relay.check_at.is_some_and(|at| at <= now_ms) {
            self.relay.check_at = None;
            self.pulls_check_idle(now_ms);
            self.wants_refresh(now_ms);
            if !self.relay.pulls.is_empty() || !self.relay.wants.is_empty() {
                self.relay.check_at = Some(now_ms.saturating_add(IDLE_CHECK_MS));
            }
        }
        let due: Vec<StreamKey> = self
            .relay
            .pulls
            .iter()
            .filter(|(_, p)| p.retry_at.is_some_and(|at| at <= now_ms))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.pull_attempt(&key, now_ms);
        }
        let due: Vec<ConnId> = self
            .relay
            .pushes
            .iter()
            .filter(|(_, p)| p.retry_at.is_some_and(|at| at <= now_ms))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.push_attempt(id, now_ms);
        }
    }

    /// Players here of `key` (waiting or playing), pushes aside.
    fn players_of(&self, key: &StreamKey) -> usize {
        self.hub
            .streams()
            .find(|s| s.name == key.as_str())
            .map_or(0, |s| s.players.len())
    }

    fn pulls_check_idle(&mut self, now_ms: u64) {
        let keys: Vec<StreamKey> = self.relay.pulls.keys().cloned().collect();
        let mut stop = Vec::new();
        for key in keys {
            let players = self.players_of(&key);
            let Some(p) = self.relay.pulls.get_mut(&key) else {
                continue;
            };
            let remote = p
                .remote_want_ms
                .is_some_and(|t| now_ms.saturating_sub(t) < WANT_TTL_MS);
            if players > 0 || remote {
                p.idle_since = None;
                continue;
            }
            let Some(after) = p.options.auto_stop_ms else {
                continue;
            };
            let since = *p.idle_since.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= after {
                stop.push(key);
            }
        }
        for key in stop {
            self.pull_stop(&key, "no players left", now_ms);
        }
    }

    /// Tells the owners of streams pulled for players here that they still have players.
    fn wants_refresh(&mut self, now_ms: u64) {
        let keys: Vec<StreamKey> = self.relay.wants.keys().cloned().collect();
        for key in keys {
            if self.players_of(&key) == 0 {
                self.relay.wants.remove(&key);
                continue;
            }
            if self.relay.wants.get(&key).is_some_and(|&at| at <= now_ms) {
                self.relay
                    .wants
                    .insert(key.clone(), now_ms.saturating_add(WANT_REFRESH_MS));
                self.outputs.push_back(Output::Command {
                    worker: self.puller_of(&key),
                    command: Command::RelayWant { key },
                });
            }
        }
    }

    /// `key` was published here by a local publisher with `query`: start its static pushes.
    pub(super) fn relay_published(&mut self, key: &StreamKey, query: &str, now_ms: u64) {
        if is_relayed(query)
            || self
                .relay
                .pushes
                .values()
                .any(|p| &p.key == key && !p.by_api)
        {
            return;
        }
        let urls: Vec<RelayUrl> = self
            .relay
            .config
            .push
            .iter()
            .filter(|r| r.app == "*" || r.app == key.app())
            .flat_map(|r| r.urls.iter().cloned())
            .collect();
        for url in urls {
            if let Err(why) = self.push_start(key, url, false, query, now_ms) {
                self.log(LogLevel::Warn, format!("relay push {key}: {why}"));
            }
        }
    }

    /// Starts pushing `key` to `url` (`{url}/{stream}` unless `full_url`); the push's id, or
    /// why not (a push to this server itself, or over HTTP-FLV).
    fn push_start(
        &mut self,
        key: &StreamKey,
        url: RelayUrl,
        full_url: bool,
        query: &str,
        now_ms: u64,
    ) -> Result<ConnId, String> {
        url.pushable()?;
        if let Some(own) = self.relay.config.own_rtmp {
            if url.is_own(own) {
                return Err(format!(
                    "refused to push to {url}: that is this server's own RTMP address ({own})"
                ));
            }
        }
        let id = self.outbound.reserve_id();
        self.relay.pushes.insert(
            id,
            Push {
                key: key.clone(),
                url,
                full_url,
                by_api: full_url,
                query: query.trim_start_matches('?').to_owned(),
                conn: None,
                failures: 0,
                retry_at: None,
                playing: false,
                base_dts: None,
                started_ms: now_ms,
                peer: None,
                bytes_in: 0,
                bytes_out: 0,
            },
        );
        self.push_attempt(id, now_ms);
        Ok(id)
    }

    /// The local publisher of `key` left: its pushes stop.
    pub(super) fn relay_unpublished(&mut self, key: &StreamKey) {
        let ids: Vec<ConnId> = self
            .relay
            .pushes
            .iter()
            .filter(|(_, p)| &p.key == key)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.push_stop(id);
        }
    }

    fn push_stop(&mut self, id: ConnId) -> bool {
        let Some(p) = self.relay.pushes.remove(&id) else {
            return false;
        };
        if let Some(conn) = p.conn {
            if p.playing {
                self.hub.stop_play(conn);
            }
            self.link_close(conn);
        }
        true
    }

    /// The hub ended the stream a push plays (its publisher is gone for good): the push stops.
    pub(super) fn relay_player_ended(&mut self, conn: ConnId) -> bool {
        let Some(Owner::Push(id)) = self.relay.links.get(&conn).map(|l| l.owner.clone()) else {
            return false;
        };
        if let Some(p) = self.relay.pushes.get_mut(&id) {
            p.playing = false;
        }
        self.push_stop(id)
    }

    /// Stops the pull or push `id` (the API's kick); whether there was one.
    pub(super) fn relay_kick(&mut self, id: ConnId, reason: &str, now_ms: u64) -> bool {
        let pulled = self
            .relay
            .pulls
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(k, _)| k.clone());
        if let Some(key) = pulled {
            self.pull_stop(&key, reason, now_ms);
            return true;
        }
        if self.push_stop(id) {
            self.log(LogLevel::Info, format!("relay push {id} stopped: {reason}"));
            return true;
        }
        false
    }

    fn push_attempt(&mut self, id: ConnId, now_ms: u64) {
        let Some(p) = self.relay.pushes.get(&id) else {
            return;
        };
        let url = p.url.clone();
        let (app, stream) = url.target(p.name());
        let stream = format!("{stream}?{}", relay_query(&p.query));
        let conn = match url.scheme {
            Scheme::Rtsp | Scheme::Rtsps => match self.rtsp_push_open(id, now_ms) {
                Ok(Some(conn)) => conn,
                // Waits for the stream's tracks (checked again shortly).
                Ok(None) => return,
                Err(why) => return self.push_failed(id, &why, now_ms),
            },
            Scheme::Http | Scheme::Https => {
                return self.push_failed(id, "HTTP-FLV relays pull only", now_ms)
            }
            _ => {
                let owner = Owner::Push(id);
                let conn = self.rtmp_link_open(&url, &app, owner, START_TIMEOUT_MS, now_ms);
                if let Some(Client::Rtmp(s)) =
                    self.relay.links.get_mut(&conn).map(|l| &mut l.client)
                {
                    s.publish(&stream);
                }
                conn
            }
        };
        if let Some(p) = self.relay.pushes.get_mut(&id) {
            p.conn = Some(conn);
            p.retry_at = None;
            p.playing = false;
            p.base_dts = None;
        }
    }

    fn push_event(&mut self, conn: ConnId, id: ConnId, event: ClientEvent, now_ms: u64) {
        match event {
            ClientEvent::Publishing { .. } => self.push_started(conn, id, now_ms),
            ClientEvent::Rejected { code, description } => {
                self.link_failed(conn, true, &format!("{code}: {description}"), now_ms)
            }
            _ => {}
        }
    }

    /// The target accepts the push on `conn`: it starts playing the local stream.
    fn push_started(&mut self, conn: ConnId, id: ConnId, now_ms: u64) {
        if let Some(l) = self.relay.links.get_mut(&conn) {
            l.deadline_ms = None;
        }
        let Some(p) = self.relay.pushes.get_mut(&id) else {
            return;
        };
        p.playing = true;
        p.failures = 0;
        let key = p.key.clone();
        let target = p.target();
        self.log(LogLevel::Info, format!("relay push {key}: to {target}"));
        // The push plays the stream like any player: bounded queue, GOP cache first.
        self.hub.play(&key, conn, now_ms);
        self.outputs.push_back(Output::Transmit(conn));
    }

    fn push_failed(&mut self, id: ConnId, why: &str, now_ms: u64) {
        let random = self.relay_random();
        let Some(p) = self.relay.pushes.get_mut(&id) else {
            return;
        };
        if let Some(conn) = p.conn.take() {
            if p.playing {
                self.hub.stop_play(conn);
            }
        }
        p.playing = false;
        p.failures = p.failures.saturating_add(1);
        let delay = backoff_jittered_ms(p.failures, random);
        p.retry_at = Some(now_ms.saturating_add(delay));
        let target = p.target();
        let key = p.key.clone();
        let failures = p.failures;
        self.log(
            LogLevel::Warn,
            format!(
                "relay push {key} to {target} failed: {why} (attempt {failures}); next attempt in {:.1} s",
                delay as f64 / 1000.0
            ),
        );
    }

    /// The hub dropped a push that fell too far behind: it reconnects.
    pub(super) fn relay_player_overflowed(&mut self, conn: ConnId, now_ms: u64) -> bool {
        if !self.relay.owns(conn) {
            return false;
        }
        self.link_failed(conn, true, "target too slow: queue overflow", now_ms);
        true
    }

    /// The peer closed a relay connection.
    pub(super) fn relay_closed(&mut self, conn: ConnId, reason: &str, now_ms: u64) {
        self.relay.farewells.remove(&conn);
        self.link_failed(conn, false, &format!("connection closed: {reason}"), now_ms);
        self.drain_hub(now_ms);
    }

    /// Bytes to send on a relay connection: session output, then a push's media (or the last
    /// bytes of a connection closed politely).
    pub(super) fn relay_transmit(
        &mut self,
        conn: ConnId,
        budget: usize,
        out: &mut Vec<Bytes>,
    ) -> usize {
        if let Some(last) = self.relay.farewells.remove(&conn) {
            out.extend(last.iter().cloned());
            return last.iter().map(Bytes::len).sum();
        }
        let sent = match self.relay.links.get(&conn) {
            Some(l) if l.open => match l.client {
                Client::Rtmp(_) => self.rtmp_link_transmit(conn, budget, out),
                Client::Flv(_) => self.flv_transmit(conn, out),
                Client::Rtsp(_) => self.rtsp_link_transmit(conn, budget, out),
            },
            _ => return 0,
        };
        self.relay.count(conn, 0, sent);
        sent
    }

    /// [`Engine::relay_transmit`] for an RTMP relay connection.
    fn rtmp_link_transmit(&mut self, conn: ConnId, budget: usize, out: &mut Vec<Bytes>) -> usize {
        let Some(Link {
            client: Client::Rtmp(session),
            owner,
            ..
        }) = self.relay.links.get_mut(&conn)
        else {
            return 0;
        };
        let push = match owner {
            Owner::Push(id) => self.relay.pushes.get_mut(id).filter(|p| p.playing),
            Owner::Pull(_) => None,
        };
        let mut n = 0;
        if let Some(p) = push {
            while n < budget {
                let Some(packet) = self.hub.poll_packet(conn) else {
                    break;
                };
                let d = packet.data();
                if d.type_id == message_type::DATA_AMF0 {
                    // The stream's onMetaData goes on as the target expects it from a publisher.
                    let data = DataMessage::decode(&d.body, false, Limits::default().max_amf_depth);
                    if let Some(value) = data.as_ref().ok().and_then(DataMessage::metadata) {
                        if session.send_metadata(value).is_ok() {
                            n += d.body.len();
                        }
                    }
                    continue;
                }
                if d.type_id != message_type::VIDEO && d.type_id != message_type::AUDIO {
                    continue;
                }
                // The target is taken to read Enhanced RTMP where a codec has no other form.
                let body = d.flv_body(FlvForm::LegacyOrEnhanced);
                if body.is_empty() {
                    continue;
                }
                let base = *p.base_dts.get_or_insert(d.dts);
                let ts = d.dts.saturating_sub(base).max(0) as u32;
                if session.send_media(d.type_id, ts, body).is_err() {
                    break;
                }
                n += body.len();
            }
        }
        let mut sent = 0;
        while let Some(b) = session.poll_transmit() {
            sent += b.len();
            out.push(b);
        }
        sent
    }
}

impl PullOptions {
    /// A pull on demand: retried forever, stopped `idle_stop_ms` after its last player.
    pub(super) fn on_demand(config: &RelayConfig) -> PullOptions {
        PullOptions {
            timeout_ms: START_TIMEOUT_MS,
            retries: None,
            auto_stop_ms: Some(config.idle_stop_ms),
        }
    }
}

/// What the cluster registry (`engine/cluster.rs`) uses of the relays: pulls from the owner it
/// found, started and redirected by URL.
impl Engine {
    pub(super) fn relay_random_u32(&mut self) -> u32 {
        self.relay_random()
    }

    pub(super) fn relay_players_of(&self, key: &StreamKey) -> usize {
        self.players_of(key)
    }

    pub(super) fn relay_is_pulling(&self, key: &StreamKey) -> bool {
        self.relay.pulls.contains_key(key)
    }

    pub(super) fn relay_pull_live(&self, key: &StreamKey) -> bool {
        self.relay.pulls.get(key).is_some_and(|p| p.live)
    }

    pub(super) fn relay_pull_start(
        &mut self,
        key: &StreamKey,
        url: (RelayUrl, String),
        options: PullOptions,
        now_ms: u64,
    ) {
        self.pull_start(key, Some(url), options, now_ms);
    }

    /// The pull of `key` plays from `url` from now on: a failing one tries it at once.
    pub(super) fn relay_pull_retarget(&mut self, key: &StreamKey, url: RelayUrl, now_ms: u64) {
        let Some(p) = self.relay.pulls.get_mut(key) else {
            return;
        };
        p.url = Some(url);
        p.failures = 0;
        p.attempts = 0;
        if p.conn.is_none() {
            p.retry_at = Some(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_thirty() {
        let delays: Vec<u64> = (1..=8).map(backoff_ms).collect();
        assert_eq!(
            delays,
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(backoff_ms(u32::MAX), 30_000);
    }

    #[test]
    fn relay_marker_is_recognized() {
        assert!(is_relayed("rill_relay=1"));
        assert!(is_relayed("?a=b&rill_relay=1"));
        assert!(!is_relayed("lal_secret=x"));
        assert!(!is_relayed(""));
    }
}
