//! The accountant against sreport on recorded clusters: the jobs of
//! `sacct --json` (start, end, allocated TRES) are replayed as slurmctld would
//! list them to a scraper polling every 30 s, and the TRES-seconds credited for
//! the hour slurmdbd had rolled up must print as `sreport cluster
//! AccountUtilizationByUser -t Minutes|Hours` printed them (same rounding).
//!
//! 25.11.7 (`rig25`): rollup 18:00–19:00 UTC. 22.05.8 (`rig`): 19:00–20:00 UTC,
//! with a requeued job (two runs under one id) and a job array.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use slurm_gpu_exporter::cluster::usage::{
    slurmdb, state, Accountant, AccountantOptions, DbWindow, UsageRow,
};

fn fixtures(release: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/slurm-cli")
        .join(release)
}

fn sacct(release: &str) -> Vec<UsageRow> {
    let body = std::fs::read(fixtures(release).join("sacct.json")).unwrap();
    slurmdb::parse_jobs(&mut &body[..]).unwrap()
}

/// (account, login, tres) -> Used, from `sreport ... -P`; login "" for account rows.
fn sreport(release: &str, file: &str) -> BTreeMap<(String, String, String), f64> {
    let text = std::fs::read_to_string(fixtures(release).join(file)).unwrap();
    let mut header: Option<Vec<String>> = None;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('|').collect();
        if cols.len() < 5 {
            continue;
        }
        match &header {
            None => header = Some(cols.iter().map(|s| s.to_string()).collect()),
            Some(h) => {
                let get = |name: &str| {
                    h.iter()
                        .position(|c| c == name)
                        .map(|i| cols[i].to_string())
                };
                let tres = get("TRES Name").unwrap_or_else(|| "cpu".into());
                let used: f64 = get("Used").unwrap().parse().unwrap();
                out.insert((get("Account").unwrap(), get("Login").unwrap(), tres), used);
            }
        }
    }
    out
}

/// The recorded jobs as a cluster: what `/slurm/vX/jobs` lists at `t`
/// (finished jobs stay `min_job_age`; an earlier run of a requeued job
/// disappears when it is requeued) and what slurmdbd returns for a window.
struct Cluster {
    jobs: Vec<UsageRow>,
    min_job_age: i64,
}

impl Cluster {
    fn slurmctld(&self, t: i64) -> Vec<UsageRow> {
        self.jobs
            .iter()
            .filter(|j| j.start <= t)
            .filter(|j| match j.end {
                None => true,
                Some(e) if e > t => true,
                Some(e) => {
                    let requeued = self
                        .jobs
                        .iter()
                        .any(|o| o.job_id == j.job_id && o.start > j.start);
                    !requeued && e + self.min_job_age > t
                }
            })
            .map(|j| UsageRow {
                end: j.end.filter(|&e| e <= t),
                ..j.clone()
            })
            .collect()
    }

    fn slurmdbd(&self, w: DbWindow) -> Vec<UsageRow> {
        self.jobs
            .iter()
            .filter(|j| j.start <= w.to && j.end.is_none_or(|e| e >= w.from))
            .map(|j| UsageRow {
                end: j.end.filter(|&e| e <= w.to),
                ..j.clone()
            })
            .collect()
    }

    fn poll(&self, a: &mut Accountant, t: i64) {
        let rows = self.slurmctld(t);
        let db = a.db_window(t, &rows).map(|w| self.slurmdbd(w));
        a.apply(t, &rows, db.as_deref());
    }
}

type Totals = BTreeMap<(String, String, String), f64>;

/// (account, user, tres) -> TRES-seconds, plus account subtotals (user "")
/// and the cluster total under account "root".
fn rollup(a: &Accountant) -> Totals {
    let mut out = Totals::new();
    for ((account, user, _partition, tres), v) in &a.totals {
        let mut keys = vec![
            (account.clone(), user.clone(), tres.clone()),
            ("root".to_string(), String::new(), tres.clone()),
        ];
        // sreport's root row is the whole cluster, root's own jobs included.
        if account != "root" {
            keys.push((account.clone(), String::new(), tres.clone()));
        }
        for key in keys {
            *out.entry(key).or_default() += v;
        }
    }
    out
}

