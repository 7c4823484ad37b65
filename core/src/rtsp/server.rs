//! The server side of one RTSP connection.
//!
//! [`ServerSession`] reads the requests (and interleaved `$` frames) a client sends on one TCP
//! connection, answers what it can by itself (OPTIONS, SETUP over TCP, PLAY, RECORD, PAUSE,
//! TEARDOWN, GET_PARAMETER / SET_PARAMETER keep-alives, authentication, errors) and raises what
//! needs the application as *requests*:
//!
//! - [`ServerEvent::DescribeRequest`]: answer with [`ServerSession::accept_describe`] and the
//!   tracks of the stream (an SDP is built from them), or [`ServerSession::reject_describe`] (404, ...);
//! - [`ServerEvent::AnnounceRequest`]: the client wants to publish the tracks of its SDP; answer
//!   with [`ServerSession::accept_announce`] or [`ServerSession::reject_announce`];
//! - [`ServerEvent::UdpPortsRequest`]: a SETUP asks for UDP; core has no sockets, so the
//!   application gives the server's RTP/RTCP port pair with [`ServerSession::accept_udp`], or
//!   refuses with [`ServerSession::reject_udp`] (461, and the client may retry over TCP).
//!
//! While a request waits for its answer, later requests stay buffered, so answers keep their
//! order. Media from a publisher comes out as [`ServerEvent::Frame`]; media to a player goes in
//! through [`ServerSession::send_frame`]. Bytes for the TCP connection and UDP datagrams come
//! out of [`ServerSession::poll_transmit`] as [`Transmit`]s.
//!
//! Drive it like every rill machine: after each [`ServerSession::handle_input`],
//! [`ServerSession::handle_udp`], answer or [`ServerSession::handle_timeout`], drain
//! [`ServerSession::poll_transmit`] and [`ServerSession::poll_event`] until both give `None`. An
//! `Err` from any of them is final: send what `poll_transmit` still gives (an error answer),
//! then close the connection.

use std::collections::VecDeque;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::auth::{Authorization, Challenge};
use super::transport::{LowerTransport, Transport};
use super::{Item, Message, Reader, Request, Response, RtspError, RtspLimits};
use crate::media::Frame;
use crate::rtp::rtcp::{self, ReceiverReport, ReceptionStats, RtcpPacket, SenderReport};
use crate::rtp::{
    Depacketizer, Packetizer, RtpError, RtpPacket, TrackParams, DEFAULT_REORDER_WINDOW,
};
use crate::sdp::{resolve_control, SdpError, SessionDescription};

/// Methods the server answers, for `Public`.
const PUBLIC: &str =
    "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// Something to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// Bytes for the RTSP TCP connection, in order (answers and interleaved frames; one
    /// interleaved packet may come as two pieces, its header and its shared payload).
    Tcp(Bytes),
    /// One UDP datagram for a track set up over UDP: to the peer's RTP port, or its RTCP port
    /// when `rtcp`, from the local port of the same kind (see [`TrackTransport::Udp`]).
    Udp {
        /// Track index.
        track: usize,
        /// RTCP (odd port) rather than RTP.
        rtcp: bool,
        /// The whole datagram.
        bytes: Bytes,
    },
}

/// How one track's RTP and RTCP travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackTransport {
    /// Interleaved on the RTSP connection, on these channels.
    Interleaved {
        /// RTP channel.
        rtp: u8,
        /// RTCP channel.
        rtcp: u8,
    },
    /// UDP datagrams between these port pairs (RTP, RTCP).
    Udp {
        /// The client's ports.
        client: (u16, u16),
        /// The server's ports.
        server: (u16, u16),
    },
}

/// A user name and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Which authentication scheme the server asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthScheme {
    /// Basic: the password travels base64-encoded (use only on trusted networks).
    Basic,
    /// Digest with MD5 (Basic answers are refused).
    Digest,
}

/// Settings of a server session.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Message size bounds.
    pub limits: RtspLimits,
    /// A session (and a connection without one) ends after this long without a request or a
    /// packet from the client, in milliseconds, once the first request came.
    pub session_timeout_ms: u64,
    /// A connection that has sent no request this long after it opened ends, in milliseconds
    /// (like RTMP's handshake and HTTP's request head deadlines; a silent client is not held
    /// for the whole session timeout).
    pub first_request_timeout_ms: u64,
    /// Interval between RTCP reports (sender reports when playing, receiver reports when
    /// recording), in milliseconds.
    pub rtcp_interval_ms: u64,
    /// Largest RTP packet sent, header included.
    pub mtu: usize,
    /// Offer UDP transport (the application then supplies server ports).
    pub allow_udp: bool,
    /// Scheme of the challenge.
    pub auth_scheme: AuthScheme,
    /// Realm of the challenge.
    pub realm: String,
    /// Credentials required to publish (ANNOUNCE), if any.
    pub publish_credentials: Option<Credentials>,
    /// Credentials required to play (DESCRIBE), if any.
    pub play_credentials: Option<Credentials>,
    /// Unix time in milliseconds at `now == 0`, for RTCP NTP timestamps.
    pub wallclock_offset_ms: u64,
    /// `Server` header value.
    pub server_name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: RtspLimits::default(),
            session_timeout_ms: 60_000,
            first_request_timeout_ms: 10_000,
            rtcp_interval_ms: 5_000,
            mtu: 1400,
            allow_udp: true,
            auth_scheme: AuthScheme::Digest,
            realm: "rill".to_owned(),
            publish_credentials: None,
            play_credentials: None,
            wallclock_offset_ms: 0,
            server_name: "rill".to_owned(),
        }
    }
}

/// Errors that end a server session. The answer to send (if any) is already queued.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerError {
    /// The client's bytes are not valid RTSP or broke a limit.
    Rtsp(RtspError),
    /// Nothing came from the client within the session timeout.
    Timeout {
        /// The timeout, milliseconds.
        after_ms: u64,
    },
    /// The application answered a request that is not pending (never made or already
    /// answered). The session is unchanged and can go on.
    NotPending {
        /// The request: `DESCRIBE`, `ANNOUNCE` or `SETUP` (over UDP).
        request: &'static str,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Rtsp(e) => write!(f, "rtsp server session: {e}"),
            ServerError::Timeout { after_ms } => {
                write!(f, "rtsp server session: nothing received for {after_ms} ms")
            }
            ServerError::NotPending { request } => {
                write!(f, "rtsp server session: no {request} request pending")
            }
        }
    }
}

impl std::error::Error for ServerError {}

impl From<RtspError> for ServerError {
    fn from(e: RtspError) -> Self {
        ServerError::Rtsp(e)
    }
}

