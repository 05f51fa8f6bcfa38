//! HTTP/1.1 heads, sans-IO, on `httparse`: the one place that reads and writes a request or
//! response head, for the WebSocket opening handshake ([`super::websocket`]) and ILP over HTTP
//! ([`super::http`]).
//!
//! # Contract
//!
//! - **Reading:** [`parse_request`] and [`parse_response`] read a head from the front of a
//!   buffer into the caller's header array (uninitialised: [`headers`]) and return `Ok(None)`
//!   until it is complete. A head is refused as [`HeadError::TooLarge`] once `len_max` bytes
//!   hold no complete head, and when it completes past `len_max` bytes (so the answer does not
//!   depend on how the head was split across reads). Bytes after the head (a body, frames,
//!   the next pipelined request) are not looked at.
//! - **Line ends:** [`LineEnds::Lenient`] is httparse's rule (a bare `\n` ends a line too, blank
//!   lines before the start line are skipped), which ILP over HTTP keeps.
//!   [`LineEnds::CrlfOnly`] is the WebSocket handshake's: the head ends at the first
//!   `\r\n\r\n`, and a bare `\r` or `\n`, or a blank line before the start line, is malformed.
//! - **Errors** say which line broke ([`HeadError::StartLine`] or [`HeadError::HeaderLine`],
//!   with httparse's reason), so each protocol maps them to its own answer. The start line is
//!   read first, so its fault wins; [`request_line`] and [`status_line`] read it alone, for a
//!   protocol that judges it (method, version, status) before a header line's fault.
//! - **Headers:** [`header`] (first value), [`has_token`] (comma lists such as
//!   `Connection: Upgrade, keep-alive`), [`content_length`] (all copies must agree),
//!   [`keep_alive`] (RFC 9112 §9.3). Values come trimmed from httparse; names compare
//!   ASCII case-insensitively.
//! - **Writing:** [`HeadWriter`] appends to a caller's slice; a slice too short is the caller's
//!   bug (a panic), as every writer here sizes its output from a documented maximum.
//!
//! # Non-goals
//!
//! Chunked bodies, trailers, HTTP/2, `Expect: 100-continue`, and any policy: which methods,
//! statuses and headers are acceptable is for the protocol on top.

use core::mem::MaybeUninit;

pub use httparse::Header;

/// What a head could not be read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// No complete head within `len_max` bytes, or a complete one longer than that.
    TooLarge,
    /// More header lines than the caller's array holds.
    TooManyHeaders,
    /// The request or status line is malformed (httparse's reason: `Version` for an HTTP
    /// version other than 1.0 and 1.1).
    StartLine(httparse::Error),
    /// A header line is malformed.
    HeaderLine(httparse::Error),
}

/// Which line ends a head may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnds {
    /// httparse's rule: `\r\n` or a bare `\n`; blank lines before the start line are skipped.
    Lenient,
    /// `\r\n` only: the head ends at the first `\r\n\r\n`; a bare `\r` or `\n`, or a blank line
    /// before the start line, is malformed.
    CrlfOnly,
}

/// A request head: views into the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead<'h, 'b> {
    /// The method, a token (e.g. `GET`, `POST`).
    pub method: &'b str,
    /// The request target as sent.
    pub target: &'b str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The header lines, in order.
    pub headers: &'h [Header<'b>],
    /// Bytes of the head, its blank line included: the body starts there.
    pub len: usize,
}

/// A response head: views into the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'h, 'b> {
    /// The status code (three digits).
    pub status: u16,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The header lines, in order.
    pub headers: &'h [Header<'b>],
    /// Bytes of the head, its blank line included: the body starts there.
    pub len: usize,
}

/// An uninitialised header array for [`parse_request`] and [`parse_response`]: nothing is
/// written to it until a head is parsed.
pub const fn headers<'b, const N: usize>() -> [MaybeUninit<Header<'b>>; N] {
    [const { MaybeUninit::uninit() }; N]
}

