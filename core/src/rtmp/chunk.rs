//! The RTMP chunk stream (RTMP specification 1.0, section 5.3): splitting messages into chunks
//! with compressed headers, and reassembling them.
//!
//! # Wire format
//!
//! Every chunk starts with a basic header: a 2-bit `fmt` and a chunk stream id (csid) of 2..=65599
//! in 1 byte (2..=63), 2 bytes (64..=319) or 3 bytes (64..=65599). A message header follows whose
//! size depends on `fmt`:
//!
//! | fmt | bytes | fields                                                         |
//! |-----|-------|----------------------------------------------------------------|
//! | 0   | 11    | timestamp (absolute), length, type id, stream id (little end.) |
//! | 1   | 7     | timestamp delta, length, type id                               |
//! | 2   | 3     | timestamp delta                                                |
//! | 3   | 0     | nothing: everything comes from the previous chunk on the csid  |
//!
//! A 3-byte timestamp field of `0xFFFFFF` means a 4-byte extended timestamp follows the message
//! header. Timestamps accumulate deltas with 32-bit wrapping.
//!
//! # Quirks handled by [`ChunkDecoder`]
//!
//! - **Extended timestamp on continuation chunks.** When the message's header carried an extended
//!   timestamp, ffmpeg, OBS (librtmp) and Flash Media Server repeat the 4 bytes after the basic
//!   header of every fmt-3 continuation chunk; some encoders do not. The decoder peeks at the next
//!   4 bytes of such a chunk and consumes them only if they equal the extended timestamp of the
//!   message's first chunk (the approach of mature servers). A non-repeating encoder whose chunk
//!   data happens to start with exactly those 4 bytes is misread; that is the price of accepting
//!   both forms. When fewer than 4 bytes are buffered the decoder decides as soon as a byte
//!   differs, and otherwise waits, so the outcome never depends on how the input was split.
//! - **fmt 3 starting a new message** reuses the previous timestamp delta of the chunk stream. After
//!   a fmt-0 header the "delta" is that header's timestamp field (ffmpeg, librtmp and SRS agree on
//!   this, and ffmpeg's encoder relies on it). When an extended timestamp is in effect such a chunk
//!   always carries the 4 bytes, and they are the delta.
//! - **fmt 1 first on chunk stream 2.** librtmp sends its first User Control message on csid 2 with
//!   a fmt-1 header; it is accepted with message stream id 0 and the delta taken from 0. Any other
//!   fmt 1/2/3 on a chunk stream without a previous fmt-0 header is an error.
//! - **Interleaving.** Messages on different chunk streams may interleave chunk by chunk; each chunk
//!   stream assembles its own message.
//!
//! The decoder acts on Set Chunk Size (type 1, applied as soon as the message completes) and Abort
//! (type 2), and splits Aggregate messages (type 22) into their sub-messages.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::control::{ControlError, ControlMessage};
use super::message_type;
use crate::limits::Limits;

/// The chunk size both directions start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// Largest value of the 3-byte timestamp and length fields; as a timestamp it means "extended".
const EXTENDED: u32 = 0xFF_FFFF;

/// One RTMP message, as reassembled from (or to be split into) chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Chunk stream id it travelled on (2..=65599).
    pub csid: u32,
    /// Absolute timestamp in milliseconds (wrapping).
    pub timestamp: u32,
    /// Message type id (see [`super::message_type`]).
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// The message body.
    pub payload: Bytes,
}

/// Why the chunk stream cannot be decoded. Offsets count bytes from the first byte pushed into the
/// decoder (after the handshake).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    /// A fmt 1, 2 or 3 chunk on a chunk stream that never had a fmt-0 header.
    NoPreviousHeader {
        /// The chunk stream.
        csid: u32,
        /// The chunk's fmt.
        fmt: u8,
        /// Offset of the chunk's basic header.
        offset: u64,
    },
    /// A fmt 0, 1 or 2 chunk on a chunk stream whose current message is incomplete.
    HeaderMidMessage {
        /// The chunk stream.
        csid: u32,
        /// The chunk's fmt.
        fmt: u8,
        /// Bytes of the current message received so far.
        received: u32,
        /// Declared length of the current message.
        length: u32,
        /// Offset of the chunk's basic header.
        offset: u64,
    },
    /// A message longer than [`Limits::max_message_len`].
    MessageTooLong {
        /// The chunk stream.
        csid: u32,
        /// Declared length.
        length: u32,
        /// The limit.
        max: u32,
        /// Offset of the length field (or of the basic header when the length was inherited).
        offset: u64,
    },
    /// More distinct chunk streams than [`Limits::max_chunk_streams`].
    TooManyChunkStreams {
        /// The chunk stream that would exceed the limit.
        csid: u32,
        /// The limit.
        max: usize,
        /// Offset of the chunk's basic header.
        offset: u64,
    },
    /// Partially received messages would exceed [`Limits::max_pending_bytes`].
    PendingBytesExceeded {
        /// The chunk stream starting a message.
        csid: u32,
        /// Bytes that would be pending, including this message.
        pending: usize,
        /// The limit.
        max: usize,
        /// Offset of the chunk's basic header.
        offset: u64,
    },
    /// Set Chunk Size above [`Limits::max_chunk_size`].
    ChunkSizeTooLarge {
        /// Announced size.
        size: u32,
        /// The limit.
        max: u32,
        /// Offset of the Set Chunk Size message's first chunk.
        offset: u64,
    },
    /// A Set Chunk Size or Abort message the decoder must act on is malformed.
    Control {
        /// The chunk stream it came on.
        csid: u32,
        /// Offset of the message's first chunk.
        offset: u64,
        /// What is wrong with the payload.
        source: ControlError,
    },
    /// An Aggregate message whose sub-messages do not fit its body.
    Aggregate {
        /// The chunk stream it came on.
        csid: u32,
        /// Offset of the aggregate's first chunk.
        offset: u64,
        /// Position of the field within the aggregate body.
        position: usize,
        /// The sub-message field that does not fit.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the body at `position`.
        available: usize,
    },
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::NoPreviousHeader { csid, fmt, offset } => write!(
                f,
                "rtmp chunk: fmt {fmt} chunk at offset {offset} on chunk stream {csid}, which \
                 has had no fmt 0 header"
            ),
            ChunkError::HeaderMidMessage {
                csid,
                fmt,
                received,
                length,
                offset,
            } => write!(
                f,
                "rtmp chunk: fmt {fmt} chunk at offset {offset} on chunk stream {csid} while its \
                 message is incomplete ({received} of {length} bytes)"
            ),
            ChunkError::MessageTooLong {
                csid,
                length,
                max,
                offset,
            } => write!(
                f,
                "rtmp chunk: message length {length} at offset {offset} on chunk stream {csid} \
                 exceeds the limit of {max}"
            ),
            ChunkError::TooManyChunkStreams { csid, max, offset } => write!(
                f,
                "rtmp chunk: chunk stream {csid} at offset {offset} exceeds the limit of {max} \
                 chunk streams"
            ),
            ChunkError::PendingBytesExceeded {
                csid,
                pending,
                max,
                offset,
            } => write!(
                f,
                "rtmp chunk: message on chunk stream {csid} at offset {offset} would bring \
                 partially received messages to {pending} bytes, over the limit of {max}"
            ),
            ChunkError::ChunkSizeTooLarge { size, max, offset } => write!(
                f,
                "rtmp chunk: Set Chunk Size {size} at offset {offset} exceeds the limit of {max}"
            ),
            ChunkError::Control {
                csid,
                offset,
                source,
            } => {
                write!(
                    f,
                    "{source} (message at offset {offset} on chunk stream {csid})"
                )
            }
            ChunkError::Aggregate {
                csid,
                offset,
                position,
                field,
                needed,
                available,
            } => write!(
                f,
                "rtmp chunk: aggregate message at offset {offset} on chunk stream {csid}: \
                 sub-message field `{field}` at position {position} needs {needed} bytes, \
                 {available} available"
            ),
        }
    }
}

