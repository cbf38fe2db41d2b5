//! Which external services the tests may use, and the CI rule: with `CI` set, a test
//! that needs a service the environment does not name fails instead of skipping.

/// The environment variable naming the Postgres server tests create databases on
/// (an admin URL such as `postgres://postgres@127.0.0.1:5432/postgres`).
pub const POSTGRES_URL_VAR: &str = "VIVIFIED_TEST_POSTGRES_URL";

/// The environment variable naming the NATS server (with JetStream) of the bus tests.
pub const NATS_URL_VAR: &str = "VIVIFIED_TEST_NATS_URL";

/// The value of `var` if set. If it is not: with `CI` set, panics (the tests that need
/// it must run in CI); otherwise prints that the test skips and returns `None`.
///
/// # Panics
/// In CI, when `var` is unset.
pub fn required(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            skip(&format!("{var} is not set"));
            None
        }
    }
}

/// Says why a test does not run here (`skipping: <reason>`), for the caller to return.
/// With `CI` set, fails instead: nothing is skipped in CI.
///
/// # Panics
/// In CI.
pub fn skip(reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {reason}: every test must run in CI"
    );
    eprintln!("skipping: {reason}");
}

/// The Postgres admin URL, under the CI rule of [`required`].
pub fn postgres_url() -> Option<String> {
    required(POSTGRES_URL_VAR)
}

/// The NATS URL, under the CI rule of [`required`].
pub fn nats_url() -> Option<String> {
    required(NATS_URL_VAR)
}
