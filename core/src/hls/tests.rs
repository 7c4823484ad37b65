use bytes::Bytes;
use m3u8_rs::{parse_media_playlist_res, MediaPlaylist};

use super::*;

fn key(path: &str) -> StreamKey {
    StreamKey::parse(path).expect("a valid test key")
}

fn cfg() -> HlsConfig {
    HlsConfig {
        fragment_ms: 2000,
        playlist_len: 3,
        ..HlsConfig::default()
    }
}

fn parse(b: &Bytes) -> MediaPlaylist {
    parse_media_playlist_res(b).expect("playlist parses")
}

/// Feeds `secs` seconds of 25 fps video with a key frame every second, starting at `t0`.
fn feed(h: &mut Hls, key: &str, t0: i64, secs: i64) {
    for i in 0..secs * 25 {
        let dts = t0 + i * 40;
        h.push(key, dts, &Bytes::from_static(&[0x47; 188]), i % 25 == 0);
    }
}

#[test]
fn live_playlist_slides_and_ends() {
    let mut h = Hls::new(cfg());
    h.start(&key("live/cam"), false);
    assert!(h.live_playlist("live/cam").is_none());
    feed(&mut h, "live/cam", 0, 3);
    let p = parse(&h.live_playlist("live/cam").unwrap());
    assert_eq!(p.media_sequence, 0);
    assert_eq!(p.segments.len(), 1);
    assert_eq!(p.segments[0].uri, "cam/0.ts");
    assert!((p.segments[0].duration - 2.0).abs() < 0.01);
    assert!(!p.end_list);
    feed(&mut h, "live/cam", 3000, 10);
    let p = parse(&h.live_playlist("live/cam").unwrap());
    assert_eq!(p.segments.len(), 3);
    assert_eq!(p.media_sequence, 3);
    assert_eq!(p.target_duration, 2);
    // Segments are served by number while held; each starts with the random access chunk.
    let seg = h.segment("live/cam", 4).unwrap();
    assert_eq!(seg.len(), 50);
    assert!(h.segment("live/cam", 99).is_none());
    h.end("live/cam", 1000);
    let p = parse(&h.live_playlist("live/cam").unwrap());
    assert!(p.end_list);
    assert_eq!(p.segments.len(), 3);
    let r = parse(&h.record_playlist("live/cam").unwrap());
    assert!(r.end_list);
    assert_eq!(r.media_sequence, 0);
    assert_eq!(r.segments.len(), 7); // 13 s: six of 2 s and the last of 1 s
    assert_eq!(r.segments[6].uri, "6.ts");
    assert!((r.segments[6].duration - 1.0).abs() < 0.01);
    // Forgotten after the linger time.
    assert_eq!(h.poll_timeout(), Some(61_000));
    h.handle_timeout(61_000);
    assert!(h.live_playlist("live/cam").is_none());
    assert_eq!(h.stream_count(), 0);
}

