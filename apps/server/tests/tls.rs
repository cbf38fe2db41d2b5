//! HTTPS served by the real `vivified-server` binary (HIPAA §164.312(e)): a throwaway CA
//! and server certificate (SAN `localhost` and `127.0.0.1`) made with rcgen, a core in
//! production mode serving TLS on a free loopback port, and a plugin registering and
//! heartbeating through the plugin SDK's client, which trusts the CA only because it is
//! told to (`Config::ca_cert`). Also: plain HTTP on the TLS port gets no answer, ALPN
//! offers h2, a silent client does not hold up others, production refuses plain HTTP
//! beyond loopback unless a proxy terminates TLS, and unusable certificate files stop
//! the start with one line naming the setting.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Spawn, vivified};
use vivified_plugin_sdk::{Config, CoreClient, CoreError, HealthReport, Manifest, Secret};
use vivified_test_support::fs::TempDir;
use vivified_test_support::pki::Pki;

const PROD_JWT: &str = "tls-jwt-Zq3v9X1pLk2Rt7Yw0Bn4Hs8Dm6Fc5Ja1Ge";
const PROD_ADMIN: &str = "tls-admin-Q7w2E9r4T6y1U3i5";
const PROD_REGISTRATION: &str = "tls-reg-M8n6B4v2C0x9Z7l5";
const PROD_AUDIT_KEY: &str = "tls-audit-4Tb8Nc2Vx6Lm0Qw3Er7Ty1Ui5Op9As";

fn production() -> Spawn {
    vivified()
        .env("VIVIFIED_MODE", "production")
        .env("JWT_SECRET", PROD_JWT)
        .env("VIVIFIED_ADMIN_TOKEN", PROD_ADMIN)
        .env("VIVIFIED_REGISTRATION_SECRET", PROD_REGISTRATION)
        .env("VIVIFIED_REGISTRATION_SECRET_ALLOWED", "true")
        .env("VIVIFIED_AUDIT_KEY", PROD_AUDIT_KEY)
        .env("VIVIFIED_STORE", "memory")
}

fn with_tls(spawn: Spawn, cert: &Path, key: &Path) -> Spawn {
    spawn
        .env("VIVIFIED_TLS_CERT", cert.to_str().unwrap())
        .env("VIVIFIED_TLS_KEY", key.to_str().unwrap())
}

/// An HTTPS client trusting `ca` only.
fn https_client(ca: &Path) -> reqwest::Client {
    vivified_server::tls::install_default_crypto_provider();
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
        .build()
        .unwrap()
}

/// Starts `spawn` and waits until `GET https://127.0.0.1:PORT/health` answers 200.
async fn start_https(spawn: &Spawn, ca: &Path) -> common::Server {
    let http = https_client(ca);
    for _ in 0..3 {
        let mut server = spawn.spawn();
        let deadline = Instant::now() + common::START_TIMEOUT;
        loop {
            if server.wait_exit(Duration::ZERO).is_some() {
                break;
            }
            let url = format!("https://127.0.0.1:{}/health", server.port());
            if let Ok(resp) = http.get(&url).send().await
                && resp.status() == reqwest::StatusCode::OK
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "the HTTPS core did not answer /health\n--- stderr ---\n{}\n--- stdout ---\n{}",
                server.stderr(),
                server.stdout()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = server.wait_exit(Duration::from_secs(5));
        assert!(
            server.stderr().contains("cannot listen"),
            "the HTTPS core exited:\n{}",
            server.stderr()
        );
    }
    panic!("no free port after three attempts");
}

/// The one non-empty stderr line of a start that must fail with a clean exit code.
fn refusal_line(spawn: &Spawn, case: &str) -> String {
    let out = spawn.run_to_exit(Duration::from_secs(10));
    assert!(!out.status.success(), "{case}: must not start");
    assert!(
        out.status.code().is_some_and(|c| c != 101),
        "{case}: a clean exit code, not a panic or a signal: {}",
        out.status
    );
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{case}: one line on stderr:\n{}",
        out.stderr
    );
    lines[0].to_owned()
}

