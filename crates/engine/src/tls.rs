//! SIP over TLS (RFC 3261 §26.2, RFC 5630): the certificates this gateway checks trunks
//! against and the one it presents on its TLS listeners, as rustls configurations.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The name a trunk's certificate must carry is not a DNS name or IP address.
    #[error("{0:?} is not a DNS name or IP address a certificate can carry")]
    ServerName(String),
    /// rustls refused the configuration (a key that does not match its certificate, ...).
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// How the gateway checks one TLS trunk: the name its certificate must carry and the roots
/// it must chain to.
#[derive(Clone, Debug)]
pub struct TlsTrunk {
    /// The name checked against the certificate (the trunk's domain unless configured).
    pub server_name: ServerName<'static>,
    /// The client configuration (roots, protocol versions).
    pub config: Arc<ClientConfig>,
}

/// The TLS settings of a [`crate::SipEndpoint`].
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// What a TLS listener presents to peers that connect to it (needed when one is bound).
    pub server: Option<Arc<ServerConfig>>,
    /// For each TLS trunk's address, how it is checked.
    pub trunks: HashMap<SocketAddr, TlsTrunk>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE in the PEM file"));
    }
    Ok(certs)
}

impl TlsTrunk {
    /// Checks the trunk's certificate for `server_name` against the CAs in `ca_file` (PEM),
    /// or against the system's trust store when there is none.
    pub fn new(server_name: &str, ca_file: Option<&Path>) -> Result<TlsTrunk, TlsError> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| TlsError::ServerName(server_name.into()))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let config = match ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for c in certs(path)? {
                    roots.add(c).map_err(|e| file_err(path, e))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => {
                use rustls_platform_verifier::BuilderVerifierExt;
                builder.with_platform_verifier()?.with_no_client_auth()
            }
        };
        Ok(TlsTrunk {
            server_name: name,
            config: Arc::new(config),
        })
    }
}

/// What a TLS listener presents: the certificate chain in `cert_file` and its key in
/// `key_file` (both PEM).
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_err(key_file, e))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}
