//! One task per worker owns an engine (in a [`Driver`], which acts on every output that is not
//! about a socket): connection tasks send it what they read and when they have written what it
//! lent them; other workers send it their streams' packets. It drains the engine's outputs after
//! every event, as the mio runtime does, and writes each connection's bytes directly while the
//! socket has room, lending what is left to the connection's writer task. No protocol logic here.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use async_io::{Async, Timer};
use bytes::Bytes;
use futures_lite::FutureExt;
use rill_core::engine::conn_id::conn_id;
use rill_core::engine::{Command, ConnId, EngineConfig, Listener, StreamMessage};
use rill_runtime_common::admission::Permit;
use rill_runtime_common::conn_io::{ConnIo, WriteQueue};
use rill_runtime_common::driver::{Driver, Sockets};
use rill_runtime_common::{bind_udp_pair, peer_index, UdpPorts};
use tracing::debug;

use crate::conn::{connect, read_loop, udp_read_loop, write_loop};
use crate::rt;

/// Bytes asked of the engine per batch for one connection.
const WRITE_BUDGET: usize = 256 * 1024;
/// How long a stopping worker keeps serving its engine's own connections for the last webhooks
/// (the sessions' stop events) to go out.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(2);
/// What connection tasks and the acceptors tell an engine task (bounded: readers wait when the
/// engine falls behind, which is TCP backpressure towards publishers).
pub(crate) enum Event {
    /// A new connection for this worker, with its place in the connection counts and its I/O
    /// layer (plain or TLS).
    Accept(Async<TcpStream>, SocketAddr, Listener, Permit, ConnIo),
    /// Bytes read.
    Input(ConnId, Bytes),
    /// The writer wrote out the queue it was lent; here it is back (empty).
    Written(ConnId, WriteQueue),
    /// The socket ended or failed.
    Closed(ConnId, String),
    /// An outbound connection the engine asked for is open (with its peer), or why not.
    Connected(ConnId, Result<(Async<TcpStream>, SocketAddr), String>),
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
    /// New engine settings from a config reload.
    Reconfigure(Box<EngineConfig>),
    /// Close every connection and end the task.
    Stop,
}

/// The engine task's view of a connection.
struct Conn {
    /// Written to directly while it has room; shut down to end both connection tasks.
    stream: Arc<Async<TcpStream>>,
    /// To the writer task (one slot: a queue is lent only while the writer is idle).
    queues: Sender<WriteQueue>,
    /// Transform, close-after-flush, and the write queue while the writer does not have it.
    io: ConnIo,
    /// The writer task has the queue: nothing more is written until it gives it back.
    writing: bool,
    /// This connection's place in the server-wide connection counts, given back on drop
    /// (none for connections the engine opened).
    _permit: Option<Permit>,
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

/// A worker's sockets: what the engine's socket outputs act on.
struct Net {
    index: usize,
    conns: HashMap<ConnId, Conn>,
    next_conn: u64,
    /// Cloned into each connection's tasks.
    events_tx: Sender<Event>,
    /// The other workers.
    peers: Vec<Sender<Control>>,
    udp_ports: Option<UdpPorts>,
    udp: HashMap<ConnId, Vec<Udp>>,
    /// Reused for every batch taken from the engine.
    batch: Vec<Bytes>,
    /// Outbound connections being resolved or connected (the engine may give up on them).
    connecting: HashMap<ConnId, ConnIo>,
    /// Shutting down: no new connections are taken.
    stopping: bool,
}

/// One worker: an engine and the connections it serves.
pub(crate) struct EngineTask {
    /// The engine, with everything it asks for that is not a socket.
    driver: Driver,
    net: Net,
    events: Receiver<Event>,
    control: Receiver<Control>,
    epoch: Instant,
    timer: Timer,
    timer_at: Option<u64>,
}

impl EngineTask {
    /// Worker `index` driving `driver` (whose clock starts at `epoch`).
    pub(crate) fn new(
        index: usize,
        driver: Driver,
        epoch: Instant,
        (events_tx, events): (Sender<Event>, Receiver<Event>),
        control: Receiver<Control>,
        peers: Vec<Sender<Control>>,
    ) -> Self {
        EngineTask {
            driver,
            net: Net {
                index,
                conns: HashMap::new(),
                next_conn: 1,
                events_tx,
                peers,
                udp_ports: None,
                udp: HashMap::new(),
                batch: Vec::new(),
                connecting: HashMap::new(),
                stopping: false,
            },
            events,
            control,
            epoch,
            timer: Timer::never(),
            timer_at: None,
        }
    }

