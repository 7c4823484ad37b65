//! Webhooks sent by the engine over its own outbound connections, on a virtual clock: RTMP
//! clients publish and play, and the test plays the runtime for the outbound side (connects,
//! carries the POST, answers or stays silent).

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use rill_core::api::webhook::{WebhookEvent, WebhookUrl};
use rill_core::engine::conn_id::{is_outbound, worker_of};
use rill_core::engine::{
    ConnId, Engine, EngineConfig, EngineStats, Listener, LogLevel, Output, Query, WebhookConfig,
};
use rill_core::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use rill_core::rtmp::message_type;
use serde_json::Value;

struct Peer {
    conn: ConnId,
    client: ClientSession,
    events: Vec<ClientEvent>,
}

/// What the engine asked of one outbound connection.
#[derive(Debug, Default)]
struct Hook {
    host: String,
    port: u16,
    /// Bytes the engine sent on it.
    sent: Vec<u8>,
    closed: bool,
}

struct World {
    engine: Engine,
    peers: Vec<Peer>,
    now: u64,
    hooks: HashMap<ConnId, Hook>,
    /// Outbound connections in the order the engine asked for them.
    order: Vec<ConnId>,
    logs: Vec<(LogLevel, String)>,
    gathers: Vec<(ConnId, Query)>,
}

fn addr() -> SocketAddr {
    "127.0.0.1:40000".parse().expect("addr")
}

fn receivers(events: &[WebhookEvent]) -> Vec<(WebhookEvent, WebhookUrl)> {
    events
        .iter()
        .map(|e| {
            let url = format!("http://hooks.example:8000/{}", e.name());
            (*e, WebhookUrl::parse(&url).expect("url"))
        })
        .collect()
}

impl World {
    fn new(webhook: WebhookConfig, worker: usize) -> World {
        let config = EngineConfig {
            worker,
            workers: 2,
            webhook: WebhookConfig {
                rtmp_addr: "127.0.0.1:1935".into(),
                http_addr: "127.0.0.1:8080".into(),
                ..webhook
            },
            ..EngineConfig::default()
        };
        World {
            engine: Engine::new(config, 1),
            peers: Vec::new(),
            now: 0,
            hooks: HashMap::new(),
            order: Vec::new(),
            logs: Vec::new(),
            gathers: Vec::new(),
        }
    }

    fn with_receivers(events: &[WebhookEvent]) -> World {
        World::new(
            WebhookConfig {
                receivers: receivers(events),
                ..WebhookConfig::default()
            },
            1,
        )
    }

    fn connect(&mut self, conn: ConnId) -> usize {
        let client = ClientSession::new(
            ClientConfig::new("live", "rtmp://127.0.0.1/live"),
            &[9u8; 1528],
            self.now,
        );
        self.engine
            .handle_accept(conn, Listener::Rtmp, addr(), self.now);
        self.peers.push(Peer {
            conn,
            client,
            events: Vec::new(),
        });
        self.peers.len() - 1
    }

