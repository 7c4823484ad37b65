//! AMF (Action Message Format) values and their AMF0 and AMF3 encodings.
//!
//! RTMP commands (`connect`, `publish`, `onStatus`...) and data messages (`onMetaData`) are
//! sequences of AMF values. [`Value`] is the one tree type both encodings decode into and encode
//! from; [`amf0`] and [`amf3`] hold the wire formats.
//!
//! Decoding is bounded: nesting depth and element counts are checked before anything is
//! allocated, and references (which let a few bytes stand for a large value) may copy at most
//! `max_amf_elements` values and a number of bytes proportional to the input (see
//! [`AmfError::ReferenceBudget`]). Encoders never write references, so their output is always
//! a plain tree.

pub mod amf0;
pub mod amf3;

use std::fmt;

/// Ordered key/value pairs of an object or associative array (keys may repeat, order is kept).
pub type Properties = Vec<(String, Value)>;

/// One AMF value, as decoded from AMF0 or AMF3 or to be encoded in either.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// IEEE 754 double (AMF0 number, AMF3 double).
    Number(f64),
    /// Boolean.
    Boolean(bool),
    /// UTF-8 string. AMF0 decodes string and long string into it; the AMF0 encoder writes a long
    /// string when the text is longer than 0xFFFF bytes.
    String(String),
    /// Anonymous object.
    Object(Properties),
    /// Object of a named class.
    TypedObject {
        /// Class (alias) name.
        class: String,
        /// Members in wire order.
        properties: Properties,
    },
    /// Null.
    Null,
    /// Undefined (AMF0 "unsupported" also decodes to this).
    Undefined,
    /// Associative array (AMF0 ECMA array; AMF3 array with an associative part, its dense items
    /// keyed `"0"`, `"1"`...).
    EcmaArray(Properties),
    /// Dense array.
    StrictArray(Vec<Value>),
    /// Date: milliseconds since the Unix epoch (UTC) and a timezone offset in minutes (AMF0
    /// only; AMF3 dates decode with 0 and the AMF3 encoder drops it).
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z.
        millis: f64,
        /// Timezone offset in minutes (reserved, normally 0).
        timezone: i16,
    },
    /// XML text (AMF0 XML document; AMF3 XMLDocument and XML).
    XmlDocument(String),
    /// AMF3 integer (29-bit signed). The AMF0 encoder writes it as a number; the AMF3 encoder
    /// writes a double when it does not fit 29 bits.
    Integer(i32),
    /// AMF3 ByteArray. The AMF0 encoder writes it through the avmplus switch (0x11) as AMF3.
    ByteArray(bytes::Bytes),
}

impl Value {
    /// The text of a [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number of a [`Value::Number`] or [`Value::Integer`].
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Integer(i) => Some(f64::from(*i)),
            _ => None,
        }
    }

    /// The value of a [`Value::Boolean`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an [`Value::Object`], [`Value::TypedObject`] or [`Value::EcmaArray`].
    pub fn properties(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => Some(p),
            Value::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// The first property named `key` of an object, typed object or ECMA array.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Builds an anonymous [`Value::Object`] from key/value pairs, keeping their order.
    pub fn object<K: Into<String>>(props: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Structural equality that compares numbers and dates by their bits, so `NaN` equals the
    /// same `NaN` and `0.0` differs from `-0.0`: the notion of "same value" an encode/decode
    /// round trip preserves.
    pub fn bitwise_eq(&self, other: &Value) -> bool {
        fn props_eq(a: &[(String, Value)], b: &[(String, Value)]) -> bool {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && va.bitwise_eq(vb))
        }
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => a.to_bits() == b.to_bits(),
            (
                Value::Date {
                    millis: a,
                    timezone: ta,
                },
                Value::Date {
                    millis: b,
                    timezone: tb,
                },
            ) => a.to_bits() == b.to_bits() && ta == tb,
            (Value::Object(a), Value::Object(b)) | (Value::EcmaArray(a), Value::EcmaArray(b)) => {
                props_eq(a, b)
            }
            (
                Value::TypedObject {
                    class: ca,
                    properties: a,
                },
                Value::TypedObject {
                    class: cb,
                    properties: b,
                },
            ) => ca == cb && props_eq(a, b),
            (Value::StrictArray(a), Value::StrictArray(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.bitwise_eq(y))
            }
            _ => self == other,
        }
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

/// Which AMF encoding an error comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// AMF0.
    Amf0,
    /// AMF3.
    Amf3,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Amf0 => "amf0",
            Format::Amf3 => "amf3",
        })
    }
}

