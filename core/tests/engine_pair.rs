//! Two engines (two worker threads in the real server) joined by their broadcast messages, with
//! real client sessions on a virtual clock ([`rill_core::sim::World`]): a publisher on one
//! engine, players on both.

mod common;

use bytes::Bytes;
use common::*;
use rill_core::engine::{EngineConfig, Listener, PublishConflict};
use rill_core::rtmp::client::ClientEvent;
use rill_core::rtmp::message_type;
use rill_core::sim::World;

/// Two engines that write at once (no merge window), so each `run` delivers everything.
fn world() -> World {
    World::new(2, EngineConfig::default())
}

#[test]
fn players_on_another_engine_get_the_stream_from_the_gop_cache_and_live() {
    let mut w = world();
    let publisher = publisher(&mut w, 0, "cam");
    assert!(publishing(&w, publisher));

    // Configs and a GOP before anyone plays; timestamps start far from zero.
    let seq = avc_sequence_header();
    let aac = aac_sequence_header();
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
    send(&mut w, publisher, &sends);

    // A late player on the other engine and one on the publisher's engine.
    let remote = rtmp_player(&mut w, 1, "cam");
    let local = rtmp_player(&mut w, 0, "cam");
    w.run();
    // Live media after they joined.
    send(
        &mut w,
        publisher,
        &[(message_type::VIDEO, 5080, video(false, 0x41, 100))],
    );

    for p in [remote, local] {
        assert!(
            told(&w, p, |e| matches!(e, ClientEvent::Playing { .. })),
            "{:?}",
            w.rtmp_events(p)
        );
        let got = w.rtmp_media(p);
        let bodies: Vec<&Bytes> = got.iter().map(|(_, _, b)| b).collect();
        assert_eq!(bodies[0], &seq, "video config first");
        assert_eq!(bodies[1], &aac, "then audio config");
        assert_eq!(bodies[2], &sends[2].2, "then the cached key frame");
        assert_eq!(got.len(), 6, "configs, cached GOP (3) and the live frame");
        let ts: Vec<u32> = got.iter().skip(2).map(|(_, t, _)| *t).collect();
        assert_eq!(ts, vec![0, 10, 40, 80], "rebased to start at 0");
    }

    // The publisher leaves for good: after the grace period, both players are told.
    w.rtmp_session(publisher).close();
    w.run();
    w.advance(EngineConfig::default().hub.publisher_grace_ms + 1);
    for p in [remote, local] {
        assert!(
            w.rtmp_events(p).contains(&ClientEvent::StreamEnded),
            "{:?}",
            w.rtmp_events(p)
        );
    }
}

#[test]
fn a_second_publisher_is_refused_even_on_another_engine() {
    let mut w = world();
    let first = publisher(&mut w, 0, "one");
    let second = publisher(&mut w, 1, "one");
    assert!(publishing(&w, first));
    assert!(refused(&w, second), "{:?}", w.rtmp_events(second));
}

