//! Low-Latency HLS through the engines on the virtual clock: the playlist against the spec's
//! rules, blocking playlist reload (held until the part exists, answered in the same step, 400
//! far ahead, released after its bound), the preload-hinted part, served parts that decode,
//! discontinuities and the end of the stream, on the publisher's engine and on another one.

mod common;

use bytes::Bytes;
use common::*;
use rill_core::config::Config;
use rill_core::engine::Listener;
use rill_core::fmp4::demux::demux;
use rill_core::fmp4::VIDEO_TRACK_ID;
use rill_core::hls::ll::FIRST_SEGMENT_HOLD_MS;
use rill_core::rtmp::message_type;
use rill_core::sim::{ClientId, World};

const PART_MS: u64 = 300;

fn world() -> World {
    world_with("")
}

/// Two engines with LL-HLS parts of `PART_MS` for every stream from its start (not on
/// demand) and `extra` in `[hls]`.
fn world_with(extra: &str) -> World {
    world_from(&format!("ll_on_demand = false\n{extra}"))
}

/// Two engines with LL-HLS parts of `PART_MS` and `hls` in `[hls]`.
fn world_from(hls: &str) -> World {
    let config = Config::from_toml(&format!(
        "[hls]\nfragment_ms = 1000\nll_part_ms = {PART_MS}\n{hls}"
    ))
    .expect("valid config")
    .engine_config();
    World::new(2, config)
}

/// A GET of `path` on `engine` on a connection of its own (not run yet).
fn get(w: &mut World, engine: usize, path: &str) -> ClientId {
    let c = w.raw(engine, Listener::Http);
    w.send(
        c,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
    );
    c
}

/// The status line and body of the answer to `c`, if it came whole.
fn answer(w: &World, c: ClientId) -> Option<(String, Vec<u8>)> {
    let got = w.received(c);
    let end = got.windows(4).position(|x| x == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))?
        .parse()
        .ok()?;
    let body = got.get(end + 4..end + 4 + len)?.to_vec();
    Some((head.lines().next()?.to_owned(), body))
}

fn fetch(w: &mut World, engine: usize, path: &str) -> (String, Vec<u8>) {
    let c = get(w, engine, path);
    w.run();
    answer(w, c).unwrap_or_else(|| panic!("{path}: no whole answer"))
}

