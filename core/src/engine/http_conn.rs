//! The engine's HTTP connections: requests read, routed ([`super::routes`]) and answered;
//! players started for HTTP-FLV, WebSocket-FLV, HTTP-TS and WebSocket-TS; HLS playlists and
//! segments; the WebSocket side of a player. API requests are answered through
//! [`super::Output::Gather`] (see [`super::command`]).
//!
//! Stream names are validated ([`StreamKey::new`]) before anything else looks at them. Playlists
//! and segments answer with a sized body and keep the connection; a segment's body is its
//! shared pieces (no copy). A `HEAD` request gets the head its `GET` would get and no body.
//!
//! Request bodies: `Content-Length` bodies up to [`crate::http::HttpLimits::max_body_bytes`]
//! are read whole before the request is handled; a larger declared length is refused with 413
//! before any of it is buffered. Chunked request bodies are refused with 411: no route takes a
//! body that needs streaming, and every client of the API can send a length. A head with
//! `Expect: 100-continue` whose body has not arrived is routed at once: a route that takes it
//! gets `100 Continue` sent so the client sends the body; a path or method that would be
//! refused gets its final status (404, 405) without the body being read, and the connection
//! closes. Any other expectation is refused with 417.

use bytes::BytesMut;

use super::routes::{self, Handler, MediaFormat, ROUTES};
use super::{
    demand, relay, ConnId, ConnKind, Engine, HttpState, Output, PlayerFormat, Protocol, Query,
};
use crate::api::guard::ApiKind;
use crate::api::lal::{self, kick_session_query};
use crate::api::livego;
use crate::auth::Access;
use crate::hls::{HlsRequest, SegmentFormat};
use crate::http::router::{self, Methods, Params, Routed};
use crate::http::websocket::{self, Opcode, WsReader};
use crate::http::{self, Request, Response, CONTINUE_RESPONSE};
use crate::hub::PlayState;
use crate::stream_key::StreamKey;
use crate::webui;

/// Most replies (pongs) queued for a WebSocket peer before further pings go unanswered.
const MAX_PENDING_CONTROL: usize = 8;

/// How a request wants its answer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ask {
    /// Read the next request after answering (else close).
    pub(super) keep_alive: bool,
    /// `HEAD`: the head only.
    pub(super) head_only: bool,
}

impl Ask {
    fn of(req: &Request) -> Ask {
        Ask {
            keep_alive: req.keep_alive(),
            head_only: req.method == "HEAD",
        }
    }

    /// The same, closing after the answer.
    pub(super) fn closing(self) -> Ask {
        Ask {
            keep_alive: false,
            ..self
        }
    }
}

/// Where routing sends a request, or the answer that refuses it.
enum Routing<'p> {
    Found(Handler, Params<'p>),
    Refused(Response, Ask),
}

