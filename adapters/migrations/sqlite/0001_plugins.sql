-- Plugin records. Times are microseconds since the Unix epoch (UTC).
-- The store keeps the id (jti) of each plugin's current token, never a token.
CREATE TABLE IF NOT EXISTS plugins (
    plugin_id       TEXT    PRIMARY KEY NOT NULL,
    manifest        TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    health          TEXT    NOT NULL,
    enabled         INTEGER NOT NULL,
    disabled_reason TEXT,
    registered_at   INTEGER NOT NULL,
    last_heartbeat  INTEGER,
    token_jti       TEXT    NOT NULL,
    version         INTEGER NOT NULL
);
