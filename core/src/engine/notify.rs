//! Sending webhooks (lal's HTTP notifications, `[webhook]`) from the engine, without ever
//! holding up media.
//!
//! The engine turns its own session records into `on_pub_start`/`on_pub_stop`/`on_sub_start`/
//! `on_sub_stop` events (with `has_in_session`/`has_out_session` read from its hub) and only
//! *tries* to queue them: when the bounded queue is full the event is dropped and counted, with
//! at most one warning a second. Queued events are POSTed over outbound HTTP connections
//! ([`super::outbound`]), a few at a time, each with its own connect and answer deadline;
//! every failed attempt is logged ([`Output::Log`], at most one line a second, the rest
//! counted into the next one). Worker 0's engine also sends `on_server_start` once and
//! `on_update` periodically, with every worker's statistics gathered by the runtime
//! ([`Output::Gather`] answered through [`Engine::answer`]).
//!
//! At shutdown the runtime closes the connections and keeps driving the engine until
//! [`Engine::pending_notifications`] is 0 (or its patience runs out), so the last stop events
//! still go out.

use std::collections::VecDeque;

use bytes::Bytes;

use super::outbound::{Finished, OutboundTimeouts};
use super::{
    connect_output, ConnId, Engine, EngineStats, LogLevel, Output, Protocol, Query, Role,
    SessionRecord,
};
use crate::api::webhook::{server_start_json, update_json, SessionInfo, WebhookEvent, WebhookUrl};
use crate::http::client::ClientRequest;
use crate::hub::Hub;
use crate::id_map::IdMap;

/// Webhook settings of one engine (built from `[webhook]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The receiver of each event that is sent; events not listed are not sent.
    pub receivers: Vec<(WebhookEvent, WebhookUrl)>,
    /// Time between two `on_update` events (ms; worker 0 only).
    pub update_interval_ms: u64,
    /// Listener addresses for the sessions' URLs.
    pub rtmp_addr: String,
    /// The HTTP listener's address.
    pub http_addr: String,
    /// The RTSP listener's address.
    pub rtsp_addr: String,
    /// The server's working directory (`on_hls_make_ts`'s `cwd`; core reads no environment).
    pub cwd: String,
    /// Events waiting to be sent at most; more are dropped.
    pub queue_len: usize,
    /// Events being sent at once at most.
    pub max_in_flight: usize,
    /// Time a receiver has to accept the connection, and then to answer.
    pub timeouts: OutboundTimeouts,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            receivers: Vec::new(),
            update_interval_ms: 5_000,
            rtmp_addr: String::new(),
            http_addr: String::new(),
            rtsp_addr: String::new(),
            cwd: String::new(),
            queue_len: 1024,
            max_in_flight: 4,
            timeouts: OutboundTimeouts {
                connect_ms: 2_000,
                answer_ms: 2_000,
            },
        }
    }
}

impl WebhookConfig {
    fn receiver(&self, event: WebhookEvent) -> Option<&WebhookUrl> {
        self.receivers
            .iter()
            .find(|(e, _)| *e == event)
            .map(|(_, u)| u)
    }

    fn listen_addr(&self, protocol: Protocol) -> &str {
        match protocol {
            Protocol::Rtmp => &self.rtmp_addr,
            Protocol::Rtsp => &self.rtsp_addr,
            _ => &self.http_addr,
        }
    }
}

/// One event to send.
#[derive(Debug)]
struct Job {
    event: WebhookEvent,
    body: Bytes,
}

/// Warnings of one kind, at most one a second (the rest are counted into the next one).
#[derive(Debug, Default)]
struct RateLimit {
    last_ms: Option<u64>,
    suppressed: u64,
}

impl RateLimit {
    /// Whether to log now; if so, how many were held back since the last one.
    fn allow(&mut self, now_ms: u64) -> Option<u64> {
        if self
            .last_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < 1_000)
        {
            self.suppressed += 1;
            return None;
        }
        self.last_ms = Some(now_ms);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The engine's webhook state: the queue, what is in flight, and the sessions whose stop is
/// still to be announced.
#[derive(Debug)]
pub(super) struct Notify {
    config: WebhookConfig,
    /// Worker 0 sends `on_server_start` and `on_update`.
    first_worker: bool,
    workers: usize,
    queue: VecDeque<Job>,
    in_flight: IdMap<ConnId, Job>,
    /// Sessions started on this engine and not yet stopped, by connection.
    active: IdMap<ConnId, SessionRecord>,
    /// Whether the first pump (which sends `on_server_start`) happened.
    started: bool,
    next_update_ms: Option<u64>,
    /// The id of the statistics gather the next `on_update` waits for.
    gather: Option<ConnId>,
    dropped: u64,
    drop_warnings: RateLimit,
    failures: RateLimit,
}

impl Notify {
    pub(super) fn new(config: WebhookConfig, worker: usize, workers: usize) -> Self {
        Notify {
            config,
            first_worker: worker == 0,
            workers,
            queue: VecDeque::new(),
            in_flight: IdMap::default(),
            active: IdMap::default(),
            started: false,
            next_update_ms: None,
            gather: None,
            dropped: 0,
            drop_warnings: RateLimit::default(),
            failures: RateLimit::default(),
        }
    }

