//! The whole server engine fed arbitrary connection events: accepts on either listener, bytes
//! (raw or after a real RTMP handshake prefix), closes, time passing and transmit polls.
//! Invariants after every step: no panic, outputs drain, connection count bounded by accepts.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rill_core::engine::{Engine, EngineConfig, Listener, Output};

#[derive(Arbitrary, Debug)]
enum Op {
    Accept {
        conn: u8,
        http: bool,
    },
    Input {
        conn: u8,
        data: Vec<u8>,
    },
    /// A valid client handshake (C0+C1+C2), so later bytes reach the chunk layer.
    Handshake {
        conn: u8,
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

fuzz_target!(|ops: Vec<Op>| {
    let config = EngineConfig {
        share_streams: true,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, 1);
    let mut other = Engine::new(EngineConfig::default(), 2);
    let mut now = 0u64;
    let mut accepted = 0usize;
    let peer = "127.0.0.1:1".parse().expect("address");
    for op in ops.into_iter().take(256) {
        match op {
            Op::Accept { conn, http } => {
                let listener = if http { Listener::Http } else { Listener::Rtmp };
                engine.handle_accept(u64::from(conn % 8), listener, peer, now);
                accepted += 1;
            }
            Op::Input { conn, data } => engine.handle_input(u64::from(conn % 8), &data, now),
            Op::Handshake { conn } => {
                let mut hs = vec![3u8];
                hs.resize(1 + 1536 * 2, 0);
                engine.handle_input(u64::from(conn % 8), &hs, now);
            }
            Op::Close { conn } => engine.handle_close(u64::from(conn % 8), "fuzz", now),
            Op::Advance { ms } => {
                now += u64::from(ms);
                engine.handle_timeout(now);
            }
            Op::Transmit { conn, budget } => {
                let mut out = Vec::new();
                let n = engine.poll_transmit(u64::from(conn % 8), usize::from(budget), &mut out);
                assert_eq!(n, out.iter().map(|b| b.len()).sum::<usize>());
            }
        }
        let mut guard = 0;
        while let Some(output) = engine.poll_output() {
            guard += 1;
            assert!(guard < 100_000, "outputs never drain");
            if let Output::Broadcast(msg) = output {
                other.handle_remote(msg, now);
            }
        }
        while other.poll_output().is_some() {}
        assert!(engine.connection_count() <= accepted.min(8));
    }
});
