//! Arbitrary bytes into `WsReader`, cut at arbitrary points: never panics, frames respect the
//! limits, and the frames and the error do not depend on how the bytes were split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_core::http::{WsError, WsFrame, WsReader};

const MAX_PAYLOAD: usize = 1024;

fn feed<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<WsFrame>, Option<WsError>) {
    let mut r = WsReader::new(MAX_PAYLOAD);
    let mut out = Vec::new();
    for c in chunks {
        r.push(c);
        loop {
            match r.poll_frame() {
                Ok(Some(f)) => {
                    assert!(f.payload.len() <= MAX_PAYLOAD);
                    if f.opcode.is_control() {
                        assert!(f.fin && f.payload.len() <= 125);
                    }
                    out.push(f);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
                    assert_eq!(r.poll_frame().as_ref(), Err(&e), "errors are final");
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

/// Input layout: a flags byte (bit 0: small limits), a count `n` (mod 16) of cut points, `n`
/// big-endian u16 cut points, then the bytes to feed.
fn split_input(data: &[u8]) -> Option<(bool, Vec<usize>, &[u8])> {
    let (&flags, rest) = data.split_first()?;
    let (&n, rest) = rest.split_first()?;
    let n = usize::from(n % 16);
    let cuts = rest.get(..2 * n)?;
    let cuts = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])))
        .collect();
    Some((flags & 1 == 1, cuts, &rest[2 * n..]))
}

fuzz_target!(|data: &[u8]| {
    let Some((_, cuts, input)) = split_input(data) else {
        return;
    };
    let mut points: Vec<usize> = cuts.iter().map(|&c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for p in points.into_iter().chain([input.len()]) {
        chunks.push(&input[prev..p]);
        prev = p;
    }
    let whole = feed([input]);
    assert_eq!(feed(chunks), whole);
    assert_eq!(feed(input.chunks(1)), whole);
});
