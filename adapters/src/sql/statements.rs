//! The statements of the SQL stores: each dialect's [`Queries`], and how statements of
//! many rows are cut.

/// The statements of a SQL [`vivified_ports::PluginStore`], in one backend's dialect.
/// Every write is one conditional statement returning the row as stored.
pub(crate) struct Queries {
    /// Insert a record with version 1, returning it.
    pub insert: &'static str,
    /// `insert`, but no row (and no error) if the id is taken.
    pub insert_skip: &'static str,
    /// The columns a record's row is read back with.
    pub cols: &'static str,
    /// The cast a JSON column's bound text needs (`::jsonb`), or nothing.
    pub json_cast: &'static str,
    /// One record by id.
    pub get: &'static str,
    /// Records with id > $1, by id, limit $2.
    pub list: &'static str,
    /// Replace if the version matches, returning the row.
    pub replace: &'static str,
    /// The records whose ids are in the JSON array of strings $1.
    pub get_many: &'static str,
    /// Writes the liveness columns of several records, each only if its version is still
    /// the one read: $1 is a JSON array of objects (id, version, status, health,
    /// last_heartbeat, next_deadline, and instances as JSON text); returns the ids
    /// written.
    pub write_liveness: &'static str,
    /// The smallest deadline.
    pub earliest_deadline: &'static str,
    /// `(live, due)` at $1.
    pub liveness_counts: &'static str,
    /// Enabled records due at $1, earliest first, limit $2.
    pub due: &'static str,
    /// The record with id $1, write-locked until the end of the transaction (a no-op
    /// update returning the row: both dialects lock the row for it).
    pub lock: &'static str,
    /// Insert an enrollment ($1 id, $2 hash, $3 plugin, $4 created, $5 expires, $6 by).
    pub enrollment_insert: &'static str,
    /// One enrollment by token hash ($1).
    pub enrollment_get: &'static str,
    /// Mark used at $2 if unused and unexpired, returning it.
    pub enrollment_use: &'static str,
    /// Mark unused if used at exactly $2.
    pub enrollment_release: &'static str,
    /// Enrollments newest first, only plugin $1 unless NULL, limit $2.
    pub enrollment_list: &'static str,
    /// Delete by enrollment id ($1) if unused, returning it.
    pub enrollment_cancel: &'static str,
    /// One enrollment by its id ($1).
    pub enrollment_by_id: &'static str,
    /// Delete those used or expiring before $1.
    pub enrollment_purge: &'static str,
    /// Delete by id ($1), and by version ($2) unless NULL.
    pub delete: &'static str,
    /// Whether a record exists (to tell `NotFound` from `PreconditionFailed`).
    pub exists: &'static str,
    /// One outbox entry: type, plugin, jti, version, at.
    pub outbox_insert: &'static str,
    /// Claim entries at or before $1, setting `at` to $2, limit $3.
    pub claim_outbox: &'static str,
    /// Delete one entry by type, plugin, jti, version.
    pub ack_outbox: &'static str,
    /// `insert` and the pending audit insert ($12..$19) in ONE statement, where the
    /// dialect can (Postgres: data-modifying CTEs); `None`: a transaction of two.
    pub insert_audited: Option<&'static str>,
    /// `replace` and the pending audit insert ($13..$20) in one statement.
    pub replace_audited: Option<&'static str>,
    /// `delete` and the pending audit insert ($3..$10) in one statement; returns the
    /// number of records deleted.
    pub delete_audited: Option<&'static str>,
    /// About the most bytes a statement of many rows carries (see [`TCP_STATEMENT_BYTES`]).
    pub statement_bytes: usize,
    /// How many groups of writes one store commits at once: 1 where the database takes
    /// one writer; more where transactions run side by side (their rows are locked in
    /// id order, as two replicas' groups are).
    pub group_lanes: usize,
}

/// About the most bytes one statement of many rows carries over TCP. sqlx 0.9.0 does not set
/// `TCP_NODELAY` on its sockets (an upstream regression, fixed after that release): a message
/// the kernel takes in two writes then waits for the server's delayed ACK, 40 ms on
/// Linux. Statements that stay well under a socket's first send buffer (16 KiB) avoid it.
pub(crate) const TCP_STATEMENT_BYTES: usize = 8 * 1024;

/// `items` in runs of at most `max_bytes` by `size` (at least one item a run).
pub(crate) fn statement_chunks<T>(
    items: &[T],
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if i > start && bytes + n > max_bytes {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::statement_chunks;

    #[test]
    fn statements_are_cut_by_bytes_with_at_least_one_row_each() {
        let sizes = [3000, 3000, 3000, 9000, 100, 100];
        let chunks = statement_chunks(&sizes, 8 * 1024, |n| *n);
        let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(lens, [2, 1, 1, 2], "{chunks:?}");
        assert!(statement_chunks(&[] as &[usize], 8 * 1024, |n| *n).is_empty());
    }
}
