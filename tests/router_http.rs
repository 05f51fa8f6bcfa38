//! ILP over HTTP into the built router (RFC 35 synchronous mode): a POSTed Prepare reaches a
//! BTP next hop and its Fulfill comes back as the 200 body, on a keep-alive connection; bad
//! requests get their status and never disturb others. Loopback only, bounded waits.
//!
//! Over 800 lines: one test per rule of the HTTP side (server and client), each starting the
//! router and its peers itself; the helpers they share are the first 150 lines.

mod common {
    pub(crate) mod peer;
}

use common::peer::{free_port, listening_on, Peer, Router, WAIT};
use ilp_router::wire::{Address, BtpType, ErrorCode, FulfillRepr, Packet, PrepareRepr, Reject};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn config(btp: u16, http: u16) -> String {
    config_with_limits(btp, http, "")
}

/// As [`config`], with more lines for its `[limits]` table.
fn config_with_limits(btp: u16, http: u16, limits: &str) -> String {
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
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "USD"
asset_scale = 9
max_balance = "1000000"
[rates]
USD = "1"
[limits]
frame_len_max = 65536
{limits}
"#
    )
}

fn prepare(destination: &str, n: u8) -> Vec<u8> {
    prepare_within(destination, n, 10_000)
}

/// A Prepare of condition SHA-256([n; 32]) that expires `expiry_ms` from now.
fn prepare_within(destination: &str, n: u8, expiry_ms: i64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let condition: [u8; 32] = Sha256::digest([n; 32]).into();
    let repr = PrepareRepr {
        amount: 100,
        expires_at: now + expiry_ms,
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

/// Connects to the router's HTTP listener. `Router::start` waits for the BTP listener only;
/// each core binds its HTTP listener just after, so a refused connect is retried (bounded).
fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + WAIT;
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                assert!(Instant::now() < deadline, "nothing listens on {port}");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connect to {port}: {e}"),
        }
    };
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
    let (status, _, body) = response_with_head(stream);
    (status, body)
}

/// Reads one response: (status, the head as text, body).
fn response_with_head(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
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
            let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
            let body = buf[head_len..head_len + length].to_vec();
            let rest = buf.split_off(head_len + length);
            LEFTOVER.with(|l| l.borrow_mut().insert(port, rest));
            return (status, head, body);
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
fn a_connection_authenticated_once_still_checks_every_request() {
    if common::peer::io_uring_missing("a_connection_authenticated_once_still_checks_every_request")
    {
        return;
    }
    let (btp, http) = (free_port(), free_port());
    let router = Router::start(&config(btp, http), btp, &["--cores", "1"]);
    for (path, token) in [("/", "alice:wrong"), ("/accounts/bob/ilp", "alice:secret")] {
        let mut alice = connect(http);
        post(
            &mut alice,
            "/",
            "alice:secret",
            &prepare("private.nowhere", 1),
        );
        assert_eq!(response(&mut alice).0, 200, "authenticated");
        // The same connection, other credentials: the token is checked again, and a token
        // is only good for the account it belongs to.
        post(&mut alice, path, token, &prepare("private.nowhere", 2));
        assert_eq!(response(&mut alice).0, 401, "{path} {token}");
    }
    drop(router);
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
    http_peer_counted(token, answer).0
}

/// [`http_peer`], and the count of connections it accepted.
fn http_peer_counted(
    token: &'static str,
    answer: fn(&[u8]) -> (u16, Vec<u8>),
) -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { return };
            counter.fetch_add(1, Ordering::Relaxed);
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
    (port, accepted)
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
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
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
    let (bob_port, connections) = http_peer_counted("router:token", bob);
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
    // RFC 35: 5xx → T00; ours (as interledger-rs): a 200 that is not ILP → T01. Either way
    // the server kept the connection, and so do we: no new connection after them.
    let opened = connections.load(Ordering::Relaxed);
    for (destination, code) in [
        ("g.router.bob.fail", ErrorCode::T00_INTERNAL_ERROR),
        ("g.router.bob.garbage", ErrorCode::T01_PEER_UNREACHABLE),
    ] {
        let id = alice.send_ilp(&prepare(destination, 9));
        let (_, reply_id, reply) = alice.recv_ilp().unwrap();
        assert_eq!(reply_id, id);
        assert_eq!(ilp_code(&reply), code, "{destination}");
    }
    let mut packet = prepare("g.router.bob.x", 21);
    let last = packet.len() - 1;
    packet[last] = 21;
    alice.send_ilp(&packet);
    assert_eq!(alice.recv_ilp().unwrap().2, fulfill(21));
    assert_eq!(
        connections.load(Ordering::Relaxed),
        opened,
        "the same connections"
    );
}

