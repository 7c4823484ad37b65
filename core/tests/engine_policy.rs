//! The server's policies (publisher conflicts, grace period, waits, deadlines, answers to bad
//! paths, the statistics API) checked on the virtual clock of [`rill_core::sim::World`], with
//! the configuration the binary would read from `rill.toml` and two engines as two workers.
//! These were end-to-end tests with ffmpeg and real time; what needs real clients or real
//! sockets stays in `tests/e2e`.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use rill_core::config::Config;
use rill_core::engine::{EngineConfig, Listener, Role};
use rill_core::rtmp::chunk::write_fmt0_header;
use rill_core::rtmp::client::ClientEvent;
use rill_core::rtmp::message_type;
use rill_core::sim::{ClientId, World};
use rill_core::ts::{TsDemuxer, AUDIO_PID, VIDEO_PID};
use serde_json::Value;

/// Two engines with the settings of `toml` (a `rill.toml` document).
fn world(toml: &str) -> World {
    World::new(2, config(toml))
}

fn config(toml: &str) -> EngineConfig {
    Config::from_toml(toml)
        .expect("valid config")
        .engine_config()
}

/// Sends `frames` frames of 25 fps from `start_ms` (a key frame every 25), advancing the clock
/// in real time as an encoder would.
fn publish_live(w: &mut World, publisher: ClientId, start_ms: u32, frames: u32) {
    for (i, m) in stream(start_ms, frames, 25).into_iter().enumerate() {
        send(w, publisher, &[m]);
        if i % 2 == 1 {
            w.advance(40);
        }
    }
}

/// Configs then `frames` frames from `start_ms`.
fn publish_configs_and_live(w: &mut World, publisher: ClientId, start_ms: u32, frames: u32) {
    send_configs(w, publisher, start_ms);
    publish_live(w, publisher, start_ms, frames);
}

fn publish_sessions(w: &World, stream: &str) -> usize {
    w.sessions_started()
        .iter()
        .filter(|(_, r)| r.role == Role::Publish && r.stream == stream)
        .count()
}

/// Asserts what a player that stayed through a change of publisher got: no disconnect, every
/// one of `frames` video frames, key frames from both publishers, timestamps that never go back.
fn assert_continuous_flv(w: &World, player: ClientId, label: &str, frames: usize) {
    assert!(!w.is_closed(player), "{label}: the player stays");
    let tags = flv_tags(w, player);
    let video = video_tags(&tags);
    let times: Vec<u32> = video
        .iter()
        .filter(|(_, b)| b.get(1) == Some(&1))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(times.len(), frames, "{label}: video frames");
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "{label}: timestamps stay monotonic: {times:?}"
    );
    let keys = video.iter().filter(|(_, b)| is_key_frame(b)).count();
    assert!(
        keys >= 2,
        "{label}: key frames from both publishers: {keys}"
    );
}

#[test]
fn second_publisher_is_refused_and_the_first_continues() {
    for second_engine in [0, 1] {
        let mut w = world("");
        let first = publisher(&mut w, 0, "dup");
        publish_configs_and_live(&mut w, first, 0, 30);
        let second = publisher(&mut w, second_engine, "dup");
        assert!(refused(&w, second), "{:?}", w.rtmp_events(second));
        assert!(w.is_closed(second), "the second publisher is turned away");
        let reason = &w.session_ended(second).expect("its session ended").reason;
        assert!(reason.contains("already"), "refusal reason: {reason}");
        assert!(
            !w.is_closed(first) && w.session_ended(first).is_none(),
            "the first publisher goes on"
        );
        // The first stream still plays, from a key frame, on either engine.
        let players = [flv_player(&mut w, 0, "dup"), flv_player(&mut w, 1, "dup")];
        publish_live(&mut w, first, 1200, 10);
        for p in players {
            let video = video_tags(&flv_tags(&w, p));
            assert!(video.len() >= 10, "{} video tags", video.len());
            assert_eq!(video[0].1, avc_sequence_header(), "the config first");
            assert!(is_key_frame(&video[1].1), "then a key frame");
        }
    }
}

