//! `rill-replay`: replays rill debug dumps through the engine with no sockets and prints what
//! came out per connection; `rill-replay record` records a dump of a real session with a TCP
//! proxy placed in front of a running server.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use rill_core::dump::{replay, ConnReport, Dump, MediaSummary, RtspSummary};
use rill_core::engine::EngineConfig;
use rill_runtime_common::dump::{unix_ms, DumpWriter};

/// Replays rill debug dumps (several at once are interleaved by their start times).
#[derive(Parser, Debug)]
#[command(name = "rill-replay", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Dump files to replay together.
    files: Vec<PathBuf>,
    /// Also list every media message (type, timestamp, size).
    #[arg(long)]
    messages: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Forward one TCP connection to a server and record what the client sent.
    Record {
        /// Address to listen on for the client.
        #[arg(long)]
        listen: SocketAddr,
        /// The server to forward to.
        #[arg(long)]
        to: SocketAddr,
        /// The server listener the dump claims: rtmp, http, rtsp.
        #[arg(long)]
        kind: String,
        /// The dump file to write.
        #[arg(long)]
        out: PathBuf,
        /// Size cap of the dump, bytes.
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        max_bytes: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Record {
            listen,
            to,
            kind,
            out,
            max_bytes,
        }) => record(listen, to, &kind, &out, max_bytes),
        None if cli.files.is_empty() => Err("give dump files to replay (see --help)".into()),
        None => replay_files(&cli.files, cli.messages),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rill-replay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn replay_files(files: &[PathBuf], messages: bool) -> Result<(), String> {
    let mut dumps = Vec::new();
    for f in files {
        let data = std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let dump = Dump::parse(Bytes::from(data)).map_err(|e| format!("{}: {e}", f.display()))?;
        dumps.push(dump);
    }
    let report = replay(&dumps, EngineConfig::default());
    for (c, f) in report.connections.iter().zip(files) {
        print_conn(c, f, messages);
    }
    println!("replay ended at {} ms", report.end_ms);
    Ok(())
}

fn print_conn(c: &ConnReport, file: &std::path::Path, messages: bool) {
    println!(
        "conn {} ({}): {} from {}, accepted at {} ms",
        c.conn,
        file.display(),
        c.listener,
        c.peer,
        c.accepted_ms
    );
    println!(
        "  bytes in {}, bytes out {}, closed by {}",
        c.bytes_in,
        c.bytes_out,
        if c.closed_by_engine { "engine" } else { "dump" }
    );
    for r in &c.sessions {
        if r.reason.is_empty() {
            println!("  session start: {} {} {}", r.protocol, r.role, r.stream);
        } else {
            println!(
                "  session end: {} {} {:?} after {} ms: {}",
                r.protocol, r.role, r.stream, r.duration_ms, r.reason
            );
        }
    }
    if let Some(r) = &c.rtsp {
        print_rtsp(r);
    }
    if let Some(m) = &c.published {
        print_media("published", m, messages);
    }
    if let Some(m) = &c.played {
        print_media("played", m, messages);
    }
    if let Some(e) = &c.error {
        println!("  error: {e}");
    }
}

fn print_rtsp(r: &RtspSummary) {
    let statuses: Vec<String> = r.responses.iter().map(u16::to_string).collect();
    println!(
        "  rtsp: requests {}; answers {}",
        r.requests.join(" "),
        statuses.join(" ")
    );
    for t in &r.tracks {
        let channels = t
            .channels
            .map_or_else(|| "-".to_owned(), |(a, b)| format!("{a}-{b}"));
        println!(
            "  rtsp track {} ({}), interleaved {channels}: RTP in {}, RTCP in {}, RTP out {}, \
             RTCP out {}, frames {}, RTP errors {}",
            t.control,
            t.codec.map_or("-", |c| c.name()),
            t.rtp_in,
            t.rtcp_in,
            t.rtp_out,
            t.rtcp_out,
            t.frames,
            t.rtp_errors
        );
    }
    if r.stray_packets > 0 {
        println!(
            "  rtsp: {} packets on channels no SETUP gave",
            r.stray_packets
        );
    }
    if let Some(e) = &r.error {
        println!("  rtsp decoding stopped: {e}");
    }
}

fn print_media(what: &str, m: &MediaSummary, messages: bool) {
    let codec = |c: Option<rill_core::media::Codec>| c.map_or("-", |c| c.name());
    println!(
        "  {what}: video {} ({} key, {}), audio {} ({}), data {}, digest {}",
        m.video,
        m.key_frames,
        codec(m.video_codec),
        m.audio,
        codec(m.audio_codec),
        m.data,
        m.digest
    );
    if let Some(e) = &m.error {
        println!("  {what} decoding stopped: {e}");
    }
    if messages {
        for msg in &m.messages {
            println!(
                "    type {} ts {} len {}",
                msg.type_id,
                msg.timestamp,
                msg.body.len()
            );
        }
    }
}

/// Accepts one client on `listen`, forwards both ways to `to` and records what the client sent.
fn record(
    listen: SocketAddr,
    to: SocketAddr,
    kind: &str,
    out: &std::path::Path,
    max_bytes: u64,
) -> Result<(), String> {
    let listener =
        TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("rill-replay: recording one {kind} connection on {listen} -> {to}");
    let (client, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let server = TcpStream::connect(to).map_err(|e| format!("cannot connect to {to}: {e}"))?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let start = Instant::now();
    let header = rill_core::dump::DumpHeader {
        listener: kind.to_owned(),
        peer,
        start_unix_ms: unix_ms(),
    };
    let mut writer = DumpWriter::create(out, &header, max_bytes)
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    // Server to client: forwarded as is.
    let (mut from_server, mut to_client) = (
        server.try_clone().map_err(|e| e.to_string())?,
        client.try_clone().map_err(|e| e.to_string())?,
    );
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });

    // Client to server: recorded, then forwarded.
    let (mut from_client, mut to_server) = (client, server);
    let mut buf = vec![0u8; 64 * 1024];
    let mut error = None;
    loop {
        let n = match from_client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = buf.get(..n).unwrap_or(&[]);
        let offset = start.elapsed().as_millis() as u64;
        if let Err(e) = writer.input(offset, data) {
            error = Some(format!("cannot write {}: {e}", out.display()));
            break;
        }
        if to_server.write_all(data).is_err() {
            break;
        }
    }
    let offset = start.elapsed().as_millis() as u64;
    let _ = to_server.shutdown(Shutdown::Both);
    let _ = from_client.shutdown(Shutdown::Both);
    let _ = back.join();
    let size = writer.bytes_written();
    writer
        .finish(offset)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!(
        "rill-replay: wrote {} ({size} bytes, {offset} ms)",
        out.display()
    );
    error.map_or(Ok(()), Err)
}
