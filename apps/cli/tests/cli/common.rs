//! Test support: the `vivified` binary run as a child process with a clean
//! environment, and a real core started in-process (`Application::build` on a free
//! loopback port, memory store) on a runtime of its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use vivified_server::{Application, Settings};
pub use vivified_test_support::fs::TempDir;
pub use vivified_test_support::net::free_port;
pub use vivified_test_support::process::{Ran, isolated};

/// The admin token of every in-process core.
pub const ADMIN_TOKEN: &str = "adm-cli-test-Q7w2E9r4T6y1U3i5";
/// The JWT secret of every in-process core.
pub const JWT_SECRET: &str = "jwt-cli-test-Zq3v9X1pLk2Rt7Yw0Bn4Hs8Dm6Fc5Ja1Ge";
/// The audit chain key of every in-process core.
pub const AUDIT_KEY: &str = "aud-cli-test-Wq2Ze4Xr6Ct8Vy0Bu1Ni3Mo5Lp7";

/// A path under the repository root.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// `vivified` with an empty environment (plus `PATH`), stdin closed, run in `dir`.
pub fn vivified(dir: &Path) -> Command {
    isolated(env!("CARGO_BIN_EXE_vivified"), dir)
}

/// A finished run: exit code, stdout and stderr as text.
pub type Run = Ran;

/// A real core on a free loopback port, in dev mode on the memory store, with a known
/// admin token, served by a runtime of its own; dropping it stops it.
pub struct Core {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: reqwest::Client,
}

impl Core {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Core::start`] with some settings changed or added.
    pub fn start_with(overrides: &[(&str, &str)]) -> Self {
        let mut env: BTreeMap<&str, &str> = [
            ("VIVIFIED_STORE", "memory"),
            ("VIVIFIED_ADMIN_TOKEN", ADMIN_TOKEN),
            ("JWT_SECRET", JWT_SECRET),
            ("VIVIFIED_AUDIT_KEY", AUDIT_KEY),
            ("VIVIFIED_AUDIT_SEAL_INTERVAL", "20ms"),
        ]
        .into();
        env.extend(overrides.iter().copied());
        let settings = Settings::load(
            None,
            |k| env.get(k).map(|v| (*v).to_owned()),
            Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        )
        .expect("test settings");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let app = runtime
            .block_on(Application::build(settings))
            .expect("the core starts");
        let addr = app.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        vivified_server::tls::install_default_crypto_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        Self {
            runtime,
            addr,
            stop: Some(stop),
            http,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `vivified` in `dir` pointed at this core with its admin token.
    pub fn cli(&self, dir: &Path) -> Command {
        let mut cmd = vivified(dir);
        cmd.env("VIVIFIED_CORE_URL", self.url())
            .env("VIVIFIED_ADMIN_TOKEN", ADMIN_TOKEN);
        cmd
    }

    /// Sends a request; the status and the JSON body (`Null` when empty).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.runtime.block_on(async {
            let mut req = self.http.request(method, format!("{}{path}", self.url()));
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.expect("the core answers");
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.expect("a body");
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("a JSON body")
            };
            (status, body)
        })
    }

    /// `GET path` with the admin token: the body as text (e.g. an NDJSON export).
    pub fn text(&self, path: &str) -> String {
        self.runtime.block_on(async {
            let resp = self
                .http
                .get(format!("{}{path}", self.url()))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("the core answers");
            assert_eq!(resp.status(), 200, "GET {path}");
            resp.text().await.expect("a body")
        })
    }

    /// Registers `id` with the example manifest `user-management.json` (dev mode: no
    /// credential needed); returns the plugin's token.
    pub fn register(&self, id: &str) -> String {
        let mut manifest: Value = serde_json::from_slice(
            &std::fs::read(repo("schemas/examples/user-management.json")).expect("example"),
        )
        .expect("example JSON");
        manifest["id"] = json!(id);
        let (status, body) = self.request(
            reqwest::Method::POST,
            "/plugins/register",
            None,
            Some(manifest),
        );
        assert_eq!(status, 200, "register {id}: {body}");
        body["token"].as_str().expect("a token").to_owned()
    }

    /// Sends one heartbeat as the plugin.
    pub fn heartbeat(&self, id: &str, token: &str) {
        let (status, body) = self.request(
            reqwest::Method::POST,
            &format!("/plugins/{id}/heartbeat"),
            Some(token),
            Some(json!({"health": "degraded"})),
        );
        assert_eq!(status, 200, "heartbeat {id}: {body}");
    }

    /// Waits until the audit sealer has sealed everything pending; the head's seq.
    pub fn sealed(&self) -> u64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.request(reqwest::Method::GET, "/ready", None, None);
            if status == 200 && body["audit"]["pending"] == 0 {
                return body["audit"]["head"].as_u64().expect("a head");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not sealed within 10 s: {body}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /plugins/{id}` with the admin token.
    pub fn record(&self, id: &str) -> (u16, Value) {
        self.request(
            reqwest::Method::GET,
            &format!("/plugins/{id}"),
            Some(ADMIN_TOKEN),
            None,
        )
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
