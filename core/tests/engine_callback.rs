//! The HTTP callback that can refuse (`[auth] http_callback`) on the virtual clock: a scripted
//! receiver allows some streams and refuses others, answers late or never; requests wait for
//! it, and nothing else does.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::*;
use rill_core::config::Config;
use rill_core::engine::{Listener, Role};
use rill_core::rtmp::client::ClientEvent;
use rill_core::sim::{ClientId, World};
use serde_json::Value;

const HOST: &str = "auth.test";
const PORT: u16 = 9000;

/// Two engines with `[auth]` set to ask the receiver (timeout 1 s) plus `extra` keys.
fn world(extra: &str) -> World {
    let toml = format!(
        "[auth]\nhttp_callback = \"http://{HOST}:{PORT}/check\"\ncallback_timeout_ms = 1000\n{extra}"
    );
    let config = Config::from_toml(&toml).expect("valid config");
    World::new(2, config.engine_config())
}

/// A receiver that answers after `delay_ms`: 200 for streams named `ok*`, 403 for the rest.
fn by_name(w: &mut World, delay_ms: u64) {
    w.serve(HOST, PORT, move |body| {
        let v: Value = serde_json::from_str(body).expect("JSON body");
        let ok = v["stream"].as_str().is_some_and(|s| s.starts_with("ok"));
        Some((delay_ms, if ok { 200 } else { 403 }))
    });
}

fn rejected_code(w: &World, c: ClientId) -> Option<String> {
    w.rtmp_events(c).iter().find_map(|e| match e {
        ClientEvent::Rejected { code, .. } => Some(code.clone()),
        _ => None,
    })
}

fn http_get(w: &mut World, path: &str) -> ClientId {
    let c = w.raw(1, Listener::Http);
    let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
    w.send(c, request.as_bytes());
    c
}

