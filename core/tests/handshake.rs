//! RTMP handshake: client <-> server in memory, every split of the input, bad input, and real
//! byte streams captured from ffmpeg and rtmpdump (see tests/fixtures/README.md).

use rill_core::rtmp::handshake::{
    ClientHandshake, HandshakeError, HandshakeKind, ServerHandshake, HANDSHAKE_LEN,
    HANDSHAKE_PACKET_LEN, HANDSHAKE_RANDOM_LEN,
};

const FFMPEG_PUBLISH_C2S: &[u8] = include_bytes!("fixtures/ffmpeg_publish_c2s.bin");
const FFMPEG_PUBLISH_S2C: &[u8] = include_bytes!("fixtures/ffmpeg_publish_s2c.bin");
const RTMPDUMP_PLAY_C2S: &[u8] = include_bytes!("fixtures/rtmpdump_play_c2s.bin");
const RTMPDUMP_PLAY_S2C: &[u8] = include_bytes!("fixtures/rtmpdump_play_s2c.bin");
const RTMPDUMP_FP9_PLAY_C2S: &[u8] = include_bytes!("fixtures/rtmpdump_fp9_play_c2s.bin");
const RTMPDUMP_FP9_PLAY_S2C: &[u8] = include_bytes!("fixtures/rtmpdump_fp9_play_s2c.bin");

