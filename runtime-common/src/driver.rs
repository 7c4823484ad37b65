//! One worker's engine and everything around it that is not a socket: the one output dispatcher
//! both runtimes use.
//!
//! A runtime owns its sockets and implements [`Sockets`] for the outputs about them (bytes to
//! write, closes, RTSP's UDP ports, the hand-off of stream messages to the other workers). The
//! [`Driver`] does the rest: session log lines, the engine's log lines, HLS and recording files,
//! statistics answers, debug dumps, and the connection bookkeeping every accept, connect, read and
//! close goes through.
//! Draining with [`Driver::drain`] therefore acts on every output the same way in both runtimes,
//! including while shutting down.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use rill_core::dump::listener_name;
use rill_core::engine::conn_id::is_outbound;
use rill_core::engine::{Command, ConnId, Engine, Listener, Output, StreamMessage};

use crate::conn_io::ConnIo;
use crate::dump::{unix_ms, DumpRecorder};
use crate::record::RecordFiles;
use crate::reload::Reloader;
use crate::stats::WorkerStats;
use crate::{engine_log, log_session, remove_file, write_file};

/// What a runtime does with the engine's socket outputs. The driver calls these while it drains
/// the engine and passes itself, so a runtime can ask the engine for bytes or report a close.
pub trait Sockets {
    /// `conn` has bytes to send (also after it was told to close once written): write them now
    /// or when its socket can take them, through [`Driver::take_batch`].
    fn transmit(&mut self, driver: &mut Driver, conn: ConnId);

    /// Close `conn`'s socket (and its UDP sockets) at once, then report it with
    /// [`Driver::closed`]. For an outbound connection not open yet: abandon the attempt and
    /// report nothing.
    fn close(&mut self, driver: &mut Driver, conn: ConnId, reason: &str);

    /// Open a TCP connection to `host:port` for the engine (`Output::Connect`): resolve `host`
    /// off the event loop, connect, report with [`Driver::connected`], then serve `conn` like
    /// an accepted connection, through `io` (plain or a TLS client, which has its handshake to
    /// send at once: transmit right after reporting the connection open).
    fn connect(&mut self, driver: &mut Driver, conn: ConnId, host: String, port: u16, io: ConnIo);

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

    /// Hand `command` to the engine of `worker`, another worker (the driver runs its own
    /// worker's commands), for its [`Engine::handle_command`].
    fn send_command(&mut self, worker: usize, command: Command);

    /// Every open connection (to close them all at shutdown).
    fn open_conns(&self) -> Vec<ConnId>;
}

/// One worker's engine with its files, statistics and dumps.
#[derive(Debug)]
pub struct Driver {
    /// The engine this worker drives.
    pub engine: Engine,
    /// The runtime's clock starts here (the `now` every engine call takes).
    epoch: Instant,
    dumps: Option<DumpRecorder>,
    records: RecordFiles,
    stats: WorkerStats,
    /// The process's reload path, for `POST /api/ctrl/reload` (none: refused).
    reloader: Option<Reloader>,
}

impl Driver {
    /// Drives `engine` on a clock started at `epoch`, refreshing `stats` and recording `dumps`
    /// if given.
    pub fn new(
        engine: Engine,
        epoch: Instant,
        stats: WorkerStats,
        dumps: Option<DumpRecorder>,
    ) -> Driver {
        Driver {
            engine,
            epoch,
            dumps,
            records: RecordFiles::new(),
            stats,
            reloader: None,
        }
    }

