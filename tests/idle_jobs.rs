//! `idle-jobs` end to end: the real binary against a mock that answers as
//! both the Prometheus query API (the idle-job rule's answer) and slurmrestd
//! (jobs built from the v0.0.45 recording, `ping/`, `DELETE /job/{id}`),
//! recording every request.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{run_exporter, Run};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "operator-jwt-sekrit-4711";

#[derive(Default)]
struct MockState {
    /// Newest API version served (`ping/` answers 404 above it).
    newest: &'static str,
    /// The rule's answer: (job_id, account label, value).
    idle: Vec<(&'static str, &'static str, f64)>,
    /// GET /slurm/vX/job/{id} bodies.
    jobs: BTreeMap<u64, Value>,
    /// DELETE answer (status, body).
    delete_answer: Option<(u16, Value)>,
    /// (method, path+query, token header)
    requests: Vec<(String, String, Option<String>)>,
}

type Shared = Arc<Mutex<MockState>>;

fn version_ok(path: &str, newest: &str) -> bool {
    // /slurm/v0.0.4N/...: served when N <= newest.
    path.split('/').nth(2).map(|v| v <= newest).unwrap_or(false)
}

fn answer(state: &Shared, method: &str, target: &str) -> (u16, Value) {
    let s = state.lock().unwrap();
    let path = target.split('?').next().unwrap_or("");
    if path == "/api/v1/query" {
        let result: Vec<Value> = s
            .idle
            .iter()
            .map(|(id, acc, v)| {
                json!({"metric": {"job_id": id, "account": acc, "cluster": "rig"}, "value": [1.0, v.to_string()]})
            })
            .collect();
        return (
            200,
            json!({"status": "success", "data": {"resultType": "vector", "result": result}}),
        );
    }
    if !version_ok(path, s.newest) {
        return (
            404,
            json!({"errors": [{"error": "Unable to find requested URL"}]}),
        );
    }
    if path.ends_with("/ping/") {
        return (200, json!({"pings": [], "errors": [], "warnings": []}));
    }
    if let Some(id) = path
        .rsplit('/')
        .next()
        .and_then(|i| i.parse::<u64>().ok())
        .filter(|_| path.contains("/job/"))
    {
        if method == "DELETE" {
            return s.delete_answer.clone().unwrap_or((
                200,
                json!({"status": [{"error": {"code": 0, "message": "", "string": "No error"}, "step_id": "", "job_id": {"set": true, "number": id}, "federation": {"sibling": ""}}], "errors": [], "warnings": []}),
            ));
        }
        return match s.jobs.get(&id) {
            Some(j) => (200, j.clone()),
            None => (
                500,
                json!({"jobs": [], "errors": [{"error_number": 2017, "error": "Invalid job id specified"}]}),
            ),
        };
    }
    (404, json!({"errors": [{"error": "not found"}]}))
}

async fn serve(state: Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let mut first = head.lines().next().unwrap_or("").split(' ');
                let method = first.next().unwrap_or("").to_string();
                let target = first.next().unwrap_or("").to_string();
                let token = head
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("x-slurm-user-token:"))
                    .map(|l| l.split_once(':').unwrap().1.trim().to_string());
                state
                    .lock()
                    .unwrap()
                    .requests
                    .push((method.clone(), target.clone(), token));
                let (status, body) = answer(&state, &method, &target);
                let body = body.to_string();
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

/// A v0.0.45 `/job/{id}` answer: the recording's first job with these fields.
fn job(id: u64, account: &str, partition: &str, qos: &str, state: &str) -> Value {
    let rec: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/slurmrestd/v0.0.45/slurm_jobs.json").unwrap(),
    )
    .unwrap();
    let mut j = rec["jobs"][0].clone();
    j["job_id"] = json!(id);
    j["account"] = json!(account);
    j["partition"] = json!(partition);
    j["qos"] = json!(qos);
    j["job_state"] = json!([state]);
    j["array_job_id"] = json!({"set": true, "infinite": false, "number": 0});
    j["array_task_id"] = json!({"set": false, "infinite": false, "number": 0});
    let mut body = rec.clone();
    body["jobs"] = json!([j]);
    body
}

