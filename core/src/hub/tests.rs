//! Deterministic tests of the hub with a tiny packet type, plus proptest invariants.

use super::*;
use proptest::prelude::*;

/// Test packet: `id` is its position in the publisher's input (ids grow by one per push).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pkt {
    id: u32,
    kind: PacketKind,
    dts: i64,
    size: usize,
}

impl HubPacket for Pkt {
    fn kind(&self) -> PacketKind {
        self.kind
    }
    fn dts(&self) -> i64 {
        self.dts
    }
    fn size(&self) -> usize {
        self.size
    }
}

const KEY: PacketKind = PacketKind::Video { key: true };
const DELTA: PacketKind = PacketKind::Video { key: false };
const AUDIO: PacketKind = PacketKind::Audio;
const MD: PacketKind = PacketKind::Metadata;
const VC: PacketKind = PacketKind::VideoConfig;
const AC: PacketKind = PacketKind::AudioConfig;

const PUB: SessionId = 100;
const S: &str = "live/cam";

/// The key for `live/{name}`, or for `name` when it already names an app.
fn key(name: &str) -> StreamKey {
    StreamKey::parse(name)
        .or_else(|| StreamKey::new("live", name))
        .expect("a valid test name")
}

/// A publisher's input: every packet pushed, by id.
struct Src {
    sent: Vec<Pkt>,
    dts: i64,
}

impl Src {
    fn new() -> Self {
        Src {
            sent: Vec::new(),
            dts: 0,
        }
    }

    /// Pushes a packet of `kind` and `size`; media advance dts by 10 ms. Returns its id.
    fn push(
        &mut self,
        hub: &mut Hub<Pkt>,
        publisher: SessionId,
        kind: PacketKind,
        size: usize,
    ) -> u32 {
        let id = self.sent.len() as u32;
        if !kind.is_config() {
            self.dts += 10;
        }
        let p = Pkt {
            id,
            kind,
            dts: self.dts,
            size,
        };
        self.sent.push(p.clone());
        hub.push(publisher, p);
        id
    }

    fn push_all(&mut self, hub: &mut Hub<Pkt>, kinds: &[PacketKind]) -> Vec<u32> {
        kinds.iter().map(|&k| self.push(hub, PUB, k, 100)).collect()
    }
}

fn config() -> HubConfig {
    HubConfig {
        gop_num: 1,
        gop_max_frames: 1000,
        gop_max_bytes: 1 << 20,
        player_queue_soft_bytes: 1 << 20,
        player_queue_hard_bytes: 4 << 20,
        // Bytes only here; the time bounds have their own tests.
        player_lag_soft_ms: u64::MAX,
        player_lag_hard_ms: u64::MAX,
        play_wait_timeout_ms: 10_000,
        publisher_grace_ms: 5_000,
    }
}

fn live_hub(config: HubConfig) -> Hub<Pkt> {
    let mut hub = Hub::new(config);
    hub.publish(&key(S), PUB, 0).unwrap();
    hub
}

fn drain(hub: &mut Hub<Pkt>, player: SessionId) -> Vec<Pkt> {
    std::iter::from_fn(|| hub.poll_packet(player)).collect()
}

fn ids(packets: &[Pkt]) -> Vec<u32> {
    packets.iter().map(|p| p.id).collect()
}

fn kinds(packets: &[Pkt]) -> Vec<PacketKind> {
    packets.iter().map(|p| p.kind).collect()
}

/// The events, without the skips that only count and log (see [`skips`]).
fn events(hub: &mut Hub<Pkt>) -> Vec<HubEvent> {
    std::iter::from_fn(|| hub.poll_event())
        .filter(|e| !matches!(e, HubEvent::PlayerSkipped { .. }))
        .collect()
}

/// The skips among the events (the others are dropped), as (player, behind_ms).
fn skips(hub: &mut Hub<Pkt>) -> Vec<(SessionId, u64)> {
    std::iter::from_fn(|| hub.poll_event())
        .filter_map(|e| match e {
            HubEvent::PlayerSkipped { player, behind_ms } => Some((player, behind_ms)),
            _ => None,
        })
        .collect()
}

fn ready(hub: &mut Hub<Pkt>) -> Vec<SessionId> {
    std::iter::from_fn(|| hub.poll_ready()).collect()
}

fn cached_ids(hub: &Hub<Pkt>) -> Vec<u32> {
    hub.streams
        .get(S)
        .map(|s| s.cache.packets().map(|p| p.id).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- GOP cache

/// Input used by the GOP tests: ids 0..=2 configs, three GOPs (keys at 3, 7, 11).
fn three_gops(hub: &mut Hub<Pkt>, src: &mut Src) {
    src.push_all(
        hub,
        &[
            VC, AC, MD, // 0..=2
            KEY, DELTA, AUDIO, DELTA, // 3..=6
            KEY, AUDIO, DELTA, DELTA, // 7..=10
            KEY, DELTA, AUDIO, // 11..=13
        ],
    );
}

#[test]
fn gop_num_1_caches_current_gop() {
    let mut hub = live_hub(config());
    let mut src = Src::new();
    three_gops(&mut hub, &mut src);
    assert_eq!(cached_ids(&hub), vec![11, 12, 13]);
    assert_eq!(hub.play(&key(S), 1, 0), PlayState::Playing);
    // Metadata, video config, audio config (in that order whatever the input order), then the GOP.
    let got = drain(&mut hub, 1);
    assert_eq!(ids(&got), vec![2, 0, 1, 11, 12, 13]);
    assert_eq!(kinds(&got)[..3], [MD, VC, AC]);
}

#[test]
fn gop_num_2_caches_two_gops() {
    let mut hub = live_hub(HubConfig {
        gop_num: 2,
        ..config()
    });
    let mut src = Src::new();
    three_gops(&mut hub, &mut src);
    assert_eq!(cached_ids(&hub), vec![7, 8, 9, 10, 11, 12, 13]);
    hub.play(&key(S), 1, 0);
    assert_eq!(
        ids(&drain(&mut hub, 1)),
        vec![2, 0, 1, 7, 8, 9, 10, 11, 12, 13]
    );
}

#[test]
fn gop_num_0_caches_nothing_and_player_waits_for_key() {
    let mut hub = live_hub(HubConfig {
        gop_num: 0,
        ..config()
    });
    let mut src = Src::new();
    three_gops(&mut hub, &mut src);
    assert!(cached_ids(&hub).is_empty());
    hub.play(&key(S), 1, 0);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![2, 0, 1]);
    // Media before the next key frame is skipped, audio included.
    src.push_all(&mut hub, &[DELTA, AUDIO, DELTA]);
    assert!(drain(&mut hub, 1).is_empty());
    let k = src.push(&mut hub, PUB, KEY, 100);
    let rest = src.push_all(&mut hub, &[AUDIO, DELTA]);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![k, rest[0], rest[1]]);
}

