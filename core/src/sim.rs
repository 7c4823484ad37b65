//! A virtual-time test harness: engines and clients stepping on one shared clock.
//!
//! A [`World`] holds one or more [`Engine`]s wired the way a multi-worker runtime wires them
//! (every [`Output::Broadcast`] of one engine is handed to all the others, and a statistics
//! request is answered from every engine's snapshot), and clients attached to one engine each:
//! an RTMP client session ([`crate::rtmp::client`]), an RTSP client session
//! ([`crate::rtsp::client`], TCP interleaved or UDP) or a raw byte client (HTTP, WebSocket,
//! garbage). Bytes move in memory when [`World::run`] is called, until nothing moves any more;
//! time moves only when the caller says so ([`World::advance`], [`World::advance_to`],
//! [`World::step`]), from one deadline to the next, so a test of a five-second grace period
//! takes microseconds and gives the same result on every run.
//!
//! The world drives the engines only through their public API, with the calls a runtime makes
//! ([`Engine::handle_accept`], [`Engine::handle_input`], [`Engine::handle_close`],
//! [`Engine::handle_timeout`], [`Engine::handle_remote`], then [`Engine::poll_output`] and
//! [`Engine::poll_transmit`] until drained), so what a test sees is what the server does with
//! the same configuration. Connection ids are laid out as the runtimes lay them out
//! ([`crate::engine::conn_id`]). Files the engines ask for ([`Output::WriteFile`],
//! [`Output::AppendFile`]) land in an in-memory map ([`World::file`]). Outbound connections
//! the engines ask for ([`Output::Connect`]) reach scripted HTTP services ([`World::serve`]);
//! any other host is unreachable.
//!
//! This is a test tool: misuse (a client id of the wrong kind, an engine index out of range)
//! and a world that never settles panic with a message saying so.
//!
//! # Example
//!
//! A publisher on one engine, an HTTP-FLV player on the other, and the publisher's grace
//! period running out on the virtual clock:
//!
//! ```
//! use rill_core::engine::{EngineConfig, Listener};
//! use rill_core::rtmp::message_type;
//! use rill_core::sim::World;
//!
//! // Two engines, as in a server with two worker threads.
//! let mut world = World::new(2, EngineConfig::default());
//! let publisher = world.rtmp(0, "live");
//! world.rtmp_session(publisher).publish("cam");
//! world.run();
//!
//! // An HTTP-FLV player on the other engine, then a key frame (an FLV video tag body).
//! let player = world.raw(1, Listener::Http);
//! world.send(player, b"GET /live/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n");
//! let key_frame = [0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88];
//! world
//!     .rtmp_session(publisher)
//!     .send_media(message_type::VIDEO, 0, &key_frame)
//!     .expect("publishing");
//! world.run();
//! assert!(world.received(player).starts_with(b"HTTP/1.1 200"));
//!
//! // The publisher vanishes; its player is let go once the grace period has passed.
//! world.hang_up(publisher);
//! world.advance(1_000);
//! assert!(!world.is_closed(player));
//! world.advance(EngineConfig::default().hub.publisher_grace_ms);
//! assert!(world.is_closed(player));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;

use crate::engine::conn_id::conn_id;
use crate::engine::{ConnId, Engine, EngineConfig, EngineStats, Listener, Output, SessionRecord};
use crate::rtmp::client::{
    ClientConfig as RtmpConfig, ClientEvent as RtmpEvent, ClientSession as RtmpSession,
};
use crate::rtsp::client::{ClientEvent as RtspEvent, ClientSession as RtspSession};
use crate::rtsp::server::Transmit;

/// Rounds of [`World::run`] (each moves everything that is ready) before it gives up.
const MAX_ROUNDS: usize = 10_000;
/// Deadlines one [`World::advance_to`] may pass through before it gives up.
const MAX_STEPS: usize = 100_000;
/// The first local UDP port handed out for [`Output::OpenUdp`].
const FIRST_UDP_PORT: u16 = 20_000;

