//! The admin server's HTTP vocabulary, sans-IO: what a handler receives ([`Request`]) and
//! returns ([`Response`]), how a request head becomes a `Request`, how a response head is
//! written, and the bearer-token check.
//!
//! # Contract
//!
//! - **Target**: origin form only (`/path?query`); the absolute form and `*` are refused as
//!   malformed (400). [`Request::path`] is the path as sent, *not* percent-decoded, so `%2F`
//!   never turns into a segment separator behind the handler's back ([`percent_decode`] is
//!   there for a handler that wants a decoded segment). [`Request::query`] is split on `&`
//!   and the first `=`, with `+` read as a space and `%XX` decoded; a malformed escape or a
//!   result that is not UTF-8 is malformed (400).
//! - **Headers**: names lower-cased, values as UTF-8 (lossy), in order. `Authorization` is
//!   dropped once checked, so a handler cannot log the token by accident.
//! - **Responses**: a status outside 200..=599 from a handler is written as 500 (a 1xx would
//!   break the framing). Every response carries `Content-Length`, `Cache-Control: no-store`
//!   and `Connection: close`.
//! - **Tokens** (`Token`): the configured token is kept as its SHA-256 digest, and a
//!   presented token is hashed and compared with it in constant time
//!   ([`crate::link::auth::constant_time_eq`] over the two 32-byte digests). Both digests
//!   always have the same length, so neither the position of the first wrong byte nor the
//!   configured token's length shows in the time taken; only the presented token's own length
//!   does (hashing it), which the client knows anyway.

use core::fmt;

use sha2::{Digest, Sha256};

use super::prometheus::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::link::auth::constant_time_eq;
use crate::link::http1::{Header, RequestHead};

/// A request as the handler sees it (see the module docs for what each field holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method as sent (`GET`, `POST`, …): methods are case-sensitive.
    pub method: String,
    /// The path, up to `?`, not percent-decoded.
    pub path: String,
    /// The query's `name=value` pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Header names (lower-case) and values, in order, without `Authorization`.
    pub headers: Vec<(String, String)>,
    /// The body (at most [`super::server::BODY_LEN_MAX`] bytes).
    pub body: Vec<u8>,
}

/// A request target that is not `/path?query` with valid escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTarget;

impl fmt::Display for BadTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bad request target")
    }
}

impl std::error::Error for BadTarget {}

impl Request {
    /// A request with no headers and no body, for a handler's own tests.
    pub fn new(method: &str, target: &str) -> Result<Request, BadTarget> {
        let (path, query) = split_target(target)?;
        Ok(Request {
            method: method.to_owned(),
            path,
            query,
            headers: Vec::new(),
            body: Vec::new(),
        })
    }

    /// The first value of header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Builds the handler's request from a parsed head and its body.
pub(super) fn request_from_head(
    head: &RequestHead<'_, '_>,
    body: Vec<u8>,
) -> Result<Request, BadTarget> {
    let (path, query) = split_target(head.target)?;
    let headers = head
        .headers
        .iter()
        .filter(|h| !h.name.eq_ignore_ascii_case("authorization"))
        .map(|h: &Header<'_>| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Ok(Request {
        method: head.method.to_owned(),
        path,
        query,
        headers,
        body,
    })
}

/// Splits an origin-form target into its path and decoded query pairs.
fn split_target(target: &str) -> Result<(String, Vec<(String, String)>), BadTarget> {
    if !target.starts_with('/') {
        return Err(BadTarget);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((form_decode(name)?, form_decode(value)?));
    }
    Ok((path.to_owned(), pairs))
}

/// A query component: `+` is a space, then [`percent_decode`].
fn form_decode(s: &str) -> Result<String, BadTarget> {
    match s.contains('+') {
        true => percent_decode(&s.replace('+', " ")),
        false => percent_decode(s),
    }
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); [`BadTarget`] on a malformed escape or a result
/// that is not UTF-8. `+` is left alone.
pub fn percent_decode(s: &str) -> Result<String, BadTarget> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&h| hex_value(h));
            let lo = bytes.get(i + 2).and_then(|&l| hex_value(l));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(BadTarget);
            };
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| BadTarget)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// What the handler answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (200..=599; anything else is sent as 500).
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// `application/json`: `value` serialised.
    pub fn json(status: u16, value: serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            // Serialising a `Value` cannot fail: its map keys are strings.
            body: serde_json::to_vec(&value).unwrap_or_default(),
        }
    }

    /// `{"error": message}` as JSON.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, serde_json::json!({ "error": message }))
    }

    /// `text/plain; charset=utf-8`.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    /// A 200 with a Prometheus exposition (`text/plain; version=0.0.4; charset=utf-8`).
    pub fn metrics(body: String) -> Response {
        Response {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body: body.into_bytes(),
        }
    }
}

/// The head of `response` (the status mapped as the module docs say), with `extra` header
/// lines (each ending in `\r\n`) before the blank line.
pub(super) fn response_head(response: &Response, extra: &str) -> String {
    let status = match response.status {
        200..=599 => response.status,
        _ => 500,
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n",
        reason = reason(status),
        content_type = response.content_type,
        len = response.body.len(),
    )
}

