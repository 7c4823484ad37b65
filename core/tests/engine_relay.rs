//! Relays on a virtual clock: an edge engine pulling from an origin engine over an in-memory
//! connection (the test plays both runtimes), the pull's idle stop, a local publisher taking
//! the stream over, and the retry backoff when the origin is down; the same over HTTP-FLV and
//! RTSP (TCP and UDP, with credentials), and static pushes over RTMP and RTSP.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use common::{aac_sequence_header, avc_sequence_header, stream};
use rill_core::amf::Value;
use rill_core::api::webhook::{WebhookEvent, WebhookUrl};
use rill_core::engine::{
    ConnId, Engine, EngineConfig, Listener, Output, PushRule, RelayConfig, RelayUrl, Role,
    WebhookConfig,
};
use rill_core::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use rill_core::rtmp::message_type;
use rill_core::rtsp::server::{AuthScheme, Credentials};

const ORIGIN: usize = 0;
const EDGE: usize = 1;

struct Client {
    engine: usize,
    conn: ConnId,
    session: ClientSession,
    events: Vec<ClientEvent>,
    closed: bool,
}

/// Two servers and their clients; outbound connections of the edge to host "origin" reach
/// the origin's RTMP (port 1935), HTTP (8080) or RTSP (554) listener; host "teapot" answers
/// any HTTP request with a 403.
struct Net {
    engines: [Engine; 2],
    now: u64,
    clients: Vec<Client>,
    /// (engine, conn) -> (engine, conn) at the other end of an engine-to-engine link.
    links: HashMap<(usize, ConnId), (usize, ConnId)>,
    next_conn: ConnId,
    /// (time, host) of every connection the edge asked for.
    connects: Vec<(u64, String)>,
    logs: Vec<String>,
    /// Connections to "origin" are refused (the origin server is down).
    origin_down: bool,
    /// Webhook connections (to host "hooks") of the edge and the bytes sent on them.
    hooks: HashMap<ConnId, Vec<u8>>,
    /// UDP port -> (engine, conn, track, RTCP) of the socket bound there.
    udp: HashMap<u16, (usize, ConnId, usize, bool)>,
    next_udp_port: u16,
    /// Datagrams delivered between the engines.
    datagrams: usize,
    /// Everything the edge sent on its connections to the origin.
    edge_wire: Vec<u8>,
    /// The edge's connections to host "teapot".
    teapots: Vec<ConnId>,
    /// The edge's runtime has no UDP ports to give.
    edge_udp_off: bool,
}

fn peer() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

impl Net {
    fn new(idle_stop_ms: u64) -> Net {
        Net::pulling("rtmp://origin:1935", idle_stop_ms)
    }

    /// An edge pulling from `origin` (a URL), an origin with the default configuration.
    fn pulling(origin: &str, idle_stop_ms: u64) -> Net {
        let edge = EngineConfig {
            relay: RelayConfig {
                pull_origins: vec![RelayUrl::parse(origin).unwrap()],
                idle_stop_ms,
                ..RelayConfig::default()
            },
            ..EngineConfig::default()
        };
        Net::with(EngineConfig::default(), edge)
    }

