//! The relay API: lal's `start_relay_pull`/`stop_relay_pull` (and `kick_session` for relays,
//! through [`Engine::relay_kick`]), rill's `start_relay_push`/`stop_relay_push`, and livego's
//! `/control/pull` and `/control/push`, answered from every worker's snapshot; a relay of
//! another worker is stopped by an [`Output::Command`] to that worker.

use super::{relay_protocol, PullOptions, RelayUrl, START_TIMEOUT_MS};
use crate::api::lal::{self, RelayPullRequest};
use crate::api::{livego, Query};
use crate::engine::conn_id::worker_of;
use crate::engine::{Command, ConnId, Engine, EngineStats, Output, Protocol, Role};
use crate::http::Response;
use crate::rtsp::transport::LowerTransport;
use crate::stream_key::StreamKey;

impl Engine {
    /// Answers the relay API's queries (`None` for any other query) from every engine's
    /// snapshot; acting on a relay of another worker goes out as an [`Output::Command`].
    pub(in crate::engine) fn relay_answer(
        &mut self,
        query: &Query,
        snapshots: &[EngineStats],
        now_ms: u64,
    ) -> Option<Response> {
        let response = match query {
            Query::StartRelayPull(r) => self.api_start_pull(r, snapshots, now_ms),
            Query::StopRelayPull(name) => self.api_stop_pull(name, snapshots),
            Query::StartRelayPush { stream_name, url } => {
                self.api_start_push(stream_name, url, snapshots, now_ms)
            }
            Query::StopRelayPush { stream_name, url } => {
                self.api_stop_push(stream_name, url, snapshots)
            }
            Query::Livego(c) => self.livego_control(c, snapshots, now_ms),
            _ => return None,
        };
        Some(response)
    }

    fn api_start_pull(
        &mut self,
        r: &RelayPullRequest,
        snapshots: &[EngineStats],
        now_ms: u64,
    ) -> Response {
        let key = match lal::pull_stream_key(&r.url, &r.stream_name) {
            Ok(k) => k,
            Err(why) => return lal::reply(lal::ERROR_CODE_START_RELAY_PULL_FAIL, &why),
        };
        let (mut url, query) = match RelayUrl::parse_stream(&r.url) {
            Ok(u) => u,
            Err(why) => return lal::reply(lal::ERROR_CODE_START_RELAY_PULL_FAIL, &why),
        };
        if let Some(why) = stream_busy(&key, snapshots, self.relay.pulls.contains_key(&key)) {
            return lal::reply(lal::ERROR_CODE_START_RELAY_PULL_FAIL, why);
        }
        // lal's rtsp_mode: 0 TCP, 1 UDP.
        if r.rtsp_mode == 1 && !url.scheme.tls() {
            url.rtsp_transport = LowerTransport::Udp;
        }
        let protocol = relay_protocol(url.scheme);
        let options = PullOptions::from_request(r);
        let id = self.pull_start(&key, Some((url, query)), options, now_ms);
        let session_id = lal::lal_session_id(id, protocol, Role::Pull);
        lal::pull_started(key.stream(), &session_id)
    }

    fn api_stop_pull(&mut self, name: &str, snapshots: &[EngineStats]) -> Response {
        let Some(found) = lal::find_relay(snapshots, name, Role::Pull) else {
            return lal::reply(lal::ERROR_CODE_GROUP_NOT_FOUND, "group not found");
        };
        let Some(session) = found else {
            return lal::reply(lal::ERROR_CODE_SESSION_NOT_FOUND, "session not found");
        };
        self.relay_command(session.conn, "stopped by the API");
        let id = lal::lal_session_id(session.conn, session.protocol, Role::Pull);
        lal::pull_stopped(&id)
    }

    /// Stops the relay `id` on whichever worker runs it.
    fn relay_command(&mut self, id: ConnId, reason: &str) {
        self.outputs.push_back(Output::Command {
            worker: worker_of(id),
            command: Command::Close {
                conn: id,
                reason: reason.to_owned(),
            },
        });
    }

    fn api_start_push(
        &mut self,
        stream_name: &str,
        url: &str,
        snapshots: &[EngineStats],
        now_ms: u64,
    ) -> Response {
        let key = match lal::stream_key_of(snapshots, stream_name) {
            Some(k)
                if self
                    .hub
                    .streams()
                    .any(|s| s.name == k.as_str() && s.publisher.is_some()) =>
            {
                k
            }
            _ => return lal::reply(lal::ERROR_CODE_GROUP_NOT_FOUND, "group not found"),
        };
        let started = RelayUrl::parse_stream(url).and_then(|(u, query)| {
            let protocol = relay_protocol(u.scheme);
            Ok((self.push_start(&key, u, true, &query, now_ms)?, protocol))
        });
        match started {
            Ok((id, protocol)) => {
                let session_id = lal::lal_session_id(id, protocol, Role::Push);
                lal::pull_started(key.stream(), &session_id)
            }
            Err(why) => lal::reply(lal::ERROR_CODE_START_RELAY_PULL_FAIL, &why),
        }
    }

