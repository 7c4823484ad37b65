//! Arbitrary H.264 (RFC 6184) packet streams into a Depacketizer; see
//! [`rill_fuzz::drive_depacketizer`] for the input layout and the checks.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::rtp::CodecParams;

fuzz_target!(|data: &[u8]| {
    rill_fuzz::drive_depacketizer(data, 90000, 1, |from_sdp| CodecParams::H264 {
        sps: if from_sdp {
            vec![Bytes::from_static(&[
                0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8,
            ])]
        } else {
            vec![]
        },
        pps: if from_sdp {
            vec![Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80])]
        } else {
            vec![]
        },
    });
});
