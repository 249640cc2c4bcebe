//! Scheduler health from `/diag` (`sdiag`). Slurm resets these counters at
//! midnight and on `sdiag -r`; they are exposed as counters so `rate()` handles the resets.

use crate::exposition::{Kind, MetricDesc, MetricSet};
use crate::model::Diag;

pub const SCHEDULER_THREADS: MetricDesc = MetricDesc {
    name: "slurm_scheduler_threads",
    help: "slurmctld server threads in use.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_AGENT_QUEUE_SIZE: MetricDesc = MetricDesc {
    name: "slurm_scheduler_agent_queue_size",
    help: "Outgoing RPCs queued for agents.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_AGENTS: MetricDesc = MetricDesc {
    name: "slurm_scheduler_agents",
    help: "Agent threads.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_DBD_AGENT_QUEUE_SIZE: MetricDesc = MetricDesc {
    name: "slurm_scheduler_dbd_agent_queue_size",
    help: "Messages queued for slurmdbd; growth means slurmdbd is slow or down.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_JOBS_SUBMITTED_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_jobs_submitted_total",
    help: "Jobs submitted since the last sdiag reset.",
    kind: Kind::Counter,
    labels: &[],
};

pub const SCHEDULER_JOBS_STARTED_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_jobs_started_total",
    help: "Jobs started since the last sdiag reset.",
    kind: Kind::Counter,
    labels: &[],
};

pub const SCHEDULER_JOBS_COMPLETED_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_jobs_completed_total",
    help: "Jobs completed since the last sdiag reset.",
    kind: Kind::Counter,
    labels: &[],
};

pub const SCHEDULER_JOBS_CANCELED_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_jobs_canceled_total",
    help: "Jobs canceled since the last sdiag reset.",
    kind: Kind::Counter,
    labels: &[],
};

pub const SCHEDULER_JOBS_FAILED_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_jobs_failed_total",
    help: "Jobs failed since the last sdiag reset.",
    kind: Kind::Counter,
    labels: &[],
};

pub const SCHEDULER_CYCLE_LAST_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_scheduler_cycle_last_seconds",
    help: "Duration of the last main scheduling cycle.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_CYCLE_MAX_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_scheduler_cycle_max_seconds",
    help: "Longest main scheduling cycle since the last reset.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_CYCLE_MEAN_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_scheduler_cycle_mean_seconds",
    help: "Mean main scheduling cycle since the last reset.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_CYCLES_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_cycles_total",
    help: "Main scheduling cycles since the last reset.",
    kind: Kind::Counter,
    labels: &[],
};

pub const SCHEDULER_QUEUE_LENGTH: MetricDesc = MetricDesc {
    name: "slurm_scheduler_queue_length",
    help: "Jobs pending in the main scheduler queue (last cycle).",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_BACKFILL_ACTIVE: MetricDesc = MetricDesc {
    name: "slurm_scheduler_backfill_active",
    help: "1 while a backfill cycle runs.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_BACKFILL_CYCLE_LAST_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_scheduler_backfill_cycle_last_seconds",
    help: "Duration of the last backfill cycle.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_BACKFILL_CYCLE_MAX_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_scheduler_backfill_cycle_max_seconds",
    help: "Longest backfill cycle since the last reset.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_BACKFILL_CYCLE_MEAN_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_scheduler_backfill_cycle_mean_seconds",
    help: "Mean backfill cycle since the last reset.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_BACKFILL_CYCLES_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_backfill_cycles_total",
    help: "Backfill cycles since the last reset.",
    kind: Kind::Counter,
    labels: &[],
};

pub const SCHEDULER_BACKFILL_LAST_DEPTH: MetricDesc = MetricDesc {
    name: "slurm_scheduler_backfill_last_depth",
    help: "Jobs considered in the last backfill cycle.",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_BACKFILL_QUEUE_LENGTH: MetricDesc = MetricDesc {
    name: "slurm_scheduler_backfill_queue_length",
    help: "Jobs pending in the backfill queue (last cycle).",
    kind: Kind::Gauge,
    labels: &[],
};

pub const SCHEDULER_BACKFILLED_JOBS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_backfilled_jobs_total",
    help: "Jobs started by backfill since the last reset.",
    kind: Kind::Counter,
    labels: &[],
};

pub const SCHEDULER_RPCS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_rpcs_total",
    help: "RPCs received by slurmctld, by message type.",
    kind: Kind::Counter,
    labels: &["rpc"],
};

pub const SCHEDULER_RPC_DURATION_SECONDS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_rpc_duration_seconds_total",
    help: "Time slurmctld spent on RPCs, by message type.",
    kind: Kind::Counter,
    labels: &["rpc"],
};

pub const SCHEDULER_USER_RPCS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_user_rpcs_total",
    help: "RPCs received by slurmctld, by user.",
    kind: Kind::Counter,
    labels: &["user"],
};

pub const SCHEDULER_USER_RPC_DURATION_SECONDS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_scheduler_user_rpc_duration_seconds_total",
    help: "Time slurmctld spent on RPCs, by user.",
    kind: Kind::Counter,
    labels: &["user"],
};

