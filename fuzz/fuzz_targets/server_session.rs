//! The RTMP server session fed arbitrary bytes after a real handshake, in arbitrary pieces, with
//! the application accepting every request. Must never panic; outputs stay bounded.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rill_core::rtmp::server::{ServerConfig, ServerEvent, ServerSession};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Do the handshake first (otherwise the bytes hit the handshake parser).
    handshake: bool,
    /// Sizes of the pieces the bytes are fed in (cycled).
    splits: Vec<u16>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let random = vec![7u8; 1528];
    let mut server = ServerSession::new(ServerConfig::default(), &random, 0);
    if input.handshake {
        let mut hs = vec![3u8];
        hs.extend(std::iter::repeat(0u8).take(1536 * 2));
        if server.handle_input(&hs, 0).is_err() {
            return;
        }
    }
    let mut rest = &input.data[..];
    let mut i = 0usize;
    let mut out_bytes = 0usize;
    while !rest.is_empty() {
        let size = input
            .splits
            .get(i % input.splits.len().max(1))
            .copied()
            .unwrap_or(u16::MAX) as usize;
        let size = size.clamp(1, rest.len());
        let (piece, tail) = rest.split_at(size);
        rest = tail;
        i += 1;
        if server.handle_input(piece, i as u64).is_err() {
            return;
        }
        while let Some(event) = server.poll_event() {
            // The answers' one error, "not pending", means the input withdrew the request
            // (deleteStream in the same piece): the session goes on unchanged.
            let _ = match event {
                ServerEvent::ConnectRequest { .. } => server.accept_connect(),
                ServerEvent::PublishRequest { stream_id, .. } => server.accept_publish(stream_id),
                ServerEvent::PlayRequest { stream_id, .. } => server.accept_play(stream_id),
                _ => Ok(()),
            };
        }
        while let Some(b) = server.poll_transmit() {
            out_bytes += b.len();
        }
        // Replies are proportional to requests, never unbounded.
        assert!(out_bytes <= 64 * 1024 + input.data.len() * 64);
    }
});
