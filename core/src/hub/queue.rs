//! One player's bounded FIFO and the pacing rule that keeps a slow player from growing it
//! without limit: past the soft bound drop whole frames until the next key point, past the
//! hard bound give up on the player.

use std::collections::VecDeque;

use super::gop::Class;
use super::HubPacket;

/// An emptied queue with room for more packets than this gives its memory back.
const SHRINK_ABOVE: usize = 32;

/// What [`PlayerQueue::offer`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// The packet was queued.
    Queued,
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
        if self.packets.is_empty() && self.packets.capacity() > SHRINK_ABOVE {
            // The start-up burst (cached GOP) is out: do not keep its room per player.
            self.packets = VecDeque::new();
        }
        Some(packet)
    }

    /// Applies the pacing rule to one packet from the publisher.
    pub(crate) fn offer(&mut self, packet: &P, class: Class, soft: usize, hard: usize) -> Offer {
        let size = packet.size();
        let over_soft = self.bytes.saturating_add(size) > soft;
        let queued = match class {
            Class::Config => true,
            Class::Key => {
                if over_soft {
                    // A clean restart at the key frame: nothing stale stays queued.
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
        if self.bytes.saturating_add(self.lag) > hard {
            Offer::Overflowed
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