/// Routes `method` and the path `segments` (see [`routes`]); `ask` is how the request wants
/// its answer. A method the server knows nothing of is 405 on any path.
fn route<'p>(method: &str, segments: &'p [&'p str], ask: Ask) -> Routing<'p> {
    if Methods::of(method).is_none() {
        return Routing::Refused(method_not_allowed(Methods::ALL), ask.closing());
    }
    match router::route(ROUTES, method, segments) {
        Routed::Found { target, params } => Routing::Found(*target, params),
        Routed::NotFound => Routing::Refused(Response::text(404, "not found"), ask),
        Routed::MethodNotAllowed(allow) => Routing::Refused(
            method_not_allowed(allow.with(Methods::OPTIONS)),
            ask.closing(),
        ),
    }
}

fn method_not_allowed(allow: Methods) -> Response {
    Response::text(405, "method not allowed").header("Allow", allow.allow_header())
}

impl Engine {
    pub(super) fn drain_http(&mut self, conn: ConnId, now_ms: u64) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            // A connection closing after its answer reads nothing more, even requests already
            // pipelined behind the one answered.
            if c.closing {
                return;
            }
            let ConnKind::Http {
                reader,
                state: HttpState::AwaitRequest,
                ..
            } = &mut c.kind
            else {
                return;
            };
            match reader.poll_request() {
                Ok(Some(req)) => {
                    // The next request's head (keep-alive) gets its own deadline.
                    c.head_started_ms = now_ms;
                    self.on_http_request(conn, req, now_ms)
                }
                Ok(None) => {
                    if reader.take_expect_continue() {
                        self.expect_continue(conn, now_ms);
                    }
                    return;
                }
                Err(e) => return self.http_error(conn, e.status(), &e.to_string(), now_ms),
            }
        }
    }

    /// A head with `Expect: 100-continue` waits for its body: let the client send it if the
    /// request will be handled, else answer now and close (the body is never read).
    fn expect_continue(&mut self, conn: ConnId, now_ms: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnKind::Http { reader, .. } = &c.kind else {
            return;
        };
        let Some(req) = reader.pending_head() else {
            return;
        };
        let ask = Ask::of(req).closing();
        let refused = match http::split_path(&req.path) {
            Err(_) => Some(Response::text(400, "bad path")),
            // A preflight is answered on any path.
            Ok(_) if req.method == "OPTIONS" => None,
            Ok(segments) => match route(&req.method, &segments, ask) {
                Routing::Found(..) => None,
                Routing::Refused(response, _) => Some(response),
            },
        };
        match refused {
            None => {
                c.pending
                    .push_back(bytes::Bytes::from_static(CONTINUE_RESPONSE));
                self.want_transmit(conn);
            }
            Some(response) => {
                let reason = format!("refused before its body: {}", response.status);
                self.reply(conn, ask, response, &reason, now_ms);
            }
        }
    }

    /// Queues `response` (its head only for `HEAD`), then reads the next request or closes.
    pub(super) fn reply(
        &mut self,
        conn: ConnId,
        ask: Ask,
        response: Response,
        reason: &str,
        now_ms: u64,
    ) {
        let mut out = BytesMut::with_capacity(256 + response.body.len());
        if ask.head_only {
            response.encode_head(&mut out);
        } else {
            response.encode(&mut out);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.pending.push_back(out.freeze());
        }
        self.want_transmit(conn);
        if !ask.keep_alive {
            if let Some(c) = self.conns.get_mut(&conn) {
                if let ConnKind::Http { state, .. } = &mut c.kind {
                    *state = HttpState::Done;
                }
            }
            self.close(conn, true, reason, now_ms);
        }
    }

    /// Queues a whole `response`, then reads the next request or closes.
    pub(super) fn http_respond(
        &mut self,
        conn: ConnId,
        response: Response,
        keep_alive: bool,
        reason: &str,
        now_ms: u64,
    ) {
        let ask = Ask {
            keep_alive,
            head_only: false,
        };
        self.reply(conn, ask, response, reason, now_ms);
    }

    pub(super) fn http_error(&mut self, conn: ConnId, status: u16, reason: &str, now_ms: u64) {
        self.http_respond(
            conn,
            Response::text(status, reason.to_owned()),
            false,
            reason,
            now_ms,
        );
    }

    /// The request waits for the auth callback: nothing more is read meanwhile.
    pub(super) fn hold_http(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if let ConnKind::Http { state, .. } = &mut c.kind {
                *state = HttpState::Authorizing;
            }
        }
    }

    /// Handles a request held for the auth callback again (its verdict is waiting at the
    /// check), then reads on.
    pub(super) fn resume_http(&mut self, conn: ConnId, req: Request, now_ms: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnKind::Http { state, .. } = &mut c.kind else {
            return;
        };
        if !matches!(state, HttpState::Authorizing) {
            return;
        }
        *state = HttpState::AwaitRequest;
        self.on_http_request(conn, req, now_ms);
        self.drain_http(conn, now_ms);
    }

    pub(super) fn on_http_request(&mut self, conn: ConnId, req: Request, now_ms: u64) {
        let ask = Ask::of(&req);
        if req.method == "OPTIONS" {
            return self.reply(
                conn,
                ask,
                http::cors_preflight_response(),
                "preflight",
                now_ms,
            );
        }
        let segments = match http::split_path(&req.path) {
            Ok(s) => s,
            Err(_) => return self.http_error(conn, 400, "bad path", now_ms),
        };
        let (handler, params) = match route(&req.method, &segments, ask) {
            Routing::Found(handler, params) => (handler, params),
            Routing::Refused(response, ask) => {
                let reason = format!("refused: {}", response.status);
                return self.reply(conn, ask, response, &reason, now_ms);
            }
        };
        // With its own listener, the API and the web UI are not on the others.
        let on_api_listener = self.conns.get(&conn).is_some_and(|c| {
            matches!(
                c.kind,
                ConnKind::Http {
                    api_listener: true,
                    ..
                }
            )
        });
        let api_or_ui = handler.api_kind() != ApiKind::Open || handler == Handler::WebUi;
        if self.config.api.own_listener && !on_api_listener && api_or_ui {
            let response = Response::text(404, "not found");
            return self.reply(conn, ask, response, "not found", now_ms);
        }
        let unix_s = self.wall_ms(now_ms) / 1000;
        if !self.config.api.allows(handler.api_kind(), &req, unix_s) {
            let response = Response::text(401, "unauthorized: a bearer token or JWT is needed")
                .header("WWW-Authenticate", "Bearer");
            return self.reply(conn, ask, response, "api: unauthorized", now_ms);
        }
        let query = match handler {
            Handler::LalInfo => Query::LalInfo,
            Handler::AllGroups => Query::AllGroups,
            Handler::Group => Query::Group(
                req.query_param("stream_name")
                    .unwrap_or_default()
                    .to_owned(),
            ),
            Handler::Metrics => Query::Metrics,
            Handler::Cluster => Query::Cluster,
            Handler::Reload => return self.ask_reload(conn, ask),
            Handler::KickSession | Handler::StartRelayPull | Handler::StartRelayPush => {
                let parsed = match handler {
                    Handler::KickSession => kick_session_query(&req.body),
                    Handler::StartRelayPull => lal::start_relay_pull_query(&req.body),
                    _ => lal::start_relay_push_query(&req.body),
                };
                match parsed {
                    Ok(query) => query,
                    Err(json) => {
                        return self.reply(conn, ask, Response::json(200, json), "api", now_ms)
                    }
                }
            }
            Handler::StopRelayPull | Handler::StopRelayPush => {
                let name = req.query_param("stream_name").unwrap_or_default();
                if name.is_empty() {
                    let json = lal::error_json(lal::ERROR_CODE_PARAM_MISSING, "param missing");
                    return self.reply(conn, ask, Response::json(200, json), "api", now_ms);
                }
                let stream_name = name.to_owned();
                if handler == Handler::StopRelayPull {
                    Query::StopRelayPull(stream_name)
                } else {
                    let url = req.query_param("url").unwrap_or_default().to_owned();
                    Query::StopRelayPush { stream_name, url }
                }
            }
            Handler::LivegoControl { pull } => {
                let param = |k: &str| req.query_param(k).unwrap_or_default().to_owned();
                let control = livego::Control {
                    pull,
                    stop: param("oper") == "stop",
                    app: param("app"),
                    name: param("name"),
                    url: param("url"),
                };
                if control.app.is_empty() || control.name.is_empty() || control.url.is_empty() {
                    let response = livego::reply(400, livego::PARAM_ERROR);
                    return self.reply(conn, ask, response, "api", now_ms);
                }
                Query::Livego(control)
            }
            Handler::AddIpBlacklist => return self.add_ip_blacklist(conn, &req, ask, now_ms),
            Handler::RoomKey { op } => return self.room_key_request(conn, &req, op, ask, now_ms),
            Handler::LivegoStat => Query::LivegoStat,
            Handler::ServerInfo | Handler::WebUi => {
                let ui = &self.config.ui;
                let response = match handler {
                    _ if !ui.enable => Response::text(404, "not found"),
                    Handler::ServerInfo => Response::json(200, webui::server_json(&ui.listening)),
                    _ => {
                        webui::asset(&req.path).unwrap_or_else(|| Response::text(404, "not found"))
                    }
                };
                return self.reply(conn, ask, response, "web ui", now_ms);
            }
            Handler::Media { format } => {
                return self.on_media_request(conn, &req, ask, &params, format, now_ms)
            }
            Handler::LlPlaylist | Handler::LlFile => {
                let Some(r) = routes::ll_request(handler, &params) else {
                    let response = Response::text(404, "not found");
                    return self.reply(conn, ask, response, "not found", now_ms);
                };
                return self.on_ll_request(conn, &req, ask, r, now_ms);
            }
            Handler::HlsLive
            | Handler::HlsRecord
            | Handler::HlsSegment
            | Handler::HlsFmp4Segment
            | Handler::HlsInit => {
                let Some(r) = routes::hls_request(handler, &params) else {
                    let response = Response::text(404, "not found");
                    return self.reply(conn, ask, response, "not found", now_ms);
                };
                return self.on_hls_request(conn, &req, ask, r, now_ms);
            }
        };
        self.gather(conn, query, ask);
    }

    /// `/{app}/{stream}.flv`, `.ts` or `.mp4`: a player (plain, or a WebSocket upgrade), or
    /// for `HEAD` the head alone.
    fn on_media_request(
        &mut self,
        conn: ConnId,
        req: &Request,
        ask: Ask,
        params: &Params<'_>,
        media: MediaFormat,
        now_ms: u64,
    ) {
        let key = params
            .get("app")
            .zip(params.get("stream"))
            .and_then(|(app, stream)| StreamKey::new(app, stream));
        let Some(key) = key else {
            return self.reply(
                conn,
                ask,
                Response::text(404, "not found"),
                "not found",
                now_ms,
            );
        };
        let ws = req.is_websocket_upgrade();
        let (access, protocol, format) = match (media, ws) {
            (MediaFormat::Flv, false) => {
                (Access::PlayHttpFlv, Protocol::HttpFlv, PlayerFormat::Flv)
            }
            (MediaFormat::Flv, true) => (Access::PlayHttpFlv, Protocol::WsFlv, PlayerFormat::WsFlv),
            (MediaFormat::Ts, false) => (Access::PlayHttpTs, Protocol::HttpTs, PlayerFormat::Ts),
            (MediaFormat::Ts, true) => (Access::PlayHttpTs, Protocol::WsTs, PlayerFormat::WsTs),
            // fMP4 players are checked like FLV players: the same kind of endless stream.
            (MediaFormat::Fmp4, false) => {
                (Access::PlayHttpFlv, Protocol::HttpFmp4, PlayerFormat::Fmp4)
            }
            (MediaFormat::Fmp4, true) => {
                (Access::PlayHttpFlv, Protocol::WsFmp4, PlayerFormat::WsFmp4)
            }
        };
        match self.check_access_http(conn, access, protocol, &key, req, now_ms) {
            Ok(true) => {}
            Ok(false) => return self.hold_http(conn),
            Err(reason) => {
                let response = Response::text(403, reason.clone());
                return self.reply(conn, ask.closing(), response, &reason, now_ms);
            }
        }
        if ask.head_only {
            return self.stream_head(conn, &key, format, ask, now_ms);
        }
        if ws {
            let mut out = BytesMut::with_capacity(256);
            if let Err(e) = websocket::upgrade_response(req, &mut out) {
                return self.http_error(conn, e.status(), &e.to_string(), now_ms);
            }
            let ws_max = self.config.ws_max_frame;
            if let Some(c) = self.conns.get_mut(&conn) {
                c.pending.push_back(out.freeze());
                if let ConnKind::Http { reader, ws, .. } = &mut c.kind {
                    let mut w = WsReader::new(ws_max);
                    w.push(&reader.take_remaining());
                    *ws = Some(Box::new(w));
                }
            }
            self.want_transmit(conn);
        }
        let enhanced = match req.query_param("enhanced") {
            Some("1" | "true") => true,
            Some("0" | "false") => false,
            _ => self.config.flv_enhanced,
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stream = Some(key.clone());
            c.enhanced_flv = enhanced;
            if let ConnKind::Http { state, .. } = &mut c.kind {
                *state = HttpState::Waiting { format };
            }
        }
        if let Some(m) = self
            .demand
            .player_wants(&key, demand::Wants::of_player(format), now_ms)
        {
            self.outputs.push_back(Output::Broadcast(m));
        }
        let relayed = req.query_param(relay::RELAY_PARAM).is_some();
        if self.play_or_pull(&key, conn, relayed, now_ms) == PlayState::Playing {
            self.start_player(conn, now_ms);
        }
    }

    /// `HEAD` for a stream: the head a `GET` would start with if the stream is live (or in
    /// its grace period), 404 otherwise; never a body, and the connection is not a player.
    fn stream_head(
        &mut self,
        conn: ConnId,
        key: &str,
        format: PlayerFormat,
        ask: Ask,
        now_ms: u64,
    ) {
        let live = self
            .hub
            .streams()
            .any(|s| s.name == key && (s.publisher.is_some() || s.grace_until_ms.is_some()));
        if !live {
            let response = Response::text(404, "stream not found");
            return self.reply(conn, ask, response, "stream not found", now_ms);
        }
        let content_type = format.content_type();
        let mut out = BytesMut::with_capacity(256);
        http::streaming_head_only(content_type, ask.keep_alive, &mut out);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.pending.push_back(out.freeze());
        }
        self.want_transmit(conn);
        if !ask.keep_alive {
            self.close(conn, true, "stream head", now_ms);
        }
    }

    fn on_hls_request(
        &mut self,
        conn: ConnId,
        req: &Request,
        ask: Ask,
        r: HlsRequest<'_>,
        now_ms: u64,
    ) {
        let (app, stream) = match r {
            HlsRequest::Live { app, stream }
            | HlsRequest::Record { app, stream }
            | HlsRequest::Segment { app, stream, .. }
            | HlsRequest::Fmp4Segment { app, stream, .. }
            | HlsRequest::Init { app, stream, .. } => (app, stream),
        };
        // Playlists need the secret when configured; segments never do (their URLs come from
        // the playlist, without its query).
        if let (HlsRequest::Live { .. } | HlsRequest::Record { .. }, Some(key)) =
            (r, StreamKey::new(app, stream))
        {
            match self.check_access_http(conn, Access::PlayHls, Protocol::Http, &key, req, now_ms) {
                Ok(true) => {}
                Ok(false) => return self.hold_http(conn),
                Err(reason) => {
                    let response = Response::text(403, reason.clone());
                    return self.reply(conn, ask.closing(), response, &reason, now_ms);
                }
            }
        }
        if let (HlsRequest::Live { .. }, Some(key)) = (r, StreamKey::new(app, stream)) {
            let relayed = req.query_param(relay::RELAY_PARAM).is_some();
            self.relay_wanted_by_hls(&key, relayed, now_ms);
        }
        let fmp4 = self.hls.config().segment_format == SegmentFormat::Fmp4;
        let found = StreamKey::new(app, stream).and_then(|key| match r {
            HlsRequest::Live { .. } => self.hls.live_playlist(&key).map(Ok),
            HlsRequest::Record { .. } => self.hls.record_playlist(&key).map(Ok),
            HlsRequest::Segment { seq, .. } if !fmp4 => self
                .hls
                .segment(&key, seq)
                .map(|parts| Err((parts, "video/mp2t"))),
            HlsRequest::Fmp4Segment { seq, .. } if fmp4 => self
                .hls
                .segment(&key, seq)
                .map(|parts| Err((parts, "video/mp4"))),
            HlsRequest::Init { id, .. } if fmp4 => self
                .hls
                .init_segment(&key, id)
                .map(|init| Err((vec![init], "video/mp4"))),
            _ => None,
        });
        match found {
            None => self.reply(
                conn,
                ask,
                Response::text(404, "not found"),
                "not found",
                now_ms,
            ),
            Some(Ok(playlist)) => {
                let response = Response::new(200)
                    .header("Cache-Control", "no-cache")
                    .body("application/vnd.apple.mpegurl", playlist);
                self.reply(conn, ask, response, "hls playlist", now_ms);
            }
            Some(Err((parts, content_type))) => {
                let len = parts.iter().map(|p| p.len()).sum();
                let response = Response::new(200).header("Content-Type", content_type);
                let sized = sized_head(&response, len);
                let keep = ask.keep_alive && sized.is_some();
                let head = sized.unwrap_or_else(|| {
                    let mut head = BytesMut::with_capacity(256);
                    http::streaming_response_head(content_type, false, &mut head);
                    head.freeze()
                });
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.pending.push_back(head);
                    if !ask.head_only {
                        c.pending.extend(parts);
                    }
                }
                self.want_transmit(conn);
                if !keep {
                    self.close(conn, true, "hls segment", now_ms);
                }
            }
        }
    }

    pub(super) fn drain_ws(&mut self, conn: ConnId, now_ms: u64) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let ConnKind::Http { ws: Some(ws), .. } = &mut c.kind else {
                return;
            };
            match ws.poll_frame() {
                Ok(Some(frame)) => match frame.opcode {
                    // Answer pings only while few replies are waiting: a peer that pings without
                    // reading cannot make the server queue pongs without bound (RFC 6455 lets an
                    // endpoint answer only the most recent ping).
                    Opcode::Ping if c.pending.len() >= MAX_PENDING_CONTROL => {}
                    Opcode::Ping => {
                        let mut out = BytesMut::with_capacity(frame.payload.len() + 10);
                        websocket::write_frame_header(
                            Opcode::Pong,
                            true,
                            frame.payload.len(),
                            &mut out,
                        );
                        out.extend_from_slice(&frame.payload);
                        c.pending.push_back(out.freeze());
                        self.want_transmit(conn);
                    }
                    Opcode::Close => {
                        let mut out = BytesMut::with_capacity(16);
                        websocket::close_frame(1000, "", &mut out);
                        c.pending.push_back(out.freeze());
                        return self.close(conn, true, "websocket closed by peer", now_ms);
                    }
                    _ => {}
                },
                Ok(None) => return,
                Err(e) => {
                    let mut out = BytesMut::with_capacity(64);
                    websocket::close_frame(1002, "protocol error", &mut out);
                    c.pending.push_back(out.freeze());
                    return self.close(conn, true, &e.to_string(), now_ms);
                }
            }
        }
    }
}

