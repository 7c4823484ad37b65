//! HLS: cuts each stream's shared TS bytes into segments and renders live and record playlists.
//!
//! The segmenter never muxes: it is fed the TS bytes the stream's muxer produced once per frame
//! ([`crate::ts::TsChunk`]), and a segment being cut is a list of those shared `Bytes`. When it
//! closes, the engine that owns the stream's publisher joins it into one contiguous buffer (one
//! copy per segment), so that a response is one buffer (one iovec, few writes) and the
//! per-frame chunks are freed instead of living as long as the record playlist among
//! short-lived allocations. That engine hands the joined buffer out as [`HlsOutput::Share`]; the
//! other engines, which cut the same segment from the broadcast packets, take it in with
//! [`Hls::adopt_segment`] in place of their pieces, so every worker serves the same bytes from
//! the same memory.
//!
//! Cuts are decided from timestamps alone (a segment ends at the first random access point at
//! least `fragment_ms` after its start: a video key frame, or for audio-only streams the
//! PAT/PMT the muxer repeats every half second), so every worker that sees the same
//! packets builds the same segments with the same numbers.
//!
//! Target duration: RFC 8216 forbids `#EXT-X-TARGETDURATION` to change and wants every
//! segment's `#EXTINF`, rounded to the nearest second, within it. A stream's target is fixed
//! when its first segment closes, at the larger of the rounded `fragment_ms` and the rounded
//! first segment (which shows how far apart the key frames are), and kept for the life of the
//! stream's playlists, across publisher reconnects. So that later segments stay within it when
//! key frames are irregular (an encoder's scene cuts), a segment is also cut at a random access
//! point *before* `fragment_ms` when waiting for the next one, judged by the longest interval
//! between random access points seen from this publisher, would outgrow the target. The
//! trade-off: such streams get some segments shorter than `fragment_ms`, and a segment can
//! still outgrow the target when key frames come further apart than the target allows (no cut
//! is possible between them); the target is not raised then, as players cope better with one
//! long segment than with a changed target.
//!
//! Memory: segments of the live window are always held. Older segments stay held for the
//! record playlist while they fit in [`HlsConfig::record_max_bytes`] per stream; past that the
//! oldest are dropped and the record playlist (served over HTTP) starts later. An ended stream
//! stays available for [`HlsConfig::keep_after_end_ms`], then is forgotten. Over all streams,
//! what is held stays within [`HlsConfig::memory_max_bytes`]: past it, ended streams go first
//! (the one that ended first, whole, with its Low-Latency window), then the oldest record
//! segments of the live stream holding the most; live windows are never cut (each is bounded
//! by `playlist_len`). [`Hls::memory`] tells what is held, by use. With an out path,
//! every segment and both playlists are also written to files (through [`HlsOutput`]s that the
//! runtime performs), and the record playlist file lists every segment since the start (up to
//! [`RECORD_MAX_ENTRIES`]); [`Cleanup`] says when those files are removed.
//!
//! Segment format: MPEG-TS by default; with [`SegmentFormat::Fmp4`] a segment is a run of the
//! stream's fMP4 fragments ([`crate::fmp4`], fed with [`Hls::push_fragment`]) starting at an
//! independent one, the playlists are version 7 with an `#EXT-X-MAP` naming the init segment
//! (`init{n}.mp4`, a new `n` whenever the stream's init segment changes) and segments are
//! `{seq}.m4s`.
//!
//! Driving it: [`Hls::start`], [`Hls::push`], [`Hls::end`] and [`Hls::handle_timeout`] with the
//! current time, then drain [`Hls::poll_output`] until `None` before the next input.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

use crate::fmp4::Fragment;
use crate::stream_key::StreamKey;

pub mod ll;

pub use ll::{LlConfig, LlHls};

/// How many segments the record playlist file can list (about 3 days of 4-second segments).
pub const RECORD_MAX_ENTRIES: usize = 65_536;
/// A segment growing past this without a random access point is dropped (bytes).
const SEGMENT_MAX_BYTES: usize = 64 << 20;
/// A forward timestamp step larger than this (ms) is a discontinuity, not a gap.
const MAX_FORWARD_JUMP_MS: i64 = 10_000;
/// A backward step larger than this (ms) is a discontinuity; smaller ones are interleaving.
const MAX_BACKWARD_JITTER_MS: i64 = 1_000;

/// When files under the out path are removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cleanup {
    /// Never: the files are a recording.
    Never,
    /// When an ended stream is forgotten (a minute or more after its publisher left).
    StreamEnd,
    /// A segment file is removed as soon as it leaves the live window (no record file).
    Window,
}

