//! `JwtTokenIssuer`: HS256 JWTs, algorithm pinned, key rotation by `kid`.
//!
//! Claims: `sub` and `plugin_id` (the plugin), `type: "plugin"`, `iss: "vivified"`,
//! `aud: "vivified-core"`, `iat`, `exp`, `jti`. Tokens are signed with the current
//! secret; tokens signed with a previous secret (listed in `previous`) still verify, so
//! secrets rotate without downtime. The `kid` header is a fingerprint of the secret
//! (an HMAC of a fixed label), never the secret.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;
use vivified_ports::{
    IssuedToken, PluginId, Secret, TokenClaims, TokenError, TokenIssuer, VerifyOptions,
};

/// Issuer claim.
pub const ISSUER: &str = "vivified";
/// Audience claim.
pub const AUDIENCE: &str = "vivified-core";
/// Clock leeway on expiry and issue time.
pub const LEEWAY: Duration = Duration::from_secs(5);

/// Settings of a [`JwtTokenIssuer`].
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// Signs new tokens (and verifies them).
    pub secret: Secret,
    /// Older secrets whose tokens still verify.
    pub previous: Vec<Secret>,
    /// Lifetime of a new token.
    pub ttl: Duration,
}

impl JwtConfig {
    /// A config with `secret`, no previous secrets and a 24 h lifetime.
    pub fn new(secret: Secret) -> Self {
        Self {
            secret,
            previous: Vec::new(),
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a [`JwtTokenIssuer`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// A secret is empty.
    #[error("a JWT secret is empty")]
    EmptySecret,
    /// The lifetime is zero or too large.
    #[error("token lifetime must be between 1 s and 366 days")]
    BadTtl,
    /// The signer failed on a fixed input.
    #[error("cannot derive a key id")]
    KeyId,
}

/// The claims, as `jsonwebtoken` encodes them (tests compare with it).
#[cfg(test)]
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Claims {
    sub: String,
    plugin_id: String,
    #[serde(rename = "type")]
    typ: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Issues and verifies HS256 plugin tokens.
///
/// The JSON and base64url of a token are done here, once each (`jsonwebtoken` decodes
/// a token's header twice and its claims twice, through `serde_json::Value`, which
/// cost more than the HMAC). Signing starts from an HMAC keyed once, when the issuer is
/// built (`jsonwebtoken::crypto::sign` derives the HMAC's inner and outer keys for every
/// token); verification is `jsonwebtoken`'s. Tokens are standard JWTs: `jsonwebtoken`
/// issues and verifies the same ones (tests below check both ways).
///
/// A token whose signature and claims checked out is remembered (see
/// [`VerifiedTokens`]), so a plugin's heartbeats pay for its token's HMAC, base64 and
/// JSON once, not on every request; expiry and issue time are still checked on every
/// use, and revocation is the store's `jti` check, which callers make after this.
pub struct JwtTokenIssuer {
    kid: String,
    /// `base64url(header).` of the tokens this issuer signs (the header is fixed).
    header_prefix: String,
    /// HMAC-SHA-256 keyed with the current secret, cloned for each token.
    signer: Hmac<Sha256>,
    decoding: HashMap<String, DecodingKey>,
    ttl: Duration,
    verified: VerifiedTokens,
}

/// How many verified tokens a [`JwtTokenIssuer`] remembers by default (a few hundred
/// bytes each).
pub const VERIFIED_TOKENS_CAPACITY: usize = 4096;

/// Tokens whose signature and claims (all but the times) have been verified, with
/// those claims.
///
/// - Only a token that passed every check but the time checks enters; the time checks
///   run on every use, against the caller's clock.
/// - An entry is found by a hash of the token keyed with this process's random
///   SipHash key and used only if the token equals it byte for byte, compared in
///   constant time: neither the look-up nor the comparison lets a caller learn a
///   remembered token's bytes by timing.
/// - The keys that verify a token are fixed for the issuer's life, so an entry never
///   goes wrong; a cached answer is exactly what a fresh verification would give.
/// - Bounded: when full, it is emptied (the tokens in use come back on their next
///   request). Only correctly signed tokens enter, so a caller without the secret
///   cannot fill it.
struct VerifiedTokens {
    hasher: RandomState,
    capacity: usize,
    entries: Mutex<HashMap<u64, (Box<str>, TokenClaims)>>,
}

impl VerifiedTokens {
    fn new(capacity: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The look-up key of `token`.
    fn key(&self, token: &str) -> u64 {
        self.hasher.hash_one(token.as_bytes())
    }

    fn get(&self, key: u64, token: &str) -> Option<TokenClaims> {
        use subtle::ConstantTimeEq;
        if self.capacity == 0 {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (known, claims) = entries.get(&key)?;
        bool::from(known.as_bytes().ct_eq(token.as_bytes())).then(|| claims.clone())
    }

    fn insert(&self, key: u64, token: &str, claims: &TokenClaims) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (token.into(), claims.clone()));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The header of the tokens issued, as `jsonwebtoken` writes it.
#[derive(Serialize)]
struct OutHeader<'a> {
    typ: &'static str,
    alg: &'static str,
    kid: &'a str,
}

/// The members of a token's header that matter here; others are ignored.
#[derive(Deserialize)]
struct InHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
}

/// Claims as read from a token, borrowing from its decoded JSON.
#[derive(Deserialize)]
struct InClaims<'a> {
    #[serde(borrow)]
    sub: Cow<'a, str>,
    #[serde(borrow)]
    plugin_id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    typ: Cow<'a, str>,
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow)]
    aud: Cow<'a, str>,
    iat: i64,
    exp: i64,
    #[serde(borrow)]
    jti: Cow<'a, str>,
}

/// The claims of a token as JSON, in the field order of [`Claims`]: `sub`,
/// `plugin_id`, `type`, `iss`, `aud`, `iat`, `exp`, `jti`. Written directly (what
/// `serde_json` writes for [`OutClaims`], without its per-byte escaping).
fn claims_json(plugin_id: &str, iat: i64, exp: i64, jti: &str) -> String {
    use std::fmt::Write as _;
    use vivified_ports::json::push_string;
    let mut out = String::with_capacity(128 + 2 * plugin_id.len() + jti.len());
    out.push_str(r#"{"sub":"#);
    push_string(&mut out, plugin_id);
    out.push_str(r#","plugin_id":"#);
    push_string(&mut out, plugin_id);
    out.push_str(r#","type":"#);
    push_string(&mut out, "plugin");
    out.push_str(r#","iss":"#);
    push_string(&mut out, ISSUER);
    out.push_str(r#","aud":"#);
    push_string(&mut out, AUDIENCE);
    let _ = write!(out, r#","iat":{iat},"exp":{exp},"jti":"#);
    push_string(&mut out, jti);
    out.push('}');
    out
}

/// Claims as `serde` writes them: what [`claims_json`] must agree with.
#[cfg(test)]
#[derive(Serialize)]
struct OutClaims<'a> {
    sub: &'a str,
    plugin_id: &'a str,
    #[serde(rename = "type")]
    typ: &'static str,
    iss: &'static str,
    aud: &'static str,
    iat: i64,
    exp: i64,
    jti: &'a str,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Appends the unpadded base64url encoding of `input` to `out`.
fn b64_encode_into(input: &[u8], out: &mut String) {
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        for shift in [18, 12, 6, 0] {
            out.push(char::from(B64[(n >> shift & 63) as usize]));
        }
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.push(char::from(B64[(n >> 18 & 63) as usize]));
            out.push(char::from(B64[(n >> 12 & 63) as usize]));
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            for shift in [18, 12, 6] {
                out.push(char::from(B64[(n >> shift & 63) as usize]));
            }
        }
        _ => {}
    }
}

/// Decodes unpadded base64url, strictly: no padding, no other characters, no
/// non-zero trailing bits (as `jsonwebtoken`'s decoder).
fn b64_decode(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        }))
    }
    let bytes = input.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    let mut chunks = bytes.chunks_exact(4);
    for c in &mut chunks {
        let n = value(c[0])? << 18 | value(c[1])? << 12 | value(c[2])? << 6 | value(c[3])?;
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    match *chunks.remainder() {
        [a, b] => {
            let n = value(a)? << 18 | value(b)? << 12;
            if n & 0xffff != 0 {
                return None;
            }
            out.push((n >> 16) as u8);
        }
        [a, b, c] => {
            let n = value(a)? << 18 | value(b)? << 12 | value(c)? << 6;
            if n & 0xff != 0 {
                return None;
            }
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8]);
        }
        _ => {}
    }
    Some(out)
}

