//! One poll cycle: detect the API version, fetch every enabled endpoint
//! concurrently, keep the last good data of each, and build the metric set.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::collectors::exporter::{
    self, EndpointStatus, ExporterStatus, JobsPolling, NodesPolling,
};
use super::collectors::queue::JobAggregates;
use super::collectors::{fairshare, limits, nodes, partitions, scheduler, usage};
use super::endpoint::{Endpoint, Slot};
use super::jobs_sync::{sync_jobs, JobsSync};
use super::jobtable::JobTable;
use super::nodes_sync::{sync_nodes, NodesPoll, NodesSync};
pub use super::options::PollOptions;
use super::usage::tracker::{CheckError, UsageTracker};
use crate::exposition::MetricSet;
use crate::model::{Association, Diag, Node, Partition, Qos, Share};
use crate::slurmrestd::client::{Client, FetchError, Fetched};
use crate::slurmrestd::{Api, ApiVersion};

pub struct Poller {
    api: Api,
    opts: PollOptions,
    version: Option<ApiVersion>,
    jobs: Slot<JobAggregates>,
    nodes: Slot<Vec<Node>>,
    partitions: Slot<Vec<Partition>>,
    shares: Slot<Vec<Share>>,
    diag: Slot<Diag>,
    associations: Slot<Vec<Association>>,
    qos: Slot<Vec<Qos>>,
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
    update_time_refused: BTreeSet<(Endpoint, ApiVersion)>,
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
            jobs: Slot::default(),
            nodes: Slot::default(),
            partitions: Slot::default(),
            shares: Slot::default(),
            diag: Slot::default(),
            associations: Slot::default(),
            qos: Slot::default(),
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
                        self.record_ok(Endpoint::Version, started, 0);
                        Some(v)
                    }
                    Err(e) => {
                        self.record_err(Endpoint::Version, started, &e);
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
                    let st = self.status.entry(ep.as_str()).or_default();
                    st.up = false;
                    st.stale = has_data;
                }
            } else {
                self.fetch_all(v).await;
            }
        } else {
            // Without a version nothing can be fetched; mark every endpoint down.
            for ep in self.enabled_endpoints(None) {
                let st = self.status.entry(ep.as_str()).or_default();
                st.up = false;
            }
        }
        self.expire_old_data();
        self.build()
    }

    fn enabled_endpoints(&self, v: Option<ApiVersion>) -> Vec<Endpoint> {
        let mut eps = Vec::new();
        if self.opts.jobs {
            eps.push(Endpoint::Jobs);
        }
        if self.opts.nodes || self.opts.partitions {
            eps.push(Endpoint::Nodes);
        }
        if self.opts.partitions {
            eps.push(Endpoint::Partitions);
        }
        if self.opts.fairshare && v.is_none_or(|v| v.has_shares()) {
            eps.push(Endpoint::Shares);
        }
        if self.opts.scheduler {
            eps.push(Endpoint::Diag);
        }
        if self.opts.limits {
            eps.push(Endpoint::Associations);
            eps.push(Endpoint::Qos);
        }
        eps
    }

    async fn fetch_all(&mut self, v: ApiVersion) {
        let api = &self.api;
        let enabled = self.enabled_endpoints(Some(v));
        let on = |ep: Endpoint| enabled.contains(&ep);
        // Usage is credited up to the moment the request is sent: a job
        // listed as running was certainly running then.
        let now_unix = self
            .usage_clock
            .as_ref()
            .map_or_else(super::conditional::unix_now, |c| c());
        let usage_since = self.usage.as_ref().map(|u| u.rows_since());
        let jobs_opts = self.opts.clone();
        let jobs_sync = std::mem::take(&mut self.jobs_sync);
        let nodes_sync = std::mem::take(&mut self.nodes_sync);
        let have_nodes = self.nodes.is_some();
        let jobs_conditional = !self.update_time_refused.contains(&(Endpoint::Jobs, v));
        let nodes_conditional = !self.update_time_refused.contains(&(Endpoint::Nodes, v));
        // Limits change only with sacctmgr: fetched one poll in N, and every
        // poll while a fetch failed or no data is kept.
        let limits_due = |ep: Endpoint, has: bool| {
            on(ep)
                && (!has
                    || self.limits_polls_since + 1 >= self.opts.limits_poll_every
                    || !self.status.get(ep.as_str()).is_some_and(|s| s.up))
        };
        let assoc_due = limits_due(Endpoint::Associations, self.associations.is_some());
        let qos_due = limits_due(Endpoint::Qos, self.qos.is_some());
        let (jobs, nodes, parts, shares, diag, assocs, qos) = tokio::join!(
            maybe(
                on(Endpoint::Jobs),
                sync_jobs(api, v, &jobs_opts, jobs_conditional, jobs_sync)
            ),
            maybe(
                on(Endpoint::Nodes),
                sync_nodes(
                    api,
                    v,
                    &jobs_opts,
                    have_nodes,
                    nodes_conditional,
                    nodes_sync
                )
            ),
            timed(maybe(on(Endpoint::Partitions), api.partitions(v))),
            timed(maybe(on(Endpoint::Shares), api.shares(v))),
            timed(maybe(on(Endpoint::Diag), api.diag(v))),
            timed(maybe(assoc_due, api.associations(v))),
            timed(maybe(qos_due, api.qos(v))),
        );
        let mut not_found = false;
        let now = Instant::now();
        macro_rules! keep {
            ($ep:expr, $res:expr, $slot:ident) => {
                let (started, res) = $res;
                match res {
                    None => {}
                    Some(Ok(Fetched { value, bytes })) => {
                        self.record_ok($ep, started, bytes);
                        self.$slot.keep(value, now);
                    }
                    Some(Err(e)) => {
                        not_found |= e.is_not_found();
                        self.record_err($ep, started, &e);
                    }
                }
            };
        }
        let mut jobs_fresh = None;
        if let Some((sync, mut outcome)) = jobs {
            self.jobs_sync = sync;
            if let Some(e) = outcome.update_time_rejected.take() {
                self.refuse_update_time(Endpoint::Jobs, v, &e);
            }
            let poll_started = outcome.steps.first().map(|s| s.started);
            for step in outcome.steps {
                match step.result {
                    Ok(bytes) if step.endpoint != Endpoint::Jobs => {
                        self.record_ok(step.endpoint, step.started, bytes)
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Only a 404 of /jobs itself means the version is gone.
                        not_found |= step.endpoint == Endpoint::Jobs && e.is_not_found();
                        self.record_err(step.endpoint, step.started, &e);
                    }
                }
            }
            let per_user = self.opts.jobs_per_user;
            // The previous aggregates go before the new ones are built, so
            // the two never coexist (15 MiB each at 100k jobs); they stay
            // (served as stale data) only when this poll yields no table.
            if outcome.kind.is_some() && self.jobs_sync.table.is_some() {
                self.jobs.clear();
            }
            let built = outcome.kind.zip(
                self.jobs_sync
                    .table
                    .as_ref()
                    .map(|t| JobAggregates::from_table(t, per_user, usage_since)),
            );
            if let Some((kind, mut agg)) = built {
                *self.jobs_polls.entry(kind).or_default() += 1;
                self.jobs_refetched += outcome.refetched;
                if let Some(started) = poll_started {
                    self.record_ok(Endpoint::Jobs, started, outcome.bytes);
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
            self.jobs.keep(value, now);
        }
        if let Some((sync, mut outcome)) = nodes {
            self.nodes_sync = sync;
            if let Some(e) = outcome.update_time_rejected.take() {
                self.refuse_update_time(Endpoint::Nodes, v, &e);
            }
            match outcome.result {
                Ok((poll, bytes)) => {
                    self.record_ok(Endpoint::Nodes, outcome.started, bytes);
                    *self.nodes_polls.entry(poll.kind()).or_default() += 1;
                    match poll {
                        NodesPoll::Fresh(value) => self.nodes.keep(value, now),
                        NodesPoll::Unchanged => self.nodes.touch(now),
                    }
                }
                Err(e) => {
                    not_found |= e.is_not_found();
                    self.record_err(Endpoint::Nodes, outcome.started, &e);
                }
            }
        }
        keep!(Endpoint::Partitions, parts, partitions);
        keep!(Endpoint::Shares, shares, shares);
        keep!(Endpoint::Diag, diag, diag);
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
            ($ep:expr, $res:expr, $slot:ident) => {
                let (started, res) = $res;
                match res {
                    // Not due: current as long as the last fetch succeeded.
                    None => {
                        if self.status.get($ep.as_str()).is_some_and(|s| s.up) {
                            self.$slot.touch(now);
                        }
                    }
                    Some(Ok(Fetched { value, bytes })) => {
                        self.record_ok($ep, started, bytes);
                        self.$slot.keep(value, now);
                    }
                    Some(Err(e)) => self.record_err($ep, started, &e),
                }
            };
        }
        keep_limit!(Endpoint::Associations, assocs, associations);
        keep_limit!(Endpoint::Qos, qos, qos);
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
                    self.record_ok(Endpoint::Version, started, 0);
                }
                self.pinned_unserved = None;
                false
            }
        }
    }

    fn record_version_not_served(&mut self, started: Instant) {
        let st = self.status.entry(Endpoint::Version.as_str()).or_default();
        st.up = false;
        st.last_duration_seconds = started.elapsed().as_secs_f64();
        *st.errors.entry("version_not_served").or_default() += 1;
    }

    /// Remembers that `endpoint` of version `v` refuses `?update_time=`,
    /// saying so once.
    fn refuse_update_time(&mut self, endpoint: Endpoint, v: ApiVersion, e: &FetchError) {
        if self.update_time_refused.insert((endpoint, v)) {
            tracing::warn!(
                endpoint = endpoint.as_str(),
                version = %v,
                error = %e,
                "slurmrestd refuses ?update_time= on this endpoint (a Slurm 24.11 data parser cannot parse it); polling it unconditionally from now on"
            );
        }
    }

    fn record_ok(&mut self, endpoint: Endpoint, started: Instant, bytes: u64) {
        let st = self.status.entry(endpoint.as_str()).or_default();
        st.up = true;
        st.stale = false;
        st.last_success_unix = Some(unix_now());
        st.last_duration_seconds = started.elapsed().as_secs_f64();
        st.last_response_bytes = bytes;
    }

    /// Whether series of `endpoint` are served from kept data.
    fn has_data(&self, endpoint: Endpoint) -> bool {
        match endpoint {
            Endpoint::Jobs => self.jobs.is_some(),
            Endpoint::Nodes => self.nodes.is_some(),
            Endpoint::Partitions => self.partitions.is_some(),
            Endpoint::Shares => self.shares.is_some(),
            Endpoint::Diag => self.diag.is_some(),
            Endpoint::Associations => self.associations.is_some(),
            Endpoint::Qos => self.qos.is_some(),
            Endpoint::Version | Endpoint::JobsState | Endpoint::Job => false,
        }
    }

    fn record_err(&mut self, endpoint: Endpoint, started: Instant, e: &FetchError) {
        let has_data = self.has_data(endpoint);
        let st = self.status.entry(endpoint.as_str()).or_default();
        st.up = false;
        st.stale = has_data;
        st.last_duration_seconds = started.elapsed().as_secs_f64();
        *st.errors.entry(e.kind()).or_default() += 1;
        tracing::warn!(endpoint = endpoint.as_str(), kind = e.kind(), error = %e, serving_stale = has_data, "slurmrestd poll failed");
    }

    fn expire_old_data(&mut self) {
        let max = self.opts.max_data_age;
        let mut expired = Vec::new();
        macro_rules! expire {
            ($ep:expr, $slot:ident) => {
                if self.$slot.expire(max) {
                    expired.push($ep);
                }
            };
        }
        expire!(Endpoint::Jobs, jobs);
        if !self.jobs.is_some() {
            self.jobs_sync = JobsSync::default();
        }
        expire!(Endpoint::Nodes, nodes);
        if !self.nodes.is_some() {
            self.nodes_sync = NodesSync::default();
        }
        expire!(Endpoint::Partitions, partitions);
        expire!(Endpoint::Shares, shares);
        expire!(Endpoint::Diag, diag);
        expire!(Endpoint::Associations, associations);
        expire!(Endpoint::Qos, qos);
        for ep in expired {
            tracing::warn!(endpoint = ep.as_str(), max_age = ?max, "dropping stale data");
            if let Some(st) = self.status.get_mut(ep.as_str()) {
                st.stale = false;
            }
        }
    }

    fn build(&self) -> MetricSet {
        let mut set = MetricSet::new();
        let jobs = self.jobs.get();
        if self.opts.jobs {
            if let Some(j) = jobs {
                j.collect(&mut set);
            }
        }
        if let Some(u) = &self.usage {
            usage::collect(&u.accountant, u.budgets.as_ref(), &u.status, &mut set);
        }
        if self.opts.nodes {
            if let Some(n) = self.nodes.get() {
                nodes::collect(n, &mut set);
            }
        }
        if self.opts.partitions {
            if let Some(p) = self.partitions.get() {
                let empty = Vec::new();
                let n = self.nodes.get().unwrap_or(&empty);
                partitions::collect(p, n, jobs, &mut set);
            }
        }
        if self.opts.fairshare {
            if let Some(s) = self.shares.get() {
                fairshare::collect(s, &mut set);
            }
        }
        if self.opts.scheduler {
            if let Some(d) = self.diag.get() {
                scheduler::collect(d, &mut set);
            }
        }
        if self.opts.limits {
            if let Some(a) = self.associations.get() {
                limits::collect_associations(a, self.opts.limits_cluster.as_deref(), &mut set);
            }
            if let Some(q) = self.qos.get() {
                limits::collect_qos(q, &mut set);
            }
            if let Some(s) = self.shares.get() {
                limits::collect_usage(s, &mut set);
            }
        }
        let jobs_polling = (self.opts.jobs && self.opts.jobs_incremental()).then(|| JobsPolling {
            polls: &self.jobs_polls,
            refetched: self.jobs_refetched,
            table_jobs: self.jobs_sync.table.as_ref().map_or(0, JobTable::len),
            update_time_supported: self
                .opts
                .jobs_update_time
                .then(|| self.update_time_supported(Endpoint::Jobs)),
        });
        let nodes_polling = ((self.opts.nodes || self.opts.partitions)
            && self.opts.nodes_update_time)
            .then(|| NodesPolling {
                polls: &self.nodes_polls,
                update_time_supported: self.update_time_supported(Endpoint::Nodes),
            });
        exporter::collect_polling(jobs_polling.as_ref(), nodes_polling.as_ref(), &mut set);
        let enabled = self.enabled_endpoints(self.version);
        let slurmrestd_up = self.version.is_some()
            && enabled
                .iter()
                .all(|e| self.status.get(e.as_str()).is_some_and(|s| s.up));
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
    /// False once slurmrestd refused `?update_time=` on `endpoint` for the
    /// API version in use.
    fn update_time_supported(&self, endpoint: Endpoint) -> bool {
        !self
            .version
            .is_some_and(|v| self.update_time_refused.contains(&(endpoint, v)))
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
