//! One event loop per worker thread: sockets and timers in, bytes out. No protocol logic here:
//! everything a connection means is decided by the core engine.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read};
use std::net::SocketAddr;
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
use rill_core::engine::{Command, Engine, Listener, Output, StreamMessage};
use rill_runtime_common::admission::{refuse, Admission, Permit, RefusalLog};
use rill_runtime_common::dump::{recorder_from_config, unix_ms, DumpRecorder};
use rill_runtime_common::record::RecordFiles;
use rill_runtime_common::stats::{StatsBoard, WorkerStats};
use rill_runtime_common::webhook::{Notifier, WorkerHooks};
use rill_runtime_common::{
    engine_seed, log_session, peer_index, remove_file, write_file, UdpPorts,
};
use tracing::{debug, warn};

const RTMP_LISTENER: Token = Token(0);
const HTTP_LISTENER: Token = Token(1);
const WAKER: Token = Token(2);
const RTSP_LISTENER: Token = Token(3);
const FIRST_CONN: usize = 16;
/// Slices per vectored write.
const MAX_IOV: usize = 64;
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

/// How long a stopping server waits for the last webhooks (the sessions' stop events) to go.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(3);

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
}

struct Connection {
    stream: TcpStream,
    /// Bytes taken from the engine but not yet written; the first is written from `offset`.
    out: VecDeque<Bytes>,
    offset: usize,
    write_interest: bool,
    close_after_flush: bool,
    dirty: bool,
    /// This connection's place in the server-wide connection counts, given back on drop.
    _permit: Permit,
}

/// A UDP socket of an RTSP session: RTP or RTCP of one track.
struct Udp {
    socket: UdpSocket,
    conn: u64,
    track: usize,
    rtcp: bool,
}

