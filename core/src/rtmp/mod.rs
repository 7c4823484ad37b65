//! RTMP: handshake, chunk stream, control messages, commands, and the client and server
//! sessions built from them.

pub mod chunk;
pub mod client;
pub mod command;
pub mod connection;
pub mod control;
pub mod handshake;
pub mod server;

/// RTMP message type ids (the `type_id` of a chunk-stream message header).
pub mod message_type {
    /// Protocol control: Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Protocol control: Abort Message.
    pub const ABORT: u8 = 2;
    /// Protocol control: Acknowledgement.
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message (stream begin, ping, ...).
    pub const USER_CONTROL: u8 = 4;
    /// Protocol control: Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Protocol control: Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// Data message, AMF3 encoded.
    pub const DATA_AMF3: u8 = 15;
    /// Shared object message, AMF3 encoded.
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command message, AMF3 encoded.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message, AMF0 encoded (`@setDataFrame`, `onMetaData`).
    pub const DATA_AMF0: u8 = 18;
    /// Shared object message, AMF0 encoded.
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// Command message, AMF0 encoded (`connect`, `publish`, ...).
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message: a run of FLV-tag-like sub-messages.
    pub const AGGREGATE: u8 = 22;
}
