//! FLV: the file header, tags, a streaming demuxer, and conversion between FLV tag bodies
//! (which are also RTMP audio and video message payloads) and neutral [`Frame`]s.
//!
//! Muxing is a handful of functions writing into a caller's `BytesMut`: the file header once,
//! then per tag an 11-byte header, the body and a 4-byte trailer (the previous tag size). For
//! fan-out to many players, [`write_tag_header`] and [`tag_trailer`] let the caller put a shared
//! body between them without copying it.
//!
//! [`FlvDemuxer`] is sans-IO: [`FlvDemuxer::push`] bytes, then call [`FlvDemuxer::poll_tag`]
//! until it returns `Ok(None)` before pushing more.
//!
//! [`Frame`]: crate::media::Frame

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::CodecError;
use crate::limits::Limits;
use crate::media::{Codec, FrameKind};

mod audio;
#[cfg(test)]
mod tests;
mod video;

pub use audio::{audio_tag_body, carries_audio, frame_from_audio_tag, write_audio_tag_header};
pub use video::{frame_from_video_tag, video_tag_body, write_video_tag_header, VideoTagStyle};

/// Length of the FLV file header (without the first PreviousTagSize).
pub const FLV_HEADER_LEN: usize = 9;
/// Length of an FLV tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Largest tag body the 24-bit DataSize field can describe.
pub const MAX_TAG_BODY_LEN: u32 = 0x00FF_FFFF;
/// Largest DataOffset (file header size) the demuxer accepts; real files use 9.
const MAX_HEADER_LEN: u32 = 1024;

/// Errors of the FLV layer: the container and the audio/video tag body headers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlvError {
    /// The stream does not start with `FLV`.
    BadSignature {
        /// The first three bytes.
        found: [u8; 3],
    },
    /// The file header's DataOffset is below 9 or unreasonably large.
    BadHeaderSize {
        /// The DataOffset value.
        size: u32,
    },
    /// A tag's DataSize exceeds the configured limit.
    TagTooLarge {
        /// The declared body length.
        len: u32,
        /// The limit.
        limit: u32,
        /// Stream offset of the tag header.
        offset: u64,
    },
    /// A tag type other than audio (8), video (9) and script data (18).
    UnknownTagType {
        /// The TagType field.
        tag_type: u8,
        /// Stream offset of the tag header.
        offset: u64,
    },
    /// A tag with the Filter bit set (encrypted content), which rill does not handle.
    EncryptedTag {
        /// Stream offset of the tag header.
        offset: u64,
    },
    /// A tag body shorter than its own header says.
    Truncated {
        /// `"video tag"` or `"audio tag"`.
        tag: &'static str,
        /// The field that is cut off.
        field: &'static str,
        /// The body length.
        len: usize,
    },
    /// A legacy video CodecID other than AVC (7) and HEVC (12).
    UnsupportedVideoCodec {
        /// The CodecID field.
        codec_id: u8,
    },
    /// An Enhanced RTMP FourCC rill does not read (video other than `avc1`, `hvc1` and `av01`;
    /// audio other than `Opus`, `mp4a` and `.mp3`).
    UnsupportedFourCc {
        /// The FourCC.
        fourcc: [u8; 4],
    },
    /// A packet type field with a value rill does not handle (Enhanced RTMP multitrack or
    /// ModEx, an AVC/AAC packet type above the defined ones).
    UnsupportedPacketType {
        /// `"AVCPacketType"`, `"VideoPacketType"`, `"AACPacketType"` or `"AudioPacketType"`.
        field: &'static str,
        /// Its value.
        value: u8,
    },
    /// An audio SoundFormat other than MP3 (2, 14), G.711 (7, 8), AAC (10) and the Enhanced
    /// RTMP header (9).
    UnsupportedSoundFormat {
        /// The SoundFormat field.
        format: u8,
    },
    /// A frame FLV cannot carry: a codec without an FLV form, or a frame kind the codec has
    /// no packet type for (an audio end of sequence, say).
    Unrepresentable {
        /// The frame's codec.
        codec: Codec,
        /// The frame's kind.
        kind: FrameKind,
    },
    /// The frame's composition offset (`pts - dts`) does not fit the signed 24-bit field (or
    /// is not zero where the format has no such field).
    CompositionOutOfRange {
        /// `pts - dts` in milliseconds.
        offset: i64,
    },
    /// The tag body would exceed the 24-bit DataSize.
    BodyTooLarge {
        /// Body length in bytes.
        len: usize,
    },
    /// A codec header inside a tag is invalid.
    Codec(CodecError),
}