struct Rig {
    state: Shared,
    url: String,
    dir: tempfile::TempDir,
}

impl Run {
    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    fn action(&self, id: u64) -> Option<(String, bool)> {
        self.lines().iter().find(|l| l["job_id"] == id).map(|l| {
            (
                l["action"].as_str().unwrap().to_string(),
                l["dry_run"].as_bool().unwrap(),
            )
        })
    }
}

impl Rig {
    async fn new(newest: &'static str) -> Rig {
        let state: Shared = Arc::new(Mutex::new(MockState {
            newest,
            idle: vec![
                ("101", "ai_project", 0.01),
                ("102", "hpc_project", 0.0),
                ("103", "ai_project", 0.0),
            ],
            ..Default::default()
        }));
        {
            let mut s = state.lock().unwrap();
            s.jobs
                .insert(101, job(101, "ai_project", "gpu", "normal", "RUNNING"));
            s.jobs
                .insert(102, job(102, "hpc_project", "gpu", "normal", "RUNNING"));
            s.jobs
                .insert(103, job(103, "ai_project", "gpu", "normal", "COMPLETED"));
        }
        let url = serve(state.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        Rig { state, url, dir }
    }

    async fn run(&self, extra: &[&str]) -> Run {
        let d = self.dir.path();
        let mut args: Vec<String> = vec![
            "--log.level=debug".into(),
            "idle-jobs".into(),
            format!("--prometheus={}", self.url),
            format!("--slurmrestd-url={}", self.url),
            format!("--slurmrestd-token-file={}", d.join("token").display()),
            "--slurmrestd-user-name=root".into(),
            "--slurmrestd-timeout=5s".into(),
            "--exempt-accounts=hpc_project".into(),
            format!("--state-file={}", d.join("state.json").display()),
            format!("--audit-log={}", d.join("audit.log").display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        run_exporter(args, TOKEN).await
    }

    fn deletes(&self) -> Vec<(String, Option<String>)> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.0 == "DELETE")
            .map(|r| (r.1.clone(), r.2.clone()))
            .collect()
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn state_file(&self) -> Option<Value> {
        std::fs::read_to_string(self.dir.path().join("state.json"))
            .ok()
            .map(|s| serde_json::from_str(&s).unwrap())
    }
}

#[tokio::test]
async fn dry_run_then_warn_then_cancel_exempt_kept() {
    let rig = Rig::new("v0.0.45").await;
    // Dry run: would warn 101, 102 exempt, 103 gone; nothing written or deleted.
    let r = rig.run(&[]).await;
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.action(101), Some(("warn".into(), true)));
    assert_eq!(r.action(102), Some(("exempt".into(), true)));
    assert_eq!(r.action(103), Some(("gone".into(), true)));
    assert!(rig.state_file().is_none());
    assert!(rig.deletes().is_empty());
    // The query asks for the rule over the window.
    let q: Vec<String> = rig
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.1.starts_with("/api/v1/query"))
        .map(|r| r.1.clone())
        .collect();
    assert!(
        q[0].contains("job%3Aslurm%5Fgpu%5Factivity%5Fratio%3Amax%5B3600s%5D"),
        "{q:?}"
    );

