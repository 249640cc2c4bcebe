//! `/slurmdb/vX/associations/` and `/slurmdb/vX/qos/` (v0.0.38 – v0.0.45):
//! the limits Slurm enforces. All these versions share one wire shape; they
//! differ only in
//!
//! * v0.0.38 writes unset numbers as `null` and calls the QOS list `QOS`
//!   (v0.0.40+: `{set, infinite, number}` objects, `qos`), both read by
//!   [`Number`] and [`parse_qos`];
//! * QOS `GrpTRESMins` (`limits/max/tres/minutes/total`) and `GrpSubmit`
//!   (`limits/max/jobs/count`) exist only from v0.0.41 on.
//!
//! The JSON paths are not what their names suggest: in an association,
//! `max/jobs/per/count` is `GrpJobs` and `max/jobs/active` is `MaxJobs`
//! (Slurm's data_parser `PARSER_ARRAY(ASSOC)`/`PARSER_ARRAY(QOS)`). The tests
//! check every mapping against `sacctmgr` on 22.05 and 25.11 recordings.

use std::io::Read;

use serde::Deserialize;

use super::body::{self, string_or_null, strings_or_null};
use super::number::Number;
use super::{ApiVersion, ParseError};
use crate::model::{Association, LimitKind, Limits, Qos, TresLimit};

/// Most TRES entries one limit may hold (a cluster has a few dozen TRES).
const MAX_TRES_PER_LIMIT: usize = 256;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireTres {
    #[serde(rename = "type", deserialize_with = "string_or_null")]
    kind: String,
    #[serde(deserialize_with = "string_or_null")]
    name: String,
    count: Number,
}

/// A TRES list; `null` reads as empty.
#[derive(Debug, Default)]
struct TresList(Vec<WireTres>);

impl<'de> Deserialize<'de> for TresList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<Vec<WireTres>>::deserialize(d).map(|v| TresList(v.unwrap_or_default()))
    }
}

