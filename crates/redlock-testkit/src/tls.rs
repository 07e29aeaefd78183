//! [`TlsFiles`]: a certificate authority, a server certificate for `127.0.0.1` and
//! `localhost`, and a client certificate, made fresh for one test server (PEM files in its
//! directory).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The PEM files of a test server's TLS: a certificate authority, a server certificate for
/// `127.0.0.1` and `localhost`, a client certificate, and an unrelated CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate authority that signed both certificates.
    pub ca_cert: PathBuf,
    /// The server's certificate (for `127.0.0.1` and `localhost`).
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// A client certificate, for servers that ask for one.
    pub client_cert: PathBuf,
    /// The client certificate's private key.
    pub client_key: PathBuf,
    /// A second certificate authority that signed nothing here: trusting it alone must fail.
    pub other_ca_cert: PathBuf,
}

fn rc(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("making test certificates: {e}"))
}

fn authority(name: &str) -> io::Result<(rcgen::Certificate, KeyPair)> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().map_err(rc)?;
    let cert = params.self_signed(&key).map_err(rc)?;
    Ok((cert, key))
}

impl TlsFiles {
    /// Makes the certificates and writes them to `dir`.
    pub fn generate(dir: &Path) -> io::Result<TlsFiles> {
        let (ca, ca_key) = authority("redlock test CA")?;
        let (other_ca, _) = authority("redlock unrelated CA")?;
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| -> io::Result<_> {
            let mut params = CertificateParams::new(names).map_err(rc)?;
            params
                .distinguished_name
                .push(DnType::CommonName, "redlock test");
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().map_err(rc)?;
            let cert = params.signed_by(&key, &ca, &ca_key).map_err(rc)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_cert, client_key) =
            leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth)?;
        let files = TlsFiles {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            other_ca_cert: dir.join("other-ca.crt"),
        };
        fs::write(&files.ca_cert, ca.pem())?;
        fs::write(&files.server_cert, server_cert)?;
        fs::write(&files.server_key, server_key)?;
        fs::write(&files.client_cert, client_cert)?;
        fs::write(&files.client_key, client_key)?;
        fs::write(&files.other_ca_cert, other_ca.pem())?;
        Ok(files)
    }
}
