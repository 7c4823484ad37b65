//! HTTP-FLV pulls: `GET {origin}/{app}/{stream}.flv` with the relay marker in the query (after
//! the API URL's own query); the
//! answer's body is read as an FLV stream ([`FlvDemuxer`]) whose tags feed the pull's
//! publication exactly as RTMP messages do (they are the same payloads). Anything but a 200
//! answer, a broken stream or its end is a failed attempt, retried with the relay backoff.
//!
//! Buffers are bounded: the HTTP session holds at most the response head, the demuxer at
//! most one tag (no larger than [`Limits::max_message_len`]).

use bytes::Bytes;

use super::{relay_query, Client, Link, Owner, PullTarget};
use crate::engine::{ConnId, Engine};
use crate::flv::{FlvDemuxer, TagType};
use crate::http::client::{ClientEvent, ClientLimits, ClientRequest, ClientSession};
use crate::limits::Limits;
use crate::rtmp::command::DataMessage;
use crate::rtmp::message_type;

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

/// The request path of `target`: `/{path}/{name}.flv?rill_relay=1` (a URL path already
/// ending in `.flv` names the stream itself when `name` is empty).
fn request_path(target: &PullTarget) -> String {
    let path = target.url.full_path(&target.name);
    let ext = if path.ends_with(".flv") { "" } else { ".flv" };
    format!("/{path}{ext}?{}", relay_query(&target.query))
}

impl Engine {
    /// Opens an HTTP-FLV pull of `target` for `owner`, started within `timeout_ms`.
    pub(super) fn flv_pull_open(
        &mut self,
        target: &PullTarget,
        owner: Owner,
        timeout_ms: u64,
        now_ms: u64,
    ) -> Result<ConnId, String> {
        let request = ClientRequest {
            method: "GET".to_owned(),
            host: target.url.authority(),
            path: request_path(target),
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
        let client = Client::Flv(Box::new(pull));
        Ok(self.insert_link(&target.url, client, owner, timeout_ms, now_ms))
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
            let tag = match step {
                Step::Started => {
                    self.pull_started(conn, &key, now_ms);
                    continue;
                }
                Step::Tag(tag) => tag,
                Step::Failed(why) => {
                    self.link_failed(conn, true, &why, now_ms);
                    break;
                }
            };
            let Some(id) = self.pull_media(conn, &key, now_ms) else {
                break;
            };
            match tag.tag_type {
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

    use crate::engine::RelayUrl;

    #[test]
    fn request_paths_add_the_stream_and_the_relay_marker() {
        let target = |url: &str, name: &str, query: &str| PullTarget {
            url: RelayUrl::parse(url).unwrap(),
            name: name.to_owned(),
            query: query.to_owned(),
        };
        assert_eq!(
            request_path(&target("http://o/edge", "live/s", "")),
            "/edge/live/s.flv?rill_relay=1"
        );
        assert_eq!(
            request_path(&target("http://o/live/s.flv", "", "token=1")),
            "/live/s.flv?token=1&rill_relay=1"
        );
    }
}
