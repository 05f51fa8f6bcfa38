//! RFC 6455 WebSocket, sans-IO: the opening handshake and the framing that carries BTP.
//!
//! # Contract
//!
//! Nothing here reads a socket, a clock or an RNG. The driver owns the read buffer, feeds it in,
//! and writes out what these functions put into caller-supplied output slices. After start-up
//! nothing allocates: [`MessageAssembler::new`] allocates its reassembly buffer once, per link.
//!
//! - **Handshake, server:** [`parse_upgrade_request`] on the bytes read so far returns `Ok(None)`
//!   until the header block (ending in `\r\n\r\n`) is complete, then the validated
//!   [`UpgradeRequest`], whose [`len`](UpgradeRequest::len) is where WebSocket frames start in
//!   the same buffer. Answer with [`write_upgrade_response`], or refuse with
//!   [`HandshakeError::write_answer`] (its status, `Connection: close`) and close.
//! - **Handshake, client:** [`write_upgrade_request`] with a fresh random 16-byte nonce, then
//!   [`parse_upgrade_response`] with the same nonce. The server may send frames right behind its
//!   `101`, so frames start at the returned length, not at the next read.
//! - **Frames in:** [`FrameDecoder::decode`] reads one frame from the front of the buffer and
//!   unmasks its payload in place (so it must be called once per frame: the caller advances by
//!   [`Frame::len`] before calling again). [`MessageAssembler::handle_frame`] turns frames into
//!   [`Message`]s; an unfragmented binary frame is handed back as a slice of the read buffer
//!   (zero-copy, mutable so the engine can rewrite a Prepare in place); only fragmented messages
//!   are copied into the assembler.
//! - **Frames out:** [`write_frame_header`] writes a header into the bytes in front of a payload
//!   the caller has already placed, and a client then masks the payload in place with
//!   [`apply_mask`]. [`write_close`], [`write_ping`] and [`write_pong`] write whole control frames.
//! - **Errors:** a peer's bytes never panic. They become a [`HandshakeError`] (answer with an
//!   HTTP error and close) or a [`WsError`] (send [`write_close`] with
//!   [`WsError::close_code`], then close). Functions panic only on caller bugs (an output buffer
//!   too small, a control payload over 125 bytes, a frame range that is not from this buffer),
//!   each documented under `# Panics`.
//!
//! # Driving it from a read buffer
//!
//! The read buffer must hold one whole frame: size it at least `FRAME_HEADER_LEN_MAX +
//! frame_len_max`. After each read, decode frames from the front until `Ok(None)`, then move the
//! unread tail to the front (or, if [`frame_len_hint`] says the next frame does not fit in the
//! space left, move it before the next read).
//!
//! ```
//! use ilp_router::link::websocket::{FrameDecoder, Message, MessageAssembler, Role};
//!
//! let decoder = FrameDecoder::new(Role::Server, 65_536);
//! let mut assembler = MessageAssembler::new(65_536);
//! // RFC 6455 §5.7: a masked text frame "Hello", then a masked binary frame [1, 2, 3].
//! let mut read_buf = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
//!                         0x82, 0x83, 0, 0, 0, 0, 1, 2, 3];
//! let mut start = 0;
//! let mut binary = Vec::new();
//! while let Some(frame) = decoder.decode(&mut read_buf[start..]).expect("well formed") {
//!     let consumed = frame.len;
//!     match assembler.handle_frame(&mut read_buf[start..], &frame).expect("well formed") {
//!         Message::Binary(bytes) => binary.extend_from_slice(bytes), // hand to BTP
//!         Message::Text | Message::Fragment | Message::Pong(_) => {}
//!         Message::Ping(_payload) => {}  // write_pong(payload, ...)
//!         Message::Close(_close) => break, // write_close(close.reply_code(), ...), then shut down
//!     }
//!     start += consumed;
//! }
//! assert_eq!(binary, [1, 2, 3]);
//! read_buf.drain(..start); // keep a partial frame for the next read
//! ```
//!
//! # Supported
//!
//! HTTP/1.1 `GET` upgrade with `Sec-WebSocket-Version: 13`; any request path (`/` for
//! ilp-plugin-btp, `/accounts/{name}/ilp/btp` for interledger-rs, see
//! [`UpgradeRequest::account_from_path`]); binary and text data frames, fragmentation, ping, pong
//! and close; both roles with the RFC's masking rules. BTP puts every packet in exactly one binary
//! message (`spec/btp.md` §8); text messages are reported as [`Message::Text`] without their
//! content, so that the link can ignore them as interledger-rs does.
//!
//! # Parsing choices
//!
//! - Non-minimal payload-length encodings (a 16-bit length ≤ 125, a 64-bit length ≤ 65 535) are
//!   accepted: the RFC says senders MUST use the minimal form, but refusing it buys nothing. We
//!   always emit the minimal form.
//! - The handshake key must be 24 characters, 22 from the base64 alphabet followed by `==`; the
//!   4 unused bits of the last character are not checked.
//! - Header names are case-insensitive; `Upgrade` and `Connection` are comma lists and may be
//!   repeated; `Host`, `Sec-WebSocket-Key` and `Sec-WebSocket-Version` must appear exactly once.
//!   Obsolete line folding and control characters in a header are refused. Only origin-form
//!   request targets (`/…`) are accepted.
//! - Close frames: a 1-byte payload or a code that may not be sent (RFC 6455 §7.4: not 1000–1003,
//!   1007–1014 or 3000–4999) is a protocol error. The reason is handed over as bytes and not
//!   checked for UTF-8, and text payloads are not checked either, so close code 1007 is never
//!   produced.
//!
//! # Non-goals
//!
//! No extensions (permessage-deflate is offered by the `ws` npm client; we never accept it, which
//! the RFC allows), no subprotocols (BTP uses none), no TLS (`btp+wss://` terminates in front of
//! the router), no HTTP beyond the upgrade (no keep-alive, no bodies, no redirects), no `Origin`
//! policy, and no sockets, timers or keep-alive pings: the link decides when to ping and when
//! a closing handshake has taken too long.

use core::fmt;
use core::ops::Range;

use sha1::{Digest, Sha1};

use crate::wire::{BTP_HEADER_LEN_MAX, ILP_PACKET_LEN_MAX};

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

/// The longest HTTP header block (request or response, with its final `\r\n\r\n`) we accept.
pub const HANDSHAKE_LEN_MAX: usize = 8192;

/// Length of a `Sec-WebSocket-Key` value: base64 of 16 bytes.
pub const KEY_LEN: usize = 24;

/// Length of the client's raw nonce, before base64.
pub const NONCE_LEN: usize = 16;

/// Length of a `Sec-WebSocket-Accept` value: base64 of a 20-byte SHA-1.
pub const ACCEPT_LEN: usize = 28;

/// The longest frame header: 2 bytes, a 64-bit extended length and a 4-byte mask.
pub const FRAME_HEADER_LEN_MAX: usize = 2 + 8 + 4;

/// The longest payload of a close, ping or pong frame.
pub const CONTROL_PAYLOAD_LEN_MAX: usize = 125;

/// The longest close reason: a control payload less the 2-byte code.
pub const CLOSE_REASON_LEN_MAX: usize = CONTROL_PAYLOAD_LEN_MAX - 2;

/// Default cap on a reassembled message (`spec/btp.md` §8: 64 KiB, configurable).
pub const MESSAGE_LEN_MAX_DEFAULT: usize = 65_536;

/// Default cap on one frame's payload. Same as the message cap: BTP sends one frame per packet.
pub const FRAME_LEN_MAX_DEFAULT: usize = MESSAGE_LEN_MAX_DEFAULT;

/// The largest BTP message that carries the largest legal ILP packet must fit by default.
const _: () = assert!(MESSAGE_LEN_MAX_DEFAULT >= BTP_HEADER_LEN_MAX + ILP_PACKET_LEN_MAX);
const _: () = assert!(FRAME_LEN_MAX_DEFAULT <= MESSAGE_LEN_MAX_DEFAULT);

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const RESPONSE_101_HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: ";

/// Exact length of what [`write_upgrade_response`] writes.
pub const UPGRADE_RESPONSE_LEN: usize = RESPONSE_101_HEAD.len() + ACCEPT_LEN + 4;

const REQUEST_TAIL_1: &[u8] = b" HTTP/1.1\r\nHost: ";
const REQUEST_TAIL_2: &[u8] =
    b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
const REQUEST_TAIL_3: &[u8] = b"\r\nSec-WebSocket-Version: 13\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// Handshake errors
// ---------------------------------------------------------------------------------------------

