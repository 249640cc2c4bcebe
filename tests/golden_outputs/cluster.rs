//! Whole `/metrics` output of the cluster scraper for one recorded cluster
//! (Slurm 25.11.7, API v0.0.44), compared with a golden file and linted by
//! `promtool check metrics`. `UPDATE_GOLDEN=1` rewrites the golden files.

use crate::golden;
use std::time::Duration;

use crate::common::*;
use slurm_gpu_exporter::cluster::poller::{PollOptions, Poller};
use slurm_gpu_exporter::exposition::MetricSet;
use slurm_gpu_exporter::slurmrestd::client::TokenSource;
use slurm_gpu_exporter::slurmrestd::ApiVersion;

/// Families whose values depend on wall time; zeroed so the file is stable.
const TIME_DEPENDENT: &[&str] = &[
    "slurm_exporter_last_success_timestamp_seconds",
    "slurm_exporter_poll_duration_seconds",
];

fn stable_text(set: &MetricSet) -> String {
    set.encode_text()
        .lines()
        .map(|l| {
            if TIME_DEPENDENT
                .iter()
                .any(|f| l.starts_with(&format!("{f}{{")))
            {
                let (series, _) = l.rsplit_once(' ').unwrap();
                format!("{series} 0")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

async fn scrape(version: ApiVersion, per_user: bool) -> MetricSet {
    let state = mock(vec![(version, recording(version))]);
    let url = start_tcp(state).await;
    let mut p = Poller::new(
        client(&url, TokenSource::None, Duration::from_secs(10), 64 << 20),
        PollOptions {
            jobs_per_user: per_user,
            ..PollOptions::default()
        },
    );
    p.poll().await
}

#[tokio::test]
async fn golden_cluster_v0044() {
    let set = scrape(ApiVersion::V0044, true).await;
    assert_eq!(set.value("slurm_exporter_slurmrestd_up", &[]), Some(1.0));
    golden::check("cluster-v0.0.44.prom", &stable_text(&set));
}

#[tokio::test]
async fn golden_cluster_v0038() {
    let set = scrape(ApiVersion::V0038, false).await;
    assert_eq!(set.value("slurm_exporter_slurmrestd_up", &[]), Some(1.0));
    golden::check("cluster-v0.0.38.prom", &stable_text(&set));
}

#[tokio::test]
async fn openmetrics_negotiation_round_trip() {
    let set = scrape(ApiVersion::V0044, false).await;
    let om = set.encode_openmetrics();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE slurm_exporter_errors counter"));
    // Same samples in both encodings (OpenMetrics writes floats with a decimal point).
    let text_samples = set
        .encode_text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    let om_samples = om.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(text_samples, om_samples);
}
