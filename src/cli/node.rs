//! `node` flags: the node agent's paths, collectors and GPU backend; turned
//! into a [`NodeConfig`] for [`crate::node::run`]. The `--collector.<name>`
//! flags come from the node collector registry, the value lists of
//! `--gpu.backend` and `--gpu.slurm-order` are defined here.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, ValueEnum};

use super::parse_duration;
use crate::node::collectors::{CollectorSelection, REGISTRY};
use crate::node::sources::gres_conf::OrderFlag;
use crate::node::{GpuBackendKind, NodeConfig};
use crate::server::WebArgs;

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub web: WebArgs,

    /// Slurm node name, put on every series as the `node` label. Overrides
    /// the name found from the slurmd process (its `-N`, else its host name),
    /// which is the default.
    #[arg(long = "slurm-node-name", env = "SLURM_GPU_EXPORTER_SLURM_NODE_NAME")]
    pub slurm_node_name: Option<String>,

    /// `node` label while no slurmd is found under --path.procfs (default:
    /// the short hostname; in Kubernetes, the node name from the downward API).
    #[arg(
        long = "slurm-node-name.fallback",
        env = "SLURM_GPU_EXPORTER_SLURM_NODE_NAME_FALLBACK"
    )]
    pub slurm_node_name_fallback: Option<String>,

    /// procfs mount point (`/host/proc` in the DaemonSet).
    #[arg(
        long = "path.procfs",
        env = "SLURM_GPU_EXPORTER_PATH_PROCFS",
        default_value = "/proc"
    )]
    pub procfs: PathBuf,

    /// sysfs mount point (`/host/sys` in the DaemonSet).
    #[arg(
        long = "path.sysfs",
        env = "SLURM_GPU_EXPORTER_PATH_SYSFS",
        default_value = "/sys"
    )]
    pub sysfs: PathBuf,

    /// Background collection interval; scrapes are served from the last collection.
    #[arg(
        long = "collect-interval",
        env = "SLURM_GPU_EXPORTER_COLLECT_INTERVAL",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub collect_interval: Duration,

    /// `--collector.<name>=<bool>` for every collector of the registry.
    #[command(flatten)]
    pub collectors: CollectorSelection,

    /// DCGM-style job-mapping directory (files named by GPU index, one job
    /// id per line), e.g. Slinky's /var/lib/dcgm-exporter/job-mapping.
    /// Repeatable; comma-separated in the environment variable.
    #[arg(
        long = "collector.jobs.mapping-dir",
        env = "SLURM_GPU_EXPORTER_COLLECTOR_JOBS_MAPPING_DIR",
        value_delimiter = ','
    )]
    pub mapping_dirs: Vec<PathBuf>,

    /// NVML library to load (default: libnvidia-ml.so.1 from the loader path).
    #[arg(long = "nvml.library", env = "SLURM_GPU_EXPORTER_NVML_LIBRARY")]
    pub nvml_library: Option<PathBuf>,

    /// GPU backend; `fake` serves eight simulated H100s (testing only).
    #[arg(long = "gpu.backend", env = "SLURM_GPU_EXPORTER_GPU_BACKEND", value_enum, default_value_t = GpuBackendKind::Nvml)]
    pub gpu_backend: GpuBackendKind,

    /// Fake backends only: these GPU indices report 0 % utilization (and so
    /// 0 SM activity), e.g. the GPUs a test's idle job holds.
    #[arg(long = "gpu.fake-idle", value_delimiter = ',', hide = true)]
    pub gpu_fake_idle: Vec<u32>,

    /// How the `gpu` label numbers GPUs, so it equals the index Slurm gives
    /// jobs (`slurm_job_gpus{gpu}`): `auto` reads slurmd's gres.conf
    /// (AutoDetect=nvml: PCI order; AutoDetect=nvidia: device file order;
    /// else the File= order), NVML's PCI order when none is found.
    #[arg(long = "gpu.slurm-order", env = "SLURM_GPU_EXPORTER_GPU_SLURM_ORDER", value_enum, default_value_t = OrderFlag::Auto)]
    pub gpu_slurm_order: OrderFlag,

    /// gres.conf to read the GPU order from (default: slurmd's own, found
    /// through /proc/<slurmd>/root: its configless conf-cache, else /etc/slurm).
    #[arg(long = "slurm.gres-conf", env = "SLURM_GPU_EXPORTER_SLURM_GRES_CONF")]
    pub gres_conf: Option<PathBuf>,

    /// Longest a collection waits for NVML; past it the GPU collector
    /// reports down for that collection and the rest is published.
    #[arg(
        long = "gpu.timeout",
        env = "SLURM_GPU_EXPORTER_GPU_TIMEOUT",
        default_value = "5s",
        value_parser = parse_duration
    )]
    pub gpu_timeout: Duration,

    /// Collect once, print the Prometheus text format to stdout, and exit.
    #[arg(long = "once")]
    pub once: bool,
}

