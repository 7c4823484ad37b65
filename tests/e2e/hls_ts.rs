//! RTMP in; HLS (live and record playlists, segments) and HTTP-TS / WebSocket-TS out, checked
//! with ffprobe, m3u8-rs, rill's TS demuxer and an independent continuity/PCR checker. Answers
//! to unknown streams and bad paths are checked in `core/tests/engine_policy.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use m3u8_rs::MediaPlaylist;
use rill_core::ts::{TsDemuxer, AUDIO_PID, PAT_PID, PMT_PID, VIDEO_PID};
use rill_e2e::*;

const WORKERS: usize = 2;

/// A config file with short segments and a short live window; `out` as the HLS out path.
fn config(name: &str, out: Option<&PathBuf>) -> PathBuf {
    let path = std::env::temp_dir().join(format!("rill-e2e-hls-{name}-{}.toml", free_port()));
    let out = out.map_or(String::new(), |p| p.display().to_string());
    std::fs::write(
        &path,
        format!(
            "[hls]\nfragment_ms = 1000\nplaylist_len = 3\nout_path = \"{out}\"\ncleanup = \"never\"\n"
        ),
    )
    .expect("write config");
    path
}

fn start(name: &str, out: Option<&PathBuf>) -> Server {
    let cfg = config(name, out);
    Server::start_with(WORKERS, &["--config", cfg.to_str().expect("utf8 path")])
}

fn playlist(server: &Server, path: &str) -> Option<(String, MediaPlaylist)> {
    let (status, head, body) = http_get(server.http_port, path, Duration::from_secs(5));
    if status != 200 {
        return None;
    }
    let p = m3u8_rs::parse_media_playlist_res(&body)
        .unwrap_or_else(|e| panic!("{path}: playlist does not parse: {e:?}"));
    Some((head, p))
}

/// Fetches every segment of a record playlist and checks each starts with PAT, PMT and a
/// random access point (a video key frame with an IDR NAL unit when there is video).
fn check_segments(server: &Server, stream: &str, record: &MediaPlaylist, video: bool) {
    assert!(!record.segments.is_empty(), "{stream}: no segments");
    for seg in &record.segments {
        let path = format!("/{stream}/{}", seg.uri);
        let (status, head, body) = http_get(server.http_port, &path, Duration::from_secs(5));
        assert_eq!(status, 200, "{path}");
        assert!(head.contains("content-type: video/mp2t"), "{path}: {head}");
        let pid =
            |i: usize| (u16::from(body[i * 188 + 1] & 0x1F) << 8) | u16::from(body[i * 188 + 2]);
        assert_eq!(
            (pid(0), pid(1)),
            (PAT_PID, PMT_PID),
            "{path}: starts with PAT, PMT"
        );
        let check = check_ts(&body);
        assert!(check.cc_errors.is_empty(), "{path}: {:?}", check.cc_errors);
        let mut d = TsDemuxer::new(16 << 20);
        d.push(&body).expect("segment demuxes");
        d.flush().expect("segment demuxes");
        let first = d.poll_pes().expect("a PES");
        assert!(
            first.random_access,
            "{path}: first PES is not a random access point"
        );
        if video {
            assert_eq!(first.pid, VIDEO_PID, "{path}: starts with video");
            let idr = rill_core::codec::split_annexb(&first.data)
                .any(|n| rill_core::codec::h264::nal_type(&n) == Some(5));
            assert!(idr, "{path}: first video frame has no IDR");
        } else {
            assert_eq!(first.pid, AUDIO_PID);
        }
    }
}

