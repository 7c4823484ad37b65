//! AV1 over RTP (AOM "RTP Payload Format for AV1"): each payload is an aggregation header
//! (`Z`, `Y`, `W`, `N`) and OBU elements, whole OBUs or fragments, each behind its `leb128`
//! length (the last one's is left out when `W` counts the elements).

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::depacketize::UnitDepacketizer;
use super::timing::{ticks_to_ms, DtsEstimator};
use super::RtpError;
use crate::codec::av1::{self, obu_type, OBU_HAS_SIZE_FIELD};
use crate::media::{Codec, Frame, FrameKind};

const LAYER: &str = "av1";
/// Aggregation header: the first element continues an OBU of the previous packet.
const Z: u8 = 0x80;
/// Aggregation header: the last element continues in the next packet.
const Y: u8 = 0x40;
/// Aggregation header: the packet starts a coded video sequence.
const N: u8 = 0x08;

/// Cuts temporal units into AV1 payloads of at most `max_payload` bytes.
#[derive(Debug)]
pub(crate) struct Av1Packetizer {
    /// The sequence header OBU from the `av1C` record, as an OBU element (no size field),
    /// sent in front of each key frame that lacks one.
    sequence_header: Vec<u8>,
}

impl Av1Packetizer {
    /// A packetizer with the sequence header of an `av1C` record (empty or broken: none until
    /// a Config frame; key frames then rely on their own).
    pub(crate) fn new(av1c: &[u8]) -> Self {
        let mut p = Av1Packetizer {
            sequence_header: Vec::new(),
        };
        // An unusable record leaves the sequence header to the stream.
        let _ = p.set_config(av1c);
        p
    }

    /// Takes an `av1C` record (a Config frame).
    pub(crate) fn set_config(&mut self, av1c: &[u8]) -> Result<(), RtpError> {
        let obu = av1::config_sequence_header(av1c)?;
        self.sequence_header = element(&obu);
        Ok(())
    }

    /// The payloads of one temporal unit, in order. Temporal delimiters and tile lists are
    /// dropped, OBUs lose their size fields (the element lengths say it), OBUs are
    /// aggregated while they fit and fragmented when they do not; `N` is set on the first
    /// packet of a key frame, which starts with the sequence header.
    pub(crate) fn packetize(
        &self,
        frame: &Frame,
        max_payload: usize,
        out: &mut Vec<Bytes>,
    ) -> Result<(), RtpError> {
        // The aggregation header, then a length byte and two bytes of data at least.
        if max_payload < 4 {
            return Err(RtpError::Invalid {
                layer: LAYER,
                field: "mtu",
                value: max_payload as u64,
                offset: 0,
            });
        }
        let mut elements = Vec::new();
        let mut has_sequence_header = false;
        for obu in av1::split_obus(&frame.payload) {
            let obu = obu?;
            match obu.obu_type {
                obu_type::TEMPORAL_DELIMITER | obu_type::TILE_LIST => {}
                t => {
                    has_sequence_header |= t == obu_type::SEQUENCE_HEADER;
                    elements.push(element(&obu));
                }
            }
        }
        if frame.key && !has_sequence_header && !self.sequence_header.is_empty() {
            elements.insert(0, self.sequence_header.clone());
        }
        let mut packets = PacketBuilder {
            capacity: max_payload - 1,
            pieces: Vec::new(),
            used: 0,
            continues: false,
            first_flags: if frame.key { N } else { 0 },
            out,
        };
        for e in &elements {
            let mut rest = &e[..];
            loop {
                let space = packets.capacity - packets.used;
                if av1::leb128_len(rest.len() as u64) + rest.len() <= space {
                    packets.add(rest);
                    break;
                }
                // Too little room for a useful fragment: the next packet.
                if space < 3 {
                    packets.finish(false);
                    continue;
                }
                let mut n = space - av1::leb128_len(space as u64);
                while av1::leb128_len(n as u64) + n > space {
                    n -= 1;
                }
                let (piece, more) = rest.split_at(n);
                packets.add(piece);
                packets.finish(true);
                rest = more;
            }
        }
        if !packets.pieces.is_empty() {
            packets.finish(false);
        }
        Ok(())
    }
}

