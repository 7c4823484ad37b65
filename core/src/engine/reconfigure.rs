//! A new configuration for a running engine (a reload, see [`crate::reload`]), and the answer
//! to `POST /api/ctrl/reload`.
//!
//! Nothing open is closed: sessions keep what they were set up with (an RTMP session its
//! chunk size, a publication its recording and HLS settings, a relay its URL), and the new
//! settings apply to what comes after: a new publisher or player is checked against the new
//! auth, a new pull tries the new origins, a new publish is pushed by the new rules, the next
//! webhook goes to the new receivers, the hub's bounds apply from the next packet on.

use super::http_conn::Ask;
use super::{ConnId, ConnKind, Engine, EngineConfig, HttpState, Output};
use crate::api::lal;
use crate::http::Response;
use crate::reload::ReloadOutcome;

/// lal-style error code of a refused reload (lal has no reload; its codes stop at 2001).
pub const ERROR_CODE_RELOAD_REFUSED: u32 = 2002;

impl Engine {
    /// Takes `config` as this engine's settings from now on. What identifies the engine and
    /// its streams stays as it was: its worker index and count, stream sharing, the RTSP wall
    /// clock, the working directory and the HLS settings (the segmenters keep theirs; HLS is
    /// among what a reload keeps until a restart).
    pub fn reconfigure(&mut self, config: EngineConfig, now_ms: u64) {
        let old = &self.config;
        let mut config = EngineConfig {
            worker: old.worker,
            workers: old.workers,
            share_streams: old.share_streams,
            hls: old.hls.clone(),
            ..config
        };
        config.rtsp.wallclock_offset_ms = old.rtsp.wallclock_offset_ms;
        self.hub.set_config(config.hub.clone());
        self.notify.set_config(config.webhook.clone());
        self.relay.set_config(config.relay.clone());
        config.webhook.cwd = std::mem::take(&mut self.config.webhook.cwd);
        self.config = config;
        self.drain_hub(now_ms);
    }

    /// Answers the [`Output::Reload`] of `conn`: lal's envelope with what changed
    /// (`data.applied`, `data.kept`), or the error that refused the new file.
    pub fn answer_reload(
        &mut self,
        conn: ConnId,
        result: Result<&ReloadOutcome, &str>,
        now_ms: u64,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnKind::Http { state, .. } = &mut c.kind else {
            return;
        };
        let HttpState::AwaitAnswer {
            keep_alive,
            head_only,
        } = *state
        else {
            return;
        };
        *state = HttpState::AwaitRequest;
        let json = match result {
            Ok(outcome) => serde_json::json!({
                "error_code": 0,
                "desp": "succ",
                "data": { "applied": outcome.applied, "kept": outcome.kept },
            })
            .to_string(),
            Err(e) => lal::error_json(ERROR_CODE_RELOAD_REFUSED, &format!("reload refused: {e}")),
        };
        let ask = Ask {
            keep_alive,
            head_only,
        };
        self.reply(conn, ask, Response::json(200, json), "api", now_ms);
        if keep_alive {
            self.drain_http(conn, now_ms);
            self.drain_hub(now_ms);
        }
    }

    /// Holds `conn`'s request for the runtime's reload ([`Output::Reload`]).
    pub(super) fn ask_reload(&mut self, conn: ConnId, ask: Ask) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if let ConnKind::Http { state, .. } = &mut c.kind {
                *state = HttpState::AwaitAnswer {
                    keep_alive: ask.keep_alive,
                    head_only: ask.head_only,
                };
                self.outputs.push_back(Output::Reload { conn });
            }
        }
    }
}
