//! memlock collector: the `Max locked memory` limit of every process of a
//! running Slurm job (found through its cgroup), reduced per job to the
//! minimum soft and hard limit, and slurmd's own limit. A job without
//! `ulimit -l unlimited` breaks EFA with "Cannot allocate memory (-12)".
//!
//! slurmstepd processes (Slurm's own, in the job's cgroup) are left out:
//! their limit is slurmd's, not the one the job's tasks run with.

use std::collections::BTreeMap;

use super::{node_labels, CollectError, Collector, CollectorSpec, CycleInputs};
use crate::exposition::{Kind, Labels, MetricDesc, MetricSet};
use crate::node::sources::fs::is_gone;
use crate::node::sources::procfs::Limit;

const JOB: &[&str] = &["node", "job_id"];

pub const JOB_SOFT_LIMIT: MetricDesc = MetricDesc {
    name: "slurm_job_memlock_soft_limit_bytes",
    help: "Lowest soft RLIMIT_MEMLOCK over the job's processes on this node; +Inf when all are unlimited.",
    kind: Kind::Gauge,
    labels: JOB,
};

pub const JOB_HARD_LIMIT: MetricDesc = MetricDesc {
    name: "slurm_job_memlock_hard_limit_bytes",
    help: "Lowest hard RLIMIT_MEMLOCK over the job's processes on this node; +Inf when all are unlimited.",
    kind: Kind::Gauge,
    labels: JOB,
};

pub const JOB_LIMITED_PROCESSES: MetricDesc = MetricDesc {
    name: "slurm_job_memlock_limited_processes",
    help: "Processes of the job whose soft RLIMIT_MEMLOCK is not unlimited (EFA needs unlimited).",
    kind: Kind::Gauge,
    labels: JOB,
};

pub const JOB_PROCESSES: MetricDesc = MetricDesc {
    name: "slurm_job_processes",
    help: "Processes of the job on this node (slurmstepd excluded) whose limits were read.",
    kind: Kind::Gauge,
    labels: JOB,
};

pub const SLURMD_PROCESSES: MetricDesc = MetricDesc {
    name: "slurm_slurmd_processes",
    help: "slurmd processes visible in the agent's /proc (0: slurmd not running, or no host PID namespace).",
    kind: Kind::Gauge,
    labels: &["node"],
};

pub const SLURMD_SOFT_LIMIT: MetricDesc = MetricDesc {
    name: "slurm_slurmd_memlock_soft_limit_bytes",
    help: "slurmd's soft RLIMIT_MEMLOCK (+Inf: unlimited); jobs inherit it unless limits are propagated.",
    kind: Kind::Gauge,
    labels: &["node"],
};

pub const SLURMD_HARD_LIMIT: MetricDesc = MetricDesc {
    name: "slurm_slurmd_memlock_hard_limit_bytes",
    help: "slurmd's hard RLIMIT_MEMLOCK (+Inf: unlimited).",
    kind: Kind::Gauge,
    labels: &["node"],
};

pub const METRICS: &[&MetricDesc] = &[
    &JOB_SOFT_LIMIT,
    &JOB_HARD_LIMIT,
    &JOB_LIMITED_PROCESSES,
    &JOB_PROCESSES,
    &SLURMD_PROCESSES,
    &SLURMD_SOFT_LIMIT,
    &SLURMD_HARD_LIMIT,
];

pub const NAME: &str = "memlock";

/// The registry line of the memlock collector.
pub const SPEC: CollectorSpec = CollectorSpec {
    name: NAME,
    flag: "collector.memlock",
    env: "SLURM_GPU_EXPORTER_COLLECTOR_MEMLOCK",
    help: "memlock collector (/proc/<pid>/limits of job processes and slurmd)",
    needs_gpu: false,
    metrics: METRICS,
    build: |_| Box::new(MemlockCollector),
};

#[derive(Debug, Default)]
pub struct MemlockCollector;

#[derive(Debug, Clone, Copy)]
struct JobLimits {
    soft: Limit,
    hard: Limit,
    processes: u64,
    limited: u64,
}

impl Collector for MemlockCollector {
    fn collect(
        &mut self,
        inputs: &CycleInputs<'_>,
        out: &mut MetricSet,
    ) -> Result<(), CollectError> {
        let (procfs, node) = (inputs.procfs, inputs.node);
        let procs = inputs.processes.get().map_err(|e| CollectError::Io {
            path: procfs.root().display().to_string(),
            source: std::io::Error::new(e.kind(), e.to_string()),
        })?;
        let mut resolver = inputs.resolver.borrow_mut();
        let mut jobs: BTreeMap<String, JobLimits> = BTreeMap::new();
        let mut slurmd: Option<(Limit, Limit)> = None;
        let mut slurmd_procs = 0u64;
        for p in procs {
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
        let per_job: [(&MetricDesc, Field); 4] = [
            (&JOB_SOFT_LIMIT, |j| j.soft.as_f64()),
            (&JOB_HARD_LIMIT, |j| j.hard.as_f64()),
            (&JOB_LIMITED_PROCESSES, |j| j.limited as f64),
            (&JOB_PROCESSES, |j| j.processes as f64),
        ];
        for (d, field) in per_job {
            out.declare(d);
            for (id, j) in &jobs {
                out.add(d, job_labels(id), field(j));
            }
        }
        out.add(&SLURMD_PROCESSES, node_labels(node), slurmd_procs as f64);
        if let Some((soft, hard)) = slurmd {
            out.add(&SLURMD_SOFT_LIMIT, node_labels(node), soft.as_f64());
            out.add(&SLURMD_HARD_LIMIT, node_labels(node), hard.as_f64());
        }
        Ok(())
    }
}
