//! TLS and mutual TLS on the router's links, against the router binary on loopback, with
//! certificates the tests make (rcgen). Every wait is bounded.
//!
//! - `listeners_and_client_certificates`: `wss://` and `https://` listeners; a peer by token,
//!   by pinned certificate alone (and not by its token without it), by a CA-signed certificate's name alone; an expired pinned
//!   certificate, an unpinned one, one from another CA, a name of another peer and garbage
//!   instead of a ClientHello are refused and counted, and nobody else notices.
//! - `routers_dial_each_other_over_tls`: a router dials `wss://` and `https://` peers with a
//!   client certificate; a server whose certificate is from a CA we do not trust is refused.
//! - `a_reload_takes_a_new_certificate_and_keeps_open_links`.
//! - `a_listener_that_requires_client_certificates`: `tls.client_cert_required`.
//! - `a_handshake_flood_does_not_stop_good_peers`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod common {
    pub(crate) mod certs;
    pub(crate) mod peer;
}
use common::certs::{client_config, Ca, Cert};
use common::peer::{
    free_port, fulfill_n, http_get, io_uring_missing, prepare_n, Peer, Router, TempDir,
};
use ilp_router::link::websocket::Opcode;
use ilp_router::wire::{BtpType, Packet};

fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("ilp-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// The value of the Prometheus sample `name` (with its labels) in `metrics`.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `from` pays `to` (who fulfills) once: the Fulfill comes back.
fn round_trip(from: &mut Peer, to: &mut Peer, destination: &str, n: u8) {
    let id = from.send_ilp(&prepare_n(destination, 10, 10_000, n));
    let (_, to_id, _) = to.recv_ilp().expect("the Prepare arrives");
    to.send_btp(BtpType::Response, to_id, &fulfill_n(n));
    let (_, reply_id, back) = from.recv_ilp().expect("the Fulfill comes back");
    assert_eq!(reply_id, id);
    assert!(matches!(
        Packet::new_checked(&back[..]),
        Ok(Packet::Fulfill(_))
    ));
}

/// A TLS connection to `addr` checked as `localhost` with `config`.
fn tls_stream(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = rustls::ClientConnection::new(config, name).unwrap();
    rustls::StreamOwned::new(tls, stream)
}

/// POSTs `body` as ILP over HTTP (with `Bearer token` when given).
fn post(stream: &mut impl Write, token: Option<&str>, body: &[u8]) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST /ilp HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream.flush().unwrap();
}

/// The status and body of the next response on `stream`.
fn response(stream: &mut impl Read) -> (u16, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = match stream.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => read.expect("a response"),
        };
        assert_eq!(
            n,
            1,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    (status, body)
}

/// Whether the router ends a connection to which we wrote `bytes` within `within`, having
/// sent nothing back but TLS alert records (content type 21).
fn closed_after(addr: SocketAddr, bytes: &[u8], within: Duration) -> bool {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(within)).unwrap();
    let _ = stream.write_all(bytes);
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
            Ok(_) if buf[0] == 21 => continue,
            Ok(_) => return false,
        }
    }
}

const PEER: &str = r#"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000"
"#;

struct Pki {
    dir: TempDir,
    ca: Ca,
    server: Cert,
    alice: Cert,
    expired: Cert,
    stranger: Cert,
    carol: Cert,
    other_ca_client: Cert,
}

fn pki(name: &str) -> Pki {
    let dir = temp_dir(name);
    let ca = Ca::new("router test CA");
    let server = ca.server(&dir.0, "server");
    let client_ca = Ca::new("clients CA");
    client_ca.write(&dir.0, "clients-ca");
    ca.write(&dir.0, "ca");
    let alice = Cert::self_signed(&dir.0, "alice", false);
    let expired = Cert::self_signed(&dir.0, "expired", true);
    let stranger = Cert::self_signed(&dir.0, "stranger", false);
    let carol = client_ca.client(&dir.0, "carol", "carol.example");
    let other = Ca::new("another CA");
    let other_ca_client = other.client(&dir.0, "other", "carol.example");
    Pki {
        dir,
        ca,
        server,
        alice,
        expired,
        stranger,
        carol,
        other_ca_client,
    }
}

