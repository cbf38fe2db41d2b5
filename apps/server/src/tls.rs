//! HTTPS for the core (HIPAA §164.312(e), transmission security): the certificate chain
//! of `VIVIFIED_TLS_CERT` and the private key of `VIVIFIED_TLS_KEY`, read from PEM files
//! at start-up, served with rustls and its `ring` provider (TLS 1.2 and 1.3, ALPN `h2`
//! and `http/1.1`).
//!
//! Errors name the setting and the file, never the key's content.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The core's certificate and key files (`VIVIFIED_TLS_CERT`, `VIVIFIED_TLS_KEY`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The certificate or key cannot be used. One line, naming the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("{setting}: cannot read {}: {source}", path.display())]
    Unreadable {
        /// `VIVIFIED_TLS_CERT` or `VIVIFIED_TLS_KEY`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no `CERTIFICATE` section.
    #[error("VIVIFIED_TLS_CERT: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key section.
    #[error(
        "VIVIFIED_TLS_KEY: {} holds no PEM private key (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A file is not well-formed PEM.
    #[error("{setting}: {} is not valid PEM ({reason})", path.display())]
    BadPem {
        /// `VIVIFIED_TLS_CERT` or `VIVIFIED_TLS_KEY`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, without the file's content.
        reason: &'static str,
    },
    /// The key is of a kind the provider cannot sign with.
    #[error(
        "VIVIFIED_TLS_KEY: {} holds an unsupported private key (use RSA 2048+, ECDSA P-256/P-384 or Ed25519)",
        path.display()
    )]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is not the certificate's.
    #[error("VIVIFIED_TLS_KEY: the key does not belong to the certificate of VIVIFIED_TLS_CERT")]
    Mismatch,
    /// rustls refused the certificate chain.
    #[error("VIVIFIED_TLS_CERT: {} cannot be used: {reason}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        reason: String,
    },
}

/// The crypto provider of every TLS connection the workspace makes: rustls' `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs `ring` as the process's default rustls provider unless one is installed
/// already. reqwest (built without a provider of its own) and async-nats use the
/// default; call this before building an HTTP client. Idempotent.
pub fn install_default_crypto_provider() {
    // Err means a provider is already installed: that one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn pem_reason(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "unreadable PEM",
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        setting,
        path: path.to_owned(),
        source,
    })
}

/// The certificate chain in `path` (every `CERTIFICATE` section, in order).
///
/// # Errors
/// [`TlsError`] naming `VIVIFIED_TLS_CERT`.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read("VIVIFIED_TLS_CERT", path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            setting: "VIVIFIED_TLS_CERT",
            path: path.to_owned(),
            reason: pem_reason(&e),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in `path`.
///
/// # Errors
/// [`TlsError`] naming `VIVIFIED_TLS_KEY`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read("VIVIFIED_TLS_KEY", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        e => TlsError::BadPem {
            setting: "VIVIFIED_TLS_KEY",
            path: path.to_owned(),
            reason: pem_reason(&e),
        },
    })
}

/// The server configuration for `files`: TLS 1.2 and 1.3 with the ring provider, no
/// client certificates, ALPN `h2` then `http/1.1`.
///
/// # Errors
/// [`TlsError`] naming the setting at fault.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = provider();
    // Classify an unusable key before rustls pairs it with the certificate.
    if provider
        .key_provider
        .load_private_key(key.clone_key())
        .is_err()
    {
        return Err(TlsError::UnsupportedKey {
            path: files.key.clone(),
        });
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Refused {
            path: files.cert.clone(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch,
            e => TlsError::Refused {
                path: files.cert.clone(),
                reason: e.to_string(),
            },
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "vivified-tls-unit-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn missing_and_empty_files_name_the_setting() {
        let d = dir();
        let nothing = d.join("absent.pem");
        let err = load_certs(&nothing).unwrap_err().to_string();
        assert!(err.starts_with("VIVIFIED_TLS_CERT: cannot read"), "{err}");
        let err = load_key(&nothing).unwrap_err().to_string();
        assert!(err.starts_with("VIVIFIED_TLS_KEY: cannot read"), "{err}");

        let text = d.join("text.pem");
        std::fs::write(&text, "hello\n").unwrap();
        assert!(matches!(
            load_certs(&text),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(load_key(&text), Err(TlsError::NoKey { .. })));

        let broken = d.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n",
        )
        .unwrap();
        let err = load_key(&broken).unwrap_err().to_string();
        assert!(err.starts_with("VIVIFIED_TLS_KEY:"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "never the key's content: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
