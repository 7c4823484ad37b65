//! The URLs rill-bench connects to: `rtmp://host[:port]/app/stream` and
//! `http://host[:port]/path`.
//!
//! Hosts are IP literals or `localhost`; nothing is resolved through DNS. Unless the caller
//! allows it, only loopback addresses are accepted, so a load test cannot be pointed at another
//! machine by accident.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Default RTMP port.
pub const RTMP_PORT: u16 = 1935;
/// Default HTTP port.
pub const HTTP_PORT: u16 = 80;
/// Longest URL accepted.
const MAX_URL_LEN: usize = 2048;

/// Why a URL was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL is longer than the limit.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The scheme is not the one expected.
    Scheme {
        /// The scheme expected (`rtmp` or `http`).
        expected: &'static str,
    },
    /// The host is neither an IP literal nor `localhost`.
    Host {
        /// The host as written.
        host: String,
    },
    /// The port is not a number in 1..=65535.
    Port {
        /// The port as written.
        port: String,
    },
    /// The host is not a loopback address and remote targets were not allowed.
    NotLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// A required path part is missing (`app` or `stream` of an RTMP URL, the HTTP path).
    MissingPath {
        /// Which part.
        part: &'static str,
    },
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::TooLong { len } => {
                write!(f, "url: {len} bytes exceeds the limit of {MAX_URL_LEN}")
            }
            UrlError::Scheme { expected } => write!(f, "url: scheme must be {expected}://"),
            UrlError::Host { host } => write!(
                f,
                "url: host {host:?} is not an IP address or localhost (names are not resolved)"
            ),
            UrlError::Port { port } => write!(f, "url: port {port:?} is not in 1..=65535"),
            UrlError::NotLoopback { addr } => write!(
                f,
                "url: {addr} is not a loopback address (pass --allow-remote to target it)"
            ),
            UrlError::MissingPath { part } => {
                write!(f, "url: the {part} part of the path is missing")
            }
        }
    }
}

impl std::error::Error for UrlError {}

/// A parsed `rtmp://host[:port]/app/stream[?query]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtmpUrl {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The application (first path segment).
    pub app: String,
    /// The stream name: the rest of the path, with any `?query`.
    pub stream: String,
    /// `rtmp://host:port/app`, sent as `tcUrl`.
    pub tc_url: String,
}

/// A parsed `http://host[:port]/path[?query]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header value (`host:port` as written).
    pub host_header: String,
    /// The request target, starting with `/`.
    pub path: String,
}

/// Splits `scheme://authority/rest` into authority and the path after it (with its leading `/`,
/// or empty), checking the scheme and length.
fn split<'a>(url: &'a str, scheme: &'static str) -> Result<(&'a str, &'a str), UrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong { len: url.len() });
    }
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or(UrlError::Scheme { expected: scheme })?;
    Ok(match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    })
}

/// Resolves `host[:port]` without DNS.
fn authority(auth: &str, default_port: u16, allow_remote: bool) -> Result<SocketAddr, UrlError> {
    let (host, port) = if let Some(v6) = auth.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| UrlError::Host {
            host: auth.to_owned(),
        })?;
        (h, after.strip_prefix(':'))
    } else {
        match auth.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (auth, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 => n,
            _ => return Err(UrlError::Port { port: p.to_owned() }),
        },
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().map_err(|_| UrlError::Host {
            host: host.to_owned(),
        })?
    };
    let addr = SocketAddr::new(ip, port);
    if !allow_remote && !ip.is_loopback() {
        return Err(UrlError::NotLoopback { addr });
    }
    Ok(addr)
}

/// Parses an RTMP URL. The first path segment is the app, the rest (which may hold further `/`
/// and a `?query`) the stream name.
pub fn parse_rtmp(url: &str, allow_remote: bool) -> Result<RtmpUrl, UrlError> {
    let (auth, path) = split(url, "rtmp")?;
    let addr = authority(auth, RTMP_PORT, allow_remote)?;
    let path = path.strip_prefix('/').unwrap_or(path);
    let (app, stream) = path.split_once('/').unwrap_or((path, ""));
    if app.is_empty() {
        return Err(UrlError::MissingPath { part: "app" });
    }
    if stream.is_empty() || stream.starts_with('?') {
        return Err(UrlError::MissingPath { part: "stream" });
    }
    // The host as written, without the port (an IPv6 literal keeps its brackets).
    let host = match auth.find(']') {
        Some(i) => auth.get(..=i).unwrap_or(auth),
        None => auth.rsplit_once(':').map_or(auth, |(h, _)| h),
    };
    Ok(RtmpUrl {
        addr,
        app: app.to_owned(),
        stream: stream.to_owned(),
        tc_url: format!("rtmp://{host}:{}/{app}", addr.port()),
    })
}

/// Parses an HTTP URL (for HTTP-FLV players).
pub fn parse_http(url: &str, allow_remote: bool) -> Result<HttpUrl, UrlError> {
    let (auth, path) = split(url, "http")?;
    let addr = authority(auth, HTTP_PORT, allow_remote)?;
    if path.len() <= 1 {
        return Err(UrlError::MissingPath { part: "path" });
    }
    Ok(HttpUrl {
        addr,
        host_header: auth.to_owned(),
        path: path.to_owned(),
    })
}

/// Stream `i` of `streams` spread over several names: `name` with `_{i}` appended before any
/// `?query` when there are several, `name` itself when there is one. Publishers
/// (`publish --streams`) and players (`play --streams`) name their streams alike.
pub fn nth_stream(name: &str, i: usize, streams: usize) -> String {
    if streams <= 1 {
        return name.to_owned();
    }
    match name.split_once('?') {
        Some((base, query)) => format!("{base}_{i}?{query}"),
        None => format!("{name}_{i}"),
    }
}

