//! HLS memory on the virtual clock (issue 21 item 2): after a churn of many streams, what HLS
//! holds goes back to the live streams' windows once `keep_after_end_ms` has passed, and a
//! total budget (`memory_max_bytes`) is kept by forgetting ended streams first, then old
//! record segments, never a live window.

mod common;

use common::*;
use rill_core::hls::HlsMemory;
use rill_core::sim::{ClientId, World};

/// The largest engine's figures (every engine holds the same shared segments).
fn memory(w: &mut World) -> HlsMemory {
    w.stats()
        .iter()
        .fold(HlsMemory::default(), |a, s| a.max(&s.hls))
}

fn total(m: &HlsMemory) -> u64 {
    m.live + m.record + m.ended + m.ll
}

/// `publishers` each send `ms` of 25 fps media (key frame every second) from `from_ms`, in
/// real time, all at once.
fn publish_for(w: &mut World, publishers: &[ClientId], from_ms: u32, ms: u32) {
    for step in 0..ms / 40 {
        for &p in publishers {
            let frame = stream(from_ms + step * 40, 1, 1);
            let mut frame = frame;
            if step % 25 != 0 {
                frame[0].2 = video(false, 0x41, 200);
            }
            send(w, p, &frame);
        }
        w.advance(40);
    }
}

#[test]
fn after_a_churn_of_streams_hls_memory_returns_to_the_live_windows_once_the_keep_time_passed() {
    // No record segments and short windows: what a live stream holds is small and fixed.
    let mut w = world(
        "[hls]\nkeep_after_end_ms = 10000\nplaylist_len = 3\nrecord_max_bytes = 0\n\
         ll_playlist_len = 3\nll_on_demand = false\n",
    );
    let long = publisher(&mut w, 0, "long");
    send_configs(&mut w, long, 0);
    let mut peak = 0;
    // Five waves of eight streams, each published 6 s then gone; the long-lived stream stays.
    for wave in 0..5u32 {
        let churn: Vec<ClientId> = (0..8)
            .map(|i| {
                let p = publisher(&mut w, (i % 2) as usize, &format!("c{wave}-{i}"));
                send_configs(&mut w, p, 0);
                p
            })
            .collect();
        let mut all = churn.clone();
        all.push(long);
        publish_for(&mut w, &all, wave * 6_000, 6_000);
        peak = peak.max(total(&memory(&mut w)));
        for p in churn {
            w.hang_up(p);
        }
        w.run();
    }
    let right_after = memory(&mut w);
    assert!(
        right_after.ended > 0,
        "ended streams are kept for a while: {right_after:?}"
    );
    // The keep time passes while the long-lived stream goes on.
    publish_for(&mut w, &[long], 30_000, 11_000);
    let after = memory(&mut w);
    assert_eq!(after.ended, 0, "every ended stream forgotten: {after:?}");
    // What is left is the long-lived stream's windows, a small part of the peak.
    assert!(after.live > 0 && after.ll > 0, "{after:?}");
    assert!(
        total(&after) * 5 < peak,
        "after {} bytes of {peak} at the peak: {after:?}",
        total(&after)
    );
    assert_eq!(
        w.engine(0).hls().stream_count(),
        1,
        "only the live stream is known"
    );
}

#[test]
fn the_budget_forgets_ended_streams_first_then_old_record_segments_never_live_windows() {
    // A budget of 150 kB; each stream holds about 14.5 kB a second.
    let mut w = world(
        "[hls]\nmemory_max_bytes = 150000\nkeep_after_end_ms = 600000\nplaylist_len = 3\n\
         ll_enable = false\n",
    );
    let ended: Vec<ClientId> = (0..4)
        .map(|i| {
            let p = publisher(&mut w, 0, &format!("gone{i}"));
            send_configs(&mut w, p, 0);
            p
        })
        .collect();
    publish_for(&mut w, &ended, 0, 2_000);
    for &p in &ended {
        w.hang_up(p);
    }
    w.run();
    let before = memory(&mut w);
    assert!(
        before.ended > 0 && before.evicted_streams == 0,
        "{before:?}"
    );

    let live = publisher(&mut w, 0, "live");
    send_configs(&mut w, live, 0);
    publish_for(&mut w, &[live], 2_000, 30_000);
    assert!(publishing(&w, live));
    let m = memory(&mut w);
    assert_eq!(m.ended, 0, "ended streams went first: {m:?}");
    assert_eq!(m.evicted_streams, 4);
    assert!(m.evicted_segments > 0, "then old record segments: {m:?}");
    // Checked as each segment closes: the budget, plus the one segment being cut (2 s).
    assert!(total(&m) <= 150_000 + 30_000, "within the budget: {m:?}");
    assert!(
        m.record > 0,
        "only as many record segments as needed went: {m:?}"
    );
    // The live window is whole: the live playlist lists playlist_len segments, all served.
    let player = w.raw(0, rill_core::engine::Listener::Http);
    w.send(player, b"GET /live/live.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n");
    w.run();
    let (head, body) = http_response(&w, player);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body = String::from_utf8_lossy(body);
    assert_eq!(body.matches("#EXTINF").count(), 3, "{body}");
}

#[test]
fn a_closed_segment_is_joined_once_and_every_worker_serves_that_one_buffer() {
    let mut w = world("");
    let p = publisher(&mut w, 0, "cam");
    send_configs(&mut w, p, 0);
    publish_for(&mut w, &[p], 0, 5_000);
    w.run();
    let mine = w.engine(0).hls().segment("live/cam", 0).expect("held");
    let theirs = w.engine(1).hls().segment("live/cam", 0).expect("held");
    assert_eq!(mine.len(), 1, "one contiguous buffer");
    assert_eq!(theirs.len(), 1, "the publisher's engine's buffer, adopted");
    assert_eq!(mine[0].as_ptr(), theirs[0].as_ptr(), "shared, not copied");
    assert!(mine[0].len() > 25 * 188, "{} bytes", mine[0].len());
    assert_eq!(mine[0][0], 0x47, "TS");
}
