//! A stream published on this engine: the one place where a publisher's [`Frame`]s become the
//! shared [`Packet`]s every output reads.
//!
//! Input protocols (RTMP, RTSP, later relays) only hand a [`Publication`] frames and metadata.
//! It owns what is done once per stream: the track description in the hub, the TS and fMP4
//! muxers, the silent audio track, the recording, the stream's HLS start and end, and the
//! announcements to other engines. A new output format is one more muxer here. The TS and
//! fMP4 muxers run only while someone consumes what they make ([`super::demand`]).

use std::collections::VecDeque;

use bytes::Bytes;

use super::demand::{Demand, Wants};
use super::{
    ConnId, EngineConfig, LogLevel, Output, Packet, PacketData, Recorder, SilentAudio,
    StreamMessage,
};
use crate::amf::Value;
use crate::flv::{self, VideoTagStyle};
use crate::fmp4::{self, Fmp4Muxer};
use crate::hls::{Hls, SegmentFormat};
use crate::hub::{Hub, PacketKind, TrackWatch, Tracks};
use crate::media::{Codec, Frame, FrameKind, TrackKind};
use crate::rtmp::command;
use crate::rtmp::message_type;
use crate::stream_key::StreamKey;
use crate::ts::{TsChunk, TsMuxer};

/// The parts of the engine a publication feeds.
pub(super) struct Sinks<'a> {
    pub(super) hub: &'a mut Hub<Packet>,
    pub(super) hls: &'a mut Hls,
    pub(super) outputs: &'a mut VecDeque<Output>,
    /// Publications whose recording has bytes to hand out.
    pub(super) recording_dirty: &'a mut Vec<ConnId>,
    /// What the stream's shared encodings are consumed by.
    pub(super) demand: &'a mut Demand,
}

/// One locally published stream. See the module docs.
#[derive(Debug)]
pub(super) struct Publication {
    key: StreamKey,
    /// The publishing connection (its hub session id).
    conn: ConnId,
    /// Announce the stream to other engines ([`EngineConfig::share_streams`]).
    shared: bool,
    chunk_size: u32,
    tracks: TrackWatch,
    /// Build `onMetaData` from the track description (the publisher sends none of its own).
    describe_metadata: bool,
    /// Every frame is muxed once, here, for HLS and the TS players.
    muxer: TsMuxer,
    /// The TS and fMP4 muxers take the coded frames (each stops while nobody consumes what it
    /// makes, and starts again at a random access point).
    muxing: Wants,
    /// Codecs whose frames the TS muxer refused, each logged once: TS outputs leave them out.
    left_out_of_ts: Vec<Codec>,
    /// The `OpusHead` for Enhanced RTMP players went out (before the first Opus frame).
    opus_head_sent: bool,
    /// And once more as fMP4 for its players, HLS with fMP4 segments and LL-HLS, once the
    /// tracks are known (rebuilt, with a new init segment, when they change).
    fmp4: Option<Fmp4Muxer>,
    /// Codecs the fMP4 muxer has no sample entry for, each logged once: fMP4 outputs leave
    /// them out.
    left_out_of_fmp4: Vec<Codec>,
    /// The first coded frame's decode time: where the fMP4 timeline starts, so a muxer that
    /// starts later (on demand) carries the stream's time, as one running from the start.
    first_coded_dts: Option<i64>,
    /// The silent audio track, while it may still be needed.
    silent_audio: Option<SilentAudio>,
    recorder: Option<Recorder>,
}

