//! RTSP client and server sessions talking to each other in memory on a virtual clock, and the
//! server session driven by real ffmpeg / ffprobe over loopback TCP.
//!
//! The media file is `h264_aac_10s.flv` from `$RILL_MEDIA_DIR`, else `../../shared/media` from
//! this crate, else `/work/shared/media`. A missing file or tool fails the test; nothing is
//! skipped.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rill_core::codec::aac::AudioSpecificConfig;
use rill_core::codec::h264::AvcConfig;
use rill_core::flv::{frame_from_audio_tag, frame_from_video_tag, FlvDemuxer, TagType};
use rill_core::media::{Frame, FrameKind, TrackKind};
use rill_core::rtp::{CodecParams, TrackParams};
use rill_core::rtsp::client::{ClientConfig, ClientError, ClientEvent, ClientSession};
use rill_core::rtsp::server::{
    Credentials, ServerConfig, ServerError, ServerEvent, ServerSession, Transmit,
};
use rill_core::rtsp::transport::LowerTransport;

fn media_file(name: &str) -> PathBuf {
    let dir = [
        std::env::var_os("RILL_MEDIA_DIR").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/media"
        ))),
        Some(PathBuf::from("/work/shared/media")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_dir())
    .expect("shared media directory not found (set RILL_MEDIA_DIR)");
    let f = dir.join(name);
    assert!(f.is_file(), "{} missing", f.display());
    f
}

/// The file's frames in file order, as (track, frame): track 0 video, track 1 audio.
fn file_frames() -> Vec<(usize, Frame)> {
    let data = std::fs::read(media_file("h264_aac_10s.flv")).expect("read FLV");
    let mut d = FlvDemuxer::default();
    d.push(&data);
    let mut out = Vec::new();
    while let Some(tag) = d.poll_tag().expect("valid FLV") {
        let f = match tag.tag_type {
            TagType::Video => frame_from_video_tag(tag.timestamp, &tag.body).unwrap(),
            TagType::Audio => frame_from_audio_tag(tag.timestamp, &tag.body).unwrap(),
            _ => None,
        };
        if let Some(f) = f {
            let track = usize::from(f.track() == TrackKind::Audio);
            out.push((track, f));
        }
    }
    out
}

fn track_params(frames: &[(usize, Frame)]) -> Vec<TrackParams> {
    let config = |t: usize| {
        frames
            .iter()
            .find(|(tr, f)| *tr == t && f.kind == FrameKind::Config)
            .map(|(_, f)| f.payload.clone())
            .expect("config frame")
    };
    let avc = AvcConfig::parse(&config(0)).unwrap();
    let asc_bytes = config(1);
    let asc = AudioSpecificConfig::parse(&asc_bytes).unwrap();
    vec![
        TrackParams {
            payload_type: 96,
            clock_rate: 90000,
            channels: 1,
            codec: CodecParams::H264 {
                sps: avc.sps,
                pps: avc.pps,
            },
        },
        TrackParams {
            payload_type: 97,
            clock_rate: asc.sample_rate,
            channels: asc.channel_count(),
            codec: CodecParams::aac_hbr(asc_bytes),
        },
    ]
}

/// A client and a server session wired together in memory.
struct Pair {
    client: ClientSession,
    server: ServerSession,
    client_events: Vec<ClientEvent>,
    server_events: Vec<ServerEvent>,
    /// Tracks the server answers DESCRIBE with.
    describe_tracks: Vec<TrackParams>,
    /// Every byte the server sent over TCP.
    server_bytes: Vec<u8>,
}

impl Pair {
    fn new(client: ClientSession, server: ServerSession) -> Self {
        Pair {
            client,
            server,
            client_events: Vec::new(),
            server_events: Vec::new(),
            describe_tracks: Vec::new(),
            server_bytes: Vec::new(),
        }
    }

