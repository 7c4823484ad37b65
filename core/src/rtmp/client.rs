//! The client side of one RTMP connection: connect, then publish or play.
//!
//! Used by relays (pull and push) and the load tool. Create it with [`ClientSession::new`], ask
//! for [`ClientSession::publish`] or [`ClientSession::play`] (queued until connected), send
//! [`ClientSession::poll_transmit`] bytes to the server and feed its answer to
//! [`ClientSession::handle_input`]; drain [`ClientSession::poll_event`] after each input.

use std::collections::VecDeque;

use bytes::Bytes;

use super::chunk::Message;
use super::command::{self, code, status_fields, Command, DataMessage};
use super::connection::{csid, SessionError, Transport};
use super::control::{ControlMessage, UserControlEvent};
use super::handshake::ClientHandshake;
use super::message_type;
use crate::amf::Value;
use crate::limits::Limits;

/// Settings of a client session.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Application to connect to (the first path segment of the URL).
    pub app: String,
    /// The full `rtmp://host:port/app` URL, sent as `tcUrl`.
    pub tc_url: String,
    /// `flashVer` sent in connect.
    pub flash_ver: String,
    /// Chunk size to send with (announced after connect).
    pub chunk_size: u32,
    /// Use the digest (complex) handshake.
    pub complex_handshake: bool,
    /// Buffer length asked of the server when playing, milliseconds.
    pub buffer_ms: u32,
    /// Protocol limits.
    pub limits: Limits,
    /// FourCCs listed as `fourCcList` in connect (Enhanced RTMP: the server may then send
    /// `hvc1`, `av01`, ... tags); empty: not sent, the server sends legacy tags.
    pub four_cc_list: Vec<String>,
}

impl ClientConfig {
    /// Settings for `rtmp://host[:port]/app`.
    pub fn new(app: &str, tc_url: &str) -> Self {
        ClientConfig {
            app: app.to_owned(),
            tc_url: tc_url.to_owned(),
            flash_ver: "FMLE/3.0 (compatible; rill)".to_owned(),
            chunk_size: 4096,
            complex_handshake: false,
            buffer_ms: 1000,
            limits: Limits::default(),
            four_cc_list: Vec::new(),
        }
    }
}

/// What happened on a client connection.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server accepted connect.
    Connected,
    /// The server accepted publish; media may be sent with [`ClientSession::send_media`].
    Publishing {
        /// Message stream id to publish on.
        stream_id: u32,
    },
    /// The server started playing the stream; media events follow.
    Playing {
        /// Message stream id being played.
        stream_id: u32,
    },
    /// The server refused connect, publish or play.
    Rejected {
        /// The status code, e.g. `NetStream.Publish.BadName`.
        code: String,
        /// The server's description.
        description: String,
    },
    /// Any other status the server sent (e.g. `NetStream.Play.UnpublishNotify`).
    Status {
        /// Status level.
        level: String,
        /// Status code.
        code: String,
        /// Description.
        description: String,
    },
    /// An audio or video message while playing (an FLV tag body).
    Media {
        /// [`message_type::AUDIO`] or [`message_type::VIDEO`].
        type_id: u8,
        /// Timestamp, milliseconds.
        timestamp: u32,
        /// The tag body.
        payload: Bytes,
    },
    /// Metadata while playing.
    Metadata {
        /// The metadata object.
        value: Value,
    },
    /// The stream ended (Stream EOF or Play.Stop / UnpublishNotify).
    StreamEnded,
}

#[derive(Clone, Debug, PartialEq)]
enum Goal {
    None,
    Publish(String),
    Play(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    Connecting,
    Connected,
    CreatingStream,
    Starting,
    Active,
}

const TID_CONNECT: f64 = 1.0;
const TID_CREATE_STREAM: f64 = 4.0;

/// The client side of one RTMP connection. See the module docs.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    handshake: ClientHandshake,
    transport: Transport,
    phase: Phase,
    goal: Goal,
    stream_id: u32,
    events: VecDeque<ClientEvent>,
}

impl ClientSession {
    /// Starts a connection; C0+C1 are ready in [`ClientSession::poll_transmit`].
    pub fn new(config: ClientConfig, random: &[u8], now_ms: u64) -> Self {
        ClientSession {
            handshake: ClientHandshake::new(random, now_ms as u32, config.complex_handshake),
            transport: Transport::new(&config.limits),
            config,
            phase: Phase::Handshake,
            goal: Goal::None,
            stream_id: 0,
            events: VecDeque::new(),
        }
    }

    /// Publishes `stream_name` (may carry `?query`) once connected.
    pub fn publish(&mut self, stream_name: &str) {
        self.goal = Goal::Publish(stream_name.to_owned());
        self.start_goal();
    }

    /// Plays `stream_name` (may carry `?query`) once connected.
    pub fn play(&mut self, stream_name: &str) {
        self.goal = Goal::Play(stream_name.to_owned());
        self.start_goal();
    }

