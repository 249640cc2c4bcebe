//! `cluster` flags: the slurmrestd connection, polling, collectors, usage
//! and budgets; turned into a [`ClusterConfig`] for [`crate::cluster::run`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgAction, Args};

use super::parse_duration;
use super::slurmrestd::SlurmrestdArgs;
use crate::cluster::options::PollOptions;
use crate::cluster::usage::tracker::UsageTracker;
use crate::cluster::usage::AccountantOptions;
use crate::cluster::{budgets, ClusterConfig};
use crate::server::WebArgs;
use crate::slurmrestd::client::{Client, ClientOptions};
use crate::slurmrestd::ApiVersion;

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub web: WebArgs,

    #[command(flatten)]
    pub slurmrestd: SlurmrestdArgs,

    /// API version to use (e.g. v0.0.44), or `auto` to detect the newest the server offers.
    #[arg(long, env = "SLURMRESTD_API_VERSION", default_value = "auto")]
    pub slurmrestd_api_version: String,

    /// Largest response accepted. Bodies are streamed, not buffered, so this
    /// bounds time, not memory; the default fits a 200k-job v0.0.44 queue (~16 KB/job).
    #[arg(long, env = "SLURMRESTD_MAX_RESPONSE_BYTES", default_value_t = 4 << 30)]
    pub slurmrestd_max_response_bytes: u64,

    /// Interval between polls of slurmrestd.
    #[arg(long, env = "SLURM_GPU_EXPORTER_POLL_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// Data older than this (slurmrestd failing since) is dropped instead of served as stale.
    #[arg(long, env = "SLURM_GPU_EXPORTER_MAX_DATA_AGE", default_value = "10m", value_parser = parse_duration)]
    pub max_data_age: Duration,

    /// Queue metrics (/jobs).
    #[arg(long = "collector.jobs", env = "SLURM_GPU_EXPORTER_COLLECTOR_JOBS", default_value_t = true, action = ArgAction::Set)]
    pub collector_jobs: bool,

    /// Also export job counts per user (slurm_cluster_user_jobs); cardinality grows with users.
    #[arg(long = "collector.jobs.per-user", env = "SLURM_GPU_EXPORTER_COLLECTOR_JOBS_PER_USER", default_value_t = false, action = ArgAction::Set)]
    pub collector_jobs_per_user: bool,

    /// Send `?update_time=` on full /jobs polls; when slurmrestd says nothing
    /// changed (304, or an empty list with a warning) the previous jobs are kept.
    #[arg(long = "jobs.update-time", env = "SLURM_GPU_EXPORTER_JOBS_UPDATE_TIME", default_value_t = true, action = ArgAction::Set)]
    pub jobs_update_time: bool,

    /// With /jobs/state (API v0.0.40+): one poll in N fetches the whole /jobs;
    /// the others diff /jobs/state and re-fetch only changed jobs. 1 = always full.
    #[arg(long = "jobs.full-poll-every", env = "SLURM_GPU_EXPORTER_JOBS_FULL_POLL_EVERY", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs_full_poll_every: u32,

    /// An incremental poll that would re-fetch more than this percentage of
    /// the jobs polls /jobs in full instead.
    #[arg(
        long = "jobs.refetch-max-percent",
        env = "SLURM_GPU_EXPORTER_JOBS_REFETCH_MAX_PERCENT",
        default_value_t = 2.0
    )]
    pub jobs_refetch_max_percent: f64,

    /// Send `?update_time=` on /nodes; when slurmctld says no node changed
    /// (304, or an empty list with a warning) the previous node list is kept.
    #[arg(long = "nodes.update-time", env = "SLURM_GPU_EXPORTER_NODES_UPDATE_TIME", default_value_t = true, action = ArgAction::Set)]
    pub nodes_update_time: bool,

    /// With --nodes.update-time: one /nodes poll in N is unconditional, so
    /// CPU load and free memory (refreshed by slurmctld without marking the
    /// node list changed) are never older than N polls.
    #[arg(long = "nodes.full-poll-every", env = "SLURM_GPU_EXPORTER_NODES_FULL_POLL_EVERY", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub nodes_full_poll_every: u32,

    /// Node metrics (/nodes).
    #[arg(long = "collector.nodes", env = "SLURM_GPU_EXPORTER_COLLECTOR_NODES", default_value_t = true, action = ArgAction::Set)]
    pub collector_nodes: bool,

    /// Partition metrics (/partitions, with /nodes and /jobs).
    #[arg(long = "collector.partitions", env = "SLURM_GPU_EXPORTER_COLLECTOR_PARTITIONS", default_value_t = true, action = ArgAction::Set)]
    pub collector_partitions: bool,

    /// Fairshare metrics (/shares; API v0.0.39+).
    #[arg(long = "collector.fairshare", env = "SLURM_GPU_EXPORTER_COLLECTOR_FAIRSHARE", default_value_t = true, action = ArgAction::Set)]
    pub collector_fairshare: bool,

    /// Scheduler metrics (/diag).
    #[arg(long = "collector.scheduler", env = "SLURM_GPU_EXPORTER_COLLECTOR_SCHEDULER", default_value_t = true, action = ArgAction::Set)]
    pub collector_scheduler: bool,

    /// Limits Slurm enforces (/slurmdb/vX/associations, /slurmdb/vX/qos) and
    /// the usage counted against them (/shares, with --collector.fairshare).
    #[arg(long = "collector.limits", env = "SLURM_GPU_EXPORTER_COLLECTOR_LIMITS", default_value_t = true, action = ArgAction::Set)]
    pub collector_limits: bool,

    /// Associations and QOS are fetched one poll in N (they change only
    /// with sacctmgr); a failed fetch is retried the next poll.
    #[arg(long = "limits.poll-every", env = "SLURM_GPU_EXPORTER_LIMITS_POLL_EVERY", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub limits_poll_every: u32,

    /// Export only the associations of this Slurm cluster (ClusterName),
    /// for a slurmdbd that serves several clusters. Default: all it returns.
    #[arg(long = "limits.cluster", env = "SLURM_GPU_EXPORTER_LIMITS_CLUSTER")]
    pub limits_cluster: Option<String>,

    /// Usage counters (slurm_account_tres_usage_seconds_total): allocated
    /// TRES-seconds per account, user and partition, as sreport counts them. Needs --collector.jobs.
    #[arg(long = "collector.usage", env = "SLURM_GPU_EXPORTER_COLLECTOR_USAGE", default_value_t = true, action = ArgAction::Set)]
    pub collector_usage: bool,

    /// File (JSON, rewritten atomically every poll) that keeps the usage
    /// counters across restarts. Without it a restart starts them from zero.
    #[arg(long, env = "SLURM_GPU_EXPORTER_USAGE_STATE_FILE")]
    pub usage_state_file: Option<PathBuf>,

    /// A longer time since the last accounted poll is a gap filled from
    /// /slurmdb/vX/jobs. Keep it below slurmctld's MinJobAge; 0 asks slurmdbd every poll.
    #[arg(long, env = "SLURM_GPU_EXPORTER_USAGE_SLURMDB_GAP", default_value = "120s", value_parser = parse_duration)]
    pub usage_slurmdb_gap: Duration,

    /// YAML file of monthly budgets per account (gpu_hours, cpu_hours,
    /// billing_hours, tres_hours); see docs/usage.md. Checked at start.
    #[arg(long, env = "SLURM_GPU_EXPORTER_BUDGETS")]
    pub budgets: Option<PathBuf>,
}

