-- The tamper-evident audit trail (issue 7).
--
-- audit_pending: entries appended but not sealed yet. An append is one plain INSERT
-- (no lock on the chain head), so it can share the transaction of the state change it
-- records. `id` orders the entries: a new rowid is above every row present, so the
-- sealer takes them in append order.
CREATE TABLE IF NOT EXISTS audit_pending (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,   -- microseconds since the Unix epoch, UTC
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    target   TEXT    NOT NULL,
    outcome  TEXT    NOT NULL,   -- 'success' | 'denied'
    reason   TEXT    NOT NULL,
    trace_id TEXT    NOT NULL,
    details  TEXT    NOT NULL    -- canonical JSON
);

-- audit_entries: the sealed chain. `hash` = HMAC-SHA-256(key, hash(seq - 1) ||
-- canonical(seq, entry)) (vivified_ports::audit_chain), written by one sealer at a time.
CREATE TABLE IF NOT EXISTS audit_entries (
    seq      INTEGER PRIMARY KEY CHECK (seq > 0),
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    target   TEXT    NOT NULL,
    outcome  TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    trace_id TEXT    NOT NULL,
    details  TEXT    NOT NULL,
    hash     BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entries_actor ON audit_entries (actor, seq);
CREATE INDEX IF NOT EXISTS audit_entries_action ON audit_entries (action, seq);
CREATE INDEX IF NOT EXISTS audit_entries_outcome ON audit_entries (outcome, seq);
