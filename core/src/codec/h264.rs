//! H.264 / AVC: the decoder configuration record (ISO/IEC 14496-15 `AVCDecoderConfigurationRecord`,
//! what FLV and MP4 carry as the sequence header) and sequence parameter set fields.

use bytes::{BufMut, Bytes, BytesMut};

use super::bits::{unescape_rbsp, BitReader};
use super::CodecError;

/// NAL unit type of a coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

const CODEC: &str = "h264";

/// The NAL unit type (low 5 bits of the first byte), or `None` for an empty NAL unit.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1F)
}

/// Profiles whose SPS and configuration record carry chroma format and bit depth fields.
fn is_high_profile(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// An `AVCDecoderConfigurationRecord`: profile, level, NAL length size and parameter sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication` (`profile_idc` of the SPS).
    pub profile: u8,
    /// `profile_compatibility` (the SPS constraint flags byte).
    pub compatibility: u8,
    /// `AVCLevelIndication` (`level_idc`).
    pub level: u8,
    /// Bytes in each NAL unit length prefix of coded frames (1, 2 or 4).
    pub nalu_length_size: u8,
    /// Sequence parameter sets, each a whole NAL unit with its header byte.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, each a whole NAL unit with its header byte.
    pub pps: Vec<Bytes>,
}

/// Cursor over a byte slice for record parsing, with field-named errors.
pub(crate) struct ByteCursor<'a> {
    data: &'a [u8],
    pos: usize,
    codec: &'static str,
}

impl<'a> ByteCursor<'a> {
    pub(crate) fn new(data: &'a [u8], codec: &'static str) -> Self {
        ByteCursor {
            data,
            pos: 0,
            codec,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.data.get(self.pos..end))
            .ok_or(CodecError::Truncated {
                codec: self.codec,
                field,
                offset: self.pos,
            })?;
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        Ok(self.bytes(1, field)?.first().copied().unwrap_or(0))
    }

