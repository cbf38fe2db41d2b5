-- When each plugin's current token was issued (microseconds since the Unix epoch), for
-- revocation by time. NULL for rows written before: revocation treats them as old.
ALTER TABLE plugins ADD COLUMN token_issued_at INTEGER;
