//! MPEG-2 transport stream (ISO/IEC 13818-1): a muxer for live outputs (HLS segments, HTTP-TS,
//! WebSocket-TS) and a bounded demuxer (relay pull of HTTP-TS, and the test oracle of the muxer).
//!
//! One program, PMT on PID [`PMT_PID`], video on [`VIDEO_PID`] and audio on [`AUDIO_PID`].
//! Timestamps are 90 kHz, 33 bits, wrapping.

use std::fmt;

mod av1;
mod demux;
mod mux;

pub use demux::{Pes, TsDemuxer, TsStreamInfo};
pub use mux::{TsChunk, TsMuxer};

/// Size of one transport stream packet.
pub const TS_PACKET_LEN: usize = 188;
/// The sync byte that starts every packet.
pub const SYNC_BYTE: u8 = 0x47;
/// PID of the program association table.
pub const PAT_PID: u16 = 0;
/// PID of the program map table written by the muxer.
pub const PMT_PID: u16 = 0x1000;
/// PID of the video elementary stream written by the muxer.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the audio elementary stream written by the muxer.
pub const AUDIO_PID: u16 = 0x101;
/// Timestamps are 33-bit: values wrap at this.
pub const TIMESTAMP_WRAP: u64 = 1 << 33;

/// `stream_type` values of the PMT.
pub mod stream_type {
    /// MPEG-1 audio (MP3).
    pub const MPEG1_AUDIO: u8 = 0x03;
    /// MPEG-2 audio (MP3 at low sample rates).
    pub const MPEG2_AUDIO: u8 = 0x04;
    /// AAC with ADTS framing.
    pub const AAC_ADTS: u8 = 0x0F;
    /// PES private data: Opus and AV1, told apart by their registration descriptors.
    pub const PRIVATE_DATA: u8 = 0x06;
    /// H.264 / AVC.
    pub const H264: u8 = 0x1B;
    /// H.265 / HEVC.
    pub const H265: u8 = 0x24;
}

/// Errors of the TS layer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsError {
    /// A packet did not start with the sync byte.
    Sync {
        /// Byte offset of the packet in the input fed so far.
        offset: u64,
    },
    /// A PSI section or PES header field is malformed.
    Invalid {
        /// The field.
        field: &'static str,
        /// Byte offset of the packet holding it in the input fed so far.
        offset: u64,
    },
    /// A PES packet grew beyond the demuxer's limit.
    PesTooLarge {
        /// The PID.
        pid: u16,
        /// The limit in bytes.
        limit: usize,
    },
    /// A frame cannot be muxed (its codec is not carried in TS, or its payload is broken).
    Unsupported {
        /// What is wrong.
        what: &'static str,
    },
}

impl fmt::Display for TsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TsError::Sync { offset } => write!(f, "ts: no sync byte at offset {offset}"),
            TsError::Invalid { field, offset } => {
                write!(f, "ts: invalid {field} in the packet at offset {offset}")
            }
            TsError::PesTooLarge { pid, limit } => {
                write!(f, "ts: PES on PID {pid} exceeds {limit} bytes")
            }
            TsError::Unsupported { what } => write!(f, "ts: cannot mux: {what}"),
        }
    }
}

impl std::error::Error for TsError {}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, initial value all ones, no reflection, no final xor),
/// the checksum of PSI sections.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFFu32, |crc, &b| {
        let idx = ((crc >> 24) as u8 ^ b) as usize;
        (crc << 8) ^ CRC_TABLE[idx]
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04C1_1DB7
            } else {
                c << 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// A millisecond timestamp as a 33-bit 90 kHz value (negative values and values past the
/// range wrap, as TS timestamps do).
pub fn ms_to_90k(ms: i64) -> u64 {
    (i128::from(ms) * 90).rem_euclid(i128::from(TIMESTAMP_WRAP)) as u64
}

/// The forward distance from `from` to `to` on the 33-bit clock, as a signed value in
/// `-2^32..2^32` (so a wrap between them is handled).
pub fn diff_90k(to: u64, from: u64) -> i64 {
    let d = (to.wrapping_sub(from)) & (TIMESTAMP_WRAP - 1);
    if d >= TIMESTAMP_WRAP / 2 {
        d as i64 - TIMESTAMP_WRAP as i64
    } else {
        d as i64
    }
}

#[cfg(test)]
mod tests;
