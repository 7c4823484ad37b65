//! Helpers for end-to-end tests: start the real server binary on free loopback ports, run real
//! clients with time limits, find the shared media files.
//!
//! The server binary is `target/debug/rill` by default; set `RILL_BIN` to test another build, for
//! example `target/debug/rill-async` (the async-std runtime). Every child process is killed when
//! its handle drops.

#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` different free TCP ports on 127.0.0.1, never handed out before in this test process.
///
/// The servers under test bind with `SO_REUSEPORT`, so a second server given a port that an
/// earlier test's server still listens on would not fail: it would share the port and take
/// some of the other test's connections. Ports are therefore never reused within a process
/// (tests of one binary run as threads; binaries run one after another), and all `N` are held
/// until all are picked.
pub fn free_ports<const N: usize>() -> [u16; N] {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..1000 {
        if ports.len() == N {
            break;
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        // A port handed out earlier may belong to a server that is still starting: listening
        // on it even briefly would answer that server's readiness probe in its place.
        if handed_out.contains(&port) || ports.contains(&port) {
            continue;
        }
        ports.push(port);
        held.push(listener);
    }
    assert_eq!(ports.len(), N, "no fresh ephemeral ports left");
    handed_out.extend_from_slice(&ports);
    std::array::from_fn(|i| ports[i])
}

/// Path of a file in the shared media folder; panics loudly when the folder is missing.
pub fn media(name: &str) -> PathBuf {
    let candidates = [
        std::env::var("RILL_MEDIA_DIR")
            .map(PathBuf::from)
            .unwrap_or_default(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/media"),
        PathBuf::from("/work/shared/media"),
    ];
    for dir in candidates.iter().filter(|d| !d.as_os_str().is_empty()) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("test media {name} not found (set RILL_MEDIA_DIR to the folder holding it)");
}

/// Checks that an external tool is installed; the test command installs them, so a missing tool
/// is a failure, never a skip.
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{name} is not installed: run tools/test-all.sh, which installs it"
    );
}

/// A current ffmpeg (9.x): the static build in PyPI's `imageio-ffmpeg` wheel, which
/// `tools/test-all.sh` installs. Debian's ffmpeg 5.1 predates Enhanced RTMP and has no AV1 over
/// RTP and no AV1 encoder, so the cells of HEVC, AV1 and Opus need this one. A missing one is
/// a failure, never a skip: this panics, naming the fix.
pub fn current_ffmpeg() -> PathBuf {
    static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
            ])
            .output()
            .map_err(|e| format!("python3: {e}"))?;
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && path.is_file() {
            Ok(path)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    match found {
        Ok(path) => path.clone(),
        Err(e) => panic!(
            "a current ffmpeg is required (pip3 install imageio-ffmpeg; tools/test-all.sh \
             installs it): {e}"
        ),
    }
}

/// The server binary under test: `RILL_BIN` when set (a relative path is taken from the workspace
/// root, so `RILL_BIN=target/debug/rill-async cargo test -p rill-e2e` tests the async-std runtime),
/// else the debug build of `rill`. The same tests run against either binary.
pub fn server_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The debug build, which `cargo build` (and tools/test-all.sh) keeps current; a release build
    // may be stale, so it is used only when asked for through RILL_BIN.
    let p = match std::env::var_os("RILL_BIN") {
        Some(bin) => root.join(bin),
        None => root.join("target/debug/rill"),
    };
    assert!(
        p.is_file(),
        "server binary {} not built: run `cargo build --workspace` first (tools/test-all.sh does)",
        p.display()
    );
    p
}

/// A running server on free loopback ports, killed on drop.
pub struct Server {
    child: Child,
    /// RTMP port.
    pub rtmp_port: u16,
    /// HTTP port.
    pub http_port: u16,
    /// RTSP port.
    pub rtsp_port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts the server with default settings and `workers` event loops.
    pub fn start(workers: usize) -> Server {
        Server::start_with(workers, &[])
    }

    /// Starts the server with extra command line arguments. A port that another test took
    /// between being picked and being bound makes the server exit; it is then started again
    /// on other ports (up to 3 tries).
    pub fn start_with(workers: usize, extra: &[&str]) -> Server {
        Server::start_limited(workers, extra, None)
    }

    /// Starts the server as [`Server::start_with`] does, with its open-file limit (soft and
    /// hard, so the server cannot raise it) set to `open_files` (`ulimit -n` in a shell that
    /// then execs the server, so the server's PID is the shell's).
    pub fn start_with_open_files(workers: usize, extra: &[&str], open_files: u32) -> Server {
        Server::start_limited(workers, extra, Some(open_files))
    }

    fn start_limited(workers: usize, extra: &[&str], open_files: Option<u32>) -> Server {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut server = Server::spawn(workers, extra, open_files);
            match server.wait_listening() {
                Ok(()) => return server,
                Err(e) if tries < 3 && !server.is_running() => {
                    eprintln!("server exited at start ({e}); retrying on other ports");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn spawn(workers: usize, extra: &[&str], open_files: Option<u32>) -> Server {
        let [rtmp_port, http_port, rtsp_port] = free_ports();
        let log = std::env::temp_dir().join(format!("rill-e2e-{rtmp_port}.log"));
        let log_file = std::fs::File::create(&log).expect("create server log");
        let mut command = match open_files {
            None => Command::new(server_binary()),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                    .arg(server_binary());
                sh
            }
        };
        let child = command
            .args(["--rtmp-addr", &format!("127.0.0.1:{rtmp_port}")])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(["--rtsp-addr", &format!("127.0.0.1:{rtsp_port}")])
            .args(["--workers", &workers.to_string()])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RILL_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start the server binary");
        Server {
            child,
            rtmp_port,
            http_port,
            rtsp_port,
            log,
        }
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        // The server logs its start line before it binds: until then, whatever answers on its
        // ports is not the server.
        while !self.log().contains(" starting") {
            if Instant::now() >= deadline || !self.is_running() {
                return Err(format!("server did not start; log:\n{}", self.log()));
            }
            sleep(Duration::from_millis(20));
        }
        for port in [self.rtmp_port, self.http_port, self.rtsp_port] {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            // A connect to a port nobody listens on yet can, rarely, pick that same port as
            // its source and connect to itself (TCP simultaneous open): that is not the server.
            let listening = || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
            };
            while !listening() {
                if Instant::now() >= deadline || !self.is_running() {
                    return Err(format!(
                        "server did not listen on {port}; log:\n{}",
                        self.log()
                    ));
                }
                sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// `rtmp://127.0.0.1:port/{path}`.
    pub fn rtmp_url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.rtmp_port)
    }

    /// `http://127.0.0.1:port/{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.http_port)
    }

    /// `rtsp://127.0.0.1:port/{path}`.
    pub fn rtsp_url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{path}", self.rtsp_port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's process id (for `/proc/PID/...` statistics).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        wait_child(&mut self.child, Duration::from_secs(10))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Waits up to `limit` for the process to exit.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.0, limit)
    }
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(Duration::from_millis(20));
    }
}

