//! H.265 / HEVC: the decoder configuration record (ISO/IEC 14496-15 `HEVCDecoderConfigurationRecord`)
//! and sequence parameter set fields.

use bytes::{BufMut, Bytes, BytesMut};

use super::bits::{unescape_rbsp, BitReader};
use super::h264::{put_nal16, ByteCursor};
use super::CodecError;

/// NAL unit type of a video parameter set.
pub const NAL_VPS: u8 = 32;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 33;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 34;

const CODEC: &str = "h265";

/// The NAL unit type (bits 1-6 of the first header byte), or `None` for an empty NAL unit.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 1) & 0x3F)
}

/// True for IRAP pictures (BLA, IDR, CRA: NAL types 16-23), the random access points.
pub fn is_irap(nal_type: u8) -> bool {
    (16..=23).contains(&nal_type)
}

/// An array of NAL units of one type in a configuration record, other than VPS/SPS/PPS
/// (for example SEI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcNalArray {
    /// `array_completeness`: all NAL units of this type are in the record.
    pub complete: bool,
    /// NAL unit type of the array.
    pub nal_type: u8,
    /// The NAL units, each with its 2-byte header.
    pub nalus: Vec<Bytes>,
}

/// An `HEVCDecoderConfigurationRecord`.
///
/// VPS, SPS and PPS arrays are gathered into their own fields (written back as complete
/// arrays); arrays of other NAL types are kept in `other`, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcConfig {
    /// `general_profile_space` (0-3).
    pub general_profile_space: u8,
    /// `general_tier_flag`: false = Main tier, true = High tier.
    pub general_tier_flag: bool,
    /// `general_profile_idc` (1 = Main, 2 = Main 10, ...).
    pub general_profile_idc: u8,
    /// `general_profile_compatibility_flags`.
    pub general_profile_compatibility_flags: u32,
    /// `general_constraint_indicator_flags` (48 bits).
    pub general_constraint_indicator_flags: u64,
    /// `general_level_idc` (level times 30).
    pub general_level_idc: u8,
    /// `min_spatial_segmentation_idc` (12 bits).
    pub min_spatial_segmentation_idc: u16,
    /// `parallelismType` (2 bits).
    pub parallelism_type: u8,
    /// `chromaFormat` (`chroma_format_idc`, 2 bits).
    pub chroma_format_idc: u8,
    /// `bitDepthLumaMinus8` (3 bits).
    pub bit_depth_luma_minus8: u8,
    /// `bitDepthChromaMinus8` (3 bits).
    pub bit_depth_chroma_minus8: u8,
    /// `avgFrameRate` in frames per 256 seconds (0 = unspecified).
    pub avg_frame_rate: u16,
    /// `constantFrameRate` (2 bits).
    pub constant_frame_rate: u8,
    /// `numTemporalLayers` (3 bits).
    pub num_temporal_layers: u8,
    /// `temporalIdNested`.
    pub temporal_id_nested: bool,
    /// Bytes in each NAL unit length prefix of coded frames (1, 2 or 4).
    pub nalu_length_size: u8,
    /// Video parameter sets (whole NAL units).
    pub vps: Vec<Bytes>,
    /// Sequence parameter sets (whole NAL units).
    pub sps: Vec<Bytes>,
    /// Picture parameter sets (whole NAL units).
    pub pps: Vec<Bytes>,
    /// Arrays of other NAL unit types (SEI, ...).
    pub other: Vec<HevcNalArray>,
}

impl HevcConfig {
    /// Builds a record from parameter sets (from SDP `sprop-vps/sps/pps` or an Annex B stream):
    /// profile, tier, level, chroma format, bit depths and temporal layering come from the first
    /// SPS; NAL units will be 4-byte length-prefixed; frame rate and parallelism are unspecified.
    pub fn from_parameter_sets(
        vps: Vec<Bytes>,
        sps: Vec<Bytes>,
        pps: Vec<Bytes>,
    ) -> Result<Self, CodecError> {
        let first = sps.first().ok_or(CodecError::Truncated {
            codec: CODEC,
            field: "sequence parameter set",
            offset: 0,
        })?;
        let info = parse_sps(first)?;
        Ok(HevcConfig {
            general_profile_space: info.profile_space,
            general_tier_flag: info.tier_flag,
            general_profile_idc: info.profile_idc,
            general_profile_compatibility_flags: info.profile_compatibility_flags,
            general_constraint_indicator_flags: info.constraint_indicator_flags,
            general_level_idc: info.level_idc,
            min_spatial_segmentation_idc: 0,
            parallelism_type: 0,
            chroma_format_idc: info.chroma_format_idc,
            bit_depth_luma_minus8: info.bit_depth_luma_minus8,
            bit_depth_chroma_minus8: info.bit_depth_chroma_minus8,
            avg_frame_rate: 0,
            constant_frame_rate: 0,
            num_temporal_layers: info.max_sub_layers,
            temporal_id_nested: info.temporal_id_nesting,
            nalu_length_size: 4,
            vps,
            sps,
            pps,
            other: Vec::new(),
        })
    }

