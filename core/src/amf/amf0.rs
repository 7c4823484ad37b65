//! AMF0 ("Action Message Format 0", Adobe) encoding and decoding.
//!
//! Decoding follows what real encoders send rather than the letter of the spec where they
//! differ: the count of an ECMA array is only a hint, an ECMA array may lack its object-end at
//! the very end of the input, a property with an empty name is accepted when it is not followed
//! by the object-end marker, invalid UTF-8 is replaced rather than refused, and "unsupported"
//! (0x0D) decodes as [`Value::Undefined`]. Movieclip and recordset are refused.
//!
//! References (0x07) resolve to a copy of the earlier object, typed object, ECMA array or
//! strict array of the same decode call; copies count against the budget described in
//! [`super::AmfError::ReferenceBudget`].

use bytes::{BufMut, BytesMut};

use super::{amf3, fit, AmfError, Ctx, Format, Properties, Reader, RefTable, Value};
use crate::limits::Limits;

/// Type markers.
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const MOVIECLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const RECORDSET: u8 = 0x0E;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

const FORMAT: Format = Format::Amf0;

/// Decodes one AMF0 value at `*pos`, advancing `pos` past it. Containers may nest
/// `max_depth` deep; the element limit is [`Limits::default`]'s `max_amf_elements`.
/// On error `pos` is left unchanged.
pub fn decode_one(buf: &[u8], pos: &mut usize, max_depth: usize) -> Result<Value, AmfError> {
    let ctx = Ctx::new(buf.len(), max_depth, Limits::default().max_amf_elements);
    decode_one_ctx(buf, pos, ctx)
}

/// [`decode_one`] with depth and element limits taken from `limits`.
pub fn decode_one_with_limits(
    buf: &[u8],
    pos: &mut usize,
    limits: &Limits,
) -> Result<Value, AmfError> {
    decode_one_ctx(buf, pos, Ctx::from_limits(buf.len(), limits))
}

/// Decodes AMF0 values until the end of `buf` (an RTMP command or data message body).
/// References may point to complex values in earlier top-level values.
pub fn decode_all(buf: &[u8], max_depth: usize) -> Result<Vec<Value>, AmfError> {
    let ctx = Ctx::new(buf.len(), max_depth, Limits::default().max_amf_elements);
    decode_all_ctx(buf, ctx)
}

/// [`decode_all`] with depth and element limits taken from `limits`.
pub fn decode_all_with_limits(buf: &[u8], limits: &Limits) -> Result<Vec<Value>, AmfError> {
    decode_all_ctx(buf, Ctx::from_limits(buf.len(), limits))
}

fn decode_one_ctx(buf: &[u8], pos: &mut usize, mut ctx: Ctx) -> Result<Value, AmfError> {
    let mut d = Decoder::new(buf, *pos, &mut ctx);
    let value = d.value(0)?;
    *pos = d.r.pos;
    Ok(value)
}

fn decode_all_ctx(buf: &[u8], mut ctx: Ctx) -> Result<Vec<Value>, AmfError> {
    let mut d = Decoder::new(buf, 0, &mut ctx);
    let mut values = Vec::new();
    while d.r.remaining() > 0 {
        values.push(d.value(0)?);
    }
    Ok(values)
}

/// One decode call: the input, the shared limits and the reference table.
struct Decoder<'a, 'c> {
    r: Reader<'a>,
    ctx: &'c mut Ctx,
    refs: RefTable,
    /// Reference expansions in progress in this decoder.
    replaying: usize,
}

impl<'a, 'c> Decoder<'a, 'c> {
    fn new(buf: &'a [u8], pos: usize, ctx: &'c mut Ctx) -> Self {
        Decoder {
            r: Reader::new(buf, pos, FORMAT),
            ctx,
            refs: RefTable::default(),
            replaying: 0,
        }
    }

