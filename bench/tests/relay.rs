//! End to end: a tiny in-process RTMP relay built from `ServerSession`, the `rill-bench`
//! publisher sending a real file with stamps, and 20 `rill-bench` players.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rill_bench::net::OutQueue;
use rill_core::amf::Value;
use rill_core::rtmp::server::{ServerConfig, ServerEvent, ServerSession};

const LISTENER: Token = Token(usize::MAX);
/// A player queue above this is dropped (the relay must not grow without bound).
const MAX_QUEUE: usize = 16 * 1024 * 1024;

struct Conn {
    sock: TcpStream,
    session: ServerSession,
    out: OutQueue,
    /// Message stream id this connection plays on.
    playing: Option<u32>,
}

/// What late joiners need before media: metadata and the codec configurations.
#[derive(Default)]
struct StreamCache {
    metadata: Option<Value>,
    configs: HashMap<u8, (u32, Bytes)>,
}

fn is_config(type_id: u8, payload: &[u8]) -> bool {
    // AVC sequence header (0x17 0x00) or AAC sequence header (0xAF 0x00).
    payload.get(1) == Some(&0)
        && matches!(
            (type_id, payload.first()),
            (9, Some(0x17)) | (8, Some(0xAF))
        )
}

fn flush(conn: &mut Conn) -> io::Result<()> {
    while let Some(b) = conn.session.poll_transmit() {
        conn.out.push(b);
    }
    conn.out.write_to(&mut conn.sock).map(|_| ())
}

/// Runs the relay until `stop`; sets `publishing` once a publisher is accepted.
fn relay(listener: TcpListener, stop: Arc<AtomicBool>, publishing: Arc<AtomicBool>) {
    let mut poll = Poll::new().unwrap();
    let mut listener = listener;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(256);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next_id = 0usize;
    let mut cache = StreamCache::default();
    let mut buf = vec![0u8; 64 * 1024];
    let random = vec![7u8; 1536];
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        let now_ms = start.elapsed().as_millis() as u64;
        let mut ready: Vec<usize> = Vec::new();
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((mut sock, _)) = listener.accept() {
                    let id = next_id;
                    next_id += 1;
                    poll.registry()
                        .register(
                            &mut sock,
                            Token(id),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .unwrap();
                    let session = ServerSession::new(ServerConfig::default(), &random, now_ms);
                    conns.insert(
                        id,
                        Conn {
                            sock,
                            session,
                            out: OutQueue::default(),
                            playing: None,
                        },
                    );
                }
            } else {
                ready.push(ev.token().0);
            }
        }
        for id in ready {
            let mut media: Vec<(u8, u32, Bytes)> = Vec::new();
            let mut metadata: Option<Value> = None;
            let mut closed = false;
            let Some(conn) = conns.get_mut(&id) else {
                continue;
            };
            loop {
                match conn.sock.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        if conn.session.handle_input(&buf[..n], now_ms).is_err() {
                            closed = true;
                            break;
                        }
                        // Messages behind a connect or publish wait for its answer: resume
                        // after answering and drain again until nothing new comes.
                        let mut drained = false;
                        while !drained {
                            drained = true;
                            while let Some(ev) = conn.session.poll_event() {
                                drained = false;
                                match ev {
                                    // The answers' one error, "not pending", means the
                                    // client withdrew the request: nothing to do.
                                    ServerEvent::ConnectRequest { .. } => {
                                        let _ = conn.session.accept_connect();
                                    }
                                    ServerEvent::PublishRequest { stream_id, .. } => {
                                        let _ = conn.session.accept_publish(stream_id);
                                        publishing.store(true, Ordering::Relaxed);
                                    }
                                    ServerEvent::PlayRequest { stream_id, .. } => {
                                        let _ = conn.session.accept_play(stream_id);
                                        conn.playing = Some(stream_id);
                                        if let Some(m) = &cache.metadata {
                                            conn.session.send_metadata(stream_id, m);
                                        }
                                        for (type_id, (ts, body)) in &cache.configs {
                                            conn.session.send_media(stream_id, *type_id, *ts, body);
                                        }
                                    }
                                    ServerEvent::Media {
                                        type_id,
                                        timestamp,
                                        payload,
                                        ..
                                    } => media.push((type_id, timestamp, payload)),
                                    ServerEvent::Metadata { value, .. } => metadata = Some(value),
                                    _ => {}
                                }
                            }
                            if conn.session.resume().is_err() {
                                closed = true;
                            }
                        }
                        if closed {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            if !closed && flush(conn).is_err() {
                closed = true;
            }
            if closed {
                conns.remove(&id);
            }
            if let Some(m) = metadata {
                cache.metadata = Some(m);
            }
            for (type_id, ts, payload) in media {
                if is_config(type_id, &payload) {
                    cache.configs.insert(type_id, (ts, payload.clone()));
                }
                let mut dead = Vec::new();
                for (pid, p) in conns.iter_mut() {
                    let Some(stream_id) = p.playing else { continue };
                    p.session.send_media(stream_id, type_id, ts, &payload);
                    if flush(p).is_err() || p.out.len() > MAX_QUEUE {
                        dead.push(*pid);
                    }
                }
                for pid in dead {
                    conns.remove(&pid);
                }
            }
        }
    }
}

