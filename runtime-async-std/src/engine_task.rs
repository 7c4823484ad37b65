//! One task per worker owns an [`Engine`]: connection tasks send it what they read and when they
//! have written a batch; other workers send it their streams' packets. It drains the engine's
//! outputs after every event, exactly as the mio runtime does, and hands each idle writer the
//! next batch (writing it directly while the socket has room). No protocol logic here.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use async_io::{Async, Timer};
use bytes::Bytes;
use futures_lite::FutureExt;
use rill_core::dump::listener_name;
use rill_core::engine::conn_id::conn_id;
use rill_core::engine::{Command, ConnId, Engine, Listener, Output, StreamMessage};
use rill_runtime_common::admission::Permit;
use rill_runtime_common::dump::{unix_ms, DumpRecorder};
use rill_runtime_common::record::RecordFiles;
use rill_runtime_common::stats::{StatsBoard, WorkerStats};
use rill_runtime_common::webhook::WorkerHooks;
use rill_runtime_common::{log_session, peer_index, remove_file, write_file, UdpPorts};
use tracing::{debug, warn};

use crate::conn::{read_loop, udp_read_loop, write_loop, write_now};
use crate::rt;

/// Bytes asked of the engine per batch for one connection.
const WRITE_BUDGET: usize = 256 * 1024;
/// What connection tasks and the acceptors tell an engine task (bounded: readers wait when the
/// engine falls behind, which is TCP backpressure towards publishers).
pub(crate) enum Event {
    /// A new connection for this worker, with its place in the connection counts.
    Accept(Async<TcpStream>, SocketAddr, Listener, Permit),
    /// Bytes read.
    Input(ConnId, Bytes),
    /// The writer sent its whole batch; here is the emptied vector back.
    Written(ConnId, Vec<Bytes>),
    /// The socket ended or failed.
    Closed(ConnId, String),
    /// A datagram on the UDP socket of (connection, track, RTCP) from a peer.
    Udp(ConnId, usize, bool, SocketAddr, Bytes),
}

/// What the server and other workers tell an engine task (unbounded: engine tasks never wait
/// on each other).
pub(crate) enum Control {
    /// A stream message from another worker's engine.
    Remote(StreamMessage),
    /// A command from another worker's engine for a connection of this one.
    Command(Command),
    /// Close every connection and end the task.
    Stop,
}

/// The engine task's view of a connection.
struct Conn {
    /// Written to directly while it has room; shut down to end both connection tasks.
    stream: Arc<Async<TcpStream>>,
    /// To the writer task (one slot: a batch is handed over only while the writer is idle).
    batches: Sender<Vec<Bytes>>,
    /// `Some` (a reusable vector) while the writer is idle.
    idle: Option<Vec<Bytes>>,
    close_after_flush: bool,
    /// This connection's place in the server-wide connection counts, given back on drop.
    _permit: Permit,
}

/// A UDP socket of an RTSP session; dropping it ends its reader task.
struct Udp {
    track: usize,
    rtcp: bool,
    socket: Arc<Async<UdpSocket>>,
    _stop: Sender<()>,
}

enum Wake {
    Event(Event),
    Control(Control),
    Timer,
}

/// One worker: an engine and the connections it serves.
pub(crate) struct EngineTask {
    index: usize,
    engine: Engine,
    conns: HashMap<ConnId, Conn>,
    next_conn: u64,
    events: Receiver<Event>,
    /// Cloned into each connection's tasks.
    events_tx: Sender<Event>,
    control: Receiver<Control>,
    /// The other workers.
    peers: Vec<Sender<Control>>,
    epoch: Instant,
    timer: Timer,
    timer_at: Option<u64>,
    udp_ports: Option<UdpPorts>,
    udp: HashMap<ConnId, Vec<Udp>>,
    /// Debug dumps of inbound bytes, when `[dump]` enables them.
    dumps: Option<DumpRecorder>,
    /// Recording files of this worker's publishers.
    records: RecordFiles,
    /// This worker's statistics snapshot on the board all workers share (HTTP API, metrics).
    stats: WorkerStats,
    /// Session events for the webhooks.
    hooks: WorkerHooks,
}