/// Why an opening handshake was refused. Server-side errors map to an HTTP answer through
/// [`status`](Self::status) and [`reason`](Self::reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeError {
    /// No `\r\n\r\n` within [`HANDSHAKE_LEN_MAX`] bytes.
    TooLarge,
    /// The request line is not `<method> <target> <version>` with a `/…` target of visible ASCII.
    MalformedRequestLine,
    /// The method is not `GET`.
    MethodNotGet,
    /// The HTTP version is not `HTTP/1.1`.
    HttpVersion,
    /// A header line has no colon, a bad name, a control character or obsolete line folding.
    MalformedHeader,
    /// A header that must appear once appears more than once; the field names it.
    DuplicateHeader(&'static str),
    /// No `Host` header.
    MissingHost,
    /// No `Upgrade` header with the token `websocket`.
    MissingUpgrade,
    /// No `Connection` header with the token `upgrade`.
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Version` header.
    MissingVersion,
    /// `Sec-WebSocket-Version` is not `13`.
    UnsupportedVersion,
    /// No `Sec-WebSocket-Key` header.
    MissingKey,
    /// `Sec-WebSocket-Key` is not 24 characters of base64 encoding 16 bytes.
    InvalidKey,
    /// Client: the status line is not `HTTP/1.1 <3 digits>[ <reason>]`.
    MalformedStatusLine,
    /// Client: the server answered with this status instead of 101.
    UnexpectedStatus(u16),
    /// Client: no `Sec-WebSocket-Accept` header.
    MissingAccept,
    /// Client: `Sec-WebSocket-Accept` does not match our key.
    AcceptMismatch,
    /// Client: the server chose an extension, which we never offer.
    UnrequestedExtension,
    /// Client: the server chose a subprotocol, which we never offer.
    UnrequestedProtocol,
}

impl HandshakeError {
    /// The HTTP status a server answers with: 431 for [`TooLarge`](Self::TooLarge) (RFC 6585),
    /// 426 for a version problem (the answer then names version 13, RFC 6455 §4.4), 400
    /// otherwise. Client-side variants also say 400; a client sends no answer.
    pub const fn status(self) -> u16 {
        match self {
            Self::TooLarge => 431,
            Self::MissingVersion | Self::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// The reason phrase that goes with [`status`](Self::status).
    pub const fn reason(self) -> &'static str {
        match self.status() {
            431 => "Request Header Fields Too Large",
            426 => "Upgrade Required",
            _ => "Bad Request",
        }
    }

    /// Writes the server's whole answer to a refused handshake into `out`: the
    /// [`status`](Self::status) with its [`reason`](Self::reason) and `Connection: close`
    /// (see [`write_http_error`]); returns its length. The server closes the connection after
    /// sending it.
    ///
    /// # Panics
    ///
    /// If `out` is shorter than [`HANDSHAKE_ANSWER_LEN_MAX`].
    pub fn write_answer(self, out: &mut [u8]) -> usize {
        write_http_error(self.status(), self.reason(), out)
    }
}

/// The longest answer [`HandshakeError::write_answer`] writes: 82 bytes around the longest
/// reason phrase (`Request Header Fields Too Large`), with room to spare.
pub const HANDSHAKE_ANSWER_LEN_MAX: usize = 128;

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => write!(f, "header block longer than {HANDSHAKE_LEN_MAX} bytes"),
            Self::MalformedRequestLine => f.write_str("malformed request line"),
            Self::MethodNotGet => f.write_str("method is not GET"),
            Self::HttpVersion => f.write_str("HTTP version is not HTTP/1.1"),
            Self::MalformedHeader => f.write_str("malformed header line"),
            Self::DuplicateHeader(name) => write!(f, "header {name} appears more than once"),
            Self::MissingHost => f.write_str("missing Host header"),
            Self::MissingUpgrade => f.write_str("missing `Upgrade: websocket`"),
            Self::MissingConnectionUpgrade => f.write_str("missing `Connection: upgrade`"),
            Self::MissingVersion => f.write_str("missing Sec-WebSocket-Version"),
            Self::UnsupportedVersion => f.write_str("Sec-WebSocket-Version is not 13"),
            Self::MissingKey => f.write_str("missing Sec-WebSocket-Key"),
            Self::InvalidKey => f.write_str("Sec-WebSocket-Key is not base64 of 16 bytes"),
            Self::MalformedStatusLine => f.write_str("malformed status line"),
            Self::UnexpectedStatus(status) => write!(f, "server answered {status}, not 101"),
            Self::MissingAccept => f.write_str("missing Sec-WebSocket-Accept"),
            Self::AcceptMismatch => f.write_str("Sec-WebSocket-Accept does not match the key"),
            Self::UnrequestedExtension => f.write_str("server chose an extension we did not offer"),
            Self::UnrequestedProtocol => f.write_str("server chose a subprotocol we did not offer"),
        }
    }
}

impl std::error::Error for HandshakeError {}

// ---------------------------------------------------------------------------------------------
// Handshake: server side
// ---------------------------------------------------------------------------------------------

/// A validated client upgrade request: views into the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradeRequest<'a> {
    path: &'a str,
    host: &'a [u8],
    key: &'a [u8; KEY_LEN],
    headers: &'a [u8],
    len: usize,
}

impl<'a> UpgradeRequest<'a> {
    /// The request target as sent, query included (visible ASCII, starts with `/`).
    pub const fn path(&self) -> &'a str {
        self.path
    }

    /// The `Host` header value, trimmed.
    pub const fn host(&self) -> &'a [u8] {
        self.host
    }

    /// The `Sec-WebSocket-Key` value, to pass to [`write_upgrade_response`].
    pub const fn key(&self) -> &'a [u8; KEY_LEN] {
        self.key
    }

    /// Bytes of the header block, `\r\n\r\n` included. WebSocket frames start here.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Never true: a request has at least a request line. Here for the `len`/`is_empty` pair.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first value of header `name` (case-insensitive), trimmed; e.g. `Authorization`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        Lines::new(self.headers)
            .filter_map(|line| split_header(line).ok())
            .find(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// `{name}` when the path is interledger-rs's `/accounts/{name}/ilp/btp` (a query string is
    /// ignored). The name is returned as sent: not percent-decoded and not otherwise checked,
    /// except that it is non-empty and has no `/`.
    pub fn account_from_path(&self) -> Option<&'a str> {
        let path = self
            .path
            .split_once('?')
            .map_or(self.path, |(path, _)| path);
        let name = path.strip_prefix("/accounts/")?.strip_suffix("/ilp/btp")?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
}

/// Parses a client's upgrade request from the front of `buf`.
///
/// Returns `Ok(None)` while no `\r\n\r\n` has arrived (call again with more bytes), and an error
/// once [`HANDSHAKE_LEN_MAX`] bytes have arrived without one. Bytes after the header block are
/// not looked at; they are the first WebSocket frames.
pub fn parse_upgrade_request(buf: &[u8]) -> Result<Option<UpgradeRequest<'_>>, HandshakeError> {
    let Some(len) = header_block_len(buf)? else {
        return Ok(None);
    };
    let (request_line, headers) = split_first_line(&buf[..len - 4]);
    let path = parse_request_line(request_line)?;

    let mut host = None;
    let mut key = None;
    let mut version = None;
    let mut upgrade = false;
    let mut connection = false;
    for line in Lines::new(headers) {
        let (name, value) = split_header(line)?;
        if name.eq_ignore_ascii_case(b"host") {
            set_once(&mut host, value, "Host")?;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade |= has_token(value, b"websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection |= has_token(value, b"upgrade");
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            set_once(&mut version, value, "Sec-WebSocket-Version")?;
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            set_once(&mut key, value, "Sec-WebSocket-Key")?;
        }
    }

    let host = host.ok_or(HandshakeError::MissingHost)?;
    if !upgrade {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !connection {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    match version {
        None => return Err(HandshakeError::MissingVersion),
        Some(b"13") => {}
        Some(_) => return Err(HandshakeError::UnsupportedVersion),
    }
    let key = key.ok_or(HandshakeError::MissingKey)?;
    let key = <&[u8; KEY_LEN]>::try_from(key).map_err(|_| HandshakeError::InvalidKey)?;
    if !is_key(key) {
        return Err(HandshakeError::InvalidKey);
    }
    Ok(Some(UpgradeRequest {
        path,
        host,
        key,
        headers,
        len,
    }))
}

/// Writes the `101 Switching Protocols` answer for `key` into `out`; returns
/// [`UPGRADE_RESPONSE_LEN`]. No extension and no subprotocol is chosen.
///
/// # Panics
///
/// If `out` is shorter than [`UPGRADE_RESPONSE_LEN`].
pub fn write_upgrade_response(key: &[u8; KEY_LEN], out: &mut [u8]) -> usize {
    let mut w = Out::new(out);
    w.put(RESPONSE_101_HEAD);
    w.put(&accept_key(key));
    w.put(b"\r\n\r\n");
    debug_assert_eq!(w.len, UPGRADE_RESPONSE_LEN);
    w.len
}

/// Writes an HTTP error answer with `Connection: close` and an empty body into `out`; returns
/// its length. A 426 also carries `Sec-WebSocket-Version: 13`. The caller closes the
/// connection after sending it. At most 82 bytes plus `reason.len()`.
///
/// # Panics
///
/// If `status` is not in 100..=999, if `reason` holds a control character, or if `out` is too
/// short.
pub fn write_http_error(status: u16, reason: &str, out: &mut [u8]) -> usize {
    assert!(
        (100..=999).contains(&status),
        "HTTP status {status} is not 3 digits"
    );
    assert!(
        !reason.bytes().any(|b| b.is_ascii_control()),
        "HTTP reason phrase has a control character"
    );
    let mut w = Out::new(out);
    w.put(b"HTTP/1.1 ");
    w.put(&status_digits(status));
    w.put(b" ");
    w.put(reason.as_bytes());
    w.put(b"\r\nConnection: close\r\nContent-Length: 0\r\n");
    if status == 426 {
        w.put(b"Sec-WebSocket-Version: 13\r\n");
    }
    w.put(b"\r\n");
    w.len
}

/// `Sec-WebSocket-Accept` for a key: `base64(SHA-1(key ++ GUID))` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8; KEY_LEN]) -> [u8; ACCEPT_LEN] {
    let digest = Sha1::new()
        .chain_update(key)
        .chain_update(ACCEPT_GUID)
        .finalize();
    let mut accept = [0; ACCEPT_LEN];
    base64_encode(&digest, &mut accept);
    accept
}

// ---------------------------------------------------------------------------------------------
// Handshake: client side
// ---------------------------------------------------------------------------------------------

/// `Sec-WebSocket-Key` for a client nonce: its base64.
pub fn key_from_nonce(nonce: &[u8; NONCE_LEN]) -> [u8; KEY_LEN] {
    let mut key = [0; KEY_LEN];
    base64_encode(nonce, &mut key);
    key
}

/// Exact length of what [`write_upgrade_request`] writes for `host` and `path`.
pub const fn upgrade_request_len(host: &str, path: &str) -> usize {
    4 + path.len()
        + REQUEST_TAIL_1.len()
        + host.len()
        + REQUEST_TAIL_2.len()
        + KEY_LEN
        + REQUEST_TAIL_3.len()
}

/// Writes a client upgrade request (`GET path`, `Host: host`, version 13, the key from
/// `nonce`) into `out`; returns [`upgrade_request_len`]. `nonce` must be fresh random bytes for
/// each connection; pass the same nonce to [`parse_upgrade_response`].
///
/// # Panics
///
/// If `path` does not start with `/`, if `host` is empty, if either holds anything but visible
/// ASCII (validate configuration first), or if `out` is too short.
pub fn write_upgrade_request(
    host: &str,
    path: &str,
    nonce: &[u8; NONCE_LEN],
    out: &mut [u8],
) -> usize {
    assert!(
        path.starts_with('/') && path.bytes().all(is_visible),
        "request path must be `/` then visible ASCII"
    );
    assert!(
        !host.is_empty() && host.bytes().all(is_visible),
        "host must be non-empty visible ASCII"
    );
    let mut w = Out::new(out);
    w.put(b"GET ");
    w.put(path.as_bytes());
    w.put(REQUEST_TAIL_1);
    w.put(host.as_bytes());
    w.put(REQUEST_TAIL_2);
    w.put(&key_from_nonce(nonce));
    w.put(REQUEST_TAIL_3);
    debug_assert_eq!(w.len, upgrade_request_len(host, path));
    w.len
}

/// Parses the server's answer to [`write_upgrade_request`] from the front of `buf`.
///
/// Returns `Ok(None)` while the header block is incomplete, `Ok(Some(len))` for a valid `101`
/// whose header block is `len` bytes long (frames may follow in the same buffer), or the first
/// problem found. A non-101 answer is [`HandshakeError::UnexpectedStatus`], reported once its
/// header block is complete.
pub fn parse_upgrade_response(
    buf: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Result<Option<usize>, HandshakeError> {
    let Some(len) = header_block_len(buf)? else {
        return Ok(None);
    };
    let (status_line, headers) = split_first_line(&buf[..len - 4]);
    let status = parse_status_line(status_line)?;
    if status != 101 {
        return Err(HandshakeError::UnexpectedStatus(status));
    }

    let mut accept = None;
    let mut upgrade = false;
    let mut connection = false;
    for line in Lines::new(headers) {
        let (name, value) = split_header(line)?;
        if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade |= has_token(value, b"websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection |= has_token(value, b"upgrade");
        } else if name.eq_ignore_ascii_case(b"sec-websocket-accept") {
            set_once(&mut accept, value, "Sec-WebSocket-Accept")?;
        } else if name.eq_ignore_ascii_case(b"sec-websocket-extensions") {
            return Err(HandshakeError::UnrequestedExtension);
        } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
            return Err(HandshakeError::UnrequestedProtocol);
        }
    }
    if !upgrade {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !connection {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let accept = accept.ok_or(HandshakeError::MissingAccept)?;
    if accept != accept_key(&key_from_nonce(nonce)) {
        return Err(HandshakeError::AcceptMismatch);
    }
    Ok(Some(len))
}

// ---------------------------------------------------------------------------------------------
// Handshake: HTTP/1.1 helpers (leaf functions, no state)
// ---------------------------------------------------------------------------------------------

/// Length of the header block including `\r\n\r\n`, `None` if it has not all arrived.
fn header_block_len(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
    let window = &buf[..buf.len().min(HANDSHAKE_LEN_MAX)];
    match window.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => Ok(Some(at + 4)),
        None if buf.len() >= HANDSHAKE_LEN_MAX => Err(HandshakeError::TooLarge),
        None => Ok(None),
    }
}

/// The first line and everything after its `\r\n` (empty if there is none).
fn split_first_line(head: &[u8]) -> (&[u8], &[u8]) {
    match find_crlf(head) {
        Some(at) => (&head[..at], &head[at + 2..]),
        None => (head, &[]),
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

/// `\r\n`-separated lines of a header block without its final `\r\n\r\n`.
struct Lines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Lines<'a> {
    fn new(headers: &'a [u8]) -> Self {
        Self {
            rest: (!headers.is_empty()).then_some(headers),
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match find_crlf(rest) {
            Some(at) => {
                self.rest = Some(&rest[at + 2..]);
                Some(&rest[..at])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// `GET <target> HTTP/1.1` → target.
fn parse_request_line(line: &[u8]) -> Result<&str, HandshakeError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HandshakeError::MalformedRequestLine);
    };
    if method != b"GET" {
        return Err(HandshakeError::MethodNotGet);
    }
    if version != b"HTTP/1.1" {
        return Err(HandshakeError::HttpVersion);
    }
    if target.first() != Some(&b'/') || !target.iter().copied().all(is_visible) {
        return Err(HandshakeError::MalformedRequestLine);
    }
    // Visible ASCII is UTF-8, so this cannot fail; map rather than unwrap all the same.
    core::str::from_utf8(target).map_err(|_| HandshakeError::MalformedRequestLine)
}

/// `HTTP/1.1 <3 digits>[ <reason>]` → status.
fn parse_status_line(line: &[u8]) -> Result<u16, HandshakeError> {
    let Some(rest) = line.strip_prefix(b"HTTP/1.1 ") else {
        return Err(HandshakeError::MalformedStatusLine);
    };
    let (digits, after) = rest.split_at(rest.len().min(3));
    let [d0, d1, d2] = *digits else {
        return Err(HandshakeError::MalformedStatusLine);
    };
    if !(d0.is_ascii_digit() && d1.is_ascii_digit() && d2.is_ascii_digit()) {
        return Err(HandshakeError::MalformedStatusLine);
    }
    if !(after.is_empty() || after[0] == b' ') {
        return Err(HandshakeError::MalformedStatusLine);
    }
    Ok(u16::from(d0 - b'0') * 100 + u16::from(d1 - b'0') * 10 + u16::from(d2 - b'0'))
}

/// `name: value` → (name, trimmed value), refusing what RFC 9110/9112 forbid.
fn split_header(line: &[u8]) -> Result<(&[u8], &[u8]), HandshakeError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HandshakeError::MalformedHeader)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // A leading space (obsolete folding) or a space before the colon fails the token check.
    if name.is_empty() || !name.iter().copied().all(is_token) {
        return Err(HandshakeError::MalformedHeader);
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HandshakeError::MalformedHeader);
    }
    Ok((name, value.trim_ascii()))
}

fn set_once<'a>(
    slot: &mut Option<&'a [u8]>,
    value: &'a [u8],
    name: &'static str,
) -> Result<(), HandshakeError> {
    match slot.replace(value) {
        None => Ok(()),
        Some(_) => Err(HandshakeError::DuplicateHeader(name)),
    }
}

/// Does the comma-separated `value` hold `token` (ASCII case-insensitive)?
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// RFC 9110 `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_visible(b: u8) -> bool {
    b.is_ascii_graphic()
}

/// 22 base64 characters then `==`: the encoding of 16 bytes.
fn is_key(key: &[u8; KEY_LEN]) -> bool {
    let (data, pad) = key.split_at(KEY_LEN - 2);
    data.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        && pad == b"=="
}

fn status_digits(status: u16) -> [u8; 3] {
    // Callers assert 100..=999, so each quotient is a single digit.
    [
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding (RFC 4648 §4). Only short inputs (16 or 20 bytes) are ever
/// encoded, so this is a plain loop.
fn base64_encode(input: &[u8], out: &mut [u8]) -> usize {
    let len = input.len().div_ceil(3) * 4;
    assert!(out.len() >= len, "base64 output too short");
    for (chunk, quad) in input.chunks(3).zip(out.chunks_mut(4)) {
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(chunk[0]) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        let sextet = |shift: u32| BASE64_ALPHABET[(n >> shift) as usize & 63];
        quad[0] = sextet(18);
        quad[1] = sextet(12);
        quad[2] = if chunk.len() > 1 { sextet(6) } else { b'=' };
        quad[3] = if chunk.len() > 2 { sextet(0) } else { b'=' };
    }
    len
}

/// Appends into a caller's output slice; a too-short slice is the caller's bug.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Out<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        assert!(end <= self.buf.len(), "websocket: output buffer too small");
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }
}

// ---------------------------------------------------------------------------------------------
// Frames: types and errors
// ---------------------------------------------------------------------------------------------

/// Which end of the connection we are; decides the masking rule (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We accepted the connection: incoming frames must be masked, ours are not.
    Server,
    /// We dialled: incoming frames must not be masked, ours must be.
    Client,
}

