//! Audio payload formats: MPEG-4 AAC (RFC 3640, AU headers with `sizeLength` /
//! `indexLength` / `indexDeltaLength`, fragmented access units), MPEG-4 AAC in LATM (RFC 3016 /
//! RFC 6416 `MP4A-LATM`, configuration out of band), G.711 (RFC 3551) and Opus (RFC 7587).

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::timing::ticks_to_ms;
use super::RtpError;
use crate::codec::bits::BitReader;
use crate::codec::latm::{audio_mux_element, split_audio_mux_element};
use crate::media::{Codec, Frame, FrameKind};

/// Samples per AAC access unit (AAC LC and the core of HE-AAC at the RTP clock rate).
pub(crate) const AAC_SAMPLES_PER_AU: i64 = 1024;
/// Largest number of AU headers accepted in one packet.
const MAX_AU_HEADERS: usize = 512;

/// AU header field sizes in bits (RFC 3640 section 3.2.1).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AuHeaderLayout {
    pub(crate) size_length: u8,
    pub(crate) index_length: u8,
    pub(crate) index_delta_length: u8,
}

/// Rebuilds AAC access units from RFC 3640 payloads.
#[derive(Debug)]
pub(crate) struct AacDepacketizer {
    layout: AuHeaderLayout,
    clock_rate: u32,
    max_frame_bytes: usize,
    config: Option<Bytes>,
    /// A fragmented access unit: its timestamp, full size and the bytes so far.
    frag: Option<(i64, usize, BytesMut)>,
}

fn trunc(field: &'static str, offset: usize) -> RtpError {
    RtpError::Truncated {
        layer: "aac",
        field,
        offset,
    }
}

impl AacDepacketizer {
    pub(crate) fn new(
        layout: AuHeaderLayout,
        clock_rate: u32,
        config: Bytes,
        max_frame_bytes: usize,
    ) -> Self {
        AacDepacketizer {
            layout,
            clock_rate,
            max_frame_bytes,
            config: Some(config),
            frag: None,
        }
    }

    pub(crate) fn lost(&mut self) {
        self.frag = None;
    }

    fn emit(&mut self, ts: i64, payload: Bytes, out: &mut VecDeque<Frame>) {
        emit_aac(
            &mut self.config,
            ticks_to_ms(ts, self.clock_rate),
            payload,
            out,
        );
    }

    pub(crate) fn push(
        &mut self,
        p: &Bytes,
        ts: i64,
        marker: bool,
        out: &mut VecDeque<Frame>,
    ) -> Result<(), RtpError> {
        let l = self.layout;
        let header_bits = usize::from(crate::rtp::be16(p, 0));
        if p.len() < 2 {
            return Err(trunc("AU-headers-length", 0));
        }
        let header_bytes = header_bits.div_ceil(8);
        let headers = p
            .get(2..2 + header_bytes)
            .ok_or_else(|| trunc("AU headers", 2))?;
        let mut r = BitReader::new(headers, "aac");
        let mut sizes = Vec::new();
        while r.position() < header_bits {
            if sizes.len() >= MAX_AU_HEADERS {
                return Err(RtpError::Invalid {
                    layer: "aac",
                    field: "AU header count",
                    value: sizes.len() as u64,
                    offset: 2,
                });
            }
            let size = r.read_bits(u32::from(l.size_length), "AU-size")?;
            let idx_len = if sizes.is_empty() {
                l.index_length
            } else {
                l.index_delta_length
            };
            r.read_bits(u32::from(idx_len), "AU-Index")?;
            sizes.push(size as usize);
            if l.size_length == 0 && idx_len == 0 {
                break;
            }
        }
        let mut pos = 2 + header_bytes;
        let data = p.get(pos..).unwrap_or_default();

        // A fragment of an access unit larger than the packet (RFC 3640 section 3.2.3).
        if let [size] = sizes[..] {
            if size > data.len() || self.frag.is_some() {
                if size > self.max_frame_bytes {
                    self.frag = None;
                    return Err(RtpError::FrameTooLarge {
                        layer: "aac",
                        limit: self.max_frame_bytes,
                    });
                }
                let frag = match self.frag.take() {
                    Some((t, s, buf)) if t == ts && s == size => Some((t, s, buf)),
                    // Grow with the data rather than trusting the declared size up front.
                    _ => Some((ts, size, BytesMut::with_capacity(size.min(64 * 1024)))),
                };
                let Some((t, s, mut buf)) = frag else {
                    return Ok(());
                };
                if buf.len() + data.len() > s {
                    return Err(RtpError::Invalid {
                        layer: "aac",
                        field: "fragmented AU-size",
                        value: s as u64,
                        offset: 2,
                    });
                }
                buf.extend_from_slice(data);
                if buf.len() == s {
                    self.emit(t, buf.freeze(), out);
                } else if marker {
                    return Err(trunc("fragmented access unit", pos));
                } else {
                    self.frag = Some((t, s, buf));
                }
                return Ok(());
            }
        }
        self.frag = None;
        let mut t = ts;
        for size in sizes {
            let end = pos
                .checked_add(size)
                .filter(|&e| e <= p.len())
                .ok_or_else(|| trunc("access unit", pos))?;
            if end > pos {
                self.emit(t, p.slice(pos..end), out);
            }
            pos = end;
            t = t.saturating_add(AAC_SAMPLES_PER_AU);
        }
        Ok(())
    }
}

