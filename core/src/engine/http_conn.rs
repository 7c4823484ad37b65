//! The engine's HTTP side: requests routed to HTTP-FLV and WebSocket-FLV players.

use bytes::BytesMut;

use super::{stream_key, ConnId, ConnKind, Engine, HttpState, PlayerFormat};
use crate::http::websocket::{self, Opcode, WsReader};
use crate::http::{self, Request, Response};
use crate::hub::PlayState;

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
                Ok(Some(req)) => self.on_http_request(conn, req, now_ms),
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
        let segments = match http::split_path(&req.path) {
            Ok(s) => s,
            Err(_) => return self.http_error(conn, 400, "bad path", now_ms),
        };
        let target = match segments.as_slice() {
            [app, file] => file.strip_suffix(".flv").and_then(|s| stream_key(app, s)),
            _ => None,
        };
        let Some(key) = target else {
            let keep = req.keep_alive();
            return self.http_respond(
                conn,
                Response::text(404, "not found"),
                keep,
                "not found",
                now_ms,
            );
        };
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
            PlayerFormat::WsFlv
        } else {
            PlayerFormat::Flv
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stream = key.clone();
            if let ConnKind::Http { state, .. } = &mut c.kind {
                *state = HttpState::Waiting { format };
            }
        }
        if self.hub.play(&key, conn, now_ms) == PlayState::Playing {
            self.start_player(conn, now_ms);
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
