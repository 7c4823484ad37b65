//! Typed RTMP commands (NetConnection / NetStream) and data messages, to and from AMF.
//!
//! Command messages (type 20, or 17 for AMF3) carry a name, a transaction id and arguments.
//! Data messages (type 18, or 15) carry `@setDataFrame` / `onMetaData`. This module gives both a
//! typed form; unknown commands are kept as [`Command::Other`] so sessions can answer or ignore them.

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::amf::{self, AmfError, Value};

/// A decoded command message.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// `connect(commandObject, ...)`: opens the NetConnection to an application.
    Connect {
        /// Transaction id (1 by convention).
        transaction_id: f64,
        /// The command object: app, tcUrl, flashVer, objectEncoding, ...
        command_object: Value,
        /// Optional user arguments after the command object.
        args: Vec<Value>,
    },
    /// `createStream()`: asks for a message stream id.
    CreateStream {
        /// Transaction id.
        transaction_id: f64,
    },
    /// `releaseStream(name)`: FMS-style preparation before publish (answered, otherwise ignored).
    ReleaseStream {
        /// Transaction id.
        transaction_id: f64,
        /// Stream name.
        stream_name: String,
    },
    /// `FCPublish(name)`: FMS-style publish preparation.
    FcPublish {
        /// Transaction id.
        transaction_id: f64,
        /// Stream name.
        stream_name: String,
    },
    /// `FCUnpublish(name)`: the publisher is about to stop.
    FcUnpublish {
        /// Transaction id.
        transaction_id: f64,
        /// Stream name.
        stream_name: String,
    },
    /// `publish(name, type)`: starts publishing on the message stream the command arrived on.
    Publish {
        /// Transaction id.
        transaction_id: f64,
        /// Stream name, possibly with `?query`.
        stream_name: String,
        /// `live`, `record` or `append`.
        publish_type: String,
    },
    /// `play(name, start, duration, reset)`.
    Play {
        /// Transaction id.
        transaction_id: f64,
        /// Stream name, possibly with `?query`.
        stream_name: String,
        /// Start: -2 live or recorded, -1 live only, >= 0 seconds into a recording.
        start: f64,
        /// Duration; -1 plays to the end.
        duration: f64,
        /// Whether to flush any previous playlist.
        reset: bool,
    },
    /// `play2(parameters)`: switches bitrates; parameters is an object with `streamName`, ...
    Play2 {
        /// Transaction id.
        transaction_id: f64,
        /// The NetStreamPlayOptions object.
        parameters: Value,
    },
    /// `deleteStream(streamId)`.
    DeleteStream {
        /// Transaction id.
        transaction_id: f64,
        /// The message stream id to delete.
        stream_id: f64,
    },
    /// `closeStream()`: stops playing or publishing on the message stream it arrives on.
    CloseStream {
        /// Transaction id.
        transaction_id: f64,
    },
    /// `getStreamLength(name)`: asked by some players before play.
    GetStreamLength {
        /// Transaction id.
        transaction_id: f64,
        /// Stream name.
        stream_name: String,
    },
    /// `receiveAudio(flag)`.
    ReceiveAudio {
        /// Whether the player wants audio.
        flag: bool,
    },
    /// `receiveVideo(flag)`.
    ReceiveVideo {
        /// Whether the player wants video.
        flag: bool,
    },
    /// `pause(flag, milliseconds)`.
    Pause {
        /// Transaction id.
        transaction_id: f64,
        /// True to pause, false to resume.
        pause: bool,
        /// Stream time at which the pause happened.
        millis: f64,
    },
    /// `_checkbw()`: bandwidth check request (answered with a plain `_result`).
    CheckBw {
        /// Transaction id.
        transaction_id: f64,
    },
    /// `_result`: success answer to a transaction.
    Result {
        /// The transaction answered.
        transaction_id: f64,
        /// Command object (often null) and information values.
        args: Vec<Value>,
    },
    /// `_error`: failure answer to a transaction.
    Error {
        /// The transaction answered.
        transaction_id: f64,
        /// Command object (often null) and information values.
        args: Vec<Value>,
    },
    /// `onStatus(null, info)`: NetStream status event.
    OnStatus {
        /// The info object: level, code, description.
        info: Value,
    },
    /// Any other command, kept whole.
    Other {
        /// Command name.
        name: String,
        /// Transaction id (0 when absent).
        transaction_id: f64,
        /// Everything after the transaction id.
        args: Vec<Value>,
    },
}