    /// Moves bytes both ways and answers the server's requests until nothing moves.
    fn pump(&mut self, now: u64) -> Result<(), String> {
        loop {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                moved = true;
                match t {
                    Transmit::Tcp(b) => self
                        .server
                        .handle_input(&b, now)
                        .map_err(|e| e.to_string())?,
                    Transmit::Udp { .. } => panic!("no UDP in memory"),
                }
            }
            while let Some(ev) = self.server.poll_event() {
                moved = true;
                match &ev {
                    ServerEvent::AnnounceRequest { .. } => self.server.accept_announce().unwrap(),
                    ServerEvent::DescribeRequest { .. } => {
                        let t = self.describe_tracks.clone();
                        self.server.accept_describe(t).unwrap()
                    }
                    ServerEvent::UdpPortsRequest { .. } => self.server.reject_udp(461).unwrap(),
                    _ => {}
                }
                self.server_events.push(ev);
            }
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                match t {
                    Transmit::Tcp(b) => {
                        self.server_bytes.extend_from_slice(&b);
                        self.client
                            .handle_input(&b, now)
                            .map_err(|e| e.to_string())?
                    }
                    Transmit::Udp { .. } => panic!("no UDP in memory"),
                }
            }
            while let Some(ev) = self.client.poll_event() {
                moved = true;
                self.client_events.push(ev);
            }
            if !moved {
                return Ok(());
            }
        }
    }

    fn timers(&mut self, now: u64) -> Result<(), String> {
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now).map_err(|e| e.to_string())?;
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now).map_err(|e| e.to_string())?;
        }
        self.pump(now)
    }
}

fn server(config: ServerConfig) -> ServerSession {
    ServerSession::new(config, b"server random bytes 0123456789", 0)
}

/// Checks that `got` (frames of one track as received) match the coded frames of `sent`:
/// payloads equal, timestamps rebased by `base` within 1 ms (dts of video from the estimator's
/// settled point on).
fn check_track(sent: &[Frame], got: &[Frame], base: i64, video: bool) {
    let sent: Vec<&Frame> = sent.iter().filter(|f| f.kind == FrameKind::Coded).collect();
    let got_coded: Vec<&Frame> = got.iter().filter(|f| f.kind == FrameKind::Coded).collect();
    assert_eq!(got_coded.len(), sent.len(), "frame count (video: {video})");
    assert_eq!(got.first().map(|f| f.kind), Some(FrameKind::Config));
    let mut last_dts = i64::MIN;
    for (i, (a, b)) in sent.iter().zip(&got_coded).enumerate() {
        assert_eq!(
            a.payload, b.payload,
            "payload of frame {i} (video: {video})"
        );
        assert_eq!(a.key, b.key, "key flag of frame {i}");
        assert!(
            (a.pts - base - b.pts).abs() <= 1,
            "pts of frame {i} (video: {video}): sent {} got {}",
            a.pts - base,
            b.pts
        );
        assert!(b.dts >= last_dts && b.dts <= b.pts, "dts order at {i}");
        last_dts = b.dts;
        // RTP carries no dts: video dts is estimated and equals pts once the estimator has
        // seen 120 frames without reordering; audio dts is pts.
        if !video || i > 121 {
            assert!(
                (a.dts - base - b.dts).abs() <= 1,
                "dts of frame {i} (video: {video}): sent {} got {}",
                a.dts - base,
                b.dts
            );
        }
    }
}

fn split_tracks(frames: &[(usize, Frame)]) -> [Vec<Frame>; 2] {
    let mut out = [Vec::new(), Vec::new()];
    for (t, f) in frames {
        out[*t].push(f.clone());
    }
    out
}

