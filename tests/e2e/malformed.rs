//! Malformed-input suite against the real server binary (`RILL_BIN` picks the runtime).
//!
//! Every test function starts one server with short deadlines, a healthy in-process RTMP publisher
//! sending `h264_aac_30s.flv` in real time, and healthy players on its stream (HTTP-FLV and RTMP,
//! both waiting before the publisher starts, so each must receive every video frame). Then it runs
//! a table of malformed cases against the same server, several at a time. Each case asserts that
//! the offender gets an error answer or a closed connection within its bound; after every batch the
//! server must still run; at the end the healthy players must have received exactly the video
//! frames the publisher sent, in order, with monotonic timestamps and no stall longer than
//! [`MAX_STALL`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rill_core::amf::{amf0, Value};
use rill_core::flv::TagType;
use rill_core::limits::Limits;
use rill_core::rtmp::chunk::{chunk_body, write_fmt0_header, ChunkDecoder};
use rill_core::rtmp::command::{status_fields, Command};
use rill_core::rtmp::message_type as mt;
use rill_e2e::harness::*;
use rill_e2e::*;

// ---------------------------------------------------------------------------------------------
// Cases and their verdicts
// ---------------------------------------------------------------------------------------------

/// Reads RTMP messages until the server answers with an error or closes.
fn expect_rtmp_refusal(s: &mut TcpStream, dec: &mut ChunkDecoder, bound: Duration) -> Check {
    let t0 = Instant::now();
    let mut buf = vec![0u8; 65536];
    loop {
        loop {
            match dec.poll_message() {
                Ok(Some(m)) if m.type_id == mt::COMMAND_AMF0 => {
                    match Command::decode(&m.payload, false, 32) {
                        Ok(Command::Error { args, .. }) => {
                            let code = args
                                .get(1)
                                .and_then(|i| status_fields(i).1)
                                .unwrap_or("")
                                .to_owned();
                            return Ok(Verdict::Answered(format!("_error {code}"), t0.elapsed()));
                        }
                        Ok(Command::OnStatus { info }) => {
                            if let (Some("error"), code, _) = status_fields(&info) {
                                let code = code.unwrap_or("").to_owned();
                                return Ok(Verdict::Answered(code, t0.elapsed()));
                            }
                        }
                        _ => {}
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(Verdict::Closed(t0.elapsed())),
            Ok(n) => dec.push(&buf[..n]),
            Err(e) if would_block(&e) => {}
            Err(_) => return Ok(Verdict::Closed(t0.elapsed())),
        }
        if t0.elapsed() > bound {
            return Err(format!("no error answer and still open after {bound:?}"));
        }
    }
}

/// Reads an HTTP answer: its status must be one of `allowed`, and the connection must close
/// after it. A close without any answer is accepted only when `allow_silent_close`.
fn expect_http_error(
    s: &mut TcpStream,
    allowed: &[u16],
    allow_silent_close: bool,
    bound: Duration,
) -> Check {
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if would_block(&e) => {}
            Err(_) => break,
        }
        if t0.elapsed() > bound {
            return Err(format!(
                "still open after {bound:?}; got {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(200)])
            ));
        }
    }
    if buf.is_empty() {
        return if allow_silent_close {
            Ok(Verdict::Closed(t0.elapsed()))
        } else {
            Err("closed without an answer".into())
        };
    }
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", &text[..text.len().min(120)]))?;
    if !allowed.contains(&status) {
        return Err(format!(
            "status {status}, expected one of {allowed:?}: {:?}",
            &text[..text.len().min(200)]
        ));
    }
    Ok(Verdict::Answered(format!("HTTP {status}"), t0.elapsed()))
}

// ---------------------------------------------------------------------------------------------
// Raw RTMP building blocks
// ---------------------------------------------------------------------------------------------

/// C0 + a simple-handshake C1 (zero version field, patterned filler).
fn c0c1() -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend_from_slice(&[0u8; 8]);
    v.extend((8..1536).map(|i| (i * 31 % 251) as u8));
    v
}

/// Does a simple handshake.
fn handshake(s: &mut TcpStream) -> Result<(), String> {
    s.write_all(&c0c1())
        .map_err(|e| format!("send C0C1: {e}"))?;
    let mut s0s1s2 = vec![0u8; 3073];
    read_exact_within(s, &mut s0s1s2, Duration::from_secs(5))?;
    if s0s1s2[0] != 3 {
        return Err(format!("S0 version {}", s0s1s2[0]));
    }
    s.write_all(&s0s1s2[1..1537])
        .map_err(|e| format!("send C2: {e}"))
}

fn read_exact_within(s: &mut TcpStream, out: &mut [u8], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut filled = 0;
    while filled < out.len() {
        match s.read(&mut out[filled..]) {
            Ok(0) => return Err(format!("closed after {filled} of {} bytes", out.len())),
            Ok(n) => filled += n,
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!("only {filled} of {} bytes in {limit:?}", out.len()));
        }
    }
    Ok(())
}

/// One message as chunks of 128 bytes (the default chunk size).
fn msg(csid: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    assert!(write_fmt0_header(
        csid,
        0,
        payload.len() as u32,
        type_id,
        stream_id,
        &mut out
    ));
    out.extend_from_slice(&chunk_body(csid, payload, 128));
    out.to_vec()
}

/// A command message (type 20) on chunk stream 3.
fn cmd_msg(stream_id: u32, payload: &[u8]) -> Vec<u8> {
    msg(3, mt::COMMAND_AMF0, stream_id, payload)
}

fn amf(values: &[Value]) -> Vec<u8> {
    let mut out = BytesMut::new();
    amf0::encode_all(values, &mut out);
    out.to_vec()
}

fn s(text: &str) -> Value {
    Value::String(text.into())
}

fn command(name: &str, tid: f64, args: Vec<Value>) -> Vec<u8> {
    let mut v = vec![s(name), Value::Number(tid)];
    v.extend(args);
    amf(&v)
}

fn connect_object(app: &str) -> Value {
    Value::Object(vec![
        ("app".into(), s(app)),
        ("tcUrl".into(), s(&format!("rtmp://127.0.0.1/{app}"))),
        ("flashVer".into(), s("FMLE/3.0")),
    ])
}

fn connect_cmd(app: &str) -> Vec<u8> {
    cmd_msg(0, &command("connect", 1.0, vec![connect_object(app)]))
}

/// AMF0 string marker + 16-bit length + bytes.
fn amf_str(text: &[u8]) -> Vec<u8> {
    let mut v = vec![0x02];
    v.extend_from_slice(&(text.len() as u16).to_be_bytes());
    v.extend_from_slice(text);
    v
}

/// AMF0 number.
fn amf_num(n: f64) -> Vec<u8> {
    let mut v = vec![0x00];
    v.extend_from_slice(&n.to_be_bytes());
    v
}

/// Reads messages until `_result` for `tid`.
fn wait_result(
    s: &mut TcpStream,
    dec: &mut ChunkDecoder,
    tid: f64,
    limit: Duration,
) -> Result<Vec<Value>, String> {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 65536];
    loop {
        while let Some(m) = dec.poll_message().map_err(|e| e.to_string())? {
            if m.type_id == mt::COMMAND_AMF0 {
                match Command::decode(&m.payload, false, 32) {
                    Ok(Command::Result {
                        transaction_id,
                        args,
                    }) if transaction_id == tid => return Ok(args),
                    Ok(Command::Error { transaction_id, .. }) if transaction_id == tid => {
                        return Err(format!("_error for transaction {tid}"))
                    }
                    _ => {}
                }
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return Err("closed while waiting for _result".into()),
            Ok(n) => dec.push(&buf[..n]),
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!("no _result for {tid} within {limit:?}"));
        }
    }
}

/// A connection through handshake and an accepted `connect` to `live`.
fn connected(port: u16) -> Result<(TcpStream, ChunkDecoder), String> {
    let mut s = tcp(port)?;
    handshake(&mut s)?;
    s.write_all(&connect_cmd("live"))
        .map_err(|e| e.to_string())?;
    let mut dec = ChunkDecoder::new(&Limits::default());
    wait_result(&mut s, &mut dec, 1.0, Duration::from_secs(5))?;
    Ok((s, dec))
}