/// Why a command or data message could not be decoded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CommandError {
    /// The AMF body is malformed.
    Amf(AmfError),
    /// The message is empty or its first value is not a string name.
    MissingName,
    /// A required argument is missing or of the wrong type.
    BadArgument {
        /// Command name.
        command: &'static str,
        /// Which argument.
        field: &'static str,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Amf(e) => write!(f, "rtmp command: {e}"),
            CommandError::MissingName => {
                write!(
                    f,
                    "rtmp command: first value (command name) missing or not a string"
                )
            }
            CommandError::BadArgument { command, field } => {
                write!(
                    f,
                    "rtmp command: {command}: argument {field} missing or of the wrong type"
                )
            }
        }
    }
}

impl std::error::Error for CommandError {}

impl From<AmfError> for CommandError {
    fn from(e: AmfError) -> Self {
        CommandError::Amf(e)
    }
}

/// Decodes the AMF values of a command or data message body.
///
/// `amf3` is true for message types 15 and 17, whose body starts with a format byte (0) and then
/// AMF0 values that may switch to AMF3 one value at a time.
pub fn decode_values(payload: &[u8], amf3: bool, max_depth: usize) -> Result<Vec<Value>, AmfError> {
    let body = match (amf3, payload.first()) {
        (true, Some(0)) => payload.get(1..).unwrap_or_default(),
        _ => payload,
    };
    amf::amf0::decode_all(body, max_depth)
}

fn string_arg(
    values: &[Value],
    index: usize,
    command: &'static str,
    field: &'static str,
) -> Result<String, CommandError> {
    values
        .get(index)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(CommandError::BadArgument { command, field })
}

fn number_or(values: &[Value], index: usize, default: f64) -> f64 {
    values.get(index).and_then(Value::as_f64).unwrap_or(default)
}

fn bool_arg(values: &[Value], index: usize) -> bool {
    match values.get(index) {
        Some(Value::Boolean(b)) => *b,
        Some(v) => v.as_f64().is_some_and(|n| n != 0.0),
        None => false,
    }
}

impl Command {
    /// Decodes a command message body (type 20, or 17 with `amf3`).
    pub fn decode(payload: &[u8], amf3: bool, max_depth: usize) -> Result<Command, CommandError> {
        let values = decode_values(payload, amf3, max_depth)?;
        Self::from_values(values)
    }

