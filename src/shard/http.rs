//! ILP over HTTP (RFC 35, synchronous mode) from peers: one task per connection reads
//! requests, authenticates each from its head (bearer token, optional `/accounts/{name}/ilp`
//! path) before any of its body is read, and hands every complete Prepare to the core at once
//! (HTTP/1.1 keep-alive and pipelining); the core writes the answers in request order. A
//! writer task flushes what the core queued, as for BTP. Also the client side: connections
//! we open to peers with `http_url`.
//!
//! # Server decisions
//!
//! Limits: `http_request_timeout_ms` (one request's head and body, from its first byte),
//! `http_idle_timeout_ms` (nothing in flight, nothing arriving), `frame_len_max` (the body).
//! "Close" always means: the answers owed to earlier requests are written first, in order,
//! each by its Prepare's expiry at the latest (or our longest hold, if sooner: the engine
//! answers R00 then); never answered early, never dropped. Every refusal is counted in
//! `http_refused`.
//!
//! | situation | answer | then |
//! | --- | --- | --- |
//! | head in, token (or path account) refused | 401, `Connection: close` | close; the body is never read (an unauthenticated peer costs no body buffer) |
//! | head in, `Content-Length` over `frame_len_max` | 413, `Connection: close` | close, body unread |
//! | head malformed, too large, not a POST, no length | 400 / 431 / 405 / 411, `Connection: close` | close |
//! | head in, token good, body still arriving | nothing yet | the body completes the request (no second authentication) |
//! | body complete, not a Prepare | 400 | the connection stays |
//! | body complete, a Prepare | 200 with the Fulfill or Reject (§1 rule 4) | stays, unless the request said `Connection: close` |
//! | request incomplete `http_request_timeout_ms` after its first byte | 408, `Connection: close`, after the answers owed | close |
//! | nothing in flight or arriving for `http_idle_timeout_ms` | none (nothing was asked) | close |
//! | only answers owed, nothing arriving | none yet | wait for them: no deadline of ours applies |
//! | `http_pipeline_max` requests in flight | none yet | not read until an answer frees room; a partial request's clock restarts then |
//! | the peer ends its side (or a read fails) | a partial request gets none | close after the answers owed |
//!
//! On the TLS listener (`listen.http_tls`) the TLS handshake comes first, within
//! `auth_timeout_ms` of the accept (see `stream.rs`); a client certificate that stands for a
//! peer authenticates its requests without an `Authorization` header (one, if sent, must be
//! that peer's token).
//!
//! Not done: a lingering close (RFC 9112 §9.6: end our sending side, discard what the peer
//! still sends, then close). The writer shuts down both sides, so a peer still sending a body
//! after its 401 may get a reset, which some stacks let destroy the 401 before it is read.

use super::conn::{finish_link, limit_socket, open_accepted, write_link, Fd};
use super::core::{Admission, CoreState, HttpLink, LinkId, Transport};
use super::http_pool::client_transport;
use super::io::{unix_ms, Core};
use super::stream::{LinkSocket, LinkStream};
use crate::engine::PeerId;
use crate::link::auth::constant_time_eq;
use crate::link::buf::ReadBuf;
use crate::link::http::{
    parse_request_memo_on, parse_response_memo, HeadMemo, RequestShape, Response, HEAD_LEN_MAX,
};
use crate::link::tls::MaybeTls;
use futures_lite::io::AsyncReadExt;
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

type State = Rc<RefCell<Core>>;

/// After the last Prepare owed is due (`HttpLink::owed_until_ms`), how long the close path
/// still waits for its answer: the expiry wheel answers within a tick or two, and the core may
/// be busy. Past it the connection closes anyway (a safety net: it should never be needed).
const OWED_SLACK_MS: i64 = 1_000;

/// What ended one wait of a connection's reader.
enum Woke {
    Read(io::Result<usize>),
    /// An answer was written (`false`: the core dropped the link's sender).
    Answered(bool),
    /// The deadline in force passed.
    Deadline,
}