fn assert_frames(label: &str, got: &[ProbedStream], reference: &[ProbedStream], kinds: &[&str]) {
    for kind in kinds {
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
    for s in got {
        assert!(
            kinds.contains(&s.codec_type.as_str()),
            "{label}: extra stream {s:?}"
        );
    }
}

/// Publishes `file` to `live/{name}` while capturing HTTP-TS and watching the live playlist,
/// whose target duration must never change and bound every segment (RFC 8216: `#EXTINF`
/// rounded to the nearest second). Returns the captured TS, the live media sequence numbers
/// seen, and the HTTP-TS probe.
fn publish_and_watch(
    server: &Server,
    file: &std::path::Path,
    name: &str,
    input_args: &[&str],
) -> (Vec<u8>, Vec<u64>, Vec<ProbedStream>) {
    let port = server.http_port;
    let ts_path = format!("/live/{name}.ts");
    let capture = std::thread::spawn(move || http_get(port, &ts_path, Duration::from_secs(45)).2);
    let url = server.http_url(&format!("live/{name}.ts"));
    let probe = std::thread::spawn(move || ffprobe(&url, Duration::from_secs(50)));
    sleep(Duration::from_millis(400));
    let mut publisher = ffmpeg_publish(file, &server.rtmp_url(&format!("live/{name}")), input_args);
    let mut seqs = Vec::new();
    let mut targets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if publisher.wait_for(Duration::from_millis(600)).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "publisher did not finish");
        if let Some((head, p)) = playlist(server, &format!("/live/{name}.m3u8")) {
            assert!(
                head.contains("content-type: application/vnd.apple.mpegurl"),
                "{head}"
            );
            assert!(head.contains("cache-control: no-cache"), "{head}");
            assert!(head.contains("access-control-allow-origin: *"), "{head}");
            assert!(p.segments.len() <= 3, "window of 3: {p:?}");
            for s in &p.segments {
                assert!(
                    f64::from(s.duration).round() as u64 <= p.target_duration,
                    "{name}: segment of {} s, target {}",
                    s.duration,
                    p.target_duration
                );
            }
            seqs.push(p.media_sequence);
            targets.push(p.target_duration);
        }
    }
    targets.dedup();
    assert!(targets.len() <= 1, "{name}: target durations {targets:?}");
    let (streams, out) = probe.join().expect("probe thread");
    assert!(
        out.status.success(),
        "ffprobe of HTTP-TS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ts = capture.join().expect("capture thread");
    (ts, seqs, streams)
}

