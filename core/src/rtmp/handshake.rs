//! The RTMP handshake: C0 C1 C2 from the client, S0 S1 S2 from the server, in the simple form of
//! the RTMP 1.0 specification and in the "complex" (digest) form that Flash Player introduced
//! and that ffmpeg, OBS and librtmp clients use.
//!
//! Layout (sizes in bytes):
//! - C0 / S0: 1, the version, 3 for plain RTMP. 6, 8 and 9 announce RTMPE (encrypted RTMP).
//! - C1 / S1: 1536 = time (4) + version field (4, zero in the simple form) + 1528 random.
//! - C2 / S2: 1536. Simple form: an echo of the peer's C1/S1. Complex form: 1504 random + a
//!   32-byte HMAC-SHA256 of those 1504 bytes, keyed with HMAC-SHA256(peer's digest) under our full key.
//!
//! In the complex form C1 and S1 carry a 32-byte digest inside the random part: an
//! HMAC-SHA256 of the other 1504 bytes, keyed with the first 30 bytes of the Flash Player key
//! (client) or the first 36 bytes of the Flash Media Server key (server). Its position is
//! computed from four bytes, in one of two layouts of the two 764-byte blocks after the version
//! field (see [`HandshakeKind`]).
//!
//! Both machines are sans-IO: feed received bytes with `read`, then drain `poll_transmit` until
//! it returns `None` before feeding more. `read` consumes only handshake bytes: what follows C2
//! (or S2), typically the first chunks pipelined by the peer, is left for the chunk decoder.
//! Nothing is buffered beyond one 1536-byte packet.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of caller-supplied randomness a handshake needs (the random part of C1 or S1).
pub const HANDSHAKE_RANDOM_LEN: usize = 1528;

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_PACKET_LEN: usize = 1536;

/// The only RTMP version byte accepted in C0 and S0.
pub const RTMP_VERSION: u8 = 3;

/// Bytes of the handshake the server reads (C0 + C1 + C2) and the client reads (S0 + S1 + S2).
pub const HANDSHAKE_LEN: usize = 1 + 2 * HANDSHAKE_PACKET_LEN;

const PACKET: usize = HANDSHAKE_PACKET_LEN;
const DIGEST_LEN: usize = 32;
/// Length of the random part of a complex C2/S2 (the digest follows it).
const RESPONSE_RANDOM_LEN: usize = PACKET - DIGEST_LEN;
/// Each of the two blocks after time and version: 764 bytes, and the digest lies within the
/// first 728 bytes after a block's 4 offset bytes.
const DIGEST_SPAN: usize = 728;

/// The 32 constant bytes that end both the Flash Player and the Flash Media Server key.
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
const PLAYER_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
const SERVER_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";

/// Version field of a complex S1 (a media server version; any non-zero value marks the complex form).
const SERVER_VERSION: [u8; 4] = [5, 0, 3, 1];
/// Version field of a complex C1 (a Flash Player version; any non-zero value marks the complex form).
const CLIENT_VERSION: [u8; 4] = [10, 0, 32, 18];

/// Which handshake form the peer used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandshakeKind {
    /// The RTMP 1.0 specification's form: no digest, C2/S2 echo the peer's C1/S1.
    Simple,
    /// Complex, "key first" layout: the digest block is the second 764-byte block; the digest
    /// offset is `sum(bytes 772..776) % 728 + 776`.
    ComplexSchema0,
    /// Complex, "digest first" layout (Flash Player, ffmpeg): the digest block is the first one;
    /// the digest offset is `sum(bytes 8..12) % 728 + 12`.
    ComplexSchema1,
}

impl HandshakeKind {
    /// Where the 4 bytes that give the digest offset start, for the complex kinds.
    fn offset_base(self) -> Option<usize> {
        match self {
            HandshakeKind::Simple => None,
            HandshakeKind::ComplexSchema0 => Some(772),
            HandshakeKind::ComplexSchema1 => Some(8),
        }
    }

