//! The TS demuxer: PAT and PMT tracking, PES reassembly with a size bound, continuity checks.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::{crc32_mpeg2, TsError, PAT_PID, SYNC_BYTE, TS_PACKET_LEN};

/// Most elementary streams tracked from one PMT.
const MAX_STREAMS: usize = 16;

/// An elementary stream announced by the PMT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsStreamInfo {
    /// Its PID.
    pub pid: u16,
    /// Its `stream_type` (see [`super::stream_type`]).
    pub stream_type: u8,
}

/// One reassembled PES packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pes {
    /// PID it came on.
    pub pid: u16,
    /// `stream_type` of that PID in the PMT.
    pub stream_type: u8,
    /// Presentation timestamp (90 kHz, 33 bits).
    pub pts: Option<u64>,
    /// Decode timestamp (90 kHz); `None` when equal to the pts.
    pub dts: Option<u64>,
    /// The adaptation field of its first packet set `random_access_indicator`.
    pub random_access: bool,
    /// The elementary stream bytes (Annex B video, ADTS AAC, ...).
    pub data: Bytes,
}

#[derive(Debug)]
struct PesBuilder {
    info: TsStreamInfo,
    buf: BytesMut,
    started: bool,
    random_access: bool,
    /// Expected total length from `PES_packet_length` (0 = unbounded).
    expected: usize,
    last_cc: Option<u8>,
    start_offset: u64,
}

/// A bounded MPEG-TS demuxer.
///
/// [`push`](TsDemuxer::push) any amount of bytes (whole packets are processed at once, a partial
/// packet waits for the rest), then drain [`poll_pes`](TsDemuxer::poll_pes) until `None`.
/// Only single-program streams are followed (the first program of the PAT); PSI sections must
/// fit in one packet, as every muxer in practice writes them. A PES grows at most to the limit
/// given to [`TsDemuxer::new`].
#[derive(Debug)]
pub struct TsDemuxer {
    partial: BytesMut,
    offset: u64,
    max_pes: usize,
    pmt_pid: Option<u16>,
    pmt_version: Option<u8>,
    pids: Vec<PesBuilder>,
    out: VecDeque<Pes>,
    cc_errors: u64,
    pcrs: u64,
}

impl TsDemuxer {
    /// A demuxer that refuses PES packets longer than `max_pes` bytes.
    pub fn new(max_pes: usize) -> Self {
        TsDemuxer {
            partial: BytesMut::new(),
            offset: 0,
            max_pes,
            pmt_pid: None,
            pmt_version: None,
            pids: Vec::new(),
            out: VecDeque::new(),
            cc_errors: 0,
            pcrs: 0,
        }
    }

    /// The elementary streams of the current PMT.
    pub fn streams(&self) -> Vec<TsStreamInfo> {
        self.pids.iter().map(|p| p.info).collect()
    }

    /// Continuity counter jumps seen on elementary stream PIDs (without a discontinuity flag).
    pub fn continuity_errors(&self) -> u64 {
        self.cc_errors
    }

    /// PCR values seen.
    pub fn pcr_count(&self) -> u64 {
        self.pcrs
    }

