//! Which of a stream's shared encodings someone consumes, so each is muxed only then.
//!
//! Every frame of a publication can be muxed once as MPEG-TS (HLS with TS segments, HTTP-TS
//! and WS-TS players, TS recordings) and once as fMP4 (Low-Latency HLS, HLS with fMP4
//! segments, HTTP-fMP4 and WS-fMP4 players). HLS and LL-HLS, when enabled, consume every
//! stream; players consume the streams they play, on whichever engine they sit. The
//! Low-Latency HLS windows are a third consumer of their own when they are on demand: wanted
//! for the streams asked for on some engine within [`crate::hls::ll::ON_DEMAND_IDLE_MS`].
//! Each engine announces what its own players of a stream consume ([`StreamMessage::Wants`])
//! when that grows (at once, as a player asks) and when it shrinks (at the next sweep), and
//! keeps what the others announced, so the engine of the stream's publisher, wherever it is,
//! knows.
//!
//! A muxer that was idle starts again at the next random access point: a player that arrives
//! then starts at the next key frame rather than in the cached group of pictures.

use std::collections::HashMap;
use std::ops::BitOr;

use super::{PlayerFormat, StreamKey, StreamMessage};
use crate::hls::{HlsConfig, SegmentFormat};

/// How often an engine looks for encodings its players no longer consume (ms).
pub const SWEEP_MS: u64 = 2_000;

/// The shared encodings of a stream that are consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    /// MPEG-TS.
    pub ts: bool,
    /// Fragmented MP4.
    pub fmp4: bool,
    /// Low-Latency HLS windows (built from the fMP4 fragments, so wanting them wants fMP4).
    pub ll: bool,
}

impl Wants {
    /// Nothing.
    pub const NONE: Wants = Wants {
        ts: false,
        fmp4: false,
        ll: false,
    };

    /// What a request for a stream's Low-Latency HLS wants when its windows are on demand.
    pub const LL: Wants = Wants {
        ts: false,
        fmp4: true,
        ll: true,
    };

    /// What HLS and LL-HLS, as configured, consume of every stream (LL-HLS on demand: its
    /// fMP4, which fMP4 players start with from the cache, but not its windows).
    pub fn of_hls(config: &HlsConfig) -> Wants {
        Wants {
            ts: config.enable && config.segment_format == SegmentFormat::Ts,
            fmp4: config.enable
                && (config.ll_enable || config.segment_format == SegmentFormat::Fmp4),
            ll: config.enable && config.ll_enable && !config.ll_on_demand,
        }
    }

    /// What a player of `format` consumes.
    pub fn of_player(format: PlayerFormat) -> Wants {
        Wants {
            ts: format.is_ts(),
            fmp4: format.is_fmp4(),
            ll: false,
        }
    }

    /// True when neither encoding is wanted.
    pub fn is_none(self) -> bool {
        self == Wants::NONE
    }

    /// True when `self` wants everything `other` wants.
    fn covers(self, other: Wants) -> bool {
        (self | other) == self
    }
}

impl BitOr for Wants {
    type Output = Wants;

    fn bitor(self, other: Wants) -> Wants {
        Wants {
            ts: self.ts || other.ts,
            fmp4: self.fmp4 || other.fmp4,
            ll: self.ll || other.ll,
        }
    }
}

/// Frames muxed into each shared encoding since the engine started: what muxing only while
/// consumed saves shows as these staying still.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuxedFrames {
    /// Into MPEG-TS.
    pub ts: u64,
    /// Into fMP4.
    pub fmp4: u64,
}

/// One engine's view of what every stream's encodings are consumed by. See the module docs.
#[derive(Debug)]
pub(super) struct Demand {
    /// What every stream needs whatever its players (HLS, LL-HLS: fixed until a restart).
    always: Wants,
    /// This engine's index, in what it announces.
    worker: usize,
    /// Announce to other engines (they exist and share streams).
    shared: bool,
    /// Per stream: what this engine's players consume (as last announced) and what each other
    /// engine announced.
    streams: HashMap<StreamKey, StreamWants>,
    /// When to look again, while this engine's players consume something.
    next_sweep_ms: Option<u64>,
    /// Counted by the publications.
    pub(super) muxed: MuxedFrames,
}

#[derive(Debug, Default)]
struct StreamWants {
    local: Wants,
    remote: Vec<(usize, Wants)>,
}

impl StreamWants {
    fn all(&self) -> Wants {
        self.remote.iter().fold(self.local, |acc, (_, w)| acc | *w)
    }
}

impl Demand {
    /// `always`: what HLS and LL-HLS, as configured, consume of every stream.
    pub(super) fn new(always: Wants, worker: usize, shared: bool) -> Self {
        Demand {
            always,
            worker,
            shared,
            streams: HashMap::new(),
            next_sweep_ms: None,
            muxed: MuxedFrames::default(),
        }
    }

    /// What `stream`'s encodings are consumed by, over every engine.
    pub(super) fn wants(&self, stream: &str) -> Wants {
        self.streams
            .get(stream)
            .map_or(self.always, |s| self.always | s.all())
    }

