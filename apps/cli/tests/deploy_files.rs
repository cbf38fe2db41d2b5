//! Static checks of the deployment files, since no container engine runs here: the
//! Dockerfiles, `docker-compose.yml`, `.env.example`, `.dockerignore`, `k8s/` and
//! `deny.toml` (against the real dependency graph, with `cargo tree`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

// ---------------------------------------------------------------------------------
// YAML as JSON values (`vivified_test_support::yaml`)

/// Every document of a YAML file, as JSON values.
fn yaml_docs(rel: &str) -> Vec<Value> {
    vivified_test_support::yaml::documents(&read(rel))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is not a string in {v}"))
}

/// The environment names the core reads, taken from `apps/server/src/settings/keys.rs`
/// (its `KEYS` table), plus the ones read outside it.
fn core_setting_names() -> BTreeSet<String> {
    let src = read("apps/server/src/settings/keys.rs");
    let mut names: BTreeSet<String> = src
        .lines()
        .filter(|l| l.trim_start().starts_with("env: &["))
        .flat_map(|l| {
            l.split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        names.len() >= 20 && names.contains("VIVIFIED_ADMIN_TOKEN"),
        "the settings table was found: {names:?}"
    );
    names.insert("VIVIFIED_CONFIG".into());
    names.insert("RUST_LOG".into());
    names
}

/// A name that holds a credential (`PLUGIN_TOKEN_FILE` and `VIVIFIED_TOKEN_TTL` do not,
/// nor the settings that hold the path of a key file).
fn secret_like(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    // Paths to key files, and a switch about a secret, are not secrets.
    if ["VIVIFIED_TLS_KEY", "VIVIFIED_NATS_CLIENT_KEY"].contains(&n.as_str())
        || n.ends_with("_ALLOWED")
    {
        return false;
    }
    n.contains("PASSWORD")
        || n.contains("SECRET")
        || ["_TOKEN", "_KEY", "_PASS"].iter().any(|s| n.ends_with(s))
}

// ---------------------------------------------------------------------------------
// Dockerfiles

#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// Instructions of a Dockerfile: comments dropped, `\` continuations joined.
fn dockerfile(rel: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read(rel).lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && trimmed.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
        current.clear();
    }
    assert!(current.is_empty(), "{rel}: unterminated continuation");
    out
}

/// Every Dockerfile in the repository (outside build output and VCS data).
fn all_dockerfiles() -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if [".git", "target", "node_modules", "vivified-data"].contains(&name.as_str()) {
                continue;
            }
            let rel_path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let path = entry.path();
            if path.is_dir() {
                walk(&path, &rel_path, out);
            } else if name == "Dockerfile" || name.ends_with(".Dockerfile") {
                out.push(rel_path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), "", &mut out);
    out.sort();
    out
}

