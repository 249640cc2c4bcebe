//! slurmrestd data source: transport, API version detection, and one adapter
//! per API version that parses responses into the normalized [`crate::model`].
//!
//! # Layout
//!
//! * [`api`]: [`Api`], one method per endpoint (`ping`, `jobs`, `jobs_state`,
//!   `job`, `cancel_job`, `nodes`, `partitions`, `shares`, `diag`,
//!   `associations`, `qos`, `accounts`, `slurmdb_jobs` ([`slurmdb`]), the associations
//!   POST); the only place paths and queries are built. Callers pick the
//!   [`ApiVersion`]; `Api::detect_version` finds the newest served.
//! * [`client`]: the HTTP client (`transport`: URL, TLS, bounded body;
//!   `auth`: secrets and the token; `error`: [`client::FetchError`]).
//! * `parse_*` below: per-version dispatch to the adapters [`v0038`] (Slurm
//!   22.05) and [`v0040`] (v0.0.40–v0.0.45, whose job record v0.0.38 shares),
//!   with [`limits`] (associations, QOS), `scan`/`nonfinite`/`body` (streaming
//!   JSON), [`number`] (Slurm's number objects) and `normalize` (to the model).

pub mod api;
mod body;
pub use body::error_numbers as slurm_error_numbers;
pub use body::ListMeta;
pub mod client;
mod diag;
pub mod error;
pub mod limits;
mod nonfinite;
mod normalize;
pub mod number;
mod scan;
pub mod slurmdb;
pub mod v0038;
pub mod v0040;

use std::io::Read;

pub use api::Api;
pub use error::ParseError;

use crate::model::{Association, Diag, Job, Node, Partition, Qos, Share};

/// slurmrestd API (data parser) versions this exporter understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiVersion {
    V0038,
    V0040,
    V0041,
    V0042,
    V0043,
    V0044,
    V0045,
}