impl fmt::Display for FlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlvError::BadSignature { found } => {
                write!(f, "flv: signature at offset 0 is {found:02x?}, expected \"FLV\"")
            }
            FlvError::BadHeaderSize { size } => write!(
                f,
                "flv: header DataOffset {size} at offset 5 is outside 9..={MAX_HEADER_LEN}"
            ),
            FlvError::TagTooLarge { len, limit, offset } => write!(
                f,
                "flv: tag DataSize {len} at offset {offset} exceeds the limit of {limit} bytes"
            ),
            FlvError::UnknownTagType { tag_type, offset } => {
                write!(f, "flv: unknown TagType {tag_type} at offset {offset}")
            }
            FlvError::EncryptedTag { offset } => {
                write!(f, "flv: tag at offset {offset} has the Filter (encryption) bit set")
            }
            FlvError::Truncated { tag, field, len } => {
                write!(f, "flv: {tag} body of {len} bytes ends inside {field}")
            }
            FlvError::UnsupportedVideoCodec { codec_id } => {
                write!(f, "flv: video CodecID {codec_id} is not supported (only 7 = AVC, 12 = HEVC)")
            }
            FlvError::UnsupportedFourCc { fourcc } => write!(
                f,
                "flv: video FourCC {:?} is not supported (only avc1, hvc1, av01)",
                String::from_utf8_lossy(fourcc)
            ),
            FlvError::UnsupportedPacketType { field, value } => {
                write!(f, "flv: {field} {value} is not supported")
            }
            FlvError::UnsupportedSoundFormat { format } => write!(
                f,
                "flv: SoundFormat {format} is not supported (only 2/14 = MP3, 7/8 = G.711, 10 = AAC)"
            ),
            FlvError::Unrepresentable { codec, kind } => {
                write!(f, "flv: a {} {kind:?} frame has no FLV form", codec.name())
            }
            FlvError::CompositionOutOfRange { offset } => write!(
                f,
                "flv: composition offset {offset} ms does not fit the CompositionTime field"
            ),
            FlvError::BodyTooLarge { len } => write!(
                f,
                "flv: tag body of {len} bytes exceeds DataSize maximum {MAX_TAG_BODY_LEN}"
            ),
            FlvError::Codec(e) => write!(f, "flv: {e}"),
        }
    }
}

impl std::error::Error for FlvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FlvError::Codec(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CodecError> for FlvError {
    fn from(e: CodecError) -> Self {
        FlvError::Codec(e)
    }
}

/// The kind of an FLV tag (also the RTMP message type id of its payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TagType {
    /// Audio data.
    Audio = 8,
    /// Video data.
    Video = 9,
    /// Script data (AMF0 `onMetaData` and friends).
    Script = 18,
}

impl TagType {
    /// The tag type for a TagType field value.
    pub fn from_u8(v: u8) -> Option<TagType> {
        match v {
            8 => Some(TagType::Audio),
            9 => Some(TagType::Video),
            18 => Some(TagType::Script),
            _ => None,
        }
    }
}

/// One FLV tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// What the body holds.
    pub tag_type: TagType,
    /// Timestamp in milliseconds (the 24-bit field plus the extension byte).
    pub timestamp: u32,
    /// Tag data: what RTMP carries as the message payload.
    pub body: Bytes,
}

/// The flags of an FLV file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// TypeFlagsAudio.
    pub has_audio: bool,
    /// TypeFlagsVideo.
    pub has_video: bool,
}

