//! Codec headers and payload formats: H.264 and H.265 parameter sets and decoder configuration
//! records, AAC AudioSpecificConfig and ADTS, MP3 frame headers, and conversion between
//! length-prefixed (AVCC/HVCC) and Annex B (start code) NAL unit streams.
//!
//! Everything here parses untrusted bytes: reads are bounds-checked and bad input gives a
//! [`CodecError`], never a panic.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

pub mod aac;
pub mod av1;
pub mod bits;
pub mod h264;
pub mod h265;
pub mod latm;
pub mod mp3;
pub mod opus;

/// Errors from parsing codec headers and NAL unit streams.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ended inside `field`.
    Truncated {
        /// Which codec layer (`"h264"`, `"h265"`, `"aac"`, `"avcc"`, ...).
        codec: &'static str,
        /// The field being read.
        field: &'static str,
        /// Byte offset of the read in the parsed buffer (RBSP for parameter sets).
        offset: usize,
    },
    /// `field` holds a value the specification forbids or rill does not handle.
    Invalid {
        /// Which codec layer.
        codec: &'static str,
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Byte offset of the field in the parsed buffer (RBSP for parameter sets).
        offset: usize,
    },
    /// An exp-Golomb code with more than 31 leading zero bits (its value would not fit 32 bits).
    ExpGolombTooLong {
        /// Which codec layer.
        codec: &'static str,
        /// The field being read.
        field: &'static str,
        /// Byte offset where the code starts.
        offset: usize,
    },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Truncated {
                codec,
                field,
                offset,
            } => write!(f, "{codec}: input ends inside {field} at offset {offset}"),
            CodecError::Invalid {
                codec,
                field,
                value,
                offset,
            } => write!(
                f,
                "{codec}: invalid {field} value {value} at offset {offset}"
            ),
            CodecError::ExpGolombTooLong {
                codec,
                field,
                offset,
            } => write!(
                f,
                "{codec}: exp-Golomb code for {field} at offset {offset} is longer than 32 bits"
            ),
        }
    }
}

impl std::error::Error for CodecError {}

/// Checks a NAL length-prefix size (1 to 4 bytes).
fn check_length_size(length_size: u8) -> Result<usize, CodecError> {
    match length_size {
        1..=4 => Ok(usize::from(length_size)),
        _ => Err(CodecError::Invalid {
            codec: "avcc",
            field: "nalu length size",
            value: u64::from(length_size),
            offset: 0,
        }),
    }
}

/// Reads one NAL unit `(start, end)` at `pos` of a length-prefixed payload.
fn next_avcc(data: &[u8], pos: usize, length_size: usize) -> Result<(usize, usize), CodecError> {
    let prefix = data
        .get(pos..pos + length_size)
        .ok_or(CodecError::Truncated {
            codec: "avcc",
            field: "nalu length",
            offset: pos,
        })?;
    let len = prefix
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let start = pos + length_size;
    match start.checked_add(len) {
        Some(end) if end <= data.len() => Ok((start, end)),
        _ => Err(CodecError::Invalid {
            codec: "avcc",
            field: "nalu length",
            value: len as u64,
            offset: pos,
        }),
    }
}

/// Converts a length-prefixed (AVCC/HVCC) payload to Annex B, appending `00 00 00 01` + NAL unit
/// for each NAL unit to `out`. Empty NAL units are dropped.
pub fn avcc_to_annexb(
    payload: &[u8],
    length_size: u8,
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    let ls = check_length_size(length_size)?;
    let mut pos = 0;
    while pos < payload.len() {
        let (start, end) = next_avcc(payload, pos, ls)?;
        if let Some(nal) = payload.get(start..end).filter(|n| !n.is_empty()) {
            out.reserve(4 + nal.len());
            out.put_slice(&[0, 0, 0, 1]);
            out.put_slice(nal);
        }
        pos = end;
    }
    Ok(())
}

/// Iterator over the NAL units of a length-prefixed payload; see [`split_avcc`].
#[derive(Clone, Debug)]
pub struct AvccNalus {
    data: Bytes,
    pos: usize,
    length_size: u8,
    done: bool,
}

