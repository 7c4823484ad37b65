//! RTP and RTCP (RFC 3550), and the per-codec payload formats that turn RTP packets into
//! [`Frame`](crate::media::Frame)s and back.
//!
//! - [`RtpPacket`] parses and writes one RTP packet (CSRC list, header extension, padding);
//! - [`rtcp`] parses compound RTCP packets and builds sender and receiver reports;
//! - [`Depacketizer`] reorders packets of one track and rebuilds its frames: H.264 (RFC 6184),
//!   H.265 (RFC 7798), AV1 (AOM's RTP payload format), AAC (RFC 3640 AAC-hbr, and RFC 6416
//!   MP4A-LATM), G.711 A/µ-law and Opus;
//! - [`Packetizer`] cuts frames into packets no larger than an MTU.
//!
//! Everything here reads untrusted bytes: lengths are checked, bad input gives an [`RtpError`],
//! never a panic.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::CodecError;
use crate::media::Codec;

mod audio;
mod av1;
mod depacketize;
mod packetize;
pub mod rtcp;
mod timing;
mod video;

pub use depacketize::{Depacketizer, DEFAULT_REORDER_WINDOW};
pub use packetize::Packetizer;
pub use timing::{DtsEstimator, Released, ReorderBuffer};

/// Size of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;

/// Errors from parsing RTP or RTCP packets and from (de)packetizing payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtpError {
    /// The packet ended inside `field`, which starts at byte `offset`.
    Truncated {
        /// `"rtp"`, `"rtcp"`, or a payload format (`"h264"`, `"aac"`, ...).
        layer: &'static str,
        /// The field being read.
        field: &'static str,
        /// Byte offset of the field in the packet.
        offset: usize,
    },
    /// `field` at byte `offset` holds a value the specification forbids or rill does not handle.
    Invalid {
        /// `"rtp"`, `"rtcp"`, or a payload format.
        layer: &'static str,
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Byte offset of the field in the packet.
        offset: usize,
    },
    /// A reassembled frame would exceed `limit` bytes.
    FrameTooLarge {
        /// The payload format.
        layer: &'static str,
        /// The configured limit.
        limit: usize,
    },
    /// Parameter sets or an audio configuration could not be parsed.
    Codec(CodecError),
    /// A frame of this codec cannot be carried by this packetizer or depacketizer.
    WrongCodec {
        /// The codec of the frame or track.
        codec: Codec,
    },
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtpError::Truncated {
                layer,
                field,
                offset,
            } => write!(f, "{layer}: packet ends inside {field} at offset {offset}"),
            RtpError::Invalid {
                layer,
                field,
                value,
                offset,
            } => write!(
                f,
                "{layer}: invalid {field} value {value} at offset {offset}"
            ),
            RtpError::FrameTooLarge { layer, limit } => {
                write!(f, "{layer}: reassembled frame exceeds {limit} bytes")
            }
            RtpError::Codec(e) => write!(f, "rtp: codec configuration: {e}"),
            RtpError::WrongCodec { codec } => {
                write!(f, "rtp: codec {} not handled here", codec.name())
            }
        }
    }
}

impl std::error::Error for RtpError {}

impl From<CodecError> for RtpError {
    fn from(e: CodecError) -> Self {
        RtpError::Codec(e)
    }
}

/// An RTP header extension (RFC 3550 section 5.3.1): a profile-defined id and its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderExtension {
    /// The 16-bit profile-defined value (`0xBEDE` for RFC 8285 one-byte headers).
    pub profile: u16,
    /// The extension data, a multiple of 4 bytes long.
    pub data: Bytes,
}

/// One RTP packet. Parsing borrows nothing: `payload` and the extension are slices of the
/// received buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPacket {
    /// Marker bit (for video: last packet of an access unit).
    pub marker: bool,
    /// Payload type (0-127).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp in the payload format's clock.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Contributing sources (at most 15).
    pub csrc: Vec<u32>,
    /// Header extension, if the X bit was set.
    pub extension: Option<HeaderExtension>,
    /// The payload, without padding.
    pub payload: Bytes,
}

