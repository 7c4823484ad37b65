//! Relays: RTMP client connections the engine opens to other servers.
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
//! Failed attempts are retried with exponential backoff (1 s doubling to 30 s), each logged
//! with its error. Relay connections mark themselves with [`RELAY_PARAM`] in their query: a
//! request carrying it is never pulled on demand, and a stream published with it is not pushed,
//! so two servers relaying to each other cannot loop.
//!
//! Each connection wraps an [`rtmp::client::ClientSession`](ClientSession); its ids come from
//! the engine's outbound id space and it is driven through the same engine calls as any
//! connection.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

use super::{connect_output, ConnId, Engine, LogLevel, Output};
use crate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use crate::rtmp::message_type;
use crate::scheme::Scheme;
use crate::stream_key::StreamKey;

/// The query parameter relay connections carry, so the next hop does not relay them back.
pub const RELAY_PARAM: &str = "rill_relay";

/// First retry delay (ms); it doubles after every failed round up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_START_MS: u64 = 1_000;
/// Longest retry delay (ms).
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// Time allowed from asking for a connection to the stream playing or publishing (ms).
const START_TIMEOUT_MS: u64 = 10_000;
/// How often pulls check whether they still have players (ms).
const IDLE_CHECK_MS: u64 = 500;

/// An `rtmp://` or `rtmps://host[:port][/path]` address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtmpUrl {
    /// [`Scheme::Rtmp`] or [`Scheme::Rtmps`] (RTMP over TLS).
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (the scheme's default when the URL names none: 1935, or 443 for RTMPS).
    pub port: u16,
    /// The path without its leading and trailing `/` (may be empty).
    pub path: String,
}

impl RtmpUrl {
    /// Parses `rtmp[s]://host[:port][/path]`; says what is wrong otherwise.
    pub fn parse(url: &str) -> Result<RtmpUrl, String> {
        let (scheme, rest) = Scheme::split(url)
            .filter(|(s, _)| matches!(s, Scheme::Rtmp | Scheme::Rtmps))
            .ok_or_else(|| format!("{url:?}: only rtmp:// and rtmps:// URLs are supported"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, tail) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed '['"))?;
            (host, tail.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
            None => scheme.default_port(),
        };
        if path.contains('?') {
            return Err(format!("{url:?}: no query allowed"));
        }
        Ok(RtmpUrl {
            scheme,
            host: host.to_owned(),
            port,
            path: path.trim_matches('/').to_owned(),
        })
    }

    /// The RTMP app and stream name to use for `name` under this URL: the first path segment
    /// is the app, the rest of the path and `name` the stream name.
    fn target(&self, name: &str) -> (String, String) {
        let full = if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.path)
        };
        match full.split_once('/') {
            Some((app, stream)) => (app.to_owned(), stream.to_owned()),
            None => (full, String::new()),
        }
    }

    fn tc_url(&self, app: &str) -> String {
        let scheme = self.scheme;
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}/{app}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}/{app}", self.host, self.port)
        }
    }
}

impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = self.tc_url(&self.path);
        f.write_str(base.trim_end_matches('/'))
    }
}

/// Streams published on apps matching `app` are pushed to every URL of `urls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRule {
    /// The app, or `*` for every app.
    pub app: String,
    /// Targets; the stream goes to `{url}/{stream}`.
    pub urls: Vec<RtmpUrl>,
}

/// Relay settings (`[relay.pull]`, `[[relay.push]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Origins pulled from when a player asks for a stream not live here, tried in order
    /// (none: no pull on demand).
    pub pull_origins: Vec<RtmpUrl>,
    /// A pull stops this long after its last player left (ms).
    pub idle_stop_ms: u64,
    /// Static pushes.
    pub push: Vec<PushRule>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            pull_origins: Vec::new(),
            idle_stop_ms: 10_000,
            push: Vec::new(),
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

/// Whether a query string carries [`RELAY_PARAM`].
pub fn is_relayed(query: &str) -> bool {
    query
        .trim_start_matches('?')
        .split('&')
        .any(|kv| kv.split('=').next() == Some(RELAY_PARAM))
}

/// Who a relay connection works for.
#[derive(Clone, Debug)]
enum Owner {
    Pull(StreamKey),
    Push(u64),
}

