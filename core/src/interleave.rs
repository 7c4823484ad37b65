//! Puts one stream's video and audio frames in decode-time order.
//!
//! An RTSP publisher's frames come out of the depacketizers in arrival order, which is not
//! decode order across tracks: one AAC RTP packet (RFC 3640) aggregates several frames (about
//! 160 ms of audio) and one video frame spans many packets, so a burst of video can arrive
//! before audio that is older. FLV and RTMP carry one timeline for both tracks, and a player's
//! timestamp rebasing clamps whatever goes backwards, so the frames are interleaved by `dts`
//! first: [`Interleaver`] holds each track in a FIFO and releases the older head.
//!
//! A track that falls silent (or was announced but never sends) must not hold the other back
//! forever, nor let it grow without bound: a track is released on its own once its queue spans
//! more than `max_wait_ms` of media or holds [`MAX_QUEUED`] frames. Frames released that way
//! may be followed by older frames of the other track; nothing else is reordered, and the order
//! within a track never changes.

use std::collections::VecDeque;

use crate::media::{Frame, FrameKind, TrackKind};

/// How much media one track of an RTSP publisher is held while the other gives nothing (ms).
/// One AAC packet carries about 160 ms of audio, so audio arrives late and in bursts; this
/// covers that with room to spare, while a silent track delays the other by at most this. The
/// engine and the dump replayer's decoding of a publisher both use it, so they agree.
pub const RTSP_PUBLISHER_WAIT_MS: i64 = 500;

/// Most frames one track holds while the other has none: past this the oldest is released
/// whatever its age (bounds memory when timestamps stall).
pub const MAX_QUEUED: usize = 512;

/// Orders the frames of one stream with a video and an audio track by decode time.
///
/// Push every frame with [`Interleaver::push`], then take what is ready with
/// [`Interleaver::poll_frame`] until `None`; at the end of the stream, [`Interleaver::flush`]
/// and take the rest with `poll_frame` until `None`. With fewer than two tracks, frames pass
/// straight through.
#[derive(Debug)]
pub struct Interleaver {
    /// Both tracks exist: frames are interleaved; else they go to `video` and pass through.
    both: bool,
    video: VecDeque<Frame>,
    audio: VecDeque<Frame>,
    max_wait_ms: i64,
    /// [`Interleaver::flush`] was called: frames go without waiting until both queues are empty.
    flushing: bool,
}

/// Order of frames with equal `dts`: configurations before coded frames, and within each,
/// video before audio (a player wants both decoders configured before the first frame).
fn rank(f: &Frame) -> (i64, u8) {
    let coded = u8::from(f.kind != FrameKind::Config);
    let audio = u8::from(f.track() == TrackKind::Audio);
    (f.dts, coded * 2 + audio)
}

impl Interleaver {
    /// An interleaver for a stream with the given tracks; a track alone waits for nothing.
    /// `max_wait_ms` is how much media one track may hold while the other has none.
    pub fn new(has_video: bool, has_audio: bool, max_wait_ms: i64) -> Self {
        Interleaver {
            both: has_video && has_audio,
            video: VecDeque::new(),
            audio: VecDeque::new(),
            max_wait_ms: max_wait_ms.max(0),
            flushing: false,
        }
    }

    /// Queues a frame of either track.
    pub fn push(&mut self, frame: Frame) {
        if self.both && frame.track() == TrackKind::Audio {
            self.audio.push_back(frame);
        } else {
            self.video.push_back(frame);
        }
    }

