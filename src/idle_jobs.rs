//! `idle-jobs`: finds running jobs whose every allocated GPU stayed idle
//! (recording rule `job:slurm_gpu_activity_ratio:max` below `--threshold` at
//! every evaluation for `--idle-for`), warns, and after `--grace` cancels
//! them through slurmrestd (`DELETE /slurm/vX/job/{id}`).
//!
//! * Dry run by default: prints what it would do, writes the audit lines
//!   with `"dry_run":true`, changes neither Slurm nor the state file.
//! * `--apply`: the first run that finds a job idle warns (an audit line, and
//!   the job enters the state file with the warning time); a run at least
//!   `--grace` later that still finds it idle cancels it (audit line). A job
//!   that is busy again leaves the state file: its next idle spell starts
//!   with a new warning.
//! * The job's account, partition and QoS are read from slurmrestd
//!   (`GET /slurm/vX/job/{id}`), not from Prometheus labels; exempt jobs and
//!   jobs no longer running are left alone.
//! * Writes only through API v0.0.42 and later: their DELETE answers
//!   `openapi_kill_job_resp` with a per-job `status` (checked against the
//!   25.11/26.05 OpenAPI); v0.0.38's answer documents no body and v0.0.40/41
//!   report no per-job result, so older APIs are refused.
//! * At most `--max-cancels` cancellations per run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::model::{Job, JobState};
use crate::report::prom::{PromOptions, Prometheus, Series};
use crate::slurmrestd::client::{Client, ClientOptions, FetchError};
use crate::slurmrestd::{Api, ApiVersion};

/// The recording rule (alerts/recording-rules.yaml) this command acts on.
pub const RULE: &str = "job:slurm_gpu_activity_ratio:max";

/// What `idle-jobs` does, built by the CLI layer
/// (`crate::cli::idle_jobs::IdleJobsArgs`).
#[derive(Debug, Clone)]
pub struct IdleJobsOptions {
    pub prom: PromOptions,
    /// A job is idle when its busiest GPU stays below this activity (0.05 = 5 %).
    pub threshold: f64,
    /// How long every GPU of the job must have stayed below the threshold.
    pub idle_for: Duration,
    /// Time between the warning and the cancellation.
    pub grace: Duration,
    /// Jobs of these accounts, partitions and QoS are never warned or cancelled.
    pub exempt_accounts: Vec<String>,
    pub exempt_partitions: Vec<String>,
    pub exempt_qos: Vec<String>,
    /// Warnings given so far (JSON; written with `apply` only).
    pub state_file: PathBuf,
    /// Audit log: one JSON line appended per action.
    pub audit_log: Option<PathBuf>,
    /// Most jobs cancelled in one run.
    pub max_cancels: usize,
    /// slurmrestd connection; the answer limit is set here.
    pub slurmrestd: ClientOptions,
    /// Cancel for real; without it nothing is changed (dry run).
    pub apply: bool,
}

/// Most jobs one run looks at (the rule's answer is bounded by running jobs).
const MAX_CANDIDATES: usize = 10_000;
/// Largest `/job/{id}` answer read.
const MAX_JOB_BYTES: u64 = 16 << 20;

/// An idle job as Prometheus reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub job_id: u64,
    pub cluster: String,
    /// Highest activity of its busiest GPU over `--idle-for`.
    pub max_activity: f64,
}

/// The query: the job's busiest GPU stayed below the threshold over the
/// whole window, and the job already existed at its start (a job younger
/// than the window is not idle "for" it yet), and still exists now.
pub fn query(threshold: f64, idle_for: Duration, extra: &str) -> String {
    let w = idle_for.as_secs().max(1);
    let sel = if extra.is_empty() {
        RULE.to_string()
    } else {
        format!("{RULE}{{{extra}}}")
    };
    format!("(max_over_time({sel}[{w}s]) < {threshold}) and ({sel} offset {w}s) and {sel}")
}

