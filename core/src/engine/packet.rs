//! The packet the hub fans out, encoded once per stream for every output format, and the
//! per-player rendering that adds only a small header in front of the shared bytes.

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};

use crate::flv::{self, TagType};
use crate::fmp4::{self, Fragment};
use crate::http::websocket::{self, Opcode};
use crate::hub::{HubPacket, PacketKind};
use crate::media::{Codec, Frame};
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
    /// `body` cut into RTMP chunks (fmt-3 separators) at `chunk_size`: made once, by the
    /// first RTMP player or push that needs it (a stream nobody plays over RTMP is never
    /// chunked).
    rtmp_chunked: OnceLock<Bytes>,
    chunk_size: u32,
    /// The frame as MPEG-TS packets, muxed once by the stream's muxer for HLS and every
    /// HTTP-TS / WS-TS player (empty for metadata and configurations).
    pub ts: Bytes,
    /// `ts` starts with PAT/PMT and a decodable frame: a TS player or segment may start here.
    pub ts_random_access: bool,
    /// The Enhanced RTMP form (body, chunked on first use) when it differs from `body`, the
    /// legacy form (HEVC: FourCC `hvc1` instead of codec id 12; Opus, whose legacy body is
    /// empty), for players that announced support.
    enhanced: Option<(Bytes, OnceLock<Bytes>)>,
    /// The fMP4 fragment this frame completed (the previous sample of its track, see
    /// [`crate::fmp4`]), muxed once by the stream's muxer for every fMP4 output.
    pub fmp4: Option<Fragment>,
    /// Low-Latency HLS windows are built from this packet: the stream's fMP4 muxer ran for it
    /// (its fragment may still be `None`: a frame completes the previous sample of its
    /// track) and the windows are wanted. They are dropped at a packet without it, so every
    /// engine starts and stops them at the same packet.
    pub ll_window: bool,
}

/// Which FLV form of a frame a reader gets (see [`PacketData::flv_form`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlvForm {
    /// The legacy form; nothing for a codec that has only the Enhanced one (Opus): a player
    /// that did not announce Enhanced RTMP.
    Legacy,
    /// The legacy form where there is one, else the Enhanced one: a recording or a relay
    /// push, whose reader is not known to predate Enhanced RTMP.
    LegacyOrEnhanced,
    /// The Enhanced form wherever it differs: a player that announced it.
    Enhanced,
}

impl FlvForm {
    /// The form for a player: Enhanced when it announced Enhanced RTMP.
    pub fn for_player(enhanced: bool) -> FlvForm {
        if enhanced {
            FlvForm::Enhanced
        } else {
            FlvForm::Legacy
        }
    }
}

impl PacketData {
    /// The FLV tag body in `form`; empty when FLV has nothing for that reader.
    pub fn flv_body(&self, form: FlvForm) -> &Bytes {
        self.flv_form(form).0
    }

    /// The FLV tag body in `form` cut into RTMP chunks, chunked on the first call.
    pub fn rtmp_chunked(&self, form: FlvForm) -> &Bytes {
        let (body, chunked) = self.flv_form(form);
        chunked.get_or_init(|| {
            if body.len() <= self.chunk_size as usize {
                body.clone()
            } else {
                chunk_body(csid_for(self.type_id), body, self.chunk_size)
            }
        })
    }

    fn flv_form(&self, form: FlvForm) -> (&Bytes, &OnceLock<Bytes>) {
        match &self.enhanced {
            Some((body, chunked))
                if form == FlvForm::Enhanced
                    || (form == FlvForm::LegacyOrEnhanced && self.body.is_empty()) =>
            {
                (body, chunked)
            }
            _ => (&self.body, &self.rtmp_chunked),
        }
    }
}

impl Packet {
    /// Builds a packet; its RTMP chunks, for every RTMP player, are made at `chunk_size` when
    /// first needed. `ts` is the frame as muxed by the stream's [`crate::ts::TsMuxer`]
    /// (default when there is none).
    pub fn new(
        kind: PacketKind,
        dts: i64,
        frame: Option<Frame>,
        type_id: u8,
        body: Bytes,
        chunk_size: u32,
        ts: TsChunk,
    ) -> Self {
        Packet(Arc::new(PacketData {
            kind,
            dts,
            frame,
            type_id,
            body,
            rtmp_chunked: OnceLock::new(),
            chunk_size,
            ts: ts.bytes,
            ts_random_access: ts.random_access,
            enhanced: None,
            fmp4: None,
            ll_window: false,
        }))
    }

