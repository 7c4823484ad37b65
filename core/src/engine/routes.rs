//! The HTTP routes of the engine: which requests are players, HLS, the API (and, later, static
//! pages), by method and path, in one table looked up with [`crate::http::router`].
//!
//! | Methods      | Path                           | Handler                                     |
//! |--------------|--------------------------------|---------------------------------------------|
//! | GET, HEAD    | `/api/stat/lal_info`           | [`Handler::LalInfo`]                        |
//! | GET, HEAD    | `/api/stat/all_group`          | [`Handler::AllGroups`]                      |
//! | GET, HEAD    | `/api/stat/group`              | [`Handler::Group`] (`?stream_name=`)        |
//! | GET, HEAD    | `/metrics`                     | [`Handler::Metrics`]                        |
//! | POST         | `/api/ctrl/kick_session`       | [`Handler::KickSession`] (JSON body)        |
//! | POST         | `/api/ctrl/start_relay_pull`   | [`Handler::StartRelayPull`] (JSON body)     |
//! | GET          | `/api/ctrl/stop_relay_pull`    | [`Handler::StopRelayPull`] (`?stream_name=`) |
//! | POST         | `/api/ctrl/start_relay_push`   | [`Handler::StartRelayPush`] (JSON body)     |
//! | GET          | `/api/ctrl/stop_relay_push`    | [`Handler::StopRelayPush`] (`?stream_name=[&url=]`) |
//! | GET, POST    | `/control/pull`                | [`Handler::LivegoControl`] (`?oper=&app=&name=&url=`) |
//! | GET, POST    | `/control/push`                | [`Handler::LivegoControl`] likewise         |
//! | GET, HEAD    | `/{app}/{stream}.flv`          | [`Handler::Media`] FLV (GET may upgrade to WebSocket) |
//! | GET, HEAD    | `/{app}/{stream}.ts`           | [`Handler::Media`] TS (likewise)            |
//! | GET, HEAD    | `/{app}/{stream}.m3u8`         | [`Handler::HlsLive`]                        |
//! | GET, HEAD    | `/{app}/{stream}/record.m3u8`  | [`Handler::HlsRecord`]                      |
//! | GET, HEAD    | `/{app}/{stream}/{seq}.ts`     | [`Handler::HlsSegment`]                     |
//!
//! `OPTIONS` on any path is a CORS preflight, answered before routing. Any other path is 404; a
//! listed path with another method is 405 with `Allow`, and so is a method other than `GET`,
//! `HEAD`, `POST` and `OPTIONS` on any path. Static pages (the web UI) get a
//! `GET, HEAD` route on `/ui/*` and a handler of their own; the API routes come first so that
//! no stream named like them can shadow them.

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
    /// Close one session, named by lal's `stream_name` and `session_id` in a JSON body.
    KickSession,
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
    /// A live stream for a player: FLV (HTTP or WebSocket), or MPEG-TS when `ts`.
    Media {
        /// MPEG-TS rather than FLV.
        ts: bool,
    },
    /// An HLS live playlist.
    HlsLive,
    /// An HLS record playlist (every segment kept).
    HlsRecord,
    /// One HLS segment.
    HlsSegment,
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
    Route {
        methods: Methods::POST,
        pattern: "/api/ctrl/kick_session",
        target: Handler::KickSession,
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
    read("/{app}/{stream}.flv", Handler::Media { ts: false }),
    read("/{app}/{stream}.ts", Handler::Media { ts: true }),
    read("/{app}/{stream}.m3u8", Handler::HlsLive),
    read("/{app}/{stream}/record.m3u8", Handler::HlsRecord),
    read("/{app}/{stream}/{seq}.ts", Handler::HlsSegment),
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
            let digits = params.get("seq")?;
            if digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let seq = digits.parse().ok()?;
            Some(HlsRequest::Segment { app, stream, seq })
        }
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
            (&["live", "cam.flv"], Handler::Media { ts: false }),
            (&["live", "cam.ts"], Handler::Media { ts: true }),
            (&["live", "x.m3u8.ts"], Handler::Media { ts: true }),
            (&["live", "cam.m3u8"], Handler::HlsLive),
            (&["live", "cam", "record.m3u8"], Handler::HlsRecord),
            (&["live", "cam", "17.ts"], Handler::HlsSegment),
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
            &[],
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
        for bad in [
            &["live", ".m3u8"][..],
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
