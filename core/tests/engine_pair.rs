//! Two engines (two worker threads in the real server) joined by their broadcast messages, with
//! real client sessions on a virtual clock: a publisher on one engine, players on both.

use std::net::SocketAddr;

use bytes::Bytes;
use rill_core::engine::{ConnId, Engine, EngineConfig, Listener, Output, PublishConflict};
use rill_core::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use rill_core::rtmp::message_type;

struct Peer {
    engine: usize,
    conn: ConnId,
    client: ClientSession,
    events: Vec<ClientEvent>,
}

struct World {
    engines: Vec<Engine>,
    peers: Vec<Peer>,
    now: u64,
    /// Connections the engines closed, as (engine, conn).
    closed: Vec<(usize, ConnId)>,
}

fn addr() -> SocketAddr {
    "127.0.0.1:40000".parse().expect("addr")
}

impl World {
    /// Engines that write at once (no merge window), so each `run` delivers everything.
    fn new() -> World {
        World::with_config(EngineConfig {
            write_merge_ms: 0,
            ..EngineConfig::default()
        })
    }

    fn with_config(config: EngineConfig) -> World {
        let config = EngineConfig {
            share_streams: true,
            ..config
        };
        World {
            engines: vec![Engine::new(config.clone(), 1), Engine::new(config, 2)],
            peers: Vec::new(),
            now: 0,
            closed: Vec::new(),
        }
    }

    fn connect(&mut self, engine: usize, conn: ConnId) -> usize {
        let random = vec![9u8; 1528];
        let client = ClientSession::new(
            ClientConfig::new("live", "rtmp://127.0.0.1/live"),
            &random,
            self.now,
        );
        self.engines[engine].handle_accept(conn, Listener::Rtmp, addr(), self.now);
        self.peers.push(Peer {
            engine,
            conn,
            client,
            events: Vec::new(),
        });
        self.peers.len() - 1
    }

