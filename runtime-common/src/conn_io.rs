//! The per-connection I/O layer both runtimes use: a byte [`Transform`] between the socket and
//! the engine, and a [`WriteQueue`] of bytes taken from the engine but not yet written, with its
//! offset into a partly written buffer and close-after-flush.
//!
//! Inbound, bytes read from the socket pass through the transform (ciphertext → plaintext) before
//! the engine and the debug dump see them; outbound, the engine's batch passes through it
//! (plaintext → ciphertext) before it is written. [`Plain`] is the identity: it hands the same
//! slices and the same `Bytes` through untouched, so the plain path costs no copy. TLS is one more
//! `Transform` here (rustls works on buffers, without sockets), written once for both runtimes.
//!
//! Writes are vectored: up to [`MAX_IOV`] buffers per call, never resending a byte the socket took.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::Bytes;

/// Buffers per vectored write.
pub const MAX_IOV: usize = 64;

/// A byte stage between the socket and the engine (TLS, for one). Both directions are driven by
/// the runtime: what comes out of [`Transform::inbound`] goes to the engine, what comes out of
/// [`Transform::outbound`] goes to the socket.
pub trait Transform: Send {
    /// Takes bytes read from the socket and hands the plaintext they carry to `plain` (in any
    /// number of pieces, or none while a record is incomplete). Returns true when the transform
    /// itself now has bytes to send (a handshake answer): the runtime then writes to the
    /// connection even if the engine has nothing for it. An error closes the connection.
    fn inbound(&mut self, wire: &[u8], plain: &mut dyn FnMut(&[u8])) -> io::Result<bool>;

    /// Turns `batch`, `plain_len` bytes of plaintext from the engine (possibly none), into what
    /// goes on the wire, in place, and returns the byte count of the result.
    fn outbound(&mut self, batch: &mut Vec<Bytes>, plain_len: usize) -> io::Result<usize>;

    /// Whether this transform encrypts (the connection is TLS).
    fn encrypted(&self) -> bool {
        false
    }

    /// The connection is closing: the last bytes to send on it, if any (TLS's `close_notify`).
    fn close(&mut self) -> Option<Bytes> {
        None
    }
}

/// The identity transform: a plain TCP connection.
#[derive(Debug, Default, Clone, Copy)]
pub struct Plain;

impl Transform for Plain {
    fn inbound(&mut self, wire: &[u8], plain: &mut dyn FnMut(&[u8])) -> io::Result<bool> {
        plain(wire);
        Ok(false)
    }

    fn outbound(&mut self, _batch: &mut Vec<Bytes>, plain_len: usize) -> io::Result<usize> {
        Ok(plain_len)
    }
}

/// What one vectored write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Bytes the socket took.
    pub written: usize,
    /// The socket took less than it was offered: wait until it is writable again.
    pub full: bool,
}

/// Bytes taken from the engine and not yet written, in order; the first from `offset`.
#[derive(Debug, Default)]
pub struct WriteQueue {
    bufs: VecDeque<Bytes>,
    offset: usize,
}

