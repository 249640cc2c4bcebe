//! The accountant's state file: totals, per-job `credited_until` and the
//! horizon, as small JSON, written atomically (temp file, fsync, rename) after
//! every poll. A restart loads it and continues the counters from their
//! values, so Prometheus sees no reset and no usage is counted twice.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Accountant, AccountantOptions, Alloc, JobKey, Tracked};

const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read usage state file {path:?}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("usage state file {path:?} is not valid ({source}); move it away to start the counters from zero")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("usage state file {path:?} has format {found}, this version reads format {FORMAT}")]
    Format { path: PathBuf, found: u32 },
    #[error("cannot write usage state file {path:?}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    format: u32,
    saved_at: i64,
    horizon: Option<i64>,
    #[serde(default)]
    unverified_since: Option<i64>,
    #[serde(default)]
    month_start: Option<i64>,
    #[serde(default)]
    unresolved_jobs: u64,
    #[serde(default)]
    totals: Vec<TotalRow>,
    #[serde(default)]
    month_used: Vec<MonthRow>,
    /// Cost counters (absent in files written before prices existed).
    #[serde(default)]
    costs: Vec<CostRow>,
    #[serde(default)]
    jobs: Vec<JobRow>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TotalRow {
    account: String,
    user: String,
    partition: String,
    tres: String,
    seconds: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CostRow {
    account: String,
    user: String,
    partition: String,
    tres: String,
    currency: String,
    cost: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct MonthRow {
    account: String,
    tres: String,
    seconds: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct JobRow {
    job_id: u64,
    start: i64,
    account: String,
    user: String,
    partition: String,
    alloc: Alloc,
    credited_until: i64,
    done: bool,
    #[serde(default)]
    missing_since: Option<i64>,
}

pub fn to_json(a: &Accountant, saved_at: i64) -> String {
    let f = StateFile {
        format: FORMAT,
        saved_at,
        horizon: a.horizon,
        unverified_since: a.unverified_since,
        month_start: a.month_start,
        unresolved_jobs: a.unresolved_jobs,
        totals: a
            .totals
            .iter()
            .map(|((account, user, partition, tres), s)| TotalRow {
                account: account.clone(),
                user: user.clone(),
                partition: partition.clone(),
                tres: tres.clone(),
                seconds: *s,
            })
            .collect(),
        month_used: a
            .month_used
            .iter()
            .map(|((account, tres), s)| MonthRow {
                account: account.clone(),
                tres: tres.clone(),
                seconds: *s,
            })
            .collect(),
        costs: a
            .cost_totals
            .iter()
            .map(|((account, user, partition, tres, currency), c)| CostRow {
                account: account.clone(),
                user: user.clone(),
                partition: partition.clone(),
                tres: tres.clone(),
                currency: currency.clone(),
                cost: *c,
            })
            .collect(),
        jobs: a
            .jobs
            .iter()
            .map(|(k, t)| JobRow {
                job_id: k.job_id,
                start: k.start,
                account: t.account.clone(),
                user: t.user.clone(),
                partition: t.partition.clone(),
                alloc: t.alloc.clone(),
                credited_until: t.credited_until,
                done: t.done,
                missing_since: t.missing_since,
            })
            .collect(),
    };
    // Serializing plain data cannot fail.
    serde_json::to_string(&f).unwrap_or_default()
}

fn from_str(path: &Path, s: &str, opts: AccountantOptions) -> Result<Accountant, StateError> {
    let f: StateFile = serde_json::from_str(s).map_err(|source| StateError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if f.format != FORMAT {
        return Err(StateError::Format {
            path: path.to_path_buf(),
            found: f.format,
        });
    }
    let mut a = Accountant::new(opts);
    a.horizon = f.horizon;
    a.unverified_since = f.unverified_since;
    a.month_start = f.month_start;
    a.unresolved_jobs = f.unresolved_jobs;
    for r in f.totals {
        // A corrupt negative or NaN total would make the counter go backwards.
        let s = if r.seconds.is_finite() && r.seconds > 0.0 {
            r.seconds
        } else {
            0.0
        };
        a.totals.insert((r.account, r.user, r.partition, r.tres), s);
    }
    for r in f.costs {
        let c = if r.cost.is_finite() && r.cost > 0.0 {
            r.cost
        } else {
            0.0
        };
        a.cost_totals
            .insert((r.account, r.user, r.partition, r.tres, r.currency), c);
    }
    for r in f.month_used {
        a.month_used.insert((r.account, r.tres), r.seconds.max(0.0));
    }
    for r in f.jobs {
        a.jobs.insert(
            JobKey {
                job_id: r.job_id,
                start: r.start,
            },
            Tracked {
                account: r.account,
                user: r.user,
                partition: r.partition,
                alloc: r.alloc,
                credited_until: r.credited_until,
                done: r.done,
                missing_since: r.missing_since,
            },
        );
    }
    Ok(a)
}

/// Loads the state; `Ok(None)` when the file does not exist yet.
pub fn load(path: &Path, opts: AccountantOptions) -> Result<Option<Accountant>, StateError> {
    match std::fs::read_to_string(path) {
        Ok(s) => from_str(path, &s, opts).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes the state atomically: a crash leaves the old file or the new one,
/// never a torn one.
pub fn save(path: &Path, a: &Accountant, now: i64) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(to_json(a, now).as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    // Make the rename itself durable; not all filesystems allow opening a dir.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