#[test]
fn record_session_delivers_file_frames_intact() {
    let frames = file_frames();
    let params = track_params(&frames);
    let client = ClientSession::record(
        ClientConfig::new("rtsp://127.0.0.1:5544/live/x"),
        params.clone(),
        b"client random",
        0,
    )
    .unwrap();
    let mut pair = Pair::new(client, server(ServerConfig::default()));
    pair.pump(0).unwrap();
    assert!(pair.client_events.contains(&ClientEvent::Recording));
    assert!(pair.server_events.contains(&ServerEvent::Recording));
    match &pair.server_events[0] {
        ServerEvent::AnnounceRequest { path, tracks, .. } => {
            assert_eq!(path, "live/x");
            assert_eq!(tracks, &params);
        }
        e => panic!("first event {e:?}"),
    }
    let base = frames[0].1.dts;
    let mut now = 0;
    for (track, f) in &frames {
        now = now.max((f.dts - base).max(0) as u64);
        pair.timers(now).unwrap();
        pair.client.send_frame(*track, f, now).unwrap();
        pair.pump(now).unwrap();
    }
    pair.client.teardown();
    pair.pump(now).unwrap();
    assert!(pair.client_events.contains(&ClientEvent::TornDown));
    assert_eq!(pair.server_events.last(), Some(&ServerEvent::Teardown));
    let mut got = [Vec::new(), Vec::new()];
    for ev in &pair.server_events {
        if let ServerEvent::Frame { track, frame } = ev {
            got[*track].push(frame.clone());
        }
    }
    let sent = split_tracks(&frames);
    check_track(&sent[0], &got[0], base, true);
    check_track(&sent[1], &got[1], base, false);
    // Config frames: the AudioSpecificConfig is the same; the AVC record has the same sets.
    let aac_cfg = sent[1]
        .iter()
        .find(|f| f.kind == FrameKind::Config)
        .unwrap();
    assert_eq!(got[1][0].payload, aac_cfg.payload);
    let a = AvcConfig::parse(&sent[0][0].payload).unwrap();
    let b = AvcConfig::parse(&got[0][0].payload).unwrap();
    assert_eq!((a.sps, a.pps), (b.sps, b.pps));
    let stats = pair.server.stats();
    assert_eq!(stats.dropped_packets, 0);
    assert_eq!(stats.rtp_errors, 0);
}

#[test]
fn play_session_delivers_file_frames_intact() {
    let frames = file_frames();
    let params = track_params(&frames);
    let client = ClientSession::play(
        ClientConfig::new("rtsp://127.0.0.1:5544/live/x"),
        b"client random",
        0,
    );
    let mut pair = Pair::new(client, server(ServerConfig::default()));
    pair.describe_tracks = params.clone();
    pair.pump(0).unwrap();
    assert_eq!(
        pair.client_events,
        vec![
            ClientEvent::Described {
                tracks: params.clone()
            },
            ClientEvent::Playing
        ]
    );
    assert!(pair.server.is_playing());
    let base = frames[0].1.dts;
    let mut now = 0;
    for (track, f) in &frames {
        now = now.max((f.dts - base).max(0) as u64);
        pair.timers(now).unwrap();
        pair.server.send_frame(*track, f, now).unwrap();
        pair.pump(now).unwrap();
    }
    let mut got = [Vec::new(), Vec::new()];
    for ev in &pair.client_events {
        if let ClientEvent::Frame { track, frame } = ev {
            got[*track].push(frame.clone());
        }
    }
    // The last video frame stays with the depacketizer until the next one shows it is whole.
    let mut sent = split_tracks(&frames);
    let last_video = sent[0].len() - 1;
    sent[0].truncate(last_video);
    check_track(&sent[0], &got[0], base, true);
    check_track(&sent[1], &got[1], base, false);
    // Keep-alives kept the session going for the 10 s of media.
    let coded = frames
        .iter()
        .filter(|(_, f)| f.kind == FrameKind::Coded)
        .count();
    assert!(pair.server.stats().packets_sent as usize >= coded);
    pair.client.teardown();
    pair.pump(now).unwrap();
    assert!(pair.client_events.contains(&ClientEvent::TornDown));
}

/// The interleaved frames `(channel, payload)` in bytes a server sent, skipping RTSP answers.
fn interleaved_frames(mut b: &[u8]) -> Vec<(u8, bytes::Bytes)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b[0] == b'$' {
            let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
            out.push((b[1], bytes::Bytes::copy_from_slice(&b[4..4 + len])));
            b = &b[4 + len..];
        } else {
            let end = b
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("answer head")
                + 4;
            let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
            let body = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().expect("content-length"));
            b = &b[end + body..];
        }
    }
    out
}

