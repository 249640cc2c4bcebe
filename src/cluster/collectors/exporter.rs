//! The scraper's own health: per-endpoint up, staleness, duration, size, errors.

use std::collections::BTreeMap;

use crate::exposition::{HealthFamily, Kind, MetricDesc, MetricSet};
use crate::slurmrestd::ApiVersion;

pub const EXPORTER_ENDPOINT_UP: MetricDesc = MetricDesc {
    name: "slurm_exporter_endpoint_up",
    help: "1 if the last poll of this slurmrestd endpoint succeeded.",
    kind: Kind::Gauge,
    labels: &["endpoint"],
};

pub const EXPORTER_ENDPOINT_STALE: MetricDesc = MetricDesc {
    name: "slurm_exporter_endpoint_stale",
    help: "1 if this endpoint's metrics are from an earlier poll because the last one failed.",
    kind: Kind::Gauge,
    labels: &["endpoint"],
};

pub const EXPORTER_LAST_SUCCESS_TIMESTAMP_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_exporter_last_success_timestamp_seconds",
    help: "Unix time of the last successful poll of this endpoint.",
    kind: Kind::Gauge,
    labels: &["endpoint"],
};

pub const EXPORTER_POLL_DURATION_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_exporter_poll_duration_seconds",
    help: "Duration of the last poll of this endpoint (request and parse).",
    kind: Kind::Gauge,
    labels: &["endpoint"],
};

pub const EXPORTER_RESPONSE_SIZE_BYTES: MetricDesc = MetricDesc {
    name: "slurm_exporter_response_size_bytes",
    help: "Size of the last successful response of this endpoint.",
    kind: Kind::Gauge,
    labels: &["endpoint"],
};

pub const EXPORTER_ERRORS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_exporter_errors_total",
    help: "Failed polls by endpoint and error kind (connect, timeout, auth, http_5xx, not_json, parse, too_large, ...).",
    kind: Kind::Counter,
    labels: &["endpoint", "kind"],
};

pub const EXPORTER_SLURMRESTD_UP: MetricDesc = MetricDesc {
    name: "slurm_exporter_slurmrestd_up",
    help: "1 if every enabled slurmrestd endpoint answered on the last poll.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const EXPORTER_POLLS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_exporter_polls_total",
    help: "Poll cycles run since start.",
    kind: Kind::Counter,
    labels: &[],
};

pub const EXPORTER_TOKEN_READ_ERRORS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_exporter_token_read_errors_total",
    help: "Failed reads of --slurmrestd-token-file (the previous token stays in use).",
    kind: Kind::Counter,
    labels: &[],
};

pub const EXPORTER_TOKEN_EXPIRY_TIMESTAMP_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_exporter_token_expiry_timestamp_seconds",
    help: "Expiry (Unix time) of the slurmrestd JWT in use, from its exp claim: alert before it passes.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const EXPORTER_API_VERSION_INFO: MetricDesc = MetricDesc {
    name: "slurm_exporter_api_version_info",
    help: "slurmrestd API version in use (detected or pinned).",
    kind: Kind::Info,
    labels: &["version"],
};

pub const EXPORTER_BUILD_INFO: MetricDesc = MetricDesc {
    name: "slurm_exporter_build_info",
    help: "Build information of the exporter.",
    kind: Kind::Info,
    labels: &["version"],
};

/// Which slurmrestd endpoints answered, for `/readyz` and the landing page.
pub const ENDPOINT_HEALTH: HealthFamily = HealthFamily {
    up: &EXPORTER_ENDPOINT_UP,
    label: "endpoint",
    prefix: "slurmrestd ",
    stale: Some(&EXPORTER_ENDPOINT_STALE),
};

/// The per-endpoint families, declared on every poll (present with their
/// HELP and TYPE before any endpoint answered).
pub const ENDPOINT_METRICS: &[&MetricDesc] = &[
    &EXPORTER_ENDPOINT_UP,
    &EXPORTER_ENDPOINT_STALE,
    &EXPORTER_LAST_SUCCESS_TIMESTAMP_SECONDS,
    &EXPORTER_POLL_DURATION_SECONDS,
    &EXPORTER_RESPONSE_SIZE_BYTES,
    &EXPORTER_ERRORS_TOTAL,
];

/// Every other family this collector declares.
pub const METRICS: &[&MetricDesc] = &[
    &EXPORTER_SLURMRESTD_UP,
    &EXPORTER_POLLS_TOTAL,
    &EXPORTER_TOKEN_READ_ERRORS_TOTAL,
    &EXPORTER_TOKEN_EXPIRY_TIMESTAMP_SECONDS,
    &EXPORTER_API_VERSION_INFO,
    &EXPORTER_BUILD_INFO,
    &EXPORTER_JOBS_POLLS_TOTAL,
    &EXPORTER_JOBS_REFETCHED_TOTAL,
    &EXPORTER_JOBS_TABLE_JOBS,
    &EXPORTER_NODES_POLLS_TOTAL,
    &EXPORTER_UPDATE_TIME_SUPPORTED,
];

