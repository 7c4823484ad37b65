//! The server side of one RTMP connection.
//!
//! [`ServerSession`] takes the bytes a client sends and raises what the client asks for as
//! [`ServerEvent`]s. Connect, publish and play are *requests*: the application decides (auth,
//! stream already taken, ...) and answers with `accept_*` or `reject_*`. Media from a publisher
//! comes out as [`ServerEvent::Media`]; media to a player is written by the application, either
//! through [`ServerSession::send_media`] or, for fan-out, with a chunk body shared by all players
//! (see [`crate::rtmp::chunk::chunk_body`]) at [`ServerSession::chunk_size`].
//!
//! Drive it like every rill machine: after each [`ServerSession::handle_input`] drain
//! [`ServerSession::poll_transmit`] and [`ServerSession::poll_event`] until both give `None`.
//! Input after a connect or publish request waits for the answer: once the events are answered,
//! call [`ServerSession::resume`] and drain again until it raises no more events.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::chunk::Message;
use super::command::{self, code, level, status_info, Command, DataMessage};
use super::connection::{csid, SessionError, Transport};
use super::control::{ControlMessage, UserControlEvent};
use super::handshake::{HandshakeKind, ServerHandshake};
use super::message_type;
use crate::amf::Value;
use crate::limits::Limits;

/// Settings of a server session.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Chunk size rill sends with (announced right after connect).
    pub chunk_size: u32,
    /// Window acknowledgement size announced to the client.
    pub window_ack_size: u32,
    /// Peer bandwidth announced to the client.
    pub peer_bandwidth: u32,
    /// How long the handshake and connect may take, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Most message streams (createStream) one connection may open.
    pub max_streams: usize,
    /// Protocol limits.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            handshake_timeout_ms: 10_000,
            max_streams: 8,
            limits: Limits::default(),
        }
    }
}

/// What a client asked for or sent.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The handshake finished.
    HandshakeDone {
        /// Which handshake the client used.
        kind: HandshakeKind,
    },
    /// `connect`: answer with [`ServerSession::accept_connect`] or [`ServerSession::reject_connect`].
    ConnectRequest {
        /// The application name (`app` of the command object, without any query).
        app: String,
        /// The `tcUrl` the client gave, if any.
        tc_url: Option<String>,
        /// The whole command object.
        command_object: Value,
    },
    /// `publish`: answer with [`ServerSession::accept_publish`] or [`ServerSession::reject_publish`].
    PublishRequest {
        /// The message stream the publish came on.
        stream_id: u32,
        /// The application name from connect.
        app: String,
        /// The stream name without its query.
        stream_name: String,
        /// The query after `?` in the stream name, then (joined by `&`) that of connect's `app`
        /// or `tcUrl`; without the `?`.
        query: String,
        /// `live`, `record` or `append`.
        publish_type: String,
    },
    /// `play`: answer with [`ServerSession::accept_play`] or [`ServerSession::reject_play`].
    PlayRequest {
        /// The message stream the play came on.
        stream_id: u32,
        /// The application name from connect.
        app: String,
        /// The stream name without its query.
        stream_name: String,
        /// The query, as in [`ServerEvent::PublishRequest`].
        query: String,
        /// Requested start (-2, -1 or seconds).
        start: f64,
    },
    /// An audio (8) or video (9) message from an accepted publisher: an FLV tag body.
    Media {
        /// Message stream id.
        stream_id: u32,
        /// [`message_type::AUDIO`] or [`message_type::VIDEO`].
        type_id: u8,
        /// Timestamp in milliseconds (32-bit, wraps).
        timestamp: u32,
        /// The tag body, shared with the received buffer.
        payload: Bytes,
    },
    /// Metadata (`@setDataFrame`/`onMetaData`) from an accepted publisher.
    Metadata {
        /// Message stream id.
        stream_id: u32,
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// The metadata object.
        value: Value,
    },
    /// The publisher stopped (FCUnpublish, closeStream or deleteStream).
    PublishStopped {
        /// Message stream id.
        stream_id: u32,
    },
    /// The player stopped (closeStream or deleteStream).
    PlayStopped {
        /// Message stream id.
        stream_id: u32,
    },
    /// The player paused (`true`) or resumed (`false`).
    Pause {
        /// Message stream id.
        stream_id: u32,
        /// Paused or resumed.
        paused: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamRole {
    Idle,
    PublishPending,
    Publishing,
    PlayPending,
    Playing,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    AwaitConnect,
    ConnectPending,
    Connected,
}

/// The server side of one RTMP connection. See the module docs.
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    /// Dropped once done and drained: its ~3 KB of buffers serve no purpose after that.
    handshake: Option<Box<ServerHandshake>>,
    transport: Transport,
    phase: Phase,
    deadline: Option<u64>,
    app: String,
    /// The query of connect's `app` or, failing that, of its `tcUrl` (without `?`).
    connect_query: String,
    connect_tid: f64,
    object_encoding: f64,
    streams: BTreeMap<u32, StreamRole>,
    next_stream_id: u32,
    events: VecDeque<ServerEvent>,
    /// Messages received while a request awaits its answer, and their payload bytes.
    held: VecDeque<Message>,
    held_bytes: usize,
    /// Why handling messages failed; returned again by every later call.
    failed: Option<SessionError>,
}

