//! Low-Latency HLS over the engine's HTTP connections: the playlist with blocking reload, and
//! init segments, segments and parts served from memory as shared pieces.
//!
//! A blocking request (`_HLS_msn`/`_HLS_part` ahead of the stream, or the part the preload
//! hint names) leaves its connection in [`HttpState::Held`]: nothing but that state and the
//! window's small entry and deadline ([`crate::hls::ll`]). The window releases it when the
//! part or segment completes (in the same step as the frame that completed it), when its
//! deadline passes, or when the stream ends; [`Engine::answer_held`] then answers and reads
//! the requests pipelined behind it.

use bytes::{Bytes, BytesMut};

use super::http_conn::{sized_head, Ask};
use super::{demand, ConnId, ConnKind, Engine, HttpState, Output, Protocol};
use crate::auth::Access;
use crate::hls::ll::{decimal, Blocking, LlRequest, PartAnswer};
use crate::http::{Request, Response};
use crate::stream_key::StreamKey;

/// What a held request waits to be answered with.
#[derive(Clone, Copy, Debug)]
pub(super) enum HeldLl {
    /// The playlist (the delta update when `skip`).
    Playlist {
        /// `_HLS_skip=YES` or `v2`.
        skip: bool,
    },
    /// A part (the one being built when the request came).
    Part {
        /// Media sequence number.
        msn: u64,
        /// Part index.
        part: u64,
    },
}

/// Content types of what is served here.
const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
const MEDIA_TYPE: &str = "video/mp4";

impl Engine {
    /// A Low-Latency HLS request (see [`super::routes`]).
    pub(super) fn on_ll_request(
        &mut self,
        conn: ConnId,
        req: &Request,
        ask: Ask,
        r: LlRequest<'_>,
        now_ms: u64,
    ) {
        let (app, stream) = r.names();
        let Some(key) = StreamKey::new(app, stream) else {
            return self.reply(
                conn,
                ask,
                Response::text(404, "not found"),
                "not found",
                now_ms,
            );
        };
        match r {
            LlRequest::Playlist { .. } => self.ll_playlist_request(conn, req, ask, key, now_ms),
            LlRequest::Init { generation, .. } => match self.hls.ll().init(&key, generation) {
                Some(init) => self.send_pieces(conn, ask, vec![init], "ll init", now_ms),
                None => self.reply(
                    conn,
                    ask,
                    Response::text(404, "not found"),
                    "not found",
                    now_ms,
                ),
            },
            LlRequest::Segment { msn, .. } => match self.hls.ll().segment(&key, msn) {
                Some(pieces) => self.send_pieces(conn, ask, pieces, "ll segment", now_ms),
                None => self.reply(
                    conn,
                    ask,
                    Response::text(404, "not found"),
                    "not found",
                    now_ms,
                ),
            },
            LlRequest::Part { msn, part, .. } => {
                match self.hls.ll().part(&key, msn, part, conn, now_ms) {
                    PartAnswer::Found(pieces) => {
                        self.send_pieces(conn, ask, pieces, "ll part", now_ms)
                    }
                    PartAnswer::Held => self.hold_ll(conn, ask, key, HeldLl::Part { msn, part }),
                    PartAnswer::NotFound => self.reply(
                        conn,
                        ask,
                        Response::text(404, "not found"),
                        "not found",
                        now_ms,
                    ),
                }
            }
        }
    }

    /// With on-demand windows, an authorized playlist request makes `key`'s windows wanted
    /// (every engine's starts at the next random access point) until
    /// [`crate::hls::ll::ON_DEMAND_IDLE_MS`] pass without one (see [`super::demand`]). Only
    /// the playlist counts: it carries the access check, and a Low-Latency player reloads it
    /// about every part.
    fn ll_wanted(&mut self, key: &StreamKey, now_ms: u64) {
        if !self.hls.config().ll_on_demand || !self.hls.ll().note_request(key, now_ms) {
            return;
        }
        if let Some(m) = self.demand.player_wants(key, demand::Wants::LL, now_ms) {
            self.outputs.push_back(Output::Broadcast(m));
        }
    }

