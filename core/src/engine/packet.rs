//! The packet the hub fans out, encoded once per stream for every output format, and the
//! per-player rendering that adds only a small header in front of the shared bytes.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::flv::{self, TagType};
use crate::http::websocket::{self, Opcode};
use crate::hub::{HubPacket, PacketKind};
use crate::media::Frame;
use crate::rtmp::chunk::{chunk_body, write_fmt0_header, ChunkEncoder};
use crate::rtmp::connection::csid;
use crate::rtmp::message_type;
use crate::ts::TsChunk;

/// One message of a stream, shared (by reference count) by every player of every format.
#[derive(Clone, Debug)]
pub struct Packet(Arc<PacketData>);

/// The contents of a [`Packet`].
#[derive(Debug)]
pub struct PacketData {
    /// What the hub needs to know: config, key frame, ...
    pub kind: PacketKind,
    /// Decode timestamp, milliseconds (publisher clock).
    pub dts: i64,
    /// The neutral frame (absent for metadata).
    pub frame: Option<Frame>,
    /// RTMP message type / FLV tag type: audio 8, video 9, data 18.
    pub type_id: u8,
    /// The FLV tag body, which is also the RTMP message payload.
    pub body: Bytes,
    /// `body` cut into RTMP chunks (fmt-3 separators) at the engine's chunk size.
    pub rtmp_chunked: Bytes,
    /// The frame as MPEG-TS packets, muxed once by the stream's muxer for HLS and every
    /// HTTP-TS / WS-TS player (empty for metadata and configurations).
    pub ts: Bytes,
    /// `ts` starts with PAT/PMT and a decodable frame: a TS player or segment may start here.
    pub ts_random_access: bool,
}

impl Packet {
    /// Builds a packet; chunks the body once for every RTMP player. `ts` is the frame as muxed
    /// by the stream's [`crate::ts::TsMuxer`] (default when there is none).
    pub fn new(
        kind: PacketKind,
        dts: i64,
        frame: Option<Frame>,
        type_id: u8,
        body: Bytes,
        chunk_size: u32,
        ts: TsChunk,
    ) -> Self {
        let rtmp_chunked = if body.len() <= chunk_size as usize {
            body.clone()
        } else {
            chunk_body(csid_for(type_id), &body, chunk_size)
        };
        Packet(Arc::new(PacketData {
            kind,
            dts,
            frame,
            type_id,
            body,
            rtmp_chunked,
            ts: ts.bytes,
            ts_random_access: ts.random_access,
        }))
    }

    /// The packet's contents.
    pub fn data(&self) -> &PacketData {
        &self.0
    }
}

impl HubPacket for Packet {
    fn kind(&self) -> PacketKind {
        self.0.kind
    }
    fn dts(&self) -> i64 {
        self.0.dts
    }
    fn size(&self) -> usize {
        self.0.body.len() + 16
    }
}

fn csid_for(type_id: u8) -> u32 {
    match type_id {
        message_type::AUDIO => csid::AUDIO,
        message_type::VIDEO => csid::VIDEO,
        _ => csid::DATA,
    }
}

/// Per-player timestamp rebasing: the first media a player gets is at (near) 0, and output
/// timestamps never go backwards per track, even across publisher reconnects and clock jumps.
#[derive(Debug, Default)]
pub struct Rebaser {
    base: Option<i64>,
    last_in: [Option<i64>; 2],
    last_out: [i64; 2],
}

/// A forward jump larger than this (ms) is a discontinuity, not a gap.
const MAX_FORWARD_JUMP_MS: i64 = 10_000;
/// A backward step larger than this (ms) is a discontinuity; smaller ones are interleaving jitter.
const MAX_BACKWARD_JITTER_MS: i64 = 1_000;