/// The container of HLS segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentFormat {
    /// MPEG-TS segments (`.ts`), playlists of version 3.
    #[default]
    Ts,
    /// Fragmented MP4 segments (`.m4s`) with an init segment (`#EXT-X-MAP`), version 7.
    Fmp4,
}

impl SegmentFormat {
    fn extension(self) -> &'static str {
        match self {
            SegmentFormat::Ts => "ts",
            SegmentFormat::Fmp4 => "m4s",
        }
    }
}

/// HLS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlsConfig {
    /// Segment every stream.
    pub enable: bool,
    /// Segment duration (ms): a segment ends at the first key frame at least this long after
    /// its start (or earlier, at a key frame, when waiting would outgrow the target duration;
    /// see the module docs).
    pub fragment_ms: u64,
    /// Segments in the live playlist.
    pub playlist_len: usize,
    /// Directory for segment and playlist files; empty = memory only.
    pub out_path: String,
    /// When files are removed.
    pub cleanup: Cleanup,
    /// Bytes of segments older than the live window kept in memory per stream for the record
    /// playlist.
    pub record_max_bytes: usize,
    /// Low-Latency HLS (`/{app}/{stream}/llhls.m3u8`) of every stream.
    pub ll_enable: bool,
    /// Low-Latency HLS windows are built only while someone asks for them: from the first
    /// authorized request for a stream's `llhls.m3u8` (answered once the first segment is
    /// complete) until [`ll::ON_DEMAND_IDLE_MS`] pass without one. Off, every stream has its
    /// window from its start.
    pub ll_on_demand: bool,
    /// Low-Latency HLS part target duration (ms).
    pub ll_part_ms: u64,
    /// Complete segments in the Low-Latency HLS playlist.
    pub ll_playlist_len: usize,
    /// The segments' container.
    pub segment_format: SegmentFormat,
    /// Bytes of segments held in memory over every stream (live windows, record playlists,
    /// ended streams); past it ended streams are forgotten first, then the oldest record
    /// segments.
    pub memory_max_bytes: usize,
    /// How long (ms) an ended stream's playlists and segments stay available (its record
    /// playlist too), unless the memory budget needs them gone sooner.
    pub keep_after_end_ms: u64,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            enable: true,
            fragment_ms: 2000,
            playlist_len: 5,
            out_path: String::new(),
            cleanup: Cleanup::StreamEnd,
            record_max_bytes: 64 << 20,
            ll_enable: true,
            ll_on_demand: false,
            ll_part_ms: 300,
            ll_playlist_len: 10,
            segment_format: SegmentFormat::Ts,
            memory_max_bytes: 256 << 20,
            keep_after_end_ms: 60_000,
        }
    }
}

/// A file operation for the runtime (core touches no files). Paths are built only from the
/// configured out path and validated stream names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HlsOutput {
    /// Replace the file at `path` (creating its directory) with the concatenation of `data`.
    WriteFile {
        /// Path under the out path.
        path: String,
        /// The contents, in pieces (shared, not copied).
        data: Vec<Bytes>,
    },
    /// Remove the file at `path` if it exists.
    RemoveFile {
        /// Path under the out path.
        path: String,
    },
    /// A segment of a stream written to files was opened (`duration_ms` 0) or closed (for
    /// lal's `on_hls_make_ts` webhook).
    Segment(SegmentEvent),
    /// A segment of a stream published here closed and was joined into one buffer: for the
    /// other engines that cut the same segment ([`Hls::adopt_segment`]).
    Share {
        /// The stream.
        key: StreamKey,
        /// Its sequence number.
        seq: u64,
        /// Its bytes, in one piece.
        data: Bytes,
    },
}

/// A segment opened or closed, with its files (see [`HlsOutput::Segment`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEvent {
    /// `app/stream`.
    pub key: String,
    /// Closed rather than opened.
    pub closed: bool,
    /// Its sequence number.
    pub seq: u64,
    /// Its duration (ms; 0 when it opens).
    pub duration_ms: u64,
    /// The segment's file.
    pub ts_file: String,
    /// The live playlist's file.
    pub live_m3u8_file: String,
    /// The record playlist's file (empty when none is written).
    pub record_m3u8_file: String,
}

impl SegmentEvent {
    fn new(config: &HlsConfig, key: &str, seq: u64, closed: bool, duration_ms: u64) -> Self {
        SegmentEvent {
            key: key.to_owned(),
            closed,
            seq,
            duration_ms,
            ts_file: segment_path(config, key, seq),
            live_m3u8_file: live_path(config, key),
            record_m3u8_file: if config.cleanup == Cleanup::Window {
                String::new()
            } else {
                record_path(config, key)
            },
        }
    }
}

