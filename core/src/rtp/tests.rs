//! Tests of RTP/RTCP packets, the reorder window, dts estimation and the payload formats.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::rtcp::{self, ReceiverReport, ReceptionStats, ReportBlock, RtcpPacket, SenderReport};
use super::*;
use crate::media::{Codec, Frame, FrameKind};

/// The sequence header of /work/shared/media/h264_aac_10s.flv (High, level 3.0, 640x360).
const AVC_RECORD: &[u8] = &[
    0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xb4, 0x05, 0x01,
    0x7f, 0xcb, 0x80, 0x88, 0x00, 0x00, 0x03, 0x00, 0x08, 0x00, 0x00, 0x03, 0x01, 0x90, 0x78, 0xb1,
    0x75, 0x01, 0x00, 0x04, 0x68, 0xef, 0x3c, 0xb0, 0xfd, 0xf8, 0xf8, 0x00,
];

/// An x265 Main 1920x1080 SPS.
const HEVC_SPS: &[u8] = &[
    0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03,
    0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56, 0x69, 0x24, 0xca, 0xf0, 0x16, 0x80,
    0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84,
];
const HEVC_VPS: &[u8] = &[0x40, 0x01, 0x0c, 0x01, 0xff, 0xff];
const HEVC_PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];

fn avc_sps_pps() -> (Bytes, Bytes) {
    let c = crate::codec::h264::AvcConfig::parse(AVC_RECORD).unwrap();
    (c.sps[0].clone(), c.pps[0].clone())
}

fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
    let mut p = RtpPacket::new(96, seq, ts, 0x1234, Bytes::copy_from_slice(payload));
    p.marker = marker;
    p
}

fn avcc(nals: &[&[u8]]) -> Bytes {
    let mut b = BytesMut::new();
    for n in nals {
        b.put_u32(n.len() as u32);
        b.put_slice(n);
    }
    b.freeze()
}

fn drain(d: &mut Depacketizer) -> Vec<Frame> {
    std::iter::from_fn(|| d.poll_frame()).collect()
}

fn h264_params(sps: Vec<Bytes>, pps: Vec<Bytes>) -> TrackParams {
    TrackParams {
        payload_type: 96,
        clock_rate: 90000,
        channels: 1,
        codec: CodecParams::H264 { sps, pps },
    }
}

// ---- RTP packets ----

#[test]
fn rtp_round_trip_with_csrc_and_extension() {
    let mut p = RtpPacket::new(97, 65535, 0xDEAD_BEEF, 42, Bytes::from_static(b"hello"));
    p.marker = true;
    p.csrc = vec![1, 2, 3];
    p.extension = Some(HeaderExtension {
        profile: 0xBEDE,
        data: Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8]),
    });
    let wire = p.to_bytes();
    assert_eq!(wire.len(), p.header_len() + 5);
    assert_eq!(wire.len(), 12 + 12 + 4 + 8 + 5);
    assert_eq!(RtpPacket::parse(&wire).unwrap(), p);
}