/// Rebuilds temporal units from AV1 payloads given in sequence order: OBUs with their size
/// fields (the low-overhead bitstream rill's frames carry), temporal delimiters and tile lists
/// left out. A Config frame (an `av1C` built from the sequence header) comes before the first
/// temporal unit and again when the sequence header changes; a unit is a key frame when its
/// first frame header says `KEY_FRAME`.
#[derive(Debug)]
pub(crate) struct Av1Depacketizer {
    clock_rate: u32,
    max_frame_bytes: usize,
    /// The last sequence header OBU sent in a Config frame.
    sequence_header: Vec<u8>,
    /// OBUs of the temporal unit being collected, with their size fields.
    unit: BytesMut,
    /// Extended RTP timestamp of the temporal unit being collected.
    unit_ts: Option<i64>,
    /// A packet of this unit was lost or bad: drop it when it ends.
    unit_bad: bool,
    /// The OBU element continued by the next packet (`Y`), if any.
    fragment: Option<Vec<u8>>,
    /// Temporal units are in presentation order; this keeps dts from going back when a
    /// sender's timestamps do.
    dts: DtsEstimator,
}

impl Av1Depacketizer {
    pub(crate) fn new(clock_rate: u32, max_frame_bytes: usize) -> Self {
        Av1Depacketizer {
            clock_rate,
            max_frame_bytes,
            sequence_header: Vec::new(),
            unit: BytesMut::new(),
            unit_ts: None,
            unit_bad: false,
            fragment: None,
            dts: DtsEstimator::new(0),
        }
    }

