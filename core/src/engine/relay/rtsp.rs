//! RTSP relays: pulls (DESCRIBE / SETUP / PLAY) whose frames feed the pull's publication, and
//! pushes (ANNOUNCE / SETUP / RECORD) that play a local stream as a hub player with a bounded
//! queue, like the RTMP push. Each wraps an [`rtsp::client::ClientSession`](RtspClient).
//!
//! Media travels interleaved on the TCP connection, or over UDP when the URL asks for it
//! (`rtsp_mode=1`): the session asks for a local port pair per track, the engine asks the
//! runtime ([`Output::OpenUdp`] under the relay connection's id, answered through
//! [`Engine::handle_udp_open`]), and datagrams go out as [`Output::SendUdp`] to the server's
//! ports and come back through [`Engine::handle_udp`]. A runtime without UDP (or a server
//! answering 461) leaves the session on TCP. Credentials come from the URL; a 401 is answered
//! with Digest or Basic by the session.

use std::net::SocketAddr;

use bytes::Bytes;

use super::{relay_query, Client, Link, Owner, PullTarget, RelayUrl, START_TIMEOUT_MS};
use crate::engine::rtsp_conn::rtsp_track_for;
use crate::engine::rtsp_conn::{announced_tracks, rtsp_tracks};
use crate::engine::{ConnId, Engine, LogLevel, Output};
use crate::hub::Tracks;
use crate::interleave::{Interleaver, RTSP_PUBLISHER_WAIT_MS};
use crate::media::TrackKind;
use crate::rtsp::client::{
    ClientConfig as RtspConfig, ClientEvent as RtspEvent, ClientSession as RtspClient,
};
use crate::rtsp::server::{TrackTransport, Transmit};

/// How often a push waiting for its stream's tracks looks again (ms).
const TRACKS_WAIT_MS: u64 = 200;

/// The client side of one RTSP relay connection.
#[derive(Debug)]
pub(in crate::engine) struct RtspLink {
    pub(super) session: RtspClient,
    /// The server's address, once connected (UDP datagrams go to its ports).
    pub(super) peer: Option<SocketAddr>,
    /// The last time seen, for frames sent from `poll_transmit`.
    now: u64,
    /// A pull's frames in decode order across its tracks, once described.
    interleaver: Option<Interleaver>,
    /// A pull's tracks as DESCRIBE gave them, until its first frame makes the stream live.
    pub(super) described: Option<Tracks>,
    /// A push's session tracks for the local stream's video and audio.
    video: Option<usize>,
    audio: Option<usize>,
    /// A push sent its first coded frame (configuration frames before it are in the SDP).
    media_started: bool,
}

impl RtspLink {
    fn new(session: RtspClient, now: u64) -> Self {
        RtspLink {
            session,
            peer: None,
            now,
            interleaver: None,
            described: None,
            video: None,
            audio: None,
            media_started: false,
        }
    }
}

/// A client configuration for `url` with the credentials and transport `target` names.
fn config(url: &str, target: &RelayUrl) -> RtspConfig {
    RtspConfig {
        credentials: target.credentials.clone(),
        transport: target.rtsp_transport,
        // The runtime gives each track's ports (`Output::OpenUdp`).
        udp_port_base: 0,
        ..RtspConfig::new(url)
    }
}

/// How the session's media travels, for the log.
fn media_transport(session: &RtspClient) -> &'static str {
    match session.track_transport(0) {
        Some(TrackTransport::Udp { .. }) => "RTSP media over UDP",
        _ => "RTSP media interleaved on TCP",
    }
}

impl Engine {
    /// Opens an RTSP pull of `target` for `owner`, started within `timeout_ms`.
    pub(super) fn rtsp_pull_open(
        &mut self,
        target: &PullTarget,
        owner: Owner,
        timeout_ms: u64,
        now_ms: u64,
    ) -> ConnId {
        let origin = &target.url;
        let url = format!(
            "{}?{}",
            origin.base(&origin.full_path(&target.name)),
            relay_query(&target.query)
        );
        let random = self.random_bytes(32);
        let session = RtspClient::play(config(&url, origin), &random, now_ms);
        let link = RtspLink::new(session, now_ms);
        let client = Client::Rtsp(Box::new(link));
        self.insert_link(origin, client, owner, timeout_ms, now_ms)
    }

