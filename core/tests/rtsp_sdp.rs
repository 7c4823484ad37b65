//! SDP parsing and generation: descriptions as cameras and encoders send them, round trips of
//! rill's own descriptions through `track_params`, and refusals.

use bytes::Bytes;
use rill_core::rtp::{CodecParams, TrackParams};
use rill_core::sdp::{resolve_control, MediaDescription, SdpError, SessionDescription};

/// The shape of a typical IP camera answer: bare LF line ends, trailing spaces, a junk line,
/// unpadded base64, an unknown application track and a session-level absolute control.
const CAMERA: &str = "v=0\n\
o=- 1109162014219182 0 IN IP4 0.0.0.0 \n\
s=Media Presentation\n\
e=NONE\n\
b=AS:5050\n\
t=0 0\n\
a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/\n\
m=video 0 RTP/AVP 96\n\
c=IN IP4 0.0.0.0\n\
b=AS:5000\n\
a=recvonly\n\
a=x-dimensions:1920,1080\n\
a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=1\n\
a=rtpmap:96 H264/90000\n\
a=fmtp:96 profile-level-id=420029; packetization-mode=1; sprop-parameter-sets=Z0IAKeKQFAe2AtwEBAaQeJEV,aM48gA\n\
garbage without equals\n\
m=audio 0 RTP/AVP 8\n\
a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=2\n\
m=application 0 RTP/AVP 107\n\
a=rtpmap:107 vnd.onvif.metadata/90000\n\
a=control:trackID=3\n\
a=Media_header:MEDIAINFO=494D4B48;\n";

/// What ffmpeg sends in ANNOUNCE for H.265 + AAC (CRLF, relative controls).
const FFMPEG: &str = "v=0\r\n\
o=- 0 0 IN IP4 127.0.0.1\r\n\
s=No Name\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
a=tool:libavformat 60.16.100\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H265/90000\r\n\
a=fmtp:96 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwB4lZgJ; sprop-sps=QgEBAWAAAAMAkAAAAwAAAwB4oAPAgBDlllZpJMrwFoCAAAADAIAAAAyE; sprop-pps=RAHBcrRiQA==\r\n\
a=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\n\
b=AS:128\r\n\
a=rtpmap:97 MPEG4-GENERIC/44100/2\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=121056E500\r\n\
a=control:streamid=1\r\n";

#[test]
fn parses_a_camera_description() {
    let sd = SessionDescription::parse(CAMERA.as_bytes()).unwrap();
    assert_eq!(sd.name, "Media Presentation");
    assert_eq!(sd.media.len(), 3);
    let v = sd.media[0].track_params(0).unwrap();
    assert_eq!(v.payload_type, 96);
    assert_eq!(v.clock_rate, 90000);
    match &v.codec {
        CodecParams::H264 { sps, pps } => {
            assert_eq!(sps.len(), 1);
            assert_eq!(sps[0][0], 0x67);
            assert_eq!(pps[0][..], [0x68, 0xCE, 0x3C, 0x80]);
        }
        other => panic!("{other:?}"),
    }
    // Static payload type 8 without rtpmap.
    let a = sd.media[1].track_params(1).unwrap();
    assert_eq!(
        (a.codec.clone(), a.clock_rate, a.channels),
        (CodecParams::G711A, 8000, 1)
    );
    assert!(matches!(
        sd.media[2].track_params(2),
        Err(SdpError::UnsupportedCodec { media: 2, .. })
    ));
    // Controls: absolute ones stand alone, relative ones join the base.
    let base = "rtsp://192.168.1.64:554/Streaming/Channels/101";
    assert_eq!(
        resolve_control(base, sd.media[0].control().unwrap()),
        "rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=1"
    );
    assert_eq!(
        resolve_control(&format!("{base}/"), sd.media[2].control().unwrap()),
        format!("{base}/trackID=3")
    );
    assert_eq!(resolve_control(base, "*"), base);
    assert_eq!(resolve_control(base, "RTSP://h/x"), "RTSP://h/x");
    assert_eq!(sd.media[0].attribute("x-dimensions"), Some("1920,1080"));
    assert_eq!(sd.media[0].attribute("recvonly"), Some(""));
}

#[test]
fn parses_an_ffmpeg_announce() {
    let sd = SessionDescription::parse(FFMPEG.as_bytes()).unwrap();
    let v = sd.media[0].track_params(0).unwrap();
    match &v.codec {
        CodecParams::H265 { vps, sps, pps } => {
            assert_eq!((vps.len(), sps.len(), pps.len()), (1, 1, 1));
            assert_eq!(sps[0][0] >> 1, 33);
            assert_eq!(pps[0][..], [0x44, 0x01, 0xC1, 0x72, 0xB4, 0x62, 0x40]);
        }
        other => panic!("{other:?}"),
    }
    let a = sd.media[1].track_params(1).unwrap();
    assert_eq!((a.clock_rate, a.channels), (44100, 2));
    assert_eq!(
        a.codec,
        CodecParams::aac_hbr(Bytes::from_static(&[0x12, 0x10, 0x56, 0xE5, 0x00]))
    );
    assert_eq!(sd.media[1].control(), Some("streamid=1"));
    assert_eq!(sd.attribute("tool"), Some("libavformat 60.16.100"));
}

