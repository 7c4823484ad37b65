//! RTMP protocol control messages (types 1, 2, 3, 5, 6) and User Control messages (type 4),
//! RTMP specification 1.0 sections 5.4 and 6.2 (7.1.7 in some revisions).
//!
//! This module only converts message payloads to and from [`ControlMessage`]; the chunk layer
//! ([`super::chunk`]) carries them. The chunk decoder itself acts on Set Chunk Size and Abort, using
//! [`ControlMessage::decode`] to read them.
//!
//! Decoding is lenient about trailing bytes after the fields a message defines (they are ignored),
//! strict about missing ones.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::message_type;

/// Largest chunk size the protocol can express: the top bit of the 32-bit field must be zero.
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;

/// A decoded protocol control or User Control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMessage {
    /// Type 1: the sender's chunk size from now on (1..=0x7FFFFFFF).
    SetChunkSize(u32),
    /// Type 2: drop the partly received message on chunk stream `csid`.
    Abort {
        /// The chunk stream whose partial message is abandoned.
        csid: u32,
    },
    /// Type 3: the receiver has seen `sequence` bytes so far (wrapping).
    Acknowledgement {
        /// Total bytes received, modulo 2^32.
        sequence: u32,
    },
    /// Type 5: send an Acknowledgement every this many bytes.
    WindowAckSize(u32),
    /// Type 6: limit the peer's output bandwidth (its acknowledgement window).
    SetPeerBandwidth {
        /// Window size in bytes.
        size: u32,
        /// 0 = hard, 1 = soft, 2 = dynamic. Other values are passed through.
        limit_type: u8,
    },
    /// Type 4: a User Control event.
    UserControl(UserControlEvent),
}

/// A User Control message event (message type 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserControlEvent {
    /// Event 0: the server starts sending on this message stream.
    StreamBegin(u32),
    /// Event 1: playback of this message stream ended.
    StreamEof(u32),
    /// Event 2: no more data on this message stream for now.
    StreamDry(u32),
    /// Event 3: the client's buffer length for a message stream.
    SetBufferLength {
        /// The message stream.
        stream_id: u32,
        /// Buffer length in milliseconds.
        millis: u32,
    },
    /// Event 4: this message stream is a recorded one.
    StreamIsRecorded(u32),
    /// Event 6: ping with the sender's timestamp.
    PingRequest(u32),
    /// Event 7: answer to a ping, echoing its timestamp.
    PingResponse(u32),
    /// Any other event (for example 31/32, buffer empty/ready, sent by some servers).
    Other {
        /// The event type.
        event_type: u16,
        /// The event data as received.
        data: Bytes,
    },
}

/// Why a control message payload could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError {
    /// The payload ends before a field the message requires.
    Truncated {
        /// The message type id.
        type_id: u8,
        /// The missing field.
        field: &'static str,
        /// Offset of the field within the payload.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes the payload has from `offset`.
        available: usize,
    },
    /// Set Chunk Size with 0 or with the top bit set.
    InvalidChunkSize {
        /// The announced size.
        size: u32,
    },
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Truncated {
                type_id,
                field,
                offset,
                needed,
                available,
            } => write!(
                f,
                "rtmp control: {} (type {type_id}) field `{field}` at offset {offset} needs \
                 {needed} bytes, {available} available",
                type_name(*type_id)
            ),
            ControlError::InvalidChunkSize { size } => write!(
                f,
                "rtmp control: Set Chunk Size field `size` at offset 0 is {size}, must be \
                 1..={MAX_CHUNK_SIZE}"
            ),
        }
    }
}

impl std::error::Error for ControlError {}

fn type_name(type_id: u8) -> &'static str {
    match type_id {
        message_type::SET_CHUNK_SIZE => "Set Chunk Size",
        message_type::ABORT => "Abort",
        message_type::ACKNOWLEDGEMENT => "Acknowledgement",
        message_type::USER_CONTROL => "User Control",
        message_type::WINDOW_ACK_SIZE => "Window Acknowledgement Size",
        message_type::SET_PEER_BANDWIDTH => "Set Peer Bandwidth",
        _ => "message",
    }
}

/// Bounds-checked big-endian field reader over one payload.
struct Reader<'a> {
    data: &'a [u8],
    type_id: u8,
}

