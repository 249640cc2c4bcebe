//! `job-report` against a real Prometheus: an hour of a 2-GPU job
//! (`slurm_job_gpus`) and the node agent's series for its GPUs (SM activity on
//! GPU 0 only, utilization on both, memory used, an energy counter with a
//! reset), written as OpenMetrics, turned into TSDB blocks by `promtool tsdb
//! create-blocks-from openmetrics` and served by `prometheus` on loopback.
//! Skipped (with a message) when the Debian `prometheus` package is absent.
//! Also: `report job` is not held by the monthly report's environment.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::real_prometheus::{prometheus_installed, start_prometheus};
use slurm_gpu_exporter::report::job::{self, JobReportOptions};
use slurm_gpu_exporter::report::prom::PromOptions;

const STEP: i64 = 60;

type Gen<'a> = (&'a str, Box<dyn Fn(i64) -> Option<f64> + 'a>);

fn family(s: &mut String, name: &str, kind: &str, series: &[Gen], from: i64, to: i64) {
    let _ = writeln!(s, "# HELP {name} Test series.\n# TYPE {name} {kind}");
    let sample = if kind == "counter" {
        format!("{name}_total")
    } else {
        name.to_string()
    };
    for (labels, f) in series {
        let mut t = from;
        while t <= to {
            if let Some(v) = f(t) {
                let _ = writeln!(s, "{sample}{{{labels}}} {v} {t}");
            }
            t += STEP;
        }
    }
}