/// Every RTCP sender report of a played session pairs the NTP time of an instant with the RTP
/// time of that same instant: over a virtual minute of frames arriving up to 40 ms late, each
/// report of either track maps its NTP time to the media time its RTP time stands for within
/// 10 ms of the first report. (Reports extrapolated from the arrival time of the last frame were
/// off by that frame's lateness; extrapolated from a stale `now`, by seconds.)
#[test]
fn sender_reports_pair_ntp_and_rtp_of_the_same_instant_despite_jitter() {
    use rill_core::rtp::rtcp::{parse_compound, RtcpPacket};
    use rill_core::rtp::RtpPacket;

    let file = file_frames();
    let params = track_params(&file);
    let base = file[0].1.dts;
    let period = file.iter().map(|(_, f)| f.dts).max().unwrap() - base + 40;
    // Six plays of the 10 s file back to back, configs only in the first.
    let mut frames = Vec::new();
    for round in 0..6 {
        for (t, f) in &file {
            if round > 0 && f.kind == FrameKind::Config {
                continue;
            }
            let mut f = f.clone();
            f.dts += round * period;
            f.pts += round * period;
            frames.push((*t, f));
        }
    }
    let client = ClientSession::play(
        ClientConfig::new("rtsp://127.0.0.1:5544/live/x"),
        b"client random",
        0,
    );
    let wall = 1_700_000_000_000;
    let config = ServerConfig {
        wallclock_offset_ms: wall,
        ..ServerConfig::default()
    };
    let mut pair = Pair::new(client, server(config));
    pair.describe_tracks = params.clone();
    pair.pump(0).unwrap();
    assert!(pair.server.is_playing());
    pair.server_bytes.clear();
    let start = 1_000;
    let mut now = start;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for (track, f) in &frames {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let late = rng % 41;
        now = now.max(start + (f.dts - base) as u64 + late);
        pair.timers(now).unwrap();
        pair.server.send_frame(*track, f, now).unwrap();
        pair.pump(now).unwrap();
    }
    let channel = |t: usize| match pair.server.track_transport(t) {
        Some(rill_core::rtsp::server::TrackTransport::Interleaved { rtp, rtcp }) => (rtp, rtcp),
        other => panic!("track {t} transport {other:?}"),
    };
    let first_pts = |t: usize| {
        frames
            .iter()
            .find(|(tr, f)| *tr == t && f.kind == FrameKind::Coded)
            .unwrap()
            .1
            .pts
            - base
    };
    let mut offsets = Vec::new();
    for (t, p) in params.iter().enumerate() {
        let (rtp_ch, rtcp_ch) = channel(t);
        let clock = i64::from(p.clock_rate);
        // The RTP time of media time 0, from the first packet (the first coded frame).
        let mut zero = None;
        let mut reports = 0;
        for (ch, data) in interleaved_frames(&pair.server_bytes) {
            if ch == rtp_ch && zero.is_none() {
                let pkt = RtpPacket::parse(&data).unwrap();
                let ticks = first_pts(t) * clock / 1000;
                zero = Some(pkt.timestamp.wrapping_sub(ticks as u32));
            }
            if ch != rtcp_ch {
                continue;
            }
            for pkt in parse_compound(&data).unwrap() {
                let RtcpPacket::SenderReport(sr) = pkt else {
                    continue;
                };
                reports += 1;
                let ntp_ms = (((sr.ntp_timestamp >> 32) - 2_208_988_800) * 1000
                    + (((sr.ntp_timestamp & 0xFFFF_FFFF) * 1000) >> 32))
                    as i64;
                // The first report goes out before the first packet, for the first frame.
                let zero = zero.unwrap_or_else(|| {
                    let f = frames.iter().find(|(tr, _)| *tr == t).unwrap();
                    sr.rtp_timestamp
                        .wrapping_sub(((f.1.dts - base) * clock / 1000) as u32)
                });
                let media_ms = i64::from(sr.rtp_timestamp.wrapping_sub(zero) as i32) * 1000 / clock;
                offsets.push((t, reports, ntp_ms - media_ms));
            }
        }
        assert!(
            reports >= 12,
            "track {t}: {reports} sender reports in a minute"
        );
    }
    let reference = offsets[0].2;
    for (t, n, off) in &offsets {
        assert!(
            (off - reference).abs() <= 10,
            "track {t} report {n}: NTP - media time {} ms, first report {} ms",
            off - wall as i64,
            reference - wall as i64
        );
    }
}

fn auth_config() -> ServerConfig {
    ServerConfig {
        publish_credentials: Some(Credentials {
            username: "alice".to_owned(),
            password: "secret".to_owned(),
        }),
        ..ServerConfig::default()
    }
}

fn record_client(password: Option<&str>) -> ClientSession {
    let frames = file_frames();
    let mut config = ClientConfig::new("rtsp://127.0.0.1/live/x");
    config.credentials = password.map(|p| Credentials {
        username: "alice".to_owned(),
        password: p.to_owned(),
    });
    ClientSession::record(config, track_params(&frames), b"c", 0).unwrap()
}

