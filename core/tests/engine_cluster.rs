//! The cluster registry on a virtual clock: two origins (A, B) and an edge (E), each an engine
//! with `[cluster]` set, and an in-memory Redis speaking RESP (keys with leases on the same
//! clock, the registry's compare-and-set scripts recognized by what they do). The test plays
//! every runtime: host `redis` is the fake Redis, hosts `a` and `b` are the origins' RTMP
//! listeners.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use common::{aac_sequence_header, avc_sequence_header, stream};
use rill_core::engine::{
    ClusterConfig, ClusterRole, ConnId, Engine, EngineConfig, Listener, Output, PublishConflict,
    RedisTarget,
};
use rill_core::resp::{Reply, RespDecoder};
use rill_core::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use rill_core::rtmp::message_type;

const A: usize = 0;
const B: usize = 1;
const E: usize = 2;
const LEASE: u64 = 3_000;

/// Redis in memory: strings with an expiry on the virtual clock.
#[derive(Default)]
struct FakeRedis {
    keys: HashMap<String, (Bytes, Option<u64>)>,
    /// Per connection (engine, conn): what it sent so far, decoded as it comes.
    conns: HashMap<(usize, ConnId), RespDecoder>,
    /// Every command is answered with an error (a read-only replica, say).
    broken: bool,
}

impl FakeRedis {
    fn get(&mut self, key: &str, now: u64) -> Option<Bytes> {
        match self.keys.get(key) {
            Some((_, Some(at))) if *at <= now => {
                self.keys.remove(key);
                None
            }
            Some((v, _)) => Some(v.clone()),
            None => None,
        }
    }

