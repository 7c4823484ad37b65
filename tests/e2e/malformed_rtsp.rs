//! Malformed RTSP, SDP, RTP and RTCP input against the real server binary (`RILL_BIN` picks the
//! runtime).
//!
//! The frame is that of `malformed.rs` (the shared [`Harness`]): one server with short deadlines,
//! a healthy in-process RTMP publisher sending `h264_aac_30s.flv` in real time, and healthy
//! players of its stream that wait for it before it starts (HTTP-FLV, RTMP, and here an RTSP
//! player over TCP too), so each must receive every video frame. Tables of malformed cases run
//! against the same server, several at a time. A case asserts that the offender gets an RTSP
//! error status or a closed connection within its bound; for media garbage (interleaved `$`
//! frames, RTP, RTCP, UDP datagrams), that the bad packets are dropped while the session keeps
//! answering, and, for in-band garbage mixed into a real stream, that every real frame still
//! reaches the stream's players. After every batch the server must still run; at the end the
//! healthy players must have received exactly the frames the healthy publisher sent.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_core::codec::h264::AvcConfig;
use rill_core::flv::{frame_from_audio_tag, frame_from_video_tag, TagType};
use rill_core::media::FrameKind;
use rill_core::rtp::{CodecParams, Packetizer, RtpPacket, TrackParams};
use rill_core::rtsp::client::{ClientConfig, ClientEvent, ClientSession};
use rill_core::rtsp::server::Transmit;
use rill_core::rtsp::{Item, Message, Reader, Response, RtspLimits};
use rill_core::sdp::SessionDescription;
use rill_e2e::harness::*;
use rill_e2e::*;

/// `rtsp.session_timeout_ms` of the suite.
const SESSION_MS: u64 = 6000;
/// `limits.publish_idle_timeout_ms` of the suite: shorter than the session timeout, so the
/// cases see which of the two ends a recording session that sends no media.
const PUBLISH_IDLE_MS: u64 = 2500;
/// `hub.play_wait_timeout_ms` of the harness configuration.
const PLAY_WAIT_MS: u64 = 5000;
/// Bound for offenders only the session timeout can catch.
const BY_SESSION: Duration = Duration::from_millis(SESSION_MS + 3000);
/// Bound for a recording session that sends no media.
const BY_PUBLISH_IDLE: Duration = Duration::from_millis(PUBLISH_IDLE_MS + 2000);
/// Bound for a DESCRIBE of a stream nobody publishes.
const BY_PLAY_WAIT: Duration = Duration::from_millis(PLAY_WAIT_MS + 3000);

fn rtsp_config() -> TempConfig {
    config_with(
        "",
        &format!("publish_idle_timeout_ms = {PUBLISH_IDLE_MS}"),
        &format!("[rtsp]\nsession_timeout_ms = {SESSION_MS}\n"),
    )
}

/// The harness with an RTSP player of the healthy stream among its players.
fn start() -> Harness {
    Harness::start_with(rtsp_config(), |server| {
        vec![HealthyPlayer {
            label: "RTSP player",
            thread: rtsp_player(server.rtsp_port, HEALTHY, Duration::from_secs(150)),
            // It records bare frame payloads: the FLV video tag header is not there.
            skip: 5,
        }]
    })
}

