//! jobs collector (`--collector.jobs`): which Slurm job uses which GPU of
//! this node, with no prolog. (The cluster scraper's queue collector is
//! `cluster::collectors::queue`.)
//!
//! Chain: NVML's running processes (host PIDs) → `/proc/<pid>/cgroup` → job
//! id (SLUIDs through `SLURM_JOB_ID` in `/proc/<pid>/environ`; user and
//! account from the same environment when readable). Also reads DCGM-style
//! job-mapping directories when configured: files named by GPU index, one
//! job id per line (Slinky's prolog writes `/var/lib/dcgm-exporter/job-mapping`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use super::{node_labels, CollectError, Collector, CollectorSpec, CycleInputs};
use crate::exposition::{Kind, Labels, MetricDesc, MetricSet};
use crate::node::sources::cgroup::{is_sluid, JobCgroup};
use crate::node::sources::fs::{is_gone, read_string, SMALL_FILE_CAP};
use crate::node::sources::gpu_sample::GpuReading;
use crate::node::sources::procfs::ProcessEntry;

const JOB: &[&str] = &["node", "job_id"];

pub const GPU_JOB_INFO: MetricDesc = MetricDesc {
    name: "slurm_gpu_job_info",
    help: "A Slurm job using the GPU (from its processes' cgroups, or a job-mapping file); user and account from the process environment when readable.",
    kind: Kind::Info,
    labels: &["node", "gpu", "uuid", "job_id", "user", "account"],
};

pub const GPU_UNATTRIBUTED_PROCESSES: MetricDesc = MetricDesc {
    name: "slurm_gpu_unattributed_processes",
    help: "Processes on the GPU that belong to no Slurm job (or whose cgroup could not be read).",
    kind: Kind::Gauge,
    labels: &["node", "gpu", "uuid"],
};

pub const JOB_GPUS_IN_USE: MetricDesc = MetricDesc {
    name: "slurm_job_gpus_in_use",
    help: "GPUs of this node attributed to the job.",
    kind: Kind::Gauge,
    labels: JOB,
};

pub const JOB_GPU_UTILIZATION: MetricDesc = MetricDesc {
    name: "slurm_job_gpu_utilization_ratio",
    help:
        "Mean utilization of the GPUs attributed to the job (a GPU shared by jobs counts for each).",
    kind: Kind::Gauge,
    labels: JOB,
};

pub const JOB_GPU_SM_ACTIVE: MetricDesc = MetricDesc {
    name: "slurm_job_gpu_sm_active_ratio",
    help: "Mean SM activity (NVML GPM) of the GPUs attributed to the job; absent where the GPUs have no GPM.",
    kind: Kind::Gauge,
    labels: JOB,
};

pub const JOB_GPU_MEMORY_USED: MetricDesc = MetricDesc {
    name: "slurm_job_gpu_memory_used_bytes",
    help: "GPU memory used by the job's processes (whole-GPU usage for GPUs attributed by mapping file only).",
    kind: Kind::Gauge,
    labels: JOB,
};

pub const JOB_GPU_POWER: MetricDesc = MetricDesc {
    name: "slurm_job_gpu_power_watts",
    help: "Power draw of the GPUs attributed to the job (a GPU shared by jobs counts for each).",
    kind: Kind::Gauge,
    labels: JOB,
};

pub const METRICS: &[&MetricDesc] = &[
    &GPU_JOB_INFO,
    &GPU_UNATTRIBUTED_PROCESSES,
    &JOB_GPUS_IN_USE,
    &JOB_GPU_UTILIZATION,
    &JOB_GPU_SM_ACTIVE,
    &JOB_GPU_MEMORY_USED,
    &JOB_GPU_POWER,
];

/// Keeps the flag name `--collector.jobs`.
pub const NAME: &str = "jobs";