    fn value(&mut self, key: &str, now: u64) -> Option<String> {
        self.get(key, now)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    fn command(&mut self, args: &[Bytes], now: u64) -> Reply {
        let text = |i: usize| String::from_utf8_lossy(&args[i]).into_owned();
        let ok = || Reply::Simple(Bytes::from_static(b"OK"));
        if self.broken {
            return Reply::Error(Bytes::from_static(
                b"READONLY You can't write against a replica.",
            ));
        }
        match text(0).to_ascii_uppercase().as_str() {
            "SELECT" => ok(),
            "PING" => Reply::Simple(Bytes::from_static(b"PONG")),
            "GET" => Reply::Bulk(self.get(&text(1), now)),
            "SET" => {
                let (key, value) = (text(1), args[2].clone());
                let mut nx = false;
                let mut expires = None;
                let mut i = 3;
                while i < args.len() {
                    match text(i).to_ascii_uppercase().as_str() {
                        "NX" => nx = true,
                        "PX" => {
                            i += 1;
                            expires = Some(now + text(i).parse::<u64>().unwrap());
                        }
                        other => panic!("SET option {other}"),
                    }
                    i += 1;
                }
                if nx && self.get(&key, now).is_some() {
                    return Reply::Bulk(None);
                }
                self.keys.insert(key, (value, expires));
                ok()
            }
            "EVAL" => {
                let script = text(1);
                if script.contains("KEYS', 'rill:*'") {
                    let mut names: Vec<String> = self.keys.keys().cloned().collect();
                    names.sort();
                    let mut out = Vec::new();
                    for k in names {
                        if let Some(v) = self.get(&k, now) {
                            out.push(Reply::Bulk(Some(Bytes::from(k))));
                            out.push(Reply::Bulk(Some(v)));
                        }
                    }
                    return Reply::Array(Some(out));
                }
                let (key, mine) = (text(3), args[4].clone());
                let current = self.get(&key, now);
                if script.contains("PEXPIRE") {
                    match current {
                        Some(v) if v == mine => {
                            let ms: u64 = text(5).parse().unwrap();
                            self.keys.insert(key, (v, Some(now + ms)));
                            Reply::Integer(1)
                        }
                        Some(_) => Reply::Integer(0),
                        None => Reply::Integer(-1),
                    }
                } else if script.contains("DEL") {
                    if current == Some(mine) {
                        self.keys.remove(&key);
                        Reply::Integer(1)
                    } else {
                        Reply::Integer(0)
                    }
                } else {
                    panic!("unknown script {script}")
                }
            }
            other => Reply::Error(Bytes::from(format!("ERR unknown command {other}"))),
        }
    }

    /// Bytes from a connection; the replies to send back.
    fn input(&mut self, from: (usize, ConnId), data: &[u8], now: u64) -> BytesMut {
        let mut out = BytesMut::new();
        let d = self.conns.entry(from).or_default();
        d.push(data);
        let mut commands = Vec::new();
        while let Some(r) = d.poll_reply().expect("a RESP command") {
            commands.push(r);
        }
        for c in commands {
            let Reply::Array(Some(items)) = c else {
                panic!("a command is an array")
            };
            let args: Vec<Bytes> = items
                .into_iter()
                .map(|i| i.as_bytes().cloned().expect("bulk argument"))
                .collect();
            self.command(&args, now).encode(&mut out);
        }
        out
    }
}

struct Client {
    engine: usize,
    conn: ConnId,
    session: ClientSession,
    events: Vec<ClientEvent>,
    closed: bool,
}

struct Net {
    engines: Vec<Engine>,
    now: u64,
    clients: Vec<Client>,
    links: HashMap<(usize, ConnId), (usize, ConnId)>,
    redis: FakeRedis,
    /// Engine-side connections to the fake Redis.
    redis_conns: Vec<(usize, ConnId)>,
    /// Engines cut off from Redis (their connections to it fail).
    cut: [bool; 3],
    /// Engines that are down (killed): connections to them are refused.
    down: [bool; 3],
    next_conn: ConnId,
    logs: Vec<(usize, String)>,
    /// Bytes sent to raw HTTP clients, by (engine, conn).
    raw: HashMap<(usize, ConnId), Vec<u8>>,
}

fn peer() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

fn config(node: &str, role: ClusterRole, conflict: PublishConflict) -> EngineConfig {
    EngineConfig {
        cluster: ClusterConfig {
            redis: Some(RedisTarget::parse("redis://redis:6379/0").unwrap()),
            node_id: node.into(),
            advertise: format!("rtmp://{node}:1935"),
            role,
            lease_ms: LEASE,
        },
        publish_conflict: conflict,
        ..EngineConfig::default()
    }
}

impl Net {
    fn new(conflict: PublishConflict) -> Net {
        let engines = vec![
            Engine::new(config("a", ClusterRole::Origin, conflict), 1),
            Engine::new(config("b", ClusterRole::Origin, conflict), 2),
            Engine::new(config("e", ClusterRole::Edge, conflict), 3),
        ];
        let mut net = Net {
            engines,
            now: 0,
            clients: Vec::new(),
            links: HashMap::new(),
            redis: FakeRedis::default(),
            redis_conns: Vec::new(),
            cut: [false; 3],
            down: [false; 3],
            next_conn: 1,
            logs: Vec::new(),
            raw: HashMap::new(),
        };
        net.advance(10);
        net
    }

    fn client(&mut self, engine: usize, publish: bool, name: &str) -> usize {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.engines[engine].handle_accept(conn, Listener::Rtmp, peer(), self.now);
        let config = ClientConfig::new("live", "rtmp://127.0.0.1/live");
        let mut session = ClientSession::new(config, &[7; 1536], self.now);
        if publish {
            session.publish(name);
        } else {
            session.play(name);
        }
        self.clients.push(Client {
            engine,
            conn,
            session,
            events: Vec::new(),
            closed: false,
        });
        self.run();
        self.clients.len() - 1
    }

    /// One HTTP GET of `path` on `engine`'s HTTP listener; what came back.
    fn http_get(&mut self, engine: usize, path: &str) -> String {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.raw.insert((engine, conn), Vec::new());
        self.engines[engine].handle_accept(conn, Listener::Http, peer(), self.now);
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        self.engines[engine].handle_input(conn, request.as_bytes(), self.now);
        self.run();
        let got = self.raw.remove(&(engine, conn)).unwrap_or_default();
        self.engines[engine].handle_close(conn, "done", self.now);
        self.run();
        String::from_utf8_lossy(&got).into_owned()
    }