    fn with(origin: EngineConfig, edge: EngineConfig) -> Net {
        Net {
            engines: [Engine::new(origin, 1), Engine::new(edge, 2)],
            now: 0,
            clients: Vec::new(),
            links: HashMap::new(),
            next_conn: 1,
            connects: Vec::new(),
            logs: Vec::new(),
            origin_down: false,
            hooks: HashMap::new(),
            udp: HashMap::new(),
            next_udp_port: 30_000,
            datagrams: 0,
            edge_wire: Vec::new(),
            teapots: Vec::new(),
            edge_udp_off: false,
        }
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

    fn send(&mut self, c: usize, messages: &[(u8, u32, Bytes)]) {
        for (t, ts, body) in messages {
            self.clients[c]
                .session
                .send_media(*t, *ts, body)
                .expect("publishing");
        }
        self.run();
    }

    fn hang_up(&mut self, c: usize) {
        self.clients[c].closed = true;
        let (e, conn) = (self.clients[c].engine, self.clients[c].conn);
        self.engines[e].handle_close(conn, "hung up", self.now);
        self.run();
    }

    /// The origin server dies: every engine-to-engine connection breaks, its clients are gone,
    /// and it refuses connections until `origin_down` is cleared.
    fn kill_origin(&mut self) {
        self.origin_down = true;
        let links: Vec<((usize, ConnId), (usize, ConnId))> = self.links.drain().collect();
        for ((e, conn), _) in links {
            self.engines[e].handle_close(conn, "origin died", self.now);
        }
        for c in 0..self.clients.len() {
            if self.clients[c].engine == ORIGIN && !self.clients[c].closed {
                self.hang_up(c);
            }
        }
        self.run();
    }

    /// Media timestamps client `c` received, in order.
    fn media_timestamps(&self, c: usize) -> Vec<u32> {
        self.clients[c]
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media { timestamp, .. } => Some(*timestamp),
                _ => None,
            })
            .collect()
    }

    fn media_received(&self, c: usize) -> usize {
        self.clients[c]
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Media { .. }))
            .count()
    }

    /// Moves time forward, firing every deadline on the way.
    fn advance(&mut self, ms: u64) {
        let until = self.now + ms;
        loop {
            let next = self
                .engines
                .iter()
                .filter_map(|e| e.poll_timeout())
                .min()
                .filter(|&t| t <= until);
            let Some(at) = next else { break };
            self.now = self.now.max(at);
            for e in &mut self.engines {
                e.handle_timeout(self.now);
            }
            self.run();
        }
        self.now = until;
        for e in &mut self.engines {
            e.handle_timeout(self.now);
        }
        self.run();
    }

    fn run(&mut self) {
        for _ in 0..10_000 {
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
            for e in 0..2 {
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
                if e == EDGE && self.teapots.contains(&conn) && !bufs.is_empty() {
                    let answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
                    self.engines[e].handle_input(conn, answer, now);
                } else if let Some(&(oe, oc)) = self.links.get(&(e, conn)) {
                    for b in bufs {
                        if e == EDGE {
                            self.edge_wire.extend_from_slice(&b);
                        }
                        self.engines[oe].handle_input(oc, &b, now);
                    }
                } else if let Some(h) = self.hooks.get_mut(&conn) {
                    bufs.iter().for_each(|b| h.extend_from_slice(b));
                } else if let Some(c) = self
                    .clients
                    .iter_mut()
                    .find(|c| c.engine == e && c.conn == conn && !c.closed)
                {
                    for b in bufs {
                        c.session.handle_input(&b, now).expect("client input");
                    }
                    c.events
                        .extend(std::iter::from_fn(|| c.session.poll_event()));
                }
            }
            Output::Close { conn, flush } => {
                if flush {
                    self.dispatch(e, Output::Transmit(conn));
                }
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
            Output::Connect {
                conn, host, port, ..
            } => {
                self.connects.push((now, host.clone()));
                let listener = match port {
                    8080 => Listener::Http,
                    554 => Listener::Rtsp,
                    _ => Listener::Rtmp,
                };
                if host == "hooks" {
                    self.hooks.insert(conn, Vec::new());
                    self.engines[e].handle_connected(conn, Ok(peer()), now);
                } else if host == "teapot" {
                    self.teapots.push(conn);
                    self.engines[e].handle_connected(conn, Ok(peer()), now);
                } else if host == "origin" && !self.origin_down {
                    let accepted = self.next_conn;
                    self.next_conn += 1;
                    self.engines[ORIGIN].handle_accept(accepted, listener, peer(), now);
                    self.links.insert((e, conn), (ORIGIN, accepted));
                    self.links.insert((ORIGIN, accepted), (e, conn));
                    self.engines[e].handle_connected(conn, Ok(peer()), now);
                } else {
                    self.engines[e].handle_connected(conn, Err(format!("{host}: refused")), now);
                }
            }
            Output::OpenUdp { conn, track } if e == EDGE && self.edge_udp_off => {
                self.engines[e].handle_udp_open(conn, track, None, now);
            }
            Output::OpenUdp { conn, track } => {
                let rtp = self.next_udp_port;
                self.next_udp_port += 2;
                self.udp.insert(rtp, (e, conn, track, false));
                self.udp.insert(rtp + 1, (e, conn, track, true));
                self.engines[e].handle_udp_open(conn, track, Some((rtp, rtp + 1)), now);
            }
            Output::SendUdp { to, data, .. } => {
                if let Some(&(oe, oc, track, rtcp)) = self.udp.get(&to.port()) {
                    self.datagrams += 1;
                    self.engines[oe].handle_udp(oc, track, rtcp, peer(), data, now);
                }
            }
            Output::Log { message, .. } => self.logs.push(message),
            _ => {}
        }
    }
}