impl Rebaser {
    /// The player-relative timestamp for a media packet of `track` (0 = video, 1 = audio).
    pub fn rebase(&mut self, track: usize, dts: i64) -> u32 {
        let track = track.min(1);
        let base = *self.base.get_or_insert(dts);
        let mut out = dts - base;
        let last_any = self.last_out[0].max(self.last_out[1]);
        if let Some(prev) = self.last_in[track] {
            let delta = dts - prev;
            if !(-MAX_BACKWARD_JITTER_MS..=MAX_FORWARD_JUMP_MS).contains(&delta) {
                // Discontinuity (publisher restarted, clock jump): continue from where we are.
                self.base = Some(dts - last_any);
                out = last_any;
            }
        } else if out < 0 {
            out = last_any;
        }
        out = out.max(self.last_out[track]).max(0);
        self.last_in[track] = Some(dts);
        self.last_out[track] = out;
        // Timestamps beyond 32 bits wrap, as RTMP and FLV timestamps do.
        out as u32
    }

    /// The latest timestamp given out on `track` (0 = video, 1 = audio), or on any track
    /// (0 before the first).
    pub fn current(&self, track: Option<usize>) -> u32 {
        match track {
            Some(t) => self.last_out[t.min(1)] as u32,
            None => self.last_out[0].max(self.last_out[1]) as u32,
        }
    }
}

/// The wire format a player receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayerFormat {
    /// RTMP messages on the given message stream id.
    Rtmp {
        /// Message stream id of the play.
        stream_id: u32,
    },
    /// HTTP-FLV: an FLV byte stream as the response body.
    Flv,
    /// WebSocket-FLV: the FLV byte stream in binary WebSocket frames.
    WsFlv,
    /// HTTP-TS: an endless MPEG-TS stream as the response body.
    Ts,
    /// WebSocket-TS: the MPEG-TS stream in binary WebSocket frames (one per frame's packets).
    WsTs,
}

impl PlayerFormat {
    /// True for the MPEG-TS formats, whose bytes are muxed once per stream (no per-player
    /// header, no rebasing: every player gets the same bytes from a random access point on).
    pub fn is_ts(self) -> bool {
        matches!(self, PlayerFormat::Ts | PlayerFormat::WsTs)
    }
}

/// Renders packets for one player: a small header of its own per packet, shared bodies.
#[derive(Debug)]
pub struct PlayerWriter {
    format: PlayerFormat,
    rebaser: Rebaser,
    /// Where a header is written before it is copied out (never split, so it stays a plain
    /// vector: no shared reference count per header).
    scratch: BytesMut,
    prev_tag_size: u32,
    flv_header_sent: bool,
    /// Used only when a timestamp needs the extended field (after ~4.6 hours).
    fallback: Option<ChunkEncoder>,
    chunk_size: u32,
    /// TS formats: the player got its first random access point.
    ts_started: bool,
}

/// Room for the longest header: a WebSocket frame header (10) and an FLV tag header (15).
const SCRATCH_LEN: usize = 32;
/// Chunk stream ids used for media with extended timestamps, kept apart from the shared path.
const CSID_FALLBACK_AUDIO: u32 = 8;
const CSID_FALLBACK_VIDEO: u32 = 9;

impl PlayerWriter {
    /// A writer for a player of `format`; `chunk_size` must be the RTMP session's.
    pub fn new(format: PlayerFormat, chunk_size: u32) -> Self {
        PlayerWriter {
            format,
            rebaser: Rebaser::default(),
            scratch: BytesMut::new(),
            prev_tag_size: 0,
            flv_header_sent: false,
            fallback: None,
            chunk_size,
            ts_started: false,
        }
    }

    /// The player's format.
    pub fn format(&self) -> PlayerFormat {
        self.format
    }

    fn header_space(&mut self, need: usize) {
        self.scratch.clear();
        self.scratch.reserve(SCRATCH_LEN.max(need));
    }

    /// The header written since `header_space`, as its own small allocation: freed as soon
    /// as it is written to the socket, so a player holds no header memory between batches.
    fn take_header(&mut self) -> Bytes {
        let header = Bytes::copy_from_slice(&self.scratch);
        self.scratch.clear();
        header
    }

