//! [`TestCoreBuilder`]: the settings a [`TestCore`] starts with.

use super::*;

/// Chooses how a [`TestCore`] runs. Every setting not given here has a test-friendly
/// default: dev mode, in-memory store, loopback port 0, a 250 ms heartbeat interval, a
/// 5 s request timeout, and random admin token and JWT secret.
#[derive(Clone, Debug, Default)]
pub struct TestCoreBuilder {
    env: BTreeMap<String, String>,
    bind: Option<SocketAddr>,
}

/// 24 random bytes as hex (48 characters).
fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS random source answers");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

impl TestCoreBuilder {
    /// Production mode: registering a new id needs the registration secret (a random
    /// one unless [`TestCoreBuilder::registration_secret`] sets it). Production mode
    /// refuses heartbeat intervals under one second, so this sets 1 s unless an interval
    /// was chosen, and requires an audit key, so this sets a random one unless
    /// `VIVIFIED_AUDIT_KEY` was given.
    pub fn production(mut self) -> Self {
        self.env.insert("VIVIFIED_MODE".into(), "production".into());
        self.env
            .entry("VIVIFIED_REGISTRATION_SECRET".into())
            .or_insert_with(|| random_secret("tk-reg-"));
        self.env
            .entry("VIVIFIED_REGISTRATION_SECRET_ALLOWED".into())
            .or_insert_with(|| "true".into());
        self.env
            .entry("VIVIFIED_AUDIT_KEY".into())
            .or_insert_with(|| random_secret("tk-aud-"));
        self.env
            .entry("VIVIFIED_HEARTBEAT_INTERVAL".into())
            .or_insert_with(|| "1s".into());
        self
    }

    /// Production mode where new plugins register only with enrollment tokens
    /// ([`crate::TestCore::enroll`]): no shared registration secret. Use instead of
    /// [`TestCoreBuilder::production`].
    pub fn enrollment_only(mut self) -> Self {
        self = self.production();
        self.env.remove("VIVIFIED_REGISTRATION_SECRET");
        self.env.remove("VIVIFIED_REGISTRATION_SECRET_ALLOWED");
        self
    }

    /// The registration secret (used by a production-mode core).
    pub fn registration_secret(self, secret: &str) -> Self {
        self.env("VIVIFIED_REGISTRATION_SECRET", secret)
    }

    /// The admin token.
    pub fn admin_token(self, token: &str) -> Self {
        self.env("VIVIFIED_ADMIN_TOKEN", token)
    }

    /// The JWT secret (two cores with the same secret accept each other's tokens).
    pub fn jwt_secret(self, secret: &str) -> Self {
        self.env("JWT_SECRET", secret)
    }

    /// The heartbeat interval the core tells plugins (sub-second only in dev mode).
    pub fn heartbeat_interval(self, interval: Duration) -> Self {
        self.env("VIVIFIED_HEARTBEAT_INTERVAL", &humantime_ms(interval))
    }

    /// The lifetime of plugin tokens (whole seconds in the token; at least 1 s).
    pub fn token_ttl(self, ttl: Duration) -> Self {
        self.env("VIVIFIED_TOKEN_TTL", &humantime_ms(ttl))
    }

    /// Listens on `addr` instead of a free loopback port (for a core that must come up
    /// on an address a plugin was already told about).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// Any other core setting, by its environment name (see the README's table).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Builds and starts the core on the current tokio runtime.
    ///
    /// # Errors
    /// [`TestkitError::Settings`] or [`TestkitError::Start`] when the core refuses the
    /// settings or cannot bind.
    pub async fn start(self) -> Result<TestCore, TestkitError> {
        let mut env = self.env;
        env.entry("VIVIFIED_STORE".into())
            .or_insert_with(|| "memory".into());
        env.entry("VIVIFIED_HEARTBEAT_INTERVAL".into())
            .or_insert_with(|| "250ms".into());
        env.entry("VIVIFIED_REQUEST_TIMEOUT".into())
            .or_insert_with(|| "5s".into());
        env.entry("VIVIFIED_ADMIN_TOKEN".into())
            .or_insert_with(|| random_secret("tk-adm-"));
        env.entry("JWT_SECRET".into())
            .or_insert_with(|| random_secret("tk-jwt-"));
        let bind = self
            .bind
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let settings = Settings::load(None, |k| env.get(k).cloned(), Some(bind))?;
        let registration_secret = settings
            .registration_secret
            .as_ref()
            .map(|s| s.expose().to_owned());
        let app = Application::build(settings).await?;
        let addr = app.local_addr();
        let admin_token = app
            .admin_token()
            .map(|t| t.expose().to_owned())
            .unwrap_or_default();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stop_rx.await;
        }));
        tracing::debug!(addr = %addr, "test core started");
        Ok(TestCore {
            url: format!("http://{addr}"),
            addr,
            admin_token,
            registration_secret,
            stop: Some(stop_tx),
            task: Some(task),
            http: client(),
        })
    }
}