    fn api_stop_push(
        &mut self,
        stream_name: &str,
        url: &str,
        snapshots: &[EngineStats],
    ) -> Response {
        let Some(found) = lal::find_relay(snapshots, stream_name, Role::Push) else {
            return lal::reply(lal::ERROR_CODE_GROUP_NOT_FOUND, "group not found");
        };
        if found.is_none() {
            return lal::reply(lal::ERROR_CODE_SESSION_NOT_FOUND, "session not found");
        }
        // Every push of the stream, or the ones to `url` when named (on any worker).
        let wanted = url.split('?').next().unwrap_or(url);
        let pushes: Vec<(ConnId, Protocol)> = lal::relays_of(snapshots, stream_name, Role::Push)
            .filter(|s| url.is_empty() || s.relay_url == wanted)
            .map(|s| (s.conn, s.protocol))
            .collect();
        for &(id, _) in &pushes {
            self.relay_command(id, "stopped by the API");
        }
        match pushes.first() {
            Some(&(id, protocol)) => {
                lal::pull_stopped(&lal::lal_session_id(id, protocol, Role::Push))
            }
            None => lal::reply(lal::ERROR_CODE_SESSION_NOT_FOUND, "session not found"),
        }
    }

    /// livego's `/control/pull` and `/control/push`.
    fn livego_control(
        &mut self,
        c: &livego::Control,
        snapshots: &[EngineStats],
        now_ms: u64,
    ) -> Response {
        let Some(key) = StreamKey::parse(&format!("{}/{}", c.app, c.name)) else {
            return livego::reply(400, livego::PARAM_ERROR);
        };
        if c.url.is_empty() {
            return livego::reply(400, livego::PARAM_ERROR);
        }
        let role = if c.pull { Role::Pull } else { Role::Push };
        if c.stop {
            let ids: Vec<ConnId> = lal::relays_of(snapshots, key.as_str(), role)
                .map(|s| s.conn)
                .collect();
            if ids.is_empty() {
                let what = if c.pull { "pull" } else { "push" };
                return livego::reply(
                    400,
                    &format!("session key[{what}:{key}] not exist, please check it again."),
                );
            }
            for id in ids {
                self.relay_command(id, "stopped by the API");
            }
            return livego::reply(200, &format!("{} url stop {} ok", role_word(c.pull), c.url));
        }
        let result = if c.pull {
            let busy = stream_busy(&key, snapshots, self.relay.pulls.contains_key(&key));
            match (RelayUrl::parse_stream(&c.url), busy) {
                (Err(why), _) => Err(why),
                (_, Some(why)) => Err(why.to_owned()),
                (Ok(url), None) => {
                    let options = PullOptions {
                        timeout_ms: START_TIMEOUT_MS,
                        retries: None,
                        auto_stop_ms: None,
                    };
                    self.pull_start(&key, Some(url), options, now_ms);
                    Ok(())
                }
            }
        } else if !self
            .hub
            .streams()
            .any(|s| s.name == key.as_str() && s.publisher.is_some())
        {
            Err(format!("stream {key} is not live"))
        } else {
            RelayUrl::parse_stream(&c.url)
                .and_then(|(u, query)| self.push_start(&key, u, true, &query, now_ms))
                .map(|_| ())
        };
        match result {
            Ok(()) => livego::reply(
                200,
                &format!("{} url start {} ok", role_word(c.pull), c.url),
            ),
            Err(why) => livego::reply(400, &format!("{} error={why}", role_word(c.pull))),
        }
    }
}

fn role_word(pull: bool) -> &'static str {
    if pull {
        "pull"
    } else {
        "push"
    }
}

/// Why `key` cannot be pulled now: it has a publisher or a pull on some worker.
fn stream_busy(
    key: &StreamKey,
    snapshots: &[EngineStats],
    pulled_here: bool,
) -> Option<&'static str> {
    let busy = pulled_here
        || snapshots
            .iter()
            .flat_map(|s| &s.sessions)
            .any(|s| s.stream == key.as_str() && matches!(s.role, Role::Publish | Role::Pull));
    busy.then_some("in stream already exist at group")
}
