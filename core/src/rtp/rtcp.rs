//! RTCP (RFC 3550 section 6): compound packet parsing (SR, RR, SDES, BYE; other types kept
//! raw) and building sender and receiver reports with an SDES CNAME.

use bytes::{BufMut, Bytes, BytesMut};

use super::{be16, be32, RtpError};

/// RTCP packet type of a sender report.
pub const PT_SR: u8 = 200;
/// RTCP packet type of a receiver report.
pub const PT_RR: u8 = 201;
/// RTCP packet type of source descriptions.
pub const PT_SDES: u8 = 202;
/// RTCP packet type of a goodbye.
pub const PT_BYE: u8 = 203;
/// SDES item type of a canonical name.
pub const SDES_CNAME: u8 = 1;

/// One reception report block of an SR or RR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_sequence: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from the source.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 seconds.
    pub delay_since_last_sr: u32,
}

/// A sender report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderReport {
    /// The sender.
    pub ssrc: u32,
    /// NTP timestamp (seconds since 1900 in the high 32 bits, fraction in the low 32).
    pub ntp_timestamp: u64,
    /// The RTP timestamp matching `ntp_timestamp`.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packet_count: u32,
    /// Payload octets sent.
    pub octet_count: u32,
    /// Reception reports.
    pub reports: Vec<ReportBlock>,
}

/// A receiver report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverReport {
    /// The receiver.
    pub ssrc: u32,
    /// Reception reports.
    pub reports: Vec<ReportBlock>,
}

/// One SDES chunk: a source and its items `(type, value)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdesChunk {
    /// The source described.
    pub ssrc: u32,
    /// Items as `(type, text)`; [`SDES_CNAME`] is the canonical name.
    pub items: Vec<(u8, Bytes)>,
}

/// One packet of a compound RTCP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    /// Sender report.
    SenderReport(SenderReport),
    /// Receiver report.
    ReceiverReport(ReceiverReport),
    /// Source descriptions.
    SourceDescription(Vec<SdesChunk>),
    /// Goodbye: the sources leaving and an optional reason.
    Goodbye {
        /// Sources leaving.
        sources: Vec<u32>,
        /// Reason for leaving.
        reason: Option<Bytes>,
    },
    /// Any other packet type, kept raw (without the 4-byte header and padding).
    Other {
        /// Packet type.
        packet_type: u8,
        /// The 5-bit count / format field.
        count: u8,
        /// The body.
        body: Bytes,
    },
}

fn trunc(field: &'static str, offset: usize) -> RtpError {
    RtpError::Truncated {
        layer: "rtcp",
        field,
        offset,
    }
}

fn invalid(field: &'static str, value: u64, offset: usize) -> RtpError {
    RtpError::Invalid {
        layer: "rtcp",
        field,
        value,
        offset,
    }
}

fn parse_blocks(
    body: &[u8],
    at: usize,
    count: usize,
    base: usize,
) -> Result<Vec<ReportBlock>, RtpError> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let o = at + i * 24;
        let b = body
            .get(o..o + 24)
            .ok_or_else(|| trunc("report block", base + o))?;
        let lost = be32(b, 4) & 0x00FF_FFFF;
        // Sign-extend the 24-bit cumulative loss.
        let cumulative_lost = ((lost << 8) as i32) >> 8;
        out.push(ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: b.get(4).copied().unwrap_or_default(),
            cumulative_lost,
            highest_sequence: be32(b, 8),
            jitter: be32(b, 12),
            last_sr: be32(b, 16),
            delay_since_last_sr: be32(b, 20),
        });
    }
    Ok(out)
}

fn parse_sdes(body: &Bytes, count: usize, base: usize) -> Result<Vec<SdesChunk>, RtpError> {
    let mut chunks = Vec::with_capacity(count.min(31));
    let mut pos = 0;
    for _ in 0..count {
        if body.len() < pos + 4 {
            return Err(trunc("sdes chunk", base + pos));
        }
        let ssrc = be32(body, pos);
        pos += 4;
        let mut items = Vec::new();
        loop {
            let t = *body
                .get(pos)
                .ok_or_else(|| trunc("sdes item", base + pos))?;
            if t == 0 {
                // End of the item list; skip to the next 32-bit boundary.
                pos = (pos + 4) & !3;
                break;
            }
            let len = usize::from(
                *body
                    .get(pos + 1)
                    .ok_or_else(|| trunc("sdes item length", base + pos + 1))?,
            );
            let start = pos + 2;
            if body.len() < start + len {
                return Err(trunc("sdes item text", base + start));
            }
            items.push((t, body.slice(start..start + len)));
            pos = start + len;
        }
        chunks.push(SdesChunk { ssrc, items });
    }
    Ok(chunks)
}