    fn publisher(&mut self, engine: usize, name: &str) -> usize {
        let c = self.client(engine, true, name);
        let configs = [
            (message_type::VIDEO, 0, avc_sequence_header()),
            (message_type::AUDIO, 0, aac_sequence_header()),
        ];
        self.send(c, &configs);
        c
    }

    fn send(&mut self, c: usize, messages: &[(u8, u32, Bytes)]) {
        for (t, ts, body) in messages {
            if self.clients[c].closed {
                return;
            }
            let _ = self.clients[c].session.send_media(*t, *ts, body);
        }
        self.run();
    }

    /// `c` sends a second of media starting at `start_ms`, in ten steps of 100 ms.
    fn second_of_media(&mut self, c: usize, start_ms: u32) {
        for step in 0..10u32 {
            let t = start_ms + step * 100;
            self.send(c, &stream(t, 3, 25));
            self.advance(100);
        }
    }

    fn media(&self, c: usize) -> Vec<u32> {
        self.clients[c]
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media { timestamp, .. } => Some(*timestamp),
                _ => None,
            })
            .collect()
    }

    /// Engine `e` dies: its connections break, its clients are gone, and it no longer runs.
    fn kill(&mut self, e: usize) {
        self.down[e] = true;
        let links: Vec<((usize, ConnId), (usize, ConnId))> = self
            .links
            .iter()
            .filter(|((x, _), (y, _))| *x == e || *y == e)
            .map(|(&k, &v)| (k, v))
            .collect();
        for (k, v) in links {
            self.links.remove(&k);
            self.links.remove(&v);
            if v.0 != e {
                self.engines[v.0].handle_close(v.1, "peer died", self.now);
            }
        }
        self.redis_conns.retain(|&(x, _)| x != e);
        for c in &mut self.clients {
            if c.engine == e {
                c.closed = true;
            }
        }
        self.run();
    }

    /// Cuts engine `e` off from Redis (or heals it).
    fn cut(&mut self, e: usize, cut: bool) {
        self.cut[e] = cut;
        if cut {
            let conns: Vec<(usize, ConnId)> = self
                .redis_conns
                .iter()
                .copied()
                .filter(|&(x, _)| x == e)
                .collect();
            self.redis_conns.retain(|&(x, _)| x != e);
            for (x, conn) in conns {
                self.engines[x].handle_close(conn, "network cut", self.now);
            }
            self.run();
        }
    }

    fn advance(&mut self, ms: u64) {
        let until = self.now + ms;
        loop {
            let next = self
                .engines
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.down[*i])
                .filter_map(|(_, e)| e.poll_timeout())
                .min()
                .filter(|&t| t <= until);
            let Some(at) = next else { break };
            self.now = self.now.max(at);
            self.tick();
        }
        self.now = until;
        self.tick();
    }

    fn tick(&mut self) {
        for i in 0..self.engines.len() {
            if !self.down[i] {
                self.engines[i].handle_timeout(self.now);
            }
        }
        self.run();
    }

    fn run(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                if self.clients[i].closed {
                    continue;
                }
                let (e, conn) = (self.clients[i].engine, self.clients[i].conn);
                while let Some(b) = self.clients[i].session.poll_transmit() {
                    self.engines[e].handle_input(conn, &b, self.now);
                    moved = true;
                }
            }
            for e in 0..self.engines.len() {
                if self.down[e] {
                    while self.engines[e].poll_output().is_some() {}
                    continue;
                }
                while let Some(out) = self.engines[e].poll_output() {
                    moved = true;
                    self.dispatch(e, out);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("never quiet");
    }

    fn dispatch(&mut self, e: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Transmit(conn) => {
                let mut bufs = Vec::new();
                self.engines[e].poll_transmit(conn, usize::MAX, &mut bufs);
                if self.redis_conns.contains(&(e, conn)) {
                    for b in bufs {
                        let reply = self.redis.input((e, conn), &b, now);
                        if !reply.is_empty() {
                            self.engines[e].handle_input(conn, &reply, now);
                        }
                    }
                } else if let Some(&(oe, oc)) = self.links.get(&(e, conn)) {
                    for b in bufs {
                        self.engines[oe].handle_input(oc, &b, now);
                    }
                } else if let Some(raw) = self.raw.get_mut(&(e, conn)) {
                    bufs.iter().for_each(|b| raw.extend_from_slice(b));
                } else if let Some(c) = self
                    .clients
                    .iter_mut()
                    .find(|c| c.engine == e && c.conn == conn && !c.closed)
                {
                    for b in bufs {
                        if c.session.handle_input(&b, now).is_err() {
                            c.closed = true;
                        }
                    }
                    c.events
                        .extend(std::iter::from_fn(|| c.session.poll_event()));
                }
            }
            Output::Close { conn, flush } => {
                if flush {
                    self.dispatch(e, Output::Transmit(conn));
                }
                self.redis_conns.retain(|&x| x != (e, conn));
                if let Some((oe, oc)) = self.links.remove(&(e, conn)) {
                    self.links.remove(&(oe, oc));
                    self.engines[oe].handle_close(oc, "peer closed", now);
                } else if let Some(c) = self
                    .clients
                    .iter_mut()
                    .find(|c| c.engine == e && c.conn == conn)
                {
                    c.closed = true;
                }
            }
            Output::Connect { conn, host, .. } => {
                let target = match host.as_str() {
                    "a" => Some(A),
                    "b" => Some(B),
                    _ => None,
                };
                if host == "redis" && !self.cut[e] {
                    self.redis_conns.push((e, conn));
                    self.redis.conns.remove(&(e, conn));
                    self.engines[e].handle_connected(conn, Ok(peer()), now);
                } else if let Some(t) = target.filter(|&t| !self.down[t]) {
                    let accepted = self.next_conn;
                    self.next_conn += 1;
                    self.engines[t].handle_accept(accepted, Listener::Rtmp, peer(), now);
                    self.links.insert((e, conn), (t, accepted));
                    self.links.insert((t, accepted), (e, conn));
                    self.engines[e].handle_connected(conn, Ok(peer()), now);
                } else {
                    self.engines[e].handle_connected(conn, Err(format!("{host}: refused")), now);
                }
            }
            Output::Log { message, .. } => self.logs.push((e, message)),
            _ => {}
        }
    }

    fn owner(&mut self, stream: &str) -> Option<String> {
        let now = self.now;
        self.redis
            .value(&format!("rill:stream:live/{stream}"), now)
            .map(|v| v.split(' ').nth(1).unwrap_or_default().to_owned())
    }

    fn publishing(&self, c: usize) -> bool {
        !self.clients[c].closed
            && self.clients[c]
                .events
                .iter()
                .any(|e| matches!(e, ClientEvent::Publishing { .. }))
    }
}