#[test]
fn listeners_and_client_certificates() {
    if io_uring_missing("listeners_and_client_certificates") {
        return;
    }
    let pki = pki("listeners");
    let (btp, http, admin) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"
ilp_address = "g.router"
[listen]
btp_tls = "127.0.0.1:{btp}"
http_tls = "127.0.0.1:{http}"
[admin]
listen = "127.0.0.1:{admin}"
[tls]
cert_file = "{cert}"
key_file = "{key}"
client_ca_file = "{client_ca}"
[[peers]]
name = "alice"
relation = "child"
auth_tokens = ["alice-secret"]
client_cert_sha256 = ["{alice_pin}", "{expired_pin}"]
{PEER}
[[peers]]
name = "bob"
relation = "child"
auth_tokens = ["bob-secret"]
{PEER}
[[peers]]
name = "carol"
relation = "child"
client_cert_name = "carol.example"
{PEER}
[rates]
USD = "1"
[limits]
auth_timeout_ms = 2000
"#,
        cert = path(&pki.server.cert_file),
        key = path(&pki.server.key_file),
        client_ca = path(&pki.dir.0.join("clients-ca.pem")),
        alice_pin = pki.alice.sha256,
        expired_pin = pki.expired.sha256,
    );
    let router = Router::start(&config, btp, &["--cores", "1"]);
    let addr = router.addr();
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http));
    let trust = |client: Option<&Cert>| client_config(&pki.ca.pem, client);

    // By token, no certificate: bob. Alice is known by her certificate, so her token alone
    // is not enough.
    let mut bob = Peer::connect_tls(addr, trust(None), "bob", "bob-secret").expect("bob");
    assert!(
        Peer::connect_tls(addr, trust(None), "alice", "alice-secret").is_err(),
        "a peer known by a certificate must show it"
    );
    // By pinned certificate alone (no name, no token), and with name and token too.
    let mut alice = Peer::connect_tls(addr, trust(Some(&pki.alice)), "", "").expect("pinned");
    round_trip(&mut alice, &mut bob, "g.router.bob.x", 2);
    let mut both = Peer::connect_tls(addr, trust(Some(&pki.alice)), "alice", "alice-secret")
        .expect("certificate and token");
    // Closed again at once (Prepares to alice go to her first link below): the router answers
    // a WebSocket Close and ends its side with a TLS close_notify, so the client sees a clean
    // end of the stream, not a truncation.
    both.send_frame(Opcode::Close, &1000u16.to_be_bytes());
    both.read_to_close()
        .expect("the router ends a TLS link with close_notify");
    // The certificate is alice's: bob's name, or bob's token, is refused.
    let as_bob = Peer::connect_tls(addr, trust(Some(&pki.alice)), "bob", "");
    assert!(as_bob.is_err(), "alice's certificate does not make her bob");
    let bobs_token = Peer::connect_tls(addr, trust(Some(&pki.alice)), "", "bob-secret");
    assert!(bobs_token.is_err(), "nor does bob's token");
    // By the name in a certificate from client_ca_file; carol has no token at all.
    let mut carol = Peer::connect_tls(addr, trust(Some(&pki.carol)), "", "").expect("carol");
    round_trip(&mut carol, &mut bob, "g.router.bob.x", 3);
    assert!(
        Peer::connect_tls(addr, trust(None), "carol", "").is_err(),
        "carol without her certificate has nothing to show"
    );

    // Refused at the handshake: pinned but expired, pinned by nobody, another CA's.
    for (what, cert) in [
        ("expired", &pki.expired),
        ("unpinned", &pki.stranger),
        ("another CA's", &pki.other_ca_client),
    ] {
        let refused = Peer::connect_tls(addr, trust(Some(cert)), "alice", "alice-secret");
        assert!(refused.is_err(), "the {what} certificate is refused");
    }
    // A client that does not trust our CA gives up itself.
    let other = Ca::new("untrusted");
    assert!(Peer::connect_tls(addr, client_config(&other.pem, None), "bob", "bob-secret").is_err());
    // Garbage, plain HTTP and a plain WebSocket upgrade instead of a ClientHello: closed.
    for bytes in [
        &b"\x00\x01\x02\x03garbage garbage garbage"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
        b"\x16\x03\x01\xff\xff",
    ] {
        assert!(
            closed_after(addr, bytes, Duration::from_secs(5)),
            "not a ClientHello: {bytes:?}"
        );
    }

    // ILP over HTTPS: the pinned certificate stands for alice without an Authorization
    // header; with neither, 401.
    let mut https = tls_stream(http_addr, trust(Some(&pki.alice)));
    post(
        &mut https,
        None,
        &prepare_n("g.router.bob.y", 10, 10_000, 4),
    );
    let (_, bob_id, _) = bob.recv_ilp().expect("bob gets the HTTP Prepare");
    bob.send_btp(BtpType::Response, bob_id, &fulfill_n(4));
    let (status, body) = response(&mut https);
    assert_eq!(status, 200);
    assert!(matches!(
        Packet::new_checked(&body[..]),
        Ok(Packet::Fulfill(_))
    ));
    let mut anonymous = tls_stream(http_addr, trust(None));
    post(
        &mut anonymous,
        None,
        &prepare_n("g.router.bob.y", 10, 10_000, 5),
    );
    assert_eq!(response(&mut anonymous).0, 401);
    let mut alice_token_only = tls_stream(http_addr, trust(None));
    let prepare = prepare_n("g.router.bob.z", 10, 10_000, 6);
    post(&mut alice_token_only, Some("alice-secret"), &prepare);
    assert_eq!(
        response(&mut alice_token_only).0,
        401,
        "alice must show her certificate"
    );
    let mut by_token = tls_stream(http_addr, trust(None));
    let prepare = prepare_n("g.router.alice.z", 10, 10_000, 6);
    post(&mut by_token, Some("bob-secret"), &prepare);
    let (_, alice_id, _) = alice.recv_ilp().expect("alice gets it");
    alice.send_btp(BtpType::Response, alice_id, &fulfill_n(6));
    assert_eq!(response(&mut by_token).0, 200);

    // Nobody noticed, and every refusal is counted.
    round_trip(&mut carol, &mut bob, "g.router.bob.x", 7);
    let metrics = http_get(admin, "/metrics");
    assert!(
        sample(
            &metrics,
            r#"ilp_tls_handshakes_total{result="cert_refused"}"#
        ) >= 3.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, r#"ilp_tls_handshakes_total{result="failed"}"#) >= 4.0,
        "{metrics}"
    );
    assert!(sample(&metrics, r#"ilp_tls_handshakes_total{result="ok"}"#) >= 10.0);
}

#[test]
fn routers_dial_each_other_over_tls() {
    if io_uring_missing("routers_dial_each_other_over_tls") {
        return;
    }
    let dir = temp_dir("dial");
    let ca = Ca::new("b's CA");
    let b_cert = ca.server(&dir.0, "b");
    let ca_file = ca.write(&dir.0, "ca");
    let a_btp = Cert::self_signed(&dir.0, "a-btp", false);
    let a_http = Cert::self_signed(&dir.0, "a-http", false);
    // A server whose certificate is from a CA router a does not trust.
    let rogue_ca = Ca::new("rogue");
    let rogue_cert = rogue_ca.server(&dir.0, "rogue");
    let rogue = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rogue_port = rogue.local_addr().unwrap().port();
    let rogue_thread = std::thread::spawn(move || serve_rogue(rogue, &rogue_cert));

    let (b_btp, b_http, a_port, a_admin) = (free_port(), free_port(), free_port(), free_port());
    let b = Router::start(
        &format!(
            r#"
ilp_address = "g.b"
[listen]
btp_tls = "127.0.0.1:{b_btp}"
http_tls = "127.0.0.1:{b_http}"
[tls]
cert_file = "{cert}"
key_file = "{key}"
[[peers]]
name = "a"
relation = "peer"
receive_routes = false
client_cert_sha256 = ["{a_btp_pin}"]
{PEER}
[[peers]]
name = "ah"
relation = "peer"
receive_routes = false
client_cert_sha256 = ["{a_http_pin}"]
{PEER}
[[peers]]
name = "bob"
relation = "child"
auth_tokens = ["bob-secret"]
{PEER}
[rates]
USD = "1"
"#,
            cert = path(&b_cert.cert_file),
            key = path(&b_cert.key_file),
            a_btp_pin = a_btp.sha256,
            a_http_pin = a_http.sha256,
        ),
        b_btp,
        &["--cores", "1"],
    );
    let a = Router::start(
        &format!(
            r#"
ilp_address = "g.a"
[listen]
btp = "127.0.0.1:{a_port}"
[admin]
listen = "127.0.0.1:{a_admin}"
[tls]
ca_file = "{ca}"
[[peers]]
name = "alice"
relation = "child"
auth_tokens = ["alice-secret"]
{PEER}
[[peers]]
name = "b"
relation = "peer"
send_routes = false
receive_routes = false
btp_url = "wss://localhost:{b_btp}"
client_cert_file = "{a_btp_cert}"
client_key_file = "{a_btp_key}"
{PEER}
[[peers]]
name = "bh"
relation = "peer"
send_routes = false
receive_routes = false
http_url = "https://localhost:{b_http}/ilp"
client_cert_file = "{a_http_cert}"
client_key_file = "{a_http_key}"
{PEER}
[[peers]]
name = "rogue"
relation = "peer"
send_routes = false
receive_routes = false
btp_url = "wss://localhost:{rogue_port}"
outgoing_token = "x"
{PEER}
[[routes]]
prefix = "g.b.bob.btp"
peer = "b"
[[routes]]
prefix = "g.b.bob.http"
peer = "bh"
[rates]
USD = "1"
[limits]
reconnect_max_ms = 200
"#,
            ca = path(&ca_file),
            a_btp_cert = path(&a_btp.cert_file),
            a_btp_key = path(&a_btp.key_file),
            a_http_cert = path(&a_http.cert_file),
            a_http_key = path(&a_http.key_file),
        ),
        a_port,
        &["--cores", "1"],
    );
    let mut bob = Peer::connect_tls(b.addr(), client_config(&ca.pem, None), "bob", "bob-secret")
        .expect("bob");
    let mut alice = Peer::connect(a.addr(), "alice", "alice-secret").expect("alice");
    // a's link to b (wss, its certificate, a token b does not know: the pin decides) opens
    // in the background; until it does, the Prepare is T01.
    let mut n = 0u8;
    eventually("a Prepare over a's wss link to b", || {
        n += 1;
        let id = alice.send_ilp(&prepare_n("g.b.bob.btp.x", 10, 10_000, n));
        if let Some((_, bob_id, _)) = bob.recv_ilp_within(Duration::from_millis(300)) {
            bob.send_btp(BtpType::Response, bob_id, &fulfill_n(n));
        }
        let (_, reply_id, back) = alice.recv_ilp().expect("an answer");
        assert_eq!(reply_id, id);
        matches!(Packet::new_checked(&back[..]), Ok(Packet::Fulfill(_)))
    });
    // Over https, with the other certificate.
    let id = alice.send_ilp(&prepare_n("g.b.bob.http.x", 10, 10_000, 200));
    let (_, bob_id, _) = bob.recv_ilp().expect("the Prepare arrives over https");
    bob.send_btp(BtpType::Response, bob_id, &fulfill_n(200));
    let (_, reply_id, back) = alice.recv_ilp().expect("the Fulfill");
    assert_eq!(reply_id, id);
    assert!(matches!(
        Packet::new_checked(&back[..]),
        Ok(Packet::Fulfill(_))
    ));
    // The rogue server's certificate is refused, attempt after attempt.
    eventually("dial failures counted", || {
        let metrics = http_get(a_admin, "/metrics");
        sample(&metrics, "ilp_tls_dial_failures_total") >= 2.0
    });
    drop(a);
    drop(b);
    let accepted = rogue_thread.join().unwrap();
    assert!(accepted >= 2, "a dialled the rogue server {accepted} times");
}

/// Accepts TLS connections with `cert` (from a CA nobody trusts) for a while; returns how many
/// connections came.
fn serve_rogue(listener: std::net::TcpListener, cert: &Cert) -> usize {
    use rustls::pki_types::pem::PemObject;
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    );
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut accepted = 0;
    while Instant::now() < deadline && accepted < 2 {
        match listener.accept() {
            Ok((mut stream, _)) => {
                accepted += 1;
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut tls = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
                // The client aborts the handshake when it sees our certificate.
                let _ = tls.complete_io(&mut stream);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    accepted
}

#[test]
fn a_reload_takes_a_new_certificate_and_keeps_open_links() {
    if io_uring_missing("a_reload_takes_a_new_certificate_and_keeps_open_links") {
        return;
    }
    let dir = temp_dir("reload");
    let old_ca = Ca::new("old CA");
    let old = old_ca.server(&dir.0, "old");
    let (cert_file, key_file) = (dir.0.join("server.pem"), dir.0.join("server.key"));
    std::fs::copy(&old.cert_file, &cert_file).unwrap();
    std::fs::copy(&old.key_file, &key_file).unwrap();
    let btp = free_port();
    let config = two_peers_over_tls(btp, &cert_file, &key_file, "");
    let router = Router::start(&config, btp, &["--cores", "1"]);
    let addr = router.addr();
    let trust_old = client_config(&old_ca.pem, None);
    let mut alice =
        Peer::connect_tls(addr, Arc::clone(&trust_old), "alice", "alice-secret").expect("alice");
    let mut bob =
        Peer::connect_tls(addr, Arc::clone(&trust_old), "bob", "bob-secret").expect("bob");
    round_trip(&mut alice, &mut bob, "g.router.bob.x", 1);

    // Rotate: a certificate from a new CA in the same files, then SIGHUP.
    let new_ca = Ca::new("new CA");
    let new = new_ca.server(&dir.0, "new");
    write_atomically(&cert_file, &new.cert_pem);
    write_atomically(&key_file, &new.key_pem);
    let pid = router.child.as_ref().unwrap().id().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    assert!(hup.unwrap().success());
    let trust_new = client_config(&new_ca.pem, None);
    eventually("new connections get the new certificate", || {
        Peer::connect_tls(addr, Arc::clone(&trust_new), "alice", "alice-secret").is_ok()
    });
    assert!(
        Peer::connect_tls(addr, Arc::clone(&trust_old), "alice", "alice-secret").is_err(),
        "the old certificate is no longer served"
    );
    // The links opened before the reload carry on.
    round_trip(&mut alice, &mut bob, "g.router.bob.x", 2);
    round_trip(&mut bob, &mut alice, "g.router.alice.x", 3);
}

#[test]
fn a_listener_that_requires_client_certificates() {
    if io_uring_missing("a_listener_that_requires_client_certificates") {
        return;
    }
    let pki = pki("required");
    let (btp, admin) = (free_port(), free_port());
    let config = format!(
        r#"
ilp_address = "g.router"
[listen]
btp_tls = "127.0.0.1:{btp}"
[admin]
listen = "127.0.0.1:{admin}"
[tls]
cert_file = "{cert}"
key_file = "{key}"
client_cert_required = true
[[peers]]
name = "alice"
relation = "child"
client_cert_sha256 = ["{alice_pin}"]
{PEER}
[[peers]]
name = "bob"
relation = "child"
auth_tokens = ["bob-secret"]
{PEER}
[rates]
USD = "1"
"#,
        cert = path(&pki.server.cert_file),
        key = path(&pki.server.key_file),
        alice_pin = pki.alice.sha256,
    );
    let router = Router::start(&config, btp, &["--cores", "1"]);
    let trust = |client: Option<&Cert>| client_config(&pki.ca.pem, client);
    // No certificate: refused at the handshake, even with a good token.
    assert!(Peer::connect_tls(router.addr(), trust(None), "bob", "bob-secret").is_err());
    Peer::connect_tls(router.addr(), trust(Some(&pki.alice)), "", "").expect("alice");
    let metrics = http_get(admin, "/metrics");
    assert_eq!(
        sample(
            &metrics,
            r#"ilp_tls_handshakes_total{result="cert_refused"}"#
        ),
        1.0,
        "{metrics}"
    );
}

/// A router on a `wss://` listener at `btp` with `cert`/`key`, and two children that
/// authenticate with tokens, alice and bob; `extra` is appended (e.g. `[limits]`).
fn two_peers_over_tls(btp: u16, cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        r#"
ilp_address = "g.router"
[listen]
btp_tls = "127.0.0.1:{btp}"
[tls]
cert_file = "{cert}"
key_file = "{key}"
[[peers]]
name = "alice"
relation = "child"
auth_tokens = ["alice-secret"]
{PEER}
[[peers]]
name = "bob"
relation = "child"
auth_tokens = ["bob-secret"]
{PEER}
[rates]
USD = "1"
{extra}"#,
        cert = path(cert),
        key = path(key),
    )
}

fn write_atomically(path: &PathBuf, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_handshake_flood_does_not_stop_good_peers() {
    if io_uring_missing("a_handshake_flood_does_not_stop_good_peers") {
        return;
    }
    let dir = temp_dir("flood");
    let ca = Ca::new("flood CA");
    let server = ca.server(&dir.0, "server");
    let btp = free_port();
    let limits = "[limits]\nauth_timeout_ms = 1500\nunauthenticated_max = 100\n";
    let config = two_peers_over_tls(btp, &server.cert_file, &server.key_file, limits);
    let router = Router::start(&config, btp, &["--cores", "1"]);
    let addr = router.addr();
    let trust = client_config(&ca.pem, None);
    let mut alice = Peer::connect_tls(addr, Arc::clone(&trust), "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect_tls(addr, Arc::clone(&trust), "bob", "bob-secret").unwrap();

    // 300 clients that stop mid-handshake: a TLS record header that promises a ClientHello
    // and the first bytes of it, then nothing.
    let mut flood = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(addr).unwrap();
        let _ = stream.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
        flood.push(stream);
    }
    // Good peers keep flowing meanwhile.
    let started = Instant::now();
    for n in 0..100u8 {
        round_trip(&mut alice, &mut bob, "g.router.bob.x", n);
    }
    // Every stalled handshake is closed: those over unauthenticated_max at once, the rest at
    // auth_timeout_ms.
    for mut stream in flood {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        let closed = loop {
            match stream.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(0) | Err(_) => break true,
                Ok(_) => continue,
            }
        };
        assert!(closed, "a stalled handshake is closed");
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    // And new peers get in once the flood is gone.
    let mut carol_like =
        Peer::connect_tls(addr, Arc::clone(&trust), "alice", "alice-secret").expect("a new link");
    round_trip(&mut carol_like, &mut bob, "g.router.bob.x", 200);
}
