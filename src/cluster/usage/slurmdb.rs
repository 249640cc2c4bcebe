//! Finished-job records from slurmdbd (`/slurmdb/vX/jobs`, read by
//! [`crate::slurmrestd::slurmdb`]), for usage the scraper could not see in
//! `/slurm/vX/jobs`: jobs purged by slurmctld before a poll saw their end,
//! and jobs that ran entirely while the scraper was down.

use std::io::Read;

use super::{Alloc, UsageRow};
use crate::model::primary_partition;
use crate::slurmrestd::slurmdb::DbJob;
use crate::slurmrestd::ParseError;

/// A record as a usage row: started jobs with allocated TRES, finished or not.
pub fn into_row(j: DbJob) -> Option<UsageRow> {
    let job_id = j.job_id.filter(|&i| i > 0.0)? as u64;
    let start = j.start.filter(|&s| s > 0.0)? as i64;
    let end = j.end.filter(|&e| e > 0.0).map(|e| (e as i64).max(start));
    if j.pending {
        return None;
    }
    let mut alloc = Alloc::default();
    for t in j.allocated {
        let count = t.count.filter(|c| *c > 0.0).unwrap_or(0.0);
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
    Some(UsageRow {
        job_id,
        start,
        end,
        suspended: false,
        account: j.account.unwrap_or_default(),
        user: j.user.unwrap_or_default(),
        partition: primary_partition(j.partition.as_deref().unwrap_or_default()).to_string(),
        alloc,
    })
}

/// Usage rows of records.
pub fn rows(jobs: Vec<DbJob>) -> Vec<UsageRow> {
    jobs.into_iter().filter_map(into_row).collect()
}

/// Parses a `/slurmdb/vX/jobs` (or `/slurmdb/vX/job/{id}`, or `sacct --json`)
/// body into usage rows: started jobs with allocated TRES, finished or not.
pub fn parse_jobs(body: &mut dyn Read) -> Result<Vec<UsageRow>, ParseError> {
    crate::slurmrestd::slurmdb::parse_jobs(body).map(rows)
}
