//! The exporter-convention web flags (`--web.*`), shared by every
//! subcommand that serves metrics.

use clap::Args;

/// Exporter-convention web flags shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct WebArgs {
    /// Address to listen on for the metrics endpoint, as node_exporter takes it:
    /// `:9342` (all interfaces), `[::]:9342`, `0.0.0.0:9342`, `127.0.0.1:9342`, `localhost:9342`.
    #[arg(
        long = "web.listen-address",
        env = "SLURM_GPU_EXPORTER_WEB_LISTEN_ADDRESS",
        value_parser = crate::server::listen::validate
    )]
    pub listen_address: Option<String>,

    /// Path under which metrics are exposed.
    #[arg(
        long = "web.telemetry-path",
        env = "SLURM_GPU_EXPORTER_WEB_TELEMETRY_PATH",
        default_value = "/metrics"
    )]
    pub telemetry_path: String,

    /// Prometheus exporter-toolkit web config file (TLS, client certificates,
    /// basic auth, headers); see docs/security.md. Validated at start.
    #[arg(long = "web.config.file", env = "SLURM_GPU_EXPORTER_WEB_CONFIG_FILE")]
    pub config_file: Option<std::path::PathBuf>,
}

impl WebArgs {
    pub fn listen_address_or(&self, default: &str) -> String {
        self.listen_address
            .clone()
            .unwrap_or_else(|| default.to_string())
    }
}