/// Every family this collector declares.
pub const METRICS: &[&MetricDesc] = &[
    &SCHEDULER_THREADS,
    &SCHEDULER_AGENT_QUEUE_SIZE,
    &SCHEDULER_AGENTS,
    &SCHEDULER_DBD_AGENT_QUEUE_SIZE,
    &SCHEDULER_JOBS_SUBMITTED_TOTAL,
    &SCHEDULER_JOBS_STARTED_TOTAL,
    &SCHEDULER_JOBS_COMPLETED_TOTAL,
    &SCHEDULER_JOBS_CANCELED_TOTAL,
    &SCHEDULER_JOBS_FAILED_TOTAL,
    &SCHEDULER_CYCLE_LAST_SECONDS,
    &SCHEDULER_CYCLE_MAX_SECONDS,
    &SCHEDULER_CYCLE_MEAN_SECONDS,
    &SCHEDULER_CYCLES_TOTAL,
    &SCHEDULER_QUEUE_LENGTH,
    &SCHEDULER_BACKFILL_ACTIVE,
    &SCHEDULER_BACKFILL_CYCLE_LAST_SECONDS,
    &SCHEDULER_BACKFILL_CYCLE_MAX_SECONDS,
    &SCHEDULER_BACKFILL_CYCLE_MEAN_SECONDS,
    &SCHEDULER_BACKFILL_CYCLES_TOTAL,
    &SCHEDULER_BACKFILL_LAST_DEPTH,
    &SCHEDULER_BACKFILL_QUEUE_LENGTH,
    &SCHEDULER_BACKFILLED_JOBS_TOTAL,
    &SCHEDULER_RPCS_TOTAL,
    &SCHEDULER_RPC_DURATION_SECONDS_TOTAL,
    &SCHEDULER_USER_RPCS_TOTAL,
    &SCHEDULER_USER_RPC_DURATION_SECONDS_TOTAL,
];

pub fn collect(d: &Diag, set: &mut MetricSet) {
    set.add(&SCHEDULER_THREADS, vec![], d.server_thread_count as f64);
    set.add(
        &SCHEDULER_AGENT_QUEUE_SIZE,
        vec![],
        d.agent_queue_size as f64,
    );
    set.add(&SCHEDULER_AGENTS, vec![], d.agent_count as f64);
    set.add(
        &SCHEDULER_DBD_AGENT_QUEUE_SIZE,
        vec![],
        d.dbd_agent_queue_size as f64,
    );
    set.add(
        &SCHEDULER_JOBS_SUBMITTED_TOTAL,
        vec![],
        d.jobs_submitted as f64,
    );
    set.add(&SCHEDULER_JOBS_STARTED_TOTAL, vec![], d.jobs_started as f64);
    set.add(
        &SCHEDULER_JOBS_COMPLETED_TOTAL,
        vec![],
        d.jobs_completed as f64,
    );
    set.add(
        &SCHEDULER_JOBS_CANCELED_TOTAL,
        vec![],
        d.jobs_canceled as f64,
    );
    set.add(&SCHEDULER_JOBS_FAILED_TOTAL, vec![], d.jobs_failed as f64);
    set.add(
        &SCHEDULER_CYCLE_LAST_SECONDS,
        vec![],
        d.schedule_cycle_last_seconds,
    );
    set.add(
        &SCHEDULER_CYCLE_MAX_SECONDS,
        vec![],
        d.schedule_cycle_max_seconds,
    );
    set.add(
        &SCHEDULER_CYCLE_MEAN_SECONDS,
        vec![],
        d.schedule_cycle_mean_seconds,
    );
    set.add(
        &SCHEDULER_CYCLES_TOTAL,
        vec![],
        d.schedule_cycle_total as f64,
    );
    set.add(
        &SCHEDULER_QUEUE_LENGTH,
        vec![],
        d.schedule_queue_length as f64,
    );
    set.add(
        &SCHEDULER_BACKFILL_ACTIVE,
        vec![],
        if d.backfill_active { 1.0 } else { 0.0 },
    );
    set.add(
        &SCHEDULER_BACKFILL_CYCLE_LAST_SECONDS,
        vec![],
        d.backfill_cycle_last_seconds,
    );
    set.add(
        &SCHEDULER_BACKFILL_CYCLE_MAX_SECONDS,
        vec![],
        d.backfill_cycle_max_seconds,
    );
    set.add(
        &SCHEDULER_BACKFILL_CYCLE_MEAN_SECONDS,
        vec![],
        d.backfill_cycle_mean_seconds,
    );
    set.add(
        &SCHEDULER_BACKFILL_CYCLES_TOTAL,
        vec![],
        d.backfill_cycle_total as f64,
    );
    set.add(
        &SCHEDULER_BACKFILL_LAST_DEPTH,
        vec![],
        d.backfill_last_depth as f64,
    );
    set.add(
        &SCHEDULER_BACKFILL_QUEUE_LENGTH,
        vec![],
        d.backfill_queue_length as f64,
    );
    set.add(
        &SCHEDULER_BACKFILLED_JOBS_TOTAL,
        vec![],
        d.backfilled_jobs_total as f64,
    );

    set.declare(&SCHEDULER_RPCS_TOTAL);
    set.declare(&SCHEDULER_RPC_DURATION_SECONDS_TOTAL);
    for r in &d.rpcs_by_type {
        set.add(
            &SCHEDULER_RPCS_TOTAL,
            vec![("rpc", r.name.clone())],
            r.count as f64,
        );
        set.add(
            &SCHEDULER_RPC_DURATION_SECONDS_TOTAL,
            vec![("rpc", r.name.clone())],
            r.total_time_seconds,
        );
    }
    set.declare(&SCHEDULER_USER_RPCS_TOTAL);
    set.declare(&SCHEDULER_USER_RPC_DURATION_SECONDS_TOTAL);
    for r in &d.rpcs_by_user {
        set.add(
            &SCHEDULER_USER_RPCS_TOTAL,
            vec![("user", r.name.clone())],
            r.count as f64,
        );
        set.add(
            &SCHEDULER_USER_RPC_DURATION_SECONDS_TOTAL,
            vec![("user", r.name.clone())],
            r.total_time_seconds,
        );
    }
}