#[test]
fn digest_auth_refuses_wrong_password_and_admits_right_one() {
    let mut pair = Pair::new(record_client(Some("wrong")), server(auth_config()));
    let err = pair.pump(0).unwrap_err();
    assert!(err.contains("ANNOUNCE refused with 401"), "{err}");
    assert!(pair.server_events.is_empty());

    let mut pair = Pair::new(record_client(None), server(auth_config()));
    let err = pair.pump(0).unwrap_err();
    assert!(err.contains("401"), "{err}");

    let mut pair = Pair::new(record_client(Some("secret")), server(auth_config()));
    pair.pump(0).unwrap();
    assert!(pair.client_events.contains(&ClientEvent::Recording));
    assert!(matches!(
        pair.server_events[0],
        ServerEvent::AnnounceRequest { .. }
    ));
}

#[test]
fn basic_auth_for_play() {
    let frames = file_frames();
    let mut config = ServerConfig {
        play_credentials: Some(Credentials {
            username: "bob".to_owned(),
            password: "pw".to_owned(),
        }),
        ..ServerConfig::default()
    };
    config.auth_scheme = rill_core::rtsp::server::AuthScheme::Basic;
    let mut cc = ClientConfig::new("rtsp://127.0.0.1/live/x");
    cc.credentials = Some(Credentials {
        username: "bob".to_owned(),
        password: "pw".to_owned(),
    });
    let mut pair = Pair::new(ClientSession::play(cc, b"c", 0), server(config));
    pair.describe_tracks = track_params(&frames);
    pair.pump(0).unwrap();
    assert!(pair.client_events.contains(&ClientEvent::Playing));
}

/// Feeds raw bytes to a server session and returns everything it answers as text.
fn raw(server: &mut ServerSession, text: &[u8], now: u64) -> (Result<(), ServerError>, String) {
    let r = server.handle_input(text, now);
    let mut out = Vec::new();
    while let Some(t) = server.poll_transmit() {
        if let Transmit::Tcp(b) = t {
            out.extend_from_slice(&b);
        }
    }
    (r, String::from_utf8_lossy(&out).into_owned())
}

fn recording_pair() -> Pair {
    let mut pair = Pair::new(record_client(None), server(ServerConfig::default()));
    pair.pump(0).unwrap();
    assert!(pair.server_events.contains(&ServerEvent::Recording));
    pair
}

#[test]
fn foreign_session_id_gets_454() {
    let pair = recording_pair();
    let id = pair.client.session_id().unwrap().to_owned();
    assert_eq!(id, pair.server.session_id());
    // Another connection presenting this connection's session id.
    let mut other = ServerSession::new(ServerConfig::default(), b"other connection", 0);
    let req = format!("GET_PARAMETER rtsp://h/live/x RTSP/1.0\r\nCSeq: 7\r\nSession: {id}\r\n\r\n");
    let (r, text) = raw(&mut other, req.as_bytes(), 0);
    r.unwrap();
    assert!(
        text.starts_with("RTSP/1.0 454 Session Not Found\r\n"),
        "{text}"
    );
    assert!(text.contains("CSeq: 7\r\n"));
    // And a made-up id on the right connection.
    let mut pair = recording_pair();
    let (r, text) = raw(
        &mut pair.server,
        b"PLAY rtsp://h/live/x RTSP/1.0\r\nCSeq: 9\r\nSession: DEADBEEF\r\n\r\n",
        1,
    );
    r.unwrap();
    assert!(text.starts_with("RTSP/1.0 454 "), "{text}");
    // The real id still works.
    let req =
        format!("GET_PARAMETER rtsp://h/live/x RTSP/1.0\r\nCSeq: 10\r\nSession: {id}\r\n\r\n");
    let (_, text) = raw(&mut pair.server, req.as_bytes(), 2);
    assert!(text.starts_with("RTSP/1.0 200 OK\r\n"), "{text}");
}

#[test]
fn interleaved_frame_on_unknown_channel_is_dropped_not_fatal() {
    let frames = file_frames();
    let mut pair = recording_pair();
    // Channel 9 was never set up (the client uses 0-3).
    pair.server.handle_input(b"$\x09\x00\x04abcd", 0).unwrap();
    assert_eq!(pair.server.stats().dropped_packets, 1);
    // Media still flows.
    let mut n = 0;
    for (track, f) in frames.iter().take(50) {
        pair.client.send_frame(*track, f, 0).unwrap();
        pair.pump(0).unwrap();
    }
    for ev in &pair.server_events {
        if matches!(ev, ServerEvent::Frame { .. }) {
            n += 1;
        }
    }
    assert!(n > 20, "{n} frames after the stray packet");
    assert_eq!(pair.server.stats().dropped_packets, 1);
}

