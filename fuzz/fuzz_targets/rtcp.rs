//! Arbitrary bytes into the compound RTCP parser: never panics, and sender and receiver reports
//! that parse write back to packets that parse to the same report.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rill_core::rtp::rtcp::{parse_compound, RtcpPacket};

fuzz_target!(|data: &[u8]| {
    let b = Bytes::copy_from_slice(data);
    let Ok(packets) = parse_compound(&b) else {
        return;
    };
    for p in packets {
        let mut out = BytesMut::new();
        match &p {
            RtcpPacket::SenderReport(sr) => sr.write_compound(b"c", &mut out),
            RtcpPacket::ReceiverReport(rr) => rr.write_compound(b"c", &mut out),
            _ => continue,
        }
        let back = parse_compound(&out.freeze()).expect("written report parses");
        assert_eq!(back[0], p);
    }
});
