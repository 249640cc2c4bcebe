//! Queue metrics: jobs by state, pending reasons, allocated TRES, and the
//! running-GPU-job join series.
//!
//! [`JobAggregates`] is the `JobSink` the `/jobs` parser streams into, so
//! only aggregates and the (small) set of running GPU jobs are kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cluster::jobtable::{Assoc, CompactJob, GpuSel, Interner, JobTable};
use crate::cluster::usage::UsageRow;
use crate::exposition::{Kind, MetricDesc, MetricSet};
use crate::model::{Job, JobState};
use crate::slurmrestd::JobSink;

pub const CLUSTER_JOBS: MetricDesc = MetricDesc {
    name: "slurm_cluster_jobs",
    help: "Jobs by base state, partition and account; array tasks counted individually, as `squeue -r` counts them.",
    kind: Kind::Gauge,
    labels: &["state", "partition", "account"],
};

pub const CLUSTER_USER_JOBS: MetricDesc = MetricDesc {
    name: "slurm_cluster_user_jobs",
    help: "Jobs by base state, partition, account and user (--collector.jobs.per-user).",
    kind: Kind::Gauge,
    labels: &["state", "partition", "account", "user"],
};

pub const CLUSTER_JOBS_PENDING: MetricDesc = MetricDesc {
    name: "slurm_cluster_jobs_pending",
    help: "Pending jobs by partition, account and pending reason (Resources, Priority, JobHeldUser, ...).",
    kind: Kind::Gauge,
    labels: &["partition", "account", "reason"],
};

pub const CLUSTER_JOBS_ALLOCATED_CPUS: MetricDesc = MetricDesc {
    name: "slurm_cluster_jobs_allocated_cpus",
    help:
        "CPUs allocated to running, suspended and completing jobs, from the job's allocated TRES.",
    kind: Kind::Gauge,
    labels: &["partition", "account", "user"],
};

pub const CLUSTER_JOBS_ALLOCATED_MEMORY_BYTES: MetricDesc = MetricDesc {
    name: "slurm_cluster_jobs_allocated_memory_bytes",
    help:
        "Memory allocated to running, suspended and completing jobs, from the job's allocated TRES.",
    kind: Kind::Gauge,
    labels: &["partition", "account", "user"],
};

pub const CLUSTER_JOBS_ALLOCATED_GPUS: MetricDesc = MetricDesc {
    name: "slurm_cluster_jobs_allocated_gpus",
    help: "GPUs (gres/gpu) allocated to running, suspended and completing jobs, from the job's allocated TRES; counts --gres=gpu:N, --gpus=N and --gpus-per-node=N alike.",
    kind: Kind::Gauge,
    labels: &["partition", "account", "user"],
};

pub const JOB_GPUS: MetricDesc = MetricDesc {
    name: "slurm_job_gpus",
    help: "One series per GPU held by a running job (gpu = device index), or per node with gpu=\"\" and the GPU count when slurmrestd gives no indices. Join node GPU metrics on (node, gpu) to attribute them to jobs, users and accounts.",
    kind: Kind::Gauge,
    labels: &["job_id", "account", "user", "partition", "node", "gpu"],
};

/// Every family this collector declares.
pub const METRICS: &[&MetricDesc] = &[
    &CLUSTER_JOBS,
    &CLUSTER_USER_JOBS,
    &CLUSTER_JOBS_PENDING,
    &CLUSTER_JOBS_ALLOCATED_CPUS,
    &CLUSTER_JOBS_ALLOCATED_MEMORY_BYTES,
    &CLUSTER_JOBS_ALLOCATED_GPUS,
    &JOB_GPUS,
];

/// Allocated resources summed over jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Allocated {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub gpus: u64,
}