/// Reads a request head from the front of `buf` (see the module's contract).
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [MaybeUninit<Header<'b>>],
    len_max: usize,
    line_ends: LineEnds,
) -> Result<Option<RequestHead<'h, 'b>>, HeadError> {
    let window = match frame(buf, len_max, line_ends) {
        Ok(Some(window)) => window,
        Ok(None) => return Ok(None),
        // The request line is read before the header lines: its fault is the one to report.
        Err(e @ HeadError::HeaderLine(_)) => return Err(request_line(buf).err().unwrap_or(e)),
        Err(e) => return Err(e),
    };
    let mut request = httparse::Request::new(&mut []);
    let parsed = request.parse_with_uninit_headers(window, headers);
    let Some(len) = complete(
        parsed,
        window.len(),
        len_max,
        line_ends,
        is_start_line_error,
    )?
    else {
        return Ok(None);
    };
    // Complete: httparse has filled in the start line.
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(HeadError::StartLine(httparse::Error::Token));
    };
    Ok(Some(RequestHead {
        method,
        target,
        version,
        headers: request.headers,
        len,
    }))
}

/// Reads a response head from the front of `buf` (see the module's contract).
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [MaybeUninit<Header<'b>>],
    len_max: usize,
    line_ends: LineEnds,
) -> Result<Option<ResponseHead<'h, 'b>>, HeadError> {
    let window = match frame(buf, len_max, line_ends) {
        Ok(Some(window)) => window,
        Ok(None) => return Ok(None),
        // The status line is read before the header lines: its fault is the one to report.
        Err(e @ HeadError::HeaderLine(_)) => return Err(status_line(buf).err().unwrap_or(e)),
        Err(e) => return Err(e),
    };
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        window,
        headers,
    );
    let Some(len) = complete(
        parsed,
        window.len(),
        len_max,
        line_ends,
        is_status_line_error,
    )?
    else {
        return Ok(None);
    };
    let (Some(status), Some(version)) = (response.code, response.version) else {
        return Err(HeadError::StartLine(httparse::Error::Status));
    };
    Ok(Some(ResponseHead {
        status,
        version,
        headers: response.headers,
        len,
    }))
}

/// A request line read alone ([`request_line`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'b> {
    /// The method, a token.
    pub method: &'b str,
    /// The request target as sent.
    pub target: &'b str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
}

/// A status line read alone ([`status_line`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLine {
    /// The status code (three digits).
    pub status: u16,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
}

/// Reads only the request line at the front of `buf`, up to its first `\n`: for a protocol
/// that judges the request line before the header lines, when [`parse_request`] refused a
/// header line. An incomplete line is [`HeadError::StartLine`] too.
pub fn request_line(buf: &[u8]) -> Result<RequestLine<'_>, HeadError> {
    let mut request = httparse::Request::new(&mut []);
    // With no room for headers, a good line ends in `Partial` (or `Complete` with none).
    request
        .parse(first_line(buf))
        .map_err(HeadError::StartLine)?;
    match (request.method, request.path, request.version) {
        (Some(method), Some(target), Some(version)) => Ok(RequestLine {
            method,
            target,
            version,
        }),
        _ => Err(HeadError::StartLine(httparse::Error::NewLine)),
    }
}

/// Reads only the status line at the front of `buf`, as [`request_line`] does for requests.
pub fn status_line(buf: &[u8]) -> Result<StatusLine, HeadError> {
    let mut response = httparse::Response::new(&mut []);
    response
        .parse(first_line(buf))
        .map_err(HeadError::StartLine)?;
    match (response.code, response.version) {
        (Some(status), Some(version)) => Ok(StatusLine { status, version }),
        _ => Err(HeadError::StartLine(httparse::Error::NewLine)),
    }
}

/// `buf` up to and with its first `\n` (all of it without one).
fn first_line(buf: &[u8]) -> &[u8] {
    let end = buf
        .iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |at| at + 1);
    &buf[..end]
}

