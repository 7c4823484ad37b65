//! Arbitrary bytes through the codec header parsers. Nothing may panic; configuration records
//! and AudioSpecificConfigs that parse must survive serialize -> parse unchanged. AV1: the OBU
//! framing, and the bytes as an AV1 frame through the TS muxer and the RTP packetizer (both
//! re-frame what a publisher sent), which succeed exactly when the OBUs split.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rill_core::codec::{
    aac::AudioSpecificConfig, av1, avcc_to_annexb, h264, h265, latm, mp3, split_annexb,
    split_avcc,
};
use rill_core::media::{Codec, Frame, FrameKind};
use rill_core::rtp::{CodecParams, Packetizer, TrackParams};
use rill_core::ts::TsMuxer;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = h264::AvcConfig::parse(data) {
        assert_eq!(h264::AvcConfig::parse(&c.to_record()).as_ref(), Ok(&c));
    }
    if let Ok(c) = h265::HevcConfig::parse(data) {
        assert_eq!(h265::HevcConfig::parse(&c.to_record()).as_ref(), Ok(&c));
    }
    if let Ok(c) = AudioSpecificConfig::parse(data) {
        assert_eq!(AudioSpecificConfig::parse(&c.to_bytes()).as_ref(), Ok(&c));
        let _ = c.adts_header(data.len());
    }
    if let Ok(info) = h264::parse_sps(data) {
        assert!(info.width > 0 && info.height > 0);
    }
    if let Ok(info) = h265::parse_sps(data) {
        assert!(info.width > 0 && info.height > 0);
    }
    let _ = mp3::parse_header(data);
    if let Ok(seq) = av1::parse_config_record(data) {
        assert!(seq.width > 0 && seq.height > 0);
    }
    av1_framing(data);
    // A StreamMuxConfig that parses gives an AudioSpecificConfig that writes back the same.
    if let Ok(c) = latm::StreamMuxConfig::parse(data) {
        let again = latm::StreamMuxConfig::write(&c.audio_specific_config).expect("writes");
        let back = latm::StreamMuxConfig::parse(&again).expect("parses");
        assert_eq!(back.audio_specific_config, c.audio_specific_config);
    }
    let _ = latm::split_audio_mux_element(&Bytes::copy_from_slice(data), data.len() as u8 & 3);

    // NAL unit framing: every length size, and Annex B splitting.
    let bytes = Bytes::copy_from_slice(data);
    for length_size in 1..=4u8 {
        let nals: Vec<_> = split_avcc(&bytes, length_size).collect();
        let mut annexb = BytesMut::new();
        let converted = avcc_to_annexb(data, length_size, &mut annexb);
        assert_eq!(converted.is_ok(), nals.iter().all(|n| n.is_ok()));
    }
    for nal in split_annexb(&bytes) {
        assert!(!nal.is_empty() && nal.last() != Some(&0));
    }
});

fn av1_framing(data: &[u8]) {
    let mut end = 0;
    let mut whole = true;
    for obu in av1::split_obus(data) {
        match obu {
            Ok(o) => {
                assert_eq!(o.raw, &data[end..end + o.raw.len()]);
                assert!(o.raw.ends_with(o.payload) && o.raw.starts_with(o.header));
                end += o.raw.len();
            }
            Err(_) => whole = false,
        }
    }
    assert!(!whole || end == data.len());
    if let Some((v, n)) = av1::read_leb128(data) {
        let mut again = Vec::new();
        av1::write_leb128(&mut again, v);
        assert_eq!(again.len(), av1::leb128_len(v));
        assert!(again.len() <= n);
    }
    let frame = Frame {
        codec: Codec::Av1,
        kind: FrameKind::Coded,
        dts: 0,
        pts: 0,
        key: data.first().is_some_and(|b| b & 1 == 1),
        payload: Bytes::copy_from_slice(data),
    };
    let mut ts = TsMuxer::new();
    let muxed = ts.mux(&frame);
    assert_eq!(muxed.is_ok(), whole);
    if let Ok(chunk) = muxed {
        assert_eq!(chunk.bytes.len() % 188, 0);
    }
    let params = TrackParams {
        payload_type: 96,
        clock_rate: 90_000,
        channels: 1,
        codec: CodecParams::Av1 {
            config: Bytes::copy_from_slice(data),
        },
    };
    let mtu = 16 + usize::from(data.last().copied().unwrap_or_default());
    let mut packetizer = Packetizer::new(&params, 1, 0, 0, mtu).expect("a valid clock rate");
    let mut packets = Vec::new();
    assert_eq!(packetizer.push(&frame, &mut packets).is_ok(), whole);
    for p in &packets {
        assert!(p.header_len() + p.payload.len() <= mtu);
    }
}
