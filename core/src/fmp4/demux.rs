//! A small fragmented-MP4 demuxer, for tests and fuzzing: reads an init segment and movie
//! fragments back into tracks and samples. It reads what [`super::Fmp4Muxer`] writes and the
//! common `tfhd`/`trun` variants other muxers write; sample bytes are slices of the input.

use std::fmt;

use bytes::Bytes;

use super::write::{
    TRUN_CTO, TRUN_DATA_OFFSET, TRUN_DURATION, TRUN_FIRST_SAMPLE_FLAGS, TRUN_FLAGS, TRUN_SIZE,
};

/// Boxes nested deeper than this are refused.
const MAX_DEPTH: usize = 16;
/// `sample_is_non_sync_sample` in sample flags.
const NON_SYNC: u32 = 0x0001_0000;

/// Why a byte stream is not fragmented MP4 this demuxer reads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DemuxError {
    /// A box or field runs past the end of its container.
    Truncated {
        /// The box or field.
        field: &'static str,
        /// Byte offset in the input.
        offset: usize,
    },
    /// A field has a value this demuxer refuses.
    Invalid {
        /// The field.
        field: &'static str,
        /// Byte offset in the input.
        offset: usize,
    },
}

impl fmt::Display for DemuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemuxError::Truncated { field, offset } => {
                write!(f, "fmp4: {field} truncated at byte {offset}")
            }
            DemuxError::Invalid { field, offset } => {
                write!(f, "fmp4: invalid {field} at byte {offset}")
            }
        }
    }
}

impl std::error::Error for DemuxError {}

/// A track of the init segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemuxTrack {
    /// `track_ID`.
    pub id: u32,
    /// Handler type: `vide`, `soun`, ...
    pub handler: [u8; 4],
    /// Media timescale (ticks per second).
    pub timescale: u32,
    /// The sample entry type: `avc1`, `hvc1`, `mp4a`, `Opus`, ...
    pub sample_entry: [u8; 4],
    /// The contents of the sample entry's configuration box (`avcC`, `hvcC`, `esds`, `dOps`).
    pub config: Bytes,
    /// `trex` defaults: duration, size, flags.
    defaults: (u32, u32, u32),
}

/// One sample of a fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemuxSample {
    /// Its track.
    pub track_id: u32,
    /// Decode time in the track's ticks.
    pub decode_time: u64,
    /// Duration in ticks.
    pub duration: u32,
    /// Composition offset in ticks.
    pub cto: i32,
    /// A sync sample (key frame).
    pub sync: bool,
    /// Its bytes.
    pub data: Bytes,
}

/// What a byte stream held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Demuxed {
    /// Tracks of the init segment(s), by first appearance.
    pub tracks: Vec<DemuxTrack>,
    /// Samples in the order of the fragments.
    pub samples: Vec<DemuxSample>,
    /// `mfhd` sequence numbers in order.
    pub sequences: Vec<u32>,
}

/// Reads an init segment and/or fragments (concatenated).
pub fn demux(input: &Bytes) -> Result<Demuxed, DemuxError> {
    let mut out = Demuxed::default();
    for b in boxes(input, 0, input.len())? {
        match &b.kind {
            b"moov" => moov(input, &b, &mut out)?,
            b"moof" => moof(input, &b, &mut out)?,
            _ => {}
        }
    }
    Ok(out)
}

/// A box: its type and where its contents are in the input.
#[derive(Clone, Copy, Debug)]
struct BoxRef {
    kind: [u8; 4],
    /// Where the box (its header) starts.
    start: usize,
    /// Contents: `body..end`.
    body: usize,
    end: usize,
}

fn truncated(field: &'static str, offset: usize) -> DemuxError {
    DemuxError::Truncated { field, offset }
}

/// The boxes in `input[from..to]`.
fn boxes(input: &[u8], from: usize, to: usize) -> Result<Vec<BoxRef>, DemuxError> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let size = be32(input, at, to, "box size")? as usize;
        let kind: [u8; 4] = input
            .get(at + 4..at + 8)
            .filter(|_| at + 8 <= to)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| truncated("box type", at))?;
        let (body, end) = match size {
            0 => (at + 8, to),
            1 => {
                let large = be64(input, at + 8, to, "box largesize")?;
                let end = usize::try_from(large)
                    .ok()
                    .and_then(|l| at.checked_add(l))
                    .ok_or(DemuxError::Invalid {
                        field: "box largesize",
                        offset: at,
                    })?;
                (at + 16, end)
            }
            s if s < 8 => {
                return Err(DemuxError::Invalid {
                    field: "box size",
                    offset: at,
                })
            }
            s => (at + 8, at + s),
        };
        if end > to || body > end {
            return Err(truncated("box", at));
        }
        out.push(BoxRef {
            kind,
            start: at,
            body,
            end,
        });
        at = end;
    }
    Ok(out)
}

fn children(input: &[u8], b: &BoxRef, depth: usize) -> Result<Vec<BoxRef>, DemuxError> {
    if depth > MAX_DEPTH {
        return Err(DemuxError::Invalid {
            field: "box nesting",
            offset: b.start,
        });
    }
    boxes(input, b.body, b.end)
}

