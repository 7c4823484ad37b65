//! End to end: the connection limits (`[limits] max_connections`, `max_connections_per_ip`) are
//! enforced at accept time on every listener, across workers: a refused connection is closed at
//! once (HTTP gets a 503), never reaches a session, is logged at a bounded rate, and other clients
//! keep working. Client sockets bind 127.0.0.2 / 127.0.0.3 so the offender has its own address.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rill_e2e::{connect_from, ffmpeg_publish, media, Server, TempConfig};

const WORKERS: usize = 2;
const OFFENDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// What the server did with a connection.
#[derive(Debug, PartialEq)]
enum Fate {
    /// Still open, nothing closed it.
    Open,
    /// Closed (end of stream or reset), after sending these bytes.
    Closed(Vec<u8>),
}

/// Reads until the server closes the connection or `limit` passes.
fn fate(s: &mut TcpStream, limit: Duration) -> Fate {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Fate::Open;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return Fate::Closed(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Fate::Open
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Fate::Closed(got),
        }
    }
}

/// A connection from `source` that the server keeps open (retried while the server has not yet
/// noticed that earlier connections closed).
fn admitted(server: &Server, source: Ipv4Addr, port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // A refused connection may already be reset when connect returns.
        if let Ok(mut s) = connect_from(source, port) {
            if fate(&mut s, Duration::from_millis(300)) == Fate::Open {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{source} is still refused on port {port}; log:\n{}",
            server.log()
        );
        sleep(Duration::from_millis(50));
    }
}

/// Connects from `source` and expects the server to close the connection within a second;
/// returns what it sent first.
fn refused(server: &Server, source: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut s = match connect_from(source, port) {
        Ok(s) => s,
        // Reset before connect even returned (RTMP and RTSP refusals are resets).
        Err(e) if e.kind() == ErrorKind::ConnectionReset => return Vec::new(),
        Err(e) => panic!("connect from {source} to port {port}: {e}"),
    };
    match fate(&mut s, Duration::from_secs(1)) {
        Fate::Closed(sent) => sent,
        Fate::Open => panic!(
            "connection from {source} to port {port} was not refused; log:\n{}",
            server.log()
        ),
    }
}

/// Plays `path` over HTTP-FLV from `source`: the FLV body bytes received within 10 s (at least
/// 20 KB asked), or why not.
fn play_flv(source: Ipv4Addr, port: u16, path: &str) -> Result<usize, String> {
    let mut s = connect_from(source, port).map_err(|e| format!("connect: {e}"))?;
    s.write_all(format!("GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .map_err(|e| format!("request: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut body_at = None;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&got))),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if body_at.is_none() {
            if let Some(pos) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..pos]).into_owned();
                if !head.starts_with("HTTP/1.1 200") {
                    return Err(format!("response {head:?}"));
                }
                body_at = Some(pos + 4);
            }
        }
        if let Some(at) = body_at {
            let body = &got[at..];
            if body.len() >= 3 && !body.starts_with(b"FLV") {
                return Err("body is not FLV".into());
            }
            if body.len() >= 20_000 {
                return Ok(body.len());
            }
        }
    }
    Err(format!("only {} bytes in 10 s", got.len()))
}

/// Lines of the server log that report refused connections.
fn refusal_lines(server: &Server) -> Vec<String> {
    server
        .log()
        .lines()
        .filter(|l| l.contains("refused: admission:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn fifth_connection_of_one_address_is_refused_while_others_play() {
    let cfg = TempConfig::new("[limits]\nmax_connections_per_ip = 4\n");
    let server = Server::start_with(WORKERS, &cfg.args());
    let started = Instant::now();
    let _publisher = ffmpeg_publish(
        &media("h264_aac_30s.flv"),
        &server.rtmp_url("live/limits"),
        &[],
    );
    // Four idle connections from one address, over all three listeners: all stay open.
    let ports = [
        server.rtmp_port,
        server.rtsp_port,
        server.http_port,
        server.rtmp_port,
    ];
    let mut idle: Vec<TcpStream> = ports
        .iter()
        .map(|p| connect_from(OFFENDER, *p).expect("connect"))
        .collect();
    for (i, s) in idle.iter_mut().enumerate() {
        assert_eq!(
            fate(s, Duration::from_millis(300)),
            Fate::Open,
            "idle connection {i}; log:\n{}",
            server.log()
        );
    }
    // The fifth is closed at once, whatever the listener; so is a flood of them.
    assert_eq!(refused(&server, OFFENDER, server.rtmp_port), b"");
    assert_eq!(refused(&server, OFFENDER, server.rtsp_port), b"");
    let flood = 100;
    for _ in 0..flood {
        refused(&server, OFFENDER, server.rtmp_port);
    }
    // Meanwhile the publisher and a player from another address work.
    let played = play_flv(LOCAL, server.http_port, "live/limits.flv");
    assert!(played.is_ok(), "{played:?}; log:\n{}", server.log());
    for (i, s) in idle.iter_mut().enumerate() {
        assert_eq!(
            fate(s, Duration::from_millis(50)),
            Fate::Open,
            "idle connection {i} after the refusals"
        );
    }
    // Refusals are logged at most about once a second per worker, naming the limit.
    let lines = refusal_lines(&server);
    let allowed = WORKERS * (started.elapsed().as_secs() as usize + 2);
    assert!(
        !lines.is_empty() && lines.len() <= allowed,
        "{} refusal lines (allowed 1..={allowed}):\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        lines[0].contains("max_connections_per_ip") && lines[0].contains("127.0.0.2"),
        "{}",
        lines[0]
    );
    // Once the four close, the address is admitted again and a real request works.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match play_flv(OFFENDER, server.http_port, "live/limits.flv") {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "127.0.0.2 still refused after closing its connections: {e}; log:\n{}",
                server.log()
            ),
        }
        sleep(Duration::from_millis(50));
    }
    // The engine never saw the refused connections: the sessions of 127.0.0.2 are at most its
    // five admitted connections (the flood alone was over a hundred).
    let sessions = server
        .log()
        .lines()
        .filter(|l| l.contains("session") && l.contains("127.0.0.2:"))
        .count();
    assert!(sessions <= 10, "{sessions} session lines for 127.0.0.2");
}