/// The error for an answer to a request that is not pending.
fn not_pending(request: &'static str, stream_id: u32) -> SessionError {
    SessionError::NotPending { request, stream_id }
}

/// Splits `name?query` into its two parts.
fn split_query(name: &str) -> (String, String) {
    match name.split_once('?') {
        Some((n, q)) => (n.to_owned(), q.to_owned()),
        None => (name.to_owned(), String::new()),
    }
}

/// The query of a publish or play: the stream name's, then connect's (`rtmp://h/app?q/stream`
/// or a query on the tcUrl), joined with `&` so the stream name's parameters come first.
fn request_query(name_query: String, connect_query: &str) -> String {
    match (name_query.is_empty(), connect_query.is_empty()) {
        (_, true) => name_query,
        (true, false) => connect_query.to_owned(),
        (false, false) => format!("{name_query}&{connect_query}"),
    }
}

impl ServerSession {
    /// A session for a freshly accepted connection. `random` seeds the handshake (1528 bytes
    /// are used; core has no random source), `now_ms` starts the handshake deadline.
    pub fn new(config: ServerConfig, random: &[u8], now_ms: u64) -> Self {
        let transport = Transport::new(&config.limits);
        ServerSession {
            handshake: Some(Box::new(ServerHandshake::new(random, now_ms as u32))),
            deadline: Some(now_ms.saturating_add(config.handshake_timeout_ms)),
            config,
            transport,
            phase: Phase::Handshake,
            app: String::new(),
            connect_query: String::new(),
            connect_tid: 1.0,
            object_encoding: 0.0,
            streams: BTreeMap::new(),
            next_stream_id: 1,
            events: VecDeque::new(),
            held: VecDeque::new(),
            held_bytes: 0,
            failed: None,
        }
    }

    /// Feeds bytes received from the client. Messages after a connect or publish request are
    /// held until the request is answered and [`ServerSession::resume`] is called (at most
    /// [`Limits::max_pending_bytes`] of them).
    pub fn handle_input(&mut self, mut data: &[u8], _now_ms: u64) -> Result<(), SessionError> {
        if self.phase == Phase::Handshake {
            // The handshake is only dropped after it is done, when the phase has moved on.
            let Some(handshake) = self.handshake.as_mut() else {
                return Err(SessionError::Protocol("handshake state lost".into()));
            };
            let used = handshake.read(data)?;
            data = data.get(used..).unwrap_or_default();
            if !handshake.is_done() {
                return Ok(());
            }
            let kind = handshake.kind();
            self.phase = Phase::AwaitConnect;
            self.events.push_back(ServerEvent::HandshakeDone { kind });
        }
        self.transport.push(data);
        self.process()
    }

    /// Handles the messages held while a connect or publish awaited its answer (see
    /// [`ServerSession::handle_input`]). Call it after answering, then drain the events again:
    /// a client that sends connect, createStream, publish and media without waiting for
    /// replies has the rest of its messages handled here.
    pub fn resume(&mut self) -> Result<(), SessionError> {
        self.process()
    }

    /// A connect or publish awaits the application's answer. What follows depends on it
    /// (createStream needs an accepted connect, media an accepted publish), so later messages
    /// wait for it: the outcome must not depend on how the client's bytes were cut.
    fn awaiting_answer(&self) -> bool {
        self.phase == Phase::ConnectPending
            || self
                .streams
                .values()
                .any(|r| *r == StreamRole::PublishPending)
    }