    /// Adds the Enhanced RTMP form of the body (chunked on first use too), for a packet just
    /// built.
    pub fn with_enhanced(mut self, body: Bytes) -> Self {
        if let Some(d) = Arc::get_mut(&mut self.0) {
            d.enhanced = Some((body, OnceLock::new()));
        }
        self
    }

    /// Marks a packet just built as one Low-Latency HLS windows are built from
    /// ([`PacketData::ll_window`]).
    pub fn with_ll_window(mut self) -> Self {
        if let Some(d) = Arc::get_mut(&mut self.0) {
            d.ll_window = true;
        }
        self
    }

    /// Attaches the fMP4 fragment the stream's muxer made of this packet's frame; only
    /// possible before the packet is shared (cloned), and false otherwise.
    pub fn set_fmp4(&mut self, fragment: Fragment) -> bool {
        match Arc::get_mut(&mut self.0) {
            Some(data) => {
                data.fmp4 = Some(fragment);
                true
            }
            None => false,
        }
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
    /// HTTP-fMP4: an init segment, then fMP4 fragments from a key frame on, endless.
    Fmp4,
    /// WebSocket-fMP4: the same in binary WebSocket frames (the init segment in one, then one
    /// per fragment).
    WsFmp4,
}

impl PlayerFormat {
    /// True for the MPEG-TS formats, whose bytes are muxed once per stream (no per-player
    /// header, no rebasing: every player gets the same bytes from a random access point on).
    pub fn is_ts(self) -> bool {
        matches!(self, PlayerFormat::Ts | PlayerFormat::WsTs)
    }

    /// True for the fMP4 formats, whose fragments are muxed once per stream.
    pub fn is_fmp4(self) -> bool {
        matches!(self, PlayerFormat::Fmp4 | PlayerFormat::WsFmp4)
    }

    /// True for the formats sent in WebSocket frames.
    pub fn is_websocket(self) -> bool {
        matches!(
            self,
            PlayerFormat::WsFlv | PlayerFormat::WsTs | PlayerFormat::WsFmp4
        )
    }

