//! RTSP authentication: `Basic` (RFC 7617) and `Digest` with MD5 (RFC 2617, with or without
//! `qop=auth`, as RTSP clients and cameras use it).
//!
//! Server side: send [`Challenge::to_header`] in `WWW-Authenticate` with a 401, then check the
//! next request's `Authorization` with [`Authorization::parse`] and [`Authorization::verify`].
//! Client side: parse the server's challenge with [`Challenge::parse`] and answer with
//! [`Challenge::authorization`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use md5::{Digest as _, Md5};

use super::RtspError;

/// Longest header value parsed.
const MAX_AUTH_LEN: usize = 4096;

fn bad(what: &'static str) -> RtspError {
    RtspError::BadAuth { what }
}

/// Splits `k=v, k="quoted, \"v\""` auth parameters; keys lowercased.
fn parse_params(s: &str) -> Result<Vec<(String, String)>, RtspError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(bad("auth parameter without '='"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => value.push(chars.next().ok_or(bad("unterminated quote"))?),
                    Some(c) => value.push(c),
                    None => return Err(bad("unterminated quote")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        if out.len() >= 32 {
            return Err(bad("too many auth parameters"));
        }
        out.push((key.to_ascii_lowercase(), value));
    }
    Ok(out)
}

fn get<'a>(params: &'a [(String, String)], k: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

fn scheme(value: &str) -> Result<(&str, &str), RtspError> {
    if value.len() > MAX_AUTH_LEN {
        return Err(bad("header too long"));
    }
    let value = value.trim();
    Ok(value
        .split_once(char::is_whitespace)
        .map_or((value, ""), |(s, r)| (s, r.trim())))
}

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The Digest `response` value (RFC 2617 section 3.2.2 with MD5): with `qop=auth`, `nc` and
/// `cnonce` are included, otherwise the RFC 2069 form is used.
#[allow(clippy::too_many_arguments)]
pub fn digest_response(
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let ha1 = md5_hex(&[username, realm, password]);
    let ha2 = md5_hex(&[method, uri]);
    match qop {
        Some((nc, cnonce)) => md5_hex(&[&ha1, nonce, nc, cnonce, "auth", &ha2]),
        None => md5_hex(&[&ha1, nonce, &ha2]),
    }
}

/// Compares without an early exit, so timing does not tell how much of a guess was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The fields of a Digest `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestAuthorization {
    /// User name.
    pub username: String,
    /// Realm, as the challenge gave it.
    pub realm: String,
    /// Nonce, as the challenge gave it (the server checks it is one it issued).
    pub nonce: String,
    /// The URI the response was computed over.
    pub uri: String,
    /// The response hash (hex).
    pub response: String,
    /// `qop` (`auth`) if used, with `nc` and `cnonce`.
    pub qop: Option<(String, String)>,
    /// `opaque`, echoed from the challenge.
    pub opaque: Option<String>,
}

/// A parsed `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorization {
    /// Basic: user name and password.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// Digest.
    Digest(DigestAuthorization),
}