    /// Handles held messages, then decodes what was received; messages that arrive while a
    /// request awaits its answer are held (decoded, so a broken chunk stream still fails at once).
    /// Errors are final: nothing behind the message that failed is ever handled.
    fn process(&mut self) -> Result<(), SessionError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.process_messages();
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Handles held messages, then what the transport decoded (holding it while a request
    /// awaits its answer, within [`Limits::max_pending_bytes`]).
    fn process_messages(&mut self) -> Result<(), SessionError> {
        while !self.awaiting_answer() {
            let Some(msg) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= held_cost(&msg);
            self.on_message(msg)?;
        }
        while let Some(msg) = self.transport.poll_message()? {
            if !self.awaiting_answer() {
                self.on_message(msg)?;
                continue;
            }
            self.held_bytes += held_cost(&msg);
            self.held.push_back(msg);
            let limit = self.config.limits.max_pending_bytes;
            if self.held_bytes > limit {
                return Err(SessionError::Protocol(format!(
                    "{} bytes of messages received while a request awaits its answer (limit {limit})",
                    self.held_bytes
                )));
            }
        }
        Ok(())
    }

    /// Checks the handshake/connect deadline.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), SessionError> {
        match self.deadline {
            Some(d) if now_ms >= d => Err(SessionError::HandshakeTimeout),
            _ => Ok(()),
        }
    }