/// Why AMF input could not be decoded. Offsets are byte offsets into the buffer given to the
/// decoder.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmfError {
    /// The input ends inside a value. AMF values arrive in complete messages, so for a whole
    /// message this means it is truncated or its lengths are wrong.
    Incomplete {
        /// Encoding.
        format: Format,
        /// What was being read ("string length", "number"...).
        field: &'static str,
        /// Where that field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the input at `offset`.
        available: usize,
    },
    /// A type marker this encoding does not define.
    UnknownMarker {
        /// Encoding.
        format: Format,
        /// The marker byte.
        marker: u8,
        /// Where the marker is.
        offset: usize,
    },
    /// A defined type this decoder refuses (AMF0 movieclip and recordset, AMF3 externalizable
    /// objects, vectors and dictionaries).
    Unsupported {
        /// Encoding.
        format: Format,
        /// The type refused.
        what: &'static str,
        /// Where its marker is.
        offset: usize,
    },
    /// An AMF0 object-end marker (0x09) where a value was expected.
    UnexpectedObjectEnd {
        /// Where the marker is.
        offset: usize,
    },
    /// Objects and arrays nest deeper than the limit.
    TooDeep {
        /// Encoding.
        format: Format,
        /// Where the container that is one level too deep starts.
        offset: usize,
        /// The nesting limit.
        max_depth: usize,
    },
    /// An array or object has more elements than the limit allows.
    TooManyElements {
        /// Encoding.
        format: Format,
        /// What was being counted.
        field: &'static str,
        /// The declared (or reached) count.
        count: u64,
        /// The limit.
        limit: usize,
        /// Where the count (or the container) is.
        offset: usize,
    },
    /// A reference to a table entry that does not exist.
    BadReference {
        /// Encoding.
        format: Format,
        /// Which table ("object", "string", "traits").
        table: &'static str,
        /// The index read.
        index: u32,
        /// Entries in the table at that point.
        table_len: usize,
        /// Where the reference is.
        offset: usize,
    },
    /// A reference to a value that encloses the reference itself (a cycle, which a value tree
    /// cannot hold).
    CyclicReference {
        /// Encoding.
        format: Format,
        /// The index read.
        index: u32,
        /// Where the reference is.
        offset: usize,
    },
    /// References would copy more than one decode call may copy. Each value copied for an
    /// object reference, and each string or traits reference, costs one of
    /// `max_amf_elements`; the bytes copied may total at most four times the input (at least
    /// 64 KiB). This stops "reference bombs" where each level refers twice to the one below.
    ReferenceBudget {
        /// Encoding.
        format: Format,
        /// Where the reference (or copied value) that went over is.
        offset: usize,
    },
}