#[test]
fn an_origin_claims_refreshes_and_releases_its_stream() {
    let mut net = Net::new(PublishConflict::Reject);
    let p = net.publisher(A, "cam");
    assert_eq!(net.owner("cam").as_deref(), Some("a"));
    let value = net.redis.value("rill:stream:live/cam", net.now).unwrap();
    assert!(value.ends_with(" a rtmp://a:1935"), "{value}");
    assert!(net.redis.value("rill:node:a", net.now).is_some());
    // Refreshed while live: four leases later the key is still there, with the same epoch.
    for s in 0..12 {
        net.second_of_media(p, s * 1000);
    }
    assert_eq!(
        net.redis.value("rill:stream:live/cam", net.now),
        Some(value)
    );
    // The publisher leaves: the key goes at once.
    net.clients[p].closed = true;
    let conn = net.clients[p].conn;
    net.engines[A].handle_close(conn, "hung up", net.now);
    net.run();
    assert_eq!(net.owner("cam"), None);
}

#[test]
fn a_dead_origins_lease_expires() {
    let mut net = Net::new(PublishConflict::Reject);
    net.publisher(A, "cam");
    net.kill(A);
    net.advance(LEASE - 100);
    assert_eq!(net.owner("cam").as_deref(), Some("a"));
    net.advance(200);
    assert_eq!(net.owner("cam"), None);
    assert_eq!(net.redis.value("rill:node:a", net.now), None);
}

