//! `demo`: the real cluster scraper polling a replay of recorded slurmrestd
//! responses (Slurm 25.11.7, API v0.0.44), bundled into the binary, and the
//! real node agent reading a synthetic p5-like node (procfs/sysfs tree written
//! to a temp dir, eight fake H100s) whose GPU processes belong to the recorded
//! cluster's running GPU jobs, so the GPU-by-account joins work. No cluster needed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::cli::{parse_duration, WebArgs};
use crate::cluster::poller::{PollOptions, Poller};
use crate::cluster::spawn_poll_loop;
use crate::node::sources::fake::FakeNvml;
use crate::node::sources::nvml::GpuProcess;
use crate::node::sources::procfs::Limit;
use crate::node::testkit::{write_efa_device, write_process, ProcSpec};
use crate::node::{Agent, AgentConfig, CollectionThread};
use crate::replay::{self, Recording};
use crate::server::{self, Publisher};
use crate::slurmrestd::client::{Client, ClientOptions, TokenSource};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9342";

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub web: WebArgs,

    /// Interval between polls of the replayed slurmrestd.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub poll_interval: Duration,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let replay_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the replay slurmrestd")?;
    let replay_addr = replay_listener.local_addr()?;
    tokio::spawn(replay::serve_tcp(
        replay_listener,
        Recording::bundled_demo().handler(None),
    ));

    let client = Client::new(ClientOptions {
        url: format!("http://{replay_addr}"),
        token: TokenSource::None,
        user_name: None,
        timeout: Duration::from_secs(10),
        max_body_bytes: 64 << 20,
        ca_file: None,
    })?;
    let cluster = Publisher::new();
    let opts = PollOptions {
        jobs_per_user: true,
        ..PollOptions::default()
    };
    spawn_poll_loop(
        Poller::new(Arc::new(client), opts),
        args.poll_interval,
        cluster.clone(),
    );

    let node_root = tempfile_dir()?;
    let gpus = write_demo_node(&node_root).context("cannot write the demo node tree")?;
    let agent = Agent::new(
        AgentConfig::new(DEMO_NODE, node_root.join("proc"), node_root.join("sys")),
        Some(gpus.factory()),
    )?;
    let node = Publisher::new();
    let collection = CollectionThread::spawn(agent, Duration::from_secs(5), node.clone())?;

    let web = server::WebServer::bind(&args.web, DEFAULT_LISTEN).await?;
    tracing::info!(
        "demo: replaying Slurm 25.11.7 (API v0.0.44) recordings from {replay_addr}; node agent reads {}; metrics at {}",
        node_root.display(),
        web.metrics_url()
    );
    eprintln!(
        "slurm-gpu-exporter demo: open {} (Ctrl-C to stop)",
        web.metrics_url()
    );
    let served = web
        .serve(
            "slurm-gpu-exporter demo",
            vec![cluster, node],
            server::shutdown_signal(),
        )
        .await;
    collection.stop().await;
    let _ = std::fs::remove_dir_all(&node_root);
    served.context("HTTP server failed")
}

/// The recorded cluster's GPU node.
const DEMO_NODE: &str = "vm";

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("slurm-gpu-exporter-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Writes a node tree whose job processes are the recorded running GPU jobs
/// (job, user, account, GPU indices as in the recording's `gres_detail`),
/// four EFA devices and slurmd; returns eight fake H100s running those processes.
pub fn write_demo_node(root: &std::path::Path) -> std::io::Result<FakeNvml> {
    let proc_root = root.join("proc");
    let sys = root.join("sys");
    for d in 0..4 {
        write_efa_device(&sys, &format!("rdmap{}s0", 16 + d * 16), d, false)?;
    }
    let unlimited = (Limit::Unlimited, Limit::Unlimited);
    write_process(
        &proc_root,
        &ProcSpec {
            pid: 1200,
            comm: "slurmd",
            cgroup: "0::/system.slice/slurmd.service\n".into(),
            memlock: unlimited,
            environ: &[],
        },
    )?;
    // (job, user, account, GPUs, memlock): job 32 forgot `ulimit -l unlimited`.
    type DemoJob<'a> = (&'a str, &'a str, &'a str, &'a [usize], (Limit, Limit));
    let jobs: [DemoJob<'_>; 4] = [
        ("29", "gildong", "ai_project", &[0, 1], unlimited),
        ("30", "alice", "ai_project", &[2, 3], unlimited),
        ("31", "alice", "hpc_project", &[5, 6], unlimited),
        (
            "32",
            "gildong",
            "hpc_project",
            &[4],
            (Limit::Bytes(65536), Limit::Bytes(65536)),
        ),
    ];
    let gpus = FakeNvml::h100x8();
    let mut pid = 2000;
    for (job, user, account, indices, memlock) in jobs {
        let env = [
            ("SLURM_JOB_ID", job),
            ("SLURM_JOB_USER", user),
            ("SLURM_JOB_ACCOUNT", account),
        ];
        for (rank, gpu) in indices.iter().enumerate() {
            pid += 1;
            write_process(
                &proc_root,
                &ProcSpec {
                    pid,
                    comm: "python",
                    cgroup: format!(
                        "0::/system.slice/slurmstepd.scope/job_{job}/step_0/user/task_{rank}\n"
                    ),
                    memlock,
                    environ: &env,
                },
            )?;
            gpus.set_processes(
                *gpu,
                vec![GpuProcess {
                    pid,
                    used_memory_bytes: Some((20 + *gpu as u64) << 30),
                }],
            );
        }
    }
    Ok(gpus)
}