/// What an HTTP path asks of HLS (routed by `engine::routes`; names are validated as stream
/// names before use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HlsRequest<'a> {
    /// `/{app}/{stream}.m3u8`: the live playlist.
    Live {
        /// Application.
        app: &'a str,
        /// Stream.
        stream: &'a str,
    },
    /// `/{app}/{stream}/record.m3u8`: the record playlist.
    Record {
        /// Application.
        app: &'a str,
        /// Stream.
        stream: &'a str,
    },
    /// `/{app}/{stream}/{seq}.ts`: one segment.
    Segment {
        /// Application.
        app: &'a str,
        /// Stream.
        stream: &'a str,
        /// Media sequence number.
        seq: u64,
    },
    /// `/{app}/{stream}/{seq}.m4s`: one fMP4 segment.
    Fmp4Segment {
        /// Application.
        app: &'a str,
        /// Stream.
        stream: &'a str,
        /// Media sequence number.
        seq: u64,
    },
    /// `/{app}/{stream}/init{id}.mp4`: an init segment of fMP4 segments.
    Init {
        /// Application.
        app: &'a str,
        /// Stream.
        stream: &'a str,
        /// Its number in the playlists' `#EXT-X-MAP`.
        id: u64,
    },
}

#[derive(Clone, Copy, Debug)]
struct SegInfo {
    seq: u64,
    duration_ms: u64,
    discontinuity: bool,
    /// fMP4: the number of its init segment.
    map: Option<u64>,
}

#[derive(Debug)]
struct Segment {
    info: SegInfo,
    /// One contiguous buffer once joined (or adopted); the frames' pieces until then.
    parts: Vec<Bytes>,
    bytes: usize,
    /// fMP4: its init segment (shared).
    init: Option<Bytes>,
}

#[derive(Debug)]
struct Building {
    seq: u64,
    start_dts: i64,
    max_dts: i64,
    step: i64,
    discontinuity: bool,
    parts: Vec<Bytes>,
    bytes: usize,
    /// fMP4: the init segment and its number.
    init: Option<(u64, Bytes)>,
}

#[derive(Debug)]
struct HlsStream {
    /// `app/stream`.
    key: StreamKey,
    local: bool,
    current: Option<Building>,
    held: VecDeque<Segment>,
    held_bytes: usize,
    /// Every segment since the start, for the record playlist file.
    record: VecDeque<SegInfo>,
    next_seq: u64,
    discontinuity_next: bool,
    /// Discontinuities among segments that left the live window.
    discontinuity_seq: u64,
    last_dts: Option<i64>,
    ended: bool,
    expire_at: Option<u64>,
    /// `#EXT-X-TARGETDURATION` (s), fixed when the first segment closes, never changed after.
    target_s: Option<u64>,
    /// The last random access point of this publisher (ms), to measure the intervals.
    last_rap_dts: Option<i64>,
    /// The longest interval between random access points of this publisher (ms).
    max_rap_gap_ms: i64,
    /// Segment files written and not yet removed.
    files: VecDeque<u64>,
    live_cache: Option<Bytes>,
    record_cache: Option<Bytes>,
    /// fMP4: the init segment of the fragments coming in, and its number.
    init: Option<(u64, Bytes)>,
    /// The number of the next new init segment.
    next_init: u64,
    /// Init segment files written.
    init_files: Vec<u64>,
}

/// What HLS holds in memory, by use, and what the budget evicted (see [`Hls::memory`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HlsMemory {
    /// Bytes of the live windows of live streams and of the segments being cut.
    pub live: u64,
    /// Bytes of older segments of live streams, kept for their record playlists.
    pub record: u64,
    /// Bytes still held for ended streams (Low-Latency windows included).
    pub ended: u64,
    /// Bytes of the Low-Latency HLS windows of live streams.
    pub ll: u64,
    /// Ended streams forgotten early to stay within [`HlsConfig::memory_max_bytes`].
    pub evicted_streams: u64,
    /// Record segments of live streams dropped to stay within it.
    pub evicted_segments: u64,
}

impl HlsMemory {
    /// Each figure the larger of the two (for engines that hold the same shared segments).
    pub fn max(&self, other: &HlsMemory) -> HlsMemory {
        HlsMemory {
            live: self.live.max(other.live),
            record: self.record.max(other.record),
            ended: self.ended.max(other.ended),
            ll: self.ll.max(other.ll),
            evicted_streams: self.evicted_streams.max(other.evicted_streams),
            evicted_segments: self.evicted_segments.max(other.evicted_segments),
        }
    }
}