#[test]
fn rtp_padding_and_errors() {
    // Version 2, padding, PT 0, 3 bytes of payload and 2 of padding.
    let wire = Bytes::from_static(&[0xA0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 7, 8, 9, 0, 2]);
    let p = RtpPacket::parse(&wire).unwrap();
    assert_eq!(&p.payload[..], &[7, 8, 9]);
    assert!(!p.marker);

    let bad_pad = Bytes::from_static(&[0xA0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 7, 20]);
    assert!(matches!(
        RtpPacket::parse(&bad_pad),
        Err(RtpError::Invalid {
            field: "padding length",
            ..
        })
    ));
    let zero_pad = Bytes::from_static(&[0xA0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0]);
    assert!(RtpPacket::parse(&zero_pad).is_err());
    let v1 = Bytes::from_static(&[0x40, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
    assert!(matches!(
        RtpPacket::parse(&v1),
        Err(RtpError::Invalid {
            field: "version",
            value: 1,
            ..
        })
    ));
    let short = Bytes::from_static(&[0x80, 0, 0]);
    assert!(matches!(
        RtpPacket::parse(&short),
        Err(RtpError::Truncated { offset: 0, .. })
    ));
    let csrc = Bytes::from_static(&[0x82, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 1]);
    assert!(matches!(
        RtpPacket::parse(&csrc),
        Err(RtpError::Truncated {
            field: "csrc list",
            offset: 12,
            ..
        })
    ));
    let ext = Bytes::from_static(&[0x90, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xBE, 0xDE, 0, 9]);
    assert!(matches!(
        RtpPacket::parse(&ext),
        Err(RtpError::Truncated {
            field: "extension data",
            ..
        })
    ));
    let msg = RtpPacket::parse(&ext).unwrap_err().to_string();
    assert!(
        msg.starts_with("rtp: ") && msg.contains("offset 16"),
        "{msg}"
    );
}

// ---- RTCP ----

#[test]
fn rtcp_sr_rr_round_trip() {
    let block = ReportBlock {
        ssrc: 9,
        fraction_lost: 25,
        cumulative_lost: -3,
        highest_sequence: 70000,
        jitter: 12,
        last_sr: 0x1111_2222,
        delay_since_last_sr: 65536,
    };
    let sr = SenderReport {
        ssrc: 7,
        ntp_timestamp: rtcp::ntp_from_unix_ms(1_700_000_000_500),
        rtp_timestamp: 123_456,
        packet_count: 10,
        octet_count: 10_000,
        reports: vec![block],
    };
    let mut out = BytesMut::new();
    sr.write_compound(b"rill", &mut out);
    let parsed = rtcp::parse_compound(&out.freeze()).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0], RtcpPacket::SenderReport(sr.clone()));
    match &parsed[1] {
        RtcpPacket::SourceDescription(chunks) => {
            assert_eq!(chunks.len(), 1);
            assert_eq!(chunks[0].ssrc, 7);
            assert_eq!(chunks[0].items, vec![(1, Bytes::from_static(b"rill"))]);
        }
        other => panic!("{other:?}"),
    }
    // NTP: seconds since 1900, half a second of fraction.
    assert_eq!(sr.ntp_timestamp >> 32, 1_700_000_000 + 2_208_988_800);
    assert_eq!(sr.ntp_timestamp & 0xFFFF_FFFF, 1 << 31);

    let rr = ReceiverReport {
        ssrc: 8,
        reports: vec![block, block],
    };
    let mut out = BytesMut::new();
    rr.write_compound(b"", &mut out);
    let parsed = rtcp::parse_compound(&out.freeze()).unwrap();
    assert_eq!(parsed[0], RtcpPacket::ReceiverReport(rr));
}

