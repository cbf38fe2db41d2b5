//! Rows of the `enrollments` table, shared by both dialects.

use vivified_ports::{PluginId, StoreError};

use super::{corrupt, from_micros};

/// One row of `enrollments`: id, hash, plugin, created, expires, by, used.
pub(crate) type EnrollmentRow = (String, String, String, i64, i64, String, Option<i64>);

/// The columns of an [`EnrollmentRow`], in order.
macro_rules! enrollment_cols {
    () => {
        "enrollment_id, token_hash, plugin_id, created_at, expires_at, created_by, used_at"
    };
}
pub(crate) use enrollment_cols;

pub(crate) fn enrollment(r: EnrollmentRow) -> Result<vivified_ports::Enrollment, StoreError> {
    let (id, token_hash, plugin_id, created_at, expires_at, created_by, used_at) = r;
    Ok(vivified_ports::Enrollment {
        id,
        token_hash,
        plugin_id: PluginId::parse(&plugin_id).map_err(|_| corrupt("enrollment plugin id"))?,
        created_at: from_micros(created_at)?,
        expires_at: from_micros(expires_at)?,
        created_by,
        used_at: used_at.map(from_micros).transpose()?,
    })
}
