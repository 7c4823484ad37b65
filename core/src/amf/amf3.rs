//! AMF3 ("AMF 3 Specification", Adobe) encoding and decoding.
//!
//! Decoded: undefined, null, false, true, integer, double, string, XMLDocument, date, array,
//! object (inline traits, trait references, dynamic members), XML and ByteArray, with the
//! string, object and traits reference tables. Arrays without an associative part become
//! [`Value::StrictArray`]; with one, a [`Value::EcmaArray`] holding the dense items (keyed
//! `"0"`, `"1"`...) followed by the associative ones. Objects with an empty class name become
//! [`Value::Object`]. Externalizable objects, vectors and dictionaries are refused.
//!
//! The encoder writes every value inline (no references), which is valid AMF3.

use bytes::{BufMut, BytesMut};

use super::{fit, AmfError, Ctx, Format, Properties, Reader, RefTable, Value};
use crate::limits::Limits;

/// Type markers.
mod marker {
    pub const UNDEFINED: u8 = 0x00;
    pub const NULL: u8 = 0x01;
    pub const FALSE: u8 = 0x02;
    pub const TRUE: u8 = 0x03;
    pub const INTEGER: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const STRING: u8 = 0x06;
    pub const XML_DOC: u8 = 0x07;
    pub const DATE: u8 = 0x08;
    pub const ARRAY: u8 = 0x09;
    pub const OBJECT: u8 = 0x0A;
    pub const XML: u8 = 0x0B;
    pub const BYTE_ARRAY: u8 = 0x0C;
    pub const VECTOR_INT: u8 = 0x0D;
    pub const VECTOR_OBJECT: u8 = 0x10;
    pub const DICTIONARY: u8 = 0x11;
}

const FORMAT: Format = Format::Amf3;

/// Largest value a U29 holds.
const U29_MAX: u32 = (1 << 29) - 1;
/// Longest string, XML or ByteArray (its length shares a U29 with the inline flag).
const MAX_LEN: usize = (1 << 28) - 1;
/// Most sealed members a trait can declare (the count shares a U29 with four flags).
const MAX_SEALED: usize = (1 << 25) - 1;
/// Range of [`Value::Integer`] written as an AMF3 integer rather than a double.
const INT_RANGE: std::ops::Range<i32> = -(1 << 28)..(1 << 28);

/// Decodes one AMF3 value at `*pos`, advancing `pos` past it. Containers may nest
/// `max_depth` deep; the element limit is [`Limits::default`]'s `max_amf_elements`.
/// On error `pos` is left unchanged.
pub fn decode_one(buf: &[u8], pos: &mut usize, max_depth: usize) -> Result<Value, AmfError> {
    let mut ctx = Ctx::new(buf.len(), max_depth, Limits::default().max_amf_elements);
    decode_in(buf, pos, 0, &mut ctx)
}

/// [`decode_one`] with depth and element limits taken from `limits`.
pub fn decode_one_with_limits(
    buf: &[u8],
    pos: &mut usize,
    limits: &Limits,
) -> Result<Value, AmfError> {
    let mut ctx = Ctx::from_limits(buf.len(), limits);
    decode_in(buf, pos, 0, &mut ctx)
}

/// Decodes one AMF3 value with fresh reference tables (each AMF0 avmplus switch starts one),
/// `depth` containers already enclosing it, sharing `ctx` with the caller.
pub(crate) fn decode_in(
    buf: &[u8],
    pos: &mut usize,
    depth: usize,
    ctx: &mut Ctx,
) -> Result<Value, AmfError> {
    let mut d = Decoder {
        r: Reader::new(buf, *pos, FORMAT),
        ctx,
        strings: Vec::new(),
        objects: RefTable::default(),
        traits: Vec::new(),
        replaying: 0,
    };
    let v = d.value(depth)?;
    *pos = d.r.pos;
    Ok(v)
}

/// Class name and member names shared by objects through trait references.
#[derive(Clone)]
struct Traits {
    class: String,
    sealed: Vec<String>,
    dynamic: bool,
}

impl Traits {
    /// Bytes copied when a trait reference reuses these names.
    fn copy_bytes(&self) -> usize {
        self.sealed
            .iter()
            .fold(self.class.len(), |n, s| n.saturating_add(s.len()))
    }
}

