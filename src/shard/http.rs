//! ILP over HTTP (RFC 35, synchronous mode) from peers: one task per connection reads a
//! request, authenticates its bearer token, hands the Prepare to the core and waits for the
//! answer before it takes the next request, so answers leave in request order (HTTP/1.1
//! keep-alive, pipelining included). A writer task flushes what the core queued, as for BTP.

use super::conn::{write_link, Fd};
use super::core::{unix_ms, CoreState, HttpLink};
use crate::link::http::{parse_request, HttpError, HEAD_LEN_MAX};
use futures_lite::io::AsyncReadExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

/// What reading one request ended with.
enum Read {
    /// A whole request is in the buffer: the peer, where the body is, and keep-alive.
    Request {
        peer: crate::engine::PeerId,
        head_len: usize,
        body_len: usize,
        keep_alive: bool,
    },
    /// Answer with this status and close.
    Refuse(u16),
    /// The peer closed, or the read failed or timed out: just close.
    Gone,
}

/// Serves one HTTP connection until the peer or the router ends it.
pub(crate) async fn serve_http(state: Rc<RefCell<CoreState>>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (body_len_max, timeout_ms) = {
        let st = state.borrow();
        let limits = st.config.limits();
        (limits.frame_len_max, limits.auth_timeout_ms)
    };
    let (wake, sleep) = local_channel::new_bounded(1);
    let (answered, answer) = local_channel::new_bounded(1);
    let http = HttpLink {
        keep_alive: true,
        awaiting: false,
        answered,
    };
    let Some(id) = state
        .borrow_mut()
        .add_link(None, Some(http), false, None, wake)
    else {
        tracing::warn!("links_max reached: HTTP connection refused");
        return;
    };
    let fd = Fd(stream.as_raw_fd());
    let (mut reader, writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local(write_link(Rc::clone(&state), id, writer, sleep, fd));
    let mut buf = vec![0u8; HEAD_LEN_MAX + body_len_max];
    let mut filled = 0;
    loop {
        let read = glommio::timer::timeout(Duration::from_millis(timeout_ms), async {
            Ok(read_request(&state, &mut reader, &mut buf, &mut filled, body_len_max).await)
        })
        .await
        .unwrap_or(Read::Gone);
        let (peer, head_len, body_len, keep_alive) = match read {
            Read::Request {
                peer,
                head_len,
                body_len,
                keep_alive,
            } => (peer, head_len, body_len, keep_alive),
            Read::Refuse(status) => {
                let mut st = state.borrow_mut();
                st.http_status(id, status, false);
                st.flush();
                break;
            }
            Read::Gone => break,
        };
        let end = head_len + body_len;
        {
            let mut st = state.borrow_mut();
            st.on_http_prepare(unix_ms(), id, peer, &mut buf[head_len..end], keep_alive);
            st.flush();
        }
        // One request at a time: the answer (a local Reject now, or the next hop's reply or
        // an expiry later) is written before the next request is read.
        while state.borrow().http_awaiting(id) {
            if answer.recv().await.is_none() {
                break;
            }
        }
        buf.copy_within(end..filled, 0);
        filled -= end;
        if !keep_alive || state.borrow().link(id).is_none_or(|l| l.closing) {
            break;
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

async fn read_request<R: futures_lite::AsyncRead + Unpin>(
    state: &Rc<RefCell<CoreState>>,
    reader: &mut R,
    buf: &mut [u8],
    filled: &mut usize,
    body_len_max: usize,
) -> Read {
    loop {
        match parse_request(&buf[..*filled], body_len_max) {
            Ok(Some(request)) => {
                let peer = state
                    .borrow()
                    .authenticate_http(request.account_from_path(), request.token);
                let Some(peer) = peer else {
                    // No hint whether the name or the token was wrong.
                    return Read::Refuse(HttpError::Unauthorized.status());
                };
                let (head_len, body_len, keep_alive) =
                    (request.head_len, request.body_len, request.keep_alive);
                while *filled < head_len + body_len {
                    match reader.read(&mut buf[*filled..]).await {
                        Ok(0) | Err(_) => return Read::Gone,
                        Ok(n) => *filled += n,
                    }
                }
                return Read::Request {
                    peer,
                    head_len,
                    body_len,
                    keep_alive,
                };
            }
            Ok(None) => {}
            Err(error) => return Read::Refuse(error.status()),
        }
        if *filled == buf.len() {
            return Read::Refuse(HttpError::HeadTooLarge.status());
        }
        match reader.read(&mut buf[*filled..]).await {
            Ok(0) | Err(_) => return Read::Gone,
            Ok(n) => *filled += n,
        }
    }
}

/// Opens one HTTP connection to a peer we POST to (`http_url`) and serves the core's
/// requests on it, one at a time, until either side closes it.
pub(crate) async fn dial_http(state: Rc<RefCell<CoreState>>, peer: crate::engine::PeerId) {
    let (address, connect_ms, body_len_max) = {
        let st = state.borrow();
        let dial = st.config.peer(peer).http.as_ref().expect("an HTTP peer");
        let limits = st.config.limits();
        (
            format!("{}:{}", dial.url.host, dial.url.port),
            limits.auth_timeout_ms,
            limits.frame_len_max,
        )
    };
    let connect =
        TcpStream::connect_timeout(address.as_str(), Duration::from_millis(connect_ms)).await;
    let stream = match connect {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(%address, "HTTP connection failed: {e}");
            state.borrow_mut().http_client_gone(unix_ms(), peer, None);
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (wake, sleep) = local_channel::new_bounded(1);
    let id = state.borrow_mut().add_link(None, None, false, None, wake);
    let Some(id) = id else {
        state.borrow_mut().http_client_gone(unix_ms(), peer, None);
        return;
    };
    if let Some(link) = state.borrow_mut().link_mut(id) {
        link.http_client = Some(super::core::HttpClientLink { peer, busy: None });
    }
    let fd = Fd(stream.as_raw_fd());
    let (mut reader, writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local(write_link(Rc::clone(&state), id, writer, sleep, fd));
    state.borrow_mut().http_client_ready(id, peer);
    let mut buf = vec![0u8; HEAD_LEN_MAX + body_len_max];
    let mut filled = 0;
    'read: loop {
        let response = loop {
            match crate::link::http::parse_response(&buf[..filled], body_len_max) {
                Ok(Some(response)) => break response,
                Ok(None) if filled < buf.len() => {}
                _ => break 'read,
            }
            match reader.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => break 'read,
                Ok(n) => filled += n,
            }
        };
        let end = response.head_len + response.body_len;
        while filled < end {
            match reader.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => break 'read,
                Ok(n) => filled += n,
            }
        }
        {
            let mut st = state.borrow_mut();
            st.on_http_client_response(
                unix_ms(),
                id,
                response.status,
                &buf[response.head_len..end],
            );
            st.flush();
        }
        buf.copy_within(end..filled, 0);
        filled -= end;
        if !response.keep_alive || state.borrow().link(id).is_none_or(|l| l.closing) {
            break;
        }
        state.borrow_mut().http_client_ready(id, peer);
    }
    {
        let mut st = state.borrow_mut();
        st.close_link(id);
        st.flush();
    }
    writer_task.await;
    let mut st = state.borrow_mut();
    st.http_client_gone(unix_ms(), peer, Some(id));
    st.remove_link(id);
    st.flush();
}
