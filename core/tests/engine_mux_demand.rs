//! Muxing only while consumed (issue 20 item 2), on the virtual clock with two engines: a
//! stream's MPEG-TS and fMP4 are muxed while HLS, LL-HLS, a player or a recording consumes
//! them, whichever engine the player sits on, and not otherwise (counted by
//! `rill_muxed_frames_total`).

mod common;

use common::*;
use rill_core::engine::{Listener, MuxedFrames};
use rill_core::sim::{ClientId, World};
use rill_core::ts::{TsDemuxer, VIDEO_PID};

/// Frames muxed over both engines.
fn muxed(w: &mut World) -> MuxedFrames {
    w.stats()
        .iter()
        .fold(MuxedFrames::default(), |a, s| MuxedFrames {
            ts: a.ts + s.muxed.ts,
            fmp4: a.fmp4 + s.muxed.fmp4,
        })
}

fn get(w: &mut World, engine: usize, path: &str) -> ClientId {
    let c = w.raw(engine, Listener::Http);
    w.send(
        c,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
    );
    w.run();
    c
}

/// Video PES packets in an HTTP-TS player's body; checks the body is valid TS.
fn video_pes(w: &World, player: ClientId) -> usize {
    let (head, body) = http_response(w, player);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body.first(), Some(&0x47), "TS from the first byte");
    let mut demuxer = TsDemuxer::new(1 << 20);
    demuxer.push(body).expect("valid TS");
    demuxer.flush().expect("valid TS");
    std::iter::from_fn(|| demuxer.poll_pes())
        .filter(|p| p.pid == VIDEO_PID)
        .count()
}

#[test]
fn with_hls_off_ts_and_fmp4_are_muxed_only_while_a_player_consumes_them() {
    let mut w = world("[hls]\nenable = false\n");
    let flv = flv_player(&mut w, 1, "s");
    let publisher = publisher(&mut w, 0, "s");
    send_configs(&mut w, publisher, 0);
    publish_live(&mut w, publisher, 0, 110, 0, true);
    assert_eq!(
        muxed(&mut w),
        MuxedFrames::default(),
        "an FLV player consumes neither"
    );

    // An HTTP-TS player on the other engine, in the middle of a group of pictures (frame 110).
    let ts = get(&mut w, 1, "/live/s.ts");
    publish_live(&mut w, publisher, 110, 200, 0, true);
    let m = muxed(&mut w);
    assert!(m.ts > 0, "TS is muxed for it");
    assert_eq!(m.fmp4, 0, "fMP4 still is not");
    // The muxer started at the next key frame (125): the cached frames before it had no TS.
    assert_eq!(video_pes(&w, ts), 75, "frames 125..200");

    // It leaves: TS stops at the engines' next sweep (within 2 s).
    w.hang_up(ts);
    publish_live(&mut w, publisher, 200, 275, 0, true);
    let stopped = muxed(&mut w);
    publish_live(&mut w, publisher, 275, 350, 0, true);
    assert_eq!(muxed(&mut w), stopped, "no TS once nobody consumes it");

    // An fMP4 player on the publisher's own engine: fMP4 from the next key frame, with its
    // init segment first.
    let mp4 = get(&mut w, 0, "/live/s.mp4");
    publish_live(&mut w, publisher, 350, 420, 0, true);
    let m = muxed(&mut w);
    assert!(m.fmp4 > 0 && m.ts == stopped.ts, "{m:?}");
    let (head, body) = http_response(&w, mp4);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body.get(4..8), Some(&b"ftyp"[..]), "the init segment first");
    assert!(body.windows(4).any(|b| b == b"moof"), "then fragments");

    // The FLV player got every frame throughout.
    let frames = video_tags(&flv_tags(&w, flv))
        .into_iter()
        .filter(|(_, b)| b.get(1) == Some(&1))
        .count();
    assert_eq!(frames, 420);
}

#[test]
fn hls_and_ll_hls_consume_every_stream() {
    let mut w = world("");
    let publisher = publisher(&mut w, 0, "s");
    send_configs(&mut w, publisher, 0);
    publish_live(&mut w, publisher, 0, 100, 0, true);
    let m = muxed(&mut w);
    // Every video and audio frame, once, on the publisher's engine only (fMP4 holds each
    // track's last sample until the next one tells its duration).
    assert_eq!((m.ts, m.fmp4), (200, 198), "{m:?}");
}
