//! The usage tracker's slurmdbd path against a mock slurmrestd serving the
//! recorded 25.11.7 responses, the budget account check, and the state file;
//! plus the binary refusing bad budget files at start.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use slurm_gpu_exporter::cluster::budgets::Budgets;
use slurm_gpu_exporter::cluster::usage::tracker::{CheckError, UsageTracker};
use slurm_gpu_exporter::cluster::usage::{slurmdb, AccountantOptions, UsageRow};
use slurm_gpu_exporter::slurmrestd::client::{Client, ClientOptions, TokenSource};
use slurm_gpu_exporter::slurmrestd::{Api, ApiVersion};
use slurm_gpu_exporter::testkit::replay::{self, full, Handler};

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .unwrap()
}

/// Serves `routes` (path without query -> (status, body)) and logs every
/// request's path and query.
async fn mock(routes: BTreeMap<String, (u16, Vec<u8>)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let routes = Arc::new(routes);
    let l = log.clone();
    let handler: Handler = Arc::new(move |req: Request<Incoming>| {
        let routes = routes.clone();
        let log = l.clone();
        Box::pin(async move {
            let uri = req.uri().clone();
            log.lock().unwrap().push(uri.to_string());
            match routes.get(uri.path().trim_end_matches('/')) {
                Some((status, body)) => full(
                    StatusCode::from_u16(*status).unwrap(),
                    "application/json",
                    body.clone(),
                ),
                None => full(StatusCode::NOT_FOUND, "text/plain", "Unable to find path"),
            }
        })
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(replay::serve_tcp(listener, handler));
    (url, log)
}

fn client(url: &str) -> Api {
    Api::new(Arc::new(
        Client::new(ClientOptions {
            url: url.to_string(),
            token: TokenSource::None,
            user_name: None,
            timeout: Duration::from_secs(5),
            max_body_bytes: 64 << 20,
            ca_file: None,
        })
        .unwrap(),
    ))
}

const T1900: i64 = 1_795_374_000; // 2026-11-22T19:00:00Z

/// What `/slurm/vX/jobs` would list at `t` if slurmctld purged finished jobs at once.
fn running_at(records: &[UsageRow], t: i64) -> Vec<UsageRow> {
    records
        .iter()
        .filter(|r| r.start <= t && r.end.is_none_or(|e| e > t))
        .map(|r| UsageRow {
            end: None,
            ..r.clone()
        })
        .collect()
}

fn gpu_total(u: &UsageTracker) -> f64 {
    u.accountant
        .totals
        .iter()
        .filter(|(k, _)| k.3 == "gres/gpu")
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn gap_and_vanished_jobs_are_completed_from_recorded_slurmdbd() {
    let body = fixture("slurmrestd/v0.0.44/slurmdb_jobs.json");
    let records = slurmdb::parse_jobs(&mut &body[..]).unwrap();
    let mut routes = BTreeMap::new();
    routes.insert("/slurmdb/v0.0.44/jobs".to_string(), (200, body));
    let (url, log) = mock(routes).await;
    let client = client(&url);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("usage.json");

    let mut u = UsageTracker::new(AccountantOptions::default(), Some(state.clone()), None).unwrap();
    u.account(
        &client,
        ApiVersion::V0044,
        T1900,
        running_at(&records, T1900),
    )
    .await;
    assert!(
        log.lock().unwrap().is_empty(),
        "first poll needs no slurmdbd"
    );

    // Ten minutes later (scraper restart): jobs 5-8 vanished, 15/16/33 ran
    // and were purged in between, 29-32 are running.
    let mut u = UsageTracker::new(AccountantOptions::default(), Some(state.clone()), None).unwrap();
    let t = T1900 + 600;
    u.account(&client, ApiVersion::V0044, t, running_at(&records, t))
        .await;
    assert_eq!(
        log.lock().unwrap().as_slice(),
        [format!(
            "/slurmdb/v0.0.44/jobs/?start_time={T1900}&end_time={}",
            t + 60
        )]
    );
    // 5-8: 7 GPUs × 461 s; 15, 16: 4 GPUs × 25 s each; 29-31: 6 × 107 s;
    // 32: 1 × 107 s; 33: 1 × 6 s.
    assert_eq!(
        gpu_total(&u),
        (7 * 461 + 2 * 4 * 25 + 6 * 107 + 107 + 6) as f64
    );
    assert_eq!(u.status.lookups.get("ok"), Some(&1));

    // The state file carries the totals to the next process.
    let again = UsageTracker::new(AccountantOptions::default(), Some(state), None).unwrap();
    assert_eq!(again.accountant.totals, u.accountant.totals);
}

#[tokio::test]
async fn slurmdbd_failure_is_retried_next_poll() {
    let mut routes = BTreeMap::new();
    routes.insert(
        "/slurmdb/v0.0.41/jobs".to_string(),
        (500, br#"{"errors":[{"error":"slurmdbd down"}]}"#.to_vec()),
    );
    let (url, log) = mock(routes).await;
    let client = client(&url);
    let mut u = UsageTracker::new(AccountantOptions::default(), None, None).unwrap();
    u.account(&client, ApiVersion::V0041, 1000, vec![]).await;
    u.account(&client, ApiVersion::V0041, 2000, vec![]).await;
    u.account(&client, ApiVersion::V0041, 2030, vec![]).await;
    let log = log.lock().unwrap();
    // v0.0.41 rejects epoch times: a relative window, still from the gap start.
    assert_eq!(
        log.as_slice(),
        [
            "/slurmdb/v0.0.41/jobs/?start_time=now-19minutes",
            "/slurmdb/v0.0.41/jobs/?start_time=now-20minutes"
        ]
    );
    assert_eq!(u.status.lookups.get("error"), Some(&2));
    assert_eq!(u.accountant.unverified_since, Some(1000));
}

#[tokio::test]
async fn budget_accounts_are_checked_against_slurmdbd() {
    let mut routes = BTreeMap::new();
    routes.insert(
        "/slurmdb/v0.0.44/accounts".to_string(),
        (200, fixture("slurmrestd/v0.0.44/slurmdb_accounts.json")),
    );
    let (url, _) = mock(routes).await;
    let client = client(&url);
    let p = Path::new("budgets.yaml");
    let good = Budgets::parse(p, "accounts: {ai_project: {gpu_hours: 10}}").unwrap();
    let mut u = UsageTracker::new(AccountantOptions::default(), None, Some(good)).unwrap();
    u.check_budget_accounts(&client, ApiVersion::V0044)
        .await
        .unwrap();
    assert!(u.budgets_checked);

    let bad = Budgets::parse(p, "accounts: {ai_projekt: {gpu_hours: 10}}").unwrap();
    let mut u = UsageTracker::new(AccountantOptions::default(), None, Some(bad)).unwrap();
    let e = u
        .check_budget_accounts(&client, ApiVersion::V0044)
        .await
        .unwrap_err();
    assert!(matches!(e, CheckError::Budgets(_)));
    assert!(e.to_string().contains("ai_projekt"), "{e}");

    // slurmdbd unreachable: "not checked yet", not "bad file".
    let bad = Budgets::parse(p, "accounts: {ai_projekt: {gpu_hours: 10}}").unwrap();
    let mut u = UsageTracker::new(AccountantOptions::default(), None, Some(bad)).unwrap();
    let e = u
        .check_budget_accounts(&client, ApiVersion::V0040)
        .await
        .unwrap_err();
    assert!(matches!(e, CheckError::Fetch(_)));
    assert!(!u.budgets_checked);
}

#[test]
fn binary_rejects_bad_budget_files_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, expect) in [
        (
            "accounts:\n  ai: {gpu_hours: -1}\n",
            "must be a number >= 0",
        ),
        ("accounts: [oops\n", "is not valid"),
        (
            "accounts:\n  ai: {gpu_hourz: 1}\n",
            "unknown field `gpu_hourz`",
        ),
    ] {
        let p = dir.path().join("b.yaml");
        std::fs::write(&p, yaml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_slurm-gpu-exporter"))
            .args([
                "cluster",
                "--slurmrestd-url",
                "http://127.0.0.1:9",
                "--budgets",
            ])
            .arg(&p)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml}: {err}");
        assert!(err.contains(expect), "{yaml}: {err}");
    }
}
