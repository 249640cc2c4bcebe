//! Incremental `/jobs` polling against a mock slurmrestd whose job list the
//! tests change between polls (`common::LiveJobs`): `?update_time=` answered
//! with 304 (v0.0.38) or an empty list and a warning (v0.0.44),
//! `/jobs/state/` and `/job/{id}`. After every change the incremental
//! poller's job metrics are compared with a from-scratch full poll of the
//! same job list.

mod common;
#[path = "support/golden.rs"]
mod golden;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use slurm_gpu_exporter::cluster::jobtable::JobTable;
use slurm_gpu_exporter::cluster::poller::{PollOptions, Poller};
use slurm_gpu_exporter::exposition::MetricSet;
use slurm_gpu_exporter::slurmrestd::client::{Client, TokenSource};
use slurm_gpu_exporter::slurmrestd::{self, ApiVersion};

const V44: ApiVersion = ApiVersion::V0044;
const V38: ApiVersion = ApiVersion::V0038;

fn opts(v: ApiVersion, full_every: u32) -> PollOptions {
    PollOptions {
        pinned_version: Some(v),
        jobs_update_time: true,
        jobs_full_poll_every: full_every,
        jobs_refetch_max_percent: 50.0,
        ..PollOptions::default()
    }
}

async fn setup(v: ApiVersion, o: PollOptions) -> (Mock, String, Poller) {
    let state = mock(vec![(v, recording(v))]);
    state.lock().unwrap().live = Some(LiveJobs::from_recording(v));
    let url = start_tcp(state.clone()).await;
    let p = Poller::new(cl(&url), o);
    (state, url, p)
}

fn cl(url: &str) -> Arc<Client> {
    client(url, TokenSource::None, Duration::from_secs(5), 64 << 20)
}

fn live(state: &Mock, f: impl FnOnce(&mut LiveJobs)) {
    f(state.lock().unwrap().live.as_mut().unwrap())
}