    /// Parses a configuration record (the payload of an HEVC sequence header).
    pub fn parse(record: &[u8]) -> Result<Self, CodecError> {
        let mut c = ByteCursor::new(record, "hevc config");
        let version = c.u8("configurationVersion")?;
        if version != 1 {
            return Err(c.invalid("configurationVersion", u64::from(version)));
        }
        let ptl = c.u8("general_profile_idc")?;
        let general_profile_compatibility_flags =
            c.uint(4, "general_profile_compatibility_flags")? as u32;
        let general_constraint_indicator_flags = c.uint(6, "general_constraint_indicator_flags")?;
        let general_level_idc = c.u8("general_level_idc")?;
        let min_spatial_segmentation_idc =
            (c.uint(2, "min_spatial_segmentation_idc")? & 0x0FFF) as u16;
        let parallelism_type = c.u8("parallelismType")? & 0x03;
        let chroma_format_idc = c.u8("chromaFormat")? & 0x03;
        let bit_depth_luma_minus8 = c.u8("bitDepthLumaMinus8")? & 0x07;
        let bit_depth_chroma_minus8 = c.u8("bitDepthChromaMinus8")? & 0x07;
        let avg_frame_rate = c.uint(2, "avgFrameRate")? as u16;
        let flags = c.u8("lengthSizeMinusOne")?;
        let num_arrays = c.u8("numOfArrays")?;
        let mut config = HevcConfig {
            general_profile_space: ptl >> 6,
            general_tier_flag: ptl & 0x20 != 0,
            general_profile_idc: ptl & 0x1F,
            general_profile_compatibility_flags,
            general_constraint_indicator_flags,
            general_level_idc,
            min_spatial_segmentation_idc,
            parallelism_type,
            chroma_format_idc,
            bit_depth_luma_minus8,
            bit_depth_chroma_minus8,
            avg_frame_rate,
            constant_frame_rate: flags >> 6,
            num_temporal_layers: (flags >> 3) & 0x07,
            temporal_id_nested: flags & 0x04 != 0,
            nalu_length_size: (flags & 0x03) + 1,
            vps: Vec::new(),
            sps: Vec::new(),
            pps: Vec::new(),
            other: Vec::new(),
        };
        for _ in 0..num_arrays {
            let head = c.u8("NAL_unit_type")?;
            let count = c.uint(2, "numNalus")?;
            // Each NAL unit needs at least its 2-byte length: a cheap bound before allocating.
            if count.saturating_mul(2) > c.remaining() as u64 {
                return Err(c.invalid("numNalus", count));
            }
            let nalus = (0..count)
                .map(|_| c.nal16("nalUnit"))
                .collect::<Result<Vec<_>, _>>()?;
            let nal_type = head & 0x3F;
            match nal_type {
                NAL_VPS => config.vps.extend(nalus),
                NAL_SPS => config.sps.extend(nalus),
                NAL_PPS => config.pps.extend(nalus),
                _ => config.other.push(HevcNalArray {
                    complete: head & 0x80 != 0,
                    nal_type,
                    nalus,
                }),
            }
        }
        Ok(config)
    }