#[tokio::test]
async fn a_plugin_registers_and_heartbeats_over_https_with_the_sdk() {
    let dir = TempDir::new("sdk");
    let pki = Pki::new(dir.path());
    let mut server = start_https(
        &with_tls(production(), &pki.server_cert, &pki.server_key),
        &pki.ca,
    )
    .await;
    let port = server.port();

    // The SDK's client, trusting the generated CA through its configuration.
    let config = Config {
        ca_cert: Some(pki.ca.clone()),
        registration_secret: Some(Secret::new(PROD_REGISTRATION)),
        request_timeout: Duration::from_secs(10),
        ..Config::new(format!("https://localhost:{port}"))
    };
    let client = CoreClient::from_config(&config).expect("an HTTPS client");
    let manifest = Manifest::builder("tls-plugin", "TLS plugin", "0.1.0")
        .build()
        .expect("a valid manifest");
    let registration = client
        .register(&manifest, config.registration_secret.as_ref())
        .await
        .expect("registration over HTTPS");
    assert_eq!(registration.plugin_id, "tls-plugin");
    client
        .heartbeat("tls-plugin", &registration.token, &HealthReport::healthy())
        .await
        .expect("a heartbeat over HTTPS");
    // The same address by IP (the certificate's IP SAN).
    let by_ip = CoreClient::from_config(&Config {
        core_url: format!("https://127.0.0.1:{port}"),
        ..config.clone()
    })
    .unwrap();
    by_ip
        .heartbeat("tls-plugin", &registration.token, &HealthReport::healthy())
        .await
        .expect("a heartbeat to the IP address");

    // The record says so, read by the operator over HTTPS.
    let record: serde_json::Value = https_client(&pki.ca)
        .get(format!("https://127.0.0.1:{port}/plugins/tls-plugin"))
        .bearer_auth(PROD_ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["status"], "active", "{record}");

    // Without the CA, the certificate is not trusted: verification is on.
    let untrusting =
        CoreClient::new(&format!("https://localhost:{port}"), Duration::from_secs(5)).unwrap();
    match untrusting
        .heartbeat("tls-plugin", &registration.token, &HealthReport::healthy())
        .await
    {
        Err(CoreError::Unreachable(e)) => {
            let chain = error_chain(e.as_ref());
            assert!(
                chain.contains("certificate") || chain.contains("UnknownIssuer"),
                "{chain}"
            );
        }
        other => panic!("a core with an untrusted certificate must be unreachable: {other:?}"),
    }

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = common::client()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // The core keeps serving HTTPS after that.
    let resp = https_client(&pki.ca)
        .get(format!("https://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);

    assert!(
        !server.stdout().contains("BEGIN"),
        "no key or certificate content in the log"
    );
    assert!(server.stop(Duration::from_secs(10)).success());
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

#[tokio::test]
async fn alpn_offers_h2_and_a_silent_client_holds_up_no_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TempDir::new("alpn");
    let pki = Pki::new(dir.path());
    let mut server = start_https(
        &with_tls(production(), &pki.server_cert, &pki.server_key),
        &pki.ca,
    )
    .await;
    let addr = server.addr();

    // A client that connects and never says anything.
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();

    // Meanwhile a real TLS client negotiates h2 (or http/1.1 when it offers only that).
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(&pki.ca).unwrap();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    for (offered, expected) in [
        (vec![b"h2".to_vec(), b"http/1.1".to_vec()], b"h2".to_vec()),
        (vec![b"http/1.1".to_vec()], b"http/1.1".to_vec()),
    ] {
        let mut config =
            rustls::ClientConfig::builder_with_provider(vivified_server::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
        config.alpn_protocols = offered;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
            .await
            .expect("the handshake is not held up by the silent client")
            .expect("a TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(expected.as_slice()));
        if expected == b"http/1.1" {
            tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            tls.read_to_end(&mut answer).await.unwrap();
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
    }
    drop(silent);
    assert!(server.stop(Duration::from_secs(10)).success());
}

#[tokio::test]
async fn production_refuses_plain_http_beyond_loopback_unless_a_proxy_terminates_tls() {
    let line = refusal_line(
        &production().bind_host("0.0.0.0"),
        "production, plain HTTP on 0.0.0.0",
    );
    assert!(
        line.contains("plain HTTP on non-loopback 0.0.0.0:"),
        "{line}"
    );
    assert!(
        line.contains("VIVIFIED_TLS_CERT") && line.contains("VIVIFIED_TLS_TERMINATED_BY_PROXY"),
        "{line}"
    );

    // A proxy in front terminates TLS: the core starts in plain HTTP and says so.
    let mut server = production()
        .bind_host("0.0.0.0")
        .env("VIVIFIED_TLS_TERMINATED_BY_PROXY", "true")
        .start()
        .await;
    server
        .wait_stdout(Duration::from_secs(5), |out| {
            out.contains("TLS is terminated by a proxy")
        })
        .await;
    assert!(server.stop(Duration::from_secs(10)).success());

    // Dev mode told it may listen remotely: a warning, not a refusal.
    let mut server = vivified()
        .bind_host("0.0.0.0")
        .env("VIVIFIED_DEV_ALLOW_REMOTE", "true")
        .env("VIVIFIED_STORE", "memory")
        .start()
        .await;
    server
        .wait_stdout(Duration::from_secs(5), |out| {
            out.contains("serving plain HTTP on a non-loopback address")
        })
        .await;
    assert!(server.stop(Duration::from_secs(10)).success());
}

#[test]
fn unusable_certificate_files_stop_the_start_with_one_line() {
    let dir = TempDir::new("bad");
    let pki = Pki::new(dir.path());
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let key_text = std::fs::read_to_string(&pki.server_key).unwrap();
    let key_body: String = key_text
        .lines()
        .find(|l| !l.starts_with("-----"))
        .unwrap()
        .to_owned();
    let absent = dir.path().join("absent.pem");
    let cases: Vec<(&str, Spawn, &str)> = vec![
        (
            "an unreadable certificate",
            with_tls(production(), &absent, &pki.server_key),
            "VIVIFIED_TLS_CERT: cannot read",
        ),
        (
            "an unreadable key",
            with_tls(production(), &pki.server_cert, &absent),
            "VIVIFIED_TLS_KEY: cannot read",
        ),
        (
            "a certificate without a key",
            production().env("VIVIFIED_TLS_CERT", pki.server_cert.to_str().unwrap()),
            "VIVIFIED_TLS_KEY: is not set",
        ),
        (
            "a key without a certificate",
            production().env("VIVIFIED_TLS_KEY", pki.server_key.to_str().unwrap()),
            "VIVIFIED_TLS_CERT: is not set",
        ),
        (
            "a certificate file without a certificate",
            with_tls(production(), &pki.server_key, &pki.server_key),
            "VIVIFIED_TLS_CERT:",
        ),
        (
            "a key file without a key",
            with_tls(production(), &pki.server_cert, &pki.server_cert),
            "VIVIFIED_TLS_KEY:",
        ),
        (
            "an empty key file",
            with_tls(production(), &pki.server_cert, &empty),
            "VIVIFIED_TLS_KEY:",
        ),
        (
            "a key that is not the certificate's",
            with_tls(production(), &pki.server_cert, &pki.other_key),
            "VIVIFIED_TLS_KEY: the key does not belong",
        ),
        (
            "dev mode, an unreadable certificate",
            with_tls(vivified(), &absent, &pki.server_key),
            "VIVIFIED_TLS_CERT: cannot read",
        ),
    ];
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(case, spawn, needle)| {
            let key_body = key_body.clone();
            std::thread::spawn(move || {
                let line = refusal_line(&spawn, case);
                assert!(
                    line.contains(needle),
                    "{case}: {line} should contain {needle}"
                );
                assert!(
                    !line.contains(&key_body),
                    "{case}: the key's content leaked: {line}"
                );
                assert!(
                    !line.contains("PRIVATE KEY-----"),
                    "{case}: PEM content leaked: {line}"
                );
            })
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().err())
        .map(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
