//! Cluster scraper: polls slurmrestd in the background and serves the latest
//! snapshot, so any number of Prometheus replicas cost one poll set per interval.
//!
//! # Layout
//!
//! * [`poller`]: one poll cycle: version detection, every enabled endpoint
//!   at once, last good data per endpoint ([`endpoint::Slot`]) and its expiry,
//!   self-metrics per [`endpoint::Endpoint`], the metric set.
//! * [`jobs_sync`] (incremental `/jobs`, the [`jobtable`]) and [`nodes_sync`]
//!   (conditional `/nodes`), sharing [`conditional`] (`?update_time=` helpers).
//! * [`options`]: [`PollOptions`]; [`ClusterConfig`] is what [`run`] takes
//!   (the flags are `crate::cli::cluster`'s).
//! * [`usage`] (TRES-seconds accounting, slurmdbd gaps, state file) and
//!   [`budgets`]; [`collectors`]: one per data set.
//!
//! Nothing here builds a URL: requests go through [`crate::slurmrestd::Api`].
//! Imports go one way: `poller` → `jobs_sync`/`nodes_sync` → `conditional`,
//! `options`, `endpoint`.

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

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::server::{self, Publisher, WebArgs};
use crate::slurmrestd::client::Client;
use options::PollOptions;
use poller::Poller;
use usage::tracker::{CheckError, UsageTracker};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:9342";

/// What the cluster scraper runs with (built by the CLI layer from flags,
/// `crate::cli::cluster::ClusterArgs`).
pub struct ClusterConfig {
    pub web: WebArgs,
    pub client: Arc<Client>,
    pub poll: PollOptions,
    pub poll_interval: Duration,
    /// Usage accounting, when on (state file and budgets already loaded).
    pub usage: Option<UsageTracker>,
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
            crate::allocator::release_freed_memory();
        }
    })
}

pub async fn run(args: ClusterConfig) -> anyhow::Result<()> {
    let opts = args.poll;
    let usage = args.usage;
    let client = args.client;
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
