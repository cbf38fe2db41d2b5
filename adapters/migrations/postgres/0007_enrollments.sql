-- One-time enrollment tokens, kept as the SHA-256 of the token (hex), never the token.
-- Times are microseconds since the Unix epoch.
CREATE TABLE IF NOT EXISTS enrollments (
    enrollment_id TEXT    PRIMARY KEY NOT NULL,
    token_hash    TEXT    NOT NULL UNIQUE,
    plugin_id     TEXT    NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    created_by    TEXT    NOT NULL,
    used_at       BIGINT
);