    /// The port range for RTSP over UDP (none: UDP SETUPs are refused with 461).
    pub(crate) fn with_udp_ports(mut self, ports: Option<UdpPorts>) -> Self {
        self.net.udp_ports = ports;
        self
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
            let now = self.driver.now();
            match wake {
                Wake::Timer => self.timer_at = None,
                Wake::Event(event) => self.handle_event(event, now),
                Wake::Control(Control::Remote(message)) => {
                    self.driver.engine.handle_remote(message, now)
                }
                Wake::Control(Control::Command(command)) => {
                    self.driver.engine.handle_command(command, now)
                }
                Wake::Control(Control::Reconfigure(config)) => {
                    self.driver.engine.reconfigure(*config, now)
                }
                Wake::Control(Control::Stop) => break,
            }
            self.driver.tick(now);
            self.driver.drain(&mut self.net);
        }
        self.net.stopping = true;
        self.driver.shutdown(&mut self.net);
        self.drain_webhooks().await;
        self.driver.finish(&mut self.net);
    }

    /// Serves the engine's own connections until its last webhooks went out or
    /// [`WEBHOOK_DRAIN`] passed.
    async fn drain_webhooks(&mut self) {
        let deadline = self
            .driver
            .now()
            .saturating_add(WEBHOOK_DRAIN.as_millis() as u64);
        while self.driver.pending_notifications() > 0 && self.driver.now() < deadline {
            let at = self.driver.next_due().min(deadline);
            let mut timer = Timer::at(self.epoch + Duration::from_millis(at));
            let event = {
                let events = &self.events;
                let timer = async {
                    (&mut timer).await;
                    None
                };
                timer.or(async { events.recv().await.ok() }).await
            };
            let now = self.driver.now();
            if let Some(event) = event {
                self.handle_event(event, now);
            }
            self.driver.tick(now);
            self.driver.drain(&mut self.net);
        }
    }

    fn arm_timer(&mut self) {
        // The statistics refresh wakes an otherwise idle task too.
        let at = self.driver.next_due();
        if self.timer_at != Some(at) {
            self.timer_at = Some(at);
            self.timer.set_at(self.epoch + Duration::from_millis(at));
        }
    }

    fn handle_event(&mut self, event: Event, now: u64) {
        let net = &mut self.net;
        match event {
            // Dropping the stream closes it.
            Event::Accept(..) if net.stopping => {}
            Event::Accept(stream, peer, listener, permit, io) => {
                let id = conn_id(net.index, net.next_conn);
                net.next_conn += 1;
                let tls = io.encrypted();
                net.add_conn(id, stream, io, Some(permit));
                self.driver.accepted(id, listener, peer, tls, now);
            }
            // The engine gave up on this one meanwhile: dropping the stream closes it.
            Event::Connected(id, result) => {
                let Some(io) = net.connecting.remove(&id) else {
                    return;
                };
                match result {
                    Ok((stream, peer)) => {
                        net.add_conn(id, stream, io, None);
                        self.driver.connected(id, Ok(peer), now);
                        // A TLS client has its hello to send whether or not the engine has bytes.
                        net.transmit(&mut self.driver, id);
                    }
                    Err(why) => self.driver.connected(id, Err(why), now),
                }
            }
            Event::Input(id, data) => {
                let Some(conn) = net.conns.get_mut(&id) else {
                    return;
                };
                match self.driver.input(id, &mut conn.io, &data, now) {
                    Ok(false) => {}
                    Ok(true) => net.transmit(&mut self.driver, id),
                    Err(e) => net.drop_conn(&mut self.driver, id, &format!("read error: {e}")),
                }
            }
            Event::Written(id, queue) => {
                if let Some(conn) = net.conns.get_mut(&id) {
                    conn.io.queue = queue;
                    conn.writing = false;
                    net.transmit(&mut self.driver, id);
                }
            }
            Event::Closed(id, reason) => net.drop_conn(&mut self.driver, id, &reason),
            Event::Udp(id, track, rtcp, from, data) => self
                .driver
                .engine
                .handle_udp(id, track, rtcp, from, data, now),
        }
    }
}

impl Net {
    /// Starts the reader and writer tasks of a new connection.
    fn add_conn(
        &mut self,
        id: ConnId,
        stream: Async<TcpStream>,
        io: ConnIo,
        permit: Option<Permit>,
    ) {
        let _ = stream.get_ref().set_nodelay(true);
        let stream = Arc::new(stream);
        let (queues, queues_rx) = async_channel::bounded(1);
        let (reader, events) = (stream.clone(), self.events_tx.clone());
        rt::spawn_detached(async move { read_loop(id, &*reader, events).await });
        let events = self.events_tx.clone();
        rt::spawn_detached(write_loop(id, stream.clone(), queues_rx, events));
        self.conns.insert(
            id,
            Conn {
                stream,
                queues,
                io,
                writing: false,
                _permit: permit,
            },
        );
    }

