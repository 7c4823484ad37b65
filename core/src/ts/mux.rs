//! The TS muxer: one instance per published stream turns its [`Frame`]s into transport stream
//! bytes, once, for every TS output (HLS segments, HTTP-TS and WS-TS players).

use bytes::{BufMut, Bytes, BytesMut};

use super::av1;
use super::{
    crc32_mpeg2, ms_to_90k, stream_type, TsError, AUDIO_PID, PAT_PID, PMT_PID, SYNC_BYTE,
    TS_PACKET_LEN, VIDEO_PID,
};
use crate::codec::aac::{AudioSpecificConfig, ADTS_MAX_PAYLOAD};
use crate::codec::h264::{self, AvcConfig};
use crate::codec::h265::{self, HevcConfig};
use crate::codec::{mp3, split_avcc};
use crate::media::{Codec, Frame, FrameKind, TrackKind};

/// Added to every timestamp (ms) so that the first frames, and B-frames whose dts is below
/// their pts, never go below zero, and the PCR can lead the dts.
pub const TIMESTAMP_OFFSET_MS: i64 = 1000;
/// How far the PCR sent with a frame is below that frame's dts (ms): the decoder's buffer time.
const PCR_LEAD_MS: i64 = 300;
/// An audio-only stream repeats PAT/PMT (a random access point) at most this often (ms).
const AUDIO_ONLY_PSI_INTERVAL_MS: i64 = 500;

const STREAM_ID_VIDEO: u8 = 0xE0;
const STREAM_ID_AUDIO: u8 = 0xC0;
/// `private_stream_1`: Opus and AV1 PES.
const STREAM_ID_PRIVATE_1: u8 = 0xBD;
/// The PMT descriptors of an Opus stream (ETSI TS 102 366-style mapping of Xiph's "Opus in
/// MPEG-TS"): registration descriptor `Opus`, then the DVB extension descriptor with the Opus
/// audio tag (0x80) and channel configuration 2 (stereo, what RTP's `opus/48000/2` says).
const OPUS_DESCRIPTORS: [u8; 10] = [0x05, 4, b'O', b'p', b'u', b's', 0x7F, 2, 0x80, 2];
const PAYLOAD_LEN: usize = TS_PACKET_LEN - 4;

/// The TS bytes of one frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TsChunk {
    /// Whole 188-byte packets (empty for configuration frames, which only update the muxer).
    pub bytes: Bytes,
    /// The bytes start with PAT and PMT and a frame a decoder can start from (a video key
    /// frame with its parameter sets, or audio of a stream without video): a player or a
    /// segment may begin here.
    pub random_access: bool,
}

#[derive(Debug)]
struct VideoTrack {
    codec: Codec,
    nalu_length_size: u8,
    /// Parameter sets in Annex B (VPS, SPS, PPS), or AV1's sequence header OBU in start-code
    /// form, written before each key frame (AV1: each key frame that lacks one).
    parameter_sets: Bytes,
    /// The PMT descriptors of the stream (AV1's registration and video descriptors).
    descriptors: Vec<u8>,
}

impl VideoTrack {
    /// A track whose parameter sets come in band (until a configuration frame).
    fn in_band(codec: Codec) -> Self {
        VideoTrack {
            codec,
            nalu_length_size: 4,
            parameter_sets: Bytes::new(),
            descriptors: if codec == Codec::Av1 {
                av1::descriptors(None)
            } else {
                Vec::new()
            },
        }
    }
}

#[derive(Debug)]
struct AudioTrack {
    codec: Codec,
    stream_type: u8,
    asc: Option<AudioSpecificConfig>,
}

/// Indexes into the per-PID state.
const IDX_PAT: usize = 0;
const IDX_PMT: usize = 1;
const IDX_VIDEO: usize = 2;
const IDX_AUDIO: usize = 3;
const PIDS: [u16; 4] = [PAT_PID, PMT_PID, VIDEO_PID, AUDIO_PID];

