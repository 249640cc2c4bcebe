//! Fairshare metrics from `/shares` (`sshare -a -l`), nested accounts kept through `parent`.

use crate::exposition::{Kind, MetricSet};
use crate::model::Share;

pub fn collect(shares: &[Share], set: &mut MetricSet) {
    const RAW: &str =
        "Raw shares of the association (sshare RawShares); absent for parent-inherited shares.";
    const NORM: &str = "Normalized shares (sshare NormShares), 0..1.";
    const USAGE: &str = "Raw decayed usage in TRES-billing-seconds (sshare RawUsage).";
    const EFF: &str = "Effective usage (sshare EffectvUsage), 0..1.";
    const FS: &str =
        "Fairshare factor (sshare FairShare; LevelFS for account rows under fair tree).";
    for (n, h) in [
        ("slurm_share_raw_shares", RAW),
        ("slurm_share_normalized_shares_ratio", NORM),
        ("slurm_share_raw_usage", USAGE),
        ("slurm_share_effective_usage_ratio", EFF),
        ("slurm_share_fairshare_factor", FS),
    ] {
        set.family(n, h, Kind::Gauge);
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
            set.gauge("slurm_share_raw_shares", RAW, labels(), raw);
        }
        set.gauge(
            "slurm_share_normalized_shares_ratio",
            NORM,
            labels(),
            s.normalized_shares,
        );
        set.gauge("slurm_share_raw_usage", USAGE, labels(), s.raw_usage);
        set.gauge(
            "slurm_share_effective_usage_ratio",
            EFF,
            labels(),
            s.effective_usage,
        );
        if let Some(fs) = s.fairshare {
            set.gauge("slurm_share_fairshare_factor", FS, labels(), fs);
        }
    }
}
