//! Low-Latency HLS (the low-latency extensions of the HLS spec, RFC 8216bis): each stream's
//! fMP4 fragments grouped into partial segments ("parts") and segments, the playlist at
//! `/{app}/{stream}/llhls.m3u8`, and blocking playlist reload.
//!
//! Like the classic segmenter, the window never muxes: it is fed the fMP4 bytes the stream's
//! muxer produced once per frame (`moof`+`mdat`), and a part is a list of those shared `Bytes`,
//! so serving one to any number of players copies nothing. Cuts are decided from timestamps
//! alone, so every worker that sees the same packets builds the same parts with the same names:
//! - a segment starts at a random access point (a video key frame) once the one in progress is
//!   at least [`LlConfig::segment_ms`] long (or earlier, at a key frame, when waiting for the
//!   next one would outgrow the target duration, as the classic segmenter does);
//! - a part ends before the frame that would carry it past nine tenths of
//!   [`LlConfig::part_ms`] (judged by the longest step between frames seen; the tenth left
//!   absorbs a longer step than any before, so parts stay within `PART-TARGET`), and at every
//!   segment start. A part that starts with a random access point is `INDEPENDENT=YES`.
//!
//! A part is complete when the frame after it arrives (its end is the next one's start).
//!
//! Blocking reload: a playlist request with `_HLS_msn` (and `_HLS_part`) naming a segment or
//! part that does not exist yet is held ([`LlHls::block`]): a small entry and a deadline, no
//! thread and no polling. It is released ([`LlHls::poll_ready`]) as soon as that part or
//! segment completes, or after [`HOLD_PARTS`] part targets, or when the stream ends, and the
//! caller answers it with the playlist of the moment. A request for a part past the last one
//! of its segment waits for the first part of the next segment (the part after the one the
//! player has). A request more than two segments ahead
//! of the last one, or more than [`ADVANCE_PART_LIMIT`] parts ahead of the last part, is a Bad
//! Request. A request for the part named by `EXT-X-PRELOAD-HINT` (the one being built) is held
//! the same way ([`LlHls::part`]).
//!
//! Delta updates: `_HLS_skip=YES` (or `v2`) replaces the segments older than `CAN-SKIP-UNTIL`
//! (six target durations) with `EXT-X-SKIP`.
//!
//! A playlist request for a live stream that has no complete segment yet is held for its first
//! one, up to [`FIRST_SEGMENT_HOLD_MS`].
//!
//! On demand ([`crate::hls::HlsConfig::ll_on_demand`]): a stream's windows are wanted while
//! some engine had a request for it within [`ON_DEMAND_IDLE_MS`] (see `engine::demand`). The
//! publisher's engine marks its packets while they are; a packet without the mark drops the
//! window ([`LlHls::pause`]), and the next window starts at the next random access point,
//! numbered on after a discontinuity. Every engine sees the same packets, so every engine's
//! window starts and stops at the same frame.
//!
//! Publisher reconnects continue the numbering after an `EXT-X-DISCONTINUITY`; a changed init
//! segment gets a new name and its own `EXT-X-MAP`; the end of the stream adds
//! `EXT-X-ENDLIST`.
//!
//! Driving it: [`LlHls::start`], [`LlHls::set_init`], [`LlHls::push`], [`LlHls::end`],
//! [`LlHls::block`], [`LlHls::part`] and [`LlHls::handle_timeout`] with the current time, then
//! drain [`LlHls::poll_ready`] until `None` before the next input.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;

use bytes::Bytes;

use super::{MAX_BACKWARD_JITTER_MS, MAX_FORWARD_JUMP_MS, SEGMENT_MAX_BYTES};
use crate::stream_key::StreamKey;

/// How far ahead of the last part a blocking request may point (parts) before it is refused
/// with 400 (the spec's Advance Part Limit).
pub const ADVANCE_PART_LIMIT: u64 = 3;
/// A held request is answered after this many part targets at the latest.
pub const HOLD_PARTS: u64 = 3;
/// A playlist request for a live stream without a complete segment yet (its window just
/// started, on demand or with the stream) is held this long at the latest (ms): under the
/// 10 s a player such as hls.js gives a playlist request.
pub const FIRST_SEGMENT_HOLD_MS: u64 = 8_000;
/// With on-demand windows ([`crate::hls::HlsConfig::ll_on_demand`]), a stream's window is
/// wanted until this long (ms) after the last request for it.
pub const ON_DEMAND_IDLE_MS: u64 = 30_000;
/// An ended stream's playlist and parts stay available for this long (ms).
/// The part number standing for "the whole segment" in a [`Pos`].
const WHOLE: u64 = u64::MAX;

