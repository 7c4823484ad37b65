//! `rill`: the production server. One mio event loop per worker thread, each driving its own
//! [`rill_core::engine::Engine`]; listeners are bound once per worker with SO_REUSEPORT so the
//! kernel spreads connections, and streams are shared between workers by reference-counted packets.

mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use rill_core::config::{Config, DEFAULT_CONFIG};
use tracing::{error, info};

/// rill: live-streaming server. RTMP in; RTMP, HTTP-FLV and WebSocket-FLV out.
///
/// Runs with built-in defaults when no config file is given.
#[derive(Parser, Debug)]
#[command(name = "rill", version, about, long_about = None)]
struct Cli {
    /// TOML config file (see --print-config for every key and its default).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the complete default configuration, with comments, and exit.
    #[arg(long)]
    print_config: bool,
    /// RTMP listen address (overrides the config file).
    #[arg(long, value_name = "ADDR")]
    rtmp_addr: Option<SocketAddr>,
    /// HTTP listen address for HTTP-FLV and WS-FLV (overrides the config file).
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<SocketAddr>,
    /// Worker threads, each with its own event loop (default: one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

fn load_config(cli: &Cli) -> Result<Config, String> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Config::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(addr) = cli.rtmp_addr {
        config.rtmp.addr = addr.to_string();
    }
    if let Some(addr) = cli.http_addr {
        config.http.addr = addr.to_string();
    }
    if let Some(n) = cli.workers {
        config.workers = n;
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn main() {
    let cli = Cli::parse();
    if cli.print_config {
        print!("{DEFAULT_CONFIG}");
        return;
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rill: {e}");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, shutdown.clone()) {
            error!("cannot install signal handler: {e}");
            std::process::exit(1);
        }
    }
    let workers = if config.workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        config.workers
    };
    info!(
        workers,
        rtmp = %if config.rtmp.enable { config.rtmp.addr.as_str() } else { "off" },
        http = %if config.http.enable { config.http.addr.as_str() } else { "off" },
        "rill {} starting",
        env!("CARGO_PKG_VERSION")
    );
    match worker::run(&config, workers, shutdown.clone()) {
        Ok(()) => info!("rill stopped"),
        Err(e) => {
            error!("rill: {e}");
            std::process::exit(1);
        }
    }
}
