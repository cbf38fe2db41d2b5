//! Ed25519 signing keys for plugin tokens: read from PKCS#8 PEM (what
//! `openssl genpkey -algorithm ed25519` writes), generated for dev mode, and published
//! as a JWK set (RFC 7517/8037) whose key ids are RFC 7638 thumbprints.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{DecodingKey, EncodingKey};
use vivified_ports::Secret;

use super::JwtConfigError;

/// One Ed25519 key, ready to sign (if current) and verify.
pub(super) struct EdKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: Jwk,
}

impl EdKey {
    /// Reads the PKCS#8 PEM private key `pem` (the `index`-th configured key, for the
    /// error).
    pub fn from_pem(pem: &Secret, index: usize) -> Result<Self, JwtConfigError> {
        let bad = || JwtConfigError::BadSigningKey(index);
        let signing = SigningKey::from_pkcs8_pem(pem.expose().trim()).map_err(|_| bad())?;
        let der = signing.to_pkcs8_der().map_err(|_| bad())?;
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
        let mut jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: x.clone(),
            }),
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| JwtConfigError::KeyId)?;
        jwk.common.key_id = Some(kid.clone());
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_components(&x).map_err(|_| bad())?,
            jwk,
        })
    }
}

/// A new random Ed25519 private key as PKCS#8 PEM (dev mode keeps one in its data
/// directory; production operators make theirs with `openssl genpkey -algorithm ed25519`).
///
/// # Errors
/// [`JwtConfigError::KeyGeneration`] if the OS has no randomness to give.
pub fn generate_ed25519_pem() -> Result<Secret, JwtConfigError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|_| JwtConfigError::KeyGeneration)?;
    let pem = SigningKey::from_bytes(&seed)
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| JwtConfigError::KeyGeneration)?;
    Ok(Secret::new(pem.as_str()))
}