fn configs() -> Vec<(u8, u32, Bytes)> {
    vec![
        (message_type::VIDEO, 0, avc_sequence_header()),
        (message_type::AUDIO, 0, aac_sequence_header()),
    ]
}

#[test]
fn a_player_on_the_edge_gets_the_origin_stream_and_the_pull_stops_when_idle() {
    let mut net = Net::new(2_000);
    let publisher = net.client(ORIGIN, true, "s");
    net.send(publisher, &configs());
    net.send(publisher, &stream(0, 10, 5));
    assert_eq!(net.engines[EDGE].relay_pull_count(), 0);
    let player = net.client(EDGE, false, "s");
    assert_eq!(net.engines[EDGE].relay_pull_count(), 1);
    assert_eq!(net.connects.len(), 1, "one connection to the origin");
    net.send(publisher, &stream(400, 25, 5));
    assert!(
        net.media_received(player) >= 25,
        "player got {} media messages; logs: {:?}",
        net.media_received(player),
        net.logs
    );
    // The origin sees the pull as one of its players.
    assert_eq!(net.engines[ORIGIN].hub().player_count(), 1);
    // The pull's bitrate is measured like any session's.
    net.advance(1_000);
    let now = net.now;
    let stats = net.engines[EDGE].stats(now);
    let pull = stats.sessions.iter().find(|s| s.role == Role::Pull);
    assert!(
        pull.is_some_and(|s| s.bytes_in > 0 && s.read_kbits > 0),
        "{:?}",
        stats.sessions
    );
    net.hang_up(player);
    net.advance(1_500);
    assert_eq!(
        net.engines[EDGE].relay_pull_count(),
        1,
        "still within idle_stop_ms"
    );
    net.advance(1_500);
    assert_eq!(net.engines[EDGE].relay_pull_count(), 0, "stopped when idle");
    assert_eq!(
        net.engines[ORIGIN].hub().player_count(),
        0,
        "origin player gone"
    );
    assert!(net
        .logs
        .iter()
        .any(|l| l.contains("stopped: no players left")));
}

#[test]
fn a_local_publisher_on_the_edge_takes_the_stream_from_the_pull() {
    let mut net = Net::new(10_000);
    let upstream = net.client(ORIGIN, true, "s");
    net.send(upstream, &configs());
    let player = net.client(EDGE, false, "s");
    assert_eq!(net.engines[EDGE].relay_pull_count(), 1);
    let local = net.client(EDGE, true, "s");
    assert!(
        net.clients[local]
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::Publishing { .. })),
        "local publisher accepted: {:?}",
        net.clients[local].events
    );
    assert_eq!(net.engines[EDGE].relay_pull_count(), 0, "the pull stopped");
    net.send(local, &configs());
    let before = net.media_received(player);
    net.send(local, &stream(0, 10, 5));
    assert!(
        net.media_received(player) > before,
        "player continues with the local publisher"
    );
}