#[test]
fn every_dockerfile_is_multi_stage_with_a_non_root_user_and_a_healthcheck_in_its_final_stage() {
    let files = all_dockerfiles();
    assert!(
        files.contains(&"Dockerfile".to_owned())
            && files.contains(&"apps/user-management-plugin/Dockerfile".to_owned()),
        "the core's and the example plugin's Dockerfiles exist: {files:?}"
    );
    for rel in &files {
        let ins = dockerfile(rel);
        let froms: Vec<usize> = ins
            .iter()
            .enumerate()
            .filter(|(_, i)| i.keyword == "FROM")
            .map(|(n, _)| n)
            .collect();
        assert!(froms.len() >= 2, "{rel}: multi-stage (build, then run)");
        let last_from = &ins[*froms.last().unwrap()];
        let base = last_from.args.split_whitespace().next().unwrap();
        assert!(
            base.contains("distroless") || base.contains("-slim"),
            "{rel}: the final stage is slim or distroless, not {base}"
        );
        let final_stage = &ins[*froms.last().unwrap()..];

        // USER: the last one of the final stage, numeric (Kubernetes' runAsNonRoot can
        // only verify a numeric user) and not root.
        let user = final_stage
            .iter()
            .rev()
            .find(|i| i.keyword == "USER")
            .unwrap_or_else(|| panic!("{rel}: no USER in the final stage"));
        let uid = user.args.split(':').next().unwrap();
        let uid: u32 = uid
            .parse()
            .unwrap_or_else(|_| panic!("{rel}: USER {} is not numeric", user.args));
        assert_ne!(uid, 0, "{rel}: USER is root");
        let gid = user
            .args
            .split(':')
            .nth(1)
            .map(|g| g.parse::<u32>().unwrap());
        assert_ne!(gid, Some(0), "{rel}: group root");

        // HEALTHCHECK through the image's own `vivified healthcheck` (no curl), exec
        // form, on the port the image exposes.
        let hc = final_stage
            .iter()
            .find(|i| i.keyword == "HEALTHCHECK")
            .unwrap_or_else(|| panic!("{rel}: no HEALTHCHECK in the final stage"));
        let cmd = hc
            .args
            .split_once("CMD")
            .map(|(_, c)| c.trim())
            .unwrap_or_else(|| panic!("{rel}: HEALTHCHECK without CMD"));
        let argv: Vec<String> = serde_json::from_str(cmd)
            .unwrap_or_else(|e| panic!("{rel}: HEALTHCHECK CMD is not exec form: {e}"));
        assert!(
            argv[0].ends_with("/vivified") && argv[1] == "healthcheck",
            "{rel}: {argv:?}"
        );
        let binary = &argv[0];
        assert!(
            final_stage.iter().any(|i| i.keyword == "COPY"
                && (i.args.ends_with(&format!(" {binary}"))
                    || i.args.ends_with(&format!(
                        " {}/",
                        Path::new(binary).parent().unwrap().display()
                    )))),
            "{rel}: the final stage copies {binary} in"
        );
        let url = argv
            .iter()
            .skip_while(|a| *a != "--url")
            .nth(1)
            .unwrap_or_else(|| panic!("{rel}: healthcheck --url"));
        let (scheme, rest) = url
            .split_once("://")
            .unwrap_or_else(|| panic!("{rel}: healthcheck URL {url}"));
        let host_port = rest.split('/').next().unwrap();
        let (host, port) = host_port.rsplit_once(':').unwrap();
        assert!(
            ["127.0.0.1", "localhost"].contains(&host),
            "{rel}: the healthcheck probes this container: {url}"
        );
        // An image that serves TLS is probed over HTTPS, trusting a CA it is given.
        let env_sets = |name: &str| {
            final_stage.iter().any(|i| {
                i.keyword == "ENV"
                    && i.args.split_whitespace().any(|w| {
                        w.split_once('=')
                            .is_some_and(|(k, v)| k == name && !v.is_empty())
                    })
            })
        };
        if env_sets("VIVIFIED_TLS_CERT") {
            assert_eq!(scheme, "https", "{rel}: a TLS core is probed over https");
            assert!(
                argv.iter().any(|a| a == "--ca-cert"),
                "{rel}: the probe trusts the core's CA: {argv:?}"
            );
        } else {
            assert_eq!(scheme, "http", "{rel}: {url}");
        }
        assert!(
            final_stage
                .iter()
                .any(|i| i.keyword == "EXPOSE" && i.args.split_whitespace().any(|p| p == port)),
            "{rel}: checks port {port}, which it exposes"
        );
        assert!(
            final_stage.iter().any(|i| i.keyword == "ENTRYPOINT"),
            "{rel}: an ENTRYPOINT"
        );

        // No secret baked in: no ENV or ARG that names a credential.
        for i in ins
            .iter()
            .filter(|i| i.keyword == "ENV" || i.keyword == "ARG")
        {
            for word in i.args.split_whitespace() {
                let name = word.split('=').next().unwrap();
                assert!(
                    !secret_like(name) && name != "DATABASE_URL" && name != "NATS_URL",
                    "{rel}: {} {name} would bake a secret into the image",
                    i.keyword
                );
            }
        }
        // Every setting the image sets is one the core or the plugin reads.
        let settings = core_setting_names();
        for i in final_stage.iter().filter(|i| i.keyword == "ENV") {
            for word in i.args.split_whitespace() {
                let name = word.split('=').next().unwrap();
                assert!(
                    settings.contains(name) || name.starts_with("PLUGIN_") || name == "CORE_URL",
                    "{rel}: ENV {name} is not a known setting"
                );
            }
        }
    }
}

#[test]
fn the_build_context_keeps_sources_and_drops_state_and_secrets() {
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["target/", ".git/", ".env", "vivified-data/"] {
        assert!(patterns.contains(&needed), ".dockerignore drops {needed}");
    }
    // The build embeds these with include_str!: excluding them breaks the image build.
    for kept in [
        "schemas",
        "docs",
        "proto",
        "apps",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        assert!(
            !patterns.iter().any(
                |p| p.trim_end_matches('/').trim_start_matches("**/") == kept
                    || *p == "*"
                    || *p == "**"
            ),
            ".dockerignore must keep {kept}"
        );
    }
    assert!(
        patterns.contains(&"!.env.example"),
        ".env.example is harmless and kept"
    );
}

