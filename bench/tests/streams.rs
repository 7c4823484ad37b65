//! `--streams`: one `rill-bench publish` process publishes a file to several stream names,
//! and one `rill-bench play` run spreads its players over several names.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rill_core::rtmp::server::{ServerConfig, ServerEvent, ServerSession};

fn media_file() -> PathBuf {
    let name = "h264_aac_10s.flv";
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("RILL_MEDIA_DIR") {
        dirs.push(d.into());
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/media"));
    dirs.push(PathBuf::from("/work/shared/media"));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .expect("h264_aac_10s.flv not found (set RILL_MEDIA_DIR)")
}

/// Media payload bytes received per published stream name.
type Received = Arc<Mutex<BTreeMap<String, u64>>>;

/// Accepts every connect and publish on one connection and counts its media bytes.
fn ingest(mut sock: TcpStream, received: Received, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut session = ServerSession::new(ServerConfig::default(), &[7u8; 1536], 0);
    let mut name = None;
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        };
        if session.handle_input(&buf[..n], 0).is_err() {
            return;
        }
        // Messages behind a connect or publish wait for its answer: answer, resume, repeat.
        let mut drained = false;
        while !drained {
            drained = true;
            while let Some(ev) = session.poll_event() {
                drained = false;
                match ev {
                    ServerEvent::ConnectRequest { .. } => {
                        let _ = session.accept_connect();
                    }
                    ServerEvent::PublishRequest {
                        stream_id,
                        stream_name,
                        ..
                    } => {
                        let _ = session.accept_publish(stream_id);
                        received.lock().unwrap().insert(stream_name.clone(), 0);
                        name = Some(stream_name);
                    }
                    ServerEvent::Media { payload, .. } => {
                        if let Some(name) = &name {
                            *received.lock().unwrap().entry(name.clone()).or_default() +=
                                payload.len() as u64;
                        }
                    }
                    _ => {}
                }
            }
            if session.resume().is_err() {
                return;
            }
        }
        while let Some(b) = session.poll_transmit() {
            if sock.write_all(&b).is_err() {
                return;
            }
        }
    }
}

/// Runs `serve` on a thread per accepted connection until `stop`.
fn server(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    serve: impl Fn(TcpStream, Arc<AtomicBool>) + Send + Sync + 'static,
) -> thread::JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    let serve = Arc::new(serve);
    thread::spawn(move || {
        let mut conns = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((sock, _)) => {
                    sock.set_nonblocking(false).unwrap();
                    let (serve, stop) = (serve.clone(), stop.clone());
                    conns.push(thread::spawn(move || serve(sock, stop)));
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
        for c in conns {
            c.join().unwrap();
        }
    })
}

#[test]
fn publish_streams_publishes_to_every_name() {
    let file = media_file();
    let flv = rill_bench::publish::load_flv(&file).unwrap();
    let payload: u64 = flv.tags.iter().map(|t| t.body.len() as u64).sum();
    let span_ms = flv.tags.iter().map(|t| t.timestamp).max().unwrap().max(1);
    let file_mbps = payload as f64 * 8.0 / f64::from(span_ms) / 1000.0;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let received: Received = Arc::default();
    let rx = received.clone();
    let srv = server(listener, stop.clone(), move |sock, stop| {
        ingest(sock, rx.clone(), stop)
    });

    let url = format!("rtmp://127.0.0.1:{port}/live/test");
    let out = Command::new(env!("CARGO_BIN_EXE_rill-bench"))
        .args(["publish", "--url", &url, "--streams", "4", "--rate", "20"])
        .args(["--duration", "3", "--quiet", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "publish failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}); stderr:\n{stderr}"));
    eprintln!("{report}");

    let received = received.lock().unwrap();
    let names: Vec<&str> = received.keys().map(String::as_str).collect();
    assert_eq!(names, ["test_0", "test_1", "test_2", "test_3"]);
    // Each publication ran about 3 s in real time: over 2 s and under 5 s of the file's rate.
    for (name, bytes) in received.iter() {
        let secs = *bytes as f64 * 8.0 / 1e6 / file_mbps;
        assert!(
            (2.0..5.0).contains(&secs),
            "{name}: {bytes} bytes, {secs:.1} s"
        );
    }
    assert_eq!(report["streams"], 4);
    let sent = report["payload_bytes"].as_u64().unwrap();
    assert_eq!(sent, received.values().sum::<u64>(), "{report}");
    let aggregate = report["aggregate_mbps"].as_f64().unwrap();
    assert!(
        (3.0 * file_mbps..5.0 * file_mbps).contains(&aggregate),
        "aggregate {aggregate} Mbit/s, file {file_mbps} Mbit/s"
    );
}

#[test]
fn play_streams_spreads_players_over_names() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let paths: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = paths.clone();
    // Answers every request with an FLV head and keeps the connection open.
    let srv = server(listener, stop.clone(), move |mut sock, stop| {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let line = String::from_utf8_lossy(&head);
        let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
        seen.lock().unwrap().push(path);
        let _ = sock.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\nFLV\x01\x05\0\0\0\x09\0\0\0\0",
        );
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
    });
    let url = format!("http://127.0.0.1:{port}/live/test.flv");
    let out = Command::new(env!("CARGO_BIN_EXE_rill-bench"))
        .args([
            "play",
            "--proto",
            "http-flv",
            "--url",
            &url,
            "--streams",
            "3",
        ])
        .args([
            "--players",
            "6",
            "--rate",
            "100",
            "--duration",
            "1",
            "--quiet",
        ])
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}); stderr:\n{stderr}"));
    assert_eq!(summary["connected"], 6, "{summary}");
    assert_eq!(summary["streams"], 3);
    let mut paths = paths.lock().unwrap().clone();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/live/test_0.flv",
            "/live/test_0.flv",
            "/live/test_1.flv",
            "/live/test_1.flv",
            "/live/test_2.flv",
            "/live/test_2.flv"
        ]
    );
}