    /// Moves bytes until everything is quiet.
    fn run(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for p in &mut self.peers {
                while let Some(b) = p.client.poll_transmit() {
                    self.engine.handle_input(p.conn, &b, self.now);
                    moved = true;
                }
            }
            while let Some(out) = self.engine.poll_output() {
                moved = true;
                match out {
                    Output::Connect {
                        conn, host, port, ..
                    } => {
                        assert!(is_outbound(conn), "{conn:#x}");
                        self.order.push(conn);
                        self.hooks.insert(
                            conn,
                            Hook {
                                host,
                                port,
                                ..Hook::default()
                            },
                        );
                    }
                    Output::Log { level, message } => self.logs.push((level, message)),
                    Output::Gather { conn, query } => self.gathers.push((conn, query)),
                    Output::Close { conn, .. } if is_outbound(conn) => {
                        self.hooks.get_mut(&conn).expect("known").closed = true;
                    }
                    Output::Transmit(conn) | Output::Close { conn, flush: true } => {
                        let mut bufs = Vec::new();
                        self.engine.poll_transmit(conn, usize::MAX, &mut bufs);
                        if let Some(hook) = self.hooks.get_mut(&conn) {
                            bufs.iter().for_each(|b| hook.sent.extend_from_slice(b));
                            continue;
                        }
                        let Some(p) = self.peers.iter_mut().find(|p| p.conn == conn) else {
                            continue;
                        };
                        for b in bufs {
                            p.client
                                .handle_input(&b, self.now)
                                .expect("client accepts engine bytes");
                        }
                    }
                    _ => {}
                }
            }
            for p in &mut self.peers {
                while let Some(ev) = p.client.poll_event() {
                    p.events.push(ev);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("never quiet");
    }

    /// Lets time pass to `now`.
    fn advance(&mut self, now: u64) {
        self.now = now;
        self.engine.handle_timeout(now);
        self.run();
    }

    fn connected(&mut self, conn: ConnId) {
        let peer = "192.0.2.7:8000".parse().expect("addr");
        self.engine.handle_connected(conn, Ok(peer), self.now);
        self.run();
    }

    fn answer(&mut self, conn: ConnId, bytes: &[u8]) {
        self.engine.handle_input(conn, bytes, self.now);
        self.run();
    }

    /// The request line and JSON body the engine sent on `conn`.
    fn request(&self, conn: ConnId) -> (String, String, Value) {
        let sent = String::from_utf8(self.hooks[&conn].sent.clone()).expect("ASCII");
        let (head, body) = sent.split_once("\r\n\r\n").expect("a whole request");
        let mut lines = head.split("\r\n");
        let line = lines.next().expect("request line").to_owned();
        let len: usize = lines
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.parse().ok())
            .expect("Content-Length");
        assert_eq!(body.len(), len, "the whole body");
        (
            line,
            head.to_owned(),
            serde_json::from_str(body).expect("JSON"),
        )
    }

    fn publish(&mut self, conn: ConnId) -> usize {
        let p = self.connect(conn);
        self.peers[p].client.publish("hook");
        self.run();
        p
    }

    fn send_video(&mut self, publisher: usize, ts: u32, key: bool) {
        let body = if key {
            avc_sequence_header()
        } else {
            Bytes::from_static(&[0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0xAB])
        };
        self.peers[publisher]
            .client
            .send_media(message_type::VIDEO, ts, &body)
            .expect("send");
        if key {
            let frame = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0xAB]);
            self.peers[publisher]
                .client
                .send_media(message_type::VIDEO, ts, &frame)
                .expect("send");
        }
        self.run();
    }

    fn warnings(&self) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|(l, _)| *l == LogLevel::Warn)
            .map(|(_, m)| m.as_str())
            .collect()
    }
}

/// A minimal valid AVC sequence header tag body (SPS/PPS for 64x64 baseline).
fn avc_sequence_header() -> Bytes {
    let sps = [0x67, 0x42, 0xC0, 0x0A, 0xDA, 0x11, 0x10, 0x80];
    let pps = [0x68, 0xCE, 0x38, 0x80];
    let mut b = vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1, 0, 8];
    b.extend_from_slice(&sps);
    b.extend_from_slice(&[1, 0, pps.len() as u8]);
    b.extend_from_slice(&pps);
    Bytes::from(b)
}

