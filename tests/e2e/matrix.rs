//! The client matrix (issue 19): real publishers (ffmpeg over RTMP and RTSP TCP/UDP, GStreamer
//! over RTMP and RTSP) times real players (ffmpeg, GStreamer, VLC, rtmpdump) on every output
//! they can read. Each cell decodes the stream and compares with the source file: video and
//! audio frame counts within 10%, no timestamp repeating or going back, audio and video starting
//! within 100 ms of each other.
//!
//! `reduced_matrix` runs a few cells (one of every client, both GStreamer publishers) and is part
//! of the main test command; `full_matrix` (ignored; `bash tools/matrix.sh`) runs every cell and
//! writes the table of `docs/interop-matrix.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::{sleep, spawn};
use std::time::Duration;

use rill_e2e::*;

const WORKERS: usize = 2;
/// The source: H.264 + AAC, 10 s.
const SOURCE: &str = "h264_aac_10s.flv";
/// The source's length.
const SOURCE_SECS: u64 = 10;
/// Longest a publisher may take to send the source and exit.
const PUBLISH_LIMIT: Duration = Duration::from_secs(30);
/// Longest a player may take (it ends when the server ends the stream).
const PLAY_LIMIT: Duration = Duration::from_secs(60);
/// The non-root user VLC runs as (VLC refuses to run as root).
const VLC_USER: &str = "rill-matrix";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Publisher {
    FfmpegRtmp,
    FfmpegRtspTcp,
    FfmpegRtspUdp,
    GstRtmp,
    GstRtsp,
}

impl Publisher {
    const ALL: [Publisher; 5] = [
        Publisher::FfmpegRtmp,
        Publisher::FfmpegRtspTcp,
        Publisher::FfmpegRtspUdp,
        Publisher::GstRtmp,
        Publisher::GstRtsp,
    ];

    fn label(self) -> &'static str {
        match self {
            Publisher::FfmpegRtmp => "ffmpeg RTMP",
            Publisher::FfmpegRtspTcp => "ffmpeg RTSP/TCP",
            Publisher::FfmpegRtspUdp => "ffmpeg RTSP/UDP",
            Publisher::GstRtmp => "GStreamer RTMP (rtmp2sink)",
            Publisher::GstRtsp => "GStreamer RTSP (rtspclientsink)",
        }
    }

    /// Starts publishing the source in real time to stream `name`.
    fn start(self, server: &Server, name: &str) -> Proc {
        let file = media(SOURCE);
        match self {
            Publisher::FfmpegRtmp => ffmpeg_publish(&file, &server.rtmp_url(name), &[]),
            Publisher::FfmpegRtspTcp => {
                ffmpeg_publish_rtsp(&file, &server.rtsp_url(name), "tcp", &[])
            }
            Publisher::FfmpegRtspUdp => {
                ffmpeg_publish_rtsp(&file, &server.rtsp_url(name), "udp", &[])
            }
            Publisher::GstRtmp => gst_publish(&format!(
                "filesrc location={} ! flvdemux name=d d.video ! queue ! h264parse \
                 ! flvmux name=m streamable=true d.audio ! queue ! aacparse ! m. \
                 m. ! rtmp2sink location={}",
                file.display(),
                server.rtmp_url(name)
            )),
            Publisher::GstRtsp => gst_publish(&format!(
                "filesrc location={} ! flvdemux name=d d.video ! queue ! h264parse ! s.sink_0 \
                 d.audio ! queue ! aacparse ! s.sink_1 \
                 rtspclientsink name=s protocols=tcp location={}",
                file.display(),
                server.rtsp_url(name)
            )),
        }
    }
}

