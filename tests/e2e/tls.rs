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

/// A client-side TLS helper for these tests: accepts any certificate (the servers are
/// self-signed) and keeps what it was shown.
mod tls_client {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct AnyCert;

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    #[allow(deprecated)]
    pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A client connection for `localhost` (not connected).
    pub fn connection() -> ClientConnection {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        ClientConnection::new(Arc::new(config), "localhost".try_into().expect("name"))
            .expect("client")
    }

    /// The bytes of a real ClientHello.
    pub fn client_hello() -> Vec<u8> {
        let mut c = connection();
        let mut hello = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut hello).expect("hello");
        }
        hello
    }

    /// A TLS stream to `127.0.0.1:port`, handshake done.
    pub fn connect(port: u16) -> rustls::StreamOwned<ClientConnection, TcpStream> {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut s = rustls::StreamOwned::new(connection(), sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("handshake");
        }
        s
    }

    /// The certificate a new handshake on `port` presents (DER).
    pub fn presented(port: u16) -> Vec<u8> {
        let s = connect(port);
        s.conn.peer_certificates().expect("certificates")[0].to_vec()
    }

    /// The first certificate of a PEM file (DER).
    pub fn pem_cert(path: &std::path::Path) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(path).expect("read cert");
        CertificateDer::pem_slice_iter(&pem)
            .next()
            .expect("a certificate")
            .expect("PEM")
            .to_vec()
    }

    /// A one-shot HTTPS receiver on `listener` with the PEM pair `cert`/`key`: answers the first
    /// request 200 and hands back its head and body (or the TLS error).
    pub fn receive_one(
        listener: std::net::TcpListener,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> std::thread::JoinHandle<Result<String, String>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::PrivateKeyDer;
        let chain = CertificateDer::pem_file_iter(cert)
            .expect("cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("chain");
        let key = PrivateKeyDer::from_pem_file(key).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        std::thread::spawn(move || {
            let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            let conn =
                rustls::ServerConnection::new(Arc::new(config)).map_err(|e| e.to_string())?;
            let mut s = rustls::StreamOwned::new(conn, sock);
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err(format!("closed early: {}", String::from_utf8_lossy(&got)));
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                        let _ = s.flush();
                        return Ok(text);
                    }
                }
            }
        })
    }
}

/// The config of a TLS server with its certificate in `dir` and its TLS ports, plus `extra`.
fn tls_config(dir: &Path, [rtmps, https, rtsps]: [u16; 3], extra: &str) -> TempConfig {
    TempConfig::new(&format!(
        "[tls]\ncert = \"{c}/cert.pem\"\nkey = \"{c}/key.pem\"\n\
         [rtmps]\naddr = \"127.0.0.1:{rtmps}\"\n[https]\naddr = \"127.0.0.1:{https}\"\n\
         [rtsps]\naddr = \"127.0.0.1:{rtsps}\"\n{extra}",
        c = dir.display()
    ))
}

