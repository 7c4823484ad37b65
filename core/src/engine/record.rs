//! Recording: every publish written to an FLV file and/or one long MPEG-TS file.
//!
//! A [`Recorder`] belongs to the stream's publication, on the publisher's engine (so a frame
//! is recorded once whatever the number of engines), and turns the stream's [`Packet`]s into
//! file bytes with the same per-player rendering HTTP-FLV and HTTP-TS players get: FLV tags
//! around the shared tag bodies, with timestamps from 0, and the TS bytes the stream's muxer
//! made once for every TS output, from the first random access point (PAT/PMT and a key frame)
//! on. Nothing is copied: the bytes go to the runtime as [`Output::AppendFile`] pieces that
//! share the packets' buffers, and what the recorder holds is only what one input produced
//! before the engine's outputs were polled.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::{FlvForm, Output, Packet, PlayerFormat, PlayerWriter};
use crate::amf::{amf0, Value};
use crate::flv::{self, TagType};
use crate::hub::PacketKind;

/// Settings of recording (`[record]` in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordConfig {
    /// Record each publish to `{out_path}/{app}/{stream}-{unix_ms}.flv`.
    pub flv: bool,
    /// Record each publish to `{out_path}/{app}/{stream}-{unix_ms}.ts`.
    pub ts: bool,
    /// Directory of the recordings.
    pub out_path: String,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            flv: false,
            ts: false,
            out_path: "record".into(),
        }
    }
}

impl RecordConfig {
    /// Whether any recording is on.
    pub fn enabled(&self) -> bool {
        self.flv || self.ts
    }

    /// The file of a publish of `stream` (`app/stream`, a validated stream key) that began at
    /// `unix_ms`, with extension `ext`.
    pub fn path(&self, stream: &str, unix_ms: u64, ext: &str) -> String {
        let dir = self.out_path.trim_end_matches('/');
        format!("{dir}/{stream}-{unix_ms}.{ext}")
    }
}

/// One file of a recording: its path, its renderer and the bytes not yet handed out.
#[derive(Debug)]
struct RecordFile {
    path: String,
    writer: PlayerWriter,
    pending: Vec<Bytes>,
    /// Bytes were handed out, so the runtime has the file open.
    opened: bool,
}

impl RecordFile {
    fn new(path: String, format: PlayerFormat) -> Self {
        // The chunk size matters only to RTMP output. A file's reader is not known to predate
        // Enhanced RTMP: a codec with only that form (Opus) is recorded in it.
        let mut writer = PlayerWriter::new(format, 4096);
        writer.set_flv_form(FlvForm::LegacyOrEnhanced);
        RecordFile {
            path,
            writer,
            pending: Vec::new(),
            opened: false,
        }
    }

    fn flush(&mut self, out: &mut VecDeque<Output>) {
        if self.pending.is_empty() {
            return;
        }
        self.opened = true;
        out.push_back(Output::AppendFile {
            path: self.path.clone(),
            data: std::mem::take(&mut self.pending),
        });
    }

    fn close(mut self, out: &mut VecDeque<Output>) {
        self.flush(out);
        if self.opened {
            out.push_back(Output::CloseFile { path: self.path });
        }
    }
}

/// The FLV file, which starts with the first coded frame: the header's audio/video flags and
/// the configurations in front are known by then. At its close its head (file header and
/// `onMetaData`) is replaced ([`Output::ReplaceFileHead`]) by one with the real duration, file
/// size and a key frame index (`keyframes.times` in seconds, `keyframes.filepositions` in
/// bytes), which players use to seek.
#[derive(Debug)]
struct FlvFile {
    file: RecordFile,
    started: bool,
    /// Before the start: the latest metadata, video and audio configuration.
    held: [Option<Packet>; 3],
    /// What the index needs, from the start on.
    index: FlvIndex,
}

