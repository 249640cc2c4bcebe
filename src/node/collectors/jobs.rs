//! jobs collector: which Slurm job uses which GPU, with no prolog.
//!
//! Chain: NVML's running processes (host PIDs) → `/proc/<pid>/cgroup` → job
//! id (SLUIDs through `SLURM_JOB_ID` in `/proc/<pid>/environ`; user and
//! account from the same environment when readable). Also reads DCGM-style
//! job-mapping directories when configured: files named by GPU index, one
//! job id per line (Slinky's prolog writes `/var/lib/dcgm-exporter/job-mapping`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use super::gpu::{GpuReading, GpuSample};
use super::{node_labels, CollectError};
use crate::exposition::{Kind, Labels, MetricSet};
use crate::node::sources::cgroup::{is_sluid, JobCgroup};
use crate::node::sources::fs::{is_gone, read_string, SMALL_FILE_CAP};
use crate::node::sources::procfs::{JobResolver, ProcFs, ProcessEntry};

#[derive(Debug, Default)]
pub struct JobsCollector {
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

impl JobsCollector {
    pub fn collect(
        &mut self,
        sample: Option<&GpuSample>,
        procs: Option<&[ProcessEntry]>,
        procfs: &ProcFs,
        resolver: &mut JobResolver,
        node: &str,
        out: &mut MetricSet,
    ) -> Result<(), CollectError> {
        let mapping = read_mapping_dirs(&self.mapping_dirs);
        let by_pid: HashMap<u32, &ProcessEntry> = procs
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
        out.family(
            "slurm_gpu_job_info",
            "A Slurm job using the GPU (from its processes' cgroups, or a job-mapping file); user and account from the process environment when readable.",
            Kind::Info,
        );
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
                out.info(
                    "slurm_gpu_job_info",
                    "A Slurm job using the GPU (from its processes' cgroups, or a job-mapping file); user and account from the process environment when readable.",
                    l,
                );
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
                out.gauge(
                    "slurm_gpu_unattributed_processes",
                    "Processes on the GPU that belong to no Slurm job (or whose cgroup could not be read).",
                    l,
                    *n as f64,
                );
            }
        }
        let job_labels = |id: &str| -> Labels {
            let mut l = node_labels(node);
            l.push(("job_id", id.to_string()));
            l
        };
        type Field = fn(&JobAgg) -> Option<f64>;
        let per_job: [(&'static str, &'static str, Field); 5] = [
            ("slurm_job_gpus_in_use", "GPUs of this node attributed to the job.", |a| Some(a.gpus.len() as f64)),
            (
                "slurm_job_gpu_utilization_ratio",
                "Mean utilization of the GPUs attributed to the job (a GPU shared by jobs counts for each).",
                |a| (a.util_n > 0).then(|| a.util_sum / a.util_n as f64),
            ),
            (
                "slurm_job_gpu_sm_active_ratio",
                "Mean SM activity (NVML GPM) of the GPUs attributed to the job; absent where the GPUs have no GPM.",
                |a| (a.sm_n > 0).then(|| a.sm_sum / a.sm_n as f64),
            ),
            (
                "slurm_job_gpu_memory_used_bytes",
                "GPU memory used by the job's processes (whole-GPU usage for GPUs attributed by mapping file only).",
                |a| Some(a.memory),
            ),
            (
                "slurm_job_gpu_power_watts",
                "Power draw of the GPUs attributed to the job (a GPU shared by jobs counts for each).",
                |a| Some(a.power),
            ),
        ];
        for (name, help, f) in per_job {
            out.family(name, help, Kind::Gauge);
            for (id, a) in &jobs {
                if let Some(v) = f(a) {
                    out.gauge(name, help, job_labels(id), v);
                }
            }
        }
        match mapping {
            Err(e) if !mapping_ok => Err(e),
            _ => Ok(()),
        }
    }
}
