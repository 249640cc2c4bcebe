//! Hand-computed job sets through the accountant.

use super::*;

fn alloc(cpus: f64, gpus: f64) -> Alloc {
    Alloc {
        cpus,
        mem_mb: 1000.0 * cpus,
        billing: cpus + 2.0 * gpus,
        gpus,
        gpus_by_type: if gpus > 0.0 {
            [("h100".to_string(), gpus)].into()
        } else {
            BTreeMap::new()
        },
    }
}

fn row(id: u64, start: i64, end: Option<i64>, cpus: f64, gpus: f64) -> UsageRow {
    UsageRow {
        job_id: id,
        start,
        end,
        suspended: false,
        account: "ai".into(),
        user: "alice".into(),
        partition: "gpu".into(),
        alloc: alloc(cpus, gpus),
    }
}

fn total(a: &Accountant, tres: &str) -> f64 {
    a.totals
        .iter()
        .filter(|(k, _)| k.3 == tres)
        .map(|(_, v)| v)
        .sum()
}

fn acct() -> Accountant {
    Accountant::new(AccountantOptions::default())
}

#[test]
fn first_poll_only_starts_counting() {
    let mut a = acct();
    a.apply(1000, &[row(1, 500, None, 4.0, 2.0)], None);
    assert_eq!(total(&a, TRES_GPU), 0.0);
    assert_eq!(a.horizon, Some(1000));
}

#[test]
fn job_spanning_the_window_gets_exactly_the_window() {
    // Started before the first poll, still running after the last.
    let mut a = acct();
    let r = row(1, 500, None, 4.0, 2.0);
    for t in [1000, 1030, 1060, 1090] {
        a.apply(t, std::slice::from_ref(&r), None);
    }
    assert_eq!(total(&a, TRES_GPU), 2.0 * 90.0);
    assert_eq!(total(&a, TRES_CPU), 4.0 * 90.0);
    assert_eq!(total(&a, TRES_MEM), 4000.0 * 90.0);
    assert_eq!(total(&a, TRES_BILLING), 8.0 * 90.0);
    assert_eq!(total(&a, "gres/gpu:h100"), 2.0 * 90.0);
}

#[test]
fn job_ending_between_polls_is_credited_to_its_end() {
    let mut a = acct();
    a.apply(1000, &[row(1, 900, None, 1.0, 1.0)], None);
    a.apply(1030, &[row(1, 900, None, 1.0, 1.0)], None);
    // Ended at 1042, still listed (MinJobAge) at the next polls.
    a.apply(1060, &[row(1, 900, Some(1042), 1.0, 1.0)], None);
    a.apply(1090, &[row(1, 900, Some(1042), 1.0, 1.0)], None);
    assert_eq!(total(&a, TRES_GPU), 42.0);
    // Purged from /jobs: forgotten, nothing more credited.
    a.apply(1120, &[], None);
    assert!(a.jobs.is_empty());
    assert_eq!(total(&a, TRES_GPU), 42.0);
}

#[test]
fn job_starting_and_ending_between_two_polls() {
    let mut a = acct();
    a.apply(1000, &[], None);
    a.apply(1030, &[], None);
    // Started 1035, ended 1050: first seen finished at 1060.
    a.apply(1060, &[row(7, 1035, Some(1050), 2.0, 4.0)], None);
    assert_eq!(total(&a, TRES_GPU), 4.0 * 15.0);
    assert_eq!(total(&a, TRES_CPU), 2.0 * 15.0);
}

#[test]
fn job_ended_before_counting_began_is_not_credited() {
    let mut a = acct();
    a.apply(1000, &[row(1, 100, Some(900), 1.0, 1.0)], None);
    a.apply(1030, &[row(1, 100, Some(900), 1.0, 1.0)], None);
    assert_eq!(total(&a, TRES_GPU), 0.0);
}

#[test]
fn array_tasks_are_separate_jobs() {
    // Array 10 with tasks 11, 12, 13 (each its own job id), 2 CPUs each.
    let mut a = acct();
    let tasks = |end: Option<i64>| {
        vec![
            row(11, 950, end, 2.0, 0.0),
            row(12, 950, end, 2.0, 0.0),
            row(13, 1010, end, 2.0, 0.0),
        ]
    };
    a.apply(1000, &tasks(None)[..2], None);
    a.apply(1030, &tasks(None), None);
    a.apply(1060, &tasks(Some(1045)), None);
    // 11, 12: 1000..1045 = 45 s; 13: 1010..1045 = 35 s; × 2 CPUs.
    assert_eq!(total(&a, TRES_CPU), 2.0 * (45.0 + 45.0 + 35.0));
    assert_eq!(total(&a, TRES_GPU), 0.0);
}

