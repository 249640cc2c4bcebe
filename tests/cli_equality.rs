//! For every supported API version, the exporter's metrics equal what the
//! Slurm CLI recorded on the same cluster at the same time says
//! (`squeue --json`, `sinfo --json`): jobs per state and account, pending
//! jobs per reason, GPUs allocated per account, running GPU jobs per
//! account, nodes per state. Expected values are computed from the CLI
//! files here, independently of the exporter's parsers.

#[path = "support/cases.rs"]
mod cases;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use serde_json::Value;
use slurm_gpu_exporter::cluster::poller::{PollOptions, Poller};
use slurm_gpu_exporter::exposition::MetricSet;
use slurm_gpu_exporter::slurmrestd::client::TokenSource;
use slurm_gpu_exporter::slurmrestd::ApiVersion;

const ACTIVE: &[&str] = &["pending", "running", "suspended", "completing"];

/// The release whose CLI outputs go with API `v`'s recordings (from the
/// fixtures' `_manifest.json`).
fn release(v: ApiVersion) -> &'static str {
    cases::shared_release(v)
}

fn cli(v: ApiVersion, file: &str) -> Value {
    let p = fixtures().join("slurm-cli").join(release(v)).join(file);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// A plain number or a `{set, number}` object.
fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Object(o) if o.get("set") == Some(&Value::Bool(true)) => o.get("number")?.as_f64(),
        _ => None,
    }
}

/// First word of a state string or state array.
fn base_state(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_lowercase(),
        Value::Array(a) => a
            .first()
            .and_then(|s| s.as_str())
            .unwrap_or("")
            .to_lowercase(),
        _ => String::new(),
    }
}

/// Tasks in an array string such as `3-9%3` or `1,4-6:2`.
fn array_tasks(s: &str) -> u64 {
    let s = s.split('%').next().unwrap();
    s.split(',')
        .map(|part| {
            let (range, step) = part.split_once(':').unwrap_or((part, "1"));
            let step: u64 = step.parse().unwrap();
            match range.split_once('-') {
                Some((a, b)) => {
                    let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                    (b - a) / step + 1
                }
                None => 1,
            }
        })
        .sum()
}

fn gpus_in_tres(tres: &str) -> f64 {
    tres.split(',')
        .find_map(|kv| kv.strip_prefix("gres/gpu="))
        .map(|n| n.parse().unwrap())
        .unwrap_or(0.0)
}

struct Expected {
    jobs_by_state_account: BTreeMap<(String, String), f64>,
    pending_by_reason: BTreeMap<String, f64>,
    gpus_by_account: BTreeMap<String, f64>,
    gpu_jobs_by_account: BTreeMap<String, BTreeSet<u64>>,
    nodes_by_state: BTreeMap<String, f64>,
    /// `scontrol show partition`: (nodes, CPUs, GPUs) per partition, from
    /// TotalNodes, TotalCPUs and the gres/gpu of its TRES.
    partitions: BTreeMap<String, (f64, f64, f64)>,
}

/// `scontrol show partition` as the release printed it: JSON (23.02+) or
/// the one-line-per-partition text of 22.05.
fn scontrol_partitions(v: ApiVersion) -> BTreeMap<String, (f64, f64, f64)> {
    let dir = fixtures().join("slurm-cli").join(release(v));
    let json = dir.join("scontrol_show_partition.json");
    let mut out = BTreeMap::new();
    if json.exists() {
        let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        for p in doc["partitions"].as_array().unwrap() {
            let tres = p["tres"]["configured"].as_str().unwrap();
            out.insert(
                p["name"].as_str().unwrap().to_string(),
                (
                    num(&p["nodes"]["total"]).unwrap(),
                    num(&p["cpus"]["total"]).unwrap(),
                    gpus_in_tres(tres),
                ),
            );
        }
    } else {
        let text = std::fs::read_to_string(dir.join("scontrol_show_partition.txt")).unwrap();
        for line in text.lines().filter(|l| l.starts_with("PartitionName=")) {
            let field = |k: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .unwrap()
                    .to_string()
            };
            out.insert(
                field("PartitionName="),
                (
                    field("TotalNodes=").parse().unwrap(),
                    field("TotalCPUs=").parse().unwrap(),
                    gpus_in_tres(&field("TRES=")),
                ),
            );
        }
    }
    assert!(!out.is_empty(), "{v}: no partitions in scontrol output");
    out
}