/// A place in the stream: (media sequence number, part index), `WHOLE` for the complete
/// segment. Ordered as the stream progresses.
type Pos = (u64, u64);

/// Low-Latency HLS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlConfig {
    /// Build parts and serve `llhls.m3u8`.
    pub enable: bool,
    /// Part target duration (ms): `EXT-X-PART-INF:PART-TARGET`.
    pub part_ms: u64,
    /// Segment duration (ms), as the classic segmenter's `fragment_ms`.
    pub segment_ms: u64,
    /// Complete segments in the playlist.
    pub playlist_len: usize,
    /// How long (ms) an ended stream's window stays available.
    pub keep_after_end_ms: u64,
}

impl Default for LlConfig {
    fn default() -> Self {
        LlConfig {
            enable: true,
            part_ms: 300,
            segment_ms: 2000,
            playlist_len: 10,
            keep_after_end_ms: 60_000,
        }
    }
}

/// What an HTTP path asks of Low-Latency HLS (routed by `engine::routes`; names are validated
/// as stream names before use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlRequest<'a> {
    /// `/{app}/{stream}/llhls.m3u8`.
    Playlist {
        /// Application.
        app: &'a str,
        /// Stream.
        stream: &'a str,
    },
    /// `/{app}/{stream}/ll/init{generation}.mp4`.
    Init {
        /// Application.
        app: &'a str,
        /// Stream.
        stream: &'a str,
        /// Init segment generation.
        generation: u64,
    },
    /// `/{app}/{stream}/ll/{msn}.m4s`.
    Segment {
        /// Application.
        app: &'a str,
        /// Stream.
        stream: &'a str,
        /// Media sequence number.
        msn: u64,
    },
    /// `/{app}/{stream}/ll/{msn}.{part}.m4s`.
    Part {
        /// Application.
        app: &'a str,
        /// Stream.
        stream: &'a str,
        /// Media sequence number.
        msn: u64,
        /// Part index in the segment.
        part: u64,
    },
}

impl<'a> LlRequest<'a> {
    /// The request for file `name` under `/{app}/{stream}/ll/`; `None` for names this module
    /// never hands out.
    pub fn file(app: &'a str, stream: &'a str, name: &str) -> Option<Self> {
        if let Some(g) = name
            .strip_prefix("init")
            .and_then(|r| r.strip_suffix(".mp4"))
        {
            let generation = decimal(g)?;
            return Some(LlRequest::Init {
                app,
                stream,
                generation,
            });
        }
        let base = name.strip_suffix(".m4s")?;
        Some(match base.split_once('.') {
            None => LlRequest::Segment {
                app,
                stream,
                msn: decimal(base)?,
            },
            Some((m, p)) => LlRequest::Part {
                app,
                stream,
                msn: decimal(m)?,
                part: decimal(p)?,
            },
        })
    }

    /// The application and the stream.
    pub fn names(&self) -> (&'a str, &'a str) {
        match *self {
            LlRequest::Playlist { app, stream }
            | LlRequest::Init { app, stream, .. }
            | LlRequest::Segment { app, stream, .. }
            | LlRequest::Part { app, stream, .. } => (app, stream),
        }
    }
}

/// Plain decimal digits (at most 19), as the names and `_HLS_msn`/`_HLS_part` carry.
pub fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// What a blocking playlist request gets now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocking {
    /// Answer with the playlist now.
    Ready,
    /// Held: answer when [`LlHls::poll_ready`] names the waiter.
    Held,
    /// 400: too far ahead, or `_HLS_part` without `_HLS_msn`.
    BadRequest,
    /// 404: no such stream, or an ended one without segments.
    NotFound,
}

/// What a part request gets now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartAnswer {
    /// The part's shared pieces.
    Found(Vec<Bytes>),
    /// It is the part being built: held until [`LlHls::poll_ready`] names the waiter (then ask
    /// again).
    Held,
    /// Not held (left the window, or never will exist).
    NotFound,
}

#[derive(Debug)]
struct Part {
    duration_ms: u64,
    independent: bool,
    pieces: Vec<Bytes>,
}

#[derive(Debug)]
struct Segment {
    msn: u64,
    duration_ms: u64,
    discontinuity: bool,
    /// The init segment generation its fragments need.
    init: u64,
    /// Server wall clock (ms since the Unix epoch) when its first frame arrived.
    wall_ms: u64,
    parts: Vec<Part>,
}

