//! The I/O tasks of one core: accepting, dialling, the WebSocket handshake, and per link a
//! reader (a batch of frames per read, handed to [`CoreState`]) and a writer (everything queued
//! on the link, one write per wake-up).
//!
//! # Bounds on a peer that misbehaves
//!
//! | situation | what happens |
//! | --- | --- |
//! | TLS listener: handshake not done `auth_timeout_ms` after the accept, not TLS, or a client certificate refused | closed, counted (`tls_handshake_failures`, `tls_cert_refusals`); see `stream.rs` |
//! | connection accepted | counted as unauthenticated until its BTP auth succeeds (HTTP: its first authenticated request); past `unauthenticated_max` on this core it is closed at once; `links_max` counts authenticated links only |
//! | handshake or auth not done `auth_timeout_ms` after the accept | closed |
//! | handshake refused | the parser's status (400, 426, 431) with `Connection: close`, then closed |
//! | queue over half of `link_queue_bytes_max` | the reader stops until the writer drains it below that; Prepares to the link get T03 |
//! | queue over `link_queue_bytes_max` (replies keep coming for a peer that does not read) | queue dropped, link closed |
//! | a write makes no progress for `write_timeout_ms` | link closed (also the socket's `TCP_USER_TIMEOUT`) |
//! | nothing received on a BTP link for `btp_ping_interval_ms` | a Ping (masked when we dialled), again each interval |
//! | nothing at all received for `btp_pings_missed_max` more intervals | link taken down; its requests fail T01 |

use super::core::{Admission, CoreState, LinkId, Transport};
use super::flush::{write_queued_within, WriteEnd};
use super::io::{unix_ms, Core};
use super::stream::{self, AcceptFailure, LinkSocket, LinkStream};
use crate::engine::PeerId;
use crate::link::btp::BtpSession;
use crate::link::buf::{HeadReadError, ReadBuf};
use crate::link::tls::MaybeTls;
use crate::link::websocket::{self as ws, Message, MessageAssembler, Opcode};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

type State = Rc<RefCell<Core>>;

/// A socket's descriptor, to shut it down from the writer while the reader owns its half.
pub(crate) struct Fd(pub(crate) RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

fn read_buffer_len(frame_len_max: usize) -> usize {
    (2 * (frame_len_max + ws::FRAME_HEADER_LEN_MAX)).max(256 * 1024)
}

/// Puts the write deadline on a router socket, accepted or dialled, BTP or HTTP: the kernel
/// gives up on data left unacknowledged for `write_timeout_ms` (`TCP_USER_TIMEOUT`, which
/// also ends a half-open connection), and a write of ours that makes no progress that long
/// fails (glommio's write timeout; the BTP writer has its own deadline too, see
/// [`write_queued_within`]). Best effort: a socket that refuses either keeps working.
pub(crate) fn limit_socket(stream: &TcpStream, write_timeout_ms: u64) {
    let ms = libc::c_uint::try_from(write_timeout_ms).unwrap_or(libc::c_uint::MAX);
    // SAFETY: setsockopt on a descriptor the stream owns (open for the call), reading
    // exactly `size_of::<c_uint>()` bytes from a live local.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!("TCP_USER_TIMEOUT: {}", io::Error::last_os_error());
    }
    let _ = stream.set_write_timeout(Some(Duration::from_millis(write_timeout_ms.max(1))));
}

