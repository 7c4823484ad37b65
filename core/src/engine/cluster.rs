//! The cluster registry: origins and edges that find each other through Redis.
//!
//! Every engine with `[cluster] redis` set keeps one Redis connection (asked for with
//! [`Output::Connect`] like every outbound connection, speaking [`crate::resp`]), and:
//!
//! - **Origin** (role `origin` or `both`): a stream published here is claimed with
//!   `SET rill:stream:{app}/{stream} "{epoch} {node} {advertise}" NX PX lease`, refreshed every
//!   third of the lease with a compare-and-set script (only while the value is still ours), and
//!   deleted by a compare-and-delete script when its publisher leaves. A claim refused because
//!   another node owns the stream is retried until a whole lease has passed (a dead owner's key
//!   expires by then); then the local publisher is closed. With `hub.publish_conflict = "kick"`
//!   the first claim overwrites instead, and the former owner, whose refresh then fails, closes
//!   its publisher. A refresh that finds the key gone (Redis restarted, or the lease lapsed while
//!   we were cut off) claims again with `NX`, so a node whose lease expired never overwrites a
//!   newer owner. Worker 0 of every node keeps `rill:node:{node}` (`"{advertise} {role}"`)
//!   alive with the same lease.
//! - **Edge** (role `edge` or `both`): a player asking for a stream not live here (and not
//!   itself a relay, so two nodes cannot loop) makes the engine `GET` the stream's key, again
//!   every tick while players wait, and start a relay pull from the owner's advertised URL. When
//!   that pull fails the key is looked up again, and a new owner is pulled at once; the hub's
//!   publisher grace keeps the players meanwhile.
//!
//! Redis is never on the media path: while it is unreachable, local streams play, pulls that run
//! go on, and the connection is retried with jittered backoff (1 s doubling to 5 s), one log
//! line per failed attempt.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use super::relay::{backoff_jittered_ms, PullOptions, RelayUrl};
use super::{connect_output, ConnId, Engine, LogLevel, Output, PublishConflict};
use crate::resp::{encode_command, Reply, RespDecoder, RespLimits};
use crate::scheme::Scheme;
use crate::stream_key::StreamKey;

/// Longest wait between reconnection attempts (ms).
const RECONNECT_MAX_MS: u64 = 5_000;
/// Time allowed for the connection to open, and for each reply (ms).
const REPLY_TIMEOUT_MS: u64 = 3_000;
/// How long a lookup goes on after the last player asked (ms).
const WANT_TTL_MS: u64 = 3_000;
/// How often lookups for waiting players are repeated (ms).
const LOOKUP_EVERY_MS: u64 = 500;
/// How often worker 0 reads the whole registry for the statistics (ms): `KEYS rill:*` walks
/// every key of the database, so not on every tick.
const VIEW_EVERY_MS: u64 = 2_000;

/// Refreshes a key's lease if it still holds our value: 1 refreshed, 0 another owner's,
/// -1 gone.
const REFRESH_SCRIPT: &str = "local v = redis.call('GET', KEYS[1]) \
     if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
     elseif v then return 0 else return -1 end";
/// Deletes a key only if it still holds our value.
const RELEASE_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";
/// Every registry key and its value, as a flat array (for statistics).
const VIEW_SCRIPT: &str = "local r = {} for _, k in ipairs(redis.call('KEYS', 'rill:*')) do \
     local v = redis.call('GET', k) if v then r[#r + 1] = k r[#r + 1] = v end end return r";

/// What this node does in the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRole {
    /// Registers the streams published here.
    #[default]
    Origin,
    /// Pulls streams not published here from their origin.
    Edge,
    /// Both.
    Both,
}

impl ClusterRole {
    fn origin(self) -> bool {
        self != ClusterRole::Edge
    }
    fn edge(self) -> bool {
        self != ClusterRole::Origin
    }
}

impl fmt::Display for ClusterRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterRole::Origin => "origin",
            ClusterRole::Edge => "edge",
            ClusterRole::Both => "both",
        })
    }
}

