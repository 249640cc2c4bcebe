//! `job-report <id>`: one job's GPU efficiency from Prometheus: per GPU
//! (node, gpu) the mean and peak activity, the peak memory used, the energy
//! and the time spent idle, over the job's lifetime.
//!
//! * Lifetime: the first and last sample of the scraper's
//!   `slurm_job_gpus{job_id}` (a subquery of their timestamps every `--step`
//!   over `--lookback`: the end is exact, the start within a step), so it
//!   needs no sacct.
//! * The GPUs: the `(node, gpu)` pairs of that series. Slurm gives a GPU to
//!   one job at a time, so the node agent's per-GPU series over the lifetime
//!   are the job's; they are read raw, no recording rule needed.
//! * Activity: `slurm_gpu_sm_active_ratio` (NVML GPM SM activity) where the GPU
//!   has samples of it, `slurm_gpu_utilization_ratio` otherwise; the ACTIVITY
//!   column says which.
//! * Idle time: each sample below `--threshold` counts until the next sample
//!   (at most `--max-gap`, so a scrape gap is not counted as idle).
//! * Energy: the increase of `slurm_gpu_energy_joules_total`, counter resets
//!   handled as in the monthly report.

use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

use super::prom::{PromOptions, Prometheus, Series};
use crate::duration::parse_duration;

pub const SM_ACTIVE: &str = "slurm_gpu_sm_active_ratio";
pub const UTILIZATION: &str = "slurm_gpu_utilization_ratio";
pub const MEMORY_USED: &str = "slurm_gpu_memory_used_bytes";
pub const ENERGY: &str = "slurm_gpu_energy_joules_total";

/// Most GPUs one report reads (a 512-node job of 8 GPUs).
const MAX_GPUS: usize = 4096;

/// What `job-report`/`report job` reads, built by the CLI layer
/// (`crate::cli::report::JobReportArgs`).
#[derive(Debug, Clone)]
pub struct JobReportOptions {
    /// Slurm's numeric job id ([`parse_job_id`]).
    pub job_id: String,
    pub prom: PromOptions,
    /// Below this activity a GPU counts as idle (0.05 = 5 %).
    pub threshold: f64,
    /// How far back to look for the job.
    pub lookback: Duration,
    /// Resolution of the job's start and end.
    pub step: Duration,
    /// Longest time between two samples counted as idle time.
    pub max_gap: Duration,
    /// `table` or `json`.
    pub format: String,
}

/// A job id as the scraper labels it: Slurm's numeric id (an array task has
/// its own); anything else must not reach a query.
pub fn parse_job_id(s: &str) -> Result<String, String> {
    let s = s.trim();
    if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid job id {s:?} (Slurm's numeric job id, e.g. 1234)"
        ))
    }
}

/// `--lookback`: whole days (`14d`, 1 to 400) or a duration.
pub fn parse_lookback(s: &str) -> Result<Duration, String> {
    match s.trim().strip_suffix('d') {
        Some(d) => d
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|d| (1..=400).contains(d))
            .map(|d| Duration::from_secs(d * 86_400))
            .ok_or_else(|| format!("invalid lookback {s:?} (1d to 400d)")),
        None => parse_duration(s),
    }
}

/// Figures of one GPU over the job's lifetime.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuSummary {
    pub node: String,
    pub gpu: String,
    /// `sm_active` or `utilization`; empty without samples.
    pub activity_source: String,
    pub activity_mean: Option<f64>,
    pub activity_peak: Option<f64>,
    pub idle_seconds: f64,
    pub memory_used_peak_bytes: Option<f64>,
    pub energy_joules: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub job_id: String,
    pub cluster: String,
    pub account: String,
    pub user: String,
    pub partition: String,
    pub start: i64,
    pub end: i64,
    pub threshold: f64,
    pub gpus: Vec<GpuSummary>,
}

