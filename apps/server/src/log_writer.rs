//! A batching log writer: log lines are appended to a shared buffer and one background
//! thread writes them out in batches.
//!
//! Writing each line to stdout directly cost a `write` system call per line and, with
//! several worker threads logging, contention on stdout's lock (futex waits and wake-ups):
//! on `POST /plugins/register`, which logs one line per registration, that was about a
//! tenth of the server's CPU under load (`perf`, see `docs/PERFORMANCE.md`). Here a
//! line costs a short critical section and a copy; the writer thread wakes at most once
//! per [`LINGER`], so under load one system call carries many lines.
//!
//! No line is ever dropped: when the writer falls behind (stdout is a full pipe, say)
//! and [`MAX_PENDING`] bytes are waiting, loggers wait for it, as they would have
//! waited on a blocking `write`. [`LogFlushGuard`] writes out what is pending when it
//! is dropped (at the end of `main`).

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer thread waits after the first pending line for others to join it.
pub const LINGER: Duration = Duration::from_millis(10);

/// Bytes pending above which loggers wait for the writer.
pub const MAX_PENDING: usize = 4 << 20;

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// The writer thread is waiting for lines.
    idle: bool,
    /// The guard asked the writer thread to stop once everything is written.
    closed: bool,
    /// The writer thread has stopped; the sink is in `after_close`.
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The sink, handed back by the writer thread when it stops, for lines logged
    /// after that (written directly).
    after_close: Mutex<Option<Box<dyn Write + Send>>>,
    /// Signalled when lines arrive (to the writer) or a batch is taken (to loggers).
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a byte buffer, which is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The handle loggers write through; cheap to clone. Implements `MakeWriter` for
/// `tracing_subscriber`.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread and writes out every pending line when dropped.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogFlushGuard {
    writer: LogWriter,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the writer thread writing to `sink`. Lines written through the returned
    /// handle after the guard is dropped are written directly, unbatched.
    pub fn spawn<W: Write + Send + 'static>(sink: W) -> io::Result<(LogWriter, LogFlushGuard)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            after_close: Mutex::new(None),
            changed: Condvar::new(),
        });
        let writer = LogWriter { shared };
        let thread = {
            let shared = Arc::clone(&writer.shared);
            std::thread::Builder::new()
                .name("vivified-log".into())
                .spawn(move || run(&shared, sink))?
        };
        Ok((
            writer.clone(),
            LogFlushGuard {
                writer,
                thread: Some(thread),
            },
        ))
    }

    /// Appends one or more whole lines.
    fn push(&self, bytes: &[u8]) {
        let mut state = self.shared.lock();
        while state.pending.len() >= MAX_PENDING && !state.stopped {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.stopped {
            drop(state);
            // The writer thread has stopped (shutdown): write directly, never drop a
            // line.
            let mut sink = self
                .shared
                .after_close
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(sink) = sink.as_mut() {
                let _ = sink.write_all(bytes);
                let _ = sink.flush();
            }
            return;
        }
        state.pending.extend_from_slice(bytes);
        let wake = state.idle;
        state.idle = false;
        drop(state);
        if wake {
            self.shared.changed.notify_all();
        }
    }
}

/// The writer thread: waits for lines, lingers briefly so more can join, writes the
/// batch, and wakes loggers waiting for room.
fn run<W: Write + Send + 'static>(shared: &Shared, mut sink: W) {
    let mut batch = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.pending.is_empty() && !state.closed {
            state.idle = true;
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.idle = false;
        if state.pending.is_empty() && state.closed {
            // Lines logged from now on are written directly; the lock is held so none
            // can slip in between.
            *shared
                .after_close
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(sink));
            state.stopped = true;
            drop(state);
            shared.changed.notify_all();
            return;
        }
        if !state.closed && state.pending.len() < MAX_PENDING / 2 {
            drop(state);
            std::thread::sleep(LINGER);
            state = shared.lock();
        }
        std::mem::swap(&mut batch, &mut state.pending);
        drop(state);
        // A failed write (stdout closed) cannot be reported anywhere better; the
        // batch is discarded as a direct write's line would be.
        let _ = sink.write_all(&batch);
        let _ = sink.flush();
        batch.clear();
        if batch.capacity() > MAX_PENDING {
            batch = Vec::new();
        }
        // Loggers waiting for room.
        shared.changed.notify_all();
    }
}

impl Drop for LogFlushGuard {
    fn drop(&mut self) {
        self.writer.shared.lock().closed = true;
        self.writer.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One event's line, as `tracing_subscriber` writes it (a single `write_all`).
pub struct LineWriter<'a>(&'a LogWriter);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink shared with the test, counting `write_all` batches.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes.lock().unwrap().extend_from_slice(buf);
            *self.writes.lock().unwrap() += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_arrives_whole_and_in_per_thread_order() {
        let sink = Sink::default();
        let (writer, guard) = LogWriter::spawn(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        let line = format!("thread {t} line {i} {}\n", "x".repeat(i % 97));
                        w.make_writer_for_test().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let bytes = sink.bytes.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let mut next = [0usize; 4];
        let mut lines = 0;
        for line in text.lines() {
            let mut parts = line.split(' ');
            assert_eq!(parts.next(), Some("thread"));
            let t: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(parts.next(), Some("line"));
            let i: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(parts.next().unwrap(), "x".repeat(i % 97), "a line was torn");
            assert_eq!(i, next[t], "thread {t}'s lines out of order or missing");
            next[t] += 1;
            lines += 1;
        }
        assert_eq!(lines, 20_000);
        // Batched: far fewer writes than lines.
        let writes = *sink.writes.lock().unwrap();
        assert!(writes < 20_000 / 4, "{writes} writes for 20 000 lines");
    }

    #[test]
    fn loggers_wait_for_a_stalled_writer_instead_of_dropping_lines() {
        /// A sink that blocks until released.
        struct Gate {
            open: Arc<(Mutex<bool>, Condvar)>,
            inner: Sink,
        }
        impl Write for Gate {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let (lock, cv) = &*self.open;
                let mut open = lock.lock().unwrap();
                while !*open {
                    open = cv.wait(open).unwrap();
                }
                self.inner.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (writer, guard) = LogWriter::spawn(Gate {
            open: Arc::clone(&open),
            inner: sink.clone(),
        })
        .unwrap();
        let line = vec![b'y'; 1023];
        let total = 3 * MAX_PENDING / 1024;
        let logger = {
            let writer = writer.clone();
            let mut line = line.clone();
            line.push(b'\n');
            std::thread::spawn(move || {
                for _ in 0..total {
                    writer.make_writer_for_test().write_all(&line).unwrap();
                }
            })
        };
        // The logger fills the buffer and then has to wait for the gate.
        std::thread::sleep(Duration::from_millis(200));
        assert!(!logger.is_finished(), "the logger should be held back");
        {
            let pending = writer.shared.lock().pending.len();
            assert!(pending <= MAX_PENDING + 1024, "{pending} bytes pending");
        }
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        logger.join().unwrap();
        drop(guard);
        assert_eq!(sink.bytes.lock().unwrap().len(), total * 1024);
    }

    impl LogWriter {
        fn make_writer_for_test(&self) -> LineWriter<'_> {
            tracing_subscriber::fmt::MakeWriter::make_writer(self)
        }
    }
}
