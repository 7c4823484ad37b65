//! Recording (`[record]`): every publish, over RTMP or RTSP, written to an FLV file and a long
//! MPEG-TS file that ffprobe reads to the end, and files closed cleanly at shutdown.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rill_e2e::*;

/// Two workers: the publisher's worker records, the other must not record it again.
const WORKERS: usize = 2;

/// A fresh directory for recordings, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rill-e2e-record-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    fn config(&self, flv: bool, ts: bool) -> TempConfig {
        TempConfig::new(&format!(
            "[record]\nflv = {flv}\nts = {ts}\nout_path = \"{}\"\n",
            self.0.display()
        ))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits (bounded) until `count` files are in `dir` and their sizes stop changing: the
/// publish ended and the server wrote its last bytes.
fn settled_files(dir: &Path, count: usize, log: impl Fn() -> String) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let sizes = |files: &[PathBuf]| -> Vec<u64> {
        files
            .iter()
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .collect()
    };
    let mut last = (Vec::new(), Vec::new());
    loop {
        let files = files_in(dir);
        let now = (files.clone(), sizes(&files));
        if files.len() == count && now == last {
            return files;
        }
        assert!(
            Instant::now() < deadline,
            "recordings in {} did not settle: {:?}; log:\n{}",
            dir.display(),
            now,
            log()
        );
        last = now;
        sleep(Duration::from_millis(300));
    }
}

/// The container duration ffprobe reports (seconds).
fn duration_of(path: &Path) -> f64 {
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "default=nw=1:nk=1",
            ])
            .arg(path),
        Duration::from_secs(60),
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "no duration for {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// H.264 and AAC as in the reference, with at least 90% of its frames decoded and none twice
/// (every frame is recorded once, by the publisher's worker only).
fn assert_h264_aac(path: &Path, reference: &[ProbedStream]) {
    let got = ffprobe_file(path);
    for kind in ["video", "audio"] {
        let g = stream_of(&got, kind)
            .unwrap_or_else(|| panic!("{}: no {kind}: {got:?}", path.display()));
        let r = stream_of(reference, kind).expect("reference stream");
        assert_eq!(g.codec_name, r.codec_name, "{}: {kind}", path.display());
        assert!(
            g.frames * 10 >= r.frames * 9 && g.frames <= r.frames,
            "{}: {} of {} {kind} frames",
            path.display(),
            g.frames,
            r.frames
        );
    }
}

fn assert_duration_near(path: &Path, want: f64) {
    let got = duration_of(path);
    assert!(
        (got - want).abs() <= 1.0,
        "{}: duration {got:.2} s, source {want:.2} s",
        path.display()
    );
}

fn wait_publisher(label: &str, mut p: Proc, server: &Server) {
    let status = p
        .wait_for(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("{label}: publisher did not finish"));
    let mut err = String::new();
    if let Some(e) = p.0.stderr.as_mut() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        status.success(),
        "{label}: publisher failed: {err}; log:\n{}",
        server.log()
    );
}

/// `{stream}-{unix_ms}.{ext}` with the time of the publish start between `from` and `to`.
fn assert_named(path: &Path, stream: &str, ext: &str, from: u64, to: u64) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ms: u64 = name
        .strip_prefix(&format!("{stream}-"))
        .and_then(|rest| rest.strip_suffix(&format!(".{ext}")))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("unexpected recording name {name}"));
    assert!((from..=to).contains(&ms), "{name}: not within {from}..{to}");
}

#[test]
fn rtmp_publish_is_recorded_to_flv_and_ts() {
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let source = duration_of(&file);
    let dir = TempDir::new();
    let config = dir.config(true, true);
    let server = Server::start_with(WORKERS, &config.args());
    let before = unix_ms();
    let publisher = ffmpeg_publish(&file, &server.rtmp_url("live/rec"), &[]);
    wait_publisher("rtmp", publisher, &server);
    let after = unix_ms();
    let files = settled_files(&dir.0.join("live"), 2, || server.log());
    let (flv, ts) = (&files[0], &files[1]);
    assert_named(flv, "rec", "flv", before, after);
    assert_named(ts, "rec", "ts", before, after);
    // One publish: both files carry the same start time.
    assert_eq!(flv.with_extension(""), ts.with_extension(""));
    for f in [flv, ts] {
        assert_h264_aac(f, &reference);
        assert_duration_near(f, source);
    }
}