/// What httparse is given: all of `buf` (lenient), or the head up to its first `\r\n\r\n`
/// after checking its line ends (CRLF only). `None`: not complete yet.
fn frame(buf: &[u8], len_max: usize, line_ends: LineEnds) -> Result<Option<&[u8]>, HeadError> {
    match line_ends {
        LineEnds::Lenient => Ok(Some(buf)),
        LineEnds::CrlfOnly => {
            let window = &buf[..buf.len().min(len_max)];
            let Some(at) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
                return match buf.len() >= len_max {
                    true => Err(HeadError::TooLarge),
                    false => Ok(None),
                };
            };
            let head = &buf[..at + 4];
            check_crlf_only(head)?;
            Ok(Some(head))
        }
    }
}

/// A head ending in `\r\n\r\n` whose every `\r` is followed by `\n` and every `\n` preceded by
/// `\r`, and which does not start with a blank line; an error names the line at fault.
fn check_crlf_only(head: &[u8]) -> Result<(), HeadError> {
    // The head ends in "\r\n\r\n", so there is a first "\r\n".
    let start_line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let fault = |at: usize| {
        let error = httparse::Error::NewLine;
        Err(match at <= start_line_end {
            true => HeadError::StartLine(error),
            false => HeadError::HeaderLine(error),
        })
    };
    if start_line_end == 0 {
        return fault(0);
    }
    for (at, &b) in head.iter().enumerate() {
        let bare_cr = b == b'\r' && head.get(at + 1) != Some(&b'\n');
        let bare_lf = b == b'\n' && (at == 0 || head[at - 1] != b'\r');
        if bare_cr || bare_lf {
            return fault(at);
        }
    }
    Ok(())
}

/// httparse's answer as a head length, with the `len_max` rule. With CRLF-only line ends the
/// window is exactly one head, so an incomplete answer means a malformed one.
fn complete(
    parsed: httparse::Result<usize>,
    window_len: usize,
    len_max: usize,
    line_ends: LineEnds,
    is_start_line: fn(httparse::Error) -> bool,
) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(len)) if len > len_max => Err(HeadError::TooLarge),
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) if line_ends == LineEnds::CrlfOnly => {
            Err(HeadError::HeaderLine(httparse::Error::NewLine))
        }
        Ok(httparse::Status::Partial) if window_len >= len_max => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(e) if is_start_line(e) => Err(HeadError::StartLine(e)),
        Err(e) => Err(HeadError::HeaderLine(e)),
    }
}

/// The errors httparse reports from a request line (`NewLine` also from a bare `\r` in a
/// header line, which only the lenient rule lets through to httparse).
fn is_start_line_error(e: httparse::Error) -> bool {
    matches!(
        e,
        httparse::Error::Token | httparse::Error::Version | httparse::Error::NewLine
    )
}

/// The errors httparse reports from a status line.
fn is_status_line_error(e: httparse::Error) -> bool {
    matches!(e, httparse::Error::Version | httparse::Error::Status)
}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

/// The first value of header `name` (ASCII case-insensitive).
pub fn header<'b>(headers: &[Header<'b>], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Does the comma-separated `value` hold `token` (ASCII case-insensitive)? As in
/// `Connection: keep-alive, Upgrade`.
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Why a `Content-Length` cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthError {
    /// Not digits, or copies that disagree (RFC 9112 §6.3).
    Malformed,
    /// More than `usize` holds.
    Overflow,
}

/// The body length `Content-Length` says: `None` without one. Every copy must be digits only
/// and all must agree.
pub fn content_length(headers: &[Header<'_>]) -> Result<Option<usize>, LengthError> {
    framing(headers).content_length
}

/// Whether the connection stays open after this message (RFC 9112 §9.3): `Connection: close`
/// ends it, `Connection: keep-alive` keeps it, otherwise HTTP/1.1 keeps it and 1.0 ends it.
/// Only the first `Connection` header is read.
pub fn keep_alive(version: u8, headers: &[Header<'_>]) -> bool {
    framing(headers).keep_alive(version)
}

/// The headers that frame a message (and carry ILP over HTTP's token), found in one pass
/// over the head: each header name is compared once, and only with the field of its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing<'b> {
    /// `Content-Length` (every copy digits only, all agreeing); `None` without one.
    pub content_length: Result<Option<usize>, LengthError>,
    /// A `Transfer-Encoding` header is present.
    pub transfer_encoding: bool,
    /// The first `Authorization` value.
    pub authorization: Option<&'b [u8]>,
    /// The first `Connection` value.
    pub connection: Option<&'b [u8]>,
}

impl Framing<'_> {
    /// Whether the connection stays open after this message (see [`keep_alive`]).
    pub fn keep_alive(&self, version: u8) -> bool {
        match self.connection {
            Some(v) if has_token(v, "close") => false,
            Some(v) if has_token(v, "keep-alive") => true,
            _ => version == 1,
        }
    }
}

