//! fMP4 out: HTTP-fMP4 (`/{app}/{stream}.mp4`), WebSocket-fMP4 and HLS with fMP4 segments
//! (`hls.segment_format = "fmp4"`), checked with ffprobe (frames counted against the source
//! file) and rill's fMP4 demuxer (init segment first, then fragments from a key frame on).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_core::fmp4::demux::demux;
use rill_e2e::*;

const WORKERS: usize = 2;

fn fmp4_config() -> TempConfig {
    TempConfig::new("[hls]\nfragment_ms = 1000\nplaylist_len = 3\nsegment_format = \"fmp4\"\n")
}

fn assert_frames(label: &str, got: &[ProbedStream], reference: &[ProbedStream]) {
    for kind in ["video", "audio"] {
        let g = stream_of(got, kind).unwrap_or_else(|| panic!("{label}: no {kind}: {got:?}"));
        let r = stream_of(reference, kind).expect("reference stream");
        assert_eq!(g.codec_name, r.codec_name, "{label}: {kind} codec");
        assert!(
            g.frames * 100 >= r.frames * 97 && g.frames <= r.frames + 1,
            "{label}: {} of {} {kind} frames",
            g.frames,
            r.frames
        );
    }
}

/// What one publish gave: the HTTP-fMP4 capture, and the probe of the fMP4 HLS record playlist.
struct Outcome {
    label: String,
    capture: Vec<u8>,
    reference: Vec<ProbedStream>,
    hls: Vec<ProbedStream>,
    playlist: String,
}

