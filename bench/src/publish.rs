//! `rill-bench publish`: sends an FLV file to an RTMP server in real time.
//!
//! Tags are paced by their timestamps against a monotonic clock started when the server
//! accepts the publish. With `--loop` the file repeats with continuous timestamps; with
//! `--stamp` every H.264 frame carries its wall-clock send time (see [`crate::stamp`]). With
//! `--streams N` one process publishes the file N times over, to `{stream}_0` ..
//! `{stream}_{N-1}`, on one event loop (an ingest load without N processes).

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
use crate::url::{nth_stream, RtmpUrl};

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
    /// Publications of the file, each on its own connection: 1 publishes to the URL's stream,
    /// more to `{stream}_{i}` for i in 0..streams (see [`nth_stream`]).
    pub streams: usize,
    /// Publications opened per second when there are several (their key frames then do not
    /// line up).
    pub rate: f64,
}

/// Most publications one run may open.
pub const MAX_STREAMS: usize = 10_000;

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
    /// Passes over the file started (the most of any publication).
    pub loops: u64,
    /// Publications opened.
    pub streams: u64,
    /// Sum over publications of their payload bit rate (payload bytes over their own publishing
    /// time), in Mbit/s: the ingest rate once every publication runs.
    pub aggregate_mbps: f64,
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
            "streams": self.streams,
            "aggregate_mbps": crate::stats::round3(self.aggregate_mbps),
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

/// One publication: its connection, session, pacing and counters.
struct Publication {
    sock: TcpStream,
    session: ClientSession,
    out: OutQueue,
    tcp_up: bool,
    /// When the connection was opened (for [`START_TIMEOUT`]).
    opened: Instant,
    /// When the server accepted the publish: the pacing clock's zero.
    started: Option<Instant>,
    playlist: Playlist,
    closing: bool,
    /// Closed and drained.
    done: bool,
    seq: u64,
    report: PublishReport,
}

impl Publication {
    fn open(
        cfg: &PublishConfig,
        stream: &str,
        tags: Vec<Tag>,
        poll: &Poll,
        token: Token,
        now: Instant,
    ) -> Result<Self, PublishError> {
        let mut sock = TcpStream::connect(cfg.url.addr)?;
        poll.registry()
            .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
        let random = vec![0x5Au8; 1536];
        let mut session =
            ClientSession::new(ClientConfig::new(&cfg.url.app, &cfg.url.tc_url), &random, 0);
        session.publish(stream);
        Ok(Publication {
            sock,
            session,
            out: OutQueue::default(),
            tcp_up: false,
            opened: now,
            started: None,
            playlist: Playlist::new(tags, cfg.looping),
            closing: false,
            done: false,
            seq: 0,
            report: PublishReport::default(),
        })
    }

    fn close(&mut self) {
        if !self.closing {
            self.closing = true;
            self.session.close();
        }
    }

