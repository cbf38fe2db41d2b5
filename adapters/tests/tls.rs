//! TLS to the backends (HIPAA §164.312(e)).
//!
//! - NATS: a private `nats-server` with JetStream and TLS (a throwaway CA and server
//!   certificate made with rcgen), started by the test on a free loopback port and
//!   killed at the end; the NATS bus connects over `tls://` trusting the CA, enqueues
//!   and pulls one event; without the CA it fails with a TLS error naming the setting;
//!   a server that verifies clients takes the bus's client certificate. Needs
//!   `/usr/sbin/nats-server` (or `VIVIFIED_TEST_NATS_SERVER`); without it the test
//!   prints a skip line, and with `CI=true` it fails instead.
//! - Postgres: gated on `VIVIFIED_TEST_POSTGRES_URL` like `tests/postgres.rs`. When the
//!   server has `ssl = on`, a store connected with `sslmode=require` runs on an
//!   encrypted session (`pg_stat_ssl`), and `sslmode=verify-full` without the server's
//!   root fails with a clear error. A server without SSL is reported and skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use vivified_adapters::nats::{NatsBusConfig, NatsConnectError, NatsEventBus};
use vivified_adapters::postgres::{PostgresConfig, PostgresPluginStore};
use vivified_conformance::bus::bus_event;
use vivified_ports::{EventBus, PluginId, StoreError};
use vivified_test_support::fs::TempDir;
use vivified_test_support::net::free_port;
use vivified_test_support::pki::Pki;
use vivified_test_support::postgres::ScratchDb;
use vivified_test_support::services;

