//! RTMP chunk stream throughput: decode, stateful encode and the fan-out path (`chunk_body`);
//! and the cost of decoding the `connect` command ffmpeg really sends (from the captured fixture).
//!
//! Run with `cargo bench -p rill-core --bench rtmp`. Plain `Instant` timing, best of several runs;
//! MB/s are 10^6 bytes per second of wire bytes (decode) or payload bytes (encode).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rill_core::limits::Limits;
use rill_core::rtmp::chunk::{chunk_body, write_fmt0_header, ChunkDecoder, ChunkEncoder};
use rill_core::rtmp::command::Command;
use rill_core::rtmp::handshake::HANDSHAKE_LEN;

const RUNS: usize = 5;
/// How much the "socket" hands the decoder at a time.
const READ_SIZE: usize = 64 * 1024;

struct Workload {
    name: &'static str,
    csid: u32,
    type_id: u8,
    len: usize,
    count: usize,
}

const WORKLOADS: [Workload; 2] = [
    Workload {
        name: "video 1 MB",
        csid: 6,
        type_id: 9,
        len: 1 << 20,
        count: 32,
    },
    Workload {
        name: "audio 200 B",
        csid: 4,
        type_id: 8,
        len: 200,
        count: 100_000,
    },
];

fn best<F: FnMut()>(mut f: F) -> Duration {
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// The wire bytes of `w` at `chunk_size`, starting with the Set Chunk Size message.
fn encode_stream(w: &Workload, chunk_size: u32) -> BytesMut {
    let mut enc = ChunkEncoder::new();
    let mut out = BytesMut::new();
    enc.encode(2, 0, 1, 0, &chunk_size.to_be_bytes(), &mut out);
    enc.set_chunk_size(chunk_size);
    let payload = vec![0x5Au8; w.len];
    for i in 0..w.count {
        enc.encode(w.csid, i as u32 * 23, w.type_id, 1, &payload, &mut out);
    }
    out
}

fn bench_decode(w: &Workload, chunk_size: u32) {
    let wire = encode_stream(w, chunk_size);
    let limits = Limits::default();
    let d = best(|| {
        let mut dec = ChunkDecoder::new(&limits);
        let mut n = 0;
        for piece in wire.chunks(READ_SIZE) {
            dec.push(piece);
            while let Ok(Some(m)) = dec.poll_message() {
                n += 1;
                black_box(m);
            }
        }
        assert_eq!(n, w.count + 1);
    });
    println!(
        "decode  {:<12} chunk {:>5}: {:>8.0} MB/s  ({:.1} MB wire in {:.1} ms)",
        w.name,
        chunk_size,
        mbps(wire.len(), d),
        wire.len() as f64 / 1e6,
        d.as_secs_f64() * 1e3
    );
}

fn bench_encode(w: &Workload, chunk_size: u32) {
    let payload = vec![0x5Au8; w.len];
    let total = w.len * w.count;
    let mut out = BytesMut::with_capacity(total * 2);
    let d = best(|| {
        out.clear();
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(chunk_size);
        for i in 0..w.count {
            enc.encode(w.csid, i as u32 * 23, w.type_id, 1, &payload, &mut out);
        }
        black_box(&out);
    });
    println!(
        "encode  {:<12} chunk {:>5}: {:>8.0} MB/s  (stateful encoder)",
        w.name,
        chunk_size,
        mbps(total, d)
    );
    let d = best(|| {
        out.clear();
        for i in 0..w.count {
            let body = chunk_body(w.csid, &payload, chunk_size);
            write_fmt0_header(w.csid, i as u32 * 23, w.len as u32, w.type_id, 1, &mut out);
            black_box(body);
        }
        black_box(&out);
    });
    println!(
        "encode  {:<12} chunk {:>5}: {:>8.0} MB/s  (chunk_body + write_fmt0_header)",
        w.name,
        chunk_size,
        mbps(total, d)
    );
}

/// Decodes ffmpeg's captured `connect` (chunk + AMF + typed command) many times; prints ns each.
fn bench_connect() {
    let capture: &[u8] = include_bytes!("../tests/fixtures/ffmpeg_publish_c2s.bin");
    let after_handshake = &capture[HANDSHAKE_LEN..];
    let mut decoder = ChunkDecoder::new(&Limits::default());
    decoder.push(after_handshake);
    let connect = match decoder.poll_message() {
        Ok(Some(m)) => m,
        other => panic!("fixture does not start with a message: {other:?}"),
    };
    assert!(matches!(
        Command::decode(&connect.payload, false, 32),
        Ok(Command::Connect { .. })
    ));
    const N: usize = 20_000;
    let d = best(|| {
        for _ in 0..N {
            black_box(Command::decode(black_box(&connect.payload), false, 32).ok());
        }
    });
    println!(
        "connect command decode ({} bytes AMF0): {:.0} ns each",
        connect.payload.len(),
        d.as_nanos() as f64 / N as f64
    );
    // fmt-0 header (12 bytes), the payload, and a 1-byte fmt-3 header per further 128-byte chunk.
    let wire_len = 12 + connect.payload.len() + (connect.payload.len() - 1) / 128;
    let mut check = ChunkDecoder::new(&Limits::default());
    check.push(&after_handshake[..wire_len]);
    assert_eq!(check.poll_message().ok().flatten(), Some(connect.clone()));
    let d = best(|| {
        for _ in 0..N {
            let mut dec = ChunkDecoder::new(&Limits::default());
            dec.push(&after_handshake[..wire_len]);
            let m = dec.poll_message().ok().flatten();
            black_box(m.map(|m| Command::decode(&m.payload, false, 32).ok()));
        }
    });
    println!(
        "connect chunk + command decode: {:.0} ns each",
        d.as_nanos() as f64 / N as f64
    );
}

fn main() {
    bench_connect();
    for w in &WORKLOADS {
        for chunk_size in [4096, 128] {
            bench_decode(w, chunk_size);
        }
    }
    for w in &WORKLOADS {
        for chunk_size in [4096, 128] {
            bench_encode(w, chunk_size);
        }
    }
}
