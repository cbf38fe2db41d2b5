//! Loopback ports.

/// A loopback port that was free a moment ago (bound to port 0, then released). Another
/// process may take it before the caller binds it; tests that can bind port 0 should.
///
/// # Panics
/// If the loopback interface refuses a bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
