//! What runs once the core is bound: each accepted connection served (HTTP/1.1 or
//! HTTP/2), and the liveness sweeper.

use super::*;

/// What bounds a connection, from the settings.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConnLimits {
    /// `header_read_timeout`: HTTP/2 pings must be answered within it.
    pub(super) header_timeout: Duration,
    /// `max_header_bytes`: the router's trace layer answers 431 above it; the protocol
    /// layer stops reading a head at [`protocol_header_cap`] of it.
    pub(super) max_header_bytes: usize,
}

/// What hyper reads of a request head at most, on either protocol: four times the
/// setting and at least 64 KiB, so that a head over the setting but under this is
/// read whole and answered by the trace layer in the API's JSON error shape, and a
/// larger one is cut off (hyper and h2 answer a bare 431) without being buffered.
pub(super) fn protocol_header_cap(max_header_bytes: usize) -> usize {
    max_header_bytes.saturating_mul(4).max(64 * 1024)
}

/// Serves one accepted connection (plain or TLS) with HTTP/1.1 or HTTP/2 until it
/// closes; graceful shutdown lets its requests finish.
pub(super) async fn serve_connection<I>(
    io: Watched<I>,
    router: App,
    limits: ConnLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No per-request header timer: `conn_watch` bounds slow headers and idle
    // connections for the whole connection (hyper would otherwise default to 30 s).
    let cap = protocol_header_cap(limits.max_header_bytes);
    builder
        .http1()
        .header_read_timeout(None::<Duration>)
        .max_buf_size(cap);
    // HTTP/2 (offered by ALPN over TLS, or prior knowledge): a peer that stops
    // answering pings within the header timeout is dropped, and one connection carries
    // a bounded number of streams and header bytes.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HTTP2_PING_INTERVAL))
        .keep_alive_timeout(limits.header_timeout)
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .max_header_list_size(u32::try_from(cap).unwrap_or(u32::MAX));
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    let _ = watcher.watch(conn).await;
}

/// How often an HTTP/2 connection is pinged to find a peer that is gone.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Streams one HTTP/2 connection may have open at once.
const HTTP2_MAX_STREAMS: u32 = 128;

/// Writes the heartbeats held in memory every `every` until aborted. A failing store
/// is logged once per outage; the beats are kept and written at the next tick that
/// works.
pub(super) async fn flush_forever(buffered: Arc<BufferedHeartbeats>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match buffered.flush().await {
            Ok(_) if failing => {
                tracing::info!("heartbeats are written again");
                failing = false;
            }
            Ok(_) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, pending = buffered.pending(), "writing heartbeats failed; retrying every tick");
                    failing = true;
                }
            }
        }
    }
}

/// How often the sweeper deletes enrollments that ended long ago.
const ENROLLMENT_PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Sweeps liveness deadlines every `every` until aborted, and purges ended
/// enrollments at its first tick and hourly after. A failing store is logged once per
/// outage, not once per tick.
pub(super) async fn sweep_forever(registry: Registry, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut purged_at: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        if purged_at.is_none_or(|at| at.elapsed() >= ENROLLMENT_PURGE_EVERY) {
            // Retried at the next purge: what it would delete can wait an hour.
            if let Err(e) = registry.purge_enrollments().await {
                tracing::warn!(error = %e, "purging ended enrollments failed");
            }
            purged_at = Some(tokio::time::Instant::now());
        }
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