/// What a client asked for or sent.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// DESCRIBE: answer with [`ServerSession::accept_describe`] or
    /// [`ServerSession::reject_describe`].
    DescribeRequest {
        /// The request URL.
        url: String,
        /// The path without leading or trailing `/` and without the query (`live/x`).
        path: String,
        /// The query after `?`, without the `?`.
        query: String,
    },
    /// ANNOUNCE: answer with [`ServerSession::accept_announce`] or
    /// [`ServerSession::reject_announce`].
    AnnounceRequest {
        /// The request URL.
        url: String,
        /// The path (`live/x`).
        path: String,
        /// The query, without `?`.
        query: String,
        /// The tracks of the SDP rill can carry, in SDP order; frames carry these indexes.
        tracks: Vec<TrackParams>,
        /// The video's frames per second, when its section says (`a=framerate`, RFC 4566).
        frame_rate: Option<f64>,
    },
    /// An ANNOUNCE was refused with 415 (already answered): a media section has a format rill
    /// cannot record. For the server's log.
    AnnounceRefused {
        /// The path (`live/x`).
        path: String,
        /// Why, naming the section and the format.
        reason: String,
    },
    /// SETUP over UDP: answer with [`ServerSession::accept_udp`] (the server's even RTP port
    /// and the RTCP port after it) or [`ServerSession::reject_udp`] with 461.
    UdpPortsRequest {
        /// Track index.
        track: usize,
        /// The client's RTP and RTCP ports.
        client_ports: (u16, u16),
    },
    /// PLAY: send media with [`ServerSession::send_frame`] from now on.
    Playing,
    /// RECORD: frames follow.
    Recording,
    /// PAUSE: stop sending media until the next [`ServerEvent::Playing`].
    Paused,
    /// A frame from a publisher.
    Frame {
        /// Track index (as in [`ServerEvent::AnnounceRequest`]).
        track: usize,
        /// The frame; timestamps count from the start of the session.
        frame: Frame,
    },
    /// TEARDOWN: the session is over (the connection may stay for a new one).
    Teardown,
}

/// Counters of what was dropped without ending the session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Interleaved frames on channels never set up, and packets for tracks not recording.
    pub dropped_packets: u64,
    /// RTP or RTCP packets (or payloads) that could not be parsed.
    pub rtp_errors: u64,
    /// Frames produced.
    pub frames_received: u64,
    /// RTP packets sent.
    pub packets_sent: u64,
}

/// A small deterministic generator seeded by the caller's random bytes (core has no random
/// source): session ids, nonces, SSRCs, first sequence numbers and timestamp offsets.
#[derive(Clone, Debug)]
pub(crate) struct Seed(u64);

impl Seed {
    pub(crate) fn new(random: &[u8]) -> Self {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for b in random {
            s = (s ^ u64::from(*b)).wrapping_mul(0x0100_0000_01B3);
        }
        Seed(s)
    }

    /// SplitMix64.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn hex(&mut self, words: usize) -> String {
        (0..words)
            .map(|_| format!("{:016x}", self.next()))
            .collect()
    }
}

fn ms_to_ticks(ms: i64, clock: u32) -> i64 {
    ms.saturating_mul(i64::from(clock)).div_euclid(1000)
}

fn ticks_to_ms(ticks: i64, clock: u32) -> i64 {
    ticks
        .saturating_mul(1000)
        .div_euclid(i64::from(clock.max(1)))
}

/// Milliseconds from NTP timestamp `base` to `ntp` (negative when earlier).
fn ntp_diff_ms(ntp: u64, base: u64) -> i64 {
    let d = ntp.wrapping_sub(base) as i64;
    ((i128::from(d) * 1000) >> 32) as i64
}

/// Queues one RTP or RTCP packet (`header` then `payload`) for a track's transport. Over TCP
/// the payload goes out as its own shared piece, not copied.
pub(crate) fn emit_packet(
    out: &mut VecDeque<Transmit>,
    transport: TrackTransport,
    track: usize,
    rtcp: bool,
    header: &[u8],
    payload: Bytes,
) {
    let total = header.len() + payload.len();
    match transport {
        TrackTransport::Interleaved { rtp, rtcp: rtcp_ch } => {
            let Ok(len) = u16::try_from(total) else {
                return; // The packetizer keeps packets under 65536 bytes.
            };
            let mut b = BytesMut::with_capacity(4 + header.len());
            b.put_u8(b'$');
            b.put_u8(if rtcp { rtcp_ch } else { rtp });
            b.put_u16(len);
            b.put_slice(header);
            out.push_back(Transmit::Tcp(b.freeze()));
            if !payload.is_empty() {
                out.push_back(Transmit::Tcp(payload));
            }
        }
        TrackTransport::Udp { .. } => {
            let mut b = BytesMut::with_capacity(total);
            b.put_slice(header);
            b.put_slice(&payload);
            out.push_back(Transmit::Udp {
                track,
                rtcp,
                bytes: b.freeze(),
            });
        }
    }
}

/// The sending half of one track: packetizer, counters and sender reports.
#[derive(Debug)]
pub(crate) struct RtpSender {
    packetizer: Packetizer,
    packets: u32,
    octets: u32,
    /// The session's `now` at media time 0 (rebased dts), once this track sent something: the
    /// anchor of the media clock on the wallclock, shared by every track of the session.
    anchor_now: Option<u64>,
    /// Media time (ms, rebased dts) of the last frame sent.
    last_media: i64,
    scratch: Vec<RtpPacket>,
}

impl RtpSender {
    pub(crate) fn new(params: &TrackParams, seed: &mut Seed, mtu: usize) -> Result<Self, RtpError> {
        let r = seed.next();
        Ok(RtpSender {
            packetizer: Packetizer::new(params, r as u32, (r >> 32) as u16, (r >> 48) as u32, mtu)?,
            packets: 0,
            octets: 0,
            anchor_now: None,
            last_media: 0,
            scratch: Vec::new(),
        })
    }

    pub(crate) fn ssrc(&self) -> u32 {
        self.packetizer.ssrc()
    }

    pub(crate) fn next_sequence(&self) -> u16 {
        self.packetizer.next_sequence()
    }

    /// The RTP timestamp of media time 0.
    pub(crate) fn rtptime(&self) -> u32 {
        self.packetizer.rtp_timestamp(0)
    }