impl Publication {
    /// `conn` publishes `key` from now on (the hub accepted it). `described` are the tracks a
    /// publisher declared up front (an RTSP ANNOUNCE); players then get an `onMetaData` built
    /// from them. Starts HLS and the recording and tells other engines.
    pub(super) fn start(
        key: StreamKey,
        conn: ConnId,
        described: Option<Tracks>,
        config: &EngineConfig,
        now_ms: u64,
        sinks: &mut Sinks<'_>,
    ) -> Publication {
        let unix_ms = config.rtsp.wallclock_offset_ms.saturating_add(now_ms);
        let silent = config.silent_audio;
        let mut p = Publication {
            recorder: Recorder::new(&config.record, &key, unix_ms),
            key,
            conn,
            shared: config.share_streams,
            chunk_size: config.rtmp.chunk_size,
            describe_metadata: described.is_some(),
            muxer: ts_muxer_for(described.as_ref()),
            muxing: Wants {
                ts: true,
                fmp4: true,
                ll: true,
            },
            tracks: TrackWatch::new(described.unwrap_or_default()),
            left_out_of_ts: Vec::new(),
            left_out_of_fmp4: Vec::new(),
            first_coded_dts: None,
            opus_head_sent: false,
            fmp4: None,
            silent_audio: silent.enable.then(|| SilentAudio::new(silent.wait_ms)),
        };
        sinks.hls.start(&p.key, true);
        sinks.hls.ll().start(&p.key, unix_ms);
        p.broadcast(
            sinks,
            StreamMessage::Start {
                stream: p.key.clone(),
                publisher: conn,
            },
        );
        p.tracks_changed(None, sinks);
        p
    }

    /// The stream.
    pub(super) fn key(&self) -> &StreamKey {
        &self.key
    }

    /// A frame from the publisher. `flv_body` is the FLV tag body it came in (RTMP), passed on
    /// as it is to RTMP and FLV players; without one it is built here.
    pub(super) fn push_frame(&mut self, frame: Frame, flv_body: Option<Bytes>, s: &mut Sinks<'_>) {
        if frame.codec == Codec::Opus && frame.kind == FrameKind::Config {
            // The publisher's own (Enhanced RTMP's SequenceStart).
            self.opus_head_sent = true;
        }
        if frame.codec == Codec::Opus && frame.kind == FrameKind::Coded && !self.opus_head_sent {
            // Enhanced RTMP players need an OpusHead first (RTP and RTSP carry none): a
            // configuration for stereo, as RTP's `opus/48000/2` says, which the hub caches.
            self.opus_head_sent = true;
            let head = Frame {
                kind: FrameKind::Config,
                payload: crate::codec::opus::id_header(2),
                ..frame.clone()
            };
            self.push_frame(head, None, s);
        }
        let Some(packet) = self.packet(frame, flv_body, s) else {
            return;
        };
        // Silent audio due before this frame goes first.
        if let Some(silent) = self.silent_audio.as_mut() {
            let mut frames = Vec::new();
            if let Some(f) = packet.data().frame.as_ref() {
                silent.observe(f, &mut frames);
            }
            if silent.done() {
                self.silent_audio = None;
            }
            for f in frames {
                if let Some(p) = self.packet(f, None, s) {
                    self.emit(p, s);
                }
            }
        }
        self.emit(packet, s);
    }

    /// The publisher's own `onMetaData`.
    pub(super) fn push_metadata(&mut self, value: &Value, timestamp: u32, s: &mut Sinks<'_>) {
        let fps = value.get("framerate").or_else(|| value.get("fps"));
        if let Some(fps) = fps.and_then(Value::as_f64) {
            if self.tracks.set_frame_rate(fps) {
                self.tracks_changed(None, s);
            }
        }
        let body = command::encode_on_metadata(value);
        self.emit(self.metadata_packet(body, i64::from(timestamp)), s);
    }

    /// The publisher left: the hub starts its grace period, the recording is closed, the
    /// playlists end, other engines are told.
    pub(super) fn end(self, now_ms: u64, s: &mut Sinks<'_>) {
        s.hub.unpublish(self.conn, now_ms);
        if let Some(r) = self.recorder {
            r.close(s.outputs);
        }
        s.hls.end(&self.key, now_ms);
        if self.shared {
            s.outputs.push_back(Output::Broadcast(StreamMessage::End {
                stream: self.key,
                publisher: self.conn,
            }));
        }
    }

    /// A newer publisher took the stream over: only the recording ends; the stream, its
    /// playlists and its players go on with the newcomer.
    pub(super) fn kicked(self, outputs: &mut VecDeque<Output>) {
        if let Some(r) = self.recorder {
            r.close(outputs);
        }
    }

    /// Hands out what the recording accumulated.
    pub(super) fn flush_recording(&mut self, outputs: &mut VecDeque<Output>) {
        if let Some(r) = self.recorder.as_mut() {
            r.flush(outputs);
        }
    }

