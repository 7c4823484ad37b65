//! H.264 (RFC 6184, non-interleaved mode) and H.265 (RFC 7798, no DONL) payload formats: single
//! NAL unit packets, aggregation packets (STAP-A / AP) and fragmentation units (FU-A / FU).

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::depacketize::UnitDepacketizer;
use super::timing::{ticks_to_ms, DtsEstimator};
use super::{be16, RtpError};
use crate::codec::h264::AvcConfig;
use crate::codec::h265::{self, HevcConfig};
use crate::codec::split_avcc;
use crate::media::{Codec, Frame, FrameKind};

/// Which NAL unit syntax a payload uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NalFormat {
    H264,
    H265,
}

/// What a NAL unit is, as far as packetization cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NalRole {
    Vps,
    Sps,
    Pps,
    Key,
    Other,
}

impl NalFormat {
    fn layer(self) -> &'static str {
        match self {
            NalFormat::H264 => "h264",
            NalFormat::H265 => "h265",
        }
    }

    fn codec(self) -> Codec {
        match self {
            NalFormat::H264 => Codec::H264,
            NalFormat::H265 => Codec::H265,
        }
    }

    /// Bytes of NAL unit header (and of the payload header of aggregation/fragmentation units).
    pub(crate) fn header_len(self) -> usize {
        match self {
            NalFormat::H264 => 1,
            NalFormat::H265 => 2,
        }
    }

    fn nal_type(self, first: u8) -> u8 {
        match self {
            NalFormat::H264 => first & 0x1F,
            NalFormat::H265 => (first >> 1) & 0x3F,
        }
    }

    fn aggregation_type(self) -> u8 {
        match self {
            NalFormat::H264 => 24,
            NalFormat::H265 => 48,
        }
    }

    fn fragment_type(self) -> u8 {
        match self {
            NalFormat::H264 => 28,
            NalFormat::H265 => 49,
        }
    }

    /// Largest type of a NAL unit sent as is.
    fn max_single_type(self) -> u8 {
        match self {
            NalFormat::H264 => 23,
            NalFormat::H265 => 47,
        }
    }

    fn role(self, nal: &[u8]) -> NalRole {
        let Some(&first) = nal.first() else {
            return NalRole::Other;
        };
        let t = self.nal_type(first);
        match (self, t) {
            (NalFormat::H264, 7) | (NalFormat::H265, 33) => NalRole::Sps,
            (NalFormat::H264, 8) | (NalFormat::H265, 34) => NalRole::Pps,
            (NalFormat::H265, 32) => NalRole::Vps,
            (NalFormat::H264, 5) => NalRole::Key,
            (NalFormat::H265, t) if h265::is_irap(t) => NalRole::Key,
            _ => NalRole::Other,
        }
    }

    /// Writes the header of an aggregation or fragmentation payload derived from `nal`'s header
    /// with the type replaced by `t`.
    fn put_header_with_type(self, out: &mut BytesMut, nal: &[u8], t: u8) {
        let h0 = nal.first().copied().unwrap_or_default();
        match self {
            NalFormat::H264 => out.put_u8((h0 & 0xE0) | t),
            NalFormat::H265 => {
                out.put_u8((h0 & 0x81) | (t << 1));
                out.put_u8(nal.get(1).copied().unwrap_or(1));
            }
        }
    }
}

/// Parameter sets of a stream, each list in the order seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ParamSets {
    pub(crate) vps: Vec<Bytes>,
    pub(crate) sps: Vec<Bytes>,
    pub(crate) pps: Vec<Bytes>,
}

impl ParamSets {
    fn complete(&self, fmt: NalFormat) -> bool {
        !self.sps.is_empty()
            && !self.pps.is_empty()
            && (fmt == NalFormat::H264 || !self.vps.is_empty())
    }

    fn record(&self, fmt: NalFormat) -> Result<Bytes, RtpError> {
        Ok(match fmt {
            NalFormat::H264 => {
                AvcConfig::from_parameter_sets(self.sps.clone(), self.pps.clone())?.to_record()
            }
            NalFormat::H265 => HevcConfig::from_parameter_sets(
                self.vps.clone(),
                self.sps.clone(),
                self.pps.clone(),
            )?
            .to_record(),
        })
    }

