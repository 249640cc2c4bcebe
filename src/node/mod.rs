//! Node agent (`slurm-gpu-exporter node`): per-node collectors for GPUs
//! (NVML), GPU → Slurm job attribution, EFA and memlock limits.
//!
//! Collection runs in the background on `--collect-interval`; each pass
//! produces one [`MetricSet`] that is encoded once and published. Scrapes
//! only copy the published bytes, so they never wait on NVML or `/proc`.
//!
//! # Layout
//!
//! - `sources/`: reads, all bounded: `procfs.rs`/`cgroup.rs` (processes and
//!   their job cgroups), `processes.rs` (one process table per cycle),
//!   `sysfs.rs` (EFA), `nvml.rs` (the `GpuBackend` trait and NVML;
//!   `fake.rs` the fake GPUs), `gpu_sample.rs` (the NVML worker thread and
//!   its per-cycle `GpuSample`), `slurmd.rs` (node name), `gres_conf.rs`
//!   (Slurm's GPU order).
//! - `collectors/`: one file per collector behind the
//!   [`collectors::Collector`] trait (`gpu.rs`, `gpu_jobs.rs` = the `jobs`
//!   collector, `efa.rs`, `memlock.rs`), each with its families as constant
//!   `MetricDesc`s and a registry line in [`collectors::REGISTRY`], which
//!   also makes the `--collector.<name>` flags.
//! - this file: [`NodeConfig`] (the flags are `crate::cli::node`'s), and [`Agent::collect`]: one cycle takes the
//!   shared [`collectors::CycleInputs`] (asks NVML for a sample, runs the
//!   collectors that do not need it meanwhile, then the others), adds the
//!   `slurm_node_collector_*` self-metrics, and returns the set in registry
//!   order.

pub mod collectors;
pub mod sources;
// Fixture writers for tests, benches and the demo: not part of the API.
#[doc(hidden)]
pub mod testkit;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::exposition::MetricSet;
use crate::server::{self, Publisher, WebArgs};
use collectors::{
    CollectError, Collector, CollectorSelection, CollectorSpec, CycleInputs, REGISTRY,
};
use sources::fake::FakeNvml;
use sources::gpu_sample::{GpuSample, GpuWorker};
use sources::gres_conf::{GpuNumbering, OrderFlag};
use sources::nvml::{BackendFactory, GpuBackend, NvmlBackend};
use sources::processes::ProcessSnapshot;
use sources::procfs::{JobResolver, ProcFs};
use sources::slurmd::NodeNamer;
use sources::sysfs::SysFs;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:9343";

/// `--gpu.backend` (the flag's values: `crate::cli::node`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuBackendKind {
    /// NVML (`libnvidia-ml.so.1`, loaded at run time).
    Nvml,
    /// Eight fake H100s, for demos and measurements on machines without GPUs.
    Fake,
    /// Eight fake H100s with faults (a lost GPU, XIDs, ECC, row remap,
    /// thermal slowdown), for alert tests and demos.
    FakeFaulty,
}

/// What `node` runs with, built by the CLI layer (`crate::cli::node`).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub web: WebArgs,
    /// The `node` label, overriding the name found from slurmd.
    pub slurm_node_name: Option<String>,
    /// The `node` label while no slurmd is found (default: the short hostname).
    pub slurm_node_name_fallback: Option<String>,
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    /// Background collection interval; scrapes are served from the last collection.
    pub collect_interval: Duration,
    pub collectors: CollectorSelection,
    /// DCGM-style job-mapping directories.
    pub mapping_dirs: Vec<PathBuf>,
    /// NVML library to load (default: libnvidia-ml.so.1 from the loader path).
    pub nvml_library: Option<PathBuf>,
    pub gpu_backend: GpuBackendKind,
    /// Fake backends only: GPU indices that report 0 % utilization.
    pub gpu_fake_idle: Vec<u32>,
    pub gpu_slurm_order: OrderFlag,
    /// gres.conf to read the GPU order from, instead of slurmd's.
    pub gres_conf: Option<PathBuf>,
    /// Longest a collection waits for NVML.
    pub gpu_timeout: Duration,
    /// Collect once, print the text format to stdout, and exit.
    pub once: bool,
}