impl Authorization {
    /// Parses an `Authorization` header value.
    pub fn parse(value: &str) -> Result<Self, RtspError> {
        let (s, rest) = scheme(value)?;
        if s.eq_ignore_ascii_case("Basic") {
            let raw = STANDARD
                .decode(rest.trim())
                .map_err(|_| bad("Basic credentials are not base64"))?;
            let text = String::from_utf8(raw).map_err(|_| bad("Basic credentials not UTF-8"))?;
            let (u, p) = text
                .split_once(':')
                .ok_or(bad("Basic credentials without ':'"))?;
            return Ok(Authorization::Basic {
                username: u.to_owned(),
                password: p.to_owned(),
            });
        }
        if !s.eq_ignore_ascii_case("Digest") {
            return Err(bad("scheme is neither Basic nor Digest"));
        }
        let params = parse_params(rest)?;
        let field = |k: &str, what| get(&params, k).map(str::to_owned).ok_or(bad(what));
        if let Some(alg) = get(&params, "algorithm") {
            if !alg.eq_ignore_ascii_case("MD5") {
                return Err(bad("Digest algorithm is not MD5"));
            }
        }
        let qop = match get(&params, "qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some((
                field("nc", "Digest qop without nc")?,
                field("cnonce", "Digest qop without cnonce")?,
            )),
            Some(_) => return Err(bad("Digest qop is not auth")),
        };
        Ok(Authorization::Digest(DigestAuthorization {
            username: field("username", "Digest without username")?,
            realm: field("realm", "Digest without realm")?,
            nonce: field("nonce", "Digest without nonce")?,
            uri: field("uri", "Digest without uri")?,
            response: field("response", "Digest without response")?,
            qop,
            opaque: get(&params, "opaque").map(str::to_owned),
        }))
    }

    /// The user name.
    pub fn username(&self) -> &str {
        match self {
            Authorization::Basic { username, .. } => username,
            Authorization::Digest(d) => &d.username,
        }
    }

    /// Checks the credentials against `password` for a request with `method`. For Digest the
    /// caller also checks that `realm` and `nonce` are the ones it issued.
    pub fn verify(&self, method: &str, password: &str) -> bool {
        match self {
            Authorization::Basic { password: p, .. } => {
                constant_time_eq(p.as_bytes(), password.as_bytes())
            }
            Authorization::Digest(d) => {
                let expected = digest_response(
                    &d.username,
                    &d.realm,
                    password,
                    method,
                    &d.uri,
                    &d.nonce,
                    d.qop.as_ref().map(|(nc, c)| (nc.as_str(), c.as_str())),
                );
                constant_time_eq(
                    expected.as_bytes(),
                    d.response.to_ascii_lowercase().as_bytes(),
                )
            }
        }
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Basic, with its realm.
    Basic {
        /// Realm.
        realm: String,
    },
    /// Digest (MD5).
    Digest {
        /// Realm.
        realm: String,
        /// Server nonce.
        nonce: String,
        /// Opaque value to echo.
        opaque: Option<String>,
        /// The server offers `qop=auth`.
        qop_auth: bool,
    },
}

impl Challenge {
    /// The header value to send.
    pub fn to_header(&self) -> String {
        match self {
            Challenge::Basic { realm } => format!("Basic realm=\"{}\"", quote(realm)),
            Challenge::Digest {
                realm,
                nonce,
                opaque,
                qop_auth,
            } => {
                let mut s = format!(
                    "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5",
                    quote(realm),
                    quote(nonce)
                );
                if let Some(o) = opaque {
                    s.push_str(&format!(", opaque=\"{}\"", quote(o)));
                }
                if *qop_auth {
                    s.push_str(", qop=\"auth\"");
                }
                s
            }
        }
    }

    /// Parses a `WWW-Authenticate` value (one challenge).
    pub fn parse(value: &str) -> Result<Self, RtspError> {
        let (s, rest) = scheme(value)?;
        let params = parse_params(rest)?;
        let realm = get(&params, "realm").unwrap_or_default().to_owned();
        if s.eq_ignore_ascii_case("Basic") {
            return Ok(Challenge::Basic { realm });
        }
        if !s.eq_ignore_ascii_case("Digest") {
            return Err(bad("scheme is neither Basic nor Digest"));
        }
        if let Some(alg) = get(&params, "algorithm") {
            if !alg.eq_ignore_ascii_case("MD5") {
                return Err(bad("Digest algorithm is not MD5"));
            }
        }
        Ok(Challenge::Digest {
            realm,
            nonce: get(&params, "nonce")
                .ok_or(bad("Digest challenge without nonce"))?
                .to_owned(),
            opaque: get(&params, "opaque").map(str::to_owned),
            qop_auth: get(&params, "qop")
                .is_some_and(|q| q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth"))),
        })
    }

    /// The `Authorization` value answering this challenge for a request. `cnonce` is used only
    /// when the server offered `qop=auth` (`nc` is then `00000001`; the caller picks a random
    /// cnonce).
    pub fn authorization(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> String {
        match self {
            Challenge::Basic { .. } => format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{password}"))
            ),
            Challenge::Digest {
                realm,
                nonce,
                opaque,
                qop_auth,
            } => {
                let qop = qop_auth.then_some(("00000001", cnonce));
                let response = digest_response(username, realm, password, method, uri, nonce, qop);
                let mut s = format!(
                    "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\"",
                    quote(username),
                    quote(realm),
                    quote(nonce),
                    quote(uri)
                );
                if let Some((nc, c)) = qop {
                    s.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{}\"", quote(c)));
                }
                if let Some(o) = opaque {
                    s.push_str(&format!(", opaque=\"{}\"", quote(o)));
                }
                s
            }
        }
    }
}