    fn parse_payload(&mut self, p: &[u8]) -> Result<(), RtpError> {
        let (&header, mut rest) = p.split_first().ok_or(RtpError::Truncated {
            layer: LAYER,
            field: "aggregation header",
            offset: 0,
        })?;
        let w = usize::from(header >> 4 & 3);
        let continues = header & Z != 0;
        let fragmented = header & Y != 0;
        // A continuation without its start (lost, or the stream joined mid-OBU) is dropped,
        // and an OBU left open without its continuation is.
        let mut open = self.fragment.take().filter(|_| continues);
        let mut count = 0;
        while !rest.is_empty() {
            count += 1;
            let offset = p.len() - rest.len();
            let len = if count == w {
                rest.len()
            } else {
                let (len, used) = av1::read_leb128(rest).ok_or(RtpError::Truncated {
                    layer: LAYER,
                    field: "OBU element length",
                    offset,
                })?;
                rest = rest.get(used..).unwrap_or_default();
                usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= rest.len())
                    .ok_or(RtpError::Invalid {
                        layer: LAYER,
                        field: "OBU element length",
                        value: len,
                        offset,
                    })?
            };
            let (piece, more) = rest.split_at(len);
            rest = more;
            let mut element = match (count, open.take()) {
                (1, Some(mut started)) => {
                    started.extend_from_slice(piece);
                    started
                }
                (1, None) if continues => {
                    self.unit_bad = true;
                    continue;
                }
                _ => piece.to_vec(),
            };
            if element.len() > self.max_frame_bytes {
                return Err(RtpError::FrameTooLarge {
                    layer: LAYER,
                    limit: self.max_frame_bytes,
                });
            }
            if rest.is_empty() && fragmented {
                self.fragment = Some(std::mem::take(&mut element));
            } else {
                self.add_obu(&element, offset)?;
            }
        }
        if w != 0 && count > w {
            return Err(RtpError::Invalid {
                layer: LAYER,
                field: "W",
                value: w as u64,
                offset: 0,
            });
        }
        Ok(())
    }

    /// Adds one whole OBU element to the unit, with a size field.
    fn add_obu(&mut self, element: &[u8], offset: usize) -> Result<(), RtpError> {
        let first = element.first().copied().unwrap_or_default();
        let header_len = if first & 0x04 != 0 { 2 } else { 1 };
        if element.len() < header_len || first & 0x80 != 0 {
            return Err(RtpError::Invalid {
                layer: LAYER,
                field: "OBU header",
                value: u64::from(first),
                offset,
            });
        }
        // A sender may keep the size fields: the element is then a whole OBU as it is.
        let obu = if first & OBU_HAS_SIZE_FIELD != 0 {
            let mut obus = av1::split_obus(element);
            let obu = obus.next().and_then(Result::ok);
            obu.filter(|o| o.raw.len() == element.len())
                .ok_or(RtpError::Invalid {
                    layer: LAYER,
                    field: "obu_size",
                    value: element.len() as u64,
                    offset,
                })?;
            element.to_vec()
        } else {
            let (header, payload) = element.split_at(header_len);
            let mut obu = Vec::with_capacity(element.len() + 8);
            obu.extend_from_slice(header);
            obu[0] |= OBU_HAS_SIZE_FIELD;
            av1::write_leb128(&mut obu, payload.len() as u64);
            obu.extend_from_slice(payload);
            obu
        };
        if matches!(
            (first >> 3) & 0x0F,
            obu_type::TEMPORAL_DELIMITER | obu_type::TILE_LIST
        ) {
            return Ok(());
        }
        if self.unit.len() + obu.len() > self.max_frame_bytes {
            return Err(RtpError::FrameTooLarge {
                layer: LAYER,
                limit: self.max_frame_bytes,
            });
        }
        self.unit.extend_from_slice(&obu);
        Ok(())
    }

    fn finish(&mut self, out: &mut VecDeque<Frame>) -> Result<(), RtpError> {
        let unit = std::mem::take(&mut self.unit).freeze();
        let bad = std::mem::take(&mut self.unit_bad);
        let ts = self.unit_ts.take();
        self.fragment = None;
        let Some(ts) = ts.filter(|_| !bad && !unit.is_empty()) else {
            return Ok(());
        };
        let pts = ticks_to_ms(ts, self.clock_rate);
        let dts = self.dts.next(pts);
        let mut key = None;
        let mut result = Ok(());
        for obu in av1::split_obus(&unit).flatten() {
            match obu.obu_type {
                obu_type::SEQUENCE_HEADER if obu.raw != &self.sequence_header[..] => {
                    match av1::parse_sequence_header(obu.payload) {
                        Ok(seq) => {
                            self.sequence_header = obu.raw.to_vec();
                            out.push_back(Frame {
                                codec: Codec::Av1,
                                kind: FrameKind::Config,
                                dts,
                                pts: dts,
                                key: true,
                                payload: Bytes::from(seq.config_record(obu.raw)),
                            });
                        }
                        Err(e) => result = Err(RtpError::Codec(e)),
                    }
                }
                obu_type::FRAME_HEADER | obu_type::FRAME if key.is_none() => {
                    // show_existing_frame 0, then frame_type KEY_FRAME (0).
                    key = Some(obu.payload.first().is_some_and(|b| b & 0xE0 == 0));
                }
                _ => {}
            }
        }
        out.push_back(Frame {
            codec: Codec::Av1,
            kind: FrameKind::Coded,
            dts,
            pts,
            key: key.unwrap_or(false),
            payload: unit,
        });
        result
    }
}

/// An OBU as an OBU element: its header without `obu_has_size_field`, then its payload.
fn element(obu: &av1::Obu<'_>) -> Vec<u8> {
    let mut e = Vec::with_capacity(obu.header.len() + obu.payload.len());
    e.extend_from_slice(obu.header);
    if let Some(first) = e.first_mut() {
        *first &= !OBU_HAS_SIZE_FIELD;
    }
    e.extend_from_slice(obu.payload);
    e
}

/// The packet being filled: its OBU elements and the flags of its aggregation header.
struct PacketBuilder<'a, 'e> {
    /// Payload bytes after the aggregation header.
    capacity: usize,
    pieces: Vec<&'e [u8]>,
    /// Bytes the pieces take, each with its length field.
    used: usize,
    /// The first piece continues an OBU of the previous packet (`Z`).
    continues: bool,
    /// `N` for the first packet of a key frame, then nothing.
    first_flags: u8,
    out: &'a mut Vec<Bytes>,
}

