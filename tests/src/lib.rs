//! Helpers for end-to-end tests: start the real server binary on free loopback ports, run real
//! clients with time limits, find the shared media files.
//!
//! The server binary is `target/debug/rill` by default; set `RILL_BIN` to test another build, for
//! example `target/debug/rill-async` (the async-std runtime). Every child process is killed when
//! its handle drops.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
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

    /// Starts the server with extra command line arguments.
    pub fn start_with(workers: usize, extra: &[&str]) -> Server {
        let rtmp_port = free_port();
        let http_port = free_port();
        let rtsp_port = free_port();
        let log = std::env::temp_dir().join(format!("rill-e2e-{rtmp_port}.log"));
        let log_file = std::fs::File::create(&log).expect("create server log");
        let child = Command::new(server_binary())
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
        let server = Server {
            child,
            rtmp_port,
            http_port,
            rtsp_port,
            log,
        };
        server.wait_listening();
        server
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in [self.rtmp_port, self.http_port, self.rtsp_port] {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "server did not listen on {port}; log:\n{}",
                    self.log()
                );
                sleep(Duration::from_millis(50));
            }
        }
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