#[test]
fn publisher_reconnecting_within_grace_keeps_its_players() {
    let mut w = world("");
    let grace = config("").hub.publisher_grace_ms;
    let first = publisher(&mut w, 0, "grace");
    publish_configs_and_live(&mut w, first, 0, 40);
    let players = [
        flv_player(&mut w, 1, "grace"),
        flv_player(&mut w, 0, "grace"),
    ];
    w.run();
    publish_live(&mut w, first, 1600, 50);
    // The publisher dies without a goodbye; another one takes the stream up within the grace
    // period, its timestamps starting over as a restarted encoder's do.
    w.hang_up(first);
    w.advance(grace - 1000);
    let second = publisher(&mut w, 1, "grace");
    assert!(publishing(&w, second), "{:?}", w.rtmp_events(second));
    publish_configs_and_live(&mut w, second, 0, 50);
    // The cached GOP (frames 25..40), the rest of the first publisher's, all of the second's.
    for (p, label) in players.into_iter().zip(["other engine", "same engine"]) {
        assert_continuous_flv(&w, p, label, 15 + 50 + 50);
    }
    assert_eq!(
        publish_sessions(&w, "live/grace"),
        2,
        "two publish sessions"
    );
}

#[test]
fn with_publish_conflict_kick_a_second_publisher_takes_over_and_http_flv_players_stay() {
    for new_engine in [0, 1] {
        let mut w = world("[hub]\npublish_conflict = \"kick\"\n");
        let first = publisher(&mut w, 0, "takeover");
        publish_configs_and_live(&mut w, first, 0, 40);
        let players = [
            flv_player(&mut w, 1, "takeover"),
            flv_player(&mut w, 0, "takeover"),
        ];
        w.run();
        publish_live(&mut w, first, 1600, 50);
        let second = publisher(&mut w, new_engine, "takeover");
        assert!(publishing(&w, second), "{:?}", w.rtmp_events(second));
        assert!(w.is_closed(first), "the first publisher is disconnected");
        let reason = &w.session_ended(first).expect("its session ended").reason;
        assert_eq!(reason, "kicked: a new publisher took over the stream");
        publish_configs_and_live(&mut w, second, 0, 50);
        assert!(!w.is_closed(second), "the newcomer keeps publishing");
        for (p, label) in players.into_iter().zip(["other engine", "same engine"]) {
            let label = format!("{label}, newcomer on {new_engine}");
            assert_continuous_flv(&w, p, &label, 15 + 50 + 50);
        }
    }
}

#[test]
fn player_of_a_stream_that_never_starts_gets_404_after_the_wait() {
    let mut w = world("[hub]\nplay_wait_timeout_ms = 800\n");
    let players = [flv_player(&mut w, 0, "none"), flv_player(&mut w, 1, "none")];
    w.advance(799);
    for p in players {
        assert!(w.received(p).is_empty(), "the player waits");
    }
    w.advance(1);
    for p in players {
        let (head, _) = http_response(&w, p);
        assert!(
            head.starts_with("HTTP/1.1 404"),
            "expected 404, got {head:?}"
        );
    }
}

#[test]
fn late_player_starts_at_a_key_frame_at_once() {
    let mut w = world("");
    let publisher = publisher(&mut w, 0, "late");
    // Join mid-GOP, well after the first key frame: 3.5 s at 25 fps, a key frame every second.
    publish_configs_and_live(&mut w, publisher, 0, 88);
    for engine in [0, 1] {
        let flv = flv_player(&mut w, engine, "late");
        let rtmp = rtmp_player(&mut w, engine, "late");
        // The GOP cache gives the player a whole GOP at once: no time passes.
        w.run();
        let flv_video: Vec<Bytes> = video_tags(&flv_tags(&w, flv))
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        let rtmp_video: Vec<Bytes> = w
            .rtmp_media(rtmp)
            .into_iter()
            .filter(|(t, _, _)| *t == message_type::VIDEO)
            .map(|(_, _, b)| b)
            .collect();
        for (label, video) in [("HTTP-FLV", flv_video), ("RTMP", rtmp_video)] {
            assert_eq!(video[0], avc_sequence_header(), "{label}: the config first");
            assert!(is_key_frame(&video[1]), "{label}: then a key frame");
            // Frames 75..88 of the GOP that started at frame 75.
            assert_eq!(
                video.len(),
                1 + 13,
                "{label} on engine {engine}: the whole GOP"
            );
        }
    }
}

