//! TLS on links (`wss://`, `https://`, the `btp_tls` and `http_tls` listeners): the rustls
//! configurations the config builds once per load, and the check of a peer's client
//! certificate. rustls is sans IO like the rest of this room; the sockets are `shard`'s.
//!
//! # What is accepted
//!
//! | side | versions | certificates |
//! | --- | --- | --- |
//! | our listeners | TLS 1.3 and 1.2 | our chain and key (`[tls] cert_file`, `key_file`); a client certificate is asked for, and required with `[tls] client_cert_required` |
//! | our dialers | TLS 1.3 and 1.2 | the server's chain against `[tls] ca_file`, or the system's CAs without it; the host of the URL must be in it; a peer's `client_cert_file` is presented when set |
//!
//! # Client certificates (mutual TLS)
//!
//! A peer is known by its certificate in one of two ways, checked in this order:
//!
//! 1. **Pinned**: the SHA-256 of the certificate (its DER) is in the peer's
//!    `client_cert_sha256`. The pin is the trust: no chain is needed (a self-signed
//!    certificate does), but the certificate must be within its validity period, and the
//!    client must prove it holds the key (rustls checks the handshake signature).
//! 2. **Named by a CA**: the chain verifies to `[tls] client_ca_file` (webpki: signatures,
//!    validity, client-auth usage) and the certificate holds the peer's `client_cert_name` as
//!    a DNS subjectAltName.
//!
//! Any other certificate fails the handshake: [`CertRefusal`] says which check failed, in our
//! log and counters, never to the peer (it sees a TLS alert). A client with no certificate is
//! let through the handshake and must authenticate with a token as before, unless it is a
//! peer known by a certificate: that one must show it (its tokens alone are refused). One
//! whose certificate names a peer may leave the token out (BTP: an empty `auth_token`; HTTP:
//! no `Authorization`), or give it too; a token or a name for another peer is refused.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::id::PeerId;

/// A connection's bytes: a plain stream, or TLS (either side) over one, as one type for the
/// code that reads and writes it (the router's links, the load generator's connections).
/// `T` may differ from `P` (a socket with a receive buffer under TLS, since rustls reads a
/// few kB at a time).
#[derive(Debug)]
pub enum MaybeTls<P, T> {
    /// No TLS.
    Plain(P),
    /// TLS, client or server side.
    Tls(Box<futures_rustls::TlsStream<T>>),
}

impl<P, T> AsyncRead for MaybeTls<P, T>
where
    P: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<P, T> AsyncWrite for MaybeTls<P, T>
where
    P: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    /// TLS: sends close_notify, then closes the stream under it.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_close(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// The crypto every config of ours uses: ring (see `Cargo.toml`).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its key, parsed from PEM.
pub struct Identity {
    /// End-entity certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The end-entity certificate's key.
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    // Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Every certificate in `pem` (a chain, or a CA bundle); an error when there is none or one
/// is unreadable.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let certs = certs.map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block in it".to_owned());
    }
    Ok(certs)
}

/// The private key in `pem` (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no private key in it: {e}"))
}

/// Checks that `key` belongs to `chain[0]` and that the provider can sign with it.
pub fn check_identity(identity: &Identity) -> Result<(), String> {
    let key = provider()
        .key_provider
        .load_private_key(identity.key.clone_key())
        .map_err(|e| format!("the key cannot be used: {e}"))?;
    let certified = rustls::sign::CertifiedKey::new(identity.chain.clone(), key);
    certified
        .keys_match()
        .map_err(|e| format!("the key is not the certificate's: {e}"))
}

/// The SHA-256 of a certificate's DER, as pinned by `client_cert_sha256`.
pub fn fingerprint(cert: &[u8]) -> [u8; 32] {
    Sha256::digest(cert).into()
}

/// A fingerprint written as 64 hex digits, `:` between bytes allowed (as `openssl x509
/// -fingerprint -sha256` prints it).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let digits: Vec<u8> = text.bytes().filter(|&b| b != b':').collect();
    let mut out = [0u8; 32];
    if digits.len() != 64 {
        return Err(format!(
            "{text:?} is not a SHA-256 fingerprint: 64 hex digits, e.g. as `openssl x509 \
             -noout -fingerprint -sha256` prints them"
        ));
    }
    for (i, pair) in digits.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).unwrap_or("zz");
        out[i] = u8::from_str_radix(hex, 16)
            .map_err(|_| format!("{text:?} holds {hex:?}, not a hex byte"))?;
    }
    Ok(out)
}