fn playlist(w: &mut World, engine: usize) -> String {
    let (status, body) = fetch(w, engine, "/live/s/llhls.m3u8");
    assert!(status.contains(" 200 "), "{status}");
    String::from_utf8(body).unwrap()
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let attrs = line.split_once(':')?.1;
    attrs.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

/// (msn, part) of a part URI `ll/{msn}.{part}.m4s`.
fn part_of(uri: &str) -> (u64, u64) {
    let (m, p) = uri
        .strip_prefix("ll/")
        .and_then(|u| u.strip_suffix(".m4s"))
        .and_then(|u| u.split_once('.'))
        .expect("a part URI");
    (m.parse().unwrap(), p.parse().unwrap())
}

fn hint(p: &str) -> (u64, u64) {
    let line = p
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .expect("a preload hint");
    assert_eq!(attr(line, "TYPE"), Some("PART"));
    part_of(attr(line, "URI").unwrap())
}

/// Checks a playlist against the spec's rules for parts; returns the parts listed.
fn check_playlist(p: &str) -> Vec<(u64, u64)> {
    let target: f64 = p
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
        .expect("EXT-X-PART-INF")
        .parse()
        .unwrap();
    assert_eq!(target, PART_MS as f64 / 1000.0);
    let control = p
        .lines()
        .find(|l| l.starts_with("#EXT-X-SERVER-CONTROL:"))
        .expect("EXT-X-SERVER-CONTROL");
    assert_eq!(attr(control, "CAN-BLOCK-RELOAD"), Some("YES"));
    let hold_back: f64 = attr(control, "PART-HOLD-BACK").unwrap().parse().unwrap();
    assert!(hold_back >= 2.0 * target, "{control}");
    assert!(p.contains("#EXT-X-MAP:URI=\"ll/init0.mp4\""), "{p}");
    let mut msn: u64 = p
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    let mut parts = Vec::new();
    let mut next_part = 0;
    for line in p.lines() {
        if line.starts_with("#EXT-X-PART:") {
            let d: f64 = attr(line, "DURATION").unwrap().parse().unwrap();
            assert!(d > 0.0 && d <= target, "{line}");
            let (m, n) = part_of(attr(line, "URI").unwrap());
            if m != msn {
                // Parts of older segments may be left out; numbering restarts per segment.
                assert!(m > msn, "{line}");
                msn = m;
            }
            assert_eq!(n, next_part, "{line}");
            assert_eq!(attr(line, "INDEPENDENT") == Some("YES"), n == 0, "{line}");
            next_part += 1;
            parts.push((m, n));
        } else if line.starts_with("ll/") && !line.contains(".m4s\"") {
            assert_eq!(line, format!("ll/{msn}.m4s"));
            msn += 1;
            next_part = 0;
        }
    }
    // The hint names the part after the last one listed.
    assert_eq!(hint(p), (msn, next_part), "{p}");
    parts
}

#[test]
fn playlist_parts_and_blocking_reload_on_both_engines() {
    let mut w = world();
    let publisher = publisher(&mut w, 0, "s");
    send_configs(&mut w, publisher, 0);
    publish_live(&mut w, publisher, 0, 90, 0, true);
    for engine in [0, 1] {
        let p = playlist(&mut w, engine);
        let parts = check_playlist(&p);
        assert!(parts.len() >= 8, "{p}");
        // Init, parts and segments are served, and parse as fMP4 with the frames sent.
        let (status, init) = fetch(&mut w, engine, "/live/s/ll/init0.mp4");
        assert!(status.contains(" 200 "), "{status}");
        let mut samples = 0;
        let mut media = init.clone();
        for (m, n) in &parts {
            let (status, part) = fetch(&mut w, engine, &format!("/live/s/ll/{m}.{n}.m4s"));
            assert!(status.contains(" 200 "), "{status}");
            media.extend_from_slice(&part);
        }
        let (status, seg) = fetch(&mut w, engine, "/live/s/ll/1.m4s");
        assert!(status.contains(" 200 "), "{status}");
        samples += demux(&Bytes::from(media))
            .expect("parts parse as fMP4")
            .samples
            .len();
        // Each part holds video and audio samples.
        assert!(samples >= parts.len() * 2, "{samples}");
        let mut whole = init.clone();
        whole.extend_from_slice(&seg);
        let d = demux(&Bytes::from(whole)).expect("a segment parses as fMP4");
        let video = d
            .samples
            .iter()
            .filter(|s| s.track_id == VIDEO_TRACK_ID)
            .count();
        assert!(d.samples[0].sync, "a segment starts with a key frame");
        assert_eq!(video, 25, "segment 1 is one second of video");
    }

    // Blocking reload for the hinted part, on the publisher's engine and on the other one:
    // held, then answered in the very step the part completes.
    let (m, n) = hint(&playlist(&mut w, 1));
    let path = format!("/live/s/llhls.m3u8?_HLS_msn={m}&_HLS_part={n}");
    let held = [get(&mut w, 0, &path), get(&mut w, 1, &path)];
    let hinted = get(&mut w, 1, &format!("/live/s/ll/{m}.{n}.m4s"));
    w.run();
    assert!(held.iter().all(|&c| w.received(c).is_empty()));
    assert!(w.received(hinted).is_empty());
    let mut frame = 90;
    let uri = format!("URI=\"ll/{m}.{n}.m4s\"");
    loop {
        publish_live(&mut w, publisher, frame, frame + 1, 0, true);
        frame += 1;
        assert!(frame < 110, "the part never completed");
        let now = playlist(&mut w, 1);
        let listed = |p: &str| {
            p.lines()
                .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&uri))
        };
        if listed(&now) {
            for c in held {
                let (status, body) = answer(&w, c).unwrap_or_else(|| {
                    panic!(
                        "{c:?} {:?} {held:?} {now}",
                        String::from_utf8_lossy(w.received(c))
                    )
                });
                assert!(status.contains(" 200 "), "{status}");
                let body = String::from_utf8(body).unwrap();
                assert!(listed(&body), "{body}");
                check_playlist(&body);
            }
            let (status, part) = answer(&w, hinted).expect("the hinted part is sent");
            assert!(status.contains(" 200 "), "{status}");
            assert!(!part.is_empty());
            break;
        }
        assert!(
            held.iter().all(|&c| w.received(c).is_empty()),
            "answered early"
        );
    }

    // Far ahead: 400 at once. Not that far: held, and answered after three part targets even
    // though the stream does not move.
    let (m, n) = hint(&playlist(&mut w, 0));
    let (status, _) = fetch(&mut w, 0, &format!("/live/s/llhls.m3u8?_HLS_msn={}", m + 2));
    assert!(status.contains(" 400 "), "{status}");
    let (status, _) = fetch(
        &mut w,
        1,
        &format!("/live/s/llhls.m3u8?_HLS_msn={m}&_HLS_part={}", n + 9),
    );
    assert!(status.contains(" 400 "), "{status}");
    let (status, _) = fetch(&mut w, 1, "/live/s/llhls.m3u8?_HLS_part=1");
    assert!(status.contains(" 400 "), "{status}");
    let waiting = get(&mut w, 1, &format!("/live/s/llhls.m3u8?_HLS_msn={}", m + 1));
    w.run();
    let start = w.now();
    w.advance(3 * PART_MS - 1);
    assert!(w.received(waiting).is_empty());
    w.advance(1);
    let (status, _) = answer(&w, waiting).expect("released at its bound");
    assert!(
        status.contains(" 200 "),
        "{status} after {} ms",
        w.now() - start
    );
}