#[tokio::test]
async fn job_report_from_real_prometheus() {
    if !prometheus_installed() {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Node series from 3 h ago; the job from 2 h ago for an hour (61 samples).
    let from = (now - 3 * 3600) / STEP * STEP;
    let (t0, t1) = (from + 3600, from + 7200);
    let to = now / STEP * STEP - STEP;
    let in_job = move |t: i64| (t0..=t1).contains(&t);
    let gpu = |g: &str| format!(r#"cluster="rig",node="n1",gpu="{g}",uuid="GPU-{g}",model="H100""#);
    let (g0, g1) = (gpu("0"), gpu("1"));
    let mut om = String::new();
    family(
        &mut om,
        "slurm_job_gpus",
        "gauge",
        &[
            (
                r#"cluster="rig",job_id="4242",account="ai",user="alice",partition="gpu",node="n1",gpu="0""#,
                Box::new(move |t| in_job(t).then_some(1.0)),
            ),
            (
                r#"cluster="rig",job_id="4242",account="ai",user="alice",partition="gpu",node="n1",gpu="1""#,
                Box::new(move |t| in_job(t).then_some(1.0)),
            ),
            // Another job on GPU 0 before: not this report's.
            (
                r#"cluster="rig",job_id="4241",account="ai",user="bob",partition="gpu",node="n1",gpu="0""#,
                Box::new(move |t| (t < t0 - 600).then_some(1.0)),
            ),
        ],
        from,
        to,
    );
    // GPU 0: SM activity 0 for the first 20 minutes of the job, then 0.8;
    // 0.9 outside the job. Its utilization says 1.0 throughout (ignored: SM
    // activity wins). GPU 1: no SM activity; utilization 0.5, idle (0.01) in
    // the last 10 minutes.
    let sm0 = move |t: i64| {
        Some(if in_job(t) && t < t0 + 1200 {
            0.0
        } else if in_job(t) {
            0.8
        } else {
            0.9
        })
    };
    let util1 = move |t: i64| Some(if in_job(t) && t > t1 - 600 { 0.01 } else { 0.5 });
    family(
        &mut om,
        "slurm_gpu_sm_active_ratio",
        "gauge",
        &[(&g0, Box::new(sm0))],
        from,
        to,
    );
    family(
        &mut om,
        "slurm_gpu_utilization_ratio",
        "gauge",
        &[(&g0, Box::new(|_| Some(1.0))), (&g1, Box::new(util1))],
        from,
        to,
    );
    family(
        &mut om,
        "slurm_gpu_memory_used_bytes",
        "gauge",
        &[
            (
                &g0,
                Box::new(move |t| {
                    Some(if t == t0 + 1800 {
                        7e10
                    } else if in_job(t) {
                        4e10
                    } else {
                        8e10
                    })
                }),
            ),
            (&g1, Box::new(|_| Some(1e9))),
        ],
        from,
        to,
    );
    // 500 W on GPU 0 (counter restarts at 0 half-way through the job: an
    // agent restart), 100 W on GPU 1.
    let reset = t0 + 1800;
    family(
        &mut om,
        "slurm_gpu_energy_joules",
        "counter",
        &[
            (
                &g0,
                Box::new(move |t| {
                    Some(if t < reset {
                        1e6 + 500.0 * (t - from) as f64
                    } else {
                        500.0 * (t - reset) as f64
                    })
                }),
            ),
            (&g1, Box::new(move |t| Some(100.0 * (t - from) as f64))),
        ],
        from,
        to,
    );
    om.push_str("# EOF\n");

    let dir = tempfile::tempdir().unwrap();
    let (_prom, url) = start_prometheus(dir.path(), &om);
    let args = JobReportOptions {
        job_id: "4242".into(),
        prom: PromOptions {
            url,
            headers: Vec::new(),
            bearer_token_file: None,
            ca_file: None,
            timeout: Duration::from_secs(30),
            selector: "cluster=\"rig\"".into(),
        },
        threshold: 0.05,
        lookback: Duration::from_secs(86_400),
        step: Duration::from_secs(60),
        max_gap: Duration::from_secs(300),
        format: "table".into(),
    };
    let prom = args.prom.connect().unwrap();
    let mut last = None;
    let mut summary = None;
    for _ in 0..150 {
        match job::fetch(&prom, &args, now).await {
            Ok(s) => {
                summary = Some(s);
                break;
            }
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = summary.unwrap_or_else(|| {
        panic!(
            "no report: {last:?}\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        )
    });
    assert_eq!((s.start, s.end), (t0, t1));
    assert_eq!(
        (s.account.as_str(), s.user.as_str(), s.cluster.as_str()),
        ("ai", "alice", "rig")
    );
    assert_eq!(s.gpus.len(), 2);
    let (a, b) = (&s.gpus[0], &s.gpus[1]);
    // GPU 0: 20 idle samples of 61, then 41 at 0.8.
    assert_eq!(a.activity_source, "sm_active");
    assert!(
        (a.activity_mean.unwrap() - 0.8 * 41.0 / 61.0).abs() < 1e-9,
        "{a:?}"
    );
    assert_eq!(a.activity_peak, Some(0.8));
    assert_eq!(a.idle_seconds, 1200.0);
    assert_eq!(a.memory_used_peak_bytes, Some(7e10));
    // 500 W for 3600 s, minus the step before the reset (the restarted
    // counter counts from 0: those 60 s are lost, as in the monthly report).
    assert_eq!(a.energy_joules, Some(500.0 * (3600.0 - 60.0)));
    // GPU 1: utilization; idle in its last 10 samples (t1-540 .. t1): the
    // last one ends the job, so 9 × 60 s.
    assert_eq!(b.activity_source, "utilization");
    assert_eq!(b.activity_peak, Some(0.5));
    assert_eq!(b.idle_seconds, 540.0);
    assert_eq!(b.energy_joules, Some(100.0 * 3600.0));
    assert_eq!(b.memory_used_peak_bytes, Some(1e9));
    let table = job::render(&s);
    assert!(table.contains("Job 4242"), "{table}");

    // An unknown job is an error naming it.
    let mut other = args.clone();
    other.job_id = "999".into();
    let e = job::fetch(&prom, &other, now)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("job 999 has no slurm_job_gpus"), "{e}");
}

/// `report job` does not read the month's flags: their environment
/// variables (set where the monthly report runs) must not make it ask for
/// `--month`. Needs no Prometheus: nothing listens on port 1.
#[test]
fn report_job_is_not_held_by_the_months_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_slurm-gpu-exporter"))
        .args(["report", "job", "5", "--prometheus-timeout", "5s"])
        .env("SLURM_GPU_EXPORTER_PROMETHEUS_URL", "http://127.0.0.1:1")
        .env("SLURM_GPU_EXPORTER_CLUSTER_NAME", "c1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(!stderr.contains("required"), "{stderr}");
}