    /// Feeds bytes. After an error the demuxer must not be fed again.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), TsError> {
        if !self.partial.is_empty() {
            let need = TS_PACKET_LEN - self.partial.len();
            let take = need.min(data.len());
            self.partial
                .extend_from_slice(data.get(..take).unwrap_or_default());
            data = data.get(take..).unwrap_or_default();
            if self.partial.len() < TS_PACKET_LEN {
                return Ok(());
            }
            let packet = std::mem::take(&mut self.partial);
            self.packet(&packet)?;
        }
        let mut chunks = data.chunks_exact(TS_PACKET_LEN);
        for packet in &mut chunks {
            self.packet(packet)?;
        }
        self.partial.extend_from_slice(chunks.remainder());
        Ok(())
    }

    /// The next complete PES packet.
    pub fn poll_pes(&mut self) -> Option<Pes> {
        self.out.pop_front()
    }

    /// End of input: completes the PES packets in progress (drain [`poll_pes`](Self::poll_pes)).
    pub fn flush(&mut self) -> Result<(), TsError> {
        for i in 0..self.pids.len() {
            self.finish(i)?;
        }
        Ok(())
    }

    fn invalid(&self, field: &'static str) -> TsError {
        TsError::Invalid {
            field,
            offset: self.offset,
        }
    }

    fn packet(&mut self, p: &[u8]) -> Result<(), TsError> {
        let result = self.packet_inner(p);
        self.offset += TS_PACKET_LEN as u64;
        result
    }

    fn packet_inner(&mut self, p: &[u8]) -> Result<(), TsError> {
        let [sync, b1, b2, b3] =
            p.get(..4)
                .and_then(|h| <[u8; 4]>::try_from(h).ok())
                .ok_or(TsError::Sync {
                    offset: self.offset,
                })?;
        if sync != SYNC_BYTE {
            return Err(TsError::Sync {
                offset: self.offset,
            });
        }
        if b1 & 0x80 != 0 {
            // transport_error_indicator: the packet is known to be damaged.
            return Ok(());
        }
        let pusi = b1 & 0x40 != 0;
        let pid = (u16::from(b1 & 0x1F) << 8) | u16::from(b2);
        let afc = (b3 >> 4) & 0x03;
        let cc = b3 & 0x0F;
        let mut pos = 4usize;
        let mut random_access = false;
        let mut discontinuity = false;
        if afc & 0x02 != 0 {
            let len = usize::from(*p.get(4).ok_or_else(|| self.invalid("adaptation length"))?);
            if len > TS_PACKET_LEN - 5 {
                return Err(self.invalid("adaptation_field_length"));
            }
            if len > 0 {
                let flags = p.get(5).copied().unwrap_or(0);
                discontinuity = flags & 0x80 != 0;
                random_access = flags & 0x40 != 0;
                if flags & 0x10 != 0 {
                    if len < 7 {
                        return Err(self.invalid("PCR in a short adaptation field"));
                    }
                    self.pcrs += 1;
                }
            }
            pos = 5 + len;
        }
        if afc & 0x01 == 0 {
            return Ok(());
        }
        let payload = p.get(pos..).unwrap_or_default();
        if pid == PAT_PID {
            if pusi {
                self.parse_pat(payload)?;
            }
            return Ok(());
        }
        if Some(pid) == self.pmt_pid {
            if pusi {
                self.parse_pmt(payload)?;
            }
            return Ok(());
        }
        let Some(i) = self.pids.iter().position(|b| b.info.pid == pid) else {
            return Ok(());
        };
        let offset = self.offset;
        let b = self.pids.get_mut(i).ok_or(TsError::Invalid {
            field: "pid",
            offset,
        })?;
        if let Some(last) = b.last_cc {
            if cc == last {
                // A duplicate packet: ignore it.
                return Ok(());
            }
            if cc != (last + 1) & 0x0F && !discontinuity {
                self.cc_errors += 1;
            }
        }
        b.last_cc = Some(cc);
        if pusi {
            self.finish(i)?;
            let b = self.pids.get_mut(i).ok_or(TsError::Invalid {
                field: "pid",
                offset,
            })?;
            b.started = true;
            b.random_access = random_access;
            b.start_offset = offset;
            b.expected = match payload.get(4..6) {
                Some(&[h, l]) if u16::from_be_bytes([h, l]) > 0 => {
                    6 + usize::from(u16::from_be_bytes([h, l]))
                }
                _ => 0,
            };
        }
        let max = self.max_pes;
        let b = self.pids.get_mut(i).ok_or(TsError::Invalid {
            field: "pid",
            offset,
        })?;
        if !b.started {
            return Ok(());
        }
        if b.buf.len().saturating_add(payload.len()) > max {
            return Err(TsError::PesTooLarge { pid, limit: max });
        }
        b.buf.extend_from_slice(payload);
        if b.expected > 0 && b.buf.len() >= b.expected {
            self.finish(i)?;
        }
        Ok(())
    }

    /// The section starting after the pointer field of a PSI payload, checked and CRC-verified;
    /// returns its bytes without the CRC and after the 3-byte header.
    fn section<'a>(&self, payload: &'a [u8], table_id: u8) -> Result<&'a [u8], TsError> {
        let pointer = usize::from(
            *payload
                .first()
                .ok_or_else(|| self.invalid("pointer_field"))?,
        );
        let s = payload
            .get(1 + pointer..)
            .ok_or_else(|| self.invalid("pointer_field"))?;
        let (&id, rest) = s.split_first().ok_or_else(|| self.invalid("table_id"))?;
        if id != table_id {
            return Err(self.invalid("table_id"));
        }
        let len = match rest.get(..2) {
            Some(&[h, l]) => (usize::from(h & 0x0F) << 8) | usize::from(l),
            _ => return Err(self.invalid("section_length")),
        };
        if len < 9 {
            return Err(self.invalid("section_length"));
        }
        let whole = s
            .get(..3 + len)
            .ok_or_else(|| self.invalid("section_length (sections over one packet)"))?;
        let (body, crc) = whole.split_at(whole.len() - 4);
        if crc32_mpeg2(body).to_be_bytes() != crc {
            return Err(self.invalid("section CRC_32"));
        }
        Ok(body.get(3..).unwrap_or_default())
    }

    fn parse_pat(&mut self, payload: &[u8]) -> Result<(), TsError> {
        let s = self.section(payload, 0x00)?;
        let programs = s.get(5..).unwrap_or_default();
        for entry in programs.chunks_exact(4) {
            if let &[n0, n1, p0, p1] = entry {
                if u16::from_be_bytes([n0, n1]) != 0 {
                    self.pmt_pid = Some((u16::from(p0 & 0x1F) << 8) | u16::from(p1));
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn parse_pmt(&mut self, payload: &[u8]) -> Result<(), TsError> {
        let s = self.section(payload, 0x02)?;
        let version = s.get(2).map(|v| (v >> 1) & 0x1F);
        if version.is_some() && version == self.pmt_version {
            return Ok(());
        }
        let info_len = match s.get(7..9) {
            Some(&[h, l]) => (usize::from(h & 0x0F) << 8) | usize::from(l),
            _ => return Err(self.invalid("program_info_length")),
        };
        let mut es = s
            .get(9 + info_len..)
            .ok_or_else(|| self.invalid("program_info_length"))?;
        let mut streams = Vec::new();
        while es.remaining() >= 5 {
            let st = es.get_u8();
            let pid = es.get_u16() & 0x1FFF;
            let len = usize::from(es.get_u16() & 0x0FFF);
            if len > es.remaining() {
                return Err(self.invalid("ES_info_length"));
            }
            es.advance(len);
            if streams.len() >= MAX_STREAMS {
                return Err(self.invalid("stream count"));
            }
            streams.push(TsStreamInfo {
                pid,
                stream_type: st,
            });
        }
        self.flush()?;
        self.pmt_version = version;
        self.pids = streams
            .into_iter()
            .map(|info| PesBuilder {
                info,
                buf: BytesMut::new(),
                started: false,
                random_access: false,
                expected: 0,
                last_cc: None,
                start_offset: 0,
            })
            .collect();
        Ok(())
    }

    /// Completes the PES in progress on stream `i`, if any.
    fn finish(&mut self, i: usize) -> Result<(), TsError> {
        let Some(b) = self.pids.get_mut(i) else {
            return Ok(());
        };
        if !b.started || b.buf.is_empty() {
            b.buf.clear();
            return Ok(());
        }
        b.started = false;
        let mut data = b.buf.split().freeze();
        let (info, random_access, offset) = (b.info, b.random_access, b.start_offset);
        let bad = |field| TsError::Invalid { field, offset };
        if b.expected > 0 {
            data.truncate(b.expected);
        }
        let head = data.get(..9).ok_or(bad("PES header"))?;
        if head.get(..3) != Some(&[0, 0, 1][..]) {
            return Err(bad("packet_start_code_prefix"));
        }
        let flags = head.get(7).copied().unwrap_or(0);
        let header_len = usize::from(head.get(8).copied().unwrap_or(0));
        let fields = data
            .get(9..9 + header_len)
            .ok_or(bad("PES_header_data_length"))?;
        let read_ts = |at: usize| -> Result<u64, TsError> {
            match fields.get(at..at + 5) {
                Some(&[a, b, c, d, e]) => Ok((u64::from(a >> 1) & 0x07) << 30
                    | u64::from(b) << 22
                    | u64::from(c >> 1) << 15
                    | u64::from(d) << 7
                    | u64::from(e >> 1)),
                _ => Err(bad("PTS_DTS")),
            }
        };
        let (pts, dts) = match flags >> 6 {
            2 => (Some(read_ts(0)?), None),
            3 => (Some(read_ts(0)?), Some(read_ts(5)?)),
            _ => (None, None),
        };
        self.out.push_back(Pes {
            pid: info.pid,
            stream_type: info.stream_type,
            pts,
            dts,
            random_access,
            data: data.slice(9 + header_len..),
        });
        Ok(())
    }
}
