//! The client side of one RTSP connection: DESCRIBE / SETUP / PLAY to pull a stream, or
//! ANNOUNCE / SETUP / RECORD to push one.
//!
//! Create it with [`ClientSession::play`] or [`ClientSession::record`]; the first request is
//! queued at once. Send what [`ClientSession::poll_transmit`] gives ([`Transmit::Tcp`] on the
//! connection, [`Transmit::Udp`] to the server's port of the track), feed the server's bytes to
//! [`ClientSession::handle_input`] and its datagrams to [`ClientSession::handle_udp`], and drain
//! [`ClientSession::poll_event`] after each input. A 401 is answered once with the configured
//! credentials (Digest preferred over Basic); a 461 to a UDP SETUP switches every track to TCP
//! interleaved. With [`ClientConfig::udp_port_base`] 0, the local UDP ports of each track come
//! from the caller: [`ClientEvent::UdpPortsRequest`] asks, [`ClientSession::accept_udp`] or
//! [`ClientSession::reject_udp`] (TCP then) answers. An `Err` is final: close the connection.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Bytes, BytesMut};

use super::auth::Challenge;
use super::server::{Credentials, RtpReceiver, RtpSender, Seed, Track, TrackTransport, Transmit};
use super::transport::{LowerTransport, Transport};
use super::{Item, Message, Reader, Request, Response, RtspError, RtspLimits};
use crate::media::Frame;
use crate::rtp::{RtpError, TrackParams, DEFAULT_REORDER_WINDOW};
use crate::sdp::{resolve_control, SdpError, SessionDescription};

/// Settings of a client session.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The stream URL, `rtsp://host[:port]/path` (without credentials).
    pub url: String,
    /// Credentials to answer a 401 with.
    pub credentials: Option<Credentials>,
    /// The transport to ask for first (UDP falls back to TCP on 461).
    pub transport: LowerTransport,
    /// Local UDP ports: track `i` uses `udp_port_base + 2i` (RTP) and the next one (RTCP).
    /// 0: each track's pair is asked for with [`ClientEvent::UdpPortsRequest`].
    pub udp_port_base: u16,
    /// Message size bounds.
    pub limits: RtspLimits,
    /// How long to wait for each answer, milliseconds.
    pub request_timeout_ms: u64,
    /// Interval of GET_PARAMETER keep-alives while streaming, milliseconds (shortened to half
    /// the server's session timeout when that is smaller).
    pub keepalive_ms: u64,
    /// Interval between RTCP reports, milliseconds.
    pub rtcp_interval_ms: u64,
    /// Largest RTP packet sent, header included.
    pub mtu: usize,
    /// Unix time in milliseconds at `now == 0`, for RTCP NTP timestamps.
    pub wallclock_offset_ms: u64,
    /// `User-Agent` header value.
    pub user_agent: String,
}

impl ClientConfig {
    /// Settings for `url` with TCP interleaved transport and no credentials.
    pub fn new(url: &str) -> Self {
        ClientConfig {
            url: url.to_owned(),
            credentials: None,
            transport: LowerTransport::Tcp,
            udp_port_base: 0,
            limits: RtspLimits::default(),
            request_timeout_ms: 10_000,
            keepalive_ms: 30_000,
            rtcp_interval_ms: 5_000,
            mtu: 1400,
            wallclock_offset_ms: 0,
            user_agent: "rill".to_owned(),
        }
    }
}