    /// Queues every tag that is due at `now`, then writes what the socket takes.
    fn send_due(
        &mut self,
        cfg: &PublishConfig,
        file: &FlvFile,
        scratch: &mut Vec<u8>,
        now: Instant,
    ) -> Result<(), PublishError> {
        if let Some(t0) = self.started {
            let elapsed = now.duration_since(t0);
            let elapsed_us = elapsed.as_micros() as u64;
            if cfg.duration.is_some_and(|d| elapsed >= d) {
                self.close();
            }
            while !self.closing && self.out.len() < MAX_OUT {
                let Some(s) = self.playlist.peek() else {
                    self.close();
                    break;
                };
                if wait_us(s.out_ts, elapsed_us).is_some() {
                    break;
                }
                let report = &mut self.report;
                if elapsed_us / 1000 > s.out_ts + LATE_MS {
                    report.late_tags += 1;
                }
                report.loops = report.loops.max(s.iteration + 1);
                let ts = s.out_ts as u32;
                let tag = s.tag;
                let stamped = cfg.stamp && tag.tag_type == TagType::Video && {
                    let st = Stamp {
                        seq: self.seq + 1,
                        unix_micros: net::unix_micros(),
                    };
                    stamped_body(tag, file.nalu_length_size, st, scratch)
                };
                let body: &[u8] = if stamped {
                    self.seq += 1;
                    report.stamps += 1;
                    scratch
                } else {
                    &tag.body
                };
                if tag.tag_type != TagType::Script {
                    report.payload_bytes += body.len() as u64;
                    self.session
                        .send_media(tag.tag_type as u8, ts, body)
                        .map_err(PublishError::Session)?;
                }
                report.tags += 1;
                self.playlist.advance();
            }
        } else if now.duration_since(self.opened) > START_TIMEOUT {
            return Err(PublishError::Timeout);
        }
        while let Some(b) = self.session.poll_transmit() {
            self.out.push(b);
        }
        if self.tcp_up && !self.out.is_empty() {
            self.out.write_to(&mut self.sock)?;
        }
        if self.closing && self.out.is_empty() && !self.done {
            self.done = true;
            self.report.seconds = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Microseconds until this publication has something to do (`None`: only socket events).
    fn wait(&self, now: Instant) -> Option<u64> {
        if self.done {
            return None;
        }
        let Some(t0) = self.started else {
            return Some(100_000);
        };
        if self.closing || self.out.len() >= MAX_OUT {
            // Waiting for the socket to drain: look again now and then.
            return Some(100_000);
        }
        let elapsed_us = now.duration_since(t0).as_micros() as u64;
        self.playlist
            .peek()
            .map(|s| wait_us(s.out_ts, elapsed_us).unwrap_or(0))
    }

    /// Handles readiness: connect completion and everything the server sent.
    fn on_ready(
        &mut self,
        file: &FlvFile,
        buf: &mut [u8],
        now_ms: u64,
    ) -> Result<(), PublishError> {
        if !self.tcp_up {
            if !connect_done(&self.sock)? {
                return Ok(());
            }
            self.tcp_up = true;
            self.sock.set_nodelay(true)?;
        }
        loop {
            match read_some(&mut self.sock, buf)? {
                ReadOutcome::Data(n) => {
                    self.session
                        .handle_input(buf.get(..n).unwrap_or_default(), now_ms)
                        .map_err(PublishError::Session)?;
                    while let Some(ev) = self.session.poll_event() {
                        match ev {
                            ClientEvent::Publishing { .. } if self.started.is_none() => {
                                self.started = Some(Instant::now());
                                if let Some(meta) = &file.metadata {
                                    self.session
                                        .send_metadata(meta)
                                        .map_err(PublishError::Session)?;
                                }
                            }
                            ClientEvent::Rejected { code, description } => {
                                return Err(PublishError::Rejected { code, description })
                            }
                            _ => {}
                        }
                    }
                }
                ReadOutcome::WouldBlock => return Ok(()),
                ReadOutcome::Eof if self.closing => return Ok(()),
                ReadOutcome::Eof => return Err(PublishError::Closed),
            }
        }
    }
}

/// Connects, publishes `file` (`cfg.streams` times over, see [`nth_stream`]) and paces it out
/// until it ends (or `duration` passes). Any publication failing ends the run with its error.
pub fn run(cfg: &PublishConfig, file: FlvFile) -> Result<PublishReport, PublishError> {
    let n = cfg.streams.clamp(1, MAX_STREAMS);
    let rate = if cfg.rate.is_finite() && cfg.rate > 0.0 {
        cfg.rate.clamp(0.01, 1e6)
    } else {
        100.0
    };
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUF];
    let clock = Instant::now();
    let open_at = |i: usize| clock + Duration::from_secs_f64(i as f64 / rate);
    let mut pubs: Vec<Publication> = Vec::with_capacity(n);
    let mut scratch = Vec::new();
    let mut next_progress = Duration::from_secs(1);
    let mut progress_bytes = 0u64;

    loop {
        let now = Instant::now();
        while pubs.len() < n && open_at(pubs.len()) <= now {
            let i = pubs.len();
            let name = nth_stream(&cfg.url.stream, i, n);
            pubs.push(Publication::open(
                cfg,
                &name,
                file.tags.clone(),
                &poll,
                Token(i),
                now,
            )?);
        }
        for (i, p) in pubs.iter_mut().enumerate() {
            p.send_due(cfg, &file, &mut scratch, now)
                .inspect_err(|e| report_failure(cfg, i, n, e))?;
        }
        if pubs.len() == n && pubs.iter().all(|p| p.done) {
            break;
        }
        let elapsed = now.duration_since(clock);
        if cfg.progress && elapsed >= next_progress {
            let tags: u64 = pubs.iter().map(|p| p.report.tags).sum();
            let late: u64 = pubs.iter().map(|p| p.report.late_tags).sum();
            let bytes: u64 = pubs.iter().map(|p| p.report.payload_bytes).sum();
            let publishing = pubs.iter().filter(|p| p.started.is_some()).count();
            eprintln!(
                "[{:6.1}s] publish streams {publishing}/{n} tags {tags} late {late} tx {:.2} Mbit/s",
                elapsed.as_secs_f64(),
                (bytes - progress_bytes) as f64 * 8.0 / 1e6
            );
            progress_bytes = bytes;
            next_progress += Duration::from_secs(1);
        }
        // Sleep until a tag is due, a publication opens, or progress is due. Without progress
        // lines there is no progress deadline: waiting for a past one would spin.
        let mut wait = pubs
            .iter()
            .filter_map(|p| p.wait(now))
            .min()
            .unwrap_or(100_000);
        if pubs.len() < n {
            let to_open = open_at(pubs.len()).saturating_duration_since(now);
            wait = wait.min(to_open.as_micros() as u64);
        }
        if cfg.progress {
            let to_progress = next_progress.saturating_sub(elapsed);
            wait = wait.min(to_progress.as_micros() as u64);
        }
        match poll.poll(&mut events, Some(Duration::from_micros(wait.min(100_000)))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        let now_ms = Instant::now().duration_since(clock).as_millis() as u64;
        for ev in events.iter() {
            let i = ev.token().0;
            if let Some(p) = pubs.get_mut(i) {
                p.on_ready(&file, &mut buf, now_ms)
                    .inspect_err(|e| report_failure(cfg, i, n, e))?;
            }
        }
    }
    let mut report = PublishReport {
        streams: pubs.len() as u64,
        ..PublishReport::default()
    };
    for p in &pubs {
        let r = &p.report;
        report.tags += r.tags;
        report.payload_bytes += r.payload_bytes;
        report.stamps += r.stamps;
        report.late_tags += r.late_tags;
        report.loops = report.loops.max(r.loops);
        report.seconds = report.seconds.max(r.seconds);
        if r.seconds > 0.0 {
            report.aggregate_mbps += r.payload_bytes as f64 * 8.0 / r.seconds / 1e6;
        }
    }
    Ok(report)
}

/// Names the publication that failed when there are several (the error says why).
fn report_failure(cfg: &PublishConfig, i: usize, n: usize, e: &PublishError) {
    if n > 1 {
        eprintln!(
            "rill-bench: publication {} failed: {e}",
            nth_stream(&cfg.url.stream, i, n)
        );
    }
}
