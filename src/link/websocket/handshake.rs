//! The RFC 6455 §4 opening handshake, sans-IO: the server reads an upgrade request and
//! answers `101` (or an HTTP error), the client writes one and checks the `101`. The HTTP/1.1
//! heads are read by [`crate::link::http1`] (CRLF line ends only); this module holds the
//! WebSocket rules on top: which headers must be there, once, with which tokens, and the key.
//!
//! About 970 lines, over the ~800 we aim for: some 530 of code, and beside it its tests (the
//! RFC's sample handshake, requests as ilp-plugin-btp and interledger-rs send them, every
//! refusal with its answer), which read best next to the rules they check.

use core::fmt;

use sha1::{Digest, Sha1};

use super::{ACCEPT_LEN, HANDSHAKE_LEN_MAX, KEY_LEN, NONCE_LEN};
use crate::link::http1::{self, HeadError, HeadWriter, LineEnds};

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

/// Header lines a head of [`HANDSHAKE_LEN_MAX`] bytes can hold at the most (each takes at
/// least 4 bytes, `a:\r\n`), so that the byte limit, not a count, decides: an array of
/// uninitialised headers (32 bytes each) on the stack of the parse only.
const HANDSHAKE_HEADERS_MAX: usize = HANDSHAKE_LEN_MAX / 4;

/// A validated client upgrade request: views into the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradeRequest<'a> {
    path: &'a str,
    host: &'a [u8],
    key: &'a [u8; KEY_LEN],
    head: &'a [u8],
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
        self.head.len()
    }

    /// Never true: a request has at least a request line. Here for the `len`/`is_empty` pair.
    pub const fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    /// The first value of header `name` (case-insensitive), trimmed; e.g. `Authorization`.
    /// Reads the head again (it was validated, so this cannot fail): for the odd header a
    /// link looks at once, not for a loop.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let mut headers = http1::headers::<HANDSHAKE_HEADERS_MAX>();
        let head = http1::parse_request(
            self.head,
            &mut headers,
            HANDSHAKE_LEN_MAX,
            LineEnds::CrlfOnly,
        );
        http1::header(head.ok()??.headers, name)
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
    let mut headers = http1::headers::<HANDSHAKE_HEADERS_MAX>();
    let parsed = http1::parse_request(buf, &mut headers, HANDSHAKE_LEN_MAX, LineEnds::CrlfOnly);
    let head = match parsed {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(None),
        // The request line is judged before the header lines, as it is read first.
        Err(e @ HeadError::HeaderLine(_)) => {
            let line = http1::request_line(buf).map_err(request_error)?;
            check_request_line(line.method, line.version, line.target)?;
            return Err(request_error(e));
        }
        Err(e) => return Err(request_error(e)),
    };
    check_request_line(head.method, head.version, head.target)?;

    let mut host = None;
    let mut key = None;
    let mut version = None;
    let mut upgrade = false;
    let mut connection = false;
    for &http1::Header { name, value } in head.headers {
        if name.eq_ignore_ascii_case("host") {
            set_once(&mut host, value, "Host")?;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= http1::has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= http1::has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            set_once(&mut version, value, "Sec-WebSocket-Version")?;
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
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
        path: head.target,
        host,
        key,
        head: &buf[..head.len],
    }))
}

/// `GET <target> HTTP/1.1` with an origin-form target of visible ASCII.
fn check_request_line(method: &str, version: u8, target: &str) -> Result<(), HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::MethodNotGet);
    }
    if version != 1 {
        return Err(HandshakeError::HttpVersion);
    }
    if !target.starts_with('/') || !target.bytes().all(is_visible) {
        return Err(HandshakeError::MalformedRequestLine);
    }
    Ok(())
}

/// A request head the HTTP layer refused, as the handshake's error (and so its answer).
fn request_error(error: HeadError) -> HandshakeError {
    match error {
        HeadError::TooLarge | HeadError::TooManyHeaders => HandshakeError::TooLarge,
        HeadError::StartLine(httparse::Error::Version) => HandshakeError::HttpVersion,
        HeadError::StartLine(_) => HandshakeError::MalformedRequestLine,
        HeadError::HeaderLine(_) => HandshakeError::MalformedHeader,
    }
}

/// Writes the `101 Switching Protocols` answer for `key` into `out`; returns
/// [`UPGRADE_RESPONSE_LEN`]. No extension and no subprotocol is chosen.
///
/// # Panics
///
/// If `out` is shorter than [`UPGRADE_RESPONSE_LEN`].
pub fn write_upgrade_response(key: &[u8; KEY_LEN], out: &mut [u8]) -> usize {
    let mut w = HeadWriter::new(out);
    w.put(RESPONSE_101_HEAD);
    w.put(&accept_key(key));
    w.put(b"\r\n\r\n");
    debug_assert_eq!(w.len(), UPGRADE_RESPONSE_LEN);
    w.len()
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
    let mut w = HeadWriter::new(out);
    w.put_status_line(status, reason);
    w.put(b"Connection: close\r\nContent-Length: 0\r\n");
    if status == 426 {
        w.put(b"Sec-WebSocket-Version: 13\r\n");
    }
    w.put(b"\r\n");
    w.len()
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
    let mut w = HeadWriter::new(out);
    w.put(b"GET ");
    w.put(path.as_bytes());
    w.put(REQUEST_TAIL_1);
    w.put(host.as_bytes());
    w.put(REQUEST_TAIL_2);
    w.put(&key_from_nonce(nonce));
    w.put(REQUEST_TAIL_3);
    debug_assert_eq!(w.len(), upgrade_request_len(host, path));
    w.len()
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
    let mut headers = http1::headers::<HANDSHAKE_HEADERS_MAX>();
    let parsed = http1::parse_response(buf, &mut headers, HANDSHAKE_LEN_MAX, LineEnds::CrlfOnly);
    let head = match parsed {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(None),
        // The status line is judged before the header lines, as it is read first.
        Err(e @ HeadError::HeaderLine(_)) => {
            let line = http1::status_line(buf).map_err(response_error)?;
            check_status_line(line.version, line.status)?;
            return Err(response_error(e));
        }
        Err(e) => return Err(response_error(e)),
    };
    check_status_line(head.version, head.status)?;

    let mut accept = None;
    let mut upgrade = false;
    let mut connection = false;
    for &http1::Header { name, value } in head.headers {
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= http1::has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= http1::has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            set_once(&mut accept, value, "Sec-WebSocket-Accept")?;
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            return Err(HandshakeError::UnrequestedExtension);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
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
    Ok(Some(head.len))
}

/// `HTTP/1.1 101`.
fn check_status_line(version: u8, status: u16) -> Result<(), HandshakeError> {
    if version != 1 {
        return Err(HandshakeError::MalformedStatusLine);
    }
    if status != 101 {
        return Err(HandshakeError::UnexpectedStatus(status));
    }
    Ok(())
}

/// A response head the HTTP layer refused, as the handshake's error.
fn response_error(error: HeadError) -> HandshakeError {
    match error {
        HeadError::TooLarge | HeadError::TooManyHeaders => HandshakeError::TooLarge,
        HeadError::StartLine(_) => HandshakeError::MalformedStatusLine,
        HeadError::HeaderLine(_) => HandshakeError::MalformedHeader,
    }
}

// ---------------------------------------------------------------------------------------------
// Handshake: leaf helpers (no state)
// ---------------------------------------------------------------------------------------------

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

#[cfg(test)]
mod test {
    use super::super::test_support::*;
    use super::super::*;
    use super::base64_encode;

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
}