impl Reader<'_> {
    fn bytes<const N: usize>(
        &self,
        offset: usize,
        field: &'static str,
    ) -> Result<[u8; N], ControlError> {
        offset
            .checked_add(N)
            .and_then(|end| self.data.get(offset..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(ControlError::Truncated {
                type_id: self.type_id,
                field,
                offset,
                needed: N,
                available: self.data.len().saturating_sub(offset),
            })
    }

    fn u32(&self, offset: usize, field: &'static str) -> Result<u32, ControlError> {
        self.bytes::<4>(offset, field).map(u32::from_be_bytes)
    }
}

impl ControlMessage {
    /// Decode `payload` if `type_id` is a control type (1, 2, 3, 4, 5 or 6); `Ok(None)` for other types.
    pub fn decode(type_id: u8, payload: &[u8]) -> Result<Option<ControlMessage>, ControlError> {
        let r = Reader {
            data: payload,
            type_id,
        };
        let msg = match type_id {
            message_type::SET_CHUNK_SIZE => {
                let size = r.u32(0, "size")?;
                if size == 0 || size > MAX_CHUNK_SIZE {
                    return Err(ControlError::InvalidChunkSize { size });
                }
                ControlMessage::SetChunkSize(size)
            }
            message_type::ABORT => ControlMessage::Abort {
                csid: r.u32(0, "chunk stream id")?,
            },
            message_type::ACKNOWLEDGEMENT => ControlMessage::Acknowledgement {
                sequence: r.u32(0, "sequence number")?,
            },
            message_type::WINDOW_ACK_SIZE => {
                ControlMessage::WindowAckSize(r.u32(0, "window size")?)
            }
            message_type::SET_PEER_BANDWIDTH => ControlMessage::SetPeerBandwidth {
                size: r.u32(0, "window size")?,
                limit_type: r.bytes::<1>(4, "limit type")?[0],
            },
            message_type::USER_CONTROL => {
                let event_type = u16::from_be_bytes(r.bytes::<2>(0, "event type")?);
                let event = match event_type {
                    0 => UserControlEvent::StreamBegin(r.u32(2, "stream id")?),
                    1 => UserControlEvent::StreamEof(r.u32(2, "stream id")?),
                    2 => UserControlEvent::StreamDry(r.u32(2, "stream id")?),
                    3 => UserControlEvent::SetBufferLength {
                        stream_id: r.u32(2, "stream id")?,
                        millis: r.u32(6, "buffer length")?,
                    },
                    4 => UserControlEvent::StreamIsRecorded(r.u32(2, "stream id")?),
                    6 => UserControlEvent::PingRequest(r.u32(2, "timestamp")?),
                    7 => UserControlEvent::PingResponse(r.u32(2, "timestamp")?),
                    _ => UserControlEvent::Other {
                        event_type,
                        data: Bytes::copy_from_slice(payload.get(2..).unwrap_or_default()),
                    },
                };
                ControlMessage::UserControl(event)
            }
            _ => return Ok(None),
        };
        Ok(Some(msg))
    }

    /// The message type id this message is sent with.
    pub fn type_id(&self) -> u8 {
        match self {
            ControlMessage::SetChunkSize(_) => message_type::SET_CHUNK_SIZE,
            ControlMessage::Abort { .. } => message_type::ABORT,
            ControlMessage::Acknowledgement { .. } => message_type::ACKNOWLEDGEMENT,
            ControlMessage::WindowAckSize(_) => message_type::WINDOW_ACK_SIZE,
            ControlMessage::SetPeerBandwidth { .. } => message_type::SET_PEER_BANDWIDTH,
            ControlMessage::UserControl(_) => message_type::USER_CONTROL,
        }
    }

    /// Append the message payload (no chunk header) to `out`.
    ///
    /// Protocol control messages go on chunk stream 2, message stream 0, timestamp 0.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            ControlMessage::SetChunkSize(v)
            | ControlMessage::Abort { csid: v }
            | ControlMessage::Acknowledgement { sequence: v }
            | ControlMessage::WindowAckSize(v) => out.put_u32(*v),
            ControlMessage::SetPeerBandwidth { size, limit_type } => {
                out.put_u32(*size);
                out.put_u8(*limit_type);
            }
            ControlMessage::UserControl(event) => event.encode(out),
        }
    }
}

