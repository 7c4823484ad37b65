use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::mux::TIMESTAMP_OFFSET_MS;
use super::*;
use crate::codec::aac::AudioSpecificConfig;
use crate::codec::h264::AvcConfig;
use crate::codec::split_annexb;
use crate::media::{Codec, Frame, FrameKind};

const SPS: &[u8] = &[0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80];
const PPS: &[u8] = &[0x68, 0xCE, 0x3C, 0x80];

fn avc_config() -> Frame {
    let record = AvcConfig {
        profile: 66,
        compatibility: 0xC0,
        level: 30,
        nalu_length_size: 4,
        sps: vec![Bytes::from_static(SPS)],
        pps: vec![Bytes::from_static(PPS)],
    }
    .to_record();
    Frame {
        codec: Codec::H264,
        kind: FrameKind::Config,
        dts: 0,
        pts: 0,
        key: true,
        payload: record,
    }
}

fn asc() -> AudioSpecificConfig {
    AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap()
}

fn aac_config() -> Frame {
    Frame {
        codec: Codec::Aac,
        kind: FrameKind::Config,
        dts: 0,
        pts: 0,
        key: true,
        payload: asc().to_bytes(),
    }
}

fn avcc(nals: &[Vec<u8>]) -> Bytes {
    let mut b = BytesMut::new();
    for n in nals {
        b.put_u32(n.len() as u32);
        b.put_slice(n);
    }
    b.freeze()
}

fn demux_all(data: &[u8], splits: &[usize]) -> (Vec<Pes>, TsDemuxer) {
    let mut d = TsDemuxer::new(1 << 20);
    let mut pos = 0;
    let mut out = Vec::new();
    for &s in splits.iter().chain(std::iter::once(&data.len())) {
        let end = s.clamp(pos, data.len());
        d.push(&data[pos..end]).unwrap();
        pos = end;
        while let Some(p) = d.poll_pes() {
            out.push(p);
        }
    }
    d.flush().unwrap();
    while let Some(p) = d.poll_pes() {
        out.push(p);
    }
    (out, d)
}

#[test]
fn crc_of_known_pat() {
    // The PAT every muxer writes for program 1 -> PMT 0x1000 (as ffmpeg does).
    let pat = [
        0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00,
    ];
    assert_eq!(crc32_mpeg2(&pat), 0x2AB1_04B2);
}

#[test]
fn timestamps_wrap_at_33_bits() {
    assert_eq!(ms_to_90k(0), 0);
    assert_eq!(ms_to_90k(-1), TIMESTAMP_WRAP - 90);
    let wrap_ms = (TIMESTAMP_WRAP / 90) as i64 + 1;
    assert!(ms_to_90k(wrap_ms) < 90);
    assert_eq!(diff_90k(5, TIMESTAMP_WRAP - 5), 10);
    assert_eq!(diff_90k(TIMESTAMP_WRAP - 5, 5), -10);
}

