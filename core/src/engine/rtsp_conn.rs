//! The engine's RTSP side: server session events turned into hub operations.
//!
//! A publisher (ANNOUNCE / RECORD) hands its [`Frame`]s to its publication, which makes the
//! shared packets, and its ANNOUNCE describes the stream's tracks. A player (DESCRIBE / PLAY)
//! is a hub player like any other: its packets' frames go through its own session, which
//! packetizes them (sequence numbers and SSRC are per player).
//!
//! A DESCRIBE is answered from the stream's track description in the hub: the player joins the
//! hub at once (waiting for the publisher if needed), and its packets wait in its hub queue
//! until the description is complete and PLAY comes. UDP transport is sans-IO: a SETUP over
//! UDP asks the runtime for a port pair ([`Output::OpenUdp`], answered by
//! [`Engine::handle_udp_open`]); datagrams come in through [`Engine::handle_udp`] and go out as
//! [`Output::SendUdp`].

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};

use super::callback::Resume;
use super::{relay, ConnId, ConnKind, Engine, LogLevel, Output, Protocol, Role};
use crate::auth::Access;
use crate::hub::{AudioTrack, PlayState, Tracks, VideoTrack};
use crate::interleave::{Interleaver, RTSP_PUBLISHER_WAIT_MS};
use crate::media::{Codec, FrameKind, TrackKind};
use crate::rtp::{CodecParams, TrackParams};
use crate::rtsp::server::{ServerError, ServerEvent, ServerSession, TrackTransport, Transmit};
use crate::stream_key::StreamKey;

/// The state of one RTSP connection.
#[derive(Debug)]
pub(super) struct RtspConn {
    pub(super) session: ServerSession,
    /// Track indexes of the play session's video and audio.
    video: Option<usize>,
    audio: Option<usize>,
    /// A DESCRIBE waits for the stream's tracks to be described.
    describe_pending: bool,
    /// A coded frame was sent to the player (configs before it are known from the SDP).
    media_started: bool,
    /// UDP port pairs were asked for.
    udp: bool,
    /// The earliest engine timer queued for the session.
    timer_at: Option<u64>,
    /// Last time seen, for frames sent from [`Engine::poll_transmit`].
    now: u64,
    /// The SSRC each UDP track sends with, read from its packets, for the goodbye.
    ssrcs: Vec<(usize, u32)>,
    /// When a publisher last gave a frame (or started): it is closed after
    /// `publish_idle_timeout_ms` without one, like an RTMP publisher.
    media_at: u64,
    /// The tracks a publisher's ANNOUNCE gave, in SDP order.
    announced: Vec<TrackKind>,
    /// A recording publisher's frames in decode order across its tracks.
    interleaver: Option<Interleaver>,
}

impl RtspConn {
    pub(super) fn new(session: ServerSession, now: u64) -> Self {
        RtspConn {
            session,
            video: None,
            audio: None,
            describe_pending: false,
            media_started: false,
            udp: false,
            timer_at: None,
            now,
            ssrcs: Vec::new(),
            media_at: now,
            announced: Vec::new(),
            interleaver: None,
        }
    }

    /// UDP port pairs were asked for.
    pub(super) fn has_udp(&self) -> bool {
        self.udp
    }

    /// Every set-up track goes over UDP (media is then sent as soon as it arrives).
    fn all_udp(&self) -> bool {
        let tracks = [self.video, self.audio];
        let mut any = false;
        for t in tracks.into_iter().flatten() {
            match self.session.track_transport(t) {
                Some(TrackTransport::Udp { .. }) => any = true,
                Some(TrackTransport::Interleaved { .. }) => return false,
                None => {}
            }
        }
        any
    }
}

/// The SDP description of a video track, for a DESCRIBE.
fn video_params(v: &VideoTrack) -> Option<TrackParams> {
    let codec = match v.codec {
        Codec::H264 => CodecParams::H264 {
            sps: v.sps.clone(),
            pps: v.pps.clone(),
        },
        Codec::H265 => CodecParams::H265 {
            vps: v.vps.clone(),
            sps: v.sps.clone(),
            pps: v.pps.clone(),
        },
        Codec::Av1 => CodecParams::Av1 {
            config: v.av1_config.clone(),
        },
        _ => return None,
    };
    Some(TrackParams {
        payload_type: 96,
        clock_rate: 90_000,
        channels: 1,
        codec,
    })
}

/// The SDP description of an audio track, for a DESCRIBE.
fn audio_params(a: &AudioTrack) -> Option<TrackParams> {
    let params = |payload_type, clock_rate, channels, codec| TrackParams {
        payload_type,
        clock_rate,
        channels,
        codec,
    };
    match a.codec {
        Codec::Aac if !a.config.is_empty() => Some(params(
            97,
            a.sample_rate,
            a.channels.max(1),
            CodecParams::aac_hbr(a.config.clone()),
        )),
        Codec::G711A | Codec::G711U => {
            let (clock, ch) = if a.sample_rate == 0 {
                (8000, 1)
            } else {
                (a.sample_rate, a.channels.max(1))
            };
            let (static_pt, codec) = if a.codec == Codec::G711A {
                (8, CodecParams::G711A)
            } else {
                (0, CodecParams::G711U)
            };
            let pt = if (clock, ch) == (8000, 1) {
                static_pt
            } else {
                97
            };
            Some(params(pt, clock, ch, codec))
        }
        Codec::Opus => Some(params(97, 48_000, 2, CodecParams::Opus)),
        _ => None,
    }
}

