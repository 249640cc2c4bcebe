use slurm_gpu_exporter::cli::{init_logging, Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = slurm_gpu_exporter::cli::parse();
    init_logging(&cli.log_level, cli.log_format);
    let debug = slurm_gpu_exporter::cli::wants_error_detail(&cli.log_level);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Not `main() -> Result`: its Debug output adds a backtrace
            // whenever RUST_BACKTRACE is set in the environment. One line,
            // with its causes; the backtrace only at debug log level.
            eprint!("{}", slurm_gpu_exporter::cli::error_report(&e, debug));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if matches!(cli.command, Command::Cluster(_)) {
        slurm_gpu_exporter::allocator::use_single_arena();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("exporter")
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Cluster(args) => slurm_gpu_exporter::cluster::run(args.config()?).await,
            Command::Node(args) => slurm_gpu_exporter::node::run(args.config()).await,
            Command::Demo(args) => slurm_gpu_exporter::demo::run(args.config()).await,
            Command::Report(r) => r.run().await,
            Command::Budgets(cmd) => cmd.run().await,
            Command::IdleJobs(args) => slurm_gpu_exporter::idle_jobs::run(args.options()).await,
            Command::JobReport(args) => slurm_gpu_exporter::report::job::run(args.options()).await,
        }
    })
}
