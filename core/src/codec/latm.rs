//! MPEG-4 audio LATM (ISO/IEC 14496-3 section 1.7.3): the StreamMuxConfig that RTP's
//! `MP4A-LATM` payload format (RFC 3016 / RFC 6416) carries in the SDP `config` parameter, and
//! the AudioMuxElements of its payloads. Only what RTP senders use is handled: audioMuxVersion
//! 0, one program and layer, all streams with the same time framing, frameLengthType 0
//! (lengths in PayloadLengthInfo), configuration out of band (`cpresent=0`).

use bytes::{BufMut, Bytes, BytesMut};

use super::bits::BitReader;
use super::CodecError;

const CODEC: &str = "latm";

/// What a StreamMuxConfig says, reduced to what depacketizing needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMuxConfig {
    /// The AudioSpecificConfig inside, as its own byte-aligned buffer (what FLV and MP4 carry).
    pub audio_specific_config: Bytes,
    /// `numSubFrames`: each AudioMuxElement carries this many access units plus one.
    pub sub_frames: u8,
}

fn unsupported(field: &'static str, value: u32, r: &BitReader<'_>) -> CodecError {
    CodecError::Invalid {
        codec: CODEC,
        field,
        value: u64::from(value),
        offset: r.position() / 8,
    }
}

fn object_type(r: &mut BitReader<'_>) -> Result<u32, CodecError> {
    let t = r.read_bits(5, "audioObjectType")?;
    Ok(if t == 31 {
        32 + r.read_bits(6, "audioObjectTypeExt")?
    } else {
        t
    })
}

fn sampling_frequency(r: &mut BitReader<'_>) -> Result<(), CodecError> {
    if r.read_bits(4, "samplingFrequencyIndex")? == 15 {
        r.skip(24, "samplingFrequency")?;
    }
    Ok(())
}

/// Reads an AudioSpecificConfig (the general audio object types; no program config element,
/// no error protection) and leaves `r` at its end.
fn skip_audio_specific_config(r: &mut BitReader<'_>) -> Result<(), CodecError> {
    let mut aot = object_type(r)?;
    sampling_frequency(r)?;
    let channels = r.read_bits(4, "channelConfiguration")?;
    let explicit_sbr = aot == 5 || aot == 29;
    if explicit_sbr {
        // Explicit SBR / PS: the extension rate, then the core object type.
        sampling_frequency(r)?;
        aot = object_type(r)?;
        if aot == 22 {
            r.skip(4, "extensionChannelConfiguration")?;
        }
    }
    if !matches!(aot, 1..=4 | 6 | 7 | 17 | 19..=23) {
        return Err(unsupported("audioObjectType", aot, r));
    }
    if channels == 0 {
        return Err(unsupported("channelConfiguration", 0, r));
    }
    // GASpecificConfig.
    r.skip(1, "frameLengthFlag")?;
    if r.read_bit("dependsOnCoreCoder")? {
        r.skip(14, "coreCoderDelay")?;
    }
    let extension = r.read_bit("extensionFlag")?;
    if aot == 6 || aot == 20 {
        r.skip(3, "layerNr")?;
    }
    if extension {
        if aot == 22 {
            r.skip(16, "numOfSubFrame and layer_length")?;
        }
        if matches!(aot, 17 | 19 | 20 | 23) {
            r.skip(3, "resilience flags")?;
        }
        r.skip(1, "extensionFlag3")?;
    }
    if matches!(aot, 17 | 19..=23) {
        let ep = r.read_bits(2, "epConfig")?;
        if ep >= 2 {
            return Err(unsupported("epConfig", ep, r));
        }
    }
    if !explicit_sbr {
        skip_sync_extension(r)?;
    }
    Ok(())
}

