//! RTSP messages: the reader (messages and interleaved frames on one stream, limits, splits),
//! the writers, Transport headers and authentication.

use bytes::{Bytes, BytesMut};
use rill_core::rtsp::auth::{digest_response, Authorization, Challenge};
use rill_core::rtsp::transport::{LowerTransport, Transport};
use rill_core::rtsp::{
    write_interleaved, Item, Message, Reader, Request, Response, RtspError, RtspLimits,
};

fn read_all(limits: &RtspLimits, chunks: &[&[u8]]) -> (Vec<Item>, Option<RtspError>) {
    let mut r = Reader::new(limits.clone());
    let mut items = Vec::new();
    for c in chunks {
        if let Err(e) = r.push(c) {
            return (items, Some(e));
        }
        loop {
            match r.poll_item() {
                Ok(Some(i)) => items.push(i),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(r.poll_item(), Err(e.clone()), "errors are final");
                    return (items, Some(e));
                }
            }
        }
    }
    (items, None)
}

const SESSION: &[u8] = b"OPTIONS rtsp://h/live RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: x\r\n\r\n\
$\x00\x00\x03abc\
\r\n\
ANNOUNCE rtsp://h/live RTSP/1.0\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n\
$\x01\x00\x00\
RTSP/1.0 200 OK\r\nCSeq: 7\r\nSession: 12345678;timeout=60\r\nX-Folded: a\r\n  b\r\n\r\n";

#[test]
fn messages_and_interleaved_frames_on_one_stream() {
    let limits = RtspLimits::default();
    let (items, err) = read_all(&limits, &[SESSION]);
    assert_eq!(err, None);
    assert_eq!(items.len(), 5, "{items:?}");
    let Item::Message(Message::Request(opt)) = &items[0] else {
        panic!("{:?}", items[0])
    };
    assert_eq!(
        (opt.method.as_str(), opt.uri.as_str()),
        ("OPTIONS", "rtsp://h/live")
    );
    assert_eq!(opt.headers.cseq(), Some(1));
    assert_eq!(
        items[1],
        Item::Interleaved {
            channel: 0,
            payload: Bytes::from_static(b"abc")
        }
    );
    let Item::Message(Message::Request(ann)) = &items[2] else {
        panic!()
    };
    assert_eq!(&ann.body[..], b"v=0\r\n");
    assert_eq!(ann.headers.get("content-type"), Some("application/sdp"));
    assert_eq!(
        items[3],
        Item::Interleaved {
            channel: 1,
            payload: Bytes::new()
        }
    );
    let Item::Message(Message::Response(resp)) = &items[4] else {
        panic!()
    };
    assert_eq!((resp.status, resp.reason.as_str()), (200, "OK"));
    assert_eq!(resp.headers.session_id(), Some("12345678"));
    assert_eq!(resp.headers.get("X-Folded"), Some("a b"));

    // Any split gives the same items.
    let bytewise: Vec<&[u8]> = SESSION.chunks(1).collect();
    assert_eq!(read_all(&limits, &bytewise), (items.clone(), None));
    for cut in 0..SESSION.len() {
        let (a, b) = SESSION.split_at(cut);
        assert_eq!(
            read_all(&limits, &[a, b]),
            (items.clone(), None),
            "cut {cut}"
        );
    }
}

#[test]
fn writers_round_trip() {
    let req = Request::new("SETUP", "rtsp://h/live/trackID=0")
        .header("CSeq", "3")
        .header("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1");
    let resp = Response::new(200)
        .header("CSeq", "3")
        .header("Injected", "a\r\nEvil: 1")
        .body("application/sdp", Bytes::from_static(b"v=0\r\n"));
    let mut out = BytesMut::new();
    req.write(&mut out);
    write_interleaved(5, b"rtp", &mut out).unwrap();
    resp.write(&mut out);
    assert!(write_interleaved(0, &vec![0; 70000], &mut out.clone()).is_err());
    let (items, err) = read_all(&RtspLimits::default(), &[&out]);
    assert_eq!(err, None);
    assert_eq!(items[0], Item::Message(Message::Request(req)));
    assert_eq!(
        items[1],
        Item::Interleaved {
            channel: 5,
            payload: Bytes::from_static(b"rtp")
        }
    );
    let Item::Message(Message::Response(back)) = &items[2] else {
        panic!()
    };
    assert_eq!(back.reason, "OK");
    assert_eq!(back.headers.get("Injected"), Some("a  Evil: 1"));
    assert_eq!(back.headers.get("Evil"), None);
    assert_eq!(back.headers.get("Content-Length"), Some("5"));
    assert_eq!(&back.body[..], b"v=0\r\n");
    assert_eq!(Response::new(461).reason, "Unsupported Transport");
}