    fn drop_conn(&mut self, driver: &mut Driver, id: ConnId, reason: &str) {
        self.udp.remove(&id);
        if let Some(mut conn) = self.conns.remove(&id) {
            if !conn.writing {
                if let Some(last) = conn.io.close_bytes() {
                    // Best effort on the non-blocking socket, never waited for.
                    let _ = Write::write(&mut conn.stream.get_ref(), &last);
                }
            }
            let _ = conn.stream.get_ref().shutdown(Shutdown::Both);
            let now = driver.now();
            driver.closed(id, reason, now);
        }
    }
}

impl Sockets for Net {
    /// While the writer is idle: writes what the engine has for `id` until the socket is full
    /// (the writer task finishes that queue and gives it back) or the engine has nothing more.
    fn transmit(&mut self, driver: &mut Driver, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.writing {
            return;
        }
        loop {
            self.batch.clear();
            let written = match driver.take_batch(id, &mut conn.io, WRITE_BUDGET, &mut self.batch) {
                Ok(0) => {
                    if conn.io.closes_after_flush() {
                        self.drop_conn(driver, id, "closed by server after flush");
                    }
                    return;
                }
                Ok(_) => {
                    let stream = conn.stream.get_ref();
                    let mut send =
                        |iov: &[std::io::IoSlice<'_>]| Write::write_vectored(&mut &*stream, iov);
                    let queue = &mut conn.io.queue;
                    queue.send_batch(&mut self.batch, &mut send).and_then(|s| {
                        if s.full {
                            Ok(false)
                        } else {
                            queue.send_all(&mut send)
                        }
                    })
                }
                Err(e) => Err(e),
            };
            match written {
                Ok(true) => {}
                Ok(false) => {
                    // The writer is idle, so its one slot is free; failing means it has ended.
                    conn.writing = true;
                    let queue = std::mem::take(&mut conn.io.queue);
                    if conn.queues.try_send(queue).is_err() {
                        self.drop_conn(driver, id, "writer gone");
                    }
                    return;
                }
                Err(e) => return self.drop_conn(driver, id, &format!("write error: {e}")),
            }
        }
    }

    fn close(&mut self, driver: &mut Driver, conn: ConnId, reason: &str) {
        self.connecting.remove(&conn);
        self.drop_conn(driver, conn, reason);
    }

    /// Resolved and connected on a task of its own (names on the blocking pool).
    fn connect(&mut self, _: &mut Driver, conn: ConnId, host: String, port: u16, io: ConnIo) {
        self.connecting.insert(conn, io);
        let events = self.events_tx.clone();
        rt::spawn_detached(async move {
            let result = connect(&host, port).await;
            let _ = events.send(Event::Connected(conn, result)).await;
        });
    }

    fn conn_io(&mut self, conn: ConnId) -> Option<&mut ConnIo> {
        self.conns.get_mut(&conn).map(|c| &mut c.io)
    }

    /// Binds a port pair for an RTSP track and starts its readers.
    fn open_udp(&mut self, conn: ConnId, track: usize) -> Option<(u16, u16)> {
        let (rtp, rtcp, ports) = bind_udp_pair(self.udp_ports)?;
        let mut ok = true;
        for (socket, is_rtcp) in [(rtp, false), (rtcp, true)] {
            let Ok(socket) = Async::new(socket) else {
                ok = false;
                continue;
            };
            let socket = Arc::new(socket);
            let (stop, stopped) = async_channel::bounded(1);
            let events = self.events_tx.clone();
            let reader = udp_read_loop(conn, track, is_rtcp, socket.clone(), stopped, events);
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

    fn send_udp(&mut self, conn: ConnId, track: usize, rtcp: bool, to: SocketAddr, data: &[u8]) {
        let socket = self
            .udp
            .get(&conn)
            .and_then(|v| v.iter().find(|u| u.track == track && u.rtcp == rtcp));
        if let Some(u) = socket {
            // A full socket buffer drops the datagram, as the network may.
            if let Err(e) = u.socket.get_ref().send_to(data, to) {
                debug!(conn, "UDP send to {to} failed: {e}");
            }
        }
    }

    fn close_udp(&mut self, conn: ConnId) {
        self.udp.remove(&conn);
    }

    fn broadcast(&mut self, message: StreamMessage) {
        for peer in &self.peers {
            let _ = peer.try_send(Control::Remote(message.clone()));
        }
    }

    fn send_command(&mut self, worker: usize, command: Command) {
        let peer = peer_index(self.index, worker).and_then(|i| self.peers.get(i));
        if let Some(peer) = peer {
            let _ = peer.try_send(Control::Command(command));
        }
    }

    fn open_conns(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }
}