/// What RTSP carries of a stream: the tracks' RTP parameters in SDP order, the index of the
/// video and the audio track among them, and the codecs with no RTP form in rill.
pub(super) struct RtspTracks {
    pub params: Vec<TrackParams>,
    pub video: Option<usize>,
    pub audio: Option<usize>,
    pub left_out: Vec<Codec>,
}

/// The RTSP form of `tracks` (a player's DESCRIBE, a relay push's ANNOUNCE).
pub(super) fn rtsp_tracks(tracks: &Tracks) -> RtspTracks {
    let mut t = RtspTracks {
        params: Vec::new(),
        video: None,
        audio: None,
        left_out: Vec::new(),
    };
    if let Some(v) = tracks.video.as_ref() {
        match video_params(v) {
            Some(p) => {
                t.video = Some(t.params.len());
                t.params.push(p);
            }
            None => t.left_out.push(v.codec),
        }
    }
    if let Some(a) = tracks.audio.as_ref() {
        match audio_params(a) {
            Some(p) => {
                t.audio = Some(t.params.len());
                t.params.push(p);
            }
            None => t.left_out.push(a.codec),
        }
    }
    t
}

/// The tracks an ANNOUNCE declares: a complete description from the start.
pub(super) fn announced_tracks(tracks: &[TrackParams]) -> Tracks {
    let mut t = Tracks {
        complete: true,
        ..Tracks::default()
    };
    for p in tracks {
        match &p.codec {
            CodecParams::H264 { sps, pps } => {
                t.video = Some(VideoTrack::new(
                    Codec::H264,
                    Vec::new(),
                    sps.clone(),
                    pps.clone(),
                ))
            }
            CodecParams::H265 { vps, sps, pps } => {
                t.video = Some(VideoTrack::new(
                    Codec::H265,
                    vps.clone(),
                    sps.clone(),
                    pps.clone(),
                ))
            }
            CodecParams::Av1 { config } => {
                let mut v = VideoTrack::new(Codec::Av1, Vec::new(), Vec::new(), Vec::new());
                v.av1_config = config.clone();
                t.video = Some(v);
            }
            codec => {
                let config = match codec {
                    CodecParams::Aac { config, .. } | CodecParams::AacLatm { config, .. } => {
                        config.clone()
                    }
                    _ => Bytes::new(),
                };
                t.audio = Some(AudioTrack {
                    codec: codec.codec(),
                    sample_rate: p.clock_rate,
                    channels: p.channels,
                    config,
                });
            }
        }
    }
    t
}

impl Engine {
    pub(super) fn rtsp_mut(&mut self, conn: ConnId) -> Option<&mut RtspConn> {
        match &mut self.conns.get_mut(&conn)?.kind {
            ConnKind::Rtsp(r) => Some(r),
            _ => None,
        }
    }

    /// Bytes from the client's TCP connection.
    pub(super) fn rtsp_input(&mut self, conn: ConnId, data: &[u8], now: u64) {
        let Some(r) = self.rtsp_mut(conn) else { return };
        r.now = now;
        let result = r.session.handle_input(data, now);
        self.drain_rtsp(conn, now);
        if let Err(e) = result {
            self.close(conn, true, &e.to_string(), now);
        }
    }

    /// The runtime bound (or could not bind) the UDP port pair asked for by
    /// [`Output::OpenUdp`]: `ports` are the local RTP and RTCP ports.
    pub fn handle_udp_open(
        &mut self,
        conn: ConnId,
        track: usize,
        ports: Option<(u16, u16)>,
        now_ms: u64,
    ) {
        if self.relay.owns(conn) {
            return self.relay_udp_open(conn, track, ports, now_ms);
        }
        let Some(r) = self.rtsp_mut(conn) else { return };
        let result = match ports {
            Some(p) => r.session.accept_udp(p),
            None => r.session.reject_udp(461),
        };
        let _ = track;
        self.drain_rtsp(conn, now_ms);
        if let Err(e) = result {
            self.close(conn, true, &e.to_string(), now_ms);
        }
        self.drain_hub(now_ms);
    }

