//! Every setting's canonical key (its TOML key) and environment names, strongest
//! first: the `VIVIFIED_*` name, then the seed's name where there is one.

/// A setting: its TOML key and its environment names, strongest first.
pub(super) struct Key {
    pub(super) key: &'static str,
    pub(super) env: &'static [&'static str],
}

pub(super) const KEYS: &[Key] = &[
    Key {
        key: "mode",
        env: &["VIVIFIED_MODE"],
    },
    Key {
        key: "bind",
        env: &["VIVIFIED_BIND"],
    },
    Key {
        key: "dev_allow_remote",
        env: &["VIVIFIED_DEV_ALLOW_REMOTE"],
    },
    Key {
        key: "dev_replace_stale",
        env: &["VIVIFIED_DEV_REPLACE_STALE"],
    },
    Key {
        key: "admin_token",
        env: &["VIVIFIED_ADMIN_TOKEN"],
    },
    Key {
        key: "registration_secret",
        env: &["VIVIFIED_REGISTRATION_SECRET"],
    },
    Key {
        key: "registration_secret_allowed",
        env: &["VIVIFIED_REGISTRATION_SECRET_ALLOWED"],
    },
    Key {
        key: "max_instances",
        env: &["VIVIFIED_MAX_INSTANCES"],
    },
    Key {
        key: "registration_rate_limit",
        env: &["VIVIFIED_REGISTRATION_RATE_LIMIT"],
    },
    Key {
        key: "oidc_issuer",
        env: &["VIVIFIED_OIDC_ISSUER"],
    },
    Key {
        key: "oidc_audience",
        env: &["VIVIFIED_OIDC_AUDIENCE"],
    },
    Key {
        key: "oidc_jwks_url",
        env: &["VIVIFIED_OIDC_JWKS_URL"],
    },
    Key {
        key: "oidc_role_claim",
        env: &["VIVIFIED_OIDC_ROLE_CLAIM"],
    },
    Key {
        key: "oidc_role_map",
        env: &["VIVIFIED_OIDC_ROLE_MAP"],
    },
    Key {
        key: "oidc_name_claim",
        env: &["VIVIFIED_OIDC_NAME_CLAIM"],
    },
    Key {
        key: "break_glass",
        env: &["VIVIFIED_BREAK_GLASS"],
    },
    Key {
        key: "auth_failure_limit",
        env: &["VIVIFIED_AUTH_FAILURE_LIMIT"],
    },
    Key {
        key: "jwt_secret",
        env: &["VIVIFIED_JWT_SECRET", "JWT_SECRET"],
    },
    Key {
        key: "jwt_previous_secrets",
        env: &["VIVIFIED_JWT_PREVIOUS_SECRETS"],
    },
    Key {
        key: "signing_keys",
        env: &["VIVIFIED_SIGNING_KEYS"],
    },
    Key {
        key: "token_ttl",
        env: &["VIVIFIED_TOKEN_TTL"],
    },
    Key {
        key: "reregister_grace",
        env: &["VIVIFIED_REREGISTER_GRACE"],
    },
    Key {
        key: "heartbeat_interval",
        env: &["VIVIFIED_HEARTBEAT_INTERVAL"],
    },
    Key {
        key: "heartbeat_ttl",
        env: &["VIVIFIED_HEARTBEAT_TTL"],
    },
    Key {
        key: "heartbeat_flush",
        env: &["VIVIFIED_HEARTBEAT_FLUSH"],
    },
    Key {
        key: "group_commit_wait",
        env: &["VIVIFIED_GROUP_COMMIT_WAIT"],
    },
    Key {
        key: "deregister_after",
        env: &["VIVIFIED_DEREGISTER_AFTER"],
    },
    Key {
        key: "sweep_interval",
        env: &["VIVIFIED_SWEEP_INTERVAL"],
    },
    Key {
        key: "self_preservation_threshold",
        env: &["VIVIFIED_SELF_PRESERVATION_THRESHOLD"],
    },
    Key {
        key: "self_preservation_min_plugins",
        env: &["VIVIFIED_SELF_PRESERVATION_MIN_PLUGINS"],
    },
    Key {
        key: "store",
        env: &["VIVIFIED_STORE", "DATABASE_URL"],
    },
    Key {
        key: "data_dir",
        env: &["VIVIFIED_DATA_DIR"],
    },
    Key {
        key: "db_max_connections",
        env: &["VIVIFIED_DB_MAX_CONNECTIONS"],
    },
    Key {
        key: "bus",
        env: &["VIVIFIED_BUS", "NATS_URL"],
    },
    Key {
        key: "nats_ca_cert",
        env: &["VIVIFIED_NATS_CA_CERT"],
    },
    Key {
        key: "nats_client_cert",
        env: &["VIVIFIED_NATS_CLIENT_CERT"],
    },
    Key {
        key: "nats_client_key",
        env: &["VIVIFIED_NATS_CLIENT_KEY"],
    },
    Key {
        key: "event_queue_bound",
        env: &["VIVIFIED_EVENT_QUEUE_BOUND"],
    },
    Key {
        key: "events_max_wait",
        env: &["VIVIFIED_EVENTS_MAX_WAIT"],
    },
    Key {
        key: "policy_file",
        env: &["VIVIFIED_POLICY_FILE"],
    },
    Key {
        key: "metrics_bind",
        env: &["VIVIFIED_METRICS_BIND"],
    },
    Key {
        key: "tls_cert",
        env: &["VIVIFIED_TLS_CERT"],
    },
    Key {
        key: "tls_key",
        env: &["VIVIFIED_TLS_KEY"],
    },
    Key {
        key: "tls_terminated_by_proxy",
        env: &["VIVIFIED_TLS_TERMINATED_BY_PROXY"],
    },
    Key {
        key: "max_body_bytes",
        env: &["VIVIFIED_MAX_BODY_BYTES"],
    },
    Key {
        key: "max_header_bytes",
        env: &["VIVIFIED_MAX_HEADER_BYTES"],
    },
    Key {
        key: "request_timeout",
        env: &["VIVIFIED_REQUEST_TIMEOUT"],
    },
    Key {
        key: "header_read_timeout",
        env: &["VIVIFIED_HEADER_READ_TIMEOUT"],
    },
    Key {
        key: "allowed_origins",
        env: &["VIVIFIED_ALLOWED_ORIGINS", "ALLOWED_ORIGINS"],
    },
    Key {
        key: "log_level",
        env: &["VIVIFIED_LOG_LEVEL", "LOG_LEVEL"],
    },
    Key {
        key: "log_format",
        env: &["VIVIFIED_LOG_FORMAT"],
    },
    Key {
        key: "audit_key",
        env: &["VIVIFIED_AUDIT_KEY"],
    },
    Key {
        key: "audit_previous_keys",
        env: &["VIVIFIED_AUDIT_PREVIOUS_KEYS"],
    },
    Key {
        key: "audit_checkpoint_every",
        env: &["VIVIFIED_AUDIT_CHECKPOINT_EVERY"],
    },
    Key {
        key: "audit_seal_interval",
        env: &["VIVIFIED_AUDIT_SEAL_INTERVAL"],
    },
];