impl std::error::Error for ChunkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChunkError::Control { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn be24(b: &[u8]) -> u32 {
    b.iter()
        .take(3)
        .fold(0, |acc, &x| (acc << 8) | u32::from(x))
}

/// Length of the basic header for `csid`.
fn basic_header_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

/// Write a basic header. `csid` outside 2..=65599 is clamped into it (callers pass constants).
fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    let csid = csid.clamp(2, 65599);
    let fmt = fmt << 6;
    match csid {
        0..=63 => out.put_u8(fmt | csid as u8),
        64..=319 => out.put_slice(&[fmt, (csid - 64) as u8]),
        _ => {
            let v = csid - 64;
            out.put_slice(&[fmt | 1, (v & 0xFF) as u8, (v >> 8) as u8]);
        }
    }
}

/// Receive state of one chunk stream.
#[derive(Debug)]
struct InStream {
    csid: u32,
    /// Timestamp of the current (or last) message.
    timestamp: u32,
    /// Delta a fmt-3 chunk starting a new message adds (the last timestamp field, see module docs).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last fmt 0/1/2 header had an extended timestamp.
    extended: bool,
    /// The extended timestamp read with the current message's first chunk.
    ext_value: u32,
    /// The message being assembled, when it spans several chunks.
    partial: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    data: BytesMut,
    /// Stream offset of the message's first chunk.
    start: u64,
}

/// What one attempt to read a chunk produced.
enum Step {
    NeedMore,
    /// A chunk of this many bytes was taken in; its message is not complete yet.
    Chunk(usize),
    /// A chunk of this many bytes completed a message (which began at this stream offset).
    Message(Message, u64, usize),
}

/// The most bytes one chunk's headers take on the wire: a 3-byte basic header, an 11-byte
/// message header and a 4-byte extended timestamp.
const MAX_CHUNK_HEADER: usize = 3 + 11 + 4;

/// Messages parsed ahead of [`ChunkDecoder::poll_message`]: past this many, the rest of a read
/// waits in the buffer, so a read of tiny messages (one byte each on the wire, 48 in memory)
/// or of aggregates completed at once does not turn into a queue many times its size.
const READY_BOUND: usize = 64;

/// Reassembles RTMP messages from a chunk stream.
///
/// Sans-IO: [`push`](Self::push) the bytes read from the connection (after the handshake), then
/// call [`poll_message`](Self::poll_message) until it returns `Ok(None)` before pushing more.
/// `push` reads the chunks straight from the bytes it is given and buffers only an incomplete
/// chunk at their end (less than one chunk), so a read is not copied before it is parsed; the
/// messages it completed wait for `poll_message`. Past [`READY_BOUND`] waiting messages it
/// stops and buffers the rest of the read, which `poll_message` parses as it is drained. After
/// draining, the decoder buffers less than one chunk (plus the partial messages, bounded by
/// [`Limits::max_pending_bytes`]). Errors are final: once `poll_message` has returned an error
/// it returns the same error again, after the messages that came before it.
///
/// Every message gets a buffer of its own, of its declared length: a message in one chunk is
/// copied out of the input, one spanning several is assembled chunk by chunk. So the input is
/// never shared, and the buffer of an incomplete chunk is reused for every read.
#[derive(Debug)]
pub struct ChunkDecoder {
    buf: BytesMut,
    chunk_size: u32,
    max_chunk_size: u32,
    max_message_len: u32,
    max_chunk_streams: usize,
    max_pending_bytes: usize,
    streams: Vec<InStream>,
    pending_bytes: usize,
    ready: VecDeque<Message>,
    /// Bytes consumed from the stream so far (offset of `buf[0]`).
    consumed: u64,
    received: u64,
    failed: Option<ChunkError>,
}

impl ChunkDecoder {
    /// A decoder with chunk size 128, bounded by `limits`.
    pub fn new(limits: &Limits) -> Self {
        ChunkDecoder {
            buf: BytesMut::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_chunk_size: limits.max_chunk_size,
            max_message_len: limits.max_message_len,
            max_chunk_streams: limits.max_chunk_streams,
            max_pending_bytes: limits.max_pending_bytes,
            streams: Vec::new(),
            pending_bytes: 0,
            ready: VecDeque::new(),
            consumed: 0,
            received: 0,
            failed: None,
        }
    }

    /// Bytes read from the peer: their complete chunks are parsed at once, an incomplete one at
    /// the end is buffered. Drain [`poll_message`](Self::poll_message) afterwards.
    pub fn push(&mut self, data: &[u8]) {
        self.received += data.len() as u64;
        let mut data = data;
        // Complete the chunk buffered from the last push, copying no more than one chunk.
        while !self.buf.is_empty() && !data.is_empty() && self.parsing() {
            let take = data.len().min(self.chunk_size as usize + MAX_CHUNK_HEADER);
            let (head, tail) = data.split_at(take);
            self.buf.extend_from_slice(head);
            let left = self.read_buffered();
            if left <= take {
                // What is left came from `data`: parse it from there, not from the copy.
                self.buf.clear();
                data = data.get(take - left..).unwrap_or_default();
            } else {
                data = tail;
            }
        }
        if self.failed.is_some() {
            return; // errors are final: nothing after one is read
        }
        if self.buf.is_empty() {
            let used = self.read_chunks(data);
            data = data.get(used..).unwrap_or_default();
        }
        self.buf.extend_from_slice(data);
    }

    /// Whether more chunks are to be parsed now: no error, and few messages waiting.
    fn parsing(&self) -> bool {
        self.failed.is_none() && self.ready.len() < READY_BOUND
    }

    /// Reads the complete chunks in the buffer ([`Self::read_chunks`]) and returns how many
    /// bytes are left in it.
    fn read_buffered(&mut self) -> usize {
        let mut buf = std::mem::take(&mut self.buf);
        let used = self.read_chunks(&buf);
        buf.advance(used);
        self.buf = buf;
        self.buf.len()
    }

    /// Reads every complete chunk at the start of `input` (the messages they complete go to
    /// `ready`, an error to `failed`) and returns the bytes they took.
    fn read_chunks(&mut self, input: &[u8]) -> usize {
        let mut used = 0;
        while self.parsing() {
            let rest = input.get(used..).unwrap_or_default();
            let result = match self.read_chunk(rest) {
                Ok(Step::NeedMore) => return used,
                Ok(Step::Chunk(n)) => {
                    used += n;
                    continue;
                }
                Ok(Step::Message(msg, start, n)) => {
                    used += n;
                    self.complete(msg, start)
                }
                Err(err) => Err(err),
            };
            match result {
                Ok(Some(msg)) => self.ready.push_back(msg),
                Ok(None) => {}
                Err(err) => self.failed = Some(err),
            }
        }
        used
    }