    /// Parameter sets of a configuration record (a Config frame) and its NAL length size.
    pub(crate) fn from_record(fmt: NalFormat, record: &[u8]) -> Result<(Self, u8), RtpError> {
        Ok(match fmt {
            NalFormat::H264 => {
                let c = AvcConfig::parse(record)?;
                (
                    ParamSets {
                        vps: Vec::new(),
                        sps: c.sps,
                        pps: c.pps,
                    },
                    c.nalu_length_size,
                )
            }
            NalFormat::H265 => {
                let c = HevcConfig::parse(record)?;
                (
                    ParamSets {
                        vps: c.vps,
                        sps: c.sps,
                        pps: c.pps,
                    },
                    c.nalu_length_size,
                )
            }
        })
    }

    fn all(&self) -> impl Iterator<Item = &Bytes> {
        self.vps.iter().chain(&self.sps).chain(&self.pps)
    }
}

/// Rebuilds access units from H.264 / H.265 payloads given in sequence order.
#[derive(Debug)]
pub(crate) struct VideoDepacketizer {
    fmt: NalFormat,
    clock_rate: u32,
    max_frame_bytes: usize,
    params: ParamSets,
    /// Parameter sets changed since the last Config frame.
    params_dirty: bool,
    /// NAL units of the access unit being collected (parameter sets excluded).
    au: Vec<Bytes>,
    au_bytes: usize,
    /// Parameter sets seen in the access unit being collected.
    au_params: ParamSets,
    /// Extended RTP timestamp of the access unit being collected.
    au_ts: Option<i64>,
    /// A packet of this access unit was lost or bad: drop it when it ends.
    au_bad: bool,
    fu: Option<BytesMut>,
    dts: DtsEstimator,
}

impl VideoDepacketizer {
    pub(crate) fn new(
        fmt: NalFormat,
        clock_rate: u32,
        params: ParamSets,
        max_frame_bytes: usize,
    ) -> Self {
        // Baseline H.264 has no B-frames; otherwise assume up to 2 frames of reordering.
        let reorder = match (fmt, params.sps.first().and_then(|s| s.get(1))) {
            (NalFormat::H264, Some(66)) => 0,
            _ => 2,
        };
        VideoDepacketizer {
            fmt,
            clock_rate,
            max_frame_bytes,
            params_dirty: params.complete(fmt),
            params,
            au: Vec::new(),
            au_bytes: 0,
            au_params: ParamSets::default(),
            au_ts: None,
            au_bad: false,
            fu: None,
            dts: DtsEstimator::new(reorder),
        }
    }

    fn parse_payload(&mut self, p: &Bytes) -> Result<(), RtpError> {
        let layer = self.fmt.layer();
        let hl = self.fmt.header_len();
        if p.len() < hl {
            return Err(RtpError::Truncated {
                layer,
                field: "payload header",
                offset: 0,
            });
        }
        let first = p.first().copied().unwrap_or_default();
        if first & 0x80 != 0 {
            return Err(RtpError::Invalid {
                layer,
                field: "forbidden_zero_bit",
                value: 1,
                offset: 0,
            });
        }
        let t = self.fmt.nal_type(first);
        if t <= self.fmt.max_single_type() && (self.fmt == NalFormat::H265 || t != 0) {
            self.fu = None;
            return self.add_nal(p.clone());
        }
        if t == self.fmt.aggregation_type() {
            self.fu = None;
            let mut pos = hl;
            while pos < p.len() {
                let size = usize::from(be16(p, pos));
                if p.len() < pos + 2 {
                    return Err(RtpError::Truncated {
                        layer,
                        field: "aggregation unit size",
                        offset: pos,
                    });
                }
                let start = pos + 2;
                if size < hl || p.len() - start < size {
                    return Err(RtpError::Invalid {
                        layer,
                        field: "aggregation unit size",
                        value: size as u64,
                        offset: pos,
                    });
                }
                self.add_nal(p.slice(start..start + size))?;
                pos = start + size;
            }
            return Ok(());
        }
        if t == self.fmt.fragment_type() {
            let fu_header = p.get(hl).copied().ok_or(RtpError::Truncated {
                layer,
                field: "fragmentation unit header",
                offset: hl,
            })?;
            let start = fu_header & 0x80 != 0;
            let end = fu_header & 0x40 != 0;
            let data = p.get(hl + 1..).unwrap_or_default();
            if start {
                let mut nal = BytesMut::with_capacity(hl + data.len() * 4);
                let inner = match self.fmt {
                    NalFormat::H264 => fu_header & 0x1F,
                    NalFormat::H265 => fu_header & 0x3F,
                };
                match self.fmt {
                    NalFormat::H264 => nal.put_u8((first & 0xE0) | inner),
                    NalFormat::H265 => {
                        nal.put_u8((first & 0x81) | (inner << 1));
                        nal.put_u8(p.get(1).copied().unwrap_or_default());
                    }
                }
                self.fu = Some(nal);
            }
            let Some(buf) = self.fu.as_mut() else {
                // A middle or end fragment without its start: the start was lost.
                self.au_bad = true;
                return Ok(());
            };
            if self.au_bytes.saturating_add(buf.len() + data.len()) > self.max_frame_bytes {
                self.fu = None;
                return Err(RtpError::FrameTooLarge {
                    layer,
                    limit: self.max_frame_bytes,
                });
            }
            buf.extend_from_slice(data);
            if end {
                if let Some(nal) = self.fu.take() {
                    self.add_nal(nal.freeze())?;
                }
            }
            return Ok(());
        }
        Err(RtpError::Invalid {
            layer,
            field: "payload NAL unit type",
            value: u64::from(t),
            offset: 0,
        })
    }