/// [`connected`] plus `createStream`; returns the stream id.
fn with_stream(port: u16) -> Result<(TcpStream, ChunkDecoder, u32), String> {
    let (mut s, mut dec) = connected(port)?;
    s.write_all(&cmd_msg(
        0,
        &command("createStream", 2.0, vec![Value::Null]),
    ))
    .map_err(|e| e.to_string())?;
    let args = wait_result(&mut s, &mut dec, 2.0, Duration::from_secs(5))?;
    let id = args
        .get(1)
        .and_then(Value::as_f64)
        .ok_or("createStream result without an id")?;
    Ok((s, dec, id as u32))
}

/// Connects, runs `offend` on the raw socket, then expects a close within `bound`.
fn raw_case(
    name: impl Into<String>,
    port_of: fn(Ports) -> u16,
    bound: Duration,
    offend: impl FnOnce(&mut TcpStream) -> Result<(), String> + Send + 'static,
) -> Case {
    case(name, move |p| {
        let mut s = tcp(port_of(p))?;
        offend(&mut s)?;
        expect_closed(&mut s, bound)
    })
}

fn rtmp_port(p: Ports) -> u16 {
    p.rtmp
}

fn http_port(p: Ports) -> u16 {
    p.http
}

/// After a handshake, sends `bytes` and expects a close (or an RTMP error answer) within `bound`.
fn chunk_case(name: impl Into<String>, bound: Duration, bytes: Vec<u8>) -> Case {
    case(name, move |p| {
        let mut s = tcp(p.rtmp)?;
        handshake(&mut s)?;
        send(&mut s, &bytes);
        expect_rtmp_refusal(&mut s, &mut ChunkDecoder::new(&Limits::default()), bound)
    })
}

/// After an accepted connect, sends `bytes` and expects an error answer or a close within `bound`.
fn connected_case(name: impl Into<String>, bound: Duration, bytes: Vec<u8>) -> Case {
    case(name, move |p| {
        let (mut s, mut dec) = connected(p.rtmp)?;
        send(&mut s, &bytes);
        expect_rtmp_refusal(&mut s, &mut dec, bound)
    })
}

/// After connect and createStream, sends what `build(stream_id)` gives.
fn stream_case(
    name: impl Into<String>,
    bound: Duration,
    build: impl FnOnce(u32) -> Vec<u8> + Send + 'static,
) -> Case {
    case(name, move |p| {
        let (mut s, mut dec, id) = with_stream(p.rtmp)?;
        send(&mut s, &build(id));
        expect_rtmp_refusal(&mut s, &mut dec, bound)
    })
}

fn handshake_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Versions other than 3 are refused on the first byte.
    for v in [0u8, 1, 2, 4, 6, 8, 9, 0x0a, 0x1f, 0x7f, 0x80, 0xff, 0x16] {
        cases.push(raw_case(
            format!("handshake: C0 version {v:#04x}"),
            rtmp_port,
            AT_ONCE,
            move |s| {
                let mut b = vec![v];
                b.extend(noise(u64::from(v), 1536));
                send(s, &b);
                Ok(())
            },
        ));
    }
    cases.push(raw_case(
        "handshake: an HTTP request on the RTMP port",
        rtmp_port,
        AT_ONCE,
        |s| {
            send(s, b"GET /live/healthy.flv HTTP/1.1\r\nHost: x\r\n\r\n");
            Ok(())
        },
    ));
    cases.push(raw_case(
        "handshake: silent client",
        rtmp_port,
        BY_DEADLINE,
        |_| Ok(()),
    ));
    cases.push(raw_case(
        "handshake: C0 only",
        rtmp_port,
        BY_DEADLINE,
        |s| {
            send(s, &[3]);
            Ok(())
        },
    ));
    cases.push(raw_case(
        "handshake: truncated C1",
        rtmp_port,
        BY_DEADLINE,
        |s| {
            send(s, &c0c1()[..700]);
            Ok(())
        },
    ));
    cases.push(raw_case(
        "handshake: C0C1 without C2",
        rtmp_port,
        BY_DEADLINE,
        |s| {
            send(s, &c0c1());
            Ok(())
        },
    ));
    cases.push(raw_case(
        "handshake: truncated C2",
        rtmp_port,
        BY_DEADLINE,
        |s| {
            send(s, &c0c1());
            let mut b = vec![0u8; 3073];
            read_exact_within(s, &mut b, Duration::from_secs(5))?;
            send(s, &b[1..900]);
            Ok(())
        },
    ));
    cases.push(raw_case(
        "handshake: complete, then no connect",
        rtmp_port,
        BY_DEADLINE,
        handshake,
    ));
    cases.push(raw_case(
        "handshake: garbage C2 (not an echo of S1), then nothing",
        rtmp_port,
        BY_DEADLINE,
        |s| {
            send(s, &c0c1());
            let mut b = vec![0u8; 3073];
            read_exact_within(s, &mut b, Duration::from_secs(5))?;
            send(s, &noise(9, 1536));
            Ok(())
        },
    ));
    cases.push(raw_case(
        "handshake: C1 with a complex-handshake version and a bad digest",
        rtmp_port,
        BY_DEADLINE,
        |s| {
            let mut b = c0c1();
            b[5..9].copy_from_slice(&[9, 0, 124, 2]);
            send(s, &b);
            let mut out = vec![0u8; 3073];
            read_exact_within(s, &mut out, Duration::from_secs(5))?;
            send(s, &out[1..1537]);
            Ok(())
        },
    ));
    cases.push(raw_case(
        "handshake: 64 KiB of noise after a valid C0",
        rtmp_port,
        BY_DEADLINE,
        |s| {
            let mut b = vec![3u8];
            b.extend(noise(77, 65536));
            send(s, &b);
            Ok(())
        },
    ));
    cases.push(case("handshake: one byte every 100 ms", |p| {
        let mut s = tcp(p.rtmp)?;
        trickle(&mut s, &c0c1(), Duration::from_millis(100), BY_DEADLINE)
    }));
    cases.push(case(
        "handshake: complete, then connect one byte every 100 ms",
        |p| {
            let mut s = tcp(p.rtmp)?;
            handshake(&mut s)?;
            trickle(
                &mut s,
                &connect_cmd("live"),
                Duration::from_millis(100),
                BY_DEADLINE,
            )
        },
    ));
    cases.push(case("handshake: reset halfway through C1", |p| {
        let t0 = Instant::now();
        let mut s = tcp(p.rtmp)?;
        send(&mut s, &c0c1()[..800]);
        drop(s);
        Ok(Verdict::Closed(t0.elapsed()))
    }));
    cases
}

