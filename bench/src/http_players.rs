//! What the HTTP player loops of `rill-bench hls` and `rill-bench llhls` share: the run's
//! settings and report, opening the players at a steady rate, and one keep-alive HTTP/1.1
//! connection per player that is connected, read into whole responses and written to.

use std::io;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use serde_json::Value;

use crate::http::take_response;
use crate::net::{self, connect_done, read_some, OutQueue, ReadOutcome};
use crate::url::HttpUrl;

/// Size of the read buffer a run shares between its players.
pub const READ_BUF: usize = 64 * 1024;

/// Settings of an `hls` or `llhls` run.
#[derive(Clone, Debug)]
pub struct HttpPlayersConfig {
    /// The playlist (`http://host:port/app/stream.m3u8` or `…/app/stream/llhls.m3u8`).
    pub url: HttpUrl,
    /// Players to open.
    pub players: usize,
    /// Players opened per second.
    pub rate: f64,
    /// How long all players run after the last one was opened.
    pub duration: Duration,
    /// Print progress on stderr once a second.
    pub progress: bool,
}

impl HttpPlayersConfig {
    /// The playlist's path without its query.
    pub fn playlist_path(&self) -> String {
        self.url.path.split('?').next().unwrap_or("/").to_owned()
    }

    /// The folder of the playlist's path (no trailing `/`), which relative URIs are under.
    pub fn playlist_dir(&self) -> String {
        self.playlist_path()
            .rsplit_once('/')
            .map_or(String::new(), |(dir, _)| dir.to_owned())
    }

    /// A keep-alive `GET` of `path`.
    pub fn request(&self, path: &str) -> Bytes {
        Bytes::from(format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rill-bench\r\n\r\n",
            self.url.host_header
        ))
    }
}

/// The outcome of a run: a JSON summary and a few lines for people.
#[derive(Debug)]
pub struct Report {
    /// The summary.
    pub json: Value,
    /// The lines.
    pub human: String,
}

/// Opens the players one by one at the configured rate, and says when the run is over.
#[derive(Debug)]
pub struct Ramp {
    interval: Duration,
    next_open: Instant,
    players: usize,
    duration: Duration,
    /// When the last player was opened.
    pub done: Option<Instant>,
}

impl Ramp {
    /// From now on.
    pub fn new(cfg: &HttpPlayersConfig) -> Self {
        Ramp {
            interval: Duration::from_secs_f64(1.0 / cfg.rate.max(1e-6)),
            next_open: Instant::now(),
            players: cfg.players,
            duration: cfg.duration,
            done: None,
        }
    }

    /// True when one more player is due now (`opened` are open so far); counts it as opened.
    pub fn due(&mut self, now: Instant, opened: usize) -> bool {
        if opened >= self.players || now < self.next_open {
            return false;
        }
        self.next_open += self.interval;
        if opened + 1 == self.players {
            self.done = Some(now);
        }
        true
    }

    /// True once every player ran for the configured duration.
    pub fn over(&self, now: Instant) -> bool {
        self.done.is_some_and(|t| now >= t + self.duration)
    }
}

/// One player's keep-alive connection.
#[derive(Debug)]
pub struct Conn {
    sock: TcpStream,
    out: OutQueue,
    inbuf: Vec<u8>,
    connected: bool,
    /// Why the player stopped, once it did.
    pub failed: Option<String>,
}

impl Conn {
    /// Connects to `cfg`'s address, registered under `token`.
    pub fn open(cfg: &HttpPlayersConfig, registry: &Registry, token: Token) -> io::Result<Conn> {
        let mut sock = TcpStream::connect(cfg.url.addr)?;
        registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Conn {
            sock,
            out: OutQueue::default(),
            inbuf: Vec::new(),
            connected: false,
            failed: None,
        })
    }

    /// Takes a readiness event: finishes the connect, then reads all there is. Returns true
    /// when the connection has just been established (the player sends its first request).
    pub fn on_ready(&mut self, buf: &mut [u8]) -> bool {
        let mut just_connected = false;
        if !self.connected {
            match connect_done(&self.sock) {
                Ok(true) => {
                    self.connected = true;
                    just_connected = true;
                }
                Ok(false) => return false,
                Err(e) => {
                    self.failed = Some(net::io_reason("connect", &e));
                    return false;
                }
            }
        }
        loop {
            match read_some(&mut self.sock, buf) {
                Ok(ReadOutcome::Data(n)) => self.inbuf.extend_from_slice(&buf[..n]),
                Ok(ReadOutcome::WouldBlock) => break,
                Ok(ReadOutcome::Eof) => {
                    self.failed = Some("closed by the server".into());
                    break;
                }
                Err(e) => {
                    self.failed = Some(net::io_reason("read", &e));
                    break;
                }
            }
        }
        just_connected
    }

    /// The next complete response: its status and the body's range in [`Conn::body`]. Call
    /// [`Conn::consume`] with the range's end once done with it.
    pub fn next_response(&mut self) -> Option<(u16, Range<usize>)> {
        if self.failed.is_some() {
            return None;
        }
        match take_response(&self.inbuf) {
            Ok(r) => r,
            Err(e) => {
                self.failed = Some(e);
                None
            }
        }
    }

    /// The bytes of `range` of what was read.
    pub fn body(&self, range: Range<usize>) -> &[u8] {
        self.inbuf.get(range).unwrap_or_default()
    }

    /// Forgets what was read up to `end` (a response taken).
    pub fn consume(&mut self, end: usize) {
        self.inbuf.drain(..end.min(self.inbuf.len()));
    }

    /// Queues a request (written by [`Conn::flush`]).
    pub fn send(&mut self, request: Bytes) {
        self.out.push(request);
    }

    /// Writes what is queued, as far as the socket takes it.
    pub fn flush(&mut self) {
        if self.failed.is_none() {
            if let Err(e) = self.out.write_to(&mut self.sock) {
                self.failed = Some(net::io_reason("write", &e));
            }
        }
    }
}
