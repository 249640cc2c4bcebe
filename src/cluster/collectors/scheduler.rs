//! Scheduler health from `/diag` (`sdiag`). Slurm resets these counters at
//! midnight and on `sdiag -r`; they are exposed as counters so `rate()` handles the resets.

use crate::exposition::{Kind, MetricSet};
use crate::model::Diag;

pub fn collect(d: &Diag, set: &mut MetricSet) {
    let g = |set: &mut MetricSet, name: &'static str, help: &'static str, v: f64| {
        set.gauge(name, help, vec![], v)
    };
    let c = |set: &mut MetricSet, name: &'static str, help: &'static str, v: f64| {
        set.counter(name, help, vec![], v)
    };
    g(
        set,
        "slurm_scheduler_threads",
        "slurmctld server threads in use.",
        d.server_thread_count as f64,
    );
    g(
        set,
        "slurm_scheduler_agent_queue_size",
        "Outgoing RPCs queued for agents.",
        d.agent_queue_size as f64,
    );
    g(
        set,
        "slurm_scheduler_agents",
        "Agent threads.",
        d.agent_count as f64,
    );
    g(
        set,
        "slurm_scheduler_dbd_agent_queue_size",
        "Messages queued for slurmdbd; growth means slurmdbd is slow or down.",
        d.dbd_agent_queue_size as f64,
    );
    c(
        set,
        "slurm_scheduler_jobs_submitted_total",
        "Jobs submitted since the last sdiag reset.",
        d.jobs_submitted as f64,
    );
    c(
        set,
        "slurm_scheduler_jobs_started_total",
        "Jobs started since the last sdiag reset.",
        d.jobs_started as f64,
    );
    c(
        set,
        "slurm_scheduler_jobs_completed_total",
        "Jobs completed since the last sdiag reset.",
        d.jobs_completed as f64,
    );
    c(
        set,
        "slurm_scheduler_jobs_canceled_total",
        "Jobs canceled since the last sdiag reset.",
        d.jobs_canceled as f64,
    );
    c(
        set,
        "slurm_scheduler_jobs_failed_total",
        "Jobs failed since the last sdiag reset.",
        d.jobs_failed as f64,
    );
    g(
        set,
        "slurm_scheduler_cycle_last_seconds",
        "Duration of the last main scheduling cycle.",
        d.schedule_cycle_last_seconds,
    );
    g(
        set,
        "slurm_scheduler_cycle_max_seconds",
        "Longest main scheduling cycle since the last reset.",
        d.schedule_cycle_max_seconds,
    );
    g(
        set,
        "slurm_scheduler_cycle_mean_seconds",
        "Mean main scheduling cycle since the last reset.",
        d.schedule_cycle_mean_seconds,
    );
    c(
        set,
        "slurm_scheduler_cycles_total",
        "Main scheduling cycles since the last reset.",
        d.schedule_cycle_total as f64,
    );
    g(
        set,
        "slurm_scheduler_queue_length",
        "Jobs pending in the main scheduler queue (last cycle).",
        d.schedule_queue_length as f64,
    );
    g(
        set,
        "slurm_scheduler_backfill_active",
        "1 while a backfill cycle runs.",
        if d.backfill_active { 1.0 } else { 0.0 },
    );
    g(
        set,
        "slurm_scheduler_backfill_cycle_last_seconds",
        "Duration of the last backfill cycle.",
        d.backfill_cycle_last_seconds,
    );
    g(
        set,
        "slurm_scheduler_backfill_cycle_max_seconds",
        "Longest backfill cycle since the last reset.",
        d.backfill_cycle_max_seconds,
    );
    g(
        set,
        "slurm_scheduler_backfill_cycle_mean_seconds",
        "Mean backfill cycle since the last reset.",
        d.backfill_cycle_mean_seconds,
    );
    c(
        set,
        "slurm_scheduler_backfill_cycles_total",
        "Backfill cycles since the last reset.",
        d.backfill_cycle_total as f64,
    );
    g(
        set,
        "slurm_scheduler_backfill_last_depth",
        "Jobs considered in the last backfill cycle.",
        d.backfill_last_depth as f64,
    );
    g(
        set,
        "slurm_scheduler_backfill_queue_length",
        "Jobs pending in the backfill queue (last cycle).",
        d.backfill_queue_length as f64,
    );
    c(
        set,
        "slurm_scheduler_backfilled_jobs_total",
        "Jobs started by backfill since the last reset.",
        d.backfilled_jobs_total as f64,
    );

    const RPC: &str = "RPCs received by slurmctld, by message type.";
    const RPC_T: &str = "Time slurmctld spent on RPCs, by message type.";
    const URPC: &str = "RPCs received by slurmctld, by user.";
    const URPC_T: &str = "Time slurmctld spent on RPCs, by user.";
    set.family("slurm_scheduler_rpcs_total", RPC, Kind::Counter);
    set.family(
        "slurm_scheduler_rpc_duration_seconds_total",
        RPC_T,
        Kind::Counter,
    );
    for r in &d.rpcs_by_type {
        set.counter(
            "slurm_scheduler_rpcs_total",
            RPC,
            vec![("rpc", r.name.clone())],
            r.count as f64,
        );
        set.counter(
            "slurm_scheduler_rpc_duration_seconds_total",
            RPC_T,
            vec![("rpc", r.name.clone())],
            r.total_time_seconds,
        );
    }
    set.family("slurm_scheduler_user_rpcs_total", URPC, Kind::Counter);
    set.family(
        "slurm_scheduler_user_rpc_duration_seconds_total",
        URPC_T,
        Kind::Counter,
    );
    for r in &d.rpcs_by_user {
        set.counter(
            "slurm_scheduler_user_rpcs_total",
            URPC,
            vec![("user", r.name.clone())],
            r.count as f64,
        );
        set.counter(
            "slurm_scheduler_user_rpc_duration_seconds_total",
            URPC_T,
            vec![("user", r.name.clone())],
            r.total_time_seconds,
        );
    }
}