/// The `nats-server` binary, or `None` after a skip line (never under `CI=true`).
fn nats_server_binary() -> Option<PathBuf> {
    let path = std::env::var_os("VIVIFIED_TEST_NATS_SERVER")
        .map_or_else(|| PathBuf::from("/usr/sbin/nats-server"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    services::skip(&format!(
        "no nats-server at {} (set VIVIFIED_TEST_NATS_SERVER)",
        path.display()
    ));
    None
}

/// A private nats-server; killed (through its own handle) when dropped.
struct NatsServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl NatsServer {
    /// Starts `binary` with JetStream and TLS on a free port, storing in `dir`;
    /// `verify_clients` also requires client certificates signed by the CA.
    fn start(binary: &Path, dir: &Path, pki: &Pki, verify_clients: bool) -> Self {
        for _ in 0..3 {
            let port = free_port();
            let store = dir.join(format!("js-{port}"));
            let log = dir.join(format!("nats-{port}.log"));
            let mut cmd = Command::new(binary);
            cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(&store)
                .arg("-l")
                .arg(&log)
                .arg("--tls")
                .arg("--tlscert")
                .arg(&pki.server_cert)
                .arg("--tlskey")
                .arg(&pki.server_key);
            if verify_clients {
                cmd.arg("--tlsverify").arg("--tlscacert").arg(&pki.ca);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nats-server");
            let mut server = Self { child, port, log };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // lost the port race, or refused to start: see below
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                assert!(
                    Instant::now() < deadline,
                    "nats-server did not listen: {}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(25));
            }
            let log = std::fs::read_to_string(&server.log).unwrap_or_default();
            assert!(
                log.contains("address already in use"),
                "nats-server exited: {log}"
            );
        }
        panic!("no free port for nats-server after three attempts");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(ca: Option<&Path>) -> NatsBusConfig {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    NatsBusConfig {
        subject_prefix: format!("vivtls.{}", &tag[..12]),
        stream_prefix: format!("VIVTLS_{}", &tag[..12]),
        timeout: Duration::from_secs(5),
        ca_cert: ca.map(Path::to_path_buf),
        ..NatsBusConfig::default()
    }
}

async fn round_trip(bus: &NatsEventBus, id: &str) {
    let target = PluginId::parse("tls-target").unwrap();
    bus.enqueue(&target, bus_event(id, "tls-source"))
        .await
        .expect("enqueue over TLS");
    let pulled = bus
        .pull(&target, None, 10, Duration::from_secs(5))
        .await
        .expect("pull over TLS");
    assert_eq!(pulled.events.len(), 1, "{:?}", pulled.events);
    assert_eq!(pulled.events[0].1.event_id, id);
    bus.remove_queue(&target).await.expect("remove the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_bus_speaks_tls_with_a_private_ca() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    let dir = TempDir::new("nats");
    let pki = Pki::new(dir.path());
    let server = NatsServer::start(&binary, dir.path(), &pki, false);
    let port = server.port;

    // tls:// with the CA: an event goes through and comes back.
    let bus = NatsEventBus::connect(&format!("tls://localhost:{port}"), config(Some(&pki.ca)))
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {e}"));
    round_trip(&bus, "tls-1").await;
    // nats:// to a server that requires TLS is upgraded; the IP is in the certificate.
    let bus = NatsEventBus::connect(&format!("nats://127.0.0.1:{port}"), config(Some(&pki.ca)))
        .await
        .unwrap_or_else(|e| panic!("connect to a TLS server with nats://: {e}"));
    round_trip(&bus, "tls-2").await;

    // Without the CA the server's certificate is not trusted.
    let err = NatsEventBus::connect(
        &format!("tls://user:s3cret@localhost:{port}"),
        NatsBusConfig {
            url_setting: "NATS_URL",
            ..config(None)
        },
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, NatsConnectError::Tls { .. }), "{text}");
    assert!(
        text.starts_with("NATS_URL: TLS with the NATS server failed"),
        "{text}"
    );
    assert!(text.contains("VIVIFIED_NATS_CA_CERT"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!text.contains('\n'), "{text}");

    // A CA file that is not there is named as such.
    let err = NatsEventBus::connect(
        &format!("tls://localhost:{port}"),
        config(Some(&dir.path().join("absent.pem"))),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, NatsConnectError::TlsFile { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("VIVIFIED_NATS_CA_CERT: cannot read"),
        "{err}"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_that_verifies_clients_takes_the_client_certificate() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    let dir = TempDir::new("nats-mtls");
    let pki = Pki::new(dir.path());
    let server = NatsServer::start(&binary, dir.path(), &pki, true);
    let url = format!("tls://localhost:{}", server.port);

    let bus = NatsEventBus::connect(
        &url,
        NatsBusConfig {
            client_cert: Some((pki.client_cert.clone(), pki.client_key.clone())),
            ..config(Some(&pki.ca))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("connect with a client certificate: {e}"));
    round_trip(&bus, "mtls-1").await;

    // Without a client certificate the server ends the handshake.
    let err = NatsEventBus::connect(&url, config(Some(&pki.ca)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NatsConnectError::Tls { .. } | NatsConnectError::Unreachable { .. }
        ),
        "{err}"
    );
    drop(server);
}

/// `url` with `params` added to its query.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sslmode_is_honoured() {
    let Some(admin_url) = services::postgres_url() else {
        return;
    };
    let plain = with_params(&admin_url, "sslmode=disable");
    let mut conn = PgConnection::connect(&plain)
        .await
        .unwrap_or_else(|e| panic!("VIVIFIED_TEST_POSTGRES_URL is set but unreachable: {e}"));
    let ssl: String = sqlx::query_scalar("show ssl")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    if ssl != "on" {
        // Debian's and Ubuntu's clusters serve TLS with the snakeoil certificate.
        services::skip(&format!(
            "the Postgres server has ssl = {ssl}; sslmode=require cannot be tested"
        ));
        return;
    }
    let db = ScratchDb::create("vivified_tls")
        .await
        .expect("the variable is set");
    let db_url = db.url().to_owned();

    // sslmode=require: the store's sessions are encrypted.
    let store = PostgresPluginStore::connect(
        &with_params(&db_url, "sslmode=require"),
        &PostgresConfig::default(),
    )
    .await
    .expect("connect with sslmode=require");
    let encrypted: bool =
        sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(encrypted, "sslmode=require gave an unencrypted session");
    store.pool().close().await;

    // sslmode=disable: the same query says so, so the check above can fail.
    let store = PostgresPluginStore::connect(
        &with_params(&db_url, "sslmode=disable"),
        &PostgresConfig::default(),
    )
    .await
    .expect("connect with sslmode=disable");
    let encrypted: bool =
        sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(!encrypted, "sslmode=disable gave an encrypted session");
    store.pool().close().await;

    // verify-full against a root that did not sign the server's certificate: refused.
    let dir = TempDir::new("pg");
    let pki = Pki::new(dir.path());
    let err = PostgresPluginStore::connect(
        &with_params(
            &db_url,
            &format!("sslmode=verify-full&sslrootcert={}", pki.ca.display()),
        ),
        &PostgresConfig::default(),
    )
    .await
    .expect_err("verify-full with the wrong root must fail");
    let StoreError::Unavailable(source) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    let text = source.to_string();
    assert!(text.contains("invalid peer certificate"), "{text}");
    // An sslrootcert that is not there is named.
    let err = PostgresPluginStore::connect(
        &with_params(
            &db_url,
            &format!(
                "sslmode=verify-full&sslrootcert={}",
                dir.path().join("absent.pem").display()
            ),
        ),
        &PostgresConfig::default(),
    )
    .await
    .expect_err("a missing sslrootcert must fail");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

    conn.close().await.unwrap();
    db.drop_db().await;
}
