//! The one neutral frame type every protocol converts to and from.
//!
//! A publisher's session turns what it receives (FLV tags, RTP packets, TS PES) into [`Frame`]s;
//! the hub caches and fans them out; each output muxes them into its own format once per stream.

use bytes::Bytes;

/// Which elementary stream of a program a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// The video track.
    Video,
    /// The audio track.
    Audio,
}

/// Codecs rill carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// H.264 / AVC. Payload: length-prefixed (AVCC) NAL units.
    H264,
    /// H.265 / HEVC. Payload: length-prefixed (HVCC) NAL units.
    H265,
    /// AV1. Payload: low-overhead OBU stream.
    Av1,
    /// AAC. Payload: one raw access unit (no ADTS header).
    Aac,
    /// MPEG-1/2 audio layer III. Payload: one MP3 frame with its header.
    Mp3,
    /// G.711 A-law, 8 kHz mono unless the stream says otherwise.
    G711A,
    /// G.711 µ-law, 8 kHz mono unless the stream says otherwise.
    G711U,
    /// Opus. Payload: one Opus packet.
    Opus,
}

impl Codec {
    /// The track this codec belongs to.
    pub fn track(self) -> TrackKind {
        match self {
            Codec::H264 | Codec::H265 | Codec::Av1 => TrackKind::Video,
            _ => TrackKind::Audio,
        }
    }

    /// Short uppercase name, as used in the stats API and error messages (`"H264"`, `"AAC"`,
    /// `"PCMA"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "H264",
            Codec::H265 => "H265",
            Codec::Av1 => "AV1",
            Codec::Aac => "AAC",
            Codec::Mp3 => "MP3",
            Codec::G711A => "PCMA",
            Codec::G711U => "PCMU",
            Codec::Opus => "OPUS",
        }
    }
}

/// What a frame's payload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Decoder configuration: AVC/HEVC/AV1 decoder configuration record, or AAC
    /// AudioSpecificConfig. Players need it before any coded frame.
    Config,
    /// A coded frame (video access unit or audio frame).
    Coded,
    /// End of the sequence (Enhanced RTMP SequenceEnd, AVC end of sequence).
    EndOfSequence,
}

/// One access unit or configuration record of one track, with its timing.
///
/// Timestamps are in milliseconds on the publisher's clock, not rebased: the hub and outputs
/// rebase per player. `pts - dts` is the composition offset and may be negative only for
/// broken sources; B-frames give `pts > dts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Codec of the payload.
    pub codec: Codec,
    /// What the payload holds.
    pub kind: FrameKind,
    /// Decode timestamp, milliseconds.
    pub dts: i64,
    /// Presentation timestamp, milliseconds.
    pub pts: i64,
    /// A random access point (IDR / IRAP key frame). Audio frames and configs are key frames.
    pub key: bool,
    /// The payload, a shared slice of what was received (no copy).
    pub payload: Bytes,
}

impl Frame {
    /// The track this frame belongs to.
    pub fn track(&self) -> TrackKind {
        self.codec.track()
    }

    /// Composition time offset (`pts - dts`) in milliseconds.
    pub fn composition_offset(&self) -> i64 {
        self.pts - self.dts
    }

    /// True for a video key frame that starts a group of pictures.
    pub fn is_video_key(&self) -> bool {
        self.track() == TrackKind::Video && self.kind == FrameKind::Coded && self.key
    }
}
