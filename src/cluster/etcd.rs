//! A small blocking etcd v3 client over etcd's JSON gRPC gateway.
//!
//! Why not the `etcd-client` crate: its build script compiles etcd's `.proto` files and so
//! needs `protoc` installed at build time, which would break the project's build on a fresh
//! machine; and it brings tokio, tonic, hyper and h2 into a binary whose cores run glommio.
//! The router needs four calls (range, put, a one-key compare-and-put transaction, delete),
//! a few tens of times per second, from one control thread. etcd's JSON gateway (etcd 3.4
//! and later) serves exactly these as `POST /v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn` and
//! `/v3/kv/deleterange`, with the same linearizable semantics as the gRPC API. Keys and
//! values travel as base64, 64-bit integers as JSON strings, and fields holding their
//! default value are left out (`kvs` when empty, `mod_revision` when 0, `succeeded` when
//! false).
//!
//! Each call is one HTTP/1.1 request on a fresh `TcpStream` with `Connection: close`: simple,
//! and plenty for tens of calls per second. An attempt on one endpoint ends within about the
//! client's timeout (connect, write and read together). On a connect error, a timeout, an
//! I/O error, a malformed HTTP answer, an HTTP 5xx, or a gateway error carrying gRPC code 14
//! (Unavailable) or 4 (DeadlineExceeded), the call moves on to the next endpoint, round robin,
//! trying each endpoint at most once; the endpoint that last gave an answer is where the next
//! call starts. A member that has lost quorum either hangs (until this client's timeout or
//! etcd's own request timeout) or answers such an error.
//!
//! A write whose attempt timed out or failed after the request was sent may still have been
//! applied (or be applied later, when a member that had lost quorum regains it): a put or a
//! compare-and-put retried on the next endpoint can then find its own earlier write.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// etcd's client port, when an endpoint names none.
const DEFAULT_PORT: u16 = 2379;
/// The largest response accepted (head and body together).
const MAX_RESPONSE: usize = 16 << 20;
/// The most of an error body kept in [`EtcdError::Status`].
const MAX_ERROR_BODY: usize = 1024;

/// A blocking client for a list of etcd endpoints (members of one cluster).
#[derive(Debug)]
pub struct EtcdClient {
    /// `(host, port)`; an IPv6 host without its brackets.
    endpoints: Vec<(String, u16)>,
    /// The endpoint the next call starts at.
    current: usize,
    timeout: Duration,
    requests: u64,
}

/// One key as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The revision of the key's last change.
    pub mod_revision: i64,
    /// The revision at which the key was created.
    pub create_revision: i64,
}

/// What [`EtcdClient::compare_and_put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The value was written; `revision` is the store's revision after the write (the key's
    /// new `mod_revision`).
    Written { revision: i64 },
    /// The key's `mod_revision` was not the one given; nothing was written. `current` is the
    /// key as it is now (`None`: it does not exist).
    Conflict { current: Option<KeyValue> },
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdError {
    /// No endpoint answered in time or usably: each endpoint with its error, `; `-separated.
    Unreachable(String),
    /// An endpoint refused the request (an HTTP status other than 200 that is not worth
    /// trying elsewhere, such as a 4xx); `body` is the start of its answer.
    Status {
        endpoint: String,
        status: u16,
        body: String,
    },
    /// An endpoint answered something this client cannot read (the message names it).
    Protocol(String),
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdError::Unreachable(detail) => write!(f, "no etcd endpoint answered: {detail}"),
            EtcdError::Status {
                endpoint,
                status,
                body,
            } => {
                write!(f, "etcd at {endpoint} answered HTTP {status}: {body}")
            }
            EtcdError::Protocol(detail) => write!(f, "unreadable answer from etcd: {detail}"),
        }
    }
}

impl std::error::Error for EtcdError {}

/// Checks one endpoint URL as written in a config: `http://HOST[:PORT][/]`, HOST a name, an
/// IPv4 address or an IPv6 address in brackets, PORT 2379 when left out. Returns the host
/// (an IPv6 address without its brackets) and the port.
pub fn parse_endpoint(url: &str) -> Result<(String, u16), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "etcd endpoint {url:?} has no scheme: write it as http://HOST:PORT"
        ));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "etcd endpoint {url:?}: https is not supported yet, use http://"
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "etcd endpoint {url:?}: scheme {scheme:?} is not supported, use http://"
        ));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') || authority.contains('?') || authority.contains('#') {
        return Err(format!(
            "etcd endpoint {url:?}: only http://HOST:PORT, without a path"
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "etcd endpoint {url:?}: user names and passwords are not supported"
        ));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err(format!(
                "etcd endpoint {url:?}: no ']' after an IPv6 address"
            ));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "etcd endpoint {url:?}: {inside:?} is not an IPv6 address"
            ));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(format!("etcd endpoint {url:?}: junk after ']'")),
            },
        };
        (inside, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => {
                if port.contains(':') {
                    return Err(format!(
                        "etcd endpoint {url:?}: write an IPv6 address in brackets, \
                         http://[ADDRESS]:PORT"
                    ));
                }
                (host, Some(port))
            }
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("etcd endpoint {url:?} has no host"));
    }
    if !host.contains(':')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(format!(
            "etcd endpoint {url:?}: {host:?} is not a host name or address"
        ));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => {
                return Err(format!(
                    "etcd endpoint {url:?}: port {text:?} is not a number from 1 to 65535"
                ))
            }
        },
    };
    Ok((host.to_string(), port))
}