/// The registry line of the GPU → job collector.
pub const SPEC: CollectorSpec = CollectorSpec {
    name: NAME,
    flag: "collector.jobs",
    env: "SLURM_GPU_EXPORTER_COLLECTOR_JOBS",
    help: "jobs collector (GPU → Slurm job attribution)",
    needs_gpu: true,
    metrics: METRICS,
    build: |cfg| {
        Box::new(GpuJobsCollector {
            mapping_dirs: cfg.mapping_dirs.clone(),
        })
    },
};

#[derive(Debug, Default)]
pub struct GpuJobsCollector {
    pub mapping_dirs: Vec<PathBuf>,
}

/// GPU index → job ids, from the mapping directories.
pub fn read_mapping_dirs(
    dirs: &[PathBuf],
) -> Result<BTreeMap<u32, BTreeSet<String>>, CollectError> {
    let mut out: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    let mut first_err = None;
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            // Created by the first job's prolog: absent means no job yet.
            Err(e) if is_gone(&e) => continue,
            Err(e) => {
                first_err.get_or_insert(CollectError::Io {
                    path: dir.display().to_string(),
                    source: e,
                });
                continue;
            }
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let Some(index) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let content = match read_string(&entry.path(), SMALL_FILE_CAP) {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(path = %entry.path().display(), error = %e, "cannot read job mapping");
                    continue;
                }
            };
            for line in content.lines().map(str::trim) {
                let valid = (!line.is_empty()
                    && line.len() <= 20
                    && line.bytes().all(|b| b.is_ascii_digit()))
                    || is_sluid(line);
                if valid {
                    out.entry(index).or_default().insert(line.to_string());
                }
            }
        }
    }
    match first_err {
        Some(e) if out.is_empty() => Err(e),
        Some(e) => {
            tracing::warn!(error = %e, "job mapping directory unreadable");
            Ok(out)
        }
        None => Ok(out),
    }
}

#[derive(Debug, Default)]
struct JobAgg {
    gpus: BTreeSet<u32>,
    util_sum: f64,
    util_n: u32,
    sm_sum: f64,
    sm_n: u32,
    memory: f64,
    power: f64,
}

