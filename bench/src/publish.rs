//! `rill-bench publish`: sends an FLV file to an RTMP server in real time.
//!
//! Tags are paced by their timestamps against a monotonic clock started when the server
//! accepts the publish. With `--loop` the file repeats with continuous timestamps; with
//! `--stamp` every H.264 frame carries its wall-clock send time (see [`crate::stamp`]).

use std::fmt;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rill_core::codec::h264::AvcConfig;
use rill_core::flv::{frame_from_video_tag, FlvDemuxer, FlvError, Tag, TagType};
use rill_core::media::{Codec, FrameKind};
use rill_core::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use rill_core::rtmp::command::DataMessage;
use rill_core::rtmp::connection::SessionError;
use serde_json::{json, Value};

use crate::net::{self, connect_done, read_some, OutQueue, ReadOutcome};
use crate::pacing::{wait_us, Playlist};
use crate::stamp::{self, Stamp};
use crate::url::RtmpUrl;

/// Largest file accepted (it is read into memory once).
pub const MAX_FILE_LEN: u64 = 1024 * 1024 * 1024;
/// Bytes queued for the socket beyond which pacing waits for the socket to drain.
const MAX_OUT: usize = 8 * 1024 * 1024;
/// How long connect + publish may take.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer size.
const READ_BUF: usize = 64 * 1024;
/// A tag sent later than this after it was due counts as late.
const LATE_MS: u64 = 100;

/// Settings of a `publish` run.
#[derive(Clone, Debug)]
pub struct PublishConfig {
    /// Where to publish.
    pub url: RtmpUrl,
    /// Repeat the file forever (until `duration`).
    pub looping: bool,
    /// Embed send-time stamps in H.264 frames.
    pub stamp: bool,
    /// Stop after this long (from the start of publishing), if set.
    pub duration: Option<Duration>,
    /// Print progress on stderr once a second.
    pub progress: bool,
}

/// Why publishing failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PublishError {
    /// Reading the file or the socket failed.
    Io(io::Error),
    /// The file is larger than [`MAX_FILE_LEN`].
    FileTooLarge {
        /// Its length.
        len: u64,
    },
    /// The file is not valid FLV.
    Flv(FlvError),
    /// The RTMP session failed.
    Session(SessionError),
    /// The server refused connect or publish.
    Rejected {
        /// Status code.
        code: String,
        /// Description.
        description: String,
    },
    /// The server closed the connection.
    Closed,
    /// Connect and publish did not finish in time.
    Timeout,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Io(e) => write!(f, "publish: {e}"),
            PublishError::FileTooLarge { len } => {
                write!(f, "publish: file of {len} bytes exceeds {MAX_FILE_LEN}")
            }
            PublishError::Flv(e) => write!(f, "publish: {e}"),
            PublishError::Session(e) => write!(f, "publish: {e}"),
            PublishError::Rejected { code, description } => {
                write!(f, "publish: server refused: {code} ({description})")
            }
            PublishError::Closed => write!(f, "publish: server closed the connection"),
            PublishError::Timeout => write!(
                f,
                "publish: not publishing {}s after connecting",
                START_TIMEOUT.as_secs()
            ),
        }
    }
}

impl std::error::Error for PublishError {}

impl From<io::Error> for PublishError {
    fn from(e: io::Error) -> Self {
        PublishError::Io(e)
    }
}

/// An FLV file read into memory.
#[derive(Clone, Debug)]
pub struct FlvFile {
    /// Its tags in file order.
    pub tags: Vec<Tag>,
    /// The `onMetaData` object of its first script tag, if any.
    pub metadata: Option<rill_core::amf::Value>,
    /// NAL unit length size from its AVC sequence header (4 if none).
    pub nalu_length_size: u8,
}

