//! AV1: the sequence header OBU (AV1 specification section 5.5) inside an
//! `AV1CodecConfigurationRecord` (`av1C`, what Enhanced RTMP's SequenceStart and MP4 carry),
//! read for what a stream's description shows: profile and maximum picture size.

use super::bits::BitReader;
use super::CodecError;

const CODEC: &str = "av1";
/// `obu_type` of a sequence header.
const OBU_SEQUENCE_HEADER: u32 = 1;

/// What a sequence header says of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceHeader {
    /// `seq_profile`: 0 Main, 1 High, 2 Professional.
    pub profile: u8,
    /// `max_frame_width_minus_1 + 1`.
    pub width: u32,
    /// `max_frame_height_minus_1 + 1`.
    pub height: u32,
}

fn invalid(field: &'static str, value: u64, offset: usize) -> CodecError {
    CodecError::Invalid {
        codec: CODEC,
        field,
        value,
        offset,
    }
}

/// Finds the sequence header OBU among the configOBUs of an `av1C` record and parses it.
pub fn parse_config_record(record: &[u8]) -> Result<SequenceHeader, CodecError> {
    let first = *record.first().ok_or(CodecError::Truncated {
        codec: CODEC,
        field: "av1C marker",
        offset: 0,
    })?;
    if first != 0x81 {
        return Err(invalid("av1C marker and version", u64::from(first), 0));
    }
    let mut pos = 4;
    while pos < record.len() {
        let mut r = BitReader::new(record.get(pos..).unwrap_or_default(), CODEC);
        r.skip(1, "obu_forbidden_bit")?;
        let obu_type = r.read_bits(4, "obu_type")?;
        let extension = r.read_bit("obu_extension_flag")?;
        let has_size = r.read_bit("obu_has_size_field")?;
        r.skip(1, "obu_reserved_1bit")?;
        if extension {
            r.skip(8, "obu_extension_header")?;
        }
        let size = if has_size {
            let mut size = 0u64;
            for i in 0..8 {
                let b = r.read_bits(8, "obu_size")?;
                size |= u64::from(b & 0x7F) << (7 * i);
                if b & 0x80 == 0 {
                    break;
                }
            }
            size as usize
        } else {
            record.len() - pos - r.position() / 8
        };
        let start = pos + r.position() / 8;
        let end = start.checked_add(size).filter(|&e| e <= record.len());
        let payload = end
            .and_then(|e| record.get(start..e))
            .ok_or(CodecError::Truncated {
                codec: CODEC,
                field: "OBU payload",
                offset: start,
            })?;
        if obu_type == OBU_SEQUENCE_HEADER {
            return parse_sequence_header(payload);
        }
        pos = start + size;
    }
    Err(CodecError::Truncated {
        codec: CODEC,
        field: "sequence header OBU",
        offset: record.len(),
    })
}

/// Parses a sequence header OBU's payload up to the maximum frame size.
pub fn parse_sequence_header(data: &[u8]) -> Result<SequenceHeader, CodecError> {
    let mut r = BitReader::new(data, CODEC);
    let profile = r.read_bits(3, "seq_profile")? as u8;
    r.skip(1, "still_picture")?;
    if r.read_bit("reduced_still_picture_header")? {
        r.skip(5, "seq_level_idx")?;
    } else {
        let mut decoder_model_info = false;
        let mut buffer_delay_bits = 0;
        if r.read_bit("timing_info_present_flag")? {
            r.skip(64, "num_units_in_display_tick and time_scale")?;
            if r.read_bit("equal_picture_interval")? {
                // num_ticks_per_picture_minus_1: uvlc().
                let mut zeros = 0;
                while !r.read_bit("num_ticks_per_picture_minus_1")? {
                    zeros += 1;
                    if zeros >= 32 {
                        return Err(invalid(
                            "num_ticks_per_picture_minus_1",
                            32,
                            r.position() / 8,
                        ));
                    }
                }
                r.skip(zeros, "num_ticks_per_picture_minus_1")?;
            }
            decoder_model_info = r.read_bit("decoder_model_info_present_flag")?;
            if decoder_model_info {
                buffer_delay_bits = r.read_bits(5, "buffer_delay_length_minus_1")? as usize + 1;
                r.skip(32 + 5 + 5, "decoder_model_info")?;
            }
        }
        let initial_display_delay = r.read_bit("initial_display_delay_present_flag")?;
        let operating_points = r.read_bits(5, "operating_points_cnt_minus_1")? + 1;
        for _ in 0..operating_points {
            r.skip(12, "operating_point_idc")?;
            if r.read_bits(5, "seq_level_idx")? > 7 {
                r.skip(1, "seq_tier")?;
            }
            if decoder_model_info && r.read_bit("decoder_model_present_for_this_op")? {
                r.skip(2 * buffer_delay_bits + 1, "operating_parameters_info")?;
            }
            if initial_display_delay && r.read_bit("initial_display_delay_present_for_this_op")? {
                r.skip(4, "initial_display_delay_minus_1")?;
            }
        }
    }
    let width_bits = r.read_bits(4, "frame_width_bits_minus_1")? + 1;
    let height_bits = r.read_bits(4, "frame_height_bits_minus_1")? + 1;
    let width = r.read_bits(width_bits, "max_frame_width_minus_1")? + 1;
    let height = r.read_bits(height_bits, "max_frame_height_minus_1")? + 1;
    Ok(SequenceHeader {
        profile,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libaom_record_gives_profile_and_size() {
        // The av1C of `ffmpeg -f lavfi -i testsrc=size=320x176 -c:v libaom-av1` in MP4.
        let record = [
            0x81, 0x20, 0x00, 0x00, 0x0a, 0x0d, 0x20, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xbc, 0xda,
            0xf9, 0x20, 0x21, 0xa0, 0x04,
        ];
        assert_eq!(
            parse_config_record(&record),
            Ok(SequenceHeader {
                profile: 1,
                width: 320,
                height: 176
            })
        );
        for n in 0..record.len() {
            assert!(parse_config_record(&record[..n]).is_err(), "cut at {n}");
        }
    }
}