#[derive(Debug)]
struct BuildingPart {
    start_dts: i64,
    independent: bool,
    pieces: Vec<Bytes>,
}

#[derive(Debug)]
struct Open {
    msn: u64,
    start_dts: i64,
    wall_ms: u64,
    discontinuity: bool,
    init: u64,
    parts: Vec<Part>,
    part: BuildingPart,
    bytes: usize,
}

#[derive(Debug)]
struct LlStream {
    key: StreamKey,
    segments: VecDeque<Segment>,
    open: Option<Open>,
    next_msn: u64,
    discontinuity_next: bool,
    /// Discontinuities among segments that left the window.
    discontinuity_seq: u64,
    /// `#EXT-X-TARGETDURATION` (s), fixed when the first segment closes.
    target_s: Option<u64>,
    /// Init segments by generation, oldest first (those still referenced, and the current).
    inits: VecDeque<(u64, Bytes)>,
    /// The wall clock when the publisher started (ms since the Unix epoch): the program
    /// date-time of a segment is this plus its decode time (the fMP4 timeline starts at the
    /// stream's first frame, however late the muxer started).
    wall_start: u64,
    last_dts: Option<i64>,
    max_dts: i64,
    /// The longest step between consecutive frames of this publisher (ms), capped.
    step: i64,
    last_rap_dts: Option<i64>,
    max_rap_gap_ms: i64,
    ended: bool,
    expire_at: Option<u64>,
    /// Rendered playlists: full and delta.
    cache: [Option<Bytes>; 2],
    /// Held requests by the place they wait for.
    waiters: BTreeMap<Pos, Vec<u64>>,
    /// When this engine last had a request for the stream (ms).
    requested_at: Option<u64>,
}

#[derive(Debug)]
struct Held {
    key: StreamKey,
    pos: Pos,
    deadline: u64,
}

/// The Low-Latency HLS windows of every stream of one engine, and the requests held on them.
/// See the module docs.
#[derive(Debug)]
pub struct LlHls {
    config: LlConfig,
    streams: HashMap<StreamKey, LlStream>,
    held: HashMap<u64, Held>,
    deadlines: BinaryHeap<Reverse<(u64, u64)>>,
    ready: VecDeque<u64>,
}

