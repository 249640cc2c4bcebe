//! The scraper's own health: per-endpoint up, staleness, duration, size, errors.

use std::collections::BTreeMap;

use crate::exposition::{Kind, MetricDesc, MetricSet};
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

/// Every family this collector declares.
pub const METRICS: &[&MetricDesc] = &[
    &EXPORTER_ENDPOINT_UP,
    &EXPORTER_ENDPOINT_STALE,
    &EXPORTER_LAST_SUCCESS_TIMESTAMP_SECONDS,
    &EXPORTER_POLL_DURATION_SECONDS,
    &EXPORTER_RESPONSE_SIZE_BYTES,
    &EXPORTER_ERRORS_TOTAL,
    &EXPORTER_SLURMRESTD_UP,
    &EXPORTER_POLLS_TOTAL,
    &EXPORTER_TOKEN_READ_ERRORS_TOTAL,
    &EXPORTER_TOKEN_EXPIRY_TIMESTAMP_SECONDS,
    &EXPORTER_API_VERSION_INFO,
    &EXPORTER_BUILD_INFO,
];

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
    for d in [
        &EXPORTER_ENDPOINT_UP,
        &EXPORTER_ENDPOINT_STALE,
        &EXPORTER_LAST_SUCCESS_TIMESTAMP_SECONDS,
        &EXPORTER_POLL_DURATION_SECONDS,
        &EXPORTER_RESPONSE_SIZE_BYTES,
        &EXPORTER_ERRORS_TOTAL,
    ] {
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
