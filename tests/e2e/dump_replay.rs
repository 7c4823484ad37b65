//! Dump replays: sessions recorded from real clients against the real server (see
//! `tests/dumps/record.sh`) are fed into the engine on a virtual clock, with no sockets, and what
//! it produces is checked: sessions, frame counts, codecs and digests of the media each player got.
//!
//! The dumps: `rtmp_publish` (ffmpeg pushing 3 s of h264_aac_10s.flv to live/d), `rtmp_play`
//! (rtmpdump playing live/d until the stream ends) and `http_flv_play` (ffprobe reading
//! live/d.flv for about 0.75 s), from `tests/dumps/record.sh`; `rtsp_publish` (ffmpeg pushing 3 s
//! of the same file over RTSP, TCP interleaved, to live/r), `rtsp_play` (ffmpeg playing live/r
//! over RTSP/TCP from about 0.86 s) and `rtsp_http_flv_play` (ffprobe reading live/r.flv from
//! about 0.94 s for 0.72 s), from `tests/dumps/record-rtsp.sh`, replayed at their recorded times.

use std::path::Path;

use bytes::Bytes;
use rill_core::dump::{
    digest_messages, replay, ConnReport, Dump, MediaMessage, ReplayReport, RtspTrackSummary,
};
use rill_core::engine::{EngineConfig, Protocol, Role};
use rill_core::media::Codec;
use rill_core::rtmp::message_type::{AUDIO, VIDEO};

/// SHA-256 digests (see [`digest_messages`]) recorded when the dumps were made.
const PUBLISHER_DIGEST: &str = "a471024ae53efa748aaccbea7ad445895f66a2029494606ad89bb1a8f922ecb7";
const RTMP_PLAYER_DIGEST: &str = "7ca0930b0299d7c2cc027bcec2b1fd2eae7a4559fb292ca6a0ced4c2764abd9e";
const HTTP_PLAYER_DIGEST: &str = "6969709cabc52f47a2a55de4b698c6c8167d5d023559b288f0b48c976cf2224a";

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
/// and any later ones are the publisher's, and its frames are one contiguous run of the
/// publisher's frames (configurations left out: a publisher may give one track's configuration
/// after the other track's first frames, while the engine sends a player both configurations
/// first). Returns the player's leading configurations and the publisher's run, so its digest
/// can be compared when all configurations lead.
fn assert_player_got_publisher_bytes<'a>(
    player: &'a [MediaMessage],
    publisher: &'a [MediaMessage],
) -> Vec<&'a MediaMessage> {
    let player = av(player);
    let publisher = av(publisher);
    let configs = player.iter().take_while(|m| is_config(m)).count();
    let is_publishers_config = |c: &MediaMessage| {
        publisher
            .iter()
            .any(|p| is_config(p) && p.type_id == c.type_id && p.body == c.body)
    };
    for c in player.iter().filter(|m| is_config(m)) {
        assert!(
            is_publishers_config(c),
            "a configuration the publisher never sent"
        );
    }
    let frames: Vec<&MediaMessage> = player[configs..]
        .iter()
        .copied()
        .filter(|m| !is_config(m))
        .collect();
    assert!(!frames.is_empty(), "the player got no frames");
    let publisher: Vec<&MediaMessage> = publisher.into_iter().filter(|m| !is_config(m)).collect();
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
        (46, 1, 77, 1)
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

/// SHA-256 digests of the FLV tags of the RTSP dumps' media (see [`digest_messages`]).
const RTSP_PUBLISHER_DIGEST: &str =
    "4add83757938c3168492a00b32aa05450f669734460a7a52a73c893b144a7f3c";
const RTSP_PLAYER_DIGEST: &str = "f4d081bf72a2bf5faf339fa511c81868f3a3ab6b368672db896dd66a1737d8dc";
const RTSP_HTTP_PLAYER_DIGEST: &str =
    "084bd3e77e578815ec6d516d0809b6621e11bfeb98f7a53ac014ba39a1baff3a";