#[test]
fn a_second_publisher_on_another_origin_is_refused() {
    let mut net = Net::new(PublishConflict::Reject);
    let first = net.publisher(A, "cam");
    let second = net.publisher(B, "cam");
    net.advance(LEASE + 1_500);
    assert!(net.publishing(first));
    assert!(net.clients[second].closed, "the second publisher is closed");
    assert_eq!(net.owner("cam").as_deref(), Some("a"));
    assert!(net
        .logs
        .iter()
        .any(|(e, l)| *e == B && l.contains("published on another origin")));
}

#[test]
fn with_kick_the_newest_publisher_takes_the_stream_over() {
    let mut net = Net::new(PublishConflict::Kick);
    let first = net.publisher(A, "cam");
    let second = net.publisher(B, "cam");
    assert_eq!(net.owner("cam").as_deref(), Some("b"));
    net.advance(LEASE);
    assert!(
        net.clients[first].closed,
        "the old owner's publisher is closed"
    );
    assert!(net.publishing(second));
    assert_eq!(net.owner("cam").as_deref(), Some("b"));
}

#[test]
fn an_owner_whose_lease_expired_while_cut_off_never_overwrites_the_new_owner() {
    let mut net = Net::new(PublishConflict::Reject);
    let old = net.publisher(A, "cam");
    net.cut(A, true);
    net.advance(LEASE + 100);
    assert_eq!(net.owner("cam"), None, "A's lease ran out");
    assert!(
        net.publishing(old),
        "a Redis outage does not stop A's publisher"
    );
    let new = net.publisher(B, "cam");
    assert_eq!(net.owner("cam").as_deref(), Some("b"));
    let value = net.redis.value("rill:stream:live/cam", net.now);
    net.cut(A, false);
    net.advance(10_000);
    assert_eq!(net.redis.value("rill:stream:live/cam", net.now), value);
    assert!(net.clients[old].closed, "A gave the stream up");
    assert!(net.publishing(new));
}

#[test]
fn owners_register_again_after_redis_lost_everything() {
    let mut net = Net::new(PublishConflict::Reject);
    let p = net.publisher(A, "cam");
    net.redis.keys.clear();
    net.advance(LEASE);
    assert_eq!(net.owner("cam").as_deref(), Some("a"));
    assert!(net.publishing(p));
}

#[test]
fn an_edge_looks_the_owner_up_and_pulls_from_it_then_follows_it() {
    let mut net = Net::new(PublishConflict::Reject);
    let p = net.publisher(A, "cam");
    net.second_of_media(p, 0);
    let player = net.client(E, false, "cam");
    net.second_of_media(p, 1000);
    let got = net.media(player);
    assert!(!got.is_empty(), "the edge player plays A's stream");
    assert_eq!(net.engines[E].relay_pull_count(), 1);

    // A dies; the publisher comes back on B once A's key is gone.
    net.kill(A);
    net.advance(LEASE);
    let p2 = net.publisher(B, "cam");
    let before = net.media(player).len();
    for s in 0..3 {
        net.second_of_media(p2, 2000 + s * 1000);
    }
    assert!(!net.clients[player].closed, "the edge kept its player");
    let after = net.media(player);
    assert!(after.len() > before + 10, "media from B reached the player");
    assert!(net
        .logs
        .iter()
        .any(|(e, l)| *e == E && l.contains("is on node b")));
}

#[test]
fn an_unknown_stream_is_held_for_the_play_wait_then_refused() {
    let mut net = Net::new(PublishConflict::Reject);
    let player = net.client(E, false, "nobody");
    net.advance(5_000);
    assert!(!net.clients[player].closed, "held while waiting");
    // Published on B meanwhile: found and played.
    let late = net.client(E, false, "late");
    net.advance(1_000);
    let p = net.publisher(B, "late");
    net.second_of_media(p, 0);
    net.second_of_media(p, 1000);
    assert!(!net.media(late).is_empty());
    net.advance(EngineConfig::default().hub.play_wait_timeout_ms);
    assert!(net.clients[player].closed, "let go after the play wait");
}

