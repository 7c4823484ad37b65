//! A real browser: headless Debian Chromium plays `/{app}/{stream}.mp4` with plain Media
//! Source Extensions (`tests/browser/mse.html`: fetch, append to a SourceBuffer) for ten
//! seconds: frames decoded, `currentTime` advancing without stalls or errors. Prints the live
//! latency measured (publisher wall clock vs the page's position, and the page's distance to
//! its live edge). The harness is in `rill_e2e::browser`.

use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rill_e2e::browser::{harness_dir, page_file, run_page, PageServer};
use rill_e2e::*;

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[test]
fn chromium_plays_http_fmp4_with_mse() {
    let server = Server::start(2);
    // 30 s of 640x360 H.264 at 25 fps (a key frame every 2 s) and AAC, in real time.
    let published_at = unix_ms();
    let mut publisher = ffmpeg_publish(
        &media("h264_aac_30s.flv"),
        &server.rtmp_url("live/web"),
        &[],
    );
    sleep(Duration::from_millis(1500));
    let pages = PageServer::start(vec![(
        "/mse.html".to_owned(),
        "text/html",
        page_file("mse.html"),
    )]);
    let url = format!(
        "http://127.0.0.1:{}/mse.html?seconds=10&src={}",
        pages.port,
        server.http_url("live/web.mp4")
    );
    std::fs::create_dir_all(harness_dir()).expect("harness folder");
    let shot = harness_dir().join("mse-fmp4.png");
    let _ = std::fs::remove_file(&shot);
    let v = run_page(&url, &shot, Duration::from_secs(40));
    drop(publisher.0.kill());
    let _ = publisher.wait_for(Duration::from_secs(5));
    std::fs::write(harness_dir().join("mse-fmp4.json"), v.to_string()).expect("save result");
    let r = &v["result"];
    assert_eq!(r["errors"], serde_json::json!([]), "page errors: {v}");
    assert_eq!(v["pageErrors"], serde_json::json!([]), "{v}");
    // High profile H.264 and AAC-LC, as the page read them from the init segment.
    let codecs = r["codecs"].as_str().unwrap_or_default();
    assert!(
        codecs.starts_with("avc1.64") && codecs.ends_with(",mp4a.40.2"),
        "{v}"
    );
    let samples = r["samples"].as_array().expect("samples");
    assert!(samples.len() >= 35, "{} samples: {v}", samples.len());
    let f = |s: &serde_json::Value, k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    let (first, last) = (&samples[0], &samples[samples.len() - 1]);
    let played = f(last, "ct") - f(first, "ct");
    let wall = (f(last, "wall") - f(first, "wall")) / 1000.0;
    assert!(
        played >= wall - 1.0,
        "currentTime advanced {played:.2} s in {wall:.2} s: {v}"
    );
    let frames = f(last, "frames") - f(first, "frames");
    assert!(
        frames >= 25.0 * (wall - 1.5),
        "{frames} frames decoded in {wall:.2} s: {v}"
    );
    // No stall: currentTime moves in every second of the run.
    for w in samples.windows(5) {
        assert!(
            f(&w[4], "ct") > f(&w[0], "ct"),
            "playback stalled around {}: {v}",
            f(&w[0], "ct")
        );
    }
    assert!(
        r["waiting"].as_u64() == Some(0),
        "the video waited for data: {v}"
    );
    assert!(shot.is_file(), "no screenshot");
    // Latency: how far the page's position is behind the publisher's (ffmpeg -re sends the
    // file's time 0 at about `published_at`; its start-up makes this an upper bound), and how
    // far behind its own buffered live edge the page plays.
    let behind_publisher = (f(last, "wall") - published_at) / 1000.0 - f(last, "ct");
    let edge: f64 = samples
        .iter()
        .map(|s| f(s, "edge") - f(s, "ct"))
        .sum::<f64>()
        / samples.len() as f64;
    eprintln!(
        "http-fmp4 in chromium: latency {behind_publisher:.2} s behind the publisher's clock \
         (upper bound), {edge:.2} s behind the page's live edge on average; \
         first frame {:.0} ms after the request; {frames} frames in {wall:.1} s",
        f(r, "startMs")
    );
    assert!(behind_publisher < 5.0, "latency {behind_publisher:.2} s");
}