/// The RTSP publisher, the RTSP player and the HTTP-FLV player, each at its recorded time.
fn replay_rtsp_in(order: [usize; 3]) -> ReplayReport {
    let dumps = [
        load("rtsp_publish.rilldump"),
        load("rtsp_play.rilldump"),
        load("rtsp_http_flv_play.rilldump"),
    ];
    let dumps: Vec<Dump> = order.iter().map(|&i| dumps[i].clone()).collect();
    replay(&dumps, EngineConfig::default())
}

fn replay_rtsp() -> ReplayReport {
    replay_rtsp_in([0, 1, 2])
}

/// Checks a track's codec and interleaved channels.
fn assert_track(t: &RtspTrackSummary, codec: Codec, channels: (u8, u8)) {
    assert_eq!(
        (t.codec, t.channels),
        (Some(codec), Some(channels)),
        "{t:?}"
    );
    assert_eq!(t.rtp_errors, 0);
}

/// Checks an RTSP connection of the recorded session: no error, a `role` session on
/// `live/r`, the six `requests` all answered 200, H.264 on channels 0-1 and AAC on 2-3.
/// Returns its video and audio tracks.
fn assert_rtsp_session<'a>(
    c: &'a ConnReport,
    role: Role,
    requests: [&str; 6],
) -> (&'a RtspTrackSummary, &'a RtspTrackSummary) {
    assert_eq!(c.error, None);
    let start = c.started().expect("session starts");
    assert_eq!(
        (start.protocol, start.role, start.stream.as_str()),
        (Protocol::Rtsp, role, "live/r")
    );
    let rtsp = c.rtsp.as_ref().expect("rtsp summary");
    assert_eq!(rtsp.error, None);
    assert_eq!(rtsp.requests, requests);
    // The requests after the first SETUP carry the recording server's session id, which the
    // replay maps to its own: every one is answered 200.
    assert_eq!(rtsp.responses, [200; 6]);
    assert_eq!(rtsp.stray_packets, 0);
    let [video, audio] = &rtsp.tracks[..] else {
        panic!("two tracks: {:?}", rtsp.tracks)
    };
    assert_track(video, Codec::H264, (0, 1));
    assert_track(audio, Codec::Aac, (2, 3));
    (video, audio)
}

#[test]
fn rtsp_publisher_session_and_media() {
    let report = replay_rtsp();
    let publish = conn(&report, 0);
    let (video, audio) = assert_rtsp_session(
        publish,
        Role::Publish,
        [
            "OPTIONS", "ANNOUNCE", "SETUP", "SETUP", "RECORD", "TEARDOWN",
        ],
    );
    assert_eq!(publish.bytes_in, 209_052);
    // RTP and RTCP the publisher sent, and the frames they carry (AAC packets aggregate 7).
    assert_eq!(
        (video.rtp_in, video.rtcp_in, video.frames),
        (163, 1, 75),
        "video"
    );
    assert_eq!(
        (audio.rtp_in, audio.rtcp_in, audio.frames),
        (18, 1, 126),
        "audio"
    );
    // The FLV tags the engine muxes those frames into (with the configurations from the SDP).
    let media = publish.published.as_ref().expect("published media");
    assert_eq!(media.error, None);
    assert_eq!(media.video_codec, Some(Codec::H264));
    assert_eq!(media.audio_codec, Some(Codec::Aac));
    assert_eq!(
        (media.video, media.key_frames, media.audio, media.data),
        (76, 2, 127, 0)
    );
    assert_eq!(media.digest, RTSP_PUBLISHER_DIGEST);
}

