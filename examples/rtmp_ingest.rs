//! A minimal RTMP ingest point built from `ServerSession` and a blocking socket: accepts one
//! publisher at a time, accepts its connect and publish, and prints what it sends.
//!
//! ```sh
//! cargo run -p rill-examples --example rtmp_ingest -- 127.0.0.1:1936
//! ffmpeg -re -i input.flv -c copy -f flv rtmp://127.0.0.1:1936/live/test
//! ```

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Instant;

use rill_core::flv;
use rill_core::rtmp::message_type;
use rill_core::rtmp::server::{ServerConfig, ServerEvent, ServerSession};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:1936".into());
    let listener = TcpListener::bind(&addr)?;
    println!("waiting for a publisher on rtmp://{addr}/APP/STREAM");
    let start = Instant::now();
    for stream in listener.incoming() {
        let mut socket = stream?;
        // Core has no random source: the caller supplies the handshake's random bytes.
        let random: Vec<u8> = (0..1528u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let now = || start.elapsed().as_millis() as u64;
        let mut session = ServerSession::new(ServerConfig::default(), &random, now());
        let mut buf = vec![0u8; 64 * 1024];
        let (mut video, mut audio) = (0u64, 0u64);
        'conn: loop {
            let n = socket.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if let Err(e) = session.handle_input(&buf[..n], now()) {
                eprintln!("closing: {e}");
                break;
            }
            // Rule of every rill machine: drain all events and all output after each input.
            // Messages that came behind a connect or publish wait for its answer; `resume`
            // handles them once it is given, so drain again until nothing new comes.
            let mut drained = false;
            while !drained {
                drained = true;
                while let Some(event) = session.poll_event() {
                    drained = false;
                    match event {
                        ServerEvent::ConnectRequest { app, .. } => {
                            println!("connect to app {app:?}");
                            // Err only for a request that is not pending: cannot happen
                            // right after its event.
                            let _ = session.accept_connect();
                        }
                        ServerEvent::PublishRequest {
                            stream_id,
                            stream_name,
                            ..
                        } => {
                            println!("publish {stream_name:?}");
                            // Err: the client withdrew the publish (deleteStream) in the
                            // same read; its PublishStopped event follows.
                            let _ = session.accept_publish(stream_id);
                        }
                        ServerEvent::Media {
                            type_id,
                            timestamp,
                            payload,
                            ..
                        } => {
                            let frame = if type_id == message_type::VIDEO {
                                video += 1;
                                flv::frame_from_video_tag(timestamp, &payload)
                            } else {
                                audio += 1;
                                flv::frame_from_audio_tag(timestamp, &payload)
                            };
                            if let Ok(Some(f)) = frame {
                                if f.is_video_key() {
                                    println!(
                                        "key frame at {} ms ({} bytes)",
                                        f.dts,
                                        f.payload.len()
                                    );
                                }
                            }
                        }
                        ServerEvent::Metadata { value, .. } => println!("metadata: {value:?}"),
                        other => println!("{other:?}"),
                    }
                }
                if let Err(e) = session.resume() {
                    eprintln!("closing: {e}");
                    break 'conn;
                }
            }
            while let Some(bytes) = session.poll_transmit() {
                socket.write_all(&bytes)?;
            }
        }
        println!("publisher gone: {video} video and {audio} audio messages");
    }
    Ok(())
}
