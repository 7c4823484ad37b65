//! RTSP in and out with real ffmpeg and ffprobe: publish over TCP and UDP, play over RTSP, RTMP,
//! HTTP-FLV and HLS, H.265, B-frames, G.711 and Opus, Digest authentication, bad input.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::{sleep, spawn, JoinHandle};
use std::time::Duration;

use rill_e2e::*;

/// Two workers, so players and publishers may land on different event loops.
const WORKERS: usize = 2;
const PROBE_LIMIT: Duration = Duration::from_secs(60);

type Probe = JoinHandle<(Vec<ProbedStream>, std::process::Output)>;

fn probe_url(url: String) -> Probe {
    spawn(move || ffprobe(&url, PROBE_LIMIT))
}

fn probe_rtsp(url: String, transport: &'static str) -> Probe {
    spawn(move || ffprobe_rtsp(&url, transport, PROBE_LIMIT))
}

fn join(label: &str, probe: Probe) -> Vec<ProbedStream> {
    let (streams, out) = probe.join().expect("probe thread");
    assert!(
        !streams.is_empty(),
        "{label}: ffprobe found nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    streams
}

/// Both tracks present with the reference's codecs and at least 90% of its frames.
fn assert_like(label: &str, got: &[ProbedStream], reference: &[ProbedStream], kinds: &[&str]) {
    for kind in kinds {
        let g = stream_of(got, kind).unwrap_or_else(|| panic!("{label}: no {kind}: {got:?}"));
        let r = stream_of(reference, kind).expect("reference stream");
        assert_eq!(g.codec_name, r.codec_name, "{label}: {kind} codec");
        assert!(
            g.frames * 10 >= r.frames * 9,
            "{label}: {} of {} {kind} frames decoded",
            g.frames,
            r.frames
        );
    }
}

fn wait_publisher(label: &str, mut p: Proc) {
    let status = p
        .wait_for(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("{label}: publisher did not finish"));
    let mut err = String::new();
    if let Some(e) = p.0.stderr.as_mut() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "{label}: publisher failed: {err}");
}