/// The frame opcodes RFC 6455 defines. Any other value is [`WsError::UnknownOpcode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Continues a fragmented text or binary message.
    Continuation = 0x0,
    /// UTF-8 text; BTP does not use it.
    Text = 0x1,
    /// Binary data; every BTP packet is one binary message.
    Binary = 0x2,
    /// Close (control).
    Close = 0x8,
    /// Ping (control); answered by a pong with the same payload.
    Ping = 0x9,
    /// Pong (control).
    Pong = 0xA,
}

impl Opcode {
    /// The opcode for the low 4 bits of a frame's first byte, if defined.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// Close, ping and pong: never fragmented, payload at most 125 bytes.
    pub const fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

/// A close status code (RFC 6455 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: Self = Self(1000);
    /// 1001: going away (shutdown, restart).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type we do not accept (a link may send it for text messages).
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1007: payload inconsistent with its type (never produced here: no UTF-8 checks).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: policy violation (e.g. authentication failed).
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: message too big.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1011: internal error.
    pub const INTERNAL_ERROR: Self = Self(1011);

    /// May this code appear in a close frame: 1000–1003, 1007–1014 (RFC 6455 and the IANA
    /// registry) or 3000–4999 (registered and private use). 1005, 1006 and 1015 are for reports
    /// only.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// A broken framing rule. The connection is failed: send a close with
/// [`close_code`](Self::close_code), then close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WsError {
    /// An RSV bit is set; we negotiate no extension that would define it.
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    UnknownOpcode(u8),
    /// Server: a client frame without a mask.
    UnmaskedFrame,
    /// Client: a server frame with a mask.
    MaskedFrame,
    /// A control frame without FIN.
    FragmentedControl,
    /// A control frame with a payload over 125 bytes.
    ControlTooLong,
    /// A 64-bit payload length with the most significant bit set.
    InvalidLength,
    /// A frame payload over the decoder's `frame_len_max`, refused from its header.
    FrameTooLong,
    /// A message over the assembler's `message_len_max`.
    MessageTooLong,
    /// A continuation frame with no fragmented message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A close payload of exactly one byte.
    InvalidClosePayload,
    /// A close code that may not be sent.
    InvalidCloseCode(u16),
}

impl WsError {
    /// The close code to fail the connection with: 1009 for the two size limits, 1002 otherwise.
    pub const fn close_code(self) -> CloseCode {
        match self {
            Self::FrameTooLong | Self::MessageTooLong => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBits => f.write_str("reserved bits set"),
            Self::UnknownOpcode(opcode) => write!(f, "unknown opcode {opcode:#x}"),
            Self::UnmaskedFrame => f.write_str("client frame not masked"),
            Self::MaskedFrame => f.write_str("server frame masked"),
            Self::FragmentedControl => f.write_str("fragmented control frame"),
            Self::ControlTooLong => f.write_str("control frame payload over 125 bytes"),
            Self::InvalidLength => f.write_str("64-bit payload length with the top bit set"),
            Self::FrameTooLong => f.write_str("frame payload over the frame limit"),
            Self::MessageTooLong => f.write_str("message over the message limit"),
            Self::UnexpectedContinuation => f.write_str("continuation frame without a message"),
            Self::ExpectedContinuation => f.write_str("new data frame inside a fragmented message"),
            Self::InvalidClosePayload => f.write_str("close payload of one byte"),
            Self::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
        }?;
        write!(f, " (close {})", self.close_code().0)
    }
}

impl std::error::Error for WsError {}

// ---------------------------------------------------------------------------------------------
// Frames in
// ---------------------------------------------------------------------------------------------

/// One decoded frame. Its payload has been unmasked in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Last frame of its message.
    pub fin: bool,
    /// What the frame carries.
    pub opcode: Opcode,
    /// Where the payload is, in the buffer given to [`FrameDecoder::decode`].
    pub payload: Range<usize>,
    /// Bytes the frame takes from the front of that buffer, header included.
    pub len: usize,
}