#[test]
fn limits_and_malformed_input() {
    let small = RtspLimits {
        max_line_bytes: 64,
        max_headers: 3,
        max_body_bytes: 100,
    };
    let cases: &[(&[u8], u16)] = &[
        (
            b"ANNOUNCE rtsp://h/ RTSP/1.0\r\nContent-Length: 99999999999\r\n\r\n",
            413,
        ),
        (
            b"ANNOUNCE rtsp://h/ RTSP/1.0\r\nContent-Length: 101\r\n\r\n",
            413,
        ),
        (
            b"ANNOUNCE rtsp://h/ RTSP/1.0\r\nContent-Length: -1\r\n\r\n",
            400,
        ),
        (
            b"OPTIONS * RTSP/1.0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
            431,
        ),
        (&[b'O'; 65], 431),
        (b"OPTIONS * HTTP/1.1\r\n\r\n", 400),
        (b"OPTIONS *\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\nno colon\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\n folded first\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\nBad Name: x\r\n\r\n", 400),
        (b"RTSP/1.0 2000 OK\r\n\r\n", 400),
        (b"OPT\xffONS * RTSP/1.0\r\n\r\n", 400),
    ];
    for (input, status) in cases {
        let (items, err) = read_all(&small, &[input]);
        assert!(items.is_empty());
        let err =
            err.unwrap_or_else(|| panic!("no error for {:?}", String::from_utf8_lossy(input)));
        assert_eq!(err.status(), *status, "{err}");
        assert!(err.to_string().starts_with("rtsp: "));
    }
    // A long line is refused before its end arrives.
    let mut r = Reader::new(small.clone());
    r.push(&[b'a'; 64]).unwrap();
    assert!(matches!(
        r.poll_item(),
        Err(RtspError::LineTooLong {
            offset: 0,
            limit: 64
        })
    ));
    // Binary junk is refused as soon as it arrives, before any line feed: a start that no
    // method begins with, or a byte no request line holds.
    for junk in [
        &b"\x00\x01\x02"[..],
        b"\x16\x03\x01\x02\x00",
        b"OPTIONS \x01",
        b"DESC\xc3\xa9",
    ] {
        let mut r = Reader::new(small.clone());
        r.push(junk).unwrap();
        let err = r.poll_item().expect_err("junk is refused at once");
        assert!(
            matches!(err, RtspError::Malformed { .. }),
            "{:?}: {err}",
            String::from_utf8_lossy(junk)
        );
        assert_eq!(err.status(), 400);
    }
    // A request line arriving a byte at a time is fine.
    let mut r = Reader::new(small.clone());
    for b in b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n" {
        r.push(&[*b]).unwrap();
        let _ = r
            .poll_item()
            .expect("no error while the line is valid so far");
    }
    // Pushing far more than one message without reading is refused.
    let mut r = Reader::new(small);
    assert!(matches!(
        r.push(&vec![b'$'; 70_000]),
        Err(RtspError::BufferFull { .. })
    ));
    // A large interleaved frame fits the default buffer.
    let mut frame = BytesMut::new();
    write_interleaved(0, &vec![7; 65535], &mut frame).unwrap();
    let (items, err) = read_all(&RtspLimits::default(), &[&frame]);
    assert_eq!((items.len(), err), (1, None));
}