/// What an FLV recording's closing `onMetaData` is made of.
#[derive(Debug, Default)]
struct FlvIndex {
    /// Bytes handed out for the file so far.
    written: u64,
    /// The file header's flags.
    has_audio: bool,
    has_video: bool,
    /// The publisher's `onMetaData` body written at the start, if any.
    metadata: Option<Bytes>,
    /// Bytes the closing head replaces: file header, PreviousTagSize0, the first
    /// `onMetaData` tag and the PreviousTagSize after it.
    head_len: u64,
    first_dts: Option<i64>,
    last_dts: i64,
    /// Key frames: (dts, position of the tag in the file as written).
    keyframes: Vec<(i64, u64)>,
}

/// Keys of the publisher's `onMetaData` that the closing one sets itself.
const INDEX_KEYS: [&str; 4] = ["duration", "filesize", "keyframes", "hasKeyframes"];

impl FlvIndex {
    /// The closing head (file header, `onMetaData` with the index, PreviousTagSize) for a file
    /// of `written` bytes, or `None` when the publisher's metadata cannot be read.
    fn head(&self) -> Option<Bytes> {
        let mut props = match &self.metadata {
            None => Vec::new(),
            Some(body) => amf0::decode_all(body, 16)
                .ok()?
                .into_iter()
                .find_map(|v| match v {
                    Value::EcmaArray(p) | Value::Object(p) => Some(p),
                    _ => None,
                })?,
        };
        props.retain(|(k, _)| !INDEX_KEYS.contains(&k.as_str()));
        let first = self.first_dts.unwrap_or(0);
        let seconds = |dts: i64| dts.saturating_sub(first).max(0) as f64 / 1000.0;
        // Every number is 9 bytes of AMF0 whatever its value: the head's length is known
        // before the positions it shifts.
        let build = |shift: u64, size: u64| {
            let mut index = props.clone();
            index.push(("duration".into(), Value::Number(seconds(self.last_dts))));
            index.push(("filesize".into(), Value::Number(size as f64)));
            index.push((
                "hasKeyframes".into(),
                Value::Boolean(!self.keyframes.is_empty()),
            ));
            let times = self
                .keyframes
                .iter()
                .map(|&(dts, _)| Value::Number(seconds(dts)));
            let positions = self
                .keyframes
                .iter()
                .map(|&(_, pos)| Value::Number(pos.saturating_add(shift) as f64));
            index.push((
                "keyframes".into(),
                Value::object([
                    ("times", Value::StrictArray(times.collect())),
                    ("filepositions", Value::StrictArray(positions.collect())),
                ]),
            ));
            let mut body = BytesMut::new();
            amf0::encode_all(
                &[Value::String("onMetaData".into()), Value::EcmaArray(index)],
                &mut body,
            );
            let mut head = BytesMut::new();
            flv::write_file_header(self.has_audio, self.has_video, &mut head);
            flv::write_tag(TagType::Script, 0, &body, &mut head);
            head
        };
        let len = build(0, 0).len() as u64;
        let shift = len.checked_sub(self.head_len)?;
        let size = self.written.saturating_add(shift);
        Some(build(shift, size).freeze())
    }
}

impl FlvFile {
    /// Renders `packet` into the file, keeping count of the bytes and of the key frames.
    fn render(&mut self, packet: &Packet) -> usize {
        let p = packet.data();
        let at = self.index.written;
        let n = self.file.writer.render(packet, &mut self.file.pending);
        self.index.written += n as u64;
        if n > 0 && !p.kind.is_config() {
            self.index.first_dts.get_or_insert(p.dts);
            self.index.last_dts = self.index.last_dts.max(p.dts);
            if p.kind == (PacketKind::Video { key: true }) {
                // The tag starts after the PreviousTagSize written in front of it.
                self.index.keyframes.push((p.dts, at + 4));
            }
        }
        n
    }

    fn push(&mut self, packet: &Packet) {
        if packet.data().flv_body(FlvForm::LegacyOrEnhanced).is_empty() {
            // A frame FLV cannot carry: it neither starts the file nor announces audio.
            return;
        }
        if self.started {
            self.render(packet);
            return;
        }
        let kind = packet.data().kind;
        let slot = match kind {
            PacketKind::Metadata => 0,
            PacketKind::VideoConfig => 1,
            PacketKind::AudioConfig => 2,
            // A decoder cannot start here; the file begins at a key frame (or audio).
            PacketKind::Video { key: false } => return,
            PacketKind::Video { key: true } | PacketKind::Audio => {
                self.start(kind);
                self.render(packet);
                return;
            }
        };
        if let Some(s) = self.held.get_mut(slot) {
            *s = Some(packet.clone());
        }
    }