/// Segmenters and playlists of every stream of one engine. See the module docs.
#[derive(Debug)]
pub struct Hls {
    config: HlsConfig,
    streams: HashMap<StreamKey, HlsStream>,
    outputs: VecDeque<HlsOutput>,
    /// The Low-Latency HLS windows, started and ended with the classic ones.
    ll: LlHls,
    evicted_streams: u64,
    evicted_segments: u64,
}

impl Hls {
    /// No streams yet.
    pub fn new(config: HlsConfig) -> Self {
        let ll = LlHls::new(LlConfig {
            enable: config.enable && config.ll_enable,
            part_ms: config.ll_part_ms,
            segment_ms: config.fragment_ms,
            playlist_len: config.ll_playlist_len,
            keep_after_end_ms: config.keep_after_end_ms,
        });
        Hls {
            config,
            streams: HashMap::new(),
            outputs: VecDeque::new(),
            ll,
            evicted_streams: 0,
            evicted_segments: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &HlsConfig {
        &self.config
    }

    /// The Low-Latency HLS windows (ended and expired with the classic ones; started by the
    /// caller, which knows the wall clock).
    pub fn ll(&mut self) -> &mut LlHls {
        &mut self.ll
    }

    /// Number of streams known (live or lingering after their end).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// A publisher started `key` (`app/stream`). When `local`, this engine writes its files.
    /// A stream that already has segments continues after a discontinuity.
    pub fn start(&mut self, key: &StreamKey, local: bool) {
        if !self.config.enable {
            return;
        }
        let s = self
            .streams
            .entry(key.clone())
            .or_insert_with(|| HlsStream {
                key: key.clone(),
                local,
                current: None,
                held: VecDeque::new(),
                held_bytes: 0,
                record: VecDeque::new(),
                next_seq: 0,
                discontinuity_next: false,
                discontinuity_seq: 0,
                last_dts: None,
                ended: false,
                expire_at: None,
                target_s: None,
                last_rap_dts: None,
                max_rap_gap_ms: 0,
                files: VecDeque::new(),
                live_cache: None,
                record_cache: None,
                init: None,
                next_init: 0,
                init_files: Vec::new(),
            });
        s.local = local;
        close_current(&self.config, s, None, &mut self.outputs);
        s.discontinuity_next = s.next_seq > 0;
        s.ended = false;
        s.expire_at = None;
        s.last_dts = None;
        s.last_rap_dts = None;
        s.max_rap_gap_ms = 0;
        s.invalidate();
    }

    /// The TS bytes of one frame of `key` with its decode time (ms) and whether a segment may
    /// start with it.
    pub fn push(&mut self, key: &str, dts: i64, ts: &Bytes, random_access: bool) {
        if ts.is_empty() || self.config.segment_format != SegmentFormat::Ts {
            return;
        }
        self.push_pieces(key, dts, std::slice::from_ref(ts), random_access);
    }

    /// One fMP4 fragment of `key` (when the segments are fMP4): a segment may start at an
    /// independent one; a fragment with another init segment than the last one starts a new
    /// segment after a discontinuity.
    pub fn push_fragment(&mut self, key: &str, fragment: &Fragment) {
        if self.config.segment_format != SegmentFormat::Fmp4 {
            return;
        }
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.ended {
            return;
        }
        let same = s.init.as_ref().is_some_and(|(_, b)| {
            (b.as_ptr() == fragment.init.as_ptr() && b.len() == fragment.init.len())
                || *b == fragment.init
        });
        if !same {
            if s.init.is_some() {
                close_current(&self.config, s, None, &mut self.outputs);
                s.discontinuity_next = s.next_seq > 0;
                s.last_dts = None;
                s.last_rap_dts = None;
            }
            let id = s.next_init;
            s.next_init += 1;
            s.init = Some((id, fragment.init.clone()));
            if s.local && !self.config.out_path.is_empty() {
                self.outputs.push_back(HlsOutput::WriteFile {
                    path: init_path(&self.config, &s.key, id),
                    data: vec![fragment.init.clone()],
                });
                s.init_files.push(id);
            }
        }
        self.push_pieces(key, fragment.dts_ms, &fragment.pieces, fragment.independent);
    }

    /// The pieces of one frame (TS) or fragment (fMP4).
    fn push_pieces(&mut self, key: &str, dts: i64, pieces: &[Bytes], random_access: bool) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.ended {
            return;
        }
        let len: usize = pieces.iter().map(Bytes::len).sum();
        // A segment closed: what is held grew.
        let mut grew = false;
        if let Some(last) = s.last_dts {
            let d = dts.saturating_sub(last);
            if !(-MAX_BACKWARD_JITTER_MS..=MAX_FORWARD_JUMP_MS).contains(&d) {
                close_current(&self.config, s, None, &mut self.outputs);
                s.discontinuity_next = s.next_seq > 0;
                s.last_dts = None;
                s.last_rap_dts = None;
            }
        }
        if random_access {
            if let Some(last) = s.last_rap_dts {
                s.note_rap_gap(dts.saturating_sub(last));
            }
            s.last_rap_dts = Some(dts);
            let cut = match &s.current {
                None => true,
                Some(b) => {
                    let elapsed = dts.saturating_sub(b.start_dts);
                    elapsed >= self.config.fragment_ms as i64
                        || (elapsed > 0 && s.next_rap_would_outgrow_target(elapsed))
                }
            };
            if cut {
                let closed = s.current.is_some();
                close_current(&self.config, s, Some(dts), &mut self.outputs);
                s.current = Some(Building {
                    seq: s.next_seq,
                    start_dts: dts,
                    max_dts: dts,
                    step: 0,
                    discontinuity: std::mem::take(&mut s.discontinuity_next),
                    parts: Vec::new(),
                    bytes: 0,
                    init: s.init.clone(),
                });
                if s.local && !self.config.out_path.is_empty() {
                    let open = SegmentEvent::new(&self.config, &s.key, s.next_seq, false, 0);
                    self.outputs.push_back(HlsOutput::Segment(open));
                }
                s.next_seq += 1;
                grew = closed;
            }
        }
        if let Some(b) = s.current.as_mut() {
            if b.bytes.saturating_add(len) > SEGMENT_MAX_BYTES {
                // No key frame for far too long: give the segment up, wait for the next one.
                s.current = None;
                s.discontinuity_next = true;
            } else {
                if dts > b.max_dts {
                    b.step = dts - b.max_dts;
                    b.max_dts = dts;
                }
                b.parts.extend(pieces.iter().cloned());
                b.bytes += len;
            }
        }
        s.last_dts = Some(s.last_dts.map_or(dts, |l| l.max(dts)));
        if grew {
            self.enforce_budget();
        }
    }

    /// The publisher of `key` left: the segment in progress is closed and the playlists end
    /// (`#EXT-X-ENDLIST`). The stream stays available for a while and continues, after a
    /// discontinuity, if a publisher comes back.
    pub fn end(&mut self, key: &str, now_ms: u64) {
        self.ll.end(key, now_ms);
        let linger = self.config.keep_after_end_ms;
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.ended {
            return;
        }
        close_current(&self.config, s, None, &mut self.outputs);
        s.ended = true;
        s.expire_at = Some(now_ms.saturating_add(linger));
        s.invalidate();
        write_playlists(&self.config, s, &mut self.outputs);
        self.enforce_budget();
    }

    /// Forgets ended streams whose time is up (removing their files under
    /// [`Cleanup::StreamEnd`] and [`Cleanup::Window`]).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.ll.handle_timeout(now_ms);
        let expired: Vec<StreamKey> = self
            .streams
            .values()
            .filter(|s| s.expire_at.is_some_and(|t| t <= now_ms))
            .map(|s| s.key.clone())
            .collect();
        for key in expired {
            self.forget(&key);
        }
    }

