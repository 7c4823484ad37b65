//! Unit and property tests of the FLV layer.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::media::Frame;

fn demux_all(data: &[u8]) -> Result<Vec<Tag>, FlvError> {
    let mut d = FlvDemuxer::default();
    d.push(data);
    let mut tags = Vec::new();
    while let Some(t) = d.poll_tag()? {
        tags.push(t);
    }
    Ok(tags)
}

fn video(
    codec: Codec,
    kind: FrameKind,
    dts: i64,
    pts: i64,
    key: bool,
    payload: &'static [u8],
) -> Frame {
    Frame {
        codec,
        kind,
        dts,
        pts,
        key,
        payload: Bytes::from_static(payload),
    }
}

#[test]
fn file_header_and_tags() {
    let mut out = BytesMut::new();
    write_file_header(true, true, &mut out);
    assert_eq!(&out[..], b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
    write_tag(TagType::Video, 0x1234_5678, &[1, 2, 3], &mut out);
    assert_eq!(
        &out[13..],
        &[9, 0, 0, 3, 0x34, 0x56, 0x78, 0x12, 0, 0, 0, 1, 2, 3, 0, 0, 0, 14]
    );
    write_tag(TagType::Script, 7, b"", &mut out);
    let mut d = FlvDemuxer::default();
    d.push(&out);
    assert_eq!(
        d.poll_tag().unwrap(),
        Some(Tag {
            tag_type: TagType::Video,
            timestamp: 0x1234_5678,
            body: Bytes::from_static(&[1, 2, 3])
        })
    );
    assert_eq!(
        d.header(),
        Some(FileHeader {
            has_audio: true,
            has_video: true
        })
    );
    let script = d.poll_tag().unwrap().unwrap();
    assert_eq!(
        (script.tag_type, script.timestamp, script.body.len()),
        (TagType::Script, 7, 0)
    );
    assert_eq!(d.poll_tag().unwrap(), None);
    assert_eq!(d.buffered(), 0);

    // Split header + shared body + trailer gives the same bytes as write_tag.
    let mut a = BytesMut::new();
    write_tag_header(TagType::Audio, 40, 2, &mut a);
    a.extend_from_slice(&[0xAF, 1]);
    a.extend_from_slice(&tag_trailer(2));
    let mut b = BytesMut::new();
    write_tag(TagType::Audio, 40, &[0xAF, 1], &mut b);
    assert_eq!(a, b);
}

#[test]
fn demuxer_errors() {
    assert!(matches!(
        demux_all(b"FLX"),
        Err(FlvError::BadSignature { .. })
    ));
    // A wrong first byte is rejected without waiting for the whole header.
    assert!(matches!(
        demux_all(b"G"),
        Err(FlvError::BadSignature { .. })
    ));
    assert_eq!(demux_all(b"FL").unwrap(), vec![]);
    assert!(matches!(
        demux_all(b"FLV\x01\x05\x00\x00\x00\x08"),
        Err(FlvError::BadHeaderSize { size: 8 })
    ));
    assert!(matches!(
        demux_all(b"FLV\x01\x05\x7f\x00\x00\x00"),
        Err(FlvError::BadHeaderSize { .. })
    ));
    // A longer header: extra bytes skipped.
    let mut long = b"FLV\x01\x01\x00\x00\x00\x0c\xAA\xBB\xCC\x00\x00\x00\x00".to_vec();
    write_tag(TagType::Video, 1, &[0x17, 2, 0, 0, 0], &mut BytesMut::new());
    let mut t = BytesMut::new();
    write_tag(TagType::Video, 1, &[0x17, 2, 0, 0, 0], &mut t);
    long.extend_from_slice(&t);
    assert_eq!(demux_all(&long).unwrap().len(), 1);

    let mut head = BytesMut::new();
    write_file_header(false, true, &mut head);
    let mut bad = head.to_vec();
    bad.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(
        demux_all(&bad),
        Err(FlvError::UnknownTagType {
            tag_type: 7,
            offset: 13
        })
    ));
    let mut enc = head.to_vec();
    enc.extend_from_slice(&[0x29, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(
        demux_all(&enc),
        Err(FlvError::EncryptedTag { offset: 13 })
    ));

    // An oversized tag is refused from its header alone.
    let mut d = FlvDemuxer::new(1000);
    d.push(&head);
    let mut big = BytesMut::new();
    write_tag_header(TagType::Video, 0, 1001, &mut big);
    d.push(&big);
    let e = d.poll_tag().unwrap_err();
    assert_eq!(
        e,
        FlvError::TagTooLarge {
            len: 1001,
            limit: 1000,
            offset: 13
        }
    );
    assert!(e.to_string().contains("1001"));
    // The error sticks.
    d.push(&[0; 100]);
    assert_eq!(d.poll_tag().unwrap_err(), e);
}

#[test]
fn legacy_avc_tags() {
    // Sequence header from h264_aac_10s.flv (shortened record).
    let seq = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1e, 0xff]);
    let f = frame_from_video_tag(0, &seq).unwrap().unwrap();
    assert_eq!(
        (f.codec, f.kind, f.key, f.dts, f.pts),
        (Codec::H264, FrameKind::Config, true, 0, 0)
    );
    assert_eq!(&f.payload[..], &seq[5..]);
    // Inter frame with a negative composition time (-10): sign-extended.
    let inter = Bytes::from_static(&[0x27, 1, 0xFF, 0xFF, 0xF6, 0, 0, 0, 1, 0x41]);
    let f = frame_from_video_tag(1000, &inter).unwrap().unwrap();
    assert_eq!(
        (f.kind, f.key, f.dts, f.pts),
        (FrameKind::Coded, false, 1000, 990)
    );
    assert_eq!(video_tag_body(&f, VideoTagStyle::Legacy).unwrap(), inter);
    // Key frame with +80 ms (the B-frame file's first frame).
    let key = Bytes::from_static(&[0x17, 1, 0, 0, 0x50, 0, 0, 0, 1, 0x65]);
    let f = frame_from_video_tag(0, &key).unwrap().unwrap();
    assert_eq!((f.key, f.pts), (true, 80));
    // End of sequence.
    let eos = Bytes::from_static(&[0x17, 2, 0, 0, 0]);
    let f = frame_from_video_tag(9983, &eos).unwrap().unwrap();
    assert_eq!((f.kind, f.payload.len()), (FrameKind::EndOfSequence, 0));
    assert_eq!(video_tag_body(&f, VideoTagStyle::Legacy).unwrap(), eos);
    // HEVC legacy id 12.
    let hevc = Bytes::from_static(&[0x2C, 1, 0, 0, 0x28, 0, 0, 0, 1, 0x02]);
    let f = frame_from_video_tag(5, &hevc).unwrap().unwrap();
    assert_eq!((f.codec, f.pts), (Codec::H265, 45));
    assert_eq!(video_tag_body(&f, VideoTagStyle::Legacy).unwrap(), hevc);
    // Command frame, empty body: nothing.
    assert_eq!(
        frame_from_video_tag(0, &Bytes::from_static(&[0x57, 0])).unwrap(),
        None
    );
    assert_eq!(frame_from_video_tag(0, &Bytes::new()).unwrap(), None);
    // Errors.
    assert!(matches!(
        frame_from_video_tag(0, &Bytes::from_static(&[0x22, 0])),
        Err(FlvError::UnsupportedVideoCodec { codec_id: 2 })
    ));
    assert!(matches!(
        frame_from_video_tag(0, &Bytes::from_static(&[0x17, 1, 0, 0])),
        Err(FlvError::Truncated {
            field: "CompositionTime",
            ..
        })
    ));
    assert!(matches!(
        frame_from_video_tag(0, &Bytes::from_static(&[0x17])),
        Err(FlvError::Truncated { .. })
    ));
    assert!(matches!(
        frame_from_video_tag(0, &Bytes::from_static(&[0x17, 3, 0, 0, 0])),
        Err(FlvError::UnsupportedPacketType { value: 3, .. })
    ));
}

