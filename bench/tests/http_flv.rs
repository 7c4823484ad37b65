//! End to end for HTTP-FLV players: a small threaded server streams a real file in real time
//! as a chunked FLV body to each client.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rill_core::flv::{write_file_header, write_tag, Tag};

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

fn chunk(sock: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    sock.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
    sock.write_all(data)?;
    sock.write_all(b"\r\n")
}

/// Serves one client: the head, the FLV header, then every tag when it is due.
fn serve(mut sock: TcpStream, tags: Arc<Vec<Tag>>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"GET /live/test.flv HTTP/1.1\r\n"));
    sock.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    let mut out = BytesMut::new();
    write_file_header(true, true, &mut out);
    chunk(&mut sock, &out)?;
    let start = Instant::now();
    for tag in tags.iter() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let due = start + Duration::from_millis(u64::from(tag.timestamp));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        out.clear();
        write_tag(tag.tag_type, tag.timestamp, &tag.body, &mut out);
        chunk(&mut sock, &out)?;
    }
    sock.write_all(b"0\r\n\r\n")
}

#[test]
fn http_flv_players() {
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
    let tags = Arc::new(flv.tags);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let accept_stop = stop.clone();
    let acceptor = thread::spawn(move || {
        let mut workers = Vec::new();
        for _ in 0..10 {
            let Ok((sock, _)) = listener.accept() else {
                break;
            };
            let (tags, stop) = (tags.clone(), accept_stop.clone());
            workers.push(thread::spawn(move || {
                let _ = serve(sock, tags, stop);
            }));
        }
        workers
    });

    let url = format!("http://127.0.0.1:{port}/live/test.flv");
    let play = Command::new(env!("CARGO_BIN_EXE_rill-bench"))
        .args(["play", "--proto", "http-flv", "--url", &url])
        .args([
            "--players",
            "10",
            "--rate",
            "100",
            "--duration",
            "2",
            "--quiet",
        ])
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in acceptor.join().unwrap() {
        w.join().unwrap();
    }
    let stderr = String::from_utf8_lossy(&play.stderr);
    let summary: serde_json::Value = serde_json::from_slice(&play.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}); stderr:\n{stderr}"));
    eprintln!("{summary:#}");
    assert!(play.status.success(), "play failed: {stderr}");
    assert_eq!(summary["proto"], "http-flv");
    assert_eq!(summary["connected"], 10);
    assert_eq!(summary["disconnected"], 0);
    assert_eq!(summary["no_video"], 0);
    assert_eq!(summary["behind"], 0);
    // The file carries no stamps.
    assert_eq!(summary["delay_ms"], "n/a");
    let min_kbps = summary["bitrate_kbps"]["min"].as_f64().unwrap();
    assert!(min_kbps > 0.5 * file_kbps, "{min_kbps} vs {file_kbps}");
}