    /// The next complete message; `Ok(None)` when more bytes are needed.
    ///
    /// Set Chunk Size and Abort messages are acted upon and still returned. Aggregate messages are
    /// not returned: their sub-messages are, one by one, as they are (a Set Chunk Size, Abort or
    /// aggregate inside an aggregate is not acted upon).
    pub fn poll_message(&mut self) -> Result<Option<Message>, ChunkError> {
        if let Some(msg) = self.ready.pop_front() {
            return Ok(Some(msg));
        }
        if self.failed.is_none() && !self.buf.is_empty() {
            // What a push left for later (it stopped at READY_BOUND messages).
            self.read_buffered();
            if let Some(msg) = self.ready.pop_front() {
                return Ok(Some(msg));
            }
        }
        if self.ready.capacity() > 4 * READY_BOUND {
            // An aggregate's many sub-messages are gone: so is their room.
            self.ready.shrink_to(READY_BOUND);
        }
        match &self.failed {
            Some(err) => Err(err.clone()),
            None => Ok(None),
        }
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Total bytes pushed so far (what Acknowledgement sequence numbers count, modulo 2^32).
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// Read one chunk if it is complete at the start of `input`. Nothing is changed unless the
    /// whole chunk is there; the step says how many bytes it took.
    fn read_chunk(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let offset = self.consumed;
        let Some(&b0) = input.first() else {
            return Ok(Step::NeedMore);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match input.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(Step::NeedMore),
            },
            1 => match (input.get(1), input.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(Step::NeedMore),
            },
            n => (u32::from(n), 1),
        };
        let idx = self.streams.iter().position(|s| s.csid == csid);
        let prev = idx.and_then(|i| self.streams.get(i));
        let mid_message = prev.and_then(|s| s.partial.as_ref());
        if let (Some(partial), true) = (mid_message, fmt != 3) {
            let (received, length) = (partial.data.len() as u32, prev.map_or(0, |s| s.length));
            return Err(ChunkError::HeaderMidMessage {
                csid,
                fmt,
                received,
                length,
                offset,
            });
        }
        // librtmp's first User Control message comes on csid 2 with fmt 1 (see module docs).
        let lenient_first = prev.is_none() && fmt == 1 && csid == 2;
        if prev.is_none() && fmt != 0 && !lenient_first {
            return Err(ChunkError::NoPreviousHeader { csid, fmt, offset });
        }

        // Message header.
        let header_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let Some(header) = input.get(pos..pos + header_len) else {
            return Ok(Step::NeedMore);
        };
        let length_offset = offset + pos as u64 + 3;
        pos += header_len;
        let ts_field = be24(header);
        let length_field = header.get(3..6).map(be24);
        let type_field = header.get(6).copied();
        let stream_field = header
            .get(7..11)
            .map(|b| b.iter().rev().fold(0, |a, &x| (a << 8) | u32::from(x)));

        // Extended timestamp.
        let extended = match (fmt, prev) {
            (0..=2, _) => ts_field == EXTENDED,
            (_, Some(s)) => s.extended,
            _ => false,
        };
        let rest = input.get(pos..).unwrap_or_default();
        if let (Some(i), Some(partial)) = (idx, mid_message) {
            // Continuation chunk (fmt 3, checked above).
            if extended {
                // The 4 bytes may or may not be repeated (see module docs).
                let expect = prev.map_or(0, |s| s.ext_value).to_be_bytes();
                let n = rest.len().min(4);
                if rest.get(..n) == expect.get(..n) {
                    if n < 4 {
                        return Ok(Step::NeedMore);
                    }
                    pos += 4;
                }
            }
            let length = prev.map_or(0, |s| s.length) as usize;
            let n = length
                .saturating_sub(partial.data.len())
                .min(self.chunk_size as usize);
            let Some(data) = input.get(pos..pos + n) else {
                return Ok(Step::NeedMore);
            };
            // `idx` and `partial` came from this very stream just above.
            let Some(stream) = self.streams.get_mut(i) else {
                return Ok(Step::NeedMore);
            };
            let Some(partial) = stream.partial.as_mut() else {
                return Ok(Step::NeedMore);
            };
            partial.data.extend_from_slice(data);
            let used = pos + n;
            self.consumed += used as u64;
            if partial.data.len() < length {
                return Ok(Step::Chunk(used));
            }
            let Some(done) = stream.partial.take() else {
                return Ok(Step::Chunk(used));
            };
            self.pending_bytes = self.pending_bytes.saturating_sub(length);
            let msg = Message {
                csid,
                timestamp: stream.timestamp,
                type_id: stream.type_id,
                stream_id: stream.stream_id,
                payload: done.data.freeze(),
            };
            return Ok(Step::Message(msg, done.start, used));
        }
        // A new message: the extended timestamp is mandatory.
        let ext = if extended {
            let Some(b) = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
                return Ok(Step::NeedMore);
            };
            pos += 4;
            Some(u32::from_be_bytes(b))
        } else {
            None
        };

        // First chunk of a new message.
        let (prev_ts, prev_delta, prev_len, prev_type, prev_sid) = prev
            .map_or((0, 0, 0, 0, 0), |s| {
                (s.timestamp, s.delta, s.length, s.type_id, s.stream_id)
            });
        let value = ext.unwrap_or(ts_field);
        let (timestamp, delta) = match fmt {
            0 => (value, value),
            1 | 2 => (prev_ts.wrapping_add(value), value),
            _ => {
                let d = ext.unwrap_or(prev_delta);
                (prev_ts.wrapping_add(d), d)
            }
        };
        let length = length_field.unwrap_or(prev_len);
        let type_id = type_field.unwrap_or(prev_type);
        let stream_id = stream_field.unwrap_or(prev_sid);
        if length > self.max_message_len {
            let offset = if length_field.is_some() {
                length_offset
            } else {
                offset
            };
            return Err(ChunkError::MessageTooLong {
                csid,
                length,
                max: self.max_message_len,
                offset,
            });
        }
        if idx.is_none() && self.streams.len() >= self.max_chunk_streams {
            return Err(ChunkError::TooManyChunkStreams {
                csid,
                max: self.max_chunk_streams,
                offset,
            });
        }
        let n = length.min(self.chunk_size) as usize;
        let single = n == length as usize;
        if !single {
            let pending = self.pending_bytes.saturating_add(length as usize);
            if pending > self.max_pending_bytes {
                return Err(ChunkError::PendingBytesExceeded {
                    csid,
                    pending,
                    max: self.max_pending_bytes,
                    offset,
                });
            }
        }
        if input.len() < pos + n {
            return Ok(Step::NeedMore);
        }

        // Commit: the whole chunk is buffered.
        let i = match idx {
            Some(i) => i,
            None => {
                self.streams.push(InStream {
                    csid,
                    timestamp: 0,
                    delta: 0,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    extended: false,
                    ext_value: 0,
                    partial: None,
                });
                self.streams.len() - 1
            }
        };
        let Some(stream) = self.streams.get_mut(i) else {
            return Ok(Step::NeedMore);
        };
        stream.timestamp = timestamp;
        stream.delta = delta;
        stream.length = length;
        stream.type_id = type_id;
        stream.stream_id = stream_id;
        stream.extended = extended;
        stream.ext_value = ext.unwrap_or(0);
        self.consumed += (pos + n) as u64;
        let payload = input.get(pos..pos + n).unwrap_or_default();
        if single {
            // Copied out rather than kept as a slice of the read: a cached frame would keep a
            // whole read buffer alive for seconds.
            let msg = Message {
                csid,
                timestamp,
                type_id,
                stream_id,
                payload: Bytes::copy_from_slice(payload),
            };
            return Ok(Step::Message(msg, offset, pos + n));
        }
        let mut data = BytesMut::with_capacity(length as usize);
        data.extend_from_slice(payload);
        self.pending_bytes += length as usize;
        stream.partial = Some(Partial {
            data,
            start: offset,
        });
        Ok(Step::Chunk(pos + n))
    }

    /// Act on a completed message. `Ok(None)` when it was turned into queued sub-messages.
    fn complete(&mut self, msg: Message, start: u64) -> Result<Option<Message>, ChunkError> {
        let control_err = |source| ChunkError::Control {
            csid: msg.csid,
            offset: start,
            source,
        };
        match msg.type_id {
            message_type::SET_CHUNK_SIZE => {
                if let Some(ControlMessage::SetChunkSize(size)) =
                    ControlMessage::decode(msg.type_id, &msg.payload).map_err(control_err)?
                {
                    if size > self.max_chunk_size {
                        let max = self.max_chunk_size;
                        return Err(ChunkError::ChunkSizeTooLarge {
                            size,
                            max,
                            offset: start,
                        });
                    }
                    self.chunk_size = size;
                }
            }
            message_type::ABORT => {
                if let Some(ControlMessage::Abort { csid }) =
                    ControlMessage::decode(msg.type_id, &msg.payload).map_err(control_err)?
                {
                    if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid) {
                        if s.partial.take().is_some() {
                            self.pending_bytes =
                                self.pending_bytes.saturating_sub(s.length as usize);
                        }
                    }
                }
            }
            message_type::AGGREGATE => {
                self.split_aggregate(&msg, start)?;
                return Ok(None);
            }
            _ => {}
        }
        Ok(Some(msg))
    }

    /// Queue the sub-messages of an aggregate, all or none.
    ///
    /// Each sub-message is an FLV tag: type (1), body length (3), timestamp (3 + 1 upper byte),
    /// stream id (3, ignored), body, back-pointer (4, not checked: muxers get it wrong). The first
    /// sub-message gets the aggregate's timestamp and the others keep their offsets from it.
    fn split_aggregate(&mut self, msg: &Message, start: u64) -> Result<(), ChunkError> {
        let body = &msg.payload;
        let mut pos = 0usize;
        let mut first_ts = None;
        let mut subs = Vec::new();
        while pos < body.len() {
            let available = body.len() - pos;
            let err = |field, position, needed, available| ChunkError::Aggregate {
                csid: msg.csid,
                offset: start,
                position,
                field,
                needed,
                available,
            };
            let Some(h) = body.get(pos..pos + 11) else {
                return Err(err("header", pos, 11, available));
            };
            let type_id = h.first().copied().unwrap_or_default();
            let len = be24(h.get(1..4).unwrap_or_default()) as usize;
            let ts = be24(h.get(4..7).unwrap_or_default())
                | u32::from(h.get(7).copied().unwrap_or_default()) << 24;
            let body_pos = pos + 11;
            if len > body.len() - body_pos {
                return Err(err("body", body_pos, len, body.len() - body_pos));
            }
            let back_pos = body_pos + len;
            if body.len() - back_pos < 4 {
                return Err(err("previous tag size", back_pos, 4, body.len() - back_pos));
            }
            let base = *first_ts.get_or_insert(ts);
            subs.push(Message {
                csid: msg.csid,
                timestamp: msg.timestamp.wrapping_add(ts.wrapping_sub(base)),
                type_id,
                stream_id: msg.stream_id,
                payload: body.slice(body_pos..back_pos),
            });
            pos = back_pos + 4;
        }
        self.ready.extend(subs);
        Ok(())
    }
}