impl<'e> PacketBuilder<'_, 'e> {
    fn add(&mut self, piece: &'e [u8]) {
        self.used += av1::leb128_len(piece.len() as u64) + piece.len();
        self.pieces.push(piece);
    }

    /// Writes the packet; `fragmented`: its last piece continues in the next one (`Y`).
    fn finish(&mut self, fragmented: bool) {
        let count = self.pieces.len();
        // W counts up to 3 elements, the last then without its length field.
        let w = if count <= 3 { count as u8 } else { 0 };
        let mut header = (w << 4) | std::mem::take(&mut self.first_flags);
        if std::mem::replace(&mut self.continues, fragmented) {
            header |= Z;
        }
        if fragmented {
            header |= Y;
        }
        let mut p = BytesMut::with_capacity(1 + self.used);
        p.put_u8(header);
        for (i, piece) in self.pieces.drain(..).enumerate() {
            if w == 0 || i + 1 < count {
                av1::write_leb128(&mut p, piece.len() as u64);
            }
            p.put_slice(piece);
        }
        self.used = 0;
        self.out.push(p.freeze());
    }
}

impl UnitDepacketizer for Av1Depacketizer {
    fn unit_ts(&mut self) -> &mut Option<i64> {
        &mut self.unit_ts
    }
    fn read_payload(&mut self, payload: &Bytes) -> Result<(), RtpError> {
        self.parse_payload(payload)
    }
    fn lost(&mut self) {
        self.fragment = None;
        self.unit_bad = true;
    }
    fn end_unit(&mut self, out: &mut VecDeque<Frame>) -> Result<(), RtpError> {
        self.finish(out)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::media::{Codec, FrameKind};
    use crate::rtp::{CodecParams, Depacketizer, Packetizer, RtpPacket, TrackParams};

    /// The av1C of a 320x176 libaom stream (profile 1, level 0) with its sequence header OBU
    /// (`0a 0d` + 13 bytes: type 1 with a size field).
    const AV1C: &[u8] = &[
        0x81, 0x20, 0x00, 0x00, 0x0a, 0x0d, 0x20, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xbc, 0xda, 0xf9,
        0x20, 0x21, 0xa0, 0x04,
    ];

    fn obu(obu_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut o = vec![(obu_type << 3) | OBU_HAS_SIZE_FIELD];
        av1::write_leb128(&mut o, payload.len() as u64);
        o.extend_from_slice(payload);
        o
    }

    /// The same OBU as an OBU element: no size field.
    fn elem(obu_type: u8, payload: &[u8]) -> Vec<u8> {
        [&[obu_type << 3][..], payload].concat()
    }

    fn frame(key: bool, payload: Vec<u8>) -> Frame {
        Frame {
            codec: Codec::Av1,
            kind: FrameKind::Coded,
            dts: 0,
            pts: 0,
            key,
            payload: Bytes::from(payload),
        }
    }

    fn params(config: &[u8]) -> TrackParams {
        TrackParams {
            payload_type: 96,
            clock_rate: 90_000,
            channels: 1,
            codec: CodecParams::Av1 {
                config: Bytes::copy_from_slice(config),
            },
        }
    }

    fn packetizer(config: &[u8], mtu: usize) -> Packetizer {
        Packetizer::new(&params(config), 1, 100, 0, mtu).unwrap()
    }

    fn depacketize(packets: Vec<RtpPacket>) -> (Vec<Frame>, Result<(), RtpError>) {
        let mut d = Depacketizer::new(&params(&[]), 1).unwrap();
        let mut result = Ok(());
        for p in packets {
            result = result.and(d.push(p));
        }
        result = result.and(d.flush());
        let mut frames = Vec::new();
        while let Some(f) = d.poll_frame() {
            frames.push(f);
        }
        (frames, result)
    }

    /// Reads the payloads of one temporal unit back into whole OBU elements the way the
    /// payload format defines them, checking `Z`, `Y`, `W` and `N` on the way; returns the
    /// elements and whether `N` was set on the first packet.
    fn reassemble(payloads: &[Bytes]) -> (Vec<Vec<u8>>, bool) {
        let mut elements: Vec<Vec<u8>> = Vec::new();
        let mut open = false;
        let mut n_first = false;
        for (k, p) in payloads.iter().enumerate() {
            let header = p[0];
            let (z, y, w, n) = (
                header & Z != 0,
                header & Y != 0,
                header >> 4 & 3,
                header & N,
            );
            assert_eq!(header & 0x07, 0, "reserved bits");
            assert_eq!(z, open, "Z of packet {k} against the previous Y");
            if k == 0 {
                n_first = n != 0;
            } else {
                assert_eq!(n, 0, "N only on the first packet");
            }
            let mut rest = &p[1..];
            let mut i = 0;
            while !rest.is_empty() {
                i += 1;
                let len = if w != 0 && i == usize::from(w) {
                    rest.len()
                } else {
                    let (len, used) = av1::read_leb128(rest).unwrap();
                    rest = &rest[used..];
                    len as usize
                };
                let (piece, more) = rest.split_at(len);
                if i == 1 && z {
                    elements.last_mut().unwrap().extend_from_slice(piece);
                } else {
                    elements.push(piece.to_vec());
                }
                rest = more;
            }
            assert!(w == 0 || i == usize::from(w), "W {w} with {i} elements");
            open = y;
        }
        assert!(!open, "the last packet ends its OBU");
        (elements, n_first)
    }

    /// A key frame without a sequence header gets the av1C's in front; the temporal delimiter
    /// is dropped, size fields are stripped, and the small unit goes in one packet with `N`
    /// and `W` = 2 (the last element without a length).
    #[test]
    fn key_frame_is_one_aggregated_packet_with_n_and_w() {
        let mut p = packetizer(AV1C, 1500);
        let mut out = Vec::new();
        let unit = [obu(2, &[]), obu(6, &[0x10, 0x20, 0x30])].concat();
        p.push(&frame(true, unit), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].marker);
        let sh = &AV1C[6..];
        let mut expected = vec![0x28, 1 + sh.len() as u8, 0x08];
        expected.extend_from_slice(sh);
        expected.extend_from_slice(&[0x30, 0x10, 0x20, 0x30]);
        assert_eq!(&out[0].payload[..], &expected[..]);

        // A delta frame: no N, no sequence header.
        out.clear();
        p.push(&frame(false, obu(6, &[7, 8])), &mut out).unwrap();
        assert_eq!(&out[0].payload[..], &[0x10, 0x30, 7, 8]);
    }