/// Reads and demuxes a whole FLV file.
pub fn load_flv(path: &Path) -> Result<FlvFile, PublishError> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_FILE_LEN {
        return Err(PublishError::FileTooLarge { len });
    }
    let data = std::fs::read(path)?;
    let mut demux = FlvDemuxer::default();
    demux.push(&data);
    drop(data);
    let mut tags = Vec::new();
    while let Some(tag) = demux.poll_tag().map_err(PublishError::Flv)? {
        tags.push(tag);
    }
    let metadata = tags
        .iter()
        .filter(|t| t.tag_type == TagType::Script)
        .find_map(|t| {
            DataMessage::decode(&t.body, false, 32)
                .ok()?
                .metadata()
                .cloned()
        });
    let nalu_length_size = tags
        .iter()
        .filter(|t| t.tag_type == TagType::Video)
        .find_map(|t| {
            let f = frame_from_video_tag(t.timestamp, &t.body).ok()??;
            if f.codec != Codec::H264 || f.kind != FrameKind::Config {
                return None;
            }
            AvcConfig::parse(&f.payload)
                .ok()
                .map(|c| c.nalu_length_size)
        })
        .unwrap_or(4);
    Ok(FlvFile {
        tags,
        metadata,
        nalu_length_size,
    })
}

/// What a publish run did.
#[derive(Clone, Debug, Default)]
pub struct PublishReport {
    /// Tags sent.
    pub tags: u64,
    /// Tag payload bytes sent.
    pub payload_bytes: u64,
    /// Stamped frames sent.
    pub stamps: u64,
    /// Seconds from publish start to the end.
    pub seconds: f64,
    /// Tags sent more than 100 ms after they were due.
    pub late_tags: u64,
    /// Passes over the file started.
    pub loops: u64,
}

impl PublishReport {
    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "tags": self.tags,
            "payload_bytes": self.payload_bytes,
            "stamps": self.stamps,
            "seconds": crate::stats::round3(self.seconds),
            "payload_mbps": crate::stats::round3(if self.seconds > 0.0 {
                self.payload_bytes as f64 * 8.0 / self.seconds / 1e6
            } else {
                0.0
            }),
            "late_tags": self.late_tags,
            "loops": self.loops,
        })
    }
}

/// Builds the stamped body of a video tag into `scratch`, or returns `false` when the tag is
/// not a coded H.264 frame.
fn stamped_body(tag: &Tag, length_size: u8, stamp: Stamp, scratch: &mut Vec<u8>) -> bool {
    let Ok(Some(frame)) = frame_from_video_tag(tag.timestamp, &tag.body) else {
        return false;
    };
    if frame.codec != Codec::H264 || frame.kind != FrameKind::Coded {
        return false;
    }
    // The payload is a slice at the end of the body: what precedes it is the tag header.
    let header_len = tag.body.len().saturating_sub(frame.payload.len());
    let Some(header) = tag.body.get(..header_len) else {
        return false;
    };
    scratch.clear();
    scratch.extend_from_slice(header);
    stamp::insert_stamp(&frame.payload, length_size, stamp, scratch)
}