/// `host:port`, an IPv6 host in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl EtcdClient {
    /// A client for `endpoints` (URLs as [`parse_endpoint`] reads them), each attempt bounded
    /// by `timeout`. Connects to nothing yet.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<EtcdClient, String> {
        if endpoints.is_empty() {
            return Err("no etcd endpoints given".to_string());
        }
        if timeout.is_zero() {
            return Err("the etcd timeout must be above zero".to_string());
        }
        let endpoints = endpoints
            .iter()
            .map(|url| parse_endpoint(url))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(EtcdClient {
            endpoints,
            current: 0,
            timeout,
            requests: 0,
        })
    }

    /// The key, or `None` when it does not exist.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
        let answer = self.call("/v3/kv/range", &range_request(key))?;
        Ok(parse_range_response(&answer)
            .map_err(|e| self.protocol(e))?
            .into_iter()
            .next())
    }

    /// Every key starting with `prefix` (all keys for an empty prefix), sorted by key.
    pub fn range_prefix(&mut self, prefix: &[u8]) -> Result<Vec<KeyValue>, EtcdError> {
        let answer = self.call("/v3/kv/range", &range_prefix_request(prefix))?;
        let mut kvs = parse_range_response(&answer).map_err(|e| self.protocol(e))?;
        kvs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(kvs)
    }

    /// Writes the key; returns the store's revision after the write.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<i64, EtcdError> {
        let answer = self.call("/v3/kv/put", &put_request(key, value))?;
        header_revision(&answer).map_err(|e| self.protocol(e))
    }

    /// Writes `value` only if the key's mod_revision is `mod_revision` now (0: the key must
    /// not exist). One transaction: compare MOD == mod_revision; on success a put; on failure
    /// a range of the key, so a conflict returns the current value without another round trip.
    /// An `Err` does not prove that nothing was written (see the module doc): read the key
    /// again before deciding.
    pub fn compare_and_put(
        &mut self,
        key: &[u8],
        value: &[u8],
        mod_revision: i64,
    ) -> Result<CasOutcome, EtcdError> {
        let answer = self.call("/v3/kv/txn", &txn_request(key, value, mod_revision))?;
        parse_txn_response(&answer).map_err(|e| self.protocol(e))
    }

    /// Deletes the key (nothing happens when it does not exist).
    pub fn delete(&mut self, key: &[u8]) -> Result<(), EtcdError> {
        let answer = self.call("/v3/kv/deleterange", &delete_request(key))?;
        header_revision(&answer).map_err(|e| self.protocol(e))?;
        Ok(())
    }

    /// The endpoint now in use (the one the next call starts at), `host:port`.
    pub fn endpoint(&self) -> String {
        let (host, port) = &self.endpoints[self.current];
        host_port(host, *port)
    }

    /// HTTP requests attempted so far, on every endpoint, failed ones included.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    fn protocol(&self, detail: String) -> EtcdError {
        EtcdError::Protocol(format!("{}: {detail}", self.endpoint()))
    }

    /// POSTs `request` to `path`, failing over as the module doc says; the parsed JSON of the
    /// first 200 answer.
    fn call(&mut self, path: &str, request: &Value) -> Result<Value, EtcdError> {
        let body = request.to_string();
        let count = self.endpoints.len();
        let mut failures = Vec::with_capacity(count);
        for step in 0..count {
            let index = (self.current + step) % count;
            let (host, port) = self.endpoints[index].clone();
            let endpoint = host_port(&host, port);
            self.requests += 1;
            let reply = match exchange(&host, port, &endpoint, path, &body, self.timeout) {
                Ok(reply) => reply,
                Err(Attempt::Failed(error)) => {
                    failures.push(format!("{endpoint}: {error}"));
                    continue;
                }
                Err(Attempt::TooLarge) => {
                    self.current = index;
                    return Err(EtcdError::Protocol(format!(
                        "{endpoint}: the answer to {path} is over {MAX_RESPONSE} bytes"
                    )));
                }
            };
            if reply.status == 200 {
                self.current = index;
                return serde_json::from_slice(&reply.body).map_err(|e| {
                    EtcdError::Protocol(format!(
                        "{endpoint}: the answer to {path} is not JSON: {e}"
                    ))
                });
            }
            let gateway = GatewayError::parse(&reply.body);
            if reply.status >= 500 || gateway.as_ref().is_some_and(|g| g.retryable()) {
                let detail = match &gateway {
                    Some(g) => format!("{} (gRPC code {})", g.message, g.code),
                    None => excerpt(&reply.body),
                };
                failures.push(format!("{endpoint}: HTTP {}: {detail}", reply.status));
                continue;
            }
            self.current = index;
            return Err(EtcdError::Status {
                endpoint,
                status: reply.status,
                body: excerpt(&reply.body),
            });
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }
}