/// Waits (bounded) until `server`'s log contains `needle`.
fn wait_log(server: &Server, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if server.log().contains(needle) {
            return true;
        }
        sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn rill_pushes_over_rtmps_to_rill_and_sends_webhooks_over_https() {
    let file = media("h264_aac_10s.flv");
    let cert_dir = std::env::temp_dir().join(format!("rill-e2e-tls-out-{}", free_port()));
    make_cert(&cert_dir);
    // The origin: a TLS server.
    let origin_ports: [u16; 3] = free_ports();
    let origin_cfg = tls_config(&cert_dir, origin_ports, "");
    let origin = Server::start_with(1, &origin_cfg.args());
    let [o_rtmps, o_https, _] = origin_ports;
    wait_port(o_rtmps);
    // Two webhook receivers with the self-signed certificate: one on 127.0.0.1, listed in
    // no_verify; one on `localhost`, verified, which must fail.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hook_port = hook.local_addr().expect("addr").port();
    let strict = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let strict_port = strict.local_addr().expect("addr").port();
    let (cert, key) = (cert_dir.join("cert.pem"), cert_dir.join("key.pem"));
    let start_hook = tls_client::receive_one(hook, &cert, &key);
    let strict_hook = tls_client::receive_one(strict, &cert, &key);
    // The edge: plain, pushing everything of `live` to the origin over RTMPS.
    let edge_cfg = TempConfig::new(&format!(
        "[tls]\nno_verify = [\"127.0.0.1\"]\n\
         [webhook]\nenable = true\n\
         on_pub_start = \"https://127.0.0.1:{hook_port}/on_pub_start\"\n\
         on_pub_stop = \"https://localhost:{strict_port}/on_pub_stop\"\n\
         [[relay.push]]\napp = \"live\"\nurls = [\"rtmps://127.0.0.1:{o_rtmps}/live\"]\n"
    ));
    let mut edge = Server::start_with(1, &edge_cfg.args());
    assert!(
        wait_log(&edge, "127.0.0.1 are NOT verified", Duration::from_secs(5)),
        "no start warning: {}",
        edge.log()
    );
    let mut publisher = ffmpeg_publish(&file, &edge.rtmp_url("live/x"), &[]);
    // The origin's player, over RTMPS too, once the push is up.
    assert!(
        wait_log(&origin, "RTMPS", Duration::from_secs(10)),
        "no RTMPS session on the origin: {}",
        origin.log()
    );
    let probe = std::thread::spawn(move || {
        ffprobe(
            &format!("rtmps://127.0.0.1:{o_rtmps}/live/x"),
            Duration::from_secs(40),
        )
    });
    sleep(Duration::from_secs(2));
    let api = curl(&format!("https://127.0.0.1:{o_https}/api/stat/all_group"));
    assert!(
        api.contains("\"protocol\":\"RTMPS\""),
        "the pushed publisher is an RTMPS session: {api}"
    );
    let metrics = curl(&format!("https://127.0.0.1:{o_https}/metrics"));
    assert!(
        metrics.contains("rill_publishers{protocol=\"rtmps\"} 1"),
        "{metrics}"
    );
    let got = start_hook.join().expect("receiver").expect("on_pub_start");
    assert!(
        got.starts_with("POST /on_pub_start ") && got.contains("\"app_name\":\"live\""),
        "{got}"
    );
    let status = publisher.wait_for(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "ffmpeg: {status:?}");
    let (streams, out) = probe.join().expect("probe");
    assert!(out.status.success(), "ffprobe over rtmps: {out:?}");
    assert_av("origin over rtmps", &streams, 100);
    // on_pub_stop went to a self-signed receiver that is not listed: refused, never sent.
    assert!(
        wait_log(&edge, "webhook on_pub_stop", Duration::from_secs(10)),
        "{}",
        edge.log()
    );
    let log = edge.log();
    let line = log
        .lines()
        .find(|l| l.contains("webhook on_pub_stop"))
        .unwrap_or_default();
    assert!(line.contains("failed"), "{line}");
    let strict_got = strict_hook.join().expect("receiver");
    assert!(
        strict_got.is_err(),
        "a verified target took a self-signed cert: {strict_got:?}"
    );
    assert!(edge.is_running(), "{}", edge.log());
    let _ = std::fs::remove_dir_all(cert_dir);
}

/// Plays `live/x.flv` over WSS on `port`: returns the received byte counts over time and
/// whether the first media frame's payload was an FLV header.
fn wss_flv_player(port: u16, limit: Duration) -> (Vec<(Instant, usize)>, bool) {
    let mut s = tls_client::connect(port);
    s.write_all(
        b"GET /live/x.flv HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("upgrade request");
    let mut got = Vec::new();
    let mut seen = Vec::new();
    let mut buf = [0u8; 16384];
    let end = Instant::now() + limit;
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if got.len() < 4096 {
                    got.extend_from_slice(&buf[..n]);
                }
                let total = seen.last().map_or(0, |&(_, t)| t) + n;
                seen.push((Instant::now(), total));
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    // After the head: a binary frame (0x82) whose payload starts with "FLV".
    let body = text
        .find("\r\n\r\n")
        .map(|i| &got[i + 4..])
        .unwrap_or_default();
    let flv = body.first() == Some(&0x82) && {
        let skip = match body.get(1).map(|b| b & 0x7f) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        };
        body.get(skip..skip + 3) == Some(b"FLV")
    };
    (seen, flv)
}

/// Sends `bytes` on a new connection to `port` (`pace` between bytes when given, else at once)
/// and returns how long the server took to close it (or `None` if it was still open after
/// `limit`).
fn closed_after(
    port: u16,
    bytes: &[u8],
    pace: Option<Duration>,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut sent = 0;
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        let step = match pace {
            Some(_) => 1,
            None => bytes.len(),
        };
        if sent < bytes.len() {
            let end = (sent + step).min(bytes.len());
            if s.write_all(&bytes[sent..end]).is_err() {
                return Some(start.elapsed());
            }
            sent = end;
        }
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
        if let Some(p) = pace {
            sleep(p);
        }
    }
    None
}

