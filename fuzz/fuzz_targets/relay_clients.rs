//! Relay pulls (RTMP, HTTP-FLV, RTSP over TCP and UDP with credentials) fed arbitrary bytes and
//! datagrams by the "origin", with connects that succeed or fail, UDP port grants and
//! refusals, closes, reconnections after the backoff and time passing.
//! Invariants after every step: no panic, outputs drain, `poll_transmit` counts what it gives,
//! at most one pull runs.
#![no_main]

use std::net::SocketAddr;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::engine::{ConnId, Engine, EngineConfig, Listener, Output, RelayUrl};

const ORIGINS: [&str; 4] = [
    "rtmp://o:1935",
    "http://o:8080/edge",
    "rtsp://user:p%40ss@o:554",
    "rtsp://o:554?rtsp_mode=1",
];

#[derive(Arbitrary, Debug)]
enum Op {
    /// The runtime answers the last connect.
    Connected { ok: bool },
    /// Bytes from the origin.
    Input { data: Vec<u8> },
    /// A datagram from the origin (or a stranger) on the ports of `track`.
    Udp {
        track: u8,
        rtcp: bool,
        stranger: bool,
        data: Vec<u8>,
    },
    /// The runtime answers the last UDP port request.
    UdpOpen { ok: bool },
    /// The origin closes the connection.
    Close,
    Advance { ms: u16 },
}

#[derive(Arbitrary, Debug)]
struct Run {
    origin: u8,
    ops: Vec<Op>,
}

#[derive(Default)]
struct Runtime {
    /// The relay connection the engine asked for last.
    conn: Option<ConnId>,
    /// The last UDP port request: (conn, track).
    udp: Option<(ConnId, usize)>,
    next_port: u16,
}

impl Runtime {
    fn drain(&mut self, e: &mut Engine) {
        let mut n = 0;
        while let Some(out) = e.poll_output() {
            n += 1;
            assert!(n < 1_000_000, "outputs never drain");
            match out {
                Output::Connect { conn, .. } => self.conn = Some(conn),
                Output::OpenUdp { conn, track } => self.udp = Some((conn, track)),
                Output::Transmit(conn) => {
                    let mut bufs = Vec::new();
                    let sent = e.poll_transmit(conn, 64 * 1024, &mut bufs);
                    assert_eq!(sent, bufs.iter().map(Bytes::len).sum::<usize>());
                }
                Output::Close { conn, .. } if Some(conn) == self.conn => self.conn = None,
                _ => {}
            }
        }
    }
}

fuzz_target!(|run: Run| {
    let origin = ORIGINS[usize::from(run.origin) % ORIGINS.len()];
    let mut config = EngineConfig::default();
    config.relay.pull_origins = vec![RelayUrl::parse(origin).expect("valid origin")];
    config.relay.idle_stop_ms = 5_000;
    config.hub.play_wait_timeout_ms = 30_000;
    let mut e = Engine::new(config, 7);
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    let origin_addr: SocketAddr = "127.0.0.2:554".parse().expect("address");
    let stranger: SocketAddr = "127.0.0.9:554".parse().expect("address");
    let mut rt = Runtime::default();
    let mut now = 0u64;
    // A player asks for a stream that is not live: the engine pulls it.
    e.handle_accept(1, Listener::Http, peer, now);
    e.handle_input(1, b"GET /live/s.flv HTTP/1.1\r\nHost: h\r\n\r\n", now);
    rt.drain(&mut e);
    for op in run.ops {
        match op {
            Op::Connected { ok } => {
                if let Some(conn) = rt.conn {
                    let result = if ok {
                        Ok(origin_addr)
                    } else {
                        Err("refused".to_owned())
                    };
                    e.handle_connected(conn, result, now);
                }
            }
            Op::Input { data } => {
                if let Some(conn) = rt.conn {
                    e.handle_input(conn, &data, now);
                }
            }
            Op::Udp {
                track,
                rtcp,
                stranger: from_stranger,
                data,
            } => {
                if let Some(conn) = rt.conn {
                    let from = if from_stranger { stranger } else { origin_addr };
                    let track = usize::from(track % 4);
                    e.handle_udp(conn, track, rtcp, from, Bytes::from(data), now);
                }
            }
            Op::UdpOpen { ok } => {
                if let Some((conn, track)) = rt.udp.take() {
                    rt.next_port = rt.next_port.wrapping_add(2);
                    let ports = ok.then_some((20_000 + rt.next_port, 20_001 + rt.next_port));
                    e.handle_udp_open(conn, track, ports, now);
                }
            }
            Op::Close => {
                if let Some(conn) = rt.conn.take() {
                    e.handle_close(conn, "origin closed", now);
                }
            }
            Op::Advance { ms } => {
                now += u64::from(ms);
                e.handle_timeout(now);
            }
        }
        rt.drain(&mut e);
        assert!(e.relay_pull_count() <= 1);
    }
});