/// The start of a body, as text, for an error message.
fn excerpt(body: &[u8]) -> String {
    let end = body.len().min(MAX_ERROR_BODY);
    let mut text = String::from_utf8_lossy(&body[..end]).trim().to_string();
    if body.len() > end {
        text.push('…');
    }
    text
}

fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// The end of the range of keys starting with `prefix`, as etcdctl's `--prefix` computes it:
/// the prefix with its last byte below 0xff incremented and what follows dropped; `[0]` (no
/// end: every key from `prefix` on) when there is no such byte.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(at) => {
            let mut end = prefix[..=at].to_vec();
            end[at] += 1;
            end
        }
        None => vec![0],
    }
}

fn range_request(key: &[u8]) -> Value {
    json!({ "key": b64(key) })
}

fn range_prefix_request(prefix: &[u8]) -> Value {
    // An empty prefix means every key: etcd reads key "\0" with range_end "\0" as "all keys".
    let key: &[u8] = if prefix.is_empty() { &[0] } else { prefix };
    json!({ "key": b64(key), "range_end": b64(&prefix_end(prefix)) })
}

fn put_request(key: &[u8], value: &[u8]) -> Value {
    json!({ "key": b64(key), "value": b64(value) })
}

fn txn_request(key: &[u8], value: &[u8], mod_revision: i64) -> Value {
    json!({
        "compare": [{
            "target": "MOD",
            "key": b64(key),
            "result": "EQUAL",
            "mod_revision": mod_revision.to_string(),
        }],
        "success": [{ "request_put": { "key": b64(key), "value": b64(value) } }],
        "failure": [{ "request_range": { "key": b64(key) } }],
    })
}

fn delete_request(key: &[u8]) -> Value {
    json!({ "key": b64(key) })
}

/// An int64 field: a JSON string (as the gateway writes them) or number; 0 when absent.
fn int64(object: &Value, field: &str) -> Result<i64, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(text)) => text
            .parse()
            .map_err(|_| format!("{field} is {text:?}, not an integer")),
        Some(Value::Number(number)) => number
            .as_i64()
            .ok_or_else(|| format!("{field} is {number}, not an int64")),
        Some(other) => Err(format!("{field} is {other}, not an integer")),
    }
}

/// A base64 bytes field; empty when absent.
fn bytes(object: &Value, field: &str) -> Result<Vec<u8>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => BASE64
            .decode(text)
            .map_err(|e| format!("{field} is not base64: {e}")),
        Some(other) => Err(format!("{field} is {other}, not a base64 string")),
    }
}

fn header_revision(answer: &Value) -> Result<i64, String> {
    match answer.get("header") {
        Some(header) => int64(header, "revision").map_err(|e| format!("header: {e}")),
        None => Err(format!(
            "no header in {}",
            excerpt(answer.to_string().as_bytes())
        )),
    }
}

fn parse_kv(kv: &Value) -> Result<KeyValue, String> {
    if !kv.is_object() {
        return Err(format!("a key-value is {kv}, not an object"));
    }
    Ok(KeyValue {
        key: bytes(kv, "key")?,
        value: bytes(kv, "value")?,
        mod_revision: int64(kv, "mod_revision")?,
        create_revision: int64(kv, "create_revision")?,
    })
}

/// The `kvs` of a range response (absent when there are none).
fn parse_range_response(answer: &Value) -> Result<Vec<KeyValue>, String> {
    match answer.get("kvs") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(kvs)) => kvs.iter().map(parse_kv).collect(),
        Some(other) => Err(format!("kvs is {other}, not an array")),
    }
}

