//! What the engine asks the runtime for when a client URL is `rtmps://`: a TLS connection to
//! the URL's host and port (443 by default) with the host as the server name, verified unless
//! `[tls] no_verify` lists the target; plain `rtmp://` asks for none.

use rill_core::engine::{Engine, EngineConfig, Listener, Output, RelayConfig, RelayUrl};
use rill_core::scheme::{TlsClient, TlsPolicy};

/// The connection a player's request for `live/x.flv` makes an edge pulling from `origin` ask
/// for, with `no_verify` as `[tls] no_verify`.
fn pull_connect(origin: &str, no_verify: &[&str]) -> (String, u16, Option<TlsClient>) {
    let config = EngineConfig {
        relay: RelayConfig {
            pull_origins: vec![RelayUrl::parse(origin).unwrap()],
            ..RelayConfig::default()
        },
        tls_client: TlsPolicy {
            no_verify: no_verify.iter().map(|s| s.to_string()).collect(),
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, 1);
    engine.handle_accept(1, Listener::Http, "127.0.0.1:5000".parse().unwrap(), 0);
    engine.handle_input(1, b"GET /live/x.flv HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    std::iter::from_fn(|| engine.poll_output())
        .find_map(|o| match o {
            Output::Connect {
                host, port, tls, ..
            } => Some((host, port, tls)),
            _ => None,
        })
        .expect("a pull connection")
}

#[test]
fn rtmps_origins_ask_for_verified_tls_unless_listed() {
    let (host, port, tls) = pull_connect("rtmps://origin.example/live", &[]);
    assert_eq!((host.as_str(), port), ("origin.example", 443));
    assert_eq!(
        tls,
        Some(TlsClient {
            server_name: "origin.example".into(),
            verify: true
        })
    );
    let (_, port, tls) = pull_connect("rtmps://10.0.0.5:4935", &["10.0.0.5:4935"]);
    assert_eq!(port, 4935);
    assert!(tls.is_some_and(|t| !t.verify), "listed: not verified");
    let (_, port, tls) = pull_connect("rtmp://origin.example", &["origin.example"]);
    assert_eq!((port, tls), (1935, None));
}

#[test]
fn https_and_rtsps_origins_ask_for_tls_on_their_default_ports() {
    let (host, port, tls) = pull_connect("https://origin.example", &[]);
    assert_eq!((host.as_str(), port), ("origin.example", 443));
    assert!(tls.is_some_and(|t| t.verify && t.server_name == "origin.example"));
    let (_, port, tls) = pull_connect("rtsps://cam:pw@origin.example", &[]);
    assert_eq!(port, 322);
    assert!(tls.is_some_and(|t| t.verify));
    let (_, port, tls) = pull_connect("http://origin.example", &[]);
    assert_eq!((port, tls), (80, None));
}