fn rtsp_push_plays_everywhere(transport: &'static str) {
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let server = Server::start(WORKERS);
    let name = format!("live/push{transport}");
    let probes = [
        ("rtmp", probe_url(server.rtmp_url(&name))),
        (
            "http-flv",
            probe_url(server.http_url(&format!("{name}.flv"))),
        ),
    ];
    sleep(Duration::from_millis(400));
    let publisher = ffmpeg_publish_rtsp(&file, &server.rtsp_url(&name), transport, &[]);
    wait_publisher(transport, publisher);
    let av = ["video", "audio"];
    for (label, probe) in probes {
        let got = join(label, probe);
        assert_like(
            &format!("rtsp/{transport} -> {label}"),
            &got,
            &reference,
            &av,
        );
    }
    sleep(Duration::from_millis(300));
    let (hls, out) = ffprobe(
        &server.http_url(&format!("{name}/record.m3u8")),
        PROBE_LIMIT,
    );
    assert!(
        out.status.success(),
        "hls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_like(&format!("rtsp/{transport} -> hls"), &hls, &reference, &av);
}

#[test]
fn rtsp_push_over_tcp_plays_over_rtmp_http_flv_and_hls() {
    rtsp_push_plays_everywhere("tcp");
}

#[test]
fn rtsp_push_over_udp_plays_over_rtmp_http_flv_and_hls() {
    rtsp_push_plays_everywhere("udp");
}

/// ffmpeg joins an RTMP publish over RTSP (TCP and UDP) and plays 8 s of it: the source's frame
/// rate of audio and video (not 1.3-1.9 times, as when sender reports paired NTP and RTP times of
/// different instants and ffmpeg's timestamps jumped back), no dts repeating or going backwards,
/// A/V starting together.
#[test]
fn rtmp_push_plays_over_rtsp_tcp_and_udp() {
    const SOURCE_SECS: u64 = 30;
    const PLAY_SECS: u64 = 8;
    let file = media("h264_aac_30s.flv");
    let reference = ffprobe_file(&file);
    let server = Server::start(WORKERS);
    let url = server.rtsp_url("live/pull");
    let _publisher = ffmpeg_publish(&file, &server.rtmp_url("live/pull"), &[]);
    // Join a running stream, as players do (the cached GOP comes first).
    sleep(Duration::from_secs(2));
    let players: Vec<_> = ["tcp", "udp"]
        .into_iter()
        .map(|transport| {
            let url = url.clone();
            let secs = PLAY_SECS.to_string();
            spawn(move || {
                let args = ["-rtsp_transport", transport, "-timeout", "15000000"];
                let out_args = ["-t", secs.as_str()];
                (transport, ffmpeg_play(&url, &args, &out_args, PROBE_LIMIT))
            })
        })
        .collect();
    for player in players {
        let (transport, (streams, out)) = player.join().expect("player thread");
        let log = String::from_utf8_lossy(&out.stderr);
        let label = format!("rtmp -> rtsp/{transport}");
        eprintln!("{label}: {streams:?}");
        for complaint in ["non monotonically increasing dts", "Non-monotonous DTS"] {
            assert!(!log.contains(complaint), "{label}: {log}");
        }
        let mut starts = Vec::new();
        for kind in ["video", "audio"] {
            let s = streams
                .iter()
                .find(|s| s.kind == kind)
                .unwrap_or_else(|| panic!("{label}: no {kind}: {streams:?}\n{log}"));
            let r = stream_of(&reference, kind)
                .expect("reference stream")
                .frames;
            let expected = r * PLAY_SECS / SOURCE_SECS;
            assert!(
                s.packets * 10 >= expected * 9 && s.packets * 10 <= expected * 11,
                "{label}: {} {kind} frames in {PLAY_SECS} s, the source has {expected}",
                s.packets
            );
            assert_eq!(
                s.not_increasing, 0,
                "{label}: {kind} dts repeated or went back"
            );
            starts.push(s.first_dts_ms.expect("first dts"));
        }
        assert!(
            (starts[0] - starts[1]).abs() <= 100.0,
            "{label}: video starts at {} ms, audio at {} ms",
            starts[0],
            starts[1]
        );
    }
}

#[test]
fn b_frames_through_rtsp_to_http_flv_decode() {
    let file = media("h264_bframes_aac_10s.mp4");
    let reference = ffprobe_file(&file);
    let server = Server::start(WORKERS);
    let probe = probe_url(server.http_url("live/bf.flv"));
    sleep(Duration::from_millis(400));
    let publisher = ffmpeg_publish_rtsp(&file, &server.rtsp_url("live/bf"), "tcp", &[]);
    wait_publisher("b-frames", publisher);
    let got = join("http-flv", probe);
    assert_like(
        "b-frames rtsp -> http-flv",
        &got,
        &reference,
        &["video", "audio"],
    );
}

/// Publishes over RTSP with `audio_args` and plays over RTSP: the audio codec arrives intact.
/// Publishes the file over RTSP with `audio_args`, plays it over RTSP and HTTP-TS: RTSP gives
/// video and `codec` audio (at least `min_audio_frames`); HTTP-TS gives video and, when
/// `in_ts`, that audio too, else a log line says why the audio is left out.
fn rtsp_to_rtsp_audio(
    name: &str,
    audio_args: &[&str],
    codec: &str,
    min_audio_frames: u64,
    in_ts: bool,
) {
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let server = Server::start(WORKERS);
    let path = format!("live/{name}");
    let probe = probe_rtsp(server.rtsp_url(&path), "tcp");
    let ts_probe = probe_url(server.http_url(&format!("{path}.ts")));
    sleep(Duration::from_millis(400));
    let mut args = vec!["-c:v", "copy"];
    args.extend_from_slice(audio_args);
    let publisher = ffmpeg_publish_rtsp(&file, &server.rtsp_url(&path), "tcp", &args);
    wait_publisher(name, publisher);
    for (label, probe) in [("rtsp", probe), ("http-ts", ts_probe)] {
        let label = format!("{name} over {label}");
        let got = join(&label, probe);
        assert_like(&label, &got, &reference, &["video"]);
        let audio = stream_of(&got, "audio");
        if label.ends_with("http-ts") && !in_ts {
            assert!(audio.is_none(), "{label}: {got:?}");
            let log = server.log();
            assert!(
                log.contains(&format!("stream {path}: ")) && log.contains("left out of MPEG-TS"),
                "{label}: {log}"
            );
            continue;
        }
        let a = audio.unwrap_or_else(|| panic!("{label}: no audio: {got:?}"));
        assert_eq!(a.codec_name, codec, "{label}: audio codec");
        assert!(
            a.frames >= min_audio_frames,
            "{label}: {} audio frames",
            a.frames
        );
    }
}

#[test]
fn g711_through_rtsp_to_rtsp() {
    rtsp_to_rtsp_audio(
        "alaw",
        &["-c:a", "pcm_alaw", "-ar", "8000", "-ac", "1"],
        "pcm_alaw",
        200,
        false,
    );
}

#[test]
fn opus_through_rtsp_to_rtsp_and_http_ts() {
    // 20 ms frames: 500 in 10 s.
    rtsp_to_rtsp_audio(
        "opus",
        &["-c:a", "libopus", "-ar", "48000", "-ac", "2"],
        "opus",
        450,
        true,
    );
}

#[test]
fn h265_in_and_out_over_rtsp() {
    let file = media("hevc_aac_10s.mp4");
    let reference = ffprobe_file(&file);
    let server = Server::start(WORKERS);
    let url = server.rtsp_url("live/hevc");
    let probes = [
        ("rtsp/tcp", probe_rtsp(url.clone(), "tcp")),
        ("rtsp/udp", probe_rtsp(url.clone(), "udp")),
    ];
    sleep(Duration::from_millis(400));
    let publisher = ffmpeg_publish_rtsp(&file, &url, "tcp", &[]);
    wait_publisher("hevc", publisher);
    for (label, probe) in probes {
        let got = join(label, probe);
        assert_like(
            &format!("hevc -> {label}"),
            &got,
            &reference,
            &["video", "audio"],
        );
    }
}

#[test]
fn digest_auth_refuses_a_wrong_password_and_admits_the_right_one() {
    let config = std::env::temp_dir().join(format!("rill-e2e-rtsp-auth-{}.toml", free_port()));
    std::fs::write(
        &config,
        "[rtsp]\nauth = \"digest\"\npublish_user = \"pub\"\npublish_password = \"s3cret\"\n\
         play_user = \"viewer\"\nplay_password = \"watch\"\n",
    )
    .expect("write config");
    let server = Server::start_with(WORKERS, &["--config", config.to_str().expect("utf-8")]);
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let url = |user: &str, pass: &str| {
        format!(
            "rtsp://{user}:{pass}@127.0.0.1:{}/live/auth",
            server.rtsp_port
        )
    };
    // Wrong password: refused, ffmpeg gives up.
    let mut wrong = ffmpeg_publish_rtsp(&file, &url("pub", "nope"), "tcp", &[]);
    let status = wrong
        .wait_for(Duration::from_secs(15))
        .expect("refused publisher exits");
    assert!(!status.success(), "a wrong password was admitted");
    // No credentials at all: also refused.
    let mut anonymous = ffmpeg_publish_rtsp(&file, &server.rtsp_url("live/auth"), "tcp", &[]);
    let status = anonymous
        .wait_for(Duration::from_secs(15))
        .expect("anonymous publisher exits");
    assert!(!status.success(), "no credentials were admitted");
    // Right password: publishes; the player needs its own credentials.
    let probe = probe_rtsp(url("viewer", "watch"), "tcp");
    sleep(Duration::from_millis(400));
    let publisher = ffmpeg_publish_rtsp(&file, &url("pub", "s3cret"), "tcp", &[]);
    sleep(Duration::from_secs(2));
    let (bad, _) = ffprobe_rtsp(&url("viewer", "bad"), "tcp", Duration::from_secs(20));
    assert!(bad.is_empty(), "a player with a wrong password got {bad:?}");
    wait_publisher("auth", publisher);
    let got = join("authorized player", probe);
    assert_like("digest", &got, &reference, &["video", "audio"]);
    let _ = std::fs::remove_file(&config);
}

/// Sends `request` on a fresh RTSP connection; returns what the server answered before closing
/// or going quiet.
fn raw_exchange(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn statuses(answer: &str) -> Vec<u16> {
    answer
        .split("\r\n")
        .filter(|l| l.starts_with("RTSP/1.0 "))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

fn announce(port: u16, sdp: &str) -> Vec<u8> {
    format!(
        "ANNOUNCE rtsp://127.0.0.1:{port}/live/bad RTSP/1.0\r\nCSeq: 1\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

#[test]
fn bad_input_gets_an_error_answer_and_other_streams_go_on() {
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let mut server = Server::start(WORKERS);
    let port = server.rtsp_port;
    let probe = probe_rtsp(server.rtsp_url("live/good"), "tcp");
    sleep(Duration::from_millis(400));
    let publisher = ffmpeg_publish(&file, &server.rtmp_url("live/good"), &[]);
    sleep(Duration::from_secs(1));

    // A huge Content-Length: refused before anything is buffered.
    let answer = raw_exchange(
        port,
        format!(
            "ANNOUNCE rtsp://127.0.0.1:{port}/live/bad RTSP/1.0\r\nCSeq: 1\r\n\
             Content-Length: 999999999999\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(statuses(&answer), [413], "{answer}");

    // A `$` frame on a channel never set up is dropped; the connection goes on.
    let mut req = b"$\x05\x00\x04abcd".to_vec();
    req.extend_from_slice(
        format!("OPTIONS rtsp://127.0.0.1:{port}/live/bad RTSP/1.0\r\nCSeq: 2\r\n\r\n").as_bytes(),
    );
    let answer = raw_exchange(port, &req);
    assert_eq!(statuses(&answer), [200], "{answer}");

    // An SDP without v=.
    let no_version = "o=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n\
                      a=rtpmap:96 H264/90000\r\n";
    let answer = raw_exchange(port, &announce(port, no_version));
    let s = statuses(&answer);
    assert!(s.len() == 1 && (400..500).contains(&s[0]), "{answer}");

    // A clock rate of 0.
    let zero_clock = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n\
                      a=rtpmap:96 H264/0\r\n";
    let answer = raw_exchange(port, &announce(port, zero_clock));
    let s = statuses(&answer);
    assert!(s.len() == 1 && (400..500).contains(&s[0]), "{answer}");

    // Garbage instead of a request line.
    let answer = raw_exchange(port, b"\x00\x01garbage\r\n\r\n");
    assert!(
        answer.is_empty() || statuses(&answer).iter().all(|s| *s >= 400),
        "{answer}"
    );

    assert!(server.is_running(), "server died: {}", server.log());
    wait_publisher("good", publisher);
    let got = join("good stream", probe);
    assert_like("bad input", &got, &reference, &["video", "audio"]);
    assert!(server.is_running(), "server died: {}", server.log());
}

/// Publishes `file` (H.264 + AAC in FLV) in real time with GStreamer's `rtspclientsink`
/// (which sends AAC as `MP4A-LATM`) over `protocols` (`tcp` or `udp`) to `url`. The file is
/// demuxed, not encoded: no encoder of the machine takes part.
fn gst_rtspclientsink(file: &std::path::Path, url: &str, protocols: &str) -> std::process::Output {
    require_tool("gst-launch-1.0");
    let pipeline = format!(
        "filesrc location={} ! flvdemux name=d d.video ! queue ! h264parse ! s.sink_0 \
         d.audio ! queue ! aacparse ! s.sink_1 \
         rtspclientsink name=s location={url} protocols={protocols}",
        file.display()
    );
    run_with_timeout(
        std::process::Command::new("gst-launch-1.0")
            .arg("-q")
            .args(pipeline.split_whitespace()),
        Duration::from_secs(40),
    )
}

/// GStreamer publishes H.264 + AAC over RTSP (TCP and UDP), AAC as MP4A-LATM: both tracks
/// play over HTTP-FLV (it used to get 404 at the SETUP of the audio track). A format rill cannot
/// record is refused at ANNOUNCE with 415 and a log line naming it.
#[test]
fn gstreamer_rtspclientsink_publishes_h264_and_latm_aac() {
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let server = Server::start(WORKERS);
    let mut runs = Vec::new();
    for protocols in ["tcp", "udp"] {
        let name = format!("live/gst{protocols}");
        let probe = probe_url(server.http_url(&format!("{name}.flv")));
        let url = server.rtsp_url(&name);
        let file = file.clone();
        runs.push((
            protocols,
            probe,
            spawn(move || {
                sleep(Duration::from_millis(400));
                gst_rtspclientsink(&file, &url, protocols)
            }),
        ));
    }
    for (protocols, probe, publisher) in runs {
        // rtspclientsink at times ends with "Received end-of-file" after TEARDOWN, or is
        // stopped by the time limit after its stream went out: what the player decoded decides.
        let out = publisher.join().expect("publisher thread");
        if !out.status.success() {
            eprintln!(
                "{protocols}: gst-launch ended with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let got = join(protocols, probe);
        assert_like(
            &format!("rtspclientsink over {protocols}"),
            &got,
            &reference,
            &["video", "audio"],
        );
    }
    let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
        m=audio 0 RTP/AVP 97\r\na=rtpmap:97 AMR/8000\r\na=control:stream=0\r\n";
    let port = server.rtsp_port;
    let answer = raw_exchange(port, &announce(port, sdp));
    assert_eq!(statuses(&answer), [415], "{answer}");
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("live/bad refused with 415") && l.contains("AMR")),
        "{log}"
    );
}
