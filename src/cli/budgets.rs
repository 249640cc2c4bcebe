//! `budgets` subcommands.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::slurmrestd::SlurmrestdArgs;
use crate::budgets_apply::ApplyOptions;

#[derive(Debug, Subcommand)]
pub enum BudgetsCommand {
    /// Sets the budgets as GrpTRESMins on the accounts (dry run unless --apply).
    Apply(ApplyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// Budgets file (the cluster scraper's `--budgets` YAML).
    #[arg(long, env = "SLURM_GPU_EXPORTER_BUDGETS")]
    pub budgets: PathBuf,

    #[command(flatten)]
    pub slurmrestd: SlurmrestdArgs,

    /// Cluster whose associations to set; needed when slurmdbd serves several.
    #[arg(long)]
    pub cluster: Option<String>,

    /// Write the changes; without it nothing is written (dry run).
    #[arg(long)]
    pub apply: bool,
}

impl ApplyArgs {
    pub fn options(&self) -> ApplyOptions {
        ApplyOptions {
            budgets: self.budgets.clone(),
            // budgets_apply sets its own answer limit.
            client: self.slurmrestd.client_options(0),
            cluster: self.cluster.clone(),
            apply: self.apply,
        }
    }
}

impl BudgetsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            BudgetsCommand::Apply(args) => crate::budgets_apply::run(args.options()).await,
        }
    }
}