#[test]
fn rtsp_player_gets_rtp_for_both_tracks() {
    let report = replay_rtsp();
    let publisher = conn(&report, 0).published.as_ref().expect("published");
    let player = conn(&report, 1);
    let (video, audio) = assert_rtsp_session(
        player,
        Role::Play,
        ["OPTIONS", "DESCRIBE", "SETUP", "SETUP", "PLAY", "TEARDOWN"],
    );
    // What the engine sent: RTP for both tracks and a sender report on each.
    assert_eq!(
        (video.rtp_out, video.rtcp_out, video.frames),
        (122, 1, 54),
        "video"
    );
    assert_eq!(
        (audio.rtp_out, audio.rtcp_out, audio.frames),
        (88, 1, 88),
        "audio"
    );
    // ffmpeg sent no receiver report in its 1.3 s.
    assert_eq!((video.rtcp_in, audio.rtcp_in), (0, 0));
    let played = player.played.as_ref().expect("played media");
    assert_eq!(played.error, None);
    assert_eq!(played.video_codec, Some(Codec::H264));
    assert_eq!(played.audio_codec, Some(Codec::Aac));
    assert_eq!(
        (played.video, played.key_frames, played.audio, played.data),
        (55, 2, 89, 0)
    );
    assert_eq!(played.digest, RTSP_PLAYER_DIGEST);
    // Packetized again by the engine and depacketized by the replay, the frames are the
    // publisher's, byte for byte: from the first key frame of the GOP cache on, every one to
    // the last the player read.
    let run = assert_player_got_publisher_bytes(&played.messages, &publisher.messages);
    assert_eq!(run.len(), 1 + 54 + 88);
    let first_key = publisher
        .messages
        .iter()
        .find(|m| m.type_id == VIDEO && !is_config(m) && m.body.first() == Some(&0x17))
        .expect("a key frame");
    assert!(std::ptr::eq(run[1], first_key));
}

#[test]
fn http_flv_player_of_an_rtsp_stream_gets_the_publishers_frames() {
    let report = replay_rtsp();
    let publisher = conn(&report, 0).published.as_ref().expect("published");
    let player = conn(&report, 2);
    let start = player.started().expect("play session starts");
    assert_eq!(
        (start.protocol, start.role, start.stream.as_str()),
        (Protocol::HttpFlv, Role::Play, "live/r")
    );
    let played = player.played.as_ref().expect("played media");
    assert_eq!(played.error, None);
    assert_eq!(played.video_codec, Some(Codec::H264));
    assert_eq!(played.audio_codec, Some(Codec::Aac));
    // The engine's own FLV mux of the RTSP stream is what the replay decoded from the
    // publisher's RTP.
    let run = assert_player_got_publisher_bytes(&played.messages, &publisher.messages);
    assert_eq!(digest_messages(run), played.digest);
    // One script tag: the onMetaData built from the ANNOUNCE (an RTSP publisher sends none).
    assert_eq!(
        (played.video, played.key_frames, played.audio, played.data),
        (43, 1, 69, 1)
    );
    assert_eq!(played.digest, RTSP_HTTP_PLAYER_DIGEST);
    // The publisher's tracks are interleaved by decode time: one AAC packet carries 7 frames
    // and a video frame spans many packets, yet the FLV's audio and video timestamps never go
    // back (in arrival order, 18 went back and the first audio frames were clamped together).
    let tags = av(&played.messages);
    for w in tags.windows(2) {
        assert!(
            w[0].timestamp <= w[1].timestamp,
            "tag at {} ms after one at {} ms",
            w[1].timestamp,
            w[0].timestamp
        );
    }
    // The media, and the onMetaData tag (162 bytes of AMF0, 15 of tag header and size).
    assert_eq!(player.bytes_out, 110_736);
}

#[test]
fn rtsp_replay_is_deterministic_and_ordered_by_recorded_time() {
    let (a, b) = (replay_rtsp(), replay_rtsp());
    for (x, y) in a.connections.iter().zip(&b.connections) {
        assert_eq!(x.bytes_out, y.bytes_out);
        assert_eq!(x.sessions, y.sessions);
        assert_eq!(x.rtsp, y.rtsp);
        assert_eq!(x.published, y.published);
        assert_eq!(x.played, y.played);
    }
    // The players listed first still start after the publisher: the recorded times order the
    // connections, not their place in the list.
    let c = replay_rtsp_in([2, 1, 0]);
    let (publish, player, http) = (conn(&c, 2), conn(&c, 1), conn(&c, 0));
    assert_eq!(
        publish.published.as_ref().map(|m| &m.digest[..]),
        Some(RTSP_PUBLISHER_DIGEST)
    );
    assert_eq!(
        player.played.as_ref().map(|m| &m.digest[..]),
        Some(RTSP_PLAYER_DIGEST)
    );
    assert_eq!(
        http.played.as_ref().map(|m| &m.digest[..]),
        Some(RTSP_HTTP_PLAYER_DIGEST)
    );
    assert_eq!(
        (publish.accepted_ms, player.accepted_ms, http.accepted_ms),
        (0, 864, 936)
    );
}
