//! Silent audio for video-only streams (`[hub] silent_audio`).
//!
//! Some players (Flash-era ones, some hardware decoders, some browser MSE paths) stall on a
//! stream without audio. With [`SilentAudioConfig::enable`], a local publisher whose video has
//! run [`SilentAudioConfig::wait_ms`] past its first frame without any audio (configuration or
//! frame) gets a silent AAC-LC track: an AudioSpecificConfig (48 kHz, mono), then one
//! [`SILENT_MONO_FRAME`] per 1024 samples. The packets take the same path as a publisher's own
//! audio, so every output and recording carries them.
//!
//! The wait and the frame times are measured in the video's media time (its decode
//! timestamps), not with `now`: the silent track stays in step with the video whatever the
//! network does to arrival times (a publisher that sends a burst at start, a stalled link), and
//! a replayed dump gives the same packets. Each silent frame is sent just before the first video
//! frame whose time it has reached.
//!
//! Real audio ends the injection for good: none starts once audio was seen, and a publisher's
//! audio arriving after the silent track began stops it at that packet; from there players get
//! the publisher's own configuration and frames.

use crate::codec::aac::{AudioSpecificConfig, SILENT_MONO_FRAME};
use crate::media::{Codec, Frame, FrameKind, TrackKind};
use bytes::Bytes;

/// Settings of silent audio injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SilentAudioConfig {
    /// Give video-only streams a silent AAC track.
    pub enable: bool,
    /// How long (ms of the video's media time after its first frame) to wait for real audio
    /// before the silent track starts.
    pub wait_ms: u64,
}

impl Default for SilentAudioConfig {
    fn default() -> Self {
        SilentAudioConfig {
            enable: false,
            wait_ms: 1000,
        }
    }
}

/// Sampling rate of the silent track (Hz).
pub const SILENT_SAMPLE_RATE: u32 = 48_000;

/// `samplingFrequencyIndex` of [`SILENT_SAMPLE_RATE`].
const SILENT_SAMPLING_INDEX: u8 = 3;

/// Samples in one AAC-LC frame.
const SAMPLES_PER_FRAME: u64 = 1024;

/// A video timestamp further than this (ms) from the silent track's clock is a jump (a
/// publisher's clock restarting or skipping): the clock restarts at the video instead of
/// filling the gap.
const MAX_GAP_MS: i64 = 1_000;

/// Most silent frames sent before one video frame: those of [`MAX_GAP_MS`], and one more.
const MAX_FRAMES_PER_VIDEO: usize =
    (MAX_GAP_MS as u64 * SILENT_SAMPLE_RATE as u64 / 1000 / SAMPLES_PER_FRAME) as usize + 2;

/// Where a publisher's stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// No audio so far; the first coded video frame's decode time once seen.
    Waiting { first_video: Option<i64> },
    /// The silent track runs: its clock started at `base` (ms), `frames` frames ago.
    Injecting { base: i64, frames: u64 },
    /// The stream has audio of its own: nothing more to do.
    Done,
}

/// One publisher's silent track: decides whether it is needed and times its frames.
///
/// Feed [`SilentAudio::observe`] every frame the publisher sends, in order; it appends the
/// silent frames (the configuration first) to send before that frame. No clock, no I/O.
#[derive(Clone, Debug)]
pub struct SilentAudio {
    wait_ms: i64,
    stage: Stage,
}

impl SilentAudio {
    /// A publisher's track that starts after `wait_ms` of video without audio.
    pub fn new(wait_ms: u64) -> Self {
        SilentAudio {
            wait_ms: i64::try_from(wait_ms).unwrap_or(i64::MAX),
            stage: Stage::Waiting { first_video: None },
        }
    }

    /// True while silent frames are being made.
    pub fn injecting(&self) -> bool {
        matches!(self.stage, Stage::Injecting { .. })
    }

    /// True once the stream showed audio of its own: this track will never make a frame.
    pub fn done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// The silent track's AudioSpecificConfig: AAC-LC, 48 kHz, mono.
    pub fn config() -> AudioSpecificConfig {
        AudioSpecificConfig {
            object_type: 2,
            sample_rate: SILENT_SAMPLE_RATE,
            sampling_index: SILENT_SAMPLING_INDEX,
            channels: 1,
        }
    }

