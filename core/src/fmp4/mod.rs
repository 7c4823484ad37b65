//! Fragmented MP4 (ISO BMFF, CMAF): one muxer per stream, fed the stream's frames once, whose
//! output every fMP4 consumer shares (HTTP-fMP4 and WebSocket players, HLS with fMP4 segments,
//! Low-Latency HLS parts).
//!
//! How to use it:
//! - [`Fmp4Muxer::new`] from the stream's [`Tracks`] (the hub's description). Its
//!   [`Fmp4Muxer::init`] is the init segment (`ftyp` + `moov`): the video track is track 1
//!   (timescale 90 kHz), the audio track is track 2 (timescale: its sample rate); a track the
//!   muxer cannot describe (no parameter sets yet, a codec MP4 players do not take) is left out.
//! - [`Fmp4Muxer::push`] each coded frame in decode order. A sample's duration is known only
//!   when the next sample of its track arrives, so `push` returns the [`Fragment`] (`moof` +
//!   `mdat`) of the sample it *completed*: the previous one of that track (`None` for a track's
//!   first frame, a configuration record or a codec the init segment lacks). Every fragment
//!   holds exactly one sample, so any run of consecutive fragments is itself a valid fragment
//!   sequence: concatenate their [`Fragment::pieces`] to make a bigger chunk, an LL-HLS part or
//!   a segment, and cut wherever you like. A run that starts with a fragment whose
//!   [`Fragment::independent`] is true can be decoded on its own (it starts with a video key
//!   frame, or it is audio of a stream without video): start players and segments there.
//! - [`Fmp4Muxer::finish`] at the end of the stream gives the held samples, with durations
//!   guessed from the previous ones.
//!
//! Decode times are continuous from 0 (the stream's first frame): a timestamp jump of the
//! publisher (a step back of more than a second or forward of more than ten) continues the
//! timeline instead of following it. Composition offsets are signed (`trun` version 1), so
//! B-frames need no edit list. Payloads are never copied: a fragment is a small header (the
//! `moof` and the `mdat` box header) followed by the frame's shared payload.

pub mod demux;
mod write;

use bytes::{Bytes, BytesMut};

use crate::codec::{h264, h265};
use crate::hub::{AudioTrack, Tracks, VideoTrack};
use crate::media::{Codec, Frame, FrameKind, TrackKind};

/// The track id of video in every init segment and fragment.
pub const VIDEO_TRACK_ID: u32 = 1;
/// The track id of audio.
pub const AUDIO_TRACK_ID: u32 = 2;
/// The timescale of video tracks (ticks per second), the one MPEG-TS uses too.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// A step back larger than this (ms) is a discontinuity; smaller ones are interleaving.
const MAX_BACKWARD_JITTER_MS: i64 = 1_000;
/// A step forward larger than this (ms) is a discontinuity, not a gap.
const MAX_FORWARD_JUMP_MS: i64 = 10_000;

/// One movie fragment (`moof` + `mdat`) of one sample. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// The bytes, in order: the `moof` and `mdat` header, then the sample's shared payload.
    pub pieces: Vec<Bytes>,
    /// The init segment this fragment needs (shared with every other fragment of its muxer:
    /// compare with [`Bytes::as_ptr`] or by value to see when it changes).
    pub init: Bytes,
    /// The track of the sample.
    pub track: TrackKind,
    /// Decoding can start here: a video key frame, or audio when the init has no video.
    pub independent: bool,
    /// Decode time of the sample on the muxer's timeline (ms from the stream's first frame).
    pub dts_ms: i64,
    /// Duration of the sample (ms, rounded to the nearest; the fragment carries exact ticks).
    pub duration_ms: u64,
    /// `mfhd` sequence number (1, 2, ... per muxer).
    pub sequence: u32,
}

impl Fragment {
    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.pieces.iter().map(Bytes::len).sum()
    }

    /// True when there are no bytes (never for a fragment a muxer made).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A sample waiting for its successor (which tells its duration).
