//! Request routing: a table of routes (a method set and a path pattern leading to a target the
//! caller defines) looked up by method and path, telling "no such path" (404) apart from "not
//! with this method" (405, with the methods to put in `Allow`).
//!
//! A pattern is a path of `/`-separated segments, each one of:
//! - a literal, matched exactly: `api`, `record.m3u8`;
//! - a capture `{name}`, optionally followed by a literal suffix: `{stream}.flv` matches
//!   `cam.flv` and captures `cam` as `stream` (a capture is never empty);
//! - `*` as the last segment: the rest of the path, zero or more segments (static files).
//!
//! Routes are tried in table order and the first whose pattern and method match wins, so an
//! exact route listed before a capturing one takes precedence over it.

use smallvec::SmallVec;

/// A set of request methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Methods(u8);

impl Methods {
    /// No method.
    pub const NONE: Methods = Methods(0);
    /// `GET`.
    pub const GET: Methods = Methods(1);
    /// `HEAD`.
    pub const HEAD: Methods = Methods(2);
    /// `POST`.
    pub const POST: Methods = Methods(4);
    /// `OPTIONS`.
    pub const OPTIONS: Methods = Methods(8);
    /// Every method known here.
    pub const ALL: Methods = Methods(15);
    /// `GET` and `HEAD`: what can be read.
    pub const READ: Methods = Methods::GET.with(Methods::HEAD);

    const NAMES: [(Methods, &'static str); 4] = [
        (Methods::GET, "GET"),
        (Methods::HEAD, "HEAD"),
        (Methods::POST, "POST"),
        (Methods::OPTIONS, "OPTIONS"),
    ];

    /// Both sets.
    pub const fn with(self, other: Methods) -> Methods {
        Methods(self.0 | other.0)
    }

    /// The method named `method` (case-sensitive, as methods are), `None` for others.
    pub fn of(method: &str) -> Option<Methods> {
        Methods::NAMES
            .iter()
            .find(|(_, name)| *name == method)
            .map(|(m, _)| *m)
    }

    /// Whether every method of `other` is in this set.
    pub fn contains(self, other: Methods) -> bool {
        self.0 & other.0 == other.0
    }

    /// The set as an `Allow` header value: `GET, HEAD, OPTIONS`.
    pub fn allow_header(self) -> String {
        let names: Vec<&str> = Methods::NAMES
            .iter()
            .filter(|(m, _)| self.contains(*m))
            .map(|(_, name)| *name)
            .collect();
        names.join(", ")
    }
}

/// One entry of a routing table.
#[derive(Debug)]
pub struct Route<T> {
    /// The methods the route answers.
    pub methods: Methods,
    /// The path pattern, see the module docs.
    pub pattern: &'static str,
    /// What the caller does with a request that matches.
    pub target: T,
}

/// What a pattern captured from a path.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params<'p> {
    captures: SmallVec<[(&'static str, &'p str); 4]>,
    rest: &'p [&'p str],
}

impl<'p> Params<'p> {
    /// The value captured as `{name}`.
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.captures
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// The segments matched by a final `*` (empty without one).
    pub fn rest(&self) -> &'p [&'p str] {
        self.rest
    }
}

/// The outcome of [`route`].
#[derive(Debug, PartialEq, Eq)]
pub enum Routed<'r, 'p, T> {
    /// A route matches path and method.
    Found {
        /// Its target.
        target: &'r T,
        /// What its pattern captured.
        params: Params<'p>,
    },
    /// Routes match the path, none with this method: answer 405 with these in `Allow`.
    MethodNotAllowed(Methods),
    /// No route matches the path: 404.
    NotFound,
}

/// Looks `method` and the path `segments` (from [`super::split_path`]) up in `routes`.
pub fn route<'r, 'p, T>(
    routes: &'r [Route<T>],
    method: &str,
    segments: &'p [&'p str],
) -> Routed<'r, 'p, T> {
    let method = Methods::of(method);
    let mut allowed = Methods::NONE;
    for r in routes {
        let Some(params) = matches(r.pattern, segments) else {
            continue;
        };
        if method.is_some_and(|m| r.methods.contains(m)) {
            return Routed::Found {
                target: &r.target,
                params,
            };
        }
        allowed = allowed.with(r.methods);
    }
    if allowed == Methods::NONE {
        Routed::NotFound
    } else {
        Routed::MethodNotAllowed(allowed)
    }
}

