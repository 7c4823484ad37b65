//! Checks what a configuration does when a publisher vanishes, on the virtual clock of
//! `rill_core::sim::World`: two engines (two workers), a publisher on one, an HTTP-FLV player
//! on the other; the publisher's socket dies and the example prints when the player is let go.
//! No sockets, no waiting: the grace period passes in microseconds.
//!
//! ```sh
//! cargo run -p rill-examples --example sim_grace -- [rill.toml]
//! ```

use rill_core::config::Config;
use rill_core::engine::Listener;
use rill_core::rtmp::message_type;
use rill_core::sim::World;

fn main() {
    let toml = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(&path).unwrap_or_else(|e| {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }),
        None => String::new(),
    };
    let config = Config::from_toml(&toml).unwrap_or_else(|e| {
        eprintln!("bad config: {e}");
        std::process::exit(2);
    });
    let mut world = World::new(2, config.engine_config());

    let publisher = world.rtmp(0, "live");
    world.rtmp_session(publisher).publish("cam");
    let player = world.raw(1, Listener::Http);
    world.send(player, b"GET /live/cam.flv HTTP/1.1\r\nHost: x\r\n\r\n");
    world.run();
    // One key frame (an FLV video tag body: AVC NAL unit, 2 bytes of IDR slice).
    let key_frame = [0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88];
    if let Err(e) = world
        .rtmp_session(publisher)
        .send_media(message_type::VIDEO, 0, &key_frame)
    {
        eprintln!("the publish was not accepted: {e}");
        std::process::exit(1);
    }
    world.run();
    println!(
        "{:>6} ms  player has {} bytes",
        world.now(),
        world.received_len(player)
    );

    world.hang_up(publisher);
    println!("{:>6} ms  the publisher's socket dies", world.now());
    while !world.is_closed(player) {
        let Some(at) = world.step(3_600_000) else {
            println!("the player is never let go");
            return;
        };
        if world.is_closed(player) {
            println!("{at:>6} ms  the player is let go");
        }
    }
    for (engine, record) in world.sessions_ended() {
        println!(
            "engine {engine}: {} {} {} ended after {} ms: {}",
            record.protocol, record.role, record.stream, record.duration_ms, record.reason
        );
    }
}