#[derive(Debug)]
struct Held {
    /// Decode time in track ticks.
    decode: u64,
    /// Composition offset in ticks.
    cto: i32,
    key: bool,
    payload: Bytes,
    dts_ms: i64,
}

#[derive(Debug)]
struct TrackState {
    id: u32,
    kind: TrackKind,
    codec: Codec,
    timescale: u32,
    held: Option<Held>,
    /// The last sample's duration (ticks), the guess for a sample without successor.
    last_duration: u32,
    /// The last publisher timestamp (ms) and its place on the muxer's timeline (ms).
    last_dts: Option<(i64, i64)>,
}

/// The fMP4 muxer of one stream. See the module docs.
///
/// Driving it: [`Fmp4Muxer::push`] each frame and use the fragment it returns at once; there
/// is nothing else to drain.
#[derive(Debug)]
pub struct Fmp4Muxer {
    init: Bytes,
    video: Option<TrackState>,
    audio: Option<TrackState>,
    /// Muxer timeline (ms) = publisher dts - `base`, adjusted at discontinuities.
    base: Option<i64>,
    sequence: u32,
}

impl Fmp4Muxer {
    /// A muxer for `tracks`; `None` when neither track can be carried in MP4 (yet).
    pub fn new(tracks: &Tracks) -> Option<Fmp4Muxer> {
        let video = tracks.video.as_ref().and_then(video_entry);
        let audio = tracks.audio.as_ref().and_then(audio_entry);
        if video.is_none() && audio.is_none() {
            return None;
        }
        let state = |id, kind, codec, timescale| TrackState {
            id,
            kind,
            codec,
            timescale,
            held: None,
            last_duration: 0,
            last_dts: None,
        };
        let init = write::init_segment(video.as_ref(), audio.as_ref());
        Some(Fmp4Muxer {
            init,
            video: video
                .as_ref()
                .map(|v| state(VIDEO_TRACK_ID, TrackKind::Video, v.codec, VIDEO_TIMESCALE)),
            audio: audio
                .as_ref()
                .map(|a| state(AUDIO_TRACK_ID, TrackKind::Audio, a.codec, a.timescale)),
            base: None,
            sequence: 0,
        })
    }

    /// Where this muxer's timeline starts, as a publisher decode time (ms); `None` before
    /// its first frame.
    pub fn base(&self) -> Option<i64> {
        self.base
    }

    /// The same muxer with its timeline starting at publisher decode time `base` (ms) rather
    /// than at its first frame: a muxer started again later goes on with the stream's time.
    pub fn with_base(mut self, base: i64) -> Self {
        self.base = Some(base);
        self
    }

    /// The init segment (`ftyp` + `moov`).
    pub fn init(&self) -> &Bytes {
        &self.init
    }

    /// Whether the init segment has a video track.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Whether the init segment has an audio track.
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Adds a frame; returns the fragment of the sample this frame completed, if any. See the
    /// module docs.
    pub fn push(&mut self, frame: &Frame) -> Option<Fragment> {
        if frame.kind != FrameKind::Coded {
            return None;
        }
        let has_video = self.video.is_some();
        let base = *self.base.get_or_insert(frame.dts);
        let track = match frame.track() {
            TrackKind::Video => self.video.as_mut()?,
            TrackKind::Audio => self.audio.as_mut()?,
        };
        if track.codec != frame.codec {
            return None;
        }
        let mut t_ms = frame.dts.saturating_sub(base);
        if let Some((last_in, last_t)) = track.last_dts {
            let step = frame.dts.saturating_sub(last_in);
            if !(-MAX_BACKWARD_JITTER_MS..=MAX_FORWARD_JUMP_MS).contains(&step) {
                // Continue the timeline one sample after the last one.
                let guess = ticks_to_ms(u64::from(track.last_duration), track.timescale);
                let wanted = last_t.saturating_add(guess.max(1));
                self.base = Some(frame.dts.saturating_sub(wanted));
                t_ms = wanted;
            }
        }
        // Never before 0 or before the track's previous sample.
        let floor = track.last_dts.map_or(0, |(_, t)| t);
        t_ms = t_ms.max(floor).max(0);
        track.last_dts = Some((frame.dts, t_ms));
        let decode = ms_to_ticks(t_ms, track.timescale);
        let cto_ms = frame.pts.saturating_sub(frame.dts);
        let cto = ms_to_ticks_signed(cto_ms, track.timescale);
        let next = Held {
            decode,
            cto,
            key: frame.key,
            payload: frame.payload.clone(),
            dts_ms: t_ms,
        };
        let done = track.held.replace(next)?;
        let duration = decode.saturating_sub(done.decode);
        let duration = match u32::try_from(duration) {
            Ok(0) | Err(_) => track.last_duration.max(1),
            Ok(d) => d,
        };
        track.last_duration = duration;
        self.sequence = self.sequence.wrapping_add(1);
        Some(fragment(
            &self.init,
            self.sequence,
            track,
            has_video,
            done,
            duration,
        ))
    }