    /// Serializes the record: VPS, SPS and PPS arrays (when not empty) then the other arrays.
    /// At most 255 arrays and 65535 NAL units per array are written.
    pub fn to_record(&self) -> Bytes {
        let mut arrays: Vec<(u8, u8, &[Bytes])> = Vec::new();
        for (t, v) in [
            (NAL_VPS, &self.vps),
            (NAL_SPS, &self.sps),
            (NAL_PPS, &self.pps),
        ] {
            if !v.is_empty() {
                arrays.push((0x80 | t, t, v));
            }
        }
        for a in &self.other {
            let head = if a.complete { 0x80 } else { 0 } | (a.nal_type & 0x3F);
            arrays.push((head, a.nal_type, &a.nalus));
        }
        arrays.truncate(255);
        let size: usize = arrays
            .iter()
            .flat_map(|(_, _, n)| n.iter())
            .map(|n| n.len() + 2)
            .sum();
        let mut out = BytesMut::with_capacity(23 + arrays.len() * 3 + size);
        out.put_u8(1);
        out.put_u8(
            (self.general_profile_space & 0x03) << 6
                | if self.general_tier_flag { 0x20 } else { 0 }
                | (self.general_profile_idc & 0x1F),
        );
        out.put_u32(self.general_profile_compatibility_flags);
        out.put_slice(
            self.general_constraint_indicator_flags
                .to_be_bytes()
                .get(2..)
                .unwrap_or_default(),
        );
        out.put_u8(self.general_level_idc);
        out.put_u16(0xF000 | (self.min_spatial_segmentation_idc & 0x0FFF));
        out.put_u8(0xFC | (self.parallelism_type & 0x03));
        out.put_u8(0xFC | (self.chroma_format_idc & 0x03));
        out.put_u8(0xF8 | (self.bit_depth_luma_minus8 & 0x07));
        out.put_u8(0xF8 | (self.bit_depth_chroma_minus8 & 0x07));
        out.put_u16(self.avg_frame_rate);
        out.put_u8(
            (self.constant_frame_rate & 0x03) << 6
                | (self.num_temporal_layers & 0x07) << 3
                | if self.temporal_id_nested { 0x04 } else { 0 }
                | (self.nalu_length_size.clamp(1, 4) - 1),
        );
        out.put_u8(arrays.len() as u8);
        for (head, _, nalus) in arrays {
            let nalus = nalus.get(..nalus.len().min(0xFFFF)).unwrap_or_default();
            out.put_u8(head);
            out.put_u16(nalus.len() as u16);
            nalus.iter().for_each(|n| put_nal16(&mut out, n));
        }
        out.freeze()
    }
}