#[test]
fn enhanced_tags() {
    let start = Bytes::from_static(b"\x90hvc1\x01\x02");
    let f = frame_from_video_tag(0, &start).unwrap().unwrap();
    assert_eq!(
        (f.codec, f.kind, f.key),
        (Codec::H265, FrameKind::Config, true)
    );
    assert_eq!(&f.payload[..], &[1, 2]);
    assert_eq!(video_tag_body(&f, VideoTagStyle::Enhanced).unwrap(), start);

    let coded = Bytes::from_static(b"\xA1hvc1\xFF\xFF\xFE\x00\x00\x00\x01\x02");
    let f = frame_from_video_tag(100, &coded).unwrap().unwrap();
    assert_eq!(
        (f.kind, f.key, f.dts, f.pts),
        (FrameKind::Coded, false, 100, 98)
    );
    assert_eq!(&f.payload[..], &[0, 0, 0, 1, 2]);
    assert_eq!(video_tag_body(&f, VideoTagStyle::Enhanced).unwrap(), coded);
    // The same frame, legacy style.
    assert_eq!(
        &video_tag_body(&f, VideoTagStyle::Legacy).unwrap()[..],
        b"\x2C\x01\xFF\xFF\xFE\x00\x00\x00\x01\x02"
    );

    let x = Bytes::from_static(b"\x93avc1\x00\x00\x00\x01\x65");
    let f = frame_from_video_tag(7, &x).unwrap().unwrap();
    assert_eq!((f.codec, f.key, f.pts), (Codec::H264, true, 7));
    assert_eq!(video_tag_body(&f, VideoTagStyle::Enhanced).unwrap(), x);

    let end = Bytes::from_static(b"\x92hvc1");
    let f = frame_from_video_tag(7, &end).unwrap().unwrap();
    assert_eq!(f.kind, FrameKind::EndOfSequence);
    assert_eq!(video_tag_body(&f, VideoTagStyle::Enhanced).unwrap(), end);

    // AV1 CodedFrames has no CompositionTime; AV1 is Enhanced whatever the style.
    let av1 = Bytes::from_static(b"\xA1av01\x12\x00\x0A");
    let f = frame_from_video_tag(3, &av1).unwrap().unwrap();
    assert_eq!(
        (f.codec, f.pts, &f.payload[..]),
        (Codec::Av1, 3, &[0x12, 0, 0x0A][..])
    );
    assert_eq!(video_tag_body(&f, VideoTagStyle::Legacy).unwrap(), av1);
    let mut shifted = f.clone();
    shifted.pts += 1;
    assert!(matches!(
        video_tag_body(&shifted, VideoTagStyle::Enhanced),
        Err(FlvError::CompositionOutOfRange { offset: 1 })
    ));

    // Ignored: metadata, MPEG2TSSequenceStart, command frames.
    for body in [&b"\x94hvc1\x02\x00"[..], b"\x95av01", b"\xD1\x01", b"\xD0"] {
        assert_eq!(
            frame_from_video_tag(0, &Bytes::copy_from_slice(body)).unwrap(),
            None
        );
    }
    // Errors.
    assert!(matches!(
        frame_from_video_tag(0, &Bytes::from_static(b"\x90vp09")),
        Err(FlvError::UnsupportedFourCc { fourcc }) if &fourcc == b"vp09"
    ));
    assert!(matches!(
        frame_from_video_tag(0, &Bytes::from_static(b"\x96hvc1")),
        Err(FlvError::UnsupportedPacketType { value: 6, .. })
    ));
    assert!(matches!(
        frame_from_video_tag(0, &Bytes::from_static(b"\x91hvc")),
        Err(FlvError::Truncated {
            field: "VideoFourCc",
            ..
        })
    ));
    assert!(matches!(
        frame_from_video_tag(0, &Bytes::from_static(b"\x91hvc1\x00")),
        Err(FlvError::Truncated {
            field: "CompositionTime",
            ..
        })
    ));
}

