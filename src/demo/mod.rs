//! `demo`: a small living GPU cluster, no cluster needed.
//!
//! [`sim`] serves a Slurm 25.11.7 slurmrestd (API v0.0.44) over HTTP whose
//! clock moves (optionally `--speed` times faster than real time): jobs
//! derived from the bundled recordings start, run and end. The real cluster
//! scraper polls it exactly as in production (version detection,
//! incremental `/jobs` and conditional `/nodes` polling, usage counters with
//! a state file, slurmdbd gap filling, a budgets file), on the simulated
//! clock for its usage accounting. The real node agent reads [`node`]'s
//! synthetic p5-like node, whose fake H100s and EFA devices follow the
//! cluster's running GPU jobs. Both are served on one port with a landing
//! page that says what is running.

pub mod node;
pub mod sim;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::cluster::poller::{PollOptions, Poller};
use crate::cluster::spawn_poll_loop;
use crate::cluster::usage::tracker::{CheckError, UsageTracker};
use crate::node::{Agent, AgentConfig};
use crate::server::{self, html_escape, Publisher, WebArgs};
use crate::slurmrestd::client::Client;
use crate::testkit::replay;
use sim::{Cluster, SimClock};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9342";

/// What `demo` runs with, built by the CLI layer (`crate::cli::demo`).
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub web: WebArgs,
    /// Interval between polls of the simulated slurmrestd (real time).
    pub poll_interval: Duration,
    /// Interval between node agent collections (real time).
    pub collect_interval: Duration,
    /// How much faster than real time the cluster's clock runs.
    pub speed: f64,
    /// Stop the cluster's clock after this much real time.
    pub freeze_after: Option<Duration>,
    /// Builds the cluster scraper for the simulated slurmrestd with the
    /// production flag defaults, which the CLI layer owns.
    pub scraper: fn(&ScraperSettings) -> anyhow::Result<Scraper>,
}

/// What the demo's cluster scraper takes beyond production's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ScraperSettings {
    /// The simulated slurmrestd.
    pub slurmrestd_url: String,
    pub token_file: PathBuf,
    pub usage_state_file: PathBuf,
    /// Longer gaps between polls (simulated time) are filled from slurmdbd.
    pub usage_slurmdb_gap: Duration,
    pub budgets: PathBuf,
    /// Job counts per user as well.
    pub jobs_per_user: bool,
}

/// The demo's cluster scraper, as `cluster` would build it.
pub struct Scraper {
    pub client: Arc<Client>,
    pub poll: PollOptions,
    pub usage: Option<UsageTracker>,
}

/// Monthly budgets of the demo's accounts: at full use the node's 8 GPUs
/// give ~5,900 GPU-hours a month, so both accounts cross their GPU budget.
/// Prices: example AWS on-demand prices per GPU (docs/usage.md#prices), so
/// the cost counters, the money panels and `report`'s cost column have data.
pub const BUDGETS_YAML: &str = "\
# Budgets of the demo cluster's accounts (TRES-hours per calendar month, UTC).
accounts:
  ai_project:
    gpu_hours: 2500
    billing_hours: 60000
  hpc_project:
    gpu_hours: 1200
    cpu_hours: 25000
# Money per TRES-hour (examples, not defaults: docs/usage.md#prices).
prices:
  currency: USD
  gpu_hour:
    default: 4.10     # p4d.24xlarge (8 A100) on-demand $32.77/h / 8 GPUs
    gpu_types:
      h100: 12.29     # p5.48xlarge on-demand $98.32/h / 8 GPUs
  cpu_hour:
    partitions:
      cpu: 0.05       # CPU-only partition; CPUs of GPU nodes are in the GPU price
";

