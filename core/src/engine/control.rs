//! The control API's own state: lal's IP blacklist and livego's room keys.
//!
//! **Blacklist** (`POST /api/ctrl/add_ip_blacklist {"ip","duration_sec"}`): every worker is
//! told ([`Command::BlockIp`]) and refuses connections from the address at accept, whatever
//! the protocol, until the time is up. Connections already open stay.
//!
//! **Room keys** (livego's `/control/get|reset|delete?room=`): a room has a secret key; with
//! [`RoomKeyConfig::enable`] a publisher (RTMP or RTSP) publishes to `{app}/{key}` and the
//! stream is `{app}/{room}`, which players play (a name that is no key is refused). A change is made by
//! the engine that got the request, told to every other worker ([`Command::RoomKey`]) and
//! written by the runtime to [`RoomKeyConfig::file`] ([`Output::WriteFile`]); at start the
//! runtime reads that file back into [`RoomKeyConfig::keys`], so keys survive a restart.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use bytes::Bytes;

use super::command::Command;
use super::http_conn::Ask;
use super::routes::RoomOp;
use super::{ConnId, Engine, Output};
use crate::api::{lal, livego};
use crate::http::Request;

/// Characters of a room key (livego's: letters and digits).
const KEY_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Length of a room key (livego's).
const KEY_LEN: usize = 48;

/// Room keys (`[api] room_keys`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomKeyConfig {
    /// Publishers publish with the room's key, players play the room's name.
    pub enable: bool,
    /// Where the runtime keeps the keys (JSON `{"room":"key"}`); empty = not kept.
    pub file: String,
    /// The keys at start (read by the runtime from [`RoomKeyConfig::file`]).
    pub keys: Vec<(String, String)>,
    /// Secret bytes new keys are made with (the runtime's entropy; the engine's own random
    /// bytes also go in, but they are seen in RTMP handshakes and cannot be the secret).
    pub secret: Vec<u8>,
}

/// Parses a keys file (`{"room":"key",...}`).
pub fn room_keys_from_json(text: &str) -> Result<Vec<(String, String)>, String> {
    let map: BTreeMap<String, String> =
        serde_json::from_str(text).map_err(|e| format!("room keys: {e}"))?;
    Ok(map.into_iter().collect())
}

/// The blacklist and the room keys of one engine.
#[derive(Debug, Default)]
pub(super) struct ControlState {
    /// Addresses refused at accept, until when.
    blocked: HashMap<IpAddr, u64>,
    /// Room → key.
    rooms: BTreeMap<String, String>,
    /// Keys made so far.
    made: u64,
}

impl ControlState {
    pub(super) fn new(config: &RoomKeyConfig) -> Self {
        ControlState {
            blocked: HashMap::new(),
            rooms: config.keys.iter().cloned().collect(),
            made: 0,
        }
    }

    /// Whether connections from `ip` are refused at `now_ms`.
    pub(super) fn is_blocked(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.blocked.get(&ip).is_some_and(|&until| until > now_ms)
    }

    /// The room whose key is `key`.
    pub(super) fn room_of_key(&self, key: &str) -> Option<&str> {
        self.rooms
            .iter()
            .find(|(_, k)| k.as_str() == key)
            .map(|(room, _)| room.as_str())
    }