#[test]
fn audio_tags() {
    let cfg = Bytes::from_static(&[0xAF, 0, 0x12, 0x10]);
    let f = frame_from_audio_tag(0, &cfg).unwrap().unwrap();
    assert_eq!(
        (f.codec, f.kind, f.key, &f.payload[..]),
        (Codec::Aac, FrameKind::Config, true, &[0x12, 0x10][..])
    );
    assert_eq!(audio_tag_body(&f).unwrap(), cfg);
    let raw = Bytes::from_static(&[0xAF, 1, 0x21, 0x4A]);
    let f = frame_from_audio_tag(23, &raw).unwrap().unwrap();
    assert_eq!((f.kind, f.dts, f.pts), (FrameKind::Coded, 23, 23));
    assert_eq!(audio_tag_body(&f).unwrap(), raw);

    // MP3 44.1 kHz joint stereo, and MPEG-2.5 8 kHz mono (SoundFormat 14).
    let mp3 = Bytes::from_static(&[0x2F, 0xFF, 0xFB, 0x90, 0x64, 0]);
    let f = frame_from_audio_tag(0, &mp3).unwrap().unwrap();
    assert_eq!((f.codec, f.payload.len()), (Codec::Mp3, 5));
    assert_eq!(audio_tag_body(&f).unwrap(), mp3);
    let mp3_8k = Bytes::from_static(&[0xE2, 0xFF, 0xE3, 0x18, 0xC4]);
    let f = frame_from_audio_tag(0, &mp3_8k).unwrap().unwrap();
    assert_eq!(f.codec, Codec::Mp3);
    assert_eq!(audio_tag_body(&f).unwrap(), mp3_8k);

    let alaw = Bytes::from_static(&[0x70, 0xD5, 0x55]);
    let f = frame_from_audio_tag(0, &alaw).unwrap().unwrap();
    assert_eq!(f.codec, Codec::G711A);
    assert_eq!(audio_tag_body(&f).unwrap(), alaw);
    let ulaw = Bytes::from_static(&[0x82, 0xFF]);
    let f = frame_from_audio_tag(0, &ulaw).unwrap().unwrap();
    assert_eq!((f.codec, &f.payload[..]), (Codec::G711U, &[0xFF][..]));

    assert_eq!(frame_from_audio_tag(0, &Bytes::new()).unwrap(), None);
    assert!(matches!(
        frame_from_audio_tag(0, &Bytes::from_static(&[0xAF])),
        Err(FlvError::Truncated {
            field: "AACPacketType",
            ..
        })
    ));
    assert!(matches!(
        frame_from_audio_tag(0, &Bytes::from_static(&[0xAF, 2])),
        Err(FlvError::UnsupportedPacketType { value: 2, .. })
    ));
    assert!(matches!(
        frame_from_audio_tag(0, &Bytes::from_static(&[0x6F, 2])),
        Err(FlvError::UnsupportedSoundFormat { format: 6 })
    ));
}