/// Reads [`Framing`] from `headers` in one pass.
pub fn framing<'b>(headers: &[Header<'b>]) -> Framing<'b> {
    let mut found = Framing {
        content_length: Ok(None),
        transfer_encoding: false,
        authorization: None,
        connection: None,
    };
    for h in headers {
        let name = h.name.as_bytes();
        // Length and first letter first: most headers (Host, Content-Type, Accept, Date)
        // are passed over without a byte-by-byte comparison.
        match (name.len(), name.first().map_or(0, u8::to_ascii_lowercase)) {
            (14, b'c') if name.eq_ignore_ascii_case(b"content-length") => {
                found.content_length = match (found.content_length, parse_length(h.value)) {
                    (Err(e), _) | (_, Err(e)) => Err(e),
                    (Ok(Some(a)), Ok(b)) if a != b => Err(LengthError::Malformed),
                    (Ok(_), Ok(b)) => Ok(Some(b)),
                };
            }
            (17, b't') if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                found.transfer_encoding = true
            }
            (13, b'a')
                if found.authorization.is_none() && name.eq_ignore_ascii_case(b"authorization") =>
            {
                found.authorization = Some(h.value)
            }
            (10, b'c')
                if found.connection.is_none() && name.eq_ignore_ascii_case(b"connection") =>
            {
                found.connection = Some(h.value)
            }
            _ => {}
        }
    }
    found
}