fn gst_publish(pipeline: &str) -> Proc {
    require_tool("gst-launch-1.0");
    Proc(
        Command::new("gst-launch-1.0")
            .arg("-q")
            .args(pipeline.split_whitespace())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gst-launch-1.0"),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Client {
    /// Not a player: the table's row of the publishers' own exit.
    Publisher,
    Ffmpeg,
    Gstreamer,
    Vlc,
    Rtmpdump,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Protocol {
    Rtmp,
    HttpFlv,
    HttpTs,
    Hls,
    RtspTcp,
    RtspUdp,
    /// HTTP-FLV asking for Enhanced RTMP tags (`?enhanced=1`): in the codec cells only.
    HttpFlvEnhanced,
    /// The endless fMP4 stream (`/{app}/{stream}.mp4`): in the codec cells only.
    Fmp4,
}

impl Protocol {
    /// The outputs of the client matrix.
    const ALL: [Protocol; 6] = [
        Protocol::Rtmp,
        Protocol::HttpFlv,
        Protocol::HttpTs,
        Protocol::Hls,
        Protocol::RtspTcp,
        Protocol::RtspUdp,
    ];

    fn label(self) -> &'static str {
        match self {
            Protocol::Rtmp => "RTMP",
            Protocol::HttpFlv => "HTTP-FLV",
            Protocol::HttpTs => "HTTP-TS",
            Protocol::Hls => "HLS",
            Protocol::RtspTcp => "RTSP/TCP",
            Protocol::RtspUdp => "RTSP/UDP",
            Protocol::HttpFlvEnhanced => "HTTP-FLV `?enhanced=1`",
            Protocol::Fmp4 => "fMP4",
        }
    }

    /// HLS is played after the publish ends, from the record playlist (every segment, ended
    /// with `EXT-X-ENDLIST`); the others join before the publish starts and play it live.
    fn is_live(self) -> bool {
        self != Protocol::Hls
    }

    fn url(self, server: &Server, name: &str) -> String {
        match self {
            Protocol::Rtmp => server.rtmp_url(name),
            Protocol::HttpFlv => server.http_url(&format!("{name}.flv")),
            Protocol::HttpTs => server.http_url(&format!("{name}.ts")),
            Protocol::Hls => server.http_url(&format!("{name}/record.m3u8")),
            Protocol::HttpFlvEnhanced => server.http_url(&format!("{name}.flv?enhanced=1")),
            Protocol::Fmp4 => server.http_url(&format!("{name}.mp4")),
            Protocol::RtspTcp | Protocol::RtspUdp => server.rtsp_url(name),
        }
    }
}

/// The table row that shows how each publisher exited.
const PUBLISHER_ROW: Player = Player(Client::Publisher, Protocol::Rtmp);

/// One player: a client reading one output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Player(Client, Protocol);

impl Player {
    /// Every player of the matrix. VLC has no RTSP (Debian's VLC has no live555 module);
    /// rtmpdump reads RTMP only.
    fn all() -> Vec<Player> {
        let mut all = Vec::new();
        for client in [Client::Ffmpeg, Client::Gstreamer, Client::Vlc] {
            for output in Protocol::ALL {
                if client == Client::Vlc && matches!(output, Protocol::RtspTcp | Protocol::RtspUdp)
                {
                    continue;
                }
                all.push(Player(client, output));
            }
        }
        all.push(Player(Client::Rtmpdump, Protocol::Rtmp));
        all
    }

    fn label(self) -> String {
        let Player(client, output) = self;
        let how = match (client, output) {
            (Client::Publisher, _) => return "(the publisher's own exit) | -".to_owned(),
            (Client::Ffmpeg, _) => "ffmpeg",
            (Client::Gstreamer, Protocol::Rtmp) => "GStreamer `rtmp2src`",
            (Client::Gstreamer, Protocol::HttpFlv) => "GStreamer `souphttpsrc` + `flvdemux`",
            (Client::Gstreamer, Protocol::HttpTs) => "GStreamer `souphttpsrc` + `tsdemux`",
            (Client::Gstreamer, Protocol::Hls) => "GStreamer `hlsdemux`",
            (Client::Gstreamer, Protocol::RtspTcp) => "GStreamer `rtspsrc protocols=tcp`",
            (Client::Gstreamer, Protocol::RtspUdp) => "GStreamer `rtspsrc protocols=udp`",
            (Client::Gstreamer, Protocol::HttpFlvEnhanced | Protocol::Fmp4) => {
                "GStreamer `souphttpsrc`"
            }
            (Client::Vlc, _) => "VLC (`cvlc`, recording)",
            (Client::Rtmpdump, _) => "rtmpdump",
        };
        format!("{how} | {}", output.label())
    }

    /// Plays `url` to its end; the decoded frames' times, or why there are none.
    fn play(self, url: &str, scratch: &Path) -> Result<Frames, String> {
        let Player(client, output) = self;
        match client {
            Client::Publisher => Err("not a player".to_owned()),
            Client::Ffmpeg => {
                let transport = match output {
                    Protocol::RtspTcp => Some("tcp"),
                    Protocol::RtspUdp => Some("udp"),
                    _ => None,
                };
                let mut args = Vec::new();
                if let Some(t) = transport {
                    args.extend(["-rtsp_transport", t, "-timeout", "15000000"]);
                }
                require_tool("ffmpeg");
                ffmpeg_decode(Path::new("ffmpeg"), url, &args)
            }
            Client::Gstreamer => gst_decode(output, url),
            Client::Vlc => {
                let file = scratch.join(format!("vlc-{output:?}.ts"));
                vlc_record(url, &file)?;
                ffmpeg_decode(Path::new("ffmpeg"), &file.to_string_lossy(), &[])
            }
            Client::Rtmpdump => {
                let file = scratch.join("rtmpdump.flv");
                require_tool("rtmpdump");
                let out = run_with_timeout(
                    Command::new("rtmpdump")
                        .args(["-q", "--live", "-r", url, "-o"])
                        .arg(&file),
                    PLAY_LIMIT,
                );
                if !file.is_file() {
                    return Err(format!("rtmpdump wrote nothing: {}", stderr_tail(&out)));
                }
                ffmpeg_decode(Path::new("ffmpeg"), &file.to_string_lossy(), &[])
            }
        }
    }
}

/// Presentation times (ms) of the decoded frames of each kind, in output order, and the times
/// the player itself complained of timestamps going back.
#[derive(Debug, Default)]
struct Frames {
    video: Vec<f64>,
    audio: Vec<f64>,
    complaints: usize,
}

fn stderr_tail(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

/// Decodes `input` with `ffmpeg` (Debian's, or [`current_ffmpeg`]) into the framecrc muxer (every decoded frame, its own
/// timestamps: `-fps_mode passthrough`, video times in 1/90000).
fn ffmpeg_decode(ffmpeg: &Path, input: &str, input_args: &[&str]) -> Result<Frames, String> {
    let out = run_with_timeout(
        Command::new(ffmpeg)
            .args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
            .args(input_args)
            .args(["-i", input, "-map", "0:v?", "-map", "0:a?"])
            .args(["-fps_mode", "passthrough", "-enc_time_base:v", "1:90000"])
            .args(["-f", "framecrc", "-"]),
        PLAY_LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut kinds: BTreeMap<usize, (String, f64)> = BTreeMap::new();
    let mut frames = Frames::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#tb ") {
            let (idx, frac) = rest.split_once(": ").unwrap_or_default();
            let (n, d) = frac.split_once('/').unwrap_or(("0", "1"));
            let tb = n.parse::<f64>().unwrap_or(0.0) / d.parse::<f64>().unwrap_or(1.0);
            kinds
                .entry(idx.parse().unwrap_or(usize::MAX))
                .or_default()
                .1 = tb;
        } else if let Some(rest) = line.strip_prefix("#media_type ") {
            let (idx, kind) = rest.split_once(": ").unwrap_or_default();
            kinds
                .entry(idx.parse().unwrap_or(usize::MAX))
                .or_default()
                .0 = kind.to_owned();
        } else if !line.starts_with('#') {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let (Some(idx), Some(pts)) = (
                fields.first().and_then(|f| f.parse::<usize>().ok()),
                fields.get(2).and_then(|f| f.parse::<i64>().ok()),
            ) else {
                continue;
            };
            let Some((kind, tb)) = kinds.get(&idx) else {
                continue;
            };
            let ms = pts as f64 * tb * 1000.0;
            match kind.as_str() {
                "video" => frames.video.push(ms),
                "audio" => frames.audio.push(ms),
                _ => {}
            }
        }
    }
    let err = String::from_utf8_lossy(&out.stderr);
    frames.complaints = err
        .lines()
        .filter(|l| l.contains("non monotonically increasing dts") || l.contains("Non-monotonous"))
        .count();
    if frames.video.is_empty() && frames.audio.is_empty() {
        return Err(format!("ffmpeg decoded nothing: {}", stderr_tail(&out)));
    }
    Ok(frames)
}

/// Decodes `url` with a gst-launch pipeline whose decoded video and audio pass `identity`
/// elements named `vout` and `aout`; GStreamer's `log` tracer reports each buffer they push
/// (the `-v` last-message notifications lose and repeat buffers, so they cannot count).
fn gst_decode(output: Protocol, url: &str) -> Result<Frames, String> {
    require_tool("gst-launch-1.0");
    let sinks = "identity name=vout ! fakesink sync=false";
    let asinks = "identity name=aout ! fakesink sync=false";
    let pipeline = match output {
        Protocol::RtspTcp | Protocol::RtspUdp => {
            let protocols = if output == Protocol::RtspTcp {
                "tcp"
            } else {
                "udp"
            };
            format!(
                "rtspsrc name=r location={url} protocols={protocols} \
                 r. ! application/x-rtp,media=video ! decodebin ! {sinks} \
                 r. ! application/x-rtp,media=audio ! decodebin ! {asinks}"
            )
        }
        _ => {
            let source = match output {
                Protocol::Rtmp => format!("rtmp2src location={url}"),
                Protocol::Hls => format!("souphttpsrc location={url} ! hlsdemux"),
                // decodebin plugs flvdemux or tsdemux by the content.
                _ => format!("souphttpsrc location={url}"),
            };
            format!(
                "{source} ! decodebin name=d d. ! video/x-raw ! {sinks} \
                 d. ! audio/x-raw ! {asinks}"
            )
        }
    };
    let out = run_with_timeout(
        Command::new("gst-launch-1.0")
            .env("GST_TRACERS", "log")
            .env("GST_DEBUG", "GST_BUFFER:7")
            .env("GST_DEBUG_NO_COLOR", "1")
            .args(pipeline.split_whitespace()),
        PLAY_LIMIT,
    );
    let mut frames = Frames::default();
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        let into = if line.contains("do_push_buffer_pre:<vout:src>") {
            &mut frames.video
        } else if line.contains("do_push_buffer_pre:<aout:src>") {
            &mut frames.audio
        } else {
            continue;
        };
        // "..., pts 0:00:01.040000000, dts ..."
        let Some(pts) = line
            .split(", ")
            .find_map(|f| f.strip_prefix("pts "))
            .and_then(clock_time_ms)
        else {
            continue;
        };
        into.push(pts);
    }
    if frames.video.is_empty() && frames.audio.is_empty() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let why: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("ERROR") || l.contains("error"))
            .take(2)
            .collect();
        return Err(format!("GStreamer decoded nothing: {}", why.join(" / ")));
    }
    Ok(frames)
}

