//! HTTP callback authorization (`[auth] http_callback`): before a publish or play is accepted,
//! one POST asks an HTTP receiver, and its answer decides (2xx allows, anything else refuses).
//!
//! The request that needs the answer is *held*: an RTMP `publish` or `play` stays pending (the
//! RTMP session holds the publisher's later messages meanwhile), an HTTP request is kept and
//! the connection reads nothing more, an RTSP DESCRIBE or ANNOUNCE stays unanswered. When the
//! answer comes (or [`CallbackConfig::timeout_ms`] passes, or the receiver cannot be reached,
//! where [`CallbackConfig::allow_on_error`] decides) the request is handled again from the
//! start with the verdict waiting at the check ([`Engine::check_access`]), so allowing and
//! refusing go through the protocol's ordinary paths (RTMP error status, HTTP 403, RTSP 403).
//! Nothing else waits: other connections, and the media of sessions already accepted, go on.
//!
//! HLS players fetch a playlist every few seconds: an allowed playlist request lets the same
//! address fetch the same stream with the same query for [`HLS_VERDICT_TTL_MS`] without asking
//! again.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use bytes::Bytes;
use serde::Serialize;

use super::outbound::{Finished, OutboundTimeouts};
use super::{connect_output, ConnId, Engine, Protocol, Role};
use crate::api::webhook::WebhookUrl;
use crate::auth::Access;
use crate::http::client::ClientRequest;
use crate::http::Request;
use crate::id_map::IdMap;
use crate::rtp::TrackParams;
use crate::stream_key::StreamKey;

/// How long an allowed HLS playlist request lets the same address, stream and query through
/// without a new callback (ms).
pub const HLS_VERDICT_TTL_MS: u64 = 30_000;

/// Requests held for an answer at most; more get the error default at once.
const MAX_HELD: usize = 4096;

/// Allowed HLS verdicts remembered at most.
const MAX_HLS_VERDICTS: usize = 4096;

/// The HTTP callback's settings (from `[auth]`); no URL: no callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackConfig {
    /// The receiver of the POSTs (http:// or https://).
    pub url: Option<WebhookUrl>,
    /// Longest wait for the answer (ms), connecting included.
    pub timeout_ms: u64,
    /// What a timeout or an unreachable receiver means: allow (`true`) or refuse.
    pub allow_on_error: bool,
    /// The accesses that ask the receiver.
    pub checks: Vec<Access>,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            url: None,
            timeout_ms: 3_000,
            allow_on_error: false,
            checks: Access::ALL.to_vec(),
        }
    }
}

/// The POST's JSON body.
#[derive(Serialize)]
struct CallbackBody<'a> {
    /// `publish` or `play`.
    action: &'static str,
    /// The session's protocol as logs name it (`RTMP`, `HTTP-FLV`, `HLS`, `RTSP`, ...).
    protocol: &'a str,
    app: &'a str,
    stream: &'a str,
    /// The URL query, without `?`.
    query: &'a str,
    remote_addr: String,
    /// lal's session id (as in the webhooks and the API).
    session_id: String,
}

/// What to run again once the verdict is known.
#[derive(Debug)]
pub(super) enum Resume {
    /// An RTMP `publish`.
    RtmpPublish {
        stream_id: u32,
        app: String,
        name: String,
        query: String,
    },
    /// An RTMP `play`.
    RtmpPlay {
        stream_id: u32,
        app: String,
        name: String,
        query: String,
    },
    /// An HTTP request (a player or an HLS playlist).
    Http(Box<Request>),
    /// An RTSP DESCRIBE.
    RtspDescribe { path: String, query: String },
    /// An RTSP ANNOUNCE.
    RtspAnnounce {
        path: String,
        query: String,
        tracks: Vec<TrackParams>,
        frame_rate: Option<f64>,
    },
}

/// A request waiting for the receiver.
#[derive(Debug)]
struct Hold {
    conn: ConnId,
    access: Access,
    key: StreamKey,
    deadline_ms: u64,
    resume: Resume,
}

/// The verdict handed to a request handled again.
#[derive(Debug)]
struct Decided {
    access: Access,
    key: StreamKey,
    verdict: Result<(), String>,
}

/// What the callback says about a request at its check.
pub(super) enum Gate {
    /// Go on (no callback for it, or it allowed).
    Pass,
    /// Refused, with the reason.
    Refused(String),
    /// Held until the answer: the handler returns without answering.
    Held,
}

