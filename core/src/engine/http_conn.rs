//! The engine's HTTP side: requests routed to HTTP-FLV, WebSocket-FLV, HTTP-TS and WebSocket-TS
//! players, and HLS playlists and segments.
//!
//! Routes (names validated as stream names before anything else looks at them):
//! `/{app}/{stream}.flv` and `/{app}/{stream}.ts` (plain or WebSocket upgrade),
//! `/{app}/{stream}.m3u8`, `/{app}/{stream}/record.m3u8`, `/{app}/{stream}/{n}.ts`; and the
//! statistics API (`/api/stat/lal_info`, `/api/stat/all_group`, `/api/stat/group`, `/metrics`),
//! answered by the runtime through [`super::Output::StatsRequest`].
//! Playlists and segments answer with a sized body and keep the connection; a segment's body is
//! its shared pieces (no copy).

use bytes::BytesMut;

use super::{ConnId, ConnKind, Engine, HttpState, PlayerFormat, Protocol, StatsRequest};
use crate::auth::{Access, SECRET_PARAM};
use crate::hls::{self, HlsRequest};
use crate::http::websocket::{self, Opcode, WsReader};
use crate::http::{self, Request, Response};
use crate::hub::PlayState;
use crate::stream_key::StreamKey;

/// Most replies (pongs) queued for a WebSocket peer before further pings go unanswered.
const MAX_PENDING_CONTROL: usize = 8;

