//! AMF3: decode arbitrary bytes; whatever decodes must survive encode and decode unchanged
//! (numbers compared by bits, so NaN is fine).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rill_core::amf::amf3;

fuzz_target!(|data: &[u8]| {
    let mut pos = 0;
    let Ok(value) = amf3::decode_one(data, &mut pos, 32) else {
        return;
    };
    assert!(pos <= data.len());
    let mut first = BytesMut::new();
    amf3::encode(&value, &mut first);
    let mut pos2 = 0;
    let again = match amf3::decode_one(&first, &mut pos2, 32) {
        Ok(v) => v,
        Err(e) => panic!("re-encoded value does not decode: {e}"),
    };
    assert_eq!(pos2, first.len());
    assert!(again.bitwise_eq(&value), "{again:?} != {value:?}");
});