/// Errors that end a client session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The server's bytes are not valid RTSP or broke a limit.
    Rtsp(RtspError),
    /// The server refused a request.
    Status {
        /// The request method.
        method: String,
        /// The status code.
        status: u16,
    },
    /// The DESCRIBE answer is not a usable SDP.
    Sdp(SdpError),
    /// No track of the stream is a codec rill handles (or none was given to record).
    NoTracks,
    /// A track could not be (de)packetized with its parameters.
    Rtp(RtpError),
    /// An answer did not come within the request timeout.
    Timeout {
        /// The request method.
        method: String,
    },
    /// The server's answer does not make sense for the request (e.g. no `Transport`).
    Protocol(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Rtsp(e) => write!(f, "rtsp client session: {e}"),
            ClientError::Status { method, status } => write!(
                f,
                "rtsp client session: {method} refused with {status} {}",
                super::reason_phrase(*status)
            ),
            ClientError::Sdp(e) => write!(f, "rtsp client session: {e}"),
            ClientError::NoTracks => write!(f, "rtsp client session: no usable track"),
            ClientError::Rtp(e) => write!(f, "rtsp client session: {e}"),
            ClientError::Timeout { method } => {
                write!(f, "rtsp client session: no answer to {method}")
            }
            ClientError::Protocol(what) => write!(f, "rtsp client session: {what}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// What happened on a client session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The stream's tracks (play sessions); frames carry these indexes.
    Described {
        /// Track parameters, in SDP order.
        tracks: Vec<TrackParams>,
    },
    /// PLAY was accepted: frames follow.
    Playing,
    /// RECORD was accepted: send frames with [`ClientSession::send_frame`].
    Recording,
    /// A frame of a played stream; timestamps count from the start of the session.
    Frame {
        /// Track index.
        track: usize,
        /// The frame.
        frame: Frame,
    },
    /// TEARDOWN was answered.
    TornDown,
    /// UDP SETUP of `track` needs a local port pair (only with [`ClientConfig::udp_port_base`]
    /// 0): answer with [`ClientSession::accept_udp`] or [`ClientSession::reject_udp`].
    UdpPortsRequest {
        /// Track index.
        track: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Describe,
    Announce,
    Setup(usize),
    Play,
    Record,
    Streaming,
    Teardown,
    Done,
}

#[derive(Debug)]
struct Inflight {
    cseq: u32,
    request: Request,
    deadline: u64,
    auth_retried: bool,
}

/// The client side of one RTSP connection. See the module docs.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    record: bool,
    reader: Reader,
    seed: Seed,
    step: Step,
    lower: LowerTransport,
    tracks: Vec<Track>,
    cseq: u32,
    inflight: Option<Inflight>,
    challenge: Option<Challenge>,
    cnonce: String,
    session: Option<String>,
    keepalive_ms: u64,
    next_keepalive: Option<u64>,
    next_report: Option<u64>,
    send_base: Option<(i64, u64)>,
    ntp_base: Option<u64>,
    /// Local UDP port pairs the caller gave, by track (with `udp_port_base` 0).
    udp_ports: Vec<Option<(u16, u16)>>,
    out: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
    now: u64,
    dropped: u64,
    failed: Option<ClientError>,
}

impl ClientSession {
    fn new(config: ClientConfig, record: bool, random: &[u8], now: u64) -> Self {
        let mut seed = Seed::new(random);
        let cnonce = seed.hex(1);
        ClientSession {
            reader: Reader::new(config.limits.clone()),
            lower: config.transport,
            keepalive_ms: config.keepalive_ms.max(1),
            config,
            record,
            seed,
            step: Step::Describe,
            tracks: Vec::new(),
            cseq: 0,
            inflight: None,
            challenge: None,
            cnonce,
            session: None,
            next_keepalive: None,
            next_report: None,
            send_base: None,
            ntp_base: None,
            udp_ports: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            now,
            dropped: 0,
            failed: None,
        }
    }

    /// A session that plays `config.url`: DESCRIBE is queued at once. `random` seeds the
    /// Digest cnonce and RTCP SSRCs.
    pub fn play(config: ClientConfig, random: &[u8], now: u64) -> Self {
        let mut s = Self::new(config, false, random, now);
        let req = Request::new("DESCRIBE", &s.config.url).header("Accept", "application/sdp");
        s.send_request(req);
        s
    }

    /// A session that publishes `tracks` to `config.url`: ANNOUNCE is queued at once. Track
    /// `i` has control `trackID=i`.
    pub fn record(
        config: ClientConfig,
        tracks: Vec<TrackParams>,
        random: &[u8],
        now: u64,
    ) -> Result<Self, ClientError> {
        if tracks.is_empty() {
            return Err(ClientError::NoTracks);
        }
        let mut s = Self::new(config, true, random, now);
        s.step = Step::Announce;
        let base = s.config.url.trim_end_matches('/').to_owned();
        let (sdp, described) = super::server::describe_tracks(&base, &base, tracks);
        s.tracks = described;
        let mut req =
            Request::new("ANNOUNCE", &s.config.url).header("Content-Type", "application/sdp");
        req.body = Bytes::from(sdp);
        s.send_request(req);
        Ok(s)
    }

    /// The session id the server gave, once SETUP was answered.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// How a track's packets travel, once it was set up.
    pub fn track_transport(&self, track: usize) -> Option<TrackTransport> {
        self.tracks.get(track).and_then(|t| t.transport)
    }

    /// Packets received on channels or tracks that carry nothing, or that did not parse.
    pub fn dropped_packets(&self) -> u64 {
        self.dropped
    }

    /// Feeds bytes received on the TCP connection.
    pub fn handle_input(&mut self, data: &[u8], now: u64) -> Result<(), ClientError> {
        self.check_failed()?;
        self.now = self.now.max(now);
        if let Err(e) = self.reader.push(data) {
            return Err(self.fail(ClientError::Rtsp(e)));
        }
        loop {
            match self.reader.poll_item() {
                Ok(None) => return Ok(()),
                Ok(Some(Item::Message(Message::Response(r)))) => {
                    if let Err(e) = self.on_response(r) {
                        return Err(self.fail(e));
                    }
                }
                Ok(Some(Item::Message(Message::Request(r)))) => {
                    // Requests from the server (rare): answered as not implemented.
                    let mut resp = Response::new(501);
                    if let Some(c) = r.headers.cseq() {
                        resp.headers.set("CSeq", c.to_string());
                    }
                    let mut b = BytesMut::new();
                    resp.write(&mut b);
                    self.out.push_back(Transmit::Tcp(b.freeze()));
                }
                Ok(Some(Item::Interleaved { channel, payload })) => {
                    let found =
                        self.tracks
                            .iter()
                            .enumerate()
                            .find_map(|(i, t)| match t.transport {
                                Some(TrackTransport::Interleaved { rtp, .. }) if rtp == channel => {
                                    Some((i, false))
                                }
                                Some(TrackTransport::Interleaved { rtcp, .. })
                                    if rtcp == channel =>
                                {
                                    Some((i, true))
                                }
                                _ => None,
                            });
                    match found {
                        Some((track, rtcp)) => self.on_packet(track, rtcp, payload),
                        None => self.dropped += 1,
                    }
                }
                Err(e) => return Err(self.fail(ClientError::Rtsp(e))),
            }
        }
    }

    /// Feeds one UDP datagram received on the local port pair of `track`.
    pub fn handle_udp(&mut self, track: usize, rtcp: bool, data: Bytes, now: u64) {
        self.now = self.now.max(now);
        if matches!(
            self.track_transport(track),
            Some(TrackTransport::Udp { .. })
        ) {
            self.on_packet(track, rtcp, data);
        } else {
            self.dropped += 1;
        }
    }

    /// Checks the answer timeout, sends keep-alives and RTCP reports that are due.
    pub fn handle_timeout(&mut self, now: u64) -> Result<(), ClientError> {
        self.check_failed()?;
        self.now = self.now.max(now);
        if let Some(i) = &self.inflight {
            if now >= i.deadline {
                let e = ClientError::Timeout {
                    method: i.request.method.clone(),
                };
                return Err(self.fail(e));
            }
        }
        if self.next_keepalive.is_some_and(|t| now >= t) {
            self.next_keepalive = Some(now.saturating_add(self.keepalive_ms));
            if self.inflight.is_none() {
                let req = Request::new("GET_PARAMETER", &self.config.url);
                self.send_request(req);
            }
        }
        if self.next_report.is_some_and(|t| now >= t) {
            self.next_report = Some(now.saturating_add(self.config.rtcp_interval_ms.max(1)));
            for (i, t) in self.tracks.iter_mut().enumerate() {
                t.emit_reports(i, now, self.config.wallclock_offset_ms, &mut self.out);
            }
        }
        Ok(())
    }

    /// The next deadline: an answer, a keep-alive or an RTCP report.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.failed.is_some() {
            return None;
        }
        [
            self.inflight.as_ref().map(|i| i.deadline),
            self.next_keepalive,
            self.next_report,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next bytes or datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Sends one frame of `track` while recording (ignored otherwise). Timestamps are rebased
    /// so that the first frame sent starts the session at 0. Returns the RTP packets queued.
    pub fn send_frame(&mut self, track: usize, frame: &Frame, now: u64) -> Result<usize, RtpError> {
        if !self.record || self.step != Step::Streaming {
            return Ok(0);
        }
        self.now = self.now.max(now);
        let Some(t) = self.tracks.get_mut(track) else {
            return Ok(0);
        };
        t.send_rebased(
            track,
            frame,
            &mut self.send_base,
            self.now,
            self.config.wallclock_offset_ms,
            &mut self.out,
        )
    }

    /// Answers [`ClientEvent::UdpPortsRequest`] for `track`: its SETUP goes out with the local
    /// RTP and RTCP ports `ports`.
    pub fn accept_udp(&mut self, track: usize, ports: (u16, u16)) {
        if self.step != Step::Setup(track) || self.inflight.is_some() {
            return;
        }
        if self.udp_ports.len() <= track {
            self.udp_ports.resize(track + 1, None);
        }
        if let Some(slot) = self.udp_ports.get_mut(track) {
            *slot = Some(ports);
        }
        self.setup(track);
    }

    /// Answers [`ClientEvent::UdpPortsRequest`] for `track` with no ports: every track from
    /// this one on is set up over TCP interleaved.
    pub fn reject_udp(&mut self, track: usize) {
        if self.step != Step::Setup(track) || self.inflight.is_some() {
            return;
        }
        self.lower = LowerTransport::Tcp;
        self.setup(track);
    }

    /// The local UDP ports of track `i`: the caller's, or `udp_port_base + 2i` and the next.
    fn client_ports(&self, i: usize) -> Option<(u16, u16)> {
        if self.config.udp_port_base == 0 {
            return self.udp_ports.get(i).copied().flatten();
        }
        let p = self.config.udp_port_base.wrapping_add((2 * i) as u16);
        Some((p, p.wrapping_add(1)))
    }

    /// Ends the session with TEARDOWN ([`ClientEvent::TornDown`] follows the answer).
    pub fn teardown(&mut self) {
        if matches!(self.step, Step::Teardown | Step::Done) || self.failed.is_some() {
            return;
        }
        self.step = Step::Teardown;
        self.next_keepalive = None;
        self.next_report = None;
        let req = Request::new("TEARDOWN", &self.config.url);
        self.send_request(req);
    }

    fn check_failed(&self) -> Result<(), ClientError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: ClientError) -> ClientError {
        self.failed = Some(e.clone());
        e
    }

    fn send_request(&mut self, req: Request) {
        self.send_request_with(req, false);
    }

    /// Sends a request; `auth_retried` marks the resend after a 401, so a second 401 fails.
    fn send_request_with(&mut self, mut req: Request, auth_retried: bool) {
        self.cseq = self.cseq.wrapping_add(1);
        req.headers.set("CSeq", self.cseq.to_string());
        req.headers
            .set("User-Agent", self.config.user_agent.clone());
        if let Some(s) = &self.session {
            req.headers.set("Session", s.clone());
        }
        if let (Some(ch), Some(c)) = (&self.challenge, &self.config.credentials) {
            let a = ch.authorization(
                &c.username,
                &c.password,
                &req.method,
                &req.uri,
                &self.cnonce,
            );
            req.headers.set("Authorization", a);
        }
        let mut b = BytesMut::new();
        req.write(&mut b);
        self.out.push_back(Transmit::Tcp(b.freeze()));
        self.inflight = Some(Inflight {
            cseq: self.cseq,
            request: req,
            deadline: self.now.saturating_add(self.config.request_timeout_ms),
            auth_retried,
        });
    }

    fn on_response(&mut self, resp: Response) -> Result<(), ClientError> {
        let matches = self
            .inflight
            .as_ref()
            .is_some_and(|i| resp.headers.cseq().map_or(true, |c| c == i.cseq));
        if !matches {
            return Ok(()); // A late answer to something given up on.
        }
        let Some(inflight) = self.inflight.take() else {
            return Ok(());
        };
        let method = inflight.request.method.clone();
        if self.step == Step::Streaming {
            // Keep-alive answers: any status will do (some servers lack GET_PARAMETER).
            return Ok(());
        }
        if resp.status == 401 && !inflight.auth_retried && self.config.credentials.is_some() {
            let challenges: Vec<Challenge> = resp
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("WWW-Authenticate"))
                .filter_map(|(_, v)| Challenge::parse(v).ok())
                .collect();
            let chosen = challenges
                .iter()
                .find(|c| matches!(c, Challenge::Digest { .. }))
                .or(challenges.first())
                .cloned();
            if let Some(ch) = chosen {
                self.challenge = Some(ch);
                self.send_request_with(inflight.request, true);
                return Ok(());
            }
        }
        match self.step {
            Step::Setup(i) if resp.status == 461 && self.lower == LowerTransport::Udp => {
                self.lower = LowerTransport::Tcp;
                self.setup(i);
                return Ok(());
            }
            Step::Teardown => {
                self.step = Step::Done;
                self.events.push_back(ClientEvent::TornDown);
                return Ok(());
            }
            _ => {}
        }
        if !(200..300).contains(&resp.status) {
            return Err(ClientError::Status {
                method,
                status: resp.status,
            });
        }
        match self.step {
            Step::Describe => self.on_described(&inflight.request.uri, resp),
            Step::Announce => {
                self.setup(0);
                Ok(())
            }
            Step::Setup(i) => self.on_setup(i, resp),
            Step::Play => {
                self.on_play(&resp);
                Ok(())
            }
            Step::Record => {
                self.start_streaming();
                self.events.push_back(ClientEvent::Recording);
                Ok(())
            }
            Step::Streaming | Step::Teardown | Step::Done => Ok(()),
        }
    }

    fn on_described(&mut self, url: &str, resp: Response) -> Result<(), ClientError> {
        let sdp = SessionDescription::parse(&resp.body).map_err(ClientError::Sdp)?;
        let base = resp
            .headers
            .get("Content-Base")
            .or_else(|| resp.headers.get("Content-Location"))
            .unwrap_or(url)
            .to_owned();
        let base = match sdp.control() {
            Some(c) if !c.is_empty() && c != "*" => resolve_control(&base, c),
            _ => base,
        };
        self.tracks = sdp
            .media
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                Some(Track {
                    params: m.track_params(i).ok()?,
                    control: resolve_control(&base, m.control().unwrap_or("")),
                    transport: None,
                    sender: None,
                    receiver: None,
                })
            })
            .collect();
        if self.tracks.is_empty() {
            return Err(ClientError::NoTracks);
        }
        self.events.push_back(ClientEvent::Described {
            tracks: self.tracks.iter().map(|t| t.params.clone()).collect(),
        });
        self.setup(0);
        Ok(())
    }

    fn setup(&mut self, i: usize) {
        let Some(t) = self.tracks.get(i) else {
            return;
        };
        let mut spec = Transport::new(self.lower);
        match self.lower {
            LowerTransport::Tcp => {
                let ch = (2 * i).min(254) as u8;
                spec.interleaved = Some((ch, ch + 1));
            }
            LowerTransport::Udp => {
                let Some(ports) = self.client_ports(i) else {
                    self.step = Step::Setup(i);
                    self.events
                        .push_back(ClientEvent::UdpPortsRequest { track: i });
                    return;
                };
                spec.client_port = Some(ports);
            }
        }
        spec.record = self.record;
        let req = Request::new("SETUP", &t.control).header("Transport", spec.to_string());
        self.step = Step::Setup(i);
        self.send_request(req);
    }

    fn on_setup(&mut self, i: usize, resp: Response) -> Result<(), ClientError> {
        let spec = resp
            .headers
            .get("Transport")
            .and_then(|v| Transport::parse_list(v).ok())
            .and_then(|l| l.into_iter().next())
            .ok_or(ClientError::Protocol(
                "SETUP answer without a valid Transport",
            ))?;
        if let Some(v) = resp.headers.get("Session") {
            let mut parts = v.split(';');
            let id = parts.next().unwrap_or("").trim().to_owned();
            if id.is_empty() {
                return Err(ClientError::Protocol("SETUP answer with an empty Session"));
            }
            for p in parts {
                if let Some(secs) = p
                    .trim()
                    .strip_prefix("timeout=")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                {
                    self.keepalive_ms = self.keepalive_ms.min(secs.saturating_mul(500).max(1000));
                }
            }
            self.session = Some(id);
        }
        let transport = match (self.lower, spec.interleaved, spec.server_port) {
            (LowerTransport::Tcp, Some((rtp, rtcp)), _) => {
                TrackTransport::Interleaved { rtp, rtcp }
            }
            (LowerTransport::Tcp, None, _) => {
                let ch = (2 * i).min(254) as u8;
                TrackTransport::Interleaved {
                    rtp: ch,
                    rtcp: ch + 1,
                }
            }
            (LowerTransport::Udp, _, Some(server)) => TrackTransport::Udp {
                client: spec
                    .client_port
                    .or_else(|| self.client_ports(i))
                    .unwrap_or_default(),
                server,
            },
            (LowerTransport::Udp, _, None) => {
                return Err(ClientError::Protocol(
                    "UDP SETUP answer without server_port",
                ))
            }
        };
        let window = match transport {
            TrackTransport::Interleaved { .. } => 1,
            TrackTransport::Udp { .. } => DEFAULT_REORDER_WINDOW,
        };
        let mtu = self.config.mtu;
        let record = self.record;
        if let Some(t) = self.tracks.get_mut(i) {
            if record {
                t.sender =
                    Some(RtpSender::new(&t.params, &mut self.seed, mtu).map_err(ClientError::Rtp)?);
            } else {
                t.receiver = Some(
                    RtpReceiver::new(&t.params, window, &mut self.seed)
                        .map_err(ClientError::Rtp)?,
                );
            }
            t.transport = Some(transport);
        }
        if i + 1 < self.tracks.len() {
            self.setup(i + 1);
        } else {
            let method = if self.record { "RECORD" } else { "PLAY" };
            self.step = if self.record {
                Step::Record
            } else {
                Step::Play
            };
            let req = Request::new(method, &self.config.url).header("Range", "npt=0.000-");
            self.send_request(req);
        }
        Ok(())
    }

    fn on_play(&mut self, resp: &Response) {
        if let Some(info) = resp.headers.get("RTP-Info") {
            for entry in info.split(',') {
                let mut url = None;
                let mut rtptime = None;
                for p in entry.split(';') {
                    match p.trim().split_once('=') {
                        Some(("url", v)) => url = Some(v.trim()),
                        Some(("rtptime", v)) => rtptime = v.trim().parse::<u32>().ok(),
                        _ => {}
                    }
                }
                let (Some(url), Some(rtptime)) = (url, rtptime) else {
                    continue;
                };
                let path = super::server::url_path(url).0;
                let found = self.tracks.iter_mut().find(|t| {
                    t.control.eq_ignore_ascii_case(url)
                        || super::server::url_path(&t.control).0 == path
                });
                if let Some(rx) = found.and_then(|t| t.receiver.as_mut()) {
                    rx.set_reference(rtptime, 0);
                }
            }
        }
        self.start_streaming();
        self.events.push_back(ClientEvent::Playing);
    }

    fn start_streaming(&mut self) {
        self.step = Step::Streaming;
        self.next_keepalive = Some(self.now.saturating_add(self.keepalive_ms));
        self.next_report = Some(self.now.saturating_add(self.config.rtcp_interval_ms.max(1)));
    }

    fn on_packet(&mut self, track: usize, rtcp: bool, data: Bytes) {
        let Some(rx) = self.tracks.get_mut(track).and_then(|t| t.receiver.as_mut()) else {
            if !rtcp {
                self.dropped += 1;
            }
            return;
        };
        let r = if rtcp {
            rx.on_rtcp(&data, self.now, &mut self.ntp_base)
        } else if self.step != Step::Streaming {
            self.dropped += 1;
            Ok(())
        } else {
            let events = &mut self.events;
            rx.on_rtp(&data, self.now, |frame| {
                events.push_back(ClientEvent::Frame { track, frame })
            })
        };
        if r.is_err() {
            self.dropped += 1;
        }
    }
}
