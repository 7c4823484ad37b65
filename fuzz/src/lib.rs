//! What several fuzz targets share.

use bytes::Bytes;
use rill_core::codec::split_avcc;
use rill_core::media::{FrameKind, TrackKind};
use rill_core::rtp::{CodecParams, Depacketizer, RtpPacket, TrackParams};

/// Feeds a stream of arbitrary RTP packets with arbitrary sequence and timestamp steps
/// (reordering, loss, duplicates, wraps) into a [`Depacketizer`] and checks every frame it gives
/// out: video has valid 4-byte length-prefixed NAL units and dts never decreasing; audio has
/// dts equal to pts.
///
/// `data[0]`: bit 0 chooses `codec(true)` (parameters as an SDP would give them) or
/// `codec(false)`, the other bits the reorder window. Then per packet: sequence step (i8),
/// timestamp step (i8, x 100), flags (bit 0 marker, bit 1 other payload type, bit 2 flush),
/// payload length, payload.
pub fn drive_depacketizer(
    data: &[u8],
    clock_rate: u32,
    channels: u8,
    codec: impl Fn(bool) -> CodecParams,
) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let window = usize::from(flags >> 1) % 32 + 1;
    let params = TrackParams {
        payload_type: 96,
        clock_rate,
        channels,
        codec: codec(flags & 1 == 1),
    };
    let Ok(mut d) = Depacketizer::new(&params, window) else {
        return;
    };
    let (mut seq, mut ts) = (u16::from(flags) << 8 | 0xF0, u32::MAX - 5000);
    let mut last_dts = i64::MIN;
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
}
