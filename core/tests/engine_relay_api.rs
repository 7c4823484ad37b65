//! The relay API and relay policy on the virtual clock ([`World`]): every error code of lal's
//! `start_relay_pull`/`stop_relay_pull`/`kick_session` for relays, rill's
//! `start_relay_push`/`stop_relay_push`, livego's `/control/pull` and `/control/push`, relays in
//! the statistics, `pull_retry_num`, `auto_stop_pull_after_no_out_ms`, a push to the server's
//! own address, and one pull on demand per stream across workers. The world has no network
//! outside its engines, so every relay connection fails at once: what is checked here is the
//! bookkeeping, not media (see `engine_relay.rs` for that).

mod common;

use common::{flv_player, publisher};
use rill_core::engine::{EngineConfig, Listener, RelayConfig, RelayUrl};
use rill_core::sim::World;
use serde_json::Value;

/// The answer to one HTTP request on `engine`: status and body.
fn http(w: &mut World, engine: usize, request: &str) -> (u16, String) {
    let c = w.raw(engine, Listener::Http);
    w.send(c, request.as_bytes());
    w.run();
    let text = String::from_utf8_lossy(w.received(c)).into_owned();
    w.hang_up(c);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn get(w: &mut World, engine: usize, path: &str) -> Value {
    let (status, body) = http(
        w,
        engine,
        &format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn post(w: &mut World, engine: usize, path: &str, body: &str) -> Value {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = http(w, engine, &request);
    assert_eq!(status, 200, "{path} {body}: {answer}");
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{path}: {e}: {answer}"))
}

fn code(v: &Value) -> u64 {
    v["error_code"].as_u64().unwrap_or(u64::MAX)
}

fn pulls(w: &World) -> usize {
    (0..w.engine_count())
        .map(|i| w.engine(i).relay_pull_count())
        .sum()
}

#[test]
fn start_and_stop_relay_pull_answer_every_lal_error_code() {
    let mut w = World::new(2, EngineConfig::default());
    let start = "/api/ctrl/start_relay_pull";
    // 1002: not JSON, or no url.
    for body in ["", "{", "[1]", r#"{"stream_name":"x"}"#, r#"{"url":""}"#] {
        let v = post(&mut w, 0, start, body);
        assert_eq!(
            (code(&v), v["desp"].as_str()),
            (1002, Some("param missing")),
            "{body}"
        );
    }
    // 2001: a URL rill cannot pull, or no stream to publish as.
    for url in ["http://h/live/x.mp4", "rtmp://h:0/live/x", "rtmp://h/live"] {
        let v = post(&mut w, 0, start, &format!(r#"{{"url":"{url}"}}"#));
        assert_eq!(code(&v), 2001, "{url}: {v}");
        assert!(v["data"].is_null());
    }
    assert_eq!(pulls(&w), 0);

    // Success: lal's data, the stream named after the URL, a RTMPPULL session id.
    let v = post(
        &mut w,
        1,
        start,
        r#"{"url":"rtmp://origin.test/live/cam?token=1","pull_retry_num":-1}"#,
    );
    assert_eq!((code(&v), v["desp"].as_str()), (0, Some("succ")), "{v}");
    assert_eq!(v["data"]["stream_name"], "cam");
    let session = v["data"]["session_id"].as_str().expect("id").to_owned();
    assert!(session.starts_with("RTMPPULL"), "{session}");
    assert_eq!(w.engine(1).relay_pull_count(), 1);
    // 2001: the stream already has an input (the pull), even asked on another worker.
    let v = post(&mut w, 0, start, r#"{"url":"rtmp://o2.test/live/cam"}"#);
    assert_eq!(code(&v), 2001, "{v}");
    // ... or a publisher.
    let _p = publisher(&mut w, 0, "busy");
    let v = post(&mut w, 1, start, r#"{"url":"rtmp://o.test/live/busy"}"#);
    assert_eq!(code(&v), 2001, "{v}");

    // The pull is in the statistics: a group's `pull`, base type PULL, on any worker.
    let g = get(&mut w, 0, "/api/stat/group?stream_name=cam");
    assert_eq!(code(&g), 0, "{g}");
    assert_eq!(g["data"]["pull"]["session_id"], session.as_str());
    assert_eq!(g["data"]["pull"]["base_type"], "PULL");
    assert_eq!(g["data"]["pull"]["protocol"], "RTMP");
    assert_eq!(g["data"]["pub"]["session_id"], "");
    let (_, metrics) = http(
        &mut w,
        0,
        "GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert!(
        metrics.contains("rill_relay_pulls{protocol=\"rtmp\"} 1"),
        "{metrics}"
    );

    // stop_relay_pull: 1002 without a name, 1001 for no such stream, 1003 for a stream
    // without a pull, then success (from the other worker) with the pull's id.
    let stop = "/api/ctrl/stop_relay_pull";
    assert_eq!(code(&get(&mut w, 0, stop)), 1002);
    assert_eq!(code(&get(&mut w, 0, &format!("{stop}?stream_name="))), 1002);
    assert_eq!(
        code(&get(&mut w, 0, &format!("{stop}?stream_name=nope"))),
        1001
    );
    assert_eq!(
        code(&get(&mut w, 0, &format!("{stop}?stream_name=busy"))),
        1003
    );
    let v = get(&mut w, 0, &format!("{stop}?stream_name=cam"));
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!(v["data"]["session_id"], session.as_str());
    assert_eq!(pulls(&w), 0, "stopped on the worker that ran it");
    assert_eq!(
        code(&get(&mut w, 0, &format!("{stop}?stream_name=cam"))),
        1001
    );
}

#[test]
fn kick_session_stops_a_pull_or_a_push_on_any_worker() {
    let mut w = World::new(2, EngineConfig::default());
    let v = post(
        &mut w,
        1,
        "/api/ctrl/start_relay_pull",
        r#"{"url":"rtmp://o.test/live/x","stream_name":"app2/y","pull_retry_num":-1}"#,
    );
    assert_eq!(v["data"]["stream_name"], "y", "{v}");
    let pull = v["data"]["session_id"].as_str().expect("id").to_owned();
    let kick =
        |stream: &str, id: &str| format!(r#"{{"stream_name":"{stream}","session_id":"{id}"}}"#);
    let v = post(&mut w, 0, "/api/ctrl/kick_session", &kick("y", "RTMPPULL1"));
    assert_eq!(code(&v), 1003, "{v}");
    let v = post(&mut w, 0, "/api/ctrl/kick_session", &kick("app2/y", &pull));
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!(pulls(&w), 0);

    // A push of a live stream: in `subs` with base type PUSH, kicked from the other worker.
    let _p = publisher(&mut w, 1, "cam");
    let v = post(
        &mut w,
        1,
        "/api/ctrl/start_relay_push",
        r#"{"stream_name":"cam","url":"rtmp://target.test/live/cam"}"#,
    );
    assert_eq!(code(&v), 0, "{v}");
    let push = v["data"]["session_id"].as_str().expect("id").to_owned();
    assert!(push.starts_with("RTMPPUSH"), "{push}");
    let g = get(&mut w, 0, "/api/stat/group?stream_name=cam");
    let subs = g["data"]["subs"].as_array().expect("subs");
    assert!(
        subs.iter()
            .any(|s| s["session_id"] == push.as_str() && s["base_type"] == "PUSH"),
        "{g}"
    );
    assert_eq!(w.engine(1).relay_push_count(), 1);
    let v = post(&mut w, 0, "/api/ctrl/kick_session", &kick("cam", &push));
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!(w.engine(1).relay_push_count(), 0);
}

#[test]
fn start_and_stop_relay_push_answer_lal_error_codes_and_refuse_the_servers_own_address() {
    let config = EngineConfig {
        relay: RelayConfig {
            own_rtmp: Some("0.0.0.0:1935".parse().unwrap()),
            ..RelayConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut w = World::new(2, config);
    let start = "/api/ctrl/start_relay_push";
    for body in [
        "",
        r#"{"stream_name":"cam"}"#,
        r#"{"url":"rtmp://t/live/x"}"#,
    ] {
        assert_eq!(code(&post(&mut w, 0, start, body)), 1002, "{body}");
    }
    let body = r#"{"stream_name":"cam","url":"rtmp://t.test/live/x"}"#;
    assert_eq!(code(&post(&mut w, 0, start, body)), 1001, "not live");
    let _p = publisher(&mut w, 0, "cam");
    for own in [
        "rtmp://127.0.0.1/live/x",
        "rtmp://localhost:1935/live/x",
        "rtmp://[::1]/live/x",
    ] {
        let v = post(
            &mut w,
            0,
            start,
            &format!(r#"{{"stream_name":"cam","url":"{own}"}}"#),
        );
        assert_eq!(code(&v), 2001, "{own}: {v}");
        assert!(
            v["desp"]
                .as_str()
                .is_some_and(|d| d.contains("own RTMP address")),
            "{v}"
        );
    }
    assert_eq!(code(&post(&mut w, 0, start, body)), 0);
    // Another port of this host is another server.
    let other = r#"{"stream_name":"cam","url":"rtmp://127.0.0.1:1936/live/x"}"#;
    assert_eq!(code(&post(&mut w, 0, start, other)), 0);
    assert_eq!(w.engine(0).relay_push_count(), 2);

    let stop = "/api/ctrl/stop_relay_push";
    assert_eq!(code(&get(&mut w, 0, stop)), 1002);
    assert_eq!(
        code(&get(&mut w, 0, &format!("{stop}?stream_name=nope"))),
        1001
    );
    // Named by its URL on the other worker (the push lives with the publisher on worker 0).
    let v = get(
        &mut w,
        1,
        &format!("{stop}?stream_name=cam&url=rtmp://127.0.0.1:1936/live/x"),
    );
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!(w.engine(0).relay_push_count(), 1, "only the one named");
    assert_eq!(code(&get(&mut w, 0, &format!("{stop}?stream_name=cam"))), 0);
    assert_eq!(w.engine(0).relay_push_count(), 0);
    assert_eq!(
        code(&get(&mut w, 0, &format!("{stop}?stream_name=cam"))),
        1003
    );
}

#[test]
fn livego_control_answers_in_livegos_shape_and_a_stop_is_200() {
    let mut w = World::new(1, EngineConfig::default());
    let req = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let (status, body) = http(&mut w, 0, &req("/control/pull?oper=start&app=live&name=x"));
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["status"], 400);
    assert!(v["data"].is_string());

    let url = "rtmp%3A%2F%2Forigin.test%2Flive%2Fx";
    let (status, body) = http(
        &mut w,
        0,
        &req(&format!(
            "/control/pull?oper=start&app=live&name=x&url={url}"
        )),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(w.engine(0).relay_pull_count(), 1);
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["status"], 200);
    // A livego pull retries forever and never stops for want of players.
    w.advance(120_000);
    assert_eq!(w.engine(0).relay_pull_count(), 1);
    let stop = format!("/control/pull?oper=stop&app=live&name=x&url={url}");
    let (status, body) = http(&mut w, 0, &req(&stop));
    assert_eq!(status, 200, "livego says 400 here; rill 200: {body}");
    assert_eq!(w.engine(0).relay_pull_count(), 0);
    let (status, _) = http(&mut w, 0, &req(&stop));
    assert_eq!(status, 400, "nothing left to stop");

    // Push: the stream must be live here.
    let push = "/control/push?oper=start&app=live&name=cam&url=rtmp%3A%2F%2Ft.test%2Flive%2Fcam";
    assert_eq!(http(&mut w, 0, &req(push)).0, 400);
    let _p = publisher(&mut w, 0, "cam");
    assert_eq!(http(&mut w, 0, &req(push)).0, 200);
    assert_eq!(w.engine(0).relay_push_count(), 1);
    let stop = push.replace("oper=start", "oper=stop");
    assert_eq!(http(&mut w, 0, &req(&stop)).0, 200);
    assert_eq!(w.engine(0).relay_push_count(), 0);
}

#[test]
fn pull_retry_num_limits_attempts_and_auto_stop_ends_an_unwatched_pull() {
    let mut w = World::new(1, EngineConfig::default());
    let start = "/api/ctrl/start_relay_pull";
    // 0: one attempt, no retry (lal's default).
    let v = post(&mut w, 0, start, r#"{"url":"rtmp://dead.test/live/a"}"#);
    assert_eq!(code(&v), 0);
    w.run();
    assert_eq!(w.engine(0).relay_pull_count(), 0, "no retry by default");
    // 2: three attempts, at backoff intervals, then it stops.
    let v = post(
        &mut w,
        0,
        start,
        r#"{"url":"rtmp://dead.test/live/b","pull_retry_num":2}"#,
    );
    assert_eq!(code(&v), 0);
    w.advance(900);
    assert_eq!(
        w.engine(0).relay_pull_count(),
        1,
        "waiting for the first retry"
    );
    w.advance(3_000);
    assert_eq!(
        w.engine(0).relay_pull_count(),
        0,
        "two retries, then stopped"
    );
    // -1 forever; auto stop 0: stops as soon as it has no player.
    let v = post(
        &mut w,
        0,
        start,
        r#"{"url":"rtmp://dead.test/live/c","pull_retry_num":-1,"auto_stop_pull_after_no_out_ms":0}"#,
    );
    assert_eq!(code(&v), 0);
    w.advance(1_000);
    assert_eq!(w.engine(0).relay_pull_count(), 0, "no players: stopped");
    // -1 forever with players: still trying after minutes.
    let player = flv_player(&mut w, 0, "d");
    w.run();
    let v = post(
        &mut w,
        0,
        start,
        r#"{"url":"rtmp://dead.test/live/d","pull_retry_num":-1,"auto_stop_pull_after_no_out_ms":2000}"#,
    );
    assert_eq!(code(&v), 0);
    w.advance(4_000);
    assert_eq!(w.engine(0).relay_pull_count(), 1);
    w.hang_up(player);
    w.advance(3_000);
    assert_eq!(
        w.engine(0).relay_pull_count(),
        0,
        "stopped 2 s after its player left"
    );
}

#[test]
fn players_on_two_workers_start_one_pull_on_demand_which_stops_after_the_last_leaves() {
    let config = EngineConfig {
        relay: RelayConfig {
            pull_origins: vec![RelayUrl::parse("rtmp://origin.test:1935").unwrap()],
            idle_stop_ms: 2_000,
            ..RelayConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut config = config;
    config.hub.play_wait_timeout_ms = 60_000;
    let mut w = World::new(2, config);
    let a = flv_player(&mut w, 0, "s");
    let b = flv_player(&mut w, 1, "s");
    w.run();
    assert_eq!(pulls(&w), 1, "one pull for both workers' players");
    let owner = (0..2)
        .find(|&i| w.engine(i).relay_pull_count() == 1)
        .expect("owner");
    // The owner's own player leaves: the other worker's player keeps the pull going.
    let (mine, other) = if owner == 0 { (a, b) } else { (b, a) };
    w.hang_up(mine);
    w.advance(10_000);
    assert_eq!(pulls(&w), 1, "the other worker still has a player");
    w.hang_up(other);
    w.advance(1_000);
    assert_eq!(pulls(&w), 1, "not yet idle_stop_ms");
    w.advance(6_000);
    assert_eq!(pulls(&w), 0, "stopped after the last player left");
}

#[test]
fn a_local_publisher_on_another_worker_stops_the_pull_of_its_stream() {
    use rill_core::engine::relay::pull_owner;
    use rill_core::stream_key::StreamKey;
    let mut config = EngineConfig {
        relay: RelayConfig {
            pull_origins: vec![RelayUrl::parse("rtmp://origin.test:1935").unwrap()],
            ..RelayConfig::default()
        },
        ..EngineConfig::default()
    };
    config.hub.play_wait_timeout_ms = 60_000;
    let mut w = World::new(2, config);
    let owner = pull_owner(&StreamKey::parse("live/s").expect("key"), 2);
    let other = 1 - owner;
    let player = flv_player(&mut w, owner, "s");
    w.run();
    assert_eq!(w.engine(owner).relay_pull_count(), 1);
    let p = publisher(&mut w, other, "s");
    assert!(common::publishing(&w, p), "the local publisher is accepted");
    w.run();
    assert_eq!(pulls(&w), 0, "the pull gave way to the publisher");
    common::send_configs(&mut w, p, 0);
    common::send(&mut w, p, &common::stream(0, 10, 5));
    assert!(
        w.received(player).starts_with(b"HTTP/1.1 200"),
        "the waiting player plays the local publisher's stream"
    );
}
