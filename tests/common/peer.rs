//! A blocking BTP-over-WebSocket test peer on loopback, and a guard that runs the router
//! binary with a config and stops it (SIGTERM) when dropped. Every wait is bounded.
// Shared by several test binaries; each uses only part of it.
#![allow(dead_code)]

use ilp_router::link::btp::{BtpSession, Event, State};
use ilp_router::link::websocket::{self as ws, Message, MessageAssembler, Opcode};
use ilp_router::wire::{Btp, BtpBody, BtpRepr, BtpType, ContentType, ProtocolData};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Whether something listens on the loopback port: a connection that is not to itself (a
/// connect to a free port in the ephemeral range can pick that very port as its source and
/// "succeed", TCP's simultaneous open).
pub(crate) fn listening_on(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}

/// True when this kernel lets us create an io_uring (the router needs one per core); a test
/// that needs the router prints why it skips otherwise.
pub(crate) fn io_uring_missing(test: &str) -> bool {
    let missing = io_uring::IoUring::new(8).is_err();
    if missing {
        eprintln!("SKIPPED {test}: io_uring is not available on this kernel or is disabled");
    }
    missing
}

/// The body of `GET path` on a loopback HTTP port (the admin API), bounded.
pub(crate) fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned())
}

/// A Prepare of `amount` to `destination` whose condition is SHA-256([n; 32]) and that
/// expires `expiry_ms` from now.
pub(crate) fn prepare_n(destination: &str, amount: u64, expiry_ms: i64, n: u8) -> Vec<u8> {
    use ilp_router::wire::{Address, PrepareRepr};
    use sha2::{Digest, Sha256};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let condition: [u8; 32] = Sha256::digest([n; 32]).into();
    let repr = PrepareRepr {
        amount,
        expires_at: now + expiry_ms,
        execution_condition: &condition,
        destination: Address::new_checked(destination.as_bytes()).unwrap(),
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

/// The Fulfill of [`prepare_n`]'s Prepare `n`.
pub(crate) fn fulfill_n(n: u8) -> Vec<u8> {
    let repr = ilp_router::wire::FulfillRepr {
        fulfillment: &[n; 32],
        data: b"",
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out
}

/// A free loopback port (bound and released; the router binds it right after).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two free consecutive ports, for `--btp-port-per-core` with two cores.
pub(crate) fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let a = free_port();
        if a < u16::MAX
            && TcpListener::bind(("127.0.0.1", a + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", a)).is_ok()
        {
            return a;
        }
    }
    panic!("no two consecutive free ports");
}

/// The router process; SIGTERM and a bounded wait on drop.
pub(crate) struct Router {
    pub(crate) child: Option<Child>,
    pub(crate) port: u16,
    _dir: TempDir,
}

pub(crate) struct TempDir(pub(crate) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Router {
    /// Starts `ilp-router run` with `config` (whose `[listen] btp` must be on `port`) and waits
    /// until it accepts connections on `port` (and `port + 1` when `per_core_ports`).
    pub(crate) fn start(config: &str, port: u16, extra: &[&str]) -> Router {
        let dir =
            std::env::temp_dir().join(format!("ilp-router-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("router.toml");
        std::fs::write(&path, config).unwrap();
        // ROUTER_TEST_LOG=debug shows the router's log in the test output.
        let level = std::env::var("ROUTER_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let mut args = vec![
            "run",
            "--config",
            path.to_str().unwrap(),
            "--log-level",
            level.as_str(),
        ];
        args.extend_from_slice(extra);
        // ILP_ROUTER_BIN runs the tests against another build (e.g. the last release, to show
        // that a new test fails there).
        let bin = std::env::var("ILP_ROUTER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ilp-router").to_owned());
        let child = Command::new(bin)
            .args(&args)
            .stdin(Stdio::null())
            .spawn()
            .expect("start ilp-router");
        let router = Router {
            child: Some(child),
            port,
            _dir: TempDir(dir),
        };
        let deadline = Instant::now() + WAIT;
        let ports: Vec<u16> = if extra.contains(&"--btp-port-per-core") {
            vec![port, port + 1]
        } else {
            vec![port]
        };
        for p in ports {
            while !listening_on(p) {
                assert!(
                    Instant::now() < deadline,
                    "router did not listen on {p} within {WAIT:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        router
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub(crate) fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test peer's connection: a socket, or TLS over one.
pub(crate) enum PeerStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl PeerStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            PeerStream::Plain(s) => s,
            PeerStream::Tls(s) => &s.sock,
        }
    }

    pub(crate) fn set_read_timeout(&self, wait: Option<Duration>) -> std::io::Result<()> {
        self.tcp().set_read_timeout(wait)
    }

    pub(crate) fn read_timeout(&self) -> std::io::Result<Option<Duration>> {
        self.tcp().read_timeout()
    }
}

impl Read for PeerStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            PeerStream::Plain(s) => s.read(buf),
            PeerStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for PeerStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            PeerStream::Plain(s) => s.write(buf),
            PeerStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            PeerStream::Plain(s) => s.flush(),
            PeerStream::Tls(s) => s.flush(),
        }
    }
}

/// A BTP peer over a blocking socket.
pub(crate) struct Peer {
    stream: PeerStream,
    buf: Vec<u8>,
    filled: usize,
    assembler: MessageAssembler,
    next_id: u32,
    mask: u32,
    /// The connection ended (closed, reset, or a WebSocket Close), not just a wait that ran
    /// out.
    ended: bool,
}

impl Peer {
    /// Connects and completes the WebSocket handshake on `path`.
    pub(crate) fn connect_ws(addr: SocketAddr, path: &str) -> std::io::Result<Peer> {
        let stream = TcpStream::connect_timeout(&addr, WAIT)?;
        Peer::upgrade(PeerStream::Plain(stream), addr, path)
    }

    /// Connects over TLS (`config`, the server checked as `name`) and completes the TLS and
    /// WebSocket handshakes on `/`. The TLS handshake ends with the first read or write.
    pub(crate) fn connect_wss(
        addr: SocketAddr,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: &str,
    ) -> std::io::Result<Peer> {
        let stream = TcpStream::connect_timeout(&addr, WAIT)?;
        let name = rustls::pki_types::ServerName::try_from(name.to_owned())
            .map_err(std::io::Error::other)?;
        let tls = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        let stream = PeerStream::Tls(Box::new(rustls::StreamOwned::new(tls, stream)));
        Peer::upgrade(stream, addr, "/")
    }

    /// Connects over TLS and authenticates (`token` may be empty where a client certificate
    /// stands for the peer); `Err` says why not.
    pub(crate) fn connect_tls(
        addr: SocketAddr,
        config: std::sync::Arc<rustls::ClientConfig>,
        username: &str,
        token: &str,
    ) -> Result<Peer, String> {
        let peer = Peer::connect_wss(addr, config, "localhost").map_err(|e| e.to_string())?;
        peer.authenticate(username, token)
    }

    fn upgrade(mut stream: PeerStream, addr: SocketAddr, path: &str) -> std::io::Result<Peer> {
        stream.set_read_timeout(Some(WAIT))?;
        stream.tcp().set_nodelay(true)?;
        let nonce = [7u8; ws::NONCE_LEN];
        let host = addr.to_string();
        let mut request = vec![0u8; ws::upgrade_request_len(&host, path)];
        let n = ws::write_upgrade_request(&host, path, &nonce, &mut request);
        stream.write_all(&request[..n])?;
        let mut buf = vec![0u8; 1 << 20];
        let mut filled = 0;
        let header = loop {
            let n = match stream.read(&mut buf[filled..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => other?,
            };
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
        filled -= header;
        Ok(Peer {
            stream,
            buf,
            filled,
            assembler: MessageAssembler::new(1 << 20),
            next_id: 1000,
            mask: 0x1234_5678,
            ended: false,
        })
    }

    /// Connects and authenticates; `Err` carries the BTP Error's name if auth is refused.
    pub(crate) fn connect(addr: SocketAddr, username: &str, token: &str) -> Result<Peer, String> {
        let peer = Peer::connect_ws(addr, "/").map_err(|e| e.to_string())?;
        peer.authenticate(username, token)
    }

    /// Sends BTP auth and waits for its answer.
    fn authenticate(mut self, username: &str, token: &str) -> Result<Peer, String> {
        let peer = &mut self;
        let mut session = BtpSession::client(0, ilp_router::engine::PeerId(0), 10_000, 16, 16);
        let mut auth = vec![0u8; BtpSession::auth_len(username.as_bytes(), token.as_bytes())];
        let n = session.write_auth(username.as_bytes(), token.as_bytes(), &mut auth);
        peer.send_message(&auth[..n]);
        let reply = peer.recv_message().ok_or("no answer to auth")?;
        let mut control = [0u8; 128];
        match session.handle_message(0, &reply, &mut control) {
            Event::Opened(_) if session.state() != State::Closed => Ok(self),
            _ => {
                let name = Btp::new_checked(&reply[..])
                    .ok()
                    .and_then(|b| match b.body() {
                        BtpBody::Error { name, .. } => {
                            Some(String::from_utf8_lossy(name).into_owned())
                        }
                        _ => None,
                    })
                    .unwrap_or_else(|| "unexpected answer".into());
                Err(name)
            }
        }
    }

    /// Sends one masked binary frame.
    pub(crate) fn send_message(&mut self, payload: &[u8]) {
        self.send_frame(Opcode::Binary, payload);
    }

    pub(crate) fn send_frame(&mut self, opcode: Opcode, payload: &[u8]) {
        self.mask = self
            .mask
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        let mask = self.mask.to_le_bytes();
        let mut frame = vec![0u8; ws::FRAME_HEADER_LEN_MAX + payload.len()];
        let n = ws::write_frame(opcode, true, payload, Some(mask), &mut frame);
        self.stream.write_all(&frame[..n]).unwrap();
    }

    /// Holds what is written back until uncorked or shut (`TCP_CORK`): the writes and a
    /// `shutdown_write` behind them then leave as one segment, data and FIN together.
    pub(crate) fn cork(&self, on: bool) {
        let on = libc::c_int::from(on);
        // SAFETY: a valid socket and a c_int option value of its size.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(self.stream.tcp()),
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "TCP_CORK: {}", std::io::Error::last_os_error());
    }

    /// Ends our writing (a FIN): the router sees the end of stream; we can still read.
    pub(crate) fn shutdown_write(&self) {
        self.stream
            .tcp()
            .shutdown(std::net::Shutdown::Write)
            .unwrap();
    }

    /// Writes raw bytes on the socket.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends an ILP packet in a BTP Message; returns its request id.
    pub(crate) fn send_ilp(&mut self, ilp: &[u8]) -> u32 {
        self.next_id += 1;
        let id = self.next_id;
        self.send_btp(BtpType::Message, id, ilp);
        id
    }

    /// Sends an ILP packet in a BTP packet of `kind` with `request_id`.
    pub(crate) fn send_btp(&mut self, kind: BtpType, request_id: u32, ilp: &[u8]) {
        let entry = [ProtocolData {
            name: b"ilp",
            content_type: ContentType::OCTET_STREAM,
            data: ilp,
        }];
        let body = match kind {
            BtpType::Message => BtpBody::Message,
            _ => BtpBody::Response,
        };
        let repr = BtpRepr {
            request_id,
            body,
            protocol_data: &entry,
        };
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut out);
        self.send_message(&out);
    }

    /// The next binary message (answering pings), or `None` at close or after [`WAIT`].
    pub(crate) fn recv_message(&mut self) -> Option<Vec<u8>> {
        let decoder = ws::FrameDecoder::new(ws::Role::Client, 1 << 20);
        let wait = self.stream.read_timeout().ok().flatten().unwrap_or(WAIT);
        let deadline = Instant::now() + wait;
        loop {
            while let Ok(Some(frame)) = decoder.decode(&mut self.buf[..self.filled]) {
                let len = frame.len;
                let message = match self
                    .assembler
                    .handle_frame(&mut self.buf[..self.filled], &frame)
                {
                    Ok(Message::Binary(bytes)) => Some(Some(bytes.to_vec())),
                    Ok(Message::Close(_)) => {
                        self.ended = true;
                        Some(None)
                    }
                    Ok(Message::Ping(p)) => {
                        let p = p.to_vec();
                        self.buf.copy_within(len..self.filled, 0);
                        self.filled -= len;
                        self.send_frame(Opcode::Pong, &p);
                        continue;
                    }
                    Ok(_) => None,
                    Err(_) => Some(None),
                };
                self.buf.copy_within(len..self.filled, 0);
                self.filled -= len;
                if let Some(message) = message {
                    return message;
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            match self.stream.read(&mut self.buf[self.filled..]) {
                // A signal interrupted the wait: wait again (the deadline still holds).
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Ok(0) | Err(_) => {
                    self.ended = true;
                    return None;
                }
                Ok(n) => self.filled += n,
            }
        }
    }

    /// The next BTP packet carrying ILP: (BTP type, request id, ILP bytes).
    pub(crate) fn recv_ilp(&mut self) -> Option<(BtpType, u32, Vec<u8>)> {
        let message = self.recv_message()?;
        let btp = Btp::new_checked(&message[..]).expect("the router sends valid BTP");
        let ilp = btp.ilp().unwrap_or_default().to_vec();
        Some((btp.btp_type(), btp.request_id(), ilp))
    }

    /// As [`recv_ilp`](Self::recv_ilp), but waits at most `within`.
    pub(crate) fn recv_ilp_within(&mut self, within: Duration) -> Option<(BtpType, u32, Vec<u8>)> {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let result = self.recv_ilp();
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        result
    }

    /// Reads (and drops) whatever comes until the connection ends: `Ok` when it ended cleanly
    /// (over TLS, only with the server's close_notify: without one rustls says
    /// `UnexpectedEof`), the error otherwise; bounded by [`WAIT`].
    pub(crate) fn read_to_close(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + WAIT;
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if Instant::now() > deadline {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
        }
    }

    /// Whether the connection has ended (seen by the last receive): a receive that returned
    /// `None` for this reason will never return anything again.
    pub(crate) fn closed_now(&self) -> bool {
        self.ended
    }

    /// True when the router closes the connection within [`WAIT`].
    pub(crate) fn closed(&mut self) -> bool {
        loop {
            match self.recv_message() {
                None => return true,
                Some(_) => continue,
            }
        }
    }
}
