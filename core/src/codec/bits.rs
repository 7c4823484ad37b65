//! Bit-level reading of codec headers (SPS, AudioSpecificConfig) and RBSP unescaping.
//!
//! Every read is bounds-checked and returns [`CodecError`] instead of panicking, so parsers built
//! on [`BitReader`] are safe on arbitrary input.

use super::CodecError;

/// Reads big-endian bit fields, most significant bit first, from a byte slice.
///
/// Each read names the field it is reading so that errors tell which field ran out or overflowed.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
    codec: &'static str,
}

impl<'a> BitReader<'a> {
    /// A reader over `data`; `codec` names the layer in errors (`"h264"`, `"aac"`, ...).
    pub fn new(data: &'a [u8], codec: &'static str) -> Self {
        BitReader {
            data,
            pos: 0,
            codec,
        }
    }

    /// Bits consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bits left to read.
    pub fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    fn truncated(&self, field: &'static str) -> CodecError {
        CodecError::Truncated {
            codec: self.codec,
            field,
            offset: self.pos / 8,
        }
    }

    /// Reads one bit as a flag.
    pub fn read_bit(&mut self, field: &'static str) -> Result<bool, CodecError> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| self.truncated(field))?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads `n` bits (at most 32) as an unsigned number.
    pub fn read_bits(&mut self, n: u32, field: &'static str) -> Result<u32, CodecError> {
        if n > 32 {
            return Err(CodecError::Invalid {
                codec: self.codec,
                field,
                value: u64::from(n),
                offset: self.pos / 8,
            });
        }
        if (n as usize) > self.remaining() {
            return Err(self.truncated(field));
        }
        let mut value: u64 = 0;
        let mut left = n as usize;
        while left > 0 {
            // In bounds: `remaining()` covered all `n` bits above.
            let byte = self.data.get(self.pos / 8).copied().unwrap_or(0);
            let bit_in_byte = self.pos % 8;
            let avail = 8 - bit_in_byte;
            let take = avail.min(left);
            let chunk = (u64::from(byte) >> (avail - take)) & ((1u64 << take) - 1);
            value = (value << take) | chunk;
            self.pos += take;
            left -= take;
        }
        // At most 32 bits were accumulated.
        Ok(value as u32)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize, field: &'static str) -> Result<(), CodecError> {
        if n > self.remaining() {
            return Err(self.truncated(field));
        }
        self.pos += n;
        Ok(())
    }

    /// Reads an unsigned exp-Golomb code (`ue(v)`); codes longer than 32 bits are an error.
    pub fn read_ue(&mut self, field: &'static str) -> Result<u32, CodecError> {
        let start = self.pos;
        let mut zeros = 0u32;
        while !self.read_bit(field)? {
            zeros += 1;
            if zeros > 31 {
                return Err(CodecError::ExpGolombTooLong {
                    codec: self.codec,
                    field,
                    offset: start / 8,
                });
            }
        }
        let suffix = self.read_bits(zeros, field)?;
        // zeros <= 31: (2^zeros - 1) + suffix <= 2^32 - 2 fits in u32.
        Ok(((1u64 << zeros) - 1 + u64::from(suffix)) as u32)
    }

    /// Reads a signed exp-Golomb code (`se(v)`).
    pub fn read_se(&mut self, field: &'static str) -> Result<i32, CodecError> {
        let k = i64::from(self.read_ue(field)?);
        // k <= 2^32 - 2, so both results fit in i32.
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }

    /// Reads `ue(v)` and fails unless it is at most `max`.
    pub fn read_ue_max(&mut self, max: u32, field: &'static str) -> Result<u32, CodecError> {
        let offset = self.pos / 8;
        let v = self.read_ue(field)?;
        if v > max {
            return Err(CodecError::Invalid {
                codec: self.codec,
                field,
                value: u64::from(v),
                offset,
            });
        }
        Ok(v)
    }
}

/// Removes emulation-prevention bytes: every `00 00 03` becomes `00 00`, giving the RBSP of a NAL unit.
pub fn unescape_rbsp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0usize;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_across_bytes() {
        let data = [0b1010_1100, 0b0101_0011, 0xFF, 0x00, 0x12];
        let mut r = BitReader::new(&data, "test");
        assert!(r.read_bit("a").unwrap());
        assert_eq!(r.read_bits(3, "b").unwrap(), 0b010);
        assert_eq!(r.read_bits(8, "c").unwrap(), 0b1100_0101);
        assert_eq!(r.read_bits(0, "d").unwrap(), 0);
        assert_eq!(r.read_bits(28, "e").unwrap(), 0x3FF0012);
        assert_eq!(r.remaining(), 0);
        assert!(matches!(
            r.read_bit("f"),
            Err(CodecError::Truncated { field: "f", .. })
        ));
        assert!(r.read_bits(33, "g").is_err());
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> 0, 1, 2, 3, 4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.read_ue("x").unwrap(), 0);
        assert_eq!(r.read_ue("x").unwrap(), 1);
        assert_eq!(r.read_ue("x").unwrap(), 2);
        let mut s = BitReader::new(&data[..], "test");
        s.skip(4, "x").unwrap();
        assert_eq!(s.read_se("x").unwrap(), -1);
        assert_eq!(s.read_se("x").unwrap(), 2);
        assert_eq!(s.read_se("x").unwrap(), -2);
    }

    #[test]
    fn exp_golomb_limits() {
        // 31 zeros then 1 then 31 ones: largest accepted value.
        let mut data = vec![0u8; 3];
        data.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFE]);
        let mut r = BitReader::new(&data, "test"); // 24 + 7 = 31 zeros before the marker bit
        assert_eq!(r.read_ue("x").unwrap(), u32::MAX - 1);
        let zeros = [0u8; 8];
        let mut r = BitReader::new(&zeros, "test");
        assert!(matches!(
            r.read_ue("x"),
            Err(CodecError::ExpGolombTooLong { .. })
        ));
        let mut r = BitReader::new(&[0x00, 0x01], "test");
        assert!(matches!(r.read_ue("x"), Err(CodecError::Truncated { .. })));
    }

    #[test]
    fn unescape() {
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 0]
        );
        assert_eq!(unescape_rbsp(&[0, 3, 0, 0, 0, 3]), vec![0, 3, 0, 0, 0]);
        assert_eq!(unescape_rbsp(&[]), Vec::<u8>::new());
    }
}
