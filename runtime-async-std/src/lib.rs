//! `rill-async`: the rill server on async tasks, driving the same sans-IO
//! [`rill_core::engine::Engine`] as the mio runtime (`rill`), with the same config file and flags.
//!
//! **async-std is discontinued upstream** (its README points to smol; advisory RUSTSEC-2025-0052,
//! "unmaintained"). This crate therefore keeps it at arm's length: only the private `rt` module
//! names it (spawning on its executor); the rest is written against futures-lite, async-io and
//! async-channel, which smol re-exports, so moving to smol is a mechanical change of that module.
//!
//! Shape: one engine task per worker owns an engine; each connection has a reader task and a
//! writer task that talk to it over channels. A writer gets a new batch of bytes only when it has
//! written the previous one, so a slow player's backlog stays in the hub's bounded queues, where
//! the engine drops frames for it or disconnects it. Streams published on one worker are played on
//! the others through [`rill_core::engine::Output::Broadcast`] messages.
//!
//! To run rill inside your own async-std (or smol) application:
//!
//! ```no_run
//! # async fn app() -> std::io::Result<()> {
//! let config = rill_core::config::Config::default();
//! let server = rill_async::Server::bind(&config).await?;
//! server.run(rill_async::shutdown_signal()?).await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod conn;
mod engine_task;
mod rt;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_channel::Sender;
use futures_lite::{AsyncReadExt, FutureExt};
use rill_core::config::Config;
use rill_core::dump::listener_name;
pub use rill_core::engine::Listener;
use rill_core::engine::{Engine, EngineConfig};
use rill_runtime_common::accept_exhaustion::{is_exhaustion, AcceptExhaustion, AfterExhaustion};
use rill_runtime_common::admission::{refuse, Admission, RefusalLog};
use rill_runtime_common::driver::Driver;
use rill_runtime_common::dump::recorder_from_config;
use rill_runtime_common::reload::Reloader;
use rill_runtime_common::stats::{StatsBoard, WorkerStats};
use rill_runtime_common::tls::{accepted_io, TlsConfig};
use rill_runtime_common::{engine_seed, worker_count, UdpPorts};
use tracing::warn;

use engine_task::{Control, EngineTask, Event};

/// A listening socket on the async-io reactor.
type TcpListener = async_io::Async<std::net::TcpListener>;

/// Events queued towards one engine task before connection tasks wait. Each may carry a read
/// of up to 64 KiB, so this also bounds what fast senders can park in memory (8 MiB a worker).
const EVENT_QUEUE: usize = 128;

/// A bound, not yet running, rill server.
pub struct Server {
    /// Each listener with the kind of connection it takes and, for a TLS one, its certificate.
    listeners: Vec<(TcpListener, Listener, Option<TlsConfig>)>,
    engine: EngineConfig,
    workers: usize,
    udp_ports: Option<UdpPorts>,
    /// The whole configuration, for what each worker builds itself (debug dump recorders).
    config: Config,
    /// Connection counts shared by every acceptor.
    admission: Admission,
    /// The TLS listeners' certificates (reloaded with the config).
    tls: Option<TlsConfig>,
    /// SIGHUP's and the API's reload path, if the server has one.
    reloader: Option<Reloader>,
}

impl Server {
    /// Binds the listeners `config` enables (fails on the first that cannot be bound), the TLS
    /// ones with `[tls]`'s certificate when it is configured.
    pub async fn bind(config: &Config) -> io::Result<Server> {
        let tls = rill_runtime_common::load_tls(config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if let Some(tls) = &tls {
            tls.watch()?;
        }
        let mut listeners = Vec::new();
        let tls_on = |enable: bool| enable && tls.is_some();
        for (enable, addr, kind, tls) in [
            (config.rtmp.enable, &config.rtmp.addr, Listener::Rtmp, None),
            (config.http.enable, &config.http.addr, Listener::Http, None),
            (config.rtsp.enable, &config.rtsp.addr, Listener::Rtsp, None),
            (
                !config.api.addr.is_empty(),
                &config.api.addr,
                Listener::Api,
                None,
            ),
            (
                tls_on(config.rtmps.enable),
                &config.rtmps.addr,
                Listener::Rtmp,
                tls.clone(),
            ),
            (
                tls_on(config.https.enable),
                &config.https.addr,
                Listener::Http,
                tls.clone(),
            ),
            (
                tls_on(config.rtsps.enable),
                &config.rtsps.addr,
                Listener::Rtsp,
                tls.clone(),
            ),
        ] {
            if enable {
                let l = std::net::TcpListener::bind(addr.as_str())
                    .and_then(TcpListener::new)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                    })?;
                listeners.push((l, kind, tls));
            }
        }
        let workers = worker_count(config.workers);
        Ok(Server {
            listeners,
            engine: rill_runtime_common::engine_config(config, workers),
            workers,
            udp_ports: UdpPorts::from_config(config),
            config: config.clone(),
            admission: Admission::new(config.connection_limits()),
            tls,
            reloader: None,
        })
    }

    /// Reloads through `reloader` (SIGHUP, `POST /api/ctrl/reload`): once running, new engine
    /// settings go to every worker's engine, and the TLS certificates and connection limits
    /// are this server's.
    pub fn with_reloader(mut self, reloader: Reloader) -> Server {
        self.reloader = Some(reloader);
        self
    }

    /// The address a plain listener is bound to (useful after binding port 0).
    pub fn local_addr(&self, listener: Listener) -> Option<SocketAddr> {
        let (l, _, _) = self
            .listeners
            .iter()
            .find(|(_, k, tls)| *k == listener && tls.is_none())?;
        l.get_ref().local_addr().ok()
    }

    /// Serves until `shutdown` completes, then stops accepting, closes every connection (each
    /// gets its session end record), gives the webhooks still queued a few seconds to go out
    /// and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let epoch = Instant::now();
        let queues: Vec<_> = (0..self.workers)
            .map(|_| {
                (
                    async_channel::bounded(EVENT_QUEUE),
                    async_channel::unbounded(),
                )
            })
            .collect();
        let controls: Vec<Sender<Control>> = queues.iter().map(|(_, (tx, _))| tx.clone()).collect();
        let inboxes: Vec<Sender<Event>> = queues.iter().map(|((tx, _), _)| tx.clone()).collect();
        let board = StatsBoard::new(self.workers);
        let mut engines = Vec::new();
        for (index, (events, (_, control))) in queues.into_iter().enumerate() {
            let peers = controls
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, tx)| tx.clone())
                .collect();
            let config = EngineConfig {
                worker: index,
                ..self.engine.clone()
            };
            let engine = Engine::new(config, engine_seed(index));
            let stats = WorkerStats::new(board.clone(), index);
            let dumps = recorder_from_config(&self.config);
            let driver =
                Driver::new(engine, epoch, stats, dumps).with_reloader(self.reloader.clone());
            let task = EngineTask::new(index, driver, epoch, events, control, peers)
                .with_udp_ports(self.udp_ports);
            engines.push(rt::spawn(task.run()));
        }
        if let Some(reloader) = &self.reloader {
            let all = controls.clone();
            let deliver = Box::new(move |config: &EngineConfig| {
                for c in &all {
                    let _ = c.try_send(Control::Reconfigure(Box::new(config.clone())));
                }
            });
            reloader.attach(self.tls.clone(), self.admission.clone(), deliver);
        }
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let acceptors: Vec<_> = self
            .listeners
            .into_iter()
            .map(|(listener, kind, tls)| {
                let stopped = stopped.clone();
                let admission = self.admission.clone();
                let accept = accept_loop(listener, kind, tls, inboxes.clone(), admission);
                rt::spawn(accept.or(async move {
                    let _ = stopped.recv().await;
                }))
            })
            .collect();
        shutdown.await;
        drop(stop);
        for a in acceptors {
            a.await;
        }
        for c in &controls {
            let _ = c.try_send(Control::Stop);
        }
        for e in engines {
            e.await;
        }
    }
}

