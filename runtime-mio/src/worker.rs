//! One event loop per worker thread: sockets and timers in, bytes out. No protocol logic here:
//! everything a connection means is decided by the core engine.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use rill_core::config::Config;
use rill_core::dump::listener_name;
use rill_core::engine::conn_id::{conn_id, local_of};
use rill_core::engine::{Command, ConnId, Engine, EngineConfig, Listener, StreamMessage};
use rill_core::id_map::IdMap;
use rill_runtime_common::accept_exhaustion::{is_exhaustion, AcceptExhaustion, AfterExhaustion};
use rill_runtime_common::admission::{refuse, Admission, Permit, RefusalLog};
use rill_runtime_common::conn_io::{ConnIo, MAX_IOV};
use rill_runtime_common::driver::{Driver, Sockets};
use rill_runtime_common::dump::recorder_from_config;
use rill_runtime_common::reload::Reloader;
use rill_runtime_common::stats::{StatsBoard, WorkerStats};
use rill_runtime_common::tls::{accepted_io, TlsConfig};
use rill_runtime_common::{bind_udp_pair, engine_seed, peer_index, UdpPorts};
use tracing::{debug, warn};

const RTMP_LISTENER: Token = Token(0);
const HTTP_LISTENER: Token = Token(1);
const WAKER: Token = Token(2);
const RTSP_LISTENER: Token = Token(3);
const RTMPS_LISTENER: Token = Token(4);
const HTTPS_LISTENER: Token = Token(5);
const RTSPS_LISTENER: Token = Token(6);
const API_LISTENER: Token = Token(7);
const FIRST_CONN: usize = 16;
/// Bytes read from one connection per pass of the event loop.
const READ_BUDGET: usize = 256 * 1024;
/// Bytes written to one connection per pass of the event loop. Steady playing is one frame or
/// a few per pass; what exceeds this (a new player's cached GOP) waits for the next pass, so
/// many players joining at once all get their first key frame before anyone gets the rest.
const WRITE_PASS_BUDGET: usize = 64 * 1024;
/// Longest sleep, so the shutdown flag is noticed promptly.
const MAX_WAIT: Duration = Duration::from_millis(200);
/// While one pass writes a frame out to many players, input is taken in again after this many
/// connections: a frame that arrived meanwhile goes out to the players not yet written in the
/// same write as the frame before it, at no cost in delay (see [`Worker::process_outputs`]).
const MIDWAY_INPUT_EVERY: usize = 32;

/// Most queued connections shed in one go while out of descriptors (the listen backlog).
const SHED_PER_PASS: usize = 1024;

/// How long a stopping worker keeps serving its engine's own connections for the last webhooks
/// (the sessions' stop events) to go out.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(2);

/// Another worker: where to send stream messages and commands, and how to wake it.
#[derive(Clone)]
struct Peer {
    tx: Sender<PeerMessage>,
    waker: Arc<Waker>,
}

/// What one worker's engine hands another's.
enum PeerMessage {
    /// `Output::Broadcast`.
    Stream(StreamMessage),
    /// `Output::Command` for a connection of the receiving worker.
    Command(Command),
    /// New engine settings from a config reload.
    Reconfigure(Box<EngineConfig>),
}

struct Connection {
    stream: TcpStream,
    /// Transform, bytes not yet written and close-after-flush.
    io: ConnIo,
    write_interest: bool,
    dirty: bool,
    /// This connection's place in the server-wide connection counts, given back on drop
    /// (none for connections the engine opened).
    _permit: Option<Permit>,
}

/// An outbound connection on its way: the socket connecting now, the addresses to try next and
/// the I/O layer it will have.
struct Connecting {
    stream: TcpStream,
    addr: SocketAddr,
    rest: VecDeque<SocketAddr>,
    io: ConnIo,
}

/// A host name resolved on a helper thread, for an outbound connection.
type Resolved = (ConnId, Result<VecDeque<SocketAddr>, String>);