    /// A datagram arrived from `from` on the UDP port pair opened for `track` of `conn` (its
    /// RTCP port when `rtcp`). Datagrams from another host than the connection's peer are
    /// dropped.
    pub fn handle_udp(
        &mut self,
        conn: ConnId,
        track: usize,
        rtcp: bool,
        from: SocketAddr,
        data: Bytes,
        now_ms: u64,
    ) {
        if self.relay.owns(conn) {
            return self.relay_udp(conn, track, rtcp, from, data, now_ms);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closing || from.ip() != c.peer.ip() {
            return;
        }
        c.bytes_in += data.len() as u64;
        c.last_input_ms = now_ms;
        let ConnKind::Rtsp(r) = &mut c.kind else {
            return;
        };
        r.now = now_ms;
        r.session.handle_udp(track, rtcp, data, now_ms);
        self.drain_rtsp(conn, now_ms);
        self.drain_hub(now_ms);
    }

    /// When a publishing connection is closed for want of media, if it publishes.
    fn rtsp_publish_deadline(&self, conn: ConnId) -> Option<u64> {
        let c = self.conns.get(&conn)?;
        let ConnKind::Rtsp(r) = &c.kind else {
            return None;
        };
        (c.role == Role::Publish).then(|| {
            r.media_at
                .saturating_add(self.config.publish_idle_timeout_ms)
        })
    }

    /// The session's timer fired: RTCP reports, the session timeout, or a publisher that sends
    /// no media.
    pub(super) fn rtsp_timeout(&mut self, conn: ConnId, now: u64) {
        if self.rtsp_publish_deadline(conn).is_some_and(|d| d <= now) {
            self.close(conn, true, "publisher idle timeout", now);
            return;
        }
        let Some(r) = self.rtsp_mut(conn) else { return };
        r.timer_at = None;
        r.now = now;
        let due = r.session.poll_timeout().is_some_and(|t| t <= now);
        let result = if due {
            r.session.handle_timeout(now)
        } else {
            Ok(())
        };
        self.drain_rtsp(conn, now);
        if let Err(e) = result {
            self.close(conn, true, &e.to_string(), now);
        }
    }

    /// Handles the session's events, queues what it has to send, and keeps its timer armed.
    pub(super) fn drain_rtsp(&mut self, conn: ConnId, now: u64) {
        loop {
            let Some(r) = self.rtsp_mut(conn) else { return };
            let Some(event) = r.session.poll_event() else {
                break;
            };
            self.on_rtsp_event(conn, event, now);
        }
        let mut sink = Vec::new();
        if self.rtsp_transmits(conn, &mut sink) > 0 {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.pending.extend(sink);
            }
            self.want_transmit(conn);
        }
        self.rearm_rtsp(conn);
    }

    fn rearm_rtsp(&mut self, conn: ConnId) {
        let publish = self.rtsp_publish_deadline(conn);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closing {
            return;
        }
        let ConnKind::Rtsp(r) = &mut c.kind else {
            return;
        };
        let session = r.session.poll_timeout();
        let next = match (session, publish) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(d) = next {
            if r.timer_at.map_or(true, |t| d < t) {
                r.timer_at = Some(d);
                c.timer_armed = true;
                self.timers.push(std::cmp::Reverse((d, conn)));
            }
        }
    }

    /// Moves the session's output: TCP bytes to `out` (their count is returned), datagrams to
    /// [`Output::SendUdp`].
    pub(super) fn rtsp_transmits(&mut self, conn: ConnId, out: &mut Vec<Bytes>) -> usize {
        let Some(c) = self.conns.get_mut(&conn) else {
            return 0;
        };
        let peer = c.peer.ip();
        let ConnKind::Rtsp(r) = &mut c.kind else {
            return 0;
        };
        let mut n = 0;
        while let Some(t) = r.session.poll_transmit() {
            match t {
                Transmit::Tcp(b) => {
                    n += b.len();
                    out.push(b);
                }
                Transmit::Udp { track, rtcp, bytes } => {
                    let Some(TrackTransport::Udp { client, .. }) = r.session.track_transport(track)
                    else {
                        continue;
                    };
                    let port = if rtcp { client.1 } else { client.0 };
                    if let (false, Some(ssrc)) = (rtcp, bytes.get(8..12)) {
                        let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
                        if !r.ssrcs.contains(&(track, ssrc)) {
                            r.ssrcs.retain(|(t, _)| *t != track);
                            r.ssrcs.push((track, ssrc));
                        }
                    }
                    c.bytes_out += bytes.len() as u64;
                    self.outputs.push_back(Output::SendUdp {
                        conn,
                        track,
                        rtcp,
                        to: SocketAddr::new(peer, port),
                        data: bytes,
                    });
                }
            }
        }
        n
    }

    /// The stream ended: UDP players get an RTCP goodbye on every track (over TCP, the closing
    /// connection says it), so they end cleanly rather than wait for packets.
    pub(super) fn rtsp_goodbye(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let ConnKind::Rtsp(r) = &c.kind else { return };
        for &(track, ssrc) in &r.ssrcs {
            let Some(TrackTransport::Udp { client, .. }) = r.session.track_transport(track) else {
                continue;
            };
            // An empty receiver report (a compound packet starts with a report), then BYE.
            let mut b = BytesMut::with_capacity(16);
            b.put_slice(&[0x80, 201, 0, 1]);
            b.put_u32(ssrc);
            b.put_slice(&[0x81, 203, 0, 1]);
            b.put_u32(ssrc);
            self.outputs.push_back(Output::SendUdp {
                conn,
                track,
                rtcp: true,
                to: SocketAddr::new(c.peer.ip(), client.1),
                data: b.freeze(),
            });
        }
    }

    /// Refuses the request the connection's RTSP session is waiting on with `status`, through
    /// `reject` (`reject_describe` or `reject_announce`: the caller answers that event, so the
    /// request is pending). An error met in the input buffered behind the request stays with
    /// the session, which returns it from its next `handle_input`: ignored here.
    fn rtsp_reject(
        &mut self,
        conn: ConnId,
        reject: fn(&mut ServerSession, u16) -> Result<(), ServerError>,
        status: u16,
    ) {
        if let Some(r) = self.rtsp_mut(conn) {
            let _ = reject(&mut r.session, status);
        }
    }