#[test]
fn silent_connections_are_closed_at_the_handshake_deadline_while_publishers_connect() {
    let mut w = world("[limits]\nhandshake_timeout_ms = 700\nhttp_head_timeout_ms = 700\n");
    let idle: Vec<ClientId> = (0..50)
        .map(|i| {
            let listener = if i % 2 == 0 {
                Listener::Rtmp
            } else {
                Listener::Http
            };
            w.raw(i % 2, listener)
        })
        .collect();
    // A real publisher is not held up by the idle crowd.
    w.advance(100);
    let publisher = publisher(&mut w, 0, "busy");
    assert!(publishing(&w, publisher), "{:?}", w.rtmp_events(publisher));
    let player = flv_player(&mut w, 1, "busy");
    publish_configs_and_live(&mut w, publisher, 0, 50);
    for c in &idle {
        assert!(
            w.is_closed(*c),
            "idle connection {c:?} closed by the deadline"
        );
        assert!(
            w.received(*c).is_empty(),
            "{c:?} got data instead of a close"
        );
        let ended = w.session_ended(*c).expect("its end is reported");
        assert_eq!(ended.duration_ms, 700, "closed at the deadline: {ended:?}");
    }
    assert!(!w.is_closed(publisher) && !w.is_closed(player));
    assert_eq!(video_tags(&flv_tags(&w, player)).len(), 51);
}

/// `GET path` from a fresh HTTP client on `engine`: checks status 200 and the CORS header,
/// returns the body.
fn api_get(w: &mut World, engine: usize, path: &str) -> String {
    let c = w.raw(engine, Listener::Http);
    w.send(
        c,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    w.run();
    assert!(w.is_closed(c), "{path}: answered and closed");
    let (head, body) = http_response(w, c);
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{path}: no CORS header: {head}"
    );
    String::from_utf8(body.to_vec()).expect("UTF-8 body")
}