#[test]
fn connection_over_the_total_is_refused_until_one_closes() {
    let cfg = TempConfig::new("[limits]\nmax_connections = 3\n");
    let server = Server::start_with(WORKERS, &cfg.args());
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| admitted(&server, OFFENDER, server.rtmp_port))
        .collect();
    // Another address, on every listener: refused (HTTP with a 503).
    assert_eq!(refused(&server, OTHER, server.rtmp_port), b"");
    assert_eq!(refused(&server, OTHER, server.rtsp_port), b"");
    let answer = refused(&server, OTHER, server.http_port);
    assert!(
        answer.starts_with(b"HTTP/1.1 503 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    for (i, s) in held.iter_mut().enumerate() {
        assert_eq!(fate(s, Duration::from_millis(50)), Fate::Open, "held {i}");
    }
    // One closes: the next is admitted, and the server is full again.
    drop(held.pop());
    held.push(admitted(&server, OTHER, server.rtsp_port));
    assert_eq!(refused(&server, OTHER, server.rtmp_port), b"");
    let lines = refusal_lines(&server);
    assert!(
        lines
            .first()
            .is_some_and(|l| l.contains("reached limits.max_connections = 3")),
        "{lines:?}"
    );
    // All closed: a fresh address gets all three places.
    drop(held);
    let _again: Vec<TcpStream> = (0..3)
        .map(|_| admitted(&server, OTHER, server.http_port))
        .collect();
}

#[test]
fn refused_http_client_gets_503_and_others_get_nothing() {
    let cfg = TempConfig::new("[limits]\nmax_connections_per_ip = 1\n");
    let server = Server::start_with(WORKERS, &cfg.args());
    let mut hold = connect_from(OFFENDER, server.rtmp_port).expect("connect");
    assert_eq!(fate(&mut hold, Duration::from_millis(300)), Fate::Open);
    // A client that waits for the server.
    let answer =
        String::from_utf8_lossy(&refused(&server, OFFENDER, server.http_port)).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
            && answer.to_lowercase().contains("connection: close")
            && answer.ends_with("\r\n\r\n"),
        "{answer:?}"
    );
    // A client that sends its request at once: a 503 or a bare close, never an answer.
    let mut s = connect_from(OFFENDER, server.http_port).expect("connect");
    let _ = s.write_all(b"GET /live/x.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    match fate(&mut s, Duration::from_secs(1)) {
        Fate::Closed(sent) => assert!(
            sent.is_empty() || sent.starts_with(b"HTTP/1.1 503 "),
            "{:?}",
            String::from_utf8_lossy(&sent)
        ),
        Fate::Open => panic!("not refused; log:\n{}", server.log()),
    }
    // RTMP and RTSP clients get no answer: their connection is reset, so the server keeps no
    // TIME_WAIT entry for them.
    for port in [server.rtmp_port, server.rtsp_port] {
        let outcome = connect_from(OFFENDER, port).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            s.read(&mut [0u8; 64])
        });
        assert!(
            matches!(&outcome, Err(e) if e.kind() == ErrorKind::ConnectionReset),
            "port {port}: {outcome:?}"
        );
    }
    // Other addresses are not concerned.
    let mut other = connect_from(OTHER, server.http_port).expect("connect");
    assert_eq!(fate(&mut other, Duration::from_millis(300)), Fate::Open);
}