    fn add_nal(&mut self, nal: Bytes) -> Result<(), RtpError> {
        match self.fmt.role(&nal) {
            NalRole::Vps => self.au_params.vps.push(nal),
            NalRole::Sps => self.au_params.sps.push(nal),
            NalRole::Pps => self.au_params.pps.push(nal),
            _ => {
                let size = self.au_bytes.saturating_add(4 + nal.len());
                if size > self.max_frame_bytes {
                    return Err(RtpError::FrameTooLarge {
                        layer: self.fmt.layer(),
                        limit: self.max_frame_bytes,
                    });
                }
                self.au_bytes = size;
                self.au.push(nal);
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut VecDeque<Frame>) -> Result<(), RtpError> {
        let au = std::mem::take(&mut self.au);
        let au_params = std::mem::take(&mut self.au_params);
        let bytes = std::mem::take(&mut self.au_bytes);
        let bad = std::mem::take(&mut self.au_bad);
        self.fu = None;
        let Some(ts) = self.au_ts.take() else {
            return Ok(());
        };
        if bad {
            return Ok(());
        }
        for (have, new) in [
            (&mut self.params.vps, au_params.vps),
            (&mut self.params.sps, au_params.sps),
            (&mut self.params.pps, au_params.pps),
        ] {
            if !new.is_empty() && *have != new {
                *have = new;
                self.params_dirty = true;
            }
        }
        if au.is_empty() {
            return Ok(());
        }
        let pts = ticks_to_ms(ts, self.clock_rate);
        let dts = self.dts.next(pts);
        let mut result = Ok(());
        if self.params_dirty && self.params.complete(self.fmt) {
            self.params_dirty = false;
            match self.params.record(self.fmt) {
                Ok(record) => out.push_back(Frame {
                    codec: self.fmt.codec(),
                    kind: FrameKind::Config,
                    dts,
                    pts: dts,
                    key: true,
                    payload: record,
                }),
                Err(e) => result = Err(e),
            }
        }
        let mut payload = BytesMut::with_capacity(bytes);
        let mut key = false;
        for nal in &au {
            key |= self.fmt.role(nal) == NalRole::Key;
            payload.put_u32(nal.len() as u32);
            payload.extend_from_slice(nal);
        }
        out.push_back(Frame {
            codec: self.fmt.codec(),
            kind: FrameKind::Coded,
            dts,
            pts,
            key,
            payload: payload.freeze(),
        });
        result
    }
}

impl UnitDepacketizer for VideoDepacketizer {
    fn unit_ts(&mut self) -> &mut Option<i64> {
        &mut self.au_ts
    }
    fn read_payload(&mut self, payload: &Bytes) -> Result<(), RtpError> {
        self.parse_payload(payload)
    }
    fn lost(&mut self) {
        self.fu = None;
        self.au_bad = true;
    }
    fn end_unit(&mut self, out: &mut VecDeque<Frame>) -> Result<(), RtpError> {
        self.finish(out)
    }
}

/// Cuts access units into H.264 / H.265 payloads of at most `max_payload` bytes.
#[derive(Debug)]
pub(crate) struct VideoPacketizer {
    fmt: NalFormat,
    params: ParamSets,
    length_size: u8,
}

impl VideoPacketizer {
    pub(crate) fn new(fmt: NalFormat, params: ParamSets) -> Self {
        VideoPacketizer {
            fmt,
            params,
            length_size: 4,
        }
    }

    /// Takes a configuration record (a Config frame).
    pub(crate) fn set_config(&mut self, record: &[u8]) -> Result<(), RtpError> {
        let (params, length_size) = ParamSets::from_record(self.fmt, record)?;
        self.params = params;
        self.length_size = length_size;
        Ok(())
    }

    /// The payloads of one access unit, in order; parameter sets are sent in front of each key
    /// frame that does not carry its own.
    pub(crate) fn packetize(
        &self,
        frame: &Frame,
        max_payload: usize,
        out: &mut Vec<Bytes>,
    ) -> Result<(), RtpError> {
        let layer = self.fmt.layer();
        let hl = self.fmt.header_len();
        // Room for an FU header and at least one byte of data.
        if max_payload < hl + 2 {
            return Err(RtpError::Invalid {
                layer,
                field: "mtu",
                value: max_payload as u64,
                offset: 0,
            });
        }
        let mut nals = Vec::new();
        for nal in split_avcc(&frame.payload, self.length_size) {
            let nal = nal.map_err(RtpError::Codec)?;
            if nal.len() >= hl {
                nals.push(nal);
            }
        }
        let carries_params = nals
            .iter()
            .any(|n| self.fmt.role(n) == NalRole::Sps || self.fmt.role(n) == NalRole::Pps);
        let key = nals.iter().any(|n| self.fmt.role(n) == NalRole::Key);
        if key && !carries_params {
            let ps: Vec<Bytes> = self.params.all().cloned().collect();
            nals.splice(0..0, ps);
        }

        let mut i = 0;
        while let Some(nal) = nals.get(i) {
            if nal.len() > max_payload {
                self.fragment(nal, max_payload, out);
                i += 1;
                continue;
            }
            // Aggregate as many following NAL units as fit.
            let mut size = hl + 2 + nal.len();
            let mut j = i + 1;
            while let Some(next) = nals.get(j) {
                if size + 2 + next.len() > max_payload {
                    break;
                }
                size += 2 + next.len();
                j += 1;
            }
            if j == i + 1 {
                out.push(nal.clone());
            } else {
                let mut p = BytesMut::with_capacity(size);
                self.fmt
                    .put_header_with_type(&mut p, nal, self.fmt.aggregation_type());
                if self.fmt == NalFormat::H264 {
                    // NRI of an aggregation packet: the highest of its units.
                    let nri = nals
                        .get(i..j)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|n| n.first())
                        .map(|b| b & 0x60)
                        .max()
                        .unwrap_or_default();
                    if let Some(b) = p.first_mut() {
                        *b = (*b & 0x9F) | nri;
                    }
                }
                for n in nals.get(i..j).unwrap_or_default() {
                    p.put_u16(n.len() as u16);
                    p.extend_from_slice(n);
                }
                out.push(p.freeze());
            }
            i = j;
        }
        Ok(())
    }

    fn fragment(&self, nal: &Bytes, max_payload: usize, out: &mut Vec<Bytes>) {
        let hl = self.fmt.header_len();
        let t = nal.first().map_or(0, |&b| self.fmt.nal_type(b));
        let data = nal.slice(hl.min(nal.len())..);
        let chunk = max_payload - hl - 1;
        let count = data.len().div_ceil(chunk);
        for (k, piece) in data.chunks(chunk).enumerate() {
            let mut p = BytesMut::with_capacity(hl + 1 + piece.len());
            self.fmt
                .put_header_with_type(&mut p, nal, self.fmt.fragment_type());
            let s = if k == 0 { 0x80 } else { 0 };
            let e = if k + 1 == count { 0x40 } else { 0 };
            p.put_u8(s | e | t);
            p.extend_from_slice(piece);
            out.push(p.freeze());
        }
    }
}
