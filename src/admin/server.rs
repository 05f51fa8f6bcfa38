//! The admin HTTP/1.1 listener: blocking `std::net` on OS threads of its own, never on a
//! packet core, so a slow scrape or a hostile client costs the data plane nothing.
//!
//! # Threads
//!
//! One acceptor thread (`admin-accept`) and one thread per connection (`admin-conn`), at most
//! [`AdminServerConfig::connections_max`] of them. A connection past the cap is answered
//! `503` with `Retry-After: 1` from the acceptor (a non-blocking write into a fresh socket's
//! buffer) and closed; a client whose bytes arrive after that close may see a reset instead. One request per connection: every answer says
//! `Connection: close`. [`AdminServer::shutdown`] (or dropping the handle) stops accepting,
//! shuts down the sockets of the connections still open, and joins every thread, so no
//! handler call runs after it returns.
//!
//! # What happens to a request
//!
//! | step | refused with |
//! | --- | --- |
//! | head within [`HEAD_LEN_MAX`] bytes, at most 64 header lines | 431 |
//! | head well-formed (httparse, `\n` or `\r\n` line ends) | 400 |
//! | bearer token, where one is required (table below) | 401 with `WWW-Authenticate: Bearer` |
//! | no `Transfer-Encoding` (chunked bodies are not read) | 411 |
//! | `Content-Length` digits only, all copies agreeing | 400 |
//! | body within [`BODY_LEN_MAX`] bytes | 413 |
//! | head and body in before the read deadline | 408 (nothing sent when no byte came) |
//! | target in origin form with valid escapes | 400 |
//! | the handler | its answer; 500 if it panics |
//!
//! `Expect: 100-continue` gets its interim `100 Continue` once the checks above pass. Unknown
//! methods and paths are the handler's business (404, 405). A malformed request, a timeout or
//! a panicking handler affects its own connection only; server-made refusals are JSON bodies
//! `{"error": "…"}`.
//!
//! # Authentication
//!
//! | request | no token configured | token configured |
//! | --- | --- | --- |
//! | `GET /health` | open | open |
//! | `GET /metrics` | open | open, or token needed when `metrics_token` |
//! | anything else | open | token needed |
//!
//! With no token every path is open: the config layer only allows that on a loopback listener.
//! The token is compared in constant time ([`super::http`] explains how); each refusal counts
//! in [`AdminCounters::auth_failures`].
//!
//! # Deadlines
//!
//! `read_timeout` bounds the whole request (head and body), not each `read`, so a client that
//! trickles a byte at a time cannot hold a thread longer. `write_timeout` bounds writing the
//! answer. After an answer sent before the request was read in full (a refusal), the rest is
//! read and discarded for a short while (at most [`LINGER_LEN_MAX`] bytes and one second) so
//! that closing does not reset the connection before the client reads the answer.
//!
//! # Non-goals
//!
//! TLS (put the admin listener on loopback or behind a proxy), keep-alive, pipelining,
//! chunked request bodies, HTTP/2, compression.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::http::{request_from_head, response_head, Request, Response, Token};
use super::prometheus::Exposition;
use crate::link::http1::{self, HeadError, LineEnds};

/// The longest request head read, request line and blank line included.
pub const HEAD_LEN_MAX: usize = 8 * 1024;
/// The longest request body read.
pub const BODY_LEN_MAX: usize = 64 * 1024;
/// The most header lines in a request head.
pub const HEADERS_MAX: usize = 64;
/// The most bytes read and discarded after a refusal, before closing.
pub const LINGER_LEN_MAX: usize = 256 * 1024;
/// How long a refusal waits for the client's remaining bytes, at most.
const LINGER_TIME_MAX: Duration = Duration::from_secs(1);

/// The request handler: called on a connection thread, concurrently with itself.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// What the admin listener needs. [`AdminServerConfig::new`] fills in the defaults.
#[derive(Clone)]
pub struct AdminServerConfig {
    /// Where to listen (port 0: any free port, see [`AdminServer::local_addr`]).
    pub listen: SocketAddr,
    /// The bearer token; `None` leaves every path open (see the module docs).
    pub token: Option<String>,
    /// Whether `GET /metrics` needs the token too.
    pub metrics_token: bool,
    /// Deadline for reading a whole request (default 5 s).
    pub read_timeout: Duration,
    /// Deadline for writing a whole answer (default 5 s).
    pub write_timeout: Duration,
    /// Connections served at once (default 16); more are answered 503.
    pub connections_max: usize,
    /// Where the server counts what it refused; share it with the handler to expose it.
    pub counters: Arc<AdminCounters>,
}