    /// An OBU larger than the MTU is cut into fragments: `Y` on all but the last, `Z` on all
    /// but the first, one element each (`W` = 1), every packet within the MTU, the marker on
    /// the last only.
    #[test]
    fn large_obu_is_fragmented() {
        let mut p = packetizer(&[], 112);
        let payload: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
        let mut out: Vec<RtpPacket> = Vec::new();
        p.push(&frame(false, obu(6, &payload)), &mut out).unwrap();
        let headers: Vec<u8> = out.iter().map(|p| p.payload[0]).collect();
        assert_eq!(headers, vec![0x50, 0xD0, 0x90]);
        assert!(out.iter().all(|p| p.header_len() + p.payload.len() <= 112));
        let markers: Vec<bool> = out.iter().map(|p| p.marker).collect();
        assert_eq!(markers, vec![false, false, true]);
        let payloads: Vec<Bytes> = out.into_iter().map(|p| p.payload).collect();
        assert_eq!(reassemble(&payloads).0, vec![elem(6, &payload)]);
    }

    /// The sequence header of a Config frame replaces the one of the track parameters; a
    /// broken unit is an error and the packetizer goes on.
    #[test]
    fn config_frames_and_broken_units() {
        let mut p = packetizer(&[], 1500);
        let mut out = Vec::new();
        let config = Frame {
            kind: FrameKind::Config,
            ..frame(true, AV1C.to_vec())
        };
        p.push(&config, &mut out).unwrap();
        assert!(out.is_empty());
        p.push(&frame(true, obu(6, &[1])), &mut out).unwrap();
        let (elements, n) = reassemble(&[out[0].payload.clone()]);
        assert!(n);
        assert_eq!(elements, vec![elem(1, &AV1C[6..]), elem(6, &[1])]);
        // obu_size 9 with one byte behind it.
        assert!(p.push(&frame(false, vec![0x32, 9, 1]), &mut out).is_err());
        let bad_config = Frame {
            kind: FrameKind::Config,
            ..frame(true, vec![0x81, 0, 0, 0])
        };
        assert!(p.push(&bad_config, &mut out).is_err());
        assert!(p.push(&frame(false, obu(6, &[2])), &mut out).is_ok());
    }