#[test]
fn a_session_start_is_posted_over_an_outbound_connection_and_answered() {
    use WebhookEvent as E;
    let mut w = World::with_receivers(&[E::PubStart, E::PubStop]);
    w.publish((1 << 40) | 3);
    assert_eq!(w.order.len(), 1, "one Connect for on_pub_start");
    let conn = w.order[0];
    assert_eq!(worker_of(conn), 1, "the id is in this worker's space");
    assert_eq!(
        (w.hooks[&conn].host.as_str(), w.hooks[&conn].port),
        ("hooks.example", 8000),
        "the name goes to the runtime unresolved"
    );
    assert!(
        w.hooks[&conn].sent.is_empty(),
        "nothing before the connection is open"
    );
    assert_eq!(w.engine.pending_notifications(), 1);

    w.now = 30;
    w.connected(conn);
    let (line, head, v) = w.request(conn);
    assert_eq!(line, "POST /on_pub_start HTTP/1.1");
    for h in [
        "Host: hooks.example:8000",
        "Content-Type: application/json",
        "Connection: close",
    ] {
        assert!(head.contains(h), "{h} missing: {head}");
    }
    assert_eq!(v["session_id"], "RTMPPUBSUB1099511627779");
    assert_eq!(v["url"], "rtmp://127.0.0.1:1935/live/hook");
    assert_eq!(v["has_in_session"], true, "read from the hub: {v}");
    assert_eq!(v["has_out_session"], false);

    // The answer arrives split; the head is all that is needed.
    w.answer(conn, b"HTTP/1.1 200 OK\r\nContent-");
    assert!(!w.hooks[&conn].closed);
    w.answer(conn, b"Length: 2\r\n\r\n");
    assert!(w.hooks[&conn].closed, "closed once answered");
    assert_eq!(w.engine.pending_notifications(), 0);
    assert!(w.warnings().is_empty(), "{:?}", w.logs);
    assert!(w
        .logs
        .iter()
        .any(|(l, m)| *l == LogLevel::Debug && m.contains("on_pub_start sent")));
    assert_eq!(
        w.engine.connection_count(),
        1,
        "outbound ones are not sessions"
    );
    // Late bytes or a close for a finished exchange change nothing.
    w.answer(conn, b"ok");
    w.engine.handle_close(conn, "peer closed", w.now);
    w.run();
    assert_eq!(w.order.len(), 1);
}

#[test]
fn a_receiver_that_never_answers_times_out_with_a_log_line_and_media_flows() {
    use WebhookEvent as E;
    let mut w = World::with_receivers(&[E::PubStart, E::SubStart]);
    let publisher = w.publish(1);
    w.send_video(publisher, 0, true);
    let silent = w.order[0];
    w.now = 100;
    w.connected(silent);
    assert!(!w.hooks[&silent].sent.is_empty(), "the POST went out");

    // A player joins while the receiver says nothing: it gets the stream at once.
    w.now = 500;
    let player = w.connect(2);
    w.peers[player].client.play("hook");
    w.run();
    w.send_video(publisher, 40, false);
    let media = |w: &World| {
        w.peers[player]
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Media { .. }))
            .count()
    };
    assert!(media(&w) >= 3, "{:?}", w.peers[player].events);
    let sub_start = w.order[1];
    w.connected(sub_start);
    let (_, _, v) = w.request(sub_start);
    assert_eq!(v["has_in_session"], true);
    assert_eq!(v["has_out_session"], true, "the player is in the hub: {v}");

    // 2 s after the connection opened: given up, closed, one clear line.
    assert_eq!(w.engine.poll_timeout(), Some(2_100));
    w.advance(2_099);
    assert!(!w.hooks[&silent].closed);
    w.advance(2_100);
    assert!(w.hooks[&silent].closed);
    assert_eq!(
        w.warnings(),
        [
            "webhook on_pub_start to http://hooks.example:8000/on_pub_start failed: \
          no answer within 2 s"
        ]
    );
    // Media goes on.
    let before = media(&w);
    w.send_video(publisher, 80, false);
    assert!(media(&w) > before);
    // The second silent receiver gives up 0.4 s later: counted, not logged (one line a second).
    w.advance(2_500);
    assert!(w.hooks[&sub_start].closed);
    assert_eq!(w.warnings().len(), 1, "{:?}", w.logs);
    assert_eq!(w.engine.pending_notifications(), 0);
}

