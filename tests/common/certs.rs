//! Certificates made by the tests themselves (rcgen): a CA, servers and clients it signs,
//! self-signed and expired ones, written as PEM files; and the rustls client configs a test
//! peer dials with. Nothing is downloaded.

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose,
    IsCa, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A CA that signs certificates.
pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Its certificate as PEM.
    pub(crate) pem: String,
}

/// A certificate with its key, and where both were written.
pub(crate) struct Cert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
    /// SHA-256 of its DER, as `client_cert_sha256` pins it.
    pub(crate) sha256: String,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        Ca { issuer, pem }
    }

    /// Writes its certificate to `dir/name.pem`.
    pub(crate) fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A server certificate for `localhost` and 127.0.0.1, written to `dir/name.*`.
    pub(crate) fn server(&self, dir: &Path, name: &str) -> Cert {
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Cert::write(dir, name, cert.pem(), cert.der(), key.serialize_pem())
    }

    /// A client certificate holding the DNS name `dns`, written to `dir/name.*`.
    pub(crate) fn client(&self, dir: &Path, name: &str, dns: &str) -> Cert {
        let mut params = CertificateParams::new(vec![dns.to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Cert::write(dir, name, cert.pem(), cert.der(), key.serialize_pem())
    }
}

impl Cert {
    /// A self-signed client certificate, valid now (or, with `expired`, only in 2020).
    pub(crate) fn self_signed(dir: &Path, name: &str, expired: bool) -> Cert {
        let mut params = CertificateParams::new(vec![format!("{name}.example")]).unwrap();
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Cert::write(dir, name, cert.pem(), cert.der(), key.serialize_pem())
    }

    fn write(dir: &Path, name: &str, pem: String, der: &[u8], key_pem: String) -> Cert {
        let cert_file = dir.join(format!("{name}.pem"));
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, &pem).unwrap();
        std::fs::write(&key_file, &key_pem).unwrap();
        let sha256 = Sha256::digest(der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Cert {
            cert_pem: pem,
            key_pem,
            cert_file,
            key_file,
            sha256,
        }
    }
}

/// A TLS client config that trusts `ca_pem` and presents `client` when given.
pub(crate) fn client_config(ca_pem: &str, client: Option<&Cert>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(cert) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
                    .map(Result::unwrap)
                    .collect();
            let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}
