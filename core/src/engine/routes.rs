//! The HTTP routes of the engine: which requests are players, HLS, the API (and, later, static
//! pages), by method and path, in one table looked up with [`crate::http::router`].
//!
//! | Methods      | Path                           | Handler                                     |
//! |--------------|--------------------------------|---------------------------------------------|
//! | GET, HEAD    | `/api/stat/lal_info`           | [`Handler::LalInfo`]                        |
//! | GET, HEAD    | `/api/stat/all_group`          | [`Handler::AllGroups`]                      |
//! | GET, HEAD    | `/api/stat/group`              | [`Handler::Group`] (`?stream_name=`)        |
//! | GET, HEAD    | `/metrics`                     | [`Handler::Metrics`]                        |
//! | GET, HEAD    | `/api/stat/cluster`            | [`Handler::Cluster`]                        |
//! | POST         | `/api/ctrl/kick_session`       | [`Handler::KickSession`] (JSON body)        |
//! | POST         | `/api/ctrl/reload`             | [`Handler::Reload`]: the config file again  |
//! | GET, HEAD    | `/api/server`                  | [`Handler::ServerInfo`] (for the web UI)    |
//! | GET, HEAD    | `/`, `/ui/rill.js` ...         | [`Handler::WebUi`] (the web UI's files)     |
//! | POST         | `/api/ctrl/start_relay_pull`   | [`Handler::StartRelayPull`] (JSON body)     |
//! | GET          | `/api/ctrl/stop_relay_pull`    | [`Handler::StopRelayPull`] (`?stream_name=`) |
//! | POST         | `/api/ctrl/start_relay_push`   | [`Handler::StartRelayPush`] (JSON body)     |
//! | GET          | `/api/ctrl/stop_relay_push`    | [`Handler::StopRelayPush`] (`?stream_name=[&url=]`) |
//! | GET, POST    | `/control/pull`                | [`Handler::LivegoControl`] (`?oper=&app=&name=&url=`) |
//! | GET, POST    | `/control/push`                | [`Handler::LivegoControl`] likewise         |
//! | POST         | `/api/ctrl/add_ip_blacklist`   | [`Handler::AddIpBlacklist`] (JSON body)     |
//! | GET, POST    | `/control/get`, `reset`, `delete` | [`Handler::RoomKey`] (`?room=`)          |
//! | GET, HEAD    | `/stat/livestat`               | [`Handler::LivegoStat`]                     |
//! | GET, HEAD    | `/{app}/{stream}.flv`          | [`Handler::Media`] FLV (GET may upgrade to WebSocket) |
//! | GET, HEAD    | `/{app}/{stream}.ts`           | [`Handler::Media`] TS (likewise)            |
//! | GET, HEAD    | `/{app}/{stream}.mp4`          | [`Handler::Media`] fMP4 (likewise)          |
//! | GET, HEAD    | `/{app}/{stream}.m3u8`         | [`Handler::HlsLive`]                        |
//! | GET, HEAD    | `/{app}/{stream}/record.m3u8`  | [`Handler::HlsRecord`]                      |
//! | GET, HEAD    | `/{app}/{stream}/{seq}.ts`     | [`Handler::HlsSegment`]                     |
//! | GET, HEAD    | `/{app}/{stream}/llhls.m3u8`   | [`Handler::LlPlaylist`] (`?_HLS_msn=&_HLS_part=&_HLS_skip=`) |
//! | GET, HEAD    | `/{app}/{stream}/ll/{file}`    | [`Handler::LlFile`]: init, segment, part    |
//! | GET, HEAD    | `/{app}/{stream}/{seq}.m4s`    | [`Handler::HlsFmp4Segment`]                 |
//! | GET, HEAD    | `/{app}/{stream}/init{n}.mp4`  | [`Handler::HlsInit`]                        |
//!
//! `OPTIONS` on any path is a CORS preflight, answered before routing. Any other path is 404; a
//! listed path with another method is 405 with `Allow`, and so is a method other than `GET`,
//! `HEAD`, `POST` and `OPTIONS` on any path. The API and web UI routes come first so that no
//! stream named like them can shadow them.