fn chunk_cases() -> Vec<Case> {
    let mut cases = vec![
        chunk_case(
            "chunk: fmt 1 on a chunk stream never opened",
            AT_ONCE,
            vec![0x43, 0, 0, 0, 0, 0, 10, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        ),
        chunk_case(
            "chunk: fmt 2 on a chunk stream never opened",
            AT_ONCE,
            vec![0x83, 0, 0, 0, 1, 2, 3],
        ),
        chunk_case(
            "chunk: fmt 3 on a chunk stream never opened",
            AT_ONCE,
            vec![0xC3; 64],
        ),
        chunk_case(
            "chunk: message length 0xFFFFFF",
            AT_ONCE,
            fmt0(3, 0xFF_FFFF, mt::COMMAND_AMF0, 0),
        ),
        chunk_case(
            "chunk: message length one above the limit",
            AT_ONCE,
            fmt0(3, Limits::default().max_message_len + 1, mt::VIDEO, 1),
        ),
        chunk_case(
            "chunk: huge message on a two-byte chunk stream id",
            AT_ONCE,
            fmt0(300, 0xFF_FFF0, mt::AUDIO, 1),
        ),
        chunk_case(
            "chunk: fmt 1 on three-byte chunk stream id 65599",
            AT_ONCE,
            vec![0x41, 0xFF, 0xFF, 0, 0, 0, 0, 0, 10, 20],
        ),
        chunk_case("chunk: 64 KiB of 0xFF", AT_ONCE, vec![0xFF; 65536]),
    ];
    // Too many chunk streams, each with a partial message.
    for (label, base) in [("one-byte", 3u32), ("two-byte", 64), ("three-byte", 320)] {
        let mut b = Vec::new();
        for i in 0..(Limits::default().max_chunk_streams as u32 + 2) {
            let csid = if base == 3 { 3 + i % 61 } else { base + i };
            if base == 3 && i >= 61 {
                break;
            }
            b.extend(fmt0(csid, 1000, mt::VIDEO, 1));
            b.extend(noise(u64::from(i), 128));
        }
        let bound = if base == 3 { BY_DEADLINE } else { AT_ONCE };
        cases.push(chunk_case(
            format!("chunk: partial messages on too many {label} chunk stream ids"),
            bound,
            b,
        ));
    }
    // Declared lengths that add up past the pending-bytes limit.
    let mut bomb = Vec::new();
    for i in 0..8u32 {
        bomb.extend(fmt0(
            10 + i,
            Limits::default().max_message_len,
            mt::VIDEO,
            1,
        ));
        bomb.extend(noise(u64::from(i), 128));
    }
    cases.push(chunk_case(
        "chunk: eight 8 MiB partial messages (pending-bytes bomb)",
        AT_ONCE,
        bomb,
    ));
    let mut mid = fmt0(3, 500, mt::COMMAND_AMF0, 0);
    mid.extend(noise(5, 128));
    mid.extend(fmt0(3, 10, mt::COMMAND_AMF0, 0));
    mid.extend(noise(6, 10));
    cases.push(chunk_case(
        "chunk: new fmt-0 header in the middle of a message",
        AT_ONCE,
        mid,
    ));
    for (label, size) in [
        ("0", 0u32),
        ("0x80000000", 0x8000_0000),
        ("0x7FFFFFFF", 0x7FFF_FFFF),
        ("above max_chunk_size", Limits::default().max_chunk_size + 1),
    ] {
        cases.push(chunk_case(
            format!("chunk: Set Chunk Size {label}"),
            AT_ONCE,
            msg(2, mt::SET_CHUNK_SIZE, 0, &size.to_be_bytes()),
        ));
    }
    cases.push(chunk_case(
        "chunk: Set Chunk Size with a 2-byte body",
        AT_ONCE,
        msg(2, mt::SET_CHUNK_SIZE, 0, &[0, 1]),
    ));
    cases.push(chunk_case(
        "chunk: Abort with an empty body",
        BY_DEADLINE,
        msg(2, mt::ABORT, 0, &[]),
    ));
    cases.push(chunk_case(
        "chunk: Abort on an unknown chunk stream",
        BY_DEADLINE,
        msg(2, mt::ABORT, 0, &50u32.to_be_bytes()),
    ));
    cases.push(chunk_case(
        "chunk: Abort on chunk stream 0xFFFFFFFF",
        BY_DEADLINE,
        msg(2, mt::ABORT, 0, &u32::MAX.to_be_bytes()),
    ));
    cases.push(chunk_case(
        "chunk: Window Ack Size with a 1-byte body",
        BY_DEADLINE,
        msg(2, mt::WINDOW_ACK_SIZE, 0, &[1]),
    ));
    cases.push(chunk_case(
        "chunk: Set Peer Bandwidth with a 4-byte body",
        BY_DEADLINE,
        msg(2, mt::SET_PEER_BANDWIDTH, 0, &[0, 0, 1, 0]),
    ));
    cases.push(chunk_case(
        "chunk: User Control with a 1-byte body",
        BY_DEADLINE,
        msg(2, mt::USER_CONTROL, 0, &[0]),
    ));
    cases.push(chunk_case(
        "chunk: User Control event 0xFFFF",
        BY_DEADLINE,
        msg(2, mt::USER_CONTROL, 0, &[0xFF, 0xFF, 1, 2, 3, 4]),
    ));
    cases.push(chunk_case(
        "chunk: Acknowledgement with an empty body",
        BY_DEADLINE,
        msg(2, mt::ACKNOWLEDGEMENT, 0, &[]),
    ));
    cases.push(chunk_case(
        "chunk: unknown message type 0xEE",
        BY_DEADLINE,
        msg(3, 0xEE, 0, &noise(3, 1000)),
    ));
    cases.push(chunk_case(
        "chunk: 64 KiB of zero bytes (empty messages)",
        BY_DEADLINE,
        vec![0u8; 65536],
    ));
    cases.push(chunk_case(
        "chunk: extended timestamp cut short",
        BY_DEADLINE,
        vec![0x03, 0xFF, 0xFF, 0xFF, 0, 0, 4, 20, 0, 0, 0, 0, 0x12],
    ));
    cases.push(chunk_case(
        "chunk: 64 KiB of noise",
        BY_DEADLINE,
        noise(1234, 65536),
    ));
    // Aggregates (type 22) whose sub-message headers lie.
    let mut agg_huge = vec![mt::COMMAND_AMF0, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0];
    agg_huge.extend(noise(4, 40));
    cases.push(chunk_case(
        "chunk: aggregate whose sub-message claims 16 MiB",
        BY_DEADLINE,
        msg(3, mt::AGGREGATE, 0, &agg_huge),
    ));
    cases.push(chunk_case(
        "chunk: aggregate of noise",
        BY_DEADLINE,
        msg(3, mt::AGGREGATE, 0, &noise(8, 300)),
    ));
    let connect_body = command("connect", 1.0, vec![connect_object("live")]);
    let mut agg = vec![mt::COMMAND_AMF0];
    agg.extend_from_slice(&(connect_body.len() as u32).to_be_bytes()[1..]);
    agg.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
    agg.extend_from_slice(&connect_body);
    agg.extend_from_slice(&[0, 0, 0, 0]); // wrong back pointer
    agg.extend_from_slice(&[mt::SET_CHUNK_SIZE, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    cases.push(chunk_case(
        "chunk: aggregate with a connect, a bad back pointer and a Set Chunk Size 0",
        BY_DEADLINE,
        msg(3, mt::AGGREGATE, 0, &agg),
    ));
    let mut agg_zero = Vec::new();
    for _ in 0..2000 {
        agg_zero.extend_from_slice(&[mt::AUDIO, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11]);
    }
    cases.push(chunk_case(
        "chunk: aggregate of 2000 empty sub-messages",
        BY_DEADLINE,
        msg(3, mt::AGGREGATE, 1, &agg_zero),
    ));
    cases.push(case(
        "chunk: 8 MiB message announced after connect, 1 MiB sent, then silence",
        |p| {
            let (mut s, mut dec) = connected(p.rtmp)?;
            let mut b = msg(2, mt::SET_CHUNK_SIZE, 0, &(1u32 << 20).to_be_bytes());
            b.extend(fmt0(8, Limits::default().max_message_len, mt::DATA_AMF0, 0));
            b.extend(noise(11, 1 << 20));
            send(&mut s, &b);
            expect_rtmp_refusal(&mut s, &mut dec, BY_IDLE)
        },
    ));
    cases
}

#[test]
fn handshake_and_chunk_stream_garbage() {
    let mut h = Harness::start("", "");
    h.run("handshake", handshake_cases(), 12);
    h.run("chunk", chunk_cases(), 12);
    let n = h.finish();
    eprintln!("handshake_and_chunk_stream_garbage: {n} cases");
}

/// `connect` whose command object is replaced by raw AMF0 bytes.
fn connect_with(raw_object: &[u8]) -> Vec<u8> {
    let mut p = amf_str(b"connect");
    p.extend(amf_num(1.0));
    p.extend_from_slice(raw_object);
    cmd_msg(0, &p)
}

/// `depth` nested AMF0 objects `{a: {a: ...}}`.
fn amf0_nested(depth: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..depth {
        v.extend_from_slice(&[0x03, 0, 1, b'a']);
    }
    v.push(0x05);
    for _ in 0..depth {
        v.extend_from_slice(&[0, 0, 0x09]);
    }
    v
}

/// An AMF0 reference bomb: object k holds two references to object k-1, `levels` deep, so a
/// decoder that expands references naively builds 2^levels leaves.
fn amf0_reference_bomb(levels: u16) -> Vec<u8> {
    let mut v = vec![0x0A];
    v.extend_from_slice(&u32::from(levels + 1).to_be_bytes());
    v.extend_from_slice(&[0x03, 0, 1, b'x', 0x00]);
    v.extend_from_slice(&1.0f64.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0x09]);
    for k in 1..=levels {
        // Strict array = index 0; objects are 1..; object k refers to object k-1 (index k).
        let prev = k.to_be_bytes();
        v.extend_from_slice(&[0x03, 0, 1, b'a', 0x07, prev[0], prev[1]]);
        v.extend_from_slice(&[0, 1, b'b', 0x07, prev[0], prev[1], 0, 0, 0x09]);
    }
    v
}

/// AMF3 command payload: a leading 0x00, then AMF0 values (switching to AMF3 with 0x11).
fn amf3_cmd(name: &str, amf3_arg: &[u8]) -> Vec<u8> {
    let mut p = vec![0x00];
    p.extend(amf_str(name.as_bytes()));
    p.extend(amf_num(1.0));
    p.push(0x11);
    p.extend_from_slice(amf3_arg);
    msg(3, mt::COMMAND_AMF3, 0, &p)
}

/// AMF3 arrays nested `depth` deep.
fn amf3_nested(depth: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..depth {
        v.extend_from_slice(&[0x09, 0x03, 0x01]);
    }
    v.push(0x01);
    v
}

/// AMF3 reference bomb: array k holds two references to array k-1.
fn amf3_reference_bomb(levels: u32) -> Vec<u8> {
    let mut v = vec![0x09, 0x03, 0x01, 0x04, 0x01]; // [1] (index 0)
    for k in 1..=levels {
        let r = ((k - 1) << 1) as u8; // reference to array k-1
        v.extend_from_slice(&[0x09, 0x05, 0x01, 0x09, r, 0x09, r]);
    }
    v
}

fn amf_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| {
        cases.push(chunk_case(format!("amf: {name}"), AT_ONCE, bytes));
    };
    add(
        "connect object nested 100 deep",
        connect_with(&amf0_nested(100)),
    );
    add(
        "connect object nested 10000 deep",
        connect_with(&amf0_nested(10000)),
    );
    add(
        "connect with a strict array of 0xFFFFFFFF items",
        connect_with(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05]),
    );
    add(
        "connect with an ECMA array of 0xFFFFFFFF entries",
        connect_with(&[0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0, 1, b'a', 0x05]),
    );
    add(
        "connect with a string longer than the message",
        connect_with(&[0x02, 0xFF, 0xFF, b'a', b'b']),
    );
    add(
        "connect with a long string of 0xFFFFFFFF bytes",
        connect_with(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'a']),
    );
    add("connect with marker 0x42", connect_with(&[0x42, 1, 2, 3]));
    add("connect with marker 0xFF", connect_with(&[0xFF]));
    add("connect with a MovieClip marker", connect_with(&[0x04]));
    add("connect with a RecordSet marker", connect_with(&[0x0E]));
    add(
        "connect with an XML document of 0xFFFFFFFF bytes",
        connect_with(&[0x0F, 0xFF, 0xFF, 0xFF, 0xFF]),
    );
    add(
        "connect with a typed object whose class name overruns",
        connect_with(&[0x10, 0xFF, 0xF0, b'x']),
    );
    add(
        "connect with a reference to nothing",
        connect_with(&[0x07, 0, 5]),
    );
    add(
        "connect with a reference to itself",
        connect_with(&[0x03, 0, 1, b'a', 0x07, 0, 0, 0, 0, 0x09]),
    );
    add(
        "connect with a reference bomb (2^40 leaves)",
        connect_with(&amf0_reference_bomb(40)),
    );
    add(
        "connect with an object end marker alone",
        connect_with(&[0x09]),
    );
    add(
        "connect with an object missing its end marker",
        connect_with(&[
            0x03, 0, 3, b'a', b'p', b'p', 0x02, 0, 4, b'l', b'i', b'v', b'e',
        ]),
    );
    add(
        "connect with a truncated date",
        connect_with(&[0x0B, 0, 0, 0]),
    );
    add(
        "connect with 70000 empty properties",
        connect_with(&{
            let mut v = vec![0x03];
            for _ in 0..70000 {
                v.extend_from_slice(&[0, 1, b'k', 0x05]);
            }
            v.extend_from_slice(&[0, 0, 9]);
            v
        }),
    );
    add("empty command message", cmd_msg(0, &[]));
    add("command name is a number", cmd_msg(0, &amf_num(7.0)));
    add(
        "command name cut short",
        cmd_msg(0, &[0x02, 0, 7, b'c', b'o']),
    );
    add(
        "connect without a transaction id",
        cmd_msg(0, &amf_str(b"connect")),
    );
    add(
        "AMF3 command nested 10000 deep",
        amf3_cmd("connect", &amf3_nested(10000)),
    );
    add(
        "AMF3 command with an array of 2^28 items",
        amf3_cmd("connect", &[0x09, 0xFF, 0xFF, 0xFF, 0x7F, 0x01]),
    );
    add(
        "AMF3 command with a string of 2^28 bytes",
        amf3_cmd("connect", &[0x06, 0xFF, 0xFF, 0xFF, 0x7F, b'a']),
    );
    add(
        "AMF3 command with an undefined string reference",
        amf3_cmd("connect", &[0x06, 0x08]),
    );
    add(
        "AMF3 command with an undefined traits reference",
        amf3_cmd("connect", &[0x0A, 0x0B, 0x01]),
    );
    add(
        "AMF3 command with an object of 2^24 sealed members",
        amf3_cmd("connect", &[0x0A, 0xFF, 0xFF, 0xFF, 0x73, 0x01]),
    );
    add(
        "AMF3 command with a reference bomb (2^40 leaves)",
        amf3_cmd("connect", &amf3_reference_bomb(40)),
    );
    add(
        "AMF3 command with marker 0x20",
        amf3_cmd("connect", &[0x20, 1, 2]),
    );
    add(
        "AMF3 byte array of 2^28 bytes",
        amf3_cmd("connect", &[0x0C, 0xFF, 0xFF, 0xFF, 0x7F]),
    );
    add(
        "AMF3 vector<int> of 2^28 items",
        amf3_cmd("connect", &[0x0D, 0xFF, 0xFF, 0xFF, 0x7F, 0x00]),
    );
    add(
        "AMF3 dictionary garbage",
        amf3_cmd("connect", &[0x11, 0x07, 0x00, 0x0A]),
    );
    // Inside publish and play after a proper connect and createStream.
    for (label, arg) in [
        ("nested 10000 deep", amf0_nested(10000)),
        ("with a reference bomb", amf0_reference_bomb(40)),
        ("with marker 0x42", vec![0x42]),
        (
            "with a strict array of 0xFFFFFFFF items",
            vec![0x0A, 0xFF, 0xFF, 0xFF, 0xFF],
        ),
    ] {
        for command_name in ["publish", "play"] {
            let arg = arg.clone();
            cases.push(stream_case(
                format!("amf: {command_name} {label}"),
                AT_ONCE,
                move |id| {
                    let mut p = amf_str(command_name.as_bytes());
                    p.extend(amf_num(0.0));
                    p.push(0x05);
                    p.extend(arg);
                    msg(8, mt::COMMAND_AMF0, id, &p)
                },
            ));
        }
    }
    cases
}

