//! The web UI in a real browser: headless Debian Chromium (the harness of `rill_e2e::browser`)
//! drives `tests/browser/webui.cjs` step by step against the UI at `/` while ffmpeg publishes
//! the shared H.264+AAC file: the stream appears in the list within 2 s with its codecs and
//! size; the server page shows live numbers; the stream page's own MSE player decodes frames
//! and its `currentTime` advances for 10 s; kick on an HTTP-FLV player's row ends that session
//! (the player sees the close, the API no longer lists it), and on the page's own fMP4
//! session makes the player fetch again and play on; once the publisher stops the page
//! says the stream is gone, and when it publishes again the open page plays again. Then the
//! Streams page's relay form: a push to this server's own RTMP address is refused with the
//! API's error shown, a pull from this same server by URL into another stream and an RTSP push
//! to itself start and are listed on their streams' pages, whose stop buttons end them (the
//! API agrees). The server has TLS listeners too, so the TLS play URLs are shown. Screenshots
//! of every page land in `target/browser-harness/` (the README's come from there).

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rill_e2e::browser::{ensure_installed, harness_dir};
use rill_e2e::*;
use serde_json::Value;

/// The driver's steps, one JSON line each, and its stdin to let it go on.
struct Driver {
    proc: Proc,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Driver {
    fn start(base: &str) -> Driver {
        let modules = ensure_installed();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/webui.cjs");
        let mut child = Command::new("node")
            .env("HARNESS_MODULES", &modules)
            .env("RILL_API_TOKEN", API_TOKEN)
            .arg(script)
            .arg(base)
            .arg(harness_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start node");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Driver {
            proc: Proc(child),
            stdin,
            lines,
        }
    }

    /// The next step, which must be `name`, within `limit`.
    fn step(&mut self, name: &str, limit: Duration, server: &Server) -> Value {
        let line = self.lines.recv_timeout(limit).unwrap_or_else(|_| {
            panic!(
                "no step {name:?} from the browser in {limit:?}; log:\n{}",
                server.log()
            )
        });
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["step"], name, "browser step: {v}");
        v
    }

    fn go(&mut self) {
        writeln!(self.stdin, "go").expect("tell the driver to go on");
    }
}

fn group(server: &Server, name: &str) -> Value {
    let (status, _, body) = http_get(
        server.http_port,
        &format!("/api/stat/group?stream_name={name}"),
        Duration::from_secs(5),
    );
    assert_eq!(status, 200);
    serde_json::from_slice(&body).expect("group JSON")
}

/// The server's `[api] token`: the page's actions (kick, relays) need it; the page asks once.
const API_TOKEN: &str = "webui-test-token";