    /// Replaces the receivers and their settings (a config reload); the queue, what is in
    /// flight and the sessions still to be announced stay. The working directory is kept.
    pub(super) fn set_config(&mut self, config: WebhookConfig) {
        self.config = WebhookConfig {
            cwd: std::mem::take(&mut self.config.cwd),
            ..config
        };
    }

    fn wants_sessions(&self) -> bool {
        self.config
            .receivers
            .iter()
            .any(|(e, _)| !matches!(e, WebhookEvent::ServerStart | WebhookEvent::Update))
    }

    /// Whether `event` has a receiver.
    pub(super) fn wants(&self, event: WebhookEvent) -> bool {
        self.config.receiver(event).is_some()
    }

    /// Whether this engine sends anything on its own timer.
    fn has_timer_events(&self) -> bool {
        self.first_worker
            && (self.wants(WebhookEvent::ServerStart) || self.wants(WebhookEvent::Update))
    }

    /// Events queued or being sent.
    pub(super) fn pending(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// The next time [`Engine::pump_outbound`] has timed work.
    pub(super) fn poll_timeout(&self) -> Option<u64> {
        if !self.started && self.has_timer_events() {
            return Some(0);
        }
        self.next_update_ms
    }

    /// Queues `body` for `event` if it has a receiver, without waiting: a full queue drops it.
    fn push(
        &mut self,
        event: WebhookEvent,
        body: String,
        now_ms: u64,
        outputs: &mut VecDeque<Output>,
    ) {
        if !self.wants(event) {
            return;
        }
        if self.queue.len() >= self.config.queue_len {
            self.dropped += 1;
            if self.drop_warnings.allow(now_ms).is_some() {
                outputs.push_back(Output::Log {
                    level: LogLevel::Warn,
                    message: format!(
                        "webhook queue full ({} events): {} dropped ({} dropped so far)",
                        self.config.queue_len,
                        event.name(),
                        self.dropped
                    ),
                });
            }
            return;
        }
        self.queue.push_back(Job {
            event,
            body: Bytes::from(body),
        });
    }

    /// The session of `record` started (`start`) or ended: its event, with the stream's state
    /// in `hub` after it. A connection that starts a new session first stops its previous one;
    /// an end names the session the connection had started (the end record's own role may
    /// already be cleared, as after an RTMP `deleteStream`), with the final byte counts.
    fn session<P: crate::hub::HubPacket>(
        &mut self,
        record: &SessionRecord,
        start: bool,
        hub: &Hub<P>,
        now_ms: u64,
        outputs: &mut VecDeque<Output>,
    ) {
        let events = if start {
            if record.role == Role::None {
                return;
            }
            let previous = self.active.insert(record.conn, record.clone());
            [
                previous.map(|p| (stopped(p, record), false)),
                Some((record.clone(), true)),
            ]
        } else {
            let started = self.active.remove(&record.conn);
            [started.map(|s| (stopped(s, record), false)), None]
        };
        for (record, start) in events.into_iter().flatten() {
            let Some(event) = WebhookEvent::of_session(record.role, start) else {
                continue;
            };
            let mut info = SessionInfo::new(&record, self.config.listen_addr(record.protocol));
            if let Some(s) = hub.streams().find(|s| s.name == record.stream) {
                info.has_in_session = s.publisher.is_some();
                info.has_out_session = !s.players.is_empty();
            }
            self.push(event, info.to_json(), now_ms, outputs);
        }
    }

    /// The result of one POST: logged when it failed.
    fn finished(&mut self, done: Finished, now_ms: u64, outputs: &mut VecDeque<Output>) {
        let Some(job) = self.in_flight.remove(&done.conn) else {
            return;
        };
        let Some(url) = self.config.receiver(job.event) else {
            return;
        };
        let failure = match done.outcome {
            Ok(r) if (200..300).contains(&r.status) => {
                outputs.push_back(Output::Log {
                    level: LogLevel::Debug,
                    message: format!(
                        "webhook {} sent to {url}: status {}",
                        job.event.name(),
                        r.status
                    ),
                });
                return;
            }
            Ok(r) => format!("HTTP status {}", r.status),
            Err(e) => e.to_string(),
        };
        if let Some(suppressed) = self.failures.allow(now_ms) {
            let more = match suppressed {
                0 => String::new(),
                n => format!(" ({n} earlier failures not logged)"),
            };
            outputs.push_back(Output::Log {
                level: LogLevel::Warn,
                message: format!(
                    "webhook {} to {url} failed: {failure}{more}",
                    job.event.name()
                ),
            });
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

impl Engine {
    /// Webhook events queued or being sent. A stopping runtime keeps driving the engine
    /// (`handle_timeout`, the outbound connections' I/O) until this is 0 or its patience ends,
    /// so the last sessions' stop events go out.
    pub fn pending_notifications(&self) -> usize {
        self.notify.pending()
    }

    /// A session record went out: its webhook event is queued and sending starts.
    pub(super) fn notify_session(&mut self, record: &SessionRecord, start: bool, now_ms: u64) {
        if !self.notify.wants_sessions() {
            return;
        }
        self.notify
            .session(record, start, &self.hub, now_ms, &mut self.outputs);
        self.pump_outbound(now_ms);
    }

    /// Queues `body` for `event` (one not tied to a session record: relay pulls,
    /// `on_rtmp_connect`, `on_hls_make_ts`) and starts sending.
    pub(super) fn notify_event(&mut self, event: WebhookEvent, body: String, now_ms: u64) {
        self.notify.push(event, body, now_ms, &mut self.outputs);
        self.pump_outbound(now_ms);
    }

    /// `on_hls_make_ts` for a segment opened or closed.
    pub(super) fn notify_hls_segment(&mut self, e: &crate::hls::SegmentEvent, now_ms: u64) {
        use crate::api::webhook::{to_json, HlsMakeTsInfo};
        if !self.notify.wants(WebhookEvent::HlsMakeTs) {
            return;
        }
        let info = HlsMakeTsInfo {
            server_id: crate::api::lal::SERVER_ID,
            event: if e.closed { "close" } else { "open" },
            stream_name: e
                .key
                .split_once('/')
                .map_or(e.key.as_str(), |(_, s)| s)
                .to_owned(),
            cwd: self.notify.config.cwd.clone(),
            ts_file: e.ts_file.clone(),
            live_m3u8_file: e.live_m3u8_file.clone(),
            record_m3u8_file: e.record_m3u8_file.clone(),
            id: e.seq,
            duration: e.duration_ms as f64 / 1000.0,
        };
        self.notify_event(WebhookEvent::HlsMakeTs, to_json(&info), now_ms);
    }

    /// Hands finished outbound exchanges to whoever asked (the auth callback, the webhooks), then starts
    /// what is due: `on_server_start`, an `on_update` gather, queued events while fewer than
    /// [`WebhookConfig::max_in_flight`] are being sent.
    pub(super) fn pump_outbound(&mut self, now_ms: u64) {
        while let Some(done) = self.outbound.poll_finished() {
            let config = &self.config.auth_callback;
            if let Some(done) = self.callbacks.finished(done, config) {
                self.notify.finished(done, now_ms, &mut self.outputs);
            }
        }
        let n = &mut self.notify;
        if !n.started {
            n.started = true;
            if n.first_worker {
                let wall = self.config.rtsp.wallclock_offset_ms;
                let body = server_start_json(wall, n.workers);
                n.push(WebhookEvent::ServerStart, body, now_ms, &mut self.outputs);
                if n.wants(WebhookEvent::Update) {
                    n.next_update_ms = Some(now_ms.saturating_add(n.config.update_interval_ms));
                }
            }
        }
        if n.next_update_ms.is_some_and(|at| at <= now_ms) {
            n.next_update_ms = Some(now_ms.saturating_add(n.config.update_interval_ms));
            let conn = self.outbound.reserve_id();
            n.gather = Some(conn);
            self.outputs.push_back(Output::Gather {
                conn,
                query: Query::AllGroups,
            });
        }
        while n.in_flight.len() < n.config.max_in_flight {
            let Some(job) = n.queue.pop_front() else {
                break;
            };
            let Some(url) = n.config.receiver(job.event) else {
                continue;
            };
            let request = ClientRequest {
                method: "POST".into(),
                host: url.authority(),
                path: url.path.clone(),
                headers: vec![
                    (
                        "User-Agent".into(),
                        format!("rill/{}", env!("CARGO_PKG_VERSION")),
                    ),
                    ("Content-Type".into(), "application/json".into()),
                    ("Connection".into(), "close".into()),
                ],
                body: job.body.clone(),
            };
            let policy = &self.config.tls_client;
            let connect = |conn| connect_output(policy, conn, url.scheme, &url.host, url.port);
            match self.outbound.http(
                connect,
                &request,
                n.config.timeouts,
                now_ms,
                &mut self.outputs,
            ) {
                Ok(conn) => {
                    n.in_flight.insert(conn, job);
                }
                Err(e) => self.outputs.push_back(Output::Log {
                    level: LogLevel::Warn,
                    message: format!("webhook {} to {url} failed: {e}", job.event.name()),
                }),
            }
        }
    }

    /// The runtime's answer to the statistics gather of an `on_update`: `true` if `conn` was
    /// that gather (then the event is queued and sending starts).
    pub(super) fn answer_gather(
        &mut self,
        conn: ConnId,
        snapshots: &[EngineStats],
        now_ms: u64,
    ) -> bool {
        if self.notify.gather != Some(conn) {
            return false;
        }
        self.notify.gather = None;
        let body = update_json(snapshots);
        self.notify
            .push(WebhookEvent::Update, body, now_ms, &mut self.outputs);
        self.pump_outbound(now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Packet;
    use crate::hub::HubConfig;

    fn record(conn: ConnId, role: Role) -> SessionRecord {
        SessionRecord {
            conn,
            peer: "127.0.0.1:4000".parse().expect("addr"),
            protocol: Protocol::Rtmp,
            tls: false,
            role,
            stream: "live/hook".into(),
            bytes_in: 10,
            bytes_out: 20,
            duration_ms: 0,
            reason: String::new(),
        }
    }

    fn queued(n: &Notify) -> Vec<(WebhookEvent, serde_json::Value)> {
        n.queue
            .iter()
            .map(|j| (j.event, serde_json::from_slice(&j.body).expect("JSON")))
            .collect()
    }

    #[test]
    fn a_second_session_on_one_connection_stops_the_first_and_ends_name_the_started_one() {
        use WebhookEvent as E;
        let urls = [E::PubStart, E::PubStop, E::SubStart, E::SubStop].map(|e| {
            let url = WebhookUrl::parse(&format!("http://h/{}", e.name())).expect("url");
            (e, url)
        });
        let config = WebhookConfig {
            receivers: urls.to_vec(),
            ..WebhookConfig::default()
        };
        let mut n = Notify::new(config, 0, 1);
        let hub: Hub<Packet> = Hub::new(HubConfig::default());
        let mut out = VecDeque::new();
        n.session(&record(5, Role::Publish), true, &hub, 0, &mut out);
        n.session(&record(5, Role::Play), true, &hub, 0, &mut out);
        // The end record's role was cleared (RTMP deleteStream): the stop is the player's.
        let mut end = record(5, Role::None);
        end.bytes_out = 999;
        n.session(&end, false, &hub, 0, &mut out);
        // Never started, or ended twice: nothing.
        n.session(&record(6, Role::None), true, &hub, 0, &mut out);
        n.session(&end, false, &hub, 0, &mut out);
        let got = queued(&n);
        let events: Vec<E> = got.iter().map(|(e, _)| *e).collect();
        assert_eq!(events, [E::PubStart, E::PubStop, E::SubStart, E::SubStop]);
        assert_eq!(got[3].1["session_id"], "RTMPPUBSUB5");
        assert_eq!(got[3].1["base_type"], "SUB");
        assert_eq!(got[3].1["wrote_bytes_sum"], 999);
        assert!(out.is_empty(), "no warnings");

        // Events without a URL are not queued.
        let only_stop = WebhookConfig {
            receivers: vec![urls[3].clone()],
            ..WebhookConfig::default()
        };
        let mut n = Notify::new(only_stop, 0, 1);
        n.session(&record(1, Role::Play), true, &hub, 0, &mut out);
        assert_eq!(n.pending(), 0);
        n.session(&record(1, Role::Play), false, &hub, 0, &mut out);
        assert_eq!(queued(&n).len(), 1);
    }
}