fn media_file() -> Option<PathBuf> {
    let name = "h264_aac_10s.flv";
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("RILL_MEDIA_DIR") {
        dirs.push(d.into());
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/media"));
    dirs.push(PathBuf::from("/work/shared/media"));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

#[test]
fn publish_and_twenty_players_through_a_relay() {
    let file = media_file().expect("h264_aac_10s.flv not found (set RILL_MEDIA_DIR)");
    let flv = rill_bench::publish::load_flv(&file).unwrap();
    let payload: usize = flv.tags.iter().map(|t| t.body.len()).sum();
    let span_ms = flv
        .tags
        .iter()
        .map(|t| t.timestamp)
        .max()
        .unwrap_or(1)
        .max(1);
    let file_kbps = payload as f64 * 8.0 / f64::from(span_ms);

    let listener = TcpListener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = Arc::new(AtomicBool::new(false));
    let server = {
        let (stop, publishing) = (stop.clone(), publishing.clone());
        thread::spawn(move || relay(listener, stop, publishing))
    };
    let url = format!("rtmp://127.0.0.1:{}/live/test", addr.port());
    let bin = env!("CARGO_BIN_EXE_rill-bench");

    let mut publisher = Command::new(bin)
        .args([
            "publish",
            "--url",
            &url,
            "--stamp",
            "--quiet",
            "--duration",
            "5",
            "--file",
        ])
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !publishing.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        publishing.load(Ordering::Relaxed),
        "publisher never started"
    );

    let play = Command::new(bin)
        .args([
            "play",
            "--url",
            &url,
            "--players",
            "20",
            "--rate",
            "100",
            "--duration",
            "3",
            "--quiet",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&play.stderr);
    let summary: serde_json::Value = serde_json::from_slice(&play.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}); stderr:\n{stderr}"));
    eprintln!("{summary:#}");

    let publish_status = publisher.wait().unwrap();
    let mut publish_out = String::new();
    publisher
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut publish_out)
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let _ = io::stderr().flush();

    assert!(play.status.success(), "play failed: {stderr}");
    assert!(publish_status.success(), "publish failed: {publish_out}");
    assert_eq!(summary["connected"], 20, "{summary}");
    assert_eq!(summary["failed_to_connect"], 0);
    assert_eq!(summary["disconnected"], 0);
    assert_eq!(summary["no_video"], 0);
    let min_kbps = summary["bitrate_kbps"]["min"].as_f64().unwrap();
    assert!(
        min_kbps > 0.5 * file_kbps,
        "slowest player {min_kbps} kbit/s, file {file_kbps} kbit/s"
    );
    assert_eq!(summary["behind"], 0);
    // Stamps made it through the relay into every player.
    assert_eq!(summary["stamped_players"], 20);
    assert!(summary["delay_ms"]["p50"].as_f64().unwrap() < 1000.0);
    let p: serde_json::Value = serde_json::from_str(publish_out.trim()).unwrap();
    assert!(p["stamps"].as_u64().unwrap() > 50, "{p}");
}
