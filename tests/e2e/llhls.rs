//! Low-Latency HLS out (`/{app}/{stream}/llhls.m3u8`): ffprobe reads the playlist with at least
//! 97% of the frames of the H.264+AAC file; while the stream runs, every playlist keeps the
//! spec's rules for parts, and blocking playlist reload for the hinted part is answered when
//! the part completes (the time from completion to answer is printed). The spec's rules in
//! detail, on the virtual clock, are in `core/tests/engine_llhls.rs`.

use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rill_e2e::*;

const WORKERS: usize = 2;
const PART_MS: u64 = 300;

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_once(':')?.1.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

/// (msn, part) of `ll/{msn}.{part}.m4s`.
fn part_of(uri: &str) -> Option<(u64, u64)> {
    let (m, p) = uri
        .strip_prefix("ll/")?
        .strip_suffix(".m4s")?
        .split_once('.')?;
    Some((m.parse().ok()?, p.parse().ok()?))
}

/// Parts of an LL-HLS playlist: (msn, part, duration s, program date-time of the part's end
/// in ms since the Unix epoch: every segment has its date, its parts follow it); checks each
/// is within `PART-TARGET`.
fn parts(p: &str) -> Vec<(u64, u64, f64, f64)> {
    let target: f64 = p
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
        .expect("EXT-X-PART-INF")
        .parse()
        .unwrap();
    assert_eq!(target, PART_MS as f64 / 1000.0);
    let mut out = Vec::new();
    let mut clock_ms = None;
    for line in p.lines() {
        if let Some(date) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            clock_ms = Some(unix_ms_of(date));
        } else if line.starts_with("#EXT-X-PART:") {
            let d: f64 = attr(line, "DURATION").unwrap().parse().unwrap();
            assert!(d > 0.0 && d <= target, "{line}");
            let (m, n) = part_of(attr(line, "URI").unwrap()).expect("part URI");
            let end = clock_ms.expect("a date before parts") + d * 1000.0;
            clock_ms = Some(end);
            out.push((m, n, d, end));
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` as ms since the Unix epoch.
fn unix_ms_of(date: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| -> i64 { date[r].parse().unwrap() };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (proleptic Gregorian), March-based years.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    (secs * 1000 + n(20..23)) as f64
}

fn now_unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        * 1000.0
}

fn hint(p: &str) -> Option<(u64, u64)> {
    let line = p.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    part_of(attr(line, "URI")?)
}

#[test]
fn ffprobe_reads_llhls_and_blocking_reload_is_answered_when_the_part_completes() {
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let cfg = TempConfig::new(&format!(
        "[hls]\nfragment_ms = 1000\nll_part_ms = {PART_MS}\nll_playlist_len = 20\nll_on_demand = false\n"
    ));
    let server = Server::start_with(WORKERS, &cfg.args());
    let port = server.http_port;
    let path = "/live/ll/llhls.m3u8";
    let mut publisher = ffmpeg_publish(&file, &server.rtmp_url("live/ll"), &[]);
    let deadline = Instant::now() + Duration::from_secs(40);
    // Wait for the first playlist.
    let mut playlist = loop {
        assert!(Instant::now() < deadline, "no playlist");
        let (status, head, body) = http_get(port, path, Duration::from_secs(5));
        if status == 200 {
            assert!(
                head.contains("content-type: application/vnd.apple.mpegurl"),
                "{head}"
            );
            break String::from_utf8(body).unwrap();
        }
        sleep(Duration::from_millis(100));
    };
    // Follow the live edge as a low-latency player does: always block on the hinted part.
    let mut held_ms = Vec::new();
    let mut after_completion_ms = Vec::new();
    while publisher.wait_for(Duration::from_millis(1)).is_none() {
        assert!(Instant::now() < deadline, "publisher did not finish");
        parts(&playlist);
        let Some((m, n)) = hint(&playlist) else {
            break;
        };
        let asked = Instant::now();
        let (status, _, body) = http_get(
            port,
            &format!("{path}?_HLS_msn={m}&_HLS_part={n}"),
            Duration::from_secs(5),
        );
        let answered = now_unix_ms();
        assert_eq!(status, 200);
        held_ms.push(asked.elapsed().as_millis() as u64);
        playlist = String::from_utf8(body).unwrap();
        if playlist.contains("#EXT-X-ENDLIST") {
            break;
        }
        if let Some(p) = parts(&playlist).iter().find(|p| (p.0, p.1) == (m, n)) {
            after_completion_ms.push(answered - p.3);
        }
    }
    assert!(
        held_ms.len() >= 20,
        "{} blocking reloads in 10 s: {held_ms:?}",
        held_ms.len()
    );
    // Each held request is released by its part (not by the bound of three part targets).
    assert!(
        after_completion_ms.len() * 10 >= held_ms.len() * 9,
        "{} of {} answered with their part",
        after_completion_ms.len(),
        held_ms.len()
    );
    assert!(
        held_ms.iter().all(|&h| h <= 3 * PART_MS + 500),
        "{held_ms:?}"
    );
    after_completion_ms.sort_by(f64::total_cmp);
    let pct = |q: usize| after_completion_ms[(after_completion_ms.len() - 1) * q / 100];
    eprintln!(
        "llhls: {} blocking reloads; answer after the part's end (program date-time clock): \
         median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        after_completion_ms.len(),
        pct(50),
        pct(90),
        pct(100)
    );
    sleep(Duration::from_millis(300));
    let (status, _, body) = http_get(port, path, Duration::from_secs(5));
    assert_eq!(status, 200);
    let ended = String::from_utf8(body).unwrap();
    assert!(ended.ends_with("#EXT-X-ENDLIST\n"), "{ended}");
    // The whole stream is in the window now: ffprobe reads it all.
    let (streams, out) = ffprobe(
        &server.http_url("live/ll/llhls.m3u8"),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "ffprobe of llhls.m3u8 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in ["video", "audio"] {
        let g = stream_of(&streams, kind).unwrap_or_else(|| panic!("no {kind}: {streams:?}"));
        let r = stream_of(&reference, kind).expect("reference stream");
        assert_eq!(g.codec_name, r.codec_name, "{kind} codec");
        assert!(
            g.frames * 100 >= r.frames * 97 && g.frames <= r.frames + 1,
            "{} of {} {kind} frames",
            g.frames,
            r.frames
        );
    }
}