/// The stream of a connection accepted at `accepted_at` (Unix ms): the socket itself, or for
/// a TLS listener (`tls`) the TLS stream once its handshake is done (by `auth_timeout_ms`
/// after the accept), with the peer its client certificate stands for. `None`: the handshake
/// failed (counted and logged; the caller drops the link and its socket).
pub(crate) async fn open_accepted(
    state: &State,
    stream: TcpStream,
    tls: bool,
    accepted_at: i64,
) -> Option<(LinkStream, Option<PeerId>)> {
    if !tls {
        return Some((MaybeTls::Plain(stream), None));
    }
    let (config, auth_timeout_ms) = {
        let st = state.borrow();
        (Arc::clone(&st.config), st.config.limits().auth_timeout_ms)
    };
    let server = config.tls().server.clone()?;
    let until = accepted_at.saturating_add(i64::try_from(auth_timeout_ms).unwrap_or(i64::MAX));
    let left = u64::try_from(until.saturating_sub(unix_ms()))
        .unwrap_or(0)
        .max(1);
    let within = Duration::from_millis(left);
    let peer_addr = stream.peer_addr().ok();
    let opened = stream::accept(stream, server, &config.tls().identities, within).await;
    let mut st = state.borrow_mut();
    match opened {
        Ok(open) => {
            st.counters.tls_handshakes += 1;
            Some(open)
        }
        Err(AcceptFailure::Cert(refusal)) => {
            st.counters.tls_cert_refusals += 1;
            tracing::info!(core = st.core, from = ?peer_addr, "TLS client certificate refused: {}", refusal.as_str());
            None
        }
        Err(AcceptFailure::Handshake(why)) => {
            st.counters.tls_handshake_failures += 1;
            tracing::debug!(core = st.core, from = ?peer_addr, "TLS handshake failed: {why}");
            None
        }
    }
}

/// Serves a connection a peer opened: TLS on a TLS listener (`tls`), the WebSocket upgrade,
/// then BTP (auth first). It is counted as unauthenticated from the accept
/// (`unauthenticated_max`), and must finish the handshakes and its auth within
/// `auth_timeout_ms` of it.
pub(crate) async fn serve_accepted(state: State, stream: TcpStream, tls: bool) {
    let _ = stream.set_nodelay(true);
    let accepted_at = unix_ms();
    let (frame_len_max, auth_timeout_ms, in_flight, bad_frames, write_timeout_ms) = {
        let st = state.borrow();
        let l = st.config.limits();
        (
            l.frame_len_max,
            l.auth_timeout_ms,
            l.in_flight_per_link_max,
            l.bad_frames_max,
            l.write_timeout_ms,
        )
    };
    let (wake, sleep) = local_channel::new_bounded(1);
    let added = state
        .borrow_mut()
        .add_link(Transport::Handshake, None, wake, Admission::Pending);
    let Some(id) = added else {
        // Counted (`unauthenticated_refused`); dropping the stream closes it.
        tracing::debug!("unauthenticated_max reached: connection closed");
        return;
    };
    limit_socket(&stream, write_timeout_ms);
    let Some((mut stream, cert)) = open_accepted(&state, stream, tls, accepted_at).await else {
        remove(&state, id);
        return;
    };
    state.borrow_mut().set_cert_peer(id, cert);
    let mut buf = ReadBuf::new(read_buffer_len(frame_len_max));
    let left = accepted_at
        .saturating_add(auth_timeout_ms as i64)
        .saturating_sub(unix_ms());
    let left = Duration::from_millis(u64::try_from(left).unwrap_or(0).max(1));
    let handshake = glommio::timer::timeout(left, async {
        let parsed = buf.read_head(&mut stream, ws::HANDSHAKE_LEN_MAX, |b| {
            ws::parse_upgrade_request(b)
                .map(|r| r.map(|r| (r.len(), *r.key(), r.account_from_path().map(str::to_owned))))
        });
        Ok(parsed.await)
    })
    .await;
    let refused = match handshake {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(HeadReadError::Refused(e))) => Err(Some(e)),
        // The parser refuses a head over HANDSHAKE_LEN_MAX itself: only a backstop.
        Ok(Err(HeadReadError::Full)) => Err(Some(ws::HandshakeError::TooLarge)),
        Ok(Err(HeadReadError::Io(_))) | Err(_) => Err(None),
    };
    let (header_len, key, account) = match refused {
        Ok(done) => done,
        Err(Some(e)) => {
            tracing::debug!("WebSocket handshake refused: {e}");
            let mut response = [0u8; ws::HANDSHAKE_ANSWER_LEN_MAX];
            let n = e.write_answer(&mut response);
            // Bounded by the socket's write timeout; the answer fits its buffer anyway.
            if stream.write_all(&response[..n]).await.is_ok() {
                let until = accepted_at.saturating_add(auth_timeout_ms as i64);
                buf.clear();
                linger(&mut stream, buf.spare_mut(), until).await;
            }
            remove(&state, id);
            return;
        }
        Err(None) => {
            remove(&state, id);
            return;
        }
    };
    let mut response = [0u8; ws::UPGRADE_RESPONSE_LEN];
    let n = ws::write_upgrade_response(&key, &mut response);
    let closing = state.borrow().link(id).is_none_or(|l| l.closing);
    if closing || stream.write_all(&response[..n]).await.is_err() {
        remove(&state, id);
        return;
    }
    // Frames may follow the head in the same read.
    buf.consume(header_len);
    // The auth deadline counts from the accept: the handshake was part of the wait.
    let session = BtpSession::server(accepted_at, auth_timeout_ms as i64, in_flight, bad_frames);
    state
        .borrow_mut()
        .start_btp(unix_ms(), id, session, account);
    run_link(state, stream, id, sleep, ws::Role::Server, buf).await;
}