    /// The next deadline (until connect is answered), if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadline
    }

    /// Bytes to send to the client.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if let Some(handshake) = self.handshake.as_mut() {
            if let Some(b) = handshake.poll_transmit() {
                return Some(b);
            }
            if handshake.is_done() {
                self.handshake = None;
            }
        }
        self.transport.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The application name from connect.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The chunk size this session sends with. Shared fan-out bodies must be chunked with it.
    pub fn chunk_size(&self) -> u32 {
        self.transport.out_chunk_size()
    }

    fn on_message(&mut self, msg: Message) -> Result<(), SessionError> {
        match msg.type_id {
            message_type::COMMAND_AMF0 | message_type::COMMAND_AMF3 => {
                let amf3 = msg.type_id == message_type::COMMAND_AMF3;
                let cmd = Command::decode(&msg.payload, amf3, self.config.limits.max_amf_depth)?;
                self.on_command(msg.stream_id, cmd)
            }
            message_type::DATA_AMF0 | message_type::DATA_AMF3 => {
                if self.role(msg.stream_id) != StreamRole::Publishing {
                    return Ok(());
                }
                let amf3 = msg.type_id == message_type::DATA_AMF3;
                // Data messages that do not decode are dropped, not fatal: some encoders send odd ones.
                if let Ok(data) =
                    DataMessage::decode(&msg.payload, amf3, self.config.limits.max_amf_depth)
                {
                    if let Some(value) = data.metadata() {
                        self.events.push_back(ServerEvent::Metadata {
                            stream_id: msg.stream_id,
                            timestamp: msg.timestamp,
                            value: value.clone(),
                        });
                    }
                }
                Ok(())
            }
            message_type::AUDIO | message_type::VIDEO => {
                if self.role(msg.stream_id) == StreamRole::Publishing {
                    self.events.push_back(ServerEvent::Media {
                        stream_id: msg.stream_id,
                        type_id: msg.type_id,
                        timestamp: msg.timestamp,
                        payload: msg.payload,
                    });
                }
                Ok(())
            }
            // Shared objects are not supported; other types are ignored.
            _ => Ok(()),
        }
    }

    fn role(&self, stream_id: u32) -> StreamRole {
        self.streams
            .get(&stream_id)
            .copied()
            .unwrap_or(StreamRole::Idle)
    }

    fn answer(&mut self, transaction_id: f64, args: Vec<Value>) {
        if transaction_id != 0.0 {
            self.transport.send_command(
                csid::COMMAND,
                0,
                &Command::Result {
                    transaction_id,
                    args,
                },
            );
        }
    }

    fn require_connected(&self, what: &str) -> Result<(), SessionError> {
        if self.phase == Phase::Connected {
            Ok(())
        } else {
            Err(SessionError::Protocol(format!(
                "{what} before connect was accepted"
            )))
        }
    }

    fn on_command(&mut self, stream_id: u32, cmd: Command) -> Result<(), SessionError> {
        match cmd {
            Command::Connect {
                transaction_id,
                command_object,
                ..
            } => {
                if self.phase != Phase::AwaitConnect {
                    return Err(SessionError::Protocol(
                        "second connect on one connection".into(),
                    ));
                }
                let app_full = command_object
                    .get("app")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let app = app_full
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .trim_matches('/')
                    .to_owned();
                self.app = app.clone();
                let tc_url = command_object
                    .get("tcUrl")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let query_of = |s: &str| s.split_once('?').map(|(_, q)| q.to_owned());
                self.connect_query = query_of(app_full)
                    .or_else(|| tc_url.as_deref().and_then(query_of))
                    .unwrap_or_default();
                self.connect_tid = transaction_id;
                self.object_encoding = command_object
                    .get("objectEncoding")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                self.phase = Phase::ConnectPending;
                self.events.push_back(ServerEvent::ConnectRequest {
                    app,
                    tc_url,
                    command_object,
                });
            }
            Command::CreateStream { transaction_id } => {
                self.require_connected("createStream")?;
                if self.streams.len() >= self.config.max_streams {
                    self.transport.send_command(
                        csid::COMMAND,
                        0,
                        &Command::Error {
                            transaction_id,
                            args: vec![
                                Value::Null,
                                status_info(level::ERROR, code::STREAM_FAILED, "too many streams"),
                            ],
                        },
                    );
                    return Ok(());
                }
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.saturating_add(1);
                self.streams.insert(id, StreamRole::Idle);
                self.answer(
                    transaction_id,
                    vec![Value::Null, Value::Number(f64::from(id))],
                );
            }
            Command::ReleaseStream { transaction_id, .. }
            | Command::FcPublish { transaction_id, .. } => {
                self.answer(transaction_id, vec![Value::Null, Value::Undefined]);
            }
            Command::GetStreamLength { transaction_id, .. } => {
                self.answer(transaction_id, vec![Value::Null, Value::Number(0.0)]);
            }
            Command::CheckBw { transaction_id } => self.answer(transaction_id, vec![Value::Null]),
            Command::Publish {
                stream_name,
                publish_type,
                ..
            } => {
                self.require_connected("publish")?;
                let role = self.streams.get(&stream_id).copied();
                if role != Some(StreamRole::Idle) {
                    let info = status_info(
                        level::ERROR,
                        code::PUBLISH_BAD_NAME,
                        "publish on a busy or unknown stream id",
                    );
                    self.transport.send_status(stream_id, info);
                    return Ok(());
                }
                self.streams.insert(stream_id, StreamRole::PublishPending);
                let (stream_name, query) = split_query(&stream_name);
                self.events.push_back(ServerEvent::PublishRequest {
                    stream_id,
                    app: self.app.clone(),
                    stream_name,
                    query: request_query(query, &self.connect_query),
                    publish_type,
                });
            }
            Command::Play {
                stream_name, start, ..
            } => self.on_play(stream_id, &stream_name, start)?,
            Command::Play2 { parameters, .. } => {
                if let Some(name) = parameters.get("streamName").and_then(Value::as_str) {
                    let name = name.to_owned();
                    self.on_play(stream_id, &name, -2.0)?;
                }
            }
            Command::FcUnpublish { transaction_id, .. } => {
                self.answer(transaction_id, vec![Value::Null, Value::Undefined]);
                let publishing: Vec<u32> = self
                    .streams
                    .iter()
                    .filter(|(_, r)| **r == StreamRole::Publishing)
                    .map(|(id, _)| *id)
                    .collect();
                for id in publishing {
                    self.stop_stream(id);
                }
            }
            Command::CloseStream { .. } => self.stop_stream(stream_id),
            Command::DeleteStream { stream_id: id, .. } => {
                let id = if id >= 0.0 && id <= f64::from(u32::MAX) {
                    id as u32
                } else {
                    0
                };
                self.stop_stream(id);
                self.streams.remove(&id);
            }
            Command::Pause { pause, .. } => {
                if self.role(stream_id) == StreamRole::Playing {
                    let c = if pause {
                        code::PAUSE_NOTIFY
                    } else {
                        code::UNPAUSE_NOTIFY
                    };
                    self.transport
                        .send_status(stream_id, status_info(level::STATUS, c, "pause toggled"));
                    self.events.push_back(ServerEvent::Pause {
                        stream_id,
                        paused: pause,
                    });
                }
            }
            Command::ReceiveAudio { .. } | Command::ReceiveVideo { .. } => {}
            Command::Result { .. } | Command::Error { .. } | Command::OnStatus { .. } => {}
            Command::Other { transaction_id, .. } => {
                // Unknown calls get an empty success so clients waiting on them move on.
                self.answer(transaction_id, vec![Value::Null]);
            }
        }
        Ok(())
    }

    fn on_play(&mut self, stream_id: u32, name: &str, start: f64) -> Result<(), SessionError> {
        self.require_connected("play")?;
        if self.streams.get(&stream_id).copied() != Some(StreamRole::Idle) {
            let info = status_info(
                level::ERROR,
                code::PLAY_FAILED,
                "play on a busy or unknown stream id",
            );
            self.transport.send_status(stream_id, info);
            return Ok(());
        }
        self.streams.insert(stream_id, StreamRole::PlayPending);
        let (stream_name, query) = split_query(name);
        self.events.push_back(ServerEvent::PlayRequest {
            stream_id,
            app: self.app.clone(),
            stream_name,
            query: request_query(query, &self.connect_query),
            start,
        });
        Ok(())
    }

    fn stop_stream(&mut self, stream_id: u32) {
        match self.role(stream_id) {
            StreamRole::Publishing | StreamRole::PublishPending => {
                self.streams.insert(stream_id, StreamRole::Idle);
                let info =
                    status_info(level::STATUS, code::UNPUBLISH_SUCCESS, "stream unpublished");
                self.transport.send_status(stream_id, info);
                self.events
                    .push_back(ServerEvent::PublishStopped { stream_id });
            }
            StreamRole::Playing | StreamRole::PlayPending => {
                self.streams.insert(stream_id, StreamRole::Idle);
                self.events
                    .push_back(ServerEvent::PlayStopped { stream_id });
            }
            StreamRole::Idle => {}
        }
    }

    /// Accepts the pending connect: window size, peer bandwidth, chunk size, then `_result`.
    /// Fails with [`SessionError::NotPending`] (and does nothing) when no connect is pending.
    pub fn accept_connect(&mut self) -> Result<(), SessionError> {
        if self.phase != Phase::ConnectPending {
            return Err(not_pending("connect", 0));
        }
        self.phase = Phase::Connected;
        self.deadline = None;
        self.transport
            .send_control(&ControlMessage::WindowAckSize(self.config.window_ack_size));
        self.transport
            .send_control(&ControlMessage::SetPeerBandwidth {
                size: self.config.peer_bandwidth,
                limit_type: 2,
            });
        self.transport.set_out_chunk_size(self.config.chunk_size);
        let properties = Value::Object(vec![
            (
                "fmsVer".to_owned(),
                Value::String("FMS/3,0,1,123".to_owned()),
            ),
            ("capabilities".to_owned(), Value::Number(31.0)),
        ]);
        let mut info = status_info(
            level::STATUS,
            code::CONNECT_SUCCESS,
            "Connection succeeded.",
        );
        if let Value::Object(props) = &mut info {
            props.push((
                "objectEncoding".to_owned(),
                Value::Number(self.object_encoding),
            ));
        }
        let tid = self.connect_tid;
        self.transport.send_command(
            csid::COMMAND,
            0,
            &Command::Result {
                transaction_id: tid,
                args: vec![properties, info],
            },
        );
        Ok(())
    }

    /// Refuses the pending connect with `NetConnection.Connect.Rejected`; close the connection after
    /// flushing. Fails with [`SessionError::NotPending`] when no connect is pending.
    pub fn reject_connect(&mut self, description: &str) -> Result<(), SessionError> {
        if self.phase != Phase::ConnectPending {
            return Err(not_pending("connect", 0));
        }
        let info = status_info(level::ERROR, code::CONNECT_REJECTED, description);
        let tid = self.connect_tid;
        self.transport.send_command(
            csid::COMMAND,
            0,
            &Command::Error {
                transaction_id: tid,
                args: vec![Value::Null, info],
            },
        );
        Ok(())
    }

    /// Accepts a pending publish: Stream Begin and `NetStream.Publish.Start`. Fails with
    /// [`SessionError::NotPending`] (and does nothing) when no publish is pending on `stream_id`.
    pub fn accept_publish(&mut self, stream_id: u32) -> Result<(), SessionError> {
        if self.role(stream_id) != StreamRole::PublishPending {
            return Err(not_pending("publish", stream_id));
        }
        self.streams.insert(stream_id, StreamRole::Publishing);
        self.transport
            .send_control(&ControlMessage::UserControl(UserControlEvent::StreamBegin(
                stream_id,
            )));
        let info = status_info(level::STATUS, code::PUBLISH_START, "Start publishing");
        self.transport.send_status(stream_id, info);
        Ok(())
    }

    /// Refuses a pending publish with an error status (`code`, e.g. [`code::PUBLISH_BAD_NAME`]).
    /// Fails with [`SessionError::NotPending`] when no publish is pending on `stream_id`.
    pub fn reject_publish(
        &mut self,
        stream_id: u32,
        status_code: &str,
        description: &str,
    ) -> Result<(), SessionError> {
        if self.role(stream_id) != StreamRole::PublishPending {
            return Err(not_pending("publish", stream_id));
        }
        self.streams.insert(stream_id, StreamRole::Idle);
        self.transport.send_status(
            stream_id,
            status_info(level::ERROR, status_code, description),
        );
        Ok(())
    }

    /// Accepts a pending play: Stream Begin, `Play.Reset`, `Play.Start`, `|RtmpSampleAccess`.
    /// Media may follow at once. Fails with [`SessionError::NotPending`] (and does nothing) when
    /// no play is pending on `stream_id`.
    pub fn accept_play(&mut self, stream_id: u32) -> Result<(), SessionError> {
        if self.role(stream_id) != StreamRole::PlayPending {
            return Err(not_pending("play", stream_id));
        }
        self.streams.insert(stream_id, StreamRole::Playing);
        self.transport
            .send_control(&ControlMessage::UserControl(UserControlEvent::StreamBegin(
                stream_id,
            )));
        self.transport.send_status(
            stream_id,
            status_info(level::STATUS, code::PLAY_RESET, "Playing and resetting"),
        );
        self.transport.send_status(
            stream_id,
            status_info(level::STATUS, code::PLAY_START, "Started playing"),
        );
        let mut body = bytes::BytesMut::new();
        crate::amf::amf0::encode_all(
            &[
                Value::String("|RtmpSampleAccess".to_owned()),
                Value::Boolean(true),
                Value::Boolean(true),
            ],
            &mut body,
        );
        self.transport.send_message(
            csid::STREAM_COMMAND,
            0,
            message_type::DATA_AMF0,
            stream_id,
            &body,
        );
        Ok(())
    }

    /// Refuses a pending play with an error status (e.g. [`code::PLAY_STREAM_NOT_FOUND`]).
    /// Fails with [`SessionError::NotPending`] when no play is pending on `stream_id`.
    pub fn reject_play(
        &mut self,
        stream_id: u32,
        status_code: &str,
        description: &str,
    ) -> Result<(), SessionError> {
        if self.role(stream_id) != StreamRole::PlayPending {
            return Err(not_pending("play", stream_id));
        }
        self.streams.insert(stream_id, StreamRole::Idle);
        self.transport.send_status(
            stream_id,
            status_info(level::ERROR, status_code, description),
        );
        Ok(())
    }

    /// Tells a player its stream ended: `Play.UnpublishNotify`, `Play.Stop` and Stream EOF.
    pub fn end_play(&mut self, stream_id: u32, description: &str) {
        if self.role(stream_id) != StreamRole::Playing {
            return;
        }
        self.streams.insert(stream_id, StreamRole::Idle);
        self.transport.send_status(
            stream_id,
            status_info(level::STATUS, code::PLAY_UNPUBLISH_NOTIFY, description),
        );
        self.transport.send_status(
            stream_id,
            status_info(level::STATUS, code::PLAY_STOP, description),
        );
        self.transport
            .send_control(&ControlMessage::UserControl(UserControlEvent::StreamEof(
                stream_id,
            )));
    }

    /// Sends one media or data message to a player through the session's own encoder (use the
    /// shared fan-out encoding for many players; this is for one-off messages and timestamps
    /// beyond 24 bits).
    pub fn send_media(&mut self, stream_id: u32, type_id: u8, timestamp: u32, payload: &[u8]) {
        let chunk_stream = match type_id {
            message_type::AUDIO => csid::AUDIO,
            message_type::VIDEO => csid::VIDEO,
            _ => csid::DATA,
        };
        self.transport
            .send_message(chunk_stream, timestamp, type_id, stream_id, payload);
    }

    /// Sends `onMetaData(value)` to a player.
    pub fn send_metadata(&mut self, stream_id: u32, value: &Value) {
        let body = command::encode_on_metadata(value);
        self.transport
            .send_message(csid::DATA, 0, message_type::DATA_AMF0, stream_id, &body);
    }
}

