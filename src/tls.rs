//! TLS termination: certificates from PEM files → a rustls `ServerConfig` with TLS 1.2
//! and 1.3 only, the ring provider's cipher suites (AEAD only, forward secret), ALPN
//! `h2` and `http/1.1`, and SNI choosing among several certificates.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// ALPN protocol ids offered, in order of preference.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read certificates from {path:?}: {reason}")]
    Certs {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{key}: cannot read a private key from {path:?}: {reason}")]
    Key {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{key}: the key does not fit the certificate {cert:?}: {reason}")]
    Mismatch {
        key: String,
        cert: PathBuf,
        reason: String,
    },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider used for every TLS connection (server and upstream client).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server configuration for `tls`: TLS 1.3 and 1.2, ALPN h2 + http/1.1, and
/// a certificate chosen by SNI.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    Ok(reloadable_server_config(tls)?.0)
}

/// [`server_config`], and the handle that swaps its certificates on a reload.
pub fn reloadable_server_config(
    tls: &TlsConfig,
) -> Result<(Arc<rustls::ServerConfig>, Arc<Certificates>), TlsError> {
    let provider = provider();
    let certs = Arc::new(Certificates {
        current: arc_swap::ArcSwap::from_pointee(resolver(tls, &provider)?),
        provider: provider.clone(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok((Arc::new(config), certs))
}

fn resolver(
    tls: &TlsConfig,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<SniResolver, TlsError> {
    let default = load_pair(&tls.cert, &tls.key, "tls", provider)?;
    let mut by_name = HashMap::new();
    for (i, sni) in tls.sni.iter().enumerate() {
        let pair = load_pair(&sni.cert, &sni.key, &format!("tls.sni[{i}]"), provider)?;
        by_name.insert(sni.server_name.clone(), pair);
    }
    Ok(SniResolver { default, by_name })
}

/// The certificates new handshakes get. [`Certificates::reload`] reads them again
/// (certificate rotation): handshakes in progress and open connections keep what they
/// have, the next handshake gets the new pair.
#[derive(Debug)]
pub struct Certificates {
    current: arc_swap::ArcSwap<SniResolver>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// Certificates loaded for a reload, not yet in force.
#[derive(Debug)]
pub struct PreparedCertificates(SniResolver);

impl Certificates {
    /// Loads every pair `tls` names, without putting them in force.
    pub fn prepare(&self, tls: &TlsConfig) -> Result<PreparedCertificates, TlsError> {
        resolver(tls, &self.provider).map(PreparedCertificates)
    }

    /// Puts prepared certificates in force for the next handshakes.
    pub fn install(&self, prepared: PreparedCertificates) {
        self.current.store(Arc::new(prepared.0));
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().pick(hello.server_name()))
    }
}

fn load_pair(
    cert: &Path,
    key: &Path,
    section: &str,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certs {
            key: format!("{section}.cert"),
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certs {
            key: format!("{section}.cert"),
            path: cert.to_owned(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        key: format!("{section}.key"),
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(certs, private, provider)
        .map(Arc::new)
        .map_err(|e| TlsError::Mismatch {
            key: format!("{section}.key"),
            cert: cert.to_owned(),
            reason: e.to_string(),
        })
}

/// Picks a certificate by SNI: exact name, then `*.parent` wildcard, then the default.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = name {
            // rustls hands over SNI names already lower-cased.
            if let Some(k) = self.by_name.get(name) {
                return k.clone();
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.by_name.get(&format!("*.{parent}")) {
                    return k.clone();
                }
            }
        }
        self.default.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        crate::certs::generate(&cert, &key, &[name.to_string()], false).unwrap();
        (cert, key)
    }

    fn tls(cert: PathBuf, key: PathBuf) -> TlsConfig {
        TlsConfig {
            cert,
            key,
            self_signed_if_missing: false,
            handshake_timeout: std::time::Duration::from_secs(1),
            sni: vec![],
        }
    }

    #[test]
    fn builds_with_alpn_and_resolves_sni() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = pair(dir.path(), "default.test");
        let (ac, ak) = pair(dir.path(), "a.test");
        let mut t = tls(c, k);
        t.sni.push(crate::config::SniCert {
            server_name: "*.wild.test".into(),
            cert: ac.clone(),
            key: ak.clone(),
        });
        let cfg = server_config(&t).unwrap();
        assert_eq!(
            cfg.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );

        let provider = provider();
        let resolver = SniResolver {
            default: load_pair(&t.cert, &t.key, "tls", &provider).unwrap(),
            by_name: [(
                "*.wild.test".to_string(),
                load_pair(&ac, &ak, "x", &provider).unwrap(),
            )]
            .into(),
        };
        let wild = resolver.pick(Some("x.wild.test"));
        let default = resolver.pick(Some("other.test"));
        assert_ne!(wild.cert[0], default.cert[0]);
        assert_eq!(resolver.pick(None).cert[0], default.cert[0]);
    }

    #[test]
    fn mismatched_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = pair(dir.path(), "one.test");
        let (_, k2) = pair(dir.path(), "two.test");
        let err = server_config(&tls(c, k2)).unwrap_err().to_string();
        assert!(err.contains("tls.key"), "{err}");
        assert!(err.contains("does not fit"), "{err}");
    }

    #[test]
    fn garbage_cert_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (_, k) = pair(dir.path(), "one.test");
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let err = server_config(&tls(bad, k)).unwrap_err().to_string();
        assert!(err.contains("tls.cert"), "{err}");
    }
}
