//! # rill-core
//!
//! Every protocol rill speaks, as pure sans-IO state machines: bytes and the current time go in,
//! events and bytes come out. Nothing in this crate opens a socket or a file, reads a clock,
//! spawns a thread or takes a lock; the caller (a runtime, a test, a fuzzer) does all of that.
//!
//! Every machine follows the same rules:
//! - feed input together with `now`, then drain *all* outputs (`poll_*` until `None`) before
//!   feeding the next input;
//! - call `handle_timeout(now)` when the deadline from `poll_timeout()` passes;
//! - parsers tell "incomplete, wait for more bytes" apart from "invalid", and invalid input
//!   yields an error naming the layer, the field and the byte offset, never a panic;
//! - every length read from the wire is checked before allocating, against a bound of its
//!   protocol ([`limits::Limits`] for RTMP and AMF, [`http::HttpLimits`], [`rtsp::RtspLimits`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admission;
pub mod amf;
pub mod api;
pub mod auth;
pub mod codec;
pub mod config;
pub mod dump;
pub mod engine;
pub mod flv;
pub mod hls;
pub mod http;
pub mod hub;
pub mod interleave;
pub mod limits;
pub mod media;
pub mod rtmp;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
pub mod sim;
pub mod stream_key;
pub mod ts;