/// The outcome of the one-key transaction [`txn_request`] builds.
fn parse_txn_response(answer: &Value) -> Result<CasOutcome, String> {
    let succeeded = match answer.get("succeeded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(succeeded)) => *succeeded,
        Some(other) => return Err(format!("succeeded is {other}, not a boolean")),
    };
    if succeeded {
        return Ok(CasOutcome::Written {
            revision: header_revision(answer)?,
        });
    }
    let range = answer
        .get("responses")
        .and_then(|r| r.get(0))
        .and_then(|r| r.get("response_range"));
    let current = match range {
        Some(range) => parse_range_response(range)?.into_iter().next(),
        None => return Err("a failed transaction without its range response".to_string()),
    };
    Ok(CasOutcome::Conflict { current })
}

/// The error JSON the gateway answers with: `{"error":…,"message":…,"code":N}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GatewayError {
    /// The gRPC status code.
    code: i64,
    message: String,
}

impl GatewayError {
    fn parse(body: &[u8]) -> Option<GatewayError> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let code = value.get("code")?.as_i64()?;
        let message = value
            .get("message")
            .or_else(|| value.get("error"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Some(GatewayError { code, message })
    }

    /// Unavailable (no leader, request timed out, leader changed) or DeadlineExceeded: the
    /// member cannot serve now, another one may.
    fn retryable(&self) -> bool {
        matches!(self.code, 4 | 14)
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// Why one attempt on one endpoint gave no answer.
#[derive(Debug)]
enum Attempt {
    /// Connect, I/O, timeout or malformed HTTP: worth trying the next endpoint.
    Failed(String),
    /// The answer is over [`MAX_RESPONSE`].
    TooLarge,
}

/// One request on a fresh connection, within `timeout` in all.
fn exchange(
    host: &str,
    port: u16,
    endpoint: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<Reply, Attempt> {
    let deadline = Instant::now() + timeout;
    let describe = |what: &str, e: std::io::Error| {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            format!("{what} timed out after {timeout:?}")
        } else {
            format!("{what}: {e}")
        }
    };
    let failed = |what: &str, e: std::io::Error| Attempt::Failed(describe(what, e));
    let addresses: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Attempt::Failed(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut stream = None;
    let mut last_error = format!("{host} resolves to no address");
    for address in addresses {
        let left =
            remaining(deadline).ok_or_else(|| failed("connect", ErrorKind::TimedOut.into()))?;
        match TcpStream::connect_timeout(&address, left) {
            // A connect to a free loopback port can pick that very port as its source and
            // "succeed" (TCP simultaneous open): that is nobody listening.
            Ok(s) if s.local_addr().ok() == s.peer_addr().ok() => {
                last_error = "connect: connection refused (self-connect)".to_string();
            }
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = describe("connect", e),
        }
    }
    let Some(mut stream) = stream else {
        return Err(Attempt::Failed(last_error));
    };
    let _ = stream.set_nodelay(true);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let left = remaining(deadline).ok_or_else(|| failed("write", ErrorKind::TimedOut.into()))?;
    stream
        .set_write_timeout(Some(left))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| failed("write", e))?;
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let left = remaining(deadline).ok_or_else(|| failed("read", ErrorKind::TimedOut.into()))?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| failed("read", e))?;
        let read = match stream.read(&mut chunk) {
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed("read", e)),
        };
        buffer.extend_from_slice(&chunk[..read]);
        match parse_response(&buffer, read == 0) {
            Ok(Some(reply)) => return Ok(reply),
            Ok(None) if read == 0 => {
                return Err(Attempt::Failed(if buffer.is_empty() {
                    "the connection closed without an answer".to_string()
                } else {
                    "the connection closed in the middle of the answer".to_string()
                }))
            }
            Ok(None) => {}
            Err(ParseError::TooLarge) => return Err(Attempt::TooLarge),
            Err(ParseError::Malformed(e)) => {
                return Err(Attempt::Failed(format!("malformed HTTP answer: {e}")))
            }
        }
    }
}

/// Time left before `deadline`; `None` when it has passed.
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

#[derive(Debug, PartialEq, Eq)]
enum ParseError {
    Malformed(String),
    TooLarge,
}

/// The answer in `buffer` when it is complete (`None`: read on). `eof`: the peer has closed
/// the connection, which ends a body that has neither a length nor chunks.
fn parse_response(buffer: &[u8], eof: bool) -> Result<Option<Reply>, ParseError> {
    if buffer.len() > MAX_RESPONSE {
        return Err(ParseError::TooLarge);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ParseError::Malformed(e.to_string())),
    };
    let status = response
        .code
        .ok_or_else(|| ParseError::Malformed("no status code".to_string()))?;
    let mut content_length = None;
    let mut chunked = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).unwrap_or_default().trim();
            let length: usize = text
                .parse()
                .map_err(|_| ParseError::Malformed(format!("Content-Length {text:?}")))?;
            content_length = Some(length);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = String::from_utf8_lossy(header.value)
                .to_ascii_lowercase()
                .contains("chunked");
        }
    }
    let rest = &buffer[head_len..];
    let body = if chunked {
        match decode_chunked(rest)? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else if let Some(length) = content_length {
        if length > MAX_RESPONSE {
            return Err(ParseError::TooLarge);
        }
        if rest.len() < length {
            return Ok(None);
        }
        rest[..length].to_vec()
    } else if eof {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Reply { status, body }))
}