    /// Forgets `key` (an ended stream whose time is up, or evicted for memory) with its
    /// Low-Latency window, removing its files under [`Cleanup::StreamEnd`] and
    /// [`Cleanup::Window`].
    fn forget(&mut self, key: &str) {
        self.ll.forget(key);
        let Some(s) = self.streams.remove(key) else {
            return;
        };
        if s.local && !self.config.out_path.is_empty() && self.config.cleanup != Cleanup::Never {
            for seq in &s.files {
                self.outputs.push_back(HlsOutput::RemoveFile {
                    path: segment_path(&self.config, &s.key, *seq),
                });
            }
            for id in &s.init_files {
                self.outputs.push_back(HlsOutput::RemoveFile {
                    path: init_path(&self.config, &s.key, *id),
                });
            }
            for path in [
                live_path(&self.config, &s.key),
                record_path(&self.config, &s.key),
            ] {
                self.outputs.push_back(HlsOutput::RemoveFile { path });
            }
        }
    }

    /// Bytes of segments held over every stream (live windows, record segments, ended streams,
    /// segments being cut).
    fn held_bytes(&self) -> usize {
        self.streams
            .values()
            .map(|s| s.held_bytes + s.current.as_ref().map_or(0, |b| b.bytes))
            .sum()
    }