    /// The other complex layout (a peer may answer in either).
    fn other(self) -> HandshakeKind {
        match self {
            HandshakeKind::ComplexSchema0 => HandshakeKind::ComplexSchema1,
            _ => HandshakeKind::ComplexSchema0,
        }
    }
}

/// Why a handshake failed. Every error is about the version byte at offset 0 of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// C0/S0 asks for RTMPE (encrypted RTMP: 6, 8 or 9), which is not supported.
    Encrypted {
        /// `"C0"` or `"S0"`.
        field: &'static str,
        /// The version byte received.
        version: u8,
    },
    /// C0/S0 holds a version other than 3.
    UnsupportedVersion {
        /// `"C0"` or `"S0"`.
        field: &'static str,
        /// The version byte received.
        version: u8,
    },
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HandshakeError::Encrypted { field, version } => write!(
                f,
                "rtmp handshake: {field} version {version:#04x} at offset 0 requests RTMPE \
                 (encrypted RTMP), which is not supported; use rtmp:// or rtmps://"
            ),
            HandshakeError::UnsupportedVersion { field, version } => {
                write!(
                    f,
                    "rtmp handshake: unsupported {field} version {version:#04x} at offset 0, expected 3"
                )?;
                if version.is_ascii_graphic() {
                    write!(
                        f,
                        " (the peer sent text starting with {:?}: another protocol, e.g. HTTP, on the RTMP port?)",
                        char::from(version)
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

fn check_version(field: &'static str, version: u8) -> Result<(), HandshakeError> {
    match version {
        RTMP_VERSION => Ok(()),
        6 | 8 | 9 => Err(HandshakeError::Encrypted { field, version }),
        _ => Err(HandshakeError::UnsupportedVersion { field, version }),
    }
}

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of the concatenation of `parts`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn player_key() -> [u8; 62] {
    let mut key = [0; 62];
    key[..30].copy_from_slice(PLAYER_TEXT);
    key[30..].copy_from_slice(&KEY_TAIL);
    key
}

fn server_key() -> [u8; 68] {
    let mut key = [0; 68];
    key[..36].copy_from_slice(SERVER_TEXT);
    key[36..].copy_from_slice(&KEY_TAIL);
    key
}

/// Offset of the digest in a C1/S1 of the given complex layout; `None` for [`HandshakeKind::Simple`].
///
/// The result is at most 772 + 4 + 727 = 1503, so the digest always fits in the packet.
fn digest_offset(packet: &[u8; PACKET], kind: HandshakeKind) -> Option<usize> {
    let base = kind.offset_base()?;
    let sum: usize = packet[base..base + 4].iter().map(|&b| usize::from(b)).sum();
    Some(base + 4 + sum % DIGEST_SPAN)
}

/// HMAC of a C1/S1 without the 32 digest bytes at `offset` (`offset` <= 1503, see [`digest_offset`]).
fn packet_digest(packet: &[u8; PACKET], offset: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac(key, &[&packet[..offset], &packet[offset + DIGEST_LEN..]])
}

/// Look for a valid digest in a received C1/S1, trying `first` then the other layout.
fn find_digest(
    packet: &[u8; PACKET],
    key: &[u8],
    first: HandshakeKind,
) -> Option<(HandshakeKind, [u8; DIGEST_LEN])> {
    [first, first.other()].into_iter().find_map(|kind| {
        let offset = digest_offset(packet, kind)?;
        let digest = packet_digest(packet, offset, key);
        (packet[offset..offset + DIGEST_LEN] == digest).then_some((kind, digest))
    })
}

/// Write the digest of an outgoing C1/S1 in the given layout and return it.
fn imprint_digest(
    packet: &mut [u8; PACKET],
    kind: HandshakeKind,
    key: &[u8],
) -> Option<[u8; DIGEST_LEN]> {
    let offset = digest_offset(packet, kind)?;
    let digest = packet_digest(packet, offset, key);
    packet[offset..offset + DIGEST_LEN].copy_from_slice(&digest);
    Some(digest)
}

/// The digest that ends a complex C2/S2: HMAC of its first 1504 bytes under HMAC(peer digest).
fn response_digest(
    random: &[u8],
    peer_digest: &[u8; DIGEST_LEN],
    full_key: &[u8],
) -> [u8; DIGEST_LEN] {
    let key = hmac(full_key, &[peer_digest]);
    hmac(&key, &[random])
}

/// A C1/S1 with `time`, `version` and the caller's randomness. A `random` shorter than
/// [`HANDSHAKE_RANDOM_LEN`] leaves the rest zero; bytes beyond it are ignored.
fn first_packet(time: u32, version: [u8; 4], random: &[u8]) -> [u8; PACKET] {
    let mut packet = [0; PACKET];
    packet[..4].copy_from_slice(&time.to_be_bytes());
    packet[4..8].copy_from_slice(&version);
    let n = random.len().min(HANDSHAKE_RANDOM_LEN);
    packet[8..8 + n].copy_from_slice(&random[..n]);
    packet
}

/// A complex C2/S2: random bytes (reused from our own C1/S1) and the response digest.
fn complex_response(own: &[u8; PACKET], peer_digest: &[u8; DIGEST_LEN], full_key: &[u8]) -> Bytes {
    let random = &own[8..8 + RESPONSE_RANDOM_LEN];
    let mut out = BytesMut::with_capacity(PACKET);
    out.put_slice(random);
    out.put_slice(&response_digest(random, peer_digest, full_key));
    out.freeze()
}

/// Copy from `input` into `buf[*filled..]`; returns how many bytes were taken.
fn fill(buf: &mut [u8; PACKET], filled: &mut usize, input: &[u8]) -> usize {
    let want = PACKET - *filled;
    let n = want.min(input.len());
    buf[*filled..*filled + n].copy_from_slice(&input[..n]);
    *filled += n;
    n
}

#[derive(Clone, Debug)]
enum ServerState {
    /// Waiting for C0.
    C0,
    /// Reading C1 into `buf` (`filled` bytes so far).
    C1,
    /// Skipping C2 (its content is not checked; many clients send garbage); `n` bytes left.
    C2(usize),
    Done,
    Failed(HandshakeError),
}

/// The server side of the handshake.
///
/// Feed received bytes with [`read`](Self::read) and send what [`poll_transmit`](Self::poll_transmit)
/// returns (drain it after every `read`). S0+S1+S2 are produced together once C1 has arrived.
/// The answer follows the client: a complex C1 gets a complex S1/S2 in the same layout, anything
/// else (zero version field, or no digest that validates in either layout) gets the simple
/// answer, with S2 an echo of C1. C2 is read but not checked.
#[derive(Clone)]
pub struct ServerHandshake {
    state: ServerState,
    kind: HandshakeKind,
    /// Our S1, built up front; its digest is added once the client's layout is known.
    s1: [u8; PACKET],
    /// C1 as it arrives.
    buf: [u8; PACKET],
    filled: usize,
    out: BytesMut,
}

impl fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("state", &self.state)
            .field("kind", &self.kind)
            .field("filled", &self.filled)
            .field("pending_out", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl ServerHandshake {
    /// A server handshake waiting for C0.
    ///
    /// `random`: [`HANDSHAKE_RANDOM_LEN`] bytes of caller-supplied randomness for S1 (and the
    /// random part of a complex S2); shorter input is zero-padded. `epoch`: the time field of S1,
    /// conventionally the server's uptime in milliseconds.
    pub fn new(random: &[u8], epoch: u32) -> Self {
        ServerHandshake {
            state: ServerState::C0,
            kind: HandshakeKind::Simple,
            s1: first_packet(epoch, [0; 4], random),
            buf: [0; PACKET],
            filled: 0,
            out: BytesMut::new(),
        }
    }

    /// Feed received bytes; returns how many of `input` were consumed.
    ///
    /// Consumption stops at the end of C2: the rest of `input` (the client's first chunks,
    /// often in the same TCP segment) belongs to the chunk decoder. After the handshake is done
    /// this returns `Ok(0)`. After an error every later call returns the same error.
    pub fn read(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        let mut used = 0;
        loop {
            // `used` never exceeds `input.len()`: each step takes at most what is left.
            let rest = input.get(used..).unwrap_or_default();
            match self.state {
                ServerState::C0 => {
                    let Some(&version) = rest.first() else { break };
                    if let Err(e) = check_version("C0", version) {
                        self.state = ServerState::Failed(e.clone());
                        return Err(e);
                    }
                    used += 1;
                    self.state = ServerState::C1;
                }
                ServerState::C1 => {
                    used += fill(&mut self.buf, &mut self.filled, rest);
                    if self.filled < PACKET {
                        break;
                    }
                    self.answer();
                    self.state = ServerState::C2(PACKET);
                }
                ServerState::C2(left) => {
                    let n = left.min(rest.len());
                    used += n;
                    if n < left {
                        self.state = ServerState::C2(left - n);
                        break;
                    }
                    self.state = ServerState::Done;
                }
                ServerState::Done => break,
                ServerState::Failed(ref e) => return Err(e.clone()),
            }
        }
        Ok(used)
    }

    /// C1 is in `buf`: decide the kind and queue S0+S1+S2.
    fn answer(&mut self) {
        let c1 = &self.buf;
        let complex = if c1[4..8] == [0; 4] {
            None
        } else {
            find_digest(
                c1,
                &player_key()[..PLAYER_TEXT.len()],
                HandshakeKind::ComplexSchema1,
            )
        };
        self.out.reserve(1 + 2 * PACKET);
        self.out.put_u8(RTMP_VERSION);
        match complex {
            Some((kind, client_digest)) => {
                self.kind = kind;
                self.s1[4..8].copy_from_slice(&SERVER_VERSION);
                let key = server_key();
                // `kind` is complex, so a digest offset exists.
                let _ = imprint_digest(&mut self.s1, kind, &key[..SERVER_TEXT.len()]);
                self.out.put_slice(&self.s1);
                self.out
                    .put(complex_response(&self.s1, &client_digest, &key));
            }
            None => {
                self.kind = HandshakeKind::Simple;
                self.out.put_slice(&self.s1);
                self.out.put_slice(c1);
            }
        }
    }

    /// The next bytes to send (S0+S1+S2, once), or `None`.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// True once C2 has been read completely. Pending output may remain: drain `poll_transmit`.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ServerState::Done)
    }

    /// The form the client used; meaningful once C1 has been read (S0+S1+S2 were produced),
    /// [`HandshakeKind::Simple`] before.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }
}

#[derive(Clone, Debug)]
enum ClientState {
    /// Waiting for S0.
    S0,
    /// Reading S1 into `buf`.
    S1,
    /// Reading S2 into `buf`.
    S2,
    Done,
    Failed(HandshakeError),
}

/// The client side of the handshake.
///
/// C0+C1 are available from [`poll_transmit`](Self::poll_transmit) at once; C2 follows as soon as
/// S1 has been read (before S2, as the specification allows). Drain `poll_transmit` after every
/// [`read`](Self::read). S1 and S2 are checked tolerantly: a server whose S1 has no valid digest
/// gets a simple C2 (an echo of S1), and a wrong S2 is reported by
/// [`s2_valid`](Self::s2_valid) but never fails the handshake (many servers send one).
#[derive(Clone)]
pub struct ClientHandshake {
    state: ClientState,
    /// The form of our C1.
    sent: HandshakeKind,
    /// The form of the server's S1.
    kind: HandshakeKind,
    c1: [u8; PACKET],
    /// Our C1 digest (complex C1 only).
    c1_digest: Option<[u8; DIGEST_LEN]>,
    /// S1, then S2, as they arrive.
    buf: [u8; PACKET],
    filled: usize,
    s2_valid: Option<bool>,
    out: BytesMut,
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("state", &self.state)
            .field("sent", &self.sent)
            .field("kind", &self.kind)
            .field("filled", &self.filled)
            .field("s2_valid", &self.s2_valid)
            .field("pending_out", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// A client handshake with C0+C1 ready to send.
    ///
    /// `random`: [`HANDSHAKE_RANDOM_LEN`] bytes of caller-supplied randomness (zero-padded if
    /// shorter); `epoch`: the time field of C1. `complex` selects a digest C1 in the "digest
    /// first" layout ([`HandshakeKind::ComplexSchema1`]) as Flash Player and ffmpeg send;
    /// otherwise a simple C1 with a zero version field.
    pub fn new(random: &[u8], epoch: u32, complex: bool) -> Self {
        let kind = if complex {
            HandshakeKind::ComplexSchema1
        } else {
            HandshakeKind::Simple
        };
        Self::with_kind(random, epoch, kind)
    }

    /// Like [`new`](Self::new), choosing the form of C1 exactly (either complex layout, or simple).
    pub fn with_kind(random: &[u8], epoch: u32, kind: HandshakeKind) -> Self {
        let version = match kind {
            HandshakeKind::Simple => [0; 4],
            _ => CLIENT_VERSION,
        };
        let mut c1 = first_packet(epoch, version, random);
        let c1_digest = imprint_digest(&mut c1, kind, &player_key()[..PLAYER_TEXT.len()]);
        let mut out = BytesMut::with_capacity(1 + PACKET);
        out.put_u8(RTMP_VERSION);
        out.put_slice(&c1);
        ClientHandshake {
            state: ClientState::S0,
            sent: kind,
            kind: HandshakeKind::Simple,
            c1,
            c1_digest,
            buf: [0; PACKET],
            filled: 0,
            s2_valid: None,
            out,
        }
    }

    /// Feed received bytes; returns how many of `input` were consumed.
    ///
    /// Consumption stops at the end of S2: what follows (the server's first chunks) belongs to
    /// the chunk decoder. After the handshake is done this returns `Ok(0)`. After an error every
    /// later call returns the same error.
    pub fn read(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        let mut used = 0;
        loop {
            // `used` never exceeds `input.len()`: each step takes at most what is left.
            let rest = input.get(used..).unwrap_or_default();
            match self.state {
                ClientState::S0 => {
                    let Some(&version) = rest.first() else { break };
                    if let Err(e) = check_version("S0", version) {
                        self.state = ClientState::Failed(e.clone());
                        return Err(e);
                    }
                    used += 1;
                    self.state = ClientState::S1;
                }
                ClientState::S1 => {
                    used += fill(&mut self.buf, &mut self.filled, rest);
                    if self.filled < PACKET {
                        break;
                    }
                    self.answer_s1();
                    self.filled = 0;
                    self.state = ClientState::S2;
                }
                ClientState::S2 => {
                    used += fill(&mut self.buf, &mut self.filled, rest);
                    if self.filled < PACKET {
                        break;
                    }
                    self.check_s2();
                    self.state = ClientState::Done;
                }
                ClientState::Done => break,
                ClientState::Failed(ref e) => return Err(e.clone()),
            }
        }
        Ok(used)
    }

    /// S1 is in `buf`: decide the server's form and queue C2.
    fn answer_s1(&mut self) {
        let s1 = &self.buf;
        let first = match self.sent {
            HandshakeKind::Simple => HandshakeKind::ComplexSchema1,
            sent => sent,
        };
        let server_digest = if s1[4..8] == [0; 4] {
            None
        } else {
            find_digest(s1, &server_key()[..SERVER_TEXT.len()], first)
        };
        match server_digest {
            Some((kind, digest)) => {
                self.kind = kind;
                self.out
                    .put(complex_response(&self.c1, &digest, &player_key()));
            }
            None => {
                self.kind = HandshakeKind::Simple;
                self.out.put_slice(s1);
            }
        }
    }

    /// S2 is in `buf`: record whether it is what the server should have sent.
    fn check_s2(&mut self) {
        let s2 = &self.buf;
        let valid = match (self.kind, self.c1_digest) {
            (HandshakeKind::Simple, _) | (_, None) => s2[8..] == self.c1[8..],
            (_, Some(c1_digest)) => {
                let (random, digest) = s2.split_at(RESPONSE_RANDOM_LEN);
                digest == response_digest(random, &c1_digest, &server_key())
            }
        };
        self.s2_valid = Some(valid);
    }

    /// The next bytes to send (C0+C1 first, then C2), or `None`.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// True once S2 has been read completely. Pending output (C2) may remain: drain
    /// `poll_transmit`.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }

    /// The form the server answered with; meaningful once S1 has been read,
    /// [`HandshakeKind::Simple`] before.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }

    /// Whether S2 matched what we expected (the complex response digest, or an echo of our C1
    /// random bytes in the simple form); `None` until S2 has been read. Informational only:
    /// a wrong S2 does not fail the handshake.
    pub fn s2_valid(&self) -> Option<bool> {
        self.s2_valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_offsets_stay_inside_the_packet() {
        let packet = [0xFF; PACKET];
        assert_eq!(
            digest_offset(&packet, HandshakeKind::ComplexSchema1),
            Some(8 + 4 + 1020 % 728)
        );
        let worst = digest_offset(&packet, HandshakeKind::ComplexSchema0).unwrap();
        assert!(worst + DIGEST_LEN <= PACKET);
        let mut packet = [0; PACKET];
        packet[772..776].copy_from_slice(&[0xFF, 0xFF, 0xD9, 0x00]); // sum 727: the largest offset
        assert_eq!(
            digest_offset(&packet, HandshakeKind::ComplexSchema0),
            Some(772 + 4 + 727)
        );
        assert_eq!(digest_offset(&packet, HandshakeKind::Simple), None);
    }

    #[test]
    fn keys_have_the_documented_lengths_and_prefixes() {
        assert_eq!(&player_key()[..30], b"Genuine Adobe Flash Player 001");
        assert_eq!(&server_key()[..36], b"Genuine Adobe Flash Media Server 001");
        assert_eq!(player_key()[30..], server_key()[36..]);
    }

    #[test]
    fn imprinted_digest_is_found_in_its_own_layout_only_when_valid() {
        let random: Vec<u8> = (0..HANDSHAKE_RANDOM_LEN)
            .map(|i| (i * 7 + 3) as u8)
            .collect();
        for kind in [HandshakeKind::ComplexSchema0, HandshakeKind::ComplexSchema1] {
            let mut packet = first_packet(1, CLIENT_VERSION, &random);
            let key = &player_key()[..30];
            let digest = imprint_digest(&mut packet, kind, key).unwrap();
            assert_eq!(
                find_digest(&packet, key, kind.other()),
                Some((kind, digest))
            );
            // The server key does not validate a client digest.
            assert_eq!(find_digest(&packet, &server_key()[..36], kind), None);
            let offset = digest_offset(&packet, kind).unwrap();
            packet[offset] ^= 1;
            assert_eq!(find_digest(&packet, key, kind), None);
        }
    }

    #[test]
    fn version_errors_name_the_field_and_offset() {
        let e = check_version("C0", 6).unwrap_err();
        assert_eq!(
            e,
            HandshakeError::Encrypted {
                field: "C0",
                version: 6
            }
        );
        assert!(e.to_string().contains("RTMPE"));
        assert!(e.to_string().contains("offset 0"));
        let e = check_version("C0", b'G').unwrap_err();
        assert!(e.to_string().contains("HTTP"), "{e}");
        let e = check_version("S0", 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rtmp handshake: unsupported S0 version 0x00 at offset 0, expected 3"
        );
    }

    #[test]
    fn short_random_is_zero_padded() {
        let packet = first_packet(0x0102_0304, [0; 4], &[9; 10]);
        assert_eq!(packet[..4], [1, 2, 3, 4]);
        assert_eq!(packet[8..18], [9; 10]);
        assert!(packet[18..].iter().all(|&b| b == 0));
        // And a longer one is cut.
        let packet = first_packet(0, [0; 4], &[1; 4000]);
        assert!(packet[8..].iter().all(|&b| b == 1));
    }
}