impl ClusterArgs {
    pub fn poll_options(&self) -> anyhow::Result<PollOptions> {
        let pinned_version = match self.slurmrestd_api_version.trim() {
            "" | "auto" => None,
            v => Some(ApiVersion::parse(v).with_context(|| {
                format!(
                    "unsupported --slurmrestd-api-version {v:?}; supported: auto, {}",
                    ApiVersion::NEWEST_FIRST.map(|v| v.as_str()).join(", ")
                )
            })?),
        };
        Ok(PollOptions {
            pinned_version,
            jobs: self.collector_jobs,
            jobs_per_user: self.collector_jobs_per_user,
            nodes: self.collector_nodes,
            partitions: self.collector_partitions,
            fairshare: self.collector_fairshare,
            scheduler: self.collector_scheduler,
            limits: self.collector_limits,
            limits_poll_every: self.limits_poll_every,
            limits_cluster: self.limits_cluster.clone(),
            max_data_age: self.max_data_age,
            jobs_update_time: self.jobs_update_time,
            jobs_full_poll_every: self.jobs_full_poll_every,
            jobs_refetch_max_percent: self.jobs_refetch_max_percent,
            nodes_update_time: self.nodes_update_time,
            nodes_full_poll_every: self.nodes_full_poll_every,
        })
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        Client::new(self.client_options()).context("invalid slurmrestd settings")
    }

    pub fn client_options(&self) -> ClientOptions {
        self.slurmrestd
            .client_options(self.slurmrestd_max_response_bytes)
    }

    /// The scraper's configuration; loads the usage state and budgets files.
    pub fn config(self) -> anyhow::Result<ClusterConfig> {
        let poll = self.poll_options()?;
        let usage = self.usage_tracker()?;
        let client = Arc::new(self.client()?);
        if self.slurmrestd.no_token_configured() {
            tracing::warn!(
                "no --slurmrestd-token-file and no SLURM_JWT: requests go without a token"
            );
        }
        Ok(ClusterConfig {
            web: self.web,
            client,
            poll,
            poll_interval: self.poll_interval,
            usage,
        })
    }
}

impl ClusterArgs {
    /// The usage tracker, when usage is on: loads the state file and the
    /// budgets, rejecting bad ones before anything starts.
    pub fn usage_tracker(&self) -> anyhow::Result<Option<UsageTracker>> {
        let budgets = self
            .budgets
            .as_deref()
            .map(budgets::Budgets::load)
            .transpose()?;
        if !self.collector_usage || !self.collector_jobs {
            if budgets.is_some() || self.usage_state_file.is_some() {
                anyhow::bail!("--budgets and --usage-state-file need --collector.usage=true and --collector.jobs=true");
            }
            return Ok(None);
        }
        let opts = AccountantOptions {
            gap_threshold: self.usage_slurmdb_gap.as_secs() as i64,
            ..Default::default()
        };
        if self.usage_state_file.is_none() {
            tracing::warn!(
                "no --usage-state-file: usage counters restart from zero when the scraper restarts"
            );
        }
        Ok(Some(UsageTracker::new(
            opts,
            self.usage_state_file.clone(),
            budgets,
        )?))
    }
}
