-- Liveness deadlines (issue 5): when the sweeper next has to look at a record
-- (microseconds since the epoch; NULL: nothing due). Records from before this
-- migration get a deadline at their next heartbeat.
ALTER TABLE plugins ADD COLUMN next_deadline INTEGER;
CREATE INDEX IF NOT EXISTS plugins_next_deadline ON plugins (next_deadline)
    WHERE next_deadline IS NOT NULL;