#[test]
fn rtcp_bye_other_and_errors() {
    // BYE with one source and reason "x", padded to 12 bytes; then an APP packet.
    let bye = [
        0x81, 203, 0, 2, 0, 0, 0, 5, 1, b'x', 0, 0, 0x80, 204, 0, 1, 1, 2, 3, 4,
    ];
    let parsed = rtcp::parse_compound(&Bytes::copy_from_slice(&bye)).unwrap();
    assert_eq!(
        parsed[0],
        RtcpPacket::Goodbye {
            sources: vec![5],
            reason: Some(Bytes::from_static(b"x"))
        }
    );
    assert!(matches!(
        parsed[1],
        RtcpPacket::Other {
            packet_type: 204,
            ..
        }
    ));
    // Length beyond the datagram.
    let long = Bytes::from_static(&[0x80, 201, 0, 9, 0, 0, 0, 1]);
    assert!(matches!(
        rtcp::parse_compound(&long),
        Err(RtpError::Truncated { .. })
    ));
    // RR claiming a report block it does not have.
    let rr = Bytes::from_static(&[0x81, 201, 0, 1, 0, 0, 0, 1]);
    assert!(rtcp::parse_compound(&rr).is_err());
    // Padding on a packet that is not the last.
    let pad = Bytes::from_static(&[0xA0, 201, 0, 1, 0, 0, 0, 1, 0x80, 201, 0, 1, 0, 0, 0, 1]);
    assert!(rtcp::parse_compound(&pad).is_err());
    assert!(rtcp::parse_compound(&Bytes::new()).is_err());
    // SDES item running past the packet.
    let sdes = Bytes::from_static(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', 0]);
    assert!(rtcp::parse_compound(&sdes).is_err());
}

#[test]
fn reception_stats_count_loss_and_wrap() {
    let mut s = ReceptionStats::new(5);
    for seq in [65534u16, 65535, 1, 2] {
        s.on_packet(seq, u32::from(seq) * 10, i64::from(seq) * 10);
    }
    let b = s.report_block(0);
    assert_eq!(b.ssrc, 5);
    assert_eq!(b.highest_sequence, 65536 + 2);
    assert_eq!(b.cumulative_lost, 1);
    assert_eq!(b.fraction_lost, 51); // 1 of 5 expected, in 1/256
    assert_eq!(b.jitter, 0);
    let b = s.report_block(0);
    assert_eq!(b.fraction_lost, 0);
}

// ---- reordering and timing ----

fn released(r: &mut ReorderBuffer) -> Vec<String> {
    std::iter::from_fn(|| r.poll_released())
        .map(|x| match x {
            Released::Packet(p) => p.sequence.to_string(),
            Released::Lost(n) => format!("lost{n}"),
        })
        .collect()
}

#[test]
fn reorder_buffer_orders_and_gives_up() {
    let mut r = ReorderBuffer::new(4);
    r.push(pkt(65534, 0, false, b"a"));
    assert_eq!(released(&mut r), ["65534"]);
    r.push(pkt(0, 0, false, b"a"));
    r.push(pkt(65535, 0, false, b"a"));
    assert_eq!(released(&mut r), ["65535", "0"]);
    // 1 missing: 2 and 3 are held, 4 (3 ahead) makes 1 lost.
    r.push(pkt(2, 0, false, b"a"));
    r.push(pkt(3, 0, false, b"a"));
    assert!(released(&mut r).is_empty());
    r.push(pkt(4, 0, false, b"a"));
    assert_eq!(released(&mut r), ["lost1", "2", "3", "4"]);
    // Late and duplicate packets are dropped.
    r.push(pkt(1, 0, false, b"a"));
    r.push(pkt(4, 0, false, b"a"));
    assert!(released(&mut r).is_empty());
    assert_eq!(r.dropped(), 2);
    // A jump is a discontinuity.
    r.push(pkt(6, 0, false, b"a"));
    r.push(pkt(1000, 0, false, b"a"));
    assert_eq!(released(&mut r), ["lost1", "6", "lost993", "1000"]);
    // Flush gives up on the hole.
    r.push(pkt(1002, 0, false, b"a"));
    r.flush();
    assert_eq!(released(&mut r), ["lost1", "1002"]);
    assert_eq!(r.lost(), 996);
}

#[test]
fn dts_estimator_b_frames() {
    // Decode order I0 P3 B1 B2 P6 B4 B5 (frame units of 40 ms), with a B-pyramid later.
    let pts = [0, 120, 40, 80, 240, 160, 200, 400, 320, 280, 360];
    let mut e = DtsEstimator::new(2);
    let dts: Vec<i64> = pts.iter().map(|&p| e.next(p)).collect();
    for (d, p) in dts.iter().zip(pts) {
        assert!(*d <= p, "{dts:?}");
    }
    assert!(dts.windows(2).all(|w| w[0] <= w[1]), "{dts:?}");
    assert_eq!(&dts[2..], &[0, 40, 80, 120, 160, 200, 240, 280, 320]);

    // No reordering: after the settling period dts == pts.
    let mut e = DtsEstimator::new(2);
    let mut last = i64::MIN;
    for i in 0..200 {
        let d = e.next(i * 40);
        assert!(d >= last && d <= i * 40);
        last = d;
        if i > 130 {
            assert_eq!(d, i * 40);
        }
    }
    // Deeper reordering than assumed raises the depth and stays monotonic.
    let mut e = DtsEstimator::new(0);
    let dts: Vec<i64> = [0, 120, 40, 80, 240, 160, 200]
        .iter()
        .map(|&p| e.next(p))
        .collect();
    assert!(dts.windows(2).all(|w| w[0] <= w[1]), "{dts:?}");
    assert!(e.reorder() >= 1);
    for p in [400, 320, 280, 360, 560, 480, 440, 520] {
        let d = e.next(p);
        assert!(d <= p && d >= *dts.last().unwrap());
    }
}

// ---- H.264 ----

#[test]
fn h264_single_stap_fu_and_config() {
    let (sps, pps) = avc_sps_pps();
    let mut d = Depacketizer::new(&h264_params(vec![], vec![]), 8).unwrap();
    // STAP-A with SPS and PPS, then an IDR in three FU-A fragments, then a P frame.
    let mut stap = vec![0x78];
    for n in [&sps, &pps] {
        stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
        stap.extend_from_slice(n);
    }
    d.push(pkt(10, 1000, false, &stap)).unwrap();
    d.push(pkt(11, 1000, false, &[0x7C, 0x85, 1, 2])).unwrap();
    d.push(pkt(13, 1000, true, &[0x7C, 0x45, 5, 6])).unwrap();
    d.push(pkt(12, 1000, false, &[0x7C, 0x05, 3, 4])).unwrap();
    d.push(pkt(14, 1000 + 3600, true, &[0x41, 9, 9])).unwrap();
    let frames = drain(&mut d);
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_eq!(frames[0].kind, FrameKind::Config);
    assert_eq!(&frames[0].payload[..], AVC_RECORD);
    assert_eq!(frames[1].kind, FrameKind::Coded);
    assert!(frames[1].key);
    assert_eq!(frames[1].pts, 0);
    assert_eq!(frames[1].payload, avcc(&[&[0x65, 1, 2, 3, 4, 5, 6]]));
    assert!(!frames[2].key);
    assert_eq!(frames[2].pts, 40);
    assert!(frames[2].dts <= 40);
    assert_eq!(frames[2].payload, avcc(&[&[0x41, 9, 9]]));
}

#[test]
fn h264_loss_drops_the_access_unit() {
    let (sps, pps) = avc_sps_pps();
    let mut d = Depacketizer::new(&h264_params(vec![sps], vec![pps]), 1).unwrap();
    d.push(pkt(1, 0, false, &[0x7C, 0x85, 1])).unwrap();
    // 2 lost (window 1: no reordering).
    d.push(pkt(3, 0, true, &[0x7C, 0x45, 3])).unwrap();
    d.push(pkt(4, 3000, true, &[0x65, 7])).unwrap();
    let frames = drain(&mut d);
    // Config from the SDP parameter sets, then only the intact access unit.
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0].kind, FrameKind::Config);
    assert_eq!(frames[1].payload, avcc(&[&[0x65, 7]]));
    assert_eq!(frames[1].pts, 33);
    assert_eq!(d.lost(), 1);
    // Bad payloads are errors for that packet only.
    assert!(d.push(pkt(5, 6000, true, &[0x80, 1])).is_err());
    assert!(d.push(pkt(6, 9000, true, &[0x7A, 1])).is_err()); // STAP-B
    assert!(d.push(pkt(7, 9000, true, &[0x78, 0, 9, 1])).is_err());
    assert!(d.push(pkt(8, 9000, true, &[])).is_err());
    let mut other_pt = pkt(9, 9000, true, &[0x41]);
    other_pt.payload_type = 0;
    assert!(d.push(other_pt).is_err());
    d.push(pkt(10, 12000, true, &[0x41, 1])).unwrap();
    let frames = drain(&mut d);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].pts, 133);
}

