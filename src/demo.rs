//! `demo`: serves real metrics from bundled recordings, no cluster needed.

use clap::Args;

use crate::cli::WebArgs;

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub web: WebArgs,
}

pub async fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("demo not wired yet")
}