/// Skips the backward-compatible SBR/PS signalling that may follow a GASpecificConfig
/// (`syncExtensionType` 0x2B7, and 0x548 for PS). Encoders (FLV files from ffmpeg, GStreamer's
/// `aacparse`) write it to say "no SBR" explicitly; a StreamMuxConfig's own next fields
/// (frameLengthType 0, buffer fullness) never start with 0x2B7.
fn skip_sync_extension(r: &mut BitReader<'_>) -> Result<(), CodecError> {
    let mut peek = r.clone();
    if r.remaining() < 16 || peek.read_bits(11, "syncExtensionType")? != 0x2B7 {
        return Ok(());
    }
    r.skip(11, "syncExtensionType")?;
    let extension = object_type(r)?;
    if extension == 5 {
        if r.read_bit("sbrPresentFlag")? {
            sampling_frequency(r)?;
            let mut peek = r.clone();
            if r.remaining() >= 12 && peek.read_bits(11, "syncExtensionType")? == 0x548 {
                r.skip(12, "psPresentFlag")?;
            }
        }
    } else if extension == 22 {
        if r.read_bit("sbrPresentFlag")? {
            sampling_frequency(r)?;
        }
        r.skip(4, "extensionChannelConfiguration")?;
    }
    Ok(())
}

/// Copies bits `start..end` of `data` into a new byte-aligned buffer (zero-padded).
fn copy_bits(data: &[u8], start: usize, end: usize) -> Result<Bytes, CodecError> {
    let mut r = BitReader::new(data, CODEC);
    r.skip(start, "AudioSpecificConfig")?;
    let mut out = BytesMut::with_capacity((end - start).div_ceil(8));
    let mut left = end - start;
    while left > 0 {
        let n = left.min(8);
        let v = r.read_bits(n as u32, "AudioSpecificConfig")? as u8;
        out.put_u8(v << (8 - n));
        left -= n;
    }
    Ok(out.freeze())
}

impl StreamMuxConfig {
    /// Parses a StreamMuxConfig. Fields after the AudioSpecificConfig (frame length type, buffer
    /// fullness, other data, CRC) may be missing: GStreamer's payloader cuts them off.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        let mut r = BitReader::new(data, CODEC);
        let version = r.read_bits(1, "audioMuxVersion")?;
        if version != 0 {
            return Err(unsupported("audioMuxVersion", version, &r));
        }
        if !r.read_bit("allStreamsSameTimeFraming")? {
            return Err(unsupported("allStreamsSameTimeFraming", 0, &r));
        }
        let sub_frames = r.read_bits(6, "numSubFrames")? as u8;
        let programs = r.read_bits(4, "numProgram")?;
        if programs != 0 {
            return Err(unsupported("numProgram", programs + 1, &r));
        }
        let layers = r.read_bits(3, "numLayer")?;
        if layers != 0 {
            return Err(unsupported("numLayer", layers + 1, &r));
        }
        let start = r.position();
        skip_audio_specific_config(&mut r)?;
        let end = r.position();
        if r.remaining() >= 3 {
            let frame_length_type = r.read_bits(3, "frameLengthType")?;
            if frame_length_type != 0 {
                return Err(unsupported("frameLengthType", frame_length_type, &r));
            }
        }
        Ok(StreamMuxConfig {
            audio_specific_config: copy_bits(data, start, end)?,
            sub_frames,
        })
    }

    /// The StreamMuxConfig that carries `asc` (an AudioSpecificConfig), one access unit per
    /// AudioMuxElement.
    pub fn write(asc: &[u8]) -> Result<Bytes, CodecError> {
        let mut r = BitReader::new(asc, CODEC);
        skip_audio_specific_config(&mut r)?;
        let asc_bits = r.position();
        let mut w = BitWriter::default();
        w.put(0, 1); // audioMuxVersion
        w.put(1, 1); // allStreamsSameTimeFraming
        w.put(0, 6); // numSubFrames
        w.put(0, 4); // numProgram
        w.put(0, 3); // numLayer
        let mut a = BitReader::new(asc, CODEC);
        let mut left = asc_bits;
        while left > 0 {
            let n = left.min(8);
            w.put(a.read_bits(n as u32, "AudioSpecificConfig")?, n);
            left -= n;
        }
        w.put(0, 3); // frameLengthType
        w.put(0xFF, 8); // latmBufferFullness
        w.put(0, 1); // otherDataPresent
        w.put(0, 1); // crcCheckPresent
        Ok(w.finish())
    }
}

#[derive(Default)]
struct BitWriter {
    out: BytesMut,
    acc: u8,
    bits: usize,
}

impl BitWriter {
    fn put(&mut self, value: u32, n: usize) {
        for i in (0..n).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1) as u8;
            self.bits += 1;
            if self.bits == 8 {
                self.out.put_u8(self.acc);
                self.acc = 0;
                self.bits = 0;
            }
        }
    }

    fn finish(mut self) -> Bytes {
        if self.bits > 0 {
            self.out.put_u8(self.acc << (8 - self.bits));
        }
        self.out.freeze()
    }
}