/// The engine's callback state.
#[derive(Debug, Default)]
pub(super) struct Callbacks {
    /// Held requests by the outbound connection asking for them.
    held: IdMap<ConnId, Hold>,
    /// Verdicts known, waiting to be applied at the engine's top level.
    ready: VecDeque<(Hold, Result<(), String>)>,
    /// The verdict of the request being handled again, by its connection.
    decided: IdMap<ConnId, Decided>,
    /// Allowed HLS playlist requests: address, stream and query, until when.
    hls_allowed: HashMap<(IpAddr, StreamKey, String), u64>,
}

impl Callbacks {
    /// The earliest deadline of a held request.
    pub(super) fn poll_timeout(&self) -> Option<u64> {
        self.held.values().map(|h| h.deadline_ms).min()
    }

    /// Takes `done` if it answers a held request (its verdict becomes ready); else hands it
    /// back.
    pub(super) fn finished(&mut self, done: Finished, config: &CallbackConfig) -> Option<Finished> {
        let Some(hold) = self.held.remove(&done.conn) else {
            return Some(done);
        };
        let verdict = match done.outcome {
            Ok(head) if (200..300).contains(&head.status) => Ok(()),
            Ok(head) => Err(format!(
                "refused by the auth callback (status {})",
                head.status
            )),
            Err(e) => on_error(config, &e.to_string()),
        };
        self.ready.push_back((hold, verdict));
        None
    }

    /// Held requests past their deadline get the error default.
    pub(super) fn handle_timeout(&mut self, now_ms: u64, config: &CallbackConfig) {
        let expired: Vec<ConnId> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline_ms <= now_ms)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some(hold) = self.held.remove(&id) {
                let why = format!("no answer within {} ms", config.timeout_ms);
                self.ready.push_back((hold, on_error(config, &why)));
            }
        }
    }

    /// Forgets what `conn` waits for (its client withdrew the request); the answer, when it
    /// comes, is dropped.
    pub(super) fn withdraw(&mut self, conn: ConnId) {
        self.held.retain(|_, h| h.conn != conn);
    }

    fn is_held(&self, conn: ConnId) -> bool {
        self.held.values().any(|h| h.conn == conn)
    }

    fn remember_hls(&mut self, key: (IpAddr, StreamKey, String), now_ms: u64) {
        if self.hls_allowed.len() >= MAX_HLS_VERDICTS {
            self.hls_allowed.retain(|_, until| *until > now_ms);
            if self.hls_allowed.len() >= MAX_HLS_VERDICTS {
                self.hls_allowed.clear();
            }
        }
        self.hls_allowed
            .insert(key, now_ms.saturating_add(HLS_VERDICT_TTL_MS));
    }
}

/// The verdict when the receiver gave no answer (`why`).
fn on_error(config: &CallbackConfig, why: &str) -> Result<(), String> {
    if config.allow_on_error {
        Ok(())
    } else {
        Err(format!("auth callback failed ({why}); denied by default"))
    }
}

/// `pairs` as a URL query (`k=v&k=v`), percent-encoding all but unreserved characters.
pub(super) fn encode_query(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    let encode = |s: &str, out: &mut String| {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    };
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(k, &mut out);
        out.push('=');
        encode(v, &mut out);
    }
    out
}