    /// Packetizes a frame whose timestamps are already rebased to the session start, which was
    /// at `anchor_now`. A sender report goes first, before the first packet, so the receiver can
    /// line tracks up.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send(
        &mut self,
        frame: &Frame,
        anchor_now: u64,
        wallclock_offset_ms: u64,
        transport: TrackTransport,
        track: usize,
        out: &mut VecDeque<Transmit>,
    ) -> Result<usize, RtpError> {
        let first = self.anchor_now.is_none();
        self.anchor_now = Some(anchor_now);
        self.last_media = frame.dts;
        if first {
            self.sender_report(wallclock_offset_ms, transport, track, out);
        }
        let mut pkts = std::mem::take(&mut self.scratch);
        pkts.clear();
        let r = self.packetizer.push(frame, &mut pkts);
        let n = pkts.len();
        let mut head = BytesMut::new();
        for p in pkts.drain(..) {
            head.clear();
            p.write_header(&mut head);
            self.packets = self.packets.wrapping_add(1);
            self.octets = self.octets.wrapping_add(p.payload.len() as u32);
            emit_packet(out, transport, track, false, &head, p.payload);
        }
        self.scratch = pkts;
        r.map(|()| n)
    }

    /// Queues a sender report (once something was sent). It pairs the RTP time of the last
    /// frame sent with the wallclock time of that same instant on the session's media clock
    /// (anchored where the session's first frame went out), never extrapolating from `now`: an
    /// engine's `now` may be stale by the time frames go out, and frames arrive jittered, and
    /// either would make the pair describe two different instants (receivers then shift one
    /// track against the other, and timestamps go backwards).
    pub(crate) fn sender_report(
        &mut self,
        wallclock_offset_ms: u64,
        transport: TrackTransport,
        track: usize,
        out: &mut VecDeque<Transmit>,
    ) {
        let Some(anchor_now) = self.anchor_now else {
            return;
        };
        let wall_ms = wallclock_offset_ms
            .saturating_add(anchor_now)
            .saturating_add_signed(self.last_media);
        let sr = SenderReport {
            ssrc: self.ssrc(),
            ntp_timestamp: rtcp::ntp_from_unix_ms(wall_ms),
            rtp_timestamp: self.packetizer.rtp_timestamp(self.last_media),
            packet_count: self.packets,
            octet_count: self.octets,
            reports: Vec::new(),
        };
        let mut b = BytesMut::new();
        sr.write_compound(b"rill", &mut b);
        emit_packet(out, transport, track, true, &b, Bytes::new());
    }
}

/// The receiving half of one track: depacketizer, reception statistics, receiver reports, and
/// the offset that lines this track up with the others of the session.
#[derive(Debug)]
pub(crate) struct RtpReceiver {
    depacketizer: Depacketizer,
    clock_rate: u32,
    stats: Option<ReceptionStats>,
    /// An RTP timestamp of this track and the session time (ms) it corresponds to.
    reference: Option<(u32, i64)>,
    /// Milliseconds added to the depacketizer's timestamps (fixed at the first packet).
    offset_ms: Option<i64>,
    own_ssrc: u32,
}

impl RtpReceiver {
    pub(crate) fn new(
        params: &TrackParams,
        reorder_window: usize,
        seed: &mut Seed,
    ) -> Result<Self, RtpError> {
        Ok(RtpReceiver {
            depacketizer: Depacketizer::new(params, reorder_window)?,
            clock_rate: params.clock_rate,
            stats: None,
            reference: None,
            offset_ms: None,
            own_ssrc: seed.next() as u32,
        })
    }

    /// Says which session time an RTP timestamp stands for (from RTP-Info or a sender report).
    /// The first reference given before the first packet wins.
    pub(crate) fn set_reference(&mut self, rtp_timestamp: u32, session_ms: i64) {
        if self.offset_ms.is_none() && self.reference.is_none() {
            self.reference = Some((rtp_timestamp, session_ms));
        }
    }

    /// Takes one RTP packet; frames go to `frames`.
    pub(crate) fn on_rtp(
        &mut self,
        data: &Bytes,
        now: u64,
        mut frames: impl FnMut(Frame),
    ) -> Result<(), RtpError> {
        let pkt = RtpPacket::parse(data)?;
        let arrival = ms_to_ticks(now.min(i64::MAX as u64) as i64, self.clock_rate);
        self.stats
            .get_or_insert_with(|| ReceptionStats::new(pkt.ssrc))
            .on_packet(pkt.sequence, pkt.timestamp, arrival);
        if self.offset_ms.is_none() {
            let clock = self.clock_rate;
            self.offset_ms = Some(self.reference.map_or(0, |(rtp, ms)| {
                ms.saturating_add(ticks_to_ms(
                    i64::from(pkt.timestamp.wrapping_sub(rtp) as i32),
                    clock,
                ))
            }));
        }
        let r = self.depacketizer.push(pkt);
        self.drain(&mut frames);
        r
    }

    /// Ends the frame being collected (at the end of the stream).
    pub(crate) fn flush(&mut self, mut frames: impl FnMut(Frame)) -> Result<(), RtpError> {
        let r = self.depacketizer.flush();
        self.drain(&mut frames);
        r
    }

    fn drain(&mut self, frames: &mut impl FnMut(Frame)) {
        let off = self.offset_ms.unwrap_or(0);
        while let Some(mut f) = self.depacketizer.poll_frame() {
            f.pts = f.pts.saturating_add(off);
            f.dts = f.dts.saturating_add(off);
            frames(f);
        }
    }

    /// Takes one RTCP packet: a sender report sets the reference (the first report of the
    /// session sets `ntp_base`, its time zero).
    pub(crate) fn on_rtcp(
        &mut self,
        data: &Bytes,
        now: u64,
        ntp_base: &mut Option<u64>,
    ) -> Result<(), RtpError> {
        for p in rtcp::parse_compound(data)? {
            if let RtcpPacket::SenderReport(sr) = p {
                let base = *ntp_base.get_or_insert(sr.ntp_timestamp);
                self.set_reference(sr.rtp_timestamp, ntp_diff_ms(sr.ntp_timestamp, base));
                if let Some(s) = &mut self.stats {
                    s.on_sender_report(&sr, now);
                }
            }
        }
        Ok(())
    }

    /// A receiver report, once packets arrived.
    pub(crate) fn receiver_report(&mut self, now: u64) -> Option<Bytes> {
        let block = self.stats.as_mut()?.report_block(now);
        let rr = ReceiverReport {
            ssrc: self.own_ssrc,
            reports: vec![block],
        };
        let mut b = BytesMut::new();
        rr.write_compound(b"rill", &mut b);
        Some(b.freeze())
    }
}

/// Splits `rtsp://host[:port]/a/b?q` into the path (`a/b`) and the query (`q`).
pub fn url_path(url: &str) -> (String, String) {
    let rest = match url.find("://") {
        Some(i) => {
            let after = url.get(i + 3..).unwrap_or("");
            after.find('/').and_then(|j| after.get(j..)).unwrap_or("")
        }
        None => url,
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    (path.trim_matches('/').to_owned(), query.to_owned())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Play,
    Record,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Init,
    Ready,
    Playing,
    Recording,
}

#[derive(Debug)]
enum Pending {
    Describe {
        cseq: Option<u32>,
        url: String,
    },
    Announce {
        cseq: Option<u32>,
        tracks: Vec<(TrackParams, String)>,
    },
    Udp {
        cseq: Option<u32>,
        track: usize,
        client: (u16, u16),
    },
}

impl Pending {
    /// The request's method, as [`ServerError::NotPending`] names it.
    fn request(&self) -> &'static str {
        match self {
            Pending::Describe { .. } => DESCRIBE,
            Pending::Announce { .. } => ANNOUNCE,
            Pending::Udp { .. } => SETUP_UDP,
        }
    }
}

const DESCRIBE: &str = "DESCRIBE";
const ANNOUNCE: &str = "ANNOUNCE";
const SETUP_UDP: &str = "SETUP (UDP)";

