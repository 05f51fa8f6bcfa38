//! `[tls]`, `listen.btp_tls` / `listen.http_tls` and the TLS keys of `[[peers]]`: checked and
//! loaded into the rustls configs the cores use ([`crate::link::tls`]). Every file is read
//! when the config is loaded, so a reload with a new certificate either takes effect whole
//! (new connections get it, open links keep theirs) or is refused with the file named.
//!
//! | key | meaning |
//! | --- | --- |
//! | `tls.cert_file`, `tls.key_file` | our certificate chain and key (PEM), for the TLS listeners; required with one |
//! | `tls.ca_file` | the CAs we trust for `wss://` and `https://` peers we dial; default: the system's |
//! | `tls.client_ca_file` | the CAs that sign peers' client certificates, for `client_cert_name` |
//! | `tls.client_cert_required` | `true`: a client without a certificate fails the handshake (every peer on the TLS listeners uses one); default `false` |
//! | `peers[i].client_cert_sha256` | fingerprints of the client certificates that stand for the peer |
//! | `peers[i].client_cert_name` | a DNS name a certificate from `client_ca_file` must hold to stand for the peer |
//! | `peers[i].client_cert_file`, `client_key_file` | the client certificate we present when we dial the peer over TLS |

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ServerConfig};
use sha2::{Digest, Sha256};

use super::error::peer_key;
use super::peer::{CertUse, Outgoing, Peer};
use super::raw::{RawPeer, RawTls};
use super::ConfigError;
use crate::link::tls::{self, ClientIdentities, Identity};

/// The TLS side of a validated config.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// Our listeners' config, when a TLS listener is set.
    pub server: Option<Arc<ServerConfig>>,
    /// Which peer a client certificate stands for.
    pub identities: ClientIdentities,
    /// By peer index: how we dial it over TLS (`wss://`, `https://`); `None` in plaintext.
    pub dial: Vec<Option<Arc<ClientConfig>>>,
    /// SHA-256 over every file read and every pin and name: a reload that changes any of
    /// them says so.
    pub digest: [u8; 32],
}

impl TlsConfig {
    /// The peer at index `i` of the file has id `moved[i]` among `slots` peer slots (see
    /// `Config::keep_ids_of`).
    pub(super) fn remap(&mut self, moved: &[crate::id::PeerId], slots: usize) {
        for peer in self.identities.pins.values_mut() {
            *peer = moved[peer.index()];
        }
        for (peer, _) in &mut self.identities.names {
            *peer = moved[peer.index()];
        }
        let mut dial = vec![None; slots];
        for (i, config) in std::mem::take(&mut self.dial).into_iter().enumerate() {
            dial[moved[i].index()] = config;
        }
        self.dial = dial;
    }

    /// How we dial `peer` over TLS; `None` when in plaintext (or not at all).
    pub fn dial(&self, peer: crate::id::PeerId) -> Option<&Arc<ClientConfig>> {
        self.dial.get(peer.index()).and_then(Option::as_ref)
    }
}

/// The TLS keys of one `[[peers]]` entry, taken from it before its other keys are checked.
#[derive(Debug, Default)]
pub(super) struct PeerTls {
    client_cert_sha256: Vec<String>,
    client_cert_name: Option<String>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
}

impl PeerTls {
    /// Takes the TLS keys out of `raw`.
    pub(super) fn take(raw: &mut RawPeer) -> PeerTls {
        PeerTls {
            client_cert_sha256: std::mem::take(&mut raw.client_cert_sha256),
            client_cert_name: raw.client_cert_name.take(),
            client_cert_file: raw.client_cert_file.take(),
            client_key_file: raw.client_key_file.take(),
        }
    }

    /// The peer may be known by its client certificate.
    pub(super) fn identifies(&self) -> bool {
        !self.client_cert_sha256.is_empty() || self.client_cert_name.is_some()
    }

    /// What the peer's other keys need to know.
    pub(super) fn cert_use(&self) -> CertUse {
        CertUse {
            identifies: self.identifies(),
            presents: self.client_cert_file.is_some(),
        }
    }
}

