//! A link's byte stream: a plain socket, or TLS over one (rustls through futures-rustls, on
//! this core like every other task of the link). The readers and writers of `conn.rs` and
//! `http.rs` see one type either way.
//!
//! TLS keeps the writers' batching: a writer hands everything queued on the link to one
//! `write` call, and rustls turns it into as few records as the 16 KiB record limit allows
//! (not one per frame), written to the socket together.
//!
//! | step | bound |
//! | --- | --- |
//! | TLS handshake of an accepted connection | within `auth_timeout_ms` of the accept, counted as unauthenticated (`unauthenticated_max`) like the WebSocket handshake after it |
//! | TLS handshake of a connection we dial | within `auth_timeout_ms` of the connect |
//! | a ClientHello that is not one (garbage, plain HTTP, a WebSocket upgrade) | the handshake fails, counted in `tls_handshake_failures`, closed |
//! | a client certificate refused ([`crate::link::tls`]) | the handshake fails, counted in `tls_cert_refusals`, the reason logged |

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use glommio::net::{Preallocated, TcpStream};
use rustls::{ClientConfig, ServerConfig};

use super::conn::Fd;
use crate::engine::PeerId;
use crate::link::tls::{self, CertRefusal, ClientIdentities, MaybeTls};

/// A link's connection: plaintext, or TLS (either side) over the socket with a receive
/// buffer of [`TLS_RX_BUFFER_LEN`] (rustls reads a few kB at a time: the buffer makes that one
/// `recv` per buffer).
pub(crate) type LinkStream = MaybeTls<TcpStream, TcpStream<Preallocated>>;

/// Bytes of the receive buffer under a TLS link: two full records.
pub(crate) const TLS_RX_BUFFER_LEN: usize = 32 * 1024;

/// What the link tasks need of a [`LinkStream`] beyond reading and writing.
pub(crate) trait LinkSocket {
    /// Its descriptor.
    fn fd(&self) -> RawFd;
    /// Ends our sending side: a TLS close_notify first (best effort), then a FIN.
    async fn shutdown_write(&mut self);
}

impl LinkSocket for LinkStream {
    fn fd(&self) -> RawFd {
        match self {
            MaybeTls::Plain(s) => s.as_raw_fd(),
            MaybeTls::Tls(s) => s.get_ref().0.as_raw_fd(),
        }
    }

    async fn shutdown_write(&mut self) {
        use futures_lite::AsyncWriteExt;
        if let MaybeTls::Tls(s) = self {
            match s.as_mut() {
                TlsStream::Client(c) => c.get_mut().1.send_close_notify(),
                TlsStream::Server(c) => c.get_mut().1.send_close_notify(),
            }
            let _ = self.flush().await;
        }
        let fd = Fd(self.fd());
        let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Write);
    }
}

/// Why the TLS handshake of an accepted connection failed.
#[derive(Debug)]
pub(crate) enum AcceptFailure {
    /// Its client certificate was refused, for this reason.
    Cert(CertRefusal),
    /// Anything else: not TLS, a protocol error, the peer went away, the deadline.
    Handshake(String),
}

/// Runs the server side of a TLS handshake on `stream` within `within`. On success: the
/// stream, and the peer its client certificate stands for (`None` without one, or for a
/// certificate that names nobody).
pub(crate) async fn accept(
    stream: TcpStream,
    config: Arc<ServerConfig>,
    identities: &ClientIdentities,
    within: Duration,
) -> Result<(LinkStream, Option<PeerId>), AcceptFailure> {
    let acceptor = TlsAcceptor::from(config);
    let stream = stream.buffered_with(Preallocated::new(TLS_RX_BUFFER_LEN));
    let handshake =
        glommio::timer::timeout(within, async { Ok(acceptor.accept(stream).await) }).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(failure(&e)),
        Err(_) => return Err(AcceptFailure::Handshake("handshake deadline passed".into())),
    };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| identities.peer_of(cert));
    Ok((MaybeTls::Tls(Box::new(TlsStream::Server(tls))), peer))
}

/// What a failed accept's I/O error carries: our verifier's refusal, or the rest.
fn failure(error: &io::Error) -> AcceptFailure {
    let refusal = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(CertRefusal::of);
    match refusal {
        Some(refusal) => AcceptFailure::Cert(refusal),
        None => AcceptFailure::Handshake(error.to_string()),
    }
}

/// Runs the client side of a TLS handshake to `host` (the name its certificate must hold)
/// on `stream`, within `within`.
pub(crate) async fn connect(
    stream: TcpStream,
    config: Arc<ClientConfig>,
    host: &str,
    within: Duration,
) -> io::Result<LinkStream> {
    let name = tls::server_name(host).map_err(io::Error::other)?;
    let connector = TlsConnector::from(config);
    let stream = stream.buffered_with(Preallocated::new(TLS_RX_BUFFER_LEN));
    let handshake =
        glommio::timer::timeout(within, async { Ok(connector.connect(name, stream).await) }).await;
    match handshake {
        Ok(Ok(tls)) => Ok(MaybeTls::Tls(Box::new(TlsStream::Client(tls)))),
        Ok(Err(e)) => Err(io::Error::other(format!("TLS handshake with {host}: {e}"))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("TLS handshake with {host}: deadline passed"),
        )),
    }
}
