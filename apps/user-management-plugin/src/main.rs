//! `user-management-plugin`: the seed's example plugin. Configured by the environment:
//! `CORE_URL` (default `http://127.0.0.1:8000`; `https://…` for a core serving TLS),
//! `VIVIFIED_CA_CERT` (optional: a PEM CA trusted for that core besides the system's
//! roots), `PLUGIN_BIND` (default `127.0.0.1:8001`), `PLUGIN_TOKEN_FILE` (optional),
//! `VIVIFIED_REGISTRATION_SECRET` (sent when set, for a core in production mode); see
//! `vivified_plugin_sdk::Config`, which the SDK's runner reads.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    vivified_plugin_sdk::run(user_management_plugin::UserManagement::from_env()).await
}