impl EngineTask {
    pub(crate) fn new(
        index: usize,
        engine: Engine,
        (events_tx, events): (Sender<Event>, Receiver<Event>),
        control: Receiver<Control>,
        peers: Vec<Sender<Control>>,
        epoch: Instant,
        board: StatsBoard,
    ) -> Self {
        EngineTask {
            index,
            engine,
            conns: HashMap::new(),
            next_conn: 1,
            events,
            events_tx,
            control,
            peers,
            epoch,
            timer: Timer::never(),
            timer_at: None,
            udp_ports: None,
            udp: HashMap::new(),
            dumps: None,
            records: RecordFiles::new(),
            stats: WorkerStats::new(board, index),
            hooks: WorkerHooks::disabled(),
        }
    }

    /// Sends session events to the webhooks through `hooks`.
    pub(crate) fn with_webhooks(mut self, hooks: WorkerHooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Records debug dumps with `recorder` (see `[dump]` in the config).
    pub(crate) fn with_dumps(mut self, recorder: Option<DumpRecorder>) -> Self {
        self.dumps = recorder;
        self
    }

    /// The port range for RTSP over UDP (none: UDP SETUPs are refused with 461).
    pub(crate) fn with_udp_ports(mut self, ports: Option<UdpPorts>) -> Self {
        self.udp_ports = ports;
        self
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Serves until [`Control::Stop`] (or until the server drops every control sender).
    pub(crate) async fn run(mut self) {
        loop {
            self.arm_timer();
            let wake = {
                let (timer, control, events) = (&mut self.timer, &self.control, &self.events);
                let timer = async {
                    timer.await;
                    Wake::Timer
                };
                let control = async {
                    control
                        .recv()
                        .await
                        .map_or(Wake::Control(Control::Stop), Wake::Control)
                };
                let events = async {
                    match events.recv().await {
                        Ok(e) => Wake::Event(e),
                        // Unreachable while this task holds `events_tx`; stop if it ever happens.
                        Err(_) => Wake::Control(Control::Stop),
                    }
                };
                timer.or(control).or(events).await
            };
            let now = self.now();
            match wake {
                Wake::Timer => self.timer_at = None,
                Wake::Event(event) => self.handle_event(event, now),
                Wake::Control(Control::Remote(message)) => self.engine.handle_remote(message, now),
                Wake::Control(Control::Command(command)) => {
                    self.engine.handle_command(command, now)
                }
                Wake::Control(Control::Stop) => break,
            }
            if self.engine.poll_timeout().is_some_and(|t| t <= now) {
                self.engine.handle_timeout(now);
            }
            self.stats.tick(&mut self.engine, now);
            self.process_outputs();
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.drop_conn(id, "server shutting down");
        }
        self.process_outputs();
        self.records.close_all();
    }

    fn arm_timer(&mut self) {
        // The statistics refresh wakes an otherwise idle task too.
        let stats = self.stats.next_due();
        let at = self.engine.poll_timeout().map_or(stats, |t| t.min(stats));
        if self.timer_at != Some(at) {
            self.timer_at = Some(at);
            self.timer.set_at(self.epoch + Duration::from_millis(at));
        }
    }

    fn handle_event(&mut self, event: Event, now: u64) {
        match event {
            Event::Accept(stream, peer, listener, permit) => {
                let id = conn_id(self.index, self.next_conn);
                self.next_conn += 1;
                let _ = stream.get_ref().set_nodelay(true);
                let stream = Arc::new(stream);
                let (batches, batches_rx) = async_channel::bounded(1);
                let (reader, events) = (stream.clone(), self.events_tx.clone());
                rt::spawn_detached(async move { read_loop(id, &*reader, events).await });
                let events = self.events_tx.clone();
                rt::spawn_detached(write_loop(id, stream.clone(), batches_rx, events));
                self.conns.insert(
                    id,
                    Conn {
                        stream,
                        batches,
                        idle: Some(Vec::new()),
                        close_after_flush: false,
                        _permit: permit,
                    },
                );
                if let Some(d) = self.dumps.as_mut() {
                    d.on_accept(id, listener_name(listener), peer, now, unix_ms());
                }
                self.engine.handle_accept(id, listener, peer, now);
            }
            Event::Input(id, data) => {
                // Recorded before the engine sees it, so bytes that break it are in the dump.
                if let Some(d) = self.dumps.as_mut() {
                    d.on_input(id, &data, now);
                }
                self.engine.handle_input(id, &data, now)
            }
            Event::Written(id, batch) => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.idle = Some(batch);
                    self.transmit(id);
                }
            }
            Event::Closed(id, reason) => self.drop_conn(id, &reason),
            Event::Udp(id, track, rtcp, from, data) => {
                self.engine.handle_udp(id, track, rtcp, from, data, now)
            }
        }
    }