    /// Appends the FLV file header (before the first tag) when the format needs one.
    pub fn start(&mut self, has_audio: bool, has_video: bool, out: &mut Vec<Bytes>) {
        if matches!(self.format, PlayerFormat::Rtmp { .. })
            || self.format.is_ts()
            || self.flv_header_sent
        {
            return;
        }
        self.flv_header_sent = true;
        self.header_space(32);
        let mut header = BytesMut::with_capacity(flv::FLV_HEADER_LEN + 4);
        flv::write_file_header(has_audio, has_video, &mut header);
        // write_file_header includes PreviousTagSize0; our tags carry the previous size in front.
        header.truncate(flv::FLV_HEADER_LEN);
        if self.format == PlayerFormat::WsFlv {
            websocket::write_frame_header(Opcode::Binary, true, header.len(), &mut self.scratch);
            out.push(self.take_header());
        }
        out.push(header.freeze());
    }

    /// Appends what ends the byte stream cleanly: for FLV outputs, the PreviousTagSize of the
    /// last tag (each tag's size is otherwise written in front of the next one).
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if !matches!(self.format, PlayerFormat::Flv | PlayerFormat::WsFlv)
            || self.prev_tag_size == 0
        {
            return;
        }
        self.header_space(16);
        if self.format == PlayerFormat::WsFlv {
            websocket::write_frame_header(Opcode::Binary, true, 4, &mut self.scratch);
        }
        self.scratch.put_u32(self.prev_tag_size);
        self.prev_tag_size = 0;
        out.push(self.take_header());
    }

    /// Appends the segments that deliver `packet` to this player; returns their byte count.
    pub fn render(&mut self, packet: &Packet, out: &mut Vec<Bytes>) -> usize {
        let p = packet.data();
        if self.format.is_ts() {
            return self.render_ts(p, out);
        }
        if p.body.is_empty() {
            // A frame FLV cannot carry (Opus from RTSP), or a codec hint: not for these players.
            return 0;
        }
        let timestamp = match p.kind {
            // At the player's current time, so a publisher (or pull) that comes back does not
            // send the player's timestamps back to 0.
            PacketKind::Metadata => self.rebaser.current(None),
            PacketKind::VideoConfig => self.rebaser.current(Some(0)),
            PacketKind::AudioConfig => self.rebaser.current(Some(1)),
            PacketKind::Video { .. } => self.rebaser.rebase(0, p.dts),
            PacketKind::Audio => self.rebaser.rebase(1, p.dts),
        };
        let body_len = p.body.len();
        match self.format {
            PlayerFormat::Rtmp { stream_id } => {
                self.header_space(18);
                let csid = csid_for(p.type_id);
                if write_fmt0_header(
                    csid,
                    timestamp,
                    body_len as u32,
                    p.type_id,
                    stream_id,
                    &mut self.scratch,
                ) {
                    let header = self.take_header();
                    let n = header.len() + p.rtmp_chunked.len();
                    out.push(header);
                    out.push(p.rtmp_chunked.clone());
                    n
                } else {
                    let fallback_csid = if p.type_id == message_type::AUDIO {
                        CSID_FALLBACK_AUDIO
                    } else {
                        CSID_FALLBACK_VIDEO
                    };
                    let chunk_size = self.chunk_size;
                    let encoder = self.fallback.get_or_insert_with(|| {
                        let mut e = ChunkEncoder::new();
                        e.set_chunk_size(chunk_size);
                        e
                    });
                    let mut buf = BytesMut::with_capacity(body_len + body_len / 64 + 32);
                    encoder.encode(
                        fallback_csid,
                        timestamp,
                        p.type_id,
                        stream_id,
                        &p.body,
                        &mut buf,
                    );
                    let n = buf.len();
                    out.push(buf.freeze());
                    n
                }
            }
            PlayerFormat::Flv | PlayerFormat::WsFlv | PlayerFormat::Ts | PlayerFormat::WsTs => {
                let tag_type = match p.type_id {
                    message_type::AUDIO => TagType::Audio,
                    message_type::VIDEO => TagType::Video,
                    _ => TagType::Script,
                };
                self.header_space(32);
                let tag_len = 4 + 11 + body_len;
                if self.format == PlayerFormat::WsFlv {
                    websocket::write_frame_header(Opcode::Binary, true, tag_len, &mut self.scratch);
                }
                self.scratch.put_u32(self.prev_tag_size);
                flv::write_tag_header(tag_type, timestamp, body_len as u32, &mut self.scratch);
                self.prev_tag_size = 11 + body_len as u32;
                let header = self.take_header();
                let n = header.len() + body_len;
                out.push(header);
                out.push(p.body.clone());
                n
            }
        }
    }
}

