//! One poll cycle: detect the API version, fetch every enabled endpoint
//! concurrently, keep the last good data of each, and build the metric set.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::collectors::exporter::{self, EndpointStatus, ExporterStatus};
use super::collectors::jobs::JobAggregates;
use super::collectors::{fairshare, limits, nodes, partitions, scheduler};
use super::jobtable::{JobTable, UnknownId};
use super::nodes_sync::{rejects_update_time, sync_nodes, NodesPoll, NodesSync};
use super::usage::tracker::{CheckError, UsageTracker};
use crate::exposition::Kind;
use crate::exposition::MetricSet;
use crate::model::{Association, Diag, Job, Node, Partition, Qos, Share};
use crate::slurmrestd::api::paths;
use crate::slurmrestd::client::{Client, FetchError, Fetched};
use crate::slurmrestd::{self, Api, ApiVersion};

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

/// Data kept between polls, with the time it was fetched.
#[derive(Debug, Clone)]
struct Kept<T> {
    value: T,
    at: Instant,
}

pub struct Poller {
    api: Api,
    opts: PollOptions,
    version: Option<ApiVersion>,
    jobs: Option<Kept<JobAggregates>>,
    nodes: Option<Kept<Vec<Node>>>,
    partitions: Option<Kept<Vec<Partition>>>,
    shares: Option<Kept<Vec<Share>>>,
    diag: Option<Kept<Diag>>,
    associations: Option<Kept<Vec<Association>>>,
    qos: Option<Kept<Vec<Qos>>>,
    /// Polls since associations and QOS were last fetched.
    limits_polls_since: u32,
    status: BTreeMap<&'static str, EndpointStatus>,
    polls: u64,
    token_errors: u64,
    usage: Option<UsageTracker>,
    budget_check_failures: u64,
    jobs_sync: JobsSync,
    /// Polls of `/jobs` by kind (full, unchanged, incremental).
    jobs_polls: BTreeMap<&'static str, u64>,
    jobs_refetched: u64,
    nodes_sync: NodesSync,
    /// Polls of `/nodes` by kind (full, unchanged).
    nodes_polls: BTreeMap<&'static str, u64>,
    /// (endpoint, API version) pairs whose `?update_time=` slurmrestd
    /// refused as a bad query (24.11's v0.0.40/v0.0.41): requests there go
    /// unconditional from then on.
    update_time_refused: BTreeSet<(&'static str, ApiVersion)>,
    /// Set while the pinned API version is not served (its `/ping` is a
    /// 404): the versions the server answered for instead.
    pinned_unserved: Option<Vec<ApiVersion>>,
    /// Clock the usage accountant runs on; `None` is the system clock.
    usage_clock: Option<UsageClock>,
}

/// An optional fetch with the time it started.
type Timed<T> = (Instant, Option<Result<Fetched<T>, FetchError>>);

/// A clock (Unix seconds) for usage accounting: the demo's faster clock.
pub type UsageClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// State of incremental `/jobs` polling, kept between polls.
#[derive(Debug, Default)]
struct JobsSync {
    /// Jobs as of the last full poll, patched by incremental polls since.
    table: Option<JobTable>,
    /// `update_time` to send on the next full poll: slurmctld's `last_update`
    /// of the last full response minus 1 s (v0.0.39+), or our clock at its
    /// request minus [`OWN_CLOCK_MARGIN_S`] (v0.0.38 gives no time).
    since: Option<i64>,
    /// Incremental polls since the last full one.
    polls_since_full: u32,
    /// `/jobs/state` answered 404: not offered here, poll in full.
    state_missing: bool,
}

/// Margin for an `update_time` taken from our own clock (v0.0.38): a 304 is
/// trusted only while slurmctld's clock is less than this behind ours.
pub const OWN_CLOCK_MARGIN_S: i64 = 60;

/// One request of a `/jobs` poll, for the endpoint status and error counters.
struct Step {
    endpoint: &'static str,
    started: Instant,
    result: Result<u64, FetchError>,
}

/// What a `/jobs` poll did.
#[derive(Default)]
struct JobsOutcome {
    steps: Vec<Step>,
    /// `full`, `unchanged` or `incremental` when the table is current.
    kind: Option<&'static str>,
    refetched: u64,
    bytes: u64,
    /// The conditional full poll was refused as a bad query: this version
    /// does not take `?update_time=` on `/jobs`.
    update_time_rejected: Option<FetchError>,
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
            api: Api::new(client),
            version: opts.pinned_version,
            opts,
            jobs: None,
            nodes: None,
            partitions: None,
            shares: None,
            diag: None,
            associations: None,
            qos: None,
            limits_polls_since: 0,
            status: BTreeMap::new(),
            polls: 0,
            token_errors: 0,
            usage: None,
            budget_check_failures: 0,
            jobs_sync: JobsSync::default(),
            jobs_polls: BTreeMap::new(),
            jobs_refetched: 0,
            nodes_sync: NodesSync::default(),
            nodes_polls: BTreeMap::new(),
            update_time_refused: BTreeSet::new(),
            pinned_unserved: None,
            usage_clock: None,
        }
    }

    /// While the pinned API version is not served: the known versions the
    /// server answers `/ping` for.
    pub fn pinned_version_unserved(&self) -> Option<&[ApiVersion]> {
        self.pinned_unserved.as_deref()
    }

    /// Credits usage by `clock` instead of the system clock (the demo runs
    /// its cluster, and so its usage, faster than real time).
    pub fn with_usage_clock(mut self, clock: UsageClock) -> Self {
        self.usage_clock = Some(clock);
        self
    }

    /// Jobs in the incremental-polling table and its approximate heap size.
    pub fn job_table_size(&self) -> Option<(usize, usize)> {
        self.jobs_sync
            .table
            .as_ref()
            .map(|t| (t.len(), t.heap_bytes()))
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
                tracing::info!(version = %v, url = self.api.client().display(), "detected slurmrestd API version");
                self.version = Some(v);
                v
            }
        };
        match self.usage.as_mut() {
            Some(u) => u.check_budget_accounts(&self.api, v).await,
            None => Ok(()),
        }
    }

    pub fn api_version(&self) -> Option<ApiVersion> {
        self.version
    }

    async fn detect_version(&self) -> Result<ApiVersion, FetchError> {
        self.api.detect_version().await
    }

    /// Runs one poll cycle and returns the metrics to publish.
    pub async fn poll(&mut self) -> MetricSet {
        self.polls += 1;
        if let Err(e) = self.api.client().refresh_token() {
            self.token_errors += 1;
            tracing::warn!(error = %e, "{}", self.api.client().token_failure_note());
        }

        let version = match self.version {
            Some(v) => Some(v),
            None => {
                let started = Instant::now();
                match self.detect_version().await {
                    Ok(v) => {
                        tracing::info!(version = %v, url = self.api.client().display(), "detected slurmrestd API version");
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
            if self.pinned_unserved.is_some() && self.pinned_still_unserved(v).await {
                // One /ping per poll instead of a 404 from every endpoint.
                for ep in self.enabled_endpoints(Some(v)) {
                    let has_data = self.has_data(ep);
                    let st = self.status.entry(ep).or_default();
                    st.up = false;
                    st.stale = has_data;
                }
            } else {
                self.fetch_all(v).await;
            }
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
        if self.opts.limits {
            eps.push("associations");
            eps.push("qos");
        }
        eps
    }

    async fn fetch_all(&mut self, v: ApiVersion) {
        let api = &self.api;
        let enabled = self.enabled_endpoints(Some(v));
        let on = |name: &str| enabled.contains(&name);
        // Usage is credited up to the moment the request is sent: a job
        // listed as running was certainly running then.
        let now_unix = self
            .usage_clock
            .as_ref()
            .map_or_else(|| unix_now() as i64, |c| c());
        let usage_since = self.usage.as_ref().map(|u| u.rows_since());
        let jobs_opts = self.opts.clone();
        let jobs_sync = std::mem::take(&mut self.jobs_sync);
        let nodes_sync = std::mem::take(&mut self.nodes_sync);
        let have_nodes = self.nodes.is_some();
        let jobs_conditional = !self.update_time_refused.contains(&("jobs", v));
        let nodes_conditional = !self.update_time_refused.contains(&("nodes", v));
        // Limits change only with sacctmgr: fetched one poll in N, and every
        // poll while a fetch failed or no data is kept.
        let limits_due = |ep: &str, has: bool| {
            on(ep)
                && (!has
                    || self.limits_polls_since + 1 >= self.opts.limits_poll_every
                    || !self.status.get(ep).is_some_and(|s| s.up))
        };
        let assoc_due = limits_due("associations", self.associations.is_some());
        let qos_due = limits_due("qos", self.qos.is_some());
        let (jobs, nodes, parts, shares, diag, assocs, qos) = tokio::join!(
            maybe(
                on("jobs"),
                sync_jobs(api, v, &jobs_opts, jobs_conditional, jobs_sync)
            ),
            maybe(
                on("nodes"),
                sync_nodes(
                    api,
                    v,
                    &jobs_opts,
                    have_nodes,
                    nodes_conditional,
                    nodes_sync
                )
            ),
            timed(maybe(on("partitions"), api.partitions(v))),
            timed(maybe(on("shares"), api.shares(v))),
            timed(maybe(on("diag"), api.diag(v))),
            timed(maybe(assoc_due, api.associations(v))),
            timed(maybe(qos_due, api.qos(v))),
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
        let mut jobs_fresh = None;
        if let Some((sync, mut outcome)) = jobs {
            self.jobs_sync = sync;
            if let Some(e) = outcome.update_time_rejected.take() {
                self.refuse_update_time("jobs", v, &e);
            }
            let poll_started = outcome.steps.first().map(|s| s.started);
            for step in outcome.steps {
                match step.result {
                    Ok(bytes) if step.endpoint != "jobs" => {
                        self.record_ok(step.endpoint, step.started, bytes)
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Only a 404 of /jobs itself means the version is gone.
                        not_found |= step.endpoint == "jobs" && e.is_not_found();
                        self.record_err(step.endpoint, step.started, &e);
                    }
                }
            }
            let per_user = self.opts.jobs_per_user;
            // The previous aggregates go before the new ones are built, so
            // the two never coexist (15 MiB each at 100k jobs); they stay
            // (served as stale data) only when this poll yields no table.
            if outcome.kind.is_some() && self.jobs_sync.table.is_some() {
                self.jobs = None;
            }
            let built = outcome.kind.zip(
                self.jobs_sync
                    .table
                    .as_ref()
                    .map(|t| t.aggregates(per_user, usage_since)),
            );
            if let Some((kind, mut agg)) = built {
                *self.jobs_polls.entry(kind).or_default() += 1;
                self.jobs_refetched += outcome.refetched;
                if let Some(started) = poll_started {
                    self.record_ok("jobs", started, outcome.bytes);
                }
                let rows = std::mem::take(&mut agg.usage);
                jobs_fresh = Some(agg);
                if let Some(u) = self.usage.as_mut() {
                    u.account(&self.api, v, now_unix, rows).await;
                }
            }
        }
        if let Some(u) = self.usage.as_mut().filter(|u| !u.budgets_checked) {
            match u.check_budget_accounts(&self.api, v).await {
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
        if let Some(value) = jobs_fresh {
            self.jobs = Some(Kept { value, at: now });
        }
        if let Some((sync, mut outcome)) = nodes {
            self.nodes_sync = sync;
            if let Some(e) = outcome.update_time_rejected.take() {
                self.refuse_update_time("nodes", v, &e);
            }
            match outcome.result {
                Ok((poll, bytes)) => {
                    self.record_ok("nodes", outcome.started, bytes);
                    *self.nodes_polls.entry(poll.kind()).or_default() += 1;
                    match poll {
                        NodesPoll::Fresh(value) => self.nodes = Some(Kept { value, at: now }),
                        NodesPoll::Unchanged => {
                            if let Some(k) = self.nodes.as_mut() {
                                k.at = now;
                            }
                        }
                    }
                }
                Err(e) => {
                    not_found |= e.is_not_found();
                    self.record_err("nodes", outcome.started, &e);
                }
            }
        }
        keep!("partitions", parts, partitions);
        keep!("shares", shares, shares);
        keep!("diag", diag, diag);
        self.keep_limits(assocs, qos, now);
        if not_found && self.opts.pinned_version.is_some() && self.pinned_unserved.is_none() {
            self.diagnose_pinned(v).await;
        }
        // A 404 on a data path means the server no longer serves this version
        // (slurmrestd upgraded): detect again on the next poll.
        if not_found && self.opts.pinned_version.is_none() {
            tracing::warn!(version = %v, "slurmrestd stopped serving this API version; re-detecting next poll");
            self.version = None;
            self.nodes_sync = NodesSync::default();
        }
    }

    /// Keeps association and QOS data. A 404 here does not mean the API
    /// version is gone: slurmrestd runs without its slurmdbd plugin, or an
    /// old one lacks the path; only the error counter says so.
    fn keep_limits(&mut self, assocs: Timed<Vec<Association>>, qos: Timed<Vec<Qos>>, now: Instant) {
        if !self.opts.limits {
            return;
        }
        let fetched = assocs.1.is_some() || qos.1.is_some();
        macro_rules! keep_limit {
            ($name:literal, $res:expr, $slot:ident) => {
                let (started, res) = $res;
                match res {
                    // Not due: current as long as the last fetch succeeded.
                    None => {
                        if self.status.get($name).is_some_and(|s| s.up) {
                            if let Some(k) = self.$slot.as_mut() {
                                k.at = now;
                            }
                        }
                    }
                    Some(Ok(Fetched { value, bytes })) => {
                        self.record_ok($name, started, bytes);
                        self.$slot = Some(Kept { value, at: now });
                    }
                    Some(Err(e)) => self.record_err($name, started, &e),
                }
            };
        }
        keep_limit!("associations", assocs, associations);
        keep_limit!("qos", qos, qos);
        self.limits_polls_since = if fetched {
            0
        } else {
            self.limits_polls_since.saturating_add(1)
        };
    }

    /// After a 404 with a pinned version: if the version's `/ping` is a 404
    /// too, the server does not serve it. Says so once at error, with the
    /// known versions it does serve (one `/ping` each, newest first).
    async fn diagnose_pinned(&mut self, v: ApiVersion) {
        let started = Instant::now();
        match self.api.ping(v).await {
            Err(e) if e.is_not_found() => {}
            // Served (a single path is missing), or another failure the
            // endpoints already report.
            _ => return,
        }
        let served = self.api.served_versions(v).await;
        let list = served
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        tracing::error!(
            pinned = %v,
            served = %if list.is_empty() { "none this exporter knows" } else { list.as_str() },
            url = self.api.client().display(),
            "slurmrestd does not serve the API version set by --slurmrestd-api-version; set one it serves, or auto"
        );
        self.pinned_unserved = Some(served);
        self.record_version_not_served(started);
    }

    /// While the pinned version is not served: true if its `/ping` is still
    /// a 404 (counted as `version_not_served`); false once it answers (or
    /// fails otherwise, which the endpoints then report).
    async fn pinned_still_unserved(&mut self, v: ApiVersion) -> bool {
        let started = Instant::now();
        match self.api.ping(v).await {
            Err(e) if e.is_not_found() => {
                self.record_version_not_served(started);
                true
            }
            res => {
                if res.is_ok() {
                    tracing::info!(version = %v, "slurmrestd serves the pinned API version again");
                    self.record_ok("version", started, 0);
                }
                self.pinned_unserved = None;
                false
            }
        }
    }

    fn record_version_not_served(&mut self, started: Instant) {
        let st = self.status.entry("version").or_default();
        st.up = false;
        st.last_duration_seconds = started.elapsed().as_secs_f64();
        *st.errors.entry("version_not_served").or_default() += 1;
    }

    /// Remembers that `endpoint` of version `v` refuses `?update_time=`,
    /// saying so once.
    fn refuse_update_time(&mut self, endpoint: &'static str, v: ApiVersion, e: &FetchError) {
        if self.update_time_refused.insert((endpoint, v)) {
            tracing::warn!(
                endpoint,
                version = %v,
                error = %e,
                "slurmrestd refuses ?update_time= on this endpoint (a Slurm 24.11 data parser cannot parse it); polling it unconditionally from now on"
            );
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

    /// Whether series of `endpoint` are served from kept data.
    fn has_data(&self, endpoint: &str) -> bool {
        match endpoint {
            "jobs" => self.jobs.is_some(),
            "nodes" => self.nodes.is_some(),
            "partitions" => self.partitions.is_some(),
            "shares" => self.shares.is_some(),
            "diag" => self.diag.is_some(),
            "associations" => self.associations.is_some(),
            "qos" => self.qos.is_some(),
            _ => false,
        }
    }

    fn record_err(&mut self, endpoint: &'static str, started: Instant, e: &FetchError) {
        let has_data = self.has_data(endpoint);
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
        if self.jobs.is_none() {
            self.jobs_sync = JobsSync::default();
        }
        expire!("nodes", nodes);
        if self.nodes.is_none() {
            self.nodes_sync = NodesSync::default();
        }
        expire!("partitions", partitions);
        expire!("shares", shares);
        expire!("diag", diag);
        expire!("associations", associations);
        expire!("qos", qos);
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
        if self.opts.limits {
            if let Some(a) = &self.associations {
                limits::collect_associations(
                    &a.value,
                    self.opts.limits_cluster.as_deref(),
                    &mut set,
                );
            }
            if let Some(q) = &self.qos {
                limits::collect_qos(&q.value, &mut set);
            }
            if let Some(s) = &self.shares {
                limits::collect_usage(&s.value, &mut set);
            }
        }
        if self.opts.jobs && self.opts.jobs_incremental() {
            self.collect_jobs_polling(&mut set);
        }
        if (self.opts.nodes || self.opts.partitions) && self.opts.nodes_update_time {
            self.collect_nodes_polling(&mut set);
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
                token_expiry: self.api.client().token_expiry(),
            },
            &mut set,
        );
        set
    }
}

impl Poller {
    fn collect_jobs_polling(&self, set: &mut MetricSet) {
        const POLLS: &str = "Polls of /jobs by kind: full (the whole job list), unchanged (slurmrestd said nothing changed since update_time), incremental (/jobs/state diffed, changed jobs re-fetched).";
        const REFETCHED: &str =
            "Jobs re-fetched one by one (/slurm/vX/job/{id}) by incremental polls.";
        const TABLE: &str =
            "Jobs in the exporter's job table (kept between polls for incremental polling).";
        set.family("slurm_exporter_jobs_polls_total", POLLS, Kind::Counter);
        for kind in ["full", "unchanged", "incremental"] {
            set.counter(
                "slurm_exporter_jobs_polls_total",
                POLLS,
                vec![("kind", kind.to_string())],
                self.jobs_polls.get(kind).copied().unwrap_or(0) as f64,
            );
        }
        set.family(
            "slurm_exporter_jobs_refetched_total",
            REFETCHED,
            Kind::Counter,
        );
        set.counter(
            "slurm_exporter_jobs_refetched_total",
            REFETCHED,
            vec![],
            self.jobs_refetched as f64,
        );
        if self.opts.jobs_update_time {
            self.collect_update_time_supported("jobs", set);
        }
        set.family("slurm_exporter_jobs_table_jobs", TABLE, Kind::Gauge);
        set.gauge(
            "slurm_exporter_jobs_table_jobs",
            TABLE,
            vec![],
            self.jobs_sync.table.as_ref().map_or(0, JobTable::len) as f64,
        );
    }
}

impl Poller {
    fn collect_nodes_polling(&self, set: &mut MetricSet) {
        const POLLS: &str = "Polls of /nodes by kind: full (the whole node list), unchanged (slurmrestd said no node changed since update_time).";
        set.family("slurm_exporter_nodes_polls_total", POLLS, Kind::Counter);
        for kind in ["full", "unchanged"] {
            set.counter(
                "slurm_exporter_nodes_polls_total",
                POLLS,
                vec![("kind", kind.to_string())],
                self.nodes_polls.get(kind).copied().unwrap_or(0) as f64,
            );
        }
        self.collect_update_time_supported("nodes", set);
    }

    fn collect_update_time_supported(&self, endpoint: &str, set: &mut MetricSet) {
        const HELP: &str = "0 once slurmrestd refused ?update_time= on this endpoint as a bad query for the API version in use (Slurm 24.11, v0.0.40/v0.0.41); it is then polled unconditionally. 1 otherwise.";
        set.family("slurm_exporter_update_time_supported", HELP, Kind::Gauge);
        let refused = self.version.is_some_and(|v| {
            self.update_time_refused
                .iter()
                .any(|(e, rv)| *e == endpoint && *rv == v)
        });
        set.gauge(
            "slurm_exporter_update_time_supported",
            HELP,
            vec![("endpoint", endpoint.to_string())],
            if refused { 0.0 } else { 1.0 },
        );
    }
}

/// Polls `/jobs` (see docs/performance.md, "Incremental polling"):
///
/// * incremental (v0.0.40+, a table exists, not the N-th poll): `/jobs/state`
///   is diffed with the table; jobs gone are removed, new and changed jobs
///   re-fetched with `/job/{id}`. Any error, an id it cannot map, or more
///   changes than the threshold fall through to a full poll;
/// * full: `/jobs` (`?update_time=` when a table exists); "no change" keeps
///   the table, anything else replaces it. On error the table is kept as it was.
async fn sync_jobs(
    api: &Api,
    v: ApiVersion,
    opts: &PollOptions,
    conditional_ok: bool,
    mut sync: JobsSync,
) -> (JobsSync, JobsOutcome) {
    let mut out = JobsOutcome::default();
    let incremental = opts.jobs_full_poll_every > 1
        && v.has_jobs_state()
        && !sync.state_missing
        && sync.table.is_some()
        && sync.polls_since_full + 1 < opts.jobs_full_poll_every;
    if incremental {
        if let Some(table) = sync.table.as_mut() {
            if incremental_poll(api, v, opts, table, &mut sync.state_missing, &mut out).await {
                sync.polls_since_full += 1;
                out.kind = Some("incremental");
                return (sync, out);
            }
        }
    }

    // Full poll; a refused `?update_time=` is repeated without it at once.
    let mut conditional = opts.jobs_update_time && conditional_ok && sync.table.is_some();
    loop {
        let started = Instant::now();
        let own_clock = unix_now() as i64;
        let since = if conditional { sync.since } else { None };
        let res = api.jobs::<JobTable>(v, since).await;
        match res {
            Ok(None) => {
                out.kind = Some("unchanged");
                out.steps.push(Step {
                    endpoint: "jobs",
                    started,
                    result: Ok(0),
                });
            }
            Ok(Some(f)) => {
                let (table, meta) = f.value;
                out.bytes += f.bytes;
                out.steps.push(Step {
                    endpoint: "jobs",
                    started,
                    result: Ok(f.bytes),
                });
                if since.is_some() && slurmrestd::is_no_change(&meta) {
                    out.kind = Some("unchanged");
                } else {
                    out.kind = Some("full");
                    sync.table = Some(table);
                    sync.since = Some(match meta.last_update {
                        Some(t) => t - 1,
                        None => own_clock - OWN_CLOCK_MARGIN_S,
                    });
                }
                sync.polls_since_full = 0;
            }
            Err(e) if since.is_some() && rejects_update_time(&e) => {
                out.update_time_rejected = Some(e);
                conditional = false;
                continue;
            }
            Err(e) => out.steps.push(Step {
                endpoint: "jobs",
                started,
                result: Err(e),
            }),
        }
        break;
    }
    if out.kind == Some("unchanged") {
        sync.polls_since_full = 0;
    }
    (sync, out)
}

/// Most `/job/{id}` requests in flight at once.
const REFETCH_CONCURRENCY: usize = 4;

/// Patches `table` from `/jobs/state` and `/job/{id}`; false (table
/// untouched) when a full poll is needed instead.
async fn incremental_poll(
    api: &Api,
    v: ApiVersion,
    opts: &PollOptions,
    table: &mut JobTable,
    state_missing: &mut bool,
    out: &mut JobsOutcome,
) -> bool {
    let started = Instant::now();
    let listed = match api.jobs_state(v).await {
        Ok(f) => {
            out.bytes += f.bytes;
            out.steps.push(Step {
                endpoint: "jobs_state",
                started,
                result: Ok(f.bytes),
            });
            f.value
        }
        Err(e) => {
            if e.is_not_found() {
                *state_missing = true;
            }
            out.steps.push(Step {
                endpoint: "jobs_state",
                started,
                result: Err(e),
            });
            return false;
        }
    };
    let diff = match table.diff(&listed) {
        Ok(d) => d,
        Err(UnknownId(id)) => {
            tracing::info!(
                id,
                "job id in /jobs/state not understood; polling /jobs in full"
            );
            return false;
        }
    };
    let limit = (table.len() as f64 * opts.jobs_refetch_max_percent / 100.0).floor() as usize;
    if diff.refetch.len() > limit {
        tracing::debug!(
            changed = diff.refetch.len(),
            limit,
            "many jobs changed; polling /jobs in full"
        );
        return false;
    }
    // Fetch everything first: the table changes only if every request worked.
    let started = Instant::now();
    let mut fetched: Vec<Job> = Vec::new();
    let mut bytes = 0;
    let mut set = tokio::task::JoinSet::new();
    let mut ids = diff.refetch.iter().copied();
    let mut failed = None;
    loop {
        while set.len() < REFETCH_CONCURRENCY {
            let Some(id) = ids.next() else { break };
            let api = api.clone();
            set.spawn(async move { api.job(v, id).await });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        match done {
            Ok(Ok(f)) => {
                bytes += f.bytes;
                fetched.extend(f.value);
            }
            Ok(Err(e)) => {
                failed = Some(e);
                break;
            }
            Err(join) => {
                failed = Some(FetchError::Parse {
                    path: paths::job(v, None),
                    source: slurmrestd::ParseError::Slurm(format!("request task failed: {join}")),
                });
                break;
            }
        }
    }
    set.abort_all();
    if !diff.refetch.is_empty() || failed.is_some() {
        out.steps.push(Step {
            endpoint: "job",
            started,
            result: match failed {
                Some(e) => Err(e),
                None => Ok(bytes),
            },
        });
    }
    if out.steps.last().is_some_and(|s| s.result.is_err()) {
        return false;
    }
    out.bytes += bytes;
    for id in diff.removed.iter().chain(&diff.refetch) {
        table.remove(*id);
    }
    for job in &fetched {
        table.upsert(job);
    }
    out.refetched += diff.refetch.len() as u64;
    // Every listed job must now have its record (a new array task is
    // re-fetched by the id it is listed under, which in some releases is its
    // array's id); if not, the full poll that follows replaces the table.
    if !table.places_all(&listed) {
        tracing::info!(
            "jobs listed by /jobs/state still missing after re-fetch; polling /jobs in full"
        );
        return false;
    }
    true
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
