//! Box writers: the init segment and the head of a one-sample fragment (ISO/IEC 14496-12 box
//! layouts, 14496-14 for `esds`, 14496-15 for `avcC`/`hvcC`, the Opus-in-ISOBMFF mapping for
//! `dOps`).

use bytes::{BufMut, Bytes, BytesMut};

use super::{AudioEntry, VideoEntry, AUDIO_TRACK_ID, VIDEO_TIMESCALE, VIDEO_TRACK_ID};
use crate::media::Codec;

/// `tfhd` flag: offsets are relative to the start of the `moof`.
pub(super) const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags: which fields are present.
pub(super) const TRUN_DATA_OFFSET: u32 = 0x001;
pub(super) const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x004;
pub(super) const TRUN_DURATION: u32 = 0x100;
pub(super) const TRUN_SIZE: u32 = 0x200;
pub(super) const TRUN_FLAGS: u32 = 0x400;
pub(super) const TRUN_CTO: u32 = 0x800;
/// Sample flags of a sync sample: depends on no other (`sample_depends_on` = 2).
pub(super) const SAMPLE_SYNC: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample: depends on others, `sample_is_non_sync_sample`.
pub(super) const SAMPLE_NON_SYNC: u32 = 0x0101_0000;

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Writes a box of type `kind` whose contents `body` writes; the size is patched after.
fn boxed(out: &mut BytesMut, kind: &[u8; 4], body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    body(out);
    let size = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: version and flags first.
fn full(
    out: &mut BytesMut,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut BytesMut),
) {
    boxed(out, kind, |out| {
        out.put_u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF));
        body(out);
    });
}

/// `ftyp` + `moov` for the given tracks.
pub(super) fn init_segment(video: Option<&VideoEntry>, audio: Option<&AudioEntry>) -> Bytes {
    let mut out = BytesMut::with_capacity(1024);
    boxed(&mut out, b"ftyp", |o| {
        o.put_slice(b"iso6");
        o.put_u32(0);
        for brand in [b"iso6", b"cmfc", b"mp41"] {
            o.put_slice(brand);
        }
    });
    boxed(&mut out, b"moov", |o| {
        full(o, b"mvhd", 0, 0, |o| {
            o.put_u32(0); // creation_time
            o.put_u32(0); // modification_time
            o.put_u32(1000); // timescale
            o.put_u32(0); // duration: unknown (fragmented)
            o.put_u32(0x0001_0000); // rate 1.0
            o.put_u16(0x0100); // volume 1.0
            o.put_bytes(0, 10); // reserved
            MATRIX.iter().for_each(|m| o.put_u32(*m));
            o.put_bytes(0, 24); // pre_defined
            o.put_u32(AUDIO_TRACK_ID + 1); // next_track_ID
        });
        if let Some(v) = video {
            trak(o, VIDEO_TRACK_ID, VIDEO_TIMESCALE, TrakKind::Video(v));
        }
        if let Some(a) = audio {
            trak(o, AUDIO_TRACK_ID, a.timescale, TrakKind::Audio(a));
        }
        boxed(o, b"mvex", |o| {
            for id in [video.map(|_| VIDEO_TRACK_ID), audio.map(|_| AUDIO_TRACK_ID)]
                .into_iter()
                .flatten()
            {
                full(o, b"trex", 0, 0, |o| {
                    o.put_u32(id);
                    o.put_u32(1); // default_sample_description_index
                    o.put_u32(0); // default_sample_duration
                    o.put_u32(0); // default_sample_size
                    o.put_u32(0); // default_sample_flags
                });
            }
        });
    });
    out.freeze()
}

