//! Arbitrary bytes through the codec header parsers. Nothing may panic; configuration records
//! and AudioSpecificConfigs that parse must survive serialize -> parse unchanged.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rill_core::codec::{
    aac::AudioSpecificConfig, av1, avcc_to_annexb, h264, h265, latm, mp3, split_annexb,
    split_avcc,
};

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