impl AdminServerConfig {
    /// Listens on `listen` with no token and the default limits.
    pub fn new(listen: SocketAddr) -> Self {
        AdminServerConfig {
            listen,
            token: None,
            metrics_token: false,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            connections_max: 16,
            counters: Arc::default(),
        }
    }
}

impl fmt::Debug for AdminServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminServerConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("metrics_token", &self.metrics_token)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("connections_max", &self.connections_max)
            .finish()
    }
}

/// The server's own counts, shared with whoever renders them ([`AdminCounters::write`]).
#[derive(Debug, Default)]
pub struct AdminCounters {
    /// Requests handed to the handler.
    pub requests: AtomicU64,
    /// Requests refused for a missing or wrong token.
    pub auth_failures: AtomicU64,
    /// Requests refused as malformed or too large (400, 411, 413, 431).
    pub bad_requests: AtomicU64,
    /// Requests that passed a read or write deadline.
    pub timeouts: AtomicU64,
    /// Connections refused past the cap (503).
    pub connections_refused: AtomicU64,
    /// Handler calls that panicked (answered 500).
    pub handler_panics: AtomicU64,
    /// Connections being served now.
    pub connections_active: AtomicU64,
}

impl AdminCounters {
    /// Writes the counts as `ilp_admin_*` families.
    pub fn write(&self, w: &mut Exposition<'_>) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        w.counter(
            "ilp_admin_requests_total",
            "Admin requests handled.",
            get(&self.requests),
        );
        w.counter(
            "ilp_admin_auth_failures_total",
            "Admin requests refused for a missing or wrong token.",
            get(&self.auth_failures),
        );
        w.counter(
            "ilp_admin_bad_requests_total",
            "Admin requests refused as malformed or too large.",
            get(&self.bad_requests),
        );
        w.counter(
            "ilp_admin_timeouts_total",
            "Admin requests that passed a read or write deadline.",
            get(&self.timeouts),
        );
        w.counter(
            "ilp_admin_connections_refused_total",
            "Admin connections refused past the connection cap.",
            get(&self.connections_refused),
        );
        w.counter(
            "ilp_admin_handler_panics_total",
            "Admin handler calls that panicked.",
            get(&self.handler_panics),
        );
        w.gauge(
            "ilp_admin_connections",
            "Admin connections being served.",
            get(&self.connections_active),
        );
    }
}

/// A running admin listener; stops on [`AdminServer::shutdown`] or drop.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// A second handle on the listening socket, to wake the acceptor out of `accept`.
    listener: TcpListener,
    acceptor: Option<JoinHandle<()>>,
    counters: Arc<AdminCounters>,
}

impl AdminServer {
    /// The address the listener is bound to (the port chosen when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counts.
    pub fn counters(&self) -> &Arc<AdminCounters> {
        &self.counters
    }

    /// Stops accepting, cuts the connections still open and joins every thread. Calling it
    /// again does nothing.
    pub fn shutdown(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        // On Linux, shutting down a listening socket makes a blocked accept() return EINVAL.
        // Should it not, a connection of our own wakes it.
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Both);
        let _ = TcpStream::connect_timeout(&wake_addr(self.local_addr), Duration::from_secs(1));
        if acceptor.join().is_err() {
            tracing::warn!("admin acceptor thread panicked");
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where to connect to reach a listener bound to `addr` (loopback for a wildcard address).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Binds `config.listen` and starts serving `handler` on threads of its own.
pub fn spawn(config: AdminServerConfig, handler: Handler) -> io::Result<AdminServer> {
    let listener = TcpListener::bind(config.listen)?;
    let local_addr = listener.local_addr()?;
    let waker = listener.try_clone()?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        handler,
        token: config.token.as_deref().map(Token::new),
        metrics_token: config.metrics_token,
        read_timeout: config.read_timeout,
        write_timeout: config.write_timeout,
        counters: Arc::clone(&config.counters),
    });
    let connections_max = config.connections_max;
    let acceptor = {
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name("admin-accept".into())
            .spawn(move || accept_loop(&listener, &shared, &stop, connections_max))?
    };
    Ok(AdminServer {
        local_addr,
        stop,
        listener: waker,
        acceptor: Some(acceptor),
        counters: config.counters,
    })
}

/// What every connection thread reads.
struct Shared {
    handler: Handler,
    token: Option<Token>,
    metrics_token: bool,
    read_timeout: Duration,
    write_timeout: Duration,
    counters: Arc<AdminCounters>,
}