/// One running job's GPUs on one node, for the join series. Strings are
/// shared with the job table (57k rows at 100k jobs: 48 bytes each instead
/// of ~250 with owned strings).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GpuJobRow {
    pub job_id: u64,
    /// (partition, account, user); one per job, so ordering by it after
    /// `job_id` orders as (job, account, user, partition) would.
    pub assoc: Arc<Assoc>,
    pub node: Arc<str>,
    /// Device index; `None` (label `gpu=""`) when slurmrestd gives no indices.
    pub gpu: Option<u32>,
    pub count: u64,
}

impl GpuJobRow {
    /// The `gpu` label value.
    pub fn gpu_label(&self) -> String {
        self.gpu.map(|i| i.to_string()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default)]
pub struct JobAggregates {
    pub per_user: bool,
    /// (state, partition, account) -> jobs.
    pub by_state: BTreeMap<(JobState, String, String), u64>,
    /// (state, partition, account, user) -> jobs; filled when `per_user`.
    pub by_user: BTreeMap<(JobState, String, String, String), u64>,
    /// (partition, account, reason) -> pending jobs.
    pub pending_by_reason: BTreeMap<(String, String, String), u64>,
    /// (partition, account, user) -> resources held by running jobs.
    pub allocated: BTreeMap<(String, String, String), Allocated>,
    /// partition -> (pending, running) jobs.
    pub by_partition: BTreeMap<String, (u64, u64)>,
    pub gpu_jobs: Vec<GpuJobRow>,
    pub records: u64,
    /// When set, jobs holding resources and jobs that ended after this time
    /// are kept as usage rows for the accountant.
    pub usage_since: Option<i64>,
    pub usage: Vec<UsageRow>,
    /// Strings of the jobs streamed in (see [`CompactJob`]).
    interner: Interner,
}

impl JobAggregates {
    pub fn new(per_user: bool) -> Self {
        JobAggregates {
            per_user,
            ..Default::default()
        }
    }

    /// Also collect usage rows (see [`UsageRow`]) of jobs that hold resources
    /// or ended after `since`.
    pub fn with_usage_since(mut self, since: i64) -> Self {
        self.usage_since = Some(since);
        self
    }

    /// Jobs in a state, over all partitions and accounts.
    pub fn count_state(&self, state: JobState) -> u64 {
        self.by_state
            .iter()
            .filter(|((s, _, _), _)| *s == state)
            .map(|(_, n)| n)
            .sum()
    }
}

impl JobAggregates {
    /// The aggregates a streamed parse of the table's jobs gives.
    pub fn from_table(t: &JobTable, per_user: bool, usage_since: Option<i64>) -> JobAggregates {
        let mut agg = JobAggregates::new(per_user);
        agg.usage_since = usage_since;
        for (id, c) in t.jobs_by_id() {
            agg.add(id, c);
        }
        agg
    }
}

impl JobSink for JobAggregates {
    fn job(&mut self, job: Job) {
        let c = CompactJob::from_job(&job, &mut self.interner);
        self.add(job.job_id, &c);
    }
}

impl JobAggregates {
    /// Counts one job. A streamed parse and a [`crate::cluster::jobtable::JobTable`]
    /// both come through here, so both give the same aggregates.
    pub fn add(&mut self, job_id: u64, c: &CompactJob) {
        self.records += 1;
        if let Some(since) = self.usage_since {
            if let Some(row) = c.usage_row(job_id) {
                if row.end.is_none_or(|e| e > since) {
                    self.usage.push(row);
                }
            }
        }
        let state = c.state;
        let n = u64::from(c.task_count);
        let partition = c.assoc.partition.to_string();
        let account = c.assoc.account.to_string();
        *self
            .by_state
            .entry((state, partition.clone(), account.clone()))
            .or_default() += n;
        if self.per_user {
            *self
                .by_user
                .entry((
                    state,
                    partition.clone(),
                    account.clone(),
                    c.assoc.user.to_string(),
                ))
                .or_default() += n;
        }
        let part = self.by_partition.entry(partition.clone()).or_default();
        match state {
            JobState::Pending => {
                part.0 += n;
                let reason = c.reason.as_ref().map_or("None", |r| r.as_str()).to_string();
                *self
                    .pending_by_reason
                    .entry((partition.clone(), account.clone(), reason))
                    .or_default() += n;
            }
            JobState::Running => part.1 += n,
            _ => {}
        }
        if state.holds_resources() {
            let a = self
                .allocated
                .entry((partition.clone(), account.clone(), c.assoc.user.to_string()))
                .or_default();
            if let Some(h) = &c.held {
                a.cpus += h.cpus;
                a.memory_bytes += h.memory_bytes;
                a.gpus += h.gpus;
                for r in h.gpu_rows.iter() {
                    let mut push = |gpu: Option<u32>, count: u64| {
                        self.gpu_jobs.push(GpuJobRow {
                            job_id,
                            assoc: c.assoc.clone(),
                            node: r.node.clone(),
                            gpu,
                            count,
                        })
                    };
                    match r.gpus {
                        GpuSel::Mask(mask) => {
                            for i in (0..64).filter(|i| mask & (1u64 << i) != 0) {
                                push(Some(i), 1);
                            }
                        }
                        GpuSel::Index(i) => push(Some(i), 1),
                        GpuSel::Count(n) => push(None, n),
                    }
                }
            }
        }
    }