impl Engine {
    /// The callback's word on `access` to `key` by `conn` (its URL `query`, without `?`): the
    /// verdict of a request handled again, a remembered HLS verdict, or a new POST (then the
    /// request is held and `resume` runs it again once the verdict is known).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn callback_gate(
        &mut self,
        conn: ConnId,
        access: Access,
        protocol: Protocol,
        key: &StreamKey,
        query: &str,
        resume: impl FnOnce() -> Resume,
        now_ms: u64,
    ) -> Gate {
        let config = &self.config.auth_callback;
        let Some(url) = config
            .url
            .as_ref()
            .filter(|_| config.checks.contains(&access))
        else {
            return Gate::Pass;
        };
        if let Some(d) = self.callbacks.decided.remove(&conn) {
            if d.access == access && d.key == *key {
                return match d.verdict {
                    Ok(()) => Gate::Pass,
                    Err(why) => Gate::Refused(why),
                };
            }
        }
        let Some(c) = self.conns.get(&conn) else {
            return Gate::Refused("connection gone".into());
        };
        let (peer, tls) = (c.peer, c.tls);
        let hls = (peer.ip(), key.clone(), query.to_owned());
        if access == Access::PlayHls
            && self
                .callbacks
                .hls_allowed
                .get(&hls)
                .is_some_and(|&until| until > now_ms)
        {
            return Gate::Pass;
        }
        if self.callbacks.is_held(conn) {
            return Gate::Refused("a request of this connection awaits the auth callback".into());
        }
        if self.callbacks.held.len() >= MAX_HELD {
            return match on_error(config, "too many requests awaiting it") {
                Ok(()) => Gate::Pass,
                Err(why) => Gate::Refused(why),
            };
        }
        let role = if access.is_publish() {
            Role::Publish
        } else {
            Role::Play
        };
        let protocol_name = if access == Access::PlayHls {
            if tls {
                "HLS-TLS"
            } else {
                "HLS"
            }
        } else {
            protocol.name(tls)
        };
        let body = CallbackBody {
            action: if access.is_publish() {
                "publish"
            } else {
                "play"
            },
            protocol: protocol_name,
            app: key.app(),
            stream: key.stream(),
            query,
            remote_addr: peer.to_string(),
            session_id: crate::api::lal::lal_session_id(conn, protocol, role),
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
            body: Bytes::from(serde_json::to_string(&body).unwrap_or_default()),
        };
        let timeouts = OutboundTimeouts {
            connect_ms: config.timeout_ms,
            answer_ms: config.timeout_ms,
        };
        let policy = &self.config.tls_client;
        let connect = |id| connect_output(policy, id, url.scheme, &url.host, url.port);
        match self
            .outbound
            .http(connect, &request, timeouts, now_ms, &mut self.outputs)
        {
            Ok(id) => {
                let deadline_ms = now_ms.saturating_add(config.timeout_ms);
                self.callbacks.held.insert(
                    id,
                    Hold {
                        conn,
                        access,
                        key: key.clone(),
                        deadline_ms,
                        resume: resume(),
                    },
                );
                Gate::Held
            }
            Err(e) => match on_error(config, &e.to_string()) {
                Ok(()) => Gate::Pass,
                Err(why) => Gate::Refused(why),
            },
        }
    }

    /// Runs the held requests whose verdict is known again, each with its verdict.
    pub(super) fn run_callbacks(&mut self, now_ms: u64) {
        while let Some((hold, verdict)) = self.callbacks.ready.pop_front() {
            let conn = hold.conn;
            let Some(c) = self.conns.get(&conn).filter(|c| !c.closing) else {
                continue;
            };
            if hold.access == Access::PlayHls && verdict.is_ok() {
                let query = match &hold.resume {
                    Resume::Http(req) => encode_query(&req.query),
                    _ => String::new(),
                };
                let remembered = (c.peer.ip(), hold.key.clone(), query);
                self.callbacks.remember_hls(remembered, now_ms);
            }
            self.callbacks.decided.insert(
                conn,
                Decided {
                    access: hold.access,
                    key: hold.key,
                    verdict,
                },
            );
            match hold.resume {
                Resume::RtmpPublish {
                    stream_id,
                    app,
                    name,
                    query,
                } => {
                    self.on_rtmp_publish(conn, stream_id, &app, &name, &query, now_ms);
                    self.drain_rtmp(conn, now_ms);
                }
                Resume::RtmpPlay {
                    stream_id,
                    app,
                    name,
                    query,
                } => {
                    self.on_rtmp_play(conn, stream_id, &app, &name, &query, now_ms);
                    self.drain_rtmp(conn, now_ms);
                }
                Resume::Http(req) => self.resume_http(conn, *req, now_ms),
                Resume::RtspDescribe { path, query } => {
                    self.rtsp_describe(conn, &path, &query, now_ms);
                    self.drain_rtsp(conn, now_ms);
                }
                Resume::RtspAnnounce {
                    path,
                    query,
                    tracks,
                    frame_rate,
                } => {
                    self.rtsp_announce(conn, &path, &query, &tracks, frame_rate, now_ms);
                    self.drain_rtsp(conn, now_ms);
                }
            }
            self.callbacks.decided.remove(&conn);
        }
        self.drain_hub(now_ms);
    }
}