#[test]
fn media_before_first_key_is_not_cached() {
    let mut hub = live_hub(config());
    let mut src = Src::new();
    src.push_all(&mut hub, &[VC, AC, DELTA, AUDIO, DELTA]);
    assert!(cached_ids(&hub).is_empty());
    hub.play(&key(S), 1, 0);
    assert_eq!(kinds(&drain(&mut hub, 1)), vec![VC, AC]);
    src.push_all(&mut hub, &[AUDIO, DELTA]);
    assert!(drain(&mut hub, 1).is_empty());
    let k = src.push(&mut hub, PUB, KEY, 100);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![k]);
    assert_eq!(cached_ids(&hub), vec![k]);
}

#[test]
fn late_player_gets_latest_configs_and_starts_at_key() {
    let mut hub = live_hub(config());
    let mut src = Src::new();
    src.push_all(&mut hub, &[MD, VC, AC, KEY, DELTA]);
    // The publisher sends new configs mid-stream: they replace the old ones.
    let new = src.push_all(&mut hub, &[VC, MD, KEY, AUDIO, DELTA]);
    let (md, vc, ac) = hub.config_packets(S);
    assert_eq!(
        (md.unwrap().id, vc.unwrap().id, ac.unwrap().id),
        (new[1], new[0], 2)
    );
    hub.play(&key(S), 1, 0);
    let got = drain(&mut hub, 1);
    assert_eq!(ids(&got), vec![new[1], new[0], 2, new[2], new[3], new[4]]);
    assert_eq!(got[3].kind, KEY);
    assert_eq!(hub.config_packets("other"), (None, None, None));
}

#[test]
fn frame_bound_drops_whole_oldest_gops() {
    let mut hub = live_hub(HubConfig {
        gop_num: 3,
        gop_max_frames: 6,
        ..config()
    });
    let mut src = Src::new();
    src.push_all(&mut hub, &[VC, KEY, DELTA, DELTA, KEY, DELTA]); // keys at 1, 4
    assert_eq!(cached_ids(&hub), vec![1, 2, 3, 4, 5]);
    src.push_all(&mut hub, &[DELTA]); // 6 frames: fits
    assert_eq!(cached_ids(&hub), vec![1, 2, 3, 4, 5, 6]);
    src.push_all(&mut hub, &[KEY]); // 7 frames: the first GOP goes as a whole
    assert_eq!(cached_ids(&hub), vec![4, 5, 6, 7]);
    // A single GOP over the bound clears the cache until the next key frame.
    src.push_all(&mut hub, &[DELTA, DELTA, DELTA, DELTA, DELTA]); // 8..=12
    assert_eq!(cached_ids(&hub), vec![7, 8, 9, 10, 11, 12]);
    src.push_all(&mut hub, &[DELTA]); // 13: GOP 7 alone has 7 frames
    assert!(cached_ids(&hub).is_empty());
    hub.play(&key(S), 1, 0);
    assert_eq!(kinds(&drain(&mut hub, 1)), vec![VC]);
    src.push_all(&mut hub, &[DELTA, AUDIO]);
    assert!(cached_ids(&hub).is_empty());
    assert!(drain(&mut hub, 1).is_empty());
    let k = src.push(&mut hub, PUB, KEY, 100);
    assert_eq!(cached_ids(&hub), vec![k]);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![k]);
}

#[test]
fn byte_bound_drops_whole_oldest_gops() {
    let mut hub = live_hub(HubConfig {
        gop_num: 2,
        gop_max_bytes: 1000,
        ..config()
    });
    let mut src = Src::new();
    src.push(&mut hub, PUB, KEY, 400); // 0
    src.push(&mut hub, PUB, DELTA, 100); // 1
    src.push(&mut hub, PUB, KEY, 400); // 2
    assert_eq!(cached_ids(&hub), vec![0, 1, 2]);
    src.push(&mut hub, PUB, DELTA, 200); // 3: 1100 bytes, the first GOP goes
    assert_eq!(cached_ids(&hub), vec![2, 3]);
    let info = hub.streams().next().unwrap();
    assert_eq!((info.cached_packets, info.cached_bytes), (2, 600));
    src.push(&mut hub, PUB, DELTA, 500); // 4: one GOP of 1100 bytes
    assert!(cached_ids(&hub).is_empty());
    assert_eq!(hub.streams().next().unwrap().cached_bytes, 0);
}

