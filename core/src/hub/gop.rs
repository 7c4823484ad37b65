//! The per-stream cache that lets a new player start at once: the latest metadata and decoder
//! configurations, plus the last few GOPs (or, for audio-only streams, the last second of audio).

use std::collections::VecDeque;

use super::{HubConfig, HubPacket, PacketKind};

/// How long an audio-only stream's cache reaches back, in milliseconds of dts.
pub(crate) const AUDIO_ONLY_CACHE_MS: i64 = 1000;

/// How a packet is treated on its way to players.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Metadata or a decoder configuration: always delivered, never dropped for pacing.
    Config,
    /// A point a player may start (or restart) from: a video key frame, or any audio packet
    /// of a stream without video.
    Key,
    /// Media that depends on what came before it.
    Delta,
}

/// Size of one cached GOP, so whole GOPs can be dropped from the front.
#[derive(Clone, Copy, Debug)]
struct GopMark {
    frames: usize,
    bytes: usize,
}

/// Cache of one stream.
///
/// In video mode `packets` is the concatenation of the GOPs in `gops` (oldest first) and starts
/// with a video key frame, or is empty. In audio mode (no video seen yet) `gops` is empty and
/// `packets` holds the most recent audio packets.
#[derive(Debug)]
pub(crate) struct GopCache<P> {
    pub(crate) metadata: Option<P>,
    pub(crate) video_config: Option<P>,
    pub(crate) audio_config: Option<P>,
    has_video: bool,
    packets: VecDeque<P>,
    bytes: usize,
    gops: VecDeque<GopMark>,
}

impl<P: HubPacket> GopCache<P> {
    pub(crate) fn new() -> Self {
        GopCache {
            metadata: None,
            video_config: None,
            audio_config: None,
            has_video: false,
            packets: VecDeque::new(),
            bytes: 0,
            gops: VecDeque::new(),
        }
    }

    /// Number of cached media packets.
    pub(crate) fn len(&self) -> usize {
        self.packets.len()
    }

    /// Bytes of cached media packets.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// True once the stream carried video (a video config or a video frame).
    #[cfg(test)]
    pub(crate) fn has_video(&self) -> bool {
        self.has_video
    }

    /// Forgets cached media (kept: metadata and configs). Used when a new publisher takes
    /// over, whose timestamps need not follow the old one's.
    pub(crate) fn clear_media(&mut self) {
        self.packets.clear();
        self.gops.clear();
        self.bytes = 0;
    }

    /// Records a packet from the publisher. Returns how players must treat it, and whether
    /// this packet switched the stream from audio-only to video (players must then wait for
    /// a video key frame).
    pub(crate) fn record(&mut self, packet: &P, config: &HubConfig) -> (Class, bool) {
        let kind = packet.kind();
        let switched =
            !self.has_video && matches!(kind, PacketKind::VideoConfig | PacketKind::Video { .. });
        if switched {
            self.has_video = true;
            // Cached audio-only packets do not start at a video key frame.
            self.clear_media();
        }
        let class = match kind {
            PacketKind::Metadata => {
                self.metadata = Some(packet.clone());
                Class::Config
            }
            PacketKind::VideoConfig => {
                self.video_config = Some(packet.clone());
                Class::Config
            }
            PacketKind::AudioConfig => {
                self.audio_config = Some(packet.clone());
                Class::Config
            }
            PacketKind::Video { key: true } => Class::Key,
            PacketKind::Video { key: false } => Class::Delta,
            PacketKind::Audio if self.has_video => Class::Delta,
            PacketKind::Audio => Class::Key,
        };
        if config.gop_num > 0 && class != Class::Config {
            if self.has_video {
                self.record_video_mode(packet, class, config);
            } else {
                self.record_audio_mode(packet, config);
            }
        }
        (class, switched)
    }

    fn record_video_mode(&mut self, packet: &P, class: Class, config: &HubConfig) {
        let size = packet.size();
        if class == Class::Key {
            self.gops.push_back(GopMark {
                frames: 0,
                bytes: 0,
            });
            while self.gops.len() > config.gop_num {
                self.drop_oldest_gop();
            }
        }
        // Media before the first cached key frame is not cacheable: a player cannot start there.
        let Some(last) = self.gops.back_mut() else {
            return;
        };
        last.frames += 1;
        last.bytes = last.bytes.saturating_add(size);
        self.bytes = self.bytes.saturating_add(size);
        self.packets.push_back(packet.clone());
        while self.over_bounds(config) {
            if self.gops.len() > 1 {
                self.drop_oldest_gop();
            } else {
                // A single GOP larger than the bounds: cache nothing until the next key frame.
                self.clear_media();
            }
        }
    }

    fn record_audio_mode(&mut self, packet: &P, config: &HubConfig) {
        let newest = packet.dts();
        self.bytes = self.bytes.saturating_add(packet.size());
        self.packets.push_back(packet.clone());
        while let Some(front) = self.packets.front() {
            let too_old = newest.saturating_sub(front.dts()) > AUDIO_ONLY_CACHE_MS;
            if !(too_old || self.over_bounds(config)) {
                break;
            }
            let size = front.size();
            self.packets.pop_front();
            self.bytes = self.bytes.saturating_sub(size);
        }
    }

    fn over_bounds(&self, config: &HubConfig) -> bool {
        self.packets.len() > config.gop_max_frames || self.bytes > config.gop_max_bytes
    }

    fn drop_oldest_gop(&mut self) {
        if let Some(mark) = self.gops.pop_front() {
            self.packets.drain(..mark.frames.min(self.packets.len()));
            self.bytes = self.bytes.saturating_sub(mark.bytes);
        }
    }

    /// Number of packets at the end of the cache a new player should start with, given that
    /// it may be queued at most `budget` bytes: the longest suffix that starts at a key point
    /// (a GOP start, or any packet in audio mode) and fits.
    pub(crate) fn start_suffix(&self, budget: usize) -> usize {
        let mut frames = 0usize;
        let mut bytes = 0usize;
        if self.has_video {
            for mark in self.gops.iter().rev() {
                bytes = bytes.saturating_add(mark.bytes);
                if bytes > budget {
                    break;
                }
                frames += mark.frames;
            }
        } else {
            for packet in self.packets.iter().rev() {
                bytes = bytes.saturating_add(packet.size());
                if bytes > budget {
                    break;
                }
                frames += 1;
            }
        }
        frames
    }

    /// The last `count` cached packets, oldest first.
    pub(crate) fn tail(&self, count: usize) -> impl Iterator<Item = &P> {
        let len = self.packets.len();
        self.packets.range(len - count.min(len)..)
    }

    /// Cached packets, oldest first (for tests and stats).
    #[cfg(test)]
    pub(crate) fn packets(&self) -> impl Iterator<Item = &P> {
        self.packets.iter()
    }
}
