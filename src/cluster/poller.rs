//! One poll cycle: detect the API version, fetch every enabled endpoint
//! concurrently, keep the last good data of each, and build the metric set.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::collectors::exporter::{self, EndpointStatus, ExporterStatus};
use super::collectors::jobs::JobAggregates;
use super::collectors::{fairshare, nodes, partitions, scheduler};
use super::usage::tracker::{CheckError, UsageTracker};
use crate::exposition::MetricSet;
use crate::model::{Diag, Node, Partition, Share};
use crate::slurmrestd::client::{Client, FetchError, Fetched};
use crate::slurmrestd::{self, ApiVersion};

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
    /// Last good data older than this is dropped rather than served as stale.
    pub max_data_age: Duration,
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
            max_data_age: Duration::from_secs(600),
        }
    }
}

/// Data kept between polls, with the time it was fetched.
#[derive(Debug, Clone)]
struct Kept<T> {
    value: T,
    at: Instant,
}

pub struct Poller {
    client: Arc<Client>,
    opts: PollOptions,
    version: Option<ApiVersion>,
    jobs: Option<Kept<JobAggregates>>,
    nodes: Option<Kept<Vec<Node>>>,
    partitions: Option<Kept<Vec<Partition>>>,
    shares: Option<Kept<Vec<Share>>>,
    diag: Option<Kept<Diag>>,
    status: BTreeMap<&'static str, EndpointStatus>,
    polls: u64,
    token_errors: u64,
    usage: Option<UsageTracker>,
    budget_check_failures: u64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Poller {
    pub fn new(client: Arc<Client>, opts: PollOptions) -> Self {
        Poller {
            client,
            version: opts.pinned_version,
            opts,
            jobs: None,
            nodes: None,
            partitions: None,
            shares: None,
            diag: None,
            status: BTreeMap::new(),
            polls: 0,
            token_errors: 0,
            usage: None,
            budget_check_failures: 0,
        }
    }

    /// Enables usage accounting (needs the jobs collector).
    pub fn with_usage(mut self, usage: UsageTracker) -> Self {
        self.usage = Some(usage);
        self
    }

    pub fn usage(&self) -> Option<&UsageTracker> {
        self.usage.as_ref()
    }

    /// Checks the budget file's accounts against slurmdbd before the first
    /// poll. A fetch error means "could not check": the poller checks again.
    pub async fn check_budget_accounts(&mut self) -> Result<(), CheckError> {
        let v = match self.version {
            Some(v) => v,
            None => {
                let v = self.detect_version().await?;
                tracing::info!(version = %v, url = self.client.display(), "detected slurmrestd API version");
                self.version = Some(v);
                v
            }
        };
        match self.usage.as_mut() {
            Some(u) => u.check_budget_accounts(&self.client, v).await,
            None => Ok(()),
        }
    }

    pub fn api_version(&self) -> Option<ApiVersion> {
        self.version
    }

    /// Probes `/slurm/vX/ping` newest first. Only a 404 means "not this
    /// version"; any other failure (auth, connect) ends detection.
    async fn detect_version(&self) -> Result<ApiVersion, FetchError> {
        let mut last = None;
        for v in ApiVersion::NEWEST_FIRST {
            let path = v.slurm_path("ping/");
            match self.client.get(&path, |r| drain(r)).await {
                Ok(_) => return Ok(v),
                Err(e) if e.is_not_found() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| FetchError::InvalidUrl {
            url: self.client.display().to_string(),
            reason: "no known API version answered".into(),
        }))
    }

    /// Runs one poll cycle and returns the metrics to publish.
    pub async fn poll(&mut self) -> MetricSet {
        self.polls += 1;
        if let Err(e) = self.client.refresh_token() {
            self.token_errors += 1;
            tracing::warn!(error = %e, "keeping the previous slurmrestd token");
        }

        let version = match self.version {
            Some(v) => Some(v),
            None => {
                let started = Instant::now();
                match self.detect_version().await {
                    Ok(v) => {
                        tracing::info!(version = %v, url = self.client.display(), "detected slurmrestd API version");
                        self.record_ok("version", started, 0);
                        Some(v)
                    }
                    Err(e) => {
                        self.record_err("version", started, &e);
                        None
                    }
                }
            }
        };
        self.version = version;

        if let Some(v) = version {
            self.fetch_all(v).await;
        } else {
            // Without a version nothing can be fetched; mark every endpoint down.
            for ep in self.enabled_endpoints(None) {
                let st = self.status.entry(ep).or_default();
                st.up = false;
            }
        }
        self.expire_old_data();
        self.build()
    }

    fn enabled_endpoints(&self, v: Option<ApiVersion>) -> Vec<&'static str> {
        let mut eps = Vec::new();
        if self.opts.jobs {
            eps.push("jobs");
        }
        if self.opts.nodes || self.opts.partitions {
            eps.push("nodes");
        }
        if self.opts.partitions {
            eps.push("partitions");
        }
        if self.opts.fairshare && v.is_none_or(|v| v.has_shares()) {
            eps.push("shares");
        }
        if self.opts.scheduler {
            eps.push("diag");
        }
        eps
    }