/// The head of `response` announcing a body of `len` bytes that the caller sends in pieces.
///
/// [`Response::encode_head`] sizes the head by the response's own body; for an empty body it
/// ends with `Content-Length: 0` and the blank line, which is replaced here. `None` if the
/// encoder ever writes something else (the caller then sends a close-delimited body).
pub(super) fn sized_head(response: &Response, len: usize) -> Option<bytes::Bytes> {
    use std::fmt::Write as _;
    const TAIL: &[u8] = b"Content-Length: 0\r\n\r\n";
    let mut out = BytesMut::with_capacity(320);
    response.encode_head(&mut out);
    if !out.ends_with(TAIL) {
        return None;
    }
    out.truncate(out.len() - TAIL.len());
    // Writing to a BytesMut cannot fail.
    let _ = write!(out, "Content-Length: {len}\r\n\r\n");
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_head_announces_the_body_length() {
        let r = Response::new(200).header("Content-Type", "video/mp2t");
        let head = sized_head(&r, 376).expect("the encoder's head ends as expected");
        let text = std::str::from_utf8(&head).unwrap();
        assert!(text.ends_with("Content-Length: 376\r\n\r\n"), "{text}");
        assert!(text.contains("Access-Control-Allow-Origin: *"));
        assert_eq!(text.matches("Content-Length").count(), 1);
    }
}