    /// Brings what is held within [`HlsConfig::memory_max_bytes`]: ended streams first (the
    /// one that ended first), then the oldest record segment of the live stream holding the
    /// most record bytes; live windows stay.
    fn enforce_budget(&mut self) {
        let budget = self.config.memory_max_bytes;
        let mut held = self.held_bytes();
        while held > budget {
            let oldest_ended = self
                .streams
                .values()
                .filter(|s| s.ended)
                .min_by_key(|s| s.expire_at)
                .map(|s| s.key.clone());
            if let Some(key) = oldest_ended {
                held -= self.streams.get(&key).map_or(0, |s| s.held_bytes);
                self.forget(&key);
                self.evicted_streams += 1;
                continue;
            }
            let window = self.config.playlist_len.max(1);
            let fattest = self
                .streams
                .values_mut()
                .filter(|s| s.held.len() > window)
                .max_by_key(|s| s.record_bytes(window));
            let Some(s) = fattest else {
                return; // only live windows left
            };
            if let Some(old) = s.held.pop_front() {
                s.held_bytes -= old.bytes;
                held -= old.bytes;
                s.invalidate();
                self.evicted_segments += 1;
            }
        }
    }

    /// What is held, by use, and what the budget evicted so far.
    pub fn memory(&self) -> HlsMemory {
        let window = self.config.playlist_len.max(1);
        let (ll_live, ll_ended) = self.ll.memory();
        let mut m = HlsMemory {
            ll: ll_live,
            ended: ll_ended,
            evicted_streams: self.evicted_streams,
            evicted_segments: self.evicted_segments,
            ..HlsMemory::default()
        };
        for s in self.streams.values() {
            let building = s.current.as_ref().map_or(0, |b| b.bytes) as u64;
            let record = s.record_bytes(window) as u64;
            let all = s.held_bytes as u64 + building;
            if s.ended {
                m.ended += all;
            } else {
                m.record += record;
                m.live += all - record;
            }
        }
        m
    }

    /// The earliest time [`Hls::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let ended = self.streams.values().filter_map(|s| s.expire_at).min();
        ended.into_iter().chain(self.ll.poll_timeout()).min()
    }

    /// The next file operation.
    pub fn poll_output(&mut self) -> Option<HlsOutput> {
        self.outputs.pop_front()
    }

    /// The live playlist of `key`; `None` for an unknown stream or before its first segment.
    pub fn live_playlist(&mut self, key: &str) -> Option<Bytes> {
        let config = &self.config;
        let s = self.streams.get_mut(key)?;
        if s.held.is_empty() {
            return None;
        }
        if s.live_cache.is_none() {
            s.live_cache = Some(s.render_live(config));
        }
        s.live_cache.clone()
    }

    /// The record playlist of `key` (every segment still held); `None` as for the live one.
    pub fn record_playlist(&mut self, key: &str) -> Option<Bytes> {
        let s = self.streams.get_mut(key)?;
        if s.held.is_empty() {
            return None;
        }
        if s.record_cache.is_none() {
            let infos: Vec<SegInfo> = s.held.iter().map(|g| g.info).collect();
            s.record_cache = Some(render(
                &infos,
                s.target_s(),
                0,
                "",
                s.ended,
                self.config.segment_format,
            ));
        }
        s.record_cache.clone()
    }

    /// Segment `seq` of `key` as its shared pieces, if held: one contiguous buffer once joined
    /// (see the module docs).
    pub fn segment(&self, key: &str, seq: u64) -> Option<Vec<Bytes>> {
        let s = self.streams.get(key)?;
        let first = s.held.front()?.info.seq;
        let seg = s.held.get(usize::try_from(seq.checked_sub(first)?).ok()?)?;
        (seg.info.seq == seq).then(|| seg.parts.clone())
    }

    /// Takes in segment `seq` of `key` as joined by the engine that owns the stream
    /// ([`HlsOutput::Share`]): when the segment held here has the same bytes, its pieces are
    /// replaced by the shared buffer (and freed). Anything else (a segment not held or not
    /// closed yet, other bytes after a publisher change) is ignored. Returns whether it was
    /// adopted.
    pub fn adopt_segment(&mut self, key: &str, seq: u64, data: Bytes) -> bool {
        let Some(s) = self.streams.get_mut(key) else {
            return false;
        };
        let Some(first) = s.held.front().map(|g| g.info.seq) else {
            return false;
        };
        let Some(seg) = seq
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| s.held.get_mut(i))
        else {
            return false;
        };
        if seg.info.seq != seq || seg.bytes != data.len() || seg.parts.len() == 1 {
            return false;
        }
        let mut rest = &data[..];
        for part in &seg.parts {
            match rest.split_at_checked(part.len()) {
                Some((head, tail)) if head == &part[..] => rest = tail,
                _ => return false,
            }
        }
        seg.parts = vec![data];
        true
    }

    /// Init segment `id` of `key` (fMP4 segments), while a held segment uses it.
    pub fn init_segment(&self, key: &str, id: u64) -> Option<Bytes> {
        let s = self.streams.get(key)?;
        s.held
            .iter()
            .find(|g| g.info.map == Some(id))
            .and_then(|g| g.init.clone())
    }
}