#[test]
fn h264_packetizer_stap_and_fu() {
    let (sps, pps) = avc_sps_pps();
    let params = h264_params(vec![sps.clone()], vec![pps.clone()]);
    let mut p = Packetizer::new(&params, 1, 100, 5000, 12 + 100).unwrap();
    let big: Vec<u8> = std::iter::once(0x65)
        .chain((0..250).map(|i| i as u8))
        .collect();
    let frame = Frame {
        codec: Codec::H264,
        kind: FrameKind::Coded,
        dts: 0,
        pts: 40,
        key: true,
        payload: avcc(&[&[0x06, 1, 2], &big]),
    };
    let mut out = Vec::new();
    p.push(&frame, &mut out).unwrap();
    // STAP-A (SPS, PPS, SEI), then FU-A pieces of 97 bytes of data: 250 -> 3 packets.
    assert_eq!(out.len(), 4);
    assert_eq!(out[0].payload[0] & 0x1F, 24);
    assert!(out.iter().all(|x| x.payload.len() <= 100));
    assert!(out.iter().all(|x| x.timestamp == 5000 + 3600));
    assert_eq!(out.iter().filter(|x| x.marker).count(), 1);
    assert!(out[3].marker);
    assert_eq!(out[1].payload[..2], [0x7C, 0x85]);
    assert_eq!(out[3].payload[..2], [0x7C, 0x45]);
    assert_eq!(
        out.iter().map(|x| x.sequence).collect::<Vec<_>>(),
        [100, 101, 102, 103]
    );
    assert_eq!(p.next_sequence(), 104);
    // Wrong codec and tiny MTU are refused.
    let aac = Frame {
        codec: Codec::Aac,
        ..frame.clone()
    };
    assert!(p.push(&aac, &mut out).is_err());
    let mut tiny = Packetizer::new(&params, 1, 0, 0, 14).unwrap();
    assert!(tiny.push(&frame, &mut out).is_err());
}

