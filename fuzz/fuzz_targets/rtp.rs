//! Arbitrary bytes into the RTP packet parser: never panics, and a parsed packet writes back to
//! bytes that parse to the same packet.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::rtp::RtpPacket;

fuzz_target!(|data: &[u8]| {
    let b = Bytes::copy_from_slice(data);
    if let Ok(p) = RtpPacket::parse(&b) {
        assert!(p.payload.len() <= data.len());
        let again = RtpPacket::parse(&p.to_bytes()).expect("written packet parses");
        assert_eq!(again, p);
    }
});