#[cfg(test)]
pub(super) mod head_tests {
    use crate::engine::{ConnId, Engine, EngineConfig, Listener};
    use crate::rtmp::client::{ClientConfig, ClientSession};

    const PUBLISHER: ConnId = 1;
    const PLAYER: ConnId = 2;

    /// Publishes `live/{name}` over RTMP on connection `conn` of `e`.
    pub(in crate::engine) fn publish(e: &mut Engine, conn: ConnId, name: &str) {
        e.handle_accept(conn, Listener::Rtmp, "127.0.0.1:40000".parse().unwrap(), 0);
        let config = ClientConfig::new("live", "rtmp://127.0.0.1/live");
        let mut client = ClientSession::new(config, &[3; 1536], 0);
        client.publish(name);
        for _ in 0..16 {
            while let Some(b) = client.poll_transmit() {
                e.handle_input(conn, &b, 0);
            }
            while e.poll_output().is_some() {}
            let mut out = Vec::new();
            e.poll_transmit(conn, usize::MAX, &mut out);
            client.handle_input(&out.concat(), 0).unwrap();
            while client.poll_event().is_some() {}
        }
        let key = format!("live/{name}");
        assert_eq!(
            e.hub().stream_of_publisher(conn).map(|k| k.as_str()),
            Some(key.as_str())
        );
    }