impl std::fmt::Debug for JwtTokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokenIssuer")
            .field("kid", &self.kid)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn key_id(secret: &Secret) -> Result<String, JwtConfigError> {
    let key = EncodingKey::from_secret(secret.expose().as_bytes());
    let mac = jsonwebtoken::crypto::sign(b"vivified-key-id", &key, Algorithm::HS256)
        .map_err(|_| JwtConfigError::KeyId)?;
    Ok(mac.chars().take(16).collect())
}

impl JwtTokenIssuer {
    /// Builds the issuer.
    ///
    /// # Errors
    /// [`JwtConfigError`] for an empty secret or an unusable lifetime.
    pub fn new(config: JwtConfig) -> Result<Self, JwtConfigError> {
        if config.ttl.is_zero() || config.ttl > Duration::from_secs(366 * 24 * 3600) {
            return Err(JwtConfigError::BadTtl);
        }
        let mut decoding = HashMap::new();
        for secret in std::iter::once(&config.secret).chain(&config.previous) {
            if secret.expose().is_empty() {
                return Err(JwtConfigError::EmptySecret);
            }
            decoding
                .entry(key_id(secret)?)
                .or_insert_with(|| DecodingKey::from_secret(secret.expose().as_bytes()));
        }
        let kid = key_id(&config.secret)?;
        let header = serde_json::to_vec(&OutHeader {
            typ: "JWT",
            alg: "HS256",
            kid: &kid,
        })
        .map_err(|_| JwtConfigError::KeyId)?;
        let mut header_prefix = String::new();
        b64_encode_into(&header, &mut header_prefix);
        header_prefix.push('.');
        Ok(Self {
            kid,
            header_prefix,
            // HMAC takes a key of any length; an empty one was refused above.
            signer: Hmac::new_from_slice(config.secret.expose().as_bytes())
                .map_err(|_| JwtConfigError::EmptySecret)?,
            decoding,
            ttl: config.ttl,
            verified: VerifiedTokens::new(VERIFIED_TOKENS_CAPACITY),
        })
    }

