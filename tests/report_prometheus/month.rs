//! `report` against a real Prometheus: a month of
//! `slurm_account_tres_usage_seconds_total` (with a counter reset, a scrape
//! gap, a series born mid-month and one from the month before) is written as
//! OpenMetrics, turned into TSDB blocks by `promtool tsdb
//! create-blocks-from openmetrics`, and served by `prometheus` on loopback.
//! The cost counter (usage × price, resets alike) and a budget gauge ride
//! along: the report's cost must be the month's usage × price exactly.
//! The same samples are imported into VictoriaMetrics (Debian
//! `victoria-metrics`, single node, its own Prometheus query API) and every
//! assertion runs against both: `report` must give the exact same answer on
//! either engine (their window-edge, `resets` and raw-range semantics differ).
//! Skipped (with a message) when the Debian `prometheus` package is absent;
//! without `victoria-metrics` only Prometheus is checked, unless
//! `REQUIRE_VICTORIA_METRICS=1` (tests/run-all.sh), which makes it a failure.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::real_prometheus::{free_port, prometheus_installed, start_prometheus, Kill};
use slurm_gpu_exporter::cluster::usage::{month_bounds, month_start};
use slurm_gpu_exporter::report::{self, prom::Prometheus, Month};
use slurm_gpu_exporter::slurmrestd::client::{Client, ClientOptions, TokenSource};

/// One scrape a day keeps the block count (one per 2 h window with data)
/// and so promtool and Prometheus start-up fast; the arithmetic is the same.
const STEP: i64 = 86_400;

/// One series: labels, and its value as a function of time (None: no sample).
struct Gen {
    labels: &'static str,
    from: i64,
    to: i64,
    value: Box<dyn Fn(i64) -> Option<f64>>,
}

/// OpenMetrics text of families (name without `_total`, type, series).
fn openmetrics_families(families: &[(&str, &str, &[Gen])]) -> String {
    let mut s = String::new();
    for (family, kind, series) in families {
        let _ = writeln!(s, "# HELP {family} Test series.");
        let _ = writeln!(s, "# TYPE {family} {kind}");
        let sample = if *kind == "counter" {
            format!("{family}_total")
        } else {
            family.to_string()
        };
        for g in series.iter() {
            let mut t = g.from;
            while t <= g.to {
                if let Some(v) = (g.value)(t) {
                    let _ = writeln!(s, "{sample}{{{}}} {v} {t}", g.labels);
                }
                t += STEP;
            }
        }
    }
    s.push_str("# EOF\n");
    s
}

fn have_victoria_metrics() -> bool {
    let ok = Command::new("victoria-metrics")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok && std::env::var_os("REQUIRE_VICTORIA_METRICS").is_some_and(|v| v == "1") {
        panic!("victoria-metrics not installed and REQUIRE_VICTORIA_METRICS=1 (apt-get install victoria-metrics)");
    }
    ok
}

/// Single-node VictoriaMetrics on a free loopback port, keeping a century.
fn start_victoria_metrics(dir: &Path) -> (Kill, String) {
    let port = free_port();
    let child = Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", dir.join("vm").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("vm.log")).unwrap())
        .spawn()
        .unwrap();
    (Kill(child), format!("http://127.0.0.1:{port}"))
}

/// The OpenMetrics samples (timestamps in seconds) as Prometheus text with
/// millisecond timestamps, for VictoriaMetrics' `/api/v1/import/prometheus`.
fn prometheus_text_ms(om: &str) -> String {
    let mut out = String::new();
    for line in om.lines().filter(|l| !l.starts_with('#')) {
        let (rest, ts) = line.rsplit_once(' ').unwrap();
        let _ = writeln!(out, "{rest} {}", ts.parse::<i64>().unwrap() * 1000);
    }
    out
}

/// A plain HTTP/1.0 request to a loopback server; returns the status line.
fn http(url: &str, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read as _, Write as _};
    let addr = url.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    resp.lines().next().unwrap_or_default().to_string()
}