/// MPEG-TS muxer for one program with at most one video and one audio track.
///
/// Feed every frame of the stream in order with [`TsMuxer::mux`]; each call returns that
/// frame's packets. PAT and PMT go before every video key frame (and every
/// half second of an audio-only stream), with an access unit delimiter and the parameter sets in
/// front of each key frame, so a reader may start at any [`TsChunk::random_access`] chunk.
/// The PCR rides on the video PID (the audio PID without video). Continuity counters run per
/// PID; a new muxer flags its first packets as discontinuous so that players carried over from
/// a previous muxer of the same stream resynchronize.
#[derive(Debug)]
pub struct TsMuxer {
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    cc: [u8; 4],
    fresh: [bool; 4],
    pmt_version: u8,
    psi_dirty: bool,
    last_psi_dts: Option<i64>,
    scratch: BytesMut,
}

impl Default for TsMuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsMuxer {
    /// A muxer with no tracks yet (they appear with their configuration or first frame).
    pub fn new() -> Self {
        TsMuxer {
            video: None,
            audio: None,
            cc: [0; 4],
            fresh: [true; 4],
            pmt_version: 0,
            psi_dirty: false,
            last_psi_dts: None,
            scratch: BytesMut::new(),
        }
    }

    /// Lists the tracks a publisher declared up front (an RTSP ANNOUNCE) in the program from
    /// its first PMT on: `video` by codec, `audio` by codec and decoder configuration (the
    /// AAC AudioSpecificConfig). Without it the first PMT lists only the track whose frame
    /// comes first and a second version adds the other, which GStreamer's `tsdemux` takes for
    /// a new program (it drops the first one's pads and decodes nothing). Codecs TS does not
    /// carry, or a configuration that does not parse, are left to appear with their frames.
    pub fn declare(&mut self, video: Option<Codec>, audio: Option<(Codec, &[u8])>) {
        if let Some(codec @ (Codec::H264 | Codec::H265 | Codec::Av1)) = video {
            // Parameter sets come in band or with a configuration frame of the same codec.
            self.video = Some(VideoTrack::in_band(codec));
        }
        self.audio = match audio {
            Some((Codec::Aac, config)) => {
                AudioSpecificConfig::parse(config)
                    .ok()
                    .map(|asc| AudioTrack {
                        codec: Codec::Aac,
                        stream_type: stream_type::AAC_ADTS,
                        asc: Some(asc),
                    })
            }
            Some((Codec::Opus, _)) => Some(AudioTrack {
                codec: Codec::Opus,
                stream_type: stream_type::PRIVATE_DATA,
                asc: None,
            }),
            _ => None,
        };
        if self.video.is_some() || self.audio.is_some() {
            self.program_changed();
        }
    }

    /// Whether the program has a video track.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Whether the program has an audio track.
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Muxes one frame. Configuration frames update the tracks and give no bytes; codecs TS
    /// does not carry here (G.711) and broken payloads give an error, and the muxer stays
    /// usable.
    pub fn mux(&mut self, frame: &Frame) -> Result<TsChunk, TsError> {
        match (frame.kind, frame.track()) {
            (FrameKind::EndOfSequence, _) => Ok(TsChunk::default()),
            (FrameKind::Config, TrackKind::Video) => {
                self.set_video_config(frame)?;
                Ok(TsChunk::default())
            }
            // Opus in TS needs no configuration (the descriptors say it all).
            (FrameKind::Config, TrackKind::Audio) if frame.codec == Codec::Opus => {
                Ok(TsChunk::default())
            }
            (FrameKind::Config, TrackKind::Audio) => {
                self.set_audio_config(frame)?;
                Ok(TsChunk::default())
            }
            (FrameKind::Coded, TrackKind::Video) => self.mux_video(frame),
            (FrameKind::Coded, TrackKind::Audio) => self.mux_audio(frame),
        }
    }