    /// Takes note of the publisher's next `frame`; appends to `out` the silent frames that go
    /// before it.
    pub fn observe(&mut self, frame: &Frame, out: &mut Vec<Frame>) {
        match frame.track() {
            TrackKind::Audio => {
                self.stage = Stage::Done;
                return;
            }
            TrackKind::Video if frame.kind != FrameKind::Coded => return,
            TrackKind::Video => {}
        }
        let dts = frame.dts;
        if let Stage::Waiting { first_video } = &mut self.stage {
            // A clock that went back restarts the wait.
            let first = first_video.map_or(dts, |f| f.min(dts));
            *first_video = Some(first);
            if dts.saturating_sub(first) < self.wait_ms {
                return;
            }
            out.push(silent_frame(
                FrameKind::Config,
                dts,
                Self::config().to_bytes(),
            ));
            self.stage = Stage::Injecting {
                base: dts,
                frames: 0,
            };
        }
        let Stage::Injecting { base, frames } = &mut self.stage else {
            return;
        };
        let mut next = frame_time(*base, *frames);
        if dts.saturating_sub(next) > MAX_GAP_MS || next.saturating_sub(dts) > MAX_GAP_MS {
            *base = dts;
            *frames = 0;
            next = dts;
        }
        for _ in 0..MAX_FRAMES_PER_VIDEO {
            if next > dts {
                break;
            }
            out.push(silent_frame(
                FrameKind::Coded,
                next,
                Bytes::from_static(&SILENT_MONO_FRAME),
            ));
            *frames = frames.saturating_add(1);
            next = frame_time(*base, *frames);
        }
    }
}

