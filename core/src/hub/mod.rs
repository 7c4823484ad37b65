//! The stream hub: who publishes which stream, who plays it, what a new player starts with,
//! and how each player's queue is kept bounded.
//!
//! The hub is format-agnostic and sans-IO. The engine turns every published frame into one
//! shared packet (a type implementing [`HubPacket`], typically holding `Bytes` already
//! encoded for each output format) and gives it to [`Hub::push`]; the hub caches it and hands
//! each player a cheap clone. Time comes in as `now_ms` arguments; the hub never reads a clock.
//!
//! Driving it: after each input (`publish`, `play`, `push`, `unpublish`, `handle_timeout`,
//! ...) drain [`Hub::poll_event`] and [`Hub::poll_ready`] until `None`, then take packets
//! with [`Hub::poll_packet`] for the players whose sockets can take more, and arm a timer for
//! [`Hub::poll_timeout`].
//!
//! Pacing: a player whose queue would pass [`HubConfig::player_queue_soft_bytes`] or hold more
//! than [`HubConfig::player_lag_soft_ms`] of media stops receiving media until the next key
//! point (a video key frame, or any audio packet of an audio-only stream); a key frame arriving
//! while it is over the soft bound replaces all its queued media ([`HubEvent::PlayerSkipped`]).
//! A player more than [`HubConfig::player_queue_hard_bytes`] behind (queued bytes plus bytes it
//! missed since it last took a packet), or that took nothing for
//! [`HubConfig::player_lag_hard_ms`] of media while it had packets queued, is dropped with
//! [`HubEvent::PlayerOverflowed`]. The publisher and the other players never notice.

mod gop;
mod queue;
#[cfg(test)]
mod tests;
mod tracks;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

use gop::GopCache;

use crate::stream_key::StreamKey;

use queue::{Bounds, Offer, PlayerQueue};
pub use tracks::{AudioTrack, TrackWatch, Tracks, VideoTrack};

/// Identifies a session (a connection's publisher or player) to the hub; chosen by the engine.
pub type SessionId = u64;

/// What the hub needs to know about a packet.
///
/// Cloning must be cheap (an `Arc` or `Bytes` clone): the hub clones each packet once per
/// player and once into its cache. `kind`, `dts` and `size` must not change between calls.
pub trait HubPacket: Clone {
    /// What the packet carries.
    fn kind(&self) -> PacketKind;
    /// Decode timestamp in milliseconds.
    fn dts(&self) -> i64;
    /// Bytes the packet costs in a player queue (for the bounds).
    fn size(&self) -> usize;
}

/// What a packet carries, as far as caching and pacing are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// Stream metadata (`onMetaData`).
    Metadata,
    /// Video decoder configuration (AVC/HEVC/AV1 configuration record).
    VideoConfig,
    /// Audio decoder configuration (AAC AudioSpecificConfig, ...).
    AudioConfig,
    /// A coded video frame; `key` marks a random access point that starts a GOP.
    Video {
        /// The frame is a key frame.
        key: bool,
    },
    /// A coded audio frame.
    Audio,
}

impl PacketKind {
    /// True for metadata and decoder configurations (never dropped for pacing).
    pub fn is_config(self) -> bool {
        matches!(
            self,
            PacketKind::Metadata | PacketKind::VideoConfig | PacketKind::AudioConfig
        )
    }
}