    fn process_outputs(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Transmit(id) => self.transmit(id),
                Output::Close { conn, flush: true } => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.close_after_flush = true;
                    }
                    self.transmit(conn);
                }
                Output::Close { conn, .. } => self.drop_conn(conn, "closed by server"),
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
                // HLS files: small and rare; written inline like the mio runtime does.
                Output::WriteFile { path, data } => write_file(&path, &data),
                Output::RemoveFile { path } => remove_file(&path),
                Output::AppendFile { path, data } => self.records.append(&path, &data),
                Output::CloseFile { path } => self.records.close(&path),
                Output::Broadcast(message) => {
                    for peer in &self.peers {
                        let _ = peer.try_send(Control::Remote(message.clone()));
                    }
                }
                Output::OpenUdp { conn, track } => self.open_udp(conn, track),
                Output::SendUdp {
                    conn,
                    track,
                    rtcp,
                    to,
                    data,
                } => {
                    let socket = self
                        .udp
                        .get(&conn)
                        .and_then(|v| v.iter().find(|u| u.track == track && u.rtcp == rtcp));
                    if let Some(u) = socket {
                        // A full socket buffer drops the datagram, as the network may.
                        if let Err(e) = u.socket.get_ref().send_to(&data, to) {
                            debug!(conn, "UDP send to {to} failed: {e}");
                        }
                    }
                }
                Output::CloseUdp { conn } => {
                    self.udp.remove(&conn);
                }
                Output::Gather { conn, query } => {
                    let now = self.now();
                    self.stats.answer(&mut self.engine, conn, &query, now);
                }
                Output::Command { worker, command } => match peer_index(self.index, worker) {
                    None => {
                        let now = self.now();
                        self.engine.handle_command(command, now);
                    }
                    Some(i) => {
                        if let Some(peer) = self.peers.get(i) {
                            let _ = peer.try_send(Control::Command(command));
                        }
                    }
                },
            }
        }
    }

    /// While the writer is idle: writes what the engine has for `id` until the socket is full
    /// (the writer task finishes that batch and reports back) or the engine has nothing more.
    fn transmit(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(mut batch) = conn.idle.take() else {
            return;
        };
        loop {
            if self.engine.poll_transmit(id, WRITE_BUDGET, &mut batch) == 0 {
                conn.idle = Some(batch);
                if conn.close_after_flush {
                    self.drop_conn(id, "closed by server after flush");
                }
                return;
            }
            match write_now(conn.stream.get_ref(), &mut batch) {
                Ok(true) => batch.clear(),
                Ok(false) => {
                    // The writer is idle, so its one slot is free; failing means it has ended.
                    if conn.batches.try_send(batch).is_err() {
                        self.drop_conn(id, "writer gone");
                    }
                    return;
                }
                Err(e) => return self.drop_conn(id, &format!("write error: {e}")),
            }
        }
    }

    /// Binds a port pair for an RTSP track, starts its readers and tells the engine.
    fn open_udp(&mut self, conn: ConnId, track: usize) {
        let bound = self
            .udp_ports
            .ok_or_else(|| std::io::Error::other("RTSP UDP is off"))
            .and_then(|p| p.bind_pair());
        let ports = match bound {
            Ok((rtp, rtcp, ports)) => {
                let mut ok = true;
                for (socket, is_rtcp) in [(rtp, false), (rtcp, true)] {
                    let Ok(socket) = Async::new(socket) else {
                        ok = false;
                        continue;
                    };
                    let socket = Arc::new(socket);
                    let (stop, stopped) = async_channel::bounded(1);
                    let events = self.events_tx.clone();
                    let reader =
                        udp_read_loop(conn, track, is_rtcp, socket.clone(), stopped, events);
                    rt::spawn_detached(reader);
                    self.udp.entry(conn).or_default().push(Udp {
                        track,
                        rtcp: is_rtcp,
                        socket,
                        _stop: stop,
                    });
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

    fn drop_conn(&mut self, id: ConnId, reason: &str) {
        self.udp.remove(&id);
        if let Some(conn) = self.conns.remove(&id) {
            let _ = conn.stream.get_ref().shutdown(Shutdown::Both);
            let now = self.now();
            if let Some(d) = self.dumps.as_mut() {
                d.on_close(id, now);
            }
            self.engine.handle_close(id, reason, now);
        }
    }
}
