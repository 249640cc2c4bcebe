//! Limits Slurm enforces (`/slurmdb/vX/associations/`, `/slurmdb/vX/qos/`)
//! and the usage Slurm counts against them (`/slurm/vX/shares`).
//!
//! Units are made base units: memory MB → bytes, TRES-minutes → TRES-seconds
//! (memory MB-minutes → byte-seconds), so a limit compares directly with the
//! usage series and with `slurm_account_tres_usage_seconds_total`. Unset
//! limits have no series.

use std::collections::HashSet;

use crate::exposition::{Kind, Labels, MetricDesc, MetricSet};
use crate::model::{Association, Limits, Qos, Share};

const MIB: f64 = 1024.0 * 1024.0;

pub const ASSOC_TRES_LIMIT: MetricDesc = MetricDesc {
    name: "slurm_assoc_tres_limit",
    help: "TRES limit of a Slurm association (sacctmgr GrpTRES, MaxTRESPerJob, MaxTRESPerNode) in TRES units; mem in bytes. user=\"\" is the account's own association, partition=\"\" an association for all partitions. Absent when unset.",
    kind: Kind::Gauge,
    labels: &["account", "user", "partition", "limit", "tres"],
};

pub const ASSOC_TRES_SECONDS_LIMIT: MetricDesc = MetricDesc {
    name: "slurm_assoc_tres_seconds_limit",
    help: "TRES-time limit of a Slurm association (sacctmgr GrpTRESMins, GrpTRESRunMins, MaxTRESMinsPerJob) converted to TRES-seconds (minutes x 60; mem in byte-seconds). Absent when unset.",
    kind: Kind::Gauge,
    labels: &["account", "user", "partition", "limit", "tres"],
};

pub const ASSOC_JOBS_LIMIT: MetricDesc = MetricDesc {
    name: "slurm_assoc_jobs_limit",
    help: "Job-count limit of a Slurm association (sacctmgr GrpJobs, GrpSubmit, MaxJobs, MaxSubmit). Absent when unset.",
    kind: Kind::Gauge,
    labels: &["account", "user", "partition", "limit"],
};

pub const QOS_TRES_LIMIT: MetricDesc = MetricDesc {
    name: "slurm_qos_tres_limit",
    help: "TRES limit of a Slurm QOS (sacctmgr GrpTRES, MaxTRESPerUser, MaxTRESPerAccount, MaxTRESPerJob, MaxTRESPerNode) in TRES units; mem in bytes. Absent when unset.",
    kind: Kind::Gauge,
    labels: &["qos", "limit", "tres"],
};

pub const QOS_TRES_SECONDS_LIMIT: MetricDesc = MetricDesc {
    name: "slurm_qos_tres_seconds_limit",
    help: "TRES-time limit of a Slurm QOS (sacctmgr GrpTRESMins, GrpTRESRunMins, MaxTRESMinsPerJob, MaxTRESRunMinsPerUser, MaxTRESRunMinsPerAccount) in TRES-seconds (mem in byte-seconds). Absent when unset.",
    kind: Kind::Gauge,
    labels: &["qos", "limit", "tres"],
};

pub const QOS_JOBS_LIMIT: MetricDesc = MetricDesc {
    name: "slurm_qos_jobs_limit",
    help: "Job-count limit of a Slurm QOS (sacctmgr GrpJobs, GrpSubmit, MaxJobsPerUser, MaxJobsPerAccount, MaxSubmitPerUser, MaxSubmitPerAccount). Absent when unset.",
    kind: Kind::Gauge,
    labels: &["qos", "limit"],
};

pub const ASSOC_TRES_USAGE_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_assoc_tres_usage_seconds",
    help: "Decayed TRES usage Slurm counts against GrpTRESMins, in TRES-seconds (mem in byte-seconds): /shares tres.usage, sshare GrpTRESRaw x 60. Decays with PriorityDecayHalfLife unless it is 0; reset by PriorityUsageResetPeriod.",
    kind: Kind::Gauge,
    labels: &["account", "user", "tres"],
};

pub const ASSOC_TRES_RUNNING_SECONDS: MetricDesc = MetricDesc {
    name: "slurm_assoc_tres_running_seconds",
    help: "TRES-seconds still allocated to the association's running jobs (time limit left x TRES), counted against GrpTRESRunMins: /shares tres.run_seconds, sshare TRESRunMins x 60; mem in byte-seconds.",
    kind: Kind::Gauge,
    labels: &["account", "user", "tres"],
};