    fn on_rtsp_event(&mut self, conn: ConnId, event: ServerEvent, now: u64) {
        match event {
            ServerEvent::DescribeRequest { path, query, .. } => {
                self.rtsp_describe(conn, &path, &query, now)
            }
            ServerEvent::AnnounceRequest {
                path,
                query,
                tracks,
                frame_rate,
                ..
            } => self.rtsp_announce(conn, &path, &query, &tracks, frame_rate, now),
            ServerEvent::AnnounceRefused { path, reason } => {
                self.outputs.push_back(Output::Log {
                    level: LogLevel::Warn,
                    message: format!("rtsp: publish of {path} refused with 415: {reason}"),
                });
            }
            ServerEvent::UdpPortsRequest { track, .. } => {
                if let Some(r) = self.rtsp_mut(conn) {
                    r.udp = true;
                }
                self.outputs.push_back(Output::OpenUdp { conn, track });
            }
            ServerEvent::Playing => {
                let stream = match self.conns.get(&conn) {
                    Some(c) if c.role == Role::None => c.stream.clone(),
                    _ => None,
                };
                if let Some(stream) = stream {
                    self.start_session(conn, Role::Play, Protocol::Rtsp, &stream, now);
                }
                self.rtsp_player_ready(conn, now);
            }
            ServerEvent::Frame { frame, .. } => {
                let Some(r) = self.rtsp_mut(conn) else { return };
                r.media_at = now;
                match &mut r.interleaver {
                    Some(i) => i.push(frame),
                    None => return self.publish_frame(conn, frame, None),
                }
                while let Some(f) = self
                    .rtsp_mut(conn)
                    .and_then(|r| r.interleaver.as_mut())
                    .and_then(Interleaver::poll_frame)
                {
                    self.publish_frame(conn, f, None);
                }
            }
            ServerEvent::Recording => {
                if let Some(r) = self.rtsp_mut(conn) {
                    r.media_at = now;
                    // Interleave the tracks that were set up (only they can give frames); a
                    // RECORD after a PAUSE keeps what is held.
                    if r.interleaver.is_none() {
                        let set_up = |kind| {
                            r.announced
                                .iter()
                                .enumerate()
                                .any(|(i, k)| *k == kind && r.session.track_transport(i).is_some())
                        };
                        let (video, audio) = (set_up(TrackKind::Video), set_up(TrackKind::Audio));
                        r.interleaver =
                            Some(Interleaver::new(video, audio, RTSP_PUBLISHER_WAIT_MS));
                    }
                }
            }
            ServerEvent::Teardown => {
                self.detach(conn, now);
                let udp = if let Some(c) = self.conns.get_mut(&conn) {
                    // The stream's name stays, so that the connection's end record names the
                    // last stream it was about; a new DESCRIBE or ANNOUNCE replaces it.
                    c.role = Role::None;
                    if let ConnKind::Rtsp(r) = &mut c.kind {
                        r.video = None;
                        r.audio = None;
                        r.describe_pending = false;
                        r.media_started = false;
                        r.announced.clear();
                        r.interleaver = None;
                        std::mem::take(&mut r.udp)
                    } else {
                        false
                    }
                } else {
                    false
                };
                if udp {
                    self.outputs.push_back(Output::CloseUdp { conn });
                }
            }
            _ => {}
        }
    }

    pub(super) fn rtsp_describe(&mut self, conn: ConnId, path: &str, query: &str, now: u64) {
        let busy = self.conns.get(&conn).is_some_and(|c| c.role != Role::None);
        let Some(key) = StreamKey::parse(path).filter(|_| !busy) else {
            self.rtsp_reject(conn, ServerSession::reject_describe, 404);
            return;
        };
        let resume = || Resume::RtspDescribe {
            path: path.to_owned(),
            query: query.to_owned(),
        };
        match self.check_access(
            conn,
            Access::PlayRtsp,
            Protocol::Rtsp,
            &key,
            query,
            resume,
            now,
        ) {
            Ok(true) => {}
            Ok(false) => return,
            Err(reason) => {
                self.rtsp_reject(conn, ServerSession::reject_describe, 403);
                return self.close(conn, true, &reason, now);
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stream = Some(key.clone());
            if let ConnKind::Rtsp(r) = &mut c.kind {
                r.describe_pending = true;
            }
        }
        // The answer comes once the stream's tracks are described (at once if they are).
        if self.play_or_pull(&key, conn, relay::is_relayed(query), now) == PlayState::Playing {
            self.rtsp_player_ready(conn, now);
        }
    }

    /// The hub has packets for this player.
    pub(super) fn rtsp_player_ready(&mut self, conn: ConnId, now: u64) {
        let Some(r) = self.rtsp_mut(conn) else { return };
        if r.describe_pending {
            self.rtsp_answer_describe(conn, now);
        } else if r.session.is_playing() {
            if r.all_udp() {
                // Answers (the PLAY reply) still go over TCP.
                let mut tcp = Vec::new();
                self.rtsp_send(conn, usize::MAX, &mut tcp);
                if !tcp.is_empty() {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.pending.extend(tcp);
                    }
                    self.want_transmit(conn);
                }
            } else {
                self.want_transmit(conn);
            }
        }
    }