fn check_capture(label: &str, ts: &[u8], reference: &[ProbedStream], kinds: &[&str]) {
    let body = ts;
    assert!(
        body.len() > 188 * 100,
        "{label}: only {} bytes captured",
        body.len()
    );
    let check = check_ts(body);
    assert!(check.cc_errors.is_empty(), "{label}: {:?}", check.cc_errors);
    assert!(check.pcrs > 100, "{label}: {} PCRs", check.pcrs);
    assert_eq!(check.pcr_backwards, 0, "{label}");
    assert!(
        check.max_pcr_gap_ms <= 100.0,
        "{label}: PCR gap {} ms",
        check.max_pcr_gap_ms
    );
    let path = std::env::temp_dir().join(format!("rill-e2e-{label}-{}.ts", free_port()));
    std::fs::write(&path, body).expect("write capture");
    assert_frames(label, &ffprobe_file(&path), reference, kinds);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn h264_aac_over_hls_and_http_ts() {
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let out = std::env::temp_dir().join(format!("rill-e2e-hls-out-{}", free_port()));
    let server = start("av", Some(&out));
    let (captured, seqs, streams) = publish_and_watch(&server, &file, "av", &[]);
    let av = ["video", "audio"];
    assert_frames("http-ts probe", &streams, &reference, &av);
    check_capture("http-ts", &captured, &reference, &av);
    // The live playlist slid while the stream ran (key frames every 2 s: five segments, four
    // of them complete while the publisher runs, in a window of three).
    let distinct: std::collections::BTreeSet<_> = seqs.iter().collect();
    assert!(
        distinct.len() >= 2 && seqs.first() < seqs.last(),
        "media sequences {seqs:?}"
    );
    // After the publisher stopped, both playlists end.
    sleep(Duration::from_millis(300));
    let (_, live) = playlist(&server, "/live/av.m3u8").expect("live playlist");
    assert!(live.end_list, "live playlist has ENDLIST");
    let (_, record) = playlist(&server, "/live/av/record.m3u8").expect("record playlist");
    assert!(record.end_list, "record playlist has ENDLIST");
    assert_eq!(record.media_sequence, 0);
    assert_eq!(record.segments.len(), 5, "one segment per 2 s GOP");
    let total: f32 = record.segments.iter().map(|s| s.duration).sum();
    assert!((9.0..11.0).contains(&total), "record lasts {total} s");
    check_segments(&server, "live/av", &record, true);
    let (hls, probe) = ffprobe(
        &server.http_url("live/av/record.m3u8"),
        Duration::from_secs(40),
    );
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_frames("hls record", &hls, &reference, &av);
    // The same segments were written under the out path.
    assert!(out.join("live/av/0.ts").is_file());
    assert!(out.join("live/av.m3u8").is_file());
    let record_file = std::fs::read(out.join("live/av/record.m3u8")).expect("record file");
    let parsed = m3u8_rs::parse_media_playlist_res(&record_file).expect("record file parses");
    assert_eq!(parsed.segments.len(), record.segments.len());
    assert!(parsed.end_list);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn b_frames_over_hls_and_http_ts() {
    let file = media("h264_bframes_aac_10s.mp4");
    let reference = ffprobe_file(&file);
    let server = start("bf", None);
    let (captured, _, streams) = publish_and_watch(&server, &file, "bf", &[]);
    let av = ["video", "audio"];
    assert_frames("http-ts probe", &streams, &reference, &av);
    check_capture("bframes-http-ts", &captured, &reference, &av);
    sleep(Duration::from_millis(300));
    let (_, record) = playlist(&server, "/live/bf/record.m3u8").expect("record playlist");
    assert!(record.end_list);
    check_segments(&server, "live/bf", &record, true);
    let (hls, probe) = ffprobe(
        &server.http_url("live/bf/record.m3u8"),
        Duration::from_secs(40),
    );
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_frames("hls record", &hls, &reference, &av);
}

#[test]
fn video_only_and_audio_only_streams() {
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let server = start("single", None);
    let video = {
        let s = &server;
        let f = file.clone();
        std::thread::scope(|scope| {
            let v = scope.spawn(|| publish_and_watch(s, &f, "vonly", &["-an"]));
            let a = publish_and_watch(s, &file, "aonly", &["-vn"]);
            (v.join().expect("video-only thread"), a)
        })
    };
    let ((v_ts, v_seqs, v_streams), (a_ts, a_seqs, a_streams)) = video;
    assert_frames("video-only http-ts", &v_streams, &reference, &["video"]);
    assert_frames("audio-only http-ts", &a_streams, &reference, &["audio"]);
    for (label, ts, kinds) in [
        ("vonly", &v_ts, &["video"][..]),
        ("aonly", &a_ts, &["audio"][..]),
    ] {
        check_capture(label, ts, &reference, kinds);
    }
    assert!(
        v_seqs.last() > v_seqs.first(),
        "video-only window slides: {v_seqs:?}"
    );
    assert!(
        a_seqs.last() > a_seqs.first(),
        "audio-only window slides: {a_seqs:?}"
    );
    sleep(Duration::from_millis(300));
    for (name, kinds, video) in [
        ("vonly", &["video"][..], true),
        ("aonly", &["audio"][..], false),
    ] {
        let (_, record) =
            playlist(&server, &format!("/live/{name}/record.m3u8")).expect("record playlist");
        assert!(record.end_list);
        check_segments(&server, &format!("live/{name}"), &record, video);
        if !video {
            for s in &record.segments[..record.segments.len() - 1] {
                assert!(
                    (1.0..1.6).contains(&s.duration),
                    "audio segment of {} s",
                    s.duration
                );
            }
        }
        let url = server.http_url(&format!("live/{name}/record.m3u8"));
        let (hls, probe) = ffprobe(&url, Duration::from_secs(40));
        assert!(
            probe.status.success(),
            "{}",
            String::from_utf8_lossy(&probe.stderr)
        );
        assert_frames(&format!("{name} hls"), &hls, &reference, kinds);
    }
}

#[test]
fn websocket_ts_player_gets_ts_from_a_key_frame() {
    let file = media("h264_aac_10s.flv");
    let server = start("ws", None);
    let mut publisher = ffmpeg_publish(&file, &server.rtmp_url("live/ws"), &[]);
    sleep(Duration::from_millis(2500));
    let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        b"GET /live/ws.ts HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("send");
    let (head, mut buf) = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut payload = Vec::new();
    let mut chunk = [0u8; 65536];
    while payload.len() < 188 * 400 {
        // Parse whole frames out of `buf`.
        loop {
            if buf.len() < 2 {
                break;
            }
            assert_eq!(buf[0], 0x82, "binary frames only");
            let (len, hdr) = match buf[1] & 0x7F {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n if n < 126 => (usize::from(n), 2),
                _ => break,
            };
            if buf.len() < hdr + len {
                break;
            }
            assert_eq!(len % 188, 0, "each frame holds whole TS packets");
            payload.extend_from_slice(&buf[hdr..hdr + len]);
            buf.drain(..hdr + len);
        }
        let n = s.read(&mut chunk).expect("read ws");
        assert!(n > 0, "closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
    let pid =
        |i: usize| (u16::from(payload[i * 188 + 1] & 0x1F) << 8) | u16::from(payload[i * 188 + 2]);
    assert_eq!((pid(0), pid(1), pid(2)), (PAT_PID, PMT_PID, VIDEO_PID));
    let check = check_ts(&payload);
    assert!(check.cc_errors.is_empty(), "{:?}", check.cc_errors);
    assert!(check.pcrs > 0);
    drop(publisher.0.kill());
}

/// The playlist file at `path` and the segment files it names (relative to its directory).
fn playlist_file(path: &std::path::Path) -> (String, Vec<PathBuf>) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()));
    let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("{}: does not parse: {e:?}", path.display()));
    let dir = path.parent().expect("a playlist lives in a directory");
    let segments = parsed.segments.iter().map(|s| dir.join(&s.uri)).collect();
    (text, segments)
}