/// Send state of one chunk stream.
#[derive(Debug)]
struct OutStream {
    csid: u32,
    timestamp: u32,
    delta: u32,
    /// `delta` came from a fmt 1/2 header, so a fmt-3 new message means the same to every decoder.
    delta_valid: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Splits messages into chunks with header compression.
///
/// Per chunk stream it remembers the last message and picks the smallest header: fmt 0 for the
/// first message, a new message stream id or a timestamp going backwards; fmt 1 when length or
/// type change; fmt 3 when the delta repeats a delta sent in a fmt 1/2 header (never right after
/// fmt 0, whose "delta" decoders disagree on); fmt 2 otherwise. Extended timestamps are repeated on
/// every continuation chunk, as ffmpeg and Flash Media Server expect.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: Vec<OutStream>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An encoder with chunk size 128.
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
        }
    }

    /// Use `size` (clamped to 1..=0x7FFFFFFF) for the following messages. Send the Set Chunk Size
    /// message (with the old size) before calling this.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, super::control::MAX_CHUNK_SIZE);
    }

    /// The chunk size in use.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Forget what was last sent on `csid`, so its next message gets a fmt-0 header. Call this after
    /// writing messages on `csid` with [`chunk_body`] and [`write_fmt0_header`].
    pub fn reset_chunk_stream(&mut self, csid: u32) {
        self.streams.retain(|s| s.csid != csid);
    }

    /// Append `payload` as a message on chunk stream `csid` to `out`, compressing the header against
    /// the previous message on that chunk stream.
    ///
    /// # Panics
    ///
    /// If `payload` is longer than 0xFFFFFF bytes, which RTMP cannot express (messages are bounded
    /// well below that by [`Limits::max_message_len`]).
    pub fn encode(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
        out: &mut BytesMut,
    ) {
        let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        assert!(
            length <= EXTENDED,
            "rtmp chunk: message of {length} bytes exceeds 0xFFFFFF"
        );
        let idx = self.streams.iter().position(|s| s.csid == csid);
        let (fmt, value) = match idx.and_then(|i| self.streams.get(i)) {
            Some(p) if p.stream_id == stream_id && timestamp >= p.timestamp => {
                let delta = timestamp - p.timestamp;
                if p.length != length || p.type_id != type_id {
                    (1, delta)
                } else if p.delta_valid && delta == p.delta {
                    (3, delta)
                } else {
                    (2, delta)
                }
            }
            _ => (0, timestamp),
        };
        let extended = value >= EXTENDED;
        let field = value.min(EXTENDED);
        let chunk_size = self.chunk_size as usize;
        let bh = basic_header_len(csid);
        let pieces = payload.len().div_ceil(chunk_size).max(1);
        let per_chunk = bh + if extended { 4 } else { 0 };
        out.reserve(payload.len() + pieces * per_chunk + 11);

        put_basic_header(out, fmt, csid);
        if fmt < 3 {
            out.put_slice(&field.to_be_bytes()[1..]);
        }
        if fmt < 2 {
            out.put_slice(&length.to_be_bytes()[1..]);
            out.put_u8(type_id);
        }
        if fmt == 0 {
            out.put_u32_le(stream_id);
        }
        if extended {
            out.put_u32(value);
        }
        let mut chunks = payload.chunks(chunk_size);
        out.put_slice(chunks.next().unwrap_or_default());
        for piece in chunks {
            put_basic_header(out, 3, csid);
            if extended {
                out.put_u32(value);
            }
            out.put_slice(piece);
        }

        let state = OutStream {
            csid,
            timestamp,
            delta: value,
            delta_valid: fmt != 0,
            length,
            type_id,
            stream_id,
        };
        match idx.and_then(|i| self.streams.get_mut(i)) {
            Some(s) => *s = state,
            None => self.streams.push(state),
        }
    }
}

/// For fan-out: `payload` split into `chunk_size` pieces with a fmt-3 basic header for `csid`
/// between pieces (no extended timestamp). Shared by every player with the same chunk size; each
/// player prepends [`write_fmt0_header`].
pub fn chunk_body(csid: u32, payload: &[u8], chunk_size: u32) -> Bytes {
    let chunk_size = chunk_size.max(1) as usize;
    let pieces = payload.len().div_ceil(chunk_size).max(1);
    let mut out = BytesMut::with_capacity(payload.len() + (pieces - 1) * basic_header_len(csid));
    let mut chunks = payload.chunks(chunk_size);
    out.put_slice(chunks.next().unwrap_or_default());
    for piece in chunks {
        put_basic_header(&mut out, 3, csid);
        out.put_slice(piece);
    }
    out.freeze()
}

