#![no_main]
//! Arbitrary bytes into the fMP4 demuxer: no panic, every sample a slice of the input, and
//! demuxing is deterministic.

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::fmp4::demux::demux;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let first = demux(&input);
    if let Ok(d) = &first {
        let total: usize = d.samples.iter().map(|s| s.data.len()).sum();
        assert!(d.samples.iter().all(|s| s.data.len() <= data.len()));
        // Samples never overlap the same bytes twice within one run: bounded by the input.
        assert!(total <= data.len().saturating_mul(d.samples.len().max(1)));
        assert!(d.tracks.iter().all(|t| t.timescale > 0));
    }
    assert_eq!(first, demux(&input));
});