#[test]
fn redis_unreachable_at_start_leaves_local_streams_playing() {
    let mut net = Net::new(PublishConflict::Reject);
    net.cut(A, true);
    net.advance(10_000);
    let p = net.publisher(A, "cam");
    let player = net.client(A, false, "cam");
    net.second_of_media(p, 0);
    assert!(!net.media(player).is_empty());
    let attempts = net
        .logs
        .iter()
        .filter(|(e, l)| *e == A && l.contains("unreachable"))
        .count();
    assert!((2..=6).contains(&attempts), "{attempts} attempts logged");
    net.cut(A, false);
    net.advance(6_000);
    assert_eq!(net.owner("cam").as_deref(), Some("a"));
}

#[test]
fn every_node_reports_the_same_registry() {
    let mut net = Net::new(PublishConflict::Reject);
    net.publisher(A, "one");
    net.publisher(B, "two");
    net.advance(LEASE);
    let now = net.now;
    let views: Vec<serde_json::Value> = (0..3)
        .map(|e| {
            let stats = net.engines[e].stats(now);
            let text = rill_core::engine::cluster::render_json(&[stats]);
            serde_json::from_str(&text).unwrap()
        })
        .collect();
    for v in &views {
        assert_eq!(v["cluster"]["streams"], views[0]["cluster"]["streams"]);
        assert_eq!(v["cluster"]["nodes"], views[0]["cluster"]["nodes"]);
        assert_eq!(v["cluster"]["redis_connected"], true);
    }
    let streams = views[0]["cluster"]["streams"].as_array().unwrap();
    let owners: Vec<(&str, &str)> = streams
        .iter()
        .map(|s| {
            (
                s["stream"].as_str().unwrap(),
                s["node_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(owners, [("live/one", "a"), ("live/two", "b")]);
    let nodes = views[0]["cluster"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "a, b and e");
    assert_eq!(nodes[2]["role"], "edge");
    assert_eq!(views[0]["cluster"]["owned"], 1);
    assert_eq!(views[2]["cluster"]["role"], "edge");
}

#[test]
fn an_hls_request_on_the_edge_pulls_the_stream_and_keeps_the_pull() {
    let mut net = Net::new(PublishConflict::Reject);
    let p = net.publisher(A, "cam");
    let first = net.http_get(E, "/live/cam.m3u8");
    assert!(first.starts_with("HTTP/1.1 404"), "{first}");
    // HLS clients poll the playlist; the edge pulls meanwhile and cuts segments.
    let mut last = String::new();
    for s in 0..20 {
        net.second_of_media(p, s * 1000);
        last = net.http_get(E, "/live/cam.m3u8");
    }
    assert!(last.starts_with("HTTP/1.1 200"), "{last}");
    assert!(last.contains("#EXTINF"), "{last}");
    assert_eq!(
        net.engines[E].relay_pull_count(),
        1,
        "kept past the idle stop"
    );
}

#[test]
fn an_edge_without_redis_holds_its_players_and_finds_the_stream_once_redis_is_back() {
    let mut net = Net::new(PublishConflict::Reject);
    net.cut(E, true);
    // Long enough for the reconnection delay to grow past the reply deadline.
    net.advance(20_000);
    let p = net.publisher(A, "cam");
    let player = net.client(E, false, "cam");
    net.advance(4_000);
    assert!(!net.clients[player].closed, "held while Redis is away");
    assert!(net.media(player).is_empty());
    net.cut(E, false);
    for s in 0..6 {
        net.second_of_media(p, s * 1000);
    }
    assert!(
        !net.media(player).is_empty(),
        "found and pulled once Redis is back"
    );
}

#[test]
fn an_error_from_redis_never_costs_a_publisher_its_stream() {
    let mut net = Net::new(PublishConflict::Reject);
    let p = net.publisher(A, "cam");
    net.redis.broken = true;
    for s in 0..8 {
        net.second_of_media(p, s * 1000);
    }
    assert!(net.publishing(p));
    assert!(net
        .logs
        .iter()
        .any(|(e, l)| *e == A && l.contains("it answered READONLY")));
    net.redis.broken = false;
    net.redis.keys.clear();
    net.advance(6_000);
    assert_eq!(net.owner("cam").as_deref(), Some("a"));
    assert!(net.publishing(p));
}