    /// The next frame in decode order, once it is known that no older frame of the other track
    /// can still come (or the other track is too far behind to wait for); after
    /// [`flush`](Self::flush), the next held frame without waiting.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        if self.flushing {
            let next = if self.video.is_empty() || self.audio.is_empty() {
                self.video.pop_front().or_else(|| self.audio.pop_front())
            } else {
                self.pop_older()
            };
            // Everything held is out: frames pushed from now on wait as usual again.
            self.flushing = next.is_some();
            return next;
        }
        if !self.both {
            return self.video.pop_front();
        }
        match (self.video.is_empty(), self.audio.is_empty()) {
            (false, false) => self.pop_older(),
            (false, true) if self.overdue(TrackKind::Video) => self.video.pop_front(),
            (true, false) if self.overdue(TrackKind::Audio) => self.audio.pop_front(),
            _ => None,
        }
    }

    /// The end of the stream: [`poll_frame`](Self::poll_frame) releases every frame held,
    /// without waiting for the other track, in decode order as far as what is queued allows,
    /// until it returns `None`.
    pub fn flush(&mut self) {
        self.flushing = true;
    }

    /// Both queues hold frames: the head that comes first.
    fn pop_older(&mut self) -> Option<Frame> {
        let video_first = match (self.video.front(), self.audio.front()) {
            (Some(v), Some(a)) => rank(v) <= rank(a),
            (v, _) => v.is_some(),
        };
        if video_first {
            self.video.pop_front()
        } else {
            self.audio.pop_front()
        }
    }

    /// A track's queue (the other being empty) holds more than the wait allows, or its
    /// timestamps went backwards, so its head goes without the other track.
    fn overdue(&self, track: TrackKind) -> bool {
        let q = match track {
            TrackKind::Video => &self.video,
            TrackKind::Audio => &self.audio,
        };
        let (Some(head), Some(newest)) = (q.front(), q.back()) else {
            return false;
        };
        let span = newest.dts.saturating_sub(head.dts);
        q.len() >= MAX_QUEUED || !(0..=self.max_wait_ms).contains(&span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn frame(video: bool, kind: FrameKind, dts: i64, id: usize) -> Frame {
        Frame {
            codec: if video { Codec::H264 } else { Codec::Aac },
            kind,
            dts,
            pts: dts,
            key: !video,
            payload: Bytes::from(id.to_be_bytes().to_vec()),
        }
    }

    fn coded(video: bool, dts: i64) -> Frame {
        frame(video, FrameKind::Coded, dts, 0)
    }

    fn pops(i: &mut Interleaver) -> Vec<(TrackKind, i64)> {
        std::iter::from_fn(|| i.poll_frame())
            .map(|f| (f.track(), f.dts))
            .collect()
    }

    /// Flushes, then polls until `None`.
    fn drains(i: &mut Interleaver) -> Vec<(TrackKind, i64)> {
        i.flush();
        pops(i)
    }

    use TrackKind::{Audio as A, Video as V};

    #[test]
    fn one_track_passes_straight_through() {
        for (has_video, has_audio) in [(true, false), (false, true), (false, false)] {
            let mut i = Interleaver::new(has_video, has_audio, 500);
            i.push(coded(true, 40));
            i.push(coded(false, 10));
            assert_eq!(pops(&mut i), [(V, 40), (A, 10)]);
        }
    }

    #[test]
    fn a_video_burst_waits_for_older_audio() {
        // The arrival order the RTSP publisher gives: video, then an AAC packet of 7 frames.
        let mut i = Interleaver::new(true, true, 500);
        for dts in [0, 33, 66, 100] {
            i.push(coded(true, dts));
        }
        assert_eq!(pops(&mut i), []);
        for k in 0..7 {
            i.push(coded(false, k * 23));
        }
        assert_eq!(
            pops(&mut i),
            [
                (V, 0),
                (A, 0),
                (A, 23),
                (V, 33),
                (A, 46),
                (V, 66),
                (A, 69),
                (A, 92),
                (V, 100)
            ]
        );
        assert_eq!(drains(&mut i), [(A, 115), (A, 138)]);
    }

    #[test]
    fn after_a_flush_is_polled_out_frames_wait_again() {
        let mut i = Interleaver::new(true, true, 500);
        i.push(coded(true, 0));
        assert_eq!(drains(&mut i), [(V, 0)]);
        // A RECORD after the flush: a lone video frame waits for audio again.
        i.push(coded(true, 40));
        assert_eq!(pops(&mut i), []);
        i.push(coded(false, 10));
        assert_eq!(pops(&mut i), [(A, 10)]);
    }

    #[test]
    fn configs_lead_at_equal_timestamps() {
        let mut i = Interleaver::new(true, true, 500);
        i.push(coded(true, 0));
        i.push(coded(false, 0));
        // Pushed after the coded frames of their own track, they stay after them.
        i.push(frame(false, FrameKind::Config, 0, 0));
        let mut j = Interleaver::new(true, true, 500);
        j.push(frame(false, FrameKind::Config, 0, 0));
        j.push(frame(false, FrameKind::Coded, 0, 0));
        j.push(frame(true, FrameKind::Config, 0, 0));
        j.push(frame(true, FrameKind::Coded, 0, 0));
        j.flush();
        let order: Vec<(TrackKind, FrameKind)> = std::iter::from_fn(|| j.poll_frame())
            .map(|f| (f.track(), f.kind))
            .collect();
        assert_eq!(
            order,
            [
                (V, FrameKind::Config),
                (A, FrameKind::Config),
                (V, FrameKind::Coded),
                (A, FrameKind::Coded)
            ]
        );
        assert_eq!(drains(&mut i), [(V, 0), (A, 0), (A, 0)]);
    }

    #[test]
    fn a_silent_track_holds_the_other_for_max_wait_only() {
        let mut i = Interleaver::new(true, true, 500);
        let mut out = Vec::new();
        for k in 0..30 {
            i.push(coded(true, k * 40));
            out.extend(pops(&mut i));
        }
        // 0..=1160 pushed: everything more than 500 ms older than the newest is out.
        assert_eq!(out.len(), 17);
        assert_eq!(out.last(), Some(&(V, 640)));
        assert_eq!(i.video.len(), 13);
    }

    #[test]
    fn stalled_timestamps_are_bounded_by_the_frame_cap() {
        let mut i = Interleaver::new(true, true, 500);
        for _ in 0..MAX_QUEUED * 2 {
            i.push(coded(false, 7));
            let _ = pops(&mut i);
            assert!(i.audio.len() < MAX_QUEUED);
        }
    }

    #[test]
    fn timestamps_going_back_release_the_track() {
        let mut i = Interleaver::new(true, true, 500);
        i.push(coded(true, 10_000));
        i.push(coded(true, 0));
        assert_eq!(pops(&mut i), [(V, 10_000)]);
        assert_eq!(drains(&mut i), [(V, 0)]);
    }

    proptest! {
        /// Two tracks each in increasing `dts`, pushed in any interleaving, popped after every
        /// push: each track keeps its order, nothing is lost after the drain, queues stay under
        /// the cap and within the wait, and an output frame followed by an older frame of the
        /// other track was forced out by the bound before that frame was even pushed.
        #[test]
        fn output_is_in_dts_order_but_for_what_the_bound_forced(
            steps in proptest::collection::vec((any::<bool>(), 0i64..120), 0..400),
            max_wait in 0i64..800,
        ) {
            let mut i = Interleaver::new(true, true, max_wait);
            let mut dts = [0i64; 2];
            // Per frame id: (video, dts, step pushed); per output: (id, step popped).
            let mut pushed = Vec::new();
            let mut out: Vec<(usize, usize)> = Vec::new();
            let mut forced_ok = Vec::new();
            for (step, (video, gap)) in steps.iter().enumerate() {
                let t = usize::from(!*video);
                dts[t] += gap;
                let id = pushed.len();
                pushed.push((*video, dts[t], step));
                i.push(frame(*video, FrameKind::Coded, dts[t], id));
                let (vq, aq) = (i.video.len(), i.audio.len());
                let newest = [dts[0], dts[1]];
                while let Some(f) = i.poll_frame() {
                    let id = usize::from_be_bytes(f.payload.as_ref().try_into().unwrap());
                    let own = usize::from(!pushed[id].0);
                    // Had the bound been reached for this frame when it went?
                    let len = if own == 0 { vq } else { aq };
                    forced_ok.push(newest[own] - pushed[id].1 > max_wait || len >= MAX_QUEUED);
                    out.push((id, step));
                }
                prop_assert!(i.video.len() < MAX_QUEUED && i.audio.len() < MAX_QUEUED);
                for q in [&i.video, &i.audio] {
                    if let (Some(h), Some(n)) = (q.front(), q.back()) {
                        prop_assert!(n.dts - h.dts <= max_wait);
                    }
                }
                prop_assert!(i.video.is_empty() || i.audio.is_empty());
            }
            let end = steps.len();
            i.flush();
            while let Some(f) = i.poll_frame() {
                let id = usize::from_be_bytes(f.payload.as_ref().try_into().unwrap());
                out.push((id, end));
                forced_ok.push(false);
            }
            // Nothing lost, nothing twice, each track in push order.
            let mut ids: Vec<usize> = out.iter().map(|o| o.0).collect();
            for video in [true, false] {
                let track: Vec<usize> =
                    ids.iter().copied().filter(|&id| pushed[id].0 == video).collect();
                prop_assert!(track.windows(2).all(|w| w[0] < w[1]));
            }
            ids.sort_unstable();
            prop_assert_eq!(ids, (0..pushed.len()).collect::<Vec<_>>());
            // Inversions only where the bound forced the earlier frame out before the later
            // one existed.
            for (k, &(x, popped)) in out.iter().enumerate() {
                for &(y, _) in &out[k + 1..] {
                    if pushed[y].1 < pushed[x].1 {
                        prop_assert!(pushed[y].2 > popped || popped == end, "{x} then {y}");
                        prop_assert!(forced_ok[k], "{x} released early");
                    }
                }
            }
        }
    }
}