    /// An engine with `live/s` published over RTMP.
    fn engine_with_stream() -> Engine {
        let mut e = Engine::new(EngineConfig::default(), 7);
        publish(&mut e, PUBLISHER, "s");
        e
    }

    /// Everything the engine has for the player connection after `input`, and whether it asked
    /// to close it.
    fn exchange(e: &mut Engine, input: &str, now: u64) -> (String, bool) {
        e.handle_input(PLAYER, input.as_bytes(), now);
        let outputs: Vec<_> = std::iter::from_fn(|| e.poll_output()).collect();
        let closed = outputs
            .iter()
            .any(|o| matches!(o, crate::engine::Output::Close { conn, .. } if *conn == PLAYER));
        let mut out = Vec::new();
        e.poll_transmit(PLAYER, usize::MAX, &mut out);
        (String::from_utf8_lossy(&out.concat()).into_owned(), closed)
    }

    #[test]
    fn head_of_a_live_stream_gets_the_head_only_and_the_connection_goes_on() {
        for (path, content_type) in [
            ("/live/s.flv", "video/x-flv"),
            ("/live/s.ts", "video/mp2t"),
            ("/live/s.mp4", "video/mp4"),
        ] {
            let mut e = engine_with_stream();
            e.handle_accept(
                PLAYER,
                Listener::Http,
                "127.0.0.1:40001".parse().unwrap(),
                0,
            );
            let (text, closed) = exchange(
                &mut e,
                &format!("HEAD {path} HTTP/1.1\r\nHost: h\r\n\r\n"),
                1,
            );
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {text:?}");
            assert!(text.contains(content_type), "{path}: {text:?}");
            assert!(
                text.ends_with("\r\n\r\n"),
                "{path}: nothing after the head: {text:?}"
            );
            assert!(!text.contains("FLV"), "{path}: {text:?}");
            assert!(!closed, "{path}: keep-alive");
            assert_eq!(e.hub().player_count(), 0, "{path}: HEAD does not play");
            // The connection reads its next request.
            let (text, _) = exchange(
                &mut e,
                "GET /nope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                2,
            );
            assert!(text.starts_with("HTTP/1.1 404"), "{path}: {text:?}");
        }
    }

