//! The two tasks of a connection: one reads and hands the bytes to the engine task; one finishes
//! the batches the engine task could not write at once (the engine task writes directly while the
//! socket has room) and says when it is done. Neither looks inside the bytes.

use std::io::{self, IoSlice, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use async_io::Async;
use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};
use rill_core::engine::ConnId;

use crate::engine_task::Event;
use crate::rt;

/// First read size; doubled whenever a read fills it, up to [`READ_MAX`], so idle players keep
/// small buffers and publishers get large reads.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;
/// Slices per vectored write.
const MAX_IOV: usize = 64;

/// Reads until end of stream or error, then reports the close. Stops quietly when the engine
/// task is gone.
pub(crate) async fn read_loop(
    id: ConnId,
    mut stream: impl AsyncRead + Unpin,
    events: Sender<Event>,
) {
    let mut buf = BytesMut::new();
    let mut size = READ_MIN;
    let reason = loop {
        // Reclaims the previous allocation once the engine has dropped what it was given.
        buf.resize(size, 0);
        match stream.read(&mut buf).await {
            Ok(0) => break "peer closed".to_owned(),
            Ok(n) => {
                if n == size {
                    size = (size * 2).min(READ_MAX);
                }
                buf.truncate(n);
                if events
                    .send(Event::Input(id, buf.split().freeze()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break format!("read error: {e}"),
        }
    };
    let _ = events.send(Event::Closed(id, reason)).await;
}

/// Reads datagrams of one RTSP UDP socket until `stop` closes (the engine task dropped the
/// socket) or the engine task is gone.
pub(crate) async fn udp_read_loop(
    id: ConnId,
    track: usize,
    rtcp: bool,
    socket: Arc<Async<UdpSocket>>,
    stop: Receiver<()>,
    events: Sender<Event>,
) {
    use futures_lite::FutureExt;
    let mut buf = vec![0u8; READ_MAX];
    loop {
        let received = async { Some(socket.recv_from(&mut buf).await) }
            .or(async {
                let _ = stop.recv().await;
                None
            })
            .await;
        match received {
            None => return,
            Some(Ok((n, from))) => {
                let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                if events
                    .send(Event::Udp(id, track, rtcp, from, data))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // ICMP port unreachable and the like: the session's timeout decides.
            Some(Err(_)) => {
                async_io::Timer::after(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Finishes the batches the engine task could not write at once: waits until the socket takes
/// more, writes, and hands the emptied vector back as [`Event::Written`] (the engine task asks the
/// engine for more only then). Ends when the engine task drops the sender.
pub(crate) async fn write_loop(
    id: ConnId,
    stream: Arc<Async<TcpStream>>,
    batches: Receiver<Vec<Bytes>>,
    events: Sender<Event>,
) {
    while let Ok(mut batch) = batches.recv().await {
        let written = loop {
            match write_now(stream.get_ref(), &mut batch) {
                Ok(true) => break Ok(()),
                Ok(false) => {
                    if let Err(e) = stream.writable().await {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = written {
            let _ = events
                .send(Event::Closed(id, format!("write error: {e}")))
                .await;
            return;
        }
        batch.clear();
        if events.send(Event::Written(id, batch)).await.is_err() {
            return;
        }
    }
}

/// Writes what a non-blocking socket takes now, with vectored writes, consuming the buffers of
/// `batch` as they go out. `Ok(true)`: all written; `Ok(false)`: the socket is full.
pub(crate) fn write_now(mut socket: impl Write, batch: &mut [Bytes]) -> io::Result<bool> {
    loop {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut count = 0;
        for (slot, b) in iov.iter_mut().zip(batch.iter().filter(|b| !b.is_empty())) {
            *slot = IoSlice::new(b);
            count += 1;
        }
        if count == 0 {
            return Ok(true);
        }
        let mut written = match socket.write_vectored(&iov[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for b in batch.iter_mut() {
            let n = written.min(b.len());
            b.advance(n);
            written -= n;
            if written == 0 {
                break;
            }
        }
    }
}

/// Opens an outbound connection: resolves `host` on the blocking pool (an IP address needs no
/// lookup) and connects to its first address that answers. The engine owns the deadline.
pub(crate) async fn connect(
    host: &str,
    port: u16,
) -> Result<(Async<TcpStream>, SocketAddr), String> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let name = host.to_owned();
            rt::spawn_blocking(move || {
                (name.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<_>>())
            })
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
        }
    };
    let mut why = String::from("the name has no address");
    for addr in addrs {
        match Async::<TcpStream>::connect(addr).await {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => why = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `step` bytes per write and is full every `full_every` writes.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        writes: usize,
        full_every: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            if self.writes % self.full_every == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn write_all(sink: &mut Trickle, batch: &mut [Bytes]) {
        let mut tries = 0;
        while !write_now(&mut *sink, batch).unwrap() {
            tries += 1;
            assert!(tries < 10_000, "no progress");
        }
    }

    #[test]
    fn partial_and_refused_writes_send_every_byte_once_in_order() {
        let parts: Vec<Bytes> = ["", "abc", "", "defgh", "i", ""]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        for step in 1..10 {
            for full_every in 2..5 {
                let mut sink = Trickle {
                    out: Vec::new(),
                    step,
                    writes: 0,
                    full_every,
                };
                let mut batch = parts.clone();
                write_all(&mut sink, &mut batch);
                assert_eq!(
                    sink.out, b"abcdefghi",
                    "step {step}, full every {full_every}"
                );
            }
        }
    }

    #[test]
    fn more_buffers_than_one_vectored_write_takes() {
        let batch: Vec<Bytes> = (0..200u8).map(|i| Bytes::from(vec![i; 3])).collect();
        let mut sink = Trickle {
            out: Vec::new(),
            step: usize::MAX,
            writes: 0,
            full_every: usize::MAX,
        };
        let mut b = batch.clone();
        write_all(&mut sink, &mut b);
        assert_eq!(sink.out, batch.concat());
    }
}
