use bytes::Bytes;
use proptest::prelude::*;

use super::demux::{demux, DemuxSample, Demuxed};
use super::*;
use crate::hub::{AudioTrack, Tracks, VideoTrack};

/// The AVC sequence header of /work/shared/media/h264_aac_10s.flv (High, 3.0, 640x360).
pub(crate) const AVC_RECORD_640X360: &[u8] = &[
    0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xb4, 0x05, 0x01,
    0x7f, 0xcb, 0x80, 0x88, 0x00, 0x00, 0x03, 0x00, 0x08, 0x00, 0x00, 0x03, 0x01, 0x90, 0x78, 0xb1,
    0x75, 0x01, 0x00, 0x04, 0x68, 0xef, 0x3c, 0xb0, 0xfd, 0xf8, 0xf8, 0x00,
];

/// H.264 640x360 and AAC-LC 44.1 kHz stereo.
pub(crate) fn tracks() -> Tracks {
    let config = Frame {
        codec: Codec::H264,
        kind: FrameKind::Config,
        dts: 0,
        pts: 0,
        key: true,
        payload: Bytes::from_static(AVC_RECORD_640X360),
    };
    Tracks {
        video: Some(VideoTrack::from_config(&config)),
        audio: Some(AudioTrack {
            codec: Codec::Aac,
            sample_rate: 44_100,
            channels: 2,
            config: Bytes::from_static(&[0x12, 0x10]),
        }),
        complete: true,
    }
}

fn coded(codec: Codec, dts: i64, pts: i64, key: bool, payload: Vec<u8>) -> Frame {
    Frame {
        codec,
        kind: FrameKind::Coded,
        dts,
        pts,
        key,
        payload: Bytes::from(payload),
    }
}

fn stream(init: &Bytes, fragments: &[Fragment]) -> Bytes {
    let mut all = init.to_vec();
    for f in fragments {
        for p in &f.pieces {
            all.extend_from_slice(p);
        }
    }
    Bytes::from(all)
}

#[test]
fn the_init_segment_describes_both_tracks() {
    let m = Fmp4Muxer::new(&tracks()).expect("muxer");
    let d = demux(m.init()).expect("demux");
    assert!(d.samples.is_empty());
    assert_eq!(d.tracks.len(), 2);
    let v = &d.tracks[0];
    assert_eq!((v.id, &v.handler, v.timescale), (1, b"vide", 90_000));
    assert_eq!(&v.sample_entry, b"avc1");
    assert_eq!(&v.config[..], AVC_RECORD_640X360);
    let a = &d.tracks[1];
    assert_eq!((a.id, &a.handler, a.timescale), (2, b"soun", 44_100));
    assert_eq!(&a.sample_entry, b"mp4a");
    // The esds ends with the AudioSpecificConfig and the SL descriptor.
    assert!(a.config.ends_with(&[0x05, 2, 0x12, 0x10, 0x06, 1, 2]));
    assert!(m.init().starts_with(&[0, 0, 0, 28, b'f', b't', b'y', b'p']));
}

#[test]
fn an_av1_track_is_av01_with_the_published_av1c_record() {
    // An AV1CodecConfigurationRecord with its sequence header OBU (320x176).
    const AV1C: &[u8] = &[
        0x81, 0x20, 0x00, 0x00, 0x0a, 0x0d, 0x20, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xbc, 0xda, 0xf9,
        0x20, 0x21, 0xa0, 0x04,
    ];
    let mut t = tracks();
    t.video = Some(VideoTrack::from_config(&Frame {
        codec: Codec::Av1,
        kind: FrameKind::Config,
        dts: 0,
        pts: 0,
        key: true,
        payload: Bytes::from_static(AV1C),
    }));
    let mut m = Fmp4Muxer::new(&t).expect("muxer");
    assert!(m.has_video());
    let d = demux(m.init()).expect("demux");
    assert_eq!(&d.tracks[0].sample_entry, b"av01");
    assert_eq!(&d.tracks[0].config[..], AV1C);
    // Samples are the OBUs as published.
    let obus = vec![0x12, 0x00, 0x32, 0x02, 0xaa, 0xbb];
    let mut fragments = Vec::new();
    for (dts, key) in [(0, true), (40, false), (80, true)] {
        fragments.extend(m.push(&coded(Codec::Av1, dts, dts, key, obus.clone())));
    }
    let d = demux(&stream(m.init(), &fragments)).expect("demux");
    let video: Vec<_> = d.samples.iter().filter(|s| s.track_id == 1).collect();
    assert_eq!(video.len(), 2, "each frame completes the one before it");
    assert!(video.iter().all(|s| s.data[..] == obus[..]));
    assert!(video[0].sync && !video[1].sync);
}

