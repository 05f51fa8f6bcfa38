//! ILP over HTTP (RFC 35, synchronous mode), sans-IO: parse and write HTTP/1.1 requests and
//! responses around one OER ILP packet per POST (RFC 35 "Request" and "Response", as written
//! before asynchronous mode replaced them: the Fulfill or Reject is the body of the 200).
//!
//! Server: [`parse_request`] reads a request head from the front of a buffer (via `httparse`),
//! checks what can be checked before the body arrives (method, `Content-Length` against the
//! body limit, the bearer token's presence) and says how many body bytes follow; the caller
//! answers with [`write_response`] (200 with the Fulfill or Reject) or [`write_status`]
//! (400/401/404/405/411/413/431/…). Client: [`write_request_head`] for a POST carrying a
//! Prepare, [`parse_response`] for the answer, and [`map_response`] to turn an HTTP outcome
//! into what the engine should hear (RFC 35 for 5xx, our choices for the rest).
//!
//! Keep-alive is HTTP/1.1's default; `Connection: close` (or HTTP/1.0 without keep-alive)
//! ends the connection after the response. A refusal that leaves the request unread (401
//! before the body, 405, 408, 411, 413, 431: [`status_closes`]) always ends it, and its head
//! says `Connection: close`. Non-goals: chunked request bodies (refused with
//! 411: ILP clients always send `Content-Length`), HTTP/2, TLS, asynchronous mode.

use super::http1::{self, HeadError, HeadWriter, LengthError, LineEnds};
use crate::engine::RejectReason;

/// The most headers a request or response may carry.
pub const HEADERS_MAX: usize = 32;
/// The largest request or response head accepted.
pub const HEAD_LEN_MAX: usize = 8192;

/// Why a request cannot be served; each maps to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Not HTTP/1.x, or a malformed head: 400.
    Malformed,
    /// The head is over [`HEAD_LEN_MAX`] or has too many headers: 431.
    HeadTooLarge,
    /// Not a POST: 405.
    MethodNotAllowed,
    /// No `Content-Length` (or a chunked body): 411.
    LengthRequired,
    /// `Content-Length` over the body limit: 413.
    BodyTooLarge,
    /// No usable `Authorization: Bearer …`: 401.
    Unauthorized,
}