pub const EXPORTER_JOBS_POLLS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_exporter_jobs_polls_total",
    help: "Polls of /jobs by kind: full (the whole job list), unchanged (slurmrestd said nothing changed since update_time), incremental (/jobs/state diffed, changed jobs re-fetched).",
    kind: Kind::Counter,
    labels: &["kind"],
};

pub const EXPORTER_JOBS_REFETCHED_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_exporter_jobs_refetched_total",
    help: "Jobs re-fetched one by one (/slurm/vX/job/{id}) by incremental polls.",
    kind: Kind::Counter,
    labels: &[],
};

pub const EXPORTER_JOBS_TABLE_JOBS: MetricDesc = MetricDesc {
    name: "slurm_exporter_jobs_table_jobs",
    help: "Jobs in the exporter's job table (kept between polls for incremental polling).",
    kind: Kind::Gauge,
    labels: &[],
};

pub const EXPORTER_NODES_POLLS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_exporter_nodes_polls_total",
    help: "Polls of /nodes by kind: full (the whole node list), unchanged (slurmrestd said no node changed since update_time).",
    kind: Kind::Counter,
    labels: &["kind"],
};

pub const EXPORTER_UPDATE_TIME_SUPPORTED: MetricDesc = MetricDesc {
    name: "slurm_exporter_update_time_supported",
    help: "0 once slurmrestd refused ?update_time= on this endpoint as a bad query for the API version in use (Slurm 24.11, v0.0.40/v0.0.41); it is then polled unconditionally. 1 otherwise.",
    kind: Kind::Gauge,
    labels: &["endpoint"],
};

/// Outcome of the most recent polls of one slurmrestd endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointStatus {
    pub up: bool,
    /// Metrics come from an earlier successful poll.
    pub stale: bool,
    pub last_success_unix: Option<f64>,
    pub last_duration_seconds: f64,
    pub last_response_bytes: u64,
    /// Error kind -> count since start.
    pub errors: BTreeMap<&'static str, u64>,
}

pub struct ExporterStatus<'a> {
    pub endpoints: &'a BTreeMap<&'static str, EndpointStatus>,
    pub api_version: Option<ApiVersion>,
    pub polls: u64,
    pub slurmrestd_up: bool,
    pub token_errors: u64,
    /// `exp` of the JWT in use (Unix seconds); `None` without one.
    pub token_expiry: Option<i64>,
}

pub fn collect(s: &ExporterStatus<'_>, set: &mut MetricSet) {
    set.mark_health(&ENDPOINT_HEALTH);
    for d in ENDPOINT_METRICS {
        set.declare(d);
    }
    for (endpoint, st) in s.endpoints {
        let l = || vec![("endpoint", endpoint.to_string())];
        set.add(&EXPORTER_ENDPOINT_UP, l(), if st.up { 1.0 } else { 0.0 });
        set.add(
            &EXPORTER_ENDPOINT_STALE,
            l(),
            if st.stale { 1.0 } else { 0.0 },
        );
        if let Some(t) = st.last_success_unix {
            set.add(&EXPORTER_LAST_SUCCESS_TIMESTAMP_SECONDS, l(), t);
        }
        set.add(
            &EXPORTER_POLL_DURATION_SECONDS,
            l(),
            st.last_duration_seconds,
        );
        set.add(
            &EXPORTER_RESPONSE_SIZE_BYTES,
            l(),
            st.last_response_bytes as f64,
        );
        for (kind, n) in &st.errors {
            set.add(
                &EXPORTER_ERRORS_TOTAL,
                vec![
                    ("endpoint", endpoint.to_string()),
                    ("kind", kind.to_string()),
                ],
                *n as f64,
            );
        }
    }
    set.add(
        &EXPORTER_SLURMRESTD_UP,
        vec![],
        if s.slurmrestd_up { 1.0 } else { 0.0 },
    );
    set.add(&EXPORTER_POLLS_TOTAL, vec![], s.polls as f64);
    set.add(
        &EXPORTER_TOKEN_READ_ERRORS_TOTAL,
        vec![],
        s.token_errors as f64,
    );
    // Absent without a token or when the token carries no `exp` claim.
    if let Some(exp) = s.token_expiry {
        set.add(&EXPORTER_TOKEN_EXPIRY_TIMESTAMP_SECONDS, vec![], exp as f64);
    }
    set.declare(&EXPORTER_API_VERSION_INFO);
    if let Some(v) = s.api_version {
        set.add(
            &EXPORTER_API_VERSION_INFO,
            vec![("version", v.as_str().to_string())],
            1.0,
        );
    }
    set.add(
        &EXPORTER_BUILD_INFO,
        vec![("version", env!("CARGO_PKG_VERSION").to_string())],
        1.0,
    );
}