#[test]
fn prefill_respects_soft_bound() {
    let mut hub = live_hub(HubConfig {
        gop_num: 2,
        player_queue_soft_bytes: 1000,
        ..config()
    });
    let mut src = Src::new();
    src.push(&mut hub, PUB, VC, 100); // 0
    src.push(&mut hub, PUB, KEY, 500); // 1
    src.push(&mut hub, PUB, DELTA, 200); // 2
    src.push(&mut hub, PUB, KEY, 500); // 3
    src.push(&mut hub, PUB, DELTA, 100); // 4
                                         // Both GOPs do not fit in 1000 - 100 bytes; the last one does.
    hub.play(&key(S), 1, 0);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![0, 3, 4]);
    src.push(&mut hub, PUB, DELTA, 400); // 5: GOP 3 is now 1000 bytes
    hub.play(&key(S), 2, 0);
    assert_eq!(ids(&drain(&mut hub, 2)), vec![0]);
    src.push(&mut hub, PUB, DELTA, 10);
    assert!(drain(&mut hub, 2).is_empty());
    let k = src.push(&mut hub, PUB, KEY, 10);
    assert_eq!(ids(&drain(&mut hub, 2)), vec![k]);
}

#[test]
fn audio_only_stream_caches_last_second() {
    let mut hub = live_hub(config());
    let mut src = Src::new();
    src.push(&mut hub, PUB, AC, 10);
    for _ in 0..300 {
        src.push(&mut hub, PUB, AUDIO, 10); // every 10 ms
    }
    let cached = cached_ids(&hub);
    // Packets within 1000 ms of the newest (dts 3000): dts 2000..=3000.
    assert_eq!(cached.len(), 101);
    assert_eq!(*cached.last().unwrap(), 300);
    assert!(!hub.has_video(S));
    hub.play(&key(S), 1, 0);
    let got = drain(&mut hub, 1);
    assert_eq!(got[0].kind, AC);
    assert_eq!(got.len(), 102);
    // New audio flows straight in: every audio packet is a start point.
    let a = src.push(&mut hub, PUB, AUDIO, 10);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![a]);
}

#[test]
fn audio_only_cache_obeys_bounds() {
    let mut hub = live_hub(HubConfig {
        gop_max_frames: 5,
        gop_max_bytes: 35,
        ..config()
    });
    let mut src = Src::new();
    for _ in 0..10 {
        src.push(&mut hub, PUB, AUDIO, 10);
    }
    assert_eq!(cached_ids(&hub), vec![7, 8, 9]);
    let mut hub = live_hub(HubConfig {
        gop_max_frames: 5,
        ..config()
    });
    for _ in 0..10 {
        src.push(&mut hub, PUB, AUDIO, 10);
    }
    assert_eq!(cached_ids(&hub), vec![15, 16, 17, 18, 19]);
    let mut hub = live_hub(HubConfig {
        gop_num: 0,
        ..config()
    });
    src.push(&mut hub, PUB, AUDIO, 10);
    assert!(cached_ids(&hub).is_empty());
}

#[test]
fn audio_stream_gaining_video_restarts_at_video_key() {
    let mut hub = live_hub(config());
    let mut src = Src::new();
    src.push_all(&mut hub, &[AC, AUDIO, AUDIO]);
    hub.play(&key(S), 1, 0);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![0, 1, 2]);
    let vc = src.push(&mut hub, PUB, VC, 100);
    assert!(hub.has_video(S));
    assert!(cached_ids(&hub).is_empty());
    // Audio is now paced by video key frames.
    src.push_all(&mut hub, &[AUDIO, DELTA]);
    let k = src.push(&mut hub, PUB, KEY, 100);
    let a = src.push(&mut hub, PUB, AUDIO, 100);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![vc, k, a]);
    assert_eq!(cached_ids(&hub), vec![k, a]);
}

// ---------------------------------------------------------------- publishers

#[test]
fn second_publisher_is_refused() {
    let mut hub = live_hub(config());
    assert_eq!(
        hub.publish(&key(S), 101, 0),
        Err(PublishError::AlreadyPublishing)
    );
    assert_eq!(
        hub.publish(&key("other"), PUB, 0),
        Err(PublishError::SessionBusy)
    );
    assert!(!PublishError::AlreadyPublishing.to_string().is_empty());
    assert_eq!(hub.stream_of_publisher(PUB), Some(&key(S)));
    assert_eq!(hub.stream_of_publisher(101), None);
    // Packets from a session that does not publish are ignored.
    hub.push(
        101,
        Pkt {
            id: 0,
            kind: KEY,
            dts: 0,
            size: 1,
        },
    );
    assert!(cached_ids(&hub).is_empty());
    assert!(events(&mut hub).is_empty());
}

#[test]
fn takeover_kicks_live_publisher_and_players_continue_at_key() {
    let mut hub = live_hub(config());
    let mut src = Src::new();
    src.push_all(&mut hub, &[VC, KEY, DELTA]);
    hub.play(&key(S), 1, 0);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![0, 1, 2]);
    assert_eq!(hub.publish_takeover(&key(S), 101, 0), Some(PUB));
    assert_eq!(hub.publish_takeover(&key(S), 101, 0), None);
    assert_eq!(hub.stream_of_publisher(PUB), None);
    assert_eq!(hub.stream_of_publisher(101), Some(&key(S)));
    // The old publisher is gone; the cache restarts with the new one.
    src.push(&mut hub, PUB, DELTA, 100);
    assert!(cached_ids(&hub).is_empty());
    src.push(&mut hub, 101, DELTA, 100);
    let k = src.push(&mut hub, 101, KEY, 100);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![k]);
    assert_eq!(hub.player_state(1), Some(PlayState::Playing));
    // Taking over an idle name is a plain publish; moving a publisher unpublishes its old stream.
    assert_eq!(hub.publish_takeover(&key("b"), 102, 0), None);
    assert_eq!(hub.publish_takeover(&key("c"), 102, 7), None);
    assert_eq!(hub.stream_of_publisher(102), Some(&key("c")));
    let b = hub.streams().find(|s| s.name == "live/b").unwrap();
    assert_eq!((b.publisher, b.grace_until_ms), (None, Some(5_007)));
}