impl PlayerWriter {
    /// TS players: the shared bytes as they are, from the first random access point on.
    fn render_ts(&mut self, p: &PacketData, out: &mut Vec<Bytes>) -> usize {
        if p.ts.is_empty() || !(self.ts_started || p.ts_random_access) {
            return 0;
        }
        self.ts_started = true;
        let mut n = p.ts.len();
        if self.format == PlayerFormat::WsTs {
            self.header_space(16);
            websocket::write_frame_header(Opcode::Binary, true, p.ts.len(), &mut self.scratch);
            let header = self.take_header();
            n += header.len();
            out.push(header);
        }
        out.push(p.ts.clone());
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_players_share_the_bytes_muxed_once() {
        use crate::media::{Codec, FrameKind};
        use crate::ts::TsMuxer;
        let mut muxer = TsMuxer::new();
        let mk = |key: bool, dts: i64| Frame {
            codec: Codec::Mp3,
            kind: FrameKind::Coded,
            dts,
            pts: dts,
            key,
            // MPEG-1 layer III, 128 kb/s, 44.1 kHz header and a body.
            payload: Bytes::from([&[0xFF, 0xFB, 0x90, 0x64][..], &[0u8; 413][..]].concat()),
        };
        let packets: Vec<Packet> = [0, 26, 600]
            .into_iter()
            .map(|dts| {
                let f = mk(true, dts);
                let ts = muxer.mux(&f).expect("mp3 muxes");
                Packet::new(PacketKind::Audio, dts, Some(f), 8, Bytes::new(), 4096, ts)
            })
            .collect();
        assert!(packets[0].data().ts_random_access);
        assert!(!packets[1].data().ts_random_access);
        for format in [PlayerFormat::Ts, PlayerFormat::WsTs] {
            // A player joining at the second packet waits for the next random access point.
            let mut w = PlayerWriter::new(format, 4096);
            let mut out = Vec::new();
            assert_eq!(w.render(&packets[1], &mut out), 0);
            assert!(w.render(&packets[2], &mut out) > 0);
            let shared = packets[2].data().ts.as_ptr();
            assert!(
                out.iter().any(|b| b.as_ptr() == shared),
                "{format:?} copied"
            );
        }
    }

    #[test]
    fn a_sequence_header_goes_at_its_own_tracks_time_so_that_track_never_goes_back() {
        // Video ahead of audio, as when a publisher (or a pull) comes back mid-stream.
        let mut r = Rebaser::default();
        r.rebase(0, 1000);
        r.rebase(1, 1010);
        r.rebase(0, 1080);
        let audio_header = r.current(Some(1));
        let next_audio = r.rebase(1, 1030);
        assert!(audio_header <= next_audio, "{audio_header} > {next_audio}");
        assert_eq!(r.current(Some(0)), 80);
        assert_eq!(
            r.current(None),
            80,
            "metadata at the latest time of any track"
        );
    }

    #[test]
    fn rebase_starts_at_zero_and_stays_monotonic() {
        let mut r = Rebaser::default();
        assert_eq!(r.rebase(0, 5000), 0);
        assert_eq!(r.rebase(1, 4990), 0); // audio slightly behind: clamped, not negative
        assert_eq!(r.rebase(0, 5040), 40);
        assert_eq!(r.rebase(1, 5030), 30);
        // Publisher restarts at 0: continue from the current position.
        let t = r.rebase(0, 0);
        assert!(t >= 40);
        assert_eq!(r.rebase(0, 40), t + 40);
        // A forward jump of an hour is also smoothed.
        let u = r.rebase(0, 3_600_000);
        assert!(u >= t + 40 && u < t + 1000);
    }
}
