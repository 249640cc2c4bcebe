//! Conditional `/nodes` polling (`?update_time=`) against a mock slurmrestd
//! whose node list the tests change between polls (`common::LiveNodes`,
//! which answers as Slurm 22.05 did live: 304 when no node changed, HTTP 500
//! `errno -1` when nodes changed but partitions did not). After every poll
//! the node and partition metrics are compared with a from-scratch poll of
//! the same node list.

mod common;
#[path = "support/golden.rs"]
mod golden;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use slurm_gpu_exporter::cluster::poller::{PollOptions, Poller};
use slurm_gpu_exporter::exposition::MetricSet;
use slurm_gpu_exporter::slurmrestd::client::{Client, TokenSource};
use slurm_gpu_exporter::slurmrestd::ApiVersion;

const V38: ApiVersion = ApiVersion::V0038;
const V44: ApiVersion = ApiVersion::V0044;

fn opts(v: ApiVersion, full_every: u32) -> PollOptions {
    PollOptions {
        pinned_version: Some(v),
        jobs: false,
        nodes_update_time: true,
        nodes_full_poll_every: full_every,
        ..PollOptions::default()
    }
}

fn cl(url: &str) -> Arc<Client> {
    client(url, TokenSource::None, Duration::from_secs(5), 64 << 20)
}

async fn setup(v: ApiVersion, o: PollOptions) -> (Mock, String, Poller) {
    let state = mock(vec![(v, recording(v))]);
    state.lock().unwrap().live_nodes = Some(LiveNodes::from_recording(v));
    let url = start_tcp(state.clone()).await;
    let p = Poller::new(cl(&url), o);
    (state, url, p)
}

fn live(state: &Mock, f: impl FnOnce(&mut LiveNodes)) {
    f(state.lock().unwrap().live_nodes.as_mut().unwrap())
}

/// Every metric computed from the node list.
fn node_metrics(set: &MetricSet) -> String {
    let text = set.encode_text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let name = l
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            name.starts_with("slurm_cluster_node") || name.starts_with("slurm_cluster_partition")
        })
        .collect();
    assert!(lines.len() > 10, "no node metrics:\n{text}");
    lines.join("\n")
}

/// Node metrics of a fresh exporter polling the mock's current node list.
async fn from_scratch(url: &str, v: ApiVersion) -> String {
    let mut p = Poller::new(
        cl(url),
        PollOptions {
            pinned_version: Some(v),
            jobs: false,
            ..PollOptions::default()
        },
    );
    node_metrics(&p.poll().await)
}

fn polls(set: &MetricSet, kind: &str) -> f64 {
    set.value("slurm_exporter_nodes_polls_total", &[("kind", kind)])
        .unwrap()
}

/// The `/nodes` requests made since request number `from`.
fn nodes_requests(state: &Mock, v: ApiVersion, from: usize) -> Vec<String> {
    let p = v.slurm_path("nodes/");
    state.lock().unwrap().requests[from..]
        .iter()
        .map(|r| r.0.clone())
        .filter(|r| r.starts_with(&p))
        .collect()
}

fn request_count(state: &Mock) -> usize {
    state.lock().unwrap().requests.len()
}

fn conditional(r: &str) -> bool {
    r.contains("?update_time=")
}

fn set_load(n: &mut serde_json::Value, v: ApiVersion, load: u64) {
    n["cpu_load"] = if v == V38 {
        serde_json::json!(load)
    } else {
        serde_json::json!({"set": true, "infinite": false, "number": load})
    };
}