/// Reads frames and enforces RFC 6455 §5 for one [`Role`]. Stateless apart from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    role: Role,
    frame_len_max: usize,
}

impl FrameDecoder {
    /// A decoder for `role` refusing frame payloads over `frame_len_max` bytes.
    pub const fn new(role: Role, frame_len_max: usize) -> Self {
        Self {
            role,
            frame_len_max,
        }
    }

    /// Our role.
    pub const fn role(&self) -> Role {
        self.role
    }

    /// The largest frame payload accepted.
    pub const fn frame_len_max(&self) -> usize {
        self.frame_len_max
    }

    /// Reads the frame at the front of `buf`.
    ///
    /// `Ok(None)`: the frame is not all there yet; read more (see [`frame_len_hint`]) and call
    /// again with the same bytes at the front. Every rule that the header alone decides,
    /// including `frame_len_max`, is checked as soon as the header is in, before the payload.
    ///
    /// `Ok(Some(frame))`: the payload at `frame.payload` has been unmasked in place. The caller
    /// must now consume `frame.len` bytes; decoding the same bytes again would unmask them
    /// twice.
    pub fn decode(&self, buf: &mut [u8]) -> Result<Option<Frame>, WsError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let opcode = Opcode::from_u8(b0 & 0x0f).ok_or(WsError::UnknownOpcode(b0 & 0x0f))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(WsError::UnmaskedFrame),
            (Role::Client, true) => return Err(WsError::MaskedFrame),
            _ => {}
        }
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            if !fin {
                return Err(WsError::FragmentedControl);
            }
            if usize::from(len7) > CONTROL_PAYLOAD_LEN_MAX {
                return Err(WsError::ControlTooLong);
            }
        }

        let (length_len, payload_len) = match len7 {
            126 => match buf.get(2..4) {
                Some(&[hi, lo]) => (2, u64::from(u16::from_be_bytes([hi, lo]))),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(&[a, b, c, d, e, f, g, h]) => {
                    let len = u64::from_be_bytes([a, b, c, d, e, f, g, h]);
                    if len >> 63 != 0 {
                        return Err(WsError::InvalidLength);
                    }
                    (8, len)
                }
                _ => return Ok(None),
            },
            len => (0, u64::from(len)),
        };
        let payload_len = usize::try_from(payload_len)
            .ok()
            .filter(|&len| len <= self.frame_len_max)
            .ok_or(WsError::FrameTooLong)?;
        let mask_at: usize = 2 + length_len;
        let header_len = mask_at + if masked { 4 } else { 0 };
        let len = header_len
            .checked_add(payload_len)
            .ok_or(WsError::FrameTooLong)?;
        if buf.len() < len {
            return Ok(None);
        }

        // Validated; from here nothing can fail.
        if masked {
            let mut mask = [0; 4];
            mask.copy_from_slice(&buf[mask_at..header_len]);
            apply_mask(&mut buf[header_len..len], mask, 0);
        }
        Ok(Some(Frame {
            fin,
            opcode,
            payload: header_len..len,
            len,
        }))
    }
}

/// A lower bound on the length of the frame at the front of `buf`, header included, from what
/// has arrived: 2 before the first two bytes, then the header length, then header plus payload
/// (saturating). Meant for after `decode` returned `Ok(None)`: if the hint exceeds the room
/// left in the read buffer, move the partial frame to the front first.
pub fn frame_len_hint(buf: &[u8]) -> usize {
    let [_, b1, ..] = *buf else {
        return 2;
    };
    let length_len = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + length_len + if b1 & 0x80 != 0 { 4 } else { 0 };
    let payload_len = match (b1 & 0x7f, buf.get(2..2 + length_len)) {
        (126, Some(&[hi, lo])) => u64::from(u16::from_be_bytes([hi, lo])),
        (127, Some(&[a, b, c, d, e, f, g, h])) => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        (len, _) if len < 126 => u64::from(len),
        _ => return header_len,
    };
    header_len.saturating_add(usize::try_from(payload_len).unwrap_or(usize::MAX))
}

/// XORs `payload` with the masking key (RFC 6455 §5.3), in place, 8 bytes at a time.
///
/// `offset` is the position of `payload[0]` within the frame's payload, so a payload can be
/// masked in pieces (`apply_mask(&mut p[..k], m, 0); apply_mask(&mut p[k..], m, k)`). Masking
/// twice with the same key and offset restores the bytes.
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = [0; 8];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = mask[(offset + i) % 4];
    }
    let key64 = u64::from_ne_bytes(key);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ key64).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the rotated key lines up again.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key) {
        *byte ^= k;
    }
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// What a frame amounts to once [`MessageAssembler::handle_frame`] has seen it.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A complete binary message: a slice of the read buffer if it came in one frame, of the
    /// assembler if it was fragmented. Valid until the next call.
    Binary(&'a mut [u8]),
    /// A complete text message, content discarded. BTP ignores these (interledger-rs logs
    /// "not binary"); a link may instead close with [`CloseCode::UNSUPPORTED_DATA`].
    Text,
    /// A fragment was taken in; no message is complete yet.
    Fragment,
    /// A ping: answer with [`write_pong`] and this payload (RFC 6455 §5.5.3).
    Ping(&'a [u8]),
    /// A pong: nothing to do (it may refresh a liveness timer).
    Pong(&'a [u8]),
    /// The peer is closing: answer with [`write_close`] (with [`Close::reply_code`]) unless we
    /// sent a close first, then stop reading and shut the connection down.
    Close(Close<'a>),
}

/// The payload of a close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    /// The status code; `None` for an empty close payload.
    pub code: Option<CloseCode>,
    /// The reason, as sent (not checked for UTF-8).
    pub reason: &'a [u8],
}

impl Close<'_> {
    /// The code to echo in our reply: theirs, or 1000 if they sent none.
    pub fn reply_code(&self) -> CloseCode {
        self.code.unwrap_or(CloseCode::NORMAL)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assembly {
    Idle,
    Binary,
    Text,
}

/// Turns frames into messages for one connection: reassembles fragmented binary messages into a
/// buffer of fixed capacity allocated once, tracks fragmented text messages (without keeping
/// them), and passes control frames through, also in the middle of a fragmented message.
#[derive(Debug)]
pub struct MessageAssembler {
    buf: Box<[u8]>,
    /// Bytes of the message in progress (counted but not kept for text).
    len: usize,
    state: Assembly,
}

impl MessageAssembler {
    /// An assembler refusing messages over `message_len_max` bytes; allocates that much once.
    pub fn new(message_len_max: usize) -> Self {
        Self {
            buf: vec![0; message_len_max].into_boxed_slice(),
            len: 0,
            state: Assembly::Idle,
        }
    }

    /// The largest message accepted.
    pub fn message_len_max(&self) -> usize {
        self.buf.len()
    }

    /// Is a fragmented message in progress?
    pub fn is_fragmented(&self) -> bool {
        self.state != Assembly::Idle
    }

    /// Drops any message in progress, for reuse on a new connection.
    pub fn reset(&mut self) {
        self.len = 0;
        self.state = Assembly::Idle;
    }

    /// Takes the frame `decode` just returned, with the same buffer it was decoded from.
    ///
    /// An error fails the connection (send a close with [`WsError::close_code`]); the assembler
    /// is left idle.
    ///
    /// # Panics
    ///
    /// If `frame.payload` is out of `input`'s bounds, i.e. `input` is not the buffer the frame
    /// was decoded from.
    pub fn handle_frame<'a>(
        &'a mut self,
        input: &'a mut [u8],
        frame: &Frame,
    ) -> Result<Message<'a>, WsError> {
        let payload = &mut input[frame.payload.clone()];
        match frame.opcode {
            Opcode::Ping => Ok(Message::Ping(payload)),
            Opcode::Pong => Ok(Message::Pong(payload)),
            Opcode::Close => parse_close(payload).map(Message::Close),
            Opcode::Binary | Opcode::Text => self.start(frame.opcode, frame.fin, payload),
            Opcode::Continuation => self.continue_(frame.fin, payload),
        }
    }

    fn start<'a>(
        &'a mut self,
        opcode: Opcode,
        fin: bool,
        payload: &'a mut [u8],
    ) -> Result<Message<'a>, WsError> {
        if self.state != Assembly::Idle {
            self.reset();
            return Err(WsError::ExpectedContinuation);
        }
        if payload.len() > self.buf.len() {
            return Err(WsError::MessageTooLong);
        }
        let binary = opcode == Opcode::Binary;
        if fin {
            // Unfragmented: zero-copy.
            return Ok(if binary {
                Message::Binary(payload)
            } else {
                Message::Text
            });
        }
        if binary {
            self.buf[..payload.len()].copy_from_slice(payload);
            self.state = Assembly::Binary;
        } else {
            self.state = Assembly::Text;
        }
        self.len = payload.len();
        Ok(Message::Fragment)
    }

    fn continue_(&mut self, fin: bool, payload: &[u8]) -> Result<Message<'_>, WsError> {
        if self.state == Assembly::Idle {
            return Err(WsError::UnexpectedContinuation);
        }
        let end = self.len + payload.len();
        if end > self.buf.len() {
            self.reset();
            return Err(WsError::MessageTooLong);
        }
        if self.state == Assembly::Binary {
            self.buf[self.len..end].copy_from_slice(payload);
        }
        self.len = end;
        if !fin {
            return Ok(Message::Fragment);
        }
        let state = self.state;
        self.reset();
        Ok(match state {
            Assembly::Binary => Message::Binary(&mut self.buf[..end]),
            _ => Message::Text,
        })
    }
}

