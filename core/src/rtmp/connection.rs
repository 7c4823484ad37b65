//! What client and server sessions share after the handshake: the chunk decoder and encoder,
//! protocol control handling (acknowledgements, ping, chunk size) and the outgoing byte buffer.

use std::fmt;

use bytes::{Bytes, BytesMut};

use super::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, Message};
use super::command::{Command, CommandError};
use super::control::{ControlMessage, UserControlEvent};
use super::handshake::HandshakeError;
use super::message_type;
use crate::amf::Value;
use crate::limits::Limits;

/// Chunk stream ids rill sends on. Players do not care which ids are used, but keeping media,
/// data and commands apart keeps the chunk header compression of each simple.
pub mod csid {
    /// Protocol control and user control messages (fixed by the spec).
    pub const CONTROL: u32 = 2;
    /// NetConnection commands (connect, createStream and their results).
    pub const COMMAND: u32 = 3;
    /// Data messages such as `onMetaData`, sent with the shared fan-out encoding.
    pub const DATA: u32 = 4;
    /// NetStream commands (publish, play, onStatus).
    pub const STREAM_COMMAND: u32 = 5;
    /// Audio messages.
    pub const AUDIO: u32 = 6;
    /// Video messages.
    pub const VIDEO: u32 = 7;
}

/// Why an RTMP session failed. The connection should be closed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SessionError {
    /// The handshake failed.
    Handshake(HandshakeError),
    /// The chunk stream is malformed or broke a limit.
    Chunk(ChunkError),
    /// A protocol control message is malformed.
    Control(String),
    /// A command message could not be decoded.
    Command(CommandError),
    /// The handshake did not finish in time.
    HandshakeTimeout,
    /// The peer did something out of order (e.g. publish before connect).
    Protocol(String),
    /// The application answered a request that is not pending (never made, already answered,
    /// or withdrawn by the client, e.g. with `deleteStream`). The session is unchanged and can
    /// go on.
    NotPending {
        /// The request: `connect`, `publish` or `play`.
        request: &'static str,
        /// The message stream it was for (0 for `connect`).
        stream_id: u32,
    },
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Handshake(e) => write!(f, "rtmp session: {e}"),
            SessionError::Chunk(e) => write!(f, "rtmp session: {e}"),
            SessionError::Control(e) => write!(f, "rtmp session: control message: {e}"),
            SessionError::Command(e) => write!(f, "rtmp session: {e}"),
            SessionError::HandshakeTimeout => write!(f, "rtmp session: handshake timed out"),
            SessionError::Protocol(e) => write!(f, "rtmp session: {e}"),
            SessionError::NotPending { request, stream_id } => write!(
                f,
                "rtmp session: no {request} request pending on message stream {stream_id}"
            ),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<HandshakeError> for SessionError {
    fn from(e: HandshakeError) -> Self {
        SessionError::Handshake(e)
    }
}

impl From<ChunkError> for SessionError {
    fn from(e: ChunkError) -> Self {
        SessionError::Chunk(e)
    }
}

impl From<CommandError> for SessionError {
    fn from(e: CommandError) -> Self {
        SessionError::Command(e)
    }
}

/// The post-handshake half of an RTMP connection, shared by client and server sessions.
#[derive(Debug)]
pub(crate) struct Transport {
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: BytesMut,
    /// Acknowledgement window the peer asked for (we ack every this many bytes received).
    ack_window: Option<u32>,
    /// `bytes_received` when we last sent an acknowledgement.
    last_ack: u64,
}

impl Transport {
    pub(crate) fn new(limits: &Limits) -> Self {
        Transport {
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::new(),
            // Grown on first use: a player whose media goes through the shared fan-out path
            // rarely writes here, so it should not hold a buffer.
            out: BytesMut::new(),
            ack_window: None,
            last_ack: 0,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.decoder.push(data);
    }

    /// The next message that is not protocol control. Control messages are acted on here:
    /// window size recorded, pings answered. Acknowledgements are sent as bytes arrive.
    pub(crate) fn poll_message(&mut self) -> Result<Option<Message>, SessionError> {
        loop {
            let Some(msg) = self.decoder.poll_message()? else {
                self.maybe_ack();
                return Ok(None);
            };
            match ControlMessage::decode(msg.type_id, &msg.payload)
                .map_err(|e| SessionError::Control(e.to_string()))?
            {
                Some(ControlMessage::WindowAckSize(size)) => self.ack_window = Some(size.max(1)),
                Some(ControlMessage::UserControl(UserControlEvent::PingRequest(t))) => {
                    self.send_control(&ControlMessage::UserControl(
                        UserControlEvent::PingResponse(t),
                    ));
                }
                Some(_) => {}
                None => {
                    self.maybe_ack();
                    return Ok(Some(msg));
                }
            }
        }
    }

    fn maybe_ack(&mut self) {
        let Some(window) = self.ack_window else {
            return;
        };
        let received = self.decoder.bytes_received();
        if received.saturating_sub(self.last_ack) >= u64::from(window) {
            self.last_ack = received;
            // The sequence number is the byte count modulo 2^32 (it wraps on long sessions).
            let sequence = received as u32;
            self.send_control(&ControlMessage::Acknowledgement { sequence });
        }
    }

    pub(crate) fn send_control(&mut self, msg: &ControlMessage) {
        let mut payload = BytesMut::with_capacity(8);
        msg.encode(&mut payload);
        self.encoder
            .encode(csid::CONTROL, 0, msg.type_id(), 0, &payload, &mut self.out);
    }

    /// Sends Set Chunk Size and switches the encoder to it.
    pub(crate) fn set_out_chunk_size(&mut self, size: u32) {
        self.send_control(&ControlMessage::SetChunkSize(size));
        self.encoder.set_chunk_size(size);
    }

    pub(crate) fn out_chunk_size(&self) -> u32 {
        self.encoder.chunk_size()
    }

    pub(crate) fn send_command(&mut self, csid: u32, stream_id: u32, command: &Command) {
        let body = command.to_bytes();
        self.encoder.encode(
            csid,
            0,
            message_type::COMMAND_AMF0,
            stream_id,
            &body,
            &mut self.out,
        );
    }

    /// Sends an `onStatus(null, info)` on a NetStream.
    pub(crate) fn send_status(&mut self, stream_id: u32, info: Value) {
        self.send_command(csid::STREAM_COMMAND, stream_id, &Command::OnStatus { info });
    }

    pub(crate) fn send_message(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) {
        self.encoder
            .encode(csid, timestamp, type_id, stream_id, payload, &mut self.out);
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }
}