#[test]
fn a_pull_from_a_dead_origin_retries_with_doubling_backoff_while_players_wait() {
    let mut net = Net::new(1_000);
    net.engines[EDGE] = {
        let mut c = EngineConfig::default();
        c.relay.pull_origins = vec![RelayUrl::parse("rtmp://dead:1935").unwrap()];
        c.relay.idle_stop_ms = 1_000;
        c.hub.play_wait_timeout_ms = 20_000;
        Engine::new(c, 3)
    };
    let _player = net.client(EDGE, false, "s");
    net.advance(19_000);
    // 1 s doubling, each delay shortened by up to a fifth at random (jitter).
    let times: Vec<u64> = net.connects.iter().map(|(t, _)| *t).collect();
    assert_eq!(times.len(), 5, "logs: {:?}", net.logs);
    for (i, pair) in times.windows(2).enumerate() {
        let plain = 1_000u64 << i;
        let gap = pair[1] - pair[0];
        assert!(
            (plain * 4 / 5..=plain).contains(&gap),
            "retry {}: {gap} ms after the last, want 80-100 % of {plain}: {times:?}",
            i + 1
        );
    }
    let failures = net
        .logs
        .iter()
        .filter(|l| l.contains("failed: connect"))
        .count();
    assert_eq!(failures, 5, "one log line per attempt: {:?}", net.logs);
    // The player's wait expires; the pull stops once idle, with no attempt after that.
    net.advance(5_000);
    assert_eq!(net.engines[EDGE].relay_pull_count(), 0);
    let attempts = net.connects.len();
    net.advance(60_000);
    assert_eq!(net.connects.len(), attempts);
}

#[test]
fn a_pull_request_is_never_pulled_again_so_two_edges_of_each_other_do_not_loop() {
    let mut net = Net::new(1_000);
    // The origin would pull from the edge too.
    net.engines[ORIGIN] = Engine::new(
        EngineConfig {
            relay: RelayConfig {
                pull_origins: vec![RelayUrl::parse("rtmp://edge:1935").unwrap()],
                ..RelayConfig::default()
            },
            ..EngineConfig::default()
        },
        4,
    );
    let _player = net.client(EDGE, false, "nowhere");
    net.advance(500);
    assert_eq!(net.engines[EDGE].relay_pull_count(), 1);
    assert_eq!(
        net.engines[ORIGIN].relay_pull_count(),
        0,
        "the relayed play is not pulled"
    );
    assert!(
        net.connects.iter().all(|(_, host)| host == "origin"),
        "{:?}",
        net.connects
    );
}

#[test]
fn an_edge_keeps_its_players_through_an_origin_restart_with_timestamps_going_on() {
    let mut net = Net::new(10_000);
    let publisher = net.client(ORIGIN, true, "s");
    net.send(publisher, &configs());
    net.send(publisher, &stream(0, 10, 5));
    let player = net.client(EDGE, false, "s");
    net.send(publisher, &stream(400, 50, 5));
    let before = net.media_received(player);
    assert!(before >= 50, "{before}; logs: {:?}", net.logs);

    // The origin dies; within the grace period (5 s) it comes back, its encoder restarting
    // from timestamp 0.
    net.kill_origin();
    net.advance(1_200);
    assert!(
        !net.clients[player].closed,
        "the player waits through the outage"
    );
    assert!(
        net.logs
            .iter()
            .any(|l| l.contains("relay pull live/s from rtmp://origin")
                && l.contains("failed: connect")),
        "each failed attempt is logged: {:?}",
        net.logs
    );
    net.origin_down = false;
    let back = net.client(ORIGIN, true, "s");
    net.send(back, &configs());
    net.advance(2_000);
    net.send(back, &stream(0, 50, 5));
    assert!(!net.clients[player].closed);
    let ts = net.media_timestamps(player);
    assert!(
        ts.len() > before + 40,
        "the player gets the restarted stream: {} then {}; logs: {:?}",
        before,
        ts.len(),
        net.logs
    );
    for track in [message_type::VIDEO, message_type::AUDIO] {
        let ts: Vec<u32> = net.clients[player]
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media {
                    type_id, timestamp, ..
                } if *type_id == track => Some(*timestamp),
                _ => None,
            })
            .collect();
        assert!(
            ts.windows(2).all(|w| w[0] <= w[1]),
            "type {track}: timestamps never go back, sequence headers included: {ts:?}"
        );
    }
}

