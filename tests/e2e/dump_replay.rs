//! Dump replays: sessions recorded from real clients against the real server (see
//! `tests/dumps/record.sh`) are fed into the engine on a virtual clock, with no sockets, and what
//! it produces is checked: sessions, frame counts, codecs and digests of the media each player got.
//!
//! The dumps: `rtmp_publish` (ffmpeg pushing 3 s of h264_aac_10s.flv to live/d), `rtmp_play`
//! (rtmpdump playing live/d until the stream ends) and `http_flv_play` (ffprobe reading
//! live/d.flv for about 0.75 s). An RTSP push dump is still to come (RTSP is not served yet).

use std::path::Path;

use bytes::Bytes;
use rill_core::dump::{digest_messages, replay, ConnReport, Dump, MediaMessage, ReplayReport};
use rill_core::engine::{EngineConfig, Protocol, Role};
use rill_core::media::Codec;
use rill_core::rtmp::message_type::{AUDIO, VIDEO};

/// SHA-256 digests (see [`digest_messages`]) recorded when the dumps were made.
const PUBLISHER_DIGEST: &str = "a471024ae53efa748aaccbea7ad445895f66a2029494606ad89bb1a8f922ecb7";
const RTMP_PLAYER_DIGEST: &str = "7ca0930b0299d7c2cc027bcec2b1fd2eae7a4559fb292ca6a0ced4c2764abd9e";
const HTTP_PLAYER_DIGEST: &str = "ac96d6c9802b068080d6c69d6afe8b33132ed81aa742747f842d26be523b539b";

fn load(name: &str) -> Dump {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dumps")
        .join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dump = Dump::parse(Bytes::from(data)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(dump.error().is_none(), "{name}: {:?}", dump.error());
    dump
}

/// The publisher at 0, the RTMP player 1 s later and the HTTP-FLV player 1.2 s later, whatever
/// the recording's own timing was.
fn replay_all() -> ReplayReport {
    let publish = load("rtmp_publish.rilldump");
    let mut rtmp_play = load("rtmp_play.rilldump");
    let mut http_play = load("http_flv_play.rilldump");
    let t0 = publish.header.start_unix_ms;
    rtmp_play.header.start_unix_ms = t0 + 1000;
    http_play.header.start_unix_ms = t0 + 1200;
    replay(&[publish, rtmp_play, http_play], EngineConfig::default())
}

fn av(messages: &[MediaMessage]) -> Vec<&MediaMessage> {
    messages
        .iter()
        .filter(|m| m.type_id == AUDIO || m.type_id == VIDEO)
        .collect()
}

/// Is the body a sequence header (AVC/HEVC decoder configuration or AAC AudioSpecificConfig)?
fn is_config(m: &MediaMessage) -> bool {
    match m.type_id {
        // Legacy FLV video: AVCPacketType 0 after the frame/codec byte.
        VIDEO => m.body.get(1) == Some(&0),
        // AAC: AACPacketType 0.
        _ => m.body.first().is_some_and(|b| b >> 4 == 10) && m.body.get(1) == Some(&0),
    }
}

/// Checks that what a player got is, byte for byte, the publisher's: its leading configurations
/// are the publisher's, and its frames are one contiguous run of the publisher's frames.
/// Returns the publisher's run so its digest can be compared.
fn assert_player_got_publisher_bytes<'a>(
    player: &'a [MediaMessage],
    publisher: &'a [MediaMessage],
) -> Vec<&'a MediaMessage> {
    let player = av(player);
    let publisher = av(publisher);
    let configs = player.iter().take_while(|m| is_config(m)).count();
    for c in &player[..configs] {
        assert!(
            publisher
                .iter()
                .any(|p| is_config(p) && p.type_id == c.type_id && p.body == c.body),
            "a configuration the publisher never sent"
        );
    }
    let frames = &player[configs..];
    assert!(!frames.is_empty(), "the player got no frames");
    let start = publisher
        .iter()
        .position(|p| p.type_id == frames[0].type_id && p.body == frames[0].body)
        .expect("the player's first frame is one of the publisher's");
    let run: Vec<&MediaMessage> = publisher[start..]
        .iter()
        .take(frames.len())
        .copied()
        .collect();
    assert_eq!(
        run.len(),
        frames.len(),
        "the player got more frames than followed"
    );
    for (i, (p, f)) in run.iter().zip(frames).enumerate() {
        assert!(
            p.type_id == f.type_id && p.body == f.body,
            "frame {i} of the player differs from the publisher's frame {}",
            start + i
        );
    }
    let mut got: Vec<&MediaMessage> = player[..configs].to_vec();
    got.extend(run);
    got
}