impl ApiVersion {
    /// Probe order for detection: newest first.
    pub const NEWEST_FIRST: [ApiVersion; 7] = [
        ApiVersion::V0045,
        ApiVersion::V0044,
        ApiVersion::V0043,
        ApiVersion::V0042,
        ApiVersion::V0041,
        ApiVersion::V0040,
        ApiVersion::V0038,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V0038 => "v0.0.38",
            ApiVersion::V0040 => "v0.0.40",
            ApiVersion::V0041 => "v0.0.41",
            ApiVersion::V0042 => "v0.0.42",
            ApiVersion::V0043 => "v0.0.43",
            ApiVersion::V0044 => "v0.0.44",
            ApiVersion::V0045 => "v0.0.45",
        }
    }

    pub fn parse(s: &str) -> Option<ApiVersion> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        ApiVersion::NEWEST_FIRST
            .into_iter()
            .find(|v| &v.as_str()[1..] == s)
    }

    /// `/slurm/v0.0.38` style prefix.
    pub fn slurm_path(self, endpoint: &str) -> String {
        format!("/slurm/{}/{}", self.as_str(), endpoint)
    }

    /// `/slurmdb/v0.0.38` style prefix.
    pub fn slurmdb_path(self, endpoint: &str) -> String {
        format!("/slurmdb/{}/{}", self.as_str(), endpoint)
    }

    /// Whether `/slurm/vX/jobs/state/` exists (v0.0.40 and later).
    pub fn has_jobs_state(self) -> bool {
        self != ApiVersion::V0038
    }

    /// Whether `/slurm/vX/shares` exists (v0.0.39 and later).
    pub fn has_shares(self) -> bool {
        self != ApiVersion::V0038
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Receives jobs one at a time while `/jobs` is stream-parsed, so the job
/// list is never held in memory.
pub trait JobSink {
    fn job(&mut self, job: Job);
}

impl JobSink for Vec<Job> {
    fn job(&mut self, job: Job) {
        self.push(job);
    }
}

/// Stream-parses a `/slurm/vX/jobs` body into `sink`. On error, the jobs
/// delivered before it stay delivered: callers should drop that scrape.
pub fn parse_jobs(
    version: ApiVersion,
    body: &mut dyn Read,
    sink: &mut dyn JobSink,
) -> Result<(), ParseError> {
    parse_jobs_meta(version, body, sink).map(drop)
}

/// [`parse_jobs`], also returning `last_update` and `warnings[]`: an empty
/// list with a "No job changes since update_time" warning is v0.0.39+'s
/// answer to an unchanged `?update_time=` (v0.0.38 answers HTTP 304).
pub fn parse_jobs_meta(
    version: ApiVersion,
    body: &mut dyn Read,
    sink: &mut dyn JobSink,
) -> Result<ListMeta, ParseError> {
    match version {
        ApiVersion::V0038 => v0038::parse_jobs(body, sink),
        v => v0040::parse_jobs(v, body, sink),
    }
}

/// Base state and flags of Slurm state words, as the `/jobs` adapters
/// normalize them (`["COMPLETED","COMPLETING"]` → completed + `COMPLETING`).
pub fn job_state_words(words: &[String]) -> (Option<crate::model::JobState>, Vec<String>) {
    normalize::job_state(words)
}

/// Whether a list response says "nothing changed since update_time".
pub fn is_no_change(meta: &ListMeta) -> bool {
    meta.count == 0
        && meta
            .warnings
            .iter()
            .any(|w| w.to_ascii_lowercase().contains("no ") && w.contains("changes since"))
}

/// `/slurm/vX/jobs/state/` (v0.0.40+): every job slurmctld holds as
/// `(id as listed: "12" or "<job_id>_<task>", state words)`.
pub fn parse_jobs_state(
    version: ApiVersion,
    body: &mut dyn Read,
) -> Result<Vec<(String, Vec<String>)>, ParseError> {
    match version {
        ApiVersion::V0038 => Err(ParseError::Unsupported {
            what: "jobs/state",
            version,
        }),
        _ => v0040::parse_jobs_state(body),
    }
}

pub fn parse_nodes(version: ApiVersion, body: &mut dyn Read) -> Result<Vec<Node>, ParseError> {
    parse_nodes_meta(version, body).map(|(nodes, _)| nodes)
}

/// [`parse_nodes`], also returning `last_update` and `warnings[]` (for
/// `?update_time=` polls). Nodes are normalized as they are read; one
/// reader takes every version's shape (v0.0.38's `state_flags` and
/// `free_memory` included).
pub fn parse_nodes_meta(
    version: ApiVersion,
    body: &mut dyn Read,
) -> Result<(Vec<Node>, ListMeta), ParseError> {
    v0040::parse_nodes(version, body)
}

pub fn parse_partitions(
    version: ApiVersion,
    body: &mut dyn Read,
) -> Result<Vec<Partition>, ParseError> {
    match version {
        ApiVersion::V0038 => v0038::parse_partitions(body),
        v => v0040::parse_partitions(v, body),
    }
}

pub fn parse_shares(version: ApiVersion, body: &mut dyn Read) -> Result<Vec<Share>, ParseError> {
    match version {
        ApiVersion::V0038 => Err(ParseError::Unsupported {
            what: "shares",
            version,
        }),
        v => v0040::parse_shares(v, body),
    }
}

pub fn parse_diag(version: ApiVersion, body: &mut dyn Read) -> Result<Diag, ParseError> {
    match version {
        ApiVersion::V0038 => v0038::parse_diag(body),
        v => v0040::parse_diag(v, body),
    }
}

/// `/slurmdb/vX/associations/`: every association with the limits set on it.
pub fn parse_associations(
    version: ApiVersion,
    body: &mut dyn Read,
) -> Result<Vec<Association>, ParseError> {
    limits::parse_associations(version, body)
}

/// `/slurmdb/vX/qos/`: every QOS with the limits set on it.
pub fn parse_qos(version: ApiVersion, body: &mut dyn Read) -> Result<Vec<Qos>, ParseError> {
    limits::parse_qos(version, body)
}

/// Account names from `/slurmdb/vX/accounts` (same shape in every version).
pub fn parse_accounts(
    body: &mut dyn Read,
) -> Result<std::collections::BTreeSet<String>, ParseError> {
    #[derive(serde::Deserialize)]
    struct Resp {
        #[serde(default)]
        accounts: Vec<Acc>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct Acc {
        #[serde(default)]
        name: Option<String>,
    }
    let r: Resp = serde_json::from_reader(body)?;
    if r.accounts.is_empty() && !r.errors.is_empty() {
        return Err(ParseError::Slurm(
            r.errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    Ok(r.accounts.into_iter().filter_map(|a| a.name).collect())
}
