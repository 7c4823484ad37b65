//! HTTP-FLV pulls: `GET {origin}/{app}/{stream}.flv` with the relay marker in the query; the
//! answer's body is read as an FLV stream ([`FlvDemuxer`]) whose tags feed the pull's
//! publication exactly as RTMP messages do (they are the same payloads). Anything but a 200
//! answer, a broken stream or its end is a failed attempt, retried with the relay backoff.
//!
//! Buffers are bounded: the HTTP session holds at most the response head, the demuxer at
//! most one tag (no larger than [`Limits::max_message_len`]).

use bytes::Bytes;

use super::{Client, Link, Owner, RelayUrl, RELAY_PARAM};
use crate::engine::{ConnId, Engine};
use crate::flv::{FlvDemuxer, TagType};
use crate::http::client::{ClientEvent, ClientLimits, ClientRequest, ClientSession};
use crate::limits::Limits;
use crate::rtmp::command::DataMessage;
use crate::rtmp::message_type;
use crate::stream_key::StreamKey;

/// The client side of one HTTP-FLV pull.
#[derive(Debug)]
pub(in crate::engine) struct FlvPull {
    http: ClientSession,
    demuxer: FlvDemuxer,
}

/// What one input gave, in order.
enum Step {
    /// The origin answered 200: the stream follows.
    Started,
    Tag(crate::flv::Tag),
    Failed(String),
}

/// The request path of `name` under `origin`: `/{path}/{name}.flv?rill_relay=1` (an origin
/// path already ending in `.flv` names the stream itself when `name` is empty).
fn request_path(origin: &RelayUrl, name: &str) -> String {
    let path = origin.full_path(name);
    let ext = if path.ends_with(".flv") { "" } else { ".flv" };
    format!("/{path}{ext}?{RELAY_PARAM}=1")
}

impl Engine {
    /// Opens an HTTP-FLV pull of `key` from `origin`.
    pub(super) fn flv_pull_open(
        &mut self,
        origin: &RelayUrl,
        key: &StreamKey,
        now_ms: u64,
    ) -> Result<ConnId, String> {
        let request = ClientRequest {
            method: "GET".to_owned(),
            host: origin.authority(),
            path: request_path(origin, key.as_str()),
            headers: vec![
                ("User-Agent".to_owned(), "rill".to_owned()),
                ("Accept".to_owned(), "video/x-flv".to_owned()),
            ],
            body: Bytes::new(),
        };
        let http =
            ClientSession::new(&request, ClientLimits::default()).map_err(|e| e.to_string())?;
        let pull = FlvPull {
            http,
            demuxer: FlvDemuxer::new(Limits::default().max_message_len),
        };
        let owner = Owner::Pull(key.clone());
        Ok(self.insert_link(origin, Client::Flv(Box::new(pull)), owner, now_ms))
    }

    /// Bytes from the origin of an HTTP-FLV pull.
    pub(super) fn flv_input(&mut self, conn: ConnId, data: &[u8], now_ms: u64) {
        let Some(Link {
            client: Client::Flv(f),
            owner: Owner::Pull(key),
            ..
        }) = self.relay.links.get_mut(&conn)
        else {
            return;
        };
        let key = key.clone();
        let steps = f.read(data);
        for step in steps {
            if !self.relay.links.contains_key(&conn) {
                break;
            }
            let Some(id) = self.relay.pulls.get(&key).map(|p| p.id) else {
                break;
            };
            match step {
                Step::Started => self.pull_started(conn, &key, None, now_ms),
                Step::Tag(tag) => match tag.tag_type {
                    TagType::Video => {
                        self.on_rtmp_media(id, message_type::VIDEO, tag.timestamp, tag.body)
                    }
                    TagType::Audio => {
                        self.on_rtmp_media(id, message_type::AUDIO, tag.timestamp, tag.body)
                    }
                    TagType::Script => {
                        let depth = Limits::default().max_amf_depth;
                        let data = DataMessage::decode(&tag.body, false, depth);
                        if let Some(value) = data.as_ref().ok().and_then(DataMessage::metadata) {
                            self.publish_metadata(id, value, tag.timestamp);
                        }
                    }
                },
                Step::Failed(why) => self.link_failed(conn, true, &why, now_ms),
            }
        }
        self.drain_hub(now_ms);
    }

    /// The request's bytes, once.
    pub(super) fn flv_transmit(&mut self, conn: ConnId, out: &mut Vec<Bytes>) -> usize {
        let Some(Link {
            client: Client::Flv(f),
            ..
        }) = self.relay.links.get_mut(&conn)
        else {
            return 0;
        };
        let mut n = 0;
        while let Some(b) = f.http.poll_transmit() {
            n += b.len();
            out.push(b);
        }
        n
    }
}

impl FlvPull {
    /// Reads `data`: the answer's head, then FLV tags from its body. Ends with a
    /// [`Step::Failed`] when the exchange cannot go on.
    fn read(&mut self, data: &[u8]) -> Vec<Step> {
        let mut steps = Vec::new();
        let result = self.http.handle_input(data);
        while let Some(event) = self.http.poll_event() {
            match event {
                ClientEvent::Head(head) if head.status != 200 => {
                    let why = format!("HTTP answer {} {}", head.status, head.reason);
                    steps.push(Step::Failed(why));
                    return steps;
                }
                ClientEvent::Head(_) => steps.push(Step::Started),
                ClientEvent::Body(body) => {
                    self.demuxer.push(&body);
                    loop {
                        match self.demuxer.poll_tag() {
                            Ok(Some(tag)) => steps.push(Step::Tag(tag)),
                            Ok(None) => break,
                            Err(e) => {
                                steps.push(Step::Failed(e.to_string()));
                                return steps;
                            }
                        }
                    }
                }
                ClientEvent::End => {
                    steps.push(Step::Failed("the origin ended the stream".to_owned()));
                    return steps;
                }
            }
        }
        if let Err(e) = result {
            steps.push(Step::Failed(e.to_string()));
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_add_the_stream_and_the_relay_marker() {
        let base = RelayUrl::parse("http://o/edge").unwrap();
        assert_eq!(
            request_path(&base, "live/s"),
            "/edge/live/s.flv?rill_relay=1"
        );
        let exact = RelayUrl::parse("http://o/live/s.flv").unwrap();
        assert_eq!(request_path(&exact, ""), "/live/s.flv?rill_relay=1");
    }
}
