//! Arbitrary bytes as the server's answer to an HTTP client session, cut at arbitrary points:
//! never panics, and the head, the body and the error do not depend on how the bytes were
//! split or whether the connection closes afterwards (only bodies until close need the close).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_core::http::client::{
    ClientError, ClientEvent, ClientLimits, ClientRequest, ClientSession, ResponseHead,
};

type Outcome = (Option<ResponseHead>, Vec<u8>, Result<bool, ClientError>);

fn feed<'a>(
    method: &str,
    limits: &ClientLimits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Outcome {
    let request = ClientRequest {
        method: method.into(),
        host: "h:1".into(),
        path: "/".into(),
        headers: Vec::new(),
        body: bytes::Bytes::new(),
    };
    let mut s = ClientSession::new(&request, limits.clone()).expect("valid request");
    let (mut head, mut body, mut ended) = (None, Vec::new(), false);
    let mut result = Ok(());
    for c in chunks.into_iter().map(Some).chain([None]) {
        result = match c {
            Some(c) => s.handle_input(c),
            None => s.handle_eof(),
        };
        while let Some(e) = s.poll_event() {
            match e {
                ClientEvent::Head(h) => {
                    assert!(head.is_none() && h.headers.len() <= limits.max_headers);
                    head = Some(h);
                }
                ClientEvent::Body(b) => {
                    assert!(head.is_some() && !ended && !b.is_empty());
                    body.extend_from_slice(&b);
                }
                ClientEvent::End => ended = true,
            }
        }
        if result.is_err() {
            break;
        }
    }
    assert_eq!(ended, s.is_done());
    (head, body, result.map(|()| ended))
}

// Input layout: a flags byte (bit 0: small limits, bit 1: HEAD request), a count `n` (mod 16)
// of cut points, `n` big-endian u16 cut points, then the bytes to feed.
fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let n = usize::from(n % 16);
    let Some(cuts) = rest.get(..2 * n) else {
        return;
    };
    let input = &rest[2 * n..];
    let limits = if flags & 1 == 1 {
        ClientLimits {
            max_head_bytes: 64,
            max_headers: 3,
            max_chunk_line: 8,
            max_trailer_bytes: 16,
        }
    } else {
        ClientLimits::default()
    };
    let method = if flags & 2 == 2 { "HEAD" } else { "GET" };
    let mut points: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])) % (input.len() + 1))
        .collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut prev = 0;
    for p in points.into_iter().chain([input.len()]) {
        chunks.push(&input[prev..p]);
        prev = p;
    }
    let whole = feed(method, &limits, [input]);
    assert_eq!(feed(method, &limits, chunks), whole);
    assert_eq!(feed(method, &limits, input.chunks(1)), whole);
});