use crate::api::guard::ApiKind;
use crate::hls::ll::{decimal, LlRequest};
use crate::hls::HlsRequest;
use crate::http::router::{Methods, Params, Route};

/// What the engine does with a request that matched a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// lal's server information.
    LalInfo,
    /// lal's list of every stream.
    AllGroups,
    /// lal's one stream, by `?stream_name=`.
    Group,
    /// Prometheus text.
    Metrics,
    /// The cluster registry as this node sees it.
    Cluster,
    /// Close one session, named by lal's `stream_name` and `session_id` in a JSON body.
    KickSession,
    /// Reload the configuration file, as SIGHUP does.
    Reload,
    /// What the server listens on, for the web UI's play URLs ([`crate::webui::server_json`]).
    ServerInfo,
    /// A file of the web UI ([`crate::webui::asset`]).
    WebUi,
    /// lal's relay pull start (JSON body).
    StartRelayPull,
    /// lal's relay pull stop (`?stream_name=`).
    StopRelayPull,
    /// rill's relay push start (JSON body).
    StartRelayPush,
    /// rill's relay push stop (`?stream_name=[&url=]`).
    StopRelayPush,
    /// livego's `/control/pull` (`pull`) or `/control/push`.
    LivegoControl {
        /// `/control/pull`.
        pull: bool,
    },
    /// lal's IP blacklist: refuse connections from `ip` for `duration_sec` (JSON body).
    AddIpBlacklist,
    /// livego's room keys: `/control/get`, `/control/reset` or `/control/delete` (`?room=`).
    RoomKey {
        /// Which of the three.
        op: RoomOp,
    },
    /// livego's publishers and players (`/stat/livestat`).
    LivegoStat,
    /// A live stream for a player (HTTP, or WebSocket after an upgrade).
    Media {
        /// The container.
        format: MediaFormat,
    },
    /// An HLS live playlist.
    HlsLive,
    /// An HLS record playlist (every segment kept).
    HlsRecord,
    /// One HLS segment.
    HlsSegment,
    /// The Low-Latency HLS playlist (blocking reload, delta updates).
    LlPlaylist,
    /// A Low-Latency HLS init segment, segment or part.
    LlFile,
    /// One fMP4 HLS segment.
    HlsFmp4Segment,
    /// The init segment of fMP4 HLS segments.
    HlsInit,
}

impl Handler {
    /// What the handler is for API protection ([`crate::api::guard`]).
    pub fn api_kind(self) -> ApiKind {
        match self {
            Handler::KickSession
            | Handler::StartRelayPull
            | Handler::StopRelayPull
            | Handler::StartRelayPush
            | Handler::StopRelayPush
            | Handler::LivegoControl { .. }
            | Handler::AddIpBlacklist
            | Handler::RoomKey { .. }
            | Handler::Reload => ApiKind::Control,
            Handler::LalInfo
            | Handler::AllGroups
            | Handler::Group
            | Handler::Metrics
            | Handler::ServerInfo
            | Handler::LivegoStat
            | Handler::Cluster => ApiKind::Stats,
            Handler::WebUi
            | Handler::Media { .. }
            | Handler::HlsLive
            | Handler::HlsRecord
            | Handler::HlsSegment
            | Handler::LlPlaylist
            | Handler::LlFile
            | Handler::HlsFmp4Segment
            | Handler::HlsInit => ApiKind::Open,
        }
    }
}

/// What a room-key request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomOp {
    /// The room's key, made if there is none.
    Get,
    /// A new key for the room.
    Reset,
    /// Forget the room.
    Delete,
}

/// The container of a live stream for a player.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaFormat {
    /// FLV.
    Flv,
    /// MPEG-TS.
    Ts,
    /// Fragmented MP4: the init segment, then fragments from a key frame on.
    Fmp4,
}

const fn read(pattern: &'static str, target: Handler) -> Route<Handler> {
    Route {
        methods: Methods::READ,
        pattern,
        target,
    }
}

