//! Cluster scraper: polls slurmrestd in the background and serves the latest
//! snapshot, so any number of Prometheus replicas cost one poll set per interval.

pub mod budgets;
pub mod collectors;
pub mod conditional;
pub mod endpoint;
pub mod jobs_sync;
pub mod jobtable;
pub mod nodes_sync;
pub mod options;
pub mod poller;
pub mod usage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgAction, Args};

use crate::cli::{parse_duration, WebArgs};
use crate::server::{self, Publisher};
use crate::slurmrestd::client::{Client, ClientOptions, Secret, TokenSource};
use crate::slurmrestd::ApiVersion;
use options::PollOptions;
use poller::Poller;
use usage::tracker::{CheckError, UsageTracker};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:9342";

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub web: WebArgs,

    /// slurmrestd URL: http://host:port, https://host:port or unix:///path/to/slurmrestd.socket.
    #[arg(long, env = "SLURMRESTD_URL")]
    pub slurmrestd_url: String,

    /// File holding the JWT (re-read every poll, so rotated Secrets apply). Without it, env SLURM_JWT is used.
    #[arg(long, env = "SLURMRESTD_TOKEN_FILE")]
    pub slurmrestd_token_file: Option<PathBuf>,

    /// Value of X-SLURM-USER-NAME (optional; needed for tokens not bound to a user).
    #[arg(long, env = "SLURMRESTD_USER_NAME")]
    pub slurmrestd_user_name: Option<String>,

    /// API version to use (e.g. v0.0.44), or `auto` to detect the newest the server offers.
    #[arg(long, env = "SLURMRESTD_API_VERSION", default_value = "auto")]
    pub slurmrestd_api_version: String,

    /// Deadline for one request: connect, headers and whole body.
    #[arg(long, env = "SLURMRESTD_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub slurmrestd_timeout: Duration,

    /// Largest response accepted. Bodies are streamed, not buffered, so this
    /// bounds time, not memory; the default fits a 200k-job v0.0.44 queue (~16 KB/job).
    #[arg(long, env = "SLURMRESTD_MAX_RESPONSE_BYTES", default_value_t = 4 << 30)]
    pub slurmrestd_max_response_bytes: u64,

    /// PEM CA bundle for https:// slurmrestd (added to the system roots).
    #[arg(long, env = "SLURMRESTD_CA_FILE")]
    pub slurmrestd_ca_file: Option<PathBuf>,

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
        let token = match &self.slurmrestd_token_file {
            Some(p) => TokenSource::File(p.clone()),
            None => match std::env::var("SLURM_JWT") {
                Ok(t) if !t.trim().is_empty() => TokenSource::Static(Secret::new(t.trim())),
                _ => TokenSource::None,
            },
        };
        Client::new(ClientOptions {
            url: self.slurmrestd_url.clone(),
            token,
            user_name: self.slurmrestd_user_name.clone(),
            timeout: self.slurmrestd_timeout,
            max_body_bytes: self.slurmrestd_max_response_bytes,
            ca_file: self.slurmrestd_ca_file.clone(),
        })
        .context("invalid slurmrestd settings")
    }
}

/// Polls forever on `interval`, publishing after every poll. Missed ticks are
/// skipped, so a slow slurmrestd never causes a burst of catch-up polls.
pub fn spawn_poll_loop(
    mut poller: Poller,
    interval: Duration,
    publisher: Publisher,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let set = poller.poll().await;
            publisher.publish(&set);
            drop(set);
            // The previous snapshot and this poll's metric set were just freed.
            crate::memory::release_freed_memory();
        }
    })
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
        let opts = usage::AccountantOptions {
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

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let opts = args.poll_options()?;
    let usage = args.usage_tracker()?;
    let client = Arc::new(args.client()?);
    if matches!(
        (&args.slurmrestd_token_file, std::env::var_os("SLURM_JWT")),
        (None, None)
    ) {
        tracing::warn!("no --slurmrestd-token-file and no SLURM_JWT: requests go without a token");
    }
    let web = server::WebServer::bind(&args.web, DEFAULT_LISTEN).await?;
    tracing::info!(
        metrics = %web.metrics_url(),
        slurmrestd = client.display(),
        interval = ?args.poll_interval,
        "cluster scraper started"
    );
    let publisher = Publisher::new();
    let mut poller = Poller::new(client, opts);
    if let Some(u) = usage {
        let has_budgets = u.budgets.is_some();
        poller = poller.with_usage(u);
        if has_budgets {
            // Unknown accounts are a config error: refuse to start. An
            // unreachable slurmdbd is not: the poller checks again.
            match poller.check_budget_accounts().await {
                Ok(()) => {}
                Err(CheckError::Budgets(e)) => return Err(e.into()),
                Err(CheckError::Fetch(e)) => {
                    tracing::warn!(error = %e, "cannot check budget accounts against slurmdbd at start; checking again after the first poll")
                }
            }
        }
    }
    let poll = spawn_poll_loop(poller, args.poll_interval, publisher.clone());
    let res = web
        .serve(
            "slurm-gpu-exporter cluster",
            vec![publisher],
            server::shutdown_signal(),
        )
        .await;
    poll.abort();
    res.context("HTTP server failed")
}
