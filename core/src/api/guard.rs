//! API protection (`[api]`): control endpoints need a bearer token or livego's JWT; the
//! statistics (`/api/stat/*`, `/metrics`, livego's `/stat/livestat`) can stay open.
//!
//! A request proves itself with `Authorization: Bearer <token>` (the configured token,
//! compared in constant time) or, when a JWT secret is configured, a JSON Web Token signed with
//! HS256 under it, in `?jwt=` or as the bearer (livego's `jwt.secret`); `exp` and `nbf` are
//! checked when present. HMAC-SHA256 comes from the `hmac` and `sha2` crates the RTMP
//! handshake already uses. Pure: the engine passes the request and the wall clock.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::http::Request;
use crate::rtsp::auth::constant_time_eq;

/// What an endpoint is, for protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKind {
    /// Changes something (kick, relays, blacklist, room keys): always protected.
    Control,
    /// Reads statistics: protected when [`ApiGuard::protect_stats`] is on.
    Stats,
    /// Media, HLS, the web UI's files: never protected here.
    Open,
}

/// The API's protection settings (`[api]`); the default protects nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiGuard {
    /// The bearer token; empty = none.
    pub token: String,
    /// The HS256 secret of accepted JWTs; empty = no JWT.
    pub jwt_secret: String,
    /// Statistics need a token too.
    pub protect_stats: bool,
    /// The API has its own listener (`[api] addr`): the HTTP listener serves no API and no
    /// web UI.
    pub own_listener: bool,
}

impl ApiGuard {
    /// Whether any protection is configured.
    pub fn enabled(&self) -> bool {
        !self.token.is_empty() || !self.jwt_secret.is_empty()
    }

    /// Whether `req` to an endpoint of `kind` may go on at `unix_s` (seconds since the epoch).
    pub fn allows(&self, kind: ApiKind, req: &Request, unix_s: u64) -> bool {
        let protected = match kind {
            ApiKind::Control => true,
            ApiKind::Stats => self.protect_stats,
            ApiKind::Open => false,
        };
        if !protected || !self.enabled() {
            return true;
        }
        let bearer = req
            .header("Authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        if let Some(b) = bearer.filter(|_| !self.token.is_empty()) {
            if constant_time_eq(b.as_bytes(), self.token.as_bytes()) {
                return true;
            }
        }
        if self.jwt_secret.is_empty() {
            return false;
        }
        [req.query_param("jwt"), bearer]
            .into_iter()
            .flatten()
            .any(|jwt| verify_jwt(jwt, self.jwt_secret.as_bytes(), unix_s))
    }
}

/// Whether `jwt` is an HS256 token signed with `secret`, valid at `unix_s`.
pub fn verify_jwt(jwt: &str, secret: &[u8], unix_s: u64) -> bool {
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok();
    let (Some(header), Some(payload), Some(signature)) = (
        decode(header).as_deref().and_then(json),
        decode(payload),
        decode(signature),
    ) else {
        return false;
    };
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    let signed_len = jwt.len() - jwt.rsplit('.').next().map_or(0, str::len) - 1;
    mac.update(&jwt.as_bytes()[..signed_len]);
    if mac.verify_slice(&signature).is_err() {
        return false;
    }
    let Some(claims) = json(&payload) else {
        return false;
    };
    let time = |k: &str| claims.get(k).and_then(serde_json::Value::as_f64);
    let now = unix_s as f64;
    !time("exp").is_some_and(|exp| now >= exp) && !time("nbf").is_some_and(|nbf| now < nbf)
}

fn json(bytes: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice(bytes).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JWT signed with `secret`, made here independently of `verify_jwt`'s parsing.
    fn jwt(header: &str, claims: &str, secret: &[u8]) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
        mac.update(signed.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signed}.{sig}")
    }

    const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    #[test]
    fn jwts_are_checked_for_algorithm_signature_and_time() {
        // From jwt.io's HS256 example (secret "your-256-bit-secret").
        let known = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6\
                     IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        assert!(verify_jwt(known, b"your-256-bit-secret", 0));
        assert!(!verify_jwt(known, b"another secret", 0));
        let ok = jwt(HS256, r#"{"exp":2000,"nbf":1000}"#, b"s");
        assert!(verify_jwt(&ok, b"s", 1500));
        assert!(!verify_jwt(&ok, b"s", 2000), "expired");
        assert!(!verify_jwt(&ok, b"s", 999), "not yet");
        let none = jwt(r#"{"alg":"none"}"#, "{}", b"s");
        assert!(!verify_jwt(&none, b"s", 0));
        let mut tampered = jwt(HS256, r#"{"sub":"a"}"#, b"s");
        tampered.replace_range(40..41, "A");
        for bad in [&tampered[..], "", "a.b", "a.b.c.d", "....", "e30.e30.e30"] {
            assert!(!verify_jwt(bad, b"s", 0), "{bad}");
        }
    }

    fn request(auth: Option<&str>, query: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/x".into(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            version_minor: 1,
            headers: auth
                .map(|a| vec![("authorization".into(), a.to_owned())])
                .unwrap_or_default(),
            body: bytes::Bytes::new(),
        }
    }

    #[test]
    fn control_needs_the_token_or_a_jwt_and_stats_follow_the_switch() {
        let open = ApiGuard::default();
        assert!(open.allows(ApiKind::Control, &request(None, &[]), 0));
        let guard = ApiGuard {
            token: "t0k".into(),
            jwt_secret: "s".into(),
            protect_stats: false,
            own_listener: false,
        };
        let token = jwt(HS256, "{}", b"s");
        assert!(!guard.allows(ApiKind::Control, &request(None, &[]), 0));
        assert!(!guard.allows(ApiKind::Control, &request(Some("Bearer nope"), &[]), 0));
        assert!(!guard.allows(ApiKind::Control, &request(Some("t0k"), &[]), 0));
        assert!(guard.allows(ApiKind::Control, &request(Some("Bearer t0k"), &[]), 0));
        let bearer = format!("Bearer {token}");
        assert!(guard.allows(ApiKind::Control, &request(Some(&bearer), &[]), 0));
        assert!(guard.allows(ApiKind::Control, &request(None, &[("jwt", &token)]), 0));
        assert!(guard.allows(ApiKind::Stats, &request(None, &[]), 0));
        assert!(guard.allows(ApiKind::Open, &request(None, &[]), 0));
        let closed = ApiGuard {
            protect_stats: true,
            own_listener: false,
            jwt_secret: String::new(),
            ..guard
        };
        assert!(!closed.allows(ApiKind::Stats, &request(None, &[]), 0));
        assert!(closed.allows(ApiKind::Stats, &request(Some("Bearer t0k"), &[]), 0));
        assert!(!closed.allows(ApiKind::Control, &request(None, &[("jwt", &token)]), 0));
    }
}
