//! Runs the rill server inside your own async-std application: the engine's tasks share the
//! executor with the application's own tasks, and the application decides when it stops.
//!
//! ```sh
//! cargo run -p rill-examples --example async_embed -- 127.0.0.1:1935 127.0.0.1:8080 30
//! ffmpeg -re -i in.flv -c copy -f flv rtmp://127.0.0.1:1935/live/test   # then play it:
//! ffplay http://127.0.0.1:8080/live/test.flv
//! ```
//!
//! Arguments: RTMP address, HTTP address (port 0 picks a free one), and seconds to run (default:
//! until Ctrl-C). async-std is discontinued upstream (RUSTSEC-2025-0052); the same code runs on
//! smol with `smol::block_on` and `smol::spawn(..).detach()`.

use std::time::Duration;

use futures_lite::FutureExt;
use rill_async::{Listener, Server};
use rill_core::config::Config;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = Config::default();
    config.rtmp.addr = args.first().cloned().unwrap_or("127.0.0.1:1935".into());
    config.http.addr = args.get(1).cloned().unwrap_or("127.0.0.1:8080".into());
    // One engine; streams shared between engines also work with more.
    config.workers = 1;
    let seconds: Option<u64> = args.get(2).and_then(|s| s.parse().ok());

    async_std::task::block_on(async {
        let server = Server::bind(&config).await?;
        // Both listeners are enabled in the default config.
        if let (Some(rtmp), Some(http)) = (
            server.local_addr(Listener::Rtmp),
            server.local_addr(Listener::Http),
        ) {
            println!("rill is serving rtmp://{rtmp}/live/NAME and http://{http}/live/NAME.flv");
        }

        // The application's own work on the same executor.
        async_std::task::spawn(async {
            let mut n = 0u64;
            loop {
                async_io::Timer::after(Duration::from_secs(5)).await;
                n += 5;
                println!("application task: {n} s and counting");
            }
        });

        // Stop on Ctrl-C/SIGTERM, or after the given time.
        let signal = rill_async::shutdown_signal()?;
        let stop = async move {
            match seconds {
                Some(s) => {
                    async_io::Timer::after(Duration::from_secs(s)).await;
                }
                None => std::future::pending().await,
            }
        };
        server.run(signal.or(stop)).await;
        println!("rill stopped; the application goes on or exits as it likes");
        Ok(())
    })
}
