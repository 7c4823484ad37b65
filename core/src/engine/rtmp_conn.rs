//! The engine's RTMP side: server session events turned into hub operations.

use std::sync::Arc;

use bytes::Bytes;

use super::{
    stream_key, valid_name_segment, ConnId, ConnKind, Engine, Output, Packet, Protocol, Role,
    StreamMessage,
};
use crate::amf::Value;
use crate::flv;
use crate::hub::{PacketKind, PlayState};
use crate::media::FrameKind;
use crate::rtmp::command::{self, code};
use crate::rtmp::message_type;
use crate::rtmp::server::{ServerEvent, ServerSession};
use crate::ts::TsChunk;

impl Engine {
    pub(super) fn drain_rtmp(&mut self, conn: ConnId, now_ms: u64) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let ConnKind::Rtmp { session, .. } = &mut c.kind else {
                return;
            };
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

    pub(super) fn on_rtmp_event(&mut self, conn: ConnId, event: ServerEvent, now_ms: u64) {
        match event {
            ServerEvent::ConnectRequest { app, .. } => {
                let ok = valid_name_segment(&app);
                if let Some(s) = self.session_mut(conn) {
                    if ok {
                        s.accept_connect();
                    } else {
                        s.reject_connect("invalid application name");
                    }
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
                ..
            } => self.on_rtmp_publish(conn, stream_id, &app, &stream_name, now_ms),
            ServerEvent::PlayRequest {
                stream_id,
                app,
                stream_name,
                ..
            } => self.on_rtmp_play(conn, stream_id, &app, &stream_name, now_ms),
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
            } => self.on_rtmp_metadata(conn, &value, timestamp),
            ServerEvent::PublishStopped { .. } => {
                self.end_publish(conn, now_ms);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.role = Role::None;
                    if let ConnKind::Rtmp { publish_id, .. } = &mut c.kind {
                        *publish_id = None;
                    }
                }
            }
            ServerEvent::PlayStopped { .. } => {
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
        now_ms: u64,
    ) {
        let busy = self.conns.get(&conn).is_some_and(|c| c.role != Role::None);
        let Some(key) = stream_key(app, name).filter(|_| !busy) else {
            if let Some(s) = self.session_mut(conn) {
                s.reject_publish(stream_id, code::PUBLISH_BAD_NAME, "invalid stream name");
            }
            self.close(conn, true, "publish rejected: invalid stream name", now_ms);
            return;
        };
        match self.hub.publish(&key, conn, now_ms) {
            Ok(()) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if let ConnKind::Rtmp {
                        session,
                        publish_id,
                        ..
                    } = &mut c.kind
                    {
                        session.accept_publish(stream_id);
                        *publish_id = Some(stream_id);
                    }
                    c.muxer = Some(Box::default());
                }
                self.publish_started(conn, &key, Protocol::Rtmp, now_ms);
            }
            Err(e) => {
                if let Some(s) = self.session_mut(conn) {
                    s.reject_publish(stream_id, code::PUBLISH_BAD_NAME, &e.to_string());
                }
                self.close(conn, true, &format!("publish rejected: {e}"), now_ms);
            }
        }
    }

    /// A publisher was accepted by the hub: HLS starts, the session is logged, other engines
    /// are told.
    pub(super) fn publish_started(
        &mut self,
        conn: ConnId,
        key: &str,
        protocol: Protocol,
        now_ms: u64,
    ) {
        self.hls.start(key, true);
        self.start_session(conn, Role::Publish, protocol, key, now_ms);
        if self.config.share_streams {
            let stream: Arc<str> = Arc::from(key);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.published = Some(stream.clone());
            }
            self.outputs
                .push_back(Output::Broadcast(StreamMessage::Start { stream }));
        }
    }

    pub(super) fn on_rtmp_play(
        &mut self,
        conn: ConnId,
        stream_id: u32,
        app: &str,
        name: &str,
        now_ms: u64,
    ) {
        let busy = self.conns.get(&conn).is_some_and(|c| c.role != Role::None);
        let Some(key) = stream_key(app, name).filter(|_| !busy) else {
            if let Some(s) = self.session_mut(conn) {
                s.reject_play(
                    stream_id,
                    code::PLAY_STREAM_NOT_FOUND,
                    "invalid stream name",
                );
            }
            self.close(conn, true, "play rejected: invalid stream name", now_ms);
            return;
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stream = key.clone();
            if let ConnKind::Rtmp { play_id, .. } = &mut c.kind {
                *play_id = Some(stream_id);
            }
        }
        if self.hub.play(&key, conn, now_ms) == PlayState::Playing {
            self.start_player(conn, now_ms);
        }
    }

    pub(super) fn on_rtmp_media(
        &mut self,
        conn: ConnId,
        type_id: u8,
        timestamp: u32,
        payload: Bytes,
    ) {
        let chunk_size = self.config.rtmp.chunk_size;
        let frame = if type_id == message_type::VIDEO {
            flv::frame_from_video_tag(timestamp, &payload)
        } else {
            flv::frame_from_audio_tag(timestamp, &payload)
        };
        // A tag that does not parse is dropped, not fatal: players would choke on it anyway.
        let Ok(Some(frame)) = frame else { return };
        let kind = match (frame.kind, type_id) {
            (FrameKind::Config, message_type::VIDEO) => PacketKind::VideoConfig,
            (FrameKind::Config, _) => PacketKind::AudioConfig,
            (FrameKind::Coded, message_type::VIDEO) => PacketKind::Video { key: frame.key },
            (FrameKind::Coded, _) => PacketKind::Audio,
            (FrameKind::EndOfSequence, _) => return,
        };
        // Muxed once here for every TS output; a frame TS cannot carry is left out of them only.
        let ts = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.muxer.as_mut())
            .and_then(|m| m.mux(&frame).ok())
            .unwrap_or_default();
        let packet = Packet::new(
            kind,
            frame.dts,
            Some(frame),
            type_id,
            payload,
            chunk_size,
            ts,
        );
        self.push_local(conn, packet);
    }

    pub(super) fn on_rtmp_metadata(&mut self, conn: ConnId, value: &Value, timestamp: u32) {
        let body = command::encode_on_metadata(value);
        let packet = Packet::new(
            PacketKind::Metadata,
            i64::from(timestamp),
            None,
            message_type::DATA_AMF0,
            body,
            self.config.rtmp.chunk_size,
            TsChunk::default(),
        );
        self.push_local(conn, packet);
    }
}