// ---- H.265 ----

#[test]
fn h265_ap_fu_and_config() {
    let params = TrackParams {
        payload_type: 96,
        clock_rate: 90000,
        channels: 1,
        codec: CodecParams::H265 {
            vps: vec![Bytes::from_static(HEVC_VPS)],
            sps: vec![Bytes::from_static(HEVC_SPS)],
            pps: vec![Bytes::from_static(HEVC_PPS)],
        },
    };
    let mut d = Depacketizer::new(&params, 4).unwrap();
    // IDR_W_RADL (19): header 0x26 0x01 as FU (type 49: 0x62 0x01).
    d.push(pkt(1, 0, false, &[0x62, 0x01, 0x80 | 19, 1, 2]))
        .unwrap();
    d.push(pkt(2, 0, true, &[0x62, 0x01, 0x40 | 19, 3]))
        .unwrap();
    // AP (48: 0x60 0x01) with two TRAIL_R (1: 0x02 0x01) slices of one picture.
    d.push(pkt(
        3,
        3000,
        true,
        &[0x60, 0x01, 0, 3, 0x02, 0x01, 7, 0, 3, 0x02, 0x01, 8],
    ))
    .unwrap();
    let frames = drain(&mut d);
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_eq!(frames[0].kind, FrameKind::Config);
    let cfg = crate::codec::h265::HevcConfig::parse(&frames[0].payload).unwrap();
    assert_eq!(cfg.sps, vec![Bytes::from_static(HEVC_SPS)]);
    assert!(frames[1].key);
    assert_eq!(frames[1].payload, avcc(&[&[0x26, 0x01, 1, 2, 3]]));
    assert!(!frames[2].key);
    assert_eq!(
        frames[2].payload,
        avcc(&[&[0x02, 0x01, 7], &[0x02, 0x01, 8]])
    );
    // PACI (50) is not handled.
    assert!(d.push(pkt(4, 6000, true, &[0x64, 0x01, 0])).is_err());
}

// ---- AAC, G.711, Opus ----

fn aac_params() -> TrackParams {
    TrackParams {
        payload_type: 97,
        clock_rate: 48000,
        channels: 2,
        codec: CodecParams::aac_hbr(Bytes::from_static(&[0x11, 0x90])),
    }
}

#[test]
fn aac_several_aus_and_fragments() {
    let mut d = Depacketizer::new(&aac_params(), 4).unwrap();
    // Two AU headers (sizes 2 and 3).
    let mut p = pkt(1, 0, true, &[0, 32, 0, 16, 0, 24, 1, 2, 3, 4, 5]);
    p.payload_type = 97;
    d.push(p).unwrap();
    // One AU of 5 bytes in two fragments.
    let mut a = pkt(2, 2048, false, &[0, 16, 0, 40, 1, 2, 3]);
    a.payload_type = 97;
    let mut b = pkt(3, 2048, true, &[0, 16, 0, 40, 4, 5]);
    b.payload_type = 97;
    d.push(a).unwrap();
    d.push(b).unwrap();
    let frames = drain(&mut d);
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert_eq!(frames[0].kind, FrameKind::Config);
    assert_eq!(&frames[0].payload[..], &[0x11, 0x90]);
    assert_eq!(&frames[1].payload[..], &[1, 2]);
    assert_eq!(&frames[2].payload[..], &[3, 4, 5]);
    assert_eq!((frames[2].pts, frames[2].dts), (21, 21));
    assert_eq!(&frames[3].payload[..], &[1, 2, 3, 4, 5]);
    assert_eq!(frames[3].pts, 42);
    // AU larger than the packet with the marker set: truncated.
    let mut c = pkt(4, 3072, true, &[0, 16, 0, 80, 1]);
    c.payload_type = 97;
    assert!(d.push(c).is_err());
    // AU headers longer than the packet.
    let mut e = pkt(5, 4096, true, &[0, 200, 0]);
    e.payload_type = 97;
    assert!(d.push(e).is_err());
    // A bad AudioSpecificConfig and a zero clock rate are refused up front.
    let mut bad = aac_params();
    bad.codec = CodecParams::aac_hbr(Bytes::from_static(&[0]));
    assert!(Depacketizer::new(&bad, 4).is_err());
    let mut zero = aac_params();
    zero.clock_rate = 0;
    assert!(Depacketizer::new(&zero, 4).is_err());
    assert!(Packetizer::new(&zero, 0, 0, 0, 1400).is_err());
}