    fn start(&mut self, first: PacketKind) {
        self.started = true;
        let [metadata, video, audio] = std::mem::take(&mut self.held);
        let has_video = video.is_some() || matches!(first, PacketKind::Video { .. });
        let has_audio = audio.is_some() || first == PacketKind::Audio;
        let f = &mut self.file;
        let before = f.pending.len();
        f.writer.start(has_audio, has_video, &mut f.pending);
        let header: usize = f.pending[before..].iter().map(Bytes::len).sum();
        self.index.written = header as u64;
        self.index.has_audio = has_audio;
        self.index.has_video = has_video;
        // The file header, then the PreviousTagSize0 in front of the first tag.
        self.index.head_len = self.index.written + 4;
        if let Some(m) = metadata {
            let n = self.render(&m);
            if n > 0 {
                // The metadata tag and the PreviousTagSize in front of the next tag.
                self.index.metadata = Some(m.data().body.clone());
                self.index.head_len = self.index.written + 4;
            }
        }
        for p in [video, audio].into_iter().flatten() {
            self.render(&p);
        }
    }

    fn close(mut self, out: &mut VecDeque<Output>) {
        let mut head = None;
        if self.started {
            // The last tag's PreviousTagSize ends the file.
            let before = self.file.pending.len();
            self.file.writer.finish(&mut self.file.pending);
            let tail: usize = self.file.pending[before..].iter().map(Bytes::len).sum();
            self.index.written += tail as u64;
            head = self.index.head();
        }
        let path = self.file.path.clone();
        let opened = self.file.opened || !self.file.pending.is_empty();
        self.file.close(out);
        if let (Some(head), true) = (head, opened) {
            out.push_back(Output::ReplaceFileHead {
                path,
                len: self.index.head_len,
                head,
            });
        }
    }
}

/// The recording of one publish. See the module docs.
///
/// Feed every packet of the stream in order with [`Recorder::push`]; [`Recorder::flush`] hands
/// out what accumulated as [`Output::AppendFile`]s, and [`Recorder::close`] ends the files with
/// [`Output::CloseFile`].
#[derive(Debug)]
pub struct Recorder {
    flv: Option<FlvFile>,
    ts: Option<RecordFile>,
    /// Bytes wait for [`Recorder::flush`].
    dirty: bool,
}

impl Recorder {
    /// The recording of a publish of `stream` (`app/stream`) that began at `unix_ms`; `None`
    /// when recording is off.
    pub fn new(config: &RecordConfig, stream: &str, unix_ms: u64) -> Option<Recorder> {
        if !config.enabled() {
            return None;
        }
        Some(Recorder {
            flv: config.flv.then(|| FlvFile {
                file: RecordFile::new(config.path(stream, unix_ms, "flv"), PlayerFormat::Flv),
                started: false,
                held: Default::default(),
                index: FlvIndex::default(),
            }),
            ts: config
                .ts
                .then(|| RecordFile::new(config.path(stream, unix_ms, "ts"), PlayerFormat::Ts)),
            dirty: false,
        })
    }

    /// It records MPEG-TS (so the stream's TS muxer must run).
    pub fn records_ts(&self) -> bool {
        self.ts.is_some()
    }

    /// The FLV file's path, when recording FLV.
    pub fn flv_path(&self) -> Option<&str> {
        self.flv.as_ref().map(|f| f.file.path.as_str())
    }

    /// The TS file's path, when recording TS.
    pub fn ts_path(&self) -> Option<&str> {
        self.ts.as_ref().map(|f| f.path.as_str())
    }