fn truncated(field: &'static str, offset: usize) -> RtpError {
    RtpError::Truncated {
        layer: "rtp",
        field,
        offset,
    }
}

impl RtpPacket {
    /// A packet with no CSRC and no extension.
    pub fn new(payload_type: u8, sequence: u16, timestamp: u32, ssrc: u32, payload: Bytes) -> Self {
        RtpPacket {
            marker: false,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrc: Vec::new(),
            extension: None,
            payload,
        }
    }

    /// Parses one RTP packet (the whole datagram or interleaved frame).
    pub fn parse(data: &Bytes) -> Result<Self, RtpError> {
        let head = data
            .get(..RTP_HEADER_LEN)
            .ok_or_else(|| truncated("fixed header", 0))?;
        let b0 = head.first().copied().unwrap_or_default();
        let b1 = head.get(1).copied().unwrap_or_default();
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::Invalid {
                layer: "rtp",
                field: "version",
                value: u64::from(version),
                offset: 0,
            });
        }
        let padding = b0 & 0x20 != 0;
        let has_ext = b0 & 0x10 != 0;
        let cc = usize::from(b0 & 0x0F);
        let sequence = be16(head, 2);
        let timestamp = be32(head, 4);
        let ssrc = be32(head, 8);
        let mut pos = RTP_HEADER_LEN;
        let csrc_bytes = data
            .get(pos..pos + 4 * cc)
            .ok_or_else(|| truncated("csrc list", pos))?;
        let csrc = csrc_bytes
            .chunks_exact(4)
            .map(|c| be32(c, 0))
            .collect::<Vec<_>>();
        pos += 4 * cc;
        let extension = if has_ext {
            let eh = data
                .get(pos..pos + 4)
                .ok_or_else(|| truncated("extension header", pos))?;
            let profile = be16(eh, 0);
            let len = usize::from(be16(eh, 2)) * 4;
            let start = pos + 4;
            if data.len() < start + len {
                return Err(truncated("extension data", start));
            }
            pos = start + len;
            Some(HeaderExtension {
                profile,
                data: data.slice(start..pos),
            })
        } else {
            None
        };
        let mut end = data.len();
        if padding {
            let pad = usize::from(data.last().copied().unwrap_or_default());
            if pad == 0 || end - pos < pad {
                return Err(RtpError::Invalid {
                    layer: "rtp",
                    field: "padding length",
                    value: pad as u64,
                    offset: end.saturating_sub(1),
                });
            }
            end -= pad;
        }
        Ok(RtpPacket {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7F,
            sequence,
            timestamp,
            ssrc,
            csrc,
            extension,
            payload: data.slice(pos..end),
        })
    }

    /// Length of the header (fixed part, CSRCs and extension) when written.
    pub fn header_len(&self) -> usize {
        RTP_HEADER_LEN
            + 4 * self.csrc.len().min(15)
            + self
                .extension
                .as_ref()
                .map_or(0, |e| 4 + e.data.len().min(0xFFFF * 4) / 4 * 4)
    }

    /// Writes the header only (for a vectored write of header then `payload`). At most 15
    /// CSRCs are written; extension data is cut to whole 32-bit words.
    pub fn write_header(&self, out: &mut BytesMut) {
        let cc = self.csrc.len().min(15);
        let x = if self.extension.is_some() { 0x10 } else { 0 };
        out.reserve(self.header_len());
        out.put_u8(0x80 | x | cc as u8);
        out.put_u8(if self.marker { 0x80 } else { 0 } | (self.payload_type & 0x7F));
        out.put_u16(self.sequence);
        out.put_u32(self.timestamp);
        out.put_u32(self.ssrc);
        for c in self.csrc.iter().take(cc) {
            out.put_u32(*c);
        }
        if let Some(ext) = &self.extension {
            let words = (ext.data.len() / 4).min(0xFFFF);
            out.put_u16(ext.profile);
            out.put_u16(words as u16);
            out.put_slice(ext.data.get(..words * 4).unwrap_or_default());
        }
    }

    /// Writes the whole packet (header and payload, no padding).
    pub fn write(&self, out: &mut BytesMut) {
        self.write_header(out);
        out.extend_from_slice(&self.payload);
    }

    /// The whole packet as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.header_len() + self.payload.len());
        self.write(&mut out);
        out.freeze()
    }
}