    /// The shared packet for `frame` (the track description learns from it first).
    fn packet(
        &mut self,
        frame: Frame,
        flv_body: Option<Bytes>,
        s: &mut Sinks<'_>,
    ) -> Option<Packet> {
        let video = frame.track() == TrackKind::Video;
        let kind = match (frame.kind, video) {
            (FrameKind::Config, true) => PacketKind::VideoConfig,
            (FrameKind::Config, false) => PacketKind::AudioConfig,
            (FrameKind::Coded, true) => PacketKind::Video { key: frame.key },
            (FrameKind::Coded, false) => PacketKind::Audio,
            (FrameKind::EndOfSequence, _) => return None,
        };
        if self.tracks.observe(&frame) {
            self.tracks_changed(Some(frame.dts), s);
        }
        // The FLV forms, built here whatever the publisher sent: HEVC has two, legacy codec
        // id 12 for players that predate Enhanced RTMP and FourCC `hvc1` for those that
        // announce it. Opus has only the Enhanced one (FourCC `Opus`), for those players alone:
        // a player that does not know it (ffmpeg 5.1) gives up on the whole stream. AV1's only
        // form is Enhanced too, and every player gets it (without it there is no video). An
        // empty body is a frame FLV cannot carry: RTMP and FLV players skip it.
        let (type_id, body, enhanced) = match frame.codec {
            Codec::H265 => (
                message_type::VIDEO,
                flv::video_tag_body(&frame, VideoTagStyle::Legacy).unwrap_or_default(),
                flv::video_tag_body(&frame, VideoTagStyle::Enhanced).ok(),
            ),
            Codec::Opus => (
                message_type::AUDIO,
                Bytes::new(),
                flv_body.or_else(|| flv::audio_tag_body(&frame).ok()),
            ),
            _ if video => (
                message_type::VIDEO,
                flv_body
                    .or_else(|| flv::video_tag_body(&frame, VideoTagStyle::Legacy).ok())
                    .unwrap_or_default(),
                None,
            ),
            _ => (
                message_type::AUDIO,
                flv_body
                    .or_else(|| flv::audio_tag_body(&frame).ok())
                    .unwrap_or_default(),
                None,
            ),
        };
        let muxing = self.muxing_for(&frame, s.demand);
        // A frame TS cannot carry is left out of the TS outputs only, with a line in the log
        // the first time for each codec of the stream. Configurations always go in: the muxer
        // keeps them for the next random access point.
        let ts = if frame.kind == FrameKind::Coded && !muxing.ts {
            Ok(TsChunk::default())
        } else {
            self.muxer.mux(&frame)
        };
        let ts = match ts {
            Ok(ts) => {
                if !ts.bytes.is_empty() {
                    s.demand.muxed.ts += 1;
                }
                ts
            }
            Err(e) => {
                if !self.left_out_of_ts.contains(&frame.codec) {
                    self.left_out_of_ts.push(frame.codec);
                    s.outputs.push_back(Output::Log {
                        level: LogLevel::Warn,
                        message: format!(
                            "stream {}: {} frames left out of MPEG-TS (HTTP-TS, WS-TS, HLS, TS recordings): {e}",
                            self.key,
                            frame.codec.name()
                        ),
                    });
                }
                TsChunk::default()
            }
        };
        let fragment = if muxing.fmp4 {
            self.fmp4.as_mut().and_then(|m| m.push(&frame))
        } else {
            None
        };
        if fragment.is_some() {
            s.demand.muxed.fmp4 += 1;
        }
        let packet = Packet::new(
            kind,
            frame.dts,
            Some(frame),
            type_id,
            body,
            self.chunk_size,
            ts,
        );
        let packet = match enhanced {
            Some(e) => packet.with_enhanced(e),
            None => packet,
        };
        let mut packet = if muxing.ll {
            packet.with_ll_window()
        } else {
            packet
        };
        if let Some(f) = fragment {
            // The packet was just made: nothing shares it yet.
            packet.set_fmp4(f);
        }
        Some(packet)
    }

