//! RTP packets of one track -> [`Frame`]s.

use std::collections::VecDeque;

use bytes::Bytes;

use super::audio::{AacDepacketizer, AuHeaderLayout, LatmDepacketizer, PassthroughDepacketizer};
use super::av1::Av1Depacketizer;
use super::timing::{Released, ReorderBuffer, TsUnwrap};
use super::video::{NalFormat, ParamSets, VideoDepacketizer};
use super::{CodecParams, RtpError, RtpPacket, TrackParams};
use crate::codec::aac::AudioSpecificConfig;
use crate::media::{Codec, Frame};

/// Default reorder window in packets.
pub const DEFAULT_REORDER_WINDOW: usize = 64;
/// Largest reassembled frame, in bytes.
const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// The framing H.264/H.265 and AV1 depacketizers share: the packets with one RTP timestamp
/// make one access unit (AV1: temporal unit), ended by the marker bit or by the next timestamp;
/// a payload that does not parse, or a lost packet, spoils the unit, which is then dropped.
pub(super) trait UnitDepacketizer {
    /// The timestamp of the unit being collected.
    fn unit_ts(&mut self) -> &mut Option<i64>;
    /// Adds one packet's payload to the unit.
    fn read_payload(&mut self, payload: &Bytes) -> Result<(), RtpError>;
    /// Packets were lost: the fragment in progress is gone and the unit is damaged.
    fn lost(&mut self);
    /// Ends the unit: its frame (or frames) to `out`, nothing for a damaged one.
    fn end_unit(&mut self, out: &mut VecDeque<Frame>) -> Result<(), RtpError>;

    /// Takes one packet's payload with its extended timestamp.
    fn push(
        &mut self,
        payload: &Bytes,
        ts: i64,
        marker: bool,
        out: &mut VecDeque<Frame>,
    ) -> Result<(), RtpError> {
        let mut result = Ok(());
        if self.unit_ts().is_some_and(|t| t != ts) {
            result = self.end_unit(out);
        }
        *self.unit_ts() = Some(ts);
        if let Err(e) = self.read_payload(payload) {
            self.lost();
            result = result.and(Err(e));
        }
        if marker {
            result = result.and(self.end_unit(out));
        }
        result
    }
}

#[derive(Debug)]
enum Inner {
    Video(Box<VideoDepacketizer>),
    Av1(Av1Depacketizer),
    Aac(AacDepacketizer),
    Latm(LatmDepacketizer),
    Passthrough(PassthroughDepacketizer),
}

/// Turns the RTP packets of one track into frames.
///
/// Packets go through a [`ReorderBuffer`] (sequence wraps, duplicates, late packets and gaps are
/// handled there); an access unit that lost a packet is dropped whole. Timestamps: the RTP
/// timestamp, extended past wraps and counted from the first packet of the track, is the pts,
/// converted to milliseconds. Audio frames have `dts == pts`; video dts comes from a
/// [`DtsEstimator`](super::DtsEstimator) since RTP carries presentation times only. A Config
/// frame (decoder configuration record / AudioSpecificConfig) comes before the first coded
/// frame and again whenever in-band parameter sets change; parameter sets are taken out of the
/// coded frames. H.264 / H.265 payloads are 4-byte length-prefixed NAL units; AV1 payloads are
/// OBUs with their size fields (AOM "RTP Payload Format for AV1").
///
/// Use: [`push`](Self::push) each received packet, then drain [`poll_frame`](Self::poll_frame)
/// until `None`; at a reorder timeout or the end, [`flush`](Self::flush) and drain it again.
/// An error from `push` concerns that packet only; the depacketizer goes on with the next.
#[derive(Debug)]
pub struct Depacketizer {
    payload_type: u8,
    codec: Codec,
    reorder: ReorderBuffer,
    ts: TsUnwrap,
    inner: Inner,
    out: VecDeque<Frame>,
}