#[test]
fn a_closing_connection_whose_peer_never_reads_is_dropped_after_the_flush_deadline() {
    let mut w = World::new(1, EngineConfig::default());
    w.advance_to(10);
    let client = w.raw(0, Listener::Http);
    w.set_reading(client, false);
    w.send(
        client,
        b"GET /nothing/here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    w.run();
    // The 404 waits to be sent before closing; the peer never reads it.
    assert!(!w.is_closed(client));
    assert!(w.received(client).is_empty());
    w.advance_to(4_000);
    assert_eq!(w.engine(0).connection_count(), 1, "still flushing");
    let deadline = w.engine(0).poll_timeout().expect("a flush deadline");
    w.advance_to(deadline);
    assert!(w.is_closed(client), "dropped without waiting further");
    assert!(w.received(client).is_empty());
    assert_eq!(w.engine(0).connection_count(), 0);
}

#[test]
fn a_closing_connection_whose_peer_reads_gets_its_answer_then_the_close() {
    let mut w = World::new(1, EngineConfig::default());
    let client = w.raw(0, Listener::Http);
    w.send(
        client,
        b"GET /nothing/here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    w.run();
    assert!(w.received(client).starts_with(b"HTTP/1.1 404"));
    assert!(w.is_closed(client));
    assert_eq!(w.engine(0).connection_count(), 0);
}

#[test]
fn write_merging_holds_player_media_until_the_window_ends_then_sends_it_in_one_go() {
    // One player per engine, half of write_merge_players: half of the 60 ms window.
    let mut w = World::new(
        2,
        EngineConfig {
            write_merge_ms: 60,
            write_merge_players: 2,
            ..EngineConfig::default()
        },
    );
    let publisher = publisher(&mut w, 0, "cam");
    let seq = avc_sequence_header();
    send(
        &mut w,
        publisher,
        &[
            (message_type::VIDEO, 5000, seq),
            (message_type::VIDEO, 5000, video(true, 0x65, 5000)),
            (message_type::VIDEO, 5033, video(false, 0x41, 700)),
        ],
    );
    // Players on both engines: the one across engines gets its media merged too.
    let local = rtmp_player(&mut w, 0, "cam");
    let remote = rtmp_player(&mut w, 1, "cam");
    w.run();
    // The cached GOP went out at once (the start is never held); let any window end.
    assert!(
        w.rtmp_media(local).len() >= 3,
        "{:?}",
        w.rtmp_media(local).len()
    );
    w.advance(30);
    let before: Vec<usize> = [local, remote]
        .iter()
        .map(|&p| w.rtmp_media(p).len())
        .collect();

    // Two live frames 10 ms apart: nothing goes out before the window ends.
    w.advance(1);
    let opened = w.now();
    for (i, ts) in [5066u32, 5076].into_iter().enumerate() {
        send(
            &mut w,
            publisher,
            &[(message_type::VIDEO, ts, video(false, 0x41, 300 + i))],
        );
        // Time passes without reaching the window's end.
        w.advance(10);
    }
    for (i, &p) in [local, remote].iter().enumerate() {
        assert_eq!(w.rtmp_media(p).len(), before[i], "held during the window");
    }
    for e in 0..2 {
        assert_eq!(w.engine(e).poll_timeout(), Some(opened + 30), "engine {e}");
    }
    let at = opened + 30;
    w.advance_to(at);
    for (i, &p) in [local, remote].iter().enumerate() {
        let got = w.rtmp_media(p);
        assert_eq!(got.len(), before[i] + 2, "both frames after the window");
        let ts: Vec<u32> = got.iter().rev().take(2).map(|(_, t, _)| *t).collect();
        assert_eq!(ts[0] - ts[1], 10, "spacing kept");
    }
    for e in 0..2 {
        assert!(
            w.engine(e).poll_timeout().is_none_or(|t| t > at + 30),
            "no window open once flushed"
        );
    }
}

#[test]
fn with_kick_a_new_publisher_takes_over_on_either_engine_and_players_stay() {
    for new_engine in [0, 1] {
        let mut w = World::new(
            2,
            EngineConfig {
                publish_conflict: PublishConflict::Kick,
                ..EngineConfig::default()
            },
        );
        let old = publisher(&mut w, 0, "cam");
        let seq = avc_sequence_header();
        send(
            &mut w,
            old,
            &[
                (message_type::VIDEO, 0, seq.clone()),
                (message_type::VIDEO, 0, video(true, 0x65, 1000)),
            ],
        );
        let remote = rtmp_player(&mut w, 1, "cam");
        let local = rtmp_player(&mut w, 0, "cam");
        w.run();

        let new = publisher(&mut w, new_engine, "cam");
        assert!(
            publishing(&w, new),
            "newcomer on engine {new_engine} publishes: {:?}",
            w.rtmp_events(new)
        );
        assert!(
            w.is_closed(old),
            "the old publisher is disconnected (newcomer on engine {new_engine})"
        );
        // The kicked publisher's last words reach nobody; the newcomer's frames reach everyone.
        let stale = video(false, 0x41, 777);
        let _ = w
            .rtmp_session(old)
            .send_media(message_type::VIDEO, 40, &stale);
        let fresh_key = video(true, 0x65, 2000);
        send(
            &mut w,
            new,
            &[
                (message_type::VIDEO, 0, seq.clone()),
                (message_type::VIDEO, 0, fresh_key.clone()),
            ],
        );
        for p in [remote, local] {
            let bodies: Vec<Bytes> = w.rtmp_media(p).into_iter().map(|(_, _, b)| b).collect();
            assert!(
                bodies.contains(&fresh_key),
                "player {p:?} gets the newcomer's key frame (newcomer on engine {new_engine})"
            );
            assert!(
                !bodies.contains(&stale),
                "player {p:?} never gets the kicked publisher's frame"
            );
            assert!(
                !w.rtmp_events(p).contains(&ClientEvent::StreamEnded),
                "player {p:?} stays: {:?}",
                w.rtmp_events(p)
            );
            assert!(!w.is_closed(p));
        }
    }
}

#[test]
fn stats_count_a_player_on_another_engine_with_the_stream_of_its_publisher() {
    use rill_core::api::{lal::render_json, metrics::render_metrics, Query};
    let mut w = world();
    let publisher = publisher(&mut w, 0, "cam");
    send(
        &mut w,
        publisher,
        &[
            (message_type::VIDEO, 0, avc_sequence_header()),
            (message_type::AUDIO, 0, aac_sequence_header()),
            (message_type::VIDEO, 0, video(true, 0x65, 20_000)),
        ],
    );
    let remote = rtmp_player(&mut w, 1, "cam");
    w.run();
    w.advance_to(2_000);
    let snapshots = w.stats();
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
    let (engine, conn) = w.conn(remote);
    assert_eq!(engine, 1);
    assert_eq!(subs[0]["session_id"], format!("RTMPPUBSUB{conn}"));
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

#[test]
fn rtsp_players_over_tcp_and_udp_on_either_engine_get_an_rtmp_publish() {
    use rill_core::media::{FrameKind, TrackKind};
    use rill_core::rtsp::client::{ClientConfig, ClientEvent as RtspEvent, ClientSession};
    use rill_core::rtsp::server::TrackTransport;
    use rill_core::rtsp::transport::LowerTransport;

    let mut w = world();
    let publisher = publisher(&mut w, 0, "cam");
    send_configs(&mut w, publisher, 0);
    send(&mut w, publisher, &stream(0, 5, 25));
    let mut players = Vec::new();
    for engine in [0, 1] {
        for lower in [LowerTransport::Tcp, LowerTransport::Udp] {
            let config = ClientConfig {
                transport: lower,
                udp_port_base: 30_000,
                ..ClientConfig::new("rtsp://127.0.0.1/live/cam")
            };
            let random = w.random_bytes(64);
            let session = ClientSession::play(config, &random, w.now());
            players.push((w.rtsp(engine, session), format!("{lower:?} on {engine}")));
        }
    }
    w.run();
    send(&mut w, publisher, &stream(200, 25, 25));
    for (p, label) in players {
        assert_eq!(w.client_error(p), None, "{label}");
        let events = w.rtsp_events(p).to_vec();
        assert!(
            matches!(events.first(), Some(RtspEvent::Described { tracks }) if tracks.len() == 2),
            "{label}: {events:?}"
        );
        assert!(events.contains(&RtspEvent::Playing), "{label}");
        let video: Vec<bool> = events
            .iter()
            .filter_map(|e| match e {
                RtspEvent::Frame { frame, .. }
                    if frame.kind == FrameKind::Coded && frame.track() == TrackKind::Video =>
                {
                    Some(frame.key)
                }
                _ => None,
            })
            .collect();
        // The cached GOP (5 frames) and the 25 live ones.
        assert_eq!(video.len(), 30, "{label}: video frames");
        assert!(video[0], "{label}: a key frame first");
        let udp = matches!(
            w.rtsp_session(p).track_transport(0),
            Some(TrackTransport::Udp { .. })
        );
        assert_eq!(
            udp,
            label.starts_with("Udp"),
            "{label}: the transport asked for"
        );
    }
}

#[test]
fn a_recording_is_written_once_by_the_publishers_engine_and_closed_when_it_leaves() {
    let mut w = World::new(
        2,
        rill_core::config::Config::from_toml("[record]\nflv = true\nout_path = \"rec\"\n")
            .expect("config")
            .engine_config(),
    );
    let publisher = publisher(&mut w, 1, "cam");
    let _player = rtmp_player(&mut w, 0, "cam");
    send_configs(&mut w, publisher, 0);
    send(&mut w, publisher, &stream(0, 30, 25));
    let paths: Vec<String> = w.file_paths().map(str::to_owned).collect();
    assert_eq!(paths.len(), 1, "one recording: {paths:?}");
    let path = &paths[0];
    assert!(
        path.starts_with("rec/live/cam") && path.ends_with(".flv"),
        "{path}"
    );
    assert!(!w.is_file_closed(path));
    w.hang_up(publisher);
    assert!(w.is_file_closed(path), "closed when the publisher leaves");
    let mut demuxer = rill_core::flv::FlvDemuxer::default();
    demuxer.push(w.file(path).expect("the recording"));
    let mut video = 0;
    while let Some(tag) = demuxer.poll_tag().expect("valid FLV") {
        video += usize::from(tag.tag_type == rill_core::flv::TagType::Video);
    }
    assert_eq!(video, 1 + 30, "the configuration and every frame");
}

/// A stream whose audio legacy FLV cannot carry (Opus from RTSP) is announced as video only in
/// the HTTP-FLV header (it said audio + video, 0x05, and players waited for audio that never
/// came); a player asking for Enhanced RTMP tags gets the Opus audio as FourCC `Opus`.
#[test]
fn http_flv_header_announces_only_the_tracks_it_carries() {
    use rill_core::flv::TagType;
    use rill_core::media::{Codec, Frame, FrameKind};
    use rill_core::rtp::{CodecParams, TrackParams};
    use rill_core::rtsp::client::{ClientConfig, ClientSession};

    let mut w = world();
    let tracks = vec![
        TrackParams {
            payload_type: 96,
            clock_rate: 90_000,
            channels: 1,
            codec: CodecParams::H264 {
                sps: vec![Bytes::from_static(&[
                    0x67, 0x42, 0xC0, 0x0A, 0xDA, 0x11, 0x10, 0x80,
                ])],
                pps: vec![Bytes::from_static(&[0x68, 0xCE, 0x38, 0x80])],
            },
        },
        TrackParams {
            payload_type: 97,
            clock_rate: 48_000,
            channels: 2,
            codec: CodecParams::Opus,
        },
    ];
    let random = w.random_bytes(64);
    let session = ClientSession::record(
        ClientConfig::new("rtsp://127.0.0.1/live/opus"),
        tracks,
        &random,
        w.now(),
    )
    .expect("record session");
    let publisher = w.rtsp(0, session);
    w.run();
    let player = flv_player(&mut w, 0, "opus");
    let enhanced = w.raw(0, Listener::Http);
    w.send(
        enhanced,
        b"GET /live/opus.flv?enhanced=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    w.run();
    for i in 0..10i64 {
        let key = i == 0;
        let mut nal = vec![0, 0, 0, 5, if key { 0x65 } else { 0x41 }];
        nal.extend_from_slice(&[0x88; 4]);
        let frames = [
            (0, Codec::H264, Bytes::from(nal), key),
            (
                1,
                Codec::Opus,
                Bytes::from_static(&[0xFC, 0xFF, 0xFE]),
                true,
            ),
        ];
        for (track, codec, payload, key) in frames {
            let f = Frame {
                codec,
                kind: FrameKind::Coded,
                dts: i * 40,
                pts: i * 40,
                key,
                payload,
            };
            let now = w.now();
            w.rtsp_session(publisher)
                .send_frame(track, &f, now)
                .expect("send");
        }
        w.advance(40);
    }
    w.run();
    let (head, body) = http_response(&w, player);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(&body[..3], b"FLV");
    assert_eq!(body[4], 0x01, "FLV header flags: video only");
    let tags = flv_tags(&w, player);
    assert!(!video_tags(&tags).is_empty(), "video plays");
    assert!(tags.iter().all(|t| t.tag_type != TagType::Audio));

    // A player of Enhanced RTMP tags gets Opus (FourCC `Opus`): the OpusHead, then the frames.
    let (_, body) = http_response(&w, enhanced);
    assert_eq!(body[4], 0x05, "FLV header flags: audio and video");
    let audio: Vec<Bytes> = flv_tags(&w, enhanced)
        .into_iter()
        .filter(|t| t.tag_type == TagType::Audio)
        .map(|t| t.body)
        .collect();
    assert!(audio.len() >= 9, "{} audio tags", audio.len());
    assert_eq!(&audio[0][..5], b"\x90Opus");
    assert_eq!(&audio[0][5..13], b"OpusHead");
    assert_eq!(&audio[1][..], b"\x91Opus\xFC\xFF\xFE");
}

/// HEVC reaches each FLV player in the form it reads: Enhanced RTMP (FourCC `hvc1`) to an RTMP
/// player whose connect listed `fourCcList` and to HTTP-FLV asking `enhanced=1`; legacy codec
/// id 12 to the others (ffmpeg 5.1 and older flv.js saw "Video codec (1) is not implemented"
/// when an Enhanced publisher's tags went to everyone).
#[test]
fn hevc_goes_legacy_or_enhanced_as_each_player_reads() {
    use rill_core::media::{Codec, Frame, FrameKind};
    use rill_core::rtmp::client::ClientConfig as RtmpConfig;

    const HEVC_CONFIG: &[u8] = include_bytes!("fixtures/hevc_config.bin");
    const HEVC_KEYFRAME: &[u8] = include_bytes!("fixtures/hevc_keyframe.bin");
    let mut w = world();
    let publisher = publisher(&mut w, 0, "hevc");
    // The publisher sends Enhanced RTMP tags, as ffmpeg 6.1+ and OBS do.
    // Two key frames: an FLV reader sees a tag whole once the next one begins.
    let tags: Vec<(u8, u32, Bytes)> = [
        (FrameKind::Config, HEVC_CONFIG, 0),
        (FrameKind::Coded, HEVC_KEYFRAME, 0),
        (FrameKind::Coded, HEVC_KEYFRAME, 40),
    ]
    .into_iter()
    .map(|(kind, payload, dts)| {
        let f = Frame {
            codec: Codec::H265,
            kind,
            dts,
            pts: dts,
            key: true,
            payload: Bytes::from_static(payload),
        };
        let body = rill_core::flv::video_tag_body(&f, rill_core::flv::VideoTagStyle::Enhanced)
            .expect("enhanced tag");
        (message_type::VIDEO, dts as u32, body)
    })
    .collect();
    send(&mut w, publisher, &tags[..2]);
    let mut config = RtmpConfig::new("live", "rtmp://127.0.0.1/live");
    config.four_cc_list = vec!["hvc1".into(), "av01".into()];
    let modern = w.rtmp_with(0, config);
    w.rtmp_session(modern).play("hevc");
    let legacy = rtmp_player(&mut w, 0, "hevc");
    let flv_legacy = flv_player(&mut w, 0, "hevc");
    let flv_modern = w.raw(0, Listener::Http);
    w.send(
        flv_modern,
        b"GET /live/hevc.flv?enhanced=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    w.run();
    send(&mut w, publisher, &tags[2..]);
    let first_bytes = |bodies: Vec<Bytes>| -> Vec<u8> { bodies.iter().map(|b| b[0]).collect() };
    let rtmp_video = |w: &World, c| {
        first_bytes(
            w.rtmp_media(c)
                .into_iter()
                .filter(|(t, _, _)| *t == message_type::VIDEO)
                .map(|(_, _, b)| b)
                .collect(),
        )
    };
    let flv_video = |w: &World, c| {
        first_bytes(
            video_tags(&flv_tags(w, c))
                .into_iter()
                .map(|(_, b)| b)
                .collect(),
        )
    };
    // Legacy: key frame, codec 12 (0x1C); Enhanced: ex-header bit, key frame, packet type
    // SequenceStart (0x90) then CodedFrames (0x91) or CodedFramesX (0x93).
    for (label, got) in [
        ("rtmp legacy", rtmp_video(&w, legacy)),
        ("http-flv legacy", flv_video(&w, flv_legacy)),
    ] {
        assert!(got.len() >= 2, "{label}: {got:x?}");
        assert_eq!(got[..2], [0x1C, 0x1C], "{label}");
    }
    for (label, got) in [
        ("rtmp fourCcList", rtmp_video(&w, modern)),
        ("http-flv enhanced=1", flv_video(&w, flv_modern)),
    ] {
        assert!(got.len() >= 2, "{label}");
        assert_eq!(got[0], 0x90, "{label}");
        assert!(got[1] & 0xF0 == 0x90, "{label}: {got:x?}");
    }
}

/// AV1 published over RTSP (AOM's RTP payload format) reaches Enhanced FLV players on both
/// engines: first the av1C the depacketizer rebuilt from the sequence header (the record the
/// publisher's encoder wrote), then every temporal unit, the first one a key frame.
#[test]
fn rtsp_published_av1_reaches_flv_players_with_its_av1c() {
    use rill_core::media::{Codec, Frame, FrameKind};
    use rill_core::rtp::{CodecParams, TrackParams};
    use rill_core::rtsp::client::{ClientConfig, ClientSession};

    // The av1C of a 320x176 libaom stream, its sequence header OBU after the 4 fixed bytes.
    const AV1C: &[u8] = &[
        0x81, 0x20, 0x00, 0x00, 0x0a, 0x0d, 0x20, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xbc, 0xda, 0xf9,
        0x20, 0x21, 0xa0, 0x04,
    ];
    let mut w = world();
    let tracks = vec![TrackParams {
        payload_type: 96,
        clock_rate: 90_000,
        channels: 1,
        codec: CodecParams::Av1 {
            config: Bytes::from_static(AV1C),
        },
    }];
    let random = w.random_bytes(64);
    let session = ClientSession::record(
        ClientConfig::new("rtsp://127.0.0.1/live/av1"),
        tracks,
        &random,
        w.now(),
    )
    .expect("record session");
    let publisher = w.rtsp(0, session);
    w.run();
    let players: Vec<_> = (0..2)
        .map(|engine| {
            let c = w.raw(engine, Listener::Http);
            w.send(
                c,
                b"GET /live/av1.flv?enhanced=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            );
            c
        })
        .collect();
    w.run();
    for i in 0..20i64 {
        // A frame OBU (with its size field): show_existing_frame 0, frame_type KEY_FRAME (0)
        // first, INTER_FRAME (1) after; 1500 bytes, so fragmented.
        let first = if i == 0 { 0x10 } else { 0x30 };
        let mut obu = vec![0x32, 0xDC, 0x0B, first];
        obu.extend_from_slice(&[0x55; 1499]);
        let f = Frame {
            codec: Codec::Av1,
            kind: FrameKind::Coded,
            dts: i * 40,
            pts: i * 40,
            key: i == 0,
            payload: Bytes::from(obu),
        };
        let now = w.now();
        w.rtsp_session(publisher)
            .send_frame(0, &f, now)
            .expect("send");
        w.advance(40);
    }
    w.run();
    for p in players {
        let video = video_tags(&flv_tags(&w, p));
        let (_, config) = &video[0];
        // Enhanced header, key frame, PacketType SequenceStart (0), FourCC av01, the av1C.
        assert_eq!(config[0], 0x90, "{:02x?}", &config[..8]);
        assert_eq!(&config[1..5], b"av01");
        assert_eq!(&config[5..], AV1C);
        // Every unit (the last one ends at the stream's end), the first a key frame.
        assert!(video.len() >= 20, "{} video tags", video.len());
        assert_eq!(video[1].1[0] >> 4 & 7, 1, "key frame");
        assert!(video[2..].iter().all(|(_, b)| b[0] >> 4 & 7 == 2));
    }
}
