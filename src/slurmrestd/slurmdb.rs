//! `/slurmdb/vX/jobs` (and `/slurmdb/vX/job/{id}`, `sacct --json`): job
//! records as slurmdbd keeps them. The shape is stable across API versions
//! except for a few spellings this parser accepts all of: `state.current` a
//! string (v0.0.38) or a list (v0.0.40+), numbers plain or as
//! `{"set","infinite","number"}` objects, TRES names `null` or `""`.
//! Numbers are [`Lenient`]: an odd one is absent, the record is kept.

use std::io::Read;

use serde::Deserialize;

use super::number::Lenient;
use super::ParseError;

/// One job record, numbers read (`None`: absent, unset or infinite).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbJob {
    pub job_id: Option<f64>,
    pub account: Option<String>,
    pub user: Option<String>,
    pub partition: Option<String>,
    pub start: Option<f64>,
    pub end: Option<f64>,
    /// `state.current` says PENDING.
    pub pending: bool,
    /// `tres.allocated`.
    pub allocated: Vec<DbTres>,
}

/// One allocated TRES: `type` (`cpu`, `gres`, ...), `name`, `count`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbTres {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub count: Option<f64>,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    jobs: Vec<WireJob>,
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
struct WireJob {
    #[serde(default)]
    job_id: Lenient,
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
    tres: WireTres,
}

#[derive(Deserialize, Default)]
struct DbTime {
    #[serde(default)]
    start: Lenient,
    #[serde(default)]
    end: Lenient,
}

#[derive(Deserialize)]
struct DbState {
    #[serde(default)]
    current: Words,
}

#[derive(Deserialize, Default)]
struct WireTres {
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
    count: Lenient,
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

impl From<WireJob> for DbJob {
    fn from(j: WireJob) -> DbJob {
        let pending = match j.state.map(|s| s.current) {
            Some(Words::One(s)) => s.eq_ignore_ascii_case("PENDING"),
            Some(Words::Many(v)) => v.iter().any(|s| s.eq_ignore_ascii_case("PENDING")),
            _ => false,
        };
        DbJob {
            job_id: j.job_id.0.as_f64(),
            account: j.account,
            user: j.user,
            partition: j.partition,
            start: j.time.start.0.as_f64(),
            end: j.time.end.0.as_f64(),
            pending,
            allocated: j
                .tres
                .allocated
                .into_iter()
                .map(|t| DbTres {
                    kind: t.kind,
                    name: t.name,
                    count: t.count.0.as_f64(),
                })
                .collect(),
        }
    }
}

/// Parses a `/slurmdb/vX/jobs` body. An empty list with `errors[]` is an error.
pub fn parse_jobs(body: &mut dyn Read) -> Result<Vec<DbJob>, ParseError> {
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
    Ok(r.jobs.into_iter().map(DbJob::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_every_spelling_and_odd_fields_as_absent() {
        let body = br#"{"jobs":[
            {"job_id":{"set":true,"infinite":false,"number":7},"account":"a","user":"u",
             "partition":"p1,p2","time":{"start":100,"end":{"set":false,"number":0}},
             "state":{"current":["COMPLETED"]},
             "tres":{"allocated":[{"type":"cpu","name":null,"count":4.0},
                                  {"type":"gres","name":"gpu","count":"two"}]}},
            {"job_id":8,"state":{"current":"PENDING"},"time":{"start":true}}
        ],"errors":[]}"#;
        let jobs = parse_jobs(&mut &body[..]).unwrap();
        assert_eq!(jobs[0].job_id, Some(7.0));
        assert_eq!((jobs[0].start, jobs[0].end), (Some(100.0), None));
        assert!(!jobs[0].pending);
        assert_eq!(jobs[0].allocated[0].count, Some(4.0));
        assert_eq!(jobs[0].allocated[1].count, None, "a string count is absent");
        assert!(jobs[1].pending);
        assert_eq!(jobs[1].start, None);
        let err = br#"{"jobs":[],"errors":[{"error_number":9202,"description":"Parsing failed"}]}"#;
        let e = parse_jobs(&mut &err[..]).unwrap_err().to_string();
        assert!(e.contains("Parsing failed (error 9202)"), "{e}");
    }
}