/// One `Content-Length` value: digits only (after trimming blanks), within `usize`.
fn parse_length(value: &[u8]) -> Result<usize, LengthError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(LengthError::Malformed);
    }
    digits.iter().try_fold(0usize, |value, &d| {
        value
            .checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(d - b'0')))
            .ok_or(LengthError::Overflow)
    })
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Appends the bytes of a head into a caller's slice.
///
/// # Panics
///
/// Each method, if the slice is too short: sizing it is the caller's job.
#[derive(Debug)]
pub struct HeadWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> HeadWriter<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `bytes`.
    pub fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        assert!(end <= self.buf.len(), "http1: output buffer too small");
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }

    /// Appends `n` in decimal.
    pub fn put_decimal(&mut self, mut n: usize) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            // A remainder of 10 is one digit.
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[at..]);
    }

    /// Appends `HTTP/1.1 <status> <reason>\r\n`.
    ///
    /// # Panics
    ///
    /// Also if `status` is not three digits or `reason` holds a control character.
    pub fn put_status_line(&mut self, status: u16, reason: &str) {
        assert!(
            (100..=999).contains(&status),
            "HTTP status {status} is not 3 digits"
        );
        assert!(
            !reason.bytes().any(|b| b.is_ascii_control()),
            "HTTP reason phrase has a control character"
        );
        self.put(b"HTTP/1.1 ");
        self.put_decimal(usize::from(status));
        self.put(b" ");
        self.put(reason.as_bytes());
        self.put(b"\r\n");
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn request(buf: &[u8], line_ends: LineEnds) -> Result<Option<(String, usize)>, HeadError> {
        let mut headers = headers::<8>();
        parse_request(buf, &mut headers, 64, line_ends)
            .map(|head| head.map(|h| (h.target.to_owned(), h.len)))
    }

    #[test]
    fn lenient_and_crlf_only_framing() {
        let crlf = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nbody";
        for line_ends in [LineEnds::Lenient, LineEnds::CrlfOnly] {
            assert_eq!(
                request(crlf, line_ends),
                Ok(Some(("/a".to_owned(), crlf.len() - 4)))
            );
            for cut in 0..crlf.len() - 4 {
                assert_eq!(request(&crlf[..cut], line_ends), Ok(None), "{cut}");
            }
        }
        // A bare LF ends a line for httparse, not for the handshake.
        let lf = b"GET /a HTTP/1.1\nHost: h\n\n";
        assert_eq!(
            request(lf, LineEnds::Lenient),
            Ok(Some(("/a".to_owned(), lf.len())))
        );
        assert_eq!(request(lf, LineEnds::CrlfOnly), Ok(None));
        let mixed = b"GET /a HTTP/1.1\r\nHost: h\nX: y\r\n\r\n";
        assert_eq!(
            request(mixed, LineEnds::CrlfOnly),
            Err(HeadError::HeaderLine(httparse::Error::NewLine))
        );
        let cr = b"GET /a\r HTTP/1.1\r\n\r\n";
        assert_eq!(
            request(cr, LineEnds::CrlfOnly),
            Err(HeadError::StartLine(httparse::Error::NewLine))
        );
        // httparse skips a blank line before the request line; the handshake does not.
        let blank = b"\r\nGET /a HTTP/1.1\r\n\r\n";
        assert!(request(blank, LineEnds::Lenient).unwrap().is_some());
        assert_eq!(
            request(blank, LineEnds::CrlfOnly),
            Err(HeadError::StartLine(httparse::Error::NewLine))
        );
    }

    #[test]
    fn len_max_whatever_the_split() {
        let head =
            b"GET / HTTP/1.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        assert!(head.len() > 64);
        for line_ends in [LineEnds::Lenient, LineEnds::CrlfOnly] {
            assert_eq!(request(&head[..63], line_ends), Ok(None));
            assert_eq!(request(&head[..64], line_ends), Err(HeadError::TooLarge));
            assert_eq!(request(head, line_ends), Err(HeadError::TooLarge));
        }
        let mut headers = headers::<1>();
        assert_eq!(
            parse_request(
                b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n",
                &mut headers,
                64,
                LineEnds::Lenient
            ),
            Err(HeadError::TooManyHeaders)
        );
    }

    #[test]
    fn errors_name_their_line() {
        assert_eq!(
            request(b"GET  / HTTP/1.1\r\n\r\n", LineEnds::CrlfOnly),
            Err(HeadError::StartLine(httparse::Error::Token))
        );
        assert_eq!(
            request(b"GET / HTTP/2.0\r\n\r\n", LineEnds::CrlfOnly),
            Err(HeadError::StartLine(httparse::Error::Version))
        );
        assert_eq!(
            request(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", LineEnds::CrlfOnly),
            Err(HeadError::HeaderLine(httparse::Error::HeaderName))
        );
        assert_eq!(
            request(b"GET / HTTP/1.1\r\nHost: \x01\r\n\r\n", LineEnds::CrlfOnly),
            Err(HeadError::HeaderLine(httparse::Error::HeaderValue))
        );
        let mut headers = headers::<4>();
        let response = |buf: &'static [u8], headers: &mut [MaybeUninit<Header<'static>>]| {
            parse_response(buf, headers, 64, LineEnds::CrlfOnly).map(|r| r.map(|r| r.status))
        };
        assert_eq!(
            response(b"HTTP/1.1 101\r\n\r\n", &mut headers),
            Ok(Some(101))
        );
        assert_eq!(
            response(b"HTTP/1.1 10x OK\r\n\r\n", &mut headers),
            Err(HeadError::StartLine(httparse::Error::Status))
        );
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nX y\r\n\r\n", &mut headers),
            Err(HeadError::HeaderLine(httparse::Error::HeaderName))
        );
    }

    #[test]
    fn start_lines_alone_and_first() {
        assert_eq!(
            request_line(b"GET /x HTTP/1.0\r\nHost"),
            Ok(RequestLine {
                method: "GET",
                target: "/x",
                version: 0
            })
        );
        assert_eq!(
            request_line(b"GET /x"),
            Err(HeadError::StartLine(httparse::Error::NewLine))
        );
        assert_eq!(
            status_line(b"HTTP/1.1 426 Upgrade Required\r\n"),
            Ok(StatusLine {
                status: 426,
                version: 1
            })
        );
        assert_eq!(
            status_line(b"GET / HTTP/1.1\r\n"),
            Err(HeadError::StartLine(httparse::Error::Version))
        );
        // A bare LF in a header line of a head whose start line is bad: the start line's
        // fault is reported, as it is read first.
        let mut headers = headers::<4>();
        assert_eq!(
            parse_response(
                b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
                &mut headers,
                64,
                LineEnds::CrlfOnly
            ),
            Err(HeadError::StartLine(httparse::Error::Version))
        );
    }

    #[test]
    fn header_helpers() {
        let mut array = headers::<8>();
        let head = parse_request(
            b"POST / HTTP/1.0\r\nconnection: Upgrade, Keep-Alive\r\nContent-Length: 12\r\n\
              content-length: 12\r\n\r\n",
            &mut array,
            1024,
            LineEnds::Lenient,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            header(head.headers, "Connection"),
            Some(&b"Upgrade, Keep-Alive"[..])
        );
        assert_eq!(header(head.headers, "Host"), None);
        assert!(has_token(b"Upgrade, Keep-Alive", "upgrade"));
        assert!(has_token(b" a ,keep-alive", "KEEP-ALIVE"));
        assert!(!has_token(b"keep-alive-ish", "keep-alive"));
        assert_eq!(content_length(head.headers), Ok(Some(12)));
        assert!(
            keep_alive(head.version, head.headers),
            "1.0 asked to keep it"
        );

        let length = |value: &'static [u8]| {
            content_length(&[Header {
                name: "Content-Length",
                value,
            }])
        };
        assert_eq!(length(b"0"), Ok(Some(0)));
        assert_eq!(length(b"+1"), Err(LengthError::Malformed));
        assert_eq!(length(b""), Err(LengthError::Malformed));
        assert_eq!(
            length(b"99999999999999999999999"),
            Err(LengthError::Overflow)
        );
        let twice = [
            Header {
                name: "content-length",
                value: b"1",
            },
            Header {
                name: "Content-Length",
                value: b"2",
            },
        ];
        assert_eq!(content_length(&twice), Err(LengthError::Malformed));
        assert_eq!(content_length(&[]), Ok(None));
        assert!(keep_alive(1, &[]));
        assert!(!keep_alive(0, &[]));
        let close = [Header {
            name: "Connection",
            value: b"close",
        }];
        assert!(!keep_alive(1, &close));
    }

    #[test]
    fn framing_reads_each_header_once_and_keeps_the_first_of_each() {
        let h = |name, value: &'static [u8]| Header { name, value };
        let headers = [
            h("Host", b"x"),
            h("AUTHORIZATION", b"Bearer one"),
            h("Authorization", b"Bearer two"),
            h("content-length", b"7"),
            h("Content-Length", b" 7 "),
            h("Connection", b"close"),
            h("Connection", b"keep-alive"),
            // Same lengths as the names it looks for, other names.
            h("content-lengtx", b"9"),
            h("authorizatiox", b"Bearer three"),
        ];
        let found = framing(&headers);
        assert_eq!(found.content_length, Ok(Some(7)), "copies that agree");
        assert_eq!(found.authorization, Some(&b"Bearer one"[..]));
        assert!(!found.keep_alive(1), "the first Connection header decides");
        assert!(!found.transfer_encoding);
        let chunked = framing(&[h("Transfer-Encoding", b"chunked")]);
        assert!(chunked.transfer_encoding);
        assert_eq!(chunked.content_length, Ok(None));
        let bad_then_good = framing(&[h("Content-Length", b"x"), h("Content-Length", b"1")]);
        assert_eq!(bad_then_good.content_length, Err(LengthError::Malformed));
    }

    #[test]
    fn writer() {
        let mut out = [0u8; 96];
        let mut w = HeadWriter::new(&mut out);
        assert!(w.is_empty());
        w.put_status_line(426, "Upgrade Required");
        w.put(b"Content-Length: ");
        w.put_decimal(0);
        w.put(b" ");
        w.put_decimal(usize::MAX);
        let n = w.len();
        assert_eq!(
            &out[..n],
            b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0 18446744073709551615"
        );
    }
}