/// Samples (time, value) of a gauge inside `[t0, t1]`, NaN dropped.
fn window(samples: &[(f64, f64)], t0: f64, t1: f64) -> Vec<(f64, f64)> {
    samples
        .iter()
        .copied()
        .filter(|(t, v)| *t >= t0 && *t <= t1 && v.is_finite())
        .collect()
}

/// Mean and peak of the samples.
pub fn mean_peak(samples: &[(f64, f64)]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let sum: f64 = samples.iter().map(|s| s.1).sum();
    let peak = samples.iter().map(|s| s.1).fold(f64::MIN, f64::max);
    Some((sum / samples.len() as f64, peak))
}

/// Seconds spent below `threshold`: each sample holds until the next one,
/// for at most `max_gap` seconds (a gap in the scrapes is not idle time).
/// The last sample counts up to `end`, bounded the same way.
pub fn idle_seconds(samples: &[(f64, f64)], threshold: f64, end: f64, max_gap: f64) -> f64 {
    let mut idle = 0.0;
    for (i, &(t, v)) in samples.iter().enumerate() {
        let next = samples.get(i + 1).map_or(end, |s| s.0);
        if v < threshold {
            idle += (next - t).clamp(0.0, max_gap);
        }
    }
    idle
}

/// The series with the most samples (several agents or label sets for one GPU).
fn best(series: Vec<Series>) -> Option<Series> {
    series.into_iter().max_by_key(|s| s.samples.len())
}