impl LlHls {
    /// No streams yet.
    pub fn new(config: LlConfig) -> Self {
        LlHls {
            config,
            streams: HashMap::new(),
            held: HashMap::new(),
            deadlines: BinaryHeap::new(),
            ready: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LlConfig {
        &self.config
    }

    /// Requests held now.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// A publisher started `key` at `wall_ms` (server wall clock, ms since the Unix epoch; the
    /// program date-time of its first frame). A stream that already has segments continues
    /// after a discontinuity.
    pub fn start(&mut self, key: &StreamKey, wall_ms: u64) {
        if !self.config.enable {
            return;
        }
        let s = self
            .streams
            .entry(key.clone())
            .or_insert_with(|| LlStream::new(key.clone()));
        s.close_open(&self.config, None);
        s.discontinuity_next = s.next_msn > 0;
        s.ended = false;
        s.expire_at = None;
        s.last_dts = None;
        s.last_rap_dts = None;
        s.max_rap_gap_ms = 0;
        s.step = 0;
        s.wall_start = wall_ms;
        s.cache = [None, None];
        self.wake(key);
    }

    /// The init segment (`ftyp`+`moov`) the following fragments of `key` need. A different
    /// one than before closes the segment in progress; the next starts at a random access
    /// point with the new one.
    pub fn set_init(&mut self, key: &str, init: Bytes) {
        let config = &self.config;
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.inits.back().is_some_and(|(_, b)| *b == init) {
            return;
        }
        s.close_open(config, None);
        let generation = s.inits.back().map_or(0, |(g, _)| g + 1);
        s.inits.push_back((generation, init));
        s.trim_inits();
        self.wake(key);
    }

    /// The fMP4 fragment of one sample of `key` (its pieces, shared): its decode time (ms),
    /// whether decoding may start with it (a segment may start there), and the init segment
    /// it needs ([`LlHls::set_init`] is called when that changes).
    pub fn push(&mut self, key: &str, dts: i64, pieces: &[Bytes], independent: bool, init: &Bytes) {
        if pieces.is_empty() {
            return;
        }
        let Some(s) = self.streams.get(key) else {
            return;
        };
        if s.ended {
            return;
        }
        let same_init = s.inits.back().is_some_and(|(_, b)| {
            (b.as_ptr() == init.as_ptr() && b.len() == init.len()) || b == init
        });
        if !same_init {
            self.set_init(key, init.clone());
        }
        let config = &self.config;
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        let before = s.progress();
        s.push(config, dts, pieces, independent);
        if s.progress() != before {
            self.wake(key);
        }
    }

    /// A frame of `key` not marked for the windows (nobody asks for them now): the window, if
    /// it holds anything, is dropped, and the next one continues the numbering after a
    /// discontinuity. Held requests are answered.
    pub fn pause(&mut self, key: &str) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.segments.is_empty() && s.open.is_none() {
            return;
        }
        // EXT-X-DISCONTINUITY-SEQUENCE counts the discontinuities of segments that left.
        let gone = s.segments.iter().filter(|g| g.discontinuity).count()
            + usize::from(s.open.as_ref().is_some_and(|o| o.discontinuity));
        s.discontinuity_seq += gone as u64;
        s.segments.clear();
        s.open = None;
        s.discontinuity_next = true;
        s.last_dts = None;
        s.last_rap_dts = None;
        s.step = 0;
        s.cache = [None, None];
        s.trim_inits();
        self.wake_all(key);
    }

    /// A request for `key` came to this engine at `now_ms`: true when none had come within
    /// [`ON_DEMAND_IDLE_MS`] (the stream's fMP4 is newly wanted here).
    pub fn note_request(&mut self, key: &str, now_ms: u64) -> bool {
        let Some(s) = self.streams.get_mut(key) else {
            return false;
        };
        let idle = s
            .requested_at
            .map_or(true, |at| now_ms.saturating_sub(at) >= ON_DEMAND_IDLE_MS);
        s.requested_at = Some(now_ms);
        idle
    }

    /// The streams this engine had a request for within [`ON_DEMAND_IDLE_MS`] before
    /// `now_ms`.
    pub fn requested(&self, now_ms: u64) -> impl Iterator<Item = &StreamKey> {
        self.streams.values().filter_map(move |s| {
            s.requested_at
                .filter(|at| now_ms.saturating_sub(*at) < ON_DEMAND_IDLE_MS)
                .map(|_| &s.key)
        })
    }

    /// The publisher of `key` left: the part and segment in progress close and the playlist
    /// ends (`#EXT-X-ENDLIST`); held requests are answered.
    pub fn end(&mut self, key: &str, now_ms: u64) {
        let linger = self.config.keep_after_end_ms;
        let config = &self.config;
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        if s.ended {
            return;
        }
        s.close_open(config, None);
        s.ended = true;
        s.expire_at = Some(now_ms.saturating_add(linger));
        s.cache = [None, None];
        self.wake_all(key);
    }

    /// Forgets `key` at once (an ended stream evicted for memory); its held requests are
    /// answered.
    pub fn forget(&mut self, key: &str) {
        self.wake_all(key);
        self.streams.remove(key);
    }

    /// Bytes held for live streams and for ended ones (parts, segments and the segment being
    /// built; init segments aside).
    pub fn memory(&self) -> (u64, u64) {
        let mut live = 0u64;
        let mut ended = 0u64;
        for s in self.streams.values() {
            let pieces = |p: &[Bytes]| p.iter().map(|b| b.len() as u64).sum::<u64>();
            let parts = |ps: &[Part]| ps.iter().map(|p| pieces(&p.pieces)).sum::<u64>();
            let held = s.segments.iter().map(|g| parts(&g.parts)).sum::<u64>()
                + s.open
                    .as_ref()
                    .map_or(0, |o| parts(&o.parts) + pieces(&o.part.pieces));
            if s.ended {
                ended += held;
            } else {
                live += held;
            }
        }
        (live, ended)
    }

    /// Forgets ended streams whose time is up and releases held requests whose deadline
    /// passed.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let expired: Vec<StreamKey> = self
            .streams
            .values()
            .filter(|s| s.expire_at.is_some_and(|t| t <= now_ms))
            .map(|s| s.key.clone())
            .collect();
        for key in expired {
            self.wake_all(&key);
            self.streams.remove(&key);
        }
        while let Some(Reverse((at, waiter))) = self.deadlines.peek().copied() {
            if at > now_ms {
                break;
            }
            self.deadlines.pop();
            // Entries of requests already released are stale: skip them.
            if self.held.get(&waiter).is_some_and(|h| h.deadline == at) {
                self.cancel(waiter);
                self.ready.push_back(waiter);
            }
        }
    }