    #[test]
    fn a_request_pipelined_behind_a_closing_answer_is_not_served() {
        let mut e = engine_with_stream();
        e.handle_accept(
            PLAYER,
            Listener::Http,
            "127.0.0.1:40001".parse().unwrap(),
            0,
        );
        let (text, closed) = exchange(
            &mut e,
            "HEAD /live/s.flv HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n\
             GET /live/s.flv HTTP/1.1\r\nHost: h\r\n\r\n",
            1,
        );
        assert_eq!(text.matches("HTTP/1.1 200").count(), 1, "{text:?}");
        assert!(!text.contains("FLV"), "{text:?}");
        assert!(closed);
        assert_eq!(e.hub().player_count(), 0, "no player left behind");
    }

    #[test]
    fn head_of_a_missing_stream_is_404_at_once() {
        let mut e = Engine::new(EngineConfig::default(), 7);
        e.handle_accept(
            PLAYER,
            Listener::Http,
            "127.0.0.1:40001".parse().unwrap(),
            0,
        );
        let (text, closed) = exchange(
            &mut e,
            "HEAD /live/none.flv HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            1,
        );
        assert!(text.starts_with("HTTP/1.1 404"), "{text:?}");
        assert!(text.ends_with("\r\n\r\n"), "no body: {text:?}");
        assert!(closed);
    }

