//! Incremental `/jobs` polling (see docs/performance.md, "Incremental
//! polling"): the job table kept between polls, full polls with
//! `?update_time=`, and `/jobs/state` diffs with `/job/{id}` re-fetches.

use std::time::Instant;

use super::conditional::{rejects_update_time, unix_now, OWN_CLOCK_MARGIN_S};
use super::endpoint::Endpoint;
use super::jobtable::{JobTable, UnknownId};
use super::options::PollOptions;
use crate::model::Job;
use crate::slurmrestd::api::paths;
use crate::slurmrestd::client::FetchError;
use crate::slurmrestd::{self, Api, ApiVersion};

/// State of incremental `/jobs` polling, kept between polls.
#[derive(Debug, Default)]
pub struct JobsSync {
    /// Jobs as of the last full poll, patched by incremental polls since.
    pub table: Option<JobTable>,
    /// `update_time` to send on the next full poll: slurmctld's `last_update`
    /// of the last full response minus 1 s (v0.0.39+), or our clock at its
    /// request minus [`OWN_CLOCK_MARGIN_S`] (v0.0.38 gives no time).
    since: Option<i64>,
    /// Incremental polls since the last full one.
    polls_since_full: u32,
    /// `/jobs/state` answered 404: not offered here, poll in full.
    state_missing: bool,
}

/// One request of a `/jobs` poll, for the endpoint status and error counters.
pub struct Step {
    pub endpoint: Endpoint,
    pub started: Instant,
    pub result: Result<u64, FetchError>,
}

/// What a `/jobs` poll did.
#[derive(Default)]
pub struct JobsOutcome {
    pub steps: Vec<Step>,
    /// `full`, `unchanged` or `incremental` when the table is current.
    pub kind: Option<&'static str>,
    pub refetched: u64,
    pub bytes: u64,
    /// The conditional full poll was refused as a bad query: this version
    /// does not take `?update_time=` on `/jobs`.
    pub update_time_rejected: Option<FetchError>,
}

/// Polls `/jobs` (see docs/performance.md, "Incremental polling"):
///
/// * incremental (v0.0.40+, a table exists, not the N-th poll): `/jobs/state`
///   is diffed with the table; jobs gone are removed, new and changed jobs
///   re-fetched with `/job/{id}`. Any error, an id it cannot map, or more
///   changes than the threshold fall through to a full poll;
/// * full: `/jobs` (`?update_time=` when a table exists); "no change" keeps
///   the table, anything else replaces it. On error the table is kept as it was.
pub async fn sync_jobs(
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
        let own_clock = unix_now();
        let since = if conditional { sync.since } else { None };
        let res = api.jobs::<JobTable>(v, since).await;
        match res {
            Ok(None) => {
                out.kind = Some("unchanged");
                out.steps.push(Step {
                    endpoint: Endpoint::Jobs,
                    started,
                    result: Ok(0),
                });
            }
            Ok(Some(f)) => {
                let (table, meta) = f.value;
                out.bytes += f.bytes;
                out.steps.push(Step {
                    endpoint: Endpoint::Jobs,
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
                endpoint: Endpoint::Jobs,
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
                endpoint: Endpoint::JobsState,
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
                endpoint: Endpoint::JobsState,
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
            endpoint: Endpoint::Job,
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
