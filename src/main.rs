use clap::Parser;
use slurm_gpu_exporter::cli::{init_logging, Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_level, cli.log_format);
    if matches!(cli.command, Command::Cluster(_)) {
        slurm_gpu_exporter::memory::use_single_arena();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("exporter")
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Cluster(args) => slurm_gpu_exporter::cluster::run(args).await,
            Command::Node(args) => slurm_gpu_exporter::node::run(args).await,
            Command::Demo(args) => slurm_gpu_exporter::demo::run(args).await,
            Command::Report(args) => slurm_gpu_exporter::report::run(args).await,
        }
    })
}
