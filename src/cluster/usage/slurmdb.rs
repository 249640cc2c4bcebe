//! Finished-job records from slurmdbd (`/slurmdb/vX/jobs`), for usage the
//! scraper could not see in `/slurm/vX/jobs`: jobs purged by slurmctld before
//! a poll saw their end, and jobs that ran entirely while the scraper was down.
//!
//! The record shape is the one `sacct --json` prints, stable across API
//! versions except for a few spellings this parser accepts all of: `state.current`
//! a string (v0.0.38) or a list (v0.0.40+), numbers plain or as
//! `{"set","infinite","number"}` objects, TRES names `null` or `""`.

use std::io::Read;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{Alloc, UsageRow};
use crate::slurmrestd::ParseError;

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    jobs: Vec<DbJob>,
    #[serde(default)]
    errors: Vec<DbError>,
}

#[derive(Deserialize)]
struct DbError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    error_number: Option<i64>,
}

#[derive(Deserialize)]
struct DbJob {
    #[serde(default)]
    job_id: Flex,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    partition: Option<String>,
    #[serde(default)]
    time: DbTime,
    #[serde(default)]
    state: Option<DbState>,
    #[serde(default)]
    tres: DbTres,
}

#[derive(Deserialize, Default)]
struct DbTime {
    #[serde(default)]
    start: Flex,
    #[serde(default)]
    end: Flex,
}

#[derive(Deserialize)]
struct DbState {
    #[serde(default)]
    current: Words,
}

#[derive(Deserialize, Default)]
struct DbTres {
    #[serde(default)]
    allocated: Vec<DbTresItem>,
}

#[derive(Deserialize)]
struct DbTresItem {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    count: Flex,
}

/// A number as slurmrestd spells it: plain, `null`, or a number object.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(untagged)]
enum Flex {
    Int(i64),
    Float(f64),
    Obj {
        #[serde(default)]
        set: Option<bool>,
        #[serde(default)]
        infinite: Option<bool>,
        #[serde(default)]
        number: Option<f64>,
    },
    #[default]
    Null,
    #[allow(dead_code)]
    Other(IgnoredAny),
}

impl Flex {
    fn get(self) -> Option<f64> {
        match self {
            Flex::Int(i) => Some(i as f64),
            Flex::Float(f) if f.is_finite() => Some(f),
            Flex::Obj {
                set,
                infinite,
                number,
            } if set != Some(false) && infinite != Some(true) => number,
            _ => None,
        }
    }
}

/// `"COMPLETED"` or `["COMPLETED"]`.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Words {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl DbJob {
    fn into_row(self) -> Option<UsageRow> {
        let job_id = self.job_id.get().filter(|&j| j > 0.0)? as u64;
        let start = self.time.start.get().filter(|&s| s > 0.0)? as i64;
        let end = self
            .time
            .end
            .get()
            .filter(|&e| e > 0.0)
            .map(|e| (e as i64).max(start));
        let pending = match self.state.map(|s| s.current) {
            Some(Words::One(s)) => s.eq_ignore_ascii_case("PENDING"),
            Some(Words::Many(v)) => v.iter().any(|s| s.eq_ignore_ascii_case("PENDING")),
            _ => false,
        };
        if pending {
            return None;
        }
        let mut alloc = Alloc::default();
        for t in self.tres.allocated {
            let count = t.count.get().filter(|c| *c > 0.0).unwrap_or(0.0);
            let name = t.name.unwrap_or_default();
            match (t.kind.as_deref().unwrap_or(""), name.as_str()) {
                ("cpu", _) => alloc.cpus = count,
                ("mem", _) => alloc.mem_mb = count,
                ("billing", _) => alloc.billing = count,
                ("gres", "gpu") => alloc.gpus = count,
                ("gres", n) => {
                    if let Some(ty) = n.strip_prefix("gpu:").filter(|t| !t.is_empty()) {
                        alloc.gpus_by_type.insert(ty.to_string(), count);
                    }
                }
                _ => {}
            }
        }
        if alloc.is_empty() {
            return None;
        }
        let partition = self.partition.unwrap_or_default();
        Some(UsageRow {
            job_id,
            start,
            end,
            suspended: false,
            account: self.account.unwrap_or_default(),
            user: self.user.unwrap_or_default(),
            partition: partition.split(',').next().unwrap_or("").to_string(),
            alloc,
        })
    }
}

/// Parses a `/slurmdb/vX/jobs` (or `/slurmdb/vX/job/{id}`, or `sacct --json`)
/// body into usage rows: started jobs with allocated TRES, finished or not.
pub fn parse_jobs(body: &mut dyn Read) -> Result<Vec<UsageRow>, ParseError> {
    let r: Response = serde_json::from_reader(body)?;
    if r.jobs.is_empty() {
        if let Some(e) = r.errors.first() {
            let msg = e
                .description
                .clone()
                .filter(|d| !d.is_empty())
                .or_else(|| e.error.clone())
                .unwrap_or_default();
            return Err(ParseError::Slurm(format!(
                "{msg} (error {})",
                e.error_number.unwrap_or(0)
            )));
        }
    }
    Ok(r.jobs.into_iter().filter_map(DbJob::into_row).collect())
}