/// Hub settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// GOPs kept for new players (0: none, new players wait for the next key frame).
    pub gop_num: usize,
    /// Bound on cached media packets per stream.
    pub gop_max_frames: usize,
    /// Bound on cached media bytes per stream.
    pub gop_max_bytes: usize,
    /// Above this many queued bytes, a player drops whole frames until the next key frame.
    pub player_queue_soft_bytes: usize,
    /// A player more than this many bytes behind is disconnected.
    pub player_queue_hard_bytes: usize,
    /// A player with more than this much media queued (ms) skips to the next key frame.
    pub player_lag_soft_ms: u64,
    /// A player that took nothing for this much media (ms) while it had some queued is
    /// disconnected.
    pub player_lag_hard_ms: u64,
    /// How long a player of a stream that is not live waits for a publisher.
    pub play_wait_timeout_ms: u64,
    /// How long a stream and its players outlive their publisher, waiting for a reconnect.
    pub publisher_grace_ms: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            gop_num: 1,
            gop_max_frames: 2048,
            gop_max_bytes: 32 << 20,
            player_queue_soft_bytes: 4 << 20,
            player_queue_hard_bytes: 16 << 20,
            player_lag_soft_ms: 5_000,
            player_lag_hard_ms: 20_000,
            play_wait_timeout_ms: 10_000,
            publisher_grace_ms: 5_000,
        }
    }
}

/// Why [`Hub::publish`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The stream already has a live publisher.
    AlreadyPublishing,
    /// This session already publishes a stream (unpublish it first).
    SessionBusy,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::AlreadyPublishing => {
                f.write_str("hub: publish refused, the stream already has a publisher")
            }
            PublishError::SessionBusy => {
                f.write_str("hub: publish refused, the session already publishes a stream")
            }
        }
    }
}

impl std::error::Error for PublishError {}

/// Outcome of [`Hub::play`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayState {
    /// The stream is live (or in its grace period): the queue starts with what is cached.
    Playing,
    /// The stream has no publisher yet: the player waits (see [`HubEvent::PlayerStarted`]
    /// and [`HubEvent::PlayerWaitExpired`]).
    Waiting,
}

/// Something the engine must act on; drained with [`Hub::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEvent {
    /// A waiting player got a publisher; packets now flow into its queue.
    PlayerStarted {
        /// The player.
        player: SessionId,
        /// Its stream.
        stream: StreamKey,
    },
    /// A player waited longer than `play_wait_timeout_ms` and was removed; the engine closes
    /// it (stream not found).
    PlayerWaitExpired {
        /// The player.
        player: SessionId,
        /// The stream it asked for.
        stream: StreamKey,
    },
    /// A player past the soft bound skipped to the newest key frame: its queued media was
    /// dropped (the engine counts and logs it).
    PlayerSkipped {
        /// The player.
        player: SessionId,
        /// Media time it was behind when it skipped (ms).
        behind_ms: u64,
    },
    /// A player fell more than the hard bound behind and was removed; the engine disconnects it.
    PlayerOverflowed {
        /// The player.
        player: SessionId,
        /// Its stream.
        stream: StreamKey,
    },
    /// The publisher left and did not come back within the grace period; the stream and these
    /// players were removed and the engine ends them.
    StreamEnded {
        /// The stream.
        stream: StreamKey,
        /// Its players at the end.
        players: Vec<SessionId>,
    },
    /// A publisher took over a stream in its grace period; its players continue.
    PublisherResumed {
        /// The stream.
        stream: StreamKey,
        /// The new publisher.
        publisher: SessionId,
    },
}

/// A read-only view of one stream, for stats and the API.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StreamInfo<'a> {
    /// Stream name.
    pub name: &'a str,
    /// The live publisher, if any.
    pub publisher: Option<SessionId>,
    /// While the publisher is gone: when the grace period ends (ms).
    pub grace_until_ms: Option<u64>,
    /// Players, in the order they joined (all waiting when there is neither a publisher nor
    /// a grace period, all playing otherwise).
    pub players: &'a [SessionId],
    /// A metadata packet is cached.
    pub has_metadata: bool,
    /// A video configuration is cached.
    pub has_video_config: bool,
    /// An audio configuration is cached.
    pub has_audio_config: bool,
    /// Cached media packets (GOP cache).
    pub cached_packets: usize,
    /// Cached media bytes (GOP cache).
    pub cached_bytes: usize,
}

type IdMap<V> = crate::id_map::IdMap<SessionId, V>;

/// Who feeds a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    /// A publisher is live.
    Live(SessionId),
    /// The publisher left; the stream ends at this time unless one comes back.
    Grace(u64),
    /// No publisher yet: only waiting players.
    Idle,
}

