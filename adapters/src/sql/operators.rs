//! The `operators` and `operator_tokens` tables, shared by both dialects: the rows, the
//! statements of each dialect, and the `OperatorStore` implementation.

use time::OffsetDateTime;
use vivified_ports::{BreakGlass, Operator, OperatorName, OperatorToken, Role, StoreError};

use super::{corrupt, from_micros};

/// One row of `operators`: name, role, created, by, expires, and the break-glass
/// reason, start and end.
pub(crate) type OperatorRow = (
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// One row of `operator_tokens`: prefix, operator, hash, label, created, expires.
pub(crate) type TokenRow = (String, String, String, String, i64, i64);

/// A token row joined with its operator's row (without the repeated name).
pub(crate) type TokenOperatorRow = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    i64,
    String,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// The statements of one SQL dialect.
pub(crate) struct OperatorQueries {
    pub(crate) insert: &'static str,
    pub(crate) get: &'static str,
    pub(crate) list: &'static str,
    pub(crate) delete: &'static str,
    pub(crate) count: &'static str,
    pub(crate) break_glass: &'static str,
    pub(crate) token_insert: &'static str,
    pub(crate) token_get: &'static str,
    pub(crate) tokens_of: &'static str,
    pub(crate) token_delete: &'static str,
}

macro_rules! operator_cols {
    () => {
        "name, role, created_at, created_by, expires_at, break_glass_reason, break_glass_at, \
         break_glass_until"
    };
}
macro_rules! token_cols {
    () => {
        "prefix, operator, token_hash, label, created_at, expires_at"
    };
}

/// SQLite's statements (`?N` parameters).
pub(crate) const SQLITE: OperatorQueries = OperatorQueries {
    insert: concat!(
        "INSERT INTO operators (",
        operator_cols!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ),
    get: concat!(
        "SELECT ",
        operator_cols!(),
        " FROM operators WHERE name = ?1"
    ),
    list: concat!(
        "SELECT ",
        operator_cols!(),
        " FROM operators WHERE name > ?1 ORDER BY name LIMIT ?2"
    ),
    delete: concat!(
        "DELETE FROM operators WHERE name = ?1 RETURNING ",
        operator_cols!()
    ),
    count: "SELECT COUNT(*) FROM operators WHERE role = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
    break_glass: concat!(
        "UPDATE operators SET break_glass_reason = ?2, break_glass_at = ?3, break_glass_until = ?4 \
         WHERE name = ?1 RETURNING ",
        operator_cols!()
    ),
    token_insert: concat!(
        "INSERT INTO operator_tokens (",
        token_cols!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    ),
    token_get: "SELECT t.prefix, t.operator, t.token_hash, t.label, t.created_at, t.expires_at, \
                o.role, o.created_at, o.created_by, o.expires_at, \
                o.break_glass_reason, o.break_glass_at, o.break_glass_until \
                FROM operator_tokens t JOIN operators o ON o.name = t.operator WHERE t.prefix = ?1",
    tokens_of: concat!(
        "SELECT ",
        token_cols!(),
        " FROM operator_tokens WHERE operator = ?1 ORDER BY created_at, prefix"
    ),
    token_delete: concat!(
        "DELETE FROM operator_tokens WHERE operator = ?1 AND prefix = ?2 RETURNING ",
        token_cols!()
    ),
};

/// Postgres's statements (`$N` parameters).
pub(crate) const POSTGRES: OperatorQueries = OperatorQueries {
    insert: concat!(
        "INSERT INTO operators (",
        operator_cols!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ),
    get: concat!(
        "SELECT ",
        operator_cols!(),
        " FROM operators WHERE name = $1"
    ),
    list: concat!(
        "SELECT ",
        operator_cols!(),
        " FROM operators WHERE name > $1 ORDER BY name LIMIT $2"
    ),
    delete: concat!(
        "DELETE FROM operators WHERE name = $1 RETURNING ",
        operator_cols!()
    ),
    count: "SELECT COUNT(*) FROM operators WHERE role = $1 AND (expires_at IS NULL OR expires_at > $2)",
    break_glass: concat!(
        "UPDATE operators SET break_glass_reason = $2, break_glass_at = $3, break_glass_until = $4 \
         WHERE name = $1 RETURNING ",
        operator_cols!()
    ),
    token_insert: concat!(
        "INSERT INTO operator_tokens (",
        token_cols!(),
        ") VALUES ($1, $2, $3, $4, $5, $6)"
    ),
    token_get: "SELECT t.prefix, t.operator, t.token_hash, t.label, t.created_at, t.expires_at, \
                o.role, o.created_at, o.created_by, o.expires_at, \
                o.break_glass_reason, o.break_glass_at, o.break_glass_until \
                FROM operator_tokens t JOIN operators o ON o.name = t.operator WHERE t.prefix = $1",
    tokens_of: concat!(
        "SELECT ",
        token_cols!(),
        " FROM operator_tokens WHERE operator = $1 ORDER BY created_at, prefix"
    ),
    token_delete: concat!(
        "DELETE FROM operator_tokens WHERE operator = $1 AND prefix = $2 RETURNING ",
        token_cols!()
    ),
};

fn name(s: &str) -> Result<OperatorName, StoreError> {
    OperatorName::parse(s).map_err(|_| corrupt("operator name"))
}

pub(crate) fn operator(r: OperatorRow) -> Result<Operator, StoreError> {
    let (n, role, created_at, created_by, expires_at, bg_reason, bg_at, bg_until) = r;
    let break_glass = match (bg_reason, bg_at, bg_until) {
        (Some(reason), Some(at), Some(until)) => Some(BreakGlass {
            reason,
            granted_at: from_micros(at)?,
            until: from_micros(until)?,
        }),
        _ => None,
    };
    Ok(Operator {
        name: name(&n)?,
        role: Role::parse(&role).ok_or_else(|| corrupt("operator role"))?,
        created_at: from_micros(created_at)?,
        created_by,
        expires_at: expires_at.map(from_micros).transpose()?,
        break_glass,
    })
}

pub(crate) fn token(r: TokenRow) -> Result<OperatorToken, StoreError> {
    let (prefix, op, token_hash, label, created_at, expires_at) = r;
    Ok(OperatorToken {
        prefix,
        operator: name(&op)?,
        token_hash,
        label,
        created_at: from_micros(created_at)?,
        expires_at: from_micros(expires_at)?,
    })
}

pub(crate) fn token_and_operator(
    r: TokenOperatorRow,
) -> Result<(OperatorToken, Operator), StoreError> {
    let (
        prefix,
        op,
        hash,
        label,
        t_created,
        t_expires,
        role,
        o_created,
        by,
        o_expires,
        bg_reason,
        bg_at,
        bg_until,
    ) = r;
    let token = token((prefix, op.clone(), hash, label, t_created, t_expires))?;
    let operator = operator((
        op, role, o_created, by, o_expires, bg_reason, bg_at, bg_until,
    ))?;
    Ok((token, operator))
}

/// A token for an operator that does not exist: the foreign key refuses it.
pub(crate) fn map_token_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => super::map_err(e),
    }
}

