use bytes::Bytes;

use super::*;

fn key(path: &str) -> StreamKey {
    StreamKey::parse(path).expect("a valid test key")
}

fn window() -> LlHls {
    let mut ll = LlHls::new(LlConfig {
        enable: true,
        part_ms: 300,
        segment_ms: 1000,
        playlist_len: 10,
        keep_after_end_ms: 60_000,
    });
    ll.start(&key("live/cam"), 1_000_000);
    ll
}

const INIT: Bytes = Bytes::from_static(b"init");

/// Feeds frames `from..to` of 25 fps video with a key frame every second (frame `i` at
/// `i * 40` ms, its fragment the frame number as text).
fn feed(ll: &mut LlHls, from: i64, to: i64) {
    for i in from..to {
        let dts = i * 40;
        let frame = [Bytes::from(i.to_string())];
        ll.push("live/cam", dts, &frame, i % 25 == 0, &INIT);
    }
}

/// A playlist's lines as (tag, attributes) for the `#EXT` ones.
fn tags(p: &Bytes) -> Vec<(String, String)> {
    std::str::from_utf8(p)
        .unwrap()
        .lines()
        .map(|l| match l.split_once(':') {
            Some((t, a)) => (t.to_owned(), a.to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect()
}

fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    attrs.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

fn secs(v: &str) -> f64 {
    v.parse().unwrap()
}

#[test]
fn playlist_follows_the_spec() {
    let mut ll = window();
    assert!(
        ll.playlist("live/cam", false).is_none(),
        "no playlist before a segment"
    );
    feed(&mut ll, 0, 100); // 4 s: segments 0..=2 closed, 3 open
    let p = ll.playlist("live/cam", false).unwrap();
    let t = tags(&p);
    let get = |name: &str| t.iter().find(|(n, _)| n == name).map(|(_, a)| a.as_str());
    assert_eq!(get("#EXT-X-TARGETDURATION"), Some("1"));
    let part_target = secs(attr(get("#EXT-X-PART-INF").unwrap(), "PART-TARGET").unwrap());
    assert_eq!(part_target, 0.3);
    let control = get("#EXT-X-SERVER-CONTROL").unwrap();
    assert_eq!(attr(control, "CAN-BLOCK-RELOAD"), Some("YES"));
    assert!(secs(attr(control, "PART-HOLD-BACK").unwrap()) >= 2.0 * part_target);
    assert!(secs(attr(control, "CAN-SKIP-UNTIL").unwrap()) >= 6.0);
    assert_eq!(get("#EXT-X-MEDIA-SEQUENCE"), Some("0"));
    assert_eq!(get("#EXT-X-MAP"), Some("URI=\"ll/init0.mp4\""));
    // Program date-time: the start's wall clock plus the media time.
    let dates: Vec<&str> = t
        .iter()
        .filter(|(n, _)| n == "#EXT-X-PROGRAM-DATE-TIME")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(dates[1], "1970-01-01T00:16:41.000Z");
    // Parts: within the target, numbered from 0 in each segment, the first independent, and
    // the segment's parts add up to its EXTINF.
    let mut msn = 0;
    let mut expected_part = 0;
    let mut sum = 0.0;
    let mut uris = Vec::new();
    for (tag, a) in &t {
        match tag.as_str() {
            "#EXT-X-PART" => {
                let d = secs(attr(a, "DURATION").unwrap());
                assert!(d <= part_target + 1e-9, "{a}");
                assert!(d > 0.0);
                let uri = attr(a, "URI").unwrap();
                assert_eq!(uri, format!("ll/{msn}.{expected_part}.m4s"));
                assert_eq!(
                    attr(a, "INDEPENDENT") == Some("YES"),
                    expected_part == 0,
                    "{a}"
                );
                expected_part += 1;
                sum += d;
                uris.push(uri.to_owned());
            }
            "#EXTINF" => {
                let d = secs(a.trim_end_matches(','));
                assert!((d - sum).abs() < 1e-6, "segment {msn}: {d} vs parts {sum}");
                assert!((d - 1.0).abs() < 1e-6);
                msn += 1;
                expected_part = 0;
                sum = 0.0;
            }
            "#EXT-X-PRELOAD-HINT" => {
                assert_eq!(attr(a, "TYPE"), Some("PART"));
                // The next part: the one after the last listed.
                assert_eq!(
                    attr(a, "URI").unwrap(),
                    format!("ll/{msn}.{expected_part}.m4s")
                );
            }
            _ => {}
        }
    }
    assert_eq!(msn, 3);
    assert_eq!(
        expected_part, 4,
        "1 s open: four parts of 0.24 s done, the fifth building"
    );
    // Every listed part is served, in order, with its frames; segments are their parts.
    let frames: Vec<Bytes> = uris
        .iter()
        .filter_map(|u| {
            let (m, n) = u
                .strip_prefix("ll/")?
                .strip_suffix(".m4s")?
                .split_once('.')?;
            match ll.part("live/cam", m.parse().ok()?, n.parse().ok()?, 1, 0) {
                PartAnswer::Found(p) => Some(p),
                other => panic!("{u}: {other:?}"),
            }
        })
        .flatten()
        .collect();
    assert_eq!(frames.first().map(|b| b.as_ref()), Some(&b"0"[..]));
    assert_eq!(frames.len(), 25 * 3 + 24);
    assert_eq!(ll.segment("live/cam", 1).unwrap().len(), 25);
    assert_eq!(ll.segment("live/cam", 1).unwrap()[0], Bytes::from("25"));
    assert!(ll.segment("live/cam", 3).is_none(), "open");
    assert_eq!(ll.init("live/cam", 0), Some(Bytes::from_static(b"init")));
}

#[test]
fn window_slides_and_numbers_go_on() {
    let mut ll = window();
    feed(&mut ll, 0, 25 * 15);
    let p = ll.playlist("live/cam", false).unwrap();
    let t = tags(&p);
    let seq = t
        .iter()
        .find(|(n, _)| n == "#EXT-X-MEDIA-SEQUENCE")
        .unwrap();
    assert_eq!(seq.1, "4", "ten segments of 14 closed");
    assert_eq!(t.iter().filter(|(n, _)| n == "#EXTINF").count(), 10);
    // Parts only for the last three target durations.
    let first_part = t.iter().find(|(n, _)| n == "#EXT-X-PART").unwrap();
    assert!(
        first_part.1.contains("URI=\"ll/11.0.m4s\""),
        "{first_part:?}"
    );
    assert!(ll.segment("live/cam", 3).is_none(), "left the window");
    assert_eq!(ll.part("live/cam", 3, 0, 1, 0), PartAnswer::NotFound);
}

#[test]
fn delta_update_skips_old_segments() {
    let mut ll = window();
    feed(&mut ll, 0, 25 * 12 + 5);
    let full = tags(&ll.playlist("live/cam", false).unwrap());
    let delta = tags(&ll.playlist("live/cam", true).unwrap());
    let skip = delta.iter().find(|(n, _)| n == "#EXT-X-SKIP").unwrap();
    // 12 closed (2..=11 listed), open 0.2 s: segments ending 6 s or more before the end go.
    assert_eq!(skip.1, "SKIPPED-SEGMENTS=4");
    let n = |t: &[(String, String)]| t.iter().filter(|(n, _)| n == "#EXTINF").count();
    assert_eq!(n(&full), 10);
    assert_eq!(n(&delta), 6);
    assert!(full.iter().all(|(n, _)| n != "#EXT-X-SKIP"));
    // Same media sequence: the skipped segments are the first ones.
    let seq = |t: &[(String, String)]| {
        t.iter()
            .find(|(n, _)| n == "#EXT-X-MEDIA-SEQUENCE")
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(seq(&full), seq(&delta));
    assert!(delta.iter().any(|(n, _)| n == "#EXT-X-MAP"));
}

#[test]
fn blocking_reload_is_held_until_the_part_exists() {
    let mut ll = window();
    feed(&mut ll, 0, 30); // segment 0 closed; 1 open with frames 25..30 building part 0
    assert_eq!(ll.block("live/cam", Some(0), None, 7, 0), Blocking::Ready);
    assert_eq!(
        ll.block("live/cam", Some(1), Some(0), 7, 100),
        Blocking::Held
    );
    assert_eq!(ll.block("live/cam", Some(1), None, 8, 100), Blocking::Held);
    assert_eq!(ll.held_count(), 2);
    assert_eq!(ll.poll_ready(), None);
    feed(&mut ll, 30, 31);
    assert_eq!(ll.poll_ready(), None, "part 1.0 not complete yet");
    feed(&mut ll, 31, 32); // frame 31 at 1.24 s: part 1.0 (1.0..1.24) completes
    assert_eq!(ll.poll_ready(), Some(7));
    assert_eq!(ll.poll_ready(), None);
    let p = ll.playlist("live/cam", false).unwrap();
    assert!(std::str::from_utf8(&p)
        .unwrap()
        .contains("URI=\"ll/1.0.m4s\""));
    // The part after the last one of segment 1 (four parts of 0.24 s and one of 0.04 s).
    feed(&mut ll, 32, 50);
    assert_eq!(
        ll.block("live/cam", Some(1), Some(5), 10, 1960),
        Blocking::Held
    );
    feed(&mut ll, 50, 51);
    assert_eq!(
        ll.poll_ready(),
        Some(8),
        "segment 1 closes at the key frame at 2 s"
    );
    assert_eq!(ll.poll_ready(), None, "1.5 now waits for 2.0");
    assert_eq!(
        ll.block("live/cam", Some(1), Some(5), 11, 2040),
        Blocking::Held
    );
    // A request for the part being built (the preload hint) is held too, then found.
    let p = std::str::from_utf8(&ll.playlist("live/cam", false).unwrap())
        .unwrap()
        .to_owned();
    assert!(
        p.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"ll/2.0.m4s\""),
        "{p}"
    );
    assert_eq!(ll.part("live/cam", 2, 0, 9, 2000), PartAnswer::Held);
    feed(&mut ll, 51, 56);
    assert_eq!(ll.poll_ready(), None);
    feed(&mut ll, 56, 57);
    let mut released: Vec<u64> = std::iter::from_fn(|| ll.poll_ready()).collect();
    released.sort_unstable();
    assert_eq!(released, vec![9, 10, 11]);
    assert!(matches!(ll.part("live/cam", 2, 0, 9, 2000), PartAnswer::Found(p) if p.len() == 6));
    assert_eq!(ll.held_count(), 0);
}

#[test]
fn far_ahead_is_bad_request_and_held_requests_time_out() {
    let mut ll = window();
    feed(&mut ll, 0, 30);
    // Last segment 0: msn 3 is more than two ahead.
    assert_eq!(
        ll.block("live/cam", Some(3), None, 1, 0),
        Blocking::BadRequest
    );
    assert_eq!(ll.block("live/cam", Some(2), None, 1, 0), Blocking::Held);
    // Part far beyond the last part of the open segment.
    assert_eq!(
        ll.block("live/cam", Some(1), Some(9), 2, 0),
        Blocking::BadRequest
    );
    assert_eq!(
        ll.block("live/cam", Some(2), Some(4), 2, 0),
        Blocking::BadRequest
    );
    assert_eq!(
        ll.block("live/cam", None, Some(0), 2, 0),
        Blocking::BadRequest
    );
    assert_eq!(
        ll.block("live/none", Some(0), None, 2, 0),
        Blocking::NotFound
    );
    // The held one is released after three part targets, without the stream moving.
    assert_eq!(ll.poll_timeout(), Some(900));
    ll.handle_timeout(899);
    assert_eq!(ll.poll_ready(), None);
    ll.handle_timeout(900);
    assert_eq!(ll.poll_ready(), Some(1));
    assert_eq!(ll.held_count(), 0);
    assert_eq!(ll.poll_timeout(), None);
}

#[test]
fn thousands_of_held_requests_are_released_by_one_part() {
    let mut ll = window();
    feed(&mut ll, 0, 30);
    for w in 0..5000 {
        assert_eq!(ll.block("live/cam", Some(1), Some(0), w, 0), Blocking::Held);
    }
    // A cancelled one (its connection closed) is not released.
    ll.cancel(17);
    feed(&mut ll, 30, 33);
    let released: Vec<u64> = std::iter::from_fn(|| ll.poll_ready()).collect();
    assert_eq!(released.len(), 4999);
    assert!(!released.contains(&17));
    ll.handle_timeout(10_000);
    assert_eq!(
        ll.poll_ready(),
        None,
        "released requests do not time out again"
    );
}

#[test]
fn reconnect_is_a_discontinuity_and_the_end_an_endlist() {
    let mut ll = window();
    feed(&mut ll, 0, 60);
    assert_eq!(ll.block("live/cam", Some(2), Some(2), 5, 0), Blocking::Held);
    ll.end("live/cam", 5000);
    assert_eq!(
        ll.poll_ready(),
        Some(5),
        "held requests are answered at the end"
    );
    let p = std::str::from_utf8(&ll.playlist("live/cam", false).unwrap())
        .unwrap()
        .to_owned();
    assert!(p.ends_with("#EXT-X-ENDLIST\n"), "{p}");
    assert!(!p.contains("PRELOAD-HINT"), "{p}");
    assert!(p.contains("ll/2.m4s"), "the last segment closed: {p}");
    // A new publisher, timestamps from 0 again, another init.
    ll.start(&key("live/cam"), 2_000_000);
    for i in 0..30 {
        let frame = [Bytes::from(i.to_string())];
        ll.push(
            "live/cam",
            i * 40,
            &frame,
            i % 25 == 0,
            &Bytes::from_static(b"init2"),
        );
    }
    let p = std::str::from_utf8(&ll.playlist("live/cam", false).unwrap())
        .unwrap()
        .to_owned();
    assert!(!p.contains("ENDLIST"), "{p}");
    let after = p.split("ll/2.m4s\n").nth(1).unwrap();
    assert!(
        after.starts_with(
            "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"ll/init1.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:33:20.000Z\n"
        ),
        "{after}"
    );
    assert!(after.contains("ll/3.m4s"), "{after}");
    assert_eq!(ll.init("live/cam", 1), Some(Bytes::from_static(b"init2")));
    assert_eq!(
        ll.init("live/cam", 0),
        Some(Bytes::from_static(b"init")),
        "still referenced"
    );
    ll.end("live/cam", 9000);
    ll.handle_timeout(9000 + 60_000);
    assert!(
        ll.playlist("live/cam", false).is_none(),
        "forgotten after the linger"
    );
}

#[test]
fn irregular_timestamps_keep_parts_within_the_target() {
    let mut ll = window();
    // 30 fps audio+video interleaved with jitter: video every 33/34 ms, audio every 23 ms.
    let mut frames: Vec<(i64, bool)> = Vec::new();
    for i in 0..300i64 {
        frames.push((i * 100 / 3, i % 30 == 0));
    }
    for i in 0..420i64 {
        frames.push((i * 23 + 5, false));
    }
    frames.sort_by_key(|f| f.0);
    for (dts, rap) in frames {
        ll.push("live/cam", dts, &[Bytes::from_static(b"f")], rap, &INIT);
    }
    let p = ll.playlist("live/cam", false).unwrap();
    let t = tags(&p);
    let mut parts = 0;
    for (i, (tag, a)) in t.iter().enumerate() {
        if tag == "#EXT-X-PART" {
            parts += 1;
            let d = secs(attr(a, "DURATION").unwrap());
            assert!(d <= 0.3, "{a}\n{}", std::str::from_utf8(&p).unwrap());
            // Only the last part of a segment may be cut short by the next key frame.
            if t.get(i + 1).is_some_and(|(n, _)| n == "#EXT-X-PART") {
                assert!(d >= 0.18, "{a}");
            }
        }
    }
    assert!(parts >= 9, "{parts}");
}
