//! Audio tag bodies (AAC, MP3, G.711; Opus and the others Enhanced RTMP names by FourCC) to and
//! from neutral frames.

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_body_len, FlvError};
use crate::codec::mp3;
use crate::media::{Codec, Frame, FrameKind};

/// SoundFormat values.
const FORMAT_MP3: u8 = 2;
const FORMAT_G711A: u8 = 7;
const FORMAT_G711U: u8 = 8;
const FORMAT_AAC: u8 = 10;
const FORMAT_MP3_8K: u8 = 14;

/// The flags byte FLV requires for AAC: 44 kHz, 16-bit, stereo (the real values are in the
/// AudioSpecificConfig).
const AAC_FLAGS: u8 = FORMAT_AAC << 4 | 0x0F;

/// Converts an audio tag body (= RTMP audio message payload) to a frame.
///
/// AAC (SoundFormat 10) gives a Config frame (the AudioSpecificConfig) for AACPacketType 0 and
/// a raw access unit for 1; MP3 (2, and 14 for 8 kHz MP3), G.711 A-law (7) and µ-law (8) give
/// the data after the flags byte. An Enhanced RTMP header (SoundFormat 9) is read by its FourCC
/// (`Opus`, `mp4a`, `.mp3`): SequenceStart gives a Config frame (for Opus, the `OpusHead`),
/// CodedFrames a Coded one; SequenceEnd and MultichannelConfig (the layout is in the codec's
/// own configuration) give `None`. Returns `None` for an empty body. Audio frames are key frames
/// with `pts == dts == timestamp`; payloads are zero-copy slices of `body`.
pub fn frame_from_audio_tag(timestamp: u32, body: &Bytes) -> Result<Option<Frame>, FlvError> {
    let Some(&flags) = body.first() else {
        return Ok(None);
    };
    let (codec, kind, start) = match flags >> 4 {
        FORMAT_EX_HEADER => {
            let Some((codec, kind)) = enhanced_audio(flags & 0x0F, body)? else {
                return Ok(None);
            };
            (codec, kind, 5)
        }
        FORMAT_AAC => {
            let packet_type = *body.get(1).ok_or(FlvError::Truncated {
                tag: "audio tag",
                field: "AACPacketType",
                len: body.len(),
            })?;
            let kind = match packet_type {
                0 => FrameKind::Config,
                1 => FrameKind::Coded,
                value => {
                    return Err(FlvError::UnsupportedPacketType {
                        field: "AACPacketType",
                        value,
                    })
                }
            };
            (Codec::Aac, kind, 2)
        }
        FORMAT_MP3 | FORMAT_MP3_8K => (Codec::Mp3, FrameKind::Coded, 1),
        FORMAT_G711A => (Codec::G711A, FrameKind::Coded, 1),
        FORMAT_G711U => (Codec::G711U, FrameKind::Coded, 1),
        format => return Err(FlvError::UnsupportedSoundFormat { format }),
    };
    let ts = i64::from(timestamp);
    Ok(Some(Frame {
        codec,
        kind,
        dts: ts,
        pts: ts,
        key: true,
        payload: body.slice(start..),
    }))
}

/// The MP3 flags byte, from the frame's own header when it parses (rate and channels), else
/// 44 kHz stereo. 8 kHz streams use SoundFormat 14.
fn mp3_flags(payload: &[u8]) -> u8 {
    let Ok(h) = mp3::parse_header(payload) else {
        return FORMAT_MP3 << 4 | 0x0F;
    };
    let stereo = u8::from(h.channels == 2);
    let (format, rate) = match h.sample_rate {
        8000 => (FORMAT_MP3_8K, 0),
        r if r <= 11025 => (FORMAT_MP3, 1),
        r if r <= 24000 => (FORMAT_MP3, 2),
        _ => (FORMAT_MP3, 3),
    };
    format << 4 | rate << 2 | 0x02 | stereo
}

/// Whether FLV has a form for audio of `codec` (with Enhanced RTMP tags when `enhanced`): a
/// file or stream header announces audio only when its tags will come.
pub fn carries_audio(codec: Codec, enhanced: bool) -> bool {
    match codec {
        Codec::Aac | Codec::Mp3 | Codec::G711A | Codec::G711U => true,
        Codec::Opus => enhanced,
        _ => false,
    }
}

