//! Usage accounting: allocated TRES-seconds per account, user and partition,
//! exact (not sampled), the way `sreport cluster AccountUtilizationByUser`
//! counts them.
//!
//! The [`Accountant`] is pure logic. Each poll hands it the jobs that hold or
//! held resources ([`UsageRow`]s from `/slurm/vX/jobs`), the poll time and,
//! when it asked for them, finished job records from `/slurmdb/vX/jobs`. It
//! credits every job `alloc × (min(now, end) − credited_until)`, where
//! `credited_until` starts at `max(start, horizon)` and `horizon` is the time
//! up to which all usage has been credited. Jobs are keyed by
//! `(job_id, start)`, so each run of a requeued job is its own entry.
//!
//! When a tracked job vanishes from `/jobs` without a seen end (slurmctld
//! purged it after `MinJobAge`), or the time since the horizon is longer than
//! `gap_threshold` (scraper restart, failed polls), the accountant asks for
//! the slurmdbd records of that window ([`Accountant::db_window`]): their end
//! times close the vanished jobs, and jobs that started and ended entirely in
//! the gap are credited from them.
//!
//! State (totals, per-job `credited_until`, horizon) persists to a small JSON
//! file ([`state`]), so a restart continues the counters where they were.

pub mod alloc;
pub mod slurmdb;
pub mod state;
pub mod tracker;

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Job, JobState};

pub use alloc::{is_known_tres, Alloc, BASE_TRES, TRES_BILLING, TRES_CPU, TRES_GPU, TRES_MEM};

/// One job's resource holding as seen in one poll (or in slurmdbd).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageRow {
    pub job_id: u64,
    /// Start of this run (Unix seconds); each run of a requeued job has its own.
    pub start: i64,
    /// Actual end, only once the job has ended (the expected end time slurmctld
    /// gives running jobs is not used).
    pub end: Option<i64>,
    /// Suspended at this poll: sreport does not count suspended time.
    pub suspended: bool,
    pub account: String,
    pub user: String,
    pub partition: String,
    pub alloc: Alloc,
}

impl UsageRow {
    /// The usage row of a `/jobs` record, or `None` when the job holds and
    /// held nothing (pending, never started, unknown state, no TRES).
    pub fn from_job(job: &Job) -> Option<UsageRow> {
        let start = job.start_time.filter(|&s| s > 0)?;
        let state = job.state?;
        let end = match state {
            JobState::Pending | JobState::Other => return None,
            JobState::Running | JobState::Suspended => None,
            // Completing: the job has ended, the end time is final.
            _ => Some(job.end_time.filter(|&e| e > 0)?),
        };
        let alloc = Alloc::from_tres(&job.allocated);
        if alloc.is_empty() {
            return None;
        }
        Some(UsageRow {
            job_id: job.job_id,
            start,
            end: end.map(|e: i64| e.max(start)),
            suspended: state == JobState::Suspended,
            account: job.account.clone(),
            user: job.user.clone(),
            partition: job.primary_partition().to_string(),
            alloc,
        })
    }