impl Engine {
    pub(super) fn drain_http(&mut self, conn: ConnId, now_ms: u64) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
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
                Ok(None) => return,
                Err(e) => return self.http_error(conn, e.status(), &e.to_string(), now_ms),
            }
        }
    }

    pub(super) fn http_respond(
        &mut self,
        conn: ConnId,
        response: Response,
        keep_alive: bool,
        reason: &str,
        now_ms: u64,
    ) {
        let mut out = BytesMut::with_capacity(256 + response.body.len());
        response.encode(&mut out);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.pending.push_back(out.freeze());
        }
        self.want_transmit(conn);
        if !keep_alive {
            if let Some(c) = self.conns.get_mut(&conn) {
                if let ConnKind::Http { state, .. } = &mut c.kind {
                    *state = HttpState::Done;
                }
            }
            self.close(conn, true, reason, now_ms);
        }
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

    pub(super) fn on_http_request(&mut self, conn: ConnId, req: Request, now_ms: u64) {
        if req.method == "OPTIONS" {
            let keep = req.keep_alive();
            return self.http_respond(
                conn,
                http::cors_preflight_response(),
                keep,
                "preflight",
                now_ms,
            );
        }
        if req.method != "GET" && req.method != "HEAD" {
            return self.http_error(conn, 405, "method not allowed", now_ms);
        }
        if let Some(request) = StatsRequest::from_path(&req.path, req.query_param("stream_name")) {
            let head_only = req.method == "HEAD";
            return self.request_stats(conn, request, req.keep_alive(), head_only);
        }
        let segments = match http::split_path(&req.path) {
            Ok(s) => s,
            Err(_) => return self.http_error(conn, 400, "bad path", now_ms),
        };
        let play = match segments.as_slice() {
            [app, file] => file
                .strip_suffix(".flv")
                .map(|s| (s, false))
                .or_else(|| file.strip_suffix(".ts").map(|s| (s, true)))
                .and_then(|(s, ts)| Some((StreamKey::new(app, s)?, ts))),
            _ => None,
        };
        if play.is_none() {
            if let Some(r) = hls::parse_path(&segments) {
                return self.on_hls_request(conn, &req, r, now_ms);
            }
        }
        let Some((key, ts)) = play else {
            let keep = req.keep_alive();
            return self.http_respond(
                conn,
                Response::text(404, "not found"),
                keep,
                "not found",
                now_ms,
            );
        };
        let (access, protocol) = match (ts, req.is_websocket_upgrade()) {
            (false, false) => (Access::PlayHttpFlv, Protocol::HttpFlv),
            (false, true) => (Access::PlayHttpFlv, Protocol::WsFlv),
            (true, false) => (Access::PlayHttpTs, Protocol::HttpTs),
            (true, true) => (Access::PlayHttpTs, Protocol::WsTs),
        };
        let secret = req.query_param(SECRET_PARAM);
        if let Err(reason) = self.check_access_secret(conn, access, protocol, &key, secret) {
            return self.http_error(conn, 403, &reason, now_ms);
        }
        let format = if req.is_websocket_upgrade() {
            let mut out = BytesMut::with_capacity(256);
            if let Err(e) = websocket::upgrade_response(&req, &mut out) {
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
            if ts {
                PlayerFormat::WsTs
            } else {
                PlayerFormat::WsFlv
            }
        } else if ts {
            PlayerFormat::Ts
        } else {
            PlayerFormat::Flv
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stream = Some(key.clone());
            if let ConnKind::Http { state, .. } = &mut c.kind {
                *state = HttpState::Waiting { format };
            }
        }
        if self.hub.play(&key, conn, now_ms) == PlayState::Playing {
            self.start_player(conn, now_ms);
        }
    }

    fn on_hls_request(&mut self, conn: ConnId, req: &Request, r: HlsRequest<'_>, now_ms: u64) {
        let keep = req.keep_alive();
        let head_only = req.method == "HEAD";
        let (app, stream) = match r {
            HlsRequest::Live { app, stream }
            | HlsRequest::Record { app, stream }
            | HlsRequest::Segment { app, stream, .. } => (app, stream),
        };
        // Playlists need the secret when configured; segments never do (their URLs come from
        // the playlist, without its query).
        if let (HlsRequest::Live { .. } | HlsRequest::Record { .. }, Some(key)) =
            (r, StreamKey::new(app, stream))
        {
            let secret = req.query_param(SECRET_PARAM);
            let checked =
                self.check_access_secret(conn, Access::PlayHls, Protocol::Http, &key, secret);
            if let Err(reason) = checked {
                return self.http_error(conn, 403, &reason, now_ms);
            }
        }
        let found = StreamKey::new(app, stream).and_then(|key| match r {
            HlsRequest::Live { .. } => self.hls.live_playlist(&key).map(Ok),
            HlsRequest::Record { .. } => self.hls.record_playlist(&key).map(Ok),
            HlsRequest::Segment { seq, .. } => self.hls.segment(&key, seq).map(Err),
        });
        match found {
            None => self.http_respond(
                conn,
                Response::text(404, "not found"),
                keep,
                "not found",
                now_ms,
            ),
            Some(Ok(playlist)) => {
                let response = Response::new(200)
                    .header("Cache-Control", "no-cache")
                    .body("application/vnd.apple.mpegurl", playlist);
                if head_only {
                    let mut out = BytesMut::with_capacity(256);
                    response.encode_head(&mut out);
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.pending.push_back(out.freeze());
                    }
                    self.want_transmit(conn);
                    if !keep {
                        self.close(conn, true, "hls playlist", now_ms);
                    }
                } else {
                    self.http_respond(conn, response, keep, "hls playlist", now_ms);
                }
            }
            Some(Err(parts)) => {
                let len = parts.iter().map(|p| p.len()).sum();
                let response = Response::new(200).header("Content-Type", "video/mp2t");
                let sized = sized_head(&response, len);
                let keep = keep && sized.is_some();
                let head = sized.unwrap_or_else(|| {
                    let mut head = BytesMut::with_capacity(256);
                    http::streaming_response_head("video/mp2t", false, &mut head);
                    head.freeze()
                });
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.pending.push_back(head);
                    if !head_only {
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
fn sized_head(response: &Response, len: usize) -> Option<bytes::Bytes> {
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
