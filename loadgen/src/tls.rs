//! TLS on the load generator's connections (`wss://`, `https://`, and sinks that listen with
//! `--sink-cert`), with rustls (ring as its crypto, TLS 1.3 and 1.2) over glommio's sockets
//! through `futures-rustls`.
//!
//! The configs are built once per run, from the flags, by [`client`] (every connection we
//! dial: the CAs of `--ca-file`, or any certificate with `--insecure`, and `--client-cert`
//! presented if given) and [`server`] (`--sink-cert`); the threads share them (`Arc`). A
//! connection is a [`Stream`]: plain TCP, or TLS over TCP, one type for the BTP and HTTP code
//! that reads and writes it. TLS reads go through a receive buffer of [`RX_BUFFER_LEN`] bytes
//! (rustls reads a few kB at a time; the buffer makes that one `recv` per buffer instead). A
//! write hands the whole batch to rustls in one call, as a plaintext write hands it to the
//! socket; rustls seals it into records of up to 16 kB, and each record is one `send`
//! (glommio's socket has no vectored write): a batch is sealed whole, never a record or a
//! `send` per packet.
//!
//! There is no system CA store here: a TLS target needs `--ca-file` or `--insecure` (checked by
//! `cli`). Every error names its flag and its file.

use futures_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use glommio::net::{Preallocated, TcpStream};
use ilp_router::link::tls::MaybeTls;
use ilp_router::link::url::BtpUrl;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Bytes of the receive buffer under a TLS connection.
pub(crate) const RX_BUFFER_LEN: usize = 64 * 1024;

/// How long a TLS handshake may take before the connection is given up.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// The ALPN protocol we offer: WebSocket (RFC 6455) and ILP over HTTP both start as HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A certificate chain and its private key, as given on the command line: the two files and
/// the flags they came from (for error messages).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyPair<'a> {
    /// The flag of the chain, e.g. `--client-cert`.
    pub(crate) cert_flag: &'static str,
    pub(crate) cert: &'a Path,
    /// The flag of the key, e.g. `--client-key`.
    pub(crate) key_flag: &'static str,
    pub(crate) key: &'a Path,
}

/// Whom the connections we dial trust.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trust<'a> {
    /// The CAs in this PEM file (`--ca-file`).
    CaFile(&'a Path),
    /// Any certificate (`--insecure`).
    Anyone,
}

/// The run's TLS for the connections it dials: one client config, shared by every thread.
#[derive(Clone)]
pub(crate) struct Client {
    connector: TlsConnector,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tls::Client").finish_non_exhaustive()
    }
}

/// The run's TLS for the connections its sinks accept: one server config, shared by every
/// thread.
#[derive(Clone)]
pub(crate) struct Server {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tls::Server").finish_non_exhaustive()
    }
}

/// rustls's crypto: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client config of the run: trusting `trust`, presenting `identity` if given, TLS 1.3
/// and 1.2, offering HTTP/1.1 by ALPN.
pub(crate) fn client(trust: Trust<'_>, identity: Option<KeyPair<'_>>) -> Result<Client, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client config: {e}"))?;
    let builder = match trust {
        Trust::CaFile(path) => builder.with_root_certificates(roots(path)?),
        Trust::Anyone => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert { provider })),
    };
    let mut config = match identity {
        Some(pair) => {
            let (chain, key) = key_pair(pair)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| pair_error(pair, &e))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Client {
        connector: TlsConnector::from(Arc::new(config)),
    })
}