/// A UDP socket of an RTSP session: RTP or RTCP of one track.
struct Udp {
    socket: UdpSocket,
    conn: u64,
    track: usize,
    rtcp: bool,
}

/// A worker's sockets: what the engine's socket outputs act on.
struct Net {
    index: usize,
    poll: Poll,
    conns: IdMap<Token, Connection>,
    next_token: usize,
    /// Connections with something to write this pass.
    dirty: Vec<Token>,
    udp_ports: Option<UdpPorts>,
    udp: IdMap<Token, Udp>,
    /// The UDP sockets of each connection, by (track, rtcp).
    udp_of: IdMap<u64, Vec<(usize, bool, Token)>>,
    peers: Vec<Peer>,
    /// A stream message went to the peers this pass: wake them once it is over.
    wake_peers: bool,
    /// Wakes this worker's poll (a resolver thread finished).
    waker: Arc<Waker>,
    /// Outbound connections whose host is being resolved; the results come on `resolved`.
    resolving: IdMap<ConnId, ConnIo>,
    resolved_tx: Sender<Resolved>,
    resolved: Receiver<Resolved>,
    /// Outbound connections being made, by token (the local part of the engine's id).
    connecting: IdMap<Token, Connecting>,
}

struct Worker {
    /// The engine, with everything it asks for that is not a socket.
    driver: Driver,
    net: Net,
    /// Each listener with the kind of connection it takes and, for a TLS one, its certificate.
    listeners: Vec<(Token, TcpListener, Listener, Option<TlsConfig>)>,
    rx: Receiver<PeerMessage>,
    read_buf: Vec<u8>,
    batch: Vec<Bytes>,
    /// Connections that used up their read budget with bytes still waiting (edge-triggered
    /// readiness will not say so again): read again on the next pass.
    read_again: Vec<Token>,
    /// Connections that used up their write budget with bytes still to send: written again on
    /// the next pass.
    write_again: Vec<Token>,
    /// Connection counts shared by every worker, asked before a connection is set up.
    admission: Admission,
    refusals: RefusalLog,
    /// Readiness taken in the middle of a write pass (kept to reuse its allocation).
    midway_events: Option<Events>,
    /// Out of descriptors at accept: when to try again, the reserve that sheds the queue.
    exhaustion: AcceptExhaustion,
    /// Listeners whose accept failed for lack of descriptors, tried again at
    /// `exhaustion.retry_at()` (their queued connections raise no new readiness).
    accept_retry: Vec<Token>,
}

fn bind_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn parse_addr(what: &str, addr: &str) -> io::Result<SocketAddr> {
    addr.parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} address {addr:?}: {e}"),
        )
    })
}