impl Iterator for AvccNalus {
    type Item = Result<Bytes, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done && self.pos < self.data.len() {
            let step = check_length_size(self.length_size)
                .and_then(|ls| next_avcc(&self.data, self.pos, ls));
            match step {
                Ok((start, end)) => {
                    self.pos = end;
                    if end > start {
                        return Some(Ok(self.data.slice(start..end)));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Splits a length-prefixed (AVCC/HVCC) payload into zero-copy NAL unit slices. Empty NAL units
/// are skipped; after the first error the iterator ends.
pub fn split_avcc(payload: &Bytes, length_size: u8) -> AvccNalus {
    AvccNalus {
        data: payload.clone(),
        pos: 0,
        length_size,
        done: false,
    }
}

/// Finds the next `00 00 01` at or after `from`; returns the index of its first zero.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from.checked_add(2)?;
    loop {
        let rel = data.get(i..)?.iter().position(|&b| b == 1)?;
        let one = i + rel;
        if data.get(one - 2..one) == Some(&[0, 0][..]) {
            return Some(one - 2);
        }
        i = one + 1;
    }
}

/// Iterator over the NAL units of an Annex B stream; see [`split_annexb`].
#[derive(Clone, Debug)]
pub struct AnnexbNalus {
    data: Bytes,
    /// Start of the next NAL unit (just past a start code), or `None` when done.
    next: Option<usize>,
}

impl Iterator for AnnexbNalus {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        loop {
            let start = self.next?;
            let (mut end, following) = match find_start_code(&self.data, start) {
                Some(sc) => (sc, Some(sc + 3)),
                None => (self.data.len(), None),
            };
            self.next = following;
            // Trailing zero bytes belong to the next start code (4-byte form) or are padding.
            while end > start && self.data.get(end - 1) == Some(&0) {
                end -= 1;
            }
            if end > start {
                return Some(self.data.slice(start..end));
            }
        }
    }
}

/// Splits an Annex B stream (`00 00 01` / `00 00 00 01` start codes) into zero-copy NAL unit
/// slices. Bytes before the first start code are skipped, as are empty NAL units; trailing
/// zero bytes of each NAL unit are trimmed.
pub fn split_annexb(data: &Bytes) -> AnnexbNalus {
    AnnexbNalus {
        data: data.clone(),
        next: find_start_code(data, 0).map(|sc| sc + 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_round_trip() {
        let payload = Bytes::from_static(&[0, 0, 0, 2, 0x65, 0xAA, 0, 0, 0, 0, 0, 0, 0, 1, 0x41]);
        let nals: Vec<_> = split_avcc(&payload, 4).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            nals,
            vec![
                Bytes::from_static(&[0x65, 0xAA]),
                Bytes::from_static(&[0x41])
            ]
        );
        let mut out = BytesMut::new();
        avcc_to_annexb(&payload, 4, &mut out).unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 1, 0x65, 0xAA, 0, 0, 0, 1, 0x41]);
        let back: Vec<_> = split_annexb(&out.freeze()).collect();
        assert_eq!(back, nals);
    }

    #[test]
    fn avcc_errors() {
        let bad = Bytes::from_static(&[0, 0, 0, 9, 0x65]);
        let mut it = split_avcc(&bad, 4);
        assert!(matches!(it.next(), Some(Err(CodecError::Invalid { .. }))));
        assert!(it.next().is_none());
        let short = Bytes::from_static(&[0, 1, 0x65, 0]);
        let r: Vec<_> = split_avcc(&short, 2).collect();
        assert_eq!(r.len(), 2);
        assert!(matches!(r[1], Err(CodecError::Truncated { offset: 3, .. })));
        assert!(split_avcc(&short, 0).next().unwrap().is_err());
        assert!(avcc_to_annexb(&short, 5, &mut BytesMut::new()).is_err());
        assert!(avcc_to_annexb(&bad, 4, &mut BytesMut::new()).is_err());
        // Length sizes 1..=3 work too.
        let one = Bytes::from_static(&[1, 0x09, 2, 0x41, 0x42]);
        assert_eq!(split_avcc(&one, 1).count(), 2);
    }

    #[test]
    fn annexb_variants() {
        let data = Bytes::from_static(&[
            0xFF, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0, 0, 1, 0, 0, 1, 0x65, 0, 0, 3, 1, 0, 0,
        ]);
        let nals: Vec<_> = split_annexb(&data).collect();
        assert_eq!(
            nals,
            vec![
                Bytes::from_static(&[0x67, 0x42]),
                Bytes::from_static(&[0x68]),
                Bytes::from_static(&[0x65, 0, 0, 3, 1]),
            ]
        );
        assert_eq!(split_annexb(&Bytes::from_static(&[0x65, 0x88])).count(), 0);
        assert_eq!(split_annexb(&Bytes::from_static(&[0, 0, 1])).count(), 0);
        assert_eq!(split_annexb(&Bytes::new()).count(), 0);
    }
}
