//! The addresses relays connect to: `rtmp://`, `http://` (HTTP-FLV, pull only) and `rtsp://`
//! URLs of origins and push targets, or their TLS forms (`rtmps://`, `https://`, `rtsps://`,
//! see [`crate::scheme`]), with what each scheme needs beyond host, port and path
//! (RTSP credentials from the URL, the RTSP transport from its query).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::engine::Protocol;
use crate::http::percent_decode;
use crate::rtsp::server::Credentials;
use crate::rtsp::transport::LowerTransport;
use crate::scheme::Scheme;

/// The protocol a relay of `scheme` shows in statistics (`RTMPPULL…`, `FLVPULL…`,
/// `RTSPPULL…` session ids); whether it runs over TLS is the scheme's [`Scheme::tls`].
pub fn relay_protocol(scheme: Scheme) -> Protocol {
    match scheme {
        Scheme::Http | Scheme::Https => Protocol::HttpFlv,
        Scheme::Rtsp | Scheme::Rtsps => Protocol::Rtsp,
        _ => Protocol::Rtmp,
    }
}

/// A relay address: `scheme://[user:pass@]host[:port][/path][?query]`.
///
/// Credentials are allowed on `rtsp://` only (percent-escapes decoded); the query only on
/// `rtsp://`, for the transport: `rtsp_mode=0|1` (lal's: 0 TCP, 1 UDP) or
/// `rtsp_transport=tcp|udp`, TCP by default.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// The protocol.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (the scheme's default when the URL names none).
    pub port: u16,
    /// The path without its leading and trailing `/` (may be empty).
    pub path: String,
    /// RTSP user and password, answering a 401 with Digest or Basic.
    pub credentials: Option<Credentials>,
    /// RTSP: how media travels (TCP interleaved unless the query asks for UDP).
    pub rtsp_transport: LowerTransport,
}

impl fmt::Debug for RelayUrl {
    /// As [`fmt::Display`]: never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelayUrl({self})")
    }
}

