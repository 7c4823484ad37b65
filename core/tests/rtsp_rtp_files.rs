//! Real streams through RTP: the frames of the shared media files (H.264 with B-frames, AAC) are
//! packetized, reordered within the window, depacketized, and compared with the originals:
//! payloads and pts exact, and dts rebuilt from pts alone matching the original decode
//! timeline once the estimator's start-up frames are past.
//!
//! The media directory is `$RILL_MEDIA_DIR`, else `../../shared/media` from this crate, else
//! `/work/shared/media`. The B-frame MP4 is converted to FLV with ffmpeg. A missing file or
//! tool fails the test (tools/test-all.sh installs ffmpeg); nothing is skipped.

use std::path::PathBuf;

use rill_core::codec::aac::AudioSpecificConfig;
use rill_core::codec::h264::AvcConfig;
use rill_core::flv::{frame_from_audio_tag, frame_from_video_tag, FlvDemuxer, TagType};
use rill_core::media::{Frame, FrameKind};
use rill_core::rtp::{CodecParams, Depacketizer, Packetizer, RtpPacket, TrackParams};

fn media_dir() -> PathBuf {
    [
        std::env::var_os("RILL_MEDIA_DIR").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/media"
        ))),
        Some(PathBuf::from("/work/shared/media")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_dir())
    .expect("shared media directory not found (set RILL_MEDIA_DIR)")
}

/// The B-frame MP4 as FLV bytes, converted with ffmpeg.
fn bframes_flv() -> Vec<u8> {
    let input = media_dir().join("h264_bframes_aac_10s.mp4");
    assert!(input.is_file(), "{} missing", input.display());
    let out = std::env::temp_dir().join(format!("rill_rtp_bframes_{}.flv", std::process::id()));
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&input)
        .args(["-c", "copy", "-f", "flv"])
        .arg(&out)
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "ffmpeg is required (tools/test-all.sh installs it): {status:?}"
    );
    let data = std::fs::read(&out).expect("converted FLV");
    let _ = std::fs::remove_file(&out);
    data
}

fn frames(flv: &[u8]) -> (Vec<Frame>, Vec<Frame>) {
    let mut d = FlvDemuxer::default();
    d.push(flv);
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    while let Some(tag) = d.poll_tag().expect("valid FLV") {
        match tag.tag_type {
            TagType::Video => video.extend(frame_from_video_tag(tag.timestamp, &tag.body).unwrap()),
            TagType::Audio => audio.extend(frame_from_audio_tag(tag.timestamp, &tag.body).unwrap()),
            _ => {}
        }
    }
    (video, audio)
}

/// Packetizes, swaps neighbouring packets (every 5th pair), depacketizes.
fn through_rtp(params: &TrackParams, frames: &[Frame]) -> Vec<Frame> {
    let mut p = Packetizer::new(params, 0x5EED, 65000, 4_000_000_000, 1400).unwrap();
    let mut pkts = Vec::new();
    for f in frames {
        p.push(f, &mut pkts).unwrap();
    }
    for i in (1..pkts.len().saturating_sub(1)).step_by(5) {
        pkts.swap(i, i + 1);
    }
    let mut d = Depacketizer::new(params, 8).unwrap();
    let mut out = Vec::new();
    for x in pkts {
        d.push(RtpPacket::parse(&x.to_bytes()).unwrap()).unwrap();
        out.extend(std::iter::from_fn(|| d.poll_frame()));
    }
    d.flush().unwrap();
    out.extend(std::iter::from_fn(|| d.poll_frame()));
    assert_eq!(d.lost(), 0);
    out
}

#[test]
fn h264_b_frames_keep_pts_and_decode_timeline() {
    let flv = bframes_flv();
    let (video, _) = frames(&flv);
    let config = video.iter().find(|f| f.kind == FrameKind::Config).unwrap();
    let avc = AvcConfig::parse(&config.payload).unwrap();
    let params = TrackParams {
        payload_type: 96,
        clock_rate: 90000,
        channels: 1,
        codec: CodecParams::H264 {
            sps: avc.sps.clone(),
            pps: avc.pps.clone(),
        },
    };
    let coded: Vec<&Frame> = video
        .iter()
        .filter(|f| f.kind == FrameKind::Coded)
        .collect();
    let out = through_rtp(&params, &video);
    let out_coded: Vec<&Frame> = out.iter().filter(|f| f.kind == FrameKind::Coded).collect();
    assert_eq!(out_coded.len(), coded.len());
    assert_eq!(
        out.iter().filter(|f| f.kind == FrameKind::Config).count(),
        1
    );
    let first_pts = coded[0].pts;
    let mut last_dts = i64::MIN;
    for (i, (a, b)) in coded.iter().zip(&out_coded).enumerate() {
        assert_eq!(a.payload, b.payload, "frame {i}");
        assert_eq!(a.key, b.key, "frame {i}");
        // RTP timestamps count from the first frame's pts.
        assert_eq!(b.pts, a.pts - first_pts, "frame {i}");
        assert!(b.dts <= b.pts && b.dts >= last_dts, "frame {i}");
        last_dts = b.dts;
        if i >= 2 {
            assert_eq!(b.dts, a.dts - first_pts, "frame {i}");
        }
    }
    assert!(out_coded.iter().filter(|f| f.pts != f.dts).count() > 100);
}

#[test]
fn aac_frames_survive() {
    let flv = std::fs::read(media_dir().join("h264_aac_10s.flv")).expect("h264_aac_10s.flv");
    let (_, audio) = frames(&flv);
    let config = audio.iter().find(|f| f.kind == FrameKind::Config).unwrap();
    let asc = AudioSpecificConfig::parse(&config.payload).unwrap();
    let params = TrackParams {
        payload_type: 97,
        clock_rate: asc.sample_rate,
        channels: asc.channel_count(),
        codec: CodecParams::aac_hbr(config.payload.clone()),
    };
    let coded: Vec<&Frame> = audio
        .iter()
        .filter(|f| f.kind == FrameKind::Coded)
        .collect();
    let out = through_rtp(&params, &audio);
    assert_eq!(out[0].kind, FrameKind::Config);
    assert_eq!(out[0].payload, config.payload);
    assert_eq!(out.len(), coded.len() + 1);
    for (a, b) in coded.iter().zip(&out[1..]) {
        assert_eq!(a.payload, b.payload);
        // Milliseconds -> RTP clock -> milliseconds may round down by one.
        assert!((a.pts - coded[0].pts - b.pts).abs() <= 1);
        assert_eq!(b.dts, b.pts);
    }
}