impl HttpError {
    /// The status to answer with.
    pub fn status(self) -> u16 {
        match self {
            HttpError::Malformed => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::MethodNotAllowed => 405,
            HttpError::LengthRequired => 411,
            HttpError::BodyTooLarge => 413,
            HttpError::Unauthorized => 401,
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The request target as sent.
    pub path: &'a str,
    /// The token after `Bearer ` (scheme name case-insensitive); the bare token is accepted
    /// too, as ilp-plugin-http before 1.6 sent it.
    pub token: &'a [u8],
    /// Bytes of the head, `\r\n\r\n` included: the body starts there.
    pub head_len: usize,
    /// Bytes of body that follow.
    pub body_len: usize,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

impl Request<'_> {
    /// `{name}` when the path is interledger-rs's `/accounts/{name}/ilp`.
    pub fn account_from_path(&self) -> Option<&str> {
        let path = self.path.split_once('?').map_or(self.path, |(p, _)| p);
        let name = path.strip_prefix("/accounts/")?.strip_suffix("/ilp")?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
}

/// Parses a request head from the front of `buf`: `Ok(None)` until it is complete. The body
/// (`body_len` bytes at `head_len`) may still be arriving. Checks, in order: well-formed,
/// POST, `Content-Length` present and at most `body_len_max` (so a 413 goes out before the body
/// is read), a bearer token present.
pub fn parse_request(buf: &[u8], body_len_max: usize) -> Result<Option<Request<'_>>, HttpError> {
    parse_request_on(buf, body_len_max, true)
}

/// [`parse_request`]; with `token_required` false (a TLS connection whose client certificate
/// stands for a peer) a request with no `Authorization`, or an empty token, has an empty
/// `token` instead of being refused.
fn parse_request_on(
    buf: &[u8],
    body_len_max: usize,
    token_required: bool,
) -> Result<Option<Request<'_>>, HttpError> {
    let mut headers = http1::headers::<HEADERS_MAX>();
    let parsed = http1::parse_request(buf, &mut headers, HEAD_LEN_MAX, LineEnds::Lenient);
    let Some(head) = parsed.map_err(head_error)? else {
        return Ok(None);
    };
    if head.method != "POST" {
        return Err(HttpError::MethodNotAllowed);
    }
    let framing = http1::framing(head.headers);
    let body_len = body_len(&framing, body_len_max)?;
    let authorization = match framing.authorization {
        Some(authorization) => authorization.trim_ascii(),
        // An empty part of `buf`, so that the memo can keep its place.
        None if !token_required => &buf[..0],
        None => return Err(HttpError::Unauthorized),
    };
    let token = match authorization.split_at_checked(6) {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case(b"bearer") && (rest.is_empty() || rest[0] == b' ') =>
        {
            rest.trim_ascii()
        }
        _ => authorization,
    };
    if token.is_empty() && token_required {
        return Err(HttpError::Unauthorized);
    }
    Ok(Some(Request {
        path: head.target,
        token,
        head_len: head.len,
        body_len,
        keep_alive: framing.keep_alive(head.version),
    }))
}

/// The last head parsed on one connection, kept so that a byte-identical head is not parsed
/// again: a client sends the same head request after request (only the body changes, and
/// often not even its length), and equal bytes parse alike. A head that differs is parsed and
/// kept instead. Its memory is one head (at most [`HEAD_LEN_MAX`] bytes).
#[derive(Debug)]
pub struct HeadMemo<T> {
    head: Vec<u8>,
    parsed: Option<T>,
}

impl<T> Default for HeadMemo<T> {
    fn default() -> Self {
        HeadMemo {
            head: Vec::new(),
            parsed: None,
        }
    }
}

impl<T: Copy> HeadMemo<T> {
    /// What the kept head parsed to, if `buf` starts with the same bytes.
    fn recall(&self, buf: &[u8]) -> Option<T> {
        let parsed = self.parsed?;
        buf.starts_with(&self.head).then_some(parsed)
    }

    fn keep(&mut self, head: &[u8], parsed: T) {
        self.head.clear();
        self.head.extend_from_slice(head);
        self.parsed = Some(parsed);
    }
}

/// A [`Request`] with its borrowed fields as ranges of the head, for [`HeadMemo`].
#[derive(Debug, Clone, Copy)]
pub struct RequestShape {
    path: (usize, usize),
    token: (usize, usize),
    body_len: usize,
    keep_alive: bool,
}

/// Where `inner` (a part of `outer`) lies in it.
fn span(outer: &[u8], inner: &[u8]) -> (usize, usize) {
    let start = (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize);
    debug_assert!(
        start.saturating_add(inner.len()) <= outer.len(),
        "not a part of it"
    );
    (start, start + inner.len())
}

/// [`parse_request`], skipping the parse when the head is byte-identical to the last one
/// parsed on this connection (`memo`).
pub fn parse_request_memo<'a>(
    buf: &'a [u8],
    body_len_max: usize,
    memo: &mut HeadMemo<RequestShape>,
) -> Result<Option<Request<'a>>, HttpError> {
    parse_request_memo_on(buf, body_len_max, memo, true)
}