/// Where Redis listens: `redis://[[user]:password@]host[:port][/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// `AUTH` after connecting: user (empty: the default user) and password.
    pub auth: Option<(String, String)>,
    /// Host name or IP address.
    pub host: String,
    /// TCP port (6379 by default).
    pub port: u16,
    /// Database number (`SELECT`ed after connecting when not 0).
    pub db: u32,
}

impl RedisTarget {
    /// Parses `redis://[[user]:password@]host[:port][/db]`.
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let bad = || "expected redis://[[user]:password@]host[:port][/db]".to_owned();
        let rest = url.strip_prefix("redis://").ok_or_else(bad)?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => {
                let (user, password) = userinfo.split_once(':').ok_or_else(bad)?;
                (Some((user.to_owned(), password.to_owned())), rest)
            }
            None => (None, rest),
        };
        let (hostport, db) = rest.split_once('/').unwrap_or((rest, ""));
        let db = if db.is_empty() {
            0
        } else {
            db.parse().map_err(|_| bad())?
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse().map_err(|_| bad())?)
            }
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(RedisTarget {
            auth,
            host: host.to_owned(),
            port,
            db,
        })
    }
}

impl fmt::Display for RedisTarget {
    /// The URL without the password (for logs and the API).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Cluster settings (`[cluster]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Redis; `None`: no cluster.
    pub redis: Option<RedisTarget>,
    /// This node's name in the registry.
    pub node_id: String,
    /// How other nodes pull from this one (`rtmp://host:port` or `http://host:port`).
    pub advertise: String,
    /// What this node does.
    pub role: ClusterRole,
    /// Lease of every registry key (ms); refreshed every third of it.
    pub lease_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: None,
            node_id: String::new(),
            advertise: String::new(),
            role: ClusterRole::Origin,
            lease_ms: 3_000,
        }
    }
}

/// The registry key of `key`.
pub fn stream_key(key: &StreamKey) -> String {
    format!("rill:stream:{key}")
}

/// The registry key of node `node`.
pub fn node_key(node: &str) -> String {
    format!("rill:node:{node}")
}

/// A registry value: `{epoch} {node} {advertise}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// When and by which claim the owner took the stream (unique per claim).
    pub epoch: String,
    /// The owner's node id.
    pub node: String,
    /// The owner's advertised base URL.
    pub advertise: String,
}

impl Owner {
    /// Parses a registry value.
    pub fn parse(value: &[u8]) -> Option<Owner> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.splitn(3, ' ');
        let (epoch, node, advertise) = (parts.next()?, parts.next()?, parts.next()?);
        Some(Owner {
            epoch: epoch.to_owned(),
            node: node.to_owned(),
            advertise: advertise.to_owned(),
        })
    }

    /// The URL an edge pulls `key` from.
    pub fn pull_url(&self, key: &StreamKey) -> Result<(RelayUrl, String), String> {
        let base = self.advertise.trim_end_matches('/');
        let flv = if base.starts_with("http") { ".flv" } else { "" };
        RelayUrl::parse_stream(&format!("{base}/{key}{flv}"))
    }
}

/// Where a claim stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClaimState {
    /// Not (yet) confirmed by Redis; refused by it since the given time, if it was.
    Claiming { refused_since: Option<u64> },
    /// Ours until the lease runs out.
    Owned,
}

#[derive(Debug)]
struct Claim {
    publisher: ConnId,
    value: String,
    state: ClaimState,
    /// The first claim overwrites (`hub.publish_conflict = "kick"`).
    overwrite: bool,
}

/// A reply being waited for, in the order the commands went out.
#[derive(Debug)]
enum Awaited {
    Ignore,
    Claim(StreamKey, String),
    Refresh(StreamKey, String),
    Lookup(StreamKey),
    View,
}

/// A stream players wait for or play through a pull from its owner.
#[derive(Debug)]
struct Lookup {
    /// Asked for until then (renewed by players).
    until_ms: u64,
    /// A GET is on its way.
    in_flight: bool,
    /// The registry value of the owner pulled from now.
    owner: Option<String>,
}