fn find<'a>(list: &'a [BoxRef], kind: &[u8; 4]) -> Option<&'a BoxRef> {
    list.iter().find(|b| &b.kind == kind)
}

fn be32(input: &[u8], at: usize, end: usize, field: &'static str) -> Result<u32, DemuxError> {
    fixed::<4>(input, at, end, field).map(u32::from_be_bytes)
}

fn be64(input: &[u8], at: usize, end: usize, field: &'static str) -> Result<u64, DemuxError> {
    fixed::<8>(input, at, end, field).map(u64::from_be_bytes)
}

fn fixed<const N: usize>(
    input: &[u8],
    at: usize,
    end: usize,
    field: &'static str,
) -> Result<[u8; N], DemuxError> {
    let stop = at.checked_add(N).filter(|&s| s <= end);
    stop.and_then(|s| input.get(at..s))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| truncated(field, at))
}

/// Version and flags of a full box.
fn full_header(input: &[u8], b: &BoxRef) -> Result<(u8, u32), DemuxError> {
    let v = be32(input, b.body, b.end, "full box header")?;
    Ok(((v >> 24) as u8, v & 0x00FF_FFFF))
}

fn moov(input: &Bytes, b: &BoxRef, out: &mut Demuxed) -> Result<(), DemuxError> {
    let kids = children(input, b, 1)?;
    let mut tracks = Vec::new();
    for trak in kids.iter().filter(|k| &k.kind == b"trak") {
        tracks.push(track(input, trak)?);
    }
    if let Some(mvex) = find(&kids, b"mvex") {
        for trex in children(input, mvex, 2)?
            .iter()
            .filter(|k| &k.kind == b"trex")
        {
            let at = trex.body + 4;
            let id = be32(input, at, trex.end, "trex track_ID")?;
            let d = be32(input, at + 8, trex.end, "trex default_sample_duration")?;
            let s = be32(input, at + 12, trex.end, "trex default_sample_size")?;
            let f = be32(input, at + 16, trex.end, "trex default_sample_flags")?;
            if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                t.defaults = (d, s, f);
            }
        }
    }
    for t in tracks {
        match out.tracks.iter_mut().find(|o| o.id == t.id) {
            Some(o) => *o = t,
            None => out.tracks.push(t),
        }
    }
    Ok(())
}

fn track(input: &Bytes, trak: &BoxRef) -> Result<DemuxTrack, DemuxError> {
    let kids = children(input, trak, 2)?;
    let tkhd = find(&kids, b"tkhd").ok_or_else(|| truncated("tkhd", trak.start))?;
    let (v, _) = full_header(input, tkhd)?;
    let id_at = tkhd.body + if v == 1 { 20 } else { 12 };
    let id = be32(input, id_at, tkhd.end, "tkhd track_ID")?;
    let mdia = find(&kids, b"mdia").ok_or_else(|| truncated("mdia", trak.start))?;
    let mdia_kids = children(input, mdia, 3)?;
    let mdhd = find(&mdia_kids, b"mdhd").ok_or_else(|| truncated("mdhd", mdia.start))?;
    let (v, _) = full_header(input, mdhd)?;
    let ts_at = mdhd.body + if v == 1 { 20 } else { 12 };
    let timescale = be32(input, ts_at, mdhd.end, "mdhd timescale")?;
    let hdlr = find(&mdia_kids, b"hdlr").ok_or_else(|| truncated("hdlr", mdia.start))?;
    let handler = fixed::<4>(input, hdlr.body + 8, hdlr.end, "hdlr handler_type")?;
    let minf = find(&mdia_kids, b"minf").ok_or_else(|| truncated("minf", mdia.start))?;
    let minf_kids = children(input, minf, 4)?;
    let stbl = find(&minf_kids, b"stbl").ok_or_else(|| truncated("stbl", minf.start))?;
    let stbl_kids = children(input, stbl, 5)?;
    let stsd = find(&stbl_kids, b"stsd").ok_or_else(|| truncated("stsd", stbl.start))?;
    let entries = boxes(input, stsd.body + 8, stsd.end)?;
    let entry = entries
        .first()
        .ok_or_else(|| truncated("sample entry", stsd.start))?;
    // Child boxes of a sample entry start after its fixed fields.
    let fixed_len = match &handler {
        b"vide" => 78,
        b"soun" => 28,
        _ => 8,
    };
    let config = match boxes(input, entry.body + fixed_len, entry.end) {
        Ok(list) => list
            .iter()
            .find(|c| matches!(&c.kind, b"avcC" | b"hvcC" | b"av1C" | b"esds" | b"dOps"))
            .map(|c| input.slice(c.body..c.end))
            .unwrap_or_default(),
        Err(_) => Bytes::new(),
    };
    if timescale == 0 {
        return Err(DemuxError::Invalid {
            field: "mdhd timescale",
            offset: ts_at,
        });
    }
    Ok(DemuxTrack {
        id,
        handler,
        timescale,
        sample_entry: entry.kind,
        config,
        defaults: (0, 0, 0),
    })
}