#[test]
fn requeued_job_counts_both_runs_via_slurmdbd() {
    let mut a = acct();
    a.apply(1000, &[row(9, 990, None, 1.0, 1.0)], None);
    a.apply(1030, &[row(9, 990, None, 1.0, 1.0)], None);
    // Requeued at 1040, restarted at 1050: /jobs now shows only the new run.
    let now = [row(9, 1050, None, 1.0, 1.0)];
    let win = a
        .db_window(1060, &now)
        .expect("first run vanished: ask slurmdbd");
    assert_eq!(win.from, 1030);
    let db = [
        row(9, 990, Some(1040), 1.0, 1.0), // the REQUEUED record
        row(9, 1050, None, 1.0, 1.0),
    ];
    let rep = a.apply(1060, &now, Some(&db));
    assert_eq!(rep.closed_from_db, 1);
    // run 1: 1000..1040 = 40; run 2: 1050..1060 = 10.
    assert_eq!(total(&a, TRES_GPU), 50.0);
    assert_eq!(a.db_window(1090, &now), None);
}

#[test]
fn vanished_job_waits_for_slurmdbd_then_gives_up() {
    let mut a = Accountant::new(AccountantOptions {
        gap_threshold: 120,
        give_up_after: 100,
    });
    a.apply(1000, &[row(1, 990, None, 1.0, 1.0)], None);
    a.apply(1030, &[row(1, 990, None, 1.0, 1.0)], None);
    // Gone; slurmdbd unreachable.
    assert!(a.db_window(1060, &[]).is_some());
    a.apply(1060, &[], None);
    assert_eq!(a.jobs.len(), 1);
    // slurmdbd answers but does not know the end yet.
    a.apply(1090, &[], Some(&[row(1, 990, None, 1.0, 1.0)]));
    assert_eq!(a.jobs.len(), 1);
    // Then it does: credited to the end, late but exact.
    a.apply(1120, &[], Some(&[row(1, 990, Some(1050), 1.0, 1.0)]));
    assert_eq!(total(&a, TRES_GPU), 50.0);
    assert!(a.jobs.is_empty());

    // Another one never resolves: given up after give_up_after.
    a.apply(1150, &[row(2, 1140, None, 1.0, 1.0)], None);
    a.apply(1180, &[], None);
    a.apply(1250, &[], Some(&[]));
    let rep = a.apply(1290, &[], Some(&[]));
    assert_eq!(rep.given_up, vec![2]);
    assert_eq!(a.unresolved_jobs, 1);
    assert!(a.jobs.is_empty());
}

#[test]
fn suspended_time_is_not_credited() {
    let mut a = acct();
    let mut r = row(1, 990, None, 1.0, 1.0);
    a.apply(1000, std::slice::from_ref(&r), None);
    a.apply(1030, std::slice::from_ref(&r), None);
    r.suspended = true;
    a.apply(1060, std::slice::from_ref(&r), None);
    r.suspended = false;
    a.apply(1090, std::slice::from_ref(&r), None);
    assert_eq!(total(&a, TRES_GPU), 60.0);
}

#[test]
fn gap_is_filled_from_slurmdbd_without_double_counting() {
    let mut a = acct();
    let long = row(1, 900, None, 1.0, 1.0);
    a.apply(1000, std::slice::from_ref(&long), None);
    // The scraper is away from 1000 to 2000. Meanwhile job 2 ran 1100..1300
    // and was purged; job 3 ended at 1950 and is still listed.
    let rows = [long.clone(), row(3, 1500, Some(1950), 2.0, 0.0)];
    let win = a.db_window(2000, &rows).expect("gap");
    assert_eq!(
        win,
        DbWindow {
            from: 1000,
            to: 2000
        }
    );
    let db = [
        row(1, 900, None, 1.0, 1.0),
        row(2, 1100, Some(1300), 1.0, 4.0),
        row(3, 1500, Some(1950), 2.0, 0.0),
        row(4, 100, Some(950), 1.0, 8.0), // before the horizon: already counted
    ];
    let rep = a.apply(2000, &rows, Some(&db));
    assert_eq!(rep.gap_jobs_from_db, 1);
    assert_eq!(total(&a, TRES_GPU), 1000.0 + 4.0 * 200.0);
    assert_eq!(total(&a, TRES_CPU), 1000.0 + 200.0 + 2.0 * 450.0);
    // The same slurmdbd answer again changes nothing.
    let before = total(&a, TRES_CPU);
    a.apply(2030, &rows, Some(&db));
    assert_eq!(total(&a, TRES_CPU), before + 30.0);
}