#[test]
fn failures_to_connect_and_a_full_queue_are_logged_and_counted() {
    use WebhookEvent as E;
    let mut w = World::new(
        WebhookConfig {
            receivers: receivers(&[E::PubStart, E::PubStop]),
            queue_len: 2,
            max_in_flight: 1,
            ..WebhookConfig::default()
        },
        0,
    );
    // Five publishers come and go on distinct streams: ten events for one slot and a queue
    // of two.
    for conn in 1..=5 {
        let p = w.connect(conn);
        w.peers[p].client.publish(&format!("s{conn}"));
        w.run();
        w.engine.handle_close(conn, "peer closed", w.now);
        w.run();
    }
    assert_eq!(w.order.len(), 1, "one in flight");
    assert_eq!(w.engine.pending_notifications(), 3);
    let warnings = w.warnings();
    let full: Vec<&str> = warnings
        .into_iter()
        .filter(|m| m.contains("queue full"))
        .collect();
    assert_eq!(full.len(), 1, "at most one warning a second: {:?}", w.logs);
    assert!(full[0].contains("(1 dropped so far)"), "{full:?}");

    // The runtime cannot reach the receiver: the next queued event goes out at once.
    let first = w.order[0];
    w.engine.handle_connected(
        first,
        Err("cannot connect to 192.0.2.7:8000: refused".into()),
        w.now,
    );
    w.run();
    assert!(!w.hooks[&first].closed, "the runtime already holds nothing");
    assert_eq!(w.order.len(), 2);
    assert!(
        w.warnings()
            .iter()
            .any(|m| m.ends_with("/on_pub_start failed: cannot connect to 192.0.2.7:8000: refused")),
        "{:?}",
        w.logs
    );
    // Draining: each answered POST lets the next one go, until nothing is pending; what
    // went out is what was queued, in order (s1's stop, s2's start; the rest was dropped).
    for _ in 0..2 {
        let conn = *w.order.last().expect("one");
        w.connected(conn);
        w.answer(conn, b"HTTP/1.1 204 No Content\r\n\r\n");
    }
    assert_eq!(w.engine.pending_notifications(), 0);
    assert_eq!(w.order.len(), 3);
    let sent: Vec<(String, Value)> = w.order[1..]
        .iter()
        .map(|c| {
            let (line, _, v) = w.request(*c);
            (line, v["stream_name"].clone())
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("POST /on_pub_stop HTTP/1.1".to_owned(), Value::from("s1")),
            ("POST /on_pub_start HTTP/1.1".to_owned(), Value::from("s2")),
        ]
    );
}

#[test]
fn worker_0_sends_server_start_once_and_updates_with_every_workers_stats() {
    use WebhookEvent as E;
    let config = WebhookConfig {
        receivers: receivers(&[E::ServerStart, E::Update]),
        update_interval_ms: 1_000,
        ..WebhookConfig::default()
    };
    let mut other = World::new(config.clone(), 1);
    assert_eq!(other.engine.poll_timeout(), None, "worker 1 sends neither");
    other.advance(5_000);
    assert!(other.order.is_empty() && other.gathers.is_empty());

    let mut w = World::new(config, 0);
    w.now = 5;
    assert_eq!(w.engine.poll_timeout(), Some(0), "due at once");
    w.advance(5);
    assert_eq!(w.order.len(), 1);
    let start = w.order[0];
    w.connected(start);
    let (line, _, v) = w.request(start);
    assert_eq!(line, "POST /on_server_start HTTP/1.1");
    assert!(
        v["bin_info"]
            .as_str()
            .is_some_and(|s| s.contains("2 workers")),
        "{v}"
    );

    assert_eq!(
        w.engine.poll_timeout(),
        Some(1_005),
        "then the update, 1 s later"
    );
    w.advance(1_005);
    let (gather, request) = w.gathers.pop().expect("a stats gather");
    assert!(is_outbound(gather) && !w.hooks.contains_key(&gather));
    assert_eq!(request, Query::AllGroups);
    let snap = EngineStats {
        streams: vec![rill_core::engine::StreamStats {
            key: "live/elsewhere".into(),
            video_codec: None,
            audio_codec: None,
            width: 0,
            height: 0,
            frame_rate: None,
        }],
        ..EngineStats::default()
    };
    w.engine
        .answer(gather, &request, &[EngineStats::default(), snap], w.now);
    w.run();
    let update = *w.order.last().expect("on_update");
    w.connected(update);
    let (line, _, v) = w.request(update);
    assert_eq!(line, "POST /on_update HTTP/1.1");
    assert_eq!(v["groups"][0]["stream_name"], "elsewhere", "{v}");
    assert_eq!(w.order.len(), 2, "on_server_start went once");
}