    /// One value; `depth` containers enclose it.
    fn value(&mut self, depth: usize) -> Result<Value, AmfError> {
        let offset = self.r.pos;
        self.ctx.count_value(FORMAT, offset)?;
        let m = self.r.u8("type marker")?;
        Ok(match m {
            marker::NUMBER => Value::Number(self.r.f64("number")?),
            marker::BOOLEAN => Value::Boolean(self.r.u8("boolean")? != 0),
            marker::STRING => Value::String(self.short_string("string")?),
            marker::LONG_STRING => Value::String(self.long_string("long string")?),
            marker::XML_DOCUMENT => Value::XmlDocument(self.long_string("xml document")?),
            marker::NULL => Value::Null,
            marker::UNDEFINED | marker::UNSUPPORTED => Value::Undefined,
            marker::DATE => Value::Date {
                millis: self.r.f64("date")?,
                timezone: i16::from_be_bytes(self.r.array("date timezone")?),
            },
            marker::OBJECT => {
                let (d, slot) = self.open(depth, offset)?;
                let props = self.properties(d, offset, false)?;
                self.refs.close(slot, self.r.pos);
                Value::Object(props)
            }
            marker::TYPED_OBJECT => {
                let (d, slot) = self.open(depth, offset)?;
                let class = self.short_string("class name")?;
                let properties = self.properties(d, offset, false)?;
                self.refs.close(slot, self.r.pos);
                Value::TypedObject { class, properties }
            }
            marker::ECMA_ARRAY => {
                let (d, slot) = self.open(depth, offset)?;
                // The count is only a hint (encoders get it wrong); the end marker decides.
                self.r.u32("ecma array count")?;
                let props = self.properties(d, offset, true)?;
                self.refs.close(slot, self.r.pos);
                Value::EcmaArray(props)
            }
            marker::STRICT_ARRAY => {
                let (d, slot) = self.open(depth, offset)?;
                let items = self.strict_array(d)?;
                self.refs.close(slot, self.r.pos);
                Value::StrictArray(items)
            }
            marker::REFERENCE => {
                let index = self.r.u16("reference index")?;
                let (start, end) = self.refs.lookup(u32::from(index), FORMAT, offset)?;
                self.ctx
                    .charge(0, end.saturating_sub(start), FORMAT, offset)?;
                self.replay(start, depth)?
            }
            marker::AVMPLUS => {
                let mut pos = self.r.pos;
                let v = amf3::decode_in(self.r.input(), &mut pos, depth, self.ctx)?;
                self.r.pos = pos;
                v
            }
            marker::OBJECT_END => return Err(AmfError::UnexpectedObjectEnd { offset }),
            marker::MOVIECLIP => return Err(self.unsupported("movieclip", offset)),
            marker::RECORDSET => return Err(self.unsupported("recordset", offset)),
            marker => {
                return Err(AmfError::UnknownMarker {
                    format: FORMAT,
                    marker,
                    offset,
                })
            }
        })
    }

    fn unsupported(&self, what: &'static str, offset: usize) -> AmfError {
        AmfError::Unsupported {
            format: FORMAT,
            what,
            offset,
        }
    }

    /// Enters a complex value starting at `offset`: checks depth and registers it in the
    /// reference table. Returns the depth of its children and its table slot.
    fn open(&mut self, depth: usize, offset: usize) -> Result<(usize, Option<usize>), AmfError> {
        let d = self.ctx.enter(depth, FORMAT, offset)?;
        Ok((d, self.refs.open(offset, self.replaying > 0)))
    }

    /// Decodes the value at `start` again, as a copy for a reference.
    fn replay(&mut self, start: usize, depth: usize) -> Result<Value, AmfError> {
        let saved = self.r.pos;
        self.r.pos = start;
        self.replaying += 1;
        self.ctx.begin_replay();
        let v = self.value(depth);
        self.ctx.end_replay();
        self.replaying -= 1;
        self.r.pos = saved;
        v
    }

    /// A string with a 16-bit length.
    fn short_string(&mut self, field: &'static str) -> Result<String, AmfError> {
        let len = self.r.u16(field)?;
        self.r.text(u64::from(len), field)
    }