/// Lower-case hex, for logs.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which peer each client certificate may stand for: pins and CA-checked names.
#[derive(Debug, Default, Clone)]
pub struct ClientIdentities {
    /// `client_cert_sha256` of every peer.
    pub pins: HashMap<[u8; 32], PeerId>,
    /// `client_cert_name` of every peer, checked against `client_ca`.
    pub names: Vec<(PeerId, String)>,
}

impl ClientIdentities {
    /// Every peer a certificate may stand for.
    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.pins
            .values()
            .copied()
            .chain(self.names.iter().map(|(peer, _)| *peer))
    }

    /// The peer a certificate that passed the handshake stands for: its pin's, or the first
    /// whose `client_cert_name` it holds. `None`: it names nobody (its CA signed it, but for
    /// no configured name), and the link must authenticate with a token.
    pub fn peer_of(&self, cert: &CertificateDer<'_>) -> Option<PeerId> {
        if let Some(&peer) = self.pins.get(&fingerprint(cert)) {
            return Some(peer);
        }
        let end_entity = webpki::EndEntityCert::try_from(cert).ok()?;
        self.names.iter().find_map(|(peer, name)| {
            let name = ServerName::try_from(name.as_str()).ok()?;
            end_entity
                .verify_is_valid_for_subject_name(&name)
                .is_ok()
                .then_some(*peer)
        })
    }
}

/// Why a client certificate was refused at the handshake, for the log and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRefusal {
    /// Pinned, but outside its validity period.
    PinnedExpired,
    /// Pinned, but its validity could not be read.
    PinnedUnreadable,
    /// Not pinned by any peer, and no `client_ca_file` to check it against.
    NotPinned,
    /// Not pinned, and its chain does not verify to `client_ca_file` (or it expired).
    CaRefused,
    /// None, where `tls.client_cert_required` asks every client for one.
    Missing,
}

impl CertRefusal {
    /// How the log says it.
    pub fn as_str(self) -> &'static str {
        match self {
            CertRefusal::PinnedExpired => "pinned certificate outside its validity period",
            CertRefusal::PinnedUnreadable => "pinned certificate with an unreadable validity",
            CertRefusal::NotPinned => "certificate pinned by no peer (and no client_ca_file)",
            CertRefusal::CaRefused => "certificate not pinned and refused by client_ca_file",
            CertRefusal::Missing => "no certificate, and tls.client_cert_required is set",
        }
    }

    /// The [`CertRefusal`] inside a rustls error our verifier returned, if it is one.
    pub fn of(error: &rustls::Error) -> Option<CertRefusal> {
        match error {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                other.0.downcast_ref::<RefusalError>().map(|r| r.0)
            }
            rustls::Error::NoCertificatesPresented => Some(CertRefusal::Missing),
            _ => None,
        }
    }
}

/// A [`CertRefusal`] carried through rustls's error type.
#[derive(Debug)]
struct RefusalError(CertRefusal);

impl fmt::Display for RefusalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl std::error::Error for RefusalError {}

fn refuse(refusal: CertRefusal) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        RefusalError(refusal),
    ))))
}