/// Checks and loads `[tls]` with the peers' TLS keys. `listening_tls`: a TLS listener is set.
pub(super) fn check_tls(
    raw: RawTls,
    peer_tls: &[PeerTls],
    peers: &[Peer],
    listening_tls: bool,
) -> Result<TlsConfig, ConfigError> {
    let mut digest = Sha256::new();
    digest.update([u8::from(raw.client_cert_required.unwrap_or(false))]);
    let identities = check_identities(&raw, peer_tls, listening_tls)?;
    for (peer, tls) in peers.iter().zip(peer_tls).filter(|(_, t)| t.identifies()) {
        digest.update(peer.name.as_bytes());
        for pin in &tls.client_cert_sha256 {
            digest.update(pin.as_bytes());
        }
        digest.update(tls.client_cert_name.as_deref().unwrap_or("-").as_bytes());
    }
    let server = match (listening_tls, &raw.cert_file, &raw.key_file) {
        (false, None, None) => None,
        (false, _, _) => {
            return Err(ConfigError::invalid(
                "tls.cert_file",
                "set, but neither listen.btp_tls nor listen.http_tls is: our certificate is \
                 only served by a TLS listener",
            ))
        }
        (true, Some(cert), Some(key)) => {
            let identity = load_identity(&mut digest, "tls.cert_file", cert, "tls.key_file", key)?;
            let client_ca = match &raw.client_ca_file {
                None => None,
                Some(path) => Some(load_certs(&mut digest, "tls.client_ca_file", path)?),
            };
            let required = raw.client_cert_required.unwrap_or(false);
            let config = tls::server_config(&identity, &identities, client_ca.as_deref(), required)
                .map_err(|e| ConfigError::invalid("tls.cert_file", e))?;
            Some(config)
        }
        (true, None, _) | (true, _, None) => {
            let key = if raw.cert_file.is_none() {
                "tls.cert_file"
            } else {
                "tls.key_file"
            };
            return Err(ConfigError::invalid(
                key,
                "not set, but a TLS listener (listen.btp_tls or listen.http_tls) needs our \
                 certificate chain and key: give tls.cert_file and tls.key_file (PEM)",
            ));
        }
    };
    let dial = check_dials(&mut digest, &raw, peer_tls, peers)?;
    Ok(TlsConfig {
        server,
        identities,
        dial,
        digest: digest.finalize().into(),
    })
}

/// `client_cert_sha256` and `client_cert_name` of every peer: fingerprints unique across
/// peers, names only with `tls.client_ca_file`, and both only with a TLS listener.
fn check_identities(
    raw: &RawTls,
    peer_tls: &[PeerTls],
    listening_tls: bool,
) -> Result<ClientIdentities, ConfigError> {
    let mut identities = ClientIdentities::default();
    let mut pinned_at: HashMap<[u8; 32], usize> = HashMap::new();
    for (i, peer) in peer_tls.iter().enumerate() {
        let id = crate::id::PeerId(u16::try_from(i).expect("peer count checked"));
        if peer.identifies() && !listening_tls {
            let field = if peer.client_cert_sha256.is_empty() {
                "client_cert_name"
            } else {
                "client_cert_sha256"
            };
            return Err(ConfigError::invalid(
                peer_key(i, field),
                "set, but no TLS listener is (listen.btp_tls or listen.http_tls): client \
                 certificates are only checked there",
            ));
        }
        for (j, text) in peer.client_cert_sha256.iter().enumerate() {
            let key = format!("peers[{i}].client_cert_sha256[{j}]");
            let print = tls::parse_fingerprint(text).map_err(|e| ConfigError::invalid(&key, e))?;
            if let Some(other) = pinned_at.insert(print, i) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "the same fingerprint as a pin of peers[{other}]: a certificate stands \
                         for one peer"
                    ),
                ));
            }
            identities.pins.insert(print, id);
        }
        if let Some(name) = &peer.client_cert_name {
            if raw.client_ca_file.is_none() {
                return Err(ConfigError::invalid(
                    peer_key(i, "client_cert_name"),
                    "set, but tls.client_ca_file is not: a name is only trusted in a \
                     certificate signed by a CA we are given",
                ));
            }
            tls::server_name(name)
                .map_err(|e| ConfigError::invalid(peer_key(i, "client_cert_name"), e))?;
            identities.names.push((id, name.clone()));
        }
    }
    Ok(identities)
}