/// SoundFormat 9: an Enhanced RTMP audio header (packet type in the low nibble, then a FourCC).
const FORMAT_EX_HEADER: u8 = 9;
/// Enhanced RTMP AudioPacketType: the decoder configuration (for Opus, the `OpusHead`).
const AUDIO_SEQUENCE_START: u8 = 0;
/// Enhanced RTMP AudioPacketType: coded frames.
const AUDIO_CODED_FRAMES: u8 = 1;
/// Enhanced RTMP AudioPacketType: the end of the sequence.
const AUDIO_SEQUENCE_END: u8 = 2;
/// Enhanced RTMP AudioPacketType: the channel layout (ffmpeg sends one after SequenceStart).
const AUDIO_MULTICHANNEL_CONFIG: u8 = 4;

/// The codec and frame kind of an Enhanced RTMP audio tag (`packet_type` from its first byte,
/// the FourCC after it); `None` for the packet types that carry no frame.
fn enhanced_audio(packet_type: u8, body: &Bytes) -> Result<Option<(Codec, FrameKind)>, FlvError> {
    let kind = match packet_type {
        AUDIO_SEQUENCE_START => FrameKind::Config,
        AUDIO_CODED_FRAMES => FrameKind::Coded,
        AUDIO_SEQUENCE_END | AUDIO_MULTICHANNEL_CONFIG => return Ok(None),
        value => {
            return Err(FlvError::UnsupportedPacketType {
                field: "AudioPacketType",
                value,
            })
        }
    };
    let fourcc: [u8; 4] =
        body.get(1..5)
            .and_then(|b| b.try_into().ok())
            .ok_or(FlvError::Truncated {
                tag: "audio tag",
                field: "AudioFourCc",
                len: body.len(),
            })?;
    let codec = match &fourcc {
        b"Opus" => Codec::Opus,
        b"mp4a" => Codec::Aac,
        b".mp3" if kind == FrameKind::Coded => Codec::Mp3,
        b".mp3" => return Ok(None),
        _ => return Err(FlvError::UnsupportedFourCc { fourcc }),
    };
    Ok(Some((codec, kind)))
}

/// Writes the audio tag header for `frame`: the flags byte, plus the AACPacketType for AAC.
///
/// G.711 is written as ffmpeg does (8 kHz implied, 8-bit, mono); MP3 flags come from the MP3
/// frame header. Opus, which has no legacy form, gets the Enhanced RTMP header (FourCC `Opus`;
/// a Config frame, its `OpusHead`, as SequenceStart). Only Config (AAC, Opus) and Coded frames
/// have an FLV form. Audio tags carry no composition offset: the tag timestamp is the frame's
/// `dts`.
pub fn write_audio_tag_header(frame: &Frame, out: &mut BytesMut) -> Result<(), FlvError> {
    let unrepresentable = FlvError::Unrepresentable {
        codec: frame.codec,
        kind: frame.kind,
    };
    match (frame.codec, frame.kind) {
        (Codec::Opus, FrameKind::Config | FrameKind::Coded) => {
            check_body_len(5, frame.payload.len())?;
            let packet_type = if frame.kind == FrameKind::Config {
                AUDIO_SEQUENCE_START
            } else {
                AUDIO_CODED_FRAMES
            };
            out.reserve(5);
            out.put_u8(FORMAT_EX_HEADER << 4 | packet_type);
            out.put_slice(b"Opus");
            return Ok(());
        }
        (Codec::Aac, FrameKind::Config | FrameKind::Coded) => {
            check_body_len(2, frame.payload.len())?;
            out.reserve(2);
            out.put_u8(AAC_FLAGS);
            out.put_u8(u8::from(frame.kind == FrameKind::Coded));
            return Ok(());
        }
        (_, FrameKind::Coded) => {}
        _ => return Err(unrepresentable),
    }
    let flags = match frame.codec {
        Codec::Mp3 => mp3_flags(&frame.payload),
        Codec::G711A => FORMAT_G711A << 4,
        Codec::G711U => FORMAT_G711U << 4,
        _ => return Err(unrepresentable),
    };
    check_body_len(1, frame.payload.len())?;
    out.reserve(1);
    out.put_u8(flags);
    Ok(())
}

/// Builds a whole audio tag body: [`write_audio_tag_header`] followed by the payload (copied
/// once; use the header function with a shared payload to avoid the copy).
pub fn audio_tag_body(frame: &Frame) -> Result<Bytes, FlvError> {
    let mut out = BytesMut::with_capacity(5 + frame.payload.len());
    write_audio_tag_header(frame, &mut out)?;
    out.put_slice(&frame.payload);
    Ok(out.freeze())
}