    /// Records one packet of the stream. Returns true when the recorder had nothing waiting
    /// and now has bytes for [`Recorder::flush`].
    pub fn push(&mut self, packet: &Packet) -> bool {
        if let Some(f) = self.flv.as_mut() {
            f.push(packet);
        }
        if let Some(t) = self.ts.as_mut() {
            t.writer.render(packet, &mut t.pending);
        }
        let has = self
            .flv
            .as_ref()
            .is_some_and(|f| !f.file.pending.is_empty())
            || self.ts.as_ref().is_some_and(|t| !t.pending.is_empty());
        let newly = has && !self.dirty;
        self.dirty |= has;
        newly
    }

    /// Hands out the bytes recorded since the last flush, one [`Output::AppendFile`] per file.
    pub fn flush(&mut self, out: &mut VecDeque<Output>) {
        self.dirty = false;
        if let Some(f) = self.flv.as_mut() {
            f.file.flush(out);
        }
        if let Some(t) = self.ts.as_mut() {
            t.flush(out);
        }
    }

    /// The publish ended: the rest of the bytes, then an [`Output::CloseFile`] for every file
    /// that was written to.
    pub fn close(self, out: &mut VecDeque<Output>) {
        if let Some(f) = self.flv {
            f.close(out);
        }
        if let Some(t) = self.ts {
            t.close(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bytes::Bytes;

    use super::*;
    use crate::amf::Value;
    use crate::engine::{Engine, EngineConfig, Listener};
    use crate::flv::{FlvDemuxer, TagType};
    use crate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
    use crate::rtmp::message_type;
    use crate::ts::{ms_to_90k, Pes, TsDemuxer};

    const WALL: u64 = 1_700_000_000_000;
    const VIDEO_CONFIG: [u8; 22] = [
        0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1, 0, 2,
        0x68, 0xCE,
    ];
    const KEY_FRAME: [u8; 11] = [0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88];
    const INTER_FRAME: [u8; 11] = [0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0x9A];
    const AUDIO_CONFIG: [u8; 4] = [0xAF, 0, 0x12, 0x10];
    const AUDIO_FRAME: [u8; 6] = [0xAF, 1, 0x21, 0x10, 0x04, 0x60];

    fn config(flv: bool, ts: bool) -> EngineConfig {
        let mut c = EngineConfig {
            record: RecordConfig {
                flv,
                ts,
                out_path: "rec/".into(),
            },
            ..EngineConfig::default()
        };
        c.rtsp.wallclock_offset_ms = WALL;
        c
    }

    /// Everything the engine has to say now.
    fn drain(e: &mut Engine) -> Vec<Output> {
        std::iter::from_fn(|| e.poll_output()).collect()
    }

    /// What the runtime does with the recording outputs: files by path, and the closed ones.
    #[derive(Default)]
    struct Disk {
        files: HashMap<String, Vec<u8>>,
        closed: Vec<String>,
        appends: usize,
    }

    impl Disk {
        fn apply(&mut self, outputs: Vec<Output>) {
            for o in outputs {
                match o {
                    Output::AppendFile { path, data } => {
                        assert!(!self.closed.contains(&path), "{path} appended after close");
                        self.appends += 1;
                        let f = self.files.entry(path).or_default();
                        data.iter().for_each(|b| f.extend_from_slice(b));
                    }
                    Output::CloseFile { path } => {
                        assert!(
                            self.files.contains_key(&path),
                            "{path} closed, never written"
                        );
                        assert!(!self.closed.contains(&path), "{path} closed twice");
                        self.closed.push(path);
                    }
                    Output::ReplaceFileHead { path, len, head } => {
                        assert!(self.closed.contains(&path), "{path} indexed before close");
                        let f = self.files.get_mut(&path).expect("indexed, never written");
                        let rest = f.split_off(len as usize);
                        *f = [&head[..], &rest[..]].concat();
                    }
                    _ => {}
                }
            }
        }
    }

    /// An RTMP publisher of live/s on connection `conn`, answered until it publishes.
    fn publish(e: &mut Engine, conn: u64, now: u64) -> ClientSession {
        let peer = "127.0.0.1:40000".parse().unwrap();
        e.handle_accept(conn, Listener::Rtmp, peer, now);
        let config = ClientConfig::new("live", "rtmp://127.0.0.1/live");
        let mut client = ClientSession::new(config, &[2; 1536], now);
        client.publish("s");
        for _ in 0..16 {
            while let Some(b) = client.poll_transmit() {
                e.handle_input(conn, &b, now);
            }
            drain(e);
            let mut out = Vec::new();
            e.poll_transmit(conn, usize::MAX, &mut out);
            client.handle_input(&out.concat(), now).unwrap();
            while let Some(ev) = client.poll_event() {
                if matches!(ev, ClientEvent::Publishing { .. }) {
                    return client;
                }
            }
        }
        panic!("the publish was not accepted");
    }

    /// The publisher's bytes for `messages`, as one read.
    fn send(client: &mut ClientSession, messages: &[(u8, u32, &[u8])]) -> Vec<u8> {
        for (type_id, ts, body) in messages {
            client.send_media(*type_id, *ts, body).unwrap();
        }
        std::iter::from_fn(|| client.poll_transmit()).fold(Vec::new(), |mut v, b| {
            v.extend_from_slice(&b);
            v
        })
    }

    /// Ten video frames (a key frame every five) and ten audio frames, from `start` ms.
    fn media(start: u32) -> Vec<(u8, u32, &'static [u8])> {
        (0..10u32)
            .flat_map(|i| {
                let video: &[u8] = if i % 5 == 0 { &KEY_FRAME } else { &INTER_FRAME };
                [
                    (message_type::VIDEO, start + 40 * i, video),
                    (message_type::AUDIO, start + 5 + 40 * i, &AUDIO_FRAME[..]),
                ]
            })
            .collect()
    }

    #[test]
    fn a_publish_is_recorded_to_flv_and_ts_that_demux_back() {
        let mut e = Engine::new(config(true, true), 1);
        let mut client = publish(&mut e, 1, 7);
        let flv_path = format!("rec/live/s-{}.flv", WALL + 7);
        let ts_path = format!("rec/live/s-{}.ts", WALL + 7);
        let mut disk = Disk::default();
        disk.apply(drain(&mut e));
        // The publisher's own duration and size are wrong for the recording (issue 21: ffprobe
        // said 12 s for a 7.7 s file): the closing metadata replaces them.
        let meta = vec![
            ("duration".into(), Value::Number(12.0)),
            ("width".into(), Value::Number(640.0)),
            ("filesize".into(), Value::Number(1.0)),
        ];
        client.send_metadata(&Value::Object(meta)).unwrap();
        let mut first = send(
            &mut client,
            &[
                (message_type::VIDEO, 0, &VIDEO_CONFIG),
                (message_type::AUDIO, 0, &AUDIO_CONFIG),
            ],
        );
        let frames = media(1000);
        first.extend(send(&mut client, &frames[..10]));
        e.handle_input(1, &first, 10);
        disk.apply(drain(&mut e));
        // One input: one append per file, however many frames it held.
        assert_eq!(disk.appends, 2);
        assert_eq!(disk.files.len(), 2);
        e.handle_input(1, &send(&mut client, &frames[10..]), 20);
        disk.apply(drain(&mut e));
        assert_eq!(disk.appends, 4);
        assert!(disk.closed.is_empty());
        // Unpublish (FCUnpublish, deleteStream): both files end.
        client.close();
        let bye: Vec<u8> = std::iter::from_fn(|| client.poll_transmit())
            .flat_map(|b| b.to_vec())
            .collect();
        e.handle_input(1, &bye, 30);
        disk.apply(drain(&mut e));
        assert_eq!(disk.closed.len(), 2, "{:?}", disk.closed);
        assert!(disk.closed.contains(&flv_path) && disk.closed.contains(&ts_path));

        // FLV: header, metadata, configurations, then every frame at its time from 0.
        let flv = &disk.files[&flv_path];
        let mut d = FlvDemuxer::default();
        d.push(flv);
        let mut tags = Vec::new();
        while let Some(t) = d.poll_tag().expect("the FLV file demuxes") {
            tags.push(t);
        }
        let header = d.header().expect("FLV header");
        assert!(header.has_audio && header.has_video);
        assert_eq!(d.buffered(), 0);
        let last = tags.last().expect("tags");
        let trailer = (11 + last.body.len() as u32).to_be_bytes();
        assert_eq!(flv.get(flv.len() - 4..), Some(&trailer[..]));
        assert_eq!(tags[0].tag_type, TagType::Script);
        // The closing onMetaData (issue 21): the publisher's keys, the real duration and size,
        // and a key frame index whose positions are the key frames' tags.
        let values = amf0::decode_all(&tags[0].body, 8).expect("onMetaData decodes");
        assert_eq!(values[0], Value::String("onMetaData".into()));
        let meta = &values[1];
        assert_eq!(meta.get("width"), Some(&Value::Number(640.0)));
        assert_eq!(meta.get("duration"), Some(&Value::Number(0.365)));
        assert_eq!(meta.get("filesize"), Some(&Value::Number(flv.len() as f64)));
        let index = meta.get("keyframes").expect("keyframes");
        let numbers = |key: &str| -> Vec<f64> {
            match index.get(key) {
                Some(Value::StrictArray(v)) => v.iter().filter_map(Value::as_f64).collect(),
                other => panic!("keyframes.{key}: {other:?}"),
            }
        };
        assert_eq!(numbers("times"), [0.0, 0.2]);
        let positions = numbers("filepositions");
        assert_eq!(positions.len(), 2);
        for (pos, ts) in positions.iter().zip([0u32, 200]) {
            let tag = &flv[*pos as usize..];
            assert_eq!(tag[0], TagType::Video as u8, "not a video tag at {pos}");
            assert_eq!(u32::from_be_bytes([0, tag[4], tag[5], tag[6]]), ts);
            assert_eq!(tag[11], 0x17, "not a key frame at {pos}");
        }
        assert_eq!(tags[1].body, Bytes::from_static(&VIDEO_CONFIG));
        assert_eq!(tags[2].body, Bytes::from_static(&AUDIO_CONFIG));
        let got: Vec<(u8, u32, &[u8])> = tags[3..]
            .iter()
            .map(|t| (t.tag_type as u8, t.timestamp, &t.body[..]))
            .collect();
        let want: Vec<(u8, u32, &[u8])> =
            frames.iter().map(|&(k, t, b)| (k, t - 1000, b)).collect();
        assert_eq!(got, want);

        // TS: every frame as one PES at its publisher time (plus the muxer's offset).
        let mut d = TsDemuxer::new(1 << 20);
        d.push(&disk.files[&ts_path]).expect("the TS file demuxes");
        d.flush().expect("the TS file ends cleanly");
        assert_eq!(d.continuity_errors(), 0);
        let pes: Vec<Pes> = std::iter::from_fn(|| d.poll_pes()).collect();
        assert_eq!(pes.len(), frames.len());
        assert!(pes[0].random_access, "the TS file starts at a key frame");
        let mut video: Vec<u64> = Vec::new();
        let mut audio: Vec<u64> = Vec::new();
        for p in &pes {
            let t = p.dts.or(p.pts).expect("timestamped");
            if p.pid == crate::ts::VIDEO_PID {
                video.push(t);
            } else {
                audio.push(t);
            }
        }
        // The muxer's fixed offset is the same for every frame: compare from the first video.
        let base = video[0];
        let from_base = |ts: &[u64]| -> Vec<u64> { ts.iter().map(|t| t - base).collect() };
        let at = |k: u8| -> Vec<u64> {
            frames
                .iter()
                .filter(|f| f.0 == k)
                .map(|f| ms_to_90k(i64::from(f.1) - 1000))
                .collect()
        };
        assert_eq!(from_base(&video), at(message_type::VIDEO));
        assert_eq!(from_base(&audio), at(message_type::AUDIO));

        // A new publish on the same connection is a new pair of files.
        let mut again = Engine::new(config(true, false), 1);
        let mut c2 = publish(&mut again, 4, 99);
        again.handle_input(4, &send(&mut c2, &frames[..2]), 100);
        let mut d2 = Disk::default();
        d2.apply(drain(&mut again));
        assert_eq!(
            d2.files.keys().collect::<Vec<_>>(),
            [&format!("rec/live/s-{}.flv", WALL + 99)]
        );
    }

    #[test]
    fn frames_are_recorded_once_by_the_publishers_engine() {
        let mut c = config(true, true);
        c.share_streams = true;
        let mut a = Engine::new(c.clone(), 1);
        let mut b = Engine::new(c, 2);
        let mut client = publish(&mut a, 1, 0);
        let (mut disk_a, mut disk_b) = (Disk::default(), Disk::default());
        let carry = |from: Vec<Output>, to: &mut Engine, disk: &mut Disk| {
            for o in &from {
                if let Output::Broadcast(m) = o {
                    to.handle_remote(m.clone(), 0);
                }
            }
            disk.apply(from);
        };
        let out = drain(&mut a);
        carry(out, &mut b, &mut disk_a);
        let mut bytes = send(&mut client, &[(message_type::VIDEO, 0, &VIDEO_CONFIG)]);
        bytes.extend(send(&mut client, &media(0)));
        a.handle_input(1, &bytes, 5);
        let out = drain(&mut a);
        carry(out, &mut b, &mut disk_a);
        // Disconnect: the files end.
        a.handle_close(1, "peer closed", 9);
        let out = drain(&mut a);
        carry(out, &mut b, &mut disk_a);
        disk_b.apply(drain(&mut b));
        assert_eq!(disk_a.files.len(), 2);
        assert_eq!(disk_a.closed.len(), 2);
        assert!(disk_b.files.is_empty() && disk_b.closed.is_empty());
        // Without an audio configuration before the first frame the header announces video
        // only, and the audio frames that follow are still all in the file.
        let mut d = FlvDemuxer::default();
        d.push(&disk_a.files[&format!("rec/live/s-{WALL}.flv")]);
        let mut audio = 0;
        while let Some(t) = d.poll_tag().unwrap() {
            audio += usize::from(t.tag_type == TagType::Audio);
        }
        let header = d.header().expect("FLV header");
        assert!(header.has_video && !header.has_audio);
        assert_eq!(audio, 10);
    }

    #[test]
    fn nothing_is_recorded_when_off_or_before_a_decodable_frame() {
        let mut e = Engine::new(config(false, false), 1);
        let mut client = publish(&mut e, 1, 0);
        e.handle_input(1, &send(&mut client, &media(0)), 1);
        e.handle_close(1, "peer closed", 2);
        let mut disk = Disk::default();
        disk.apply(drain(&mut e));
        assert!(disk.files.is_empty() && disk.appends == 0);

        // FLV waits for a key frame; a publish that never sends one leaves no file at all.
        let mut e = Engine::new(config(true, false), 1);
        let mut client = publish(&mut e, 1, 0);
        let bytes = send(
            &mut client,
            &[
                (message_type::VIDEO, 0, &VIDEO_CONFIG),
                (message_type::VIDEO, 0, &INTER_FRAME),
            ],
        );
        e.handle_input(1, &bytes, 1);
        e.handle_close(1, "peer closed", 2);
        let mut disk = Disk::default();
        disk.apply(drain(&mut e));
        assert!(disk.files.is_empty() && disk.closed.is_empty());
    }

    #[test]
    fn paths_name_the_stream_and_the_publish_start() {
        let c = RecordConfig {
            flv: true,
            ts: true,
            out_path: "/srv/rec".into(),
        };
        let r = Recorder::new(&c, "live/cam1", 1_234).expect("recording on");
        assert_eq!(r.flv_path(), Some("/srv/rec/live/cam1-1234.flv"));
        assert_eq!(r.ts_path(), Some("/srv/rec/live/cam1-1234.ts"));
        let off = RecordConfig::default();
        assert!(!off.enabled() && Recorder::new(&off, "live/cam1", 1).is_none());
    }
}