/// How a scripted HTTP service ([`World::serve`]) answers a request (given its body): after
/// how many ms and with which status, or `None` to never answer.
pub type ServiceAnswer = Box<dyn FnMut(&str) -> Option<(u64, u16)>>;

/// A scripted HTTP service outside the engines.
struct Service {
    host: String,
    port: u16,
    answer: ServiceAnswer,
    /// The bodies of the requests it received, in order.
    bodies: Vec<String>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Service({}:{}, {} requests)",
            self.host,
            self.port,
            self.bodies.len()
        )
    }
}

/// An engine's outbound connection to a service.
#[derive(Debug)]
struct OutConn {
    service: usize,
    /// Bytes the engine sent, until a whole request is in.
    sent: Vec<u8>,
    /// The answer and when it is due.
    answer: Option<(u64, Bytes)>,
}

/// A client attached to a [`World`], as returned when it is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(usize);

/// The machine on the client side of a connection.
#[derive(Debug)]
enum Kind {
    Rtmp {
        session: Box<RtmpSession>,
        events: Vec<RtmpEvent>,
    },
    Rtsp {
        session: Box<RtspSession>,
        events: Vec<RtspEvent>,
    },
    Raw {
        /// Everything the engine sent.
        received: Vec<u8>,
    },
}

#[derive(Debug)]
struct Client {
    engine: usize,
    conn: ConnId,
    peer: SocketAddr,
    kind: Kind,
    /// Bytes queued by [`World::send`], not yet handed to the engine.
    outbox: Vec<Bytes>,
    /// Datagrams from the engine waiting in the client's UDP sockets: (track, RTCP, datagram).
    datagrams: Vec<(usize, bool, Bytes)>,
    /// Bytes received from the engine, every kind of client.
    received_len: u64,
    /// The connection is gone (either side closed it).
    closed: bool,
    /// The peer reads what the engine sends (a stalled peer does not).
    reading: bool,
    /// The engine has bytes for a peer that is not reading.
    unread: bool,
    /// The engine asked for a flushing close while the peer was not reading.
    close_after_flush: bool,
    /// Why the client machine gave up on the engine's bytes, if it did.
    error: Option<String>,
}

impl Client {
    /// Reads the datagrams waiting in the client's UDP sockets, after the stream bytes of the
    /// same round (as a client handling its TCP socket first does; an RTSP client drops RTP
    /// that comes before the answer to its PLAY). Whether there were any.
    fn read_datagrams(&mut self, now: u64) -> bool {
        if self.datagrams.is_empty() {
            return false;
        }
        for (track, rtcp, data) in self.datagrams.drain(..) {
            self.received_len += data.len() as u64;
            if let (Kind::Rtsp { session, .. }, false) = (&mut self.kind, self.closed) {
                session.handle_udp(track, rtcp, data, now);
            }
        }
        true
    }
}

/// Engines and clients on a shared virtual clock. See the module docs.
#[derive(Debug)]
pub struct World {
    engines: Vec<Engine>,
    clients: Vec<Client>,
    by_conn: HashMap<(usize, ConnId), usize>,
    /// Per engine: the local number of its next connection.
    next_local: Vec<u64>,
    now: u64,
    rng: u64,
    next_udp_port: u16,
    started: Vec<(usize, SessionRecord)>,
    ended: Vec<(usize, SessionRecord)>,
    files: BTreeMap<String, (Vec<u8>, bool)>,
    services: Vec<Service>,
    /// Outbound connections to services, by engine and connection.
    outbound: HashMap<(usize, ConnId), OutConn>,
}