/// Runs a command to completion within `limit`, capturing its output; kills it at the limit.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let status = match wait_child(&mut child, limit) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            child.wait().expect("wait after kill")
        }
    };
    Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

/// Starts `ffmpeg -re -i file -c copy -f flv url` (publishing in real time), killed on drop.
pub fn ffmpeg_publish(file: &Path, url: &str, extra_input_args: &[&str]) -> Proc {
    require_tool("ffmpeg");
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(extra_input_args)
        .arg("-i")
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg");
    Proc(child)
}

/// What ffprobe says of one stream.
#[derive(Debug, Clone, Default)]
pub struct ProbedStream {
    /// `video` or `audio`.
    pub codec_type: String,
    /// `h264`, `hevc`, `aac`, ...
    pub codec_name: String,
    /// Video width.
    pub width: u64,
    /// Video height.
    pub height: u64,
    /// Frames decoded (`-count_frames`).
    pub frames: u64,
    /// Audio sample rate.
    pub sample_rate: u64,
}

/// Probes `input` with `ffprobe -count_frames` (reads the whole input: for a live URL, until it ends).
pub fn ffprobe(input: &str, limit: Duration) -> (Vec<ProbedStream>, Output) {
    require_tool("ffprobe");
    let out = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-count_frames",
            "-show_streams",
            "-of",
            "json",
            input,
        ]),
        limit,
    );
    (parse_probe(&out.stdout), out)
}

/// Probes a local file (no network options).
pub fn ffprobe_file(path: &Path) -> Vec<ProbedStream> {
    require_tool("ffprobe");
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-show_streams",
                "-of",
                "json",
            ])
            .arg(path),
        Duration::from_secs(60),
    );
    parse_probe(&out.stdout)
}

fn parse_probe(json: &[u8]) -> Vec<ProbedStream> {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap_or(serde_json::Value::Null);
    let num = |s: &serde_json::Value, k: &str| -> u64 {
        match &s[k] {
            serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
            serde_json::Value::String(t) => t.parse().unwrap_or(0),
            _ => 0,
        }
    };
    v["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .map(|s| ProbedStream {
                    codec_type: s["codec_type"].as_str().unwrap_or("").to_owned(),
                    codec_name: s["codec_name"].as_str().unwrap_or("").to_owned(),
                    width: num(s, "width"),
                    height: num(s, "height"),
                    frames: num(s, "nb_read_frames"),
                    sample_rate: num(s, "sample_rate"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The stream of `kind` (`video`/`audio`) in a probe result.
pub fn stream_of<'a>(streams: &'a [ProbedStream], kind: &str) -> Option<&'a ProbedStream> {
    streams.iter().find(|s| s.codec_type == kind)
}

/// Reads an HTTP response head from `stream` (bounded); returns it and any body bytes after it.
pub fn read_http_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).into_owned();
            return (head, buf[pos + 4..].to_vec());
        }
        assert!(buf.len() < 65536, "HTTP head too long");
        let n = stream.read(&mut chunk).expect("read HTTP head");
        assert!(
            n > 0,
            "connection closed before the HTTP head ended: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends a raw request and returns the whole response (until the server closes), bounded in time.
pub fn http_get_raw(port: u16, request: &str, limit: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(limit)).expect("timeout");
    s.write_all(request.as_bytes()).expect("send request");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// A plain `GET` (with `Connection: close`): status code, lowercased head text, body.
pub fn http_get(port: u16, path: &str, limit: Duration) -> (u16, String, Vec<u8>) {
    let raw = http_get_raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        limit,
    );
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    (status, head, body)
}

/// What [`check_ts`] found in a captured MPEG-TS stream.
#[derive(Debug, Default, Clone)]
pub struct TsCheck {
    /// 188-byte packets.
    pub packets: usize,
    /// PIDs that carried payload, with their packet counts.
    pub pids: std::collections::BTreeMap<u16, usize>,
    /// Continuity counter jumps not announced by a discontinuity indicator.
    pub cc_errors: Vec<String>,
    /// PCR values seen.
    pub pcrs: usize,
    /// Largest step between consecutive PCRs, in ms.
    pub max_pcr_gap_ms: f64,
    /// PCRs that went backwards (outside a discontinuity).
    pub pcr_backwards: usize,
}

/// Checks a captured transport stream with no help from rill's own demuxer: sync bytes,
/// continuity counters per PID (duplicates allowed, jumps only after a discontinuity indicator)
/// and the PCR (present, monotonic, gaps measured). Panics on lost sync.
pub fn check_ts(data: &[u8]) -> TsCheck {
    let mut c = TsCheck::default();
    assert_eq!(data.len() % 188, 0, "TS length is not a multiple of 188");
    let mut last_cc: std::collections::HashMap<u16, u8> = Default::default();
    let mut last_pcr: Option<u64> = None;
    for (i, p) in data.chunks(188).enumerate() {
        assert_eq!(p[0], 0x47, "lost sync at packet {i}");
        c.packets += 1;
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        let afc = (p[3] >> 4) & 3;
        let cc = p[3] & 0x0F;
        let mut discontinuity = false;
        if afc & 2 != 0 && p[4] > 0 {
            let flags = p[5];
            discontinuity = flags & 0x80 != 0;
            if flags & 0x10 != 0 {
                let b = &p[6..12];
                let base = (u64::from(b[0]) << 25)
                    | (u64::from(b[1]) << 17)
                    | (u64::from(b[2]) << 9)
                    | (u64::from(b[3]) << 1)
                    | (u64::from(b[4]) >> 7);
                let ext = (u64::from(b[4] & 1) << 8) | u64::from(b[5]);
                let pcr = base * 300 + ext;
                c.pcrs += 1;
                if let (Some(prev), false) = (last_pcr, discontinuity) {
                    if pcr < prev {
                        c.pcr_backwards += 1;
                    } else {
                        let gap = (pcr - prev) as f64 / 27_000.0;
                        if gap > c.max_pcr_gap_ms {
                            c.max_pcr_gap_ms = gap;
                        }
                    }
                }
                last_pcr = Some(pcr);
            }
        }
        if afc & 1 != 0 {
            *c.pids.entry(pid).or_default() += 1;
            if let Some(prev) = last_cc.get(&pid) {
                if cc != (prev + 1) & 0x0F && cc != *prev && !discontinuity {
                    c.cc_errors
                        .push(format!("pid {pid} packet {i}: cc {cc} after {prev}"));
                }
            }
            last_cc.insert(pid, cc);
        }
    }
    c
}