/// Every family this collector declares.
pub const METRICS: &[&MetricDesc] = &[
    &ASSOC_TRES_LIMIT,
    &ASSOC_TRES_SECONDS_LIMIT,
    &ASSOC_JOBS_LIMIT,
    &QOS_TRES_LIMIT,
    &QOS_TRES_SECONDS_LIMIT,
    &QOS_JOBS_LIMIT,
    &ASSOC_TRES_USAGE_SECONDS,
    &ASSOC_TRES_RUNNING_SECONDS,
];

/// The (TRES, TRES-seconds, job count) limit families of one kind of owner.
const ASSOC_LIMITS: [&MetricDesc; 3] = [
    &ASSOC_TRES_LIMIT,
    &ASSOC_TRES_SECONDS_LIMIT,
    &ASSOC_JOBS_LIMIT,
];
const QOS_LIMITS: [&MetricDesc; 3] = [&QOS_TRES_LIMIT, &QOS_TRES_SECONDS_LIMIT, &QOS_JOBS_LIMIT];

/// TRES whose usage is exported: those limits are set on in practice.
/// `energy`, `fs/disk`, `vmem`, `pages` and the GPU metric GRES
/// (`gres/gpumem`, `gres/gpuutil`) are left out of the usage series.
fn usage_tres(tres: &str) -> bool {
    matches!(tres, "cpu" | "mem" | "node" | "billing")
        || tres.starts_with("license/")
        || (tres.starts_with("gres/") && !matches!(tres, "gres/gpumem" | "gres/gpuutil"))
}

/// Multiplier from Slurm's unit to ours for a TRES count (mem MB → bytes).
fn count_scale(tres: &str) -> f64 {
    if tres == "mem" {
        MIB
    } else {
        1.0
    }
}

fn declare(set: &mut MetricSet, descs: [&MetricDesc; 3]) {
    for d in descs {
        set.declare(d);
    }
}

fn limit_series(
    set: &mut MetricSet,
    seen: &mut HashSet<Labels>,
    descs: [&MetricDesc; 3],
    base: &Labels,
    limits: &Limits,
) {
    let [tres_d, secs_d, jobs_d] = descs;
    for t in &limits.tres {
        let mut labels = base.clone();
        labels.push(("limit", t.limit.as_str().to_string()));
        labels.push(("tres", t.tres.clone()));
        let (d, value) = if t.limit.is_minutes() {
            (secs_d, t.value as f64 * 60.0 * count_scale(&t.tres))
        } else {
            (tres_d, t.value as f64 * count_scale(&t.tres))
        };
        let mut key = labels.clone();
        key.push(("__name__", d.name.to_string()));
        if seen.insert(key) {
            set.add(d, labels, value);
        }
    }
    for (kind, v) in &limits.jobs {
        let mut labels = base.clone();
        labels.push(("limit", kind.as_str().to_string()));
        let mut key = labels.clone();
        key.push(("__name__", jobs_d.name.to_string()));
        if seen.insert(key) {
            set.add(jobs_d, labels, *v as f64);
        }
    }
}

/// Association limits. Only associations of `cluster` when given (slurmdbd
/// may serve several clusters); a repeated label set keeps its first value.
pub fn collect_associations(assocs: &[Association], cluster: Option<&str>, set: &mut MetricSet) {
    declare(set, ASSOC_LIMITS);
    let mut seen = HashSet::new();
    for a in assocs {
        if cluster.is_some_and(|c| c != a.cluster) {
            continue;
        }
        let base: Labels = vec![
            ("account", a.account.clone()),
            ("user", a.user.clone().unwrap_or_default()),
            ("partition", a.partition.clone().unwrap_or_default()),
        ];
        limit_series(set, &mut seen, ASSOC_LIMITS, &base, &a.limits);
    }
}

pub fn collect_qos(qos: &[Qos], set: &mut MetricSet) {
    declare(set, QOS_LIMITS);
    let mut seen = HashSet::new();
    for q in qos {
        limit_series(
            set,
            &mut seen,
            QOS_LIMITS,
            &vec![("qos", q.name.clone())],
            &q.limits,
        );
    }
}