    /// Moves bytes and broadcasts until everything is quiet.
    fn run(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for p in &mut self.peers {
                while let Some(b) = p.client.poll_transmit() {
                    self.engines[p.engine].handle_input(p.conn, &b, self.now);
                    moved = true;
                }
            }
            for e in 0..self.engines.len() {
                while let Some(out) = self.engines[e].poll_output() {
                    moved = true;
                    match out {
                        Output::Broadcast(msg) => {
                            for other in 0..self.engines.len() {
                                if other != e {
                                    self.engines[other].handle_remote(msg.clone(), self.now);
                                }
                            }
                        }
                        Output::Close { conn, flush: false } => self.closed.push((e, conn)),
                        Output::Transmit(conn) | Output::Close { conn, flush: true } => {
                            if matches!(out, Output::Close { .. }) {
                                self.closed.push((e, conn));
                            }
                            let mut bufs = Vec::new();
                            self.engines[e].poll_transmit(conn, usize::MAX, &mut bufs);
                            let Some(p) = self
                                .peers
                                .iter_mut()
                                .find(|p| p.engine == e && p.conn == conn)
                            else {
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

    fn media(&self, peer: usize) -> Vec<(u8, u32, Bytes)> {
        self.peers[peer]
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media {
                    type_id,
                    timestamp,
                    payload,
                } => Some((*type_id, *timestamp, payload.clone())),
                _ => None,
            })
            .collect()
    }
}

/// A minimal valid AVC sequence header tag body (SPS/PPS for 64x64 baseline).
fn avc_sequence_header() -> Bytes {
    let sps = [0x67, 0x42, 0xC0, 0x0A, 0xDA, 0x11, 0x10, 0x80];
    let pps = [0x68, 0xCE, 0x38, 0x80];
    let mut b = vec![
        0x17,
        0,
        0,
        0,
        0,
        1,
        0x42,
        0xC0,
        0x0A,
        0xFF,
        0xE1,
        0,
        sps.len() as u8,
    ];
    b.extend_from_slice(&sps);
    b.extend_from_slice(&[1, 0, pps.len() as u8]);
    b.extend_from_slice(&pps);
    Bytes::from(b)
}

fn video(key: bool, nal: u8, size: usize) -> Bytes {
    let mut b = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    b.extend_from_slice(&(size as u32 + 1).to_be_bytes());
    b.push(nal);
    b.extend(std::iter::repeat(0xAB).take(size));
    Bytes::from(b)
}

#[test]
fn players_on_another_engine_get_the_stream_from_the_gop_cache_and_live() {
    let mut w = World::new();
    let publisher = w.connect(0, 1);
    w.peers[publisher].client.publish("cam");
    w.run();
    assert!(w.peers[publisher]
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::Publishing { .. })));

    // Configs and a GOP before anyone plays; timestamps start far from zero.
    let seq = avc_sequence_header();
    let aac = Bytes::from_static(&[0xAF, 0, 0x12, 0x10]);
    let sends: Vec<(u8, u32, Bytes)> = vec![
        (message_type::VIDEO, 5000, seq.clone()),
        (message_type::AUDIO, 5000, aac.clone()),
        (message_type::VIDEO, 5000, video(true, 0x65, 20_000)),
        (
            message_type::AUDIO,
            5010,
            Bytes::from_static(&[0xAF, 1, 1, 2, 3]),
        ),
        (message_type::VIDEO, 5040, video(false, 0x41, 3000)),
    ];
    for (t, ts, body) in &sends {
        w.peers[publisher]
            .client
            .send_media(*t, *ts, body)
            .expect("send");
    }
    w.run();

    // A late player on the other engine and one on the publisher's engine.
    let remote = w.connect(1, 7);
    let local = w.connect(0, 2);
    w.peers[remote].client.play("cam");
    w.peers[local].client.play("cam");
    w.run();
    // Live media after they joined.
    w.peers[publisher]
        .client
        .send_media(message_type::VIDEO, 5080, &video(false, 0x41, 100))
        .expect("send");
    w.run();

    for p in [remote, local] {
        assert!(
            w.peers[p]
                .events
                .iter()
                .any(|e| matches!(e, ClientEvent::Playing { .. })),
            "{:?}",
            w.peers[p].events
        );
        let got = w.media(p);
        let bodies: Vec<&Bytes> = got.iter().map(|(_, _, b)| b).collect();
        assert_eq!(bodies[0], &seq, "video config first");
        assert_eq!(bodies[1], &aac, "then audio config");
        assert_eq!(bodies[2], &sends[2].2, "then the cached key frame");
        assert_eq!(got.len(), 6, "configs, cached GOP (3) and the live frame");
        let ts: Vec<u32> = got.iter().skip(2).map(|(_, t, _)| *t).collect();
        assert_eq!(ts, vec![0, 10, 40, 80], "rebased to start at 0");
    }

    // The publisher leaves for good: after the grace period, both players are told.
    w.peers[publisher].client.close();
    w.run();
    w.now += EngineConfig::default().hub.publisher_grace_ms + 1;
    let now = w.now;
    for e in &mut w.engines {
        e.handle_timeout(now);
    }
    w.run();
    for p in [remote, local] {
        assert!(
            w.peers[p].events.contains(&ClientEvent::StreamEnded),
            "{:?}",
            w.peers[p].events
        );
    }
}

#[test]
fn a_second_publisher_is_refused_even_on_another_engine() {
    let mut w = World::new();
    let first = w.connect(0, 1);
    w.peers[first].client.publish("one");
    w.run();
    let second = w.connect(1, 1);
    w.peers[second].client.publish("one");
    w.run();
    assert!(
        w.peers[second].events.iter().any(|e| matches!(e, ClientEvent::Rejected { code, .. } if code == "NetStream.Publish.BadName")),
        "{:?}",
        w.peers[second].events
    );
}

#[test]
fn a_closing_connection_whose_peer_never_reads_is_dropped_after_the_flush_deadline() {
    let mut engine = Engine::new(EngineConfig::default(), 3);
    engine.handle_accept(1, Listener::Http, addr(), 0);
    engine.handle_input(
        1,
        b"GET /nothing/here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        10,
    );
    let mut flushing = false;
    while let Some(out) = engine.poll_output() {
        flushing |= matches!(
            out,
            Output::Close {
                conn: 1,
                flush: true
            }
        );
    }
    assert!(flushing, "the 404 is sent before closing");
    // The runtime never manages to write (peer not reading) and never reports the close.
    engine.handle_timeout(4_000);
    assert_eq!(engine.connection_count(), 1);
    let deadline = engine.poll_timeout().expect("a flush deadline");
    engine.handle_timeout(deadline);
    let mut dropped = false;
    while let Some(out) = engine.poll_output() {
        dropped |= matches!(
            out,
            Output::Close {
                conn: 1,
                flush: false
            }
        );
    }
    assert!(dropped, "dropped without waiting further");
    assert_eq!(engine.connection_count(), 0);
}

#[test]
fn write_merging_holds_player_media_until_the_window_ends_then_sends_it_in_one_go() {
    // One player per engine, half of write_merge_players: half of the 60 ms window.
    let mut w = World::with_config(EngineConfig {
        write_merge_ms: 60,
        write_merge_players: 2,
        ..EngineConfig::default()
    });
    let publisher = w.connect(0, 1);
    w.peers[publisher].client.publish("cam");
    w.run();
    let seq = avc_sequence_header();
    let sends = [
        (5000, seq.clone()),
        (5000, video(true, 0x65, 5000)),
        (5033, video(false, 0x41, 700)),
    ];
    for (ts, body) in &sends {
        w.peers[publisher]
            .client
            .send_media(message_type::VIDEO, *ts, body)
            .expect("send");
    }
    w.run();
    // Players on both engines: the one across engines gets its media merged too.
    let local = w.connect(0, 2);
    let remote = w.connect(1, 3);
    w.peers[local].client.play("cam");
    w.peers[remote].client.play("cam");
    w.run();
    // The cached GOP went out at once (the start is never held); let any window end.
    assert!(w.media(local).len() >= 3, "{:?}", w.media(local).len());
    w.now += 30;
    let now = w.now;
    for e in &mut w.engines {
        e.handle_timeout(now);
    }
    w.run();
    let before: Vec<usize> = [local, remote].iter().map(|&p| w.media(p).len()).collect();

    // Two live frames 10 ms apart: nothing goes out before the window ends.
    w.now += 1;
    let opened = w.now;
    for (i, ts) in [5066u32, 5076].into_iter().enumerate() {
        w.peers[publisher]
            .client
            .send_media(message_type::VIDEO, ts, &video(false, 0x41, 300 + i))
            .expect("send");
        w.run();
        w.now += 10;
    }
    for (i, &p) in [local, remote].iter().enumerate() {
        assert_eq!(w.media(p).len(), before[i], "held during the window");
    }
    for e in 0..2 {
        assert_eq!(w.engines[e].poll_timeout(), Some(opened + 30), "engine {e}");
    }
    let at = opened + 30;
    w.now = at;
    for e in &mut w.engines {
        e.handle_timeout(at);
    }
    w.run();
    for (i, &p) in [local, remote].iter().enumerate() {
        let got = w.media(p);
        assert_eq!(got.len(), before[i] + 2, "both frames after the window");
        let ts: Vec<u32> = got.iter().rev().take(2).map(|(_, t, _)| *t).collect();
        assert_eq!(ts[0] - ts[1], 10, "spacing kept");
    }
    for e in &w.engines {
        assert!(
            e.poll_timeout().is_none_or(|t| t > at + 30),
            "no window open once flushed"
        );
    }
}

#[test]
fn with_kick_a_new_publisher_takes_over_on_either_engine_and_players_stay() {
    for new_engine in [0, 1] {
        let mut w = World::with_config(EngineConfig {
            publish_conflict: PublishConflict::Kick,
            ..EngineConfig::default()
        });
        let old = w.connect(0, 1);
        w.peers[old].client.publish("cam");
        w.run();
        let seq = avc_sequence_header();
        for (t, ts, body) in [
            (message_type::VIDEO, 0, seq.clone()),
            (message_type::VIDEO, 0, video(true, 0x65, 1000)),
        ] {
            w.peers[old].client.send_media(t, ts, &body).expect("send");
        }
        w.run();
        let remote = w.connect(1, 7);
        let local = w.connect(0, 2);
        w.peers[remote].client.play("cam");
        w.peers[local].client.play("cam");
        w.run();

        let new = w.connect(new_engine, 3);
        w.peers[new].client.publish("cam");
        w.run();
        assert!(
            w.peers[new]
                .events
                .iter()
                .any(|e| matches!(e, ClientEvent::Publishing { .. })),
            "newcomer on engine {new_engine} publishes: {:?}",
            w.peers[new].events
        );
        assert!(
            w.closed.contains(&(0, 1)),
            "the old publisher is disconnected (newcomer on engine {new_engine})"
        );
        // The kicked publisher's last words reach nobody; the newcomer's frames reach everyone.
        let stale = video(false, 0x41, 777);
        let _ = w.peers[old]
            .client
            .send_media(message_type::VIDEO, 40, &stale);
        let fresh_key = video(true, 0x65, 2000);
        for (ts, body) in [(0, seq.clone()), (0, fresh_key.clone())] {
            w.peers[new]
                .client
                .send_media(message_type::VIDEO, ts, &body)
                .expect("send");
        }
        w.run();
        for p in [remote, local] {
            let bodies: Vec<Bytes> = w.media(p).into_iter().map(|(_, _, b)| b).collect();
            assert!(
                bodies.contains(&fresh_key),
                "player {p} gets the newcomer's key frame (newcomer on engine {new_engine})"
            );
            assert!(
                !bodies.contains(&stale),
                "player {p} never gets the kicked publisher's frame"
            );
            assert!(
                !w.peers[p].events.contains(&ClientEvent::StreamEnded),
                "player {p} stays: {:?}",
                w.peers[p].events
            );
            assert!(!w.closed.contains(&(w.peers[p].engine, w.peers[p].conn)));
        }
    }
}

#[test]
fn stats_count_a_player_on_another_engine_with_the_stream_of_its_publisher() {
    use rill_core::api::{lal::render_json, metrics::render_metrics, Query};
    let mut w = World::new();
    let publisher = w.connect(0, 1);
    w.peers[publisher].client.publish("cam");
    w.run();
    let aac = Bytes::from_static(&[0xAF, 0, 0x12, 0x10]);
    for (t, body) in [
        (message_type::VIDEO, avc_sequence_header()),
        (message_type::AUDIO, aac),
        (message_type::VIDEO, video(true, 0x65, 20_000)),
    ] {
        w.peers[publisher]
            .client
            .send_media(t, 0, &body)
            .expect("send");
    }
    w.run();
    let remote = w.connect(1, (1 << 40) | 7);
    w.peers[remote].client.play("cam");
    w.run();
    w.now = 2_000;
    let now = w.now;
    let snapshots: Vec<_> = w.engines.iter_mut().map(|e| e.stats(now)).collect();
    assert_eq!(
        snapshots[0].streams.len(),
        1,
        "the publisher's engine has the stream"
    );
    assert!(
        snapshots[1].streams.is_empty(),
        "the other engine only relays it"
    );

    let v: serde_json::Value =
        serde_json::from_str(&render_json(&Query::Group("cam".into()), &snapshots)).expect("JSON");
    assert_eq!(v["error_code"], 0, "{v}");
    let g = &v["data"];
    assert_eq!(
        (g["app_name"].as_str(), g["stream_name"].as_str()),
        (Some("live"), Some("cam"))
    );
    assert_eq!(
        (g["video_codec"].as_str(), g["audio_codec"].as_str()),
        (Some("H264"), Some("AAC"))
    );
    assert_eq!(
        (g["video_width"].as_u64(), g["video_height"].as_u64()),
        (Some(64), Some(64))
    );
    assert_eq!(g["pub"]["protocol"], "RTMP");
    assert!(g["pub"]["read_bytes_sum"].as_u64() > Some(20_000), "{g}");
    assert!(
        g["pub"]["read_bitrate_kbits"].as_u64() > Some(0),
        "measured over 2 s: {g}"
    );
    let subs = g["subs"].as_array().expect("subs");
    assert_eq!(subs.len(), 1, "{g}");
    assert_eq!(
        subs[0]["session_id"],
        format!("RTMPPUBSUB{}", (1u64 << 40) | 7)
    );
    assert!(subs[0]["wrote_bytes_sum"].as_u64() > Some(20_000), "{g}");

    let metrics = render_metrics(&snapshots);
    assert!(metrics.lines().any(|l| l == "rill_streams 1"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l == "rill_players{protocol=\"rtmp\"} 1"),
        "{metrics}"
    );
}
