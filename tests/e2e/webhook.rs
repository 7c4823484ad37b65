//! Webhooks (lal's HTTP notifications) against a receiver on loopback: every event arrives with
//! lal's fields, and a receiver that never answers does not slow publishing or playing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use rill_e2e::*;
use serde_json::Value;

/// Two workers, so the publisher and the player may sit on different engines.
const WORKERS: usize = 2;

/// The config pointing every event at `port` (path = the event's name).
fn config(port: u16) -> TempConfig {
    let mut toml = String::from("[webhook]\nenable = true\nupdate_interval_sec = 1\n");
    for event in [
        "on_server_start",
        "on_update",
        "on_pub_start",
        "on_pub_stop",
        "on_sub_start",
        "on_sub_stop",
    ] {
        toml.push_str(&format!("{event} = \"http://127.0.0.1:{port}/{event}\"\n"));
    }
    TempConfig::new(&toml)
}

/// A tiny HTTP server that answers 200 to every request and records (path, JSON body).
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<(String, Value)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (got2, stop2) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        if let Some(request) = read_request(s) {
                            got2.lock().expect("lock").push(request);
                        }
                    }
                    Err(_) => sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver {
            port,
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything received so far.
    fn events(&self) -> Vec<(String, Value)> {
        self.got.lock().expect("lock").clone()
    }

    /// The bodies received on `path`.
    fn bodies(&self, path: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v)
            .collect()
    }

    /// Waits (bounded) until `path` was received, returns its first body.
    fn wait_for(&self, path: &str, limit: Duration, server: &Server) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self.bodies(path).into_iter().next() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never arrived; got {:?}\nlog:\n{}",
                self.events().iter().map(|(p, _)| p).collect::<Vec<_>>(),
                server.log()
            );
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (head, then Content-Length bytes of body), answers 200, returns the path
/// and the body parsed as JSON.
fn read_request(mut s: TcpStream) -> Option<(String, Value)> {
    s.set_nonblocking(false).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(5);
    let (head, body) = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= pos + 4 + len {
                break (head, buf[pos + 4..pos + 4 + len].to_vec());
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let mut request_line = head.lines().next()?.split_whitespace();
    assert_eq!(request_line.next(), Some("POST"), "{head}");
    let path = request_line.next()?.to_owned();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {body:?}"));
    Some((path, value))
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string: {v}"))
}

#[test]
fn every_event_reaches_the_receiver_with_lal_fields() {
    let file = media("h264_aac_10s.flv");
    let receiver = Receiver::start();
    let cfg = config(receiver.port);
    let server = Server::start_with(WORKERS, &cfg.args());
    let limit = Duration::from_secs(10);

    let info = receiver.wait_for("/on_server_start", limit, &server);
    for field in [
        "server_id",
        "bin_info",
        "lal_version",
        "api_version",
        "notify_version",
        "start_time",
    ] {
        assert!(!text(&info, field).is_empty(), "{field}: {info}");
    }

    let mut publisher = ffmpeg_publish(&file, &server.rtmp_url("live/hook"), &[]);
    let pub_start = receiver.wait_for("/on_pub_start", limit, &server);
    let player = HttpFlvPlayer::start(server.http_port, "/live/hook.flv");
    let sub_start = receiver.wait_for("/on_sub_start", limit, &server);
    sleep(Duration::from_secs(2));
    assert!(
        player.received() > 0 && player.is_flv(),
        "the player got FLV"
    );
    drop(player);
    let sub_stop = receiver.wait_for("/on_sub_stop", limit, &server);
    let published = publisher
        .wait_for(Duration::from_secs(40))
        .expect("the publisher finishes in time");
    assert!(
        published.success(),
        "publisher failed; log:\n{}",
        server.log()
    );
    let pub_stop = receiver.wait_for("/on_pub_stop", limit, &server);

    for (label, v) in [
        ("pub_start", &pub_start),
        ("pub_stop", &pub_stop),
        ("sub_start", &sub_start),
        ("sub_stop", &sub_stop),
    ] {
        assert_eq!(v["server_id"], "1", "{label}: {v}");
        assert_eq!(v["app_name"], "live", "{label}: {v}");
        assert_eq!(v["stream_name"], "hook", "{label}: {v}");
        assert!(
            text(v, "remote_addr").starts_with("127.0.0.1:"),
            "{label}: {v}"
        );
        assert!(text(v, "url").contains("/live/hook"), "{label}: {v}");
        assert_eq!(v["url_param"], "", "{label}: {v}");
        for field in ["read_bytes_sum", "wrote_bytes_sum"] {
            assert!(v[field].is_u64(), "{label}.{field}: {v}");
        }
    }
    // Publisher: RTMP, its id as the stats API shows it, the same at start and stop.
    assert_eq!(pub_start["protocol"], "RTMP");
    assert_eq!(pub_start["base_type"], "PUB");
    assert!(text(&pub_start, "session_id").starts_with("RTMPPUBSUB"));
    assert!(text(&pub_start, "url").starts_with("rtmp://"));
    assert_eq!(pub_stop["session_id"], pub_start["session_id"]);
    assert_eq!(pub_stop["protocol"], "RTMP");
    assert_eq!(pub_start["has_in_session"], true);
    assert_eq!(pub_stop["has_in_session"], false, "{pub_stop}");
    assert!(
        pub_stop["read_bytes_sum"].as_u64() > Some(100_000),
        "the stop carries the final count: {pub_stop}"
    );
    // Player: HTTP-FLV is lal's "FLV".
    assert_eq!(sub_start["protocol"], "FLV");
    assert_eq!(sub_start["base_type"], "SUB");
    assert!(text(&sub_start, "session_id").starts_with("FLVSUB"));
    assert!(text(&sub_start, "url").ends_with("/live/hook.flv"));
    assert_eq!(sub_stop["session_id"], sub_start["session_id"]);
    assert_eq!(sub_start["has_out_session"], true);
    assert_eq!(sub_start["has_in_session"], true, "{sub_start}");
    assert_eq!(sub_stop["has_out_session"], false, "{sub_stop}");
    assert!(sub_stop["wrote_bytes_sum"].as_u64() > Some(0), "{sub_stop}");

    // Starts come before their stops.
    let paths: Vec<String> = receiver.events().into_iter().map(|(p, _)| p).collect();
    let at = |p: &str| paths.iter().position(|q| q == p).expect("received");
    assert!(at("/on_server_start") < at("/on_pub_start"), "{paths:?}");
    assert!(at("/on_pub_start") < at("/on_pub_stop"), "{paths:?}");
    assert!(at("/on_sub_start") < at("/on_sub_stop"), "{paths:?}");

    // on_update: lal's groups, the live stream with the publisher the events named.
    let updates = receiver.bodies("/on_update");
    assert!(!updates.is_empty(), "no on_update in {paths:?}");
    for u in &updates {
        assert_eq!(u["server_id"], "1", "{u}");
        assert!(u["groups"].is_array(), "{u}");
    }
    // Other workers' snapshots are up to about a second old, so an early update may show the
    // stream's player before its publisher: look for one that shows the publisher.
    let live = updates
        .iter()
        .flat_map(|u| u["groups"].as_array().cloned().unwrap_or_default())
        .find(|g| g["stream_name"] == "hook" && g["pub"]["session_id"] != "")
        .unwrap_or_else(|| panic!("no update showed live/hook with its publisher: {updates:?}"));
    assert_eq!(live["app_name"], "live");
    assert_eq!(live["pub"]["session_id"], pub_start["session_id"], "{live}");
    assert_eq!(live["video_codec"], "H264");
}

#[test]
fn a_receiver_that_never_answers_does_not_hold_up_media() {
    let file = media("h264_aac_10s.flv");
    // Accepts every connection and keeps it open without reading or answering.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let silent = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            sleep(Duration::from_millis(10));
        }
    });
    let cfg = config(port);
    let server = Server::start_with(WORKERS, &cfg.args());

    let started = Instant::now();
    let mut publisher = ffmpeg_publish(&file, &server.rtmp_url("live/hook"), &[]);
    sleep(Duration::from_millis(500));
    let player = HttpFlvPlayer::start(server.http_port, "/live/hook.flv");
    sleep(Duration::from_secs(3));
    let after_3s = player.received();
    assert!(
        after_3s > 50_000 && player.is_flv(),
        "the player got {after_3s} bytes; log:\n{}",
        server.log()
    );
    drop(player);
    // A second player, while the webhooks to the silent receiver are still pending.
    let second = HttpFlvPlayer::start(server.http_port, "/live/hook.flv");
    sleep(Duration::from_secs(2));
    assert!(second.received() > 0 && second.is_flv(), "second player");
    drop(second);
    let published = publisher
        .wait_for(Duration::from_secs(40))
        .expect("the publisher finishes");
    assert!(
        published.success(),
        "publisher failed; log:\n{}",
        server.log()
    );
    // A 10 s file at real time: the publisher was never held back (generous bound for CI).
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "publishing took {took:?}");
    // The sender did try, and gave up on the receiver with a (rate-limited) warning.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("webhook on_") && Instant::now() < deadline {
        sleep(Duration::from_millis(100));
    }
    let log = server.log();
    assert!(
        log.contains("webhook on_") && log.contains("failed"),
        "no webhook failure logged:\n{log}"
    );
    stop.store(true, Ordering::Relaxed);
    let _ = silent.join();
}
