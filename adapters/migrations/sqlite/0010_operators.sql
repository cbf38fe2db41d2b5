-- Operators: named people with a role, and their API tokens, kept as the SHA-256 of
-- the token (hex), never the token. Deleting an operator deletes its tokens.
-- Times are microseconds since the Unix epoch.
CREATE TABLE IF NOT EXISTS operators (
    name       TEXT   PRIMARY KEY NOT NULL,
    role       TEXT   NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT   NOT NULL,
    expires_at INTEGER,
    -- An emergency elevation to admin (break-glass): why, when, until when.
    break_glass_reason TEXT,
    break_glass_at     INTEGER,
    break_glass_until  INTEGER
);
CREATE TABLE IF NOT EXISTS operator_tokens (
    prefix     TEXT   PRIMARY KEY NOT NULL,
    operator   TEXT   NOT NULL REFERENCES operators (name) ON DELETE CASCADE,
    token_hash TEXT   NOT NULL UNIQUE,
    label      TEXT   NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS operator_tokens_by_operator ON operator_tokens (operator, created_at);
