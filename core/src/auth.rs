//! Publish and play authorization compatible with lal's "simple auth".
//!
//! A client proves it may publish or play a stream by putting `lal_secret=<hex>` in the query of
//! its URL, where `<hex>` is the lowercase hex MD5 of the configured key followed by the stream
//! name: the last part of `app/stream`, without the app and without the query. For
//! `rtmp://host/live/test110?lal_secret=...` with key `q191201771` that is
//! `md5("q191201771test110")` = `700997e1595a06c9ffa60ebef79105b0`. Operators coming from lal keep
//! their URL signing unchanged.
//!
//! Each protocol and direction is switched on on its own ([`SimpleAuth`]); one that is off lets
//! everyone through. A configured dangerous secret is accepted for every stream (lal's
//! `dangerous_lal_secret`). [`SimpleAuth::check_query`] is pure: the engine calls it where a
//! publish or play is decided and refuses the request when it errs.

use std::fmt;

use md5::{Digest as _, Md5};

use crate::http::decode_query;
use crate::rtsp::auth::constant_time_eq;

/// The name of the query parameter carrying the secret.
pub const SECRET_PARAM: &str = "lal_secret";

/// A protocol and direction that can require the secret (or the HTTP callback's consent). In
/// the config, its snake_case name (`publish_rtmp`, `play_hls`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Publishing over RTMP.
    PublishRtmp,
    /// Publishing over RTSP (ANNOUNCE).
    PublishRtsp,
    /// Playing over RTMP.
    PlayRtmp,
    /// Playing over HTTP-FLV or WebSocket-FLV, or fMP4 over HTTP or WebSocket.
    PlayHttpFlv,
    /// Playing over HTTP-TS or WebSocket-TS.
    PlayHttpTs,
    /// Fetching an HLS playlist (segments are not checked).
    PlayHls,
    /// Playing over RTSP (DESCRIBE).
    PlayRtsp,
}

impl Access {
    /// Every access, publishes first.
    pub const ALL: [Access; 7] = [
        Access::PublishRtmp,
        Access::PublishRtsp,
        Access::PlayRtmp,
        Access::PlayHttpFlv,
        Access::PlayHttpTs,
        Access::PlayHls,
        Access::PlayRtsp,
    ];

