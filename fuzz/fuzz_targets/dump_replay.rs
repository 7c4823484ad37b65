//! Debug dumps: arbitrary bytes read as a dump (header, records), re-encoded and read again
//! (round trip of every good record), then replayed through a fresh engine.
//! Invariants: no panic; good records survive encode/decode unchanged; a replay reports one
//! connection per dump and never feeds more bytes than the dump holds.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rill_core::dump::{encode_header, encode_record, replay, Dump, DumpReader};
use rill_core::engine::EngineConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = DumpReader::new(data) else {
        return;
    };
    let mut again = BytesMut::new();
    encode_header(reader.header(), &mut again);
    let mut good = Vec::new();
    for record in reader.clone() {
        let Ok(r) = record else { break };
        encode_record(r.offset_ms, r.kind, r.data, &mut again);
        good.push(r);
    }
    let reread = DumpReader::new(&again).expect("a written header reads back");
    assert_eq!(reread.header(), reader.header());
    let back: Vec<_> = reread
        .map(|r| r.expect("written records read back"))
        .collect();
    assert_eq!(back, good);

    let dump = Dump::parse(Bytes::copy_from_slice(data)).expect("the header parsed above");
    let fed: usize = dump.records().map(|r| r.data.len()).sum();
    let report = replay(&[dump], EngineConfig::default());
    assert_eq!(report.connections.len(), 1);
    assert!(report.connections[0].bytes_in <= fed as u64);
});