/// What rill needs from a sequence parameter set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    /// `general_profile_idc`.
    pub profile_idc: u8,
    /// `general_level_idc` (level times 30).
    pub level_idc: u8,
    /// `general_profile_space`.
    pub profile_space: u8,
    /// `general_tier_flag`.
    pub tier_flag: bool,
    /// `general_profile_compatibility_flags`.
    pub profile_compatibility_flags: u32,
    /// The 48 bits of general constraint flags (progressive_source_flag onwards).
    pub constraint_indicator_flags: u64,
    /// `sps_max_sub_layers_minus1` + 1.
    pub max_sub_layers: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nesting: bool,
    /// `chroma_format_idc` (0 = monochrome, 1 = 4:2:0, 2 = 4:2:2, 3 = 4:4:4).
    pub chroma_format_idc: u8,
    /// `bit_depth_luma_minus8` (0-8).
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8` (0-8).
    pub bit_depth_chroma_minus8: u8,
    /// Displayed width in pixels (after the conformance window).
    pub width: u32,
    /// Displayed height in pixels (after the conformance window).
    pub height: u32,
}

/// Parses a sequence parameter set NAL unit (with its 2-byte header) far enough to get the
/// profile, level, chroma format and the picture size after the conformance window. Handles
/// `profile_tier_level` with sub-layers.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, CodecError> {
    let header = nal.first().copied().ok_or(CodecError::Truncated {
        codec: CODEC,
        field: "nal header",
        offset: 0,
    })?;
    if nal.len() < 2 {
        return Err(CodecError::Truncated {
            codec: CODEC,
            field: "nal header",
            offset: 1,
        });
    }
    let t = (header >> 1) & 0x3F;
    if t != NAL_SPS {
        return Err(CodecError::Invalid {
            codec: CODEC,
            field: "nal_unit_type",
            value: u64::from(t),
            offset: 0,
        });
    }
    let rbsp = unescape_rbsp(nal.get(2..).unwrap_or_default());
    let mut r = BitReader::new(&rbsp, CODEC);
    r.skip(4, "sps_video_parameter_set_id")?;
    let max_sub_layers_minus1 = r.read_bits(3, "sps_max_sub_layers_minus1")?;
    let temporal_id_nesting = r.read_bit("sps_temporal_id_nesting_flag")?;
    // profile_tier_level(1, sps_max_sub_layers_minus1)
    let profile_space = r.read_bits(2, "general_profile_space")? as u8;
    let tier_flag = r.read_bit("general_tier_flag")?;
    let profile_idc = r.read_bits(5, "general_profile_idc")? as u8;
    let profile_compatibility_flags = r.read_bits(32, "general_profile_compatibility_flags")?;
    let constraint_high = r.read_bits(16, "general_constraint_flags")?;
    let constraint_low = r.read_bits(32, "general_constraint_flags")?;
    let constraint_indicator_flags = u64::from(constraint_high) << 32 | u64::from(constraint_low);
    let level_idc = r.read_bits(8, "general_level_idc")? as u8;
    let mut present = [(false, false); 7];
    for p in present.iter_mut().take(max_sub_layers_minus1 as usize) {
        *p = (
            r.read_bit("sub_layer_profile_present_flag")?,
            r.read_bit("sub_layer_level_present_flag")?,
        );
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(
            2 * (8 - max_sub_layers_minus1 as usize),
            "reserved_zero_2bits",
        )?;
    }
    for &(profile, level) in present.iter().take(max_sub_layers_minus1 as usize) {
        if profile {
            r.skip(88, "sub_layer_profile")?;
        }
        if level {
            r.skip(8, "sub_layer_level_idc")?;
        }
    }
    r.read_ue_max(15, "sps_seq_parameter_set_id")?;
    let chroma_format_idc = r.read_ue_max(3, "chroma_format_idc")?;
    let separate_colour_plane =
        chroma_format_idc == 3 && r.read_bit("separate_colour_plane_flag")?;
    let pic_width = r.read_ue("pic_width_in_luma_samples")?;
    let pic_height = r.read_ue("pic_height_in_luma_samples")?;
    let (mut left, mut right, mut top, mut bottom) = (0u32, 0u32, 0u32, 0u32);
    if r.read_bit("conformance_window_flag")? {
        left = r.read_ue("conf_win_left_offset")?;
        right = r.read_ue("conf_win_right_offset")?;
        top = r.read_ue("conf_win_top_offset")?;
        bottom = r.read_ue("conf_win_bottom_offset")?;
    }
    let bit_depth_luma_minus8 = r.read_ue_max(8, "bit_depth_luma_minus8")?;
    let bit_depth_chroma_minus8 = r.read_ue_max(8, "bit_depth_chroma_minus8")?;
    let (sub_w, sub_h): (u64, u64) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let cut_w = (u64::from(left) + u64::from(right)) * sub_w;
    let cut_h = (u64::from(top) + u64::from(bottom)) * sub_h;
    let invalid = |field, value: u32| CodecError::Invalid {
        codec: CODEC,
        field,
        value: u64::from(value),
        offset: r.position() / 8,
    };
    let width = u64::from(pic_width)
        .checked_sub(cut_w)
        .filter(|&w| w > 0)
        .ok_or_else(|| invalid("pic_width_in_luma_samples", pic_width))? as u32;
    let height = u64::from(pic_height)
        .checked_sub(cut_h)
        .filter(|&h| h > 0)
        .ok_or_else(|| invalid("pic_height_in_luma_samples", pic_height))? as u32;
    // The maxima checked above make these casts lossless.
    Ok(SpsInfo {
        profile_idc,
        level_idc,
        profile_space,
        tier_flag,
        profile_compatibility_flags,
        constraint_indicator_flags,
        max_sub_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nesting,
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

    /// The `hvcC` record of /work/shared/media/hevc_aac_10s.mp4 (x265, Main, 640x360, with SEI).
    const RECORD: &[u8] = include_bytes!("../../tests/fixtures/hevc_config.bin");

    #[test]
    fn parses_real_record() {
        let c = HevcConfig::parse(RECORD).unwrap();
        assert_eq!(c.general_profile_idc, 1);
        assert!(!c.general_tier_flag);
        assert_eq!(c.general_level_idc, 63);
        assert_eq!(c.nalu_length_size, 4);
        assert_eq!(c.chroma_format_idc, 1);
        assert_eq!((c.vps.len(), c.sps.len(), c.pps.len()), (1, 1, 1));
        assert_eq!(nal_type(&c.vps[0]), Some(NAL_VPS));
        assert_eq!(nal_type(&c.pps[0]), Some(NAL_PPS));
        assert_eq!(c.other.len(), 1);
        assert_eq!(c.other[0].nal_type, 39); // prefix SEI (x265 settings)
        assert_eq!(&c.to_record()[..], RECORD);
        let sps = parse_sps(&c.sps[0]).unwrap();
        assert_eq!(
            (
                sps.profile_idc,
                sps.level_idc,
                sps.chroma_format_idc,
                sps.width,
                sps.height
            ),
            (1, 63, 1, 640, 360)
        );
        // Rebuilt from the parameter sets: the same record without the SEI array (x265 writes
        // the same header fields into hvcC as into the SPS).
        let built =
            HevcConfig::from_parameter_sets(c.vps.clone(), c.sps.clone(), c.pps.clone()).unwrap();
        let mut expect = c.clone();
        expect.other.clear();
        assert_eq!(built, expect);
        assert!(HevcConfig::from_parameter_sets(vec![], vec![], vec![]).is_err());
    }

    /// SPS from libx265 (via ffmpeg) with what ffprobe reports for them.
    #[test]
    fn x265_sps_vectors() {
        // (SPS, profile, level, chroma format, width, height)
        type Case = (&'static [u8], u8, u8, u8, u32, u32);
        let cases: &[Case] = &[
            // Main 1920x1080 (conformance window crops 1088 to 1080).
            (
                &[
                    0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03,
                    0x00, 0x00, 0x03, 0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56,
                    0x69, 0x24, 0xca, 0xf0, 0x16, 0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00,
                    0x00, 0x0c, 0x84,
                ],
                1,
                120,
                1,
                1920,
                1080,
            ),
            // Rext 4:2:2, 642x362.
            (
                &[
                    0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9d, 0x08, 0x00, 0x00,
                    0x03, 0x00, 0x00, 0x3f, 0xb0, 0x05, 0x12, 0x01, 0x71, 0xc9, 0x3e, 0x59, 0x59,
                    0xa4, 0x93, 0x2b, 0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00,
                    0x03, 0x00, 0x32, 0x10,
                ],
                4,
                63,
                2,
                642,
                362,
            ),
            // Rext 4:4:4, 638x358.
            (
                &[
                    0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00,
                    0x03, 0x00, 0x00, 0x3f, 0x90, 0x00, 0xa0, 0x40, 0x2d, 0x3b, 0xbc, 0xb2, 0xb3,
                    0x49, 0x26, 0x57, 0x80, 0xb4, 0x04, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00,
                    0x03, 0x00, 0x64, 0x20,
                ],
                4,
                63,
                3,
                638,
                358,
            ),
            // Main with two temporal sub-layers, 352x288.
            (
                &[
                    0x42, 0x01, 0x02, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03,
                    0x00, 0x00, 0x03, 0x00, 0x3c, 0x00, 0x00, 0xa0, 0x0b, 0x08, 0x04, 0x85, 0x96,
                    0x56, 0x62, 0xb3, 0x49, 0x26, 0x57, 0x80, 0xb4, 0x04, 0x00, 0x00, 0x03, 0x00,
                    0x04, 0x00, 0x00, 0x03, 0x00, 0x64, 0x20,
                ],
                1,
                60,
                1,
                352,
                288,
            ),
            // Main 10, 1280x720.
            (
                &[
                    0x42, 0x01, 0x01, 0x02, 0x20, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03,
                    0x00, 0x00, 0x03, 0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d, 0x13, 0x65, 0x95,
                    0x9a, 0x49, 0x32, 0xbc, 0x05, 0xa0, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00,
                    0x00, 0x03, 0x03, 0x21,
                ],
                2,
                93,
                1,
                1280,
                720,
            ),
        ];
        for &(nal, profile, level, chroma, w, h) in cases {
            let i = parse_sps(nal).unwrap();
            assert_eq!(
                (
                    i.profile_idc,
                    i.level_idc,
                    i.chroma_format_idc,
                    i.width,
                    i.height
                ),
                (profile, level, chroma, w, h)
            );
        }
        assert_eq!(parse_sps(cases[3].0).unwrap().max_sub_layers, 2);
        assert_eq!(parse_sps(cases[4].0).unwrap().bit_depth_luma_minus8, 2);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_sps(&[]).is_err());
        assert!(parse_sps(&[0x42]).is_err());
        assert!(parse_sps(&[0x40, 0x01, 0x0c]).is_err());
        assert!(matches!(
            parse_sps(&[0x42, 0x01, 0x01, 0x01, 0x60]),
            Err(CodecError::Truncated { .. })
        ));
        assert!(HevcConfig::parse(&[]).is_err());
        assert!(HevcConfig::parse(&RECORD[..22]).is_err());
        assert!(HevcConfig::parse(&RECORD[..RECORD.len() - 1]).is_err());
        let mut bad = RECORD.to_vec();
        bad[0] = 0;
        assert!(HevcConfig::parse(&bad).is_err());
        // A huge declared numNalus with nothing behind it.
        let mut huge = RECORD[..22].to_vec();
        huge.extend_from_slice(&[1, 0xA0, 0xFF, 0xFF]);
        assert!(matches!(
            HevcConfig::parse(&huge),
            Err(CodecError::Invalid {
                field: "numNalus",
                ..
            })
        ));
    }
}