    // --apply: warns 101 (state file), cancels nothing yet (grace 1h).
    let r = rig.run(&["--apply", "--grace=1h"]).await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.action(101), Some(("warn".into(), false)));
    assert!(rig.deletes().is_empty());
    assert!(rig.state_file().unwrap()["warned"]["101"].is_i64());
    // Within the grace: wait.
    let r = rig.run(&["--apply", "--grace=1h"]).await;
    assert_eq!(r.action(101), Some(("wait".into(), false)));
    assert!(rig.deletes().is_empty());
    // A dry run past the grace would cancel, and does not.
    let r = rig.run(&["--grace=0s"]).await;
    assert_eq!(r.action(101), Some(("cancel".into(), true)));
    assert!(rig.deletes().is_empty());
    // Past the grace with --apply: DELETE, with the token, through v0.0.45.
    let r = rig.run(&["--apply", "--grace=0s"]).await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.action(101), Some(("cancel".into(), false)));
    assert_eq!(
        rig.deletes(),
        [(
            "/slurm/v0.0.45/job/101".to_string(),
            Some(TOKEN.to_string())
        )]
    );
    assert!(rig.state_file().unwrap()["warned"]
        .as_object()
        .unwrap()
        .is_empty());
    // Audit: one line per warn/cancel decision (dry runs flagged), who/what/why/values.
    let real: Vec<(u64, String)> = rig
        .audit()
        .iter()
        .filter(|l| l["dry_run"] == false)
        .map(|l| {
            (
                l["job_id"].as_u64().unwrap(),
                l["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        real,
        [(101, "warn".to_string()), (101, "cancel".to_string())]
    );
    let cancel = rig.audit().into_iter().last().unwrap();
    assert_eq!(cancel["account"], "ai_project");
    assert_eq!(cancel["max_activity"], 0.01);
    assert!(
        cancel["actor"].as_str().unwrap().contains("root"),
        "{cancel}"
    );
    assert!(
        cancel["reason"].as_str().unwrap().contains("still idle"),
        "{cancel}"
    );
    assert!(!rig.audit().iter().any(|l| l["job_id"] == 102));
}

#[tokio::test]
async fn busy_again_clears_the_warning() {
    let rig = Rig::new("v0.0.45").await;
    assert!(rig.run(&["--apply"]).await.ok);
    assert!(rig.state_file().unwrap()["warned"]["101"].is_i64());
    rig.state.lock().unwrap().idle.retain(|i| i.0 != "101");
    assert!(rig.run(&["--apply", "--grace=0s"]).await.ok);
    assert!(rig.state_file().unwrap()["warned"].get("101").is_none());
    assert!(rig.deletes().is_empty());
}

#[tokio::test]
async fn refuses_apis_before_v0_0_42() {
    let rig = Rig::new("v0.0.41").await;
    let r = rig.run(&["--apply", "--grace=0s"]).await;
    assert!(!r.ok);
    assert!(r.stderr.contains("v0.0.42 or later"), "{}", r.stderr);
    assert!(rig.deletes().is_empty());
    assert!(rig.state_file().is_none());
}

#[tokio::test]
async fn failed_cancel_is_an_error_and_stays_warned() {
    let rig = Rig::new("v0.0.42").await;
    rig.state.lock().unwrap().delete_answer = Some((
        200,
        json!({"status": [{"error": {"code": 2017, "message": "Invalid job id specified", "string": "x"}}], "errors": [], "warnings": []}),
    ));
    assert!(rig.run(&["--apply"]).await.ok);
    let r = rig.run(&["--apply", "--grace=0s"]).await;
    assert!(!r.ok);
    assert!(
        r.stderr.contains("2017: Invalid job id specified"),
        "{}",
        r.stderr
    );
    assert_eq!(rig.deletes()[0].0, "/slurm/v0.0.42/job/101");
    let last = rig.audit().into_iter().last().unwrap();
    assert!(
        last["result"].as_str().unwrap().starts_with("failed"),
        "{last}"
    );
    assert!(rig.state_file().unwrap()["warned"]["101"].is_i64());
}

#[tokio::test]
async fn max_cancels_defers_the_rest() {
    let rig = Rig::new("v0.0.45").await;
    {
        let mut s = rig.state.lock().unwrap();
        s.idle.push(("104", "ai_project", 0.0));
        s.jobs
            .insert(104, job(104, "ai_project", "gpu", "normal", "RUNNING"));
    }
    assert!(rig.run(&["--apply"]).await.ok);
    let r = rig.run(&["--apply", "--grace=0s", "--max-cancels=1"]).await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.action(101), Some(("cancel".into(), false)));
    assert_eq!(r.action(104), Some(("deferred".into(), false)));
    assert_eq!(rig.deletes().len(), 1);
    // The deferred job keeps its warning: the next run cancels it.
    let r = rig.run(&["--apply", "--grace=0s", "--max-cancels=1"]).await;
    assert_eq!(r.action(104), Some(("cancel".into(), false)));
    assert_eq!(rig.deletes()[1].0, "/slurm/v0.0.45/job/104");
}
