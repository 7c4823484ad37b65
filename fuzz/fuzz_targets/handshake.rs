//! Arbitrary bytes, cut into arbitrary pieces, into the server and the client handshake.
//! Invariants: no panic; `read` never claims more than it was given; output appears only as a
//! whole answer; once done, exactly the handshake length was consumed and nothing more is taken.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_core::rtmp::handshake::{
    ClientHandshake, ServerHandshake, HANDSHAKE_LEN, HANDSHAKE_PACKET_LEN, HANDSHAKE_RANDOM_LEN,
};

/// Cut points come from the first byte of the input; the rest is the byte stream.
fn pieces(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (step, stream) = match data.split_first() {
        Some((&s, rest)) => (usize::from(s) * 13 + 1, rest),
        None => (1, data),
    };
    stream.chunks(step)
}

fuzz_target!(|data: &[u8]| {
    let random = [0x5A; HANDSHAKE_RANDOM_LEN];

    let mut server = ServerHandshake::new(&random, 1);
    let mut used = 0usize;
    let mut sent = 0usize;
    for piece in pieces(data) {
        let Ok(n) = server.read(piece) else { break };
        assert!(n <= piece.len());
        used += n;
        while let Some(out) = server.poll_transmit() {
            assert_eq!(out.len(), HANDSHAKE_LEN, "S0+S1+S2 as one answer");
            sent += out.len();
        }
        assert!(n == piece.len() || server.is_done());
        if server.is_done() {
            assert_eq!(used, HANDSHAKE_LEN);
            assert_eq!(server.read(piece), Ok(0));
        }
    }
    assert!(sent <= HANDSHAKE_LEN);

    let complex = data.first().is_some_and(|b| b & 1 == 1);
    let mut client = ClientHandshake::new(&random, 2, complex);
    let first = client.poll_transmit().map(|b| b.len());
    assert_eq!(first, Some(1 + HANDSHAKE_PACKET_LEN));
    let mut used = 0usize;
    for piece in pieces(data) {
        let Ok(n) = client.read(piece) else { break };
        assert!(n <= piece.len());
        used += n;
        while let Some(out) = client.poll_transmit() {
            assert_eq!(out.len(), HANDSHAKE_PACKET_LEN, "C2");
        }
        if client.is_done() {
            assert_eq!(used, HANDSHAKE_LEN);
            assert!(client.s2_valid().is_some());
        }
    }
});
