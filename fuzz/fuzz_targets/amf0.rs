//! AMF0: decode arbitrary bytes; whatever decodes must survive encode and decode unchanged
//! (numbers compared by bits, so NaN is fine; AMF3 integers come back as AMF0 numbers).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rill_core::amf::{amf0, Value};

/// What AMF0 encoding gives back for a value: integers become numbers.
fn amf0_image(v: &Value) -> Value {
    let props = |p: &[(String, Value)]| p.iter().map(|(k, v)| (k.clone(), amf0_image(v))).collect();
    match v {
        Value::Integer(i) => Value::Number(f64::from(*i)),
        Value::Object(p) => Value::Object(props(p)),
        Value::EcmaArray(p) => Value::EcmaArray(props(p)),
        Value::TypedObject { class, properties } => Value::TypedObject {
            class: class.clone(),
            properties: props(properties),
        },
        Value::StrictArray(items) => Value::StrictArray(items.iter().map(amf0_image).collect()),
        other => other.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(values) = amf0::decode_all(data, 32) else {
        return;
    };
    let mut first = BytesMut::new();
    amf0::encode_all(&values, &mut first);
    let again = match amf0::decode_all(&first, 32) {
        Ok(v) => v,
        Err(e) => panic!("re-encoded values do not decode: {e}"),
    };
    assert_eq!(again.len(), values.len());
    for (a, v) in again.iter().zip(&values) {
        assert!(a.bitwise_eq(&amf0_image(v)), "{a:?} != {v:?}");
    }
    let mut second = BytesMut::new();
    amf0::encode_all(&again, &mut second);
    assert_eq!(first, second);
});