    /// The same issuer remembering at most `capacity` verified tokens (0: none, every
    /// verification starts from the token's bytes).
    #[must_use]
    pub fn with_verified_tokens_capacity(mut self, capacity: usize) -> Self {
        self.verified = VerifiedTokens::new(capacity);
        self
    }

    /// The key id of the current secret.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Checks everything of `token` but its times: structure, algorithm, key,
    /// signature, issuer, audience, type and subject.
    fn verify_signed(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let mut parts = token.splitn(3, '.');
        let (Some(header), Some(claims), Some(signature)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid("malformed"));
        };
        if signature.contains('.') {
            return Err(TokenError::Invalid("malformed"));
        }
        let header_json = b64_decode(header).ok_or(TokenError::Invalid("malformed"))?;
        let header: InHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| TokenError::Invalid("malformed"))?;
        if header.alg != "HS256" {
            return Err(TokenError::Invalid("algorithm"));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenError::Invalid("unknown key"))?;
        // The signed message: everything before the signature.
        let message = &token[..token.len() - signature.len() - 1];
        let valid =
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, Algorithm::HS256)
                .map_err(|_| TokenError::Invalid("malformed"))?;
        if !valid {
            return Err(TokenError::Invalid("signature"));
        }
        let claims_json = b64_decode(claims).ok_or(TokenError::Invalid("malformed"))?;
        let c: InClaims<'_> =
            serde_json::from_slice(&claims_json).map_err(|_| TokenError::Invalid("malformed"))?;
        if c.iss != ISSUER {
            return Err(TokenError::Invalid("issuer"));
        }
        if c.aud != AUDIENCE {
            return Err(TokenError::Invalid("audience"));
        }
        if c.typ != "plugin" {
            return Err(TokenError::Invalid("type"));
        }
        if c.sub != c.plugin_id {
            return Err(TokenError::Invalid("subject"));
        }
        let plugin_id = PluginId::parse(&c.sub).map_err(|_| TokenError::Invalid("subject"))?;
        let time = |s: i64| {
            OffsetDateTime::from_unix_timestamp(s).map_err(|_| TokenError::Invalid("time"))
        };
        Ok(TokenClaims {
            plugin_id,
            jti: c.jti.into_owned(),
            issued_at: time(c.iat)?,
            expires_at: time(c.exp)?,
        })
    }
}

