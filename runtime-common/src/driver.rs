//! One worker's engine and everything around it that is not a socket: the one output dispatcher
//! both runtimes use.
//!
//! A runtime owns its sockets and implements [`Sockets`] for the outputs about them (bytes to
//! write, closes, RTSP's UDP ports, the hand-off of stream messages to the other workers). The
//! [`Driver`] does the rest: session log lines and webhooks, HLS and recording files, statistics
//! answers, debug dumps, and the connection bookkeeping every accept, read and close goes through.
//! Draining with [`Driver::drain`] therefore acts on every output the same way in both runtimes,
//! including while shutting down.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use rill_core::dump::listener_name;
use rill_core::engine::{ConnId, Engine, Listener, Output, StreamMessage};

use crate::conn_io::ConnIo;
use crate::dump::{unix_ms, DumpRecorder};
use crate::record::RecordFiles;
use crate::stats::WorkerStats;
use crate::webhook::WorkerHooks;
use crate::{log_session, remove_file, write_file};

/// What a runtime does with the engine's socket outputs. The driver calls these while it drains
/// the engine and passes itself, so a runtime can ask the engine for bytes or report a close.
pub trait Sockets {
    /// `conn` has bytes to send (also after it was told to close once written): write them now
    /// or when its socket can take them, through [`Driver::take_batch`].
    fn transmit(&mut self, driver: &mut Driver, conn: ConnId);

    /// Close `conn`'s socket (and its UDP sockets) at once, then report it with
    /// [`Driver::closed`].
    fn close(&mut self, driver: &mut Driver, conn: ConnId, reason: &str);

    /// The I/O layer of `conn`, if it is open.
    fn conn_io(&mut self, conn: ConnId) -> Option<&mut ConnIo>;

    /// Bind a UDP port pair for `track` of `conn`: the ports, or `None` when none could be bound.
    fn open_udp(&mut self, conn: ConnId, track: usize) -> Option<(u16, u16)>;

    /// Send one datagram from the RTP (or RTCP) socket of `track` of `conn`.
    fn send_udp(&mut self, conn: ConnId, track: usize, rtcp: bool, to: SocketAddr, data: &[u8]);

    /// Close every UDP socket of `conn`.
    fn close_udp(&mut self, conn: ConnId);

    /// Hand `message` to every other worker's engine.
    fn broadcast(&mut self, message: StreamMessage);

    /// Every open connection (to close them all at shutdown).
    fn open_conns(&self) -> Vec<ConnId>;
}

/// One worker's engine with its files, statistics, webhooks and dumps.
#[derive(Debug)]
pub struct Driver {
    /// The engine this worker drives.
    pub engine: Engine,
    /// The runtime's clock starts here (the `now` every engine call takes).
    epoch: Instant,
    dumps: Option<DumpRecorder>,
    records: RecordFiles,
    stats: WorkerStats,
    hooks: WorkerHooks,
}

impl Driver {
    /// Drives `engine` on a clock started at `epoch`, refreshing `stats`, telling `hooks` about
    /// sessions and recording `dumps` if given.
    pub fn new(
        engine: Engine,
        epoch: Instant,
        stats: WorkerStats,
        hooks: WorkerHooks,
        dumps: Option<DumpRecorder>,
    ) -> Driver {
        Driver {
            engine,
            epoch,
            dumps,
            records: RecordFiles::new(),
            stats,
            hooks,
        }
    }

    /// Milliseconds since the epoch: the `now` of every engine call.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next time (engine ms) something is due: an engine timer or the statistics refresh.
    pub fn next_due(&self) -> u64 {
        let stats = self.stats.next_due();
        self.engine.poll_timeout().map_or(stats, |t| t.min(stats))
    }

    /// Runs the engine's timers that are due and refreshes the statistics when due.
    pub fn tick(&mut self, now: u64) {
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        self.stats.tick(&mut self.engine, now);
    }

    /// A connection `conn` was accepted on `listener` from `peer`.
    pub fn accepted(&mut self, conn: ConnId, listener: Listener, peer: SocketAddr, now: u64) {
        if let Some(d) = self.dumps.as_mut() {
            d.on_accept(conn, listener_name(listener), peer, now, unix_ms());
        }
        self.engine.handle_accept(conn, listener, peer, now);
    }