fn api_json(w: &mut World, engine: usize, path: &str) -> Value {
    let body = api_get(w, engine, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: bad JSON ({e}): {body}"))
}

#[test]
fn stat_api_and_metrics_describe_a_stream_and_its_player_across_engines() {
    let mut w = world("");
    // Before anything is published: no groups.
    let v = api_json(&mut w, 0, "/api/stat/all_group");
    assert_eq!(v["error_code"], 0, "{v}");
    assert_eq!(v["data"]["groups"].as_array().map(Vec::len), Some(0), "{v}");

    // The publisher on engine 0, its HTTP-FLV player on engine 1, the requests on either.
    let publisher = publisher(&mut w, 0, "apitest");
    w.advance(500);
    let player = flv_player(&mut w, 1, "apitest");
    publish_configs_and_live(&mut w, publisher, 0, 50);
    assert!(w.received(player).len() > 10_000);

    for engine in [0, 1] {
        let v = api_json(&mut w, engine, "/api/stat/group?stream_name=apitest");
        assert_eq!(v["error_code"], 0, "{v}");
        assert_eq!(v["desp"], "succ");
        let g = &v["data"];
        assert_eq!(g["stream_name"], "apitest", "{g}");
        assert_eq!(g["app_name"], "live");
        assert_eq!(g["video_codec"], "H264");
        assert_eq!(g["audio_codec"], "AAC");
        assert_eq!(g["video_width"].as_u64(), Some(64), "{g}");
        assert_eq!(g["video_height"].as_u64(), Some(64), "{g}");
        let p = &g["pub"];
        assert_eq!(p["protocol"], "RTMP", "{p}");
        assert_eq!(p["base_type"], "PUB");
        let (_, conn) = w.conn(publisher);
        assert_eq!(p["session_id"], format!("RTMPPUBSUB{conn}"));
        assert_eq!(p["remote_addr"], w.peer(publisher).to_string());
        assert!(p["read_bytes_sum"].as_u64() > Some(10_000), "{p}");
        assert!(p["read_bitrate_kbits"].as_u64() > Some(0), "{p}");
        let subs = g["subs"].as_array().expect("subs");
        assert_eq!(subs.len(), 1, "{g}");
        let sub = &subs[0];
        assert_eq!(sub["protocol"], "FLV", "lal's name for HTTP-FLV: {sub}");
        assert_eq!(sub["base_type"], "SUB");
        assert_eq!(sub["remote_addr"], w.peer(player).to_string());
        assert!(sub["wrote_bytes_sum"].as_u64() > Some(10_000), "{sub}");
        assert!(
            sub["read_bytes_sum"].as_u64() > Some(0),
            "its request: {sub}"
        );
        assert!(g["pull"].is_object(), "lal always has a pull object: {g}");

        let all = api_json(&mut w, engine, "/api/stat/all_group");
        assert_eq!(all["error_code"], 0);
        let groups = all["data"]["groups"].as_array().expect("groups");
        assert_eq!(groups.len(), 1, "{all}");
        assert_eq!(groups[0]["stream_name"], "apitest");
    }

    let nope = api_json(&mut w, 1, "/api/stat/group?stream_name=nope");
    assert_eq!(nope["error_code"], 1001, "{nope}");
    assert_eq!(nope["desp"], "group not found");
    let missing = api_json(&mut w, 1, "/api/stat/group");
    assert_eq!(missing["error_code"], 1002, "{missing}");

    let info = api_json(&mut w, 0, "/api/stat/lal_info");
    assert_eq!(info["error_code"], 0, "{info}");
    for field in [
        "server_id",
        "bin_info",
        "lal_version",
        "api_version",
        "start_time",
    ] {
        assert!(
            info["data"][field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}: {info}"
        );
    }

    let metrics = api_get(&mut w, 1, "/metrics");
    let lines: Vec<&str> = metrics.lines().collect();
    for expected in [
        "rill_streams 1",
        "rill_publishers{protocol=\"rtmp\"} 1",
        "rill_players{protocol=\"http-flv\"} 1",
        "rill_players{protocol=\"rtmp\"} 0",
        "# TYPE rill_bytes_in_total counter",
    ] {
        assert!(lines.contains(&expected), "{expected:?} not in:\n{metrics}");
    }
    let value = |name: &str| -> u64 {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in:\n{metrics}"))
    };
    assert!(value("rill_bytes_in_total") > 10_000, "{metrics}");
    assert!(value("rill_bytes_out_total") > 10_000, "{metrics}");
    // The publisher, the player and this request's connection.
    assert_eq!(value("rill_connections"), 3, "{metrics}");

    // Once the player leaves, it is no longer counted.
    w.hang_up(player);
    let v = api_json(&mut w, 0, "/api/stat/group?stream_name=apitest");
    assert_eq!(v["data"]["subs"].as_array().map(Vec::len), Some(0), "{v}");
}

/// The coded video frames among an HTTP-FLV player's tags, and whether its body ends exactly
/// after the last tag's PreviousTagSize (nothing partial, nothing missing).
fn flv_frames_and_clean_end(w: &World, player: ClientId) -> (Vec<(u32, Bytes)>, bool) {
    let (_, body) = http_response(w, player);
    let tags = flv_tags(w, player);
    let frames = video_tags(&tags)
        .into_iter()
        .filter(|(_, b)| b.get(1) == Some(&1))
        .collect();
    // The file header and PreviousTagSize0, then each tag with its PreviousTagSize.
    let whole: usize = 13 + tags.iter().map(|t| 11 + t.body.len() + 4).sum::<usize>();
    let last_size = tags.last().map(|t| 11 + t.body.len() as u32);
    let clean = body.len() == whole && last_size.is_some_and(|n| body.ends_with(&n.to_be_bytes()));
    (frames, clean)
}

/// Players waiting on both engines before the publisher starts; returns (HTTP-FLV, RTMP) pairs.
fn waiting_players(w: &mut World, stream: &str) -> Vec<(ClientId, ClientId)> {
    let players = (0..2)
        .map(|e| (flv_player(w, e, stream), rtmp_player(w, e, stream)))
        .collect();
    w.run();
    players
}

/// Checks that every player got exactly `sent` (timestamps rebased to the first) and that
/// its stream ended cleanly: the HTTP-FLV response closed after a whole tag, the RTMP player
/// told the stream ended.
fn assert_complete_and_ended(w: &World, players: &[(ClientId, ClientId)], sent: &[(u32, Bytes)]) {
    let base = sent[0].0;
    let sent: Vec<(u32, Bytes)> = sent.iter().map(|(t, b)| (t - base, b.clone())).collect();
    for (e, &(flv, rtmp)) in players.iter().enumerate() {
        let (frames, clean) = flv_frames_and_clean_end(w, flv);
        assert_eq!(frames, sent, "HTTP-FLV player on engine {e}: every frame");
        assert!(
            w.is_closed(flv) && clean,
            "HTTP-FLV player on engine {e}: clean end"
        );
        let got: Vec<(u32, Bytes)> = w
            .rtmp_media(rtmp)
            .into_iter()
            .filter(|(t, _, b)| *t == message_type::VIDEO && b.get(1) == Some(&1))
            .map(|(_, ts, b)| (ts, b))
            .collect();
        assert_eq!(got, sent, "RTMP player on engine {e}: every frame");
        assert!(
            w.rtmp_events(rtmp).contains(&ClientEvent::StreamEnded),
            "RTMP player on engine {e}: told the end: {:?}",
            w.rtmp_events(rtmp)
        );
    }
}

/// The coded video frames of `messages`: (timestamp, body).
fn video_frames(messages: &[(u8, u32, Bytes)]) -> Vec<(u32, Bytes)> {
    messages
        .iter()
        .filter(|(t, _, b)| *t == message_type::VIDEO && b.get(1) == Some(&1))
        .map(|(_, ts, b)| (*ts, b.clone()))
        .collect()
}

#[test]
fn publisher_killed_mid_stream_ends_its_players_cleanly_after_the_grace_period() {
    let grace = 300;
    let mut w = world(&format!("[hub]\npublisher_grace_ms = {grace}\n"));
    let players = waiting_players(&mut w, "victim");
    let publisher = publisher(&mut w, 0, "victim");
    send_configs(&mut w, publisher, 1000);
    let media = stream(1000, 75, 25);
    for pair in media.chunks(2) {
        send(&mut w, publisher, pair);
        w.advance(40);
    }
    // Half of a video message, then the socket closes: a crash as the server sees it.
    let mut half = BytesMut::new();
    let stream_id = w.rtmp_session(publisher).stream_id();
    assert!(write_fmt0_header(
        7,
        4000,
        5000,
        message_type::VIDEO,
        stream_id,
        &mut half
    ));
    half.extend_from_slice(&[0x27; 100]);
    w.send(publisher, &half);
    w.run();
    w.hang_up(publisher);
    w.advance(grace - 1);
    for &(flv, rtmp) in &players {
        assert!(
            !w.is_closed(flv),
            "the HTTP-FLV player waits out the grace period"
        );
        assert!(!w.rtmp_events(rtmp).contains(&ClientEvent::StreamEnded));
    }
    w.advance(1);
    assert_complete_and_ended(&w, &players, &video_frames(&media));
}

#[test]
fn http_flv_stream_ends_with_the_last_previous_tag_size() {
    let grace = 300;
    let mut w = world(&format!("[hub]\npublisher_grace_ms = {grace}\n"));
    let players = waiting_players(&mut w, "trailer");
    let publisher = publisher(&mut w, 0, "trailer");
    let media = stream(0, 25, 25);
    send_configs(&mut w, publisher, 0);
    send(&mut w, publisher, &media);
    // A polite end: FCUnpublish, closeStream, deleteStream, then the socket closes.
    w.rtmp_session(publisher).close();
    w.run();
    w.hang_up(publisher);
    w.advance(grace);
    assert_complete_and_ended(&w, &players, &video_frames(&media));
}

#[test]
fn unknown_streams_and_bad_paths_get_404_and_400() {
    let mut w = world("[hls]\nfragment_ms = 1000\nplaylist_len = 3\n");
    let status = |w: &mut World, engine: usize, path: &str| {
        let c = w.raw(engine, Listener::Http);
        w.send(
            c,
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
        );
        w.run();
        http_response(w, c).0
    };
    for engine in [0, 1] {
        for path in [
            "/live/nope.m3u8",
            "/live/nope/record.m3u8",
            "/live/nope/0.ts",
            "/live/nope/x.ts",
            "/live/a/b/c.m3u8",
        ] {
            let head = status(&mut w, engine, path);
            assert!(head.starts_with("HTTP/1.1 404 "), "{path}: {head}");
        }
        for path in ["/live/../x.m3u8", "/live/%2e%2e/0.ts", "/live//x.m3u8"] {
            let head = status(&mut w, engine, path);
            assert!(head.starts_with("HTTP/1.1 400 "), "{path}: {head}");
        }
    }
}

#[test]
fn a_stalled_player_is_dropped_and_the_reading_one_loses_nothing() {
    let mut w =
        world("[hub]\nplayer_queue_soft_bytes = 524288\nplayer_queue_hard_bytes = 2097152\n");
    let reader = flv_player(&mut w, 1, "flood");
    let stalled = flv_player(&mut w, 1, "flood");
    w.run();
    // The stalled player asked for the stream, then never reads again.
    w.set_reading(stalled, false);
    let publisher = publisher(&mut w, 0, "flood");
    send(
        &mut w,
        publisher,
        &[(message_type::VIDEO, 0, avc_sequence_header())],
    );
    // Video only (nothing waits for audio to interleave with), about 4 MB: twice the hard limit.
    let mut sent = Vec::new();
    for i in 0..200u32 {
        let body = video(i % 25 == 0, if i % 25 == 0 { 0x65 } else { 0x41 }, 20_000);
        sent.push((i * 40, body.clone()));
        send(&mut w, publisher, &[(message_type::VIDEO, i * 40, body)]);
        w.advance(40);
    }
    assert!(w.is_closed(stalled), "the stalled player is dropped");
    let reason = &w
        .session_ended(stalled)
        .expect("its end is reported")
        .reason;
    assert!(reason.starts_with("player too slow"), "{reason}");
    assert!(!w.is_closed(reader) && !w.is_closed(publisher));
    let got: Vec<(u32, Bytes)> = video_tags(&flv_tags(&w, reader))
        .into_iter()
        .filter(|(_, b)| b.get(1) == Some(&1))
        .collect();
    let summary = |v: &[(u32, Bytes)]| v.iter().map(|(t, b)| (*t, b.len())).collect::<Vec<_>>();
    // Every frame, the last one included: its tag is completed with its PreviousTagSize at
    // once, not only when a next tag comes.
    assert_eq!(
        summary(&got),
        summary(&sent),
        "the reading player got every frame"
    );
    assert!(got == sent, "the reading player got every frame intact");
}

/// The PIDs of the elementary streams an HTTP-TS player's PMT announces, and how many PES
/// packets came on each.
fn ts_streams(w: &World, player: ClientId) -> Vec<(u16, usize)> {
    let (head, body) = http_response(w, player);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut demuxer = TsDemuxer::new(1 << 20);
    demuxer.push(body).expect("valid TS");
    demuxer.flush().expect("valid TS");
    let mut pes = Vec::new();
    while let Some(p) = demuxer.poll_pes() {
        pes.push(p.pid);
    }
    demuxer
        .streams()
        .iter()
        .map(|s| (s.pid, pes.iter().filter(|&&p| p == s.pid).count()))
        .collect()
}

#[test]
fn without_the_option_a_video_only_publish_has_no_audio() {
    for on in [false, true] {
        let mut w = world(&format!(
            "[hub]\nsilent_audio = {on}\nsilent_audio_wait_ms = 300\npublisher_grace_ms = 0\n"
        ));
        let flv = flv_player(&mut w, 1, "n");
        let ts = w.raw(0, Listener::Http);
        w.send(ts, b"GET /live/n.ts HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        w.run();
        let publisher = publisher(&mut w, 0, "n");
        send(
            &mut w,
            publisher,
            &[(message_type::VIDEO, 0, avc_sequence_header())],
        );
        // Two seconds of video alone.
        for i in 0..50u32 {
            let key = i % 25 == 0;
            let body = video(key, if key { 0x65 } else { 0x41 }, 300);
            send(&mut w, publisher, &[(message_type::VIDEO, i * 40, body)]);
            w.advance(40);
        }
        w.hang_up(publisher);
        w.advance(1);
        assert!(w.is_closed(flv) && w.is_closed(ts), "the stream ended");
        let tags = flv_tags(&w, flv);
        let audio = tags
            .iter()
            .filter(|t| t.tag_type == rill_core::flv::TagType::Audio)
            .count();
        assert!(video_tags(&tags).len() > 50, "silent_audio = {on}: video");
        let streams = ts_streams(&w, ts);
        let on_pid = |pid| streams.iter().find(|(p, _)| *p == pid).map(|(_, n)| *n);
        assert_eq!(on_pid(VIDEO_PID), Some(50), "silent_audio = {on}");
        if on {
            assert!(audio > 50, "the option adds audio to FLV: {audio}");
            assert!(on_pid(AUDIO_PID) > Some(0), "and to TS: {streams:?}");
        } else {
            assert_eq!(audio, 0, "no audio in FLV without the option");
            assert_eq!(
                on_pid(AUDIO_PID),
                None,
                "no audio in the TS PMT: {streams:?}"
            );
        }
    }
}

/// Issue 21 item 3, on the virtual clock: a player that stops reading a low-bitrate stream
/// (its byte bounds would take tens of minutes to reach) skips to the newest key frame once
/// `player_lag_soft_ms` (5 s by default) of media is queued, counted in the stats and
/// `/metrics`, and is disconnected once `player_lag_hard_ms` (20 s) of media went by without it
/// taking anything; the reading player and the publisher never notice.
#[test]
fn a_stalled_player_of_a_low_bitrate_stream_is_dropped_by_the_time_bound() {
    let mut w = world("");
    let reader = flv_player(&mut w, 1, "slow");
    let stalled = flv_player(&mut w, 1, "slow");
    w.run();
    w.set_reading(stalled, false);
    let publisher = publisher(&mut w, 0, "slow");
    send_configs(&mut w, publisher, 0);
    let mut closed_at = None;
    for second in 0..30u32 {
        publish_live(&mut w, publisher, second * 1000, 25);
        if closed_at.is_none() && w.is_closed(stalled) {
            closed_at = Some(second + 1);
        }
    }
    let closed_at = closed_at.expect("the stalled player was never dropped");
    assert!(
        (20..=22).contains(&closed_at),
        "dropped after {closed_at} s of media"
    );
    let reason = &w.session_ended(stalled).expect("its end").reason;
    assert!(reason.starts_with("player too slow"), "{reason}");
    assert!(!w.is_closed(reader) && !w.is_closed(publisher));
    let stats = w.stats();
    let skips: u64 = stats.iter().map(|s| s.player_skips).sum();
    let closed: u64 = stats.iter().map(|s| s.slow_players_closed).sum();
    // A skip each time 5 s are queued again (after a skip only the newest key frame is), at
    // the next key frame: about 5, 10 and 15 s, then the drop at 20 s.
    eprintln!("stalled player: {skips} skips, dropped after {closed_at} s of media");
    assert_eq!(skips, 3, "{skips} skips");
    assert_eq!(closed, 1);
    let metrics = api_get(&mut w, 0, "/metrics");
    assert!(
        metrics.contains(&format!("rill_player_skips_total {skips}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("rill_slow_players_closed_total 1"),
        "{metrics}"
    );
}
