//! `demo` flags; turned into a [`DemoConfig`] for [`crate::demo::run`],
//! with [`scraper`]: the demo's cluster scraper built from `cluster`'s own
//! flags, so it runs with production's defaults.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser};

use super::cluster::ClusterArgs;
use super::parse_duration;
use crate::demo::{DemoConfig, Scraper, ScraperSettings};
use crate::server::WebArgs;

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub web: WebArgs,

    /// Interval between polls of the simulated slurmrestd (real time).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// Interval between node agent collections (real time).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub collect_interval: Duration,

    /// How much faster than real time the cluster's clock runs (1–3600):
    /// with 60, an hour of jobs, GPU-hours and budget passes in a minute.
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
    pub speed: f64,

    /// Stop the cluster's clock after this much real time: jobs, usage
    /// counters and budgets then stay constant (for tests that compare a
    /// query backend's answer with the final counter values).
    #[arg(long, value_parser = parse_duration)]
    pub freeze_after: Option<Duration>,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid speed {s:?} (a number from 1 to 3600)"))?;
    if !(1.0..=3600.0).contains(&v) {
        return Err(format!("speed {v} out of range (1 to 3600)"));
    }
    Ok(v)
}

impl DemoArgs {
    pub fn config(self) -> DemoConfig {
        DemoConfig {
            web: self.web,
            poll_interval: self.poll_interval,
            collect_interval: self.collect_interval,
            speed: self.speed,
            freeze_after: self.freeze_after,
            scraper,
        }
    }
}

/// The demo's cluster scraper: `cluster`'s flags with their defaults (and
/// environment variables), plus the demo's settings.
pub fn scraper(s: &ScraperSettings) -> anyhow::Result<Scraper> {
    let cargs = cluster_args(s)?;
    let usage = cargs.usage_tracker()?;
    let client = std::sync::Arc::new(cargs.client()?);
    Ok(Scraper {
        client,
        poll: cargs.poll_options()?,
        usage,
    })
}

/// Cluster-scraper flags of the demo: production defaults plus the
/// simulated slurmrestd, a usage state file and the budgets file.
fn cluster_args(s: &ScraperSettings) -> anyhow::Result<ClusterArgs> {
    #[derive(Parser)]
    struct AsCluster {
        #[command(flatten)]
        args: ClusterArgs,
    }
    let argv: Vec<String> = vec![
        "cluster".into(),
        "--slurmrestd-url".into(),
        s.slurmrestd_url.clone(),
        "--slurmrestd-token-file".into(),
        s.token_file.display().to_string(),
        "--usage-state-file".into(),
        s.usage_state_file.display().to_string(),
        "--usage-slurmdb-gap".into(),
        format!("{}ms", s.usage_slurmdb_gap.as_millis()),
        "--budgets".into(),
        s.budgets.display().to_string(),
        format!("--collector.jobs.per-user={}", s.jobs_per_user),
    ];
    Ok(AsCluster::try_parse_from(argv)
        .context("demo cluster flags")?
        .args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn demo_scraper_is_the_cluster_scraper_with_the_demos_settings() {
        let s = ScraperSettings {
            slurmrestd_url: "http://127.0.0.1:1".into(),
            token_file: PathBuf::from("/d/slurmrestd.jwt"),
            usage_state_file: PathBuf::from("/d/usage-state.json"),
            usage_slurmdb_gap: Duration::from_secs(135),
            budgets: PathBuf::from("/d/budgets.yaml"),
            jobs_per_user: true,
        };
        let a = cluster_args(&s).unwrap();
        assert_eq!(a.slurmrestd.slurmrestd_url, "http://127.0.0.1:1");
        assert_eq!(
            a.slurmrestd.slurmrestd_token_file,
            Some(s.token_file.clone())
        );
        assert_eq!(a.usage_state_file, Some(s.usage_state_file.clone()));
        assert_eq!(a.usage_slurmdb_gap, Duration::from_secs(135));
        assert_eq!(a.budgets, Some(s.budgets.clone()));
        // Production's defaults otherwise (incremental polling on).
        let p = a.poll_options().unwrap();
        assert!(p.jobs_per_user && p.jobs_update_time && p.nodes_update_time);
        assert_eq!((p.jobs_full_poll_every, p.limits_poll_every), (10, 10));
    }
}