impl RelayUrl {
    /// Parses a relay URL; says what is wrong otherwise.
    pub fn parse(url: &str) -> Result<RelayUrl, String> {
        let (scheme, rest) = Scheme::split(url).ok_or_else(|| {
            format!(
                "{url:?}: only rtmp://, http:// and rtsp:// URLs (or rtmps://, https://, \
                 rtsps://) are supported"
            )
        })?;
        let rtsp = matches!(scheme, Scheme::Rtsp | Scheme::Rtsps);
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, authority) = match authority.rsplit_once('@') {
            Some((u, a)) => (Some(u), a),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, tail) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed '['"))?;
            (host, tail.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
            None => scheme.default_port(),
        };
        let credentials = match userinfo {
            None => None,
            Some(_) if !rtsp => {
                return Err(format!("{url:?}: credentials are for rtsp:// URLs only"))
            }
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let decode =
                    |s: &str| percent_decode(s, false).map_err(|e| format!("{url:?}: {e}"));
                Some(Credentials {
                    username: decode(user)?,
                    password: decode(pass)?,
                })
            }
        };
        let mut rtsp_transport = LowerTransport::Tcp;
        for param in query.split('&').filter(|p| !p.is_empty()) {
            rtsp_transport = match (rtsp, param.split_once('=').unwrap_or((param, ""))) {
                (true, ("rtsp_mode", "0") | ("rtsp_transport", "tcp")) => LowerTransport::Tcp,
                (true, ("rtsp_mode", "1") | ("rtsp_transport", "udp")) if scheme.tls() => {
                    return Err(format!(
                        "{url:?}: rtsps:// carries media on its TLS connection (no UDP)"
                    ))
                }
                (true, ("rtsp_mode", "1") | ("rtsp_transport", "udp")) => LowerTransport::Udp,
                _ => {
                    return Err(format!(
                        "{url:?}: query parameter {param:?} not understood (rtsp:// takes \
                         rtsp_mode=0|1 or rtsp_transport=tcp|udp)"
                    ))
                }
            };
        }
        Ok(RelayUrl {
            scheme,
            host: host.to_owned(),
            port,
            path: path.trim_matches('/').to_owned(),
            credentials,
            rtsp_transport,
        })
    }

    /// Parses a push target: like [`RelayUrl::parse`], but HTTP-FLV is refused (pull only).
    pub fn parse_push(url: &str) -> Result<RelayUrl, String> {
        let u = RelayUrl::parse(url)?;
        u.pushable()?;
        Ok(u)
    }

    /// Parses a URL naming a stream itself (the relay API's):
    /// `scheme://[user:pass@]host[:port]/app/stream[?query]`; the URL and its query, which is
    /// passed on to the other server as it is.
    pub fn parse_stream(url: &str) -> Result<(RelayUrl, String), String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let u = RelayUrl::parse(base)?;
        if !u.path.contains('/') {
            return Err(format!("{u}: the path must name an app and a stream"));
        }
        if matches!(u.scheme, Scheme::Http | Scheme::Https) && !u.path.ends_with(".flv") {
            return Err(format!(
                "{u}: an HTTP pull names an FLV stream (/app/stream.flv)"
            ));
        }
        Ok((u, query.to_owned()))
    }

    /// Whether a stream can be pushed to this URL (HTTP-FLV relays pull only).
    pub fn pushable(&self) -> Result<(), String> {
        if matches!(self.scheme, Scheme::Http | Scheme::Https) {
            return Err(format!(
                "{self}: HTTP-FLV relays pull only; push to rtmp:// or rtsp://"
            ));
        }
        Ok(())
    }

    /// Whether this `rtmp://` URL names the RTMP listener at `own` (a loopback or unspecified
    /// host, or `own`'s address, on `own`'s port).
    pub fn is_own(&self, own: SocketAddr) -> bool {
        if self.scheme != Scheme::Rtmp || self.port != own.port() {
            return false;
        }
        if self.host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        self.host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified() || ip == own.ip())
    }

    /// The path of `name` under this URL: `{path}/{name}` (just `name` when the path is empty,
    /// just the path when `name` is: a URL naming the stream itself).
    pub fn full_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else if name.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{name}", self.path)
        }
    }

    /// The RTMP app and stream name to use for `name` under this URL: the first path segment
    /// is the app, the rest of the path and `name` the stream name.
    pub(super) fn target(&self, name: &str) -> (String, String) {
        let full = self.full_path(name);
        match full.split_once('/') {
            Some((app, stream)) => (app.to_owned(), stream.to_owned()),
            None => (full, String::new()),
        }
    }

    /// `host:port` as an HTTP `Host` header or URL authority (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `scheme://host:port/{path}`, without credentials or query.
    pub fn base(&self, path: &str) -> String {
        format!("{}://{}/{path}", self.scheme.name(), self.authority())
    }

    /// The RTMP `tcUrl` for `app`.
    pub(super) fn tc_url(&self, app: &str) -> String {
        self.base(app)
    }
}