    /// A string with a 32-bit length.
    fn long_string(&mut self, field: &'static str) -> Result<String, AmfError> {
        let len = self.r.u32(field)?;
        self.r.text(u64::from(len), field)
    }

    /// Name/value pairs up to the empty name and object-end marker. `lenient_end` (ECMA
    /// arrays) accepts the input ending where the end marker should be.
    fn properties(
        &mut self,
        depth: usize,
        offset: usize,
        lenient_end: bool,
    ) -> Result<Properties, AmfError> {
        let mut props = Properties::new();
        loop {
            if lenient_end && self.r.remaining() == 0 {
                break;
            }
            let len = self.r.u16("property name length")?;
            if len == 0 {
                match self.r.peek() {
                    Some(marker::OBJECT_END) => {
                        self.r.u8("object end")?;
                        break;
                    }
                    None if lenient_end => break,
                    // An empty name followed by a value: a property named "".
                    _ => {}
                }
            }
            let key = self.r.text(u64::from(len), "property name")?;
            self.ctx
                .check_count(props.len() as u64 + 1, FORMAT, "property count", offset)?;
            let value = self.value(depth)?;
            props.push((key, value));
        }
        Ok(props)
    }

    /// The count and items of a strict array (marker already read).
    fn strict_array(&mut self, depth: usize) -> Result<Vec<Value>, AmfError> {
        let count_offset = self.r.pos;
        let count = self.r.u32("strict array count")?;
        self.ctx
            .check_count(u64::from(count), FORMAT, "strict array count", count_offset)?;
        // Every item takes at least one byte: never reserve more than the input could hold.
        let count = count as usize;
        if count > self.r.remaining() {
            return Err(self.r.incomplete("strict array items", count as u64));
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.value(depth)?);
        }
        Ok(items)
    }
}