    /// A player of this engine asks for `stream` in a form that consumes `wants`. Returns the
    /// announcement for the other engines when this engine did not consume that yet.
    pub(super) fn player_wants(
        &mut self,
        stream: &StreamKey,
        wants: Wants,
        now_ms: u64,
    ) -> Option<StreamMessage> {
        if wants.is_none() {
            return None;
        }
        self.next_sweep_ms
            .get_or_insert(now_ms.saturating_add(SWEEP_MS));
        let s = self.streams.entry(stream.clone()).or_default();
        if s.local.covers(wants) {
            return None;
        }
        s.local = s.local | wants;
        let local = s.local;
        self.announce(stream, local)
    }

    /// Another engine announced what its players of `stream` consume.
    pub(super) fn remote_wants(&mut self, stream: StreamKey, worker: usize, wants: Wants) {
        let s = self.streams.entry(stream.clone()).or_default();
        s.remote.retain(|(w, _)| *w != worker);
        if !wants.is_none() {
            s.remote.push((worker, wants));
        }
        if s.local.is_none() && s.remote.is_empty() {
            self.streams.remove(&stream);
        }
    }

    /// When [`Demand::sweep`] is due (never while this engine's players consume nothing).
    pub(super) fn poll_timeout(&self) -> Option<u64> {
        self.next_sweep_ms
    }

    /// Once [`Demand::poll_timeout`] passed: `local` is what this engine's players consume
    /// now, per stream; what no longer is gets announced (appended to `out`).
    pub(super) fn sweep(
        &mut self,
        local: &HashMap<StreamKey, Wants>,
        now_ms: u64,
        out: &mut Vec<StreamMessage>,
    ) {
        if self.next_sweep_ms.map_or(true, |at| now_ms < at) {
            return;
        }
        let mut gone = Vec::new();
        for (key, s) in &mut self.streams {
            let now = local.get(key).copied().unwrap_or_default();
            if now != s.local {
                s.local = now;
                if self.shared {
                    out.push(StreamMessage::Wants {
                        stream: key.clone(),
                        worker: self.worker,
                        wants: now,
                    });
                }
            }
            if s.local.is_none() && s.remote.is_empty() {
                gone.push(key.clone());
            }
        }
        for key in gone {
            self.streams.remove(&key);
        }
        let consuming = self.streams.values().any(|s| !s.local.is_none());
        self.next_sweep_ms = consuming.then(|| now_ms.saturating_add(SWEEP_MS));
    }

    fn announce(&self, stream: &StreamKey, wants: Wants) -> Option<StreamMessage> {
        self.shared.then(|| StreamMessage::Wants {
            stream: stream.clone(),
            worker: self.worker,
            wants,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: Wants = Wants {
        ts: true,
        fmp4: false,
        ll: false,
    };
    const FMP4: Wants = Wants {
        ts: false,
        fmp4: true,
        ll: false,
    };

    fn key() -> StreamKey {
        StreamKey::new("live", "s").expect("key")
    }

    #[test]
    fn a_player_is_announced_at_once_and_its_leaving_at_the_sweep() {
        let mut d = Demand::new(Wants::NONE, 1, true);
        assert_eq!(d.wants("live/s"), Wants::NONE);
        assert!(matches!(
            d.player_wants(&key(), TS, 0),
            Some(StreamMessage::Wants {
                worker: 1,
                wants: TS,
                ..
            })
        ));
        assert!(d.player_wants(&key(), TS, 0).is_none(), "announced once");
        assert_eq!(d.poll_timeout(), Some(SWEEP_MS));
        assert_eq!(d.wants("live/s"), TS);
        let mut out = Vec::new();
        let local = HashMap::from([(key(), TS)]);
        d.sweep(&local, SWEEP_MS, &mut out);
        assert!(out.is_empty(), "nothing changed");
        d.sweep(&HashMap::new(), 2 * SWEEP_MS, &mut out);
        assert!(matches!(
            out.as_slice(),
            [StreamMessage::Wants {
                wants: Wants::NONE,
                ..
            }]
        ));
        assert_eq!(d.wants("live/s"), Wants::NONE);
        assert!(
            d.streams.is_empty(),
            "nothing kept for a stream nobody wants"
        );
        assert_eq!(d.poll_timeout(), None, "and no more sweeps");
    }

    #[test]
    fn other_engines_add_up_and_hls_wants_every_stream() {
        let mut d = Demand::new(FMP4, 0, true);
        assert_eq!(
            d.wants("live/s"),
            FMP4,
            "LL-HLS consumes fMP4 of every stream"
        );
        d.remote_wants(key(), 1, TS);
        d.remote_wants(key(), 2, TS);
        assert_eq!(d.wants("live/s"), TS | FMP4);
        d.remote_wants(key(), 1, Wants::NONE);
        assert_eq!(d.wants("live/s"), TS | FMP4, "engine 2 still plays it");
        d.remote_wants(key(), 2, Wants::NONE);
        assert_eq!(d.wants("live/s"), FMP4);
        assert!(d.streams.is_empty());
    }

    #[test]
    fn an_engine_alone_announces_nothing() {
        let mut d = Demand::new(Wants::NONE, 0, false);
        assert!(d.player_wants(&key(), TS, 0).is_none());
        assert_eq!(d.wants("live/s"), TS);
    }
}