/// Parses a compound RTCP packet (one datagram or interleaved frame). Every packet must have
/// version 2 and a length that fits; padding is only allowed on the last one.
pub fn parse_compound(data: &Bytes) -> Result<Vec<RtcpPacket>, RtpError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let head = data.get(pos..pos + 4).ok_or_else(|| trunc("header", pos))?;
        let b0 = head.first().copied().unwrap_or_default();
        if b0 >> 6 != 2 {
            return Err(invalid("version", u64::from(b0 >> 6), pos));
        }
        let padding = b0 & 0x20 != 0;
        let count = b0 & 0x1F;
        let packet_type = head.get(1).copied().unwrap_or_default();
        let len = (usize::from(be16(head, 2)) + 1) * 4;
        let end = pos + len;
        if end > data.len() {
            return Err(trunc("packet", pos));
        }
        let mut body_end = end;
        if padding {
            if end != data.len() {
                return Err(invalid("padding bit", 1, pos));
            }
            let pad = usize::from(data.get(end - 1).copied().unwrap_or_default());
            if pad == 0 || pad > len - 4 {
                return Err(invalid("padding length", pad as u64, end - 1));
            }
            body_end -= pad;
        }
        let body = data.slice(pos + 4..body_end);
        let base = pos + 4;
        let n = usize::from(count);
        let pkt = match packet_type {
            PT_SR => {
                if body.len() < 24 {
                    return Err(trunc("sender info", base));
                }
                RtcpPacket::SenderReport(SenderReport {
                    ssrc: be32(&body, 0),
                    ntp_timestamp: (u64::from(be32(&body, 4)) << 32) | u64::from(be32(&body, 8)),
                    rtp_timestamp: be32(&body, 12),
                    packet_count: be32(&body, 16),
                    octet_count: be32(&body, 20),
                    reports: parse_blocks(&body, 24, n, base)?,
                })
            }
            PT_RR => {
                if body.len() < 4 {
                    return Err(trunc("ssrc", base));
                }
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc: be32(&body, 0),
                    reports: parse_blocks(&body, 4, n, base)?,
                })
            }
            PT_SDES => RtcpPacket::SourceDescription(parse_sdes(&body, n, base)?),
            PT_BYE => {
                let ids = body
                    .get(..4 * n)
                    .ok_or_else(|| trunc("bye sources", base))?;
                let sources = ids.chunks_exact(4).map(|c| be32(c, 0)).collect();
                let reason = match body.get(4 * n) {
                    Some(&l) => {
                        let start = 4 * n + 1;
                        let end = start + usize::from(l);
                        if body.len() < end {
                            return Err(trunc("bye reason", base + start));
                        }
                        Some(body.slice(start..end))
                    }
                    None => None,
                };
                RtcpPacket::Goodbye { sources, reason }
            }
            _ => RtcpPacket::Other {
                packet_type,
                count,
                body,
            },
        };
        out.push(pkt);
        pos = end;
    }
    if out.is_empty() {
        return Err(trunc("header", 0));
    }
    Ok(out)
}

fn put_header(out: &mut BytesMut, count: usize, pt: u8, body_len: usize) {
    out.put_u8(0x80 | (count.min(31) as u8));
    out.put_u8(pt);
    out.put_u16((body_len / 4) as u16);
}

fn put_blocks(out: &mut BytesMut, blocks: &[ReportBlock]) {
    for b in blocks.iter().take(31) {
        out.put_u32(b.ssrc);
        out.put_u32((u32::from(b.fraction_lost) << 24) | (b.cumulative_lost as u32 & 0x00FF_FFFF));
        out.put_u32(b.highest_sequence);
        out.put_u32(b.jitter);
        out.put_u32(b.last_sr);
        out.put_u32(b.delay_since_last_sr);
    }
}

fn put_cname(out: &mut BytesMut, ssrc: u32, cname: &[u8]) {
    let cname = cname.get(..cname.len().min(255)).unwrap_or_default();
    // ssrc, type, length, text, at least one zero byte, padded to 32 bits.
    let chunk = (4 + 2 + cname.len() + 1).div_ceil(4) * 4;
    put_header(out, 1, PT_SDES, chunk);
    out.put_u32(ssrc);
    out.put_u8(SDES_CNAME);
    out.put_u8(cname.len() as u8);
    out.put_slice(cname);
    out.put_bytes(0, chunk - 6 - cname.len());
}

