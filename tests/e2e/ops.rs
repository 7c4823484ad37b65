//! End to end: what operators meet after days rather than minutes. Descriptor exhaustion at
//! accept (the server recovers by itself once descriptors are free, and sheds clients left
//! waiting too long) and silent RTSP connections (closed at the first-request deadline).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use rill_e2e::{
    ffmpeg_publish, media, proc_fd_count, run_with_timeout, server_binary, Server, TempConfig,
};

/// The server's open-file limit in the descriptor tests: a few dozen connections exhaust it.
const OPEN_FILES: u32 = 64;

/// Reads from `s` until `want` says the bytes so far are enough, the peer closes, or `limit`
/// passes; returns what came.
fn read_until(s: &mut TcpStream, limit: Duration, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !want(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// An HTTP-FLV player of `path` that has sent its request.
fn flv_player(port: u16, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect the player");
    s.write_all(format!("GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("send the request");
    s
}

/// Whether the player got the FLV header and some tags (more than a head and a header).
fn served(got: &[u8]) -> bool {
    contains(got, b"FLV\x01") && got.len() > 4096
}

/// A server under `OPEN_FILES` with a stream being published, played once to show it works.
fn server_with_stream(stream: &str) -> (Server, rill_e2e::Proc) {
    let server = Server::start_with_open_files(1, &[], OPEN_FILES);
    let publisher = ffmpeg_publish(
        &media("h264_aac_30s.flv"),
        &server.rtmp_url(&format!("live/{stream}")),
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut p = flv_player(server.http_port, &format!("live/{stream}.flv"));
        if served(&read_until(&mut p, Duration::from_secs(2), served)) {
            // Until the server closed this player, a descriptor it frees later would go to
            // whichever client is queued then.
            let open = proc_fd_count(server.pid()).unwrap_or(0);
            drop(p);
            let deadline = Instant::now() + Duration::from_secs(3);
            while proc_fd_count(server.pid()).unwrap_or(0) >= open {
                assert!(Instant::now() < deadline, "the player's close went unseen");
                sleep(Duration::from_millis(10));
            }
            break;
        }
        assert!(Instant::now() < deadline, "the stream never played");
        sleep(Duration::from_millis(200));
    }
    (server, publisher)
}

/// Opens idle RTMP connections until the server holds every descriptor it may and some more
/// wait in its accept queue.
fn exhaust(server: &Server) -> Vec<TcpStream> {
    let mut idle = Vec::new();
    for _ in 0..OPEN_FILES + 16 {
        idle.push(TcpStream::connect(("127.0.0.1", server.rtmp_port)).expect("idle connection"));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while proc_fd_count(server.pid()).unwrap_or(0) < OPEN_FILES as usize {
        assert!(
            Instant::now() < deadline,
            "the server never ran out of descriptors: {:?} open",
            proc_fd_count(server.pid())
        );
        sleep(Duration::from_millis(20));
    }
    idle
}

/// Issue 21 item 1: a player that connects while descriptors are exhausted waits in the accept
/// queue; once they are free again it is served without any further connection arriving to
/// wake the listener (an edge-triggered listener that waits for its next event stalls).
#[test]
fn a_player_queued_while_descriptors_ran_out_is_served_once_they_are_free() {
    let (mut server, _publisher) = server_with_stream("fd");
    let idle = exhaust(&server);
    let mut player = flv_player(server.http_port, "live/fd.flv");
    let early = read_until(&mut player, Duration::from_millis(400), |g| !g.is_empty());
    assert!(
        early.is_empty(),
        "the player was answered while descriptors were exhausted: {:?}",
        String::from_utf8_lossy(&early[..early.len().min(200)])
    );
    drop(idle);
    let got = read_until(&mut player, Duration::from_secs(3), served);
    assert!(
        served(&got),
        "the queued player was not served once descriptors were free ({} bytes); log:\n{}",
        got.len(),
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("accept failed: Too many open files"),
        "no warning; log:\n{log}"
    );
    assert!(
        log.matches("accept failed").count() <= 2,
        "the warning is not rate-limited; log:\n{log}"
    );
    assert!(
        log.contains("accepting connections again"),
        "no recovery line; log:\n{log}"
    );
    assert!(server.is_running());
}

/// Issue 21 item 1: while descriptors stay exhausted, a client left waiting in the queue for
/// longer than the shed delay (2 s) is refused (HTTP: a 503) rather than left hanging, and the
/// server serves new players once descriptors are free.
#[test]
fn clients_queued_too_long_while_descriptors_ran_out_are_refused() {
    let (mut server, _publisher) = server_with_stream("shed");
    let idle = exhaust(&server);
    let mut waiting = flv_player(server.http_port, "live/shed.flv");
    let answer = read_until(&mut waiting, Duration::from_secs(5), |g| {
        contains(g, b"\r\n\r\n")
    });
    assert!(
        answer.starts_with(b"HTTP/1.1 503"),
        "a client queued while descriptors stayed exhausted got {:?}; log:\n{}",
        String::from_utf8_lossy(&answer),
        server.log()
    );
    drop(idle);
    sleep(Duration::from_millis(300));
    let mut player = flv_player(server.http_port, "live/shed.flv");
    assert!(served(&read_until(
        &mut player,
        Duration::from_secs(3),
        served
    )));
    assert!(server.log().contains("connections shed"));
    assert!(server.is_running());
}

/// Issue 21 item 4: an RTSP connection that sends nothing is closed at the first-request
/// deadline (`[limits] rtsp_first_request_timeout_ms`, shortened here), like RTMP and HTTP,
/// while one that sent a request is kept for the session timeout (60 s).
#[test]
fn a_silent_rtsp_connection_is_closed_at_the_first_request_deadline() {
    let config = TempConfig::new("[limits]\nrtsp_first_request_timeout_ms = 1000\n");
    let server = Server::start_with(1, &config.args());
    let started = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", server.rtsp_port)).expect("connect");
    let mut asking = TcpStream::connect(("127.0.0.1", server.rtsp_port)).expect("connect");
    asking
        .write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        .expect("send OPTIONS");
    let answer = read_until(&mut asking, Duration::from_secs(2), |g| {
        contains(g, b"\r\n\r\n")
    });
    assert!(answer.starts_with(b"RTSP/1.0 200"), "{answer:?}");
    let got = read_until(&mut silent, Duration::from_secs(5), |_| false);
    let held = started.elapsed();
    assert!(got.is_empty(), "the silent connection got {got:?}");
    assert!(
        held >= Duration::from_millis(900) && held < Duration::from_millis(2500),
        "the silent connection was closed after {held:?}"
    );
    let more = read_until(&mut asking, Duration::from_millis(500), |g| !g.is_empty());
    let still_open = asking
        .write_all(b"OPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n")
        .is_ok()
        && read_until(&mut asking, Duration::from_secs(2), |g| {
            contains(g, b"\r\n\r\n")
        })
        .starts_with(b"RTSP/1.0 200");
    assert!(
        more.is_empty() && still_open,
        "the connection that asked was closed with the silent one; log:\n{}",
        server.log()
    );
}

/// Issue 21 item 6: an `out_path` that cannot be written (HLS files or recordings) stops the
/// start with a message naming the key, instead of failing file by file once a stream is
/// published; a missing but creatable one is created at start.
#[test]
fn an_unwritable_out_path_stops_the_start_and_a_missing_one_is_created() {
    let dir = std::env::temp_dir().join(format!("rill-e2e-out-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    // A regular file where a directory should be: unwritable even for root.
    let blocker = dir.join("file");
    std::fs::write(&blocker, b"x").expect("blocker");
    for (section, key) in [("record", "flv = true\nout_path"), ("hls", "out_path")] {
        let bad = blocker.join("sub");
        let config = TempConfig::new(&format!(
            "[{section}]\n{key} = {:?}\n",
            bad.display().to_string()
        ));
        let out = run_with_timeout(
            Command::new(server_binary())
                .args(config.args())
                .args(["--rtmp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
                .args(["--rtsp-addr", "127.0.0.1:0"]),
            Duration::from_secs(10),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{section}: {stderr}");
        assert!(
            stderr.contains(&format!("{section}.out_path")) && stderr.contains("not writable"),
            "{section}: {stderr}"
        );
    }
    let fresh = dir.join("new/record");
    let config = TempConfig::new(&format!(
        "[record]\nflv = true\nout_path = {:?}\n",
        fresh.display().to_string()
    ));
    let mut server = Server::start_with(1, &config.args());
    assert!(
        fresh.is_dir(),
        "the record directory was not created at start"
    );
    assert_eq!(std::fs::read_dir(&fresh).expect("read dir").count(), 0);
    assert!(server.is_running());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 21 item 11: `[log] format = "json"` writes one JSON object per line.
#[test]
fn json_logs_are_one_object_per_line() {
    let config = TempConfig::new("[log]\nformat = \"json\"\n");
    let server = Server::start_with(1, &config.args());
    let _ = TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("starting")),
        "no start line: {log}"
    );
}
