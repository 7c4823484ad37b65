//! Connection limits shared by every worker: one [`ConnectionTable`] behind a mutex, asked at
//! accept time; the [`Permit`] it grants travels with the connection and gives its place back when
//! dropped. Refused connections are closed at once ([`refuse`]) and reported at most once a second
//! per [`RefusalLog`], so a flood of them cannot flood the log.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rill_core::admission::{ConnectionLimits, ConnectionTable, Refusal};

/// What a refused HTTP client is told before the connection closes.
const HTTP_503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\
Connection: close\r\nRetry-After: 1\r\n\r\n";

/// The open-connection counts of the whole server (cheap to clone: one shared table).
#[derive(Clone, Debug)]
pub struct Admission {
    table: Arc<Mutex<ConnectionTable>>,
}

/// One admitted connection's place in the counts, given back when dropped.
#[derive(Debug)]
#[must_use = "dropping the permit releases the connection's place at once"]
pub struct Permit {
    table: Arc<Mutex<ConnectionTable>>,
    ip: IpAddr,
}

fn lock(table: &Mutex<ConnectionTable>) -> MutexGuard<'_, ConnectionTable> {
    // The table's methods cannot panic, so a poisoned lock still holds consistent counts.
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Admission {
    /// No connection open yet; `limits` enforced (0 = unlimited).
    pub fn new(limits: ConnectionLimits) -> Admission {
        Admission {
            table: Arc::new(Mutex::new(ConnectionTable::new(limits))),
        }
    }

    /// Counts a new connection from `ip` and returns its permit, or says which limit refuses it.
    pub fn admit(&self, ip: IpAddr) -> Result<Permit, Refusal> {
        lock(&self.table).admit(ip)?;
        Ok(Permit {
            table: self.table.clone(),
            ip,
        })
    }

    /// Enforces `limits` from now on (a config reload); open connections stay.
    pub fn set_limits(&self, limits: ConnectionLimits) {
        lock(&self.table).set_limits(limits);
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        lock(&self.table).total()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        lock(&self.table).release(self.ip);
    }
}

/// Closes a refused connection. An HTTP client first gets a `503 Service Unavailable` if the
/// socket takes it at once (never waits), and whatever it already sent is read away, so the close
/// is an orderly one rather than a reset that could discard the answer. RTMP and RTSP have no
/// answer to give: their socket is reset (linger 0), so a flood of refused connections leaves no
/// `TIME_WAIT` entries behind on the server. `stream` must be non-blocking.
pub fn refuse<S: Read + Write + AsFd>(mut stream: S, http: bool) {
    if http {
        let _ = stream.write(HTTP_503);
        let mut sink = [0u8; 2048];
        let _ = stream.read(&mut sink);
    } else {
        let _ = rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO));
    }
    // The caller drops the socket, which closes it.
}

/// Rate-limited warnings about refused connections: at most one line per second, each with the
/// number refused since the previous line.
#[derive(Debug)]
pub struct RefusalLog {
    every: Duration,
    last: Option<Instant>,
    unreported: u64,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog::new(Duration::from_secs(1))
    }
}

impl RefusalLog {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> RefusalLog {
        RefusalLog {
            every,
            last: None,
            unreported: 0,
        }
    }

    /// Counts one refusal at `now`; returns how many to report (this one included) when a line
    /// is due, `None` while the previous line is too recent.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// Counts the refusal of `peer` on `listener` and logs it at warn level when a line is due.
    pub fn refused(&mut self, refusal: &Refusal, listener: &str, peer: SocketAddr) {
        if let Some(refused) = self.note(Instant::now()) {
            tracing::warn!(
                listener,
                "connection from {peer} refused: {refusal} ({refused} refused since the previous \
                 such line)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: u32, per_ip: u32) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
        }
    }

    #[test]
    fn permits_release_on_drop_from_any_thread() {
        let a = Admission::new(limits(0, 2));
        let ip: IpAddr = [127, 0, 0, 2].into();
        let p1 = a.admit(ip).unwrap();
        let p2 = a.admit(ip).unwrap();
        assert!(matches!(a.admit(ip), Err(Refusal::PerIp { limit: 2, .. })));
        std::thread::spawn(move || drop(p1)).join().unwrap();
        assert_eq!(a.open(), 1);
        let p3 = a.admit(ip).unwrap();
        drop((p2, p3));
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn clones_share_one_table() {
        let a = Admission::new(limits(1, 0));
        let b = a.clone();
        let p = a.admit([10, 0, 0, 1].into()).unwrap();
        assert!(matches!(
            b.admit([10, 0, 0, 2].into()),
            Err(Refusal::Total { limit: 1 })
        ));
        drop(p);
        assert!(b.admit([10, 0, 0, 2].into()).is_ok());
    }

    #[test]
    fn refusal_log_reports_at_most_once_per_interval_with_the_count() {
        let mut log = RefusalLog::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(log.note(t0), Some(1));
        for i in 1..100 {
            assert_eq!(log.note(t0 + Duration::from_millis(i * 5)), None);
        }
        assert_eq!(log.note(t0 + Duration::from_millis(1000)), Some(100));
        assert_eq!(log.note(t0 + Duration::from_millis(1500)), None);
        assert_eq!(log.note(t0 + Duration::from_millis(2500)), Some(2));
    }

    /// A connected pair over loopback: (the server's non-blocking end, the client's end).
    fn socket_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        (server, client)
    }

    #[test]
    fn refused_http_gets_503_then_an_orderly_close() {
        let (server, mut client) = socket_pair();
        refuse(&server, true);
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).expect("orderly close");
        assert!(got.starts_with(b"HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(got.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn refused_rtmp_or_rtsp_is_reset_without_a_word() {
        let (server, mut client) = socket_pair();
        refuse(&server, false);
        drop(server);
        let read = client.read(&mut [0u8; 16]);
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{read:?}"
        );
    }
}