#[test]
fn failed_gap_lookup_is_retried_from_the_gap_start() {
    let mut a = acct();
    a.apply(1000, &[], None);
    // Gap, slurmdbd down.
    a.apply(2000, &[], None);
    assert_eq!(a.unverified_since, Some(1000));
    let win = a.db_window(2030, &[]).expect("still unverified");
    assert_eq!(win.from, 1000);
    a.apply(2030, &[], Some(&[row(5, 1200, Some(1260), 1.0, 1.0)]));
    assert_eq!(total(&a, TRES_GPU), 60.0);
    assert_eq!(a.unverified_since, None);
}

#[test]
fn counters_never_decrease_and_clock_going_back_is_ignored() {
    let mut a = acct();
    let r = row(1, 900, None, 1.0, 1.0);
    a.apply(1000, std::slice::from_ref(&r), None);
    a.apply(1030, std::slice::from_ref(&r), None);
    let t = total(&a, TRES_GPU);
    a.apply(1010, std::slice::from_ref(&r), None);
    assert_eq!(total(&a, TRES_GPU), t);
    assert_eq!(a.horizon, Some(1030));
}

#[test]
fn month_usage_restarts_at_month_boundary() {
    let (m0, m1) = month_bounds(2026, 11);
    assert_eq!(m1 - m0, 30 * 86_400);
    assert_eq!(iso_utc(m0), "2026-11-01T00:00:00");
    assert_eq!(month_start(m1 - 1), m0);
    let mut a = acct();
    let r = row(1, m1 - 500, None, 1.0, 2.0);
    a.apply(m1 - 100, std::slice::from_ref(&r), None);
    a.apply(m1 - 40, std::slice::from_ref(&r), None);
    assert_eq!(a.month_used("ai", TRES_GPU), 120.0);
    a.apply(m1 + 20, std::slice::from_ref(&r), None);
    // Only the 20 s after midnight belong to the new month.
    assert_eq!(a.month_used("ai", TRES_GPU), 40.0);
    assert_eq!(total(&a, TRES_GPU), 2.0 * 120.0);
}

/// A cluster simulator: "true" jobs, what `/jobs` shows at a time (jobs stay
/// `min_job_age` after their end), and what slurmdbd returns for a window.
struct Sim {
    jobs: Vec<UsageRow>,
    min_job_age: i64,
}

