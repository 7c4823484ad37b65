//! Split invariance of the engine's media path: a real RTMP publish (client session, the
//! recorded publish's first frames) followed by fuzzed messages and arbitrary bytes is fed to
//! one engine as the publisher sent it, and the same bytes to a second engine cut at fuzzed
//! points. HTTP-FLV and HTTP-TS players of both engines must receive the same bytes, and the
//! FLV player's bytes must demux into the media sent.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_core::dump::MediaSummary;
use rill_core::engine::{ConnId, Engine, EngineConfig, Listener};
use rill_core::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use rill_fuzz::engine::{dump_media, Piece, SplitInput, PRELUDE_MESSAGES};

const SEED: u64 = 0x5EED;
const PUBLISHER: ConnId = 1;
const PLAYERS: [(ConnId, &str); 2] = [(2, "/live/s.flv"), (3, "/live/s.ts")];

/// The engine and what its players received.
struct Side {
    engine: Engine,
    got: [Vec<u8>; 2],
}

impl Side {
    fn new() -> Self {
        // The players' lag bounds in media time skip on what is queued at an instant, which
        // depends on how input arrives: out of this target's comparison.
        let mut config = EngineConfig::default();
        config.hub.player_lag_soft_ms = 1 << 40;
        config.hub.player_lag_hard_ms = 1 << 40;
        let mut engine = Engine::new(config, SEED);
        let peer = "127.0.0.1:40000".parse().expect("address");
        engine.handle_accept(PUBLISHER, Listener::Rtmp, peer, 0);
        Side {
            engine,
            got: [Vec::new(), Vec::new()],
        }
    }

    fn attach_players(&mut self) {
        let peer = "127.0.0.1:40001".parse().expect("address");
        for (id, path) in PLAYERS {
            self.engine.handle_accept(id, Listener::Http, peer, 0);
            let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
            self.engine.handle_input(id, request.as_bytes(), 0);
            self.poll();
        }
    }

    /// Drains outputs and everything the players can get; returns what the publisher got.
    fn poll(&mut self) -> Vec<Bytes> {
        while self.engine.poll_output().is_some() {}
        for (i, (id, _)) in PLAYERS.iter().enumerate() {
            let mut out = Vec::new();
            self.engine.poll_transmit(*id, usize::MAX, &mut out);
            out.iter().for_each(|b| self.got[i].extend_from_slice(b));
        }
        let mut out = Vec::new();
        self.engine.poll_transmit(PUBLISHER, usize::MAX, &mut out);
        while self.engine.poll_output().is_some() {}
        out
    }

    fn feed(&mut self, data: &[u8]) {
        self.engine.handle_input(PUBLISHER, data, 0);
        self.poll();
    }
}

fuzz_target!(|input: SplitInput| {
    // The publisher talks to the first engine, which gets its bytes as they were sent.
    let mut a = Side::new();
    if input.players_first {
        a.attach_players();
    }
    let config = ClientConfig::new("live", "rtmp://127.0.0.1/live");
    let mut client = ClientSession::new(config, &[7u8; 1536], 0);
    client.publish("s");
    let mut sent: Vec<u8> = Vec::new();
    let mut publishing = false;
    for _ in 0..32 {
        let out: Vec<Bytes> = std::iter::from_fn(|| client.poll_transmit()).collect();
        for b in &out {
            sent.extend_from_slice(b);
            a.engine.handle_input(PUBLISHER, b, 0);
        }
        for b in a.poll() {
            client
                .handle_input(&b, 0)
                .expect("the publisher reads the server");
        }
        while let Some(e) = client.poll_event() {
            publishing |= matches!(e, ClientEvent::Publishing { .. });
        }
        if publishing && out.is_empty() {
            break;
        }
    }
    assert!(publishing, "the publish was refused");
    for m in &dump_media()[..PRELUDE_MESSAGES] {
        client
            .send_media(m.type_id, m.timestamp, &m.body)
            .expect("publishing");
        while let Some(b) = client.poll_transmit() {
            sent.extend_from_slice(&b);
            a.feed(&b);
        }
    }
    let prelude_len = sent.len();
    if !input.players_first {
        a.attach_players();
    }
    let mut ts = dump_media()[PRELUDE_MESSAGES - 1].timestamp;
    for piece in input.pieces.iter().take(64) {
        let bytes: Vec<u8> = match piece {
            Piece::Media { media, delta } => {
                let (type_id, body) = media.message();
                ts = ts.saturating_add_signed(i32::from(*delta));
                let _ = client.send_media(type_id, ts, &body);
                std::iter::from_fn(|| client.poll_transmit())
                    .flat_map(|b| b.to_vec())
                    .collect()
            }
            Piece::Raw(data) => data.clone(),
        };
        sent.extend_from_slice(&bytes);
        a.feed(&bytes);
    }

    // The second engine gets the same bytes in the fuzzed pieces.
    let mut b = Side::new();
    if input.players_first {
        b.attach_players();
    }
    let mut cuts = input.cuts.iter().cycle();
    let (prelude, rest) = sent.split_at(prelude_len);
    for (k, section) in [prelude, rest].into_iter().enumerate() {
        if k == 1 && !input.players_first {
            b.attach_players();
        }
        let mut section = section;
        while !section.is_empty() {
            let n = cuts
                .next()
                .map_or(section.len(), |c| 1 + usize::from(*c) % 8192);
            let (now, later) = section.split_at(n.min(section.len()));
            b.feed(now);
            section = later;
        }
    }

    assert!(
        a.got[0] == b.got[0],
        "HTTP-FLV output depends on how the input was cut"
    );
    assert!(
        a.got[1] == b.got[1],
        "HTTP-TS output depends on how the input was cut"
    );
    let flv = MediaSummary::from_http_flv(&a.got[0]);
    assert!(flv.error.is_none(), "{:?}", flv.error);
    assert!(flv.key_frames >= 1, "the FLV player got no key frame");
});