impl fmt::Display for AmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmfError::Incomplete {
                format,
                field,
                offset,
                needed,
                available,
            } => write!(
                f,
                "{format}: {field} at offset {offset} needs {needed} bytes but only {available} are left"
            ),
            AmfError::UnknownMarker {
                format,
                marker,
                offset,
            } => write!(f, "{format}: unknown type marker {marker:#04x} at offset {offset}"),
            AmfError::Unsupported {
                format,
                what,
                offset,
            } => write!(f, "{format}: {what} at offset {offset} is not supported"),
            AmfError::UnexpectedObjectEnd { offset } => {
                write!(f, "amf0: object-end marker at offset {offset} outside an object")
            }
            AmfError::TooDeep {
                format,
                offset,
                max_depth,
            } => write!(
                f,
                "{format}: nesting at offset {offset} is deeper than the limit of {max_depth}"
            ),
            AmfError::TooManyElements {
                format,
                field,
                count,
                limit,
                offset,
            } => write!(
                f,
                "{format}: {field} {count} at offset {offset} exceeds the limit of {limit}"
            ),
            AmfError::BadReference {
                format,
                table,
                index,
                table_len,
                offset,
            } => write!(
                f,
                "{format}: {table} reference {index} at offset {offset} is out of range ({table_len} entries)"
            ),
            AmfError::CyclicReference {
                format,
                index,
                offset,
            } => write!(
                f,
                "{format}: object reference {index} at offset {offset} points to a value that contains it"
            ),
            AmfError::ReferenceBudget { format, offset } => write!(
                f,
                "{format}: references at offset {offset} copy more than one decode may copy"
            ),
        }
    }
}

impl std::error::Error for AmfError {}

/// Limits and copy budget shared by all decoders of one decode call (AMF0 and the AMF3 values
/// nested in it through the avmplus switch).
pub(crate) struct Ctx {
    /// Deepest nesting of containers accepted.
    max_depth: usize,
    /// Most elements in one container.
    max_elements: usize,
    /// Values references may still copy.
    copy_elements_left: usize,
    /// Bytes references may still copy.
    copy_bytes_left: usize,
    /// How many reference expansions are in progress (values produced while it is non-zero are
    /// copies and count against the budget).
    replaying: usize,
}

impl Ctx {
    /// Budget for a decode of `input_len` bytes: references may copy `max_elements` values and
    /// four times the input (at least 64 KiB) in bytes.
    pub(crate) fn new(input_len: usize, max_depth: usize, max_elements: usize) -> Ctx {
        Ctx {
            max_depth,
            max_elements,
            copy_elements_left: max_elements,
            copy_bytes_left: input_len.saturating_mul(4).max(64 * 1024),
            replaying: 0,
        }
    }

    /// From a [`crate::limits::Limits`].
    pub(crate) fn from_limits(input_len: usize, limits: &crate::limits::Limits) -> Ctx {
        Ctx::new(input_len, limits.max_amf_depth, limits.max_amf_elements)
    }

    /// Entering a container found at `offset` while `depth` containers enclose it: returns
    /// the depth for its children.
    pub(crate) fn enter(
        &self,
        depth: usize,
        format: Format,
        offset: usize,
    ) -> Result<usize, AmfError> {
        if depth >= self.max_depth {
            return Err(AmfError::TooDeep {
                format,
                offset,
                max_depth: self.max_depth,
            });
        }
        Ok(depth + 1)
    }

    /// Checks an element count (declared or reached) against the per-container limit.
    pub(crate) fn check_count(
        &self,
        count: u64,
        format: Format,
        field: &'static str,
        offset: usize,
    ) -> Result<(), AmfError> {
        if count > self.max_elements as u64 {
            return Err(AmfError::TooManyElements {
                format,
                field,
                count,
                limit: self.max_elements,
                offset,
            });
        }
        Ok(())
    }

    /// Charges a copy made for a reference against the budget.
    pub(crate) fn charge(
        &mut self,
        elements: usize,
        bytes: usize,
        format: Format,
        offset: usize,
    ) -> Result<(), AmfError> {
        match (
            self.copy_elements_left.checked_sub(elements),
            self.copy_bytes_left.checked_sub(bytes),
        ) {
            (Some(e), Some(b)) => {
                self.copy_elements_left = e;
                self.copy_bytes_left = b;
                Ok(())
            }
            _ => Err(AmfError::ReferenceBudget { format, offset }),
        }
    }