    /// The `Content-Type` of an HTTP response carrying this format.
    pub fn content_type(self) -> &'static str {
        match self {
            PlayerFormat::Ts | PlayerFormat::WsTs => "video/mp2t",
            PlayerFormat::Fmp4 | PlayerFormat::WsFmp4 => "video/mp4",
            _ => "video/x-flv",
        }
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
    /// FLV formats: the PreviousTagSize not written yet. It goes in front of the next tag
    /// (one header allocation for both), or alone at the end of a batch
    /// ([`PlayerWriter::finish`]), since FLV readers take a tag only once its size follows it.
    owed_tag_size: Option<u32>,
    flv_header_sent: bool,
    /// Used only when a timestamp needs the extended field (after ~4.6 hours).
    fallback: Option<ChunkEncoder>,
    chunk_size: u32,
    /// TS formats: the player got its first random access point.
    ts_started: bool,
    /// The FLV form this reader gets: Enhanced for a player that announced Enhanced RTMP
    /// (RTMP `fourCcList`, or HTTP-FLV by config/query).
    form: FlvForm,
    /// A codec without a legacy FLV form (AV1, Opus) met this legacy player;
    /// the engine logs it once (see [`PlayerWriter::take_enhanced_only`]).
    enhanced_only: [Option<Notice>; 2],
    /// fMP4 formats: the init segment the player has (it starts at an independent fragment
    /// after it, and gets the new one when the stream's changes).
    fmp4_init: Option<Bytes>,
    /// fMP4 formats, per track (video, audio): where the next fragment should start (ticks),
    /// and how far this player's fragments are moved forward, so that decode times never go
    /// back when a new publisher's muxer starts again from 0.
    fmp4_next: [Option<u64>; 2],
    fmp4_shift: [u64; 2],
}

/// A codec without a legacy FLV form met by a legacy player, per track: whether it was
/// reported yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Notice {
    Pending(Codec),
    Reported,
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
            owed_tag_size: None,
            flv_header_sent: false,
            fallback: None,
            chunk_size,
            ts_started: false,
            form: FlvForm::Legacy,
            enhanced_only: [None; 2],
            fmp4_init: None,
            fmp4_next: [None; 2],
            fmp4_shift: [0; 2],
        }
    }

    /// Which FLV form this reader gets (HEVC as FourCC `hvc1` or codec id 12, Opus or not).
    pub fn set_flv_form(&mut self, form: FlvForm) {
        self.form = form;
    }

    /// A codec with no legacy FLV form that this legacy player met: AV1, sent anyway in its
    /// Enhanced form (the player may read it without having announced it), or Opus, left out.
    /// The first time only: for the log.
    pub fn take_enhanced_only(&mut self) -> Option<Codec> {
        self.enhanced_only.iter_mut().find_map(|n| match *n {
            Some(Notice::Pending(c)) => {
                *n = Some(Notice::Reported);
                Some(c)
            }
            _ => None,
        })
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
            || self.format.is_fmp4()
            || self.flv_header_sent
        {
            return;
        }
        self.flv_header_sent = true;
        self.header_space(32);
        let mut header = BytesMut::with_capacity(flv::FLV_HEADER_LEN + 4);
        flv::write_file_header(has_audio, has_video, &mut header);
        // write_file_header includes PreviousTagSize0; it goes with the first tag's header.
        header.truncate(flv::FLV_HEADER_LEN);
        self.owed_tag_size = Some(0);
        if self.format == PlayerFormat::WsFlv {
            websocket::write_frame_header(Opcode::Binary, true, header.len(), &mut self.scratch);
            out.push(self.take_header());
        }
        out.push(header.freeze());
    }

    /// Completes the last tag rendered (FLV formats: its PreviousTagSize, otherwise written in
    /// front of the next tag). Called at the end of every batch a reader is given and at the
    /// end of the stream: flv.js, mpegts.js and ffmpeg hand a tag on only once its size has
    /// arrived, so a tag left without it would wait for the next one (the last frame before a
    /// pause or the stream's end by seconds).
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        let Some(size) = self.owed_tag_size.take() else {
            return;
        };
        self.header_space(16);
        if self.format == PlayerFormat::WsFlv {
            websocket::write_frame_header(Opcode::Binary, true, 4, &mut self.scratch);
        }
        self.scratch.put_u32(size);
        out.push(self.take_header());
    }

    /// Appends the segments that deliver `packet` to this player; returns their byte count.
    pub fn render(&mut self, packet: &Packet, out: &mut Vec<Bytes>) -> usize {
        let p = packet.data();
        if self.format.is_ts() {
            return self.render_ts(p, out);
        }
        if self.format.is_fmp4() {
            return self.render_fmp4(p, out);
        }
        let body = p.flv_body(self.form);
        // A codec whose only FLV form is Enhanced, met by a player that did not ask for it:
        // AV1 goes anyway, Opus does not (the engine logs either once).
        if let Some(f) = p
            .frame
            .as_ref()
            .filter(|f| self.form == FlvForm::Legacy && matches!(f.codec, Codec::Av1 | Codec::Opus))
        {
            let notice = &mut self.enhanced_only[usize::from(f.codec == Codec::Opus)];
            if notice.is_none() {
                *notice = Some(Notice::Pending(f.codec));
            }
        }
        if body.is_empty() {
            // A frame FLV cannot carry to this player (Opus without Enhanced RTMP), or a codec
            // hint: not for these players.
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
        let body_len = body.len();
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
                    let chunked = p.rtmp_chunked(self.form);
                    let n = header.len() + chunked.len();
                    out.push(header);
                    out.push(chunked.clone());
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
                        body,
                        &mut buf,
                    );
                    let n = buf.len();
                    out.push(buf.freeze());
                    n
                }
            }
            _ => {
                let tag_type = match p.type_id {
                    message_type::AUDIO => TagType::Audio,
                    message_type::VIDEO => TagType::Video,
                    _ => TagType::Script,
                };
                self.header_space(32);
                let owed = self.owed_tag_size.take();
                let tag_len = owed.map_or(0, |_| 4) + 11 + body_len;
                if self.format == PlayerFormat::WsFlv {
                    websocket::write_frame_header(Opcode::Binary, true, tag_len, &mut self.scratch);
                }
                if let Some(size) = owed {
                    self.scratch.put_u32(size);
                }
                flv::write_tag_header(tag_type, timestamp, body_len as u32, &mut self.scratch);
                self.owed_tag_size = Some(11 + body_len as u32);
                let header = self.take_header();
                let n = header.len() + body_len;
                out.push(header);
                out.push(body.clone());
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

    /// fMP4 players: the init segment, then the shared fragments from an independent one on;
    /// a new init segment (the stream's tracks changed) is sent before the next independent
    /// fragment, and nothing in between. After a publisher change (decode times start again)
    /// the player gets its own copy of each fragment head, moved to continue its timeline.
    fn render_fmp4(&mut self, p: &PacketData, out: &mut Vec<Bytes>) -> usize {
        let Some(f) = &p.fmp4 else {
            return 0;
        };
        let Some((head, rest)) = f.pieces.split_first() else {
            return 0;
        };
        let same_init = self
            .fmp4_init
            .as_ref()
            .is_some_and(|i| i.as_ptr() == f.init.as_ptr() || *i == f.init);
        let mut n = 0;
        if !same_init {
            if !f.independent {
                return 0;
            }
            self.fmp4_init = Some(f.init.clone());
            n += self.push_message(&f.init, &[], out);
        }
        let head = self.continue_timeline(head);
        n + self.push_message(&head, rest, out)
    }

    /// The fragment head as this player needs it: shared, or moved forward after its track's
    /// decode time went back (see [`PlayerWriter::fmp4_shift`]).
    fn continue_timeline(&mut self, head: &Bytes) -> Bytes {
        let Some((track, time, duration)) = fmp4::fragment_timing(head) else {
            return head.clone();
        };
        let Some(i) = (track as usize).checked_sub(1).filter(|&i| i < 2) else {
            return head.clone();
        };
        let mut moved = time.saturating_add(self.fmp4_shift[i]);
        if let Some(next) = self.fmp4_next[i] {
            if moved < next {
                self.fmp4_shift[i] = next - time;
                moved = next;
            }
        }
        self.fmp4_next[i] = Some(moved.saturating_add(u64::from(duration)));
        if moved == time {
            return head.clone();
        }
        fmp4::with_decode_time(head, moved).unwrap_or_else(|| head.clone())
    }

    /// Appends `first` and `rest` as one message: as they are over HTTP, in one binary frame
    /// over WebSocket.
    fn push_message(&mut self, first: &Bytes, rest: &[Bytes], out: &mut Vec<Bytes>) -> usize {
        let mut n = first.len() + rest.iter().map(Bytes::len).sum::<usize>();
        if self.format.is_websocket() {
            self.header_space(16);
            websocket::write_frame_header(Opcode::Binary, true, n, &mut self.scratch);
            let header = self.take_header();
            n += header.len();
            out.push(header);
        }
        out.push(first.clone());
        out.extend(rest.iter().cloned());
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_chunks_are_made_once_and_only_for_rtmp_readers() {
        let body = Bytes::from(vec![7u8; 10_000]);
        let packet = Packet::new(
            PacketKind::Video { key: true },
            0,
            None,
            message_type::VIDEO,
            body.clone(),
            4096,
            TsChunk::default(),
        );
        let mut out = Vec::new();
        PlayerWriter::new(PlayerFormat::Flv, 4096).render(&packet, &mut out);
        assert!(
            packet.data().rtmp_chunked.get().is_none(),
            "FLV needs no chunks"
        );
        let rtmp = || {
            let mut out = Vec::new();
            PlayerWriter::new(PlayerFormat::Rtmp { stream_id: 1 }, 4096).render(&packet, &mut out);
            out.pop().expect("the chunked body")
        };
        let (first, second) = (rtmp(), rtmp());
        assert_eq!(
            first,
            chunk_body(csid_for(message_type::VIDEO), &body, 4096)
        );
        assert_eq!(first.as_ptr(), second.as_ptr(), "chunked once, shared");
    }

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
    fn fmp4_players_get_the_init_then_shared_fragments_from_a_key_frame() {
        use crate::fmp4::Fmp4Muxer;
        use crate::media::{Codec, FrameKind};
        let tracks = crate::fmp4::tests::tracks();
        let mut muxer = Fmp4Muxer::new(&tracks).expect("muxer");
        let mut packet = |dts: i64, key: bool| {
            let f = Frame {
                codec: Codec::H264,
                kind: FrameKind::Coded,
                dts,
                pts: dts,
                key,
                payload: Bytes::from(vec![0, 0, 0, 1, if key { 0x65 } else { 0x41 }]),
            };
            let fragment = muxer.push(&f);
            let mut p = Packet::new(
                PacketKind::Video { key },
                dts,
                Some(f),
                9,
                Bytes::new(),
                4096,
                TsChunk::default(),
            );
            if let Some(fragment) = fragment {
                assert!(p.set_fmp4(fragment));
            }
            p
        };
        // P (completes nothing), P, K (completes a P), P (completes the K), P.
        let packets: Vec<Packet> = [
            (0, false),
            (40, false),
            (80, true),
            (120, false),
            (160, false),
        ]
        .into_iter()
        .map(|(dts, key)| packet(dts, key))
        .collect();
        let shared = packets[1].clone();
        let mut again = shared.clone();
        assert!(!again.set_fmp4(packets[3].data().fmp4.clone().expect("fragment")));
        for format in [PlayerFormat::Fmp4, PlayerFormat::WsFmp4] {
            let mut w = PlayerWriter::new(format, 4096);
            let mut out = Vec::new();
            assert_eq!(w.render(&packets[0], &mut out), 0);
            assert_eq!(w.render(&packets[1], &mut out), 0, "not a key frame");
            assert_eq!(w.render(&packets[2], &mut out), 0, "not a key frame");
            assert!(w.render(&packets[3], &mut out) > 0);
            let f = packets[3].data().fmp4.as_ref().expect("fragment");
            assert!(f.independent);
            let ws = format == PlayerFormat::WsFmp4;
            // [ws header] init, [ws header] moof+mdat header, payload.
            let init_at = usize::from(ws);
            assert_eq!(
                out[init_at].as_ptr(),
                f.init.as_ptr(),
                "{format:?}: init first"
            );
            assert_eq!(
                out.last().map(|b| b.as_ptr()),
                Some(f.pieces[1].as_ptr()),
                "{format:?}: the payload is shared"
            );
            let before = out.len();
            assert!(w.render(&packets[4], &mut out) > 0);
            assert_eq!(out.len() - before, 2 + usize::from(ws), "no second init");
        }
    }

    #[test]
    fn an_fmp4_player_keeps_its_timeline_across_publishers() {
        use crate::fmp4::{fragment_timing, Fmp4Muxer};
        use crate::media::{Codec, FrameKind};
        let tracks = crate::fmp4::tests::tracks();
        let packets = |muxer: &mut Fmp4Muxer, from: i64| -> Vec<Packet> {
            (0..4)
                .map(|i| {
                    let dts = from + i * 40;
                    let f = Frame {
                        codec: Codec::H264,
                        kind: FrameKind::Coded,
                        dts,
                        pts: dts,
                        key: i == 0,
                        payload: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
                    };
                    let fragment = muxer.push(&f);
                    let mut p = Packet::new(
                        PacketKind::Video { key: i == 0 },
                        dts,
                        Some(f),
                        9,
                        Bytes::new(),
                        4096,
                        TsChunk::default(),
                    );
                    if let Some(fragment) = fragment {
                        p.set_fmp4(fragment);
                    }
                    p
                })
                .collect()
        };
        // The first publisher, then a second one whose muxer starts again from 0.
        let mut all = packets(&mut Fmp4Muxer::new(&tracks).expect("muxer"), 5000);
        all.extend(packets(&mut Fmp4Muxer::new(&tracks).expect("muxer"), 0));
        let mut w = PlayerWriter::new(PlayerFormat::Fmp4, 4096);
        let mut times = Vec::new();
        for p in &all {
            let mut out = Vec::new();
            w.render(p, &mut out);
            times.extend(out.iter().filter_map(|b| fragment_timing(b)).map(|t| t.1));
        }
        // 40 ms at 90 kHz per frame, without a step back at the second publisher.
        assert_eq!(times, [0, 3600, 7200, 10_800, 14_400, 18_000]);
        // A player of the second publisher alone gets its fragments shared, not moved.
        let second = packets(&mut Fmp4Muxer::new(&tracks).expect("muxer"), 0);
        let mut w = PlayerWriter::new(PlayerFormat::Fmp4, 4096);
        let mut out = Vec::new();
        for p in &second {
            w.render(p, &mut out);
        }
        let heads: Vec<&Bytes> = out
            .iter()
            .filter(|b| fragment_timing(b).is_some())
            .collect();
        let shared = second[1].data().fmp4.as_ref().expect("fragment");
        assert_eq!(heads[0].as_ptr(), shared.pieces[0].as_ptr());
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
