//! AAC: the MPEG-4 AudioSpecificConfig (what FLV carries as the AAC sequence header) and ADTS
//! headers (what MPEG-TS carries in front of each raw access unit).

use bytes::{BufMut, Bytes, BytesMut};

use super::bits::BitReader;
use super::CodecError;

const CODEC: &str = "aac";

/// Sampling frequencies by `samplingFrequencyIndex` (0-12).
pub const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Largest raw access unit an ADTS header can describe (13-bit frame length minus the header).
pub const ADTS_MAX_PAYLOAD: usize = 0x1FFF - 7;

/// One raw AAC-LC access unit (1024 samples) of silence for a mono stream, at any sampling
/// rate: a single channel element whose only long window has no scale factor bands, so no
/// spectral data follows. Field by field (bits): `id_syn_ele` SCE (3: 0),
/// `element_instance_tag` (4: 0), `global_gain` (8: 100), `ics_info`: reserved (1: 0),
/// `window_sequence` ONLY_LONG (2: 0), `window_shape` sine (1: 0), `max_sfb` (6: 0),
/// `predictor_data_present` (1: 0); `pulse_data_present`, `tns_data_present`,
/// `gain_control_data_present` (1 each: 0); `id_syn_ele` END (3: 7). 32 bits, byte aligned.
pub const SILENT_MONO_FRAME: [u8; 4] = [0x00, 0xC8, 0x00, 0x07];

/// The leading fields of an MPEG-4 AudioSpecificConfig.
///
/// Only what players and muxers need is kept; `to_bytes` writes a plain GASpecificConfig
/// (frame length 1024, no core coder, no extension), which suits AAC LC and friends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// Audio object type (2 = AAC LC, 5 = SBR, 29 = PS, ...), with the escape resolved: 1-30 or
    /// 32-95 (31 is the escape code itself, never an object type).
    pub object_type: u8,
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// `samplingFrequencyIndex`: 0-12 from [`SAMPLE_RATES`], or 15 when the rate is explicit.
    pub sampling_index: u8,
    /// `channelConfiguration`: 1-6 = that many channels, 7 = 7.1 (8 channels), 0 = defined in
    /// a program config element.
    pub channels: u8,
}

impl AudioSpecificConfig {
    /// Parses the start of an AudioSpecificConfig: object type (with the 31 escape), sampling
    /// frequency (index, or explicit 24-bit rate for index 15) and channel configuration.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        let mut r = BitReader::new(data, CODEC);
        let mut object_type = r.read_bits(5, "audioObjectType")?;
        if object_type == 31 {
            object_type = 32 + r.read_bits(6, "audioObjectTypeExt")?;
        }
        if object_type == 0 {
            return Err(CodecError::Invalid {
                codec: CODEC,
                field: "audioObjectType",
                value: 0,
                offset: 0,
            });
        }
        let offset = r.position() / 8;
        let sampling_index = r.read_bits(4, "samplingFrequencyIndex")? as u8;
        let sample_rate = match sampling_index {
            15 => r.read_bits(24, "samplingFrequency")?,
            i => SAMPLE_RATES
                .get(usize::from(i))
                .copied()
                .ok_or(CodecError::Invalid {
                    codec: CODEC,
                    field: "samplingFrequencyIndex",
                    value: u64::from(i),
                    offset,
                })?,
        };
        if sample_rate == 0 {
            return Err(CodecError::Invalid {
                codec: CODEC,
                field: "samplingFrequency",
                value: 0,
                offset,
            });
        }
        let channels = r.read_bits(4, "channelConfiguration")? as u8;
        Ok(AudioSpecificConfig {
            // At most 32 + 63 = 95.
            object_type: object_type as u8,
            sample_rate,
            sampling_index,
            channels,
        })
    }

    /// Number of output channels (channel configuration 7 is 8 channels; 0 gives 0).
    pub fn channel_count(&self) -> u8 {
        match self.channels {
            7 => 8,
            c => c,
        }
    }

    /// Serializes as an AudioSpecificConfig with an empty GASpecificConfig.
    pub fn to_bytes(&self) -> Bytes {
        let mut bits: u64 = 0;
        let mut len = 0u32;
        let mut put = |value: u64, n: u32| {
            bits = (bits << n) | (value & ((1 << n) - 1));
            len += n;
        };
        if self.object_type >= 31 {
            put(31, 5);
            put(u64::from(self.object_type.saturating_sub(32)), 6);
        } else {
            put(u64::from(self.object_type), 5);
        }
        if self.sampling_index == 15 || usize::from(self.sampling_index) >= SAMPLE_RATES.len() {
            put(15, 4);
            put(u64::from(self.sample_rate), 24);
        } else {
            put(u64::from(self.sampling_index), 4);
        }
        put(u64::from(self.channels), 4);
        put(0, 3); // frameLengthFlag, dependsOnCoreCoder, extensionFlag
        let bytes = len.div_ceil(8);
        bits <<= bytes * 8 - len;
        let mut out = BytesMut::with_capacity(bytes as usize);
        out.put_slice(
            bits.to_be_bytes()
                .get(8 - bytes as usize..)
                .unwrap_or_default(),
        );
        out.freeze()
    }

    /// The 7-byte ADTS header (no CRC) for a raw access unit of `payload_len` bytes.
    ///
    /// ADTS can only say object types 1-4 (others are written as AAC LC, which is how HE-AAC
    /// is signalled implicitly), sampling indexes 0-12 (an explicit rate uses the closest index)
    /// and channel configurations 0-7. `payload_len` must be at most [`ADTS_MAX_PAYLOAD`]; a
    /// longer length is saturated (no valid AAC frame is that long).
    pub fn adts_header(&self, payload_len: usize) -> [u8; 7] {
        let profile: u8 = match self.object_type {
            1..=4 => self.object_type - 1,
            _ => 1,
        };
        let index = if usize::from(self.sampling_index) < SAMPLE_RATES.len() {
            self.sampling_index
        } else {
            closest_index(self.sample_rate)
        };
        let frame_len = payload_len.saturating_add(7).min(0x1FFF) as u32;
        let ch = self.channels & 0x07;
        [
            0xFF,
            0xF1, // sync, MPEG-4, layer 0, no CRC
            (profile << 6) | (index << 2) | (ch >> 2),
            ((ch & 0x03) << 6) | ((frame_len >> 11) as u8 & 0x03),
            (frame_len >> 3) as u8,
            ((frame_len & 0x07) as u8) << 5 | 0x1F, // buffer fullness 0x7FF (VBR)
            0xFC,
        ]
    }
}