/// Binds every listener on every worker, then runs the workers until `shutdown` is set;
/// `reloader` (SIGHUP and the API's reload) hands new settings to every worker.
pub fn run(
    config: &Config,
    tls: Option<&TlsConfig>,
    workers: usize,
    reloader: Option<&Reloader>,
    shutdown: Arc<AtomicBool>,
) -> io::Result<()> {
    let workers = workers.max(1);
    let engine_config = rill_runtime_common::engine_config(config, workers);
    let admission = Admission::new(config.connection_limits());
    let board = StatsBoard::new(workers);
    let mut listen = Vec::new();
    if config.rtmp.enable {
        listen.push((
            RTMP_LISTENER,
            parse_addr("rtmp", &config.rtmp.addr)?,
            Listener::Rtmp,
            None,
        ));
    }
    if config.http.enable {
        listen.push((
            HTTP_LISTENER,
            parse_addr("http", &config.http.addr)?,
            Listener::Http,
            None,
        ));
    }
    if !config.api.addr.is_empty() {
        listen.push((
            API_LISTENER,
            parse_addr("api", &config.api.addr)?,
            Listener::Api,
            None,
        ));
    }
    if config.rtsp.enable {
        listen.push((
            RTSP_LISTENER,
            parse_addr("rtsp", &config.rtsp.addr)?,
            Listener::Rtsp,
            None,
        ));
    }
    if let Some(tls) = tls {
        tls.watch()?;
        for (enable, token, what, addr, kind) in [
            (
                config.rtmps.enable,
                RTMPS_LISTENER,
                "rtmps",
                &config.rtmps.addr,
                Listener::Rtmp,
            ),
            (
                config.https.enable,
                HTTPS_LISTENER,
                "https",
                &config.https.addr,
                Listener::Http,
            ),
            (
                config.rtsps.enable,
                RTSPS_LISTENER,
                "rtsps",
                &config.rtsps.addr,
                Listener::Rtsp,
            ),
        ] {
            if enable {
                listen.push((token, parse_addr(what, addr)?, kind, Some(tls.clone())));
            }
        }
    }
    let mut built = Vec::new();
    let mut peers = Vec::new();
    for index in 0..workers {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listeners = Vec::new();
        for (token, addr, kind, tls) in &listen {
            let mut l = bind_reuseport(*addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            poll.registry()
                .register(&mut l, *token, Interest::READABLE)?;
            listeners.push((*token, l, *kind, tls.clone()));
        }
        let (tx, rx) = channel();
        peers.push(Peer {
            tx,
            waker: waker.clone(),
        });
        let own = EngineConfig {
            worker: index,
            ..engine_config.clone()
        };
        let engine = Engine::new(own, engine_seed(index));
        let (resolved_tx, resolved) = channel();
        let stats = WorkerStats::new(board.clone(), index);
        let dumps = recorder_from_config(config);
        built.push(Worker {
            driver: Driver::new(engine, Instant::now(), stats, dumps)
                .with_reloader(reloader.cloned()),
            net: Net {
                index,
                poll,
                conns: IdMap::default(),
                next_token: FIRST_CONN,
                dirty: Vec::new(),
                udp_ports: UdpPorts::from_config(config),
                udp: IdMap::default(),
                udp_of: IdMap::default(),
                peers: Vec::new(),
                wake_peers: false,
                waker,
                resolving: IdMap::default(),
                resolved_tx,
                resolved,
                connecting: IdMap::default(),
            },
            listeners,
            rx,
            read_buf: vec![0; 64 * 1024],
            batch: Vec::with_capacity(MAX_IOV),
            read_again: Vec::new(),
            write_again: Vec::new(),
            admission: admission.clone(),
            refusals: RefusalLog::default(),
            midway_events: Some(Events::with_capacity(1024)),
            exhaustion: AcceptExhaustion::new(),
            accept_retry: Vec::new(),
        });
    }
    if let Some(reloader) = reloader {
        let all = peers.clone();
        let deliver = Box::new(move |config: &EngineConfig| {
            for peer in &all {
                let _ = peer
                    .tx
                    .send(PeerMessage::Reconfigure(Box::new(config.clone())));
                let _ = peer.waker.wake();
            }
        });
        reloader.attach(tls.cloned(), admission.clone(), deliver);
    }
    let mut handles = Vec::new();
    for mut worker in built {
        let index = worker.net.index;
        worker.net.peers = peers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, p)| p.clone())
            .collect();
        let shutdown = shutdown.clone();
        let handle = std::thread::Builder::new()
            .name(format!("rill-worker-{index}"))
            .spawn(move || worker.run(&shutdown))?;
        handles.push(handle);
    }
    drop(peers);
    let mut result = Ok(());
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => result = Err(io::Error::other("a worker thread panicked")),
        }
    }
    result
}

impl Worker {
    fn run(&mut self, shutdown: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !shutdown.load(Ordering::Relaxed) {
            let wait = if self.read_again.is_empty() && self.write_again.is_empty() {
                self.wait(MAX_WAIT)
            } else {
                Duration::ZERO
            };
            self.turn(&mut events, wait)?;
        }
        self.shutdown(&mut events);
        Ok(())
    }

