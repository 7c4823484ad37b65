//! What the `rill` (mio) and `rill-async` (async-std) binaries share outside the protocol: the
//! command line, loading the config file with its command line overrides, logging setup, the
//! worker count, per-engine seeds, the session log line, the connection limits shared by all
//! workers, the recordings' files, the engine's log lines, the per-connection I/O layer
//! ([`conn_io`]) and the dispatcher of every engine output that is not about a socket
//! ([`driver`]). Protocol logic lives in `rill-core`.

#![forbid(unsafe_code)]

pub mod accept_exhaustion;
pub mod admission;
pub mod conn_io;
pub mod driver;
pub mod dump;
pub mod fd_limit;
pub mod record;
pub mod reload;
pub mod stats;
pub mod tls;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use rill_core::config::{Config, LogFormat, DEFAULT_CONFIG};
use rill_core::engine::{LogLevel, SessionRecord};
use tracing::info;
use tracing_subscriber::EnvFilter;

/// The flags every rill binary takes. Runs with built-in defaults when no config file is given.
#[derive(Parser, Clone, Debug, Default)]
#[command(version, long_about = None)]
pub struct Cli {
    /// TOML config file (see --print-config for every key and its default).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the complete default configuration, with comments, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// RTMP listen address (overrides the config file).
    #[arg(long, value_name = "ADDR")]
    pub rtmp_addr: Option<SocketAddr>,
    /// HTTP listen address for HTTP-FLV, WS-FLV, HTTP-TS, WS-TS, HLS and the stats API
    /// (overrides the config file).
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// RTSP listen address (overrides the config file).
    #[arg(long, value_name = "ADDR")]
    pub rtsp_addr: Option<SocketAddr>,
    /// Workers, each with its own engine (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// A tool to run instead of the server.
    #[command(subcommand)]
    pub tool: Option<Tool>,
}

/// Tools run instead of the server.
#[derive(Subcommand, Clone, Debug)]
pub enum Tool {
    /// Write a TLS certificate and key.
    Cert {
        /// Write a self-signed certificate (DIR/cert.pem) and key (DIR/key.pem), for
        /// development: set them as [tls] cert and key.
        #[arg(long, value_name = "DIR")]
        self_signed: PathBuf,
        /// Host names and IP addresses the certificate is for (default: localhost, 127.0.0.1).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
    },
}

