//! Demuxes the real FLV files of the shared media directory and checks codec headers, frame
//! counts and byte-exact round trips; builds HEVC tags from committed fixtures; checks
//! composition times of a B-frame stream (converted with ffmpeg when it is installed).
//!
//! The media directory is `$RILL_MEDIA_DIR`, else `../../shared/media` from this crate, else
//! `/work/shared/media`. A missing file or a missing ffmpeg fails the test: nothing is skipped
//! (tools/test-all.sh installs ffmpeg).

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use rill_core::codec::{aac::AudioSpecificConfig, h264, h265, split_avcc};
use rill_core::flv::{
    audio_tag_body, frame_from_audio_tag, frame_from_video_tag, video_tag_body, write_file_header,
    write_tag, FlvDemuxer, Tag, TagType, VideoTagStyle,
};
use rill_core::media::{Codec, Frame, FrameKind};

fn media_dir() -> PathBuf {
    let candidates = [
        std::env::var_os("RILL_MEDIA_DIR").map(PathBuf::from),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/media"
        ))),
        Some(PathBuf::from("/work/shared/media")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_dir())
        .expect("shared media directory not found (set RILL_MEDIA_DIR)")
}

fn media_file(name: &str) -> Vec<u8> {
    let path = media_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Demuxes a whole file, pushing it in uneven pieces as a socket would deliver it.
fn demux(data: &[u8]) -> Vec<Tag> {
    let mut d = FlvDemuxer::default();
    let mut tags = Vec::new();
    let mut rest = data;
    let mut piece = 1;
    while !rest.is_empty() {
        let n = piece.min(rest.len());
        d.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(tag) = d.poll_tag().expect("valid FLV") {
            tags.push(tag);
        }
        piece = piece * 3 % 7919 + 1;
    }
    assert_eq!(d.buffered(), 0, "trailing bytes");
    let h = d.header().unwrap();
    assert!(h.has_audio && h.has_video);
    tags
}

struct Expect {
    file: &'static str,
    width: u32,
    height: u32,
    level: u8,
    video_frames: usize,
    key_frames: usize,
    audio_frames: usize,
}

fn check_file(e: &Expect) {
    let data = media_file(e.file);
    let tags = demux(&data);
    assert_eq!(tags[0].tag_type, TagType::Script);
    assert!(tags[0].body.windows(10).any(|w| w == b"onMetaData"));

    let mut video = Vec::new();
    let mut audio = Vec::new();
    let mut remuxed = BytesMut::new();
    write_file_header(true, true, &mut remuxed);
    for tag in &tags {
        let (frame, body) = match tag.tag_type {
            TagType::Script => {
                write_tag(TagType::Script, tag.timestamp, &tag.body, &mut remuxed);
                continue;
            }
            TagType::Video => {
                let f = frame_from_video_tag(tag.timestamp, &tag.body)
                    .unwrap()
                    .unwrap();
                let body = video_tag_body(&f, VideoTagStyle::Legacy).unwrap();
                video.push(f.clone());
                (f, body)
            }
            TagType::Audio => {
                let f = frame_from_audio_tag(tag.timestamp, &tag.body)
                    .unwrap()
                    .unwrap();
                let body = audio_tag_body(&f).unwrap();
                audio.push(f.clone());
                (f, body)
            }
        };
        // Round trip: frame back to an identical tag body; payload is a slice, not a copy.
        assert_eq!(body, tag.body, "{:?} at {}", tag.tag_type, tag.timestamp);
        let end = tag.body.as_ptr() as usize + tag.body.len();
        assert_eq!(frame.payload.as_ptr() as usize + frame.payload.len(), end);
        write_tag(tag.tag_type, tag.timestamp, &body, &mut remuxed);
    }
    // Muxing the frames again gives back the file byte for byte.
    assert!(remuxed[..] == data[..], "remuxed file differs");

    // Video: one config first, coded frames, an end of sequence last.
    assert_eq!(video[0].kind, FrameKind::Config);
    assert_eq!(video.last().unwrap().kind, FrameKind::EndOfSequence);
    let cfg = h264::AvcConfig::parse(&video[0].payload).unwrap();
    assert_eq!(
        (cfg.profile, cfg.level, cfg.nalu_length_size),
        (100, e.level, 4)
    );
    assert_eq!(&cfg.to_record()[..], &video[0].payload[..]);
    let sps = h264::parse_sps(&cfg.sps[0]).unwrap();
    assert_eq!((sps.width, sps.height), (e.width, e.height));
    let coded: Vec<&Frame> = video
        .iter()
        .filter(|f| f.kind == FrameKind::Coded)
        .collect();
    assert_eq!(coded.len(), e.video_frames);
    assert_eq!(coded.iter().filter(|f| f.key).count(), e.key_frames);
    assert!(coded[0].key);
    let mut last_dts = 0;
    for f in &coded {
        assert_eq!((f.codec, f.pts), (Codec::H264, f.dts));
        assert!(f.dts >= last_dts);
        last_dts = f.dts;
        let nals: Vec<Bytes> = split_avcc(&f.payload, cfg.nalu_length_size)
            .collect::<Result<_, _>>()
            .unwrap();
        let has_idr = nals
            .iter()
            .any(|n| h264::nal_type(n) == Some(h264::NAL_IDR));
        assert_eq!(has_idr, f.key);
    }
    // 25 fps.
    let duration = coded.last().unwrap().dts - coded[0].dts;
    assert_eq!(duration, (e.video_frames as i64 - 1) * 40);

    // Audio: AAC LC 44.1 kHz stereo.
    assert_eq!(audio[0].kind, FrameKind::Config);
    let asc = AudioSpecificConfig::parse(&audio[0].payload).unwrap();
    assert_eq!(
        (asc.object_type, asc.sample_rate, asc.channels),
        (2, 44100, 2)
    );
    let raw = audio.iter().filter(|f| f.kind == FrameKind::Coded).count();
    assert_eq!(raw, e.audio_frames);
    assert!(audio.iter().all(|f| f.codec == Codec::Aac && f.key));
}

#[test]
fn h264_aac_10s() {
    // Values from `ffprobe -count_packets -show_streams`.
    check_file(&Expect {
        file: "h264_aac_10s.flv",
        width: 640,
        height: 360,
        level: 30,
        video_frames: 250,
        key_frames: 5,
        audio_frames: 432,
    });
}

#[test]
fn h264_aac_30s() {
    check_file(&Expect {
        file: "h264_aac_30s.flv",
        width: 1280,
        height: 720,
        level: 31,
        video_frames: 750,
        key_frames: 15,
        audio_frames: 1293,
    });
}

/// The `hvcC` record and first (IDR) sample of hevc_aac_10s.mp4.
const HEVC_CONFIG: &[u8] = include_bytes!("fixtures/hevc_config.bin");
const HEVC_KEYFRAME: &[u8] = include_bytes!("fixtures/hevc_keyframe.bin");

#[test]
fn hevc_tags_both_styles() {
    let config = Frame {
        codec: Codec::H265,
        kind: FrameKind::Config,
        dts: 0,
        pts: 0,
        key: true,
        payload: Bytes::from_static(HEVC_CONFIG),
    };
    let key = Frame {
        codec: Codec::H265,
        kind: FrameKind::Coded,
        dts: 0,
        pts: 80,
        key: true,
        payload: Bytes::from_static(HEVC_KEYFRAME),
    };
    for style in [VideoTagStyle::Legacy, VideoTagStyle::Enhanced] {
        let mut file = BytesMut::new();
        write_file_header(false, true, &mut file);
        for f in [&config, &key] {
            let body = video_tag_body(f, style).unwrap();
            write_tag(TagType::Video, f.dts as u32, &body, &mut file);
        }
        let tags = demux_video_only(&file);
        assert_eq!(tags.len(), 2);
        let first = tags[0].body[0];
        match style {
            VideoTagStyle::Legacy => assert_eq!(first, 0x1C),
            VideoTagStyle::Enhanced => assert_eq!(first, 0x90),
        }
        let got: Vec<Frame> = tags
            .iter()
            .map(|t| frame_from_video_tag(t.timestamp, &t.body).unwrap().unwrap())
            .collect();
        assert_eq!(got, vec![config.clone(), key.clone()]);

        let cfg = h265::HevcConfig::parse(&got[0].payload).unwrap();
        assert_eq!(&cfg.to_record()[..], HEVC_CONFIG);
        let sps = h265::parse_sps(&cfg.sps[0]).unwrap();
        assert_eq!((sps.width, sps.height, sps.profile_idc), (640, 360, 1));
        let nals: Vec<Bytes> = split_avcc(&got[1].payload, cfg.nalu_length_size)
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(nals
            .iter()
            .any(|n| h265::nal_type(n).is_some_and(h265::is_irap)));
    }
}

fn demux_video_only(data: &[u8]) -> Vec<Tag> {
    let mut d = FlvDemuxer::default();
    d.push(data);
    let mut tags = Vec::new();
    while let Some(t) = d.poll_tag().unwrap() {
        tags.push(t);
    }
    tags
}

/// Converts h264_bframes_aac_10s.mp4 to FLV with ffmpeg and checks that composition times survive: non-zero for reordered frames, never
/// negative.
#[test]
fn bframes_composition_times() {
    let input = media_dir().join("h264_bframes_aac_10s.mp4");
    assert!(input.is_file(), "{} missing", input.display());
    let out = std::env::temp_dir().join(format!("rill_flv_bframes_{}.flv", std::process::id()));
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
    let data = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let tags = demux(&data);
    let frames: Vec<Frame> = tags
        .iter()
        .filter(|t| t.tag_type == TagType::Video)
        .filter_map(|t| frame_from_video_tag(t.timestamp, &t.body).unwrap())
        .filter(|f| f.kind == FrameKind::Coded)
        .collect();
    // Values from `ffprobe -show_packets` on the converted file.
    assert_eq!(frames.len(), 250);
    assert_eq!(frames.iter().filter(|f| f.key).count(), 5);
    assert_eq!(frames.iter().filter(|f| f.pts != f.dts).count(), 190);
    assert_eq!((frames[0].dts, frames[0].pts), (0, 80));
    assert_eq!((frames[1].dts, frames[1].pts), (40, 240));
    assert!(frames.iter().all(|f| f.pts >= f.dts));
    // Presentation times are a permutation of the 25 fps grid.
    let mut pts: Vec<i64> = frames.iter().map(|f| f.pts).collect();
    pts.sort_unstable();
    assert!(pts
        .iter()
        .enumerate()
        .all(|(i, &p)| p == 80 + 40 * i as i64));
    for (f, t) in frames.iter().zip(
        tags.iter()
            .filter(|t| t.tag_type == TagType::Video && t.body.get(1) == Some(&1)),
    ) {
        assert_eq!(video_tag_body(f, VideoTagStyle::Legacy).unwrap(), t.body);
    }
}
