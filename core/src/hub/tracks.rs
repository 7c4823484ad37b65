//! Track descriptions: what a stream carries, kept by the hub next to its packets.
//!
//! A stream's publication describes its tracks once (from an RTSP ANNOUNCE's SDP, or from the
//! decoder configurations an RTMP publisher sends) and the hub keeps the description, so that
//! whoever needs codecs, parameter sets, clock rates or the picture size (an RTSP DESCRIBE,
//! `onMetaData` for FLV players, the statistics API) reads them here instead of digging in
//! media packets.

use bytes::Bytes;

use crate::codec::aac::AudioSpecificConfig;
use crate::codec::{av1, h264, h265, mp3, opus};
use crate::media::{Codec, Frame, FrameKind, TrackKind};

/// The tracks of one stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tracks {
    /// The video track, once known.
    pub video: Option<VideoTrack>,
    /// The audio track, once known.
    pub audio: Option<AudioTrack>,
    /// Every track the stream will have is described: declared up front (RTSP), or seen for
    /// long enough (both tracks, or half a second of video alone, or a second of audio alone).
    pub complete: bool,
}

/// A video track.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoTrack {
    /// The codec.
    pub codec: Codec,
    /// Displayed width in pixels, from the sequence parameter set (0 when unknown).
    pub width: u32,
    /// Displayed height in pixels (0 when unknown).
    pub height: u32,
    /// Frames per second, when the publisher said so.
    pub frame_rate: Option<f64>,
    /// H.265 video parameter sets (NAL units with their headers).
    pub vps: Vec<Bytes>,
    /// Sequence parameter sets.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets.
    pub pps: Vec<Bytes>,
    /// AV1: the AV1CodecConfigurationRecord (`av1C`) as published, which fMP4 carries as it
    /// is; empty for other codecs.
    pub av1_config: Bytes,
}

/// An audio track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioTrack {
    /// The codec.
    pub codec: Codec,
    /// Samples per second (the RTP clock rate; 48000 for Opus), 0 when unknown.
    pub sample_rate: u32,
    /// Channels, 0 when unknown.
    pub channels: u8,
    /// The decoder configuration (AAC AudioSpecificConfig), empty for codecs without one.
    pub config: Bytes,
}

impl VideoTrack {
    /// A track of `codec` with the given parameter sets; the picture size comes from the first
    /// sequence parameter set that parses.
    pub fn new(codec: Codec, vps: Vec<Bytes>, sps: Vec<Bytes>, pps: Vec<Bytes>) -> Self {
        let size = sps.first().and_then(|nal| match codec {
            Codec::H264 => h264::parse_sps(nal).ok().map(|s| (s.width, s.height)),
            Codec::H265 => h265::parse_sps(nal).ok().map(|s| (s.width, s.height)),
            _ => None,
        });
        let (width, height) = size.unwrap_or_default();
        VideoTrack {
            codec,
            width,
            height,
            frame_rate: None,
            vps,
            sps,
            pps,
            av1_config: Bytes::new(),
        }
    }

    /// The track a decoder configuration record (`frame` of kind [`FrameKind::Config`])
    /// describes; a record that does not parse gives the codec alone.
    pub fn from_config(frame: &Frame) -> Self {
        let none = || (Vec::new(), Vec::new(), Vec::new());
        let (vps, sps, pps) = match frame.codec {
            Codec::H264 => h264::AvcConfig::parse(&frame.payload)
                .map(|c| (Vec::new(), c.sps, c.pps))
                .unwrap_or_else(|_| none()),
            Codec::H265 => h265::HevcConfig::parse(&frame.payload)
                .map(|c| (c.vps, c.sps, c.pps))
                .unwrap_or_else(|_| none()),
            _ => none(),
        };
        let mut track = VideoTrack::new(frame.codec, vps, sps, pps);
        if frame.codec == Codec::Av1 {
            // The size is in the sequence header OBU of the av1C record.
            if let Ok(seq) = av1::parse_config_record(&frame.payload) {
                (track.width, track.height) = (seq.width, seq.height);
                track.av1_config = frame.payload.clone();
            }
        }
        track
    }
}

impl AudioTrack {
    /// The track an AAC AudioSpecificConfig or an Opus `OpusHead` (`frame` of kind
    /// [`FrameKind::Config`]) describes.
    pub fn from_config(frame: &Frame) -> Option<Self> {
        let (sample_rate, channels) = match frame.codec {
            Codec::Aac => {
                let asc = AudioSpecificConfig::parse(&frame.payload).ok()?;
                (asc.sample_rate, asc.channels)
            }
            // Opus is clocked at 48 kHz whatever rate the encoder was fed.
            Codec::Opus => (48_000, opus::id_header_channels(&frame.payload)?),
            _ => return None,
        };
        Some(AudioTrack {
            codec: frame.codec,
            sample_rate,
            channels,
            config: frame.payload.clone(),
        })
    }

