//! Arbitrary bytes into `RespDecoder`, cut at an arbitrary point: never panics, values respect
//! the limits, the outcome does not depend on the cut, and every value decoded re-encodes to
//! bytes that decode to it again.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rill_core::resp::{Reply, RespDecoder, RespError, RespLimits};

fn limits() -> RespLimits {
    RespLimits {
        max_bulk: 64,
        max_array: 16,
        max_depth: 4,
        max_line: 64,
        max_value: 1024,
    }
}

fn feed<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Reply>, Option<RespError>) {
    let mut d = RespDecoder::new(limits());
    let mut out = Vec::new();
    for c in chunks {
        d.push(c);
        loop {
            match d.poll_reply() {
                Ok(Some(r)) => out.push(r),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fn check(r: &Reply, depth: usize) {
    let l = limits();
    assert!(depth <= l.max_depth);
    match r {
        Reply::Bulk(Some(b)) => assert!(b.len() <= l.max_bulk),
        Reply::Array(Some(items)) => {
            assert!(items.len() <= l.max_array);
            items.iter().for_each(|i| check(i, depth + 1));
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(input.len());
    let whole = feed([input]);
    let split = feed([&input[..cut], &input[cut..]]);
    assert_eq!(whole.0, split.0);
    assert_eq!(whole.1.is_some(), split.1.is_some());
    for r in &whole.0 {
        check(r, 0);
        let mut wire = BytesMut::new();
        r.encode(&mut wire);
        let again = feed([&wire[..]]);
        assert_eq!(again.0.as_slice(), std::slice::from_ref(r));
    }
});
