//! The HTTP API rendered from engine snapshots: lal's JSON ([`lal`]) and Prometheus text
//! ([`metrics`]); and lal's HTTP notifications ([`webhook`]), which share lal's JSON.
//!
//! The engine takes neutral snapshots ([`EngineStats`], one per engine); an answer that needs
//! every engine is gathered by the runtime ([`crate::engine::Output::Gather`]) and rendered
//! here, so the engine knows nothing of lal's field names or error codes. Who may call the
//! API is [`guard`]'s business.

pub mod guard;
pub mod lal;
pub mod livego;
pub mod metrics;
pub mod webhook;

use std::collections::BTreeMap;

use crate::engine::{ConnId, EngineStats, Role, SessionStats, StreamStats};
use crate::http::Response;

/// A request answered from the snapshots of every engine (see [`answer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// `GET /api/stat/lal_info`: server information.
    LalInfo,
    /// `GET /api/stat/all_group`: every stream.
    AllGroups,
    /// `GET /api/stat/group?stream_name=NAME`: one stream (`NAME` empty when not given).
    Group(String),
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `POST /api/ctrl/kick_session`: close the session lal calls `session_id` (as the API
    /// shows it, see [`lal::lal_session_id`]) of the stream `stream_name`.
    KickSession {
        /// The stream, by name (or `app/stream`).
        stream_name: String,
        /// The session's lal id.
        session_id: String,
    },
    /// `POST /api/ctrl/start_relay_pull`: pull a stream from another server.
    StartRelayPull(lal::RelayPullRequest),
    /// `GET /api/ctrl/stop_relay_pull?stream_name=`: stop the pull of a stream.
    StopRelayPull(String),
    /// `POST /api/ctrl/start_relay_push` (rill's own): push a live stream to a URL.
    StartRelayPush {
        /// The stream, by name (or `app/stream`).
        stream_name: String,
        /// The target, naming the stream (`rtmp://host/app/stream`).
        url: String,
    },
    /// `GET /api/ctrl/stop_relay_push?stream_name=[&url=]`: stop the pushes of a stream (only
    /// the one to `url` when given).
    StopRelayPush {
        /// The stream, by name (or `app/stream`).
        stream_name: String,
        /// The target, or empty for every push of the stream.
        url: String,
    },
    /// livego's `/control/pull` or `/control/push`.
    Livego(livego::Control),
    /// `GET /api/stat/cluster`: the cluster registry as this node sees it.
    Cluster,
    /// livego's `GET /stat/livestat`: publishers and players.
    LivegoStat,
}

/// What a [`Query`] gets: the HTTP response, and the connection to close when the query
/// kicks a session (it may belong to any engine of the process).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The response.
    pub response: Response,
    /// The session to close.
    pub close: Option<ConnId>,
}

/// The answer to `query` from the snapshots of every engine: lal's JSON (always status 200,
/// with lal's `error_code` in the body, as lal does) or Prometheus text.
pub fn answer(query: &Query, snapshots: &[EngineStats]) -> Answer {
    match query {
        Query::Cluster => Answer {
            response: Response::json(200, crate::engine::cluster::render_json(snapshots)),
            close: None,
        },
        Query::Metrics => Answer {
            response: Response::new(200)
                .body(metrics::CONTENT_TYPE, metrics::render_metrics(snapshots)),
            close: None,
        },
        Query::LivegoStat => Answer {
            response: Response::json(200, livego::livestat_json(snapshots)),
            close: None,
        },
        _ => {
            let (json, close) = lal::answer_json(query, snapshots);
            Answer {
                response: Response::json(200, json),
                close,
            }
        }
    }
}

/// One stream as seen across every snapshot.
#[derive(Debug)]
pub(crate) struct Group<'a> {
    pub(crate) key: &'a str,
    pub(crate) stream: Option<&'a StreamStats>,
    pub(crate) publisher: Option<&'a SessionStats>,
    pub(crate) subs: Vec<&'a SessionStats>,
    /// The relay pulling the stream from another server, if any.
    pub(crate) pull: Option<&'a SessionStats>,
}