    /// Opens push `id` to its RTSP target once the stream's tracks are known (`Ok(None)`
    /// until then: the push looks again shortly).
    pub(super) fn rtsp_push_open(
        &mut self,
        id: ConnId,
        now_ms: u64,
    ) -> Result<Option<ConnId>, String> {
        let Some(p) = self.relay.pushes.get(&id) else {
            return Ok(None);
        };
        let (key, target, path) = (p.key.clone(), p.url.clone(), p.path());
        let url = format!("{}?{}", target.base(&path), relay_query(&p.query));
        let Some(tracks) = self.hub.tracks(key.as_str()).filter(|t| t.complete) else {
            if let Some(p) = self.relay.pushes.get_mut(&id) {
                p.retry_at = Some(now_ms.saturating_add(TRACKS_WAIT_MS));
            }
            return Ok(None);
        };
        let t = rtsp_tracks(tracks);
        for codec in &t.left_out {
            self.outputs.push_back(Output::Log {
                level: LogLevel::Warn,
                message: format!(
                    "relay push {key}: {} left out of the RTSP push to {target}: rill has no RTP payload format for it",
                    codec.name()
                ),
            });
        }
        let random = self.random_bytes(32);
        let session = RtspClient::record(config(&url, &target), t.params, &random, now_ms)
            .map_err(|e| e.to_string())?;
        let mut link = RtspLink::new(session, now_ms);
        link.video = t.video;
        link.audio = t.audio;
        let client = Client::Rtsp(Box::new(link));
        let owner = Owner::Push(id);
        Ok(Some(self.insert_link(
            &target,
            client,
            owner,
            START_TIMEOUT_MS,
            now_ms,
        )))
    }

    /// Bytes from the server of an RTSP relay.
    pub(super) fn rtsp_link_input(&mut self, conn: ConnId, data: &[u8], now_ms: u64) {
        let Some(Link {
            client: Client::Rtsp(r),
            ..
        }) = self.relay.links.get_mut(&conn)
        else {
            return;
        };
        r.now = now_ms;
        let result = r.session.handle_input(data, now_ms);
        self.rtsp_link_events(conn, now_ms);
        if let Err(e) = result {
            self.link_failed(conn, true, &e.to_string(), now_ms);
        } else if self.relay.links.contains_key(&conn) {
            self.outputs.push_back(Output::Transmit(conn));
        }
        self.drain_hub(now_ms);
    }

    /// A datagram from the server on the UDP ports of `track` of relay connection `conn`.
    /// Datagrams from another host than the server's are dropped.
    pub(in crate::engine) fn relay_udp(
        &mut self,
        conn: ConnId,
        track: usize,
        rtcp: bool,
        from: SocketAddr,
        data: Bytes,
        now_ms: u64,
    ) {
        let Some(Link {
            client: Client::Rtsp(r),
            ..
        }) = self.relay.links.get_mut(&conn)
        else {
            return;
        };
        if r.peer.map(|p| p.ip()) != Some(from.ip()) {
            return;
        }
        r.now = now_ms;
        let len = data.len();
        r.session.handle_udp(track, rtcp, data, now_ms);
        self.relay.count(conn, len, 0);
        self.rtsp_link_events(conn, now_ms);
        self.drain_hub(now_ms);
    }

    /// The runtime's answer to the [`Output::OpenUdp`] of a relay connection.
    pub(in crate::engine) fn relay_udp_open(
        &mut self,
        conn: ConnId,
        track: usize,
        ports: Option<(u16, u16)>,
        now_ms: u64,
    ) {
        let Some(Link {
            client: Client::Rtsp(r),
            ..
        }) = self.relay.links.get_mut(&conn)
        else {
            return;
        };
        match ports {
            Some(p) => r.session.accept_udp(track, p),
            None => r.session.reject_udp(track),
        }
        self.outputs.push_back(Output::Transmit(conn));
        self.drain_hub(now_ms);
    }