    /// Which muxers take `frame` (a coded one; configurations always go to both): those whose
    /// output someone consumes, a stopped one from the next random access point on (a video
    /// key frame, or any audio frame of a stream without video). A stopped fMP4 muxer starts
    /// again as a new one, so no sample held from before the stop comes out.
    fn muxing_for(&mut self, frame: &Frame, demand: &Demand) -> Wants {
        let mut wanted = demand.wants(&self.key);
        wanted.ts |= self.recorder.as_ref().is_some_and(Recorder::records_ts);
        let random_access = match frame.track() {
            TrackKind::Video => frame.key,
            TrackKind::Audio => self.tracks.tracks().video.is_none(),
        };
        if frame.kind != FrameKind::Coded {
            return self.muxing;
        }
        self.first_coded_dts.get_or_insert(frame.dts);
        let resume = |on: bool, wanted: bool| wanted && (on || random_access);
        if !self.muxing.fmp4 && wanted.fmp4 && random_access && self.fmp4.is_some() {
            self.fmp4 = self.new_fmp4_muxer(Some(frame.dts));
        }
        let fmp4 = resume(self.muxing.fmp4, wanted.fmp4);
        self.muxing = Wants {
            ts: resume(self.muxing.ts, wanted.ts),
            fmp4,
            // The windows start at the next independent fragment by themselves.
            ll: fmp4 && wanted.ll,
        };
        self.muxing
    }

    /// A new fMP4 muxer for the current tracks whose timeline goes on from the stream's (the
    /// previous muxer's start, else the first coded frame): decode times, and the program
    /// date-times Low-Latency HLS counts from them, keep measuring from the stream's start
    /// however late a muxer starts. From `dts` on instead when the publisher's clock went back
    /// past that start.
    fn new_fmp4_muxer(&self, dts: Option<i64>) -> Option<Fmp4Muxer> {
        let base = self
            .fmp4
            .as_ref()
            .and_then(Fmp4Muxer::base)
            .or(self.first_coded_dts);
        let muxer = Fmp4Muxer::new(self.tracks.tracks())?;
        Some(match base {
            Some(base) if dts.map_or(true, |d| d >= base) => muxer.with_base(base),
            _ => muxer,
        })
    }

    fn metadata_packet(&self, body: Bytes, dts: i64) -> Packet {
        Packet::new(
            PacketKind::Metadata,
            dts,
            None,
            message_type::DATA_AMF0,
            body,
            self.chunk_size,
            TsChunk::default(),
        )
    }

    /// The description changed: the hub and other engines learn it, and players of a
    /// publisher without metadata of its own get an `onMetaData` built from it.
    /// `dts`: the frame that changed it, if one did.
    fn tracks_changed(&mut self, dts: Option<i64>, s: &mut Sinks<'_>) {
        let tracks = self.tracks.tracks().clone();
        // fMP4 needs every track in its init segment: mux once the description is complete,
        // or has both tracks already (an RTMP publisher's configurations come first).
        if tracks.complete || (tracks.video.is_some() && tracks.audio.is_some()) {
            // A new muxer only when the init segment changes (a new picture size, codec, ...).
            let init = fmp4::init_segment(&tracks);
            if init.as_ref() != self.fmp4.as_ref().map(|m| m.init()) {
                self.fmp4 = self.new_fmp4_muxer(dts);
                self.log_left_out_of_fmp4(&tracks, s);
            }
        }
        if self.describe_metadata {
            let body = command::encode_on_metadata(&on_metadata(&tracks));
            let packet = self.metadata_packet(body, 0);
            self.emit(packet, s);
        }
        s.hub.set_tracks(self.conn, tracks.clone());
        self.broadcast(
            s,
            StreamMessage::Tracks {
                stream: self.key.clone(),
                publisher: self.conn,
                tracks,
            },
        );
    }

    /// Logs, once per codec, a track of `tracks` the new fMP4 muxer left out.
    fn log_left_out_of_fmp4(&mut self, tracks: &Tracks, s: &mut Sinks<'_>) {
        let m = self.fmp4.as_ref();
        let left_out = [
            tracks
                .video
                .as_ref()
                .filter(|_| !m.is_some_and(Fmp4Muxer::has_video))
                .map(|v| v.codec),
            tracks
                .audio
                .as_ref()
                .filter(|_| !m.is_some_and(Fmp4Muxer::has_audio))
                .map(|a| a.codec),
        ];
        for codec in left_out.into_iter().flatten() {
            if self.left_out_of_fmp4.contains(&codec) {
                continue;
            }
            self.left_out_of_fmp4.push(codec);
            s.outputs.push_back(Output::Log {
                level: LogLevel::Warn,
                message: format!(
                    "stream {}: {} frames left out of fMP4 (HTTP-fMP4, LL-HLS, fMP4 HLS): no MP4 sample entry players read, or no decoder configuration",
                    self.key,
                    codec.name()
                ),
            });
        }
    }

