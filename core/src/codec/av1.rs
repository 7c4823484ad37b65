//! AV1: the sequence header OBU (AV1 specification section 5.5) inside an
//! `AV1CodecConfigurationRecord` (`av1C`, what Enhanced RTMP's SequenceStart and MP4 carry),
//! read for what a stream's description shows: profile and maximum picture size; and the OBU
//! framing of the low-overhead bitstream (section 5.3) that the MPEG-TS and RTP payloads
//! re-frame.

use super::bits::BitReader;
use super::CodecError;

const CODEC: &str = "av1";

/// What a sequence header says of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceHeader {
    /// `seq_profile`: 0 Main, 1 High, 2 Professional.
    pub profile: u8,
    /// `max_frame_width_minus_1 + 1`.
    pub width: u32,
    /// `max_frame_height_minus_1 + 1`.
    pub height: u32,
    /// `seq_level_idx[0]` and `seq_tier[0]`: the first operating point's level and tier.
    pub level_idx_0: u8,
    /// See `level_idx_0`.
    pub tier_0: bool,
    /// The colour config fields an `av1C` record repeats (AV1 section 5.5.2).
    pub high_bitdepth: bool,
    /// `twelve_bit`.
    pub twelve_bit: bool,
    /// `mono_chrome`.
    pub monochrome: bool,
    /// `subsampling_x`.
    pub subsampling_x: bool,
    /// `subsampling_y`.
    pub subsampling_y: bool,
    /// `chroma_sample_position`.
    pub chroma_sample_position: u8,
}

impl SequenceHeader {
    /// The `AV1CodecConfigurationRecord` for this sequence header, whose OBU (`obu`, whole,
    /// with its size field) it carries as its configOBUs; no initial presentation delay.
    pub fn config_record(&self, obu: &[u8]) -> Vec<u8> {
        let bit = |b: bool, shift: u8| u8::from(b) << shift;
        let mut record = vec![
            0x81,
            (self.profile << 5) | (self.level_idx_0 & 0x1F),
            bit(self.tier_0, 7)
                | bit(self.high_bitdepth, 6)
                | bit(self.twelve_bit, 5)
                | bit(self.monochrome, 4)
                | bit(self.subsampling_x, 3)
                | bit(self.subsampling_y, 2)
                | (self.chroma_sample_position & 3),
            0,
        ];
        record.extend_from_slice(obu);
        record
    }
}

fn invalid(field: &'static str, value: u64, offset: usize) -> CodecError {
    CodecError::Invalid {
        codec: CODEC,
        field,
        value,
        offset,
    }
}

/// `obu_type` values (AV1 specification section 6.2.2) that the muxers treat apart.
pub mod obu_type {
    /// Sequence header: what a decoder needs before a key frame.
    pub const SEQUENCE_HEADER: u8 = 1;
    /// Temporal delimiter: starts a temporal unit, no payload.
    pub const TEMPORAL_DELIMITER: u8 = 2;
    /// Frame header: starts with `show_existing_frame` and `frame_type`.
    pub const FRAME_HEADER: u8 = 3;
    /// Frame: a frame header and its tile group.
    pub const FRAME: u8 = 6;
    /// Tile list (large scale tile decoding only): neither MPEG-TS nor RTP carries it.
    pub const TILE_LIST: u8 = 8;
}

/// One OBU of a low-overhead bitstream (AV1 specification section 5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obu<'a> {
    /// `obu_type`.
    pub obu_type: u8,
    /// The OBU header as written (one byte, two with the extension header); its
    /// `obu_has_size_field` bit is as the input had it.
    pub header: &'a [u8],
    /// The payload, without the `obu_size` field.
    pub payload: &'a [u8],
    /// The whole OBU as it was in the input (header, size field if any, payload).
    pub raw: &'a [u8],
}

/// `obu_has_size_field` in the first byte of an OBU header.
pub const OBU_HAS_SIZE_FIELD: u8 = 0x02;

/// Reads a `leb128()` value (AV1 specification section 4.10.5): the value and the bytes it
/// took, `None` when the input ends inside it or it is longer than 8 bytes.
pub fn read_leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in data.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Appends `value` as `leb128()` in the fewest bytes.
pub fn write_leb128(out: &mut impl bytes::BufMut, mut value: u64) {
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

/// The number of bytes `value` takes as `leb128()`.
pub fn leb128_len(value: u64) -> usize {
    (64 - value.max(1).leading_zeros() as usize).div_ceil(7)
}

/// Splits a low-overhead bitstream (a temporal unit, or the configOBUs of an `av1C`) into
/// its OBUs. An OBU without `obu_size` runs to the end of the input. Stops at the first
/// malformed OBU with an error.
pub fn split_obus(data: &[u8]) -> Obus<'_> {
    Obus { data, pos: 0 }
}