    /// How long the next poll may sleep: until the engine's next deadline or the next accept
    /// retry, `limit` at most.
    fn wait(&self, limit: Duration) -> Duration {
        let now = self.driver.now();
        let engine = self
            .driver
            .engine
            .poll_timeout()
            .map_or(limit, |t| Duration::from_millis(t.saturating_sub(now)));
        let retry = match self.exhaustion.retry_at() {
            Some(at) if !self.accept_retry.is_empty() => {
                at.saturating_duration_since(Instant::now())
            }
            _ => limit,
        };
        engine.min(retry).min(limit)
    }

    /// Accepts again on the listeners that ran out of descriptors, once their retry is due.
    fn retry_accepts(&mut self) {
        if self
            .exhaustion
            .retry_at()
            .is_some_and(|at| Instant::now() >= at)
        {
            for t in std::mem::take(&mut self.accept_retry) {
                self.accept(t);
            }
        }
    }

    /// One pass of the loop: readiness (waiting up to `wait` for it), reads, resolved names,
    /// the other workers' messages, timers, then the outputs and the writes they call for.
    fn turn(&mut self, events: &mut Events, wait: Duration) -> io::Result<()> {
        if let Err(e) = self.net.poll.poll(events, Some(wait)) {
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        self.handle_events(events);
        self.retry_accepts();
        for t in std::mem::take(&mut self.read_again) {
            self.read(t);
        }
        self.take_resolved();
        let now = self.driver.now();
        self.take_remote(now);
        self.driver.tick(now);
        self.process_outputs();
        Ok(())
    }

    /// Stops accepting, closes every accepted connection, serves the engine's own connections
    /// until its last webhooks went out or [`WEBHOOK_DRAIN`] passed, and finishes.
    fn shutdown(&mut self, events: &mut Events) {
        for (_, mut listener, _, _) in self.listeners.drain(..) {
            let _ = self.net.poll.registry().deregister(&mut listener);
        }
        self.driver.shutdown(&mut self.net);
        self.process_outputs();
        let deadline = Instant::now() + WEBHOOK_DRAIN;
        while self.driver.pending_notifications() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let wait = self.wait(MAX_WAIT.min(left));
            if self.turn(events, wait).is_err() {
                break;
            }
        }
        self.driver.finish(&mut self.net);
    }

    /// Host names resolved since the last look: connect to them (unless the engine gave up).
    fn take_resolved(&mut self) {
        while let Ok((conn, addrs)) = self.net.resolved.try_recv() {
            let Some(io) = self.net.resolving.remove(&conn) else {
                continue;
            };
            match addrs {
                Ok(addrs) => self.net.start_connect(&mut self.driver, conn, addrs, io),
                Err(why) => {
                    let now = self.driver.now();
                    self.driver.connected(conn, Err(why), now);
                }
            }
        }
    }