    /// Answers a pending DESCRIBE from the stream's track description, once it is complete
    /// (the player's packets wait in its hub queue meanwhile).
    fn rtsp_answer_describe(&mut self, conn: ConnId, now: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(tracks) = c.stream.as_ref().and_then(|k| self.hub.tracks(k)) else {
            return;
        };
        let ConnKind::Rtsp(r) = &mut c.kind else {
            return;
        };
        if !tracks.complete {
            return;
        }
        r.describe_pending = false;
        let t = rtsp_tracks(tracks);
        (r.video, r.audio) = (t.video, t.audio);
        let result = if t.params.is_empty() {
            r.session.reject_describe(415)
        } else {
            r.session.accept_describe(t.params)
        };
        let peer = c.peer;
        for codec in t.left_out {
            self.outputs.push_back(Output::Log {
                level: LogLevel::Info,
                message: format!(
                    "player {conn} ({peer}): {} left out of RTSP: rill has no RTP payload format for it",
                    codec.name()
                ),
            });
        }
        self.drain_rtsp(conn, now);
        if let Err(e) = result {
            self.close(conn, true, &e.to_string(), now);
        }
    }

    /// Sends the player's packets through its session until about `budget` bytes are out: TCP
    /// bytes to `out`, datagrams as outputs. Returns the TCP byte count (datagrams count
    /// against the budget too, but are not in `out`).
    pub(super) fn rtsp_send(&mut self, conn: ConnId, budget: usize, out: &mut Vec<Bytes>) -> usize {
        let mut n = self.rtsp_transmits(conn, out);
        let mut spent = n;
        let mut udp_before = self.outputs.len();
        while spent < budget {
            let Some(c) = self.conns.get_mut(&conn) else {
                break;
            };
            let ConnKind::Rtsp(r) = &mut c.kind else {
                break;
            };
            if !r.session.is_playing() {
                break;
            }
            let Some(packet) = self.hub.poll_packet(conn) else {
                break;
            };
            let Some(frame) = &packet.data().frame else {
                continue;
            };
            let Some(track) = rtsp_track_for(frame, r.video, r.audio, &mut r.media_started) else {
                continue;
            };
            // A frame this track cannot carry is skipped; the session goes on.
            let _ = r.session.send_frame(track, frame, r.now);
            let tcp = self.rtsp_transmits(conn, out);
            n += tcp;
            spent += tcp;
            for o in self.outputs.range(udp_before..) {
                if let Output::SendUdp { data, .. } = o {
                    spent += data.len();
                }
            }
            udp_before = self.outputs.len();
        }
        n
    }

    pub(super) fn rtsp_announce(
        &mut self,
        conn: ConnId,
        path: &str,
        query: &str,
        tracks: &[TrackParams],
        frame_rate: Option<f64>,
        now: u64,
    ) {
        let busy = self.conns.get(&conn).is_some_and(|c| c.role != Role::None);
        let Some(key) = StreamKey::parse(path).filter(|_| !busy) else {
            self.rtsp_reject(conn, ServerSession::reject_announce, 400);
            return;
        };
        // With room keys, `{app}/{key}` publishes `{app}/{room}`.
        let Some(key) = self
            .publish_name(key.stream())
            .and_then(|room| StreamKey::new(key.app(), &room))
        else {
            self.rtsp_reject(conn, ServerSession::reject_announce, 403);
            return self.close(conn, true, "publish refused: not a room key", now);
        };
        let resume = || Resume::RtspAnnounce {
            path: path.to_owned(),
            query: query.to_owned(),
            tracks: tracks.to_vec(),
            frame_rate,
        };
        match self.check_access(
            conn,
            Access::PublishRtsp,
            Protocol::Rtsp,
            &key,
            query,
            resume,
            now,
        ) {
            Ok(true) => {}
            Ok(false) => return,
            Err(reason) => {
                self.rtsp_reject(conn, ServerSession::reject_announce, 403);
                return self.close(conn, true, &reason, now);
            }
        }
        // A DESCRIBE on this connection made it a player: it publishes now instead.
        self.hub.stop_play(conn);
        if self.claim_stream(&key, conn, now).is_err() {
            // Someone else publishes this stream.
            self.rtsp_reject(conn, ServerSession::reject_announce, 403);
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            if let ConnKind::Rtsp(r) = &mut c.kind {
                // Pending: this answers its event. An input error behind it stays with the
                // session (see `rtsp_reject`).
                let _ = r.session.accept_announce();
                r.announced = tracks.iter().map(|t| t.codec.codec().track()).collect();
            }
        }
        if let Some(r) = self.rtsp_mut(conn) {
            r.media_at = now;
        }
        let mut described = announced_tracks(tracks);
        if let Some(v) = described.video.as_mut() {
            v.frame_rate = frame_rate;
        }
        self.publish_started(conn, &key, Protocol::Rtsp, Some(described), query, now);
    }

    /// Sends on the frames an RTSP publisher's interleaver still holds, before its stream ends
    /// (TEARDOWN or a closed connection).
    pub(super) fn rtsp_flush_interleaver(&mut self, conn: ConnId) {
        if let Some(i) = self.rtsp_mut(conn).and_then(|r| r.interleaver.as_mut()) {
            i.flush();
        }
        while let Some(f) = self
            .rtsp_mut(conn)
            .and_then(|r| r.interleaver.as_mut())
            .and_then(Interleaver::poll_frame)
        {
            self.publish_frame(conn, f, None);
        }
    }
}

