//! The engine's authorization hooks: lal's simple auth ([`crate::auth::SimpleAuth`]) applied
//! where a publish or play is decided (RTMP publish and play, HTTP-FLV/TS and their WebSocket
//! forms, HLS playlists, RTSP ANNOUNCE and DESCRIBE).
//!
//! A refused request is answered by its protocol (RTMP error status, HTTP 403, RTSP 403) and its
//! connection is closed with the reason, so the session end record (one log line) names the
//! peer, the protocol, the stream and why. After simple auth, the HTTP callback
//! ([`super::callback`]) may hold the request until its receiver answers.

use super::callback::{encode_query, Gate, Resume};
use super::{ConnId, Engine, Protocol};
use crate::auth::{Access, SECRET_PARAM};
use crate::http::Request;
use crate::stream_key::StreamKey;

impl Engine {
    /// Checks `access` to the stream `key` (`app/stream`) given the URL's raw `query` (without
    /// `?`): simple auth, then the HTTP callback ([`super::callback`]). `Ok(true)`: go on;
    /// `Ok(false)`: the request is held for the callback's answer (`resume` runs it again
    /// then) and the handler returns without answering. On refusal, returns the reason to
    /// close `conn` with; the connection is then labelled with `key` and `protocol` for its end
    /// record.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_access(
        &mut self,
        conn: ConnId,
        access: Access,
        protocol: Protocol,
        key: &StreamKey,
        query: &str,
        resume: impl FnOnce() -> Resume,
        now_ms: u64,
    ) -> Result<bool, String> {
        let result = self.config.auth.check_query(access, key.stream(), query);
        self.refusal(conn, access, protocol, key, result)?;
        self.callback(conn, access, protocol, key, query, resume, now_ms)
    }

    /// [`Engine::check_access`] for an HTTP request, whose query is already decoded.
    pub(super) fn check_access_http(
        &mut self,
        conn: ConnId,
        access: Access,
        protocol: Protocol,
        key: &StreamKey,
        req: &Request,
        now_ms: u64,
    ) -> Result<bool, String> {
        let secret = req.query_param(SECRET_PARAM);
        let result = self.config.auth.check(access, key.stream(), secret);
        self.refusal(conn, access, protocol, key, result)?;
        let query = encode_query(&req.query);
        let resume = || Resume::Http(Box::new(req.clone()));
        self.callback(conn, access, protocol, key, &query, resume, now_ms)
    }

    #[allow(clippy::too_many_arguments)]
    fn callback(
        &mut self,
        conn: ConnId,
        access: Access,
        protocol: Protocol,
        key: &StreamKey,
        query: &str,
        resume: impl FnOnce() -> Resume,
        now_ms: u64,
    ) -> Result<bool, String> {
        match self.callback_gate(conn, access, protocol, key, query, resume, now_ms) {
            Gate::Pass => Ok(true),
            Gate::Held => {
                self.label(conn, protocol, key);
                Ok(false)
            }
            Gate::Refused(why) => self
                .refusal(conn, access, protocol, key, Err(why))
                .map(|_| true),
        }
    }

    fn label(&mut self, conn: ConnId, protocol: Protocol, key: &StreamKey) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stream = Some(key.clone());
            c.protocol = protocol;
        }
    }

    fn refusal<E: std::fmt::Display>(
        &mut self,
        conn: ConnId,
        access: Access,
        protocol: Protocol,
        key: &StreamKey,
        result: Result<(), E>,
    ) -> Result<(), String> {
        result.map_err(|e| {
            self.label(conn, protocol, key);
            format!("{access} refused: {e}")
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::SimpleAuth;
    use crate::engine::{ConnId, Engine, EngineConfig, Listener, Output, Protocol, SessionRecord};
    use crate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};

    /// md5("k" + "s"), from `printf %s ks | md5sum`.
    const SECRET: &str = "05f39d8aef6a4f54dcc0ce5ab4385742";

    /// An engine checking every access of stream `live/s` with key `k`.
    fn engine() -> Engine {
        let auth = SimpleAuth {
            key: "k".into(),
            publish_rtmp: true,
            publish_rtsp: true,
            play_rtmp: true,
            play_http_flv: true,
            play_http_ts: true,
            play_hls: true,
            play_rtsp: true,
            ..SimpleAuth::default()
        };
        Engine::new(
            EngineConfig {
                auth,
                ..EngineConfig::default()
            },
            7,
        )
    }

    /// Sends `text` on a new connection of `listener`; returns what the engine answered and
    /// the end record if it closed the connection.
    fn request(listener: Listener, text: &str) -> (String, Option<SessionRecord>) {
        let mut e = engine();
        let conn: ConnId = 1;
        e.handle_accept(conn, listener, "127.0.0.1:40000".parse().unwrap(), 0);
        e.handle_input(conn, text.as_bytes(), 0);
        let mut out = Vec::new();
        e.poll_transmit(conn, usize::MAX, &mut out);
        let ended = std::iter::from_fn(|| e.poll_output()).find_map(|o| match o {
            Output::SessionEnded(r) => Some(r),
            _ => None,
        });
        (String::from_utf8_lossy(&out.concat()).into_owned(), ended)
    }

    fn http(target: &str, extra: &str) -> (String, Option<SessionRecord>) {
        request(
            Listener::Http,
            &format!("GET {target} HTTP/1.1\r\nHost: h\r\n{extra}\r\n"),
        )
    }

    #[test]
    fn http_players_need_the_secret() {
        let ws = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        for (path, extra, protocol) in [
            ("/live/s.flv", "", Protocol::HttpFlv),
            ("/live/s.ts", "", Protocol::HttpTs),
            ("/live/s.flv", ws, Protocol::WsFlv),
            ("/live/s.ts", ws, Protocol::WsTs),
            ("/live/s.m3u8", "", Protocol::Http),
            ("/live/s/record.m3u8", "", Protocol::Http),
        ] {
            let (answer, ended) = http(path, extra);
            assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
            let r = ended.expect("the refused connection ends");
            assert_eq!((r.protocol, r.stream.as_str()), (protocol, "live/s"));
            assert!(r.reason.contains("refused: no lal_secret"), "{}", r.reason);

            let (answer, _) = http(&format!("{path}?lal_secret=f{}", &SECRET[1..]), extra);
            assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");

            // With the secret: a player waiting for its stream (no answer yet), or a playlist
            // that is not there.
            let (answer, ended) = http(&format!("{path}?a=1&lal_secret={SECRET}"), extra);
            assert!(!answer.contains(" 403 "), "{path}: {answer}");
            if path.ends_with(".m3u8") {
                assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
            } else {
                assert!(ended.is_none(), "{path}: {answer}");
            }
        }
        // Segments are never checked.
        let (answer, _) = http("/live/s/3.ts", "");
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    }

    fn rtsp(method: &str, query: &str) -> (String, Option<SessionRecord>) {
        let body = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
                    m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:trackID=0\r\n";
        let (head, body) = if method == "ANNOUNCE" {
            (
                format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n",
                    body.len()
                ),
                body,
            )
        } else {
            (String::new(), "")
        };
        request(
            Listener::Rtsp,
            &format!("{method} rtsp://h/live/s{query} RTSP/1.0\r\nCSeq: 2\r\n{head}\r\n{body}"),
        )
    }

    #[test]
    fn rtsp_publishers_and_players_need_the_secret() {
        for method in ["DESCRIBE", "ANNOUNCE"] {
            let (answer, ended) = rtsp(method, "");
            assert!(answer.starts_with("RTSP/1.0 403"), "{method}: {answer}");
            let r = ended.expect("the refused connection ends");
            assert_eq!((r.protocol, r.stream.as_str()), (Protocol::Rtsp, "live/s"));
            assert!(r.reason.contains("RTSP"), "{}", r.reason);

            let (answer, ended) = rtsp(method, &format!("?lal_secret={SECRET}"));
            assert!(!answer.contains("403"), "{method}: {answer}");
            assert!(ended.is_none());
            if method == "ANNOUNCE" {
                assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
            }
        }
    }

    /// Runs an RTMP client asking for `live/{name}` against a fresh engine; returns the
    /// client's events and the connection's end record, if it ended.
    fn rtmp(app: &str, name: &str, publish: bool) -> (Vec<ClientEvent>, Option<SessionRecord>) {
        let mut e = engine();
        e.handle_accept(1, Listener::Rtmp, "127.0.0.1:40000".parse().unwrap(), 0);
        let config = ClientConfig::new(app, &format!("rtmp://127.0.0.1/{app}"));
        let mut client = ClientSession::new(config, &[3; 1536], 0);
        if publish {
            client.publish(name);
        } else {
            client.play(name);
        }
        let (mut events, mut ended) = (Vec::new(), None);
        for _ in 0..16 {
            while let Some(b) = client.poll_transmit() {
                e.handle_input(1, &b, 0);
            }
            for o in std::iter::from_fn(|| e.poll_output()) {
                if let Output::SessionEnded(r) = o {
                    ended = Some(r);
                }
            }
            let mut out = Vec::new();
            e.poll_transmit(1, usize::MAX, &mut out);
            if client.handle_input(&out.concat(), 0).is_err() {
                break;
            }
            events.extend(std::iter::from_fn(|| client.poll_event()));
        }
        (events, ended)
    }

    #[test]
    fn rtmp_publishers_and_players_need_the_secret() {
        for publish in [true, false] {
            let (events, ended) = rtmp("live", "s", publish);
            let refused = events.iter().find_map(|e| match e {
                ClientEvent::Rejected { code, .. } => Some(code.as_str()),
                _ => None,
            });
            let expected = if publish {
                "NetStream.Publish.Unauthorized"
            } else {
                "NetStream.Play.Failed"
            };
            assert_eq!(refused, Some(expected), "{events:?}");
            let r = ended.expect("the refused connection ends");
            assert_eq!((r.protocol, r.stream.as_str()), (Protocol::Rtmp, "live/s"));
            assert!(r.reason.contains("refused: no lal_secret"), "{}", r.reason);

            // The secret in the stream name, or on connect's app; the stream is `live/s`.
            for (app, name) in [
                ("live", format!("s?lal_secret={SECRET}")),
                (
                    "live",
                    format!("s?x=1&lal_secret={}", SECRET.to_uppercase()),
                ),
                (&*format!("live?lal_secret={SECRET}"), "s".to_owned()),
            ] {
                let (events, ended) = rtmp(app, &name, publish);
                assert!(
                    !events
                        .iter()
                        .any(|e| matches!(e, ClientEvent::Rejected { .. })),
                    "{app} {name}: {events:?}"
                );
                assert!(ended.is_none(), "{app} {name}");
                if publish {
                    assert!(events
                        .iter()
                        .any(|e| matches!(e, ClientEvent::Publishing { .. })));
                }
            }
        }
    }

    #[test]
    fn a_published_stream_is_named_without_its_query() {
        let mut e = engine();
        e.handle_accept(1, Listener::Rtmp, "127.0.0.1:40000".parse().unwrap(), 0);
        let config = ClientConfig::new("live", "rtmp://127.0.0.1/live");
        let mut client = ClientSession::new(config, &[3; 1536], 0);
        client.publish(&format!("s?lal_secret={SECRET}"));
        let mut started = None;
        for _ in 0..16 {
            while let Some(b) = client.poll_transmit() {
                e.handle_input(1, &b, 0);
            }
            for o in std::iter::from_fn(|| e.poll_output()) {
                if let Output::SessionStarted(r) = o {
                    started = Some(r);
                }
            }
            let mut out = Vec::new();
            e.poll_transmit(1, usize::MAX, &mut out);
            client.handle_input(&out.concat(), 0).unwrap();
            while client.poll_event().is_some() {}
        }
        assert_eq!(started.map(|r| r.stream).as_deref(), Some("live/s"));
        assert_eq!(
            e.hub().stream_of_publisher(1).map(|k| k.as_str()),
            Some("live/s")
        );
    }
}
