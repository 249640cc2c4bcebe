//! Command line: one binary, one subcommand per program.
//!
//! The CLI layer: clap structs live here (and `--web.*` in
//! [`crate::server::WebArgs`]); library modules take plain option structs.
//! A new subcommand gets a module here and a [`Command`] variant.

pub mod budgets;
pub mod cluster;
pub mod demo;
pub mod idle_jobs;
pub mod node;
pub mod report;
pub mod slurmrestd;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "slurm-gpu-exporter",
    version,
    about = "Prometheus exporter for GPU Slurm clusters"
)]
pub struct Cli {
    /// Log level filter (tracing `EnvFilter` syntax, e.g. `info` or `slurm_gpu_exporter=debug`).
    #[arg(
        long = "log.level",
        env = "SLURM_GPU_EXPORTER_LOG_LEVEL",
        default_value = "info",
        global = true
    )]
    pub log_level: String,

    /// Log format.
    #[arg(
        long = "log.format",
        env = "SLURM_GPU_EXPORTER_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at start; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cluster scraper: polls slurmrestd and serves queue, node, partition,
    /// fairshare and scheduler metrics (one per cluster).
    #[command(mut_arg("listen_address", |a| a.default_value(crate::cluster::DEFAULT_LISTEN)))]
    Cluster(cluster::ClusterArgs),
    /// Node agent: GPU (NVML), EFA, memlock and job attribution metrics (one per compute node).
    #[command(mut_arg("listen_address", |a| a.default_value(crate::node::DEFAULT_LISTEN)))]
    Node(node::NodeArgs),
    /// A small living GPU cluster: the real cluster scraper and node agent
    /// against a simulated Slurm 25.11 cluster and p5-like nodes; no cluster needed.
    #[command(mut_arg("listen_address", |a| a.default_value(crate::demo::DEFAULT_LISTEN)))]
    Demo(demo::DemoArgs),
    /// Prints a month of GPU/CPU/billing usage per account and user from
    /// Prometheus, in the columns of `sreport cluster AccountUtilizationByUser`;
    /// `report job <id>`: one job's GPU efficiency.
    Report(report::ReportCommand),
    /// Budgets as Slurm limits: `budgets apply` sets each account's budget as
    /// GrpTRESMins through slurmrestd (dry run unless --apply).
    #[command(subcommand)]
    Budgets(budgets::BudgetsCommand),
    /// Jobs whose GPUs stay idle: warns, then cancels them through
    /// slurmrestd after a grace period (dry run unless --apply).
    IdleJobs(idle_jobs::IdleJobsArgs),
    /// One job's GPU efficiency from Prometheus: per GPU mean/peak activity,
    /// peak memory, energy and idle time over the job's lifetime (the same
    /// as `report job <id>`).
    JobReport(report::JobReportArgs),
}

/// The web flags are the server's; re-exported for the subcommands.
pub use crate::server::WebArgs;

/// The command line of this process (exits with clap's message on a bad one).
pub fn parse() -> Cli {
    Cli::parse()
}

pub fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Whether a failed run prints its error's backtrace too: only when asked
/// for, with a debug or trace log level.
pub fn wants_error_detail(log_level: &str) -> bool {
    let l = log_level.to_ascii_lowercase();
    l.contains("debug") || l.contains("trace")
}

/// What a failed run prints: `error: <message>: <cause>: ...` on one line,
/// plus anyhow's debug report (with a backtrace when one was captured) if
/// `detail`.
pub fn error_report(e: &anyhow::Error, detail: bool) -> String {
    if detail {
        format!("error: {e:#}\n\n{e:?}\n")
    } else {
        format!("error: {e:#}\n")
    }
}

pub use crate::duration::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn listen_address_flag_takes_node_exporter_forms() {
        for addr in [":9342", "[::]:9342", "0.0.0.0:9342", "localhost:9342"] {
            let cli = Cli::try_parse_from(["x", "node", &format!("--web.listen-address={addr}")])
                .unwrap_or_else(|e| panic!("{addr}: {e}"));
            let Command::Node(args) = cli.command else {
                panic!("not node")
            };
            assert_eq!(args.web.listen_address.as_deref(), Some(addr));
        }
        let e = Cli::try_parse_from(["x", "node", "--web.listen-address=::1:9342"]).unwrap_err();
        assert!(e.to_string().contains("needs brackets"), "{e}");
    }

    #[test]
    fn help_shows_each_programs_listen_default() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        for (sub, want) in [
            ("cluster", "0.0.0.0:9342"),
            ("node", "0.0.0.0:9343"),
            ("demo", "127.0.0.1:9342"),
        ] {
            let help = cmd
                .find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(
                help.contains(&format!("[default: {want}]")),
                "{sub}: {help}"
            );
        }
        let c = Cli::try_parse_from(["x", "node"]).unwrap();
        let Command::Node(n) = c.command else {
            panic!()
        };
        assert_eq!(n.web.listen_address.as_deref(), Some("0.0.0.0:9343"));
    }

    #[test]
    fn error_report_is_one_clean_line_unless_asked() {
        let e = anyhow::anyhow!("cannot listen on 1.2.3.4:1").context("HTTP server failed");
        let plain = error_report(&e, wants_error_detail("info"));
        assert_eq!(
            plain,
            "error: HTTP server failed: cannot listen on 1.2.3.4:1\n"
        );
        assert!(
            error_report(&e, wants_error_detail("slurm_gpu_exporter=debug")).contains("Caused by")
        );
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