fn diff(after: &Totals, before: &Totals) -> Totals {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// Polls every 30 s from 10 minutes before the window to its end; returns the
/// usage credited inside `[w0, w1]`. With `restart_at`, the scraper saves its
/// state, is down for 10 minutes and comes back from the file.
fn replay(cluster: &Cluster, w0: i64, w1: i64, restart_at: Option<i64>) -> Totals {
    let opts = AccountantOptions::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage-state.json");
    let mut a = Accountant::new(opts);
    let mut at_w0 = None;
    let mut t = w0 - 600;
    while t <= w1 {
        if restart_at == Some(t) {
            state::save(&path, &a, t).unwrap();
            a = state::load(&path, opts).unwrap().unwrap();
            t += 600;
        }
        cluster.poll(&mut a, t);
        if t == w0 {
            at_w0 = Some(rollup(&a));
        }
        t += 30;
    }
    diff(&rollup(&a), &at_w0.unwrap())
}

/// Ours, rounded as sreport rounds, must print the same number as sreport
/// (or differ by less than 0.01% where rounding hides the difference), and
/// be within 1% wherever the number is big enough for 1% to mean something.
fn compare(ours: &Totals, theirs: &BTreeMap<(String, String, String), f64>, unit: f64) -> usize {
    let mut compared = 0;
    for ((account, login, tres), used) in theirs {
        // Parent accounts other than root need the association tree.
        if account == "research_dept" {
            continue;
        }
        let secs = ours
            .get(&(account.clone(), login.clone(), tres.clone()))
            .copied()
            .unwrap_or(0.0);
        // sreport prints with "%.0lf": round half to even.
        let printed = (secs / unit).round_ties_even();
        eprintln!(
            "{account:>12} {login:>8} {tres:>14}: sreport {used:>9} ours {:>12.2} ({secs} s)",
            secs / unit
        );
        let rel = ((secs / unit) - used).abs() / used.max(1.0);
        assert!(
            printed == *used || rel <= 0.0001,
            "{account}/{login}/{tres}: ours {secs} s = {} units, sreport {used}",
            secs / unit
        );
        if *used >= 50.0 {
            assert!(rel <= 0.01, "{account}/{login}/{tres}: {rel}");
        }
        compared += 1;
    }
    compared
}

const R25_W0: i64 = 1_795_370_400; // 2026-11-22T18:00:00Z
const R22_W0: i64 = 1_795_374_000; // 2026-11-22T19:00:00Z

#[test]
fn rig25_gpu_cpu_billing_minutes_match_sreport() {
    let cluster = Cluster {
        jobs: sacct("25.11.7"),
        min_job_age: 300,
    };
    let ours = replay(&cluster, R25_W0, R25_W0 + 3600, None);
    let gpu = sreport(
        "25.11.7",
        "sreport_account_utilization_by_user_gpu_minutes.txt",
    );
    assert!(compare(&ours, &gpu, 60.0) >= 7);
    let multi = sreport(
        "25.11.7",
        "sreport_account_utilization_by_user_cpu_gpu_billing_minutes.txt",
    );
    assert!(compare(&ours, &multi, 60.0) >= 21);
    // The exact cluster total: 51.33 GPU-minutes (3080 GPU-seconds).
    let root = ours[&("root".into(), String::new(), "gres/gpu".into())];
    assert_eq!(root, 3080.0);
}

#[test]
fn rig25_with_scraper_restart_and_short_min_job_age() {
    // slurmctld forgets finished jobs after 20 s and the scraper is down
    // 18:40–18:50: vanished and unseen jobs come from slurmdbd.
    let cluster = Cluster {
        jobs: sacct("25.11.7"),
        min_job_age: 20,
    };
    let uninterrupted = replay(
        &Cluster {
            jobs: sacct("25.11.7"),
            min_job_age: 300,
        },
        R25_W0,
        R25_W0 + 3600,
        None,
    );
    let ours = replay(&cluster, R25_W0, R25_W0 + 3600, Some(R25_W0 + 2400));
    for (k, v) in &uninterrupted {
        let got = ours.get(k).copied().unwrap_or(0.0);
        assert!((got - v).abs() < 1e-6, "{k:?}: {got} vs {v}");
    }
    let multi = sreport(
        "25.11.7",
        "sreport_account_utilization_by_user_cpu_gpu_billing_minutes.txt",
    );
    compare(&ours, &multi, 60.0);
}

#[test]
fn rig22_gpu_minutes_and_multi_tres_hours_match_sreport() {
    let jobs = sacct("22.05.8");
    // The requeued job is listed twice (two runs) and the array as tasks.
    assert_eq!(jobs.iter().filter(|j| j.job_id == 9).count(), 2);
    let cluster = Cluster {
        jobs,
        min_job_age: 300,
    };
    let ours = replay(&cluster, R22_W0, R22_W0 + 3600, Some(R22_W0 + 1200));
    let gpu = sreport("22.05.8", "sreport_acct_util_by_user_gpu_min.txt");
    assert!(compare(&ours, &gpu, 60.0) >= 9);
    // cpu, mem (MB-hours), gres/gpu, gres/gpu:h100, billing in hours.
    let multi = sreport("22.05.8", "sreport_acct_util_by_user_multi.txt");
    assert!(compare(&ours, &multi, 3600.0) >= 45);
}