/// The time checks of a verification: not issued in the future, not expired (each
/// with [`LEEWAY`], expiry also with `opts.expired_grace`).
fn check_times(claims: &TokenClaims, opts: VerifyOptions) -> Result<(), TokenError> {
    let leeway = LEEWAY.as_secs() as i64;
    let now = ts(opts.now);
    if ts(claims.issued_at) > now + leeway {
        return Err(TokenError::Invalid("issued in the future"));
    }
    let grace = i64::try_from(opts.expired_grace.as_secs()).unwrap_or(i64::MAX);
    if now
        > ts(claims.expires_at)
            .saturating_add(leeway)
            .saturating_add(grace)
    {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// A random (v4) UUID for a token's `jti`, straight from the operating system's CSPRNG
/// like `Uuid::new_v4`, but read 32 at a time: a `getrandom` system call per token was a
/// measurable share of a registration's CPU under load. Each thread keeps its own
/// buffer; a byte is never handed out twice.
fn fresh_jti() -> uuid::Uuid {
    use std::cell::RefCell;
    const BATCH: usize = 32 * 16;
    thread_local! {
        static POOL: RefCell<([u8; BATCH], usize)> = const { RefCell::new(([0; BATCH], BATCH)) };
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (buf, used) = &mut *pool;
        if *used == BATCH {
            if getrandom::fill(buf).is_err() {
                // As `Uuid::new_v4`, which panics here, but falling back to its own
                // single read rather than handing out stale bytes.
                return uuid::Uuid::new_v4();
            }
            *used = 0;
        }
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&buf[*used..*used + 16]);
        // Wipe what was handed out, so a later failure can never repeat it.
        buf[*used..*used + 16].fill(0);
        *used += 16;
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    })
}