#[derive(Debug)]
struct Stream<P> {
    feed: Feed,
    players: Vec<SessionId>,
    cache: GopCache<P>,
    /// What its publisher said the tracks are.
    tracks: Tracks,
}

#[derive(Debug)]
struct Player<P> {
    stream: StreamKey,
    /// While waiting for a publisher: when the wait ends.
    wait_until: Option<u64>,
    queue: PlayerQueue<P>,
    /// Listed in `Hub::ready` since the last `poll_ready` for it.
    ready: bool,
}

/// A deadline in the timer set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Wait(SessionId),
    Grace(StreamKey),
}

/// The hub. See the [module documentation](self) for how to drive it.
///
/// After each input, drain [`Hub::poll_event`] and [`Hub::poll_ready`] before the next.
#[derive(Debug)]
pub struct Hub<P: HubPacket> {
    config: HubConfig,
    streams: HashMap<StreamKey, Stream<P>>,
    players: IdMap<Player<P>>,
    publishers: IdMap<StreamKey>,
    timers: BTreeSet<(u64, Timer)>,
    ready: VecDeque<SessionId>,
    events: VecDeque<HubEvent>,
}

impl<P: HubPacket> Hub<P> {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Self {
        Hub {
            config,
            streams: HashMap::new(),
            players: IdMap::default(),
            publishers: IdMap::default(),
            timers: BTreeSet::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Replaces the settings (a config reload): queue and lag bounds, GOP cache bounds, waits
    /// and grace apply from the next packet, player or timer on; nothing queued is dropped.
    pub fn set_config(&mut self, config: HubConfig) {
        self.config = config;
    }

    /// Starts publishing `stream`. A stream in its grace period is resumed (its players keep
    /// their queues; [`HubEvent::PublisherResumed`]); waiting players start
    /// ([`HubEvent::PlayerStarted`]).
    pub fn publish(
        &mut self,
        stream: &StreamKey,
        publisher: SessionId,
        now_ms: u64,
    ) -> Result<(), PublishError> {
        if self.publishers.contains_key(&publisher) {
            return Err(PublishError::SessionBusy);
        }
        if let Some(s) = self.streams.get(stream) {
            if matches!(s.feed, Feed::Live(_)) {
                return Err(PublishError::AlreadyPublishing);
            }
        }
        // Publishing itself has no deadline; `now_ms` keeps the verbs uniform.
        let _ = now_ms;
        self.attach_publisher(stream, publisher);
        Ok(())
    }

    /// Like [`Hub::publish`], but takes over from a live publisher instead of refusing, and
    /// returns the session that was kicked (the engine closes it). Players continue from the
    /// new publisher's next key frame. If `publisher` already publishes another stream, that
    /// stream is unpublished first; if it already publishes this one, nothing changes.
    pub fn publish_takeover(
        &mut self,
        stream: &StreamKey,
        publisher: SessionId,
        now_ms: u64,
    ) -> Option<SessionId> {
        match self.publishers.get(&publisher) {
            Some(current) if current == stream => return None,
            Some(_) => self.unpublish(publisher, now_ms),
            None => {}
        }
        let kicked = match self.streams.get(stream).map(|s| s.feed) {
            Some(Feed::Live(old)) => old,
            _ => {
                self.attach_publisher(stream, publisher);
                return None;
            }
        };
        self.publishers.remove(&kicked);
        self.publishers.insert(publisher, stream.clone());
        if let Some(s) = self.streams.get_mut(stream) {
            s.feed = Feed::Live(publisher);
            new_feed(s, &mut self.players);
        }
        Some(kicked)
    }

    /// Makes `publisher` the live publisher of `stream`, which has none.
    fn attach_publisher(&mut self, stream: &StreamKey, publisher: SessionId) {
        self.publishers.insert(publisher, stream.clone());
        let s = self
            .streams
            .entry(stream.clone())
            .or_insert_with(|| Stream {
                feed: Feed::Idle,
                players: Vec::new(),
                cache: GopCache::new(),
                tracks: Tracks::default(),
            });
        let previous = std::mem::replace(&mut s.feed, Feed::Live(publisher));
        match previous {
            Feed::Grace(until) => {
                self.timers.remove(&(until, Timer::Grace(stream.clone())));
                new_feed(s, &mut self.players);
                self.events.push_back(HubEvent::PublisherResumed {
                    stream: stream.clone(),
                    publisher,
                });
            }
            Feed::Idle => {
                for &id in &s.players {
                    let Some(player) = self.players.get_mut(&id) else {
                        continue;
                    };
                    if let Some(until) = player.wait_until.take() {
                        self.timers.remove(&(until, Timer::Wait(id)));
                    }
                    self.events.push_back(HubEvent::PlayerStarted {
                        player: id,
                        stream: stream.clone(),
                    });
                }
            }
            // Callers check that the stream has no live publisher.
            Feed::Live(_) => {}
        }
    }

    /// The publisher left: its stream lives on for `publisher_grace_ms` (players keep their
    /// queues) and ends with [`HubEvent::StreamEnded`] unless a publisher comes back.
    pub fn unpublish(&mut self, publisher: SessionId, now_ms: u64) {
        let Some(name) = self.publishers.remove(&publisher) else {
            return;
        };
        if self.config.publisher_grace_ms == 0 {
            self.end_stream(&name);
            return;
        }
        let until = now_ms.saturating_add(self.config.publisher_grace_ms);
        if let Some(s) = self.streams.get_mut(&name) {
            s.feed = Feed::Grace(until);
            self.timers.insert((until, Timer::Grace(name)));
        }
    }

    /// Starts playing `stream`. On a live stream (or one in its grace period) the queue is
    /// prefilled with metadata, video config, audio config and the cached GOP(s) that fit in
    /// the soft bound; without a cached GOP the player starts at the next key frame. Otherwise
    /// the player waits for a publisher for `play_wait_timeout_ms`. A player id that already
    /// plays something is moved.
    pub fn play(&mut self, stream: &StreamKey, player: SessionId, now_ms: u64) -> PlayState {
        self.stop_play(player);
        let s = self
            .streams
            .entry(stream.clone())
            .or_insert_with(|| Stream {
                feed: Feed::Idle,
                players: Vec::new(),
                cache: GopCache::new(),
                tracks: Tracks::default(),
            });
        s.players.push(player);
        if s.feed == Feed::Idle {
            let until = now_ms.saturating_add(self.config.play_wait_timeout_ms);
            self.timers.insert((until, Timer::Wait(player)));
            self.players.insert(
                player,
                Player {
                    stream: stream.clone(),
                    wait_until: Some(until),
                    queue: PlayerQueue::new(true),
                    ready: false,
                },
            );
            return PlayState::Waiting;
        }
        let cache = &s.cache;
        let configs = [&cache.metadata, &cache.video_config, &cache.audio_config];
        let config_bytes = configs
            .iter()
            .filter_map(|c| c.as_ref())
            .fold(0usize, |sum, p| sum.saturating_add(p.size()));
        let budget = self
            .config
            .player_queue_soft_bytes
            .saturating_sub(config_bytes);
        let start = cache.start_suffix(budget);
        let mut queue = PlayerQueue::new(start == 0);
        for packet in configs.into_iter().flatten() {
            queue.push_back(packet.clone());
        }
        for packet in cache.tail(start) {
            queue.push_back(packet.clone());
        }
        let ready = !queue.is_empty();
        if ready {
            self.ready.push_back(player);
        }
        self.players.insert(
            player,
            Player {
                stream: stream.clone(),
                wait_until: None,
                queue,
                ready,
            },
        );
        PlayState::Playing
    }

    /// The player left (or the engine closed it). Unknown ids are ignored.
    pub fn stop_play(&mut self, player: SessionId) {
        let Some(p) = self.players.remove(&player) else {
            return;
        };
        if let Some(until) = p.wait_until {
            self.timers.remove(&(until, Timer::Wait(player)));
        }
        self.detach_player(&p.stream, player);
    }

    /// Removes a player id from its stream's list; drops an idle stream left without players.
    fn detach_player(&mut self, stream: &StreamKey, player: SessionId) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        if let Some(i) = s.players.iter().position(|&id| id == player) {
            s.players.remove(i);
        }
        if s.feed == Feed::Idle && s.players.is_empty() {
            self.streams.remove(stream);
        }
    }

