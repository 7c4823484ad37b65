//! API protection (`[api]`) on the engine: control endpoints answer 401 without the bearer
//! token or a valid JWT, statistics follow `protect_stats`, media is never affected.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rill_core::config::Config;
use rill_core::engine::Listener;
use rill_core::sim::World;
use sha2::Sha256;

fn world(api: &str) -> World {
    let config = Config::from_toml(&format!("[api]\n{api}")).expect("valid config");
    let mut config = config.engine_config();
    // The wall clock the runtime would give: 2001-09-09.
    config.rtsp.wallclock_offset_ms = 1_000_000_000_000;
    World::new(1, config)
}

/// The status of the answer to `request` (a whole HTTP/1.1 request without the final CRLF).
fn status(w: &mut World, request: &str) -> u16 {
    let c = w.raw(0, Listener::Http);
    w.send(c, format!("{request}\r\n").as_bytes());
    w.run();
    let got = String::from_utf8_lossy(w.received(c)).into_owned();
    got.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no answer to {request:?}: {got:?}"))
}

const KICK: &str = "POST /api/ctrl/kick_session HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n";

fn kick(w: &mut World, extra: &str, query: &str) -> u16 {
    let request = KICK.replace("kick_session", &format!("kick_session{query}"));
    let c = w.raw(0, Listener::Http);
    w.send(c, format!("{request}{extra}\r\n{{}}").as_bytes());
    w.run();
    let got = String::from_utf8_lossy(w.received(c)).into_owned();
    got.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status")
}

fn jwt(secret: &[u8], claims: &str) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[test]
fn control_endpoints_need_the_token_or_a_jwt() {
    let mut open = world("");
    assert_eq!(kick(&mut open, "", ""), 200);

    let mut w = world("token = \"sekrit\"\njwt_secret = \"jw\"\n");
    assert_eq!(kick(&mut w, "", ""), 401);
    assert_eq!(kick(&mut w, "Authorization: Bearer wrong\r\n", ""), 401);
    assert_eq!(kick(&mut w, "Authorization: Bearer sekrit\r\n", ""), 200);
    let token = jwt(b"jw", r#"{"sub":"ops"}"#);
    assert_eq!(
        kick(&mut w, &format!("Authorization: Bearer {token}\r\n"), ""),
        200
    );
    assert_eq!(kick(&mut w, "", &format!("?jwt={token}")), 200);
    assert_eq!(
        kick(&mut w, "", &format!("?jwt={}", jwt(b"other", "{}"))),
        401
    );
    // An expired JWT.
    let expired = jwt(b"jw", r#"{"exp":1000}"#);
    assert_eq!(kick(&mut w, "", &format!("?jwt={expired}")), 401);
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\n");
    assert_eq!(
        status(
            &mut w,
            &get("/control/pull?oper=start&app=a&name=b&url=rtmp://x/a/b")
        ),
        401
    );
    // Statistics stay open; media and HLS are not the API's.
    assert_eq!(status(&mut w, &get("/api/stat/lal_info")), 200);
    assert_eq!(status(&mut w, &get("/metrics")), 200);
    assert_eq!(status(&mut w, &get("/live/none.m3u8")), 404);

    let mut closed = world("token = \"sekrit\"\nprotect_stats = true\n");
    assert_eq!(status(&mut closed, &get("/api/stat/all_group")), 401);
    assert_eq!(status(&mut closed, &get("/metrics")), 401);
    let authorized = format!("{}Authorization: Bearer sekrit\r\n", get("/metrics"));
    assert_eq!(status(&mut closed, &authorized), 200);
}

#[test]
fn with_its_own_listener_the_api_and_the_ui_leave_the_http_listener() {
    let mut w = world("addr = \"127.0.0.1:8083\"\n");
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\n");
    for path in ["/api/stat/lal_info", "/metrics", "/", "/control/get?room=r"] {
        assert_eq!(status(&mut w, &get(path)), 404, "{path}");
        let c = w.raw(0, Listener::Api);
        w.send(c, format!("{}\r\n", get(path)).as_bytes());
        w.run();
        assert!(
            w.received(c).starts_with(b"HTTP/1.1 200"),
            "{path} on the API listener"
        );
    }
    // Media and HLS stay on the HTTP listener (and are on the API listener too).
    assert_eq!(status(&mut w, &get("/live/none.m3u8")), 404);
    let c = w.raw(0, Listener::Http);
    w.send(c, b"GET /live/s.flv HTTP/1.1\r\nHost: h\r\n\r\n");
    w.run();
    assert!(
        !w.is_closed(c) && w.received(c).is_empty(),
        "a waiting player"
    );
}