/// The route table, tried in order (see the module docs).
pub const ROUTES: &[Route<Handler>] = &[
    read("/api/stat/lal_info", Handler::LalInfo),
    read("/api/stat/all_group", Handler::AllGroups),
    read("/api/stat/group", Handler::Group),
    read("/metrics", Handler::Metrics),
    read("/api/stat/cluster", Handler::Cluster),
    Route {
        methods: Methods::POST,
        pattern: "/api/ctrl/kick_session",
        target: Handler::KickSession,
    },
    Route {
        methods: Methods::POST,
        pattern: "/api/ctrl/reload",
        target: Handler::Reload,
    },
    Route {
        methods: Methods::POST,
        pattern: "/api/ctrl/start_relay_pull",
        target: Handler::StartRelayPull,
    },
    // GET only: a stop acts, so it is no `HEAD`.
    Route {
        methods: Methods::GET,
        pattern: "/api/ctrl/stop_relay_pull",
        target: Handler::StopRelayPull,
    },
    Route {
        methods: Methods::POST,
        pattern: "/api/ctrl/start_relay_push",
        target: Handler::StartRelayPush,
    },
    Route {
        methods: Methods::GET,
        pattern: "/api/ctrl/stop_relay_push",
        target: Handler::StopRelayPush,
    },
    Route {
        methods: Methods::GET.with(Methods::POST),
        pattern: "/control/pull",
        target: Handler::LivegoControl { pull: true },
    },
    Route {
        methods: Methods::GET.with(Methods::POST),
        pattern: "/control/push",
        target: Handler::LivegoControl { pull: false },
    },
    Route {
        methods: Methods::POST,
        pattern: "/api/ctrl/add_ip_blacklist",
        target: Handler::AddIpBlacklist,
    },
    Route {
        methods: Methods::GET.with(Methods::POST),
        pattern: "/control/get",
        target: Handler::RoomKey { op: RoomOp::Get },
    },
    Route {
        methods: Methods::GET.with(Methods::POST),
        pattern: "/control/reset",
        target: Handler::RoomKey { op: RoomOp::Reset },
    },
    Route {
        methods: Methods::GET.with(Methods::POST),
        pattern: "/control/delete",
        target: Handler::RoomKey { op: RoomOp::Delete },
    },
    read("/stat/livestat", Handler::LivegoStat),
    read("/api/server", Handler::ServerInfo),
    read("/", Handler::WebUi),
    read("/ui/rill.css", Handler::WebUi),
    read("/ui/rill.js", Handler::WebUi),
    read("/ui/player.js", Handler::WebUi),
    read(
        "/{app}/{stream}.flv",
        Handler::Media {
            format: MediaFormat::Flv,
        },
    ),
    read(
        "/{app}/{stream}.ts",
        Handler::Media {
            format: MediaFormat::Ts,
        },
    ),
    read(
        "/{app}/{stream}.mp4",
        Handler::Media {
            format: MediaFormat::Fmp4,
        },
    ),
    read("/{app}/{stream}.m3u8", Handler::HlsLive),
    read("/{app}/{stream}/record.m3u8", Handler::HlsRecord),
    read("/{app}/{stream}/llhls.m3u8", Handler::LlPlaylist),
    read("/{app}/{stream}/ll/{file}", Handler::LlFile),
    read("/{app}/{stream}/{seq}.ts", Handler::HlsSegment),
    read("/{app}/{stream}/{seq}.m4s", Handler::HlsFmp4Segment),
    read("/{app}/{stream}/{name}.mp4", Handler::HlsInit),
];

/// The HLS request of an HLS route's captures; `None` for other handlers and for a segment
/// number that is not plain decimal digits (at most 19).
pub fn hls_request<'p>(handler: Handler, params: &Params<'p>) -> Option<HlsRequest<'p>> {
    let app = params.get("app")?;
    let stream = params.get("stream")?;
    match handler {
        Handler::HlsLive => Some(HlsRequest::Live { app, stream }),
        Handler::HlsRecord => Some(HlsRequest::Record { app, stream }),
        Handler::HlsSegment => {
            let seq = decimal(params.get("seq")?)?;
            Some(HlsRequest::Segment { app, stream, seq })
        }
        Handler::HlsFmp4Segment => {
            let seq = decimal(params.get("seq")?)?;
            Some(HlsRequest::Fmp4Segment { app, stream, seq })
        }
        Handler::HlsInit => {
            let id = decimal(params.get("name")?.strip_prefix("init")?)?;
            Some(HlsRequest::Init { app, stream, id })
        }
        _ => None,
    }
}

