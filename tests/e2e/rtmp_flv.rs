//! RTMP in; RTMP, HTTP-FLV and WebSocket-FLV out, with real ffmpeg, ffprobe and rtmpdump.
//! The engine's policies (second publisher, kick, grace, play wait, GOP cache for late players,
//! handshake deadline) are checked on the virtual clock in `core/tests/engine_policy.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use rill_e2e::*;

/// Workers used by the server under test: two, so players and publishers land on different loops.
const WORKERS: usize = 2;

fn assert_h264_aac(label: &str, streams: &[ProbedStream], reference: &[ProbedStream]) {
    let v = stream_of(streams, "video")
        .unwrap_or_else(|| panic!("{label}: no video stream: {streams:?}"));
    let a = stream_of(streams, "audio")
        .unwrap_or_else(|| panic!("{label}: no audio stream: {streams:?}"));
    let rv = stream_of(reference, "video").expect("reference video");
    let ra = stream_of(reference, "audio").expect("reference audio");
    assert_eq!(v.codec_name, rv.codec_name, "{label}: video codec");
    assert_eq!(
        (v.width, v.height),
        (rv.width, rv.height),
        "{label}: resolution"
    );
    assert_eq!(a.codec_name, ra.codec_name, "{label}: audio codec");
    assert_eq!(a.sample_rate, ra.sample_rate, "{label}: sample rate");
    assert!(
        v.frames * 10 >= rv.frames * 9,
        "{label}: {} of {} video frames decoded",
        v.frames,
        rv.frames
    );
    assert!(
        a.frames * 10 >= ra.frames * 9,
        "{label}: {} of {} audio frames decoded",
        a.frames,
        ra.frames
    );
}

#[test]
fn players_over_rtmp_http_flv_and_rtmpdump_get_the_whole_stream() {
    require_tool("rtmpdump");
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let server = Server::start(WORKERS);
    let rtmp = server.rtmp_url("live/all");
    let flv = server.http_url("live/all.flv");
    // Players first: they wait for the publisher, so they see the stream from its first frame.
    let probes: Vec<_> = [rtmp.clone(), flv.clone(), flv.clone()]
        .into_iter()
        .map(|url| std::thread::spawn(move || ffprobe(&url, Duration::from_secs(60))))
        .collect();
    let dump_path =
        std::env::temp_dir().join(format!("rill-e2e-rtmpdump-{}.flv", server.rtmp_port));
    let mut rtmpdump = Proc(
        Command::new("rtmpdump")
            .args(["-q", "-v", "-r", &rtmp, "-o"])
            .arg(&dump_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn rtmpdump"),
    );
    sleep(Duration::from_millis(500));
    let mut publisher = ffmpeg_publish(&file, &rtmp, &[]);
    let published = publisher
        .wait_for(Duration::from_secs(40))
        .expect("publisher finishes in time");
    assert!(
        published.success(),
        "publisher failed: log:\n{}",
        server.log()
    );
    let ended = Instant::now();
    for (i, probe) in probes.into_iter().enumerate() {
        let (streams, out) = probe.join().expect("probe thread");
        let label = format!("player {i}");
        assert!(
            out.status.success(),
            "{label}: ffprobe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_h264_aac(&label, &streams, &reference);
    }
    rtmpdump
        .wait_for(Duration::from_secs(20))
        .expect("rtmpdump ends when the stream ends");
    assert!(
        ended.elapsed() < Duration::from_secs(20),
        "players ended long after the publisher"
    );
    let dumped = ffprobe_file(&dump_path);
    assert_h264_aac("rtmpdump", &dumped, &reference);
    let _ = std::fs::remove_file(&dump_path);
    let log = server.log();
    assert!(
        log.contains("session start") && log.contains("session end"),
        "session log lines:\n{log}"
    );
}

#[test]
fn b_frames_survive_rtmp_to_http_flv() {
    let file = media("h264_bframes_aac_10s.mp4");
    let reference = ffprobe_file(&file);
    let server = Server::start(WORKERS);
    let flv = server.http_url("live/bframes.flv");
    let probe = std::thread::spawn(move || ffprobe(&flv, Duration::from_secs(60)));
    sleep(Duration::from_millis(300));
    let mut publisher = ffmpeg_publish(&file, &server.rtmp_url("live/bframes"), &[]);
    assert!(
        publisher
            .wait_for(Duration::from_secs(40))
            .is_some_and(|s| s.success()),
        "publisher failed"
    );
    let (streams, out) = probe.join().expect("probe thread");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_h264_aac("b-frames", &streams, &reference);
}

/// Reads server WebSocket frames (unmasked) and returns the concatenated binary payloads.
fn read_ws_payloads(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    want: usize,
    limit: Duration,
) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut payload = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        // Parse whole frames out of buf.
        loop {
            if buf.len() < 2 {
                break;
            }
            let opcode = buf[0] & 0x0f;
            assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
            let (len, hdr) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < hdr + len {
                break;
            }
            assert_eq!(opcode, 2, "FLV goes in binary frames");
            payload.extend_from_slice(&buf[hdr..hdr + len]);
            buf.drain(..hdr + len);
        }
        if payload.len() >= want || Instant::now() >= deadline {
            return payload;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return payload,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return payload,
        }
    }
}

#[test]
fn websocket_flv_player_gets_a_valid_flv_stream() {
    let file = media("h264_aac_30s.flv");
    let server = Server::start(WORKERS);
    let _publisher = ffmpeg_publish(&file, &server.rtmp_url("live/ws"), &[]);
    sleep(Duration::from_millis(2000));
    let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(
        b"GET /live/ws.flv HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://x\r\n\r\n",
    )
    .expect("send upgrade");
    let (head, rest) = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade answer: {head}");
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "accept key: {head}"
    );
    let bytes = read_ws_payloads(&mut s, rest, 512 * 1024, Duration::from_secs(10));
    assert!(
        bytes.len() > 100 * 1024,
        "only {} bytes of FLV arrived",
        bytes.len()
    );
    let mut demuxer = rill_core::flv::FlvDemuxer::default();
    demuxer.push(&bytes);
    let mut tags = Vec::new();
    while let Ok(Some(tag)) = demuxer.poll_tag() {
        tags.push(tag);
    }
    let video: Vec<_> = tags
        .iter()
        .filter(|t| t.tag_type == rill_core::flv::TagType::Video)
        .collect();
    assert!(video.len() > 10, "video tags: {}", video.len());
    // First video tag: AVC sequence header; second: a key frame.
    assert_eq!(
        video[0].body.get(..2),
        Some(&[0x17, 0x00][..]),
        "AVC sequence header first"
    );
    assert_eq!(
        video[1].body.first().map(|b| b >> 4),
        Some(1),
        "then a key frame"
    );
    let ts: Vec<u32> = video.iter().skip(1).map(|t| t.timestamp).collect();
    assert!(ts[0] < 100, "timestamps start near 0: {}", ts[0]);
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "video timestamps never go back"
    );
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start(WORKERS);
    assert!(server.is_running());
    let status = server
        .terminate()
        .expect("server exits within 10 s of SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        server.log()
    );
}
