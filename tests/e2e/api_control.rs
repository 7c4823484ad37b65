//! The protected control API on the real binary, with curl: 401 without the bearer token or a
//! JWT (made here with openssl), accepted with either; statistics stay open.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rill_e2e::*;

const LIMIT: Duration = Duration::from_secs(10);

/// curl's status code for `args` (plus the URL).
fn curl_status(args: &[&str], url: &str) -> String {
    require_tool("curl");
    let out = run_with_timeout(
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args(args)
            .arg(url),
        LIMIT,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// base64url without padding of `bytes`, by the `base64` tool.
fn b64url(bytes: &[u8]) -> String {
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run base64");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("feed base64");
    let out = child.wait_with_output().expect("base64 output");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// An HS256 JWT under `secret`, signed by `openssl dgst -hmac`.
fn jwt(secret: &str, claims: &str) -> String {
    require_tool("openssl");
    let signed = format!(
        "{}.{}",
        b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64url(claims.as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary", "-hmac", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(signed.as_bytes())
        .expect("feed openssl");
    let mac = child.wait_with_output().expect("openssl output").stdout;
    assert_eq!(mac.len(), 32, "an HMAC-SHA256");
    format!("{signed}.{}", b64url(&mac))
}

#[test]
fn control_endpoints_refuse_without_the_token_and_accept_with_it() {
    let cfg = TempConfig::new("[api]\ntoken = \"e2e-token\"\njwt_secret = \"e2e-jwt\"\n");
    let server = Server::start_with(1, &cfg.args());
    let kick = server.http_url("api/ctrl/kick_session");
    let body = ["-d", r#"{"stream_name":"x","session_id":"FLVSUB1"}"#];
    assert_eq!(curl_status(&body, &kick), "401");
    fn with<'a>(body: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [body, extra].concat()
    }
    assert_eq!(
        curl_status(&with(&body, &["-H", "Authorization: Bearer wrong"]), &kick),
        "401"
    );
    assert_eq!(
        curl_status(
            &with(&body, &["-H", "Authorization: Bearer e2e-token"]),
            &kick
        ),
        "200"
    );
    let token = jwt("e2e-jwt", r#"{"sub":"ops","exp":4102444800}"#);
    assert_eq!(
        curl_status(&body, &format!("{kick}?jwt={token}")),
        "200",
        "log:\n{}",
        server.log()
    );
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(curl_status(&with(&body, &["-H", &bearer]), &kick), "200");
    let expired = jwt("e2e-jwt", r#"{"exp":1000}"#);
    assert_eq!(curl_status(&body, &format!("{kick}?jwt={expired}")), "401");
    assert_eq!(
        curl_status(&[], &server.http_url("api/stat/lal_info")),
        "200"
    );
}

/// The `data` of a livego answer to `GET path`.
fn livego_data(server: &Server, path: &str) -> String {
    let (status, _, body) = http_get(server.http_port, path, LIMIT);
    assert_eq!(status, 200, "{path}");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    v["data"].as_str().expect("a string").to_owned()
}

/// Waits (bounded) until an HTTP-FLV player of `live/{room}` receives FLV.
fn plays(server: &Server, room: &str) -> bool {
    let player = HttpFlvPlayer::start(server.http_port, &format!("/live/{room}.flv"));
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        if player.received() > 10_000 && player.is_flv() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn room_keys_publish_by_key_play_by_room_reset_and_survive_a_restart() {
    let cfg = TempConfig::new("[api]\nroom_keys = true\n");
    let file = media("h264_aac_10s.flv");
    let looped = ["-stream_loop", "-1"];
    let mut server = Server::start_with(2, &cfg.args());
    let key = livego_data(&server, "/control/get?room=movie");
    assert_eq!(key.len(), 48, "{key}");

    let publisher = ffmpeg_publish(&file, &server.rtmp_url(&format!("live/{key}")), &looped);
    assert!(plays(&server, "movie"), "log:\n{}", server.log());
    drop(publisher);

    let new_key = livego_data(&server, "/control/reset?room=movie");
    assert_ne!(new_key, key);
    let mut old = ffmpeg_publish(&file, &server.rtmp_url(&format!("live/{key}")), &[]);
    let ended = old.wait_for(Duration::from_secs(8)).expect("refused");
    assert!(!ended.success());
    assert!(server.log().contains("not a room key"));
    server.terminate();

    // The key is kept next to the config and read back by the next start.
    let mut server = Server::start_with(2, &cfg.args());
    let publisher = ffmpeg_publish(&file, &server.rtmp_url(&format!("live/{new_key}")), &looped);
    assert!(plays(&server, "movie"), "log:\n{}", server.log());
    drop(publisher);
    assert_eq!(livego_data(&server, "/control/get?room=movie"), new_key);
    server.terminate();
}

#[test]
fn the_api_can_listen_on_its_own_address() {
    let port = free_port();
    let cfg = TempConfig::new(&format!("[api]\naddr = \"127.0.0.1:{port}\"\n"));
    let server = Server::start_with(2, &cfg.args());
    let deadline = std::time::Instant::now() + LIMIT;
    let api = format!("http://127.0.0.1:{port}/api/stat/lal_info");
    while curl_status(&[], &api) != "200" {
        assert!(
            std::time::Instant::now() < deadline,
            "log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        curl_status(&[], &server.http_url("api/stat/lal_info")),
        "404"
    );
    assert_eq!(
        curl_status(&[], &format!("http://127.0.0.1:{port}/")),
        "200"
    );
    assert!(
        server.log().contains(&format!("api=127.0.0.1:{port}")),
        "{}",
        server.log()
    );
}