    /// Bytes read from `conn`'s socket: through its transform to the dump (the plaintext, before
    /// the engine sees it, so bytes that break the engine are in the dump) and the engine.
    /// Returns true when the transform has bytes of its own to send (see
    /// [`crate::conn_io::Transform::inbound`]); an error means the connection must be closed.
    pub fn input(
        &mut self,
        conn: ConnId,
        io: &mut ConnIo,
        wire: &[u8],
        now: u64,
    ) -> io::Result<bool> {
        let (engine, dumps) = (&mut self.engine, &mut self.dumps);
        io.inbound(wire, &mut |plain| {
            if let Some(d) = dumps.as_mut() {
                d.on_input(conn, plain, now);
            }
            engine.handle_input(conn, plain, now);
        })
    }

    /// Takes up to `budget` bytes the engine has for `conn` into `batch`, through its transform.
    /// Returns the bytes to write (0: nothing now).
    pub fn take_batch(
        &mut self,
        conn: ConnId,
        io: &mut ConnIo,
        budget: usize,
        batch: &mut Vec<Bytes>,
    ) -> io::Result<usize> {
        let plain = self.engine.poll_transmit(conn, budget, batch);
        io.outbound(batch, plain)
    }

    /// `conn`'s socket is closed (by either side) for `reason`: the dump ends and the engine is
    /// told.
    pub fn closed(&mut self, conn: ConnId, reason: &str, now: u64) {
        if let Some(d) = self.dumps.as_mut() {
            d.on_close(conn, now);
        }
        self.engine.handle_close(conn, reason, now);
    }

    /// Acts on every output the engine has (after each input, as the engine asks), the socket
    /// outputs through `sockets`.
    pub fn drain(&mut self, sockets: &mut impl Sockets) {
        while let Some(output) = self.engine.poll_output() {
            self.dispatch(output, sockets);
        }
    }

    fn dispatch(&mut self, output: Output, sockets: &mut impl Sockets) {
        match output {
            Output::Transmit(conn) => sockets.transmit(self, conn),
            Output::Close { conn, flush: true } => {
                if let Some(io) = sockets.conn_io(conn) {
                    io.close_after_flush();
                }
                sockets.transmit(self, conn);
            }
            Output::Close { conn, .. } => sockets.close(self, conn, "closed by server"),
            Output::SessionStarted(r) => {
                if let Some(d) = self.dumps.as_mut() {
                    d.on_session(r.conn, &r.stream);
                }
                self.hooks.session_started(&r);
                log_session("session start", &r);
            }
            Output::SessionEnded(r) => {
                self.hooks.session_ended(&r);
                log_session("session end", &r);
            }
            // HLS files: small and rare, written inline.
            Output::WriteFile { path, data } => write_file(&path, &data),
            Output::RemoveFile { path } => remove_file(&path),
            Output::AppendFile { path, data } => self.records.append(&path, &data),
            Output::CloseFile { path } => self.records.close(&path),
            Output::Broadcast(message) => sockets.broadcast(message),
            Output::OpenUdp { conn, track } => {
                let ports = sockets.open_udp(conn, track);
                let now = self.now();
                self.engine.handle_udp_open(conn, track, ports, now);
            }
            Output::SendUdp {
                conn,
                track,
                rtcp,
                to,
                data,
            } => sockets.send_udp(conn, track, rtcp, to, &data),
            Output::CloseUdp { conn } => sockets.close_udp(conn),
            Output::StatsRequest { conn, request } => {
                let now = self.now();
                self.stats.answer(&mut self.engine, conn, &request, now);
            }
        }
    }

    /// The end of the worker: closes every connection, acts on every output that follows
    /// (session ends, the last HLS segments and playlists, the ends of recordings), flushes the
    /// dumps and closes the recordings still open.
    pub fn shutdown(&mut self, sockets: &mut impl Sockets) {
        for conn in sockets.open_conns() {
            sockets.close(self, conn, "server shutting down");
        }
        self.drain(sockets);
        if let Some(d) = self.dumps.as_mut() {
            d.flush();
        }
        self.records.close_all();
    }
}