fn nodes_errors(set: &MetricSet) -> f64 {
    set.encode_text()
        .lines()
        .filter(|l| l.starts_with("slurm_exporter_errors_total{endpoint=\"nodes\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One poll: its set and the `/nodes` requests it made.
async fn poll(p: &mut Poller, state: &Mock, v: ApiVersion) -> (MetricSet, Vec<String>) {
    let n = request_count(state);
    let set = p.poll().await;
    (set, nodes_requests(state, v, n))
}

#[tokio::test]
async fn v0038_unchanged_nodes_answer_304_and_keep_the_list() {
    let (state, url, mut p) = setup(V38, opts(V38, 10)).await;
    let (set, reqs) = poll(&mut p, &state, V38).await;
    assert_eq!(reqs.len(), 1);
    assert!(!conditional(&reqs[0]), "first poll has nothing to keep");
    assert_eq!(node_metrics(&set), from_scratch(&url, V38).await);

    let (set, reqs) = poll(&mut p, &state, V38).await;
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(conditional(&reqs[0]), "{reqs:?}");
    assert_eq!(polls(&set, "unchanged"), 1.0);
    assert_eq!(polls(&set, "full"), 1.0);
    assert_eq!(
        set.value("slurm_exporter_endpoint_up", &[("endpoint", "nodes")]),
        Some(1.0)
    );
    assert_eq!(
        set.value(
            "slurm_exporter_response_size_bytes",
            &[("endpoint", "nodes")]
        ),
        Some(0.0),
        "a 304 moves no body"
    );
    assert_eq!(node_metrics(&set), from_scratch(&url, V38).await);
}

#[tokio::test]
async fn changed_nodes_with_unchanged_partitions_fall_back_in_the_same_poll() {
    for v in [V38, V44] {
        let (state, url, mut p) = setup(v, opts(v, 10)).await;
        p.poll().await;
        let before = from_scratch(&url, v).await;
        // A node ping brings a new CPU load: nodes changed, partitions not.
        live(&state, |l| l.edit(0, |n| set_load(n, v, 4242)));
        let (set, reqs) = poll(&mut p, &state, v).await;
        assert_eq!(
            reqs.len(),
            2,
            "{v}: conditional, then unconditional: {reqs:?}"
        );
        assert!(
            conditional(&reqs[0]) && !conditional(&reqs[1]),
            "{v}: {reqs:?}"
        );
        let after = node_metrics(&set);
        assert_ne!(after, before, "{v}: the change shows");
        assert!(after.contains("42.42"), "{v}: load 4242 = 42.42");
        assert_eq!(after, from_scratch(&url, v).await, "{v}");
        assert_eq!(nodes_errors(&set), 0.0, "{v}: the expected 500 is no error");
        assert_eq!(polls(&set, "full"), 2.0, "{v}");

        // Back-off: the next poll skips the conditional request.
        let (_, reqs) = poll(&mut p, &state, v).await;
        assert_eq!(reqs.len(), 1, "{v}: {reqs:?}");
        assert!(!conditional(&reqs[0]), "{v}: {reqs:?}");
    }
}

/// Slurm 24.11 (v0.0.40/v0.0.41) cannot parse an epoch `update_time`:
/// `/nodes/?update_time=` answers HTTP 500 with errors 9202 and 9000. The
/// poll repeats it unconditionally at once, and the version never gets a
/// conditional `/nodes` request again (no back-off cycle of failures).
#[tokio::test]
async fn refused_update_time_is_dropped_for_the_version() {
    let v = ApiVersion::V0041;
    let (state, url, mut p) = setup(v, opts(v, 1000)).await;
    live(&state, |l| {
        l.conditional_answer = Some((
            500,
            "application/json",
            live_body("24.11.5", v, "_err_slurm_nodes_update_time.json"),
        ))
    });
    let supported = |s: &MetricSet| {
        s.value(
            "slurm_exporter_update_time_supported",
            &[("endpoint", "nodes")],
        )
    };
    let (first, _) = poll(&mut p, &state, v).await;
    assert_eq!(supported(&first), Some(1.0));
    let (second, reqs) = poll(&mut p, &state, v).await;
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(conditional(&reqs[0]) && !conditional(&reqs[1]), "{reqs:?}");
    assert_eq!(supported(&second), Some(0.0));
    assert_eq!(nodes_errors(&second), 0.0);
    assert_eq!(node_metrics(&second), from_scratch(&url, v).await);
    for i in 0..20 {
        live(&state, |l| l.edit(0, |n| set_load(n, v, 100 + i)));
        let (set, reqs) = poll(&mut p, &state, v).await;
        assert_eq!(reqs.len(), 1, "poll {i}: {reqs:?}");
        assert!(!conditional(&reqs[0]), "poll {i}: {reqs:?}");
        assert_eq!(supported(&set), Some(0.0));
        assert_eq!(node_metrics(&set), from_scratch(&url, v).await, "poll {i}");
    }
}

#[tokio::test]
async fn backoff_doubles_while_nodes_keep_changing_and_resets_on_no_change() {
    let v = V44;
    let (state, url, mut p) = setup(v, opts(v, 1000)).await;
    p.poll().await;
    let mut pattern = String::new();
    for i in 0..12 {
        live(&state, |l| l.edit(0, |n| set_load(n, v, 100 + i)));
        let (set, reqs) = poll(&mut p, &state, v).await;
        pattern.push(if conditional(&reqs[0]) { 'c' } else { 'u' });
        assert_eq!(node_metrics(&set), from_scratch(&url, v).await, "poll {i}");
    }
    // Failures back off 1, 2, 4, 8 polls: c u c uu c uuuu c u…
    assert_eq!(pattern, "cucuucuuuucu");
    // Quiet again: after the back-off runs out, "no change" answers resume.
    let mut unchanged_seen = false;
    for _ in 0..20 {
        let (set, reqs) = poll(&mut p, &state, v).await;
        if reqs.len() == 1 && conditional(&reqs[0]) {
            unchanged_seen = true;
            assert_eq!(node_metrics(&set), from_scratch(&url, v).await);
        }
    }
    assert!(unchanged_seen);
    let (_, reqs) = poll(&mut p, &state, v).await;
    assert!(
        conditional(&reqs[0]),
        "no back-off after a no-change answer: {reqs:?}"
    );
}

#[tokio::test]
async fn v0044_no_change_error_1900_or_warning_keeps_the_list() {
    for warning in [false, true] {
        let (state, url, mut p) = setup(V44, opts(V44, 10)).await;
        live(&state, |l| l.no_change_warning = warning);
        p.poll().await;
        let (set, reqs) = poll(&mut p, &state, V44).await;
        assert_eq!(reqs.len(), 1, "warning={warning}: {reqs:?}");
        assert!(conditional(&reqs[0]));
        assert_eq!(polls(&set, "unchanged"), 1.0, "warning={warning}");
        assert_eq!(nodes_errors(&set), 0.0);
        assert_eq!(node_metrics(&set), from_scratch(&url, V44).await);
    }
}

#[tokio::test]
async fn nodes_and_partitions_changed_is_one_request() {
    let (state, url, mut p) = setup(V44, opts(V44, 10)).await;
    p.poll().await;
    live(&state, |l| {
        l.edit(1, |n| n["reason"] = serde_json::json!("cable swap"));
        l.touch_partitions();
    });
    let (set, reqs) = poll(&mut p, &state, V44).await;
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(conditional(&reqs[0]));
    assert_eq!(polls(&set, "full"), 2.0);
    let m = node_metrics(&set);
    assert!(m.contains("cable swap"), "{m}");
    assert_eq!(m, from_scratch(&url, V44).await);
}

#[tokio::test]
async fn one_poll_in_n_is_unconditional() {
    let (state, _url, mut p) = setup(V44, opts(V44, 3)).await;
    let mut pattern = String::new();
    for _ in 0..7 {
        let (_, reqs) = poll(&mut p, &state, V44).await;
        assert_eq!(reqs.len(), 1);
        pattern.push(if conditional(&reqs[0]) { 'c' } else { 'u' });
    }
    assert_eq!(pattern, "uccuccu");
}

#[tokio::test]
async fn outage_serves_stale_nodes_and_counts_one_error_per_poll() {
    let (state, url, mut p) = setup(V38, opts(V38, 10)).await;
    p.poll().await;
    let good = from_scratch(&url, V38).await;
    live(&state, |l| l.fault = Some(503));
    let (set, reqs) = poll(&mut p, &state, V38).await;
    assert_eq!(reqs.len(), 2, "conditional, then unconditional: {reqs:?}");
    assert_eq!(
        set.value("slurm_exporter_endpoint_up", &[("endpoint", "nodes")]),
        Some(0.0)
    );
    assert_eq!(
        set.value("slurm_exporter_endpoint_stale", &[("endpoint", "nodes")]),
        Some(1.0)
    );
    assert_eq!(nodes_errors(&set), 1.0);
    assert_eq!(node_metrics(&set), good, "last good list served");

    live(&state, |l| l.fault = None);
    let (set, _) = poll(&mut p, &state, V38).await;
    assert_eq!(
        set.value("slurm_exporter_endpoint_up", &[("endpoint", "nodes")]),
        Some(1.0)
    );
    assert_eq!(node_metrics(&set), from_scratch(&url, V38).await);
}

#[tokio::test]
async fn disabled_update_time_never_sends_it() {
    let o = PollOptions {
        nodes_update_time: false,
        ..opts(V44, 10)
    };
    let (state, _url, mut p) = setup(V44, o).await;
    for _ in 0..3 {
        let (set, reqs) = poll(&mut p, &state, V44).await;
        assert_eq!(reqs.len(), 1);
        assert!(!conditional(&reqs[0]));
        assert_eq!(
            set.value("slurm_exporter_nodes_polls_total", &[("kind", "full")]),
            None
        );
    }
}

#[tokio::test]
async fn self_metrics_lint_clean() {
    let (state, _url, mut p) = setup(V44, opts(V44, 10)).await;
    p.poll().await;
    let (set, _) = poll(&mut p, &state, V44).await;
    let text = set.encode_text();
    assert!(text.contains("# TYPE slurm_exporter_nodes_polls_total counter"));
    golden::lint("conditional /nodes self-metrics", &text);
}

#[tokio::test]
async fn a_stalled_conditional_request_is_not_repeated() {
    let v = V44;
    let state = mock(vec![(v, recording(v))]);
    state.lock().unwrap().live_nodes = Some(LiveNodes::from_recording(v));
    let url = start_tcp(state.clone()).await;
    let mut p = Poller::new(
        client(&url, TokenSource::None, Duration::from_secs(1), 64 << 20),
        opts(v, 10),
    );
    p.poll().await;
    let good = from_scratch(&url, v).await;
    live(&state, |l| l.stall = true);
    let (set, reqs) = poll(&mut p, &state, v).await;
    assert_eq!(reqs.len(), 1, "no second request after a timeout: {reqs:?}");
    assert!(conditional(&reqs[0]));
    assert_eq!(
        set.value(
            "slurm_exporter_errors_total",
            &[("endpoint", "nodes"), ("kind", "timeout")]
        ),
        Some(1.0)
    );
    assert_eq!(
        set.value("slurm_exporter_endpoint_stale", &[("endpoint", "nodes")]),
        Some(1.0)
    );
    assert_eq!(node_metrics(&set), good, "last good list served");
}

/// Whatever slurmrestd answers to the conditional request that is not a node
/// list or "no change" is followed by an unconditional request: the result
/// stays exact and no error is counted.
#[tokio::test]
async fn garbage_answers_to_the_conditional_request_fall_back() {
    let huge_error = {
        // An error body far over the 64 KiB read for error numbers, with
        // the number 1900 only after the cut: not taken for "no change".
        let mut b = format!(r#"{{"meta":{{"pad":"{}"}},"#, "x".repeat(1 << 20)).into_bytes();
        b.extend_from_slice(br#""errors":[{"error_number":1900}],"nodes":[]}"#);
        bytes::Bytes::from(b)
    };
    let cases: Vec<(&str, (u16, &'static str, bytes::Bytes))> = vec![
        (
            "HTML from a proxy",
            (
                200,
                "text/html",
                "<html><body>502 Bad Gateway</body></html>".into(),
            ),
        ),
        (
            "truncated JSON",
            (
                200,
                "application/json",
                r#"{"nodes":[{"name":"vm","cpus":"#.into(),
            ),
        ),
        (
            "not JSON at all",
            (200, "application/json", "\u{0}\u{ff}garbage".into()),
        ),
        ("a 1 MiB error body", (500, "application/json", huge_error)),
        (
            "a 304 with a body",
            (304, "application/json", "ignored".into()),
        ),
    ];
    for (what, answer) in cases {
        let v = V44;
        let (state, url, mut p) = setup(v, opts(v, 10)).await;
        p.poll().await;
        live(&state, |l| {
            l.edit(0, |n| set_load(n, v, 777));
            l.conditional_answer = Some(answer.clone());
        });
        let (set, reqs) = poll(&mut p, &state, v).await;
        let expect_requests = if answer.0 == 304 { 1 } else { 2 };
        assert_eq!(reqs.len(), expect_requests, "{what}: {reqs:?}");
        assert!(conditional(&reqs[0]), "{what}");
        assert_eq!(nodes_errors(&set), 0.0, "{what}");
        assert_eq!(
            set.value("slurm_exporter_endpoint_up", &[("endpoint", "nodes")]),
            Some(1.0),
            "{what}"
        );
        let m = node_metrics(&set);
        if answer.0 == 304 {
            // 304 means "no change" whatever its body: the previous list.
            assert!(!m.contains("7.77"), "{what}");
        } else {
            assert!(m.contains("7.77"), "{what}: the unconditional list is used");
            assert_eq!(m, from_scratch(&url, v).await, "{what}");
        }
    }
}

/// A conditional answer over the size limit is that poll's error: the
/// unconditional list would be as large, so it is not fetched too.
#[tokio::test]
async fn an_oversized_conditional_answer_is_not_repeated() {
    let v = V44;
    let state = mock(vec![(v, recording(v))]);
    state.lock().unwrap().live_nodes = Some(LiveNodes::from_recording(v));
    let url = start_tcp(state.clone()).await;
    let mut p = Poller::new(
        client(&url, TokenSource::None, Duration::from_secs(5), 1 << 20),
        opts(v, 10),
    );
    p.poll().await;
    let good = from_scratch(&url, v).await;
    let big = bytes::Bytes::from(format!(r#"{{"nodes":[],"pad":"{}"}}"#, "x".repeat(2 << 20)));
    live(&state, |l| {
        l.conditional_answer = Some((200, "application/json", big))
    });
    let (set, reqs) = poll(&mut p, &state, v).await;
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        set.value(
            "slurm_exporter_errors_total",
            &[("endpoint", "nodes"), ("kind", "too_large")]
        ),
        Some(1.0)
    );
    assert_eq!(node_metrics(&set), good, "last good list served");
}
