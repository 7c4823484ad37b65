//! AV1 published over Enhanced RTMP (a current ffmpeg, FourCC `av01`) and played over HTTP-TS
//! (AOM's AV1 in MPEG-TS) and RTSP over TCP (AOM's RTP payload format for AV1); and published
//! over RTSP, played over RTMP.
//!
//! No installed client decodes AV1 in MPEG-TS (ffmpeg 9 and 5.1 list it as a data stream with
//! its `AV01` registration, GStreamer 1.22's tsdemux and VLC 3.0 leave the PID unknown), so the
//! HTTP-TS check uses ffmpeg as an independent TS demuxer, takes the start-code form apart as the
//! spec defines it, and decodes the OBUs with ffmpeg. ffmpeg 9 depacketizes and decodes RTSP.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::Duration;

use rill_e2e::*;

/// Frames of the source clip (4 s at 25 frames a second, a key frame every second).
const SOURCE_FRAMES: usize = 100;
const GOP: usize = 25;

/// Encodes the source clip: `testsrc` in AV1 (SVT-AV1, fastest preset) in MP4.
fn encode_clip(ffmpeg: &Path, file: &Path) {
    let out = run_with_timeout(
        Command::new(ffmpeg)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25",
                "-t",
                "4",
            ])
            .args(["-c:v", "libsvtav1", "-preset", "12", "-g", "25"])
            .args(["-pix_fmt", "yuv420p"])
            .arg(file),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success() && file.is_file(),
        "encoding the AV1 clip failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The presentation times of the video frames ffmpeg decoded (`framecrc` lines of stream 0),
/// in output order.
fn decoded_frames(out: &Output) -> Vec<i64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("0,"))
        .filter_map(|l| l.split(',').nth(2)?.trim().parse().ok())
        .collect()
}

/// Checks a decoded frame count against the source: a player starts at the key frame before
/// it joined, so up to a GOP or so may be missing at the start, and never more than the source.
fn check_frames(label: &str, pts: &[i64], out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{label}: {} frames decoded of {SOURCE_FRAMES}", pts.len());
    assert!(
        pts.len() + 2 * GOP >= SOURCE_FRAMES && pts.len() <= SOURCE_FRAMES,
        "{label}: {} frames decoded of {SOURCE_FRAMES}: {stderr}",
        pts.len()
    );
    assert!(
        pts.windows(2).all(|w| w[0] < w[1]),
        "{label}: timestamps not increasing: {pts:?}"
    );
    assert!(
        !stderr.to_ascii_lowercase().contains("error"),
        "{label}: {stderr}"
    );
}