#[test]
fn huge_content_length_gets_413_and_close() {
    let mut s = server(ServerConfig::default());
    let (r, text) = raw(
        &mut s,
        b"ANNOUNCE rtsp://h/live/x RTSP/1.0\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: 999999999999\r\n\r\n",
        0,
    );
    assert!(matches!(r, Err(ServerError::Rtsp(_))), "{r:?}");
    assert!(text.starts_with("RTSP/1.0 413 "), "{text}");
    // Final: later input fails the same way.
    assert!(s.handle_input(b"OPTIONS * RTSP/1.0\r\n\r\n", 1).is_err());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn session_times_out_without_traffic_and_keepalive_extends_it() {
    let mut pair = recording_pair();
    let deadline = pair.server.poll_timeout().unwrap();
    assert!(deadline <= 60_000);
    // Receiver reports come on the way (every 5 s) without ending the session.
    pair.server.handle_timeout(5_000).unwrap();
    // A keep-alive moves the deadline.
    let id = pair.server.session_id().to_owned();
    let req =
        format!("GET_PARAMETER rtsp://h/live/x RTSP/1.0\r\nCSeq: 20\r\nSession: {id}\r\n\r\n");
    let (r, _) = raw(&mut pair.server, req.as_bytes(), 30_000);
    r.unwrap();
    let mut t = 30_000;
    while let Some(next) = pair.server.poll_timeout() {
        t = next;
        if pair.server.handle_timeout(t).is_err() {
            break;
        }
    }
    assert_eq!(t, 90_000);
    assert!(matches!(
        pair.server.handle_timeout(t),
        Err(ServerError::Timeout { after_ms: 60_000 })
    ));
}

#[test]
fn client_falls_back_to_tcp_on_461() {
    let frames = file_frames();
    let mut cc = ClientConfig::new("rtsp://127.0.0.1/live/x");
    cc.transport = LowerTransport::Udp;
    cc.udp_port_base = 40000;
    let mut pair = Pair::new(
        ClientSession::play(cc, b"c", 0),
        server(ServerConfig::default()),
    );
    pair.describe_tracks = track_params(&frames);
    pair.pump(0).unwrap();
    assert!(pair.client_events.contains(&ClientEvent::Playing));
    assert!(pair
        .server_events
        .iter()
        .any(|e| matches!(e, ServerEvent::UdpPortsRequest { track: 0, .. })));
    assert!(matches!(
        pair.client.track_transport(1),
        Some(rill_core::rtsp::server::TrackTransport::Interleaved { .. })
    ));
}

#[test]
fn udp_setup_uses_application_ports() {
    let frames = file_frames();
    let mut cc = ClientConfig::new("rtsp://127.0.0.1/live/x");
    cc.transport = LowerTransport::Udp;
    cc.udp_port_base = 40000;
    let mut client = ClientSession::play(cc, b"c", 0);
    let mut s = server(ServerConfig::default());
    // Drive by hand so the server's UDP port request can be answered with ports.
    let mut events = Vec::new();
    for _ in 0..20 {
        while let Some(Transmit::Tcp(b)) = client.poll_transmit() {
            s.handle_input(&b, 0).unwrap();
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                ServerEvent::DescribeRequest { .. } => {
                    s.accept_describe(track_params(&frames)).unwrap()
                }
                ServerEvent::UdpPortsRequest {
                    track,
                    client_ports,
                } => {
                    assert_eq!(client_ports.0, 40000 + 2 * track as u16);
                    let p = 50000 + 2 * track as u16;
                    s.accept_udp((p, p + 1)).unwrap();
                }
                _ => {}
            }
        }
        while let Some(t) = s.poll_transmit() {
            match t {
                Transmit::Tcp(b) => client.handle_input(&b, 0).unwrap(),
                Transmit::Udp { track, rtcp, bytes } => client.handle_udp(track, rtcp, bytes, 0),
            }
        }
        while let Some(ev) = client.poll_event() {
            events.push(ev);
        }
    }
    assert!(events.contains(&ClientEvent::Playing));
    // Frames go out as datagrams and come back as frames.
    let mut datagrams = 0;
    for (track, f) in frames.iter().take(60) {
        s.send_frame(*track, f, 0).unwrap();
        while let Some(t) = s.poll_transmit() {
            match t {
                Transmit::Udp { track, rtcp, bytes } => {
                    datagrams += 1;
                    client.handle_udp(track, rtcp, bytes, 0)
                }
                Transmit::Tcp(_) => panic!("media on TCP"),
            }
        }
    }
    while let Some(ev) = client.poll_event() {
        events.push(ev);
    }
    assert!(datagrams > 60);
    let got = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Frame { .. }))
        .count();
    assert!(got > 40, "{got}");
    assert_eq!(
        s.track_transport(0),
        Some(rill_core::rtsp::server::TrackTransport::Udp {
            client: (40000, 40001),
            server: (50000, 50001)
        })
    );
}

