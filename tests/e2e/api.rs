//! The HTTP statistics API (lal's `/api/stat/*` JSON) and the Prometheus `/metrics` endpoint,
//! against a real publisher (ffmpeg) and an HTTP-FLV player.

use std::thread::sleep;
use std::time::{Duration, Instant};

use rill_e2e::*;
use serde_json::Value;

/// Two workers, so the publisher and the player may sit on different engines.
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

/// Polls `/api/stat/group?stream_name=apitest` until the publisher and a player that was sent
/// bytes show up (snapshots of other workers are up to a second old).
fn wait_for_group(server: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = get_json(server, "/api/stat/group?stream_name=apitest");
        let ready = v["error_code"] == 0
            && v["data"]["pub"]["read_bytes_sum"].as_u64() > Some(0)
            && v["data"]["subs"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["wrote_bytes_sum"].as_u64() > Some(0)))
            && v["data"]["video_width"].as_u64() > Some(0);
        if ready {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "the group never showed its publisher and player: {v}\nlog:\n{}",
            server.log()
        );
        sleep(Duration::from_millis(250));
    }
}

#[test]
fn stat_api_and_metrics_describe_a_live_stream_and_its_player() {
    let file = media("h264_aac_30s.flv");
    let probed = ffprobe_file(&file);
    let video = stream_of(&probed, "video").expect("the file has video");
    let server = Server::start(WORKERS);

    // Before anything is published: no groups, and lal's error for an unknown one.
    let v = get_json(&server, "/api/stat/all_group");
    assert_eq!(v["error_code"], 0, "{v}");
    assert_eq!(v["data"]["groups"].as_array().map(Vec::len), Some(0), "{v}");

    let _publisher = ffmpeg_publish(&file, &server.rtmp_url("live/apitest"), &[]);
    sleep(Duration::from_millis(500));
    let player = HttpFlvPlayer::start(server.http_port, "/live/apitest.flv");
    sleep(Duration::from_secs(2));

    let v = wait_for_group(&server);
    assert_eq!(v["desp"], "succ");
    let g = &v["data"];
    assert_eq!(g["stream_name"], "apitest", "{g}");
    assert_eq!(g["app_name"], "live");
    assert_eq!(g["video_codec"], "H264");
    assert_eq!(g["audio_codec"], "AAC");
    assert_eq!(g["video_width"].as_u64(), Some(video.width), "{g}");
    assert_eq!(g["video_height"].as_u64(), Some(video.height), "{g}");
    let p = &g["pub"];
    assert_eq!(p["protocol"], "RTMP", "{p}");
    assert_eq!(p["base_type"], "PUB");
    assert!(p["session_id"]
        .as_str()
        .is_some_and(|s| s.starts_with("RTMPPUBSUB")));
    assert!(p["remote_addr"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
    assert!(p["read_bytes_sum"].as_u64() > Some(10_000), "{p}");
    assert!(p["read_bitrate_kbits"].as_u64() > Some(0), "{p}");
    let subs = g["subs"].as_array().expect("subs");
    assert_eq!(subs.len(), 1, "{g}");
    let sub = &subs[0];
    assert_eq!(sub["protocol"], "FLV", "lal's name for HTTP-FLV: {sub}");
    assert_eq!(sub["base_type"], "SUB");
    assert!(sub["wrote_bytes_sum"].as_u64() > Some(10_000), "{sub}");
    assert!(
        sub["read_bytes_sum"].as_u64() > Some(0),
        "its request: {sub}"
    );
    assert!(player.received() > 0);
    assert!(g["pull"].is_object(), "lal always has a pull object: {g}");

    let all = get_json(&server, "/api/stat/all_group");
    assert_eq!(all["error_code"], 0);
    let groups = all["data"]["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{all}");
    assert_eq!(groups[0]["stream_name"], "apitest");

    head_of_a_live_stream_is_the_head_only(&server);

    let nope = get_json(&server, "/api/stat/group?stream_name=nope");
    assert_eq!(nope["error_code"], 1001, "{nope}");
    assert_eq!(nope["desp"], "group not found");
    let missing = get_json(&server, "/api/stat/group");
    assert_eq!(missing["error_code"], 1002, "{missing}");

    let info = get_json(&server, "/api/stat/lal_info");
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

    let metrics = get(&server, "/metrics");
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
    // The publisher, the player and this request's connection at least.
    assert!(value("rill_connections") >= 3, "{metrics}");

    // lal's control API kicks the player, whichever worker it sits on; then it is no longer
    // counted (within a snapshot refresh).
    let sub_id = subs[0]["session_id"]
        .as_str()
        .expect("session_id")
        .to_owned();
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