#[test]
fn key_frame_starts_with_psi_aud_and_parameter_sets() {
    let mut m = TsMuxer::new();
    assert!(m.mux(&avc_config()).unwrap().bytes.is_empty());
    assert!(m.mux(&aac_config()).unwrap().bytes.is_empty());
    let frame = Frame {
        codec: Codec::H264,
        kind: FrameKind::Coded,
        dts: 40,
        pts: 120,
        key: true,
        payload: avcc(&[vec![0x65, 1, 2, 3]]),
    };
    let chunk = m.mux(&frame).unwrap();
    assert!(chunk.random_access);
    assert_eq!(chunk.bytes.len() % TS_PACKET_LEN, 0);
    // PAT then PMT then video.
    let pids: Vec<u16> = chunk
        .bytes
        .chunks(TS_PACKET_LEN)
        .map(|p| (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]))
        .collect();
    assert_eq!(pids, vec![PAT_PID, PMT_PID, VIDEO_PID]);
    let (pes, d) = demux_all(&chunk.bytes, &[]);
    assert_eq!(
        d.streams(),
        vec![
            TsStreamInfo {
                pid: VIDEO_PID,
                stream_type: stream_type::H264
            },
            TsStreamInfo {
                pid: AUDIO_PID,
                stream_type: stream_type::AAC_ADTS
            }
        ]
    );
    assert_eq!(d.pcr_count(), 1);
    let p = &pes[0];
    assert!(p.random_access);
    assert_eq!(p.pts, Some(ms_to_90k(120 + TIMESTAMP_OFFSET_MS)));
    assert_eq!(p.dts, Some(ms_to_90k(40 + TIMESTAMP_OFFSET_MS)));
    let nals: Vec<Bytes> = split_annexb(&p.data).collect();
    assert_eq!(nals[0].as_ref(), &[0x09, 0xF0]);
    assert_eq!(nals[1].as_ref(), SPS);
    assert_eq!(nals[2].as_ref(), PPS);
    assert_eq!(nals[3].as_ref(), &[0x65, 1, 2, 3]);
    // A delta frame carries no PSI nor parameter sets.
    let delta = Frame {
        key: false,
        payload: avcc(&[vec![0x41, 9]]),
        ..frame
    };
    let chunk = m.mux(&delta).unwrap();
    assert!(!chunk.random_access);
    assert_eq!(chunk.bytes.len(), TS_PACKET_LEN);
}

#[test]
fn audio_only_stream_repeats_psi_twice_a_second() {
    let mut m = TsMuxer::new();
    m.mux(&aac_config()).unwrap();
    let mut raps = 0;
    for i in 0..47 {
        let f = Frame {
            codec: Codec::Aac,
            kind: FrameKind::Coded,
            dts: i * 23,
            pts: i * 23,
            key: true,
            payload: Bytes::from(vec![0x21; 200]),
        };
        let c = m.mux(&f).unwrap();
        raps += usize::from(c.random_access);
    }
    assert_eq!(raps, 3); // at 0, 506 and 1012 ms
}

#[test]
fn refuses_what_ts_cannot_carry_without_panicking() {
    let mut m = TsMuxer::new();
    let aac = Frame {
        codec: Codec::Aac,
        kind: FrameKind::Coded,
        dts: 0,
        pts: 0,
        key: true,
        payload: Bytes::from_static(&[1, 2]),
    };
    assert!(m.mux(&aac).is_err()); // no ASC yet
    let g711 = Frame {
        codec: Codec::G711A,
        ..aac.clone()
    };
    assert!(m.mux(&g711).is_err());
    let broken = Frame {
        codec: Codec::H264,
        payload: Bytes::from_static(&[0, 0, 0, 9, 1]),
        ..aac
    };
    assert!(m.mux(&broken).is_err());
}

#[test]
fn demuxer_reports_bad_input() {
    let mut d = TsDemuxer::new(1000);
    assert!(matches!(
        d.push(&[0u8; 188]),
        Err(TsError::Sync { offset: 0 })
    ));
    // A PES larger than the limit.
    let mut m = TsMuxer::new();
    m.mux(&avc_config()).unwrap();
    let big = Frame {
        codec: Codec::H264,
        kind: FrameKind::Coded,
        dts: 0,
        pts: 0,
        key: true,
        payload: avcc(&[vec![0x65; 5000]]),
    };
    let c = m.mux(&big).unwrap();
    let mut d = TsDemuxer::new(1000);
    assert!(matches!(
        d.push(&c.bytes),
        Err(TsError::PesTooLarge { pid: VIDEO_PID, .. })
    ));
    // A damaged PMT CRC.
    let mut bad = c.bytes.to_vec();
    bad[188 + 20] ^= 0xFF;
    let mut d = TsDemuxer::new(1 << 20);
    let e = d.push(&bad).unwrap_err();
    assert!(e.to_string().contains("CRC"), "{e}");
}

