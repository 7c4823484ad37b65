//! Arbitrary AAC (RFC 3640) packet streams into a Depacketizer, in the AAC-hbr layout and in an
//! AAC-lbr style one; see [`rill_fuzz::drive_depacketizer`] for the input layout and the checks.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::rtp::CodecParams;

fuzz_target!(|data: &[u8]| {
    rill_fuzz::drive_depacketizer(data, 44100, 2, |hbr| {
        let config = Bytes::from_static(&[0x12, 0x10]);
        if hbr {
            CodecParams::aac_hbr(config)
        } else {
            CodecParams::Aac {
                config,
                size_length: 6,
                index_length: 2,
                index_delta_length: 2,
            }
        }
    });
});
