//! The identity of a stream: an application name and a stream name, validated once.
//!
//! Every protocol names a stream with two path segments (`rtmp://host/{app}/{stream}`,
//! `http://host/{app}/{stream}.flv`, `rtsp://host/{app}/{stream}`). A [`StreamKey`] holds both
//! in one shared `app/stream` string, so cloning it (into the hub, HLS, broadcasts to other
//! engines) costs a reference count, and its parts are read without splitting again.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Longest accepted application or stream name, in bytes.
const MAX_SEGMENT_LEN: usize = 128;

/// Checks one path segment of a stream name (`app` or `stream`): 1 to 128 printable ASCII
/// bytes, not starting with `.`, without `/ \ ? # % "` (so it is safe in file paths and URLs).
pub fn valid_name_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SEGMENT_LEN
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'\\' | b'?' | b'#' | b'%' | b'"'))
}

/// A stream's `app` and `stream` names, both valid name segments; cheap to clone.
///
/// Equality, ordering and hashing are those of the `app/stream` string, so maps keyed by
/// `StreamKey` can be looked up with a `&str` of that form.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamKey {
    /// `app/stream`.
    full: Arc<str>,
    /// Where the `/` is in `full`.
    split: usize,
}

impl StreamKey {
    /// The key for `app` and `stream`, if both are acceptable names.
    pub fn new(app: &str, stream: &str) -> Option<StreamKey> {
        (valid_name_segment(app) && valid_name_segment(stream)).then(|| StreamKey {
            full: Arc::from(format!("{app}/{stream}")),
            split: app.len(),
        })
    }

    /// The key for a path of the form `app/stream`.
    pub fn parse(path: &str) -> Option<StreamKey> {
        let (app, stream) = path.split_once('/')?;
        StreamKey::new(app, stream)
    }

    /// The application name.
    pub fn app(&self) -> &str {
        &self.full[..self.split]
    }

    /// The stream name within the application.
    pub fn stream(&self) -> &str {
        &self.full[self.split + 1..]
    }

    /// `app/stream`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl Hash for StreamKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that `Borrow<str>` lookups find the key.
        self.as_str().hash(state);
    }
}

impl Borrow<str> for StreamKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// A key reads as its `app/stream` string (file paths, logs, maps keyed by `str`).
impl std::ops::Deref for StreamKey {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for StreamKey {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for StreamKey {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for StreamKey {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn parts_come_back_without_splitting_again() {
        let k = StreamKey::new("live", "cam-1").expect("valid");
        assert_eq!(
            (k.app(), k.stream(), k.as_str()),
            ("live", "cam-1", "live/cam-1")
        );
        assert_eq!(k.to_string(), "live/cam-1");
        assert_eq!(StreamKey::parse("live/cam-1"), Some(k.clone()));
        let mut m = HashMap::new();
        m.insert(k, 1);
        assert_eq!(m.get("live/cam-1"), Some(&1));
    }

    #[test]
    fn invalid_names_are_refused() {
        for (app, stream) in [
            ("", "s"),
            ("live", ""),
            ("..", "s"),
            ("live", ".hidden"),
            ("live", "a/b"),
            ("li ve", "s"),
            ("live", "s?x"),
            ("live", "s%20"),
        ] {
            assert_eq!(StreamKey::new(app, stream), None, "{app:?} {stream:?}");
        }
        assert_eq!(StreamKey::parse("live"), None);
        assert_eq!(StreamKey::parse("live/a/b"), None);
        assert!(StreamKey::new("a", &"s".repeat(128)).is_some());
        assert!(StreamKey::new("a", &"s".repeat(129)).is_none());
    }
}
