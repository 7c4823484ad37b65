//! A real browser: headless Debian Chromium plays `/{app}/{stream}.mp4` with plain Media
//! Source Extensions (`tests/browser/mse.html`: fetch, append to a SourceBuffer) for ten
//! seconds: frames decoded, `currentTime` advancing without stalls or errors. Prints the live
//! latency measured (publisher wall clock vs the page's position, and the page's distance to
//! its live edge). The harness is in `rill_e2e::browser`.

use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rill_e2e::browser::{ensure_installed, harness_dir, page_file, run_page, PageServer};
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
    // About four samples a second for 10 s (fewer when the page's timers run late).
    assert!(samples.len() >= 20, "{} samples: {v}", samples.len());
    let f = |s: &serde_json::Value, k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    let (first, last) = (&samples[0], &samples[samples.len() - 1]);
    let played = f(last, "ct") - f(first, "ct");
    let wall = (f(last, "wall") - f(first, "wall")) / 1000.0;
    assert!(wall >= 9.0, "sampled for {wall:.2} s only: {v}");
    assert!(
        played >= wall - 1.0,
        "currentTime advanced {played:.2} s in {wall:.2} s: {v}"
    );
    // 25 fps media: most frames decoded (a loaded machine's headless Chromium drops some).
    let frames = f(last, "frames") - f(first, "frames");
    assert!(
        frames >= 15.0 * (wall - 1.5),
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

#[test]
fn chromium_plays_llhls_with_hls_js_in_low_latency_mode() {
    let cfg = TempConfig::new("[hls]\nfragment_ms = 1000\nll_part_ms = 300\n");
    let server = Server::start_with(2, &cfg.args());
    // The same file: 640x360 H.264 at 25 fps with a key frame every 2 s, and AAC.
    let published_at = unix_ms();
    let mut publisher =
        ffmpeg_publish(&media("h264_aac_30s.flv"), &server.rtmp_url("live/ll"), &[]);
    sleep(Duration::from_millis(2500));
    let hls_js = ensure_installed().join("hls.js/dist/hls.min.js");
    let pages = PageServer::start(vec![
        (
            "/llhls.html".to_owned(),
            "text/html",
            page_file("llhls.html"),
        ),
        (
            "/hls.min.js".to_owned(),
            "text/javascript",
            std::fs::read(&hls_js).unwrap_or_else(|e| panic!("{}: {e}", hls_js.display())),
        ),
    ]);
    let url = format!(
        "http://127.0.0.1:{}/llhls.html?seconds=10&src={}",
        pages.port,
        server.http_url("live/ll/llhls.m3u8")
    );
    let shot = harness_dir().join("llhls.png");
    let _ = std::fs::remove_file(&shot);
    let v = run_page(&url, &shot, Duration::from_secs(40));
    drop(publisher.0.kill());
    let _ = publisher.wait_for(Duration::from_secs(5));
    std::fs::write(harness_dir().join("llhls.json"), v.to_string()).expect("save result");
    let r = &v["result"];
    assert_eq!(r["errors"], serde_json::json!([]), "page errors: {v}");
    assert_eq!(v["pageErrors"], serde_json::json!([]), "{v}");
    assert_eq!(r["canBlockReload"], serde_json::json!(true), "{v}");
    assert_eq!(r["partTarget"].as_f64(), Some(0.3), "{v}");
    let samples = r["samples"].as_array().expect("samples");
    // About four samples a second for 10 s (fewer when the page's timers run late).
    assert!(samples.len() >= 20, "{} samples: {v}", samples.len());
    let f = |s: &serde_json::Value, k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    let (first, last) = (&samples[0], &samples[samples.len() - 1]);
    let played = f(last, "ct") - f(first, "ct");
    let wall = (f(last, "wall") - f(first, "wall")) / 1000.0;
    assert!(wall >= 9.0, "sampled for {wall:.2} s only: {v}");
    // hls.js may play slightly faster or slower to hold its target latency.
    assert!(
        played >= wall - 1.0,
        "currentTime advanced {played:.2} s in {wall:.2} s: {v}"
    );
    // 25 fps media: most frames decoded (a loaded machine's headless Chromium drops some).
    let frames = f(last, "frames") - f(first, "frames");
    assert!(
        frames >= 15.0 * (wall - 1.5),
        "{frames} frames decoded in {wall:.2} s: {v}"
    );
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
    // Latency three ways: the page's wall clock against the program date-time of what it
    // shows (the server's clock when that frame arrived, so the publisher-to-server leg of a
    // loopback ffmpeg is left out), hls.js's own distance to the live edge, and the
    // publisher's start against the page's position (ffmpeg -re sends the file's time 0 at
    // about `published_at`; an upper bound).
    let mean = |k: &str| samples.iter().map(|s| f(s, k)).sum::<f64>() / samples.len() as f64;
    let behind_date = samples
        .iter()
        .map(|s| (f(s, "wall") - f(s, "date")) / 1000.0)
        .sum::<f64>()
        / samples.len() as f64;
    let behind_publisher = (f(last, "wall") - published_at) / 1000.0 - f(last, "ct");
    let last_behind_date = (f(last, "wall") - f(last, "date")) / 1000.0;
    eprintln!(
        "llhls in chromium (hls.js {}): {behind_date:.2} s behind the server's wall clock \
         (program date-time; {last_behind_date:.2} s at the end), hls.js latency {:.2} s \
         ({:.2} s at the end), {behind_publisher:.2} s behind the publisher's start (upper \
         bound); first frame {:.0} ms after loading; {frames} frames in {wall:.1} s; \
         non-fatal hls.js events: {}",
        r["hlsVersion"].as_str().unwrap_or("?"),
        mean("latency"),
        f(last, "latency"),
        f(r, "startMs"),
        r["nonFatal"]
    );
    assert!(behind_date < 3.0, "latency {behind_date:.2} s: {v}");
}