/// Open file descriptors of process `pid` (entries of `/proc/PID/fd`); `None` when unreadable.
pub fn proc_fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// Resident set size of process `pid` in KiB (`VmRSS` of `/proc/PID/status`); `None` when unreadable.
pub fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Writes a dev certificate into `dir` with the server binary's own command.
pub fn make_cert(dir: &Path) {
    let out = run_with_timeout(
        Command::new(server_binary())
            .args(["cert", "--self-signed"])
            .arg(dir)
            .args(["--host", "127.0.0.1", "--host", "localhost"]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "cert: {out:?}");
    assert!(dir.join("cert.pem").is_file() && dir.join("key.pem").is_file());
}

/// A configuration file in a fresh temporary folder, removed on drop.
pub struct TempConfig {
    dir: PathBuf,
    /// The file's path.
    pub path: PathBuf,
}

impl TempConfig {
    /// Writes `toml` to a new `rill.toml`.
    pub fn new(toml: &str) -> TempConfig {
        let dir = std::env::temp_dir().join(format!(
            "rill-e2e-cfg-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("rill.toml");
        std::fs::write(&path, toml).expect("write config");
        TempConfig { dir, path }
    }

    /// The `--config PATH` arguments for [`Server::start_with`].
    pub fn args(&self) -> [&str; 2] {
        ["--config", self.path.to_str().expect("utf-8 temp path")]
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `ffmpeg -re -i file {codec_args} -f rtsp -rtsp_transport {transport} url` (publishing
/// over RTSP in real time), killed on drop. `codec_args` default to `-c copy` when empty.
pub fn ffmpeg_publish_rtsp(file: &Path, url: &str, transport: &str, codec_args: &[&str]) -> Proc {
    require_tool("ffmpeg");
    let codec_args: &[&str] = if codec_args.is_empty() {
        &["-c", "copy"]
    } else {
        codec_args
    };
    let child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-i",
        ])
        .arg(file)
        .args(codec_args)
        .args(["-f", "rtsp", "-rtsp_transport", transport, url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg");
    Proc(child)
}

/// Probes an RTSP URL over `transport` (`tcp` or `udp`) with `ffprobe -count_frames`, until the
/// server ends the stream.
pub fn ffprobe_rtsp(url: &str, transport: &str, limit: Duration) -> (Vec<ProbedStream>, Output) {
    require_tool("ffprobe");
    let out = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-timeout",
            "15000000",
            "-count_frames",
            "-show_streams",
            "-of",
            "json",
            url,
        ]),
        limit,
    );
    (parse_probe(&out.stdout), out)
}

/// Connects to `127.0.0.1:port` from the loopback address `source` (Linux accepts any 127.x.y.z
/// as a source), so a test client can have a client address of its own.
pub fn connect_from(source: std::net::Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    socket.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// The malformed-input harness shared by the `malformed*` suites: one server with short
/// deadlines, a healthy in-process RTMP publisher with healthy players on its stream, a table of
/// offending cases run several at a time against the same server, and the check that the healthy
/// players lost nothing.
pub mod harness {
    use std::collections::VecDeque;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};
    use std::thread::{self, sleep, JoinHandle};
    use std::time::{Duration, Instant};

    use bytes::{Bytes, BytesMut};
    use rill_core::flv::{FlvDemuxer, Tag, TagType};
    use rill_core::rtmp::chunk::write_fmt0_header;
    use rill_core::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
    use rill_core::rtmp::handshake::HANDSHAKE_RANDOM_LEN;
    use rill_core::rtmp::message_type as mt;

    use super::{media, Server, TempConfig};

    /// Event loops of the server: two, so offenders, publisher and players meet across loops.
    pub const WORKERS: usize = 2;
    /// Handshake + connect deadline configured for the suite (ms).
    pub const HANDSHAKE_MS: u64 = 1500;
    /// HTTP request head deadline configured for the suite (ms).
    pub const HEAD_MS: u64 = 1500;
    /// Idle deadline of connections that neither publish nor play (ms).
    pub const IDLE_MS: u64 = 3000;
    /// Publisher reconnect grace (ms): short, so players of an ended stream finish soon.
    pub const GRACE_MS: u64 = 300;
    /// Bound for input a parser can refuse as soon as it arrives (generous: debug build, shared CPU).
    pub const AT_ONCE: Duration = Duration::from_millis(2500);
    /// Bound for offenders only a deadline can catch (handshake or HTTP head).
    pub const BY_DEADLINE: Duration = Duration::from_millis(HANDSHAKE_MS + 3000);
    /// Bound for connected-but-idle offenders.
    pub const BY_IDLE: Duration = Duration::from_millis(IDLE_MS + 3000);
    /// Longest wall-clock gap allowed between two video frames at a healthy player.
    pub const MAX_STALL: Duration = Duration::from_millis(2500);
    /// Healthy stream name.
    pub const HEALTHY: &str = "healthy";

    pub fn config(hub_extra: &str, limits_extra: &str) -> TempConfig {
        config_with(hub_extra, limits_extra, "")
    }

    /// [`config`] plus whole extra sections (`sections`, e.g. `"[rtsp]\n..."`).
    pub fn config_with(hub_extra: &str, limits_extra: &str, sections: &str) -> TempConfig {
        TempConfig::new(&format!(
            "[hub]\npublisher_grace_ms = {GRACE_MS}\nplay_wait_timeout_ms = 5000\n{hub_extra}\n\
         [limits]\nhandshake_timeout_ms = {HANDSHAKE_MS}\nhttp_head_timeout_ms = {HEAD_MS}\n\
         idle_timeout_ms = {IDLE_MS}\n{limits_extra}\n\
         [hls]\nrecord_max_bytes = {HLS_RECORD_BYTES}\n{sections}\n"
        ))
    }

    /// The HLS record playlist keeps old segments in memory up to this many bytes per stream; kept
    /// small here so that the leak checks see real leaks, not the record window filling up.
    pub const HLS_RECORD_BYTES: usize = 1 << 20;

    // ---------------------------------------------------------------------------------------------
    // Media and in-process RTMP clients
    // ---------------------------------------------------------------------------------------------

    /// The tags of `h264_aac_30s.flv`, read once.
    pub fn media_tags() -> &'static [Tag] {
        static TAGS: OnceLock<Vec<Tag>> = OnceLock::new();
        TAGS.get_or_init(|| {
            let data = std::fs::read(media("h264_aac_30s.flv")).expect("read test media");
            let mut d = FlvDemuxer::default();
            d.push(&data);
            let mut tags = Vec::new();
            while let Ok(Some(t)) = d.poll_tag() {
                tags.push(t);
            }
            assert!(tags.len() > 500, "media has {} tags", tags.len());
            tags
        })
    }

    /// An AVC coded frame (not a sequence header).
    pub fn is_video_frame(body: &[u8]) -> bool {
        body.first().map(|b| b & 0x0f) == Some(7) && body.get(1) == Some(&1)
    }

    /// A sequence header (AVC or AAC) of the media file.
    pub fn is_config(tag: &Tag) -> bool {
        tag.body.get(1) == Some(&0)
    }

    pub fn would_block(e: &std::io::Error) -> bool {
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    }

    /// A [`ClientSession`] on a blocking socket.
    pub struct RtmpClient {
        pub s: TcpStream,
        pub session: ClientSession,
        pub started: Instant,
    }

    impl RtmpClient {
        pub fn connect(port: u16, app: &str) -> Result<RtmpClient, String> {
            let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(|e| e.to_string())?;
            let url = format!("rtmp://127.0.0.1:{port}/{app}");
            let random: Vec<u8> = (0..HANDSHAKE_RANDOM_LEN).map(|i| (i * 7) as u8).collect();
            let session = ClientSession::new(ClientConfig::new(app, &url), &random, 0);
            let mut c = RtmpClient {
                s,
                session,
                started: Instant::now(),
            };
            c.flush()?;
            Ok(c)
        }

        pub fn flush(&mut self) -> Result<(), String> {
            while let Some(b) = self.session.poll_transmit() {
                self.s.write_all(&b).map_err(|e| format!("write: {e}"))?;
            }
            Ok(())
        }

        /// Reads once (at most ~50 ms); false when the server closed.
        pub fn read_once(&mut self, buf: &mut [u8]) -> Result<bool, String> {
            match self.s.read(buf) {
                Ok(0) => Ok(false),
                Ok(n) => {
                    let now = self.started.elapsed().as_millis() as u64;
                    self.session
                        .handle_input(&buf[..n], now)
                        .map_err(|e| format!("client session: {e}"))?;
                    self.flush()?;
                    Ok(true)
                }
                Err(e) if would_block(&e) => Ok(true),
                Err(_) => Ok(false),
            }
        }

        /// Waits for an event matching `want`; a rejection or a close is an error.
        pub fn wait_event(
            &mut self,
            limit: Duration,
            want: impl Fn(&ClientEvent) -> bool,
        ) -> Result<ClientEvent, String> {
            let deadline = Instant::now() + limit;
            let mut buf = vec![0u8; 65536];
            loop {
                while let Some(ev) = self.session.poll_event() {
                    if want(&ev) {
                        return Ok(ev);
                    }
                    if let ClientEvent::Rejected { code, description } = ev {
                        return Err(format!("rejected: {code}: {description}"));
                    }
                }
                if !self.read_once(&mut buf)? {
                    return Err("server closed the connection".into());
                }
                if Instant::now() > deadline {
                    return Err(format!("no answer within {limit:?}"));
                }
            }
        }
    }

    /// Connects and publishes `live/{name}`.
    pub fn start_publishing(port: u16, name: &str, limit: Duration) -> Result<RtmpClient, String> {
        let mut c = RtmpClient::connect(port, "live")?;
        c.session.publish(name);
        c.flush()?;
        c.wait_event(limit, |e| matches!(e, ClientEvent::Publishing { .. }))?;
        Ok(c)
    }

    /// What a publisher thread sent.
    pub struct Sent {
        /// Bodies of the coded video frames, in order.
        pub frames: Vec<Bytes>,
        /// Garbage messages injected.
        pub garbage: usize,
    }

    /// A publisher thread sending the media file (looping) at `speed` times real time.
    pub struct Publisher {
        pub stop: Arc<AtomicBool>,
        pub thread: Option<JoinHandle<Result<Sent, String>>>,
    }

    impl Publisher {
        /// Publishes `live/{name}`; returns once the server accepted the publish. Every `every`
        /// media messages, the next of `garbage` (type id, payload) is sent as well.
        pub fn start(
            port: u16,
            name: &str,
            speed: f64,
            garbage: Vec<(u8, Vec<u8>)>,
            every: usize,
        ) -> Publisher {
            let mut c = start_publishing(port, name, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("healthy publisher of {name}: {e}"));
            // Whatever the server says from now on (acknowledgements) is read and dropped.
            let mut reader = c.s.try_clone().expect("clone socket");
            reader
                .set_read_timeout(Some(Duration::from_secs(600)))
                .expect("timeout");
            thread::spawn(move || {
                let mut buf = vec![0u8; 16384];
                while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
            });
            let stop = Arc::new(AtomicBool::new(false));
            let stop2 = stop.clone();
            let thread = thread::spawn(move || {
                let tags = media_tags();
                let t0 = Instant::now();
                let mut offset = 0u64;
                let mut sent = Sent {
                    frames: Vec::new(),
                    garbage: 0,
                };
                let mut count = 0usize;
                let mut first_loop = true;
                'outer: loop {
                    for tag in tags {
                        if stop2.load(Ordering::Relaxed) {
                            break 'outer;
                        }
                        if tag.tag_type == TagType::Script || (!first_loop && is_config(tag)) {
                            continue;
                        }
                        let ts = offset + u64::from(tag.timestamp);
                        if speed > 0.0 {
                            let due = t0 + Duration::from_secs_f64(ts as f64 / 1000.0 / speed);
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                sleep(wait);
                            }
                        }
                        c.session
                            .send_media(tag.tag_type as u8, ts as u32, &tag.body)
                            .map_err(|e| e.to_string())?;
                        c.flush()?;
                        if tag.tag_type == TagType::Video && is_video_frame(&tag.body) {
                            sent.frames.push(tag.body.clone());
                        }
                        count += 1;
                        if !garbage.is_empty() && count.is_multiple_of(every) {
                            let (type_id, payload) = &garbage[sent.garbage % garbage.len()];
                            c.session
                                .send_media(*type_id, ts as u32, payload)
                                .map_err(|e| e.to_string())?;
                            c.flush()?;
                            sent.garbage += 1;
                        }
                    }
                    offset += u64::from(tags.last().map_or(0, |t| t.timestamp)) + 40;
                    first_loop = false;
                }
                // FCUnpublish / closeStream / deleteStream, then close.
                c.session.close();
                c.flush()?;
                let _ = c.s.shutdown(Shutdown::Write);
                Ok(sent)
            });
            Publisher {
                stop,
                thread: Some(thread),
            }
        }

        /// Stops sending and leaves politely; returns what was sent.
        pub fn finish(mut self) -> Sent {
            self.stop.store(true, Ordering::Relaxed);
            let thread = self.thread.take().expect("publisher thread");
            match thread.join() {
                Ok(Ok(sent)) => sent,
                Ok(Err(e)) => panic!("healthy publisher failed: {e}"),
                Err(_) => panic!("healthy publisher thread panicked"),
            }
        }
    }

    impl Drop for Publisher {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// What a player received.
    #[derive(Debug, Default)]
    pub struct Received {
        /// Coded video frame bodies, in order.
        pub frames: Vec<Bytes>,
        /// Their timestamps.
        pub timestamps: Vec<u32>,
        /// Longest wall-clock gap between two video frames.
        pub max_gap: Duration,
        /// The stream ended at a message boundary (HTTP: EOF with no partial tag; RTMP: stream end
        /// status or EOF).
        pub clean_end: bool,
        /// Why it ended.
        pub end: String,
    }

    impl Received {
        pub fn frame(&mut self, body: Bytes, ts: u32, last: &mut Option<Instant>) {
            let now = Instant::now();
            if let Some(l) = *last {
                self.max_gap = self.max_gap.max(now - l);
            }
            *last = Some(now);
            self.frames.push(body);
            self.timestamps.push(ts);
        }
    }

    /// Reads an HTTP response head; returns it and the bytes after it.
    pub fn read_head(s: &mut TcpStream, limit: Duration) -> Result<(String, Vec<u8>), String> {
        let deadline = Instant::now() + limit;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..pos]).into_owned();
                return Ok((head, buf[pos + 4..].to_vec()));
            }
            if buf.len() > 65536 {
                return Err("HTTP head too long".into());
            }
            match s.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "closed before the head ended: {:?}",
                        String::from_utf8_lossy(&buf)
                    ))
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(format!("read head: {e}")),
            }
            if Instant::now() > deadline {
                return Err(format!("no HTTP head within {limit:?}"));
            }
        }
    }

    /// An HTTP-FLV player of `live/{name}.flv` in a thread; ends when the server closes.
    pub fn flv_player(
        port: u16,
        name: &str,
        limit: Duration,
    ) -> JoinHandle<Result<Received, String>> {
        let path = format!("/live/{name}.flv");
        thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
                .map_err(|e| e.to_string())?;
            let (head, body) = read_head(&mut s, Duration::from_secs(20))?;
            if !head.starts_with("HTTP/1.1 200") {
                return Err(format!("player answer: {head}"));
            }
            let deadline = Instant::now() + limit;
            let mut demuxer = FlvDemuxer::default();
            demuxer.push(&body);
            let mut got = Received::default();
            let mut last = None;
            let mut buf = vec![0u8; 65536];
            let mut total = body.len();
            loop {
                loop {
                    match demuxer.poll_tag() {
                        Ok(Some(tag)) => {
                            if tag.tag_type == TagType::Video && is_video_frame(&tag.body) {
                                got.frame(tag.body, tag.timestamp, &mut last);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return Err(format!("player got bad FLV: {e}")),
                    }
                }
                match s.read(&mut buf) {
                    Ok(0) => {
                        // rill ends the body with the last tag's PreviousTagSize (checked in
                        // core/tests/engine_policy.rs); like players do, this one also takes a
                        // complete last tag without it, which leaves exactly those 4 bytes out.
                        let partial = demuxer.buffered();
                        if partial > 0 {
                            demuxer.push(&[0; 4]);
                            while let Ok(Some(tag)) = demuxer.poll_tag() {
                                if tag.tag_type == TagType::Video && is_video_frame(&tag.body) {
                                    got.frame(tag.body, tag.timestamp, &mut last);
                                }
                            }
                        }
                        got.clean_end = demuxer.buffered() == 0;
                        got.end = format!(
                            "EOF after {total} body bytes, {} bytes of a partial tag, {} frames",
                            demuxer.buffered(),
                            got.frames.len()
                        );
                        return Ok(got);
                    }
                    Ok(n) => {
                        total += n;
                        demuxer.push(&buf[..n]);
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => {
                        got.end = format!("read error: {e}");
                        return Ok(got);
                    }
                }
                if Instant::now() > deadline {
                    got.end = format!("still streaming after {limit:?}");
                    return Ok(got);
                }
            }
        })
    }

    /// An RTMP player of `live/{name}` in a thread; ends at the stream's end or the server's close.
    pub fn rtmp_player(
        port: u16,
        name: &str,
        limit: Duration,
    ) -> JoinHandle<Result<Received, String>> {
        let name = name.to_owned();
        thread::spawn(move || {
            let mut c = RtmpClient::connect(port, "live")?;
            c.session.play(&name);
            c.flush()?;
            let deadline = Instant::now() + limit;
            let mut got = Received::default();
            let mut last = None;
            let mut buf = vec![0u8; 65536];
            loop {
                while let Some(ev) = c.session.poll_event() {
                    match ev {
                        ClientEvent::Media {
                            type_id: mt::VIDEO,
                            timestamp,
                            payload,
                        } if is_video_frame(&payload) => got.frame(payload, timestamp, &mut last),
                        ClientEvent::StreamEnded => {
                            got.clean_end = true;
                            got.end = "stream ended".into();
                            return Ok(got);
                        }
                        ClientEvent::Rejected { code, description } => {
                            return Err(format!("play rejected: {code} {description}"))
                        }
                        _ => {}
                    }
                }
                match c.read_once(&mut buf) {
                    Ok(true) => {}
                    Ok(false) => {
                        got.clean_end = true;
                        got.end = "EOF".into();
                        return Ok(got);
                    }
                    Err(e) => {
                        got.end = e;
                        return Ok(got);
                    }
                }
                if Instant::now() > deadline {
                    got.end = format!("still streaming after {limit:?}");
                    return Ok(got);
                }
            }
        })
    }

    /// Checks a player's frames against what the publisher sent: all of them, in order.
    pub fn check_player(
        label: &str,
        got: &Received,
        sent: &[Bytes],
        exact: bool,
    ) -> Result<(), String> {
        if !got.clean_end {
            return Err(format!("{label}: unclean end: {}", got.end));
        }
        if !got.timestamps.windows(2).all(|w| w[0] <= w[1]) {
            return Err(format!("{label}: video timestamps went back"));
        }
        if got.max_gap > MAX_STALL {
            return Err(format!("{label}: stalled for {:?}", got.max_gap));
        }
        if exact {
            if got.frames.len() != sent.len() {
                return Err(format!(
                    "{label}: {} video frames received, {} sent",
                    got.frames.len(),
                    sent.len()
                ));
            }
            if let Some(i) = (0..sent.len()).find(|&i| got.frames[i] != sent[i]) {
                return Err(format!("{label}: video frame {i} differs"));
            }
        } else {
            // Every sent frame appears, in order, among what was received.
            let mut it = got.frames.iter();
            for (i, f) in sent.iter().enumerate() {
                if !it.any(|g| g == f) {
                    return Err(format!(
                        "{label}: sent video frame {i} of {} never arrived ({} received)",
                        sent.len(),
                        got.frames.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// A server with a healthy publisher and two healthy players.
    /// A healthy player thread of the harness.
    pub type PlayerThread = JoinHandle<Result<Received, String>>;

    /// A healthy player: its label, its thread, and how many leading bytes of each FLV video
    /// tag body the frames it records lack (0 for FLV and RTMP players; 5, the FLV video
    /// header, for players that get bare frame payloads).
    pub struct HealthyPlayer {
        /// For messages.
        pub label: &'static str,
        /// The player thread.
        pub thread: PlayerThread,
        /// FLV body bytes absent from what it records.
        pub skip: usize,
    }

    /// A server with a healthy publisher and healthy players.
    pub struct Harness {
        pub server: Server,
        pub config: TempConfig,
        pub publisher: Option<Publisher>,
        pub players: Vec<HealthyPlayer>,
        pub cases: usize,
    }

    impl Harness {
        pub fn start(hub_extra: &str, limits_extra: &str) -> Harness {
            Harness::start_with(config(hub_extra, limits_extra), |_| Vec::new())
        }

        /// Starts the server with `cfg`, the HTTP-FLV and RTMP players plus those `more` starts
        /// (each must wait for the stream), then the healthy publisher.
        pub fn start_with(
            cfg: TempConfig,
            more: impl FnOnce(&Server) -> Vec<HealthyPlayer>,
        ) -> Harness {
            let server = Server::start_with(WORKERS, &cfg.args());
            let limit = Duration::from_secs(150);
            let mut players = vec![
                HealthyPlayer {
                    label: "HTTP-FLV player",
                    thread: flv_player(server.http_port, HEALTHY, limit),
                    skip: 0,
                },
                HealthyPlayer {
                    label: "RTMP player",
                    thread: rtmp_player(server.rtmp_port, HEALTHY, limit),
                    skip: 0,
                },
            ];
            players.extend(more(&server));
            // The players wait for the stream, so they must get it from its first frame.
            sleep(Duration::from_millis(400));
            let publisher = Publisher::start(server.rtmp_port, HEALTHY, 1.0, vec![], 0);
            sleep(Duration::from_millis(500));
            Harness {
                server,
                config: cfg,
                publisher: Some(publisher),
                players,
                cases: 0,
            }
        }

        pub fn ports(&self) -> Ports {
            Ports {
                rtmp: self.server.rtmp_port,
                http: self.server.http_port,
                rtsp: self.server.rtsp_port,
                pid: self.server.pid(),
            }
        }

        pub fn assert_up(&mut self, when: &str) {
            let log = self.server.log();
            assert!(self.server.is_running(), "server died {when}; log:\n{log}");
            assert!(
                !log.contains("panicked"),
                "server panicked {when}; log:\n{log}"
            );
        }

        /// Runs `cases`, `parallel` at a time; panics listing every failed case.
        pub fn run(&mut self, label: &str, cases: Vec<Case>, parallel: usize) {
            let ports = self.ports();
            let total = cases.len();
            let mut failures = Vec::new();
            let mut queue: VecDeque<Case> = cases.into();
            while !queue.is_empty() {
                let batch: Vec<Case> = (0..parallel).filter_map(|_| queue.pop_front()).collect();
                let handles: Vec<_> = batch
                    .into_iter()
                    .map(|c| {
                        let name = c.name;
                        let f = c.run;
                        (name, thread::spawn(move || f(ports)))
                    })
                    .collect();
                for (name, h) in handles {
                    match h.join() {
                        Ok(Ok(v)) => eprintln!("[{label}] ok   {name}: {v}"),
                        Ok(Err(e)) => {
                            eprintln!("[{label}] FAIL {name}: {e}");
                            failures.push(format!("{name}: {e}"));
                        }
                        Err(_) => failures.push(format!("{name}: case panicked")),
                    }
                }
                self.assert_up(&format!("during {label}"));
            }
            self.cases += total;
            assert!(
                failures.is_empty(),
                "{label}: {} of {total} cases failed:\n{}\nserver log tail:\n{}",
                failures.len(),
                failures.join("\n"),
                log_tail(&self.server.log(), 40)
            );
        }

        /// Stops the healthy publisher and checks its players got everything; returns the case count.
        pub fn finish(mut self) -> usize {
            self.assert_up("before the healthy publisher stopped");
            let sent = self.publisher.take().expect("publisher").finish();
            assert!(
                sent.frames.len() > 50,
                "only {} frames sent",
                sent.frames.len()
            );
            for p in self.players.drain(..) {
                let label = p.label;
                let got = p
                    .thread
                    .join()
                    .expect("player thread")
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                let expected: Vec<Bytes> = sent
                    .frames
                    .iter()
                    .map(|f| f.slice(p.skip.min(f.len())..))
                    .collect();
                if let Err(e) = check_player(label, &got, &expected, true) {
                    panic!("{e}; log tail:\n{}", log_tail(&self.server.log(), 40));
                }
                eprintln!(
                    "{label}: {} of {} frames, longest gap {:?}, end: {}",
                    got.frames.len(),
                    sent.frames.len(),
                    got.max_gap,
                    got.end
                );
            }
            self.assert_up("at the end");
            self.cases
        }
    }

    pub fn log_tail(log: &str, n: usize) -> String {
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    #[derive(Clone, Copy)]
    pub struct Ports {
        pub rtmp: u16,
        pub http: u16,
        pub rtsp: u16,
        /// The server's process id.
        pub pid: u32,
    }

    /// How an offender was dealt with.
    pub enum Verdict {
        /// The server closed the connection.
        Closed(Duration),
        /// The server answered with an error (RTMP `_error` / error status, HTTP 4xx/5xx, WS close).
        Answered(String, Duration),
    }

    impl std::fmt::Display for Verdict {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Verdict::Closed(t) => write!(f, "closed after {t:?}"),
                Verdict::Answered(what, t) => write!(f, "answered {what} after {t:?}"),
            }
        }
    }

    pub type Check = Result<Verdict, String>;

    pub struct Case {
        pub name: String,
        pub run: Box<dyn FnOnce(Ports) -> Check + Send>,
    }

    pub fn case(
        name: impl Into<String>,
        run: impl FnOnce(Ports) -> Check + Send + 'static,
    ) -> Case {
        Case {
            name: name.into(),
            run: Box::new(run),
        }
    }

    pub fn tcp(port: u16) -> Result<TcpStream, String> {
        let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        Ok(s)
    }

    /// Sends bytes, ignoring errors: a server that already closed is a fine outcome, seen next read.
    pub fn send(s: &mut TcpStream, bytes: &[u8]) {
        let _ = s.write_all(bytes);
    }

    /// Reads (and drops) until the server closes; an error when it is still open after `bound`.
    pub fn expect_closed(s: &mut TcpStream, bound: Duration) -> Check {
        let t0 = Instant::now();
        let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf = vec![0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(Verdict::Closed(t0.elapsed())),
                Ok(_) => {}
                Err(e) if would_block(&e) => {}
                Err(_) => return Ok(Verdict::Closed(t0.elapsed())),
            }
            if t0.elapsed() > bound {
                return Err(format!("still open after {bound:?}"));
            }
        }
    }

    /// Writes `bytes` one at a time, `interval` apart, until the server closes; it must close
    /// within `bound` of the first byte.
    pub fn trickle(s: &mut TcpStream, bytes: &[u8], interval: Duration, bound: Duration) -> Check {
        let t0 = Instant::now();
        let _ = s.set_read_timeout(Some(interval));
        let mut buf = vec![0u8; 65536];
        for b in bytes.iter().cycle() {
            if s.write_all(&[*b]).is_err() {
                return Ok(Verdict::Closed(t0.elapsed()));
            }
            match s.read(&mut buf) {
                Ok(0) => return Ok(Verdict::Closed(t0.elapsed())),
                Ok(_) => {}
                Err(e) if would_block(&e) => {}
                Err(_) => return Ok(Verdict::Closed(t0.elapsed())),
            }
            if t0.elapsed() > bound {
                return Err(format!("trickling client still served after {bound:?}"));
            }
        }
        unreachable!("cycle never ends")
    }

    /// A deterministic pseudo-random byte string.
    pub fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A fmt-0 chunk header with an arbitrary length (no body).
    pub fn fmt0(csid: u32, len: u32, type_id: u8, stream_id: u32) -> Vec<u8> {
        let mut out = BytesMut::new();
        assert!(write_fmt0_header(
            csid, 0, len, type_id, stream_id, &mut out
        ));
        out.to_vec()
    }
}

/// An HTTP-FLV player reading (and counting) until dropped; remembers the body's first bytes.
pub struct HttpFlvPlayer {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    start: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpFlvPlayer {
    /// Connects to `127.0.0.1:port` and asks for `path` (e.g. `/live/test.flv`).
    pub fn start(port: u16, path: &str) -> HttpFlvPlayer {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let start = Arc::new(Mutex::new(Vec::new()));
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect player");
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .expect("send play request");
        let (stop2, received2, start2) = (stop.clone(), received.clone(), start.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut buf = vec![0u8; 65536];
            let mut head_done = false;
            let mut pending = Vec::new();
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if !head_done {
                            pending.extend_from_slice(&buf[..n]);
                            if let Some(pos) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                                head_done = true;
                                let body = &pending[pos + 4..];
                                start2.lock().expect("lock").extend_from_slice(body);
                                received2.fetch_add(body.len() as u64, Ordering::Relaxed);
                            }
                        } else {
                            let mut first = start2.lock().expect("lock");
                            if first.len() < 16 {
                                first.extend_from_slice(&buf[..n.min(16)]);
                            }
                            received2.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
            }
        });
        HttpFlvPlayer {
            stop,
            received,
            start,
            thread: Some(thread),
        }
    }

    /// Body bytes received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Whether the player stopped reading because the server closed the connection (or it
    /// failed, or the 60 s limit passed).
    pub fn ended(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| t.is_finished())
    }

    /// Whether the body starts with an FLV header.
    pub fn is_flv(&self) -> bool {
        self.start.lock().expect("lock").starts_with(b"FLV")
    }
}

impl Drop for HttpFlvPlayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What `ffmpeg -c copy -f framecrc` saw of one played stream.
#[derive(Debug, Clone, Default)]
pub struct PlayedStream {
    /// `video` or `audio` (from ffmpeg's input stream lines).
    pub kind: String,
    /// Packets handed to the muxer.
    pub packets: u64,
    /// Time of the first packet's dts, in milliseconds.
    pub first_dts_ms: Option<f64>,
    /// Times a packet's dts was not above the previous one's.
    pub not_increasing: u64,
}

/// Plays `url` with ffmpeg (`input_args` before `-i`, `output_args` after it), copying every
/// stream into the framecrc muxer until the input or output ends or `limit`; returns the streams
/// and ffmpeg's output (its stderr has complaints about dts order, if any).
pub fn ffmpeg_play(
    url: &str,
    input_args: &[&str],
    output_args: &[&str],
    limit: Duration,
) -> (Vec<PlayedStream>, Output) {
    require_tool("ffmpeg");
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "info"])
            .args(input_args)
            .args(["-i", url, "-map", "0", "-c", "copy"])
            .args(output_args)
            .args(["-f", "framecrc", "-"]),
        limit,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // "  Stream #0:1: Audio: aac ..." lines of the input (before "Output #0").
    let input = err.split("Output #0").next().unwrap_or_default();
    let mut streams: Vec<PlayedStream> = input
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("Stream #0:")?;
            let kind = if rest.contains(": Video:") {
                "video"
            } else if rest.contains(": Audio:") {
                "audio"
            } else {
                "other"
            };
            Some(PlayedStream {
                kind: kind.to_owned(),
                ..PlayedStream::default()
            })
        })
        .collect();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut time_base = Vec::new();
    let mut last_dts: Vec<Option<i64>> = Vec::new();
    for line in text.lines() {
        if let Some(tb) = line.strip_prefix("#tb ") {
            // "#tb 0: 1/90000"
            let (idx, frac) = tb.split_once(": ").unwrap_or_default();
            let (n, d) = frac.split_once('/').unwrap_or(("1", "1"));
            let idx: usize = idx.parse().unwrap_or(usize::MAX);
            if time_base.len() <= idx {
                time_base.resize(idx + 1, 0.0);
            }
            if let Some(t) = time_base.get_mut(idx) {
                *t =
                    n.trim().parse::<f64>().unwrap_or(0.0) / d.trim().parse::<f64>().unwrap_or(1.0);
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (Some(idx), Some(dts)) = (
            fields.first().and_then(|f| f.parse::<usize>().ok()),
            fields.get(1).and_then(|f| f.parse::<i64>().ok()),
        ) else {
            continue;
        };
        if streams.len() <= idx {
            streams.resize(idx + 1, PlayedStream::default());
        }
        if last_dts.len() <= idx {
            last_dts.resize(idx + 1, None);
        }
        let s = &mut streams[idx];
        s.packets += 1;
        if s.first_dts_ms.is_none() {
            s.first_dts_ms = Some(dts as f64 * time_base.get(idx).copied().unwrap_or(0.0) * 1000.0);
        }
        if last_dts[idx].is_some_and(|l| dts <= l) {
            s.not_increasing += 1;
        }
        last_dts[idx] = Some(dts);
    }
    (streams, out)
}

/// The browser harness: headless Debian Chromium driven by `playwright-core` (installed from npm
/// into `target/browser-harness`, never a downloaded browser) on test pages from
/// `tests/browser/`, served by a small HTTP server of the test.
pub mod browser {
    use super::*;

    /// The npm packages the harness installs, pinned.
    pub const NPM_PACKAGES: &[&str] = &["playwright-core@1.65.2", "hls.js@1.7.4"];
    /// Debian's Chromium (the `chromium` package).
    pub const CHROMIUM: &str = "/usr/bin/chromium";

    /// The scratch folder under `target/` that holds `node_modules`, screenshots and results.
    pub fn harness_dir() -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
        target.join("browser-harness")
    }

    /// A file of `tests/browser/`.
    pub fn page_file(name: &str) -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("browser")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Checks Chromium and node, and installs the npm packages once (fails, never skips, when
    /// something is missing). Returns the `node_modules` folder.
    pub fn ensure_installed() -> PathBuf {
        assert!(
            Path::new(CHROMIUM).is_file(),
            "{CHROMIUM} is missing: tools/test-all.sh installs Debian's chromium"
        );
        require_tool("node");
        require_tool("npm");
        // Tests of one binary run in parallel: one installs while the others wait for it (a
        // second npm into the same folder would break the first one's tree).
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _installing = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = harness_dir();
        let modules = dir.join("node_modules");
        let have = |p: &str| modules.join(p).join("package.json").is_file();
        if !(have("playwright-core") && have("hls.js")) {
            std::fs::create_dir_all(&dir).expect("create the harness folder");
            let out = run_with_timeout(
                Command::new("npm")
                    .args([
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--no-save",
                        "--prefix",
                    ])
                    .arg(&dir)
                    .args(NPM_PACKAGES),
                Duration::from_secs(300),
            );
            assert!(
                out.status.success() && have("playwright-core") && have("hls.js"),
                "npm install {NPM_PACKAGES:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        modules
    }

    /// A static HTTP server for test pages: `(path, content type, body)`, everything else 404;
    /// stopped on drop.
    pub struct PageServer {
        /// Its port on 127.0.0.1.
        pub port: u16,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl PageServer {
        /// Serves `files` on a free port.
        pub fn start(files: Vec<(String, &'static str, Vec<u8>)>) -> PageServer {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind page server");
            let port = listener.local_addr().expect("address").port();
            listener.set_nonblocking(true).expect("nonblocking");
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let thread = std::thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let Ok((mut s, _)) = listener.accept() else {
                        sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
                        match s.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => break,
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let path = text.split_whitespace().nth(1).unwrap_or("/");
                    let path = path.split('?').next().unwrap_or(path);
                    let found = files.iter().find(|(p, _, _)| p == path);
                    let (status, ctype, body): (&str, &str, &[u8]) = match found {
                        Some((_, t, b)) => ("200 OK", t, b),
                        None => ("404 Not Found", "text/plain", b"not found"),
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
                         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(body);
                }
            });
            PageServer {
                port,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for PageServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Opens `url` in headless Chromium until the page sets `window.__result` (within
    /// `limit`), saves a screenshot at `screenshot` and returns what `tests/browser/run.cjs`
    /// printed: `{result, console, pageErrors}`.
    pub fn run_page(url: &str, screenshot: &Path, limit: Duration) -> serde_json::Value {
        let modules = ensure_installed();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/run.cjs");
        let out = run_with_timeout(
            Command::new("node")
                .env("HARNESS_MODULES", &modules)
                .arg(script)
                .arg(url)
                .arg(screenshot)
                .arg(limit.as_millis().to_string()),
            limit + Duration::from_secs(30),
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "browser harness printed no result ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(
            v.get("harnessError").is_none(),
            "browser harness failed: {v}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        v
    }
}
