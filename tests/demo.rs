//! The README's first command: `demo` serves the cluster scraper's metrics
//! from its simulated cluster and the node agents' from its demo nodes, with
//! the GPU-by-account join intact, a landing page, and stops cleanly on
//! SIGTERM; at `--speed` its cluster moves: jobs end, GPU-hours and budgets
//! add up. (Every dashboard panel against a real Prometheus: tests/demo/run.sh.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn start(extra: &[&str]) -> (std::process::Child, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_slurm-gpu-exporter"))
        .args(["demo", "--web.listen-address", &addr])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, addr)
}

fn stop(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "demo exited with {status}");
}

/// Sum of the samples of `name` whose label set contains `labels` (`a="b"` pieces).
fn sum(body: &str, name: &str, labels: &[&str]) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn demo_at_speed_moves_time_and_adds_up_usage_and_budgets() {
    let (child, addr) = start(&[
        "--speed",
        "600",
        "--poll-interval",
        "500ms",
        "--collect-interval",
        "500ms",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first = String::new();
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(r) = get(&addr, "/metrics") {
            if r.starts_with("HTTP/1.1 200")
                && r.contains("slurm_account_tres_usage_seconds_total{")
            {
                if first.is_empty() {
                    first = r.clone();
                }
                last = r;
                // 600x: job 29 (train_llm, <= 108 min) has ended within ~12 s.
                let gpu_h = sum(
                    &last,
                    "slurm_account_tres_usage_seconds_total",
                    &["tres=\"gres/gpu\""],
                );
                if !last.contains("slurm_job_gpus{job_id=\"29\"") && gpu_h > 4.0 * 3600.0 {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let landing = get(&addr, "/").unwrap_or_default();
    let dashboard = get(&addr, "/dashboards/gpu-usage-by-account.json").unwrap_or_default();
    let ready = get(&addr, "/readyz").unwrap_or_default();
    stop(child);

    assert!(!first.is_empty(), "demo never served usage counters");
    assert!(
        !last.contains("slurm_job_gpus{job_id=\"29\""),
        "job 29 still holds GPUs: time does not move"
    );
    let gpu_seconds = sum(
        &last,
        "slurm_account_tres_usage_seconds_total",
        &["tres=\"gres/gpu\""],
    );
    assert!(gpu_seconds > 4.0 * 3600.0, "GPU-seconds {gpu_seconds}");
    // Budgets: the month's use is the counters' growth since the start (less
    // when the cluster's month rolled over meanwhile).
    let used = sum(
        &last,
        "slurm_account_budget_used_seconds",
        &["tres=\"gres/gpu\""],
    );
    assert!(
        used > 0.0 && used <= gpu_seconds + 1.0,
        "budget used {used} vs {gpu_seconds}"
    );
    assert!(
        last.contains("slurm_account_budget_used_ratio{account=\"ai_project\",tres=\"gres/gpu\"}")
    );
    // Money: the demo's typed H100s cost 12.29 USD per GPU-hour, so the GPU
    // cost equals the typed GPU-seconds × 12.29 / 3600.
    let h100_seconds = sum(
        &last,
        "slurm_account_tres_usage_seconds_total",
        &["tres=\"gres/gpu:h100\""],
    );
    let gpu_cost = sum(
        &last,
        "slurm_account_tres_cost_total",
        &["tres=\"gres/gpu\"", "currency=\"USD\""],
    );
    assert!(gpu_cost > 0.0, "no GPU cost");
    let want =
        h100_seconds / 3600.0 * 12.29 + (gpu_seconds - h100_seconds).max(0.0) / 3600.0 * 4.10;
    assert!(
        (gpu_cost - want).abs() <= 1e-6 * want,
        "GPU cost {gpu_cost} vs usage x price {want}"
    );
    // Incremental /jobs polls and conditional /nodes polls run as in production.
    assert!(
        sum(
            &last,
            "slurm_exporter_jobs_polls_total",
            &["kind=\"incremental\""]
        ) > 0.0
    );
    assert!(
        sum(
            &last,
            "slurm_exporter_nodes_polls_total",
            &["kind=\"unchanged\""]
        ) > 0.0
    );
    // The landing page says what runs and where the dashboards are.
    assert!(landing.starts_with("HTTP/1.1 200"), "{landing}");
    for want in [
        "GPU jobs on node vm",
        "slurmrestd jobs</td><td class=\"up\">up",
        "collector gpu",
        "/dashboards/gpu-usage-by-account.json",
        "/alerts/recording-rules.yaml",
        "/docs/metrics.md",
        "report --prometheus",
    ] {
        assert!(landing.contains(want), "landing page lacks {want:?}");
    }
    assert!(dashboard.starts_with("HTTP/1.1 200") && dashboard.contains("\"panels\""));
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
}

#[test]
fn demo_serves_cluster_and_node_metrics() {
    let (child, addr) = start(&[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut body = String::new();
    while Instant::now() < deadline {
        if let Some(r) = get(&addr, "/metrics") {
            if r.starts_with("HTTP/1.1 200") && r.contains("slurm_gpu_job_info{") {
                body = r;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGTERM: the exporter must shut down cleanly.
    stop(child);

    assert!(
        !body.is_empty(),
        "demo never served node and cluster metrics"
    );
    // Recorded cluster: job 29 holds GPUs 0 and 1 of node vm (gres_detail IDX:0-1).
    assert!(body.contains(
        "slurm_job_gpus{job_id=\"29\",account=\"ai_project\",user=\"gildong\",partition=\"gpu\",node=\"vm\",gpu=\"0\"} 1"
    ));
    // The node agent attributes the same GPU to the same job.
    assert!(body.contains("slurm_gpu_job_info{node=\"vm\",gpu=\"0\""));
    assert!(body.contains("job_id=\"29\",user=\"gildong\",account=\"ai_project\"} 1"));
    assert!(body.contains("slurm_exporter_slurmrestd_up 1"));
    assert!(body.contains("slurm_node_collector_up{node=\"vm\",collector=\"efa\"} 1"));
    // The demo's other nodes: gpu-node03 (drained) with a GPU off the bus,
    // gpu-node02 whose NVML has a driver/library version mismatch.
    assert!(body.contains("slurm_gpu_up{node=\"gpu-node03\",gpu=\"7\""));
    assert!(body.contains("slurm_node_collector_up{node=\"gpu-node02\",collector=\"gpu\"} 0"));
}