/// Which deadline is in force.
#[derive(Clone, Copy)]
enum Deadline {
    /// The request at the front of the buffer must be complete by then.
    Request(i64),
    /// The idle connection closes then.
    Idle(i64),
}

/// Serves one HTTP connection until the peer or the router ends it (see the module's table).
pub(crate) async fn serve_http(state: State, stream: TcpStream, tls: bool) {
    let _ = stream.set_nodelay(true);
    let accepted_at = unix_ms();
    let (body_len_max, request_ms, idle_ms, pipeline_max) = {
        let st = state.borrow();
        let limits = st.config.limits();
        (
            limits.frame_len_max,
            i64::try_from(limits.http_request_timeout_ms).unwrap_or(i64::MAX / 4),
            i64::try_from(limits.http_idle_timeout_ms).unwrap_or(i64::MAX / 4),
            limits.http_pipeline_max,
        )
    };
    let (wake, sleep) = local_channel::new_bounded(1);
    let (answered, answer) = local_channel::new_bounded(1);
    let http = HttpLink::new();
    let pending = Admission::Pending;
    let added = state
        .borrow_mut()
        .add_link(Transport::HttpServer(http), None, wake, pending);
    let Some(id) = added else {
        tracing::debug!("unauthenticated_max reached: HTTP connection refused");
        return;
    };
    state.borrow_mut().set_reader(id, answered);
    limit_socket(&stream, state.borrow().config.limits().write_timeout_ms);
    let Some((stream, cert)) = open_accepted(&state, stream, tls, accepted_at).await else {
        let mut st = state.borrow_mut();
        st.remove_link(id);
        st.flush();
        return;
    };
    let fd = Fd(stream.fd());
    let (mut reader, writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local(write_link(Rc::clone(&state), id, writer, sleep, fd));
    let mut buf = ReadBuf::new(HEAD_LEN_MAX + body_len_max);
    let limits = Timeouts {
        body_len_max,
        request_ms,
        idle_ms,
        pipeline_max,
    };
    read_requests(&state, id, cert, &mut reader, &mut buf, &answer, limits).await;
    write_owed(&state, id, &answer).await;
    finish_link(&state, id, writer_task, |_| {}).await;
}

/// The limits one connection's reader works under.
#[derive(Clone, Copy)]
struct Timeouts {
    body_len_max: usize,
    request_ms: i64,
    idle_ms: i64,
    pipeline_max: usize,
}

/// Reads and dispatches requests until the connection is finished: a request that closes it
/// (refused, timed out, `Connection: close`), the peer's end, or the idle timeout.
async fn read_requests<R: futures_lite::AsyncRead + Unpin>(
    state: &State,
    id: LinkId,
    cert: Option<PeerId>,
    reader: &mut R,
    buf: &mut ReadBuf,
    answer: &LocalReceiver<()>,
    limits: Timeouts,
) {
    let mut auth = Authenticated {
        cert,
        ..Authenticated::default()
    };
    // When the first byte of the request at the front of `buf` arrived; `None`: none did.
    let mut request_since: Option<i64> = None;
    // When the connection last did something: a read, or an answer written.
    let mut idle_since = unix_ms();
    loop {
        let now = unix_ms();
        let (consumed, finished) = dispatch(
            state,
            id,
            buf.data_mut(),
            limits.body_len_max,
            limits.pipeline_max,
            &mut auth,
            now,
        );
        state.borrow_mut().flush();
        if consumed > 0 {
            buf.consume(consumed);
            // The buffer holds one largest request: what is left goes to the front.
            buf.compact();
            // What is left began arriving with the read that finished the last request.
            request_since = (!buf.is_empty()).then_some(now);
        }
        if finished || state.borrow().link(id).is_none_or(|l| l.closing) {
            return;
        }
        let pending = state.borrow().http_pending(id);
        let full = pending >= limits.pipeline_max;
        // A full pipeline is not the peer's delay; answers owed come by their expiries.
        let deadline = match request_since {
            _ if full => None,
            Some(since) => Some(Deadline::Request(since.saturating_add(limits.request_ms))),
            None if pending == 0 => Some(Deadline::Idle(idle_since.saturating_add(limits.idle_ms))),
            None => None,
        };
        let at = deadline.map(|(Deadline::Request(at) | Deadline::Idle(at))| at);
        let woke = wait(reader, buf.spare_mut(), answer, full, at, now).await;
        let now = unix_ms();
        match woke {
            Woke::Read(Ok(0) | Err(_)) | Woke::Answered(false) => return,
            Woke::Read(Ok(n)) => {
                if buf.is_empty() {
                    request_since = Some(now);
                }
                buf.advance(n);
                idle_since = now;
            }
            Woke::Answered(true) => {
                idle_since = now;
                if full && !buf.is_empty() {
                    request_since = Some(now);
                }
            }
            Woke::Deadline => {
                match deadline {
                    Some(Deadline::Request(_)) => {
                        tracing::debug!("HTTP request timeout");
                        let mut st = state.borrow_mut();
                        st.on_http_request(now, id, None, &mut [], false, Some(408));
                        st.flush();
                    }
                    Some(Deadline::Idle(_)) => tracing::debug!("HTTP connection idle"),
                    None => {}
                }
                return;
            }
        }
    }
}

/// Waits for bytes (unless the pipeline is `full`), an answer written, or `at` (Unix ms).
async fn wait<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    room: &mut [u8],
    answer: &LocalReceiver<()>,
    full: bool,
    at: Option<i64>,
    now: i64,
) -> Woke {
    let read = async {
        if full {
            return futures_lite::future::pending().await;
        }
        Woke::Read(reader.read(room).await)
    };
    let answered = async { Woke::Answered(answer.recv().await.is_some()) };
    let timer = async {
        match at {
            Some(at) => {
                let ms = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
                glommio::timer::sleep(Duration::from_millis(ms)).await;
                Woke::Deadline
            }
            None => futures_lite::future::pending().await,
        }
    };
    futures_lite::future::or(read, futures_lite::future::or(answered, timer)).await
}

