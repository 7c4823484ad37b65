//! [`Frame`]s of one track -> RTP packets.

use bytes::Bytes;

use super::audio::{packetize_aac, packetize_latm};
use super::av1::Av1Packetizer;
use super::timing::ms_to_ticks;
use super::video::{NalFormat, ParamSets, VideoPacketizer};
use super::{CodecParams, RtpError, RtpPacket, TrackParams, RTP_HEADER_LEN};
use crate::media::{Frame, FrameKind};

#[derive(Debug)]
enum Inner {
    Video(VideoPacketizer),
    Av1(Av1Packetizer),
    Aac,
    Latm,
    G711,
    Opus,
}

/// Cuts the frames of one track into RTP packets of at most `mtu` bytes (header included; at
/// most 65535).
///
/// The RTP timestamp of a frame is its pts converted to the track's clock plus a random
/// offset chosen by the caller; the marker bit is set on the last packet of each video access
/// unit and on every audio packet that ends a frame. Video: single NAL unit packets, STAP-A / AP
/// for runs of small NAL units, FU-A / FU for large ones; the parameter sets from the last Config
/// frame (or from the track parameters) are sent in front of each key frame. AV1: OBU
/// elements aggregated and fragmented, the sequence header in front of each key frame. AAC (RFC 3640 or
/// LATM): one access unit per packet (fragmented when larger). G.711: split at `mtu` on sample boundaries. Opus:
/// one packet per frame.
///
/// Use: [`push`](Self::push) each frame; the packets are appended to the caller's vector.
#[derive(Debug)]
pub struct Packetizer {
    params: TrackParams,
    inner: Inner,
    ssrc: u32,
    sequence: u16,
    ts_offset: u32,
    max_payload: usize,
    payloads: Vec<Bytes>,
}

impl Packetizer {
    /// A packetizer with the given SSRC, first sequence number, timestamp offset and MTU.
    pub fn new(
        params: &TrackParams,
        ssrc: u32,
        first_sequence: u16,
        ts_offset: u32,
        mtu: usize,
    ) -> Result<Self, RtpError> {
        if params.clock_rate == 0 {
            return Err(RtpError::Invalid {
                layer: "rtp",
                field: "clock rate",
                value: 0,
                offset: 0,
            });
        }
        let inner = match &params.codec {
            CodecParams::H264 { sps, pps } => Inner::Video(VideoPacketizer::new(
                NalFormat::H264,
                ParamSets {
                    vps: Vec::new(),
                    sps: sps.clone(),
                    pps: pps.clone(),
                },
            )),
            CodecParams::H265 { vps, sps, pps } => Inner::Video(VideoPacketizer::new(
                NalFormat::H265,
                ParamSets {
                    vps: vps.clone(),
                    sps: sps.clone(),
                    pps: pps.clone(),
                },
            )),
            CodecParams::Av1 { config } => Inner::Av1(Av1Packetizer::new(config)),
            CodecParams::Aac { .. } => Inner::Aac,
            CodecParams::AacLatm { .. } => Inner::Latm,
            CodecParams::G711A | CodecParams::G711U => Inner::G711,
            CodecParams::Opus => Inner::Opus,
        };
        Ok(Packetizer {
            params: params.clone(),
            inner,
            ssrc,
            sequence: first_sequence,
            ts_offset,
            // An interleaved frame carries at most 65535 bytes, and STAP-A sizes are 16-bit.
            max_payload: mtu.min(0xFFFF).saturating_sub(RTP_HEADER_LEN),
            payloads: Vec::new(),
        })
    }

    /// The sequence number of the next packet.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// The SSRC of the packets.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The RTP timestamp for a time in milliseconds (for RTCP sender reports).
    pub fn rtp_timestamp(&self, ms: i64) -> u32 {
        self.ts_offset
            .wrapping_add(ms_to_ticks(ms, self.params.clock_rate) as u32)
    }

    /// Packetizes one frame. Config frames update the parameter sets and produce no packet.
    pub fn push(&mut self, frame: &Frame, out: &mut Vec<RtpPacket>) -> Result<(), RtpError> {
        if frame.codec != self.params.codec.codec() {
            return Err(RtpError::WrongCodec { codec: frame.codec });
        }
        if frame.kind != FrameKind::Coded {
            match (frame.kind, &mut self.inner) {
                (FrameKind::Config, Inner::Video(v)) => v.set_config(&frame.payload)?,
                (FrameKind::Config, Inner::Av1(v)) => v.set_config(&frame.payload)?,
                _ => {}
            }
            return Ok(());
        }
        let mut payloads = std::mem::take(&mut self.payloads);
        payloads.clear();
        let ts = self.rtp_timestamp(frame.pts);
        let result = match &self.inner {
            Inner::Video(v) => v.packetize(frame, self.max_payload, &mut payloads),
            Inner::Av1(v) => v.packetize(frame, self.max_payload, &mut payloads),
            Inner::Aac => packetize_aac(&frame.payload, self.max_payload, &mut payloads),
            Inner::Latm => packetize_latm(&frame.payload, self.max_payload, &mut payloads),
            Inner::Opus => {
                if frame.payload.len() > self.max_payload {
                    Err(RtpError::FrameTooLarge {
                        layer: "opus",
                        limit: self.max_payload,
                    })
                } else {
                    payloads.push(frame.payload.clone());
                    Ok(())
                }
            }
            Inner::G711 => {
                let ch = usize::from(self.params.channels.max(1));
                let chunk = self.max_payload / ch * ch;
                if chunk == 0 {
                    Err(RtpError::Invalid {
                        layer: "g711",
                        field: "mtu",
                        value: self.max_payload as u64,
                        offset: 0,
                    })
                } else {
                    let mut pos = 0;
                    while pos < frame.payload.len() {
                        let end = (pos + chunk).min(frame.payload.len());
                        payloads.push(frame.payload.slice(pos..end));
                        pos = end;
                    }
                    Ok(())
                }
            }
        };
        if result.is_ok() {
            let n = payloads.len();
            let ch = u32::from(self.params.channels.max(1));
            let mut samples = 0u32;
            for (i, p) in payloads.drain(..).enumerate() {
                let len = p.len() as u32;
                let mut pkt = RtpPacket::new(
                    self.params.payload_type,
                    self.sequence,
                    // G.711 pieces advance by their samples; other fragments share the timestamp.
                    ts.wrapping_add(samples),
                    self.ssrc,
                    p,
                );
                if matches!(self.inner, Inner::G711) {
                    samples = samples.wrapping_add(len / ch);
                }
                pkt.marker = i + 1 == n;
                self.sequence = self.sequence.wrapping_add(1);
                out.push(pkt);
            }
        }
        self.payloads = payloads;
        result
    }
}