/// Time source of the self-metrics. `Fixed` makes output reproducible
/// (golden tests): durations read 0 and timestamps the given value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timing {
    Real,
    Fixed { unix_seconds: f64 },
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The `node` label; with `node_from_slurmd`, only while no slurmd is found.
    pub node: String,
    /// Take the `node` label from the slurmd process under `procfs`
    /// ([`sources::slurmd`]), checked every collection.
    pub node_from_slurmd: bool,
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    /// Which collectors of [`collectors::REGISTRY`] run.
    pub collectors: CollectorSelection,
    pub mapping_dirs: Vec<PathBuf>,
    pub gpu_timeout: Duration,
    /// How often the NVML worker polls XID events between samples.
    pub event_poll: Duration,
    /// How the `gpu` label numbers GPUs (slurmd's order).
    pub gpu_order: OrderFlag,
    /// gres.conf to read the order from, instead of slurmd's.
    pub gres_conf: Option<PathBuf>,
    pub timing: Timing,
}

impl AgentConfig {
    /// All collectors on, real timing.
    pub fn new(
        node: impl Into<String>,
        procfs: impl Into<PathBuf>,
        sysfs: impl Into<PathBuf>,
    ) -> Self {
        AgentConfig {
            node: node.into(),
            node_from_slurmd: false,
            procfs: procfs.into(),
            sysfs: sysfs.into(),
            collectors: CollectorSelection::all(),
            mapping_dirs: Vec::new(),
            gpu_timeout: Duration::from_secs(5),
            event_poll: Duration::from_millis(250),
            gpu_order: OrderFlag::Auto,
            gres_conf: None,
            timing: Timing::Real,
        }
    }
}

struct Outcome {
    collector: &'static str,
    error: Option<String>,
    duration: Duration,
}

/// An enabled collector with its registry line.
struct Enabled {
    spec: &'static CollectorSpec,
    collector: Box<dyn Collector>,
}

/// The node agent's collection pipeline, independent of HTTP.
pub struct Agent {
    cfg: AgentConfig,
    procfs: ProcFs,
    sysfs: SysFs,
    gpu_worker: Option<GpuWorker>,
    /// In registry order.
    collectors: Vec<Enabled>,
    resolver: RefCell<JobResolver>,
    namer: Option<NodeNamer>,
    numbering: GpuNumbering,
    last_success: BTreeMap<&'static str, f64>,
    /// Last error per collector, so a persistent failure is logged once.
    last_error: BTreeMap<&'static str, String>,
}

