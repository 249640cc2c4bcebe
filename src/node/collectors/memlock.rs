//! memlock collector: the `Max locked memory` limit of every process of a
//! running Slurm job (found through its cgroup), reduced per job to the
//! minimum soft and hard limit, and slurmd's own limit. A job without
//! `ulimit -l unlimited` breaks EFA with "Cannot allocate memory (-12)".
//!
//! slurmstepd processes (Slurm's own, in the job's cgroup) are left out:
//! their limit is slurmd's, not the one the job's tasks run with.

use std::collections::BTreeMap;

use super::{node_labels, CollectError};
use crate::exposition::{Kind, Labels, MetricSet};
use crate::node::sources::fs::is_gone;
use crate::node::sources::procfs::{JobResolver, Limit, ProcFs, ProcessEntry};

#[derive(Debug, Default)]
pub struct MemlockCollector;

#[derive(Debug, Clone, Copy)]
struct JobLimits {
    soft: Limit,
    hard: Limit,
    processes: u64,
    limited: u64,
}

impl MemlockCollector {
    /// Scans `/proc` and reports; returns the process table for the jobs
    /// collector.
    pub fn collect(
        &mut self,
        procfs: &ProcFs,
        resolver: &mut JobResolver,
        node: &str,
        out: &mut MetricSet,
    ) -> Result<Vec<ProcessEntry>, CollectError> {
        let procs = procfs.scan().map_err(|e| CollectError::Io {
            path: procfs.root().display().to_string(),
            source: e,
        })?;
        let mut jobs: BTreeMap<String, JobLimits> = BTreeMap::new();
        let mut slurmd: Option<(Limit, Limit)> = None;
        let mut slurmd_procs = 0u64;
        for p in &procs {
            let comm = p.comm.as_deref().unwrap_or("");
            let is_slurmd = comm == "slurmd";
            let job = match &p.job {
                Some(j) if !j.stepd && comm != "slurmstepd" => Some(j),
                _ => None,
            };
            if !is_slurmd && job.is_none() {
                continue;
            }
            let limits = match procfs.memlock(p.pid) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    tracing::debug!(pid = p.pid, "no parsable 'Max locked memory' row");
                    continue;
                }
                Err(e) if is_gone(&e) => continue,
                Err(e) => {
                    tracing::debug!(pid = p.pid, error = %e, "cannot read limits");
                    continue;
                }
            };
            if is_slurmd {
                slurmd_procs += 1;
                slurmd = Some(match slurmd {
                    Some((s, h)) => (s.min(limits.soft), h.min(limits.hard)),
                    None => (limits.soft, limits.hard),
                });
            }
            if let Some(j) = job {
                let id = resolver.resolve(procfs, p.pid, &j.job, false);
                let e = jobs.entry(id).or_insert(JobLimits {
                    soft: Limit::Unlimited,
                    hard: Limit::Unlimited,
                    processes: 0,
                    limited: 0,
                });
                e.soft = e.soft.min(limits.soft);
                e.hard = e.hard.min(limits.hard);
                e.processes += 1;
                if limits.soft != Limit::Unlimited {
                    e.limited += 1;
                }
            }
        }
        let job_labels = |id: &str| -> Labels {
            let mut l = node_labels(node);
            l.push(("job_id", id.to_string()));
            l
        };
        type Field = fn(&JobLimits) -> f64;
        let per_job: [(&'static str, &'static str, Field); 4] = [
            (
                "slurm_job_memlock_soft_limit_bytes",
                "Lowest soft RLIMIT_MEMLOCK over the job's processes on this node; +Inf when all are unlimited.",
                |j| j.soft.as_f64(),
            ),
            (
                "slurm_job_memlock_hard_limit_bytes",
                "Lowest hard RLIMIT_MEMLOCK over the job's processes on this node; +Inf when all are unlimited.",
                |j| j.hard.as_f64(),
            ),
            (
                "slurm_job_memlock_limited_processes",
                "Processes of the job whose soft RLIMIT_MEMLOCK is not unlimited (EFA needs unlimited).",
                |j| j.limited as f64,
            ),
            (
                "slurm_job_processes",
                "Processes of the job on this node (slurmstepd excluded) whose limits were read.",
                |j| j.processes as f64,
            ),
        ];
        for (name, help, field) in per_job {
            out.family(name, help, Kind::Gauge);
            for (id, j) in &jobs {
                out.gauge(name, help, job_labels(id), field(j));
            }
        }
        out.gauge(
            "slurm_slurmd_processes",
            "slurmd processes visible in the agent's /proc (0: slurmd not running, or no host PID namespace).",
            node_labels(node),
            slurmd_procs as f64,
        );
        if let Some((soft, hard)) = slurmd {
            out.gauge(
                "slurm_slurmd_memlock_soft_limit_bytes",
                "slurmd's soft RLIMIT_MEMLOCK (+Inf: unlimited); jobs inherit it unless limits are propagated.",
                node_labels(node),
                soft.as_f64(),
            );
            out.gauge(
                "slurm_slurmd_memlock_hard_limit_bytes",
                "slurmd's hard RLIMIT_MEMLOCK (+Inf: unlimited).",
                node_labels(node),
                hard.as_f64(),
            );
        }
        Ok(procs)
    }
}