    /// The track of a coded frame of a codec that has no separate configuration: G.711 is
    /// 8 kHz mono unless a description says otherwise, Opus is clocked at 48 kHz, an MP3
    /// frame header says its rate and channels.
    pub fn from_coded(frame: &Frame) -> Self {
        let (sample_rate, channels) = match frame.codec {
            Codec::G711A | Codec::G711U => (8000, 1),
            Codec::Opus => (48_000, 2),
            Codec::Mp3 => mp3::parse_header(&frame.payload)
                .map(|h| (h.sample_rate, h.channels))
                .unwrap_or_default(),
            _ => (0, 0),
        };
        AudioTrack {
            codec: frame.codec,
            sample_rate,
            channels,
            config: Bytes::new(),
        }
    }
}

/// Media time (ms) of video alone after which a stream is taken to have no audio.
const VIDEO_ALONE_MS: i64 = 500;
/// Media time (ms) of audio alone after which a stream is taken to have no video.
const AUDIO_ALONE_MS: i64 = 1000;

/// Builds a stream's [`Tracks`] from the frames a publisher sends.
#[derive(Debug, Default)]
pub struct TrackWatch {
    tracks: Tracks,
    /// The frame rate the publisher announced, kept for a video track described later
    /// (encoders send `onMetaData` before the video configuration).
    announced_frame_rate: Option<f64>,
    /// First and last decode times of coded video and audio.
    video_span: Option<(i64, i64)>,
    audio_span: Option<(i64, i64)>,
}

impl TrackWatch {
    /// Starts from `tracks` (a description given up front, or the default: nothing known).
    pub fn new(tracks: Tracks) -> Self {
        TrackWatch {
            tracks,
            ..TrackWatch::default()
        }
    }

    /// The tracks as known now.
    pub fn tracks(&self) -> &Tracks {
        &self.tracks
    }

    /// Sets the frame rate a publisher announced (its `onMetaData`), now or for the video
    /// track once it is known; true when that changed the description.
    pub fn set_frame_rate(&mut self, fps: f64) -> bool {
        if !(fps.is_finite() && fps > 0.0) {
            return false;
        }
        self.announced_frame_rate = Some(fps);
        match self.tracks.video.as_mut() {
            Some(v) if v.frame_rate != Some(fps) => {
                v.frame_rate = Some(fps);
                true
            }
            _ => false,
        }
    }

    /// Learns from one frame; true when the description changed.
    pub fn observe(&mut self, frame: &Frame) -> bool {
        let t = &mut self.tracks;
        let mut changed = false;
        match (frame.track(), frame.kind) {
            (TrackKind::Video, FrameKind::Config) => {
                let mut v = VideoTrack::from_config(frame);
                v.frame_rate = self.announced_frame_rate;
                changed = t.video.as_ref() != Some(&v);
                t.video = Some(v);
            }
            (TrackKind::Audio, FrameKind::Config) => {
                if let Some(a) = AudioTrack::from_config(frame) {
                    changed = t.audio.as_ref() != Some(&a);
                    t.audio = Some(a);
                }
            }
            (TrackKind::Video, FrameKind::Coded) => {
                if t.video.as_ref().map(|v| v.codec) != Some(frame.codec) {
                    let mut v = VideoTrack::new(frame.codec, Vec::new(), Vec::new(), Vec::new());
                    v.frame_rate = self.announced_frame_rate;
                    t.video = Some(v);
                    changed = true;
                }
                extend(&mut self.video_span, frame.dts);
            }
            (TrackKind::Audio, FrameKind::Coded) => {
                if t.audio.as_ref().map(|a| a.codec) != Some(frame.codec) {
                    t.audio = Some(AudioTrack::from_coded(frame));
                    changed = true;
                }
                extend(&mut self.audio_span, frame.dts);
            }
            (_, FrameKind::EndOfSequence) => {}
        }
        if !t.complete {
            let long = |span: Option<(i64, i64)>, ms| {
                span.is_some_and(|(first, last)| last.saturating_sub(first) >= ms)
            };
            t.complete = match (self.video_span, self.audio_span) {
                (Some(_), Some(_)) => true,
                (v, None) => long(v, VIDEO_ALONE_MS),
                (None, a) => long(a, AUDIO_ALONE_MS),
            };
            changed |= t.complete;
        }
        changed
    }
}

