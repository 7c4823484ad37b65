//! TLS listeners with real clients: a certificate made by the binary's own `cert --self-signed`,
//! ffmpeg publishing over RTMPS, ffprobe playing over RTMPS, RTSPS (interleaved), HTTPS-FLV and
//! HLS over HTTPS, curl
//! on the HTTPS API, openssl on the protocol versions, and a plain-text client on a TLS port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use rill_e2e::*;

const WORKERS: usize = 2;

/// Waits (bounded) until `port` accepts connections.
fn wait_port(port: u16) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        sleep(Duration::from_millis(50));
    }
}

/// Writes a dev certificate into `dir` with the server binary's own command.
fn make_cert(dir: &Path) {
    let out = run_with_timeout(
        Command::new(server_binary())
            .args(["cert", "--self-signed"])
            .arg(dir)
            .args(["--host", "127.0.0.1", "--host", "localhost"]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "cert: {out:?}");
    assert!(dir.join("cert.pem").is_file() && dir.join("key.pem").is_file());
}

fn assert_av(label: &str, streams: &[ProbedStream], min_video_frames: u64) {
    let v = stream_of(streams, "video").unwrap_or_else(|| panic!("{label}: no video {streams:?}"));
    let a = stream_of(streams, "audio").unwrap_or_else(|| panic!("{label}: no audio {streams:?}"));
    assert_eq!(
        (v.codec_name.as_str(), a.codec_name.as_str()),
        ("h264", "aac"),
        "{label}"
    );
    assert!(
        v.frames >= min_video_frames && a.frames > 0,
        "{label}: {} video, {} audio frames decoded",
        v.frames,
        a.frames
    );
}

fn curl(url: &str) -> String {
    require_tool("curl");
    let out = run_with_timeout(
        Command::new("curl").args(["-sk", "--max-time", "10", url]),
        Duration::from_secs(15),
    );
    assert!(out.status.success(), "curl {url}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl s_client` on `port` with `version_flag` (old versions allowed on the client side);
/// its output.
fn s_client(port: u16, version_flag: &str) -> String {
    let out = run_with_timeout(
        Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args([
                version_flag,
                "-alpn",
                "http/1.1",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ]),
        Duration::from_secs(15),
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn publish_and_play_over_rtmps_https_and_hls_with_api_and_version_checks() {
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let ref_video = stream_of(&reference, "video")
        .expect("reference video")
        .frames;
    let cert_dir = std::env::temp_dir().join(format!("rill-e2e-tls-{}", free_port()));
    make_cert(&cert_dir);
    let [rtmps, https, rtsps] = free_ports();
    let cfg = TempConfig::new(&format!(
        "[tls]\ncert = \"{c}/cert.pem\"\nkey = \"{c}/key.pem\"\n\
         [rtmps]\naddr = \"127.0.0.1:{rtmps}\"\n[https]\naddr = \"127.0.0.1:{https}\"\n\
         [rtsps]\naddr = \"127.0.0.1:{rtsps}\"\n",
        c = cert_dir.display()
    ));
    let mut server = Server::start_with(WORKERS, &cfg.args());
    for port in [rtmps, https, rtsps] {
        wait_port(port);
    }
    // Players first: they wait for the publisher and see the stream from its first frame.
    let probes: Vec<_> = [
        format!("rtmps://127.0.0.1:{rtmps}/live/x"),
        format!("https://127.0.0.1:{https}/live/x.flv"),
    ]
    .into_iter()
    .map(|url| std::thread::spawn(move || (ffprobe(&url, Duration::from_secs(60)), url)))
    .chain(std::iter::once(std::thread::spawn(move || {
        let url = format!("rtsps://127.0.0.1:{rtsps}/live/x");
        (ffprobe_rtsp(&url, "tcp", Duration::from_secs(60)), url)
    })))
    .collect();
    sleep(Duration::from_millis(500));
    let mut publisher = ffmpeg_publish(&file, &format!("rtmps://127.0.0.1:{rtmps}/live/x"), &[]);

    // A plain-text client on the HTTPS port is closed, unanswered, while the players go on.
    sleep(Duration::from_secs(2));
    let mut plain = TcpStream::connect(("127.0.0.1", https)).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    plain
        .write_all(b"GET /live/x.flv HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    match plain.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("plain client not closed: {e}"),
    }
    assert!(!got.starts_with(b"HTTP/"), "plain text answered: {got:?}");

    let api = curl(&format!("https://127.0.0.1:{https}/api/stat/all_group"));
    assert!(
        api.contains("\"stream_name\":\"x\""),
        "API over HTTPS: {api}"
    );

    if which("openssl") {
        let v13 = s_client(https, "-tls1_3");
        assert!(v13.contains("TLSv1.3"), "TLS 1.3 not negotiated: {v13}");
        assert!(v13.contains("ALPN protocol: http/1.1"), "ALPN: {v13}");
        let v11 = s_client(https, "-tls1_1");
        assert!(
            v11.contains("TLSv1.1"),
            "openssl did not try TLS 1.1: {v11}"
        );
        assert!(
            !v11.contains("Cipher is TLS") && !v11.contains("New, TLSv1.1"),
            "TLS 1.1 accepted: {v11}"
        );
    }

    let status = publisher.wait_for(Duration::from_secs(40));
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg over rtmps failed: {status:?}"
    );
    for p in probes {
        let ((streams, out), url) = p.join().expect("probe thread");
        assert!(out.status.success(), "{url}: {out:?}");
        assert_av(&url, &streams, ref_video * 9 / 10);
    }
    // HLS over HTTPS: the live playlist has ended, its segments are served over TLS too.
    sleep(Duration::from_millis(300));
    let m3u8 = format!("https://127.0.0.1:{https}/live/x.m3u8");
    let playlist = curl(&m3u8);
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let (streams, out) = ffprobe(&m3u8, Duration::from_secs(40));
    assert!(out.status.success(), "{m3u8}: {out:?}");
    assert_av(&m3u8, &streams, 1);
    assert!(server.is_running(), "server died: {}", server.log());
    let _ = std::fs::remove_dir_all(cert_dir);
}

/// Whether `tool` runs here.
fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_missing_key_is_named_at_start() {
    let cert_dir = std::env::temp_dir().join(format!("rill-e2e-tls-bad-{}", free_port()));
    make_cert(&cert_dir);
    let cfg = TempConfig::new(&format!(
        "[tls]\ncert = \"{c}/cert.pem\"\nkey = \"{c}/missing.pem\"\n",
        c = cert_dir.display()
    ));
    let out = run_with_timeout(
        Command::new(server_binary()).args(cfg.args()),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.pem"), "{err}");
    let _ = std::fs::remove_dir_all(cert_dir);
}