/// RFC 3640 payloads for one AAC access unit: one AU header (13-bit size, 3-bit index) and the
/// unit, fragmented over several payloads when larger than `max_payload`.
pub(crate) fn packetize_aac(
    au: &Bytes,
    max_payload: usize,
    out: &mut Vec<Bytes>,
) -> Result<(), RtpError> {
    if au.len() >= 1 << 13 {
        return Err(RtpError::FrameTooLarge {
            layer: "aac",
            limit: (1 << 13) - 1,
        });
    }
    if max_payload < 5 {
        return Err(RtpError::Invalid {
            layer: "aac",
            field: "mtu",
            value: max_payload as u64,
            offset: 0,
        });
    }
    let chunk = max_payload - 4;
    let pieces: Vec<&[u8]> = if au.is_empty() {
        vec![&[][..]]
    } else {
        au.chunks(chunk).collect()
    };
    for piece in pieces {
        let mut p = BytesMut::with_capacity(4 + piece.len());
        p.put_u16(16);
        p.put_u16((au.len() as u16) << 3);
        p.extend_from_slice(piece);
        out.push(p.freeze());
    }
    Ok(())
}

/// Rebuilds AAC access units from `MP4A-LATM` payloads: AudioMuxElements, each possibly spread
/// over several packets of one timestamp (the marker ends it), several possibly in one packet.
#[derive(Debug)]
pub(crate) struct LatmDepacketizer {
    clock_rate: u32,
    sub_frames: u8,
    max_frame_bytes: usize,
    config: Option<Bytes>,
    /// The element being collected: its timestamp and bytes so far.
    partial: Option<(i64, BytesMut)>,
}

impl LatmDepacketizer {
    pub(crate) fn new(
        clock_rate: u32,
        config: Bytes,
        sub_frames: u8,
        max_frame_bytes: usize,
    ) -> Self {
        LatmDepacketizer {
            clock_rate,
            sub_frames,
            max_frame_bytes,
            config: Some(config),
            partial: None,
        }
    }

    pub(crate) fn lost(&mut self) {
        self.partial = None;
    }

    pub(crate) fn push(
        &mut self,
        p: &Bytes,
        ts: i64,
        marker: bool,
        out: &mut VecDeque<Frame>,
    ) -> Result<(), RtpError> {
        let data = match self.partial.take() {
            None if marker => p.clone(),
            Some((t, mut buf)) if t == ts => {
                if buf.len() + p.len() > self.max_frame_bytes {
                    return Err(RtpError::FrameTooLarge {
                        layer: "latm",
                        limit: self.max_frame_bytes,
                    });
                }
                buf.extend_from_slice(p);
                if !marker {
                    self.partial = Some((t, buf));
                    return Ok(());
                }
                buf.freeze()
            }
            // A new timestamp: what was collected lost its end.
            _ => {
                if !marker {
                    self.partial = Some((ts, BytesMut::from(&p[..])));
                    return Ok(());
                }
                p.clone()
            }
        };
        let mut rest = data;
        let mut t = ts;
        while !rest.is_empty() {
            let units = split_audio_mux_element(&rest, self.sub_frames)?;
            let used: usize = units.iter().map(|u| u.len() + u.len() / 255 + 1).sum();
            for unit in units {
                if !unit.is_empty() {
                    emit_aac(&mut self.config, ticks_to_ms(t, self.clock_rate), unit, out);
                }
                t = t.saturating_add(AAC_SAMPLES_PER_AU);
            }
            rest = rest.slice(used.min(rest.len())..);
        }
        Ok(())
    }
}

/// Queues an AAC access unit at `ms`, after the configuration if it was not sent yet.
fn emit_aac(config: &mut Option<Bytes>, ms: i64, payload: Bytes, out: &mut VecDeque<Frame>) {
    if let Some(config) = config.take() {
        out.push_back(Frame {
            codec: Codec::Aac,
            kind: FrameKind::Config,
            dts: ms,
            pts: ms,
            key: true,
            payload: config,
        });
    }
    out.push_back(Frame {
        codec: Codec::Aac,
        kind: FrameKind::Coded,
        dts: ms,
        pts: ms,
        key: true,
        payload,
    });
}

/// `MP4A-LATM` payloads for one AAC access unit: one AudioMuxElement, fragmented over several
/// payloads when larger than `max_payload`.
pub(crate) fn packetize_latm(
    au: &Bytes,
    max_payload: usize,
    out: &mut Vec<Bytes>,
) -> Result<(), RtpError> {
    if max_payload == 0 {
        return Err(RtpError::Invalid {
            layer: "latm",
            field: "mtu",
            value: 0,
            offset: 0,
        });
    }
    let mut element = BytesMut::new();
    audio_mux_element(au, &mut element);
    let element = element.freeze();
    let mut pos = 0;
    while pos < element.len() {
        let end = (pos + max_payload).min(element.len());
        out.push(element.slice(pos..end));
        pos = end;
    }
    Ok(())
}

/// G.711 and Opus: one packet's payload is one frame.
#[derive(Debug)]
pub(crate) struct PassthroughDepacketizer {
    pub(crate) codec: Codec,
    pub(crate) clock_rate: u32,
}

impl PassthroughDepacketizer {
    pub(crate) fn push(&mut self, p: &Bytes, ts: i64, out: &mut VecDeque<Frame>) {
        if p.is_empty() {
            return;
        }
        let ms = ticks_to_ms(ts, self.clock_rate);
        out.push_back(Frame {
            codec: self.codec,
            kind: FrameKind::Coded,
            dts: ms,
            pts: ms,
            key: true,
            payload: p.clone(),
        });
    }
}