impl Depacketizer {
    /// A depacketizer for a track, holding up to `reorder_window` packets to put them back in
    /// order ([`DEFAULT_REORDER_WINDOW`] suits most networks; 1 for TCP).
    pub fn new(params: &TrackParams, reorder_window: usize) -> Result<Self, RtpError> {
        if params.clock_rate == 0 {
            return Err(RtpError::Invalid {
                layer: "rtp",
                field: "clock rate",
                value: 0,
                offset: 0,
            });
        }
        let clock = params.clock_rate;
        let inner = match &params.codec {
            CodecParams::H264 { sps, pps } => Inner::Video(Box::new(VideoDepacketizer::new(
                NalFormat::H264,
                clock,
                ParamSets {
                    vps: Vec::new(),
                    sps: sps.clone(),
                    pps: pps.clone(),
                },
                MAX_FRAME_BYTES,
            ))),
            CodecParams::H265 { vps, sps, pps } => Inner::Video(Box::new(VideoDepacketizer::new(
                NalFormat::H265,
                clock,
                ParamSets {
                    vps: vps.clone(),
                    sps: sps.clone(),
                    pps: pps.clone(),
                },
                MAX_FRAME_BYTES,
            ))),
            CodecParams::Aac {
                config,
                size_length,
                index_length,
                index_delta_length,
            } => {
                AudioSpecificConfig::parse(config)?;
                if *size_length == 0 || *size_length > 32 || *index_length > 32 {
                    return Err(RtpError::Invalid {
                        layer: "aac",
                        field: "sizeLength",
                        value: u64::from(*size_length),
                        offset: 0,
                    });
                }
                Inner::Aac(AacDepacketizer::new(
                    AuHeaderLayout {
                        size_length: *size_length,
                        index_length: *index_length,
                        index_delta_length: (*index_delta_length).min(32),
                    },
                    clock,
                    config.clone(),
                    MAX_FRAME_BYTES,
                ))
            }
            CodecParams::AacLatm { config, sub_frames } => {
                AudioSpecificConfig::parse(config)?;
                Inner::Latm(LatmDepacketizer::new(
                    clock,
                    config.clone(),
                    *sub_frames,
                    MAX_FRAME_BYTES,
                ))
            }
            CodecParams::Av1 { .. } => Inner::Av1(Av1Depacketizer::new(clock, MAX_FRAME_BYTES)),
            CodecParams::G711A | CodecParams::G711U | CodecParams::Opus => {
                Inner::Passthrough(PassthroughDepacketizer {
                    codec: params.codec.codec(),
                    clock_rate: clock,
                })
            }
        };
        Ok(Depacketizer {
            payload_type: params.payload_type,
            codec: params.codec.codec(),
            reorder: ReorderBuffer::new(reorder_window),
            ts: TsUnwrap::default(),
            inner,
            out: VecDeque::new(),
        })
    }

    /// The codec of the frames produced.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Packets given up as lost so far.
    pub fn lost(&self) -> u64 {
        self.reorder.lost()
    }

    /// Packets dropped as late or duplicate so far.
    pub fn dropped(&self) -> u64 {
        self.reorder.dropped()
    }

    /// Takes one received packet. A packet of another payload type counts in the sequence but
    /// its payload is refused with an error.
    pub fn push(&mut self, pkt: RtpPacket) -> Result<(), RtpError> {
        self.reorder.push(pkt);
        self.drain()
    }

    /// Gives up on missing packets and ends the frame being collected (at the end of the stream
    /// or when the caller's reorder timeout expires); then drain [`poll_frame`](Self::poll_frame).
    pub fn flush(&mut self) -> Result<(), RtpError> {
        self.reorder.flush();
        let r = self.drain();
        let f = match &mut self.inner {
            Inner::Video(v) => v.end_unit(&mut self.out),
            Inner::Av1(v) => v.end_unit(&mut self.out),
            _ => Ok(()),
        };
        r.and(f)
    }

    /// The next frame, or `None` until more packets arrive.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.out.pop_front()
    }

    fn drain(&mut self) -> Result<(), RtpError> {
        let mut result = Ok(());
        while let Some(r) = self.reorder.poll_released() {
            let step = match r {
                Released::Lost(_) => {
                    match &mut self.inner {
                        Inner::Video(v) => v.lost(),
                        Inner::Av1(v) => v.lost(),
                        Inner::Aac(a) => a.lost(),
                        Inner::Latm(a) => a.lost(),
                        Inner::Passthrough(_) => {}
                    }
                    Ok(())
                }
                Released::Packet(p) if p.payload_type != self.payload_type => {
                    Err(RtpError::Invalid {
                        layer: "rtp",
                        field: "payload type",
                        value: u64::from(p.payload_type),
                        offset: 1,
                    })
                }
                Released::Packet(p) => {
                    let ts = self.ts.unwrap(p.timestamp);
                    match &mut self.inner {
                        Inner::Video(v) => v.push(&p.payload, ts, p.marker, &mut self.out),
                        Inner::Av1(v) => v.push(&p.payload, ts, p.marker, &mut self.out),
                        Inner::Aac(a) => a.push(&p.payload, ts, p.marker, &mut self.out),
                        Inner::Latm(a) => a.push(&p.payload, ts, p.marker, &mut self.out),
                        Inner::Passthrough(g) => {
                            g.push(&p.payload, ts, &mut self.out);
                            Ok(())
                        }
                    }
                }
            };
            if result.is_ok() {
                result = step;
            }
        }
        result
    }
}