fn publish_cmd(id: u32, name: &str) -> Vec<u8> {
    msg(
        8,
        mt::COMMAND_AMF0,
        id,
        &command("publish", 0.0, vec![Value::Null, s(name), s("live")]),
    )
}

fn play_cmd(id: u32, name: &str) -> Vec<u8> {
    msg(
        8,
        mt::COMMAND_AMF0,
        id,
        &command("play", 0.0, vec![Value::Null, s(name), Value::Number(-2.0)]),
    )
}

fn command_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Out of order: before connect.
    for (label, bytes) in [
        ("publish before connect", publish_cmd(1, "x")),
        ("play before connect", play_cmd(1, "x")),
        (
            "createStream before connect",
            cmd_msg(0, &command("createStream", 2.0, vec![Value::Null])),
        ),
        (
            "deleteStream before connect",
            cmd_msg(
                0,
                &command("deleteStream", 2.0, vec![Value::Null, Value::Number(1.0)]),
            ),
        ),
    ] {
        // deleteStream needs no connection state: it is ignored, and the deadline closes.
        let bound = if label.starts_with("delete") {
            BY_DEADLINE
        } else {
            AT_ONCE
        };
        cases.push(chunk_case(format!("order: {label}"), bound, bytes));
    }
    cases.push(connected_case(
        "order: second connect",
        AT_ONCE,
        connect_cmd("live"),
    ));
    cases.push(connected_case(
        "order: publish on stream id 7 that was never created",
        AT_ONCE,
        publish_cmd(7, "ghost"),
    ));
    cases.push(connected_case(
        "order: play on stream id 7 that was never created",
        AT_ONCE,
        play_cmd(7, HEALTHY),
    ));
    cases.push(connected_case(
        "order: play on stream id 0",
        AT_ONCE,
        play_cmd(0, HEALTHY),
    ));
    cases.push(connected_case(
        "order: createStream nine times",
        AT_ONCE,
        (0..9)
            .flat_map(|i| {
                cmd_msg(
                    0,
                    &command("createStream", 10.0 + f64::from(i), vec![Value::Null]),
                )
            })
            .collect(),
    ));
    cases.push(stream_case(
        "order: publish the healthy stream a second time",
        AT_ONCE,
        |id| publish_cmd(id, HEALTHY),
    ));
    cases.push(stream_case(
        "order: publish twice on one stream id",
        AT_ONCE,
        |id| {
            let mut b = publish_cmd(id, "twice-a");
            b.extend(publish_cmd(id, "twice-b"));
            b
        },
    ));
    cases.push(stream_case("order: play, then publish", AT_ONCE, |id| {
        let mut b = play_cmd(id, HEALTHY);
        b.extend(cmd_msg(0, &command("createStream", 5.0, vec![Value::Null])));
        b.extend(publish_cmd(id + 1, "playing-then-publishing"));
        b
    }));
    // Not errors, but must not disturb the healthy stream; then the idle deadline closes them.
    cases.push(connected_case(
        "order: FCUnpublish of the healthy stream by a stranger",
        BY_IDLE,
        cmd_msg(
            0,
            &command("FCUnpublish", 3.0, vec![Value::Null, s(HEALTHY)]),
        ),
    ));
    cases.push(connected_case(
        "order: deleteStream of ids never created (1, -1, NaN, 1e300)",
        BY_IDLE,
        [1.0, -1.0, f64::NAN, 1e300]
            .iter()
            .flat_map(|&id| {
                cmd_msg(
                    0,
                    &command("deleteStream", 0.0, vec![Value::Null, Value::Number(id)]),
                )
            })
            .collect(),
    ));
    cases.push(connected_case(
        "order: closeStream and pause on stream 0",
        BY_IDLE,
        {
            let mut b = msg(
                8,
                mt::COMMAND_AMF0,
                0,
                &command("closeStream", 0.0, vec![Value::Null]),
            );
            b.extend(msg(
                8,
                mt::COMMAND_AMF0,
                0,
                &command(
                    "pause",
                    0.0,
                    vec![Value::Null, Value::Boolean(true), Value::Number(0.0)],
                ),
            ));
            b
        },
    ));
    cases.push(connected_case(
        "order: media and metadata from a connection that is not publishing",
        BY_IDLE,
        {
            let tags = media_tags();
            let mut b = Vec::new();
            for t in tags.iter().take(20) {
                b.extend(msg(6, t.tag_type as u8, 1, &t.body));
            }
            b
        },
    ));
    // Names that must be refused.
    let bad_names: [(&str, String); 9] = [
        ("'..'", "..".into()),
        ("'../healthy'", "../healthy".into()),
        ("with a slash", "a/b".into()),
        ("with NUL", "x\0y".into()),
        ("with a newline", "x\ny".into()),
        ("empty", String::new()),
        ("300 characters", "n".repeat(300)),
        ("percent-encoded traversal", "%2e%2e".into()),
        ("with a backslash", "..\\..\\etc".into()),
    ];
    for (label, name) in bad_names {
        let n2 = name.clone();
        cases.push(stream_case(
            format!("names: publish {label}"),
            AT_ONCE,
            move |id| publish_cmd(id, &n2),
        ));
        if !name.is_empty() {
            cases.push(stream_case(
                format!("names: play {label}"),
                AT_ONCE,
                move |id| play_cmd(id, &name),
            ));
        }
    }
    for (label, app) in [
        ("'..'", ".."),
        ("'../../etc'", "../../etc"),
        ("with NUL", "li\0ve"),
        ("with control characters", "li\x07ve\x1b"),
    ] {
        cases.push(chunk_case(
            format!("names: connect to app {label}"),
            AT_ONCE,
            connect_cmd(app),
        ));
    }
    cases.push(chunk_case(
        "names: connect to an app of 100000 characters",
        AT_ONCE,
        connect_cmd(&"a".repeat(100_000)),
    ));
    cases
}