    /// The message stream id media flows on (0 before publish/play started).
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Feeds bytes received from the server.
    pub fn handle_input(&mut self, mut data: &[u8], _now_ms: u64) -> Result<(), SessionError> {
        if self.phase == Phase::Handshake {
            let used = self.handshake.read(data)?;
            data = data.get(used..).unwrap_or_default();
            if !self.handshake.is_done() {
                return Ok(());
            }
            self.send_connect();
        }
        self.transport.push(data);
        while let Some(msg) = self.transport.poll_message()? {
            self.on_message(msg)?;
        }
        Ok(())
    }

    /// Bytes to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if let Some(b) = self.handshake.poll_transmit() {
            return Some(b);
        }
        self.transport.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Sends an audio or video message (an FLV tag body) while publishing.
    pub fn send_media(
        &mut self,
        type_id: u8,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<(), SessionError> {
        if self.phase != Phase::Active || !matches!(self.goal, Goal::Publish(_)) {
            return Err(SessionError::Protocol(
                "send_media before publishing started".into(),
            ));
        }
        let chunk_stream = if type_id == message_type::AUDIO {
            csid::AUDIO
        } else {
            csid::VIDEO
        };
        self.transport
            .send_message(chunk_stream, timestamp, type_id, self.stream_id, payload);
        Ok(())
    }

    /// Sends `@setDataFrame("onMetaData", value)` while publishing.
    pub fn send_metadata(&mut self, value: &Value) -> Result<(), SessionError> {
        if self.phase != Phase::Active {
            return Err(SessionError::Protocol(
                "send_metadata before publishing started".into(),
            ));
        }
        let mut body = bytes::BytesMut::new();
        crate::amf::amf0::encode_all(
            &[
                Value::String("@setDataFrame".into()),
                Value::String("onMetaData".into()),
                value.clone(),
            ],
            &mut body,
        );
        self.transport.send_message(
            csid::DATA,
            0,
            message_type::DATA_AMF0,
            self.stream_id,
            &body,
        );
        Ok(())
    }

    /// Stops publishing or playing politely (FCUnpublish / closeStream / deleteStream).
    pub fn close(&mut self) {
        if self.stream_id == 0 {
            return;
        }
        if let Goal::Publish(name) = &self.goal {
            let cmd = Command::FcUnpublish {
                transaction_id: 0.0,
                stream_name: name.clone(),
            };
            self.transport.send_command(csid::COMMAND, 0, &cmd);
        }
        self.transport.send_command(
            csid::STREAM_COMMAND,
            self.stream_id,
            &Command::CloseStream {
                transaction_id: 0.0,
            },
        );
        let id = f64::from(self.stream_id);
        self.transport.send_command(
            csid::COMMAND,
            0,
            &Command::DeleteStream {
                transaction_id: 0.0,
                stream_id: id,
            },
        );
        self.phase = Phase::Connected;
        self.stream_id = 0;
    }

    fn send_connect(&mut self) {
        self.phase = Phase::Connecting;
        self.transport.set_out_chunk_size(self.config.chunk_size);
        let mut fields = vec![
            ("app".into(), Value::String(self.config.app.clone())),
            ("type".into(), Value::String("nonprivate".into())),
            (
                "flashVer".into(),
                Value::String(self.config.flash_ver.clone()),
            ),
            ("tcUrl".into(), Value::String(self.config.tc_url.clone())),
            ("fpad".into(), Value::Boolean(false)),
            ("capabilities".into(), Value::Number(15.0)),
            ("audioCodecs".into(), Value::Number(4071.0)),
            ("videoCodecs".into(), Value::Number(252.0)),
            ("videoFunction".into(), Value::Number(1.0)),
        ];
        if !self.config.four_cc_list.is_empty() {
            let list = self.config.four_cc_list.iter().cloned().map(Value::String);
            fields.push(("fourCcList".into(), Value::StrictArray(list.collect())));
        }
        let object = Value::Object(fields);
        let cmd = Command::Connect {
            transaction_id: TID_CONNECT,
            command_object: object,
            args: vec![],
        };
        self.transport.send_command(csid::COMMAND, 0, &cmd);
    }

    fn start_goal(&mut self) {
        if self.phase != Phase::Connected {
            return;
        }
        match &self.goal {
            Goal::None => return,
            Goal::Publish(name) => {
                let release = Command::ReleaseStream {
                    transaction_id: 2.0,
                    stream_name: name.clone(),
                };
                let fc = Command::FcPublish {
                    transaction_id: 3.0,
                    stream_name: name.clone(),
                };
                self.transport.send_command(csid::COMMAND, 0, &release);
                self.transport.send_command(csid::COMMAND, 0, &fc);
            }
            Goal::Play(_) => {}
        }
        self.phase = Phase::CreatingStream;
        self.transport.send_command(
            csid::COMMAND,
            0,
            &Command::CreateStream {
                transaction_id: TID_CREATE_STREAM,
            },
        );
    }

    fn on_message(&mut self, msg: Message) -> Result<(), SessionError> {
        match msg.type_id {
            message_type::COMMAND_AMF0 | message_type::COMMAND_AMF3 => {
                let amf3 = msg.type_id == message_type::COMMAND_AMF3;
                let cmd = Command::decode(&msg.payload, amf3, self.config.limits.max_amf_depth)?;
                self.on_command(cmd);
            }
            message_type::DATA_AMF0 | message_type::DATA_AMF3 => {
                let amf3 = msg.type_id == message_type::DATA_AMF3;
                if let Ok(data) =
                    DataMessage::decode(&msg.payload, amf3, self.config.limits.max_amf_depth)
                {
                    if let Some(value) = data.metadata() {
                        self.events.push_back(ClientEvent::Metadata {
                            value: value.clone(),
                        });
                    }
                }
            }
            message_type::AUDIO | message_type::VIDEO
                if self.phase == Phase::Active && matches!(self.goal, Goal::Play(_)) =>
            {
                self.events.push_back(ClientEvent::Media {
                    type_id: msg.type_id,
                    timestamp: msg.timestamp,
                    payload: msg.payload,
                });
            }
            message_type::USER_CONTROL => {
                if let Ok(Some(ControlMessage::UserControl(UserControlEvent::StreamEof(_)))) =
                    ControlMessage::decode(msg.type_id, &msg.payload)
                {
                    self.events.push_back(ClientEvent::StreamEnded);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Result {
                transaction_id,
                args,
            } => {
                if transaction_id == TID_CONNECT && self.phase == Phase::Connecting {
                    self.phase = Phase::Connected;
                    self.events.push_back(ClientEvent::Connected);
                    self.start_goal();
                } else if transaction_id == TID_CREATE_STREAM && self.phase == Phase::CreatingStream
                {
                    let id = args.iter().rev().find_map(Value::as_f64).unwrap_or(1.0);
                    self.stream_id = if (1.0..=f64::from(u32::MAX)).contains(&id) {
                        id as u32
                    } else {
                        1
                    };
                    self.phase = Phase::Starting;
                    self.send_start();
                }
            }
            Command::Error { args, .. } => {
                let info = args
                    .iter()
                    .find(|v| v.get("code").is_some())
                    .cloned()
                    .unwrap_or(Value::Null);
                let (_, c, d) = status_fields(&info);
                self.events.push_back(ClientEvent::Rejected {
                    code: c.unwrap_or("_error").to_owned(),
                    description: d.unwrap_or("").to_owned(),
                });
            }
            Command::OnStatus { info } => self.on_status(&info),
            _ => {}
        }
    }

    fn send_start(&mut self) {
        let stream_id = self.stream_id;
        match self.goal.clone() {
            Goal::Publish(name) => {
                let cmd = Command::Publish {
                    transaction_id: 5.0,
                    stream_name: name,
                    publish_type: "live".into(),
                };
                self.transport
                    .send_command(csid::STREAM_COMMAND, stream_id, &cmd);
            }
            Goal::Play(name) => {
                let cmd = Command::Play {
                    transaction_id: 5.0,
                    stream_name: name,
                    start: -2.0,
                    duration: -1.0,
                    reset: false,
                };
                self.transport
                    .send_command(csid::STREAM_COMMAND, stream_id, &cmd);
                self.transport.send_control(&ControlMessage::UserControl(
                    UserControlEvent::SetBufferLength {
                        stream_id,
                        millis: self.config.buffer_ms,
                    },
                ));
            }
            Goal::None => {}
        }
    }

    fn on_status(&mut self, info: &Value) {
        let (lvl, c, d) = status_fields(info);
        let (lvl, c, d) = (lvl.unwrap_or(""), c.unwrap_or(""), d.unwrap_or(""));
        match c {
            code::PUBLISH_START if self.phase == Phase::Starting => {
                self.phase = Phase::Active;
                self.events.push_back(ClientEvent::Publishing {
                    stream_id: self.stream_id,
                });
            }
            code::PLAY_START if self.phase == Phase::Starting => {
                self.phase = Phase::Active;
                self.events.push_back(ClientEvent::Playing {
                    stream_id: self.stream_id,
                });
            }
            code::PLAY_STOP | code::PLAY_UNPUBLISH_NOTIFY if self.phase == Phase::Active => {
                self.events.push_back(ClientEvent::StreamEnded);
            }
            _ if lvl == command::level::ERROR => {
                self.events.push_back(ClientEvent::Rejected {
                    code: c.to_owned(),
                    description: d.to_owned(),
                });
            }
            _ => self.events.push_back(ClientEvent::Status {
                level: lvl.to_owned(),
                code: c.to_owned(),
                description: d.to_owned(),
            }),
        }
    }
}
