//! What runs once the core is bound: each accepted connection served (HTTP/1.1 or
//! HTTP/2), and the liveness sweeper.

use super::*;

/// Serves one accepted connection (plain or TLS) with HTTP/1.1 or HTTP/2 until it
/// closes; graceful shutdown lets its requests finish.
pub(super) async fn serve_connection<I>(
    io: Watched<I>,
    router: App,
    header_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No per-request header timer: `conn_watch` bounds slow headers and idle
    // connections for the whole connection (hyper would otherwise default to 30 s).
    builder.http1().header_read_timeout(None::<Duration>);
    // HTTP/2 (offered by ALPN over TLS, or prior knowledge): a peer that stops
    // answering pings within the header timeout is dropped, and one connection carries
    // a bounded number of streams and header bytes.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HTTP2_PING_INTERVAL))
        .keep_alive_timeout(header_timeout)
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .max_header_list_size(HTTP2_MAX_HEADER_LIST);
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    let _ = watcher.watch(conn).await;
}

/// How often an HTTP/2 connection is pinged to find a peer that is gone.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Streams one HTTP/2 connection may have open at once.
const HTTP2_MAX_STREAMS: u32 = 128;
/// Bytes of headers one HTTP/2 request may carry (hyper's HTTP/1 reads at most ~400 KB).
const HTTP2_MAX_HEADER_LIST: u32 = 64 * 1024;

/// Sweeps liveness deadlines every `every` until aborted. A failing store is
/// logged once per outage, not once per tick.
pub(super) async fn sweep_forever(registry: Registry, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match registry.sweep().await {
            Ok(report) => {
                if failing {
                    tracing::info!("liveness sweep works again");
                    failing = false;
                }
                if report.stale + report.deregistered > 0 {
                    tracing::info!(
                        stale = report.stale,
                        deregistered = report.deregistered,
                        "liveness sweep"
                    );
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "liveness sweep failed; retrying every tick");
                    failing = true;
                }
            }
        }
    }
}
