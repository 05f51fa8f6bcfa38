//! ILP over HTTP into the built router (RFC 35 synchronous mode): a POSTed Prepare reaches a
//! BTP next hop and its Fulfill comes back as the 200 body, on a keep-alive connection; bad
//! requests get their status and never disturb others. Loopback only, bounded waits.

mod common {
    pub(crate) mod peer;
}

use common::peer::{free_port, Peer, Router, WAIT};
use ilp_router::wire::{Address, BtpType, ErrorCode, FulfillRepr, Packet, PrepareRepr, Reject};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{SystemTime, UNIX_EPOCH};

fn config(btp: u16, http: u16) -> String {
    format!(
        r#"
ilp_address = "g.router"
[listen]
btp = "127.0.0.1:{btp}"
http = "127.0.0.1:{http}"
[[peers]]
name = "alice"
auth_tokens = ["alice:secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
[[peers]]
name = "bob"
auth_tokens = ["bob-secret"]
relation = "peer"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
[rates]
USD = "1"
[limits]
frame_len_max = 65536
"#
    )
}

fn prepare(destination: &str, n: u8) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let condition: [u8; 32] = Sha256::digest([n; 32]).into();
    let repr = PrepareRepr {
        amount: 100,
        expires_at: now + 10_000,
        execution_condition: &condition,
        destination: Address::new_checked(destination.as_bytes()).unwrap(),
        data: b"over http",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn fulfill(n: u8) -> Vec<u8> {
    let repr = FulfillRepr {
        fulfillment: &[n; 32],
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

fn post(stream: &mut TcpStream, path: &str, token: &str, body: &[u8]) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: router\r\nAuthorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
}

/// A blocking read that waits again when a signal interrupts it.
fn read_retrying(stream: &mut TcpStream, buf: &mut [u8]) -> usize {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other.expect("a response within the wait"),
        }
    }
}

thread_local! {
    /// Bytes read past the end of a response, by the client socket's local port: pipelined
    /// answers can arrive in one read.
    static LEFTOVER: std::cell::RefCell<std::collections::HashMap<u16, Vec<u8>>> = Default::default();
}

/// Reads one response: (status, body).
fn response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let port = stream.local_addr().unwrap().port();
    let mut buf = LEFTOVER
        .with(|l| l.borrow_mut().remove(&port))
        .unwrap_or_default();
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = r.parse(&buf) {
            let status = r.code.unwrap();
            let length: usize = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap_or(0);
            while buf.len() < head_len + length {
                let n = read_retrying(stream, &mut chunk);
                assert!(n > 0, "closed inside the body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head_len..head_len + length].to_vec();
            let rest = buf.split_off(head_len + length);
            LEFTOVER.with(|l| l.borrow_mut().insert(port, rest));
            return (status, body);
        }
        let n = read_retrying(stream, &mut chunk);
        assert!(
            n > 0,
            "closed before a response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_posted_prepare_is_forwarded_and_answered_on_a_keep_alive_connection() {
    if common::peer::io_uring_missing(
        "a_posted_prepare_is_forwarded_and_answered_on_a_keep_alive_connection",
    ) {
        return;
    }
    let (btp, http) = (free_port(), free_port());
    let router = Router::start(&config(btp, http), btp, &["--cores", "1"]);
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    let mut alice = connect(http);
    // interledger-rs's path; the token (with a colon in it) identifies alice.
    post(
        &mut alice,
        "/accounts/alice/ilp",
        "alice:secret",
        &prepare("g.router.bob.x", 1),
    );
    let (kind, bob_id, forwarded) = bob.recv_ilp().expect("bob gets the Prepare over BTP");
    assert_eq!(kind, BtpType::Message);
    assert!(matches!(
        Packet::new_checked(&forwarded[..]),
        Ok(Packet::Prepare(_))
    ));
    bob.send_btp(BtpType::Response, bob_id, &fulfill(1));
    let (status, body) = response(&mut alice);
    assert_eq!(status, 200);
    assert_eq!(body, fulfill(1), "the Fulfill is the body, byte for byte");
    // Same connection, any path: an ILP-level failure is still a 200, with the Reject.
    post(
        &mut alice,
        "/",
        "alice:secret",
        &prepare("private.nowhere", 2),
    );
    let (status, body) = response(&mut alice);
    assert_eq!(status, 200);
    assert_eq!(
        Reject::new_checked(&body[..]).unwrap().code(),
        ErrorCode::F02_UNREACHABLE
    );
}

#[test]
fn bad_requests_get_their_status_and_others_carry_on() {
    if common::peer::io_uring_missing("bad_requests_get_their_status_and_others_carry_on") {
        return;
    }
    let (btp, http) = (free_port(), free_port());
    let router = Router::start(&config(btp, http), btp, &["--cores", "1"]);
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    // Wrong token: 401, and no hint which part was wrong.
    let mut s = connect(http);
    post(&mut s, "/", "alice:wrong", &prepare("g.router.bob.x", 1));
    assert_eq!(response(&mut s).0, 401);
    // Too large: 413 before the body is sent.
    let mut s = connect(http);
    s.write_all(
        b"POST / HTTP/1.1\r\nAuthorization: Bearer alice:secret\r\nContent-Length: 1000000\r\n\r\n",
    )
    .unwrap();
    assert_eq!(response(&mut s).0, 413);
    // Not a Prepare: 400.
    let mut s = connect(http);
    post(&mut s, "/", "alice:secret", b"\x0c\x01garbage");
    assert_eq!(response(&mut s).0, 400);
    // Not a POST: 405; not HTTP: 400.
    let mut s = connect(http);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(response(&mut s).0, 405);
    let mut s = connect(http);
    s.write_all(b"\x16\x03\x01\x02\x00 this is TLS\r\n\r\n")
        .unwrap();
    assert_eq!(response(&mut s).0, 400);
    // A good request still goes through.
    let mut alice = connect(http);
    post(
        &mut alice,
        "/",
        "alice:secret",
        &prepare("g.router.bob.y", 3),
    );
    let (_, bob_id, _) = bob.recv_ilp().unwrap();
    bob.send_btp(BtpType::Response, bob_id, &fulfill(3));
    assert_eq!(response(&mut alice), (200, fulfill(3)));
}

/// A tiny HTTP/1.1 server on loopback standing in for a peer we POST to: it checks the bearer
/// token, then answers each request with `answer(body)` = (status, body), keep-alive.
fn http_peer(token: &'static str, answer: fn(&[u8]) -> (u16, Vec<u8>)) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(WAIT)).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let parsed = ilp_router::link::http::parse_request(&buf, 65536);
                    if let Ok(Some(r)) = parsed {
                        let (head_len, body_len) = (r.head_len, r.body_len);
                        let authorized = r.token == token.as_bytes();
                        if buf.len() >= head_len + body_len {
                            let body = buf[head_len..head_len + body_len].to_vec();
                            let (status, reply) = if authorized {
                                answer(&body)
                            } else {
                                (401, Vec::new())
                            };
                            let head = format!(
                                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n",
                                reply.len()
                            );
                            stream.write_all(head.as_bytes()).unwrap();
                            stream.write_all(&reply).unwrap();
                            buf.drain(..head_len + body_len);
                            continue;
                        }
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    port
}

fn config_posting_to(btp: u16, bob_http: u16) -> String {
    format!(
        r#"
ilp_address = "g.router"
[listen]
btp = "127.0.0.1:{btp}"
[[peers]]
name = "alice"
auth_tokens = ["alice-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
[[peers]]
name = "bob"
relation = "peer"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
http_url = "http://127.0.0.1:{bob_http}/accounts/router/ilp"
outgoing_token = "router:token"
[rates]
USD = "1"
"#
    )
}

fn ilp_code(reply: &[u8]) -> ErrorCode {
    Reject::new_checked(reply).unwrap().code()
}

#[test]
fn prepares_to_an_http_peer_are_posted_and_answered() {
    if common::peer::io_uring_missing("prepares_to_an_http_peer_are_posted_and_answered") {
        return;
    }
    // Bob fulfills with the preimage the test uses ([n; 32], n taken from the data's last byte).
    fn bob(body: &[u8]) -> (u16, Vec<u8>) {
        let Ok(Packet::Prepare(p)) = Packet::new_checked(body) else {
            return (400, Vec::new());
        };
        match p.destination().as_bytes() {
            b"g.router.bob.fail" => (500, Vec::new()),
            b"g.router.bob.garbage" => (200, b"not ilp".to_vec()),
            _ => (200, fulfill(*p.data().last().unwrap())),
        }
    }
    let bob_port = http_peer("router:token", bob);
    let btp = free_port();
    let router = Router::start(&config_posting_to(btp, bob_port), btp, &["--cores", "1"]);
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    for n in 1..=20u8 {
        let mut packet = prepare("g.router.bob.x", n);
        let last = packet.len() - 1;
        packet[last] = n; // the data's last byte tells bob which fulfillment
        let id = alice.send_ilp(&packet);
        let (_, reply_id, reply) = alice.recv_ilp().expect("an answer");
        assert_eq!(reply_id, id);
        assert_eq!(reply, fulfill(n), "Fulfill {n} relayed");
    }
    // spec/ilp-over-http.md §1 Policy: 5xx → T00; a 200 that is not ILP → T01.
    for (destination, code) in [
        ("g.router.bob.fail", ErrorCode::T00_INTERNAL_ERROR),
        ("g.router.bob.garbage", ErrorCode::T01_PEER_UNREACHABLE),
    ] {
        let id = alice.send_ilp(&prepare(destination, 9));
        let (_, reply_id, reply) = alice.recv_ilp().unwrap();
        assert_eq!(reply_id, id);
        assert_eq!(ilp_code(&reply), code, "{destination}");
    }
}

#[test]
fn http_peer_refusing_our_token_or_absent() {
    if common::peer::io_uring_missing("http_peer_refusing_our_token_or_absent") {
        return;
    }
    fn never(_: &[u8]) -> (u16, Vec<u8>) {
        (200, Vec::new())
    }
    // Bob expects another token: 401 → F02.
    let bob_port = http_peer("other-token", never);
    let btp = free_port();
    let router = Router::start(&config_posting_to(btp, bob_port), btp, &["--cores", "1"]);
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    alice.send_ilp(&prepare("g.router.bob.x", 1));
    assert_eq!(
        ilp_code(&alice.recv_ilp().unwrap().2),
        ErrorCode::F02_UNREACHABLE
    );
    drop(router);
    // Nobody listens where bob should be: T01.
    let dead = free_port();
    let btp = free_port();
    let router = Router::start(&config_posting_to(btp, dead), btp, &["--cores", "1"]);
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    alice.send_ilp(&prepare("g.router.bob.x", 1));
    assert_eq!(
        ilp_code(&alice.recv_ilp().unwrap().2),
        ErrorCode::T01_PEER_UNREACHABLE
    );
}

#[test]
fn pipelined_requests_are_answered_in_request_order() {
    if common::peer::io_uring_missing("pipelined_requests_are_answered_in_request_order") {
        return;
    }
    let (btp, http) = (free_port(), free_port());
    let router = Router::start(&config(btp, http), btp, &["--cores", "1"]);
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    let mut alice = connect(http);
    // Three requests in one write: forwarded, rejected at once (no route), forwarded.
    let mut requests = Vec::new();
    for (destination, n) in [
        ("g.router.bob.a", 1u8),
        ("private.nowhere", 2),
        ("g.router.bob.b", 3),
    ] {
        let body = prepare(destination, n);
        let head = format!(
            "POST / HTTP/1.1\r\nAuthorization: Bearer alice:secret\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        requests.extend_from_slice(head.as_bytes());
        requests.extend_from_slice(&body);
    }
    alice.write_all(&requests).unwrap();
    let (_, first, _) = bob.recv_ilp().unwrap();
    let (_, third, _) = bob.recv_ilp().unwrap();
    // Bob answers the third before the first; the answers still leave in request order.
    bob.send_btp(BtpType::Response, third, &fulfill(3));
    bob.send_btp(BtpType::Response, first, &fulfill(1));
    assert_eq!(response(&mut alice), (200, fulfill(1)));
    let (status, body) = response(&mut alice);
    assert_eq!(status, 200);
    assert_eq!(
        Reject::new_checked(&body[..]).unwrap().code(),
        ErrorCode::F02_UNREACHABLE
    );
    assert_eq!(response(&mut alice), (200, fulfill(3)));
}