/// Iterator over the OBUs of a low-overhead bitstream; see [`split_obus`].
#[derive(Debug)]
pub struct Obus<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Obus<'a> {
    type Item = Result<Obu<'a>, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.pos;
        let rest = self.data.get(start..).filter(|r| !r.is_empty())?;
        let result = parse_obu(rest, start);
        // After an error the iteration ends.
        self.pos = match &result {
            Ok(obu) => start + obu.raw.len(),
            Err(_) => self.data.len(),
        };
        Some(result)
    }
}

fn parse_obu(rest: &[u8], offset: usize) -> Result<Obu<'_>, CodecError> {
    let first = rest.first().copied().unwrap_or_default();
    if first & 0x80 != 0 {
        return Err(invalid("obu_forbidden_bit", 1, offset));
    }
    let header_len = if first & 0x04 != 0 { 2 } else { 1 };
    let header = rest.get(..header_len).ok_or(CodecError::Truncated {
        codec: CODEC,
        field: "OBU extension header",
        offset: offset + 1,
    })?;
    let (payload_start, payload_len) = if first & OBU_HAS_SIZE_FIELD != 0 {
        let (size, n) = read_leb128(rest.get(header_len..).unwrap_or_default()).ok_or(
            CodecError::Truncated {
                codec: CODEC,
                field: "obu_size",
                offset: offset + header_len,
            },
        )?;
        let size =
            usize::try_from(size).map_err(|_| invalid("obu_size", size, offset + header_len))?;
        (header_len + n, size)
    } else {
        (header_len, rest.len() - header_len)
    };
    let end = payload_start
        .checked_add(payload_len)
        .filter(|&e| e <= rest.len())
        .ok_or(CodecError::Truncated {
            codec: CODEC,
            field: "OBU payload",
            offset: offset + payload_start,
        })?;
    Ok(Obu {
        obu_type: (first >> 3) & 0x0F,
        header,
        payload: rest.get(payload_start..end).unwrap_or_default(),
        raw: rest.get(..end).unwrap_or_default(),
    })
}

/// The configOBUs of an `av1C` record (what follows its 4 fixed bytes), after checking its
/// marker and version.
pub fn config_obus(record: &[u8]) -> Result<&[u8], CodecError> {
    let first = *record.first().ok_or(CodecError::Truncated {
        codec: CODEC,
        field: "av1C marker",
        offset: 0,
    })?;
    if first != 0x81 {
        return Err(invalid("av1C marker and version", u64::from(first), 0));
    }
    record.get(4..).ok_or(CodecError::Truncated {
        codec: CODEC,
        field: "av1C fixed fields",
        offset: record.len(),
    })
}

/// The sequence header OBU (whole, as written) among the configOBUs of an `av1C` record.
pub fn config_sequence_header(record: &[u8]) -> Result<Obu<'_>, CodecError> {
    for obu in split_obus(config_obus(record)?) {
        let obu = obu?;
        if obu.obu_type == obu_type::SEQUENCE_HEADER {
            return Ok(obu);
        }
    }
    Err(CodecError::Truncated {
        codec: CODEC,
        field: "sequence header OBU",
        offset: record.len(),
    })
}

/// Finds the sequence header OBU among the configOBUs of an `av1C` record and parses it.
pub fn parse_config_record(record: &[u8]) -> Result<SequenceHeader, CodecError> {
    parse_sequence_header(config_sequence_header(record)?.payload)
}

