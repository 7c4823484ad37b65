//! The `Transport` header (RFC 2326 section 12.39): `RTP/AVP[/UDP|/TCP]` with `unicast` /
//! `multicast`, `interleaved=`, `client_port=`, `server_port=`, `ssrc=`, `mode=` and the rest.

use std::fmt;

use super::RtspError;

/// The lower transport of an RTP stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowerTransport {
    /// RTP and RTCP over UDP datagrams.
    Udp,
    /// RTP and RTCP interleaved on the RTSP TCP connection.
    Tcp,
}

/// One transport specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport {
    /// Profile: `RTP/AVP` (or `RTP/AVPF`, `RTP/SAVP`: kept as sent).
    pub profile: String,
    /// UDP or TCP.
    pub lower: LowerTransport,
    /// `unicast` (the default) or `multicast`.
    pub unicast: bool,
    /// `interleaved=a-b`: channels for RTP and RTCP.
    pub interleaved: Option<(u8, u8)>,
    /// `client_port=a-b`: the client's RTP and RTCP ports.
    pub client_port: Option<(u16, u16)>,
    /// `server_port=a-b`: the server's RTP and RTCP ports.
    pub server_port: Option<(u16, u16)>,
    /// `ssrc=` (hex).
    pub ssrc: Option<u32>,
    /// `mode=record` (or `"RECORD"`): the client sends media.
    pub record: bool,
    /// `destination=`.
    pub destination: Option<String>,
    /// `source=`.
    pub source: Option<String>,
    /// Parameters not listed above, as written.
    pub other: Vec<String>,
}

impl Transport {
    /// An `RTP/AVP` unicast transport over `lower` with nothing else set.
    pub fn new(lower: LowerTransport) -> Self {
        Transport {
            profile: "RTP/AVP".to_owned(),
            lower,
            unicast: true,
            interleaved: None,
            client_port: None,
            server_port: None,
            ssrc: None,
            record: false,
            destination: None,
            source: None,
            other: Vec::new(),
        }
    }

    /// Parses one transport specification.
    pub fn parse(spec: &str) -> Result<Self, RtspError> {
        let bad = |what| RtspError::BadTransport { what };
        let mut params = spec.split(';').map(str::trim);
        let proto = params.next().unwrap_or_default();
        let mut parts = proto.split('/');
        let (Some(rtp), Some(profile)) = (parts.next(), parts.next()) else {
            return Err(bad("transport protocol is not RTP/profile[/lower]"));
        };
        if !rtp.eq_ignore_ascii_case("RTP") || profile.is_empty() {
            return Err(bad("transport protocol is not RTP"));
        }
        let lower = match parts.next() {
            None => LowerTransport::Udp,
            Some(l) if l.eq_ignore_ascii_case("UDP") => LowerTransport::Udp,
            Some(l) if l.eq_ignore_ascii_case("TCP") => LowerTransport::Tcp,
            Some(_) => return Err(bad("lower transport is not UDP or TCP")),
        };
        if parts.next().is_some() {
            return Err(bad("transport protocol has too many parts"));
        }
        let mut t = Transport::new(lower);
        t.profile = format!("RTP/{profile}");
        for p in params {
            if p.is_empty() {
                continue;
            }
            let (k, v) = match p.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                None => (p, None),
            };
            let lk = k.to_ascii_lowercase();
            match (lk.as_str(), v) {
                ("unicast", None) => t.unicast = true,
                ("multicast", None) => t.unicast = false,
                ("interleaved", Some(v)) => {
                    t.interleaved = Some(pair(v, |s| s.parse::<u8>().ok(), |a| a.checked_add(1))?)
                }
                ("client_port", Some(v)) => t.client_port = Some(port_pair(v)?),
                ("server_port", Some(v)) => t.server_port = Some(port_pair(v)?),
                ("ssrc", Some(v)) => {
                    t.ssrc = Some(
                        u32::from_str_radix(v.trim_start_matches("0x"), 16)
                            .map_err(|_| bad("ssrc is not 8 hex digits"))?,
                    )
                }
                ("mode", Some(v)) => {
                    t.record = v
                        .split(',')
                        .any(|m| m.trim().trim_matches('"').eq_ignore_ascii_case("record"))
                }
                ("destination", Some(v)) => t.destination = Some(v.to_owned()),
                ("source", Some(v)) => t.source = Some(v.to_owned()),
                _ => t.other.push(p.to_owned()),
            }
        }
        Ok(t)
    }

    /// Parses a whole header value: the client's alternatives in order of preference.
    pub fn parse_list(value: &str) -> Result<Vec<Self>, RtspError> {
        let list: Vec<Self> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .take(16)
            .map(Transport::parse)
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err(RtspError::BadTransport {
                what: "empty Transport header",
            });
        }
        Ok(list)
    }
}

fn pair<T: Copy>(
    v: &str,
    parse: impl Fn(&str) -> Option<T>,
    next: impl Fn(T) -> Option<T>,
) -> Result<(T, T), RtspError> {
    let bad = RtspError::BadTransport {
        what: "invalid number range",
    };
    let (a, b) = match v.split_once('-') {
        Some((a, b)) => (parse(a.trim()), parse(b.trim())),
        None => {
            let a = parse(v);
            (a, a.and_then(&next))
        }
    };
    match (a, b) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(bad),
    }
}

fn port_pair(v: &str) -> Result<(u16, u16), RtspError> {
    pair(v, |s| s.parse::<u16>().ok(), |a| a.checked_add(1))
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.profile)?;
        if self.lower == LowerTransport::Tcp {
            f.write_str("/TCP")?;
        }
        f.write_str(if self.unicast {
            ";unicast"
        } else {
            ";multicast"
        })?;
        if let Some(d) = &self.destination {
            write!(f, ";destination={d}")?;
        }
        if let Some(s) = &self.source {
            write!(f, ";source={s}")?;
        }
        if let Some((a, b)) = self.interleaved {
            write!(f, ";interleaved={a}-{b}")?;
        }
        if let Some((a, b)) = self.client_port {
            write!(f, ";client_port={a}-{b}")?;
        }
        if let Some((a, b)) = self.server_port {
            write!(f, ";server_port={a}-{b}")?;
        }
        if let Some(s) = self.ssrc {
            write!(f, ";ssrc={s:08X}")?;
        }
        if self.record {
            f.write_str(";mode=record")?;
        }
        for o in &self.other {
            write!(f, ";{o}")?;
        }
        Ok(())
    }
}