/// Deterministic "randomness" for the tests.
fn random(seed: u8) -> Vec<u8> {
    (0..HANDSHAKE_RANDOM_LEN)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn drain_server(server: &mut ServerHandshake) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = server.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

fn drain_client(client: &mut ClientHandshake) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = client.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

/// Feed `input` in pieces of `step` bytes (draining after each); returns bytes consumed and output.
fn feed_server(server: &mut ServerHandshake, input: &[u8], step: usize) -> (usize, Vec<u8>) {
    let mut used = 0;
    let mut out = Vec::new();
    for piece in input.chunks(step) {
        let n = server.read(piece).unwrap();
        assert!(n <= piece.len());
        used += n;
        out.extend(drain_server(server));
        if n < piece.len() {
            // Stopped early: only possible once the handshake is done.
            assert!(server.is_done());
            break;
        }
    }
    (used, out)
}

fn feed_client(client: &mut ClientHandshake, input: &[u8], step: usize) -> (usize, Vec<u8>) {
    let mut used = 0;
    let mut out = Vec::new();
    for piece in input.chunks(step) {
        let n = client.read(piece).unwrap();
        assert!(n <= piece.len());
        used += n;
        out.extend(drain_client(client));
        if n < piece.len() {
            assert!(client.is_done());
            break;
        }
    }
    (used, out)
}

/// Run a full handshake in memory; the peers' first chunks are appended to C2 and S2 to check
/// they are left unconsumed. Returns both machines.
fn round_trip(client_kind: HandshakeKind, step: usize) -> (ClientHandshake, ServerHandshake) {
    let mut client = ClientHandshake::with_kind(&random(1), 1000, client_kind);
    let mut server = ServerHandshake::new(&random(2), 5000);

    let c0c1 = drain_client(&mut client);
    assert_eq!(c0c1.len(), 1 + HANDSHAKE_PACKET_LEN);
    assert_eq!(c0c1[0], 3);
    let (used, s012) = feed_server(&mut server, &c0c1, step);
    assert_eq!(used, c0c1.len());
    assert!(!server.is_done());
    assert_eq!(s012.len(), HANDSHAKE_LEN);
    assert_eq!(server.kind(), client_kind);

    let mut s_stream = s012.clone();
    s_stream.extend_from_slice(&[0x02, 0, 0, 0]); // the server's first chunk
    let (used, c2) = feed_client(&mut client, &s_stream, step);
    assert_eq!(used, HANDSHAKE_LEN, "the client must stop at the end of S2");
    assert!(client.is_done());
    assert_eq!(c2.len(), HANDSHAKE_PACKET_LEN);
    assert_eq!(client.kind(), client_kind);
    assert_eq!(client.s2_valid(), Some(true));

    let mut c_stream = c2.clone();
    c_stream.extend_from_slice(&[0x03, 0, 0, 0]); // the client's pipelined connect
    let (used, more) = feed_server(&mut server, &c_stream, step);
    assert_eq!(
        used, HANDSHAKE_PACKET_LEN,
        "the server must stop at the end of C2"
    );
    assert!(more.is_empty());
    assert!(server.is_done());
    assert_eq!(server.read(&[0x03]), Ok(0));
    assert_eq!(client.read(&[0x02]), Ok(0));
    (client, server)
}

const KINDS: [HandshakeKind; 3] = [
    HandshakeKind::Simple,
    HandshakeKind::ComplexSchema0,
    HandshakeKind::ComplexSchema1,
];

#[test]
fn round_trip_all_at_once() {
    for kind in KINDS {
        round_trip(kind, usize::MAX);
    }
}

#[test]
fn round_trip_one_byte_at_a_time() {
    for kind in KINDS {
        round_trip(kind, 1);
    }
}

#[test]
fn round_trip_odd_pieces() {
    for kind in KINDS {
        for step in [2, 7, 1535, 1536, 1537, 3072, 3073] {
            round_trip(kind, step);
        }
    }
}

#[test]
fn client_new_complex_uses_the_digest_first_layout() {
    let mut server = ServerHandshake::new(&random(2), 0);
    let mut client = ClientHandshake::new(&random(1), 0, true);
    server.read(&drain_client(&mut client)).unwrap();
    assert_eq!(server.kind(), HandshakeKind::ComplexSchema1);

    let mut server = ServerHandshake::new(&random(2), 0);
    let mut client = ClientHandshake::new(&random(1), 0, false);
    let c0c1 = drain_client(&mut client);
    assert_eq!(c0c1[5..9], [0, 0, 0, 0]);
    server.read(&c0c1).unwrap();
    assert_eq!(server.kind(), HandshakeKind::Simple);
}

/// Split the whole client stream (C0 C1 C2 + a chunk) at every offset into two reads.
#[test]
fn server_split_at_every_offset() {
    for kind in [HandshakeKind::Simple, HandshakeKind::ComplexSchema1] {
        let mut client = ClientHandshake::with_kind(&random(1), 7, kind);
        let mut reference = ServerHandshake::new(&random(2), 9);
        let c0c1 = drain_client(&mut client);
        reference.read(&c0c1).unwrap();
        let s012 = drain_server(&mut reference);
        client.read(&s012).unwrap();
        let mut stream = c0c1.clone();
        stream.extend(drain_client(&mut client));
        stream.extend_from_slice(&[0x03, 0xAA]);

        for split in 0..=stream.len() {
            let mut server = ServerHandshake::new(&random(2), 9);
            let (a, b) = stream.split_at(split);
            let n1 = server.read(a).unwrap();
            let n2 = server.read(b).unwrap();
            assert_eq!(n1 + n2, HANDSHAKE_LEN, "split at {split}");
            assert!(server.is_done());
            assert_eq!(server.kind(), kind);
            assert_eq!(drain_server(&mut server), s012, "split at {split}");
        }
    }
}

#[test]
fn client_split_at_every_offset() {
    for kind in [HandshakeKind::Simple, HandshakeKind::ComplexSchema0] {
        let mut reference = ClientHandshake::with_kind(&random(1), 7, kind);
        let mut server = ServerHandshake::new(&random(2), 9);
        server.read(&drain_client(&mut reference)).unwrap();
        let mut stream = drain_server(&mut server);
        reference.read(&stream).unwrap();
        let c2 = drain_client(&mut reference);
        stream.extend_from_slice(&[0x02, 0xAA]);

        for split in 0..=stream.len() {
            let mut client = ClientHandshake::with_kind(&random(1), 7, kind);
            drain_client(&mut client);
            let (a, b) = stream.split_at(split);
            let n1 = client.read(a).unwrap();
            let mid = drain_client(&mut client);
            let n2 = client.read(b).unwrap();
            assert_eq!(n1 + n2, HANDSHAKE_LEN, "split at {split}");
            assert!(client.is_done());
            assert_eq!(client.s2_valid(), Some(true));
            let mut sent = mid;
            sent.extend(drain_client(&mut client));
            assert_eq!(sent, c2, "split at {split}");
        }
    }
}

#[test]
fn garbage_version_byte_is_refused() {
    for (version, encrypted) in [
        (6u8, true),
        (8, true),
        (9, true),
        (0, false),
        (4, false),
        (b'G', false),
    ] {
        let mut server = ServerHandshake::new(&random(0), 0);
        let err = server.read(&[version, 0, 0]).unwrap_err();
        match err {
            HandshakeError::Encrypted { field, version: v } => {
                assert!(encrypted);
                assert_eq!((field, v), ("C0", version));
            }
            HandshakeError::UnsupportedVersion { field, version: v } => {
                assert!(!encrypted);
                assert_eq!((field, v), ("C0", version));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("offset 0"));
        // The error sticks and nothing is sent.
        assert_eq!(server.read(&[3]), Err(err));
        assert_eq!(server.poll_transmit(), None);
        assert!(!server.is_done());
    }
    let mut client = ClientHandshake::new(&random(0), 0, true);
    let err = client.read(b"HTTP/1.1 400").unwrap_err();
    assert_eq!(
        err,
        HandshakeError::UnsupportedVersion {
            field: "S0",
            version: b'H'
        }
    );
    assert!(err.to_string().contains("HTTP"));
}

#[test]
fn truncated_input_waits_for_more() {
    let mut client = ClientHandshake::new(&random(1), 0, true);
    let c0c1 = drain_client(&mut client);
    for len in [0, 1, 2, 100, 1536] {
        let mut server = ServerHandshake::new(&random(2), 0);
        assert_eq!(server.read(&c0c1[..len]), Ok(len));
        assert_eq!(server.poll_transmit(), None, "no answer before all of C1");
        assert!(!server.is_done());
    }
    let mut server = ServerHandshake::new(&random(2), 0);
    server.read(&c0c1).unwrap();
    let s012 = drain_server(&mut server);
    for len in [0, 1, 1536, 1537, 3072] {
        let mut c = client.clone();
        assert_eq!(c.read(&s012[..len]), Ok(len));
        assert!(!c.is_done());
        assert_eq!(c.s2_valid(), None);
        let c2 = drain_client(&mut c);
        assert_eq!(
            c2.len(),
            if len >= 1537 { 1536 } else { 0 },
            "C2 right after S1"
        );
    }
}

#[test]
fn tampered_s2_is_tolerated_but_reported() {
    for kind in [HandshakeKind::Simple, HandshakeKind::ComplexSchema1] {
        let mut client = ClientHandshake::with_kind(&random(1), 0, kind);
        let mut server = ServerHandshake::new(&random(2), 0);
        server.read(&drain_client(&mut client)).unwrap();
        let mut s012 = drain_server(&mut server);
        let last = s012.len() - 1;
        s012[last] ^= 0xFF;
        assert_eq!(client.read(&s012), Ok(HANDSHAKE_LEN));
        assert!(client.is_done());
        assert_eq!(client.s2_valid(), Some(false));
        assert_eq!(drain_client(&mut client).len(), HANDSHAKE_PACKET_LEN);
    }
}

#[test]
fn client_with_version_but_no_valid_digest_gets_simple_answer() {
    let mut client = ClientHandshake::with_kind(&random(1), 0, HandshakeKind::ComplexSchema1);
    let mut c0c1 = drain_client(&mut client);
    // Corrupt a byte outside the digest: the digest no longer validates in either layout.
    c0c1[1 + 1535] ^= 1;
    let mut server = ServerHandshake::new(&random(2), 0);
    server.read(&c0c1).unwrap();
    assert_eq!(server.kind(), HandshakeKind::Simple);
    let s012 = drain_server(&mut server);
    assert_eq!(
        s012[1 + 4..1 + 8],
        [0, 0, 0, 0],
        "simple S1 has a zero version field"
    );
    assert_eq!(s012[1 + 1536..], c0c1[1..], "simple S2 echoes C1");
}

/// Feed a captured client->server stream to the server; returns it for more checks.
fn server_on_capture(capture: &[u8], kind: HandshakeKind) {
    for step in [capture.len(), 1, 1000] {
        let mut server = ServerHandshake::new(&random(3), 0);
        let (used, out) = feed_server(&mut server, capture, step);
        assert!(server.is_done());
        assert_eq!(used, HANDSHAKE_LEN);
        assert_eq!(server.kind(), kind);
        assert_eq!(out.len(), HANDSHAKE_LEN);
        // What follows C2 is the connect command: chunk basic header fmt 0, csid 3, then a
        // type-0 message header with type id 20 (AMF0 command) and "connect".
        let rest = &capture[used..];
        assert_eq!(rest[0], 0x03, "fmt 0 on csid 3");
        assert_eq!(rest[7], 20, "AMF0 command message");
        assert_eq!(&rest[12..22], b"\x02\x00\x07connect");
    }
}

/// Feed a captured server->client stream to a client; the server in every capture (ffmpeg's
/// listen mode) answers with the simple form.
fn client_on_capture(capture: &[u8], complex: bool) -> ClientHandshake {
    let mut client = ClientHandshake::new(&random(4), 0, complex);
    drain_client(&mut client);
    let (used, c2) = feed_client(&mut client, capture, 1);
    assert!(client.is_done());
    assert_eq!(used, HANDSHAKE_LEN);
    assert_eq!(client.kind(), HandshakeKind::Simple);
    assert_eq!(
        c2,
        capture[1..1 + HANDSHAKE_PACKET_LEN],
        "simple C2 echoes S1"
    );
    // The server's first chunk: Window Acknowledgement Size (type 5) on csid 2, fmt 0.
    let rest = &capture[used..];
    assert_eq!(rest[0], 0x02);
    assert_eq!(rest[7], 5);
    client
}

#[test]
fn ffmpeg_publish_client_stream() {
    // ffmpeg as a client sends a complex C1 in the digest-first layout.
    server_on_capture(FFMPEG_PUBLISH_C2S, HandshakeKind::ComplexSchema1);
}

#[test]
fn rtmpdump_play_client_stream() {
    // Plain rtmpdump (librtmp) sends a simple C1 with a zero version field.
    assert_eq!(RTMPDUMP_PLAY_C2S[5..9], [0, 0, 0, 0]);
    server_on_capture(RTMPDUMP_PLAY_C2S, HandshakeKind::Simple);
}

#[test]
fn rtmpdump_fp9_play_client_stream() {
    // With a SWF hash, librtmp sends its Flash Player 9 handshake.
    server_on_capture(RTMPDUMP_FP9_PLAY_C2S, HandshakeKind::ComplexSchema1);
}

#[test]
fn ffmpeg_server_streams_to_client() {
    for (capture, complex) in [
        (FFMPEG_PUBLISH_S2C, true),
        (RTMPDUMP_PLAY_S2C, false),
        (RTMPDUMP_FP9_PLAY_S2C, true),
    ] {
        client_on_capture(capture, complex);
    }
}

#[test]
fn rtmpdump_capture_replayed_exactly() {
    // Rebuild rtmpdump's simple C1 from its time and random bytes: our client then sends the same
    // C0+C1, and ffmpeg's S2 (an echo of C1) validates.
    let time = u32::from_be_bytes(RTMPDUMP_PLAY_C2S[1..5].try_into().unwrap());
    let mut client = ClientHandshake::new(&RTMPDUMP_PLAY_C2S[9..1537], time, false);
    assert_eq!(drain_client(&mut client), RTMPDUMP_PLAY_C2S[..1537]);
    assert_eq!(client.read(RTMPDUMP_PLAY_S2C), Ok(HANDSHAKE_LEN));
    assert_eq!(client.s2_valid(), Some(true));
    assert_eq!(
        drain_client(&mut client),
        RTMPDUMP_PLAY_C2S[1537..HANDSHAKE_LEN],
        "same C2 as rtmpdump sent"
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any randomness, epochs, form and piece sizes: both sides finish, agree on the form,
        /// and the client finds S2 valid.
        #[test]
        fn any_round_trip(
            client_random in proptest::collection::vec(any::<u8>(), 0..=HANDSHAKE_RANDOM_LEN + 8),
            server_random in proptest::collection::vec(any::<u8>(), HANDSHAKE_RANDOM_LEN),
            epochs in any::<(u32, u32)>(),
            kind in 0usize..3,
            step in 1usize..4000,
        ) {
            let kind = KINDS[kind];
            let mut client = ClientHandshake::with_kind(&client_random, epochs.0, kind);
            let mut server = ServerHandshake::new(&server_random, epochs.1);
            let (used, s012) = feed_server(&mut server, &drain_client(&mut client), step);
            prop_assert_eq!(used, 1 + HANDSHAKE_PACKET_LEN);
            prop_assert_eq!(server.kind(), kind);
            let (used, c2) = feed_client(&mut client, &s012, step);
            prop_assert_eq!(used, HANDSHAKE_LEN);
            prop_assert!(client.is_done());
            prop_assert_eq!(client.kind(), kind);
            prop_assert_eq!(client.s2_valid(), Some(true));
            let (used, _) = feed_server(&mut server, &c2, step);
            prop_assert_eq!(used, HANDSHAKE_PACKET_LEN);
            prop_assert!(server.is_done());
        }
    }
}