#[test]
fn an_answer_after_the_expiry_is_never_taken_for_the_next_request() {
    if common::peer::io_uring_missing(
        "an_answer_after_the_expiry_is_never_taken_for_the_next_request",
    ) {
        return;
    }
    // Bob answers g.router.bob.slow only after its Prepare expired, then the rest at once.
    fn bob(body: &[u8]) -> (u16, Vec<u8>) {
        let Ok(Packet::Prepare(p)) = Packet::new_checked(body) else {
            return (400, Vec::new());
        };
        let n = *p.data().last().unwrap();
        if p.destination().as_bytes() == b"g.router.bob.slow" {
            std::thread::sleep(Duration::from_millis(3500));
        }
        (200, fulfill(n))
    }
    let bob_port = http_peer("router:token", bob);
    let btp = free_port();
    let router = Router::start(&config_posting_to(btp, bob_port), btp, &["--cores", "1"]);
    let mut alice = Peer::connect(router.addr(), "alice", "alice-secret").unwrap();
    let with_n = |mut packet: Vec<u8>, n: u8| {
        let last = packet.len() - 1;
        packet[last] = n;
        packet
    };
    // Expires in 3 s, so 2 s on the way out (min_message_window_ms = 1000).
    alice.send_ilp(&with_n(prepare_within("g.router.bob.slow", 1, 3000), 1));
    let (_, _, reply) = alice.recv_ilp().expect("an answer by the expiry");
    assert_eq!(ilp_code(&reply), ErrorCode::R00_TRANSFER_TIMED_OUT);
    // The connection that owes the late answer is not used again: the next request gets its
    // own answer, never the late Fulfill of the first.
    alice.send_ilp(&with_n(prepare("g.router.bob.x", 2), 2));
    let (_, _, reply) = alice.recv_ilp().expect("an answer");
    assert_eq!(reply, fulfill(2));
    drop(router);
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

/// Whether a response head says `Connection: close`.
fn says_close(head: &str) -> bool {
    head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("connection:") && line.contains("close")
    })
}

/// How long the router takes to close `stream` (end of stream or reset), if it does within
/// `within`. Bytes arriving first fail the test.
fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let port = stream.local_addr().unwrap().port();
    let leftover = LEFTOVER
        .with(|l| l.borrow_mut().remove(&port))
        .unwrap_or_default();
    assert!(
        leftover.is_empty(),
        "unexpected bytes: {}",
        String::from_utf8_lossy(&leftover)
    );
    let start = Instant::now();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        let Some(left) = within.checked_sub(start.elapsed()) else {
            break None;
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => break Some(start.elapsed()),
            Ok(n) => panic!("unexpected bytes: {}", String::from_utf8_lossy(&chunk[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break None
            }
            Err(_) => break Some(start.elapsed()),
        }
    };
    stream.set_read_timeout(Some(WAIT)).unwrap();
    closed
}

/// Limits low enough for the timeout tests to run in about a second.
const QUICK_TIMEOUTS: &str = "http_request_timeout_ms = 300\nhttp_idle_timeout_ms = 300\n";