/// Enhanced RTMP audio as a current ffmpeg publishes Opus: SequenceStart with the `OpusHead`,
/// a MultichannelConfig (no frame), then CodedFrames; `mp4a` and `.mp3` FourCCs too.
#[test]
fn enhanced_audio_tags() {
    let head = crate::codec::opus::id_header(1);
    let mut start = b"\x90Opus".to_vec();
    start.extend_from_slice(&head);
    let f = frame_from_audio_tag(0, &Bytes::from(start.clone()))
        .unwrap()
        .unwrap();
    assert_eq!(
        (f.codec, f.kind, &f.payload[..]),
        (Codec::Opus, FrameKind::Config, &head[..])
    );
    assert_eq!(audio_tag_body(&f).unwrap(), start);
    let layout = Bytes::from_static(b"\x94Opus\x01\x01\x00\x00\x00\x04");
    assert_eq!(frame_from_audio_tag(0, &layout).unwrap(), None);
    let coded = Bytes::from_static(b"\x91Opus\xf8\xff\xfe");
    let f = frame_from_audio_tag(21, &coded).unwrap().unwrap();
    assert_eq!(
        (f.codec, f.kind, f.dts, &f.payload[..]),
        (Codec::Opus, FrameKind::Coded, 21, &[0xf8, 0xff, 0xfe][..])
    );
    assert_eq!(audio_tag_body(&f).unwrap(), coded);

    let aac = frame_from_audio_tag(0, &Bytes::from_static(b"\x90mp4a\x12\x10"))
        .unwrap()
        .unwrap();
    assert_eq!((aac.codec, aac.kind), (Codec::Aac, FrameKind::Config));
    let mp3 = frame_from_audio_tag(0, &Bytes::from_static(b"\x91.mp3\xff\xfb"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (mp3.codec, &mp3.payload[..]),
        (Codec::Mp3, &[0xff, 0xfb][..])
    );
    assert!(matches!(
        frame_from_audio_tag(0, &Bytes::from_static(b"\x91fLaC\x00")),
        Err(FlvError::UnsupportedFourCc { fourcc }) if &fourcc == b"fLaC"
    ));
    assert!(matches!(
        frame_from_audio_tag(0, &Bytes::from_static(b"\x95Opus")),
        Err(FlvError::UnsupportedPacketType { value: 5, .. })
    ));
    assert!(matches!(
        frame_from_audio_tag(0, &Bytes::from_static(b"\x91Op")),
        Err(FlvError::Truncated {
            field: "AudioFourCc",
            ..
        })
    ));
}

#[test]
fn unrepresentable_frames() {
    let opus = video(Codec::Opus, FrameKind::Coded, 0, 0, true, b"x");
    assert!(matches!(
        video_tag_body(&opus, VideoTagStyle::Legacy),
        Err(FlvError::Unrepresentable { .. })
    ));
    let eos = video(Codec::Aac, FrameKind::EndOfSequence, 0, 0, true, b"");
    assert!(matches!(
        audio_tag_body(&eos),
        Err(FlvError::Unrepresentable { .. })
    ));
    let mp3cfg = video(Codec::Mp3, FrameKind::Config, 0, 0, true, b"");
    assert!(matches!(
        audio_tag_body(&mp3cfg),
        Err(FlvError::Unrepresentable { .. })
    ));
    let h264 = video(Codec::H264, FrameKind::Coded, 0, 0, true, b"");
    assert!(matches!(
        audio_tag_body(&h264),
        Err(FlvError::Unrepresentable { .. })
    ));
    let far = video(Codec::H264, FrameKind::Coded, 0, 1 << 23, true, b"");
    assert!(matches!(
        video_tag_body(&far, VideoTagStyle::Legacy),
        Err(FlvError::CompositionOutOfRange { .. })
    ));
    let near = video(Codec::H264, FrameKind::Coded, 0, -(1 << 23), true, b"");
    let body = video_tag_body(&near, VideoTagStyle::Legacy).unwrap();
    assert_eq!(
        frame_from_video_tag(0, &body).unwrap().unwrap().pts,
        -(1 << 23)
    );
    let aac = video(Codec::Aac, FrameKind::Coded, 0, 0, true, b"");
    assert!(matches!(
        video_tag_body(&aac, VideoTagStyle::Enhanced),
        Err(FlvError::Unrepresentable { .. })
    ));
}

fn arb_payload() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn arb_video_frame() -> impl Strategy<Value = (Frame, VideoTagStyle)> {
    (
        prop_oneof![Just(Codec::H264), Just(Codec::H265), Just(Codec::Av1)],
        prop_oneof![
            Just(FrameKind::Config),
            Just(FrameKind::Coded),
            Just(FrameKind::EndOfSequence)
        ],
        any::<u32>(),
        -(1i64 << 23)..(1i64 << 23),
        any::<bool>(),
        arb_payload(),
        prop_oneof![Just(VideoTagStyle::Legacy), Just(VideoTagStyle::Enhanced)],
    )
        .prop_map(|(codec, kind, dts, cts, key, payload, style)| {
            // What each form can carry: configs are key frames; Enhanced carries a composition
            // offset only on coded H.264/H.265 frames; AV1 is always Enhanced.
            let enhanced = style == VideoTagStyle::Enhanced || codec == Codec::Av1;
            let cts = if enhanced && (kind != FrameKind::Coded || codec == Codec::Av1) {
                0
            } else {
                cts
            };
            let dts = i64::from(dts);
            let frame = Frame {
                codec,
                kind,
                dts,
                pts: dts + cts,
                key: key || kind == FrameKind::Config,
                payload,
            };
            (frame, style)
        })
}

fn arb_audio_frame() -> impl Strategy<Value = Frame> {
    (
        prop_oneof![
            Just((Codec::Aac, FrameKind::Config)),
            Just((Codec::Aac, FrameKind::Coded)),
            Just((Codec::Mp3, FrameKind::Coded)),
            Just((Codec::G711A, FrameKind::Coded)),
            Just((Codec::G711U, FrameKind::Coded)),
            Just((Codec::Opus, FrameKind::Config)),
            Just((Codec::Opus, FrameKind::Coded)),
        ],
        any::<u32>(),
        arb_payload(),
    )
        .prop_map(|((codec, kind), ts, payload)| Frame {
            codec,
            kind,
            dts: i64::from(ts),
            pts: i64::from(ts),
            key: true,
            payload,
        })
}

proptest! {
    #[test]
    fn video_frame_round_trip((frame, style) in arb_video_frame()) {
        let body = video_tag_body(&frame, style).unwrap();
        let mut header = BytesMut::new();
        write_video_tag_header(&frame, style, &mut header).unwrap();
        prop_assert_eq!(&body[..header.len()], &header[..]);
        let back = frame_from_video_tag(frame.dts as u32, &body).unwrap().unwrap();
        prop_assert_eq!(back, frame);
    }

    #[test]
    fn audio_frame_round_trip(frame in arb_audio_frame()) {
        let body = audio_tag_body(&frame).unwrap();
        let back = frame_from_audio_tag(frame.dts as u32, &body).unwrap().unwrap();
        prop_assert_eq!(back, frame);
    }

    #[test]
    fn demuxer_any_split(
        tags in proptest::collection::vec(
            (prop_oneof![Just(TagType::Audio), Just(TagType::Video), Just(TagType::Script)],
             any::<u32>(), arb_payload()),
            0..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut stream = BytesMut::new();
        write_file_header(true, false, &mut stream);
        for (t, ts, body) in &tags {
            write_tag(*t, *ts, body, &mut stream);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut d = FlvDemuxer::default();
        let mut got = Vec::new();
        for w in points.windows(2) {
            d.push(&stream[w[0]..w[1]]);
            while let Some(tag) = d.poll_tag().unwrap() {
                got.push(tag);
            }
        }
        let want: Vec<Tag> = tags
            .into_iter()
            .map(|(tag_type, timestamp, body)| Tag { tag_type, timestamp, body })
            .collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(d.header(), Some(FileHeader { has_audio: true, has_video: false }));
        prop_assert_eq!(d.buffered(), 0);
    }
}