#[test]
fn reconnect_and_jumps_are_discontinuities() {
    let mut h = Hls::new(cfg());
    h.start(&key("a/b"), false);
    feed(&mut h, "a/b", 5000, 4);
    h.end("a/b", 0);
    // The publisher comes back with timestamps from zero.
    h.start(&key("a/b"), false);
    feed(&mut h, "a/b", 0, 4);
    // Then its clock jumps an hour ahead.
    feed(&mut h, "a/b", 3_600_000, 4);
    h.end("a/b", 0);
    let r = parse(&h.record_playlist("a/b").unwrap());
    let flags: Vec<bool> = r.segments.iter().map(|s| s.discontinuity).collect();
    assert_eq!(flags, vec![false, false, true, false, true, false]);
    // The live window (3) starts after one discontinuity left it.
    let text = h.live_playlist("a/b").unwrap();
    assert!(std::str::from_utf8(&text)
        .unwrap()
        .contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"));
    assert_eq!(parse(&text).discontinuity_sequence, 1);
}

#[test]
fn record_memory_is_bounded() {
    let mut h = Hls::new(HlsConfig {
        record_max_bytes: 188 * 100,
        ..cfg()
    });
    h.start(&key("a/b"), false);
    feed(&mut h, "a/b", 0, 41);
    // Each segment is 50 packets: the window (3) plus two more fit in the budget.
    let r = parse(&h.record_playlist("a/b").unwrap());
    assert_eq!(r.segments.len(), 5);
    assert_eq!(r.media_sequence, 15);
    assert!(h.segment("a/b", 14).is_none());
    assert!(h.segment("a/b", 15).is_some());
}

#[test]
fn files_and_cleanup() {
    for cleanup in [Cleanup::Never, Cleanup::StreamEnd, Cleanup::Window] {
        let mut h = Hls::new(HlsConfig {
            out_path: "/srv/hls/".into(),
            cleanup,
            ..cfg()
        });
        h.start(&key("a/b"), true);
        feed(&mut h, "a/b", 0, 13);
        h.end("a/b", 0);
        h.handle_timeout(u64::MAX);
        let mut writes = Vec::new();
        let mut removes = Vec::new();
        while let Some(o) = h.poll_output() {
            match o {
                HlsOutput::WriteFile { path, .. } => writes.push(path),
                HlsOutput::RemoveFile { path } => removes.push(path),
                HlsOutput::Segment(_) | HlsOutput::Share { .. } => {}
            }
        }
        assert!(writes.contains(&"/srv/hls/a/b/0.ts".to_string()));
        assert!(writes.contains(&"/srv/hls/a/b/6.ts".to_string()));
        assert!(writes.contains(&"/srv/hls/a/b.m3u8".to_string()));
        let record_written = writes.contains(&"/srv/hls/a/b/record.m3u8".to_string());
        assert_eq!(record_written, cleanup != Cleanup::Window, "{cleanup:?}");
        match cleanup {
            Cleanup::Never => assert!(removes.is_empty()),
            _ => {
                for seq in 0..7 {
                    let p = format!("/srv/hls/a/b/{seq}.ts");
                    assert_eq!(removes.iter().filter(|r| **r == p).count(), 1, "{p}");
                }
                assert!(removes.contains(&"/srv/hls/a/b.m3u8".to_string()));
            }
        }
    }
    // A stream seen from another worker writes nothing.
    let mut h = Hls::new(HlsConfig {
        out_path: "/srv".into(),
        ..cfg()
    });
    h.start(&key("a/b"), false);
    feed(&mut h, "a/b", 0, 5);
    assert!(h.poll_output().is_none());
}

#[test]
fn audio_only_cuts_on_time() {
    let mut h = Hls::new(cfg());
    h.start(&key("a/b"), false);
    // AAC at 23 ms per frame, a random access point every 500 ms as the muxer makes them.
    let mut last_rap = None;
    for i in 0..400i64 {
        let dts = i * 23;
        let rap = last_rap.is_none_or(|t| dts - t >= 500);
        if rap {
            last_rap = Some(dts);
        }
        h.push("a/b", dts, &Bytes::from_static(&[0x47; 188]), rap);
    }
    let p = parse(&h.live_playlist("a/b").unwrap());
    for s in &p.segments {
        assert!((2.0..2.6).contains(&s.duration), "{}", s.duration);
    }
}

/// Feeds 25 fps video of `key` with random access points at `raps` (ms), ending one frame
/// before the last one, so the segments are the intervals between them.
fn feed_raps(h: &mut Hls, key: &str, raps: &[i64]) {
    for pair in raps.windows(2) {
        let mut dts = pair[0];
        while dts < pair[1] {
            h.push(key, dts, &Bytes::from_static(&[0x47; 188]), dts == pair[0]);
            dts += 40;
        }
    }
}

/// Every playlist `h` serves or writes for `a/b`: one target duration that each segment's
/// duration, rounded to the nearest second, stays within (RFC 8216 4.3.3.1 and 6.2.1).
fn assert_one_target(h: &mut Hls, targets: &mut Vec<u64>) {
    let mut playlists = vec![
        h.live_playlist("a/b").unwrap(),
        h.record_playlist("a/b").unwrap(),
    ];
    while let Some(o) = h.poll_output() {
        if let HlsOutput::WriteFile { path, data } = o {
            if path.ends_with(".m3u8") {
                playlists.push(data.concat().into());
            }
        }
    }
    for p in playlists.iter().map(parse) {
        for s in &p.segments {
            let rounded = (f64::from(s.duration)).round() as u64;
            assert!(
                rounded <= p.target_duration,
                "{} s > {}",
                s.duration,
                p.target_duration
            );
        }
        targets.push(p.target_duration);
    }
    targets.dedup();
    assert_eq!(targets.len(), 1, "target duration changed: {targets:?}");
}

#[test]
fn target_duration_never_changes() {
    let mut h = Hls::new(HlsConfig {
        out_path: "/srv".into(),
        ..cfg()
    });
    h.start(&key("a/b"), true);
    // Segments of 2.0, 2.001, 2.4, 2.0, 2.499 and 2.0 s: each rounds to 2.
    let raps = [0, 2000, 4001, 6401, 8401, 10_900, 12_900];
    let mut targets = Vec::new();
    for end in 2..=raps.len() {
        feed_raps(&mut h, "a/b", &raps[end - 2..end]);
        if end > 2 {
            assert_one_target(&mut h, &mut targets);
        }
    }
    h.end("a/b", 0);
    assert_one_target(&mut h, &mut targets);
    assert_eq!(targets, [2]);
    let r = parse(&h.record_playlist("a/b").unwrap());
    let ms: Vec<u32> = r
        .segments
        .iter()
        .map(|s| (s.duration * 1000.0).round() as u32)
        .collect();
    assert_eq!(ms, [2000, 2001, 2400, 2000, 2499, 2000]);
}

#[test]
fn cuts_early_rather_than_outgrow_the_target() {
    let mut h = Hls::new(cfg());
    h.start(&key("a/b"), false);
    // Key frames every 2 s, then a scene cut 1.2 s into a segment restarts the encoder's
    // 2 s count: waiting for 2 s would make a segment of 3.2 s, so it is cut at the scene cut.
    let mut targets = Vec::new();
    feed_raps(
        &mut h,
        "a/b",
        &[0, 2000, 4000, 6000, 7200, 9200, 11_200, 13_200],
    );
    assert_one_target(&mut h, &mut targets);
    assert_eq!(targets, [2]);
    let r = parse(&h.record_playlist("a/b").unwrap());
    let ms: Vec<u32> = r
        .segments
        .iter()
        .map(|s| (s.duration * 1000.0).round() as u32)
        .collect();
    assert_eq!(ms, [2000, 2000, 2000, 1200, 2000, 2000]);
}

#[test]
fn sparse_key_frames_fix_a_longer_target() {
    let mut h = Hls::new(cfg());
    h.start(&key("a/b"), false);
    // Key frames every 3 s with 2 s fragments: the first segment sets a target of 3 that every
    // later one keeps, including after the publisher comes back with 2 s key frames.
    let mut targets = Vec::new();
    feed_raps(&mut h, "a/b", &[0, 3000, 6000, 9000, 12_000]);
    assert_one_target(&mut h, &mut targets);
    h.end("a/b", 0);
    h.start(&key("a/b"), false);
    feed_raps(&mut h, "a/b", &[0, 2000, 4000, 6000]);
    assert_one_target(&mut h, &mut targets);
    assert_eq!(targets, [3]);
}

/// fMP4 segments: a segment is a run of fragments from an independent one; the playlists are
/// version 7 with an `#EXT-X-MAP`, a new one (and a discontinuity) when the init changes.
#[test]
fn fmp4_segments_name_their_init_segment() {
    use crate::fmp4::Fragment;
    use crate::media::TrackKind;
    let mut h = Hls::new(HlsConfig {
        segment_format: SegmentFormat::Fmp4,
        ..cfg()
    });
    let k = key("live/cam");
    h.start(&k, false);
    let frag = |init: &Bytes, dts_ms: i64, independent: bool| Fragment {
        pieces: vec![Bytes::from_static(b"moof"), Bytes::from_static(b"mdat")],
        init: init.clone(),
        track: TrackKind::Video,
        independent,
        dts_ms,
        duration_ms: 40,
        sequence: 1,
    };
    // TS bytes are not for fMP4 segments.
    h.push("live/cam", 0, &Bytes::from_static(&[0x47; 188]), true);
    assert!(h.live_playlist("live/cam").is_none());
    let first = Bytes::from_static(b"init A");
    for i in 0..125 {
        h.push_fragment("live/cam", &frag(&first, i * 40, i % 25 == 0));
    }
    let text = h.live_playlist("live/cam").expect("playlist");
    let p = parse(&text);
    assert_eq!(p.version, Some(7));
    assert_eq!(p.segments[0].uri, "cam/0.m4s");
    let text = String::from_utf8_lossy(&text).into_owned();
    assert_eq!(text.matches("#EXT-X-MAP:URI=\"cam/init0.mp4\"").count(), 1);
    // Segments of a stream not published here stay the fragments' pieces until adopted.
    assert_eq!(h.segment("live/cam", 0).map(|s| s.len()), Some(100));
    assert_eq!(h.init_segment("live/cam", 0), Some(first.clone()));
    // The tracks changed: a new init segment, after a discontinuity; fragments before the
    // first independent one of the new init are left out.
    let second = Bytes::from_static(b"init B");
    h.push_fragment("live/cam", &frag(&second, 0, false));
    for i in 0..60 {
        h.push_fragment("live/cam", &frag(&second, 40 + i * 40, i % 25 == 0));
    }
    h.end("live/cam", 10_000);
    let text = h.record_playlist("live/cam").expect("record");
    let r = parse(&text);
    assert!(r.end_list);
    let text = String::from_utf8_lossy(&text).into_owned();
    let map_b = text
        .find("#EXT-X-MAP:URI=\"init1.mp4\"")
        .expect("second map");
    let disc = text.find("#EXT-X-DISCONTINUITY").expect("discontinuity");
    assert!(disc < map_b, "{text}");
    assert_eq!(h.init_segment("live/cam", 1), Some(second));
    let last = r.segments.last().expect("segments");
    assert_eq!(
        h.segment(
            "live/cam",
            last.uri.trim_end_matches(".m4s").parse().unwrap()
        )
        .map(|s| s.len()),
        Some(2 * 10),
        "the last segment: ten fragments from the last independent one"
    );
}

/// The engine that owns the publisher serves a closed segment as one contiguous buffer with the
/// bytes of its frames in order, and shares it; another engine that cut the same segment from
/// the same packets adopts that buffer in place of its pieces, and refuses other bytes.
#[test]
fn closed_segment_is_one_shared_buffer() {
    let k = key("live/cam");
    let mut owner = Hls::new(cfg());
    let mut other = Hls::new(cfg());
    owner.start(&k, true);
    other.start(&k, false);
    let mut expected = Vec::new();
    for i in 0..75i64 {
        // Frames of different sizes and contents, so order and boundaries matter.
        let frame = Bytes::from(vec![i as u8; 188 * (1 + (i as usize % 3))]);
        if i < 50 {
            expected.extend_from_slice(&frame);
        }
        owner.push("live/cam", i * 40, &frame, i % 25 == 0);
        other.push("live/cam", i * 40, &frame, i % 25 == 0);
    }
    // Segment 0 (frames 0..50) closed at the key frame of 2 s.
    let joined = owner.segment("live/cam", 0).expect("held");
    assert_eq!(joined.len(), 1, "one contiguous buffer");
    assert_eq!(joined[0], expected);
    let shared = std::iter::from_fn(|| owner.poll_output())
        .find_map(|o| match o {
            HlsOutput::Share { key, seq, data } => Some((key, seq, data)),
            _ => None,
        })
        .expect("the joined segment is shared");
    assert_eq!((shared.0.as_str(), shared.1), ("live/cam", 0));
    assert_eq!(
        shared.2.as_ptr(),
        joined[0].as_ptr(),
        "the same buffer, not a copy"
    );
    assert!(
        std::iter::from_fn(|| other.poll_output()).all(|o| !matches!(o, HlsOutput::Share { .. }))
    );

    let pieces = other.segment("live/cam", 0).expect("held");
    assert_eq!(pieces.len(), 50);
    assert_eq!(pieces.concat(), expected);
    // Other bytes of the same length, or another number, are not taken.
    let mut wrong = expected.clone();
    wrong[100] ^= 1;
    assert!(!other.adopt_segment("live/cam", 0, Bytes::from(wrong)));
    assert!(!other.adopt_segment("live/cam", 1, shared.2.clone()));
    assert!(other.adopt_segment("live/cam", 0, shared.2.clone()));
    let adopted = other.segment("live/cam", 0).expect("held");
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].as_ptr(), joined[0].as_ptr());
    // The segment still being cut is not adopted early.
    assert!(!other.adopt_segment("live/cam", 1, Bytes::from(vec![0; 188])));
}

/// fMP4 segments are joined the same way (the init segment stays apart).
#[test]
fn closed_fmp4_segment_is_one_buffer() {
    use crate::media::TrackKind;
    let mut h = Hls::new(HlsConfig {
        segment_format: SegmentFormat::Fmp4,
        ..cfg()
    });
    h.start(&key("live/cam"), true);
    let init = Bytes::from_static(b"init");
    let mut expected = Vec::new();
    for i in 0..75i64 {
        let pieces = vec![
            Bytes::from(format!("moof{i}")),
            Bytes::from(format!("mdat{i}")),
        ];
        if i < 50 {
            expected.extend(pieces.iter().flat_map(|p| p.to_vec()));
        }
        let f = Fragment {
            pieces,
            init: init.clone(),
            track: TrackKind::Video,
            independent: i % 25 == 0,
            dts_ms: i * 40,
            duration_ms: 40,
            sequence: 1,
        };
        h.push_fragment("live/cam", &f);
    }
    assert_eq!(h.segment("live/cam", 0), Some(vec![Bytes::from(expected)]));
    assert_eq!(h.init_segment("live/cam", 0), Some(init));
}
