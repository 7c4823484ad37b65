//! Debug dumps: every inbound byte chunk of one connection with its time, and a replayer that
//! feeds dumps into a fresh [`Engine`] on a virtual clock.
//!
//! A runtime records a dump per connection (see `rill_runtime_common::dump`); when something
//! goes wrong in the field, [`replay`] reproduces the session in a test with no sockets. RTMP,
//! HTTP and RTSP (TCP interleaved) connections replay; RTSP over UDP does not (datagrams are
//! not recorded).
//!
//! # Format (version 1)
//!
//! All integers are big-endian.
//!
//! | field          | size      | meaning                                                    |
//! |----------------|-----------|------------------------------------------------------------|
//! | magic          | 8         | `RILLDUMP`                                                 |
//! | version        | 2         | [`VERSION`] (1)                                            |
//! | header length  | 4         | bytes of header fields that follow (at most [`MAX_HEADER_LEN`]) |
//! | listener       | 1 + n     | length, then UTF-8: `rtmp`, `http`, `rtsp`, ...            |
//! | peer           | 1 + n     | length, then the peer's socket address as text             |
//! | start          | 8         | unix time of the accept, milliseconds                      |
//!
//! A reader skips header bytes after `start` (room for new fields within version 1). Then
//! records follow until the end of the file:
//!
//! | field  | size | meaning                                                            |
//! |--------|------|--------------------------------------------------------------------|
//! | offset | 8    | milliseconds since the accept                                      |
//! | kind   | 1    | 0 input, 1 close (the connection ended), 2 truncated (recording stopped at its size cap) |
//! | length | 4    | bytes that follow (0 for close and truncated)                      |
//! | data   | n    | the bytes read from the peer                                       |
//!
//! Readers bound the record length ([`DEFAULT_MAX_RECORD_LEN`] unless told otherwise). A file cut
//! short (a crash while recording) reads as every complete record followed by a
//! [`DumpError::Truncated`] naming the field and offset.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};

use crate::engine::{
    ConnId, Engine, EngineConfig, Listener, Output, Protocol, Role, SessionRecord,
};
use crate::flv::{self, FlvDemuxer, VideoTagStyle};
use crate::interleave::{Interleaver, RTSP_PUBLISHER_WAIT_MS};
use crate::limits::Limits;
use crate::media::{Codec, Frame, FrameKind, TrackKind};
use crate::rtmp::chunk::ChunkDecoder;
use crate::rtmp::handshake::HANDSHAKE_LEN;
use crate::rtmp::message_type;
use crate::rtp::{Depacketizer, RtpPacket};
use crate::rtsp::server::{url_path, RtpReceiver, Seed};
use crate::rtsp::transport::Transport;
use crate::rtsp::{Item, Message, Reader, Request, Response, RtspLimits};
use crate::sdp::{resolve_control, SessionDescription};

/// The first bytes of every dump.
pub const MAGIC: [u8; 8] = *b"RILLDUMP";
/// The format version written, and the only one read.
pub const VERSION: u16 = 1;
/// Largest header (the fields after the header length) a reader accepts.
pub const MAX_HEADER_LEN: u32 = 4096;
/// Largest record a reader accepts by default (runtimes read far less at once).
pub const DEFAULT_MAX_RECORD_LEN: u32 = 16 * 1024 * 1024;
/// Bytes of a record before its data.
pub const RECORD_HEAD_LEN: usize = 8 + 1 + 4;
/// Longest listener name and peer address text (each has a one-byte length).
pub const MAX_TEXT_LEN: usize = 255;

/// Who a dump is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpHeader {
    /// The listener that accepted the connection: `rtmp`, `http`, `rtsp`, ...
    pub listener: String,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Unix time of the accept, milliseconds. [`replay`] places dumps on its clock by this.
    pub start_unix_ms: u64,
}

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordKind {
    /// Bytes read from the peer.
    Input = 0,
    /// The connection ended (either side).
    Close = 1,
    /// Recording stopped here because the dump reached its size cap; the connection went on.
    Truncated = 2,
}

impl RecordKind {
    /// The kind for a kind byte.
    pub fn from_u8(v: u8) -> Option<RecordKind> {
        match v {
            0 => Some(RecordKind::Input),
            1 => Some(RecordKind::Close),
            2 => Some(RecordKind::Truncated),
            _ => None,
        }
    }
}

/// One record, borrowing its data from the dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DumpRecord<'a> {
    /// Milliseconds since the accept.
    pub offset_ms: u64,
    /// What happened.
    pub kind: RecordKind,
    /// The bytes read (empty unless [`RecordKind::Input`]).
    pub data: &'a [u8],
}

/// Why a dump cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DumpError {
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// A version this reader does not know.
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// The input ends inside a field.
    Truncated {
        /// The field.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
    },
    /// A length field exceeds its limit.
    TooLong {
        /// The field.
        field: &'static str,
        /// The declared length.
        len: u64,
        /// The limit.
        limit: u64,
        /// Where the length field starts.
        offset: usize,
    },
    /// A field holds an invalid value (bad UTF-8, unparsable address, unknown kind, ...).
    Invalid {
        /// The field.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
    },
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::BadMagic => write!(f, "dump: bad magic at offset 0 (not a rill dump)"),
            DumpError::UnsupportedVersion { version } => {
                write!(
                    f,
                    "dump: unsupported version {version} at offset 8 (this reader reads {VERSION})"
                )
            }
            DumpError::Truncated { field, offset } => {
                write!(f, "dump: input ends inside {field} at offset {offset}")
            }
            DumpError::TooLong {
                field,
                len,
                limit,
                offset,
            } => write!(
                f,
                "dump: {field} {len} at offset {offset} exceeds the limit {limit}"
            ),
            DumpError::Invalid { field, offset } => {
                write!(f, "dump: invalid {field} at offset {offset}")
            }
        }
    }
}

impl std::error::Error for DumpError {}

/// Writes the magic, version and header.
///
/// A listener name or peer text longer than [`MAX_TEXT_LEN`] bytes is cut (the listener names
/// and socket addresses rill writes are far shorter).
pub fn encode_header(header: &DumpHeader, out: &mut BytesMut) {
    let listener = cut(header.listener.as_bytes());
    let peer_text = header.peer.to_string();
    let peer = cut(peer_text.as_bytes());
    let len = 1 + listener.len() + 1 + peer.len() + 8;
    out.reserve(MAGIC.len() + 2 + 4 + len);
    out.put_slice(&MAGIC);
    out.put_u16(VERSION);
    // At most 2 * (1 + 255) + 8 bytes: fits in u32 and under MAX_HEADER_LEN.
    out.put_u32(len as u32);
    out.put_u8(listener.len() as u8);
    out.put_slice(listener);
    out.put_u8(peer.len() as u8);
    out.put_slice(peer);
    out.put_u64(header.start_unix_ms);
}

fn cut(s: &[u8]) -> &[u8] {
    s.get(..MAX_TEXT_LEN).unwrap_or(s)
}

/// Writes one record. `data` is written only for [`RecordKind::Input`]; callers keep it under
/// the readers' record limit (runtimes pass what one read returned).
pub fn encode_record(offset_ms: u64, kind: RecordKind, data: &[u8], out: &mut BytesMut) {
    let data = if kind == RecordKind::Input { data } else { &[] };
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let data = data.get(..len as usize).unwrap_or(data);
    out.reserve(RECORD_HEAD_LEN + data.len());
    out.put_u64(offset_ms);
    out.put_u8(kind as u8);
    out.put_u32(len);
    out.put_slice(data);
}

