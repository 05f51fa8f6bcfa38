//! The admin server over loopback with `std::net::TcpStream`, and the whole exposition
//! checked by `promtool` where it is installed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

const TOKEN: &str = "s3cret-token";

/// Paths of a small admin API, enough to exercise every class of path.
fn handler() -> Handler {
    Arc::new(|r: &Request| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/health") => Response::text(200, "ok\n"),
        ("GET", "/metrics") => {
            let mut out = String::new();
            Exposition::new(&mut out).gauge("up", "Up.", 1u64);
            Response::metrics(out)
        }
        ("POST", "/echo") | ("GET", "/echo") => Response::json(
            200,
            json!({
                "len": r.body.len(),
                "query": r.query,
                "x_thing": r.header("x-thing"),
                "authorization": r.header("authorization"),
            }),
        ),
        ("GET", "/panic") => panic!("handler bug"),
        ("GET", "/big") => Response::text(200, "x".repeat(32 << 20)),
        (_, "/health" | "/metrics" | "/echo") => Response::error(405, "method not allowed"),
        _ => Response::error(404, "not found"),
    })
}

fn config(token: Option<&str>, metrics_token: bool) -> AdminServerConfig {
    let mut config = AdminServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.token = token.map(str::to_owned);
    config.metrics_token = metrics_token;
    config.read_timeout = Duration::from_millis(500);
    config.write_timeout = Duration::from_millis(500);
    config
}

fn start(config: AdminServerConfig) -> AdminServer {
    spawn(config, handler()).expect("admin server starts")
}

/// An answer: status, head (lower-cased), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Reads whatever comes until the server closes (a reset after the answer is ignored).
fn read_answer(stream: &mut TcpStream) -> Option<Answer> {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..at + 2]).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    Some(Answer {
        status,
        head,
        body: raw[at + 4..].to_vec(),
    })
}

fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = connect(addr);
    let _ = stream.write_all(request);
    read_answer(&mut stream).expect("an answer")
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Answer {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\n{auth}\r\n").as_bytes(),
    )
}