fn closest_index(rate: u32) -> u8 {
    SAMPLE_RATES
        .iter()
        .enumerate()
        .min_by_key(|(_, &r)| r.abs_diff(rate))
        .map_or(4, |(i, _)| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_44100_stereo() {
        // The AAC sequence header of the test FLV files.
        let asc = AudioSpecificConfig::parse(&[0x12, 0x10, 0x56, 0xe5, 0x00]).unwrap();
        assert_eq!(
            asc,
            AudioSpecificConfig {
                object_type: 2,
                sample_rate: 44100,
                sampling_index: 4,
                channels: 2
            }
        );
        assert_eq!(&asc.to_bytes()[..], &[0x12, 0x10]);
        // ADTS header of the first AU (133 bytes), as ffmpeg's ADTS muxer writes it.
        assert_eq!(
            asc.adts_header(133),
            [0xFF, 0xF1, 0x50, 0x80, 0x11, 0x9F, 0xFC]
        );
    }

    #[test]
    fn silent_mono_frame_is_an_empty_single_channel_element() {
        let mut r = BitReader::new(&SILENT_MONO_FRAME, CODEC);
        let mut field = |n: u32| r.read_bits(n, "test").unwrap();
        // SCE, tag 0, global gain 100.
        assert_eq!((field(3), field(4), field(8)), (0, 0, 100));
        // ics_info: reserved, ONLY_LONG, sine, max_sfb 0, no prediction.
        assert_eq!(
            (field(1), field(2), field(1), field(6), field(1)),
            (0, 0, 0, 0, 0)
        );
        // No pulse, TNS or gain control data; then END and nothing after it.
        assert_eq!((field(1), field(1), field(1), field(3)), (0, 0, 0, 7));
        assert!(r.read_bits(1, "test").is_err());
    }

    #[test]
    fn escapes() {
        // Object type 31 + 6 bits (42 = USAC), explicit rate 44000, mono.
        let asc = AudioSpecificConfig {
            object_type: 42,
            sample_rate: 44000,
            sampling_index: 15,
            channels: 1,
        };
        let bytes = asc.to_bytes();
        assert_eq!(AudioSpecificConfig::parse(&bytes).unwrap(), asc);
        let h = asc.adts_header(10);
        assert_eq!(h[2] >> 6, 1); // written as LC
        assert_eq!((h[2] >> 2) & 0x0F, 4); // 44100 is closest
        assert!(AudioSpecificConfig::parse(&[0xF8]).is_err());
        assert!(AudioSpecificConfig::parse(&[]).is_err());
        assert!(AudioSpecificConfig::parse(&[0x00, 0x00]).is_err()); // object type 0
        assert!(AudioSpecificConfig::parse(&[0x16, 0x80]).is_err()); // index 13
        assert!(AudioSpecificConfig::parse(&[0x17, 0x80, 0, 0, 0x10]).is_err());
        // rate 0
    }
}
