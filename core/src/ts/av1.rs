//! AV1 in MPEG-2 TS (AOM "Carriage of AV1 in MPEG-2 TS"): the PMT descriptors, and the
//! start-code form of the elementary stream: every OBU behind a `0x000001` start code, with
//! emulation prevention bytes so that no start code appears inside an OBU.

use bytes::{BufMut, BytesMut};

use crate::codec::av1::{self, obu_type};
use crate::codec::CodecError;

/// Registration descriptor (tag 0x05) with the format identifier `AV01`; it comes first.
const REGISTRATION: [u8; 6] = [0x05, 4, b'A', b'V', b'0', b'1'];
/// Tag of the AV1 video descriptor.
const AV1_VIDEO_DESCRIPTOR_TAG: u8 = 0x80;
/// `hdr_wcg_idc` 3: no indication of HDR, WCG or SDR (rill does not read the colour config).
const HDR_WCG_NO_INDICATION: u8 = 0xC0;
/// A temporal delimiter OBU with `obu_size` 0, behind its start code: what starts every
/// access unit written.
const TEMPORAL_DELIMITER: [u8; 5] = [0, 0, 1, 0x12, 0x00];

/// The PMT descriptors of an AV1 stream: the registration descriptor, then, when the `av1C`
/// record is known, the AV1 video descriptor (the record's first four bytes, with the two
/// bits the record reserves used as `hdr_wcg_idc`).
pub(super) fn descriptors(av1c: Option<&[u8]>) -> Vec<u8> {
    let mut d = REGISTRATION.to_vec();
    if let Some(&[marker_version, profile_level, flags, delay]) = av1c.and_then(|c| c.get(..4)) {
        d.extend_from_slice(&[
            AV1_VIDEO_DESCRIPTOR_TAG,
            4,
            marker_version,
            profile_level,
            flags,
            HDR_WCG_NO_INDICATION | (delay & 0x1F),
        ]);
    }
    d
}

/// The sequence header OBU of an `av1C` record in start-code form (written in front of key
/// frames that lack one), or `None` when the record does not parse.
pub(super) fn sequence_header_es(av1c: &[u8]) -> Option<BytesMut> {
    let obu = av1::config_sequence_header(av1c).ok()?;
    let mut es = BytesMut::new();
    put_obu(&mut es, obu.raw);
    Some(es)
}

/// Appends one access unit (a frame's temporal unit) in start-code form: a temporal
/// delimiter, then, for a key frame without a sequence header of its own,
/// `sequence_header`, then every OBU of `payload` but temporal delimiters and tile lists.
/// Fails when `payload` is not a sequence of OBUs.
pub(super) fn put_access_unit(
    es: &mut BytesMut,
    payload: &[u8],
    key: bool,
    sequence_header: &[u8],
) -> Result<(), CodecError> {
    let mut has_sequence_header = false;
    for obu in av1::split_obus(payload) {
        has_sequence_header |= obu?.obu_type == obu_type::SEQUENCE_HEADER;
    }
    es.put_slice(&TEMPORAL_DELIMITER);
    if key && !has_sequence_header {
        es.put_slice(sequence_header);
    }
    for obu in av1::split_obus(payload).flatten() {
        if !matches!(
            obu.obu_type,
            obu_type::TEMPORAL_DELIMITER | obu_type::TILE_LIST
        ) {
            put_obu(es, obu.raw);
        }
    }
    Ok(())
}

/// Appends one OBU as `ts_open_bitstream_unit()`: the start code, then its bytes with an
/// `emulation_prevention_three_byte` after every two zero bytes that a byte of 0 to 3 follows,
/// and after two zero bytes that end the OBU (the next start code would follow them: the
/// spec's reading removes that `03` too, and no reader can take the zeros for part of a start
/// code).
fn put_obu(es: &mut BytesMut, obu: &[u8]) {
    es.reserve(4 + obu.len() + obu.len() / 64);
    es.put_slice(&[0, 0, 1]);
    let mut zeros = 0;
    for &b in obu {
        if zeros >= 2 && b <= 3 {
            es.put_u8(3);
            zeros = 0;
        }
        es.put_u8(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    if zeros >= 2 {
        es.put_u8(3);
    }
}

/// The OBUs of a start-code form elementary stream, each with its emulation prevention bytes
/// taken out (the reading side of [`put_obu`], as the spec's `ts_open_bitstream_unit()`
/// syntax reads it).
#[cfg(test)]
pub(super) fn read_obus(es: &[u8]) -> Vec<Vec<u8>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= es.len() {
        if es[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut obus = Vec::new();
    for (n, &s) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(es.len(), |&next| next - 3);
        let ts_obu = &es[s..end];
        let mut obu = Vec::with_capacity(ts_obu.len());
        let mut j = 0;
        while j < ts_obu.len() {
            if j + 2 < ts_obu.len() && ts_obu[j..j + 3] == [0, 0, 3] {
                obu.extend_from_slice(&[0, 0]);
                j += 3;
            } else {
                obu.push(ts_obu[j]);
                j += 1;
            }
        }
        obus.push(obu);
    }
    obus
}
