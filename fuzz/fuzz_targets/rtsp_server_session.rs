//! The RTSP server session fed arbitrary bytes, optionally after a valid ANNOUNCE/SETUP/RECORD
//! (TCP or UDP) or DESCRIBE/SETUP/PLAY prefix, in arbitrary pieces, with the application's
//! answers taken from the input. Must never panic; an error is final; output stays bounded.
//!
//! Layout: byte 0 = prefix (0 none, 1 record over TCP, 2 play over TCP, 3 record over UDP),
//! byte 1 = answer bits (accept when set), byte 2 = piece size, the rest = bytes from the
//! client (for prefix 3: datagrams, the first byte of each choosing track and RTP/RTCP).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::media::{Codec, Frame, FrameKind};
use rill_core::rtp::{CodecParams, TrackParams};
use rill_core::rtsp::server::{ServerConfig, ServerEvent, ServerSession};

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1210\r\n\
a=control:streamid=1\r\n";

fn prefix(mode: u8) -> Vec<u8> {
    let url = "rtsp://127.0.0.1/live/x";
    let mut s = String::new();
    match mode {
        1 | 3 => {
            s.push_str(&format!(
                "ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
                SDP.len()
            ));
            for t in 0..2 {
                let transport = if mode == 1 {
                    format!(
                        "RTP/AVP/TCP;unicast;interleaved={}-{};mode=record",
                        2 * t,
                        2 * t + 1
                    )
                } else {
                    format!(
                        "RTP/AVP/UDP;unicast;client_port={}-{};mode=record",
                        5000 + 2 * t,
                        5001 + 2 * t
                    )
                };
                s.push_str(&format!(
                    "SETUP {url}/streamid={t} RTSP/1.0\r\nCSeq: {}\r\nTransport: {transport}\r\n\r\n",
                    2 + t
                ));
            }
            s.push_str(&format!(
                "RECORD {url} RTSP/1.0\r\nCSeq: 4\r\nRange: npt=0.000-\r\n\r\n"
            ));
        }
        2 => {
            s.push_str(&format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"));
            s.push_str(&format!(
                "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
            ));
            s.push_str(&format!("PLAY {url} RTSP/1.0\r\nCSeq: 3\r\n\r\n"));
        }
        _ => {}
    }
    s.into_bytes()
}

/// A refusal's status, 404 to 467.
fn status(answers: u8) -> u16 {
    404 + u16::from(answers & 63)
}

fn answer(server: &mut ServerSession, answers: &mut u8) -> bool {
    while let Some(ev) = server.poll_event() {
        let yes = *answers & 1 == 1;
        *answers = answers.rotate_right(1);
        let r = match ev {
            ServerEvent::AnnounceRequest { .. } if yes => server.accept_announce(),
            ServerEvent::DescribeRequest { .. } if yes => {
                server.accept_describe(vec![TrackParams {
                    payload_type: 96,
                    clock_rate: 90000,
                    channels: 1,
                    codec: CodecParams::H264 {
                        sps: vec![],
                        pps: vec![],
                    },
                }])
            }
            ServerEvent::UdpPortsRequest { track, .. } if yes => {
                let p = 6000 + 2 * track as u16;
                server.accept_udp((p, p + 1))
            }
            ServerEvent::AnnounceRequest { .. } => server.reject_announce(status(*answers)),
            ServerEvent::DescribeRequest { .. } => server.reject_describe(status(*answers)),
            ServerEvent::UdpPortsRequest { .. } => server.reject_udp(status(*answers)),
            _ => Ok(()),
        };
        if r.is_err() {
            return false;
        }
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let (Some(&mode), Some(&bits), Some(&split)) = (data.first(), data.get(1), data.get(2)) else {
        return;
    };
    let rest = &data[3..];
    let mode = mode % 4;
    let mut answers = bits | if mode == 0 { 0 } else { 0x0F };
    let mut server = ServerSession::new(ServerConfig::default(), b"fuzz", 0);
    let mut now = 0u64;
    let mut out = 0usize;
    let mut pieces = vec![prefix(mode)];
    let size = usize::from(split).max(1);
    pieces.extend(rest.chunks(size).map(<[u8]>::to_vec));
    let frame = Frame {
        codec: Codec::H264,
        kind: FrameKind::Coded,
        dts: 0,
        pts: 0,
        key: true,
        payload: Bytes::from_static(&[0, 0, 0, 3, 0x65, 1, 2]),
    };
    for (i, piece) in pieces.into_iter().enumerate() {
        now += 7;
        let r = if mode == 3 && i > 0 {
            let sel = piece.first().copied().unwrap_or(0);
            let body = Bytes::from(piece.get(1..).unwrap_or_default().to_vec());
            server.handle_udp(usize::from(sel % 3), sel & 4 != 0, body, now);
            Ok(())
        } else {
            server.handle_input(&piece, now)
        };
        if r.is_err() {
            assert!(server
                .handle_input(b"OPTIONS * RTSP/1.0\r\n\r\n", now)
                .is_err());
            assert!(server.poll_timeout().is_none());
            return;
        }
        if !answer(&mut server, &mut answers) {
            return;
        }
        let mut f = frame.clone();
        f.pts = now as i64;
        f.dts = now as i64;
        let _ = server.send_frame(0, &f, now);
        if let Some(t) = server.poll_timeout() {
            if t <= now + 10_000 && server.handle_timeout(t).is_err() {
                return;
            }
        }
        while let Some(t) = server.poll_transmit() {
            out += match t {
                rill_core::rtsp::server::Transmit::Tcp(b) => b.len(),
                rill_core::rtsp::server::Transmit::Udp { bytes, .. } => bytes.len(),
            };
        }
        assert!(out <= (1 << 20) + data.len() * 64);
        while server.poll_event().is_some() {}
    }
});
