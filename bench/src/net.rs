//! Socket helpers shared by the publisher and the players: a bounded queue of outgoing bytes
//! written with an offset (never resending a partly written buffer), non-blocking connect
//! completion, and the wall clock used for stamps.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use mio::net::TcpStream;

/// Buffers gathered into one vectored write.
const MAX_IOVECS: usize = 32;

/// Outgoing bytes of one connection, written in order from the front.
#[derive(Debug, Default)]
pub struct OutQueue {
    bufs: VecDeque<Bytes>,
    len: usize,
}

impl OutQueue {
    /// Queues `b` (empty buffers are dropped).
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.bufs.push_back(b);
        }
    }

    /// Takes everything waiting (to encrypt it).
    pub fn take_all(&mut self) -> Vec<Bytes> {
        self.len = 0;
        self.bufs.drain(..).collect()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes until the queue is empty or `w` would block. Returns the bytes written.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while !self.bufs.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n_slices = 0;
            for (slot, b) in slices.iter_mut().zip(self.bufs.iter()) {
                *slot = IoSlice::new(b);
                n_slices += 1;
            }
            let result = w.write_vectored(slices.get(..n_slices).unwrap_or_default());
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    total += n;
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Drops `n` written bytes from the front.
    fn consume(&mut self, mut n: usize) {
        self.len = self.len.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.bufs.front_mut() else {
                return;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.bufs.pop_front();
        }
    }
}

/// Whether a non-blocking connect finished: `Ok(true)` connected, `Ok(false)` still in
/// progress (a spurious wakeup), `Err` failed.
pub fn connect_done(sock: &TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// What one read attempt gave.
#[derive(Debug)]
pub enum ReadOutcome {
    /// `n` bytes are in the buffer.
    Data(usize),
    /// Nothing more for now.
    WouldBlock,
    /// The peer closed the connection.
    Eof,
}

/// Reads once into `buf`, retrying on `Interrupted`.
pub fn read_some(sock: &mut impl Read, buf: &mut [u8]) -> io::Result<ReadOutcome> {
    loop {
        return match sock.read(buf) {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(n) => Ok(ReadOutcome::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A short, stable description of an I/O error for grouping failures.
pub fn io_reason(what: &str, e: &io::Error) -> String {
    format!("{what}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call and then blocks after `calls` calls.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls -= 1;
            let n = buf.len().min(self.cap);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_at_the_offset() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"hello "));
        q.push(Bytes::new());
        q.push(Bytes::from_static(b"world"));
        assert_eq!(q.len(), 11);
        let mut w = Trickle {
            got: Vec::new(),
            cap: 4,
            calls: 2,
        };
        assert_eq!(q.write_to(&mut w).unwrap(), 6);
        assert_eq!(q.len(), 5);
        w.calls = 10;
        assert_eq!(q.write_to(&mut w).unwrap(), 5);
        assert!(q.is_empty());
        assert_eq!(w.got, b"hello world");
    }
}