    /// Called once per value decoded: while a reference is being expanded, each value is a
    /// copy and costs one element.
    pub(crate) fn count_value(&mut self, format: Format, offset: usize) -> Result<(), AmfError> {
        if self.replaying > 0 {
            self.charge(1, 0, format, offset)?;
        }
        Ok(())
    }

    /// Starts expanding a reference.
    pub(crate) fn begin_replay(&mut self) {
        self.replaying += 1;
    }

    /// Ends expanding a reference.
    pub(crate) fn end_replay(&mut self) {
        self.replaying = self.replaying.saturating_sub(1);
    }
}

/// Bounds-checked big-endian reads over the input of one decode.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    /// Offset of the next unread byte.
    pub(crate) pos: usize,
    format: Format,
}

impl<'a> Reader<'a> {
    /// A reader over `buf` starting at `pos`.
    pub(crate) fn new(buf: &'a [u8], pos: usize, format: Format) -> Self {
        Reader { buf, pos, format }
    }

    /// The whole input (for handing over to a nested decoder).
    pub(crate) fn input(&self) -> &'a [u8] {
        self.buf
    }

    /// Bytes left after `pos`.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// An [`AmfError::Incomplete`] for `field` needing `needed` bytes at the current offset.
    pub(crate) fn incomplete(&self, field: &'static str, needed: u64) -> AmfError {
        AmfError::Incomplete {
            format: self.format,
            field,
            offset: self.pos,
            needed,
            available: self.remaining(),
        }
    }

    /// The next `n` bytes (`n` comes from the wire: it is checked, not trusted).
    pub(crate) fn take(&mut self, n: u64, field: &'static str) -> Result<&'a [u8], AmfError> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.incomplete(field, n))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.incomplete(field, n))?;
        self.pos = end;
        Ok(bytes)
    }

    /// A fixed-size array of bytes.
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], AmfError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, field)?);
        Ok(out)
    }

    /// The next byte, without consuming it.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// One byte.
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, AmfError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Big-endian u16.
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, AmfError> {
        self.array(field).map(u16::from_be_bytes)
    }

    /// Big-endian u32.
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, AmfError> {
        self.array(field).map(u32::from_be_bytes)
    }

    /// Big-endian IEEE 754 double.
    pub(crate) fn f64(&mut self, field: &'static str) -> Result<f64, AmfError> {
        self.array(field).map(f64::from_be_bytes)
    }

    /// `n` bytes of text. Invalid UTF-8 is replaced with U+FFFD rather than refused: some
    /// encoders send Latin-1 in fields such as `flashVer`.
    pub(crate) fn text(&mut self, n: u64, field: &'static str) -> Result<String, AmfError> {
        Ok(String::from_utf8_lossy(self.take(n, field)?).into_owned())
    }

    /// The bytes in `start..end` already read (for re-reading a referenced string).
    pub(crate) fn slice(&self, start: usize, end: usize) -> Option<&'a [u8]> {
        self.buf.get(start..end)
    }
}

/// Reference table of complex values: where each one starts and (once decoded) ends, so a
/// reference is resolved by decoding those bytes again. Entries are only added outside
/// reference expansions, so the table never holds more entries than the input has bytes.
#[derive(Default)]
pub(crate) struct RefTable {
    spans: Vec<(usize, Option<usize>)>,
}

impl RefTable {
    /// Registers a value starting at `start` unless a reference is being expanded
    /// (`replaying`); returns its slot for [`RefTable::close`].
    pub(crate) fn open(&mut self, start: usize, replaying: bool) -> Option<usize> {
        if replaying {
            return None;
        }
        self.spans.push((start, None));
        Some(self.spans.len() - 1)
    }

    /// Records where the value in `slot` ended.
    pub(crate) fn close(&mut self, slot: Option<usize>, end: usize) {
        if let Some(span) = slot.and_then(|i| self.spans.get_mut(i)) {
            span.1 = Some(end);
        }
    }