impl UserControlEvent {
    /// The event type number.
    pub fn event_type(&self) -> u16 {
        match self {
            UserControlEvent::StreamBegin(_) => 0,
            UserControlEvent::StreamEof(_) => 1,
            UserControlEvent::StreamDry(_) => 2,
            UserControlEvent::SetBufferLength { .. } => 3,
            UserControlEvent::StreamIsRecorded(_) => 4,
            UserControlEvent::PingRequest(_) => 6,
            UserControlEvent::PingResponse(_) => 7,
            UserControlEvent::Other { event_type, .. } => *event_type,
        }
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.event_type());
        match self {
            UserControlEvent::StreamBegin(v)
            | UserControlEvent::StreamEof(v)
            | UserControlEvent::StreamDry(v)
            | UserControlEvent::StreamIsRecorded(v)
            | UserControlEvent::PingRequest(v)
            | UserControlEvent::PingResponse(v) => out.put_u32(*v),
            UserControlEvent::SetBufferLength { stream_id, millis } => {
                out.put_u32(*stream_id);
                out.put_u32(*millis);
            }
            UserControlEvent::Other { data, .. } => out.extend_from_slice(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(msg: ControlMessage) {
        let mut out = BytesMut::new();
        msg.encode(&mut out);
        assert_eq!(ControlMessage::decode(msg.type_id(), &out), Ok(Some(msg)));
    }

    #[test]
    fn round_trips() {
        round_trip(ControlMessage::SetChunkSize(4096));
        round_trip(ControlMessage::SetChunkSize(MAX_CHUNK_SIZE));
        round_trip(ControlMessage::Abort { csid: 65599 });
        round_trip(ControlMessage::Acknowledgement { sequence: u32::MAX });
        round_trip(ControlMessage::WindowAckSize(2_500_000));
        round_trip(ControlMessage::SetPeerBandwidth {
            size: 2_500_000,
            limit_type: 2,
        });
        for ev in [
            UserControlEvent::StreamBegin(1),
            UserControlEvent::StreamEof(1),
            UserControlEvent::StreamDry(1),
            UserControlEvent::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            },
            UserControlEvent::StreamIsRecorded(1),
            UserControlEvent::PingRequest(123_456),
            UserControlEvent::PingResponse(123_456),
            UserControlEvent::Other {
                event_type: 31,
                data: Bytes::from_static(&[0, 0, 0, 1]),
            },
            UserControlEvent::Other {
                event_type: 5,
                data: Bytes::new(),
            },
        ] {
            round_trip(ControlMessage::UserControl(ev));
        }
    }

    #[test]
    fn wire_format() {
        let mut out = BytesMut::new();
        ControlMessage::SetPeerBandwidth {
            size: 0x0102_0304,
            limit_type: 1,
        }
        .encode(&mut out);
        assert_eq!(&out[..], &[1, 2, 3, 4, 1]);
        out.clear();
        ControlMessage::UserControl(UserControlEvent::SetBufferLength {
            stream_id: 1,
            millis: 0x10,
        })
        .encode(&mut out);
        assert_eq!(&out[..], &[0, 3, 0, 0, 0, 1, 0, 0, 0, 0x10]);
    }

    #[test]
    fn other_types_are_not_control() {
        assert_eq!(ControlMessage::decode(8, &[1, 2, 3]), Ok(None));
        assert_eq!(ControlMessage::decode(20, &[]), Ok(None));
    }

    #[test]
    fn trailing_bytes_ignored() {
        assert_eq!(
            ControlMessage::decode(5, &[0, 0, 0x10, 0, 0xff]),
            Ok(Some(ControlMessage::WindowAckSize(0x1000)))
        );
    }

    #[test]
    fn truncated() {
        let err = ControlMessage::decode(1, &[0, 0]).unwrap_err();
        assert_eq!(
            err,
            ControlError::Truncated {
                type_id: 1,
                field: "size",
                offset: 0,
                needed: 4,
                available: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "rtmp control: Set Chunk Size (type 1) field `size` at offset 0 needs 4 bytes, 2 available"
        );
        assert!(matches!(
            ControlMessage::decode(6, &[0, 0, 0, 1]),
            Err(ControlError::Truncated {
                field: "limit type",
                offset: 4,
                ..
            })
        ));
        assert!(matches!(
            ControlMessage::decode(4, &[0]),
            Err(ControlError::Truncated {
                field: "event type",
                available: 1,
                ..
            })
        ));
        assert!(matches!(
            ControlMessage::decode(4, &[0, 3, 0, 0, 0, 1, 0, 0]),
            Err(ControlError::Truncated {
                field: "buffer length",
                offset: 6,
                available: 2,
                ..
            })
        ));
        for t in [2, 3, 5] {
            assert!(ControlMessage::decode(t, &[]).is_err());
        }
    }

    #[test]
    fn invalid_chunk_size() {
        assert_eq!(
            ControlMessage::decode(1, &[0, 0, 0, 0]),
            Err(ControlError::InvalidChunkSize { size: 0 })
        );
        assert_eq!(
            ControlMessage::decode(1, &[0x80, 0, 0, 1]),
            Err(ControlError::InvalidChunkSize { size: 0x8000_0001 })
        );
    }
}