impl NodeArgs {
    pub fn config(self) -> NodeConfig {
        NodeConfig {
            web: self.web,
            slurm_node_name: self.slurm_node_name,
            slurm_node_name_fallback: self.slurm_node_name_fallback,
            procfs: self.procfs,
            sysfs: self.sysfs,
            collect_interval: self.collect_interval,
            collectors: self.collectors,
            mapping_dirs: self.mapping_dirs,
            nvml_library: self.nvml_library,
            gpu_backend: self.gpu_backend,
            gpu_fake_idle: self.gpu_fake_idle,
            gpu_slurm_order: self.gpu_slurm_order,
            gres_conf: self.gres_conf,
            gpu_timeout: self.gpu_timeout,
            once: self.once,
        }
    }
}

/// `--collector.<name>=<bool>` for every entry of the node collector registry.
impl FromArgMatches for CollectorSelection {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut sel = Self::all();
        sel.update_from_arg_matches(m)?;
        Ok(sel)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for s in REGISTRY {
            if let Some(on) = m.get_one::<bool>(s.flag) {
                self.set(s.name, *on);
            }
        }
        Ok(())
    }
}

impl Args for CollectorSelection {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        REGISTRY.iter().fold(cmd, |cmd, s| {
            cmd.arg(
                Arg::new(s.flag)
                    .long(s.flag)
                    .env(s.env)
                    .help(s.help)
                    .value_name(s.env.trim_start_matches("SLURM_GPU_EXPORTER_"))
                    .action(ArgAction::Set)
                    .value_parser(clap::value_parser!(bool))
                    .default_value("true"),
            )
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl ValueEnum for GpuBackendKind {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            GpuBackendKind::Nvml,
            GpuBackendKind::Fake,
            GpuBackendKind::FakeFaulty,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            GpuBackendKind::Nvml => {
                PossibleValue::new("nvml").help("NVML (`libnvidia-ml.so.1`, loaded at run time)")
            }
            GpuBackendKind::Fake => PossibleValue::new("fake")
                .help("Eight fake H100s, for demos and measurements on machines without GPUs"),
            GpuBackendKind::FakeFaulty => PossibleValue::new("fake-faulty").help(
                "Eight fake H100s with faults (a lost GPU, XIDs, ECC, row remap, \
                 thermal slowdown), for alert tests and demos",
            ),
        })
    }
}

impl ValueEnum for OrderFlag {
    fn value_variants<'a>() -> &'a [Self] {
        &[OrderFlag::Auto, OrderFlag::Nvml, OrderFlag::DeviceFile]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            OrderFlag::Auto => PossibleValue::new("auto").help(
                "From gres.conf (slurmd's view, or --slurm.gres-conf); NVML order if none is found",
            ),
            OrderFlag::Nvml => PossibleValue::new("nvml")
                .help("NVML's PCI order (Slurm's order with AutoDetect=nvml)"),
            OrderFlag::DeviceFile => PossibleValue::new("device-file")
                .help("Device minor order (AutoDetect=nvidia, or File=/dev/nvidia[0-N])"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn node_flags_become_the_node_config() {
        let cli = Cli::try_parse_from([
            "x",
            "node",
            "--collector.efa=false",
            "--gpu.backend",
            "fake-faulty",
            "--gpu.slurm-order",
            "device-file",
            "--gpu.fake-idle",
            "1,3",
            "--slurm-node-name",
            "n7",
            "--once",
        ])
        .unwrap();
        let Command::Node(a) = cli.command else {
            panic!("not node")
        };
        let c = a.config();
        assert!(!c.collectors.enabled("efa") && c.collectors.enabled("gpu"));
        assert_eq!(c.gpu_backend, GpuBackendKind::FakeFaulty);
        assert_eq!(c.gpu_slurm_order, OrderFlag::DeviceFile);
        assert_eq!(c.gpu_fake_idle, [1, 3]);
        assert_eq!(c.slurm_node_name.as_deref(), Some("n7"));
        assert!(c.once);
        assert_eq!(c.gpu_timeout, Duration::from_secs(5));
        assert_eq!(c.collect_interval, Duration::from_secs(10));
        assert_eq!(
            c.web.listen_address.as_deref(),
            Some(crate::node::DEFAULT_LISTEN)
        );
    }
}