/// The Low-Latency HLS request of an LL route's captures; `None` for other handlers and for
/// file names the window never hands out.
pub fn ll_request<'p>(handler: Handler, params: &Params<'p>) -> Option<LlRequest<'p>> {
    let app = params.get("app")?;
    let stream = params.get("stream")?;
    match handler {
        Handler::LlPlaylist => Some(LlRequest::Playlist { app, stream }),
        Handler::LlFile => LlRequest::file(app, stream, params.get("file")?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::router::{route, Routed};

    fn target<'p>(method: &str, segments: &'p [&'p str]) -> Option<(Handler, Params<'p>)> {
        match route(ROUTES, method, segments) {
            Routed::Found { target, params } => Some((*target, params)),
            _ => None,
        }
    }

    fn media(format: MediaFormat) -> Handler {
        Handler::Media { format }
    }

    fn hls<'p>(segments: &'p [&'p str]) -> Option<HlsRequest<'p>> {
        let (h, p) = target("GET", segments)?;
        hls_request(h, &p)
    }

    #[test]
    fn every_family_is_routed() {
        for (segments, handler) in [
            (&["api", "stat", "lal_info"][..], Handler::LalInfo),
            (&["api", "stat", "all_group"], Handler::AllGroups),
            (&["api", "stat", "group"], Handler::Group),
            (&["metrics"], Handler::Metrics),
            (&["api", "stat", "cluster"], Handler::Cluster),
            (&["api", "server"], Handler::ServerInfo),
            (&[], Handler::WebUi),
            (&["ui", "player.js"], Handler::WebUi),
            // Only the UI's own files: app `ui` has players like any other.
            (&["ui", "cam.flv"], media(MediaFormat::Flv)),
            (&["live", "cam.flv"], media(MediaFormat::Flv)),
            (&["live", "cam.ts"], media(MediaFormat::Ts)),
            (&["live", "x.m3u8.ts"], media(MediaFormat::Ts)),
            (&["live", "cam.mp4"], media(MediaFormat::Fmp4)),
            (&["live", "cam.m3u8"], Handler::HlsLive),
            (&["live", "cam", "record.m3u8"], Handler::HlsRecord),
            (&["live", "cam", "17.ts"], Handler::HlsSegment),
            (&["live", "cam", "llhls.m3u8"], Handler::LlPlaylist),
            (&["live", "cam", "ll", "3.1.m4s"], Handler::LlFile),
            (&["live", "cam", "17.m4s"], Handler::HlsFmp4Segment),
            (&["live", "cam", "init0.mp4"], Handler::HlsInit),
            // Not an API path: a segment of stream `stat` of app `api`.
            (&["api", "stat", "3.ts"], Handler::HlsSegment),
        ] {
            assert_eq!(
                target("GET", segments).map(|t| t.0),
                Some(handler),
                "{segments:?}"
            );
            assert_eq!(
                target("HEAD", segments).map(|t| t.0),
                Some(handler),
                "{segments:?}"
            );
        }
        assert_eq!(
            target("POST", &["api", "ctrl", "kick_session"]).map(|t| t.0),
            Some(Handler::KickSession)
        );
        for (method, segments, handler) in [
            (
                "POST",
                &["api", "ctrl", "start_relay_pull"][..],
                Handler::StartRelayPull,
            ),
            (
                "GET",
                &["api", "ctrl", "stop_relay_pull"],
                Handler::StopRelayPull,
            ),
            (
                "POST",
                &["api", "ctrl", "start_relay_push"],
                Handler::StartRelayPush,
            ),
            (
                "GET",
                &["api", "ctrl", "stop_relay_push"],
                Handler::StopRelayPush,
            ),
            (
                "GET",
                &["control", "pull"],
                Handler::LivegoControl { pull: true },
            ),
            (
                "POST",
                &["control", "push"],
                Handler::LivegoControl { pull: false },
            ),
        ] {
            assert_eq!(target(method, segments).map(|t| t.0), Some(handler));
        }
        assert_eq!(
            route(ROUTES, "HEAD", &["api", "ctrl", "stop_relay_pull"]),
            Routed::MethodNotAllowed(Methods::GET),
            "a stop acts: no HEAD"
        );
        for unknown in [
            &["api", "stat", "all_group", "x"][..],
            &["x"],
            &["ui", "x.js"],
            &["a", "b", "c", "d.ts"],
        ] {
            assert_eq!(
                route(ROUTES, "GET", unknown),
                Routed::NotFound,
                "{unknown:?}"
            );
        }
        assert_eq!(
            route(ROUTES, "POST", &["live", "cam.flv"]),
            Routed::MethodNotAllowed(Methods::READ)
        );
        assert_eq!(
            route(ROUTES, "GET", &["api", "ctrl", "kick_session"]),
            Routed::MethodNotAllowed(Methods::POST)
        );
    }

    #[test]
    fn ll_requests_from_captures() {
        let ll = |segments: &[&str]| {
            let (h, p) = target("GET", segments)?;
            ll_request(h, &p).map(|r| format!("{r:?}"))
        };
        assert_eq!(
            ll(&["live", "cam", "llhls.m3u8"]).as_deref(),
            Some(r#"Playlist { app: "live", stream: "cam" }"#)
        );
        assert_eq!(
            ll(&["live", "cam", "ll", "init2.mp4"]).as_deref(),
            Some(r#"Init { app: "live", stream: "cam", generation: 2 }"#)
        );
        assert_eq!(
            ll(&["live", "cam", "ll", "17.m4s"]).as_deref(),
            Some(r#"Segment { app: "live", stream: "cam", msn: 17 }"#)
        );
        assert_eq!(
            ll(&["live", "cam", "ll", "17.3.m4s"]).as_deref(),
            Some(r#"Part { app: "live", stream: "cam", msn: 17, part: 3 }"#)
        );
        for bad in [
            &["live", "cam", "ll", "x.m4s"][..],
            &["live", "cam", "ll", "1.2.3.m4s"],
            &["live", "cam", "ll", "1.m4"],
            &["live", "cam", "ll", "init.mp4"],
            &["live", "cam", "ll", "-1.m4s"],
            &["live", "cam", "ll", "99999999999999999999.m4s"],
        ] {
            assert_eq!(ll(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hls_requests_from_captures() {
        assert_eq!(
            hls(&["live", "cam.m3u8"]),
            Some(HlsRequest::Live {
                app: "live",
                stream: "cam"
            })
        );
        assert_eq!(
            hls(&["live", "cam", "record.m3u8"]),
            Some(HlsRequest::Record {
                app: "live",
                stream: "cam"
            })
        );
        assert_eq!(
            hls(&["live", "cam", "17.ts"]),
            Some(HlsRequest::Segment {
                app: "live",
                stream: "cam",
                seq: 17
            })
        );
        assert_eq!(
            hls(&["live", "cam", "3.m4s"]),
            Some(HlsRequest::Fmp4Segment {
                app: "live",
                stream: "cam",
                seq: 3
            })
        );
        assert_eq!(
            hls(&["live", "cam", "init12.mp4"]),
            Some(HlsRequest::Init {
                app: "live",
                stream: "cam",
                id: 12
            })
        );
        for bad in [
            &["live", "cam", "init.mp4"][..],
            &["live", "cam", "x1.mp4"],
            &["live", "cam", "init+1.mp4"],
            &["live", ".m3u8"],
            &["live", "cam", "+1.ts"],
            &["live", "cam", "1a.ts"],
            &["live", "cam", ".ts"],
            &["live", "cam", "99999999999999999999.ts"],
            &["live", "cam.flv"],
            &["a", "b", "c", "d.ts"],
        ] {
            assert_eq!(hls(bad), None, "{bad:?}");
        }
    }
}
