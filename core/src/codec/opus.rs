//! Opus: the identification header (`OpusHead`, RFC 7845 section 5.1) that containers carrying
//! Opus (Enhanced RTMP's SequenceStart, MP4's `dOps`) start from.

use bytes::{BufMut, Bytes, BytesMut};

/// Samples at 48 kHz a decoder drops at the start: libopus's usual encoder delay, what
/// senders that do not say otherwise use (RTP carries no pre-skip).
pub const DEFAULT_PRE_SKIP: u16 = 312;

/// The `OpusHead` of a stream of `channels` (1 or 2: channel mapping family 0), 48 kHz input,
/// no output gain.
pub fn id_header(channels: u8) -> Bytes {
    let mut out = BytesMut::with_capacity(19);
    out.put_slice(b"OpusHead");
    out.put_u8(1); // version
    out.put_u8(channels.clamp(1, 2));
    out.put_u16_le(DEFAULT_PRE_SKIP);
    out.put_u32_le(48_000);
    out.put_i16_le(0); // output gain
    out.put_u8(0); // channel mapping family
    out.freeze()
}

/// The channel count an `OpusHead` declares, when `data` is one (magic, version 1, at least
/// the 19 bytes of its fixed part).
pub fn id_header_channels(data: &[u8]) -> Option<u8> {
    if data.len() < 19 || !data.starts_with(b"OpusHead") || data[8] & 0xF0 != 0 {
        return None;
    }
    Some(data[9]).filter(|&c| c > 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn channels_of_an_id_header() {
        assert_eq!(super::id_header_channels(&super::id_header(1)), Some(1));
        assert_eq!(super::id_header_channels(&super::id_header(2)), Some(2));
        assert_eq!(super::id_header_channels(b"OpusHead\x01\x02"), None);
        assert_eq!(
            super::id_header_channels(b"OpusTags\x01\x02\x38\x01\x80\xbb\0\0\0\0\0"),
            None
        );
    }

    #[test]
    fn stereo_id_header() {
        let h = super::id_header(2);
        assert_eq!(
            &h[..],
            b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
        );
    }
}