fn expected(v: ApiVersion) -> Expected {
    let squeue = cli(v, "squeue.json");
    let mut e = Expected {
        jobs_by_state_account: BTreeMap::new(),
        pending_by_reason: BTreeMap::new(),
        gpus_by_account: BTreeMap::new(),
        gpu_jobs_by_account: BTreeMap::new(),
        nodes_by_state: BTreeMap::new(),
        partitions: scontrol_partitions(v),
    };
    for j in squeue["jobs"].as_array().unwrap() {
        let state = base_state(&j["job_state"]);
        let account = j["account"].as_str().unwrap().to_string();
        let task_string = j["array_task_string"].as_str().unwrap_or("");
        let n = if state == "pending"
            && !task_string.is_empty()
            && num(&j["array_task_id"]).is_none()
        {
            array_tasks(task_string) as f64
        } else {
            1.0
        };
        *e.jobs_by_state_account
            .entry((state.clone(), account.clone()))
            .or_default() += n;
        if state == "pending" {
            let reason = j["state_reason"].as_str().unwrap().to_string();
            *e.pending_by_reason.entry(reason).or_default() += n;
        }
        if state == "running" {
            let gpus = gpus_in_tres(j["tres_alloc_str"].as_str().unwrap_or(""));
            if gpus > 0.0 {
                *e.gpus_by_account.entry(account.clone()).or_default() += gpus;
                e.gpu_jobs_by_account
                    .entry(account)
                    .or_default()
                    .insert(j["job_id"].as_u64().unwrap());
            }
        }
    }
    let sinfo = cli(v, "sinfo.json");
    let mut seen = BTreeSet::new();
    if let Some(nodes) = sinfo["nodes"].as_array() {
        // 22.05: one entry per node.
        for n in nodes {
            let name = n["name"].as_str().unwrap().to_string();
            if seen.insert(name) {
                *e.nodes_by_state.entry(base_state(&n["state"])).or_default() += 1.0;
            }
        }
    } else {
        // 23.02+: one entry per (partition, state group), nodes listed by name.
        for g in sinfo["sinfo"].as_array().unwrap() {
            let state = base_state(&g["node"]["state"]);
            for name in g["nodes"]["nodes"].as_array().unwrap() {
                if seen.insert(name.as_str().unwrap().to_string()) {
                    *e.nodes_by_state.entry(state.clone()).or_default() += 1.0;
                }
            }
        }
    }
    e
}

async fn scrape(v: ApiVersion) -> MetricSet {
    let state = mock(vec![(v, recording(v))]);
    let url = start_tcp(state).await;
    let mut p = Poller::new(
        client(&url, TokenSource::None, Duration::from_secs(10), 64 << 20),
        PollOptions {
            pinned_version: Some(v),
            ..PollOptions::default()
        },
    );
    let set = p.poll().await;
    assert_eq!(
        set.value("slurm_exporter_slurmrestd_up", &[]),
        Some(1.0),
        "{v}: every endpoint must parse"
    );
    set
}

fn group(set: &MetricSet, family: &str, by: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for f in set.families().iter().filter(|f| f.name == family) {
        for sample in &f.samples {
            let key = by
                .iter()
                .map(|b| sample.label(b).unwrap_or_default().into_owned())
                .collect();
            *out.entry(key).or_default() += sample.value;
        }
    }
    out.retain(|_, v| *v != 0.0);
    out
}