/// Publishes `file` to `live/{name}` (over RTSP when `rtsp`) while capturing `/live/{name}.mp4`,
/// then probes the HLS record playlist.
fn publish(server: &Server, file: &Path, name: &str, rtsp: bool) -> Outcome {
    let port = server.http_port;
    let path = format!("/live/{name}.mp4");
    let capture = std::thread::spawn(move || http_get(port, &path, Duration::from_secs(45)));
    sleep(Duration::from_millis(400));
    let mut publisher = if rtsp {
        ffmpeg_publish_rtsp(file, &server.rtsp_url(&format!("live/{name}")), "tcp", &[])
    } else {
        ffmpeg_publish(file, &server.rtmp_url(&format!("live/{name}")), &[])
    };
    assert!(
        publisher.wait_for(Duration::from_secs(40)).is_some(),
        "{name}: publisher did not finish"
    );
    let (status, head, body) = capture.join().expect("capture thread");
    assert_eq!(status, 200, "{name}: {head}");
    assert!(head.contains("content-type: video/mp4"), "{name}: {head}");
    sleep(Duration::from_millis(300));
    let (status, _, playlist) = http_get(
        port,
        &format!("/live/{name}/record.m3u8"),
        Duration::from_secs(5),
    );
    assert_eq!(status, 200, "{name}: record playlist");
    let (hls, probe) = ffprobe(
        &server.http_url(&format!("live/{name}/record.m3u8")),
        Duration::from_secs(40),
    );
    assert!(
        probe.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    Outcome {
        label: name.to_owned(),
        capture: body,
        reference: ffprobe_file(file),
        hls,
        playlist: String::from_utf8_lossy(&playlist).into_owned(),
    }
}

fn check(o: &Outcome, video_codec: &str) {
    let label = &o.label;
    // The capture is an init segment, then fragments starting with a video key frame.
    let d = demux(&Bytes::from(o.capture.clone()))
        .unwrap_or_else(|e| panic!("{label}: capture does not demux: {e}"));
    assert_eq!(
        &o.capture[4..8],
        b"ftyp",
        "{label}: starts with the init segment"
    );
    let video = d
        .tracks
        .iter()
        .find(|t| &t.handler == b"vide")
        .unwrap_or_else(|| panic!("{label}: no video track"));
    assert_eq!(&video.sample_entry[..], video_codec.as_bytes(), "{label}");
    let first = d.samples.first().expect("samples");
    assert!(
        first.track_id == video.id && first.sync,
        "{label}: first sample {first:?}"
    );
    let file = std::env::temp_dir().join(format!("rill-e2e-{label}-{}.mp4", free_port()));
    std::fs::write(&file, &o.capture).expect("write capture");
    assert_frames(
        &format!("{label} http-fmp4"),
        &ffprobe_file(&file),
        &o.reference,
    );
    let _ = std::fs::remove_file(&file);
    // The fMP4 HLS playlist: version 7, an init segment, .m4s segments, ended.
    let p = &o.playlist;
    assert!(p.contains("#EXT-X-VERSION:7\n"), "{label}: {p}");
    assert!(p.contains("#EXT-X-MAP:URI=\"init0.mp4\"\n"), "{label}: {p}");
    assert!(p.contains(".m4s\n") && !p.contains(".ts\n"), "{label}: {p}");
    assert!(p.ends_with("#EXT-X-ENDLIST\n"), "{label}: {p}");
    m3u8_rs::parse_media_playlist_res(p.as_bytes())
        .unwrap_or_else(|e| panic!("{label}: playlist does not parse: {e:?}"));
    assert_frames(&format!("{label} fmp4 hls"), &o.hls, &o.reference);
}

#[test]
fn http_fmp4_and_fmp4_hls_of_h264_b_frames_and_hevc() {
    let cfg = fmp4_config();
    let server = Server::start_with(WORKERS, &cfg.args());
    let outcomes = std::thread::scope(|scope| {
        let s = &server;
        let av = scope.spawn(move || publish(s, &media("h264_aac_10s.flv"), "av", false));
        let bf = scope.spawn(move || publish(s, &media("h264_bframes_aac_10s.mp4"), "bf", false));
        let hevc = publish(s, &media("hevc_aac_10s.mp4"), "hevc", true);
        [
            av.join().expect("av thread"),
            bf.join().expect("bf thread"),
            hevc,
        ]
    });
    check(&outcomes[0], "avc1");
    check(&outcomes[1], "avc1");
    check(&outcomes[2], "hvc1");
    // The segments of a TS playlist are not served as fMP4 and the other way round.
    let (status, _, _) = http_get(server.http_port, "/live/av/0.ts", Duration::from_secs(5));
    assert_eq!(status, 404);
    let (status, head, body) = http_get(
        server.http_port,
        "/live/av/init0.mp4",
        Duration::from_secs(5),
    );
    assert_eq!(status, 200);
    assert!(head.contains("content-type: video/mp4"), "{head}");
    assert_eq!(&body[4..8], b"ftyp");
}

/// A WebSocket player joining a running stream gets the init segment in one binary message,
/// then fragments, the first one a video key frame from the GOP cache.
#[test]
fn websocket_fmp4_player_starts_from_the_gop_cache() {
    let server = Server::start(WORKERS);
    let mut publisher =
        ffmpeg_publish(&media("h264_aac_10s.flv"), &server.rtmp_url("live/ws"), &[]);
    sleep(Duration::from_millis(2500));
    let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        b"GET /live/ws.mp4 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("send");
    let started = Instant::now();
    let (head, mut buf) = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut chunk = [0u8; 65536];
    while messages.len() < 40 {
        loop {
            if buf.len() < 2 {
                break;
            }
            assert_eq!(buf[0], 0x82, "binary frames only");
            let (len, hdr) = match buf[1] & 0x7F {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize,
                    10,
                ),
                n if n < 126 => (usize::from(n), 2),
                _ => break,
            };
            if buf.len() < hdr + len {
                break;
            }
            messages.push(buf[hdr..hdr + len].to_vec());
            buf.drain(..hdr + len);
        }
        let n = s.read(&mut chunk).expect("read ws");
        assert!(n > 0, "closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
    // The GOP cache came at once: 40 messages long before 40 frames of real time.
    assert!(started.elapsed() < Duration::from_millis(1500));
    let init = demux(&Bytes::from(messages[0].clone())).expect("init demuxes");
    assert_eq!(init.tracks.len(), 2);
    assert!(
        init.samples.is_empty(),
        "the init segment is a message of its own"
    );
    let mut all = messages[0].clone();
    for (i, m) in messages[1..].iter().enumerate() {
        assert_eq!(&m[4..8], b"moof", "message {i} is one fragment");
        all.extend_from_slice(m);
    }
    let d = demux(&Bytes::from(all)).expect("demux");
    assert!(d.samples[0].sync && d.samples[0].track_id == 1);
    assert!(d.sequences.windows(2).all(|w| w[1] > w[0]));
    drop(publisher.0.kill());
    let _ = publisher.wait_for(Duration::from_secs(5));
}