    fn set_video_config(&mut self, frame: &Frame) -> Result<(), TsError> {
        let bad = TsError::Unsupported {
            what: "video configuration record does not parse",
        };
        let (nalu_length_size, sets): (u8, Vec<Bytes>) = match frame.codec {
            Codec::Av1 => return self.set_av1_config(frame),
            Codec::H264 => {
                let c = AvcConfig::parse(&frame.payload).map_err(|_| bad)?;
                (c.nalu_length_size, c.sps.into_iter().chain(c.pps).collect())
            }
            Codec::H265 => {
                let c = HevcConfig::parse(&frame.payload).map_err(|_| bad)?;
                let sets = c.vps.into_iter().chain(c.sps).chain(c.pps).collect();
                (c.nalu_length_size, sets)
            }
            _ => {
                return Err(TsError::Unsupported {
                    what: "video codec not carried in TS",
                })
            }
        };
        let mut ps = BytesMut::new();
        for nal in sets {
            ps.put_slice(&[0, 0, 0, 1]);
            ps.put_slice(&nal);
        }
        let same_codec = self.video.as_ref().is_some_and(|v| v.codec == frame.codec);
        self.video = Some(VideoTrack {
            codec: frame.codec,
            nalu_length_size,
            parameter_sets: ps.freeze(),
            descriptors: Vec::new(),
        });
        if !same_codec {
            self.program_changed();
        }
        Ok(())
    }

    /// An `av1C` record: the sequence header for key frames, and the AV1 video descriptor.
    fn set_av1_config(&mut self, frame: &Frame) -> Result<(), TsError> {
        let sequence_header =
            av1::sequence_header_es(&frame.payload).ok_or(TsError::Unsupported {
                what: "AV1 configuration record does not parse",
            })?;
        let descriptors = av1::descriptors(Some(&frame.payload));
        let same = self
            .video
            .as_ref()
            .is_some_and(|v| v.codec == Codec::Av1 && v.descriptors == descriptors);
        self.video = Some(VideoTrack {
            codec: Codec::Av1,
            nalu_length_size: 0,
            parameter_sets: sequence_header.freeze(),
            descriptors,
        });
        if !same {
            self.program_changed();
        }
        Ok(())
    }

    fn set_audio_config(&mut self, frame: &Frame) -> Result<(), TsError> {
        match frame.codec {
            Codec::Aac => {
                let asc = AudioSpecificConfig::parse(&frame.payload).map_err(|_| {
                    TsError::Unsupported {
                        what: "AAC AudioSpecificConfig does not parse",
                    }
                })?;
                let same = self.audio.as_ref().is_some_and(|a| a.codec == Codec::Aac);
                self.audio = Some(AudioTrack {
                    codec: Codec::Aac,
                    stream_type: stream_type::AAC_ADTS,
                    asc: Some(asc),
                });
                if !same {
                    self.program_changed();
                }
                Ok(())
            }
            _ => Err(TsError::Unsupported {
                what: "audio codec not carried in TS",
            }),
        }
    }

    fn program_changed(&mut self) {
        self.pmt_version = (self.pmt_version + 1) & 0x1F;
        self.psi_dirty = true;
    }