enum TrakKind<'a> {
    Video(&'a VideoEntry),
    Audio(&'a AudioEntry),
}

fn trak(o: &mut BytesMut, id: u32, timescale: u32, kind: TrakKind<'_>) {
    let (width, height) = match &kind {
        TrakKind::Video(v) => (u32::from(v.width), u32::from(v.height)),
        TrakKind::Audio(_) => (0, 0),
    };
    let audio = matches!(kind, TrakKind::Audio(_));
    boxed(o, b"trak", |o| {
        // Flags: track_enabled | track_in_movie.
        full(o, b"tkhd", 0, 3, |o| {
            o.put_u32(0); // creation_time
            o.put_u32(0); // modification_time
            o.put_u32(id);
            o.put_u32(0); // reserved
            o.put_u32(0); // duration
            o.put_bytes(0, 8); // reserved
            o.put_u16(0); // layer
            o.put_u16(0); // alternate_group
            o.put_u16(if audio { 0x0100 } else { 0 }); // volume
            o.put_u16(0); // reserved
            MATRIX.iter().for_each(|m| o.put_u32(*m));
            o.put_u32(width << 16);
            o.put_u32(height << 16);
        });
        boxed(o, b"mdia", |o| {
            full(o, b"mdhd", 0, 0, |o| {
                o.put_u32(0);
                o.put_u32(0);
                o.put_u32(timescale);
                o.put_u32(0);
                o.put_u16(0x55C4); // language "und"
                o.put_u16(0);
            });
            full(o, b"hdlr", 0, 0, |o| {
                o.put_u32(0);
                o.put_slice(if audio { b"soun" } else { b"vide" });
                o.put_bytes(0, 12);
                o.put_slice(if audio {
                    b"SoundHandler\0"
                } else {
                    b"VideoHandler\0"
                });
            });
            boxed(o, b"minf", |o| {
                if audio {
                    full(o, b"smhd", 0, 0, |o| o.put_u32(0));
                } else {
                    full(o, b"vmhd", 0, 1, |o| o.put_bytes(0, 8));
                }
                boxed(o, b"dinf", |o| {
                    full(o, b"dref", 0, 0, |o| {
                        o.put_u32(1);
                        full(o, b"url ", 0, 1, |_| {});
                    });
                });
                boxed(o, b"stbl", |o| {
                    full(o, b"stsd", 0, 0, |o| {
                        o.put_u32(1);
                        match kind {
                            TrakKind::Video(v) => visual_entry(o, v),
                            TrakKind::Audio(a) => audio_sample_entry(o, a),
                        }
                    });
                    full(o, b"stts", 0, 0, |o| o.put_u32(0));
                    full(o, b"stsc", 0, 0, |o| o.put_u32(0));
                    full(o, b"stsz", 0, 0, |o| {
                        o.put_u32(0);
                        o.put_u32(0);
                    });
                    full(o, b"stco", 0, 0, |o| o.put_u32(0));
                });
            });
        });
    });
}

fn visual_entry(o: &mut BytesMut, v: &VideoEntry) {
    boxed(o, &v.fourcc, |o| {
        o.put_bytes(0, 6); // reserved
        o.put_u16(1); // data_reference_index
        o.put_bytes(0, 16); // pre_defined, reserved
        o.put_u16(v.width);
        o.put_u16(v.height);
        o.put_u32(0x0048_0000); // 72 dpi
        o.put_u32(0x0048_0000);
        o.put_u32(0); // reserved
        o.put_u16(1); // frame_count
        o.put_bytes(0, 32); // compressorname
        o.put_u16(0x0018); // depth
        o.put_i16(-1); // pre_defined
        boxed(o, &v.config_box, |o| o.put_slice(&v.config));
    });
}

fn audio_sample_entry(o: &mut BytesMut, a: &AudioEntry) {
    let fourcc = if a.codec == Codec::Opus {
        b"Opus"
    } else {
        b"mp4a"
    };
    boxed(o, fourcc, |o| {
        o.put_bytes(0, 6);
        o.put_u16(1); // data_reference_index
        o.put_bytes(0, 8); // reserved
        o.put_u16(a.channels);
        o.put_u16(16); // samplesize
        o.put_u32(0); // pre_defined, reserved
        o.put_u32(a.sample_rate.min(0xFFFF) << 16);
        if a.codec == Codec::Opus {
            boxed(o, b"dOps", |o| {
                o.put_u8(0); // Version
                o.put_u8(a.channels as u8);
                o.put_u16(0); // PreSkip
                o.put_u32(48_000); // InputSampleRate
                o.put_i16(0); // OutputGain
                o.put_u8(0); // ChannelMappingFamily
            });
        } else {
            esds(o, a);
        }
    });
}

/// The MPEG-4 elementary stream descriptor: ES_Descriptor, DecoderConfigDescriptor
/// (object type 0x40 AAC, 0x6B MP3), DecoderSpecificInfo (the AudioSpecificConfig) and
/// SLConfigDescriptor.
fn esds(o: &mut BytesMut, a: &AudioEntry) {
    full(o, b"esds", 0, 0, |o| {
        let mut dcd = BytesMut::new();
        dcd.put_u8(if a.codec == Codec::Mp3 { 0x6B } else { 0x40 });
        dcd.put_u8(0x15); // streamType audio (5) << 2 | reserved 1
        dcd.put_bytes(0, 3); // bufferSizeDB
        dcd.put_u32(0); // maxBitrate
        dcd.put_u32(0); // avgBitrate
        if !a.config.is_empty() {
            descriptor(&mut dcd, 0x05, &a.config);
        }
        let mut es = BytesMut::new();
        es.put_u16(AUDIO_TRACK_ID as u16); // ES_ID
        es.put_u8(0); // no dependency, URL or OCR stream
        descriptor(&mut es, 0x04, &dcd);
        descriptor(&mut es, 0x06, &[0x02]);
        descriptor(o, 0x03, &es);
    });
}

/// A descriptor: tag, size in 7-bit groups, contents.
fn descriptor(o: &mut BytesMut, tag: u8, body: &[u8]) {
    o.put_u8(tag);
    let len = body.len().min(0x0FFF_FFFF);
    let mut started = false;
    for shift in [21, 14, 7] {
        let b = ((len >> shift) & 0x7F) as u8;
        if b != 0 || started {
            o.put_u8(0x80 | b);
            started = true;
        }
    }
    o.put_u8((len & 0x7F) as u8);
    o.put_slice(body);
}

/// One sample of a fragment.
pub(super) struct SampleInfo {
    pub(super) duration: u32,
    pub(super) size: u32,
    pub(super) sync: bool,
    pub(super) cto: i32,
}

/// `moof` (with one `traf` of one sample) and the `mdat` header; the sample's bytes follow.
pub(super) fn fragment_head(
    out: &mut BytesMut,
    sequence: u32,
    track_id: u32,
    decode_time: u64,
    s: &SampleInfo,
) {
    let moof_start = out.len();
    let mut data_offset_at = 0;
    boxed(out, b"moof", |o| {
        full(o, b"mfhd", 0, 0, |o| o.put_u32(sequence));
        boxed(o, b"traf", |o| {
            full(o, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |o| {
                o.put_u32(track_id)
            });
            full(o, b"tfdt", 1, 0, |o| o.put_u64(decode_time));
            let flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS | TRUN_CTO;
            full(o, b"trun", 1, flags, |o| {
                o.put_u32(1); // sample_count
                data_offset_at = o.len();
                o.put_i32(0); // data_offset, patched below
                o.put_u32(s.duration);
                o.put_u32(s.size);
                o.put_u32(if s.sync { SAMPLE_SYNC } else { SAMPLE_NON_SYNC });
                o.put_i32(s.cto);
            });
        });
    });
    // The sample starts right after the mdat header.
    let data_offset = (out.len() - moof_start + 8) as i32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    let mdat_size = s.size.saturating_add(8);
    out.put_u32(mdat_size);
    out.put_slice(b"mdat");
}