/// Accepts until `stop`; then cuts the open connections and joins their threads.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, stop: &AtomicBool, cap: usize) {
    // Each live connection: its thread and a second handle on its socket, to cut it on stop.
    let mut live: Vec<(JoinHandle<()>, TcpStream)> = Vec::with_capacity(cap.min(64));
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::Acquire) {
            break;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("admin accept failed: {e}");
                // Out of descriptors or memory: do not spin; the loop is bounded by `stop`.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        live.retain(|(thread, _)| !thread.is_finished());
        if live.len() >= cap {
            refuse(stream, &shared.counters);
            continue;
        }
        let Ok(cut) = stream.try_clone() else {
            refuse(stream, &shared.counters);
            continue;
        };
        let counters = &shared.counters;
        counters.connections_active.fetch_add(1, Ordering::Relaxed);
        let guard = ActiveGuard(Arc::clone(counters));
        let for_thread = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("admin-conn".into())
            .spawn(move || {
                let _guard = guard;
                serve(stream, &for_thread);
            });
        match spawned {
            Ok(thread) => live.push((thread, cut)),
            // The closure (and with it the guard and the stream) is dropped.
            Err(_) => refuse(cut, counters),
        }
    }
    for (_, cut) in &live {
        let _ = cut.shutdown(Shutdown::Both);
    }
    for (thread, _) in live {
        let _ = thread.join();
    }
}