/// A JWT for the simulated slurmrestd (which does not check it), valid for a
/// year, so the token path and `slurm_exporter_token_expiry_timestamp_seconds`
/// run as in production. Unsigned: the exporter only reads its `exp` claim.
fn demo_jwt(now: i64) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.demo",
        b64(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"iat":{now},"exp":{},"sun":"demo"}}"#,
            now + 365 * 86_400
        ))
    )
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The scraper's settings: the simulated slurmrestd, a usage state file
/// and the budgets file in `dir`.
fn scraper_settings(url: &str, dir: &Path, poll_interval: Duration, speed: f64) -> ScraperSettings {
    // A gap between polls longer than this (simulated seconds) is filled from
    // slurmdbd; at speed N, polls are N times further apart in cluster time.
    let gap = (poll_interval.as_secs_f64() * speed * 3.0)
        .max(120.0)
        .ceil();
    ScraperSettings {
        slurmrestd_url: url.to_string(),
        token_file: dir.join("slurmrestd.jwt"),
        usage_state_file: dir.join("usage-state.json"),
        usage_slurmdb_gap: Duration::from_secs(gap as u64),
        budgets: dir.join("budgets.yaml"),
        jobs_per_user: true,
    }
}

pub async fn run(args: DemoConfig) -> anyhow::Result<()> {
    let mut clock = SimClock::new(args.speed);
    if let Some(f) = args.freeze_after {
        clock = clock.freeze_after(f);
    }
    let cluster = Cluster::new(clock.clone());
    let replay_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the demo slurmrestd")?;
    let replay_addr = replay_listener.local_addr()?;
    tokio::spawn(replay::serve_tcp(replay_listener, cluster.handler()));

    let dir = demo_dir()?;
    // Removed however run ends (an error after this point included).
    let _cleanup = RemoveOnDrop(dir.clone());
    std::fs::write(dir.join("budgets.yaml"), BUDGETS_YAML)
        .with_context(|| format!("cannot write {}", dir.display()))?;
    std::fs::write(dir.join("slurmrestd.jwt"), demo_jwt(unix_now()))
        .with_context(|| format!("cannot write {}", dir.display()))?;
    let Scraper {
        client,
        poll,
        usage,
    } = (args.scraper)(&scraper_settings(
        &format!("http://{replay_addr}"),
        &dir,
        args.poll_interval,
        args.speed,
    ))?;
    let usage_clock = clock.clone();
    let mut poller =
        Poller::new(client, poll).with_usage_clock(Arc::new(move || usage_clock.now()));
    if let Some(u) = usage {
        poller = poller.with_usage(u);
    }
    match poller.check_budget_accounts().await {
        Ok(()) | Err(CheckError::Fetch(_)) => {}
        Err(CheckError::Budgets(e)) => return Err(e.into()),
    }
    let cluster_pub = Publisher::new();
    let poll = spawn_poll_loop(poller, args.poll_interval, cluster_pub.clone());

    let node_root = dir.join("node");
    let mut demo_node = node::DemoNode::create(&node_root, cluster.clone())
        .context("cannot write the demo node")?;
    let mut vm_agent = Agent::new(
        AgentConfig::new(
            sim::NODE,
            demo_node.proc_root().to_path_buf(),
            demo_node.sys_root().to_path_buf(),
        ),
        Some(demo_node.gpus().factory()),
    )?;
    let (mut faulty_agent, _faulty_gpus) = node::faulty_node(&dir.join("gpu-node03"))
        .context("cannot write the demo's faulty node")?;
    let (mut mismatch_agent, _mismatch_gpus) = node::mismatch_node(&dir.join("gpu-node02"))
        .context("cannot write the demo's gpu-node02")?;
    let node_pub = Publisher::new();
    let stop = Arc::new(AtomicBool::new(false));
    // One thread follows the cluster and collects the three nodes' agents; their
    // metrics are published as one set (shared families merged).
    let collection = std::thread::Builder::new()
        .name("demo-nodes".into())
        .spawn({
            let stop = stop.clone();
            let node_pub = node_pub.clone();
            let interval = args.collect_interval.max(Duration::from_millis(200));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let start = std::time::Instant::now();
                    if let Err(e) = demo_node.tick() {
                        tracing::warn!(error = %e, "demo node: cannot update its files");
                    }
                    let mut set = vm_agent.collect();
                    set.extend(faulty_agent.collect());
                    set.extend(mismatch_agent.collect());
                    node_pub.publish(&set);
                    let wait = interval.saturating_sub(start.elapsed());
                    let until = std::time::Instant::now() + wait;
                    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(50).min(wait));
                    }
                }
            }
        })?;

    let web = server::WebServer::bind(&args.web, DEFAULT_LISTEN)
        .await?
        .with_about(about(
            cluster.clone(),
            replay_addr.to_string(),
            node_root.clone(),
        ));
    tracing::info!(
        slurmrestd = %replay_addr,
        node_tree = %node_root.display(),
        speed = args.speed,
        "demo: simulated Slurm 25.11.7 cluster (API v0.0.44) and p5-like node"
    );
    let base = web.metrics_url();
    let home = base
        .strip_suffix(&args.web.telemetry_path)
        .unwrap_or(&base)
        .to_string();
    eprintln!(
        "slurm-gpu-exporter demo: open {home}/ (metrics at {base}; Ctrl-C to stop; cluster clock x{})",
        args.speed
    );
    let served = web
        .serve(
            "slurm-gpu-exporter demo",
            vec![cluster_pub, node_pub],
            server::shutdown_signal(),
        )
        .await;
    poll.abort();
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || collection.join()).await;
    served.context("HTTP server failed")
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn demo_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("slurm-gpu-exporter-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// The demo's part of the landing page: the cluster's clock and jobs.
fn about(cluster: Cluster, slurmrestd: String, node_root: PathBuf) -> server::About {
    Arc::new(move || {
        let now = cluster.clock().now();
        let states = cluster.job_states();
        let gpu_jobs = cluster.gpu_jobs();
        let mut rows = String::new();
        for j in &gpu_jobs {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                j.job_id,
                html_escape(&j.name),
                html_escape(&j.account),
                html_escape(&j.user),
                html_escape(&sim_gpu_list(&j.gpus)),
                if node::idles(j.job_id) {
                    "idle (allocated, unused)"
                } else {
                    "busy"
                },
            ));
        }
        let states: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        format!(
            "<p>A simulated Slurm 25.11.7 cluster (slurmrestd API v0.0.44 at <code>{rest}</code>) \
             whose clock runs <b>{speed}×</b> real time; now <b>{when}</b> UTC in the cluster. \
             The cluster scraper polls it as in production; the node agent reads node <code>vm</code> \
             (eight fake H100s, four EFA devices) under <code>{root}</code>, drained <code>gpu-node03</code> \
             (failing GPUs) and <code>gpu-node02</code> (NVML driver/library version mismatch).</p>\
             <p>Jobs in the queue: {states}.</p>\
             <h2>GPU jobs on node vm</h2><table><tr><th>Job</th><th>Name</th><th>Account</th>\
             <th>User</th><th>GPUs</th><th>GPUs are</th></tr>{rows}</table>\
             <p>Budgets (<code>--budgets</code>):</p><pre>{budgets}</pre>\
             <p>Monthly report, with a Prometheus scraping this demo: \
             <code>slurm-gpu-exporter report --prometheus http://127.0.0.1:9090 --month {month} -t Hours</code></p>",
            rest = html_escape(&slurmrestd),
            speed = cluster.clock().speed(),
            when = crate::cluster::usage::iso_utc(now),
            root = html_escape(&node_root.display().to_string()),
            states = html_escape(&states.join(", ")),
            budgets = html_escape(BUDGETS_YAML),
            // Prometheus stores samples at real time: report the real month.
            month = real_month(),
        )
    })
}

fn real_month() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    crate::cluster::usage::iso_utc(now)
        .chars()
        .take(7)
        .collect()
}

fn sim_gpu_list(gpus: &[usize]) -> String {
    gpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