#[test]
fn g711_split_and_opus() {
    let params = TrackParams {
        payload_type: 8,
        clock_rate: 8000,
        channels: 1,
        codec: CodecParams::G711A,
    };
    let mut p = Packetizer::new(&params, 3, 0, 0, 12 + 160).unwrap();
    let frame = Frame {
        codec: Codec::G711A,
        kind: FrameKind::Coded,
        dts: 20,
        pts: 20,
        key: true,
        payload: Bytes::from(vec![0xD5; 400]),
    };
    let mut out = Vec::new();
    p.push(&frame, &mut out).unwrap();
    assert_eq!(
        out.iter()
            .map(|x| (x.timestamp, x.payload.len()))
            .collect::<Vec<_>>(),
        [(160, 160), (320, 160), (480, 80)]
    );
    let mut d = Depacketizer::new(&params, 4).unwrap();
    for x in out {
        d.push(x).unwrap();
    }
    let frames = drain(&mut d);
    assert_eq!(
        frames.iter().map(|f| f.pts).collect::<Vec<_>>(),
        [0, 20, 40]
    );

    let opus = TrackParams {
        payload_type: 111,
        clock_rate: 48000,
        channels: 2,
        codec: CodecParams::Opus,
    };
    let mut p = Packetizer::new(&opus, 3, 0, 0, 100).unwrap();
    let big = Frame {
        codec: Codec::Opus,
        payload: Bytes::from(vec![0; 200]),
        ..frame
    };
    assert!(p.push(&big, &mut Vec::new()).is_err());
}

// ---- round trips under reordering ----

/// Shuffles each block of `block` packets after the first one (the first packet of a track
/// sets the expected sequence, so it stays first).
fn shuffle_blocks(pkts: &mut [RtpPacket], block: usize, seed: u64) {
    let mut s = seed | 1;
    if let Some(rest) = pkts.get_mut(1..) {
        for chunk in rest.chunks_mut(block) {
            for i in (1..chunk.len()).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                chunk.swap(i, (s % (i as u64 + 1)) as usize);
            }
        }
    }
}

const WINDOW: usize = 16;

fn round_trip(params: &TrackParams, frames: &[Frame], mtu: usize, seed: u64) -> Vec<Frame> {
    let mut p = Packetizer::new(params, 0xABCD, seed as u16, seed as u32, mtu).unwrap();
    let mut pkts = Vec::new();
    for f in frames {
        p.push(f, &mut pkts).unwrap();
    }
    shuffle_blocks(&mut pkts, WINDOW / 2, seed);
    // Through the wire format too.
    let mut d = Depacketizer::new(params, WINDOW).unwrap();
    let mut out = Vec::new();
    for x in pkts {
        d.push(RtpPacket::parse(&x.to_bytes()).unwrap()).unwrap();
        out.extend(drain(&mut d));
    }
    d.flush().unwrap();
    out.extend(drain(&mut d));
    out
}

