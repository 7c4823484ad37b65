//! Sending webhooks (lal's HTTP notifications, `[webhook]` in the config) without ever holding
//! up media.
//!
//! One [`Notifier`] per process owns a bounded queue and one sender thread. Each worker gets a
//! [`WorkerHooks`] and tells it about the engine's session records; it turns them into
//! `on_pub_start`/`on_pub_stop`/`on_sub_start`/`on_sub_stop` bodies and only *tries* to queue
//! them: when the queue is full the event is dropped and counted (warned about at most once a
//! second). The thread POSTs each event with a minimal HTTP/1.1 client (2 s to connect, 2 s to
//! answer), sends `on_server_start` once when it starts and `on_update` from the shared
//! [`StatsBoard`] on its own timer.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rill_core::config::Config;
use rill_core::engine::{
    response_status, server_start_json, update_json, ConnId, Protocol, Role, SessionInfo,
    SessionRecord, WebhookEvent, WebhookUrl,
};
use tracing::{debug, warn};

use crate::stats::StatsBoard;
use crate::unix_time_ms;

/// Events waiting to be sent at most; more are dropped.
pub const QUEUE_LEN: usize = 1024;

/// Time a receiver has to accept the connection, and again to answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Longest status line read from a receiver.
const MAX_STATUS_LINE: usize = 1024;

/// One event to send.
#[derive(Debug)]
struct Job {
    event: WebhookEvent,
    body: String,
}

/// Publishers and players of one stream, as far as session events told.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    publishers: u32,
    players: u32,
}

/// What every worker's [`WorkerHooks`] shares.
#[derive(Debug)]
struct Shared {
    tx: SyncSender<Job>,
    /// Events that have a receiver.
    wanted: Vec<WebhookEvent>,
    /// Listener addresses (RTMP, HTTP, RTSP) for the sessions' URLs.
    listen: [String; 3],
    streams: Mutex<HashMap<String, Tally>>,
    dropped: AtomicU64,
    /// Last warning about drops, ms since the Unix epoch.
    warned_ms: AtomicU64,
}

impl Shared {
    fn wants(&self, event: WebhookEvent) -> bool {
        self.wanted.contains(&event)
    }