// ---------------------------------------------------------------------------------
// docker-compose.yml and .env.example

fn compose() -> Value {
    let docs = yaml_docs("docker-compose.yml");
    assert_eq!(docs.len(), 1, "one YAML document");
    docs.into_iter().next().unwrap()
}

/// `${NAME…}` interpolations in `s`: the variable name and what follows it up to `}`.
fn interpolations(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').expect("closed ${…}");
        let inner = &after[..end];
        let name_len = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(inner.len());
        out.push((inner[..name_len].to_owned(), inner[name_len..].to_owned()));
        rest = &after[end + 1..];
    }
    out
}

#[test]
fn compose_services_images_and_health_checks() {
    let c = compose();
    let services = c["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["core", "nats", "postgres", "user-management-plugin"])
    );
    assert_eq!(str_at(&c, "/services/postgres/image"), "postgres:15-alpine");
    assert_eq!(str_at(&c, "/services/nats/image"), "nats:2.10-alpine");
    let nats_cmd: Vec<&str> = c["services"]["nats"]["command"]
        .as_array()
        .expect("nats command as a list")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        nats_cmd.contains(&"--jetstream"),
        "JetStream is on: {nats_cmd:?}"
    );

    for (name, svc) in services {
        let test = svc
            .pointer("/healthcheck/test")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{name}: a healthcheck with a test list"));
        let argv: Vec<&str> = test.iter().map(|v| v.as_str().unwrap()).collect();
        assert!(
            matches!(argv.first(), Some(&"CMD") | Some(&"CMD-SHELL")) && argv.len() > 1,
            "{name}: healthcheck test {argv:?}"
        );
        assert_ne!(
            svc.pointer("/healthcheck/disable"),
            Some(&Value::Bool(true))
        );
        if let Some(deps) = svc.get("depends_on") {
            let deps = deps
                .as_object()
                .unwrap_or_else(|| panic!("{name}: depends_on in the long form"));
            for (dep, how) in deps {
                assert!(
                    services.contains_key(dep),
                    "{name} depends on unknown {dep}"
                );
                assert_eq!(
                    how["condition"], "service_healthy",
                    "{name} waits for {dep} to be healthy"
                );
            }
        }
        if let Some(ports) = svc.get("ports").and_then(Value::as_array) {
            for p in ports {
                assert!(
                    p.as_str().unwrap().starts_with("127.0.0.1:"),
                    "{name}: publishes {p} on loopback only"
                );
            }
        }
    }
    // Our images probe themselves with `vivified healthcheck` (there is no curl in them).
    for name in ["core", "user-management-plugin"] {
        let argv = &c["services"][name]["healthcheck"]["test"];
        assert_eq!(argv[1], "/usr/local/bin/vivified", "{name}");
        assert_eq!(argv[2], "healthcheck", "{name}");
        assert!(c["services"][name]["build"]["dockerfile"].is_string());
        assert_eq!(c["services"][name]["read_only"], true, "{name}");
    }
    let core_deps: BTreeSet<&str> = c["services"]["core"]["depends_on"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(core_deps, BTreeSet::from(["nats", "postgres"]));
    assert!(
        c["services"]["user-management-plugin"]["depends_on"]
            .get("core")
            .is_some()
    );
}

#[test]
fn compose_databases_are_on_a_network_the_plugin_is_not_on() {
    let c = compose();
    let nets = |svc: &str| -> BTreeSet<String> {
        c["services"][svc]["networks"]
            .as_array()
            .unwrap_or_else(|| panic!("{svc}: networks as a list"))
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect()
    };
    let data = nets("postgres");
    assert_eq!(
        data,
        nets("nats"),
        "Postgres and NATS share the data network"
    );
    assert_eq!(data, BTreeSet::from(["data".to_owned()]));
    assert_eq!(
        c["networks"]["data"]["internal"], true,
        "no route out of it"
    );
    let plugin = nets("user-management-plugin");
    assert!(plugin.is_disjoint(&data), "the plugin is not on {data:?}");
    let core = nets("core");
    assert!(core.is_superset(&data) && core.is_superset(&plugin));
    for n in core {
        assert!(c["networks"].get(&n).is_some(), "network {n} is declared");
    }
}

