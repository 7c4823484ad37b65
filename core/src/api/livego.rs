//! livego's relay control API: `/control/pull` and `/control/push` with
//! `oper=start|stop&app=&name=&url=`, answered in livego's shape (`{"status": .., "data": ..}`,
//! `status` also the HTTP status). One difference, documented in the README: a successful stop
//! answers 200 where livego answers 400.

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