#[test]
fn rtsp_publish_is_recorded_to_flv() {
    let file = media("h264_aac_10s.flv");
    let reference = ffprobe_file(&file);
    let source = duration_of(&file);
    let dir = TempDir::new();
    let config = dir.config(true, false);
    let server = Server::start_with(WORKERS, &config.args());
    let publisher = ffmpeg_publish_rtsp(&file, &server.rtsp_url("cam/door"), "tcp", &[]);
    wait_publisher("rtsp", publisher, &server);
    let files = settled_files(&dir.0.join("cam"), 1, || server.log());
    let flv = &files[0];
    assert_eq!(flv.extension().and_then(|e| e.to_str()), Some("flv"));
    assert_h264_aac(flv, &reference);
    assert_duration_near(flv, source);
}

#[test]
fn shutdown_closes_a_recording_that_plays() {
    let file = media("h264_aac_30s.flv");
    let dir = TempDir::new();
    let config = dir.config(true, true);
    let mut server = Server::start_with(WORKERS, &config.args());
    let _publisher = ffmpeg_publish(&file, &server.rtmp_url("live/cut"), &[]);
    // Both files grow while the publish goes on (a few seconds of this stream).
    let live = dir.0.join("live");
    let deadline = Instant::now() + Duration::from_secs(20);
    while files_in(&live).len() < 2
        || files_in(&live)
            .iter()
            .any(|f| std::fs::metadata(f).map_or(0, |m| m.len()) < 400_000)
    {
        assert!(
            Instant::now() < deadline,
            "recordings did not grow: {:?}; log:\n{}",
            files_in(&live),
            server.log()
        );
        sleep(Duration::from_millis(200));
    }
    let status = server.terminate().expect("the server exits on SIGTERM");
    assert!(status.success(), "exit {status:?}; log:\n{}", server.log());
    let files = files_in(&live);
    assert_eq!(files.len(), 2, "{files:?}; log:\n{}", server.log());
    for f in &files {
        let got = ffprobe_file(f);
        assert!(
            stream_of(&got, "video").is_some_and(|v| v.codec_name == "h264" && v.frames > 25)
                && stream_of(&got, "audio").is_some_and(|a| a.codec_name == "aac"),
            "{}: {got:?}",
            f.display()
        );
        let d = duration_of(f);
        assert!((1.0..=25.0).contains(&d), "{}: duration {d}", f.display());
    }
    // The FLV file ends with the PreviousTagSize of its last tag, so no tag is cut short.
    let flv = std::fs::read(&files[0]).expect("read the FLV recording");
    let trailer = flv
        .get(flv.len().saturating_sub(4)..)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .expect("FLV trailer");
    let last_tag = flv
        .len()
        .checked_sub(4 + trailer as usize)
        .and_then(|at| flv.get(at..at + 11))
        .expect("the trailer points into the file");
    let body_len = u32::from_be_bytes([0, last_tag[1], last_tag[2], last_tag[3]]);
    assert_eq!(body_len + 11, trailer, "last tag and its trailer disagree");
}

/// The pts (seconds) of the last packet of `path`, as ffprobe reads them.
fn last_packet_time(path: &Path) -> f64 {
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "packet=pts_time",
                "-of",
                "csv=p=0",
            ])
            .arg(path),
        Duration::from_secs(60),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .fold(0.0, f64::max)
}

/// Issue 21 item 7: a recording cut short (the publisher killed 4 s into a 30 s file) closes
/// with its real duration (ffprobe used to report the source's) and a key frame index.
#[test]
fn a_recording_cut_short_has_its_real_duration_and_a_keyframe_index() {
    let file = media("h264_aac_30s.flv");
    let dir = TempDir::new();
    let config = dir.config(true, false);
    let server = Server::start_with(WORKERS, &config.args());
    let publisher = ffmpeg_publish(&file, &server.rtmp_url("live/cut"), &[]);
    sleep(Duration::from_secs(4));
    drop(publisher);
    let flv = settled_files(&dir.0.join("live"), 1, || server.log()).remove(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let has_index = |bytes: &[u8]| bytes.windows(13).any(|w| w == b"filepositions");
    while !std::fs::read(&flv).is_ok_and(|b| has_index(&b)) {
        assert!(
            Instant::now() < deadline,
            "no keyframe index in {}; log:\n{}",
            flv.display(),
            server.log()
        );
        sleep(Duration::from_millis(100));
    }
    let duration = duration_of(&flv);
    let last = last_packet_time(&flv);
    assert!(
        (2.0..10.0).contains(&last),
        "{}: last packet at {last:.2} s",
        flv.display()
    );
    assert!(
        (duration - last).abs() <= 0.5,
        "{}: ffprobe says {duration:.2} s, the media ends at {last:.2} s",
        flv.display()
    );
}
