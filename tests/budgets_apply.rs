//! `budgets apply` end to end: the real binary against the mock slurmrestd
//! (a writable association table recorded from Slurm 26.05, API v0.0.45).

mod common;

use common::{run_exporter, AssocDb, Mock, Run};
use slurm_gpu_exporter::slurmrestd::ApiVersion;

const TOKEN: &str = "operator-jwt-sekrit-4711";

struct Rig {
    mock: Mock,
    url: String,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn new(budgets: &str) -> Rig {
        Rig::with_version(budgets, ApiVersion::V0045).await
    }

    async fn with_version(budgets: &str, version: ApiVersion) -> Rig {
        let mock = common::mock(Vec::new());
        let mut db = AssocDb::from_recording(version);
        // hpc_project already holds its GPU budget; ai_project holds a mem
        // limit the file does not name (must survive).
        for a in db.body["associations"].as_array_mut().unwrap() {
            if a["user"] == "" {
                match a["account"].as_str() {
                    Some("hpc_project") => {
                        a["max"]["tres"]["group"]["minutes"] = serde_json::json!([{"type": "gres", "name": "gpu", "id": 1001, "count": 330}])
                    }
                    Some("ai_project") => {
                        a["max"]["tres"]["group"]["minutes"] =
                            serde_json::json!([{"type": "mem", "name": "", "id": 2, "count": 777}])
                    }
                    _ => {}
                }
            }
        }
        {
            let mut s = mock.lock().unwrap();
            s.assoc_db = Some(db);
            s.token = Some(TOKEN.to_string());
        }
        let url = common::start_tcp(mock.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("budgets.yaml"), budgets).unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        Rig { mock, url, dir }
    }

    async fn run(&self, extra: &[&str]) -> Run {
        let mut args: Vec<String> = vec![
            "--log.level=debug".into(),
            "budgets".into(),
            "apply".into(),
            format!(
                "--budgets={}",
                self.dir.path().join("budgets.yaml").display()
            ),
            format!("--slurmrestd-url={}", self.url),
            format!(
                "--slurmrestd-token-file={}",
                self.dir.path().join("token").display()
            ),
            "--slurmrestd-timeout=5s".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        run_exporter(args, TOKEN).await
    }

    fn posts(&self) -> Vec<serde_json::Value> {
        self.mock
            .lock()
            .unwrap()
            .assoc_db
            .as_ref()
            .unwrap()
            .posts
            .clone()
    }
}

const BUDGETS: &str = "accounts:\n  ai_project:\n    gpu_hours: 100\n    cpu_hours: 1000\n  hpc_project:\n    gpu_hours: 5.5\n";

/// The row of `account`/`tres`, whitespace-collapsed.
fn row(stdout: &str, account: &str, tres: &str) -> String {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .find(|l| l.starts_with(&format!("{account} {tres} ")))
        .unwrap_or_else(|| panic!("no row {account} {tres} in\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_diff_and_posts_nothing() {
    let rig = Rig::new(BUDGETS).await;
    let r = rig.run(&[]).await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        row(&r.stdout, "ai_project", "gres/gpu"),
        "ai_project gres/gpu - 6000 set"
    );
    assert_eq!(
        row(&r.stdout, "ai_project", "cpu"),
        "ai_project cpu - 60000 set"
    );
    assert_eq!(
        row(&r.stdout, "hpc_project", "gres/gpu"),
        "hpc_project gres/gpu 330 330 unchanged"
    );
    assert!(r.stdout.contains("dry run"), "{}", r.stdout);
    assert!(
        r.stderr.contains("GrpTRESMins unset -> 6000"),
        "{}",
        r.stderr
    );
    assert!(rig.posts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_posts_only_the_changed_association_then_is_idempotent() {
    let rig = Rig::new(BUDGETS).await;
    let r = rig.run(&["--apply"]).await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("applied: 1 association(s) updated and verified"),
        "{}",
        r.stdout
    );
    let posts = rig.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    // v0.0.45_openapi_assocs_resp: associations[] of v0.0.45_assoc, GrpTRESMins
    // at max/tres/group/minutes as a v0.0.45_tres_list; the mem limit not in
    // the file is sent back as it was.
    assert_eq!(
        posts[0],
        serde_json::json!({"associations": [{
            "account": "ai_project", "cluster": "rig2605", "user": "", "partition": "",
            "max": {"tres": {"group": {"minutes": [
                {"type": "cpu", "name": "", "count": 60000},
                {"type": "gres", "name": "gpu", "count": 6000},
                {"type": "mem", "name": "", "count": 777},
            ]}}},
        }]})
    );
    // The operator token went with the write.
    let reqs = rig.mock.lock().unwrap().requests.clone();
    assert!(reqs.iter().all(|(_, t, _)| t.as_deref() == Some(TOKEN)));

    let again = rig.run(&["--apply"]).await;
    assert!(again.ok, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(
        row(&again.stdout, "ai_project", "gres/gpu"),
        "ai_project gres/gpu 6000 6000 unchanged"
    );
    assert_eq!(
        row(&again.stdout, "ai_project", "cpu"),
        "ai_project cpu 60000 60000 unchanged"
    );
    assert!(!again.stdout.contains(" set"), "{}", again.stdout);
    assert_eq!(rig.posts().len(), 1, "second run POSTed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_account_is_refused_and_nothing_applied() {
    let rig =
        Rig::new("accounts:\n  ai_project:\n    gpu_hours: 1\n  ghost_lab:\n    gpu_hours: 2\n")
            .await;
    let r = rig.run(&["--apply"]).await;
    assert!(!r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        row(&r.stdout, "ghost_lab", "gres/gpu"),
        "ghost_lab gres/gpu unknown account 120 refused"
    );
    assert!(
        r.stderr.contains("ghost_lab") && r.stderr.contains("nothing applied"),
        "{}",
        r.stderr
    );
    assert!(rig.posts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_error_is_reported_with_a_failing_exit() {
    let rig = Rig::new(BUDGETS).await;
    rig.mock
        .lock()
        .unwrap()
        .assoc_db
        .as_mut()
        .unwrap()
        .post_fault = Some(500);
    let r = rig.run(&["--apply"]).await;
    assert!(!r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("setting GrpTRESMins of account ai_project")
            && r.stderr
                .contains("POST /slurmdb/v0.0.45/associations/: HTTP 500"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("applied:"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cluster_refuses_everything() {
    let rig = Rig::new(BUDGETS).await;
    let r = rig.run(&["--apply", "--cluster=other"]).await;
    assert!(!r.ok);
    assert!(rig.posts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apis_older_than_v0042_are_not_written_to() {
    // The POST shape is verified against the v0.0.42+ OpenAPI only.
    let rig = Rig::with_version(BUDGETS, ApiVersion::V0041).await;
    let r = rig.run(&["--apply"]).await;
    assert!(!r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("v0.0.42 or later"), "{}", r.stderr);
    assert!(rig.posts().is_empty());
}