#[test]
fn client_times_out_without_answer() {
    let mut c = ClientSession::play(ClientConfig::new("rtsp://h/x"), b"c", 0);
    let t = c.poll_timeout().unwrap();
    assert!(matches!(
        c.handle_timeout(t),
        Err(ClientError::Timeout { .. })
    ));
}

// ---- real ffmpeg / ffprobe against a ServerSession on loopback ----

/// Runs one connection of a test server: feeds what the peer sends to the session, writes
/// what it answers, and calls `on_event` for its events (which may send frames). Stops when the
/// peer closes, the session fails, or `limit` passes.
fn serve(
    stream: TcpStream,
    session: &mut ServerSession,
    limit: Duration,
    mut on_event: impl FnMut(&mut ServerSession, ServerEvent, u64),
    mut on_idle: impl FnMut(&mut ServerSession, u64),
) {
    let start = Instant::now();
    let mut stream = stream;
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    while start.elapsed() < limit {
        let now = start.elapsed().as_millis() as u64;
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if session.handle_input(&buf[..n], now).is_err() {
                    flush(&mut stream, session);
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        if session.poll_timeout().is_some_and(|t| t <= now) && session.handle_timeout(now).is_err()
        {
            return;
        }
        while let Some(ev) = session.poll_event() {
            on_event(session, ev, now);
        }
        on_idle(session, now);
        if !flush(&mut stream, session) {
            return;
        }
    }
    panic!("test server connection still open after {limit:?}");
}

fn flush(stream: &mut TcpStream, session: &mut ServerSession) -> bool {
    while let Some(t) = session.poll_transmit() {
        if let Transmit::Tcp(b) = t {
            if stream.write_all(&b).is_err() {
                return false;
            }
        }
    }
    true
}

fn accept(listener: &TcpListener, limit: Duration) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return s;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && start.elapsed() < limit => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("no connection from the tool: {e}"),
        }
    }
}

