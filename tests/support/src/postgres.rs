//! Postgres scratch databases: one uniquely named database per test, created on the
//! server [`crate::services::postgres_url`] names and dropped when the test ends.

use sqlx::{Connection, PgConnection};

/// A database of its own for one test. Dropped with `DROP DATABASE … WITH (FORCE)`
/// by [`ScratchDb::drop_db`], or when the value is dropped (even while the test
/// unwinds).
#[derive(Debug)]
pub struct ScratchDb {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl ScratchDb {
    /// Creates `<prefix>_<random>` on the test server; `None` when the Postgres tests
    /// are skipped (see [`crate::services`]).
    ///
    /// # Panics
    /// If the server is named but cannot be reached, or the database not created.
    pub async fn create(prefix: &str) -> Option<Self> {
        let admin_url = crate::services::postgres_url()?;
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let url = with_database(&admin_url, &name);
        admin(&admin_url, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{} is set but the database cannot be created: {e}",
                    crate::services::POSTGRES_URL_VAR
                )
            });
        Some(Self {
            admin_url,
            name,
            url,
            dropped: false,
        })
    }

    /// [`ScratchDb::create`] from code that is not async (on a thread of its own).
    pub fn create_blocking(prefix: &str) -> Option<Self> {
        let prefix = prefix.to_owned();
        crate::rt::on_own_runtime(move || async move { Self::create(&prefix).await })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's `host:port` (port 5432 when the URL names none).
    pub fn server_addr(&self) -> String {
        let (_, hostport, _) = split_url(&self.admin_url);
        match hostport.rsplit_once(':') {
            Some((_, port)) if !port.is_empty() && !hostport.ends_with(']') => hostport.to_owned(),
            _ => format!("{}:5432", hostport.trim_end_matches(':')),
        }
    }

    /// The database's URL with the server at `host_port` instead (a proxy in front).
    pub fn url_via(&self, host_port: &str) -> String {
        let (prefix, _, _) = split_url(&self.admin_url);
        format!("{prefix}{host_port}/{}", self.name)
    }

    /// Drops the database now.
    ///
    /// # Panics
    /// If it cannot be dropped.
    pub async fn drop_db(mut self) {
        self.dropped = true;
        admin(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
        .expect("drop the scratch database");
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop may run inside the test's runtime (or while it unwinds): the last
        // async call gets a thread and a runtime of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        if let Err(e) =
            crate::rt::on_own_runtime(move || async move { admin(&admin_url, &sql).await })
        {
            eprintln!("could not drop scratch database {name}: {e}");
        }
    }
}

/// Runs one statement on the admin connection.
async fn admin(admin_url: &str, sql: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

/// `scheme://[userinfo@]`, `host[:port]` and the rest (`/db?…`) of a URL.
fn split_url(url: &str) -> (String, &str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (format!("{scheme}://{userinfo}@"), hostport, tail),
        None => (format!("{scheme}://"), authority, tail),
    }
}

/// `url` naming database `name` instead, its query kept.
fn with_database(url: &str, name: &str) -> String {
    let (prefix, hostport, tail) = split_url(url);
    let query = tail.find('?').map_or("", |q| &tail[q..]);
    format!("{prefix}{hostport}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_scratch_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@db/x?sslmode=require", "t2"),
            "postgres://u:p@db/t2?sslmode=require"
        );
        let db = ScratchDb {
            admin_url: "postgres://u@db.example/postgres".into(),
            name: "t3".into(),
            url: String::new(),
            dropped: true,
        };
        assert_eq!(db.server_addr(), "db.example:5432");
        assert_eq!(db.url_via("127.0.0.1:9"), "postgres://u@127.0.0.1:9/t3");
    }
}