impl RtmpUrl {
    /// This URL for stream `i` of `streams` (see [`nth_stream`]).
    pub fn nth_stream(&self, i: usize, streams: usize) -> RtmpUrl {
        RtmpUrl {
            stream: nth_stream(&self.stream, i, streams),
            ..self.clone()
        }
    }
}

impl HttpUrl {
    /// This URL for stream `i` of `streams`: `_{i}` goes before the extension of the last path
    /// segment (`/live/s.flv` -> `/live/s_3.flv`), or at its end when it has none.
    pub fn nth_stream(&self, i: usize, streams: usize) -> HttpUrl {
        if streams <= 1 {
            return self.clone();
        }
        let (path, query) = match self.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path.as_str(), None),
        };
        let segment_start = path.rfind('/').map_or(0, |s| s + 1);
        let (stem, ext) = match path.rfind('.') {
            Some(dot) if dot > segment_start => path.split_at(dot),
            _ => (path, ""),
        };
        let mut out = format!("{stem}_{i}{ext}");
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        HttpUrl {
            path: out,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_streams() {
        assert_eq!(nth_stream("bench", 0, 1), "bench");
        assert_eq!(nth_stream("bench", 0, 3), "bench_0");
        assert_eq!(nth_stream("bench", 2, 3), "bench_2");
        assert_eq!(nth_stream("bench?key=k", 1, 2), "bench_1?key=k");
        let r = parse_rtmp("rtmp://127.0.0.1/live/b?k=1", false).unwrap();
        assert_eq!(r.nth_stream(4, 5).stream, "b_4?k=1");
        let h = parse_http("http://127.0.0.1:8080/live/b.flv?k=1", false).unwrap();
        assert_eq!(h.nth_stream(0, 1).path, "/live/b.flv?k=1");
        assert_eq!(h.nth_stream(7, 9).path, "/live/b_7.flv?k=1");
        let h = parse_http("http://127.0.0.1/a.b/live/b", false).unwrap();
        assert_eq!(h.nth_stream(1, 2).path, "/a.b/live/b_1");
    }

    #[test]
    fn rtmp_with_port_app_stream() {
        let u = parse_rtmp("rtmp://127.0.0.1:1940/live/test", false).unwrap();
        assert_eq!(u.addr, "127.0.0.1:1940".parse().unwrap());
        assert_eq!(u.app, "live");
        assert_eq!(u.stream, "test");
        assert_eq!(u.tc_url, "rtmp://127.0.0.1:1940/live");
    }

    #[test]
    fn rtmp_default_port_nested_stream_and_query() {
        let u = parse_rtmp("rtmp://localhost/live/a/b?token=1", false).unwrap();
        assert_eq!(u.addr, "127.0.0.1:1935".parse().unwrap());
        assert_eq!(u.app, "live");
        assert_eq!(u.stream, "a/b?token=1");
        assert_eq!(u.tc_url, "rtmp://localhost:1935/live");
    }

    #[test]
    fn rtmp_ipv6_loopback() {
        let u = parse_rtmp("rtmp://[::1]:2000/app/s", false).unwrap();
        assert_eq!(u.addr, "[::1]:2000".parse().unwrap());
        assert_eq!(u.tc_url, "rtmp://[::1]:2000/app");
    }

    #[test]
    fn rtmp_errors() {
        assert_eq!(
            parse_rtmp("http://127.0.0.1/live/x", false),
            Err(UrlError::Scheme { expected: "rtmp" })
        );
        assert_eq!(
            parse_rtmp("rtmp://127.0.0.1/live", false),
            Err(UrlError::MissingPath { part: "stream" })
        );
        assert_eq!(
            parse_rtmp("rtmp://127.0.0.1/live/?x", false),
            Err(UrlError::MissingPath { part: "stream" })
        );
        assert_eq!(
            parse_rtmp("rtmp://127.0.0.1//x", false),
            Err(UrlError::MissingPath { part: "app" })
        );
        assert!(matches!(
            parse_rtmp("rtmp://example.com/live/x", false),
            Err(UrlError::Host { .. })
        ));
        assert!(matches!(
            parse_rtmp("rtmp://127.0.0.1:0/live/x", false),
            Err(UrlError::Port { .. })
        ));
        assert!(matches!(
            parse_rtmp("rtmp://127.0.0.1:99999/live/x", false),
            Err(UrlError::Port { .. })
        ));
        assert!(matches!(
            parse_rtmp(
                &format!("rtmp://127.0.0.1/live/{}", "x".repeat(3000)),
                false
            ),
            Err(UrlError::TooLong { .. })
        ));
    }

    #[test]
    fn remote_needs_permission() {
        assert!(matches!(
            parse_rtmp("rtmp://10.0.0.1/live/x", false),
            Err(UrlError::NotLoopback { .. })
        ));
        assert!(parse_rtmp("rtmp://10.0.0.1/live/x", true).is_ok());
    }

    #[test]
    fn http_urls() {
        let u = parse_http("http://127.0.0.1:8080/live/test.flv", false).unwrap();
        assert_eq!(u.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(u.host_header, "127.0.0.1:8080");
        assert_eq!(u.path, "/live/test.flv");
        let u = parse_http("http://localhost/x.flv?a=b", false).unwrap();
        assert_eq!(u.addr.port(), 80);
        assert_eq!(u.path, "/x.flv?a=b");
        assert_eq!(
            parse_http("http://127.0.0.1:8080", false),
            Err(UrlError::MissingPath { part: "path" })
        );
        assert_eq!(
            parse_http("https://127.0.0.1/x", false),
            Err(UrlError::Scheme { expected: "http" })
        );
    }
}
