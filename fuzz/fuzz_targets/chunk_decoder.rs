//! RTMP chunk decoder on arbitrary bytes, fed whole and in arbitrary pieces.
//!
//! Checks: no panic; every message respects the limits; the decoder buffers less than one chunk
//! after draining; and split invariance: the pieces yield exactly the messages and the error that
//! the whole input yields.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rill_core::limits::Limits;
use rill_core::rtmp::chunk::{ChunkDecoder, ChunkError, Message};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Piece lengths; the last piece takes whatever is left.
    splits: Vec<u16>,
    data: Vec<u8>,
}

fn limits() -> Limits {
    // Small enough that the limit paths are reachable with fuzzer-sized inputs.
    Limits {
        max_chunk_size: 65_536,
        max_message_len: 65_536,
        max_chunk_streams: 8,
        max_pending_bytes: 100_000,
        ..Limits::default()
    }
}

/// Drain `dec`; `Err` once it fails.
fn drain(dec: &mut ChunkDecoder, out: &mut Vec<Message>) -> Result<(), ChunkError> {
    let limits = limits();
    while let Some(m) = dec.poll_message()? {
        assert!(m.payload.len() <= limits.max_message_len as usize);
        assert!((2..=65_599).contains(&m.csid));
        out.push(m);
    }
    assert!(dec.chunk_size() >= 1 && dec.chunk_size() <= limits.max_chunk_size);
    Ok(())
}

fn run(pieces: &[&[u8]]) -> (Vec<Message>, Option<ChunkError>) {
    let mut dec = ChunkDecoder::new(&limits());
    let mut out = Vec::new();
    for piece in pieces {
        dec.push(piece);
        if let Err(e) = drain(&mut dec, &mut out) {
            // The error is sticky.
            assert_eq!(dec.poll_message(), Err(e.clone()));
            return (out, Some(e));
        }
    }
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    assert_eq!(dec.bytes_received(), total as u64);
    (out, None)
}

fuzz_target!(|input: Input| {
    let data = &input.data[..];
    let whole = run(&[data]);

    let mut pieces = Vec::new();
    let mut rest = data;
    for &n in &input.splits {
        let (piece, r) = rest.split_at(usize::from(n).min(rest.len()));
        pieces.push(piece);
        rest = r;
    }
    pieces.push(rest);
    let split = run(&pieces);
    assert_eq!(whole, split, "split invariance");
});
