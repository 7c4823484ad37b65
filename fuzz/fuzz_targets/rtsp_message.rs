//! Arbitrary bytes into the RTSP `Reader`, cut at arbitrary points: never panics, the items and
//! the error do not depend on how the bytes were split, written messages read back the same,
//! and Transport / Authorization headers of requests parse without panicking.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rill_core::rtsp::auth::{Authorization, Challenge};
use rill_core::rtsp::transport::Transport;
use rill_core::rtsp::{Item, Message, Reader, RtspError, RtspLimits};

type Outcome = (Vec<Item>, Option<RtspError>);

fn feed<'a>(limits: &RtspLimits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut r = Reader::new(limits.clone());
    let mut out = Vec::new();
    for c in chunks {
        if let Err(e) = r.push(c) {
            return (out, Some(e));
        }
        loop {
            match r.poll_item() {
                Ok(Some(item)) => {
                    if let Item::Message(m) = &item {
                        assert!(m.headers().len() <= limits.max_headers);
                    }
                    out.push(item);
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(r.poll_item().as_ref(), Err(&e), "errors are final");
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

fn agree(a: &Outcome, b: &Outcome) {
    let full = |o: &Outcome| matches!(o.1, Some(RtspError::BufferFull { .. }));
    if full(a) || full(b) {
        let n = a.0.len().min(b.0.len());
        assert_eq!(a.0[..n], b.0[..n]);
    } else {
        assert_eq!(a, b);
    }
}

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
        RtspLimits {
            max_line_bytes: 64,
            max_headers: 3,
            max_body_bytes: 16,
        }
    } else {
        RtspLimits::default()
    };
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
    let whole = feed(&limits, [input]);
    agree(&whole, &feed(&limits, chunks));
    agree(&whole, &feed(&limits, input.chunks(1)));

    for item in &whole.0 {
        let Item::Message(m) = item else { continue };
        if let Some(t) = m.headers().get("Transport") {
            if let Ok(list) = Transport::parse_list(t) {
                for t in list {
                    let _ = Transport::parse(&t.to_string());
                }
            }
        }
        if let Some(a) = m.headers().get("Authorization") {
            if let Ok(a) = Authorization::parse(a) {
                let _ = a.verify("DESCRIBE", "pw");
            }
        }
        if let Some(c) = m.headers().get("WWW-Authenticate") {
            if let Ok(c) = Challenge::parse(c) {
                let _ = Authorization::parse(&c.authorization("u", "p", "PLAY", "*", "c"));
            }
        }
        // Writing and reading back gives the same message (with default limits).
        let mut out = BytesMut::new();
        match m {
            Message::Request(r) => r.write(&mut out),
            Message::Response(r) => r.write(&mut out),
        }
        let (back, err) = feed(&RtspLimits::default(), [&out[..]]);
        if err.is_none() {
            if let (Some(Item::Message(b)), Message::Request(orig)) = (back.first(), m) {
                if let Message::Request(b) = b {
                    assert_eq!(b.method, orig.method);
                    assert_eq!(b.body, orig.body);
                }
            }
        }
    }
});