/// The client-certificate check of our listeners (see the module docs).
#[derive(Debug)]
struct PeerCertVerifier {
    /// A client without a certificate fails the handshake (`tls.client_cert_required`).
    required: bool,
    pins: Vec<[u8; 32]>,
    ca: Option<Arc<dyn ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for PeerCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.as_ref().map_or(&[], |ca| ca.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let print = fingerprint(end_entity);
        if self.pins.contains(&print) {
            let Some((not_before, not_after)) = validity(end_entity) else {
                return Err(refuse(CertRefusal::PinnedUnreadable));
            };
            let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            if now < not_before || now > not_after {
                return Err(refuse(CertRefusal::PinnedExpired));
            }
            return Ok(ClientCertVerified::assertion());
        }
        match &self.ca {
            None => Err(refuse(CertRefusal::NotPinned)),
            Some(ca) => ca
                .verify_client_cert(end_entity, intermediates, now)
                .map_err(|_| refuse(CertRefusal::CaRefused)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The server config of our TLS listeners: `identity`, TLS 1.3 and 1.2, client
/// certificates checked against `pins` and `client_ca`, and required of every client when
/// `required` (otherwise asked for).
pub fn server_config(
    identity: &Identity,
    pins: &ClientIdentities,
    client_ca: Option<&[CertificateDer<'static>]>,
    required: bool,
) -> Result<Arc<ServerConfig>, String> {
    let provider = provider();
    let ca = match client_ca {
        None => None,
        Some(certs) => {
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert.clone())
                    .map_err(|e| format!("a CA certificate is unusable: {e}"))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| format!("cannot check client certificates with it: {e}"))?;
            Some(verifier)
        }
    };
    let verifier = PeerCertVerifier {
        required,
        pins: pins.pins.keys().copied().collect(),
        ca,
        provider: Arc::clone(&provider),
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| format!("the certificate and key cannot be served: {e}"))?;
    Ok(Arc::new(config))
}

/// The client config of our dialers: the server is checked against `roots`; `identity`, when
/// given, is our client certificate.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    identity: Option<&Identity>,
) -> Result<Arc<ClientConfig>, String> {
    let mut store = RootCertStore::empty();
    let (_, unusable) = store.add_parsable_certificates(roots.iter().cloned());
    if store.is_empty() {
        return Err(format!(
            "no usable CA certificate ({unusable} could not be used)"
        ));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| format!("the client certificate and key cannot be used: {e}"))?,
    };
    Ok(Arc::new(config))
}

/// The name a dialled URL's host is checked as: a DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned()).map_err(|e| format!("{host:?} cannot be checked: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The validity of a certificate (X.509 `TBSCertificate.validity`), for pinned certificates
// ---------------------------------------------------------------------------------------------

/// `notBefore` and `notAfter` of a DER certificate, in Unix seconds; `None` when unreadable.
pub fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    let (tag, certificate, _) = der(cert)?;
    (tag == 0x30).then_some(())?;
    let (tag, tbs, _) = der(certificate)?;
    (tag == 0x30).then_some(())?;
    let mut rest = tbs;
    // version [0] EXPLICIT, optional.
    if rest.first() == Some(&0xa0) {
        rest = der(rest)?.2;
    }
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        rest = der(rest)?.2;
    }
    let (tag, validity, _) = der(rest)?;
    (tag == 0x30).then_some(())?;
    let (tag, not_before, rest) = der(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = der(rest)?;
    Some((not_before, time(tag, not_after)?))
}

/// One DER element at the front of `bytes`: its tag, its contents and what follows it.
fn der(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A `UTCTime` (tag 0x17, `YYMMDDHHMMSSZ`, years 1950–2049) or `GeneralizedTime` (0x18,
/// `YYYYMMDDHHMMSSZ`) in Unix seconds.
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    let (year, rest) = match (tag, text.len()) {
        (0x17, 13) => {
            let yy = digits(&text[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (0x18, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let (month, day) = (digits(&rest[0..2])?, digits(&rest[2..4])?);
    let (hour, minute, second) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn times_and_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x18, b"20261202100000Z"), Some(1_796_205_600));
        assert_eq!(time(0x17, b"701301000000Z"), None);
        assert_eq!(time(0x17, b"700101000000+"), None);
        assert_eq!(time(0x18, b"700101000000Z"), None);
    }

    #[test]
    fn fingerprints_are_64_hex_digits_with_or_without_colons() {
        let bytes: Vec<u8> = (0..32).collect();
        let plain = hex(&bytes);
        assert_eq!(parse_fingerprint(&plain).unwrap().to_vec(), bytes);
        let colons: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(
            parse_fingerprint(&colons.join(":")).unwrap().to_vec(),
            bytes
        );
        assert!(parse_fingerprint("abcd")
            .unwrap_err()
            .contains("64 hex digits"));
        let bad = format!("zz{}", &plain[2..]);
        assert!(parse_fingerprint(&bad)
            .unwrap_err()
            .contains("not a hex byte"));
    }

    #[test]
    fn truncated_der_is_unreadable_not_a_panic() {
        assert_eq!(validity(&[]), None);
        assert_eq!(validity(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(validity(&[0x30, 0x03, 0x30, 0x01]), None);
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let _ = validity(&bytes);
        }
    }
}
