-- Lifecycle events written in the same transaction as the transition they announce
-- (issue 5): published by the sweep that made them and then deleted, or — if that
-- core died in between — claimed and published by a later sweep of any replica.
CREATE TABLE IF NOT EXISTS lifecycle_outbox (
    event_type TEXT    NOT NULL,
    plugin_id  TEXT    NOT NULL,
    token_jti  TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    at         BIGINT  NOT NULL,
    PRIMARY KEY (event_type, plugin_id, token_jti, version)
);
CREATE INDEX IF NOT EXISTS lifecycle_outbox_at ON lifecycle_outbox (at);