#[test]
fn transport_headers() {
    let list = Transport::parse_list(
        "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record, RTP/AVP;unicast;client_port=5000-5001;ssrc=1A2B3C4D, RTP/AVP;multicast;ttl=1",
    )
    .unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].lower, LowerTransport::Tcp);
    assert_eq!(list[0].interleaved, Some((0, 1)));
    assert!(list[0].record);
    assert_eq!(list[1].lower, LowerTransport::Udp);
    assert_eq!(list[1].client_port, Some((5000, 5001)));
    assert_eq!(list[1].ssrc, Some(0x1A2B_3C4D));
    assert!(!list[2].unicast);
    assert_eq!(list[2].other, vec!["ttl=1".to_owned()]);
    for t in &list {
        assert_eq!(&Transport::parse(&t.to_string()).unwrap(), t);
    }
    let single = Transport::parse("RTP/AVP/UDP;unicast;client_port=6000;mode=\"RECORD\"").unwrap();
    assert_eq!(single.client_port, Some((6000, 6001)));
    assert!(single.record);
    let mut reply = Transport::new(LowerTransport::Udp);
    reply.client_port = Some((6000, 6001));
    reply.server_port = Some((30000, 30001));
    assert_eq!(
        reply.to_string(),
        "RTP/AVP;unicast;client_port=6000-6001;server_port=30000-30001"
    );
    for bad in [
        "",
        "RAW/RAW/UDP",
        "RTP/AVP/SCTP",
        "RTP/AVP;client_port=x",
        "RTP/AVP;client_port=65535",
        "RTP/AVP;interleaved=300",
        "RTP/AVP;ssrc=zz",
    ] {
        let e = Transport::parse_list(bad).unwrap_err();
        assert_eq!(e.status(), 461, "{bad}");
    }
}

#[test]
fn basic_and_digest_auth() {
    // RFC 2617 section 3.5 example.
    assert_eq!(
        digest_response(
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b"))
        ),
        "6629fae49393a05397450978507c4ef1"
    );
    let challenge = Challenge::Digest {
        realm: "rill".to_owned(),
        nonce: "abc\"def".to_owned(),
        opaque: Some("op".to_owned()),
        qop_auth: false,
    };
    let header = challenge.to_header();
    assert_eq!(Challenge::parse(&header).unwrap(), challenge);
    let uri = "rtsp://h/live";
    let answer = challenge.authorization("user", "secret", "DESCRIBE", uri, "cn");
    let auth = Authorization::parse(&answer).unwrap();
    assert_eq!(auth.username(), "user");
    assert!(auth.verify("DESCRIBE", "secret"));
    assert!(!auth.verify("DESCRIBE", "wrong"));
    assert!(!auth.verify("ANNOUNCE", "secret"));
    let Authorization::Digest(d) = &auth else {
        panic!()
    };
    assert_eq!(d.nonce, "abc\"def");
    assert_eq!(d.opaque.as_deref(), Some("op"));

    // With qop=auth.
    let q = Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth,auth-int\"").unwrap();
    let answer = q.authorization("u", "p", "PLAY", uri, "c0ffee");
    assert!(answer.contains("qop=auth, nc=00000001, cnonce=\"c0ffee\""));
    assert!(Authorization::parse(&answer).unwrap().verify("PLAY", "p"));

    // Basic.
    let b = Challenge::Basic {
        realm: "rill".to_owned(),
    };
    assert_eq!(Challenge::parse(&b.to_header()).unwrap(), b);
    let answer = b.authorization("user", "pa:ss", "PLAY", uri, "");
    assert_eq!(answer, "Basic dXNlcjpwYTpzcw==");
    let auth = Authorization::parse(&answer).unwrap();
    assert!(auth.verify("ANY", "pa:ss"));
    assert!(!auth.verify("ANY", "pa:s"));

    for bad in [
        "Bearer x",
        "Basic !!!",
        "Basic bm9jb2xvbg==",
        "Digest username=\"u\"",
        "Digest username=\"u, realm=r",
        "Digest username",
        "Digest username=u, realm=r, nonce=n, uri=x, response=y, algorithm=SHA-256",
        "Digest username=u, realm=r, nonce=n, uri=x, response=y, qop=auth",
    ] {
        assert!(Authorization::parse(bad).is_err(), "{bad}");
    }
    assert!(Challenge::parse("Digest realm=r").is_err());
    assert!(Authorization::parse(&"a".repeat(5000)).is_err());
}
