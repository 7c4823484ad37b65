//! # rill-core
//!
//! Every protocol rill speaks, as pure sans-IO state machines: bytes and the current time go in,
//! events and bytes come out. Nothing in this crate opens a socket or a file, reads a clock,
//! spawns a thread or takes a lock; the caller (a runtime, a test, a fuzzer) does all of that.
//!
//! Every machine follows the same rules:
//! - parsers tell "incomplete, wait for more bytes" apart from "invalid", and invalid input
//!   yields an error naming the layer, the field and the byte offset, never a panic;
//! - every length read from the wire is checked before allocating, against a bound of its
//!   protocol ([`limits::Limits`] for RTMP and AMF, [`http::HttpLimits`], [`rtsp::RtspLimits`]).
//!
//! ## Conventions
//!
//! Every machine is driven with the same verbs:
//! - **Feed input** with `handle_*` and the current time (`handle_input(data, now)`,
//!   `handle_udp`, `handle_connected`...). Parsers and buffers that have no notion of time
//!   (the RTMP chunk decoder, the FLV and TS readers, the RTP reorder buffer and
//!   depacketizer, the interleaver) take their input with `push`.
//! - **Take the next item out** with `poll_*`, named after what comes out
//!   (`poll_event`, `poll_transmit`, `poll_output`, `poll_frame`, `poll_packet`...), until it
//!   returns `None`. Drain *every* `poll_*` after *every* input, before feeding the next one:
//!   some machines hold further input until their events are answered.
//! - **Time**: `poll_timeout()` gives the next deadline; call `handle_timeout(now)` once it
//!   has passed.
//! - **The end**: `flush` releases what a machine holds back (a reorder window, a frame being
//!   collected, frames waiting for another track); the items then come out of the same
//!   `poll_*`, until `None`.
//! - **Requests the application decides on** (an RTMP connect, publish or play; an RTSP
//!   DESCRIBE, ANNOUNCE or UDP SETUP) come out as events and are answered with one
//!   `accept_*`/`reject_*` pair per request kind. Both return `Result<(), E>` with the
//!   session's error type, which has a `NotPending` variant for an answer to a request that
//!   is not pending; that error leaves the session unchanged.
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
pub mod fmp4;
pub mod hls;
pub mod http;
pub mod hub;
pub mod id_map;
pub mod interleave;
pub mod limits;
pub mod media;
pub mod reload;
pub mod resp;
pub mod rtmp;
pub mod rtp;
pub mod rtsp;
pub mod scheme;
pub mod sdp;
pub mod sim;
pub mod stream_key;
pub mod ts;
pub mod webui;