#[test]
fn an_edge_ends_its_players_cleanly_when_the_origin_stays_down_past_the_grace() {
    let mut net = Net::new(10_000);
    let publisher = net.client(ORIGIN, true, "s");
    net.send(publisher, &configs());
    let player = net.client(EDGE, false, "s");
    net.send(publisher, &stream(0, 20, 5));
    assert!(net.media_received(player) > 0);
    net.kill_origin();
    net.advance(4_000);
    assert!(!net.clients[player].closed, "within the grace period");
    net.advance(2_000);
    assert!(net.clients[player].closed, "ended after the grace period");
    assert!(
        net.clients[player]
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::StreamEnded)),
        "told the stream ended: {:?}",
        net.clients[player].events.last()
    );
}

#[test]
fn relay_pull_start_and_stop_are_posted_with_lals_session_fields() {
    let mut net = Net::new(1_000);
    net.engines[EDGE] = {
        let mut c = EngineConfig::default();
        c.relay.pull_origins = vec![RelayUrl::parse("rtmp://origin:1935").unwrap()];
        c.relay.idle_stop_ms = 1_000;
        c.webhook = WebhookConfig {
            receivers: [WebhookEvent::RelayPullStart, WebhookEvent::RelayPullStop]
                .iter()
                .map(|&e| {
                    (
                        e,
                        WebhookUrl::parse(&format!("http://hooks/{}", e.name())).unwrap(),
                    )
                })
                .collect(),
            ..WebhookConfig::default()
        };
        Engine::new(c, 5)
    };
    let publisher = net.client(ORIGIN, true, "s");
    net.send(publisher, &configs());
    let player = net.client(EDGE, false, "s");
    net.send(publisher, &stream(0, 10, 5));
    net.hang_up(player);
    net.advance(3_000);
    let bodies: Vec<(String, serde_json::Value)> = net
        .hooks
        .values()
        .map(|sent| {
            let text = String::from_utf8_lossy(sent).into_owned();
            let (head, body) = text.split_once("\r\n\r\n").expect("a request");
            let line = head.lines().next().unwrap_or_default().to_owned();
            (line, serde_json::from_str(body).expect("JSON"))
        })
        .collect();
    let event = |path: &str| {
        bodies
            .iter()
            .find(|(line, _)| line.starts_with(&format!("POST /{path} ")))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {path}: {bodies:?}; logs {:?}", net.logs))
    };
    let start = event("on_relay_pull_start");
    let stop = event("on_relay_pull_stop");
    for v in [&start, &stop] {
        assert!(
            v["session_id"]
                .as_str()
                .is_some_and(|s| s.starts_with("RTMPPULL")),
            "{v}"
        );
        assert_eq!(v["base_type"], "PULL");
        assert_eq!(v["protocol"], "RTMP");
        assert_eq!(v["url"], "rtmp://origin:1935/live/s");
        assert_eq!(
            (&v["app_name"], &v["stream_name"]),
            (&"live".into(), &"s".into())
        );
    }
    assert_eq!(start["session_id"], stop["session_id"]);
    assert_eq!(start["has_in_session"], true);
    assert!(
        stop["read_bytes_sum"].as_u64().is_some_and(|n| n > 0),
        "{stop}"
    );
}

/// An edge configuration pulling from `origin` with players waiting up to 20 s.
fn edge_pulling(origin: &str, idle_stop_ms: u64) -> EngineConfig {
    let mut c = EngineConfig::default();
    c.relay.pull_origins = vec![RelayUrl::parse(origin).unwrap()];
    c.relay.idle_stop_ms = idle_stop_ms;
    c.hub.play_wait_timeout_ms = 20_000;
    c
}