    /// The earliest time [`LlHls::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let held = self.deadlines.peek().map(|Reverse((at, _))| *at);
        let expiry = self.streams.values().filter_map(|s| s.expire_at).min();
        held.into_iter().chain(expiry).min()
    }

    /// A held request to answer now (what it waited for exists, its time is up, or the stream
    /// ended): the waiter id given to [`LlHls::block`] or [`LlHls::part`].
    pub fn poll_ready(&mut self) -> Option<u64> {
        self.ready.pop_front()
    }

    /// A waiter that will not be answered (its connection closed).
    pub fn cancel(&mut self, waiter: u64) {
        let Some(h) = self.held.remove(&waiter) else {
            return;
        };
        let Some(s) = self.streams.get_mut(&h.key) else {
            return;
        };
        if let Some(list) = s.waiters.get_mut(&h.pos) {
            list.retain(|&w| w != waiter);
            if list.is_empty() {
                s.waiters.remove(&h.pos);
            }
        }
    }

    /// A playlist request for `key` with `_HLS_msn` and `_HLS_part` (either may be absent):
    /// answer now, hold it under `waiter`, or refuse it. See the module docs.
    pub fn block(
        &mut self,
        key: &str,
        msn: Option<u64>,
        part: Option<u64>,
        waiter: u64,
        now_ms: u64,
    ) -> Blocking {
        let Some(s) = self.streams.get(key) else {
            return Blocking::NotFound;
        };
        if s.segments.is_empty() {
            if s.ended {
                return Blocking::NotFound;
            }
            // Live, with its window just started: wait for its first segment.
            let first = (s.open.as_ref().map_or(s.next_msn, |o| o.msn), WHOLE);
            let deadline = now_ms.saturating_add(FIRST_SEGMENT_HOLD_MS);
            self.hold(key, first, waiter, deadline);
            return Blocking::Held;
        }
        let Some(msn) = msn else {
            return if part.is_some() {
                Blocking::BadRequest
            } else {
                Blocking::Ready
            };
        };
        let last = s.segments.back().map_or(0, |g| g.msn);
        if msn > last.saturating_add(2) {
            return Blocking::BadRequest;
        }
        let pos = s.part_or_next((msn, part.unwrap_or(WHOLE)));
        if let Some(p) = part {
            let done = match &s.open {
                Some(o) if o.msn == msn => o.parts.len() as u64,
                Some(o) if msn > o.msn => 0,
                _ => u64::MAX,
            };
            if done != u64::MAX && p > done.saturating_add(ADVANCE_PART_LIMIT) {
                return Blocking::BadRequest;
            }
        }
        if s.ended || s.progress().is_some_and(|at| at >= pos) {
            return Blocking::Ready;
        }
        self.hold(key, pos, waiter, self.part_deadline(now_ms));
        Blocking::Held
    }

    /// Part `n` of segment `msn` of `key`: found, held under `waiter` (it is the part being
    /// built, the one `EXT-X-PRELOAD-HINT` names), or not found.
    pub fn part(&mut self, key: &str, msn: u64, n: u64, waiter: u64, now_ms: u64) -> PartAnswer {
        let Some(s) = self.streams.get(key) else {
            return PartAnswer::NotFound;
        };
        if let Some(p) = s.find_part(msn, n) {
            return PartAnswer::Found(p.pieces.clone());
        }
        let building = s
            .open
            .as_ref()
            .is_some_and(|o| o.msn == msn && o.parts.len() as u64 == n);
        if !building || s.ended {
            return PartAnswer::NotFound;
        }
        self.hold(key, (msn, n), waiter, self.part_deadline(now_ms));
        PartAnswer::Held
    }

    /// Segment `msn` of `key` as its shared pieces, if complete and held.
    pub fn segment(&self, key: &str, msn: u64) -> Option<Vec<Bytes>> {
        let s = self.streams.get(key)?;
        let g = s.segments.iter().find(|g| g.msn == msn)?;
        Some(
            g.parts
                .iter()
                .flat_map(|p| p.pieces.iter().cloned())
                .collect(),
        )
    }

    /// Init segment generation `generation` of `key`, if held.
    pub fn init(&self, key: &str, generation: u64) -> Option<Bytes> {
        let s = self.streams.get(key)?;
        s.inits
            .iter()
            .find(|(g, _)| *g == generation)
            .map(|(_, b)| b.clone())
    }

    /// The playlist of `key` (with `_HLS_skip`, the delta update when `skip`); `None` for an
    /// unknown stream or before its first segment completed.
    pub fn playlist(&mut self, key: &str, skip: bool) -> Option<Bytes> {
        let config = &self.config;
        let s = self.streams.get_mut(key)?;
        if s.segments.is_empty() {
            return None;
        }
        let slot = &mut s.cache[usize::from(skip)];
        if let Some(b) = slot {
            return Some(b.clone());
        }
        let rendered = s.render(config, skip);
        s.cache[usize::from(skip)] = Some(rendered.clone());
        Some(rendered)
    }

    /// When a request held at `now_ms` for a part or segment is answered at the latest.
    fn part_deadline(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add(HOLD_PARTS.saturating_mul(self.config.part_ms.max(1)))
    }

    fn hold(&mut self, key: &str, pos: Pos, waiter: u64, deadline: u64) {
        self.cancel(waiter);
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        s.waiters.entry(pos).or_default().push(waiter);
        self.held.insert(
            waiter,
            Held {
                key: s.key.clone(),
                pos,
                deadline,
            },
        );
        self.deadlines.push(Reverse((deadline, waiter)));
    }

    /// Releases the waiters of `key` whose place the stream reached.
    fn wake(&mut self, key: &str) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        let Some(at) = s.progress() else {
            return;
        };
        if s.ended {
            return self.wake_all(key);
        }
        let after = if at.1 == WHOLE {
            (at.0.saturating_add(1), 0)
        } else {
            (at.0, at.1 + 1)
        };
        let later = s.waiters.split_off(&after);
        let due = std::mem::replace(&mut s.waiters, later);
        for (pos, waiters) in due {
            // A part past the end of a segment that just closed: the next segment's first.
            let next = s.part_or_next(pos);
            if next != pos {
                for waiter in &waiters {
                    if let Some(h) = self.held.get_mut(waiter) {
                        h.pos = next;
                    }
                }
                s.waiters.entry(next).or_default().extend(waiters);
                continue;
            }
            for waiter in waiters {
                if self.held.remove(&waiter).is_some() {
                    self.ready.push_back(waiter);
                }
            }
        }
    }

    fn wake_all(&mut self, key: &str) {
        let Some(s) = self.streams.get_mut(key) else {
            return;
        };
        for waiter in std::mem::take(&mut s.waiters).into_values().flatten() {
            if self.held.remove(&waiter).is_some() {
                self.ready.push_back(waiter);
            }
        }
    }
}