struct Decoder<'a, 'c> {
    r: Reader<'a>,
    ctx: &'c mut Ctx,
    /// Byte ranges of the non-empty inline strings, in order.
    strings: Vec<(usize, usize)>,
    objects: RefTable,
    traits: Vec<Traits>,
    /// Reference expansions in progress in this decoder (tables are not added to meanwhile).
    replaying: usize,
}

impl Decoder<'_, '_> {
    /// One value; `depth` containers enclose it.
    fn value(&mut self, depth: usize) -> Result<Value, AmfError> {
        let offset = self.r.pos;
        self.ctx.count_value(FORMAT, offset)?;
        let m = self.r.u8("type marker")?;
        Ok(match m {
            marker::UNDEFINED => Value::Undefined,
            marker::NULL => Value::Null,
            marker::FALSE => Value::Boolean(false),
            marker::TRUE => Value::Boolean(true),
            marker::INTEGER => Value::Integer(sign_extend(self.u29("integer")?)),
            marker::DOUBLE => Value::Number(self.r.f64("double")?),
            marker::STRING => Value::String(self.string("string")?),
            marker::XML_DOC | marker::XML => {
                let h = self.u29("xml header")?;
                if h & 1 == 0 {
                    return self.object_ref(h, offset, depth);
                }
                let slot = self.objects.open(offset, self.replaying > 0);
                let text = self.r.text(u64::from(h >> 1), "xml")?;
                self.objects.close(slot, self.r.pos);
                Value::XmlDocument(text)
            }
            marker::DATE => {
                let h = self.u29("date header")?;
                if h & 1 == 0 {
                    return self.object_ref(h, offset, depth);
                }
                let slot = self.objects.open(offset, self.replaying > 0);
                let millis = self.r.f64("date")?;
                self.objects.close(slot, self.r.pos);
                Value::Date {
                    millis,
                    timezone: 0,
                }
            }
            marker::BYTE_ARRAY => {
                let h = self.u29("byte array header")?;
                if h & 1 == 0 {
                    return self.object_ref(h, offset, depth);
                }
                let slot = self.objects.open(offset, self.replaying > 0);
                let data = self.r.take(u64::from(h >> 1), "byte array")?;
                self.objects.close(slot, self.r.pos);
                Value::ByteArray(bytes::Bytes::copy_from_slice(data))
            }
            marker::ARRAY => {
                let h = self.u29("array header")?;
                if h & 1 == 0 {
                    return self.object_ref(h, offset, depth);
                }
                self.array(h >> 1, depth, offset)?
            }
            marker::OBJECT => {
                let h = self.u29("object header")?;
                if h & 1 == 0 {
                    return self.object_ref(h, offset, depth);
                }
                self.object(h, depth, offset)?
            }
            marker::VECTOR_INT..=marker::VECTOR_OBJECT => {
                return Err(self.unsupported("vector", offset))
            }
            marker::DICTIONARY => return Err(self.unsupported("dictionary", offset)),
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

    /// A variable-length unsigned 29-bit integer: up to three bytes of 7 bits with a
    /// continuation flag, then a fourth byte of 8 bits.
    fn u29(&mut self, field: &'static str) -> Result<u32, AmfError> {
        let mut v: u32 = 0;
        for _ in 0..3 {
            let b = self.r.u8(field)?;
            if b & 0x80 == 0 {
                return Ok((v << 7) | u32::from(b));
            }
            v = (v << 7) | u32::from(b & 0x7F);
        }
        Ok((v << 8) | u32::from(self.r.u8(field)?))
    }

    /// A string, inline or from the string table. Empty strings are never in the table.
    fn string(&mut self, field: &'static str) -> Result<String, AmfError> {
        let offset = self.r.pos;
        let h = self.u29(field)?;
        if h & 1 == 0 {
            let index = h >> 1;
            let bad = || AmfError::BadReference {
                format: FORMAT,
                table: "string",
                index,
                table_len: self.strings.len(),
                offset,
            };
            let &(start, end) = self.strings.get(index as usize).ok_or_else(bad)?;
            let bytes = self.r.slice(start, end).ok_or_else(bad)?;
            self.ctx.charge(1, bytes.len(), FORMAT, offset)?;
            return Ok(String::from_utf8_lossy(bytes).into_owned());
        }
        let start = self.r.pos;
        let s = self.r.text(u64::from(h >> 1), field)?;
        if !s.is_empty() && self.replaying == 0 {
            self.strings.push((start, self.r.pos));
        }
        Ok(s)
    }

    /// Resolves an object-table reference (header `h` with its low bit clear) read at
    /// `offset` by decoding the referenced value again.
    fn object_ref(&mut self, h: u32, offset: usize, depth: usize) -> Result<Value, AmfError> {
        let (start, end) = self.objects.lookup(h >> 1, FORMAT, offset)?;
        self.ctx
            .charge(0, end.saturating_sub(start), FORMAT, offset)?;
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

    /// An inline array with `dense` dense items (header already read).
    fn array(&mut self, dense: u32, depth: usize, offset: usize) -> Result<Value, AmfError> {
        let d = self.ctx.enter(depth, FORMAT, offset)?;
        self.ctx
            .check_count(u64::from(dense), FORMAT, "array dense count", offset)?;
        // Every item takes at least one byte: never reserve more than the input could hold.
        let dense = dense as usize;
        if dense > self.r.remaining() {
            return Err(self.r.incomplete("array items", dense as u64));
        }
        let slot = self.objects.open(offset, self.replaying > 0);
        let mut assoc = Properties::new();
        loop {
            let key = self.string("array key")?;
            if key.is_empty() {
                break;
            }
            self.ctx.check_count(
                (dense + assoc.len() + 1) as u64,
                FORMAT,
                "array element count",
                offset,
            )?;
            let value = self.value(d)?;
            assoc.push((key, value));
        }
        let mut items = Vec::with_capacity(dense.min(self.r.remaining()));
        for _ in 0..dense {
            items.push(self.value(d)?);
        }
        self.objects.close(slot, self.r.pos);
        if assoc.is_empty() {
            return Ok(Value::StrictArray(items));
        }
        let mut props: Properties = items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect();
        props.append(&mut assoc);
        Ok(Value::EcmaArray(props))
    }

    /// An inline object (header `h`, low bit set, already read).
    fn object(&mut self, h: u32, depth: usize, offset: usize) -> Result<Value, AmfError> {
        let d = self.ctx.enter(depth, FORMAT, offset)?;
        let slot = self.objects.open(offset, self.replaying > 0);
        let traits = if h & 0b10 == 0 {
            let index = h >> 2;
            let t = self
                .traits
                .get(index as usize)
                .ok_or(AmfError::BadReference {
                    format: FORMAT,
                    table: "traits",
                    index,
                    table_len: self.traits.len(),
                    offset,
                })?
                .clone();
            self.ctx.charge(1, t.copy_bytes(), FORMAT, offset)?;
            t
        } else if h & 0b100 != 0 {
            return Err(self.unsupported("externalizable object", offset));
        } else {
            let count = h >> 4;
            self.ctx
                .check_count(u64::from(count), FORMAT, "sealed member count", offset)?;
            // Every member name takes at least one byte.
            let count = count as usize;
            if count > self.r.remaining() {
                return Err(self.r.incomplete("sealed member names", count as u64));
            }
            let class = self.string("class name")?;
            let mut sealed = Vec::with_capacity(count);
            for _ in 0..count {
                sealed.push(self.string("sealed member name")?);
            }
            let t = Traits {
                class,
                sealed,
                dynamic: h & 0b1000 != 0,
            };
            if self.replaying == 0 {
                self.traits.push(t.clone());
            }
            t
        };
        // Every member value takes at least one byte.
        let mut props = Properties::with_capacity(traits.sealed.len().min(self.r.remaining()));
        for name in traits.sealed {
            let value = self.value(d)?;
            props.push((name, value));
        }
        if traits.dynamic {
            loop {
                let key = self.string("dynamic member name")?;
                if key.is_empty() {
                    break;
                }
                self.ctx.check_count(
                    props.len() as u64 + 1,
                    FORMAT,
                    "object member count",
                    offset,
                )?;
                let value = self.value(d)?;
                props.push((key, value));
            }
        }
        self.objects.close(slot, self.r.pos);
        Ok(if traits.class.is_empty() {
            Value::Object(props)
        } else {
            Value::TypedObject {
                class: traits.class,
                properties: props,
            }
        })
    }
}

/// The signed value of a 29-bit two's complement integer.
fn sign_extend(u: u32) -> i32 {
    ((u << 3) as i32) >> 3
}

/// Appends the AMF3 encoding of `value` to `out`, all inline (no references).
///
/// [`Value::Integer`] outside the 29-bit range is written as a double; dates lose their
/// timezone; objects are written with sealed traits (so any name, even empty, survives);
/// [`Value::EcmaArray`] is written as an associative-only array, skipping properties with an
/// empty name (the associative part ends at an empty name). Lengths beyond 2^28 - 1 bytes or
/// items and traits beyond 2^25 - 1 members are cut.
pub fn encode(value: &Value, out: &mut BytesMut) {
    match value {
        Value::Undefined => out.put_u8(marker::UNDEFINED),
        Value::Null => out.put_u8(marker::NULL),
        Value::Boolean(false) => out.put_u8(marker::FALSE),
        Value::Boolean(true) => out.put_u8(marker::TRUE),
        Value::Integer(i) if INT_RANGE.contains(i) => {
            out.put_u8(marker::INTEGER);
            put_u29((*i as u32) & U29_MAX, out);
        }
        Value::Integer(i) => {
            out.put_u8(marker::DOUBLE);
            out.put_f64(f64::from(*i));
        }
        Value::Number(n) => {
            out.put_u8(marker::DOUBLE);
            out.put_f64(*n);
        }
        Value::String(s) => {
            out.put_u8(marker::STRING);
            put_string(s, out);
        }
        Value::XmlDocument(s) => {
            out.put_u8(marker::XML_DOC);
            put_string(s, out);
        }
        Value::Date { millis, .. } => {
            out.put_u8(marker::DATE);
            put_u29(1, out);
            out.put_f64(*millis);
        }
        Value::ByteArray(b) => {
            let b = b.get(..b.len().min(MAX_LEN)).unwrap_or_default();
            out.put_u8(marker::BYTE_ARRAY);
            put_inline_len(b.len(), out);
            out.put_slice(b);
        }
        Value::StrictArray(items) => {
            let items = items.get(..items.len().min(MAX_LEN)).unwrap_or_default();
            out.put_u8(marker::ARRAY);
            put_inline_len(items.len(), out);
            put_string("", out);
            for item in items {
                encode(item, out);
            }
        }
        Value::EcmaArray(props) => {
            out.put_u8(marker::ARRAY);
            put_inline_len(0, out);
            for (k, v) in props.iter().filter(|(k, _)| !k.is_empty()) {
                put_string(k, out);
                encode(v, out);
            }
            put_string("", out);
        }
        Value::Object(props) => put_object("", props, out),
        Value::TypedObject { class, properties } => put_object(class, properties, out),
    }
}

/// An object with inline, sealed, non-dynamic traits.
fn put_object(class: &str, props: &Properties, out: &mut BytesMut) {
    let props = props.get(..props.len().min(MAX_SEALED)).unwrap_or_default();
    out.put_u8(marker::OBJECT);
    // Fits: MAX_SEALED << 4 | 0b0011 < 2^29.
    put_u29(((props.len() as u32) << 4) | 0b0011, out);
    put_string(class, out);
    for (k, _) in props {
        put_string(k, out);
    }
    for (_, v) in props {
        encode(v, out);
    }
}

/// An inline string (cut to [`MAX_LEN`] bytes).
fn put_string(s: &str, out: &mut BytesMut) {
    let s = fit(s, MAX_LEN);
    put_inline_len(s.len(), out);
    out.put_slice(s.as_bytes());
}

/// A U29 holding `len << 1 | 1` (inline value of `len` bytes or items); `len <= MAX_LEN`.
fn put_inline_len(len: usize, out: &mut BytesMut) {
    put_u29(((len.min(MAX_LEN) as u32) << 1) | 1, out);
}

/// Writes `v` (at most [`U29_MAX`]) as a variable-length U29.
fn put_u29(v: u32, out: &mut BytesMut) {
    let v = v & U29_MAX;
    if v < 0x80 {
        out.put_u8(v as u8);
    } else if v < 0x4000 {
        out.put_slice(&[(v >> 7) as u8 | 0x80, (v & 0x7F) as u8]);
    } else if v < 0x20_0000 {
        out.put_slice(&[
            (v >> 14) as u8 | 0x80,
            ((v >> 7) & 0x7F) as u8 | 0x80,
            (v & 0x7F) as u8,
        ]);
    } else {
        out.put_slice(&[
            (v >> 22) as u8 | 0x80,
            ((v >> 15) & 0x7F) as u8 | 0x80,
            ((v >> 8) & 0x7F) as u8 | 0x80,
            (v & 0xFF) as u8,
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    #[test]
    fn u29_vectors() {
        let cases: [(u32, &[u8]); 8] = [
            (0, &[0x00]),
            (0x7F, &[0x7F]),
            (0x80, &[0x81, 0x00]),
            (0x3FFF, &[0xFF, 0x7F]),
            (0x4000, &[0x81, 0x80, 0x00]),
            (0x1F_FFFF, &[0xFF, 0xFF, 0x7F]),
            (0x20_0000, &[0x80, 0xC0, 0x80, 0x00]),
            (U29_MAX, &[0xFF, 0xFF, 0xFF, 0xFF]),
        ];
        for (v, bytes) in cases {
            let mut out = BytesMut::new();
            put_u29(v, &mut out);
            assert_eq!(&out[..], bytes, "{v:#x}");
            let mut ctx = Ctx::new(16, 4, 4);
            let mut d = Decoder {
                r: Reader::new(bytes, 0, FORMAT),
                ctx: &mut ctx,
                strings: Vec::new(),
                objects: RefTable::default(),
                traits: Vec::new(),
                replaying: 0,
            };
            assert_eq!(d.u29("u29").unwrap(), v);
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(dec(&[0x00]).unwrap(), Value::Undefined);
        assert_eq!(dec(&[0x01]).unwrap(), Value::Null);
        assert_eq!(dec(&[0x02]).unwrap(), Value::Boolean(false));
        assert_eq!(dec(&[0x03]).unwrap(), Value::Boolean(true));
        assert_eq!(dec(&[0x04, 0x7F]).unwrap(), Value::Integer(127));
        assert_eq!(
            dec(&[0x04, 0xBF, 0xFF, 0xFF, 0xFF]).unwrap(),
            Value::Integer((1 << 28) - 1)
        );
        assert_eq!(
            dec(&[0x04, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap(),
            Value::Integer(-1)
        );
        assert_eq!(
            dec(&[0x04, 0xC0, 0x80, 0x80, 0x00]).unwrap(),
            Value::Integer(-(1 << 28))
        );
        assert_eq!(
            dec(&[0x05, 0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18]).unwrap(),
            Value::Number(std::f64::consts::PI)
        );
        assert_eq!(
            dec(&[0x06, 0x07, b'a', b'b', b'c']).unwrap(),
            Value::from("abc")
        );
        assert_eq!(dec(&[0x06, 0x01]).unwrap(), Value::from(""));
        assert_eq!(
            dec(&[0x07, 0x07, b'<', b'a', b'>']).unwrap(),
            Value::XmlDocument("<a>".into())
        );
        assert_eq!(
            dec(&[0x0B, 0x07, b'<', b'b', b'>']).unwrap(),
            Value::XmlDocument("<b>".into())
        );
        assert_eq!(
            dec(&[0x08, 0x01, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]).unwrap(),
            Value::Date {
                millis: 1.0,
                timezone: 0
            }
        );
        assert_eq!(
            dec(&[0x0C, 0x05, 0xDE, 0xAD]).unwrap(),
            Value::ByteArray(bytes::Bytes::from_static(&[0xDE, 0xAD]))
        );
    }

    #[test]
    fn integer_encoding_range() {
        assert_eq!(enc(&Value::Integer(-1)), [0x04, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(enc(&Value::Integer(300)), [0x04, 0x82, 0x2C]);
        assert_eq!(enc(&Value::Integer(1 << 28))[0], 0x05);
        assert_eq!(enc(&Value::Integer(-(1 << 28)))[0], 0x04);
        assert_eq!(
            dec(&enc(&Value::Integer(i32::MIN))).unwrap(),
            Value::Number(f64::from(i32::MIN))
        );
    }

    #[test]
    fn string_references() {
        // ["ab", "", "ab" by reference 0, "" inline again]
        let b = [
            0x09, 0x09, 0x01, 0x06, 0x05, b'a', b'b', 0x06, 0x01, 0x06, 0x00, 0x06, 0x01,
        ];
        assert_eq!(
            dec(&b).unwrap(),
            Value::StrictArray(vec!["ab".into(), "".into(), "ab".into(), "".into()])
        );
        // The empty string is not in the table: reference 1 does not exist.
        let bad = [
            0x09, 0x07, 0x01, 0x06, 0x05, b'a', b'b', 0x06, 0x01, 0x06, 0x02,
        ];
        assert_eq!(
            dec(&bad),
            Err(AmfError::BadReference {
                format: Format::Amf3,
                table: "string",
                index: 1,
                table_len: 1,
                offset: 10
            })
        );
    }

    #[test]
    fn arrays_dense_and_associative() {
        let dense = [0x09, 0x05, 0x01, 0x04, 0x01, 0x01];
        let v = Value::StrictArray(vec![Value::Integer(1), Value::Null]);
        assert_eq!(dec(&dense).unwrap(), v);
        assert_eq!(enc(&v), dense);
        // assoc {k: true}, dense [false]
        let mixed = [0x09, 0x03, 0x03, b'k', 0x03, 0x01, 0x02];
        assert_eq!(
            dec(&mixed).unwrap(),
            Value::EcmaArray(vec![
                ("0".into(), Value::Boolean(false)),
                ("k".into(), Value::Boolean(true))
            ])
        );
        let ecma = Value::EcmaArray(vec![("k".into(), Value::Boolean(true))]);
        assert_eq!(enc(&ecma), [0x09, 0x01, 0x03, b'k', 0x03, 0x01]);
    }

    #[test]
    fn objects_traits_and_references() {
        // Typed object "P" with sealed x, dynamic; x=1, dyn y=2; then a second object
        // using traits reference 0 with x=3 and no dynamic members; then object ref 1.
        let b = [
            0x09, 0x07, 0x01, // array of 3, no assoc (object table entry 0)
            0x0A, 0x1B, 0x03, b'P', 0x03, b'x', // inline traits: 1 sealed, dynamic
            0x04, 0x01, // x = 1
            0x03, b'y', 0x04, 0x02, 0x01, // y = 2, end of dynamic members
            0x0A, 0x01, // traits reference 0
            0x04, 0x03, // x = 3
            0x01, // no dynamic members
            0x0A, 0x02, // object reference 1 (the first object)
        ];
        let first = Value::TypedObject {
            class: "P".into(),
            properties: vec![
                ("x".into(), Value::Integer(1)),
                ("y".into(), Value::Integer(2)),
            ],
        };
        let second = Value::TypedObject {
            class: "P".into(),
            properties: vec![("x".into(), Value::Integer(3))],
        };
        assert_eq!(
            dec(&b).unwrap(),
            Value::StrictArray(vec![first.clone(), second, first])
        );
        // Anonymous dynamic object.
        let anon = [0x0A, 0x0B, 0x01, 0x03, b'a', 0x01, 0x01];
        assert_eq!(dec(&anon).unwrap(), Value::object([("a", Value::Null)]));
        // The encoder writes sealed traits.
        let v = Value::object([("a", Value::Null)]);
        assert_eq!(enc(&v), [0x0A, 0x13, 0x01, 0x03, b'a', 0x01]);
        assert_eq!(dec(&enc(&v)).unwrap(), v);
    }

    #[test]
    fn date_and_byte_array_references() {
        let b = [
            0x09, 0x09, 0x01, // array of 4
            0x08, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, // date 0 (entry 1)
            0x0C, 0x03, 0xAA, // byte array [0xAA] (entry 2)
            0x08, 0x02, // date reference 1
            0x0C, 0x04, // byte array reference 2
        ];
        let date = Value::Date {
            millis: 0.0,
            timezone: 0,
        };
        let ba = Value::ByteArray(bytes::Bytes::from_static(&[0xAA]));
        assert_eq!(
            dec(&b).unwrap(),
            Value::StrictArray(vec![date.clone(), ba.clone(), date, ba])
        );
    }

    #[test]
    fn reference_errors() {
        assert_eq!(
            dec(&[0x0A, 0x00]),
            Err(AmfError::BadReference {
                format: Format::Amf3,
                table: "object",
                index: 0,
                table_len: 0,
                offset: 0
            })
        );
        assert_eq!(
            dec(&[0x0A, 0x05]),
            Err(AmfError::BadReference {
                format: Format::Amf3,
                table: "traits",
                index: 1,
                table_len: 0,
                offset: 0
            })
        );
        // An array containing a reference to itself.
        assert_eq!(
            dec(&[0x09, 0x03, 0x01, 0x09, 0x00]),
            Err(AmfError::CyclicReference {
                format: Format::Amf3,
                index: 0,
                offset: 3
            })
        );
    }

    #[test]
    fn refused_and_unknown_markers() {
        assert_eq!(
            dec(&[0x0A, 0x07, 0x03, b'C']),
            Err(AmfError::Unsupported {
                format: Format::Amf3,
                what: "externalizable object",
                offset: 0
            })
        );
        for m in 0x0D..=0x10 {
            assert!(matches!(
                dec(&[m, 0x01]),
                Err(AmfError::Unsupported { what: "vector", .. })
            ));
        }
        assert!(matches!(
            dec(&[0x11, 0x01]),
            Err(AmfError::Unsupported {
                what: "dictionary",
                ..
            })
        ));
        assert_eq!(
            dec(&[0x12]),
            Err(AmfError::UnknownMarker {
                format: Format::Amf3,
                marker: 0x12,
                offset: 0
            })
        );
    }

    #[test]
    fn truncated_input_is_incomplete() {
        for (b, field) in [
            (&[][..], "type marker"),
            (&[0x04, 0x80, 0x80][..], "integer"),
            (&[0x05, 0, 0][..], "double"),
            (&[0x06, 0x09, b'a'][..], "string"),
            (&[0x07, 0x05][..], "xml"),
            (&[0x08, 0x01, 0][..], "date"),
            (&[0x0C, 0x05, 0][..], "byte array"),
            (&[0x0A][..], "object header"),
            (&[0x0A, 0x13, 0x01][..], "sealed member name"),
            (&[0x0A, 0x0B, 0x01][..], "dynamic member name"),
            (&[0x09, 0x01][..], "array key"),
            (&[0x0A, 0x13][..], "sealed member names"),
        ] {
            match dec(b) {
                Err(AmfError::Incomplete { field: f, .. }) => assert_eq!(f, field, "{b:?}"),
                other => panic!("{b:?}: {other:?}"),
            }
        }
        assert_eq!(
            dec(&[0x09, 0x21, 0x01, 0x01]),
            Err(AmfError::Incomplete {
                format: Format::Amf3,
                field: "array items",
                offset: 2,
                needed: 16,
                available: 2
            })
        );
    }

    #[test]
    fn counts_checked_against_limits() {
        let l = limits(32, 2);
        let mut pos = 0;
        assert!(matches!(
            decode_one_with_limits(&[0x09, 0x07, 0x01, 1, 1, 1], &mut pos, &l),
            Err(AmfError::TooManyElements {
                field: "array dense count",
                count: 3,
                limit: 2,
                ..
            })
        ));
        // dense 1 + assoc 2 > 2
        let b = [0x09, 0x03, 0x03, b'a', 0x01, 0x03, b'b', 0x01, 0x01, 0x01];
        assert!(matches!(
            decode_one_with_limits(&b, &mut pos, &l),
            Err(AmfError::TooManyElements {
                field: "array element count",
                ..
            })
        ));
        assert!(matches!(
            decode_one_with_limits(
                &[0x0A, 0x33, 0x01, 0x03, b'a', 0x03, b'b', 0x03, b'c'],
                &mut pos,
                &l
            ),
            Err(AmfError::TooManyElements {
                field: "sealed member count",
                count: 3,
                ..
            })
        ));
        let dynamic = [
            0x0A, 0x0B, 0x01, 0x03, b'a', 1, 0x03, b'b', 1, 0x03, b'c', 1, 0x01,
        ];
        assert!(matches!(
            decode_one_with_limits(&dynamic, &mut pos, &l),
            Err(AmfError::TooManyElements {
                field: "object member count",
                count: 3,
                ..
            })
        ));
        assert_eq!(pos, 0);
        // A huge declared dense count is refused before allocating.
        assert!(matches!(
            dec(&[0x09, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(AmfError::TooManyElements { .. })
        ));
    }

    #[test]
    fn depth_limit_and_deep_nesting() {
        assert!(matches!(
            decode_one(&[0x09, 0x01, 0x01], &mut 0, 0),
            Err(AmfError::TooDeep { max_depth: 0, .. })
        ));
        assert!(decode_one(&[0x09, 0x01, 0x01], &mut 0, 1).is_ok());
        let mut b = Vec::new();
        b.extend(
            std::iter::repeat([0x0A, 0x13, 0x01, 0x03, b'a'])
                .take(100_000)
                .flatten(),
        );
        assert_eq!(
            dec(&b),
            Err(AmfError::TooDeep {
                format: Format::Amf3,
                offset: 32 * 5,
                max_depth: 32
            })
        );
    }

    #[test]
    fn reference_budget() {
        // A 1000-byte string, then 5000 references to it: 5 MB of copies from 11 kB.
        let mut b = vec![0x09];
        let mut len = BytesMut::new();
        put_u29(5001 << 1 | 1, &mut len);
        b.extend_from_slice(&len);
        b.push(0x01);
        b.push(0x06);
        let mut hdr = BytesMut::new();
        put_u29(1000 << 1 | 1, &mut hdr);
        b.extend_from_slice(&hdr);
        b.extend(std::iter::repeat(b'x').take(1000));
        for _ in 0..5000 {
            b.extend_from_slice(&[0x06, 0x00]);
        }
        let e = dec(&b).unwrap_err();
        assert!(
            matches!(
                e,
                AmfError::ReferenceBudget {
                    format: Format::Amf3,
                    ..
                }
            ),
            "{e}"
        );
        // Nested object references doubling at each level.
        let mut b = vec![0x09, 0x81, 0x01, 0x01]; // array of 64 (entry 0)
        b.extend_from_slice(&[0x09, 0x03, 0x01, 0x01]); // [null] (entry 1)
        for i in 1..64u32 {
            b.extend_from_slice(&[0x09, 0x05, 0x01]); // [ref i, ref i] (entry i + 1)
            for _ in 0..2 {
                b.push(0x09);
                let mut r = BytesMut::new();
                put_u29(i << 1, &mut r);
                b.extend_from_slice(&r);
            }
        }
        let e = dec(&b).unwrap_err();
        assert!(matches!(e, AmfError::ReferenceBudget { .. }), "{e}");
    }

    #[test]
    fn fuzz_seeds_decode() {
        for seed in [
            &include_bytes!("../../../fuzz/seeds/amf3/objects.bin")[..],
            include_bytes!("../../../fuzz/seeds/amf3/mixed_array.bin"),
            include_bytes!("../../../fuzz/seeds/amf3/refs.bin"),
        ] {
            decode_one(seed, &mut 0, 32).unwrap();
        }
    }

    #[test]
    fn traits_references_count_against_the_budget() {
        // [[o, traits-ref o], [traits-ref o, traits-ref o]] with 2 elements allowed per
        // container: three traits references exceed a copy budget of 2.
        let b = [
            0x09, 0x05, 0x01, // outer [_, _]
            0x09, 0x05, 0x01, 0x0A, 0x03, 0x01, 0x0A, 0x01, // [inline traits, ref]
            0x09, 0x05, 0x01, 0x0A, 0x01, 0x0A, 0x01, // [ref, ref]
        ];
        assert!(decode_one_with_limits(&b, &mut 0, &limits(32, 3)).is_ok());
        assert_eq!(
            decode_one_with_limits(&b, &mut 0, &limits(32, 2)),
            Err(AmfError::ReferenceBudget {
                format: Format::Amf3,
                offset: 16
            })
        );
    }

    /// What AMF3 gives back for a value.
    fn amf3_image(v: &Value) -> Value {
        let props = |p: &Properties| p.iter().map(|(k, v)| (k.clone(), amf3_image(v))).collect();
        match v {
            Value::Integer(i) if !INT_RANGE.contains(i) => Value::Number(f64::from(*i)),
            Value::Date { millis, .. } => Value::Date {
                millis: *millis,
                timezone: 0,
            },
            Value::Object(p) => Value::Object(props(p)),
            Value::TypedObject { class, properties } if class.is_empty() => {
                Value::Object(props(properties))
            }
            Value::TypedObject { class, properties } => Value::TypedObject {
                class: class.clone(),
                properties: props(properties),
            },
            Value::EcmaArray(p) => {
                let kept: Properties = p
                    .iter()
                    .filter(|(k, _)| !k.is_empty())
                    .map(|(k, v)| (k.clone(), amf3_image(v)))
                    .collect();
                if kept.is_empty() {
                    Value::StrictArray(Vec::new())
                } else {
                    Value::EcmaArray(kept)
                }
            }
            Value::StrictArray(items) => Value::StrictArray(items.iter().map(amf3_image).collect()),
            other => other.clone(),
        }
    }

    proptest! {
        #[test]
        fn round_trip(v in crate::amf::tests::arb_value()) {
            let bytes = enc(&v);
            let back = dec(&bytes).unwrap();
            prop_assert!(back.bitwise_eq(&amf3_image(&v)), "{:?} != {:?}", back, v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_one(&bytes, &mut 0, 8);
        }
    }
}