/// What `pattern` captures from `segments`, if it matches them.
fn matches<'p>(pattern: &'static str, segments: &'p [&'p str]) -> Option<Params<'p>> {
    let mut params = Params::default();
    let mut pat = pattern.strip_prefix('/').unwrap_or(pattern).split('/');
    let mut i = 0;
    loop {
        match (pat.next().filter(|p| !p.is_empty()), segments.get(i)) {
            (None, None) => return Some(params),
            (Some("*"), _) => {
                params.rest = segments.get(i..).unwrap_or_default();
                return Some(params);
            }
            (Some(p), Some(seg)) => {
                match p.strip_prefix('{').and_then(|p| p.split_once('}')) {
                    Some((name, suffix)) => {
                        let value = seg.strip_suffix(suffix).filter(|v| !v.is_empty())?;
                        params.captures.push((name, value));
                    }
                    None if p == *seg => {}
                    None => return None,
                }
                i += 1;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[Route<u8>] = &[
        Route {
            methods: Methods::READ,
            pattern: "/api/stat/group",
            target: 1,
        },
        Route {
            methods: Methods::POST,
            pattern: "/api/ctrl/kick",
            target: 2,
        },
        Route {
            methods: Methods::READ,
            pattern: "/{app}/{stream}.flv",
            target: 3,
        },
        Route {
            methods: Methods::READ,
            pattern: "/{app}/{stream}/{seq}.ts",
            target: 4,
        },
        Route {
            methods: Methods::GET,
            pattern: "/ui/*",
            target: 5,
        },
        Route {
            methods: Methods::POST,
            pattern: "/{app}/{stream}.flv",
            target: 6,
        },
    ];

    fn found<'p>(method: &str, segments: &'p [&'p str]) -> Option<(u8, Params<'p>)> {
        match route(ROUTES, method, segments) {
            Routed::Found { target, params } => Some((*target, params)),
            _ => None,
        }
    }

    #[test]
    fn literals_and_captures_with_suffixes() {
        let (t, p) = found("GET", &["api", "stat", "group"]).unwrap();
        assert_eq!((t, p.get("app")), (1, None));
        let (t, p) = found("HEAD", &["live", "cam.flv"]).unwrap();
        assert_eq!(
            (t, p.get("app"), p.get("stream")),
            (3, Some("live"), Some("cam"))
        );
        let (t, p) = found("GET", &["live", "cam", "17.ts"]).unwrap();
        assert_eq!((t, p.get("seq")), (4, Some("17")));
        // A capture is never empty; the suffix must be there.
        assert_eq!(route(ROUTES, "GET", &["live", ".flv"]), Routed::NotFound);
        assert_eq!(route(ROUTES, "GET", &["live", "cam.ts"]), Routed::NotFound);
        assert_eq!(route(ROUTES, "GET", &["live"]), Routed::NotFound);
        assert_eq!(route(ROUTES, "GET", &[]), Routed::NotFound);
        assert_eq!(
            route(ROUTES, "GET", &["api", "stat", "group", "x"]),
            Routed::NotFound
        );
    }

    #[test]
    fn the_rest_of_a_path_after_a_star() {
        let (t, p) = found("GET", &["ui", "js", "app.js"]).unwrap();
        assert_eq!((t, p.rest()), (5, &["js", "app.js"][..]));
        let (_, p) = found("GET", &["ui"]).unwrap();
        assert!(p.rest().is_empty());
    }

    #[test]
    fn a_known_path_with_another_method_is_405_with_every_allowed_method() {
        assert_eq!(
            route(ROUTES, "GET", &["api", "ctrl", "kick"]),
            Routed::MethodNotAllowed(Methods::POST)
        );
        // The first route with the method wins, later ones with the same pattern count too.
        assert_eq!(found("POST", &["live", "cam.flv"]).map(|f| f.0), Some(6));
        assert_eq!(
            route(ROUTES, "PUT", &["live", "cam.flv"]),
            Routed::MethodNotAllowed(Methods::READ.with(Methods::POST))
        );
        assert_eq!(
            Methods::READ.with(Methods::OPTIONS).allow_header(),
            "GET, HEAD, OPTIONS"
        );
        assert_eq!(Methods::of("get"), None, "methods are case-sensitive");
    }
}