fn matcher(k: &str, v: &str) -> String {
    format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fn join_matchers(parts: &[String], extra: &str) -> String {
    let mut v: Vec<String> = parts.to_vec();
    if !extra.is_empty() {
        v.push(extra.to_string());
    }
    format!("{{{}}}", v.join(","))
}

/// Queries Prometheus and summarizes the job; `now` bounds the lookback.
pub async fn fetch(
    prom: &Prometheus,
    args: &JobReportOptions,
    now: i64,
) -> anyhow::Result<JobSummary> {
    let extra = args.prom.extra();
    let step = args.step.as_secs().max(1) as i64;
    let lookback = args.lookback.as_secs().max(step as u64) as i64;
    let job_sel = join_matchers(&[matcher("job_id", &args.job_id)], &extra);
    // The job's lifetime: the timestamps of its join series' samples, seen
    // every `step` (exact at the end; at the start within a step).
    let life = prom
        .query(
            &format!(
                "max by (cluster, job_id, account, user, partition) (timestamp(slurm_job_gpus{job_sel}))[{lookback}s:{step}s]"
            ),
            now,
        )
        .await?;
    let Some(life) = life.into_iter().max_by_key(|s| s.samples.len()) else {
        bail!(
            "job {} has no slurm_job_gpus series in the last {lookback}s at {}: not a GPU job, older than --lookback, or --selector matches nothing",
            args.job_id,
            prom.url
        );
    };
    let stamps = life.samples.iter().map(|s| s.1).filter(|t| t.is_finite());
    let (t0, t1) = stamps.fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if t0 > t1 {
        bail!("job {}: empty lifetime", args.job_id);
    }
    let (t0, t1) = (t0.floor() as i64, t1.ceil() as i64);
    let label = |k: &str| life.labels.get(k).cloned().unwrap_or_default();
    let cluster = label("cluster");
    // Its GPUs.
    let gpu_sel = join_matchers(
        &[matcher("job_id", &args.job_id), "gpu!=\"\"".to_string()],
        &extra,
    );
    let held = prom
        .query(
            &format!("max by (cluster, node, gpu) (last_over_time(slurm_job_gpus{gpu_sel}[{lookback}s]))"),
            now,
        )
        .await?;
    let mut gpus: Vec<(String, String)> = held
        .iter()
        .filter_map(|s| Some((s.labels.get("node")?.clone(), s.labels.get("gpu")?.clone())))
        .collect();
    gpus.sort();
    gpus.dedup();
    if gpus.len() > MAX_GPUS {
        bail!(
            "job {} holds {} GPUs, more than {MAX_GPUS}",
            args.job_id,
            gpus.len()
        );
    }
    // Raw samples over the lifetime.
    // +1: range selectors exclude their left edge (Prometheus 3).
    let range = (t1 - t0) + 1;
    let (lo, hi) = (t0 as f64, t1 as f64);
    let max_gap = args.max_gap.as_secs_f64();
    let mut out = Vec::with_capacity(gpus.len());
    for (node, gpu) in &gpus {
        let mut m = vec![matcher("node", node), matcher("gpu", gpu)];
        if !cluster.is_empty() {
            m.push(matcher("cluster", &cluster));
        }
        let sel = join_matchers(&m, &extra);
        let raw = |metric: &str| format!("{metric}{sel}[{range}s]");
        let sm = best(prom.query(&raw(SM_ACTIVE), t1).await?)
            .map(|s| window(&s.samples, lo, hi))
            .filter(|s| !s.is_empty());
        let (source, activity) = match sm {
            Some(s) => ("sm_active", s),
            None => (
                "utilization",
                best(prom.query(&raw(UTILIZATION), t1).await?)
                    .map(|s| window(&s.samples, lo, hi))
                    .unwrap_or_default(),
            ),
        };
        let mp = mean_peak(&activity);
        let memory = best(prom.query(&raw(MEMORY_USED), t1).await?)
            .and_then(|s| mean_peak(&window(&s.samples, lo, hi)).map(|m| m.1));
        let energy = best(prom.query(&raw(ENERGY), t1).await?).and_then(|s| {
            let w = window(&s.samples, lo, hi);
            let (&(_, base), rest) = w.split_first()?;
            Some(super::increase_with_resets(base, rest))
        });
        out.push(GpuSummary {
            node: node.clone(),
            gpu: gpu.clone(),
            activity_source: if activity.is_empty() {
                String::new()
            } else {
                source.to_string()
            },
            activity_mean: mp.map(|m| m.0),
            activity_peak: mp.map(|m| m.1),
            idle_seconds: idle_seconds(&activity, args.threshold, t1 as f64, max_gap),
            memory_used_peak_bytes: memory,
            energy_joules: energy,
        });
    }
    Ok(JobSummary {
        job_id: args.job_id.clone(),
        cluster,
        account: label("account"),
        user: label("user"),
        partition: label("partition"),
        start: t0,
        end: t1,
        threshold: args.threshold,
        gpus: out,
    })
}

/// The table `job-report` prints.
pub fn render(j: &JobSummary) -> String {
    use std::fmt::Write as _;
    let pct = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", v * 100.0));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Job {}  cluster {}  account {}  user {}  partition {}",
        j.job_id,
        if j.cluster.is_empty() {
            "-"
        } else {
            &j.cluster
        },
        j.account,
        j.user,
        j.partition
    );
    let _ = writeln!(
        s,
        "From {}Z to {}Z ({} s); idle = activity below {:.1}%",
        crate::cluster::usage::iso_utc(j.start),
        crate::cluster::usage::iso_utc(j.end),
        j.end - j.start,
        j.threshold * 100.0
    );
    let wn = j
        .gpus
        .iter()
        .map(|g| g.node.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let _ = writeln!(
        s,
        "{:<wn$}  {:>3}  {:<11}  {:>8}  {:>8}  {:>10}  {:>14}  {:>12}",
        "NODE", "GPU", "ACTIVITY", "MEAN", "PEAK", "IDLE (s)", "MEM PEAK (GiB)", "ENERGY (kJ)"
    );
    let (mut idle, mut energy, mut mean_sum, mut n) = (0.0, 0.0, 0.0, 0);
    for g in &j.gpus {
        let _ = writeln!(
            s,
            "{:<wn$}  {:>3}  {:<11}  {:>8}  {:>8}  {:>10.0}  {:>14}  {:>12}",
            g.node,
            g.gpu,
            if g.activity_source.is_empty() {
                "-"
            } else {
                &g.activity_source
            },
            pct(g.activity_mean),
            pct(g.activity_peak),
            g.idle_seconds,
            g.memory_used_peak_bytes
                .map_or_else(|| "-".to_string(), |b| format!("{:.2}", b / 1073741824.0)),
            g.energy_joules
                .map_or_else(|| "-".to_string(), |e| format!("{:.1}", e / 1000.0)),
        );
        idle += g.idle_seconds;
        energy += g.energy_joules.unwrap_or(0.0);
        if let Some(m) = g.activity_mean {
            mean_sum += m;
            n += 1;
        }
    }
    let _ = writeln!(
        s,
        "{:<wn$}  {:>3}  {:<11}  {:>8}  {:>8}  {:>10.0}  {:>14}  {:>12.1}",
        "TOTAL",
        j.gpus.len(),
        "",
        pct((n > 0).then(|| mean_sum / n as f64)),
        "",
        idle,
        "",
        energy / 1000.0
    );
    s
}

pub async fn run(args: JobReportOptions) -> anyhow::Result<()> {
    if !(args.threshold.is_finite() && (0.0..=1.0).contains(&args.threshold)) {
        bail!("--threshold must be between 0 and 1");
    }
    let prom = args.prom.connect()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let j = fetch(&prom, &args, now).await?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        print!("{}", render(&j));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_validated() {
        assert_eq!(parse_job_id(" 1234 ").unwrap(), "1234");
        for bad in ["", "12a", "73_3", "1\"}or", "123456789012345678901"] {
            assert!(parse_job_id(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_lookback("14d").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(parse_lookback("90m").unwrap(), Duration::from_secs(5400));
        assert!(parse_lookback("0d").is_err());
    }

    #[test]
    fn idle_time_counts_until_the_next_sample_bounded_by_gaps() {
        // 0-10 idle, 10-20 busy, 20-30 idle, then a 1000 s scrape gap: only
        // max_gap (60 s) of it counts; the last sample counts up to the end.
        let s = [
            (0.0, 0.0),
            (10.0, 0.5),
            (20.0, 0.01),
            (30.0, 0.0),
            (1030.0, 0.0),
        ];
        assert_eq!(
            idle_seconds(&s, 0.05, 1040.0, 60.0),
            10.0 + 10.0 + 60.0 + 10.0
        );
        assert_eq!(idle_seconds(&s, 0.0, 1040.0, 60.0), 0.0);
        assert_eq!(mean_peak(&s), Some((0.51 / 5.0, 0.5)));
        assert_eq!(mean_peak(&[]), None);
    }

    #[test]
    fn window_drops_nan_and_outside() {
        let s = [(0.0, 1.0), (5.0, f64::NAN), (10.0, 2.0), (20.0, 3.0)];
        assert_eq!(window(&s, 1.0, 15.0), vec![(10.0, 2.0)]);
    }

    #[test]
    fn table_totals() {
        let g = |gpu: &str, idle: f64, e: Option<f64>| GpuSummary {
            node: "gpu-1".into(),
            gpu: gpu.into(),
            activity_source: "sm_active".into(),
            activity_mean: Some(0.5),
            activity_peak: Some(0.9),
            idle_seconds: idle,
            memory_used_peak_bytes: Some(2.0 * 1073741824.0),
            energy_joules: e,
        };
        let j = JobSummary {
            job_id: "7".into(),
            cluster: "c1".into(),
            account: "ai".into(),
            user: "alice".into(),
            partition: "gpu".into(),
            start: 0,
            end: 3600,
            threshold: 0.05,
            gpus: vec![g("0", 100.0, Some(2000.0)), g("1", 50.0, None)],
        };
        let t = render(&j);
        assert!(t.contains("gpu-1    0  sm_active       50.0%     90.0%         100            2.00           2.0"), "{t}");
        assert!(t.lines().last().unwrap().contains("150"), "{t}");
    }
}
