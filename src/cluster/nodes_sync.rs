//! `/nodes` with `?update_time=T`: a conditional GET. slurmctld answers the
//! whole node list when any node changed since T and nothing otherwise.
//! "Nothing" keeps the previous list. It reads as:
//! * HTTP 304 with an empty body (Slurm 22.05 / v0.0.38, checked against a
//!   live slurmrestd);
//! * an error whose Slurm error number is `SLURM_NO_CHANGE_IN_DATA` (1900):
//!   later releases pass slurm_load_node's errno to the error response
//!   ("Failure to query nodes");
//! * an empty list with a "No ... changes since" warning, as `/jobs` does.
//!
//! slurmrestd passes T to both slurm_load_node and slurm_load_partitions, so
//! when nodes changed but partitions did not it fails the request (22.05:
//! HTTP 500, `errno -1`, "Unspecified error", observed live; later releases
//! have the same code path). Hence:
//! * a conditional request that slurmrestd fails (an error status, or a
//!   body that is not a node list) is repeated unconditionally in the same
//!   poll, so the result is exact either way; one that times out or cannot
//!   connect is not (it would only double the wait) and is the poll's error;
//! * each such failure doubles the number of polls that skip the conditional
//!   request (up to [`MAX_BACKOFF`]); an "unchanged" answer resets it. A busy
//!   cluster, where nodes change every poll, pays the extra request once in
//!   [`MAX_BACKOFF`] polls; a quiet one gets 304s;
//! * one poll in `nodes_full_poll_every` is unconditional anyway, bounding
//!   the age of anything slurmctld might refresh without marking the node
//!   list changed (on 22.05 a node ping's new CPU load does mark it);
//! * a conditional request rejected as a bad query ([`rejects_update_time`]:
//!   Slurm 24.11's data parsers v0.0.40/v0.0.41 fail to parse an epoch
//!   `update_time`) is repeated unconditionally, and the poller stops sending
//!   `?update_time=` to that API version (see `Poller`).

use std::time::Instant;

use super::conditional::{rejects_update_time, unix_now, OWN_CLOCK_MARGIN_S};
use super::options::PollOptions;
use crate::model::Node;
use crate::slurmrestd::client::FetchError;
use crate::slurmrestd::{self, Api, ApiVersion};

/// Slurm's `SLURM_NO_CHANGE_IN_DATA` (slurm_errno.h).
pub const SLURM_NO_CHANGE_IN_DATA: i64 = 1900;

/// Most polls skipped between conditional requests after failures.
pub const MAX_BACKOFF: u32 = 16;

/// Conditional `/nodes` state kept between polls (reset with the version).
#[derive(Debug, Default)]
pub struct NodesSync {
    /// `update_time` for the next conditional request: slurmctld's
    /// `last_update` of the last list minus 1 s (v0.0.39+), or our clock at
    /// its request minus [`OWN_CLOCK_MARGIN_S`] (v0.0.38 sends no time).
    since: Option<i64>,
    /// Conditional polls since the last unconditional one.
    polls_since_full: u32,
    /// Polls to skip the conditional request after failures, doubling.
    backoff: u32,
    /// Polls left to skip.
    skip: u32,
}

/// What a `/nodes` poll yielded.
#[derive(Debug)]
pub enum NodesPoll {
    /// A whole node list (`full` in `slurm_exporter_nodes_polls_total`).
    Fresh(Vec<Node>),
    /// slurmctld said no node changed: keep the previous list.
    Unchanged,
}

impl NodesPoll {
    pub fn kind(&self) -> &'static str {
        match self {
            NodesPoll::Fresh(_) => "full",
            NodesPoll::Unchanged => "unchanged",
        }
    }
}

pub struct NodesOutcome {
    pub started: Instant,
    /// The poll and the bytes it read.
    pub result: Result<(NodesPoll, u64), FetchError>,
    /// The conditional request was refused as a bad query
    /// ([`rejects_update_time`]): do not send `?update_time=` again.
    pub update_time_rejected: Option<FetchError>,
}

