-- Plugin records. Times are microseconds since the Unix epoch (UTC).
-- The store keeps the id (jti) of each plugin's current token, never a token.
-- COLLATE "C": ids sort in byte order, as the PluginStore contract requires.
CREATE TABLE IF NOT EXISTS plugins (
    plugin_id       TEXT COLLATE "C" PRIMARY KEY,
    manifest        JSONB   NOT NULL,
    status          TEXT    NOT NULL,
    health          TEXT    NOT NULL,
    enabled         BOOLEAN NOT NULL,
    disabled_reason TEXT,
    registered_at   BIGINT  NOT NULL,
    last_heartbeat  BIGINT,
    token_jti       TEXT    NOT NULL,
    version         BIGINT  NOT NULL
);