#[derive(Clone, Debug)]
enum Item {
    Video {
        key: bool,
        cto: i64,
        nals: Vec<Vec<u8>>,
    },
    Audio {
        len: usize,
    },
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        (
            any::<bool>(),
            0i64..300,
            prop::collection::vec(prop::collection::vec(1u8..=255, 1..600), 1..4)
        )
            .prop_map(|(key, cto, mut nals)| {
                for n in &mut nals {
                    // NAL types that the muxer passes through (not AUD).
                    n[0] = if key { 0x65 } else { 0x41 };
                }
                Item::Video { key, cto, nals }
            }),
        (1usize..1500).prop_map(|len| Item::Audio { len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mux_then_demux_gives_back_frames_and_timestamps(
        start in 0i64..200_000_000,
        items in prop::collection::vec((item(), 0i64..60), 1..40),
        splits in prop::collection::vec(0usize..50_000, 0..8),
    ) {
        let mut m = TsMuxer::new();
        m.mux(&avc_config()).unwrap();
        m.mux(&aac_config()).unwrap();
        let mut ts = BytesMut::new();
        let mut expected = Vec::new();
        let mut dts = start;
        for (it, step) in &items {
            dts += step;
            let frame = match it {
                Item::Video { key, cto, nals } => Frame {
                    codec: Codec::H264, kind: FrameKind::Coded, dts, pts: dts + cto,
                    key: *key, payload: avcc(nals),
                },
                Item::Audio { len } => Frame {
                    codec: Codec::Aac, kind: FrameKind::Coded, dts, pts: dts,
                    key: true, payload: Bytes::from(vec![0x5A; *len]),
                },
            };
            let chunk = m.mux(&frame).unwrap();
            prop_assert_eq!(chunk.bytes.len() % TS_PACKET_LEN, 0);
            ts.put_slice(&chunk.bytes);
            expected.push((it.clone(), frame));
        }
        let mut splits = splits;
        splits.sort_unstable();
        let (pes, d) = demux_all(&ts, &splits);
        prop_assert_eq!(d.continuity_errors(), 0);
        prop_assert_eq!(pes.len(), expected.len());
        for (p, (it, f)) in pes.iter().zip(&expected) {
            let pts = ms_to_90k(f.pts + TIMESTAMP_OFFSET_MS);
            let dts = ms_to_90k(f.dts + TIMESTAMP_OFFSET_MS);
            prop_assert_eq!(p.pts, Some(pts));
            prop_assert_eq!(p.dts.unwrap_or(pts), dts);
            match it {
                Item::Video { key, nals, .. } => {
                    prop_assert_eq!(p.pid, VIDEO_PID);
                    prop_assert_eq!(p.random_access, *key);
                    let got: Vec<Bytes> = split_annexb(&p.data).collect();
                    let skip = if *key { 3 } else { 1 };
                    prop_assert_eq!(got.len(), nals.len() + skip);
                    for (g, n) in got[skip..].iter().zip(nals) {
                        prop_assert_eq!(g.as_ref(), n.as_slice());
                    }
                }
                Item::Audio { len } => {
                    prop_assert_eq!(p.pid, AUDIO_PID);
                    prop_assert_eq!(&p.data[..7], &asc().adts_header(*len)[..]);
                    prop_assert_eq!(&p.data[7..], &f.payload[..]);
                }
            }
        }
    }

    #[test]
    fn demuxer_never_panics(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut d = TsDemuxer::new(4096);
        let mut framed = Vec::new();
        for c in data.chunks(187) {
            framed.push(SYNC_BYTE);
            framed.extend_from_slice(c);
        }
        if d.push(&framed).is_ok() {
            let _ = d.flush();
        }
        while d.poll_pes().is_some() {}
    }
}

/// Opus goes in as PES private data: the PMT has stream type 0x06 with the `Opus` registration
/// descriptor and the Opus extension descriptor, the PES (stream id 0xBD) holds each packet
/// behind an opus_control_header with its size.
#[test]
fn opus_is_muxed_with_its_descriptors_and_control_headers() {
    let mut m = TsMuxer::new();
    let packet = vec![0xFC; 300];
    let chunk = m
        .mux(&Frame {
            codec: Codec::Opus,
            kind: FrameKind::Coded,
            dts: 0,
            pts: 0,
            key: true,
            payload: Bytes::from(packet.clone()),
        })
        .unwrap();
    assert!(chunk.random_access);
    let b = &chunk.bytes[..];
    let find = |needle: &[u8]| b.windows(needle.len()).position(|w| w == needle);
    // PMT stream entry: type 0x06, PID 0x101, 10 bytes of descriptors.
    let entry = [
        0x06, 0xE1, 0x01, 0xF0, 10, 0x05, 4, b'O', b'p', b'u', b's', 0x7F, 2, 0x80, 2,
    ];
    assert!(find(&entry).is_some(), "PMT entry");
    let pes = find(&[0, 0, 1, 0xBD]).expect("private_stream_1 PES");
    // PES header (9 bytes + 5 of PTS), then the control header and size 300 = 255 + 45.
    assert_eq!(&b[pes + 14..pes + 18], &[0x7F, 0xE0, 0xFF, 45]);
    assert_eq!(&b[pes + 18..pes + 20], &[0xFC, 0xFC]);
}

/// The PMT sections (from `0x02` to their CRC) in `data`.
fn pmt_sections(data: &[u8]) -> Vec<Vec<u8>> {
    data.chunks(TS_PACKET_LEN)
        .filter(|p| ((u16::from(p[1] & 0x1F) << 8) | u16::from(p[2])) == 0x1000)
        .map(|p| {
            let start = 5 + usize::from(p[4]);
            let len = 3 + ((usize::from(p[start + 1] & 0x0F) << 8) | usize::from(p[start + 2]));
            p[start..start + len].to_vec()
        })
        .collect()
}

#[test]
fn declared_tracks_are_in_the_first_pmt() {
    // An RTSP publisher's audio comes before its first video frame (or the other way round):
    // with the tracks of its ANNOUNCE declared, the first PMT lists both and never changes
    // (GStreamer's tsdemux took a second version for a new program and decoded nothing).
    let mut m = TsMuxer::new();
    let config = asc().to_bytes();
    m.declare(Some(Codec::H264), Some((Codec::Aac, &config[..])));
    let mut out = BytesMut::new();
    let audio = Frame {
        codec: Codec::Aac,
        kind: FrameKind::Coded,
        dts: 0,
        pts: 0,
        key: true,
        payload: Bytes::from(vec![0x21; 200]),
    };
    out.put_slice(&m.mux(&audio).unwrap().bytes);
    let video = Frame {
        codec: Codec::H264,
        kind: FrameKind::Coded,
        dts: 20,
        pts: 20,
        key: true,
        payload: avcc(&[SPS.to_vec(), PPS.to_vec(), vec![0x65, 0x88, 0x84]]),
    };
    out.put_slice(&m.mux(&video).unwrap().bytes);
    out.put_slice(
        &m.mux(&Frame {
            dts: 43,
            pts: 43,
            ..audio
        })
        .unwrap()
        .bytes,
    );
    let pmts = pmt_sections(&out);
    assert!(pmts.len() >= 2, "{pmts:?}");
    assert!(
        pmts.iter().all(|p| p == &pmts[0]),
        "PMT changed: {pmts:02x?}"
    );
    // Video (0x1B on PID 0x100) and ADTS AAC (0x0F on PID 0x101).
    let find = |needle: &[u8]| pmts[0].windows(needle.len()).any(|w| w == needle);
    assert!(
        find(&[0x1B, 0xE1, 0x00]) && find(&[0x0F, 0xE1, 0x01]),
        "{:02x?}",
        pmts[0]
    );
}

/// An OBU with its `obu_size` field.
fn av1_obu(obu_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut o = vec![(obu_type << 3) | 0x02];
    crate::codec::av1::write_leb128(&mut o, payload.len() as u64);
    o.extend_from_slice(payload);
    o
}

/// The av1C of a 320x176 libaom stream (profile 1, level 0) with its sequence header OBU.
const AV1C: &[u8] = &[
    0x81, 0x20, 0x00, 0x00, 0x0a, 0x0d, 0x20, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xbc, 0xda, 0xf9, 0x20,
    0x21, 0xa0, 0x04,
];

fn av1_frame(kind: FrameKind, dts: i64, key: bool, payload: Vec<u8>) -> Frame {
    Frame {
        codec: Codec::Av1,
        kind,
        dts,
        pts: dts,
        key,
        payload: Bytes::from(payload),
    }
}

/// AV1 goes in as the AOM carriage spec says: stream type 0x06 with the `AV01` registration
/// descriptor first and the AV1 video descriptor (from the av1C) after it; PES on
/// private_stream_1 with data_alignment_indicator; each access unit a temporal delimiter and
/// the OBUs behind start codes, the sequence header in front of a key frame lacking one,
/// temporal delimiters of the input dropped (one per access unit is written).
#[test]
fn av1_is_muxed_as_the_carriage_spec_says() {
    let mut m = TsMuxer::new();
    let config = m.mux(&av1_frame(FrameKind::Config, 0, true, AV1C.to_vec()));
    assert_eq!(config.unwrap().bytes.len(), 0);
    let frame_obu = av1_obu(6, &[0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x7F]);
    let key = [av1_obu(2, &[]), frame_obu.clone()].concat();
    let delta = av1_obu(6, &[0x30, 0x00, 0x00, 0x03, 0x05]);
    let mut ts = BytesMut::new();
    let chunk = m.mux(&av1_frame(FrameKind::Coded, 0, true, key)).unwrap();
    assert!(chunk.random_access);
    ts.put_slice(&chunk.bytes);
    let chunk = m.mux(&av1_frame(FrameKind::Coded, 40, false, delta.clone()));
    let chunk = chunk.unwrap();
    assert!(!chunk.random_access);
    ts.put_slice(&chunk.bytes);
    let trailing = av1_obu(6, &[0x40, 0x00, 0x00]);
    let chunk = m.mux(&av1_frame(FrameKind::Coded, 80, false, trailing.clone()));
    ts.put_slice(&chunk.unwrap().bytes);

    let pmt = &pmt_sections(&ts)[0];
    let entry = [
        0x06, 0xE1, 0x00, 0xF0, 12, 0x05, 4, b'A', b'V', b'0', b'1', 0x80, 4, 0x81, 0x20, 0x00,
        0xC0,
    ];
    assert!(
        pmt.windows(entry.len()).any(|w| w == entry),
        "PMT entry: {pmt:02x?}"
    );
    // PES header: private_stream_1, '10' + data_alignment_indicator.
    let pes_at = ts.windows(4).position(|w| w == [0, 0, 1, 0xBD]).unwrap();
    assert_eq!(ts[pes_at + 6], 0x84);
    // The key frame's first packet: random_access_indicator and ES priority in its
    // adaptation field.
    let first_video = ts
        .chunks(TS_PACKET_LEN)
        .find(|p| p[1] == 0x41 && p[2] == 0x00)
        .unwrap();
    assert_eq!(first_video[3] & 0x30, 0x30);
    assert_eq!(first_video[5] & 0x60, 0x60);

    let (pes, d) = demux_all(&ts, &[]);
    assert_eq!(d.continuity_errors(), 0);
    assert_eq!(pes.len(), 3);
    assert!(pes[0].random_access && !pes[1].random_access);
    assert_eq!(pes[0].stream_type, stream_type::PRIVATE_DATA);
    let sequence_header = &AV1C[4..];
    let td = av1_obu(2, &[]);
    assert_eq!(
        super::av1::read_obus(&pes[0].data),
        vec![td.clone(), sequence_header.to_vec(), frame_obu]
    );
    assert_eq!(super::av1::read_obus(&pes[1].data), vec![td, delta]);
    // Emulation prevention: no start code inside an OBU; 00 00 03 escaped too.
    assert!(pes[1].data.ends_with(&[0x30, 0x00, 0x00, 0x03, 0x03, 0x05]));
    // Two zeros that end an OBU are followed by an emulation prevention byte.
    assert!(pes[2].data.ends_with(&[0x40, 0x00, 0x00, 0x03]));
    assert_eq!(
        super::av1::read_obus(&pes[2].data),
        vec![av1_obu(2, &[]), trailing]
    );
    assert_eq!(
        pes[0].data.windows(3).filter(|w| w == &[0, 0, 1]).count(),
        3
    );
}

/// A key frame that carries its own sequence header gets no second one; a frame that is not
/// a sequence of OBUs is refused and the muxer goes on.
#[test]
fn av1_key_frame_with_its_sequence_header_and_broken_frames() {
    let mut m = TsMuxer::new();
    m.mux(&av1_frame(FrameKind::Config, 0, true, AV1C.to_vec()))
        .unwrap();
    let own = av1_obu(1, &AV1C[6..]);
    let key = [own.clone(), av1_obu(6, &[1, 2, 3])].concat();
    let ts = m.mux(&av1_frame(FrameKind::Coded, 0, true, key)).unwrap();
    let (pes, _) = demux_all(&ts.bytes, &[]);
    assert_eq!(
        super::av1::read_obus(&pes[0].data),
        vec![av1_obu(2, &[]), own, av1_obu(6, &[1, 2, 3])]
    );
    // obu_size says 9 bytes, 1 follows.
    let broken = av1_frame(FrameKind::Coded, 40, false, vec![0x32, 9, 1]);
    assert!(m.mux(&broken).is_err());
    let bad_config = av1_frame(FrameKind::Config, 40, true, vec![0x81, 0, 0]);
    assert!(m.mux(&bad_config).is_err());
    let next = m.mux(&av1_frame(FrameKind::Coded, 80, false, av1_obu(6, &[7])));
    assert!(!next.unwrap().bytes.is_empty());
}

fn av1_obu_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![3u8, 4, 5, 6, 7, 15]),
        // Mostly zeros and small values: start code emulations everywhere.
        prop::collection::vec(
            prop::sample::select(vec![0u8, 0, 0, 1, 2, 3, 4, 0xFF]),
            0..400,
        ),
    )
        .prop_map(|(t, payload)| av1_obu(t, &payload))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any AV1 temporal unit comes back OBU for OBU from the TS (demuxed, start codes and
    /// emulation prevention taken out), behind the temporal delimiter of its access unit.
    #[test]
    fn av1_access_units_survive_mux_and_demux(
        units in prop::collection::vec(prop::collection::vec(av1_obu_strategy(), 1..5), 1..6),
    ) {
        let mut m = TsMuxer::new();
        let mut ts = BytesMut::new();
        for (i, obus) in units.iter().enumerate() {
            let frame = av1_frame(FrameKind::Coded, i as i64 * 40, false, obus.concat());
            ts.put_slice(&m.mux(&frame).unwrap().bytes);
        }
        let (pes, d) = demux_all(&ts, &[]);
        prop_assert_eq!(d.continuity_errors(), 0);
        prop_assert_eq!(pes.len(), units.len());
        for (p, obus) in pes.iter().zip(&units) {
            let mut expected = vec![av1_obu(2, &[])];
            expected.extend(obus.iter().cloned());
            prop_assert_eq!(super::av1::read_obus(&p.data), expected);
        }
    }
}