    /// Whether it is a publish (else a play).
    pub fn is_publish(self) -> bool {
        matches!(self, Access::PublishRtmp | Access::PublishRtsp)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::PublishRtmp => "RTMP publish",
            Access::PublishRtsp => "RTSP publish",
            Access::PlayRtmp => "RTMP play",
            Access::PlayHttpFlv => "HTTP-FLV play",
            Access::PlayHttpTs => "HTTP-TS play",
            Access::PlayHls => "HLS playlist",
            Access::PlayRtsp => "RTSP play",
        })
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The query has no (or an empty) `lal_secret`.
    MissingSecret,
    /// The `lal_secret` given is neither the stream's nor the dangerous secret.
    WrongSecret,
    /// The query does not decode (bad percent escape).
    BadQuery(&'static str),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::MissingSecret => write!(f, "no {SECRET_PARAM} in the URL query"),
            AuthError::WrongSecret => write!(f, "wrong {SECRET_PARAM}"),
            AuthError::BadQuery(what) => write!(f, "URL query does not decode: {what}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// lal-style simple auth: the key, the dangerous secret, and which accesses need a secret.
/// The default requires nothing. It is also the config's `[auth]` section, key for key.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimpleAuth {
    /// Key hashed in front of the stream name.
    pub key: String,
    /// A secret accepted for every stream (lal's `dangerous_lal_secret`); empty = none.
    pub dangerous_secret: String,
    /// Check RTMP publishers (lal: `pub_rtmp_enable`).
    pub publish_rtmp: bool,
    /// Check RTSP publishers (lal: `pub_rtsp_enable`).
    pub publish_rtsp: bool,
    /// Check RTMP players (lal: `sub_rtmp_enable`).
    pub play_rtmp: bool,
    /// Check HTTP-FLV and WS-FLV players, and fMP4 ones (lal: `sub_httpflv_enable`).
    pub play_http_flv: bool,
    /// Check HTTP-TS and WS-TS players (lal: `sub_httpts_enable`).
    pub play_http_ts: bool,
    /// Check HLS playlist requests (lal: `hls_m3u8_enable`).
    pub play_hls: bool,
    /// Check RTSP players (lal: `sub_rtsp_enable`).
    pub play_rtsp: bool,
}

impl SimpleAuth {
    /// Whether `access` needs a secret.
    pub fn requires(&self, access: Access) -> bool {
        match access {
            Access::PublishRtmp => self.publish_rtmp,
            Access::PublishRtsp => self.publish_rtsp,
            Access::PlayRtmp => self.play_rtmp,
            Access::PlayHttpFlv => self.play_http_flv,
            Access::PlayHttpTs => self.play_http_ts,
            Access::PlayHls => self.play_hls,
            Access::PlayRtsp => self.play_rtsp,
        }
    }

    /// Whether any access needs a secret.
    pub fn any_required(&self) -> bool {
        self.publish_rtmp
            || self.publish_rtsp
            || self.play_rtmp
            || self.play_http_flv
            || self.play_http_ts
            || self.play_hls
            || self.play_rtsp
    }

    /// The secret of `stream` (the stream name without app or query): lowercase hex of
    /// MD5(key + stream).
    pub fn secret_of(&self, stream: &str) -> String {
        let mut h = Md5::new();
        h.update(self.key.as_bytes());
        h.update(stream.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks `access` to `stream` (the stream name, without app or query) given the raw URL
    /// `query` (after `?`, without it; may be empty). The first `lal_secret` counts.
    pub fn check_query(&self, access: Access, stream: &str, query: &str) -> Result<(), AuthError> {
        if !self.requires(access) {
            return Ok(());
        }
        let params = decode_query(query).map_err(AuthError::BadQuery)?;
        let secret = params
            .iter()
            .find(|(k, _)| k == SECRET_PARAM)
            .map(|(_, v)| v.as_str());
        self.check(access, stream, secret)
    }

    /// Checks `access` to `stream` given the decoded `lal_secret` value, if any. The hex may be
    /// in either case; the dangerous secret must match exactly.
    pub fn check(
        &self,
        access: Access,
        stream: &str,
        secret: Option<&str>,
    ) -> Result<(), AuthError> {
        if !self.requires(access) {
            return Ok(());
        }
        let given = secret
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::MissingSecret)?;
        if !self.dangerous_secret.is_empty()
            && constant_time_eq(given.as_bytes(), self.dangerous_secret.as_bytes())
        {
            return Ok(());
        }
        let expected = self.secret_of(stream);
        if constant_time_eq(given.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(AuthError::WrongSecret)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every access on, with the key of lal's documentation.
    fn all_on() -> SimpleAuth {
        SimpleAuth {
            key: "q191201771".into(),
            publish_rtmp: true,
            publish_rtsp: true,
            play_rtmp: true,
            play_http_flv: true,
            play_http_ts: true,
            play_hls: true,
            play_rtsp: true,
            ..SimpleAuth::default()
        }
    }

    const ALL: [Access; 7] = [
        Access::PublishRtmp,
        Access::PublishRtsp,
        Access::PlayRtmp,
        Access::PlayHttpFlv,
        Access::PlayHttpTs,
        Access::PlayHls,
        Access::PlayRtsp,
    ];

    #[test]
    fn secrets_are_md5_hex_of_key_and_stream() {
        // Computed with `printf %s KEYSTREAM | md5sum`.
        assert_eq!(
            all_on().secret_of("test110"),
            "700997e1595a06c9ffa60ebef79105b0"
        );
        let a = SimpleAuth {
            key: "s3cr3t".into(),
            ..SimpleAuth::default()
        };
        assert_eq!(a.secret_of("test"), "72b87ea6bc6e876876ae073ed0014b46");
        assert_eq!(a.secret_of("cam1"), "0f4e17eb9e437b8e55908a80d3cb8c7b");
        assert_eq!(a.secret_of(""), "a4d80eac9ab26a4a2da04125bc2c096a");
    }

    #[test]
    fn the_right_secret_passes_every_access() {
        let a = all_on();
        for access in ALL {
            assert_eq!(
                a.check_query(
                    access,
                    "test110",
                    "lal_secret=700997e1595a06c9ffa60ebef79105b0"
                ),
                Ok(()),
                "{access}"
            );
        }
    }

    #[test]
    fn wrong_or_missing_secrets_are_refused() {
        let a = all_on();
        let other_stream = a.secret_of("test111");
        for access in ALL {
            assert_eq!(
                a.check_query(access, "test110", &format!("lal_secret={other_stream}")),
                Err(AuthError::WrongSecret)
            );
            assert_eq!(
                a.check_query(access, "test110", ""),
                Err(AuthError::MissingSecret)
            );
            assert_eq!(
                a.check_query(access, "test110", "lal_secret="),
                Err(AuthError::MissingSecret)
            );
            assert_eq!(
                a.check_query(access, "test110", "secret=700997e1595a06c9ffa60ebef79105b0"),
                Err(AuthError::MissingSecret)
            );
        }
        // Truncated, and longer than the hex.
        let q = "lal_secret=700997e1595a06c9ffa60ebef79105b";
        assert_eq!(
            a.check_query(Access::PlayRtmp, "test110", q),
            Err(AuthError::WrongSecret)
        );
        let q = "lal_secret=700997e1595a06c9ffa60ebef79105b00";
        assert_eq!(
            a.check_query(Access::PlayRtmp, "test110", q),
            Err(AuthError::WrongSecret)
        );
        // The secret of `live/test110` as a whole is not the secret of the stream.
        let with_app = a.secret_of("live/test110");
        assert_eq!(
            a.check(Access::PlayRtmp, "test110", Some(&with_app)),
            Err(AuthError::WrongSecret)
        );
        assert!(matches!(
            a.check_query(Access::PlayRtmp, "test110", "lal_secret=%zz"),
            Err(AuthError::BadQuery(_))
        ));
    }

    #[test]
    fn hex_case_does_not_matter() {
        let a = all_on();
        let q = "lal_secret=700997E1595A06C9FFA60EBEF79105B0";
        assert_eq!(a.check_query(Access::PublishRtmp, "test110", q), Ok(()));
    }

    #[test]
    fn other_parameters_are_ignored_and_the_first_secret_counts() {
        let a = all_on();
        let good = "700997e1595a06c9ffa60ebef79105b0";
        for q in [
            format!("token=x&lal_secret={good}&b=2"),
            format!("a=1&&lal_secret={good}"),
            format!("lal_secret={good}&lal_secret=nope"),
            format!("lal%5Fsecret={good}"),
        ] {
            assert_eq!(a.check_query(Access::PlayHls, "test110", &q), Ok(()), "{q}");
        }
        let q = format!("lal_secret=nope&lal_secret={good}");
        assert_eq!(
            a.check_query(Access::PlayHls, "test110", &q),
            Err(AuthError::WrongSecret)
        );
    }

    #[test]
    fn the_dangerous_secret_passes_every_stream_when_set() {
        let mut a = all_on();
        assert_eq!(
            a.check_query(Access::PlayRtsp, "any", "lal_secret=pengrl"),
            Err(AuthError::WrongSecret)
        );
        a.dangerous_secret = "pengrl".into();
        for stream in ["any", "test110", ""] {
            assert_eq!(
                a.check_query(Access::PlayRtsp, stream, "lal_secret=pengrl"),
                Ok(())
            );
        }
        assert_eq!(
            a.check_query(Access::PlayRtsp, "any", "lal_secret=PENGRL"),
            Err(AuthError::WrongSecret)
        );
        // An empty dangerous secret never matches an empty value.
        a.dangerous_secret.clear();
        assert_eq!(
            a.check_query(Access::PlayRtsp, "any", "lal_secret"),
            Err(AuthError::MissingSecret)
        );
    }

    #[test]
    fn accesses_switched_off_need_nothing() {
        let off = SimpleAuth {
            key: "k".into(),
            ..SimpleAuth::default()
        };
        assert!(!off.any_required());
        for access in ALL {
            assert_eq!(off.check_query(access, "s", ""), Ok(()));
            assert_eq!(off.check_query(access, "s", "lal_secret=wrong"), Ok(()));
            // Off means not even parsed: a broken query does not refuse.
            assert_eq!(off.check_query(access, "s", "lal_secret=%zz"), Ok(()));
        }
        // One switch on leaves the others open.
        let one = SimpleAuth {
            play_http_flv: true,
            ..off
        };
        assert!(one.any_required());
        assert_eq!(
            one.check_query(Access::PlayHttpFlv, "s", ""),
            Err(AuthError::MissingSecret)
        );
        assert_eq!(one.check_query(Access::PlayHttpTs, "s", ""), Ok(()));
        assert_eq!(one.check_query(Access::PublishRtmp, "s", ""), Ok(()));
    }
}