/// Start of frame number `frames` of a track whose clock started at `base` (ms), computed
/// from the sample count so rounding never accumulates.
fn frame_time(base: i64, frames: u64) -> i64 {
    let ms = frames.saturating_mul(SAMPLES_PER_FRAME * 1000) / u64::from(SILENT_SAMPLE_RATE);
    base.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn silent_frame(kind: FrameKind, dts: i64, payload: Bytes) -> Frame {
    Frame {
        codec: Codec::Aac,
        kind,
        dts,
        pts: dts,
        key: true,
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(dts: i64) -> Frame {
        Frame {
            codec: Codec::H264,
            kind: FrameKind::Coded,
            dts,
            pts: dts.saturating_add(80),
            key: false,
            payload: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
        }
    }

    fn audio(kind: FrameKind, dts: i64) -> Frame {
        silent_frame(kind, dts, Bytes::from_static(&[0x12, 0x10]))
    }

    /// Feeds `frames`; returns what was injected before each, by input index.
    fn run(s: &mut SilentAudio, frames: &[Frame]) -> Vec<(usize, Frame)> {
        let mut all = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let mut out = Vec::new();
            s.observe(f, &mut out);
            all.extend(out.into_iter().map(|o| (i, o)));
        }
        all
    }

    mod engine {
        use crate::dump::MediaSummary;
        use crate::engine::{Engine, EngineConfig, Listener, SilentAudioConfig};
        use crate::rtmp::client::{ClientConfig, ClientSession};
        use crate::rtmp::message_type::{AUDIO, VIDEO};
        use crate::ts::{TsDemuxer, AUDIO_PID};

        const PUBLISHER: u64 = 1;
        const FLV_PLAYER: u64 = 2;
        const TS_PLAYER: u64 = 3;
        const SILENT_CONFIG_TAG: [u8; 4] = [0xAF, 0, 0x11, 0x88];
        const SILENT_TAG: [u8; 6] = [0xAF, 1, 0x00, 0xC8, 0x00, 0x07];

        /// Drains the outputs; appends what `conn` can send to `out`.
        fn poll(e: &mut Engine, conn: u64, out: &mut Vec<u8>) {
            while e.poll_output().is_some() {}
            let mut v = Vec::new();
            e.poll_transmit(conn, usize::MAX, &mut v);
            v.iter().for_each(|b| out.extend_from_slice(b));
        }

        /// Publishes 2 s of 25 fps H.264 to live/s (with a real AAC frame at `audio_at` ms
        /// when given) to an engine with silent audio `enable`d (200 ms wait); returns what an
        /// HTTP-FLV player and an HTTP-TS player got.
        fn publish(enable: bool, audio_at: Option<u32>) -> (MediaSummary, Vec<u8>) {
            let peer = "127.0.0.1:40000".parse().unwrap();
            let config = EngineConfig {
                silent_audio: SilentAudioConfig {
                    enable,
                    wait_ms: 200,
                },
                ..EngineConfig::default()
            };
            let mut e = Engine::new(config, 7);
            e.handle_accept(FLV_PLAYER, Listener::Http, peer, 0);
            e.handle_input(
                FLV_PLAYER,
                b"GET /live/s.flv HTTP/1.1\r\nHost: h\r\n\r\n",
                0,
            );
            e.handle_accept(TS_PLAYER, Listener::Http, peer, 0);
            e.handle_input(TS_PLAYER, b"GET /live/s.ts HTTP/1.1\r\nHost: h\r\n\r\n", 0);
            e.handle_accept(PUBLISHER, Listener::Rtmp, peer, 0);
            let mut client = ClientSession::new(
                ClientConfig::new("live", "rtmp://127.0.0.1/live"),
                &[3; 1536],
                0,
            );
            client.publish("s");
            let (mut flv, mut ts) = (Vec::new(), Vec::new());
            let mut step = |e: &mut Engine, client: &mut ClientSession| {
                while let Some(b) = client.poll_transmit() {
                    e.handle_input(PUBLISHER, &b, 0);
                }
                poll(e, FLV_PLAYER, &mut flv);
                poll(e, TS_PLAYER, &mut ts);
                let mut answer = Vec::new();
                poll(e, PUBLISHER, &mut answer);
                client.handle_input(&answer, 0).unwrap();
                while client.poll_event().is_some() {}
            };
            for _ in 0..16 {
                step(&mut e, &mut client);
            }
            let video_config = [
                0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1,
                0, 2, 0x68, 0xCE,
            ];
            client.send_media(VIDEO, 0, &video_config).unwrap();
            for i in 0..50u32 {
                let t = i * 40;
                if audio_at.is_some_and(|a| a <= t && a > t.saturating_sub(40)) {
                    let at = audio_at.unwrap_or_default();
                    client
                        .send_media(AUDIO, at, &[0xAF, 0, 0x12, 0x10])
                        .unwrap();
                    client
                        .send_media(AUDIO, at, &[0xAF, 1, 0x21, 0x00])
                        .unwrap();
                }
                let frame: &[u8] = if i % 25 == 0 {
                    &[0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88]
                } else {
                    &[0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0x9A]
                };
                client.send_media(VIDEO, t, frame).unwrap();
                step(&mut e, &mut client);
            }
            let summary = MediaSummary::from_http_flv(&flv);
            assert_eq!(summary.error, None);
            let body = ts
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(Vec::new(), |at| ts[at + 4..].to_vec());
            (summary, body)
        }

        fn audio_pes(ts: &[u8]) -> usize {
            let mut d = TsDemuxer::new(1 << 20);
            d.push(ts).unwrap();
            d.flush().unwrap();
            std::iter::from_fn(|| d.poll_pes())
                .filter(|p| p.pid == AUDIO_PID)
                .count()
        }

        #[test]
        fn a_video_only_publisher_gets_silent_aac_in_flv_and_ts() {
            let (flv, ts) = publish(true, None);
            let audio: Vec<_> = flv.messages.iter().filter(|m| m.type_id == AUDIO).collect();
            assert_eq!(&audio[0].body[..], &SILENT_CONFIG_TAG);
            // From 200 ms (the wait) to the last video frame at 1960 ms, at 48 kHz.
            let frames = 1760 * 48 / 1024 + 1;
            assert_eq!(audio.len(), 1 + frames);
            assert!(audio[1..].iter().all(|m| m.body[..] == SILENT_TAG));
            assert!(audio.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
            // Each ends up next to the video of its time.
            let mut last_video = 0;
            for m in &flv.messages {
                if m.type_id == VIDEO {
                    last_video = m.timestamp;
                } else if m.type_id == AUDIO && m.body[..] == SILENT_TAG {
                    assert!(
                        m.timestamp + 40 >= last_video,
                        "{} vs {last_video}",
                        m.timestamp
                    );
                }
            }
            assert_eq!(audio_pes(&ts), frames);
        }

        #[test]
        fn off_or_with_real_audio_nothing_is_injected_and_real_audio_ends_it() {
            let (flv, ts) = publish(false, None);
            assert_eq!((flv.audio, audio_pes(&ts)), (0, 0));
            // Audio within the wait: only the publisher's.
            let (flv, _) = publish(true, Some(100));
            let bodies: Vec<&[u8]> = flv
                .messages
                .iter()
                .filter(|m| m.type_id == AUDIO)
                .map(|m| &m.body[..])
                .collect();
            assert_eq!(bodies, [&[0xAF, 0, 0x12, 0x10][..], &[0xAF, 1, 0x21, 0x00]]);
            // Audio after the silent track began: it stops there.
            let (flv, _) = publish(true, Some(1000));
            let audio: Vec<_> = flv.messages.iter().filter(|m| m.type_id == AUDIO).collect();
            let real = audio
                .iter()
                .position(|m| m.body[..] == [0xAF, 0, 0x12, 0x10])
                .expect("the publisher's audio");
            assert!(real > 1);
            assert!(audio[1..real].iter().all(|m| m.body[..] == SILENT_TAG));
            assert_eq!(audio.len(), real + 2);
        }
    }

    #[test]
    fn config_is_aac_lc_48k_mono() {
        assert_eq!(&SilentAudio::config().to_bytes()[..], &[0x11, 0x88]);
        let parsed = AudioSpecificConfig::parse(&[0x11, 0x88]).unwrap();
        assert_eq!(parsed, SilentAudio::config());
    }

    #[test]
    fn video_only_gets_one_frame_per_1024_samples_after_the_wait() {
        let mut s = SilentAudio::new(1000);
        // 25 fps from 5000 ms for 10 s, with a video configuration first.
        let mut frames = vec![Frame {
            kind: FrameKind::Config,
            ..video(0)
        }];
        frames.extend((0..250).map(|i| video(5000 + i * 40)));
        let injected = run(&mut s, &frames);
        assert!(s.injecting());
        let (config_at, config) = &injected[0];
        assert_eq!(config.kind, FrameKind::Config);
        // The first video frame at or past 5000 + 1000 ms: 6000 ms, input 1 + 25.
        assert_eq!((*config_at, config.dts), (26, 6000));
        let coded: Vec<&(usize, Frame)> = injected[1..].iter().collect();
        assert!(coded.iter().all(|(_, f)| f.kind == FrameKind::Coded
            && f.payload[..] == SILENT_MONO_FRAME
            && f.codec == Codec::Aac));
        // From 6000 to the last video frame at 14960 ms: 8960 ms of 48 kHz in 1024 samples.
        let expected = 8960 * 48 / 1024 + 1;
        assert_eq!(coded.len(), expected as usize);
        assert_eq!(coded[0].1.dts, 6000);
        for w in coded.windows(2) {
            let step = w[1].1.dts - w[0].1.dts;
            assert!(step == 21 || step == 22, "step {step}");
        }
        // No drift: frame n is at n * 1024 / 48 ms.
        let last = coded.last().unwrap();
        assert_eq!(last.1.dts, 6000 + (expected - 1) * 1024 * 1000 / 48_000);
        // Every silent frame goes before the first video frame at or after its time.
        for (i, f) in &coded {
            assert!(f.dts <= frames[*i].dts && f.dts > frames[*i - 1].dts);
        }
    }

    #[test]
    fn audio_within_the_wait_means_no_injection() {
        for first_audio in [audio(FrameKind::Config, 0), audio(FrameKind::Coded, 900)] {
            let mut s = SilentAudio::new(1000);
            let mut frames: Vec<Frame> = (0..10).map(|i| video(i * 100)).collect();
            frames.push(first_audio);
            frames.extend((10..100).map(|i| video(i * 100)));
            assert!(run(&mut s, &frames).is_empty());
            assert!(s.done());
        }
    }

    #[test]
    fn real_audio_stops_the_silent_track() {
        let mut s = SilentAudio::new(0);
        let mut frames: Vec<Frame> = (0..50).map(|i| video(i * 40)).collect();
        let before = run(&mut s, &frames).len();
        // The configuration, then 0..=1960 ms of frames.
        assert_eq!(before, 1 + (1960 * 48 / 1024 + 1) as usize);
        frames = vec![audio(FrameKind::Coded, 2000)];
        frames.extend((51..100).map(|i| video(i * 40)));
        assert!(run(&mut s, &frames).is_empty());
        assert!(s.done() && !s.injecting());
    }

    #[test]
    fn clock_jumps_restart_the_track_without_a_flood() {
        let mut s = SilentAudio::new(0);
        let mut out = Vec::new();
        s.observe(&video(0), &mut out);
        assert_eq!(out.len(), 2);
        out.clear();
        // An hour later: one frame at the new time, not an hour of frames.
        s.observe(&video(3_600_000), &mut out);
        assert_eq!(out.iter().map(|f| f.dts).collect::<Vec<_>>(), [3_600_000]);
        out.clear();
        // Back to 0 (publisher restarted): the same.
        s.observe(&video(0), &mut out);
        assert_eq!(out.iter().map(|f| f.dts).collect::<Vec<_>>(), [0]);
        out.clear();
        // Extreme timestamps neither overflow nor loop.
        s.observe(&video(i64::MAX), &mut out);
        s.observe(&video(i64::MAX), &mut out);
        s.observe(&video(i64::MIN), &mut out);
        assert!(out.len() <= 3 * MAX_FRAMES_PER_VIDEO);
    }

    #[test]
    fn the_wait_is_measured_in_video_time_from_the_first_frame() {
        let mut s = SilentAudio::new(500);
        // Configs and metadata-like frames do not start the clock.
        let mut out = Vec::new();
        s.observe(
            &Frame {
                kind: FrameKind::Config,
                ..video(99_999)
            },
            &mut out,
        );
        s.observe(&video(10_000), &mut out);
        s.observe(&video(10_499), &mut out);
        assert!(out.is_empty() && !s.injecting());
        s.observe(&video(10_500), &mut out);
        assert!(s.injecting());
        assert_eq!(out.len(), 2);
    }
}