pub(crate) fn micros_opt(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(super::to_micros)
}

/// Implements `OperatorStore` for a SQL store with a read `pool` field and a
/// `writer()` method, with the statements `$queries`.
macro_rules! sql_operator_store {
    ($store:ty, $queries:expr) => {
        #[async_trait::async_trait]
        impl vivified_ports::OperatorStore for $store {
            async fn create_operator(
                &self,
                o: &vivified_ports::Operator,
            ) -> Result<(), vivified_ports::StoreError> {
                sqlx::query($queries.insert)
                    .bind(o.name.as_str())
                    .bind(o.role.as_str())
                    .bind($crate::sql::to_micros(o.created_at))
                    .bind(&o.created_by)
                    .bind($crate::sql::operators::micros_opt(o.expires_at))
                    .bind(o.break_glass.as_ref().map(|g| g.reason.as_str()))
                    .bind($crate::sql::operators::micros_opt(
                        o.break_glass.as_ref().map(|g| g.granted_at),
                    ))
                    .bind($crate::sql::operators::micros_opt(
                        o.break_glass.as_ref().map(|g| g.until),
                    ))
                    .execute(self.writer())
                    .await
                    .map_err($crate::sql::map_err)
                    .map(drop)
            }

            async fn operator(
                &self,
                name: &vivified_ports::OperatorName,
            ) -> Result<Option<vivified_ports::Operator>, vivified_ports::StoreError> {
                let row: Option<$crate::sql::operators::OperatorRow> = sqlx::query_as($queries.get)
                    .bind(name.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::sql::map_err)?;
                row.map($crate::sql::operators::operator).transpose()
            }

            async fn list_operators(
                &self,
                after: Option<&vivified_ports::OperatorName>,
                limit: usize,
            ) -> Result<Vec<vivified_ports::Operator>, vivified_ports::StoreError> {
                let rows: Vec<$crate::sql::operators::OperatorRow> = sqlx::query_as($queries.list)
                    .bind(after.map_or("", vivified_ports::OperatorName::as_str))
                    .bind($crate::sql::limit_i64(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::sql::map_err)?;
                rows.into_iter()
                    .map($crate::sql::operators::operator)
                    .collect()
            }

            async fn delete_operator(
                &self,
                name: &vivified_ports::OperatorName,
            ) -> Result<vivified_ports::Operator, vivified_ports::StoreError> {
                let row: Option<$crate::sql::operators::OperatorRow> =
                    sqlx::query_as($queries.delete)
                        .bind(name.as_str())
                        .fetch_optional(self.writer())
                        .await
                        .map_err($crate::sql::map_err)?;
                row.map($crate::sql::operators::operator)
                    .transpose()?
                    .ok_or(vivified_ports::StoreError::NotFound)
            }

            async fn create_operator_token(
                &self,
                t: &vivified_ports::OperatorToken,
            ) -> Result<(), vivified_ports::StoreError> {
                sqlx::query($queries.token_insert)
                    .bind(&t.prefix)
                    .bind(t.operator.as_str())
                    .bind(&t.token_hash)
                    .bind(&t.label)
                    .bind($crate::sql::to_micros(t.created_at))
                    .bind($crate::sql::to_micros(t.expires_at))
                    .execute(self.writer())
                    .await
                    .map_err($crate::sql::operators::map_token_err)
                    .map(drop)
            }

            async fn operator_token(
                &self,
                prefix: &str,
            ) -> Result<
                Option<(vivified_ports::OperatorToken, vivified_ports::Operator)>,
                vivified_ports::StoreError,
            > {
                let row: Option<$crate::sql::operators::TokenOperatorRow> =
                    sqlx::query_as($queries.token_get)
                        .bind(prefix)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::sql::map_err)?;
                row.map($crate::sql::operators::token_and_operator)
                    .transpose()
            }

            async fn operator_tokens(
                &self,
                name: &vivified_ports::OperatorName,
            ) -> Result<Vec<vivified_ports::OperatorToken>, vivified_ports::StoreError> {
                let rows: Vec<$crate::sql::operators::TokenRow> =
                    sqlx::query_as($queries.tokens_of)
                        .bind(name.as_str())
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::sql::map_err)?;
                rows.into_iter()
                    .map($crate::sql::operators::token)
                    .collect()
            }

            async fn delete_operator_token(
                &self,
                name: &vivified_ports::OperatorName,
                prefix: &str,
            ) -> Result<vivified_ports::OperatorToken, vivified_ports::StoreError> {
                let row: Option<$crate::sql::operators::TokenRow> =
                    sqlx::query_as($queries.token_delete)
                        .bind(name.as_str())
                        .bind(prefix)
                        .fetch_optional(self.writer())
                        .await
                        .map_err($crate::sql::map_err)?;
                row.map($crate::sql::operators::token)
                    .transpose()?
                    .ok_or(vivified_ports::StoreError::NotFound)
            }

            async fn set_break_glass(
                &self,
                name: &vivified_ports::OperatorName,
                grant: Option<&vivified_ports::BreakGlass>,
            ) -> Result<vivified_ports::Operator, vivified_ports::StoreError> {
                let row: Option<$crate::sql::operators::OperatorRow> =
                    sqlx::query_as($queries.break_glass)
                        .bind(name.as_str())
                        .bind(grant.map(|g| g.reason.as_str()))
                        .bind($crate::sql::operators::micros_opt(
                            grant.map(|g| g.granted_at),
                        ))
                        .bind($crate::sql::operators::micros_opt(grant.map(|g| g.until)))
                        .fetch_optional(self.writer())
                        .await
                        .map_err($crate::sql::map_err)?;
                row.map($crate::sql::operators::operator)
                    .transpose()?
                    .ok_or(vivified_ports::StoreError::NotFound)
            }

            async fn count_operators(
                &self,
                role: vivified_ports::Role,
                now: time::OffsetDateTime,
            ) -> Result<u64, vivified_ports::StoreError> {
                let (n,): (i64,) = sqlx::query_as($queries.count)
                    .bind(role.as_str())
                    .bind($crate::sql::to_micros(now))
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::sql::map_err)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    };
}
pub(crate) use sql_operator_store;