#[test]
fn reconnect_within_grace_keeps_players() {
    let mut hub = live_hub(config());
    let mut src = Src::new();
    src.push_all(&mut hub, &[MD, VC, AC, KEY, DELTA, DELTA]);
    hub.play(&key(S), 1, 0);
    assert_eq!(hub.poll_packet(1).unwrap().id, 0);
    hub.unpublish(PUB, 1_000);
    assert_eq!(hub.poll_timeout(), Some(6_000));
    assert_eq!(hub.stream_of_publisher(PUB), None);
    let info = hub.streams().next().unwrap();
    assert_eq!((info.publisher, info.grace_until_ms), (None, Some(6_000)));
    // A player joining during the grace period starts from the cache.
    assert_eq!(hub.play(&key(S), 2, 2_000), PlayState::Playing);
    hub.handle_timeout(5_999);
    assert!(events(&mut hub).is_empty());
    hub.publish(&key(S), 101, 5_999).unwrap();
    assert_eq!(
        events(&mut hub),
        vec![HubEvent::PublisherResumed {
            stream: key(S),
            publisher: 101
        }]
    );
    assert_eq!(hub.poll_timeout(), None);
    // The new publisher's configs replace the old; players wait for its first key frame.
    let vc = src.push(&mut hub, 101, VC, 100);
    src.push(&mut hub, 101, DELTA, 100);
    let k = src.push(&mut hub, 101, KEY, 100);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![1, 2, 3, 4, 5, vc, k]);
    assert_eq!(ids(&drain(&mut hub, 2)), vec![0, 1, 2, 3, 4, 5, vc, k]);
    hub.handle_timeout(10_000);
    assert!(events(&mut hub).is_empty());
    assert_eq!(hub.config_packets(S).1.unwrap().id, vc);
}

#[test]
fn grace_expiry_ends_stream() {
    let mut hub = live_hub(config());
    let mut src = Src::new();
    src.push_all(&mut hub, &[VC, KEY]);
    hub.play(&key(S), 1, 0);
    hub.play(&key(S), 2, 0);
    hub.unpublish(PUB, 100);
    hub.handle_timeout(5_100);
    assert_eq!(
        events(&mut hub),
        vec![HubEvent::StreamEnded {
            stream: key(S),
            players: vec![1, 2]
        }]
    );
    assert_eq!(hub.streams().count(), 0);
    assert_eq!(hub.stream_of_player(1), None);
    assert_eq!(hub.poll_packet(1), None);
    assert_eq!(hub.queued_bytes(1), 0);
    assert!(ready(&mut hub).is_empty());
    assert_eq!(hub.poll_timeout(), None);
    // The name is free again; a new player waits.
    assert_eq!(hub.play(&key(S), 3, 6_000), PlayState::Waiting);
}

#[test]
fn zero_grace_ends_stream_at_once() {
    let mut hub = live_hub(HubConfig {
        publisher_grace_ms: 0,
        ..config()
    });
    hub.play(&key(S), 1, 0);
    hub.unpublish(PUB, 0);
    hub.unpublish(PUB, 0);
    assert_eq!(
        events(&mut hub),
        vec![HubEvent::StreamEnded {
            stream: key(S),
            players: vec![1]
        }]
    );
}

// ---------------------------------------------------------------- waiting players

#[test]
fn waiting_player_starts_when_publisher_arrives() {
    let mut hub = Hub::new(config());
    assert_eq!(hub.play(&key(S), 1, 0), PlayState::Waiting);
    assert_eq!(hub.play(&key(S), 2, 500), PlayState::Waiting);
    assert_eq!(hub.player_state(1), Some(PlayState::Waiting));
    assert_eq!(hub.stream_of_player(1), Some(&key(S)));
    assert_eq!(hub.poll_timeout(), Some(10_000));
    let info = hub.streams().next().unwrap();
    assert_eq!(
        (info.name, info.publisher, info.players),
        (S, None, &[1, 2][..])
    );
    hub.publish(&key(S), PUB, 1_000).unwrap();
    assert_eq!(
        events(&mut hub),
        vec![
            HubEvent::PlayerStarted {
                player: 1,
                stream: key(S)
            },
            HubEvent::PlayerStarted {
                player: 2,
                stream: key(S)
            },
        ]
    );
    assert_eq!(hub.poll_timeout(), None);
    assert_eq!(hub.player_state(1), Some(PlayState::Playing));
    let mut src = Src::new();
    src.push_all(&mut hub, &[MD, VC, AC, DELTA, KEY, AUDIO]);
    assert_eq!(ready(&mut hub), vec![1, 2]);
    assert_eq!(ids(&drain(&mut hub, 1)), vec![0, 1, 2, 4, 5]);
    hub.handle_timeout(20_000);
    assert!(events(&mut hub).is_empty());
}

#[test]
fn wait_expires() {
    let mut hub = Hub::<Pkt>::new(config());
    hub.play(&key(S), 1, 0);
    hub.play(&key(S), 2, 3_000);
    hub.play(&key("x"), 3, 1_000);
    hub.stop_play(3);
    assert_eq!(hub.poll_timeout(), Some(10_000));
    hub.handle_timeout(9_999);
    assert!(events(&mut hub).is_empty());
    hub.handle_timeout(10_000);
    assert_eq!(
        events(&mut hub),
        vec![HubEvent::PlayerWaitExpired {
            player: 1,
            stream: key(S)
        }]
    );
    assert_eq!(hub.poll_timeout(), Some(13_000));
    hub.handle_timeout(20_000);
    assert_eq!(
        events(&mut hub),
        vec![HubEvent::PlayerWaitExpired {
            player: 2,
            stream: key(S)
        }]
    );
    assert_eq!(hub.streams().count(), 0);
    assert_eq!(hub.player_state(2), None);
}

#[test]
fn replay_moves_player_and_cancels_its_wait() {
    let mut hub = live_hub(config());
    hub.play(&key("other"), 1, 0);
    assert_eq!(hub.play(&key(S), 1, 0), PlayState::Playing);
    assert_eq!(hub.poll_timeout(), None);
    assert_eq!(hub.stream_of_player(1), Some(&key(S)));
    assert!(hub.streams().all(|s| s.name == S));
}

