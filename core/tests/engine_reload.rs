//! A configuration reload on running engines ([`rill_core::engine::Engine::reconfigure`]) on
//! the virtual clock: sessions stay and media keeps flowing, the new auth key applies to new
//! publishers and players only, and the limits and hub bounds change for what comes after.
//! Relay lists after a reload are in `engine_relay.rs`.

mod common;

use common::*;
use rill_core::config::Config;
use rill_core::engine::EngineConfig;
use rill_core::reload::plan;
use rill_core::sim::World;

fn config(toml: &str) -> Config {
    Config::from_toml(toml).expect("valid config")
}

/// The engine settings of `toml` after a reload from `old`, as a runtime makes them.
fn reloaded(old: &str, new: &str) -> EngineConfig {
    plan(&config(old), config(new)).config.engine_config()
}

fn secret(key: &str, stream: &str) -> String {
    let auth = rill_core::auth::SimpleAuth {
        key: key.to_owned(),
        ..Default::default()
    };
    auth.secret_of(stream)
}

#[test]
fn sessions_stay_across_reloads_and_a_new_auth_key_applies_to_new_sessions() {
    let open = "[auth]\nkey = \"old\"\n";
    let mut w = World::new(2, config(open).engine_config());
    let publisher = publisher(&mut w, 0, "s");
    send_configs(&mut w, publisher, 0);
    let players = [rtmp_player(&mut w, 0, "s"), flv_player(&mut w, 1, "s")];
    w.run();
    send(&mut w, publisher, &stream(0, 25, 25));
    let got: Vec<u64> = players.iter().map(|&p| w.received_len(p)).collect();

    // Three reloads: auth on with a new key, a limit changed, auth key rotated again.
    let steps = [
        "[auth]\nkey = \"k1\"\npublish_rtmp = true\nplay_rtmp = true\nplay_http_flv = true\n",
        "[auth]\nkey = \"k1\"\npublish_rtmp = true\nplay_rtmp = true\nplay_http_flv = true\n\
         [limits]\nidle_timeout_ms = 5000\n",
        "[auth]\nkey = \"k2\"\npublish_rtmp = true\nplay_rtmp = true\nplay_http_flv = true\n\
         [limits]\nidle_timeout_ms = 5000\n",
    ];
    let mut running = open;
    let mut ts = 1_000;
    for step in steps {
        let next = reloaded(running, step);
        for e in 0..2 {
            let now = w.now();
            w.engine_mut(e).reconfigure(next.clone(), now);
        }
        w.run();
        running = step;
        send(&mut w, publisher, &stream(ts, 25, 25));
        ts += 1_000;
    }
    for (i, &p) in players.iter().enumerate() {
        assert!(!w.is_closed(p), "player {i} stays");
        assert!(
            w.received_len(p) > got[i] + 10_000,
            "player {i} still gets media"
        );
    }
    assert!(!w.is_closed(publisher), "the publisher stays");
    assert_eq!(w.sessions_ended().len(), 0, "no session ended");

    // New sessions meet the last key: none, the old one and the previous one are refused.
    let bare = rtmp_player(&mut w, 1, "s");
    let stale = rtmp_player(&mut w, 1, &format!("s?lal_secret={}", secret("k1", "s")));
    let good = rtmp_player(&mut w, 1, &format!("s?lal_secret={}", secret("k2", "s")));
    w.run();
    send(&mut w, publisher, &stream(ts, 25, 25));
    assert!(w.session_ended(bare).is_some(), "no secret: refused");
    assert!(
        w.session_ended(stale).is_some(),
        "the rotated-out key: refused"
    );
    assert!(w.session_ended(good).is_none(), "the new key plays");
    assert!(w.received_len(good) > 1_000);
    let flv = flv_player(&mut w, 0, "s");
    w.run();
    assert!(
        http_response(&w, flv).0.starts_with("HTTP/1.1 403"),
        "{}",
        http_response(&w, flv).0
    );
    let second = publisher_refused(&mut w);
    assert!(second, "a new publisher without the key is refused");
}

/// A second publisher of another stream, without a secret: whether it was refused.
fn publisher_refused(w: &mut World) -> bool {
    let c = w.rtmp(0, "live");
    w.rtmp_session(c).publish("other");
    w.run();
    !publishing(w, c)
}

#[test]
fn a_reload_keeps_the_engines_hls_settings_and_identity() {
    let mut w = World::new(2, config("").engine_config());
    let next = reloaded("", "workers = 5\n[hls]\nfragment_ms = 9000\n");
    for e in 0..2 {
        w.engine_mut(e).reconfigure(next.clone(), 0);
    }
    let p = publisher(&mut w, 1, "s");
    send_configs(&mut w, p, 0);
    let player = flv_player(&mut w, 0, "s");
    w.run();
    send(&mut w, p, &stream(0, 50, 25));
    // Still two workers sharing streams: the player on the other engine gets the stream.
    assert!(w.received_len(player) > 10_000);
    assert_eq!(w.engine(1).worker(), 1);
}