    /// A packet from a publisher: updates the stream's cache and offers it to every player
    /// (see the pacing rule in the [module documentation](self)). Packets from a session that
    /// does not publish are ignored.
    pub fn push(&mut self, publisher: SessionId, packet: P) {
        let Some(name) = self.publishers.get(&publisher) else {
            return;
        };
        let Some(stream) = self.streams.get_mut(name) else {
            return;
        };
        let (class, switched_to_video) = stream.cache.record(&packet, &self.config);
        if switched_to_video {
            // Players that started on audio now wait for a video key frame.
            skip_until_key(&stream.players, &mut self.players);
        }
        let bounds = Bounds {
            soft_bytes: self.config.player_queue_soft_bytes,
            hard_bytes: self.config.player_queue_hard_bytes,
            soft_ms: i64::try_from(self.config.player_lag_soft_ms).unwrap_or(i64::MAX),
            hard_ms: i64::try_from(self.config.player_lag_hard_ms).unwrap_or(i64::MAX),
        };
        let players = &mut self.players;
        let ready = &mut self.ready;
        let events = &mut self.events;
        stream.players.retain(|&id| {
            let Some(player) = players.get_mut(&id) else {
                return false;
            };
            let offer = player.queue.offer(&packet, class, &bounds);
            if let Offer::Skipped { behind_ms } = offer {
                events.push_back(HubEvent::PlayerSkipped {
                    player: id,
                    behind_ms: u64::try_from(behind_ms).unwrap_or(0),
                });
            }
            match offer {
                Offer::Queued | Offer::Skipped { .. } => {
                    if !player.ready {
                        player.ready = true;
                        ready.push_back(id);
                    }
                    true
                }
                Offer::Dropped => true,
                Offer::Overflowed => {
                    if let Some(p) = players.remove(&id) {
                        events.push_back(HubEvent::PlayerOverflowed {
                            player: id,
                            stream: p.stream,
                        });
                    }
                    false
                }
            }
        });
    }