    fn key(&self) -> JobKey {
        JobKey {
            job_id: self.job_id,
            start: self.start,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobKey {
    pub job_id: u64,
    pub start: i64,
}

/// A job the accountant has credited, kept while slurmctld still lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub account: String,
    pub user: String,
    pub partition: String,
    pub alloc: Alloc,
    /// Usage up to this time is in the totals.
    pub credited_until: i64,
    /// The job's end has been credited.
    pub done: bool,
    /// First poll at which the job was gone from `/jobs` without a seen end.
    pub missing_since: Option<i64>,
}

/// (account, user, partition, tres).
pub type SeriesKey = (String, String, String, String);

/// (account, user, partition, tres, currency) of a cost counter.
pub type CostKey = (String, String, String, String, String);

/// What slurmdbd should be asked for: finished jobs in `[from, to]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbWindow {
    pub from: i64,
    pub to: i64,
}

/// What one [`Accountant::apply`] did, for logs and self-metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyReport {
    /// Job-seconds credited (sum over jobs of the credited interval).
    pub job_seconds: i64,
    pub closed_from_db: u64,
    pub gap_jobs_from_db: u64,
    pub given_up: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccountantOptions {
    /// A longer time since the last credited poll is a gap that slurmdbd fills
    /// (slurmctld may have purged jobs that ended in it).
    pub gap_threshold: i64,
    /// A job missing from `/jobs` whose end slurmdbd has not shown by then is
    /// given up (its usage after its last poll is lost and counted as such).
    pub give_up_after: i64,
}

impl Default for AccountantOptions {
    fn default() -> Self {
        AccountantOptions {
            gap_threshold: 120,
            give_up_after: 6 * 3600,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Accountant {
    pub opts: AccountantOptions,
    /// All usage before this time is credited; `None` until the first poll.
    pub horizon: Option<i64>,
    /// Start of a window whose finished jobs slurmdbd has not confirmed yet.
    pub unverified_since: Option<i64>,
    pub jobs: BTreeMap<JobKey, Tracked>,
    /// TRES-seconds since the counters began; never decrease.
    pub totals: BTreeMap<SeriesKey, f64>,
    /// Start (Unix seconds, UTC) of the calendar month `month_used` covers.
    pub month_start: Option<i64>,
    /// (account, tres) -> TRES-seconds used in the current calendar month.
    pub month_used: BTreeMap<(String, String), f64>,
    /// Jobs given up on (end never found), since the counters began.
    pub unresolved_jobs: u64,
    /// The price table (from the budgets file; not persisted: the file is).
    pub prices: Option<crate::cluster::budgets::Prices>,
    /// Money since the counters began, in currency units; never decrease.
    /// Credited in the same step as `totals`, so cost = usage × price.
    pub cost_totals: BTreeMap<CostKey, f64>,
}

impl Accountant {
    pub fn new(opts: AccountantOptions) -> Self {
        Accountant {
            opts,
            ..Default::default()
        }
    }

    /// The slurmdbd window to fetch before [`apply`](Self::apply), if any:
    /// when tracked jobs vanished without a seen end, when too long has
    /// passed since the last credited poll, or when an earlier window is
    /// still unconfirmed.
    pub fn db_window(&self, now: i64, rows: &[UsageRow]) -> Option<DbWindow> {
        let horizon = self.horizon?;
        let present: BTreeSet<JobKey> = rows.iter().map(UsageRow::key).collect();
        let mut from: Option<i64> = self.unverified_since;
        let mut take = |t: i64| from = Some(from.map_or(t, |f| f.min(t)));
        for (k, t) in &self.jobs {
            if !t.done && !present.contains(k) {
                take(t.credited_until);
            }
        }
        if now - horizon > self.opts.gap_threshold {
            take(horizon);
        }
        from.map(|from| DbWindow {
            from,
            to: now.max(from),
        })
    }

    /// Credits usage up to `now`. `rows`: the jobs of this poll's `/jobs`.
    /// `db`: slurmdbd records for the window from [`db_window`](Self::db_window),
    /// `None` when not asked for or when the request failed.
    pub fn apply(&mut self, now: i64, rows: &[UsageRow], db: Option<&[UsageRow]>) -> ApplyReport {
        let mut report = ApplyReport::default();
        // The clock never runs backwards for the counters.
        let now = self.horizon.map_or(now, |h| now.max(h));
        self.roll_month(now);
        let present: BTreeSet<JobKey> = rows.iter().map(UsageRow::key).collect();

        let Some(horizon) = self.horizon else {
            // First poll ever: counting starts now; earlier usage is not ours.
            for r in rows {
                let until = r.end.map_or(now, |e| e.min(now));
                self.jobs
                    .insert(r.key(), tracked(r, until, ended_by(r, now)));
            }
            self.horizon = Some(now);
            return report;
        };
        let gap = now - horizon > self.opts.gap_threshold;

        for r in rows {
            let upto = r.end.map_or(now, |e| e.min(now));
            match self.jobs.get(&r.key()) {
                Some(t) => {
                    let from = t.credited_until;
                    let labels = (t.account.clone(), t.user.clone(), t.partition.clone());
                    let alloc = t.alloc.clone();
                    if !r.suspended || r.end.is_some() {
                        report.job_seconds += self.credit(&labels, &alloc, from, upto);
                    }
                    if let Some(t) = self.jobs.get_mut(&r.key()) {
                        t.credited_until = t.credited_until.max(upto);
                        t.done = ended_by(r, now);
                        t.missing_since = None;
                    }
                }
                None => {
                    // New to us: everything before the horizon is already
                    // accounted for (or predates the counters).
                    let from = r.start.max(horizon);
                    if !r.suspended || r.end.is_some() {
                        let labels = (r.account.clone(), r.user.clone(), r.partition.clone());
                        report.job_seconds += self.credit(&labels, &r.alloc, from, upto);
                    }
                    self.jobs
                        .insert(r.key(), tracked(r, upto.max(from), ended_by(r, now)));
                }
            }
        }

        if let Some(db) = db {
            // Jobs never seen in /jobs are credited only from here on: before
            // it, everything was confirmed by /jobs or an earlier slurmdbd answer.
            let floor = self.unverified_since.map_or(horizon, |u| u.min(horizon));
            for r in db {
                let Some(end) = r.end else { continue };
                if present.contains(&r.key()) {
                    continue; // /jobs is fresher
                }
                let end = end.min(now);
                match self.jobs.get(&r.key()) {
                    Some(t) if !t.done => {
                        let labels = (t.account.clone(), t.user.clone(), t.partition.clone());
                        let (alloc, from) = (t.alloc.clone(), t.credited_until);
                        report.job_seconds += self.credit(&labels, &alloc, from, end);
                        report.closed_from_db += 1;
                        if let Some(t) = self.jobs.get_mut(&r.key()) {
                            t.credited_until = t.credited_until.max(end);
                            t.done = true;
                            t.missing_since = None;
                        }
                    }
                    Some(_) => {}
                    None if end > floor => {
                        let from = r.start.max(floor);
                        let labels = (r.account.clone(), r.user.clone(), r.partition.clone());
                        report.job_seconds += self.credit(&labels, &r.alloc, from, end);
                        report.gap_jobs_from_db += 1;
                        self.jobs.insert(r.key(), tracked(r, end.max(from), true));
                    }
                    None => {}
                }
            }
            self.unverified_since = None;
        } else if gap {
            self.unverified_since = Some(self.unverified_since.map_or(horizon, |u| u.min(horizon)));
        }

        // Jobs gone from /jobs without a known end: wait for slurmdbd, then give up.
        let give_up_after = self.opts.give_up_after;
        let mut given_up = Vec::new();
        for (k, t) in self.jobs.iter_mut() {
            if t.done || present.contains(k) {
                continue;
            }
            let since = *t.missing_since.get_or_insert(now);
            if now - since > give_up_after {
                given_up.push(*k);
            }
        }
        for k in &given_up {
            self.jobs.remove(k);
            self.unresolved_jobs += 1;
            report.given_up.push(k.job_id);
        }

        // Finished jobs are forgotten once slurmctld no longer lists them,
        // unless an unconfirmed slurmdbd window could still return them.
        let keep_until = self.unverified_since;
        self.jobs.retain(|k, t| {
            !t.done || present.contains(k) || keep_until.is_some_and(|u| t.credited_until >= u)
        });
        self.horizon = Some(now);
        report
    }

    /// Adds `alloc × (to − from)` to the totals; returns the seconds credited.
    fn credit(
        &mut self,
        labels: &(String, String, String),
        alloc: &Alloc,
        from: i64,
        to: i64,
    ) -> i64 {
        if to <= from {
            return 0;
        }
        let secs = (to - from) as f64;
        let in_month = self
            .month_start
            .map_or(0.0, |m| (to - from.max(m)).max(0) as f64);
        for (tres, amount) in alloc.tres() {
            let amount = if amount.is_finite() && amount > 0.0 {
                amount
            } else {
                0.0
            };
            *self
                .totals
                .entry((
                    labels.0.clone(),
                    labels.1.clone(),
                    labels.2.clone(),
                    tres.clone(),
                ))
                .or_default() += amount * secs;
            *self.month_used.entry((labels.0.clone(), tres)).or_default() += amount * in_month;
        }
        if let Some(p) = &self.prices {
            for (tres, per_second) in p.rates(&labels.2, alloc) {
                if per_second > 0.0 {
                    *self
                        .cost_totals
                        .entry((
                            labels.0.clone(),
                            labels.1.clone(),
                            labels.2.clone(),
                            tres.to_string(),
                            p.currency.clone(),
                        ))
                        .or_default() += per_second * secs;
                }
            }
        }
        to - from
    }

    /// Starts a new budget month when `now` is past the current one.
    fn roll_month(&mut self, now: i64) {
        let start = month_start(now);
        if self.month_start != Some(start) {
            if self.month_start.is_some() {
                tracing::info!(
                    month_start = start,
                    "new calendar month: budget usage restarts"
                );
            }
            self.month_start = Some(start);
            self.month_used.clear();
        }
    }

    /// TRES-seconds used this calendar month by `account` (0 when none).
    pub fn month_used(&self, account: &str, tres: &str) -> f64 {
        self.month_used
            .get(&(account.to_string(), tres.to_string()))
            .copied()
            .unwrap_or(0.0)
    }

    /// Accounts with any usage series.
    pub fn accounts(&self) -> BTreeSet<&str> {
        self.totals.keys().map(|k| k.0.as_str()).collect()
    }
}

/// Ended and fully creditable by `now` (an end after `now` means slurmctld's
/// clock is ahead: the rest is credited at the next poll).
fn ended_by(r: &UsageRow, now: i64) -> bool {
    r.end.is_some_and(|e| e <= now)
}

fn tracked(r: &UsageRow, credited_until: i64, done: bool) -> Tracked {
    Tracked {
        account: r.account.clone(),
        user: r.user.clone(),
        partition: r.partition.clone(),
        alloc: r.alloc.clone(),
        credited_until,
        done,
        missing_since: None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Unix time of the start (UTC) of the calendar month containing `t`.
pub fn month_start(t: i64) -> i64 {
    let (y, m, _) = civil_from_days(t.div_euclid(86_400));
    days_from_civil(y, m, 1) * 86_400
}

/// `[start, end)` of calendar month `year-month` in Unix seconds, UTC.
pub fn month_bounds(year: i64, month: u32) -> (i64, i64) {
    let start = days_from_civil(year, month, 1) * 86_400;
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    (start, days_from_civil(ny, nm, 1) * 86_400)
}

/// `2026-11-22T19:00:00` (UTC) of a Unix time.
pub fn iso_utc(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests;