/// Polls `/nodes`, conditionally when `have_nodes` (a previous list is
/// kept to fall back on), `conditional_ok` (this API version has not
/// refused `?update_time=`) and the options and state allow it.
pub async fn sync_nodes(
    api: &Api,
    v: ApiVersion,
    opts: &PollOptions,
    have_nodes: bool,
    conditional_ok: bool,
    mut sync: NodesSync,
) -> (NodesSync, NodesOutcome) {
    let started = Instant::now();
    let wanted = opts.nodes_update_time
        && conditional_ok
        && have_nodes
        && sync.polls_since_full + 1 < opts.nodes_full_poll_every;
    let since = sync.since.filter(|_| wanted && sync.skip == 0);
    if wanted && sync.skip > 0 {
        sync.skip -= 1;
    }
    if let Some(t) = since {
        let own_clock = unix_now();
        let res = api.nodes_since(v, t).await;
        match res {
            Ok(None) => {
                sync.polls_since_full += 1;
                sync.backoff = 0;
                return (sync, unchanged(started));
            }
            Ok(Some(f)) if slurmrestd::is_no_change(&f.value.1) => {
                sync.polls_since_full += 1;
                sync.backoff = 0;
                return (sync, unchanged(started));
            }
            Ok(Some(f)) => {
                let (nodes, meta) = f.value;
                sync.since = Some(next_since(meta.last_update, own_clock));
                sync.polls_since_full = 0;
                let outcome = NodesOutcome {
                    started,
                    result: Ok((NodesPoll::Fresh(nodes), f.bytes)),
                    update_time_rejected: None,
                };
                return (sync, outcome);
            }
            Err(e) if rejects_update_time(&e) => {
                // Never going to work with this version: no backoff, the
                // poller stops asking.
                let outcome = unconditional(api, v, &mut sync).await;
                let outcome = NodesOutcome {
                    started,
                    update_time_rejected: Some(e),
                    ..outcome
                };
                return (sync, outcome);
            }
            Err(e) if e.slurm_errors().contains(&SLURM_NO_CHANGE_IN_DATA) => {
                sync.polls_since_full += 1;
                sync.backoff = 0;
                return (sync, unchanged(started));
            }
            Err(e) if !answered(&e) => {
                // Down, stalled or cut off: a second request would only
                // double the wait. The error is this poll's.
                return (
                    sync,
                    NodesOutcome {
                        started,
                        result: Err(e),
                        update_time_rejected: None,
                    },
                );
            }
            Err(e) => {
                // Usually "nodes changed, partitions did not" (see above).
                tracing::debug!(version = %v, error = %e, "conditional /nodes failed; polling unconditionally");
                sync.backoff = (sync.backoff * 2).clamp(1, MAX_BACKOFF);
                sync.skip = sync.backoff;
                let outcome = unconditional(api, v, &mut sync).await;
                return (sync, NodesOutcome { started, ..outcome });
            }
        }
    }
    let outcome = unconditional(api, v, &mut sync).await;
    (sync, outcome)
}

/// Whether slurmrestd answered (with an error status or a body that is
/// not a node list), as opposed to not answering in time or at all.
fn answered(e: &FetchError) -> bool {
    matches!(
        e,
        FetchError::Status { .. } | FetchError::Parse { .. } | FetchError::NotJson { .. }
    )
}

fn unchanged(started: Instant) -> NodesOutcome {
    NodesOutcome {
        started,
        result: Ok((NodesPoll::Unchanged, 0)),
        update_time_rejected: None,
    }
}

fn next_since(last_update: Option<i64>, own_clock: i64) -> i64 {
    match last_update {
        Some(t) => t - 1,
        None => own_clock - OWN_CLOCK_MARGIN_S,
    }
}

async fn unconditional(api: &Api, v: ApiVersion, sync: &mut NodesSync) -> NodesOutcome {
    let started = Instant::now();
    let own_clock = unix_now();
    let res = api.nodes(v).await;
    let result = res.map(|f| {
        let (nodes, meta) = f.value;
        sync.since = Some(next_since(meta.last_update, own_clock));
        sync.polls_since_full = 0;
        (NodesPoll::Fresh(nodes), f.bytes)
    });
    NodesOutcome {
        started,
        result,
        update_time_rejected: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    fn status(code: u16, body: &[u8]) -> FetchError {
        FetchError::Status {
            path: "/slurm/v0.0.41/jobs/?update_time=1".into(),
            status: StatusCode::from_u16(code).unwrap(),
            snippet: String::new(),
            slurm_errors: crate::slurmrestd::slurm_error_numbers(body),
        }
    }

    #[test]
    fn refused_queries_are_told_from_other_failures() {
        // v0.0.41 refusing an epoch time: the 9202 + 9000 answers recorded on Slurm 24.11.5.
        let recorded = include_bytes!(
            "../../tests/fixtures/live/24.11.5/slurmrestd/v0.0.41/_err_slurm_jobs_update_time.json"
        );
        let nodes = include_bytes!(
            "../../tests/fixtures/live/24.11.5/slurmrestd/v0.0.41/_err_slurm_nodes_update_time.json"
        );
        assert!(rejects_update_time(&status(500, nodes)));
        assert!(rejects_update_time(&status(422, recorded)));
        assert!(rejects_update_time(&status(500, recorded)));
        assert!(rejects_update_time(&status(422, b"")));
        // 22.05's "partitions unchanged" 500 and "no change" 1900 are not refusals.
        let v38 = include_bytes!(
            "../../tests/fixtures/slurmrestd/v0.0.38/_err_nodes_update_time_partitions_unchanged.json"
        );
        assert!(!rejects_update_time(&status(500, v38)));
        let no_change = br#"{"errors":[{"error_number":1900}]}"#;
        assert!(!rejects_update_time(&status(500, no_change)));
        assert!(!rejects_update_time(&status(404, b"")));
        assert!(!rejects_update_time(&FetchError::Timeout {
            path: "/".into(),
            timeout: std::time::Duration::from_secs(1),
        }));
    }
}