impl Cli {
    /// Parses the process arguments; `name` and `about` head `--help` and `--version`.
    pub fn parse_as(name: &'static str, about: &'static str) -> Cli {
        let matches = Cli::command().name(name).about(about).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The config file (or the defaults) with this command line's overrides applied, validated.
    pub fn load_config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                Config::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(addr) = self.rtmp_addr {
            config.rtmp.addr = addr.to_string();
        }
        if let Some(addr) = self.http_addr {
            config.http.addr = addr.to_string();
        }
        if let Some(addr) = self.rtsp_addr {
            config.rtsp.addr = addr.to_string();
        }
        if let Some(n) = self.workers {
            config.workers = n;
        }
        if config.api.room_keys_file.is_empty() {
            let dir = self.config.as_deref().and_then(std::path::Path::parent);
            let file = dir
                .unwrap_or(std::path::Path::new(""))
                .join("room_keys.json");
            config.api.room_keys_file = file.display().to_string();
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// Everything a binary needs before it starts serving.
#[derive(Debug)]
pub struct Startup {
    /// The validated configuration.
    pub config: Config,
    /// Workers to run (the config's value, or one per core for 0).
    pub workers: usize,
    /// The TLS listeners' certificate, when `[tls]` is configured.
    pub tls: Option<tls::TlsConfig>,
    /// SIGHUP's reload path, already listening for the signal; the runtime attaches to it
    /// once it serves ([`reload::Reloader::attach`]) and gives it to its drivers for the API.
    pub reloader: reload::Reloader,
}

/// Loads `[tls]` when it is configured; a cert without a key (or the reverse) is an error.
pub fn load_tls(config: &Config) -> Result<Option<tls::TlsConfig>, String> {
    let t = &config.tls;
    if t.configured() {
        tls::TlsConfig::from_section(t).map(Some)
    } else if t.cert.is_empty() != t.key.is_empty() {
        Err("tls: set both cert and key (or neither)".into())
    } else {
        Ok(None)
    }
}

/// The common start of a rill binary: parses the flags, prints the default config and exits for
/// `--print-config`, loads the config (exits with status 2 and a message when it is unusable),
/// sets up logging and logs the start line.
pub fn start(name: &'static str, about: &'static str) -> Startup {
    let cli = Cli::parse_as(name, about);
    if cli.print_config {
        print!("{DEFAULT_CONFIG}");
        std::process::exit(0);
    }
    if let Some(Tool::Cert { self_signed, hosts }) = &cli.tool {
        match tls::write_self_signed(self_signed, hosts) {
            Ok((cert, key)) => {
                println!("wrote {} and {}", cert.display(), key.display());
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::exit(2);
            }
        }
    }
    let fail = |e: String| -> ! {
        eprintln!("{name}: {e}");
        std::process::exit(2);
    };
    let config = cli.load_config().unwrap_or_else(|e| fail(e));
    let tls = load_tls(&config).unwrap_or_else(|e| fail(e));
    check_out_paths(&config).unwrap_or_else(|e| fail(e));
    let log = init_logging(&config.log.level, config.log.format);
    tls::warn_unverified(&config.tls);
    fd_limit::raise_open_file_limit(config.limits.max_connections);
    let workers = worker_count(config.workers);
    let listener = |enable: bool, addr: &str| {
        if enable {
            addr.to_owned()
        } else {
            "off".into()
        }
    };
    info!(
        workers,
        rtmp = %listener(config.rtmp.enable, &config.rtmp.addr),
        http = %listener(config.http.enable, &config.http.addr),
        rtsp = %listener(config.rtsp.enable, &config.rtsp.addr),
        rtmps = %listener(tls.is_some() && config.rtmps.enable, &config.rtmps.addr),
        https = %listener(tls.is_some() && config.https.enable, &config.https.addr),
        rtsps = %listener(tls.is_some() && config.rtsps.enable, &config.rtsps.addr),
        api = %listener(!config.api.addr.is_empty(), &config.api.addr),
        "{name} {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let reloader = reload::Reloader::new(cli, config.clone(), workers, Some(log));
    reloader
        .watch_sighup()
        .unwrap_or_else(|e| fail(format!("cannot listen for SIGHUP: {e}")));
    Startup {
        config,
        workers,
        tls,
        reloader,
    }
}

/// Checks at start that the directories files will be written to are usable: each one in use
/// (`hls.out_path` when HLS writes files, `record.out_path` when recording) is created and a
/// file is written and removed in it. An unusable one stops the start with its name (rather than
/// failing, file by file, only once a stream is published, maybe days later).
pub fn check_out_paths(config: &Config) -> Result<(), String> {
    let hls = config.hls.enable && !config.hls.out_path.is_empty();
    let record = config.record.flv || config.record.ts;
    for (key, dir, used) in [
        ("hls.out_path", &config.hls.out_path, hls),
        ("record.out_path", &config.record.out_path, record),
    ] {
        if !used {
            continue;
        }
        let dir = std::path::Path::new(dir);
        let probe = dir.join(format!(".rill-write-test-{}", std::process::id()));
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&probe, b"rill"))
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                format!(
                    "{key} = {:?} is not writable: {e} (give rill's user write access to it, \
                     or change {key})",
                    dir.display().to_string()
                )
            })?;
    }
    Ok(())
}

/// The log filter in use, which a reload can change.
pub struct LogFilter {
    /// Sets a new filter.
    pub handle: tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    /// The filter is `RUST_LOG`'s, which a reload of `log.level` does not override.
    pub from_env: bool,
}

/// Logs to stderr with `RUST_LOG`, or else `level` (the config's `log.level`), as the filter;
/// as text lines or JSON lines (`log.format`). Returns the filter, for reloads.
pub fn init_logging(level: &str, format: LogFormat) -> LogFilter {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let from_env = EnvFilter::try_from_default_env().ok();
    let is_env = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_target(false)
            .with_writer(std::io::stderr)
            .with_ansi(false)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .init();
    LogFilter {
        handle,
        from_env: is_env,
    }
}

