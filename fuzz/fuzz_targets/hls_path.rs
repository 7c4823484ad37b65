#![no_main]
//! Arbitrary request paths through the HTTP path check and the HLS router: no panic, and what
//! is recognized never escapes its directory.

use libfuzzer_sys::fuzz_target;
use rill_core::hls::{parse_path, HlsRequest};
use rill_core::http::split_path;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(segments) = split_path(path) else {
        return;
    };
    if let Some(r) = parse_path(&segments) {
        let (app, stream) = match r {
            HlsRequest::Live { app, stream }
            | HlsRequest::Record { app, stream }
            | HlsRequest::Segment { app, stream, .. } => (app, stream),
        };
        for name in [app, stream] {
            assert!(!name.is_empty() && name != "." && name != "..");
            assert!(!name.contains('/') && !name.contains('\\'));
        }
        if let HlsRequest::Segment { seq, .. } = r {
            let last = segments.last().copied().unwrap_or_default();
            let digits = last
                .strip_suffix(".ts")
                .expect("a segment name ends in .ts");
            assert_eq!(digits.parse::<u64>().ok(), Some(seq));
        }
    }
});