impl WriteQueue {
    /// Nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Writes `batch` (fresh from the engine) after what is already queued, with one vectored
    /// `send`. While the queue is empty the batch is written straight from its vector and only
    /// what the socket does not take is kept, so a connection that keeps up holds no queue of
    /// its own. `batch` is left empty either way.
    pub fn send_batch(
        &mut self,
        batch: &mut Vec<Bytes>,
        send: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<Sent> {
        if !self.is_empty() {
            self.bufs.extend(batch.drain(..));
            return self.send(send);
        }
        let result = write_once(batch.iter(), 0, send);
        let mut skip = result.as_ref().map_or(0, |s| s.written);
        // Keep only what the socket did not take (everything, after an error).
        let mut rest = batch.drain(..);
        for b in rest.by_ref() {
            if skip < b.len() {
                self.offset = skip;
                self.bufs.push_back(b);
                break;
            }
            skip -= b.len();
        }
        self.bufs.extend(rest);
        result
    }

    /// Writes what is queued with one vectored `send` (at most [`MAX_IOV`] buffers).
    pub fn send(
        &mut self,
        send: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<Sent> {
        let sent = write_once(self.bufs.iter(), self.offset, send)?;
        self.consume(sent.written);
        Ok(sent)
    }

    /// Writes until the queue is empty (`Ok(true)`) or the socket is full (`Ok(false)`).
    pub fn send_all(
        &mut self,
        mut send: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<bool> {
        while !self.is_empty() {
            if self.send(&mut send)?.full {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Drops the first `n` bytes (written).
    fn consume(&mut self, mut n: usize) {
        while let Some(front) = self.bufs.front() {
            let left = front.len().saturating_sub(self.offset);
            if n < left {
                self.offset += n;
                break;
            }
            n -= left;
            self.bufs.pop_front();
            self.offset = 0;
        }
        if self.bufs.is_empty() && self.bufs.capacity() > 4 * MAX_IOV {
            // A burst (the cached GOP of a new player) is out: give the memory back.
            self.bufs = VecDeque::new();
        }
    }
}

/// One vectored write of `bufs` (the first from `offset`; empty buffers skipped), retried when
/// interrupted. A full socket is `Ok` with `full` set; a socket that takes nothing without being
/// full is an error.
fn write_once<'a>(
    bufs: impl Iterator<Item = &'a Bytes>,
    offset: usize,
    mut send: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
) -> io::Result<Sent> {
    let mut iov = [IoSlice::new(&[]); MAX_IOV];
    let mut count = 0;
    let mut offered = 0;
    for (i, b) in bufs.enumerate() {
        if count == MAX_IOV {
            break;
        }
        let part = if i == 0 {
            b.get(offset..).unwrap_or_default()
        } else {
            b
        };
        if !part.is_empty() {
            iov[count] = IoSlice::new(part);
            count += 1;
            offered += part.len();
        }
    }
    if count == 0 {
        return Ok(Sent {
            written: 0,
            full: false,
        });
    }
    loop {
        return match send(&iov[..count]) {
            Ok(0) => Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(written) => Ok(Sent {
                written,
                full: written < offered,
            }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Sent {
                written: 0,
                full: true,
            }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// One connection's side of the I/O layer: its transform, its write queue and whether it closes
/// once that is written.
pub struct ConnIo {
    transform: Box<dyn Transform>,
    /// Bytes not yet written (the async runtime lends it to the connection's writer task).
    pub queue: WriteQueue,
    close_after_flush: bool,
}

impl std::fmt::Debug for ConnIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnIo")
            .field("queue", &self.queue)
            .field("close_after_flush", &self.close_after_flush)
            .finish_non_exhaustive()
    }
}

impl ConnIo {
    /// A plain TCP connection.
    pub fn plain() -> ConnIo {
        ConnIo::new(Box::new(Plain))
    }

    /// A connection whose bytes pass through `transform`.
    pub fn new(transform: Box<dyn Transform>) -> ConnIo {
        ConnIo {
            transform,
            queue: WriteQueue::default(),
            close_after_flush: false,
        }
    }

    /// Whether the connection is encrypted (TLS).
    pub fn encrypted(&self) -> bool {
        self.transform.encrypted()
    }

    /// Close once everything the engine has for this connection is written.
    pub fn close_after_flush(&mut self) {
        self.close_after_flush = true;
    }

    /// Whether the connection closes once it is written out.
    pub fn closes_after_flush(&self) -> bool {
        self.close_after_flush
    }

    /// Bytes read from the socket, through the transform; see [`Transform::inbound`].
    pub fn inbound(&mut self, wire: &[u8], plain: &mut dyn FnMut(&[u8])) -> io::Result<bool> {
        self.transform.inbound(wire, plain)
    }

    /// The bytes that end the connection (TLS's `close_notify`), to be written once, without
    /// waiting, just before the socket is shut: `None` when the transform has none or when bytes
    /// are still queued (they would come after them; the peer sees a plain end instead).
    pub fn close_bytes(&mut self) -> Option<Bytes> {
        if self.queue.is_empty() {
            self.transform.close()
        } else {
            None
        }
    }

    /// The engine's batch, through the transform; see [`Transform::outbound`].
    pub fn outbound(&mut self, batch: &mut Vec<Bytes>, plain_len: usize) -> io::Result<usize> {
        self.transform.outbound(batch, plain_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `step` bytes per write and is full every `full_every` writes
    /// (and interrupted every `interrupt_every`).
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        calls: usize,
        full_every: usize,
        interrupt_every: usize,
    }

    impl Trickle {
        fn new(step: usize, full_every: usize) -> Trickle {
            Trickle {
                out: Vec::new(),
                step,
                calls: 0,
                full_every,
                interrupt_every: usize::MAX,
            }
        }

        fn send(&mut self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % self.full_every == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if self.calls % self.interrupt_every == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            assert!(iov.len() <= MAX_IOV);
            assert!(iov.iter().all(|s| !s.is_empty()), "no empty slices");
            let mut left = self.step;
            for s in iov {
                let n = s.len().min(left);
                self.out.extend_from_slice(&s[..n]);
                left -= n;
            }
            Ok(self.step - left)
        }
    }

    fn parts(list: &[&'static str]) -> Vec<Bytes> {
        list.iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect()
    }

    /// Feeds `batches` one at a time, as a runtime does: a new batch only once the queue is empty.
    fn run(sink: &mut Trickle, batches: Vec<Vec<Bytes>>) {
        let mut q = WriteQueue::default();
        for mut batch in batches {
            q.send_batch(&mut batch, |iov| sink.send(iov))
                .expect("send");
            assert!(batch.is_empty());
            let mut tries = 0;
            while !q.is_empty() {
                tries += 1;
                assert!(tries < 10_000, "no progress");
                q.send(|iov| sink.send(iov)).expect("send");
            }
        }
    }

    #[test]
    fn partial_and_refused_writes_send_every_byte_once_in_order() {
        for step in 1..10 {
            for full_every in 2..5 {
                let mut sink = Trickle::new(step, full_every);
                sink.interrupt_every = 5;
                let batches = vec![
                    parts(&["", "abc", "", "defgh", "i", ""]),
                    parts(&["jk"]),
                    parts(&[]),
                    parts(&["lmnopq", "r"]),
                ];
                run(&mut sink, batches);
                assert_eq!(
                    sink.out, b"abcdefghijklmnopqr",
                    "step {step}, full every {full_every}"
                );
            }
        }
    }

    #[test]
    fn more_buffers_than_one_vectored_write_takes() {
        let batch: Vec<Bytes> = (0..200u8).map(|i| Bytes::from(vec![i; 3])).collect();
        let mut sink = Trickle::new(usize::MAX / 2, usize::MAX);
        let mut q = WriteQueue::default();
        let sent = q
            .send_batch(&mut batch.clone(), |iov| sink.send(iov))
            .unwrap();
        assert_eq!(sent.written, MAX_IOV * 3);
        assert!(!sent.full, "all it was offered went out");
        assert!(q.send_all(|iov| sink.send(iov)).unwrap());
        assert_eq!(sink.out, batch.concat());
    }

    #[test]
    fn a_full_socket_keeps_the_rest_with_its_offset_and_send_all_stops() {
        let mut q = WriteQueue::default();
        let mut batch = parts(&["hello", "world"]);
        let sent = q.send_batch(&mut batch, |_| Ok(3)).unwrap();
        assert_eq!(
            sent,
            Sent {
                written: 3,
                full: true
            }
        );
        let mut got = Vec::new();
        let done = q
            .send_all(|iov| {
                if got.is_empty() {
                    got = iov.iter().map(|s| s.to_vec()).collect();
                    Ok(1)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            })
            .unwrap();
        assert!(!done, "stops on a full socket");
        assert_eq!(got, vec![b"lo".to_vec(), b"world".to_vec()]);
        assert_eq!((q.bufs.len(), q.offset), (2, 4), "the 'o' of hello is next");
    }

    #[test]
    fn errors_keep_the_batch_and_zero_writes_are_errors() {
        let mut q = WriteQueue::default();
        let mut batch = parts(&["ab", "c"]);
        assert!(q
            .send_batch(&mut batch, |_| Err(io::ErrorKind::BrokenPipe.into()))
            .is_err());
        assert_eq!(q.bufs.len(), 2);
        let e = q.send(|_| Ok(0)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn plain_passes_the_same_bytes_through() {
        let mut io = ConnIo::plain();
        let wire = b"abc";
        let mut seen = Vec::new();
        let wants_write = io.inbound(wire, &mut |p| seen.push(p.as_ptr())).unwrap();
        assert!(!wants_write);
        assert_eq!(seen, vec![wire.as_ptr()], "the same slice, not a copy");
        let b = Bytes::from_static(b"xyz");
        let mut batch = vec![b.clone()];
        assert_eq!(io.outbound(&mut batch, 3).unwrap(), 3);
        assert_eq!(batch[0].as_ptr(), b.as_ptr(), "the same buffer, not a copy");
    }
}