/// [`parse_request_memo`], with a token optional unless `token_required` (see
/// `parse_request_on`).
pub fn parse_request_memo_on<'a>(
    buf: &'a [u8],
    body_len_max: usize,
    memo: &mut HeadMemo<RequestShape>,
    token_required: bool,
) -> Result<Option<Request<'a>>, HttpError> {
    if let Some(shape) = memo.recall(buf) {
        let path = &buf[shape.path.0..shape.path.1];
        // The same bytes were UTF-8 when they were parsed.
        let path = std::str::from_utf8(path).unwrap_or_default();
        return Ok(Some(Request {
            path,
            token: &buf[shape.token.0..shape.token.1],
            head_len: memo.head.len(),
            body_len: shape.body_len,
            keep_alive: shape.keep_alive,
        }));
    }
    let parsed = parse_request_on(buf, body_len_max, token_required)?;
    if let Some(request) = parsed {
        let shape = RequestShape {
            path: span(buf, request.path.as_bytes()),
            token: span(buf, request.token),
            body_len: request.body_len,
            keep_alive: request.keep_alive,
        };
        memo.keep(&buf[..request.head_len], shape);
    }
    Ok(parsed)
}

/// [`parse_response`], skipping the parse when the head is byte-identical to the last one
/// parsed on this connection (`memo`).
pub fn parse_response_memo(
    buf: &[u8],
    body_len_max: usize,
    memo: &mut HeadMemo<Response>,
) -> Result<Option<Response>, HttpError> {
    if let Some(response) = memo.recall(buf) {
        return Ok(Some(response));
    }
    let parsed = parse_response(buf, body_len_max)?;
    if let Some(response) = parsed {
        memo.keep(&buf[..response.head_len], response);
    }
    Ok(parsed)
}

/// A head the HTTP layer refused, as the status to answer.
fn head_error(error: HeadError) -> HttpError {
    match error {
        HeadError::TooLarge | HeadError::TooManyHeaders => HttpError::HeadTooLarge,
        HeadError::StartLine(_) | HeadError::HeaderLine(_) => HttpError::Malformed,
    }
}

