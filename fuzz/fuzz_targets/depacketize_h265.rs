//! A stream of arbitrary H.265 (RFC 7798) packets with arbitrary sequence and timestamp steps (reordering,
//! loss, duplicates, wraps) into a Depacketizer: never panics, and every frame it gives out is
//! sane (video: valid 4-byte length-prefixed NAL units and dts never decreasing; audio: dts
//! equals pts).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::codec::split_avcc;
use rill_core::media::{FrameKind, TrackKind};
use rill_core::rtp::{CodecParams, Depacketizer, RtpPacket, TrackParams};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let sdp_params = flags & 1 == 1;
    let window = usize::from(flags >> 1) % 32 + 1;
    let params = TrackParams {
        payload_type: 96,
        clock_rate: 90000,
        channels: 1,
        codec: CodecParams::H265 {
            vps: if sdp_params {
                vec![Bytes::from_static(&[0x40, 0x01, 0x0c, 0x01])]
            } else {
                vec![]
            },
            sps: vec![],
            pps: vec![],
        },
    };
    let Ok(mut d) = Depacketizer::new(&params, window) else {
        return;
    };
    let (mut seq, mut ts) = (u16::from(flags) << 8 | 0xF0, u32::MAX - 5000);
    let mut last_dts = i64::MIN;
    // Each packet: sequence step (i8), timestamp step (i8, x 100), flags (bit 0 marker,
    // bit 1 other payload type), payload length, payload.
    while let [step, ts_step, pflags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        seq = seq.wrapping_add(*step as i8 as u16);
        ts = ts.wrapping_add((i32::from(*ts_step as i8) * 100) as u32);
        let mut p = RtpPacket::new(96, seq, ts, 1, Bytes::copy_from_slice(payload));
        p.marker = pflags & 1 == 1;
        if pflags & 2 == 2 {
            p.payload_type = 0;
        }
        let _ = d.push(p);
        if pflags & 4 == 4 {
            let _ = d.flush();
        }
        while let Some(f) = d.pull() {
            assert_eq!(f.codec, params.codec.codec());
            if f.track() == TrackKind::Audio {
                assert_eq!(f.dts, f.pts);
                continue;
            }
            assert!(f.dts >= last_dts, "dts went back");
            last_dts = f.dts;
            if f.kind == FrameKind::Coded {
                assert!(split_avcc(&f.payload, 4).all(|n| n.is_ok()));
            }
        }
    }
});