/// Candidates from the query's answer; a `job_id` label that is not a
/// number (the scraper writes Slurm's numeric id) is skipped.
pub fn candidates(series: &[Series]) -> Vec<Candidate> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for s in series.iter().take(MAX_CANDIDATES) {
        let Some(id) = s.labels.get("job_id").and_then(|j| j.parse::<u64>().ok()) else {
            tracing::debug!(labels = ?s.labels, "idle job id is not a plain number; skipped");
            continue;
        };
        let Some(v) = s.value().filter(|v| v.is_finite()) else {
            continue;
        };
        if seen.insert(id) {
            out.push(Candidate {
                job_id: id,
                cluster: s.labels.get("cluster").cloned().unwrap_or_default(),
                max_activity: v,
            });
        }
    }
    out
}

/// Warnings given, by job id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub warned: BTreeMap<u64, i64>,
}

impl State {
    pub fn load(path: &Path) -> anyhow::Result<State> {
        match std::fs::read(path) {
            Ok(b) if b.len() > 64 << 20 => bail!("state file {path:?} is over 64 MiB"),
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("state file {path:?} is not valid JSON")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read state file {path:?}")),
        }
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {tmp:?}"))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {path:?}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Warn,
    /// Warned, within the grace period.
    Wait,
    Cancel,
    Exempt,
    /// Not running any more (or unknown to slurmctld).
    Gone,
    /// Over --max-cancels this run.
    Deferred,
}

/// What to do with one idle job.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub why: String,
}

pub struct Policy<'a> {
    pub exempt_accounts: &'a [String],
    pub exempt_partitions: &'a [String],
    pub exempt_qos: &'a [String],
    pub grace: i64,
}

fn listed(list: &[String], value: &str) -> bool {
    // A pending job may name several partitions; a running one has one.
    value
        .split(',')
        .any(|v| !v.is_empty() && list.iter().any(|l| l.trim() == v))
}

/// The decision for one idle job: `job` as slurmrestd returned it (None when
/// it does not know it), `warned_at` from the state file.
pub fn decide(policy: &Policy, job: Option<&Job>, warned_at: Option<i64>, now: i64) -> Decision {
    let d = |action, why: String| Decision { action, why };
    let Some(job) = job else {
        return d(Action::Gone, "unknown to slurmctld".into());
    };
    if job.state != Some(JobState::Running) {
        return d(Action::Gone, format!("state {:?}", job.state_or_other()));
    }
    if listed(policy.exempt_accounts, &job.account) {
        return d(Action::Exempt, format!("account {} exempt", job.account));
    }
    if listed(policy.exempt_partitions, &job.partition) {
        return d(
            Action::Exempt,
            format!("partition {} exempt", job.partition),
        );
    }
    if listed(policy.exempt_qos, &job.qos) {
        return d(Action::Exempt, format!("qos {} exempt", job.qos));
    }
    match warned_at {
        None => d(Action::Warn, "first seen idle".into()),
        Some(t) if now - t >= policy.grace => d(
            Action::Cancel,
            format!("still idle {}s after the warning", now - t),
        ),
        Some(t) => d(
            Action::Wait,
            format!("warned {}s ago, cancel after {}s", now - t, policy.grace),
        ),
    }
}

/// One audit log line (JSON): who did what to which job, why, with the values.
#[derive(Debug, Serialize)]
pub struct AuditLine<'a> {
    pub time: String,
    pub actor: &'a str,
    pub action: Action,
    pub dry_run: bool,
    pub job_id: u64,
    pub cluster: &'a str,
    pub account: &'a str,
    pub user: &'a str,
    pub partition: &'a str,
    pub qos: &'a str,
    pub reason: String,
    pub max_activity: f64,
    pub threshold: f64,
    pub idle_for_seconds: u64,
    pub warned_at: Option<String>,
    pub result: String,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn slurm_api(args: &IdleJobsOptions) -> anyhow::Result<Api> {
    let c = Client::new(ClientOptions {
        max_body_bytes: MAX_JOB_BYTES,
        ..args.slurmrestd.clone()
    })
    .context("invalid slurmrestd settings")?;
    c.refresh_token()?;
    Ok(Api::new(std::sync::Arc::new(c)))
}

