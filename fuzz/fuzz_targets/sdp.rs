//! Arbitrary bytes into the SDP parser: never panics; every track that parses generates a
//! description that parses again to the same codec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_core::sdp::{resolve_control, SessionDescription};

fuzz_target!(|data: &[u8]| {
    let Ok(sd) = SessionDescription::parse(data) else {
        return;
    };
    let _ = sd.to_text();
    for (i, m) in sd.media.iter().enumerate() {
        let _ = resolve_control("rtsp://h/x", m.control().unwrap_or(""));
        if let Ok(params) = m.track_params(i) {
            let gen = SessionDescription::for_tracks("t", &[(params.clone(), "c".to_owned())]);
            let back = SessionDescription::parse(gen.to_text().as_bytes()).expect("own sdp parses");
            let again = back.media[0].track_params(0).expect("own track parses");
            assert_eq!(again.codec.codec(), params.codec.codec());
            assert_eq!(again.clock_rate, params.clock_rate);
        }
    }
});