#[test]
fn compose_runs_the_core_in_production_on_postgres_and_nats_with_secrets_from_env() {
    let c = compose();
    let env = c["services"]["core"]["environment"]
        .as_object()
        .expect("core environment as a map");
    assert_eq!(env["VIVIFIED_MODE"], "production");
    assert!(str_at(&c, "/services/core/environment/DATABASE_URL").starts_with("postgres://"));
    assert!(str_at(&c, "/services/core/environment/NATS_URL").starts_with("nats://"));
    let settings = core_setting_names();
    for key in env.keys() {
        assert!(
            settings.contains(key),
            "core: {key} is a setting the core reads"
        );
    }
    for secret in [
        "JWT_SECRET",
        "VIVIFIED_ADMIN_TOKEN",
        "VIVIFIED_REGISTRATION_SECRET",
        "VIVIFIED_AUDIT_KEY",
    ] {
        let v = env[secret].as_str().unwrap();
        assert_eq!(interpolations(v).len(), 1, "{secret} comes from .env: {v}");
    }
    let plugin = &c["services"]["user-management-plugin"]["environment"];
    assert_eq!(plugin["CORE_URL"], "https://core:8000");
}

/// `(host path, container path, read-only)` of a service's short-form volumes.
fn mounts(c: &Value, svc: &str) -> Vec<(String, String, bool)> {
    c["services"][svc]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            if let Some(m) = v.as_object() {
                // Long form: a bind mount must not be created on the host when missing.
                if m.get("type").and_then(Value::as_str) == Some("bind") {
                    assert_eq!(
                        v.pointer("/bind/create_host_path"),
                        Some(&Value::Bool(false)),
                        "{svc}: a bind mount Docker would create as an empty directory: {v}"
                    );
                }
                return (
                    str_at(v, "/source").to_owned(),
                    str_at(v, "/target").to_owned(),
                    m.get("read_only") == Some(&Value::Bool(true)),
                );
            }
            // Split on the colons outside `${…}` interpolations.
            let mut parts = vec![String::new()];
            let mut depth = 0;
            let mut prev = ' ';
            let short = v.as_str().expect("a volume: string or mapping");
            assert!(
                !short.starts_with('.') && !short.starts_with('/') && !short.starts_with('$'),
                "{svc}: a short-form bind mount ({short}): use the long form with \
                 bind.create_host_path: false"
            );
            for ch in short.chars() {
                match ch {
                    '{' if prev == '$' => depth += 1,
                    '}' if depth > 0 => depth -= 1,
                    ':' if depth == 0 => {
                        parts.push(String::new());
                        prev = ch;
                        continue;
                    }
                    _ => {}
                }
                parts.last_mut().unwrap().push(ch);
                prev = ch;
            }
            let ro = parts.get(2).is_some_and(|m| m == "ro");
            (parts[0].clone(), parts[1].clone(), ro)
        })
        .collect()
}

#[test]
fn compose_serves_tls_and_the_plugin_trusts_only_the_ca() {
    let c = compose();
    let core = &c["services"]["core"];
    let cert = str_at(core, "/environment/VIVIFIED_TLS_CERT");
    let key = str_at(core, "/environment/VIVIFIED_TLS_KEY");
    assert!(
        core["environment"]
            .get("VIVIFIED_TLS_TERMINATED_BY_PROXY")
            .is_none(),
        "the core itself serves TLS"
    );
    // Production on 0.0.0.0 starts only with TLS (or a proxy in front): the same rule
    // as the core's start-up.
    assert!(str_at(core, "/environment/VIVIFIED_BIND").starts_with("0.0.0.0:"));
    let core_mounts = mounts(&c, "core");
    let tls_dir = core_mounts
        .iter()
        .find(|(_, target, _)| cert.starts_with(&format!("{target}/")))
        .unwrap_or_else(|| panic!("the core mounts the directory of {cert}: {core_mounts:?}"));
    assert!(
        tls_dir.2,
        "the TLS directory is mounted read-only: {tls_dir:?}"
    );
    assert!(key.starts_with(&format!("{}/", tls_dir.1)), "{key}");
    let test: Vec<&str> = core["healthcheck"]["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let arg = |flag: &str| {
        test.iter()
            .skip_while(|a| **a != flag)
            .nth(1)
            .copied()
            .unwrap_or_else(|| panic!("core healthcheck {flag}: {test:?}"))
    };
    assert!(
        arg("--url").starts_with("https://localhost:8000/"),
        "{test:?}"
    );
    let ca = arg("--ca-cert");
    assert!(ca.starts_with(&format!("{}/", tls_dir.1)), "{ca}");

    // The plugin trusts the CA and sees nothing else of the directory (not the key).
    let plugin = &c["services"]["user-management-plugin"];
    assert_eq!(str_at(plugin, "/environment/VIVIFIED_CA_CERT"), ca);
    let plugin_mounts = mounts(&c, "user-management-plugin");
    let ca_mount = plugin_mounts
        .iter()
        .find(|(_, target, _)| target == ca)
        .unwrap_or_else(|| panic!("the plugin mounts {ca}: {plugin_mounts:?}"));
    assert!(ca_mount.2, "read-only: {ca_mount:?}");
    assert!(
        ca_mount.0.starts_with(&tls_dir.0) && ca_mount.0.ends_with("/ca.crt"),
        "the plugin mounts the CA file of the core's directory only: {ca_mount:?}"
    );
    // .env.example explains how to make the directory.
    let example = read(".env.example");
    for needle in [
        "openssl req -x509",
        "subjectAltName=DNS:core",
        "tls.key",
        "ca.crt",
    ] {
        assert!(example.contains(needle), ".env.example: {needle}");
    }
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "tls/"),
        "the TLS directory stays out of the build context"
    );
}