/// Writes the 9-byte FLV file header followed by PreviousTagSize0 (4 zero bytes).
pub fn write_file_header(has_audio: bool, has_video: bool, out: &mut BytesMut) {
    let flags = if has_audio { 0x04 } else { 0 } | if has_video { 0x01 } else { 0 };
    out.reserve(FLV_HEADER_LEN + 4);
    out.put_slice(b"FLV\x01");
    out.put_u8(flags);
    out.put_u32(FLV_HEADER_LEN as u32);
    out.put_u32(0);
}

/// Writes an 11-byte tag header for a body of `body_len` bytes.
///
/// `body_len` must be at most [`MAX_TAG_BODY_LEN`] (bodies from [`video_tag_body`],
/// [`audio_tag_body`] and the demuxer always are); a larger value is saturated.
pub fn write_tag_header(tag_type: TagType, timestamp: u32, body_len: u32, out: &mut BytesMut) {
    let len = body_len.min(MAX_TAG_BODY_LEN);
    let ts = timestamp.to_be_bytes();
    let len = len.to_be_bytes();
    out.reserve(TAG_HEADER_LEN);
    out.put_u8(tag_type as u8);
    out.put_slice(&len[1..]);
    out.put_slice(&ts[1..]); // low 24 bits
    out.put_u8(ts[0]); // TimestampExtended: the high 8 bits
    out.put_slice(&[0, 0, 0]); // StreamID
}

/// The 4-byte PreviousTagSize that follows a tag with a body of `body_len` bytes.
pub fn tag_trailer(body_len: u32) -> [u8; 4] {
    (body_len.min(MAX_TAG_BODY_LEN) + TAG_HEADER_LEN as u32).to_be_bytes()
}

/// Writes a whole tag: header, body and PreviousTagSize. `body` must be at most
/// [`MAX_TAG_BODY_LEN`] bytes (see [`write_tag_header`]).
pub fn write_tag(tag_type: TagType, timestamp: u32, body: &[u8], out: &mut BytesMut) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.reserve(TAG_HEADER_LEN + body.len() + 4);
    write_tag_header(tag_type, timestamp, len, out);
    out.put_slice(body);
    out.put_slice(&tag_trailer(len));
}

#[derive(Clone, Debug)]
enum DemuxState {
    Header,
    Tags,
    Failed(FlvError),
}

/// Streaming FLV demuxer: file header first, then tags.
///
/// Feed bytes with [`push`](Self::push), then drain [`poll_tag`](Self::poll_tag) until it
/// returns `Ok(None)` (need more bytes) before pushing more. Tag bodies are zero-copy slices of
/// the internal buffer. A tag whose DataSize exceeds the limit is an error before any of its
/// body is buffered. After an error the demuxer keeps returning it. PreviousTagSize fields are
/// skipped without checking (many writers get them wrong).
#[derive(Clone, Debug)]
pub struct FlvDemuxer {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    offset: u64,
    max_tag_len: u32,
    state: DemuxState,
    header: Option<FileHeader>,
}

impl Default for FlvDemuxer {
    /// A demuxer limiting tags to [`Limits::max_message_len`] of the default limits.
    fn default() -> Self {
        FlvDemuxer::new(Limits::default().max_message_len)
    }
}