impl HlsStream {
    /// Bytes of held segments older than the live window of `window` segments.
    fn record_bytes(&self, window: usize) -> usize {
        let old = self.held.len().saturating_sub(window);
        self.held.iter().take(old).map(|g| g.bytes).sum()
    }

    /// The longest segment (ms) whose duration rounds to at most the target; `None` before the
    /// target is fixed.
    fn longest_within_target_ms(&self) -> Option<i64> {
        let target_ms = self.target_s?.saturating_mul(1000);
        Some(i64::try_from(target_ms).map_or(i64::MAX, |t| t.saturating_add(499)))
    }

    /// Counts an interval between two random access points. Intervals longer than the target
    /// allows are left out: no cut can shorten them, and one hiccup of the publisher would
    /// otherwise turn the early cuts off.
    fn note_rap_gap(&mut self, gap_ms: i64) {
        if self
            .longest_within_target_ms()
            .map_or(true, |l| gap_ms <= l)
        {
            self.max_rap_gap_ms = self.max_rap_gap_ms.max(gap_ms);
        }
    }

    /// Whether a segment `elapsed_ms` long at a random access point would round above the
    /// target if it waited for the next one (the longest interval seen away).
    fn next_rap_would_outgrow_target(&self, elapsed_ms: i64) -> bool {
        self.longest_within_target_ms()
            .is_some_and(|l| elapsed_ms.saturating_add(self.max_rap_gap_ms) > l)
    }

    /// The target to render: playlists exist only once a segment closed, which fixed it.
    fn target_s(&self) -> u64 {
        self.target_s.unwrap_or(1)
    }

    fn invalidate(&mut self) {
        self.live_cache = None;
        self.record_cache = None;
    }

    fn window_start(&self, config: &HlsConfig) -> usize {
        self.held.len().saturating_sub(config.playlist_len.max(1))
    }

    fn render_live(&self, config: &HlsConfig) -> Bytes {
        let infos: Vec<SegInfo> = self
            .held
            .iter()
            .skip(self.window_start(config))
            .map(|g| g.info)
            .collect();
        let name = self.key.stream();
        render(
            &infos,
            self.target_s(),
            self.discontinuity_seq,
            &format!("{name}/"),
            self.ended,
            config.segment_format,
        )
    }
}

/// Closes the segment in progress. `end_dts` is where the next one starts; without it the
/// segment lasts until its last frame plus one frame step.
fn close_current(
    config: &HlsConfig,
    s: &mut HlsStream,
    end_dts: Option<i64>,
    outputs: &mut VecDeque<HlsOutput>,
) {
    let Some(b) = s.current.take() else {
        return;
    };
    let end = end_dts.unwrap_or(b.max_dts.saturating_add(b.step));
    let duration_ms = u64::try_from(end.saturating_sub(b.start_dts)).unwrap_or(0);
    let info = SegInfo {
        seq: b.seq,
        duration_ms,
        discontinuity: b.discontinuity,
        map: b.init.as_ref().map(|(id, _)| *id),
    };
    s.target_s.get_or_insert_with(|| {
        rounded_s(config.fragment_ms)
            .max(rounded_s(duration_ms))
            .max(1)
    });
    // Only the engine that owns the publisher joins; the others adopt its buffer.
    let parts = if s.local {
        let data = join(b.parts, b.bytes);
        outputs.push_back(HlsOutput::Share {
            key: s.key.clone(),
            seq: b.seq,
            data: data.clone(),
        });
        vec![data]
    } else {
        b.parts
    };
    let files = s.local && !config.out_path.is_empty();
    if files {
        outputs.push_back(HlsOutput::WriteFile {
            path: segment_path(config, &s.key, b.seq),
            data: parts.clone(),
        });
        s.files.push_back(b.seq);
    }
    if files {
        let closed = SegmentEvent::new(config, &s.key, b.seq, true, duration_ms);
        outputs.push_back(HlsOutput::Segment(closed));
    }
    s.held.push_back(Segment {
        info,
        parts,
        bytes: b.bytes,
        init: b.init.map(|(_, init)| init),
    });
    s.held_bytes += b.bytes;
    s.record.push_back(info);
    if s.record.len() > RECORD_MAX_ENTRIES {
        s.record.pop_front();
    }
    // The segment that just left the live window.
    let window = config.playlist_len.max(1);
    if s.held.len() > window {
        if let Some(left) = s.held.get(s.held.len() - 1 - window) {
            if left.info.discontinuity {
                s.discontinuity_seq += 1;
            }
            if files && config.cleanup == Cleanup::Window {
                let seq = left.info.seq;
                s.files.retain(|&f| f != seq);
                outputs.push_back(HlsOutput::RemoveFile {
                    path: segment_path(config, &s.key, seq),
                });
            }
        }
    }
    // Keep older segments for the record playlist within the byte budget.
    let window_bytes: usize = s.held.iter().rev().take(window).map(|g| g.bytes).sum();
    while s.held.len() > window && s.held_bytes - window_bytes > config.record_max_bytes {
        if let Some(old) = s.held.pop_front() {
            s.held_bytes -= old.bytes;
        }
    }
    s.invalidate();
    write_playlists(config, s, outputs);
}

