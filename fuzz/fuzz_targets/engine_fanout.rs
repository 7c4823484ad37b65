//! The engine with a live stream and players of every output: a real RTMP publish (the media of
//! tests/dumps/rtmp_publish.rilldump through a client session) and an HTTP-FLV player that must
//! receive its configurations and key frame, then fuzzed steps: players attaching with valid
//! requests (HTTP-FLV, WS-FLV, HTTP-TS, WS-TS, HLS playlists and segments, RTMP, RTSP) on either
//! of two engines sharing their streams, publishers coming, sending media and leaving, arbitrary
//! bytes, closes, time and transmit polls with budgets; odd-length inputs let a new publisher
//! kick the live one. See [`rill_fuzz::engine`] for the checks
//! after every step and at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_core::engine::PublishConflict;
use rill_fuzz::engine::{Harness, Op, PlayKind};

fuzz_target!(|ops: Vec<Op>| {
    // Odd-length inputs run with takeover: a later publisher kicks the live one.
    let conflict = if ops.len() % 2 == 1 {
        PublishConflict::Kick
    } else {
        PublishConflict::Reject
    };
    let mut h = Harness::with_publish_conflict(conflict);
    let publisher = h.publish(0, 0).expect("room for the publisher");
    assert!(h.publishing(publisher), "the prelude's publish was refused");
    h.send_prelude(publisher);
    let observer = h
        .play(PlayKind::HttpFlv, 0, 0, false, 64 * 1024)
        .expect("room for the observer");
    let (video_configs, audio_configs, key_frames, _) =
        h.flv_received(observer).expect("the observer streams FLV");
    assert!(
        video_configs >= 1 && audio_configs >= 1 && key_frames >= 1,
        "the observer got {video_configs} video and {audio_configs} audio configs, {key_frames} key frames"
    );
    h.check();
    for op in ops.into_iter().take(128) {
        h.step(op);
    }
    h.finish();
});