    /// Reads `n` (at most 8) big-endian bytes as a number.
    pub(crate) fn uint(&mut self, n: usize, field: &'static str) -> Result<u64, CodecError> {
        Ok(self
            .bytes(n, field)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// Reads a 16-bit length then that many bytes (one parameter set NAL unit).
    pub(crate) fn nal16(&mut self, field: &'static str) -> Result<Bytes, CodecError> {
        let len = self.uint(2, field)? as usize;
        Ok(Bytes::copy_from_slice(self.bytes(len, field)?))
    }

    pub(crate) fn invalid(&self, field: &'static str, value: u64) -> CodecError {
        CodecError::Invalid {
            codec: self.codec,
            field,
            value,
            offset: self.pos.saturating_sub(1),
        }
    }
}

/// Appends a 16-bit length and the NAL unit; NAL units over 65535 bytes are cut (they cannot be
/// represented in a configuration record; parsed records never hold one).
pub(crate) fn put_nal16(out: &mut BytesMut, nal: &[u8]) {
    let n = nal.len().min(usize::from(u16::MAX));
    out.put_u16(n as u16);
    out.put_slice(nal.get(..n).unwrap_or_default());
}

impl AvcConfig {
    /// Builds a record from parameter sets (from SDP `sprop-parameter-sets` or an Annex B
    /// stream): profile, constraint flags and level come from the first SPS; NAL units will be
    /// 4-byte length-prefixed.
    pub fn from_parameter_sets(sps: Vec<Bytes>, pps: Vec<Bytes>) -> Result<Self, CodecError> {
        let first = sps.first().ok_or(CodecError::Truncated {
            codec: CODEC,
            field: "sequence parameter set",
            offset: 0,
        })?;
        let info = parse_sps(first)?;
        Ok(AvcConfig {
            profile: info.profile_idc,
            compatibility: info.constraint_flags,
            level: info.level_idc,
            nalu_length_size: 4,
            sps,
            pps,
        })
    }

    /// Parses a configuration record (the payload of an AVC sequence header).
    ///
    /// The High profile extension after the PPS (chroma format, bit depths, SPS extensions) is
    /// not kept: [`to_record`](Self::to_record) derives it from the SPS.
    pub fn parse(record: &[u8]) -> Result<Self, CodecError> {
        let mut c = ByteCursor::new(record, "avc config");
        let version = c.u8("configurationVersion")?;
        if version != 1 {
            return Err(c.invalid("configurationVersion", u64::from(version)));
        }
        let profile = c.u8("AVCProfileIndication")?;
        let compatibility = c.u8("profile_compatibility")?;
        let level = c.u8("AVCLevelIndication")?;
        let nalu_length_size = (c.u8("lengthSizeMinusOne")? & 0x03) + 1;
        let num_sps = c.u8("numOfSequenceParameterSets")? & 0x1F;
        let sps = (0..num_sps)
            .map(|_| c.nal16("sequenceParameterSetNALUnit"))
            .collect::<Result<Vec<_>, _>>()?;
        let num_pps = c.u8("numOfPictureParameterSets")?;
        let pps = (0..num_pps)
            .map(|_| c.nal16("pictureParameterSetNALUnit"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AvcConfig {
            profile,
            compatibility,
            level,
            nalu_length_size,
            sps,
            pps,
        })
    }

    /// Serializes the record. At most 31 SPS and 255 PPS are written (the record's count fields
    /// cannot say more). For High profiles the extension is written as ffmpeg does, with the
    /// chroma format and bit depths of the first SPS and no SPS extensions (left out when that
    /// SPS does not parse).
    pub fn to_record(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(
            16 + self
                .sps
                .iter()
                .chain(&self.pps)
                .map(|n| n.len() + 2)
                .sum::<usize>(),
        );
        out.put_u8(1);
        out.put_u8(self.profile);
        out.put_u8(self.compatibility);
        out.put_u8(self.level);
        out.put_u8(0xFC | (self.nalu_length_size.clamp(1, 4) - 1));
        let sps = self.sps.get(..self.sps.len().min(31)).unwrap_or_default();
        out.put_u8(0xE0 | sps.len() as u8);
        sps.iter().for_each(|n| put_nal16(&mut out, n));
        let pps = self.pps.get(..self.pps.len().min(255)).unwrap_or_default();
        out.put_u8(pps.len() as u8);
        pps.iter().for_each(|n| put_nal16(&mut out, n));
        let sps_info = sps.first().map(|n| parse_sps(n));
        if let (true, Some(Ok(info))) = (is_high_profile(self.profile), sps_info) {
            out.put_u8(0xFC | info.chroma_format_idc);
            out.put_u8(0xF8 | info.bit_depth_luma_minus8);
            out.put_u8(0xF8 | info.bit_depth_chroma_minus8);
            out.put_u8(0);
        }
        out.freeze()
    }
}

/// What rill needs from a sequence parameter set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    /// `profile_idc`.
    pub profile_idc: u8,
    /// The constraint flags byte (`constraint_set0_flag` ... `reserved_zero_2bits`).
    pub constraint_flags: u8,
    /// `level_idc` (level times ten).
    pub level_idc: u8,
    /// `chroma_format_idc` (0 = monochrome, 1 = 4:2:0, 2 = 4:2:2, 3 = 4:4:4).
    pub chroma_format_idc: u8,
    /// `bit_depth_luma_minus8` (0-6).
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8` (0-6).
    pub bit_depth_chroma_minus8: u8,
    /// Displayed width in pixels (after cropping).
    pub width: u32,
    /// Displayed height in pixels (after cropping).
    pub height: u32,
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), CodecError> {
    let mut last: i32 = 8;
    let mut next: i32 = 8;
    for _ in 0..size {
        if next != 0 {
            let delta = r.read_se("delta_scale")?;
            if !(-128..=127).contains(&delta) {
                return Err(CodecError::Invalid {
                    codec: CODEC,
                    field: "delta_scale",
                    value: u64::from(delta.unsigned_abs()),
                    offset: r.position() / 8,
                });
            }
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

fn overflow(field: &'static str, value: u32, r: &BitReader<'_>) -> CodecError {
    CodecError::Invalid {
        codec: CODEC,
        field,
        value: u64::from(value),
        offset: r.position() / 8,
    }
}

/// Parses a sequence parameter set NAL unit (with its header byte) far enough to get the
/// profile, level and the cropped picture size. Handles the High profile fields (chroma format,
/// scaling lists), interlaced coding (`frame_mbs_only_flag`) and frame cropping.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, CodecError> {
    let header = nal.first().copied().ok_or(CodecError::Truncated {
        codec: CODEC,
        field: "nal header",
        offset: 0,
    })?;
    if header & 0x1F != NAL_SPS {
        return Err(CodecError::Invalid {
            codec: CODEC,
            field: "nal_unit_type",
            value: u64::from(header & 0x1F),
            offset: 0,
        });
    }
    let rbsp = unescape_rbsp(nal.get(1..).unwrap_or_default());
    let mut r = BitReader::new(&rbsp, CODEC);
    let profile_idc = r.read_bits(8, "profile_idc")? as u8;
    let constraint_flags = r.read_bits(8, "constraint_flags")? as u8;
    let level_idc = r.read_bits(8, "level_idc")? as u8;
    r.read_ue_max(31, "seq_parameter_set_id")?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    let (mut bit_depth_luma_minus8, mut bit_depth_chroma_minus8) = (0, 0);
    if is_high_profile(profile_idc) {
        chroma_format_idc = r.read_ue_max(3, "chroma_format_idc")?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.read_bit("separate_colour_plane_flag")?;
        }
        bit_depth_luma_minus8 = r.read_ue_max(6, "bit_depth_luma_minus8")?;
        bit_depth_chroma_minus8 = r.read_ue_max(6, "bit_depth_chroma_minus8")?;
        r.skip(1, "qpprime_y_zero_transform_bypass_flag")?;
        if r.read_bit("seq_scaling_matrix_present_flag")? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.read_bit("seq_scaling_list_present_flag")? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.read_ue_max(12, "log2_max_frame_num_minus4")?;
    match r.read_ue_max(2, "pic_order_cnt_type")? {
        0 => {
            r.read_ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")?;
        }
        1 => {
            r.skip(1, "delta_pic_order_always_zero_flag")?;
            r.read_se("offset_for_non_ref_pic")?;
            r.read_se("offset_for_top_to_bottom_field")?;
            let n = r.read_ue_max(255, "num_ref_frames_in_pic_order_cnt_cycle")?;
            for _ in 0..n {
                r.read_se("offset_for_ref_frame")?;
            }
        }
        _ => {}
    }
    r.read_ue("max_num_ref_frames")?;
    r.skip(1, "gaps_in_frame_num_value_allowed_flag")?;
    let width_mbs = r.read_ue("pic_width_in_mbs_minus1")?;
    let height_map_units = r.read_ue("pic_height_in_map_units_minus1")?;
    let frame_mbs_only = r.read_bit("frame_mbs_only_flag")?;
    if !frame_mbs_only {
        r.skip(1, "mb_adaptive_frame_field_flag")?;
    }
    r.skip(1, "direct_8x8_inference_flag")?;
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0, 0, 0, 0);
    if r.read_bit("frame_cropping_flag")? {
        crop_l = r.read_ue("frame_crop_left_offset")?;
        crop_r = r.read_ue("frame_crop_right_offset")?;
        crop_t = r.read_ue("frame_crop_top_offset")?;
        crop_b = r.read_ue("frame_crop_bottom_offset")?;
    }

    let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_unit_x, crop_unit_y): (u64, u64) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let full_w = (u64::from(width_mbs) + 1) * 16;
    let full_h = field_factor * (u64::from(height_map_units) + 1) * 16;
    let cut_w = (u64::from(crop_l) + u64::from(crop_r)) * crop_unit_x;
    let cut_h = (u64::from(crop_t) + u64::from(crop_b)) * crop_unit_y;
    let width = full_w
        .checked_sub(cut_w)
        .filter(|&w| w > 0)
        .and_then(|w| u32::try_from(w).ok())
        .ok_or_else(|| overflow("pic_width_in_mbs_minus1", width_mbs, &r))?;
    let height = full_h
        .checked_sub(cut_h)
        .filter(|&h| h > 0)
        .and_then(|h| u32::try_from(h).ok())
        .ok_or_else(|| overflow("pic_height_in_map_units_minus1", height_map_units, &r))?;
    // The maxima checked above make these casts lossless.
    Ok(SpsInfo {
        profile_idc,
        constraint_flags,
        level_idc,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma_minus8: bit_depth_luma_minus8 as u8,
        bit_depth_chroma_minus8: bit_depth_chroma_minus8 as u8,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence header of /work/shared/media/h264_aac_10s.flv (High, level 3.0, 640x360).
    pub(crate) const RECORD_640X360: &[u8] = &[
        0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xb4, 0x05,
        0x01, 0x7f, 0xcb, 0x80, 0x88, 0x00, 0x00, 0x03, 0x00, 0x08, 0x00, 0x00, 0x03, 0x01, 0x90,
        0x78, 0xb1, 0x75, 0x01, 0x00, 0x04, 0x68, 0xef, 0x3c, 0xb0, 0xfd, 0xf8, 0xf8, 0x00,
    ];

    #[test]
    fn parses_real_record_and_sps() {
        let c = AvcConfig::parse(RECORD_640X360).unwrap();
        assert_eq!((c.profile, c.compatibility, c.level), (100, 0, 30));
        assert_eq!(c.nalu_length_size, 4);
        assert_eq!(c.sps.len(), 1);
        assert_eq!(c.pps, vec![Bytes::from_static(&[0x68, 0xef, 0x3c, 0xb0])]);
        assert_eq!(&c.to_record()[..], RECORD_640X360);
        assert_eq!(nal_type(&c.sps[0]), Some(NAL_SPS));
        let sps = parse_sps(&c.sps[0]).unwrap();
        assert_eq!(
            sps,
            SpsInfo {
                profile_idc: 100,
                constraint_flags: 0,
                level_idc: 30,
                chroma_format_idc: 1,
                bit_depth_luma_minus8: 0,
                bit_depth_chroma_minus8: 0,
                width: 640,
                height: 360
            }
        );
        let built = AvcConfig::from_parameter_sets(c.sps.clone(), c.pps.clone()).unwrap();
        assert_eq!(built, c);
        assert!(AvcConfig::from_parameter_sets(vec![], vec![]).is_err());
        // Without the extension (as some encoders write it), the record still parses.
        let short = &RECORD_640X360[..RECORD_640X360.len() - 4];
        assert_eq!(AvcConfig::parse(short).unwrap(), c);
    }

    /// SPS from libx264 (via ffmpeg) with the size and profile ffprobe reports for them.
    #[test]
    fn x264_sps_vectors() {
        let cases: &[(&[u8], u8, u8, u32, u32)] = &[
            // Constrained Baseline 1920x1080 (1088 coded rows, cropped).
            (
                &[
                    0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00,
                    0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x60, 0xc9, 0x20,
                ],
                66,
                40,
                1920,
                1080,
            ),
            // High 4:2:2, 642x362 (cropping in 2x1 chroma units).
            (
                &[
                    0x67, 0x7a, 0x00, 0x1e, 0xbc, 0xd9, 0x40, 0xa4, 0x2f, 0xe2, 0x27, 0xc0, 0x44,
                    0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x58, 0xb6,
                    0x58,
                ],
                122,
                30,
                642,
                362,
            ),
            // High 4:4:4 Predictive, 1918x1078 (cropping in 1x1 units).
            (
                &[
                    0x67, 0xf4, 0x00, 0x28, 0x91, 0x9b, 0x28, 0x0f, 0x00, 0x44, 0xf7, 0x17, 0x80,
                    0x88, 0x00, 0x00, 0x03, 0x00, 0x08, 0x00, 0x00, 0x03, 0x01, 0x90, 0x78, 0xc1,
                    0x8c, 0xb0,
                ],
                244,
                40,
                1918,
                1078,
            ),
            // High, interlaced (frame_mbs_only_flag = 0) 720x576.
            (
                &[
                    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xb4, 0x24, 0xd8, 0x08, 0x80, 0x00,
                    0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x19, 0x0f, 0x8a, 0x14, 0xcb,
                ],
                100,
                30,
                720,
                576,
            ),
            // High 350x286, odd crop in 4:2:0.
            (
                &[
                    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x60, 0x97, 0xaa, 0xc0, 0x44, 0x00,
                    0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x50, 0xa6, 0x58,
                ],
                100,
                13,
                350,
                286,
            ),
        ];
        for &(nal, profile, level, w, h) in cases {
            let info = parse_sps(nal).unwrap();
            assert_eq!(
                (info.profile_idc, info.level_idc, info.width, info.height),
                (profile, level, w, h)
            );
        }
        // Chroma formats of the 4:2:2 and 4:4:4 streams.
        assert_eq!(parse_sps(cases[1].0).unwrap().chroma_format_idc, 2);
        assert_eq!(parse_sps(cases[2].0).unwrap().chroma_format_idc, 3);
    }

    /// Builds a NAL unit from a string of '0'/'1' (other characters ignored), padded with a
    /// stop bit.
    fn nal_from_bits(header: u8, bits: &str) -> Vec<u8> {
        let mut bits: String = bits.chars().filter(|c| *c == '0' || *c == '1').collect();
        bits.push('1');
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let mut nal = vec![header];
        for chunk in bits.as_bytes().chunks(8) {
            nal.push(u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 2).unwrap());
        }
        nal
    }

    fn ue(v: u32) -> String {
        let x = u64::from(v) + 1;
        let len = 64 - x.leading_zeros();
        format!("{}{:b}", "0".repeat(len as usize - 1), x)
    }

    fn se(v: i32) -> String {
        ue(if v > 0 {
            (2 * v - 1) as u32
        } else {
            (-2 * v) as u32
        })
    }

    #[test]
    fn high_profile_with_scaling_lists() {
        let mut b = String::new();
        b += "01100100 00000000 00101000"; // profile 100, flags, level 40
        b += &ue(0); // sps id
        b += &ue(1); // chroma_format_idc 4:2:0
        b += &ue(2); // bit_depth_luma_minus8
        b += &ue(2); // bit_depth_chroma_minus8
        b += "0"; // qpprime
        b += "1"; // seq_scaling_matrix_present_flag
                  // List 0 (4x4): explicit values, 16 deltas.
        b += "1";
        for i in 0..16 {
            b += &se(if i % 2 == 0 { 3 } else { -2 });
        }
        // List 1: "use default" (first delta makes nextScale 0).
        b += "1";
        b += &se(-8);
        b += "0000"; // lists 2-5 absent
                     // List 6 (8x8): 64 explicit deltas including the extremes.
        b += "1";
        for i in 0..64 {
            b += &se(if i % 2 == 0 { 127 } else { -127 });
        }
        b += "0"; // list 7 absent
        b += &ue(0); // log2_max_frame_num_minus4
        b += &ue(1); // poc type 1
        b += "0";
        b += &se(-3);
        b += &se(5);
        b += &ue(2);
        b += &se(1);
        b += &se(-1);
        b += &ue(4); // max_num_ref_frames
        b += "0";
        b += &ue(119); // 1920
        b += &ue(67); // 1088
        b += "1"; // frame_mbs_only
        b += "1"; // direct_8x8
        b += "1"; // cropping
        b += &ue(1);
        b += &ue(2);
        b += &ue(0);
        b += &ue(4);
        let info = parse_sps(&nal_from_bits(0x67, &b)).unwrap();
        assert_eq!((info.width, info.height), (1920 - 6, 1088 - 8));
        assert_eq!((info.profile_idc, info.level_idc), (100, 40));
        assert_eq!(
            (info.bit_depth_luma_minus8, info.bit_depth_chroma_minus8),
            (2, 2)
        );

        // A delta_scale out of range is an error.
        let mut bad = String::new();
        bad += "01100100 00000000 00101000";
        bad += &ue(0);
        bad += &ue(1);
        bad += &ue(0);
        bad += &ue(0);
        bad += "0 1 1";
        bad += &se(200);
        assert!(matches!(
            parse_sps(&nal_from_bits(0x67, &bad)),
            Err(CodecError::Invalid {
                field: "delta_scale",
                ..
            })
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_sps(&[]).is_err());
        assert!(parse_sps(&[0x68, 0x42]).is_err());
        assert!(matches!(
            parse_sps(&[0x67, 0x42, 0, 0x1e]),
            Err(CodecError::Truncated { .. })
        ));
        // 40 zero bits where seq_parameter_set_id should be.
        assert!(matches!(
            parse_sps(&[0x67, 0x42, 0, 0x1e, 0, 0, 0, 0, 0, 0]),
            Err(CodecError::ExpGolombTooLong { .. })
        ));
        assert!(AvcConfig::parse(&[]).is_err());
        assert!(AvcConfig::parse(&[2, 0x64, 0, 0x1e, 0xff, 0xe1]).is_err());
        assert!(AvcConfig::parse(&[1, 0x64, 0, 0x1e, 0xff, 0xe1, 0x00, 0x19, 0x67]).is_err());
    }

    #[test]
    fn huge_dimensions_are_errors() {
        let mut b = String::new();
        b += "01000010 00000000 00011110"; // baseline, level 30
        b += &ue(0);
        b += &ue(0);
        b += &ue(0);
        b += &ue(0);
        b += &ue(0);
        b += "0";
        b += &ue(u32::MAX - 1); // width in macroblocks: too many pixels for u32
        b += &ue(0);
        b += "1 1 0";
        assert!(matches!(
            parse_sps(&nal_from_bits(0x67, &b)),
            Err(CodecError::Invalid {
                field: "pic_width_in_mbs_minus1",
                ..
            })
        ));
        // Cropping more than the picture.
        let mut c = String::new();
        c += "01000010 00000000 00011110";
        c += &ue(0);
        c += &ue(0);
        c += &ue(0);
        c += &ue(0);
        c += &ue(0);
        c += "0";
        c += &ue(0);
        c += &ue(0);
        c += "1 1 1";
        c += &ue(4);
        c += &ue(4);
        c += &ue(0);
        c += &ue(0);
        assert!(parse_sps(&nal_from_bits(0x67, &c)).is_err());
    }
}