#[test]
fn the_last_stop_events_are_pending_until_sent() {
    use WebhookEvent as E;
    let mut w = World::with_receivers(&[E::PubStop]);
    w.publish(1);
    assert_eq!(
        w.engine.pending_notifications(),
        0,
        "no on_pub_start receiver"
    );
    // Shutdown: the runtime drops the connection, then drives the engine while events remain.
    w.engine.handle_close(1, "server shutting down", w.now);
    w.run();
    assert_eq!(w.engine.pending_notifications(), 1);
    let conn = w.order[0];
    w.connected(conn);
    let (_, _, v) = w.request(conn);
    assert_eq!(v["base_type"], "PUB");
    assert_eq!(v["has_in_session"], false, "{v}");
    w.answer(conn, b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(w.engine.pending_notifications(), 0);
}

#[test]
fn a_connection_that_never_opens_or_closes_early_is_a_failure_not_a_hang() {
    use WebhookEvent as E;
    let mut w = World::with_receivers(&[E::PubStart, E::PubStop]);
    w.publish(1);
    let never = w.order[0];
    w.advance(2_000);
    assert!(
        w.hooks[&never].closed,
        "the runtime is told to abandon the attempt"
    );
    assert!(
        w.warnings()[0].ends_with("on_pub_start failed: no connection within 2 s"),
        "{:?}",
        w.logs
    );
    // The runtime reports the connection after the engine gave up: ignored.
    w.connected(never);
    assert!(w.hooks[&never].sent.is_empty());

    w.engine.handle_close(1, "peer closed", w.now);
    w.run();
    let early = w.order[1];
    w.connected(early);
    w.now = 3_500;
    w.engine.handle_close(early, "connection reset", w.now);
    w.run();
    assert!(
        w.warnings()[1].ends_with("failed: connection ended before the answer: connection reset"),
        "{:?}",
        w.logs
    );
    assert_eq!(w.engine.pending_notifications(), 0);
}

/// The JSON bodies of every event posted for `path` (each connection opened and carried).
fn posted(w: &mut World, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for conn in w.order.clone() {
        if w.hooks[&conn].sent.is_empty() {
            w.connected(conn);
        }
        let (line, _, v) = w.request(conn);
        if line == format!("POST /{path} HTTP/1.1") {
            out.push(v);
        }
    }
    out
}

#[test]
fn rtmp_connect_and_hls_segments_are_posted_with_lals_fields() {
    use WebhookEvent as E;
    let mut w = World::with_receivers(&[E::RtmpConnect, E::HlsMakeTs]);
    let mut config = EngineConfig {
        worker: 1,
        workers: 2,
        webhook: WebhookConfig {
            receivers: receivers(&[E::RtmpConnect, E::HlsMakeTs]),
            cwd: "/srv/rill".into(),
            ..WebhookConfig::default()
        },
        ..EngineConfig::default()
    };
    config.hls.enable = true;
    config.hls.out_path = "hls".into();
    config.hls.fragment_ms = 1_000;
    w.engine = Engine::new(config, 1);
    let p = w.publish((1 << 40) | 3);
    for ts in [0, 1_000, 2_000] {
        w.send_video(p, ts, true);
    }
    let connects = posted(&mut w, "on_rtmp_connect");
    assert_eq!(connects.len(), 1, "{:?}", w.logs);
    let c = &connects[0];
    assert_eq!(c["session_id"], "RTMPPUBSUB1099511627779");
    assert_eq!(c["app"], "live");
    assert_eq!(c["tcUrl"], "rtmp://127.0.0.1/live");
    assert!(c["flashVer"].as_str().is_some_and(|f| !f.is_empty()), "{c}");
    assert_eq!(c["remote_addr"], "127.0.0.1:40000");
    assert_eq!(c["server_id"], "1");

    let segments = posted(&mut w, "on_hls_make_ts");
    let open = segments
        .iter()
        .find(|v| v["event"] == "open")
        .expect("open");
    assert_eq!(open["stream_name"], "hook");
    assert_eq!(open["cwd"], "/srv/rill");
    assert_eq!(open["duration"], 0.0);
    let close = segments
        .iter()
        .find(|v| v["event"] == "close")
        .expect("close");
    assert_eq!(
        close["id"], open["id"],
        "the segment opened is the one closed"
    );
    assert_eq!(close["duration"], 1.0);
    assert!(
        close["ts_file"]
            .as_str()
            .is_some_and(|f| f.ends_with(".ts")),
        "{close}"
    );
    assert!(
        close["live_m3u8_file"]
            .as_str()
            .is_some_and(|f| f.ends_with("live/hook.m3u8")),
        "{close}"
    );
    assert!(close["record_m3u8_file"].is_string());
}
