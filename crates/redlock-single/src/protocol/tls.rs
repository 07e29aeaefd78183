//! TLS for `rediss://` masters: the certificates to trust and to present, turned into fred's
//! TLS configuration (rustls with the ring provider, chosen here rather than left to rustls's
//! process-wide default, which another crate in the build could make ambiguous).

use std::path::PathBuf;

#[cfg(feature = "tls")]
use crate::protocol::error::InputError;

/// How to talk TLS to `rediss://` masters.
///
/// By default the server's certificate is checked against the system's roots (as found by
/// `rustls-native-certs`). A CA file replaces them; a client certificate and key are presented
/// to servers that ask for one (mutual TLS, `tls-auth-clients yes`). Files are PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// A PEM file of the certificates to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A PEM certificate chain and a PEM private key to present to the server.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// Whether anything differs from the defaults.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client_auth.is_some()
    }
}

#[cfg(feature = "tls")]
pub(crate) fn config(options: &TlsOptions) -> Result<fred::types::config::TlsConfig, InputError> {
    use std::sync::Arc;

    use fred::rustls::pki_types::pem::PemObject;
    use fred::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use fred::rustls::{ClientConfig, RootCertStore};

    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        InputError::Config(format!("TLS {what} {}: {e}", path.display()))
    };
    let certs =
        |path: &std::path::Path, what: &str| -> Result<Vec<CertificateDer<'static>>, InputError> {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(what, path, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(what, path, &e))?;
            if certs.is_empty() {
                return Err(bad(what, path, &"no certificate in the file"));
            }
            Ok(certs)
        };
    let mut roots = RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            for cert in certs(path, "CA file")? {
                roots.add(cert).map_err(|e| bad("CA file", path, &e))?;
            }
        }
        None => {
            // Unreadable system certificates are skipped: the ones that load still count.
            let system = fred::rustls_native_certs::load_native_certs();
            for cert in system.certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(fred::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| InputError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match &options.client_auth {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certs(cert, "client certificate")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("client key", key, &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| InputError::Config(format!("TLS client certificate: {e}")))?
        }
    };
    Ok(fred::types::config::TlsConnector::from(config).into())
}
