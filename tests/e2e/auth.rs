//! lal's simple auth end to end: with `[auth]` checking RTMP publishers, HTTP-FLV players and
//! RTSP players, requests without `?lal_secret=md5hex(key + stream)` are refused and requests
//! with it work, on the real binary with ffmpeg.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rill_e2e::*;

const KEY: &str = "e2e-key";
const LIMIT: Duration = Duration::from_secs(20);

/// A server checking RTMP publish, HTTP-FLV play and RTSP play (and nothing else).
fn server() -> (Server, TempConfig) {
    let cfg = TempConfig::new(&format!(
        "[auth]\nkey = \"{KEY}\"\npublish_rtmp = true\nplay_http_flv = true\nplay_rtsp = true\n"
    ));
    (Server::start_with(2, &cfg.args()), cfg)
}

/// The secret of stream `name` (without app), computed here with `md5sum` as a client would.
fn secret(name: &str) -> String {
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run md5sum");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{KEY}{name}").as_bytes())
        .expect("feed md5sum");
    drop(stdin);
    let out = child.wait_with_output().expect("md5sum output");
    let hex = String::from_utf8_lossy(&out.stdout);
    let hex = hex.split_whitespace().next().unwrap_or_default().to_owned();
    assert_eq!(hex.len(), 32, "md5sum gave {hex:?}");
    hex
}

/// Opens a connection to `port`, sends `request` and reads until the head ends (bounded):
/// returns the head and the bytes after it (at least `want` of them unless the peer closed).
fn exchange(port: u16, request: &str, want: usize) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(LIMIT)).expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let deadline = Instant::now() + LIMIT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if buf.len() >= end + 4 + want {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                return (head, buf[end + 4..].to_vec());
            }
        }
        match s.read(&mut chunk) {
            Ok(n) if n > 0 && Instant::now() < deadline => buf.extend_from_slice(&chunk[..n]),
            _ => {
                let end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                let end = end.unwrap_or(buf.len());
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                return (head, buf.get(end + 4..).unwrap_or_default().to_vec());
            }
        }
    }
}

fn http_get_head(port: u16, path: &str, want: usize) -> (String, Vec<u8>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    exchange(port, &req, want)
}

fn rtsp_describe(port: u16, path: &str) -> String {
    let req = format!(
        "DESCRIBE rtsp://127.0.0.1:{port}/{path} RTSP/1.0\r\nCSeq: 1\r\n\
         Accept: application/sdp\r\n\r\n"
    );
    exchange(port, &req, 0).0
}

#[test]
fn rtmp_publish_without_the_secret_is_refused() {
    let (server, _cfg) = server();
    for (label, url) in [
        ("no secret", server.rtmp_url("live/unsigned")),
        (
            "another stream's secret",
            server.rtmp_url(&format!("live/unsigned?lal_secret={}", secret("other"))),
        ),
    ] {
        let mut ffmpeg = ffmpeg_publish(&media("h264_aac_10s.flv"), &url, &[]);
        let status = ffmpeg
            .wait_for(LIMIT)
            .unwrap_or_else(|| panic!("{label}: ffmpeg still publishing: the server took it"));
        assert!(!status.success(), "{label}: ffmpeg published");
    }
    // Nothing was published: a player (HTTP-TS, not checked) finds no stream.
    let (head, _) = http_get_head(server.http_port, "/live/unsigned.ts", 0);
    assert!(!head.starts_with("HTTP/1.1 200"), "{head}");
    let log = server.log();
    let refusals = log
        .lines()
        .filter(|l| l.contains("RTMP publish refused") && l.contains("live/unsigned"))
        .count();
    assert_eq!(refusals, 2, "one log line per refusal:\n{log}");
    assert!(
        log.contains("no lal_secret") && log.contains("wrong lal_secret"),
        "{log}"
    );
}

#[test]
fn signed_publish_plays_only_with_the_secret() {
    let (server, _cfg) = server();
    let name = "signed";
    let signed = format!("live/{name}?lal_secret={}", secret(name));
    let mut ffmpeg = ffmpeg_publish(&media("h264_aac_30s.flv"), &server.rtmp_url(&signed), &[]);

    // HTTP-FLV: 403 without the secret, FLV bytes with it (a player waits for the publisher).
    let (head, _) = http_get_head(server.http_port, "/live/signed.flv", 0);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let path = format!("/live/{name}.flv?lal_secret={}", secret(name));
    let (head, body) = http_get_head(server.http_port, &path, 13);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        body.starts_with(b"FLV\x01"),
        "{:?}",
        &body[..body.len().min(16)]
    );
    // HTTP-TS is not checked in this configuration.
    let (head, _) = http_get_head(server.http_port, "/live/signed.ts", 0);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // RTSP: 403 without the secret, 200 with an SDP with it.
    let head = rtsp_describe(server.rtsp_port, "live/signed");
    assert!(head.starts_with("RTSP/1.0 403"), "{head}");
    let head = rtsp_describe(server.rtsp_port, &signed);
    assert!(head.starts_with("RTSP/1.0 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("application/sdp"),
        "{head}"
    );

    // The stream is `live/signed`: the query is not part of its name.
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("session start")
            && l.contains("publish")
            && l.contains("stream=live/signed ")),
        "{log}"
    );
    assert!(
        ffmpeg.wait_for(Duration::from_millis(10)).is_none(),
        "ffmpeg stopped"
    );
}