    /// Builds a typed command from decoded values: name, transaction id, arguments.
    pub fn from_values(values: Vec<Value>) -> Result<Command, CommandError> {
        let mut iter = values.into_iter();
        let name = match iter.next() {
            Some(Value::String(s)) => s,
            _ => return Err(CommandError::MissingName),
        };
        let transaction_id = iter.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        // Arguments after the transaction id; for most commands the first is the null command object.
        let rest: Vec<Value> = iter.collect();
        let args = rest.get(1..).unwrap_or_default();
        let command = match name.as_str() {
            "connect" => Command::Connect {
                transaction_id,
                command_object: rest.first().cloned().unwrap_or(Value::Null),
                args: args.to_vec(),
            },
            "createStream" => Command::CreateStream { transaction_id },
            "releaseStream" => Command::ReleaseStream {
                transaction_id,
                stream_name: string_arg(args, 0, "releaseStream", "streamName")?,
            },
            "FCPublish" => Command::FcPublish {
                transaction_id,
                stream_name: string_arg(args, 0, "FCPublish", "streamName")?,
            },
            "FCUnpublish" => Command::FcUnpublish {
                transaction_id,
                stream_name: string_arg(args, 0, "FCUnpublish", "streamName").unwrap_or_default(),
            },
            "publish" => Command::Publish {
                transaction_id,
                stream_name: string_arg(args, 0, "publish", "publishingName")?,
                publish_type: string_arg(args, 1, "publish", "publishingType")
                    .unwrap_or_else(|_| "live".to_owned()),
            },
            "play" => Command::Play {
                transaction_id,
                stream_name: string_arg(args, 0, "play", "streamName")?,
                start: number_or(args, 1, -2.0),
                duration: number_or(args, 2, -1.0),
                reset: bool_arg(args, 3),
            },
            "play2" => Command::Play2 {
                transaction_id,
                parameters: args.first().cloned().unwrap_or(Value::Null),
            },
            "deleteStream" => Command::DeleteStream {
                transaction_id,
                stream_id: number_or(args, 0, 0.0),
            },
            "closeStream" => Command::CloseStream { transaction_id },
            "getStreamLength" => Command::GetStreamLength {
                transaction_id,
                stream_name: string_arg(args, 0, "getStreamLength", "streamName")
                    .unwrap_or_default(),
            },
            "receiveAudio" => Command::ReceiveAudio {
                flag: bool_arg(args, 0),
            },
            "receiveVideo" => Command::ReceiveVideo {
                flag: bool_arg(args, 0),
            },
            "pause" => Command::Pause {
                transaction_id,
                pause: bool_arg(args, 0),
                millis: number_or(args, 1, 0.0),
            },
            "_checkbw" => Command::CheckBw { transaction_id },
            "_result" => Command::Result {
                transaction_id,
                args: rest,
            },
            "_error" => Command::Error {
                transaction_id,
                args: rest,
            },
            "onStatus" => Command::OnStatus {
                info: args
                    .first()
                    .cloned()
                    .or_else(|| rest.first().cloned())
                    .unwrap_or(Value::Null),
            },
            _ => Command::Other {
                name,
                transaction_id,
                args: rest,
            },
        };
        Ok(command)
    }

    /// The command's name on the wire.
    pub fn name(&self) -> &str {
        match self {
            Command::Connect { .. } => "connect",
            Command::CreateStream { .. } => "createStream",
            Command::ReleaseStream { .. } => "releaseStream",
            Command::FcPublish { .. } => "FCPublish",
            Command::FcUnpublish { .. } => "FCUnpublish",
            Command::Publish { .. } => "publish",
            Command::Play { .. } => "play",
            Command::Play2 { .. } => "play2",
            Command::DeleteStream { .. } => "deleteStream",
            Command::CloseStream { .. } => "closeStream",
            Command::GetStreamLength { .. } => "getStreamLength",
            Command::ReceiveAudio { .. } => "receiveAudio",
            Command::ReceiveVideo { .. } => "receiveVideo",
            Command::Pause { .. } => "pause",
            Command::CheckBw { .. } => "_checkbw",
            Command::Result { .. } => "_result",
            Command::Error { .. } => "_error",
            Command::OnStatus { .. } => "onStatus",
            Command::Other { name, .. } => name,
        }
    }

