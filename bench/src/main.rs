//! The `rill-bench` command line: `publish` and `play`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rill_bench::http_players::HttpPlayersConfig;
use rill_bench::{hls, llhls, play, publish, url};

/// Fan-out load generator for rill (RTMP publisher, RTMP and HTTP-FLV players).
#[derive(Parser, Debug)]
#[command(name = "rill-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish an FLV file over RTMP in real time.
    Publish {
        /// rtmp://host[:port]/app/stream
        #[arg(long)]
        url: String,
        /// The FLV file to send.
        #[arg(long)]
        file: PathBuf,
        /// Repeat the file with continuous timestamps.
        #[arg(long = "loop")]
        looping: bool,
        /// Embed the wall-clock send time in every H.264 frame (SEI) for delay measurement.
        #[arg(long)]
        stamp: bool,
        /// Stop after this many seconds (each publication, from its own start).
        #[arg(long)]
        duration: Option<f64>,
        /// Publish the file this many times over, on one event loop, to the URL's stream name
        /// with `_0`, `_1`, ... appended (an ingest load).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=publish::MAX_STREAMS as i64))]
        streams: u32,
        /// Publications opened per second (with --streams).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Allow a non-loopback address.
        #[arg(long)]
        allow_remote: bool,
        /// No progress lines on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// Open many players and measure them.
    Play {
        /// rtmp://host[:port]/app/stream or http://host[:port]/path.flv
        #[arg(long)]
        url: String,
        /// Player protocol.
        #[arg(long, value_enum, default_value_t = Proto::Rtmp)]
        proto: Proto,
        /// Number of players.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=play::MAX_PLAYERS as i64))]
        players: u32,
        /// Players opened per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Spread the players over this many stream names: player i plays the URL's stream
        /// with `_{i % streams}` appended (before the extension of an HTTP path), as
        /// `publish --streams` names them.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=play::MAX_PLAYERS as i64))]
        streams: u32,
        /// Seconds to keep all players after the last one was opened.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds a player may take from TCP connect to playing.
        #[arg(long, default_value_t = 10.0)]
        connect_timeout: f64,
        /// Also write the JSON summary to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Allow a non-loopback address.
        #[arg(long)]
        allow_remote: bool,
        /// Players speak TLS (RTMPS, HTTPS-FLV: point the URL at the TLS port); the server's
        /// certificate is not verified.
        #[arg(long)]
        tls: bool,
        /// No progress lines on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// Open many classic HLS players that behave like hls.js at the live edge: each fetches
    /// every new segment once and reloads the playlist once per target duration.
    Hls(HlsArgs),
    /// Open many Low-Latency HLS players: each repeats a blocking playlist request for the
    /// hinted part, then that part, on one keep-alive connection.
    Llhls(HlsArgs),
}

/// The options of `hls` and `llhls`.
#[derive(Args, Debug)]
struct HlsArgs {
    /// The playlist: http://host[:port]/app/stream.m3u8 (hls) or
    /// http://host[:port]/app/stream/llhls.m3u8 (llhls).
    #[arg(long)]
    url: String,
    /// Number of players.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=play::MAX_PLAYERS as i64))]
    players: u32,
    /// Players opened per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds to keep all players after the last one was opened.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Also write the JSON summary to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Allow a non-loopback address.
    #[arg(long)]
    allow_remote: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Proto {
    Rtmp,
    HttpFlv,
}

/// Seconds from the command line as a duration (negative or NaN become zero, huge values a day).
fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v.clamp(0.0, 86_400.0)).unwrap_or(Duration::ZERO)
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Publish {
            url,
            file,
            looping,
            stamp,
            duration,
            streams,
            rate,
            allow_remote,
            quiet,
        } => {
            let url = match url::parse_rtmp(&url, allow_remote) {
                Ok(u) => u,
                Err(e) => return fail(&e),
            };
            let flv = match publish::load_flv(&file) {
                Ok(f) => f,
                Err(e) => return fail(&e),
            };
            let cfg = publish::PublishConfig {
                url,
                looping,
                stamp,
                duration: duration.map(secs),
                progress: !quiet,
                streams: streams as usize,
                rate,
            };
            match publish::run(&cfg, flv) {
                Ok(report) => {
                    println!("{}", report.to_json());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Llhls(args) => run_hls(HlsKind::LowLatency, args),
        Command::Hls(args) => run_hls(HlsKind::Classic, args),
        Command::Play {
            url,
            proto,
            players,
            rate,
            streams,
            duration,
            connect_timeout,
            json,
            allow_remote,
            tls,
            quiet,
        } => {
            let target = match proto {
                Proto::Rtmp => url::parse_rtmp(&url, allow_remote).map(play::Target::Rtmp),
                Proto::HttpFlv => url::parse_http(&url, allow_remote).map(play::Target::HttpFlv),
            };
            let target = match target {
                Ok(t) => t,
                Err(e) => return fail(&e),
            };
            if !(play::MIN_RATE..=play::MAX_RATE).contains(&rate) {
                eprintln!(
                    "rill-bench: --rate must be in {}..={}",
                    play::MIN_RATE,
                    play::MAX_RATE
                );
                return ExitCode::from(2);
            }
            let cfg = play::PlayConfig {
                target,
                players: players as usize,
                rate,
                duration: secs(duration),
                connect_timeout: secs(connect_timeout),
                tls,
                progress: !quiet,
                streams: streams as usize,
            };
            let report = match play::run(&cfg) {
                Ok(r) => r,
                Err(e) => return fail(&e),
            };
            eprint!("{}", report.human());
            let text = report.json().to_string();
            println!("{text}");
            if let Some(path) = json {
                if let Err(e) = std::fs::write(&path, format!("{text}\n")) {
                    eprintln!("rill-bench: writing {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            if report.connect_failures() > 0 || report.connected() == 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// Which HLS players `run_hls` opens.
#[derive(Clone, Copy)]
enum HlsKind {
    Classic,
    LowLatency,
}

/// `rill-bench hls` and `rill-bench llhls`.
fn run_hls(kind: HlsKind, args: HlsArgs) -> ExitCode {
    let url = match url::parse_http(&args.url, args.allow_remote) {
        Ok(u) => u,
        Err(e) => return fail(&e),
    };
    if !(play::MIN_RATE..=play::MAX_RATE).contains(&args.rate) {
        eprintln!(
            "rill-bench: --rate must be in {}..={}",
            play::MIN_RATE,
            play::MAX_RATE
        );
        return ExitCode::from(2);
    }
    let cfg = HttpPlayersConfig {
        url,
        players: args.players as usize,
        rate: args.rate,
        duration: secs(args.duration),
        progress: !args.quiet,
    };
    let report = match kind {
        HlsKind::Classic => hls::run(&cfg),
        HlsKind::LowLatency => llhls::run(&cfg),
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    eprint!("{}", report.human);
    let text = report.json.to_string();
    println!("{text}");
    if let Some(path) = args.json {
        if let Err(e) = std::fs::write(&path, format!("{text}\n")) {
            eprintln!("rill-bench: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.json["failed"].as_u64() == Some(0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn fail(e: &dyn std::error::Error) -> ExitCode {
    eprintln!("rill-bench: {e}");
    ExitCode::from(2)
}
