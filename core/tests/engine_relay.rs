//! Relays on a virtual clock: an edge engine pulling from an origin engine over an in-memory
//! connection (the test plays both runtimes), the pull's idle stop, a local publisher taking
//! the stream over, and the retry backoff when the origin is down.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use common::{aac_sequence_header, avc_sequence_header, stream};
use rill_core::engine::{ConnId, Engine, EngineConfig, Listener, Output, RelayConfig, RelayUrl};
use rill_core::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use rill_core::rtmp::message_type;

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
/// the origin's RTMP listener.
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
}

fn peer() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

impl Net {
    fn new(idle_stop_ms: u64) -> Net {
        let edge = EngineConfig {
            relay: RelayConfig {
                pull_origins: vec![RelayUrl::parse("rtmp://origin:1935").unwrap()],
                idle_stop_ms,
                push: Vec::new(),
            },
            ..EngineConfig::default()
        };
        Net {
            engines: [
                Engine::new(EngineConfig::default(), 1),
                Engine::new(edge, 2),
            ],
            now: 0,
            clients: Vec::new(),
            links: HashMap::new(),
            next_conn: 1,
            connects: Vec::new(),
            logs: Vec::new(),
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
                if let Some(&(oe, oc)) = self.links.get(&(e, conn)) {
                    for b in bufs {
                        self.engines[oe].handle_input(oc, &b, now);
                    }
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
            Output::Connect { conn, host, .. } => {
                self.connects.push((now, host.clone()));
                if host == "origin" {
                    let accepted = self.next_conn;
                    self.next_conn += 1;
                    self.engines[ORIGIN].handle_accept(accepted, Listener::Rtmp, peer(), now);
                    self.links.insert((e, conn), (ORIGIN, accepted));
                    self.links.insert((ORIGIN, accepted), (e, conn));
                    self.engines[e].handle_connected(conn, Ok(peer()), now);
                } else {
                    self.engines[e].handle_connected(conn, Err(format!("{host}: refused")), now);
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
    let times: Vec<u64> = net.connects.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        [0, 1_000, 3_000, 7_000, 15_000],
        "logs: {:?}",
        net.logs
    );
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