    /// Acts on what an RTSP relay session reported.
    fn rtsp_link_events(&mut self, conn: ConnId, now_ms: u64) {
        loop {
            let Some(link) = self.relay.links.get_mut(&conn) else {
                return;
            };
            let owner = link.owner.clone();
            let Client::Rtsp(r) = &mut link.client else {
                return;
            };
            // A pull's frames leave its interleaver in decode order.
            if let Some(frame) = r.interleaver.as_mut().and_then(Interleaver::poll_frame) {
                if let Owner::Pull(key) = &owner {
                    if let Some(id) = self.pull_media(conn, key, now_ms) {
                        self.publish_frame(id, frame, None);
                    }
                }
                continue;
            }
            let Some(event) = r.session.poll_event() else {
                return;
            };
            match (event, owner) {
                (RtspEvent::UdpPortsRequest { track }, _) => {
                    self.outputs.push_back(Output::OpenUdp { conn, track });
                }
                (RtspEvent::Described { tracks }, Owner::Pull(_)) => {
                    let has = |kind| tracks.iter().any(|t| t.codec.codec().track() == kind);
                    let (video, audio) = (has(TrackKind::Video), has(TrackKind::Audio));
                    r.interleaver = Some(Interleaver::new(video, audio, RTSP_PUBLISHER_WAIT_MS));
                    r.described = Some(announced_tracks(&tracks));
                }
                (RtspEvent::Playing, Owner::Pull(key)) => {
                    let media = media_transport(&r.session);
                    self.log(LogLevel::Info, format!("relay pull {key}: {media}"));
                    self.pull_started(conn, &key, now_ms);
                }
                (RtspEvent::Frame { frame, .. }, Owner::Pull(_)) => {
                    if let Some(i) = r.interleaver.as_mut() {
                        i.push(frame);
                    }
                }
                (RtspEvent::Recording, Owner::Push(id)) => {
                    let media = media_transport(&r.session);
                    if let Some(key) = self.relay.pushes.get(&id).map(|p| p.key.clone()) {
                        self.log(LogLevel::Info, format!("relay push {key}: {media}"));
                    }
                    self.push_started(conn, id, now_ms)
                }
                (RtspEvent::TornDown, _) => {
                    self.link_failed(conn, true, "the server tore the session down", now_ms)
                }
                _ => {}
            }
        }
    }

    /// Deadlines of RTSP relay sessions: answers, keep-alives, RTCP reports.
    pub(super) fn rtsp_links_timeout(&mut self, now_ms: u64) {
        let due: Vec<ConnId> = self
            .relay
            .links
            .iter()
            .filter(|(_, l)| l.open && l.client.poll_timeout().is_some_and(|t| t <= now_ms))
            .map(|(&c, _)| c)
            .collect();
        for conn in due {
            let Some(Link {
                client: Client::Rtsp(r),
                ..
            }) = self.relay.links.get_mut(&conn)
            else {
                continue;
            };
            r.now = now_ms;
            match r.session.handle_timeout(now_ms) {
                Ok(()) => self.outputs.push_back(Output::Transmit(conn)),
                Err(e) => self.link_failed(conn, true, &e.to_string(), now_ms),
            }
        }
    }

    /// Bytes to send on an RTSP relay connection: requests, then a push's media (datagrams
    /// for UDP tracks go out as [`Output::SendUdp`]). Returns the TCP byte count
    /// (datagrams are counted here).
    pub(super) fn rtsp_link_transmit(
        &mut self,
        conn: ConnId,
        budget: usize,
        out: &mut Vec<Bytes>,
    ) -> usize {
        let Some(link) = self.relay.links.get_mut(&conn) else {
            return 0;
        };
        let Client::Rtsp(r) = &mut link.client else {
            return 0;
        };
        let pushing = match link.owner {
            Owner::Push(id) => self.relay.pushes.get(&id).is_some_and(|p| p.playing),
            Owner::Pull(_) => false,
        };
        // Datagrams do not wait for the socket: a push whose tracks all go over UDP sends
        // everything queued (as RTSP players over UDP are served).
        let all_udp = [r.video, r.audio].into_iter().flatten().all(|t| {
            matches!(
                r.session.track_transport(t),
                Some(TrackTransport::Udp { .. })
            )
        });
        let budget = if all_udp { usize::MAX } else { budget };
        let mut spent = 0;
        while pushing && spent < budget {
            let Some(packet) = self.hub.poll_packet(conn) else {
                break;
            };
            let Some(frame) = &packet.data().frame else {
                continue;
            };
            let Some(track) = rtsp_track_for(frame, r.video, r.audio, &mut r.media_started) else {
                continue;
            };
            // A frame the track cannot carry is skipped; the push goes on.
            let _ = r.session.send_frame(track, frame, r.now);
            spent += frame.payload.len();
        }
        let (mut n, mut udp) = (0, 0);
        while let Some(t) = r.session.poll_transmit() {
            match t {
                Transmit::Tcp(b) => {
                    n += b.len();
                    out.push(b);
                }
                Transmit::Udp { track, rtcp, bytes } => {
                    let to = match (r.peer, r.session.track_transport(track)) {
                        (Some(peer), Some(TrackTransport::Udp { server, .. })) => {
                            SocketAddr::new(peer.ip(), if rtcp { server.1 } else { server.0 })
                        }
                        _ => continue,
                    };
                    udp += bytes.len();
                    self.outputs.push_back(Output::SendUdp {
                        conn,
                        track,
                        rtcp,
                        to,
                        data: bytes,
                    });
                }
            }
        }
        self.relay.count(conn, 0, udp);
        n
    }
}
