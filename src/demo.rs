//! `demo`: the real cluster scraper polling a replay of recorded slurmrestd
//! responses (Slurm 25.11.7, API v0.0.44), bundled into the binary. No cluster needed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::cli::{parse_duration, WebArgs};
use crate::cluster::poller::{PollOptions, Poller};
use crate::cluster::spawn_poll_loop;
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

    let web = server::WebServer::bind(&args.web, DEFAULT_LISTEN).await?;
    tracing::info!(
        "demo: replaying Slurm 25.11.7 (API v0.0.44) recordings from {replay_addr}; metrics at {}",
        web.metrics_url()
    );
    eprintln!(
        "slurm-gpu-exporter demo: open {} (Ctrl-C to stop)",
        web.metrics_url()
    );
    web.serve(
        "slurm-gpu-exporter demo",
        vec![cluster],
        server::shutdown_signal(),
    )
    .await
    .context("HTTP server failed")
}