    /// A packet goes to HLS, the recording, other engines and the hub's players.
    fn emit(&mut self, packet: Packet, s: &mut Sinks<'_>) {
        feed_hls(s.hls, &self.key, packet.data());
        if let Some(r) = self.recorder.as_mut() {
            if r.push(&packet) {
                s.recording_dirty.push(self.conn);
            }
        }
        self.broadcast(
            s,
            StreamMessage::Packet {
                stream: self.key.clone(),
                publisher: self.conn,
                packet: packet.clone(),
            },
        );
        s.hub.push(self.conn, packet);
    }

    fn broadcast(&self, s: &mut Sinks<'_>, message: StreamMessage) {
        if self.shared {
            s.outputs.push_back(Output::Broadcast(message));
        }
    }
}

/// Gives HLS what it segments of a packet: its TS bytes, or its fMP4 fragment when the
/// segments are fMP4, and the fragment to Low-Latency HLS while the packet says its windows
/// are built (every worker does this for the packets it sees).
pub(super) fn feed_hls(hls: &mut Hls, key: &str, p: &PacketData) {
    if !hls.config().enable {
        return;
    }
    if p.frame.is_some() && !p.ll_window {
        hls.ll().pause(key);
    } else if let Some(f) = &p.fmp4 {
        hls.ll()
            .push(key, f.dts_ms, &f.pieces, f.independent, &f.init);
    }
    match hls.config().segment_format {
        SegmentFormat::Ts => hls.push(key, p.dts, &p.ts, p.ts_random_access),
        SegmentFormat::Fmp4 => {
            if let Some(f) = &p.fmp4 {
                hls.push_fragment(key, f);
            }
        }
    }
}

/// `onMetaData` for FLV players (they size their video and pick decoders from it), from a
/// track description: what an encoder that sends one puts in it.
/// A TS muxer whose program lists the declared tracks from the start.
fn ts_muxer_for(described: Option<&Tracks>) -> TsMuxer {
    let mut muxer = TsMuxer::new();
    if let Some(t) = described {
        muxer.declare(
            t.video.as_ref().map(|v| v.codec),
            t.audio.as_ref().map(|a| (a.codec, &a.config[..])),
        );
    }
    muxer
}

fn on_metadata(tracks: &Tracks) -> Value {
    let mut props: Vec<(String, Value)> = Vec::new();
    let mut add = |name: &str, v: Value| props.push((name.to_owned(), v));
    if let Some(v) = &tracks.video {
        if v.width > 0 && v.height > 0 {
            add("width", Value::Number(f64::from(v.width)));
            add("height", Value::Number(f64::from(v.height)));
        }
        if let Some(fps) = v.frame_rate {
            add("framerate", Value::Number(fps));
        }
        if let Some(id) = flv_video_codec_id(v.codec) {
            add("videocodecid", Value::Number(id));
        }
    }
    if let Some(a) = &tracks.audio {
        if let Some(id) = flv_audio_codec_id(a.codec) {
            add("audiocodecid", Value::Number(id));
        }
        if a.sample_rate > 0 {
            add("audiosamplerate", Value::Number(f64::from(a.sample_rate)));
            add("audiosamplesize", Value::Number(16.0));
        }
        if a.channels > 0 {
            add("stereo", Value::Boolean(a.channels > 1));
        }
    }
    Value::EcmaArray(props)
}

/// The FLV `CodecID` of a video codec (legacy ids: 7 AVC, 12 HEVC as ffmpeg writes it).
fn flv_video_codec_id(codec: Codec) -> Option<f64> {
    match codec {
        Codec::H264 => Some(7.0),
        Codec::H265 => Some(12.0),
        _ => None,
    }
}

/// The FLV `SoundFormat` of an audio codec.
fn flv_audio_codec_id(codec: Codec) -> Option<f64> {
    match codec {
        Codec::Mp3 => Some(2.0),
        Codec::G711A => Some(7.0),
        Codec::G711U => Some(8.0),
        Codec::Aac => Some(10.0),
        _ => None,
    }
}