/// How the incremental `/jobs` polling went (present when it is enabled).
pub struct JobsPolling<'a> {
    /// Poll kind (`full`, `unchanged`, `incremental`) -> count since start.
    pub polls: &'a BTreeMap<&'static str, u64>,
    pub refetched: u64,
    pub table_jobs: usize,
    /// `Some` when `?update_time=` is sent on /jobs: whether slurmrestd takes it.
    pub update_time_supported: Option<bool>,
}

/// How the conditional `/nodes` polling went (present when it is enabled).
pub struct NodesPolling<'a> {
    /// Poll kind (`full`, `unchanged`) -> count since start.
    pub polls: &'a BTreeMap<&'static str, u64>,
    pub update_time_supported: bool,
}

/// The incremental and conditional polling counters.
pub fn collect_polling(
    jobs: Option<&JobsPolling<'_>>,
    nodes: Option<&NodesPolling<'_>>,
    set: &mut MetricSet,
) {
    let supported = |set: &mut MetricSet, endpoint: &str, yes: bool| {
        set.add(
            &EXPORTER_UPDATE_TIME_SUPPORTED,
            vec![("endpoint", endpoint.to_string())],
            if yes { 1.0 } else { 0.0 },
        );
    };
    if let Some(j) = jobs {
        for kind in ["full", "unchanged", "incremental"] {
            let n = j.polls.get(kind).copied().unwrap_or(0);
            set.add(
                &EXPORTER_JOBS_POLLS_TOTAL,
                vec![("kind", kind.to_string())],
                n as f64,
            );
        }
        set.add(&EXPORTER_JOBS_REFETCHED_TOTAL, vec![], j.refetched as f64);
        if let Some(yes) = j.update_time_supported {
            supported(set, "jobs", yes);
        }
        set.add(&EXPORTER_JOBS_TABLE_JOBS, vec![], j.table_jobs as f64);
    }
    if let Some(n) = nodes {
        for kind in ["full", "unchanged"] {
            let c = n.polls.get(kind).copied().unwrap_or(0);
            set.add(
                &EXPORTER_NODES_POLLS_TOTAL,
                vec![("kind", kind.to_string())],
                c as f64,
            );
        }
        supported(set, "nodes", n.update_time_supported);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_counters_every_kind_and_refusals() {
        let jobs: BTreeMap<&'static str, u64> = [("full", 2), ("incremental", 5)].into();
        let nodes: BTreeMap<&'static str, u64> = [("unchanged", 3)].into();
        let mut set = MetricSet::new();
        collect_polling(
            Some(&JobsPolling {
                polls: &jobs,
                refetched: 7,
                table_jobs: 40,
                update_time_supported: Some(true),
            }),
            Some(&NodesPolling {
                polls: &nodes,
                update_time_supported: false,
            }),
            &mut set,
        );
        let kind = |k| [("kind", k)];
        let polls = EXPORTER_JOBS_POLLS_TOTAL.name;
        assert_eq!(set.value(polls, &kind("full")), Some(2.0));
        assert_eq!(set.value(polls, &kind("unchanged")), Some(0.0));
        assert_eq!(set.value(polls, &kind("incremental")), Some(5.0));
        let nodes_polls = EXPORTER_NODES_POLLS_TOTAL.name;
        assert_eq!(set.value(nodes_polls, &kind("full")), Some(0.0));
        assert_eq!(set.value(nodes_polls, &kind("unchanged")), Some(3.0));
        assert_eq!(
            set.value(EXPORTER_JOBS_REFETCHED_TOTAL.name, &[]),
            Some(7.0)
        );
        assert_eq!(set.value(EXPORTER_JOBS_TABLE_JOBS.name, &[]), Some(40.0));
        let supported = EXPORTER_UPDATE_TIME_SUPPORTED.name;
        assert_eq!(set.value(supported, &[("endpoint", "jobs")]), Some(1.0));
        assert_eq!(set.value(supported, &[("endpoint", "nodes")]), Some(0.0));

        // Without ?update_time= on /jobs there is no jobs row; without the
        // incremental polling nothing at all.
        let mut set = MetricSet::new();
        collect_polling(
            Some(&JobsPolling {
                polls: &jobs,
                refetched: 0,
                table_jobs: 0,
                update_time_supported: None,
            }),
            None,
            &mut set,
        );
        assert_eq!(set.value(supported, &[("endpoint", "jobs")]), None);
        let mut set = MetricSet::new();
        collect_polling(None, None, &mut set);
        assert!(set.families().is_empty());
    }
}