fn extend(span: &mut Option<(i64, i64)>, dts: i64) {
    match span {
        Some((_, last)) => *last = dts,
        None => *span = Some((dts, dts)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(codec: Codec, kind: FrameKind, dts: i64, payload: &'static [u8]) -> Frame {
        Frame {
            codec,
            kind,
            dts,
            pts: dts,
            key: true,
            payload: Bytes::from_static(payload),
        }
    }

    /// An AV1 stream's description has its size from the av1C's sequence header (the API
    /// said 0x0).
    #[test]
    fn av1_size_comes_from_the_sequence_header() {
        let av1c: &[u8] = &[
            0x81, 0x20, 0x00, 0x00, 0x0a, 0x0d, 0x20, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xbc, 0xda,
            0xf9, 0x20, 0x21, 0xa0, 0x04,
        ];
        let v = VideoTrack::from_config(&frame(Codec::Av1, FrameKind::Config, 0, av1c));
        assert_eq!((v.codec, v.width, v.height), (Codec::Av1, 320, 176));
        assert_eq!(v.av1_config, av1c, "kept for fMP4's av1C");
    }

    #[test]
    fn a_frame_rate_announced_before_the_video_configuration_is_kept() {
        let mut w = TrackWatch::default();
        assert!(!w.set_frame_rate(25.0), "no video track to change yet");
        let avcc: &'static [u8] = &[
            1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1, 0, 2, 0x68, 0xCE,
        ];
        assert!(w.observe(&frame(Codec::H264, FrameKind::Config, 0, avcc)));
        let v = w.tracks().video.clone().expect("video");
        assert_eq!(v.frame_rate, Some(25.0));
        assert!(
            !w.set_frame_rate(25.0),
            "the same rate again changes nothing"
        );
        assert!(w.set_frame_rate(30.0));
        assert!(
            !w.observe(&frame(Codec::H264, FrameKind::Config, 40, avcc)),
            "the same configuration again changes nothing"
        );
        assert_eq!(
            w.tracks().video.as_ref().and_then(|v| v.frame_rate),
            Some(30.0)
        );
    }

    #[test]
    fn configs_describe_the_tracks_and_both_tracks_complete_them() {
        let mut w = TrackWatch::default();
        // An AVC record with a 16x16 baseline SPS (one macroblock) and a PPS.
        let avcc: &'static [u8] = &[
            1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1, 0, 2, 0x68, 0xCE,
        ];
        assert!(w.observe(&frame(Codec::H264, FrameKind::Config, 0, avcc)));
        let v = w.tracks().video.clone().expect("video");
        assert_eq!((v.codec, v.sps.len(), v.pps.len()), (Codec::H264, 1, 1));
        assert!(w.observe(&frame(Codec::Aac, FrameKind::Config, 0, &[0x12, 0x10])));
        let a = w.tracks().audio.clone().expect("audio");
        assert_eq!((a.sample_rate, a.channels), (44_100, 2));
        assert!(!w.tracks().complete);
        w.observe(&frame(
            Codec::H264,
            FrameKind::Coded,
            0,
            &[0, 0, 0, 1, 0x65],
        ));
        assert!(!w.tracks().complete);
        assert!(w.observe(&frame(Codec::Aac, FrameKind::Coded, 10, &[1])));
        assert!(w.tracks().complete);
        assert!(!w.observe(&frame(Codec::Aac, FrameKind::Coded, 30, &[1])));
    }

    #[test]
    fn one_track_alone_completes_after_a_while() {
        let mut w = TrackWatch::default();
        for dts in (0..=480).step_by(40) {
            w.observe(&frame(
                Codec::H264,
                FrameKind::Coded,
                dts,
                &[0, 0, 0, 1, 0x65],
            ));
        }
        assert!(!w.tracks().complete);
        w.observe(&frame(
            Codec::H264,
            FrameKind::Coded,
            520,
            &[0, 0, 0, 1, 0x65],
        ));
        assert!(w.tracks().complete);
        assert!(w.tracks().audio.is_none());
        let mut w = TrackWatch::default();
        w.observe(&frame(Codec::G711A, FrameKind::Coded, 0, &[0xD5]));
        w.observe(&frame(Codec::G711A, FrameKind::Coded, 999, &[0xD5]));
        assert!(!w.tracks().complete);
        w.observe(&frame(Codec::G711A, FrameKind::Coded, 1000, &[0xD5]));
        let a = w.tracks().audio.clone().expect("audio");
        assert_eq!(
            (a.sample_rate, a.channels, w.tracks().complete),
            (8000, 1, true)
        );
    }
}
