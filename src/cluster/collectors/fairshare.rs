//! Fairshare metrics from `/shares` (`sshare -a -l`), nested accounts kept through `parent`.

use crate::exposition::{Kind, MetricDesc, MetricSet};
use crate::model::Share;

pub const SHARE_RAW_SHARES: MetricDesc = MetricDesc {
    name: "slurm_share_raw_shares",
    help: "Raw shares of the association (sshare RawShares); absent for parent-inherited shares.",
    kind: Kind::Gauge,
    labels: &["account", "user", "parent"],
};

pub const SHARE_NORMALIZED_SHARES_RATIO: MetricDesc = MetricDesc {
    name: "slurm_share_normalized_shares_ratio",
    help: "Normalized shares (sshare NormShares), 0..1.",
    kind: Kind::Gauge,
    labels: &["account", "user", "parent"],
};

pub const SHARE_RAW_USAGE: MetricDesc = MetricDesc {
    name: "slurm_share_raw_usage",
    help: "Raw decayed usage in TRES-billing-seconds (sshare RawUsage).",
    kind: Kind::Gauge,
    labels: &["account", "user", "parent"],
};

pub const SHARE_EFFECTIVE_USAGE_RATIO: MetricDesc = MetricDesc {
    name: "slurm_share_effective_usage_ratio",
    help: "Effective usage (sshare EffectvUsage), 0..1.",
    kind: Kind::Gauge,
    labels: &["account", "user", "parent"],
};

pub const SHARE_FAIRSHARE_FACTOR: MetricDesc = MetricDesc {
    name: "slurm_share_fairshare_factor",
    help: "Fairshare factor (sshare FairShare; LevelFS for account rows under fair tree).",
    kind: Kind::Gauge,
    labels: &["account", "user", "parent"],
};

/// Every family this collector declares.
pub const METRICS: &[&MetricDesc] = &[
    &SHARE_RAW_SHARES,
    &SHARE_NORMALIZED_SHARES_RATIO,
    &SHARE_RAW_USAGE,
    &SHARE_EFFECTIVE_USAGE_RATIO,
    &SHARE_FAIRSHARE_FACTOR,
];

pub fn collect(shares: &[Share], set: &mut MetricSet) {
    for d in METRICS {
        set.declare(d);
    }
    for s in shares {
        let labels = || {
            vec![
                ("account", s.account.clone()),
                ("user", s.user.clone().unwrap_or_default()),
                ("parent", s.parent.clone()),
            ]
        };
        if let Some(raw) = s.raw_shares {
            set.add(&SHARE_RAW_SHARES, labels(), raw);
        }
        set.add(
            &SHARE_NORMALIZED_SHARES_RATIO,
            labels(),
            s.normalized_shares,
        );
        set.add(&SHARE_RAW_USAGE, labels(), s.raw_usage);
        set.add(&SHARE_EFFECTIVE_USAGE_RATIO, labels(), s.effective_usage);
        if let Some(fs) = s.fairshare {
            set.add(&SHARE_FAIRSHARE_FACTOR, labels(), fs);
        }
    }
}
