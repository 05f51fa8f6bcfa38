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
#[path = "etcd_tests.rs"]
mod tests;