    fn to_json(&self) -> String {
        serde_json::to_string(&self.rooms).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// lal's `add_ip_blacklist` body.
#[derive(serde::Deserialize)]
struct BlacklistBody {
    ip: String,
    duration_sec: u64,
}

impl Engine {
    /// `POST /api/ctrl/add_ip_blacklist`: every worker refuses `ip` for `duration_sec`.
    pub(super) fn add_ip_blacklist(&mut self, conn: ConnId, req: &Request, ask: Ask, now_ms: u64) {
        let parsed = serde_json::from_slice::<BlacklistBody>(&req.body)
            .ok()
            .and_then(|b| Some((b.ip.trim().parse::<IpAddr>().ok()?, b.duration_sec)));
        let response = match parsed {
            Some((ip, secs)) => {
                let duration_ms = secs.saturating_mul(1000);
                for worker in 0..self.config.workers.max(1) {
                    self.outputs.push_back(Output::Command {
                        worker,
                        command: Command::BlockIp { ip, duration_ms },
                    });
                }
                lal::reply(lal::ERROR_CODE_SUCC, "succ")
            }
            None => lal::reply(lal::ERROR_CODE_PARAM_MISSING, "param missing"),
        };
        self.reply(conn, ask, response, "api", now_ms);
    }

    /// [`Command::BlockIp`].
    pub(super) fn block_ip(&mut self, ip: IpAddr, duration_ms: u64, now_ms: u64) {
        self.control.blocked.retain(|_, until| *until > now_ms);
        self.control
            .blocked
            .insert(ip, now_ms.saturating_add(duration_ms));
    }

    /// Whether a connection from `ip` is refused at accept.
    pub(super) fn ip_blocked(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.control.is_blocked(ip, now_ms)
    }

    /// livego's `/control/get|reset|delete?room=`.
    pub(super) fn room_key_request(
        &mut self,
        conn: ConnId,
        req: &Request,
        op: RoomOp,
        ask: Ask,
        now_ms: u64,
    ) {
        let room = req.query_param("room").unwrap_or_default().to_owned();
        let name = match op {
            RoomOp::Get => "get",
            RoomOp::Reset => "reset",
            RoomOp::Delete => "delete",
        };
        if room.is_empty() || room.contains('/') {
            let usage = format!("url: /control/{name}?room=<ROOM_NAME>");
            return self.reply(conn, ask, livego::reply(400, &usage), "api", now_ms);
        }
        let existing = self.control.rooms.get(&room).cloned();
        let (response, change) = match (op, existing) {
            (RoomOp::Get, Some(key)) => (livego::reply(200, &key), None),
            (RoomOp::Get | RoomOp::Reset, _) => {
                let key = self.new_room_key();
                (livego::reply(200, &key), Some(Some(key)))
            }
            (RoomOp::Delete, Some(_)) => (livego::reply(200, "Ok"), Some(None)),
            (RoomOp::Delete, None) => (livego::reply(404, "room not found"), None),
        };
        if let Some(key) = change {
            self.set_room_key(&room, key.clone());
            for worker in (0..self.config.workers.max(1)).filter(|&w| w != self.config.worker) {
                self.outputs.push_back(Output::Command {
                    worker,
                    command: Command::RoomKey {
                        room: room.clone(),
                        key: key.clone(),
                    },
                });
            }
            let file = &self.config.room_keys.file;
            if !file.is_empty() {
                self.outputs.push_back(Output::WriteFile {
                    path: file.clone(),
                    data: vec![Bytes::from(self.control.to_json())],
                });
            }
        }
        self.reply(conn, ask, response, "api", now_ms);
    }

    /// Sets (or with `None` removes) the key of `room` ([`Command::RoomKey`]).
    pub(super) fn set_room_key(&mut self, room: &str, key: Option<String>) {
        match key {
            Some(key) => self.control.rooms.insert(room.to_owned(), key),
            None => self.control.rooms.remove(room),
        };
    }

    /// The stream name a publisher's `name` stands for: itself without room keys, else the
    /// room whose key it is (`None`: no such key).
    pub(super) fn publish_name(&self, name: &str) -> Option<String> {
        if !self.config.room_keys.enable {
            return Some(name.to_owned());
        }
        self.control.room_of_key(name).map(str::to_owned)
    }

    /// A new key: HMAC-SHA256 under the runtime's secret of a counter and fresh random bytes,
    /// two blocks, mapped to letters and digits.
    fn new_room_key(&mut self) -> String {
        use hmac::{Hmac, Mac};
        self.control.made = self.control.made.wrapping_add(1);
        let salt = self.random_bytes(16);
        let mut bytes = Vec::with_capacity(64);
        for block in 0u8..2 {
            let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&self.config.room_keys.secret)
            else {
                break;
            };
            mac.update(&self.control.made.to_le_bytes());
            mac.update(&salt);
            mac.update(&[block]);
            bytes.extend_from_slice(&mac.finalize().into_bytes());
        }
        bytes
            .iter()
            .take(KEY_LEN)
            .map(|b| char::from(KEY_ALPHABET[usize::from(*b) % KEY_ALPHABET.len()]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_files_round_trip() {
        let mut state = ControlState::default();
        state.rooms.insert("a \"room\"".into(), "k1".into());
        state.rooms.insert("b".into(), "k2".into());
        let keys = room_keys_from_json(&state.to_json()).expect("parses");
        assert_eq!(
            keys,
            [
                ("a \"room\"".into(), "k1".into()),
                ("b".into(), "k2".into())
            ]
        );
        assert!(room_keys_from_json("[1]").is_err());
        assert_eq!(state.room_of_key("k2"), Some("b"));
        assert_eq!(state.room_of_key("b"), None);
    }
}