#[test]
fn reconnect_is_a_discontinuity_and_the_end_an_endlist() {
    for format in ["ts", "fmp4"] {
        reconnect_and_end(format);
    }
}

/// With classic HLS segments in `format`.
fn reconnect_and_end(format: &str) {
    let mut w = world_with(&format!("segment_format = \"{format}\"\n"));
    let first = publisher(&mut w, 0, "s");
    send_configs(&mut w, first, 0);
    publish_live(&mut w, first, 0, 60, 0, true);
    let (m, n) = hint(&playlist(&mut w, 1));
    let held = get(
        &mut w,
        1,
        &format!("/live/s/llhls.m3u8?_HLS_msn={m}&_HLS_part={}", n + 1),
    );
    w.run();
    w.hang_up(first);
    w.run();
    let (status, body) = answer(&w, held).expect("held requests are answered at the end");
    assert!(status.contains(" 200 "), "{status}");
    let body = String::from_utf8(body).unwrap();
    assert!(body.ends_with("#EXT-X-ENDLIST\n"), "{body}");
    for engine in [0, 1] {
        let p = playlist(&mut w, engine);
        assert!(p.ends_with("#EXT-X-ENDLIST\n"), "{p}");
        assert!(!p.contains("PRELOAD-HINT"), "{p}");
    }
    // The classic playlist ends too.
    let (_, classic) = fetch(&mut w, 1, "/live/s.m3u8");
    assert!(String::from_utf8(classic)
        .unwrap()
        .ends_with("#EXT-X-ENDLIST\n"));

    let second = publisher(&mut w, 0, "s");
    send_configs(&mut w, second, 0);
    publish_live(&mut w, second, 0, 60, 0, true);
    for engine in [0, 1] {
        let p = playlist(&mut w, engine);
        assert!(!p.contains("ENDLIST"), "{p}");
        assert_eq!(p.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{p}");
        let after = p.split("#EXT-X-DISCONTINUITY\n").nth(1).unwrap();
        assert!(
            after.contains("ll/3.m4s") || after.contains("ll/3.0.m4s"),
            "{p}"
        );
        let (_, classic) = fetch(&mut w, engine, "/live/s.m3u8");
        let classic = String::from_utf8(classic).unwrap();
        assert!(
            classic.contains("#EXT-X-DISCONTINUITY\n"),
            "{format}: {classic}"
        );
        assert!(!classic.contains("ENDLIST"), "{format}: {classic}");
    }
}

/// LL-HLS memory of each engine.
fn ll_memory(w: &mut World) -> Vec<u64> {
    w.stats().iter().map(|s| s.hls.ll).collect()
}

/// Publishes frame by frame from `from` until `c` has a whole answer (at most to `to`); the
/// frame reached.
fn publish_until_answered(
    w: &mut World,
    publisher: ClientId,
    c: ClientId,
    from: u32,
    to: u32,
) -> u32 {
    for f in from..to {
        if answer(w, c).is_some() {
            return f;
        }
        publish_live(w, publisher, f, f + 1, 0, true);
    }
    panic!("no answer by frame {to}");
}

#[test]
fn on_demand_the_window_starts_at_the_first_request_on_every_engine_and_goes_when_idle() {
    let mut w = world_from("ll_on_demand = true\n");
    let publisher = publisher(&mut w, 0, "s");
    send_configs(&mut w, publisher, 0);
    publish_live(&mut w, publisher, 0, 50, 0, true);
    assert_eq!(ll_memory(&mut w), [0, 0], "nobody asked for LL-HLS");

    // The first request, on the engine without the publisher, waits for the first segment:
    // it starts at the next key frame (frame 50) and ends at the one after.
    let first = get(&mut w, 1, "/live/s/llhls.m3u8");
    w.run();
    assert!(answer(&w, first).is_none(), "held for the first segment");
    let asked = w.now();
    let reached = publish_until_answered(&mut w, publisher, first, 50, 150);
    assert!(
        w.now() - asked <= 1_200,
        "answered {} ms after the request",
        w.now() - asked
    );
    let (status, body) = answer(&w, first).expect("answered");
    assert!(status.contains(" 200 "), "{status}");
    let p = String::from_utf8(body).unwrap();
    check_playlist(&p);
    assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{p}");
    assert!(!p.contains("DISCONTINUITY"), "{p}");

    // A player keeps asking: both engines build the same window from the same frame.
    let mut frame = reached;
    for _ in 0..5 {
        publish_live(&mut w, publisher, frame, frame + 25, 0, true);
        frame += 25;
        assert_eq!(playlist(&mut w, 0), playlist(&mut w, 1));
    }
    let last_msn = hint(&playlist(&mut w, 1)).0;
    assert!(ll_memory(&mut w).iter().all(|&m| m > 0));

    // Nobody asks for 32 s: both windows are dropped, and stay so.
    publish_live(&mut w, publisher, frame, frame + 32 * 25, 0, true);
    frame += 32 * 25;
    assert_eq!(ll_memory(&mut w), [0, 0], "windows dropped when idle");
    publish_live(&mut w, publisher, frame, frame + 50, 0, true);
    frame += 50;
    assert_eq!(ll_memory(&mut w), [0, 0]);

    // Asked for again: a new window, numbered on after a discontinuity, the same on both.
    let again = get(&mut w, 0, "/live/s/llhls.m3u8");
    w.run();
    assert!(
        answer(&w, again).is_none(),
        "held for the new window's first segment"
    );
    frame = publish_until_answered(&mut w, publisher, again, frame, frame + 100);
    let (status, body) = answer(&w, again).expect("answered");
    assert!(status.contains(" 200 "), "{status}");
    let p = String::from_utf8(body).unwrap();
    check_playlist(&p);
    assert!(p.contains("#EXT-X-DISCONTINUITY\n"), "{p}");
    let msn: u64 = p
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(msn > last_msn, "{msn} after {last_msn}: {p}");
    assert!(!p.contains("DISCONTINUITY-SEQUENCE"), "{p}");
    publish_live(&mut w, publisher, frame, frame + 10, 0, true);
    frame += 10;
    assert_eq!(playlist(&mut w, 0), playlist(&mut w, 1));

    // Dropped and asked for once more: the dropped window's discontinuity is counted.
    publish_live(&mut w, publisher, frame, frame + 32 * 25, 0, true);
    frame += 32 * 25;
    assert_eq!(ll_memory(&mut w), [0, 0]);
    let third = get(&mut w, 1, "/live/s/llhls.m3u8");
    w.run();
    publish_until_answered(&mut w, publisher, third, frame, frame + 100);
    let (_, body) = answer(&w, third).expect("answered");
    let p = String::from_utf8(body).unwrap();
    assert!(p.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{p}");
    assert!(p.contains("#EXT-X-DISCONTINUITY\n"), "{p}");
}

#[test]
fn a_request_before_the_first_segment_is_held_at_most_its_limit_and_an_ended_stream_is_404() {
    let mut w = world_from("ll_on_demand = true\n");
    let publisher = publisher(&mut w, 0, "s");
    send_configs(&mut w, publisher, 0);
    publish_live(&mut w, publisher, 0, 10, 0, true);
    // Only non-key frames follow for a while: no segment can start.
    let held = get(&mut w, 1, "/live/s/llhls.m3u8");
    w.run();
    let asked = w.now();
    for i in 0..(FIRST_SEGMENT_HOLD_MS / 40 + 5) as u32 {
        let t = 400 + i * 40;
        let mut frame = stream(t, 1, 1);
        frame[0].2 = video(false, 0x41, 200);
        send(&mut w, publisher, &frame);
        w.advance(40);
        if answer(&w, held).is_some() {
            break;
        }
    }
    let (status, _) = answer(&w, held).expect("answered at the hold limit");
    assert!(status.contains(" 404 "), "{status}");
    let waited = w.now() - asked;
    assert!(
        (FIRST_SEGMENT_HOLD_MS..FIRST_SEGMENT_HOLD_MS + 100).contains(&waited),
        "answered after {waited} ms"
    );
    w.hang_up(publisher);
    w.run();
    let (status, _) = fetch(&mut w, 1, "/live/s/llhls.m3u8");
    assert!(status.contains(" 404 "), "{status}");
}

/// ms since the epoch of `1970-01-01THH:MM:SS.mmmZ`.
fn pdt_ms(line: &str) -> u64 {
    let t = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:").unwrap();
    let time = t.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut it = time.split(':');
    let h: u64 = it.next().unwrap().parse().unwrap();
    let m: u64 = it.next().unwrap().parse().unwrap();
    let s: f64 = it.next().unwrap().parse().unwrap();
    assert!(t.starts_with("1970-01-01"), "{t}");
    h * 3_600_000 + m * 60_000 + (s * 1000.0).round() as u64
}

fn pdts(p: &str) -> Vec<u64> {
    p.lines()
        .filter(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME:"))
        .map(pdt_ms)
        .collect()
}

/// The program date-times of the LL playlist after 4 s of media (video only unless `audio`),
/// less the publish time, modulo 1 s: each segment starts on a key frame at a whole second.
fn pdt_case(hls: &str, audio: bool) -> Vec<u64> {
    let mut w = world_from(hls);
    let publisher = publisher(&mut w, 0, "s");
    if audio {
        send_configs(&mut w, publisher, 0);
    } else {
        send(
            &mut w,
            publisher,
            &[(message_type::VIDEO, 0, avc_sequence_header())],
        );
    }
    let t0 = w.now();
    publish_live(&mut w, publisher, 0, 100, 0, audio);
    let c = get(&mut w, 1, "/live/s/llhls.m3u8");
    w.run();
    publish_live(&mut w, publisher, 100, 200, 0, audio);
    assert!(answer(&w, c).is_some());
    let p = playlist(&mut w, 1);
    let v: Vec<u64> = pdts(&p).iter().map(|x| (x - t0) % 1000).collect();
    v
}

#[test]
fn program_date_times_count_from_the_publish_time_on_demand_or_not_with_or_without_audio() {
    for audio in [true, false] {
        for hls in ["ll_on_demand = true\n", "ll_on_demand = false\n"] {
            let v = pdt_case(hls, audio);
            assert!(
                !v.is_empty() && v.iter().all(|&x| x == 0),
                "audio {audio}, [{hls}]: {v:?}"
            );
        }
    }
}

#[test]
fn a_new_init_segment_keeps_the_program_date_time_going_forward() {
    let mut w = world_with("");
    let publisher = publisher(&mut w, 0, "s");
    send_configs(&mut w, publisher, 0);
    let t0 = w.now();
    publish_live(&mut w, publisher, 0, 100, 0, true);
    // A new SPS (another level): a new init segment and a new fMP4 muxer.
    let mut h = avc_sequence_header().to_vec();
    h[8] = 0x1E;
    h[15] = 0x1E;
    send(
        &mut w,
        publisher,
        &[(message_type::VIDEO, 4000, Bytes::from(h))],
    );
    publish_live(&mut w, publisher, 100, 300, 0, true);
    let p = playlist(&mut w, 1);
    let v: Vec<i64> = pdts(&p).iter().map(|&x| x as i64 - t0 as i64).collect();
    assert!(
        v.len() > 3 && v.windows(2).all(|x| x[1] > x[0]),
        "{v:?}\n{p}"
    );
}

#[test]
fn only_an_authorized_playlist_request_starts_the_windows() {
    let mut w = world_from("ll_on_demand = true\n[auth]\nkey = \"k\"\nplay_hls = true\n");
    let publisher = publisher(&mut w, 0, "s");
    send_configs(&mut w, publisher, 0);
    publish_live(&mut w, publisher, 0, 50, 0, true);
    let (status, _) = fetch(&mut w, 1, "/live/s/llhls.m3u8");
    assert!(status.contains(" 403 "), "{status}");
    for path in [
        "/live/s/ll/init0.mp4",
        "/live/s/ll/2.0.m4s",
        "/live/s/ll/2.m4s",
    ] {
        get(&mut w, 1, path);
    }
    publish_live(&mut w, publisher, 50, 150, 0, true);
    assert_eq!(
        ll_memory(&mut w),
        [0, 0],
        "no window without an authorized request"
    );
}

#[test]
fn an_fmp4_muxer_started_after_the_publishers_clock_went_back_starts_its_own_timeline() {
    let config = Config::from_toml("[hls]\nenable = false\n")
        .expect("valid config")
        .engine_config();
    let mut w = World::new(2, config);
    let publisher = publisher(&mut w, 0, "s");
    send_configs(&mut w, publisher, 100_000);
    publish_live(&mut w, publisher, 0, 50, 100_000, true);
    // The encoder's clock restarts (same connection) while nobody consumes fMP4.
    publish_live(&mut w, publisher, 50, 60, 0, true);
    let c = get(&mut w, 0, "/live/s.mp4");
    w.run();
    publish_live(&mut w, publisher, 60, 150, 0, true);
    let (head, body) = http_response(&w, c);
    assert!(head.contains(" 200 "), "{head}");
    let d = demux(&Bytes::copy_from_slice(body)).expect("fMP4");
    let times: Vec<u64> = d
        .samples
        .iter()
        .filter(|s| s.track_id == VIDEO_TRACK_ID)
        .map(|s| s.decode_time)
        .collect();
    assert!(times.len() > 10, "{times:?}");
    // 40 ms apart at 90 kHz.
    assert!(times.windows(2).all(|x| x[1] == x[0] + 3600), "{times:?}");
}
