//! The two tasks of a connection: one reads and hands the bytes to the engine task, one writes
//! the batches the engine task hands it and says when it is done. Neither looks inside the bytes.

use std::io::{self, IoSlice};

use async_channel::{Receiver, Sender};
use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rill_core::engine::ConnId;

use crate::engine_task::Event;

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

/// Writes each batch completely, then hands the emptied vector back as [`Event::Written`] (the
/// engine task asks the engine for more only then). Ends when the engine task drops the sender.
pub(crate) async fn write_loop(
    id: ConnId,
    mut stream: impl AsyncWrite + Unpin,
    batches: Receiver<Vec<Bytes>>,
    events: Sender<Event>,
) {
    while let Ok(mut batch) = batches.recv().await {
        if let Err(e) = write_batch(&mut stream, &mut batch).await {
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

/// Writes every byte of `batch` with vectored writes, consuming the buffers as they go out.
async fn write_batch(
    stream: &mut (impl AsyncWrite + Unpin),
    batch: &mut [Bytes],
) -> io::Result<()> {
    let mut first = 0;
    loop {
        while batch.get(first).is_some_and(Bytes::is_empty) {
            first += 1;
        }
        let rest = batch.get(first..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(());
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let count = rest.len().min(MAX_IOV);
        for (slot, b) in iov.iter_mut().zip(rest) {
            *slot = IoSlice::new(b);
        }
        let mut written = match stream.write_vectored(&iov[..count]).await {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while let Some(b) = batch.get_mut(first).filter(|_| written > 0) {
            let n = written.min(b.len());
            b.advance(n);
            written -= n;
            if b.is_empty() {
                first += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `step` bytes per write, to exercise partial vectored writes.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn partial_writes_send_every_byte_once_in_order() {
        let parts: Vec<Bytes> = ["", "abc", "", "defgh", "i", ""]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        for step in 1..10 {
            let mut sink = Trickle {
                out: Vec::new(),
                step,
            };
            let mut batch = parts.clone();
            futures_lite::future::block_on(write_batch(&mut sink, &mut batch)).unwrap();
            assert_eq!(sink.out, b"abcdefghi", "step {step}");
        }
    }

    #[test]
    fn more_buffers_than_one_vectored_write_takes() {
        let batch: Vec<Bytes> = (0..200u8).map(|i| Bytes::from(vec![i; 3])).collect();
        let mut sink = Trickle {
            out: Vec::new(),
            step: usize::MAX,
        };
        let mut b = batch.clone();
        futures_lite::future::block_on(write_batch(&mut sink, &mut b)).unwrap();
        assert_eq!(sink.out, batch.concat());
    }
}