    fn wants_sessions(&self) -> bool {
        self.wanted
            .iter()
            .any(|e| !matches!(e, WebhookEvent::ServerStart | WebhookEvent::Update))
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<String, Tally>> {
        // Only counters are updated under the lock: a panic cannot leave them half-written.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn listen_addr(&self, protocol: Protocol) -> &str {
        match protocol {
            Protocol::Rtmp => &self.listen[0],
            Protocol::Rtsp => &self.listen[2],
            _ => &self.listen[1],
        }
    }

    /// Queues `body` for `event` if it has a receiver, without waiting.
    fn push(&self, event: WebhookEvent, body: String) {
        if !self.wants(event) {
            return;
        }
        match self.tx.try_send(Job { event, body }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let now = unix_time_ms();
                let last = self.warned_ms.load(Ordering::Relaxed);
                if now.saturating_sub(last) >= 1000
                    && self
                        .warned_ms
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    warn!(
                        dropped,
                        "webhook queue full ({QUEUE_LEN} events): {} dropped",
                        event.name()
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Counts the session of `record` in or out of its stream and sends its event.
    fn session_event(&self, record: &SessionRecord, start: bool) {
        let Some(event) = WebhookEvent::of_session(record.role, start) else {
            return;
        };
        let mut info = SessionInfo::new(record, self.listen_addr(record.protocol));
        {
            let mut streams = self.streams();
            let tally = streams.entry(record.stream.clone()).or_default();
            let count = match record.role {
                Role::Publish => &mut tally.publishers,
                _ => &mut tally.players,
            };
            *count = if start {
                count.saturating_add(1)
            } else {
                count.saturating_sub(1)
            };
            info.has_in_session = tally.publishers > 0;
            info.has_out_session = tally.players > 0;
            if tally.publishers == 0 && tally.players == 0 {
                streams.remove(&record.stream);
            }
        }
        self.push(event, info.to_json());
    }
}

/// The process's webhook sender: its queue and thread (nothing at all when webhooks are off).
#[derive(Debug)]
pub struct Notifier {
    shared: Option<Arc<Shared>>,
    /// Told (by being dropped) when the thread has sent everything and ended.
    done: Option<Receiver<()>>,
}

impl Notifier {
    /// Starts the sender thread for `config`'s `[webhook]` (which sends `on_server_start` at
    /// once), for a server of `workers` workers whose snapshots are on `board`. Webhooks off, or
    /// no event with a URL: a notifier that sends nothing.
    pub fn start(config: &Config, workers: usize, board: StatsBoard) -> Notifier {
        let receivers: Vec<(WebhookEvent, WebhookUrl)> = WebhookEvent::ALL
            .iter()
            .filter_map(|&e| Some((e, config.webhook.receiver(e)?)))
            .collect();
        if receivers.is_empty() {
            return Notifier {
                shared: None,
                done: None,
            };
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE_LEN);
        let (done_tx, done) = mpsc::channel::<()>();
        let sender = Sender {
            rx,
            receivers: receivers.clone(),
            board,
            interval: Duration::from_secs(config.webhook.update_interval_sec.max(1)),
            workers,
            started_unix_ms: unix_time_ms(),
            failures: Warnings::default(),
        };
        let spawned = std::thread::Builder::new()
            .name("rill-webhook".into())
            .spawn(move || {
                sender.run();
                drop(done_tx);
            });
        if let Err(e) = spawned {
            warn!("cannot start the webhook thread, no webhooks will be sent: {e}");
            return Notifier {
                shared: None,
                done: None,
            };
        }
        let shared = Shared {
            tx,
            wanted: receivers.iter().map(|(e, _)| *e).collect(),
            listen: [
                config.rtmp.addr.clone(),
                config.http.addr.clone(),
                config.rtsp.addr.clone(),
            ],
            streams: Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
            warned_ms: AtomicU64::new(0),
        };
        Notifier {
            shared: Some(Arc::new(shared)),
            done: Some(done),
        }
    }

    /// A worker's handle: hand it the engine's session records.
    pub fn worker(&self) -> WorkerHooks {
        WorkerHooks {
            shared: self.shared.clone(),
            active: HashMap::new(),
        }
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
    }

    /// Once every [`WorkerHooks`] is gone (the workers stopped): lets the thread send what is
    /// still queued (the last sessions' stop events) and waits for it up to `wait`.
    pub fn finish(mut self, wait: Duration) {
        self.shared = None;
        if let Some(done) = self.done.take() {
            // Disconnected when the thread ended; a timeout leaves it to end with the process.
            let _ = done.recv_timeout(wait);
        }
    }
}

/// A worker's side of the notifier: turns its engine's session records into events.
#[derive(Debug)]
pub struct WorkerHooks {
    shared: Option<Arc<Shared>>,
    /// Sessions started on this worker and not yet stopped, by connection.
    active: HashMap<ConnId, SessionRecord>,
}

impl WorkerHooks {
    /// A handle that sends nothing (webhooks off).
    pub fn disabled() -> WorkerHooks {
        WorkerHooks {
            shared: None,
            active: HashMap::new(),
        }
    }

    /// The engine's `Output::SessionStarted`: `on_pub_start` or `on_sub_start`. A connection
    /// that starts a new session first stops its previous one.
    pub fn session_started(&mut self, record: &SessionRecord) {
        let Some(shared) = self.shared.as_deref().filter(|s| s.wants_sessions()) else {
            return;
        };
        if record.role == Role::None {
            return;
        }
        if let Some(previous) = self.active.remove(&record.conn) {
            shared.session_event(&stopped(previous, record), false);
        }
        shared.session_event(record, true);
        self.active.insert(record.conn, record.clone());
    }

    /// The engine's `Output::SessionEnded`: `on_pub_stop` or `on_sub_stop` for the session the
    /// connection had started (the end record's own role may already be cleared, as after an
    /// RTMP `deleteStream`), with the final byte counts.
    pub fn session_ended(&mut self, record: &SessionRecord) {
        let Some(shared) = self.shared.as_deref() else {
            return;
        };
        if let Some(started) = self.active.remove(&record.conn) {
            shared.session_event(&stopped(started, record), false);
        }
    }
}

/// The stop record of the session that `started`, with what `now` says about its end.
fn stopped(started: SessionRecord, now: &SessionRecord) -> SessionRecord {
    SessionRecord {
        bytes_in: now.bytes_in,
        bytes_out: now.bytes_out,
        duration_ms: now.duration_ms,
        reason: now.reason.clone(),
        ..started
    }
}

/// Warnings of one kind, at most one a second (the rest are counted into the next one).
#[derive(Debug, Default)]
struct Warnings {
    last: Option<Instant>,
    suppressed: u64,
}

impl Warnings {
    fn warn(&mut self, event: WebhookEvent, url: &WebhookUrl, what: &str) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        self.last = Some(now);
        let suppressed = std::mem::take(&mut self.suppressed);
        warn!(
            suppressed,
            "webhook {} to {url} failed: {what}",
            event.name()
        );
    }
}

/// The sender thread's state.
struct Sender {
    rx: Receiver<Job>,
    receivers: Vec<(WebhookEvent, WebhookUrl)>,
    board: StatsBoard,
    interval: Duration,
    workers: usize,
    started_unix_ms: u64,
    failures: Warnings,
}

impl Sender {
    /// Sends until every [`WorkerHooks`] and the [`Notifier`] are gone and the queue is empty.
    fn run(mut self) {
        self.send(
            WebhookEvent::ServerStart,
            &server_start_json(self.started_unix_ms, self.workers),
        );
        let updates = self.url(WebhookEvent::Update).is_some();
        let mut next_update = Instant::now() + self.interval;
        loop {
            let now = Instant::now();
            if updates && now >= next_update {
                self.send(WebhookEvent::Update, &update_json(&self.board.snapshots()));
                next_update = Instant::now() + self.interval;
                continue;
            }
            let job = if updates {
                match self.rx.recv_timeout(next_update - now) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match self.rx.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            };
            self.send(job.event, &job.body);
        }
    }

    fn url(&self, event: WebhookEvent) -> Option<&WebhookUrl> {
        self.receivers
            .iter()
            .find(|(e, _)| *e == event)
            .map(|(_, u)| u)
    }

    fn send(&mut self, event: WebhookEvent, body: &str) {
        let Some(url) = self.url(event).cloned() else {
            return;
        };
        match post(&url, body) {
            Ok(status) if (200..300).contains(&status) => {
                debug!(status, "webhook {} sent to {url}", event.name());
            }
            Ok(status) => self
                .failures
                .warn(event, &url, &format!("HTTP status {status}")),
            Err(e) => self.failures.warn(event, &url, &e),
        }
    }
}

/// POSTs `body` (JSON) to `url` and returns the answer's status code: one connection per
/// request, [`TIMEOUT`] to connect, to write and to answer.
pub fn post(url: &WebhookUrl, body: &str) -> Result<u16, String> {
    let addrs = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?;
    let mut last_error = format!("{} has no address", url.host);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = format!("cannot connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    let io = |e: std::io::Error| e.to_string();
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.write_all(&url.post_request(body)).map_err(io)?;
    // The status line; the rest of the answer is not needed.
    let deadline = Instant::now() + TIMEOUT;
    let mut line = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !line.contains(&b'\n') && line.len() < MAX_STATUS_LINE {
        if Instant::now() >= deadline {
            return Err(format!("no answer within {} s", TIMEOUT.as_secs()));
        }
        let n = stream.read(&mut buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("no answer within {} s", TIMEOUT.as_secs())
            }
            _ => format!("no answer: {e}"),
        })?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let status_line = line[..end].strip_suffix(b"\r").unwrap_or(&line[..end]);
    response_status(status_line).ok_or_else(|| "the answer is not HTTP".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn record(conn: ConnId, role: Role, protocol: Protocol) -> SessionRecord {
        SessionRecord {
            conn,
            peer: "127.0.0.1:4000".parse().expect("addr"),
            protocol,
            role,
            stream: "live/hook".into(),
            bytes_in: 10,
            bytes_out: 20,
            duration_ms: 0,
            reason: String::new(),
        }
    }

    /// Hooks whose queue (of `len`) the test reads instead of a sender thread.
    fn hooks(len: usize, wanted: &[WebhookEvent]) -> (WorkerHooks, Receiver<Job>, Arc<Shared>) {
        let (tx, rx) = mpsc::sync_channel(len);
        let shared = Arc::new(Shared {
            tx,
            wanted: wanted.to_vec(),
            listen: ["r:1935".into(), "h:8080".into(), "s:5544".into()],
            streams: Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
            warned_ms: AtomicU64::new(0),
        });
        let hooks = WorkerHooks {
            shared: Some(shared.clone()),
            active: HashMap::new(),
        };
        (hooks, rx, shared)
    }

    fn next(rx: &Receiver<Job>) -> (WebhookEvent, serde_json::Value) {
        let job = rx.try_recv().expect("an event");
        (job.event, serde_json::from_str(&job.body).expect("JSON"))
    }

    #[test]
    fn sessions_become_start_and_stop_events_with_the_stream_state() {
        use WebhookEvent as E;
        let (mut hooks, rx, _) = hooks(16, &[E::PubStart, E::PubStop, E::SubStart, E::SubStop]);
        hooks.session_started(&record(1, Role::Publish, Protocol::Rtmp));
        let (e, v) = next(&rx);
        assert_eq!(e, E::PubStart);
        assert_eq!(v["session_id"], "RTMPPUBSUB1");
        assert_eq!(v["url"], "rtmp://r:1935/live/hook");
        assert_eq!(
            (v["has_in_session"].clone(), v["has_out_session"].clone()),
            (true.into(), false.into())
        );

        hooks.session_started(&record(2, Role::Play, Protocol::HttpFlv));
        let (e, v) = next(&rx);
        assert_eq!(e, E::SubStart);
        assert_eq!(v["session_id"], "FLVSUB2");
        assert_eq!(v["url"], "http://h:8080/live/hook.flv");
        assert_eq!(v["has_out_session"], true);

        // The player's connection ends: the stop names the session it started.
        let mut end = record(2, Role::Play, Protocol::HttpFlv);
        end.bytes_out = 999;
        hooks.session_ended(&end);
        let (e, v) = next(&rx);
        assert_eq!(e, E::SubStop);
        assert_eq!(v["session_id"], "FLVSUB2");
        assert_eq!(v["wrote_bytes_sum"], 999);
        assert_eq!(v["has_out_session"], false);

        // The publisher's end record has no role any more (RTMP deleteStream came first).
        hooks.session_ended(&record(1, Role::None, Protocol::Rtmp));
        let (e, v) = next(&rx);
        assert_eq!(e, E::PubStop);
        assert_eq!(v["base_type"], "PUB");
        assert_eq!(v["has_in_session"], false);

        // A connection that never started a session, or ends twice: nothing.
        hooks.session_ended(&record(3, Role::None, Protocol::Http));
        hooks.session_ended(&record(1, Role::None, Protocol::Rtmp));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_second_session_on_one_connection_stops_the_first() {
        use WebhookEvent as E;
        let (mut hooks, rx, _) = hooks(16, &[E::PubStart, E::PubStop, E::SubStart, E::SubStop]);
        hooks.session_started(&record(5, Role::Publish, Protocol::Rtmp));
        hooks.session_started(&record(5, Role::Play, Protocol::Rtmp));
        let events: Vec<E> = std::iter::from_fn(|| rx.try_recv().ok().map(|j| j.event)).collect();
        assert_eq!(events, [E::PubStart, E::PubStop, E::SubStart]);
    }

    #[test]
    fn events_without_a_url_are_not_queued() {
        let (mut hooks, rx, _) = hooks(16, &[WebhookEvent::SubStop]);
        hooks.session_started(&record(1, Role::Play, Protocol::Rtmp));
        assert!(rx.try_recv().is_err(), "no on_sub_start URL");
        hooks.session_ended(&record(1, Role::Play, Protocol::Rtmp));
        assert_eq!(next(&rx).0, WebhookEvent::SubStop);
        let mut off = WorkerHooks::disabled();
        off.session_started(&record(1, Role::Play, Protocol::Rtmp));
        assert!(off.active.is_empty());
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (mut hooks, rx, shared) = hooks(4, &[WebhookEvent::SubStart]);
        let started = Instant::now();
        for conn in 0..10 {
            hooks.session_started(&record(conn, Role::Play, Protocol::Rtmp));
        }
        assert!(started.elapsed() < Duration::from_secs(1), "never blocks");
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 6);
        assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), 4);
    }

    /// A one-request HTTP server: returns what it read and answers `answer`.
    fn serve_once(answer: &'static [u8]) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let thread = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Head, then Content-Length bytes of body.
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let _ = s.write_all(answer);
            got
        });
        (port, thread)
    }

    #[test]
    fn post_writes_one_json_request_and_reads_the_status() {
        let (port, server) = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n");
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/hook")).expect("url");
        assert_eq!(post(&url, r#"{"x":1}"#), Ok(204));
        let got = String::from_utf8(server.join().expect("server")).expect("text");
        assert!(got.starts_with("POST /hook HTTP/1.1\r\n"), "{got}");
        assert!(
            got.contains("\r\nContent-Type: application/json\r\n"),
            "{got}"
        );
        assert!(got.ends_with("\r\n\r\n{\"x\":1}"), "{got}");

        let (port, server) = serve_once(b"garbage\r\n");
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/")).expect("url");
        assert!(post(&url, "{}").is_err());
        server.join().expect("server");
    }

    #[test]
    fn post_gives_up_on_a_silent_receiver_and_a_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/")).expect("url");
        let started = Instant::now();
        // Connected through the backlog, never answered.
        let err = post(&url, "{}").expect_err("no answer");
        assert!(err.contains("no answer within 2 s"), "{err}");
        assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());
        drop(listener);
        assert!(post(&url, "{}").is_err(), "nobody listens");
    }
}
