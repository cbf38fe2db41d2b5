//! The bound on a connection that has no request in service: a client that is silent,
//! idle between requests, or sending a request's headers slowly (slow-loris) is
//! disconnected after `header_read_timeout` without progress.
//!
//! hyper's own `header_read_timeout` armed a timer entry for every request (made when it
//! starts reading a head, cancelled when the head is complete): 7 % of the
//! instructions of `GET /health` (callgrind, `docs/PERFORMANCE.md`). Here the work per
//! request is an increment and a decrement of the connection's in-flight count and a
//! flag store on each write; one watchdog task per connection looks at them every
//! quarter of the bound and aborts the connection's task once it has seen neither a
//! request in service nor a byte written for the whole bound (between 1 and 1.25 times
//! it). Reading does not count as progress, so headers trickled in are cut off, and a
//! response body being written does, so a long download is not. It covers what hyper's
//! timer covered (slow headers, idle keep-alive connections) and, unlike it, a
//! connection that never sends a byte and HTTP/2 connections without a stream.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::AbortHandle;

/// What one connection's watchdog looks at.
#[derive(Debug, Default)]
pub struct ConnWatch {
    /// Requests whose response future has not finished (or been dropped).
    in_flight: AtomicUsize,
    /// Progress since the watchdog last looked: a response finished or bytes written.
    progressed: AtomicBool,
}

impl ConnWatch {
    /// Marks a request in service until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// Whether the connection is busy or made progress since the last call (and
    /// forgets that progress).
    fn busy_or_progressed(&self) -> bool {
        // `swap` first: progress is consumed even when a request is also in flight.
        let progressed = self.progressed.swap(false, Ordering::AcqRel);
        progressed || self.in_flight.load(Ordering::Acquire) > 0
    }
}

/// A request in service on a watched connection; dropping it ends that.
#[derive(Debug)]
pub struct InFlight(Arc<ConnWatch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.progressed.store(true, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's I/O, noting each write that moved bytes.
#[derive(Debug)]
pub struct Watched<I> {
    io: I,
    watch: Arc<ConnWatch>,
}

impl<I> Watched<I> {
    /// `io`, reporting to `watch`.
    pub fn new(io: I, watch: Arc<ConnWatch>) -> Self {
        Self { io, watch }
    }

    fn wrote(&self, poll: &Poll<io::Result<usize>>) {
        if matches!(poll, Poll::Ready(Ok(n)) if *n > 0) {
            self.watch.progressed.store(true, Ordering::Release);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Looks at `watch` every quarter of `bound` and aborts `conn` once four looks in a row
/// found no request in service and no progress. Returns when the connection is gone.
pub async fn watch_connection(watch: Weak<ConnWatch>, conn: AbortHandle, bound: Duration) {
    const LOOKS: u32 = 4;
    let period = (bound / LOOKS).max(Duration::from_millis(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle = 0;
    loop {
        tick.tick().await;
        let Some(w) = watch.upgrade() else { return };
        if conn.is_finished() {
            return;
        }
        if w.busy_or_progressed() {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle >= LOOKS {
            tracing::debug!("connection closed: no request within the header read timeout");
            conn.abort();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A task standing for a connection: it holds `watch` until aborted or told to end.
    fn connection(watch: Arc<ConnWatch>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let _held = watch;
            std::future::pending::<()>().await;
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_aborted_after_the_bound() {
        let watch = Arc::new(ConnWatch::default());
        let conn = connection(Arc::clone(&watch));
        let dog = tokio::spawn(watch_connection(
            Arc::downgrade(&watch),
            conn.abort_handle(),
            Duration::from_secs(8),
        ));
        tokio::time::sleep(Duration::from_millis(7_900)).await;
        assert!(!conn.is_finished(), "aborted before the bound");
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        assert!(conn.is_finished(), "not aborted by 1.25 x the bound");
        assert!(conn.await.unwrap_err().is_cancelled());
        dog.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_service_or_a_write_holds_it_open() {
        let watch = Arc::new(ConnWatch::default());
        let conn = connection(Arc::clone(&watch));
        tokio::spawn(watch_connection(
            Arc::downgrade(&watch),
            conn.abort_handle(),
            Duration::from_secs(4),
        ));
        // A long request (a long poll, say): 30 s in service.
        let request = watch.start();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            !conn.is_finished(),
            "aborted while a request was in service"
        );
        drop(request);
        // Then a response body written a little at a time for 30 s.
        let (client, server) = tokio::io::duplex(64);
        let mut server = Watched::new(server, Arc::clone(&watch));
        let reader = tokio::spawn(async move {
            let mut client = client;
            let mut sink = Vec::new();
            client.read_to_end(&mut sink).await.map(|_| sink.len())
        });
        for _ in 0..30 {
            server.write_all(b"chunk").await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(
            !conn.is_finished(),
            "aborted while a body was being written"
        );
        drop(server);
        assert_eq!(reader.await.unwrap().unwrap(), 150);
        // Then nothing: aborted within 1.25 x the bound.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(conn.is_finished(), "an idle connection stayed open");
    }

    #[tokio::test(start_paused = true)]
    async fn reading_is_not_progress() {
        let watch = Arc::new(ConnWatch::default());
        let (mut client, server) = tokio::io::duplex(64);
        let conn = tokio::spawn({
            let watch = Arc::clone(&watch);
            async move {
                // Reads a head a byte at a time, forever.
                let mut server = Watched::new(server, watch);
                let mut byte = [0u8; 1];
                while server.read(&mut byte).await.is_ok_and(|n| n > 0) {}
            }
        });
        tokio::spawn(watch_connection(
            Arc::downgrade(&watch),
            conn.abort_handle(),
            Duration::from_secs(4),
        ));
        for _ in 0..6 {
            let _ = client.write_all(b"X").await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(
            conn.is_finished(),
            "headers trickled in kept the connection"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_ends_with_its_connection() {
        let watch = Arc::new(ConnWatch::default());
        let conn = tokio::spawn({
            let watch = Arc::clone(&watch);
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                drop(watch);
            }
        });
        let dog = tokio::spawn(watch_connection(
            Arc::downgrade(&watch),
            conn.abort_handle(),
            Duration::from_secs(4),
        ));
        drop(watch);
        conn.await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), dog)
            .await
            .expect("the watchdog returned")
            .unwrap();
    }
}
