//! Answers that need every engine, and commands for the engine that owns a connection.
//!
//! A request whose answer depends on every engine of the process (the statistics API,
//! `/metrics`, kicking a session) goes out as [`Output::Gather`]: the runtime hands
//! [`Engine::answer`] the [`EngineStats`] of every engine, and the request's connection reads
//! nothing more until then. An answer that acts on a connection goes out as [`Output::Command`]
//! addressed to the worker that owns it ([`worker_of`]); the runtime delivers it to that
//! worker's [`Engine::handle_command`], whichever engine asked.

use super::conn_id::worker_of;
use super::http_conn::Ask;
use super::{ConnId, ConnKind, Engine, EngineStats, HttpState, Output, Query};
use crate::api;

/// Something one engine asks of the engine that owns a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Close `conn` (a publisher's players stay for the grace period, as when it leaves).
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, for its session end record.
        reason: String,
    },
    /// Players on another worker wait for or play `key`, which this worker pulls on demand
    /// ([`super::relay::pull_owner`]): pull it if it is not live, and keep pulling.
    RelayWant {
        /// The stream.
        key: crate::stream_key::StreamKey,
    },
    /// Refuse connections from `ip` at accept for `duration_ms` (lal's `add_ip_blacklist`;
    /// sent to every worker).
    BlockIp {
        /// The address.
        ip: std::net::IpAddr,
        /// For how long (ms).
        duration_ms: u64,
    },
    /// Another worker changed the key of `room` (`None`: deleted; livego's room keys).
    RoomKey {
        /// The room.
        room: String,
        /// Its key.
        key: Option<String>,
    },
}

impl Engine {
    /// Asks the runtime for every engine's snapshot to answer `query` on `conn`.
    pub(super) fn gather(&mut self, conn: ConnId, query: Query, ask: Ask) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if let ConnKind::Http { state, .. } = &mut c.kind {
                *state = HttpState::AwaitAnswer {
                    keep_alive: ask.keep_alive,
                    head_only: ask.head_only,
                };
                self.outputs.push_back(Output::Gather { conn, query });
            }
        }
    }

    /// Answers an [`Output::Gather`] of `conn` from `snapshots` (one per engine of the
    /// process, this engine's among them, fresh or at most a few seconds old), then reads the
    /// connection's next request if it stays open. A kick goes out as an [`Output::Command`].
    pub fn answer(&mut self, conn: ConnId, query: &Query, snapshots: &[EngineStats], now_ms: u64) {
        if self.answer_gather(conn, snapshots, now_ms) {
            return;
        }
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
        let answer = match self.relay_answer(query, snapshots, now_ms) {
            Some(response) => api::Answer {
                response,
                close: None,
            },
            None => api::answer(query, snapshots),
        };
        if let Some(target) = answer.close {
            self.outputs.push_back(Output::Command {
                worker: worker_of(target),
                command: Command::Close {
                    conn: target,
                    reason: "kicked by the API".to_owned(),
                },
            });
        }
        let ask = Ask {
            keep_alive,
            head_only,
        };
        self.reply(conn, ask, answer.response, "api", now_ms);
        if keep_alive {
            // Requests pipelined behind this one waited in the reader.
            self.drain_http(conn, now_ms);
            self.drain_hub(now_ms);
        }
    }

    /// Executes a command addressed to this engine ([`Output::Command`]); a connection it does
    /// not know (gone meanwhile) is ignored.
    pub fn handle_command(&mut self, command: Command, now_ms: u64) {
        match command {
            Command::Close { conn, reason } => {
                if !self.relay_kick(conn, &reason, now_ms) {
                    self.close(conn, true, &reason, now_ms);
                }
            }
            Command::RelayWant { key } => self.relay_remote_want(&key, now_ms),
            Command::BlockIp { ip, duration_ms } => self.block_ip(ip, duration_ms, now_ms),
            Command::RoomKey { room, key } => self.set_room_key(&room, key),
        }
        self.drain_hub(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::conn_id::conn_id;
    use crate::engine::http_conn::head_tests::publish;
    use crate::engine::{EngineConfig, Listener};

    #[test]
    fn a_kick_on_one_engine_closes_a_publisher_on_another() {
        let mut engines = [
            Engine::new(EngineConfig::default(), 1),
            Engine::new(EngineConfig::default(), 2),
        ];
        let publisher = conn_id(1, 5);
        publish(&mut engines[1], publisher, "s");
        let api = conn_id(0, 9);
        engines[0].handle_accept(api, Listener::Http, "127.0.0.1:40002".parse().unwrap(), 10);
        let body = format!(r#"{{"stream_name":"s","session_id":"RTMPPUBSUB{publisher}"}}"#);
        let request = format!(
            "POST /api/ctrl/kick_session HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        engines[0].handle_input(api, request.as_bytes(), 10);

        // Run both engines as a runtime would: gather answers from every engine's snapshot,
        // deliver commands to the worker named.
        let mut commands = 0;
        let mut closed = Vec::new();
        for _ in 0..4 {
            for i in 0..engines.len() {
                while let Some(out) = engines[i].poll_output() {
                    match out {
                        Output::Gather { conn, query } => {
                            let snaps: Vec<_> = engines.iter_mut().map(|e| e.stats(10)).collect();
                            engines[i].answer(conn, &query, &snaps, 10);
                        }
                        Output::Command { worker, command } => {
                            commands += 1;
                            engines[worker].handle_command(command, 11);
                        }
                        Output::Close { conn, .. } => closed.push(conn),
                        _ => {}
                    }
                }
            }
        }
        assert_eq!(commands, 1);
        assert_eq!(closed, vec![publisher], "only the publisher closes");
        assert_eq!(engines[1].hub().stream_of_publisher(publisher), None);
        let mut out = Vec::new();
        engines[0].poll_transmit(api, usize::MAX, &mut out);
        let text = String::from_utf8_lossy(&out.concat()).into_owned();
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(
            text.ends_with(r#"{"error_code":0,"desp":"succ","data":null}"#),
            "{text}"
        );

        // Kicking it again: lal's "group not found" (the stream has no session left), and
        // nothing is closed.
        engines[0].handle_input(api, request.as_bytes(), 20);
        let mut outputs = Vec::new();
        while let Some(out) = engines[0].poll_output() {
            if let Output::Gather { conn, query } = out {
                let snaps: Vec<_> = engines.iter_mut().map(|e| e.stats(20)).collect();
                engines[0].answer(conn, &query, &snaps, 20);
            } else {
                outputs.push(out);
            }
        }
        assert!(
            !outputs.iter().any(|o| matches!(o, Output::Command { .. })),
            "{outputs:?}"
        );
        let mut out = Vec::new();
        engines[0].poll_transmit(api, usize::MAX, &mut out);
        let text = String::from_utf8_lossy(&out.concat()).into_owned();
        assert!(text.contains(r#""error_code":1001"#), "{text}");
    }
}
