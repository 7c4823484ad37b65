//! Connections the engine opens itself for one exchange: webhook POSTs. (Relay pulls and
//! pushes, which stream for as long as they last, are RTMP client connections kept by
//! [`super::relay`] under ids of the same space.)
//!
//! The engine asks the runtime for a TCP connection with [`Output::Connect`] (a host name is
//! resolved by the runtime, off its event loop) under an id from
//! [`OutboundIds`](super::conn_id::OutboundIds), and hears back through
//! [`Engine::handle_connected`](super::Engine::handle_connected). From then on the connection
//! is driven like an accepted one (`handle_input`, `poll_transmit`, `handle_close`, and
//! [`Output::Close`] when the engine is done with it). Each connection wraps a sans-IO client
//! session ([`ClientKind`]); when its exchange is over (answered, failed or timed out) a
//! [`Finished`] goes to whoever asked for it. Connecting and answering each have a deadline.
//!
//! These connections are not sessions: they have no session records and do not count in the
//! statistics.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

use super::conn_id::OutboundIds;
use super::{ConnId, Output};
use crate::http::client::{
    ClientError, ClientEvent, ClientLimits, ClientRequest, ClientSession, ResponseHead,
};
use crate::id_map::IdMap;

/// Deadlines of one outbound exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboundTimeouts {
    /// From [`Output::Connect`] to the connection being open (ms).
    pub connect_ms: u64,
    /// From the connection being open to the exchange being complete (ms).
    pub answer_ms: u64,
}

/// Why an outbound exchange failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboundError {
    /// The runtime could not resolve the host or connect (its reason, which says which).
    Connect(String),
    /// No connection within the connect deadline.
    ConnectTimeout {
        /// The deadline (ms).
        ms: u64,
    },
    /// No complete answer within the answer deadline.
    AnswerTimeout {
        /// The deadline (ms).
        ms: u64,
    },
    /// The connection ended before the exchange did (the runtime's reason).
    Closed(String),
    /// The answer is not acceptable HTTP.
    Http(ClientError),
}

impl fmt::Display for OutboundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |ms: u64| ms as f64 / 1000.0;
        match self {
            OutboundError::Connect(why) => f.write_str(why),
            OutboundError::ConnectTimeout { ms } => {
                write!(f, "no connection within {} s", secs(*ms))
            }
            OutboundError::AnswerTimeout { ms } => write!(f, "no answer within {} s", secs(*ms)),
            OutboundError::Closed(why) => write!(f, "connection ended before the answer: {why}"),
            OutboundError::Http(e) => e.fmt(f),
        }
    }
}

/// An exchange that is over, for whoever asked for it.
#[derive(Debug)]
pub struct Finished {
    /// The connection it ran on (no longer known to the engine).
    pub conn: ConnId,
    /// The answer's head (the exchange ends there; the body is not read) or why there is none.
    pub outcome: Result<ResponseHead, OutboundError>,
}

/// What a client connection speaks. (RTMP relay connections live in [`super::relay`].)
#[derive(Debug)]
enum ClientKind {
    /// One HTTP request and the head of its answer. (A streaming body, for an HTTP-FLV pull,
    /// is the session's [`ClientEvent::Body`] pieces.)
    Http(Box<ClientSession>),
}

#[derive(Debug)]
struct OutConn {
    /// The runtime reported the connection open.
    open: bool,
    /// The deadline of the current phase (connecting, then answering).
    deadline_ms: u64,
    timeouts: OutboundTimeouts,
    kind: ClientKind,
}

/// The engine's outbound connections. Drives the client sessions; the engine routes each
/// [`Finished`] to the part that asked.
#[derive(Debug)]
pub(super) struct Outbound {
    ids: OutboundIds,
    conns: IdMap<ConnId, OutConn>,
    finished: VecDeque<Finished>,
}

impl Outbound {
    /// No connections yet; ids are worker `worker`'s.
    pub(super) fn new(worker: usize) -> Self {
        Outbound {
            ids: OutboundIds::new(worker),
            conns: IdMap::default(),
            finished: VecDeque::new(),
        }
    }

    /// An id of this engine's outbound space that no connection will use (for requests that
    /// travel through the runtime and come back, such as a statistics gather).
    pub(super) fn reserve_id(&mut self) -> ConnId {
        self.ids.next_id()
    }

