//! Arbitrary bytes through the FLV demuxer and the tag body parsers. Every frame that comes
//! out must survive re-encoding: frame -> tag body -> frame gives the same frame.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::flv::{
    audio_tag_body, frame_from_audio_tag, frame_from_video_tag, video_tag_body, FlvDemuxer,
    TagType, VideoTagStyle,
};
use rill_core::media::{Frame, FrameKind, TrackKind};

fn check_round_trip(frame: &Frame) {
    let ts = u32::try_from(frame.dts).expect("dts comes from a u32 timestamp");
    match frame.track() {
        TrackKind::Video => {
            let mut styles = vec![VideoTagStyle::Legacy];
            // Enhanced SequenceStart/SequenceEnd carry no composition offset.
            if frame.kind == FrameKind::Coded || frame.pts == frame.dts {
                styles.push(VideoTagStyle::Enhanced);
            }
            for style in styles {
                let body = video_tag_body(frame, style).expect("a parsed frame re-encodes");
                let back = frame_from_video_tag(ts, &body)
                    .expect("re-encoded body parses")
                    .expect("re-encoded body is a frame");
                assert_eq!(&back, frame, "{style:?}");
            }
        }
        TrackKind::Audio => {
            let body = audio_tag_body(frame).expect("a parsed frame re-encodes");
            let back = frame_from_audio_tag(ts, &body)
                .expect("re-encoded body parses")
                .expect("re-encoded body is a frame");
            assert_eq!(&back, frame);
        }
    }
}

fn check_body(tag_type: TagType, timestamp: u32, body: &Bytes) {
    let frame = match tag_type {
        TagType::Video => frame_from_video_tag(timestamp, body),
        TagType::Audio => frame_from_audio_tag(timestamp, body),
        TagType::Script => return,
    };
    if let Ok(Some(frame)) = frame {
        assert_eq!(
            frame.track() == TrackKind::Video,
            tag_type == TagType::Video
        );
        check_round_trip(&frame);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    // The input as a single tag body of each kind.
    let body = Bytes::copy_from_slice(rest);
    check_body(TagType::Video, 1000, &body);
    check_body(TagType::Audio, 1000, &body);

    // The input as an FLV stream (with a valid file header prepended when the first byte is
    // odd), delivered in two pieces.
    let mut stream = Vec::with_capacity(rest.len() + 13);
    if split & 1 == 1 {
        stream.extend_from_slice(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
    }
    stream.extend_from_slice(rest);
    let cut = usize::from(split).min(stream.len());
    let mut demuxer = FlvDemuxer::new(1 << 20);
    for piece in [&stream[..cut], &stream[cut..]] {
        demuxer.push(piece);
        loop {
            match demuxer.poll_tag() {
                Ok(Some(tag)) => {
                    assert!(tag.body.len() <= 1 << 20);
                    check_body(tag.tag_type, tag.timestamp, &tag.body);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