/// Counts one connection out of `connections_active` when its thread ends, panic or not.
struct ActiveGuard(Arc<AdminCounters>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers a connection past the cap with 503 from the acceptor, never blocking it: the
/// socket is made non-blocking, what the client already sent is read and dropped (closing on
/// unread bytes would reset the connection under the answer; bytes that come later still
/// may), and the answer goes into the fresh socket's send buffer, which has room for it.
fn refuse(mut stream: TcpStream, counters: &AdminCounters) {
    counters.connections_refused.fetch_add(1, Ordering::Relaxed);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut chunk = [0u8; 4096];
    for _ in 0..4 {
        if !matches!(stream.read(&mut chunk), Ok(n) if n > 0) {
            break;
        }
    }
    let response = Response::error(503, "too many admin connections");
    let mut bytes = response_head(&response, "Retry-After: 1\r\n").into_bytes();
    bytes.extend_from_slice(&response.body);
    let _ = stream.write_all(&bytes);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Why reading stopped.
enum ReadEnd {
    Timeout,
    /// The peer closed, or the socket failed: nothing more to say to it.
    Gone,
}

/// Serves one request on `stream`, then closes it.
fn serve(mut stream: TcpStream, shared: &Shared) {
    answer(&mut stream, shared);
    // The acceptor holds a second descriptor of this socket until it reaps the thread:
    // shut the connection down here rather than wait for the last close.
    let _ = stream.shutdown(Shutdown::Both);
}

/// Reads one request and answers it (see the module docs for the steps).
fn answer(stream: &mut TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + shared.read_timeout;
    let mut buf = Vec::with_capacity(1024);
    let outcome = read_and_handle(stream, &mut buf, deadline, shared);
    let (response, extra, consumed) = match outcome {
        Ok(done) => done,
        Err(ReadEnd::Gone) => return,
        Err(ReadEnd::Timeout) if buf.is_empty() => return,
        Err(ReadEnd::Timeout) => {
            shared.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            (Response::error(408, "request timeout"), "", false)
        }
    };
    let head_only = buf.starts_with(b"HEAD ");
    let write_deadline = Instant::now() + shared.write_timeout;
    let mut written = write_all(
        stream,
        response_head(&response, extra).as_bytes(),
        write_deadline,
    );
    if !head_only {
        written = written.and_then(|()| write_all(stream, &response.body, write_deadline));
    }
    if let Err(ReadEnd::Timeout) = written {
        shared.counters.timeouts.fetch_add(1, Ordering::Relaxed);
    }
    let _ = stream.shutdown(Shutdown::Write);
    if written.is_ok() && !consumed {
        linger(stream, shared.read_timeout.min(LINGER_TIME_MAX));
    }
}

/// Reads the request into `buf` and answers it: the response, extra head lines, and whether
/// the whole request was read (if not, the rest is discarded before closing).
fn read_and_handle(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    shared: &Shared,
) -> Result<(Response, &'static str, bool), ReadEnd> {
    let bad = |status: u16, message: &str| {
        shared.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
        Ok((Response::error(status, message), "", false))
    };
    // Read until the head is complete or refused (parse_request refuses at HEAD_LEN_MAX).
    let head_len = loop {
        let mut headers = http1::headers::<HEADERS_MAX>();
        match http1::parse_request(buf, &mut headers, HEAD_LEN_MAX, LineEnds::Lenient) {
            Ok(Some(head)) => break head.len,
            Ok(None) => read_some(
                stream,
                buf,
                HEAD_LEN_MAX.saturating_sub(buf.len()),
                deadline,
            )?,
            Err(HeadError::TooLarge | HeadError::TooManyHeaders) => {
                return bad(431, "request head too large")
            }
            Err(_) => return bad(400, "malformed request head"),
        }
    };
    let mut headers = http1::headers::<HEADERS_MAX>();
    let Ok(Some(head)) = http1::parse_request(buf, &mut headers, HEAD_LEN_MAX, LineEnds::Lenient)
    else {
        // The same bytes parsed a moment ago.
        return bad(400, "malformed request head");
    };
    let framing = http1::framing(head.headers);
    let path = head.target.split('?').next().unwrap_or(head.target);
    let open = match (head.method, path) {
        ("GET", "/health") => true,
        ("GET", "/metrics") => !shared.metrics_token,
        _ => false,
    };
    if let (Some(token), false) = (&shared.token, open) {
        if !token.accepts(framing.authorization) {
            shared
                .counters
                .auth_failures
                .fetch_add(1, Ordering::Relaxed);
            let response = Response::error(401, "missing or wrong bearer token");
            return Ok((response, "WWW-Authenticate: Bearer\r\n", false));
        }
    }
    if framing.transfer_encoding {
        return bad(411, "send the body with Content-Length");
    }
    let body_len = match framing.content_length {
        Ok(length) => length.unwrap_or(0),
        Err(_) => return bad(400, "malformed Content-Length"),
    };
    if body_len > BODY_LEN_MAX {
        return bad(413, "request body too large");
    }
    let expects_continue = http1::header(head.headers, "expect")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    let total = head_len + body_len;
    if expects_continue && buf.len() < total {
        let continued = write_all(stream, b"HTTP/1.1 100 Continue\r\n\r\n", deadline);
        continued.map_err(|_| ReadEnd::Gone)?;
    }
    while buf.len() < total {
        read_some(stream, buf, total - buf.len(), deadline)?;
    }
    let body = buf[head_len..total].to_vec();
    let mut headers = http1::headers::<HEADERS_MAX>();
    let Ok(Some(head)) = http1::parse_request(buf, &mut headers, HEAD_LEN_MAX, LineEnds::Lenient)
    else {
        return bad(400, "malformed request head");
    };
    let Ok(request) = request_from_head(&head, body) else {
        return bad(400, "malformed request target");
    };
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let handler = &shared.handler;
    let response = catch_unwind(AssertUnwindSafe(|| handler(&request))).unwrap_or_else(|_| {
        shared
            .counters
            .handler_panics
            .fetch_add(1, Ordering::Relaxed);
        Response::error(500, "internal error")
    });
    Ok((response, "", buf.len() == total))
}

/// Reads at most `len_max` (> 0) more bytes into `buf`, waiting no later than `deadline`.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    len_max: usize,
    deadline: Instant,
) -> Result<(), ReadEnd> {
    let mut chunk = [0u8; 4096];
    let want = len_max.min(chunk.len());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadEnd::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| ReadEnd::Gone)?;
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(ReadEnd::Gone),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(ReadEnd::Timeout),
            Err(_) => return Err(ReadEnd::Gone),
        }
    }
}

/// Writes all of `bytes`, finishing no later than `deadline`.
fn write_all(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> Result<(), ReadEnd> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadEnd::Timeout);
        }
        stream
            .set_write_timeout(Some(left))
            .map_err(|_| ReadEnd::Gone)?;
        match stream.write(bytes) {
            Ok(0) => return Err(ReadEnd::Gone),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(ReadEnd::Timeout),
            Err(_) => return Err(ReadEnd::Gone),
        }
    }
    Ok(())
}

/// A socket timeout reads as `WouldBlock` on Unix and `TimedOut` elsewhere.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads and discards what the client still sends, for at most `time_max` and
/// [`LINGER_LEN_MAX`] bytes, so that closing does not reset the connection under the answer.
fn linger(stream: &mut TcpStream, time_max: Duration) {
    let deadline = Instant::now() + time_max;
    let mut chunk = [0u8; 4096];
    let mut discarded = 0;
    while discarded < LINGER_LEN_MAX {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}
