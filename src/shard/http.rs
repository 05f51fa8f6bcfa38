//! ILP over HTTP (RFC 35, synchronous mode) from peers: one task per connection reads
//! requests, authenticates each bearer token and hands every complete Prepare to the core at
//! once (HTTP/1.1 keep-alive and pipelining); the core writes the answers in request order. A
//! writer task flushes what the core queued, as for BTP. Also the client side: connections
//! we open to peers with `http_url`.

use super::conn::{write_link, Fd};
use super::core::{unix_ms, CoreState, HttpLink, HTTP_PIPELINE_MAX};
use crate::link::http::{parse_request, HEAD_LEN_MAX};
use futures_lite::io::AsyncReadExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

/// Serves one HTTP connection until the peer or the router ends it. Every complete request in
/// the read buffer is handed to the core at once (pipelining, up to `HTTP_PIPELINE_MAX` in
/// flight); the core writes the answers in request order.
pub(crate) async fn serve_http(state: Rc<RefCell<CoreState>>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (body_len_max, timeout_ms) = {
        let st = state.borrow();
        let limits = st.config.limits();
        (limits.frame_len_max, limits.auth_timeout_ms)
    };
    let (wake, sleep) = local_channel::new_bounded(1);
    let (answered, answer) = local_channel::new_bounded(1);
    let http = HttpLink::new(answered);
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
        let (start, finished) = dispatch(&state, id, &mut buf[..filled], body_len_max);
        state.borrow_mut().flush();
        buf.copy_within(start..filled, 0);
        filled -= start;
        if finished || state.borrow().link(id).is_none_or(|l| l.closing) {
            break;
        }
        if state.borrow().http_pending(id) >= HTTP_PIPELINE_MAX {
            if answer.recv().await.is_none() {
                break;
            }
            continue;
        }
        let read = glommio::timer::timeout(Duration::from_millis(timeout_ms), async {
            Ok(reader.read(&mut buf[filled..]).await)
        })
        .await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => filled += n,
            // A stalled request times out; a connection waiting only for answers does not.
            Err(_) if state.borrow().http_pending(id) == 0 => break,
            Err(_) => {}
        }
    }
    // Answers still owed leave before the connection closes (bounded: each comes by its
    // Prepare's expiry at the latest, and the wait by the request timeout).
    let owed = async {
        while state.borrow().http_pending(id) > 0
            && state.borrow().link(id).is_some_and(|l| !l.closing)
        {
            if answer.recv().await.is_none() {
                break;
            }
        }
        Ok(())
    };
    let _ = glommio::timer::timeout(Duration::from_millis(timeout_ms), owed).await;
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

/// Hands every complete request at the front of `buf` to the core; returns how many bytes
/// were consumed and whether the connection is finished (a refused request, or
/// `Connection: close`).
fn dispatch(
    state: &Rc<RefCell<CoreState>>,
    id: super::core::LinkId,
    buf: &mut [u8],
    body_len_max: usize,
) -> (usize, bool) {
    let now = unix_ms();
    let mut start = 0;
    while state.borrow().http_pending(id) < HTTP_PIPELINE_MAX {
        let request = match parse_request(&buf[start..], body_len_max) {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(error) => {
                let refuse = Some(error.status());
                state
                    .borrow_mut()
                    .on_http_request(now, id, None, &mut [], false, refuse);
                return (buf.len(), true);
            }
        };
        let (head_len, body_len, keep_alive) =
            (request.head_len, request.body_len, request.keep_alive);
        if start + head_len + body_len > buf.len() {
            break; // the body is still arriving
        }
        // No hint whether the name or the token was wrong: a plain 401.
        let peer = state
            .borrow()
            .authenticate_http(request.account_from_path(), request.token);
        let body = &mut buf[start + head_len..start + head_len + body_len];
        state
            .borrow_mut()
            .on_http_request(now, id, peer, body, keep_alive, None);
        start += head_len + body_len;
        if peer.is_none() || !keep_alive {
            return (start, true);
        }
    }
    (start, false)
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
        link.http_client = Some(super::core::HttpClientLink {
            peer,
            busy: Default::default(),
        });
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
