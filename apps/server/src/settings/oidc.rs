//! Single sign-on settings: the identity provider whose tokens operators may present.

use super::{Raw, SettingsError};
use vivified_ports::Role;

/// Where operators' single sign-on tokens come from (`VIVIFIED_OIDC_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcSettings {
    /// `VIVIFIED_OIDC_ISSUER`: the provider's issuer (`iss`), `https://…` (plain
    /// `http://` only on loopback, for tests).
    pub issuer: String,
    /// `VIVIFIED_OIDC_AUDIENCE`: what tokens must name in `aud`.
    pub audience: String,
    /// `VIVIFIED_OIDC_JWKS_URL`: the key set; default: discovered from the issuer.
    pub jwks_url: Option<String>,
    /// `VIVIFIED_OIDC_ROLE_CLAIM` (default `roles`; a dotted path reaches into
    /// objects, e.g. `realm_access.roles`).
    pub role_claim: String,
    /// `VIVIFIED_OIDC_NAME_CLAIM` (default `preferred_username`, else `sub`).
    pub name_claim: String,
    /// `VIVIFIED_OIDC_ROLE_MAP`: `provider-role=role,…`; default: the four role names.
    pub role_map: Vec<(String, Role)>,
}

fn url_ok(url: &str) -> bool {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    url.starts_with("https://")
        || loopback.iter().any(|p| {
            url.strip_prefix(p)
                .is_some_and(|r| r.is_empty() || r.starts_with([':', '/']))
        })
}

/// The single sign-on settings, if an issuer is set.
pub(super) fn parse(raw: &Raw) -> Result<Option<OidcSettings>, SettingsError> {
    let get = |k: &str| {
        raw.get(k)
            .map(|(n, v)| (n.as_str(), v.trim()))
            .filter(|(_, v)| !v.is_empty())
    };
    let invalid = |name: &str, reason: &str| SettingsError::Invalid {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let Some((issuer_name, issuer)) = get("oidc_issuer") else {
        for k in ["oidc_audience", "oidc_jwks_url", "oidc_role_map"] {
            if let Some((n, _)) = get(k) {
                return Err(invalid(n, "is set without VIVIFIED_OIDC_ISSUER"));
            }
        }
        return Ok(None);
    };
    if !url_ok(issuer) {
        return Err(invalid(
            issuer_name,
            "expected an https:// URL (http:// only on loopback)",
        ));
    }
    let (_, audience) = get("oidc_audience").ok_or_else(|| {
        invalid(
            "VIVIFIED_OIDC_AUDIENCE",
            "is required with VIVIFIED_OIDC_ISSUER: the audience (client id) tokens must name",
        )
    })?;
    let jwks_url = match get("oidc_jwks_url") {
        None => None,
        Some((n, v)) if !url_ok(v) => {
            return Err(invalid(
                n,
                "expected an https:// URL (http:// only on loopback)",
            ));
        }
        Some((_, v)) => Some(v.to_owned()),
    };
    let role_map = match get("oidc_role_map") {
        None => Role::ALL
            .into_iter()
            .map(|r| (r.as_str().to_owned(), r))
            .collect(),
        Some((n, v)) => v
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let (from, to) = entry.split_once('=').ok_or_else(|| {
                    invalid(
                        n,
                        "expected provider-role=role pairs, e.g. vivified-admins=admin",
                    )
                })?;
                let role = Role::parse(to.trim()).ok_or_else(|| {
                    invalid(n, "a role is one of viewer, auditor, operator, admin")
                })?;
                Ok((from.trim().to_owned(), role))
            })
            .collect::<Result<Vec<_>, SettingsError>>()?,
    };
    let claim = |k: &str, default: &str| get(k).map_or(default, |(_, v)| v).to_owned();
    Ok(Some(OidcSettings {
        issuer: issuer.to_owned(),
        audience: audience.to_owned(),
        jwks_url,
        role_claim: claim("oidc_role_claim", "roles"),
        name_claim: claim("oidc_name_claim", "preferred_username"),
        role_map,
    }))
}

/// The adapter's configuration for these settings.
#[must_use]
pub fn oidc_config(s: &OidcSettings) -> vivified_adapters::oidc::OidcConfig {
    let mut config = vivified_adapters::oidc::OidcConfig::new(&s.issuer, &s.audience);
    config.jwks_url.clone_from(&s.jwks_url);
    config.role_claim.clone_from(&s.role_claim);
    config.name_claim.clone_from(&s.name_claim);
    config
}