impl Sim {
    fn slurmctld(&self, t: i64) -> Vec<UsageRow> {
        self.jobs
            .iter()
            .filter(|j| j.start <= t && j.end.is_none_or(|e| e + self.min_job_age > t))
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

    /// Exact GPU-seconds in `[from, to]`.
    fn expected(&self, from: i64, to: i64) -> f64 {
        self.jobs
            .iter()
            .map(|j| {
                let e = j.end.unwrap_or(i64::MAX).min(to);
                (e - j.start.max(from)).max(0) as f64 * j.alloc.gpus
            })
            .sum()
    }

    fn poll(&self, a: &mut Accountant, t: i64, db_up: bool) {
        let rows = self.slurmctld(t);
        let db = a
            .db_window(t, &rows)
            .filter(|_| db_up)
            .map(|w| self.slurmdbd(w));
        a.apply(t, &rows, db.as_deref());
    }
}

fn sim_jobs() -> Sim {
    let mut jobs = Vec::new();
    // A deterministic mix: short jobs shorter than a poll interval, long
    // ones across restarts, jobs ending during the downtime.
    for i in 0..200u64 {
        let start = 1000 + (i as i64 * 37) % 3000;
        let len = [5, 14, 29, 61, 250, 900, 2500][(i % 7) as usize];
        jobs.push(row(
            i + 1,
            start,
            Some(start + len),
            1.0,
            (i % 4 + 1) as f64,
        ));
    }
    jobs.push(row(999, 500, None, 1.0, 8.0));
    Sim {
        jobs,
        min_job_age: 300,
    }
}

#[test]
fn simulated_cluster_uninterrupted_matches_exact_usage() {
    let sim = sim_jobs();
    let mut a = acct();
    let mut t = 1000;
    while t <= 6000 {
        sim.poll(&mut a, t, true);
        t += 30;
    }
    let got = total(&a, TRES_GPU);
    let want = sim.expected(1000, 5980);
    assert!((got - want).abs() < 1e-6, "got {got} want {want}");
}

#[test]
fn simulated_restart_with_state_file_neither_loses_nor_double_counts() {
    let sim = sim_jobs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.json");
    let opts = AccountantOptions::default();
    let mut a = Accountant::new(opts);
    let mut t = 1000;
    while t <= 2500 {
        sim.poll(&mut a, t, true);
        t += 30;
    }
    state::save(&path, &a, t).unwrap();
    let before = total(&a, TRES_GPU);
    drop(a);
    // Down for 20 minutes (jobs start, end and get purged meanwhile); the
    // first poll after the restart also finds slurmdbd down.
    let mut b = state::load(&path, opts).unwrap().expect("state");
    assert_eq!(total(&b, TRES_GPU), before);
    let mut t = 3700;
    sim.poll(&mut b, t, false);
    while t <= 6000 {
        t += 30;
        sim.poll(&mut b, t, true);
        state::save(&path, &b, t).unwrap();
        b = state::load(&path, opts).unwrap().expect("state");
    }
    let got = total(&b, TRES_GPU);
    let want = sim.expected(1000, t);
    assert!((got - want).abs() < 1e-6, "got {got} want {want}");
    assert_eq!(b.unresolved_jobs, 0);
}

#[test]
fn state_file_round_trip_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let opts = AccountantOptions::default();
    assert!(state::load(&path, opts).unwrap().is_none());
    let mut a = acct();
    a.prices = Some(prices());
    a.apply(1000, &[row(1, 990, None, 1.0, 1.0)], None);
    a.apply(1030, &[row(1, 990, None, 1.0, 1.0)], None);
    state::save(&path, &a, 1030).unwrap();
    let b = state::load(&path, opts).unwrap().unwrap();
    assert_eq!(b.totals, a.totals);
    assert_eq!(b.cost_totals, a.cost_totals);
    assert_eq!(a.cost_totals.len(), 2, "{:?}", a.cost_totals);
    assert_eq!(b.jobs, a.jobs);
    assert_eq!(b.horizon, a.horizon);
    std::fs::write(&path, "{not json").unwrap();
    let e = state::load(&path, opts).unwrap_err().to_string();
    assert!(e.contains("move it away"), "{e}");
    std::fs::write(&path, r#"{"format":9,"saved_at":0,"horizon":null}"#).unwrap();
    assert!(state::load(&path, opts).is_err());
}

#[test]
fn usage_row_from_job() {
    use crate::model::{Job, JobState, Tres};
    let mut j = Job {
        job_id: 5,
        account: "ai".into(),
        user: "bob".into(),
        partition: "gpu,cpu".into(),
        state: Some(JobState::Running),
        start_time: Some(100),
        end_time: Some(86_500), // expected end of a running job: ignored
        allocated: Tres {
            cpus: 8,
            memory_bytes: 32 << 30,
            billing: 20.0,
            gpus: 2,
            gpus_by_type: [("h100".to_string(), 2)].into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let r = UsageRow::from_job(&j).unwrap();
    assert_eq!(r.end, None);
    assert_eq!(r.partition, "gpu");
    assert_eq!(r.alloc.mem_mb, 32768.0);
    assert_eq!(r.alloc.tres().len(), 5);
    j.state = Some(JobState::Completing);
    j.end_time = Some(400);
    assert_eq!(UsageRow::from_job(&j).unwrap().end, Some(400));
    j.state = Some(JobState::Pending);
    assert!(UsageRow::from_job(&j).is_none());
    j.state = Some(JobState::Cancelled);
    j.start_time = None;
    assert!(UsageRow::from_job(&j).is_none());
}

#[test]
fn slurmdb_records_of_every_shape() {
    let v38 = br#"{"jobs":[{"job_id":9,"account":"a","user":"u","partition":"cpu",
      "time":{"start":100,"end":130},"state":{"current":"REQUEUED"},
      "tres":{"allocated":[{"type":"cpu","name":null,"count":1},{"type":"mem","name":null,"count":2000},
      {"type":"energy","name":null,"count":null},{"type":"gres","name":"gpu","count":2},
      {"type":"gres","name":"gpu:h100","count":2}]}},
      {"job_id":23,"time":{"start":0,"end":0},"state":{"current":"PENDING"},"tres":{"allocated":[]}}]}"#;
    let rows = slurmdb::parse_jobs(&mut &v38[..]).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].end, Some(130));
    assert_eq!(rows[0].alloc.gpus_by_type["h100"], 2.0);
    let v44 = br#"{"jobs":[{"job_id":29,"time":{"start":100,"end":0},"state":{"current":["RUNNING"]},
      "tres":{"allocated":[{"type":"cpu","name":"","count":8},{"type":"energy","name":"","count":-2},
      {"type":"billing","name":"","count":{"set":true,"infinite":false,"number":20}}]}}],"errors":[]}"#;
    let rows = slurmdb::parse_jobs(&mut &v44[..]).unwrap();
    assert_eq!(rows[0].end, None);
    assert_eq!(rows[0].alloc.billing, 20.0);
    let err = br#"{"jobs":[],"errors":[{"error_number":9202,"error":"x","description":"Parsing of timestamp failed"}]}"#;
    assert!(slurmdb::parse_jobs(&mut &err[..]).is_err());
}