#[test]
fn chromium_shows_streams_plays_kicks_and_sees_the_stream_go() {
    // TLS listeners (a certificate from the binary's own command, next to the config) so the
    // stream page shows the TLS play URLs.
    let cfg = TempConfig::new("");
    let dir = cfg.path.parent().expect("config folder").to_owned();
    make_cert(&dir);
    let [rtmps, https, rtsps] = free_ports();
    std::fs::write(
        &cfg.path,
        format!(
            "[tls]\ncert = \"{c}/cert.pem\"\nkey = \"{c}/key.pem\"\n\
             [rtmps]\naddr = \"127.0.0.1:{rtmps}\"\n[https]\naddr = \"127.0.0.1:{https}\"\n\
             [rtsps]\naddr = \"127.0.0.1:{rtsps}\"\n[api]\ntoken = \"{API_TOKEN}\"\n",
            c = dir.display()
        ),
    )
    .expect("write the config");
    let server = Server::start_with(2, &cfg.args());
    std::fs::create_dir_all(harness_dir()).expect("harness folder");
    let base = format!("http://127.0.0.1:{}", server.http_port);

    // The UI's files and /api/server are served by the binary itself.
    let (status, head, body) = http_get(server.http_port, "/", Duration::from_secs(5));
    assert_eq!(status, 200, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("/ui/player.js"));
    let (_, _, body) = http_get(server.http_port, "/api/server", Duration::from_secs(5));
    let info: Value = serde_json::from_slice(&body).expect("server JSON");
    assert_eq!(info["listening"]["rtmp"], server.rtmp_port, "{info}");
    assert_eq!(info["listening"]["http"], server.http_port, "{info}");
    assert_eq!(info["listening"]["rtsp"], server.rtsp_port, "{info}");
    assert_eq!(info["listening"]["rtmps"], rtmps, "{info}");
    assert_eq!(info["listening"]["https"], https, "{info}");
    assert_eq!(info["listening"]["rtsps"], rtsps, "{info}");
    assert_eq!(info["listening"]["llhls"], true, "{info}");

    let mut driver = Driver::start(&base);
    driver.step("ready", Duration::from_secs(60), &server);
    // 30 s of 1280x720 H.264 at 25 fps and AAC, in real time.
    let mut publisher = ffmpeg_publish(
        &media("h264_aac_30s.flv"),
        &server.rtmp_url("live/web"),
        &[],
    );
    let published = Instant::now();
    driver.go();
    let listed = driver.step("listed", Duration::from_secs(15), &server);
    let listed_after = published.elapsed();
    // From the moment rill accepted the publisher's connection (ffmpeg's own start-up, about
    // a second here, is not the UI's doing).
    let after_accept = listed["afterAccept"].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "listed {after_accept} ms after rill accepted the publisher, {listed_after:?} after \
         ffmpeg started: {listed}"
    );
    assert!(
        (0.0..2000.0).contains(&after_accept),
        "the stream took {after_accept} ms to appear: {listed}"
    );
    assert_eq!(listed["codecs"], "H264 + AAC", "{listed}");
    assert_eq!(listed["res"], "1280x720", "{listed}");

    // An HTTP-FLV player for the kick button, in the statistics (other workers' snapshots are
    // up to a second old) before the page reads them.
    let flv = HttpFlvPlayer::start(server.http_port, "/live/web.flv");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !group(&server, "live/web").to_string().contains("FLVSUB") {
        assert!(
            Instant::now() < deadline,
            "the HTTP-FLV player is not listed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    driver.go();
    let s = driver.step("server", Duration::from_secs(20), &server);
    assert_eq!(s["streams"], 1, "{s}");
    assert!(s["connections"].as_u64() >= Some(2), "{s}");
    assert!(
        s["players"].as_str().unwrap_or("").contains("http-flv1"),
        "{s}"
    );

    let played = driver.step("played", Duration::from_secs(60), &server);
    let samples = played["samples"].as_array().expect("samples");
    let f = |s: &Value, k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    let (first, last) = (&samples[0], &samples[samples.len() - 1]);
    let wall = (f(last, "wall") - f(first, "wall")) / 1000.0;
    let advanced = f(last, "ct") - f(first, "ct");
    let frames = f(last, "frames") - f(first, "frames");
    eprintln!(
        "in-page player: currentTime +{advanced:.2} s and {frames} frames in {wall:.2} s, \
         {:.2} s behind its buffered edge at the end",
        f(last, "edge") - f(last, "ct")
    );
    assert!(wall >= 10.0, "{played}");
    assert!(
        advanced >= wall - 1.0,
        "currentTime advanced {advanced:.2} s: {played}"
    );
    // 25 fps media: most frames decoded (a loaded machine's headless Chromium drops some).
    assert!(frames >= 15.0 * (wall - 1.5), "{frames} frames: {played}");
    for w in samples.windows(2) {
        assert!(f(&w[1], "ct") > f(&w[0], "ct"), "stalled: {played}");
    }
    assert_eq!(last["restarts"], 0, "{played}");
    let urls: Vec<&str> = played["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        server.rtmp_url("live/web"),
        server.rtsp_url("live/web"),
        server.http_url("live/web.flv"),
        format!("ws://127.0.0.1:{}/live/web.flv", server.http_port),
        server.http_url("live/web.ts"),
        server.http_url("live/web.m3u8"),
        server.http_url("live/web/llhls.m3u8"),
        server.http_url("live/web.mp4"),
        format!("rtmps://127.0.0.1:{rtmps}/live/web"),
        format!("rtsps://127.0.0.1:{rtsps}/live/web"),
        format!("https://127.0.0.1:{https}/live/web.flv"),
        format!("wss://127.0.0.1:{https}/live/web.flv"),
        format!("https://127.0.0.1:{https}/live/web.mp4"),
        format!("https://127.0.0.1:{https}/live/web/llhls.m3u8"),
    ] {
        assert!(urls.contains(&want.as_str()), "{want} not in {urls:?}");
    }
    assert!(flv.received() > 0 && !flv.ended(), "the FLV player plays");

    let kicked = driver.step("kicked", Duration::from_secs(15), &server);
    assert_eq!(kicked["kicked"], "row gone", "{kicked}");
    let id = kicked["session"].as_str().expect("session id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !flv.ended() && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    assert!(flv.ended(), "the kicked HTTP-FLV player was not closed");
    let g = group(&server, "web");
    assert!(!g.to_string().contains(&id), "{id} still listed: {g}");
    driver.go();
    // Kicking the page's own fMP4 session: the player fetches again and plays on.
    let rejoined = driver.step("rejoined", Duration::from_secs(30), &server);
    eprintln!("the in-page player, kicked, played again: {rejoined}");
    assert_eq!(rejoined["recovered"], true, "{rejoined}");

    drop(publisher.0.kill());
    let _ = publisher.wait_for(Duration::from_secs(5));
    driver.go();
    let gone = driver.step("gone", Duration::from_secs(30), &server);
    eprintln!(
        "stream page said gone {} ms after the publisher stopped",
        gone["ms"]
    );

    // The publisher comes back: the open page plays again by itself.
    let mut publisher = ffmpeg_publish(
        &media("h264_aac_30s.flv"),
        &server.rtmp_url("live/web"),
        &[],
    );
    driver.go();
    let back = driver.step("back", Duration::from_secs(30), &server);
    eprintln!(
        "player playing again {} ms after ffmpeg restarted: {back}",
        back["ms"]
    );

    // Relays through the page's form, from and to this same server.
    driver.go();
    let relays = driver.step("relays", Duration::from_secs(30), &server);
    eprintln!("relays started from the form: {relays}");
    let refused = &relays["refused"];
    assert_eq!(refused["ok"], false, "{relays}");
    assert!(
        refused["text"]
            .as_str()
            .is_some_and(|t| t.contains("error 2001") && t.contains("own RTMP address")),
        "the page does not show the API's refusal: {relays}"
    );
    for started in ["pulled", "pushed"] {
        assert_eq!(relays[started]["ok"], true, "{relays}");
    }
    // The page says where the pulled stream comes from (the API's `url` of the pull).
    let origin = format!(
        "RTMP pull from rtmp://127.0.0.1:{}/live/web",
        server.rtmp_port
    );
    assert_eq!(relays["copy"]["source"], origin.as_str(), "{relays}");
    assert_eq!(relays["copy"]["codecs"], "H264 + AAC", "{relays}");
    assert_eq!(relays["copy"]["res"], "1280x720", "{relays}");
    let pull_id = group(&server, "live/webcopy")["data"]["pull"]["session_id"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(pull_id.starts_with("RTMPPULL"), "no pull of live/webcopy");
    let pull_url = group(&server, "live/webcopy")["data"]["pull"]["url"].clone();
    assert_eq!(
        pull_url,
        format!("rtmp://127.0.0.1:{}/live/web", server.rtmp_port).as_str()
    );
    let pushes = |server: &Server| -> Vec<String> {
        group(server, "live/web")["data"]["subs"]
            .as_array()
            .expect("subs")
            .iter()
            .filter(|s| s["base_type"] == "PUSH")
            .filter_map(|s| s["session_id"].as_str().map(str::to_owned))
            .collect()
    };
    let push_ids = pushes(&server);
    assert!(
        push_ids.len() == 1 && push_ids[0].starts_with("RTSPPUSH"),
        "{push_ids:?}"
    );
    driver.go();
    let stopped = driver.step("stopped", Duration::from_secs(30), &server);
    eprintln!("relays stopped with their buttons: {stopped}");
    assert_eq!(stopped["pull"]["id"], pull_id.as_str(), "{stopped}");
    assert_eq!(stopped["push"]["id"], push_ids[0].as_str(), "{stopped}");
    for relay in ["pull", "push"] {
        assert_eq!(stopped[relay]["gone"], true, "{stopped}");
        assert!(
            stopped[relay]["result"]
                .as_str()
                .is_some_and(|t| t.ends_with(": ok")),
            "{stopped}"
        );
    }
    let copy = group(&server, "live/webcopy");
    assert!(
        copy["error_code"] == 1001 || copy["data"]["pull"]["session_id"] == "",
        "the pull goes on: {copy}"
    );
    assert_eq!(pushes(&server), Vec::<String>::new());
    drop(publisher.0.kill());
    let _ = publisher.wait_for(Duration::from_secs(5));
    driver.go();
    let done = driver.step("done", Duration::from_secs(30), &server);
    assert_eq!(done["stillLive"], serde_json::json!([]), "{done}");
    assert_eq!(done["pageErrors"], serde_json::json!([]), "{done}");
    // The first action met the token check (401): the page asked once and kept the token.
    assert_eq!(done["tokenPrompts"], 1, "{done}");
    let _ = driver.proc.wait_for(Duration::from_secs(10));
    for page in ["streams", "server", "stream", "stream-gone", "relays"] {
        let shot = harness_dir().join(format!("webui-{page}.png"));
        assert!(shot.is_file(), "no screenshot {}", shot.display());
    }
}