impl Collector for GpuJobsCollector {
    fn collect(
        &mut self,
        inputs: &CycleInputs<'_>,
        out: &mut MetricSet,
    ) -> Result<(), CollectError> {
        let (sample, procfs, node) = (inputs.gpu, inputs.procfs, inputs.node);
        let mut resolver = inputs.resolver.borrow_mut();
        let mapping = read_mapping_dirs(&self.mapping_dirs);
        // Without a readable table each GPU process's cgroup is read alone.
        let by_pid: HashMap<u32, &ProcessEntry> = inputs
            .processes
            .get()
            .unwrap_or_default()
            .iter()
            .map(|p| (p.pid, p))
            .collect();
        let gpus: Vec<&GpuReading> = sample
            .filter(|s| s.status.is_ok())
            .map(|s| s.gpus.iter().collect())
            .unwrap_or_default();

        // gpu index → job id → memory used by the job's processes (None: unknown)
        let mut attribution: BTreeMap<u32, BTreeMap<String, Option<u64>>> = BTreeMap::new();
        let mut unattributed: BTreeMap<u32, u64> = BTreeMap::new();
        for g in &gpus {
            let Some(processes) = g.processes.as_ref().filter(|_| g.up) else {
                continue;
            };
            // Slurm's index: what job-mapping files and slurm_job_gpus use.
            let idx = g.slurm_index;
            let un = unattributed.entry(idx).or_insert(0);
            for p in processes {
                let job: Option<JobCgroup> = match by_pid.get(&p.pid) {
                    Some(e) => e.job.clone(),
                    None => match procfs.job_of(p.pid) {
                        Ok(j) => j,
                        Err(e) if is_gone(&e) => None,
                        Err(e) => {
                            tracing::debug!(pid = p.pid, error = %e, "cannot read cgroup of GPU process");
                            None
                        }
                    },
                };
                let Some(job) = job else {
                    *un += 1;
                    continue;
                };
                let id = resolver.resolve(procfs, p.pid, &job.job, true);
                let mem = attribution
                    .entry(idx)
                    .or_default()
                    .entry(id)
                    .or_insert(Some(0));
                *mem = match (*mem, p.used_memory_bytes) {
                    (Some(a), Some(b)) => Some(a.saturating_add(b)),
                    _ => None,
                };
            }
        }
        let mapping_ok = match &mapping {
            Ok(m) => {
                for (idx, jobs) in m {
                    for j in jobs {
                        attribution
                            .entry(*idx)
                            .or_default()
                            .entry(j.clone())
                            .or_insert(None);
                    }
                }
                true
            }
            Err(_) => false,
        };

        let gpu_by_index: HashMap<u32, &GpuReading> =
            gpus.iter().map(|g| (g.slurm_index, *g)).collect();
        out.declare(&GPU_JOB_INFO);
        let mut jobs: BTreeMap<String, JobAgg> = BTreeMap::new();
        for (idx, by_job) in &attribution {
            let g = gpu_by_index.get(idx);
            for (job_id, mem) in by_job {
                let meta = resolver.meta(job_id).cloned().unwrap_or_default();
                let mut l = node_labels(node);
                l.push(("gpu", idx.to_string()));
                l.push((
                    "uuid",
                    g.map(|g| g.identity.uuid.clone()).unwrap_or_default(),
                ));
                l.push(("job_id", job_id.clone()));
                l.push(("user", meta.user));
                l.push(("account", meta.account));
                out.add(&GPU_JOB_INFO, l, 1.0);
                let agg = jobs.entry(job_id.clone()).or_default();
                agg.gpus.insert(*idx);
                if let Some(g) = g.filter(|g| g.up) {
                    if let Some((u, _)) = g.utilization {
                        agg.util_sum += u as f64 / 100.0;
                        agg.util_n += 1;
                    }
                    if let Some(sm) = g.profiling.and_then(|p| p.sm_active) {
                        agg.sm_sum += sm;
                        agg.sm_n += 1;
                    }
                    // The job's own processes' memory when NVML reports it;
                    // otherwise (mapping file only) the whole GPU's.
                    if let Some(m) = mem.or_else(|| g.memory.map(|m| m.0)) {
                        agg.memory += m as f64;
                    }
                    if let Some(p) = g.power_mw {
                        agg.power += p as f64 / 1000.0;
                    }
                }
            }
        }
        for g in &gpus {
            if let Some(n) = unattributed.get(&g.slurm_index) {
                let mut l = node_labels(node);
                l.push(("gpu", g.slurm_index.to_string()));
                l.push(("uuid", g.identity.uuid.clone()));
                out.add(&GPU_UNATTRIBUTED_PROCESSES, l, *n as f64);
            }
        }
        let job_labels = |id: &str| -> Labels {
            let mut l = node_labels(node);
            l.push(("job_id", id.to_string()));
            l
        };
        type Field = fn(&JobAgg) -> Option<f64>;
        let per_job: [(&MetricDesc, Field); 5] = [
            (&JOB_GPUS_IN_USE, |a| Some(a.gpus.len() as f64)),
            (&JOB_GPU_UTILIZATION, |a| {
                (a.util_n > 0).then(|| a.util_sum / a.util_n as f64)
            }),
            (&JOB_GPU_SM_ACTIVE, |a| {
                (a.sm_n > 0).then(|| a.sm_sum / a.sm_n as f64)
            }),
            (&JOB_GPU_MEMORY_USED, |a| Some(a.memory)),
            (&JOB_GPU_POWER, |a| Some(a.power)),
        ];
        for (d, f) in per_job {
            out.declare(d);
            for (id, a) in &jobs {
                if let Some(v) = f(a) {
                    out.add(d, job_labels(id), v);
                }
            }
        }
        match mapping {
            Err(e) if !mapping_ok => Err(e),
            _ => Ok(()),
        }
    }
}