/// The RTSP track a hub frame goes to (`video` / `audio`: the session's track indexes), or
/// `None` to skip it: no such track, or a configuration before the first coded frame (the
/// SDP gave it; later changes go in-band). Shared by RTSP players and RTSP relay pushes.
pub(super) fn rtsp_track_for(
    frame: &crate::media::Frame,
    video: Option<usize>,
    audio: Option<usize>,
    media_started: &mut bool,
) -> Option<usize> {
    let track = match frame.track() {
        TrackKind::Video => video,
        TrackKind::Audio => audio,
    }?;
    match frame.kind {
        FrameKind::Config if !*media_started => return None,
        FrameKind::Coded => *media_started = true,
        _ => {}
    }
    Some(track)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, Listener, SessionRecord};
    use crate::rtp::RtpPacket;

    const PUBLISHER: ConnId = 1;
    const PLAYER: ConnId = 2;

    fn peer() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    /// Drains outputs and what the connection has to send; returns the text sent on `conn`.
    fn exchange(e: &mut Engine, conn: ConnId, outputs: &mut Vec<Output>) -> String {
        outputs.extend(std::iter::from_fn(|| e.poll_output()));
        let mut out = Vec::new();
        e.poll_transmit(conn, usize::MAX, &mut out);
        outputs.extend(std::iter::from_fn(|| e.poll_output()));
        String::from_utf8_lossy(&out.concat()).into_owned()
    }

    fn request(e: &mut Engine, conn: ConnId, text: &str, now: u64) -> (String, Vec<Output>) {
        e.handle_input(conn, text.as_bytes(), now);
        let mut outputs = Vec::new();
        let answer = exchange(e, conn, &mut outputs);
        (answer, outputs)
    }

    #[test]
    fn a_codec_without_an_rtp_form_is_named_and_the_others_keep_their_order() {
        let sps = Bytes::from_static(&[0x67, 0x42, 0xC0, 0x0A, 0xDA, 0x11, 0x10, 0x80]);
        let pps = Bytes::from_static(&[0x68, 0xCE, 0x38, 0x80]);
        let tracks = Tracks {
            video: Some(VideoTrack::new(
                Codec::H264,
                Vec::new(),
                vec![sps],
                vec![pps],
            )),
            audio: Some(AudioTrack {
                codec: Codec::Mp3,
                sample_rate: 44_100,
                channels: 2,
                config: Bytes::new(),
            }),
            complete: true,
        };
        let t = rtsp_tracks(&tracks);
        assert_eq!((t.params.len(), t.video, t.audio), (1, Some(0), None));
        assert_eq!(t.left_out, vec![Codec::Mp3]);
    }

    #[test]
    fn udp_publisher_of_g711_is_described_to_a_player() {
        let mut e = Engine::new(EngineConfig::default(), 7);
        announce(
            &mut e,
            "g",
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
                   m=audio 0 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=control:trackID=0\r\n",
        );
        let (answer, outputs) = request(
            &mut e,
            PUBLISHER,
            "SETUP rtsp://h/live/g/trackID=0 RTSP/1.0\r\nCSeq: 2\r\n\
             Transport: RTP/AVP;unicast;client_port=5000-5001;mode=record\r\n\r\n",
            1,
        );
        assert!(answer.is_empty(), "answered before the ports: {answer}");
        assert!(outputs.iter().any(|o| matches!(
            o,
            Output::OpenUdp {
                conn: PUBLISHER,
                track: 0
            }
        )));
        e.handle_udp_open(PUBLISHER, 0, Some((20000, 20001)), 2);
        let answer = exchange(&mut e, PUBLISHER, &mut Vec::new());
        assert!(answer.contains("server_port=20000-20001"), "{answer}");
        let session = answer
            .lines()
            .find_map(|l| l.strip_prefix("Session: "))
            .and_then(|s| s.split(';').next())
            .unwrap()
            .to_owned();
        let (answer, _) = request(
            &mut e,
            PUBLISHER,
            &format!("RECORD rtsp://h/live/g RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n"),
            3,
        );
        assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");

        // The ANNOUNCE described the track: no media needs to arrive first.
        let answer = describe(&mut e, "g", 4);
        assert!(answer.contains("a=rtpmap:8 PCMA/8000"), "{answer}");
        // A foreign datagram is ignored; the publisher's own reach the hub.
        let stranger: SocketAddr = "10.9.9.9:5000".parse().unwrap();
        let own: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let before = e.conns[&PUBLISHER].bytes_in;
        for (i, from) in [(0u16, stranger), (1, own), (2, own)] {
            let p = RtpPacket::new(8, i, u32::from(i) * 160, 42, Bytes::from(vec![0xD5; 160]));
            e.handle_udp(
                PUBLISHER,
                0,
                false,
                from,
                p.to_bytes(),
                10 + u64::from(i) * 20,
            );
        }
        assert_eq!(e.conns[&PUBLISHER].bytes_in - before, 2 * (12 + 160));
    }

    /// A 640x360 H.264 track and a 48 kHz stereo AAC track.
    const H264_AAC_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1;\
        sprop-parameter-sets=Z2QAHqy0BQF/y4CIAAADAAgAAAMBkHixdQ==,aO88sA==\r\n\
        a=framerate:25\r\n\
        a=control:trackID=0\r\n\
        m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
        a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;\
        indexlength=3;indexdeltalength=3;config=1190\r\n\
        a=control:trackID=1\r\n";

    /// A player on another engine is described the stream from the tracks its publisher's
    /// engine sent along with the stream.
    #[test]
    fn an_rtsp_player_on_another_engine_is_described_the_stream() {
        let config = EngineConfig {
            share_streams: true,
            ..EngineConfig::default()
        };
        let mut a = Engine::new(config.clone(), 7);
        let mut b = Engine::new(config, 8);
        for o in announce(&mut a, "m", H264_AAC_SDP) {
            if let Output::Broadcast(m) = o {
                b.handle_remote(m, 0);
            }
        }
        let answer = describe(&mut b, "m", 1);
        let sprop = "sprop-parameter-sets=Z2QAHqy0BQF/y4CIAAADAAgAAAMBkHixdQ==,aO88sA==";
        assert!(answer.contains(sprop), "{answer}");
        assert!(answer.contains("config=1190"), "{answer}");
    }

    /// FLV players expect `onMetaData` first; an RTSP publisher sends none, so it is built
    /// from the ANNOUNCE's description (here a 640x360 H.264 track and 48 kHz stereo AAC).
    #[test]
    fn flv_players_of_an_rtsp_publisher_get_on_metadata() {
        use crate::amf::{amf0, Value};
        use crate::flv::{FlvDemuxer, TagType};
        let mut e = Engine::new(EngineConfig::default(), 7);
        announce(&mut e, "m", H264_AAC_SDP);

        e.handle_accept(PLAYER, Listener::Http, peer(), 1);
        e.handle_input(PLAYER, b"GET /live/m.flv HTTP/1.1\r\nHost: h\r\n\r\n", 1);
        while e.poll_output().is_some() {}
        let mut out = Vec::new();
        e.poll_transmit(PLAYER, usize::MAX, &mut out);
        let bytes = out.concat();
        let body_at = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP head")
            + 4;
        // The FLV header (9 bytes), PreviousTagSize0, then the first tag: its size ends it.
        let flv = &bytes[body_at..];
        let size = flv.get(14..17).expect("a tag header");
        let tag_len = 11 + u32::from_be_bytes([0, size[0], size[1], size[2]]);
        let mut d = FlvDemuxer::default();
        d.push(flv);
        d.push(&tag_len.to_be_bytes());
        let first = d
            .poll_tag()
            .expect("the FLV body demuxes")
            .expect("a first tag");
        assert_eq!(first.tag_type, TagType::Script);
        let values = amf0::decode_all(&first.body, 8).expect("AMF0");
        assert_eq!(values.first(), Some(&Value::String("onMetaData".into())));
        let meta = values.get(1).expect("the metadata");
        let number = |name| meta.get(name).and_then(Value::as_f64);
        assert_eq!(
            (number("width"), number("height")),
            (Some(640.0), Some(360.0))
        );
        assert_eq!(number("framerate"), Some(25.0), "a=framerate of the SDP");
        assert_eq!(number("videocodecid"), Some(7.0));
        assert_eq!(number("audiocodecid"), Some(10.0));
        assert_eq!(number("audiosamplerate"), Some(48_000.0));
        assert_eq!(meta.get("stereo"), Some(&Value::Boolean(true)));
    }

    /// Accepts the publisher and announces `live/{name}` with `sdp`, which must be accepted;
    /// returns the engine's outputs.
    fn announce(e: &mut Engine, name: &str, sdp: &str) -> Vec<Output> {
        e.handle_accept(PUBLISHER, Listener::Rtsp, peer(), 0);
        let (answer, outputs) = request(
            e,
            PUBLISHER,
            &format!(
                "ANNOUNCE rtsp://h/live/{name} RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ),
            0,
        );
        assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
        outputs
    }

    /// Accepts the player and sends a DESCRIBE of `live/{name}`, which must be answered at
    /// once with 200; returns the answer.
    fn describe(e: &mut Engine, name: &str, now: u64) -> String {
        e.handle_accept(PLAYER, Listener::Rtsp, peer(), now);
        let describe = format!("DESCRIBE rtsp://h/live/{name} RTSP/1.0\r\nCSeq: 1\r\n\r\n");
        let (answer, _) = request(e, PLAYER, &describe, now);
        assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
        answer
    }

    /// ANNOUNCE (PCMU), SETUP over TCP on channels 0-1 and RECORD of `live/{name}` at time 0.
    fn tcp_recorder(e: &mut Engine, name: &str) -> String {
        announce(
            e,
            name,
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
                   m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=control:trackID=0\r\n",
        );
        let (answer, _) = request(
            e,
            PUBLISHER,
            &format!(
                "SETUP rtsp://h/live/{name}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\n\
                 Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n"
            ),
            0,
        );
        assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
        let session = answer
            .lines()
            .find_map(|l| l.strip_prefix("Session: "))
            .and_then(|s| s.split(';').next())
            .unwrap()
            .to_owned();
        let (answer, _) = request(
            e,
            PUBLISHER,
            &format!(
                "RECORD rtsp://h/live/{name} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n"
            ),
            0,
        );
        assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
        session
    }

    /// One PCMU packet (20 ms) as an interleaved frame on channel 0.
    fn pcmu(i: u16) -> Vec<u8> {
        let p = RtpPacket::new(0, i, u32::from(i) * 160, 42, Bytes::from(vec![0xFF; 160]));
        let rtp = p.to_bytes();
        let mut b = vec![b'$', 0];
        b.extend_from_slice(&(rtp.len() as u16).to_be_bytes());
        b.extend_from_slice(&rtp);
        b
    }

    /// Runs the engine's timers from `from` to `to` in 10 ms steps; returns the end record of
    /// `conn` if it ended.
    fn run_timers(
        e: &mut Engine,
        conn: ConnId,
        from: u64,
        to: u64,
    ) -> Option<(u64, SessionRecord)> {
        let mut t = from;
        while t <= to {
            e.handle_timeout(t);
            while let Some(o) = e.poll_output() {
                if let Output::SessionEnded(rec) = o {
                    if rec.conn == conn {
                        return Some((t, rec));
                    }
                }
            }
            t += 10;
        }
        None
    }

    #[test]
    fn teardown_end_record_names_the_stream() {
        let mut e = Engine::new(EngineConfig::default(), 7);
        let session = tcp_recorder(&mut e, "torn");
        let (answer, outputs) = request(
            &mut e,
            PUBLISHER,
            &format!(
                "TEARDOWN rtsp://h/live/torn RTSP/1.0\r\nCSeq: 4\r\nSession: {session}\r\n\r\n"
            ),
            10,
        );
        assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
        assert!(!outputs.iter().any(|o| matches!(o, Output::SessionEnded(_))));
        e.handle_close(PUBLISHER, "peer closed", 20);
        let rec = std::iter::from_fn(|| e.poll_output())
            .find_map(|o| match o {
                Output::SessionEnded(rec) => Some(rec),
                _ => None,
            })
            .expect("an end record");
        assert_eq!(rec.stream, "live/torn");
        assert_eq!(rec.protocol, Protocol::Rtsp);
    }

    #[test]
    fn recording_publisher_without_media_ends_after_publish_idle_timeout() {
        let mut config = EngineConfig {
            publish_idle_timeout_ms: 2000,
            ..EngineConfig::default()
        };
        config.rtsp.session_timeout_ms = 60_000;
        let mut e = Engine::new(config, 7);
        let session = tcp_recorder(&mut e, "idle");
        // Media for one second keeps it: 50 packets of 20 ms.
        for i in 0..50u16 {
            let now = u64::from(i) * 20;
            e.handle_input(PUBLISHER, &pcmu(i), now);
            assert!(run_timers(&mut e, PUBLISHER, now, now).is_none());
        }
        // Then keep-alives only: they do not count as media.
        for t in [1500u64, 2500] {
            let req = format!(
                "GET_PARAMETER rtsp://h/live/idle RTSP/1.0\r\nCSeq: {t}\r\nSession: {session}\r\n\r\n"
            );
            e.handle_input(PUBLISHER, req.as_bytes(), t);
            assert!(
                run_timers(&mut e, PUBLISHER, t, t).is_none(),
                "closed by {t}"
            );
        }
        let (at, rec) = run_timers(&mut e, PUBLISHER, 2500, 10_000).expect("closed");
        // The last frame came at about 980 ms.
        assert!((2900..=3100).contains(&at), "closed at {at}");
        assert_eq!(rec.reason, "publisher idle timeout");
        assert_eq!(rec.stream, "live/idle");
    }

    #[test]
    fn rtsp_players_keep_the_session_timeout() {
        let mut config = EngineConfig {
            publish_idle_timeout_ms: 1000,
            ..EngineConfig::default()
        };
        config.rtsp.session_timeout_ms = 5000;
        let mut e = Engine::new(config, 7);
        e.handle_accept(PLAYER, Listener::Rtsp, peer(), 0);
        let (answer, _) = request(&mut e, PLAYER, "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n", 0);
        assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
        let (at, rec) = run_timers(&mut e, PLAYER, 0, 10_000).expect("closed");
        assert!((5000..=5010).contains(&at), "closed at {at}");
        assert!(rec.reason.contains("nothing received"), "{}", rec.reason);
    }

    #[test]
    fn udp_setup_without_ports_gets_461_and_the_session_goes_on() {
        let mut e = Engine::new(EngineConfig::default(), 7);
        e.handle_accept(PLAYER, Listener::Rtsp, peer(), 0);
        let (answer, _) = request(
            &mut e,
            PLAYER,
            "DESCRIBE rtsp://h/live/none RTSP/1.0\r\nCSeq: 1\r\n\r\n",
            0,
        );
        assert!(answer.is_empty());
        // A publisher whose UDP SETUP finds no free ports is refused with 461, then uses TCP.
        e.handle_accept(PUBLISHER, Listener::Rtsp, peer(), 0);
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
                   m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=control:trackID=0\r\n";
        request(
            &mut e,
            PUBLISHER,
            &format!(
                "ANNOUNCE rtsp://h/live/none RTSP/1.0\r\nCSeq: 1\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ),
            0,
        );
        let (answer, _) = request(
            &mut e,
            PUBLISHER,
            "SETUP rtsp://h/live/none/trackID=0 RTSP/1.0\r\nCSeq: 2\r\n\
             Transport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n",
            1,
        );
        assert!(answer.is_empty());
        e.handle_udp_open(PUBLISHER, 0, None, 2);
        let answer = exchange(&mut e, PUBLISHER, &mut Vec::new());
        assert!(answer.starts_with("RTSP/1.0 461"), "{answer}");
        let (answer, _) = request(
            &mut e,
            PUBLISHER,
            "SETUP rtsp://h/live/none/trackID=0 RTSP/1.0\r\nCSeq: 3\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n",
            3,
        );
        assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
        assert_eq!(e.connection_count(), 2);
    }
}