/// One RTMP client connection.
#[derive(Debug)]
struct Link {
    session: Box<ClientSession>,
    owner: Owner,
    /// Until playing or publishing started: when the attempt gives up.
    deadline_ms: Option<u64>,
    /// The runtime reported the connection open.
    open: bool,
}

/// A stream pulled from an origin.
#[derive(Debug)]
struct Pull {
    /// The id standing for the pull as the stream's publisher (hub, publication).
    id: ConnId,
    /// The current connection, if any.
    conn: Option<ConnId>,
    /// The origin tried next (or now).
    origin: usize,
    /// Origins that failed in the current round.
    failed_in_round: usize,
    /// Failed rounds since the last success.
    failures: u32,
    /// When to try again, while waiting.
    retry_at: Option<u64>,
    /// The pull publishes the stream here (it has a publication).
    live: bool,
    /// Since when it has had no players.
    idle_since: Option<u64>,
}

/// A stream pushed to one target.
#[derive(Debug)]
struct Push {
    key: StreamKey,
    url: RtmpUrl,
    /// The publisher's query, passed on.
    query: String,
    conn: Option<ConnId>,
    failures: u32,
    retry_at: Option<u64>,
    /// Registered as a hub player on `conn`.
    playing: bool,
    /// Timestamp offset so the target sees the stream start near 0.
    base_dts: Option<i64>,
}

/// The relays of one engine.
#[derive(Debug, Default)]
pub(super) struct Relays {
    config: RelayConfig,
    links: HashMap<ConnId, Link>,
    pulls: HashMap<StreamKey, Pull>,
    pushes: HashMap<u64, Push>,
    next_push: u64,
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

    /// `conn` is one of the relays' connections.
    pub(super) fn owns(&self, conn: ConnId) -> bool {
        self.links.contains_key(&conn)
    }

    /// The earliest time relays have work to do.
    pub(super) fn poll_timeout(&self) -> Option<u64> {
        let links = self.links.values().filter_map(|l| l.deadline_ms);
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
}

impl Engine {
    /// How many streams this engine pulls from an origin now.
    pub fn relay_pull_count(&self) -> usize {
        self.relay.pull_count()
    }

    /// How many static pushes this engine runs now.
    pub fn relay_push_count(&self) -> usize {
        self.relay.push_count()
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.outputs.push_back(Output::Log { level, message });
    }

    /// A player waits for `key`, which is not live here: pull it unless the player is itself
    /// a relay, no origin is configured, or a pull already runs.
    pub(super) fn relay_wanted(&mut self, key: &StreamKey, relayed: bool, now_ms: u64) {
        if relayed || self.relay.config.pull_origins.is_empty() {
            return;
        }
        if let Some(p) = self.relay.pulls.get_mut(key) {
            p.idle_since = None;
            return;
        }
        let id = self.outbound.reserve_id();
        self.relay.pulls.insert(
            key.clone(),
            Pull {
                id,
                conn: None,
                origin: 0,
                failed_in_round: 0,
                failures: 0,
                retry_at: None,
                live: false,
                idle_since: None,
            },
        );
        self.relay.check_at.get_or_insert(now_ms + IDLE_CHECK_MS);
        self.pull_attempt(key, now_ms);
    }

    fn pull_attempt(&mut self, key: &StreamKey, now_ms: u64) {
        let Some(p) = self.relay.pulls.get(key) else {
            return;
        };
        let Some(origin) = self.relay.config.pull_origins.get(p.origin).cloned() else {
            return;
        };
        let (app, name) = origin.target(key.as_str());
        let name = format!("{name}?{RELAY_PARAM}=1");
        let conn = self.open_link(&origin, &app, Owner::Pull(key.clone()), now_ms);
        if let Some(l) = self.relay.links.get_mut(&conn) {
            l.session.play(&name);
        }
        if let Some(p) = self.relay.pulls.get_mut(key) {
            p.conn = Some(conn);
            p.retry_at = None;
        }
    }