/// The server config of the run's listening sinks: `identity` (`--sink-cert`, `--sink-key`),
/// no client certificate asked for, TLS 1.3 and 1.2. No ALPN: a client's offer is not
/// checked.
pub(crate) fn server(identity: KeyPair<'_>) -> Result<Server, String> {
    let (chain, key) = key_pair(identity)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS server config: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| pair_error(identity, &e))?;
    Ok(Server {
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

/// A key pair that rustls refused (the key does not match the certificate, say).
fn pair_error(pair: KeyPair<'_>, error: &rustls::Error) -> String {
    format!(
        "{} {} with {} {}: {error}",
        pair.cert_flag,
        pair.cert.display(),
        pair.key_flag,
        pair.key.display()
    )
}

/// The CAs of `--ca-file`: every certificate in the PEM file, at least one.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("--ca-file", path)? {
        roots
            .add(cert)
            .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The certificate chain and the key of `pair`.
fn key_pair(
    pair: KeyPair<'_>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = certificates(pair.cert_flag, pair.cert)?;
    let key = PrivateKeyDer::from_pem_file(pair.key).map_err(|e| {
        format!(
            "{} {}: no private key read (PKCS#8, PKCS#1 or SEC1 PEM expected): {e}",
            pair.key_flag,
            pair.key.display()
        )
    })?;
    Ok((chain, key))
}

/// Every certificate of the PEM file `path` (given as `flag`), at least one.
fn certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let error = |e: &dyn std::fmt::Display| format!("{flag} {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(&e))?;
    if certs.is_empty() {
        return Err(error(&"no PEM certificate in it"));
    }
    Ok(certs)
}

/// `--insecure`: any server certificate is taken, whoever signed it and whatever it names;
/// the handshake's signatures are still checked against the certificate's key, with the
/// provider's algorithms.
#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One connection: plain TCP, or TLS (either side) over TCP with a receive buffer.
pub(crate) type Stream = MaybeTls<TcpStream, TcpStream<Preallocated>>;

/// Opens a TCP connection to `url` (no Nagle), wrapped in TLS with `tls` when the URL is
/// `wss://` or `https://` (SNI: the URL's host, a name or an IP address). `tls` is the run's
/// client config, there whenever a TLS URL is dialled (`cli` checks that).
pub(crate) async fn dial(url: &BtpUrl, tls: Option<&Client>) -> io::Result<Stream> {
    let tcp = TcpStream::connect(url.host_port())
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    if !url.tls {
        return Ok(MaybeTls::Plain(tcp));
    }
    let Some(tls) = tls else {
        return Err(io::Error::other("a TLS URL needs --ca-file or --insecure"));
    };
    let name = ServerName::try_from(url.host.clone())
        .map_err(|e| io::Error::other(format!("{:?} is not a TLS server name: {e}", url.host)))?;
    let tcp = tcp.buffered_with(Preallocated::new(RX_BUFFER_LEN));
    let handshake = async {
        tls.connector
            .connect(name, tcp)
            .await
            .map_err(|e| handshake_error(&url.host, e))
    };
    let stream = within_handshake_time(handshake).await?;
    Ok(MaybeTls::Tls(Box::new(TlsStream::from(stream))))
}

/// Takes a connection a listener accepted (no Nagle), and with `tls` runs the server side of
/// the TLS handshake on it.
pub(crate) async fn accept(tcp: TcpStream, tls: Option<&Server>) -> io::Result<Stream> {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(MaybeTls::Plain(tcp));
    };
    let tcp = tcp.buffered_with(Preallocated::new(RX_BUFFER_LEN));
    let handshake = async {
        tls.acceptor
            .accept(tcp)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake (as the sink): {e}")))
    };
    let stream = within_handshake_time(handshake).await?;
    Ok(MaybeTls::Tls(Box::new(TlsStream::from(stream))))
}

/// `handshake`, or an error once it has taken [`HANDSHAKE_WITHIN`].
async fn within_handshake_time<T>(
    handshake: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let late = async {
        glommio::timer::sleep(HANDSHAKE_WITHIN).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the TLS handshake took over {} s",
                HANDSHAKE_WITHIN.as_secs()
            ),
        ))
    };
    futures_lite::future::or(handshake, late).await
}

/// A failed client handshake with `host`, said so, with a hint when the server's certificate
/// was refused.
fn handshake_error(host: &str, error: io::Error) -> io::Error {
    let refused = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
    let hint = if refused {
        " (the server's certificate is not one --ca-file's CAs vouch for under this name; \
         or pass --insecure)"
    } else {
        ""
    };
    io::Error::new(
        error.kind(),
        format!("TLS handshake with {host}: {error}{hint}"),
    )
}