impl fmt::Display for RelayUrl {
    /// `scheme://host:port[/path]`: never the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = self.base(&self.path);
        f.write_str(base.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = RelayUrl::parse("rtmp://10.0.0.1:1936/live").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Rtmp, "10.0.0.1", 1936, "live")
        );
        assert_eq!(u.target("s"), ("live".into(), "s".into()));
        assert_eq!(u.full_path(""), "live");
        let u = RelayUrl::parse("rtmp://h").unwrap();
        assert_eq!((u.port, u.path.as_str()), (1935, ""));
        assert_eq!(u.target("live/s"), ("live".into(), "s".into()));
        assert_eq!(u.to_string(), "rtmp://h:1935");
        assert!(RelayUrl::parse("ftp://h/x").is_err());
        assert!(RelayUrl::parse("rtmp://h:0").is_err());
        assert!(RelayUrl::parse("rtmp://:1935").is_err());
        assert!(RelayUrl::parse("rtmp://h/live?x=1").is_err());
        assert!(RelayUrl::parse("rtmp://u:p@h/live").is_err());
    }

    #[test]
    fn stream_urls_keep_their_query_and_need_an_app_and_a_stream() {
        let (u, query) = RelayUrl::parse_stream("rtmp://h/live/s?token=1&x=2").unwrap();
        assert_eq!((u.path.as_str(), query.as_str()), ("live/s", "token=1&x=2"));
        assert_eq!(u.target(""), ("live".into(), "s".into()));
        let (u, query) = RelayUrl::parse_stream("rtsp://u:p@cam/live/s").unwrap();
        assert!(u.credentials.is_some() && query.is_empty());
        assert!(RelayUrl::parse_stream("http://h/live/s.flv").is_ok());
        assert!(RelayUrl::parse_stream("http://h/live/s.mp4").is_err());
        assert!(RelayUrl::parse_stream("rtmp://h/live").is_err());
        assert!(RelayUrl::parse_stream("ftp://h/live/s").is_err());
    }

    #[test]
    fn only_an_rtmp_url_to_this_listener_is_own() {
        let own: SocketAddr = "10.0.0.5:1935".parse().unwrap();
        for url in [
            "rtmp://127.0.0.1/live",
            "rtmp://localhost:1935/a",
            "rtmp://10.0.0.5/a",
        ] {
            assert!(RelayUrl::parse(url).unwrap().is_own(own), "{url}");
        }
        for url in [
            "rtmp://127.0.0.1:1936/a",
            "rtmp://10.0.0.6/a",
            "rtsp://127.0.0.1:1935/a",
        ] {
            assert!(!RelayUrl::parse(url).unwrap().is_own(own), "{url}");
        }
    }

    #[test]
    fn http_and_rtsp_urls_parse_with_defaults() {
        let u = RelayUrl::parse("http://[::1]/edge").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Http, 80));
        assert_eq!(u.to_string(), "http://[::1]:80/edge");
        assert!(RelayUrl::parse_push("http://h/live").is_err());
        let u = RelayUrl::parse("rtsp://h").unwrap();
        assert_eq!((u.port, u.rtsp_transport), (554, LowerTransport::Tcp));
        assert!(u.credentials.is_none());
        assert!(RelayUrl::parse_push("rtsp://h/cams").is_ok());
    }

    #[test]
    fn tls_schemes_parse_with_their_ports_and_rules() {
        let u = RelayUrl::parse("rtmps://h/app").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Rtmps, 443));
        assert_eq!(u.tc_url("app"), "rtmps://h:443/app");
        assert!(!u.is_own("127.0.0.1:443".parse().unwrap()));
        let u = RelayUrl::parse("https://h/edge").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Https, 443));
        assert!(RelayUrl::parse_push("https://h/live").is_err());
        assert!(RelayUrl::parse_stream("https://h/live/s.flv").is_ok());
        let u = RelayUrl::parse("rtsps://u:p@cam/live").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Rtsps, 322));
        assert!(u.credentials.is_some());
        assert!(RelayUrl::parse("rtsps://cam/live?rtsp_mode=1").is_err());
        assert!(RelayUrl::parse("RTMPS://h").is_ok());
    }

    #[test]
    fn rtsp_credentials_and_transport_come_from_the_url_and_are_never_shown() {
        let u = RelayUrl::parse("rtsp://admin:p%40ss@cam:8554/live?rtsp_mode=1").unwrap();
        let c = u.credentials.clone().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss")
        );
        assert_eq!((u.host.as_str(), u.port), ("cam", 8554));
        assert_eq!(u.rtsp_transport, LowerTransport::Udp);
        assert_eq!(u.to_string(), "rtsp://cam:8554/live");
        assert!(!format!("{u:?}").contains("p%40ss") && !format!("{u:?}").contains("p@ss"));
        let u = RelayUrl::parse("rtsp://cam/x?rtsp_transport=tcp").unwrap();
        assert_eq!(u.rtsp_transport, LowerTransport::Tcp);
        assert!(RelayUrl::parse("rtsp://cam/x?rtsp_mode=2").is_err());
        assert!(RelayUrl::parse("http://cam/x?rtsp_mode=1").is_err());
    }
}
