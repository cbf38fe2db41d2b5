-- The chain's latest checkpoint, outside `audit_entries`: written in the
-- transaction of every seal that sealed entries, so rows cut from the end of the
-- chain are found (the chain then ends before its checkpoint) and their sequence
-- numbers are never handed out again. One row. `mac` = HMAC-SHA-256 under the chain
-- key over (seq, hash), as in the `audit_checkpoint` log lines.
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL CHECK (seq > 0),
    hash BLOB    NOT NULL,
    mac  BLOB    NOT NULL
);