/// A node or stream in the registry, as last read (for `/api/stat/cluster`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryEntry {
    /// `rill:node:{id}` or `rill:stream:{app}/{stream}`.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// The registry client of one engine.
#[derive(Debug, Default)]
pub(super) struct Cluster {
    config: ClusterConfig,
    conn: Option<ConnId>,
    open: bool,
    decoder: RespDecoder,
    out: BytesMut,
    awaited: VecDeque<(Awaited, u64)>,
    failures: u32,
    /// When to connect (again).
    connect_at: Option<u64>,
    /// When the connection attempt gives up.
    connect_by: Option<u64>,
    /// When leases are next refreshed and lookups repeated.
    tick_at: Option<u64>,
    claims: HashMap<StreamKey, Claim>,
    lookups: HashMap<StreamKey, Lookup>,
    /// The registry as last read (worker 0 only), and when to read it again.
    view: Vec<RegistryEntry>,
    view_at: Option<u64>,
    /// Redis answered since the last connection loss.
    pub(super) connected: bool,
}

impl Cluster {
    pub(super) fn new(config: ClusterConfig) -> Self {
        let connect_at = config.redis.as_ref().map(|_| 0);
        Cluster {
            config,
            decoder: RespDecoder::new(RespLimits::default()),
            connect_at,
            ..Cluster::default()
        }
    }

    pub(super) fn owns(&self, conn: ConnId) -> bool {
        self.conn == Some(conn)
    }

    fn enabled(&self) -> bool {
        self.config.redis.is_some()
    }

    pub(super) fn poll_timeout(&self) -> Option<u64> {
        let reply = self.awaited.front().map(|(_, by)| *by);
        [self.connect_at, self.connect_by, self.tick_at, reply]
            .into_iter()
            .flatten()
            .min()
    }

    /// Queues a command (only while connected: nothing waits for Redis to come back, the
    /// next tick after reconnecting sends what is still due); whether it was queued.
    fn send(&mut self, args: &[&str], awaited: Awaited, now_ms: u64) -> bool {
        if !self.open {
            return false;
        }
        encode_command(args, &mut self.out);
        self.awaited
            .push_back((awaited, now_ms.saturating_add(REPLY_TIMEOUT_MS)));
        true
    }

    /// This engine's part of the cluster statistics; `None` without a cluster.
    pub(super) fn stats(&self) -> Option<ClusterStats> {
        let redis = self.config.redis.as_ref()?;
        let owned = self
            .claims
            .values()
            .filter(|c| c.state == ClaimState::Owned)
            .count();
        let pulled = self.lookups.values().filter(|l| l.owner.is_some()).count();
        Some(ClusterStats {
            node_id: self.config.node_id.clone(),
            role: self.config.role,
            advertise: self.config.advertise.clone(),
            redis: redis.to_string(),
            connected: self.connected,
            owned: owned as u64,
            pulled: pulled as u64,
            registry: self.view.clone(),
        })
    }
}

/// The cluster as one engine sees it, for `/api/stat/cluster` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStats {
    /// This node's id.
    pub node_id: String,
    /// This node's role.
    pub role: ClusterRole,
    /// This node's advertised URL.
    pub advertise: String,
    /// Where Redis is.
    pub redis: String,
    /// Redis answers this engine.
    pub connected: bool,
    /// Streams this engine registered as their owner.
    pub owned: u64,
    /// Streams this engine pulls from an owner found in the registry.
    pub pulled: u64,
    /// The registry as last read (worker 0's snapshot only; empty on others).
    pub registry: Vec<RegistryEntry>,
}