/// Appends the AMF0 encoding of `value` to `out`.
///
/// [`Value::Integer`] is written as a number and [`Value::ByteArray`] through the avmplus
/// switch as AMF3. Lengths AMF0 cannot express are cut: property and class names to 0xFFFF
/// bytes, long strings and XML to 4 GiB, arrays to 2^32 - 1 items.
pub fn encode(value: &Value, out: &mut BytesMut) {
    match value {
        Value::Number(n) => {
            out.put_u8(marker::NUMBER);
            out.put_f64(*n);
        }
        Value::Integer(i) => {
            out.put_u8(marker::NUMBER);
            out.put_f64(f64::from(*i));
        }
        Value::Boolean(b) => {
            out.put_u8(marker::BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Value::String(s) if s.len() <= usize::from(u16::MAX) => {
            out.put_u8(marker::STRING);
            put_short_string(s, out);
        }
        Value::String(s) => {
            out.put_u8(marker::LONG_STRING);
            put_long_string(s, out);
        }
        Value::XmlDocument(s) => {
            out.put_u8(marker::XML_DOCUMENT);
            put_long_string(s, out);
        }
        Value::Object(props) => {
            out.put_u8(marker::OBJECT);
            put_properties(props, out);
        }
        Value::TypedObject { class, properties } => {
            out.put_u8(marker::TYPED_OBJECT);
            put_short_string(class, out);
            put_properties(properties, out);
        }
        Value::EcmaArray(props) => {
            out.put_u8(marker::ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            put_properties(props, out);
        }
        Value::StrictArray(items) => {
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.put_u8(marker::STRICT_ARRAY);
            out.put_u32(count);
            for item in items.iter().take(count as usize) {
                encode(item, out);
            }
        }
        Value::Null => out.put_u8(marker::NULL),
        Value::Undefined => out.put_u8(marker::UNDEFINED),
        Value::Date { millis, timezone } => {
            out.put_u8(marker::DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
        Value::ByteArray(_) => {
            out.put_u8(marker::AVMPLUS);
            amf3::encode(value, out);
        }
    }
}

/// Appends the AMF0 encoding of each value in turn.
pub fn encode_all(values: &[Value], out: &mut BytesMut) {
    for v in values {
        encode(v, out);
    }
}

fn put_short_string(s: &str, out: &mut BytesMut) {
    let s = fit(s, usize::from(u16::MAX));
    // `fit` keeps it within 0xFFFF bytes.
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

fn put_long_string(s: &str, out: &mut BytesMut) {
    let s = fit(s, u32::MAX as usize);
    // `fit` keeps it within u32::MAX bytes.
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

fn put_properties(props: &Properties, out: &mut BytesMut) {
    for (k, v) in props {
        put_short_string(k, out);
        encode(v, out);
    }
    out.put_u16(0);
    out.put_u8(marker::OBJECT_END);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Appends a 16-bit-length UTF-8 string (no marker), as the spec lays out `UTF-8`.
    fn utf8(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(v, &mut out);
        out.to_vec()
    }

    fn dec(buf: &[u8]) -> Result<Value, AmfError> {
        let mut pos = 0;
        let v = decode_one(buf, &mut pos, 32)?;
        assert_eq!(pos, buf.len(), "value did not use the whole input");
        Ok(v)
    }

    fn limits(depth: usize, elements: usize) -> Limits {
        Limits {
            max_amf_depth: depth,
            max_amf_elements: elements,
            ..Limits::default()
        }
    }

    /// An ffmpeg-style `connect` command laid out byte by byte from the spec.
    fn connect_bytes() -> Vec<u8> {
        let mut b = vec![0x02];
        utf8(&mut b, "connect");
        b.extend_from_slice(&[0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]); // number 1.0
        b.push(0x03);
        utf8(&mut b, "app");
        b.push(0x02);
        utf8(&mut b, "live");
        utf8(&mut b, "type");
        b.push(0x02);
        utf8(&mut b, "nonprivate");
        utf8(&mut b, "flashVer");
        b.push(0x02);
        utf8(&mut b, "FMLE/3.0 (compatible; Lavf61.7.100)");
        utf8(&mut b, "tcUrl");
        b.push(0x02);
        utf8(&mut b, "rtmp://localhost:1935/live");
        utf8(&mut b, "fpad");
        b.extend_from_slice(&[0x01, 0x00]); // false
        utf8(&mut b, "audioCodecs");
        b.extend_from_slice(&[0x00, 0x40, 0xAB, 0xEE, 0, 0, 0, 0, 0]); // 3575.0
        b.extend_from_slice(&[0x00, 0x00, 0x09]);
        b
    }

    fn connect_values() -> Vec<Value> {
        vec![
            Value::from("connect"),
            Value::Number(1.0),
            Value::object([
                ("app", Value::from("live")),
                ("type", Value::from("nonprivate")),
                (
                    "flashVer",
                    Value::from("FMLE/3.0 (compatible; Lavf61.7.100)"),
                ),
                ("tcUrl", Value::from("rtmp://localhost:1935/live")),
                ("fpad", Value::Boolean(false)),
                ("audioCodecs", Value::Number(3575.0)),
            ]),
        ]
    }

    #[test]
    fn connect_command_decodes_and_encodes_byte_exact() {
        let bytes = connect_bytes();
        let values = decode_all(&bytes, 32).unwrap();
        assert_eq!(values, connect_values());
        assert_eq!(values[2].get("app").and_then(Value::as_str), Some("live"));
        let mut out = BytesMut::new();
        encode_all(&connect_values(), &mut out);
        assert_eq!(&out[..], &bytes[..]);
    }

    #[test]
    fn decode_one_advances_and_leaves_pos_on_error() {
        let bytes = connect_bytes();
        let mut pos = 0;
        assert_eq!(
            decode_one(&bytes, &mut pos, 32).unwrap(),
            Value::from("connect")
        );
        assert_eq!(pos, 10);
        assert_eq!(
            decode_one(&bytes, &mut pos, 32).unwrap(),
            Value::Number(1.0)
        );
        assert_eq!(pos, 19);
        let mut bad = 1;
        assert!(decode_one(&[0x00, 0x00], &mut bad, 32).is_err());
        assert_eq!(bad, 1);
    }

    #[test]
    fn scalars() {
        assert_eq!(dec(&[0x01, 0x00]).unwrap(), Value::Boolean(false));
        assert_eq!(dec(&[0x01, 0x02]).unwrap(), Value::Boolean(true));
        assert_eq!(dec(&[0x05]).unwrap(), Value::Null);
        assert_eq!(dec(&[0x06]).unwrap(), Value::Undefined);
        assert_eq!(dec(&[0x0D]).unwrap(), Value::Undefined);
        assert_eq!(
            dec(&[0x0C, 0, 0, 0, 2, b'h', b'i']).unwrap(),
            Value::from("hi")
        );
        assert_eq!(
            dec(&[0x0F, 0, 0, 0, 3, b'<', b'a', b'>']).unwrap(),
            Value::XmlDocument("<a>".into())
        );
        // Date 1.0 ms, timezone -60 (0xFFC4).
        assert_eq!(
            dec(&[0x0B, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0xFF, 0xC4]).unwrap(),
            Value::Date {
                millis: 1.0,
                timezone: -60
            }
        );
        // Invalid UTF-8 is replaced, not refused.
        assert_eq!(
            dec(&[0x02, 0, 2, b'a', 0xE9]).unwrap(),
            Value::from("a\u{FFFD}")
        );
    }

    #[test]
    fn typed_object_and_strict_array() {
        let mut b = vec![0x10];
        utf8(&mut b, "Point");
        utf8(&mut b, "x");
        b.extend_from_slice(&[0x00, 0x40, 0, 0, 0, 0, 0, 0, 0]); // 2.0
        b.extend_from_slice(&[0, 0, 0x09]);
        let point = Value::TypedObject {
            class: "Point".into(),
            properties: vec![("x".into(), Value::Number(2.0))],
        };
        assert_eq!(dec(&b).unwrap(), point);
        assert_eq!(enc(&point), b);

        let arr = [0x0A, 0, 0, 0, 2, 0x05, 0x01, 0x01];
        let v = Value::StrictArray(vec![Value::Null, Value::Boolean(true)]);
        assert_eq!(dec(&arr).unwrap(), v);
        assert_eq!(enc(&v), arr);
    }

    #[test]
    fn ecma_array_count_is_only_a_hint() {
        // onMetaData-style ECMA array claiming 0 entries but holding 2.
        let mut b = vec![0x08, 0, 0, 0, 0];
        utf8(&mut b, "width");
        b.extend_from_slice(&[0x00, 0x40, 0x94, 0, 0, 0, 0, 0, 0]); // 1280.0
        utf8(&mut b, "stereo");
        b.extend_from_slice(&[0x01, 0x01]);
        let full = {
            let mut f = b.clone();
            f.extend_from_slice(&[0, 0, 0x09]);
            f
        };
        let want = Value::EcmaArray(vec![
            ("width".into(), Value::Number(1280.0)),
            ("stereo".into(), Value::Boolean(true)),
        ]);
        assert_eq!(dec(&full).unwrap(), want);
        // Missing object-end at the very end of input, with or without the empty name.
        assert_eq!(dec(&b).unwrap(), want);
        let mut half = b.clone();
        half.extend_from_slice(&[0, 0]);
        assert_eq!(dec(&half).unwrap(), want);
        // ... but an object (not an ECMA array) must be terminated.
        let mut obj = b.clone();
        obj[0] = 0x03;
        obj.drain(1..5);
        assert!(matches!(dec(&obj), Err(AmfError::Incomplete { .. })));
        // Encoding writes the true count.
        assert_eq!(&enc(&want)[..5], &[0x08, 0, 0, 0, 2]);
    }

    #[test]
    fn empty_property_name_with_a_value() {
        let b = [0x03, 0, 0, 0x05, 0, 0, 0x09];
        let v = Value::Object(vec![(String::new(), Value::Null)]);
        assert_eq!(dec(&b).unwrap(), v);
        assert_eq!(enc(&v), b);
    }

    #[test]
    fn long_string_chosen_above_u16() {
        let s = "x".repeat(0x1_0000);
        let b = enc(&Value::String(s.clone()));
        assert_eq!(&b[..5], &[0x0C, 0, 1, 0, 0]);
        assert_eq!(dec(&b).unwrap(), Value::String(s));
        let short = enc(&Value::String("x".repeat(0xFFFF)));
        assert_eq!(&short[..3], &[0x02, 0xFF, 0xFF]);
    }

    #[test]
    fn integer_and_byte_array_encoding() {
        assert_eq!(enc(&Value::Integer(5)), enc(&Value::Number(5.0)));
        let ba = Value::ByteArray(bytes::Bytes::from_static(b"ab"));
        let b = enc(&ba);
        assert_eq!(b, [0x11, 0x0C, 0x05, b'a', b'b']);
        assert_eq!(dec(&b).unwrap(), ba);
    }

    #[test]
    fn avmplus_switch_decodes_amf3() {
        // AMF3 integer 300 = U29 0x82 0x2C.
        assert_eq!(dec(&[0x11, 0x04, 0x82, 0x2C]).unwrap(), Value::Integer(300));
        // Inside an object, then back to AMF0.
        let mut b = vec![0x03];
        utf8(&mut b, "a");
        b.extend_from_slice(&[0x11, 0x06, 0x05, b'h', b'i']);
        b.extend_from_slice(&[0, 0, 0x09]);
        assert_eq!(dec(&b).unwrap(), Value::object([("a", Value::from("hi"))]));
        // AMF3 errors are reported as amf3.
        let e = dec(&[0x11, 0x11]).unwrap_err();
        assert!(e.to_string().starts_with("amf3:"), "{e}");
    }

    #[test]
    fn references_resolve_to_copies() {
        // [ {a: null}, ref 1 ] : the outer array is entry 0, the object entry 1.
        let mut b = vec![0x0A, 0, 0, 0, 2, 0x03];
        utf8(&mut b, "a");
        b.extend_from_slice(&[0x05, 0, 0, 0x09, 0x07, 0x00, 0x01]);
        let obj = Value::object([("a", Value::Null)]);
        assert_eq!(dec(&b).unwrap(), Value::StrictArray(vec![obj.clone(), obj]));
        // Across top-level values of one decode_all.
        let mut two = vec![0x03];
        utf8(&mut two, "k");
        two.extend_from_slice(&[0x01, 0x01, 0, 0, 0x09, 0x07, 0, 0]);
        let vals = decode_all(&two, 32).unwrap();
        assert_eq!(vals[0], vals[1]);
    }

    #[test]
    fn reference_errors() {
        assert_eq!(
            dec(&[0x07, 0x00, 0x00]),
            Err(AmfError::BadReference {
                format: Format::Amf0,
                table: "object",
                index: 0,
                table_len: 0,
                offset: 0
            })
        );
        // An object that refers to itself.
        let mut b = vec![0x03];
        utf8(&mut b, "me");
        b.extend_from_slice(&[0x07, 0x00, 0x00, 0, 0, 0x09]);
        assert_eq!(
            dec(&b),
            Err(AmfError::CyclicReference {
                format: Format::Amf0,
                index: 0,
                offset: 5
            })
        );
    }

    /// A top-level strict array whose item i is [ref(i-1), ref(i-1)]: item i expands to 2^i
    /// copies of item 0.
    fn reference_bomb(levels: u32) -> Vec<u8> {
        let mut b = vec![0x0A];
        b.extend_from_slice(&(levels + 1).to_be_bytes());
        b.extend_from_slice(&[0x0A, 0, 0, 0, 1, 0x05]); // item 0 = [null], table entry 1
        for i in 1..=levels {
            let prev = i as u16; // table index of item i-1
            b.extend_from_slice(&[0x0A, 0, 0, 0, 2]);
            for _ in 0..2 {
                b.push(0x07);
                b.extend_from_slice(&prev.to_be_bytes());
            }
        }
        b
    }

    #[test]
    fn reference_bomb_hits_the_budget() {
        // A few levels are fine.
        assert!(dec(&reference_bomb(4)).is_ok());
        let e = dec(&reference_bomb(40)).unwrap_err();
        assert!(matches!(e, AmfError::ReferenceBudget { .. }), "{e}");
        // The element budget alone also stops it.
        let mut pos = 0;
        let e = decode_one_with_limits(&reference_bomb(8), &mut pos, &limits(32, 100)).unwrap_err();
        assert!(matches!(e, AmfError::ReferenceBudget { .. }), "{e}");
        assert!(e.to_string().contains("amf0: references at offset"), "{e}");
    }

    #[test]
    fn refused_and_unknown_markers() {
        assert_eq!(
            dec(&[0x04]),
            Err(AmfError::Unsupported {
                format: Format::Amf0,
                what: "movieclip",
                offset: 0
            })
        );
        assert!(matches!(
            dec(&[0x0E]),
            Err(AmfError::Unsupported {
                what: "recordset",
                ..
            })
        ));
        assert_eq!(
            dec(&[0x12]),
            Err(AmfError::UnknownMarker {
                format: Format::Amf0,
                marker: 0x12,
                offset: 0
            })
        );
        assert_eq!(
            dec(&[0x09]),
            Err(AmfError::UnexpectedObjectEnd { offset: 0 })
        );
        // Object-end where a property value should be.
        assert_eq!(
            dec(&[0x03, 0, 1, b'a', 0x09]),
            Err(AmfError::UnexpectedObjectEnd { offset: 4 })
        );
    }

    #[test]
    fn truncated_input_is_incomplete() {
        assert_eq!(
            dec(&[]),
            Err(AmfError::Incomplete {
                format: Format::Amf0,
                field: "type marker",
                offset: 0,
                needed: 1,
                available: 0
            })
        );
        assert!(matches!(
            dec(&[0x00, 1, 2]),
            Err(AmfError::Incomplete {
                field: "number",
                ..
            })
        ));
        let e = dec(&[0x02, 0x11, 0x70, b'a']).unwrap_err();
        assert_eq!(
            e.to_string(),
            "amf0: string at offset 3 needs 4464 bytes but only 1 are left"
        );
        assert!(matches!(
            dec(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(AmfError::Incomplete {
                field: "long string",
                needed: 0xFFFF_FFFF,
                ..
            })
        ));
        assert!(matches!(
            dec(&[0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(AmfError::Incomplete {
                field: "date timezone",
                ..
            })
        ));
        assert!(matches!(
            dec(&[0x07, 0]),
            Err(AmfError::Incomplete {
                field: "reference index",
                ..
            })
        ));
        assert!(matches!(
            dec(&[0x03, 0]),
            Err(AmfError::Incomplete {
                field: "property name length",
                ..
            })
        ));
        assert!(matches!(
            dec(&[0x08, 0, 0]),
            Err(AmfError::Incomplete {
                field: "ecma array count",
                ..
            })
        ));
        assert!(matches!(
            dec(&[0x10, 0, 5, b'a']),
            Err(AmfError::Incomplete {
                field: "class name",
                ..
            })
        ));
    }

    #[test]
    fn strict_array_count_checked_before_allocating() {
        // Count above the element limit.
        assert_eq!(
            dec(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(AmfError::TooManyElements {
                format: Format::Amf0,
                field: "strict array count",
                count: 0xFFFF_FFFF,
                limit: Limits::default().max_amf_elements,
                offset: 1
            })
        );
        // Count within the limit but beyond what the input holds.
        assert_eq!(
            dec(&[0x0A, 0, 0, 0x10, 0, 0x05]),
            Err(AmfError::Incomplete {
                format: Format::Amf0,
                field: "strict array items",
                offset: 5,
                needed: 4096,
                available: 1
            })
        );
    }

    #[test]
    fn property_count_limited() {
        let mut b = vec![0x03];
        for k in ["a", "b", "c"] {
            utf8(&mut b, k);
            b.push(0x05);
        }
        b.extend_from_slice(&[0, 0, 0x09]);
        let mut pos = 0;
        assert!(decode_one_with_limits(&b, &mut pos, &limits(32, 3)).is_ok());
        let mut pos = 0;
        assert!(matches!(
            decode_one_with_limits(&b, &mut pos, &limits(32, 2)),
            Err(AmfError::TooManyElements {
                field: "property count",
                count: 3,
                limit: 2,
                ..
            })
        ));
        let all = decode_all_with_limits(&b, &limits(32, 3)).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].properties().map(<[_]>::len), Some(3));
    }

    #[test]
    fn depth_limit() {
        let one = [0x0A, 0, 0, 0, 0];
        let mut pos = 0;
        assert!(matches!(
            decode_one(&one, &mut pos, 0),
            Err(AmfError::TooDeep { max_depth: 0, .. })
        ));
        let two = [0x0A, 0, 0, 0, 1, 0x0A, 0, 0, 0, 0];
        assert!(decode_one(&two, &mut 0, 2).is_ok());
        assert_eq!(
            decode_one(&two, &mut 0, 1),
            Err(AmfError::TooDeep {
                format: Format::Amf0,
                offset: 5,
                max_depth: 1
            })
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut b = Vec::with_capacity(100_000 * 4);
        for _ in 0..100_000 {
            b.push(0x03);
            utf8(&mut b, "a");
        }
        let e = decode_all(&b, 32).unwrap_err();
        assert_eq!(
            e,
            AmfError::TooDeep {
                format: Format::Amf0,
                offset: 32 * 4,
                max_depth: 32
            }
        );
        // The same through AMF3 arrays behind the avmplus switch.
        let mut b = vec![0x11];
        b.extend(
            std::iter::repeat([0x09, 0x03, 0x01])
                .take(100_000)
                .flatten(),
        );
        assert!(matches!(
            decode_all(&b, 32),
            Err(AmfError::TooDeep {
                format: Format::Amf3,
                ..
            })
        ));
    }

    #[test]
    fn fuzz_seeds_decode() {
        for seed in [
            &include_bytes!("../../../fuzz/seeds/amf0/connect.bin")[..],
            include_bytes!("../../../fuzz/seeds/amf0/metadata.bin"),
            include_bytes!("../../../fuzz/seeds/amf0/refs.bin"),
            include_bytes!("../../../fuzz/seeds/amf0/avmplus.bin"),
        ] {
            decode_all(seed, 32).unwrap();
        }
        assert_eq!(
            decode_all(include_bytes!("../../../fuzz/seeds/amf0/connect.bin"), 32).unwrap(),
            connect_values()[..2]
                .iter()
                .cloned()
                .chain([Value::object([
                    ("app", Value::from("live")),
                    ("type", Value::from("nonprivate")),
                    (
                        "flashVer",
                        Value::from("FMLE/3.0 (compatible; Lavf61.7.100)")
                    ),
                    ("tcUrl", Value::from("rtmp://localhost:1935/live")),
                ])])
                .collect::<Vec<_>>()
        );
    }

    /// What AMF0 gives back for a value: integers come back as numbers.
    fn amf0_image(v: &Value) -> Value {
        let props = |p: &Properties| p.iter().map(|(k, v)| (k.clone(), amf0_image(v))).collect();
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

    proptest! {
        #[test]
        fn round_trip(values in proptest::collection::vec(crate::amf::tests::arb_value(), 0..4)) {
            let mut out = BytesMut::new();
            encode_all(&values, &mut out);
            let back = decode_all(&out, 32).unwrap();
            prop_assert_eq!(back.len(), values.len());
            for (b, v) in back.iter().zip(&values) {
                prop_assert!(b.bitwise_eq(&amf0_image(v)), "{:?} != {:?}", b, v);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_all(&bytes, 8);
        }
    }
}