fn moof(input: &Bytes, b: &BoxRef, out: &mut Demuxed) -> Result<(), DemuxError> {
    let kids = children(input, b, 1)?;
    if let Some(mfhd) = find(&kids, b"mfhd") {
        out.sequences.push(be32(
            input,
            mfhd.body + 4,
            mfhd.end,
            "mfhd sequence_number",
        )?);
    }
    for traf in kids.iter().filter(|k| &k.kind == b"traf") {
        let tk = children(input, traf, 2)?;
        let tfhd = find(&tk, b"tfhd").ok_or_else(|| truncated("tfhd", traf.start))?;
        let (_, flags) = full_header(input, tfhd)?;
        let mut at = tfhd.body + 4;
        let track_id = be32(input, at, tfhd.end, "tfhd track_ID")?;
        at += 4;
        let defaults = out
            .tracks
            .iter()
            .find(|t| t.id == track_id)
            .map_or((0, 0, 0), |t| t.defaults);
        let (mut d_duration, mut d_size, mut d_flags) = defaults;
        // Without a base_data_offset, offsets count from the moof (default-base-is-moof).
        let mut base = b.start;
        if flags & 0x01 != 0 {
            let v = be64(input, at, tfhd.end, "tfhd base_data_offset")?;
            base = usize::try_from(v).map_err(|_| DemuxError::Invalid {
                field: "tfhd base_data_offset",
                offset: at,
            })?;
            at += 8;
        }
        if flags & 0x02 != 0 {
            at += 4;
        }
        if flags & 0x08 != 0 {
            d_duration = be32(input, at, tfhd.end, "tfhd default_sample_duration")?;
            at += 4;
        }
        if flags & 0x10 != 0 {
            d_size = be32(input, at, tfhd.end, "tfhd default_sample_size")?;
            at += 4;
        }
        if flags & 0x20 != 0 {
            d_flags = be32(input, at, tfhd.end, "tfhd default_sample_flags")?;
        }
        let mut decode_time = match find(&tk, b"tfdt") {
            Some(tfdt) => match full_header(input, tfdt)? {
                (1, _) => be64(input, tfdt.body + 4, tfdt.end, "tfdt baseMediaDecodeTime")?,
                _ => u64::from(be32(
                    input,
                    tfdt.body + 4,
                    tfdt.end,
                    "tfdt baseMediaDecodeTime",
                )?),
            },
            None => 0,
        };
        for trun in tk.iter().filter(|k| &k.kind == b"trun") {
            let (version, tflags) = full_header(input, trun)?;
            let mut at = trun.body + 4;
            let count = be32(input, at, trun.end, "trun sample_count")? as usize;
            at += 4;
            let mut data = base;
            if tflags & TRUN_DATA_OFFSET != 0 {
                let off = be32(input, at, trun.end, "trun data_offset")? as i32;
                data = base
                    .checked_add_signed(off as isize)
                    .ok_or(DemuxError::Invalid {
                        field: "trun data_offset",
                        offset: at,
                    })?;
                at += 4;
            }
            let mut first_flags = None;
            if tflags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
                first_flags = Some(be32(input, at, trun.end, "trun first_sample_flags")?);
                at += 4;
            }
            let per_sample = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO]
                .iter()
                .filter(|f| tflags & **f != 0)
                .count()
                * 4;
            // Checked before allocating: the sample table must fit in the box.
            if count.saturating_mul(per_sample) > trun.end.saturating_sub(at) {
                return Err(truncated("trun samples", at));
            }
            for i in 0..count {
                let mut field = |present: u32, name| -> Result<Option<u32>, DemuxError> {
                    if tflags & present == 0 {
                        return Ok(None);
                    }
                    let v = be32(input, at, trun.end, name)?;
                    at += 4;
                    Ok(Some(v))
                };
                let duration = field(TRUN_DURATION, "trun sample_duration")?.unwrap_or(d_duration);
                let size = field(TRUN_SIZE, "trun sample_size")?.unwrap_or(d_size) as usize;
                let sflags = field(TRUN_FLAGS, "trun sample_flags")?
                    .or(if i == 0 { first_flags } else { None })
                    .unwrap_or(d_flags);
                let cto = match field(TRUN_CTO, "trun sample_composition_time_offset")? {
                    Some(v) if version == 0 => i32::try_from(v).unwrap_or(i32::MAX),
                    Some(v) => v as i32,
                    None => 0,
                };
                let stop = data
                    .checked_add(size)
                    .filter(|&s| s <= input.len())
                    .ok_or_else(|| truncated("sample data", data))?;
                out.samples.push(DemuxSample {
                    track_id,
                    decode_time,
                    duration,
                    cto,
                    sync: sflags & NON_SYNC == 0,
                    data: input.slice(data..stop),
                });
                data = stop;
                decode_time = decode_time.saturating_add(u64::from(duration));
            }
        }
    }
    Ok(())
}