// ---------------------------------------------------------------- queues and pacing

#[test]
fn poll_ready_reports_each_player_once() {
    let mut hub = live_hub(config());
    let mut src = Src::new();
    hub.play(&key(S), 1, 0);
    hub.play(&key(S), 2, 0);
    assert!(ready(&mut hub).is_empty());
    src.push_all(&mut hub, &[VC, KEY, DELTA]);
    hub.play(&key(S), 3, 0);
    hub.stop_play(2);
    assert_eq!(ready(&mut hub), vec![1, 3]);
    src.push_all(&mut hub, &[DELTA]);
    assert_eq!(ready(&mut hub), vec![1, 3]);
    assert!(ready(&mut hub).is_empty());
    assert_eq!(hub.queued_bytes(1), 400);
    assert_eq!(hub.queued_bytes(2), 0);
}

#[test]
fn configs_are_delivered_while_skipping() {
    let mut hub = live_hub(HubConfig {
        gop_num: 0,
        ..config()
    });
    let mut src = Src::new();
    hub.play(&key(S), 1, 0);
    let got = src.push_all(&mut hub, &[DELTA, MD, AUDIO, VC, AC, DELTA, KEY]);
    assert_eq!(
        ids(&drain(&mut hub, 1)),
        vec![got[1], got[3], got[4], got[6]]
    );
}

#[test]
fn key_over_soft_bound_replaces_queued_media() {
    let mut hub = live_hub(HubConfig {
        player_queue_soft_bytes: 1000,
        ..config()
    });
    let mut src = Src::new();
    hub.play(&key(S), 1, 0);
    src.push(&mut hub, PUB, VC, 50); // 0
    src.push(&mut hub, PUB, KEY, 400); // 1
    src.push(&mut hub, PUB, DELTA, 300); // 2
    src.push(&mut hub, PUB, MD, 50); // 3
    src.push(&mut hub, PUB, AUDIO, 100); // 4: 900 queued
    src.push(&mut hub, PUB, DELTA, 200); // 5: over: dropped, skipping
    src.push(&mut hub, PUB, AUDIO, 10); // 6: skipped
    assert_eq!(hub.queued_bytes(1), 900);
    src.push(&mut hub, PUB, KEY, 400); // 7: over: clean restart at the key
    assert_eq!(hub.queued_bytes(1), 500);
    src.push(&mut hub, PUB, DELTA, 100); // 8
    assert_eq!(ids(&drain(&mut hub, 1)), vec![0, 3, 7, 8]);
}

/// Long input: GOPs of one 3000-byte key frame and 29 deltas of 500 bytes, with a 100-byte
/// audio packet after every video frame.
fn long_stream(
    hub: &mut Hub<Pkt>,
    src: &mut Src,
    gops: usize,
    mut after_each: impl FnMut(&mut Hub<Pkt>, u32),
) {
    for _ in 0..gops {
        for i in 0..30 {
            let (kind, size) = if i == 0 { (KEY, 3000) } else { (DELTA, 500) };
            let id = src.push(hub, PUB, kind, size);
            after_each(hub, id);
            let id = src.push(hub, PUB, AUDIO, 100);
            after_each(hub, id);
        }
    }
}

#[test]
fn slow_player_is_dropped_and_nobody_else_notices() {
    let soft = 10_000;
    let hard = 40_000;
    let mut hub = live_hub(HubConfig {
        player_queue_soft_bytes: soft,
        player_queue_hard_bytes: hard,
        ..config()
    });
    let mut src = Src::new();
    src.push_all(&mut hub, &[MD, VC, AC]);
    const FAST: SessionId = 1;
    const SLOW: SessionId = 2;
    hub.play(&key(S), FAST, 0);
    hub.play(&key(S), SLOW, 0);
    let mut fast_got = drain(&mut hub, FAST);
    let mut overflowed_at = None;
    let mut slow_max = 0;
    long_stream(&mut hub, &mut src, 20, |hub, id| {
        fast_got.extend(drain(hub, FAST));
        for e in events(hub) {
            assert_eq!(
                e,
                HubEvent::PlayerOverflowed {
                    player: SLOW,
                    stream: key(S)
                }
            );
            assert!(overflowed_at.is_none());
            overflowed_at = Some(id);
        }
        slow_max = slow_max.max(hub.queued_bytes(SLOW));
        let _ = ready(hub);
    });
    // The fast player got every packet, in order.
    assert_eq!(
        ids(&fast_got),
        (0..src.sent.len() as u32).collect::<Vec<_>>()
    );
    // The slow one stayed under the soft bound plus one key frame, then was dropped once it
    // was more than the hard bound behind: well before the end of the input.
    assert!(slow_max <= soft + 3000, "slow queue reached {slow_max}");
    let at = overflowed_at.expect("the slow player overflowed");
    let behind: usize = src.sent[..=at as usize].iter().map(|p| p.size).sum();
    assert!(
        behind > hard && behind < 2 * hard,
        "overflowed after {behind} bytes"
    );
    assert_eq!(hub.stream_of_player(SLOW), None);
    assert_eq!(hub.poll_packet(SLOW), None);
    assert_eq!(hub.streams().next().unwrap().players, &[FAST]);
    // The publisher is unaffected.
    assert_eq!(hub.stream_of_publisher(PUB), Some(&key(S)));
}