fn conn(report: &ReplayReport, i: usize) -> &ConnReport {
    &report.connections[i]
}

#[test]
fn publisher_session_and_media() {
    let report = replay_all();
    let publish = conn(&report, 0);
    assert_eq!(publish.error, None);
    let start = publish.started().expect("publish session starts");
    assert_eq!(
        (start.protocol, start.role, start.stream.as_str()),
        (Protocol::Rtmp, Role::Publish, "live/d")
    );
    let media = publish.published.as_ref().expect("published media");
    assert_eq!(media.error, None);
    assert_eq!(media.video_codec, Some(Codec::H264));
    assert_eq!(media.audio_codec, Some(Codec::Aac));
    assert_eq!(
        (media.video, media.key_frames, media.audio, media.data),
        (77, 2, 131, 1)
    );
    assert_eq!(media.digest, PUBLISHER_DIGEST);
    assert_eq!(publish.bytes_in, 211_426);
}

#[test]
fn rtmp_player_gets_the_publishers_frames() {
    let report = replay_all();
    let publisher = conn(&report, 0).published.as_ref().expect("published");
    let player = conn(&report, 1);
    let start = player.started().expect("play session starts");
    assert_eq!(
        (start.protocol, start.role, start.stream.as_str()),
        (Protocol::Rtmp, Role::Play, "live/d")
    );
    let played = player.played.as_ref().expect("played media");
    assert_eq!(played.error, None);
    assert_eq!(played.video_codec, Some(Codec::H264));
    assert_eq!(played.audio_codec, Some(Codec::Aac));
    let run = assert_player_got_publisher_bytes(&played.messages, &publisher.messages);
    assert_eq!(digest_messages(run.iter().copied()), played.digest);
    // It joined during the first GOP and stayed to the end: every frame from the publisher's
    // first key frame to its last frame (the audio frame before that key frame is not in the
    // GOP cache; the AVC end-of-sequence message is not forwarded).
    let frames = av(&publisher.messages);
    let first_key = frames
        .iter()
        .position(|m| m.type_id == VIDEO && !is_config(m) && m.body.first() == Some(&0x17))
        .expect("a key frame");
    assert!(std::ptr::eq(run[2], frames[first_key]));
    let last = frames.len() - 2; // the end-of-sequence message is the last one
    assert_eq!(frames[last + 1].body.len(), 5);
    assert!(std::ptr::eq(*run.last().expect("frames"), frames[last]));
    assert_eq!(
        (played.video, played.key_frames, played.audio, played.data),
        (76, 2, 130, 2)
    );
    assert_eq!(played.digest, RTMP_PLAYER_DIGEST);
    let end = player.sessions.last().expect("session end");
    assert_eq!(end.reason, "stream ended");
    assert!(player.closed_by_engine);
}