    /// The byte range of entry `index`, for a reference read at `offset`.
    pub(crate) fn lookup(
        &self,
        index: u32,
        format: Format,
        offset: usize,
    ) -> Result<(usize, usize), AmfError> {
        match self.spans.get(index as usize) {
            None => Err(AmfError::BadReference {
                format,
                table: "object",
                index,
                table_len: self.spans.len(),
                offset,
            }),
            Some((_, None)) => Err(AmfError::CyclicReference {
                format,
                index,
                offset,
            }),
            Some(&(start, Some(end))) => Ok((start, end)),
        }
    }
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a char boundary (used by
/// encoders for lengths the wire format cannot express).
pub(crate) fn fit(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // `end` is a char boundary no larger than `s.len()`, so this cannot fail.
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Arbitrary values nested at most four levels deep, for round-trip properties.
    pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<f64>().prop_map(Value::Number),
            any::<bool>().prop_map(Value::Boolean),
            ".{0,12}".prop_map(Value::String),
            Just(Value::Null),
            Just(Value::Undefined),
            (any::<f64>(), any::<i16>())
                .prop_map(|(millis, timezone)| Value::Date { millis, timezone }),
            ".{0,12}".prop_map(Value::XmlDocument),
            any::<i32>().prop_map(Value::Integer),
            vec(any::<u8>(), 0..16).prop_map(|b| Value::ByteArray(bytes::Bytes::from(b))),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            let props = vec((".{0,6}", inner.clone()), 0..6);
            prop_oneof![
                props.clone().prop_map(Value::Object),
                (".{0,6}", props.clone())
                    .prop_map(|(class, properties)| Value::TypedObject { class, properties }),
                props.prop_map(Value::EcmaArray),
                vec(inner, 0..6).prop_map(Value::StrictArray),
            ]
        })
    }

    #[test]
    fn accessors() {
        let v = Value::object([
            ("app", Value::from("live")),
            ("n", Value::Integer(3)),
            ("b", true.into()),
        ]);
        assert_eq!(v.get("app").and_then(Value::as_str), Some("live"));
        assert_eq!(v.get("n").and_then(Value::as_f64), Some(3.0));
        assert_eq!(v.get("b").and_then(Value::as_bool), Some(true));
        assert_eq!(v.get("missing"), None);
        assert_eq!(Value::Null.get("app"), None);
        assert_eq!(Value::Number(1.5).as_f64(), Some(1.5));
        assert_eq!(Value::Null.as_str(), None);
        assert_eq!(Value::Null.as_f64(), None);
        assert_eq!(Value::Null.as_bool(), None);
        let typed = Value::TypedObject {
            class: "C".into(),
            properties: vec![("x".into(), Value::Null)],
        };
        assert_eq!(typed.get("x"), Some(&Value::Null));
        assert_eq!(Value::EcmaArray(vec![]).properties(), Some(&[][..]));
    }

    #[test]
    fn bitwise_eq_handles_nan() {
        let nan = Value::StrictArray(vec![Value::Number(f64::NAN)]);
        assert_ne!(nan, nan.clone());
        assert!(nan.bitwise_eq(&nan.clone()));
        assert!(!Value::Number(0.0).bitwise_eq(&Value::Number(-0.0)));
        assert!(!Value::Number(1.0).bitwise_eq(&Value::Integer(1)));
    }

    #[test]
    fn fit_cuts_on_char_boundary() {
        assert_eq!(fit("héllo", 2), "h");
        assert_eq!(fit("héllo", 3), "hé");
        assert_eq!(fit("abc", 10), "abc");
    }

    #[test]
    fn display_names_format_field_and_offset() {
        let e = AmfError::Incomplete {
            format: Format::Amf0,
            field: "string",
            offset: 12,
            needed: 70000,
            available: 3,
        };
        assert_eq!(
            e.to_string(),
            "amf0: string at offset 12 needs 70000 bytes but only 3 are left"
        );
    }
}
