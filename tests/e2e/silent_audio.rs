//! Silent audio (`[hub] silent_audio`): a video-only publish, over RTMP (H.264) or RTSP
//! (H.265), reaches HTTP-FLV, HTTP-TS and HLS players with an AAC track that ffmpeg decodes
//! without an error. That the option off adds no audio is checked in
//! `core/tests/engine_policy.rs`.

use std::path::PathBuf;
use std::process::Command;
use std::thread::{sleep, spawn, JoinHandle};
use std::time::Duration;

use rill_e2e::*;

/// Two workers: players may be on another event loop than the publisher.
const WORKERS: usize = 2;
/// The test files' video: 25 frames a second.
const FPS: f64 = 25.0;
/// The silent track's sampling rate and frame length.
const RATE: f64 = 48_000.0;
const SAMPLES_PER_FRAME: f64 = 1024.0;

/// The option on, a short wait, and players ended as soon as the publisher leaves.
fn config() -> TempConfig {
    TempConfig::new(
        "[hub]\nsilent_audio = true\nsilent_audio_wait_ms = 300\npublisher_grace_ms = 0\n",
    )
}

/// A file in the temp folder, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "rill-e2e-silent-{}-{}-{name}",
            std::process::id(),
            free_port()
        ));
        std::fs::write(&path, bytes).expect("write capture");
        TempFile(path)
    }

    fn as_str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Plays `path` over HTTP from `after` on until the stream ends; returns the body.
fn capture(server: &Server, path: &str, after: Duration) -> JoinHandle<(u16, Vec<u8>)> {
    let port = server.http_port;
    let path = path.to_owned();
    spawn(move || {
        sleep(after);
        let (status, _, body) = http_get(port, &path, Duration::from_secs(30));
        (status, body)
    })
}

/// Saves a capture, checking it was served.
fn save(label: &str, name: &str, capture: JoinHandle<(u16, Vec<u8>)>) -> TempFile {
    let (status, body) = capture.join().expect("capture thread");
    assert_eq!(status, 200, "{label}");
    assert!(body.len() > 10_000, "{label}: only {} bytes", body.len());
    TempFile::new(name, &body)
}

/// What ffmpeg says when it decodes the audio of `input` (empty when all is well).
fn audio_decode_errors(input: &str) -> String {
    require_tool("ffmpeg");
    let out = run_with_timeout(
        Command::new("ffmpeg").args([
            "-hide_banner",
            "-v",
            "error",
            "-nostdin",
            "-i",
            input,
            "-map",
            "0:a",
            "-f",
            "null",
            "-",
        ]),
        Duration::from_secs(60),
    );
    let mut errors = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if !out.status.success() && errors.is_empty() {
        errors = format!("ffmpeg failed: {}", out.status);
    }
    errors
}

/// `streams` have the video and a silent AAC track (48 kHz) about as long as the video, and
/// `input` decodes without an audio error.
fn assert_silent_aac(label: &str, streams: &[ProbedStream], input: &str) {
    let video = stream_of(streams, "video").unwrap_or_else(|| panic!("{label}: no video"));
    let audio = stream_of(streams, "audio")
        .unwrap_or_else(|| panic!("{label}: no audio track: {streams:?}"));
    assert_eq!(
        (audio.codec_name.as_str(), audio.sample_rate),
        ("aac", 48_000),
        "{label}"
    );
    let video_s = video.frames as f64 / FPS;
    let audio_s = audio.frames as f64 * SAMPLES_PER_FRAME / RATE;
    assert!(
        video.frames > 50 && (video_s - audio_s).abs() < 1.0,
        "{label}: {audio_s:.2} s of audio for {video_s:.2} s of video"
    );
    let errors = audio_decode_errors(input);
    assert!(errors.is_empty(), "{label}: audio decode errors: {errors}");
}

fn wait_publisher(label: &str, mut p: Proc) {
    let status = p.wait_for(Duration::from_secs(40));
    assert!(
        status.is_some_and(|s| s.success()),
        "{label}: publisher failed or did not finish: {status:?}"
    );
}

#[test]
fn video_only_rtmp_publish_gets_silent_aac_in_flv_ts_and_hls() {
    let cfg = config();
    let server = Server::start_with(WORKERS, &cfg.args());
    let early_flv = capture(&server, "/live/v.flv", Duration::ZERO);
    let early_ts = capture(&server, "/live/v.ts", Duration::ZERO);
    // A player arriving mid-stream starts from the GOP cache and the cached configurations.
    let late_flv = capture(&server, "/live/v.flv", Duration::from_secs(3));
    sleep(Duration::from_millis(400));
    let file = media("h264_aac_10s.flv");
    let publisher = ffmpeg_publish(&file, &server.rtmp_url("live/v"), &["-an"]);
    wait_publisher("rtmp", publisher);
    for (label, name, cap) in [
        ("early http-flv", "early.flv", early_flv),
        ("late http-flv", "late.flv", late_flv),
        ("http-ts", "early.ts", early_ts),
    ] {
        let f = save(label, name, cap);
        assert_silent_aac(label, &ffprobe_file(&f.0), f.as_str());
    }
    let hls = server.http_url("live/v/record.m3u8");
    let (streams, out) = ffprobe(&hls, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "hls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_silent_aac("hls", &streams, &hls);
}

#[test]
fn video_only_rtsp_h265_publish_gets_silent_aac() {
    let cfg = config();
    let server = Server::start_with(WORKERS, &cfg.args());
    let ts = capture(&server, "/live/h.ts", Duration::ZERO);
    sleep(Duration::from_millis(400));
    let file = media("hevc_aac_10s.mp4");
    let url = server.rtsp_url("live/h");
    let publisher = ffmpeg_publish_rtsp(&file, &url, "tcp", &["-an", "-c:v", "copy"]);
    wait_publisher("rtsp", publisher);
    let f = save("rtsp -> http-ts", "h265.ts", ts);
    let streams = ffprobe_file(&f.0);
    assert_eq!(
        stream_of(&streams, "video").map(|s| s.codec_name.as_str()),
        Some("hevc")
    );
    assert_silent_aac("rtsp -> http-ts", &streams, f.as_str());
}