/// The newest API of v0.0.42 or later slurmrestd serves (`ping/`).
pub async fn detect_version(api: &Api) -> anyhow::Result<ApiVersion> {
    for v in ApiVersion::NEWEST_FIRST
        .into_iter()
        .filter(|v| *v >= ApiVersion::V0042)
    {
        match api.ping(v).await {
            Ok(()) => return Ok(v),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e).context("cannot reach slurmrestd"),
        }
    }
    bail!("slurmrestd serves no /slurm/vX/ of v0.0.42 or later: idle-jobs cancels only through APIs whose DELETE reports a per-job result (Slurm 24.05+); nothing done")
}

async fn read_job(api: &Api, v: ApiVersion, id: u64) -> anyhow::Result<Option<Job>> {
    match api.job(v, id).await {
        Ok(f) => Ok(f.value.into_iter().find(|j| j.job_id == id)),
        // Slurm answers an unknown (purged) job id with an error status.
        Err(e) if e.is_not_found() || !e.slurm_errors().is_empty() => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read job {id}")),
    }
}

/// Checks the DELETE answer's per-job `status` (v0.0.42+): any entry with a
/// non-zero error code means the signal was not delivered.
pub fn check_kill_answer(answer: &serde_json::Value) -> Result<(), String> {
    let Some(list) = answer.get("status").and_then(|s| s.as_array()) else {
        return Ok(());
    };
    let bad: Vec<String> = list
        .iter()
        .filter(|e| {
            e.pointer("/error/code")
                .and_then(|c| c.as_i64())
                .is_some_and(|c| c != 0)
        })
        .map(|e| {
            format!(
                "{}: {}",
                e.pointer("/error/code")
                    .and_then(|c| c.as_i64())
                    .unwrap_or(0),
                e.pointer("/error/message")
                    .or_else(|| e.pointer("/error/string"))
                    .and_then(|m| m.as_str())
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect::<String>()
            )
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn iso(t: i64) -> String {
    format!("{}Z", crate::cluster::usage::iso_utc(t))
}

pub async fn run(args: IdleJobsOptions) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    execute(&args, &mut stdout, unix_now()).await
}

/// The whole command; one line per idle job to `out`, audit lines to
/// `--audit-log` (or `out`).
pub async fn execute(args: &IdleJobsOptions, out: &mut dyn Write, now: i64) -> anyhow::Result<()> {
    if !(args.threshold.is_finite() && args.threshold > 0.0 && args.threshold <= 1.0) {
        bail!("--threshold must be in (0, 1]");
    }
    if args.idle_for < Duration::from_secs(1) {
        bail!("--idle-for must be at least 1s");
    }
    let mut state = State::load(&args.state_file)?;
    let api = slurm_api(args)?;
    let version = detect_version(&api).await?;
    let prom: Prometheus = args.prom.connect()?;
    let q = query(args.threshold, args.idle_for, &args.prom.extra());
    let found = candidates(&prom.query(&q, now).await?);
    tracing::info!(idle = found.len(), api = %version, dry_run = !args.apply, "idle jobs found");
    let policy = Policy {
        exempt_accounts: &args.exempt_accounts,
        exempt_partitions: &args.exempt_partitions,
        exempt_qos: &args.exempt_qos,
        grace: args.grace.as_secs() as i64,
    };
    let actor = format!(
        "slurm-gpu-exporter idle-jobs (slurmrestd user {})",
        args.slurmrestd
            .user_name
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "of the token".into())
    );
    let mut audit: Box<dyn Write> = match &args.audit_log {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open --audit-log {p:?}"))?,
        ),
        None => Box::new(std::io::sink()),
    };
    let mut keep: BTreeMap<u64, i64> = BTreeMap::new();
    let mut cancels = 0usize;
    let mut failures = Vec::new();
    for c in &found {
        let job = read_job(&api, version, c.job_id).await?;
        let warned_at = state.warned.get(&c.job_id).copied();
        let mut d = decide(&policy, job.as_ref(), warned_at, now);
        if d.action == Action::Cancel && cancels >= args.max_cancels {
            d = Decision {
                action: Action::Deferred,
                why: format!("--max-cancels {} reached this run", args.max_cancels),
            };
        }
        let mut result = if args.apply { "done" } else { "dry run" }.to_string();
        match d.action {
            Action::Warn => {
                keep.insert(c.job_id, now);
            }
            Action::Wait | Action::Deferred => {
                keep.insert(c.job_id, warned_at.unwrap_or(now));
            }
            Action::Cancel => {
                cancels += 1;
                if args.apply {
                    let r = api
                        .cancel_job(version, c.job_id)
                        .await
                        .map_err(|e: FetchError| e.to_string())
                        .and_then(|a| check_kill_answer(&a));
                    if let Err(e) = r {
                        result = format!("failed: {e}");
                        failures.push(format!("job {}: {e}", c.job_id));
                        // Still idle and warned: the next run tries again.
                        keep.insert(c.job_id, warned_at.unwrap_or(now));
                    }
                }
            }
            Action::Exempt | Action::Gone => {}
        }
        let field = |f: fn(&Job) -> &str| job.as_ref().map_or("", f).to_string();
        let (account, user, partition, qos) = (
            field(|j| &j.account),
            field(|j| &j.user),
            field(|j| &j.partition),
            field(|j| &j.qos),
        );
        let line = AuditLine {
            time: iso(now),
            actor: &actor,
            action: d.action,
            dry_run: !args.apply,
            job_id: c.job_id,
            cluster: &c.cluster,
            account: &account,
            user: &user,
            partition: &partition,
            qos: &qos,
            reason: format!(
                "every allocated GPU below {} activity for {}s (busiest GPU at most {:.4}); {}",
                args.threshold,
                args.idle_for.as_secs(),
                c.max_activity,
                d.why
            ),
            max_activity: c.max_activity,
            threshold: args.threshold,
            idle_for_seconds: args.idle_for.as_secs(),
            warned_at: warned_at.map(iso),
            result: result.clone(),
        };
        let json = serde_json::to_string(&line)?;
        writeln!(out, "{json}")?;
        if matches!(d.action, Action::Warn | Action::Cancel) {
            writeln!(audit, "{json}")?;
            tracing::warn!(
                job_id = c.job_id,
                account = %account,
                user = %user,
                action = ?d.action,
                dry_run = !args.apply,
                result = %result,
                "{}",
                line.reason
            );
        } else {
            tracing::info!(job_id = c.job_id, action = ?d.action, "{}", d.why);
        }
    }
    audit.flush()?;
    if args.apply {
        for id in state.warned.keys().filter(|id| !keep.contains_key(id)) {
            tracing::info!(
                job_id = id,
                "no longer idle (or gone, exempt, cancelled): warning cleared"
            );
        }
        state.warned = keep;
        state.save(&args.state_file)?;
    } else {
        writeln!(
            out,
            "dry run: nothing changed; run again with --apply to warn and cancel"
        )?;
    }
    if !failures.is_empty() {
        bail!("cancelling failed: {}", failures.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(account: &str, partition: &str, qos: &str, state: JobState) -> Job {
        Job {
            job_id: 7,
            account: account.into(),
            partition: partition.into(),
            qos: qos.into(),
            state: Some(state),
            ..Default::default()
        }
    }

    fn policy<'a>(a: &'a [String], p: &'a [String], q: &'a [String]) -> Policy<'a> {
        Policy {
            exempt_accounts: a,
            exempt_partitions: p,
            exempt_qos: q,
            grace: 600,
        }
    }

    #[test]
    fn warn_then_wait_then_cancel() {
        let none: Vec<String> = Vec::new();
        let p = policy(&none, &none, &none);
        let j = job("ai", "gpu", "normal", JobState::Running);
        assert_eq!(decide(&p, Some(&j), None, 1000).action, Action::Warn);
        assert_eq!(decide(&p, Some(&j), Some(1000), 1599).action, Action::Wait);
        assert_eq!(
            decide(&p, Some(&j), Some(1000), 1600).action,
            Action::Cancel
        );
        assert_eq!(decide(&p, None, Some(1000), 1600).action, Action::Gone);
        let done = job("ai", "gpu", "normal", JobState::Completed);
        assert_eq!(decide(&p, Some(&done), Some(0), 1600).action, Action::Gone);
    }

    #[test]
    fn exemptions_by_account_partition_and_qos() {
        let acc = vec!["hpc".to_string()];
        let part = vec!["debug".to_string()];
        let qos = vec!["long".to_string()];
        let p = policy(&acc, &part, &qos);
        for (j, why) in [
            (
                job("hpc", "gpu", "normal", JobState::Running),
                "account hpc",
            ),
            (
                job("ai", "debug", "normal", JobState::Running),
                "partition debug",
            ),
            (job("ai", "gpu", "long", JobState::Running), "qos long"),
        ] {
            let d = decide(&p, Some(&j), Some(0), 10_000);
            assert_eq!(d.action, Action::Exempt);
            assert!(d.why.starts_with(why), "{}", d.why);
        }
        // Substrings do not count.
        let j = job("hpc2", "gpu,debugx", "longer", JobState::Running);
        assert_eq!(decide(&p, Some(&j), None, 0).action, Action::Warn);
    }

    #[test]
    fn query_requires_the_whole_window() {
        assert_eq!(
            query(0.05, Duration::from_secs(3600), "cluster=\"c\""),
            "(max_over_time(job:slurm_gpu_activity_ratio:max{cluster=\"c\"}[3600s]) < 0.05) and (job:slurm_gpu_activity_ratio:max{cluster=\"c\"} offset 3600s) and job:slurm_gpu_activity_ratio:max{cluster=\"c\"}"
        );
    }

    #[test]
    fn candidates_skip_bad_ids_and_duplicates() {
        let s = |id: &str, v: f64| Series {
            labels: [("job_id".to_string(), id.to_string())].into(),
            samples: vec![(0.0, v)],
        };
        let c = candidates(&[
            s("12", 0.01),
            s("12", 0.02),
            s("1_2", 0.0),
            s("x", 0.0),
            s("13", f64::NAN),
        ]);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].job_id, c[0].max_activity), (12, 0.01));
    }

    #[test]
    fn kill_answer_status_is_checked() {
        let ok = serde_json::json!({"status": [{"error": {"code": 0, "message": "", "string": ""}, "job_id": {"number": 7}}]});
        assert!(check_kill_answer(&ok).is_ok());
        let bad = serde_json::json!({"status": [{"error": {"code": 2017, "message": "Invalid job id specified", "string": "x"}}]});
        assert_eq!(
            check_kill_answer(&bad).unwrap_err(),
            "2017: Invalid job id specified"
        );
        assert!(check_kill_answer(&serde_json::json!({})).is_ok());
    }

    #[test]
    fn state_round_trips_and_tolerates_absence() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        assert_eq!(State::load(&p).unwrap(), State::default());
        let s = State {
            warned: [(5, 100)].into(),
        };
        s.save(&p).unwrap();
        assert_eq!(State::load(&p).unwrap(), s);
        std::fs::write(&p, "{").unwrap();
        assert!(State::load(&p).is_err());
    }
}