/// Usage Slurm counts against the TRES-minute limits, per association, from
/// `/shares` (v0.0.40+; absent on v0.0.38, which has no `/shares`).
pub fn collect_usage(shares: &[Share], set: &mut MetricSet) {
    set.declare(&ASSOC_TRES_USAGE_SECONDS);
    set.declare(&ASSOC_TRES_RUNNING_SECONDS);
    let mut seen = HashSet::new();
    for s in shares {
        let user = s.user.clone().unwrap_or_default();
        // `/shares` lists root's row with an empty parent; it has no limits.
        if !seen.insert((s.account.clone(), user.clone())) {
            continue;
        }
        for (d, list) in [
            (&ASSOC_TRES_USAGE_SECONDS, &s.tres_usage_seconds),
            (&ASSOC_TRES_RUNNING_SECONDS, &s.tres_run_seconds),
        ] {
            let mut tres_seen = HashSet::new();
            for (tres, v) in list {
                if !usage_tres(tres) || !tres_seen.insert(tres) {
                    continue;
                }
                set.add(
                    d,
                    vec![
                        ("account", s.account.clone()),
                        ("user", user.clone()),
                        ("tres", tres.clone()),
                    ],
                    v * count_scale(tres),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LimitKind, TresLimit};

    fn limits() -> Limits {
        Limits {
            tres: vec![
                TresLimit {
                    limit: LimitKind::GrpTres,
                    tres: "gres/gpu".into(),
                    value: 16,
                },
                TresLimit {
                    limit: LimitKind::GrpTres,
                    tres: "mem".into(),
                    value: 1000,
                },
                TresLimit {
                    limit: LimitKind::GrpTresMins,
                    tres: "gres/gpu".into(),
                    value: 6000,
                },
            ],
            jobs: vec![(LimitKind::GrpJobs, 5)],
        }
    }

    #[test]
    fn units_are_converted_and_unset_is_absent() {
        let assocs = vec![
            Association {
                cluster: "c".into(),
                account: "ai".into(),
                limits: limits(),
                ..Default::default()
            },
            Association {
                cluster: "c".into(),
                account: "ai".into(),
                user: Some("alice".into()),
                ..Default::default()
            },
            Association {
                cluster: "other".into(),
                account: "x".into(),
                limits: limits(),
                ..Default::default()
            },
        ];
        let mut set = MetricSet::new();
        collect_associations(&assocs, Some("c"), &mut set);
        let l = |limit: &'static str, tres: &'static str| {
            vec![
                ("account", "ai"),
                ("user", ""),
                ("partition", ""),
                ("limit", limit),
                ("tres", tres),
            ]
        };
        assert_eq!(
            set.value("slurm_assoc_tres_limit", &l("GrpTRES", "gres/gpu")),
            Some(16.0)
        );
        assert_eq!(
            set.value("slurm_assoc_tres_limit", &l("GrpTRES", "mem")),
            Some(1000.0 * MIB)
        );
        assert_eq!(
            set.value(
                "slurm_assoc_tres_seconds_limit",
                &l("GrpTRESMins", "gres/gpu")
            ),
            Some(360_000.0)
        );
        assert_eq!(
            set.value(
                "slurm_assoc_jobs_limit",
                &[
                    ("account", "ai"),
                    ("user", ""),
                    ("partition", ""),
                    ("limit", "GrpJobs")
                ]
            ),
            Some(5.0)
        );
        let text = set.encode_text();
        assert!(!text.contains("alice"), "unset limits have no series");
        assert!(!text.contains("account=\"x\""), "other clusters left out");
        // Without a cluster filter, both clusters' associations are series.
        let mut all = MetricSet::new();
        collect_associations(&assocs, None, &mut all);
        assert!(all.encode_text().contains("account=\"x\""));
    }

    #[test]
    fn duplicate_label_sets_are_emitted_once() {
        let q = Qos {
            name: "q".into(),
            limits: limits(),
        };
        let mut set = MetricSet::new();
        collect_qos(&[q.clone(), q], &mut set);
        let text = set.encode_text();
        assert_eq!(text.matches("slurm_qos_tres_limit{").count(), 2, "{text}");
    }

    #[test]
    fn usage_from_shares() {
        let s = Share {
            account: "ai".into(),
            user: Some("bob".into()),
            tres_usage_seconds: vec![
                ("gres/gpu".into(), 4329.5),
                ("mem".into(), 2.0),
                ("energy".into(), 0.0),
            ],
            tres_run_seconds: vec![("gres/gpu".into(), 28268.0)],
            ..Default::default()
        };
        let mut set = MetricSet::new();
        collect_usage(&[s], &mut set);
        let l = |t: &'static str| vec![("account", "ai"), ("user", "bob"), ("tres", t)];
        assert_eq!(
            set.value("slurm_assoc_tres_usage_seconds", &l("gres/gpu")),
            Some(4329.5)
        );
        assert_eq!(
            set.value("slurm_assoc_tres_usage_seconds", &l("mem")),
            Some(2.0 * MIB)
        );
        assert_eq!(
            set.value("slurm_assoc_tres_running_seconds", &l("gres/gpu")),
            Some(28268.0)
        );
        assert_eq!(
            set.value("slurm_assoc_tres_usage_seconds", &l("energy")),
            None
        );
    }
}