#[test]
fn ffmpeg_pushes_over_tcp_to_server_session() {
    let frames = file_frames();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-t", "3", "-i"])
        .arg(media_file("h264_aac_10s.flv"))
        .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(format!("rtsp://127.0.0.1:{port}/live/x"))
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg is required (tools/test-all.sh installs it)");
    let stream = accept(&listener, Duration::from_secs(20));
    let mut session = ServerSession::new(ServerConfig::default(), b"ffmpeg push", 0);
    let mut got = [Vec::new(), Vec::new()];
    let mut announced = Vec::new();
    let mut torn_down = false;
    serve(
        stream,
        &mut session,
        Duration::from_secs(30),
        |s, ev, _| match ev {
            ServerEvent::AnnounceRequest { path, tracks, .. } => {
                assert_eq!(path, "live/x");
                announced = tracks;
                s.accept_announce().unwrap();
            }
            ServerEvent::Frame { track, frame } => got[track.min(1)].push(frame),
            ServerEvent::Teardown => torn_down = true,
            _ => {}
        },
        |_, _| {},
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "ffmpeg failed: {status:?}");
    assert!(torn_down, "ffmpeg sends TEARDOWN at the end");
    assert_eq!(announced.len(), 2);
    assert!(matches!(announced[0].codec, CodecParams::H264 { .. }));
    assert!(matches!(announced[1].codec, CodecParams::Aac { .. }));
    assert_eq!(session.stats().dropped_packets, 0);
    assert_eq!(session.stats().rtp_errors, 0);
    // Compare with the file: the first N coded frames of each track, in order.
    let sent = split_tracks(&frames);
    let first = |v: &[Frame]| {
        v.iter()
            .find(|f| f.kind == FrameKind::Coded)
            .map(|f| f.pts)
            .unwrap()
    };
    // Audio and video are lined up across tracks by ffmpeg's first sender reports (wall clock,
    // so a few ms of slack).
    let sent_av = first(&sent[1]) - first(&sent[0]);
    let got_av = first(&got[1]) - first(&got[0]);
    assert!(
        (sent_av - got_av).abs() <= 5,
        "a-v offset sent {sent_av} got {got_av}"
    );
    for (t, got) in got.iter().enumerate() {
        let sent: Vec<&Frame> = sent[t]
            .iter()
            .filter(|f| f.kind == FrameKind::Coded)
            .collect();
        let got: Vec<&Frame> = got.iter().filter(|f| f.kind == FrameKind::Coded).collect();
        assert!(
            got.len() > if t == 0 { 60 } else { 100 },
            "track {t}: {} frames",
            got.len()
        );
        let p0 = sent[0].pts;
        for (i, (a, b)) in sent.iter().zip(&got).enumerate() {
            assert_eq!(a.payload, b.payload, "track {t} frame {i}");
            // ffmpeg's RTP timestamps count from a random offset; tracks are lined up by its
            // sender reports, within a few ms of wall clock.
            assert!(
                ((a.pts - p0) - (b.pts - got[0].pts)).abs() <= 1,
                "track {t} frame {i}: {} vs {}",
                a.pts - p0,
                b.pts - got[0].pts
            );
        }
    }
}

#[test]
fn ffprobe_plays_from_server_session() {
    let frames = file_frames();
    let params = track_params(&frames);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Default transport: ffprobe asks for UDP first; the test server has no UDP sockets and
    // answers 461, and ffprobe falls back to TCP interleaved.
    let child = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(format!("rtsp://127.0.0.1:{port}/live/x"))
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("ffprobe is required (tools/test-all.sh installs it)");
    let stream = accept(&listener, Duration::from_secs(20));
    let mut session = ServerSession::new(ServerConfig::default(), b"ffprobe play", 0);
    let mut next = 0usize;
    let mut udp_refused = false;
    serve(
        stream,
        &mut session,
        Duration::from_secs(30),
        |s, ev, _| match ev {
            ServerEvent::DescribeRequest { path, .. } => {
                assert_eq!(path, "live/x");
                s.accept_describe(params.clone()).unwrap();
            }
            ServerEvent::UdpPortsRequest { .. } => {
                udp_refused = true;
                s.reject_udp(461).unwrap();
            }
            _ => {}
        },
        |s, now| {
            // Feed the file faster than real time, a batch per turn.
            if s.is_playing() {
                for (track, f) in frames.iter().skip(next).take(30) {
                    s.send_frame(*track, f, now).unwrap();
                    next += 1;
                }
            }
        },
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ffprobe failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(udp_refused);
    assert!(text.lines().any(|l| l.trim() == "h264"), "{text}");
    assert!(text.lines().any(|l| l.trim() == "aac"), "{text}");
}

/// An ANNOUNCE with a track rill cannot record is refused there with 415, and an event names
/// the format for the log (it used to be accepted, and the SETUP of that track got a bare 404).
#[test]
fn announce_with_an_unsupported_format_is_refused_naming_it() {
    let mut s = server(ServerConfig::default());
    let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:stream=0\r\n\
        m=audio 0 RTP/AVP 97\r\na=rtpmap:97 AMR/8000\r\na=control:stream=1\r\n";
    let req = format!(
        "ANNOUNCE rtsp://h/live/amr RTSP/1.0\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let (r, answer) = raw(&mut s, req.as_bytes(), 0);
    assert!(r.is_ok());
    assert!(answer.starts_with("RTSP/1.0 415 "), "{answer}");
    match s.poll_event() {
        Some(ServerEvent::AnnounceRefused { path, reason }) => {
            assert_eq!(path, "live/amr");
            assert!(reason.contains("AMR"), "{reason}");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(s.poll_event(), None, "no AnnounceRequest");
}