/// A chunked body (with any trailer after it), or `None` while it is incomplete. Walks the
/// chunk headers first and copies only once the body is whole.
fn decode_chunked(data: &[u8]) -> Result<Option<Vec<u8>>, ParseError> {
    let mut at = 0;
    let mut chunks = Vec::new();
    loop {
        let (header_len, size) = match httparse::parse_chunk_size(&data[at..]) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ParseError::Malformed("bad chunk size".to_string())),
        };
        at += header_len;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size)
            .ok()
            .filter(|&size| size <= MAX_RESPONSE)
            .ok_or(ParseError::TooLarge)?;
        if data.len() < at + size + 2 {
            return Ok(None);
        }
        if &data[at + size..at + size + 2] != b"\r\n" {
            return Err(ParseError::Malformed("no CRLF after a chunk".to_string()));
        }
        chunks.push(at..at + size);
        at += size + 2;
    }
    // The trailer: header lines up to an empty line.
    loop {
        let Some(end) = data[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        at += end + 2;
        if end == 0 {
            break;
        }
    }
    let mut body = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
    for chunk in chunks {
        body.extend_from_slice(&data[chunk]);
    }
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    fn ok(host: &str, port: u16) -> Result<(String, u16), String> {
        Ok((host.to_string(), port))
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:2379"),
            ok("127.0.0.1", 2379)
        );
        assert_eq!(
            parse_endpoint("http://127.0.0.1:2379/"),
            ok("127.0.0.1", 2379)
        );
        assert_eq!(
            parse_endpoint("HTTP://etcd-1.example_x.net:12379"),
            ok("etcd-1.example_x.net", 12379)
        );
        assert_eq!(parse_endpoint("http://etcd"), ok("etcd", 2379));
        assert_eq!(parse_endpoint("http://[::1]:2380"), ok("::1", 2380));
        assert_eq!(parse_endpoint("http://[fe80::1]"), ok("fe80::1", 2379));
        assert_eq!(host_port("::1", 2380), "[::1]:2380");
        assert_eq!(host_port("etcd", 2380), "etcd:2380");
    }

    #[test]
    fn bad_endpoints_are_refused_with_the_reason() {
        let https = parse_endpoint("https://127.0.0.1:2379").unwrap_err();
        assert!(https.contains("https is not supported yet"), "{https}");
        let bare = parse_endpoint("127.0.0.1:2379").unwrap_err();
        assert!(bare.contains("no scheme"), "{bare}");
        assert!(parse_endpoint("unix://x:1")
            .unwrap_err()
            .contains("not supported"));
        for port in [
            "http://h:0",
            "http://h:65536",
            "http://h:abc",
            "http://h:",
            "http://h:+5",
        ] {
            let error = parse_endpoint(port).unwrap_err();
            assert!(error.contains("1 to 65535"), "{port}: {error}");
        }
        for bad in [
            "http://",
            "http://:2379",
            "http://::1:2379",
            "http://[::1",
            "http://[nope]:1",
            "http://[::1]x",
            "http://h:2379/v3",
            "http://u:p@h:2379",
            "http://h h:1",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn new_checks_its_arguments() {
        let second = Duration::from_secs(1);
        assert!(EtcdClient::new(&[], second)
            .unwrap_err()
            .contains("no etcd endpoints"));
        let urls = ["http://a:1".to_string(), "https://b:2".to_string()];
        assert!(EtcdClient::new(&urls, second)
            .unwrap_err()
            .contains("https"));
        let client = EtcdClient::new(&urls[..1], second).unwrap();
        assert_eq!(client.endpoint(), "a:1");
        assert_eq!(client.requests(), 0);
        assert!(EtcdClient::new(&urls[..1], Duration::ZERO).is_err());
    }

    #[test]
    fn requests_are_the_gateways_json() {
        // "foo" is Zm9v, "bar" YmFy.
        assert_eq!(range_request(b"foo"), json!({"key": "Zm9v"}));
        assert_eq!(
            range_prefix_request(b"foo"),
            json!({"key": "Zm9v", "range_end": b64(b"fop")})
        );
        assert_eq!(
            range_prefix_request(b""),
            json!({"key": "AA==", "range_end": "AA=="})
        );
        assert_eq!(
            put_request(b"foo", b"bar"),
            json!({"key": "Zm9v", "value": "YmFy"})
        );
        assert_eq!(
            put_request(b"foo", b""),
            json!({"key": "Zm9v", "value": ""})
        );
        assert_eq!(delete_request(b"foo"), json!({"key": "Zm9v"}));
        assert_eq!(
            txn_request(b"foo", b"bar", 0),
            json!({
                "compare": [{"target": "MOD", "key": "Zm9v", "result": "EQUAL", "mod_revision": "0"}],
                "success": [{"request_put": {"key": "Zm9v", "value": "YmFy"}}],
                "failure": [{"request_range": {"key": "Zm9v"}}],
            })
        );
        assert_eq!(
            txn_request(b"foo", b"bar", 1 << 40)["compare"][0]["mod_revision"],
            "1099511627776"
        );
    }

    #[test]
    fn prefix_ends_as_etcdctl_computes_them() {
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(b"ilp/limits/"), b"ilp/limits0");
        assert_eq!(prefix_end(&[0x61, 0xff]), [0x62]);
        assert_eq!(prefix_end(&[0x61, 0xfe, 0xff, 0xff]), [0x61, 0xff]);
        assert_eq!(prefix_end(&[0xff, 0xff]), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }

    const HEADER: &str = r#""header":{"cluster_id":"6447124141051998435","member_id":"13144645163086586166","revision":"5","raft_term":"2"}"#;

    fn answer(rest: &str) -> Value {
        let text = if rest.is_empty() {
            format!("{{{HEADER}}}")
        } else {
            format!("{{{HEADER},{rest}}}")
        };
        serde_json::from_str(&text).unwrap()
    }

    fn kv(key: &[u8], value: &[u8], mod_revision: i64, create_revision: i64) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            mod_revision,
            create_revision,
        }
    }

    #[test]
    fn recorded_range_answers_parse() {
        // etcd 3.4.23, a missing key: no kvs, no count.
        assert_eq!(parse_range_response(&answer("")), Ok(vec![]));
        assert_eq!(header_revision(&answer("")), Ok(5));
        let found = answer(
            r#""kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmF6"}],"count":"1""#,
        );
        assert_eq!(
            parse_range_response(&found),
            Ok(vec![kv(b"foo", b"baz", 3, 2)])
        );
        // An empty value is left out, and so would be a zero revision; numbers are tolerated.
        let sparse =
            answer(r#""kvs":[{"key":"Zm9v","create_revision":7,"version":"1"}],"count":"1""#);
        assert_eq!(
            parse_range_response(&sparse),
            Ok(vec![kv(b"foo", b"", 0, 7)])
        );
        assert!(parse_range_response(&answer(r#""kvs":[{"key":"!!"}]"#)).is_err());
        assert!(
            parse_range_response(&answer(r#""kvs":[{"key":"Zm9v","mod_revision":"x"}]"#)).is_err()
        );
        assert!(parse_range_response(&answer(r#""kvs":{}"#)).is_err());
        assert!(header_revision(&json!({})).is_err());
    }

    #[test]
    fn recorded_txn_answers_parse() {
        let written = answer(
            r#""succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}}]"#,
        );
        assert_eq!(
            parse_txn_response(&written),
            Ok(CasOutcome::Written { revision: 5 })
        );
        // A conflict: `succeeded` left out, the failure branch's range holds the key.
        let conflict = answer(
            r#""responses":[{"response_range":{"header":{"revision":"5"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmF6"}],"count":"1"}}]"#,
        );
        assert_eq!(
            parse_txn_response(&conflict),
            Ok(CasOutcome::Conflict {
                current: Some(kv(b"foo", b"baz", 3, 2))
            })
        );
        // A conflict on a key that does not exist: the range has no kvs.
        let missing = answer(r#""responses":[{"response_range":{"header":{"revision":"5"}}}]"#);
        assert_eq!(
            parse_txn_response(&missing),
            Ok(CasOutcome::Conflict { current: None })
        );
        assert!(parse_txn_response(&answer("")).is_err());
        assert!(parse_txn_response(&answer(r#""succeeded":"yes""#)).is_err());
    }

    #[test]
    fn gateway_errors_parse() {
        let body = br#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;
        let error = GatewayError::parse(body).unwrap();
        assert_eq!(error.code, 14);
        assert_eq!(error.message, "etcdserver: request timed out");
        assert!(error.retryable());
        let bad =
            GatewayError::parse(br#"{"error":"illegal base64 data at input byte 0","code":3}"#)
                .unwrap();
        assert!(!bad.retryable());
        assert_eq!(GatewayError::parse(b"Not Found\n"), None);
    }

    /// etcd 3.4.23 answering a put on a member that has lost quorum.
    const CHUNKED_500: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\n\
        Content-Type: application/json\r\n\
        Trailer: Grpc-Trailer-Content-Type\r\n\
        Date: Wed, 02 Dec 2026 12:29:35 GMT\r\n\
        Transfer-Encoding: chunked\r\n\r\n\
        54\r\n{\"error\":\"context deadline exceeded\",\"message\":\"context deadline exceeded\",\"code\":2}\r\n\
        0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n";

    #[test]
    fn chunked_answers_are_read_whole() {
        let reply = parse_response(CHUNKED_500, false).unwrap().unwrap();
        assert_eq!(reply.status, 500);
        assert_eq!(GatewayError::parse(&reply.body).unwrap().code, 2);
        // Every cut short of the end is incomplete, not an error.
        for end in 0..CHUNKED_500.len() {
            assert_eq!(
                parse_response(&CHUNKED_500[..end], false),
                Ok(None),
                "at {end}"
            );
        }
        let split = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5;x=1\r\n\":1}\n\r\n0\r\n\r\n";
        let reply = parse_response(split, false).unwrap().unwrap();
        assert_eq!(reply.body, b"{\"a\":1}\n");
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n";
        assert!(matches!(
            parse_response(bad, false),
            Err(ParseError::Malformed(_))
        ));
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffff\r\n";
        assert_eq!(parse_response(huge, false), Err(ParseError::TooLarge));
    }

    #[test]
    fn bodies_end_by_length_or_at_eof() {
        let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(&sized[..sized.len() - 1], false), Ok(None));
        assert_eq!(parse_response(sized, false).unwrap().unwrap().body, b"{}");
        let unsized_ = b"HTTP/1.1 404 Not Found\r\n\r\nNot Found\n";
        assert_eq!(parse_response(unsized_, false), Ok(None));
        let reply = parse_response(unsized_, true).unwrap().unwrap();
        assert_eq!((reply.status, &reply.body[..]), (404, &b"Not Found\n"[..]));
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_RESPONSE + 1
        );
        assert_eq!(
            parse_response(big.as_bytes(), false),
            Err(ParseError::TooLarge)
        );
        assert!(matches!(
            parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false),
            Err(ParseError::Malformed(_))
        ));
    }

    /// What a fake endpoint does with each connection.
    #[derive(Clone, Copy)]
    enum Serve {
        /// Read the request and close without an answer.
        Close,
        /// Read the request and answer nothing until the client goes.
        Hang,
        /// Read the request, answer this status and body (Content-Length).
        Answer(u16, &'static str),
        /// Read the request, answer 200 with a chunked body.
        Chunked(&'static str),
    }

    /// A fake endpoint on loopback serving `connections` connections, one behaviour each;
    /// joins to the requests it read (head and body).
    fn fake(connections: Vec<Serve>) -> (String, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let thread = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for serve in connections {
                let (mut stream, _) = listener.accept().unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let request = read_request(&mut stream);
                requests.push(request);
                let answer = match serve {
                    // Closed after reading the request, so the client sees an orderly end
                    // of stream (closing with the request unread would reset instead).
                    Serve::Close => continue,
                    Serve::Hang => {
                        // Until the client gives up and closes.
                        let _ = stream.read(&mut [0u8; 16]);
                        continue;
                    }
                    Serve::Answer(status, body) => format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                    Serve::Chunked(body) => {
                        let (a, b) = body.split_at(body.len() / 2);
                        format!(
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                             {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                            a.len(),
                            b.len()
                        )
                    }
                };
                // The client may already be gone (a 4xx test does not read on).
                let _ = stream.write_all(answer.as_bytes());
            }
            requests
        });
        (url, thread)
    }

    fn read_request(stream: &mut TcpStream) -> String {
        let mut data = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let read = stream.read(&mut chunk).unwrap();
            assert!(read > 0, "the client closed mid-request");
            data.extend_from_slice(&chunk[..read]);
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut request = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(head) = request.parse(&data).unwrap() {
                let length: usize = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .unwrap();
                if data.len() >= head + length {
                    return String::from_utf8(data).unwrap();
                }
            }
        }
    }

    /// A loopback URL nothing listens on (bound, then released).
    fn closed_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    const RANGE_ANSWER: &str = r#"{"header":{"cluster_id":"1","member_id":"2","revision":"9","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"8","version":"3","value":"YmFy"}],"count":"1"}"#;
    const UNAVAILABLE: &str = r#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;

    #[test]
    fn a_fake_endpoint_answers_a_range() {
        let (url, server) = fake(vec![
            Serve::Answer(200, RANGE_ANSWER),
            Serve::Chunked(RANGE_ANSWER),
        ]);
        let mut client =
            EtcdClient::new(std::slice::from_ref(&url), Duration::from_secs(5)).unwrap();
        assert_eq!(client.get(b"foo").unwrap(), Some(kv(b"foo", b"bar", 8, 2)));
        assert_eq!(
            client.range_prefix(b"fo").unwrap(),
            vec![kv(b"foo", b"bar", 8, 2)]
        );
        assert_eq!(client.requests(), 2);
        assert_eq!(client.endpoint(), url.trim_start_matches("http://"));
        let requests = server.join().unwrap();
        assert!(
            requests[0].starts_with("POST /v3/kv/range HTTP/1.1\r\n"),
            "{}",
            requests[0]
        );
        assert!(requests[0].contains("\r\nConnection: close\r\n"));
        assert!(
            requests[0].ends_with(r#"{"key":"Zm9v"}"#),
            "{}",
            requests[0]
        );
        assert!(
            requests[1].ends_with(r#"{"key":"Zm8=","range_end":"ZnA="}"#),
            "{}",
            requests[1]
        );
    }

    #[test]
    fn calls_fail_over_to_the_next_endpoint() {
        let (closing, closing_server) = fake(vec![Serve::Close]);
        let (busy, busy_server) = fake(vec![Serve::Answer(503, UNAVAILABLE)]);
        let (hung, hung_server) = fake(vec![Serve::Hang]);
        let (good, good_server) = fake(vec![Serve::Answer(200, RANGE_ANSWER); 2]);
        let urls = [closed_url(), closing, busy, hung, good.clone()];
        let mut client = EtcdClient::new(&urls, Duration::from_millis(300)).unwrap();
        let started = Instant::now();
        assert_eq!(client.get(b"foo").unwrap(), Some(kv(b"foo", b"bar", 8, 2)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(client.endpoint(), good.trim_start_matches("http://"));
        assert_eq!(client.requests(), 5);
        // The next call starts where the last answer came from.
        assert_eq!(client.get(b"foo").unwrap(), Some(kv(b"foo", b"bar", 8, 2)));
        assert_eq!(client.requests(), 6);
        closing_server.join().unwrap();
        busy_server.join().unwrap();
        hung_server.join().unwrap();
        good_server.join().unwrap();
    }

    #[test]
    fn when_every_endpoint_fails_each_is_named() {
        let (closing, closing_server) = fake(vec![Serve::Close]);
        let (busy, busy_server) = fake(vec![Serve::Answer(503, UNAVAILABLE)]);
        let (hung, hung_server) = fake(vec![Serve::Hang]);
        let refused = closed_url();
        let urls = [closing.clone(), busy.clone(), hung.clone(), refused.clone()];
        let mut client = EtcdClient::new(&urls, Duration::from_millis(300)).unwrap();
        let error = client.put(b"k", b"v").unwrap_err();
        let EtcdError::Unreachable(detail) = &error else {
            panic!("{error:?}");
        };
        let text = error.to_string();
        assert!(text.starts_with("no etcd endpoint answered: "), "{text}");
        for (url, what) in [
            (&closing, "the connection closed without an answer"),
            (
                &busy,
                "HTTP 503: etcdserver: request timed out (gRPC code 14)",
            ),
            (&hung, "read timed out"),
            (&refused, "connect"),
        ] {
            let expected = format!("{}: {what}", url.trim_start_matches("http://"));
            assert!(detail.contains(&expected), "{expected} not in {detail}");
        }
        assert_eq!(client.requests(), 4);
        closing_server.join().unwrap();
        busy_server.join().unwrap();
        hung_server.join().unwrap();
    }

    #[test]
    fn a_4xx_is_not_failed_over() {
        let body = r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#;
        let (refusing, server) = fake(vec![Serve::Answer(400, body)]);
        let (good, _unused) = fake(vec![]);
        let mut client =
            EtcdClient::new(&[refusing.clone(), good], Duration::from_secs(5)).unwrap();
        let error = client.put(b"", b"v").unwrap_err();
        let endpoint = refusing.trim_start_matches("http://").to_string();
        assert_eq!(
            error,
            EtcdError::Status {
                endpoint: endpoint.clone(),
                status: 400,
                body: body.to_string()
            }
        );
        assert!(error
            .to_string()
            .contains(&format!("etcd at {endpoint} answered HTTP 400")));
        assert_eq!(client.requests(), 1);
        server.join().unwrap();
    }

    #[test]
    fn garbage_in_a_200_is_a_protocol_error() {
        let (url, server) = fake(vec![
            Serve::Answer(200, "not json"),
            Serve::Answer(200, r#"{"header":{"revision":"1"},"kvs":[{"key":"%%"}]}"#),
        ]);
        let mut client = EtcdClient::new(&[url], Duration::from_secs(5)).unwrap();
        assert!(matches!(client.get(b"k"), Err(EtcdError::Protocol(e)) if e.contains("not JSON")));
        assert!(matches!(client.get(b"k"), Err(EtcdError::Protocol(e)) if e.contains("base64")));
        server.join().unwrap();
    }
}