/// Waits until every answer owed on the link is written, or the link closes. Each comes by
/// its Prepare's expiry at the latest (the engine answers R00 then), so the wait is bounded
/// by the latest of them, not by a timeout of ours; [`OWED_SLACK_MS`] past it, it ends anyway.
async fn write_owed(state: &State, id: LinkId, answer: &LocalReceiver<()>) {
    loop {
        let until = {
            let st = state.borrow();
            let Some(link) = st.link(id).filter(|l| !l.closing) else {
                return;
            };
            if st.http_pending(id) == 0 {
                return;
            }
            link.http().map_or(0, HttpLink::owed_until_ms)
        };
        let left = until
            .saturating_add(OWED_SLACK_MS)
            .saturating_sub(unix_ms());
        let Ok(left) = u64::try_from(left) else {
            tracing::warn!(
                owed = state.borrow().http_pending(id),
                "HTTP answers owed past their expiry"
            );
            return;
        };
        let answered = glommio::timer::timeout(Duration::from_millis(left), async {
            Ok(answer.recv().await.is_some())
        })
        .await;
        if !matches!(answered, Ok(true)) {
            return;
        }
    }
}

/// What the reader of one connection keeps between requests. A connection carries one peer's
/// requests, so the path account and token that authenticated last are kept and compared (in
/// constant time) before the table of every peer's tokens is searched, and the last head is
/// kept so that an identical one is not parsed again; `front` is the peer of the request
/// whose body is still arriving.
#[derive(Default)]
struct Authenticated {
    front: Option<PeerId>,
    memo: HeadMemo<RequestShape>,
    /// The connection is counted among the authenticated links.
    counted: bool,
    last: Option<Credentials>,
    /// The peer the connection's TLS client certificate stands for.
    cert: Option<PeerId>,
}

