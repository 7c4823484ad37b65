//! Bounds on what an RTMP peer controls (chunk stream and AMF); the RTMP parsers and the FLV
//! demuxer check these before they allocate. Other protocols have their own bounds:
//! [`crate::http::HttpLimits`], [`crate::rtsp::RtspLimits`], and
//! [`crate::admission::ConnectionLimits`] for connection counts.

/// RTMP and AMF limits shared by the parsers and session of one RTMP connection.
///
/// The defaults suit a public server; raise them for trusted peers with unusual streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest RTMP chunk size a peer may announce with Set Chunk Size (bytes).
    pub max_chunk_size: u32,
    /// Largest RTMP message (a whole video frame, say) a peer may send (bytes).
    pub max_message_len: u32,
    /// Most chunk streams a peer may have open (each keeps a header and a partial message).
    pub max_chunk_streams: usize,
    /// Total bytes of partially received messages buffered for one connection.
    pub max_pending_bytes: usize,
    /// Deepest nesting of AMF objects and arrays accepted.
    pub max_amf_depth: usize,
    /// Most elements in one AMF array or object (guards against huge declared counts).
    pub max_amf_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_chunk_size: 16 * 1024 * 1024,
            max_message_len: 8 * 1024 * 1024,
            max_chunk_streams: 64,
            max_pending_bytes: 32 * 1024 * 1024,
            max_amf_depth: 32,
            max_amf_elements: 65_536,
        }
    }
}