/// `H:MM:SS.nnnnnnnnn` in milliseconds.
fn clock_time_ms(t: &str) -> Option<f64> {
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(((h * 60.0 + m) * 60.0 + s) * 1000.0)
}

/// Records `url` with VLC (dummy interface, no transcoding, into MPEG-TS) as the non-root
/// [`VLC_USER`], created when the test runs as root.
fn vlc_record(url: &str, file: &Path) -> Result<(), String> {
    require_tool("cvlc");
    let sout = format!("#std{{access=file,mux=ts,dst={}}}", file.display());
    let home = file.parent().expect("scratch folder");
    let mut cmd = if is_root() {
        require_tool("runuser");
        ensure_vlc_user();
        let mut c = Command::new("runuser");
        c.args(["-u", VLC_USER, "--", "env"])
            .arg(format!("HOME={}", home.display()))
            .arg("cvlc");
        c
    } else {
        Command::new("cvlc")
    };
    let out = run_with_timeout(
        cmd.args(["-I", "dummy", "-q", "--no-sout-all", url, "--sout", &sout])
            .arg("vlc://quit"),
        PLAY_LIMIT,
    );
    if !file.is_file() {
        return Err(format!("VLC wrote nothing: {}", stderr_tail(&out)));
    }
    Ok(())
}