/// A path account and token that authenticated, and the peer they name.
struct Credentials {
    account: Option<Box<str>>,
    token: Box<[u8]>,
    peer: PeerId,
    /// The core's `auth_generation` when they were checked: a reload checks them again.
    generation: u64,
}

impl Authenticated {
    /// The peer `token` (with the path's `account`) authenticates, if any.
    fn peer(&mut self, st: &CoreState, account: Option<&str>, token: &[u8]) -> Option<PeerId> {
        if let Some(last) = &self.last {
            if last.generation == st.auth_generation
                && last.account.as_deref() == account
                && constant_time_eq(&last.token, token)
            {
                return Some(last.peer);
            }
        }
        let peer = st.authenticate_http(account, token, self.cert)?;
        self.last = Some(Credentials {
            account: account.map(Box::from),
            token: Box::from(token),
            peer,
            generation: st.auth_generation,
        });
        Some(peer)
    }
}

/// Hands every complete request at the front of `buf` to the core; returns how many bytes
/// were consumed and whether the connection is finished (a refused request, or
/// `Connection: close`). Each request is authenticated once, as soon as its head is in; the
/// peer is kept in `auth.front` while its body arrives.
fn dispatch(
    state: &State,
    id: LinkId,
    buf: &mut [u8],
    body_len_max: usize,
    pipeline_max: usize,
    auth: &mut Authenticated,
    now: i64,
) -> (usize, bool) {
    let mut st = state.borrow_mut();
    let mut start = 0;
    while st.http_pending(id) < pipeline_max {
        let parsed = parse_request_memo_on(
            &buf[start..],
            body_len_max,
            &mut auth.memo,
            auth.cert.is_none(),
        );
        let request = match parsed {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(error) => {
                let refuse = Some(error.status());
                st.on_http_request(now, id, None, &mut [], false, refuse);
                return (buf.len(), true);
            }
        };
        let (head_len, body_len, keep_alive) =
            (request.head_len, request.body_len, request.keep_alive);
        let authenticated = match auth.front {
            Some(peer) => Some(peer),
            None => auth.peer(&st, request.account_from_path(), request.token),
        };
        let Some(peer) = authenticated else {
            // No hint whether the name or the token was wrong: a plain 401, before the body.
            st.counters.http_auth_failures += 1;
            st.on_http_request(now, id, None, &mut [], false, None);
            return (buf.len(), true);
        };
        // Counted against links_max from its first authenticated request (see conn.rs).
        if !auth.counted && !st.authenticate_link(id) {
            st.on_http_request(now, id, None, &mut [], false, Some(503));
            return (buf.len(), true);
        }
        auth.counted = true;
        if start + head_len + body_len > buf.len() {
            auth.front = Some(peer);
            break; // the body is still arriving
        }
        auth.front = None;
        let body = &mut buf[start + head_len..start + head_len + body_len];
        st.on_http_request(now, id, Some(peer), body, keep_alive, None);
        start += head_len + body_len;
        if !keep_alive {
            return (start, true);
        }
    }
    (start, false)
}