fn parse_close(payload: &[u8]) -> Result<Close<'_>, WsError> {
    match *payload {
        [] => Ok(Close {
            code: None,
            reason: &[],
        }),
        [_] => Err(WsError::InvalidClosePayload),
        [hi, lo, ref reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([hi, lo]));
            if !code.is_sendable() {
                return Err(WsError::InvalidCloseCode(code.0));
            }
            Ok(Close {
                code: Some(code),
                reason,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Frames out
// ---------------------------------------------------------------------------------------------

/// Length of the header [`write_frame_header`] writes: minimal length encoding, plus 4 if
/// masked. At most [`FRAME_HEADER_LEN_MAX`].
pub const fn frame_header_len(payload_len: usize, masked: bool) -> usize {
    let length_len = if payload_len < 126 {
        0
    } else if payload_len <= 0xffff {
        2
    } else {
        8
    };
    2 + length_len + if masked { 4 } else { 0 }
}

/// Writes a frame header into `out`; returns its length ([`frame_header_len`]). The payload goes
/// right after it; a client (which must mask) then calls [`apply_mask`] on the payload with the
/// same `mask` and offset 0. `mask` must be fresh random bytes per frame for a client, `None`
/// for a server.
///
/// # Panics
///
/// If `out` is shorter than the header, or for a control opcode with `fin` unset or
/// `payload_len` over 125.
pub fn write_frame_header(
    opcode: Opcode,
    fin: bool,
    payload_len: usize,
    mask: Option<[u8; 4]>,
    out: &mut [u8],
) -> usize {
    if opcode.is_control() {
        assert!(fin, "control frames cannot be fragmented");
        assert!(
            payload_len <= CONTROL_PAYLOAD_LEN_MAX,
            "control payload over 125 bytes"
        );
    }
    let header_len = frame_header_len(payload_len, mask.is_some());
    assert!(
        out.len() >= header_len,
        "websocket: output buffer too small"
    );
    out[0] = (if fin { 0x80 } else { 0 }) | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mask_at = if payload_len < 126 {
        // Fits in 7 bits: the branch condition.
        out[1] = mask_bit | payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = mask_bit | 127;
        // usize is at most 64 bits on every target Rust supports.
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    };
    if let Some(mask) = mask {
        out[mask_at..mask_at + 4].copy_from_slice(&mask);
    }
    header_len
}

/// Writes a whole frame (header, payload copied, masked if `mask` is given) into `out`; returns
/// its length. For control frames and tests; data frames on the hot path should place the
/// payload once and use [`write_frame_header`].
///
/// # Panics
///
/// As [`write_frame_header`], and if `out` cannot hold the payload too.
pub fn write_frame(
    opcode: Opcode,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut [u8],
) -> usize {
    let header_len = write_frame_header(opcode, fin, payload.len(), mask, out);
    let len = header_len + payload.len();
    assert!(out.len() >= len, "websocket: output buffer too small");
    out[header_len..len].copy_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[header_len..len], mask, 0);
    }
    len
}

/// Writes a close frame with `code` and `reason`; returns its length (at most 131).
///
/// # Panics
///
/// If `code` may not be sent ([`CloseCode::is_sendable`]), if `reason` is over
/// [`CLOSE_REASON_LEN_MAX`] bytes, or if `out` is too short.
pub fn write_close(code: CloseCode, reason: &[u8], mask: Option<[u8; 4]>, out: &mut [u8]) -> usize {
    assert!(code.is_sendable(), "close code {} may not be sent", code.0);
    assert!(
        reason.len() <= CLOSE_REASON_LEN_MAX,
        "close reason over 123 bytes"
    );
    let payload_len = 2 + reason.len();
    let header_len = write_frame_header(Opcode::Close, true, payload_len, mask, out);
    let len = header_len + payload_len;
    assert!(out.len() >= len, "websocket: output buffer too small");
    out[header_len..header_len + 2].copy_from_slice(&code.0.to_be_bytes());
    out[header_len + 2..len].copy_from_slice(reason);
    if let Some(mask) = mask {
        apply_mask(&mut out[header_len..len], mask, 0);
    }
    len
}

/// Writes a ping frame; returns its length.
///
/// # Panics
///
/// If `payload` is over 125 bytes or `out` is too short.
pub fn write_ping(payload: &[u8], mask: Option<[u8; 4]>, out: &mut [u8]) -> usize {
    write_frame(Opcode::Ping, true, payload, mask, out)
}

/// Writes a pong frame, e.g. echoing a [`Message::Ping`] payload; returns its length.
///
/// # Panics
///
/// If `payload` is over 125 bytes or `out` is too short.
pub fn write_pong(payload: &[u8], mask: Option<[u8; 4]>, out: &mut [u8]) -> usize {
    write_frame(Opcode::Pong, true, payload, mask, out)
}

#[cfg(test)]
mod test {
    use super::*;

    // ---- helpers ------------------------------------------------------------------------

    /// Seeded xorshift64: reproducible, no extra crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn mask(&mut self) -> [u8; 4] {
            (self.next() as u32).to_le_bytes()
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// A message with owned bytes, for comparing runs.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Event {
        Binary(Vec<u8>),
        Text,
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, Vec<u8>),
    }

    /// Decodes every complete frame at the front of `buf`, drops the consumed bytes, and
    /// returns how many frames were decoded.
    fn drain(
        decoder: &FrameDecoder,
        assembler: &mut MessageAssembler,
        buf: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) -> Result<usize, WsError> {
        let mut start = 0;
        let mut frames = 0;
        while let Some(frame) = decoder.decode(&mut buf[start..])? {
            frames += 1;
            let consumed = frame.len;
            match assembler.handle_frame(&mut buf[start..], &frame)? {
                Message::Binary(bytes) => events.push(Event::Binary(bytes.to_vec())),
                Message::Text => events.push(Event::Text),
                Message::Fragment => {}
                Message::Ping(bytes) => events.push(Event::Ping(bytes.to_vec())),
                Message::Pong(bytes) => events.push(Event::Pong(bytes.to_vec())),
                Message::Close(close) => {
                    events.push(Event::Close(close.code.map(|c| c.0), close.reason.to_vec()))
                }
            }
            start += consumed;
        }
        if start < buf.len() {
            assert!(frame_len_hint(&buf[start..]) > buf.len() - start);
        }
        buf.drain(..start);
        Ok(frames)
    }

    fn decode_all(role: Role, bytes: &[u8]) -> Result<Vec<Event>, WsError> {
        let decoder = FrameDecoder::new(role, 1 << 20);
        let mut assembler = MessageAssembler::new(1 << 20);
        let mut buf = bytes.to_vec();
        let mut events = Vec::new();
        drain(&decoder, &mut assembler, &mut buf, &mut events)?;
        assert!(buf.is_empty(), "leftover bytes");
        Ok(events)
    }

    fn server() -> FrameDecoder {
        FrameDecoder::new(Role::Server, FRAME_LEN_MAX_DEFAULT)
    }

    fn client() -> FrameDecoder {
        FrameDecoder::new(Role::Client, FRAME_LEN_MAX_DEFAULT)
    }

    const HELLO_UNMASKED: [u8; 7] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    const HELLO_MASKED: [u8; 11] = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];

    // ---- handshake: RFC 6455 §1.3 ---------------------------------------------------------

    const RFC_KEY: &[u8; KEY_LEN] = b"dGhlIHNhbXBsZSBub25jZQ==";
    const RFC_ACCEPT: &[u8; ACCEPT_LEN] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    #[test]
    fn rfc_accept_key() {
        assert_eq!(&accept_key(RFC_KEY), RFC_ACCEPT);
        assert_eq!(&key_from_nonce(b"the sample nonce"), RFC_KEY);
    }

    #[test]
    fn base64_rfc4648_vectors() {
        let cases: [(&[u8], &[u8]); 7] = [
            (b"", b""),
            (b"f", b"Zg=="),
            (b"fo", b"Zm8="),
            (b"foo", b"Zm9v"),
            (b"foob", b"Zm9vYg=="),
            (b"fooba", b"Zm9vYmE="),
            (b"foobar", b"Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            let mut out = [0; 8];
            let len = base64_encode(input, &mut out);
            assert_eq!(&out[..len], expected);
        }
    }

    #[test]
    fn rfc_handshake_server() {
        let request = b"GET /chat HTTP/1.1\r\n\
            Host: server.example.com\r\n\
            Upgrade: websocket\r\n\
            Connection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Origin: http://example.com\r\n\
            Sec-WebSocket-Protocol: chat, superchat\r\n\
            Sec-WebSocket-Version: 13\r\n\r\n";
        let parsed = parse_upgrade_request(request).unwrap().unwrap();
        assert_eq!(parsed.path(), "/chat");
        assert_eq!(parsed.host(), b"server.example.com");
        assert_eq!(parsed.key(), RFC_KEY);
        assert_eq!(parsed.len(), request.len());
        assert_eq!(parsed.header("origin"), Some(&b"http://example.com"[..]));
        assert_eq!(parsed.account_from_path(), None);

        let mut out = [0; 256];
        let len = write_upgrade_response(parsed.key(), &mut out);
        assert_eq!(len, UPGRADE_RESPONSE_LEN);
        assert_eq!(
            &out[..len],
            &b"HTTP/1.1 101 Switching Protocols\r\n\
               Upgrade: websocket\r\n\
               Connection: Upgrade\r\n\
               Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"[..]
        );
    }

    #[test]
    fn client_handshake_round_trip() {
        let nonce = b"the sample nonce";
        let mut request = vec![0; upgrade_request_len("127.0.0.1:7768", "/")];
        let len = write_upgrade_request("127.0.0.1:7768", "/", nonce, &mut request);
        assert_eq!(len, request.len());
        assert_eq!(
            request,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:7768\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n"
        );

        // Our own server accepts it and its answer satisfies our client, with the first frame
        // arriving in the same read.
        let parsed = parse_upgrade_request(&request).unwrap().unwrap();
        assert_eq!(parsed.len(), request.len());
        let mut response = vec![0; UPGRADE_RESPONSE_LEN];
        write_upgrade_response(parsed.key(), &mut response);
        response.extend_from_slice(&HELLO_UNMASKED);
        for end in 0..UPGRADE_RESPONSE_LEN {
            assert_eq!(
                parse_upgrade_response(&response[..end], nonce),
                Ok(None),
                "{end}"
            );
        }
        assert_eq!(
            parse_upgrade_response(&response, nonce),
            Ok(Some(UPGRADE_RESPONSE_LEN))
        );
        let events = decode_all(Role::Client, &response[UPGRADE_RESPONSE_LEN..]).unwrap();
        assert_eq!(events, [Event::Text]);

        // A different nonce does not match.
        assert_eq!(
            parse_upgrade_response(&response, b"another nonce!!!"),
            Err(HandshakeError::AcceptMismatch)
        );
    }

    #[test]
    fn client_handshake_refusals() {
        let nonce = b"the sample nonce";
        let check = |response: &[u8]| parse_upgrade_response(response, nonce);
        assert_eq!(
            check(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"),
            Err(HandshakeError::UnexpectedStatus(401))
        );
        assert_eq!(
            check(b"HTTP/1.1 101\r\n\r\n"),
            Err(HandshakeError::MissingUpgrade)
        );
        assert_eq!(
            check(b"HTTP/1.0 101 OK\r\n\r\n"),
            Err(HandshakeError::MalformedStatusLine)
        );
        assert_eq!(
            check(b"HTTP/1.1 10x OK\r\n\r\n"),
            Err(HandshakeError::MalformedStatusLine)
        );
        assert_eq!(
            check(b"HTTP/1.1 1011\r\n\r\n"),
            Err(HandshakeError::MalformedStatusLine)
        );
        assert_eq!(
            check(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"),
            Err(HandshakeError::MissingConnectionUpgrade)
        );
        assert_eq!(
            check(b"HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
            Err(HandshakeError::MissingAccept)
        );
        let lowercase = b"HTTP/1.1 101 x\r\nupgrade: WebSocket\r\nconnection: Upgrade\r\n\
                          sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check(lowercase), Ok(Some(lowercase.len())));
        assert_eq!(
            check(
                b"HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                  Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            ),
            Err(HandshakeError::UnrequestedExtension)
        );
        assert_eq!(
            check(
                b"HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
                  Sec-WebSocket-Protocol: chat\r\n\r\n"
            ),
            Err(HandshakeError::UnrequestedProtocol)
        );
    }

    // ---- handshake: real clients ----------------------------------------------------------

    /// What interledger-rs's BTP client (tokio-tungstenite) sends for
    /// `btp+ws://127.0.0.1:7768/accounts/alice/ilp/btp`.
    const INTERLEDGER_RS_REQUEST: &[u8] = b"GET /accounts/alice/ilp/btp HTTP/1.1\r\n\
        Host: 127.0.0.1:7768\r\n\
        Connection: Upgrade\r\n\
        Upgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
        Authorization: Bearer alice:secret\r\n\r\n";

    /// What ilp-plugin-btp (the `ws` npm client) sends for `btp+ws://:secret@localhost:7768`;
    /// it offers permessage-deflate, which we leave unanswered.
    const PLUGIN_BTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n\
        Connection: Upgrade\r\n\
        Upgrade: websocket\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        Host: localhost:7768\r\n\r\n";

    #[test]
    fn interledger_rs_request() {
        let parsed = parse_upgrade_request(INTERLEDGER_RS_REQUEST)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.path(), "/accounts/alice/ilp/btp");
        assert_eq!(parsed.account_from_path(), Some("alice"));
        assert_eq!(parsed.host(), b"127.0.0.1:7768");
        assert_eq!(parsed.key(), b"x3JJHMbDL1EzLkh9GBhXDw==");
        assert_eq!(
            parsed.header("AUTHORIZATION"),
            Some(&b"Bearer alice:secret"[..])
        );
        assert_eq!(parsed.header("Cookie"), None);
        assert_eq!(parsed.len(), INTERLEDGER_RS_REQUEST.len());
        assert!(!parsed.is_empty());
    }

    #[test]
    fn plugin_btp_request() {
        let parsed = parse_upgrade_request(PLUGIN_BTP_REQUEST).unwrap().unwrap();
        assert_eq!(parsed.path(), "/");
        assert_eq!(parsed.account_from_path(), None);
        assert_eq!(parsed.host(), b"localhost:7768");
        assert_eq!(
            parsed.key(),
            &key_from_nonce(&core::array::from_fn(|i| i as u8 + 1))
        );
        let mut out = [0; UPGRADE_RESPONSE_LEN];
        let len = write_upgrade_response(parsed.key(), &mut out);
        let response = &out[..len];
        // No extension is accepted.
        assert!(!response
            .windows(10)
            .any(|w| w.eq_ignore_ascii_case(b"extensions")));
    }

    #[test]
    fn request_split_across_reads() {
        // Byte by byte, with the first frame of the connection right behind the headers.
        let mut stream = INTERLEDGER_RS_REQUEST.to_vec();
        stream.extend_from_slice(&HELLO_MASKED);
        for end in 0..INTERLEDGER_RS_REQUEST.len() {
            assert_eq!(parse_upgrade_request(&stream[..end]), Ok(None), "{end}");
        }
        for end in INTERLEDGER_RS_REQUEST.len()..=stream.len() {
            let parsed = parse_upgrade_request(&stream[..end]).unwrap().unwrap();
            assert_eq!(parsed.len(), INTERLEDGER_RS_REQUEST.len());
        }
        let events = decode_all(Role::Server, &stream[INTERLEDGER_RS_REQUEST.len()..]).unwrap();
        assert_eq!(events, [Event::Text]);
    }

    #[test]
    fn account_from_path() {
        let account = |path: &str| {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
                 Connection: upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n"
            );
            let parsed = parse_upgrade_request(request.as_bytes()).unwrap().unwrap();
            parsed.account_from_path().map(str::to_owned)
        };
        assert_eq!(account("/accounts/bob/ilp/btp").as_deref(), Some("bob"));
        assert_eq!(account("/accounts/bob/ilp/btp?x=1").as_deref(), Some("bob"));
        assert_eq!(account("/accounts//ilp/btp"), None);
        assert_eq!(account("/accounts/a/b/ilp/btp"), None);
        assert_eq!(account("/accounts/bob/ilp/btp/"), None);
        assert_eq!(account("/accounts/bob/ilp"), None);
        assert_eq!(account("/"), None);
    }

    #[test]
    fn oversized_header_block() {
        let mut request = b"GET / HTTP/1.1\r\nHost: h\r\nX-Padding: ".to_vec();
        request.resize(HANDSHAKE_LEN_MAX - 1, b'a');
        assert_eq!(parse_upgrade_request(&request), Ok(None));
        request.push(b'a');
        assert_eq!(
            parse_upgrade_request(&request),
            Err(HandshakeError::TooLarge)
        );
        request.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_upgrade_request(&request),
            Err(HandshakeError::TooLarge)
        );
        assert_eq!(
            parse_upgrade_response(&request, &[0; NONCE_LEN]),
            Err(HandshakeError::TooLarge)
        );

        // A block of exactly HANDSHAKE_LEN_MAX bytes is fine.
        let head = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
                     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
                     X-Padding: ";
        let mut request = head.to_vec();
        request.resize(HANDSHAKE_LEN_MAX - 4, b'a');
        request.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_upgrade_request(&request).unwrap().unwrap().len(),
            HANDSHAKE_LEN_MAX
        );
    }

    #[test]
    fn request_refusals() {
        let base = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n";
        let check = |request: &str| parse_upgrade_request(request.as_bytes()).map(|r| r.is_some());
        assert_eq!(check(&format!("{base}\r\n")), Ok(true));

        let without = |header: &str| {
            let kept: String = base
                .split_inclusive("\r\n")
                .filter(|line| !line.starts_with(header))
                .collect();
            check(&format!("{kept}\r\n"))
        };
        assert_eq!(
            without("Sec-WebSocket-Key"),
            Err(HandshakeError::MissingKey)
        );
        assert_eq!(
            without("Sec-WebSocket-Version"),
            Err(HandshakeError::MissingVersion)
        );
        assert_eq!(without("Host"), Err(HandshakeError::MissingHost));
        assert_eq!(without("Upgrade"), Err(HandshakeError::MissingUpgrade));
        assert_eq!(
            without("Connection"),
            Err(HandshakeError::MissingConnectionUpgrade)
        );

        let replaced = |from: &str, to: &str| check(&format!("{}\r\n", base.replace(from, to)));
        assert_eq!(
            replaced("Version: 13", "Version: 8"),
            Err(HandshakeError::UnsupportedVersion)
        );
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        assert_eq!(replaced("GET", "POST"), Err(HandshakeError::MethodNotGet));
        assert_eq!(
            replaced("HTTP/1.1", "HTTP/1.0"),
            Err(HandshakeError::HttpVersion)
        );
        assert_eq!(
            replaced("GET /", "GET  /"),
            Err(HandshakeError::MalformedRequestLine)
        );
        assert_eq!(
            replaced("GET /", "GET *"),
            Err(HandshakeError::MalformedRequestLine)
        );
        assert_eq!(
            replaced("Upgrade: websocket", "Upgrade: h2c"),
            Err(HandshakeError::MissingUpgrade)
        );
        assert_eq!(
            replaced("Connection: Upgrade", "Connection: keep-alive"),
            Err(HandshakeError::MissingConnectionUpgrade)
        );
        assert_eq!(
            replaced("Connection: Upgrade", "connection: keep-alive, UPGRADE"),
            Ok(true)
        );
        assert_eq!(
            replaced("Upgrade: websocket", "UPGRADE:WebSocket"),
            Ok(true)
        );
        assert_eq!(
            replaced("x3JJHMbDL1EzLkh9GBhXDw==", "x3JJHMbDL1EzLkh9GBhXDw="),
            Err(HandshakeError::InvalidKey)
        );
        assert_eq!(
            replaced("x3JJHMbDL1EzLkh9GBhXDw==", "x3JJHMbDL1EzLkh9GBhX*w=="),
            Err(HandshakeError::InvalidKey)
        );
        assert_eq!(
            replaced("x3JJHMbDL1EzLkh9GBhXDw==", "x3JJHMbDL1EzLkh9GBhXDwAA"),
            Err(HandshakeError::InvalidKey)
        );
        assert_eq!(
            replaced("Host: h\r\n", "Host: h\r\nHost: i\r\n"),
            Err(HandshakeError::DuplicateHeader("Host"))
        );
        assert_eq!(
            replaced("Host: h", "Host : h"),
            Err(HandshakeError::MalformedHeader)
        );
        assert_eq!(
            replaced("Host: h\r\n", "Host: h\r\n folded\r\n"),
            Err(HandshakeError::MalformedHeader)
        );
        assert_eq!(
            replaced("Host: h", "Host: h\x01"),
            Err(HandshakeError::MalformedHeader)
        );
        assert_eq!(
            replaced("Host: h", "Host h"),
            Err(HandshakeError::MalformedHeader)
        );
        assert_eq!(
            replaced("Host: h", "Host: h\nX: y"),
            Err(HandshakeError::MalformedHeader)
        );
    }

    #[test]
    fn http_errors() {
        let mut out = [0; 256];
        let len = write_http_error(401, "Unauthorized", &mut out);
        assert_eq!(
            &out[..len],
            b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        let error = HandshakeError::UnsupportedVersion;
        let len = write_http_error(error.status(), error.reason(), &mut out);
        assert_eq!(
            &out[..len],
            &b"HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Length: 0\r\n\
               Sec-WebSocket-Version: 13\r\n\r\n"[..]
        );
        assert_eq!(len, 82 + error.reason().len());
        let error = HandshakeError::TooLarge;
        let len = write_http_error(error.status(), error.reason(), &mut out);
        assert!(out[..len].starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert_eq!(
            HandshakeError::MissingKey.to_string(),
            "missing Sec-WebSocket-Key"
        );
    }

    #[test]
    fn refused_handshakes_answer_their_status() {
        let mut out = [0u8; HANDSHAKE_ANSWER_LEN_MAX];
        // RFC 6455 §4.4: a version other than 13 is 426 naming the version we speak.
        let request = b"GET / HTTP/1.1\r\nHost: r\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 8\r\n\r\n";
        let error = parse_upgrade_request(request).unwrap_err();
        assert_eq!(error, HandshakeError::UnsupportedVersion);
        let len = error.write_answer(&mut out);
        assert_eq!(
            &out[..len],
            &b"HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Length: 0\r\n\
               Sec-WebSocket-Version: 13\r\n\r\n"[..]
        );
        // No end of the header block within HANDSHAKE_LEN_MAX: 431 (RFC 6585 §5).
        let mut long = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
        long.resize(HANDSHAKE_LEN_MAX, b'a');
        let error = parse_upgrade_request(&long).unwrap_err();
        assert_eq!(error, HandshakeError::TooLarge);
        let len = error.write_answer(&mut out);
        assert_eq!(
            &out[..len],
            &b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\
               Content-Length: 0\r\n\r\n"[..]
        );
        // Anything else is 400.
        let error = parse_upgrade_request(b"\x16\x03\x01 not http\r\n\r\n").unwrap_err();
        let len = error.write_answer(&mut out);
        assert!(out[..len].starts_with(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"));
        // Every variant's answer fits the constant.
        let longest = [HandshakeError::TooLarge, HandshakeError::UnsupportedVersion]
            .map(|e| e.write_answer(&mut out))
            .into_iter()
            .max()
            .unwrap();
        assert!(longest <= HANDSHAKE_ANSWER_LEN_MAX);
    }

    // ---- frames: RFC 6455 §5.7 ------------------------------------------------------------

    #[test]
    fn rfc_unmasked_hello() {
        let mut buf = HELLO_UNMASKED;
        let frame = client().decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame {
                fin: true,
                opcode: Opcode::Text,
                payload: 2..7,
                len: 7
            }
        );
        assert_eq!(&buf[frame.payload], b"Hello");
        let mut out = [0; 16];
        let len = write_frame(Opcode::Text, true, b"Hello", None, &mut out);
        assert_eq!(out[..len], HELLO_UNMASKED);
    }

    #[test]
    fn rfc_masked_hello() {
        let mut buf = HELLO_MASKED;
        let frame = server().decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame {
                fin: true,
                opcode: Opcode::Text,
                payload: 6..11,
                len: 11
            }
        );
        assert_eq!(&buf[frame.payload], b"Hello");
        let mut out = [0; 16];
        let len = write_frame(
            Opcode::Text,
            true,
            b"Hello",
            Some([0x37, 0xfa, 0x21, 0x3d]),
            &mut out,
        );
        assert_eq!(out[..len], HELLO_MASKED);
    }

    #[test]
    fn rfc_fragmented_hello() {
        let stream = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(decode_all(Role::Client, &stream).unwrap(), [Event::Text]);
        // The same fragments as binary are reassembled.
        let stream = [0x02, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            decode_all(Role::Client, &stream).unwrap(),
            [Event::Binary(b"Hello".to_vec())]
        );
    }

    #[test]
    fn rfc_ping_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_all(Role::Client, &ping).unwrap(),
            [Event::Ping(b"Hello".to_vec())]
        );
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(Role::Server, &pong).unwrap(),
            [Event::Pong(b"Hello".to_vec())]
        );
        let mut out = [0; 16];
        let len = write_ping(b"Hello", None, &mut out);
        assert_eq!(out[..len], ping);
        let len = write_pong(b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]), &mut out);
        assert_eq!(out[..len], pong);
    }

    #[test]
    fn rfc_256_bytes_and_64_kib() {
        let mut out = [0; FRAME_HEADER_LEN_MAX];
        let len = write_frame_header(Opcode::Binary, true, 256, None, &mut out);
        assert_eq!(out[..len], [0x82, 0x7e, 0x01, 0x00]);
        let mut frame = out[..len].to_vec();
        frame.extend((0..256).map(|i| i as u8));
        let events = decode_all(Role::Client, &frame).unwrap();
        assert_eq!(events, [Event::Binary((0..256).map(|i| i as u8).collect())]);

        let len = write_frame_header(Opcode::Binary, true, 65_536, None, &mut out);
        assert_eq!(out[..len], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        let mut frame = out[..len].to_vec();
        frame.resize(len + 65_536, 0xab);
        let decoder = FrameDecoder::new(Role::Client, 65_536);
        let decoded = decoder.decode(&mut frame).unwrap().unwrap();
        assert_eq!(decoded.payload, 10..65_546);
        assert_eq!(decoded.len, frame.len());
        // One byte short is incomplete, and the hint says exactly how much is needed.
        assert_eq!(decoder.decode(&mut frame[..65_545]), Ok(None));
        assert_eq!(frame_len_hint(&frame[..3]), 10);
        assert_eq!(frame_len_hint(&frame[..10]), 65_546);

        // The boundaries of the minimal encoding.
        for (payload_len, header_len) in [(125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            assert_eq!(frame_header_len(payload_len, false), header_len);
            assert_eq!(frame_header_len(payload_len, true), header_len + 4);
            assert_eq!(
                write_frame_header(Opcode::Binary, true, payload_len, None, &mut out),
                header_len
            );
        }
        assert_eq!(frame_header_len(usize::MAX, true), FRAME_HEADER_LEN_MAX);
    }

    #[test]
    fn non_minimal_lengths_accepted() {
        // "Hello" with a 16-bit and with a 64-bit length.
        let mut buf = [0x82, 0x7e, 0x00, 0x05, b'H', b'e', b'l', b'l', b'o'];
        let frame = client().decode(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[frame.payload], b"Hello");
        let mut buf = [
            0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x05, b'H', b'e', b'l', b'l', b'o',
        ];
        let frame = client().decode(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[frame.payload], b"Hello");
    }

    // ---- frames: rule checks --------------------------------------------------------------

    #[test]
    fn role_checks() {
        let mut buf = HELLO_UNMASKED;
        assert_eq!(server().decode(&mut buf), Err(WsError::UnmaskedFrame));
        let mut buf = HELLO_MASKED;
        assert_eq!(client().decode(&mut buf), Err(WsError::MaskedFrame));
        // Decided from the first two bytes.
        assert_eq!(
            server().decode(&mut [0x82, 0x00]),
            Err(WsError::UnmaskedFrame)
        );
        assert_eq!(
            client().decode(&mut [0x82, 0x80]),
            Err(WsError::MaskedFrame)
        );
        assert_eq!(
            WsError::UnmaskedFrame.close_code(),
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn header_rule_checks() {
        let c = client();
        assert_eq!(c.decode(&mut []), Ok(None));
        assert_eq!(c.decode(&mut [0x82]), Ok(None));
        assert_eq!(c.decode(&mut [0xc2, 0x00]), Err(WsError::ReservedBits));
        assert_eq!(c.decode(&mut [0xa2, 0x00]), Err(WsError::ReservedBits));
        assert_eq!(c.decode(&mut [0x92, 0x00]), Err(WsError::ReservedBits));
        for opcode in [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                c.decode(&mut [0x80 | opcode, 0x00]),
                Err(WsError::UnknownOpcode(opcode))
            );
        }
        assert_eq!(c.decode(&mut [0x09, 0x00]), Err(WsError::FragmentedControl));
        assert_eq!(c.decode(&mut [0x08, 0x00]), Err(WsError::FragmentedControl));
        assert_eq!(c.decode(&mut [0x89, 0x7e]), Err(WsError::ControlTooLong));
        assert_eq!(c.decode(&mut [0x8a, 0x7f]), Err(WsError::ControlTooLong));
        assert_eq!(c.decode(&mut [0x89, 0x7d]), Ok(None));
        let mut top_bit = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(c.decode(&mut top_bit), Err(WsError::InvalidLength));
        assert_eq!(c.decode(&mut top_bit[..9]), Ok(None));
    }

    #[test]
    fn oversize_frame_refused_from_header() {
        let decoder = FrameDecoder::new(Role::Server, 1000);
        // 1001 bytes announced, masked, no payload yet.
        let mut header = [0x82, 0xfe, 0x03, 0xe9, 1, 2, 3, 4];
        assert_eq!(decoder.decode(&mut header[..3]), Ok(None));
        assert_eq!(decoder.decode(&mut header[..4]), Err(WsError::FrameTooLong));
        assert_eq!(
            WsError::FrameTooLong.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
        let mut huge = [0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decoder.decode(&mut huge), Err(WsError::FrameTooLong));
        let mut at_limit = [0x82, 0xfe, 0x03, 0xe8, 1, 2, 3, 4];
        assert_eq!(decoder.decode(&mut at_limit), Ok(None));
        assert_eq!(frame_len_hint(&at_limit), 8 + 1000);
        // Even with frame_len_max at usize::MAX the length arithmetic cannot overflow.
        let decoder = FrameDecoder::new(Role::Client, usize::MAX);
        let mut max = [0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decoder.decode(&mut max), Ok(None));
    }

    // ---- messages -------------------------------------------------------------------------

    fn frame_bytes(opcode: Opcode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![0; FRAME_HEADER_LEN_MAX + payload.len()];
        let len = write_frame(opcode, fin, payload, mask, &mut out);
        out.truncate(len);
        out
    }

    #[test]
    fn unfragmented_binary_is_zero_copy() {
        let mut buf = frame_bytes(Opcode::Binary, true, b"packet", None);
        let frame = client().decode(&mut buf).unwrap().unwrap();
        let mut assembler = MessageAssembler::new(64);
        let base = buf.as_ptr() as usize;
        let Message::Binary(bytes) = assembler.handle_frame(&mut buf, &frame).unwrap() else {
            panic!("not binary");
        };
        assert_eq!(bytes.as_ptr() as usize, base + 2);
        bytes[0] = b'P'; // the engine may rewrite in place
        assert_eq!(&buf[2..], b"Packet");
    }

    #[test]
    fn control_frames_inside_fragmented_message() {
        let mut stream = frame_bytes(Opcode::Binary, false, b"ab", None);
        stream.extend(frame_bytes(Opcode::Ping, true, b"p", None));
        stream.extend(frame_bytes(Opcode::Continuation, false, b"cd", None));
        stream.extend(frame_bytes(Opcode::Pong, true, b"", None));
        stream.extend(frame_bytes(Opcode::Continuation, true, b"e", None));
        stream.extend(frame_bytes(
            Opcode::Close,
            true,
            &[0x03, 0xe8, b'o', b'k'],
            None,
        ));
        assert_eq!(
            decode_all(Role::Client, &stream).unwrap(),
            [
                Event::Ping(b"p".to_vec()),
                Event::Pong(Vec::new()),
                Event::Binary(b"abcde".to_vec()),
                Event::Close(Some(1000), b"ok".to_vec()),
            ]
        );
    }

    #[test]
    fn fragmentation_violations() {
        let cont = frame_bytes(Opcode::Continuation, true, b"x", None);
        assert_eq!(
            decode_all(Role::Client, &cont),
            Err(WsError::UnexpectedContinuation)
        );

        let mut stream = frame_bytes(Opcode::Binary, false, b"x", None);
        stream.extend(frame_bytes(Opcode::Binary, true, b"y", None));
        assert_eq!(
            decode_all(Role::Client, &stream),
            Err(WsError::ExpectedContinuation)
        );

        let mut stream = frame_bytes(Opcode::Text, false, b"x", None);
        stream.extend(frame_bytes(Opcode::Binary, true, b"y", None));
        assert_eq!(
            decode_all(Role::Client, &stream),
            Err(WsError::ExpectedContinuation)
        );
        assert_eq!(
            WsError::ExpectedContinuation.close_code(),
            CloseCode::PROTOCOL_ERROR
        );
    }

    #[test]
    fn oversize_messages() {
        let decoder = client();
        let mut assembler = MessageAssembler::new(4);
        assert_eq!(assembler.message_len_max(), 4);
        let mut events = Vec::new();

        let mut buf = frame_bytes(Opcode::Binary, true, b"12345", None);
        let result = drain(&decoder, &mut assembler, &mut buf, &mut events);
        assert_eq!(result, Err(WsError::MessageTooLong));
        assert_eq!(
            WsError::MessageTooLong.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );

        let mut buf = frame_bytes(Opcode::Binary, true, b"1234", None);
        assert_eq!(
            drain(&decoder, &mut assembler, &mut buf, &mut events),
            Ok(1)
        );
        assert_eq!(events, [Event::Binary(b"1234".to_vec())]);

        let mut buf = frame_bytes(Opcode::Binary, false, b"123", None);
        buf.extend(frame_bytes(Opcode::Continuation, true, b"45", None));
        let result = drain(&decoder, &mut assembler, &mut buf, &mut events);
        assert_eq!(result, Err(WsError::MessageTooLong));
        assert!(
            !assembler.is_fragmented(),
            "an error leaves the assembler idle"
        );

        // Text counts too, though it is not kept.
        let mut buf = frame_bytes(Opcode::Text, false, b"123", None);
        buf.extend(frame_bytes(Opcode::Continuation, true, b"45", None));
        let result = drain(&decoder, &mut assembler, &mut buf, &mut events);
        assert_eq!(result, Err(WsError::MessageTooLong));
    }

    #[test]
    fn close_payloads() {
        let close = |payload: &[u8]| {
            decode_all(
                Role::Client,
                &frame_bytes(Opcode::Close, true, payload, None),
            )
        };
        assert_eq!(close(b""), Ok(vec![Event::Close(None, Vec::new())]));
        assert_eq!(close(&[0x03]), Err(WsError::InvalidClosePayload));
        assert_eq!(close(&[0x03, 0xed]), Err(WsError::InvalidCloseCode(1005)));
        assert_eq!(close(&[0x03, 0xee]), Err(WsError::InvalidCloseCode(1006)));
        assert_eq!(close(&[0x03, 0xe7]), Err(WsError::InvalidCloseCode(999)));
        assert_eq!(close(&[0x13, 0x88]), Err(WsError::InvalidCloseCode(5000)));
        assert_eq!(
            close(&[0x0f, 0xa0]),
            Ok(vec![Event::Close(Some(4000), Vec::new())])
        );

        let empty = Close {
            code: None,
            reason: &[],
        };
        assert_eq!(empty.reply_code(), CloseCode::NORMAL);

        let reason = [b'r'; CLOSE_REASON_LEN_MAX];
        let mut out = [0; 2 + 4 + CONTROL_PAYLOAD_LEN_MAX];
        let len = write_close(
            CloseCode::MESSAGE_TOO_BIG,
            &reason,
            Some([9, 8, 7, 6]),
            &mut out,
        );
        assert_eq!(len, out.len());
        assert_eq!(
            decode_all(Role::Server, &out).unwrap(),
            [Event::Close(Some(1009), reason.to_vec())]
        );
    }

    // ---- masking --------------------------------------------------------------------------

    #[test]
    fn apply_mask_matches_bytewise_in_pieces() {
        let mut rng = Rng(0x5eed_0001);
        for len in 0..80 {
            let original = rng.bytes(len);
            let mask = rng.mask();
            let expected: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            let mut whole = original.clone();
            apply_mask(&mut whole, mask, 0);
            assert_eq!(whole, expected);
            for split in 0..=len {
                let mut pieces = original.clone();
                let (head, tail) = pieces.split_at_mut(split);
                apply_mask(head, mask, 0);
                apply_mask(tail, mask, split);
                assert_eq!(pieces, expected, "len {len} split {split}");
            }
            apply_mask(&mut whole, mask, 0);
            assert_eq!(whole, original);
        }
    }

    // ---- streams --------------------------------------------------------------------------

    /// A client-encoded stream of every kind of frame, and the events it should give.
    fn mixed_stream(rng: &mut Rng) -> (Vec<u8>, Vec<Event>) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        let mut push = |opcode, fin, payload: &[u8], rng: &mut Rng| {
            stream.extend(frame_bytes(opcode, fin, payload, Some(rng.mask())));
        };
        push(Opcode::Ping, true, b"", rng);
        expected.push(Event::Ping(Vec::new()));
        push(Opcode::Binary, true, b"one", rng);
        expected.push(Event::Binary(b"one".to_vec()));
        push(Opcode::Binary, false, b"tw", rng);
        push(Opcode::Ping, true, b"keepalive", rng);
        expected.push(Event::Ping(b"keepalive".to_vec()));
        push(Opcode::Continuation, false, b"", rng);
        push(Opcode::Continuation, true, b"o", rng);
        expected.push(Event::Binary(b"two".to_vec()));
        push(Opcode::Text, false, b"not", rng);
        push(Opcode::Continuation, true, b" btp", rng);
        expected.push(Event::Text);
        let medium = rng.bytes(300);
        push(Opcode::Binary, true, &medium, rng);
        expected.push(Event::Binary(medium));
        push(Opcode::Binary, true, b"", rng);
        expected.push(Event::Binary(Vec::new()));
        let large = rng.bytes(70_000);
        push(Opcode::Binary, false, &large[..40_000], rng);
        push(Opcode::Continuation, true, &large[40_000..], rng);
        expected.push(Event::Binary(large));
        push(Opcode::Pong, true, b"pong", rng);
        expected.push(Event::Pong(b"pong".to_vec()));
        push(Opcode::Close, true, &[0x03, 0xe9, b'b', b'y', b'e'], rng);
        expected.push(Event::Close(Some(1001), b"bye".to_vec()));
        (stream, expected)
    }

    #[test]
    fn byte_by_byte_matches_all_at_once() {
        let mut rng = Rng(0x5eed_0002);
        let (stream, expected) = mixed_stream(&mut rng);
        assert_eq!(decode_all(Role::Server, &stream).unwrap(), expected);

        let decoder = FrameDecoder::new(Role::Server, 1 << 20);
        let mut assembler = MessageAssembler::new(1 << 20);
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let mut frames = 0;
        for &byte in &stream {
            buf.push(byte);
            frames += drain(&decoder, &mut assembler, &mut buf, &mut events).unwrap();
        }
        assert!(buf.is_empty());
        assert_eq!(frames, 14);
        assert_eq!(events, expected);

        // Random read sizes too.
        let mut buf = Vec::new();
        let mut events = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let end = (at + 1 + rng.below(3000)).min(stream.len());
            buf.extend_from_slice(&stream[at..end]);
            at = end;
            drain(&decoder, &mut assembler, &mut buf, &mut events).unwrap();
        }
        assert_eq!(events, expected);
    }

    #[test]
    fn client_to_server_round_trip() {
        let mut rng = Rng(0x5eed_0003);
        let decoder = FrameDecoder::new(Role::Server, 80_000);
        let mut assembler = MessageAssembler::new(80_000);
        let mut wire = vec![0; FRAME_HEADER_LEN_MAX + 70_000];
        for len in (0..=300).chain([70_000]) {
            let payload = rng.bytes(len);
            let mask = rng.mask();
            // The hot-path way: header, payload placed after it, then masked in place.
            let header_len = write_frame_header(Opcode::Binary, true, len, Some(mask), &mut wire);
            assert_eq!(header_len, frame_header_len(len, true));
            wire[header_len..header_len + len].copy_from_slice(&payload);
            apply_mask(&mut wire[header_len..header_len + len], mask, 0);
            let frame_len = header_len + len;

            let frame = decoder.decode(&mut wire[..frame_len]).unwrap().unwrap();
            assert_eq!(frame.len, frame_len);
            assert_eq!(frame.payload, header_len..frame_len);
            match assembler
                .handle_frame(&mut wire[..frame_len], &frame)
                .unwrap()
            {
                Message::Binary(bytes) => assert_eq!(bytes, &payload[..], "len {len}"),
                other => panic!("{other:?}"),
            }

            // And fragmented at random points.
            let mut stream = Vec::new();
            let mut at = 0;
            let mut opcode = Opcode::Binary;
            loop {
                let end = (at + rng.below(len / 3 + 2)).min(len);
                stream.extend(frame_bytes(
                    opcode,
                    end == len,
                    &payload[at..end],
                    Some(rng.mask()),
                ));
                opcode = Opcode::Continuation;
                at = end;
                if at == len {
                    break;
                }
            }
            let mut events = Vec::new();
            drain(&decoder, &mut assembler, &mut stream, &mut events).unwrap();
            assert!(stream.is_empty());
            assert_eq!(events, [Event::Binary(payload)], "len {len}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = Rng(0x5eed_0004);
        let handshake_seed = INTERLEDGER_RS_REQUEST;
        for round in 0..20_000 {
            // Frames: random bytes, biased towards plausible first bytes.
            let len = rng.below(40);
            let mut bytes = rng.bytes(len);
            if let Some(first) = bytes.first_mut() {
                if round % 2 == 0 {
                    *first &= 0x8f;
                }
            }
            for role in [Role::Server, Role::Client] {
                let decoder = FrameDecoder::new(role, 16);
                let mut assembler = MessageAssembler::new(16);
                let mut buf = bytes.clone();
                let mut events = Vec::new();
                let _ = drain(&decoder, &mut assembler, &mut buf, &mut events);
                let _ = frame_len_hint(&bytes);
            }
            // Handshakes: a real request with a few bytes flipped.
            let mut request = handshake_seed.to_vec();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(request.len());
                request[at] = rng.next() as u8;
            }
            let _ = parse_upgrade_request(&request);
            let _ = parse_upgrade_response(&request, &[0; NONCE_LEN]);
        }
    }

    #[test]
    fn display() {
        assert_eq!(
            WsError::UnknownOpcode(3).to_string(),
            "unknown opcode 0x3 (close 1002)"
        );
        assert_eq!(
            HandshakeError::DuplicateHeader("Host").to_string(),
            "header Host appears more than once"
        );
    }
}
