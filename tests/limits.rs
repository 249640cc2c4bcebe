//! Association and QOS limits parsed from recorded `/slurmdb/vX/associations`
//! and `/slurmdb/vX/qos` answers equal what `sacctmgr show assoc|qos -P`
//! printed on the same Slurm release; `/shares` TRES run time equals
//! `sshare -l`'s TRESRunMins; and the scraper serves them against a mock.
//!
//! The sacctmgr side is parsed here with local helpers, independent of the
//! crate's parsers. Add live recordings (tests/fixtures/live/<release>/) to
//! [`CASES`] with [`live`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use slurm_gpu_exporter::cluster::poller::{PollOptions, Poller};
use slurm_gpu_exporter::model::{LimitKind, Limits};
use slurm_gpu_exporter::slurmrestd::client::TokenSource;
use slurm_gpu_exporter::slurmrestd::{self, ApiVersion};

mod common;
use common::*;

#[path = "support/cases.rs"]
mod cases;
use cases::{Case, CASES};

/// The rig had limits set: the shared rigs do; the live recordings predate the e2e rig's
/// association limits (the live suite compares those with sacctmgr itself).
fn has_limits(case: &Case) -> bool {
    !case.live
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn read(rel: String) -> Vec<u8> {
    std::fs::read(fixture(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `sacctmgr -P` output: the CLI file name differs on 22.05.8.
fn sacctmgr(case: &Case, what: &str) -> Vec<BTreeMap<String, String>> {
    let name = if case.release == "22.05.8" {
        format!("sacctmgr_{what}_P.txt")
    } else {
        format!("sacctmgr_show_{what}.txt")
    };
    let text = String::from_utf8(read(format!("{}/{name}", case.cli_dir()))).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split('|')
        .map(str::to_string)
        .collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split('|').map(str::to_string))
                .collect()
        })
        .collect()
}

/// sacctmgr column → limit, for associations and for QOS.
const ASSOC_COLUMNS: [(&str, LimitKind); 10] = [
    ("GrpTRES", LimitKind::GrpTres),
    ("GrpTRESMins", LimitKind::GrpTresMins),
    ("GrpTRESRunMins", LimitKind::GrpTresRunMins),
    ("MaxTRES", LimitKind::MaxTresPerJob),
    ("MaxTRESPerNode", LimitKind::MaxTresPerNode),
    ("MaxTRESMins", LimitKind::MaxTresMinsPerJob),
    ("GrpJobs", LimitKind::GrpJobs),
    ("GrpSubmit", LimitKind::GrpSubmit),
    ("MaxJobs", LimitKind::MaxJobs),
    ("MaxSubmit", LimitKind::MaxSubmit),
];
const QOS_COLUMNS: [(&str, LimitKind); 14] = [
    ("GrpTRES", LimitKind::GrpTres),
    ("GrpTRESMins", LimitKind::GrpTresMins),
    ("GrpTRESRunMins", LimitKind::GrpTresRunMins),
    ("MaxTRES", LimitKind::MaxTresPerJob),
    ("MaxTRESPerNode", LimitKind::MaxTresPerNode),
    ("MaxTRESMins", LimitKind::MaxTresMinsPerJob),
    ("MaxTRESPU", LimitKind::MaxTresPerUser),
    ("MaxTRESPA", LimitKind::MaxTresPerAccount),
    ("GrpJobs", LimitKind::GrpJobs),
    ("GrpSubmit", LimitKind::GrpSubmit),
    ("MaxJobsPU", LimitKind::MaxJobsPerUser),
    ("MaxJobsPA", LimitKind::MaxJobsPerAccount),
    ("MaxSubmitPU", LimitKind::MaxSubmitPerUser),
    ("MaxSubmitPA", LimitKind::MaxSubmitPerAccount),
];

type LimitSet = BTreeSet<(&'static str, String, u64)>;

/// The limits of one sacctmgr row, for the columns the output has. `mem`
/// values carry a unit suffix (`M`, `G`, `T`); Slurm stores MB.
fn cli_limits(row: &BTreeMap<String, String>, columns: &[(&str, LimitKind)]) -> LimitSet {
    let mut out = LimitSet::new();
    for (col, kind) in columns {
        let Some(v) = row.get(*col).filter(|v| !v.is_empty()) else {
            continue;
        };
        if kind.as_str().contains("TRES") {
            for item in v.split(',') {
                let (tres, n) = item.split_once('=').unwrap();
                let (digits, mult) = match n.as_bytes().last() {
                    Some(b'M') => (&n[..n.len() - 1], 1),
                    Some(b'G') => (&n[..n.len() - 1], 1024),
                    Some(b'T') => (&n[..n.len() - 1], 1024 * 1024),
                    _ => (n, 1),
                };
                out.insert((
                    kind.as_str(),
                    tres.to_string(),
                    digits.parse::<u64>().unwrap() * mult,
                ));
            }
        } else {
            out.insert((kind.as_str(), String::new(), v.parse().unwrap()));
        }
    }
    out
}

/// The parsed limits restricted to the kinds sacctmgr printed.
fn ours(l: &Limits, columns: &[(&str, LimitKind)], header: &BTreeSet<&str>) -> LimitSet {
    let shown = |k: LimitKind| columns.iter().any(|(c, ck)| *ck == k && header.contains(c));
    l.tres
        .iter()
        .filter(|t| shown(t.limit))
        .map(|t| (t.limit.as_str(), t.tres.clone(), t.value))
        .chain(
            l.jobs
                .iter()
                .filter(|(k, _)| shown(*k))
                .map(|(k, v)| (k.as_str(), String::new(), *v)),
        )
        .collect()
}

#[test]
fn associations_equal_sacctmgr() {
    for case in CASES.iter() {
        let body = read(format!("{}/slurmdb_associations.json", case.rest_dir()));
        let assocs = slurmrestd::parse_associations(case.version, &mut &body[..])
            .unwrap_or_else(|e| panic!("{} {}: {e}", case.version, case.release));
        let rows = sacctmgr(case, "assoc");
        let header: BTreeSet<&str> = rows[0].keys().map(String::as_str).collect();
        assert_eq!(
            assocs.len(),
            rows.len(),
            "{} {}",
            case.version,
            case.release
        );
        let mut any_limit = false;
        for row in &rows {
            let user = row.get("User").cloned().unwrap_or_default();
            let part = row.get("Partition").cloned().unwrap_or_default();
            let a = assocs
                .iter()
                .find(|a| {
                    a.account == row["Account"]
                        && a.user.clone().unwrap_or_default() == user
                        && a.partition.clone().unwrap_or_default() == part
                })
                .unwrap_or_else(|| panic!("{} {}: no {row:?}", case.version, case.release));
            let want = cli_limits(row, &ASSOC_COLUMNS);
            any_limit |= !want.is_empty();
            assert_eq!(
                ours(&a.limits, &ASSOC_COLUMNS, &header),
                want,
                "{} {} {row:?}",
                case.version,
                case.release
            );
        }
        assert!(
            any_limit || !has_limits(case),
            "{}: no association limit to compare",
            case.release
        );
    }
}

#[test]
fn qos_equal_sacctmgr() {
    for case in CASES.iter() {
        let body = read(format!("{}/slurmdb_qos.json", case.rest_dir()));
        let qos = slurmrestd::parse_qos(case.version, &mut &body[..])
            .unwrap_or_else(|e| panic!("{} {}: {e}", case.version, case.release));
        let rows = sacctmgr(case, "qos");
        let header: BTreeSet<&str> = rows[0].keys().map(String::as_str).collect();
        assert_eq!(qos.len(), rows.len(), "{} {}", case.version, case.release);
        let mut any_limit = false;
        for row in &rows {
            let q = qos.iter().find(|q| q.name == row["Name"]).unwrap();
            let want = cli_limits(row, &QOS_COLUMNS);
            any_limit |= !want.is_empty();
            assert_eq!(
                ours(&q.limits, &QOS_COLUMNS, &header),
                want,
                "{} {} {row:?}",
                case.version,
                case.release
            );
        }
        assert!(
            any_limit || !has_limits(case),
            "{}: no QOS limit to compare",
            case.release
        );
    }
}

/// `/shares` `tres.run_seconds` is sshare's TRESRunMins × 60 (recorded a
/// few seconds apart: running jobs' remaining time moves meanwhile).
#[test]
fn shares_run_seconds_match_sshare_tres_run_mins() {
    for case in CASES.iter().filter(|c| c.version != ApiVersion::V0038) {
        let Ok(body) = std::fs::read(fixture(&format!("{}/slurm_shares.json", case.rest_dir())))
        else {
            continue;
        };
        let shares = slurmrestd::parse_shares(case.version, &mut &body[..]).unwrap();
        let text = String::from_utf8(read(format!("{}/sshare.txt", case.cli_dir()))).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split('|').collect();
        let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
        let (acc, usr, run) = (col("Account"), col("User"), col("TRESRunMins"));
        let mut compared = 0;
        for l in lines {
            let f: Vec<&str> = l.split('|').collect();
            let (account, user) = (f[acc].trim(), f[usr].trim());
            if account == "root" {
                continue;
            }
            let Some(cli_gpu) = f[run]
                .split(',')
                .find_map(|kv| kv.strip_prefix("gres/gpu="))
                .and_then(|v| v.parse::<f64>().ok())
            else {
                continue;
            };
            let s = shares
                .iter()
                .find(|s| s.account == account && s.user.as_deref().unwrap_or("") == user)
                .unwrap_or_else(|| panic!("{}: no share {account}/{user}", case.version));
            let ours = s
                .tres_run_seconds
                .iter()
                .find(|(t, _)| t == "gres/gpu")
                .map(|(_, v)| v / 60.0)
                .unwrap();
            assert!(
                (ours - cli_gpu).abs() <= 2.0 + cli_gpu * 0.02,
                "{} {account}/{user}: {ours} vs sshare {cli_gpu}",
                case.version
            );
            compared += 1;
        }
        assert!(compared > 0, "{}", case.version);
        assert!(shares.iter().any(|s| s
            .tres_usage_seconds
            .iter()
            .any(|(t, v)| t == "gres/gpu" && *v > 0.0)));
    }
}

/// One poll with version auto-detection (a 404 on a data path would make
/// the poller forget the version).
async fn scrape(state: Mock) -> slurm_gpu_exporter::exposition::MetricSet {
    let url = start_tcp(state).await;
    let mut p = Poller::new(
        client(&url, TokenSource::None, Duration::from_secs(10), 64 << 20),
        PollOptions::default(),
    );
    p.poll().await
}

#[tokio::test]
async fn scraper_serves_limits_and_usage() {
    let set = scrape(mock(vec![(
        ApiVersion::V0044,
        recording(ApiVersion::V0044),
    )]))
    .await;
    let grp = [
        ("account", "ai_project"),
        ("user", ""),
        ("partition", ""),
        ("limit", "GrpTRES"),
        ("tres", "gres/gpu"),
    ];
    assert_eq!(set.value("slurm_assoc_tres_limit", &grp), Some(16.0));
    assert_eq!(
        set.value(
            "slurm_qos_tres_limit",
            &[
                ("qos", "gpu_limit"),
                ("limit", "MaxTRESPerUser"),
                ("tres", "gres/gpu")
            ]
        ),
        Some(4.0)
    );
    assert!(set
        .value(
            "slurm_assoc_tres_usage_seconds",
            &[
                ("account", "ai_project"),
                ("user", ""),
                ("tres", "gres/gpu")
            ]
        )
        .is_some_and(|v| v > 0.0));
    assert_eq!(
        set.value(
            "slurm_exporter_endpoint_up",
            &[("endpoint", "associations")]
        ),
        Some(1.0)
    );
    // Jobs held by a limit are attributable per account in one query:
    // sum by (account, reason) (slurm_cluster_jobs_pending{reason=~"(Assoc|QOS)(Grp|Max).*"}).
    assert_eq!(
        set.value(
            "slurm_cluster_jobs_pending",
            &[("account", "ai_project"), ("reason", "QOSMaxGRESPerUser")]
        ),
        Some(1.0)
    );
}

/// The v0.0.44 recording without its `/slurmdb/` paths (404 there).
fn without_slurmdb() -> slurm_gpu_exporter::testkit::replay::Recording {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join("slurmrestd/v0.0.44");
    for e in std::fs::read_dir(&src).unwrap() {
        let name = e.unwrap().file_name();
        if name.to_string_lossy().starts_with("slurm_") {
            std::fs::copy(src.join(&name), dir.path().join(&name)).unwrap();
        }
    }
    slurm_gpu_exporter::testkit::replay::Recording::from_dir(dir.path(), ApiVersion::V0044).unwrap()
}

/// slurmrestd without slurmdbd paths (404, e.g. run without its slurmdbd
/// plugin) or slurmdbd down (500): the limits series are absent, the error
/// counter says why, and the rest is served; a 404 there does not make the
/// scraper drop the API version.
#[tokio::test]
async fn limits_endpoints_failing_leave_the_rest_working() {
    let mut rec = without_slurmdb();
    // slurmdbd down: slurmrestd answers with errors[] and no data.
    rec.insert(
        "/slurmdb/v0.0.44/associations/",
        &br#"{"associations":[],"errors":[{"description":"Unable to connect to database","error_number":7000,"error":"Unable to connect to database","source":"slurmdb_connection_get"}]}"#[..],
    );
    let set = scrape(mock(vec![(ApiVersion::V0044, rec)])).await;
    let text = set.encode_text();
    assert!(!text.contains("slurm_assoc_tres_limit{"), "{text}");
    assert!(!text.contains("slurm_qos_tres_limit{"));
    assert_eq!(
        set.value(
            "slurm_exporter_endpoint_up",
            &[("endpoint", "associations")]
        ),
        Some(0.0)
    );
    assert_eq!(
        set.value(
            "slurm_exporter_errors_total",
            &[("endpoint", "qos"), ("kind", "not_found")]
        ),
        Some(1.0)
    );
    assert_eq!(
        set.value(
            "slurm_exporter_errors_total",
            &[("endpoint", "associations"), ("kind", "slurm_error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        set.value("slurm_exporter_api_version_info", &[("version", "v0.0.44")]),
        Some(1.0)
    );
    assert_eq!(
        set.value("slurm_exporter_endpoint_up", &[("endpoint", "jobs")]),
        Some(1.0)
    );
    assert!(text.contains("slurm_cluster_jobs_pending{"));
}

/// Associations and QOS are fetched one poll in N; between fetches the kept
/// data counts as current (not stale), and a failed fetch is retried at once.
#[tokio::test]
async fn limits_are_fetched_one_poll_in_n() {
    let state = mock(vec![(ApiVersion::V0044, recording(ApiVersion::V0044))]);
    let url = start_tcp(state.clone()).await;
    let mut p = Poller::new(
        client(&url, TokenSource::None, Duration::from_secs(10), 64 << 20),
        PollOptions {
            limits_poll_every: 3,
            ..PollOptions::default()
        },
    );
    let fetches = |path: &str| {
        state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, _, _)| p.starts_with(path))
            .count()
    };
    for _ in 0..6 {
        let set = p.poll().await;
        assert_eq!(
            set.value("slurm_exporter_endpoint_stale", &[("endpoint", "qos")]),
            Some(0.0)
        );
        assert!(set.encode_text().contains("slurm_qos_tres_limit{"));
    }
    assert_eq!(fetches("/slurmdb/v0.0.44/qos"), 2);
    assert_eq!(fetches("/slurmdb/v0.0.44/associations"), 2);
    assert_eq!(fetches("/slurm/v0.0.44/diag"), 6);
}

/// A failed fetch of associations/QOS is retried on the next poll, not N
/// polls later; once it succeeds, the one-in-N schedule resumes.
#[tokio::test]
async fn failed_limits_fetch_is_retried_next_poll() {
    let state = mock(vec![(ApiVersion::V0044, without_slurmdb())]);
    let url = start_tcp(state.clone()).await;
    let mut p = Poller::new(
        client(&url, TokenSource::None, Duration::from_secs(10), 64 << 20),
        PollOptions {
            pinned_version: Some(ApiVersion::V0044),
            limits_poll_every: 5,
            ..PollOptions::default()
        },
    );
    let fetches = || {
        state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, _, _)| p.starts_with("/slurmdb/v0.0.44/qos"))
            .count()
    };
    let set = p.poll().await;
    assert!(!set.encode_text().contains("slurm_qos_tres_limit{"));
    assert_eq!(fetches(), 1);
    p.poll().await;
    assert_eq!(fetches(), 2, "retried after a failure");
    state.lock().unwrap().recordings = vec![(ApiVersion::V0044, recording(ApiVersion::V0044))];
    let set = p.poll().await;
    assert_eq!(fetches(), 3);
    assert!(set.encode_text().contains("slurm_qos_tres_limit{"));
    for _ in 0..4 {
        p.poll().await;
    }
    assert_eq!(fetches(), 3, "back to one poll in 5");
    p.poll().await;
    assert_eq!(fetches(), 4);
}