    fn mux_video(&mut self, frame: &Frame) -> Result<TsChunk, TsError> {
        if !matches!(frame.codec, Codec::H264 | Codec::H265 | Codec::Av1) {
            return Err(TsError::Unsupported {
                what: "video codec not carried in TS",
            });
        }
        if self.video.as_ref().map(|v| v.codec) != Some(frame.codec) {
            // No configuration record: parameter sets must be in band.
            self.video = Some(VideoTrack::in_band(frame.codec));
            self.program_changed();
        }
        let Some(track) = self.video.as_ref() else {
            return Ok(TsChunk::default());
        };
        let hevc = track.codec == Codec::H265;
        let mut es = std::mem::take(&mut self.scratch);
        es.clear();
        es.reserve(frame.payload.len() + track.parameter_sets.len() + 64);
        let mut stream_id = STREAM_ID_VIDEO;
        if track.codec == Codec::Av1 {
            stream_id = STREAM_ID_PRIVATE_1;
            let written =
                av1::put_access_unit(&mut es, &frame.payload, frame.key, &track.parameter_sets);
            if written.is_err() {
                self.scratch = es;
                return Err(TsError::Unsupported {
                    what: "AV1 frame is not a sequence of OBUs",
                });
            }
        } else {
            if hevc {
                es.put_slice(&[0, 0, 0, 1, 0x46, 0x01, 0x50]);
            } else {
                es.put_slice(&[0, 0, 0, 1, 0x09, 0xF0]);
            }
            if frame.key {
                es.put_slice(&track.parameter_sets);
            }
            for nal in split_avcc(&frame.payload, track.nalu_length_size) {
                let nal = nal.map_err(|_| TsError::Unsupported {
                    what: "video frame has a broken NAL unit length",
                })?;
                let is_aud = if hevc {
                    h265::nal_type(&nal) == Some(35)
                } else {
                    h264::nal_type(&nal) == Some(9)
                };
                if !is_aud {
                    es.put_slice(&[0, 0, 0, 1]);
                    es.put_slice(&nal);
                }
            }
        }
        let rap = frame.key;
        let mut out = BytesMut::with_capacity(packets_for(es.len() + 19) * TS_PACKET_LEN + 376);
        if rap || self.psi_dirty {
            self.write_psi(&mut out);
        }
        self.write_pes(&mut out, IDX_VIDEO, stream_id, frame, &es, true, rap);
        self.scratch = es;
        Ok(TsChunk {
            bytes: out.freeze(),
            random_access: rap,
        })
    }

    fn mux_audio(&mut self, frame: &Frame) -> Result<TsChunk, TsError> {
        let mut es = std::mem::take(&mut self.scratch);
        es.clear();
        match frame.codec {
            Codec::Aac => {
                let asc = self.audio.as_ref().and_then(|a| a.asc.as_ref()).ok_or(
                    TsError::Unsupported {
                        what: "AAC frame before its AudioSpecificConfig",
                    },
                )?;
                if frame.payload.len() > ADTS_MAX_PAYLOAD {
                    self.scratch = es;
                    return Err(TsError::Unsupported {
                        what: "AAC frame too long for ADTS",
                    });
                }
                es.reserve(frame.payload.len() + 7);
                es.put_slice(&asc.adts_header(frame.payload.len()));
                es.put_slice(&frame.payload);
            }
            Codec::Mp3 => {
                let header =
                    mp3::parse_header(&frame.payload).map_err(|_| TsError::Unsupported {
                        what: "MP3 frame header does not parse",
                    })?;
                let st = if header.sample_rate >= 32_000 {
                    stream_type::MPEG1_AUDIO
                } else {
                    stream_type::MPEG2_AUDIO
                };
                if self.audio.as_ref().map(|a| a.stream_type) != Some(st) {
                    self.audio = Some(AudioTrack {
                        codec: Codec::Mp3,
                        stream_type: st,
                        asc: None,
                    });
                    self.program_changed();
                }
                es.put_slice(&frame.payload);
            }
            Codec::Opus => {
                if self.audio.as_ref().map(|a| a.codec) != Some(Codec::Opus) {
                    self.audio = Some(AudioTrack {
                        codec: Codec::Opus,
                        stream_type: stream_type::PRIVATE_DATA,
                        asc: None,
                    });
                    self.program_changed();
                }
                // opus_control_header: prefix 0x3FF, no trims, no extension; then au_size as
                // bytes of 255 and the rest.
                let len = frame.payload.len();
                es.reserve(2 + len / 255 + 1 + len);
                es.put_slice(&[0x7F, 0xE0]);
                es.put_bytes(0xFF, len / 255);
                es.put_u8((len % 255) as u8);
                es.put_slice(&frame.payload);
            }
            Codec::G711A | Codec::G711U => {
                self.scratch = es;
                return Err(TsError::Unsupported {
                    what: "MPEG-TS has no G.711 mapping that players read",
                });
            }
            _ => {
                self.scratch = es;
                return Err(TsError::Unsupported {
                    what: "audio codec not carried in TS",
                });
            }
        }
        let pcr = self.video.is_none();
        let rap = pcr
            && match self.last_psi_dts {
                None => true,
                Some(t) => !(0..AUDIO_ONLY_PSI_INTERVAL_MS).contains(&frame.dts.saturating_sub(t)),
            };
        let mut out = BytesMut::with_capacity(packets_for(es.len() + 14) * TS_PACKET_LEN + 376);
        if rap || self.psi_dirty {
            if rap {
                self.last_psi_dts = Some(frame.dts);
            }
            self.write_psi(&mut out);
        }
        let stream_id = if frame.codec == Codec::Opus {
            STREAM_ID_PRIVATE_1
        } else {
            STREAM_ID_AUDIO
        };
        self.write_pes(&mut out, IDX_AUDIO, stream_id, frame, &es, pcr, rap);
        self.scratch = es;
        Ok(TsChunk {
            bytes: out.freeze(),
            random_access: rap,
        })
    }

