//! The I/O tasks of one core: accepting, dialling, the WebSocket handshake, and per link a
//! reader (a batch of frames per read, handed to [`CoreState`]) and a writer (everything queued
//! on the link, one write per wake-up).

use super::core::{unix_ms, CoreState, LinkId};
use crate::engine::PeerId;
use crate::link::btp::BtpSession;
use crate::link::websocket::{self as ws, Message, MessageAssembler, Opcode};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use futures_lite::AsyncRead;
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

type State = Rc<RefCell<CoreState>>;

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

/// Reads until `parse` accepts a complete header block; returns the block's length and the
/// bytes read so far.
async fn read_handshake<R, T>(
    reader: &mut R,
    buf: &mut [u8],
    mut parse: impl FnMut(&[u8]) -> Result<Option<T>, ws::HandshakeError>,
) -> io::Result<(T, usize)>
where
    R: AsyncRead + Unpin,
{
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "handshake too long",
            ));
        }
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during handshake",
            ));
        }
        filled += n;
        match parse(&buf[..filled]) {
            Ok(Some(done)) => return Ok((done, filled)),
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }
}

/// Serves a connection a peer opened: WebSocket upgrade, then BTP (auth first).
pub(crate) async fn serve_accepted(state: State, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (frame_len_max, auth_timeout_ms, in_flight, bad_frames) = {
        let st = state.borrow();
        let l = st.config.limits();
        (
            l.frame_len_max,
            l.auth_timeout_ms,
            l.in_flight_per_link_max,
            l.bad_frames_max,
        )
    };
    let mut buf = vec![0u8; read_buffer_len(frame_len_max)];
    let handshake = glommio::timer::timeout(Duration::from_millis(auth_timeout_ms), async {
        let parsed = read_handshake(&mut stream, &mut buf[..ws::HANDSHAKE_LEN_MAX], |b| {
            ws::parse_upgrade_request(b)
                .map(|r| r.map(|r| (r.len(), *r.key(), r.account_from_path().map(str::to_owned))))
        })
        .await;
        Ok(parsed)
    })
    .await;
    let ((header_len, key, account), filled) = match handshake {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::debug!("WebSocket handshake refused: {e}");
            let mut response = [0u8; 256];
            let n = ws::write_http_error(400, "Bad Request", &mut response);
            let _ = stream.write_all(&response[..n]).await;
            return;
        }
        Err(_) => return,
    };
    let mut response = [0u8; ws::UPGRADE_RESPONSE_LEN];
    let n = ws::write_upgrade_response(&key, &mut response);
    if stream.write_all(&response[..n]).await.is_err() {
        return;
    }
    buf.copy_within(header_len..filled, 0);
    let leftover = filled - header_len;
    let now = unix_ms();
    let session = BtpSession::server(now, auth_timeout_ms as i64, in_flight, bad_frames);
    let (wake, sleep) = local_channel::new_bounded(1);
    let id = state
        .borrow_mut()
        .add_link(Some(session), None, false, account, wake);
    let Some(id) = id else {
        tracing::warn!("links_max reached: connection refused");
        return;
    };
    run_link(state, stream, id, sleep, ws::Role::Server, buf, leftover).await;
}