/// After a refusal: ends our side (a FIN behind the answer), then discards what the peer
/// still sends until it closes too or `until` (Unix ms). Closing with unread bytes would send
/// a reset, which can destroy the answer before the peer reads it (RFC 9112 §9.6).
async fn linger(stream: &mut LinkStream, buf: &mut [u8], until: i64) {
    stream.shutdown_write().await;
    let left = u64::try_from(until.saturating_sub(unix_ms())).unwrap_or(0);
    let _ = glommio::timer::timeout(Duration::from_millis(left.max(1)), async {
        // Bounded by the timeout: each pass reads bytes, or the loop ends.
        while matches!(stream.read(buf).await, Ok(n) if n > 0) {}
        Ok(())
    })
    .await;
}

/// Removes a link whose connection never got a reader and a writer.
fn remove(state: &State, id: LinkId) {
    let mut st = state.borrow_mut();
    st.remove_link(id);
    st.flush();
}

/// Keeps one connection per core open to a peer we dial, redialling with backoff.
pub(crate) async fn dial(state: State, peer: PeerId) {
    let (dial, start_limits) = {
        let st = state.borrow();
        let p = st.config.peer(peer);
        (
            p.dial().cloned().expect("dialled peers have a URL"),
            st.config.limits().clone(),
        )
    };
    let mut backoff = start_limits.reconnect_min_ms;
    loop {
        // Each attempt takes the limits of the running config (a reload may change some).
        let limits = state.borrow().config.limits().clone();
        if state.borrow().shared.shutdown.load(Ordering::Relaxed) {
            return;
        }
        if state.borrow().shared.draining[peer.index()].load(Ordering::Relaxed) {
            // Drained by the operator: no link until the drain ends.
            glommio::timer::sleep(Duration::from_millis(limits.reconnect_min_ms)).await;
            continue;
        }
        let started = unix_ms();
        match dial_once(&state, peer, &dial, &limits).await {
            Ok(()) => tracing::info!(peer = %dial.url.host, "link to peer closed"),
            Err(e) => tracing::debug!(peer = %dial.url.host, "dial failed: {e}"),
        }
        if unix_ms() - started > 10_000 {
            backoff = limits.reconnect_min_ms;
        }
        glommio::timer::sleep(Duration::from_millis(backoff)).await;
        backoff = (backoff * 2).min(limits.reconnect_max_ms);
    }
}

