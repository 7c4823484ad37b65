//! Arbitrary bytes into `RequestReader`, cut at arbitrary points: never panics, and the requests
//! and the error do not depend on how the bytes were split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_core::http::{HttpError, HttpLimits, Request, RequestReader};

type Outcome = (Vec<Request>, Option<HttpError>);

fn feed<'a>(limits: &HttpLimits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut r = RequestReader::new(limits.clone());
    let mut out = Vec::new();
    for c in chunks {
        if let Err(e) = r.push(c) {
            return (out, Some(e));
        }
        loop {
            match r.poll_request() {
                Ok(Some(req)) => {
                    assert!(req.body.len() <= limits.max_body_bytes);
                    assert!(req.headers.len() <= limits.max_headers);
                    assert!(!req.path.contains('\0'));
                    out.push(req);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(e.status(), 400 | 411 | 413 | 431));
                    assert_eq!(r.poll_request().as_ref(), Err(&e), "errors are final");
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

/// Equal, except that a run stopped by `BufferFull` (which depends on push sizes, not on
/// content) only has to agree up to where it stopped.
fn agree(a: &Outcome, b: &Outcome) {
    let full = |o: &Outcome| matches!(o.1, Some(HttpError::BufferFull { .. }));
    if full(a) || full(b) {
        let n = a.0.len().min(b.0.len());
        assert_eq!(a.0[..n], b.0[..n]);
    } else {
        assert_eq!(a, b);
    }
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
    let Some((small, cuts, input)) = split_input(data) else {
        return;
    };
    let limits = if small {
        HttpLimits {
            max_head_bytes: 64,
            max_headers: 3,
            max_body_bytes: 16,
        }
    } else {
        HttpLimits::default()
    };

    let mut points: Vec<usize> = cuts.iter().map(|&c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for p in points.into_iter().chain([input.len()]) {
        chunks.push(&input[prev..p]);
        prev = p;
    }

    let whole = feed(&limits, [input]);
    let split = feed(&limits, chunks);
    let bytewise = feed(&limits, input.chunks(1));
    agree(&whole, &split);
    agree(&whole, &bytewise);
    agree(&split, &bytewise);
});