/// The configured worker count, with 0 meaning one per core.
pub fn worker_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// A seed for worker `index`'s engine: distinct per worker and per process start.
pub fn engine_seed(index: usize) -> u64 {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ clock
}

/// 32 bytes from the system's entropy (`/dev/urandom`; zeros where there is none), the secret
/// room keys are made with.
fn system_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut secret);
    }
    secret
}

/// Logs a session record as one structured line headed `event` ("session start", "session end").
pub fn log_session(event: &str, record: &SessionRecord) {
    info!(
        conn = record.conn,
        peer = %record.peer,
        protocol = %record.protocol.name(record.tls),
        role = %record.role,
        stream = %record.stream,
        bytes_in = record.bytes_in,
        bytes_out = record.bytes_out,
        duration_ms = record.duration_ms,
        reason = %record.reason,
        "{event}"
    );
}

/// Replaces `path` with `data` (the engine's `Output::WriteFile`): written to a temporary file
/// beside it, then renamed, so readers never see a partial file. Failures are logged and the
/// temporary file is removed (a full disk must not fill up with `.tmp` files); the stream goes
/// on.
pub fn write_file(path: &str, data: &[bytes::Bytes]) {
    use std::io::Write;
    let path = std::path::Path::new(path);
    if let Some(dir) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!("cannot write {}: {e}", path.display());
            return;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let result = std::fs::File::create(&tmp).and_then(|mut f| {
        for piece in data {
            f.write_all(piece)?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    });
    if let Err(e) = result {
        tracing::warn!("cannot write {}: {e}", path.display());
        remove_file(&tmp.to_string_lossy());
    }
}

/// Removes `path` (the engine's `Output::RemoveFile`); a file already gone is not an error.
pub fn remove_file(path: &str) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {path}: {e}");
        }
    }
}