impl FlvDemuxer {
    /// A demuxer accepting tag bodies up to `max_tag_len` bytes.
    pub fn new(max_tag_len: u32) -> Self {
        FlvDemuxer {
            buf: BytesMut::new(),
            offset: 0,
            max_tag_len,
            state: DemuxState::Header,
            header: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if !matches!(self.state, DemuxState::Failed(_)) {
            self.buf.extend_from_slice(data);
        }
    }

    /// The file header flags, once parsed.
    pub fn header(&self) -> Option<FileHeader> {
        self.header
    }

    /// Bytes received but not yet returned as tags.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete tag, `Ok(None)` when more bytes are needed, or an error for an
    /// invalid stream.
    pub fn poll_tag(&mut self) -> Result<Option<Tag>, FlvError> {
        let result = self.step();
        if let Err(e) = &result {
            self.state = DemuxState::Failed(e.clone());
            self.buf = BytesMut::new();
        }
        result
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.offset += n as u64;
    }

    fn step(&mut self) -> Result<Option<Tag>, FlvError> {
        if let DemuxState::Failed(e) = &self.state {
            return Err(e.clone());
        }
        if let DemuxState::Header = self.state {
            let Some(head) = first_bytes::<FLV_HEADER_LEN>(&self.buf) else {
                // Reject a wrong signature as soon as it is visible.
                let mut found = [0u8; 3];
                found
                    .iter_mut()
                    .zip(self.buf.iter())
                    .for_each(|(d, s)| *d = *s);
                let n = self.buf.len().min(3);
                if found.get(..n) != b"FLV".get(..n) {
                    return Err(FlvError::BadSignature { found });
                }
                return Ok(None);
            };
            let found = [head[0], head[1], head[2]];
            if &found != b"FLV" {
                return Err(FlvError::BadSignature { found });
            }
            let flags = head[4];
            let size = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
            if !(FLV_HEADER_LEN as u32..=MAX_HEADER_LEN).contains(&size) {
                return Err(FlvError::BadHeaderSize { size });
            }
            // The header, any extra header bytes, then PreviousTagSize0.
            let total = size as usize + 4;
            if self.buf.len() < total {
                return Ok(None);
            }
            self.header = Some(FileHeader {
                has_audio: flags & 0x04 != 0,
                has_video: flags & 0x01 != 0,
            });
            self.consume(total);
            self.state = DemuxState::Tags;
        }
        let Some(head) = first_bytes::<TAG_HEADER_LEN>(&self.buf) else {
            return Ok(None);
        };
        let offset = self.offset;
        if head[0] & 0x20 != 0 {
            return Err(FlvError::EncryptedTag { offset });
        }
        let type_byte = head[0] & 0x1F;
        let tag_type = TagType::from_u8(type_byte).ok_or(FlvError::UnknownTagType {
            tag_type: type_byte,
            offset,
        })?;
        let len = u32::from_be_bytes([0, head[1], head[2], head[3]]);
        if len > self.max_tag_len {
            return Err(FlvError::TagTooLarge {
                len,
                limit: self.max_tag_len,
                offset,
            });
        }
        let timestamp = u32::from_be_bytes([head[7], head[4], head[5], head[6]]);
        let body_len = len as usize;
        if self.buf.len() < TAG_HEADER_LEN + body_len + 4 {
            self.buf
                .reserve(TAG_HEADER_LEN + body_len + 4 - self.buf.len());
            return Ok(None);
        }
        self.consume(TAG_HEADER_LEN);
        let body = self.buf.split_to(body_len).freeze();
        self.offset += body_len as u64;
        self.consume(4);
        Ok(Some(Tag {
            tag_type,
            timestamp,
            body,
        }))
    }
}

/// The first `N` bytes of `data` as an array, if there are that many.
fn first_bytes<const N: usize>(data: &[u8]) -> Option<[u8; N]> {
    data.get(..N)?.try_into().ok()
}

/// Reads the signed 24-bit big-endian CompositionTime at `at` of `body`.
fn read_si24(body: &[u8], at: usize) -> Option<i32> {
    let [a, b, c] = first_bytes::<3>(body.get(at..)?)?;
    // Sign-extend: place the 24 bits at the top of an i32, then shift back arithmetically.
    Some(i32::from_be_bytes([a, b, c, 0]) >> 8)
}

/// The signed 24-bit big-endian encoding of a composition offset.
fn si24(offset: i64) -> Result<[u8; 3], FlvError> {
    if !(-(1 << 23)..(1 << 23)).contains(&offset) {
        return Err(FlvError::CompositionOutOfRange { offset });
    }
    let b = (offset as i32).to_be_bytes();
    Ok([b[1], b[2], b[3]])
}

/// Checks that a header plus payload fits the DataSize field.
fn check_body_len(header_len: usize, payload_len: usize) -> Result<(), FlvError> {
    let len = header_len.saturating_add(payload_len);
    if len > MAX_TAG_BODY_LEN as usize {
        return Err(FlvError::BodyTooLarge { len });
    }
    Ok(())
}