/// The text exposition of every metric computed from the job list.
fn job_metrics(set: &MetricSet) -> String {
    set.encode_text()
        .lines()
        .filter(|l| {
            let name = l
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            name.starts_with("slurm_job")
                || name.starts_with("slurm_cluster_jobs")
                || name.starts_with("slurm_cluster_partition")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Job metrics of a fresh exporter polling the mock's current job list in full.
async fn from_scratch(url: &str, v: ApiVersion) -> String {
    let mut p = Poller::new(
        cl(url),
        PollOptions {
            pinned_version: Some(v),
            ..PollOptions::default()
        },
    );
    job_metrics(&p.poll().await)
}

fn polls(set: &MetricSet, kind: &str) -> f64 {
    set.value("slurm_exporter_jobs_polls_total", &[("kind", kind)])
        .unwrap_or(0.0)
}

fn refetched(set: &MetricSet) -> f64 {
    set.value("slurm_exporter_jobs_refetched_total", &[])
        .unwrap_or(0.0)
}

fn requests_from(state: &Mock, n: usize) -> Vec<String> {
    state.lock().unwrap().requests[n..]
        .iter()
        .map(|r| r.0.clone())
        .collect()
}

fn request_count(state: &Mock) -> usize {
    state.lock().unwrap().requests.len()
}

fn full_jobs_requests(reqs: &[String], v: ApiVersion) -> usize {
    let p = v.slurm_path("jobs/");
    reqs.iter()
        .filter(|r| r.as_str() == p || r.starts_with(&format!("{p}?")))
        .count()
}

fn job_id_by_name(state: &Mock, name: &str) -> u64 {
    let s = state.lock().unwrap();
    let l = s.live.as_ref().unwrap();
    // The recording ran the job mix twice: the last one is the current run.
    let j = l.jobs.iter().rev().find(|j| j["name"] == name).unwrap();
    LiveJobs::job_id(j)
}

fn set_state(j: &mut serde_json::Value, words: &[&str]) {
    j["job_state"] = serde_json::json!(words);
}

#[test]
fn recorded_jobs_state_places_every_recorded_job() {
    // 25.05 (v0.0.40) lists running array tasks as <array id>_<task>, 25.11
    // and 26.05 as <own job id>_<task>; both must match the recorded /jobs.
    for v in [ApiVersion::V0040, ApiVersion::V0044, ApiVersion::V0045] {
        let dir = fixtures().join("slurmrestd").join(v.as_str());
        let jobs = std::fs::read(dir.join("slurm_jobs.json")).unwrap();
        let state = std::fs::read(dir.join("slurm_jobs_state.json")).unwrap();
        let mut table = JobTable::new();
        slurmrestd::parse_jobs(v, &mut &jobs[..], &mut table).unwrap();
        let listed = slurmrestd::parse_jobs_state(v, &mut &state[..]).unwrap();
        assert!(listed.len() > table.len(), "{v}: meta records expand");
        let d = table.diff(&listed).unwrap();
        assert!(d.removed.is_empty() && d.refetch.is_empty(), "{v}: {d:?}");
        assert!(table.places_all(&listed), "{v}");
    }
}

#[test]
fn table_aggregates_equal_streamed_aggregates() {
    for v in [V38, ApiVersion::V0040, V44, ApiVersion::V0045] {
        let body = std::fs::read(
            fixtures()
                .join("slurmrestd")
                .join(v.as_str())
                .join("slurm_jobs.json"),
        )
        .unwrap();
        let mut streamed = slurm_gpu_exporter::cluster::collectors::queue::JobAggregates::new(true)
            .with_usage_since(0);
        slurmrestd::parse_jobs(v, &mut &body[..], &mut streamed).unwrap();
        let mut table = JobTable::new();
        slurmrestd::parse_jobs(v, &mut &body[..], &mut table).unwrap();
        let from_table = slurm_gpu_exporter::cluster::collectors::queue::JobAggregates::from_table(
            &table,
            true,
            Some(0),
        );
        let (mut a, mut b) = (MetricSet::new(), MetricSet::new());
        streamed.collect(&mut a);
        from_table.collect(&mut b);
        assert_eq!(a.encode_text(), b.encode_text(), "{v}");
        let key = |r: &slurm_gpu_exporter::cluster::usage::UsageRow| (r.job_id, r.start);
        let mut ra = streamed.usage.clone();
        ra.sort_by_key(key);
        assert_eq!(ra, from_table.usage, "{v}: usage rows");
        assert!(!ra.is_empty());
    }
}

#[tokio::test]
async fn unchanged_queue_costs_no_full_jobs_request() {
    let (state, url, mut p) = setup(V44, opts(V44, 10)).await;
    let first = p.poll().await;
    assert_eq!(polls(&first, "full"), 1.0);
    let n = request_count(&state);
    let second = p.poll().await;
    let reqs = requests_from(&state, n);
    assert!(reqs.iter().any(|r| r.contains("/jobs/state")));
    assert_eq!(full_jobs_requests(&reqs, V44), 0, "{reqs:?}");
    assert!(!reqs.iter().any(|r| r.contains("/job/")), "{reqs:?}");
    assert_eq!(polls(&second, "incremental"), 1.0);
    assert_eq!(refetched(&second), 0.0);
    assert_eq!(job_metrics(&second), job_metrics(&first));
    assert_eq!(
        second.value("slurm_exporter_endpoint_up", &[("endpoint", "jobs")]),
        Some(1.0)
    );
    assert_eq!(job_metrics(&second), from_scratch(&url, V44).await);
}

#[tokio::test]
async fn unchanged_queue_with_update_time_v0044_empty_list_and_warning() {
    // full-poll-every 1: every poll is a full /jobs, conditional on update_time.
    let (state, _url, mut p) = setup(V44, opts(V44, 1)).await;
    let first = p.poll().await;
    let n = request_count(&state);
    let second = p.poll().await;
    let reqs = requests_from(&state, n);
    assert!(
        reqs.iter().any(|r| r.contains("/jobs/?update_time=")),
        "{reqs:?}"
    );
    assert!(!reqs.iter().any(|r| r.contains("/jobs/state")));
    assert_eq!(polls(&second, "unchanged"), 1.0);
    assert_eq!(job_metrics(&second), job_metrics(&first));
    assert_eq!(
        second.value("slurm_exporter_endpoint_stale", &[("endpoint", "jobs")]),
        Some(0.0)
    );
    assert_eq!(
        second.value("slurm_exporter_endpoint_up", &[("endpoint", "jobs")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn v0038_update_time_304_keeps_the_jobs() {
    let (state, url, mut p) = setup(V38, opts(V38, 10)).await;
    let first = p.poll().await;
    assert!(first.sum("slurm_cluster_jobs", &[("state", "running")]) > 0.0);
    let n = request_count(&state);
    let second = p.poll().await;
    let reqs = requests_from(&state, n);
    // v0.0.38 has no /jobs/state: every poll is a conditional full poll.
    assert!(!reqs.iter().any(|r| r.contains("/jobs/state")));
    assert!(reqs.iter().any(|r| r.contains("/jobs/?update_time=")));
    assert_eq!(polls(&second, "unchanged"), 1.0);
    assert_eq!(job_metrics(&second), job_metrics(&first));
    assert_eq!(
        second.value("slurm_exporter_endpoint_up", &[("endpoint", "jobs")]),
        Some(1.0)
    );

    // A job leaves: the next conditional poll gets the whole list.
    let gone = job_id_by_name(&state, "train-llama");
    live(&state, |l| l.remove(gone));
    let third = p.poll().await;
    assert_eq!(polls(&third, "full"), 2.0);
    assert_eq!(
        third.sum("slurm_job_gpus", &[("job_id", &gone.to_string())]),
        0.0
    );
    assert_eq!(job_metrics(&third), from_scratch(&url, V38).await);
}

/// Slurm 24.11 (v0.0.40/v0.0.41) cannot parse an epoch `update_time`:
/// `/jobs/?update_time=` answers HTTP 422 with errors 9202 ("Parsing of …
/// for timestamp failed") and 9000. The poll repeats the request
/// unconditionally at once, and no later poll sends `update_time` again.
#[tokio::test]
async fn refused_update_time_is_dropped_for_the_version() {
    const V41: ApiVersion = ApiVersion::V0041;
    let (state, url, mut p) = setup(V41, opts(V41, 1)).await;
    live(&state, |l| {
        l.conditional_answer = Some((
            422,
            "application/json",
            live_body("24.11.5", V41, "_err_slurm_jobs_update_time.json"),
        ))
    });
    let first = p.poll().await;
    assert_eq!(polls(&first, "full"), 1.0);
    let supported = |s: &MetricSet| {
        s.value(
            "slurm_exporter_update_time_supported",
            &[("endpoint", "jobs")],
        )
    };
    assert_eq!(supported(&first), Some(1.0));
    let n = request_count(&state);
    let second = p.poll().await;
    let reqs = requests_from(&state, n);
    let conditional = |reqs: &[String]| {
        reqs.iter()
            .filter(|r| r.contains("/jobs/?update_time="))
            .count()
    };
    assert_eq!(conditional(&reqs), 1, "{reqs:?}");
    assert_eq!(full_jobs_requests(&reqs, V41), 2, "{reqs:?}");
    assert_eq!(polls(&second, "full"), 2.0);
    assert_eq!(supported(&second), Some(0.0));
    assert_eq!(
        second.value("slurm_exporter_endpoint_up", &[("endpoint", "jobs")]),
        Some(1.0)
    );
    assert_eq!(
        second.sum("slurm_exporter_errors_total", &[("endpoint", "jobs")]),
        0.0
    );
    assert_eq!(job_metrics(&second), from_scratch(&url, V41).await);
    for _ in 0..3 {
        let n = request_count(&state);
        let next = p.poll().await;
        let reqs = requests_from(&state, n);
        assert_eq!(conditional(&reqs), 0, "{reqs:?}");
        assert_eq!(full_jobs_requests(&reqs, V41), 1, "{reqs:?}");
        assert_eq!(supported(&next), Some(0.0));
    }
}

/// The staleness rule (docs/operations.md, "Stale data"): an endpoint's
/// series are served iff its last good data is younger than
/// `--max-data-age`; `endpoint_up` is the latest attempt and
/// `endpoint_stale` says the series are older than it. For `/jobs` the job
/// table is that data: it is as fresh as its last successful sync (full,
/// unchanged or incremental), and dropping it drops the table, so nothing
/// is served from it again before a full poll succeeds.
#[tokio::test]
async fn stale_jobs_are_served_until_max_age_then_only_after_a_full_poll() {
    let mut o = opts(V44, 3);
    o.max_data_age = Duration::from_millis(400);
    let (state, url, mut p) = setup(V44, o).await;
    let jobs = |s: &MetricSet| s.families().iter().any(|f| f.name == "slurm_cluster_jobs");
    let ep = |s: &MetricSet, m: &str| s.value(m, &[("endpoint", "jobs")]);
    let first = p.poll().await;
    assert!(jobs(&first));
    // /jobs fails from now on; /jobs/state keeps answering.
    live(&state, |l| l.jobs_fault = Some(500));
    let mut saw_stale = false;
    let mut dropped = false;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let set = p.poll().await;
        let up = ep(&set, "slurm_exporter_endpoint_up").unwrap();
        let stale = ep(&set, "slurm_exporter_endpoint_stale").unwrap();
        if up == 1.0 {
            // An incremental poll of a table younger than the max age.
            assert!(jobs(&set) && stale == 0.0 && !dropped, "up but dropped");
            assert_eq!(polls(&set, "full"), 1.0);
        } else if jobs(&set) {
            assert_eq!(stale, 1.0, "served while down must say stale");
            assert!(!dropped, "served again after being dropped");
            saw_stale = true;
        } else {
            assert_eq!(stale, 0.0);
            dropped = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_stale && dropped, "stale {saw_stale} dropped {dropped}");
    // /jobs/state alone never revives a dropped table: the next poll is full.
    let n = request_count(&state);
    let set = p.poll().await;
    let reqs = requests_from(&state, n);
    assert!(!jobs(&set));
    assert!(!reqs.iter().any(|r| r.contains("/jobs/state")), "{reqs:?}");
    assert_eq!(full_jobs_requests(&reqs, V44), 1, "{reqs:?}");
    assert_eq!(ep(&set, "slurm_exporter_endpoint_up"), Some(0.0));
    // /jobs is back: fresh, up, exact.
    live(&state, |l| l.jobs_fault = None);
    let set = p.poll().await;
    assert_eq!(ep(&set, "slurm_exporter_endpoint_up"), Some(1.0));
    assert_eq!(ep(&set, "slurm_exporter_endpoint_stale"), Some(0.0));
    assert_eq!(job_metrics(&set), from_scratch(&url, V44).await);
}

/// The 24.11 cycle before conditional requests were dropped: every full
/// poll is conditional and fails (a 500 that is not a refused query), the
/// polls between are incremental and work. Across drops and recoveries,
/// series are served exactly when `jobs` is up or stale, never stale and up.
#[tokio::test]
async fn failing_conditional_full_polls_keep_up_stale_and_series_consistent() {
    let mut o = opts(V44, 3);
    o.max_data_age = Duration::from_millis(300);
    let (state, _url, mut p) = setup(V44, o).await;
    live(&state, |l| {
        l.conditional_answer = Some((
            500,
            "application/json",
            bytes::Bytes::from_static(br#"{"errors":[{"error":"Unspecified error"}]}"#),
        ))
    });
    let (mut served_down, mut dropped) = (0, 0);
    for i in 0..40 {
        let set = p.poll().await;
        let served = set
            .families()
            .iter()
            .any(|f| f.name == "slurm_cluster_jobs");
        let ep = |m: &str| set.value(m, &[("endpoint", "jobs")]).unwrap();
        let (up, stale) = (
            ep("slurm_exporter_endpoint_up"),
            ep("slurm_exporter_endpoint_stale"),
        );
        assert!(!(up == 1.0 && stale == 1.0), "poll {i}: up and stale");
        assert_eq!(
            served,
            up == 1.0 || stale == 1.0,
            "poll {i}: up {up} stale {stale}"
        );
        served_down += usize::from(served && up == 0.0);
        dropped += usize::from(!served);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(served_down > 0 && dropped > 0, "{served_down} {dropped}");
}

#[tokio::test]
async fn a_job_leaving_the_queue_leaves_every_aggregate() {
    let (state, url, mut p) = setup(V44, opts(V44, 10)).await;
    let before = p.poll().await;
    let running = job_id_by_name(&state, "train_llm");
    let pending = job_id_by_name(&state, "qos_capped");
    let rid = running.to_string();
    assert_eq!(before.sum("slurm_job_gpus", &[("job_id", &rid)]), 2.0);
    let reason = [("reason", "QOSMaxGRESPerUser")];
    assert_eq!(before.sum("slurm_cluster_jobs_pending", &reason), 1.0);
    let gpus_before = before.sum("slurm_cluster_jobs_allocated_gpus", &[]);

    live(&state, |l| {
        l.remove(running);
        l.remove(pending);
    });
    let n = request_count(&state);
    let after = p.poll().await;
    assert_eq!(polls(&after, "incremental"), 1.0);
    assert_eq!(full_jobs_requests(&requests_from(&state, n), V44), 0);
    assert_eq!(after.sum("slurm_job_gpus", &[("job_id", &rid)]), 0.0);
    assert_eq!(after.sum("slurm_cluster_jobs_pending", &reason), 0.0);
    assert_eq!(
        after.sum("slurm_cluster_jobs", &[("state", "running")]),
        before.sum("slurm_cluster_jobs", &[("state", "running")]) - 1.0
    );
    assert_eq!(
        after.sum("slurm_cluster_jobs_allocated_gpus", &[]),
        gpus_before - 2.0,
        "train_llm held 2 GPUs"
    );
    assert_eq!(job_metrics(&after), from_scratch(&url, V44).await);
}

#[tokio::test]
async fn changed_and_new_jobs_are_refetched() {
    let (state, url, mut p) = setup(V44, opts(V44, 10)).await;
    p.poll().await;
    let big = job_id_by_name(&state, "big_train");
    let running = job_id_by_name(&state, "finetune_bert");
    live(&state, |l| {
        l.edit(big, |j| set_state(j, &["CANCELLED"]));
        l.add_copy(running, 9001);
    });
    let n = request_count(&state);
    let set = p.poll().await;
    let reqs = requests_from(&state, n);
    assert_eq!(polls(&set, "incremental"), 1.0);
    assert_eq!(refetched(&set), 2.0);
    assert!(reqs.iter().any(|r| r.ends_with(&format!("/job/{big}"))));
    assert!(reqs.iter().any(|r| r.ends_with("/job/9001")));
    assert_eq!(full_jobs_requests(&reqs, V44), 0);
    assert_eq!(set.sum("slurm_job_gpus", &[("job_id", "9001")]), 2.0);
    assert_eq!(job_metrics(&set), from_scratch(&url, V44).await);
}

#[tokio::test]
async fn an_array_task_starting_is_followed() {
    let (state, url, mut p) = setup(V44, opts(V44, 10)).await;
    p.poll().await;
    // Meta record 34 (tasks 3-9 pending) starts task 3 as job 9100.
    let meta = job_id_by_name(&state, "preprocess_arr");
    let task = 36; // a running task of the same array, as the template
    live(&state, |l| {
        l.add_copy(task, 9100);
        l.edit(9100, |j| {
            j["array_task_id"]["number"] = serde_json::json!(3)
        });
        l.edit(meta, |j| {
            j["array_task_string"] = serde_json::json!("4-9%3")
        });
    });
    let set = p.poll().await;
    assert_eq!(polls(&set, "incremental"), 1.0);
    assert_eq!(
        set.sum(
            "slurm_cluster_jobs_pending",
            &[("reason", "JobArrayTaskLimit")]
        ),
        6.0
    );
    assert_eq!(job_metrics(&set), from_scratch(&url, V44).await);
}

#[tokio::test]
async fn too_many_changes_poll_in_full() {
    let mut o = opts(V44, 10);
    o.jobs_refetch_max_percent = 2.0; // of 54 jobs: at most 1 re-fetch
    let (state, url, mut p) = setup(V44, o).await;
    p.poll().await;
    let a = job_id_by_name(&state, "big_train");
    let b = job_id_by_name(&state, "full_node");
    live(&state, |l| {
        l.edit(a, |j| set_state(j, &["CANCELLED"]));
        l.edit(b, |j| set_state(j, &["CANCELLED"]));
    });
    let n = request_count(&state);
    let set = p.poll().await;
    let reqs = requests_from(&state, n);
    assert_eq!(polls(&set, "full"), 2.0);
    assert_eq!(polls(&set, "incremental"), 0.0);
    assert!(!reqs.iter().any(|r| r.contains("/job/")));
    assert_eq!(full_jobs_requests(&reqs, V44), 1);
    assert_eq!(job_metrics(&set), from_scratch(&url, V44).await);
}

#[tokio::test]
async fn truncated_jobs_state_falls_back_to_a_full_poll_and_stays_exact() {
    let (state, url, mut p) = setup(V44, opts(V44, 10)).await;
    p.poll().await;
    let big = job_id_by_name(&state, "big_train");
    live(&state, |l| {
        l.state_truncated = true;
        l.edit(big, |j| set_state(j, &["CANCELLED"]));
    });
    let set = p.poll().await;
    assert_eq!(
        set.value(
            "slurm_exporter_errors_total",
            &[("endpoint", "jobs_state"), ("kind", "parse")]
        ),
        Some(1.0)
    );
    assert_eq!(
        polls(&set, "full"),
        2.0,
        "the change arrives through a full poll"
    );
    assert_eq!(job_metrics(&set), from_scratch(&url, V44).await);
}

#[tokio::test]
async fn failing_jobs_state_or_job_falls_back_to_a_full_poll() {
    let (state, url, mut p) = setup(V44, opts(V44, 10)).await;
    let first = p.poll().await;

    live(&state, |l| l.state_fault = Some(500));
    let set = p.poll().await;
    assert_eq!(
        set.value(
            "slurm_exporter_errors_total",
            &[("endpoint", "jobs_state"), ("kind", "http_5xx")]
        ),
        Some(1.0)
    );
    assert_eq!(polls(&set, "full"), 1.0, "the conditional full poll...");
    assert_eq!(polls(&set, "unchanged"), 1.0, "...found nothing changed");
    assert_eq!(job_metrics(&set), job_metrics(&first));
    assert_eq!(
        set.value("slurm_exporter_endpoint_up", &[("endpoint", "jobs")]),
        Some(1.0)
    );

    // /job/{id} fails: the change still arrives, through a full poll.
    let big = job_id_by_name(&state, "big_train");
    live(&state, |l| {
        l.state_fault = None;
        l.job_fault = Some(500);
        l.edit(big, |j| set_state(j, &["CANCELLED"]));
    });
    let set = p.poll().await;
    assert_eq!(
        set.value(
            "slurm_exporter_errors_total",
            &[("endpoint", "job"), ("kind", "http_5xx")]
        ),
        Some(1.0)
    );
    assert_eq!(polls(&set, "full"), 2.0);
    assert_eq!(job_metrics(&set), from_scratch(&url, V44).await);

    // Everything fails: the last good data is served, marked stale.
    let good = job_metrics(&set);
    live(&state, |l| {
        l.state_fault = Some(500);
        l.jobs_fault = Some(500);
        l.remove(big);
    });
    let set = p.poll().await;
    assert_eq!(job_metrics(&set), good);
    assert_eq!(
        set.value("slurm_exporter_endpoint_stale", &[("endpoint", "jobs")]),
        Some(1.0)
    );
    assert_eq!(
        set.value(
            "slurm_exporter_errors_total",
            &[("endpoint", "jobs"), ("kind", "http_5xx")]
        ),
        Some(1.0)
    );
    // Recovery: the removal is seen.
    live(&state, |l| {
        l.state_fault = None;
        l.jobs_fault = None;
    });
    let set = p.poll().await;
    assert_eq!(job_metrics(&set), from_scratch(&url, V44).await);
}

#[tokio::test]
async fn periodic_full_poll_catches_up_non_state_fields() {
    let (state, url, mut p) = setup(V44, opts(V44, 3)).await;
    p.poll().await; // full
    let big = job_id_by_name(&state, "big_train");
    // A pending reason changes without a state change.
    live(&state, |l| {
        l.edit(big, |j| j["state_reason"] = serde_json::json!("Priority"))
    });
    let two = p.poll().await;
    let three = p.poll().await;
    assert_eq!(polls(&three, "incremental"), 2.0);
    // Documented lag: between full polls the reason is the old one.
    assert_eq!(job_metrics(&two), job_metrics(&three));
    assert_ne!(job_metrics(&three), from_scratch(&url, V44).await);
    let n = request_count(&state);
    let four = p.poll().await;
    assert_eq!(polls(&four, "full"), 2.0);
    assert_eq!(full_jobs_requests(&requests_from(&state, n), V44), 1);
    assert_eq!(job_metrics(&four), from_scratch(&url, V44).await);
}

#[tokio::test]
async fn many_polls_with_changes_match_full_polls() {
    let (state, url, mut p) = setup(V44, opts(V44, 5)).await;
    p.poll().await;
    let ids: Vec<u64> = {
        let s = state.lock().unwrap();
        s.live
            .as_ref()
            .unwrap()
            .jobs
            .iter()
            .map(LiveJobs::job_id)
            .collect()
    };
    for (round, id) in ids.iter().enumerate().take(12) {
        live(&state, |l| match round % 3 {
            0 => l.remove(*id),
            1 => l.edit(*id, |j| set_state(j, &["COMPLETED"])),
            _ => l.add_copy(*id, 20_000 + round as u64),
        });
        let set = p.poll().await;
        assert_eq!(
            job_metrics(&set),
            from_scratch(&url, V44).await,
            "round {round}"
        );
    }
}

/// The self-metrics of incremental polling pass `promtool check metrics`.
#[tokio::test]
async fn self_metrics_lint_clean() {
    let (_state, _url, mut p) = setup(V44, opts(V44, 10)).await;
    p.poll().await;
    let set = p.poll().await;
    assert_eq!(set.value("slurm_exporter_jobs_table_jobs", &[]), Some(45.0));
    let text = set.encode_text();
    for name in [
        "slurm_exporter_jobs_polls_total",
        "slurm_exporter_jobs_refetched_total",
        "slurm_exporter_jobs_table_jobs",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
    }
    golden::lint("incremental polling self-metrics", &text);
}

/// `/job/{id}` of a running array task (recorded, Slurm 25.11.7) parses into
/// the one record the table re-fetches.
#[test]
fn recorded_single_job_parses() {
    let body = std::fs::read(fixtures().join("slurmrestd/v0.0.44/slurm_job_36.json")).unwrap();
    let mut jobs: Vec<slurm_gpu_exporter::model::Job> = Vec::new();
    slurmrestd::parse_jobs(V44, &mut &body[..], &mut jobs).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].job_id, jobs[0].array_job_id, jobs[0].array_task_id),
        (36, Some(34), Some(0))
    );
}

/// `Api::cancel_job` sends `DELETE /slurm/vX/job/{id}`: the job leaves the
/// list (the next poll no longer shows it); a second cancel is Slurm's
/// "Invalid job id" error, with its error number.
#[tokio::test]
async fn cancel_job_deletes_the_job_and_reports_slurm_errors() {
    let (state, url, mut p) = setup(V44, opts(V44, 1)).await;
    let api = slurmrestd::Api::new(cl(&url));
    let id = {
        let s = state.lock().unwrap();
        LiveJobs::job_id(&s.live.as_ref().unwrap().jobs[0])
    };
    let before = job_metrics(&p.poll().await);
    api.cancel_job(V44, id).await.unwrap();
    assert_eq!(
        state.lock().unwrap().deletes,
        vec![format!("/slurm/v0.0.44/job/{id}")]
    );
    assert!(!state
        .lock()
        .unwrap()
        .live
        .as_ref()
        .unwrap()
        .jobs
        .iter()
        .any(|j| LiveJobs::job_id(j) == id));
    let after = job_metrics(&p.poll().await);
    assert_ne!(before, after, "the cancelled job still counted");
    assert_eq!(after, from_scratch(&url, V44).await);

    let e = api.cancel_job(V44, id).await.unwrap_err();
    assert_eq!(e.kind(), "delete");
    assert_eq!(e.slurm_errors(), vec![2017]);
    assert!(
        e.to_string()
            .starts_with(&format!("DELETE /slurm/v0.0.44/job/{id}: HTTP 500")),
        "{e}"
    );
}