async fn check(v: ApiVersion) {
    let e = expected(v);
    let set = scrape(v).await;

    // squeue lists active jobs only (23.02+); /jobs also keeps finished ones
    // until MinJobAge, so compare the states squeue shows.
    let mut jobs = group(&set, "slurm_cluster_jobs", &["state", "account"]);
    jobs.retain(|k, _| ACTIVE.contains(&k[0].as_str()));
    let want: BTreeMap<Vec<String>, f64> = e
        .jobs_by_state_account
        .iter()
        .filter(|((s, _), _)| ACTIVE.contains(&s.as_str()))
        .map(|((s, a), n)| (vec![s.clone(), a.clone()], *n))
        .collect();
    assert_eq!(
        jobs, want,
        "{v}: jobs per state and account vs squeue --json"
    );

    let pending = group(&set, "slurm_cluster_jobs_pending", &["reason"]);
    let want: BTreeMap<Vec<String>, f64> = e
        .pending_by_reason
        .iter()
        .map(|(r, n)| (vec![r.clone()], *n))
        .collect();
    assert_eq!(
        pending, want,
        "{v}: pending jobs per reason vs squeue --json"
    );

    let gpus = group(&set, "slurm_cluster_jobs_allocated_gpus", &["account"]);
    let want: BTreeMap<Vec<String>, f64> = e
        .gpus_by_account
        .iter()
        .map(|(a, n)| (vec![a.clone()], *n))
        .collect();
    assert_eq!(
        gpus, want,
        "{v}: GPUs allocated per account vs squeue --json"
    );
    let join = group(&set, "slurm_job_gpus", &["account"]);
    assert_eq!(
        join, want,
        "{v}: join series sum to the same GPUs per account"
    );

    let mut gpu_jobs: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for f in set.families().iter().filter(|f| f.name == "slurm_job_gpus") {
        for sample in &f.samples {
            gpu_jobs
                .entry(sample.label("account").unwrap_or_default().into_owned())
                .or_default()
                .insert(sample.label("job_id").unwrap().parse().unwrap());
        }
    }
    assert_eq!(
        gpu_jobs, e.gpu_jobs_by_account,
        "{v}: running GPU jobs per account"
    );

    let nodes = group(&set, "slurm_cluster_nodes", &["state"]);
    let want: BTreeMap<Vec<String>, f64> = e
        .nodes_by_state
        .iter()
        .map(|(s, n)| (vec![s.clone()], *n))
        .collect();
    assert_eq!(nodes, want, "{v}: nodes per state vs sinfo --json");

    // Nodes, CPUs and GPUs of a partition agree with scontrol, FUTURE nodes
    // (absent from /nodes, e.g. gpu-node04) included.
    let mut parts: BTreeMap<String, (f64, f64, f64)> = BTreeMap::new();
    for (family, i) in [
        ("slurm_cluster_partition_nodes", 0),
        ("slurm_cluster_partition_cpus", 1),
        ("slurm_cluster_partition_gpus", 2),
    ] {
        for (k, n) in group(&set, family, &["partition"]) {
            let e = parts.entry(k[0].clone()).or_default();
            match i {
                0 => e.0 = n,
                1 => e.1 = n,
                _ => e.2 = n,
            }
        }
    }
    assert_eq!(
        parts, e.partitions,
        "{v}: partition (nodes, CPUs, GPUs) vs scontrol show partition"
    );
}

#[tokio::test]
async fn v0038_matches_cli() {
    check(ApiVersion::V0038).await;
}
#[tokio::test]
async fn v0040_matches_cli() {
    check(ApiVersion::V0040).await;
}
#[tokio::test]
async fn v0041_matches_cli() {
    check(ApiVersion::V0041).await;
}
#[tokio::test]
async fn v0042_matches_cli() {
    check(ApiVersion::V0042).await;
}
#[tokio::test]
async fn v0043_matches_cli() {
    check(ApiVersion::V0043).await;
}
#[tokio::test]
async fn v0044_matches_cli() {
    check(ApiVersion::V0044).await;
}
#[tokio::test]
async fn v0045_matches_cli() {
    check(ApiVersion::V0045).await;
}