/// `parts` (`len` bytes in all) as one contiguous buffer; the pieces are dropped.
fn join(parts: Vec<Bytes>, len: usize) -> Bytes {
    if let [one] = &parts[..] {
        return one.clone();
    }
    let mut out = BytesMut::with_capacity(len);
    for p in &parts {
        out.extend_from_slice(p);
    }
    out.freeze()
}

fn write_playlists(config: &HlsConfig, s: &HlsStream, outputs: &mut VecDeque<HlsOutput>) {
    if !s.local || config.out_path.is_empty() || s.held.is_empty() {
        return;
    }
    outputs.push_back(HlsOutput::WriteFile {
        path: live_path(config, &s.key),
        data: vec![s.render_live(config)],
    });
    if config.cleanup != Cleanup::Window {
        let infos: Vec<SegInfo> = s.record.iter().copied().collect();
        outputs.push_back(HlsOutput::WriteFile {
            path: record_path(config, &s.key),
            data: vec![render(
                &infos,
                s.target_s(),
                0,
                "",
                s.ended,
                config.segment_format,
            )],
        });
    }
}

/// `ms` in seconds rounded to the nearest integer, as RFC 8216 compares `#EXTINF` with the
/// target duration.
fn rounded_s(ms: u64) -> u64 {
    ms.saturating_add(500) / 1000
}

fn out_dir(config: &HlsConfig) -> &str {
    let t = config.out_path.trim_end_matches('/');
    if t.is_empty() {
        "/"
    } else {
        t
    }
}

fn segment_path(config: &HlsConfig, key: &str, seq: u64) -> String {
    let ext = config.segment_format.extension();
    format!("{}/{key}/{seq}.{ext}", out_dir(config))
}

fn init_path(config: &HlsConfig, key: &str, id: u64) -> String {
    format!("{}/{key}/init{id}.mp4", out_dir(config))
}

fn live_path(config: &HlsConfig, key: &str) -> String {
    format!("{}/{key}.m3u8", out_dir(config))
}

fn record_path(config: &HlsConfig, key: &str) -> String {
    format!("{}/{key}/record.m3u8", out_dir(config))
}

/// Renders a media playlist of `segments` with URIs `{prefix}{seq}.ts` (or `.m4s` after an
/// `#EXT-X-MAP` of `{prefix}init{n}.mp4` wherever the init segment changes).
fn render(
    segments: &[SegInfo],
    target_s: u64,
    discontinuity_seq: u64,
    prefix: &str,
    ended: bool,
    format: SegmentFormat,
) -> Bytes {
    let mut out = String::with_capacity(160 + segments.len() * (prefix.len() + 48));
    let first = segments.first().map_or(0, |s| s.seq);
    let version = match format {
        SegmentFormat::Ts => 3,
        SegmentFormat::Fmp4 => 7,
    };
    let ext = format.extension();
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{target_s}\n\
         #EXT-X-MEDIA-SEQUENCE:{first}\n"
    );
    let mut map = None;
    if discontinuity_seq > 0 {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_seq}");
    }
    for s in segments {
        if s.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if s.map.is_some() && s.map != map {
            map = s.map;
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{prefix}init{}.mp4\"",
                s.map.unwrap_or_default()
            );
        }
        let _ = write!(
            out,
            "#EXTINF:{}.{:03},\n{prefix}{}.{ext}\n",
            s.duration_ms / 1000,
            s.duration_ms % 1000,
            s.seq
        );
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests;