/// `/api/stat/cluster`: this node (every worker's snapshot added up), and every node of the
/// registry with the streams it owns. `{"cluster": null}` without a cluster.
pub fn render_json(snapshots: &[super::EngineStats]) -> String {
    let parts: Vec<&ClusterStats> = snapshots
        .iter()
        .filter_map(|s| s.cluster.as_ref())
        .collect();
    let Some(first) = parts.first() else {
        return serde_json::json!({ "cluster": null }).to_string();
    };
    let registry: Vec<&RegistryEntry> = parts.iter().flat_map(|p| &p.registry).collect();
    let owned_by = |id: &str| -> Vec<String> {
        registry
            .iter()
            .filter_map(|s| {
                let key = s.key.strip_prefix("rill:stream:")?;
                let owner = Owner::parse(s.value.as_bytes())?;
                (owner.node == id).then(|| key.to_owned())
            })
            .collect()
    };
    let nodes: Vec<serde_json::Value> = registry
        .iter()
        .filter_map(|e| {
            let id = e.key.strip_prefix("rill:node:")?;
            let (advertise, role) = e.value.rsplit_once(' ').unwrap_or((&e.value, ""));
            Some(serde_json::json!({
                "node_id": id, "advertise": advertise, "role": role, "streams": owned_by(id),
            }))
        })
        .collect();
    let streams: Vec<serde_json::Value> = registry
        .iter()
        .filter_map(|s| {
            let key = s.key.strip_prefix("rill:stream:")?;
            let owner = Owner::parse(s.value.as_bytes())?;
            Some(serde_json::json!({
                "stream": key, "node_id": owner.node, "advertise": owner.advertise,
                "epoch": owner.epoch,
            }))
        })
        .collect();
    serde_json::json!({
        "cluster": {
            "node_id": first.node_id,
            "role": first.role.to_string(),
            "advertise": first.advertise,
            "redis": first.redis,
            "redis_connected": parts.iter().all(|p| p.connected),
            "owned": parts.iter().map(|p| p.owned).sum::<u64>(),
            "pulled": parts.iter().map(|p| p.pulled).sum::<u64>(),
            "nodes": nodes,
            "streams": streams,
        }
    })
    .to_string()
}

impl Engine {
    /// The cluster's deadlines: connecting, replies, the lease tick.
    pub(super) fn cluster_timeout(&mut self, now_ms: u64) {
        let c = &mut self.cluster;
        if c.connect_at.is_some_and(|at| at <= now_ms) {
            c.connect_at = None;
            return self.cluster_connect(now_ms);
        }
        if c.connect_by.is_some_and(|at| at <= now_ms) {
            return self.cluster_lost("no connection within 3 s", true, now_ms);
        }
        if c.awaited.front().is_some_and(|(_, by)| *by <= now_ms) {
            return self.cluster_lost("no reply within 3 s", true, now_ms);
        }
        if c.tick_at.is_some_and(|at| at <= now_ms) {
            self.cluster_tick(now_ms);
        }
    }

    fn cluster_connect(&mut self, now_ms: u64) {
        let Some(target) = self.cluster.config.redis.clone() else {
            return;
        };
        let conn = self.outbound.reserve_id();
        let c = &mut self.cluster;
        c.conn = Some(conn);
        c.open = false;
        c.connect_by = Some(now_ms.saturating_add(REPLY_TIMEOUT_MS));
        let connect = connect_output(
            &self.config.tls_client,
            conn,
            Scheme::Http,
            &target.host,
            target.port,
        );
        self.outputs.push_back(connect);
    }

    /// The connection to Redis failed or ended: everything in flight is forgotten (claims stay
    /// as they are and are confirmed again after reconnecting), and a new attempt is due after
    /// a backoff. `close`: the runtime still holds the connection.
    fn cluster_lost(&mut self, why: &str, close: bool, now_ms: u64) {
        let random = self.relay_random_u32();
        let worker0 = self.config.worker == 0;
        let c = &mut self.cluster;
        let Some(conn) = c.conn.take() else {
            return;
        };
        if close {
            self.outputs.push_back(Output::Close { conn, flush: false });
        }
        c.open = false;
        c.connected = false;
        c.connect_by = None;
        c.tick_at = None;
        c.out.clear();
        c.awaited.clear();
        c.decoder = RespDecoder::new(RespLimits::default());
        for l in c.lookups.values_mut() {
            l.in_flight = false;
        }
        c.failures = c.failures.saturating_add(1);
        let delay = backoff_jittered_ms(c.failures, random).min(RECONNECT_MAX_MS);
        c.connect_at = Some(now_ms.saturating_add(delay));
        let target = c.config.redis.as_ref().map(ToString::to_string);
        let failures = c.failures;
        if worker0 || failures == 1 {
            self.outputs.push_back(Output::Log {
                level: LogLevel::Warn,
                message: format!(
                    "cluster: Redis at {} unreachable: {why} (attempt {failures}); local streams \
                     go on, next attempt in {:.1} s",
                    target.unwrap_or_default(),
                    delay as f64 / 1000.0
                ),
            });
        }
    }

