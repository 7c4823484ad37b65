//! The TLS-wrapped engine path, as the runtimes drive it: runtime-common's server transform in
//! front of the engine (accepted on a TLS listener). Either the fuzzer's bytes go on the wire
//! raw (broken records, garbage after a hello, anything), or a real rill TLS client does the
//! handshake first and the fuzzer's bytes are its plaintext, so they reach the protocol
//! sessions through decryption. Invariants after every step: no panic; an error from the
//! transform closes the connection (nothing more is fed to it); plaintext reaches the engine
//! unchanged and in order; the engine's answers cross back through encryption.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rill_core::engine::{Engine, EngineConfig, Listener, Output};
use rill_core::scheme::TlsClient;
use rill_runtime_common::conn_io::ConnIo;
use rill_runtime_common::tls::{accepted_io, client_io, write_self_signed, TlsConfig};

#[derive(Arbitrary, Debug)]
struct Case {
    /// 0: RTMPS, 1: HTTPS, 2: RTSPS.
    listener: u8,
    /// Handshake with a real client first; the pieces are then its plaintext.
    handshake: bool,
    pieces: Vec<Vec<u8>>,
}

fn server_config() -> &'static TlsConfig {
    static CONFIG: OnceLock<TlsConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rill-fuzz-tls-{}", std::process::id()));
        let (cert, key) = write_self_signed(&dir, &[]).expect("dev certificate");
        TlsConfig::load(&cert, &key).expect("load it")
    })
}

/// Everything `from` has to send, fed to `to`; the plaintext `to` yields goes to `plain`.
fn cross(from: &mut ConnIo, to: &mut ConnIo, plain: &mut dyn FnMut(&[u8])) -> bool {
    let mut batch = Vec::new();
    if from.outbound(&mut batch, 0).is_err() {
        return false;
    }
    batch.iter().all(|b| to.inbound(b, plain).is_ok())
}

fuzz_target!(|case: Case| {
    let (listener, http) = match case.listener % 3 {
        0 => (Listener::Rtmp, false),
        1 => (Listener::Http, true),
        _ => (Listener::Rtsp, false),
    };
    let mut server = accepted_io(Some(server_config()), http).expect("server transform");
    let mut engine = Engine::new(EngineConfig::default(), 1);
    let peer = "127.0.0.1:1".parse().expect("address");
    let conn = 7;
    engine.handle_accept_tls(conn, listener, peer, 0);
    let mut now = 0;
    let mut seen = Vec::new();
    let mut sent = Vec::new();
    let mut client = None;
    if case.handshake {
        let target = TlsClient {
            server_name: "localhost".into(),
            verify: false,
        };
        let mut c = client_io(Some(&target)).expect("client transform");
        for _ in 0..4 {
            let ok = cross(&mut c, &mut server, &mut |p| seen.extend_from_slice(p))
                && cross(&mut server, &mut c, &mut |_| {});
            assert!(ok, "the handshake between rill's own transforms failed");
        }
        client = Some(c);
    }
    for piece in case.pieces.iter().take(64) {
        now += 10;
        let fed = match client.as_mut() {
            Some(c) => {
                sent.extend_from_slice(piece);
                let mut batch = vec![bytes::Bytes::copy_from_slice(piece)];
                let len = piece.len();
                c.outbound(&mut batch, len).is_ok()
                    && batch.iter().all(|b| {
                        server
                            .inbound(b, &mut |p| {
                                seen.extend_from_slice(p);
                                engine.handle_input(conn, p, now);
                            })
                            .is_ok()
                    })
            }
            None => server
                .inbound(piece, &mut |p| {
                    seen.extend_from_slice(p);
                    engine.handle_input(conn, p, now);
                })
                .is_ok(),
        };
        if !fed {
            // The runtime closes the connection here.
            assert!(client.is_none(), "rill's own client's records were refused");
            engine.handle_close(conn, "tls error", now);
            break;
        }
        engine.handle_timeout(now);
        let mut closed = false;
        while let Some(out) = engine.poll_output() {
            if matches!(out, Output::Close { .. }) {
                closed = true;
            }
        }
        let mut batch = Vec::new();
        let plain = engine.poll_transmit(conn, 1 << 16, &mut batch);
        if server.outbound(&mut batch, plain).is_err() {
            break;
        }
        if let Some(c) = client.as_mut() {
            for b in &batch {
                assert!(
                    c.inbound(b, &mut |_| {}).is_ok(),
                    "the server's records are valid"
                );
            }
        }
        if closed {
            break;
        }
    }
    if client.is_some() {
        assert!(
            sent.starts_with(&seen),
            "plaintext reached the engine changed"
        );
    }
});