#[test]
fn a_track_without_parameter_sets_or_a_codec_mp4_lacks_is_left_out() {
    let mut t = tracks();
    t.video = Some(VideoTrack::new(Codec::H264, vec![], vec![], vec![]));
    let m = Fmp4Muxer::new(&t).expect("audio alone");
    assert!(!m.has_video() && m.has_audio());
    t.audio = Some(AudioTrack {
        codec: Codec::G711A,
        sample_rate: 8000,
        channels: 1,
        config: Bytes::new(),
    });
    assert!(Fmp4Muxer::new(&t).is_none());
    t.audio = Some(AudioTrack {
        codec: Codec::Opus,
        sample_rate: 48_000,
        channels: 2,
        config: Bytes::new(),
    });
    let m = Fmp4Muxer::new(&t).expect("opus");
    let d = demux(m.init()).expect("demux");
    assert_eq!(&d.tracks[0].sample_entry, b"Opus");
    assert_eq!(d.tracks[0].timescale, 48_000);
}

#[test]
fn b_frames_keep_signed_composition_offsets_and_sync_flags() {
    let mut m = Fmp4Muxer::new(&tracks()).expect("muxer");
    // I P B B in decode order, pts ahead of dts by up to 120 ms; a negative offset too.
    let frames = [
        coded(Codec::H264, 1000, 1080, true, vec![1]),
        coded(Codec::H264, 1040, 1200, false, vec![2]),
        coded(Codec::H264, 1080, 1120, false, vec![3]),
        coded(Codec::H264, 1120, 1100, false, vec![4]),
        coded(Codec::H264, 1160, 1160, true, vec![5]),
    ];
    let mut frags: Vec<Fragment> = frames.iter().filter_map(|f| m.push(f)).collect();
    assert_eq!(frags.len(), 4, "the last frame waits for its duration");
    frags.extend(m.finish());
    assert_eq!(
        frags.iter().map(|f| f.independent).collect::<Vec<_>>(),
        [true, false, false, false, true]
    );
    assert_eq!(
        frags.iter().map(|f| f.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(frags[0].dts_ms, 0);
    assert_eq!(frags[1].duration_ms, 40);
    let d = demux(&stream(m.init(), &frags)).expect("demux");
    let ctos: Vec<i32> = d.samples.iter().map(|s| s.cto).collect();
    assert_eq!(ctos, [80 * 90, 160 * 90, 40 * 90, -20 * 90, 0]);
    let times: Vec<u64> = d.samples.iter().map(|s| s.decode_time).collect();
    assert_eq!(times, [0, 3600, 7200, 10_800, 14_400]);
    assert_eq!(
        d.samples.iter().map(|s| s.sync).collect::<Vec<_>>(),
        [true, false, false, false, true]
    );
    assert_eq!(d.sequences, [1, 2, 3, 4, 5]);
    // The payload is shared, not copied.
    assert_eq!(frags[0].pieces[1].as_ptr(), frames[0].payload.as_ptr());
}

#[test]
fn fragment_timing_is_read_and_moved_in_the_head() {
    let mut m = Fmp4Muxer::new(&tracks()).expect("muxer");
    m.push(&coded(Codec::Aac, 100, 100, true, vec![1]));
    let f = m
        .push(&coded(Codec::Aac, 123, 123, true, vec![2]))
        .expect("fragment");
    let head = &f.pieces[0];
    // 23 ms at 44.1 kHz, from 0.
    assert_eq!(fragment_timing(head), Some((AUDIO_TRACK_ID, 0, 1014)));
    let moved = with_decode_time(head, 441_000).expect("moved");
    assert_eq!(
        fragment_timing(&moved),
        Some((AUDIO_TRACK_ID, 441_000, 1014))
    );
    let d = demux(&stream(m.init(), &[])).expect("init");
    assert_eq!(d.tracks.len(), 2);
    let mut all = m.init().to_vec();
    all.extend_from_slice(&moved);
    all.extend_from_slice(&f.pieces[1]);
    let d = demux(&Bytes::from(all)).expect("demux");
    assert_eq!(d.samples[0].decode_time, 441_000);
    assert_eq!(&d.samples[0].data[..], &[1]);
    assert_eq!(fragment_timing(m.init()), None);
    assert_eq!(fragment_timing(&head[..70]), None);
}

#[test]
fn a_timestamp_jump_continues_the_timeline() {
    let mut m = Fmp4Muxer::new(&tracks()).expect("muxer");
    let mut frags = Vec::new();
    for dts in [0, 40, 80, 500_000, 500_040] {
        frags.extend(m.push(&coded(Codec::H264, dts, dts, dts == 0, vec![0])));
    }
    frags.extend(m.finish());
    let starts: Vec<i64> = frags.iter().map(|f| f.dts_ms).collect();
    assert_eq!(starts, [0, 40, 80, 120, 160]);
    // And back in time: continues too.
    let mut frags = Vec::new();
    for dts in [5000, 5040, 100, 140] {
        frags.extend(m.push(&coded(Codec::H264, dts, dts, false, vec![0])));
    }
    let starts: Vec<i64> = frags.iter().map(|f| f.dts_ms).collect();
    assert_eq!(starts, [200, 240, 280]);
}

#[test]
fn audio_of_a_stream_with_video_is_not_a_start() {
    let mut m = Fmp4Muxer::new(&tracks()).expect("muxer");
    m.push(&coded(Codec::Aac, 0, 0, true, vec![1]));
    let f = m
        .push(&coded(Codec::Aac, 23, 23, true, vec![2]))
        .expect("fragment");
    assert!(!f.independent);
    assert_eq!(f.track, TrackKind::Audio);
    let mut t = tracks();
    t.video = None;
    let mut m = Fmp4Muxer::new(&t).expect("muxer");
    m.push(&coded(Codec::Aac, 0, 0, true, vec![1]));
    let f = m
        .push(&coded(Codec::Aac, 23, 23, true, vec![2]))
        .expect("fragment");
    assert!(f.independent);
    // Configurations and frames of another codec give nothing.
    let mut config = coded(Codec::Aac, 30, 30, true, vec![0x12, 0x10]);
    config.kind = FrameKind::Config;
    assert!(m.push(&config).is_none());
    assert!(m.push(&coded(Codec::Mp3, 30, 30, true, vec![1])).is_none());
}

#[test]
fn the_demuxer_refuses_broken_input_without_panicking() {
    let mut m = Fmp4Muxer::new(&tracks()).expect("muxer");
    let mut frags: Vec<Fragment> = Vec::new();
    for dts in [0, 40, 80] {
        frags.extend(m.push(&coded(Codec::H264, dts, dts, true, vec![7; 100])));
    }
    let all = stream(m.init(), &frags);
    for cut in 1..all.len() {
        let _ = demux(&all.slice(..cut));
    }
    // A sample count far larger than its box.
    let whole = |f: &Fragment| f.pieces.concat();
    assert!(demux(&Bytes::from(whole(&frags[0]))).is_ok());
    let mut bad = whole(&frags[0]);
    let trun = bad.windows(4).position(|w| w == b"trun").expect("trun");
    bad[trun + 8..trun + 12].copy_from_slice(&u32::MAX.to_be_bytes());
    let r = demux(&Bytes::from(bad));
    assert!(
        matches!(
            r,
            Err(demux::DemuxError::Truncated {
                field: "trun samples",
                ..
            })
        ),
        "{r:?}"
    );
    // A trun without per-sample fields claiming billions of (empty) samples.
    let mut bad = whole(&frags[0]);
    bad[trun + 5..trun + 8].copy_from_slice(&[0, 0, 0]);
    bad[trun + 8..trun + 12].copy_from_slice(&u32::MAX.to_be_bytes());
    let r = demux(&Bytes::from(bad));
    assert!(
        matches!(
            r,
            Err(demux::DemuxError::Invalid {
                field: "trun sample_count",
                ..
            })
        ),
        "{r:?}"
    );
}

/// One generated frame: video or audio, the step from the previous frame of its track (ms),
/// the composition offset (video), key, payload.
#[derive(Clone, Debug)]
struct Gen {
    video: bool,
    step: i64,
    cto: i64,
    key: bool,
    payload: Vec<u8>,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        any::<bool>(),
        1i64..100,
        -50i64..300,
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 1..64),
    )
        .prop_map(|(video, step, cto, key, payload)| Gen {
            video,
            step,
            cto,
            key,
            payload,
        })
}

