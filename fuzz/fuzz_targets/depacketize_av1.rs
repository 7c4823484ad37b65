//! Arbitrary AV1 (AOM RTP payload format) packet streams into a Depacketizer; see
//! [`rill_fuzz::drive_depacketizer`] for the input layout and the checks.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::rtp::CodecParams;

fuzz_target!(|data: &[u8]| {
    rill_fuzz::drive_depacketizer(data, 90000, 1, |_| CodecParams::Av1 {
        config: Bytes::new(),
    });
});