/// Reads a dump held in memory: the header at once, then records as an iterator.
///
/// After an error the iterator ends.
#[derive(Clone, Debug)]
pub struct DumpReader<'a> {
    input: &'a [u8],
    pos: usize,
    header: DumpHeader,
    max_record_len: u32,
    done: bool,
}

fn take<'a>(
    input: &'a [u8],
    pos: &mut usize,
    n: usize,
    field: &'static str,
) -> Result<&'a [u8], DumpError> {
    let start = *pos;
    let bytes = start
        .checked_add(n)
        .and_then(|end| input.get(start..end))
        .ok_or(DumpError::Truncated {
            field,
            offset: start,
        })?;
    *pos = start + n;
    Ok(bytes)
}

fn take_array<const N: usize>(
    input: &[u8],
    pos: &mut usize,
    field: &'static str,
) -> Result<[u8; N], DumpError> {
    let start = *pos;
    let bytes = take(input, pos, N, field)?;
    bytes.try_into().map_err(|_| DumpError::Truncated {
        field,
        offset: start,
    })
}

fn take_text<'a>(
    input: &'a [u8],
    pos: &mut usize,
    field: &'static str,
) -> Result<&'a str, DumpError> {
    let offset = *pos;
    let [len] = take_array::<1>(input, pos, field)?;
    let bytes = take(input, pos, usize::from(len), field)?;
    std::str::from_utf8(bytes).map_err(|_| DumpError::Invalid { field, offset })
}

impl<'a> DumpReader<'a> {
    /// Reads the header of `input`, accepting records up to [`DEFAULT_MAX_RECORD_LEN`] bytes.
    pub fn new(input: &'a [u8]) -> Result<Self, DumpError> {
        Self::with_max_record_len(input, DEFAULT_MAX_RECORD_LEN)
    }

    /// Reads the header of `input`, accepting records up to `max_record_len` bytes.
    pub fn with_max_record_len(input: &'a [u8], max_record_len: u32) -> Result<Self, DumpError> {
        let mut pos = 0;
        let magic = input.get(..MAGIC.len()).unwrap_or(input);
        if magic != MAGIC.get(..magic.len()).unwrap_or(&MAGIC) {
            return Err(DumpError::BadMagic);
        }
        take(input, &mut pos, MAGIC.len(), "magic")?;
        let version = u16::from_be_bytes(take_array(input, &mut pos, "version")?);
        if version != VERSION {
            return Err(DumpError::UnsupportedVersion { version });
        }
        let len_offset = pos;
        let header_len = u32::from_be_bytes(take_array(input, &mut pos, "header length")?);
        if header_len > MAX_HEADER_LEN {
            return Err(DumpError::TooLong {
                field: "header length",
                len: header_len.into(),
                limit: MAX_HEADER_LEN.into(),
                offset: len_offset,
            });
        }
        let fields_start = pos;
        let fields = take(input, &mut pos, header_len as usize, "header")?;
        // Header fields are read from their own slice: they cannot run past the header length.
        let mut p = 0;
        let at = |p: usize| fields_start + p;
        let rebase = |e: DumpError| match e {
            DumpError::Truncated { field, offset } => DumpError::Truncated {
                field,
                offset: at(offset),
            },
            DumpError::Invalid { field, offset } => DumpError::Invalid {
                field,
                offset: at(offset),
            },
            other => other,
        };
        let listener = take_text(fields, &mut p, "listener").map_err(rebase)?;
        let peer_offset = at(p);
        let peer = take_text(fields, &mut p, "peer").map_err(rebase)?;
        let peer: SocketAddr = peer.parse().map_err(|_| DumpError::Invalid {
            field: "peer",
            offset: peer_offset,
        })?;
        let start_unix_ms =
            u64::from_be_bytes(take_array(fields, &mut p, "start time").map_err(rebase)?);
        Ok(DumpReader {
            input,
            pos,
            header: DumpHeader {
                listener: listener.to_owned(),
                peer,
                start_unix_ms,
            },
            max_record_len,
            done: false,
        })
    }

    /// The dump's header.
    pub fn header(&self) -> &DumpHeader {
        &self.header
    }

    /// Offset of the next record.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn read_record(&mut self) -> Result<DumpRecord<'a>, DumpError> {
        let mut pos = self.pos;
        let offset_ms = u64::from_be_bytes(take_array(self.input, &mut pos, "record offset")?);
        let kind_offset = pos;
        let [kind] = take_array::<1>(self.input, &mut pos, "record kind")?;
        let kind = RecordKind::from_u8(kind).ok_or(DumpError::Invalid {
            field: "record kind",
            offset: kind_offset,
        })?;
        let len_offset = pos;
        let len = u32::from_be_bytes(take_array(self.input, &mut pos, "record length")?);
        if len > self.max_record_len {
            return Err(DumpError::TooLong {
                field: "record length",
                len: len.into(),
                limit: self.max_record_len.into(),
                offset: len_offset,
            });
        }
        if kind != RecordKind::Input && len != 0 {
            return Err(DumpError::Invalid {
                field: "record length (must be 0 for close and truncated)",
                offset: len_offset,
            });
        }
        let data = take(self.input, &mut pos, len as usize, "record data")?;
        self.pos = pos;
        Ok(DumpRecord {
            offset_ms,
            kind,
            data,
        })
    }
}

impl<'a> Iterator for DumpReader<'a> {
    type Item = Result<DumpRecord<'a>, DumpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.input.len() {
            return None;
        }
        let result = self.read_record();
        self.done = result.is_err();
        Some(result)
    }
}

/// A whole dump in memory, checked once.
#[derive(Clone, Debug)]
pub struct Dump {
    /// The header. Change `start_unix_ms` to move the dump on the replay clock.
    pub header: DumpHeader,
    data: Bytes,
    records_start: usize,
    /// Records readable before the error in a damaged dump; the rest is ignored.
    records_end: usize,
    /// Why reading stopped early, if it did.
    error: Option<DumpError>,
}

impl Dump {
    /// Reads a dump. A bad header is an error; a damaged record stops the dump there (the
    /// error is kept in [`Dump::error`]), so a dump cut short by a crash still replays.
    pub fn parse(data: Bytes) -> Result<Dump, DumpError> {
        let mut reader = DumpReader::new(&data)?;
        let header = reader.header().clone();
        let records_start = reader.position();
        let mut records_end = records_start;
        let mut error = None;
        while let Some(record) = reader.next() {
            if let Err(e) = record {
                error = Some(e);
                break;
            }
            records_end = reader.position();
        }
        Ok(Dump {
            header,
            data,
            records_start,
            records_end,
            error,
        })
    }

    /// The records (only the good ones of a damaged dump).
    pub fn records(&self) -> impl Iterator<Item = DumpRecord<'_>> {
        let input = self.data.get(..self.records_end).unwrap_or(&[]);
        let reader = DumpReader {
            input,
            pos: self.records_start,
            header: self.header.clone(),
            max_record_len: u32::MAX,
            done: false,
        };
        reader.map_while(Result::ok)
    }

    /// The inbound bytes, concatenated.
    pub fn input_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for r in self.records() {
            v.extend_from_slice(r.data);
        }
        v
    }

    /// Why the dump ends early, if it is damaged.
    pub fn error(&self) -> Option<&DumpError> {
        self.error.as_ref()
    }
}