fn is_root() -> bool {
    let out = run_with_timeout(Command::new("id").arg("-u"), Duration::from_secs(5));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn ensure_vlc_user() {
    static CREATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    let exists = run_with_timeout(Command::new("id").arg(VLC_USER), Duration::from_secs(5))
        .status
        .success();
    if !exists {
        let out = run_with_timeout(
            Command::new("useradd").args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                VLC_USER,
            ]),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "useradd {VLC_USER} (VLC refuses to run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The source's decoded frame counts (video, audio).
fn source_frames() -> (usize, usize) {
    let probed = ffprobe_file(&media(SOURCE));
    let count = |kind| stream_of(&probed, kind).map_or(0, |s| s.frames as usize);
    let counts = (count("video"), count("audio"));
    assert!(counts.0 > 0 && counts.1 > 0, "source probe: {probed:?}");
    counts
}

/// PASS with the counts, or what is wrong.
fn judge(frames: &Frames, source: (usize, usize)) -> Result<String, String> {
    let mut wrong = Vec::new();
    let mut notes = Vec::new();
    for (kind, got, want) in [
        ("video", &frames.video, source.0),
        ("audio", &frames.audio, source.1),
    ] {
        if got.len() * 10 < want * 9 || got.len() * 10 > want * 11 {
            wrong.push(format!("{} of {want} {kind} frames", got.len()));
        }
        let back: Vec<(usize, &[f64])> = got
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[1] < w[0])
            .collect();
        if let Some((i, w)) = back.first() {
            wrong.push(format!(
                "{kind} time went back {} times (first at frame {}: {:.0} ms after {:.0} ms)",
                back.len(),
                i + 1,
                w[1],
                w[0]
            ));
        }
        // A receiver that slaves its clock to the sender (GStreamer's RTP jitter buffer)
        // holds a time that would go back at the previous one: noted, not a failure.
        let repeated = got.windows(2).filter(|w| w[1] == w[0]).count();
        if repeated > 0 {
            notes.push(format!("{repeated} {kind} times repeated"));
        }
    }
    if frames.complaints > 0 {
        wrong.push(format!(
            "player reported {} non-monotonic timestamps",
            frames.complaints
        ));
    }
    if let (Some(v), Some(a)) = (frames.video.first(), frames.audio.first()) {
        if (v - a).abs() > 100.0 {
            wrong.push(format!("video starts at {v:.0} ms, audio at {a:.0} ms"));
        }
    }
    if wrong.is_empty() {
        notes.insert(
            0,
            format!("{}/{} frames", frames.video.len(), frames.audio.len()),
        );
        Ok(notes.join(", "))
    } else {
        Err(wrong.join("; "))
    }
}

type Results = BTreeMap<(Player, Publisher), Result<String, String>>;

/// Publishes the source once with `publisher` and plays it with every one of `players`.
fn run_publisher(publisher: Publisher, players: &[Player], source: (usize, usize)) -> Results {
    let server = Server::start(WORKERS);
    let name = format!("live/{publisher:?}").to_lowercase();
    let scratch = std::env::temp_dir().join(format!("rill-matrix-{}", server.rtmp_port));
    std::fs::create_dir_all(&scratch).expect("scratch folder");
    // VLC runs as another user and writes its recordings here.
    let mut perms = std::fs::metadata(&scratch).expect("scratch").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
    std::fs::set_permissions(&scratch, perms).expect("chmod scratch");
    let start = |player: Player| {
        let url = player.1.url(&server, &name);
        let dir = scratch.clone();
        spawn(move || {
            let verdict = player
                .play(&url, &dir)
                .and_then(|frames| judge(&frames, source));
            (player, verdict)
        })
    };
    let live: Vec<_> = players
        .iter()
        .filter(|p| p.1.is_live())
        .map(|p| start(*p))
        .collect();
    sleep(Duration::from_millis(800));
    let mut p = publisher.start(&server, &name);
    let status = p.wait_for(PUBLISH_LIMIT);
    if status.is_none() {
        // Its stderr ends with it.
        let _ = p.0.kill();
        let _ = p.0.wait();
    }
    let mut err = String::new();
    if let Some(e) = p.0.stderr.as_mut() {
        let _ = std::io::Read::read_to_string(e, &mut err);
    }
    let err = err.lines().last().unwrap_or_default().trim();
    let published = match status {
        Some(s) if s.success() => Ok("exit 0".to_owned()),
        // rtspclientsink closes its connection after TEARDOWN and then, at times, still sends
        // on it: its own error, after the whole stream went out (the players' cells tell).
        Some(s) if publisher == Publisher::GstRtsp && err.contains("Received end-of-file") => {
            Ok(format!("{s} at the end ({err})"))
        }
        Some(s) => Err(format!("publisher failed ({s}): {err}")),
        // rtspclientsink, at times, never exits after its stream went out (seen on a loaded
        // machine, with rill answering its keep-alives): killed, and the players' cells tell.
        None if publisher == Publisher::GstRtsp => Ok(format!(
            "did not exit within {} s of a {} s stream: killed",
            PUBLISH_LIMIT.as_secs(),
            SOURCE_SECS
        )),
        None => Err(format!(
            "publisher did not finish within {} s",
            PUBLISH_LIMIT.as_secs()
        )),
    };
    let mut results = Results::new();
    for handle in live {
        let (player, played) = handle.join().expect("player thread");
        results.insert((player, publisher), played);
    }
    let after: Vec<_> = players
        .iter()
        .filter(|p| !p.1.is_live())
        .map(|p| start(*p))
        .collect();
    for handle in after {
        let (player, played) = handle.join().expect("player thread");
        results.insert((player, publisher), played);
    }
    // Why the server ended players early, if it did: the failing cells say so.
    let log = server.log();
    let mut kicked: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("session end") && l.contains("role=play"))
        .filter_map(|l| l.split(" reason=").nth(1))
        .filter(|r| *r != "stream ended")
        .collect();
    kicked.sort_unstable();
    kicked.dedup();
    if !kicked.is_empty() {
        for r in results.values_mut() {
            if let Err(e) = r {
                e.push_str(&format!(" (server ended players: {})", kicked.join(", ")));
            }
        }
    }
    match published {
        Err(e) => {
            for r in results.values_mut() {
                *r = Err(e.clone());
            }
        }
        Ok(exit) => {
            results.insert((PUBLISHER_ROW, publisher), Ok(exit));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    results
}

/// Runs `cells` (publishers with their players), `at_once` publishers at a time.
fn run_matrix(cells: &[(Publisher, Vec<Player>)], at_once: usize) -> Results {
    let source = source_frames();
    let mut results = Results::new();
    for pair in cells.chunks(at_once) {
        let runs: Vec<_> = pair
            .iter()
            .map(|(publisher, players)| {
                let (publisher, players) = (*publisher, players.clone());
                spawn(move || run_publisher(publisher, &players, source))
            })
            .collect();
        for run in runs {
            results.extend(run.join().expect("publisher run"));
        }
    }
    results
}

/// The table: one row per player, one column per publisher.
fn table(results: &Results) -> String {
    let publishers: Vec<Publisher> = Publisher::ALL
        .into_iter()
        .filter(|p| results.keys().any(|(_, q)| q == p))
        .collect();
    let mut out = String::from("| player | protocol |");
    for p in &publishers {
        out.push_str(&format!(" {} |", p.label()));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(publishers.len()));
    out.push('\n');
    let mut players: Vec<Player> = results.keys().map(|(p, _)| *p).collect();
    players.dedup();
    for player in players {
        out.push_str(&format!("| {} |", player.label()));
        for publisher in &publishers {
            let cell = match results.get(&(player, *publisher)) {
                Some(Ok(exit)) if player == PUBLISHER_ROW => exit.clone(),
                Some(Ok(counts)) => format!("PASS ({counts})"),
                Some(Err(why)) => format!("FAIL: {}", why.replace('|', "/")),
                None => "not run".to_owned(),
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

fn failures(results: &Results) -> Vec<String> {
    results
        .iter()
        .filter_map(|((player, publisher), r)| {
            let why = r.as_ref().err()?;
            Some(format!(
                "{} -> {}: {why}",
                publisher.label(),
                player.label()
            ))
        })
        .collect()
}

/// A few cells for the main test command: both GStreamer publishers, and every client.
#[test]
fn reduced_matrix() {
    let cells = [
        (
            Publisher::GstRtsp,
            vec![
                Player(Client::Gstreamer, Protocol::Rtmp),
                Player(Client::Gstreamer, Protocol::RtspTcp),
                Player(Client::Ffmpeg, Protocol::RtspTcp),
                Player(Client::Vlc, Protocol::HttpTs),
                Player(Client::Gstreamer, Protocol::Hls),
            ],
        ),
        (
            Publisher::GstRtmp,
            vec![
                Player(Client::Gstreamer, Protocol::HttpFlv),
                Player(Client::Gstreamer, Protocol::HttpTs),
                Player(Client::Ffmpeg, Protocol::RtspUdp),
                Player(Client::Vlc, Protocol::HttpFlv),
                Player(Client::Rtmpdump, Protocol::Rtmp),
            ],
        ),
    ];
    let results = run_matrix(&cells, 2);
    eprintln!("{}", table(&results));
    let failed = failures(&results);
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Every cell; writes `docs/interop-matrix.md` (run by `bash tools/matrix.sh`).
#[test]
#[ignore = "the full matrix takes minutes: bash tools/matrix.sh"]
fn full_matrix() {
    let cells: Vec<(Publisher, Vec<Player>)> = Publisher::ALL
        .into_iter()
        .map(|p| (p, Player::all()))
        .collect();
    // One publisher at a time: with 17 decoding players per publisher, two at once load 2
    // cores enough that GStreamer's RTP jitter buffer (UDP) shifts timestamps.
    let load_before = load_average();
    let results = run_matrix(&cells, 1);
    let table = table(&results);
    eprintln!("{table}");
    let doc = format!(
        "# Interop matrix\n\n\
         Generated by `bash tools/matrix.sh` (`full_matrix` in `tests/e2e/matrix.rs`): each \
         publisher sends `{SOURCE}` (H.264 + AAC, 10 s) in real time, and each player decodes \
         the stream to its end. PASS means the decoded video and audio frames (shown) are \
         within 10% of the source's, no timestamp goes back (a player's own complaint of \
         non-monotonic timestamps counts too; repeated times are noted) and audio and video \
         start within 100 ms of each other. Live outputs are joined before the publish starts; \
         HLS is played from the record playlist after it ends. VLC is not asked to play RTSP \
         (Debian's VLC has no live555 module) and rtmpdump reads RTMP only.\n\n\
         The players decode at once (17 per publisher), so a loaded machine shows in the RTP \
         cells first (GStreamer's jitter buffer over UDP); this run's load average (1 min, 2 \
         cores here): {load_before} before, {} after.\n\n\
         Clients: {}.\n\n{table}",
        load_average(),
        client_versions()
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/interop-matrix.md");
    std::fs::write(&path, doc).expect("write docs/interop-matrix.md");
    let failed = failures(&results);
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// A source of the codec cells: codecs Debian's ffmpeg 5.1 cannot put into FLV, published by
/// a current ffmpeg ([`current_ffmpeg`]) and played back by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum CodecSource {
    /// The shared HEVC file over Enhanced RTMP.
    HevcAac,
    /// AV1 + Opus (made by the test: 6 s, 320x240) over Enhanced RTMP.
    Av1Opus,
    /// The shared H.264 file with its audio made Opus, over RTSP/TCP.
    H264Opus,
    /// The shared H.264 file with its audio made G.711 A-law, over RTSP/TCP.
    H264Pcma,
}

impl CodecSource {
    const ALL: [CodecSource; 4] = [
        CodecSource::HevcAac,
        CodecSource::Av1Opus,
        CodecSource::H264Opus,
        CodecSource::H264Pcma,
    ];

    /// The outputs every codec cell plays, with the current ffmpeg.
    const OUTPUTS: [Protocol; 7] = [
        Protocol::Rtmp,
        Protocol::HttpFlv,
        Protocol::HttpFlvEnhanced,
        Protocol::HttpTs,
        Protocol::Hls,
        Protocol::Fmp4,
        Protocol::RtspTcp,
    ];

    fn label(self) -> &'static str {
        match self {
            CodecSource::HevcAac => "HEVC + AAC (Enhanced RTMP)",
            CodecSource::Av1Opus => "AV1 + Opus (Enhanced RTMP)",
            CodecSource::H264Opus => "H.264 + Opus (RTSP/TCP)",
            CodecSource::H264Pcma => "H.264 + G.711 A-law (RTSP/TCP)",
        }
    }

    /// The file to publish: shared media, or made from it (or from a test pattern) in `scratch`.
    fn file(self, scratch: &Path) -> PathBuf {
        let made = |name: &str, args: &[&str]| {
            let out_file = scratch.join(name);
            let src = media(SOURCE);
            let args: Vec<&str> = args
                .iter()
                .map(|a| {
                    if *a == "SOURCE" {
                        src.to_str().unwrap_or("")
                    } else {
                        a
                    }
                })
                .collect();
            let out = run_with_timeout(
                Command::new(current_ffmpeg())
                    .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
                    .args(&args)
                    .arg(&out_file),
                Duration::from_secs(120),
            );
            assert!(
                out.status.success(),
                "making {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out_file
        };
        match self {
            CodecSource::HevcAac => media("hevc_aac_10s.mp4"),
            CodecSource::Av1Opus => made(
                "av1_opus.mkv",
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc=size=320x240:rate=25",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=48000",
                    "-t",
                    "6",
                    "-c:v",
                    "libsvtav1",
                    "-preset",
                    "12",
                    "-g",
                    "25",
                    "-pix_fmt",
                    "yuv420p",
                    "-c:a",
                    "libopus",
                    "-b:a",
                    "64k",
                ],
            ),
            CodecSource::H264Opus => made(
                "h264_opus.mkv",
                &[
                    "-i", "SOURCE", "-c:v", "copy", "-c:a", "libopus", "-b:a", "64k",
                ],
            ),
            CodecSource::H264Pcma => made(
                "h264_pcma.mkv",
                &[
                    "-i", "SOURCE", "-c:v", "copy", "-c:a", "pcm_alaw", "-ar", "8000", "-ac", "1",
                ],
            ),
        }
    }

    /// Publishes `file` in real time to stream `name`.
    fn publish(self, file: &Path, server: &Server, name: &str) -> Proc {
        let mut cmd = Command::new(current_ffmpeg());
        cmd.args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-i",
        ])
        .arg(file)
        .args(["-c", "copy"]);
        match self {
            CodecSource::HevcAac | CodecSource::Av1Opus => {
                cmd.args(["-f", "flv"]).arg(server.rtmp_url(name))
            }
            CodecSource::H264Opus | CodecSource::H264Pcma => cmd
                .args(["-f", "rtsp", "-rtsp_transport", "tcp"])
                .arg(server.rtsp_url(name)),
        };
        Proc(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn the current ffmpeg"),
        )
    }

    /// The tracks the player does not get from `output`, for video and for audio: why, and
    /// what the server's log says about it (`None`: nothing, as rill sends it).
    fn not_played(self, output: Protocol) -> [Option<NotPlayed>; 2] {
        let ts = matches!(output, Protocol::HttpTs | Protocol::Hls);
        let video = match self {
            CodecSource::Av1Opus if ts => Some(NotPlayed {
                why: "video carried as AOM's AV1-in-TS spec says, which ffmpeg 9 reads as a \
                      data stream (no player here decodes AV1 in MPEG-TS)",
                logged: None,
            }),
            _ => None,
        };
        let audio = match (self, output) {
            (CodecSource::H264Pcma, _) if ts => Some(NotPlayed {
                why: "audio left out: MPEG-TS has no G.711 mapping",
                logged: Some("PCMA frames left out of MPEG-TS"),
            }),
            (CodecSource::H264Pcma, Protocol::Fmp4) => Some(NotPlayed {
                why: "audio left out: no MP4 sample entry for G.711 that players read",
                logged: Some("PCMA frames left out of fMP4"),
            }),
            (CodecSource::Av1Opus | CodecSource::H264Opus, Protocol::HttpFlv) => Some(NotPlayed {
                why: "audio left out: Opus has only the Enhanced RTMP form, which this player \
                      did not ask for",
                logged: Some("OPUS has no legacy FLV form and is left out"),
            }),
            _ => None,
        };
        [video, audio]
    }
}

/// A track a player does not get from an output.
#[derive(Clone, Copy)]
struct NotPlayed {
    why: &'static str,
    /// What the server's log says, if anything.
    logged: Option<&'static str>,
}

type CodecResults = BTreeMap<(Protocol, CodecSource), Result<String, String>>;

/// Publishes `source` and plays it with the current ffmpeg on every output; each cell is
/// judged against the source's own decoded frames, with the tracks the player does not get
/// ([`CodecSource::not_played`]) expected absent (and, when rill leaves them out, named in the
/// server's log).
fn run_codec_source(source: CodecSource, scratch: &Path) -> CodecResults {
    let ffmpeg = current_ffmpeg();
    let file = source.file(scratch);
    let whole = ffmpeg_decode(&ffmpeg, &file.to_string_lossy(), &[])
        .unwrap_or_else(|e| panic!("decoding {}: {e}", file.display()));
    let server = Server::start(WORKERS);
    let name = format!("live/{source:?}").to_lowercase();
    let start = |output: Protocol| {
        let url = output.url(&server, &name);
        let ffmpeg = ffmpeg.clone();
        let [video_out, audio_out] = source.not_played(output);
        let want = (
            if video_out.is_some() {
                0
            } else {
                whole.video.len()
            },
            if audio_out.is_some() {
                0
            } else {
                whole.audio.len()
            },
        );
        spawn(move || {
            let args: &[&str] = match output {
                Protocol::RtspTcp => &["-rtsp_transport", "tcp", "-timeout", "15000000"],
                // It announces Enhanced RTMP (`fourCcList`) only when told to.
                Protocol::Rtmp => &["-rtmp_enhanced_codecs", "hvc1,av01,Opus"],
                _ => &[],
            };
            (
                output,
                ffmpeg_decode(&ffmpeg, &url, args).and_then(|f| judge(&f, want)),
            )
        })
    };
    let live: Vec<_> = CodecSource::OUTPUTS
        .into_iter()
        .filter(|o| o.is_live())
        .map(start)
        .collect();
    sleep(Duration::from_millis(800));
    let mut publisher = source.publish(&file, &server, &name);
    let published = publisher.wait_for(PUBLISH_LIMIT);
    let mut results = CodecResults::new();
    for handle in live {
        let (output, r) = handle.join().expect("player thread");
        results.insert((output, source), r);
    }
    for output in CodecSource::OUTPUTS.into_iter().filter(|o| !o.is_live()) {
        let (output, r) = start(output).join().expect("player thread");
        results.insert((output, source), r);
    }
    let log = server.log();
    for ((output, _), r) in results.iter_mut() {
        let mut notes = Vec::new();
        let mut unlogged = Vec::new();
        for not_played in source.not_played(*output) {
            let Some(NotPlayed { why, logged }) = not_played else {
                continue;
            };
            notes.push(why.to_owned());
            if let Some(line) = logged.filter(|line| !log.contains(line)) {
                unlogged.push(format!("no log line says \"{line}\""));
            }
        }
        match r {
            Ok(counts) if unlogged.is_empty() => {
                for n in notes {
                    counts.push_str(&format!("; {n}"));
                }
            }
            Ok(_) => *r = Err(unlogged.join("; ")),
            Err(e) => e.push_str(&format!(" ({})", notes.join("; "))),
        }
    }
    match published {
        Some(s) if s.success() => {}
        other => {
            for r in results.values_mut() {
                *r = Err(format!("the publisher did not finish cleanly: {other:?}"));
            }
        }
    }
    results
}

fn codec_table(results: &CodecResults) -> String {
    let mut out = String::from("| output |");
    for source in CodecSource::ALL {
        out.push_str(&format!(" {} |", source.label()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(CodecSource::ALL.len()));
    out.push('\n');
    for output in CodecSource::OUTPUTS {
        out.push_str(&format!("| {} |", output.label()));
        for source in CodecSource::ALL {
            let cell = match results.get(&(output, source)) {
                Some(Ok(counts)) => format!("PASS ({counts})"),
                Some(Err(why)) => format!("FAIL: {}", why.replace('|', "/")),
                None => "not run".to_owned(),
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

/// The codec cells (issue 19): HEVC, AV1, Opus and G.711 published by a current ffmpeg and
/// played back by it on every output. Part of the main test command; with
/// `RILL_WRITE_DOCS=1` (set by `bash tools/matrix.sh`) it writes `docs/codec-matrix.md`.
#[test]
fn codec_matrix() {
    let scratch = std::env::temp_dir().join(format!("rill-codecs-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch folder");
    let mut results = CodecResults::new();
    for pair in CodecSource::ALL.chunks(2) {
        let runs: Vec<_> = pair
            .iter()
            .map(|source| {
                let (source, scratch) = (*source, scratch.clone());
                spawn(move || run_codec_source(source, &scratch))
            })
            .collect();
        for run in runs {
            results.extend(run.join().expect("codec source run"));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let table = codec_table(&results);
    eprintln!("{table}");
    if std::env::var_os("RILL_WRITE_DOCS").is_some() {
        let version = run_with_timeout(
            Command::new(current_ffmpeg()).arg("-version"),
            Duration::from_secs(10),
        );
        let version = String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .unwrap_or("?")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let doc = format!(
            "# Codec matrix\n\n\
             Generated by `bash tools/matrix.sh` (`codec_matrix` in `tests/e2e/matrix.rs`; the \
             main test command runs it too). A current ffmpeg ({version}, PyPI's \
             `imageio-ffmpeg`) publishes each source in real time and decodes every output to \
             its end, judged as in [the client matrix](interop-matrix.md): decoded frames within \
             10% of the source's, no timestamp going back, audio and video starting within \
             100 ms. A track a container has no place for must be absent, and the server must \
             say so in its log; the cell names it, as it names a track rill sends that the \
             player does not decode. The RTMP player announces Enhanced RTMP in \
             `connect` (`-rtmp_enhanced_codecs hvc1,av01,Opus`); plain HTTP-FLV is a player \
             that did not ask, which gets HEVC as codec id 12, AV1 (no other form) and no \
             Opus; `?enhanced=1` asks HTTP-FLV for Enhanced RTMP tags. Debian's ffmpeg 5.1 \
             reads neither form of HEVC in FLV, nor Opus or AV1 in FLV.\n\n\
             Load average (1 min, 2 cores): {}.\n\n{table}",
            load_average()
        );
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/codec-matrix.md");
        std::fs::write(&path, doc).expect("write docs/codec-matrix.md");
    }
    let failed: Vec<String> = results
        .iter()
        .filter_map(|((output, source), r)| {
            Some(format!(
                "{} -> {}: {}",
                source.label(),
                output.label(),
                r.as_ref().err()?
            ))
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// The 1-minute load average (`/proc/loadavg`).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// The clients' versions, for the table's heading.
fn client_versions() -> String {
    let first_line = |cmd: &mut Command| {
        let out = run_with_timeout(cmd, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        text.lines().next().unwrap_or("?").trim().to_owned()
    };
    let ffmpeg = first_line(Command::new("ffmpeg").arg("-version"));
    let gst = first_line(Command::new("gst-launch-1.0").arg("--version"));
    // VLC refuses to run as root, even for --version.
    let vlc = if is_root() {
        ensure_vlc_user();
        first_line(Command::new("runuser").args(["-u", VLC_USER, "--", "cvlc", "--version"]))
    } else {
        first_line(Command::new("cvlc").arg("--version"))
    };
    let rtmpdump = first_line(Command::new("rtmpdump").arg("-h"));
    let short = |s: &str, n: usize| s.split_whitespace().take(n).collect::<Vec<_>>().join(" ");
    format!(
        "{}, {}, {}, {}",
        short(&ffmpeg, 3),
        short(&gst, 3),
        short(&vlc, 3),
        short(&rtmpdump, 2)
    )
}
