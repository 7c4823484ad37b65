//! Reload without a drop: SIGHUP (or `POST /api/ctrl/reload`) reads the config file again and
//! applies what can change live, in both runtimes.
//!
//! One [`Reloader`] per process holds the running [`Config`] and what a reload touches outside
//! the engines: the TLS certificates, the log filter and the connection limits. A reload reads
//! the file with the same command line overrides, validates it (a file that does not parse or
//! validate, a directory that cannot be written, a bad log level or certificates that do not
//! load refuse the whole reload: the running config stays), asks [`rill_core::reload::plan`]
//! what applies live and what is kept until a restart, then applies it: certificates for new
//! handshakes, the log level, the connection limits, and the new engine settings handed to
//! every worker's engine ([`rill_core::engine::Engine::reconfigure`]) through the runtime's own
//! channels. No session is closed. The outcome (or the refusal) is one log line.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use rill_core::config::Config;
use rill_core::engine::EngineConfig;
use rill_core::reload::{plan, ReloadOutcome};
use tracing::{info, warn};

use crate::admission::Admission;
use crate::tls::TlsConfig;
use crate::{check_out_paths, engine_config, Cli, LogFilter};

/// Hands new engine settings to every worker's engine.
pub type Deliver = Box<dyn Fn(&EngineConfig) + Send>;

/// The process's reload path (cheap to clone: one shared state).
#[derive(Clone)]
pub struct Reloader {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reloader")
    }
}

struct State {
    cli: Cli,
    config: Config,
    workers: usize,
    log: Option<LogFilter>,
    /// Set by the runtime once its workers exist; reloads before that are refused.
    running: Option<Running>,
}

/// What the runtime hands over once it serves.
struct Running {
    tls: Option<TlsConfig>,
    admission: Admission,
    deliver: Deliver,
}

impl Reloader {
    /// The reload path of a process started from `cli` with `config` (validated) and `workers`
    /// workers, logging through `log` (its level is reloaded; `None`: logging is not ours).
    pub fn new(cli: Cli, config: Config, workers: usize, log: Option<LogFilter>) -> Reloader {
        Reloader {
            state: Arc::new(Mutex::new(State {
                cli,
                config,
                workers,
                log,
                running: None,
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A reload that panicked left a whole state (it is replaced field by field at the end).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The runtime serves: from now on reloads reload `tls` (the listeners' certificates, if
    /// any), set `admission`'s limits and `deliver` the new engine settings to every worker.
    pub fn attach(&self, tls: Option<TlsConfig>, admission: Admission, deliver: Deliver) {
        self.state().running = Some(Running {
            tls,
            admission,
            deliver,
        });
    }

    /// Reloads the config file now (`why`: "SIGHUP", "API"), logging what changed or why the
    /// new file was refused.
    pub fn reload(&self, why: &str) -> Result<ReloadOutcome, String> {
        let result = self.state().reload();
        match &result {
            Ok(outcome) => info!("reload ({why}): {outcome}"),
            Err(e) => warn!("reload ({why}) refused, the running configuration stays: {e}"),
        }
        result
    }

    /// Starts the thread that reloads on every SIGHUP (from the moment this returns, SIGHUP no
    /// longer ends the process).
    pub fn watch_sighup(&self) -> io::Result<()> {
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
        let this = self.clone();
        std::thread::Builder::new()
            .name("rill-reload".into())
            .spawn(move || {
                for _ in signals.forever() {
                    let _ = this.reload("SIGHUP");
                }
            })?;
        Ok(())
    }
}

impl State {
    fn reload(&mut self) -> Result<ReloadOutcome, String> {
        let running = self
            .running
            .as_ref()
            .ok_or("the server is still starting")?;
        let new = self.cli.load_config()?;
        let mut plan = plan(&self.config, new);
        let next = &plan.config;
        check_out_paths(next)?;
        let level = tracing_subscriber::EnvFilter::try_new(&next.log.level)
            .map_err(|e| format!("log.level {:?}: {e}", next.log.level))?;
        if let Some(tls) = &running.tls {
            // The last check that can fail: once the certificates are swapped, all applies.
            tls.reload_section(&next.tls)?;
            if !plan.outcome.applied.iter().any(|a| a == "tls") {
                plan.outcome.applied.push("tls certificates".to_owned());
            }
        }
        if let Some(log) = &self.log {
            if let Some(i) = plan.outcome.applied.iter().position(|a| a == "log.level") {
                if log.from_env {
                    plan.outcome.applied.remove(i);
                    plan.outcome
                        .kept
                        .push("log.level (RUST_LOG is set)".to_owned());
                } else if let Err(e) = log.handle.reload(level) {
                    warn!("cannot change the log level: {e}");
                }
            }
        }
        if next.limits.max_connections != self.config.limits.max_connections {
            crate::fd_limit::raise_open_file_limit(next.limits.max_connections);
        }
        running.admission.set_limits(next.connection_limits());
        (running.deliver)(&engine_config(next, self.workers));
        self.config = plan.config;
        Ok(plan.outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::admission::ConnectionLimits;

    #[test]
    fn a_reload_delivers_what_changed_and_a_bad_file_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("rill-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rill.toml");
        std::fs::write(&path, "[auth]\nkey = \"a\"\n").unwrap();
        let cli = Cli {
            config: Some(path.clone()),
            ..Cli::default()
        };
        let config = cli.load_config().unwrap();
        let reloader = Reloader::new(cli, config, 2, None);
        assert_eq!(
            reloader.reload("test").unwrap_err(),
            "the server is still starting"
        );

        let delivered = Arc::new(Mutex::new(Vec::new()));
        let sink = delivered.clone();
        let admission = Admission::new(ConnectionLimits::default());
        reloader.attach(
            None,
            admission.clone(),
            Box::new(move |c: &EngineConfig| sink.lock().unwrap().push(c.clone())),
        );
        std::fs::write(
            &path,
            "workers = 7\n[auth]\nkey = \"b\"\n[limits]\nmax_connections = 1\n",
        )
        .unwrap();
        let outcome = reloader.reload("test").unwrap();
        assert_eq!(outcome.applied, ["auth", "limits"]);
        assert_eq!(outcome.kept, ["workers"]);
        {
            let got = delivered.lock().unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].auth.key, "b");
            assert_eq!(got[0].workers, 2, "the running worker count");
        }
        let _first = admission.admit("127.0.0.1".parse().unwrap()).unwrap();
        assert!(
            admission.admit("127.0.0.2".parse().unwrap()).is_err(),
            "the new connection limit applies"
        );

        std::fs::write(&path, "[auth\n").unwrap();
        let e = reloader.reload("test").unwrap_err();
        assert!(e.contains("TOML parse error"), "{e}");
        assert_eq!(delivered.lock().unwrap().len(), 1, "nothing delivered");
        // The same file again: nothing changed since the last good one.
        std::fs::write(
            &path,
            "workers = 7\n[auth]\nkey = \"b\"\n[limits]\nmax_connections = 1\n",
        )
        .unwrap();
        let outcome = reloader.reload("test").unwrap();
        assert!(outcome.applied.is_empty(), "{outcome}");
        assert_eq!(outcome.kept, ["workers"], "still differs from what runs");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