impl LlStream {
    fn new(key: StreamKey) -> Self {
        LlStream {
            key,
            segments: VecDeque::new(),
            open: None,
            next_msn: 0,
            discontinuity_next: false,
            discontinuity_seq: 0,
            target_s: None,
            inits: VecDeque::new(),
            wall_start: 0,
            last_dts: None,
            max_dts: 0,
            step: 0,
            last_rap_dts: None,
            max_rap_gap_ms: 0,
            ended: false,
            expire_at: None,
            cache: [None, None],
            waiters: BTreeMap::new(),
            requested_at: None,
        }
    }

    /// The last complete part or segment.
    fn progress(&self) -> Option<Pos> {
        match &self.open {
            Some(o) if !o.parts.is_empty() => Some((o.msn, o.parts.len() as u64 - 1)),
            _ => self.segments.back().map(|g| (g.msn, WHOLE)),
        }
    }

    /// `pos`, or for a part past the last one of a closed segment the first part of the next
    /// segment: what a player asking for it wants (the part after the one it has).
    fn part_or_next(&self, pos: Pos) -> Pos {
        if pos.1 == WHOLE || self.open.as_ref().is_some_and(|o| o.msn == pos.0) {
            return pos;
        }
        match self.segments.iter().find(|g| g.msn == pos.0) {
            Some(g) if pos.1 >= g.parts.len() as u64 => (pos.0.saturating_add(1), 0),
            _ => pos,
        }
    }

    fn find_part(&self, msn: u64, n: u64) -> Option<&Part> {
        let n = usize::try_from(n).ok()?;
        match &self.open {
            Some(o) if o.msn == msn => o.parts.get(n),
            _ => self.segments.iter().find(|g| g.msn == msn)?.parts.get(n),
        }
    }

    fn longest_within_target_ms(&self) -> Option<i64> {
        let t = self.target_s?.saturating_mul(1000);
        Some(i64::try_from(t).map_or(i64::MAX, |t| t.saturating_add(499)))
    }

