//! Embeds the registry as a library: in-memory adapters, no HTTP, no networking.
//!
//! `cargo run --example embedded -p vivified-domain`

use std::sync::Arc;

use vivified_adapters::clock::SystemClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::{InMemoryAuditLog, InMemoryEventBus, InMemoryPluginStore};
use vivified_domain::ManifestValidator;
use vivified_domain::registry::{HeartbeatReport, Ports, Registry, RegistryConfig};
use vivified_ports::{Health, Secret};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(async {
        let bus = Arc::new(InMemoryEventBus::new(16));
        let mut lifecycle = bus.subscribe();
        let audit = Arc::new(InMemoryAuditLog::new(100));
        let ports = Ports {
            operators: Arc::new(vivified_adapters::memory::InMemoryPluginStore::new()),
            identity: None,
            store: Arc::new(InMemoryPluginStore::new()),
            tokens: Arc::new(JwtTokenIssuer::new(JwtConfig::new(Secret::new(
                "an-embedded-secret-of-32-bytes!!",
            )))?),
            clock: Arc::new(SystemClock),
            bus: bus.clone(),
            audit: audit.clone(),
        };
        let registry = Registry::new(
            ports,
            Arc::new(ManifestValidator::new()?),
            RegistryConfig::default(),
        );

        let manifest: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/examples/user-management.json"))?;
        let reg = registry
            .register(&manifest, None, "embedded-example")
            .await?;
        println!(
            "registered {} (token expires {}, heartbeat every {:?})",
            reg.plugin_id, reg.expires_at, reg.heartbeat_interval
        );

        let token = reg.token.expose();
        registry
            .heartbeat(
                "user-management",
                Some(token),
                HeartbeatReport {
                    health: Health::Healthy,
                },
            )
            .await?;
        let record = registry.get("user-management", Some(token)).await?;
        println!(
            "record: status={} health={} last_heartbeat={:?}",
            record.status.as_str(),
            record.health.as_str(),
            record.last_heartbeat
        );

        let event = lifecycle.try_recv()?;
        println!("lifecycle event: {} ({})", event.event_type, event.event_id);
        for entry in audit.entries() {
            println!(
                "audit: {} {} -> {:?} ({})",
                entry.actor, entry.action, entry.outcome, entry.reason
            );
        }

        // Invalid manifests come back with every violation.
        let mut bad = manifest.clone();
        bad["id"] = "lab-results".into();
        bad["version"] = "1.0".into();
        bad["traits"] = serde_json::json!(["handles_phi"]);
        if let Err(vivified_domain::RegistryError::InvalidManifest(violations)) =
            registry.register(&bad, None, "embedded-example").await
        {
            for v in violations {
                println!("violation: {v}");
            }
        }
        Ok(())
    })
}