/// The SDP describing `tracks` (session named after `url`'s path, tracks controlled as
/// `trackID=N`) and the session's tracks with their control URLs resolved against `base`:
/// what a DESCRIBE answer (server) and an ANNOUNCE (client) both send.
pub(crate) fn describe_tracks(
    url: &str,
    base: &str,
    tracks: Vec<TrackParams>,
) -> (String, Vec<Track>) {
    let controlled: Vec<(TrackParams, String)> = tracks
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, format!("trackID={i}")))
        .collect();
    let (name, _) = url_path(url);
    let sdp = SessionDescription::for_tracks(&name, &controlled).to_text();
    let tracks = controlled
        .into_iter()
        .map(|(params, c)| Track {
            params,
            control: resolve_control(base, &c),
            transport: None,
            sender: None,
            receiver: None,
        })
        .collect();
    (sdp, tracks)
}

/// One media track of a session, client or server side.
#[derive(Debug)]
pub(crate) struct Track {
    pub(crate) params: TrackParams,
    /// Absolute control URL.
    pub(crate) control: String,
    pub(crate) transport: Option<TrackTransport>,
    pub(crate) sender: Option<RtpSender>,
    pub(crate) receiver: Option<RtpReceiver>,
}

impl Track {
    /// Sends `frame` as track `index` once its transport and sender are set up (0 packets
    /// otherwise), with timestamps rebased on `base` (a dts and the `now` it went out at), which
    /// the first frame sent sets so a session starts at 0. Returns the RTP packets queued; an
    /// error concerns this frame only.
    pub(crate) fn send_rebased(
        &mut self,
        index: usize,
        frame: &Frame,
        base: &mut Option<(i64, u64)>,
        now: u64,
        wallclock_offset_ms: u64,
        out: &mut VecDeque<Transmit>,
    ) -> Result<usize, RtpError> {
        let (Some(transport), Some(sender)) = (self.transport, self.sender.as_mut()) else {
            return Ok(0);
        };
        let (base, anchor_now) = *base.get_or_insert((frame.dts, now));
        let mut f = frame.clone();
        f.pts = f.pts.saturating_sub(base);
        f.dts = f.dts.saturating_sub(base);
        sender.send(&f, anchor_now, wallclock_offset_ms, transport, index, out)
    }

    /// Queues this track's RTCP reports: a sender report if it sends, a receiver report if it
    /// receives (nothing before its transport is set up).
    pub(crate) fn emit_reports(
        &mut self,
        index: usize,
        now: u64,
        wallclock_offset_ms: u64,
        out: &mut VecDeque<Transmit>,
    ) {
        let Some(transport) = self.transport else {
            return;
        };
        if let Some(s) = &mut self.sender {
            s.sender_report(wallclock_offset_ms, transport, index, out);
        }
        if let Some(rr) = self.receiver.as_mut().and_then(|r| r.receiver_report(now)) {
            emit_packet(out, transport, index, true, &rr, Bytes::new());
        }
    }
}

/// The server side of one RTSP connection. See the module docs.
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    reader: Reader,
    seed: Seed,
    session_id: String,
    nonce: String,
    session_issued: bool,
    mode: Option<Mode>,
    state: State,
    tracks: Vec<Track>,
    pending: Option<Pending>,
    out: VecDeque<Transmit>,
    events: VecDeque<ServerEvent>,
    now: u64,
    last_activity: u64,
    /// A request (or interleaved data) came: the session timeout applies, not the first-request one.
    heard: bool,
    next_report: Option<u64>,
    /// Media time base of a play session: dts of the first frame sent and the `now` it went at.
    play_base: Option<(i64, u64)>,
    /// NTP time of the first sender report of a record session.
    ntp_base: Option<u64>,
    stats: SessionStats,
    failed: Option<ServerError>,
}

impl ServerSession {
    /// A session for a freshly accepted connection. `random` (16 bytes or more) seeds the
    /// session id, the Digest nonce, SSRCs, sequence numbers and timestamp offsets.
    pub fn new(config: ServerConfig, random: &[u8], now: u64) -> Self {
        let mut seed = Seed::new(random);
        let session_id = format!("{:016X}", seed.next());
        let nonce = seed.hex(2);
        ServerSession {
            reader: Reader::new(config.limits.clone()),
            config,
            seed,
            session_id,
            nonce,
            session_issued: false,
            mode: None,
            state: State::Init,
            tracks: Vec::new(),
            pending: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            now,
            last_activity: now,
            heard: false,
            next_report: None,
            play_base: None,
            ntp_base: None,
            stats: SessionStats::default(),
            failed: None,
        }
    }

    /// The session id this connection hands out.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Drop and error counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// How a track's packets travel, once it was set up.
    pub fn track_transport(&self, track: usize) -> Option<TrackTransport> {
        self.tracks.get(track).and_then(|t| t.transport)
    }

    /// True while media is to be sent ([`ServerEvent::Playing`] and no pause or teardown since).
    pub fn is_playing(&self) -> bool {
        self.state == State::Playing
    }

    /// Feeds bytes received on the TCP connection.
    /// Only complete requests and interleaved frames count as activity for the session
    /// timeout: a client trickling an endless head is closed at the timeout like a silent one.
    pub fn handle_input(&mut self, data: &[u8], now: u64) -> Result<(), ServerError> {
        self.check_failed()?;
        self.now = self.now.max(now);
        if let Err(e) = self.reader.push(data) {
            return Err(self.fail_rtsp(e));
        }
        self.process()
    }

    /// Feeds one UDP datagram received on the server port pair of `track` (RTP, or RTCP when
    /// `rtcp`). Datagrams for tracks not set up over UDP are counted and dropped.
    pub fn handle_udp(&mut self, track: usize, rtcp: bool, data: Bytes, now: u64) {
        if self.failed.is_some() {
            return;
        }
        if !matches!(
            self.track_transport(track),
            Some(TrackTransport::Udp { .. })
        ) {
            self.stats.dropped_packets += 1;
            return;
        }
        self.touch(now);
        self.on_packet(track, rtcp, data);
    }

    /// Checks the session timeout and sends RTCP reports that are due.
    pub fn handle_timeout(&mut self, now: u64) -> Result<(), ServerError> {
        self.check_failed()?;
        self.now = self.now.max(now);
        if now >= self.idle_deadline() {
            let e = ServerError::Timeout {
                after_ms: self.idle_timeout_ms(),
            };
            self.failed = Some(e.clone());
            return Err(e);
        }
        if self.next_report.is_some_and(|t| now >= t) {
            self.send_reports();
            self.next_report = Some(now.saturating_add(self.config.rtcp_interval_ms.max(1)));
        }
        Ok(())
    }