/// An edge pushing every stream of app `live` to `url`.
fn edge_pushing(url: &str) -> EngineConfig {
    let mut c = EngineConfig::default();
    c.relay.push = vec![PushRule {
        app: "live".into(),
        urls: vec![RelayUrl::parse_push(url).unwrap()],
    }];
    c
}

fn wire(net: &Net) -> String {
    String::from_utf8_lossy(&net.edge_wire).into_owned()
}

/// A publisher of live/s on the origin, a player of it on the edge: the player gets the
/// stream and an `onMetaData` through the pull, whose first request is `request`; when the
/// player leaves, the pull stops after `idle_stop_ms` and leaves the origin. Returns what the
/// player received.
fn pull_through(net: &mut Net, request: &str) -> Vec<ClientEvent> {
    let publisher = net.client(ORIGIN, true, "s");
    let metadata = Value::Object(vec![("encoder".into(), Value::String("relay-test".into()))]);
    net.clients[publisher]
        .session
        .send_metadata(&metadata)
        .unwrap();
    net.send(publisher, &configs());
    net.send(publisher, &stream(0, 10, 5));
    let player = net.client(EDGE, false, "s");
    assert_eq!(net.engines[EDGE].relay_pull_count(), 1);
    net.send(publisher, &stream(400, 50, 5));
    assert!(
        net.media_received(player) >= 40,
        "player got {} media messages; logs: {:?}",
        net.media_received(player),
        net.logs
    );
    assert!(
        net.clients[player]
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::Metadata { .. })),
        "the player gets onMetaData"
    );
    assert!(wire(net).starts_with(request), "{:?}", wire(net));
    assert_eq!(net.engines[ORIGIN].hub().player_count(), 1);
    net.hang_up(player);
    net.advance(3_000);
    assert_eq!(net.engines[EDGE].relay_pull_count(), 0, "stopped when idle");
    assert_eq!(
        net.engines[ORIGIN].hub().player_count(),
        0,
        "{:?}",
        net.logs
    );
    net.clients[player].events.clone()
}

/// The publisher's own `onMetaData` reached the player.
fn has_publisher_metadata(events: &[ClientEvent]) -> bool {
    events.iter().any(|e| {
        matches!(e, ClientEvent::Metadata { value }
            if value.get("encoder").and_then(Value::as_str) == Some("relay-test"))
    })
}

#[test]
fn an_edge_pulls_over_http_flv() {
    let mut net = Net::pulling("http://origin:8080", 2_000);
    let events = pull_through(
        &mut net,
        "GET /live/s.flv?rill_relay=1 HTTP/1.1\r\nHost: origin:8080\r\n",
    );
    assert!(has_publisher_metadata(&events), "{events:?}");
}

#[test]
fn an_edge_pulls_over_rtsp_tcp_and_over_udp() {
    let mut net = Net::pulling("rtsp://origin:554", 2_000);
    let _ = pull_through(
        &mut net,
        "DESCRIBE rtsp://origin:554/live/s?rill_relay=1 RTSP/1.0\r\n",
    );
    assert_eq!(net.datagrams, 0, "TCP interleaved");
    assert!(wire(&net).contains("RTP/AVP/TCP;unicast;interleaved=0-1"));
    assert!(
        wire(&net).contains("TEARDOWN"),
        "the idle pull says goodbye"
    );

    let mut net = Net::pulling("rtsp://origin:554?rtsp_mode=1", 2_000);
    let _ = pull_through(
        &mut net,
        "DESCRIBE rtsp://origin:554/live/s?rill_relay=1 RTSP/1.0\r\n",
    );
    assert!(net.datagrams > 40, "media over UDP: {}", net.datagrams);
    assert!(wire(&net).contains("RTP/AVP;unicast;client_port=30000-30001"));
}

