//! Sequence and time bookkeeping shared by the depacketizers: the reorder window, RTP timestamp
//! unwrapping, and decode timestamps for streams with B-frames.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::RtpPacket;

/// A packet at most this far behind the expected sequence number is late, not a restart.
const LATE_RANGE: i32 = 4096;

/// What [`ReorderBuffer::poll_released`] hands out, in sequence order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Released {
    /// The next packet.
    Packet(RtpPacket),
    /// This many packets were lost (never arrived within the window) before the next one.
    Lost(u16),
}

/// Puts packets back in sequence order within a window of `window` sequence numbers.
///
/// A packet less than `window` numbers ahead of the next expected one is held until the ones
/// before it arrive; once a packet arrives `window - 1` numbers ahead, the missing ones before
/// the oldest held packet are given up as lost. Late packets (already given up or released)
/// and duplicates are dropped. A jump of `window` or more forward, or of more than 4096 (or the
/// window) back, is a discontinuity: everything held is released and the sequence restarts at
/// the new packet (a forward jump is reported as loss). Sequence numbers wrap at 65536.
///
/// The first packet pushed sets the expected sequence number, so a packet that was sent
/// before it but arrives after it is dropped as late.
///
/// Use: [`push`](Self::push) a packet, then drain [`poll_released`](Self::poll_released) until `None`;
/// [`flush`](Self::flush) gives up on the missing packets (at a timeout or the end).
#[derive(Clone, Debug)]
pub struct ReorderBuffer {
    window: usize,
    /// Sequence number of `slots[0]`.
    next: Option<u16>,
    slots: VecDeque<Option<RtpPacket>>,
    out: VecDeque<Released>,
    dropped: u64,
    lost: u64,
}

impl ReorderBuffer {
    /// A buffer holding up to `window` packets (clamped to 1..=32768; 1 disables reordering).
    pub fn new(window: usize) -> Self {
        ReorderBuffer {
            window: window.clamp(1, 0x8000),
            next: None,
            slots: VecDeque::new(),
            out: VecDeque::new(),
            dropped: 0,
            lost: 0,
        }
    }

    /// Packets dropped as late or duplicate so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Packets given up as lost so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Adds a packet; then drain [`poll_released`](Self::poll_released).
    pub fn push(&mut self, pkt: RtpPacket) {
        let next = *self.next.get_or_insert(pkt.sequence);
        let d = i32::from(pkt.sequence.wrapping_sub(next) as i16);
        let w = self.window as i32;
        if d < 0 && d > -LATE_RANGE.max(w) {
            self.dropped += 1;
            return;
        }
        if d >= w || d < 0 {
            self.flush();
            if d > 0 {
                let held_end = self.next.unwrap_or(next);
                let gap = pkt.sequence.wrapping_sub(held_end);
                self.report_lost(gap);
            }
            self.next = Some(pkt.sequence);
            self.slots.push_back(Some(pkt));
            self.release(false);
            return;
        }
        let idx = d as usize; // 0 <= d < window
        while self.slots.len() <= idx {
            self.slots.push_back(None);
        }
        match self.slots.get_mut(idx) {
            Some(slot @ None) => *slot = Some(pkt),
            _ => self.dropped += 1,
        }
        self.release(false);
    }

    /// Gives up on every missing packet and releases everything held.
    pub fn flush(&mut self) {
        self.release(true);
        // Only a run of missing slots with nothing after it can remain: not lost yet.
        self.slots.clear();
    }

    /// The next packet or loss report in sequence order, or `None` when the window must wait.
    pub fn poll_released(&mut self) -> Option<Released> {
        self.out.pop_front()
    }

    fn report_lost(&mut self, n: u16) {
        if n == 0 {
            return;
        }
        self.lost += u64::from(n);
        if let Some(Released::Lost(prev)) = self.out.back_mut() {
            *prev = prev.saturating_add(n);
        } else {
            self.out.push_back(Released::Lost(n));
        }
    }

    fn release(&mut self, all: bool) {
        loop {
            match self.slots.front() {
                Some(Some(_)) => {
                    if let Some(Some(p)) = self.slots.pop_front() {
                        self.out.push_back(Released::Packet(p));
                    }
                }
                Some(None) if self.slots.len() >= self.window || (all && self.holds_any()) => {
                    self.slots.pop_front();
                    self.report_lost(1);
                }
                _ => break,
            }
            self.next = self.next.map(|n| n.wrapping_add(1));
        }
    }

    fn holds_any(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }
}

/// Extends 32-bit RTP timestamps to 64 bits relative to the first one seen, tolerating wraps
/// and backward steps (B-frames) of less than 2^31.
#[derive(Clone, Debug, Default)]
pub(crate) struct TsUnwrap {
    last: Option<(u32, i64)>,
}