    /// Answers `POST /api/ctrl/reload` by reloading through `reloader`.
    pub fn with_reloader(mut self, reloader: Option<Reloader>) -> Driver {
        self.reloader = reloader;
        self
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

    /// A connection `conn` was accepted on `listener` (its TLS one when `tls`) from `peer`.
    pub fn accepted(
        &mut self,
        conn: ConnId,
        listener: Listener,
        peer: SocketAddr,
        tls: bool,
        now: u64,
    ) {
        if let Some(d) = self.dumps.as_mut() {
            d.on_accept(conn, listener_name(listener), peer, now, unix_ms());
        }
        if tls {
            self.engine.handle_accept_tls(conn, listener, peer, now);
        } else {
            self.engine.handle_accept(conn, listener, peer, now);
        }
    }

    /// The outbound connection `conn` is open (with its peer's address) or could not be made.
    pub fn connected(&mut self, conn: ConnId, result: Result<SocketAddr, String>, now: u64) {
        self.engine.handle_connected(conn, result, now);
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
                log_session("session start", &r);
            }
            Output::SessionEnded(r) => log_session("session end", &r),
            // HLS files: small and rare, written inline.
            Output::WriteFile { path, data } => write_file(&path, &data),
            Output::RemoveFile { path } => remove_file(&path),
            Output::AppendFile { path, data } => self.records.append(&path, &data),
            Output::CloseFile { path } => self.records.close(&path),
            Output::ReplaceFileHead { path, len, head } => {
                self.records.replace_head(&path, len, head)
            }
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
            Output::Gather { conn, query } => {
                let now = self.now();
                self.stats.answer(&mut self.engine, conn, &query, now);
            }
            Output::Connect {
                conn,
                host,
                port,
                tls,
            } => match crate::tls::client_io(tls.as_ref()) {
                Ok(io) => sockets.connect(self, conn, host, port, io),
                Err(why) => {
                    let now = self.now();
                    self.engine.handle_connected(conn, Err(why), now);
                }
            },
            Output::Log { level, message } => engine_log(level, &message),
            Output::Command { worker, command } if worker == self.engine.worker() => {
                let now = self.now();
                self.engine.handle_command(command, now);
            }
            Output::Command { worker, command } => sockets.send_command(worker, command),
            Output::Reload { conn } => {
                let result = match &self.reloader {
                    Some(r) => r.reload("API"),
                    None => Err("this server was not started from a config it can reload".into()),
                };
                let now = self.now();
                let result = result.as_ref().map_err(String::as_str);
                self.engine.answer_reload(conn, result, now);
            }
        }
    }

    /// The end of the worker, first step: closes every accepted connection and acts on every
    /// output that follows (session ends and their webhooks, the last HLS segments and
    /// playlists, the ends of recordings). The engine's own connections stay open: while
    /// [`Driver::pending_notifications`] is not 0 the runtime keeps serving them (for a
    /// couple of seconds at most), then calls [`Driver::finish`].
    pub fn shutdown(&mut self, sockets: &mut impl Sockets) {
        for conn in sockets.open_conns() {
            if !is_outbound(conn) {
                sockets.close(self, conn, "server shutting down");
            }
        }
        self.drain(sockets);
    }

    /// Webhook events the engine still has to send (see [`Driver::shutdown`]).
    pub fn pending_notifications(&self) -> usize {
        self.engine.pending_notifications()
    }

    /// The very end of the worker: closes what is still open, acts on the last outputs,
    /// flushes the dumps and closes the recordings still open.
    pub fn finish(&mut self, sockets: &mut impl Sockets) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn_io::Transform;
    use crate::dump::DumpSettings;
    use crate::stats::StatsBoard;
    use rill_core::dump::Dump;

    const CONN: ConnId = 7;
    const KEY: u8 = 0x5A;

    fn xor(data: &[u8]) -> Vec<u8> {
        data.iter().map(|b| b ^ KEY).collect()
    }

    /// A stand-in for TLS: every byte on the wire is the plaintext byte XOR [`KEY`].
    struct Xor;

    impl Transform for Xor {
        fn inbound(&mut self, wire: &[u8], plain: &mut dyn FnMut(&[u8])) -> io::Result<bool> {
            plain(&xor(wire));
            Ok(false)
        }

        fn outbound(&mut self, batch: &mut Vec<Bytes>, _plain_len: usize) -> io::Result<usize> {
            for b in batch.iter_mut() {
                *b = Bytes::from(xor(b));
            }
            Ok(batch.iter().map(Bytes::len).sum())
        }
    }

    /// One connection whose socket is a byte vector.
    #[derive(Default)]
    struct Wire {
        io: Option<ConnIo>,
        sent: Vec<u8>,
        closed: Vec<String>,
        commands: Vec<(usize, Command)>,
    }

    impl Sockets for Wire {
        fn transmit(&mut self, driver: &mut Driver, conn: ConnId) {
            let Some(io) = self.io.as_mut() else {
                return;
            };
            let mut batch = Vec::new();
            while driver.take_batch(conn, io, 1 << 16, &mut batch).unwrap() > 0 {
                for b in batch.drain(..) {
                    self.sent.extend_from_slice(&b);
                }
            }
            if io.closes_after_flush() {
                self.close(driver, conn, "closed by server after flush");
            }
        }

        fn close(&mut self, driver: &mut Driver, conn: ConnId, reason: &str) {
            if self.io.take().is_some() {
                self.closed.push(reason.to_owned());
                let now = driver.now();
                driver.closed(conn, reason, now);
            }
        }

        fn connect(&mut self, _: &mut Driver, _: ConnId, _: String, _: u16, _: ConnIo) {}

        fn conn_io(&mut self, _: ConnId) -> Option<&mut ConnIo> {
            self.io.as_mut()
        }

        fn open_udp(&mut self, _: ConnId, _: usize) -> Option<(u16, u16)> {
            None
        }

        fn send_udp(&mut self, _: ConnId, _: usize, _: bool, _: SocketAddr, _: &[u8]) {}

        fn close_udp(&mut self, _: ConnId) {}

        fn broadcast(&mut self, _: StreamMessage) {}

        fn send_command(&mut self, worker: usize, command: Command) {
            self.commands.push((worker, command));
        }

        fn open_conns(&self) -> Vec<ConnId> {
            self.io.iter().map(|_| CONN).collect()
        }
    }

    /// Bytes pass the transform both ways, the dump holds the plaintext, the statistics request
    /// is answered through the dispatcher, and shutdown closes the connection.
    #[test]
    fn a_request_through_a_transform_is_answered_and_dumped_in_plaintext() {
        let dir = std::env::temp_dir().join(format!("rill-driver-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dumps = DumpRecorder::new(DumpSettings {
            dir: dir.clone(),
            stream: None,
            max_bytes: 1 << 20,
        });
        let mut driver = Driver::new(
            Engine::new(Default::default(), 1),
            Instant::now(),
            WorkerStats::new(StatsBoard::new(1), 0),
            Some(dumps),
        );
        let mut wire = Wire {
            io: Some(ConnIo::new(Box::new(Xor))),
            ..Wire::default()
        };
        let peer = "127.0.0.1:5000".parse().unwrap();
        driver.accepted(CONN, Listener::Http, peer, false, 0);
        let request = b"GET /api/stat/lal_info HTTP/1.1\r\nHost: x\r\n\r\n";
        let io = wire.io.as_mut().unwrap();
        assert!(!driver.input(CONN, io, &xor(request), 1).unwrap());
        driver.drain(&mut wire);
        let answer = String::from_utf8(xor(&wire.sent)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"error_code\""), "{answer}");
        driver.shutdown(&mut wire);
        assert_eq!(driver.pending_notifications(), 0);
        driver.finish(&mut wire);
        assert_eq!(wire.closed, ["server shutting down"]);
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let dump = Dump::parse(Bytes::from(std::fs::read(files[0].path()).unwrap())).unwrap();
        assert_eq!(dump.input_bytes(), request, "the dump holds the plaintext");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A kick through the API on worker 0 for a session of worker 1 (known from worker 1's
    /// snapshot on the board) goes to worker 1 as a command.
    #[test]
    fn a_kick_goes_to_the_worker_that_owns_the_session() {
        use rill_core::engine::conn_id::conn_id;
        use rill_core::engine::{EngineStats, Protocol, Role, SessionStats};

        let remote = conn_id(1, 5);
        let board = StatsBoard::new(2);
        let session = SessionStats {
            conn: remote,
            protocol: Protocol::HttpFlv,
            tls: false,
            role: Role::Play,
            stream: "live/s".into(),
            peer: "127.0.0.1:5001".parse().unwrap(),
            start_unix_ms: 0,
            bytes_in: 0,
            bytes_out: 0,
            read_kbits: 0,
            write_kbits: 0,
            relay_url: String::new(),
        };
        board.publish(
            1,
            EngineStats {
                sessions: vec![session],
                ..EngineStats::default()
            },
        );
        let mut driver = Driver::new(
            Engine::new(Default::default(), 1),
            Instant::now(),
            WorkerStats::new(board.clone(), 0),
            None,
        );
        let mut wire = Wire {
            io: Some(ConnIo::plain()),
            ..Wire::default()
        };
        driver.accepted(
            CONN,
            Listener::Http,
            "127.0.0.1:5000".parse().unwrap(),
            false,
            0,
        );
        let kick = |id: ConnId| {
            let body = format!(r#"{{"stream_name":"s","session_id":"FLVSUB{id}"}}"#);
            format!(
                "POST /api/ctrl/kick_session HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let io = wire.io.as_mut().unwrap();
        driver.input(CONN, io, kick(remote).as_bytes(), 1).unwrap();
        driver.drain(&mut wire);
        assert_eq!(
            wire.commands,
            [(
                1,
                Command::Close {
                    conn: remote,
                    reason: "kicked by the API".into()
                }
            )]
        );
        assert!(String::from_utf8_lossy(&wire.sent).contains(r#""error_code":0"#));
    }
}