    fn ll_playlist_request(
        &mut self,
        conn: ConnId,
        req: &Request,
        ask: Ask,
        key: StreamKey,
        now_ms: u64,
    ) {
        match self.check_access_http(conn, Access::PlayHls, Protocol::Http, &key, req, now_ms) {
            Ok(true) => self.ll_wanted(&key, now_ms),
            Ok(false) => return self.hold_http(conn),
            Err(reason) => {
                let response = Response::text(403, reason.clone());
                return self.reply(conn, ask.closing(), response, &reason, now_ms);
            }
        }
        let number = |name: &str| req.query_param(name).map(|v| decimal(v).ok_or(()));
        let (Ok(msn), Ok(part)) = (
            number("_HLS_msn").transpose(),
            number("_HLS_part").transpose(),
        ) else {
            let response = Response::text(400, "bad _HLS_msn or _HLS_part");
            return self.reply(conn, ask, response, "bad request", now_ms);
        };
        let skip = matches!(req.query_param("_HLS_skip"), Some("YES" | "v2"));
        match self.hls.ll().block(&key, msn, part, conn, now_ms) {
            Blocking::Ready => self.send_ll_playlist(conn, ask, &key, skip, now_ms),
            Blocking::Held => self.hold_ll(conn, ask, key, HeldLl::Playlist { skip }),
            Blocking::BadRequest => {
                let response = Response::text(400, "_HLS_msn/_HLS_part too far ahead");
                self.reply(conn, ask, response, "bad request", now_ms)
            }
            Blocking::NotFound => self.reply(
                conn,
                ask,
                Response::text(404, "not found"),
                "not found",
                now_ms,
            ),
        }
    }

    fn hold_ll(&mut self, conn: ConnId, ask: Ask, key: StreamKey, what: HeldLl) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if let ConnKind::Http { state, .. } = &mut c.kind {
                *state = HttpState::Held {
                    ask,
                    key: Box::new(key),
                    what,
                };
            }
        }
    }

    /// Answers the held requests the Low-Latency HLS windows released.
    pub(super) fn answer_held(&mut self, now_ms: u64) {
        while let Some(conn) = self.hls.ll().poll_ready() {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            let ConnKind::Http { state, .. } = &mut c.kind else {
                continue;
            };
            if !matches!(state, HttpState::Held { .. }) {
                continue;
            }
            let HttpState::Held { ask, key, what } =
                std::mem::replace(state, HttpState::AwaitRequest)
            else {
                continue;
            };
            match what {
                HeldLl::Playlist { skip } => self.send_ll_playlist(conn, ask, &key, skip, now_ms),
                HeldLl::Part { msn, part } => {
                    match self.hls.ll().part(&key, msn, part, conn, now_ms) {
                        PartAnswer::Found(pieces) => {
                            self.send_pieces(conn, ask, pieces, "ll part", now_ms)
                        }
                        // Released without the part (its time is up, or the segment ended
                        // before it): not held twice.
                        PartAnswer::Held | PartAnswer::NotFound => {
                            self.hls.ll().cancel(conn);
                            let response = Response::text(404, "not found");
                            self.reply(conn, ask, response, "not found", now_ms)
                        }
                    }
                }
            }
            if ask.keep_alive {
                // Requests pipelined behind this one waited in the reader.
                self.drain_http(conn, now_ms);
            }
        }
    }

    fn send_ll_playlist(&mut self, conn: ConnId, ask: Ask, key: &str, skip: bool, now_ms: u64) {
        match self.hls.ll().playlist(key, skip) {
            Some(playlist) => {
                let response = Response::new(200)
                    .header("Cache-Control", "no-cache")
                    .body(PLAYLIST_TYPE, playlist);
                self.reply(conn, ask, response, "ll playlist", now_ms);
            }
            None => self.reply(
                conn,
                ask,
                Response::text(404, "not found"),
                "not found",
                now_ms,
            ),
        }
    }

    /// A sized `video/mp4` answer whose body is `pieces` (shared, not copied).
    fn send_pieces(&mut self, conn: ConnId, ask: Ask, pieces: Vec<Bytes>, what: &str, now_ms: u64) {
        let len = pieces.iter().map(Bytes::len).sum();
        let response = Response::new(200).header("Content-Type", MEDIA_TYPE);
        let sized = sized_head(&response, len);
        let keep = ask.keep_alive && sized.is_some();
        let head = sized.unwrap_or_else(|| {
            let mut head = BytesMut::with_capacity(256);
            crate::http::streaming_response_head(MEDIA_TYPE, false, &mut head);
            head.freeze()
        });
        if let Some(c) = self.conns.get_mut(&conn) {
            c.pending.push_back(head);
            if !ask.head_only {
                c.pending.extend(pieces);
            }
        }
        self.want_transmit(conn);
        if !keep {
            self.close(conn, true, what, now_ms);
        }
    }
}