async fn dial_once(
    state: &State,
    peer: PeerId,
    dial: &crate::config::Dial,
    limits: &crate::config::Limits,
) -> io::Result<()> {
    let address = dial.url.host_port();
    let connect = TcpStream::connect_timeout(
        address.as_str(),
        Duration::from_millis(limits.auth_timeout_ms),
    );
    let stream = connect.await.map_err(|e| io::Error::other(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    limit_socket(&stream, limits.write_timeout_ms);
    let tls = state.borrow().config.tls().dial(peer).cloned();
    let mut stream = match tls {
        None => MaybeTls::Plain(stream),
        Some(config) => {
            let within = Duration::from_millis(limits.auth_timeout_ms);
            let connected = stream::connect(stream, config, &dial.url.host, within).await;
            if connected.is_err() {
                state.borrow_mut().counters.tls_dial_failures += 1;
            }
            connected?
        }
    };
    let nonce = nonce();
    let host = dial.url.host_port();
    let mut request = vec![0u8; ws::upgrade_request_len(&host, &dial.url.path)];
    let n = ws::write_upgrade_request(&host, &dial.url.path, &nonce, &mut request);
    stream.write_all(&request[..n]).await?;
    let mut buf = ReadBuf::new(read_buffer_len(limits.frame_len_max));
    let handshake = glommio::timer::timeout(Duration::from_millis(limits.auth_timeout_ms), async {
        let parsed = buf.read_head(&mut stream, ws::HANDSHAKE_LEN_MAX, |b| {
            ws::parse_upgrade_response(b, &nonce)
        });
        Ok(parsed.await)
    });
    let header_len = match handshake.await {
        Ok(Ok(done)) => done,
        Ok(Err(HeadReadError::Io(e))) => return Err(e),
        Ok(Err(HeadReadError::Refused(e))) => return Err(io::Error::other(e.to_string())),
        Ok(Err(HeadReadError::Full)) => {
            return Err(io::Error::other(ws::HandshakeError::TooLarge.to_string()))
        }
        Err(e) => return Err(io::Error::other(e.to_string())),
    };
    // Frames may follow the 101 in the same read.
    buf.consume(header_len);
    let now = unix_ms();
    let session = BtpSession::client(
        now,
        peer,
        limits.auth_timeout_ms as i64,
        limits.in_flight_per_link_max,
        limits.bad_frames_max,
    );
    let (wake, sleep) = local_channel::new_bounded(1);
    // Ours: counted against links_max from the start, never against unauthenticated_max.
    let id = {
        let mut st = state.borrow_mut();
        let transport = st.btp_transport(session, true, now);
        st.add_link(transport, None, wake, Admission::Authenticated)
    };
    let Some(id) = id else {
        return Err(io::Error::other("links_max reached"));
    };
    state
        .borrow_mut()
        .send_auth(id, dial.username.as_bytes(), dial.token.as_bytes());
    run_link(Rc::clone(state), stream, id, sleep, ws::Role::Client, buf).await;
    Ok(())
}

/// 16 bytes for the WebSocket key; unpredictability is not a security property here.
fn nonce() -> [u8; ws::NONCE_LEN] {
    let mut state = unix_ms() as u64 ^ 0x9e37_79b9_7f4a_7c15 ^ (std::process::id() as u64) << 32;
    let mut out = [0u8; ws::NONCE_LEN];
    for chunk in out.chunks_mut(8) {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    out
}

/// The life of an upgraded connection: a writer task, and this task reading. The reader stops
/// while the link's queue is over half of `link_queue_bytes_max` ([`wait_for_room`]).
async fn run_link(
    state: State,
    stream: LinkStream,
    id: LinkId,
    sleep: LocalReceiver<()>,
    role: ws::Role,
    mut buf: ReadBuf,
) {
    let fd = Fd(stream.fd());
    let (frame_len_max, half) = {
        let st = state.borrow();
        let limits = st.config.limits();
        (limits.frame_len_max, limits.link_queue_bytes_max / 2)
    };
    if let MaybeTls::Plain(_) = &stream {
        // What is queued goes to the socket at once; the writer task writes what it refuses.
        let hot = {
            let mut st = state.borrow_mut();
            st.set_inline(id, fd.0);
            st.hot()
        };
        if let Some(hot) = hot {
            // Read by the core's ring driver; this task only ends the link.
            let (reader, writer) = futures_lite::io::split(stream);
            let writer_task =
                glommio::spawn_local(write_link(Rc::clone(&state), id, writer, sleep, Fd(fd.0)));
            let (done, finished) = local_channel::new_bounded(1);
            state.borrow_mut().set_ring_reader(id);
            hot.borrow_mut()
                .add(id, fd.0, buf, role, frame_len_max, done);
            state.borrow().wake_driver();
            let _ = finished.recv().await;
            finish_link(&state, id, writer_task, |_| {}).await;
            // The socket closes only now, after the link left the table.
            drop(reader);
            return;
        }
    }
    let (resume, resumed) = local_channel::new_bounded(1);
    state.borrow_mut().set_reader(id, resume);
    let (mut reader, writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local(write_link(Rc::clone(&state), id, writer, sleep, fd));
    let decoder = ws::FrameDecoder::new(role, frame_len_max);
    let mut assembler = MessageAssembler::new(frame_len_max);
    loop {
        let now = unix_ms();
        // Set when the queue passed half the cap with frames still in `buf`.
        let held = match handle_frames(
            &mut state.borrow_mut(),
            id,
            &mut buf,
            &decoder,
            &mut assembler,
            half,
            now,
        ) {
            Frames::Drained => false,
            Frames::Held => true,
            Frames::End => break,
        };
        {
            let mut st = state.borrow_mut();
            st.flush();
            match st.link_mut(id) {
                Some(link) if !link.closing => link.received_at = now,
                _ => break,
            }
        }
        if !wait_for_room(&state, id, &resumed).await {
            break;
        }
        if held {
            continue;
        }
        // Room for the rest of a partial frame, and for a read worth making.
        buf.compact_if_needed(ws::frame_len_hint(buf.data()).max(4096));
        match buf.read_from(&mut reader).await {
            Ok(0) => break,
            Err(e) => {
                // ETIMEDOUT: the kernel's TCP_USER_TIMEOUT (`limit_socket`) ended a connection
                // whose data went unacknowledged for write_timeout_ms.
                if e.kind() == io::ErrorKind::TimedOut {
                    count_write_timeout(&mut state.borrow_mut(), id);
                }
                tracing::debug!("link read failed: {e}");
                break;
            }
            Ok(_) => {}
        }
    }
    finish_link(&state, id, writer_task, |_| {}).await;
}

/// What [`handle_frames`] left in the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frames {
    /// Every whole frame was handled; a partial one may remain.
    Drained,
    /// The link's queue passed half its cap: the frames left wait until it drains.
    Held,
    /// The link ended (a Close, a WebSocket error): stop reading.
    End,
}

/// Hands the whole frames in `buf` to the core, one message at a time, and consumes them.
/// Stops early when the link's queue passes `half` (each message may queue an answer: a Pong,
/// a local Reject), so the frames still in `buf` wait, as do those in the socket.
pub(crate) fn handle_frames(
    st: &mut Core,
    id: LinkId,
    buf: &mut ReadBuf,
    decoder: &ws::FrameDecoder,
    assembler: &mut MessageAssembler,
    half: usize,
    now: i64,
) -> Frames {
    loop {
        let frame = match decoder.decode(buf.data_mut()) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Frames::Drained,
            Err(e) => {
                fail_ws(st, id, e);
                return Frames::End;
            }
        };
        let frame_len = frame.len;
        match assembler.handle_frame(buf.data_mut(), &frame) {
            Ok(Message::Binary(bytes)) => st.on_message(now, id, bytes),
            Ok(Message::Ping(payload)) => st.push_control(id, Opcode::Pong, payload),
            Ok(Message::Close(close)) => {
                let code = close.reply_code().0.to_be_bytes();
                st.push_control(id, Opcode::Close, &code);
                st.close_link(id);
                st.flush();
                return Frames::End;
            }
            Ok(Message::Text | Message::Fragment | Message::Pong(_)) => {}
            Err(e) => {
                fail_ws(st, id, e);
                return Frames::End;
            }
        }
        buf.consume(frame_len);
        if st.link(id).is_some_and(|l| l.queued() > half) {
            return Frames::Held;
        }
    }
}

/// Ends a link whose reader stopped: the writer flushes what is queued and closes the socket,
/// then `before_remove` runs on the core and the link leaves the table (its outstanding
/// requests fail with T01).
pub(crate) async fn finish_link(
    state: &State,
    id: LinkId,
    writer_task: glommio::Task<()>,
    before_remove: impl FnOnce(&mut Core),
) {
    {
        let mut st = state.borrow_mut();
        st.close_link(id);
        st.flush();
    }
    writer_task.await;
    let mut st = state.borrow_mut();
    before_remove(&mut st);
    st.remove_link(id);
    st.flush();
}

/// Waits while the link's queue holds more than half of `link_queue_bytes_max`: its peer must
/// read what it is owed before we read more from it (each message read may queue an answer).
/// The writer wakes us through `resumed` once it drained the queue to half, and so does
/// closing the link. `false` when the link is closing or gone.
pub(crate) async fn wait_for_room(state: &State, id: LinkId, resumed: &LocalReceiver<()>) -> bool {
    loop {
        {
            let mut st = state.borrow_mut();
            let half = st.config.limits().link_queue_bytes_max / 2;
            let Some(link) = st.link_mut(id).filter(|l| !l.closing) else {
                return false;
            };
            if link.queued() <= half {
                return true;
            }
            link.reader_paused = true;
            st.counters.reads_paused += 1;
        }
        if resumed.recv().await.is_none() {
            return false;
        }
    }
}

/// Counts a link ended by the write deadline, once (the writer and the reader may both see it).
pub(crate) fn count_write_timeout(st: &mut CoreState, id: LinkId) {
    let Some(link) = st.link_mut(id).filter(|l| !l.write_timed_out) else {
        return;
    };
    link.write_timed_out = true;
    st.counters.write_timeouts += 1;
}

fn fail_ws(st: &mut Core, id: LinkId, error: ws::WsError) {
    tracing::debug!("WebSocket error: {error}");
    st.counters.ws_errors += 1;
    st.push_control(id, Opcode::Close, &error.close_code().0.to_be_bytes());
    st.close_link(id);
    st.flush();
}

/// Writes whatever the core queued on the link, then, once the link is closing and drained,
/// closes our side (over TLS with a close_notify) and shuts the socket down (which also ends
/// the reader). A write that makes no progress for
/// `write_timeout_ms` closes the link at once (counted in `write_timeouts`). Each time it takes
/// the queue, a reader paused for room is woken if what it took is at most half the cap.
pub(crate) async fn write_link<W: futures_lite::AsyncWrite + Unpin>(
    state: State,
    id: LinkId,
    mut writer: W,
    sleep: LocalReceiver<()>,
    fd: Fd,
) {
    let (deadline, half) = {
        let st = state.borrow();
        let limits = st.config.limits();
        (
            Duration::from_millis(limits.write_timeout_ms),
            limits.link_queue_bytes_max / 2,
        )
    };
    let end = write_queued_within(&mut writer, &sleep, Some(deadline), |batch| {
        // Everything taken before is written: the queue is what is taken now.
        let mut st = state.borrow_mut();
        let closing = st.links.take(id, batch, half);
        st.flush();
        closing
    })
    .await;
    {
        let mut st = state.borrow_mut();
        tracing::debug!(core = st.core, ?end, "link writer ended");
        if end == WriteEnd::TimedOut {
            count_write_timeout(&mut st, id);
        }
        if let Some(link) = st.link_mut(id) {
            link.writing = 0;
        }
        // Also wakes a reader paused for room.
        st.close_link(id);
        st.flush();
    }
    if end == WriteEnd::Finished {
        // Everything queued is written: end our side properly. Over TLS that is a close_notify
        // (so the peer can tell the end from a truncation), then a FIN; in plaintext a FIN.
        // Bounded like any write.
        let _ = glommio::timer::timeout(deadline, async {
            let _ = writer.close().await;
            Ok(())
        })
        .await;
    }
    let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
}