    /// The AMF values of this command: name, transaction id, command object, arguments.
    pub fn to_values(&self) -> Vec<Value> {
        let name = Value::String(self.name().to_owned());
        let with = |tid: f64, rest: Vec<Value>| {
            let mut v = vec![name.clone(), Value::Number(tid)];
            v.extend(rest);
            v
        };
        let s = |x: &str| Value::String(x.to_owned());
        match self {
            Command::Connect {
                transaction_id,
                command_object,
                args,
            } => {
                let mut rest = vec![command_object.clone()];
                rest.extend(args.iter().cloned());
                with(*transaction_id, rest)
            }
            Command::CreateStream { transaction_id }
            | Command::CloseStream { transaction_id }
            | Command::CheckBw { transaction_id } => with(*transaction_id, vec![Value::Null]),
            Command::ReleaseStream {
                transaction_id,
                stream_name,
            }
            | Command::FcPublish {
                transaction_id,
                stream_name,
            }
            | Command::FcUnpublish {
                transaction_id,
                stream_name,
            }
            | Command::GetStreamLength {
                transaction_id,
                stream_name,
            } => with(*transaction_id, vec![Value::Null, s(stream_name)]),
            Command::Publish {
                transaction_id,
                stream_name,
                publish_type,
            } => with(
                *transaction_id,
                vec![Value::Null, s(stream_name), s(publish_type)],
            ),
            Command::Play {
                transaction_id,
                stream_name,
                start,
                duration,
                reset,
            } => with(
                *transaction_id,
                vec![
                    Value::Null,
                    s(stream_name),
                    Value::Number(*start),
                    Value::Number(*duration),
                    Value::Boolean(*reset),
                ],
            ),
            Command::Play2 {
                transaction_id,
                parameters,
            } => with(*transaction_id, vec![Value::Null, parameters.clone()]),
            Command::DeleteStream {
                transaction_id,
                stream_id,
            } => with(
                *transaction_id,
                vec![Value::Null, Value::Number(*stream_id)],
            ),
            Command::ReceiveAudio { flag } | Command::ReceiveVideo { flag } => {
                with(0.0, vec![Value::Null, Value::Boolean(*flag)])
            }
            Command::Pause {
                transaction_id,
                pause,
                millis,
            } => with(
                *transaction_id,
                vec![Value::Null, Value::Boolean(*pause), Value::Number(*millis)],
            ),
            Command::Result {
                transaction_id,
                args,
            }
            | Command::Error {
                transaction_id,
                args,
            }
            | Command::Other {
                transaction_id,
                args,
                ..
            } => with(*transaction_id, args.clone()),
            Command::OnStatus { info } => with(0.0, vec![Value::Null, info.clone()]),
        }
    }

    /// Encodes this command as an AMF0 command message body (type 20).
    pub fn encode(&self, out: &mut BytesMut) {
        amf::amf0::encode_all(&self.to_values(), out);
    }

    /// Encodes this command into a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(128);
        self.encode(&mut out);
        out.freeze()
    }
}

/// A decoded data message (type 18, or 15 with AMF3).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DataMessage {
    /// `@setDataFrame("onMetaData", metadata)`, sent by publishers; the server stores and
    /// forwards it to players as `onMetaData(metadata)`.
    SetDataFrame {
        /// The handler name, normally `onMetaData`.
        handler: String,
        /// The metadata object or ECMA array.
        value: Value,
    },
    /// `onMetaData(metadata)` as sent to players (and by some publishers directly).
    OnMetaData {
        /// The metadata object or ECMA array.
        value: Value,
    },
    /// Any other data message, kept whole.
    Other {
        /// The handler name.
        name: String,
        /// The values after the name.
        values: Vec<Value>,
    },
}

impl DataMessage {
    /// Decodes a data message body.
    pub fn decode(
        payload: &[u8],
        amf3: bool,
        max_depth: usize,
    ) -> Result<DataMessage, CommandError> {
        let values = decode_values(payload, amf3, max_depth)?;
        let mut iter = values.into_iter();
        let name = match iter.next() {
            Some(Value::String(s)) => s,
            _ => return Err(CommandError::MissingName),
        };
        Ok(match name.as_str() {
            "@setDataFrame" => {
                let handler = match iter.next() {
                    Some(Value::String(h)) => h,
                    _ => {
                        return Err(CommandError::BadArgument {
                            command: "@setDataFrame",
                            field: "handler",
                        })
                    }
                };
                DataMessage::SetDataFrame {
                    handler,
                    value: iter.next().unwrap_or(Value::Null),
                }
            }
            "onMetaData" => DataMessage::OnMetaData {
                value: iter.next().unwrap_or(Value::Null),
            },
            _ => DataMessage::Other {
                name,
                values: iter.collect(),
            },
        })
    }