#[test]
fn a_wrong_token_gets_401_and_close_from_the_head_alone() {
    if common::peer::io_uring_missing("a_wrong_token_gets_401_and_close_from_the_head_alone") {
        return;
    }
    let (btp, http) = (free_port(), free_port());
    let router = Router::start(&config(btp, http), btp, &["--cores", "1"]);
    // A wrong token, and a good token for another account than the path names: the head
    // alone decides, the 30000 bytes announced never come.
    for (path, token) in [("/", "alice:wrong"), ("/accounts/bob/ilp", "alice:secret")] {
        let mut s = connect(http);
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: router\r\nAuthorization: Bearer {token}\r\nContent-Length: 30000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let (status, head, body) = response_with_head(&mut s);
        assert_eq!(status, 401, "{path} {token}");
        assert!(says_close(&head), "a 401 says it closes: {head}");
        assert!(body.is_empty(), "no hint which check failed");
        assert!(
            closed_within(&mut s, Duration::from_secs(2)).is_some(),
            "the connection closes right after the 401"
        );
    }
    // A client that sends its body anyway, after the 401 went out, still reads the 401.
    let mut s = connect(http);
    s.write_all(
        b"POST / HTTP/1.1\r\nAuthorization: Bearer alice:wrong\r\nContent-Length: 60000\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..6 {
        // The router may have closed by now; the 401 must still be readable.
        if s.write_all(&[7u8; 10_000]).is_err() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let (status, head, _) = response_with_head(&mut s);
    assert_eq!(status, 401);
    assert!(says_close(&head), "{head}");
    // The right token with its body still arriving is not refused: the body completes it.
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    let mut alice = connect(http);
    let body = prepare("g.router.bob.x", 4);
    let head = format!(
        "POST /accounts/alice/ilp HTTP/1.1\r\nAuthorization: Bearer alice:secret\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    alice.write_all(head.as_bytes()).unwrap();
    alice
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        alice.read(&mut byte).is_err(),
        "nothing is answered before the body"
    );
    alice.set_read_timeout(Some(WAIT)).unwrap();
    alice.write_all(&body).unwrap();
    let (_, bob_id, _) = bob.recv_ilp().expect("the Prepare reaches bob");
    bob.send_btp(BtpType::Response, bob_id, &fulfill(4));
    assert_eq!(response(&mut alice), (200, fulfill(4)));
}

#[test]
fn a_request_dripped_byte_by_byte_is_cut_off_at_its_deadline() {
    if common::peer::io_uring_missing("a_request_dripped_byte_by_byte_is_cut_off_at_its_deadline") {
        return;
    }
    let (btp, http) = (free_port(), free_port());
    let _router = Router::start(
        &config_with_limits(btp, http, QUICK_TIMEOUTS),
        btp,
        &["--cores", "1"],
    );
    // A head that never ends, one byte every 100 ms: each read is prompt, the request is not.
    let drip = [
        b"POST / HTTP/1.1\r\nAuthorization: Bearer alice:secret\r\nX-Drip: ".as_slice(),
        &[b'a'; 64],
    ]
    .concat();
    let mut s = connect(http);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut sent = 0;
    let closed_after = loop {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "a dripping client still connected after 3 s (request timeout 300 ms)"
        );
        if sent < drip.len() && s.write_all(&drip[sent..sent + 1]).is_err() {
            break start.elapsed();
        }
        sent += 1;
        match s.read(&mut chunk) {
            Ok(0) => break start.elapsed(),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break start.elapsed(),
        }
    };
    assert!(
        closed_after >= Duration::from_millis(250),
        "cut off at {closed_after:?}, before its deadline"
    );
    assert!(
        closed_after < Duration::from_millis(1500),
        "cut off at {closed_after:?}, long after its 300 ms deadline"
    );
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408 "), "a 408 first: {text}");
    assert!(says_close(&text), "the 408 says it closes: {text}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    if common::peer::io_uring_missing(
        "an_idle_keep_alive_connection_is_closed_after_the_idle_timeout",
    ) {
        return;
    }
    let (btp, http) = (free_port(), free_port());
    let _router = Router::start(
        &config_with_limits(btp, http, QUICK_TIMEOUTS),
        btp,
        &["--cores", "1"],
    );
    // One connection that never sends a byte, one that is idle after an answered request.
    let mut quiet = connect(http);
    let mut s = connect(http);
    post(&mut s, "/", "alice:secret", &prepare("private.nowhere", 1));
    let (status, head, _) = response_with_head(&mut s);
    assert_eq!(status, 200);
    assert!(
        !says_close(&head),
        "the answer keeps the connection: {head}"
    );
    let idle = closed_within(&mut s, Duration::from_secs(3))
        .expect("an idle kept-alive connection is closed after http_idle_timeout_ms");
    assert!(
        idle >= Duration::from_millis(150) && idle < Duration::from_millis(2000),
        "closed {idle:?} after the answer (idle timeout 300 ms)"
    );
    assert!(
        closed_within(&mut quiet, Duration::from_secs(2)).is_some(),
        "a connection that never sent a request is closed too"
    );
}