/// A fresh stream name for a case.
fn fresh(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// A healthy RTSP player: rill's own client session over TCP
// ---------------------------------------------------------------------------------------------

/// An RTSP player (TCP interleaved) of `live/{name}` in a thread; records the payloads of the
/// coded video frames and ends when the server closes.
fn rtsp_player(port: u16, name: &str, limit: Duration) -> PlayerThread {
    let url = format!("rtsp://127.0.0.1:{port}/live/{name}");
    thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let mut config = ClientConfig::new(&url);
        config.request_timeout_ms = 30_000;
        let mut c = ClientSession::play(config, b"a healthy rtsp player", 0);
        let mut got = Received::default();
        let mut last = None;
        let mut video = None;
        let mut buf = vec![0u8; 65536];
        loop {
            let now = t0.elapsed().as_millis() as u64;
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now)
                    .map_err(|e| format!("rtsp player: {e}"))?;
            }
            while let Some(t) = c.poll_transmit() {
                if let Transmit::Tcp(b) = t {
                    s.write_all(&b)
                        .map_err(|e| format!("rtsp player write: {e}"))?;
                }
            }
            while let Some(ev) = c.poll_event() {
                match ev {
                    ClientEvent::Described { tracks } => {
                        video = tracks
                            .iter()
                            .position(|t| matches!(t.codec, CodecParams::H264 { .. }));
                    }
                    ClientEvent::Frame { track, frame }
                        if Some(track) == video && frame.kind == FrameKind::Coded =>
                    {
                        let ts = frame.dts.saturating_add(1000).max(0) as u32;
                        got.frame(frame.payload, ts, &mut last);
                    }
                    _ => {}
                }
            }
            match s.read(&mut buf) {
                Ok(0) => {
                    got.clean_end = true;
                    got.end = "EOF".into();
                    return Ok(got);
                }
                Ok(n) => c
                    .handle_input(&buf[..n], now)
                    .map_err(|e| format!("rtsp player: {e}"))?,
                Err(e) if would_block(&e) => {}
                Err(e) => {
                    got.end = format!("read error: {e}");
                    return Ok(got);
                }
            }
            if t0.elapsed() > limit {
                got.end = format!("still streaming after {limit:?}");
                return Ok(got);
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Raw RTSP connections
// ---------------------------------------------------------------------------------------------

/// A raw RTSP connection: requests are written by hand, answers parsed with rill's reader.
struct Conn {
    s: TcpStream,
    reader: Reader,
    port: u16,
    cseq: u32,
    session: Option<String>,
}

impl Conn {
    fn open(port: u16) -> Result<Conn, String> {
        Ok(Conn {
            s: tcp(port)?,
            reader: Reader::new(RtspLimits {
                max_body_bytes: 1 << 20,
                ..RtspLimits::default()
            }),
            port,
            cseq: 0,
            session: None,
        })
    }

    /// `rtsp://127.0.0.1:port/{path}`.
    fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.port)
    }

    fn raw(&mut self, bytes: &[u8]) {
        send(&mut self.s, bytes);
    }

    /// Writes a request with the next CSeq, the session id once known, and `headers`.
    fn send(&mut self, method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.cseq += 1;
        let mut head = format!("{method} {uri} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        if let Some(id) = &self.session {
            head.push_str(&format!("Session: {id}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut b = head.into_bytes();
        b.extend_from_slice(body);
        self.raw(&b);
    }

    /// The next answer (interleaved frames are skipped); `None` when the server closed first.
    fn response(&mut self, bound: Duration) -> Result<Option<Response>, String> {
        let t0 = Instant::now();
        let mut buf = vec![0u8; 65536];
        loop {
            loop {
                match self.reader.poll_item() {
                    Ok(Some(Item::Message(Message::Response(r)))) => {
                        if let Some(id) = r.headers.session_id() {
                            self.session = Some(id.to_owned());
                        }
                        return Ok(Some(r));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return Err(format!("bad answer from the server: {e}")),
                }
            }
            match self.s.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => self
                    .reader
                    .push(&buf[..n])
                    .map_err(|e| format!("answer: {e}"))?,
                Err(e) if would_block(&e) => {}
                Err(_) => return Ok(None),
            }
            if t0.elapsed() > bound {
                return Err(format!("no answer within {bound:?}"));
            }
        }
    }

    /// Sends a request and waits for its answer.
    fn call(
        &mut self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        self.send(method, uri, headers, body);
        self.response(Duration::from_secs(5))?
            .ok_or_else(|| format!("closed instead of answering {method}"))
    }

    /// Like [`Conn::call`], and the status must be 200.
    fn ok(
        &mut self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let r = self.call(method, uri, headers, body)?;
        if r.status != 200 {
            return Err(format!("{method} {uri}: status {}", r.status));
        }
        Ok(r)
    }

    fn announce(&mut self, path: &str, sdp: &str) -> Result<Response, String> {
        let url = self.url(path);
        self.call(
            "ANNOUNCE",
            &url,
            &[("Content-Type", "application/sdp")],
            sdp.as_bytes(),
        )
    }
}

/// The next answer must have one of the `allowed` statuses.
fn status_in(c: &mut Conn, allowed: &[u16], bound: Duration) -> Check {
    let t0 = Instant::now();
    match c.response(bound)? {
        Some(r) if allowed.contains(&r.status) => Ok(Verdict::Answered(
            format!("RTSP {}", r.status),
            t0.elapsed(),
        )),
        Some(r) => Err(format!(
            "status {} {}, expected one of {allowed:?}",
            r.status, r.reason
        )),
        None => Err("closed without an answer".into()),
    }
}

/// An error status from `allowed`, then the close.
fn status_then_closed(c: &mut Conn, allowed: &[u16], bound: Duration) -> Check {
    let v = status_in(c, allowed, bound)?;
    expect_closed(&mut c.s, bound).map_err(|e| format!("after {v}: {e}"))?;
    Ok(v)
}

/// The session still answers: OPTIONS gets 200 at once.
fn still_answers(c: &mut Conn, what: &str) -> Check {
    let t0 = Instant::now();
    let r = c.call("OPTIONS", "*", &[], b"")?;
    if r.status != 200 {
        return Err(format!("OPTIONS after {what}: status {}", r.status));
    }
    Ok(Verdict::Answered(
        format!("{what} dropped; the session still answers OPTIONS with 200"),
        t0.elapsed(),
    ))
}

/// Raw bytes on a fresh connection: the answer is one of `allowed`; with `closes`, the
/// connection must then close.
fn raw_case(
    name: impl Into<String>,
    bytes: Vec<u8>,
    allowed: &'static [u16],
    closes: bool,
) -> Case {
    case(name, move |p| {
        let mut c = Conn::open(p.rtsp)?;
        c.raw(&bytes);
        if closes {
            status_then_closed(&mut c, allowed, AT_ONCE)
        } else {
            status_in(&mut c, allowed, AT_ONCE)
        }
    })
}

const BAD: &[u16] = &[400];
const TOO_LARGE: &[u16] = &[413, 431];
const NOT_IMPLEMENTED: &[u16] = &[405, 501];
const WRONG_STATE: &[u16] = &[455];
const NOT_FOUND: &[u16] = &[404];
const BAD_TRANSPORT: &[u16] = &[461];
const BAD_SDP: &[u16] = &[400, 415];

/// A request with CSeq 1 and `extra` header lines (each ending in CRLF).
fn request(method: &str, uri: &str, extra: &str) -> Vec<u8> {
    format!("{method} {uri} RTSP/1.0\r\nCSeq: 1\r\n{extra}\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------------
// The media file as RTSP tracks
// ---------------------------------------------------------------------------------------------

/// The tracks of `h264_aac_30s.flv`: H.264 (trackID=0) and AAC (trackID=1).
fn media_tracks() -> &'static [TrackParams; 2] {
    static TRACKS: OnceLock<[TrackParams; 2]> = OnceLock::new();
    TRACKS.get_or_init(|| {
        let tags = media_tags();
        let avc = tags
            .iter()
            .find(|t| t.tag_type == TagType::Video && t.body.get(1) == Some(&0))
            .and_then(|t| AvcConfig::parse(t.body.get(5..)?).ok())
            .expect("AVC sequence header");
        let asc = tags
            .iter()
            .find(|t| t.tag_type == TagType::Audio && t.body.get(1) == Some(&0))
            .map(|t| t.body.slice(2..))
            .expect("AAC sequence header");
        let rate = rill_core::codec::aac::AudioSpecificConfig::parse(&asc)
            .expect("AudioSpecificConfig")
            .sample_rate;
        [
            TrackParams {
                payload_type: 96,
                clock_rate: 90_000,
                channels: 1,
                codec: CodecParams::H264 {
                    sps: avc.sps,
                    pps: avc.pps,
                },
            },
            TrackParams {
                payload_type: 97,
                clock_rate: rate,
                channels: 2,
                codec: CodecParams::aac_hbr(asc),
            },
        ]
    })
}

/// A valid description of the media file's tracks.
fn good_sdp() -> String {
    let t = media_tracks();
    SessionDescription::for_tracks(
        "x",
        &[
            (t[0].clone(), "trackID=0".into()),
            (t[1].clone(), "trackID=1".into()),
        ],
    )
    .to_text()
}

/// A description made of `sections` (`m=` lines and their attributes).
fn sdp(sections: &str) -> String {
    format!("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=bad\r\nt=0 0\r\n{sections}")
}

fn h264_section(fmtp: &str) -> String {
    format!(
        "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 {fmtp}\r\n\
         a=control:trackID=0\r\n"
    )
}

fn aac_section(fmtp: &str) -> String {
    format!(
        "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\na=fmtp:97 \
         streamtype=5;profile-level-id=15;mode=AAC-hbr;{fmtp}\r\na=control:trackID=1\r\n"
    )
}

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// `sprop-parameter-sets` of the media file.
fn good_sprop() -> String {
    match &media_tracks()[0].codec {
        CodecParams::H264 { sps, pps } => format!(
            "packetization-mode=1;sprop-parameter-sets={},{}",
            b64(&sps[0]),
            b64(&pps[0])
        ),
        _ => unreachable!("track 0 is H.264"),
    }
}

/// ANNOUNCE (both tracks), SETUP of both over TCP (channels 0-1 and 2-3), RECORD.
fn recording_tcp(port: u16, name: &str) -> Result<Conn, String> {
    let mut c = Conn::open(port)?;
    let path = format!("live/{name}");
    let r = c.announce(&path, &good_sdp())?;
    if r.status != 200 {
        return Err(format!("ANNOUNCE: status {}", r.status));
    }
    for (track, channels) in [(0, "0-1"), (1, "2-3")] {
        let url = c.url(&format!("{path}/trackID={track}"));
        let transport = format!("RTP/AVP/TCP;unicast;interleaved={channels};mode=record");
        c.ok("SETUP", &url, &[("Transport", &transport)], b"")?;
    }
    let url = c.url(&path);
    c.ok("RECORD", &url, &[("Range", "npt=0.000-")], b"")?;
    Ok(c)
}

/// A client's UDP port pair and the server's, for one track.
struct UdpTrack {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    server: (u16, u16),
}

impl UdpTrack {
    fn send(&self, rtcp: bool, data: &[u8]) {
        let (socket, port) = if rtcp {
            (&self.rtcp, self.server.1)
        } else {
            (&self.rtp, self.server.0)
        };
        let _ = socket.send_to(data, ("127.0.0.1", port));
    }
}

/// ANNOUNCE, SETUP of both tracks over UDP, RECORD.
fn recording_udp(port: u16, name: &str) -> Result<(Conn, Vec<UdpTrack>), String> {
    let mut c = Conn::open(port)?;
    let path = format!("live/{name}");
    let r = c.announce(&path, &good_sdp())?;
    if r.status != 200 {
        return Err(format!("ANNOUNCE: status {}", r.status));
    }
    let mut tracks = Vec::new();
    for track in 0..2 {
        let bind = || UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string());
        let (rtp, rtcp) = (bind()?, bind()?);
        let ports = (
            rtp.local_addr().map_err(|e| e.to_string())?.port(),
            rtcp.local_addr().map_err(|e| e.to_string())?.port(),
        );
        let url = c.url(&format!("{path}/trackID={track}"));
        let transport = format!(
            "RTP/AVP;unicast;client_port={}-{};mode=record",
            ports.0, ports.1
        );
        let r = c.ok("SETUP", &url, &[("Transport", &transport)], b"")?;
        let server = r
            .headers
            .get("Transport")
            .and_then(|t| t.split(';').find_map(|p| p.strip_prefix("server_port=")))
            .and_then(|p| p.split_once('-'))
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or("SETUP answer without server_port")?;
        tracks.push(UdpTrack { rtp, rtcp, server });
    }
    let url = c.url(&path);
    c.ok("RECORD", &url, &[], b"")?;
    Ok((c, tracks))
}

/// An RTP packet: first byte `b0` (version, padding, extension, CSRC count), then `pt`.
fn rtp(b0: u8, pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![b0, pt];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An interleaved frame on `channel` (its length field says `data.len()`).
fn interleaved(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![b'$', channel];
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

// ---------------------------------------------------------------------------------------------
// Request-level cases
// ---------------------------------------------------------------------------------------------

fn message_cases() -> Vec<Case> {
    let long = "a".repeat(5000);
    let mut many_headers = String::new();
    for i in 0..70 {
        many_headers.push_str(&format!("X-H{i}: v\r\n"));
    }
    let mut not_utf8 = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX: ".to_vec();
    not_utf8.extend_from_slice(&[0xC3, 0x28, 0xFF, 0xFE]);
    not_utf8.extend_from_slice(b"\r\n\r\n");
    let content_length = |v: &str| {
        request(
            "ANNOUNCE",
            "rtsp://h/live/cl",
            &format!("Content-Length: {v}\r\n"),
        )
    };
    vec![
        raw_case("garbage request line", b"HELLO\r\n\r\n".to_vec(), BAD, true),
        raw_case(
            "request line without a version",
            b"OPTIONS *\r\nCSeq: 1\r\n\r\n".to_vec(),
            BAD,
            true,
        ),
        raw_case(
            "request line with four parts",
            request("OPTIONS", "* extra", ""),
            BAD,
            true,
        ),
        raw_case(
            "HTTP version on the RTSP port",
            b"GET /live/healthy HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            BAD,
            true,
        ),
        raw_case(
            "RTSP/2.0",
            b"OPTIONS * RTSP/2.0\r\nCSeq: 1\r\n\r\n".to_vec(),
            &[400, 505],
            true,
        ),
        raw_case(
            "version RTSP/1.x",
            b"OPTIONS * RTSP/1.x\r\nCSeq: 1\r\n\r\n".to_vec(),
            &[400, 505],
            true,
        ),
        raw_case(
            "method with a forbidden character",
            request("OP(TIONS", "*", ""),
            BAD,
            true,
        ),
        raw_case(
            "missing CSeq",
            b"OPTIONS * RTSP/1.0\r\n\r\n".to_vec(),
            BAD,
            false,
        ),
        raw_case(
            "non-numeric CSeq",
            b"OPTIONS * RTSP/1.0\r\nCSeq: one\r\n\r\n".to_vec(),
            BAD,
            false,
        ),
        raw_case(
            "negative CSeq",
            b"OPTIONS * RTSP/1.0\r\nCSeq: -1\r\n\r\n".to_vec(),
            BAD,
            false,
        ),
        raw_case(
            "header line without a colon",
            request("OPTIONS", "*", "NoColonHere\r\n"),
            BAD,
            true,
        ),
        raw_case(
            "header name with a space",
            request("OPTIONS", "*", "Bad Name: x\r\n"),
            BAD,
            true,
        ),
        raw_case(
            "continuation line before any header",
            b"OPTIONS * RTSP/1.0\r\n folded\r\nCSeq: 1\r\n\r\n".to_vec(),
            BAD,
            true,
        ),
        raw_case("head that is not UTF-8", not_utf8, BAD, true),
        raw_case(
            "header line of 5000 bytes",
            request("OPTIONS", "*", &format!("X-Long: {long}\r\n")),
            TOO_LARGE,
            true,
        ),
        raw_case(
            "request line of 5000 bytes",
            request("DESCRIBE", &format!("rtsp://h/live/{long}"), ""),
            TOO_LARGE,
            true,
        ),
        raw_case(
            "70 headers",
            request("OPTIONS", "*", &many_headers),
            TOO_LARGE,
            true,
        ),
        raw_case(
            "Content-Length of 20 digits",
            content_length("99999999999999999999"),
            BAD,
            true,
        ),
        raw_case(
            "Content-Length i64::MAX",
            content_length("9223372036854775807"),
            TOO_LARGE,
            true,
        ),
        raw_case("negative Content-Length", content_length("-5"), BAD, true),
        raw_case(
            "non-numeric Content-Length",
            content_length("abc"),
            BAD,
            true,
        ),
        raw_case(
            "hexadecimal Content-Length",
            content_length("0x10"),
            BAD,
            true,
        ),
        raw_case(
            "Content-Length with a space",
            content_length("1 2"),
            BAD,
            true,
        ),
        raw_case(
            "Content-Length one over the body limit",
            content_length("65537"),
            TOO_LARGE,
            true,
        ),
        raw_case(
            "malformed response sent to the server",
            b"RTSP/1.0 2x0 OK\r\nCSeq: 1\r\n\r\n".to_vec(),
            BAD,
            true,
        ),
        raw_case(
            "unknown method",
            request("FROB", "*", ""),
            NOT_IMPLEMENTED,
            false,
        ),
        raw_case(
            "lowercase method",
            request("options", "*", ""),
            NOT_IMPLEMENTED,
            false,
        ),
        raw_case(
            "REDIRECT from a client",
            request("REDIRECT", "rtsp://h/live/x", ""),
            NOT_IMPLEMENTED,
            false,
        ),
        case("a stray response is ignored", |p| {
            let mut c = Conn::open(p.rtsp)?;
            c.raw(b"RTSP/1.0 200 OK\r\nCSeq: 5\r\nContent-Length: 3\r\n\r\nabc");
            still_answers(&mut c, "a response from the client")
        }),
        case("pipelined bytes behind a waiting DESCRIBE", |p| {
            // The DESCRIBE of a stream nobody publishes waits; what follows stays buffered,
            // up to a bound.
            let mut c = Conn::open(p.rtsp)?;
            let url = c.url(&format!("live/{}", fresh("absent")));
            c.send("DESCRIBE", &url, &[], b"");
            let options = b"OPTIONS * RTSP/1.0\r\nCSeq: 9\r\n\r\n".repeat(20_000);
            c.raw(&options);
            status_then_closed(&mut c, &[404, 413], BY_PLAY_WAIT)
        }),
    ]
}

fn state_cases() -> Vec<Case> {
    let mut cases = vec![
        raw_case(
            "SETUP before ANNOUNCE or DESCRIBE",
            request(
                "SETUP",
                "rtsp://h/live/x/trackID=0",
                "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
            ),
            WRONG_STATE,
            false,
        ),
        raw_case(
            "RECORD without SETUP",
            request("RECORD", "rtsp://h/live/x", ""),
            WRONG_STATE,
            false,
        ),
        raw_case(
            "PLAY without DESCRIBE or SETUP",
            request("PLAY", "rtsp://h/live/healthy", ""),
            WRONG_STATE,
            false,
        ),
        raw_case(
            "PAUSE without a session",
            request("PAUSE", "rtsp://h/live/x", ""),
            WRONG_STATE,
            false,
        ),
        raw_case(
            "a Session id never handed out",
            request("OPTIONS", "*", "Session: 0123456789ABCDEF\r\n"),
            &[454],
            false,
        ),
    ];
    cases.push(case("ANNOUNCE then RECORD without SETUP", |p| {
        let mut c = Conn::open(p.rtsp)?;
        let path = format!("live/{}", fresh("norec"));
        c.announce(&path, &good_sdp())?;
        let url = c.url(&path);
        c.send("RECORD", &url, &[], b"");
        status_in(&mut c, WRONG_STATE, AT_ONCE)
    }));
    cases.push(case("ANNOUNCE then PLAY", |p| {
        let mut c = Conn::open(p.rtsp)?;
        let path = format!("live/{}", fresh("noplay"));
        c.announce(&path, &good_sdp())?;
        let url = c.url(&format!("{path}/trackID=0"));
        c.ok(
            "SETUP",
            &url,
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
            b"",
        )?;
        let url = c.url(&path);
        c.send("PLAY", &url, &[], b"");
        status_in(&mut c, WRONG_STATE, AT_ONCE)
    }));
    for (label, track) in [
        ("unknown track", "trackID=9"),
        ("control URL of another stream", "../other/trackID=0"),
    ] {
        cases.push(case(format!("SETUP of an {label}"), move |p| {
            let mut c = Conn::open(p.rtsp)?;
            let path = format!("live/{}", fresh("track"));
            c.announce(&path, &good_sdp())?;
            let url = c.url(&format!("{path}/{track}"));
            c.send(
                "SETUP",
                &url,
                &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
                b"",
            );
            status_in(&mut c, NOT_FOUND, AT_ONCE)
        }));
    }
    cases.push(case("RECORD with a wrong Session id", |p| {
        let mut c = Conn::open(p.rtsp)?;
        let path = format!("live/{}", fresh("sess"));
        c.announce(&path, &good_sdp())?;
        let url = c.url(&format!("{path}/trackID=0"));
        c.ok(
            "SETUP",
            &url,
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
            b"",
        )?;
        c.session = Some("DEADBEEF".into());
        let url = c.url(&path);
        c.send("RECORD", &url, &[], b"");
        status_in(&mut c, &[454], AT_ONCE)
    }));
    cases.push(case("ANNOUNCE of the stream an RTMP publisher has", |p| {
        let t0 = Instant::now();
        let mut c = Conn::open(p.rtsp)?;
        let r = c.announce(&format!("live/{HEALTHY}"), &good_sdp())?;
        match r.status {
            403 => Ok(Verdict::Answered("RTSP 403".into(), t0.elapsed())),
            s => Err(format!("status {s}")),
        }
    }));
    cases.push(case("a second ANNOUNCE on a publishing connection", |p| {
        let mut c = Conn::open(p.rtsp)?;
        let r = c.announce(&format!("live/{}", fresh("twice")), &good_sdp())?;
        if r.status != 200 {
            return Err(format!("first ANNOUNCE: {}", r.status));
        }
        let t0 = Instant::now();
        let r = c.announce(&format!("live/{}", fresh("twice")), &good_sdp())?;
        match r.status {
            400..=499 => Ok(Verdict::Answered(
                format!("RTSP {}", r.status),
                t0.elapsed(),
            )),
            s => Err(format!("second ANNOUNCE: status {s}")),
        }
    }));
    cases.push(case("DESCRIBE on a publishing connection", |p| {
        let mut c = Conn::open(p.rtsp)?;
        let path = format!("live/{}", fresh("pubdesc"));
        c.announce(&path, &good_sdp())?;
        let url = c.url(&path);
        c.send("DESCRIBE", &url, &[], b"");
        status_in(&mut c, &[404, 455], AT_ONCE)
    }));
    cases
}

fn transport_cases() -> Vec<Case> {
    let bad: &[(&str, &str)] = &[
        ("no Transport header", ""),
        ("an unknown lower transport", "RTP/AVP/SCTP;unicast"),
        ("garbage", "garbage"),
        (
            "interleaved=256-257",
            "RTP/AVP/TCP;unicast;interleaved=256-257",
        ),
        (
            "interleaved=255 (no room for RTCP)",
            "RTP/AVP/TCP;unicast;interleaved=255",
        ),
        ("interleaved=-1", "RTP/AVP/TCP;unicast;interleaved=-1"),
        ("interleaved=a-b", "RTP/AVP/TCP;unicast;interleaved=a-b"),
        (
            "client_port=70000-70001",
            "RTP/AVP;unicast;client_port=70000-70001",
        ),
        ("client_port=0-1", "RTP/AVP;unicast;client_port=0-1"),
        (
            "client_port=65535 (no room for RTCP)",
            "RTP/AVP;unicast;client_port=65535",
        ),
        ("client_port=abc", "RTP/AVP;unicast;client_port=abc"),
        ("UDP without client_port", "RTP/AVP;unicast"),
        ("multicast only", "RTP/AVP;multicast"),
        ("not RTP", "RAW/RAW/UDP;unicast"),
        (
            "ssrc that is not hex",
            "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=xyz",
        ),
    ];
    let mut cases: Vec<Case> = bad
        .iter()
        .map(|&(label, transport)| {
            case(format!("Transport: {label}"), move |p| {
                let mut c = Conn::open(p.rtsp)?;
                let path = format!("live/{}", fresh("tr"));
                c.announce(&path, &good_sdp())?;
                let url = c.url(&format!("{path}/trackID=0"));
                let headers: &[(&str, &str)] = if transport.is_empty() {
                    &[]
                } else {
                    &[("Transport", transport)]
                };
                c.send("SETUP", &url, headers, b"");
                status_in(&mut c, BAD_TRANSPORT, AT_ONCE)
            })
        })
        .collect();
    cases.push(case("Transport: 200 multicast alternatives", |p| {
        let mut c = Conn::open(p.rtsp)?;
        let path = format!("live/{}", fresh("tr"));
        c.announce(&path, &good_sdp())?;
        let url = c.url(&format!("{path}/trackID=0"));
        let list = vec!["RTP/AVP;multicast"; 200].join(",");
        c.send("SETUP", &url, &[("Transport", &list)], b"");
        status_in(&mut c, BAD_TRANSPORT, AT_ONCE)
    }));
    cases.push(case("Transport: TCP without interleaved", |p| {
        // Not an error: the server picks the channels and says which.
        let mut c = Conn::open(p.rtsp)?;
        let path = format!("live/{}", fresh("tr"));
        c.announce(&path, &good_sdp())?;
        let url = c.url(&format!("{path}/trackID=0"));
        let t0 = Instant::now();
        let r = c.ok("SETUP", &url, &[("Transport", "RTP/AVP/TCP;unicast")], b"")?;
        let t = r.headers.get("Transport").unwrap_or_default().to_owned();
        if !t.contains("interleaved=") {
            return Err(format!("answer without channels: {t}"));
        }
        Ok(Verdict::Answered(
            format!("RTSP 200 with {t}"),
            t0.elapsed(),
        ))
    }));
    cases
}

fn sdp_cases() -> Vec<Case> {
    let video = |fmtp: &str| sdp(&h264_section(fmtp));
    let aac = |fmtp: &str| sdp(&aac_section(fmtp));
    let mut many_media = String::new();
    for i in 0..17 {
        many_media.push_str(&format!("m=audio 0 RTP/AVP 0\r\na=control:trackID={i}\r\n"));
    }
    let many_attrs = sdp(&format!(
        "{}{}",
        h264_section(&good_sprop()),
        "a=x-junk:1\r\n".repeat(600)
    ));
    let refused: Vec<(&str, String)> = vec![
        ("no body", String::new()),
        (
            "a body that is not SDP",
            String::from_utf8_lossy(&noise(5, 2000)).into_owned(),
        ),
        ("v=1", "v=1\r\ns=x\r\n".into()),
        ("no media section", sdp("")),
        (
            "a media section without formats",
            sdp("m=video 0 RTP/AVP\r\n"),
        ),
        (
            "a non-numeric m= port",
            sdp("m=video x RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"),
        ),
        (
            "rtpmap without a clock rate",
            sdp("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264\r\n"),
        ),
        (
            "clock rate 0",
            sdp("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/0\r\n"),
        ),
        (
            "clock rate over 32 bits",
            sdp("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/99999999999\r\n"),
        ),
        (
            "channels 0",
            sdp("m=audio 0 RTP/AVP 97\r\na=rtpmap:97 PCMA/8000/0\r\n"),
        ),
        (
            "an unknown codec",
            sdp("m=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"),
        ),
        (
            "payload type 200",
            sdp("m=video 0 RTP/AVP 200\r\na=rtpmap:200 H264/90000\r\n"),
        ),
        ("H.264 packetization-mode=2", video("packetization-mode=2")),
        (
            "AAC without config",
            aac("sizelength=13;indexlength=3;indexdeltalength=3"),
        ),
        ("AAC config of odd length", aac("sizelength=13;config=121")),
        ("AAC config not hex", aac("sizelength=13;config=zz10")),
        ("AAC sizelength=0", aac("sizelength=0;config=1210")),
        ("AAC sizelength=99", aac("sizelength=99;config=1210")),
        ("17 media sections", sdp(&many_media)),
        ("600 attributes", many_attrs),
    ];
    let mut cases: Vec<Case> = refused
        .into_iter()
        .map(|(label, body)| {
            case(format!("ANNOUNCE with {label}"), move |p| {
                let mut c = Conn::open(p.rtsp)?;
                let url = c.url(&format!("live/{}", fresh("sdp")));
                c.send(
                    "ANNOUNCE",
                    &url,
                    &[("Content-Type", "application/sdp")],
                    body.as_bytes(),
                );
                status_in(&mut c, BAD_SDP, AT_ONCE)
            })
        })
        .collect();
    // Descriptions rill accepts (it is lenient where cameras are sloppy) but whose media cannot
    // be understood: whatever the answers, the session must go on or end cleanly, and media
    // sent on it must not hurt.
    let odd: Vec<(&str, String)> = vec![
        (
            "an fmtp line of 60 KB",
            video(&format!(
                "packetization-mode=1;x-junk={}",
                "z".repeat(60_000)
            )),
        ),
        (
            "sprop-parameter-sets that are not base64",
            video("packetization-mode=1;sprop-parameter-sets=!!!,@@@"),
        ),
        (
            "an SPS that does not parse",
            video(&format!(
                "packetization-mode=1;sprop-parameter-sets={},{}",
                b64(&[0x67, 0xFF, 0xFF, 0xFF]),
                b64(&[0x68])
            )),
        ),
        (
            "an AAC config that does not parse",
            aac("sizelength=13;indexlength=3;indexdeltalength=3;config=F8"),
        ),
    ];
    for (label, body) in odd {
        cases.push(case(
            format!("ANNOUNCE with {label}, then media"),
            move |p| {
                let t0 = Instant::now();
                let mut c = Conn::open(p.rtsp)?;
                let path = format!("live/{}", fresh("odd"));
                let r = c.announce(&path, &body)?;
                if r.status != 200 {
                    return if (400..500).contains(&r.status) {
                        Ok(Verdict::Answered(
                            format!("RTSP {}", r.status),
                            t0.elapsed(),
                        ))
                    } else {
                        Err(format!("ANNOUNCE: status {}", r.status))
                    };
                }
                let track = if body.contains("m=audio") { 1 } else { 0 };
                let url = c.url(&format!("{path}/trackID={track}"));
                let r = c.call(
                    "SETUP",
                    &url,
                    &[(
                        "Transport",
                        "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
                    )],
                    b"",
                )?;
                if r.status != 200 {
                    return if r.status >= 400 {
                        Ok(Verdict::Answered(
                            format!("ANNOUNCE 200, SETUP {}", r.status),
                            t0.elapsed(),
                        ))
                    } else {
                        Err(format!("SETUP: status {}", r.status))
                    };
                }
                let url = c.url(&path);
                c.ok("RECORD", &url, &[], b"")?;
                // An IDR slice and AAC-looking payloads, whatever the track.
                for i in 0..50u16 {
                    let mut payload = vec![0x65, 0x88, 0x84];
                    payload.extend(noise(u64::from(i), 300));
                    let pt = if track == 0 { 96 } else { 97 };
                    let pkt = rtp(0x80, 0x80 | pt, i, u32::from(i) * 3000, &payload);
                    c.raw(&interleaved(0, &pkt));
                }
                still_answers(&mut c, "media of a track that cannot be understood")
            },
        ));
    }
    cases
}

fn path_cases() -> Vec<Case> {
    let describe = |label: &str, path: String| {
        case(format!("DESCRIBE of {label}"), move |p| {
            let mut c = Conn::open(p.rtsp)?;
            let url = if path.starts_with("rtsp:") || path == "*" {
                path
            } else {
                c.url(&path)
            };
            c.send("DESCRIBE", &url, &[], b"");
            status_in(&mut c, &[400, 404], AT_ONCE)
        })
    };
    let long = "n".repeat(300);
    let mut cases = vec![
        describe("live/../etc", "live/../etc".into()),
        describe("../../etc/passwd", "../../etc/passwd".into()),
        describe("%2e%2e/%2e%2e", "%2e%2e/%2e%2e".into()),
        describe("live/%2e%2e", "live/%2e%2e".into()),
        describe("a NUL in the name", "live/a\0b".into()),
        describe("a control character", "live/a\x01b".into()),
        describe("a DEL character", "live/a\x7fb".into()),
        describe("a backslash", "live/..\\..\\x".into()),
        describe("a 300-byte name", format!("live/{long}")),
        describe("a name with a quote", "live/a\"b".into()),
        describe("three segments", "live/a/b".into()),
        describe("one segment", "live".into()),
        describe("no path", "rtsp://127.0.0.1".into()),
        describe("*", "*".into()),
        describe("a hidden name", "live/.hidden".into()),
    ];
    for (label, path) in [
        ("live/..", "live/.."),
        ("%2e%2e/x", "%2e%2e/x"),
        ("a NUL in the name", "live/a\0b"),
        ("three segments", "live/a/b"),
    ] {
        cases.push(case(format!("ANNOUNCE of {label}"), move |p| {
            let mut c = Conn::open(p.rtsp)?;
            let url = c.url(path);
            c.send(
                "ANNOUNCE",
                &url,
                &[("Content-Type", "application/sdp")],
                good_sdp().as_bytes(),
            );
            status_in(&mut c, &[400, 403, 404], AT_ONCE)
        }));
    }
    cases
}

/// Offenders only a deadline catches: run together, in one batch.
fn deadline_cases() -> Vec<Case> {
    vec![
        case("4 KiB of binary junk", |p| {
            // Junk lines are read as a head that never ends: refused at once when a line is
            // too long, else closed at the session timeout.
            let mut c = Conn::open(p.rtsp)?;
            let mut junk = vec![b'X'];
            junk.extend(noise(11, 4096));
            c.raw(&junk);
            expect_closed(&mut c.s, BY_SESSION)
        }),
        case("silent connection", |p| {
            let mut c = Conn::open(p.rtsp)?;
            expect_closed(&mut c.s, BY_SESSION)
        }),
        case("a head one byte every 100 ms, never ending", |p| {
            let mut c = Conn::open(p.rtsp)?;
            let mut head = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n".to_vec();
            head.extend(b"X-Slow: zzzzzzzz\r\n".repeat(1000));
            trickle(&mut c.s, &head, Duration::from_millis(100), BY_SESSION)
        }),
        case("CRLF one byte every 100 ms", |p| {
            let mut c = Conn::open(p.rtsp)?;
            trickle(&mut c.s, b"\r\n", Duration::from_millis(100), BY_SESSION)
        }),
        case("a body shorter than Content-Length, then silence", |p| {
            let mut c = Conn::open(p.rtsp)?;
            let url = c.url(&format!("live/{}", fresh("short")));
            let mut b =
                format!("ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 5000\r\n\r\n")
                    .into_bytes();
            b.extend_from_slice(&good_sdp().as_bytes()[..50]);
            c.raw(&b);
            expect_closed(&mut c.s, BY_SESSION)
        }),
        case("DESCRIBE of a stream nobody publishes", |p| {
            let mut c = Conn::open(p.rtsp)?;
            let url = c.url(&format!("live/{}", fresh("nobody")));
            c.send("DESCRIBE", &url, &[], b"");
            let t0 = Instant::now();
            let v = status_in(&mut c, NOT_FOUND, BY_PLAY_WAIT)?;
            let waited = t0.elapsed();
            if waited < Duration::from_millis(PLAY_WAIT_MS - 500) {
                return Err(format!("404 after {waited:?}, before the play wait"));
            }
            Ok(v)
        }),
        case("RECORD, then no media and never a read", |p| {
            let mut c = recording_tcp(p.rtsp, &fresh("mute"))?;
            // It must end for want of media, before the session timeout could end it.
            let v = expect_closed(&mut c.s, BY_PUBLISH_IDLE)?;
            let Verdict::Closed(t) = v else { return Ok(v) };
            if t < Duration::from_millis(PUBLISH_IDLE_MS - 500) {
                return Err(format!(
                    "closed after {t:?}, before the publish idle timeout"
                ));
            }
            Ok(v)
        }),
        case("RECORD, keep-alives but no media", |p| {
            let mut c = recording_tcp(p.rtsp, &fresh("keepalive"))?;
            let t0 = Instant::now();
            let mut buf = [0u8; 4096];
            while t0.elapsed() < BY_PUBLISH_IDLE {
                c.send("GET_PARAMETER", "*", &[], b"");
                sleep(Duration::from_millis(500));
                let _ = c.s.set_read_timeout(Some(Duration::from_millis(10)));
                loop {
                    match c.s.read(&mut buf) {
                        Ok(0) => return Ok(Verdict::Closed(t0.elapsed())),
                        Ok(_) => {}
                        Err(e) if would_block(&e) => break,
                        Err(_) => return Ok(Verdict::Closed(t0.elapsed())),
                    }
                }
            }
            Err(format!(
                "keep-alives kept a publisher without media for {BY_PUBLISH_IDLE:?}"
            ))
        }),
        case(
            "an interleaved frame announcing 65535 bytes, then silence",
            |p| {
                let mut c = recording_tcp(p.rtsp, &fresh("half"))?;
                let mut b = vec![b'$', 0, 0xFF, 0xFF];
                b.extend(rtp(0x80, 96, 1, 0, &[0x65; 100]));
                c.raw(&b);
                expect_closed(&mut c.s, BY_PUBLISH_IDLE)
            },
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Media garbage on recording sessions
// ---------------------------------------------------------------------------------------------

/// Interleaved or RTP garbage on a fresh TCP recording session: dropped, the session goes on.
fn tcp_media_case(name: &str, garbage: Vec<u8>) -> Case {
    let what = name.to_owned();
    case(format!("interleaved: {name}"), move |p| {
        let mut c = recording_tcp(p.rtsp, &fresh("garbage"))?;
        c.raw(&garbage);
        still_answers(&mut c, &what)
    })
}

/// Datagrams to the server's ports of a fresh UDP recording session (track 0): dropped, the
/// session goes on.
fn udp_media_case(name: &str, rtcp: bool, datagrams: Vec<Vec<u8>>) -> Case {
    let what = name.to_owned();
    case(format!("UDP: {name}"), move |p| {
        let (mut c, tracks) = recording_udp(p.rtsp, &fresh("udpgarbage"))?;
        for d in &datagrams {
            tracks[0].send(rtcp, d);
        }
        sleep(Duration::from_millis(100));
        still_answers(&mut c, &what)
    })
}

/// RTP packets that do not parse.
fn bad_rtp() -> Vec<(&'static str, Vec<u8>)> {
    let mut csrc = rtp(0x8F, 96, 1, 0, &[0; 4]);
    csrc.truncate(16);
    let mut ext = rtp(0x90, 96, 1, 0, &[0xBE, 0xDE, 0xFF, 0xFF]);
    ext.extend_from_slice(&[0; 8]);
    let mut padding = rtp(0xA0, 96, 1, 0, &[0x65; 10]);
    padding.push(200);
    let mut zero_padding = rtp(0xA0, 96, 1, 0, &[0x65; 10]);
    zero_padding.push(0);
    vec![
        ("RTP version 0", rtp(0x00, 96, 1, 0, &[0x65; 20])),
        ("RTP version 1", rtp(0x40, 96, 1, 0, &[0x65; 20])),
        ("RTP version 3", rtp(0xC0, 96, 1, 0, &[0x65; 20])),
        ("a truncated RTP header", vec![0x80, 96, 0, 1, 0, 0, 0, 0]),
        ("CSRC count beyond the packet", csrc),
        ("extension length beyond the packet", ext),
        ("padding longer than the payload", padding),
        ("padding length 0", zero_padding),
    ]
}

/// RTP packets that parse, with payloads the H.264 or AAC depacketizer must refuse. `pt` 96 is
/// the video track, 97 the audio track.
fn bad_payloads(seq: u16, ts: u32) -> Vec<(&'static str, u8, Vec<u8>)> {
    let fu = |ind: u8, hdr: u8| {
        let mut v = vec![ind, hdr];
        v.extend(noise(u64::from(hdr), 200));
        v
    };
    let mut stap_over = vec![24, 0x10, 0x00, 0x65];
    stap_over.extend([1, 2, 3]);
    let mut stap_zero = vec![24, 0x00, 0x00, 0x00, 0x02, 0x65, 0x88];
    stap_zero.extend([0u8; 2]);
    let mut au_over = vec![0x00, 0x10, 0xFF, 0xF8];
    au_over.extend([0x21; 20]);
    let mut au_headers_over = vec![0xFF, 0xF0];
    au_headers_over.extend([0x21; 4]);
    let mut au_many = vec![0x00, 0x10 * 8];
    for _ in 0..8 {
        au_many.extend([0x7F, 0xF8]);
    }
    au_many.extend([0x21; 10]);
    let p = |pt: u8, marker: bool, payload: &[u8]| {
        rtp(0x80, pt | if marker { 0x80 } else { 0 }, seq, ts, payload)
    };
    vec![
        (
            "H.264 FU-A middle without a start",
            96,
            p(96, false, &fu(0x7C, 0x05)),
        ),
        (
            "H.264 FU-A end without a start",
            96,
            p(96, true, &fu(0x7C, 0x45)),
        ),
        (
            "H.264 FU-A with start and end set",
            96,
            p(96, true, &fu(0x7C, 0xC5)),
        ),
        ("H.264 FU-A of one byte", 96, p(96, true, &[0x7C])),
        (
            "H.264 STAP-A with lengths overrunning",
            96,
            p(96, true, &stap_over),
        ),
        (
            "H.264 STAP-A with a NAL of length 0",
            96,
            p(96, true, &stap_zero),
        ),
        ("H.264 STAP-A of one byte", 96, p(96, true, &[24])),
        ("H.264 NAL type 0", 96, p(96, true, &[0x00, 1, 2, 3])),
        ("H.264 NAL type 30", 96, p(96, true, &[0x1E, 1, 2, 3])),
        ("H.264 MTAP16", 96, p(96, true, &[0x1A, 0, 0, 0, 0, 0])),
        ("an empty RTP payload", 96, p(96, true, &[])),
        (
            "AAC AU size overrunning the payload",
            97,
            p(97, true, &au_over),
        ),
        (
            "AAC AU-headers-length beyond the payload",
            97,
            p(97, true, &au_headers_over),
        ),
        (
            "AAC eight AU headers of 4095 bytes",
            97,
            p(97, true, &au_many),
        ),
        (
            "AAC AU-headers-length 0",
            97,
            p(97, true, &[0x00, 0x00, 0x21, 0x21]),
        ),
        ("AAC payload of one byte", 97, p(97, true, &[0x00])),
    ]
}

/// RTCP that does not parse or says nonsense.
fn bad_rtcp() -> Vec<(&'static str, Vec<u8>)> {
    let mut sr_wild = vec![0x80, 200, 0, 6];
    sr_wild.extend([0xFF; 24]);
    let mut rr_many = vec![0x9F, 201, 0, 1];
    rr_many.extend([0; 4]);
    vec![
        ("random RTCP", noise(21, 300)),
        (
            "RTCP with a length beyond the packet",
            vec![0x80, 200, 0xFF, 0xFF, 0, 0, 0, 1],
        ),
        ("RTCP version 0", vec![0x00, 200, 0, 1, 0, 0, 0, 1]),
        ("RTCP of 3 bytes", vec![0x80, 200, 0]),
        ("a sender report with wild times", sr_wild),
        ("a receiver report claiming 31 blocks", rr_many),
    ]
}

fn media_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.push(tcp_media_case(
        "a frame on a channel never set up",
        interleaved(9, &noise(3, 500)),
    ));
    cases.push(tcp_media_case("a frame of length 0", interleaved(0, &[])));
    cases.push(tcp_media_case(
        "a frame of length 1",
        interleaved(0, &[0x80]),
    ));
    cases.push(tcp_media_case(
        "a frame of 65535 bytes of noise",
        interleaved(0, &noise(4, 65535)),
    ));
    cases.push(tcp_media_case(
        "1000 frames of random RTP",
        (0..1000u64)
            .flat_map(|i| {
                let mut pkt = noise(i + 100, 40 + (i as usize % 300));
                pkt[0] = 0x80 | (pkt[0] & 0x3F);
                interleaved((i % 4) as u8, &pkt)
            })
            .collect(),
    ));
    for (label, pkt) in bad_rtp() {
        cases.push(tcp_media_case(label, interleaved(0, &pkt)));
    }
    for (label, pt, pkt) in bad_payloads(1, 0) {
        let channel = if pt == 96 { 0 } else { 2 };
        cases.push(tcp_media_case(label, interleaved(channel, &pkt)));
    }
    for (label, pkt) in bad_rtcp() {
        cases.push(tcp_media_case(label, interleaved(1, &pkt)));
    }
    cases.push(udp_media_case(
        "binary junk to the RTP port",
        false,
        (0..50).map(|i| noise(i + 7, 1200)).collect(),
    ));
    cases.push(udp_media_case(
        "binary junk to the RTCP port",
        true,
        (0..50).map(|i| noise(i + 9, 600)).collect(),
    ));
    cases.push(udp_media_case(
        "bad RTP to the RTP port",
        false,
        bad_rtp().into_iter().map(|(_, p)| p).collect(),
    ));
    cases.push(udp_media_case(
        "bad RTCP to the RTCP port",
        true,
        bad_rtcp().into_iter().map(|(_, p)| p).collect(),
    ));
    cases.push(udp_media_case(
        "empty datagrams",
        false,
        vec![Vec::new(); 20],
    ));
    cases.push(udp_media_case(
        "RTP to the RTCP port",
        true,
        vec![rtp(0x80, 0x80 | 96, 1, 0, &[0x65; 100]); 10],
    ));
    cases
}

// ---------------------------------------------------------------------------------------------
// A real stream with garbage mixed in
// ---------------------------------------------------------------------------------------------

/// What a dirty publisher sent.
struct DirtySent {
    /// FLV bodies of the coded video frames sent.
    frames: Vec<Bytes>,
    /// Garbage packets sent.
    garbage: usize,
}

/// Publishes the first `seconds` of the media file to `live/{name}` over TCP interleaved (or
/// UDP) at `speed` times real time, with one garbage packet after every `every` frames: packets
/// that do not parse, RTCP nonsense, and packets that parse but whose payload must be refused
/// (these take the next sequence number, as a sender's bug would).
fn dirty_publish(
    port: u16,
    name: &str,
    udp: bool,
    seconds: u32,
    speed: f64,
    every: usize,
) -> Result<DirtySent, String> {
    let (mut c, udp_tracks) = if udp {
        let (c, t) = recording_udp(port, name)?;
        (c, Some(t))
    } else {
        (recording_tcp(port, name)?, None)
    };
    let tracks = media_tracks();
    let mut packetizers = [
        Packetizer::new(&tracks[0], 0x1111, 0, 1000, 1400).map_err(|e| e.to_string())?,
        Packetizer::new(&tracks[1], 0x2222, 0, 2000, 1400).map_err(|e| e.to_string())?,
    ];
    let mut seq = [100u16, 5000u16];
    let mut last_ts = [0u32; 2];
    let mut sent = DirtySent {
        frames: Vec::new(),
        garbage: 0,
    };
    let emit = |c: &mut Conn, track: usize, rtcp: bool, data: &[u8]| match &udp_tracks {
        Some(t) => t[track].send(rtcp, data),
        None => c.raw(&interleaved((2 * track + usize::from(rtcp)) as u8, data)),
    };
    let unparsable: Vec<Vec<u8>> = bad_rtp().into_iter().map(|(_, p)| p).collect();
    let rtcp_junk: Vec<Vec<u8>> = bad_rtcp().into_iter().map(|(_, p)| p).collect();
    let kinds = unparsable.len() + rtcp_junk.len() + bad_payloads(0, 0).len();
    let t0 = Instant::now();
    let mut count = 0usize;
    let mut pkts = Vec::new();
    for tag in media_tags() {
        if tag.timestamp > seconds * 1000 {
            break;
        }
        let (track, frame) = match tag.tag_type {
            TagType::Video => (0, frame_from_video_tag(tag.timestamp, &tag.body)),
            TagType::Audio => (1, frame_from_audio_tag(tag.timestamp, &tag.body)),
            _ => continue,
        };
        let Ok(Some(frame)) = frame else { continue };
        if frame.kind != FrameKind::Coded {
            continue;
        }
        let due = t0 + Duration::from_secs_f64(f64::from(tag.timestamp) / 1000.0 / speed);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            sleep(wait);
        }
        pkts.clear();
        packetizers[track]
            .push(&frame, &mut pkts)
            .map_err(|e| format!("packetize: {e}"))?;
        for mut p in pkts.drain(..) {
            p.sequence = seq[track];
            seq[track] = seq[track].wrapping_add(1);
            last_ts[track] = p.timestamp;
            emit(&mut c, track, false, &p.to_bytes());
        }
        if track == 0 {
            sent.frames.push(tag.body.clone());
        }
        count += 1;
        if count.is_multiple_of(every) {
            let k = sent.garbage % kinds;
            if let Some(p) = unparsable.get(k) {
                emit(&mut c, count % 2, false, p);
            } else if let Some(p) = rtcp_junk.get(k - unparsable.len()) {
                emit(&mut c, count % 2, true, p);
            } else {
                let k = k - unparsable.len() - rtcp_junk.len();
                // It parses: it takes the next sequence number of its track, and the timestamp
                // of the frame just sent, as a broken sender's packet would.
                let tr = if bad_payloads(0, 0)[k].1 == 96 { 0 } else { 1 };
                let (_, _, pkt) = bad_payloads(seq[tr], last_ts[tr]).swap_remove(k);
                let mut pkt = RtpPacket::parse(&Bytes::from(pkt)).map_err(|e| e.to_string())?;
                pkt.ssrc = [0x1111, 0x2222][tr];
                seq[tr] = seq[tr].wrapping_add(1);
                emit(&mut c, tr, false, &pkt.to_bytes());
            }
            sent.garbage += 1;
        }
    }
    // Datagrams still in flight arrive before the end.
    sleep(Duration::from_millis(300));
    let url = c.url(&format!("live/{name}"));
    c.ok("TEARDOWN", &url, &[], b"")?;
    Ok(sent)
}

/// Runs a dirty publisher with HTTP-FLV and RTMP players of its stream: each player must get
/// every real video frame, in order.
fn dirty_stream_case(h: &mut Harness, udp: bool) {
    let name = if udp { "dirtyudp" } else { "dirtytcp" };
    let limit = Duration::from_secs(60);
    let players = [
        (
            "HTTP-FLV player",
            flv_player(h.server.http_port, name, limit),
        ),
        ("RTMP player", rtmp_player(h.server.rtmp_port, name, limit)),
    ];
    sleep(Duration::from_millis(400));
    // UDP in real time: a loaded machine must not overflow the server's socket buffer, or
    // real loss would be taken for the garbage's doing.
    let (seconds, speed) = if udp { (8, 1.0) } else { (12, 3.0) };
    let sent = dirty_publish(h.server.rtsp_port, name, udp, seconds, speed, 4)
        .unwrap_or_else(|e| panic!("dirty publisher ({name}): {e}"));
    h.assert_up("after a dirty publisher");
    // What arrives through RTSP has rill's own composition times in the FLV header.
    let strip = |frames: &[Bytes]| -> Vec<Bytes> {
        frames.iter().map(|f| f.slice(5.min(f.len())..)).collect()
    };
    let expected = strip(&sent.frames);
    for (label, p) in players {
        let mut got = p
            .join()
            .expect("player thread")
            .unwrap_or_else(|e| panic!("{name} {label}: {e}"));
        got.frames = strip(&got.frames);
        check_player(&format!("{name} {label}"), &got, &expected, false)
            .unwrap_or_else(|e| panic!("{e}; log tail:\n{}", log_tail(&h.server.log(), 30)));
        eprintln!(
            "[{name}] ok   {label}: all {} real frames among {} received; {} garbage packets sent",
            expected.len(),
            got.frames.len(),
            sent.garbage
        );
    }
    h.cases += 1;
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn rtsp_requests_sdp_transports_and_paths() {
    let mut h = start();
    h.run("rtsp messages", message_cases(), 12);
    h.run("rtsp state", state_cases(), 12);
    h.run("rtsp transport", transport_cases(), 12);
    h.run("sdp", sdp_cases(), 12);
    h.run("paths", path_cases(), 12);
    let slow = deadline_cases();
    let n = slow.len();
    h.run("deadlines", slow, n);
    let n = h.finish();
    eprintln!("rtsp_requests_sdp_transports_and_paths: {n} cases");
}

#[test]
fn rtp_rtcp_and_interleaved_garbage() {
    let mut h = start();
    h.run("media garbage", media_cases(), 12);
    dirty_stream_case(&mut h, false);
    dirty_stream_case(&mut h, true);
    let n = h.finish();
    eprintln!("rtp_rtcp_and_interleaved_garbage: {n} cases");
}