fn nal_strategy(header: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..3000).prop_map(move |body| {
        let mut n = header.clone();
        n.extend(body);
        n
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn h264_round_trip(
        gops in prop::collection::vec(prop::collection::vec(nal_strategy(vec![0x41]), 1..6), 1..4),
        slices in prop::collection::vec(nal_strategy(vec![0x65]), 1..3),
        mtu in 60usize..1500,
        seed in any::<u64>(),
    ) {
        let params = h264_params(vec![], vec![]);
        let mut frames = vec![Frame {
            codec: Codec::H264, kind: FrameKind::Config, dts: 0, pts: 0, key: true,
            payload: Bytes::from_static(AVC_RECORD),
        }];
        let mut t = 0;
        for gop in &gops {
            let key: Vec<&[u8]> = slices.iter().map(|s| &s[..]).collect();
            for (i, nals) in std::iter::once(key).chain(gop.iter().map(|n| vec![&n[..]])).enumerate() {
                frames.push(Frame {
                    codec: Codec::H264, kind: FrameKind::Coded, dts: t, pts: t, key: i == 0,
                    payload: avcc(&nals),
                });
                t += 40;
            }
        }
        let out = round_trip(&params, &frames, mtu, seed);
        prop_assert_eq!(out.len(), frames.len());
        prop_assert_eq!(&out[0].payload[..], AVC_RECORD);
        for (a, b) in frames.iter().zip(&out).skip(1) {
            prop_assert_eq!(&a.payload, &b.payload);
            prop_assert_eq!(a.pts, b.pts);
            prop_assert_eq!(a.key, b.key);
            prop_assert!(b.dts <= b.pts);
        }
        prop_assert!(out.windows(2).all(|w| w[0].dts <= w[1].dts));
    }

    #[test]
    fn h265_round_trip_with_b_frames(
        bodies in prop::collection::vec(nal_strategy(vec![0x02, 0x01]), 4..20),
        mtu in 60usize..1500,
        seed in any::<u64>(),
    ) {
        let params = TrackParams {
            payload_type: 96, clock_rate: 90000, channels: 1,
            codec: CodecParams::H265 {
                vps: vec![Bytes::from_static(HEVC_VPS)],
                sps: vec![Bytes::from_static(HEVC_SPS)],
                pps: vec![Bytes::from_static(HEVC_PPS)],
            },
        };
        // Decode order I P B B P B B ...: pts 0, 3, 1, 2, 6, 4, 5 ... frames of 40 ms.
        let mut frames = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            let i = i as i64;
            let pts = if i == 0 { 0 } else if i % 3 == 1 { i + 2 } else { i - 1 } * 40;
            let mut nal = body.clone();
            if i == 0 {
                nal[0] = 19 << 1;
            }
            frames.push(Frame {
                codec: Codec::H265, kind: FrameKind::Coded, dts: i * 40, pts, key: i == 0,
                payload: avcc(&[&nal]),
            });
        }
        let out = round_trip(&params, &frames, mtu, seed);
        prop_assert_eq!(out.len(), frames.len() + 1);
        prop_assert_eq!(out[0].kind, FrameKind::Config);
        for (a, b) in frames.iter().zip(&out[1..]) {
            prop_assert_eq!(&a.payload, &b.payload);
            prop_assert_eq!(a.pts, b.pts);
            prop_assert!(b.dts <= b.pts);
        }
        prop_assert!(out.windows(2).all(|w| w[0].dts <= w[1].dts));
        // Once the start-up is over, dts is exactly the input's decode timeline.
        for (a, b) in frames.iter().zip(&out[1..]).skip(2) {
            prop_assert_eq!(b.dts, a.dts - 80);
        }
    }

    #[test]
    fn aac_round_trip(
        aus in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..3000), 1..30),
        mtu in 40usize..1500,
        seed in any::<u64>(),
    ) {
        let params = aac_params();
        let frames: Vec<Frame> = aus.iter().enumerate().map(|(i, au)| Frame {
            codec: Codec::Aac, kind: FrameKind::Coded, dts: i as i64 * 64, pts: i as i64 * 64,
            key: true, payload: Bytes::from(au.clone()),
        }).collect();
        let out = round_trip(&params, &frames, mtu, seed);
        prop_assert_eq!(out.len(), frames.len() + 1);
        prop_assert_eq!(out[0].kind, FrameKind::Config);
        prop_assert_eq!(&out[1..], &frames[..]);
    }

    #[test]
    fn opus_and_g711_round_trip(
        packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..200), 1..40),
        seed in any::<u64>(),
        ulaw in any::<bool>(),
    ) {
        let (params, codec) = if ulaw {
            (TrackParams { payload_type: 0, clock_rate: 8000, channels: 1, codec: CodecParams::G711U }, Codec::G711U)
        } else {
            (TrackParams { payload_type: 111, clock_rate: 48000, channels: 2, codec: CodecParams::Opus }, Codec::Opus)
        };
        let frames: Vec<Frame> = packets.iter().enumerate().map(|(i, p)| Frame {
            codec, kind: FrameKind::Coded, dts: i as i64 * 20, pts: i as i64 * 20,
            key: true, payload: Bytes::from(p.clone()),
        }).collect();
        let out = round_trip(&params, &frames, 1400, seed);
        prop_assert_eq!(&out[..], &frames[..]);
    }

    #[test]
    fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let b = Bytes::from(data);
        if let Ok(p) = RtpPacket::parse(&b) {
            prop_assert_eq!(RtpPacket::parse(&p.to_bytes()).ok(), Some(p));
        }
        let _ = rtcp::parse_compound(&b);
    }
}