    /// The samples still held, as fragments (video first), with guessed durations: call at
    /// the end of the stream.
    pub fn finish(&mut self) -> Vec<Fragment> {
        let has_video = self.video.is_some();
        let mut out = Vec::new();
        for track in [self.video.as_mut(), self.audio.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(done) = track.held.take() {
                let duration = track.last_duration.max(1);
                self.sequence = self.sequence.wrapping_add(1);
                out.push(fragment(
                    &self.init,
                    self.sequence,
                    track,
                    has_video,
                    done,
                    duration,
                ));
            }
        }
        out
    }
}

fn fragment(
    init: &Bytes,
    sequence: u32,
    track: &TrackState,
    has_video: bool,
    sample: Held,
    duration: u32,
) -> Fragment {
    let independent = match track.kind {
        TrackKind::Video => sample.key,
        TrackKind::Audio => !has_video,
    };
    let sync = sample.key || track.kind == TrackKind::Audio;
    let mut head = BytesMut::with_capacity(128);
    write::fragment_head(
        &mut head,
        sequence,
        track.id,
        sample.decode,
        &write::SampleInfo {
            duration,
            size: u32::try_from(sample.payload.len()).unwrap_or(u32::MAX),
            sync,
            cto: sample.cto,
        },
    );
    Fragment {
        pieces: vec![head.freeze(), sample.payload],
        init: init.clone(),
        track: track.kind,
        independent,
        dts_ms: sample.dts_ms,
        duration_ms: ticks_to_ms(u64::from(duration), track.timescale) as u64,
        sequence,
    }
}

/// Where a fragment head of [`Fmp4Muxer`] keeps its fields (one `traf` with `tfhd`, `tfdt`
/// version 1 and one `trun` sample, in that order): checked by type before use.
const HEAD_TFHD_TRACK_ID: usize = 44;
const HEAD_TFDT_TYPE: usize = 52;
const HEAD_TFDT_TIME: usize = 60;
const HEAD_TRUN_TYPE: usize = 72;
const HEAD_TRUN_DURATION: usize = 88;

/// The track id, decode time and duration (ticks) of a fragment [`Fmp4Muxer`] made, read from
/// its first piece (`None` for anything else).
pub fn fragment_timing(head: &[u8]) -> Option<(u32, u64, u32)> {
    let field = |at: usize, n: usize| head.get(at..at + n);
    if field(HEAD_TFDT_TYPE, 4)? != b"tfdt" || field(HEAD_TRUN_TYPE, 4)? != b"trun" {
        return None;
    }
    let track = u32::from_be_bytes(field(HEAD_TFHD_TRACK_ID, 4)?.try_into().ok()?);
    let time = u64::from_be_bytes(field(HEAD_TFDT_TIME, 8)?.try_into().ok()?);
    let duration = u32::from_be_bytes(field(HEAD_TRUN_DURATION, 4)?.try_into().ok()?);
    Some((track, time, duration))
}