fn head_of(w: &World, c: ClientId) -> String {
    String::from_utf8_lossy(w.received(c))
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_receiver_allows_one_stream_and_refuses_another_on_every_protocol() {
    let mut w = world("");
    by_name(&mut w, 50);

    // RTMP publish: nothing is answered until the receiver has.
    let good = publisher(&mut w, 0, "ok1");
    let bad = publisher(&mut w, 0, "no1");
    assert!(!publishing(&w, good) && rejected_code(&w, bad).is_none());
    w.advance(50);
    assert!(publishing(&w, good));
    assert_eq!(
        rejected_code(&w, bad).as_deref(),
        Some("NetStream.Publish.Unauthorized")
    );
    assert!(w.is_closed(bad));
    let ended = w.session_ended(bad).expect("an end record");
    assert!(ended.reason.contains("status 403"), "{}", ended.reason);
    assert_eq!(ended.stream, "live/no1");
    send_configs(&mut w, good, 0);
    send(&mut w, good, &stream(0, 3, 25));

    // RTMP play.
    let (p_ok, p_no) = (rtmp_player(&mut w, 1, "ok1"), rtmp_player(&mut w, 1, "no1"));
    w.advance(50);
    assert!(told(&w, p_ok, |e| matches!(e, ClientEvent::Playing { .. })));
    assert_eq!(
        rejected_code(&w, p_no).as_deref(),
        Some("NetStream.Play.Failed")
    );

    // HTTP-FLV: 200 with the stream, or 403.
    let (f_ok, f_no) = (flv_player(&mut w, 1, "ok1"), flv_player(&mut w, 1, "no1"));
    w.run();
    assert!(w.received(f_ok).is_empty() && w.received(f_no).is_empty());
    w.advance(50);
    assert!(!flv_tags(&w, f_ok).is_empty());
    assert!(
        head_of(&w, f_no).starts_with("HTTP/1.1 403"),
        "{}",
        head_of(&w, f_no)
    );
    assert!(w.is_closed(f_no));

    // HLS playlists: allowed ones get past the check (404: no segment yet), refused ones 403;
    // segments never ask.
    let (h_ok, h_no) = (
        http_get(&mut w, "/live/ok1.m3u8?t=1"),
        http_get(&mut w, "/live/no1.m3u8"),
    );
    w.advance(50);
    assert!(
        head_of(&w, h_ok).starts_with("HTTP/1.1 404"),
        "{}",
        head_of(&w, h_ok)
    );
    assert!(
        head_of(&w, h_no).starts_with("HTTP/1.1 403"),
        "{}",
        head_of(&w, h_no)
    );
    let asked = w.service_requests(HOST).len();
    let seg = http_get(&mut w, "/live/no1/3.ts");
    w.run();
    assert!(head_of(&w, seg).starts_with("HTTP/1.1 404"));
    // The same address, stream and query again: remembered, answered at once.
    w.send(h_ok, b"GET /live/ok1.m3u8?t=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    w.run();
    let answers = String::from_utf8_lossy(w.received(h_ok));
    assert_eq!(answers.matches("HTTP/1.1 404").count(), 2, "{answers}");
    assert_eq!(w.service_requests(HOST).len(), asked);

    // RTSP DESCRIBE: allowed ones are described, refused ones get 403.
    let describe = |w: &mut World, name: &str| {
        let c = w.raw(0, Listener::Rtsp);
        let r = format!("DESCRIBE rtsp://h/live/{name}?a=b RTSP/1.0\r\nCSeq: 2\r\n\r\n");
        w.send(c, r.as_bytes());
        c
    };
    let (r_ok, r_no) = (describe(&mut w, "ok1"), describe(&mut w, "no1"));
    w.advance(50);
    assert!(
        head_of(&w, r_ok).starts_with("RTSP/1.0 200"),
        "{}",
        head_of(&w, r_ok)
    );
    assert!(
        head_of(&w, r_no).starts_with("RTSP/1.0 403"),
        "{}",
        head_of(&w, r_no)
    );

    // What the receiver was told.
    let bodies: Vec<Value> = w
        .service_requests(HOST)
        .iter()
        .map(|b| serde_json::from_str(b).expect("JSON"))
        .collect();
    let find = |action: &str, protocol: &str, stream: &str| {
        bodies
            .iter()
            .find(|b| b["action"] == action && b["protocol"] == protocol && b["stream"] == stream)
    };
    let first = find("publish", "RTMP", "ok1").expect("the RTMP publish");
    assert_eq!(first["app"], "live");
    assert_eq!(first["remote_addr"], w.peer(good).to_string());
    assert!(first["session_id"]
        .as_str()
        .is_some_and(|s| s.starts_with("RTMPPUBSUB")));
    assert!(find("play", "RTMP", "no1").is_some());
    assert!(find("play", "HTTP-FLV", "ok1").is_some());
    assert_eq!(find("play", "HLS", "ok1").expect("HLS")["query"], "t=1");
    assert_eq!(find("play", "RTSP", "no1").expect("RTSP")["query"], "a=b");
}

#[test]
fn no_answer_applies_the_default_after_the_timeout() {
    for (extra, allowed) in [("", false), ("callback_on_error = \"allow\"\n", true)] {
        let mut w = world(extra);
        w.serve(HOST, PORT, |_| None);
        let p = publisher(&mut w, 0, "s");
        let f = flv_player(&mut w, 1, "s");
        w.advance(999);
        assert!(!publishing(&w, p) && rejected_code(&w, p).is_none());
        assert!(w.received(f).is_empty());
        w.advance(1);
        assert_eq!(publishing(&w, p), allowed, "{extra}");
        if allowed {
            assert!(!w.is_closed(f));
        } else {
            let reason = &w.session_ended(p).expect("ended").reason;
            assert!(reason.contains("no answer within 1"), "{reason}");
            assert!(head_of(&w, f).starts_with("HTTP/1.1 403"));
        }
    }
    // An unreachable receiver: at once.
    let mut w = world("");
    let p = publisher(&mut w, 0, "s");
    assert_eq!(
        rejected_code(&w, p).as_deref(),
        Some("NetStream.Publish.Unauthorized")
    );
}

#[test]
fn switched_off_accesses_do_not_ask() {
    let mut w = world("callback_for = [\"publish_rtmp\"]\n");
    by_name(&mut w, 10);
    let f = flv_player(&mut w, 1, "no");
    w.run();
    assert!(w.service_requests(HOST).is_empty());
    let p = publisher(&mut w, 0, "no");
    w.advance(10);
    assert!(w.is_closed(p));
    assert!(!w.is_closed(f));
}

/// 200 publishes against a receiver taking 200 ms do not hold back a stream already playing:
/// its player gets each frame at the virtual instant it is sent.
#[test]
fn a_slow_receiver_delays_no_other_stream() {
    let mut w = world("");
    let answered = Rc::new(Cell::new(0));
    let counter = answered.clone();
    w.serve(HOST, PORT, move |_| {
        counter.set(counter.get() + 1);
        Some((200, 200))
    });
    let live = publisher(&mut w, 0, "live");
    let player = flv_player(&mut w, 1, "live");
    w.advance(200);
    assert!(publishing(&w, live));
    w.advance(200);
    send_configs(&mut w, live, 0);
    let waiting: Vec<ClientId> = (0..200)
        .map(|i| publisher(&mut w, i % 2, &format!("new{i}")))
        .collect();
    for (i, m) in stream(0, 10, 5).into_iter().enumerate() {
        let before = flv_tags(&w, player).len();
        send(&mut w, live, &[m]);
        assert_eq!(flv_tags(&w, player).len(), before + 1, "frame {i} at once");
        w.advance(5);
    }
    assert!(waiting.iter().all(|&c| !publishing(&w, c)));
    w.advance(200);
    assert!(waiting.iter().all(|&c| publishing(&w, c)));
    assert_eq!(answered.get(), 202);
    let publishes = w
        .sessions_started()
        .iter()
        .filter(|(_, r)| r.role == Role::Publish)
        .count();
    assert_eq!(publishes, 201);
}

/// A play withdrawn (closeStream, deleteStream) while the callback is asked is not started
/// when the answer comes.
#[test]
fn a_request_withdrawn_while_held_is_not_started_by_the_answer() {
    let mut w = world("");
    by_name(&mut w, 100);
    let p = publisher(&mut w, 0, "ok1");
    w.advance(100);
    assert!(publishing(&w, p));
    let player = rtmp_player(&mut w, 0, "ok1");
    w.advance(50);
    w.rtmp_session(player).close();
    w.advance(100);
    assert!(!told(&w, player, |e| matches!(
        e,
        ClientEvent::Playing { .. }
    )));
    let (_, conn) = w.conn(player);
    assert!(
        !w.sessions_started().iter().any(|(_, r)| r.conn == conn),
        "no play session started"
    );
    let players = w
        .engine(0)
        .hub()
        .streams()
        .find(|s| s.name == "live/ok1")
        .map(|s| s.players.len());
    assert_eq!(players, Some(0));
}
