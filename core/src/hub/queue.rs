//! One player's bounded FIFO and the pacing rule that keeps a slow player from growing it
//! without limit: past the soft bound (bytes queued, or media time queued) drop whole frames
//! until the next key point, past the hard bound (bytes, or media time without taking a
//! packet) give up on the player.

use std::collections::VecDeque;

use super::gop::Class;
use super::HubPacket;

/// An emptied queue with room for more packets than this gives its memory back.
const SHRINK_ABOVE: usize = 32;

/// Longest media-time step between two packets counted towards a player's lag: a timestamp
/// jump (a new publisher, a wrap) is not time the player spent behind.
const MAX_STEP_MS: i64 = 1_000;

/// The pacing bounds of a player queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    /// Queued bytes past which the player skips to the next key point.
    pub(crate) soft_bytes: usize,
    /// Bytes behind (queued plus missed) past which the player is given up.
    pub(crate) hard_bytes: usize,
    /// Media time queued (newest packet's dts minus the oldest queued media's) past which the
    /// player skips to the next key point.
    pub(crate) soft_ms: i64,
    /// Media time that went by while the player had packets queued and took none, past which
    /// it is given up.
    pub(crate) hard_ms: i64,
}

/// What [`PlayerQueue::offer`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// The packet was queued.
    Queued,
    /// The packet, a key point, was queued in place of all queued media: the player was past
    /// the soft bound and skipped to the newest key frame, this far (ms) behind.
    Skipped {
        /// Media time the player was behind (queued, plus missed since it last took a packet).
        behind_ms: i64,
    },
    /// The packet was dropped for pacing (or because the player waits for a key point).
    Dropped,
    /// The player is more than the hard bound behind: disconnect it.
    Overflowed,
}

/// Queue of one player.
///
/// Besides the queued bytes it tracks `lag`: bytes this player missed (dropped for pacing)
/// since it last took a packet, while it still had packets queued. A player that stops
/// reading keeps restarting at key frames without its queue ever growing past the soft bound,
/// so the hard bound applies to `queued + lag`, the distance it is behind the live edge.
#[derive(Debug)]
pub(crate) struct PlayerQueue<P> {
    packets: VecDeque<P>,
    bytes: usize,
    lag: usize,
    /// Media time (ms, in steps of at most [`MAX_STEP_MS`]) that went by since the player last
    /// took a packet, while it had packets queued.
    stalled_ms: i64,
    /// Dts of the last packet offered, for `stalled_ms`.
    last_dts: Option<i64>,
    /// Drop media until the next key point (set at start without a cached GOP, after
    /// dropping for pacing, and when the publisher changes).
    skip_until_key: bool,
}

impl<P: HubPacket> PlayerQueue<P> {
    /// An empty queue; `skip_until_key` says whether the first media must be a key point.
    pub(crate) fn new(skip_until_key: bool) -> Self {
        PlayerQueue {
            packets: VecDeque::new(),
            bytes: 0,
            lag: 0,
            stalled_ms: 0,
            last_dts: None,
            skip_until_key,
        }
    }

    /// Queued bytes (the sum of the queued packets' sizes).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Makes the player wait for the next key point before receiving media again.
    pub(crate) fn skip_until_key(&mut self) {
        self.skip_until_key = true;
    }

    /// Queues a packet unconditionally (start-up prefill).
    pub(crate) fn push_back(&mut self, packet: P) {
        self.bytes = self.bytes.saturating_add(packet.size());
        self.packets.push_back(packet);
    }

    /// Takes the oldest queued packet.
    pub(crate) fn pop(&mut self) -> Option<P> {
        let packet = self.packets.pop_front()?;
        self.bytes = self.bytes.saturating_sub(packet.size());
        self.lag = 0;
        self.stalled_ms = 0;
        if self.packets.is_empty() && self.packets.capacity() > SHRINK_ABOVE {
            // The start-up burst (cached GOP) is out: do not keep its room per player.
            self.packets = VecDeque::new();
        }
        Some(packet)
    }

    /// Media time queued: from the oldest queued media packet to `dts` (0 when none is queued).
    fn queued_ms(&self, dts: i64) -> i64 {
        self.packets
            .iter()
            .find(|p| !p.kind().is_config())
            .map_or(0, |p| dts.saturating_sub(p.dts()).max(0))
    }

    /// Applies the pacing rule to one packet from the publisher.
    pub(crate) fn offer(&mut self, packet: &P, class: Class, bounds: &Bounds) -> Offer {
        let size = packet.size();
        let dts = packet.dts();
        if let Some(last) = self.last_dts.replace(dts) {
            if !self.packets.is_empty() {
                let step = dts.saturating_sub(last).clamp(0, MAX_STEP_MS);
                self.stalled_ms = self.stalled_ms.saturating_add(step);
            }
        }
        let queued_ms = self.queued_ms(dts);
        let over_soft =
            self.bytes.saturating_add(size) > bounds.soft_bytes || queued_ms > bounds.soft_ms;
        let mut skipped = None;
        let queued = match class {
            Class::Config => true,
            Class::Key => {
                if over_soft {
                    // A clean restart at the key frame: nothing stale stays queued.
                    skipped = Some(queued_ms.max(self.stalled_ms));
                    self.drop_queued_media();
                }
                self.skip_until_key = false;
                true
            }
            Class::Delta => {
                if over_soft {
                    self.skip_until_key = true;
                }
                !self.skip_until_key
            }
        };
        if queued {
            self.push_back(packet.clone());
        } else {
            self.missed(size);
        }
        if self.bytes.saturating_add(self.lag) > bounds.hard_bytes
            || self.stalled_ms > bounds.hard_ms
        {
            Offer::Overflowed
        } else if let Some(behind_ms) = skipped {
            Offer::Skipped { behind_ms }
        } else if queued {
            Offer::Queued
        } else {
            Offer::Dropped
        }
    }

    /// Counts bytes the player missed; a player with nothing queued is keeping up (it only
    /// waits for a key point), so that does not count as lag.
    fn missed(&mut self, size: usize) {
        if !self.packets.is_empty() {
            self.lag = self.lag.saturating_add(size);
        }
    }

    fn drop_queued_media(&mut self) {
        let before = self.bytes;
        let mut kept = 0usize;
        self.packets.retain(|p| {
            let keep = p.kind().is_config();
            if keep {
                kept = kept.saturating_add(p.size());
            }
            keep
        });
        self.bytes = kept;
        self.lag = self.lag.saturating_add(before.saturating_sub(kept));
    }

    /// The queued packets, oldest first (for tests).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &P> {
        self.packets.iter()
    }
}