/// Checks a player's received packets against the input: media keep their order and dts,
/// start at a key point, and after any gap resume at a key point.
fn check_received(input: &[Pkt], got: &[Pkt], audio_only: bool) -> Result<(), String> {
    let is_key = |p: &Pkt| p.kind == KEY || (audio_only && p.kind == AUDIO);
    let media: Vec<&Pkt> = got.iter().filter(|p| !p.kind.is_config()).collect();
    if let Some(first) = media.first() {
        if !is_key(first) {
            return Err(format!("first media {first:?} is not a key point"));
        }
    }
    for pair in media.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.id <= a.id || b.dts < a.dts {
            return Err(format!("out of order: {a:?} then {b:?}"));
        }
        let gap = input[(a.id + 1) as usize..b.id as usize]
            .iter()
            .any(|p| !p.kind.is_config());
        if gap && !is_key(b) {
            return Err(format!(
                "after a gap from {} resumed at non-key {b:?}",
                a.id
            ));
        }
    }
    Ok(())
}

#[test]
fn slow_player_that_resumes_restarts_at_key() {
    let mut hub = live_hub(HubConfig {
        player_queue_soft_bytes: 10_000,
        player_queue_hard_bytes: 1 << 20,
        ..config()
    });
    let mut src = Src::new();
    src.push_all(&mut hub, &[VC, AC]);
    hub.play(&key(S), 1, 0);
    let mut got = Vec::new();
    let mut pushed = 0;
    long_stream(&mut hub, &mut src, 6, |hub, _| {
        pushed += 1;
        // Reads everything, except during a stall of 50 packets.
        if !(20..70).contains(&pushed) {
            got.extend(drain(hub, 1));
        }
    });
    assert!(events(&mut hub).is_empty());
    check_received(&src.sent, &got, false).unwrap();
    // It missed something during the stall, and is back at the live edge.
    assert!(got.len() < src.sent.len());
    assert_eq!(got.last().unwrap().id as usize, src.sent.len() - 1);
}

/// Issue 21 item 3: a player that reads slower than the stream, with byte bounds far away
/// (a low bitrate), stays within the time bound: it skips to the newest key frame whenever
/// more than `player_lag_soft_ms` of media is queued, and each skip is reported.
#[test]
fn a_slow_player_is_bounded_in_time_as_well_as_bytes() {
    let mut hub = live_hub(HubConfig {
        player_lag_soft_ms: 3_000,
        player_lag_hard_ms: 10_000,
        ..config()
    });
    let mut src = Src::new();
    src.push_all(&mut hub, &[VC, AC]);
    hub.play(&key(S), 1, 0);
    let mut got = Vec::new();
    let mut pushed = 0u32;
    let mut skipped = Vec::new();
    let mut worst_ms = 0;
    // 60 s of a stream with a key frame every second (10 ms a packet); the player takes one
    // packet for every three pushed (30% of the rate).
    long_stream(&mut hub, &mut src, 60, |hub, _| {
        pushed += 1;
        if pushed % 3 == 0 {
            got.extend(hub.poll_packet(1));
        }
        if let Some(last) = got.last() {
            worst_ms = worst_ms.max(src_dts_now(hub) - last.dts);
        }
        skipped.extend(skips(hub));
        assert!(events(hub).is_empty(), "the slow player was disconnected");
    });
    check_received(&src.sent, &got, false).unwrap();
    assert!(!skipped.is_empty(), "the slow player never skipped");
    assert!(skipped
        .iter()
        .all(|&(p, ms)| p == 1 && ms > 3_000 && ms < 5_000));
    // Without the time bound it would end 42 s behind (70% of 60 s); with it, at most the
    // soft bound plus a GOP (and what the bytes allow).
    assert!(worst_ms <= 5_000, "fell {worst_ms} ms behind");
}

/// Issue 21 item 3: a player that takes nothing at all is disconnected once
/// `player_lag_hard_ms` of media went by, though its skips keep its queue small in bytes.
#[test]
fn a_stalled_player_is_disconnected_at_the_time_hard_bound() {
    let mut hub = live_hub(HubConfig {
        player_lag_soft_ms: 3_000,
        player_lag_hard_ms: 10_000,
        ..config()
    });
    let mut src = Src::new();
    src.push_all(&mut hub, &[VC, AC]);
    hub.play(&key(S), 1, 0);
    hub.play(&key(S), 2, 0);
    let mut overflowed_at = None;
    long_stream(&mut hub, &mut src, 30, |hub, _| {
        drain(hub, 2);
        for e in events(hub) {
            assert_eq!(
                e,
                HubEvent::PlayerOverflowed {
                    player: 1,
                    stream: key(S)
                }
            );
            assert!(overflowed_at.is_none());
            overflowed_at = Some(src_dts_now(hub));
        }
    });
    let at = overflowed_at.expect("the stalled player was never disconnected");
    assert!((10_000..10_200).contains(&at), "disconnected at {at} ms");
    assert_eq!(hub.player_count(), 1, "the reading player stays");
}

/// The dts of the newest packet cached for the test stream.
fn src_dts_now(hub: &Hub<Pkt>) -> i64 {
    hub.streams
        .get(&key(S))
        .and_then(|s| s.cache.packets().map(|p| p.dts).max())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- proptest

#[derive(Clone, Debug)]
enum Op {
    Push(u8, usize),
    Pop(usize),
    PopAll(usize),
    Play(usize),
    Stop(usize),
    Reconnect,
    Takeover,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<u8>(), 1usize..3000).prop_map(|(k, s)| Op::Push(k, s)),
        3 => (0usize..4).prop_map(Op::Pop),
        2 => (0usize..4).prop_map(Op::PopAll),
        1 => (0usize..4).prop_map(Op::Play),
        1 => (0usize..4).prop_map(Op::Stop),
        1 => Just(Op::Reconnect),
        1 => Just(Op::Takeover),
    ]
}