impl World {
    /// `engines` engines (at least one) with `config`, at time 0, numbered as workers
    /// ([`EngineConfig::worker`], [`EngineConfig::workers`]). With more than one,
    /// [`EngineConfig::share_streams`] is set, as multi-worker runtimes set it.
    pub fn new(engines: usize, config: EngineConfig) -> World {
        let engines = engines.max(1);
        let config = EngineConfig {
            share_streams: config.share_streams || engines > 1,
            workers: engines,
            ..config
        };
        World {
            engines: (0..engines)
                .map(|i| {
                    let config = EngineConfig {
                        worker: i,
                        ..config.clone()
                    };
                    Engine::new(config, i as u64 + 1)
                })
                .collect(),
            clients: Vec::new(),
            by_conn: HashMap::new(),
            next_local: vec![1; engines],
            now: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            next_udp_port: FIRST_UDP_PORT,
            started: Vec::new(),
            ended: Vec::new(),
            files: BTreeMap::new(),
            services: Vec::new(),
            outbound: HashMap::new(),
        }
    }

    /// Makes `host:port` an HTTP service for outbound connections: each whole request (its
    /// `Content-Length` body) gets what `answer` says, an empty-bodied answer with that status
    /// after that many ms, or none at all.
    pub fn serve(
        &mut self,
        host: &str,
        port: u16,
        answer: impl FnMut(&str) -> Option<(u64, u16)> + 'static,
    ) {
        self.services.push(Service {
            host: host.to_owned(),
            port,
            answer: Box::new(answer),
            bodies: Vec::new(),
        });
    }

    /// The request bodies service `host` received, in order.
    pub fn service_requests(&self, host: &str) -> Vec<&str> {
        self.services
            .iter()
            .filter(|s| s.host == host)
            .flat_map(|s| s.bodies.iter().map(String::as_str))
            .collect()
    }

    /// The virtual time, ms.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Engine `i` (read-only: its statistics, connection count, next deadline).
    pub fn engine(&self, i: usize) -> &Engine {
        &self.engines[i]
    }

    /// Engine `i`, to call what the world does not (for example [`Engine::stats`]). Drain
    /// what such a call produces with [`World::run`].
    pub fn engine_mut(&mut self, i: usize) -> &mut Engine {
        &mut self.engines[i]
    }

    /// How many engines there are.
    pub fn engine_count(&self) -> usize {
        self.engines.len()
    }

    /// A fresh snapshot of every engine, in engine order: what a runtime hands to
    /// [`Engine::answer`] and to [`crate::api::answer`].
    pub fn stats(&mut self) -> Vec<EngineStats> {
        let now = self.now;
        self.engines.iter_mut().map(|e| e.stats(now)).collect()
    }

    // ---------------------------------------------------------------------------------------
    // Attaching clients
    // ---------------------------------------------------------------------------------------

    /// An RTMP client for `rtmp://127.0.0.1/{app}` connecting to `engine`; ask it to publish or
    /// play with [`World::rtmp_session`].
    pub fn rtmp(&mut self, engine: usize, app: &str) -> ClientId {
        self.rtmp_with(
            engine,
            RtmpConfig::new(app, &format!("rtmp://127.0.0.1/{app}")),
        )
    }

    /// An RTMP client with `config` connecting to `engine`.
    pub fn rtmp_with(&mut self, engine: usize, config: RtmpConfig) -> ClientId {
        let random = self.random_bytes(1528);
        let session = RtmpSession::new(config, &random, self.now);
        self.attach(
            engine,
            Listener::Rtmp,
            Kind::Rtmp {
                session: Box::new(session),
                events: Vec::new(),
            },
        )
    }

    /// An RTSP client connecting to `engine`, built by the caller with
    /// [`RtspSession::play`] or [`RtspSession::record`] (its first request is already queued).
    pub fn rtsp(&mut self, engine: usize, session: RtspSession) -> ClientId {
        self.attach(
            engine,
            Listener::Rtsp,
            Kind::Rtsp {
                session: Box::new(session),
                events: Vec::new(),
            },
        )
    }

    /// A client on `listener` of `engine` that sends what [`World::send`] is given and keeps
    /// everything it receives ([`World::received`]).
    pub fn raw(&mut self, engine: usize, listener: Listener) -> ClientId {
        self.attach(
            engine,
            listener,
            Kind::Raw {
                received: Vec::new(),
            },
        )
    }

