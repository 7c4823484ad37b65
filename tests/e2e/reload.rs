//! Reload without a drop (issue 21 item 9), against the real binary: a publisher and players
//! stay live across three reloads (two SIGHUPs to the server's PID and one
//! `POST /api/ctrl/reload`), a new auth key takes effect for new players, and an invalid file
//! is refused while the running config stays. What applies live is checked in detail on the
//! virtual clock (`core/tests/engine_reload.rs`).

use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use rill_core::auth::SimpleAuth;
use rill_e2e::harness::{check_player, flv_player, rtmp_player, Publisher, Received};
use rill_e2e::{http_get_raw, Server, TempConfig};

/// `?lal_secret=` for `stream` under `key`.
fn secret(key: &str, stream: &str) -> String {
    let auth = SimpleAuth {
        key: key.to_owned(),
        ..SimpleAuth::default()
    };
    auth.secret_of(stream)
}

/// An auth section that checks RTMP players against `key`.
fn config(key: &str, extra: &str) -> String {
    format!("[auth]\nkey = \"{key}\"\nplay_rtmp = true\n{extra}")
}

/// Sends SIGHUP and waits until the server logged its `n`th reload (applied or refused).
fn sighup(server: &Server, n: usize) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.log().matches("reload (").count() < n {
        assert!(
            Instant::now() < deadline,
            "no reload logged; log:\n{}",
            server.log()
        );
        sleep(Duration::from_millis(50));
    }
    // Workers take the new settings on their next turn.
    sleep(Duration::from_millis(200));
}

/// Whether a new RTMP player of `live/s` with `key`'s secret is let in (and gets frames).
fn plays_with(server: &Server, key: &str) -> bool {
    let name = format!("s?lal_secret={}", secret(key, "s"));
    match rtmp_player(server.rtmp_port, &name, Duration::from_millis(1500)).join() {
        Ok(Ok(got)) => !got.frames.is_empty(),
        Ok(Err(e)) => {
            assert!(e.contains("rejected"), "{e}");
            false
        }
        Err(_) => panic!("player thread panicked"),
    }
}

fn joined(label: &str, t: std::thread::JoinHandle<Result<Received, String>>) -> Received {
    t.join()
        .unwrap_or_else(|_| panic!("{label} panicked"))
        .unwrap_or_else(|e| panic!("{label}: {e}"))
}

#[test]
fn players_stay_across_three_reloads_a_new_key_applies_and_a_bad_file_is_refused() {
    let cfg = TempConfig::new(&config("k1", ""));
    let server = Server::start_with(2, &cfg.args());
    let limit = Duration::from_secs(60);
    let flv = flv_player(server.http_port, "s", limit);
    let rtmp_name = format!("s?lal_secret={}", secret("k1", "s"));
    let rtmp = rtmp_player(server.rtmp_port, &rtmp_name, limit);
    sleep(Duration::from_millis(400));
    let publisher = Publisher::start(server.rtmp_port, "s", 1.0, vec![], 0);
    sleep(Duration::from_millis(500));
    assert!(plays_with(&server, "k1"));

    // 1: a new key, by SIGHUP.
    std::fs::write(
        &cfg.path,
        config("k2", "[limits]\nidle_timeout_ms = 20000\n"),
    )
    .unwrap();
    sighup(&server, 1);
    assert!(
        server
            .log()
            .contains("reload (SIGHUP): applied: auth, limits; kept until a restart: nothing"),
        "{}",
        server.log()
    );
    assert!(!plays_with(&server, "k1"), "the old key is refused");
    assert!(plays_with(&server, "k2"), "the new key plays");

    // 2: a file that does not parse is refused; the running config stays.
    std::fs::write(&cfg.path, "[auth\nkey = \"k3\"\n").unwrap();
    sighup(&server, 2);
    assert!(
        server
            .log()
            .contains("reload (SIGHUP) refused, the running configuration stays"),
        "{}",
        server.log()
    );
    assert!(plays_with(&server, "k2"), "the running key stays");

    // 3: by the API; HLS settings do not change live and are reported as kept.
    let third = config("k2", "[hub]\ngop_num = 2\n[hls]\nfragment_ms = 4000\n");
    std::fs::write(&cfg.path, third).unwrap();
    let answer = http_get_raw(
        server.http_port,
        "POST /api/ctrl/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.ends_with(
            r#"{"data":{"applied":["hub","limits"],"kept":["hls"]},"desp":"succ","error_code":0}"#
        ),
        "{answer}"
    );
    sleep(Duration::from_millis(200));
    assert!(plays_with(&server, "k2"));

    // The publisher and the first players went through it all without losing a frame.
    sleep(Duration::from_millis(500));
    let sent = publisher.finish();
    for (label, player) in [("HTTP-FLV player", flv), ("RTMP player", rtmp)] {
        let got = joined(label, player);
        check_player(label, &got, &sent.frames, true).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(server.log().matches("reload (").count(), 3);
    assert!(!server.log().contains("panicked"));
}