/// Accepts forever, handing the connections `admission` lets in to the engine tasks in turn and
/// closing the others at once.
async fn accept_loop(
    listener: TcpListener,
    kind: Listener,
    tls: Option<TlsConfig>,
    inboxes: Vec<Sender<Event>>,
    admission: Admission,
) {
    let mut targets = inboxes.iter().cycle();
    let mut refusals = RefusalLog::default();
    let mut exhaustion = AcceptExhaustion::new();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                exhaustion.accepted(Instant::now());
                let permit = match admission.admit(peer.ip()) {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        // A 503 in plain text means nothing to a TLS client: just close.
                        refuse(stream.get_ref(), kind.is_http() && tls.is_none());
                        refusals.refused(&refusal, listener_name(kind), peer);
                        continue;
                    }
                };
                let io = match accepted_io(tls.as_ref(), kind.is_http()) {
                    Ok(io) => io,
                    Err(e) => {
                        warn!("cannot start TLS for {peer}: {e}");
                        continue;
                    }
                };
                let Some(inbox) = targets.next() else { return };
                if inbox
                    .send(Event::Accept(stream, peer, kind, permit, io))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) if is_exhaustion(&e) => {
                // Out of descriptors: back off, shedding the queue once the shortage has lasted.
                let at = match exhaustion.failed(listener_name(kind), &e, Instant::now()) {
                    AfterExhaustion::RetryAt(at) => at,
                    AfterExhaustion::Shed(at) => {
                        let http = kind.is_http();
                        // Bounded by the listen backlog; the listener is non-blocking.
                        for _ in 0..1024 {
                            // Closed before the reserve is taken again.
                            let shed = exhaustion.shed(|| {
                                let (stream, _) = listener.get_ref().accept()?;
                                stream.set_nonblocking(true)?;
                                refuse(&stream, http);
                                Ok(())
                            });
                            if !shed {
                                break;
                            }
                        }
                        at
                    }
                };
                async_io::Timer::at(at).await;
            }
            Err(e) => {
                warn!("accept failed: {e}");
                async_io::Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A future that completes on the first SIGINT or SIGTERM after this call (through a self-pipe,
/// so it works on any async-io based executor).
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()>> {
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    write.set_nonblocking(true)?;
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
    }
    let mut read = async_io::Async::new(read)?;
    Ok(async move {
        let mut byte = [0u8; 1];
        let _ = read.read(&mut byte).await;
    })
}

/// Binds and serves `config` on the executor, blocking the calling thread until SIGINT or SIGTERM
/// (what the `rill-async` binary does), reloading through `reloader` if given. The calling thread only waits: it does not take part in
/// polling sockets, so the executor's threads see their own I/O events without cross-thread wakes.
pub fn serve_until_signal(config: &Config, reloader: Option<Reloader>) -> io::Result<()> {
    let (done, wait) = std::sync::mpsc::sync_channel(1);
    let config = config.clone();
    rt::spawn_detached(async move {
        let served = async {
            let mut server = Server::bind(&config).await?;
            if let Some(reloader) = reloader {
                server = server.with_reloader(reloader);
            }
            server.run(shutdown_signal()?).await;
            Ok(())
        };
        let _ = done.send(served.await);
    });
    wait.recv()
        .unwrap_or_else(|_| Err(io::Error::other("the server task ended without a result")))
}
