//! The yardstick for the Postgres store's throughput target: rows per second of a bare single-row
//! `INSERT` over sqlx with a given pool size and concurrency, on a scratch database.
//!
//! `cargo run --release -p vivified-adapters --example pg_insert_throughput -- \
//!     postgres://postgres@127.0.0.1:5432/postgres 10 32 10`
//! (admin URL, pool size, concurrent tasks, seconds)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let admin_url = args
        .first()
        .cloned()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let pool_size: u32 = args.get(1).map_or(Ok(10), |a| a.parse())?;
    let tasks: usize = args.get(2).map_or(Ok(32), |a| a.parse())?;
    let secs: u64 = args.get(3).map_or(Ok(10), |a| a.parse())?;

    let name = format!("vivified_insert_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .connect(&format!("{base}/{name}"))
        .await?;
    sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, v BIGINT NOT NULL)")
        .execute(&pool)
        .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (pool, stop, count) = (pool.clone(), stop.clone(), count.clone());
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                sqlx::query("INSERT INTO t (id, v) VALUES ($1, $2)")
                    .bind(format!("{task}-{n}"))
                    .bind(n as i64)
                    .execute(&pool)
                    .await
                    .expect("insert");
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await?;
    }
    let rate = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("bare INSERT: {rate:.0} rows/s (pool {pool_size}, {tasks} tasks, {secs} s)");
    pool.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}