    /// Players attached to streams of this hub, playing or waiting.
    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// The next packet queued for a player (FIFO), or `None`.
    pub fn poll_packet(&mut self, player: SessionId) -> Option<P> {
        self.players.get_mut(&player)?.queue.pop()
    }

    /// Bytes queued for a player (0 for unknown ids).
    pub fn queued_bytes(&self, player: SessionId) -> usize {
        self.players.get(&player).map_or(0, |p| p.queue.bytes())
    }

    /// A player that received packets since it was last returned here (each at most once per
    /// batch), so the engine knows whom to flush.
    pub fn poll_ready(&mut self) -> Option<SessionId> {
        while let Some(id) = self.ready.pop_front() {
            if let Some(p) = self.players.get_mut(&id) {
                if p.ready {
                    p.ready = false;
                    return Some(id);
                }
            }
        }
        None
    }

    /// The next event, or `None`.
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.events.pop_front()
    }

    /// Processes every deadline at or before `now_ms` (expired waits, ended grace periods).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        while let Some(first) = self.timers.first() {
            let first_at = first.0;
            if first_at > now_ms {
                break;
            }
            let Some((_, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::Wait(id) => {
                    // Timers are removed with their players, so this holds; check anyway.
                    let due = self.players.get(&id).and_then(|p| p.wait_until) == Some(first_at);
                    if let Some(p) = due.then(|| self.players.remove(&id)).flatten() {
                        self.detach_player(&p.stream, id);
                        self.events.push_back(HubEvent::PlayerWaitExpired {
                            player: id,
                            stream: p.stream,
                        });
                    }
                }
                Timer::Grace(name) => self.end_stream(&name),
            }
        }
    }

    /// Removes a stream and its players, with [`HubEvent::StreamEnded`].
    fn end_stream(&mut self, name: &StreamKey) {
        let Some((name, s)) = self.streams.remove_entry(name) else {
            return;
        };
        if let Feed::Grace(until) = s.feed {
            self.timers.remove(&(until, Timer::Grace(name.clone())));
        }
        for id in &s.players {
            self.players.remove(id);
        }
        self.events.push_back(HubEvent::StreamEnded {
            stream: name,
            players: s.players,
        });
    }

    /// The earliest pending deadline (ms), if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// All streams: live, in their grace period, or with waiting players only.
    pub fn streams(&self) -> impl Iterator<Item = StreamInfo<'_>> {
        self.streams.iter().map(|(name, s)| StreamInfo {
            name: name.as_str(),
            publisher: match s.feed {
                Feed::Live(id) => Some(id),
                _ => None,
            },
            grace_until_ms: match s.feed {
                Feed::Grace(until) => Some(until),
                _ => None,
            },
            players: &s.players,
            has_metadata: s.cache.metadata.is_some(),
            has_video_config: s.cache.video_config.is_some(),
            has_audio_config: s.cache.audio_config.is_some(),
            cached_packets: s.cache.len(),
            cached_bytes: s.cache.bytes(),
        })
    }

    /// The stream a player plays or waits for.
    pub fn stream_of_player(&self, player: SessionId) -> Option<&StreamKey> {
        self.players.get(&player).map(|p| &p.stream)
    }

    /// Whether a player is playing or waiting (`None` for unknown ids).
    pub fn player_state(&self, player: SessionId) -> Option<PlayState> {
        self.players.get(&player).map(|p| match p.wait_until {
            Some(_) => PlayState::Waiting,
            None => PlayState::Playing,
        })
    }

    /// The stream a session publishes.
    pub fn stream_of_publisher(&self, publisher: SessionId) -> Option<&StreamKey> {
        self.publishers.get(&publisher)
    }

    /// The cached metadata, video config and audio config of a stream (what the GOP cache
    /// tests inspect; players get these through their queues).
    #[cfg(test)]
    pub(crate) fn config_packets(&self, stream: &str) -> (Option<&P>, Option<&P>, Option<&P>) {
        match self.streams.get(stream) {
            Some(s) => (
                s.cache.metadata.as_ref(),
                s.cache.video_config.as_ref(),
                s.cache.audio_config.as_ref(),
            ),
            None => (None, None, None),
        }
    }

    /// Describes the tracks of the stream `publisher` publishes (ignored for a session that
    /// does not publish). Players and the API read them with [`Hub::tracks`].
    pub fn set_tracks(&mut self, publisher: SessionId, tracks: Tracks) {
        let Some(name) = self.publishers.get(&publisher) else {
            return;
        };
        if let Some(s) = self.streams.get_mut(name) {
            s.tracks = tracks;
        }
    }

    /// The tracks of a stream, as its publisher described them.
    pub fn tracks(&self, stream: &str) -> Option<&Tracks> {
        self.streams.get(stream).map(|s| &s.tracks)
    }

    /// Whether a stream's GOP cache holds video (a video config or frame was published).
    #[cfg(test)]
    pub(crate) fn has_video(&self, stream: &str) -> bool {
        self.streams
            .get(stream)
            .is_some_and(|s| s.cache.has_video())
    }
}

/// A new publisher took over a stream: its timestamps need not follow the old one's, so the
/// cached media is dropped (configs stay until replaced) and every player continues from the
/// next key point.
fn new_feed<P: HubPacket>(stream: &mut Stream<P>, players: &mut IdMap<Player<P>>) {
    stream.cache.clear_media();
    skip_until_key(&stream.players, players);
}

/// Makes these players wait for the next key point.
fn skip_until_key<P: HubPacket>(ids: &[SessionId], players: &mut IdMap<Player<P>>) {
    for id in ids {
        if let Some(p) = players.get_mut(id) {
            p.queue.skip_until_key();
        }
    }
}
