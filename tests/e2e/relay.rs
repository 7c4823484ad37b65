//! Relays between two rill servers (both the binary under test): an edge pulling on demand
//! from an origin (`[relay.pull]`), and an origin pushing to another server (`[[relay.push]]`).

use std::thread::sleep;
use std::time::Duration;

use rill_e2e::*;

const WORKERS: usize = 2;

/// Both players got H.264 and AAC frames; `who` names them in failures.
fn assert_h264_aac(streams: &[ProbedStream], out: &std::process::Output, who: &str, log: &str) {
    let video = stream_of(streams, "video");
    let audio = stream_of(streams, "audio");
    assert!(
        video.is_some_and(|v| v.codec_name == "h264" && v.frames > 0)
            && audio.is_some_and(|a| a.codec_name == "aac" && a.frames > 0),
        "{who}: {streams:?}; ffprobe: {}; log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_edge_pulls_a_stream_from_its_origin_when_players_ask_for_it() {
    let file = media("h264_aac_10s.flv");
    let origin = Server::start(WORKERS);
    let config = TempConfig::new(&format!(
        "[relay.pull]\norigins = [\"rtmp://127.0.0.1:{}\"]\nidle_stop_ms = 1000\n",
        origin.rtmp_port
    ));
    let edge = Server::start_with(WORKERS, &config.args());
    // Players first, on the edge: the stream is live nowhere yet, so the edge pulls it and the
    // origin's player (the pull) waits for the publisher.
    let probes: Vec<_> = [edge.rtmp_url("live/x"), edge.http_url("live/x.flv")]
        .into_iter()
        .map(|url| std::thread::spawn(move || ffprobe(&url, Duration::from_secs(60))))
        .collect();
    sleep(Duration::from_millis(1000));
    let mut publisher = ffmpeg_publish(&file, &origin.rtmp_url("live/x"), &[]);
    assert!(
        publisher
            .wait_for(Duration::from_secs(40))
            .is_some_and(|s| s.success()),
        "publisher failed; origin log:\n{}",
        origin.log()
    );
    for (probe, who) in probes.into_iter().zip(["RTMP player", "HTTP-FLV player"]) {
        let (streams, out) = probe.join().expect("probe thread");
        assert_h264_aac(&streams, &out, who, &edge.log());
    }
    assert!(
        edge.log()
            .contains("relay pull live/x: playing from rtmp://127.0.0.1"),
        "edge log:\n{}",
        edge.log()
    );
}

#[test]
fn an_edge_retries_an_origin_that_is_down_and_logs_each_attempt() {
    let [dead] = free_ports();
    let config = TempConfig::new(&format!(
        "[relay.pull]\norigins = [\"rtmp://127.0.0.1:{dead}\"]\nidle_stop_ms = 500\n\
         [hub]\nplay_wait_timeout_ms = 2500\n"
    ));
    let edge = Server::start_with(1, &config.args());
    let (_, out) = ffprobe(&edge.http_url("live/nowhere.flv"), Duration::from_secs(20));
    assert!(!out.status.success(), "nothing to play");
    sleep(Duration::from_millis(1500));
    let log = edge.log();
    let attempts = log.matches("relay pull live/nowhere from").count();
    // Attempts at 0 s, 1 s, 3 s (backoff 1 s, 2 s) within the 2.5 s wait, then the idle stop.
    assert!(
        (2..=4).contains(&attempts),
        "{attempts} attempts; log:\n{log}"
    );
    // 1 s then 2 s, each shortened by up to a fifth (jitter).
    assert!(
        log.lines()
            .filter(|l| l.contains("relay pull live/nowhere from") && l.contains("connect"))
            .all(|l| l.contains("(attempt ") && l.contains("next attempt in ")),
        "one line per attempt with its error and the delay; log:\n{log}"
    );
    assert!(
        log.contains("relay pull live/nowhere stopped: no players left"),
        "log:\n{log}"
    );
}

#[test]
fn an_origin_pushes_its_published_streams_to_the_configured_target() {
    let file = media("h264_aac_10s.flv");
    let target = Server::start(WORKERS);
    let config = TempConfig::new(&format!(
        "[[relay.push]]\napp = \"live\"\nurls = [\"rtmp://127.0.0.1:{}/live\"]\n",
        target.rtmp_port
    ));
    let origin = Server::start_with(WORKERS, &config.args());
    let probe = {
        let url = target.rtmp_url("live/p");
        std::thread::spawn(move || ffprobe(&url, Duration::from_secs(60)))
    };
    sleep(Duration::from_millis(500));
    let mut publisher = ffmpeg_publish(&file, &origin.rtmp_url("live/p?token=abc"), &[]);
    assert!(
        publisher
            .wait_for(Duration::from_secs(40))
            .is_some_and(|s| s.success()),
        "publisher failed; origin log:\n{}",
        origin.log()
    );
    let (streams, out) = probe.join().expect("probe thread");
    assert_h264_aac(&streams, &out, "player of the pushed stream", &origin.log());
    assert!(
        origin
            .log()
            .contains("relay push live/p: to rtmp://127.0.0.1"),
        "origin log:\n{}",
        origin.log()
    );
}

/// Edge settings pulling from `origin`, with a short grace so players end soon after the
/// origin's stream.
fn edge_config(origin: &str) -> TempConfig {
    TempConfig::new(&format!(
        "[relay.pull]\norigins = [\"{origin}\"]\nidle_stop_ms = 1000\n\
         [hub]\npublisher_grace_ms = 500\n"
    ))
}

/// Four seconds of the test file published to `url` in real time (RTMP).
fn publish_briefly(url: &str) -> Proc {
    ffmpeg_publish(&media("h264_aac_10s.flv"), url, &["-t", "4"])
}

#[test]
fn edges_pull_from_their_origin_over_http_flv_and_rtsp_tcp_and_udp() {
    let origin = Server::start(WORKERS);
    let origins = [
        format!("http://127.0.0.1:{}", origin.http_port),
        format!("rtsp://127.0.0.1:{}", origin.rtsp_port),
        format!("rtsp://127.0.0.1:{}?rtsp_mode=1", origin.rtsp_port),
    ];
    let configs: Vec<TempConfig> = origins.iter().map(|o| edge_config(o)).collect();
    let edges: Vec<Server> = configs
        .iter()
        .map(|c| Server::start_with(WORKERS, &c.args()))
        .collect();
    // Players wait on every edge, which pull from the origin, whose players wait in turn.
    let probes: Vec<_> = edges
        .iter()
        .map(|e| {
            let url = e.http_url("live/x.flv");
            std::thread::spawn(move || ffprobe(&url, Duration::from_secs(30)))
        })
        .collect();
    sleep(Duration::from_millis(1000));
    let mut publisher = publish_briefly(&origin.rtmp_url("live/x"));
    assert!(
        publisher
            .wait_for(Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "publisher failed; origin log:\n{}",
        origin.log()
    );
    let media = ["", "RTSP media interleaved on TCP", "RTSP media over UDP"];
    for (((probe, edge), origin_url), media) in
        probes.into_iter().zip(&edges).zip(&origins).zip(media)
    {
        let (streams, out) = probe.join().expect("probe thread");
        let who = format!("HTTP-FLV player of an edge pulling from {origin_url}");
        assert_h264_aac(&streams, &out, &who, &edge.log());
        let origin_name = origin_url.split('?').next().unwrap_or_default();
        assert!(
            edge.log()
                .contains(&format!("relay pull live/x: playing from {origin_name}"))
                && edge.log().contains(&format!("relay pull live/x: {media}")),
            "edge log:\n{}",
            edge.log()
        );
    }
}

#[test]
fn an_edge_pulls_a_camera_over_rtsp_with_digest_credentials_from_the_url() {
    // The camera: a rill server asking RTSP players for credentials, fed by ffmpeg over RTSP.
    let camera_config =
        TempConfig::new("[rtsp]\nplay_user = \"viewer\"\nplay_password = \"p@ss\"\n");
    let camera = Server::start_with(1, &camera_config.args());
    let mut publisher = ffmpeg_publish_rtsp(
        &media("h264_aac_10s.flv"),
        &camera.rtsp_url("live/cam"),
        "tcp",
        &["-t", "5", "-c", "copy"],
    );
    sleep(Duration::from_millis(1000));
    let config = edge_config(&format!(
        "rtsp://viewer:p%40ss@127.0.0.1:{}",
        camera.rtsp_port
    ));
    let edge = Server::start_with(1, &config.args());
    let (streams, out) = ffprobe(&edge.rtmp_url("live/cam"), Duration::from_secs(30));
    assert_h264_aac(
        &streams,
        &out,
        "RTMP player of the pulled camera",
        &edge.log(),
    );
    assert!(publisher.wait_for(Duration::from_secs(20)).is_some());
    assert!(
        !edge.log().contains("p@ss") && !edge.log().contains("p%40ss"),
        "the password stays out of the log:\n{}",
        edge.log()
    );
}

#[test]
fn an_origin_pushes_its_streams_over_rtsp_to_another_server() {
    let target = Server::start(WORKERS);
    let config = TempConfig::new(&format!(
        "[[relay.push]]\napp = \"live\"\nurls = [\"rtsp://127.0.0.1:{}/live\"]\n",
        target.rtsp_port
    ));
    let origin = Server::start_with(WORKERS, &config.args());
    let probe = {
        let url = target.http_url("live/p.flv");
        std::thread::spawn(move || ffprobe(&url, Duration::from_secs(30)))
    };
    sleep(Duration::from_millis(500));
    let mut publisher = publish_briefly(&origin.rtmp_url("live/p?token=abc"));
    assert!(
        publisher
            .wait_for(Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "publisher failed; origin log:\n{}",
        origin.log()
    );
    let (streams, out) = probe.join().expect("probe thread");
    assert_h264_aac(
        &streams,
        &out,
        "player of the RTSP-pushed stream",
        &origin.log(),
    );
    assert!(
        origin
            .log()
            .contains("relay push live/p: to rtsp://127.0.0.1"),
        "origin log:\n{}",
        origin.log()
    );
}

#[test]
fn an_origin_pushes_over_rtsp_udp_to_ffmpeg_listening_as_an_rtsp_server() {
    require_tool("ffmpeg");
    let [port] = free_ports();
    let out = std::env::temp_dir().join(format!("rill-e2e-rtsp-push-{port}.flv"));
    // ffmpeg as the third-party target: it accepts one ANNOUNCE / RECORD and keeps 3 s.
    let mut receiver = Proc(
        std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args(["-rtsp_flags", "listen", "-timeout", "20"])
            .args(["-i", &format!("rtsp://127.0.0.1:{port}/live/p")])
            .args(["-t", "3", "-c", "copy", "-f", "flv"])
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn ffmpeg"),
    );
    let config = TempConfig::new(&format!(
        "[[relay.push]]\napp = \"live\"\nurls = [\"rtsp://127.0.0.1:{port}/live?rtsp_mode=1\"]\n"
    ));
    let origin = Server::start_with(1, &config.args());
    let _publisher = publish_briefly(&origin.rtmp_url("live/p"));
    let done = receiver.wait_for(Duration::from_secs(20));
    let streams = ffprobe_file(&out);
    let _ = std::fs::remove_file(&out);
    assert!(
        done.is_some_and(|s| s.success()),
        "ffmpeg receiver: {done:?}; origin log:\n{}",
        origin.log()
    );
    let video = stream_of(&streams, "video");
    let audio = stream_of(&streams, "audio");
    assert!(
        video.is_some_and(|v| v.codec_name == "h264" && v.frames > 0)
            && audio.is_some_and(|a| a.codec_name == "aac" && a.frames > 0),
        "{streams:?}; origin log:\n{}",
        origin.log()
    );
    assert!(
        origin
            .log()
            .contains("relay push live/p: RTSP media over UDP"),
        "origin log:\n{}",
        origin.log()
    );
}

/// Issue 19, item 7: audio-only G.711 and Opus publishes (RTSP, no video) go through the
/// recordings (FLV and TS where the container has a place for them, with a log line where it
/// has none), a relay push to another server (Opus in its Enhanced RTMP form) and the stats
/// API of both servers, with codec names as lal spells them.
#[test]
fn audio_only_g711_and_opus_go_through_recording_relay_and_stats() {
    let target = Server::start(WORKERS);
    let records = std::env::temp_dir().join(format!("rill-e2e-audio-rec-{}", target.rtmp_port));
    let config = TempConfig::new(&format!(
        "[record]\nflv = true\nts = true\nout_path = \"{}\"\n\
         [[relay.push]]\napp = \"live\"\nurls = [\"rtmp://127.0.0.1:{}/live\"]\n",
        records.display(),
        target.rtmp_port
    ));
    let origin = Server::start_with(WORKERS, &config.args());
    let file = media("h264_aac_10s.flv");
    // (stream, audio arguments, lal's codec name, ffmpeg's, the target's output that carries it)
    let cases = [
        ("alaw", ["pcm_alaw", "8000", "1"], "PCMA", "pcm_alaw", "flv"),
        ("opus", ["libopus", "48000", "2"], "OPUS", "opus", "ts"),
    ];
    let probes: Vec<_> = cases
        .iter()
        .map(|(name, _, _, _, ext)| {
            let url = target.http_url(&format!("live/{name}.{ext}"));
            std::thread::spawn(move || ffprobe(&url, Duration::from_secs(60)))
        })
        .collect();
    sleep(Duration::from_millis(500));
    let publishers: Vec<Proc> = cases
        .iter()
        .map(|(name, [codec, rate, channels], ..)| {
            ffmpeg_publish_rtsp(
                &file,
                &origin.rtsp_url(&format!("live/{name}")),
                "tcp",
                &[
                    "-t", "6", "-vn", "-c:a", codec, "-ar", rate, "-ac", channels,
                ],
            )
        })
        .collect();
    sleep(Duration::from_millis(3000));
    for server in [&origin, &target] {
        for (name, _, lal_name, ..) in &cases {
            let (status, _, body) = http_get(
                server.http_port,
                &format!("/api/stat/group?stream_name={name}"),
                Duration::from_secs(5),
            );
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let data = &v["data"];
            assert!(
                status == 200
                    && data["audio_codec"] == *lal_name
                    && data["video_codec"] == ""
                    && data["pub"]["read_bitrate_kbits"].as_u64() > Some(0),
                "{name}: {v}\nlog:\n{}",
                server.log()
            );
        }
    }
    for mut p in publishers {
        assert!(
            p.wait_for(Duration::from_secs(30))
                .is_some_and(|s| s.success()),
            "publisher failed; origin log:\n{}",
            origin.log()
        );
    }
    for (probe, (name, _, _, codec, ext)) in probes.into_iter().zip(&cases) {
        let (streams, out) = probe.join().expect("probe thread");
        let audio = stream_of(&streams, "audio");
        assert!(
            audio.is_some_and(|a| a.codec_name == *codec && a.frames > 100)
                && stream_of(&streams, "video").is_none(),
            "the target's {ext} player of {name}: {streams:?}; {}\ntarget log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            target.log()
        );
    }
    // The recordings close once the publishers are gone.
    sleep(Duration::from_millis(1000));
    let recorded: Vec<std::path::PathBuf> = std::fs::read_dir(records.join("live"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    let decoded = |path: &std::path::Path| {
        // Opus in FLV is Enhanced RTMP, which Debian's ffmpeg 5.1 cannot read.
        let out = run_with_timeout(
            std::process::Command::new(current_ffmpeg())
                .args(["-hide_banner", "-v", "error", "-i"])
                .arg(path)
                .args(["-map", "0:a", "-f", "framecrc", "-"]),
            Duration::from_secs(30),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let frames = text.lines().filter(|l| !l.starts_with('#')).count();
        (frames, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let mut names: Vec<String> = recorded
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    names.sort();
    for (name, ext) in [("alaw", "flv"), ("opus", "flv"), ("opus", "ts")] {
        let path = recorded
            .iter()
            .find(|p| {
                p.extension().is_some_and(|e| e == ext)
                    && p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.starts_with(&format!("{name}-")))
            })
            .unwrap_or_else(|| panic!("no {name} .{ext} recording among {names:?}"));
        let (frames, errors) = decoded(path);
        assert!(
            frames > 200 && errors.is_empty(),
            "{}: {frames} audio frames decoded; {errors}",
            path.display()
        );
    }
    // G.711 has no place in MPEG-TS: no TS recording, and the log says why.
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("alaw-") && n.ends_with(".ts")),
        "{names:?}"
    );
    assert!(
        origin
            .log()
            .contains("PCMA frames left out of MPEG-TS (HTTP-TS, WS-TS, HLS, TS recordings)"),
        "origin log:\n{}",
        origin.log()
    );
    let _ = std::fs::remove_dir_all(&records);
}