#[test]
fn http_flv_player_gets_the_publishers_frames() {
    let report = replay_all();
    let publisher = conn(&report, 0).published.as_ref().expect("published");
    let player = conn(&report, 2);
    let start = player.started().expect("play session starts");
    assert_eq!(
        (start.protocol, start.role, start.stream.as_str()),
        (Protocol::HttpFlv, Role::Play, "live/d")
    );
    let played = player.played.as_ref().expect("played media");
    assert_eq!(played.error, None);
    assert_eq!(played.video_codec, Some(Codec::H264));
    assert_eq!(played.audio_codec, Some(Codec::Aac));
    let run = assert_player_got_publisher_bytes(&played.messages, &publisher.messages);
    assert_eq!(digest_messages(run), played.digest);
    // ffprobe read for about 0.75 s after joining at 1.2 s: the first GOP up to about 1.95 s.
    assert_eq!(
        (played.video, played.key_frames, played.audio, played.data),
        (45, 1, 77, 1)
    );
    assert_eq!(played.digest, HTTP_PLAYER_DIGEST);
}

#[test]
fn replay_is_deterministic() {
    let (a, b) = (replay_all(), replay_all());
    for (x, y) in a.connections.iter().zip(&b.connections) {
        assert_eq!(x.bytes_out, y.bytes_out);
        assert_eq!(x.sessions, y.sessions);
        assert_eq!(
            x.played.as_ref().map(|m| &m.digest),
            y.played.as_ref().map(|m| &m.digest)
        );
    }
}

#[test]
fn a_dump_cut_short_still_replays() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dumps/rtmp_publish.rilldump");
    let data = std::fs::read(path).expect("dump");
    for cut in [30, 5000, data.len() / 2, data.len() - 3] {
        let dump = Dump::parse(Bytes::copy_from_slice(&data[..cut]));
        let Ok(dump) = dump else {
            assert!(cut < 40, "only a cut header fails to parse ({cut})");
            continue;
        };
        assert!(dump.error().is_some());
        let report = replay(&[dump], EngineConfig::default());
        let c = conn(&report, 0);
        if cut > 5000 {
            let media = c.published.as_ref().expect("publish session starts");
            assert!(media.video > 0 && media.video <= 77);
            if cut == data.len() / 2 {
                assert!(media.video < 77);
            }
        }
    }
}

/// The server itself records dumps when `[dump]` asks, and what it records replays to the same
/// session (stream, codecs, frames) through the core engine with no sockets.
#[test]
fn the_server_records_dumps_that_replay() {
    use rill_e2e::{ffmpeg_publish, media, Server, TempConfig};
    let dir = std::env::temp_dir().join(format!("rill-e2e-dumps-{}", rill_e2e::free_port()));
    let cfg = TempConfig::new(&format!(
        "[dump]\nenable = true\ndir = \"{}\"\nstream = \"live/rec\"\n",
        dir.display()
    ));
    let mut server = Server::start_with(2, &cfg.args());
    let mut publisher = ffmpeg_publish(
        &media("h264_aac_10s.flv"),
        &server.rtmp_url("live/rec"),
        &["-t", "2"],
    );
    assert!(publisher
        .wait_for(std::time::Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    // A connection about another stream is not kept.
    let mut other = ffmpeg_publish(
        &media("h264_aac_10s.flv"),
        &server.rtmp_url("live/other"),
        &["-t", "1"],
    );
    assert!(other
        .wait_for(std::time::Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    server.terminate().expect("server stops");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dump dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rilldump"))
        .collect();
    assert_eq!(files.len(), 1, "one dump, of live/rec only: {files:?}");
    let dump = Dump::parse(Bytes::from(std::fs::read(&files[0]).expect("read dump")))
        .expect("dump parses");
    let report = replay(&[dump], EngineConfig::default());
    let c = &report.connections[0];
    assert!(
        c.sessions
            .iter()
            .any(|s| s.role == Role::Publish && s.stream == "live/rec"),
        "{:?}",
        c.sessions
    );
    let published = c.published.as_ref().expect("media summary");
    assert_eq!(published.video_codec, Some(Codec::H264));
    assert_eq!(published.audio_codec, Some(Codec::Aac));
    assert!(
        published.video > 40,
        "about 2 s of video: {}",
        published.video
    );
    let _ = std::fs::remove_dir_all(&dir);
}