/// The frames of a generated list, each track's timestamps from 0, merged by decode time.
fn frames(list: &[Gen]) -> Vec<Frame> {
    let (mut v, mut a) = (0i64, 0i64);
    let mut out: Vec<Frame> = Vec::new();
    for g in list {
        if g.video {
            out.push(coded(Codec::H264, v, v + g.cto, g.key, g.payload.clone()));
            v += g.step;
        } else {
            out.push(coded(Codec::Aac, a, a, true, g.payload.clone()));
            a += g.step;
        }
    }
    out.sort_by_key(|f| f.dts);
    out
}

/// Frames of `track` back from demuxed samples.
fn back(d: &Demuxed, id: u32, codec: Codec) -> Vec<Frame> {
    let timescale = d
        .tracks
        .iter()
        .find(|t| t.id == id)
        .map_or(1, |t| i64::from(t.timescale));
    let ms = |ticks: i64| (ticks * 1000 + timescale / 2).div_euclid(timescale);
    d.samples
        .iter()
        .filter(|s| s.track_id == id)
        .map(|s: &DemuxSample| {
            let dts = ms(s.decode_time as i64);
            Frame {
                codec,
                kind: FrameKind::Coded,
                dts,
                pts: ms(s.decode_time as i64 + i64::from(s.cto)),
                key: s.sync,
                payload: s.data.clone(),
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn frames_round_trip_through_fmp4(list in proptest::collection::vec(gen(), 1..60)) {
        let input = frames(&list);
        let mut m = Fmp4Muxer::new(&tracks()).expect("muxer");
        let mut frags: Vec<Fragment> = input.iter().filter_map(|f| m.push(f)).collect();
        frags.extend(m.finish());
        let d = demux(&stream(m.init(), &frags)).expect("demux");
        let want = |video: bool| -> Vec<Frame> {
            input
                .iter()
                .filter(|f| (f.codec == Codec::H264) == video)
                .map(|f| {
                    let mut f = f.clone();
                    if !video {
                        f.key = true;
                    }
                    f
                })
                .collect()
        };
        prop_assert_eq!(back(&d, VIDEO_TRACK_ID, Codec::H264), want(true));
        prop_assert_eq!(back(&d, AUDIO_TRACK_ID, Codec::Aac), want(false));
        // Every fragment is decodable from an independent one on: sequence numbers increase.
        prop_assert!(d.sequences.windows(2).all(|w| w[1] == w[0] + 1));
    }
}

#[test]
fn the_demuxer_reads_what_ffmpeg_writes() {
    // ffmpeg: 32x32 H.264 with B-frames (GOP 4) and AAC, frag_keyframe+empty_moov.
    let file = Bytes::from_static(include_bytes!(
        "../../../fuzz/seeds/fmp4_demux/bframes_aac.mp4"
    ));
    let d = demux(&file).expect("demux");
    let video = d
        .tracks
        .iter()
        .find(|t| &t.handler == b"vide")
        .expect("video");
    assert_eq!(&video.sample_entry, b"avc1");
    let frames: Vec<&DemuxSample> = d
        .samples
        .iter()
        .filter(|s| s.track_id == video.id)
        .collect();
    assert_eq!(frames.len(), 8);
    assert!(frames[0].sync);
    assert!(
        frames.iter().any(|s| s.cto != frames[0].cto),
        "B-frames reorder"
    );
    assert!(d.samples.iter().any(|s| s.track_id != video.id));
}