    /// A fresh engine with one HTTP connection, `PLAYER`.
    fn http_engine() -> Engine {
        let mut e = Engine::new(EngineConfig::default(), 7);
        e.handle_accept(
            PLAYER,
            Listener::Http,
            "127.0.0.1:40001".parse().unwrap(),
            0,
        );
        e
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
        let mut e = http_engine();
        let (text, closed) = exchange(
            &mut e,
            "POST /nope HTTP/1.1\r\nContent-Length: 2\r\n\r\nab",
            1,
        );
        assert!(text.starts_with("HTTP/1.1 404"), "{text}");
        assert!(!closed, "404 keeps the connection");
        let (text, closed) = exchange(
            &mut e,
            "POST /live/s.flv HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            2,
        );
        assert!(text.starts_with("HTTP/1.1 405"), "{text}");
        assert!(text.contains("Allow: GET, HEAD, OPTIONS\r\n"), "{text}");
        assert!(closed);

        let mut e = http_engine();
        let (text, _) = exchange(&mut e, "GET /api/ctrl/kick_session HTTP/1.1\r\n\r\n", 1);
        assert!(text.starts_with("HTTP/1.1 405"), "{text}");
        assert!(text.contains("Allow: POST, OPTIONS\r\n"), "{text}");

        // A preflight is answered on any path, and keeps the connection.
        let mut e = http_engine();
        let (text, _) = exchange(&mut e, "PUT /anything HTTP/1.1\r\n\r\n", 1);
        assert!(
            text.starts_with("HTTP/1.1 405"),
            "an unknown method: {text}"
        );
        assert!(
            text.contains("Allow: GET, HEAD, POST, OPTIONS\r\n"),
            "{text}"
        );
        let mut e = http_engine();
        let (text, closed) = exchange(&mut e, "OPTIONS /anything HTTP/1.1\r\n\r\n", 1);
        assert!(text.starts_with("HTTP/1.1 204"), "{text}");
        assert!(!closed);
    }