    fn push(&mut self, config: &LlConfig, dts: i64, pieces: &[Bytes], rap: bool) {
        let since_start = u64::try_from(dts).unwrap_or(0);
        let wall_ms = self.wall_start.saturating_add(since_start);
        let size: usize = pieces.iter().map(Bytes::len).sum();
        if let Some(last) = self.last_dts {
            let d = dts.saturating_sub(last);
            if !(-MAX_BACKWARD_JITTER_MS..=MAX_FORWARD_JUMP_MS).contains(&d) {
                self.close_open(config, None);
                self.discontinuity_next = self.next_msn > 0;
                self.last_dts = None;
                self.last_rap_dts = None;
                self.step = 0;
            } else if d > 0 {
                // Parts must stay within the target: a step of half of it at most is counted.
                let cap = i64::try_from(config.part_ms / 2).unwrap_or(i64::MAX);
                self.step = self.step.max(d.min(cap));
            }
        }
        if rap {
            if let Some(last) = self.last_rap_dts {
                let gap = dts.saturating_sub(last);
                if self.longest_within_target_ms().map_or(true, |l| gap <= l) {
                    self.max_rap_gap_ms = self.max_rap_gap_ms.max(gap);
                }
            }
            self.last_rap_dts = Some(dts);
            let cut = match &self.open {
                None => true,
                Some(o) => {
                    let elapsed = dts.saturating_sub(o.start_dts);
                    elapsed >= i64::try_from(config.segment_ms).unwrap_or(i64::MAX)
                        || (elapsed > 0
                            && self
                                .longest_within_target_ms()
                                .is_some_and(|l| elapsed.saturating_add(self.max_rap_gap_ms) > l))
                }
            };
            if cut {
                self.close_open(config, Some(dts));
                let init = self.inits.back().map_or(0, |(g, _)| *g);
                self.open = Some(Open {
                    msn: self.next_msn,
                    start_dts: dts,
                    wall_ms,
                    discontinuity: std::mem::take(&mut self.discontinuity_next),
                    init,
                    parts: Vec::new(),
                    part: BuildingPart {
                        start_dts: dts,
                        independent: true,
                        pieces: Vec::new(),
                    },
                    bytes: 0,
                });
                self.next_msn += 1;
                self.cache = [None, None];
            }
        }
        // Aim a tenth below the target: a step longer than any seen before stays within it.
        let part_ms = i64::try_from(config.part_ms - config.part_ms / 10).unwrap_or(i64::MAX);
        let step = self.step;
        let mut closed_part = false;
        if let Some(o) = self.open.as_mut() {
            if o.bytes.saturating_add(size) > SEGMENT_MAX_BYTES {
                // No key frame for far too long: give the segment up, wait for the next one.
                self.open = None;
                self.discontinuity_next = true;
                self.cache = [None, None];
            } else {
                let elapsed = dts.saturating_sub(o.part.start_dts);
                if !o.part.pieces.is_empty()
                    && elapsed > 0
                    && elapsed.saturating_add(step) > part_ms
                {
                    let done = std::mem::replace(
                        &mut o.part,
                        BuildingPart {
                            start_dts: dts,
                            independent: rap,
                            pieces: Vec::new(),
                        },
                    );
                    o.parts.push(Part {
                        duration_ms: u64::try_from(elapsed).unwrap_or(0),
                        independent: done.independent,
                        pieces: done.pieces,
                    });
                    closed_part = true;
                }
                o.part.pieces.extend_from_slice(pieces);
                o.bytes += size;
            }
        }
        if closed_part {
            self.cache = [None, None];
        }
        self.max_dts = match self.last_dts {
            Some(_) => self.max_dts.max(dts),
            None => dts,
        };
        self.last_dts = Some(self.last_dts.map_or(dts, |l| l.max(dts)));
    }

    /// Closes the part and segment in progress; `end_dts` is where the next starts (else the
    /// last frame plus one step).
    fn close_open(&mut self, config: &LlConfig, end_dts: Option<i64>) {
        let Some(mut o) = self.open.take() else {
            return;
        };
        self.cache = [None, None];
        let end = end_dts.unwrap_or(self.max_dts.saturating_add(self.step.max(1)));
        if !o.part.pieces.is_empty() {
            let d = end.saturating_sub(o.part.start_dts).max(1);
            o.parts.push(Part {
                duration_ms: u64::try_from(d).unwrap_or(0),
                independent: o.part.independent,
                pieces: std::mem::take(&mut o.part.pieces),
            });
        }
        if o.parts.is_empty() {
            return;
        }
        let duration_ms = o.parts.iter().map(|p| p.duration_ms).sum();
        self.target_s.get_or_insert_with(|| {
            rounded_s(config.segment_ms)
                .max(rounded_s(duration_ms))
                .max(1)
        });
        self.segments.push_back(Segment {
            msn: o.msn,
            duration_ms,
            discontinuity: o.discontinuity,
            init: o.init,
            wall_ms: o.wall_ms,
            parts: o.parts,
        });
        while self.segments.len() > config.playlist_len.max(1) {
            if let Some(old) = self.segments.pop_front() {
                if old.discontinuity {
                    self.discontinuity_seq += 1;
                }
            }
        }
        self.trim_inits();
    }

