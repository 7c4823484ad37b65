//! A client session and a server session talking in memory on a virtual clock: connect,
//! publish, play, media both ways through an application loop, teardown.

use bytes::Bytes;
use rill_core::amf::Value;
use rill_core::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use rill_core::rtmp::command::code;
use rill_core::rtmp::message_type;
use rill_core::rtmp::server::{ServerConfig, ServerEvent, ServerSession};

/// Moves bytes both ways until neither side has anything to send; returns the events seen.
fn pump(
    client: &mut ClientSession,
    server: &mut ServerSession,
    now: u64,
) -> (Vec<ClientEvent>, Vec<ServerEvent>) {
    let (mut ce, mut se) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let mut moved = false;
        while let Some(b) = client.poll_transmit() {
            server
                .handle_input(&b, now)
                .expect("server accepts client bytes");
            moved = true;
        }
        while let Some(b) = server.poll_transmit() {
            client
                .handle_input(&b, now)
                .expect("client accepts server bytes");
            moved = true;
        }
        while let Some(e) = server.poll_event() {
            se.push(e);
        }
        while let Some(e) = client.poll_event() {
            ce.push(e);
        }
        if !moved {
            return (ce, se);
        }
    }
    panic!("sessions never went quiet");
}

fn random(seed: u8) -> Vec<u8> {
    (0..1528u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn pair(complex: bool) -> (ClientSession, ServerSession) {
    let mut cfg = ClientConfig::new("live", "rtmp://127.0.0.1/live");
    cfg.complex_handshake = complex;
    (
        ClientSession::new(cfg, &random(1), 0),
        ServerSession::new(ServerConfig::default(), &random(2), 0),
    )
}

#[test]
fn publish_then_play_then_teardown() {
    for complex in [false, true] {
        let (mut publisher, mut server_p) = pair(complex);
        publisher.publish("cam?key=1");
        let (_, se) = pump(&mut publisher, &mut server_p, 10);
        assert!(
            matches!(se.first(), Some(ServerEvent::HandshakeDone { .. })),
            "{se:?}"
        );
        assert!(
            matches!(se.get(1), Some(ServerEvent::ConnectRequest { app, .. }) if app == "live"),
            "{se:?}"
        );
        server_p.accept_connect().unwrap();
        let (ce, se) = pump(&mut publisher, &mut server_p, 20);
        assert!(ce.contains(&ClientEvent::Connected), "{ce:?}");
        let Some(ServerEvent::PublishRequest {
            stream_id,
            stream_name,
            query,
            ..
        }) = se.last().cloned()
        else {
            panic!("no publish request: {se:?}")
        };
        assert_eq!((stream_name.as_str(), query.as_str()), ("cam", "key=1"));
        server_p.accept_publish(stream_id).unwrap();
        let (ce, _) = pump(&mut publisher, &mut server_p, 30);
        assert!(
            matches!(ce.last(), Some(ClientEvent::Publishing { .. })),
            "{ce:?}"
        );

        // Media from the publisher comes out of the server as events, unchanged.
        let meta = Value::Object(vec![("width".into(), Value::Number(1280.0))]);
        publisher.send_metadata(&meta).expect("metadata");
        let key = Bytes::from(vec![0x17u8, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88]);
        let audio = Bytes::from(vec![0xAFu8, 1, 0x21, 0x10]);
        let big = Bytes::from(vec![0x27u8; 100_000]);
        publisher
            .send_media(message_type::VIDEO, 40, &key)
            .expect("video");
        publisher
            .send_media(message_type::AUDIO, 0x0100_0000, &audio)
            .expect("audio, extended timestamp");
        publisher
            .send_media(message_type::VIDEO, 80, &big)
            .expect("big video");
        let (_, se) = pump(&mut publisher, &mut server_p, 40);
        let media: Vec<_> = se
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Media {
                    type_id,
                    timestamp,
                    payload,
                    ..
                } => Some((*type_id, *timestamp, payload.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            media,
            vec![
                (message_type::VIDEO, 40, key.clone()),
                (message_type::AUDIO, 0x0100_0000, audio.clone()),
                (message_type::VIDEO, 80, big.clone())
            ]
        );
        assert!(
            se.iter()
                .any(|e| matches!(e, ServerEvent::Metadata { value, .. } if value == &meta)),
            "{se:?}"
        );

        // A player on another connection; the application relays what the publisher sent.
        let (mut player, mut server_q) = pair(complex);
        player.play("cam");
        pump(&mut player, &mut server_q, 50);
        server_q.accept_connect().unwrap();
        let (_, se) = pump(&mut player, &mut server_q, 60);
        let Some(ServerEvent::PlayRequest {
            stream_id,
            stream_name,
            ..
        }) = se.last().cloned()
        else {
            panic!("no play request: {se:?}")
        };
        assert_eq!(stream_name, "cam");
        server_q.accept_play(stream_id).unwrap();
        server_q.send_metadata(stream_id, &meta);
        for (type_id, ts, payload) in &media {
            server_q.send_media(stream_id, *type_id, *ts, payload);
        }
        let (ce, _) = pump(&mut player, &mut server_q, 70);
        assert!(
            ce.iter().any(|e| matches!(e, ClientEvent::Playing { .. })),
            "{ce:?}"
        );
        assert!(
            ce.contains(&ClientEvent::Metadata {
                value: meta.clone()
            }),
            "{ce:?}"
        );
        let got: Vec<_> = ce
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Media {
                    type_id,
                    timestamp,
                    payload,
                } => Some((*type_id, *timestamp, payload.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(got, media);

        // The stream ends: the player hears it; the publisher tears down.
        server_q.end_play(stream_id, "publisher left");
        let (ce, _) = pump(&mut player, &mut server_q, 80);
        assert!(ce.contains(&ClientEvent::StreamEnded), "{ce:?}");
        publisher.close();
        let (_, se) = pump(&mut publisher, &mut server_p, 90);
        assert!(
            se.iter()
                .any(|e| matches!(e, ServerEvent::PublishStopped { .. })),
            "{se:?}"
        );
    }
}

#[test]
fn rejected_publish_and_play_reach_the_client() {
    let (mut client, mut server) = pair(false);
    client.publish("taken");
    pump(&mut client, &mut server, 0);
    server.accept_connect().unwrap();
    let (_, se) = pump(&mut client, &mut server, 1);
    let Some(ServerEvent::PublishRequest { stream_id, .. }) = se.last().cloned() else {
        panic!("{se:?}")
    };
    server
        .reject_publish(stream_id, code::PUBLISH_BAD_NAME, "already publishing")
        .unwrap();
    let (ce, _) = pump(&mut client, &mut server, 2);
    assert!(
        ce.iter().any(
            |e| matches!(e, ClientEvent::Rejected { code, .. } if code == code::PUBLISH_BAD_NAME)
        ),
        "{ce:?}"
    );

    let (mut client, mut server) = pair(false);
    client.play("nothing");
    pump(&mut client, &mut server, 0);
    server.reject_connect("go away").unwrap();
    let (ce, _) = pump(&mut client, &mut server, 1);
    assert!(
        ce.iter().any(
            |e| matches!(e, ClientEvent::Rejected { code, .. } if code == code::CONNECT_REJECTED)
        ),
        "{ce:?}"
    );
}

#[test]
fn handshake_deadline_expires_on_a_silent_client() {
    let mut server = ServerSession::new(ServerConfig::default(), &random(3), 1000);
    assert_eq!(server.poll_timeout(), Some(11_000));
    assert!(server.handle_timeout(10_999).is_ok());
    assert!(server.handle_timeout(11_000).is_err());
}

#[test]
fn garbage_after_handshake_is_an_error_not_a_panic() {
    let (mut client, mut server) = pair(false);
    pump(&mut client, &mut server, 0);
    // A chunk on csid 10 with fmt 1 before any fmt 0 header there: invalid.
    let r = server.handle_input(&[0x4A, 0, 0, 0, 0, 0, 10, 20, 1, 2, 3], 1);
    assert!(r.is_err());
}