async fn wait_ready(url: &str, log: &Path) {
    // Answers 503 text until the TSDB is loaded; JSON once ready.
    let c = client(url);
    let mut last = None;
    for _ in 0..150 {
        match c
            .get(
                "/api/v1/query?query=vector(1)",
                report::prom::parse_response,
            )
            .await
        {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "prometheus at {url} did not become ready: {last:?}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn client(url: &str) -> Client {
    Client::new(ClientOptions {
        url: url.to_string(),
        token: TokenSource::None,
        user_name: None,
        timeout: Duration::from_secs(30),
        max_body_bytes: 1 << 30,
        ca_file: None,
    })
    .unwrap()
}

#[tokio::test]
async fn month_report_from_real_prometheus() {
    if !prometheus_installed() {
        return;
    }
    // The last complete calendar month before now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let m1 = month_start(now);
    let m0 = month_start(m1 - 1);
    assert_eq!(month_bounds_of(m0), (m0, m1));
    let month_len = m1 - m0;
    let before = m0 - 10 * 86_400;
    let reset_at = m0 + 9 * 86_400;
    let (gap_from, gap_to) = (m0 + 14 * 86_400, m0 + 19 * 86_400);
    let born = m0 + 4 * 86_400;
    let series = vec![
        // 2 GPUs all month, counter from before the month.
        Gen {
            labels: r#"account="ai_project",user="alice",partition="gpu",tres="gres/gpu""#,
            from: before,
            to: m1 + 86_400,
            value: Box::new(move |t| Some(1.0e6 + 2.0 * (t - before) as f64)),
        },
        // 8 CPUs alongside.
        Gen {
            labels: r#"account="ai_project",user="alice",partition="gpu",tres="cpu""#,
            from: before,
            to: m1 + 86_400,
            value: Box::new(move |t| Some(8.0 * (t - before) as f64)),
        },
        // 1 GPU; the scraper lost its state file on day 10: the counter
        // restarts from 0 and the usage since the scrape before is lost.
        Gen {
            labels: r#"account="ai_project",user="gildong",partition="gpu",tres="gres/gpu""#,
            from: before,
            to: m1 + 86_400,
            value: Box::new(move |t| {
                Some(if t < reset_at {
                    5.0e5 + (t - before) as f64
                } else {
                    (t - reset_at) as f64
                })
            }),
        },
        // 0.5 GPU average; no scrapes for five days mid-month (the counter
        // kept counting in the scraper's persisted state).
        Gen {
            labels: r#"account="hpc_project",user="alice",partition="cpu",tres="gres/gpu""#,
            from: before,
            to: m1 + 86_400,
            value: Box::new(move |t| {
                (t <= gap_from || t >= gap_to).then(|| 0.5 * (t - before) as f64)
            }),
        },
        // A user whose first job starts on day 5.
        Gen {
            labels: r#"account="hpc_project",user="gildong",partition="gpu",tres="gres/gpu""#,
            from: born,
            to: m1 + 86_400,
            value: Box::new(move |t| Some((t - born) as f64)),
        },
        // Only the month before: not in this report.
        Gen {
            labels: r#"account="old_project",user="bob",partition="gpu",tres="gres/gpu""#,
            from: before,
            to: m0 - 86_400,
            value: Box::new(move |t| Some((t - before) as f64)),
        },
    ];
    // Money: the cost counter as the scraper credits it, usage × price in the
    // same step (12.29 per GPU-hour, 0.05 per CPU-hour), resets included.
    let usage_of = |i: usize, t: i64| (series[i].value)(t);
    let (gpu, cpu) = (12.29 / 3600.0, 0.05 / 3600.0);
    let costs: Vec<Gen> = [
        (
            0usize,
            r#"account="ai_project",user="alice",partition="gpu",tres="gres/gpu",currency="USD""#,
            gpu,
        ),
        (
            1,
            r#"account="ai_project",user="alice",partition="gpu",tres="cpu",currency="USD""#,
            cpu,
        ),
        (
            2,
            r#"account="ai_project",user="gildong",partition="gpu",tres="gres/gpu",currency="USD""#,
            gpu,
        ),
        (
            3,
            r#"account="hpc_project",user="alice",partition="cpu",tres="gres/gpu",currency="USD""#,
            gpu,
        ),
    ]
    .into_iter()
    .map(|(i, labels, price)| {
        let (from, to) = (series[i].from, series[i].to);
        let samples: Vec<(i64, Option<f64>)> = {
            let mut v = Vec::new();
            let mut t = from;
            while t <= to {
                v.push((t, usage_of(i, t).map(|u| u * price)));
                t += STEP;
            }
            v
        };
        Gen {
            labels,
            from,
            to,
            value: Box::new(move |t| samples.iter().find(|s| s.0 == t).and_then(|s| s.1)),
        }
    })
    .collect();
    // The budget gauge: 2500 GPU-hours for ai_project.
    let budgets = vec![Gen {
        labels: r#"account="ai_project",tres="gres/gpu""#,
        from: before,
        to: m1 + 86_400,
        value: Box::new(|_| Some(2500.0 * 3600.0)),
    }];
    let om = openmetrics_families(&[
        ("slurm_account_tres_usage_seconds", "counter", &series),
        ("slurm_account_tres_cost", "counter", &costs),
        ("slurm_account_budget_seconds", "gauge", &budgets),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (_prom, url) = start_prometheus(dir.path(), &om);
    wait_ready(&url, &dir.path().join("prometheus.log")).await;

    let mut backends = vec![("prometheus", url, _prom)];
    if have_victoria_metrics() {
        let (vm, vm_url) = start_victoria_metrics(dir.path());
        wait_ready(&vm_url, &dir.path().join("vm.log")).await;
        let status = http(
            &vm_url,
            "POST",
            "/api/v1/import/prometheus",
            &prometheus_text_ms(&om),
        );
        assert!(status.contains(" 204 "), "import: {status}");
        // Make the import searchable now rather than after the next flush.
        let status = http(&vm_url, "GET", "/internal/force_flush", "");
        assert!(status.contains(" 200 "), "force_flush: {status}");
        backends.push(("victoria-metrics", vm_url, vm));
    } else {
        eprintln!("victoria-metrics not installed: only Prometheus is checked");
    }
    for (engine, url, _server) in &backends {
        eprintln!("--- {engine} at {url}");
        let url = url.clone();
        let prom = Prometheus {
            client: client(&url),
            url: url.clone(),
        };
        let month = Month {
            year: month_of(m0).0,
            month: month_of(m0).1,
        };
        let tres = vec!["gres/gpu".to_string(), "cpu".to_string()];
        let (window, usage) = report::fetch(&prom, month, &tres, "", "rig25", now)
            .await
            .unwrap();
        assert_eq!((window.start, window.end), (m0, m1));
        let get = |acc: &str, user: &str, t: &str| {
            usage
                .usage
                .get(&("rig25".into(), acc.into(), user.into(), t.into()))
                .copied()
        };
        let len = month_len as f64;
        assert_eq!(get("ai_project", "alice", "gres/gpu"), Some(2.0 * len));
        assert_eq!(get("ai_project", "alice", "cpu"), Some(8.0 * len));
        assert_eq!(
            get("ai_project", "gildong", "gres/gpu"),
            Some(len - STEP as f64)
        );
        assert_eq!(get("hpc_project", "alice", "gres/gpu"), Some(0.5 * len));
        assert_eq!(
            get("hpc_project", "gildong", "gres/gpu"),
            Some((m1 - born) as f64)
        );
        assert_eq!(get("old_project", "bob", "gres/gpu"), None);
        assert!(
            usage.notes.iter().any(|n| n.contains("counter resets")),
            "{:?}",
            usage.notes
        );
        // Cost over the month = the month's usage × price, reset and gap included.
        let cost = |acc: &str, user: &str, t: &str| {
            usage
                .cost
                .get(&("rig25".into(), acc.into(), user.into(), t.into()))
                .copied()
                .unwrap_or(f64::NAN)
        };
        let exact = |got: f64, want: f64| (got - want).abs() <= 1e-12 * want;
        for (acc, user, t, price) in [
            ("ai_project", "alice", "gres/gpu", gpu),
            ("ai_project", "alice", "cpu", cpu),
            ("ai_project", "gildong", "gres/gpu", gpu),
            ("hpc_project", "alice", "gres/gpu", gpu),
        ] {
            let want = get(acc, user, t).unwrap() * price;
            assert!(
                exact(cost(acc, user, t), want),
                "{acc}/{user}/{t}: cost {} != usage x price {want}",
                cost(acc, user, t)
            );
        }
        assert!(usage.currencies.contains("USD") && usage.currencies.len() == 1);
        assert_eq!(
            usage
                .budgets
                .get(&("rig25".into(), "ai_project".into(), "gres/gpu".into())),
            Some(&(2500.0 * 3600.0))
        );

        // The binary, end to end: sreport -P layout in hours.
        let out = Command::new(env!("CARGO_BIN_EXE_slurm-gpu-exporter"))
            .args([
                "report",
                "--prometheus",
                &url,
                "--month",
                &month.to_string(),
            ])
            .args(["-T", "gres/gpu", "-t", "Hours", "-P", "--cluster", "rig25"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        eprintln!("{stdout}{stderr}");
        let hours = |s: f64| (s / 3600.0).round_ties_even() as i64;
        let lost = STEP as f64;
        let total = 2.0 * len + (len - lost) + 0.5 * len + (m1 - born) as f64;
        // Money columns: hpc_project/gildong has no cost series (0.00); the
        // Total Cost of alice in ai_project adds her CPU cost.
        let m = |v: f64| format!("{v:.2}");
        let alice_gpu = 2.0 * len * gpu;
        let ai_gpu = (3.0 * len - lost) * gpu;
        let all_gpu = (3.5 * len - lost) * gpu;
        let alice_cpu = 8.0 * len * cpu;
        for line in [
            "Cluster|Account|Login|Proper Name|TRES Name|Used|Budget|Cost (USD)|Total Cost (USD)"
                .to_string(),
            format!(
                "rig25|root|||gres/gpu|{}||{}|{}",
                hours(total),
                m(all_gpu),
                m(all_gpu + alice_cpu)
            ),
            format!(
                "rig25|ai_project|||gres/gpu|{}|2500|{}|{}",
                hours(3.0 * len - lost),
                m(ai_gpu),
                m(ai_gpu + alice_cpu)
            ),
            format!(
                "rig25|ai_project|alice||gres/gpu|{}||{}|{}",
                hours(2.0 * len),
                m(alice_gpu),
                m(alice_gpu + alice_cpu)
            ),
            format!(
                "rig25|hpc_project|gildong||gres/gpu|{}||0.00|0.00",
                hours((m1 - born) as f64)
            ),
        ] {
            assert!(
                stdout.lines().any(|l| l == line),
                "missing {line:?} in\n{stdout}"
            );
        }
        assert!(
            stderr.contains("note: 1 series had counter resets"),
            "{stderr}"
        );

        // A month the store does not hold: a clear error, non-zero exit.
        let (y, m) = month_of(m0 - 86_400 * 60);
        let out = Command::new(env!("CARGO_BIN_EXE_slurm-gpu-exporter"))
            .args([
                "report",
                "--prometheus",
                &url,
                "--month",
                &format!("{y:04}-{m:02}"),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("does not hold month"), "{engine}: {stderr}");
    }
}

fn month_of(t: i64) -> (i64, u32) {
    let s = slurm_gpu_exporter::cluster::usage::iso_utc(t);
    (s[0..4].parse().unwrap(), s[5..7].parse().unwrap())
}

fn month_bounds_of(t: i64) -> (i64, i64) {
    let (y, m) = month_of(t);
    month_bounds(y, m)
}
