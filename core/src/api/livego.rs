//! livego's relay control API: `/control/pull` and `/control/push` with
//! `oper=start|stop&app=&name=&url=`, answered in livego's shape (`{"status": .., "data": ..}`,
//! `status` also the HTTP status). One difference, documented in the README: a successful stop
//! answers 200 where livego answers 400. Also livego's statistics (`/stat/livestat`,
//! [`livestat_json`]) and the shape of its room-key answers ([`reply`]).

use serde::Serialize;

use crate::engine::{EngineStats, Role};
use crate::http::Response;

/// livego's answer to a request without `app`, `name` or `url`.
pub const PARAM_ERROR: &str = "control push parameter error, please check them.";

/// A `/control/pull` or `/control/push` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    /// `/control/pull` (pull `url` into `app/name`) rather than `/control/push` (push `app/name`
    /// to `url`).
    pub pull: bool,
    /// `oper=stop` (anything else starts, as in livego).
    pub stop: bool,
    /// The app here.
    pub app: String,
    /// The stream here.
    pub name: String,
    /// The other server's URL, naming the stream.
    pub url: String,
}

/// livego's answer: `status` as the HTTP status and in the body, `data` a message.
pub fn reply(status: u16, data: &str) -> Response {
    let body = serde_json::json!({ "status": status, "data": data }).to_string();
    Response::json(status, body)
}

/// One publisher or player in livego's `/stat/livestat`.
#[derive(Serialize)]
struct LiveStream<'a> {
    key: &'a str,
    url: String,
    stream_id: u32,
    video_total_bytes: u64,
    video_speed: u64,
    audio_total_bytes: u64,
    audio_speed: u64,
}

/// livego's `/stat/livestat` answer from every engine's snapshot:
/// `{"status":200,"data":{"publishers":[..],"players":[..]}}`. rill does not count audio and
/// video bytes apart: a session's bytes (received for a publisher, sent for a player) and
/// rate (bytes per ms, livego's unit) are given as video, audio as 0. `url` is the stream's
/// path; `stream_id` the low bits of the session's connection id.
pub fn livestat_json(snapshots: &[EngineStats]) -> String {
    let mut publishers = Vec::new();
    let mut players = Vec::new();
    for s in snapshots.iter().flat_map(|s| &s.sessions) {
        let (bytes, kbits, list) = match s.role {
            Role::Publish | Role::Pull => (s.bytes_in, s.read_kbits, &mut publishers),
            Role::Play | Role::Push => (s.bytes_out, s.write_kbits, &mut players),
            Role::None => continue,
        };
        list.push(LiveStream {
            key: &s.stream,
            url: format!("/{}", s.stream),
            stream_id: s.conn as u32,
            video_total_bytes: bytes,
            video_speed: kbits / 8,
            audio_total_bytes: 0,
            audio_speed: 0,
        });
    }
    serde_json::json!({
        "status": 200,
        "data": { "publishers": publishers, "players": players },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_have_livegos_shape() {
        let r = reply(400, PARAM_ERROR);
        assert_eq!(r.status, 400);
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(v["status"], 400);
        assert_eq!(v["data"], PARAM_ERROR);
    }
}
