//! Relays against a third-party server and under failure, with the real binary:
//! - nginx-rtmp as the other server: rill pushes to it and ffprobe reads the stream back from
//!   nginx; rill pulls from it (static edge, and by lal's API) and ffprobe reads it from rill
//!   over RTMP, HTTP-FLV, HLS and RTSP; the static pull stops `idle_stop_ms` after its last
//!   player (seen in the API);
//! - the origin killed mid-stream and restarted: the edge's HTTP-FLV player stays connected and
//!   its timestamps keep growing; killed for good: the player is ended after the grace period;
//! - two rills configured to pull from each other do not loop;
//! - 20 streams relayed at once through one edge, 10 players each, none behind.
//!
//! Each nginx gets a config written by the test on a free port, its own prefix, pid and log
//! files in a temporary folder, runs in the foreground (`daemon off`, no master process) and
//! is killed by its PID only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::{sleep, spawn};
use std::time::{Duration, Instant};

use rill_e2e::*;

/// Where Debian's libnginx-mod-rtmp puts the module.
const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// nginx with the RTMP module on a loopback port, killed on drop.
struct Nginx {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    fn start() -> Nginx {
        Nginx::start_on(free_port())
    }

    /// nginx-rtmp on `port` with one live application, `live`.
    fn start_on(port: u16) -> Nginx {
        require_tool("nginx");
        assert!(
            Path::new(RTMP_MODULE).is_file(),
            "{RTMP_MODULE} missing: install libnginx-mod-rtmp (tools/test-all.sh does)"
        );
        let dir =
            std::env::temp_dir().join(format!("rill-e2e-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nload_module {RTMP_MODULE};\n\
             events {{ worker_connections 512; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut n = Nginx {
            child: Some(child),
            port,
            dir,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = n
                .child
                .as_mut()
                .is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
            assert!(
                Instant::now() < deadline && !exited,
                "nginx did not listen on {port}; log:\n{}",
                n.log()
            );
            sleep(Duration::from_millis(50));
        }
        n
    }

    fn url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Kills nginx (its own PID only), as a crash would.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn assert_h264_aac(
    who: &str,
    (streams, out): &(Vec<ProbedStream>, std::process::Output),
    log: &str,
) {
    let video = stream_of(streams, "video");
    let audio = stream_of(streams, "audio");
    assert!(
        video.is_some_and(|v| v.codec_name == "h264" && v.frames > 0)
            && audio.is_some_and(|a| a.codec_name == "aac" && a.frames > 0),
        "{who}: {streams:?}; ffprobe: {}; log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Probes the first seconds of a live URL (`-read_intervals %+4`), so the answer does not
/// depend on how the server ends the stream.
fn probe_a_while(url: &str) -> (Vec<ProbedStream>, std::process::Output) {
    require_tool("ffprobe");
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error"]);
    if url.starts_with("rtsp:") {
        cmd.args(["-rtsp_transport", "tcp", "-timeout", "15000000"]);
    } else {
        cmd.args(["-rw_timeout", "15000000"]);
    }
    cmd.args([
        "-read_intervals",
        "%+4",
        "-count_frames",
        "-show_streams",
        "-of",
        "json",
        url,
    ]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let streams = v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| ProbedStream {
                    codec_type: s["codec_type"].as_str().unwrap_or("").to_owned(),
                    codec_name: s["codec_name"].as_str().unwrap_or("").to_owned(),
                    frames: s["nb_read_frames"]
                        .as_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                    ..ProbedStream::default()
                })
                .collect()
        })
        .unwrap_or_default();
    (streams, out)
}

/// lal's JSON answer of the server's API to `request` (a whole HTTP request).
fn api(port: u16, request: &str) -> serde_json::Value {
    let raw = http_get_raw(port, request, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn api_get(port: u16, path: &str) -> serde_json::Value {
    api(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

fn api_post(port: u16, path: &str, body: &str) -> serde_json::Value {
    api(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The pull session of stream `name` as `/api/stat/group` shows it ("" when none).
fn pull_of(port: u16, name: &str) -> String {
    let v = api_get(port, &format!("/api/stat/group?stream_name={name}"));
    v["data"]["pull"]["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn rill_pushes_to_nginx_and_pulls_from_it_for_every_player_protocol() {
    let file = media("h264_aac_10s.flv");
    let nginx = Nginx::start();
    let origin_cfg = TempConfig::new(&format!(
        "[[relay.push]]\napp = \"live\"\nurls = [\"{}\"]\n",
        nginx.url("live")
    ));
    let origin = Server::start_with(2, &origin_cfg.args());
    let edge_cfg = TempConfig::new(&format!(
        "[relay.pull]\norigins = [\"rtmp://127.0.0.1:{}\"]\nidle_stop_ms = 1000\n\
         [hub]\npublisher_grace_ms = 1000\nplay_wait_timeout_ms = 15000\n",
        nginx.port
    ));
    let edge = Server::start_with(2, &edge_cfg.args());
    let mut publisher = ffmpeg_publish(&file, &origin.rtmp_url("live/a"), &[]);
    // The push reaches nginx; then players of the edge make it pull from nginx.
    sleep(Duration::from_millis(1500));
    let limit = Duration::from_secs(40);
    let probe = |url: String| spawn(move || probe_a_while(&url));
    let from_nginx = probe(nginx.url("live/a"));
    let rtmp = probe(edge.rtmp_url("live/a"));
    let flv = probe(edge.http_url("live/a.flv"));
    // A pull by lal's API, under a name of its own, retried forever.
    let started = api_post(
        edge.http_port,
        "/api/ctrl/start_relay_pull",
        &format!(
            r#"{{"url":"{}","stream_name":"live/api","pull_retry_num":-1}}"#,
            nginx.url("live/a")
        ),
    );
    assert_eq!(started["error_code"], 0, "{started}");
    let api_session = started["data"]["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(api_session.starts_with("RTMPPULL"), "{started}");
    let by_api = probe(edge.rtmp_url("live/api"));
    sleep(Duration::from_millis(1500));
    // The static pull is in the API while it runs (other workers' snapshots may be a second
    // old).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pull_of(edge.http_port, "a").starts_with("RTMPPULL") {
        assert!(
            Instant::now() < deadline,
            "no pull in the API: {}",
            edge.log()
        );
        sleep(Duration::from_millis(200));
    }
    // HLS of the pulled stream: a playlist with segments, a segment with packets.
    sleep(Duration::from_millis(3500));
    let (status, _, playlist) = http_get(edge.http_port, "/live/a.m3u8", Duration::from_secs(5));
    let playlist = String::from_utf8_lossy(&playlist).into_owned();
    assert_eq!(status, 200, "{playlist}");
    let segment = playlist
        .lines()
        .find(|l| l.ends_with(".ts"))
        .unwrap_or_else(|| panic!("no segment in:\n{playlist}"))
        .to_owned();
    let (status, _, ts) = http_get(
        edge.http_port,
        &format!("/live/{segment}"),
        Duration::from_secs(5),
    );
    assert_eq!(status, 200, "{segment}");
    assert!(
        check_ts(&ts).pids.len() >= 3,
        "PAT/PMT and media PIDs in {segment}"
    );
    // RTSP once both tracks have surely come through nginx (a DESCRIBE answers with the
    // tracks known then, and nginx may send the video header only with a key frame).
    let rtsp = {
        let url = edge.rtsp_url("live/a");
        spawn(move || probe_a_while(&url))
    };

    assert!(
        publisher.wait_for(limit).is_some_and(|s| s.success()),
        "publisher failed; origin log:\n{}",
        origin.log()
    );
    let results = [
        ("ffprobe of nginx (rill's push)", from_nginx),
        ("RTMP from the edge", rtmp),
        ("HTTP-FLV from the edge", flv),
        ("RTSP from the edge", rtsp),
        ("RTMP of the API pull", by_api),
    ]
    .map(|(who, probe)| (who, probe.join().expect("probe")));
    let log = format!("edge:\n{}\nnginx:\n{}", edge.log(), nginx.log());
    for (who, result) in &results {
        assert_h264_aac(who, result, &log);
    }

    // Its players gone, the static pull stops after idle_stop_ms; the API pull stays until
    // stopped.
    let deadline = Instant::now() + Duration::from_secs(8);
    while !pull_of(edge.http_port, "a").is_empty() {
        assert!(
            Instant::now() < deadline,
            "static pull still running:\n{}",
            edge.log()
        );
        sleep(Duration::from_millis(200));
    }
    assert!(
        edge.log()
            .contains("relay pull live/a stopped: no players left"),
        "{}",
        edge.log()
    );
    let stopped = api_get(
        edge.http_port,
        "/api/ctrl/stop_relay_pull?stream_name=live/api",
    );
    assert_eq!(stopped["error_code"], 0, "{stopped}");
    assert_eq!(stopped["data"]["session_id"], api_session.as_str());
}

/// One FLV tag as the player got it.
struct Tag {
    kind: u8,
    timestamp: u32,
    at: Instant,
}

/// Reads an HTTP-FLV stream until it ends (or `limit`): its tags, and whether it ended on a
/// tag boundary.
fn read_flv(port: u16, path: &str, limit: Duration) -> (Vec<Tag>, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut tags = Vec::new();
    let mut pos = None;
    let mut chunk = [0u8; 65536];
    let mut clean = false;
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => {
                clean = pos.is_some_and(|p: usize| p == buf.len());
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        }
        if pos.is_none() {
            if let Some(h) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                // The FLV header (9 bytes) and the first PreviousTagSize (4).
                pos = Some(h + 4 + 13);
            }
        }
        let Some(mut p) = pos else { continue };
        // Chunked or not: rill sends HTTP-FLV unchunked (a body that ends with the connection).
        while buf.len() >= p + 11 {
            let size = usize::from(buf[p + 1]) << 16
                | usize::from(buf[p + 2]) << 8
                | usize::from(buf[p + 3]);
            if buf.len() < p + 11 + size + 4 {
                break;
            }
            let ts = u32::from(buf[p + 4]) << 16
                | u32::from(buf[p + 5]) << 8
                | u32::from(buf[p + 6])
                | u32::from(buf[p + 7]) << 24;
            tags.push(Tag {
                kind: buf[p],
                timestamp: ts,
                at: Instant::now(),
            });
            p += 11 + size + 4;
        }
        pos = Some(p);
    }
    (tags, clean)
}

#[test]
fn an_edge_player_stays_through_an_origin_restart_and_is_ended_after_the_grace_without_one() {
    let file = media("h264_aac_30s.flv");
    let mut nginx = Nginx::start();
    let port = nginx.port;
    let edge_cfg = TempConfig::new(&format!(
        "[relay.pull]\norigins = [\"rtmp://127.0.0.1:{port}\"]\nidle_stop_ms = 1000\n\
         [hub]\npublisher_grace_ms = 3000\n"
    ));
    let edge = Server::start_with(2, &edge_cfg.args());
    let publisher = ffmpeg_publish(&file, &nginx.url("live/r"), &[]);
    sleep(Duration::from_millis(500));
    let reader = {
        let http = edge.http_port;
        spawn(move || read_flv(http, "/live/r.flv", Duration::from_secs(40)))
    };
    sleep(Duration::from_millis(3000));
    // The origin crashes (its publisher with it) and comes back on the same port; its new
    // publisher's timestamps start again from 0.
    nginx.kill();
    drop(publisher);
    sleep(Duration::from_millis(300));
    nginx = Nginx::start_on(port);
    let restarted = Instant::now();
    let publisher = ffmpeg_publish(&file, &nginx.url("live/r"), &[]);
    sleep(Duration::from_millis(5000));
    // Now it dies for good.
    nginx.kill();
    drop(publisher);
    let killed = Instant::now();
    let (tags, clean) = reader.join().expect("reader");
    let ended = Instant::now();
    let log = edge.log();
    let after: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.kind == 9 && t.at > restarted + Duration::from_millis(1500))
        .collect();
    assert!(
        after.len() > 25,
        "video after the restart: {} of {} tags; log:\n{log}",
        after.len(),
        tags.len()
    );
    for kind in [8u8, 9] {
        let ts: Vec<u32> = tags
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| t.timestamp)
            .collect();
        assert!(
            ts.windows(2).all(|w| w[0] <= w[1]),
            "tag type {kind}: timestamps go back: {ts:?}"
        );
    }
    let last = tags
        .iter()
        .filter(|t| t.kind == 9)
        .map(|t| t.timestamp)
        .max()
        .unwrap_or(0);
    // About 3 s before the outage, then the restarted stream (ffmpeg's own timestamps
    // start again at 0) continues from there.
    assert!(
        last > 4_000,
        "timestamps kept growing through the restart: {last} ms"
    );
    let waited = ended.duration_since(killed);
    assert!(
        waited >= Duration::from_millis(2000) && waited < Duration::from_secs(10),
        "ended {waited:?} after the origin died (grace 3 s); log:\n{log}"
    );
    assert!(clean, "the FLV stream ended on a tag boundary");
}

/// Forwards every connection to `listener` to `127.0.0.1:to` (both ways), in threads that end
/// with their connections.
fn forward(listener: std::net::TcpListener, to: u16) {
    spawn(move || {
        for client in listener.incoming().take(16) {
            let Ok(client) = client else { break };
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            for (mut from, mut into) in [
                (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                ),
                (server, client),
            ] {
                spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
}

#[test]
fn two_rills_pulling_from_each_other_do_not_loop() {
    // A's origin is B; B's origin is A, reached through a forwarder (A's port is known only
    // once A runs).
    let to_a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let to_a_port = to_a.local_addr().expect("addr").port();
    let cfg = |origin: u16| {
        TempConfig::new(&format!(
            "[relay.pull]\norigins = [\"rtmp://127.0.0.1:{origin}\"]\nidle_stop_ms = 500\n\
             [hub]\nplay_wait_timeout_ms = 2000\n"
        ))
    };
    let cb = cfg(to_a_port);
    let b = Server::start_with(2, &cb.args());
    let ca = cfg(b.rtmp_port);
    let a = Server::start_with(2, &ca.args());
    forward(to_a, a.rtmp_port);
    let (_, out) = ffprobe(&a.http_url("live/x.flv"), Duration::from_secs(15));
    assert!(!out.status.success(), "nothing to play anywhere");
    let (_, out) = ffprobe(&b.http_url("live/y.flv"), Duration::from_secs(15));
    assert!(!out.status.success(), "nothing to play anywhere");
    sleep(Duration::from_millis(500));
    let (la, lb) = (a.log(), b.log());
    assert!(la.contains("relay pull live/x"), "A pulled from B:\n{la}");
    assert!(lb.contains("relay pull live/y"), "B pulled from A:\n{lb}");
    assert!(
        !lb.contains("relay pull live/x") && !la.contains("relay pull live/y"),
        "neither pulled the other's relayed request back:\nA:\n{la}\nB:\n{lb}"
    );
}

#[test]
fn twenty_streams_through_one_edge_with_ten_players_each_none_behind() {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/rill-bench");
    assert!(
        bench.is_file(),
        "{} not built: run `cargo build --workspace` first",
        bench.display()
    );
    let file = media("h264_aac_30s.flv");
    let origin = Server::start(1);
    let edge_cfg = TempConfig::new(&format!(
        "[relay.pull]\norigins = [\"rtmp://127.0.0.1:{}\"]\n",
        origin.rtmp_port
    ));
    let edge = Server::start_with(2, &edge_cfg.args());
    let publishers: Vec<Proc> = (0..20)
        .map(|i| {
            let child = Command::new(&bench)
                .args(["publish", "--quiet", "--loop", "--duration", "12", "--url"])
                .arg(origin.rtmp_url(&format!("live/s{i}")))
                .arg("--file")
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("rill-bench publish");
            Proc(child)
        })
        .collect();
    sleep(Duration::from_millis(1500));
    let players: Vec<_> = (0..20)
        .map(|i| {
            let (proto, url) = if i % 2 == 0 {
                ("rtmp", edge.rtmp_url(&format!("live/s{i}")))
            } else {
                ("http-flv", edge.http_url(&format!("live/s{i}.flv")))
            };
            let mut cmd = Command::new(&bench);
            cmd.args(["play", "--quiet", "--players", "10", "--duration", "5"])
                .args(["--proto", proto, "--url", &url]);
            spawn(move || run_with_timeout(&mut cmd, Duration::from_secs(30)))
        })
        .collect();
    let mut total = 0;
    for (i, p) in players.into_iter().enumerate() {
        let out = p.join().expect("player thread");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stream {i}: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(
            v["connected"],
            10,
            "stream {i}: {v}\nedge log:\n{}",
            edge.log()
        );
        assert_eq!(v["behind"], 0, "stream {i}: {v}");
        assert_eq!(v["disconnected"], 0, "stream {i}: {v}");
        total += v["connected"].as_u64().unwrap_or(0);
    }
    assert_eq!(total, 200);
    let groups = api_get(edge.http_port, "/api/stat/all_group");
    let pulled = groups["data"]["groups"].as_array().map_or(0, |g| {
        g.iter()
            .filter(|g| g["pull"]["base_type"] == "PULL")
            .count()
    });
    assert_eq!(pulled, 20, "one pull per stream");
    drop(publishers);
}
