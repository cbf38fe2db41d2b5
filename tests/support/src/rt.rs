//! Async code from places that cannot await: `Drop`, or a test that is not async.

/// `f`'s future, run to completion on a current-thread runtime on a thread of its own
/// (so it works inside another runtime, and while a test unwinds). A panic in it is
/// resumed in the caller.
pub fn on_own_runtime<T, F, Fut>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f())
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