    fn next_cc(&mut self, idx: usize) -> u8 {
        let cc = self.cc[idx];
        self.cc[idx] = (cc + 1) & 0x0F;
        cc
    }

    fn write_psi(&mut self, out: &mut BytesMut) {
        self.psi_dirty = false;
        let mut pat = Vec::with_capacity(16);
        pat.extend_from_slice(&[0x00, 0xB0, 13, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01]);
        pat.extend_from_slice(&[0xE0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
        self.write_section(out, IDX_PAT, &mut pat);

        let pcr_pid = if self.video.is_some() {
            VIDEO_PID
        } else {
            AUDIO_PID
        };
        let mut streams: Vec<(u8, u16, &[u8])> = Vec::new();
        if let Some(v) = &self.video {
            let st = match v.codec {
                Codec::H265 => stream_type::H265,
                Codec::Av1 => stream_type::PRIVATE_DATA,
                _ => stream_type::H264,
            };
            streams.push((st, VIDEO_PID, &v.descriptors));
        }
        if let Some(a) = &self.audio {
            let descriptors: &[u8] = if a.codec == Codec::Opus {
                &OPUS_DESCRIPTORS
            } else {
                &[]
            };
            streams.push((a.stream_type, AUDIO_PID, descriptors));
        }
        let section_len = 9 + streams.iter().map(|(_, _, d)| 5 + d.len()).sum::<usize>() + 4;
        let mut pmt = Vec::with_capacity(section_len + 3);
        pmt.extend_from_slice(&[0x02, 0xB0, section_len as u8, 0x00, 0x01]);
        pmt.extend_from_slice(&[0xC1 | (self.pmt_version << 1), 0x00, 0x00]);
        pmt.extend_from_slice(&[0xE0 | (pcr_pid >> 8) as u8, pcr_pid as u8, 0xF0, 0x00]);
        for (st, pid, descriptors) in streams {
            let info = descriptors.len() as u8;
            pmt.extend_from_slice(&[st, 0xE0 | (pid >> 8) as u8, pid as u8, 0xF0, info]);
            pmt.extend_from_slice(descriptors);
        }
        self.write_section(out, IDX_PMT, &mut pmt);
    }

    /// Writes one PSI section (CRC appended here) in one packet.
    fn write_section(&mut self, out: &mut BytesMut, idx: usize, section: &mut Vec<u8>) {
        let crc = crc32_mpeg2(section);
        section.extend_from_slice(&crc.to_be_bytes());
        let pid = PIDS[idx];
        let cc = self.next_cc(idx);
        let start = out.len();
        out.put_slice(&[
            SYNC_BYTE,
            0x40 | (pid >> 8) as u8,
            pid as u8,
            0x10 | cc,
            0x00,
        ]);
        out.put_slice(section);
        out.put_bytes(0xFF, TS_PACKET_LEN - (out.len() - start));
    }

    #[allow(clippy::too_many_arguments)]
    fn write_pes(
        &mut self,
        out: &mut BytesMut,
        idx: usize,
        stream_id: u8,
        frame: &Frame,
        es: &[u8],
        pcr: bool,
        rap: bool,
    ) {
        let pts = ms_to_90k(frame.pts.saturating_add(TIMESTAMP_OFFSET_MS));
        let dts = ms_to_90k(frame.dts.saturating_add(TIMESTAMP_OFFSET_MS));
        // AV1 (private data on the video PID) marks its access units as aligned, and key frames
        // with the elementary stream priority, as its TS carriage spec asks.
        let av1 = idx == IDX_VIDEO && stream_id == STREAM_ID_PRIVATE_1;
        let mut header = [0u8; 19];
        header[..4].copy_from_slice(&[0, 0, 1, stream_id]);
        header[6] = if av1 { 0x84 } else { 0x80 };
        let header_len = if pts != dts {
            header[7] = 0xC0;
            header[8] = 10;
            write_timestamp(&mut header[9..14], 0x3, pts);
            write_timestamp(&mut header[14..19], 0x1, dts);
            19
        } else {
            header[7] = 0x80;
            header[8] = 5;
            write_timestamp(&mut header[9..14], 0x2, pts);
            14
        };
        let pes_len = header_len - 6 + es.len();
        if pes_len <= 0xFFFF {
            header[4..6].copy_from_slice(&(pes_len as u16).to_be_bytes());
        }
        let pcr_value =
            pcr.then(|| ms_to_90k(frame.dts.saturating_add(TIMESTAMP_OFFSET_MS - PCR_LEAD_MS)));
        let discontinuity = std::mem::take(&mut self.fresh[idx]);
        let pid = PIDS[idx];
        let header = &header[..header_len];
        let total = header_len + es.len();
        let mut pos = 0;
        while pos < total {
            let first = pos == 0;
            let remaining = total - pos;
            let flags = if first {
                (if discontinuity { 0x80 } else { 0 })
                    | (if rap { 0x40 } else { 0 })
                    | (if rap && av1 { 0x20 } else { 0 })
                    | (if pcr_value.is_some() { 0x10 } else { 0 })
            } else {
                0
            };
            let pcr_here = if first { pcr_value } else { None };
            let af_needed = if flags != 0 {
                2 + if pcr_here.is_some() { 6 } else { 0 }
            } else {
                0
            };
            let space = PAYLOAD_LEN - af_needed;
            let (af_total, payload) = if remaining >= space {
                (af_needed, space)
            } else {
                (PAYLOAD_LEN - remaining, remaining)
            };
            let cc = self.next_cc(idx);
            let afc = if af_total > 0 { 0x30 } else { 0x10 };
            out.put_slice(&[
                SYNC_BYTE,
                (if first { 0x40 } else { 0 }) | (pid >> 8) as u8,
                pid as u8,
                afc | cc,
            ]);
            if af_total > 0 {
                out.put_u8((af_total - 1) as u8);
                if af_total > 1 {
                    out.put_u8(flags);
                    let mut used = 2;
                    if let Some(base) = pcr_here {
                        out.put_slice(&[
                            (base >> 25) as u8,
                            (base >> 17) as u8,
                            (base >> 9) as u8,
                            (base >> 1) as u8,
                            ((base & 1) << 7) as u8 | 0x7E,
                            0,
                        ]);
                        used += 6;
                    }
                    out.put_bytes(0xFF, af_total - used);
                }
            }
            // Copy `payload` bytes of header ++ es starting at `pos`.
            let mut need = payload;
            let mut p = pos;
            if p < header_len {
                let n = need.min(header_len - p);
                out.put_slice(header.get(p..p + n).unwrap_or_default());
                need -= n;
                p += n;
            }
            if need > 0 {
                let s = p - header_len;
                out.put_slice(es.get(s..s + need).unwrap_or_default());
            }
            pos += payload;
        }
    }
}

/// Packets needed for `len` bytes of PES (a rough upper bound for reserving).
fn packets_for(len: usize) -> usize {
    len / (PAYLOAD_LEN - 8) + 2
}

/// Writes a 33-bit timestamp with its 4-bit prefix and marker bits (5 bytes).
fn write_timestamp(out: &mut [u8], prefix: u8, ts: u64) {
    let bytes = [
        (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8 & 0x7F) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8 & 0x7F) << 1) | 1,
    ];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b;
    }
}