    async fn fetch_all(&mut self, v: ApiVersion) {
        let client = &self.client;
        let per_user = self.opts.jobs_per_user;
        let enabled = self.enabled_endpoints(Some(v));
        let on = |name: &str| enabled.contains(&name);
        // Usage is credited up to the moment the request is sent: a job
        // listed as running was certainly running then.
        let now_unix = unix_now() as i64;
        let usage_since = self.usage.as_ref().map(|u| u.rows_since());
        let (jobs, nodes, parts, shares, diag) = tokio::join!(
            timed(maybe(on("jobs"), async move {
                client
                    .get(&v.slurm_path("jobs/"), move |r| {
                        let mut agg = JobAggregates::new(per_user);
                        if let Some(since) = usage_since {
                            agg = agg.with_usage_since(since);
                        }
                        slurmrestd::parse_jobs(v, r, &mut agg)?;
                        Ok(agg)
                    })
                    .await
            })),
            timed(maybe(on("nodes"), async move {
                client
                    .get(&v.slurm_path("nodes/"), move |r| {
                        slurmrestd::parse_nodes(v, r)
                    })
                    .await
            })),
            timed(maybe(on("partitions"), async move {
                client
                    .get(&v.slurm_path("partitions/"), move |r| {
                        slurmrestd::parse_partitions(v, r)
                    })
                    .await
            })),
            timed(maybe(on("shares"), async move {
                client
                    .get(&v.slurm_path("shares"), move |r| {
                        slurmrestd::parse_shares(v, r)
                    })
                    .await
            })),
            timed(maybe(on("diag"), async move {
                client
                    .get(&v.slurm_path("diag/"), move |r| {
                        slurmrestd::parse_diag(v, r)
                    })
                    .await
            })),
        );
        let mut not_found = false;
        let now = Instant::now();
        macro_rules! keep {
            ($name:literal, $res:expr, $slot:ident) => {
                let (started, res) = $res;
                match res {
                    None => {}
                    Some(Ok(Fetched { value, bytes })) => {
                        self.record_ok($name, started, bytes);
                        self.$slot = Some(Kept { value, at: now });
                    }
                    Some(Err(e)) => {
                        not_found |= e.is_not_found();
                        self.record_err($name, started, &e);
                    }
                }
            };
        }
        let (started, mut jobs) = jobs;
        if let (Some(u), Some(Ok(f))) = (self.usage.as_mut(), jobs.as_mut()) {
            let rows = std::mem::take(&mut f.value.usage);
            u.account(&self.client, v, now_unix, rows).await;
        }
        if let Some(u) = self.usage.as_mut().filter(|u| !u.budgets_checked) {
            match u.check_budget_accounts(&self.client, v).await {
                Ok(()) => {}
                Err(CheckError::Budgets(e)) => {
                    tracing::error!(error = %e, "budgets file names unknown accounts; their budget metrics stay but will never see usage")
                }
                Err(CheckError::Fetch(e)) => {
                    self.budget_check_failures += 1;
                    if self.budget_check_failures == 1 {
                        tracing::warn!(error = %e, "cannot check budget accounts against slurmdbd yet; retrying every poll");
                    }
                }
            }
        }
        let jobs = (started, jobs);
        keep!("jobs", jobs, jobs);
        keep!("nodes", nodes, nodes);
        keep!("partitions", parts, partitions);
        keep!("shares", shares, shares);
        keep!("diag", diag, diag);
        // A 404 on a data path means the server no longer serves this version
        // (slurmrestd upgraded): detect again on the next poll.
        if not_found && self.opts.pinned_version.is_none() {
            tracing::warn!(version = %v, "slurmrestd stopped serving this API version; re-detecting next poll");
            self.version = None;
        }
    }

