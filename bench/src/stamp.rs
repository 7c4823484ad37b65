//! Send-time stamps carried inside H.264 video, to measure publisher-to-player delay.
//!
//! A data message would be simpler, but rill-core's sessions pass only `onMetaData` on (the
//! server drops other data messages from publishers and the client drops them when playing),
//! so a stamp travels as an extra NAL unit in the frame itself, which every server forwards
//! untouched: an SEI "user data unregistered" message (payload type 5) with a fixed UUID and
//! `seq` and `unix_micros` as 16 lowercase hex digits each. The payload contains no zero byte,
//! so no emulation prevention is needed and decoders that do not know the UUID skip it.

use rill_core::codec::h264::nal_type;

/// SEI NAL unit type.
const NAL_SEI: u8 = 6;
/// Access unit delimiter: must stay first in the access unit.
const NAL_AUD: u8 = 9;
/// SEI payload type: user data unregistered.
const SEI_USER_DATA_UNREGISTERED: u8 = 5;
/// The UUID marking a rill-bench stamp (no zero bytes).
const UUID: [u8; 16] = *b"rill-bench-stamp";
/// Hex digits per number.
const HEX: usize = 16;
/// SEI payload size: UUID + seq + micros.
const PAYLOAD_LEN: usize = UUID.len() + 2 * HEX;
/// NAL unit: header, payload type, payload size, payload, rbsp stop bit.
const NAL_LEN: usize = 3 + PAYLOAD_LEN + 1;
/// NAL units examined when looking for a stamp (it is first or right after the AUD).
const MAX_NALS_SCANNED: usize = 4;

/// A decoded stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Sequence number, counting stamped frames from 1.
    pub seq: u64,
    /// Wall-clock send time, microseconds since the Unix epoch.
    pub unix_micros: u64,
}

/// Reads the NAL unit length prefix at `pos` of `data`.
fn nal_at(data: &[u8], pos: usize, length_size: u8) -> Option<(usize, usize)> {
    let ls = usize::from(length_size);
    if !(1..=4).contains(&ls) {
        return None;
    }
    let start = pos.checked_add(ls)?;
    let len = data
        .get(pos..start)?
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let end = start.checked_add(len)?;
    (end <= data.len()).then_some((start, end))
}

/// Appends `nalus` (length-prefixed H.264 NAL units with `length_size`-byte prefixes) to `out`
/// with a stamp NAL unit inserted first, or after a leading access unit delimiter. Returns
/// `false` (and appends nothing) when `nalus` does not parse.
pub fn insert_stamp(nalus: &[u8], length_size: u8, stamp: Stamp, out: &mut Vec<u8>) -> bool {
    let Some((start, end)) = nal_at(nalus, 0, length_size) else {
        return false;
    };
    let keep_first = nalus.get(start..end).and_then(nal_type) == Some(NAL_AUD);
    let split = if keep_first { end } else { 0 };
    out.reserve(nalus.len() + NAL_LEN + 4);
    out.extend_from_slice(nalus.get(..split).unwrap_or_default());
    let len = (NAL_LEN as u32).to_be_bytes();
    out.extend_from_slice(len.get(4 - usize::from(length_size)..).unwrap_or(&len));
    out.extend_from_slice(&[NAL_SEI, SEI_USER_DATA_UNREGISTERED, PAYLOAD_LEN as u8]);
    out.extend_from_slice(&UUID);
    put_hex(out, stamp.seq);
    put_hex(out, stamp.unix_micros);
    out.push(0x80);
    out.extend_from_slice(nalus.get(split..).unwrap_or_default());
    true
}

/// Appends `v` as 16 lowercase hex digits.
fn put_hex(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for i in (0..HEX).rev() {
        // The nibble is masked to 0..16, always inside DIGITS.
        out.push(DIGITS[((v >> (i * 4)) & 0xF) as usize]);
    }
}

/// Finds a stamp among the first NAL units of a length-prefixed H.264 access unit.
pub fn find_stamp(nalus: &[u8], length_size: u8) -> Option<Stamp> {
    let mut pos = 0;
    for _ in 0..MAX_NALS_SCANNED {
        let (start, end) = nal_at(nalus, pos, length_size)?;
        let nal = nalus.get(start..end)?;
        if let Some(stamp) = parse_stamp_nal(nal) {
            return Some(stamp);
        }
        pos = end;
    }
    None
}

/// Decodes one SEI NAL unit written by [`insert_stamp`].
fn parse_stamp_nal(nal: &[u8]) -> Option<Stamp> {
    let head = nal.get(..3 + UUID.len())?;
    if head.first().map(|b| b & 0x1F) != Some(NAL_SEI)
        || head.get(1..3) != Some(&[SEI_USER_DATA_UNREGISTERED, PAYLOAD_LEN as u8][..])
        || head.get(3..) != Some(&UUID[..])
    {
        return None;
    }
    let digits = nal.get(3 + UUID.len()..3 + PAYLOAD_LEN)?;
    let text = std::str::from_utf8(digits).ok()?;
    let (seq, micros) = text.split_at(HEX);
    Some(Stamp {
        seq: u64::from_str_radix(seq, 16).ok()?,
        unix_micros: u64::from_str_radix(micros, 16).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avcc(nals: &[&[u8]], ls: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nals {
            let len = (n.len() as u32).to_be_bytes();
            out.extend_from_slice(&len[4 - usize::from(ls)..]);
            out.extend_from_slice(n);
        }
        out
    }

    const STAMP: Stamp = Stamp {
        seq: 42,
        unix_micros: 1_700_000_000_123_456,
    };

    #[test]
    fn round_trip_every_length_size() {
        for ls in 1..=4u8 {
            let au = avcc(&[&[0x65, 1, 2, 3], &[0x41, 9]], ls);
            let mut out = Vec::new();
            assert!(insert_stamp(&au, ls, STAMP, &mut out));
            assert_eq!(out.len(), au.len() + usize::from(ls) + NAL_LEN);
            assert_eq!(find_stamp(&out, ls), Some(STAMP));
            // The original NAL units follow unchanged.
            assert!(out.ends_with(&au));
            assert!(!out[usize::from(ls)..usize::from(ls) + NAL_LEN].contains(&0));
        }
    }

    #[test]
    fn stays_after_access_unit_delimiter() {
        let au = avcc(&[&[0x09, 0xF0], &[0x65, 1]], 4);
        let mut out = Vec::new();
        assert!(insert_stamp(&au, 4, STAMP, &mut out));
        assert_eq!(&out[..6], &au[..6]);
        assert_eq!(out[10], NAL_SEI);
        assert_eq!(find_stamp(&out, 4), Some(STAMP));
    }

    #[test]
    fn no_stamp_in_plain_or_broken_input() {
        let au = avcc(&[&[0x65, 1, 2, 3], &[0x06, 5, 1, 0, 0x80]], 4);
        assert_eq!(find_stamp(&au, 4), None);
        assert_eq!(find_stamp(&[0, 0, 0, 99, 1], 4), None);
        assert_eq!(find_stamp(&[], 4), None);
        assert_eq!(find_stamp(&au, 0), None);
        let mut out = vec![1, 2, 3];
        assert!(!insert_stamp(&[0, 0, 0, 9], 4, STAMP, &mut out));
        assert_eq!(out, [1, 2, 3]);
        // A stamp-shaped SEI with bad digits is not a stamp.
        let mut out = Vec::new();
        insert_stamp(&au, 4, STAMP, &mut out);
        out[4 + 3 + 16] = b'z';
        assert_eq!(find_stamp(&out, 4), None);
    }
}
