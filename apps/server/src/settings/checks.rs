//! The checks a whole configuration must pass: combinations, and what production mode
//! refuses (default or weak secrets, plain HTTP beyond loopback, a missing audit key).

use super::*;

impl Settings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        let positive = [
            ("VIVIFIED_TOKEN_TTL", self.token_ttl),
            ("VIVIFIED_HEARTBEAT_INTERVAL", self.heartbeat_interval),
            ("VIVIFIED_HEARTBEAT_TTL", self.heartbeat_ttl),
            ("VIVIFIED_SWEEP_INTERVAL", self.sweep_interval),
            ("VIVIFIED_REQUEST_TIMEOUT", self.request_timeout),
            ("VIVIFIED_HEADER_READ_TIMEOUT", self.header_read_timeout),
            ("VIVIFIED_AUDIT_SEAL_INTERVAL", self.audit_seal_interval),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                return Err(SettingsError::Invalid {
                    name: name.into(),
                    reason: "must be greater than zero".into(),
                });
            }
        }
        if self.token_ttl > Duration::from_secs(366 * 24 * 3600) {
            return Err(SettingsError::Invalid {
                name: "VIVIFIED_TOKEN_TTL".into(),
                reason: "must be at most 366 days".into(),
            });
        }
        let invalid = |name: &str, reason: &str| {
            Err(SettingsError::Invalid {
                name: name.into(),
                reason: reason.into(),
            })
        };
        if self.mode == Mode::Production {
            for (name, d) in [
                ("VIVIFIED_HEARTBEAT_INTERVAL", self.heartbeat_interval),
                ("VIVIFIED_HEARTBEAT_TTL", self.heartbeat_ttl),
                ("VIVIFIED_SWEEP_INTERVAL", self.sweep_interval),
            ] {
                if d < Duration::from_secs(1) {
                    return invalid(name, "sub-second values are for dev mode only");
                }
            }
        }
        if self.audit_seal_interval > MAX_AUDIT_SEAL_INTERVAL {
            return invalid("VIVIFIED_AUDIT_SEAL_INTERVAL", "must be at most 1m");
        }
        if let Some(key) = &self.audit_key
            && key.expose().len() < vivified_domain::audit_chain::ChainKey::MIN_LEN
        {
            return invalid(
                "VIVIFIED_AUDIT_KEY",
                "must be at least 32 bytes; generate one with `openssl rand -hex 32`",
            );
        }
        if self
            .audit_previous_keys
            .iter()
            .any(|k| k.expose().len() < vivified_domain::audit_chain::ChainKey::MIN_LEN)
        {
            return invalid(
                "VIVIFIED_AUDIT_PREVIOUS_KEYS",
                "every key must be at least 32 bytes (the audit keys this core used before)",
            );
        }
        if !self.audit_previous_keys.is_empty() && self.audit_key.is_none() {
            return invalid(
                "VIVIFIED_AUDIT_PREVIOUS_KEYS",
                "needs VIVIFIED_AUDIT_KEY, the key the chain rotates to",
            );
        }
        if self.heartbeat_ttl < self.heartbeat_interval {
            return invalid(
                "VIVIFIED_HEARTBEAT_TTL",
                "must be at least VIVIFIED_HEARTBEAT_INTERVAL (default: 3 × the interval)",
            );
        }
        if let Some(after) = self.deregister_after {
            if after <= self.heartbeat_ttl {
                return invalid(
                    "VIVIFIED_DEREGISTER_AFTER",
                    "must be longer than VIVIFIED_HEARTBEAT_TTL (a plugin is stale before it is deregistered)",
                );
            }
            if self.mode == Mode::Production && after < Duration::from_secs(60) {
                return invalid(
                    "VIVIFIED_DEREGISTER_AFTER",
                    "must be at least one minute in production mode",
                );
            }
        }
        for origin in &self.allowed_origins {
            if origin == "*" || !(origin.starts_with("https://") || origin.starts_with("http://")) {
                return Err(SettingsError::Invalid {
                    name: "ALLOWED_ORIGINS".into(),
                    reason: "list exact origins like https://app.example.com; `*` is not allowed"
                        .into(),
                });
            }
        }
        match self.mode {
            Mode::Dev => {
                if !self.bind.ip().is_loopback() && !self.dev_allow_remote {
                    return Err(SettingsError::DevRemote(self.bind));
                }
            }
            Mode::Production => self.check_production()?,
        }
        Ok(())
    }

    pub(super) fn check_production(&self) -> Result<(), SettingsError> {
        let refuse = |m: &str| Err(SettingsError::Production(m.to_owned()));
        let jwt = match &self.jwt_secret {
            None if self.signing_keys.is_empty() => {
                return refuse(
                    "no token signing key: set VIVIFIED_SIGNING_KEYS (Ed25519 key files, recommended) or JWT_SECRET",
                );
            }
            None => None,
            Some(jwt) => Some(jwt.expose()),
        };
        if let Some(jwt) = jwt {
            if jwt.len() < 32 {
                return refuse("JWT_SECRET must be at least 32 bytes");
            }
            if is_weak(jwt) {
                return refuse(
                    "JWT_SECRET is a known default or has too little variety; generate one with `openssl rand -base64 48`",
                );
            }
        }
        let Some(admin) = &self.admin_token else {
            return refuse("VIVIFIED_ADMIN_TOKEN is not set");
        };
        let registration = match (&self.registration_secret, self.registration_secret_allowed) {
            (None, false) => None,
            (Some(secret), true) => Some(secret),
            (Some(_), false) => {
                return refuse(
                    "VIVIFIED_REGISTRATION_SECRET is set but VIVIFIED_REGISTRATION_SECRET_ALLOWED is not true: new plugins enroll with one-time tokens (POST /enrollments, `vivified enroll`); set VIVIFIED_REGISTRATION_SECRET_ALLOWED=true to keep the shared secret",
                );
            }
            (None, true) => {
                return refuse(
                    "VIVIFIED_REGISTRATION_SECRET_ALLOWED is true but VIVIFIED_REGISTRATION_SECRET is not set",
                );
            }
        };
        for (name, s) in std::iter::once(("VIVIFIED_ADMIN_TOKEN", admin))
            .chain(registration.map(|r| ("VIVIFIED_REGISTRATION_SECRET", r)))
        {
            if s.expose().len() < 16 || is_weak(s.expose()) {
                return refuse(&format!(
                    "{name} must be at least 16 bytes and not a known default"
                ));
            }
            if Some(s.expose()) == jwt {
                return refuse(&format!("{name} must differ from JWT_SECRET"));
            }
        }
        if Some(admin) == registration {
            return refuse("VIVIFIED_ADMIN_TOKEN and VIVIFIED_REGISTRATION_SECRET must differ");
        }
        if self.dev_replace_stale {
            return refuse(
                "VIVIFIED_DEV_REPLACE_STALE=true is for dev mode: production never replaces a registration without a credential for its id",
            );
        }
        if self.plain_http_exposed() {
            return refuse(&format!(
                "plain HTTP on non-loopback {}: set VIVIFIED_TLS_CERT and VIVIFIED_TLS_KEY, or VIVIFIED_TLS_TERMINATED_BY_PROXY=true when a proxy in front terminates TLS",
                self.bind
            ));
        }
        let Some(audit) = &self.audit_key else {
            return refuse("VIVIFIED_AUDIT_KEY is not set");
        };
        if is_weak(audit.expose()) {
            return refuse(
                "VIVIFIED_AUDIT_KEY is a known default or has too little variety; generate one with `openssl rand -hex 32`",
            );
        }
        for (name, s) in [
            ("JWT_SECRET", jwt),
            ("VIVIFIED_ADMIN_TOKEN", Some(admin.expose())),
            (
                "VIVIFIED_REGISTRATION_SECRET",
                registration.map(Secret::expose),
            ),
        ] {
            if Some(audit.expose()) == s {
                return refuse(&format!("VIVIFIED_AUDIT_KEY must differ from {name}"));
            }
        }
        Ok(())
    }
}

/// Secrets that ship in examples and must never guard a production core.
pub(super) const KNOWN_DEFAULT_SECRETS: &[&str] = &[
    "change-this-secret",
    "changeme",
    "change-me",
    "secret",
    "your-secret-key",
    "jwt-secret",
    "password",
];

pub(super) fn is_weak(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    let distinct = lower
        .bytes()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    KNOWN_DEFAULT_SECRETS.iter().any(|d| lower == *d)
        || lower.contains("change-this")
        || lower.contains("changeme")
        || distinct < 8
}