    /// The next deadline: the session timeout or the next RTCP report.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.failed.is_some() {
            return None;
        }
        let idle = self.idle_deadline();
        Some(self.next_report.map_or(idle, |r| r.min(idle)))
    }

    /// The next bytes or datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Answers a pending DESCRIBE with an SDP describing `tracks` (their controls are
    /// `trackID=N`); SETUP and PLAY may follow. Fails with [`ServerError::NotPending`] (and
    /// does nothing) when no DESCRIBE is pending.
    pub fn accept_describe(&mut self, tracks: Vec<TrackParams>) -> Result<(), ServerError> {
        let (cseq, url) = match self.pending.take() {
            Some(Pending::Describe { cseq, url }) => (cseq, url),
            other => return Err(self.not_pending(other, DESCRIBE)),
        };
        let base = format!("{}/", url.trim_end_matches('/'));
        let (sdp, described) = describe_tracks(&url, &base, tracks);
        self.tracks = described;
        self.mode = Some(Mode::Play);
        let resp = Response::new(200)
            .header("Content-Base", base)
            .body("application/sdp", Bytes::from(sdp));
        self.respond(cseq, resp);
        self.process()
    }

    /// Refuses a pending DESCRIBE with `status` (404, 403, 415, ...). Fails with
    /// [`ServerError::NotPending`] (and does nothing) when no DESCRIBE is pending.
    pub fn reject_describe(&mut self, status: u16) -> Result<(), ServerError> {
        self.reject_pending(DESCRIBE, status)
    }

    /// Accepts a pending ANNOUNCE: SETUP and RECORD may follow. Fails with
    /// [`ServerError::NotPending`] (and does nothing) when no ANNOUNCE is pending.
    pub fn accept_announce(&mut self) -> Result<(), ServerError> {
        let (cseq, tracks) = match self.pending.take() {
            Some(Pending::Announce { cseq, tracks }) => (cseq, tracks),
            other => return Err(self.not_pending(other, ANNOUNCE)),
        };
        self.tracks = tracks
            .into_iter()
            .map(|(params, control)| Track {
                params,
                control,
                transport: None,
                sender: None,
                receiver: None,
            })
            .collect();
        self.mode = Some(Mode::Record);
        self.respond(cseq, Response::new(200));
        self.process()
    }

    /// Refuses a pending ANNOUNCE with `status` (400, 403, ...). Fails with
    /// [`ServerError::NotPending`] (and does nothing) when no ANNOUNCE is pending.
    pub fn reject_announce(&mut self, status: u16) -> Result<(), ServerError> {
        self.reject_pending(ANNOUNCE, status)
    }

    /// Answers a pending UDP SETUP with the server's RTP port (even) and RTCP port. Fails with
    /// [`ServerError::NotPending`] (and does nothing) when no UDP SETUP is pending.
    pub fn accept_udp(&mut self, server_ports: (u16, u16)) -> Result<(), ServerError> {
        let (cseq, track, client) = match self.pending.take() {
            Some(Pending::Udp {
                cseq,
                track,
                client,
            }) => (cseq, track, client),
            other => return Err(self.not_pending(other, SETUP_UDP)),
        };
        let transport = TrackTransport::Udp {
            client,
            server: server_ports,
        };
        self.complete_setup(cseq, track, transport);
        self.process()
    }

    /// Refuses a pending UDP SETUP with `status` (461: the client may retry over TCP). Fails
    /// with [`ServerError::NotPending`] (and does nothing) when no UDP SETUP is pending.
    pub fn reject_udp(&mut self, status: u16) -> Result<(), ServerError> {
        self.reject_pending(SETUP_UDP, status)
    }

    /// Answers the pending request, if it is a `request`, with `status`.
    fn reject_pending(&mut self, request: &'static str, status: u16) -> Result<(), ServerError> {
        let cseq = match self.pending.take() {
            Some(p) if p.request() == request => match p {
                Pending::Describe { cseq, .. }
                | Pending::Announce { cseq, .. }
                | Pending::Udp { cseq, .. } => cseq,
            },
            other => return Err(self.not_pending(other, request)),
        };
        self.respond(cseq, Response::new(status));
        self.process()
    }

    /// Puts back the pending request `taken` (not the `request` answered) and says so.
    fn not_pending(&mut self, taken: Option<Pending>, request: &'static str) -> ServerError {
        self.pending = taken;
        ServerError::NotPending { request }
    }

    /// Sends one frame of `track` to a playing client (ignored unless playing). Timestamps are
    /// rebased so that the first frame sent starts the session at 0. Returns the number of RTP
    /// packets queued; an error concerns this frame only.
    pub fn send_frame(&mut self, track: usize, frame: &Frame, now: u64) -> Result<usize, RtpError> {
        if self.state != State::Playing || self.failed.is_some() {
            return Ok(0);
        }
        self.now = self.now.max(now);
        let Some(t) = self.tracks.get_mut(track) else {
            return Ok(0);
        };
        let r = t.send_rebased(
            track,
            frame,
            &mut self.play_base,
            self.now,
            self.config.wallclock_offset_ms,
            &mut self.out,
        );
        if let Ok(n) = r {
            self.stats.packets_sent += n as u64;
        }
        r
    }

    fn check_failed(&self) -> Result<(), ServerError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn touch(&mut self, now: u64) {
        self.now = self.now.max(now);
        self.last_activity = self.now;
    }

    fn idle_deadline(&self) -> u64 {
        self.last_activity.saturating_add(self.idle_timeout_ms())
    }

    /// The first-request deadline until a request or packet came (never past the session
    /// timeout), the session timeout after.
    fn idle_timeout_ms(&self) -> u64 {
        if self.heard {
            self.config.session_timeout_ms
        } else {
            self.config
                .first_request_timeout_ms
                .min(self.config.session_timeout_ms)
        }
    }

    fn fail_rtsp(&mut self, e: RtspError) -> ServerError {
        self.respond(None, Response::new(e.status()));
        let e = ServerError::Rtsp(e);
        self.failed = Some(e.clone());
        e
    }

    fn respond(&mut self, cseq: Option<u32>, mut resp: Response) {
        if let Some(c) = cseq {
            resp.headers.set("CSeq", c.to_string());
        }
        resp.headers.set("Server", self.config.server_name.clone());
        if self.session_issued && resp.headers.get("Session").is_none() {
            resp.headers.set("Session", self.session_header());
        }
        let mut b = BytesMut::new();
        resp.write(&mut b);
        self.out.push_back(Transmit::Tcp(b.freeze()));
    }

    fn session_header(&self) -> String {
        format!(
            "{};timeout={}",
            self.session_id,
            self.config.session_timeout_ms / 1000
        )
    }

    fn process(&mut self) -> Result<(), ServerError> {
        while self.pending.is_none() {
            let item = self.reader.poll_item();
            if let Ok(Some(_)) = item {
                self.last_activity = self.now;
                self.heard = true;
            }
            match item {
                Ok(None) => break,
                Ok(Some(Item::Message(Message::Request(req)))) => self.on_request(req),
                // Answers to nothing we asked: ignored.
                Ok(Some(Item::Message(Message::Response(_)))) => {}
                Ok(Some(Item::Interleaved { channel, payload })) => {
                    self.on_interleaved(channel, payload)
                }
                Err(e) => return Err(self.fail_rtsp(e)),
            }
        }
        Ok(())
    }

    fn on_interleaved(&mut self, channel: u8, payload: Bytes) {
        let found = self
            .tracks
            .iter()
            .enumerate()
            .find_map(|(i, t)| match t.transport {
                Some(TrackTransport::Interleaved { rtp, .. }) if rtp == channel => Some((i, false)),
                Some(TrackTransport::Interleaved { rtcp, .. }) if rtcp == channel => {
                    Some((i, true))
                }
                _ => None,
            });
        match found {
            Some((track, rtcp)) => self.on_packet(track, rtcp, payload),
            None => self.stats.dropped_packets += 1,
        }
    }

    fn on_packet(&mut self, track: usize, rtcp: bool, data: Bytes) {
        let recording = self.state == State::Recording;
        let Some(t) = self.tracks.get_mut(track) else {
            self.stats.dropped_packets += 1;
            return;
        };
        let Some(rx) = t.receiver.as_mut() else {
            // RTCP receiver reports from players: nothing to do beyond keeping the session alive.
            if !rtcp {
                self.stats.dropped_packets += 1;
            }
            return;
        };
        let r = if rtcp {
            rx.on_rtcp(&data, self.now, &mut self.ntp_base)
        } else if !recording {
            self.stats.dropped_packets += 1;
            Ok(())
        } else {
            let events = &mut self.events;
            let stats = &mut self.stats;
            rx.on_rtp(&data, self.now, |frame| {
                stats.frames_received += 1;
                events.push_back(ServerEvent::Frame { track, frame });
            })
        };
        if r.is_err() {
            self.stats.rtp_errors += 1;
        }
    }

    fn send_reports(&mut self) {
        let now = self.now;
        for (i, t) in self.tracks.iter_mut().enumerate() {
            t.emit_reports(i, now, self.config.wallclock_offset_ms, &mut self.out);
        }
    }

    fn on_request(&mut self, req: Request) {
        let cseq = req.headers.cseq();
        if cseq.is_none() {
            // RFC 2326 section 12.17: every request carries a CSeq; without one, no answer
            // could be matched to it.
            self.respond(None, Response::new(400));
            return;
        }
        if let Some(id) = req.headers.session_id() {
            if !self.session_issued || id != self.session_id {
                self.respond(cseq, Response::new(454));
                return;
            }
        }
        match req.method.as_str() {
            "OPTIONS" => self.respond(cseq, Response::new(200).header("Public", PUBLIC)),
            "DESCRIBE" => self.on_describe(req, cseq),
            "ANNOUNCE" => self.on_announce(req, cseq),
            "SETUP" => self.on_setup(req, cseq),
            "PLAY" => self.on_play(cseq),
            "RECORD" => self.on_record(cseq),
            "PAUSE" => self.on_pause(cseq),
            "TEARDOWN" => self.on_teardown(cseq),
            "GET_PARAMETER" | "SET_PARAMETER" => self.respond(cseq, Response::new(200)),
            _ => self.respond(cseq, Response::new(501).header("Public", PUBLIC)),
        }
    }

    /// Checks the request's credentials when `creds` are required; answers 401 with a
    /// challenge and returns false when they are missing or wrong.
    fn authorized(&mut self, req: &Request, cseq: Option<u32>, creds: Option<Credentials>) -> bool {
        let Some(c) = creds else { return true };
        let ok = req
            .headers
            .get("Authorization")
            .and_then(|v| Authorization::parse(v).ok())
            .is_some_and(|a| {
                let fresh = match &a {
                    Authorization::Basic { .. } => self.config.auth_scheme == AuthScheme::Basic,
                    Authorization::Digest(d) => {
                        d.realm == self.config.realm && d.nonce == self.nonce
                    }
                };
                fresh && a.username() == c.username && a.verify(&req.method, &c.password)
            });
        if !ok {
            let challenge = match self.config.auth_scheme {
                AuthScheme::Basic => Challenge::Basic {
                    realm: self.config.realm.clone(),
                },
                AuthScheme::Digest => Challenge::Digest {
                    realm: self.config.realm.clone(),
                    nonce: self.nonce.clone(),
                    opaque: None,
                    qop_auth: false,
                },
            };
            self.respond(
                cseq,
                Response::new(401).header("WWW-Authenticate", challenge.to_header()),
            );
        }
        ok
    }

    fn on_describe(&mut self, req: Request, cseq: Option<u32>) {
        if self.state != State::Init {
            self.respond(cseq, Response::new(455));
            return;
        }
        if !self.authorized(&req, cseq, self.config.play_credentials.clone()) {
            return;
        }
        let (path, query) = url_path(&req.uri);
        self.pending = Some(Pending::Describe {
            cseq,
            url: req.uri.clone(),
        });
        self.events.push_back(ServerEvent::DescribeRequest {
            url: req.uri,
            path,
            query,
        });
    }

    fn on_announce(&mut self, req: Request, cseq: Option<u32>) {
        if self.state != State::Init {
            self.respond(cseq, Response::new(455));
            return;
        }
        if !self.authorized(&req, cseq, self.config.publish_credentials.clone()) {
            return;
        }
        let Ok(sdp) = SessionDescription::parse(&req.body) else {
            self.respond(cseq, Response::new(400));
            return;
        };
        let base = req
            .headers
            .get("Content-Base")
            .map(str::to_owned)
            .unwrap_or_else(|| req.uri.clone());
        let base = match sdp.control() {
            Some(c) if !c.is_empty() && c != "*" => resolve_control(&base, c),
            _ => base,
        };
        let (path, query) = url_path(&req.uri);
        // Every track announced must be one rill can record: the client sets them all up.
        let tracks: Result<Vec<(TrackParams, String)>, SdpError> = sdp
            .media
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let p = m.track_params(i)?;
                let control = resolve_control(&base, m.control().unwrap_or(""));
                Ok((p, control))
            })
            .collect();
        let tracks = match tracks {
            Ok(t) if !t.is_empty() => t,
            refused => {
                self.respond(cseq, Response::new(415));
                let reason = match refused {
                    Err(e) => e.to_string(),
                    Ok(_) => "no media section".to_owned(),
                };
                self.events
                    .push_back(ServerEvent::AnnounceRefused { path, reason });
                return;
            }
        };
        let frame_rate = sdp
            .media
            .iter()
            .filter(|m| m.media.eq_ignore_ascii_case("video"))
            .find_map(|m| m.attribute("framerate")?.trim().parse::<f64>().ok())
            .filter(|fps| fps.is_finite() && *fps > 0.0);
        self.events.push_back(ServerEvent::AnnounceRequest {
            url: req.uri,
            path,
            query,
            tracks: tracks.iter().map(|(p, _)| p.clone()).collect(),
            frame_rate,
        });
        self.pending = Some(Pending::Announce { cseq, tracks });
    }

    fn track_for_url(&self, url: &str) -> Option<usize> {
        let url = url.trim_end_matches('/');
        let exact = self
            .tracks
            .iter()
            .position(|t| t.control.trim_end_matches('/').eq_ignore_ascii_case(url));
        exact.or_else(|| {
            // Clients that rewrite the host part: compare the paths.
            let (p, _) = url_path(url);
            self.tracks.iter().position(|t| url_path(&t.control).0 == p)
        })
    }

    fn channels_free(&self, track: usize, a: u8, b: u8) -> bool {
        self.tracks.iter().enumerate().all(|(i, t)| {
            i == track
                || !matches!(t.transport, Some(TrackTransport::Interleaved { rtp, rtcp })
                    if rtp == a || rtp == b || rtcp == a || rtcp == b)
        })
    }

    fn on_setup(&mut self, req: Request, cseq: Option<u32>) {
        if self.mode.is_none() || matches!(self.state, State::Playing | State::Recording) {
            self.respond(cseq, Response::new(455));
            return;
        }
        let Some(track) = self.track_for_url(&req.uri) else {
            self.respond(cseq, Response::new(404));
            return;
        };
        let list = match req.headers.get("Transport").map(Transport::parse_list) {
            Some(Ok(l)) => l,
            _ => {
                self.respond(cseq, Response::new(461));
                return;
            }
        };
        for t in list.iter().filter(|t| t.unicast) {
            match t.lower {
                LowerTransport::Tcp => {
                    let wanted = t
                        .interleaved
                        .filter(|&(a, b)| self.channels_free(track, a, b));
                    let chosen = wanted.or_else(|| {
                        (0..=127u8)
                            .map(|i| (2 * i, 2 * i + 1))
                            .find(|&(a, b)| self.channels_free(track, a, b))
                    });
                    if let Some((rtp, rtcp)) = chosen {
                        let transport = TrackTransport::Interleaved { rtp, rtcp };
                        self.complete_setup(cseq, track, transport);
                        return;
                    }
                }
                LowerTransport::Udp => {
                    // Port 0 is no port: nothing could be sent there.
                    let client = t.client_port.filter(|&(a, b)| a != 0 && b != 0);
                    if let (true, Some(client)) = (self.config.allow_udp, client) {
                        self.pending = Some(Pending::Udp {
                            cseq,
                            track,
                            client,
                        });
                        self.events.push_back(ServerEvent::UdpPortsRequest {
                            track,
                            client_ports: client,
                        });
                        return;
                    }
                }
            }
        }
        self.respond(cseq, Response::new(461));
    }

    fn complete_setup(&mut self, cseq: Option<u32>, track: usize, transport: TrackTransport) {
        let mode = self.mode;
        let mtu = self.config.mtu;
        let window = match transport {
            TrackTransport::Interleaved { .. } => 1,
            TrackTransport::Udp { .. } => DEFAULT_REORDER_WINDOW,
        };
        let Some(t) = self.tracks.get_mut(track) else {
            self.respond(cseq, Response::new(404));
            return;
        };
        let (sender, receiver) = match mode {
            Some(Mode::Play) => (RtpSender::new(&t.params, &mut self.seed, mtu).ok(), None),
            _ => (
                None,
                RtpReceiver::new(&t.params, window, &mut self.seed).ok(),
            ),
        };
        if sender.is_none() && receiver.is_none() {
            self.respond(cseq, Response::new(500));
            return;
        }
        let mut spec = match transport {
            TrackTransport::Interleaved { rtp, rtcp } => {
                let mut s = Transport::new(LowerTransport::Tcp);
                s.interleaved = Some((rtp, rtcp));
                s
            }
            TrackTransport::Udp { client, server } => {
                let mut s = Transport::new(LowerTransport::Udp);
                s.client_port = Some(client);
                s.server_port = Some(server);
                s
            }
        };
        spec.ssrc = sender.as_ref().map(RtpSender::ssrc);
        spec.record = mode == Some(Mode::Record);
        t.transport = Some(transport);
        t.sender = sender;
        t.receiver = receiver;
        self.session_issued = true;
        if self.state == State::Init {
            self.state = State::Ready;
        }
        self.respond(
            cseq,
            Response::new(200).header("Transport", spec.to_string()),
        );
    }

    fn any_setup(&self) -> bool {
        self.tracks.iter().any(|t| t.transport.is_some())
    }

    fn on_play(&mut self, cseq: Option<u32>) {
        if self.mode != Some(Mode::Play) || !self.any_setup() {
            self.respond(cseq, Response::new(455));
            return;
        }
        let info: Vec<String> = self
            .tracks
            .iter()
            .filter_map(|t| {
                let s = t.sender.as_ref()?;
                Some(format!(
                    "url={};seq={};rtptime={}",
                    t.control,
                    s.next_sequence(),
                    s.rtptime()
                ))
            })
            .collect();
        let resp = Response::new(200)
            .header("Range", "npt=0.000-")
            .header("RTP-Info", info.join(","));
        self.respond(cseq, resp);
        if self.state != State::Playing {
            self.state = State::Playing;
            self.next_report = Some(self.now.saturating_add(self.config.rtcp_interval_ms));
            self.events.push_back(ServerEvent::Playing);
        }
    }

    fn on_record(&mut self, cseq: Option<u32>) {
        if self.mode != Some(Mode::Record) || !self.any_setup() {
            self.respond(cseq, Response::new(455));
            return;
        }
        self.respond(cseq, Response::new(200));
        if self.state != State::Recording {
            self.state = State::Recording;
            self.next_report = Some(self.now.saturating_add(self.config.rtcp_interval_ms));
            self.events.push_back(ServerEvent::Recording);
        }
    }

    fn on_pause(&mut self, cseq: Option<u32>) {
        match self.state {
            State::Init => self.respond(cseq, Response::new(455)),
            State::Ready => self.respond(cseq, Response::new(200)),
            State::Playing | State::Recording => {
                self.state = State::Ready;
                self.next_report = None;
                self.respond(cseq, Response::new(200));
                self.events.push_back(ServerEvent::Paused);
            }
        }
    }

    fn on_teardown(&mut self, cseq: Option<u32>) {
        self.respond(cseq, Response::new(200));
        if self.mode.is_some() || self.session_issued {
            let events = &mut self.events;
            let stats = &mut self.stats;
            for (i, t) in self.tracks.iter_mut().enumerate() {
                if let Some(rx) = &mut t.receiver {
                    // Frames still being collected: hand them out before the end.
                    let _ = rx.flush(|frame| {
                        stats.frames_received += 1;
                        events.push_back(ServerEvent::Frame { track: i, frame });
                    });
                }
            }
            self.events.push_back(ServerEvent::Teardown);
        }
        self.tracks.clear();
        self.mode = None;
        self.state = State::Init;
        self.session_issued = false;
        self.next_report = None;
        self.play_base = None;
        self.ntp_base = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths() {
        assert_eq!(
            url_path("rtsp://h:554/live/x?a=1"),
            ("live/x".to_owned(), "a=1".to_owned())
        );
        assert_eq!(
            url_path("rtsp://h/live/x/"),
            ("live/x".to_owned(), String::new())
        );
        assert_eq!(url_path("rtsp://h"), (String::new(), String::new()));
        assert_eq!(url_path("*"), ("*".to_owned(), String::new()));
    }

    #[test]
    fn ntp_differences() {
        let a = rtcp::ntp_from_unix_ms(1_000_000);
        let b = rtcp::ntp_from_unix_ms(1_000_250);
        assert_eq!(ntp_diff_ms(b, a), 250);
        assert!((ntp_diff_ms(a, b) + 250).abs() <= 1);
    }

    fn session(timeout_ms: u64) -> ServerSession {
        let config = ServerConfig {
            session_timeout_ms: timeout_ms,
            first_request_timeout_ms: timeout_ms,
            ..ServerConfig::default()
        };
        ServerSession::new(config, b"0123456789abcdef", 0)
    }

    fn answers(s: &mut ServerSession) -> String {
        let mut text = String::new();
        while let Some(t) = s.poll_transmit() {
            if let Transmit::Tcp(b) = t {
                text.push_str(&String::from_utf8_lossy(&b));
            }
        }
        text
    }

    #[test]
    fn answers_to_requests_not_pending_fail_and_keep_the_pending_one() {
        let mut s = session(60_000);
        let none = |request| Err(ServerError::NotPending { request });
        assert_eq!(s.accept_announce(), none(ANNOUNCE));
        assert_eq!(s.reject_describe(404), none(DESCRIBE));
        s.handle_input(b"DESCRIBE rtsp://h/live/x RTSP/1.0\r\nCSeq: 2\r\n\r\n", 0)
            .unwrap();
        assert!(matches!(
            s.poll_event(),
            Some(ServerEvent::DescribeRequest { .. })
        ));
        // Answers for another kind of request leave the DESCRIBE waiting.
        assert_eq!(s.accept_announce(), none(ANNOUNCE));
        assert_eq!(s.reject_announce(400), none(ANNOUNCE));
        assert_eq!(s.accept_udp((6000, 6001)), none(SETUP_UDP));
        assert_eq!(s.reject_udp(461), none(SETUP_UDP));
        assert_eq!(answers(&mut s), "");
        s.reject_describe(404).unwrap();
        assert!(answers(&mut s).starts_with("RTSP/1.0 404"));
        assert_eq!(s.reject_describe(404), none(DESCRIBE));
    }

    #[test]
    fn a_silent_connection_ends_at_the_first_request_deadline_not_the_session_timeout() {
        // Regression (issue 21): a connection that sent nothing was held for the whole session
        // timeout (60 s) where RTMP and HTTP close it after 10 s.
        let config = ServerConfig {
            session_timeout_ms: 60_000,
            first_request_timeout_ms: 10_000,
            ..ServerConfig::default()
        };
        let mut silent = ServerSession::new(config.clone(), b"0123456789abcdef", 1_000);
        assert_eq!(silent.poll_timeout(), Some(11_000));
        assert_eq!(silent.handle_timeout(10_999), Ok(()));
        assert_eq!(
            silent.handle_timeout(11_000),
            Err(ServerError::Timeout { after_ms: 10_000 })
        );
        let mut asked = ServerSession::new(config, b"0123456789abcdef", 1_000);
        asked
            .handle_input(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n", 5_000)
            .unwrap();
        assert_eq!(asked.poll_timeout(), Some(65_000));
        assert_eq!(asked.handle_timeout(11_000), Ok(()));
        assert_eq!(
            asked.handle_timeout(65_000),
            Err(ServerError::Timeout { after_ms: 60_000 })
        );
    }

    #[test]
    fn a_trickled_head_times_out_like_silence() {
        // Regression: every byte used to count as activity, so one byte a second kept a
        // never-ending head open for good.
        let mut s = session(1000);
        let head = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Slow: ";
        let mut now = 0;
        let mut result = Ok(());
        for b in head.iter().chain(std::iter::repeat(&b'z')).take(100) {
            now += 100;
            result = s
                .handle_input(&[*b], now)
                .and_then(|()| match s.poll_timeout() {
                    Some(t) if t <= now => s.handle_timeout(now),
                    _ => Ok(()),
                });
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ServerError::Timeout { after_ms: 1000 }));
        assert!(now <= 1100, "timed out at {now}");
    }

    #[test]
    fn complete_requests_keep_the_session_alive() {
        let mut s = session(1000);
        for i in 1..20u64 {
            let req = format!("OPTIONS * RTSP/1.0\r\nCSeq: {i}\r\n\r\n");
            s.handle_input(req.as_bytes(), i * 500).unwrap();
            s.handle_timeout(i * 500 + 1).unwrap();
            assert!(answers(&mut s).starts_with("RTSP/1.0 200"));
        }
    }

    #[test]
    fn udp_setup_to_port_0_is_refused() {
        let mut s = session(60_000);
        let sdp = "v=0\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\na=control:trackID=0\r\n";
        let req = format!(
            "ANNOUNCE rtsp://h/live/x RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        s.handle_input(req.as_bytes(), 0).unwrap();
        assert!(matches!(
            s.poll_event(),
            Some(ServerEvent::AnnounceRequest { .. })
        ));
        s.accept_announce().unwrap();
        assert!(answers(&mut s).starts_with("RTSP/1.0 200"));
        for ports in ["0-1", "0", "5000-0"] {
            let req = format!(
                "SETUP rtsp://h/live/x/trackID=0 RTSP/1.0\r\nCSeq: 2\r\n\
                 Transport: RTP/AVP;unicast;client_port={ports}\r\n\r\n"
            );
            s.handle_input(req.as_bytes(), 1).unwrap();
            assert_eq!(s.poll_event(), None, "client_port={ports}");
            let answer = answers(&mut s);
            assert!(answer.starts_with("RTSP/1.0 461"), "{ports}: {answer}");
        }
    }

    #[test]
    fn a_request_without_a_valid_cseq_gets_400_and_the_session_goes_on() {
        let mut s = session(60_000);
        for bad in ["", "CSeq: abc\r\n", "CSeq: -1\r\n", "CSeq: 99999999999\r\n"] {
            s.handle_input(format!("OPTIONS * RTSP/1.0\r\n{bad}\r\n").as_bytes(), 0)
                .unwrap();
            let answer = answers(&mut s);
            assert!(answer.starts_with("RTSP/1.0 400"), "{bad:?}: {answer}");
        }
        s.handle_input(b"OPTIONS * RTSP/1.0\r\nCSeq: 7\r\n\r\n", 0)
            .unwrap();
        let answer = answers(&mut s);
        assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
        assert!(answer.contains("CSeq: 7"), "{answer}");
    }

    #[test]
    fn seed_is_deterministic() {
        let mut a = Seed::new(b"0123456789abcdef");
        let mut b = Seed::new(b"0123456789abcdef");
        assert_eq!(a.next(), b.next());
        assert_ne!(Seed::new(b"x").next(), Seed::new(b"y").next());
    }
}
