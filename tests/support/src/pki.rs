//! A throwaway PKI for TLS tests: a CA, a server certificate for `localhost` and
//! 127.0.0.1, and a client certificate, all signed by the CA, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The PEM files of a test PKI.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA's certificate.
    pub ca: PathBuf,
    /// A server certificate for `localhost` and 127.0.0.1.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A client certificate (CN `vivified-core`).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A key that belongs to no certificate (for mismatch tests).
    pub other_key: PathBuf,
}

impl Pki {
    /// Makes the PKI and writes its files into `dir` (`ca.pem`, `server.crt`,
    /// `server.key`, `client.crt`, `client.key`, `other.key`).
    ///
    /// # Panics
    /// If a certificate cannot be made or a file written.
    pub fn new(dir: &Path) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Vivified test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("a key"))
            .expect("a CA");
        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("a key");
            let cert = params.signed_by(&key, &ca).expect("a certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "vivified test server",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            vec!["vivified-core".into()],
            "vivified-core",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let pki = Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            other_key: dir.join("other.key"),
        };
        let other = KeyPair::generate().expect("a key").serialize_pem();
        for (path, pem) in [
            (&pki.ca, ca.pem()),
            (&pki.server_cert, server_cert),
            (&pki.server_key, server_key),
            (&pki.client_cert, client_cert),
            (&pki.client_key, client_key),
            (&pki.other_key, other),
        ] {
            std::fs::write(path, pem).expect("write a PEM file");
        }
        pki
    }
}