#[test]
fn generated_descriptions_round_trip() {
    let sps = Bytes::from_static(&[0x67, 0x64, 0x00, 0x1F, 0xAC]);
    let pps = Bytes::from_static(&[0x68, 0xEE, 0x3C, 0x80]);
    let tracks = vec![
        (
            TrackParams {
                payload_type: 96,
                clock_rate: 90000,
                channels: 1,
                codec: CodecParams::H264 {
                    sps: vec![sps],
                    pps: vec![pps],
                },
            },
            "trackID=0".to_owned(),
        ),
        (
            TrackParams {
                payload_type: 97,
                clock_rate: 48000,
                channels: 2,
                codec: CodecParams::aac_hbr(Bytes::from_static(&[0x11, 0x90])),
            },
            "trackID=1".to_owned(),
        ),
        (
            TrackParams {
                payload_type: 0,
                clock_rate: 8000,
                channels: 1,
                codec: CodecParams::G711U,
            },
            "trackID=2".to_owned(),
        ),
        (
            TrackParams {
                payload_type: 111,
                clock_rate: 48000,
                channels: 2,
                codec: CodecParams::Opus,
            },
            "trackID=3".to_owned(),
        ),
        (
            TrackParams {
                payload_type: 98,
                clock_rate: 90000,
                channels: 1,
                codec: CodecParams::H265 {
                    vps: vec![Bytes::from_static(&[0x40, 1, 2])],
                    sps: vec![Bytes::from_static(&[0x42, 1, 3])],
                    pps: vec![Bytes::from_static(&[0x44, 1, 4])],
                },
            },
            "trackID=4".to_owned(),
        ),
    ];
    let sd = SessionDescription::for_tracks("live/cam", &tracks);
    let text = sd.to_text();
    assert!(text.starts_with("v=0\r\n"));
    assert!(text.contains("a=fmtp:96 packetization-mode=1;profile-level-id=64001F;"));
    let back = SessionDescription::parse(text.as_bytes()).unwrap();
    assert_eq!(back, sd);
    for (i, (params, control)) in tracks.iter().enumerate() {
        let mut expected = params.clone();
        if expected.codec == CodecParams::Opus {
            expected.channels = 2; // opus/48000/2 always
        }
        assert_eq!(back.media[i].track_params(i).unwrap(), expected);
        assert_eq!(back.media[i].control(), Some(control.as_str()));
    }
    assert_eq!(back.control(), Some("*"));
}

/// An AV1 track is described as the AV1 RTP payload format says: `AV1/90000`, with the
/// profile, level and tier of its av1C in the fmtp. Read back, it is an AV1 track whose
/// sequence header comes in band (SDP does not carry it).
#[test]
fn av1_description_has_profile_level_and_tier() {
    let av1 = TrackParams {
        payload_type: 96,
        clock_rate: 90000,
        channels: 1,
        codec: CodecParams::Av1 {
            // seq_profile 1, seq_level_idx_0 8, seq_tier_0 1.
            config: Bytes::from_static(&[0x81, 0x28, 0x80, 0x00]),
        },
    };
    let sd = SessionDescription::for_tracks("live/av1", &[(av1, "trackID=0".to_owned())]);
    let text = sd.to_text();
    assert!(text.contains("m=video 0 RTP/AVP 96\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:96 AV1/90000\r\n"), "{text}");
    assert!(
        text.contains("a=fmtp:96 profile=1;level-idx=8;tier=1\r\n"),
        "{text}"
    );
    let back = SessionDescription::parse(text.as_bytes()).unwrap();
    let params = back.media[0].track_params(0).unwrap();
    assert_eq!((params.payload_type, params.clock_rate), (96, 90000));
    assert_eq!(
        params.codec,
        CodecParams::Av1 {
            config: Bytes::new()
        }
    );
}