impl SenderReport {
    /// Writes this report (at most 31 blocks) followed by an SDES CNAME, as one compound packet.
    pub fn write_compound(&self, cname: &[u8], out: &mut BytesMut) {
        let blocks = self.reports.len().min(31);
        put_header(out, blocks, PT_SR, 24 + 24 * blocks);
        out.put_u32(self.ssrc);
        out.put_u64(self.ntp_timestamp);
        out.put_u32(self.rtp_timestamp);
        out.put_u32(self.packet_count);
        out.put_u32(self.octet_count);
        put_blocks(out, &self.reports);
        put_cname(out, self.ssrc, cname);
    }
}

impl ReceiverReport {
    /// Writes this report (at most 31 blocks) followed by an SDES CNAME, as one compound packet.
    pub fn write_compound(&self, cname: &[u8], out: &mut BytesMut) {
        let blocks = self.reports.len().min(31);
        put_header(out, blocks, PT_RR, 4 + 24 * blocks);
        out.put_u32(self.ssrc);
        put_blocks(out, &self.reports);
        put_cname(out, self.ssrc, cname);
    }
}

/// The NTP timestamp (RFC 5905 64-bit format) of a time in milliseconds since the Unix epoch.
pub fn ntp_from_unix_ms(unix_ms: u64) -> u64 {
    const UNIX_TO_NTP_SECS: u64 = 2_208_988_800;
    let secs = unix_ms / 1000 + UNIX_TO_NTP_SECS;
    let frac = ((unix_ms % 1000) << 32) / 1000;
    (secs << 32) | frac
}

/// Reception statistics of one source, for the report blocks of receiver reports
/// (RFC 3550 appendix A.3 and A.8).
#[derive(Clone, Debug, Default)]
pub struct ReceptionStats {
    ssrc: u32,
    base_seq: Option<u32>,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Jitter in timestamp units, times 16.
    jitter16: u64,
    last_transit: Option<i64>,
    last_sr: u32,
    last_sr_at_ms: Option<u64>,
}

impl ReceptionStats {
    /// Statistics for packets from `ssrc`.
    pub fn new(ssrc: u32) -> Self {
        ReceptionStats {
            ssrc,
            ..Default::default()
        }
    }

    /// Records a packet: its sequence number and RTP timestamp, and its arrival time in units
    /// of the track's clock (the caller converts its `now`).
    pub fn on_packet(&mut self, sequence: u16, rtp_timestamp: u32, arrival_ticks: i64) {
        self.received = self.received.wrapping_add(1);
        match self.base_seq {
            None => {
                self.base_seq = Some(u32::from(sequence));
                self.max_seq = sequence;
            }
            Some(_) => {
                let delta = sequence.wrapping_sub(self.max_seq);
                if delta != 0 && delta < 0x8000 {
                    if sequence < self.max_seq {
                        self.cycles = self.cycles.wrapping_add(1 << 16);
                    }
                    self.max_seq = sequence;
                }
            }
        }
        let transit = arrival_ticks.wrapping_sub(i64::from(rtp_timestamp));
        if let Some(last) = self.last_transit {
            let d = transit
                .wrapping_sub(last)
                .unsigned_abs()
                .min(u64::from(u32::MAX));
            // J += (|D| - J) / 16, kept scaled by 16.
            self.jitter16 = (self.jitter16 + d).saturating_sub(self.jitter16.div_ceil(16));
        }
        self.last_transit = Some(transit);
    }

    /// Records a sender report from the source, received at `now_ms`.
    pub fn on_sender_report(&mut self, sr: &SenderReport, now_ms: u64) {
        self.last_sr = (sr.ntp_timestamp >> 16) as u32;
        self.last_sr_at_ms = Some(now_ms);
    }

    /// A report block for now, and the start of a new reporting interval.
    pub fn report_block(&mut self, now_ms: u64) -> ReportBlock {
        let base = self.base_seq.unwrap_or_default();
        let extended = self.cycles.wrapping_add(u32::from(self.max_seq));
        let expected = extended.wrapping_sub(base).wrapping_add(1);
        let lost = i64::from(expected) - i64::from(self.received);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let delay = self.last_sr_at_ms.map_or(0, |at| {
            (now_ms.saturating_sub(at).saturating_mul(65536) / 1000).min(u64::from(u32::MAX)) as u32
        });
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_sequence: extended,
            jitter: (self.jitter16 / 16).min(u64::from(u32::MAX)) as u32,
            last_sr: self.last_sr,
            delay_since_last_sr: delay,
        }
    }
}
