//! What a configuration reload changes: which settings apply to the running server at once and
//! which stay as they are until a restart.
//!
//! A runtime reads the new file (on SIGHUP or `POST /api/ctrl/reload`), validates it and asks
//! [`plan`] what to do with it. Settings that a running server can take without closing any
//! session (auth, webhooks, relays, limits, hub bounds, recording switches, RTMP/RTSP session
//! settings, `[tls]` certificates, the log level) are applied: to new sessions, and to the
//! engines' policies from then on. Settings that name sockets or threads (listen addresses,
//! listeners switched on or off, workers, RTSP's UDP ports, debug dumps, the log format) and the
//! HLS segmenters' settings are reported and kept: the plan's config carries their old values, so
//! what runs always matches one consistent config.

use crate::config::Config;

/// What [`plan`] decided: the config to run from now on and the names of the settings that
/// changed, applied or kept.
#[derive(Clone, Debug, PartialEq)]
pub struct ReloadPlan {
    /// The new config with every kept setting set back to its running value.
    pub config: Config,
    /// The outcome to report.
    pub outcome: ReloadOutcome,
}

/// What a reload did, as logged and answered by the API: names of settings (sections or
/// `section.key`), never their values (keys and passwords stay out of logs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Changed and applied without a restart.
    pub applied: Vec<String>,
    /// Changed in the file but kept as they run until a restart.
    pub kept: Vec<String>,
}

impl std::fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "nothing".to_owned()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "applied: {}; kept until a restart: {}",
            list(&self.applied),
            list(&self.kept)
        )
    }
}

/// Compares the running config `old` with a validated `new` one: what applies live, what is
/// kept (set back to `old`'s value in the returned config).
pub fn plan(old: &Config, new: Config) -> ReloadPlan {
    let mut next = new;
    let mut outcome = ReloadOutcome::default();
    // A setting that needs a restart: reported, and set back to what runs.
    macro_rules! keep {
        ($name:literal, $($field:tt)+) => {
            if next.$($field)+ != old.$($field)+ {
                next.$($field)+ = old.$($field)+.clone();
                outcome.kept.push($name.to_owned());
            }
        };
    }
    // A setting that applies live: reported.
    macro_rules! live {
        ($name:literal, $($field:tt)+) => {
            if next.$($field)+ != old.$($field)+ {
                outcome.applied.push($name.to_owned());
            }
        };
    }
    keep!("workers", workers);
    keep!("rtmp.enable", rtmp.enable);
    keep!("rtmp.addr", rtmp.addr);
    keep!("http.enable", http.enable);
    keep!("http.addr", http.addr);
    keep!("rtsp.enable", rtsp.enable);
    keep!("rtsp.addr", rtsp.addr);
    keep!("rtsp.udp_port_min", rtsp.udp_port_min);
    keep!("rtsp.udp_port_max", rtsp.udp_port_max);
    keep!("rtmps", rtmps);
    keep!("https", https);
    keep!("rtsps", rtsps);
    keep!("dump", dump);
    keep!("hls", hls);
    keep!("log.format", log.format);
    keep!("api.addr", api.addr);
    keep!("api.room_keys", api.room_keys);
    keep!("api.room_keys_file", api.room_keys_file);
    keep!("cluster", cluster);
    if next.tls.configured() != old.tls.configured() {
        // TLS switched on or off: its listeners start or stop only with the process.
        next.tls = old.tls.clone();
        outcome.kept.push("tls (on/off)".to_owned());
    }
    live!("rtmp", rtmp);
    live!("http.ui", http.ui);
    live!("rtsp", rtsp);
    live!("auth", auth);
    live!("api", api);
    live!("hub", hub);
    live!("limits", limits);
    live!("record", record);
    live!("webhook", webhook);
    live!("relay", relay);
    live!("tls", tls);
    live!("log.level", log.level);
    if outcome.applied.is_empty() && next != *old {
        // A section this list does not name yet: it goes to the engines like the rest.
        outcome.applied.push("other settings".to_owned());
    }
    ReloadPlan {
        config: next,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        Config::from_toml(toml).expect("valid config")
    }

    #[test]
    fn live_settings_apply_and_sockets_are_kept() {
        let old = config("[rtmp]\naddr = \"127.0.0.1:1935\"\n");
        let new = config(
            "workers = 3\n[rtmp]\naddr = \"127.0.0.1:1936\"\nchunk_size = 8192\n\
             [auth]\nkey = \"k\"\npublish_rtmp = true\n[limits]\nmax_connections = 10\n\
             [relay.pull]\norigins = [\"rtmp://10.0.0.1\"]\n[log]\nlevel = \"debug\"\n\
             format = \"json\"\n[hls]\nfragment_ms = 4000\n",
        );
        let p = plan(&old, new.clone());
        assert_eq!(
            p.outcome.applied,
            ["rtmp", "auth", "limits", "relay", "log.level"]
        );
        assert_eq!(
            p.outcome.kept,
            ["workers", "rtmp.addr", "hls", "log.format"]
        );
        assert_eq!(p.config.rtmp.addr, "127.0.0.1:1935", "the listener stays");
        assert_eq!(p.config.workers, old.workers);
        assert_eq!(p.config.hls, old.hls);
        assert_eq!(p.config.rtmp.chunk_size, 8192);
        assert_eq!(p.config.auth, new.auth);
        assert_eq!(p.config.relay, new.relay);
        assert_eq!(p.config.log.level, "debug");
        assert_eq!(
            p.outcome.to_string(),
            "applied: rtmp, auth, limits, relay, log.level; kept until a restart: workers, \
             rtmp.addr, hls, log.format"
        );
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let old = config("[auth]\nkey = \"k\"\n");
        let p = plan(&old, old.clone());
        assert_eq!(p.outcome, ReloadOutcome::default());
        assert_eq!(p.config, old);
        assert_eq!(
            p.outcome.to_string(),
            "applied: nothing; kept until a restart: nothing"
        );
    }

    #[test]
    fn the_api_token_applies_and_the_cluster_and_api_listener_are_kept() {
        let old = config("");
        let new = config(
            "[api]\ntoken = \"t\"\naddr = \"127.0.0.1:8083\"\n\
             [cluster]\nredis = \"redis://127.0.0.1:6379/0\"\nadvertise = \"rtmp://10.0.0.1:1935\"\n",
        );
        let p = plan(&old, new);
        assert_eq!(p.outcome.applied, ["api"]);
        assert_eq!(p.outcome.kept, ["api.addr", "cluster"]);
        assert_eq!(p.config.api.token, "t");
        assert_eq!(p.config.api.addr, old.api.addr);
        assert_eq!(p.config.cluster, old.cluster);
    }

    #[test]
    fn tls_switched_on_is_kept_off() {
        let old = Config::default();
        let new = config("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
        let p = plan(&old, new);
        assert_eq!(p.outcome.kept, ["tls (on/off)"]);
        assert!(p.outcome.applied.is_empty());
        assert!(!p.config.tls.configured());
    }
}