/// A copy of a fragment head (see [`fragment_timing`]) whose decode time is `time` instead.
pub fn with_decode_time(head: &[u8], time: u64) -> Option<Bytes> {
    fragment_timing(head)?;
    let mut copy = BytesMut::from(head);
    copy.get_mut(HEAD_TFDT_TIME..HEAD_TFDT_TIME + 8)?
        .copy_from_slice(&time.to_be_bytes());
    Some(copy.freeze())
}

/// The init segment of `tracks` alone (what [`Fmp4Muxer::init`] gives), `None` as for
/// [`Fmp4Muxer::new`].
pub fn init_segment(tracks: &Tracks) -> Option<Bytes> {
    Fmp4Muxer::new(tracks).map(|m| m.init)
}

/// `ms` in `timescale` ticks (negative times are 0).
fn ms_to_ticks(ms: i64, timescale: u32) -> u64 {
    let t = i128::from(ms.max(0)) * i128::from(timescale);
    u64::try_from((t + 500) / 1000).unwrap_or(u64::MAX)
}

fn ms_to_ticks_signed(ms: i64, timescale: u32) -> i32 {
    let t = i128::from(ms) * i128::from(timescale);
    let rounded = if t >= 0 {
        (t + 500) / 1000
    } else {
        (t - 500) / 1000
    };
    i32::try_from(rounded).unwrap_or(if rounded < 0 { i32::MIN } else { i32::MAX })
}

/// Ticks in ms, rounded to the nearest.
fn ticks_to_ms(ticks: u64, timescale: u32) -> i64 {
    if timescale == 0 {
        return 0;
    }
    let ms = (u128::from(ticks) * 1000 + u128::from(timescale) / 2) / u128::from(timescale);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// What the init segment says of the video track.
#[derive(Debug)]
struct VideoEntry {
    codec: Codec,
    /// `avc1`, `hvc1` or `av01`.
    fourcc: [u8; 4],
    /// The configuration box type (`avcC`, `hvcC`, `av1C`) and its contents.
    config_box: [u8; 4],
    config: Bytes,
    width: u16,
    height: u16,
}

/// What the init segment says of the audio track.
#[derive(Debug)]
struct AudioEntry {
    codec: Codec,
    timescale: u32,
    channels: u16,
    sample_rate: u32,
    /// AAC: the AudioSpecificConfig.
    config: Bytes,
}

fn video_entry(v: &VideoTrack) -> Option<VideoEntry> {
    let (fourcc, config_box, config) = match v.codec {
        Codec::H264 => (
            *b"avc1",
            *b"avcC",
            h264::AvcConfig::from_parameter_sets(v.sps.clone(), v.pps.clone())
                .ok()?
                .to_record(),
        ),
        Codec::H265 => (
            *b"hvc1",
            *b"hvcC",
            h265::HevcConfig::from_parameter_sets(v.vps.clone(), v.sps.clone(), v.pps.clone())
                .ok()?
                .to_record(),
        ),
        Codec::Av1 if !v.av1_config.is_empty() => (*b"av01", *b"av1C", v.av1_config.clone()),
        _ => return None,
    };
    Some(VideoEntry {
        codec: v.codec,
        fourcc,
        config_box,
        config,
        width: u16::try_from(v.width).unwrap_or(0),
        height: u16::try_from(v.height).unwrap_or(0),
    })
}

fn audio_entry(a: &AudioTrack) -> Option<AudioEntry> {
    let rate = a.sample_rate;
    let channels = u16::from(a.channels.max(1));
    match a.codec {
        Codec::Aac if !a.config.is_empty() && rate > 0 => Some(AudioEntry {
            codec: Codec::Aac,
            timescale: rate,
            channels,
            sample_rate: rate,
            config: a.config.clone(),
        }),
        Codec::Mp3 if rate > 0 => Some(AudioEntry {
            codec: Codec::Mp3,
            timescale: rate,
            channels,
            sample_rate: rate,
            config: Bytes::new(),
        }),
        // Channel mapping family 0 covers mono and stereo only.
        Codec::Opus if channels <= 2 => Some(AudioEntry {
            codec: Codec::Opus,
            timescale: 48_000,
            channels,
            sample_rate: 48_000,
            config: Bytes::new(),
        }),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests;
