//! Arbitrary H.265 (RFC 7798) packet streams into a Depacketizer; see
//! [`rill_fuzz::drive_depacketizer`] for the input layout and the checks.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::rtp::CodecParams;

fuzz_target!(|data: &[u8]| {
    rill_fuzz::drive_depacketizer(data, 90000, 1, |from_sdp| CodecParams::H265 {
        vps: if from_sdp {
            vec![Bytes::from_static(&[0x40, 0x01, 0x0c, 0x01])]
        } else {
            vec![]
        },
        sps: vec![],
        pps: vec![],
    });
});
