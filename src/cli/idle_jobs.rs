//! `idle-jobs` flags; turned into [`IdleJobsOptions`] for
//! [`crate::idle_jobs::run`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse_duration;
use super::report::PromConnArgs;
use super::slurmrestd::SlurmrestdArgs;
use crate::idle_jobs::IdleJobsOptions;

#[derive(Debug, Clone, Args)]
pub struct IdleJobsArgs {
    #[command(flatten)]
    pub prom: PromConnArgs,

    /// A job is idle when its busiest GPU stays below this activity (0.05 = 5 %).
    #[arg(
        long,
        env = "SLURM_GPU_EXPORTER_IDLE_THRESHOLD",
        default_value_t = 0.05
    )]
    pub threshold: f64,

    /// How long every GPU of the job must have stayed below the threshold.
    #[arg(long, env = "SLURM_GPU_EXPORTER_IDLE_FOR", default_value = "1h", value_parser = parse_duration)]
    pub idle_for: Duration,

    /// Time between the warning and the cancellation.
    #[arg(long, env = "SLURM_GPU_EXPORTER_IDLE_GRACE", default_value = "30m", value_parser = parse_duration)]
    pub grace: Duration,

    /// Accounts whose jobs are never warned or cancelled (comma-separated).
    #[arg(
        long,
        env = "SLURM_GPU_EXPORTER_IDLE_EXEMPT_ACCOUNTS",
        value_delimiter = ','
    )]
    pub exempt_accounts: Vec<String>,

    /// Partitions whose jobs are never warned or cancelled (comma-separated).
    #[arg(
        long,
        env = "SLURM_GPU_EXPORTER_IDLE_EXEMPT_PARTITIONS",
        value_delimiter = ','
    )]
    pub exempt_partitions: Vec<String>,

    /// QoS whose jobs are never warned or cancelled (comma-separated).
    #[arg(
        long,
        env = "SLURM_GPU_EXPORTER_IDLE_EXEMPT_QOS",
        value_delimiter = ','
    )]
    pub exempt_qos: Vec<String>,

    /// Warnings given so far (JSON; written with --apply only).
    #[arg(long, env = "SLURM_GPU_EXPORTER_IDLE_STATE_FILE")]
    pub state_file: PathBuf,

    /// Audit log: one JSON line appended per action (default: stdout only).
    #[arg(long, env = "SLURM_GPU_EXPORTER_IDLE_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,

    /// Most jobs cancelled in one run.
    #[arg(long, default_value_t = 20)]
    pub max_cancels: usize,

    /// The slurmrestd connection (same flags as `cluster`); the token must be
    /// an operator-level user's (SlurmUser, root or AdminLevel=Operator).
    #[command(flatten)]
    pub slurmrestd: SlurmrestdArgs,

    /// Cancel for real; without it nothing is changed (dry run).
    #[arg(long)]
    pub apply: bool,
}

impl IdleJobsArgs {
    pub fn options(self) -> IdleJobsOptions {
        IdleJobsOptions {
            prom: self.prom.options(),
            threshold: self.threshold,
            idle_for: self.idle_for,
            grace: self.grace,
            exempt_accounts: self.exempt_accounts,
            exempt_partitions: self.exempt_partitions,
            exempt_qos: self.exempt_qos,
            state_file: self.state_file,
            audit_log: self.audit_log,
            max_cancels: self.max_cancels,
            // idle_jobs sets its own answer limit.
            slurmrestd: self.slurmrestd.client_options(0),
            apply: self.apply,
        }
    }
}