/// The body length of a request or response: `Content-Length`, present, without
/// `Transfer-Encoding` (no chunked bodies: 411), and at most `body_len_max` (413).
fn body_len(framing: &http1::Framing<'_>, body_len_max: usize) -> Result<usize, HttpError> {
    if framing.transfer_encoding {
        return Err(HttpError::LengthRequired);
    }
    let body_len = match framing.content_length {
        Ok(Some(len)) => len,
        Ok(None) => return Err(HttpError::LengthRequired),
        Err(LengthError::Malformed) => return Err(HttpError::Malformed),
        Err(LengthError::Overflow) => return Err(HttpError::BodyTooLarge),
    };
    if body_len > body_len_max {
        return Err(HttpError::BodyTooLarge);
    }
    Ok(body_len)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Bytes of the longest head [`write_response`] or [`write_status`] writes.
pub const RESPONSE_HEAD_LEN_MAX: usize = 160;

/// Writes a `200 OK` head for an ILP reply of `body_len` bytes (the caller appends the body).
pub fn write_response(body_len: usize, keep_alive: bool, out: &mut [u8]) -> usize {
    let mut w = HeadWriter::new(out);
    w.put(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ");
    w.put_decimal(body_len);
    w.put(if keep_alive {
        b"\r\n\r\n" as &[u8]
    } else {
        b"\r\nConnection: close\r\n\r\n"
    });
    w.len()
}

/// Whether a response with `status` ends the connection whatever the request asked: the
/// request was not read whole (401 is sent from the head: we authenticate before reading the
/// body; 405, 408, 411, 413, 431), so the next request cannot be found. A 400 closes only when
/// the head was malformed, which the caller knows (`keep_alive` false).
pub fn status_closes(status: u16) -> bool {
    matches!(status, 401 | 405 | 408 | 411 | 413 | 431)
}

/// Writes a complete bodyless error response (`Content-Length: 0`), with `Connection: close`
/// when `keep_alive` is false or the status always closes ([`status_closes`]).
///
/// # Panics
///
/// If `status` is not three digits, or `out` is shorter than [`RESPONSE_HEAD_LEN_MAX`].
pub fn write_status(status: u16, keep_alive: bool, out: &mut [u8]) -> usize {
    let mut w = HeadWriter::new(out);
    w.put_status_line(status, reason(status));
    w.put(b"Content-Length: 0\r\n");
    if !keep_alive || status_closes(status) {
        w.put(b"Connection: close\r\n");
    }
    w.put(b"\r\n");
    w.len()
}

/// Bytes [`write_request_head`] writes.
pub fn request_head_len(path: &str, host: &str, token: &str, body_len: usize) -> usize {
    let digits = body_len.checked_ilog10().unwrap_or(0) as usize + 1;
    b"POST  HTTP/1.1\r\nHost: \r\nAuthorization: Bearer \r\nContent-Type: application/octet-stream\r\nAccept: application/octet-stream\r\nContent-Length: \r\n\r\n".len()
        + path.len()
        + host.len()
        + token.len()
        + digits
}

/// Writes the head of a POST carrying an ILP Prepare of `body_len` bytes to `path` (verbatim),
/// with `Authorization: Bearer <token>` (verbatim: tokens may contain `:`).
pub fn write_request_head(
    path: &str,
    host: &str,
    token: &str,
    body_len: usize,
    out: &mut [u8],
) -> usize {
    let mut w = HeadWriter::new(out);
    w.put(b"POST ");
    w.put(path.as_bytes());
    w.put(b" HTTP/1.1\r\nHost: ");
    w.put(host.as_bytes());
    w.put(b"\r\nAuthorization: Bearer ");
    w.put(token.as_bytes());
    w.put(b"\r\nContent-Type: application/octet-stream\r\nAccept: application/octet-stream\r\nContent-Length: ");
    w.put_decimal(body_len);
    w.put(b"\r\n\r\n");
    w.len()
}

/// The part of [`write_request_head`]'s head that does not change between requests to one
/// peer: everything up to the value of `Content-Length`. Built once per peer; a request is
/// then this, [`write_content_length`], and the body.
pub fn request_head_prefix(path: &str, host: &str, token: &str) -> Vec<u8> {
    let mut head = vec![0u8; request_head_len(path, host, token, 0)];
    let n = write_request_head(path, host, token, 0, &mut head);
    // Drop the "0\r\n\r\n" the zero length wrote.
    head.truncate(n - b"0\r\n\r\n".len());
    head
}

/// Writes the `Content-Length` value and the end of the head after a
/// [`request_head_prefix`]; returns its length (at most 24 bytes).
pub fn write_content_length(body_len: usize, out: &mut [u8; 24]) -> usize {
    let mut w = HeadWriter::new(out);
    w.put_decimal(body_len);
    w.put(b"\r\n\r\n");
    w.len()
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Bytes of the head; the body starts there.
    pub head_len: usize,
    /// Bytes of body that follow.
    pub body_len: usize,
    /// Whether the connection stays open.
    pub keep_alive: bool,
}

/// Parses a response head from the front of `buf`: `Ok(None)` until it is complete. A
/// response without `Content-Length` (or chunked) is refused: ILP servers always send one.
pub fn parse_response(buf: &[u8], body_len_max: usize) -> Result<Option<Response>, HttpError> {
    let mut headers = http1::headers::<HEADERS_MAX>();
    let parsed = http1::parse_response(buf, &mut headers, HEAD_LEN_MAX, LineEnds::Lenient);
    let Some(head) = parsed.map_err(head_error)? else {
        return Ok(None);
    };
    let framing = http1::framing(head.headers);
    Ok(Some(Response {
        status: head.status,
        head_len: head.len,
        body_len: body_len(&framing, body_len_max)?,
        keep_alive: framing.keep_alive(head.version),
    }))
}

/// What an HTTP answer to our POST means for the engine (RFC 35 "Response": 5xx is T00; the
/// other statuses are our mapping, see [`map_response`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200: the body is the ILP reply; hand it to the engine (which checks it, and answers
    /// T00 if it is not a Fulfill or Reject — see [`map_response`] for the T01 policy).
    Reply,
    /// Anything else: fail the Prepare with this reason.
    Fail(RejectReason),
}

/// Maps a response status to what the engine should hear: 200 → the reply; 401/403/404 →
/// F02; 429 → T05 (the next hop limits our rate: a Temporary code, so the sender may retry
/// later); 400/413 → F01; 5xx → T00; other codes → F02.
pub fn map_response(status: u16) -> Outcome {
    match RejectReason::from_http_status(status) {
        None => Outcome::Reply,
        Some(reason) => Outcome::Fail(reason),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_token_may_be_left_out_where_a_certificate_stands_for_the_peer() {
        let no_auth = b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_request(no_auth, 10).unwrap_err(),
            HttpError::Unauthorized
        );
        let r = parse_request_on(no_auth, 10, false).unwrap().unwrap();
        assert_eq!(r.token, b"");
        let mut memo = HeadMemo::default();
        for _ in 0..2 {
            let r = parse_request_memo_on(no_auth, 10, &mut memo, false)
                .unwrap()
                .unwrap();
            assert_eq!((r.token, r.body_len), (&b""[..], 0));
        }
        let with = b"POST / HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse_request_on(with, 10, false).unwrap().unwrap().token,
            b"t"
        );
    }

    #[test]
    fn a_memo_answers_for_an_identical_head_and_parses_any_other() {
        let head = |len: usize, token: &str| {
            format!(
                "POST /accounts/alice/ilp HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {token}\r\n\
                 Content-Length: {len}\r\n\r\n"
            )
        };
        let mut memo = HeadMemo::default();
        for (text, body) in [
            (head(3, "t1"), "abc"),
            (head(3, "t1"), "xyz"),
            (head(4, "t1"), "wxyz"),
            (head(4, "t2"), "wxyz"),
            (head(4, "t2"), "wxyz"),
        ] {
            let buf = [text.as_bytes(), body.as_bytes()].concat();
            let remembered = parse_request_memo(&buf, 64, &mut memo).unwrap().unwrap();
            let parsed = parse_request(&buf, 64).unwrap().unwrap();
            assert_eq!(remembered, parsed, "{text}");
            assert_eq!(&buf[parsed.head_len..], body.as_bytes());
        }
        // A partial head is parsed (and is not complete yet), whatever the memo holds.
        let partial = head(4, "t2");
        let partial = &partial.as_bytes()[..20];
        assert_eq!(parse_request_memo(partial, 64, &mut memo), Ok(None));
        // A refusal is not remembered: the same head is refused again.
        let big = head(65, "t2");
        for _ in 0..2 {
            let refused = parse_request_memo(big.as_bytes(), 64, &mut memo);
            assert_eq!(refused, Err(HttpError::BodyTooLarge));
        }
        let mut memo = HeadMemo::default();
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for _ in 0..2 {
            let remembered = parse_response_memo(response, 64, &mut memo).unwrap();
            assert_eq!(remembered, parse_response(response, 64).unwrap());
        }
    }

    /// Found by the `http_response` fuzz target: a complete head longer than `HEAD_LEN_MAX`
    /// was accepted when it arrived whole (a request head that long is refused with 431).
    #[test]
    fn a_response_head_over_the_limit_is_refused_even_when_complete() {
        let mut head = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
        head.resize(HEAD_LEN_MAX + 100, b'a');
        head.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        assert!(parse_response(&head, 65536).is_err());
    }

    const JS_REQUEST: &[u8] = b"POST / HTTP/1.1\r\nHost: 127.0.0.1:7770\r\nAuthorization: Bearer alice-secret\r\nContent-Type: application/ilp+octet-stream\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
    const RS_REQUEST: &[u8] = b"POST /accounts/alice/ilp HTTP/1.1\r\nhost: router\r\nauthorization: Bearer alice:secret:with:colons\r\ncontent-type: application/octet-stream\r\ncontent-length: 3\r\n\r\nabc";

    #[test]
    fn parses_js_and_rs_requests() {
        let r = parse_request(JS_REQUEST, 65536).unwrap().unwrap();
        assert_eq!(
            (r.path, r.token, r.body_len, r.keep_alive),
            ("/", &b"alice-secret"[..], 5, true)
        );
        assert_eq!(&JS_REQUEST[r.head_len..r.head_len + r.body_len], b"hello");
        let r = parse_request(RS_REQUEST, 65536).unwrap().unwrap();
        assert_eq!(r.token, b"alice:secret:with:colons");
        assert_eq!(r.account_from_path(), Some("alice"));
        assert!(r.keep_alive);
    }

    #[test]
    fn partial_heads_wait_and_bodies_are_not_needed() {
        for cut in 0..JS_REQUEST.len() - 5 {
            let head_done = JS_REQUEST[..cut].ends_with(b"\r\n\r\n");
            assert_eq!(
                parse_request(&JS_REQUEST[..cut], 65536).unwrap().is_some(),
                head_done,
                "cut {cut}"
            );
        }
        assert!(parse_request(&JS_REQUEST[..JS_REQUEST.len() - 5], 65536)
            .unwrap()
            .is_some());
    }

    #[test]
    fn refusals_have_their_status() {
        let cases: [(&[u8], u16); 8] = [
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
            (b"POST / HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n", 411),
            (
                b"POST / HTTP/1.1\r\nAuthorization: Bearer t\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
            ),
            (
                b"POST / HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 70000\r\n\r\n",
                413,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 401),
            (
                b"POST / HTTP/1.1\r\nAuthorization: Bearer \r\nContent-Length: 3\r\n\r\n",
                401,
            ),
            (
                b"POST / HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 3x\r\n\r\n",
                400,
            ),
            (b"\x16\x03\x01 not http\r\n\r\n", 400),
        ];
        for (request, status) in cases {
            let error = parse_request(request, 65536).unwrap_err();
            assert_eq!(
                error.status(),
                status,
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        let huge = [b"POST / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; HEAD_LEN_MAX]].concat();
        assert_eq!(
            parse_request(&huge, 65536).unwrap_err(),
            HttpError::HeadTooLarge
        );
    }

    /// One head limit for both directions: a response head over [`HEAD_LEN_MAX`] is refused
    /// whether it arrived whole or in pieces (it used to be taken when whole).
    #[test]
    fn response_heads_over_the_limit_are_refused_however_split() {
        let mut head = b"HTTP/1.1 200 OK\r\nX-Padding: ".to_vec();
        head.resize(HEAD_LEN_MAX + 50, b'a');
        head.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(parse_response(&head, 10), Err(HttpError::HeadTooLarge));
        assert_eq!(
            parse_response(&head[..HEAD_LEN_MAX], 10),
            Err(HttpError::HeadTooLarge)
        );
        assert_eq!(parse_response(&head[..HEAD_LEN_MAX - 1], 10), Ok(None));
    }

    #[test]
    fn bare_token_and_connection_close() {
        let r = parse_request(b"POST /x HTTP/1.1\r\nAuthorization: tok\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 10)
            .unwrap()
            .unwrap();
        assert_eq!(r.token, b"tok");
        assert!(!r.keep_alive);
        let r = parse_request(
            b"POST /x HTTP/1.0\r\nAuthorization: bearer tok\r\nContent-Length: 0\r\n\r\n",
            10,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.token, b"tok");
        assert!(!r.keep_alive, "HTTP/1.0 closes unless asked");
    }

    #[test]
    fn client_round_trip() {
        let mut out = [0u8; 512];
        let n = write_request_head(
            "/accounts/router/ilp",
            "peer:8080",
            "user:pass",
            33,
            &mut out,
        );
        assert_eq!(
            n,
            request_head_len("/accounts/router/ilp", "peer:8080", "user:pass", 33)
        );
        let mut request = out[..n].to_vec();
        request.extend_from_slice(&[7u8; 33]);
        let r = parse_request(&request, 65536).unwrap().unwrap();
        assert_eq!(
            (r.path, r.token, r.body_len),
            ("/accounts/router/ilp", &b"user:pass"[..], 33)
        );

        let n = write_response(41, true, &mut out);
        assert!(n <= RESPONSE_HEAD_LEN_MAX);
        let response = parse_response(&out[..n], 65536).unwrap().unwrap();
        assert_eq!(
            (
                response.status,
                response.body_len,
                response.keep_alive,
                response.head_len
            ),
            (200, 41, true, n)
        );
        let n = write_status(413, false, &mut out);
        let response = parse_response(&out[..n], 65536).unwrap().unwrap();
        assert_eq!(
            (response.status, response.body_len, response.keep_alive),
            (413, 0, false)
        );
    }

    #[test]
    fn prefix_and_length_make_the_same_head() {
        let mut whole = [0u8; 512];
        let n = write_request_head("/p", "h:1", "t:k", 12345, &mut whole);
        let mut length = [0u8; 24];
        let m = write_content_length(12345, &mut length);
        let joined = [
            request_head_prefix("/p", "h:1", "t:k"),
            length[..m].to_vec(),
        ]
        .concat();
        assert_eq!(joined, &whole[..n]);
    }

    #[test]
    fn outcomes_follow_the_policy() {
        assert_eq!(map_response(200), Outcome::Reply);
        assert_eq!(map_response(401), Outcome::Fail(RejectReason::Unreachable));
        assert_eq!(map_response(404), Outcome::Fail(RejectReason::Unreachable));
        assert_eq!(
            map_response(400),
            Outcome::Fail(RejectReason::InvalidPacket)
        );
        assert_eq!(
            map_response(413),
            Outcome::Fail(RejectReason::InvalidPacket)
        );
        assert_eq!(map_response(502), Outcome::Fail(RejectReason::Internal));
    }

    #[test]
    fn http_429_is_t05_rate_limited() {
        let Outcome::Fail(reason) = map_response(429) else {
            panic!("a 429 fails the Prepare");
        };
        assert_eq!(reason, RejectReason::RateLimited);
        assert_eq!(reason.code(), crate::wire::ErrorCode::T05_RATE_LIMITED);
        assert_eq!(reason.message(), b"rate limited");
    }

    /// Every status the server writes, with the request's `Connection` choice both ways: the
    /// head says `Connection: close` exactly when the connection ends after it.
    #[test]
    fn closing_statuses_say_connection_close() {
        let mut out = [0u8; RESPONSE_HEAD_LEN_MAX];
        for status in [400, 401, 404, 405, 408, 411, 413, 429, 431, 500, 502, 503] {
            for keep_alive in [true, false] {
                let n = write_status(status, keep_alive, &mut out);
                assert!(n <= RESPONSE_HEAD_LEN_MAX);
                let head = std::str::from_utf8(&out[..n]).unwrap();
                let closes = !keep_alive || matches!(status, 401 | 405 | 408 | 411 | 413 | 431);
                assert_eq!(
                    head.contains("\r\nConnection: close\r\n"),
                    closes,
                    "{status} keep_alive {keep_alive}: {head}"
                );
                let response = parse_response(&out[..n], 0).unwrap().unwrap();
                assert_eq!(
                    (response.status, response.body_len, response.keep_alive),
                    (status, 0, !closes),
                    "{head}"
                );
            }
        }
        let n = write_status(401, true, &mut out);
        assert_eq!(
            &out[..n],
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let n = write_status(408, true, &mut out);
        assert_eq!(
            &out[..n],
            b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        // A 200 closes only when the request asked.
        for keep_alive in [true, false] {
            let n = write_response(41, keep_alive, &mut out);
            let head = std::str::from_utf8(&out[..n]).unwrap();
            assert_eq!(head.contains("\r\nConnection: close\r\n"), !keep_alive);
        }
    }
}