/// Splits one AudioMuxElement (configuration out of band) into its `sub_frames + 1` access
/// units, each a slice of `element`. Bytes after the last one (other data) are ignored.
pub fn split_audio_mux_element(element: &Bytes, sub_frames: u8) -> Result<Vec<Bytes>, CodecError> {
    let mut out = Vec::with_capacity(usize::from(sub_frames) + 1);
    let mut pos = 0;
    for _ in 0..=sub_frames {
        // PayloadLengthInfo: bytes of 255 add up until one below 255 ends the length.
        let mut len = 0usize;
        loop {
            let b = *element.get(pos).ok_or(CodecError::Truncated {
                codec: CODEC,
                field: "PayloadLengthInfo",
                offset: pos,
            })?;
            pos += 1;
            len += usize::from(b);
            if b != 0xFF {
                break;
            }
        }
        let end = pos + len;
        if end > element.len() {
            return Err(CodecError::Truncated {
                codec: CODEC,
                field: "PayloadMux",
                offset: pos,
            });
        }
        out.push(element.slice(pos..end));
        pos = end;
    }
    Ok(out)
}

/// Writes the AudioMuxElement (configuration out of band) of one access unit.
pub fn audio_mux_element(au: &[u8], out: &mut BytesMut) {
    out.reserve(au.len() / 255 + 1 + au.len());
    out.put_bytes(0xFF, au.len() / 255);
    out.put_u8((au.len() % 255) as u8);
    out.put_slice(au);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gstreamer_config_is_cut_short_and_still_parses() {
        // rtpmp4apay for AAC LC 44.1 kHz stereo (AudioSpecificConfig 12 10): `config=40002420`.
        let c = StreamMuxConfig::parse(&[0x40, 0x00, 0x24, 0x20]).unwrap();
        assert_eq!(&c.audio_specific_config[..], &[0x12, 0x10]);
        assert_eq!(c.sub_frames, 0);
        // Written back whole: with frame length type, buffer fullness and the two flags.
        let full = StreamMuxConfig::write(&[0x12, 0x10]).unwrap();
        assert_eq!(&full[..], &[0x40, 0x00, 0x24, 0x20, 0x3F, 0xC0]);
        assert_eq!(StreamMuxConfig::parse(&full).unwrap(), c);
    }

    #[test]
    fn sync_extension_after_the_audio_specific_config_is_kept() {
        // rtpmp4apay for the AudioSpecificConfig 12 10 56 e5 00 (AAC LC 44.1 kHz stereo, "no
        // SBR" signalled by sync extension 0x2B7, as ffmpeg writes FLV files): it was refused
        // as frameLengthType 2.
        let c = StreamMuxConfig::parse(&[0x40, 0x00, 0x24, 0x20, 0xad, 0xca, 0x00]).unwrap();
        assert_eq!(
            &c.audio_specific_config[..],
            &[0x12, 0x10, 0x56, 0xe5, 0x00]
        );
        let full = StreamMuxConfig::write(&[0x12, 0x10, 0x56, 0xe5, 0x00]).unwrap();
        assert_eq!(StreamMuxConfig::parse(&full).unwrap(), c);
    }

    #[test]
    fn unsupported_forms_are_refused() {
        assert!(
            StreamMuxConfig::parse(&[0x80, 0, 0, 0]).is_err(),
            "version 1"
        );
        assert!(
            StreamMuxConfig::parse(&[0x40, 0x10, 0x24, 0x20]).is_err(),
            "2 programs"
        );
        assert!(StreamMuxConfig::parse(&[0x40]).is_err(), "truncated");
    }

    #[test]
    fn elements_split_on_255_runs() {
        let au = vec![7u8; 300];
        let mut e = BytesMut::new();
        audio_mux_element(&au, &mut e);
        assert_eq!(&e[..2], &[0xFF, 45]);
        let parts = split_audio_mux_element(&e.freeze(), 0).unwrap();
        assert_eq!(parts, vec![Bytes::from(au)]);
        assert!(split_audio_mux_element(&Bytes::from_static(&[0xFF, 3, 1]), 0).is_err());
    }
}