/// The fmt-0 header for a message whose body came from [`chunk_body`]. Returns false and writes
/// nothing when `timestamp >= 0xFFFFFF` (extended timestamps must repeat on every chunk, so use
/// [`ChunkEncoder::encode`]) or when `len > 0xFFFFFF`.
pub fn write_fmt0_header(
    csid: u32,
    timestamp: u32,
    len: u32,
    type_id: u8,
    stream_id: u32,
    out: &mut BytesMut,
) -> bool {
    if timestamp >= EXTENDED || len > EXTENDED {
        return false;
    }
    put_basic_header(out, 0, csid);
    out.put_slice(&timestamp.to_be_bytes()[1..]);
    out.put_slice(&len.to_be_bytes()[1..]);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::control::UserControlEvent;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> Message {
        Message {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// Push `data` whole and drain.
    fn decode(dec: &mut ChunkDecoder, data: &[u8]) -> Result<Vec<Message>, ChunkError> {
        dec.push(data);
        let mut out = Vec::new();
        while let Some(m) = dec.poll_message()? {
            out.push(m);
        }
        Ok(out)
    }

    fn decode_new(data: &[u8]) -> Result<Vec<Message>, ChunkError> {
        decode(&mut ChunkDecoder::new(&limits()), data)
    }

    /// Push one byte at a time, draining after each.
    fn decode_bytewise(data: &[u8]) -> Result<Vec<Message>, ChunkError> {
        let mut dec = ChunkDecoder::new(&limits());
        let mut out = Vec::new();
        for b in data {
            out.extend(decode(&mut dec, std::slice::from_ref(b))?);
        }
        Ok(out)
    }

    /// Hand-built chunk header.
    fn header(fmt: u8, csid: u32, ts: u32, len: u32, type_id: u8, sid: u32) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_basic_header(&mut out, fmt, csid);
        if fmt < 3 {
            out.put_slice(&ts.min(EXTENDED).to_be_bytes()[1..]);
        }
        if fmt < 2 {
            out.put_slice(&len.to_be_bytes()[1..]);
            out.put_u8(type_id);
        }
        if fmt == 0 {
            out.put_u32_le(sid);
        }
        if fmt < 3 && ts >= EXTENDED {
            out.put_u32(ts);
        }
        out.to_vec()
    }

    fn set_chunk_size_bytes(size: u32) -> Vec<u8> {
        let mut v = header(0, 2, 0, 4, 1, 0);
        v.extend_from_slice(&size.to_be_bytes());
        v
    }

    #[test]
    fn basic_header_forms() {
        for csid in [2, 3, 63, 64, 65, 319, 320, 321, 12345, 65599] {
            let mut enc = ChunkEncoder::new();
            let mut out = BytesMut::new();
            enc.encode(csid, 7, 9, 1, &[0xAA; 300], &mut out);
            let expected = msg(csid, 7, 9, 1, &[0xAA; 300]);
            assert_eq!(decode_new(&out), Ok(vec![expected.clone()]), "csid {csid}");
            assert_eq!(decode_bytewise(&out), Ok(vec![expected]), "csid {csid}");
        }
        // Hand-checked encodings.
        assert_eq!(header(3, 63, 0, 0, 0, 0), [0xFF]);
        assert_eq!(header(3, 64, 0, 0, 0, 0), [0xC0, 0]);
        assert_eq!(header(3, 319, 0, 0, 0, 0), [0xC0, 255]);
        assert_eq!(header(3, 320, 0, 0, 0, 0), [0xC1, 0, 1]);
        assert_eq!(header(3, 65599, 0, 0, 0, 0), [0xC1, 255, 255]);
    }

    #[test]
    fn fmt0_wire_layout() {
        let mut data = vec![
            0x03, 0x00, 0x00, 0x10, 0x00, 0x00, 0x02, 0x14, 0x01, 0x00, 0x00, 0x00,
        ];
        data.extend_from_slice(b"hi");
        assert_eq!(decode_new(&data), Ok(vec![msg(3, 16, 20, 1, b"hi")]));
    }

    #[test]
    fn header_compression_choices() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let mut fmts = Vec::new();
        let mut send = |ts: u32, ty: u8, sid: u32, len: usize, out: &mut BytesMut| {
            let start = out.len();
            enc.encode(6, ts, ty, sid, &vec![1; len], out);
            fmts.push(out[start] >> 6);
        };
        send(40, 9, 1, 10, &mut out); // first: fmt 0
        send(80, 9, 1, 10, &mut out); // delta 40 equals the fmt-0 field, not trusted: fmt 2
        send(120, 9, 1, 10, &mut out); // same delta as the fmt-2 header: fmt 3
        send(160, 9, 1, 12, &mut out); // new length: fmt 1
        send(200, 9, 1, 12, &mut out); // delta 40 from a fmt-1 header: fmt 3
        send(100, 9, 1, 12, &mut out); // backwards: fmt 0
        send(100, 9, 2, 12, &mut out); // new stream id: fmt 0
        send(100, 8, 2, 12, &mut out); // new type: fmt 1
        assert_eq!(fmts, [0, 2, 3, 1, 3, 0, 0, 1]);
        let got: Vec<u32> = decode_new(&out)
            .unwrap()
            .iter()
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(got, [40, 80, 120, 160, 200, 100, 100, 100]);
    }

    #[test]
    fn fmt_without_previous_header_is_an_error() {
        let mut data = set_chunk_size_bytes(4096); // 16 bytes, then the bad chunk
        data.extend(header(1, 5, 0, 1, 9, 0));
        data.push(0);
        let mut dec = ChunkDecoder::new(&limits());
        dec.push(&data);
        assert!(matches!(dec.poll_message(), Ok(Some(_))));
        let err = dec.poll_message().unwrap_err();
        assert_eq!(
            err,
            ChunkError::NoPreviousHeader {
                csid: 5,
                fmt: 1,
                offset: 16
            }
        );
        assert_eq!(
            err.to_string(),
            "rtmp chunk: fmt 1 chunk at offset 16 on chunk stream 5, which has had no fmt 0 header"
        );
        // Errors are sticky.
        assert_eq!(dec.poll_message(), Err(err));
        for fmt in [2, 3] {
            assert_eq!(
                decode_new(&header(fmt, 400, 0, 0, 0, 0)),
                Err(ChunkError::NoPreviousHeader {
                    csid: 400,
                    fmt,
                    offset: 0
                })
            );
        }
    }

    #[test]
    fn librtmp_fmt1_first_on_csid2() {
        // librtmp's SetBufferLength (stream 1, 3000 ms) as its first message on csid 2.
        let payload = [0, 3, 0, 0, 0, 1, 0, 0, 0x0B, 0xB8];
        let mut data = header(1, 2, 0, 10, 4, 0);
        data.extend_from_slice(&payload);
        let got = decode_new(&data).unwrap();
        assert_eq!(got, vec![msg(2, 0, 4, 0, &payload)]);
        assert_eq!(
            ControlMessage::decode(4, &got[0].payload),
            Ok(Some(ControlMessage::UserControl(
                UserControlEvent::SetBufferLength {
                    stream_id: 1,
                    millis: 3000
                }
            )))
        );
    }

    #[test]
    fn deltas_accumulate_with_wrapping() {
        let mut data = header(0, 4, 0xFFFF_FFF0, 1, 8, 1);
        data.push(1);
        data.extend(header(2, 4, 0x20, 0, 0, 0));
        data.push(2);
        data.extend(header(1, 4, 0x10, 2, 8, 0));
        data.extend_from_slice(&[3, 3]);
        let got = decode_new(&data).unwrap();
        let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [0xFFFF_FFF0, 0x10, 0x20]);
        assert_eq!(got[2], msg(4, 0x20, 8, 1, &[3, 3]));
    }

    /// A 200-byte message at chunk size 128 with an extended timestamp; `repeat` decides whether
    /// the continuation chunk repeats the 4 bytes.
    fn extended_message(repeat: bool, fill: u8) -> Vec<u8> {
        let mut data = header(0, 4, 0x0100_0000, 200, 9, 1);
        data.extend_from_slice(&[fill; 128]);
        data.push(0xC4);
        if repeat {
            data.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        }
        data.extend_from_slice(&[fill; 72]);
        data
    }

    #[test]
    fn extended_timestamp_repeated_on_continuation() {
        let expected = vec![msg(4, 0x0100_0000, 9, 1, &[0xAB; 200])];
        let data = extended_message(true, 0xAB);
        assert_eq!(decode_new(&data), Ok(expected.clone()));
        assert_eq!(decode_bytewise(&data), Ok(expected));
    }

    #[test]
    fn extended_timestamp_not_repeated_on_continuation() {
        let data = extended_message(false, 0xAB);
        let expected = vec![msg(4, 0x0100_0000, 9, 1, &[0xAB; 200])];
        assert_eq!(decode_new(&data), Ok(expected.clone()));
        assert_eq!(decode_bytewise(&data), Ok(expected));
        // Data starting like the timestamp but differing in the last byte is still data.
        let data = extended_message(false, 0x01);
        let mut data2 = data.clone();
        data2.truncate(data.len() - 72);
        data2.extend_from_slice(&[1, 0, 0, 7]);
        data2.extend_from_slice(&[1; 68]);
        let mut payload = vec![1u8; 128];
        payload.extend_from_slice(&[1, 0, 0, 7]);
        payload.extend_from_slice(&[1; 68]);
        assert_eq!(
            decode_bytewise(&data2),
            Ok(vec![msg(4, 0x0100_0000, 9, 1, &payload)])
        );
    }

    #[test]
    fn extended_timestamp_peek_waits_only_while_prefix_matches() {
        // 130 bytes at chunk size 128, no repeat: the continuation chunk carries only 2 bytes.
        let short = |tail: [u8; 2]| {
            let mut data = header(0, 4, 0x0100_0000, 130, 9, 1);
            data.extend_from_slice(&[0xAB; 128]);
            data.push(0xC4);
            data.extend_from_slice(&tail);
            data
        };
        let mut payload = vec![0xAB; 128];
        payload.extend_from_slice(&[0xAB, 0xAB]);
        // The first byte already differs from the timestamp: decided without more input.
        let mut dec = ChunkDecoder::new(&limits());
        assert_eq!(
            decode(&mut dec, &short([0xAB, 0xAB])),
            Ok(vec![msg(4, 0x0100_0000, 9, 1, &payload)])
        );
        // Both bytes match the timestamp's prefix: the decoder must wait for the next byte...
        let mut dec = ChunkDecoder::new(&limits());
        assert_eq!(decode(&mut dec, &short([0x01, 0x00])), Ok(vec![]));
        // ...which, being the next chunk's basic header (0x03), settles it.
        let mut next = header(0, 3, 0, 1, 20, 0);
        next.push(7);
        let mut payload = vec![0xAB; 128];
        payload.extend_from_slice(&[0x01, 0x00]);
        assert_eq!(
            decode(&mut dec, &next),
            Ok(vec![
                msg(4, 0x0100_0000, 9, 1, &payload),
                msg(3, 0, 20, 0, &[7])
            ])
        );
    }

    #[test]
    fn fmt3_new_message_reuses_delta() {
        // After fmt 2 the delta is the fmt-2 field.
        let mut data = header(0, 5, 1000, 1, 8, 1);
        data.push(1);
        data.extend(header(2, 5, 20, 0, 0, 0));
        data.push(2);
        data.extend(header(3, 5, 0, 0, 0, 0));
        data.push(3);
        data.extend(header(3, 5, 0, 0, 0, 0));
        data.push(4);
        let ts: Vec<u32> = decode_new(&data)
            .unwrap()
            .iter()
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(ts, [1000, 1020, 1040, 1060]);

        // After fmt 0 the "delta" is the fmt-0 timestamp field (ffmpeg's reading).
        let mut data = header(0, 5, 40, 1, 8, 1);
        data.push(1);
        data.extend(header(3, 5, 0, 0, 0, 0));
        data.push(2);
        let ts: Vec<u32> = decode_new(&data)
            .unwrap()
            .iter()
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(ts, [40, 80]);
    }

    #[test]
    fn fmt3_new_message_with_extended_timestamp() {
        // fmt 1 with an extended delta, then fmt-3 new messages carrying the 4 bytes: the first
        // repeats the delta, the second (ffmpeg style) carries a different one.
        let mut data = header(0, 6, 10, 2, 9, 1);
        data.extend_from_slice(&[0, 0]);
        data.extend(header(1, 6, 0x0100_0000, 130, 9, 0));
        data.extend_from_slice(&[1; 128]);
        data.push(0xC6);
        data.extend_from_slice(&0x0100_0000u32.to_be_bytes()); // repeated on continuation
        data.extend_from_slice(&[1; 2]);
        data.push(0xC6); // new message
        data.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        data.extend_from_slice(&[2; 128]);
        data.push(0xC6);
        data.extend_from_slice(&[2; 2]); // continuation without repeat
        data.push(0xC6); // new message, delta 0x01000005
        data.extend_from_slice(&0x0100_0005u32.to_be_bytes());
        data.extend_from_slice(&[3; 128]);
        data.push(0xC6);
        data.extend_from_slice(&0x0100_0005u32.to_be_bytes());
        data.extend_from_slice(&[3; 2]);
        let expected = vec![
            msg(6, 10, 9, 1, &[0, 0]),
            msg(6, 10 + 0x0100_0000, 9, 1, &[1; 130]),
            msg(6, 10 + 0x0200_0000, 9, 1, &[2; 130]),
            msg(6, 10 + 0x0300_0005, 9, 1, &[3; 130]),
        ];
        assert_eq!(decode_new(&data), Ok(expected.clone()));
        assert_eq!(decode_bytewise(&data), Ok(expected));
    }

    #[test]
    fn interleaved_partial_messages() {
        // Video on csid 6 (300 bytes = 3 chunks), audio on csid 4 (200 bytes = 2 chunks), and a
        // one-chunk command on csid 3, all interleaved chunk by chunk.
        let mut data = header(0, 6, 100, 300, 9, 1);
        data.extend_from_slice(&[9; 128]);
        data.extend(header(0, 4, 90, 200, 8, 1));
        data.extend_from_slice(&[8; 128]);
        data.push(0xC6);
        data.extend_from_slice(&[9; 128]);
        data.extend(header(0, 3, 0, 5, 20, 0));
        data.extend_from_slice(b"hello");
        data.push(0xC4);
        data.extend_from_slice(&[8; 72]);
        data.push(0xC6);
        data.extend_from_slice(&[9; 44]);
        let expected = vec![
            msg(3, 0, 20, 0, b"hello"),
            msg(4, 90, 8, 1, &[8; 200]),
            msg(6, 100, 9, 1, &[9; 300]),
        ];
        assert_eq!(decode_new(&data), Ok(expected.clone()));
        assert_eq!(decode_bytewise(&data), Ok(expected));
    }

    #[test]
    fn set_chunk_size_applies_to_following_bytes() {
        let mut data = set_chunk_size_bytes(1000);
        data.extend(header(0, 6, 0, 1000, 9, 1));
        data.extend_from_slice(&[5; 1000]);
        let mut dec = ChunkDecoder::new(&limits());
        let got = decode(&mut dec, &data).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], msg(2, 0, 1, 0, &1000u32.to_be_bytes()));
        assert_eq!(got[1], msg(6, 0, 9, 1, &[5; 1000]));
        assert_eq!(dec.chunk_size(), 1000);
        assert_eq!(dec.bytes_received(), data.len() as u64);
    }

    #[test]
    fn set_chunk_size_changes_mid_message_on_other_stream() {
        // A 300-byte video message starts at chunk size 128, then the size grows to 4096 and the
        // rest (172 bytes) arrives in one chunk.
        let mut data = header(0, 6, 0, 300, 9, 1);
        data.extend_from_slice(&[9; 128]);
        data.extend(set_chunk_size_bytes(4096));
        data.push(0xC6);
        data.extend_from_slice(&[9; 172]);
        let got = decode_bytewise(&data).unwrap();
        assert_eq!(got[1], msg(6, 0, 9, 1, &[9; 300]));
    }

    #[test]
    fn set_chunk_size_errors() {
        let lim = Limits {
            max_chunk_size: 65536,
            ..Limits::default()
        };
        let mut dec = ChunkDecoder::new(&lim);
        assert_eq!(
            decode(&mut dec, &set_chunk_size_bytes(65537)),
            Err(ChunkError::ChunkSizeTooLarge {
                size: 65537,
                max: 65536,
                offset: 0
            })
        );
        assert_eq!(
            decode_new(&set_chunk_size_bytes(0)),
            Err(ChunkError::Control {
                csid: 2,
                offset: 0,
                source: ControlError::InvalidChunkSize { size: 0 }
            })
        );
        assert!(matches!(
            decode_new(&set_chunk_size_bytes(0x8000_0080)),
            Err(ChunkError::Control {
                source: ControlError::InvalidChunkSize { .. },
                ..
            })
        ));
        let mut short = header(0, 2, 0, 2, 1, 0);
        short.extend_from_slice(&[0, 1]);
        let err = decode_new(&short).unwrap_err();
        assert!(matches!(
            err,
            ChunkError::Control {
                source: ControlError::Truncated { .. },
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "rtmp control: Set Chunk Size (type 1) field `size` at offset 0 needs 4 bytes, \
             2 available (message at offset 0 on chunk stream 2)"
        );
    }

    #[test]
    fn abort_drops_partial_message() {
        let mut data = header(0, 6, 0, 300, 9, 1);
        data.extend_from_slice(&[9; 128]);
        data.extend(header(0, 2, 0, 4, 2, 0));
        data.extend_from_slice(&6u32.to_be_bytes());
        // A fresh message on csid 6: a fmt-0 header is allowed again, as is fmt 1.
        data.extend(header(1, 6, 5, 3, 9, 0));
        data.extend_from_slice(&[7; 3]);
        let mut dec = ChunkDecoder::new(&limits());
        let got = decode(&mut dec, &data).unwrap();
        assert_eq!(
            got,
            vec![msg(2, 0, 2, 0, &[0, 0, 0, 6]), msg(6, 5, 9, 1, &[7; 3])]
        );
        assert_eq!(dec.pending_bytes, 0);
        // Abort of an unknown chunk stream is ignored.
        let mut data = header(0, 2, 0, 4, 2, 0);
        data.extend_from_slice(&77u32.to_be_bytes());
        assert_eq!(decode_new(&data).unwrap().len(), 1);
    }

    #[test]
    fn header_mid_message_is_an_error() {
        let mut data = header(0, 6, 0, 300, 9, 1);
        data.extend_from_slice(&[9; 128]);
        let at = data.len() as u64;
        data.extend(header(2, 6, 20, 0, 0, 0));
        assert_eq!(
            decode_new(&data),
            Err(ChunkError::HeaderMidMessage {
                csid: 6,
                fmt: 2,
                received: 128,
                length: 300,
                offset: at
            })
        );
    }

    fn sub_tag(type_id: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![type_id];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(body);
        v.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
        v
    }

    fn aggregate(csid: u32, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.encode(csid, ts, 22, 1, body, &mut out);
        out.to_vec()
    }

    #[test]
    fn aggregate_is_split_and_rebased() {
        let mut body = sub_tag(9, 0x00FF_FFF0, &[1, 2, 3]);
        body.extend(sub_tag(8, 0x0100_0010, &[4, 5]));
        body.extend(sub_tag(9, 0x0100_0030, &[]));
        let data = aggregate(7, 5000, &body);
        let expected = vec![
            msg(7, 5000, 9, 1, &[1, 2, 3]),
            msg(7, 5032, 8, 1, &[4, 5]),
            msg(7, 5064, 9, 1, &[]),
        ];
        assert_eq!(decode_new(&data), Ok(expected.clone()));
        assert_eq!(decode_bytewise(&data), Ok(expected));
        // An empty aggregate yields nothing, and decoding goes on.
        let mut data = aggregate(7, 0, &[]);
        data.extend(set_chunk_size_bytes(512));
        assert_eq!(decode_new(&data).unwrap().len(), 1);
    }

    #[test]
    fn bad_aggregates() {
        let tag = sub_tag(9, 0, &[1, 2, 3]);
        let cases: [(Vec<u8>, &str, usize, usize, usize); 3] = [
            ([tag.clone(), vec![9, 0, 0]].concat(), "header", 18, 11, 3),
            ([tag.clone(), tag[..12].to_vec()].concat(), "body", 29, 3, 1),
            (tag[..16].to_vec(), "previous tag size", 14, 4, 2),
        ];
        for (body, field, position, needed, available) in cases {
            let err = decode_new(&aggregate(3, 0, &body)).unwrap_err();
            assert_eq!(
                err,
                ChunkError::Aggregate {
                    csid: 3,
                    offset: 0,
                    position,
                    field,
                    needed,
                    available
                },
                "{field}"
            );
        }
        let err = decode_new(&aggregate(3, 0, &tag[..16])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rtmp chunk: aggregate message at offset 0 on chunk stream 3: sub-message field \
             `previous tag size` at position 14 needs 4 bytes, 2 available"
        );
    }

    #[test]
    fn message_too_long_before_payload_arrives() {
        let lim = Limits {
            max_message_len: 1000,
            ..Limits::default()
        };
        let mut dec = ChunkDecoder::new(&lim);
        // Only the header is pushed: the error comes before any payload or allocation.
        let err = decode(&mut dec, &header(0, 300, 0, 1001, 9, 1)).unwrap_err();
        assert_eq!(
            err,
            ChunkError::MessageTooLong {
                csid: 300,
                length: 1001,
                max: 1000,
                offset: 5
            }
        );
        assert_eq!(dec.pending_bytes, 0);
    }

    #[test]
    fn too_many_chunk_streams() {
        let lim = Limits {
            max_chunk_streams: 3,
            ..Limits::default()
        };
        let mut data = Vec::new();
        for csid in 3..=6 {
            data.extend(header(0, csid, 0, 1, 8, 1));
            data.push(0);
        }
        let mut dec = ChunkDecoder::new(&lim);
        dec.push(&data);
        for _ in 0..3 {
            assert!(matches!(dec.poll_message(), Ok(Some(_))));
        }
        assert_eq!(
            dec.poll_message(),
            Err(ChunkError::TooManyChunkStreams {
                csid: 6,
                max: 3,
                offset: 39
            })
        );
    }

    #[test]
    fn pending_bytes_limit() {
        let lim = Limits {
            max_pending_bytes: 500,
            ..Limits::default()
        };
        let mut data = header(0, 6, 0, 300, 9, 1);
        data.extend_from_slice(&[9; 128]);
        let at = data.len() as u64;
        data.extend(header(0, 7, 0, 201, 9, 1));
        let mut dec = ChunkDecoder::new(&lim);
        assert_eq!(
            decode(&mut dec, &data),
            Err(ChunkError::PendingBytesExceeded {
                csid: 7,
                pending: 501,
                max: 500,
                offset: at
            })
        );
        // Single-chunk messages are never pending.
        let mut data = set_chunk_size_bytes(4096);
        data.extend(header(0, 6, 0, 4000, 9, 1));
        data.extend_from_slice(&[1; 4000]);
        assert_eq!(
            decode(&mut ChunkDecoder::new(&lim), &data).unwrap().len(),
            2
        );
    }

    #[test]
    fn a_single_chunk_message_does_not_hold_the_input_buffer() {
        let mut dec = ChunkDecoder::new(&limits());
        let mut data = header(0, 3, 0, 100, 20, 0);
        data.extend_from_slice(&[1; 100]);
        for _ in 0..3 {
            dec.push(&data);
            let m = dec.poll_message().unwrap().unwrap();
            assert_eq!(&m.payload[..], &[1; 100][..]);
            assert!(m.payload.is_unique(), "the payload shares no buffer");
            assert!(dec.poll_message().unwrap().is_none());
        }
    }

    #[test]
    fn complete_chunks_are_parsed_from_the_read_without_buffering_it() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        for i in 0..4u32 {
            enc.encode(6, i * 40, 9, 1, &[i as u8; 300], &mut out);
        }
        let mut dec = ChunkDecoder::new(&limits());
        assert_eq!(decode(&mut dec, &out).unwrap().len(), 4);
        assert_eq!(dec.buf.capacity(), 0, "nothing was copied into the buffer");
        // A read ending mid-chunk buffers that chunk's head only; the next read completes it
        // and the rest of that read is parsed where it lies.
        let cut = out.len() - 150;
        assert_eq!(decode(&mut dec, &out[..cut]).unwrap().len(), 3);
        assert!(dec.buf.len() < 128 + 18, "buffered {}", dec.buf.len());
        let mut rest = out[cut..].to_vec();
        rest.extend_from_slice(&out);
        assert_eq!(decode(&mut dec, &rest).unwrap().len(), 5);
        assert!(dec.buf.is_empty());
    }

    #[test]
    fn a_read_of_empty_messages_queues_a_bounded_number_and_keeps_no_room_for_them() {
        // One fmt 0 header of an empty message, then 64 KiB of fmt 3 headers: each another
        // empty message, one byte on the wire.
        let mut data = header(0, 3, 0, 0, 9, 1);
        data.resize(64 * 1024, 0xC3);
        let mut dec = ChunkDecoder::new(&limits());
        dec.push(&data);
        assert!(dec.ready.len() <= READY_BOUND, "{} queued", dec.ready.len());
        let mut n = 0;
        while dec.poll_message().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, data.len() - 11);
        assert!(dec.ready.capacity() <= 4 * READY_BOUND);
        assert!(dec.buf.is_empty());
    }

    #[test]
    fn input_buffer_stays_below_one_chunk() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.encode(2, 0, 1, 0, &4096u32.to_be_bytes(), &mut out);
        enc.set_chunk_size(4096);
        for i in 0..10u32 {
            enc.encode(6, i * 40, 9, 1, &vec![i as u8; 100_000], &mut out);
            enc.encode(4, i * 40, 8, 1, &[i as u8; 200], &mut out);
        }
        let mut dec = ChunkDecoder::new(&limits());
        let mut n = 0;
        for piece in out.chunks(1000) {
            n += decode(&mut dec, piece).unwrap().len();
            assert!(dec.buf.len() < 4096 + 18, "buffered {}", dec.buf.len());
        }
        assert_eq!(n, 21);
        assert_eq!(dec.buf.len(), 0);
    }

    #[test]
    fn fan_out_body_and_fmt0_header() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        for (csid, chunk_size) in [(6, 128), (64, 100), (400, 1), (6, 5000)] {
            let body = chunk_body(csid, &payload, chunk_size);
            let mut data = BytesMut::new();
            let mut enc = ChunkEncoder::new();
            enc.encode(2, 0, 1, 0, &chunk_size.to_be_bytes(), &mut data);
            for ts in [0, 33, 0xFF_FFFE] {
                assert!(write_fmt0_header(csid, ts, 1000, 9, 1, &mut data));
                data.extend_from_slice(&body);
            }
            let got = decode_new(&data).unwrap();
            let want: Vec<Message> = [0, 33, 0xFF_FFFE]
                .iter()
                .map(|&ts| msg(csid, ts, 9, 1, &payload))
                .collect();
            assert_eq!(&got[1..], &want[..], "csid {csid} chunk size {chunk_size}");
        }
        let mut out = BytesMut::new();
        assert!(!write_fmt0_header(6, 0xFF_FFFF, 10, 9, 1, &mut out));
        assert!(!write_fmt0_header(6, 0, 0x100_0000, 9, 1, &mut out));
        assert!(out.is_empty());
        assert_eq!(chunk_body(6, &[], 128).len(), 0);
    }

    #[test]
    fn encoder_after_fan_out_resets_chunk_stream() {
        let mut enc = ChunkEncoder::new();
        let mut data = BytesMut::new();
        enc.encode(6, 10, 9, 1, &[1; 10], &mut data);
        assert!(write_fmt0_header(6, 500, 10, 9, 1, &mut data));
        data.extend_from_slice(&chunk_body(6, &[2; 10], 128));
        enc.reset_chunk_stream(6);
        enc.encode(6, 0x0100_0000, 9, 1, &[3; 10], &mut data);
        let ts: Vec<u32> = decode_new(&data)
            .unwrap()
            .iter()
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(ts, [10, 500, 0x0100_0000]);
    }

    /// Small deterministic PRNG for interleaving and split decisions inside a proptest case.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Split one message's `ChunkEncoder` output into its chunks.
    fn split_chunks(encoded: &[u8], csid: u32, len: usize, chunk_size: usize) -> Vec<&[u8]> {
        let bh = basic_header_len(csid);
        let mh = [11, 7, 3, 0][usize::from(encoded[0] >> 6)];
        let pieces = len.div_ceil(chunk_size).max(1);
        // total = pieces * (bh + ext) + mh + len
        let ext = (encoded.len() - mh - len) / pieces - bh;
        assert!(ext == 0 || ext == 4);
        let mut out = Vec::new();
        let mut rest = encoded;
        for i in 0..pieces {
            let head = if i == 0 { bh + mh + ext } else { bh + ext };
            let n = (len - i * chunk_size).min(chunk_size);
            let (chunk, r) = rest.split_at(head + n);
            out.push(chunk);
            rest = r;
        }
        assert!(rest.is_empty());
        out
    }

    /// Messages of one chunk stream waiting to be sent, each with its chunks.
    type Pending = VecDeque<(Message, Vec<Vec<u8>>)>;

    #[derive(Debug, Clone)]
    struct Spec {
        csid_slot: usize,
        delta: u32,
        type_id: u8,
        stream_id: u32,
        len: usize,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            0..6usize,
            prop_oneof![
                Just(0u32),
                Just(20),
                Just(40),
                0xFF_FFF0..0x100_0010u32,
                any::<u32>()
            ],
            prop_oneof![Just(8u8), Just(9), Just(20), (3..=21u8), (23..=255u8)],
            prop_oneof![Just(0u32), Just(1), any::<u32>()],
            prop_oneof![Just(0usize), Just(100), Just(5000), 0..20000usize],
        )
            .prop_map(|(csid_slot, delta, type_id, stream_id, len)| Spec {
                csid_slot,
                delta,
                type_id,
                stream_id,
                len,
            })
    }

    fn csid_strategy() -> impl Strategy<Value = u32> {
        prop_oneof![3..64u32, 64..320u32, 320..65600u32]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn interleaved_round_trip(
            csids in proptest::collection::vec(csid_strategy(), 6),
            specs in proptest::collection::vec(spec(), 1..16),
            chunk_size in prop_oneof![1..8u32, Just(128u32), 1..5000u32],
            seed in 1..u64::MAX,
        ) {
            let mut rng = Rng(seed);
            let mut enc = ChunkEncoder::new();
            let mut stream = BytesMut::new();
            let mut expected = Vec::new();
            enc.encode(2, 0, 1, 0, &chunk_size.to_be_bytes(), &mut stream);
            expected.push(msg(2, 0, 1, 0, &chunk_size.to_be_bytes()));
            enc.set_chunk_size(chunk_size);

            // Encode every message and cut it into its chunks, queued per chunk stream; then deal
            // the chunks out in a random interleaving that keeps the order on each chunk stream.
            let mut last_ts = [0u32; 6];
            let mut queues: Vec<(u32, Pending)> = Vec::new();
            for s in &specs {
                let csid = csids[s.csid_slot];
                let ts = last_ts[s.csid_slot].wrapping_add(s.delta);
                last_ts[s.csid_slot] = ts;
                let payload: Vec<u8> = (0..s.len).map(|_| rng.next() as u8).collect();
                let mut out = BytesMut::new();
                enc.encode(csid, ts, s.type_id, s.stream_id, &payload, &mut out);
                let chunks = split_chunks(&out, csid, s.len, chunk_size as usize)
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect();
                let entry = (msg(csid, ts, s.type_id, s.stream_id, &payload), chunks);
                match queues.iter_mut().find(|(c, _)| *c == csid) {
                    Some((_, q)) => q.push_back(entry),
                    None => queues.push((csid, VecDeque::from([entry]))),
                }
            }
            let mut next_chunk = vec![0usize; queues.len()];
            loop {
                let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].1.is_empty()).collect();
                if live.is_empty() {
                    break;
                }
                let i = live[rng.below(live.len())];
                let q = &mut queues[i].1;
                let chunks = &q[0].1;
                stream.extend_from_slice(&chunks[next_chunk[i]]);
                next_chunk[i] += 1;
                if next_chunk[i] == chunks.len() {
                    next_chunk[i] = 0;
                    expected.extend(q.pop_front().map(|(m, _)| m));
                }
            }

            // Feed the byte stream in random pieces.
            let mut dec = ChunkDecoder::new(&limits());
            let mut got = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = if rng.below(8) == 0 { rng.below(50_000) } else { rng.below(64) } + 1;
                let (piece, r) = rest.split_at(n.min(rest.len()));
                rest = r;
                dec.push(piece);
                while let Some(m) = dec.poll_message().map_err(|e| TestCaseError::fail(e.to_string()))? {
                    got.push(m);
                }
                prop_assert!(dec.buf.len() < dec.chunk_size() as usize + 18);
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(dec.pending_bytes, 0);
            prop_assert_eq!(dec.bytes_received(), stream.len() as u64);
        }

        #[test]
        fn fan_out_round_trip(
            csid in csid_strategy(),
            chunk_size in 1..3000u32,
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..5000), 1..4),
            ts in 0..0xFF_FFFFu32,
        ) {
            let mut data = BytesMut::new();
            ChunkEncoder::new().encode(2, 0, 1, 0, &chunk_size.to_be_bytes(), &mut data);
            for p in &payloads {
                prop_assert!(write_fmt0_header(csid, ts, p.len() as u32, 9, 1, &mut data));
                data.extend_from_slice(&chunk_body(csid, p, chunk_size));
            }
            let got = decode_new(&data).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let want: Vec<Message> = payloads.iter().map(|p| msg(csid, ts, 9, 1, p)).collect();
            prop_assert_eq!(&got[1..], &want[..]);
        }
    }
}