/// Opens one HTTP connection to a peer we POST to (`http_url`) and carries the core's
/// requests on it, up to `http_requests_per_connection_max` pipelined (the answers come back
/// in order), until either side closes it.
pub(crate) async fn dial_http(state: State, peer: PeerId) {
    let (address, host, tls, connect_ms, body_len_max) = {
        let st = state.borrow();
        let dial = st.config.peer(peer).http().expect("an HTTP peer");
        let limits = st.config.limits();
        (
            dial.url.host_port(),
            dial.url.host.clone(),
            st.config.tls().dial(peer).cloned(),
            limits.auth_timeout_ms,
            limits.frame_len_max,
        )
    };
    let stream = match connect_http(&state, &address, &host, tls, connect_ms).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(%address, "HTTP connection failed: {e}");
            let mut st = state.borrow_mut();
            st.http_client_gone(unix_ms(), peer, None);
            st.flush();
            return;
        }
    };
    let (wake, sleep) = local_channel::new_bounded(1);
    let client = client_transport(peer, unix_ms());
    let id = state
        .borrow_mut()
        .add_link(client, None, wake, Admission::Authenticated);
    let Some(id) = id else {
        let mut st = state.borrow_mut();
        st.http_client_gone(unix_ms(), peer, None);
        st.flush();
        return;
    };
    let fd = Fd(stream.fd());
    let (mut reader, writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local(write_link(Rc::clone(&state), id, writer, sleep, fd));
    {
        let mut st = state.borrow_mut();
        st.http_client_ready(unix_ms(), id, peer);
        st.flush();
    }
    let mut buf = ReadBuf::new(HEAD_LEN_MAX + body_len_max);
    let mut memo = HeadMemo::default();
    loop {
        if !answer_batch(&state, id, peer, &mut buf, body_len_max, &mut memo) {
            break;
        }
        // Room for the rest of a partial response, and for a read worth making: only the
        // partial response moves, once per read, never the whole batch.
        buf.compact_if_needed(READ_ROOM_MIN);
        match buf.read_from(&mut reader).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    {
        // The requests its writer never took go to another connection.
        let mut st = state.borrow_mut();
        st.http_client_closing(unix_ms(), id);
        st.flush();
    }
    let gone = |st: &mut Core| st.http_client_gone(unix_ms(), peer, Some(id));
    finish_link(&state, id, writer_task, gone).await;
}

/// Connects to `address` within `connect_ms`, then, for an `https://` peer (`tls`), runs the
/// TLS handshake with `host` within `connect_ms` more.
async fn connect_http(
    state: &State,
    address: &str,
    host: &str,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    connect_ms: u64,
) -> io::Result<LinkStream> {
    let within = Duration::from_millis(connect_ms);
    let stream = TcpStream::connect_timeout(address, within)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    limit_socket(&stream, state.borrow().config.limits().write_timeout_ms);
    let Some(config) = tls else {
        return Ok(MaybeTls::Plain(stream));
    };
    let connected = super::stream::connect(stream, config, host, within).await;
    if connected.is_err() {
        state.borrow_mut().counters.tls_dial_failures += 1;
    }
    connected
}

/// Bytes of room a read of responses gets at least (less only while a partial response
/// fills the buffer).
const READ_ROOM_MIN: usize = 4096;

/// Hands every whole response at the front of `buf` to the core in one batch (one clock
/// read, one flush; a head identical to the last is not parsed again), then refills the
/// connection's pipeline. `false` when the connection is
/// finished: `Connection: close`, a response that cannot be read, or the link closing.
fn answer_batch(
    state: &State,
    id: LinkId,
    peer: PeerId,
    buf: &mut ReadBuf,
    body_len_max: usize,
    memo: &mut HeadMemo<Response>,
) -> bool {
    let mut st = state.borrow_mut();
    let now = unix_ms();
    let mut open = true;
    loop {
        let response = match parse_response_memo(buf.data(), body_len_max, memo) {
            Ok(Some(response)) => response,
            // A head longer than the buffer could ever hold is refused by the parser.
            Ok(None) => break,
            Err(_) => {
                open = false;
                break;
            }
        };
        let end = response.head_len + response.body_len;
        if buf.len() < end {
            break; // the body is still arriving
        }
        if !response.keep_alive {
            // Seen closing: no request goes on it from now on, not even one this answer
            // lets through.
            st.http_client_closing(now, id);
        }
        let body = &buf.data()[response.head_len..end];
        st.on_http_client_response(now, id, response.status, body);
        buf.consume(end);
        if !response.keep_alive {
            open = false;
            break;
        }
    }
    open &= st.link(id).is_some_and(|l| !l.closing);
    if open {
        st.http_client_ready(now, id, peer);
    }
    st.flush();
    open
}
