//! Debug dumps: every inbound byte chunk of one connection with its time, and a replayer that
//! feeds dumps into a fresh [`Engine`] on a virtual clock.
//!
//! A runtime records a dump per connection (see `rill_runtime_common::dump`); when something
//! goes wrong in the field, [`replay`] reproduces the session in a test with no sockets.
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
use crate::flv::{self, FlvDemuxer};
use crate::limits::Limits;
use crate::media::{Codec, FrameKind};
use crate::rtmp::chunk::ChunkDecoder;
use crate::rtmp::handshake::HANDSHAKE_LEN;
use crate::rtmp::message_type;

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
    /// The media the peer sent, for an RTMP connection that published.
    pub published: Option<MediaSummary>,
    /// The media the engine sent, for an RTMP or HTTP-FLV player.
    pub played: Option<MediaSummary>,
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
    }
}

/// The listener a dump header names, if the engine serves it (the inverse of [`listener_name`]).
pub fn listener_of(name: &str) -> Option<Listener> {
    match name {
        "rtmp" => Some(Listener::Rtmp),
        "http" => Some(Listener::Http),
        "rtsp" => Some(Listener::Rtsp),
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
                    replay.engine.handle_input(conn, r.data, now);
                }
                RecordKind::Close => {
                    c.open = false;
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
    }
    ReplayReport {
        connections: conns.into_iter().map(|c| c.report).collect(),
        end_ms: now,
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