    /// The runtime's answer to the Redis connection's [`Output::Connect`].
    pub(super) fn cluster_connected(&mut self, result: Result<SocketAddr, String>, now_ms: u64) {
        match result {
            // The runtime holds nothing more for `conn`: no close.
            Err(why) => self.cluster_lost(&why, false, now_ms),
            Ok(addr) => {
                let c = &mut self.cluster;
                c.open = true;
                c.connect_by = None;
                let db = c.config.redis.as_ref().map_or(0, |t| t.db);
                if let Some((user, password)) = c.config.redis.as_ref().and_then(|t| t.auth.clone())
                {
                    if user.is_empty() {
                        c.send(&["AUTH", &password], Awaited::Ignore, now_ms);
                    } else {
                        c.send(&["AUTH", &user, &password], Awaited::Ignore, now_ms);
                    }
                }
                if db != 0 {
                    let db = db.to_string();
                    c.send(&["SELECT", &db], Awaited::Ignore, now_ms);
                }
                self.outputs.push_back(Output::Log {
                    level: LogLevel::Info,
                    message: format!(
                        "cluster: connected to Redis at {addr} as node {} ({})",
                        self.cluster.config.node_id, self.cluster.config.role
                    ),
                });
                self.cluster_tick(now_ms);
            }
        }
    }

    /// Bytes from Redis.
    pub(super) fn cluster_input(&mut self, data: &[u8], now_ms: u64) {
        self.cluster.decoder.push(data);
        loop {
            match self.cluster.decoder.poll_reply() {
                Ok(Some(reply)) => {
                    self.cluster.connected = true;
                    self.cluster.failures = 0;
                    let Some((awaited, _)) = self.cluster.awaited.pop_front() else {
                        return self.cluster_lost("a reply nobody asked for", true, now_ms);
                    };
                    self.cluster_reply(awaited, reply, now_ms);
                }
                Ok(None) => break,
                Err(e) => return self.cluster_lost(&e.to_string(), true, now_ms),
            }
        }
        self.cluster_flush();
        self.drain_hub(now_ms);
    }

    /// The peer closed the Redis connection.
    pub(super) fn cluster_closed(&mut self, reason: &str, now_ms: u64) {
        self.cluster_lost(&format!("connection closed: {reason}"), false, now_ms);
    }

