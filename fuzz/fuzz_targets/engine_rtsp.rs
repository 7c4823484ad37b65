//! The engine's RTSP side fed arbitrary events: RTSP connections (requests, interleaved frames),
//! UDP port grants and refusals, datagrams from the peer or a stranger, an RTMP-free publish
//! and play through canned request prefixes, time passing and transmit polls.
//! Invariants after every step: no panic, outputs drain, `poll_transmit` counts what it gives.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::engine::{Engine, EngineConfig, Listener};

const ANNOUNCE_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n\
m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=control:trackID=1\r\n";

#[derive(Arbitrary, Debug)]
enum Canned {
    Announce,
    SetupTcp { track: bool },
    SetupUdp { track: bool },
    Record,
    Describe,
    Play,
    Teardown,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Accept {
        conn: u8,
    },
    Input {
        conn: u8,
        data: Vec<u8>,
    },
    Request {
        conn: u8,
        which: Canned,
    },
    UdpOpen {
        conn: u8,
        track: u8,
        ok: bool,
    },
    Udp {
        conn: u8,
        track: u8,
        rtcp: bool,
        stranger: bool,
        data: Vec<u8>,
    },
    Close {
        conn: u8,
    },
    Advance {
        ms: u16,
    },
    Transmit {
        conn: u8,
        budget: u16,
    },
}

fn canned(which: &Canned) -> String {
    let url = "rtsp://127.0.0.1/live/f";
    match which {
        Canned::Announce => format!(
            "ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{ANNOUNCE_SDP}",
            ANNOUNCE_SDP.len()
        ),
        Canned::SetupTcp { track } => format!(
            "SETUP {url}/trackID={} RTSP/1.0\r\nCSeq: 2\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved={}\r\n\r\n",
            u8::from(*track),
            if *track { "2-3" } else { "0-1" }
        ),
        Canned::SetupUdp { track } => format!(
            "SETUP {url}/trackID={} RTSP/1.0\r\nCSeq: 3\r\n\
             Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n",
            u8::from(*track)
        ),
        Canned::Record => format!("RECORD {url} RTSP/1.0\r\nCSeq: 4\r\n\r\n"),
        Canned::Describe => format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 5\r\n\r\n"),
        Canned::Play => format!("PLAY {url} RTSP/1.0\r\nCSeq: 6\r\n\r\n"),
        Canned::Teardown => format!("TEARDOWN {url} RTSP/1.0\r\nCSeq: 7\r\n\r\n"),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut engine = Engine::new(EngineConfig::default(), 3);
    let mut now = 0u64;
    let peer = "127.0.0.1:1".parse().expect("address");
    let stranger = "10.0.0.1:1".parse().expect("address");
    for op in ops.into_iter().take(256) {
        match op {
            Op::Accept { conn } => {
                engine.handle_accept(u64::from(conn % 4), Listener::Rtsp, peer, now)
            }
            Op::Input { conn, data } => engine.handle_input(u64::from(conn % 4), &data, now),
            Op::Request { conn, which } => {
                engine.handle_input(u64::from(conn % 4), canned(&which).as_bytes(), now)
            }
            Op::UdpOpen { conn, track, ok } => engine.handle_udp_open(
                u64::from(conn % 4),
                usize::from(track % 3),
                ok.then_some((20000, 20001)),
                now,
            ),
            Op::Udp {
                conn,
                track,
                rtcp,
                stranger: s,
                data,
            } => engine.handle_udp(
                u64::from(conn % 4),
                usize::from(track % 3),
                rtcp,
                if s { stranger } else { peer },
                Bytes::from(data),
                now,
            ),
            Op::Close { conn } => engine.handle_close(u64::from(conn % 4), "fuzz", now),
            Op::Advance { ms } => {
                now += u64::from(ms);
                engine.handle_timeout(now);
            }
            Op::Transmit { conn, budget } => {
                let mut out = Vec::new();
                let n = engine.poll_transmit(u64::from(conn % 4), usize::from(budget), &mut out);
                assert_eq!(n, out.iter().map(|b| b.len()).sum::<usize>());
            }
        }
        let mut guard = 0;
        while engine.poll_output().is_some() {
            guard += 1;
            assert!(guard < 1_000_000, "outputs never drain");
        }
        assert!(engine.connection_count() <= 4);
    }
});