fn kind_for(k: u8, audio_only: bool) -> PacketKind {
    let k = k % 20;
    if audio_only {
        return match k {
            0 => MD,
            1 => AC,
            _ => AUDIO,
        };
    }
    match k {
        0 => MD,
        1 => VC,
        2 => AC,
        3..=8 => AUDIO,
        9..=10 => KEY,
        _ => DELTA,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold(
        ops in proptest::collection::vec(op(), 1..300),
        audio_only in any::<bool>(),
        gop_num in 0usize..3,
        gop_max_frames in 1usize..40,
        soft in 2_000usize..20_000,
        hard_extra in 0usize..20_000,
    ) {
        let hard = soft + hard_extra;
        let mut hub = Hub::new(HubConfig {
            gop_num,
            gop_max_frames,
            gop_max_bytes: 30_000,
            player_queue_soft_bytes: soft,
            player_queue_hard_bytes: hard,
            player_lag_soft_ms: 2_000,
            player_lag_hard_ms: 8_000,
            play_wait_timeout_ms: 10_000,
            publisher_grace_ms: 5_000,
        });
        let mut publisher = PUB;
        hub.publish(&key(S), publisher, 0).unwrap();
        let mut src = Src::new();
        if !audio_only {
            src.push(&mut hub, publisher, VC, 50);
        }
        // Player 0 reads everything after every step; the others as the ops say.
        let players: [SessionId; 4] = [1, 2, 3, 4];
        let mut got: [Vec<Pkt>; 4] = Default::default();
        let mut max_size = 50;
        let mut feed_changed = false;
        for op in ops {
            match op {
                Op::Push(k, size) => {
                    max_size = max_size.max(size);
                    src.push(&mut hub, publisher, kind_for(k, audio_only), size);
                }
                Op::Pop(i) => got[i].extend(hub.poll_packet(players[i])),
                Op::PopAll(i) => got[i].extend(drain(&mut hub, players[i])),
                Op::Play(i) => {
                    prop_assert_eq!(hub.play(&key(S), players[i], 0), PlayState::Playing);
                    got[i].clear();
                }
                Op::Stop(i) => {
                    hub.stop_play(players[i]);
                    got[i].clear();
                }
                Op::Reconnect => {
                    feed_changed = true;
                    hub.unpublish(publisher, 0);
                    publisher += 1;
                    hub.publish(&key(S), publisher, 0).unwrap();
                }
                Op::Takeover => {
                    feed_changed = true;
                    prop_assert_eq!(hub.publish_takeover(&key(S), publisher + 1, 0), Some(publisher));
                    publisher += 1;
                }
            }
            got[0].extend(drain(&mut hub, players[0]));
            while let Some(e) = hub.poll_event() {
                match e {
                    HubEvent::PlayerOverflowed { player, .. } => {
                        let i = players.iter().position(|&p| p == player).unwrap();
                        got[i].clear();
                    }
                    HubEvent::PublisherResumed { .. } | HubEvent::PlayerSkipped { .. } => {}
                    other => prop_assert!(false, "unexpected event {:?}", other),
                }
            }
            while hub.poll_ready().is_some() {}
            for (i, &id) in players.iter().enumerate() {
                if let Some(p) = hub.players.get(&id) {
                    let sum: usize = p.queue.iter().map(|p| p.size).sum();
                    prop_assert_eq!(sum, hub.queued_bytes(id));
                    // A new player always gets the three config packets, whatever their size, on
                    // top of what fits; past that, one packet beyond the hard bound at most.
                    prop_assert!(hub.queued_bytes(id) <= hard + 4 * max_size);
                }
                let mut seen = got[i].clone();
                if let Some(p) = hub.players.get(&id) {
                    seen.extend(p.queue.iter().cloned());
                }
                if let Err(e) = check_received(&src.sent, &seen, audio_only) {
                    prop_assert!(false, "player {}: {}", id, e);
                }
            }
            prop_assert_eq!(hub.stream_of_publisher(publisher).map(|k| k.as_str()), Some(S));
            prop_assert_eq!(hub.poll_timeout(), None);
        }
        // The always-reading player misses nothing once it started, when one packet always fits.
        if max_size <= soft && hub.players.contains_key(&players[0]) {
            let media: Vec<&Pkt> = got[0].iter().filter(|p| !p.kind.is_config()).collect();
            if let (Some(first), Some(last)) = (media.first(), media.last()) {
                let expected = src.sent[first.id as usize..=last.id as usize]
                    .iter()
                    .filter(|p| !p.kind.is_config())
                    .count();
                // A publisher change legitimately skips to the new publisher's first key frame.
                prop_assert!(expected == media.len() || feed_changed, "fast player missed packets");
            }
        }
    }
}

#[derive(Clone, Debug)]
enum LifeOp {
    Publish(usize, usize),
    Takeover(usize, usize),
    Unpublish(usize),
    Play(usize, usize),
    Stop(usize),
    Push(usize, u8),
    Advance(u64),
}

fn life_op() -> impl Strategy<Value = LifeOp> {
    let stream = 0usize..3;
    let session = 0usize..4;
    prop_oneof![
        1 => (stream.clone(), session.clone()).prop_map(|(s, p)| LifeOp::Publish(s, p)),
        1 => (stream.clone(), session.clone()).prop_map(|(s, p)| LifeOp::Takeover(s, p)),
        1 => session.clone().prop_map(LifeOp::Unpublish),
        2 => (stream, session.clone()).prop_map(|(s, p)| LifeOp::Play(s, p)),
        1 => session.clone().prop_map(LifeOp::Stop),
        2 => (session, any::<u8>()).prop_map(|(p, k)| LifeOp::Push(p, k)),
        2 => (0u64..4_000).prop_map(LifeOp::Advance),
    ]
}

/// Cross-checks the hub's maps: every player is listed by exactly its stream, waiting players
/// belong to idle streams, publishers match their streams, and `poll_timeout` is the earliest
/// deadline.
fn check_consistency(hub: &Hub<Pkt>) -> Result<(), String> {
    let mut listed = 0;
    for (name, s) in &hub.streams {
        for id in &s.players {
            let p = hub
                .players
                .get(id)
                .ok_or(format!("{name} lists unknown player {id}"))?;
            if &p.stream != name {
                return Err(format!("player {id} listed by {name} plays {}", p.stream));
            }
            if p.wait_until.is_some() != (s.feed == Feed::Idle) {
                return Err(format!(
                    "player {id} waiting state disagrees with {:?}",
                    s.feed
                ));
            }
            listed += 1;
        }
        if s.feed == Feed::Idle && s.players.is_empty() {
            return Err(format!("idle stream {name} without players kept"));
        }
        if let Feed::Live(id) = s.feed {
            if hub.publishers.get(&id) != Some(name) {
                return Err(format!("{name}'s publisher {id} not registered"));
            }
        }
    }
    if listed != hub.players.len() {
        return Err("a player is not listed by its stream".into());
    }
    for (id, name) in &hub.publishers {
        if hub.streams.get(name).map(|s| s.feed) != Some(Feed::Live(*id)) {
            return Err(format!("publisher {id} of {name} not live there"));
        }
    }
    let earliest = hub
        .players
        .values()
        .filter_map(|p| p.wait_until)
        .chain(hub.streams.values().filter_map(|s| match s.feed {
            Feed::Grace(until) => Some(until),
            _ => None,
        }))
        .min();
    let timers = hub
        .players
        .values()
        .filter(|p| p.wait_until.is_some())
        .count()
        + hub
            .streams
            .values()
            .filter(|s| matches!(s.feed, Feed::Grace(_)))
            .count();
    if hub.poll_timeout() != earliest || hub.timers.len() != timers {
        return Err(format!("timers {:?} disagree with state", hub.timers));
    }
    Ok(())
}

proptest! {
    #[test]
    fn lifecycle_keeps_maps_consistent(ops in proptest::collection::vec(life_op(), 1..200)) {
        let names = ["live/a", "live/b", "live/c"];
        let mut hub = Hub::new(HubConfig {
            play_wait_timeout_ms: 3_000,
            publisher_grace_ms: 2_000,
            ..config()
        });
        let mut now = 0u64;
        let mut src = Src::new();
        for op in ops {
            match op {
                LifeOp::Publish(s, p) => {
                    let publisher = 100 + p as SessionId;
                    let live = hub.streams.get(names[s]).is_some_and(|st| matches!(st.feed, Feed::Live(_)));
                    let busy = hub.publishers.contains_key(&publisher);
                    let r = hub.publish(&key(names[s]), publisher, now);
                    prop_assert_eq!(r.is_ok(), !live && !busy);
                }
                LifeOp::Takeover(s, p) => {
                    let _ = hub.publish_takeover(&key(names[s]), 100 + p as SessionId, now);
                }
                LifeOp::Unpublish(p) => hub.unpublish(100 + p as SessionId, now),
                LifeOp::Play(s, p) => {
                    hub.play(&key(names[s]), p as SessionId, now);
                }
                LifeOp::Stop(p) => hub.stop_play(p as SessionId),
                LifeOp::Push(p, k) => {
                    src.push(&mut hub, 100 + p as SessionId, kind_for(k, false), 100);
                }
                LifeOp::Advance(ms) => {
                    now += ms;
                    hub.handle_timeout(now);
                    prop_assert!(hub.poll_timeout().map_or(true, |t| t > now));
                }
            }
            while let Some(e) = hub.poll_event() {
                match e {
                    HubEvent::PlayerWaitExpired { player, .. } | HubEvent::PlayerOverflowed { player, .. } => {
                        prop_assert!(hub.stream_of_player(player).is_none());
                    }
                    HubEvent::StreamEnded { stream, players } => {
                        for id in players {
                            prop_assert_ne!(hub.stream_of_player(id).map(|k| k.as_str()), Some(stream.as_str()));
                        }
                    }
                    HubEvent::PlayerStarted { player, stream } => {
                        prop_assert_eq!(hub.stream_of_player(player).map(|k| k.as_str()), Some(stream.as_str()));
                    }
                    HubEvent::PlayerSkipped { player, .. } => {
                        prop_assert!(hub.stream_of_player(player).is_some());
                    }
                    HubEvent::PublisherResumed { stream, publisher } => {
                        prop_assert_eq!(hub.stream_of_publisher(publisher).map(|k| k.as_str()), Some(stream.as_str()));
                    }
                }
            }
            while hub.poll_ready().is_some() {}
            if let Err(e) = check_consistency(&hub) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

/// Fan-out cost of the hub alone: `cargo test -p rill-core --release hub_fanout_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn hub_fanout_cost() {
    const PLAYERS: u64 = 1000;
    const PACKETS: u32 = 20_000;
    let mut hub: Hub<Pkt> = Hub::new(HubConfig::default());
    hub.publish(&key(S), PUB, 0).unwrap();
    let mut src = Src::new();
    src.push(&mut hub, PUB, VC, 40);
    src.push(&mut hub, PUB, KEY, 20_000);
    // Ids as a worker assigns them: worker index above bit 40, tokens counting up.
    let ids: Vec<SessionId> = (0..PLAYERS).map(|i| (1 << 40) | (16 + i)).collect();
    for &id in &ids {
        hub.play(&key(S), id, 0);
    }
    let mut best = f64::MAX;
    for _round in 0..5 {
        let start = std::time::Instant::now();
        let mut delivered = 0u64;
        for i in 0..PACKETS {
            let kind = match i % 50 {
                0 => KEY,
                n if n % 3 == 0 => DELTA,
                _ => AUDIO,
            };
            src.push(&mut hub, PUB, kind, 400);
            while let Some(id) = hub.poll_ready() {
                while let Some(p) = hub.poll_packet(id) {
                    delivered += p.size as u64;
                }
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / (f64::from(PACKETS) * PLAYERS as f64);
        assert!(delivered > 0);
        best = best.min(ns);
    }
    println!("hub fan-out: {best:.1} ns per packet per player (best of 5)");
}