    /// A connecting socket is ready: it is a connection now (the engine is told and drives it
    /// from here like an accepted one), or it failed (the next address is tried).
    fn connect_ready(&mut self, token: Token) {
        let net = &mut self.net;
        let Some(c) = net.connecting.get(&token) else {
            return;
        };
        let outcome = match c.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match c.stream.peer_addr() {
                Ok(peer) => Ok(peer),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(e),
            },
        };
        let Some(mut c) = net.connecting.remove(&token) else {
            return;
        };
        let (conn, now) = (net.conn_id(token), self.driver.now());
        let registry = net.poll.registry();
        let outcome = outcome.and_then(|peer| {
            registry.reregister(&mut c.stream, token, Interest::READABLE)?;
            Ok(peer)
        });
        match outcome {
            Ok(peer) => {
                let _ = c.stream.set_nodelay(true);
                net.conns.insert(
                    token,
                    Connection {
                        stream: c.stream,
                        io: c.io,
                        write_interest: false,
                        dirty: false,
                        _permit: None,
                    },
                );
                debug!(conn, %peer, "connected");
                self.driver.connected(conn, Ok(peer), now);
                // A TLS client has its hello to send whether or not the engine has bytes.
                net.mark_dirty(token);
            }
            Err(e) => {
                let _ = registry.deregister(&mut c.stream);
                if c.rest.is_empty() {
                    let why = format!("cannot connect to {}: {e}", c.addr);
                    self.driver.connected(conn, Err(why), now);
                } else {
                    net.start_connect(&mut self.driver, conn, c.rest, c.io);
                }
            }
        }
    }

    fn handle_events(&mut self, events: &Events) {
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                t if self.listeners.iter().any(|(l, ..)| *l == t) => self.accept(t),
                t if self.net.udp.contains_key(&t) => self.read_udp(t),
                t if self.net.connecting.contains_key(&t) => self.connect_ready(t),
                t => {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.read(t);
                    }
                    if event.is_writable() {
                        self.net.mark_dirty(t);
                    }
                }
            }
        }
    }

    /// Stream messages (a publisher's frames, for one) and commands from the other workers.
    fn take_remote(&mut self, now: u64) {
        while let Ok(message) = self.rx.try_recv() {
            match message {
                PeerMessage::Stream(m) => self.driver.engine.handle_remote(m, now),
                PeerMessage::Command(c) => self.driver.engine.handle_command(c, now),
                PeerMessage::Reconfigure(c) => self.driver.engine.reconfigure(*c, now),
            }
        }
    }

    /// Takes in, without waiting, whatever is ready now: called in the middle of a write pass.
    fn take_input_midway(&mut self) {
        let Some(mut events) = self.midway_events.take() else {
            return;
        };
        if self
            .net
            .poll
            .poll(&mut events, Some(Duration::ZERO))
            .is_ok()
        {
            self.handle_events(&events);
        }
        self.midway_events = Some(events);
        let now = self.driver.now();
        self.take_remote(now);
    }

    fn accept(&mut self, token: Token) {
        let now = self.driver.now();
        loop {
            let Some((_, listener, kind, tls)) =
                self.listeners.iter().find(|(t, _, _, _)| *t == token)
            else {
                return;
            };
            let kind = *kind;
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    self.exhaustion.accepted(Instant::now());
                    let permit = match self.admission.admit(peer.ip()) {
                        Ok(permit) => permit,
                        Err(refusal) => {
                            // A 503 in plain text means nothing to a TLS client: just close.
                            refuse(&stream, kind.is_http() && tls.is_none());
                            self.refusals.refused(&refusal, listener_name(kind), peer);
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
                    let _ = stream.set_nodelay(true);
                    let conn_token = Token(self.net.next_token);
                    self.net.next_token += 1;
                    if let Err(e) = self.net.poll.registry().register(
                        &mut stream,
                        conn_token,
                        Interest::READABLE,
                    ) {
                        warn!("cannot register connection from {peer}: {e}");
                        continue;
                    }
                    let tls = io.encrypted();
                    self.net.conns.insert(
                        conn_token,
                        Connection {
                            stream,
                            io,
                            write_interest: false,
                            dirty: false,
                            _permit: Some(permit),
                        },
                    );
                    debug!(conn = conn_token.0, %peer, ?kind, "accepted");
                    let id = self.net.conn_id(conn_token);
                    self.driver.accepted(id, kind, peer, tls, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_exhaustion(&e) => {
                    // Queued connections raise no new readiness: try again after a backoff.
                    let after = self
                        .exhaustion
                        .failed(listener_name(kind), &e, Instant::now());
                    if matches!(after, AfterExhaustion::Shed(_)) {
                        self.shed_queue(token);
                    }
                    if !self.accept_retry.contains(&token) {
                        self.accept_retry.push(token);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Out of descriptors for a while: refuses the connections queued on `token`'s listener
    /// (accepted with the reserve descriptor, closed at once) rather than leave them hanging.
    fn shed_queue(&mut self, token: Token) {
        let Some((_, listener, kind, _)) = self.listeners.iter().find(|(t, ..)| *t == token) else {
            return;
        };
        let http = kind.is_http();
        for _ in 0..SHED_PER_PASS {
            // The connection is closed before the reserve is taken again.
            let shed = self.exhaustion.shed(|| {
                let (stream, _) = listener.accept()?;
                refuse(&stream, http);
                Ok(())
            });
            if !shed {
                return;
            }
        }
    }

    /// Reads what `token` has, up to [`READ_BUDGET`] per pass so one flooding peer cannot
    /// starve the other connections of this worker.
    fn read(&mut self, token: Token) {
        let id = self.net.conn_id(token);
        let mut budget = READ_BUDGET;
        loop {
            if budget == 0 {
                if !self.read_again.contains(&token) {
                    self.read_again.push(token);
                }
                return;
            }
            let Some(conn) = self.net.conns.get_mut(&token) else {
                return;
            };
            let reason = match conn.stream.read(&mut self.read_buf) {
                Ok(0) => "peer closed".to_owned(),
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let now = self.driver.now();
                    let wire = &self.read_buf[..n];
                    match self.driver.input(id, &mut conn.io, wire, now) {
                        Ok(false) => continue,
                        Ok(true) => {
                            self.net.mark_dirty(token);
                            continue;
                        }
                        Err(e) => format!("read error: {e}"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => format!("read error: {e}"),
            };
            return self.net.drop_conn(&mut self.driver, token, &reason);
        }
    }

    /// Acts on the engine's outputs and writes to every connection that has something to send.
    ///
    /// Writing one frame to a thousand players takes milliseconds, and the next frame often
    /// arrives meanwhile. So the first walk over the connections takes input in again every
    /// [`MIDWAY_INPUT_EVERY`] connections: the players still ahead in the walk then get both
    /// frames in one write, and nobody waits for a second walk. Nothing is held back to make
    /// this happen; the more players a worker has, the more frames share a write. Later walks
    /// (players that got the new frames after their turn) take no input, so the pass ends.
    fn process_outputs(&mut self) {
        let mut first_walk = true;
        // Connections with more to send than the last pass took (a new player's cached GOP)
        // are written after those the engine has fresh bytes for: live frames and a new
        // player's first key frame do not wait behind anyone's catch-up.
        let mut continuing = std::mem::take(&mut self.write_again);
        loop {
            self.driver.drain(&mut self.net);
            for t in continuing.drain(..) {
                self.net.mark_dirty(t);
            }
            if self.net.dirty.is_empty() {
                break;
            }
            let mut walk = std::mem::take(&mut self.net.dirty);
            for (i, token) in walk.iter().enumerate() {
                if first_walk && i > 0 && i % MIDWAY_INPUT_EVERY == 0 {
                    self.take_input_midway();
                }
                self.flush(*token);
            }
            first_walk = false;
            // Keep the connections marked during the walk (a socket writable again midway).
            walk.clear();
            walk.append(&mut self.net.dirty);
            self.net.dirty = walk;
        }
        if std::mem::take(&mut self.net.wake_peers) {
            for peer in &self.net.peers {
                let _ = peer.waker.wake();
            }
        }
    }

    /// Writes as much as the socket takes: pending bytes first, then more from the engine.
    ///
    /// Fresh bytes are written straight from the shared batch; only what the socket does not
    /// take is kept in the connection's queue, so players that keep up never hold a queue of
    /// their own.
    fn flush(&mut self, token: Token) {
        let id = self.net.conn_id(token);
        let mut pass_written = 0;
        loop {
            let Some(conn) = self.net.conns.get_mut(&token) else {
                return;
            };
            conn.dirty = false;
            // sendmsg rather than writev: a socket has no file position to lock.
            let send =
                |iov: &[io::IoSlice<'_>]| socket2::SockRef::from(&conn.stream).send_vectored(iov);
            let sent = if conn.io.queue.is_empty() {
                if pass_written >= WRITE_PASS_BUDGET {
                    // This connection had its share of the pass; the rest goes on the next.
                    self.write_again.push(token);
                    return;
                }
                self.batch.clear();
                let budget = WRITE_PASS_BUDGET - pass_written;
                match self
                    .driver
                    .take_batch(id, &mut conn.io, budget, &mut self.batch)
                {
                    Ok(0) => break,
                    Ok(_) => conn.io.queue.send_batch(&mut self.batch, send),
                    Err(e) => Err(e),
                }
            } else {
                conn.io.queue.send(send)
            };
            match sent {
                Ok(sent) if sent.full => {
                    // The socket is full: wait for it to drain.
                    if !conn.write_interest {
                        conn.write_interest = true;
                        let _ = self.net.poll.registry().reregister(
                            &mut conn.stream,
                            token,
                            Interest::READABLE | Interest::WRITABLE,
                        );
                    }
                    return;
                }
                Ok(sent) => pass_written += sent.written,
                Err(e) => {
                    let reason = format!("write error: {e}");
                    return self.net.drop_conn(&mut self.driver, token, &reason);
                }
            }
        }
        let Some(conn) = self.net.conns.get_mut(&token) else {
            return;
        };
        if conn.io.closes_after_flush() {
            return self
                .net
                .drop_conn(&mut self.driver, token, "closed by server after flush");
        }
        if conn.write_interest {
            conn.write_interest = false;
            let _ =
                self.net
                    .poll
                    .registry()
                    .reregister(&mut conn.stream, token, Interest::READABLE);
        }
    }

    fn read_udp(&mut self, token: Token) {
        loop {
            let Some(udp) = self.net.udp.get(&token) else {
                return;
            };
            match udp.socket.recv_from(&mut self.read_buf) {
                Ok((n, from)) => {
                    let (conn, track, rtcp) = (udp.conn, udp.track, udp.rtcp);
                    let data = Bytes::copy_from_slice(&self.read_buf[..n]);
                    let now = self.driver.now();
                    self.driver
                        .engine
                        .handle_udp(conn, track, rtcp, from, data, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP port unreachable and the like: the session's timeout decides.
                Err(_) => return,
            }
        }
    }
}

impl Net {
    fn conn_id(&self, token: Token) -> ConnId {
        conn_id(self.index, token.0 as u64)
    }

    fn token(conn: ConnId) -> Token {
        Token(local_of(conn) as usize)
    }

    fn mark_dirty(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(&token) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
        }
    }

    fn drop_conn(&mut self, driver: &mut Driver, token: Token, reason: &str) {
        self.close_udp(self.conn_id(token));
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if let Some(last) = conn.io.close_bytes() {
                // Best effort, never waited for: a full socket just ends without it.
                let _ = std::io::Write::write(&mut conn.stream, &last);
            }
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
            let now = driver.now();
            driver.closed(self.conn_id(token), reason, now);
        }
    }
}

impl Net {
    /// Starts a non-blocking connect to the first address of `addrs` that takes one; the
    /// socket turns writable when it is done ([`Worker::connect_ready`]).
    fn start_connect(
        &mut self,
        driver: &mut Driver,
        conn: ConnId,
        mut addrs: VecDeque<SocketAddr>,
        io: ConnIo,
    ) {
        let token = Self::token(conn);
        let mut why = String::from("the name has no address");
        while let Some(addr) = addrs.pop_front() {
            match TcpStream::connect(addr) {
                Ok(mut stream) => {
                    let interest = Interest::WRITABLE | Interest::READABLE;
                    match self.poll.registry().register(&mut stream, token, interest) {
                        Ok(()) => {
                            let rest = addrs;
                            let c = Connecting {
                                stream,
                                addr,
                                rest,
                                io,
                            };
                            self.connecting.insert(token, c);
                            return;
                        }
                        Err(e) => why = format!("cannot register a connection to {addr}: {e}"),
                    }
                }
                Err(e) => why = format!("cannot connect to {addr}: {e}"),
            }
        }
        let now = driver.now();
        driver.connected(conn, Err(why), now);
    }
}

impl Sockets for Net {
    fn transmit(&mut self, _: &mut Driver, conn: ConnId) {
        // Written in the walk that follows the drain.
        self.mark_dirty(Self::token(conn));
    }

    fn close(&mut self, driver: &mut Driver, conn: ConnId, reason: &str) {
        // An outbound connection not open yet is abandoned.
        self.resolving.remove(&conn);
        if let Some(mut c) = self.connecting.remove(&Self::token(conn)) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        self.drop_conn(driver, Self::token(conn), reason);
    }

    /// An IP address is connected to at once; a name is resolved on a helper thread first
    /// (never on the event loop).
    fn connect(&mut self, driver: &mut Driver, conn: ConnId, host: String, port: u16, io: ConnIo) {
        if let Ok(ip) = host.parse::<IpAddr>() {
            let addrs = VecDeque::from([SocketAddr::new(ip, port)]);
            return self.start_connect(driver, conn, addrs, io);
        }
        let (tx, waker) = (self.resolved_tx.clone(), self.waker.clone());
        let spawned = std::thread::Builder::new()
            .name("rill-resolve".into())
            .spawn(move || {
                let addrs = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect())
                    .map_err(|e| format!("cannot resolve {host}: {e}"));
                let _ = tx.send((conn, addrs));
                let _ = waker.wake();
            });
        match spawned {
            Ok(_) => {
                self.resolving.insert(conn, io);
            }
            Err(e) => {
                let now = driver.now();
                let why = format!("cannot start a resolver thread: {e}");
                driver.connected(conn, Err(why), now);
            }
        }
    }

    fn conn_io(&mut self, conn: ConnId) -> Option<&mut ConnIo> {
        self.conns.get_mut(&Self::token(conn)).map(|c| &mut c.io)
    }

    /// Binds a port pair for an RTSP track and registers both sockets.
    fn open_udp(&mut self, conn: ConnId, track: usize) -> Option<(u16, u16)> {
        let (rtp, rtcp, ports) = bind_udp_pair(self.udp_ports)?;
        let mut ok = true;
        for (socket, is_rtcp) in [(rtp, false), (rtcp, true)] {
            let token = Token(self.next_token);
            self.next_token += 1;
            let mut socket = UdpSocket::from_std(socket);
            if self
                .poll
                .registry()
                .register(&mut socket, token, Interest::READABLE)
                .is_err()
            {
                ok = false;
                continue;
            }
            let udp = Udp {
                socket,
                conn,
                track,
                rtcp: is_rtcp,
            };
            self.udp.insert(token, udp);
            let sockets = self.udp_of.entry(conn).or_default();
            sockets.push((track, is_rtcp, token));
        }
        ok.then_some(ports)
    }

    fn send_udp(&mut self, conn: ConnId, track: usize, rtcp: bool, to: SocketAddr, data: &[u8]) {
        let token = self.udp_of.get(&conn).and_then(|v| {
            v.iter()
                .find(|(t, r, _)| *t == track && *r == rtcp)
                .map(|(_, _, token)| *token)
        });
        if let Some(udp) = token.and_then(|t| self.udp.get(&t)) {
            // A full socket buffer drops the datagram, as the network may.
            if let Err(e) = udp.socket.send_to(data, to) {
                debug!(conn, "UDP send to {to} failed: {e}");
            }
        }
    }

    fn close_udp(&mut self, conn: ConnId) {
        for (_, _, token) in self.udp_of.remove(&conn).unwrap_or_default() {
            if let Some(mut udp) = self.udp.remove(&token) {
                let _ = self.poll.registry().deregister(&mut udp.socket);
            }
        }
    }

    fn broadcast(&mut self, message: StreamMessage) {
        for peer in &self.peers {
            let _ = peer.tx.send(PeerMessage::Stream(message.clone()));
        }
        self.wake_peers = true;
    }

    fn send_command(&mut self, worker: usize, command: Command) {
        let peer = peer_index(self.index, worker).and_then(|i| self.peers.get(i));
        if let Some(peer) = peer {
            let _ = peer.tx.send(PeerMessage::Command(command));
            self.wake_peers = true;
        }
    }

    fn open_conns(&self) -> Vec<ConnId> {
        self.conns.keys().map(|t| self.conn_id(*t)).collect()
    }
}
