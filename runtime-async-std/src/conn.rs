//! The two tasks of a connection: one reads and hands the bytes to the engine task; one finishes
//! the write queue the engine task could not write out at once (the engine task writes directly
//! while the socket has room) and says when it is done. Neither looks inside the bytes.

use std::io::{self, IoSlice, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use async_io::Async;
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};
use rill_core::engine::ConnId;
use rill_runtime_common::conn_io::WriteQueue;

use crate::engine_task::Event;
use crate::rt;

/// First read size; doubled whenever a read fills it, up to [`READ_MAX`], so idle players keep
/// small buffers and publishers get large reads.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;

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

/// Finishes the queues the engine task could not write at once: waits until the socket takes
/// more, writes, and gives the emptied queue back as [`Event::Written`] (the engine task asks the
/// engine for more only then). Ends when the engine task drops the sender.
pub(crate) async fn write_loop(
    id: ConnId,
    stream: Arc<Async<TcpStream>>,
    queues: Receiver<WriteQueue>,
    events: Sender<Event>,
) {
    while let Ok(mut queue) = queues.recv().await {
        let written = loop {
            let send = |iov: &[IoSlice<'_>]| Write::write_vectored(&mut stream.get_ref(), iov);
            match queue.send_all(send) {
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
        if events.send(Event::Written(id, queue)).await.is_err() {
            return;
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