impl<'a> Group<'a> {
    pub(crate) fn app_name(&self) -> &'a str {
        self.key.split_once('/').map_or("", |(app, _)| app)
    }

    pub(crate) fn stream_name(&self) -> &'a str {
        self.key.split_once('/').map_or(self.key, |(_, s)| s)
    }
}

/// The streams of every snapshot by `app/stream`: its publisher and stream details from the
/// engine that has them, its players from every engine.
pub(crate) fn merge(snapshots: &[EngineStats]) -> Vec<Group<'_>> {
    let mut groups: BTreeMap<&str, Group<'_>> = BTreeMap::new();
    for snap in snapshots {
        for s in &snap.streams {
            entry(&mut groups, &s.key).stream = Some(s);
        }
        for s in &snap.sessions {
            match s.role {
                Role::Publish => entry(&mut groups, &s.stream).publisher = Some(s),
                Role::Play | Role::Push => entry(&mut groups, &s.stream).subs.push(s),
                Role::Pull => entry(&mut groups, &s.stream).pull = Some(s),
                Role::None => {}
            }
        }
    }
    let mut out: Vec<Group<'_>> = groups.into_values().collect();
    for g in &mut out {
        g.subs.sort_by_key(|s| s.conn);
    }
    out
}

fn entry<'m, 'a>(groups: &'m mut BTreeMap<&'a str, Group<'a>>, key: &'a str) -> &'m mut Group<'a> {
    groups.entry(key).or_insert_with(|| Group {
        key,
        stream: None,
        publisher: None,
        subs: Vec::new(),
        pull: None,
    })
}

#[cfg(test)]
pub(crate) mod test_data {
    //! Snapshots of two workers shared by the API's tests.

    use crate::engine::{ConnId, EngineStats, Protocol, Role, SessionStats, StreamStats};
    use crate::media::Codec;

    fn session(conn: ConnId, protocol: Protocol, role: Role, stream: &str) -> SessionStats {
        SessionStats {
            conn,
            protocol,
            tls: false,
            role,
            stream: stream.to_owned(),
            peer: format!("127.0.0.1:{}", 40_000 + conn % 1000)
                .parse()
                .expect("addr"),
            start_unix_ms: 1_700_000_000_123,
            bytes_in: 1000 + conn,
            bytes_out: 2000 + conn,
            read_kbits: 300,
            write_kbits: 5,
            relay_url: String::new(),
        }
    }

    /// Worker 0 has the publisher of live/cam and one FLV player; worker 1 a WebSocket-FLV
    /// player of it and an RTMP player of a stream whose publisher is gone.
    pub(crate) fn snapshots() -> Vec<EngineStats> {
        vec![
            EngineStats {
                started_unix_ms: 1_700_000_000_000,
                taken_unix_ms: 1_700_000_005_000,
                streams: vec![StreamStats {
                    key: "live/cam".into(),
                    video_codec: Some(Codec::H264),
                    audio_codec: Some(Codec::Aac),
                    width: 1280,
                    height: 720,
                    frame_rate: None,
                }],
                sessions: vec![
                    session(1, Protocol::Rtmp, Role::Publish, "live/cam"),
                    session(2, Protocol::HttpFlv, Role::Play, "live/cam"),
                ],
                connections: 3,
                bytes_in: 10_000,
                bytes_out: 20_000,

                player_skips: 0,
                slow_players_closed: 0,
                muxed: Default::default(),
                cluster: None,
                hls: Default::default(),
            },
            EngineStats {
                started_unix_ms: 1_700_000_000_001,
                taken_unix_ms: 1_700_000_004_500,
                streams: Vec::new(),
                sessions: vec![
                    session((1 << 40) | 16, Protocol::WsFlv, Role::Play, "live/cam"),
                    session((1 << 40) | 17, Protocol::Rtmp, Role::Play, "app2/gone"),
                ],
                connections: 2,
                bytes_in: 1,
                bytes_out: 2,

                player_skips: 0,
                slow_players_closed: 0,
                muxed: Default::default(),
                cluster: None,
                hls: Default::default(),
            },
        ]
    }
}
