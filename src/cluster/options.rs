//! What the poller polls and how: [`PollOptions`], built by the CLI layer
//! from flags (see `crate::cli::cluster::ClusterArgs`) or by tests directly.

use std::time::Duration;

use crate::slurmrestd::ApiVersion;

/// Which data sets to poll.
#[derive(Debug, Clone)]
pub struct PollOptions {
    pub pinned_version: Option<ApiVersion>,
    pub jobs: bool,
    pub jobs_per_user: bool,
    pub nodes: bool,
    pub partitions: bool,
    pub fairshare: bool,
    pub scheduler: bool,
    /// Association and QOS limits (`/slurmdb/vX/associations`, `/qos`).
    pub limits: bool,
    /// Associations and QOS are fetched one poll in N; while the last fetch
    /// succeeded, the polls between count as current.
    pub limits_poll_every: u32,
    /// Only this cluster's associations (slurmdbd may serve several).
    pub limits_cluster: Option<String>,
    /// Last good data older than this is dropped rather than served as stale.
    pub max_data_age: Duration,
    /// Send `?update_time=` on full `/jobs` polls and keep the job table when
    /// slurmrestd says nothing changed (304, or an empty list with a warning).
    pub jobs_update_time: bool,
    /// With `/jobs/state` (v0.0.40+): one poll in N is a full `/jobs`; the
    /// others diff `/jobs/state` and re-fetch changed jobs. 1 = always full.
    pub jobs_full_poll_every: u32,
    /// An incremental poll that would re-fetch more than this percentage of
    /// the table's jobs polls `/jobs` in full instead.
    pub jobs_refetch_max_percent: f64,
    /// Send `?update_time=` on `/nodes` and keep the node list when
    /// slurmctld says no node changed (see [`super::nodes_sync`]).
    pub nodes_update_time: bool,
    /// With `nodes_update_time`: one `/nodes` poll in N is unconditional.
    pub nodes_full_poll_every: u32,
}

impl PollOptions {
    /// Whether `/jobs` is polled other than in full every time.
    pub fn jobs_incremental(&self) -> bool {
        self.jobs_update_time || self.jobs_full_poll_every > 1
    }
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            pinned_version: None,
            jobs: true,
            jobs_per_user: false,
            nodes: true,
            partitions: true,
            fairshare: true,
            scheduler: true,
            limits: true,
            limits_poll_every: 1,
            limits_cluster: None,
            max_data_age: Duration::from_secs(600),
            // The library default polls /jobs in full (as before incremental
            // polling existed); the CLI turns incremental polling on.
            jobs_update_time: false,
            jobs_full_poll_every: 1,
            jobs_refetch_max_percent: 2.0,
            nodes_update_time: false,
            nodes_full_poll_every: 10,
        }
    }
}
