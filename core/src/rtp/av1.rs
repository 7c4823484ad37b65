//! AV1 over RTP (AOM "RTP Payload Format for AV1"): each payload is an aggregation header
//! (`Z`, `Y`, `W`, `N`) and OBU elements, whole OBUs or fragments, each behind its `leb128`
//! length (the last one's is left out when `W` counts the elements).

use bytes::{BufMut, Bytes, BytesMut};

use super::RtpError;
use crate::codec::av1::{self, obu_type, OBU_HAS_SIZE_FIELD};
use crate::media::Frame;

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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::media::{Codec, FrameKind};
    use crate::rtp::{CodecParams, Packetizer, RtpPacket, TrackParams};

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

    fn packetizer(config: &[u8], mtu: usize) -> Packetizer {
        let params = TrackParams {
            payload_type: 96,
            clock_rate: 90_000,
            channels: 1,
            codec: CodecParams::Av1 {
                config: Bytes::copy_from_slice(config),
            },
        };
        Packetizer::new(&params, 1, 100, 0, mtu).unwrap()
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
    }
}