/// The reason phrase of common statuses; others get an empty one (RFC 9112 §4 allows it).
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The configured admin token, kept as its SHA-256 digest (see the module docs).
#[derive(Clone)]
pub(super) struct Token {
    digest: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    pub(super) fn new(token: &str) -> Token {
        Token {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Does the `Authorization` header value carry this token as `Bearer <token>`? The
    /// scheme is case-insensitive (RFC 9110 §11.1); blanks around the token are ignored.
    pub(super) fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let presented = authorization.and_then(bearer).unwrap_or(b"");
        // Hash and compare even when nothing was presented, so a missing header costs the
        // same as a wrong one.
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let equal = constant_time_eq(&digest, &self.digest);
        equal && !presented.is_empty()
    }
}

/// The credentials of `Bearer <token>`; `None` for another scheme or no token.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme = value.get(..6)?;
    let rest = value.get(6..)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !matches!(rest.first(), Some(b' ' | b'\t')) {
        return None;
    }
    Some(rest.trim_ascii()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn target_split_and_decoded() {
        let r = Request::new("GET", "/peers/a%2Fb?x=1&name=al+ice%21&flag&=v&&").expect("ok");
        assert_eq!(r.path, "/peers/a%2Fb");
        let q: Vec<(&str, &str)> = r.query.iter().map(|(a, b)| (&**a, &**b)).collect();
        assert_eq!(
            q,
            [("x", "1"), ("name", "al ice!"), ("flag", ""), ("", "v")]
        );
        assert_eq!(r.param("name"), Some("al ice!"));
        assert_eq!(r.param("nope"), None);
        assert_eq!(Request::new("GET", "/").expect("ok").query, []);
    }

    #[test]
    fn bad_targets() {
        for target in [
            "*",
            "http://host/x",
            "",
            "/x?a=%",
            "/x?a=%4",
            "/x?a=%zz",
            "/x?a=%ff",
        ] {
            assert_eq!(Request::new("GET", target), Err(BadTarget), "{target}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%C3%A9+").as_deref(), Ok("a bé+"));
        assert_eq!(percent_decode("%E2%82"), Err(BadTarget));
    }

    #[test]
    fn headers_are_lowercased_and_authorization_dropped() {
        let mut headers = crate::link::http1::headers::<8>();
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\nX-Thing: \xff1\r\n\r\n";
        let head = crate::link::http1::parse_request(
            raw,
            &mut headers,
            1024,
            crate::link::http1::LineEnds::Lenient,
        )
        .expect("parses")
        .expect("complete");
        let r = request_from_head(&head, b"body".to_vec()).expect("ok");
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.headers,
            [
                ("host".to_owned(), "a".to_owned()),
                ("x-thing".to_owned(), "\u{fffd}1".to_owned())
            ]
        );
        assert_eq!(r.header("HOST"), Some("a"));
        assert_eq!(r.header("authorization"), None);
        assert_eq!(r.body, b"body");
    }

    #[test]
    fn response_helpers_and_head() {
        let json = Response::json(200, serde_json::json!({"a": 1}));
        assert_eq!(json.content_type, "application/json");
        assert_eq!(json.body, br#"{"a":1}"#);
        let error = Response::error(404, "no such peer");
        assert_eq!(error.body, br#"{"error":"no such peer"}"#);
        let text = Response::text(200, "hi");
        assert_eq!(
            response_head(&text, ""),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n"
        );
        let metrics = Response::metrics(String::from("x 1\n"));
        assert_eq!(
            metrics.content_type,
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let odd = Response::text(99, "");
        assert!(
            response_head(&odd, "X: y\r\n").starts_with("HTTP/1.1 500 Internal Server Error\r\n")
        );
        assert!(response_head(&odd, "X: y\r\n").ends_with("Connection: close\r\nX: y\r\n\r\n"));
        let unnamed = Response::text(299, "");
        assert!(response_head(&unnamed, "").starts_with("HTTP/1.1 299 \r\n"));
    }

    #[test]
    fn bearer_tokens() {
        let token = Token::new("s3cret");
        assert!(token.accepts(Some(b"Bearer s3cret")));
        assert!(token.accepts(Some(b"bearer   s3cret  ")));
        assert!(token.accepts(Some(b"BEARER\ts3cret")));
        assert!(!token.accepts(None));
        assert!(!token.accepts(Some(b"")));
        assert!(!token.accepts(Some(b"Bearer")));
        assert!(!token.accepts(Some(b"Bearer ")));
        assert!(!token.accepts(Some(b"Bearers3cret")));
        assert!(!token.accepts(Some(b"Basic s3cret")));
        assert!(!token.accepts(Some(b"Bearer s3cre")));
        assert!(!token.accepts(Some(b"Bearer s3cret2")));
        assert!(!token.accepts(Some(b"s3cret")));
        // An empty configured token accepts nothing, not even an empty credential.
        assert!(!Token::new("").accepts(Some(b"Bearer ")));
        assert_eq!(format!("{token:?}"), "Token(..)");
    }
}
