//! Usage counters (`slurm_account_tres_usage_seconds_total`) and budgets.

use crate::cluster::budgets::Budgets;
use crate::cluster::usage::tracker::UsageStatus;
use crate::cluster::usage::Accountant;
use crate::exposition::{Kind, MetricDesc, MetricSet};

pub const ACCOUNT_TRES_USAGE_SECONDS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_account_tres_usage_seconds_total",
    help: "Allocated TRES-seconds by account, user, partition and TRES (cpu, mem in MB-seconds, gres/gpu, gres/gpu:<type>, billing), credited exactly between polls as sreport counts them; persisted across restarts with --usage-state-file. increase() over a month matches `sreport cluster AccountUtilizationByUser -t Seconds`.",
    kind: Kind::Counter,
    labels: &["account", "user", "partition", "tres"],
};

pub const ACCOUNT_TRES_COST_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_account_tres_cost_total",
    help: "Money for allocated TRES by account, user, partition and priced TRES (gres/gpu, cpu, billing), in units of the `currency` label: the usage counter's exact TRES-seconds times the price table of --budgets (prices:), credited in the same step, so increase() of this over any window is the usage's increase × price. Persisted with --usage-state-file.",
    kind: Kind::Counter,
    labels: &["account", "user", "partition", "tres", "currency"],
};

pub const ACCOUNT_BUDGET_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_account_budget_seconds",
    help: "Monthly budget (calendar month, UTC) in TRES-seconds, from --budgets (gpu_hours × 3600, ...).",
    kind: Kind::Gauge,
    labels: &["account", "tres"],
};

pub const ACCOUNT_BUDGET_USED_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_account_budget_used_seconds",
    help: "TRES-seconds used by the account in the current calendar month (UTC), from the same accounting as slurm_account_tres_usage_seconds_total.",
    kind: Kind::Gauge,
    labels: &["account", "tres"],
};

pub const ACCOUNT_BUDGET_USED_RATIO: MetricDesc = MetricDesc {
    name: "slurm_account_budget_used_ratio",
    help: "Budget used this calendar month: used / budget (+Inf when the budget is 0 and something was used).",
    kind: Kind::Gauge,
    labels: &["account", "tres"],
};

pub const EXPORTER_USAGE_TRACKED_JOBS: MetricDesc = MetricDesc {
    name: "slurm_exporter_usage_tracked_jobs",
    help: "Jobs the usage accountant is tracking (running, or finished and still listed by slurmctld).",
    kind: Kind::Gauge,
    labels: &[],
};

pub const EXPORTER_USAGE_ACCOUNTED_UNTIL_TIMESTAMP_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_exporter_usage_accounted_until_timestamp_seconds",
    help: "Unix time up to which all usage is credited (the last accounted poll).",
    kind: Kind::Gauge,
    labels: &[],
};

pub const EXPORTER_USAGE_UNRESOLVED_JOBS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_exporter_usage_unresolved_jobs_total",
    help: "Jobs that left /jobs without a seen end and that slurmdbd did not return within the give-up time; their usage after their last poll is missing.",
    kind: Kind::Counter,
    labels: &[],
};

pub const EXPORTER_USAGE_SLURMDB_LOOKUPS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_exporter_usage_slurmdb_lookups_total",
    help: "slurmdbd lookups of finished jobs (/slurmdb/vX/jobs) by result; made only for jobs that vanished without a seen end and for gaps.",
    kind: Kind::Counter,
    labels: &["result"],
};

pub const EXPORTER_USAGE_STATE_SAVE_ERRORS_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_exporter_usage_state_save_errors_total",
    help: "Failed writes of --usage-state-file.",
    kind: Kind::Counter,
    labels: &[],
};

/// Every family this collector declares.
pub const METRICS: &[&MetricDesc] = &[
    &ACCOUNT_TRES_USAGE_SECONDS_TOTAL,
    &ACCOUNT_TRES_COST_TOTAL,
    &ACCOUNT_BUDGET_SECONDS,
    &ACCOUNT_BUDGET_USED_SECONDS,
    &ACCOUNT_BUDGET_USED_RATIO,
    &EXPORTER_USAGE_TRACKED_JOBS,
    &EXPORTER_USAGE_ACCOUNTED_UNTIL_TIMESTAMP_SECONDS,
    &EXPORTER_USAGE_UNRESOLVED_JOBS_TOTAL,
    &EXPORTER_USAGE_SLURMDB_LOOKUPS_TOTAL,
    &EXPORTER_USAGE_STATE_SAVE_ERRORS_TOTAL,
];

