//! The engine's RTMP side: server session events turned into hub operations.

use bytes::Bytes;

use super::callback::Resume;
use super::{relay, ConnId, ConnKind, Engine, Protocol, Role};
use crate::auth::Access;
use crate::flv;
use crate::hub::PlayState;
use crate::rtmp::command::code;
use crate::rtmp::connection::SessionError;
use crate::rtmp::message_type;
use crate::rtmp::server::{ServerEvent, ServerSession};
use crate::stream_key::{valid_name_segment, StreamKey};

impl Engine {
    pub(super) fn drain_rtmp(&mut self, conn: ConnId, now_ms: u64) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.closing {
                break;
            }
            let ConnKind::Rtmp { session, .. } = &mut c.kind else {
                return;
            };
            if let Some(event) = session.poll_event() {
                self.on_rtmp_event(conn, event, now_ms);
                continue;
            }
            // Requests are answered as their events are handled; what the answers set off in
            // the hub (players of a stream just published start) happens before the input
            // held back until then is decoded, as if it had come in a later read.
            self.drain_hub(now_ms);
            let Some(session) = self
                .conns
                .get_mut(&conn)
                .filter(|c| !c.closing)
                .and_then(|c| match &mut c.kind {
                    ConnKind::Rtmp { session, .. } => Some(session),
                    _ => None,
                })
            else {
                break;
            };
            if let Err(e) = session.resume() {
                return self.close(conn, false, &e.to_string(), now_ms);
            }
            let Some(event) = session.poll_event() else {
                break;
            };
            self.on_rtmp_event(conn, event, now_ms);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnKind::Rtmp { session, .. } = &mut c.kind else {
            return;
        };
        let mut any = false;
        while let Some(b) = session.poll_transmit() {
            c.pending.push_back(b);
            any = true;
        }
        if any {
            self.want_transmit(conn);
        }
    }

    pub(super) fn session_mut(&mut self, conn: ConnId) -> Option<&mut ServerSession> {
        match &mut self.conns.get_mut(&conn)?.kind {
            ConnKind::Rtmp { session, .. } => Some(session),
            _ => None,
        }
    }

    /// Answers a request of the connection's RTMP session with `accept_*` or `reject_*`. Their
    /// one error, "not pending", means the client withdrew the request (`deleteStream` or
    /// `closeStream` read along with it); the `PublishStopped` or `PlayStopped` event that
    /// follows undoes what the engine started, so the error is harmless and ignored.
    pub(super) fn answer_rtmp(
        &mut self,
        conn: ConnId,
        answer: impl FnOnce(&mut ServerSession) -> Result<(), SessionError>,
    ) {
        if let Some(s) = self.session_mut(conn) {
            let _ = answer(s);
        }
    }

    pub(super) fn on_rtmp_event(&mut self, conn: ConnId, event: ServerEvent, now_ms: u64) {
        match event {
            ServerEvent::ConnectRequest {
                app,
                tc_url,
                command_object,
            } => {
                // Enhanced RTMP clients list the FourCCs they read; others get legacy tags.
                let enhanced = command_object.get("fourCcList").is_some();
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.enhanced_flv = enhanced;
                }
                let ok = valid_name_segment(&app);
                self.notify_rtmp_connect(conn, &app, tc_url, &command_object, now_ms);
                if ok {
                    self.answer_rtmp(conn, ServerSession::accept_connect);
                } else {
                    self.answer_rtmp(conn, |s| s.reject_connect("invalid application name"));
                }
                if !ok {
                    self.close(conn, true, "connect rejected: invalid app name", now_ms);
                } else {
                    self.arm_timer(conn);
                }
            }
            ServerEvent::PublishRequest {
                stream_id,
                app,
                stream_name,
                query,
                ..
            } => self.on_rtmp_publish(conn, stream_id, &app, &stream_name, &query, now_ms),
            ServerEvent::PlayRequest {
                stream_id,
                app,
                stream_name,
                query,
                ..
            } => self.on_rtmp_play(conn, stream_id, &app, &stream_name, &query, now_ms),
            ServerEvent::Media {
                type_id,
                timestamp,
                payload,
                ..
            } => {
                self.on_rtmp_media(conn, type_id, timestamp, payload);
            }
            ServerEvent::Metadata {
                value, timestamp, ..
            } => self.publish_metadata(conn, &value, timestamp),
            ServerEvent::PublishStopped { .. } => {
                self.callbacks.withdraw(conn);
                self.end_publish(conn, now_ms);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.role = Role::None;
                    if let ConnKind::Rtmp { publish_id, .. } = &mut c.kind {
                        *publish_id = None;
                    }
                }
            }
            ServerEvent::PlayStopped { .. } => {
                self.callbacks.withdraw(conn);
                self.hub.stop_play(conn);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.role = Role::None;
                    c.writer = None;
                    if let ConnKind::Rtmp { play_id, .. } = &mut c.kind {
                        *play_id = None;
                    }
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_rtmp_publish(
        &mut self,
        conn: ConnId,
        stream_id: u32,
        app: &str,
        name: &str,
        query: &str,
        now_ms: u64,
    ) {
        let busy = self.conns.get(&conn).is_some_and(|c| c.role != Role::None);
        let Some(room) = self.publish_name(name) else {
            let reason = "publish refused: not a room key";
            self.answer_rtmp(conn, |s| {
                s.reject_publish(stream_id, code::PUBLISH_UNAUTHORIZED, reason)
            });
            self.close(conn, true, reason, now_ms);
            return;
        };
        let Some(key) = StreamKey::new(app, &room).filter(|_| !busy) else {
            self.answer_rtmp(conn, |s| {
                s.reject_publish(stream_id, code::PUBLISH_BAD_NAME, "invalid stream name")
            });
            self.close(conn, true, "publish rejected: invalid stream name", now_ms);
            return;
        };
        let resume = || Resume::RtmpPublish {
            stream_id,
            app: app.to_owned(),
            name: name.to_owned(),
            query: query.to_owned(),
        };
        match self.check_access(
            conn,
            Access::PublishRtmp,
            Protocol::Rtmp,
            &key,
            query,
            resume,
            now_ms,
        ) {
            Ok(true) => {}
            Ok(false) => return,
            Err(reason) => {
                self.answer_rtmp(conn, |s| {
                    s.reject_publish(stream_id, code::PUBLISH_UNAUTHORIZED, &reason)
                });
                self.close(conn, true, &reason, now_ms);
                return;
            }
        }
        match self.claim_stream(&key, conn, now_ms) {
            Ok(()) => {
                self.answer_rtmp(conn, |s| s.accept_publish(stream_id));
                if let Some(c) = self.conns.get_mut(&conn) {
                    if let ConnKind::Rtmp { publish_id, .. } = &mut c.kind {
                        *publish_id = Some(stream_id);
                    }
                }
                self.publish_started(conn, &key, Protocol::Rtmp, None, query, now_ms);
            }
            Err(e) => {
                self.answer_rtmp(conn, |s| {
                    s.reject_publish(stream_id, code::PUBLISH_BAD_NAME, &e.to_string())
                });
                self.close(conn, true, &format!("publish rejected: {e}"), now_ms);
            }
        }
    }

    pub(super) fn on_rtmp_play(
        &mut self,
        conn: ConnId,
        stream_id: u32,
        app: &str,
        name: &str,
        query: &str,
        now_ms: u64,
    ) {
        let busy = self.conns.get(&conn).is_some_and(|c| c.role != Role::None);
        let Some(key) = StreamKey::new(app, name).filter(|_| !busy) else {
            self.answer_rtmp(conn, |s| {
                s.reject_play(
                    stream_id,
                    code::PLAY_STREAM_NOT_FOUND,
                    "invalid stream name",
                )
            });
            self.close(conn, true, "play rejected: invalid stream name", now_ms);
            return;
        };
        let resume = || Resume::RtmpPlay {
            stream_id,
            app: app.to_owned(),
            name: name.to_owned(),
            query: query.to_owned(),
        };
        match self.check_access(
            conn,
            Access::PlayRtmp,
            Protocol::Rtmp,
            &key,
            query,
            resume,
            now_ms,
        ) {
            Ok(true) => {}
            Ok(false) => return,
            Err(reason) => {
                self.answer_rtmp(conn, |s| {
                    s.reject_play(stream_id, code::PLAY_FAILED, &reason)
                });
                self.close(conn, true, &reason, now_ms);
                return;
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stream = Some(key.clone());
            if let ConnKind::Rtmp { play_id, .. } = &mut c.kind {
                *play_id = Some(stream_id);
            }
        }
        if self.play_or_pull(&key, conn, relay::is_relayed(query), now_ms) == PlayState::Playing {
            self.start_player(conn, now_ms);
        }
    }

    /// An FLV audio or video tag from the publisher: parsed into a frame here, at the RTMP
    /// boundary, and handed to the publication with its original bytes.
    pub(super) fn on_rtmp_media(
        &mut self,
        conn: ConnId,
        type_id: u8,
        timestamp: u32,
        payload: Bytes,
    ) {
        let frame = if type_id == message_type::VIDEO {
            flv::frame_from_video_tag(timestamp, &payload)
        } else {
            flv::frame_from_audio_tag(timestamp, &payload)
        };
        // A tag that does not parse is dropped, not fatal: players would choke on it anyway.
        if let Ok(Some(frame)) = frame {
            self.publish_frame(conn, frame, Some(payload));
        }
    }
}

impl Engine {
    /// `on_rtmp_connect` for the `connect` of `conn`.
    fn notify_rtmp_connect(
        &mut self,
        conn: ConnId,
        app: &str,
        tc_url: Option<String>,
        command_object: &crate::amf::Value,
        now_ms: u64,
    ) {
        use crate::api::webhook::{to_json, RtmpConnectInfo, WebhookEvent};
        if !self.notify.wants(WebhookEvent::RtmpConnect) {
            return;
        }
        let Some(peer) = self.conns.get(&conn).map(|c| c.peer) else {
            return;
        };
        let info = RtmpConnectInfo {
            server_id: crate::api::lal::SERVER_ID,
            session_id: crate::api::lal::lal_session_id(conn, Protocol::Rtmp, Role::None),
            remote_addr: peer.to_string(),
            app: app.to_owned(),
            flash_ver: command_object
                .get("flashVer")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            tc_url: tc_url.unwrap_or_default(),
        };
        self.notify_event(WebhookEvent::RtmpConnect, to_json(&info), now_ms);
    }
}

#[cfg(test)]
mod tests {
    use crate::dump::MediaSummary;
    use crate::engine::{Engine, EngineConfig, Listener};
    use crate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
    use crate::rtmp::message_type;

    const GET: &[u8] = b"GET /live/s.flv HTTP/1.1\r\nHost: h\r\n\r\n";

    /// An engine with an HTTP-FLV player (2) waiting for live/s, and the publisher (1).
    fn engine() -> Engine {
        let peer = "127.0.0.1:40000".parse().unwrap();
        let mut e = Engine::new(EngineConfig::default(), 5);
        e.handle_accept(2, Listener::Http, peer, 0);
        e.handle_input(2, GET, 0);
        e.handle_accept(1, Listener::Rtmp, peer, 0);
        e
    }

    /// Drains the outputs; appends what connection `conn` can send to `out`.
    fn poll(e: &mut Engine, conn: u64, out: &mut Vec<u8>) {
        while e.poll_output().is_some() {}
        let mut v = Vec::new();
        e.poll_transmit(conn, usize::MAX, &mut v);
        v.iter().for_each(|b| out.extend_from_slice(b));
    }

    /// Found by the engine_split fuzz target: a publisher whose connect, createStream, publish
    /// and first frames arrive in one read was refused, so its players got nothing; and once
    /// it was not, a waiting player was started after the frames of that read, so its FLV
    /// header depended on which configurations the read held. The same bytes in one read must
    /// give the player what they give when the publisher waits for every answer.
    #[test]
    fn a_publish_read_in_one_piece_gives_players_the_same_bytes() {
        // Record what the publisher sends to an engine that answers it as it goes.
        let mut live = engine();
        let mut expected = Vec::new();
        let config = ClientConfig::new("live", "rtmp://127.0.0.1/live");
        let mut client = ClientSession::new(config, &[2; 1536], 0);
        client.publish("s");
        let mut sent = Vec::new();
        let mut publishing = false;
        for _ in 0..16 {
            while let Some(b) = client.poll_transmit() {
                sent.extend_from_slice(&b);
                live.handle_input(1, &b, 0);
            }
            poll(&mut live, 2, &mut expected);
            let mut out = Vec::new();
            poll(&mut live, 1, &mut out);
            client.handle_input(&out, 0).unwrap();
            while let Some(e) = client.poll_event() {
                publishing |= matches!(e, ClientEvent::Publishing { .. });
            }
        }
        assert!(publishing);
        let video_config = [
            0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1, 0,
            2, 0x68, 0xCE,
        ];
        let key_frame = [0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88];
        let messages: [(u8, u32, &[u8]); 3] = [
            (message_type::VIDEO, 0, &video_config),
            (message_type::VIDEO, 0, &key_frame),
            (message_type::AUDIO, 0, &[0xAF, 0, 0x12, 0x10]),
        ];
        let mut cut = 0;
        for (type_id, ts, body) in messages {
            if type_id == message_type::AUDIO {
                cut = sent.len();
            }
            client.send_media(type_id, ts, body).unwrap();
            while let Some(b) = client.poll_transmit() {
                sent.extend_from_slice(&b);
                live.handle_input(1, &b, 0);
            }
            poll(&mut live, 2, &mut expected);
        }
        let summary = MediaSummary::from_http_flv(&expected);
        assert_eq!(summary.error, None);
        assert_eq!(
            (summary.video, summary.audio, summary.key_frames),
            (2, 1, 1)
        );

        // The same bytes in one read, and in two with the audio configuration in the second.
        for reads in [vec![&sent[..]], vec![&sent[..cut], &sent[cut..]]] {
            let mut e = engine();
            let mut got = Vec::new();
            for read in reads {
                e.handle_input(1, read, 0);
                poll(&mut e, 2, &mut got);
            }
            assert!(
                got == expected,
                "the player's bytes depend on how the publisher's were read"
            );
        }
    }
}