// ---- associations ----

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireAssoc {
    #[serde(deserialize_with = "string_or_null")]
    cluster: String,
    #[serde(deserialize_with = "string_or_null")]
    account: String,
    #[serde(deserialize_with = "string_or_null")]
    user: String,
    #[serde(deserialize_with = "string_or_null")]
    partition: String,
    #[serde(deserialize_with = "string_or_null")]
    parent_account: String,
    #[serde(deserialize_with = "strings_or_null")]
    qos: Vec<String>,
    #[serde(deserialize_with = "body::state_words")]
    flags: Vec<String>,
    max: Option<AssocMax>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AssocMax {
    jobs: Option<AssocJobs>,
    tres: Option<AssocTres>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AssocJobs {
    per: Option<AssocJobsPer>,
    /// `MaxJobs`.
    active: Number,
    /// `MaxSubmitJobs`.
    total: Number,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AssocJobsPer {
    /// `GrpJobs`.
    count: Number,
    /// `GrpSubmitJobs`.
    submitted: Number,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AssocTres {
    /// `GrpTRES`.
    total: TresList,
    group: Option<AssocTresGroup>,
    minutes: Option<TresMinutes>,
    per: Option<TresPer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AssocTresGroup {
    /// `GrpTRESMins`.
    minutes: TresList,
    /// `GrpTRESRunMins`.
    active: TresList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TresMinutes {
    /// QOS only (v0.0.41+): `GrpTRESMins`.
    total: TresList,
    per: Option<TresMinutesPer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TresMinutesPer {
    /// `MaxTRESMinsPerJob`.
    job: TresList,
    /// QOS: `GrpTRESRunMins`.
    qos: TresList,
    /// QOS: `MaxTRESRunMinsPerUser`.
    user: TresList,
    /// QOS: `MaxTRESRunMinsPerAccount`.
    account: TresList,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TresPer {
    job: TresList,
    node: TresList,
    /// QOS only.
    user: TresList,
    /// QOS only.
    account: TresList,
}

/// Parses `/slurmdb/vX/associations/`. Deleted associations are left out.
pub fn parse_associations(
    _version: ApiVersion,
    body: &mut dyn Read,
) -> Result<Vec<Association>, ParseError> {
    let wire: Vec<WireAssoc> = body::read_member(body, "associations", |a: &Option<Vec<_>>| {
        a.as_ref().is_none_or(Vec::is_empty)
    })?
    .unwrap_or_default();
    Ok(wire
        .into_iter()
        .filter(|a| !a.flags.iter().any(|f| f == "DELETED") && !a.account.is_empty())
        .map(association)
        .collect())
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn association(a: WireAssoc) -> Association {
    let mut limits = Limits::default();
    let max = a.max.unwrap_or_default();
    let jobs = max.jobs.unwrap_or_default();
    let per = jobs.per.unwrap_or_default();
    job_limit(&mut limits, LimitKind::GrpJobs, per.count);
    job_limit(&mut limits, LimitKind::GrpSubmit, per.submitted);
    job_limit(&mut limits, LimitKind::MaxJobs, jobs.active);
    job_limit(&mut limits, LimitKind::MaxSubmit, jobs.total);
    let tres = max.tres.unwrap_or_default();
    tres_limit(&mut limits, LimitKind::GrpTres, tres.total);
    let group = tres.group.unwrap_or_default();
    tres_limit(&mut limits, LimitKind::GrpTresMins, group.minutes);
    tres_limit(&mut limits, LimitKind::GrpTresRunMins, group.active);
    let per = tres.per.unwrap_or_default();
    tres_limit(&mut limits, LimitKind::MaxTresPerJob, per.job);
    tres_limit(&mut limits, LimitKind::MaxTresPerNode, per.node);
    let minutes_per = tres.minutes.unwrap_or_default().per.unwrap_or_default();
    tres_limit(&mut limits, LimitKind::MaxTresMinsPerJob, minutes_per.job);
    Association {
        cluster: a.cluster,
        account: a.account,
        user: non_empty(a.user),
        partition: non_empty(a.partition),
        parent: a.parent_account,
        qos: a.qos,
        limits,
    }
}

/// A job-count limit; unset and infinite (`null`, `set: false`, `NO_VAL`,
/// `INFINITE`) are no limit.
fn job_limit(limits: &mut Limits, kind: LimitKind, n: Number) {
    if let Some(v) = n.as_u64() {
        limits.jobs.push((kind, v));
    }
}

/// TRES entries of one limit. Names are `type/name` (`gres/gpu`) or the
/// bare type (`cpu`); entries without a count or a type are skipped.
fn tres_limit(limits: &mut Limits, kind: LimitKind, list: TresList) {
    for t in list.0.into_iter().take(MAX_TRES_PER_LIMIT) {
        let Some(value) = t.count.as_u64() else {
            continue;
        };
        if t.kind.is_empty() {
            continue;
        }
        let tres = if t.name.is_empty() {
            t.kind
        } else {
            format!("{}/{}", t.kind, t.name)
        };
        limits.tres.push(TresLimit {
            limit: kind,
            tres,
            value,
        });
    }
}

// ---- QOS ----

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireQos {
    #[serde(deserialize_with = "string_or_null")]
    name: String,
    limits: Option<QosLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct QosLimits {
    max: Option<QosMax>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct QosMax {
    active_jobs: Option<QosActiveJobs>,
    jobs: Option<QosJobs>,
    tres: Option<AssocTres>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct QosActiveJobs {
    /// `GrpJobs`.
    count: Number,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct QosJobs {
    /// `GrpSubmitJobs` (v0.0.41+).
    count: Number,
    active_jobs: Option<QosJobsActive>,
    /// `MaxSubmitJobsPer{User,Account}`.
    per: Option<PerUserAccount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct QosJobsActive {
    /// `MaxJobsPer{User,Account}`.
    per: Option<PerUserAccount>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PerUserAccount {
    user: Number,
    account: Number,
}

/// Parses `/slurmdb/vX/qos/`.
pub fn parse_qos(version: ApiVersion, body: &mut dyn Read) -> Result<Vec<Qos>, ParseError> {
    let field = if version == ApiVersion::V0038 {
        "QOS"
    } else {
        "qos"
    };
    let wire: Option<Vec<WireQos>> = body::read_member(body, field, |q: &Option<Vec<WireQos>>| {
        q.as_ref().is_none_or(Vec::is_empty)
    })?;
    Ok(wire
        .unwrap_or_default()
        .into_iter()
        .filter(|q| !q.name.is_empty())
        .map(qos)
        .collect())
}

fn qos(q: WireQos) -> Qos {
    let mut limits = Limits::default();
    let max = q.limits.unwrap_or_default().max.unwrap_or_default();
    job_limit(
        &mut limits,
        LimitKind::GrpJobs,
        max.active_jobs.unwrap_or_default().count,
    );
    let jobs = max.jobs.unwrap_or_default();
    job_limit(&mut limits, LimitKind::GrpSubmit, jobs.count);
    let active = jobs.active_jobs.unwrap_or_default().per.unwrap_or_default();
    job_limit(&mut limits, LimitKind::MaxJobsPerUser, active.user);
    job_limit(&mut limits, LimitKind::MaxJobsPerAccount, active.account);
    let submit = jobs.per.unwrap_or_default();
    job_limit(&mut limits, LimitKind::MaxSubmitPerUser, submit.user);
    job_limit(&mut limits, LimitKind::MaxSubmitPerAccount, submit.account);
    let tres = max.tres.unwrap_or_default();
    tres_limit(&mut limits, LimitKind::GrpTres, tres.total);
    let per = tres.per.unwrap_or_default();
    tres_limit(&mut limits, LimitKind::MaxTresPerJob, per.job);
    tres_limit(&mut limits, LimitKind::MaxTresPerNode, per.node);
    tres_limit(&mut limits, LimitKind::MaxTresPerUser, per.user);
    tres_limit(&mut limits, LimitKind::MaxTresPerAccount, per.account);
    let minutes = tres.minutes.unwrap_or_default();
    tres_limit(&mut limits, LimitKind::GrpTresMins, minutes.total);
    let mper = minutes.per.unwrap_or_default();
    tres_limit(&mut limits, LimitKind::MaxTresMinsPerJob, mper.job);
    tres_limit(&mut limits, LimitKind::GrpTresRunMins, mper.qos);
    tres_limit(&mut limits, LimitKind::MaxTresRunMinsPerUser, mper.user);
    tres_limit(
        &mut limits,
        LimitKind::MaxTresRunMinsPerAccount,
        mper.account,
    );
    Qos {
        name: q.name,
        limits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assoc(json: &str) -> Vec<Association> {
        parse_associations(ApiVersion::V0044, &mut json.as_bytes()).unwrap()
    }

    #[test]
    fn unset_and_infinite_limits_are_absent() {
        let a = assoc(
            r#"{"associations":[{"account":"a","user":"","partition":"","max":{"jobs":{"per":{"count":{"set":false,"infinite":true,"number":0},"submitted":{"set":true,"infinite":true,"number":0}},"active":{"set":true,"infinite":false,"number":4294967295},"total":null},"tres":{"total":[{"type":"gres","name":"gpu","count":16},{"type":"cpu","name":"","count":null}]}}}]}"#,
        );
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].user, None);
        assert_eq!(a[0].partition, None);
        assert!(a[0].limits.jobs.is_empty(), "{:?}", a[0].limits.jobs);
        assert_eq!(
            a[0].limits.tres,
            vec![TresLimit {
                limit: LimitKind::GrpTres,
                tres: "gres/gpu".into(),
                value: 16
            }]
        );
    }

    #[test]
    fn json_paths_map_to_sacctmgr_names() {
        let a = assoc(
            r#"{"associations":[{"account":"a","user":"u","partition":"gpu","max":{"jobs":{"per":{"count":1,"submitted":2},"active":3,"total":4},"tres":{"group":{"minutes":[{"type":"gres","name":"gpu","count":600}],"active":[{"type":"billing","count":50}]},"per":{"job":[{"type":"cpu","count":8}]}}}}]}"#,
        );
        let l = &a[0].limits;
        assert_eq!(
            l.jobs,
            vec![
                (LimitKind::GrpJobs, 1),
                (LimitKind::GrpSubmit, 2),
                (LimitKind::MaxJobs, 3),
                (LimitKind::MaxSubmit, 4)
            ]
        );
        let t: Vec<_> = l
            .tres
            .iter()
            .map(|t| (t.limit, t.tres.as_str(), t.value))
            .collect();
        assert_eq!(
            t,
            vec![
                (LimitKind::GrpTresMins, "gres/gpu", 600),
                (LimitKind::GrpTresRunMins, "billing", 50),
                (LimitKind::MaxTresPerJob, "cpu", 8)
            ]
        );
        assert_eq!(a[0].user.as_deref(), Some("u"));
        assert_eq!(a[0].partition.as_deref(), Some("gpu"));
    }

    #[test]
    fn deleted_associations_and_errors() {
        assert!(assoc(r#"{"associations":[{"account":"a","flags":["DELETED"]}]}"#).is_empty());
        let e = parse_associations(
            ApiVersion::V0044,
            &mut &br#"{"associations":[],"errors":[{"error":"Unable to connect to database","error_number":7000}]}"#[..],
        )
        .unwrap_err();
        assert!(matches!(e, ParseError::Slurm(_)), "{e}");
        assert!(parse_qos(ApiVersion::V0044, &mut &b"{\"qos\":[{\"name\":1}]}"[..]).is_err());
    }

    #[test]
    fn qos_member_name_per_version() {
        let body = r#"{"QOS":[{"name":"q","limits":{"max":{"jobs":{"active_jobs":{"per":{"user":2}}}}}}]}"#;
        let q = parse_qos(ApiVersion::V0038, &mut body.as_bytes()).unwrap();
        assert_eq!(q[0].limits.jobs, vec![(LimitKind::MaxJobsPerUser, 2)]);
        assert!(parse_qos(ApiVersion::V0040, &mut body.as_bytes()).is_err());
    }
}