    fn unit_strategy() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
        prop::collection::vec(
            (
                prop::sample::select(vec![1u8, 2, 3, 4, 5, 6, 7, 8, 15]),
                prop::collection::vec(any::<u8>(), 0..2500),
            ),
            1..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any temporal unit at any MTU: every packet fits, the marker is on the last one,
        /// and the OBU elements read back are the unit's OBUs without temporal delimiters
        /// or tile lists, without size fields, behind the sequence header on key frames
        /// that lack one.
        #[test]
        fn temporal_units_come_back_as_their_obu_elements(
            unit in unit_strategy(),
            key in any::<bool>(),
            mtu in 16usize..1500,
        ) {
            let mut p = packetizer(AV1C, mtu);
            let payload: Vec<u8> = unit.iter().flat_map(|(t, d)| obu(*t, d)).collect();
            let mut out = Vec::new();
            p.push(&frame(key, payload), &mut out).unwrap();
            let mut expected: Vec<Vec<u8>> = unit
                .iter()
                .filter(|(t, _)| *t != 2 && *t != 8)
                .map(|(t, d)| elem(*t, d))
                .collect();
            if key && !unit.iter().any(|(t, _)| *t == 1) {
                expected.insert(0, elem(1, &AV1C[6..]));
            }
            for (i, pkt) in out.iter().enumerate() {
                prop_assert!(pkt.header_len() + pkt.payload.len() <= mtu);
                prop_assert_eq!(pkt.marker, i + 1 == out.len());
            }
            let payloads: Vec<Bytes> = out.into_iter().map(|p| p.payload).collect();
            let (elements, n) = reassemble(&payloads);
            prop_assert_eq!(elements, expected);
            prop_assert_eq!(n, key && !payloads.is_empty());
        }

        /// Packetized then depacketized, a temporal unit comes back as the OBUs the decoder
        /// needs (with size fields, no temporal delimiter or tile list, the sequence header in
        /// front of a key frame), at its time; a key frame's sequence header gives a Config
        /// frame with the av1C it came from.
        #[test]
        fn temporal_units_survive_packetize_and_depacketize(
            units in prop::collection::vec(
                (
                    prop::collection::vec(
                        (
                            prop::sample::select(vec![2u8, 3, 4, 5, 6, 7, 8, 15]),
                            prop::collection::vec(any::<u8>(), 0..2500),
                        ),
                        1..5,
                    ),
                    any::<bool>(),
                ),
                1..6,
            ),
            mtu in 16usize..1500,
        ) {
            let mut p = packetizer(AV1C, mtu);
            let mut packets = Vec::new();
            let mut expected = Vec::new();
            for (i, (unit, key)) in units.iter().enumerate() {
                let payload: Vec<u8> = unit.iter().flat_map(|(t, d)| obu(*t, d)).collect();
                let f = Frame { dts: i as i64 * 40, pts: i as i64 * 40, ..frame(*key, payload) };
                p.push(&f, &mut packets).unwrap();
                let mut obus: Vec<u8> = unit
                    .iter()
                    .filter(|(t, _)| *t != 2 && *t != 8)
                    .flat_map(|(t, d)| obu(*t, d))
                    .collect();
                if *key {
                    obus.splice(0..0, AV1C[4..].iter().copied());
                }
                if !obus.is_empty() {
                    expected.push((f.pts, obus));
                }
            }
            let (frames, result) = depacketize(packets);
            prop_assert!(result.is_ok(), "{:?}", result);
            // Time counts from the first packet.
            let first = expected.first().map_or(0, |(pts, _)| *pts);
            let coded: Vec<(i64, Vec<u8>)> = frames
                .iter()
                .filter(|f| f.kind == FrameKind::Coded)
                .map(|f| (f.pts + first, f.payload.to_vec()))
                .collect();
            prop_assert_eq!(coded, expected);
            let configs: Vec<&Frame> = frames.iter().filter(|f| f.kind == FrameKind::Config).collect();
            prop_assert_eq!(configs.len(), usize::from(units.iter().any(|(_, key)| *key)));
            for c in configs {
                prop_assert_eq!(&c.payload[..], AV1C);
            }
        }
    }

