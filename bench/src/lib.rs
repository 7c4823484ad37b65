//! # rill-bench
//!
//! A fan-out load generator for rill: one RTMP publisher pacing an FLV file in real time, and
//! many RTMP or HTTP-FLV players on a single mio event loop, measuring connect and first-media
//! times, bitrate, real-time lag, publisher-to-player delay and failures; classic HLS players
//! (hls.js-like polling) measuring segment fetch times; and Low-Latency HLS players (blocking
//! playlist reload, then the part) measuring part delivery delay.
//!
//! The protocol work is done by `rill-core` state machines; this crate only moves bytes
//! between them and sockets and keeps the books.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod hls;
pub mod http;
pub mod http_players;
pub mod llhls;
pub mod net;
pub mod pacing;
pub mod play;
pub mod publish;
pub mod stamp;
pub mod stats;
pub mod url;
