//! `rill`: the production server. One mio event loop per worker thread, each driving its own
//! [`rill_core::engine::Engine`]; listeners are bound once per worker with SO_REUSEPORT so the
//! kernel spreads connections, and streams are shared between workers by reference-counted packets.
//! Flags, config loading and logging are shared with `rill-async` through `rill-runtime-common`.

#![forbid(unsafe_code)]

mod worker;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tracing::{error, info};

/// jemalloc returns memory freed by ended streams to the system (see `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let start = rill_runtime_common::start(
        "rill",
        "rill: live-streaming server. RTMP and RTSP in; RTMP, RTSP, HTTP-FLV, WebSocket-FLV, \
         HTTP-TS, WebSocket-TS and HLS out; HTTP stats API.",
    );
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, shutdown.clone()) {
            error!("cannot install signal handler: {e}");
            std::process::exit(1);
        }
    }
    let run = worker::run(
        &start.config,
        start.tls.as_ref(),
        start.workers,
        Some(&start.reloader),
        shutdown,
    );
    match run {
        Ok(()) => info!("rill stopped"),
        Err(e) => {
            error!("rill: {e}");
            std::process::exit(1);
        }
    }
}