/// Parses a sequence header OBU's payload up to the maximum frame size.
pub fn parse_sequence_header(data: &[u8]) -> Result<SequenceHeader, CodecError> {
    let mut r = BitReader::new(data, CODEC);
    let profile = r.read_bits(3, "seq_profile")? as u8;
    r.skip(1, "still_picture")?;
    let reduced = r.read_bit("reduced_still_picture_header")?;
    let mut level_tier: Option<(u8, bool)> = None;
    if reduced {
        level_tier = Some((r.read_bits(5, "seq_level_idx")? as u8, false));
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
            let level = r.read_bits(5, "seq_level_idx")? as u8;
            let tier = level > 7 && r.read_bit("seq_tier")?;
            level_tier.get_or_insert((level, tier));
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
    if !reduced && r.read_bit("frame_id_numbers_present_flag")? {
        r.skip(7, "frame id lengths")?;
    }
    r.skip(
        3,
        "use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter",
    )?;
    if !reduced {
        r.skip(4, "enable_interintra_compound .. enable_dual_filter")?;
        let order_hint = r.read_bit("enable_order_hint")?;
        if order_hint {
            r.skip(2, "enable_jnt_comp, enable_ref_frame_mvs")?;
        }
        let force_screen_content_tools = r.read_bit("seq_choose_screen_content_tools")?
            || r.read_bit("seq_force_screen_content_tools")?;
        if force_screen_content_tools && !r.read_bit("seq_choose_integer_mv")? {
            r.skip(1, "seq_force_integer_mv")?;
        }
        if order_hint {
            r.skip(3, "order_hint_bits_minus_1")?;
        }
    }
    r.skip(3, "enable_superres, enable_cdef, enable_restoration")?;
    // color_config()
    let high_bitdepth = r.read_bit("high_bitdepth")?;
    let twelve_bit = profile == 2 && high_bitdepth && r.read_bit("twelve_bit")?;
    let monochrome = profile != 1 && r.read_bit("mono_chrome")?;
    let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
    if r.read_bit("color_description_present_flag")? {
        primaries = r.read_bits(8, "color_primaries")?;
        transfer = r.read_bits(8, "transfer_characteristics")?;
        matrix = r.read_bits(8, "matrix_coefficients")?;
    }
    let (mut subsampling_x, mut subsampling_y, mut chroma_sample_position) = (true, true, 0);
    if !monochrome {
        if (primaries, transfer, matrix) == (1, 13, 0) {
            // sRGB: 4:4:4.
            (subsampling_x, subsampling_y) = (false, false);
        } else {
            r.skip(1, "color_range")?;
            (subsampling_x, subsampling_y) = match profile {
                0 => (true, true),
                1 => (false, false),
                _ if twelve_bit => {
                    let x = r.read_bit("subsampling_x")?;
                    (x, x && r.read_bit("subsampling_y")?)
                }
                _ => (true, false),
            };
            if subsampling_x && subsampling_y {
                chroma_sample_position = r.read_bits(2, "chroma_sample_position")? as u8;
            }
        }
    }
    let (level_idx_0, tier_0) = level_tier.unwrap_or_default();
    Ok(SequenceHeader {
        profile,
        width,
        height,
        level_idx_0,
        tier_0,
        high_bitdepth,
        twelve_bit,
        monochrome,
        subsampling_x,
        subsampling_y,
        chroma_sample_position,
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
        let seq = parse_config_record(&record).unwrap();
        assert_eq!(
            (seq.profile, seq.width, seq.height, seq.level_idx_0),
            (1, 320, 176, 0)
        );
        // 4:4:4: no subsampling.
        assert!(!seq.subsampling_x && !seq.subsampling_y && !seq.high_bitdepth);
        // The record rebuilt from its sequence header is the record.
        assert_eq!(seq.config_record(&record[4..]), record);
        for n in 0..record.len() {
            assert!(parse_config_record(&record[..n]).is_err(), "cut at {n}");
        }
    }

    /// An SVT-AV1 stream (`testsrc=size=320x240`, yuv420p): Main profile, 4:2:0, level 5 (3.1);
    /// its av1C rebuilt from the sequence header is the one its MP4 carries.
    #[test]
    fn svt_av1_record_round_trips_through_the_sequence_header() {
        let record = [
            0x81, 0x00, 0x0c, 0x00, 0x0a, 0x0b, 0x02, 0x00, 0x00, 0x05, 0x21, 0xe7, 0xfd, 0xe0,
            0x17, 0xc0, 0x02,
        ];
        let seq = parse_config_record(&record).unwrap();
        assert_eq!((seq.profile, seq.width, seq.height), (0, 320, 240));
        assert!(seq.subsampling_x && seq.subsampling_y && !seq.monochrome);
        assert_eq!(seq.config_record(&record[4..]), record);
    }

    #[test]
    fn leb128_round_trips_and_refuses_overlong_values() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX)] {
            let mut b = Vec::new();
            write_leb128(&mut b, v);
            assert_eq!(b.len(), leb128_len(v));
            assert_eq!(read_leb128(&b), Some((v, b.len())));
            assert_eq!(read_leb128(&b[..b.len() - 1]), None);
        }
        assert_eq!(read_leb128(&[0x80; 9]), None);
    }
}
