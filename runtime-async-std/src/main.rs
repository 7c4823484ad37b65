//! `rill-async`: the rill server on async-std tasks (see the library docs; async-std is
//! discontinued upstream, RUSTSEC-2025-0052). Same config file and flags as `rill`.

#![forbid(unsafe_code)]

use tracing::{error, info};

/// jemalloc returns memory freed by ended streams to the system (see `runtime-mio/Cargo.toml`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let start = rill_runtime_common::start(
        "rill-async",
        "rill-async: the rill live-streaming server on async-std tasks. RTMP and RTSP in; RTMP, \
         RTSP, HTTP-FLV, WebSocket-FLV, HTTP-TS, WebSocket-TS and HLS out; HTTP stats API.",
    );
    // As many executor threads as workers, unless the operator chose otherwise. Nothing else runs
    // yet, so setting the variable is safe.
    if std::env::var_os("ASYNC_STD_THREAD_COUNT").is_none() {
        std::env::set_var("ASYNC_STD_THREAD_COUNT", start.workers.to_string());
    }
    match rill_async::serve_until_signal(&start.config, Some(start.reloader)) {
        Ok(()) => info!("rill-async stopped"),
        Err(e) => {
            error!("rill-async: {e}");
            std::process::exit(1);
        }
    }
}