/// Keeps one connection per core open to a peer we dial, redialling with backoff.
pub(crate) async fn dial(state: State, peer: PeerId) {
    let (dial, limits) = {
        let st = state.borrow();
        let p = st.config.peer(peer);
        (
            p.dial.clone().expect("dialled peers have a URL"),
            st.config.limits().clone(),
        )
    };
    let mut backoff = limits.reconnect_min_ms;
    loop {
        if state.borrow().shared.shutdown.load(Ordering::Relaxed) {
            return;
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
    let address = format!("{}:{}", dial.url.host, dial.url.port);
    let connect = TcpStream::connect_timeout(
        address.as_str(),
        Duration::from_millis(limits.auth_timeout_ms),
    );
    let mut stream = connect.await.map_err(|e| io::Error::other(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let nonce = nonce();
    let host = format!("{}:{}", dial.url.host, dial.url.port);
    let mut request = vec![0u8; ws::upgrade_request_len(&host, &dial.url.path)];
    let n = ws::write_upgrade_request(&host, &dial.url.path, &nonce, &mut request);
    stream.write_all(&request[..n]).await?;
    let mut buf = vec![0u8; read_buffer_len(limits.frame_len_max)];
    let handshake = glommio::timer::timeout(Duration::from_millis(limits.auth_timeout_ms), async {
        Ok(
            read_handshake(&mut stream, &mut buf[..ws::HANDSHAKE_LEN_MAX], |b| {
                ws::parse_upgrade_response(b, &nonce)
            })
            .await,
        )
    });
    let (header_len, filled) = handshake
        .await
        .map_err(|e| io::Error::other(e.to_string()))??;
    buf.copy_within(header_len..filled, 0);
    let leftover = filled - header_len;
    let now = unix_ms();
    let session = BtpSession::client(
        now,
        peer,
        limits.auth_timeout_ms as i64,
        limits.in_flight_per_link_max,
        limits.bad_frames_max,
    );
    let (wake, sleep) = local_channel::new_bounded(1);
    let id = state
        .borrow_mut()
        .add_link(Some(session), None, true, None, wake);
    let Some(id) = id else {
        return Err(io::Error::other("links_max reached"));
    };
    state
        .borrow_mut()
        .send_auth(id, dial.username.as_bytes(), dial.token.as_bytes());
    run_link(
        Rc::clone(state),
        stream,
        id,
        sleep,
        ws::Role::Client,
        buf,
        leftover,
    )
    .await;
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

/// The life of an upgraded connection: a writer task, and this task reading.
async fn run_link(
    state: State,
    stream: TcpStream,
    id: LinkId,
    sleep: LocalReceiver<()>,
    role: ws::Role,
    mut buf: Vec<u8>,
    mut filled: usize,
) {
    let fd = Fd(stream.as_raw_fd());
    let (mut reader, writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local(write_link(Rc::clone(&state), id, writer, sleep, fd));
    let frame_len_max = state.borrow().config.limits().frame_len_max;
    let decoder = ws::FrameDecoder::new(role, frame_len_max);
    let mut assembler = MessageAssembler::new(frame_len_max);
    let mut start = 0;
    'read: loop {
        let now = unix_ms();
        loop {
            let frame = match decoder.decode(&mut buf[start..filled]) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    fail_ws(&state, id, e);
                    break 'read;
                }
            };
            let frame_len = frame.len;
            let message = assembler.handle_frame(&mut buf[start..filled], &frame);
            match message {
                Ok(Message::Binary(bytes)) => state.borrow_mut().on_message(now, id, bytes),
                Ok(Message::Ping(payload)) => {
                    state.borrow_mut().push_control(id, Opcode::Pong, payload)
                }
                Ok(Message::Close(close)) => {
                    let code = close.reply_code().0.to_be_bytes();
                    let mut st = state.borrow_mut();
                    st.push_control(id, Opcode::Close, &code);
                    st.close_link(id);
                    st.flush();
                    break 'read;
                }
                Ok(Message::Text | Message::Fragment | Message::Pong(_)) => {}
                Err(e) => {
                    fail_ws(&state, id, e);
                    break 'read;
                }
            }
            start += frame_len;
        }
        {
            let mut st = state.borrow_mut();
            st.flush();
            if st.link(id).is_none_or(|l| l.closing) {
                break;
            }
        }
        if start == filled {
            start = 0;
            filled = 0;
        } else if buf.len() - filled < ws::frame_len_hint(&buf[start..filled]).max(4096) {
            buf.copy_within(start..filled, 0);
            filled -= start;
            start = 0;
        }
        match reader.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    {
        let mut st = state.borrow_mut();
        st.close_link(id);
        st.flush();
    }
    writer_task.await;
    let mut st = state.borrow_mut();
    st.remove_link(id);
    st.flush();
}

fn fail_ws(state: &State, id: LinkId, error: ws::WsError) {
    tracing::debug!("WebSocket error: {error}");
    let mut st = state.borrow_mut();
    st.counters.ws_errors += 1;
    st.push_control(id, Opcode::Close, &error.close_code().0.to_be_bytes());
    st.close_link(id);
    st.flush();
}

/// Writes whatever the core queued on the link, then, once the link is closing and drained,
/// shuts the socket down (which also ends the reader).
pub(crate) async fn write_link<W: futures_lite::AsyncWrite + Unpin>(
    state: State,
    id: LinkId,
    mut writer: W,
    sleep: LocalReceiver<()>,
    fd: Fd,
) {
    super::write_queued(&mut writer, &sleep, |batch| {
        let mut st = state.borrow_mut();
        match st.link_mut(id) {
            Some(link) => {
                std::mem::swap(&mut link.out, batch);
                link.closing
            }
            None => true,
        }
    })
    .await;
    let _ = writer.flush().await;
    let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
}
