//! The control API on the virtual clock: lal's IP blacklist on every worker and protocol,
//! livego's room keys (publish with the key, play by room name, reset, delete, kept in a
//! file the runtime writes and reads back) and livego's `/stat/livestat`.

mod common;

use std::net::IpAddr;

use common::*;
use rill_core::config::Config;
use rill_core::engine::{room_keys_from_json, EngineConfig, Listener};
use rill_core::rtmp::client::ClientEvent;
use rill_core::sim::{ClientId, World};
use serde_json::Value;

const KEYS_FILE: &str = "/conf/room_keys.json";

fn config(api: &str) -> EngineConfig {
    let toml = format!("[api]\nroom_keys_file = \"{KEYS_FILE}\"\n{api}");
    Config::from_toml(&toml).expect("valid").engine_config()
}

/// A whole HTTP request on a new connection to engine `engine`; the answer's status and body.
fn call(w: &mut World, engine: usize, request: &str) -> (u16, String) {
    let c = w.raw(engine, Listener::Http);
    w.send(c, request.as_bytes());
    w.run();
    let got = String::from_utf8_lossy(w.received(c)).into_owned();
    let status = got
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = got.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

fn get(w: &mut World, engine: usize, path: &str) -> (u16, Value) {
    let (status, body) = call(
        w,
        engine,
        &format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n"),
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn a_blacklisted_address_is_refused_on_every_worker_and_protocol_until_the_time_is_up() {
    let mut w = World::new(2, config(""));
    let ip: IpAddr = "192.0.2.9".parse().expect("ip");
    let early = w.raw_from(1, Listener::Rtmp, ip);
    let body = r#"{"ip":"192.0.2.9","duration_sec":5}"#;
    let request = format!(
        "POST /api/ctrl/add_ip_blacklist HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = call(&mut w, 0, &request);
    let answer: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        serde_json::json!({"error_code":0,"desp":"succ","data":null})
    );
    let bad = "POST /api/ctrl/add_ip_blacklist HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n{\"ip\":1}\n";
    assert!(call(&mut w, 0, bad).1.contains("\"error_code\":1002"));

    for (engine, listener) in [
        (0, Listener::Http),
        (1, Listener::Rtmp),
        (1, Listener::Rtsp),
    ] {
        let c = w.raw_from(engine, listener, ip);
        w.run();
        assert!(w.is_closed(c), "{listener:?} on {engine}");
        let r = w.session_ended(c).expect("an end record");
        assert!(r.reason.contains("blacklisted"), "{}", r.reason);
    }
    // Others, and connections already open, are not affected.
    let other = w.raw(0, Listener::Http);
    w.run();
    assert!(!w.is_closed(other) && !w.is_closed(early));
    w.advance(5_000);
    let later = w.raw_from(0, Listener::Http, ip);
    w.run();
    assert!(!w.is_closed(later));
}

fn rejected(w: &World, c: ClientId) -> Option<String> {
    w.rtmp_events(c).iter().find_map(|e| match e {
        ClientEvent::Rejected { code, .. } => Some(code.clone()),
        _ => None,
    })
}

#[test]
fn room_keys_publish_by_key_play_by_room_and_survive_a_restart() {
    let mut w = World::new(2, config("room_keys = true\n"));
    let (status, v) = get(&mut w, 0, "/control/get");
    assert_eq!(status, 400);
    assert_eq!(v["data"], "url: /control/get?room=<ROOM_NAME>");
    let (status, v) = get(&mut w, 0, "/control/get?room=movie");
    assert_eq!((status, v["status"].as_u64()), (200, Some(200)));
    let key = v["data"].as_str().expect("a key").to_owned();
    assert_eq!(key.len(), 48);
    assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
    // The same key again, from the other worker too.
    assert_eq!(
        get(&mut w, 1, "/control/get?room=movie").1["data"],
        key.as_str()
    );

    // Publishing with the key (on the other worker) makes live/movie; the room name itself
    // is no key.
    let by_name = publisher(&mut w, 0, "movie");
    assert_eq!(
        rejected(&w, by_name).as_deref(),
        Some("NetStream.Publish.Unauthorized")
    );
    let p = publisher(&mut w, 1, &key);
    assert!(publishing(&w, p));
    assert_eq!(
        w.sessions_started().last().expect("started").1.stream,
        "live/movie"
    );
    // RTSP publishers too: the room name is refused.
    let announce = |w: &mut World, name: &str| {
        let c = w.raw(0, Listener::Rtsp);
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
                   m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n";
        let r = format!(
            "ANNOUNCE rtsp://h/live/{name} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        w.send(c, r.as_bytes());
        w.run();
        String::from_utf8_lossy(w.received(c)).into_owned()
    };
    assert!(announce(&mut w, "movie").starts_with("RTSP/1.0 403"));
    let cam = get(&mut w, 1, "/control/get?room=cam").1["data"]
        .as_str()
        .expect("a key")
        .to_owned();
    let answer = announce(&mut w, &cam);
    assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
    assert_eq!(
        w.sessions_started().last().expect("started").1.stream,
        "live/cam"
    );
    let player = flv_player(&mut w, 0, "movie");
    send_configs(&mut w, p, 0);
    send(&mut w, p, &stream(0, 2, 25));
    assert!(!flv_tags(&w, player).is_empty());

    // livestat lists both.
    let (status, v) = get(&mut w, 1, "/stat/livestat");
    assert_eq!(status, 200);
    assert_eq!(v["status"], 200);
    let publishers = v["data"]["publishers"].as_array().expect("a list");
    assert_eq!(publishers.len(), 2, "{v}");
    assert!(publishers.iter().any(|p| p["key"] == "live/movie"), "{v}");
    assert_eq!(v["data"]["players"][0]["key"], "live/movie");
    assert!(publishers
        .iter()
        .any(|p| p["video_total_bytes"].as_u64() > Some(0)));

    // The file the runtime keeps has the key.
    let file = String::from_utf8(w.file(KEYS_FILE).expect("written").to_vec()).expect("UTF-8");
    let kept = room_keys_from_json(&file).expect("parses");
    assert_eq!(
        kept,
        [("cam".to_owned(), cam), ("movie".to_owned(), key.clone())]
    );

    // Reset: a new key; the old one is refused on every worker.
    let (_, v) = get(&mut w, 1, "/control/reset?room=movie");
    let new_key = v["data"].as_str().expect("a key").to_owned();
    assert_ne!(new_key, key);
    for engine in [0, 1] {
        let old = publisher(&mut w, engine, &key);
        assert_eq!(
            rejected(&w, old).as_deref(),
            Some("NetStream.Publish.Unauthorized")
        );
    }
    let file = String::from_utf8(w.file(KEYS_FILE).expect("written").to_vec()).expect("UTF-8");

    // A restart: the runtime hands the file's keys to the new engines.
    let mut restarted = config("room_keys = true\n");
    restarted.room_keys.keys = room_keys_from_json(&file).expect("parses");
    let mut w = World::new(2, restarted);
    let p = publisher(&mut w, 1, "ignored");
    assert!(!publishing(&w, p));
    let p = publisher(&mut w, 0, &new_key);
    assert!(publishing(&w, p));
    assert_eq!(
        get(&mut w, 1, "/control/get?room=movie").1["data"],
        new_key.as_str()
    );

    // Delete: "Ok", then 404 livego's way.
    let (status, v) = get(&mut w, 0, "/control/delete?room=movie");
    assert_eq!((status, v["data"].as_str()), (200, Some("Ok")));
    let (status, v) = get(&mut w, 1, "/control/delete?room=movie");
    assert_eq!((status, v["data"].as_str()), (404, Some("room not found")));
}
