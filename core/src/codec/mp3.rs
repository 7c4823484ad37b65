//! MPEG-1/2/2.5 audio frame headers (MP3 and the other layers), enough to describe a stream.

use super::CodecError;

const CODEC: &str = "mp3";

/// The fields of a 4-byte MPEG audio frame header that describe the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Layer: 1, 2 or 3.
    pub layer: u8,
    /// Sampling rate in Hz (8000 to 48000).
    pub sample_rate: u32,
    /// 1 for single channel, 2 for stereo, joint stereo and dual channel.
    pub channels: u8,
}

/// Parses the frame header at the start of `data`.
pub fn parse_header(data: &[u8]) -> Result<FrameHeader, CodecError> {
    let h: [u8; 4] =
        data.get(..4)
            .and_then(|s| s.try_into().ok())
            .ok_or(CodecError::Truncated {
                codec: CODEC,
                field: "frame header",
                offset: 0,
            })?;
    let invalid = |field, value: u8, offset| CodecError::Invalid {
        codec: CODEC,
        field,
        value: u64::from(value),
        offset,
    };
    if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return Err(invalid("syncword", h[1] >> 5, 0));
    }
    let version = (h[1] >> 3) & 0x03;
    let divisor = match version {
        3 => 1, // MPEG-1
        2 => 2, // MPEG-2
        0 => 4, // MPEG-2.5
        v => return Err(invalid("version", v, 1)),
    };
    let layer = match (h[1] >> 1) & 0x03 {
        0 => return Err(invalid("layer", 0, 1)),
        l => 4 - l,
    };
    let base = match (h[2] >> 2) & 0x03 {
        0 => 44100,
        1 => 48000,
        2 => 32000,
        i => return Err(invalid("sampling_frequency", i, 2)),
    };
    Ok(FrameHeader {
        layer,
        sample_rate: base / divisor,
        channels: if h[3] >> 6 == 3 { 1 } else { 2 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        // MPEG-1 layer III, 128 kbit/s, 44100 Hz, joint stereo.
        assert_eq!(
            parse_header(&[0xFF, 0xFB, 0x90, 0x64]).unwrap(),
            FrameHeader {
                layer: 3,
                sample_rate: 44100,
                channels: 2
            }
        );
        // MPEG-2.5 layer III, 8000 Hz, mono.
        assert_eq!(
            parse_header(&[0xFF, 0xE3, 0x18, 0xC4]).unwrap(),
            FrameHeader {
                layer: 3,
                sample_rate: 8000,
                channels: 1
            }
        );
        assert!(parse_header(&[0xFF, 0xFB, 0x90]).is_err());
        assert!(parse_header(&[0xFF, 0x0B, 0x90, 0x64]).is_err());
        assert!(parse_header(&[0xFF, 0xEB, 0x90, 0x64]).is_err()); // reserved version
        assert!(parse_header(&[0xFF, 0xF9, 0x90, 0x64]).is_err()); // reserved layer
        assert!(parse_header(&[0xFF, 0xFB, 0x9C, 0x64]).is_err()); // reserved rate
    }
}
