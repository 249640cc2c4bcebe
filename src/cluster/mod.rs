//! Cluster scraper: polls slurmrestd in the background and serves the latest snapshot.

use clap::Args;

use crate::cli::WebArgs;

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub web: WebArgs,
}

pub async fn run(_args: ClusterArgs) -> anyhow::Result<()> {
    anyhow::bail!("cluster scraper not wired yet")
}
