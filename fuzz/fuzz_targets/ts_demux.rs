#![no_main]
//! Arbitrary bytes into the TS demuxer, split at an arbitrary point: no panic, bounded PES, and
//! the same PES packets whatever the split.

use libfuzzer_sys::fuzz_target;
use rill_core::ts::TsDemuxer;

const MAX_PES: usize = 1 << 16;

fn run(parts: &[&[u8]]) -> Result<Vec<rill_core::ts::Pes>, rill_core::ts::TsError> {
    let mut d = TsDemuxer::new(MAX_PES);
    let mut out = Vec::new();
    for p in parts {
        d.push(p)?;
        while let Some(pes) = d.poll_pes() {
            assert!(pes.data.len() <= MAX_PES);
            out.push(pes);
        }
    }
    d.flush()?;
    while let Some(pes) = d.poll_pes() {
        out.push(pes);
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut) * 3 % (rest.len() + 1);
    let (a, b) = rest.split_at(cut);
    let whole = run(&[rest]);
    let split = run(&[a, b]);
    assert_eq!(whole.is_ok(), split.is_ok());
    if let (Ok(w), Ok(s)) = (whole, split) {
        assert_eq!(w, s);
    }
});