#[test]
fn compose_has_no_default_password_and_env_example_lists_every_required_variable() {
    let text: String = read("docker-compose.yml")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let found = interpolations(&text);
    assert!(!found.is_empty());
    let mut required = BTreeSet::new();
    for (name, rest) in &found {
        if secret_like(name) {
            assert!(
                rest.starts_with(":?"),
                "${{{name}{rest}}}: a secret has no default and must be set (`${{{name}:?…}}`)"
            );
        }
        assert!(
            !rest.starts_with(":-") || rest == ":-" || !secret_like(name),
            "${{{name}{rest}}}: no default value for a secret"
        );
        if rest.starts_with(":?") || rest.starts_with('?') {
            required.insert(name.clone());
        }
    }
    // No literal credential anywhere: every value under a credential-like key, and the
    // password part of every URL, is an interpolation.
    let c = compose();
    for (svc, def) in c["services"].as_object().unwrap() {
        for (key, value) in def["environment"].as_object().into_iter().flatten() {
            let v = value.as_str().unwrap_or_default();
            if secret_like(key) {
                assert!(
                    v.starts_with("${") && v.ends_with('}'),
                    "{svc}: {key} is literal"
                );
            }
            if let Some((before_at, _)) = v.split_once('@')
                && let Some((_, userinfo)) = before_at.split_once("://")
                && let Some((_, password)) = userinfo.split_once(':')
            {
                assert!(
                    password.starts_with("${") && password.contains(":?"),
                    "{svc}: {key} carries a literal password"
                );
            }
        }
        for arg in def["command"].as_array().into_iter().flatten() {
            let arg = arg.as_str().unwrap();
            if arg.contains("pass") {
                assert!(arg.contains("${") && arg.contains(":?"), "{svc}: {arg}");
            }
        }
    }

    let example = read(".env.example");
    let assigned: BTreeMap<&str, &str> = example
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once('=').expect("NAME=value lines"))
        .collect();
    for name in &required {
        assert!(
            assigned.contains_key(name.as_str()),
            ".env.example lists {name}, which compose requires"
        );
    }
    for (name, value) in &assigned {
        if secret_like(name) {
            assert_eq!(*value, "", ".env.example ships no value for {name}");
        }
    }
}

// ---------------------------------------------------------------------------------
// k8s/

fn k8s() -> BTreeMap<String, Value> {
    let mut by_kind = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("k8s"))
        .expect("k8s/")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files {
        let rel = format!("k8s/{}", path.file_name().unwrap().to_string_lossy());
        assert!(rel.ends_with(".yaml"), "{rel}: only .yaml files in k8s/");
        for doc in yaml_docs(&rel) {
            let kind = str_at(&doc, "/kind").to_owned();
            assert!(doc.get("apiVersion").is_some(), "{rel}: apiVersion");
            assert!(
                by_kind.insert(kind.clone(), doc).is_none(),
                "one {kind} in k8s/"
            );
        }
    }
    by_kind
}