    /// Opens a connection for `request` with `connect` (the engine's
    /// [`Output::Connect`] for the id it is given); its [`Finished`] comes with the returned id.
    /// Fails if the request cannot be written as HTTP.
    pub(super) fn http(
        &mut self,
        connect: impl FnOnce(ConnId) -> Output,
        request: &ClientRequest,
        timeouts: OutboundTimeouts,
        now_ms: u64,
        outputs: &mut VecDeque<Output>,
    ) -> Result<ConnId, ClientError> {
        let session = ClientSession::new(request, ClientLimits::default())?;
        let conn = self.ids.next_id();
        self.conns.insert(
            conn,
            OutConn {
                open: false,
                deadline_ms: now_ms.saturating_add(timeouts.connect_ms),
                timeouts,
                kind: ClientKind::Http(Box::new(session)),
            },
        );
        outputs.push_back(connect(conn));
        Ok(conn)
    }

    /// The runtime's answer to [`Output::Connect`]. After an error the runtime holds nothing
    /// for `conn`, so no [`Output::Close`] follows.
    pub(super) fn handle_connected(
        &mut self,
        conn: ConnId,
        result: Result<SocketAddr, String>,
        now_ms: u64,
        outputs: &mut VecDeque<Output>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.open {
            return;
        }
        match result {
            Ok(_) => {
                c.open = true;
                c.deadline_ms = now_ms.saturating_add(c.timeouts.answer_ms);
                outputs.push_back(Output::Transmit(conn));
            }
            Err(why) => self.finish(conn, Err(OutboundError::Connect(why)), None),
        }
    }

    /// Bytes from the peer.
    pub(super) fn handle_input(
        &mut self,
        conn: ConnId,
        data: &[u8],
        outputs: &mut VecDeque<Output>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ClientKind::Http(session) = &mut c.kind;
        let result = session.handle_input(data);
        if let Some(head) = head_of(session) {
            self.finish(conn, Ok(head), Some(outputs));
        } else if let Err(e) = result {
            self.finish(conn, Err(OutboundError::Http(e)), Some(outputs));
        }
    }

    /// The connection ended (peer close or socket error) before the exchange did (it ends at
    /// the answer's head, and then the engine closes first).
    pub(super) fn handle_close(&mut self, conn: ConnId, reason: &str) {
        self.finish(conn, Err(OutboundError::Closed(reason.to_owned())), None);
    }

    /// Bytes to send on `conn`, appended to `out`; returns their count.
    pub(super) fn poll_transmit(&mut self, conn: ConnId, out: &mut Vec<Bytes>) -> usize {
        let Some(c) = self.conns.get_mut(&conn).filter(|c| c.open) else {
            return 0;
        };
        let ClientKind::Http(session) = &mut c.kind;
        let mut n = 0;
        while let Some(b) = session.poll_transmit() {
            n += b.len();
            out.push(b);
        }
        n
    }

    /// Ends the exchanges whose deadline passed.
    pub(super) fn handle_timeout(&mut self, now_ms: u64, outputs: &mut VecDeque<Output>) {
        let expired: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline_ms <= now_ms)
            .map(|(&id, _)| id)
            .collect();
        for conn in expired {
            let Some(c) = self.conns.get(&conn) else {
                continue;
            };
            let error = if c.open {
                OutboundError::AnswerTimeout {
                    ms: c.timeouts.answer_ms,
                }
            } else {
                OutboundError::ConnectTimeout {
                    ms: c.timeouts.connect_ms,
                }
            };
            self.finish(conn, Err(error), Some(outputs));
        }
    }

    /// The earliest deadline.
    pub(super) fn poll_timeout(&self) -> Option<u64> {
        self.conns.values().map(|c| c.deadline_ms).min()
    }

    /// The next exchange that is over.
    pub(super) fn poll_finished(&mut self) -> Option<Finished> {
        self.finished.pop_front()
    }

    /// Forgets `conn`, reporting `outcome`; asks the runtime to close it when `outputs` is
    /// given (the runtime still holds the socket, or the attempt to get one).
    fn finish(
        &mut self,
        conn: ConnId,
        outcome: Result<ResponseHead, OutboundError>,
        outputs: Option<&mut VecDeque<Output>>,
    ) {
        if self.conns.remove(&conn).is_none() {
            return;
        }
        if let Some(outputs) = outputs {
            outputs.push_back(Output::Close { conn, flush: false });
        }
        self.finished.push_back(Finished { conn, outcome });
    }
}

/// The answer's head, once the session has read it.
fn head_of(session: &mut ClientSession) -> Option<ResponseHead> {
    std::iter::from_fn(|| session.poll_event()).find_map(|e| match e {
        ClientEvent::Head(head) => Some(head),
        _ => None,
    })
}