/// Where worker `worker` sits in the list of the other workers of worker `own` (the list every
/// worker keeps of its peers, in index order without itself); `None` for `own` itself.
pub fn peer_index(own: usize, worker: usize) -> Option<usize> {
    match worker.cmp(&own) {
        std::cmp::Ordering::Less => Some(worker),
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Greater => Some(worker - 1),
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The engine settings of `config`, with what only a runtime knows filled in: whether streams
/// are shared between `workers` engines, the wall clock at `now_ms == 0` (for RTCP and the
/// names of recordings), and the working directory (for webhooks).
pub fn engine_config(config: &Config, workers: usize) -> rill_core::engine::EngineConfig {
    let mut engine = config.engine_config();
    engine.share_streams = workers > 1;
    engine.rtsp.wallclock_offset_ms = unix_time_ms();
    engine.workers = workers;
    engine.webhook.cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    engine.room_keys.keys = load_room_keys(&engine.room_keys.file);
    engine.room_keys.secret = system_secret();
    engine
}

/// The room keys kept in `file` (none when it is not there; a warning when it does not parse).
fn load_room_keys(file: &str) -> Vec<(String, String)> {
    if file.is_empty() {
        return Vec::new();
    }
    match std::fs::read_to_string(file) {
        Ok(text) => rill_core::engine::room_keys_from_json(&text).unwrap_or_else(|e| {
            tracing::warn!("{file}: {e}; starting without room keys");
            Vec::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            tracing::warn!("cannot read {file}: {e}; starting without room keys");
            Vec::new()
        }
    }
}

/// Logs a line the engine asked for (`Output::Log`) at its level.
pub fn engine_log(level: LogLevel, message: &str) {
    match level {
        LogLevel::Warn => tracing::warn!("{message}"),
        LogLevel::Info => info!("{message}"),
        LogLevel::Debug => tracing::debug!("{message}"),
    }
}

/// Binds a free port pair of `ports` for an RTSP track (see [`UdpPorts::bind_pair`]): `None`,
/// with a warning, when RTSP over UDP is off or no pair is free (the engine then refuses the
/// SETUP).
pub fn bind_udp_pair(ports: Option<UdpPorts>) -> Option<(UdpSocket, UdpSocket, (u16, u16))> {
    let bound = ports
        .ok_or_else(|| std::io::Error::other("RTSP UDP is off"))
        .and_then(|p| p.bind_pair());
    bound
        .map_err(|e| tracing::warn!("cannot open UDP ports for an RTSP session: {e}"))
        .ok()
}

/// Where the next search for a free UDP port pair starts (shared by every worker).
static NEXT_PAIR: AtomicU32 = AtomicU32::new(0);

/// The configured range of server UDP ports for RTSP, on the RTSP listener's address.
#[derive(Clone, Copy, Debug)]
pub struct UdpPorts {
    ip: IpAddr,
    first: u16,
    pairs: u32,
}

impl UdpPorts {
    /// The range of `config.rtsp` (`None` when RTSP is off or its address does not parse).
    pub fn from_config(config: &Config) -> Option<UdpPorts> {
        let r = &config.rtsp;
        let addr: SocketAddr = r.addr.parse().ok()?;
        let first = r.udp_port_min.checked_add(r.udp_port_min % 2)?;
        let pairs = u32::from(r.udp_port_max)
            .checked_sub(u32::from(first))?
            .div_ceil(2);
        (r.enable && pairs > 0).then_some(UdpPorts {
            ip: addr.ip(),
            first,
            pairs,
        })
    }

    /// Binds a free pair, non-blocking: RTP on an even port and RTCP on the next. Returns the
    /// two sockets and their ports.
    pub fn bind_pair(&self) -> std::io::Result<(UdpSocket, UdpSocket, (u16, u16))> {
        let start = NEXT_PAIR.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.pairs {
            let k = (start.wrapping_add(i) % self.pairs) as u16;
            let rtp_port = self.first + 2 * k;
            let Ok(rtp) = UdpSocket::bind((self.ip, rtp_port)) else {
                continue;
            };
            let Ok(rtcp) = UdpSocket::bind((self.ip, rtp_port + 1)) else {
                continue;
            };
            rtp.set_nonblocking(true)?;
            rtcp.set_nonblocking(true)?;
            NEXT_PAIR.store(start.wrapping_add(i + 1), Ordering::Relaxed);
            return Ok((rtp, rtcp, (rtp_port, rtp_port + 1)));
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "no free UDP port pair in rtsp.udp_port_min..udp_port_max",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{peer_index, write_file};
    use bytes::Bytes;

    /// A fresh scratch directory for one test.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rill-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_write_that_fails_on_a_full_disk_leaves_no_temporary_file() {
        // Regression (issue 21): `*.ts.tmp` and `*.m3u8.tmp` stayed behind after a full disk.
        // The temporary file is a link to /dev/full: it opens, then every write fails ENOSPC.
        let dir = scratch("full-disk");
        let seg = dir.join("seg1.ts");
        let tmp = dir.join("seg1.ts.tmp");
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        write_file(&seg.to_string_lossy(), &[Bytes::from_static(b"media")]);
        assert!(!seg.exists());
        assert!(
            std::fs::symlink_metadata(&tmp).is_err(),
            "{tmp:?} left behind"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_write_whose_rename_fails_leaves_no_temporary_file() {
        let dir = scratch("rename-fails");
        let playlist = dir.join("index.m3u8");
        // A non-empty directory in the way: the rename fails after the write succeeded.
        std::fs::create_dir_all(playlist.join("x")).unwrap();
        write_file(
            &playlist.to_string_lossy(),
            &[Bytes::from_static(b"#EXTM3U\n")],
        );
        assert!(!dir.join("index.m3u8.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_write_that_works_replaces_the_file() {
        let dir = scratch("write-works");
        let path = dir.join("a/b.m3u8");
        write_file(&path.to_string_lossy(), &[Bytes::from_static(b"one")]);
        write_file(
            &path.to_string_lossy(),
            &[Bytes::from_static(b"tw"), Bytes::from_static(b"o")],
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!dir.join("a/b.m3u8.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn peers_are_listed_in_worker_order_without_oneself() {
        // Worker 1 of 3 lists workers 0 and 2.
        assert_eq!(peer_index(1, 0), Some(0));
        assert_eq!(peer_index(1, 1), None);
        assert_eq!(peer_index(1, 2), Some(1));
        assert_eq!(peer_index(0, 2), Some(1));
    }
}
