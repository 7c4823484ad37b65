//! The HTTP statistics API and `/metrics` on the real binary: what only the runtime does, that
//! is answering `Output::Gather` with the snapshots of every worker, whichever worker
//! accepted the request. What the answers say (lal's fields, codecs, sizes, byte counts, error
//! codes, players on another engine) is checked on the virtual clock in
//! `core/tests/engine_policy.rs`.

use std::thread::sleep;
use std::time::{Duration, Instant};

use rill_core::flv::TagType;
use rill_e2e::harness::{is_config, media_tags, start_publishing};
use rill_e2e::*;
use serde_json::Value;

/// Two workers, so the publisher and the request may sit on different engines.
const WORKERS: usize = 2;
const LIMIT: Duration = Duration::from_secs(10);

/// `GET path`: checks status 200 and the CORS header; returns the body as text.
fn get(server: &Server, path: &str) -> String {
    let (status, head, body) = http_get(server.http_port, path, LIMIT);
    assert_eq!(status, 200, "{path}: {head}\nlog:\n{}", server.log());
    assert!(
        head.contains("access-control-allow-origin: *"),
        "{path}: no CORS header: {head}"
    );
    String::from_utf8(body).expect("UTF-8 body")
}

fn get_json(server: &Server, path: &str) -> Value {
    let body = get(server, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: bad JSON ({e}): {body}"))
}

fn publishers(server: &Server) -> Option<u64> {
    get(server, "/metrics").lines().find_map(|l| {
        l.strip_prefix("rill_publishers{protocol=\"rtmp\"} ")?
            .parse()
            .ok()
    })
}

#[test]
fn every_worker_answers_with_the_snapshots_of_all_workers() {
    let server = Server::start(WORKERS);
    let v = get_json(&server, "/api/stat/all_group");
    assert_eq!(v["error_code"], 0, "{v}");
    assert_eq!(v["data"]["groups"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(publishers(&server), Some(0));

    // An in-process publisher sends the configs and the first key frame.
    let mut publisher =
        start_publishing(server.rtmp_port, "apitest", LIMIT).expect("publishing starts");
    let mut sent = 0;
    for tag in media_tags()
        .iter()
        .filter(|t| t.tag_type != TagType::Script)
    {
        publisher
            .session
            .send_media(tag.tag_type as u8, tag.timestamp, &tag.body)
            .expect("send");
        sent += 1;
        if sent > 2 && !is_config(tag) && tag.body.first() == Some(&0x17) {
            break;
        }
    }
    publisher.flush().expect("flush");

    // Other workers' snapshots are refreshed about once a second: once the publisher shows,
    // every answer shows it, whichever worker accepted the request.
    let deadline = Instant::now() + Duration::from_secs(5);
    while publishers(&server) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the publisher never showed; log:\n{}",
            server.log()
        );
        sleep(Duration::from_millis(100));
    }
    sleep(Duration::from_millis(1100));
    for i in 0..8 {
        let v = get_json(&server, "/api/stat/group?stream_name=apitest");
        assert_eq!(v["error_code"], 0, "request {i}: {v}");
        assert_eq!(v["data"]["pub"]["protocol"], "RTMP", "request {i}: {v}");
        assert_eq!(publishers(&server), Some(1), "request {i}");
    }

    // Once it leaves, no worker counts it (within a refresh).
    drop(publisher);
    let deadline = Instant::now() + Duration::from_secs(5);
    while publishers(&server) != Some(0) {
        assert!(Instant::now() < deadline, "the publisher stays listed");
        sleep(Duration::from_millis(100));
    }
}

/// lal's control API on the real binary: `POST /api/ctrl/kick_session` closes a player on
/// whichever worker it sits (a command routed to the worker that owns it), and a `HEAD` for the
/// live stream's `.flv` and `.ts` gets the head only.
#[test]
fn kick_session_closes_a_player_on_any_worker() {
    let file = media("h264_aac_30s.flv");
    let server = Server::start(WORKERS);
    let _publisher = ffmpeg_publish(&file, &server.rtmp_url("live/apitest"), &[]);
    sleep(Duration::from_millis(500));
    let player = HttpFlvPlayer::start(server.http_port, "/live/apitest.flv");
    let deadline = Instant::now() + Duration::from_secs(15);
    let sub_id = loop {
        let v = get_json(&server, "/api/stat/group?stream_name=apitest");
        let id = v["data"]["subs"][0]["session_id"]
            .as_str()
            .map(str::to_owned);
        if let Some(id) = id.filter(|_| player.received() > 0) {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "the player never showed: {v}\nlog:\n{}",
            server.log()
        );
        sleep(Duration::from_millis(250));
    };

    head_of_a_live_stream_is_the_head_only(&server);

    kick(&server, "nope", &sub_id, 1001);
    kick(&server, "apitest", "FLVSUB0", 1003);
    kick(&server, "apitest", &sub_id, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !player.ended() {
        assert!(
            Instant::now() < deadline,
            "the kicked player is still served"
        );
        sleep(Duration::from_millis(50));
    }
    drop(player);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = get_json(&server, "/api/stat/group?stream_name=apitest");
        if v["data"]["subs"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "the player stays listed: {v}");
        sleep(Duration::from_millis(250));
    }
}

/// `POST /api/ctrl/kick_session` for `session_id` of `stream`: checks lal's `error_code`.
fn kick(server: &Server, stream: &str, session_id: &str, error_code: u64) {
    let body = format!(r#"{{"stream_name":"{stream}","session_id":"{session_id}"}}"#);
    let raw = http_get_raw(
        server.http_port,
        &format!(
            "POST /api/ctrl/kick_session HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        LIMIT,
    );
    let text = String::from_utf8_lossy(&raw);
    let json = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["error_code"].as_u64(), Some(error_code), "{text}");
}

/// `HEAD` for the live stream's `.flv` and `.ts` answers the head and nothing more, and the
/// connection goes on to the next request (it used to get an endless body).
fn head_of_a_live_stream_is_the_head_only(server: &Server) {
    let raw = http_get_raw(
        server.http_port,
        "HEAD /live/apitest.flv HTTP/1.1\r\nHost: h\r\n\r\n\
         HEAD /live/apitest.ts HTTP/1.1\r\nHost: h\r\n\r\n\
         GET /api/stat/lal_info HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        LIMIT,
    );
    let text = String::from_utf8_lossy(&raw);
    let heads: Vec<&str> = text.split("\r\n\r\n").collect();
    assert_eq!(
        heads.len(),
        4,
        "two heads, then the API answer and its body: {text}"
    );
    assert!(
        heads[0].starts_with("HTTP/1.1 200") && heads[0].contains("video/x-flv"),
        "{text}"
    );
    assert!(
        heads[1].starts_with("HTTP/1.1 200") && heads[1].contains("video/mp2t"),
        "{text}"
    );
    assert!(
        heads[2].starts_with("HTTP/1.1 200") && heads[2].contains("application/json"),
        "{text}"
    );
    assert!(
        heads[3].starts_with("{\"error_code\":0"),
        "only the API body follows: {text}"
    );
    assert!(
        raw.len() < 4096,
        "no media after a HEAD: {} bytes",
        raw.len()
    );
}

/// `--help` names what the binary serves today (it once said "RTMP in; RTMP, HTTP-FLV and
/// WebSocket-FLV out" long after RTSP, TS, HLS and the API came).
#[test]
fn help_names_every_protocol() {
    let out = std::process::Command::new(server_binary())
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let about = help.lines().next().unwrap_or_default();
    for name in [
        "RTMP and RTSP in",
        "HTTP-FLV",
        "WebSocket-FLV",
        "HTTP-TS",
        "WebSocket-TS",
        "HLS out",
        "stats API",
    ] {
        assert!(
            about.contains(name),
            "--help does not say {name:?}: {about}"
        );
    }
}