#[test]
fn certificate_reload_keeps_players_and_malformed_tls_is_closed_alone() {
    let file = media("h264_aac_10s.flv");
    let cert_dir = std::env::temp_dir().join(format!("rill-e2e-tls-reload-{}", free_port()));
    make_cert(&cert_dir);
    let ports: [u16; 3] = free_ports();
    let [rtmps, https, _] = ports;
    let cfg = tls_config(
        &cert_dir,
        ports,
        "[limits]\nhandshake_timeout_ms = 2000\nhttp_head_timeout_ms = 2000\n",
    );
    let mut server = Server::start_with(WORKERS, &cfg.args());
    wait_port(https);
    let mut publisher = ffmpeg_publish(&file, &server.rtmp_url("live/x"), &[]);
    sleep(Duration::from_millis(1500));
    let player = std::thread::spawn(move || wss_flv_player(https, Duration::from_secs(7)));
    // An HTTPS-TS player.
    let ts = std::thread::spawn(move || {
        require_tool("curl");
        let out = run_with_timeout(
            Command::new("curl").args([
                "-sk",
                "--max-time",
                "3",
                &format!("https://127.0.0.1:{https}/live/x.ts"),
            ]),
            Duration::from_secs(10),
        );
        out.stdout
    });
    sleep(Duration::from_millis(1000));
    let metrics = curl(&format!("https://127.0.0.1:{https}/metrics"));
    assert!(
        metrics.contains("rill_players{protocol=\"wss-flv\"} 1"),
        "{metrics}"
    );

    // Reload: a new certificate in the same files, then SIGHUP.
    let before = tls_client::presented(https);
    assert_eq!(before, tls_client::pem_cert(&cert_dir.join("cert.pem")));
    make_cert(&cert_dir);
    let new_cert = tls_client::pem_cert(&cert_dir.join("cert.pem"));
    assert_ne!(before, new_cert);
    let reload_at = Instant::now();
    let hup = |pid: u32| {
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -HUP");
    };
    hup(server.pid());
    assert!(wait_log(
        &server,
        "reload (SIGHUP): applied: tls certificates",
        Duration::from_secs(5)
    ));
    assert_eq!(
        tls_client::presented(https),
        new_cert,
        "new handshakes get the new cert"
    );
    // A broken key is refused and the new certificate stays.
    std::fs::write(cert_dir.join("key.pem"), "not a key").expect("write");
    hup(server.pid());
    assert!(
        wait_log(&server, "reload (SIGHUP) refused", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert_eq!(
        tls_client::presented(https),
        new_cert,
        "the last good cert stays"
    );

    // Malformed TLS, while the players go on: each is closed, within the deadlines.
    let mut truncated = vec![22, 3, 1, 0, 200];
    truncated.extend_from_slice(&[1; 20]);
    let t = closed_after(rtmps, &truncated, None, Duration::from_secs(8));
    assert!(
        t.is_some_and(|t| t < Duration::from_secs(5)),
        "truncated record: {t:?}"
    );
    let mut garbage = tls_client::client_hello();
    garbage.extend_from_slice(&[0xAB; 300]);
    let t = closed_after(https, &garbage, None, Duration::from_secs(8));
    assert!(
        t.is_some_and(|t| t < Duration::from_secs(2)),
        "garbage after hello: {t:?}"
    );
    let hello = tls_client::client_hello();
    let t = closed_after(
        https,
        &hello,
        Some(Duration::from_secs(1)),
        Duration::from_secs(8),
    );
    assert!(
        t.is_some_and(|t| t < Duration::from_secs(5)),
        "trickled hello: {t:?}"
    );

    let (seen, flv) = player.join().expect("player");
    assert!(flv, "WSS-FLV: the first frame is not an FLV header");
    let at = |when: Instant| {
        seen.iter()
            .take_while(|(t, _)| *t <= when)
            .last()
            .map_or(0, |&(_, n)| n)
    };
    let total = seen.last().map_or(0, |&(_, n)| n);
    assert!(
        total > at(reload_at) + 50_000,
        "the WSS player stalled after the reload: {} then {total}",
        at(reload_at)
    );
    let ts = ts.join().expect("ts player");
    let whole = ts.len() / 188 * 188;
    let check = check_ts(&ts[..whole]);
    assert!(
        check.packets > 100 && check.cc_errors.is_empty(),
        "HTTPS-TS: {check:?}"
    );
    let status = publisher.wait_for(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "ffmpeg: {status:?}");
    assert!(
        server.log().contains("protocol=WSS-FLV"),
        "{}",
        server.log()
    );
    assert!(server.is_running(), "{}", server.log());
    let _ = std::fs::remove_dir_all(cert_dir);
}

#[test]
fn the_per_ip_limit_counts_tls_connections_and_refuses_without_plain_text() {
    let cert_dir = std::env::temp_dir().join(format!("rill-e2e-tls-limit-{}", free_port()));
    make_cert(&cert_dir);
    let ports: [u16; 3] = free_ports();
    let [rtmps, https, _] = ports;
    let cfg = tls_config(&cert_dir, ports, "[limits]\nmax_connections_per_ip = 2\n");
    let server = Server::start_with(1, &cfg.args());
    wait_port(https);
    // wait_port's probes are gone once their closes are seen; give them a moment.
    sleep(Duration::from_millis(300));
    let _a = tls_client::connect(https);
    let _b = tls_client::connect(rtmps);
    // A third one, on either TLS listener: closed at once, without a plain-text 503.
    for port in [https, rtmps] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = s.write_all(&tls_client::client_hello());
        let mut got = Vec::new();
        let r = s.read_to_end(&mut got);
        assert!(
            r.is_ok()
                || r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "not closed: {r:?}"
        );
        assert!(
            got.is_empty(),
            "answered: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    assert!(server.log().contains("refused"), "{}", server.log());
    let _ = std::fs::remove_dir_all(cert_dir);
}

#[test]
fn edges_pull_from_a_tls_origin_over_https_flv_and_rtsps() {
    let cert_dir = std::env::temp_dir().join(format!("rill-e2e-tls-pull-{}", free_port()));
    make_cert(&cert_dir);
    let origin_ports: [u16; 3] = free_ports();
    let origin_cfg = tls_config(&cert_dir, origin_ports, "");
    let origin = Server::start_with(WORKERS, &origin_cfg.args());
    let [_, o_https, o_rtsps] = origin_ports;
    wait_port(o_https);
    // One edge per scheme, the self-signed origin listed in no_verify.
    let origins = [
        format!("https://127.0.0.1:{o_https}"),
        format!("rtsps://127.0.0.1:{o_rtsps}"),
    ];
    let configs: Vec<TempConfig> = origins
        .iter()
        .map(|o| {
            TempConfig::new(&format!(
                "[tls]\nno_verify = [\"127.0.0.1\"]\n\
                 [relay.pull]\norigins = [\"{o}\"]\nidle_stop_ms = 1000\n"
            ))
        })
        .collect();
    let edges: Vec<Server> = configs
        .iter()
        .map(|c| Server::start_with(WORKERS, &c.args()))
        .collect();
    // Players wait on the edges, whose pulls wait on the origin.
    let probes: Vec<_> = edges
        .iter()
        .map(|e| {
            let url = e.http_url("live/x.flv");
            std::thread::spawn(move || ffprobe(&url, Duration::from_secs(30)))
        })
        .collect();
    sleep(Duration::from_millis(1000));
    let mut publisher = ffmpeg_publish(
        &media("h264_aac_10s.flv"),
        &origin.rtmp_url("live/x"),
        &["-t", "4"],
    );
    // While the stream is live the origin counts one player per TLS scheme.
    let mut metrics = String::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        metrics = curl(&format!("https://127.0.0.1:{o_https}/metrics"));
        if metrics.contains("rill_players{protocol=\"https-flv\"} 1")
            && metrics.contains("rill_players{protocol=\"rtsps\"} 1")
        {
            break;
        }
        sleep(Duration::from_millis(200));
    }
    assert!(
        metrics.contains("rill_players{protocol=\"https-flv\"} 1")
            && metrics.contains("rill_players{protocol=\"rtsps\"} 1"),
        "the edges' pulls are HTTPS-FLV and RTSPS players of the origin: {metrics}"
    );
    let edge_api = curl(&edges[1].http_url("api/stat/all_group"));
    assert!(
        edge_api.contains("RTSPPULL"),
        "the RTSPS pull is listed: {edge_api}"
    );
    assert!(
        publisher
            .wait_for(Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "publisher failed; origin log:\n{}",
        origin.log()
    );
    for ((probe, edge), origin_url) in probes.into_iter().zip(&edges).zip(&origins) {
        let (streams, out) = probe.join().expect("probe thread");
        assert!(out.status.success(), "ffprobe via {origin_url}: {out:?}");
        assert_av(&format!("edge pulling from {origin_url}"), &streams, 50);
        assert!(
            edge.log()
                .contains(&format!("relay pull live/x: playing from {origin_url}")),
            "edge log:\n{}",
            edge.log()
        );
    }
    let _ = std::fs::remove_dir_all(&cert_dir);
}