    fn record_ok(&mut self, endpoint: &'static str, started: Instant, bytes: u64) {
        let st = self.status.entry(endpoint).or_default();
        st.up = true;
        st.stale = false;
        st.last_success_unix = Some(unix_now());
        st.last_duration_seconds = started.elapsed().as_secs_f64();
        st.last_response_bytes = bytes;
    }

    fn record_err(&mut self, endpoint: &'static str, started: Instant, e: &FetchError) {
        let has_data = match endpoint {
            "jobs" => self.jobs.is_some(),
            "nodes" => self.nodes.is_some(),
            "partitions" => self.partitions.is_some(),
            "shares" => self.shares.is_some(),
            "diag" => self.diag.is_some(),
            _ => false,
        };
        let st = self.status.entry(endpoint).or_default();
        st.up = false;
        st.stale = has_data;
        st.last_duration_seconds = started.elapsed().as_secs_f64();
        *st.errors.entry(e.kind()).or_default() += 1;
        tracing::warn!(endpoint, kind = e.kind(), error = %e, serving_stale = has_data, "slurmrestd poll failed");
    }

    fn expire_old_data(&mut self) {
        let max = self.opts.max_data_age;
        let mut expired = Vec::new();
        macro_rules! expire {
            ($name:literal, $slot:ident) => {
                if self.$slot.as_ref().is_some_and(|k| k.at.elapsed() > max) {
                    self.$slot = None;
                    expired.push($name);
                }
            };
        }
        expire!("jobs", jobs);
        expire!("nodes", nodes);
        expire!("partitions", partitions);
        expire!("shares", shares);
        expire!("diag", diag);
        for name in expired {
            tracing::warn!(endpoint = name, max_age = ?max, "dropping stale data");
            if let Some(st) = self.status.get_mut(name) {
                st.stale = false;
            }
        }
    }

    fn build(&self) -> MetricSet {
        let mut set = MetricSet::new();
        let jobs = self.jobs.as_ref().map(|k| &k.value);
        if self.opts.jobs {
            if let Some(j) = jobs {
                j.collect(&mut set);
            }
        }
        if let Some(u) = &self.usage {
            u.collect(&mut set);
        }
        if self.opts.nodes {
            if let Some(n) = &self.nodes {
                nodes::collect(&n.value, &mut set);
            }
        }
        if self.opts.partitions {
            if let Some(p) = &self.partitions {
                let empty = Vec::new();
                let n = self.nodes.as_ref().map(|k| &k.value).unwrap_or(&empty);
                partitions::collect(&p.value, n, jobs, &mut set);
            }
        }
        if self.opts.fairshare {
            if let Some(s) = &self.shares {
                fairshare::collect(&s.value, &mut set);
            }
        }
        if self.opts.scheduler {
            if let Some(d) = &self.diag {
                scheduler::collect(&d.value, &mut set);
            }
        }
        let enabled = self.enabled_endpoints(self.version);
        let slurmrestd_up = self.version.is_some()
            && enabled
                .iter()
                .all(|e| self.status.get(e).is_some_and(|s| s.up));
        exporter::collect(
            &ExporterStatus {
                endpoints: &self.status,
                api_version: self.version,
                polls: self.polls,
                slurmrestd_up,
                token_errors: self.token_errors,
            },
            &mut set,
        );
        set
    }
}

async fn timed<T>(fut: impl std::future::Future<Output = T>) -> (Instant, T) {
    let started = Instant::now();
    (started, fut.await)
}

async fn maybe<T>(enabled: bool, fut: impl std::future::Future<Output = T>) -> Option<T> {
    if enabled {
        Some(fut.await)
    } else {
        None
    }
}

/// Reads and discards a body (ping), bounded by the client's size limit.
fn drain(r: &mut dyn std::io::Read) -> Result<(), slurmrestd::ParseError> {
    std::io::copy(r, &mut std::io::sink())
        .map(|_| ())
        .map_err(|e| slurmrestd::ParseError::Json(serde_json::Error::io(e)))
}