fn ts(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

#[async_trait]
impl TokenIssuer for JwtTokenIssuer {
    async fn issue(
        &self,
        plugin_id: &PluginId,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, TokenError> {
        let expires_at = now + self.ttl;
        let jti = fresh_jti().simple().to_string();
        let id = plugin_id.as_str();
        let claims = claims_json(id, ts(now), ts(expires_at), &jti);
        let mut token = String::with_capacity(self.header_prefix.len() + claims.len() * 4 / 3 + 48);
        token.push_str(&self.header_prefix);
        b64_encode_into(claims.as_bytes(), &mut token);
        let mut mac = self.signer.clone();
        mac.update(token.as_bytes());
        token.push('.');
        b64_encode_into(&mac.finalize().into_bytes(), &mut token);
        // Truncate to whole seconds: that is what the token says.
        let expires_at = OffsetDateTime::from_unix_timestamp(ts(expires_at))
            .map_err(|e| TokenError::Signing(Box::new(e)))?;
        Ok(IssuedToken {
            token: Secret::new(token),
            jti,
            expires_at,
        })
    }

    async fn verify(&self, token: &str, opts: VerifyOptions) -> Result<TokenClaims, TokenError> {
        let key = self.verified.key(token);
        let claims = match self.verified.get(key, token) {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signed(token)?;
                self.verified.insert(key, token, &claims);
                claims
            }
        };
        check_times(&claims, opts)?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation};

    #[test]
    fn claims_are_written_as_serde_writes_them() {
        for (id, jti) in [
            ("user-management", "0123456789abcdef0123456789abcdef"),
            ("a", ""),
            ("q\"uote\\ \n é", "j\u{1}"),
        ] {
            for (iat, exp) in [(0, 1), (1_767_225_600, 1_767_312_000), (-5, i64::MAX)] {
                let expected = serde_json::to_string(&OutClaims {
                    sub: id,
                    plugin_id: id,
                    typ: "plugin",
                    iss: ISSUER,
                    aud: AUDIENCE,
                    iat,
                    exp,
                    jti,
                })
                .unwrap();
                assert_eq!(claims_json(id, iat, exp, jti), expected);
            }
        }
    }

    #[test]
    fn base64url_round_trip_and_strictness() {
        let mut x: u32 = 12345;
        for len in 0..100 {
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let mut enc = String::new();
            b64_encode_into(&input, &mut enc);
            assert!(!enc.contains('='));
            assert_eq!(b64_decode(&enc).as_deref(), Some(&input[..]), "{len}");
        }
        assert_eq!(b64_decode("AA").as_deref(), Some(&[0u8][..]));
        for bad in ["A", "AB", "AAB", "AA==", "A+AA", "A/AA", "AA AA", "é"] {
            assert_eq!(b64_decode(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn same_tokens_as_jsonwebtoken() {
        let secret = "s".repeat(32);
        let i = issuer(&secret, &[]);
        let t = i.issue(&pid(), now()).await.unwrap();
        // jsonwebtoken verifies ours …
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false;
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[ISSUER]);
        let key = DecodingKey::from_secret(secret.as_bytes());
        let decoded = jsonwebtoken::decode::<Claims>(t.token.expose(), &key, &v).unwrap();
        let claims = Claims {
            sub: pid().to_string(),
            plugin_id: pid().to_string(),
            typ: "plugin".into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: ts(now()),
            exp: ts(now()) + 3600,
            jti: t.jti.clone(),
        };
        assert_eq!(decoded.claims, claims);
        // … writes the very same token from the same claims …
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(i.kid().to_owned());
        let theirs =
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret.as_bytes()))
                .unwrap();
        assert_eq!(theirs, t.token.expose());
        // … and we verify a token of theirs with its header members in another order.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(i.kid().to_owned());
        h.typ = None;
        h.cty = Some("JWT".into());
        let theirs =
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret.as_bytes()))
                .unwrap();
        let c = i.verify(&theirs, opts(now())).await.unwrap();
        assert_eq!(c.jti, t.jti);
        assert_eq!(c.plugin_id, pid());
        // A signature with an extra segment, or one byte off, does not verify.
        assert!(i.verify(&format!("{theirs}.x"), opts(now())).await.is_err());
        let mut flipped = theirs.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            i.verify(std::str::from_utf8(&flipped).unwrap(), opts(now()))
                .await,
            Err(TokenError::Invalid(_))
        ));
    }

    fn issuer(secret: &str, previous: &[&str]) -> JwtTokenIssuer {
        let mut c = JwtConfig::new(Secret::new(secret));
        c.previous = previous.iter().map(|s| Secret::new(*s)).collect();
        c.ttl = Duration::from_secs(3600);
        JwtTokenIssuer::new(c).unwrap()
    }

    fn opts(now: OffsetDateTime) -> VerifyOptions {
        VerifyOptions {
            now,
            expired_grace: Duration::ZERO,
        }
    }

    fn pid() -> PluginId {
        PluginId::parse("user-management").unwrap()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap()
    }

    #[tokio::test]
    async fn round_trip_and_claims() {
        let i = issuer("s".repeat(32).as_str(), &[]);
        let t = i.issue(&pid(), now()).await.unwrap();
        let c = i.verify(t.token.expose(), opts(now())).await.unwrap();
        assert_eq!(c.plugin_id, pid());
        assert_eq!(c.jti, t.jti);
        assert_eq!(c.expires_at, now() + Duration::from_secs(3600));
        let header = jsonwebtoken::decode_header(t.token.expose()).unwrap();
        assert_eq!(header.kid.as_deref(), Some(i.kid()));
        assert!(!i.kid().contains(&"s".repeat(8)));
        // The claims the wire contract names are all there.
        let raw = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(t.token.expose())
            .unwrap()
            .claims;
        for k in [
            "sub",
            "plugin_id",
            "type",
            "iss",
            "aud",
            "iat",
            "exp",
            "jti",
        ] {
            assert!(raw.get(k).is_some(), "claim {k} missing");
        }
        assert_eq!(raw["type"], "plugin");
        assert_eq!(raw["aud"], AUDIENCE);
    }

    #[tokio::test]
    async fn expiry_leeway_and_grace() {
        let i = issuer("secret-one-secret-one-secret-one", &[]);
        let t = i.issue(&pid(), now()).await.unwrap();
        let exp = now() + Duration::from_secs(3600);
        assert!(
            i.verify(t.token.expose(), opts(exp + Duration::from_secs(5)))
                .await
                .is_ok()
        );
        assert!(matches!(
            i.verify(t.token.expose(), opts(exp + Duration::from_secs(6)))
                .await,
            Err(TokenError::Expired)
        ));
        let graced = VerifyOptions {
            now: exp + Duration::from_secs(600),
            expired_grace: Duration::from_secs(3600),
        };
        assert!(i.verify(t.token.expose(), graced).await.is_ok());
        assert!(matches!(
            i.verify(t.token.expose(), opts(now() - Duration::from_secs(60)))
                .await,
            Err(TokenError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn rotation() {
        let old = issuer("old-secret-old-secret-old-secret", &[]);
        let new = issuer(
            "new-secret-new-secret-new-secret",
            &["old-secret-old-secret-old-secret"],
        );
        let newest = issuer("new-secret-new-secret-new-secret", &[]);
        let t = old.issue(&pid(), now()).await.unwrap();
        assert!(
            new.verify(t.token.expose(), opts(now())).await.is_ok(),
            "previous secret still verifies"
        );
        assert!(matches!(
            newest.verify(t.token.expose(), opts(now())).await,
            Err(TokenError::Invalid(_))
        ));
        let t2 = new.issue(&pid(), now()).await.unwrap();
        assert!(
            old.verify(t2.token.expose(), opts(now())).await.is_err(),
            "new tokens use the new secret"
        );
    }

    #[tokio::test]
    async fn rejects_forgeries() {
        let i = issuer("secret-one-secret-one-secret-one", &[]);
        let t = i.issue(&pid(), now()).await.unwrap();
        let tok = t.token.expose();
        // Tampered payload.
        let mut parts: Vec<String> = tok.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(i.verify(&parts.join("."), opts(now())).await.is_err());
        // alg=none.
        let none = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            tok.split('.').nth(1).unwrap()
        );
        assert!(matches!(
            i.verify(&none, opts(now())).await,
            Err(TokenError::Invalid(_))
        ));
        // Wrong audience, signed with the right key.
        let key = EncodingKey::from_secret(b"secret-one-secret-one-secret-one");
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(i.kid().to_owned());
        let bad = Claims {
            sub: "user-management".into(),
            plugin_id: "user-management".into(),
            typ: "plugin".into(),
            iss: ISSUER.into(),
            aud: "someone-else".into(),
            iat: ts(now()),
            exp: ts(now()) + 60,
            jti: "x".into(),
        };
        let bad = jsonwebtoken::encode(&h, &bad, &key).unwrap();
        assert!(matches!(
            i.verify(&bad, opts(now())).await,
            Err(TokenError::Invalid("audience"))
        ));
        assert!(i.verify("garbage", opts(now())).await.is_err());
        assert!(i.verify("", opts(now())).await.is_err());
    }

    /// The outcome of a verification, comparable across issuers.
    fn outcome(r: Result<TokenClaims, TokenError>) -> String {
        match r {
            Ok(c) => format!("ok {c:?}"),
            Err(e) => format!("err {e:?}"),
        }
    }

    #[tokio::test]
    async fn a_remembered_token_answers_as_a_fresh_verification() {
        let secret = "secret-one-secret-one-secret-one";
        let remembering = issuer(secret, &[]);
        let fresh = issuer(secret, &[]).with_verified_tokens_capacity(0);
        let t = remembering.issue(&pid(), now()).await.unwrap();
        let tok = t.token.expose();
        let mut tampered: Vec<String> = tok.split('.').map(str::to_owned).collect();
        tampered[1] = tampered[1].chars().rev().collect();
        let tampered = tampered.join(".");
        let exp = now() + Duration::from_secs(3600);
        let times = [
            opts(now()),
            opts(now() - Duration::from_secs(60)),
            opts(exp + Duration::from_secs(5)),
            opts(exp + Duration::from_secs(6)),
            VerifyOptions {
                now: exp + Duration::from_secs(600),
                expired_grace: Duration::from_secs(3600),
            },
            opts(now()),
        ];
        // Each token twice at each time: the second answer may come from memory.
        for token in [tok, tampered.as_str(), "garbage", ""] {
            for at in times {
                for _ in 0..2 {
                    assert_eq!(
                        outcome(remembering.verify(token, at).await),
                        outcome(fresh.verify(token, at).await),
                        "{token} at {:?}",
                        at.now
                    );
                }
            }
        }
        assert_eq!(
            remembering.verified.len(),
            1,
            "only the valid token is kept"
        );
        assert_eq!(fresh.verified.len(), 0);
    }

    #[tokio::test]
    async fn a_token_one_character_off_a_remembered_one_is_refused() {
        let i = issuer("secret-one-secret-one-secret-one", &[]);
        let t = i.issue(&pid(), now()).await.unwrap();
        let tok = t.token.expose();
        assert!(i.verify(tok, opts(now())).await.is_ok());
        for at in 0..tok.len() {
            let mut bytes = tok.as_bytes().to_vec();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let other = String::from_utf8(bytes).unwrap();
            assert!(
                i.verify(&other, opts(now())).await.is_err(),
                "position {at}"
            );
        }
        // Longer and shorter by one character.
        assert!(i.verify(&format!("{tok}A"), opts(now())).await.is_err());
        assert!(i.verify(&tok[..tok.len() - 1], opts(now())).await.is_err());
        assert!(i.verify(tok, opts(now())).await.is_ok());
        // Even a forgery that hashed to the remembered token's entry is not taken for it.
        let last = if tok.ends_with('A') { 'E' } else { 'A' };
        let forged = format!("{}{last}", &tok[..tok.len() - 1]);
        let key = i.verified.key(&forged);
        let remembered = i.verify(tok, opts(now())).await.unwrap();
        i.verified
            .entries
            .lock()
            .unwrap()
            .insert(key, (tok.into(), remembered));
        assert!(matches!(
            i.verify(&forged, opts(now())).await,
            Err(TokenError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn remembered_tokens_are_bounded() {
        let i = issuer("secret-one-secret-one-secret-one", &[]).with_verified_tokens_capacity(8);
        let mut tokens = Vec::new();
        for n in 0..20 {
            let id = PluginId::parse(&format!("plugin-{n}")).unwrap();
            let t = i.issue(&id, now()).await.unwrap();
            let c = i.verify(t.token.expose(), opts(now())).await.unwrap();
            assert_eq!(c.plugin_id, id);
            assert!(i.verified.len() <= 8);
            tokens.push((id, t));
        }
        for (id, t) in &tokens {
            let c = i.verify(t.token.expose(), opts(now())).await.unwrap();
            assert_eq!(&c.plugin_id, id);
            assert_eq!(c.jti, t.jti);
        }
        assert!(i.verified.len() <= 8);
    }
}
