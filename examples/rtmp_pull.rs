//! Plays an RTMP stream with `ClientSession` over a blocking socket and writes it to an FLV file:
//! the core of a relay pull, in a page.
//!
//! ```sh
//! cargo run -p rill-examples --example rtmp_pull -- 127.0.0.1:1935 live test out.flv
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use rill_core::flv::{self, TagType};
use rill_core::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use rill_core::rtmp::message_type;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, app, stream, out] = args.as_slice() else {
        eprintln!("usage: rtmp_pull HOST:PORT APP STREAM OUT.flv");
        std::process::exit(2);
    };
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let mut socket = TcpStream::connect(addr)?;
    let random: Vec<u8> = (0..1528u32)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let config = ClientConfig::new(app, &format!("rtmp://{addr}/{app}"));
    let mut client = ClientSession::new(config, &random, now());
    client.play(stream);
    let mut file = File::create(out)?;
    let mut head = bytes::BytesMut::new();
    flv::write_file_header(true, true, &mut head);
    file.write_all(&head)?;
    let mut buf = vec![0u8; 64 * 1024];
    'session: loop {
        while let Some(bytes) = client.poll_transmit() {
            socket.write_all(&bytes)?;
        }
        let n = socket.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Err(e) = client.handle_input(&buf[..n], now()) {
            eprintln!("error: {e}");
            break;
        }
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Media {
                    type_id,
                    timestamp,
                    payload,
                } => {
                    let tag_type = if type_id == message_type::VIDEO {
                        TagType::Video
                    } else {
                        TagType::Audio
                    };
                    let mut tag = bytes::BytesMut::new();
                    flv::write_tag(tag_type, timestamp, &payload, &mut tag);
                    file.write_all(&tag)?;
                }
                ClientEvent::StreamEnded => break 'session,
                ClientEvent::Rejected { code, description } => {
                    eprintln!("refused: {code} {description}");
                    break 'session;
                }
                other => println!("{other:?}"),
            }
        }
    }
    println!("wrote {out}");
    Ok(())
}