/// One audio, video or data message, as a peer sent it or as the engine sent it to a player.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaMessage {
    /// RTMP message type / FLV tag type: audio 8, video 9, data 18.
    pub type_id: u8,
    /// Timestamp, ms.
    pub timestamp: u32,
    /// The FLV tag body / RTMP message payload.
    pub body: Bytes,
}

/// What a stream of media messages held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaSummary {
    /// Video messages, configurations included.
    pub video: usize,
    /// Video key frames (coded, not configurations).
    pub key_frames: usize,
    /// Audio messages, configurations included.
    pub audio: usize,
    /// Data (script) messages.
    pub data: usize,
    /// The video codec, from the first video message that parses.
    pub video_codec: Option<Codec>,
    /// The audio codec, from the first audio message that parses.
    pub audio_codec: Option<Codec>,
    /// Hex SHA-256 of the audio and video bodies in order, see [`digest_messages`].
    pub digest: String,
    /// The audio, video and data messages in order.
    pub messages: Vec<MediaMessage>,
    /// Why decoding stopped early, if it did.
    pub error: Option<String>,
}

/// Hex SHA-256 over the audio and video messages in order: for each, its type byte, its body
/// length (4 bytes, big-endian) and its body. Timestamps and data messages are left out, so a
/// publisher's messages and a player's (rebased) copies of them give the same digest.
pub fn digest_messages<'a>(messages: impl IntoIterator<Item = &'a MediaMessage>) -> String {
    let mut h = Sha256::new();
    for m in messages {
        if m.type_id == message_type::AUDIO || m.type_id == message_type::VIDEO {
            h.update([m.type_id]);
            h.update((m.body.len() as u32).to_be_bytes());
            h.update(&m.body);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl MediaSummary {
    fn from_messages(messages: Vec<MediaMessage>, error: Option<String>) -> Self {
        let mut s = MediaSummary {
            digest: digest_messages(&messages),
            error,
            ..MediaSummary::default()
        };
        for m in &messages {
            match m.type_id {
                message_type::VIDEO => {
                    s.video += 1;
                    if let Ok(Some(f)) = flv::frame_from_video_tag(m.timestamp, &m.body) {
                        s.video_codec.get_or_insert(f.codec);
                        if f.kind == FrameKind::Coded && f.key {
                            s.key_frames += 1;
                        }
                    }
                }
                message_type::AUDIO => {
                    s.audio += 1;
                    if let Ok(Some(f)) = flv::frame_from_audio_tag(m.timestamp, &m.body) {
                        s.audio_codec.get_or_insert(f.codec);
                    }
                }
                _ => s.data += 1,
            }
        }
        s.messages = messages;
        s
    }

    /// Decodes an RTMP byte stream as one side sent it: skips the handshake (C0+C1+C2 or
    /// S0+S1+S2), then collects audio, video and AMF0 data messages.
    pub fn from_rtmp(bytes: &[u8]) -> Self {
        let mut decoder = ChunkDecoder::new(&Limits::default());
        decoder.push(bytes.get(HANDSHAKE_LEN..).unwrap_or(&[]));
        let mut messages = Vec::new();
        let mut error = None;
        loop {
            match decoder.poll_message() {
                Ok(Some(m)) => {
                    if matches!(
                        m.type_id,
                        message_type::AUDIO | message_type::VIDEO | message_type::DATA_AMF0
                    ) {
                        messages.push(MediaMessage {
                            type_id: m.type_id,
                            timestamp: m.timestamp,
                            body: m.payload,
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        Self::from_messages(messages, error)
    }

    /// Decodes an FLV stream after an HTTP response head (or bare FLV when there is no head).
    pub fn from_http_flv(bytes: &[u8]) -> Self {
        let body = match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(i) if bytes.starts_with(b"HTTP/") => bytes.get(i + 4..).unwrap_or(&[]),
            _ => bytes,
        };
        let mut demuxer = FlvDemuxer::default();
        demuxer.push(body);
        let mut messages = Vec::new();
        let mut error = None;
        loop {
            match demuxer.poll_tag() {
                Ok(Some(tag)) => messages.push(MediaMessage {
                    type_id: tag.tag_type as u8,
                    timestamp: tag.timestamp,
                    body: tag.body,
                }),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        Self::from_messages(messages, error)
    }
}

/// One track of an RTSP session, as its SDP and SETUP exchange gave it, with what went over it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtspTrackSummary {
    /// The track's `a=control` value.
    pub control: String,
    /// The codec, when the SDP names one rill handles.
    pub codec: Option<Codec>,
    /// The interleaved RTP and RTCP channels the server's SETUP answer gave.
    pub channels: Option<(u8, u8)>,
    /// RTP packets the client sent on the track.
    pub rtp_in: usize,
    /// RTCP packets the client sent on the track.
    pub rtcp_in: usize,
    /// RTP packets the server sent on the track.
    pub rtp_out: usize,
    /// RTCP packets the server sent on the track.
    pub rtcp_out: usize,
    /// Coded frames (configurations left out) rebuilt from the media RTP: the client's for a
    /// record session, the server's for a play session.
    pub frames: usize,
    /// Media RTP packets that did not parse or depacketize.
    pub rtp_errors: usize,
}

/// What one RTSP connection exchanged over TCP: requests, answers and interleaved packets per
/// track, decoded from both directions. See [`RtspSummary::decode`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtspSummary {
    /// Methods of the client's requests, in order.
    pub requests: Vec<String>,
    /// Status codes of the server's answers, in order.
    pub responses: Vec<u16>,
    /// The session id the server's answers gave (in a replay, the replay engine's).
    pub session: Option<String>,
    /// The session's tracks in SDP order: the ANNOUNCE's SDP (record), else the DESCRIBE
    /// answer's (play).
    pub tracks: Vec<RtspTrackSummary>,
    /// Interleaved packets on channels no SETUP answer gave.
    pub stray_packets: usize,
    /// Why decoding stopped early, if it did.
    pub error: Option<String>,
}

/// Most bytes handed to an RTSP [`Reader`] at once (well under its buffer limit).
const RTSP_PUSH_LEN: usize = 16 * 1024;

/// One direction of an RTSP connection: its messages and interleaved frames.
#[derive(Default)]
struct RtspDirection {
    messages: Vec<Message>,
    frames: Vec<(u8, Bytes)>,
    error: Option<String>,
}

impl RtspDirection {
    fn read(bytes: &[u8]) -> Self {
        let mut reader = Reader::new(RtspLimits::default());
        let mut d = RtspDirection::default();
        for piece in bytes.chunks(RTSP_PUSH_LEN) {
            if let Err(e) = reader.push(piece) {
                d.error = Some(e.to_string());
                return d;
            }
            loop {
                match reader.poll_item() {
                    Ok(Some(Item::Message(m))) => d.messages.push(m),
                    Ok(Some(Item::Interleaved { channel, payload })) => {
                        d.frames.push((channel, payload))
                    }
                    Ok(None) => break,
                    Err(e) => {
                        d.error = Some(e.to_string());
                        return d;
                    }
                }
            }
        }
        d
    }

    fn requests(&self) -> impl Iterator<Item = &Request> {
        self.messages.iter().filter_map(|m| match m {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        })
    }

    fn responses(&self) -> impl Iterator<Item = &Response> {
        self.messages.iter().filter_map(|m| match m {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        })
    }

    /// The successful answer to the request with `cseq`.
    fn ok_answer(&self, cseq: Option<u32>) -> Option<&Response> {
        let cseq = cseq?;
        self.responses()
            .find(|r| r.headers.cseq() == Some(cseq) && r.status == 200)
    }
}

/// How one track's media RTP is turned into frames in [`RtspSummary::decode`].
enum TrackReceiver {
    /// A publisher's: the server's receiver, timestamps lined up across tracks as the engine's.
    Record(RtpReceiver),
    /// A player's: depacketized as it came.
    Play(Depacketizer),
}

/// A frame as an FLV tag, built the way the engine builds an RTSP publisher's (legacy video
/// tags; a codec FLV cannot carry gets an empty body). End-of-sequence frames give none.
fn flv_message(frame: &Frame) -> Option<MediaMessage> {
    if frame.kind == FrameKind::EndOfSequence {
        return None;
    }
    let (type_id, body) = match frame.track() {
        TrackKind::Video => (
            message_type::VIDEO,
            flv::video_tag_body(frame, VideoTagStyle::Legacy),
        ),
        TrackKind::Audio => (message_type::AUDIO, flv::audio_tag_body(frame)),
    };
    Some(MediaMessage {
        type_id,
        timestamp: frame.dts.clamp(0, i64::from(u32::MAX)) as u32,
        body: body.unwrap_or_default(),
    })
}

impl RtspSummary {
    /// Decodes an RTSP-over-TCP connection from what the client sent (`requests`) and what the
    /// server sent (`answers`). Tracks come from the SDP, their channels from the SETUP answers
    /// (paired with their requests by `CSeq`); the media RTP (the client's after an ANNOUNCE,
    /// else the server's) is depacketized per track and each frame turned into the FLV tag the
    /// engine makes of it, in the engine's order (a publisher's interleaved by decode time
    /// across tracks, a player's as it arrived): that is the returned [`MediaSummary`].
    pub fn decode(requests: &[u8], answers: &[u8]) -> (RtspSummary, MediaSummary) {
        let client = RtspDirection::read(requests);
        let server = RtspDirection::read(answers);
        let mut s = RtspSummary {
            requests: client.requests().map(|r| r.method.clone()).collect(),
            responses: server.responses().map(|r| r.status).collect(),
            session: server
                .responses()
                .find_map(|r| r.headers.session_id())
                .map(str::to_owned),
            error: client
                .error
                .as_ref()
                .map(|e| format!("client: {e}"))
                .or_else(|| server.error.as_ref().map(|e| format!("server: {e}"))),
            ..RtspSummary::default()
        };
        // The SDP and the URL its controls are relative to.
        let announce = client.requests().find(|r| r.method == "ANNOUNCE");
        let record = announce.is_some();
        let described = announce.map(|r| (r.uri.as_str(), &r.body)).or_else(|| {
            let describe = client.requests().find(|r| r.method == "DESCRIBE")?;
            let answer = server.ok_answer(describe.headers.cseq())?;
            let base = answer
                .headers
                .get("Content-Base")
                .or_else(|| answer.headers.get("Content-Location"))
                .unwrap_or(&describe.uri);
            Some((base, &answer.body))
        });
        let mut params = Vec::new();
        let mut controls = Vec::new();
        if let Some((base, body)) = described {
            match SessionDescription::parse(body) {
                Ok(sdp) => {
                    for (i, m) in sdp.media.iter().enumerate() {
                        let p = m.track_params(i).ok();
                        let control = m.control().unwrap_or_default().to_owned();
                        controls.push(url_path(&resolve_control(base, &control)).0);
                        s.tracks.push(RtspTrackSummary {
                            control,
                            codec: p.as_ref().map(|p| p.codec.codec()),
                            ..RtspTrackSummary::default()
                        });
                        params.push(p);
                    }
                }
                Err(e) => {
                    s.error.get_or_insert_with(|| format!("sdp: {e}"));
                }
            }
        }
        // Channels, from the SETUP answers.
        for (k, setup) in client
            .requests()
            .filter(|r| r.method == "SETUP")
            .enumerate()
        {
            let Some(answer) = server.ok_answer(setup.headers.cseq()) else {
                continue;
            };
            let path = url_path(&setup.uri).0;
            let track = controls
                .iter()
                .position(|c| c.trim_end_matches('/') == path.trim_end_matches('/'))
                .unwrap_or(k);
            let channels = answer
                .headers
                .get("Transport")
                .and_then(|t| Transport::parse_list(t).ok())
                .and_then(|l| l.into_iter().find_map(|t| t.interleaved));
            if let Some(t) = s.tracks.get_mut(track) {
                t.channels = channels;
            }
        }
        let find = |tracks: &[RtspTrackSummary], channel: u8| {
            tracks
                .iter()
                .enumerate()
                .find_map(|(i, t)| match t.channels {
                    Some((rtp, _)) if rtp == channel => Some((i, false)),
                    Some((_, rtcp)) if rtcp == channel => Some((i, true)),
                    _ => None,
                })
        };
        for (from_client, dir) in [(true, &client), (false, &server)] {
            for (channel, _) in &dir.frames {
                let Some((i, rtcp)) = find(&s.tracks, *channel) else {
                    s.stray_packets += 1;
                    continue;
                };
                if let Some(t) = s.tracks.get_mut(i) {
                    let n = match (from_client, rtcp) {
                        (true, false) => &mut t.rtp_in,
                        (true, true) => &mut t.rtcp_in,
                        (false, false) => &mut t.rtp_out,
                        (false, true) => &mut t.rtcp_out,
                    };
                    *n += 1;
                }
            }
        }
        // The media, per track as the engine receives it (TCP keeps the order: a window of 1,
        // as the server uses): a publisher's through the server's own receiver, which lines
        // the tracks up by their first sender reports; a player's depacketized as it came.
        // Frames in arrival order, then what each track still held.
        let mut ntp_base = None;
        let mut seed = Seed::new(b"");
        let mut receivers: Vec<Option<TrackReceiver>> = params
            .iter()
            .map(|p| {
                let p = p.as_ref()?;
                if record {
                    RtpReceiver::new(p, 1, &mut seed)
                        .ok()
                        .map(TrackReceiver::Record)
                } else {
                    Depacketizer::new(p, 1).ok().map(TrackReceiver::Play)
                }
            })
            .collect();
        let mut frames = Vec::new();
        let media = if record { &client } else { &server };
        for (channel, payload) in &media.frames {
            let Some((i, rtcp)) = find(&s.tracks, *channel) else {
                continue;
            };
            let (Some(Some(rx)), Some(t)) = (receivers.get_mut(i), s.tracks.get_mut(i)) else {
                continue;
            };
            let mut out = |f| frames.push((i, f));
            let pushed = match rx {
                TrackReceiver::Record(r) if rtcp => r.on_rtcp(payload, 0, &mut ntp_base),
                TrackReceiver::Record(r) => r.on_rtp(payload, 0, &mut out),
                TrackReceiver::Play(_) if rtcp => continue,
                TrackReceiver::Play(d) => RtpPacket::parse(payload)
                    .and_then(|p| d.push(p))
                    .map(|()| std::iter::from_fn(|| d.poll_frame()).for_each(&mut out)),
            };
            if pushed.is_err() && !rtcp {
                t.rtp_errors += 1;
            }
        }
        for (i, rx) in receivers.iter_mut().enumerate() {
            let mut out = |f| frames.push((i, f));
            match rx {
                Some(TrackReceiver::Record(r)) => {
                    let _ = r.flush(&mut out);
                }
                Some(TrackReceiver::Play(d)) => {
                    let _ = d.flush();
                    std::iter::from_fn(|| d.poll_frame()).for_each(&mut out);
                }
                None => {}
            }
        }
        for (i, f) in &frames {
            if f.kind == FrameKind::Coded {
                if let Some(t) = s.tracks.get_mut(*i) {
                    t.frames += 1;
                }
            }
        }
        // A publisher's frames go through the interleaver the engine puts them through, over
        // the tracks that were set up; a player's come in the order the engine sent them.
        let set_up = |kind| {
            s.tracks
                .iter()
                .any(|t| t.channels.is_some() && t.codec.map(Codec::track) == Some(kind))
        };
        let mut interleaver = Interleaver::new(
            record && set_up(TrackKind::Video),
            record && set_up(TrackKind::Audio),
            RTSP_PUBLISHER_WAIT_MS,
        );
        let mut messages = Vec::with_capacity(frames.len());
        for (_, f) in frames {
            interleaver.push(f);
            while let Some(f) = interleaver.poll_frame() {
                messages.extend(flv_message(&f));
            }
        }
        interleaver.flush();
        while let Some(f) = interleaver.poll_frame() {
            messages.extend(flv_message(&f));
        }
        let media_error = s.error.clone();
        (s, MediaSummary::from_messages(messages, media_error))
    }
}

/// Replaying an RTSP client: the client echoes the session id the recording server handed out,
/// which the replay engine (another random seed) does not know. The id the engine hands out is
/// read from its answers, and the first id the client sends after that (the recording
/// server's) is replaced by it in every `Session:` header line the client sends.
#[derive(Debug)]
struct SessionIds {
    /// The id the engine handed out, once its answers said it.
    replayed: Option<Vec<u8>>,
    /// The id the client echoes.
    recorded: Option<Vec<u8>>,
    /// Reads the engine's answers until the id is known.
    answers: Option<Reader>,
    /// The start of a line cut by the end of a read that may be a `Session:` line: held back
    /// until its end arrives (the engine could not act on it before anyway).
    carry: Vec<u8>,
    /// The last byte fed ended a line.
    line_start: bool,
}

/// The header name looked for, lowercase.
const SESSION_HEADER: &[u8] = b"session:";
/// Longest cut `Session:` line held back; a longer one is passed through unchanged.
const MAX_SESSION_LINE: usize = 512;

impl SessionIds {
    fn new() -> Self {
        SessionIds {
            replayed: None,
            recorded: None,
            answers: Some(Reader::new(RtspLimits::default())),
            carry: Vec::new(),
            line_start: true,
        }
    }

    /// Bytes the engine sent on the connection.
    fn on_answer(&mut self, bytes: &[u8]) {
        let Some(reader) = &mut self.answers else {
            return;
        };
        for piece in bytes.chunks(RTSP_PUSH_LEN) {
            if reader.push(piece).is_err() {
                self.answers = None;
                return;
            }
            loop {
                match reader.poll_item() {
                    Ok(Some(Item::Message(Message::Response(r)))) => {
                        if let Some(id) = r.headers.session_id() {
                            self.replayed = Some(id.as_bytes().to_vec());
                            self.answers = None;
                            return;
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => {
                        self.answers = None;
                        return;
                    }
                }
            }
        }
    }

    /// The bytes of one read of the client, to feed in its place (see the type's docs).
    fn rewrite(&mut self, data: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(data);
        let mut out = Vec::with_capacity(buf.len());
        let mut copied = 0;
        let mut hold = buf.len();
        let first = self.line_start.then_some(0);
        let starts = first.into_iter().chain(
            buf.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        for start in starts {
            let rest = buf.get(start..).unwrap_or_default();
            let name = rest.get(..SESSION_HEADER.len()).unwrap_or(rest);
            let prefix = SESSION_HEADER.get(..name.len()).unwrap_or_default();
            if rest.is_empty() || !name.eq_ignore_ascii_case(prefix) {
                continue;
            }
            let Some(end) = rest.iter().position(|b| *b == b'\n') else {
                if rest.len() <= MAX_SESSION_LINE {
                    hold = start;
                }
                break;
            };
            let value = rest.get(SESSION_HEADER.len()..end).unwrap_or_default();
            let skip = value
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
            let id_len = value
                .iter()
                .skip(skip)
                .take_while(|b| !matches!(b, b';' | b'\r' | b' ' | b'\t'))
                .count();
            let id_start = start + SESSION_HEADER.len() + skip;
            let Some(id) = buf.get(id_start..id_start + id_len) else {
                continue;
            };
            let Some(replayed) = &self.replayed else {
                continue;
            };
            let recorded = self.recorded.get_or_insert_with(|| id.to_vec());
            if id == recorded.as_slice() {
                out.extend_from_slice(buf.get(copied..id_start).unwrap_or_default());
                out.extend_from_slice(replayed);
                copied = id_start + id_len;
            }
        }
        out.extend_from_slice(buf.get(copied..hold).unwrap_or_default());
        self.carry = buf.get(hold..).unwrap_or_default().to_vec();
        self.line_start = if self.carry.is_empty() {
            buf.last().map_or(self.line_start, |b| *b == b'\n')
        } else {
            true
        };
        out
    }

    /// What is still held back (fed when the connection ends).
    fn take_carry(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }
}

/// What replaying one dump's connection gave.
#[derive(Clone, Debug)]
pub struct ConnReport {
    /// The connection id used in the replay (the dump's index + 1).
    pub conn: ConnId,
    /// The dump's listener.
    pub listener: String,
    /// The dump's peer.
    pub peer: SocketAddr,
    /// When the connection was accepted on the replay clock (ms).
    pub accepted_ms: u64,
    /// Inbound bytes fed.
    pub bytes_in: u64,
    /// Bytes the engine sent.
    pub bytes_out: u64,
    /// Session records the engine emitted (starts, then the end).
    pub sessions: Vec<SessionRecord>,
    /// The engine asked to close the connection (rather than the dump ending it).
    pub closed_by_engine: bool,
    /// The media the peer sent, for an RTMP or RTSP connection that published (for RTSP, its
    /// frames as the FLV tags the engine muxes them into, see [`RtspSummary::decode`]).
    pub published: Option<MediaSummary>,
    /// The media the engine sent, for an RTMP, HTTP-FLV or RTSP player.
    pub played: Option<MediaSummary>,
    /// The requests, answers and packets per track of an RTSP connection.
    pub rtsp: Option<RtspSummary>,
    /// Why the replay of this connection could not be complete (damaged dump, unknown listener).
    pub error: Option<String>,
}

impl ConnReport {
    /// The first session-start record, if any.
    pub fn started(&self) -> Option<&SessionRecord> {
        self.sessions.iter().find(|r| r.reason.is_empty())
    }
}

/// What a replay gave, per dump in the order given.
#[derive(Clone, Debug)]
pub struct ReplayReport {
    /// One per dump.
    pub connections: Vec<ConnReport>,
    /// The replay clock when everything was closed (ms).
    pub end_ms: u64,
}

struct ReplayConn {
    open: bool,
    out: Vec<u8>,
    /// Session id rewriting, for an RTSP connection.
    rtsp_ids: Option<SessionIds>,
    report: ConnReport,
}

/// The seed of the replay engine's handshake randomness (fixed: replays are deterministic).
pub const REPLAY_SEED: u64 = 0x5EED_D0D0;

/// The name a dump header gives `listener` (what runtimes pass to their recorder).
pub fn listener_name(listener: Listener) -> &'static str {
    match listener {
        Listener::Rtmp => "rtmp",
        Listener::Http => "http",
        Listener::Rtsp => "rtsp",
        Listener::Api => "api",
    }
}

/// The listener a dump header names, if the engine serves it (the inverse of [`listener_name`]).
pub fn listener_of(name: &str) -> Option<Listener> {
    match name {
        "rtmp" => Some(Listener::Rtmp),
        "http" => Some(Listener::Http),
        "rtsp" => Some(Listener::Rtsp),
        "api" => Some(Listener::Api),
        _ => None,
    }
}

/// Feeds `dumps` into a fresh engine on a virtual clock and reports what came out.
///
/// Dump `i` is connection `i + 1`, accepted at its `start_unix_ms` relative to the earliest
/// dump's (the replay clock starts at 0). Its records are fed at their offsets, interleaved with
/// the other dumps' by time (ties keep dump order); deadlines that fall between records fire as
/// the clock passes them. After every step each open connection's output is drained with a large
/// budget, as a runtime with an always-writable socket would. A close record, or the end of the
/// dump, closes the connection. A dump whose listener the engine does not serve is reported with
/// an error and not fed.
///
/// RTSP clients echo the session id the recording server handed out, which the replay engine
/// (another seed) does not know: the id the engine hands out is read from its answers, and the
/// first id the client sends after that is replaced by it in the client's `Session:` header
/// lines (a line cut by the end of a read is held back until its end arrives). Each RTSP
/// connection's report has an [`RtspSummary`], and its media as
/// [`ConnReport::published`] or [`ConnReport::played`].
pub fn replay(dumps: &[Dump], config: EngineConfig) -> ReplayReport {
    let mut engine = Engine::new(config, REPLAY_SEED);
    let base = dumps
        .iter()
        .map(|d| d.header.start_unix_ms)
        .min()
        .unwrap_or(0);
    // (time, dump index, step): step None is the accept, Some(record) a record, in order.
    let mut steps: Vec<(u64, usize, Option<DumpRecord<'_>>)> = Vec::new();
    let mut conns: Vec<ReplayConn> = Vec::with_capacity(dumps.len());
    for (i, d) in dumps.iter().enumerate() {
        let at = d.header.start_unix_ms.saturating_sub(base);
        let error = match listener_of(&d.header.listener) {
            None => Some(format!(
                "listener {:?} is not replayable",
                d.header.listener
            )),
            Some(_) => d.error().map(|e| e.to_string()),
        };
        if listener_of(&d.header.listener).is_some() {
            steps.push((at, i, None));
            let mut last = at;
            for r in d.records() {
                // Offsets never go backwards on the replay clock.
                last = last.max(at.saturating_add(r.offset_ms));
                steps.push((last, i, Some(r)));
            }
        }
        conns.push(ReplayConn {
            open: false,
            out: Vec::new(),
            rtsp_ids: (listener_of(&d.header.listener) == Some(Listener::Rtsp))
                .then(SessionIds::new),
            report: ConnReport {
                conn: i as ConnId + 1,
                listener: d.header.listener.clone(),
                peer: d.header.peer,
                accepted_ms: at,
                bytes_in: 0,
                bytes_out: 0,
                sessions: Vec::new(),
                closed_by_engine: false,
                published: None,
                played: None,
                rtsp: None,
                error,
            },
        });
    }
    steps.sort_by_key(|(t, _, _)| *t);
    let mut now = 0;
    let mut replay = Replay {
        engine: &mut engine,
        conns: &mut conns,
    };
    for (at, i, step) in steps {
        replay.advance(now, at);
        now = at;
        let conn = i as ConnId + 1;
        let Some(c) = replay.conns.get_mut(i) else {
            continue;
        };
        match step {
            None => {
                // listener_of succeeded when the accept step was pushed.
                if let Some(l) = listener_of(&c.report.listener) {
                    c.open = true;
                    replay.engine.handle_accept(conn, l, c.report.peer, now);
                }
            }
            // The engine closed it: a real socket would be gone, later bytes are not fed.
            Some(_) if !c.open => {}
            Some(r) => match r.kind {
                RecordKind::Input => {
                    c.report.bytes_in += r.data.len() as u64;
                    match &mut c.rtsp_ids {
                        Some(ids) => {
                            let data = ids.rewrite(r.data);
                            replay.engine.handle_input(conn, &data, now);
                        }
                        None => replay.engine.handle_input(conn, r.data, now),
                    }
                }
                RecordKind::Close => {
                    c.open = false;
                    c.feed_held(replay.engine, conn, now);
                    replay.engine.handle_close(conn, "peer closed (dump)", now);
                }
                RecordKind::Truncated => {}
            },
        }
        replay.drain(now);
    }
    for i in 0..replay.conns.len() {
        let conn = i as ConnId + 1;
        if let Some(c) = replay.conns.get_mut(i) {
            if c.open {
                c.open = false;
                c.feed_held(replay.engine, conn, now);
                replay.engine.handle_close(conn, "end of dump", now);
            }
        }
        replay.drain(now);
    }
    for (c, d) in conns.iter_mut().zip(dumps) {
        let role = c.report.started().map(|r| (r.protocol, r.role));
        match role {
            Some((Protocol::Rtmp, Role::Publish)) => {
                c.report.published = Some(MediaSummary::from_rtmp(&d.input_bytes()));
            }
            Some((Protocol::Rtmp, Role::Play)) => {
                c.report.played = Some(MediaSummary::from_rtmp(&c.out));
            }
            Some((Protocol::HttpFlv, Role::Play)) => {
                c.report.played = Some(MediaSummary::from_http_flv(&c.out));
            }
            _ => {}
        }
        if c.rtsp_ids.is_some() {
            let (rtsp, media) = RtspSummary::decode(&d.input_bytes(), &c.out);
            match role {
                Some((Protocol::Rtsp, Role::Publish)) => c.report.published = Some(media),
                Some((Protocol::Rtsp, Role::Play)) => c.report.played = Some(media),
                _ => {}
            }
            c.report.rtsp = Some(rtsp);
        }
    }
    ReplayReport {
        connections: conns.into_iter().map(|c| c.report).collect(),
        end_ms: now,
    }
}

impl ReplayConn {
    /// Feeds what the session id rewriting still holds back (the connection is ending).
    fn feed_held(&mut self, engine: &mut Engine, conn: ConnId, now: u64) {
        if let Some(held) = self.rtsp_ids.as_mut().map(SessionIds::take_carry) {
            if !held.is_empty() {
                engine.handle_input(conn, &held, now);
            }
        }
    }
}

struct Replay<'e, 'c> {
    engine: &'e mut Engine,
    conns: &'c mut Vec<ReplayConn>,
}

/// Far more than any step produces: the replay's sockets never push back.
const REPLAY_BUDGET: usize = 1 << 30;

impl Replay<'_, '_> {
    /// Fires every deadline after `from` up to and including `to`.
    fn advance(&mut self, from: u64, to: u64) {
        let mut last = from;
        while let Some(t) = self.engine.poll_timeout() {
            if t > to {
                break;
            }
            // A deadline already past fires now; the clock never goes backwards.
            let t = t.max(last);
            self.engine.handle_timeout(t);
            self.drain(t);
            last = t;
            if self.engine.poll_timeout() == Some(t) {
                // Nothing moved the deadline: do not spin on it.
                break;
            }
        }
    }

    fn index(conn: ConnId) -> Option<usize> {
        usize::try_from(conn).ok()?.checked_sub(1)
    }

    fn transmit(&mut self, conn: ConnId) {
        let Some(c) = Self::index(conn).and_then(|i| self.conns.get_mut(i)) else {
            return;
        };
        let mut out = Vec::new();
        while self.engine.poll_transmit(conn, REPLAY_BUDGET, &mut out) > 0 {
            for b in out.drain(..) {
                c.report.bytes_out += b.len() as u64;
                c.out.extend_from_slice(&b);
                if let Some(ids) = &mut c.rtsp_ids {
                    ids.on_answer(&b);
                }
            }
        }
    }

    /// Handles every output, then drains every open connection.
    fn drain(&mut self, now: u64) {
        let mut records: HashMap<ConnId, Vec<SessionRecord>> = HashMap::new();
        loop {
            let mut any = false;
            while let Some(o) = self.engine.poll_output() {
                any = true;
                match o {
                    Output::Transmit(conn) => self.transmit(conn),
                    Output::Close { conn, flush } => {
                        if flush {
                            self.transmit(conn);
                        }
                        if let Some(c) = Self::index(conn).and_then(|i| self.conns.get_mut(i)) {
                            c.report.closed_by_engine = true;
                            if c.open {
                                c.open = false;
                                self.engine.handle_close(conn, "closed by server", now);
                            }
                        }
                    }
                    Output::SessionStarted(r) | Output::SessionEnded(r) => {
                        records.entry(r.conn).or_default().push(r)
                    }
                    _ => {}
                }
            }
            for i in 0..self.conns.len() {
                if self.conns.get(i).is_some_and(|c| c.open) {
                    self.transmit(i as ConnId + 1);
                }
            }
            if !any {
                break;
            }
        }
        for (conn, mut rs) in records {
            if let Some(c) = Self::index(conn).and_then(|i| self.conns.get_mut(i)) {
                c.report.sessions.append(&mut rs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> DumpHeader {
        DumpHeader {
            listener: "rtmp".into(),
            peer: "192.0.2.7:50000".parse().unwrap(),
            start_unix_ms: 1_700_000_000_123,
        }
    }

    fn sample() -> BytesMut {
        let mut b = BytesMut::new();
        encode_header(&header(), &mut b);
        encode_record(0, RecordKind::Input, b"hello", &mut b);
        encode_record(25, RecordKind::Input, b"", &mut b);
        encode_record(40, RecordKind::Close, b"ignored", &mut b);
        b
    }

    #[test]
    fn listener_names_round_trip() {
        for l in [Listener::Rtmp, Listener::Http] {
            assert_eq!(listener_of(listener_name(l)), Some(l));
        }
    }

    #[test]
    fn round_trip() {
        let b = sample();
        let reader = DumpReader::new(&b).unwrap();
        assert_eq!(reader.header(), &header());
        let records: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(
            records,
            vec![
                DumpRecord {
                    offset_ms: 0,
                    kind: RecordKind::Input,
                    data: b"hello"
                },
                DumpRecord {
                    offset_ms: 25,
                    kind: RecordKind::Input,
                    data: b""
                },
                DumpRecord {
                    offset_ms: 40,
                    kind: RecordKind::Close,
                    data: b""
                },
            ]
        );
    }

    #[test]
    fn every_cut_is_an_error_or_a_prefix_never_a_panic() {
        let b = sample();
        for n in 0..b.len() {
            let Ok(reader) = DumpReader::new(&b[..n]) else {
                continue;
            };
            let results: Vec<_> = reader.collect();
            if let Some(Err(e)) = results.last() {
                assert!(matches!(e, DumpError::Truncated { .. }), "{e}");
            }
        }
    }

    #[test]
    fn errors_name_field_and_offset() {
        assert_eq!(
            DumpReader::new(b"RILLDUMX").unwrap_err(),
            DumpError::BadMagic
        );
        let mut b = sample();
        b[9] = 2;
        assert_eq!(
            DumpReader::new(&b).unwrap_err(),
            DumpError::UnsupportedVersion { version: 2 }
        );
        let mut b = sample();
        b[10..14].copy_from_slice(&5000u32.to_be_bytes());
        assert_eq!(
            DumpReader::new(&b).unwrap_err().to_string(),
            "dump: header length 5000 at offset 10 exceeds the limit 4096"
        );
        // A record longer than the reader's limit.
        let b = sample();
        let first = DumpReader::new(&b).unwrap().position();
        let err = DumpReader::with_max_record_len(&b, 4)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err,
            DumpError::TooLong {
                field: "record length",
                len: 5,
                limit: 4,
                offset: first + 9
            }
        );
        // An unknown kind.
        let mut b = sample();
        b[first + 8] = 9;
        let err = DumpReader::new(&b).unwrap().next().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("dump: invalid record kind at offset {}", first + 8)
        );
        // A bad peer address.
        let mut b = BytesMut::new();
        b.put_slice(&MAGIC);
        b.put_u16(VERSION);
        b.put_u32(1 + 4 + 1 + 3 + 8);
        b.put_u8(4);
        b.put_slice(b"rtmp");
        b.put_u8(3);
        b.put_slice(b"xyz");
        b.put_u64(0);
        assert_eq!(
            DumpReader::new(&b).unwrap_err(),
            DumpError::Invalid {
                field: "peer",
                offset: 19
            }
        );
    }

    #[test]
    fn damaged_dump_keeps_its_good_records() {
        let mut b = sample();
        b.truncate(b.len() - 3);
        let d = Dump::parse(b.freeze()).unwrap();
        assert_eq!(d.records().count(), 2);
        assert!(matches!(d.error(), Some(DumpError::Truncated { .. })));
        assert_eq!(d.input_bytes(), b"hello");
    }

    #[test]
    fn unknown_listener_is_reported_not_fed() {
        let mut b = BytesMut::new();
        let mut h = header();
        h.listener = "carrier-pigeon".into();
        encode_header(&h, &mut b);
        encode_record(0, RecordKind::Input, b"coo", &mut b);
        let report = replay(&[Dump::parse(b.freeze()).unwrap()], EngineConfig::default());
        let c = &report.connections[0];
        assert!(c.error.as_deref().unwrap().contains("carrier-pigeon"));
        assert_eq!(c.bytes_in, 0);
    }

    #[test]
    fn http_request_for_a_missing_stream_replays_to_a_404_after_the_wait() {
        let mut b = BytesMut::new();
        let mut h = header();
        h.listener = "http".into();
        encode_header(&h, &mut b);
        encode_record(
            3,
            RecordKind::Input,
            b"GET /live/none.flv HTTP/1.1\r\nHost: x\r\n\r\n",
            &mut b,
        );
        encode_record(60_000, RecordKind::Close, b"", &mut b);
        let report = replay(&[Dump::parse(b.freeze()).unwrap()], EngineConfig::default());
        let c = &report.connections[0];
        assert!(c.closed_by_engine);
        assert!(c.bytes_out > 0);
        assert!(c.sessions.iter().any(|r| r.reason == "stream not found"));
    }

    /// Rewrites `reads` after the engine handed out `replayed`, and returns what is fed.
    fn rewritten(replayed: &str, reads: &[&[u8]]) -> Vec<u8> {
        let mut ids = SessionIds::new();
        ids.on_answer(
            format!("RTSP/1.0 200 OK\r\nCSeq: 1\r\nSession: {replayed};timeout=60\r\n\r\n")
                .as_bytes(),
        );
        let mut fed = Vec::new();
        for r in reads {
            fed.extend(ids.rewrite(r));
        }
        fed.extend(ids.take_carry());
        fed
    }

    #[test]
    fn rtsp_session_ids_are_mapped_in_session_lines_only() {
        let req = |m: &str, id: &str| {
            format!("{m} rtsp://h/live/x RTSP/1.0\r\nCSeq: 2\r\nSession: {id}\r\n\r\n")
        };
        let input = format!(
            "{}$\x00\x00\x04AAAA{}{}",
            req("SETUP", "AAAA"),
            req("RECORD", "AAAA;timeout=5").replace("Session", "session"),
            req("TEARDOWN", "BBBB"),
        );
        let fed = rewritten("XYZ", &[input.as_bytes()]);
        let expected = format!(
            "{}$\x00\x00\x04AAAA{}{}",
            req("SETUP", "XYZ"),
            req("RECORD", "XYZ;timeout=5").replace("Session", "session"),
            // Not the id first echoed: left as is (the engine answers 454, as the recording
            // server did).
            req("TEARDOWN", "BBBB"),
        );
        assert_eq!(String::from_utf8(fed).unwrap(), expected);
    }

    #[test]
    fn rtsp_session_lines_cut_between_reads_are_held_then_mapped() {
        let whole =
            b"RECORD rtsp://h/live/x RTSP/1.0\r\nCSeq: 5\r\nSession: 0123456789ABCDEF\r\n\r\n";
        let expected =
            b"RECORD rtsp://h/live/x RTSP/1.0\r\nCSeq: 5\r\nSession: FEDCBA9876543210\r\n\r\n";
        for cut in 0..whole.len() {
            let (a, b) = whole.split_at(cut);
            assert_eq!(
                rewritten("FEDCBA9876543210", &[a, b]),
                expected.to_vec(),
                "cut at {cut}"
            );
        }
        // Only the start of a possible `Session:` line is held, and only until the next read.
        let mut ids = SessionIds::new();
        assert_eq!(ids.rewrite(b"$\x00\x00\x02\nS"), b"$\x00\x00\x02\n");
        assert_eq!(ids.rewrite(b"x"), b"Sx");
        assert_eq!(ids.rewrite(b"\nsess"), b"\n");
        assert_eq!(ids.take_carry(), b"sess");
    }

    #[test]
    fn rtsp_session_ids_are_untouched_before_the_engine_hands_one_out() {
        let mut ids = SessionIds::new();
        let req = b"SETUP rtsp://h/x RTSP/1.0\r\nSession: AAAA\r\n\r\n";
        assert_eq!(ids.rewrite(req), req.to_vec());
        assert_eq!(ids.recorded, None);
    }

    /// An RTSP publisher (rill's own client) recorded against an engine with another seed than
    /// the replay's: its RECORD and TEARDOWN carry a session id the replay engine never handed
    /// out, and still replay to the same session.
    #[test]
    fn rtsp_publisher_recorded_against_another_seed_replays() {
        use crate::rtp::{CodecParams, TrackParams};
        use crate::rtsp::client::{ClientConfig, ClientEvent, ClientSession};
        use crate::rtsp::server::Transmit;

        let mut engine = Engine::new(EngineConfig::default(), 42);
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        engine.handle_accept(1, Listener::Rtsp, peer, 0);
        let track = TrackParams {
            payload_type: 8,
            clock_rate: 8000,
            channels: 1,
            codec: CodecParams::G711A,
        };
        let mut client = ClientSession::record(
            ClientConfig::new("rtsp://127.0.0.1/live/g"),
            vec![track],
            &[7; 16],
            0,
        )
        .unwrap();
        let mut dump = BytesMut::new();
        encode_header(
            &DumpHeader {
                listener: "rtsp".into(),
                peer,
                start_unix_ms: 1_000,
            },
            &mut dump,
        );
        let mut events = Vec::new();
        let mut pump = |client: &mut ClientSession, dump: &mut BytesMut, now: u64| loop {
            let mut moved = false;
            while let Some(t) = client.poll_transmit() {
                if let Transmit::Tcp(b) = t {
                    encode_record(now, RecordKind::Input, &b, dump);
                    engine.handle_input(1, &b, now);
                    moved = true;
                }
            }
            while engine.poll_output().is_some() {}
            let mut out = Vec::new();
            engine.poll_transmit(1, usize::MAX, &mut out);
            for b in out {
                client.handle_input(&b, now).unwrap();
                moved = true;
            }
            events.extend(std::iter::from_fn(|| client.poll_event()));
            if !moved {
                break;
            }
        };
        pump(&mut client, &mut dump, 0);
        let recorded_id = client.session_id().unwrap().to_owned();
        for i in 0..50u8 {
            let now = 10 + u64::from(i) * 20;
            let frame = Frame {
                codec: Codec::G711A,
                kind: FrameKind::Coded,
                dts: i64::from(i) * 20,
                pts: i64::from(i) * 20,
                key: true,
                payload: Bytes::from(vec![i; 160]),
            };
            client.send_frame(0, &frame, now).unwrap();
            pump(&mut client, &mut dump, now);
        }
        client.teardown();
        pump(&mut client, &mut dump, 1_100);
        encode_record(1_100, RecordKind::Close, &[], &mut dump);
        assert!(events.contains(&ClientEvent::Recording), "{events:?}");

        let report = replay(
            &[Dump::parse(dump.freeze()).unwrap()],
            EngineConfig::default(),
        );
        let c = &report.connections[0];
        let started = c.started().expect("the publish session starts");
        assert_eq!(
            (started.protocol, started.role, started.stream.as_str()),
            (Protocol::Rtsp, Role::Publish, "live/g")
        );
        let rtsp = c.rtsp.as_ref().unwrap();
        assert_eq!(rtsp.requests, ["ANNOUNCE", "SETUP", "RECORD", "TEARDOWN"]);
        assert_eq!(rtsp.responses, [200, 200, 200, 200]);
        let t = &rtsp.tracks[0];
        assert_eq!(
            (t.codec, t.channels, t.rtp_in, t.frames),
            (Some(Codec::G711A), Some((0, 1)), 50, 50)
        );
        let media = c.published.as_ref().unwrap();
        assert_eq!((media.audio, media.audio_codec), (50, Some(Codec::G711A)));
        // The replay engine handed out another id: the client's was mapped to it.
        let replayed = rtsp.session.as_deref().expect("a session id");
        assert_ne!(replayed, recorded_id);
    }

    proptest::proptest! {
        #[test]
        fn encode_then_read_gives_back_the_records(
            listener in "[a-z]{0,12}",
            port in proptest::prelude::any::<u16>(),
            start in proptest::prelude::any::<u64>(),
            records in proptest::collection::vec(
                (proptest::prelude::any::<u64>(), 0u8..3, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
                0..16,
            ),
        ) {
            let header = DumpHeader {
                listener,
                peer: SocketAddr::from(([10, 0, 0, 1], port)),
                start_unix_ms: start,
            };
            let mut b = BytesMut::new();
            encode_header(&header, &mut b);
            let mut expected = Vec::new();
            for (offset, kind, data) in &records {
                let kind = RecordKind::from_u8(*kind).unwrap();
                encode_record(*offset, kind, data, &mut b);
                let data: &[u8] = if kind == RecordKind::Input { data } else { &[] };
                expected.push((*offset, kind, data.to_vec()));
            }
            let reader = DumpReader::new(&b).unwrap();
            proptest::prop_assert_eq!(reader.header(), &header);
            let got: Vec<_> = reader
                .map(|r| r.map(|r| (r.offset_ms, r.kind, r.data.to_vec())))
                .collect::<Result<_, _>>()
                .unwrap();
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
