//! The web UI at `/`: a few static files compiled into the binary (no CDN, nothing fetched at
//! run time, works offline) and `/api/server`, which tells the page what the server listens on
//! so it can show play URLs for every protocol.
//!
//! The pages are plain HTML, CSS and JavaScript, no framework: three views of JSON the API
//! already serves (`/api/stat/*`, `/metrics`) need a few hundred lines, and a framework would
//! be a build step and many times the bytes. The player (`player.js`) is plain Media Source
//! Extensions on the endless fMP4 stream at `/{app}/{stream}.mp4`.

use bytes::Bytes;
use serde::Serialize;

use crate::http::Response;

/// The files of the UI: the path they are served at, their content type and their bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("index.html"),
    ),
    (
        "/ui/rill.css",
        "text/css; charset=utf-8",
        include_bytes!("rill.css"),
    ),
    (
        "/ui/rill.js",
        "text/javascript; charset=utf-8",
        include_bytes!("rill.js"),
    ),
    (
        "/ui/player.js",
        "text/javascript; charset=utf-8",
        include_bytes!("player.js"),
    ),
];

/// The UI's file at `path` (`/` or `/ui/{file}`), `None` for any other path.
pub fn asset(path: &str) -> Option<Response> {
    let (_, content_type, body) = ASSETS.iter().find(|(p, _, _)| *p == path)?;
    Some(
        Response::new(200)
            .header("Cache-Control", "no-cache")
            .body(content_type, Bytes::from_static(body)),
    )
}

/// The ports the server listens on (`None`: that listener is off), for the UI's play URLs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Listening {
    /// RTMP.
    pub rtmp: Option<u16>,
    /// RTSP.
    pub rtsp: Option<u16>,
    /// HTTP (FLV, TS, fMP4, HLS, the API, the UI).
    pub http: Option<u16>,
    /// RTMPS.
    pub rtmps: Option<u16>,
    /// HTTPS.
    pub https: Option<u16>,
    /// RTSPS.
    pub rtsps: Option<u16>,
    /// Whether HLS is served (on the HTTP listeners).
    pub hls: bool,
    /// Whether Low-Latency HLS is served (`/{app}/{stream}/llhls.m3u8`, on the HTTP listeners).
    pub llhls: bool,
}

/// The UI's settings (`[http] ui`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiConfig {
    /// Serve the UI and `/api/server`.
    pub enable: bool,
    /// What the server listens on.
    pub listening: Listening,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enable: true,
            listening: Listening::default(),
        }
    }
}

/// The answer of `/api/server`: `{"server":"rill","version":...,"listening":{...}}`.
pub fn server_json(listening: &Listening) -> String {
    #[derive(Serialize)]
    struct Server<'a> {
        server: &'static str,
        version: &'static str,
        listening: &'a Listening,
    }
    serde_json::to_string(&Server {
        server: "rill",
        version: env!("CARGO_PKG_VERSION"),
        listening,
    })
    .unwrap_or_default()
}

/// The port of a listen address such as `0.0.0.0:1935` or `[::]:8080`, when `enable`d.
pub fn port_of(enable: bool, addr: &str) -> Option<u16> {
    let (_, port) = addr.rsplit_once(':')?;
    enable.then(|| port.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_its_files_with_their_types_and_nothing_else() {
        let mut out = bytes::BytesMut::new();
        asset("/").expect("index").encode(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("text/html"), "{text}");
        assert!(text.contains("/ui/rill.js"), "{text}");
        for path in ["/ui/rill.css", "/ui/rill.js", "/ui/player.js"] {
            assert!(asset(path).is_some(), "{path}");
        }
        assert!(asset("/ui/nope.js").is_none());
        assert!(asset("/ui/").is_none());
    }

    /// What the engine sends for `GET path` with the UI `enable`d or not.
    fn engine_get(enable: bool, path: &str) -> String {
        use crate::engine::{Engine, EngineConfig, Listener};
        let config = EngineConfig {
            ui: UiConfig {
                enable,
                listening: Listening {
                    rtmp: Some(1935),
                    ..Listening::default()
                },
            },
            ..EngineConfig::default()
        };
        let mut e = Engine::new(config, 1);
        let peer = "127.0.0.1:40000".parse().expect("addr");
        e.handle_accept(5, Listener::Http, peer, 0);
        let req = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        e.handle_input(5, req.as_bytes(), 1);
        while e.poll_output().is_some() {}
        let mut bufs = Vec::new();
        e.poll_transmit(5, usize::MAX, &mut bufs);
        let bytes: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn the_engine_serves_the_ui_unless_it_is_switched_off() {
        let page = engine_get(true, "/");
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("<title>rill</title>"), "{page}");
        let server = engine_get(true, "/api/server");
        assert!(server.contains(r#""rtmp":1935"#), "{server}");
        for path in ["/", "/ui/rill.js", "/api/server"] {
            let off = engine_get(false, path);
            assert!(off.starts_with("HTTP/1.1 404"), "{path}: {off}");
        }
    }

    #[test]
    fn server_json_names_the_ports_listening() {
        let l = Listening {
            rtmp: port_of(true, "0.0.0.0:1935"),
            http: port_of(true, "[::]:8080"),
            rtsps: port_of(false, "0.0.0.0:5322"),
            hls: true,
            llhls: false,
            ..Listening::default()
        };
        let v: serde_json::Value = serde_json::from_str(&server_json(&l)).expect("json");
        assert_eq!(v["server"], "rill");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["listening"]["rtmp"], 1935);
        assert_eq!(v["listening"]["http"], 8080);
        assert!(v["listening"]["rtsps"].is_null());
        assert_eq!(v["listening"]["hls"], true);
        assert_eq!(v["listening"]["llhls"], false);
        assert_eq!(port_of(true, "nonsense"), None);
    }
}