#[test]
fn short_min_job_age_with_zero_gap_threshold_stays_exact() {
    // slurmctld purges finished jobs after 10 s, shorter than the poll
    // interval: with --usage-slurmdb-gap=0 every poll asks slurmdbd.
    let mut sim = sim_jobs();
    sim.min_job_age = 10;
    let mut a = Accountant::new(AccountantOptions {
        gap_threshold: 0,
        ..Default::default()
    });
    let mut t = 1000;
    while t <= 6000 {
        sim.poll(&mut a, t, true);
        t += 30;
    }
    let got = total(&a, TRES_GPU);
    let want = sim.expected(1000, 5980);
    assert!((got - want).abs() < 1e-6, "got {got} want {want}");
}

fn prices() -> crate::cluster::budgets::Prices {
    crate::cluster::budgets::Budgets::parse(
        std::path::Path::new("b.yaml"),
        "prices:\n  currency: USD\n  gpu_hour: {default: 4.1, gpu_types: {h100: 12.29}}\n  cpu_hour: {partitions: {gpu: 0.05}}\n",
    )
    .unwrap()
    .prices
    .unwrap()
}

fn cost(a: &Accountant, tres: &str) -> f64 {
    a.cost_totals
        .iter()
        .filter(|(k, _)| k.3 == tres && k.4 == "USD")
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn cost_over_every_window_is_usage_times_price_across_restarts() {
    let sim = sim_jobs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.json");
    let opts = AccountantOptions::default();
    let mut a = Accountant::new(opts);
    a.prices = Some(prices());
    let mut t = 1000;
    let mut marks = Vec::new();
    while t <= 6000 {
        sim.poll(&mut a, t, t % 900 != 0);
        marks.push((
            total(&a, TRES_GPU),
            cost(&a, TRES_GPU),
            total(&a, TRES_CPU),
            cost(&a, TRES_CPU),
        ));
        if t % 600 == 0 {
            // A restart: the state file carries the cost counters, the
            // budgets file the prices.
            state::save(&path, &a, t).unwrap();
            a = state::load(&path, opts).unwrap().expect("state");
            a.prices = Some(prices());
        }
        t += 30;
    }
    assert!(marks.last().unwrap().1 > 0.0);
    let close = |got: f64, want: f64| (got - want).abs() <= 1e-9 * want.abs().max(1.0);
    // Every window [i, j] of polls: Δcost = Δusage / 3600 × price.
    for i in (0..marks.len()).step_by(7) {
        for j in (i..marks.len()).step_by(11) {
            let (g0, c0, p0, q0) = marks[i];
            let (g1, c1, p1, q1) = marks[j];
            assert!(close(c1 - c0, (g1 - g0) / 3600.0 * 12.29), "gpu {i}..{j}");
            assert!(close(q1 - q0, (p1 - p0) / 3600.0 * 0.05), "cpu {i}..{j}");
        }
    }
    // No billing price: no billing cost series.
    assert_eq!(cost(&a, TRES_BILLING), 0.0);
    assert!(a.cost_totals.keys().all(|k| k.3 != TRES_BILLING));
}

#[test]
fn no_prices_no_cost() {
    let mut a = acct();
    a.apply(1000, &[row(1, 990, None, 1.0, 1.0)], None);
    a.apply(1030, &[row(1, 990, None, 1.0, 1.0)], None);
    assert!(a.totals.values().any(|v| *v > 0.0));
    assert!(a.cost_totals.is_empty());
}