    fn open_link(&mut self, url: &RtmpUrl, app: &str, owner: Owner, now_ms: u64) -> ConnId {
        let conn = self.outbound.reserve_id();
        let random = self.random_bytes(crate::rtmp::handshake::HANDSHAKE_RANDOM_LEN);
        let config = ClientConfig::new(app, &url.tc_url(app));
        let session = ClientSession::new(config, &random, now_ms);
        self.relay.links.insert(
            conn,
            Link {
                session: Box::new(session),
                owner,
                deadline_ms: Some(now_ms.saturating_add(START_TIMEOUT_MS)),
                open: false,
            },
        );
        let policy = &self.config.tls_client;
        (self.outputs).push_back(connect_output(
            policy, conn, url.scheme, &url.host, url.port,
        ));
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
            Ok(_) => {
                if let Some(l) = self.relay.links.get_mut(&conn) {
                    l.open = true;
                    self.outputs.push_back(Output::Transmit(conn));
                }
            }
            Err(why) => self.link_failed(conn, false, &format!("connect: {why}"), now_ms),
        }
    }

    /// Bytes from a relay connection's peer.
    pub(super) fn relay_input(&mut self, conn: ConnId, data: &[u8], now_ms: u64) {
        let Some(l) = self.relay.links.get_mut(&conn) else {
            return;
        };
        let result = l.session.handle_input(data, now_ms);
        let mut events = Vec::new();
        while let Some(e) = l.session.poll_event() {
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
        let Some(id) = self.relay.pulls.get(key).map(|p| p.id) else {
            return;
        };
        match event {
            ClientEvent::Playing { .. } => {
                if let Some(l) = self.relay.links.get_mut(&conn) {
                    l.deadline_ms = None;
                }
                // A local publisher that came first keeps the stream: the pull is not needed.
                if self.hub.publish(key, id, now_ms).is_err() {
                    return self.pull_stop(key, "the stream is published here", now_ms);
                }
                let origin = self.pull_origin_name(key);
                self.log(
                    LogLevel::Info,
                    format!("relay pull {key}: playing from {origin}"),
                );
                if let Some(p) = self.relay.pulls.get_mut(key) {
                    p.live = true;
                    p.failures = 0;
                    p.failed_in_round = 0;
                }
                self.start_publication(id, key, None, now_ms);
            }
            ClientEvent::Media {
                type_id,
                timestamp,
                payload,
            } if type_id == message_type::VIDEO || type_id == message_type::AUDIO => {
                self.on_rtmp_media(id, type_id, timestamp, payload);
            }
            ClientEvent::Metadata { value } => self.publish_metadata(id, &value, 0),
            ClientEvent::Rejected { code, description } => {
                self.link_failed(conn, true, &format!("{code}: {description}"), now_ms)
            }
            ClientEvent::StreamEnded => {
                self.link_failed(conn, true, "the origin ended the stream", now_ms)
            }
            _ => {}
        }
    }

    fn pull_origin_name(&self, key: &StreamKey) -> String {
        self.relay
            .pulls
            .get(key)
            .and_then(|p| self.relay.config.pull_origins.get(p.origin))
            .map(ToString::to_string)
            .unwrap_or_default()
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
        let origin = self.pull_origin_name(key);
        let origins = self.relay.config.pull_origins.len().max(1);
        let Some(p) = self.relay.pulls.get_mut(key) else {
            return;
        };
        p.conn = None;
        let was_live = std::mem::replace(&mut p.live, false);
        p.origin = (p.origin + 1) % origins;
        p.failed_in_round += 1;
        let delay = if p.failed_in_round >= origins {
            p.failed_in_round = 0;
            p.failures = p.failures.saturating_add(1);
            backoff_ms(p.failures)
        } else {
            0
        };
        p.retry_at = Some(now_ms.saturating_add(delay));
        let id = p.id;
        self.log(
            LogLevel::Warn,
            format!(
                "relay pull {key} from {origin} failed: {why}; next attempt in {} s",
                delay as f64 / 1000.0
            ),
        );
        if was_live {
            self.end_publish(id, now_ms);
        }
    }

    /// Stops the pull of `key` (idle, or a local publisher took the stream).
    fn pull_stop(&mut self, key: &StreamKey, why: &str, now_ms: u64) {
        let Some(p) = self.relay.pulls.remove(key) else {
            return;
        };
        if let Some(conn) = p.conn {
            if let Some(mut l) = self.relay.links.remove(&conn) {
                l.session.close();
                self.outputs.push_back(Output::Close { conn, flush: true });
            }
        }
        if p.live {
            self.end_publish(p.id, now_ms);
        }
        self.log(LogLevel::Info, format!("relay pull {key} stopped: {why}"));
    }

    /// A local publisher claims `key`: a pull of it stops first.
    pub(super) fn relay_yield(&mut self, key: &StreamKey, now_ms: u64) {
        if self.relay.pulls.contains_key(key) {
            self.pull_stop(key, "a local publisher took the stream", now_ms);
        }
    }

    /// Deadlines: start timeouts, retries, idle pulls.
    pub(super) fn relay_timeout(&mut self, now_ms: u64) {
        let expired: Vec<ConnId> = self
            .relay
            .links
            .iter()
            .filter(|(_, l)| l.deadline_ms.is_some_and(|d| d <= now_ms))
            .map(|(&c, _)| c)
            .collect();
        for conn in expired {
            let why = format!("not started within {} s", START_TIMEOUT_MS / 1000);
            // An attempt still connecting is abandoned with a close too.
            self.link_failed(conn, true, &why, now_ms);
        }
        if self.relay.check_at.is_some_and(|at| at <= now_ms) {
            self.relay.check_at = None;
            self.pulls_check_idle(now_ms);
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
        let due: Vec<u64> = self
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

    fn pulls_check_idle(&mut self, now_ms: u64) {
        let idle_stop = self.relay.config.idle_stop_ms;
        let keys: Vec<StreamKey> = self.relay.pulls.keys().cloned().collect();
        let mut stop = Vec::new();
        for key in keys {
            let players = self
                .hub
                .streams()
                .find(|s| s.name == key.as_str())
                .map_or(0, |s| s.players.len());
            let Some(p) = self.relay.pulls.get_mut(&key) else {
                continue;
            };
            if players > 0 {
                p.idle_since = None;
            } else {
                let since = *p.idle_since.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= idle_stop {
                    stop.push(key);
                }
            }
        }
        for key in stop {
            self.pull_stop(&key, "no players left", now_ms);
        }
        if !self.relay.pulls.is_empty() {
            self.relay.check_at = Some(now_ms.saturating_add(IDLE_CHECK_MS));
        }
    }

    /// `key` was published here by a local publisher with `query`: start its static pushes.
    pub(super) fn relay_published(&mut self, key: &StreamKey, query: &str, now_ms: u64) {
        if is_relayed(query) || self.relay.pushes.values().any(|p| &p.key == key) {
            return;
        }
        let urls: Vec<RtmpUrl> = self
            .relay
            .config
            .push
            .iter()
            .filter(|r| r.app == "*" || r.app == key.app())
            .flat_map(|r| r.urls.iter().cloned())
            .collect();
        for url in urls {
            let id = self.relay.next_push;
            self.relay.next_push += 1;
            self.relay.pushes.insert(
                id,
                Push {
                    key: key.clone(),
                    url,
                    query: query.trim_start_matches('?').to_owned(),
                    conn: None,
                    failures: 0,
                    retry_at: None,
                    playing: false,
                    base_dts: None,
                },
            );
            self.push_attempt(id, now_ms);
        }
    }

    /// The local publisher of `key` left: its pushes stop.
    pub(super) fn relay_unpublished(&mut self, key: &StreamKey) {
        let ids: Vec<u64> = self
            .relay
            .pushes
            .iter()
            .filter(|(_, p)| &p.key == key)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            let Some(p) = self.relay.pushes.remove(&id) else {
                continue;
            };
            if let Some(conn) = p.conn {
                if p.playing {
                    self.hub.stop_play(conn);
                }
                if let Some(mut l) = self.relay.links.remove(&conn) {
                    l.session.close();
                    self.outputs.push_back(Output::Close { conn, flush: true });
                }
            }
        }
    }

    fn push_attempt(&mut self, id: u64, now_ms: u64) {
        let Some(p) = self.relay.pushes.get(&id) else {
            return;
        };
        let url = p.url.clone();
        let (app, name) = url.target(p.key.stream());
        let name = if p.query.is_empty() {
            format!("{name}?{RELAY_PARAM}=1")
        } else {
            format!("{name}?{}&{RELAY_PARAM}=1", p.query)
        };
        let conn = self.open_link(&url, &app, Owner::Push(id), now_ms);
        if let Some(l) = self.relay.links.get_mut(&conn) {
            l.session.publish(&name);
        }
        if let Some(p) = self.relay.pushes.get_mut(&id) {
            p.conn = Some(conn);
            p.retry_at = None;
            p.playing = false;
            p.base_dts = None;
        }
    }

    fn push_event(&mut self, conn: ConnId, id: u64, event: ClientEvent, now_ms: u64) {
        match event {
            ClientEvent::Publishing { .. } => {
                if let Some(l) = self.relay.links.get_mut(&conn) {
                    l.deadline_ms = None;
                }
                let Some(p) = self.relay.pushes.get_mut(&id) else {
                    return;
                };
                p.playing = true;
                p.failures = 0;
                let key = p.key.clone();
                let target = format!("{}/{}", p.url, key.stream());
                self.log(LogLevel::Info, format!("relay push {key}: to {target}"));
                // The push plays the stream like any player: bounded queue, GOP cache first.
                self.hub.play(&key, conn, now_ms);
                self.outputs.push_back(Output::Transmit(conn));
            }
            ClientEvent::Rejected { code, description } => {
                self.link_failed(conn, true, &format!("{code}: {description}"), now_ms)
            }
            _ => {}
        }
    }

    fn push_failed(&mut self, id: u64, why: &str, now_ms: u64) {
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
        let delay = backoff_ms(p.failures);
        p.retry_at = Some(now_ms.saturating_add(delay));
        let target = format!("{}/{}", p.url, p.key.stream());
        let key = p.key.clone();
        self.log(
            LogLevel::Warn,
            format!(
                "relay push {key} to {target} failed: {why}; next attempt in {} s",
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
        self.link_failed(conn, false, &format!("connection closed: {reason}"), now_ms);
        self.drain_hub(now_ms);
    }

    /// Bytes to send on a relay connection: session output, then a push's media.
    pub(super) fn relay_transmit(
        &mut self,
        conn: ConnId,
        budget: usize,
        out: &mut Vec<Bytes>,
    ) -> usize {
        let Some(l) = self.relay.links.get_mut(&conn) else {
            return 0;
        };
        if !l.open {
            return 0;
        }
        let push = match l.owner {
            Owner::Push(id) => self.relay.pushes.get_mut(&id).filter(|p| p.playing),
            Owner::Pull(_) => None,
        };
        let mut n = 0;
        if let Some(p) = push {
            while n < budget {
                let Some(packet) = self.hub.poll_packet(conn) else {
                    break;
                };
                let d = packet.data();
                if d.type_id != message_type::VIDEO && d.type_id != message_type::AUDIO {
                    continue;
                }
                let base = *p.base_dts.get_or_insert(d.dts);
                let ts = d.dts.saturating_sub(base).max(0) as u32;
                if l.session.send_media(d.type_id, ts, &d.body).is_err() {
                    break;
                }
                n += d.body.len();
            }
        }
        let mut sent = 0;
        while let Some(b) = l.session.poll_transmit() {
            sent += b.len();
            out.push(b);
        }
        sent
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
    fn urls_parse() {
        let u = RtmpUrl::parse("rtmp://10.0.0.1:1936/live").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("10.0.0.1", 1936, "live")
        );
        assert_eq!(u.target("s"), ("live".into(), "s".into()));
        let u = RtmpUrl::parse("rtmp://h").unwrap();
        assert_eq!((u.port, u.path.as_str()), (1935, ""));
        assert_eq!(u.target("live/s"), ("live".into(), "s".into()));
        assert_eq!(u.to_string(), "rtmp://h:1935");
        assert!(RtmpUrl::parse("http://h/x").is_err());
        assert!(RtmpUrl::parse("rtmp://h:0").is_err());
        let u = RtmpUrl::parse("rtmps://h/live").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Rtmps, 443));
        assert_eq!(u.tc_url("live"), "rtmps://h:443/live");
        assert!(RtmpUrl::parse("https://h/live").is_err());
        assert!(RtmpUrl::parse("rtmp://:1935").is_err());
    }

    #[test]
    fn relay_marker_is_recognized() {
        assert!(is_relayed("rill_relay=1"));
        assert!(is_relayed("?a=b&rill_relay=1"));
        assert!(!is_relayed("lal_secret=x"));
        assert!(!is_relayed(""));
    }
}