    /// A key frame (frame header with `show_existing_frame` 0 and `frame_type` KEY_FRAME) is
    /// flagged, a delta frame is not; a lost packet drops its unit; elements that keep their
    /// size fields and a continuation without its start are read as the spec allows.
    #[test]
    fn depacketizer_flags_key_frames_and_drops_damaged_units() {
        let mut p = packetizer(AV1C, 60);
        let mut packets = Vec::new();
        p.push(&frame(true, obu(6, &[0x10; 100])), &mut packets)
            .unwrap();
        let key_packets = packets.len();
        let delta = Frame {
            pts: 40,
            dts: 40,
            ..frame(false, obu(6, &[0x30; 100]))
        };
        p.push(&delta, &mut packets).unwrap();
        let lost = Frame {
            pts: 80,
            dts: 80,
            ..frame(false, obu(6, &[0x30; 100]))
        };
        p.push(&lost, &mut packets).unwrap();
        let last = Frame {
            pts: 120,
            dts: 120,
            ..frame(false, obu(6, &[0x31; 10]))
        };
        p.push(&last, &mut packets).unwrap();
        // Lose the second packet of the third unit (sequence numbers go on).
        let lost_seq = packets[key_packets + 3].sequence;
        let packets: Vec<RtpPacket> = packets
            .into_iter()
            .filter(|p| p.sequence != lost_seq)
            .collect();
        let mut d = Depacketizer::new(&params(&[]), 4).unwrap();
        for p in packets {
            let _ = d.push(p);
        }
        d.flush().unwrap();
        let mut frames = Vec::new();
        while let Some(f) = d.poll_frame() {
            frames.push((f.kind, f.pts, f.key));
        }
        assert_eq!(
            frames,
            vec![
                (FrameKind::Config, 0, true),
                (FrameKind::Coded, 0, true),
                (FrameKind::Coded, 40, false),
                (FrameKind::Coded, 120, false),
            ]
        );

        // One packet, W = 0, elements with their size fields kept.
        let mut payload = vec![0x00];
        for o in [obu(6, &[0x30, 1]), obu(5, &[9])] {
            write_leb_to(&mut payload, o.len());
            payload.extend_from_slice(&o);
        }
        let mut pkt = RtpPacket::new(96, 1, 0, 1, Bytes::from(payload));
        pkt.marker = true;
        let (frames, result) = depacketize(vec![pkt]);
        assert!(result.is_ok());
        assert_eq!(
            &frames[0].payload[..],
            &[obu(6, &[0x30, 1]), obu(5, &[9])].concat()[..]
        );

        // Z without a started OBU (joined mid-OBU): the unit is dropped.
        let mut pkt = RtpPacket::new(96, 1, 0, 1, Bytes::from_static(&[0x90, 0x30, 1, 2]));
        pkt.marker = true;
        assert!(depacketize(vec![pkt]).0.is_empty());

        // Lengths past the end, a forbidden bit, an empty payload: errors, no frame.
        for bad in [&[0x00, 9, 0x30][..], &[0x10, 0x80, 1], &[]] {
            let mut pkt = RtpPacket::new(96, 1, 0, 1, Bytes::copy_from_slice(bad));
            pkt.marker = true;
            let (frames, result) = depacketize(vec![pkt]);
            assert!(result.is_err() && frames.is_empty(), "{bad:?}");
        }
    }

    fn write_leb_to(out: &mut Vec<u8>, v: usize) {
        av1::write_leb128(out, v as u64);
    }
}