/// Big-endian u16 at `at` (0 when out of range; callers check lengths first).
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Big-endian u32 at `at` (0 when out of range; callers check lengths first).
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, x, y, z]) => u32::from_be_bytes([a, x, y, z]),
        _ => 0,
    }
}

/// Parameters of one RTP track: what SDP says and what a (de)packetizer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackParams {
    /// RTP payload type (dynamic 96-127, or static 0 / 8 for G.711).
    pub payload_type: u8,
    /// RTP clock rate in Hz (90000 for video, the sample rate for audio; 48000 for Opus).
    pub clock_rate: u32,
    /// Audio channels (1 for video).
    pub channels: u8,
    /// Codec and its out-of-band configuration.
    pub codec: CodecParams,
}

/// A codec and the configuration its payload format carries out of band (in SDP `fmtp`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecParams {
    /// H.264; parameter sets from `sprop-parameter-sets` (may be empty: in-band only).
    H264 {
        /// Sequence parameter sets (whole NAL units).
        sps: Vec<Bytes>,
        /// Picture parameter sets.
        pps: Vec<Bytes>,
    },
    /// H.265; parameter sets from `sprop-vps`, `sprop-sps`, `sprop-pps` (may be empty).
    H265 {
        /// Video parameter sets.
        vps: Vec<Bytes>,
        /// Sequence parameter sets.
        sps: Vec<Bytes>,
        /// Picture parameter sets.
        pps: Vec<Bytes>,
    },
    /// MPEG-4 AAC in RFC 3640 `AAC-hbr` mode.
    Aac {
        /// The AudioSpecificConfig (`config=` in fmtp).
        config: Bytes,
        /// `sizeLength` (13 for AAC-hbr).
        size_length: u8,
        /// `indexLength` (3 for AAC-hbr).
        index_length: u8,
        /// `indexDeltaLength` (3 for AAC-hbr).
        index_delta_length: u8,
    },
    /// MPEG-4 AAC in LATM (RFC 3016 / RFC 6416 `MP4A-LATM`), configuration out of band.
    AacLatm {
        /// The AudioSpecificConfig, taken out of the StreamMuxConfig (`config=` in fmtp).
        config: Bytes,
        /// Access units per AudioMuxElement, minus one (`numSubFrames`).
        sub_frames: u8,
    },
    /// G.711 A-law (`PCMA`).
    G711A,
    /// G.711 µ-law (`PCMU`).
    G711U,
    /// Opus (RFC 7587).
    Opus,
    /// AV1 (AOM "RTP Payload Format for AV1").
    Av1 {
        /// The `AV1CodecConfigurationRecord` (`av1C`): its sequence header goes in front of
        /// key frames, its profile, level and tier into the SDP. Empty when the sequence
        /// header is only in band (always so for a received description: SDP has no room
        /// for it).
        config: Bytes,
    },
}

impl CodecParams {
    /// The codec.
    pub fn codec(&self) -> Codec {
        match self {
            CodecParams::H264 { .. } => Codec::H264,
            CodecParams::H265 { .. } => Codec::H265,
            CodecParams::Aac { .. } | CodecParams::AacLatm { .. } => Codec::Aac,
            CodecParams::G711A => Codec::G711A,
            CodecParams::G711U => Codec::G711U,
            CodecParams::Opus => Codec::Opus,
            CodecParams::Av1 { .. } => Codec::Av1,
        }
    }

    /// AAC-hbr parameters for an AudioSpecificConfig.
    pub fn aac_hbr(config: Bytes) -> Self {
        CodecParams::Aac {
            config,
            size_length: 13,
            index_length: 3,
            index_delta_length: 3,
        }
    }
}

#[cfg(test)]
mod tests;
