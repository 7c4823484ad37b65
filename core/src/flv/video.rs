//! Video tag bodies (legacy AVC/HEVC and Enhanced RTMP) to and from neutral frames.

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_body_len, first_bytes, read_si24, si24, FlvError};
use crate::media::{Codec, Frame, FrameKind};

/// Legacy CodecID of AVC.
const CODEC_AVC: u8 = 7;
/// Legacy CodecID of HEVC (the widespread extension, not in Adobe's specification).
const CODEC_HEVC: u8 = 12;

/// VideoFrameType: key frame.
const FRAME_KEY: u8 = 1;
/// VideoFrameType: inter frame.
const FRAME_INTER: u8 = 2;
/// VideoFrameType: video info / command frame.
const FRAME_COMMAND: u8 = 5;

/// Enhanced RTMP VideoPacketType values.
const PT_SEQUENCE_START: u8 = 0;
const PT_CODED_FRAMES: u8 = 1;
const PT_SEQUENCE_END: u8 = 2;
const PT_CODED_FRAMES_X: u8 = 3;
const PT_METADATA: u8 = 4;
const PT_MPEG2TS_SEQUENCE_START: u8 = 5;

/// Bit 7 of the first byte: Enhanced RTMP extended video header.
const IS_EX_HEADER: u8 = 0x80;

/// How to write H.264 and H.265 video tags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VideoTagStyle {
    /// Legacy CodecID 7 (AVC) and 12 (HEVC): what ffmpeg, ffplay and most players read.
    #[default]
    Legacy,
    /// Enhanced RTMP with FourCC `avc1` / `hvc1`.
    Enhanced,
}

fn truncated(field: &'static str, len: usize) -> FlvError {
    FlvError::Truncated {
        tag: "video tag",
        field,
        len,
    }
}

fn codec_of_fourcc(fourcc: [u8; 4]) -> Result<Codec, FlvError> {
    match &fourcc {
        b"avc1" => Ok(Codec::H264),
        b"hvc1" => Ok(Codec::H265),
        b"av01" => Ok(Codec::Av1),
        _ => Err(FlvError::UnsupportedFourCc { fourcc }),
    }
}

fn fourcc_of_codec(codec: Codec) -> Option<&'static [u8; 4]> {
    match codec {
        Codec::H264 => Some(b"avc1"),
        Codec::H265 => Some(b"hvc1"),
        Codec::Av1 => Some(b"av01"),
        _ => None,
    }
}

fn frame(
    codec: Codec,
    kind: FrameKind,
    frame_type: u8,
    dts: u32,
    cts: i32,
    payload: Bytes,
) -> Frame {
    let dts = i64::from(dts);
    Frame {
        codec,
        kind,
        dts,
        pts: dts + i64::from(cts),
        key: frame_type == FRAME_KEY || kind == FrameKind::Config,
        payload,
    }
}

/// Converts a video tag body (= RTMP video message payload) to a frame.
///
/// Handles legacy AVC (CodecID 7) and HEVC (12), and Enhanced RTMP (`avc1`, `hvc1`, `av01`)
/// with SequenceStart, CodedFrames, CodedFramesX and SequenceEnd. Returns `None` for tags that
/// carry no frame: empty bodies, video info / command frames, Enhanced Metadata and
/// MPEG2TSSequenceStart packets. The payload is a zero-copy slice of `body`; `pts` is
/// `timestamp` plus the sign-extended CompositionTime.
pub fn frame_from_video_tag(timestamp: u32, body: &Bytes) -> Result<Option<Frame>, FlvError> {
    let Some(&first) = body.first() else {
        return Ok(None);
    };
    if first & IS_EX_HEADER != 0 {
        return enhanced_frame(timestamp, first, body);
    }
    let frame_type = first >> 4;
    if frame_type == FRAME_COMMAND {
        return Ok(None);
    }
    let codec = match first & 0x0F {
        CODEC_AVC => Codec::H264,
        CODEC_HEVC => Codec::H265,
        codec_id => return Err(FlvError::UnsupportedVideoCodec { codec_id }),
    };
    let packet_type = *body.get(1).ok_or(truncated("AVCPacketType", body.len()))?;
    let cts = read_si24(body, 2).ok_or(truncated("CompositionTime", body.len()))?;
    let kind = match packet_type {
        0 => FrameKind::Config,
        1 => FrameKind::Coded,
        2 => FrameKind::EndOfSequence,
        value => {
            return Err(FlvError::UnsupportedPacketType {
                field: "AVCPacketType",
                value,
            })
        }
    };
    Ok(Some(frame(
        codec,
        kind,
        frame_type,
        timestamp,
        cts,
        body.slice(5..),
    )))
}