/// What a held message counts against [`Limits::max_pending_bytes`]: its payload and the
/// message itself, so a flood of empty messages is bounded too.
fn held_cost(msg: &Message) -> usize {
    msg.payload.len() + std::mem::size_of::<Message>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::ChunkEncoder;
    use crate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};

    /// Handles events as the engine does (every request accepted), resuming held input.
    fn answer_all(server: &mut ServerSession, events: &mut Vec<ServerEvent>) {
        loop {
            let event = match server.poll_event() {
                Some(e) => e,
                None => {
                    server.resume().unwrap();
                    match server.poll_event() {
                        Some(e) => e,
                        None => return,
                    }
                }
            };
            match &event {
                ServerEvent::ConnectRequest { .. } => server.accept_connect().unwrap(),
                ServerEvent::PublishRequest { stream_id, .. } => {
                    server.accept_publish(*stream_id).unwrap()
                }
                _ => {}
            }
            events.push(event);
        }
    }

    /// What a publishing client sends (handshake, connect, createStream, publish, two video
    /// messages), recorded against a server that answers it.
    fn publisher_bytes() -> Vec<u8> {
        let mut server = ServerSession::new(ServerConfig::default(), &[1; 1536], 0);
        let config = ClientConfig::new("live", "rtmp://127.0.0.1/live");
        let mut client = ClientSession::new(config, &[2; 1536], 0);
        client.publish("s");
        let mut sent = Vec::new();
        let mut publishing = false;
        for _ in 0..16 {
            while let Some(b) = client.poll_transmit() {
                sent.extend_from_slice(&b);
                server.handle_input(&b, 0).unwrap();
            }
            answer_all(&mut server, &mut Vec::new());
            while let Some(b) = server.poll_transmit() {
                client.handle_input(&b, 0).unwrap();
            }
            while let Some(e) = client.poll_event() {
                publishing |= matches!(e, ClientEvent::Publishing { .. });
            }
        }
        assert!(publishing);
        for ts in [0, 40] {
            let key_frame = [0x17, 0x01, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88];
            client
                .send_media(message_type::VIDEO, ts, &key_frame)
                .unwrap();
        }
        while let Some(b) = client.poll_transmit() {
            sent.extend_from_slice(&b);
        }
        sent
    }

    /// The publish or play request's query, as a client with `app` and `tc_url` asking for
    /// `name` (publishing when `publish`) makes the server report it.
    fn request_query_of(app: &str, tc_url: &str, name: &str, publish: bool) -> (String, String) {
        let mut server = ServerSession::new(ServerConfig::default(), &[1; 1536], 0);
        let mut client = ClientSession::new(ClientConfig::new(app, tc_url), &[2; 1536], 0);
        if publish {
            client.publish(name);
        } else {
            client.play(name);
        }
        let mut events = Vec::new();
        for _ in 0..16 {
            while let Some(b) = client.poll_transmit() {
                server.handle_input(&b, 0).unwrap();
            }
            answer_all(&mut server, &mut events);
            while let Some(b) = server.poll_transmit() {
                client.handle_input(&b, 0).unwrap();
            }
            while client.poll_event().is_some() {}
        }
        events
            .into_iter()
            .find_map(|e| match e {
                ServerEvent::PublishRequest {
                    stream_name, query, ..
                }
                | ServerEvent::PlayRequest {
                    stream_name, query, ..
                } => Some((stream_name, query)),
                _ => None,
            })
            .expect("a publish or play request")
    }

    #[test]
    fn request_queries_come_from_the_stream_name_then_connect() {
        let pair = |n: &str, q: &str| (n.to_owned(), q.to_owned());
        let tc = "rtmp://h/live";
        assert_eq!(
            request_query_of("live", tc, "s?lal_secret=a&b=1", true),
            pair("s", "lal_secret=a&b=1")
        );
        assert_eq!(request_query_of("live", tc, "s", false), pair("s", ""));
        // A query on connect's app (OBS: server `rtmp://h/live?k=v`, key `s`).
        assert_eq!(
            request_query_of("live?lal_secret=c", "rtmp://h/live?lal_secret=c", "s", true),
            pair("s", "lal_secret=c")
        );
        // Only on the tcUrl.
        assert_eq!(
            request_query_of("live", "rtmp://h/live?lal_secret=t", "s", false),
            pair("s", "lal_secret=t")
        );
        // Both: the stream name's parameters first.
        assert_eq!(
            request_query_of("live?x=2", tc, "s?x=1", false),
            pair("s", "x=1&x=2")
        );
    }

    /// Found by the engine_split fuzz target: a client's connect, createStream, publish and
    /// media read in one piece were refused ("createStream before connect was accepted"), and
    /// media right after a publish was dropped, while the same bytes read in pieces worked.
    #[test]
    fn requests_and_media_in_one_read_give_what_they_give_in_pieces() {
        let bytes = publisher_bytes();
        let events = |cut: usize| {
            let mut server = ServerSession::new(ServerConfig::default(), &[1; 1536], 0);
            let mut events = Vec::new();
            for piece in bytes.chunks(cut) {
                server.handle_input(piece, 0).unwrap();
                answer_all(&mut server, &mut events);
            }
            let names: Vec<&str> = events
                .iter()
                .filter_map(|e| match e {
                    ServerEvent::ConnectRequest { .. } => Some("connect"),
                    ServerEvent::PublishRequest { .. } => Some("publish"),
                    ServerEvent::Media { .. } => Some("media"),
                    _ => None,
                })
                .collect();
            names.join(" ")
        };
        for cut in [bytes.len(), 1, 7, 100, 1537] {
            assert_eq!(events(cut), "connect publish media media", "cut {cut}");
        }
    }

    #[test]
    fn answers_to_requests_not_pending_fail_and_change_nothing() {
        let mut fresh = ServerSession::new(ServerConfig::default(), &[1; 1536], 0);
        let none = |request, stream_id| Err(SessionError::NotPending { request, stream_id });
        assert_eq!(fresh.accept_connect(), none("connect", 0));
        assert_eq!(fresh.reject_connect("no"), none("connect", 0));
        assert!(fresh.poll_transmit().is_none());
        let mut server = ServerSession::new(ServerConfig::default(), &[1; 1536], 0);
        server.handle_input(&publisher_bytes(), 0).unwrap();
        let mut events = Vec::new();
        answer_all(&mut server, &mut events);
        let id = events
            .iter()
            .find_map(|e| match e {
                ServerEvent::PublishRequest { stream_id, .. } => Some(*stream_id),
                _ => None,
            })
            .unwrap();
        while server.poll_transmit().is_some() {}
        assert_eq!(server.accept_connect(), none("connect", 0));
        assert_eq!(server.accept_publish(id), none("publish", id));
        assert_eq!(
            server.reject_publish(id, code::PUBLISH_BAD_NAME, "x"),
            none("publish", id)
        );
        assert_eq!(server.accept_play(id), none("play", id));
        assert_eq!(
            server.reject_play(id + 1, code::PLAY_FAILED, "x"),
            none("play", id + 1)
        );
        assert!(server.poll_transmit().is_none(), "nothing is sent");
    }

    /// Found by the engine_split fuzz target: once `resume` existed, a message that failed
    /// (a Window Acknowledgement Size with a one-byte body) no longer ended the session, as
    /// `resume` went on with the messages behind it.
    #[test]
    fn errors_are_final() {
        let mut server = ServerSession::new(ServerConfig::default(), &[1; 1536], 0);
        server.handle_input(&publisher_bytes(), 0).unwrap();
        answer_all(&mut server, &mut Vec::new());
        let mut encoder = ChunkEncoder::new();
        encoder.set_chunk_size(4096);
        let mut out = bytes::BytesMut::new();
        encoder.encode(9, 0, message_type::WINDOW_ACK_SIZE, 0, &[0x58], &mut out);
        let key_frame = [0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65];
        encoder.encode(10, 100, message_type::VIDEO, 1, &key_frame, &mut out);
        let err = server.handle_input(&out, 0).unwrap_err();
        assert!(matches!(err, SessionError::Control(_)), "{err}");
        assert_eq!(server.resume(), Err(err.clone()));
        assert_eq!(server.handle_input(&[], 0), Err(err));
        let late = std::iter::from_fn(|| server.poll_event())
            .any(|e| matches!(e, ServerEvent::Media { timestamp: 100, .. }));
        assert!(!late, "a message behind the one that failed was handled");
    }

    /// A session whose client sent its connect, which is never answered: what follows is
    /// held, up to 10,000 bytes.
    fn session_awaiting_connect_answer() -> ServerSession {
        let limits = Limits {
            max_pending_bytes: 10_000,
            ..Limits::default()
        };
        let config = ServerConfig {
            limits,
            ..ServerConfig::default()
        };
        let mut server = ServerSession::new(config, &[1; 1536], 0);
        server.handle_input(&publisher_bytes(), 0).unwrap();
        assert!(matches!(
            server.poll_event(),
            Some(ServerEvent::HandshakeDone { .. })
        ));
        assert!(matches!(
            server.poll_event(),
            Some(ServerEvent::ConnectRequest { .. })
        ));
        assert!(server.poll_event().is_none());
        server
    }

    #[test]
    fn messages_held_for_an_answer_are_bounded() {
        let mut server = session_awaiting_connect_answer();
        let mut encoder = ChunkEncoder::new();
        encoder.set_chunk_size(4096);
        let mut audio = |server: &mut ServerSession| {
            let mut out = bytes::BytesMut::new();
            encoder.encode(8, 0, message_type::AUDIO, 1, &[0xAF; 4000], &mut out);
            server.handle_input(&out, 0)
        };
        assert!(audio(&mut server).is_ok());
        assert!(audio(&mut server).is_ok());
        assert!(matches!(audio(&mut server), Err(SessionError::Protocol(_))));
    }

    #[test]
    fn empty_messages_held_for_an_answer_are_bounded_too() {
        let mut server = session_awaiting_connect_answer();
        // An empty audio message on chunk stream 8, then one-byte fmt 3 headers: each another
        // empty message.
        let mut out = bytes::BytesMut::new();
        ChunkEncoder::new().encode(8, 0, message_type::AUDIO, 1, &[], &mut out);
        out.resize(out.len() + 1000, 0xC8);
        assert!(matches!(
            server.handle_input(&out, 0),
            Err(SessionError::Protocol(_))
        ));
    }
}
