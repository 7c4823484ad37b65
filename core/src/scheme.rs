//! The URL schemes of the connections rill opens itself (relays, webhooks), and the one place
//! that says which of them run over TLS, on which port by default, and whether the peer's
//! certificate is verified. A client that parses a URL takes its [`Scheme`] from
//! [`Scheme::split`] and asks [`TlsPolicy::client`] what goes into its `Output::Connect`.

use std::fmt;

/// A URL scheme rill connects with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `rtmp://`.
    Rtmp,
    /// `rtmps://`: RTMP over TLS.
    Rtmps,
    /// `http://`.
    Http,
    /// `https://`: HTTP over TLS.
    Https,
    /// `rtsp://`.
    Rtsp,
    /// `rtsps://`: RTSP over TLS (media interleaved on the connection).
    Rtsps,
}

impl Scheme {
    const ALL: [Scheme; 6] = [
        Scheme::Rtmp,
        Scheme::Rtmps,
        Scheme::Http,
        Scheme::Https,
        Scheme::Rtsp,
        Scheme::Rtsps,
    ];

    /// The scheme of `url` (case-insensitive) and what follows its `://`; `None` for any other.
    pub fn split(url: &str) -> Option<(Scheme, &str)> {
        let (name, rest) = url.split_once("://")?;
        let scheme = Scheme::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))?;
        Some((scheme, rest))
    }

    /// The scheme's name as URLs spell it, without `://`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Rtmp => "rtmp",
            Scheme::Rtmps => "rtmps",
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Rtsp => "rtsp",
            Scheme::Rtsps => "rtsps",
        }
    }

    /// Whether connections of this scheme run over TLS.
    pub fn tls(self) -> bool {
        matches!(self, Scheme::Rtmps | Scheme::Https | Scheme::Rtsps)
    }

    /// The port of a URL that names none (RTMPS: 443, as the big platforms take it).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Rtmp => 1935,
            Scheme::Http => 80,
            Scheme::Rtmps | Scheme::Https => 443,
            Scheme::Rtsp => 554,
            Scheme::Rtsps => 322,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the runtime wraps an outbound connection in TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsClient {
    /// The name sent in SNI and checked against the certificate (a host name or IP address).
    pub server_name: String,
    /// Verify the certificate chain against the system roots. Off only for targets listed in
    /// `[tls] no_verify` (self-signed origins).
    pub verify: bool,
}

/// Which TLS targets are not verified (`[tls] no_verify`: `host` or `host:port` entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Entries as configured.
    pub no_verify: Vec<String>,
}

impl TlsPolicy {
    /// What a connection of `scheme` to `host:port` needs: `None` for a plain scheme.
    pub fn client(&self, scheme: Scheme, host: &str, port: u16) -> Option<TlsClient> {
        if !scheme.tls() {
            return None;
        }
        let listed = self.no_verify.iter().any(|entry| {
            let entry = entry.trim();
            entry.eq_ignore_ascii_case(host) || {
                let with_port = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                entry.eq_ignore_ascii_case(&with_port)
            }
        });
        Some(TlsClient {
            server_name: host.to_owned(),
            verify: !listed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_split_and_map_to_tls() {
        let (s, rest) = Scheme::split("RTMPS://h/live").unwrap();
        assert_eq!((s, rest), (Scheme::Rtmps, "h/live"));
        assert!(s.tls());
        assert_eq!(s.default_port(), 443);
        assert!(!Scheme::Rtmp.tls());
        assert!(Scheme::split("ftp://h").is_none());
        assert!(Scheme::split("rtmp:/h").is_none());
        for s in Scheme::ALL {
            assert_eq!(Scheme::split(&format!("{s}://x")).unwrap().0, s);
        }
    }

    #[test]
    fn no_verify_matches_host_or_host_and_port() {
        let p = TlsPolicy {
            no_verify: vec![
                "a.example".into(),
                "b.example:4935".into(),
                "[::1]:443".into(),
            ],
        };
        let v = |s, h: &str, port| p.client(s, h, port).map(|c| c.verify);
        assert_eq!(v(Scheme::Rtmps, "a.example", 443), Some(false));
        assert_eq!(v(Scheme::Rtmps, "b.example", 4935), Some(false));
        assert_eq!(v(Scheme::Rtmps, "b.example", 443), Some(true));
        assert_eq!(v(Scheme::Https, "::1", 443), Some(false));
        assert_eq!(v(Scheme::Https, "c.example", 443), Some(true));
        assert_eq!(v(Scheme::Rtmp, "a.example", 1935), None);
        let c = p.client(Scheme::Https, "c.example", 443).unwrap();
        assert_eq!(c.server_name, "c.example");
    }
}
