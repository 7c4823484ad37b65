#![no_main]
//! Arbitrary request paths through the HTTP path check and the engine's route table: no panic,
//! and what a route captures is a non-empty part of one path segment, so it never escapes its
//! directory.

use libfuzzer_sys::fuzz_target;
use rill_core::engine::routes::{hls_request, ROUTES};
use rill_core::hls::HlsRequest;
use rill_core::http::router::{route, Routed};
use rill_core::http::split_path;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(segments) = split_path(path) else {
        return;
    };
    let Routed::Found { target, params } = route(ROUTES, "GET", &segments) else {
        return;
    };
    for name in ["app", "stream", "seq"] {
        if let Some(v) = params.get(name) {
            assert!(!v.is_empty() && !v.contains('/') && !v.contains('\\'));
            assert!(segments.iter().any(|s| s.contains(v)));
        }
    }
    if let Some(HlsRequest::Segment { seq, .. }) = hls_request(*target, &params) {
        let last = segments.last().copied().unwrap_or_default();
        let digits = last
            .strip_suffix(".ts")
            .expect("a segment name ends in .ts");
        assert_eq!(digits.parse::<u64>().ok(), Some(seq));
    }
});