#[test]
fn k8s_deployment_is_non_root_read_only_with_health_and_readiness_probes() {
    let all = k8s();
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "Kustomization",
    ] {
        assert!(all.contains_key(kind), "k8s/ has a {kind}");
    }
    let d = &all["Deployment"];
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    // TLS: either the pod serves it (a Secret volume at the ConfigMap's paths, probes
    // over HTTPS) or a proxy in front says it does.
    let cm = &all["ConfigMap"]["data"];
    match cm.get("VIVIFIED_TLS_CERT").and_then(Value::as_str) {
        Some(cert) => {
            let key = str_at(cm, "/VIVIFIED_TLS_KEY");
            let mount = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| cert.starts_with(&format!("{}/", str_at(m, "/mountPath"))))
                .unwrap_or_else(|| panic!("a volume is mounted where {cert} is"));
            assert!(key.starts_with(str_at(mount, "/mountPath")), "{key}");
            assert_eq!(mount["readOnly"], true);
            let volume = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .expect("the mounted volume is declared");
            assert!(
                volume.pointer("/secret/secretName").is_some(),
                "the certificate comes from a Secret: {volume}"
            );
            for probe in ["livenessProbe", "readinessProbe"] {
                assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
            }
        }
        None => assert_eq!(cm["VIVIFIED_TLS_TERMINATED_BY_PROXY"], "true"),
    }
    let port_name = str_at(c, "/ports/0/name");
    assert_eq!(c["ports"][0]["containerPort"], 8000);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], port_name, "{probe} port");
    }
    assert_eq!(
        d["spec"]["selector"]["matchLabels"],
        serde_json::json!({"app.kubernetes.io/name": "vivified-core"})
    );
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    for (k, v) in d["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &labels[k], v,
            "the pod template carries the selector's labels"
        );
    }

    // Configuration through the ConfigMap and the Secret that k8s/ defines.
    let cm = str_at(&all["ConfigMap"], "/metadata/name");
    let secret = str_at(&all["Secret"], "/metadata/name");
    let refs: Vec<(&str, &str)> = c["envFrom"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            if let Some(n) = r.pointer("/configMapRef/name") {
                ("ConfigMap", n.as_str().unwrap())
            } else {
                ("Secret", str_at(r, "/secretRef/name"))
            }
        })
        .collect();
    assert!(refs.contains(&("ConfigMap", cm)) && refs.contains(&("Secret", secret)));

    // The Service reaches the pods on the named port.
    let svc = &all["Service"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the Service selects the Deployment's pods");
    }
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], port_name);
}