#[test]
fn a_keep_alive_client_sending_every_50_ms_is_not_disturbed() {
    if common::peer::io_uring_missing("a_keep_alive_client_sending_every_50_ms_is_not_disturbed") {
        return;
    }
    let (btp, http) = (free_port(), free_port());
    let _router = Router::start(
        &config_with_limits(btp, http, QUICK_TIMEOUTS),
        btp,
        &["--cores", "1"],
    );
    let mut s = connect(http);
    // About 1.5 s on one connection: several request and idle timeouts long. Each head and
    // body arrive 20 ms apart, well inside the request's deadline.
    for n in 0..20u8 {
        let body = prepare("private.nowhere", n);
        let head = format!(
            "POST / HTTP/1.1\r\nAuthorization: Bearer alice:secret\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        s.write_all(&body).unwrap();
        let (status, head, body) = response_with_head(&mut s);
        assert_eq!(status, 200, "request {n}");
        assert!(!says_close(&head), "request {n}: {head}");
        assert_eq!(ilp_code(&body), ErrorCode::F02_UNREACHABLE);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn answers_owed_are_written_before_a_stalled_or_finished_connection_closes() {
    if common::peer::io_uring_missing(
        "answers_owed_are_written_before_a_stalled_or_finished_connection_closes",
    ) {
        return;
    }
    let (btp, http) = (free_port(), free_port());
    // Every timeout a close could wrongly be bounded by is short; the next hop is slower.
    let limits = format!("{QUICK_TIMEOUTS}auth_timeout_ms = 300\n");
    let router = Router::start(
        &config_with_limits(btp, http, &limits),
        btp,
        &["--cores", "1"],
    );
    let mut bob = Peer::connect(router.addr(), "bob", "bob-secret").unwrap();
    // Finished: the client half-closes after the third head's first bytes. Stalled: the third
    // head never completes (a 408 after the answers owed).
    for finished in [true, false] {
        let mut alice = connect(http);
        let mut requests = Vec::new();
        for (destination, n) in [("g.router.bob.a", 1u8), ("g.router.bob.b", 2)] {
            let body = prepare(destination, n);
            let head = format!(
                "POST / HTTP/1.1\r\nAuthorization: Bearer alice:secret\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            requests.extend_from_slice(head.as_bytes());
            requests.extend_from_slice(&body);
        }
        requests.extend_from_slice(b"POST / HTTP/1.1\r\nAuthorization: Bea");
        alice.write_all(&requests).unwrap();
        if finished {
            alice.shutdown(Shutdown::Write).unwrap();
        }
        let (_, first, _) = bob.recv_ilp().expect("the first Prepare");
        let (_, second, _) = bob.recv_ilp().expect("the second Prepare");
        std::thread::sleep(Duration::from_millis(1000));
        bob.send_btp(BtpType::Response, second, &fulfill(2));
        bob.send_btp(BtpType::Response, first, &fulfill(1));
        assert_eq!(
            response(&mut alice),
            (200, fulfill(1)),
            "finished {finished}"
        );
        assert_eq!(
            response(&mut alice),
            (200, fulfill(2)),
            "finished {finished}"
        );
        if !finished {
            let (status, head, _) = response_with_head(&mut alice);
            assert_eq!(status, 408, "the stalled third request times out");
            assert!(says_close(&head), "{head}");
        }
        assert!(
            closed_within(&mut alice, Duration::from_secs(3)).is_some(),
            "finished {finished}: the connection closes once the answers are written"
        );
    }
}

/// The router process with its log piped; SIGTERM and a bounded wait on drop.
struct LoggedRouter {
    child: std::process::Child,
    _dir: common::peer::TempDir,
}

impl LoggedRouter {
    /// Sends SIGTERM; true when the router exits cleanly within [`WAIT`].
    fn stop(&mut self) -> bool {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for LoggedRouter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

#[test]
fn refused_requests_are_counted() {
    if common::peer::io_uring_missing("refused_requests_are_counted") {
        return;
    }
    let (btp, http) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!(
        "ilp-router-test-{}-{btp}-counted",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("router.toml");
    std::fs::write(&path, config_with_limits(btp, http, QUICK_TIMEOUTS)).unwrap();
    // As Router::start, with the log (where the runtime counters are printed at exit) piped.
    let bin = std::env::var("ILP_ROUTER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ilp-router").to_owned());
    let child = std::process::Command::new(bin)
        .args(["run", "--config", path.to_str().unwrap()])
        .args(["--log-level", "info", "--cores", "1"])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ilp-router");
    let mut router = LoggedRouter {
        child,
        _dir: common::peer::TempDir(dir),
    };
    let stderr = router.child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + WAIT;
    for port in [btp, http] {
        while !listening_on(port) {
            assert!(Instant::now() < deadline, "router did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Refused: 401, 413, 400 (not a Prepare), 405, 408. Answered: one Reject in a 200.
    let mut s = connect(http);
    post(&mut s, "/", "alice:wrong", &prepare("g.router.bob.x", 1));
    assert_eq!(response(&mut s).0, 401);
    let mut s = connect(http);
    s.write_all(
        b"POST / HTTP/1.1\r\nAuthorization: Bearer alice:secret\r\nContent-Length: 1000000\r\n\r\n",
    )
    .unwrap();
    assert_eq!(response(&mut s).0, 413);
    let mut s = connect(http);
    post(&mut s, "/", "alice:secret", b"\x0c\x01garbage");
    assert_eq!(response(&mut s).0, 400);
    let mut s = connect(http);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(response(&mut s).0, 405);
    let mut s = connect(http);
    s.write_all(b"POST / HTTP/1.1\r\nAuthoriz").unwrap();
    assert_eq!(response(&mut s).0, 408);
    let mut s = connect(http);
    post(&mut s, "/", "alice:secret", &prepare("private.nowhere", 1));
    assert_eq!(response(&mut s).0, 200);
    drop(s);
    assert!(router.stop(), "a clean exit");
    let log = log.join().unwrap();
    assert!(
        log.contains("http_refused: 5"),
        "five refusals counted: {log}"
    );
}
