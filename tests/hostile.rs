//! Hostile clients against the built router, on loopback: peers that never read (their queues
//! are capped and their links closed), Ping floods, garbage on both ports, idle sockets
//! (counted apart from authenticated links and capped), wrong tokens, silent links (pinged,
//! then taken down), refused handshakes (their own status). While they run, a good BTP pair
//! keeps its traffic flowing and the router's memory stays bounded; afterwards every slot
//! comes back. Every client runs in its own thread with bounded counts and times; every wait
//! has a deadline.
//!
//! Over 800 lines: each hostile client is its own test with its own router, and the shared
//! fixture (the good pair, the counters read from the log) comes first.

mod common {
    pub(crate) mod peer;
}

use common::peer::{free_port, io_uring_missing, listening_on, Peer, TempDir, WAIT};
use ilp_router::link::btp::{BtpSession, Event};
use ilp_router::link::websocket::{self as ws, Opcode, Role};
use ilp_router::wire::{
    Address, Btp, BtpBody, BtpRepr, BtpType, ErrorCode, FulfillRepr, Packet, PrepareRepr, Reject,
};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---- the router, with its log kept (its counters are printed when a core stops) ----------

struct Launched {
    child: Option<Child>,
    log: PathBuf,
    _dir: TempDir,
}

impl Launched {
    /// Starts `ilp-router run` on `cores` cores and waits until every port in `ports` accepts.
    fn start(name: &str, config: &str, ports: &[u16], cores: usize) -> Launched {
        let dir = std::env::temp_dir().join(format!(
            "ilp-router-hostile-{name}-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("router.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("router.log");
        let bin = std::env::var("ILP_ROUTER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ilp-router").to_owned());
        let cores = cores.to_string();
        // ROUTER_TEST_LOG=debug for more than the counters.
        let level = std::env::var("ROUTER_TEST_LOG").unwrap_or_else(|_| "info".into());
        let child = Command::new(bin)
            .args(["run", "--config", path.to_str().unwrap()])
            .args(["--log-level", level.as_str(), "--cores", &cores])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start ilp-router");
        let router = Launched {
            child: Some(child),
            log,
            _dir: TempDir(dir),
        };
        let deadline = Instant::now() + WAIT;
        for &port in ports {
            while !listening_on(port) {
                assert!(Instant::now() < deadline, "router did not listen on {port}");
                thread::sleep(Duration::from_millis(20));
            }
        }
        router
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Stops the router (SIGTERM, bounded wait) and returns its log.
    fn stop(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            // In-flight Prepares are answered by their expiry before the links close.
            let deadline = Instant::now() + 3 * WAIT;
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A runtime counter summed over the cores' "core stopped" lines (`name: value` in the
/// `RuntimeCounters` debug print).
fn counter(log: &str, name: &str) -> u64 {
    let key = format!(" {name}: ");
    log.lines()
        .filter(|l| l.contains("core stopped"))
        .filter_map(|l| {
            let at = l.find(&key)? + key.len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        })
        .sum()
}

/// The router's resident set, KiB (`VmRSS` of /proc/<pid>/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cores_available() -> usize {
    thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(2)
}

// ---- packets ------------------------------------------------------------------------------

const FULFILLMENT: [u8; 32] = [42; 32];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn prepare(destination: &str, expires_in_ms: i64, data: &[u8]) -> Vec<u8> {
    let condition: [u8; 32] = Sha256::digest(FULFILLMENT).into();
    let repr = PrepareRepr {
        amount: 1,
        expires_at: now_ms() + expires_in_ms,
        execution_condition: &condition,
        destination: Address::new_checked(destination.as_bytes()).unwrap(),
        data,
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn fulfill(data: &[u8]) -> Vec<u8> {
    let repr = FulfillRepr {
        fulfillment: &FULFILLMENT,
        data,
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

fn btp_message(request_id: u32, ilp: &[u8]) -> Vec<u8> {
    let entry = [ilp_router::wire::ProtocolData {
        name: b"ilp",
        content_type: ilp_router::wire::ContentType::OCTET_STREAM,
        data: ilp,
    }];
    let repr = BtpRepr {
        request_id,
        body: BtpBody::Message,
        protocol_data: &entry,
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

/// What a Reject says, or `None` for anything else.
fn reject_code(ilp: &[u8]) -> Option<ErrorCode> {
    Reject::new_checked(ilp).ok().map(|r| r.code())
}

// ---- a raw client: handshake and auth by hand, then frames; reads only when told ------------

struct Raw {
    stream: TcpStream,
    mask: u32,
    buf: Vec<u8>,
    filled: usize,
}

impl Raw {
    /// Connects (with a small receive buffer when asked, set before the handshake so the
    /// window stays small) and upgrades to WebSocket.
    fn upgrade(addr: SocketAddr, rcvbuf: Option<usize>) -> std::io::Result<Raw> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        if let Some(len) = rcvbuf {
            socket.set_recv_buffer_size(len)?;
        }
        socket.connect_timeout(&addr.into(), WAIT)?;
        let mut stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(WAIT))?;
        stream.set_write_timeout(Some(WAIT))?;
        stream.set_nodelay(true)?;
        let nonce = [9u8; ws::NONCE_LEN];
        let host = addr.to_string();
        let mut request = vec![0u8; ws::upgrade_request_len(&host, "/")];
        let n = ws::write_upgrade_request(&host, "/", &nonce, &mut request);
        stream.write_all(&request[..n])?;
        let mut buf = vec![0u8; 1 << 20];
        let mut filled = 0;
        let header = loop {
            let n = read_some(&mut stream, &mut buf[filled..])?;
            if n == 0 {
                return Err(std::io::Error::other("closed during handshake"));
            }
            filled += n;
            match ws::parse_upgrade_response(&buf[..filled], &nonce) {
                Ok(Some(len)) => break len,
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        };
        buf.copy_within(header..filled, 0);
        Ok(Raw {
            stream,
            mask: 0x5eed_1234,
            buf,
            filled: filled - header,
        })
    }

    /// Upgrades and authenticates; `Err` when the router refuses or closes.
    fn authenticated(
        addr: SocketAddr,
        rcvbuf: Option<usize>,
        user: &str,
        token: &str,
    ) -> std::io::Result<Raw> {
        let mut raw = Raw::upgrade(addr, rcvbuf)?;
        let mut session = BtpSession::client(0, ilp_router::engine::PeerId(0), 10_000, 16, 16);
        let mut auth = vec![0u8; BtpSession::auth_len(user.as_bytes(), token.as_bytes())];
        let n = session.write_auth(user.as_bytes(), token.as_bytes(), &mut auth);
        raw.frame(Opcode::Binary, &auth[..n])?;
        let (opcode, reply) = raw.read_frame()?;
        let mut control = [0u8; 128];
        match (opcode, session.handle_message(0, &reply, &mut control)) {
            (Opcode::Binary, Event::Opened(_)) => Ok(raw),
            _ => Err(std::io::Error::other("auth refused")),
        }
    }

    fn frame(&mut self, opcode: Opcode, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = vec![0u8; ws::FRAME_HEADER_LEN_MAX + payload.len()];
        let n = ws::write_frame(opcode, true, payload, Some(self.next_mask()), &mut frame);
        self.stream.write_all(&frame[..n])
    }

    fn next_mask(&mut self) -> [u8; 4] {
        self.mask = self
            .mask
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        self.mask.to_le_bytes()
    }

    /// The next whole frame from the router (unmasked, as a server sends): opcode, payload.
    fn read_frame(&mut self) -> std::io::Result<(Opcode, Vec<u8>)> {
        let decoder = ws::FrameDecoder::new(Role::Client, 1 << 20);
        loop {
            match decoder.decode(&mut self.buf[..self.filled]) {
                Ok(Some(frame)) => {
                    let payload = self.buf[frame.payload.clone()].to_vec();
                    self.buf.copy_within(frame.len..self.filled, 0);
                    self.filled -= frame.len;
                    return Ok((frame.opcode, payload));
                }
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
            let n = read_some(&mut self.stream, &mut self.buf[self.filled..])?;
            if n == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            self.filled += n;
        }
    }

    /// Reads and discards until the router closes the connection (`true`) or `within` passes
    /// with the connection still open (`false`).
    fn closed_within(&mut self, within: Duration) -> bool {
        closed_within(&mut self.stream, within)
    }
}

/// A peer that does not read stays so for 2.5 times `write_timeout_ms` (1 s in these
/// configs) before it looks whether the router closed it: reading would be progress.
fn stay_unread() {
    thread::sleep(Duration::from_millis(2500));
}

/// Reads and discards until the peer closes (EOF or reset: `true`) or `within` passes.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A read that a signal interrupted is made again (the test binary's child processes end
/// while others read; `read` does not retry `EINTR` by itself).
fn read_some(stream: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Everything the peer sends until it closes (bounded by `within`).
fn read_to_close(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    all
}

/// True when the router has closed `stream` (a read that does not wait sees EOF or a reset).
fn is_closed_now(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// A small xorshift for garbage bytes (seeded: a failure reproduces).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

// ---- configs ------------------------------------------------------------------------------

fn peers_config(btp: u16, http: Option<u16>, extra_peers: &str, limits: &str) -> String {
    let http = http.map_or(String::new(), |p| format!("http = \"127.0.0.1:{p}\""));
    format!(
        r#"
ilp_address = "g.router"
[listen]
btp = "127.0.0.1:{btp}"
{http}
[[peers]]
name = "alice"
auth_tokens = ["alice-secret"]
relation = "child"
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000"
[[peers]]
name = "bob"
auth_tokens = ["bob-secret"]
relation = "peer"
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000"
[[peers]]
name = "mallory"
auth_tokens = ["mallory-secret"]
relation = "peer"
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000"
[[peers]]
name = "sink"
auth_tokens = ["sink-secret"]
relation = "peer"
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000"
[[peers]]
name = "carol"
auth_tokens = ["carol-secret"]
relation = "peer"
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "USD"
asset_scale = 9
max_balance = "1000000000000"
{extra_peers}
[[routes]]
prefix = "g.bob"
peer = "bob"
[[routes]]
prefix = "g.sink"
peer = "sink"
[[routes]]
prefix = "g.carol"
peer = "carol"
[rates]
USD = "1"
[limits]
tick_ms = 5
frame_len_max = 65536
link_queue_bytes_max = 65536
write_timeout_ms = 1000
{limits}
"#
    )
}

/// A round trip alice → bob with `bob` answering, checked.
fn round_trip(alice: &mut Peer, bob: &mut Peer) {
    let id = alice.send_ilp(&prepare("g.bob.x", 10_000, b"rt"));
    let (_, bob_id, _) = bob.recv_ilp().expect("bob gets the Prepare");
    bob.send_btp(BtpType::Response, bob_id, &fulfill(b""));
    let (_, reply_id, back) = alice.recv_ilp().expect("alice gets the answer");
    assert_eq!(reply_id, id);
    assert!(
        matches!(Packet::new_checked(&back[..]), Ok(Packet::Fulfill(_))),
        "fulfilled: {back:02x?}"
    );
}

// ---- 4: a refused handshake gets its own status --------------------------------------------

#[test]
fn refused_handshakes_get_their_status_and_close() {
    if io_uring_missing("refused_handshakes_get_their_status_and_close") {
        return;
    }
    let port = free_port();
    let config = peers_config(port, None, "", "auth_timeout_ms = 2000");
    let _router = Launched::start("handshake", &config, &[port], 1);
    let ask = |request: &[u8]| {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(request).unwrap();
        String::from_utf8_lossy(&read_to_close(&mut stream, WAIT)).into_owned()
    };
    // RFC 6455 §4.4: another version is 426 naming 13.
    let answer = ask(
        b"GET / HTTP/1.1\r\nHost: r\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 426 "), "answered {answer:?}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer:?}");
    assert!(
        answer.contains("\r\nSec-WebSocket-Version: 13\r\n"),
        "{answer:?}"
    );
    // No end of the header block within 8 KiB: 431 (RFC 6585 §5).
    let mut long = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
    long.resize(9000, b'a');
    let answer = ask(&long);
    assert!(answer.starts_with("HTTP/1.1 431 "), "answered {answer:?}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer:?}");
    // Anything else: 400.
    let answer = ask(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 "), "answered {answer:?}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer:?}");
}

// ---- 1: queue caps and the write deadline -------------------------------------------------

#[test]
fn peers_that_do_not_read_are_capped_and_cut_off() {
    if io_uring_missing("peers_that_do_not_read_are_capped_and_cut_off") {
        return;
    }
    let port = free_port();
    let config = peers_config(port, None, "", "");
    let mut router = Launched::start("queue", &config, &[port], 1);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut alice = Peer::connect(addr, "alice", "alice-secret").expect("alice");

    // Forwarding to a link queued over half its cap is T03. Bob authenticates with a small
    // receive window and never reads; alice sends him Prepares of 30 KB, ten at a time, until
    // one is T03. What the kernel takes first depends on the host (the send buffer of a
    // loopback socket grows up to `tcp_wmem`'s 4 MiB), so the bound is past that: 9 MB.
    let mut bob = Raw::authenticated(addr, Some(4096), "bob", "bob-secret").expect("bob");
    let data = vec![7u8; 30_000];
    let packet = prepare("g.bob.x", 20_000, &data);
    let mut sent = Vec::new();
    let mut codes = Vec::new();
    'send: for _ in 0..30 {
        sent.extend((0..10).map(|_| alice.send_ilp(&packet)));
        while let Some((_, id, ilp)) = alice.recv_ilp_within(Duration::from_millis(200)) {
            assert!(sent.contains(&id));
            codes.push(reject_code(&ilp));
            if codes.last() == Some(&Some(ErrorCode::T03_CONNECTOR_BUSY)) {
                break 'send;
            }
        }
    }
    assert!(
        codes.contains(&Some(ErrorCode::T03_CONNECTOR_BUSY)),
        "a Prepare to a link queued over half its cap is T03; answers: {codes:?}"
    );
    // What we write to bob makes no progress: write_timeout_ms later his link is closed.
    stay_unread();
    assert!(
        bob.closed_within(Duration::from_secs(5)),
        "a link whose writes make no progress is closed"
    );
    // Every Prepare is answered once: those that waited in bob's queue are T01 when it closes.
    while codes.len() < sent.len() {
        let (_, id, ilp) = alice
            .recv_ilp_within(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{} of {} answered", codes.len(), sent.len()));
        assert!(sent.contains(&id));
        codes.push(reject_code(&ilp));
    }

    // A burst of Pings from a peer that does not read the Pongs: its reader stops at half
    // the cap (the rest of the burst waits in the sockets), then its link is closed. 40 000
    // Pongs (5 MB): past what the kernel's send buffer takes first (up to 4 MiB), which the
    // queue no longer holds.
    let mut carol = Raw::authenticated(addr, Some(4096), "carol", "carol-secret").expect("carol");
    let mut burst = Vec::new();
    for _ in 0..40_000 {
        let mut frame = [0u8; ws::FRAME_HEADER_LEN_MAX + 125];
        let n = ws::write_frame(
            Opcode::Ping,
            true,
            &[0x55; 125],
            Some(carol.next_mask()),
            &mut frame,
        );
        burst.extend_from_slice(&frame[..n]);
    }
    carol
        .stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = carol.stream.write_all(&burst); // blocks once the router stops reading
    stay_unread();
    assert!(
        carol.closed_within(Duration::from_secs(5)),
        "a peer that floods Pings and never reads the Pongs is closed"
    );

    // Replies that keep coming for a peer that does not read: its queue passes the cap and
    // its link is closed. The sink fulfills every Prepare with 16 KB of data.
    let sink = Peer::connect(addr, "sink", "sink-secret").expect("sink");
    let stop = Arc::new(AtomicBool::new(false));
    let sink_thread = {
        let stop = Arc::clone(&stop);
        let mut sink = sink;
        thread::spawn(move || {
            let reply = fulfill(&[5u8; 16_000]);
            while !stop.load(Ordering::Relaxed) {
                if let Some((BtpType::Message, id, _)) =
                    sink.recv_ilp_within(Duration::from_millis(50))
                {
                    sink.send_btp(BtpType::Response, id, &reply);
                }
            }
        })
    };
    let mut mallory =
        Raw::authenticated(addr, Some(4096), "mallory", "mallory-secret").expect("mallory");
    let packet = prepare("g.sink.x", 10_000, b"mallory");
    // 600 answers of 16 KB: past the cap even after the kernel took what it takes (the send
    // buffer of a loopback socket grows up to 4 MiB; what it took is not queued any more).
    for id in 1..=600 {
        // The router may close the link (a reset) before the last of them is written: that
        // is the outcome this part waits for.
        if mallory
            .frame(Opcode::Binary, &btp_message(id, &packet))
            .is_err()
        {
            break;
        }
    }
    stay_unread();
    let closed = mallory.closed_within(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    sink_thread.join().unwrap();
    assert!(closed, "a peer whose replies overflow its queue is closed");

    // Alice never noticed.
    let id = alice.send_ilp(&prepare("g.nowhere", 10_000, b""));
    let (_, reply_id, ilp) = alice.recv_ilp().expect("alice is still served");
    assert_eq!(reply_id, id);
    assert_eq!(reject_code(&ilp), Some(ErrorCode::F02_UNREACHABLE));
    let log = router.stop();
    assert!(
        counter(&log, "write_timeouts") >= 1,
        "write deadline counted: {log}"
    );
    assert!(
        counter(&log, "reads_paused") >= 1,
        "paused reader counted: {log}"
    );
    assert!(
        counter(&log, "queue_overflows") >= 1,
        "overflow counted: {log}"
    );
}

// ---- 3: keepalive -------------------------------------------------------------------------

#[test]
fn silent_btp_links_are_pinged_then_taken_down() {
    if io_uring_missing("silent_btp_links_are_pinged_then_taken_down") {
        return;
    }
    let port = free_port();
    // A fake next hop the router dials: we are its server, so its Pings must come masked.
    let far = TcpListener::bind("127.0.0.1:0").unwrap();
    let far_port = far.local_addr().unwrap().port();
    let extra = format!(
        r#"
[[peers]]
name = "far"
relation = "peer"
# A test peer that does not speak CCP: we do not ask it for routes.
receive_routes = false
asset_code = "USD"
asset_scale = 9
max_balance = "1000"
btp_url = "ws://127.0.0.1:{far_port}"
outgoing_token = "far-token"
"#
    );
    let limits = "btp_ping_interval_ms = 200\nbtp_pings_missed_max = 2";
    let config = peers_config(port, None, &extra, limits);
    let mut router = Launched::start("keepalive", &config, &[port], 1);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // A peer that goes silent: a Ping after 200 ms, then (no Pong) down 600 ms after its last
    // frame: two Pings each had a whole interval to be answered.
    let mut quiet = Raw::authenticated(addr, None, "carol", "carol-secret").expect("carol");
    let silent_since = Instant::now();
    let (opcode, _) = quiet.read_frame().expect("a frame before any close");
    assert_eq!(opcode, Opcode::Ping, "a silent link is pinged");
    let pinged_after = silent_since.elapsed();
    assert!(
        pinged_after >= Duration::from_millis(150),
        "pinged after {pinged_after:?}"
    );
    assert!(quiet.closed_within(Duration::from_secs(3)), "taken down");
    let down_after = silent_since.elapsed();
    assert!(
        (Duration::from_millis(550)..Duration::from_secs(3)).contains(&down_after),
        "taken down after {down_after:?}"
    );

    // Peers that answer Pings stay up while idle.
    let mut alice = Peer::connect(addr, "alice", "alice-secret").unwrap();
    let mut bob = Peer::connect(addr, "bob", "bob-secret").unwrap();
    let idle_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < idle_until {
        assert!(alice.recv_ilp_within(Duration::from_millis(40)).is_none());
        assert!(bob.recv_ilp_within(Duration::from_millis(40)).is_none());
    }
    round_trip(&mut alice, &mut bob);

    // The link we dialled: auth answered, then silence; its Pings are masked (the server-side
    // decoder refuses unmasked frames), and it is taken down too.
    far.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut stream = loop {
        match far.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("the router never dialled: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut filled = 0;
    let (head_len, key) = loop {
        let n = read_some(&mut stream, &mut buf[filled..]).unwrap();
        assert!(n > 0, "closed during the handshake");
        filled += n;
        if let Some(request) = ws::parse_upgrade_request(&buf[..filled]).unwrap() {
            break (request.len(), *request.key());
        }
    };
    let mut response = [0u8; ws::UPGRADE_RESPONSE_LEN];
    let n = ws::write_upgrade_response(&key, &mut response);
    stream.write_all(&response[..n]).unwrap();
    buf.copy_within(head_len..filled, 0);
    filled -= head_len;
    let decoder = ws::FrameDecoder::new(Role::Server, 1 << 16);
    let mut next_frame = |stream: &mut TcpStream| -> Option<(Opcode, Vec<u8>)> {
        loop {
            match decoder.decode(&mut buf[..filled]) {
                Ok(Some(frame)) => {
                    let payload = buf[frame.payload.clone()].to_vec();
                    buf.copy_within(frame.len..filled, 0);
                    filled -= frame.len;
                    return Some((frame.opcode, payload));
                }
                Ok(None) => {}
                Err(e) => panic!("the router sent a bad (unmasked?) frame: {e}"),
            }
            match read_some(stream, &mut buf[filled..]) {
                Ok(0) | Err(_) => return None,
                Ok(n) => filled += n,
            }
        }
    };
    let (opcode, auth) = next_frame(&mut stream).expect("the router's auth");
    assert_eq!(opcode, Opcode::Binary);
    let request_id = Btp::new_checked(&auth[..]).unwrap().request_id();
    let repr = BtpRepr {
        request_id,
        body: BtpBody::Response,
        protocol_data: &[],
    };
    let mut accepted = vec![0u8; repr.buffer_len()];
    repr.emit(&mut accepted);
    let mut frame = vec![0u8; accepted.len() + ws::FRAME_HEADER_LEN_MAX];
    let n = ws::write_frame(Opcode::Binary, true, &accepted, None, &mut frame);
    stream.write_all(&frame[..n]).unwrap();
    let silent_since = Instant::now();
    let (opcode, _) = next_frame(&mut stream).expect("a Ping");
    assert_eq!(
        opcode,
        Opcode::Ping,
        "we dialled a silent peer: pinged (masked)"
    );
    while let Some((opcode, _)) = next_frame(&mut stream) {
        assert!(
            matches!(opcode, Opcode::Ping | Opcode::Close),
            "only Pings, then maybe a Close: {opcode:?}"
        );
        assert!(silent_since.elapsed() < Duration::from_secs(3), "still up");
    }
    let down_after = silent_since.elapsed();
    assert!(
        down_after < Duration::from_secs(3),
        "the dialled link is taken down (after {down_after:?})"
    );

    let log = router.stop();
    assert!(counter(&log, "keepalive_pings") >= 2, "counted: {log}");
    assert!(counter(&log, "keepalive_closed") >= 2, "counted: {log}");
}

// ---- 2: unauthenticated connections are counted apart -------------------------------------

#[test]
fn idle_connections_are_capped_apart_from_authenticated_links() {
    if io_uring_missing("idle_connections_are_capped_apart_from_authenticated_links") {
        return;
    }
    let btp = free_port();
    let http = free_port();
    let limits = "links_max = 4\nconnections_per_peer_max = 2\nunauthenticated_max = 8\n\
        auth_timeout_ms = 5000\nhttp_request_timeout_ms = 5000\nhttp_idle_timeout_ms = 5000";
    let config = peers_config(btp, Some(http), "", limits);
    let mut router = Launched::start("unauthenticated", &config, &[btp, http], 1);
    let addr = SocketAddr::from(([127, 0, 0, 1], btp));
    // links_max idle sockets: they must not take the authenticated links' room.
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", http)).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(100));
    assert!(
        idle.iter().all(|s| !is_closed_now(s)),
        "under unauthenticated_max"
    );
    let mut alice =
        Peer::connect(addr, "alice", "alice-secret").expect("alice connects past idle sockets");
    let mut bob = Peer::connect(addr, "bob", "bob-secret").expect("bob too");
    round_trip(&mut alice, &mut bob);
    // Past unauthenticated_max, new connections are closed at once: 4 more fit, 26 do not.
    let more: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(("127.0.0.1", http)).unwrap())
        .collect();
    idle.extend(more);
    thread::sleep(Duration::from_millis(300));
    let open = idle.iter().filter(|s| !is_closed_now(s)).count();
    assert_eq!(
        open, 8,
        "exactly unauthenticated_max idle connections stay open"
    );
    // The authenticated links do not notice.
    round_trip(&mut alice, &mut bob);
    // Once the idle ones go, the slots come back: a new peer gets in.
    idle.clear();
    let deadline = Instant::now() + WAIT;
    let mut carol = loop {
        match Peer::connect(addr, "carol", "carol-secret") {
            Ok(carol) => break carol,
            Err(e) => {
                assert!(Instant::now() < deadline, "carol never got in: {e}");
                thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let id = carol.send_ilp(&prepare("g.bob.x", 10_000, b"carol"));
    let (_, bob_id, _) = bob.recv_ilp().expect("forwarded");
    bob.send_btp(BtpType::Response, bob_id, &fulfill(b""));
    assert_eq!(carol.recv_ilp().expect("answered").1, id);
    // links_max counts authenticated links only: the 4th fits, a 5th does not.
    let _mallory = Peer::connect(addr, "mallory", "mallory-secret").expect("4th link");
    assert!(
        Peer::connect(addr, "sink", "sink-secret").is_err(),
        "a 5th authenticated link is over links_max"
    );
    drop(alice);
    drop(bob);
    let log = router.stop();
    assert!(counter(&log, "unauthenticated_refused") >= 26, "{log}");
    assert!(counter(&log, "links_refused") >= 1, "{log}");
}

// ---- 5: all of it at once, with a good pair -----------------------------------------------

/// Outcome tallies of the good sender.
#[derive(Default)]
struct Good {
    sent: AtomicU64,
    fulfilled: AtomicU64,
    rejected: AtomicU64,
    lost: AtomicU64,
}

#[test]
fn hostile_clients_do_not_disturb_a_good_pair() {
    if io_uring_missing("hostile_clients_do_not_disturb_a_good_pair") {
        return;
    }
    let cores = cores_available();
    let btp = free_port();
    let http = free_port();
    const UNAUTHENTICATED_MAX: usize = 16;
    const LINKS_MAX: usize = 8;
    let limits = format!(
        "links_max = {LINKS_MAX}\nconnections_per_peer_max = 4\n\
         unauthenticated_max = {UNAUTHENTICATED_MAX}\nauth_timeout_ms = 1500\n\
         http_request_timeout_ms = 1000\nhttp_idle_timeout_ms = 1000\nbad_frames_max = 3"
    );
    let config = peers_config(btp, Some(http), "", &limits);
    let mut router = Launched::start("hostile", &config, &[btp, http], cores);
    let pid = router.pid();
    let addr = SocketAddr::from(([127, 0, 0, 1], btp));
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http));

    let mut alice = Peer::connect(addr, "alice", "alice-secret").expect("alice");
    let mut bob = Peer::connect(addr, "bob", "bob-secret").expect("bob");
    let sink = Peer::connect(addr, "sink", "sink-secret").expect("sink");
    for _ in 0..50 {
        round_trip(&mut alice, &mut bob);
    }
    let baseline_kib = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let hostile_for = Duration::from_secs(3);

    // Bob and the sink answer every Prepare with a Fulfill (the sink's carries 16 KB, so the
    // replies owed to mallory pile up fast).
    let answerer = |mut peer: Peer, data: Vec<u8>, stop: Arc<AtomicBool>| {
        thread::spawn(move || {
            let reply = fulfill(&data);
            while !stop.load(Ordering::Relaxed) {
                if let Some((BtpType::Message, id, _)) =
                    peer.recv_ilp_within(Duration::from_millis(50))
                {
                    peer.send_btp(BtpType::Response, id, &reply);
                }
            }
            peer
        })
    };
    let bob_thread = answerer(bob, Vec::new(), Arc::clone(&stop));
    let sink_thread = answerer(sink, vec![5u8; 16_000], Arc::clone(&stop));

    // The good sender: one Prepare at a time, for the whole hostile phase.
    let good = Arc::new(Good::default());
    let alice_thread = {
        let (good, stop) = (Arc::clone(&good), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let id = alice.send_ilp(&prepare("g.bob.x", 10_000, b"good"));
                good.sent.fetch_add(1, Ordering::Relaxed);
                match alice.recv_ilp() {
                    Some((_, reply_id, ilp)) if reply_id == id => {
                        match Packet::new_checked(&ilp[..]) {
                            Ok(Packet::Fulfill(_)) => {
                                good.fulfilled.fetch_add(1, Ordering::Relaxed)
                            }
                            _ => good.rejected.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    _ => {
                        good.lost.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            alice
        })
    };

    // Memory: sampled through the hostile phase and the clean-up after it.
    let peak_kib = Arc::new(AtomicU64::new(baseline_kib));
    let sampler = {
        let (peak, stop) = (Arc::clone(&peak_kib), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let started = Instant::now();
    let until = started + hostile_for;

    // Mallory: authenticated, sends Prepares (to the sink) as fast as she can and never reads
    // the replies. Her link must be closed: her queue overflows, or her writes stall.
    // (She connects before the floods fill the unauthenticated slots.) A small receive
    // window, so the replies owed to her pile up in the router rather than in the kernel.
    let mut raw = Raw::authenticated(addr, Some(4096), "mallory", "mallory-secret").unwrap();
    let mallory = thread::spawn(move || {
        let packet = prepare("g.sink.x", 5_000, b"mallory");
        let mut sent = 0u32;
        raw.stream
            .set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while Instant::now() < until && sent < 50_000 {
            // A stalled write ends her sending (a partial frame is all the router gets).
            match raw.frame(Opcode::Binary, &btp_message(sent + 1, &packet)) {
                Ok(()) => sent += 1,
                Err(_) => break,
            }
        }
        raw.closed_within(Duration::from_secs(5))
    });

    // Pingers: upgrade (before the floods take the unauthenticated slots), never
    // authenticate, flood Pings and never read the Pongs.
    let pingers: Vec<_> = (0..4)
        .map(|_| Raw::upgrade(addr, Some(4096)).expect("upgraded"))
        .map(|mut raw| {
            thread::spawn(move || {
                raw.stream
                    .set_write_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut batch = Vec::new();
                for _ in 0..64 {
                    let mut frame = [0u8; ws::FRAME_HEADER_LEN_MAX + 125];
                    let n = ws::write_frame(
                        Opcode::Ping,
                        true,
                        &[0x55; 125],
                        Some(raw.next_mask()),
                        &mut frame,
                    );
                    batch.extend_from_slice(&frame[..n]);
                }
                let (mut sent, mut at) = (0u64, 0);
                while Instant::now() < until {
                    match raw.stream.write(&batch[at..]) {
                        Ok(n) => {
                            sent += n as u64;
                            at = (at + n) % batch.len();
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
                sent
            })
        })
        .collect();

    // Garbage on both ports: each answered with a 4xx and closed, or closed at once.
    let garbage = |target: SocketAddr, seed: u64| {
        thread::spawn(move || {
            let mut rng = Rng(seed);
            let (mut tries, mut answered) = (0u32, 0u32);
            while Instant::now() < until && tries < 500 {
                tries += 1;
                let Ok(mut stream) = TcpStream::connect(target) else {
                    continue;
                };
                let len = (rng.next() % 2000) as usize;
                let mut bytes = rng.bytes(len);
                bytes.extend_from_slice(b"\r\n\r\n");
                let _ = stream.write_all(&bytes);
                let answer = read_to_close(&mut stream, Duration::from_secs(5));
                if answer.starts_with(b"HTTP/1.1 4") {
                    answered += 1;
                } else {
                    assert!(answer.is_empty(), "garbage got {answer:02x?}");
                    thread::sleep(Duration::from_millis(5)); // refused at once: the cap is full
                }
            }
            (tries, answered)
        })
    };
    let garbage_btp = garbage(addr, 0x1234_5678_9abc_def1);
    let garbage_http = garbage(http_addr, 0x0fed_cba9_8765_4321);

    // Wrong tokens, again and again: never accepted.
    let auth_flood = thread::spawn(move || {
        let mut tries = 0u32;
        while Instant::now() < until && tries < 2000 {
            tries += 1;
            if let Ok(raw) = Raw::authenticated(addr, None, "alice", "not-the-secret") {
                drop(raw);
                panic!("a wrong token was accepted");
            }
        }
        tries
    });

    // Hundreds of idle sockets on the HTTP port: at most unauthenticated_max per core are
    // kept; the rest are closed at once.
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect_timeout(&http_addr, WAIT).ok())
        .collect();
    let opened = idle.len();
    // The refused ones close as soon as the router accepts them; the kept ones only at
    // http_idle_timeout_ms (1 s). Look a few times before that.
    let mut idle_open = opened;
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(250));
        idle_open = idle_open.min(idle.iter().filter(|s| !is_closed_now(s)).count());
    }
    // A new peer still gets in while they are held (retrying until one times out).
    let deadline = Instant::now() + WAIT;
    let mut carol = loop {
        match Peer::connect(addr, "carol", "carol-secret") {
            Ok(carol) => break carol,
            Err(e) => {
                assert!(Instant::now() < deadline, "carol never got in: {e}");
                thread::sleep(Duration::from_millis(20));
            }
        }
    };

    let mallory_closed = mallory.join().unwrap();
    let ping_bytes: Vec<u64> = pingers.into_iter().map(|t| t.join().unwrap()).collect();
    let garbage_btp = garbage_btp.join().unwrap();
    let garbage_http = garbage_http.join().unwrap();
    let auth_tries = auth_flood.join().unwrap();
    drop(idle);
    // The good pair keeps going while the router closes what the hostile clients left (auth
    // and write deadlines): memory is still sampled.
    thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    let mut alice = alice_thread.join().unwrap();
    let mut bob = bob_thread.join().unwrap();
    let _sink = sink_thread.join().unwrap();
    sampler.join().unwrap();
    let peak_kib = peak_kib.load(Ordering::Relaxed);

    let sent = good.sent.load(Ordering::Relaxed);
    let fulfilled = good.fulfilled.load(Ordering::Relaxed);
    eprintln!(
        "hostile: {cores} core(s), {:?}; good pair {fulfilled}/{sent} fulfilled, {} rejected, \
         {} lost; mallory closed: {mallory_closed}; ping bytes {ping_bytes:?}; garbage \
         (tries, 4xx) btp {garbage_btp:?} http {garbage_http:?}; wrong-token tries \
         {auth_tries}; idle HTTP sockets {opened} opened, {idle_open} kept; RSS baseline \
         {baseline_kib} KiB, peak {peak_kib} KiB",
        started.elapsed(),
        good.rejected.load(Ordering::Relaxed),
        good.lost.load(Ordering::Relaxed),
    );

    // The good pair: every Prepare answered, at least 99 % fulfilled.
    assert_eq!(
        good.lost.load(Ordering::Relaxed),
        0,
        "the good pair lost its link"
    );
    assert!(sent >= 100, "the good pair kept sending ({sent})");
    assert!(
        fulfilled * 100 >= sent * 99,
        "good pair: {fulfilled} of {sent} fulfilled"
    );
    // The peer that never read was cut off.
    assert!(
        mallory_closed,
        "a peer that never reads its replies is closed"
    );
    // The idle flood met the cap.
    assert!(opened >= 250, "opened {opened} idle sockets");
    assert!(
        idle_open <= cores * UNAUTHENTICATED_MAX,
        "{idle_open} idle sockets kept: over unauthenticated_max per core"
    );
    // Memory. Per core at most links_max + unauthenticated_max links live at once, each with
    // at most: its read buffer (256 KiB), WebSocket reassembly (64 KiB), its BTP request
    // table (64 KiB), and two queue buffers of up to link_queue_bytes_max plus one frame
    // (2 x 128 KiB): 640 KiB. Plus 16 MiB for the allocator's slack and task state. The old
    // code queued every Pong and reply without a cap, far past this.
    let per_link_kib = 640;
    let bound_kib = baseline_kib
        + (cores * (LINKS_MAX + UNAUTHENTICATED_MAX) * per_link_kib) as u64
        + 16 * 1024;
    assert!(
        peak_kib <= bound_kib,
        "RSS peaked at {peak_kib} KiB, over the bound {bound_kib} KiB (baseline {baseline_kib})"
    );

    // Afterwards every slot comes back: a final burst is all fulfilled, the new peer works,
    // and unauthenticated_max new idle sockets are all admitted again.
    for _ in 0..200 {
        round_trip(&mut alice, &mut bob);
    }
    let id = carol.send_ilp(&prepare("g.bob.x", 10_000, b"carol"));
    let (_, bob_id, _) = bob.recv_ilp().expect("forwarded");
    bob.send_btp(BtpType::Response, bob_id, &fulfill(b""));
    assert_eq!(carol.recv_ilp().expect("answered").1, id);
    // (Retried until the router has finished closing what the hostile clients left.)
    let deadline = Instant::now() + WAIT;
    loop {
        let again: Vec<TcpStream> = (0..UNAUTHENTICATED_MAX)
            .map(|_| TcpStream::connect(http_addr).unwrap())
            .collect();
        thread::sleep(Duration::from_millis(200));
        let kept = again.iter().filter(|s| !is_closed_now(s)).count();
        if kept == UNAUTHENTICATED_MAX {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unauthenticated slots never came back ({kept} kept)"
        );
    }

    let log = router.stop();
    assert!(
        counter(&log, "queue_overflows") + counter(&log, "write_timeouts") >= 1,
        "mallory's close is counted"
    );
    assert!(
        counter(&log, "unauthenticated_refused") >= 1,
        "refusals counted"
    );
}
