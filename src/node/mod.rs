//! Node agent: per-node collectors (GPU, EFA, memlock, job attribution).

pub mod sources;

use clap::Args;

use crate::cli::WebArgs;

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub web: WebArgs,
}

pub async fn run(_args: NodeArgs) -> anyhow::Result<()> {
    anyhow::bail!("node agent not wired yet")
}