    pub fn collect(&self, set: &mut MetricSet) {
        set.declare(&CLUSTER_JOBS);
        for ((state, partition, account), n) in &self.by_state {
            set.add(
                &CLUSTER_JOBS,
                vec![
                    ("state", state.as_str().to_string()),
                    ("partition", partition.clone()),
                    ("account", account.clone()),
                ],
                *n as f64,
            );
        }
        if self.per_user {
            set.declare(&CLUSTER_USER_JOBS);
            for ((state, partition, account, user), n) in &self.by_user {
                set.add(
                    &CLUSTER_USER_JOBS,
                    vec![
                        ("state", state.as_str().to_string()),
                        ("partition", partition.clone()),
                        ("account", account.clone()),
                        ("user", user.clone()),
                    ],
                    *n as f64,
                );
            }
        }
        set.declare(&CLUSTER_JOBS_PENDING);
        for ((partition, account, reason), n) in &self.pending_by_reason {
            set.add(
                &CLUSTER_JOBS_PENDING,
                vec![
                    ("partition", partition.clone()),
                    ("account", account.clone()),
                    ("reason", reason.clone()),
                ],
                *n as f64,
            );
        }
        set.declare(&CLUSTER_JOBS_ALLOCATED_CPUS);
        set.declare(&CLUSTER_JOBS_ALLOCATED_MEMORY_BYTES);
        set.declare(&CLUSTER_JOBS_ALLOCATED_GPUS);
        for ((partition, account, user), a) in &self.allocated {
            let labels = || {
                vec![
                    ("partition", partition.clone()),
                    ("account", account.clone()),
                    ("user", user.clone()),
                ]
            };
            set.add(&CLUSTER_JOBS_ALLOCATED_CPUS, labels(), a.cpus as f64);
            set.add(
                &CLUSTER_JOBS_ALLOCATED_MEMORY_BYTES,
                labels(),
                a.memory_bytes as f64,
            );
            set.add(&CLUSTER_JOBS_ALLOCATED_GPUS, labels(), a.gpus as f64);
        }
        set.declare(&JOB_GPUS);
        let mut rows: Vec<&GpuJobRow> = self.gpu_jobs.iter().collect();
        rows.sort();
        for r in rows {
            set.add(
                &JOB_GPUS,
                vec![
                    ("job_id", r.job_id.to_string()),
                    ("account", r.assoc.account.to_string()),
                    ("user", r.assoc.user.to_string()),
                    ("partition", r.assoc.partition.to_string()),
                    ("node", r.node.to_string()),
                    ("gpu", r.gpu_label()),
                ],
                r.count as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeGpuAllocation, Tres};

    fn job(id: u64, state: JobState, account: &str, gpus: u64) -> Job {
        Job {
            job_id: id,
            task_count: 1,
            user: "alice".into(),
            account: account.into(),
            partition: "gpu".into(),
            state: Some(state),
            nodes: "vm".into(),
            allocated: Tres {
                cpus: 4,
                memory_bytes: 1 << 30,
                gpus,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn counts_array_tasks_and_reasons() {
        let mut agg = JobAggregates::new(true);
        let mut pending = job(7, JobState::Pending, "a", 0);
        pending.task_count = 7;
        pending.state_reason = Some("JobArrayTaskLimit".into());
        pending.partition = "cpu,gpu".into();
        agg.job(pending);
        agg.job(job(8, JobState::Running, "a", 2));
        let mut set = MetricSet::new();
        agg.collect(&mut set);
        assert_eq!(
            set.value(
                "slurm_cluster_jobs",
                &[("state", "pending"), ("partition", "cpu"), ("account", "a")]
            ),
            Some(7.0)
        );
        assert_eq!(
            set.value(
                "slurm_cluster_jobs_pending",
                &[("reason", "JobArrayTaskLimit")]
            ),
            Some(7.0)
        );
        assert_eq!(
            set.sum("slurm_cluster_user_jobs", &[("user", "alice")]),
            8.0
        );
        assert_eq!(agg.by_partition["cpu"], (7, 0));
    }

    #[test]
    fn allocation_only_for_resource_holders() {
        let mut agg = JobAggregates::new(false);
        agg.job(job(1, JobState::Running, "a", 2));
        agg.job(job(2, JobState::Completed, "a", 2));
        agg.job(job(3, JobState::Pending, "a", 0));
        let mut set = MetricSet::new();
        agg.collect(&mut set);
        assert_eq!(
            set.sum("slurm_cluster_jobs_allocated_gpus", &[("account", "a")]),
            2.0
        );
        assert_eq!(
            set.sum("slurm_cluster_jobs_allocated_cpus", &[("account", "a")]),
            4.0
        );
        assert!(set
            .families()
            .iter()
            .all(|f| f.name != "slurm_cluster_user_jobs"));
    }

    #[test]
    fn gpu_join_rows_use_indices_or_counts() {
        let mut agg = JobAggregates::new(false);
        let mut j = job(11, JobState::Running, "ai", 3);
        j.gpu_allocations = vec![NodeGpuAllocation {
            node: "vm".into(),
            gpu_type: "h100".into(),
            count: 2,
            indices: vec![2, 3],
        }];
        agg.job(j);
        let mut set = MetricSet::new();
        agg.collect(&mut set);
        assert_eq!(
            set.value("slurm_job_gpus", &[("job_id", "11"), ("gpu", "3")]),
            Some(1.0)
        );
        // The third GPU of the TRES has no detail: it is kept, unindexed.
        assert_eq!(
            set.value("slurm_job_gpus", &[("job_id", "11"), ("gpu", "")]),
            Some(1.0)
        );
        assert_eq!(set.sum("slurm_job_gpus", &[("account", "ai")]), 3.0);
    }

    #[test]
    fn gpu_join_rows_keep_high_and_repeated_indices() {
        let mut agg = JobAggregates::new(false);
        let mut j = job(12, JobState::Running, "ai", 3);
        j.gpu_allocations = vec![NodeGpuAllocation {
            node: "vm".into(),
            gpu_type: "h100".into(),
            count: 3,
            indices: vec![1, 1, 70],
        }];
        agg.job(j);
        let mut rows: Vec<(String, u64)> = agg
            .gpu_jobs
            .iter()
            .map(|r| (r.gpu_label(), r.count))
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            vec![("1".into(), 1), ("1".into(), 1), ("70".into(), 1)]
        );
    }
}