/// How we dial each peer over TLS: the CAs (`tls.ca_file` or the system's, loaded once if
/// any peer needs them) and the peer's own client certificate.
fn check_dials(
    digest: &mut Sha256,
    raw: &RawTls,
    peer_tls: &[PeerTls],
    peers: &[Peer],
) -> Result<Vec<Option<Arc<ClientConfig>>>, ConfigError> {
    let mut roots: Option<Vec<CertificateDer<'static>>> = None;
    let mut shared: Option<Arc<ClientConfig>> = None;
    let mut dial = Vec::with_capacity(peers.len());
    for (i, (peer, tls)) in peers.iter().zip(peer_tls).enumerate() {
        let over_tls = match &peer.outgoing {
            Outgoing::None => false,
            Outgoing::Btp(d) => d.url.tls,
            Outgoing::Http(h) => h.url.tls,
        };
        let identity = match (&tls.client_cert_file, &tls.client_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(load_identity(
                digest,
                &peer_key(i, "client_cert_file"),
                cert,
                &peer_key(i, "client_key_file"),
                key,
            )?),
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    peer_key(i, "client_cert_file"),
                    "client_cert_file and client_key_file go together",
                ))
            }
        };
        if !over_tls {
            if identity.is_some() {
                return Err(ConfigError::invalid(
                    peer_key(i, "client_cert_file"),
                    "set, but we do not dial the peer over TLS (a wss:// btp_url or an \
                     https:// http_url)",
                ));
            }
            dial.push(None);
            continue;
        }
        if roots.is_none() {
            roots = Some(load_roots(digest, raw.ca_file.as_deref())?);
        }
        let roots = roots.as_deref().unwrap_or_default();
        let config = match identity {
            Some(identity) => tls::client_config(roots, Some(&identity))
                .map_err(|e| ConfigError::invalid(peer_key(i, "client_cert_file"), e))?,
            None => match &shared {
                Some(config) => Arc::clone(config),
                None => {
                    let config = tls::client_config(roots, None)
                        .map_err(|e| ConfigError::invalid("tls.ca_file", e))?;
                    shared = Some(Arc::clone(&config));
                    config
                }
            },
        };
        dial.push(Some(config));
    }
    Ok(dial)
}

/// `tls.ca_file`, or the system's CA certificates without it.
fn load_roots(
    digest: &mut Sha256,
    ca_file: Option<&Path>,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    if let Some(path) = ca_file {
        return load_certs(digest, "tls.ca_file", path);
    }
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map_or("none found".to_owned(), |e| e.to_string());
        return Err(ConfigError::invalid(
            "tls.ca_file",
            format!(
                "not set, and the system's CA certificates cannot be read ({why}): give the \
                 CAs of the peers we dial over TLS"
            ),
        ));
    }
    Ok(found.certs)
}

/// The certificates of the PEM file `path`, given at `key`.
fn load_certs(
    digest: &mut Sha256,
    key: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(digest, key, path)?;
    tls::parse_certs(&pem)
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))
}

/// A chain (`cert_key`: `cert`) and its key (`key_key`: `key`), checked to belong together.
fn load_identity(
    digest: &mut Sha256,
    cert_key: &str,
    cert: &Path,
    key_key: &str,
    key: &Path,
) -> Result<Identity, ConfigError> {
    let chain = load_certs(digest, cert_key, cert)?;
    let pem = read(digest, key_key, key)?;
    let key_der = tls::parse_key(&pem)
        .map_err(|e| ConfigError::invalid(key_key, format!("{}: {e}", key.display())))?;
    let identity = Identity {
        chain,
        key: key_der,
    };
    tls::check_identity(&identity).map_err(|e| {
        ConfigError::invalid(
            key_key,
            format!("{} with {}: {e}", key.display(), cert.display()),
        )
    })?;
    Ok(identity)
}