fn enhanced_frame(timestamp: u32, first: u8, body: &Bytes) -> Result<Option<Frame>, FlvError> {
    let frame_type = (first >> 4) & 0x07;
    let packet_type = first & 0x0F;
    if packet_type == PT_METADATA || packet_type == PT_MPEG2TS_SEQUENCE_START {
        return Ok(None);
    }
    if frame_type == FRAME_COMMAND {
        return Ok(None);
    }
    let fourcc = body
        .get(1..)
        .and_then(first_bytes::<4>)
        .ok_or(truncated("VideoFourCc", body.len()))?;
    let codec = codec_of_fourcc(fourcc)?;
    let (kind, cts, start) = match packet_type {
        PT_SEQUENCE_START => (FrameKind::Config, 0, 5),
        PT_SEQUENCE_END => (FrameKind::EndOfSequence, 0, 5),
        PT_CODED_FRAMES_X => (FrameKind::Coded, 0, 5),
        PT_CODED_FRAMES if codec == Codec::Av1 => (FrameKind::Coded, 0, 5),
        PT_CODED_FRAMES => {
            let cts = read_si24(body, 5).ok_or(truncated("CompositionTime", body.len()))?;
            (FrameKind::Coded, cts, 8)
        }
        value => {
            return Err(FlvError::UnsupportedPacketType {
                field: "VideoPacketType",
                value,
            })
        }
    };
    Ok(Some(frame(
        codec,
        kind,
        frame_type,
        timestamp,
        cts,
        body.slice(start..),
    )))
}

/// Writes the video tag header for `frame` (everything before its payload).
///
/// Legacy style (H.264, H.265): 5 bytes, frame type and CodecID, AVCPacketType, signed 24-bit
/// CompositionTime. Enhanced style: 5 bytes (ExHeader, frame type, VideoPacketType, FourCC),
/// plus the 3-byte CompositionTime for coded H.264/H.265 frames with a non-zero composition
/// offset (CodedFrames); with a zero offset CodedFramesX is used. AV1 has no legacy form and is
/// always written Enhanced. Enhanced SequenceStart and SequenceEnd carry no composition offset.
pub fn write_video_tag_header(
    frame: &Frame,
    style: VideoTagStyle,
    out: &mut BytesMut,
) -> Result<(), FlvError> {
    let unrepresentable = || FlvError::Unrepresentable {
        codec: frame.codec,
        kind: frame.kind,
    };
    let frame_type = if frame.key { FRAME_KEY } else { FRAME_INTER };
    let cts = frame.composition_offset();
    let legacy_id = match (frame.codec, style) {
        (Codec::H264, VideoTagStyle::Legacy) => Some(CODEC_AVC),
        (Codec::H265, VideoTagStyle::Legacy) => Some(CODEC_HEVC),
        _ => None,
    };
    if let Some(codec_id) = legacy_id {
        check_body_len(5, frame.payload.len())?;
        let packet_type = match frame.kind {
            FrameKind::Config => 0,
            FrameKind::Coded => 1,
            FrameKind::EndOfSequence => 2,
        };
        let cts = si24(cts)?;
        out.reserve(5);
        out.put_u8(frame_type << 4 | codec_id);
        out.put_u8(packet_type);
        out.put_slice(&cts);
        return Ok(());
    }
    let fourcc = fourcc_of_codec(frame.codec).ok_or_else(unrepresentable)?;
    let (packet_type, cts) = match frame.kind {
        FrameKind::Config => (PT_SEQUENCE_START, None),
        FrameKind::EndOfSequence => (PT_SEQUENCE_END, None),
        FrameKind::Coded if cts == 0 && frame.codec != Codec::Av1 => (PT_CODED_FRAMES_X, None),
        FrameKind::Coded if frame.codec == Codec::Av1 => {
            return if cts == 0 {
                write_ex_header(frame, PT_CODED_FRAMES, fourcc, None, out)
            } else {
                Err(FlvError::CompositionOutOfRange { offset: cts })
            };
        }
        FrameKind::Coded => (PT_CODED_FRAMES, Some(si24(cts)?)),
    };
    write_ex_header(frame, packet_type, fourcc, cts, out)
}

fn write_ex_header(
    frame: &Frame,
    packet_type: u8,
    fourcc: &[u8; 4],
    cts: Option<[u8; 3]>,
    out: &mut BytesMut,
) -> Result<(), FlvError> {
    let header_len = if cts.is_some() { 8 } else { 5 };
    check_body_len(header_len, frame.payload.len())?;
    let frame_type = if frame.key { FRAME_KEY } else { FRAME_INTER };
    out.reserve(header_len);
    out.put_u8(IS_EX_HEADER | frame_type << 4 | packet_type);
    out.put_slice(fourcc);
    if let Some(cts) = cts {
        out.put_slice(&cts);
    }
    Ok(())
}

/// Builds a whole video tag body: [`write_video_tag_header`] followed by the payload (copied
/// once; use the header function with a shared payload to avoid the copy).
pub fn video_tag_body(frame: &Frame, style: VideoTagStyle) -> Result<Bytes, FlvError> {
    let mut out = BytesMut::with_capacity(8 + frame.payload.len());
    write_video_tag_header(frame, style, &mut out)?;
    out.put_slice(&frame.payload);
    Ok(out.freeze())
}
