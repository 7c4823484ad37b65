//! A cluster on one machine: a real `redis-server` on a free port without persistence (started
//! and killed by PID here), origins and an edge (the binary under test) finding each other
//! through it. The policy (leases, compare-and-set, partitions) is checked on the virtual clock
//! in core/tests/engine_cluster.rs; these check the real thing end to end, briefly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rill_core::flv::{FlvDemuxer, TagType};
use rill_core::rtmp::client::ClientEvent;
use rill_core::rtmp::message_type;
use rill_e2e::harness::{flv_player, read_head, RtmpClient};
use rill_e2e::*;

const WORKERS: usize = 2;
const LEASE_MS: u64 = 2_000;

/// `redis-server` on a free loopback port, no persistence; killed (by its PID) on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_on(free_port())
    }

    fn start_on(port: u16) -> Redis {
        require_tool("redis-server");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            sleep(Duration::from_millis(50));
        }
        Redis { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node of the cluster with `role`, Redis at `redis`, and `extra` settings.
fn node(redis: u16, role: &str, extra: &str) -> (Server, TempConfig) {
    let config = TempConfig::new(&format!(
        "[cluster]\nredis = \"redis://127.0.0.1:{redis}/0\"\nrole = \"{role}\"\n\
         lease_ms = {LEASE_MS}\n{extra}"
    ));
    (Server::start_with(WORKERS, &config.args()), config)
}

/// Polls `/api/stat/cluster` on `server` until `stream` is registered to `node`.
fn wait_registered(server: &Server, stream: &str, node_port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let want = format!("rtmp://127.0.0.1:{node_port}");
    while Instant::now() < deadline {
        let (_, _, body) = http_get(server.http_port, "/api/stat/cluster", limit);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let registered = json["cluster"]["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["stream"] == stream && s["advertise"] == want.as_str());
        if registered {
            return true;
        }
        sleep(Duration::from_millis(100));
    }
    false
}

/// Time from asking the edge for `live/{name}.flv` to the first video tag.
fn http_flv_first_frame(port: u16, name: &str, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET /live/{name}.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let (head, body) = read_head(&mut s, limit)?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {head}"));
    }
    let mut demuxer = FlvDemuxer::default();
    demuxer.push(&body);
    let mut buf = vec![0u8; 65536];
    while start.elapsed() < limit {
        while let Ok(Some(tag)) = demuxer.poll_tag() {
            if tag.tag_type == TagType::Video && tag.body.get(1) == Some(&1) {
                return Ok(start.elapsed());
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return Err("closed".into()),
            Ok(n) => demuxer.push(&buf[..n]),
            Err(_) => {}
        }
    }
    Err(format!("no video within {limit:?}"))
}

/// Time from the first request of `live/{name}.m3u8` (polled every 100 ms, as players poll) to
/// a playlist with a segment.
fn hls_first_playlist(port: u16, name: &str, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let path = format!("/live/{name}.m3u8");
    while start.elapsed() < limit {
        let (status, _, body) = http_get(port, &path, limit);
        if status == 200 && String::from_utf8_lossy(&body).contains("#EXTINF") {
            return Ok(start.elapsed());
        }
        sleep(Duration::from_millis(100));
    }
    Err(format!("no playlist within {limit:?}"))
}

/// Time from asking the edge for RTMP `live/{name}` to the first video frame.
fn rtmp_first_frame(port: u16, name: &str, limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut c = RtmpClient::connect(port, "live")?;
    c.session.play(name);
    c.flush()?;
    c.wait_event(limit, |e| {
        matches!(e, ClientEvent::Media { type_id, payload, .. }
            if *type_id == message_type::VIDEO && payload.get(1) == Some(&1))
    })?;
    Ok(start.elapsed())
}

#[test]
fn a_stream_published_on_an_origin_plays_from_the_edge_within_two_seconds() {
    let redis = Redis::start();
    let (origin, _c1) = node(redis.port, "origin", "");
    let (edge, _c2) = node(redis.port, "edge", "");
    let _publisher = ffmpeg_publish(&media("h264_aac_30s.flv"), &origin.rtmp_url("live/c"), &[]);
    assert!(
        wait_registered(&edge, "live/c", origin.rtmp_port, Duration::from_secs(10)),
        "not registered; origin log:\n{}\nedge log:\n{}",
        origin.log(),
        edge.log()
    );
    let hls = {
        let port = edge.http_port;
        std::thread::spawn(move || hls_first_playlist(port, "c", Duration::from_secs(10)))
    };
    let rtmp = rtmp_first_frame(edge.rtmp_port, "c", Duration::from_secs(10));
    let flv = http_flv_first_frame(edge.http_port, "c", Duration::from_secs(10));
    let hls = hls.join().expect("HLS thread");
    eprintln!("edge first frame: RTMP {rtmp:?}, HTTP-FLV {flv:?}; first HLS playlist {hls:?}");
    let log = edge.log();
    // HLS needs a whole segment first: the file's key frames are 2 s apart.
    assert!(
        hls.as_ref().is_ok_and(|d| *d < Duration::from_secs(5)),
        "HLS on the edge: {hls:?}; edge log:\n{log}"
    );
    for (what, got) in [("RTMP", rtmp), ("HTTP-FLV", flv)] {
        assert!(
            got.as_ref().is_ok_and(|d| *d < Duration::from_secs(2)),
            "{what} player on the edge: {got:?}; edge log:\n{log}"
        );
    }
    assert!(
        log.contains("cluster: live/c is on node"),
        "edge log:\n{log}"
    );
    // Statistics are snapshots refreshed about once a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut metrics;
    loop {
        metrics = http_get(edge.http_port, "/metrics", Duration::from_secs(5)).2;
        let text = String::from_utf8_lossy(&metrics);
        let want = ["rill_cluster_redis_up 1", "rill_cluster_pulled_streams 1"];
        if want.iter().all(|w| text.contains(w)) || Instant::now() > deadline {
            break;
        }
        sleep(Duration::from_millis(200));
    }
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("rill_cluster_redis_up 1")
            && metrics.contains("rill_cluster_pulled_streams 1")
            && metrics.contains("rill_cluster_nodes 2"),
        "{metrics}"
    );
}

#[test]
fn an_edge_player_follows_the_publisher_from_a_killed_origin_to_another() {
    let redis = Redis::start();
    let (mut a, _ca) = node(redis.port, "origin", "");
    let (b, _cb) = node(redis.port, "origin", "");
    let (edge, _ce) = node(redis.port, "edge", "[hub]\npublisher_grace_ms = 10000\n");
    let file = media("h264_aac_30s.flv");
    let mut publisher = ffmpeg_publish(&file, &a.rtmp_url("live/f"), &[]);
    assert!(wait_registered(
        &edge,
        "live/f",
        a.rtmp_port,
        Duration::from_secs(10)
    ));
    let player = flv_player(edge.http_port, "f", Duration::from_secs(14));
    sleep(Duration::from_secs(4));
    // SIGKILL: no goodbye to Redis, the lease has to run out.
    let killed = Instant::now();
    let _ = Command::new("kill")
        .args(["-9", &a.pid().to_string()])
        .status();
    a.terminate();
    drop(publisher);
    publisher = ffmpeg_publish(&file, &b.rtmp_url("live/f"), &[]);
    let moved = wait_registered(&edge, "live/f", b.rtmp_port, Duration::from_secs(10));
    let moved_after = killed.elapsed();
    let got = player.join().expect("player thread").expect("player");
    drop(publisher);
    let log = edge.log();
    eprintln!(
        "registry moved to B {moved_after:?} after the kill; edge player: {} frames, longest gap {:?}, end: {}",
        got.frames.len(),
        got.max_gap,
        got.end
    );
    assert!(moved, "registry key never moved to B; edge log:\n{log}");
    assert!(
        got.end.starts_with("still streaming"),
        "the edge player was dropped: {}; edge log:\n{log}",
        got.end
    );
    assert!(
        got.max_gap < Duration::from_secs(8),
        "gap {:?}; edge log:\n{log}",
        got.max_gap
    );
    assert!(
        got.timestamps.windows(2).all(|w| w[0] <= w[1]),
        "timestamps go back: {:?}",
        got.timestamps
    );
    // Frames came after the move (the player ran ~14 s; A gave it ~4 s).
    assert!(got.frames.len() > 150, "{} frames", got.frames.len());
}

#[test]
fn players_go_on_while_redis_restarts_and_owners_register_again() {
    let mut redis = Redis::start();
    let port = redis.port;
    let (origin, _c1) = node(port, "origin", "");
    let (edge, _c2) = node(port, "edge", "");
    let _publisher = ffmpeg_publish(&media("h264_aac_30s.flv"), &origin.rtmp_url("live/r"), &[]);
    assert!(wait_registered(
        &edge,
        "live/r",
        origin.rtmp_port,
        Duration::from_secs(10)
    ));
    let player = flv_player(edge.http_port, "r", Duration::from_secs(8));
    sleep(Duration::from_secs(2));
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    sleep(Duration::from_secs(2));
    redis = Redis::start_on(port);
    let got = player.join().expect("player thread").expect("player");
    let log = edge.log();
    assert!(
        got.end.starts_with("still streaming") && got.max_gap < Duration::from_secs(1),
        "the edge player stopped or stalled: {} (gap {:?}); edge log:\n{log}",
        got.end,
        got.max_gap
    );
    assert!(log.contains("unreachable"), "the outage is logged:\n{log}");
    // The origin registers its stream again in the new, empty Redis.
    assert!(
        wait_registered(&edge, "live/r", origin.rtmp_port, Duration::from_secs(10)),
        "not registered again; origin log:\n{}",
        origin.log()
    );
    // New lookups work again.
    let _second = ffmpeg_publish(&media("h264_aac_10s.flv"), &origin.rtmp_url("live/r2"), &[]);
    assert!(wait_registered(
        &edge,
        "live/r2",
        origin.rtmp_port,
        Duration::from_secs(10)
    ));
    let first = http_flv_first_frame(edge.http_port, "r2", Duration::from_secs(5));
    assert!(first.is_ok(), "{first:?}; edge log:\n{}", edge.log());
    drop(redis);
}

#[test]
fn rill_starts_without_redis_and_says_so() {
    let [dead] = free_ports();
    let (server, _c) = node(dead, "both", "");
    sleep(Duration::from_millis(1500));
    let log = server.log();
    assert!(
        log.contains(&format!(
            "cluster: Redis at redis://127.0.0.1:{dead}/0 unreachable"
        )),
        "log:\n{log}"
    );
    // Local streams work meanwhile.
    let _publisher = ffmpeg_publish(&media("h264_aac_10s.flv"), &server.rtmp_url("live/l"), &[]);
    let first = http_flv_first_frame(server.http_port, "l", Duration::from_secs(10));
    assert!(first.is_ok(), "{first:?}; log:\n{log}");
}

#[test]
fn one_edge_serves_two_origins_and_two_publishers_of_one_stream_leave_one_winner() {
    let redis = Redis::start();
    let (a, _ca) = node(redis.port, "origin", "");
    let (b, _cb) = node(redis.port, "origin", "");
    let (edge, _ce) = node(redis.port, "edge", "");
    let file = media("h264_aac_30s.flv");
    let _one = ffmpeg_publish(&file, &a.rtmp_url("live/one"), &[]);
    let _two = ffmpeg_publish(&file, &b.rtmp_url("live/two"), &[]);
    let mut both_a = ffmpeg_publish(&file, &a.rtmp_url("live/both"), &[]);
    let mut both_b = ffmpeg_publish(&file, &b.rtmp_url("live/both"), &[]);
    assert!(wait_registered(
        &edge,
        "live/one",
        a.rtmp_port,
        Duration::from_secs(10)
    ));
    assert!(wait_registered(
        &edge,
        "live/two",
        b.rtmp_port,
        Duration::from_secs(10)
    ));
    for name in ["one", "two"] {
        let first = http_flv_first_frame(edge.http_port, name, Duration::from_secs(10));
        assert!(
            first.is_ok(),
            "{name}: {first:?}; edge log:\n{}",
            edge.log()
        );
    }
    // The loser's claim is refused for a whole lease, then its publisher is closed.
    sleep(Duration::from_millis(LEASE_MS + 2_000));
    let a_lost = both_a.wait_for(Duration::from_millis(10)).is_some();
    let b_lost = both_b.wait_for(Duration::from_millis(10)).is_some();
    assert!(
        a_lost != b_lost,
        "exactly one publisher of live/both is closed (A: {a_lost}, B: {b_lost});\nA log:\n{}\nB log:\n{}",
        a.log(),
        b.log()
    );
    let winner = if a_lost { b.rtmp_port } else { a.rtmp_port };
    // Every node names the same owners.
    let views: Vec<serde_json::Value> = [&a, &b, &edge]
        .iter()
        .map(|n| {
            let body = http_get(n.http_port, "/api/stat/cluster", Duration::from_secs(5)).2;
            serde_json::from_slice(&body).expect("cluster JSON")
        })
        .collect();
    for v in &views {
        assert_eq!(
            v["cluster"]["streams"], views[0]["cluster"]["streams"],
            "{views:?}"
        );
    }
    let owner_of = |stream: &str| {
        views[0]["cluster"]["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["stream"] == stream)
            .map(|s| s["advertise"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        owner_of("live/both"),
        Some(format!("rtmp://127.0.0.1:{winner}"))
    );
    assert_eq!(
        owner_of("live/one"),
        Some(format!("rtmp://127.0.0.1:{}", a.rtmp_port))
    );
    assert_eq!(
        owner_of("live/two"),
        Some(format!("rtmp://127.0.0.1:{}", b.rtmp_port))
    );
}