#[test]
fn amf_and_command_garbage() {
    let mut h = Harness::start("", "");
    h.run("amf", amf_cases(), 12);
    h.run("commands", command_cases(), 12);
    let n = h.finish();
    eprintln!("amf_and_command_garbage: {n} cases");
}

/// Sends a raw HTTP request and expects one of `allowed` (then a close) within `bound`.
fn http_case(
    name: impl Into<String>,
    allowed: &'static [u16],
    bound: Duration,
    request: Vec<u8>,
) -> Case {
    case(name, move |p| {
        let mut s = tcp(p.http)?;
        send(&mut s, &request);
        expect_http_error(&mut s, allowed, false, bound)
    })
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

const BAD_REQUEST: &[u16] = &[400];
const NOT_FOUND_OR_BAD: &[u16] = &[400, 404];
const TOO_LARGE: &[u16] = &[400, 413, 414, 431];

fn http_cases() -> Vec<Case> {
    let mut cases = vec![
        http_case(
            "http: 10 KiB header value",
            TOO_LARGE,
            AT_ONCE,
            format!("GET /live/healthy.flv HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "v".repeat(10240)).into_bytes(),
        ),
        http_case(
            "http: 1 MiB head with no end",
            TOO_LARGE,
            AT_ONCE,
            format!("GET /{} HTTP/1.1\r\n", "a".repeat(1 << 20)).into_bytes(),
        ),
        http_case(
            "http: 100 headers",
            TOO_LARGE,
            AT_ONCE,
            {
                let mut r = String::from("GET /live/healthy.flv HTTP/1.1\r\n");
                for i in 0..100 {
                    r.push_str(&format!("X-H{i}: {i}\r\n"));
                }
                r.push_str("\r\n");
                r.into_bytes()
            },
        ),
        http_case("http: request line of garbage", BAD_REQUEST, AT_ONCE, b"GARBAGE\r\n\r\n".to_vec()),
        http_case("http: method only", BAD_REQUEST, AT_ONCE, b"GET\r\n\r\n".to_vec()),
        http_case(
            "http: HTTP/0.9 style request",
            BAD_REQUEST,
            AT_ONCE,
            b"GET /live/healthy.flv\r\n\r\n".to_vec(),
        ),
        http_case(
            "http: version HTTP/9.9",
            &[400, 505],
            AT_ONCE,
            b"GET /live/healthy.flv HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
        ),
        http_case(
            "http: path without a leading slash",
            BAD_REQUEST,
            AT_ONCE,
            get("live/healthy.flv"),
        ),
        http_case(
            "http: absolute URI with a traversal",
            NOT_FOUND_OR_BAD,
            AT_ONCE,
            get("http://x/../../etc/passwd"),
        ),
        http_case("http: '..' traversal", NOT_FOUND_OR_BAD, AT_ONCE, get("/../../etc/passwd")),
        http_case(
            "http: '..' inside a stream path",
            NOT_FOUND_OR_BAD,
            AT_ONCE,
            get("/live/../live/healthy.flv"),
        ),
        http_case(
            "http: percent-encoded '..'",
            NOT_FOUND_OR_BAD,
            AT_ONCE,
            get("/live/%2e%2e/healthy.flv"),
        ),
        http_case(
            "http: percent-encoded slash and '..'",
            NOT_FOUND_OR_BAD,
            AT_ONCE,
            get("/live/..%2f..%2fetc%2fpasswd.flv"),
        ),
        http_case(
            "http: double percent-encoding",
            NOT_FOUND_OR_BAD,
            AT_ONCE,
            get("/live/%252e%252e/healthy.flv"),
        ),
        http_case(
            "http: overlong UTF-8 dot",
            NOT_FOUND_OR_BAD,
            AT_ONCE,
            get("/live/%c0%ae%c0%ae/healthy.flv"),
        ),
        http_case("http: percent-encoded NUL", NOT_FOUND_OR_BAD, AT_ONCE, get("/live/healthy%00.flv")),
        http_case(
            "http: raw NUL in the path",
            BAD_REQUEST,
            AT_ONCE,
            b"GET /live/heal\0thy.flv HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        http_case("http: broken percent escape", BAD_REQUEST, AT_ONCE, get("/live/%zz.flv")),
        http_case("http: backslash traversal", NOT_FOUND_OR_BAD, AT_ONCE, get("/live/..\\..\\healthy.flv")),
        http_case("http: empty segment", NOT_FOUND_OR_BAD, AT_ONCE, get("/live//healthy.flv")),
        http_case(
            "http: 7000-character path",
            &[400, 404, 414, 431],
            AT_ONCE,
            get(&format!("/live/{}.flv", "a".repeat(7000))),
        ),
        http_case(
            "http: POST with a 100 GB Content-Length",
            &[400, 405, 413],
            AT_ONCE,
            b"POST /live/healthy.flv HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\nabc".to_vec(),
        ),
        http_case(
            "http: negative Content-Length",
            &[400, 405],
            AT_ONCE,
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
        ),
        http_case(
            "http: two different Content-Lengths",
            &[400, 405],
            AT_ONCE,
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
        ),
        http_case(
            "http: chunked body with a garbage size",
            &[400, 405, 411, 501],
            AT_ONCE,
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\n".to_vec(),
        ),
        http_case(
            "http: DELETE",
            &[405],
            AT_ONCE,
            b"DELETE /live/healthy.flv HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        http_case(
            "http: 5000-character method",
            &[400, 405, 431],
            AT_ONCE,
            format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "G".repeat(5000)).into_bytes(),
        ),
        http_case(
            "http: header without a colon",
            BAD_REQUEST,
            AT_ONCE,
            b"GET /live/healthy.flv HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
        ),
        http_case(
            "http: obsolete line folding",
            &[400],
            AT_ONCE,
            b"GET /live/healthy.flv HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n".to_vec(),
        ),
        http_case(
            "http: non-UTF-8 header name",
            BAD_REQUEST,
            AT_ONCE,
            b"GET /live/healthy.flv HTTP/1.1\r\n\xff\xfe: x\r\n\r\n".to_vec(),
        ),
        http_case(
            "http: RTMP handshake on the HTTP port",
            BAD_REQUEST,
            AT_ONCE,
            c0c1(),
        ),
        http_case(
            "http: TLS ClientHello on the HTTP port",
            BAD_REQUEST,
            AT_ONCE,
            vec![0x16, 3, 1, 0, 0x31, 1, 0, 0, 0x2d, 3, 3, 0, 0, 0, 0, b'\r', b'\n', b'\r', b'\n'],
        ),
        http_case(
            "http: pipelined junk after a preflight",
            &[204, 200],
            AT_ONCE,
            b"OPTIONS /live/healthy.flv HTTP/1.1\r\nHost: x\r\nOrigin: http://o\r\n\r\n\x01\x02JUNK\r\n\r\n".to_vec(),
        ),
        raw_case("http: silent client", http_port, BY_DEADLINE, |_| Ok(())),
        raw_case("http: half a request line", http_port, BY_DEADLINE, |s| {
            send(s, b"GET /live/hea");
            Ok(())
        }),
        raw_case("http: head without its last empty line", http_port, BY_DEADLINE, |s| {
            send(s, b"GET /live/healthy.flv HTTP/1.1\r\nHost: x\r\n");
            Ok(())
        }),
        case("http: one byte of a request every 100 ms", |p| {
            let mut s = tcp(p.http)?;
            trickle(
                &mut s,
                b"GET /live/healthy.flv HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n\r\n",
                Duration::from_millis(100),
                BY_DEADLINE,
            )
        }),
        case("http: endless header lines, one every 100 ms", |p| {
            let mut s = tcp(p.http)?;
            send(&mut s, b"GET /live/healthy.flv HTTP/1.1\r\n");
            trickle(&mut s, b"X: y\r\n", Duration::from_millis(100), BY_DEADLINE)
        }),
        case("http: junk pipelined after a streaming GET", |p| {
            let mut s = tcp(p.http)?;
            send(&mut s, &get("/live/healthy.flv"));
            let (head, _) = read_head(&mut s, AT_ONCE)?;
            if !head.starts_with("HTTP/1.1 200") {
                return Err(format!("the GET itself failed: {head}"));
            }
            // The request is done; whatever the player sends now must not grow without bound.
            let junk = noise(21, 2 << 20);
            let t0 = Instant::now();
            for piece in junk.chunks(65536) {
                if s.write_all(piece).is_err() {
                    return Ok(Verdict::Closed(t0.elapsed()));
                }
            }
            expect_closed(&mut s, AT_ONCE)
        }),
    ];
    // Every error answer above comes with a close; pipelining after one is also closed.
    cases.push(http_case(
        "http: second request pipelined after a 400",
        BAD_REQUEST,
        AT_ONCE,
        b"BAD\r\n\r\nGET /live/healthy.flv HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ));
    cases
}

/// A WebSocket frame from a client (masked unless `unmasked`).
fn ws_frame(first: u8, payload: &[u8], unmasked: bool) -> Vec<u8> {
    let mut v = vec![first];
    let mask_bit = if unmasked { 0 } else { 0x80 };
    match payload.len() {
        n if n < 126 => v.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            v.push(mask_bit | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(mask_bit | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if unmasked {
        v.extend_from_slice(payload);
    } else {
        let key = [0x11, 0x22, 0x33, 0x44];
        v.extend_from_slice(&key);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }
    v
}

fn ws_upgrade(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Upgrades to a WebSocket-FLV player of the healthy stream, then sends `frames`.
fn ws_case(name: impl Into<String>, bound: Duration, frames: Vec<u8>) -> Case {
    case(name, move |p| {
        let mut s = tcp(p.http)?;
        send(
            &mut s,
            &ws_upgrade("/live/healthy.flv", "Sec-WebSocket-Version: 13\r\n"),
        );
        let (head, _) = read_head(&mut s, AT_ONCE)?;
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("upgrade refused: {head}"));
        }
        send(&mut s, &frames);
        expect_closed(&mut s, bound)
    })
}

fn websocket_cases() -> Vec<Case> {
    vec![
        ws_case("ws: unmasked frame", AT_ONCE, ws_frame(0x82, b"hello", true)),
        ws_case(
            "ws: frame claiming 2^63 bytes",
            AT_ONCE,
            vec![0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4],
        ),
        ws_case(
            "ws: 1 MiB binary frame (above ws_max_frame)",
            AT_ONCE,
            ws_frame(0x82, &noise(2, 1 << 20), false),
        ),
        ws_case("ws: reserved opcode 3", AT_ONCE, ws_frame(0x83, b"x", false)),
        ws_case("ws: reserved opcode 0xB", AT_ONCE, ws_frame(0x8B, b"x", false)),
        ws_case("ws: RSV1 set", AT_ONCE, ws_frame(0xC2, b"x", false)),
        ws_case("ws: fragmented ping", AT_ONCE, ws_frame(0x09, b"x", false)),
        ws_case("ws: ping of 200 bytes", AT_ONCE, ws_frame(0x89, &[7; 200], false)),
        ws_case(
            "ws: continuation without a start",
            AT_ONCE,
            ws_frame(0x80, b"x", false),
        ),
        ws_case(
            "ws: new data frame inside a fragmented message",
            AT_ONCE,
            [ws_frame(0x02, b"a", false), ws_frame(0x82, b"b", false)].concat(),
        ),
        ws_case("ws: close with a 1-byte payload", AT_ONCE, ws_frame(0x88, &[3], false)),
        ws_case(
            "ws: close with invalid code 999",
            AT_ONCE,
            ws_frame(0x88, &999u16.to_be_bytes(), false),
        ),
        ws_case(
            "ws: close with a non-UTF-8 reason",
            AT_ONCE,
            ws_frame(0x88, &[0x03, 0xE8, 0xFF, 0xFE], false),
        ),
        ws_case(
            "ws: clean close",
            AT_ONCE,
            ws_frame(0x88, &1000u16.to_be_bytes(), false),
        ),
        http_case(
            "ws: upgrade with version 8",
            &[400, 426],
            AT_ONCE,
            ws_upgrade("/live/healthy.flv", "Sec-WebSocket-Version: 8\r\n"),
        ),
        http_case(
            "ws: upgrade without a key",
            &[400],
            AT_ONCE,
            b"GET /live/healthy.flv HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec(),
        ),
        http_case(
            "ws: upgrade to a traversal path",
            NOT_FOUND_OR_BAD,
            AT_ONCE,
            ws_upgrade("/live/%2e%2e/healthy.flv", "Sec-WebSocket-Version: 13\r\n"),
        ),
    ]
}

/// A WebSocket player that floods pings and never reads the pongs: the server must push back
/// (stop reading) or drop it, not queue the pongs without bound.
fn ws_ping_flood_case() -> Case {
    case("ws: 500000 pings from a client that never reads", |p| {
        let mut s = tcp(p.http)?;
        send(
            &mut s,
            &ws_upgrade("/live/healthy.flv", "Sec-WebSocket-Version: 13\r\n"),
        );
        let (head, _) = read_head(&mut s, AT_ONCE)?;
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("upgrade refused: {head}"));
        }
        let rss_before = proc_rss_kib(p.pid).ok_or("no RSS")?;
        let ping = ws_frame(0x89, &[0x55; 125], false);
        let burst: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 1000)
            .collect();
        let t0 = Instant::now();
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let mut sent = 0usize;
        for _ in 0..500 {
            if s.write_all(&burst).is_err() {
                break;
            }
            sent += burst.len();
        }
        let rss_after = proc_rss_kib(p.pid).ok_or("no RSS")?;
        let grown_mib = rss_after.saturating_sub(rss_before) / 1024;
        if grown_mib > 32 {
            return Err(format!(
                "server RSS grew by {grown_mib} MiB while a client sent {} MiB of pings and read \
                 no pongs",
                sent >> 20
            ));
        }
        let _ = expect_closed(&mut s, Duration::from_millis(100));
        Ok(Verdict::Answered(
            format!(
                "{} MiB of pings sent, server RSS +{grown_mib} MiB",
                sent >> 20
            ),
            t0.elapsed(),
        ))
    })
}

#[test]
fn http_and_websocket_garbage() {
    let mut h = Harness::start("", "");
    h.run("http", http_cases(), 12);
    h.run("websocket", websocket_cases(), 8);
    let n = h.finish();
    eprintln!("http_and_websocket_garbage: {n} cases");
}

#[test]
fn websocket_ping_flood_is_bounded() {
    let mut h = Harness::start("", "");
    h.run("websocket flood", vec![ws_ping_flood_case()], 1);
    // Let the healthy stream run long enough for its own checks to mean something.
    sleep(Duration::from_secs(2));
    h.finish();
}

/// FLV-level garbage a publisher may send in audio, video and data messages.
fn flv_garbage() -> Vec<(&'static str, u8, Vec<u8>)> {
    let v = mt::VIDEO;
    let a = mt::AUDIO;
    let d = mt::DATA_AMF0;
    let mut set_data_frame = amf_str(b"@setDataFrame");
    set_data_frame.extend(amf_str(b"onMetaData"));
    let mut deep_meta = set_data_frame.clone();
    deep_meta.extend(amf0_nested(5000));
    let mut bomb_meta = set_data_frame.clone();
    bomb_meta.extend(amf0_reference_bomb(40));
    vec![
        ("empty video message", v, vec![]),
        ("AVC header cut after one byte", v, vec![0x17]),
        ("AVCPacketType 5", v, vec![0x17, 0x05, 0, 0, 0, 1, 2]),
        ("video codec id 15", v, vec![0x1F, 0x01, 0, 0, 0, 9]),
        ("Sorenson H.263 video", v, vec![0x22, 0, 0, 0x84, 0]),
        (
            "AVC sequence header of garbage",
            v,
            [vec![0x17, 0x00, 0, 0, 0], noise(1, 40)].concat(),
        ),
        (
            "AVC frame whose NALU length overruns",
            v,
            vec![0x27, 0x01, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xF0, 0x41, 0x9A],
        ),
        (
            "Enhanced RTMP video with fourcc ZZZZ",
            v,
            vec![0x91, b'Z', b'Z', b'Z', b'Z', 1, 2, 3],
        ),
        (
            "Enhanced RTMP video cut in its fourcc",
            v,
            vec![0x90, b'h', b'v'],
        ),
        (
            "Enhanced RTMP hvc1 packet type 7",
            v,
            vec![0x97, b'h', b'v', b'c', b'1', 0, 0],
        ),
        (
            "Enhanced RTMP hvc1 sequence start of garbage",
            v,
            [vec![0x90, b'h', b'v', b'c', b'1'], noise(2, 30)].concat(),
        ),
        ("video command frame", v, vec![0x57, 0x00]),
        ("AVC end of sequence", v, vec![0x17, 0x02, 0, 0, 0]),
        ("64 KiB video of noise", v, noise(3, 65536)),
        ("empty audio message", a, vec![]),
        ("AAC header cut after one byte", a, vec![0xAF]),
        ("AAC config of garbage", a, vec![0xAF, 0x00, 0xFF]),
        ("AACPacketType 7", a, vec![0xAF, 0x07, 1, 2]),
        ("sound format 15", a, vec![0xFF, 1, 2]),
        (
            "Enhanced RTMP audio with fourcc ZZZZ",
            a,
            vec![0x91, b'Z', b'Z', b'Z', b'Z', 1],
        ),
        ("64 KiB audio of noise", a, noise(4, 65536)),
        ("data message with marker 0x42", d, vec![0x42, 0, 1]),
        ("metadata nested 5000 deep", d, deep_meta),
        ("metadata with a reference bomb", d, bomb_meta),
        (
            "metadata of noise",
            d,
            [set_data_frame, noise(5, 200)].concat(),
        ),
    ]
}

#[test]
fn flv_tag_garbage_from_a_publisher_only_costs_those_tags() {
    let mut h = Harness::start("", "");
    let garbage = flv_garbage();
    let names: Vec<&str> = garbage.iter().map(|g| g.0).collect();
    let port = h.server.http_port;
    let rtmp = h.server.rtmp_port;
    let limit = Duration::from_secs(60);
    let players = [
        (
            "garbage HTTP-FLV player",
            flv_player(port, "garbage", limit),
        ),
        ("garbage RTMP player", rtmp_player(rtmp, "garbage", limit)),
    ];
    sleep(Duration::from_millis(400));
    let messages: Vec<(u8, Vec<u8>)> = garbage.into_iter().map(|(_, t, b)| (t, b)).collect();
    let kinds = messages.len();
    // Twice real time, one garbage message after every fifth media message.
    let publisher = Publisher::start(rtmp, "garbage", 2.0, messages, 5);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(6) {
        sleep(Duration::from_millis(200));
        h.assert_up("while garbage was published");
    }
    let sent = publisher.finish();
    assert!(
        sent.garbage >= 2 * kinds,
        "each garbage kind sent at least twice: {} messages for {kinds} kinds",
        sent.garbage
    );
    for (label, p) in players {
        let got = p
            .join()
            .expect("player thread")
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        check_player(label, &got, &sent.frames, false)
            .unwrap_or_else(|e| panic!("{e}; log tail:\n{}", log_tail(&h.server.log(), 30)));
        eprintln!(
            "{label}: all {} valid frames among {} received; {} garbage messages sent",
            sent.frames.len(),
            got.frames.len(),
            sent.garbage
        );
    }
    for name in &names {
        eprintln!("[flv] ok   {name}: publisher kept, its players lost only garbage");
    }
    h.cases += names.len();
    let n = h.finish();
    eprintln!("flv_tag_garbage_from_a_publisher_only_costs_those_tags: {n} cases");
}

#[test]
fn slowloris_crowd_is_closed_by_the_deadlines_while_a_publisher_connects_at_once() {
    let mut h = Harness::start("", "");
    let p = h.ports();
    // 60 silent RTMP connections, 60 trickling a handshake, 60 trickling an HTTP head.
    let mut crowd: Vec<(&str, TcpStream, Vec<u8>)> = Vec::new();
    let opened = Instant::now();
    for i in 0..60 {
        crowd.push(("silent RTMP", tcp(p.rtmp).expect("connect"), vec![]));
        crowd.push((
            "trickled RTMP handshake",
            tcp(p.rtmp).expect("connect"),
            c0c1(),
        ));
        crowd.push((
            "trickled HTTP head",
            tcp(p.http).expect("connect"),
            format!(
                "GET /live/s{i}.flv HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n",
                "z".repeat(200)
            )
            .into_bytes(),
        ));
    }
    // A real publisher and a player still get through at once.
    let t0 = Instant::now();
    let publisher = Publisher::start(p.rtmp, "busy", 1.0, vec![], 0);
    let publish_took = t0.elapsed();
    assert!(
        publish_took < Duration::from_secs(1),
        "publishing took {publish_took:?} behind the idle crowd"
    );
    let t1 = Instant::now();
    let mut player = tcp(p.http).expect("connect player");
    send(&mut player, &get("/live/busy.flv"));
    let (head, _) = read_head(&mut player, Duration::from_secs(2)).expect("player answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let play_took = t1.elapsed();
    assert!(
        play_took < Duration::from_secs(1),
        "playing took {play_took:?} behind the idle crowd"
    );
    // Trickle one byte per connection every 100 ms until each is closed.
    let mut pos = vec![0usize; crowd.len()];
    let mut closed_at: Vec<Option<Duration>> = vec![None; crowd.len()];
    let mut buf = [0u8; 8192];
    for (_, s, _) in crowd.iter_mut() {
        s.set_nonblocking(true).expect("nonblocking");
    }
    while closed_at.iter().any(Option::is_none)
        && opened.elapsed() < BY_DEADLINE + Duration::from_secs(2)
    {
        for (i, (_, s, bytes)) in crowd.iter_mut().enumerate() {
            if closed_at[i].is_some() {
                continue;
            }
            if let Some(b) = bytes.get(pos[i]) {
                if s.write(&[*b]).is_ok() {
                    pos[i] += 1;
                }
            }
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        closed_at[i] = Some(opened.elapsed());
                        break;
                    }
                    Ok(_) => continue,
                    Err(e) if would_block(&e) => break,
                    Err(_) => {
                        closed_at[i] = Some(opened.elapsed());
                        break;
                    }
                }
            }
        }
        sleep(Duration::from_millis(100));
    }
    for kind in [
        "silent RTMP",
        "trickled RTMP handshake",
        "trickled HTTP head",
    ] {
        let times: Vec<Option<Duration>> = crowd
            .iter()
            .zip(&closed_at)
            .filter(|((k, _, _), _)| *k == kind)
            .map(|(_, t)| *t)
            .collect();
        let open = times.iter().filter(|t| t.is_none()).count();
        assert_eq!(
            open, 0,
            "{open} {kind} connections still open after {BY_DEADLINE:?}"
        );
        let latest = times.iter().flatten().max().copied().unwrap_or_default();
        assert!(
            latest >= Duration::from_millis(HANDSHAKE_MS.min(HEAD_MS) - 200),
            "{kind}: closed before any deadline ({latest:?})"
        );
        eprintln!("[slowloris] ok   60 {kind} connections: all closed within {latest:?}");
    }
    // The crowd's publisher and player are fine too.
    drop(player);
    let sent = publisher.finish();
    assert!(
        sent.frames.len() > 10,
        "busy publisher sent {}",
        sent.frames.len()
    );
    h.cases += 4;
    let n = h.finish();
    eprintln!("slowloris: {n} cases");
}

#[test]
fn stalled_player_is_dropped_and_memory_stays_bounded() {
    let mut h = Harness::start(
        "player_queue_soft_bytes = 524288\nplayer_queue_hard_bytes = 2097152",
        "",
    );
    let p = h.ports();
    let rss_before = proc_rss_kib(p.pid).expect("server RSS");
    let limit = Duration::from_secs(60);
    let reader = flv_player(p.http, "flood", limit);
    // The stalled player asks for the same stream, then never reads again.
    let mut stalled = tcp(p.http).expect("connect");
    send(&mut stalled, &get("/live/flood.flv"));
    sleep(Duration::from_millis(400));
    // Eight times real time: about 1.7 MB/s.
    let publisher = Publisher::start(p.rtmp, "flood", 8.0, vec![], 0);
    let t0 = Instant::now();
    let mut max_rss = rss_before;
    let mut dropped = false;
    while t0.elapsed() < Duration::from_secs(12) {
        sleep(Duration::from_millis(200));
        max_rss = max_rss.max(proc_rss_kib(p.pid).unwrap_or(0));
        if h.server.log().contains("player too slow") {
            dropped = true;
            break;
        }
    }
    assert!(
        dropped,
        "the stalled player was not dropped; log tail:\n{}",
        log_tail(&h.server.log(), 20)
    );
    let dropped_after = t0.elapsed();
    // What the kernel still holds for it drains, then EOF.
    let verdict =
        expect_closed(&mut stalled, Duration::from_secs(10)).expect("stalled player closed");
    sleep(Duration::from_secs(1));
    max_rss = max_rss.max(proc_rss_kib(p.pid).unwrap_or(0));
    let sent = publisher.finish();
    let got = reader.join().expect("reader").expect("reader result");
    check_player("flood reader", &got, &sent.frames, true)
        .expect("the reading player lost nothing");
    let grown = max_rss.saturating_sub(rss_before) / 1024;
    assert!(grown < 64, "server RSS grew by {grown} MiB");
    eprintln!(
        "[stall] ok   stalled player dropped after {dropped_after:?}, socket {verdict}; \
         reader got all {} frames; server RSS +{grown} MiB",
        got.frames.len()
    );
    h.cases += 1;
    let n = h.finish();
    eprintln!("stalled player: {n} cases");
}

/// One publish-then-crash cycle: connect, publish `live/cycle`, send the first tags, drop.
fn publish_and_crash(port: u16) -> Result<usize, String> {
    let mut refusals = 0;
    loop {
        match start_publishing(port, "cycle", Duration::from_secs(5)) {
            Ok(mut c) => {
                for tag in media_tags()
                    .iter()
                    .filter(|t| t.tag_type != TagType::Script)
                    .take(4)
                {
                    c.session
                        .send_media(tag.tag_type as u8, tag.timestamp, &tag.body)
                        .map_err(|e| e.to_string())?;
                }
                c.flush()?;
                drop(c);
                return Ok(refusals);
            }
            // The previous crash may not be noticed yet: the name is still taken for a moment.
            Err(e) if e.contains("rejected") && refusals < 100 => {
                refusals += 1;
                sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn thousand_publish_kill_republish_cycles_leak_nothing() {
    let mut h = Harness::start("", "");
    let p = h.ports();
    for _ in 0..50 {
        publish_and_crash(p.rtmp).expect("warm-up cycle");
    }
    sleep(Duration::from_millis(GRACE_MS + 500));
    let fds_before = proc_fd_count(p.pid).expect("fd count");
    let rss_before = proc_rss_kib(p.pid).expect("RSS");
    let t0 = Instant::now();
    let mut refusals = 0;
    for i in 0..1000 {
        refusals += publish_and_crash(p.rtmp).unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        if i % 100 == 0 {
            h.assert_up(&format!("at cycle {i}"));
        }
    }
    let took = t0.elapsed();
    // Tolerance: fds back to the baseline (+2 for sockets still closing); RSS within 16 MiB
    // (allocator caches and the healthy stream's buffers vary by a few MiB).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut fds, mut rss);
    loop {
        fds = proc_fd_count(p.pid).expect("fd count");
        rss = proc_rss_kib(p.pid).expect("RSS");
        if (fds <= fds_before + 2 && rss <= rss_before + 16 * 1024) || Instant::now() > deadline {
            break;
        }
        sleep(Duration::from_millis(200));
    }
    assert!(
        fds <= fds_before + 2,
        "fds: {fds_before} before, {fds} after 1000 cycles"
    );
    assert!(
        rss <= rss_before + 16 * 1024,
        "RSS: {rss_before} KiB before, {rss} KiB after 1000 cycles"
    );
    let publishes = h
        .server
        .log()
        .lines()
        .filter(|l| l.contains("session start") && l.contains("role=publish stream=live/cycle "))
        .count();
    assert!(
        publishes >= 1050,
        "only {publishes} publish sessions logged"
    );
    eprintln!(
        "[cycles] ok   1000 publish/crash cycles in {took:?} ({refusals} quick republishes refused \
         while the crash was unseen); fds {fds_before} -> {fds}, RSS {rss_before} -> {rss} KiB"
    );
    h.cases += 1;
    let n = h.finish();
    eprintln!("cycles: {n} cases");
}
