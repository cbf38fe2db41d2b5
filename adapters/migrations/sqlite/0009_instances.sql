-- Instances: the running copies of a plugin, each with its own token, health and
-- deadline, as a JSON array of objects (times in microseconds since the epoch). The
-- row's status, health, last_heartbeat and next_deadline are the instances' taken
-- together. Every plugin registered before becomes one instance named "default".
-- The row's own token columns are retired: token_jti holds '-' (no token), so a core
-- of an earlier version sharing this database refuses every token instead of
-- accepting a revoked one.
ALTER TABLE plugins ADD COLUMN instances TEXT;
UPDATE plugins SET instances = json_array(json_object(
        'instance_id', 'default',
        'token_jti', token_jti,
        'token_issued_at', token_issued_at,
        'registered_at', registered_at,
        'status', status,
        'health', health,
        'last_heartbeat', last_heartbeat,
        'next_deadline', next_deadline)),
    token_jti = '-',
    token_issued_at = NULL
    WHERE instances IS NULL;
-- The outbox's token_jti column now holds the registration key of the record
-- (PluginRecord::registration_key), which names one registration of an id.