    /// Bytes good enough to seed a handshake or a Digest nonce, different on every call.
    pub fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                self.rng as u8
            })
            .collect()
    }

    /// A raw client as [`World::raw`] attaches it, connecting from `ip` (which other clients
    /// may share) instead of an address of its own.
    pub fn raw_from(&mut self, engine: usize, listener: Listener, ip: IpAddr) -> ClientId {
        let kind = Kind::Raw {
            received: Vec::new(),
        };
        self.attach_from(engine, listener, kind, Some(ip))
    }

    fn attach(&mut self, engine: usize, listener: Listener, kind: Kind) -> ClientId {
        self.attach_from(engine, listener, kind, None)
    }

    fn attach_from(
        &mut self,
        engine: usize,
        listener: Listener,
        kind: Kind,
        ip: Option<IpAddr>,
    ) -> ClientId {
        assert!(engine < self.engines.len(), "no engine {engine}");
        let local = self.next_local[engine];
        self.next_local[engine] += 1;
        let conn = conn_id(engine, local);
        let n = self.clients.len();
        // Every client its own address, so per-address policies see distinct peers.
        let host = Ipv4Addr::new(127, 0, (n >> 8) as u8, (n & 0xFF) as u8 + 1);
        let peer = SocketAddr::new(ip.unwrap_or(IpAddr::V4(host)), 40_000);
        self.engines[engine].handle_accept(conn, listener, peer, self.now);
        self.by_conn.insert((engine, conn), n);
        self.clients.push(Client {
            engine,
            conn,
            peer,
            kind,
            outbox: Vec::new(),
            datagrams: Vec::new(),
            received_len: 0,
            closed: false,
            reading: true,
            unread: false,
            close_after_flush: false,
            error: None,
        });
        ClientId(n)
    }

    // ---------------------------------------------------------------------------------------
    // What clients do
    // ---------------------------------------------------------------------------------------

    /// The RTMP session of `client`: publish, play, send media, close. Call [`World::run`]
    /// afterwards to move what it queued.
    ///
    /// # Panics
    /// If `client` is not an RTMP client.
    pub fn rtmp_session(&mut self, client: ClientId) -> &mut RtmpSession {
        match &mut self.clients[client.0].kind {
            Kind::Rtmp { session, .. } => session,
            _ => panic!("{client:?} is not an RTMP client"),
        }
    }

    /// The RTSP session of `client`: send frames, tear down.
    ///
    /// # Panics
    /// If `client` is not an RTSP client.
    pub fn rtsp_session(&mut self, client: ClientId) -> &mut RtspSession {
        match &mut self.clients[client.0].kind {
            Kind::Rtsp { session, .. } => session,
            _ => panic!("{client:?} is not an RTSP client"),
        }
    }

    /// Queues `bytes` on `client`'s connection, sent by the next [`World::run`]. For an RTMP or
    /// RTSP client they go after what its session queued so far, behind the session's back
    /// (garbage, or half a message before a crash).
    pub fn send(&mut self, client: ClientId, bytes: &[u8]) {
        self.clients[client.0]
            .outbox
            .push(Bytes::copy_from_slice(bytes));
    }

    /// The client hangs up (or its socket fails): its engine is told at once, as a runtime
    /// tells it when a read returns 0.
    pub fn hang_up(&mut self, client: ClientId) {
        self.disconnect(client.0, "peer closed");
        self.run();
    }

    /// Whether the client reads what its engine sends. A client that stops reading stalls:
    /// its engine's bytes wait in the engine (its player queue), and a flushing close waits
    /// for the flush deadline. It reads again when set back to `true`.
    pub fn set_reading(&mut self, client: ClientId, reading: bool) {
        self.clients[client.0].reading = reading;
        self.run();
    }

    // ---------------------------------------------------------------------------------------
    // What clients got
    // ---------------------------------------------------------------------------------------

    /// What the RTMP `client` was told, in order.
    ///
    /// # Panics
    /// If `client` is not an RTMP client.
    pub fn rtmp_events(&self, client: ClientId) -> &[RtmpEvent] {
        match &self.clients[client.0].kind {
            Kind::Rtmp { events, .. } => events,
            _ => panic!("{client:?} is not an RTMP client"),
        }
    }

    /// The audio and video messages the RTMP `client` received while playing, as
    /// (message type, timestamp, FLV tag body).
    ///
    /// # Panics
    /// If `client` is not an RTMP client.
    pub fn rtmp_media(&self, client: ClientId) -> Vec<(u8, u32, Bytes)> {
        self.rtmp_events(client)
            .iter()
            .filter_map(|e| match e {
                RtmpEvent::Media {
                    type_id,
                    timestamp,
                    payload,
                } => Some((*type_id, *timestamp, payload.clone())),
                _ => None,
            })
            .collect()
    }

    /// What the RTSP `client` was told, in order.
    ///
    /// # Panics
    /// If `client` is not an RTSP client.
    pub fn rtsp_events(&self, client: ClientId) -> &[RtspEvent] {
        match &self.clients[client.0].kind {
            Kind::Rtsp { events, .. } => events,
            _ => panic!("{client:?} is not an RTSP client"),
        }
    }

    /// Every byte the raw `client` received, in order.
    ///
    /// # Panics
    /// If `client` is not a raw client.
    pub fn received(&self, client: ClientId) -> &[u8] {
        match &self.clients[client.0].kind {
            Kind::Raw { received, .. } => received,
            _ => panic!("{client:?} is not a raw client"),
        }
    }

    /// How many bytes `client` received, any kind of client.
    pub fn received_len(&self, client: ClientId) -> u64 {
        self.clients[client.0].received_len
    }

    /// Why the client's session gave up on its engine's bytes (and hung up), if it did.
    pub fn client_error(&self, client: ClientId) -> Option<&str> {
        self.clients[client.0].error.as_deref()
    }

    /// Whether `client`'s connection is gone, closed by either side.
    pub fn is_closed(&self, client: ClientId) -> bool {
        self.clients[client.0].closed
    }

    /// The engine `client` is attached to and its connection id there.
    pub fn conn(&self, client: ClientId) -> (usize, ConnId) {
        let c = &self.clients[client.0];
        (c.engine, c.conn)
    }

    /// The address `client` connects from (distinct for every client).
    pub fn peer(&self, client: ClientId) -> SocketAddr {
        self.clients[client.0].peer
    }

    /// Every [`Output::SessionStarted`] record so far, with the engine that gave it.
    pub fn sessions_started(&self) -> &[(usize, SessionRecord)] {
        &self.started
    }

    /// Every [`Output::SessionEnded`] record so far, with the engine that gave it.
    pub fn sessions_ended(&self) -> &[(usize, SessionRecord)] {
        &self.ended
    }

    /// The end record of `client`'s session, once its engine reported it.
    pub fn session_ended(&self, client: ClientId) -> Option<&SessionRecord> {
        let (engine, conn) = self.conn(client);
        self.ended
            .iter()
            .find(|(e, r)| *e == engine && r.conn == conn)
            .map(|(_, r)| r)
    }

    /// The contents of the file at `path` as the engines wrote it.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(|(data, _)| data.as_slice())
    }

    /// Whether the recording at `path` was closed ([`Output::CloseFile`]).
    pub fn is_file_closed(&self, path: &str) -> bool {
        self.files.get(path).is_some_and(|(_, closed)| *closed)
    }

    /// Paths of every file present, in order.
    pub fn file_paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    // ---------------------------------------------------------------------------------------
    // Time
    // ---------------------------------------------------------------------------------------

    /// The earliest deadline of any engine or client, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let clients = self.clients.iter().filter(|c| !c.closed);
        let rtsp = clients.filter_map(|c| match &c.kind {
            Kind::Rtsp { session, .. } => session.poll_timeout(),
            _ => None,
        });
        let answers = self.outbound.values().filter_map(|o| o.answer.as_ref());
        self.engines
            .iter()
            .filter_map(Engine::poll_timeout)
            .chain(rtsp)
            .chain(answers.map(|(at, _)| *at))
            .min()
    }

    /// Moves the clock `ms` forward; see [`World::advance_to`].
    pub fn advance(&mut self, ms: u64) {
        self.advance_to(self.now.saturating_add(ms));
    }

    /// Moves the clock to `at`, stopping at every deadline on the way (timeouts fired, then
    /// everything run until quiet), and finally at `at` itself. A clock never goes back: an
    /// `at` in the past only fires what is due now.
    ///
    /// # Panics
    /// If more than 100,000 deadlines fall on the way (a timer that re-arms without moving on).
    pub fn advance_to(&mut self, at: u64) {
        self.run();
        for _ in 0..MAX_STEPS {
            match self.next_deadline() {
                Some(next) if next < at => self.fire(next),
                _ => {
                    self.fire(at);
                    return;
                }
            }
        }
        panic!("more than {MAX_STEPS} deadlines before {at} ms: a timer never moves on");
    }

    /// Moves the clock to the next deadline (no further than `limit`) and runs what it fires;
    /// returns the new time, or `None` when no deadline falls before `limit`.
    pub fn step(&mut self, limit: u64) -> Option<u64> {
        self.run();
        let next = self.next_deadline().filter(|&t| t <= limit)?;
        self.fire(next);
        Some(self.now)
    }

    /// Fires every timeout due at `at` (or now, if later) and runs until quiet.
    fn fire(&mut self, at: u64) {
        self.now = self.now.max(at);
        let now = self.now;
        for e in &mut self.engines {
            e.handle_timeout(now);
        }
        for i in 0..self.clients.len() {
            let c = &mut self.clients[i];
            let Kind::Rtsp { session, .. } = &mut c.kind else {
                continue;
            };
            let due = matches!(session.poll_timeout(), Some(t) if t <= now);
            if c.closed || !due {
                continue;
            }
            if let Err(e) = session.handle_timeout(now) {
                c.error = Some(e.to_string());
                self.disconnect(i, "client gave up");
            }
        }
        self.run();
    }

    // ---------------------------------------------------------------------------------------
    // Moving bytes
    // ---------------------------------------------------------------------------------------

    /// Moves bytes between clients and engines, and broadcasts between engines, until nothing
    /// moves. The clock stands still.
    ///
    /// # Panics
    /// If things still move after 10,000 rounds (two machines talking to each other forever).
    pub fn run(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            for i in 0..self.clients.len() {
                moved |= self.client_sends(i);
                moved |= self.client_reads_unread(i);
            }
            for e in 0..self.engines.len() {
                while let Some(out) = self.engines[e].poll_output() {
                    moved = true;
                    self.dispatch(e, out);
                }
            }
            moved |= self.deliver_answers();
            for c in &mut self.clients {
                moved |= c.read_datagrams(self.now);
                match &mut c.kind {
                    Kind::Rtmp { session, events } => {
                        events.extend(std::iter::from_fn(|| session.poll_event()))
                    }
                    Kind::Rtsp { session, events } => {
                        events.extend(std::iter::from_fn(|| session.poll_event()))
                    }
                    Kind::Raw { .. } => {}
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the world never went quiet after {MAX_ROUNDS} rounds");
    }

    /// Hands what client `i` queued to its engine; whether anything moved.
    fn client_sends(&mut self, i: usize) -> bool {
        let now = self.now;
        let c = &mut self.clients[i];
        if c.closed {
            return false;
        }
        let engine = &mut self.engines[c.engine];
        let mut moved = false;
        match &mut c.kind {
            Kind::Rtmp { session, .. } => {
                while let Some(b) = session.poll_transmit() {
                    engine.handle_input(c.conn, &b, now);
                    moved = true;
                }
            }
            Kind::Rtsp { session, .. } => {
                while let Some(t) = session.poll_transmit() {
                    match t {
                        Transmit::Tcp(b) => engine.handle_input(c.conn, &b, now),
                        Transmit::Udp { track, rtcp, bytes } => {
                            engine.handle_udp(c.conn, track, rtcp, c.peer, bytes, now)
                        }
                    }
                    moved = true;
                }
            }
            Kind::Raw { .. } => {}
        }
        for b in c.outbox.drain(..) {
            engine.handle_input(c.conn, &b, now);
            moved = true;
        }
        moved
    }

    /// A client that reads again takes what its engine kept for it.
    fn client_reads_unread(&mut self, i: usize) -> bool {
        let c = &self.clients[i];
        if c.closed || !c.reading || !(c.unread || c.close_after_flush) {
            return false;
        }
        self.clients[i].unread = false;
        self.transmit(i);
        if self.clients[i].close_after_flush {
            self.disconnect(i, "closed by server after flush");
        }
        true
    }

    /// Does what engine `e` asked, as a runtime does.
    fn dispatch(&mut self, e: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Transmit(conn) if self.outbound.contains_key(&(e, conn)) => {
                self.service_reads(e, conn)
            }
            Output::Close { conn, .. } if self.outbound.contains_key(&(e, conn)) => {
                self.outbound.remove(&(e, conn));
            }
            Output::Transmit(conn) => {
                if let Some(i) = self.client_of(e, conn) {
                    if self.clients[i].reading {
                        self.transmit(i);
                    } else {
                        self.clients[i].unread = true;
                    }
                }
            }
            Output::Close { conn, flush } => {
                let Some(i) = self.client_of(e, conn) else {
                    return;
                };
                if !flush {
                    self.disconnect(i, "closed by server");
                } else if self.clients[i].reading {
                    self.transmit(i);
                    self.disconnect(i, "closed by server after flush");
                } else {
                    self.clients[i].close_after_flush = true;
                }
            }
            Output::SessionStarted(record) => self.started.push((e, record)),
            Output::SessionEnded(record) => self.ended.push((e, record)),
            Output::Broadcast(message) => {
                for (other, engine) in self.engines.iter_mut().enumerate() {
                    if other != e {
                        engine.handle_remote(message.clone(), now);
                    }
                }
            }
            Output::WriteFile { path, data } => {
                self.files.insert(path, (data.concat(), false));
            }
            Output::AppendFile { path, data } => {
                let file = self.files.entry(path).or_default();
                for piece in data {
                    file.0.extend_from_slice(&piece);
                }
            }
            Output::CloseFile { path } => {
                if let Some(file) = self.files.get_mut(&path) {
                    file.1 = true;
                }
            }
            Output::ReplaceFileHead { path, len, head } => {
                if let Some(file) = self.files.get_mut(&path) {
                    let rest = usize::try_from(len)
                        .map_or(&[][..], |len| file.0.get(len..).unwrap_or_default());
                    file.0 = [&head[..], rest].concat();
                }
            }
            Output::RemoveFile { path } => {
                self.files.remove(&path);
            }
            Output::OpenUdp { conn, track } => {
                let rtp = self.next_udp_port;
                self.next_udp_port = self.next_udp_port.wrapping_add(2);
                self.engines[e].handle_udp_open(conn, track, Some((rtp, rtp + 1)), now);
            }
            Output::SendUdp {
                conn,
                track,
                rtcp,
                data,
                ..
            } => {
                if let Some(i) = self.client_of(e, conn) {
                    self.clients[i].datagrams.push((track, rtcp, data));
                }
            }
            Output::CloseUdp { .. } => {}
            Output::Gather { conn, query } => {
                let snapshots = self.stats();
                self.engines[e].answer(conn, &query, &snapshots, now);
            }
            Output::Command { worker, command } => {
                if let Some(engine) = self.engines.get_mut(worker) {
                    engine.handle_command(command, now);
                }
            }
            // Outside its engines the world has only its services: other connections fail.
            Output::Connect {
                conn, host, port, ..
            } => {
                let service = self
                    .services
                    .iter()
                    .position(|s| s.host == host && s.port == port);
                let Some(service) = service else {
                    let why = format!("{host}:{port} is outside the simulated world");
                    return self.engines[e].handle_connected(conn, Err(why), now);
                };
                self.outbound.insert(
                    (e, conn),
                    OutConn {
                        service,
                        sent: Vec::new(),
                        answer: None,
                    },
                );
                let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80)), port);
                self.engines[e].handle_connected(conn, Ok(addr), now);
            }
            Output::Log { .. } => {}
            // The world has no config file: a reload is refused (engines take new settings
            // through `World::engine_mut(..).reconfigure`).
            Output::Reload { conn } => {
                let why = "the simulated world has no config file";
                self.engines[e].answer_reload(conn, Err(why), now);
            }
        }
    }

    /// A service reads what engine `e` sent on `conn`; a whole request gets its answer
    /// scheduled.
    fn service_reads(&mut self, e: usize, conn: ConnId) {
        let mut bufs = Vec::new();
        self.engines[e].poll_transmit(conn, usize::MAX, &mut bufs);
        let now = self.now;
        let Some(o) = self.outbound.get_mut(&(e, conn)) else {
            return;
        };
        bufs.iter().for_each(|b| o.sent.extend_from_slice(b));
        let text = String::from_utf8_lossy(&o.sent).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return;
        };
        let len = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if body.len() < len || o.answer.is_some() {
            return;
        }
        let service = &mut self.services[o.service];
        service.bodies.push(body.to_owned());
        if let Some((delay, status)) = (service.answer)(body) {
            let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            o.answer = Some((now.saturating_add(delay), Bytes::from(answer)));
        }
    }

    /// Hands the services' answers that are due to their engines; whether any moved.
    fn deliver_answers(&mut self) -> bool {
        let now = self.now;
        let due: Vec<(usize, ConnId)> = self
            .outbound
            .iter()
            .filter(|(_, o)| o.answer.as_ref().is_some_and(|(at, _)| *at <= now))
            .map(|(&k, _)| k)
            .collect();
        for (e, conn) in &due {
            let Some((_, bytes)) = self
                .outbound
                .get_mut(&(*e, *conn))
                .and_then(|o| o.answer.take())
            else {
                continue;
            };
            self.engines[*e].handle_input(*conn, &bytes, now);
        }
        !due.is_empty()
    }

    /// The client on connection `conn` of engine `e`, while connected.
    fn client_of(&self, e: usize, conn: ConnId) -> Option<usize> {
        let i = *self.by_conn.get(&(e, conn))?;
        (!self.clients[i].closed).then_some(i)
    }

    /// Takes everything engine has for client `i` and feeds it to the client.
    fn transmit(&mut self, i: usize) {
        let now = self.now;
        let c = &mut self.clients[i];
        let mut bufs = Vec::new();
        self.engines[c.engine].poll_transmit(c.conn, usize::MAX, &mut bufs);
        let mut failed = None;
        for b in bufs {
            c.received_len += b.len() as u64;
            let result = match &mut c.kind {
                Kind::Rtmp { session, .. } => {
                    session.handle_input(&b, now).map_err(|e| e.to_string())
                }
                Kind::Rtsp { session, .. } => {
                    session.handle_input(&b, now).map_err(|e| e.to_string())
                }
                Kind::Raw { received, .. } => {
                    received.extend_from_slice(&b);
                    Ok(())
                }
            };
            if let Err(e) = result {
                failed = Some(e);
                break;
            }
        }
        if let Some(e) = failed {
            c.error = Some(e);
            self.disconnect(i, "client gave up");
        }
    }

    /// Client `i`'s connection is gone: its engine is told, and nothing more moves on it.
    fn disconnect(&mut self, i: usize, reason: &str) {
        let c = &mut self.clients[i];
        if c.closed {
            return;
        }
        c.closed = true;
        self.engines[c.engine].handle_close(c.conn, reason, self.now);
    }
}