impl Agent {
    /// `gpu`: how the NVML worker builds its backend; `None` reports the GPU
    /// collector down.
    pub fn new(cfg: AgentConfig, gpu: Option<BackendFactory>) -> std::io::Result<Self> {
        let collectors: Vec<Enabled> = REGISTRY
            .iter()
            .filter(|s| cfg.collectors.enabled(s.name))
            .map(|spec| Enabled {
                spec,
                collector: (spec.build)(&cfg),
            })
            .collect();
        let needs_gpu = collectors.iter().any(|c| c.spec.needs_gpu);
        let gpu_worker = match gpu {
            Some(f) if needs_gpu => Some(GpuWorker::spawn(f, cfg.event_poll)?),
            _ => None,
        };
        let namer = cfg
            .node_from_slurmd
            .then(|| NodeNamer::new(None, cfg.node.clone()));
        Ok(Agent {
            procfs: ProcFs::new(&cfg.procfs),
            sysfs: SysFs::new(&cfg.sysfs),
            numbering: GpuNumbering::new(cfg.gpu_order, cfg.gres_conf.clone()),
            cfg,
            gpu_worker,
            collectors,
            resolver: RefCell::new(JobResolver::new()),
            namer,
            last_success: BTreeMap::new(),
            last_error: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// One collection: every enabled collector over the cycle's shared
    /// inputs, then the self-metrics; families in registry order.
    pub fn collect(&mut self) -> MetricSet {
        let node = match self.namer.as_mut() {
            Some(namer) => namer.current(&self.procfs).0,
            None => self.cfg.node.clone(),
        };
        let needs_gpu = self.collectors.iter().any(|c| c.spec.needs_gpu);
        // NVML works on its own thread while the files are read here.
        if let Some(w) = self.gpu_worker.as_mut() {
            w.request();
        }
        let processes = ProcessSnapshot::new(&self.procfs);
        let mut inputs = CycleInputs {
            node: &node,
            gpu: None,
            processes: &processes,
            procfs: &self.procfs,
            sysfs: &self.sysfs,
            resolver: &self.resolver,
        };
        let mut sets: Vec<Option<(MetricSet, Outcome)>> =
            (0..self.collectors.len()).map(|_| None).collect();
        for (i, c) in self.collectors.iter_mut().enumerate() {
            if !c.spec.needs_gpu {
                sets[i] = Some(run_collector(c, &inputs));
            }
        }

        let mut sample: Option<GpuSample> = match self.gpu_worker.as_mut() {
            Some(w) => Some(w.wait(self.cfg.gpu_timeout)),
            None if needs_gpu => Some(GpuSample::unavailable("no GPU backend configured")),
            None => None,
        };
        if let Some(s) = sample.as_mut().filter(|s| s.status.is_ok()) {
            let (order, source) = self.numbering.current(&self.procfs, &node);
            s.number_for_slurm(&order, &source);
        }
        inputs.gpu = sample.as_ref();
        for (i, c) in self.collectors.iter_mut().enumerate() {
            if c.spec.needs_gpu {
                sets[i] = Some(run_collector(c, &inputs));
            }
        }
        self.resolver.borrow_mut().end_cycle();

        let (sets, outcomes): (Vec<MetricSet>, Vec<Outcome>) = sets.into_iter().flatten().unzip();
        let mut set = MetricSet::new();
        self.self_metrics(&node, &outcomes, &mut set);
        for s in sets {
            set.extend(s);
        }
        set
    }

    fn self_metrics(&mut self, node: &str, outcomes: &[Outcome], out: &mut MetricSet) {
        let now = match self.cfg.timing {
            Timing::Real => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            Timing::Fixed { unix_seconds } => unix_seconds,
        };
        let labels = |c: &str| vec![("node", node.to_string()), ("collector", c.to_string())];
        for o in outcomes {
            match (&o.error, self.last_error.get(o.collector)) {
                (Some(e), Some(prev)) if e == prev => {
                    tracing::debug!(collector = o.collector, error = %e, "collector still failing")
                }
                (Some(e), _) => {
                    tracing::warn!(collector = o.collector, error = %e, "collector failed");
                    self.last_error.insert(o.collector, e.clone());
                }
                (None, Some(_)) => {
                    tracing::info!(collector = o.collector, "collector recovered");
                    self.last_error.remove(o.collector);
                }
                (None, None) => {}
            }
        }
        out.mark_health(&collectors::COLLECTOR_HEALTH);
        for o in outcomes {
            let up = if o.error.is_none() { 1.0 } else { 0.0 };
            out.add(&collectors::COLLECTOR_UP, labels(o.collector), up);
        }
        for o in outcomes {
            let d = match self.cfg.timing {
                Timing::Real => o.duration.as_secs_f64(),
                Timing::Fixed { .. } => 0.0,
            };
            out.add(&collectors::COLLECTOR_DURATION, labels(o.collector), d);
            if o.error.is_none() {
                self.last_success.insert(o.collector, now);
            }
        }
        for o in outcomes {
            if let Some(ts) = self.last_success.get(o.collector) {
                out.add(
                    &collectors::COLLECTOR_LAST_SUCCESS,
                    labels(o.collector),
                    *ts,
                );
            }
        }
    }
}

/// Runs one collector into a set of its own, timed.
fn run_collector(c: &mut Enabled, inputs: &CycleInputs<'_>) -> (MetricSet, Outcome) {
    let mut set = MetricSet::new();
    let t = Instant::now();
    let r = c.collector.collect(inputs, &mut set);
    let duration = c
        .collector
        .reported_duration(inputs)
        .unwrap_or_else(|| t.elapsed());
    let outcome = Outcome {
        collector: c.spec.name,
        error: r.err().map(|e: CollectError| e.to_string()),
        duration,
    };
    (set, outcome)
}

/// The short hostname (up to the first dot), which is what Slurm node
/// names usually are.
pub fn short_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // on success when the name fits, and we cap at the buffer end anyway.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    let short = name.split('.').next().unwrap_or("").to_string();
    (!short.is_empty()).then_some(short)
}

fn backend_factory(args: &NodeConfig) -> BackendFactory {
    match args.gpu_backend {
        GpuBackendKind::Fake => FakeNvml::h100x8().idle(&args.gpu_fake_idle).factory(),
        GpuBackendKind::FakeFaulty => FakeNvml::h100x8_faulty()
            .idle(&args.gpu_fake_idle)
            .factory(),
        GpuBackendKind::Nvml => {
            let lib = args.nvml_library.clone();
            Box::new(move || {
                NvmlBackend::load(lib.as_deref().map(|p| p.as_os_str()))
                    .map(|b| Box::new(b) as Box<dyn GpuBackend>)
            })
        }
    }
}

pub async fn run(args: NodeConfig) -> anyhow::Result<()> {
    let given = |n: &Option<String>| n.clone().filter(|n| !n.trim().is_empty());
    let override_name = given(&args.slurm_node_name);
    let node_from_slurmd = override_name.is_none();
    let node = override_name
        .or_else(|| given(&args.slurm_node_name_fallback))
        .or_else(short_hostname)
        .ok_or_else(|| anyhow::anyhow!("cannot determine the node name; pass --slurm-node-name"))?;
    let cfg = AgentConfig {
        node_from_slurmd,
        collectors: args.collectors.clone(),
        mapping_dirs: args.mapping_dirs.clone(),
        gpu_order: args.gpu_slurm_order,
        gres_conf: args.gres_conf.clone(),
        gpu_timeout: args.gpu_timeout,
        ..AgentConfig::new(node.clone(), &args.procfs, &args.sysfs)
    };
    let mut agent = Agent::new(cfg, Some(backend_factory(&args)))?;

    if args.once {
        let mut set = agent.collect();
        // GPM profiling values are means between two samples: a second
        // collection a second later carries them.
        if args.collectors.enabled(collectors::gpu::NAME)
            && set.sum(collectors::gpu::PROFILING_SUPPORTED.name, &[]) > 0.0
        {
            std::thread::sleep(Duration::from_secs(1));
            set = agent.collect();
        }
        print!("{}", set.encode_text());
        return Ok(());
    }

    let web = server::WebServer::bind(&args.web, DEFAULT_LISTEN).await?;
    tracing::info!(
        node = %node,
        node_from_slurmd,
        metrics = %web.metrics_url(),
        interval = ?args.collect_interval,
        procfs = %args.procfs.display(),
        sysfs = %args.sysfs.display(),
        "node agent started"
    );
    let publisher = Publisher::new();
    let collector = CollectionThread::spawn(agent, args.collect_interval, publisher.clone())?;
    let served = web
        .serve(
            "Slurm GPU node agent",
            vec![publisher],
            server::shutdown_signal(),
        )
        .await;
    collector.stop().await;
    served.map_err(|e| anyhow::anyhow!("HTTP server failed: {e}"))
}

/// The agent's background collection: one thread (NVML and /proc reads
/// block), publishing after every collection.
pub struct CollectionThread {
    stop: mpsc::Sender<()>,
    handle: std::thread::JoinHandle<()>,
}

impl CollectionThread {
    pub fn spawn(
        mut agent: Agent,
        interval: Duration,
        publisher: Publisher,
    ) -> std::io::Result<CollectionThread> {
        let (stop, stop_rx) = mpsc::channel::<()>();
        let interval = interval.max(Duration::from_millis(100));
        let handle = std::thread::Builder::new()
            .name("collect".into())
            .spawn(move || loop {
                let start = Instant::now();
                let set = agent.collect();
                publisher.publish(&set);
                tracing::debug!(elapsed = ?start.elapsed(), "collection published");
                let wait = interval.saturating_sub(start.elapsed());
                match stop_rx.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            })?;
        Ok(CollectionThread { stop, handle })
    }

    /// Stops after the collection in progress, if any.
    pub async fn stop(self) {
        drop(self.stop);
        let handle = self.handle;
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
}