    /// The metadata carried, if this is `@setDataFrame("onMetaData", ..)` or `onMetaData(..)`.
    pub fn metadata(&self) -> Option<&Value> {
        match self {
            DataMessage::SetDataFrame { handler, value } if handler == "onMetaData" => Some(value),
            DataMessage::OnMetaData { value } => Some(value),
            _ => None,
        }
    }
}

/// Encodes `onMetaData(value)` as an AMF0 data message body, the form players expect.
pub fn encode_on_metadata(value: &Value) -> Bytes {
    let mut out = BytesMut::with_capacity(256);
    amf::amf0::encode_all(
        &[Value::String("onMetaData".to_owned()), value.clone()],
        &mut out,
    );
    out.freeze()
}

/// Status levels of NetConnection / NetStream info objects.
pub mod level {
    /// Success or information.
    pub const STATUS: &str = "status";
    /// Failure.
    pub const ERROR: &str = "error";
    /// Warning.
    pub const WARNING: &str = "warning";
}

/// Standard NetConnection / NetStream status codes.
pub mod code {
    /// The connection attempt succeeded.
    pub const CONNECT_SUCCESS: &str = "NetConnection.Connect.Success";
    /// The connection attempt was refused (bad app, auth failure).
    pub const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";
    /// The connection was closed.
    pub const CONNECT_CLOSED: &str = "NetConnection.Connect.Closed";
    /// Publishing started.
    pub const PUBLISH_START: &str = "NetStream.Publish.Start";
    /// Publishing refused: the name is already being published or not allowed.
    pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
    /// Publishing refused by authorization (simple auth or the HTTP callback).
    pub const PUBLISH_UNAUTHORIZED: &str = "NetStream.Publish.Unauthorized";
    /// Publishing stopped.
    pub const UNPUBLISH_SUCCESS: &str = "NetStream.Unpublish.Success";
    /// Playlist reset before play.
    pub const PLAY_RESET: &str = "NetStream.Play.Reset";
    /// Playback started.
    pub const PLAY_START: &str = "NetStream.Play.Start";
    /// Playback stopped.
    pub const PLAY_STOP: &str = "NetStream.Play.Stop";
    /// Playback failed (generic).
    pub const PLAY_FAILED: &str = "NetStream.Play.Failed";
    /// The requested stream does not exist.
    pub const PLAY_STREAM_NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
    /// The publisher of the stream being played started publishing.
    pub const PLAY_PUBLISH_NOTIFY: &str = "NetStream.Play.PublishNotify";
    /// The publisher of the stream being played stopped publishing.
    pub const PLAY_UNPUBLISH_NOTIFY: &str = "NetStream.Play.UnpublishNotify";
    /// The stream was paused.
    pub const PAUSE_NOTIFY: &str = "NetStream.Pause.Notify";
    /// The stream was resumed.
    pub const UNPAUSE_NOTIFY: &str = "NetStream.Unpause.Notify";
    /// Generic NetStream failure.
    pub const STREAM_FAILED: &str = "NetStream.Failed";
}

/// Builds a status info object `{level, code, description}`.
pub fn status_info(level: &str, code: &str, description: &str) -> Value {
    Value::Object(vec![
        ("level".to_owned(), Value::String(level.to_owned())),
        ("code".to_owned(), Value::String(code.to_owned())),
        (
            "description".to_owned(),
            Value::String(description.to_owned()),
        ),
    ])
}

/// The `(level, code, description)` strings of a status info object, where present.
pub fn status_fields(info: &Value) -> (Option<&str>, Option<&str>, Option<&str>) {
    (
        info.get("level").and_then(Value::as_str),
        info.get("code").and_then(Value::as_str),
        info.get("description").and_then(Value::as_str),
    )
}