/// SIGTERM in the middle of a publish with `hls.out_path` set: the stream's end is written out
/// before the process exits, as when the publisher leaves: the segment in progress becomes the
/// last segment file and both playlist files end with `#EXT-X-ENDLIST`.
#[test]
fn sigterm_mid_publish_ends_the_hls_files() {
    let file = media("h264_aac_30s.flv");
    let out = std::env::temp_dir().join(format!("rill-e2e-hls-term-{}", free_port()));
    let mut server = start("term", Some(&out));
    let _publisher = ffmpeg_publish(&file, &server.rtmp_url("live/term"), &[]);
    let live = out.join("live/term.m3u8");
    let record = out.join("live/term/record.m3u8");
    // A few segments are out (key frames every 2 s), so the publish is well under way.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !live.is_file() || !record.is_file() || playlist_file(&record).1.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no HLS files under {}; log:\n{}",
            out.display(),
            server.log()
        );
        sleep(Duration::from_millis(200));
    }
    let (_, before) = playlist_file(&record);
    let status = server.terminate().expect("the server exits on SIGTERM");
    assert!(status.success(), "exit {status:?}; log:\n{}", server.log());
    for path in [&live, &record] {
        let (text, segments) = playlist_file(path);
        assert!(
            text.trim_end().ends_with("#EXT-X-ENDLIST"),
            "{} does not end the stream:\n{text}",
            path.display()
        );
        let last = segments.last().expect("a segment");
        let len = std::fs::metadata(last).map_or(0, |m| m.len());
        assert!(
            len > 0,
            "{}: last segment {} is missing or empty",
            path.display(),
            last.display()
        );
    }
    // The segment in progress at the signal was added: the record playlist grew.
    let (_, after) = playlist_file(&record);
    assert!(after.len() > before.len(), "{before:?} then {after:?}");
    let _ = std::fs::remove_dir_all(&out);
}