    /// Drops init segments no segment in the window needs (the newest is always kept).
    fn trim_inits(&mut self) {
        let oldest_needed = self
            .segments
            .front()
            .map(|g| g.init)
            .or(self.open.as_ref().map(|o| o.init));
        while self.inits.len() > 1
            && self
                .inits
                .front()
                .is_some_and(|(g, _)| oldest_needed.map_or(true, |n| *g < n))
        {
            self.inits.pop_front();
        }
    }

    fn render(&self, config: &LlConfig, skip: bool) -> Bytes {
        let target_s = self.target_s.unwrap_or(1);
        let target_ms = target_s.saturating_mul(1000);
        let part_ms = config.part_ms;
        let skip_until_ms = target_ms.saturating_mul(6);
        let open_ms: u64 = self
            .open
            .as_ref()
            .map_or(0, |o| o.parts.iter().map(|p| p.duration_ms).sum());
        // Time from each segment's end to the end of the playlist.
        let mut after_ms = vec![0u64; self.segments.len()];
        let mut acc = open_ms;
        for (i, g) in self.segments.iter().enumerate().rev() {
            after_ms[i] = acc;
            acc = acc.saturating_add(g.duration_ms);
        }
        let skipped = if skip {
            after_ms.iter().take_while(|&&a| a >= skip_until_ms).count()
        } else {
            0
        };
        let first = self.segments.front().map_or(0, |g| g.msn);
        let mut out = String::with_capacity(512 + self.segments.len() * 64);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{target_s}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},PART-HOLD-BACK={}\n\
             #EXT-X-PART-INF:PART-TARGET={}\n#EXT-X-MEDIA-SEQUENCE:{first}\n",
            Secs(skip_until_ms),
            Secs(part_ms.saturating_mul(3)),
            Secs(part_ms),
        );
        if self.discontinuity_seq > 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_seq
            );
        }
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        let mut map: Option<u64> = None;
        let mut put_map = |out: &mut String, init: u64| {
            if map != Some(init) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"ll/init{init}.mp4\"");
                map = Some(init);
            }
        };
        let parts_ms = target_ms.saturating_mul(3);
        for (i, g) in self.segments.iter().enumerate().skip(skipped) {
            if g.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            put_map(&mut out, g.init);
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(g.wall_ms));
            if after_ms[i] < parts_ms {
                for (n, p) in g.parts.iter().enumerate() {
                    write_part(&mut out, g.msn, n, p);
                }
            }
            let _ = write!(out, "#EXTINF:{},\nll/{}.m4s\n", Secs(g.duration_ms), g.msn);
        }
        if let Some(o) = &self.open {
            if o.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            put_map(&mut out, o.init);
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(o.wall_ms));
            for (n, p) in o.parts.iter().enumerate() {
                write_part(&mut out, o.msn, n, p);
            }
            if !self.ended {
                let _ = writeln!(
                    out,
                    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"ll/{}.{}.m4s\"",
                    o.msn,
                    o.parts.len()
                );
            }
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        Bytes::from(out)
    }
}

fn write_part(out: &mut String, msn: u64, n: usize, p: &Part) {
    let _ = write!(
        out,
        "#EXT-X-PART:DURATION={},URI=\"ll/{msn}.{n}.m4s\"",
        Secs(p.duration_ms)
    );
    if p.independent {
        out.push_str(",INDEPENDENT=YES");
    }
    out.push('\n');
}

/// Milliseconds written as decimal seconds (`0.300`).
struct Secs(u64);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for ms since the Unix epoch.
fn iso8601(ms: u64) -> String {
    let mut s = crate::api::lal::format_unix_ms(ms).replacen(' ', "T", 1);
    s.push('Z');
    s
}

fn rounded_s(ms: u64) -> u64 {
    ms.saturating_add(500) / 1000
}

#[cfg(test)]
mod tests;