impl TsUnwrap {
    /// The extended timestamp of `ts`, 0 for the first one.
    pub(crate) fn unwrap(&mut self, ts: u32) -> i64 {
        let ext = match self.last {
            None => 0,
            Some((last_ts, last_ext)) => {
                last_ext.saturating_add(i64::from(ts.wrapping_sub(last_ts) as i32))
            }
        };
        self.last = Some((ts, ext));
        ext
    }
}

/// Converts a tick count of a `clock_rate` Hz clock to milliseconds (rounding down).
pub(crate) fn ticks_to_ms(ticks: i64, clock_rate: u32) -> i64 {
    ticks
        .saturating_mul(1000)
        .div_euclid(i64::from(clock_rate.max(1)))
}

/// Converts milliseconds to ticks of a `clock_rate` Hz clock.
pub(crate) fn ms_to_ticks(ms: i64, clock_rate: u32) -> i64 {
    ms.saturating_mul(i64::from(clock_rate)).div_euclid(1000)
}

/// Most frames of reordering the estimator assumes.
const MAX_REORDER: usize = 16;
/// Frames without any reordering after which a stream is taken to have no B-frames.
const SETTLE_FRAMES: u32 = 120;

/// Derives decode timestamps for video frames that arrive in decode order with only their
/// presentation timestamps (what RTP carries: the RTP timestamp of a video frame is its pts).
///
/// The rule: with a reorder depth of `K` frames, the decode timestamp of the `i`-th frame (in
/// decode order) is the `(i - K)`-th smallest pts of the stream. This needs no look-ahead (the
/// `(i - K)`-th smallest pts is always among the first `i + 1` frames when no frame is shown more
/// than `K` frames after it is decoded) and gives `dts <= pts` and non-decreasing `dts`. The
/// estimator keeps the `K` largest pts seen and not yet used; each new frame adds its pts and
/// takes the smallest kept one as its dts. The first `K` frames get dts just below the
/// smallest pts (1 ms apart).
///
/// `K` starts at the depth given to [`new`](Self::new) (2 suits x264 with B-pyramids; 0 for
/// profiles without B-frames). If the first 120 frames show no reordering at all, `K` drops to
/// 0 so that `dts == pts` from then on (dts jumps forward once). A frame reordered deeper than
/// `K` raises `K` by one (up to 16); that frame's dts repeats the previous one to stay monotonic
/// (so a few frames may get `dts > pts` until `K` has caught up).
#[derive(Clone, Debug)]
pub struct DtsEstimator {
    reorder: usize,
    pending: BinaryHeap<Reverse<i64>>,
    last_dts: Option<i64>,
    max_pts: Option<i64>,
    frames: u32,
    reordered: bool,
}

impl DtsEstimator {
    /// An estimator assuming at most `reorder` frames of reordering to begin with.
    pub fn new(reorder: usize) -> Self {
        DtsEstimator {
            reorder: reorder.min(MAX_REORDER),
            pending: BinaryHeap::new(),
            last_dts: None,
            max_pts: None,
            frames: 0,
            reordered: false,
        }
    }

    /// The reorder depth currently assumed.
    pub fn reorder(&self) -> usize {
        self.reorder
    }

    /// The dts of the next frame in decode order, whose pts is `pts`.
    pub fn next(&mut self, pts: i64) -> i64 {
        if self.max_pts.is_some_and(|m| pts < m) {
            self.reordered = true;
        }
        self.max_pts = Some(self.max_pts.map_or(pts, |m| m.max(pts)));
        self.frames = self.frames.saturating_add(1);
        if !self.reordered && self.frames > SETTLE_FRAMES && self.reorder > 0 {
            self.reorder = 0;
            self.pending.clear();
        }
        self.pending.push(Reverse(pts));
        let dts = if self.pending.len() > self.reorder {
            let Reverse(d) = self.pending.pop().unwrap_or(Reverse(pts));
            match self.last_dts {
                Some(last) if d < last => {
                    // Reordered deeper than assumed: a smaller pts came after a larger one was
                    // used as dts. Use it up, repeat the last dts and keep one more pts back.
                    self.reorder = (self.reorder + 1).min(MAX_REORDER);
                    last
                }
                _ => d,
            }
        } else {
            // Start-up: below the smallest pts so far, 1 ms per frame still to come.
            let min = self.pending.peek().map_or(pts, |Reverse(m)| *m);
            let below = (self.reorder - self.pending.len() + 1) as i64;
            let d = min - below;
            self.last_dts.map_or(d, |l| d.max(l))
        };
        self.last_dts = Some(dts);
        dts
    }
}