    #[test]
    fn expect_100_continue_is_answered_before_the_body_or_refused_without_it() {
        let mut e = http_engine();
        let head = "POST /api/ctrl/kick_session HTTP/1.1\r\nExpect: 100-continue\r\n\
                    Content-Length: 2\r\n\r\n";
        let (text, closed) = exchange(&mut e, head, 1);
        assert_eq!(text, "HTTP/1.1 100 Continue\r\n\r\n");
        assert!(!closed);
        // The body: not lal's JSON, so lal's "param missing" at once.
        let (text, closed) = exchange(&mut e, "{}", 2);
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.contains(r#""error_code":1002"#), "{text}");
        assert!(!closed);

        for (head, status) in [
            ("POST /nope HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", "404"),
            ("POST /live/s.flv HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", "405"),
            ("POST /api/ctrl/kick_session HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n", "413"),
            ("POST /api/ctrl/kick_session HTTP/1.1\r\nExpect: later\r\nContent-Length: 5\r\n\r\n", "417"),
            ("POST /api/ctrl/kick_session HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "411"),
        ] {
            let mut e = http_engine();
            let (text, closed) = exchange(&mut e, head, 1);
            assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{head}: {text}");
            assert!(!text.contains("100 Continue"), "{head}: {text}");
            assert!(closed, "{head}");
        }
    }
}