#[test]
fn an_rtsp_pull_asking_for_udp_falls_back_to_tcp_when_the_runtime_has_no_udp_ports() {
    let mut net = Net::pulling("rtsp://origin:554?rtsp_mode=1", 2_000);
    net.edge_udp_off = true;
    let _ = pull_through(
        &mut net,
        "DESCRIBE rtsp://origin:554/live/s?rill_relay=1 RTSP/1.0\r\n",
    );
    assert_eq!(net.datagrams, 0);
    assert!(wire(&net).contains("RTP/AVP/TCP;unicast;interleaved=0-1"));
}

#[test]
fn an_rtsp_pull_answers_a_digest_challenge_with_the_url_credentials() {
    let mut origin = EngineConfig::default();
    origin.rtsp.play_credentials = Some(Credentials {
        username: "cam".into(),
        password: "p@ss".into(),
    });
    let mut net = Net::with(
        origin.clone(),
        edge_pulling("rtsp://cam:p%40ss@origin:554", 2_000),
    );
    let _ = pull_through(
        &mut net,
        "DESCRIBE rtsp://origin:554/live/s?rill_relay=1 RTSP/1.0\r\n",
    );
    assert!(wire(&net).contains("Authorization: Digest username=\"cam\""));

    // Basic when the origin asks for it.
    let mut basic = origin.clone();
    basic.rtsp.auth_scheme = AuthScheme::Basic;
    let mut net = Net::with(basic, edge_pulling("rtsp://cam:p%40ss@origin:554", 2_000));
    let _ = pull_through(
        &mut net,
        "DESCRIBE rtsp://origin:554/live/s?rill_relay=1 RTSP/1.0\r\n",
    );
    assert!(wire(&net).contains("Authorization: Basic Y2FtOnBAc3M="));

    // A wrong password is a failed attempt, retried with the backoff.
    let mut net = Net::with(origin, edge_pulling("rtsp://cam:nope@origin:554", 2_000));
    let publisher = net.client(ORIGIN, true, "s");
    net.send(publisher, &configs());
    let _player = net.client(EDGE, false, "s");
    net.advance(1_500);
    assert_eq!(net.connects.len(), 2, "{:?}", net.logs);
    assert!(
        net.logs
            .iter()
            .any(|l| l.contains("failed") && l.contains("401")),
        "{:?}",
        net.logs
    );
}

#[test]
fn an_http_flv_origin_that_does_not_answer_200_is_retried_with_backoff() {
    let mut net = Net::with(
        EngineConfig::default(),
        edge_pulling("http://teapot:8080", 1_000),
    );
    let _player = net.client(EDGE, false, "s");
    net.advance(3_500);
    // 1 s then 2 s, each shortened by up to a fifth (jitter).
    let times: Vec<u64> = net.connects.iter().map(|(t, _)| *t).collect();
    assert_eq!(times.len(), 3, "logs: {:?}", net.logs);
    assert!((800..=1_000).contains(&(times[1] - times[0])), "{times:?}");
    assert!(
        (1_600..=2_000).contains(&(times[2] - times[1])),
        "{times:?}"
    );
    assert!(
        net.logs
            .iter()
            .any(|l| l.contains("failed: HTTP answer 403 Forbidden")),
        "{:?}",
        net.logs
    );
    assert_eq!(
        net.engines[EDGE].relay_pull_count(),
        1,
        "players still wait"
    );
}

#[test]
fn a_static_push_over_rtsp_carries_the_publisher_query_to_players_on_the_target() {
    push_over_rtsp("rtsp://origin:554/live", false);
}

#[test]
fn a_static_push_over_rtsp_sends_media_over_udp_when_asked() {
    push_over_rtsp("rtsp://origin:554/live?rtsp_mode=1", true);
}

