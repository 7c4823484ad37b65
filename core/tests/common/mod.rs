//! What the engine tests on [`World`] share: clients that publish or play, and small media.

#![allow(dead_code)] // each test file uses its own part

use bytes::Bytes;
use rill_core::engine::Listener;
use rill_core::flv::{FlvDemuxer, Tag, TagType};
use rill_core::rtmp::client::ClientEvent;
use rill_core::rtmp::message_type;
use rill_core::sim::{ClientId, World};

/// Two engines with the settings of `toml` (a `rill.toml` document).
pub fn world(toml: &str) -> World {
    World::new(
        2,
        rill_core::config::Config::from_toml(toml)
            .expect("valid config")
            .engine_config(),
    )
}

/// An RTMP client of app `live` on `engine` that asked to publish `stream` (run until quiet).
pub fn publisher(w: &mut World, engine: usize, stream: &str) -> ClientId {
    let c = w.rtmp(engine, "live");
    w.rtmp_session(c).publish(stream);
    w.run();
    c
}

/// An RTMP client of app `live` on `engine` that asked to play `stream` (not run yet).
pub fn rtmp_player(w: &mut World, engine: usize, stream: &str) -> ClientId {
    let c = w.rtmp(engine, "live");
    w.rtmp_session(c).play(stream);
    c
}

/// An HTTP-FLV player of `live/{stream}.flv` on `engine` (not run yet).
pub fn flv_player(w: &mut World, engine: usize, stream: &str) -> ClientId {
    let c = w.raw(engine, Listener::Http);
    w.send(
        c,
        format!("GET /live/{stream}.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
    );
    c
}

/// Whether the RTMP client `c` was told something matching `f`.
pub fn told(w: &World, c: ClientId, f: impl Fn(&ClientEvent) -> bool) -> bool {
    w.rtmp_events(c).iter().any(f)
}

/// Whether the RTMP client `c` was refused with `NetStream.Publish.BadName`.
pub fn refused(w: &World, c: ClientId) -> bool {
    told(
        w,
        c,
        |e| matches!(e, ClientEvent::Rejected { code, .. } if code == "NetStream.Publish.BadName"),
    )
}

/// Whether the RTMP client `c` publishes (its publish was accepted).
pub fn publishing(w: &World, c: ClientId) -> bool {
    told(w, c, |e| matches!(e, ClientEvent::Publishing { .. }))
}

/// Sends `(message type, timestamp, body)` messages from publisher `c`, then runs.
pub fn send(w: &mut World, c: ClientId, messages: &[(u8, u32, Bytes)]) {
    for (t, ts, body) in messages {
        w.rtmp_session(c)
            .send_media(*t, *ts, body)
            .expect("publishing");
    }
    w.run();
}

/// Sends the video (AVC) and audio (AAC) configurations from publisher `c` at `ts`, then runs.
pub fn send_configs(w: &mut World, c: ClientId, ts: u32) {
    send(
        w,
        c,
        &[
            (message_type::VIDEO, ts, avc_sequence_header()),
            (message_type::AUDIO, ts, aac_sequence_header()),
        ],
    );
}

/// The head of raw client `c`'s HTTP response and the body so far.
pub fn http_response(w: &World, c: ClientId) -> (String, &[u8]) {
    let got = w.received(c);
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole HTTP head");
    (
        String::from_utf8_lossy(&got[..end + 4]).into_owned(),
        &got[end + 4..],
    )
}

/// The FLV tags an HTTP-FLV player `c` received (after a 200 head).
pub fn flv_tags(w: &World, c: ClientId) -> Vec<Tag> {
    let (head, body) = http_response(w, c);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut demuxer = FlvDemuxer::default();
    demuxer.push(body);
    let mut tags = Vec::new();
    while let Some(tag) = demuxer.poll_tag().expect("valid FLV") {
        tags.push(tag);
    }
    tags
}

/// Video tags among `tags`: (timestamp, body).
pub fn video_tags(tags: &[Tag]) -> Vec<(u32, Bytes)> {
    tags.iter()
        .filter(|t| t.tag_type == TagType::Video)
        .map(|t| (t.timestamp, t.body.clone()))
        .collect()
}

/// A minimal valid AVC sequence header tag body (SPS/PPS for 64x64 baseline).
pub fn avc_sequence_header() -> Bytes {
    let sps = [0x67, 0x42, 0xC0, 0x0A, 0xDA, 0x11, 0x10, 0x80];
    let pps = [0x68, 0xCE, 0x38, 0x80];
    let mut b = vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0A, 0xFF, 0xE1, 0];
    b.push(sps.len() as u8);
    b.extend_from_slice(&sps);
    b.extend_from_slice(&[1, 0, pps.len() as u8]);
    b.extend_from_slice(&pps);
    Bytes::from(b)
}

/// An AAC sequence header tag body (AAC-LC, 44.1 kHz, stereo).
pub fn aac_sequence_header() -> Bytes {
    Bytes::from_static(&[0xAF, 0, 0x12, 0x10])
}

/// An AVC video tag body: one NAL unit of type `nal` with `size` bytes of filler.
pub fn video(key: bool, nal: u8, size: usize) -> Bytes {
    let mut b = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    b.extend_from_slice(&(size as u32 + 1).to_be_bytes());
    b.push(nal);
    b.extend(std::iter::repeat(0xAB).take(size));
    Bytes::from(b)
}

/// Whether a video tag body is an AVC coded frame (not a sequence header) of a key frame.
pub fn is_key_frame(body: &[u8]) -> bool {
    body.first() == Some(&0x17) && body.get(1) == Some(&1)
}

/// Sends frames `from..to` of 25 fps H.264 (a key frame every 25, frame 0 one), each followed
/// by an AAC frame when `audio`, at `offset_ms + 40 * i`, advancing the clock 40 ms per frame
/// as an encoder would.
pub fn publish_live(
    w: &mut World,
    publisher: ClientId,
    from: u32,
    to: u32,
    offset_ms: u32,
    audio: bool,
) {
    for i in from..to {
        let frames = av_frames(offset_ms + i * 40, i % 25 == 0);
        send(w, publisher, if audio { &frames } else { &frames[..1] });
        w.advance(40);
    }
}

/// `frames` video frames at 25 fps from `start_ms`, a key frame every `gop`, each followed by
/// an AAC frame.
pub fn stream(start_ms: u32, frames: u32, gop: u32) -> Vec<(u8, u32, Bytes)> {
    (0..frames)
        .flat_map(|i| av_frames(start_ms + i * 40, i % gop == 0))
        .collect()
}

/// An H.264 frame at `ts` (a key frame when `key`) and the AAC frame 20 ms after it.
fn av_frames(ts: u32, key: bool) -> [(u8, u32, Bytes); 2] {
    [
        (
            message_type::VIDEO,
            ts,
            video(key, if key { 0x65 } else { 0x41 }, 200),
        ),
        (
            message_type::AUDIO,
            ts + 20,
            Bytes::from_static(&[0xAF, 1, 0x21, 0x10, 0x04]),
        ),
    ]
}