#[test]
fn k8s_settings_are_real_and_the_secret_template_holds_no_secret() {
    let all = k8s();
    let settings = core_setting_names();
    let cm = all["ConfigMap"]["data"].as_object().unwrap();
    assert_eq!(cm["VIVIFIED_MODE"], "production");
    for (k, v) in cm {
        assert!(
            settings.contains(k),
            "ConfigMap: {k} is a setting the core reads"
        );
        assert!(!secret_like(k), "ConfigMap: {k} belongs in the Secret");
        assert!(v.is_string(), "ConfigMap values are strings: {k}");
    }
    let data = all["Secret"]["stringData"].as_object().unwrap();
    for required in [
        "JWT_SECRET",
        "VIVIFIED_ADMIN_TOKEN",
        "VIVIFIED_AUDIT_KEY",
        "DATABASE_URL",
    ] {
        assert!(
            data.contains_key(required),
            "the Secret template has {required}"
        );
    }
    assert!(
        !data.contains_key("VIVIFIED_REGISTRATION_SECRET"),
        "plugins enroll with one-time tokens: no shared registration secret"
    );
    for (k, v) in data {
        assert!(
            settings.contains(k),
            "Secret: {k} is a setting the core reads"
        );
        assert_eq!(v, "", "the template ships no value for {k}");
    }
    assert!(all["Secret"].get("data").is_none());

    let resources: Vec<&str> = all["Kustomization"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for r in &resources {
        assert!(
            root().join("k8s").join(r).is_file(),
            "kustomization lists {r}"
        );
    }
    assert!(
        !resources.iter().any(|r| r.contains("secret")),
        "the empty Secret template is never applied"
    );
}

// ---------------------------------------------------------------------------------
// deny.toml against the real dependency graph

/// What `cargo tree` said: its output, or why it listed nothing.
enum Tree {
    Listed(String),
    NoSuchPackage,
    /// Several versions are in the graph: these specs name each one.
    Ambiguous(Vec<String>),
}

/// `cargo tree` (locked: the lock file pins everything; it downloads what the local
/// registry cache lacks, as a build would), one package per line.
fn cargo_tree(args: &[&str]) -> Tree {
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["tree", "--locked", "--prefix", "none"])
        .args(args)
        .output()
        .expect("run cargo tree");
    if out.status.success() {
        return Tree::Listed(String::from_utf8(out.stdout).expect("utf-8"));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("did not match any packages") {
        return Tree::NoSuchPackage;
    }
    assert!(err.contains("is ambiguous"), "cargo tree {args:?}: {err}");
    Tree::Ambiguous(
        err.lines()
            .map(str::trim)
            .filter(|l| l.contains('@') && !l.contains(' '))
            .map(str::to_owned)
            .collect(),
    )
}

/// Packages that depend directly on `krate` (any version) through normal or build
/// edges, with every feature on, as cargo-deny's `--all-features --exclude-dev` graph
/// has them.
fn direct_dependents(krate: &str) -> BTreeSet<String> {
    let args = |spec: &str| {
        cargo_tree(&[
            "--workspace",
            "--all-features",
            "-e",
            "normal,build",
            "--depth",
            "1",
            "-i",
            spec,
        ])
    };
    let texts = match args(krate) {
        Tree::Listed(text) => vec![text],
        Tree::NoSuchPackage => return BTreeSet::new(),
        Tree::Ambiguous(specs) => {
            assert!(!specs.is_empty(), "{krate}: versions listed");
            specs
                .iter()
                .map(|spec| match args(spec) {
                    Tree::Listed(text) => text,
                    _ => panic!("cargo tree -i {spec} failed"),
                })
                .collect()
        }
    };
    texts
        .iter()
        .flat_map(|t| t.lines().skip(1)) // the first line is the crate itself
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn deny_bans_keep_io_crates_out_of_domain_and_ports_and_match_the_graph() {
    let deny: toml::Table = read("deny.toml").parse().expect("deny.toml parses");
    let bans = deny["bans"]["deny"].as_array().expect("[bans] deny list");
    let mut wrappers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ban in bans {
        let name = ban["crate"].as_str().expect("crate").to_owned();
        assert!(ban.get("reason").is_some(), "{name}: a reason");
        let w: BTreeSet<String> = ban["wrappers"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: wrappers"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        wrappers.insert(name, w);
    }
    for io in [
        "sqlx",
        "axum",
        "hyper",
        "async-nats",
        "tokio",
        "reqwest",
        "jsonwebtoken",
        "vivified-adapters",
    ] {
        let w = wrappers
            .get(io)
            .unwrap_or_else(|| panic!("deny.toml bans {io}"));
        for pure in ["vivified-domain", "vivified-ports"] {
            assert!(!w.contains(pure), "{pure} may not wrap {io}");
        }
    }
    // Every crate that uses a banned crate today is allowed to, so `cargo deny check
    // bans` passes; a new user shows up here first.
    for (krate, allowed) in &wrappers {
        let users = direct_dependents(krate);
        let missing: Vec<&String> = users.difference(allowed).collect();
        assert!(
            missing.is_empty(),
            "{missing:?} depend directly on {krate}: add them to its wrappers in deny.toml (never vivified-domain or vivified-ports)"
        );
        assert!(!users.contains("vivified-domain") && !users.contains("vivified-ports"));
    }
}

/// Whether an SPDX expression is satisfied by the `allow` list (`A OR B`, `A AND B`,
/// parentheses, `A WITH exception` as one identifier; `/` is the old spelling of OR).
fn license_ok(expr: &str, allow: &BTreeSet<String>) -> bool {
    let spaced = expr
        .replace('/', " OR ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    fn or(t: &[&str], i: &mut usize, allow: &BTreeSet<String>) -> bool {
        let mut ok = and(t, i, allow);
        while t.get(*i) == Some(&"OR") {
            *i += 1;
            ok |= and(t, i, allow);
        }
        ok
    }
    fn and(t: &[&str], i: &mut usize, allow: &BTreeSet<String>) -> bool {
        let mut ok = atom(t, i, allow);
        while t.get(*i) == Some(&"AND") {
            *i += 1;
            ok &= atom(t, i, allow);
        }
        ok
    }
    fn atom(t: &[&str], i: &mut usize, allow: &BTreeSet<String>) -> bool {
        if t.get(*i) == Some(&"(") {
            *i += 1;
            let ok = or(t, i, allow);
            assert_eq!(t.get(*i), Some(&")"), "balanced parentheses");
            *i += 1;
            return ok;
        }
        let mut id = t[*i].to_owned();
        *i += 1;
        if t.get(*i) == Some(&"WITH") {
            id = format!("{id} WITH {}", t[*i + 1]);
            *i += 2;
        }
        allow.contains(&id)
    }
    let mut i = 0;
    let ok = or(&tokens, &mut i, allow);
    assert_eq!(i, tokens.len(), "parsed all of {expr}");
    ok
}

#[test]
fn deny_license_allow_list_covers_every_crate_of_the_graph() {
    let deny: toml::Table = read("deny.toml").parse().unwrap();
    let allow: BTreeSet<String> = deny["licenses"]["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(license_ok("(MIT OR Apache-2.0) AND Unicode-3.0", &allow));
    assert!(!license_ok("GPL-3.0", &allow));
    assert!(!license_ok("MIT AND GPL-3.0", &allow));
    let Tree::Listed(text) = cargo_tree(&[
        "--workspace",
        "--all-features",
        "-e",
        "normal,build,dev",
        "--format",
        "{p}\t{l}",
    ]) else {
        panic!("cargo tree lists the workspace");
    };
    let mut checked = 0;
    for line in text.lines() {
        let Some((pkg, license)) = line.split_once('\t') else {
            continue;
        };
        let license = license.trim_end_matches(" (*)").trim();
        if pkg.contains("(/") {
            continue; // a workspace crate: private, ignored by cargo-deny
        }
        assert!(!license.is_empty(), "{pkg} declares no license");
        assert!(
            license_ok(license, &allow),
            "{pkg}: `{license}` is not covered by deny.toml's [licenses] allow"
        );
        checked += 1;
    }
    assert!(checked > 100, "checked {checked} crates");
}

// ---------------------------------------------------------------------------------
// docs/operations.md

#[test]
fn the_operations_guide_documents_every_setting_the_core_reads() {
    let doc = read("docs/operations.md");
    for name in core_setting_names() {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/operations.md documents `{name}`"
        );
    }
}

#[test]
fn the_github_workflow_runs_ci_run_with_the_services_plus_deny_and_coverage() {
    let docs = yaml_docs(".github/workflows/ci.yml");
    let wf = &docs[0];
    let run_lines = |job: &str| -> Vec<String> {
        wf["jobs"][job]["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("jobs.{job}.steps"))
            .iter()
            .filter_map(|s| s["run"].as_str())
            .map(str::to_owned)
            .collect()
    };
    let uses = |job: &str| -> Vec<String> {
        wf["jobs"][job]["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("jobs.{job}.steps"))
            .iter()
            .filter_map(|s| s["uses"].as_str())
            .map(str::to_owned)
            .collect()
    };
    let test = run_lines("test");
    let services = test
        .iter()
        .position(|r| r.contains(".github/ci-services.sh"))
        .expect("the test job sets up Postgres and NATS");
    let ci_run = test
        .iter()
        .position(|r| r.contains(".ci/run"))
        .expect("the test job runs .ci/run");
    assert!(services < ci_run, "services before .ci/run");
    let coverage = run_lines("coverage").join("\n");
    assert!(coverage.contains(".github/ci-services.sh"), "{coverage}");
    assert!(coverage.contains("--fail-under-lines 80"), "{coverage}");
    let deny: Vec<String> = wf["jobs"]["deny"]["steps"]
        .as_array()
        .expect("jobs.deny.steps")
        .iter()
        .filter_map(|s| s["with"]["command"].as_str())
        .map(str::to_owned)
        .collect();
    for check in ["advisories", "licenses", "bans", "sources"] {
        assert!(
            deny.iter()
                .any(|c| c.split_whitespace().any(|w| w == check)),
            "cargo deny checks {check}: {deny:?}"
        );
    }
    assert!(uses("deny").iter().all(|u| u.contains('@')));
    for var in ["VIVIFIED_TEST_POSTGRES_URL", "VIVIFIED_TEST_NATS_URL"] {
        assert!(wf["env"][var].is_string(), "the workflow sets {var}");
    }

    // The services script: executable, fails on the first error, checks TLS and starts
    // the nats-server binary the NATS TLS test uses.
    let path = root().join(".github/ci-services.sh");
    let script = read(".github/ci-services.sh");
    assert!(script.contains("set -euo pipefail"));
    assert!(script.contains("show ssl"));
    assert!(script.contains("/usr/sbin/nats-server") && script.contains("-js"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path)
        .expect("the script")
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "{} is executable", path.display());
    let status = std::process::Command::new("bash")
        .args(["-n", &path.display().to_string()])
        .status()
        .expect("bash runs");
    assert!(status.success(), "the services script parses");
}