    /// Commands waiting to go out.
    pub(super) fn cluster_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        if !self.cluster.open || self.cluster.out.is_empty() {
            return 0;
        }
        let bytes = self.cluster.out.split().freeze();
        let n = bytes.len();
        out.push(bytes);
        n
    }

    fn cluster_flush(&mut self) {
        if let (Some(conn), true) = (self.cluster.conn, !self.cluster.out.is_empty()) {
            self.outputs.push_back(Output::Transmit(conn));
        }
    }

    /// Every third of the lease: the node key, claims, lookups, the registry view.
    fn cluster_tick(&mut self, now_ms: u64) {
        let lease = self.cluster.config.lease_ms.max(300);
        let every = (lease / 3).min(LOOKUP_EVERY_MS);
        self.cluster.tick_at = Some(now_ms.saturating_add(every));
        if !self.cluster.open {
            return;
        }
        let lease_s = lease.to_string();
        // Every worker hears from Redis each tick, so a dead connection is noticed by the
        // reply deadline even on a worker with nothing registered.
        self.cluster.send(&["PING"], Awaited::Ignore, now_ms);
        if self.config.worker == 0 {
            let c = &self.cluster.config;
            let (key, value) = (node_key(&c.node_id), format!("{} {}", c.advertise, c.role));
            self.cluster.send(
                &["SET", &key, &value, "PX", &lease_s],
                Awaited::Ignore,
                now_ms,
            );
        }
        // Claims: a third of the lease apart at most, so none lapses while Redis answers.
        let keys: Vec<StreamKey> = self.cluster.claims.keys().cloned().collect();
        for key in keys {
            self.cluster_claim_send(&key, now_ms);
        }
        self.cluster_lookups(now_ms);
        if self.config.worker == 0 && !self.cluster.view_at.is_some_and(|at| at > now_ms) {
            self.cluster.view_at = Some(now_ms.saturating_add(VIEW_EVERY_MS));
            self.cluster
                .send(&["EVAL", VIEW_SCRIPT, "0"], Awaited::View, now_ms);
        }
        self.cluster_flush();
    }

    fn cluster_claim_send(&mut self, key: &StreamKey, now_ms: u64) {
        let lease = self.cluster.config.lease_ms.max(300).to_string();
        let Some(claim) = self.cluster.claims.get(key) else {
            return;
        };
        let (k, v) = (stream_key(key), claim.value.clone());
        match claim.state {
            ClaimState::Owned => self.cluster.send(
                &["EVAL", REFRESH_SCRIPT, "1", &k, &v, &lease],
                Awaited::Refresh(key.clone(), v.clone()),
                now_ms,
            ),
            ClaimState::Claiming { .. } if claim.overwrite => self.cluster.send(
                &["SET", &k, &v, "PX", &lease],
                Awaited::Claim(key.clone(), v.clone()),
                now_ms,
            ),
            ClaimState::Claiming { .. } => self.cluster.send(
                &["SET", &k, &v, "NX", "PX", &lease],
                Awaited::Claim(key.clone(), v.clone()),
                now_ms,
            ),
        };
    }

    fn cluster_lookups(&mut self, now_ms: u64) {
        let keys: Vec<StreamKey> = self.cluster.lookups.keys().cloned().collect();
        for key in keys {
            let players = self.relay_players_of(&key) > 0;
            let pulling = self.relay_is_pulling(&key);
            let live = self.relay_pull_live(&key);
            let Some(l) = self.cluster.lookups.get_mut(&key) else {
                continue;
            };
            if players {
                l.until_ms = now_ms.saturating_add(WANT_TTL_MS);
            }
            if l.until_ms <= now_ms && !pulling {
                self.cluster.lookups.remove(&key);
                continue;
            }
            // Looked up until a pull from the owner plays, and again whenever it does not
            // (the owner died or moved).
            if l.in_flight || (live && l.owner.is_some()) {
                continue;
            }
            let k = stream_key(&key);
            let sent = self
                .cluster
                .send(&["GET", &k], Awaited::Lookup(key.clone()), now_ms);
            if let Some(l) = self.cluster.lookups.get_mut(&key) {
                l.in_flight = sent;
            }
        }
    }

    fn cluster_reply(&mut self, awaited: Awaited, reply: Reply, now_ms: u64) {
        // An error (no password, a read-only replica, scripts disabled) says nothing about
        // who owns what: claims stay as they are and the connection starts over.
        if let Reply::Error(e) = &reply {
            let why = format!("it answered {}", String::from_utf8_lossy(e));
            return self.cluster_lost(&why, true, now_ms);
        }
        match awaited {
            Awaited::Ignore => {}
            Awaited::Claim(key, value) => {
                let won = matches!(&reply, Reply::Simple(s) if &s[..] == b"OK");
                self.cluster_claim_answer(&key, &value, won, false, now_ms);
            }
            Awaited::Refresh(key, value) => match reply {
                Reply::Integer(1) => {}
                // Gone (Redis restarted, or the lease lapsed while cut off): claim again,
                // never overwriting.
                Reply::Integer(-1) => {
                    if let Some(c) = self.cluster.claims.get_mut(&key) {
                        c.state = ClaimState::Claiming {
                            refused_since: None,
                        };
                        c.overwrite = false;
                        self.cluster_claim_send(&key, now_ms);
                    }
                }
                _ => self.cluster_claim_answer(&key, &value, false, true, now_ms),
            },
            Awaited::Lookup(key) => {
                let owner = reply.as_bytes().and_then(|b| Owner::parse(b));
                self.cluster_lookup_answer(&key, owner, now_ms);
            }
            Awaited::View => {
                if let Reply::Array(Some(items)) = reply {
                    let text = |r: &Reply| {
                        r.as_bytes()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                            .unwrap_or_default()
                    };
                    self.cluster.view = items
                        .chunks(2)
                        .filter_map(|kv| match kv {
                            [k, v] => Some(RegistryEntry {
                                key: text(k),
                                value: text(v),
                            }),
                            _ => None,
                        })
                        .collect();
                    self.cluster.view.sort_by(|a, b| a.key.cmp(&b.key));
                }
            }
        }
    }

    /// Redis answered a claim of `key` (`won`), or a refresh found another owner
    /// (`superseded`): the publisher here is closed when another node owns the stream for good.
    fn cluster_claim_answer(
        &mut self,
        key: &StreamKey,
        value: &str,
        won: bool,
        superseded: bool,
        now_ms: u64,
    ) {
        let lease = self.cluster.config.lease_ms;
        let Some(c) = self
            .cluster
            .claims
            .get_mut(key)
            .filter(|c| c.value == value)
        else {
            return;
        };
        if won {
            if c.state != ClaimState::Owned {
                c.state = ClaimState::Owned;
                c.overwrite = false;
                let line = format!("cluster: {key} registered as published here");
                self.log_line(LogLevel::Info, line);
            }
            return;
        }
        let since = match c.state {
            ClaimState::Claiming {
                refused_since: Some(t),
            } => t,
            _ => now_ms,
        };
        c.state = ClaimState::Claiming {
            refused_since: Some(since),
        };
        // A live owner refreshes its lease; a dead one's lapses within one lease.
        if superseded || now_ms.saturating_sub(since) >= lease {
            let publisher = c.publisher;
            self.cluster.claims.remove(key);
            let why = if superseded {
                "another origin took the stream over"
            } else {
                "the stream is published on another origin"
            };
            self.log_line(
                LogLevel::Warn,
                format!("cluster: publisher of {key} closed: {why}"),
            );
            self.close(publisher, false, why, now_ms);
        }
    }

    fn cluster_lookup_answer(&mut self, key: &StreamKey, owner: Option<Owner>, now_ms: u64) {
        let pulling = self.relay_is_pulling(key);
        let Some(l) = self.cluster.lookups.get_mut(key) else {
            return;
        };
        l.in_flight = false;
        let Some(owner) = owner else {
            return;
        };
        if owner.node == self.cluster.config.node_id {
            self.cluster.lookups.remove(key);
            return;
        }
        let value = format!("{} {} {}", owner.epoch, owner.node, owner.advertise);
        if l.owner.as_deref() == Some(value.as_str()) && pulling {
            return;
        }
        let url = match owner.pull_url(key) {
            Ok(u) => u,
            Err(why) => {
                let line = format!("cluster: owner of {key} advertises a bad URL: {why}");
                return self.log_line(LogLevel::Warn, line);
            }
        };
        l.owner = Some(value);
        self.log_line(
            LogLevel::Info,
            format!(
                "cluster: {key} is on node {} ({}), pulling it",
                owner.node, owner.advertise
            ),
        );
        if pulling {
            self.relay_pull_retarget(key, url.0, now_ms);
        } else {
            let options = PullOptions::on_demand(&self.config.relay);
            self.relay_pull_start(key, url, options, now_ms);
        }
    }

    fn log_line(&mut self, level: LogLevel, message: String) {
        self.outputs.push_back(Output::Log { level, message });
    }

    /// This node is an edge of a cluster.
    pub(super) fn cluster_edge(&self) -> bool {
        self.cluster.enabled() && self.cluster.config.role.edge()
    }

    /// A player here (or on another worker, [`super::Command::RelayWant`]) wants `key`, which
    /// is not live here: look its owner up (edges only).
    pub(super) fn cluster_want(&mut self, key: &StreamKey, now_ms: u64) -> bool {
        if !self.cluster.enabled() || !self.cluster.config.role.edge() {
            return false;
        }
        let until = now_ms.saturating_add(WANT_TTL_MS);
        let fresh = !self.cluster.lookups.contains_key(key);
        self.cluster
            .lookups
            .entry(key.clone())
            .or_insert(Lookup {
                until_ms: until,
                in_flight: false,
                owner: None,
            })
            .until_ms = until;
        if fresh {
            self.cluster_lookups(now_ms);
            self.cluster_flush();
        }
        true
    }

    /// `conn` published `key` here: claim it (origins).
    pub(super) fn cluster_published(&mut self, key: &StreamKey, conn: ConnId, now_ms: u64) {
        if !self.cluster.enabled() || !self.cluster.config.role.origin() {
            return;
        }
        if let Some(c) = self.cluster.claims.get_mut(key) {
            // A takeover on this node: the claim stays.
            c.publisher = conn;
            return;
        }
        let epoch = format!("{}-{:08x}", self.wall_ms(now_ms), self.relay_random_u32());
        let c = &self.cluster.config;
        let value = format!("{epoch} {} {}", c.node_id, c.advertise);
        self.cluster.claims.insert(
            key.clone(),
            Claim {
                publisher: conn,
                value,
                state: ClaimState::Claiming {
                    refused_since: None,
                },
                overwrite: self.config.publish_conflict == PublishConflict::Kick,
            },
        );
        if self.cluster.open {
            self.cluster_claim_send(key, now_ms);
            self.cluster_flush();
        }
    }

    /// The publisher `conn` of `key` left: its claim is released (only if still ours).
    pub(super) fn cluster_unpublished(&mut self, key: &StreamKey, conn: ConnId, now_ms: u64) {
        if !self
            .cluster
            .claims
            .get(key)
            .is_some_and(|c| c.publisher == conn)
        {
            return;
        }
        let Some(claim) = self.cluster.claims.remove(key) else {
            return;
        };
        if self.cluster.open {
            let k = stream_key(key);
            self.cluster.send(
                &["EVAL", RELEASE_SCRIPT, "1", &k, &claim.value],
                Awaited::Ignore,
                now_ms,
            );
            self.cluster_flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_parse_with_defaults_and_credentials() {
        let t = RedisTarget::parse("redis://10.0.0.9").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.db, t.auth),
            ("10.0.0.9", 6379, 0, None)
        );
        let t = RedisTarget::parse("redis://:s3cret@[::1]:7000/2").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("::1", 7000, 2));
        assert_eq!(t.auth, Some((String::new(), "s3cret".to_owned())));
        assert_eq!(t.to_string(), "redis://::1:7000/2", "no password in logs");
        for bad in [
            "http://h",
            "redis://",
            "redis://h:x",
            "redis://h/x",
            "redis://nopass@h",
        ] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_values_name_the_owner_and_its_pull_url() {
        let o = Owner::parse(b"1733-0a b rtmp://10.0.0.2:1935").unwrap();
        assert_eq!((o.epoch.as_str(), o.node.as_str()), ("1733-0a", "b"));
        let key = StreamKey::new("live", "cam").unwrap();
        assert_eq!(
            o.pull_url(&key).unwrap().0.to_string(),
            "rtmp://10.0.0.2:1935/live/cam"
        );
        let http = Owner::parse(b"1 b http://10.0.0.2:8080/").unwrap();
        assert!(http
            .pull_url(&key)
            .unwrap()
            .0
            .to_string()
            .ends_with("/live/cam.flv"));
        assert_eq!(Owner::parse(b"only-two parts"), None);
        assert_eq!(Owner::parse(&[0xff, b' ', b'a', b' ', b'b']), None);
    }
}