#[test]
fn refuses_bad_descriptions() {
    assert_eq!(
        SessionDescription::parse(b"o=- 0 0 IN IP4 1.2.3.4\r\n"),
        Err(SdpError::MissingVersion)
    );
    assert_eq!(
        SessionDescription::parse(b""),
        Err(SdpError::MissingVersion)
    );
    assert!(matches!(
        SessionDescription::parse(b"v=1\r\n"),
        Err(SdpError::Invalid { line: 1, .. })
    ));
    assert!(matches!(
        SessionDescription::parse(b"v=0\r\nm=video x RTP/AVP 96\r\n"),
        Err(SdpError::Invalid {
            line: 2,
            field: "m= port",
            ..
        })
    ));
    let zero =
        SessionDescription::parse(b"v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/0\n").unwrap();
    let e = zero.media[0].track_params(0).unwrap_err();
    assert!(e.to_string().contains("clock rate"), "{e}");
    let no_config =
        SessionDescription::parse(b"v=0\nm=audio 0 RTP/AVP 97\na=rtpmap:97 mpeg4-generic/48000\n")
            .unwrap();
    assert!(matches!(
        no_config.media[0].track_params(0),
        Err(SdpError::Missing {
            field: "fmtp config",
            ..
        })
    ));
    let bad_hex = SessionDescription::parse(
        b"v=0\nm=audio 0 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/48000\na=fmtp:97 config=1G90\n",
    )
    .unwrap();
    assert!(bad_hex.media[0].track_params(0).is_err());
    let interleaved = SessionDescription::parse(
        b"v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=2\n",
    )
    .unwrap();
    assert!(interleaved.media[0].track_params(0).is_err());
    let big = vec![b'a'; 70_000];
    assert!(matches!(
        SessionDescription::parse(&big),
        Err(SdpError::TooLarge { .. })
    ));
    let many: String = std::iter::once("v=0\n".to_owned())
        .chain((0..20).map(|_| "m=audio 0 RTP/AVP 0\n".to_owned()))
        .collect();
    assert!(matches!(
        SessionDescription::parse(many.as_bytes()),
        Err(SdpError::TooLarge { .. })
    ));
}

/// GStreamer's `rtspclientsink` announces AAC as `MP4A-LATM`; its real packets (from
/// `rtpmp4apay`, one AudioMuxElement each) give the AAC frames, and rill's own LATM packets
/// (fragmented when the MTU is small) give them back.
#[test]
fn gstreamer_latm_announce_and_packets_give_aac_frames() {
    use rill_core::media::{Codec, FrameKind};
    use rill_core::rtp::{Depacketizer, Packetizer, RtpPacket};

    let sdp = SessionDescription::parse(include_bytes!("fixtures/gst_rtspclientsink_announce.sdp"))
        .expect("GStreamer's SDP");
    let audio = sdp.media[0].track_params(0).expect("MP4A-LATM is accepted");
    assert_eq!(
        audio,
        TrackParams {
            payload_type: 96,
            clock_rate: 44100,
            channels: 1,
            codec: CodecParams::AacLatm {
                config: Bytes::from_static(&[0x12, 0x08]),
                sub_frames: 0,
            },
        }
    );
    assert!(matches!(
        sdp.media[1].track_params(1),
        Ok(TrackParams {
            codec: CodecParams::H264 { .. },
            ..
        })
    ));

    let packets = [
        &include_bytes!("fixtures/gst_latm_0.rtp")[..],
        include_bytes!("fixtures/gst_latm_1.rtp"),
        include_bytes!("fixtures/gst_latm_2.rtp"),
    ];
    let mut d = Depacketizer::new(&audio, 1).unwrap();
    for p in packets {
        d.push(RtpPacket::parse(&Bytes::from_static(p)).unwrap())
            .unwrap();
    }
    let frames: Vec<_> = std::iter::from_fn(|| d.poll_frame()).collect();
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert_eq!(frames[0].kind, FrameKind::Config);
    assert_eq!(&frames[0].payload[..], &[0x12, 0x08]);
    let coded = &frames[1..];
    // Each packet: a 12-byte header, PayloadLengthInfo (bytes of 255, then the rest), the unit.
    for (f, p) in coded.iter().zip(packets) {
        assert_eq!(f.codec, Codec::Aac);
        let len_bytes = f.payload.len() / 255 + 1;
        assert_eq!(f.payload.len(), p.len() - 12 - len_bytes);
        assert_eq!(&f.payload[..], &p[12 + len_bytes..]);
    }
    let times: Vec<i64> = coded.iter().map(|f| f.pts).collect();
    assert_eq!(times, [0, 23, 46], "1024 samples at 44.1 kHz apart");

    // rill's packetizer, with an MTU that splits every unit in three.
    let mut pz = Packetizer::new(&audio, 7, 100, 0, 12 + 150).unwrap();
    let mut pkts = Vec::new();
    for f in coded {
        pz.push(f, &mut pkts).unwrap();
    }
    assert_eq!(pkts.len(), 9);
    let mut d = Depacketizer::new(&audio, 1).unwrap();
    for p in pkts {
        d.push(RtpPacket::parse(&p.to_bytes()).unwrap()).unwrap();
    }
    let again: Vec<_> = std::iter::from_fn(|| d.poll_frame()).skip(1).collect();
    assert_eq!(
        again.iter().map(|f| &f.payload).collect::<Vec<_>>(),
        coded.iter().map(|f| &f.payload).collect::<Vec<_>>()
    );
    // And rill describes it the way it read it.
    let back = MediaDescription::from_track(&audio, "stream=1");
    assert_eq!(back.track_params(0), Ok(audio));
}
