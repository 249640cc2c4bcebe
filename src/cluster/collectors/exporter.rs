//! The scraper's own health: per-endpoint up, staleness, duration, size, errors.

use std::collections::BTreeMap;

use crate::exposition::{Kind, MetricSet};
use crate::slurmrestd::ApiVersion;

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
    const UP: &str = "1 if the last poll of this slurmrestd endpoint succeeded.";
    const STALE: &str =
        "1 if this endpoint's metrics are from an earlier poll because the last one failed.";
    const LAST: &str = "Unix time of the last successful poll of this endpoint.";
    const DUR: &str = "Duration of the last poll of this endpoint (request and parse).";
    const BYTES: &str = "Size of the last successful response of this endpoint.";
    const ERR: &str = "Failed polls by endpoint and error kind (connect, timeout, auth, http_5xx, not_json, parse, too_large, ...).";
    for (n, h, k) in [
        ("slurm_exporter_endpoint_up", UP, Kind::Gauge),
        ("slurm_exporter_endpoint_stale", STALE, Kind::Gauge),
        (
            "slurm_exporter_last_success_timestamp_seconds",
            LAST,
            Kind::Gauge,
        ),
        ("slurm_exporter_poll_duration_seconds", DUR, Kind::Gauge),
        ("slurm_exporter_response_size_bytes", BYTES, Kind::Gauge),
        ("slurm_exporter_errors_total", ERR, Kind::Counter),
    ] {
        set.family(n, h, k);
    }
    for (endpoint, st) in s.endpoints {
        let l = || vec![("endpoint", endpoint.to_string())];
        set.gauge(
            "slurm_exporter_endpoint_up",
            UP,
            l(),
            if st.up { 1.0 } else { 0.0 },
        );
        set.gauge(
            "slurm_exporter_endpoint_stale",
            STALE,
            l(),
            if st.stale { 1.0 } else { 0.0 },
        );
        if let Some(t) = st.last_success_unix {
            set.gauge(
                "slurm_exporter_last_success_timestamp_seconds",
                LAST,
                l(),
                t,
            );
        }
        set.gauge(
            "slurm_exporter_poll_duration_seconds",
            DUR,
            l(),
            st.last_duration_seconds,
        );
        set.gauge(
            "slurm_exporter_response_size_bytes",
            BYTES,
            l(),
            st.last_response_bytes as f64,
        );
        for (kind, n) in &st.errors {
            set.counter(
                "slurm_exporter_errors_total",
                ERR,
                vec![
                    ("endpoint", endpoint.to_string()),
                    ("kind", kind.to_string()),
                ],
                *n as f64,
            );
        }
    }
    set.gauge(
        "slurm_exporter_slurmrestd_up",
        "1 if every enabled slurmrestd endpoint answered on the last poll.",
        vec![],
        if s.slurmrestd_up { 1.0 } else { 0.0 },
    );
    set.counter(
        "slurm_exporter_polls_total",
        "Poll cycles run since start.",
        vec![],
        s.polls as f64,
    );
    set.counter(
        "slurm_exporter_token_read_errors_total",
        "Failed reads of --slurmrestd-token-file (the previous token stays in use).",
        vec![],
        s.token_errors as f64,
    );
    // Absent without a token or when the token carries no `exp` claim.
    const EXP: &str =
        "Expiry (Unix time) of the slurmrestd JWT in use, from its exp claim: alert before it passes.";
    if let Some(exp) = s.token_expiry {
        set.gauge(
            "slurm_exporter_token_expiry_timestamp_seconds",
            EXP,
            vec![],
            exp as f64,
        );
    }
    set.family(
        "slurm_exporter_api_version_info",
        "slurmrestd API version in use (detected or pinned).",
        Kind::Info,
    );
    if let Some(v) = s.api_version {
        set.info(
            "slurm_exporter_api_version_info",
            "slurmrestd API version in use (detected or pinned).",
            vec![("version", v.as_str().to_string())],
        );
    }
    set.info(
        "slurm_exporter_build_info",
        "Build information of the exporter.",
        vec![("version", env!("CARGO_PKG_VERSION").to_string())],
    );
}