/// Waits (bounded) for `counter` to reach `want`.
fn wait_for(counter: &AtomicU64, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter.load(Ordering::Relaxed) != want {
        assert!(
            Instant::now() < deadline,
            "counter stuck at {}, want {want}",
            counter.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn no_token_configured_opens_every_path() {
    let server = start(config(None, false));
    let addr = server.local_addr();
    assert_eq!(get(addr, "/health", None).status, 200);
    let metrics = get(addr, "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .head
        .contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_eq!(metrics.body, b"# HELP up Up.\n# TYPE up gauge\nup 1\n");
    assert_eq!(get(addr, "/echo", None).status, 200);
    assert_eq!(get(addr, "/nowhere", None).status, 404);
    assert_eq!(server.counters().auth_failures.load(Ordering::Relaxed), 0);
    assert_eq!(server.counters().requests.load(Ordering::Relaxed), 4);
}

#[test]
fn token_guards_everything_but_health_and_metrics() {
    let server = start(config(Some(TOKEN), false));
    let addr = server.local_addr();
    // Open paths, with or without a token (a wrong one included).
    assert_eq!(get(addr, "/health", None).status, 200);
    assert_eq!(get(addr, "/metrics", None).status, 200);
    assert_eq!(get(addr, "/metrics?debug=1", None).status, 200);
    assert_eq!(get(addr, "/health", Some("wrong")).status, 200);
    assert_eq!(server.counters().auth_failures.load(Ordering::Relaxed), 0);
    // Guarded: missing, wrong, other scheme, then right.
    let missing = get(addr, "/echo", None);
    assert_eq!(missing.status, 401);
    assert!(missing.head.contains("\r\nwww-authenticate: bearer\r\n"));
    assert!(missing.head.contains("content-type: application/json\r\n"));
    assert_eq!(
        missing.json(),
        json!({"error": "missing or wrong bearer token"})
    );
    assert_eq!(get(addr, "/echo", Some("s3cret-toke")).status, 401);
    assert_eq!(get(addr, "/echo", Some("s3cret-token2")).status, 401);
    let basic = exchange(
        addr,
        format!("GET /echo HTTP/1.1\r\nAuthorization: Basic {TOKEN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(basic.status, 401);
    // Only GET is open on /health and /metrics; unknown paths are guarded too.
    let post_health = exchange(addr, b"POST /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post_health.status, 401);
    assert_eq!(get(addr, "/nowhere", None).status, 401);
    assert_eq!(server.counters().auth_failures.load(Ordering::Relaxed), 6);
    // The right token, and the handler's own answers behind it.
    assert_eq!(get(addr, "/echo", Some(TOKEN)).status, 200);
    assert_eq!(get(addr, "/nowhere", Some(TOKEN)).status, 404);
    let post_health = exchange(
        addr,
        format!("POST /health HTTP/1.1\r\nAuthorization: bearer {TOKEN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(post_health.status, 405);
    assert_eq!(server.counters().auth_failures.load(Ordering::Relaxed), 6);
}

#[test]
fn metrics_token_guards_metrics_but_never_health() {
    let server = start(config(Some(TOKEN), true));
    let addr = server.local_addr();
    assert_eq!(get(addr, "/metrics", None).status, 401);
    assert_eq!(get(addr, "/metrics", Some("wrong")).status, 401);
    assert_eq!(get(addr, "/metrics", Some(TOKEN)).status, 200);
    assert_eq!(get(addr, "/health", None).status, 200);
    assert_eq!(server.counters().auth_failures.load(Ordering::Relaxed), 2);
}

#[test]
fn query_headers_and_body_reach_the_handler() {
    let server = start(config(Some(TOKEN), false));
    let body = "x".repeat(1000);
    let request = format!(
        "POST /echo?peer=al%20ice&flag&n=1+2 HTTP/1.1\r\nX-THING: yes\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(server.local_addr(), request.as_bytes());
    assert_eq!(answer.status, 200);
    assert!(answer.head.contains("connection: close\r\n"));
    assert_eq!(
        answer.json(),
        json!({
            "len": 1000,
            "query": [["peer", "al ice"], ["flag", ""], ["n", "1 2"]],
            "x_thing": "yes",
            "authorization": null,
        })
    );
}

#[test]
fn oversize_head_is_431() {
    let mut config = config(None, false);
    config.read_timeout = Duration::from_secs(30);
    let server = start(config);
    let addr = server.local_addr();
    let long = format!(
        "GET /health HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(HEAD_LEN_MAX)
    );
    assert_eq!(exchange(addr, long.as_bytes()).status, 431);
    // No end of head at all: refused once 8 KiB are in, not at the deadline.
    let endless = vec![b'a'; HEAD_LEN_MAX + 100];
    let started = Instant::now();
    assert_eq!(exchange(addr, &endless).status, 431);
    let endless_header = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(HEAD_LEN_MAX));
    assert_eq!(exchange(addr, endless_header.as_bytes()).status, 431);
    assert!(started.elapsed() < Duration::from_secs(10));
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET /health HTTP/1.1\r\n{many}\r\n");
    assert_eq!(exchange(addr, many.as_bytes()).status, 431);
    assert_eq!(server.counters().bad_requests.load(Ordering::Relaxed), 4);
    assert_eq!(get(addr, "/health", None).status, 200);
}

#[test]
fn body_limit_is_413_and_exact_limit_passes() {
    let server = start(config(None, false));
    let addr = server.local_addr();
    let over = format!(
        "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        BODY_LEN_MAX + 1
    );
    let refused = exchange(addr, over.as_bytes());
    assert_eq!(refused.status, 413);
    assert_eq!(refused.json(), json!({"error": "request body too large"}));
    // The body sent anyway is read and discarded: the client still gets its 413.
    let mut sent = over.into_bytes();
    sent.extend(std::iter::repeat_n(b'x', BODY_LEN_MAX + 1));
    assert_eq!(exchange(addr, &sent).status, 413);
    let mut exact =
        format!("POST /echo HTTP/1.1\r\nContent-Length: {BODY_LEN_MAX}\r\n\r\n").into_bytes();
    exact.extend(std::iter::repeat_n(b'x', BODY_LEN_MAX));
    let answer = exchange(addr, &exact);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["len"], BODY_LEN_MAX);
}

#[test]
fn chunked_and_bad_lengths_are_refused() {
    let server = start(config(None, false));
    let addr = server.local_addr();
    let chunked = b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n";
    assert_eq!(exchange(addr, chunked).status, 411);
    for length in ["abc", "-1", "1, 2", "99999999999999999999999"] {
        let request = format!("POST /echo HTTP/1.1\r\nContent-Length: {length}\r\n\r\n");
        assert_eq!(exchange(addr, request.as_bytes()).status, 400, "{length}");
    }
    let twice = b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy";
    assert_eq!(exchange(addr, twice).status, 400);
    assert_eq!(exchange(addr, b"GET /x?a=%zz HTTP/1.1\r\n\r\n").status, 400);
    assert_eq!(exchange(addr, b"GET * HTTP/1.1\r\n\r\n").status, 400);
    assert_eq!(server.counters().bad_requests.load(Ordering::Relaxed), 8);
}

#[test]
fn garbage_is_400_and_the_server_survives() {
    let server = start(config(Some(TOKEN), false));
    let addr = server.local_addr();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = vec![0u8; 3000];
    for b in &mut noise {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    let cases: [&[u8]; 7] = [
        b"\0\0\0\0\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /health HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"G\xffT /health HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        &noise,
    ];
    for case in cases {
        let answer = exchange(addr, case);
        assert_eq!(answer.status, 400, "{case:?}");
        assert_eq!(answer.json(), json!({"error": "malformed request head"}));
    }
    assert_eq!(get(addr, "/health", None).status, 200);
    assert_eq!(get(addr, "/echo", Some(TOKEN)).status, 200);
}

#[test]
fn slow_clients_time_out() {
    let server = start(config(None, false));
    let addr = server.local_addr();
    // A partial head, then nothing: 408 at the deadline.
    let started = Instant::now();
    let mut stream = connect(addr);
    stream.write_all(b"GET /heal").expect("writes");
    let answer = read_answer(&mut stream).expect("an answer");
    assert_eq!(answer.status, 408);
    assert!(started.elapsed() >= Duration::from_millis(450));
    // A byte every 50 ms resets nothing: the deadline covers the whole request.
    let started = Instant::now();
    let mut stream = connect(addr);
    let mut answer = None;
    for &b in b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
        if stream.write_all(&[b]).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
        if started.elapsed() > Duration::from_millis(900) {
            answer = read_answer(&mut stream);
            break;
        }
    }
    let answer = answer
        .or_else(|| read_answer(&mut stream))
        .expect("an answer");
    assert_eq!(answer.status, 408);
    // A body shorter than its Content-Length: 408 too.
    let mut stream = connect(addr);
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .expect("writes");
    assert_eq!(read_answer(&mut stream).expect("an answer").status, 408);
    // Connected but silent: closed without a word.
    let mut stream = connect(addr);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    assert_eq!(raw, b"");
    assert_eq!(server.counters().timeouts.load(Ordering::Relaxed), 3);
    assert_eq!(get(addr, "/health", None).status, 200);
}

#[test]
fn a_client_that_does_not_read_hits_the_write_deadline() {
    let server = start(config(None, false));
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"GET /big HTTP/1.1\r\n\r\n")
        .expect("writes");
    // 32 MiB do not fit in the socket buffers: the writer waits, then gives up.
    wait_for(&server.counters().timeouts, 1);
    wait_for(&server.counters().connections_active, 0);
    drop(stream);
    assert_eq!(get(server.local_addr(), "/health", None).status, 200);
}

#[test]
fn expect_100_continue_gets_its_interim_answer() {
    let server = start(config(None, false));
    let mut stream = connect(server.local_addr());
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .expect("writes");
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).expect("100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"body").expect("writes");
    let answer = read_answer(&mut stream).expect("an answer");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["len"], 4);
}

#[test]
fn head_requests_get_no_body() {
    let server = start(config(None, false));
    let answer = exchange(server.local_addr(), b"HEAD /nowhere HTTP/1.1\r\n\r\n");
    assert_eq!(answer.status, 404);
    assert!(answer.head.contains("content-length: 21\r\n"));
    assert_eq!(answer.body, b"");
}

#[test]
fn a_panicking_handler_is_500_and_the_server_survives() {
    let server = start(config(None, false));
    let addr = server.local_addr();
    let answer = get(addr, "/panic", None);
    assert_eq!(answer.status, 500);
    assert_eq!(answer.json(), json!({"error": "internal error"}));
    assert_eq!(server.counters().handler_panics.load(Ordering::Relaxed), 1);
    assert_eq!(get(addr, "/health", None).status, 200);
}

#[test]
fn connections_past_the_cap_get_503_and_the_server_recovers() {
    let mut config = config(None, false);
    config.connections_max = 4;
    config.read_timeout = Duration::from_secs(30);
    let server = start(config);
    let addr = server.local_addr();
    let counters = Arc::clone(server.counters());
    // Four connections that never finish their head hold every slot.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = connect(addr);
            stream.write_all(b"GET /health HT").expect("writes");
            stream
        })
        .collect();
    wait_for(&counters.connections_active, 4);
    for round in 1..=3 {
        let mut stream = connect(addr);
        // A reset before the 503 was read counts as closed, which is allowed too.
        if let Some(answer) = read_answer(&mut stream) {
            assert_eq!(answer.status, 503);
            assert!(answer.head.contains("retry-after: 1\r\n"));
        }
        wait_for(&counters.connections_refused, round);
    }
    // The idle clients leave; their threads end and the slots come back.
    drop(idle);
    wait_for(&counters.connections_active, 0);
    let answers: Vec<Option<u16>> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut stream = connect(addr);
                let _ = stream.write_all(b"GET /health HTTP/1.1\r\n\r\n");
                read_answer(&mut stream).map(|a| a.status)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    // Eight at once over a cap of four: each is served, refused (503) or closed (None), and
    // none hangs.
    let served = answers.iter().filter(|&&a| a == Some(200)).count();
    let refused = answers
        .iter()
        .filter(|&&a| a == Some(503) || a.is_none())
        .count();
    assert_eq!(served + refused, 8, "{answers:?}");
    assert!(served >= 1, "{answers:?}");
    wait_for(&counters.connections_active, 0);
    assert_eq!(get(addr, "/health", None).status, 200);
}

#[test]
fn shutdown_cuts_connections_and_closes_the_listener() {
    let mut config = config(None, false);
    config.read_timeout = Duration::from_secs(30);
    let mut server = start(config);
    let addr = server.local_addr();
    let mut idle = connect(addr);
    idle.write_all(b"GET /").expect("writes");
    wait_for(&server.counters().connections_active, 1);
    let started = Instant::now();
    server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        server.counters().connections_active.load(Ordering::Relaxed),
        0
    );
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert_eq!(rest, b"");
    assert!(TcpStream::connect(addr).is_err());
    // Again: nothing to do.
    server.shutdown();
}

#[test]
fn drop_stops_the_server() {
    let server = start(config(None, false));
    let addr = server.local_addr();
    assert_eq!(get(addr, "/health", None).status, 200);
    drop(server);
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn config_debug_hides_the_token() {
    let printed = format!("{:?}", config(Some(TOKEN), true));
    assert!(!printed.contains(TOKEN), "{printed}");
    assert!(printed.contains("metrics_token: true"));
}

/// Every kind of family this room writes, as one scrape would.
fn sample_exposition() -> String {
    let mut out = String::new();
    let mut w = Exposition::new(&mut out);
    w.family(
        "ilp_prepares_total",
        "Prepares handled, by peer.",
        Kind::Counter,
    );
    w.sample(&[("peer", "alice"), ("direction", "incoming")], 12u64);
    w.sample(&[("peer", "b\"o\\b\nx"), ("direction", "outgoing")], 0u64);
    w.gauge(
        "ilp_balance",
        "Balance of the peer's row,\nin its asset.",
        -42i64,
    );
    w.family("ilp_ratio", "A float gauge.", Kind::Gauge);
    w.sample(&[("k", "nan")], f64::NAN);
    w.sample(&[("k", "inf")], f64::INFINITY);
    w.sample(&[("k", "tiny")], 1.5e-9);
    w.family("ilp_latency_seconds", "Time to answer.", Kind::Histogram);
    let bounds = [0.0005, 0.001, 0.01, 0.1, 1.0];
    w.histogram(
        &[("peer", "alice")],
        &bounds,
        Counts::PerBucket(&[3, 1, 0, 2, 0, 1]),
        4.25,
    );
    w.histogram(
        &[("peer", "bob")],
        &bounds,
        Counts::Cumulative(&[0, 0, 1, 1, 1, 1]),
        0.007,
    );
    write_process_metrics(&mut w);
    AdminCounters::default().write(&mut w);
    out
}

#[test]
fn promtool_accepts_the_exposition() {
    use std::process::{Command, Stdio};
    let text = sample_exposition();
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is missing but CI is set: install Debian's `prometheus` package"
            );
            println!("SKIPPED promtool_accepts_the_exposition: promtool is not installed");
            return;
        }
        Err(e) => panic!("promtool failed to start: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(text.as_bytes())
        .expect("promtool reads");
    let output = child.wait_with_output().expect("promtool ends");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool: {:?}\n{said}\n--- exposition ---\n{text}",
        output.status
    );
}