/// The OBUs of the AV1 access units of a TS capture, as a low-overhead bitstream: ffmpeg
/// demuxes the PES payloads of the private data stream, each OBU behind a start code has its
/// emulation prevention bytes (`00 00 03`) taken out.
fn obus_from_ts(ffmpeg: &Path, ts: &Path, obu: &Path) {
    let es = ts.with_extension("es");
    let out = run_with_timeout(
        Command::new(ffmpeg)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"])
            .arg(ts)
            .args(["-map", "0:0", "-c", "copy", "-f", "data"])
            .arg(&es),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "ffmpeg could not demux the TS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let es = std::fs::read(&es).expect("read the elementary stream");
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= es.len() {
        if es[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    assert!(!starts.is_empty(), "no start code in the AV1 stream");
    assert_eq!(starts[0], 3, "the PES payloads start with a start code");
    let mut obus = Vec::with_capacity(es.len());
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(es.len(), |&next| next - 3);
        let ts_obu = &es[start..end];
        let mut j = 0;
        while j < ts_obu.len() {
            if j + 2 < ts_obu.len() && ts_obu[j..j + 3] == [0, 0, 3] {
                obus.extend_from_slice(&[0, 0]);
                j += 3;
            } else {
                obus.push(ts_obu[j]);
                j += 1;
            }
        }
    }
    std::fs::write(obu, obus).expect("write the OBU stream");
}

#[test]
fn av1_over_enhanced_rtmp_plays_over_http_ts_and_rtsp() {
    let ffmpeg = current_ffmpeg();
    let dir = std::env::temp_dir().join(format!("rill-e2e-av1-{}", free_port()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let clip = dir.join("clip.mp4");
    encode_clip(&ffmpeg, &clip);

    let server = Server::start(1);
    let port = server.http_port;
    let capture =
        std::thread::spawn(move || http_get(port, "/live/av1.ts", Duration::from_secs(30)));
    sleep(Duration::from_millis(300));
    let publisher = Command::new(&ffmpeg)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-i",
        ])
        .arg(&clip)
        .args(["-c", "copy", "-f", "flv"])
        .arg(server.rtmp_url("live/av1"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg");
    let mut publisher = Proc(publisher);
    sleep(Duration::from_millis(300));
    let rtsp_url = server.rtsp_url("live/av1");
    let rtsp_ffmpeg = ffmpeg.clone();
    let rtsp = std::thread::spawn(move || {
        run_with_timeout(
            Command::new(rtsp_ffmpeg)
                .args(["-hide_banner", "-loglevel", "warning", "-nostdin"])
                .args(["-rtsp_transport", "tcp", "-timeout", "15000000", "-i"])
                .arg(rtsp_url)
                .args(["-map", "0:v", "-f", "framecrc", "-"]),
            Duration::from_secs(30),
        )
    });
    let status = publisher.wait_for(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the publisher failed: {}",
        server.log()
    );

    let out = rtsp.join().expect("RTSP player thread");
    check_frames("RTSP (TCP), ffmpeg 9", &decoded_frames(&out), &out);

    let (status, head, body) = capture.join().expect("HTTP-TS capture thread");
    assert_eq!(status, 200, "{head}");
    let check = check_ts(&body);
    assert!(check.cc_errors.is_empty(), "{:?}", check.cc_errors);
    assert_eq!(check.pcr_backwards, 0);
    let ts = dir.join("capture.ts");
    std::fs::write(&ts, &body).expect("write the capture");
    let probe = run_with_timeout(
        Command::new(&ffmpeg).args(["-hide_banner", "-i"]).arg(&ts),
        Duration::from_secs(30),
    );
    let described = String::from_utf8_lossy(&probe.stderr);
    assert!(
        described.contains("AV01"),
        "the PMT names the stream AV01: {described}"
    );
    let obu = dir.join("capture.obu");
    obus_from_ts(&ffmpeg, &ts, &obu);
    let out = run_with_timeout(
        Command::new(&ffmpeg)
            .args(["-hide_banner", "-loglevel", "warning", "-nostdin"])
            .args(["-f", "obu", "-i"])
            .arg(&obu)
            .args(["-f", "framecrc", "-"]),
        Duration::from_secs(30),
    );
    check_frames(
        "HTTP-TS, ffmpeg 9 (demux) + spec",
        &decoded_frames(&out),
        &out,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// ffmpeg 9 publishes AV1 over RTSP (TCP; its AV1 packetizer is marked experimental); an
/// Enhanced RTMP player (ffmpeg 9) decodes it: rill rebuilt the temporal units and the av1C.
#[test]
fn av1_over_rtsp_publish_plays_over_rtmp() {
    let ffmpeg = current_ffmpeg();
    let dir = std::env::temp_dir().join(format!("rill-e2e-av1-rtsp-{}", free_port()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let clip = dir.join("clip.mp4");
    encode_clip(&ffmpeg, &clip);

    let server = Server::start(1);
    let publisher = Command::new(&ffmpeg)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-i",
        ])
        .arg(&clip)
        .args(["-c", "copy", "-strict", "experimental"])
        .args(["-f", "rtsp", "-rtsp_transport", "tcp"])
        .arg(server.rtsp_url("live/av1"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg");
    let mut publisher = Proc(publisher);
    sleep(Duration::from_millis(300));
    let rtmp_url = server.rtmp_url("live/av1");
    let player_ffmpeg = ffmpeg.clone();
    let player = std::thread::spawn(move || {
        run_with_timeout(
            Command::new(player_ffmpeg)
                .args(["-hide_banner", "-loglevel", "warning", "-nostdin", "-i"])
                .arg(rtmp_url)
                .args(["-map", "0:v", "-f", "framecrc", "-"]),
            Duration::from_secs(30),
        )
    });
    let status = publisher.wait_for(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the RTSP publisher failed: {}",
        server.log()
    );
    let out = player.join().expect("RTMP player thread");
    check_frames(
        "RTSP publish, RTMP play, ffmpeg 9",
        &decoded_frames(&out),
        &out,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