struct Worker {
    index: usize,
    poll: Poll,
    engine: Engine,
    listeners: Vec<(Token, TcpListener, Listener)>,
    conns: HashMap<Token, Connection>,
    next_token: usize,
    peers: Vec<Peer>,
    rx: Receiver<PeerMessage>,
    epoch: Instant,
    read_buf: Vec<u8>,
    dirty: Vec<Token>,
    batch: Vec<Bytes>,
    udp_ports: Option<UdpPorts>,
    udp: HashMap<Token, Udp>,
    /// The UDP sockets of each connection, by (track, rtcp).
    udp_of: HashMap<u64, Vec<(usize, bool, Token)>>,
    /// Debug dumps of inbound bytes, when `[dump]` enables them.
    dumps: Option<DumpRecorder>,
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
    /// Recording files of this worker's publishers.
    records: RecordFiles,
    /// This worker's statistics snapshot on the board all workers share (HTTP API, metrics).
    stats: WorkerStats,
    /// Session events for the webhooks.
    hooks: WorkerHooks,
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

/// Binds every listener on every worker, then runs the workers until `shutdown` is set.
pub fn run(config: &Config, workers: usize, shutdown: Arc<AtomicBool>) -> io::Result<()> {
    let workers = workers.max(1);
    let engine_config = rill_runtime_common::engine_config(config, workers);
    let admission = Admission::new(config.connection_limits());
    let board = StatsBoard::new(workers);
    let notifier = Notifier::start(config, workers, board.clone());
    let mut listen = Vec::new();
    if config.rtmp.enable {
        listen.push((
            RTMP_LISTENER,
            parse_addr("rtmp", &config.rtmp.addr)?,
            Listener::Rtmp,
        ));
    }
    if config.http.enable {
        listen.push((
            HTTP_LISTENER,
            parse_addr("http", &config.http.addr)?,
            Listener::Http,
        ));
    }
    if config.rtsp.enable {
        listen.push((
            RTSP_LISTENER,
            parse_addr("rtsp", &config.rtsp.addr)?,
            Listener::Rtsp,
        ));
    }
    let mut built = Vec::new();
    let mut peers = Vec::new();
    for index in 0..workers {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listeners = Vec::new();
        for (token, addr, kind) in &listen {
            let mut l = bind_reuseport(*addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            poll.registry()
                .register(&mut l, *token, Interest::READABLE)?;
            listeners.push((*token, l, *kind));
        }
        let (tx, rx) = channel();
        peers.push(Peer { tx, waker });
        let seed = engine_seed(index);
        built.push(Worker {
            index,
            poll,
            engine: Engine::new(engine_config.clone(), seed),
            listeners,
            conns: HashMap::new(),
            next_token: FIRST_CONN,
            peers: Vec::new(),
            rx,
            epoch: Instant::now(),
            read_buf: vec![0; 64 * 1024],
            dirty: Vec::new(),
            batch: Vec::with_capacity(MAX_IOV),
            udp_ports: UdpPorts::from_config(config),
            udp: HashMap::new(),
            udp_of: HashMap::new(),
            dumps: recorder_from_config(config),
            read_again: Vec::new(),
            write_again: Vec::new(),
            admission: admission.clone(),
            refusals: RefusalLog::default(),
            midway_events: Some(Events::with_capacity(1024)),
            records: RecordFiles::new(),
            stats: WorkerStats::new(board.clone(), index),
            hooks: notifier.worker(),
        });
    }
    let mut handles = Vec::new();
    for mut worker in built {
        worker.peers = peers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != worker.index)
            .map(|(_, p)| p.clone())
            .collect();
        let shutdown = shutdown.clone();
        let handle = std::thread::Builder::new()
            .name(format!("rill-worker-{}", worker.index))
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
    notifier.finish(WEBHOOK_DRAIN);
    result
}

impl Worker {
    fn conn_id(&self, token: Token) -> u64 {
        conn_id(self.index, token.0 as u64)
    }

    fn token(conn: u64) -> Token {
        Token(local_of(conn) as usize)
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn run(&mut self, shutdown: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !shutdown.load(Ordering::Relaxed) {
            let now = self.now();
            let wait = if self.read_again.is_empty() && self.write_again.is_empty() {
                self.engine
                    .poll_timeout()
                    .map_or(MAX_WAIT, |t| Duration::from_millis(t.saturating_sub(now)))
                    .min(MAX_WAIT)
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.handle_events(&events);
            for t in std::mem::take(&mut self.read_again) {
                self.read(t);
            }
            let now = self.now();
            self.take_remote(now);
            if self.engine.poll_timeout().is_some_and(|t| t <= now) {
                self.engine.handle_timeout(now);
            }
            self.stats.tick(&mut self.engine, now);
            self.process_outputs();
        }
        self.shutdown();
        Ok(())
    }

    fn handle_events(&mut self, events: &Events) {
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                t if t == RTMP_LISTENER || t == HTTP_LISTENER || t == RTSP_LISTENER => {
                    self.accept(t)
                }
                t if self.udp.contains_key(&t) => self.read_udp(t),
                t => {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.read(t);
                    }
                    if event.is_writable() {
                        self.mark_dirty(t);
                    }
                }
            }
        }
    }

    /// Stream messages from the other workers (a publisher's frames, for one).
    fn take_remote(&mut self, now: u64) {
        while let Ok(message) = self.rx.try_recv() {
            match message {
                PeerMessage::Stream(m) => self.engine.handle_remote(m, now),
                PeerMessage::Command(c) => self.engine.handle_command(c, now),
            }
        }
    }

    /// Takes in, without waiting, whatever is ready now: called in the middle of a write pass.
    fn take_input_midway(&mut self) {
        let Some(mut events) = self.midway_events.take() else {
            return;
        };
        if self.poll.poll(&mut events, Some(Duration::ZERO)).is_ok() {
            self.handle_events(&events);
        }
        self.midway_events = Some(events);
        let now = self.now();
        self.take_remote(now);
    }

    fn accept(&mut self, token: Token) {
        let now = self.now();
        loop {
            let Some((_, listener, kind)) = self.listeners.iter().find(|(t, _, _)| *t == token)
            else {
                return;
            };
            let kind = *kind;
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let permit = match self.admission.admit(peer.ip()) {
                        Ok(permit) => permit,
                        Err(refusal) => {
                            refuse(&stream, kind == Listener::Http);
                            self.refusals.refused(&refusal, listener_name(kind), peer);
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let conn_token = Token(self.next_token);
                    self.next_token += 1;
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, conn_token, Interest::READABLE)
                    {
                        warn!("cannot register connection from {peer}: {e}");
                        continue;
                    }
                    self.conns.insert(
                        conn_token,
                        Connection {
                            stream,
                            out: VecDeque::new(),
                            offset: 0,
                            write_interest: false,
                            close_after_flush: false,
                            dirty: false,
                            _permit: permit,
                        },
                    );
                    debug!(conn = conn_token.0, %peer, ?kind, "accepted");
                    let id = self.conn_id(conn_token);
                    if let Some(d) = self.dumps.as_mut() {
                        d.on_accept(id, listener_name(kind), peer, now, unix_ms());
                    }
                    self.engine.handle_accept(id, kind, peer, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: try again on the next event rather than spinning.
                    warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Reads what `token` has, up to [`READ_BUDGET`] per pass so one flooding peer cannot
    /// starve the other connections of this worker.
    fn read(&mut self, token: Token) {
        let id = self.conn_id(token);
        let mut budget = READ_BUDGET;
        loop {
            if budget == 0 {
                if !self.read_again.contains(&token) {
                    self.read_again.push(token);
                }
                return;
            }
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            match conn.stream.read(&mut self.read_buf) {
                Ok(0) => return self.drop_conn(token, "peer closed"),
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let now = self.epoch.elapsed().as_millis() as u64;
                    // Recorded before the engine sees it, so bytes that break it are in the dump.
                    if let Some(d) = self.dumps.as_mut() {
                        d.on_input(id, &self.read_buf[..n], now);
                    }
                    self.engine.handle_input(id, &self.read_buf[..n], now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.drop_conn(token, &format!("read error: {e}")),
            }
        }
    }

    fn mark_dirty(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(&token) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
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
        let mut wake = false;
        let mut first_walk = true;
        // Connections with more to send than the last pass took (a new player's cached GOP)
        // are written after those the engine has fresh bytes for: live frames and a new
        // player's first key frame do not wait behind anyone's catch-up.
        let mut continuing = std::mem::take(&mut self.write_again);
        loop {
            while let Some(output) = self.engine.poll_output() {
                match output {
                    Output::Transmit(id) => self.mark_dirty(Self::token(id)),
                    Output::Close { conn, flush } => {
                        let token = Self::token(conn);
                        if flush {
                            if let Some(c) = self.conns.get_mut(&token) {
                                c.close_after_flush = true;
                            }
                            self.mark_dirty(token);
                        } else {
                            self.drop_conn(token, "closed by server");
                        }
                    }
                    Output::SessionStarted(r) => {
                        if let Some(d) = self.dumps.as_mut() {
                            d.on_session(r.conn, &r.stream);
                        }
                        self.hooks.session_started(&r);
                        log_session("session start", &r)
                    }
                    Output::SessionEnded(r) => {
                        self.hooks.session_ended(&r);
                        log_session("session end", &r)
                    }
                    Output::WriteFile { path, data } => write_file(&path, &data),
                    Output::RemoveFile { path } => remove_file(&path),
                    Output::AppendFile { path, data } => self.records.append(&path, &data),
                    Output::CloseFile { path } => self.records.close(&path),
                    Output::Broadcast(message) => {
                        for peer in &self.peers {
                            let _ = peer.tx.send(PeerMessage::Stream(message.clone()));
                        }
                        wake = true;
                    }
                    Output::Command { worker, command } => match peer_index(self.index, worker) {
                        None => {
                            let now = self.now();
                            self.engine.handle_command(command, now);
                        }
                        Some(i) => {
                            if let Some(peer) = self.peers.get(i) {
                                let _ = peer.tx.send(PeerMessage::Command(command));
                                let _ = peer.waker.wake();
                            }
                        }
                    },
                    Output::OpenUdp { conn, track } => self.open_udp(conn, track),
                    Output::SendUdp {
                        conn,
                        track,
                        rtcp,
                        to,
                        data,
                    } => self.send_udp(conn, track, rtcp, to, &data),
                    Output::CloseUdp { conn } => self.close_udp(conn),
                    Output::Gather { conn, query } => {
                        let now = self.now();
                        self.stats.answer(&mut self.engine, conn, &query, now);
                    }
                }
            }
            for t in continuing.drain(..) {
                self.mark_dirty(t);
            }
            if self.dirty.is_empty() {
                break;
            }
            let dirty = std::mem::take(&mut self.dirty);
            for (i, token) in dirty.iter().enumerate() {
                if first_walk && i > 0 && i % MIDWAY_INPUT_EVERY == 0 {
                    self.take_input_midway();
                }
                self.flush(*token);
            }
            first_walk = false;
            self.dirty = dirty;
            self.dirty.clear();
        }
        if wake {
            for peer in &self.peers {
                let _ = peer.waker.wake();
            }
        }
    }

    /// Writes as much as the socket takes: pending bytes first, then more from the engine.
    ///
    /// Fresh bytes are written straight from the shared batch; only what the socket does not
    /// take is kept in `conn.out`, so players that keep up never hold a queue of their own.
    fn flush(&mut self, token: Token) {
        let id = self.conn_id(token);
        let mut pass_written = 0;
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            conn.dirty = false;
            let from_batch = conn.out.is_empty();
            if from_batch {
                if pass_written >= WRITE_PASS_BUDGET {
                    // This connection had its share of the pass; the rest goes on the next.
                    self.write_again.push(token);
                    return;
                }
                self.batch.clear();
                let budget = WRITE_PASS_BUDGET - pass_written;
                if self.engine.poll_transmit(id, budget, &mut self.batch) == 0 {
                    break;
                }
                conn.offset = 0;
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            let pending: &mut dyn Iterator<Item = &Bytes> = if from_batch {
                &mut self.batch.iter()
            } else {
                &mut conn.out.iter()
            };
            for (slot, b) in iov.iter_mut().zip(pending) {
                let skip = if count == 0 { conn.offset } else { 0 };
                *slot = IoSlice::new(b.get(skip..).unwrap_or_default());
                count += 1;
            }
            let offered: usize = iov[..count].iter().map(|s| s.len()).sum();
            // sendmsg rather than writev: a socket has no file position to lock.
            let sent = socket2::SockRef::from(&conn.stream).send_vectored(&iov[..count]);
            // The batch is kept (in `conn.out`) whatever happens, so an interrupted send retries.
            let (written, interrupted) = match sent {
                Ok(0) => return self.drop_conn(token, "write returned 0"),
                Ok(n) => (n, false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => (0, true),
                Err(e) => return self.drop_conn(token, &format!("write error: {e}")),
            };
            pass_written += written;
            if from_batch {
                // Keep only what the socket did not take.
                let mut skip = written;
                let mut rest = self.batch.drain(..);
                for b in rest.by_ref() {
                    if skip < b.len() {
                        conn.offset = skip;
                        conn.out.push_back(b);
                        break;
                    }
                    skip -= b.len();
                }
                conn.out.extend(rest);
            } else {
                let mut n = written;
                while n > 0 {
                    let Some(front) = conn.out.front() else { break };
                    let left = front.len() - conn.offset;
                    if n >= left {
                        n -= left;
                        conn.out.pop_front();
                        conn.offset = 0;
                    } else {
                        conn.offset += n;
                        n = 0;
                    }
                }
                if conn.out.is_empty() && conn.out.capacity() > 4 * MAX_IOV {
                    // A burst (the cached GOP of a new player) is out: give the memory back.
                    conn.out = VecDeque::new();
                }
            }
            while conn.out.front().is_some_and(|b| b.len() <= conn.offset) {
                conn.out.pop_front();
                conn.offset = 0;
            }
            if conn.out.is_empty() {
                conn.offset = 0;
                continue;
            }
            if interrupted {
                continue;
            }
            if written < offered {
                // The socket is full: wait for it to drain.
                if !conn.write_interest {
                    conn.write_interest = true;
                    let _ = self.poll.registry().reregister(
                        &mut conn.stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    );
                }
                return;
            }
        }
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.close_after_flush {
            return self.drop_conn(token, "closed by server after flush");
        }
        if conn.write_interest {
            conn.write_interest = false;
            let _ = self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, Interest::READABLE);
        }
    }

    /// Binds a port pair for an RTSP track and tells the engine which (or that none is free).
    fn open_udp(&mut self, conn: u64, track: usize) {
        let bound = self
            .udp_ports
            .ok_or_else(|| io::Error::other("RTSP UDP is off"));
        let ports = match bound.and_then(|p| p.bind_pair()) {
            Ok((rtp, rtcp, ports)) => {
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
                    self.udp.insert(
                        token,
                        Udp {
                            socket,
                            conn,
                            track,
                            rtcp: is_rtcp,
                        },
                    );
                    self.udp_of
                        .entry(conn)
                        .or_default()
                        .push((track, is_rtcp, token));
                }
                ok.then_some(ports)
            }
            Err(e) => {
                warn!("cannot open UDP ports for an RTSP session: {e}");
                None
            }
        };
        let now = self.now();
        self.engine.handle_udp_open(conn, track, ports, now);
    }

    fn send_udp(&mut self, conn: u64, track: usize, rtcp: bool, to: SocketAddr, data: &[u8]) {
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

    fn read_udp(&mut self, token: Token) {
        loop {
            let Some(udp) = self.udp.get(&token) else {
                return;
            };
            match udp.socket.recv_from(&mut self.read_buf) {
                Ok((n, from)) => {
                    let (conn, track, rtcp) = (udp.conn, udp.track, udp.rtcp);
                    let data = Bytes::copy_from_slice(&self.read_buf[..n]);
                    let now = self.now();
                    self.engine.handle_udp(conn, track, rtcp, from, data, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP port unreachable and the like: the session's timeout decides.
                Err(_) => return,
            }
        }
    }

    fn close_udp(&mut self, conn: u64) {
        for (_, _, token) in self.udp_of.remove(&conn).unwrap_or_default() {
            if let Some(mut udp) = self.udp.remove(&token) {
                let _ = self.poll.registry().deregister(&mut udp.socket);
            }
        }
    }

    fn drop_conn(&mut self, token: Token, reason: &str) {
        self.close_udp(self.conn_id(token));
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
            let (id, now) = (self.conn_id(token), self.now());
            if let Some(d) = self.dumps.as_mut() {
                d.on_close(id, now);
            }
            self.engine.handle_close(id, reason, now);
        }
    }

    fn shutdown(&mut self) {
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            self.drop_conn(token, "server shutting down");
        }
        if let Some(d) = self.dumps.as_mut() {
            d.flush();
        }
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::SessionEnded(r) => {
                    self.hooks.session_ended(&r);
                    log_session("session end", &r)
                }
                Output::AppendFile { path, data } => self.records.append(&path, &data),
                Output::CloseFile { path } => self.records.close(&path),
                _ => {}
            }
        }
        self.records.close_all();
    }
}