pub fn collect(
    a: &Accountant,
    budgets: Option<&Budgets>,
    status: &UsageStatus,
    set: &mut MetricSet,
) {
    set.declare(&ACCOUNT_TRES_USAGE_SECONDS_TOTAL);
    for ((account, user, partition, tres), v) in &a.totals {
        set.add(
            &ACCOUNT_TRES_USAGE_SECONDS_TOTAL,
            vec![
                ("account", account.clone()),
                ("user", user.clone()),
                ("partition", partition.clone()),
                ("tres", tres.clone()),
            ],
            *v,
        );
    }
    if !a.cost_totals.is_empty() || a.prices.is_some() {
        set.declare(&ACCOUNT_TRES_COST_TOTAL);
    }
    for ((account, user, partition, tres, currency), v) in &a.cost_totals {
        set.add(
            &ACCOUNT_TRES_COST_TOTAL,
            vec![
                ("account", account.clone()),
                ("user", user.clone()),
                ("partition", partition.clone()),
                ("tres", tres.clone()),
                ("currency", currency.clone()),
            ],
            *v,
        );
    }
    if let Some(b) = budgets {
        set.declare(&ACCOUNT_BUDGET_SECONDS);
        set.declare(&ACCOUNT_BUDGET_USED_SECONDS);
        set.declare(&ACCOUNT_BUDGET_USED_RATIO);
        for ((account, tres), budget) in &b.seconds {
            let l = || vec![("account", account.clone()), ("tres", tres.clone())];
            let used = a.month_used(account, tres);
            let ratio = if *budget > 0.0 {
                used / budget
            } else if used > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            set.add(&ACCOUNT_BUDGET_SECONDS, l(), *budget);
            set.add(&ACCOUNT_BUDGET_USED_SECONDS, l(), used);
            set.add(&ACCOUNT_BUDGET_USED_RATIO, l(), ratio);
        }
    }
    set.add(&EXPORTER_USAGE_TRACKED_JOBS, vec![], a.jobs.len() as f64);
    if let Some(h) = a.horizon {
        set.add(
            &EXPORTER_USAGE_ACCOUNTED_UNTIL_TIMESTAMP_SECONDS,
            vec![],
            h as f64,
        );
    }
    set.add(
        &EXPORTER_USAGE_UNRESOLVED_JOBS_TOTAL,
        vec![],
        a.unresolved_jobs as f64,
    );
    set.declare(&EXPORTER_USAGE_SLURMDB_LOOKUPS_TOTAL);
    for result in ["ok", "error"] {
        set.add(
            &EXPORTER_USAGE_SLURMDB_LOOKUPS_TOTAL,
            vec![("result", result.to_string())],
            status.lookups.get(result).copied().unwrap_or(0) as f64,
        );
    }
    set.add(
        &EXPORTER_USAGE_STATE_SAVE_ERRORS_TOTAL,
        vec![],
        status.state_save_errors as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::usage::{Alloc, UsageRow};

    #[test]
    fn counters_and_budget_ratio() {
        let mut a = Accountant::default();
        let r = UsageRow {
            job_id: 1,
            start: 0,
            end: None,
            suspended: false,
            account: "ai".into(),
            user: "bob".into(),
            partition: "gpu".into(),
            alloc: Alloc {
                cpus: 2.0,
                gpus: 1.0,
                ..Default::default()
            },
        };
        let t0 = crate::cluster::usage::month_bounds(2026, 11).0 + 100;
        a.apply(t0, std::slice::from_ref(&r), None);
        a.apply(t0 + 3600, std::slice::from_ref(&r), None);
        let b = Budgets::parse(
            std::path::Path::new("b.yaml"),
            "accounts: {ai: {gpu_hours: 4, cpu_hours: 0}, other: {gpu_hours: 1}}",
        )
        .unwrap();
        let mut set = MetricSet::new();
        collect(&a, Some(&b), &UsageStatus::default(), &mut set);
        assert_eq!(
            set.value(
                "slurm_account_tres_usage_seconds_total",
                &[("user", "bob"), ("tres", "gres/gpu")]
            ),
            Some(3600.0)
        );
        assert_eq!(
            set.value(
                "slurm_account_budget_used_ratio",
                &[("account", "ai"), ("tres", "gres/gpu")]
            ),
            Some(0.25)
        );
        assert_eq!(
            set.value(
                "slurm_account_budget_used_ratio",
                &[("account", "ai"), ("tres", "cpu")]
            ),
            Some(f64::INFINITY)
        );
        assert_eq!(
            set.value("slurm_account_budget_used_seconds", &[("account", "other")]),
            Some(0.0)
        );
        let text = set.encode_text();
        assert!(text.contains("# TYPE slurm_account_tres_usage_seconds_total counter"));
        assert!(!text.contains("slurm_account_tres_cost_total"));
    }

    #[test]
    fn cost_counter() {
        let b = Budgets::parse(
            std::path::Path::new("b.yaml"),
            "prices: {currency: EUR, gpu_hour: {partitions: {gpu: 3.5}}}",
        )
        .unwrap();
        let mut a = Accountant {
            prices: b.prices.clone(),
            ..Default::default()
        };
        let r = UsageRow {
            job_id: 1,
            start: 0,
            account: "ai".into(),
            user: "bob".into(),
            partition: "gpu".into(),
            alloc: Alloc {
                cpus: 2.0,
                gpus: 2.0,
                ..Default::default()
            },
            ..Default::default()
        };
        a.apply(1000, std::slice::from_ref(&r), None);
        a.apply(1000 + 1800, std::slice::from_ref(&r), None);
        let mut set = MetricSet::new();
        collect(&a, Some(&b), &UsageStatus::default(), &mut set);
        // 2 GPUs × 0.5 h × 3.5 EUR.
        assert_eq!(
            set.value(
                "slurm_account_tres_cost_total",
                &[
                    ("user", "bob"),
                    ("tres", "gres/gpu"),
                    ("currency", "EUR"),
                    ("partition", "gpu")
                ]
            ),
            Some(3.5)
        );
        // CPUs carry no price here: no cpu cost series.
        assert_eq!(
            set.value("slurm_account_tres_cost_total", &[("tres", "cpu")]),
            None
        );
        assert!(set
            .encode_text()
            .contains("# TYPE slurm_account_tres_cost_total counter"));
    }
}