/// A publisher on the edge, pushed to `url` on the origin; a player there.
fn push_over_rtsp(url: &str, udp: bool) {
    // The target would push its streams on too, but not one that came from a relay.
    let mut net = Net::with(
        edge_pushing("rtmp://elsewhere:1935/live"),
        edge_pushing(url),
    );
    let publisher = net.client(EDGE, true, "s?token=abc");
    assert_eq!(net.engines[EDGE].relay_push_count(), 1);
    net.send(publisher, &configs());
    net.send(publisher, &stream(0, 10, 5));
    // The push announces the stream once its tracks are known.
    net.advance(500);
    assert!(
        wire(&net).starts_with("ANNOUNCE rtsp://origin:554/live/s?token=abc&rill_relay=1 RTSP/1.0"),
        "{:?}",
        wire(&net)
    );
    let player = net.client(ORIGIN, false, "s");
    net.send(publisher, &stream(400, 50, 5));
    net.advance(1_000);
    assert!(
        net.media_received(player) >= 40,
        "player on the target got {}; logs: {:?}",
        net.media_received(player),
        net.logs
    );
    assert_eq!(net.datagrams > 40, udp, "{} datagrams", net.datagrams);
    // The pushed stream is not pushed on again by the target (it carries the relay marker).
    assert_eq!(net.engines[ORIGIN].relay_push_count(), 0);
    net.hang_up(publisher);
    assert_eq!(net.engines[EDGE].relay_push_count(), 0);
    assert!(wire(&net).contains("TEARDOWN"), "the push says goodbye");
}

#[test]
fn a_static_push_over_rtmp_forwards_on_metadata() {
    let mut net = Net::with(
        EngineConfig::default(),
        edge_pushing("rtmp://origin:1935/live"),
    );
    let publisher = net.client(EDGE, true, "s");
    let metadata = Value::Object(vec![("encoder".into(), Value::String("relay-test".into()))]);
    net.clients[publisher]
        .session
        .send_metadata(&metadata)
        .unwrap();
    net.send(publisher, &configs());
    net.send(publisher, &stream(0, 10, 5));
    let player = net.client(ORIGIN, false, "s");
    net.send(publisher, &stream(400, 10, 5));
    let events = &net.clients[player].events;
    assert!(has_publisher_metadata(events), "{events:?}");
}

#[test]
fn a_reload_gives_the_edge_new_origins_and_push_rules_while_its_pull_goes_on() {
    let mut net = Net::new(10_000);
    let publisher = net.client(ORIGIN, true, "s");
    net.send(publisher, &configs());
    net.send(publisher, &stream(0, 10, 5));
    let player = net.client(EDGE, false, "s");
    net.send(publisher, &stream(400, 10, 5));
    let before = net.media_received(player);
    assert!(before >= 10, "the pull runs: {before}");

    // The reload: the origin list names another server, and every publish on `live` is
    // pushed to the origin.
    let mut config = edge_pushing("rtmp://origin:1935/live");
    config.relay.pull_origins = vec![RelayUrl::parse("rtmp://other:1935").unwrap()];
    config.hub.play_wait_timeout_ms = 20_000;
    let now = net.now;
    net.engines[EDGE].reconfigure(config, now);
    net.run();

    // The running pull and its player go on.
    net.send(publisher, &stream(800, 10, 5));
    assert!(!net.clients[player].closed);
    assert_eq!(net.engines[EDGE].relay_pull_count(), 1);
    assert!(
        net.media_received(player) >= before + 10,
        "media still flows"
    );

    // A new stream is pulled from the new origin.
    let connects = net.connects.len();
    let _waiting = net.client(EDGE, false, "t");
    assert_eq!(
        net.connects[connects..]
            .iter()
            .map(|(_, h)| h.as_str())
            .collect::<Vec<_>>(),
        ["other"],
        "the new origin is asked"
    );

    // A new publish on the edge is pushed by the new rule.
    let local = net.client(EDGE, true, "p");
    net.send(local, &configs());
    net.send(local, &stream(0, 10, 5));
    let on_origin = net.client(ORIGIN, false, "p");
    net.send(local, &stream(400, 10, 5));
    assert!(
        net.media_received(on_origin) >= 5,
        "pushed to the origin: {}; logs {:?}",
        net.media_received(on_origin),
        net.logs
    );
}