/// The file at `path` (given at `key`), added to `digest`.
fn read(digest: &mut Sha256, key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", path.display())))?;
    digest.update(key.as_bytes());
    digest.update(&bytes);
    Ok(bytes)
}

#[cfg(test)]
mod test {
    use crate::config::Config;

    /// A directory with a self-signed certificate `c.pem` and its key `c.key`.
    fn files(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ilp-config-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("c.key"), key.serialize_pem()).unwrap();
        dir
    }

    fn config(listen: &str, tls: &str, peer: &str) -> Result<Config, String> {
        Config::from_toml_str(&format!(
            "ilp_address = \"g.r\"\n[listen]\n{listen}\n[tls]\n{tls}\n[[peers]]\nname = \"a\"\n\
             relation = \"child\"\nasset_code = \"USD\"\nasset_scale = 9\nmax_balance = \"1\"\n\
             {peer}\n"
        ))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn tls_keys_are_checked_and_named() {
        let dir = files("keys");
        let (cert, key) = (dir.join("c.pem"), dir.join("c.key"));
        let ours = format!("cert_file = {cert:?}\nkey_file = {key:?}");
        let tls = "btp_tls = \"127.0.0.1:1\"";
        let pin = "client_cert_sha256 = [\"".to_owned() + &"ab".repeat(32) + "\"]";
        // A peer known by its certificate alone.
        let ok = config(tls, &ours, &pin).unwrap();
        assert!(ok.tls().server.is_some());
        assert_eq!(ok.tls().identities.pins.len(), 1);
        let cases = [
            (tls, String::new(), pin.clone(), "tls.cert_file: not set"),
            (
                "btp = \"127.0.0.1:1\"",
                ours.clone(),
                "auth_tokens = [\"t\"]".into(),
                "tls.cert_file: set, but neither",
            ),
            (
                tls,
                format!("cert_file = {cert:?}\nkey_file = {cert:?}"),
                pin.clone(),
                "tls.key_file",
            ),
            (
                tls,
                format!("cert_file = {key:?}\nkey_file = {key:?}"),
                pin.clone(),
                "no CERTIFICATE",
            ),
            (
                tls,
                format!("cert_file = \"/nonexistent.pem\"\nkey_file = {key:?}"),
                pin.clone(),
                "cannot read /nonexistent.pem",
            ),
            (
                tls,
                ours.clone(),
                "client_cert_sha256 = [\"abcd\"]".into(),
                "peers[0].client_cert_sha256[0]",
            ),
            (
                tls,
                ours.clone(),
                "client_cert_name = \"a.example\"".into(),
                "tls.client_ca_file is not",
            ),
            (
                "btp = \"127.0.0.1:1\"",
                String::new(),
                pin.clone(),
                "no TLS listener",
            ),
            (
                tls,
                ours.clone(),
                format!("auth_tokens = [\"t\"]\nclient_cert_file = {cert:?}"),
                "go together",
            ),
            (
                tls,
                ours.clone(),
                format!(
                    "auth_tokens = [\"t\"]\nclient_cert_file = {cert:?}\nclient_key_file = {key:?}"
                ),
                "do not dial the peer over TLS",
            ),
            (
                "btp = \"127.0.0.1:1\"\nbtp_tls = \"127.0.0.1:1\"",
                ours.clone(),
                pin.clone(),
                "the same address as listen.btp",
            ),
        ];
        for (listen, tls_keys, peer, why) in cases {
            let error = config(listen, &tls_keys, &peer).unwrap_err();
            assert!(error.contains(why), "{why:?} not in {error:?}");
        }
        // We dial with our client certificate and no outgoing_token.
        let dial = format!(
            "btp_url = \"wss://localhost:1\"\nclient_cert_file = {cert:?}\nclient_key_file = {key:?}"
        );
        let config = config("", &format!("ca_file = {cert:?}"), &dial).unwrap();
        assert_eq!(config.peers()[0].dial().unwrap().token.expose(), "");
        assert!(config.tls().dial(crate::id::PeerId(0)).is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