/// Connects, publishes `file` and paces it out until it ends (or `duration` passes).
pub fn run(cfg: &PublishConfig, file: FlvFile) -> Result<PublishReport, PublishError> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; READ_BUF];
    let mut sock = TcpStream::connect(cfg.url.addr)?;
    poll.registry()
        .register(&mut sock, Token(0), Interest::READABLE | Interest::WRITABLE)?;
    let clock = Instant::now();
    let random = vec![0x5Au8; 1536];
    let mut session =
        ClientSession::new(ClientConfig::new(&cfg.url.app, &cfg.url.tc_url), &random, 0);
    session.publish(&cfg.url.stream);
    let mut out = OutQueue::default();
    let mut tcp_up = false;
    let mut started: Option<Instant> = None;
    let mut playlist = Playlist::new(file.tags, cfg.looping);
    let mut report = PublishReport::default();
    let mut scratch = Vec::new();
    let mut seq = 0u64;
    let mut next_progress = Duration::from_secs(1);
    let mut progress_bytes = 0u64;
    let mut closing = false;

    loop {
        let now = Instant::now();
        let now_ms = now.duration_since(clock).as_millis() as u64;
        // Queue every tag that is due.
        if let Some(t0) = started {
            let elapsed = now.duration_since(t0);
            let elapsed_us = elapsed.as_micros() as u64;
            if cfg.duration.is_some_and(|d| elapsed >= d) && !closing {
                closing = true;
                session.close();
            }
            while !closing && out.len() < MAX_OUT {
                let Some(s) = playlist.peek() else {
                    closing = true;
                    session.close();
                    break;
                };
                if wait_us(s.out_ts, elapsed_us).is_some() {
                    break;
                }
                if elapsed_us / 1000 > s.out_ts + LATE_MS {
                    report.late_tags += 1;
                }
                report.loops = report.loops.max(s.iteration + 1);
                let ts = s.out_ts as u32;
                let tag = s.tag;
                let sent = match tag.tag_type {
                    TagType::Script => Ok(()),
                    TagType::Video if cfg.stamp => {
                        let st = Stamp {
                            seq: seq + 1,
                            unix_micros: net::unix_micros(),
                        };
                        if stamped_body(tag, file.nalu_length_size, st, &mut scratch) {
                            seq += 1;
                            report.stamps += 1;
                            report.payload_bytes += scratch.len() as u64;
                            session.send_media(tag.tag_type as u8, ts, &scratch)
                        } else {
                            report.payload_bytes += tag.body.len() as u64;
                            session.send_media(tag.tag_type as u8, ts, &tag.body)
                        }
                    }
                    _ => {
                        report.payload_bytes += tag.body.len() as u64;
                        session.send_media(tag.tag_type as u8, ts, &tag.body)
                    }
                };
                sent.map_err(PublishError::Session)?;
                report.tags += 1;
                playlist.advance();
            }
            if cfg.progress && elapsed >= next_progress {
                eprintln!(
                    "[{:6.1}s] publish tags {} late {} tx {:.2} Mbit/s",
                    elapsed.as_secs_f64(),
                    report.tags,
                    report.late_tags,
                    (report.payload_bytes - progress_bytes) as f64 * 8.0 / 1e6
                );
                progress_bytes = report.payload_bytes;
                next_progress += Duration::from_secs(1);
            }
        } else if now.duration_since(clock) > START_TIMEOUT {
            return Err(PublishError::Timeout);
        }
        while let Some(b) = session.poll_transmit() {
            out.push(b);
        }
        if tcp_up && !out.is_empty() {
            out.write_to(&mut sock)?;
        }
        if closing && out.is_empty() {
            break;
        }
        // Sleep until the next tag is due (or the socket drains, or progress is due).
        let timeout = match started {
            Some(t0) => {
                let elapsed_us = now.duration_since(t0).as_micros() as u64;
                let tag_wait = if out.len() >= MAX_OUT || closing {
                    None
                } else {
                    playlist
                        .peek()
                        .map(|s| wait_us(s.out_ts, elapsed_us).unwrap_or(0))
                };
                // Without progress lines there is no progress deadline: waiting for a past one
                // would spin.
                let progress_wait = if cfg.progress {
                    (next_progress.as_micros() as u64).saturating_sub(elapsed_us)
                } else {
                    u64::MAX
                };
                let wait = tag_wait.unwrap_or(u64::MAX).min(progress_wait);
                // Nothing due at all (a finished file, or a full send queue): wake up now and
                // then to notice the end or the drained socket.
                Duration::from_micros(wait.min(100_000))
            }
            None => Duration::from_millis(100),
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        if events.is_empty() {
            continue;
        }
        if !tcp_up {
            if !connect_done(&sock)? {
                continue;
            }
            tcp_up = true;
            sock.set_nodelay(true)?;
        }
        loop {
            match read_some(&mut sock, &mut buf)? {
                ReadOutcome::Data(n) => {
                    session
                        .handle_input(buf.get(..n).unwrap_or_default(), now_ms)
                        .map_err(PublishError::Session)?;
                    while let Some(ev) = session.poll_event() {
                        match ev {
                            ClientEvent::Publishing { .. } if started.is_none() => {
                                started = Some(Instant::now());
                                if let Some(meta) = &file.metadata {
                                    session.send_metadata(meta).map_err(PublishError::Session)?;
                                }
                            }
                            ClientEvent::Rejected { code, description } => {
                                return Err(PublishError::Rejected { code, description })
                            }
                            _ => {}
                        }
                    }
                }
                ReadOutcome::WouldBlock => break,
                ReadOutcome::Eof if closing => break,
                ReadOutcome::Eof => return Err(PublishError::Closed),
            }
        }
    }
    report.seconds = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok(report)
}
