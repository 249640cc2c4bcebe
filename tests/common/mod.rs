//! Shared helpers for integration tests: a programmable mock slurmrestd on
//! loopback (hyper), and a scraper wired to it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use slurm_gpu_exporter::cluster::poller::{PollOptions, Poller};
use slurm_gpu_exporter::slurmrestd::client::{Client, ClientOptions, TokenSource};
use slurm_gpu_exporter::slurmrestd::ApiVersion;
use slurm_gpu_exporter::testkit::replay::{self, full, Body, Handler, Recording};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A body recorded from the live e2e rig (`tests/fixtures/live/<release>/slurmrestd/<version>/<file>`).
pub fn live_body(release: &str, version: ApiVersion, file: &str) -> Bytes {
    let p = fixtures()
        .join("live")
        .join(release)
        .join("slurmrestd")
        .join(version.as_str())
        .join(file);
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

pub fn recording(version: ApiVersion) -> Recording {
    Recording::from_dir(
        &fixtures().join("slurmrestd").join(version.as_str()),
        version,
    )
    .expect("fixture recording")
}

/// How the mock answers `/slurm/*/jobs`.
#[derive(Debug, Clone)]
pub enum JobsFault {
    None,
    Html,
    Truncated,
    Status(u16, &'static str, &'static str),
    Stall(Duration),
    Endless,
    SlowDrip(Duration),
}

#[derive(Debug)]
pub struct MockState {
    pub recordings: Vec<(ApiVersion, Recording)>,
    pub token: Option<String>,
    pub user_name: Option<String>,
    pub jobs_fault: JobsFault,
    /// Path and query of every request, with its token and user headers.
    pub requests: Vec<(String, Option<String>, Option<String>)>,
    /// When set, `/jobs`, `/jobs/state` and `/job/{id}` of its version are
    /// answered from this job list instead of the recording.
    pub live: Option<LiveJobs>,
    /// When set, `/nodes` of its version is answered from this node list.
    pub live_nodes: Option<LiveNodes>,
    /// When set, `/slurmdb/<its version>/associations/` is answered from
    /// this list, and POSTs to it are recorded and applied to it.
    pub assoc_db: Option<AssocDb>,
    /// Paths of the DELETEs that found their job.
    pub deletes: Vec<String>,
}

/// A writable association table, as slurmdbd behind slurmrestd.
#[derive(Debug)]
pub struct AssocDb {
    pub version: ApiVersion,
    /// The `/slurmdb/vX/associations/` answer.
    pub body: serde_json::Value,
    /// Every POST body, in order.
    pub posts: Vec<serde_json::Value>,
    /// Answer POSTs with this status and a Slurm error body instead.
    pub post_fault: Option<u16>,
}

impl AssocDb {
    pub fn from_recording(version: ApiVersion) -> AssocDb {
        let raw = std::fs::read(
            fixtures()
                .join("slurmrestd")
                .join(version.as_str())
                .join("slurmdb_associations.json"),
        )
        .unwrap();
        AssocDb {
            version,
            body: serde_json::from_slice(&raw).unwrap(),
            posts: Vec::new(),
            post_fault: None,
        }
    }

    fn path(&self) -> String {
        format!("/slurmdb/{}/associations/", self.version.as_str())
    }

    /// Like slurmdbd's modify: the `max` of a posted association replaces
    /// the GrpTRESMins list of the matching (cluster, account, user, partition).
    fn post(&mut self, body: &[u8]) -> Response<Body> {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return full(
                StatusCode::BAD_REQUEST,
                "application/json",
                r#"{"errors":[{"error_number":9000,"error":"bad JSON"}]}"#,
            );
        };
        self.posts.push(v.clone());
        if let Some(code) = self.post_fault {
            return full(
                StatusCode::from_u16(code).unwrap(),
                "application/json",
                r#"{"errors":[{"error_number":1,"error":"Unspecified error"}]}"#,
            );
        }
        let key = |a: &serde_json::Value| {
            let f = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            (f("cluster"), f("account"), f("user"), f("partition"))
        };
        for p in v["associations"].as_array().into_iter().flatten() {
            let minutes = p["max"]["tres"]["group"]["minutes"].clone();
            let Some(list) = self.body["associations"].as_array_mut() else {
                continue;
            };
            for a in list.iter_mut().filter(|a| key(a) == key(p)) {
                a["max"]["tres"]["group"]["minutes"] = minutes.clone();
            }
        }
        full(
            StatusCode::OK,
            "application/json",
            r#"{"meta":{},"errors":[],"warnings":[]}"#,
        )
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A job list tests change between polls, served like slurmctld does:
/// `/jobs/?update_time=T` answers "no change" (v0.0.38: 304 and no body;
/// later: 200, `"jobs": []` and a warning) when the list has not changed
/// since T, the whole list otherwise; `/jobs/state/` lists every job (array
/// tasks as `<job_id>_<task>`, a pending meta record once per task);
/// `/job/{id}` returns the records with that job id (all tasks for an array id).
#[derive(Debug, Clone)]
pub struct LiveJobs {
    pub version: ApiVersion,
    /// Job records as slurmrestd prints them (from the recording).
    pub jobs: Vec<serde_json::Value>,
    /// slurmctld's clock: starts at our clock, +1 per request.
    pub clock: i64,
    /// slurmctld's `last_job_update`.
    pub last_change: i64,
    /// `/jobs/state/` answers with this HTTP status.
    pub state_fault: Option<u16>,
    /// `/jobs/state/` answers 200 with truncated JSON.
    pub state_truncated: bool,
    /// `/job/{id}` answers with this HTTP status.
    pub job_fault: Option<u16>,
    /// `/jobs/` answers with this HTTP status.
    pub jobs_fault: Option<u16>,
    /// `/jobs/?update_time=` (only) answers with this status, content type
    /// and body (e.g. 24.11's 422 refusing the query).
    pub conditional_answer: Option<(u16, &'static str, Bytes)>,
}

fn num(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::Object(o) if o.get("set") != Some(&serde_json::Value::Bool(false)) => {
            o.get("number").and_then(|n| n.as_u64())
        }
        _ => None,
    }
}

impl LiveJobs {
    pub fn from_recording(version: ApiVersion) -> LiveJobs {
        let path = fixtures()
            .join("slurmrestd")
            .join(version.as_str())
            .join("slurm_jobs.json");
        let body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let now = unix_now();
        LiveJobs {
            version,
            jobs: body["jobs"].as_array().unwrap().clone(),
            clock: now,
            last_change: now - 3600,
            state_fault: None,
            state_truncated: false,
            job_fault: None,
            jobs_fault: None,
            conditional_answer: None,
        }
    }

    pub fn job_id(j: &serde_json::Value) -> u64 {
        num(&j["job_id"]).unwrap()
    }

    /// Marks the list changed now (as slurmctld bumps `last_job_update`).
    pub fn touch(&mut self) {
        self.last_change = self.clock.max(unix_now());
        self.clock = self.last_change + 1;
    }

    pub fn remove(&mut self, id: u64) {
        let before = self.jobs.len();
        self.jobs.retain(|j| Self::job_id(j) != id);
        assert_eq!(self.jobs.len() + 1, before, "job {id} was listed once");
        self.touch();
    }

    pub fn edit(&mut self, id: u64, f: impl FnOnce(&mut serde_json::Value)) {
        let j = self
            .jobs
            .iter_mut()
            .find(|j| Self::job_id(j) == id)
            .unwrap();
        f(j);
        self.touch();
    }

    /// Adds a copy of job `template` as job `new_id`.
    pub fn add_copy(&mut self, template: u64, new_id: u64) {
        let mut j = self
            .jobs
            .iter()
            .find(|j| Self::job_id(j) == template)
            .unwrap()
            .clone();
        j["job_id"] = serde_json::json!(new_id);
        self.jobs.push(j);
        self.touch();
    }

    fn state_ids(j: &serde_json::Value) -> Vec<String> {
        let id = Self::job_id(j);
        let array = num(&j["array_job_id"]).filter(|&a| a > 0);
        let task = num(&j["array_task_id"]);
        match (array, task) {
            (Some(_), Some(t)) => vec![format!("{id}_{t}")],
            (Some(a), None) => {
                let spec = j["array_task_string"].as_str().unwrap_or("");
                let spec = spec.split('%').next().unwrap_or("");
                let mut out = Vec::new();
                for part in spec.split(',').filter(|p| !p.is_empty()) {
                    let (lo, hi) = part.split_once('-').unwrap_or((part, part));
                    for t in lo.parse::<u64>().unwrap()..=hi.parse::<u64>().unwrap() {
                        out.push(format!("{a}_{t}"));
                    }
                }
                out
            }
            _ => vec![id.to_string()],
        }
    }

    fn body(&self, jobs: Vec<serde_json::Value>, warnings: serde_json::Value) -> String {
        if self.version == ApiVersion::V0038 {
            return serde_json::json!({"meta": {}, "errors": [], "jobs": jobs}).to_string();
        }
        let t = |n: i64| serde_json::json!({"set": true, "infinite": false, "number": n});
        serde_json::json!({
            "jobs": jobs,
            "last_backfill": t(self.clock - 5),
            "last_update": t(self.clock),
            "meta": {},
            "errors": [],
            "warnings": warnings,
        })
        .to_string()
    }

    /// Answers a request for `path` (with query), or `None` when not a jobs path.
    /// `DELETE /slurm/vX/job/{id}` as slurmctld answers it: the job leaves
    /// the list (a cancelled job goes when it ends; here at once), an id not
    /// listed is Slurm's "Invalid job id specified" (error 2017).
    fn cancel(&mut self, path: &str) -> Option<Response<Body>> {
        let rest = path.strip_prefix(&format!("/slurm/{}/job/", self.version.as_str()))?;
        let id: u64 = rest.trim_end_matches('/').parse().ok()?;
        self.clock += 1;
        if !self.jobs.iter().any(|j| Self::job_id(j) == id) {
            return Some(full(
                StatusCode::INTERNAL_SERVER_ERROR,
                "application/json",
                r#"{"errors":[{"error_number":2017,"error":"Invalid job id specified","description":"kill job error"}],"warnings":[]}"#,
            ));
        }
        self.remove(id);
        Some(full(
            StatusCode::OK,
            "application/json",
            r#"{"meta":{"plugin":{"type":"openapi/slurmctld"}},"errors":[],"warnings":[]}"#,
        ))
    }

    fn answer(&mut self, path_and_query: &str) -> Option<Response<Body>> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let rest = path.strip_prefix(&format!("/slurm/{}/", self.version.as_str()))?;
        let rest = rest.trim_end_matches('/');
        self.clock += 1;
        if rest == "jobs" {
            if let Some(code) = self.jobs_fault {
                return Some(full(
                    StatusCode::from_u16(code).unwrap(),
                    "application/json",
                    r#"{"errors":[{"error":"Unspecified error"}]}"#,
                ));
            }
            let since = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("update_time="))
                .map(|t| t.parse::<i64>().unwrap());
            if let (Some(_), Some((code, ct, b))) = (since, &self.conditional_answer) {
                return Some(full(StatusCode::from_u16(*code).unwrap(), ct, b.clone()));
            }
            if let Some(t) = since {
                // slurmctld: no change when last_job_update < update_time.
                if self.last_change < t {
                    if self.version == ApiVersion::V0038 {
                        return Some(full(StatusCode::NOT_MODIFIED, "application/json", ""));
                    }
                    let w = serde_json::json!([{
                        "description": format!("No job changes since update_time={t}"),
                        "source": "_op_handler_jobs"
                    }]);
                    return Some(full(
                        StatusCode::OK,
                        "application/json",
                        self.body(vec![], w),
                    ));
                }
            }
            let body = self.body(self.jobs.clone(), serde_json::json!([]));
            return Some(full(StatusCode::OK, "application/json", body));
        }
        if rest == "jobs/state" {
            if self.state_truncated {
                return Some(full(
                    StatusCode::OK,
                    "application/json",
                    r#"{"jobs":[{"job_id":"1","state":["RUNN"#,
                ));
            }
            if let Some(code) = self.state_fault {
                return Some(full(
                    StatusCode::from_u16(code).unwrap(),
                    "application/json",
                    r#"{"errors":[{"error":"Unspecified error"}]}"#,
                ));
            }
            let mut list = Vec::new();
            for j in &self.jobs {
                for id in Self::state_ids(j) {
                    list.push(serde_json::json!({"job_id": id, "state": j["job_state"].clone()}));
                }
            }
            let body = serde_json::json!({"jobs": list, "meta": {}, "errors": [], "warnings": []});
            return Some(full(StatusCode::OK, "application/json", body.to_string()));
        }
        if let Some(id) = rest.strip_prefix("job/") {
            if let Some(code) = self.job_fault {
                return Some(full(
                    StatusCode::from_u16(code).unwrap(),
                    "application/json",
                    r#"{"errors":[{"error":"Unspecified error"}]}"#,
                ));
            }
            let id: u64 = id.parse().ok()?;
            let jobs: Vec<_> = self
                .jobs
                .iter()
                .filter(|j| Self::job_id(j) == id || num(&j["array_job_id"]) == Some(id))
                .cloned()
                .collect();
            if jobs.is_empty() {
                return Some(full(
                    StatusCode::NOT_FOUND,
                    "application/json",
                    r#"{"errors":[{"error_number":2017,"error":"Invalid job id specified"}],"jobs":[]}"#,
                ));
            }
            return Some(full(
                StatusCode::OK,
                "application/json",
                self.body(jobs, serde_json::json!([])),
            ));
        }
        None
    }
}

/// A node list tests change between polls, answered as slurmrestd does to
/// `/nodes/?update_time=T` (slurm_load_node and then slurm_load_partitions,
/// both with T):
/// * no node changed since T: v0.0.38 304 with no body (seen live on
///   22.05); later versions the error of slurm_load_node's errno,
///   `SLURM_NO_CHANGE_IN_DATA` (1900), "Failure to query nodes", HTTP 500
///   (their source), or with `no_change_warning` 200, `"nodes": []` and a warning;
/// * nodes changed, partitions not: HTTP 500, `errno -1` "Unspecified
///   error" (the body recorded live on 22.05, `_err_nodes_update_time_partitions_unchanged.json`);
/// * both changed, or no T: the whole list.
#[derive(Debug, Clone)]
pub struct LiveNodes {
    pub version: ApiVersion,
    /// The recording's `/nodes` body, parsed; tests edit `nodes`.
    pub body: serde_json::Value,
    /// slurmctld's `last_node_update` and `last_part_update`.
    pub last_node_change: i64,
    pub last_part_change: i64,
    /// slurmctld's clock: starts at our clock, +1 per request.
    pub clock: i64,
    /// v0.0.39+: answer "no change" with 200 and a warning instead of an error.
    pub no_change_warning: bool,
    /// `/nodes/` answers with this HTTP status, whatever the query.
    pub fault: Option<u16>,
    /// `/nodes/` sends its headers and then nothing, for an hour.
    pub stall: bool,
    /// `/nodes/?update_time=` (only) answers with this status, content
    /// type and body: garbage where a node list or "no change" belongs.
    pub conditional_answer: Option<(u16, &'static str, Bytes)>,
}

impl LiveNodes {
    pub fn from_recording(version: ApiVersion) -> LiveNodes {
        let path = fixtures()
            .join("slurmrestd")
            .join(version.as_str())
            .join("slurm_nodes.json");
        let body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let now = unix_now();
        LiveNodes {
            version,
            body,
            last_node_change: now - 3600,
            last_part_change: now - 3600,
            clock: now,
            no_change_warning: false,
            fault: None,
            stall: false,
            conditional_answer: None,
        }
    }

    /// Changes node `i` with `f` and marks the node list changed now (not
    /// the partitions, as a node ping or a job start does).
    pub fn edit(&mut self, i: usize, f: impl FnOnce(&mut serde_json::Value)) {
        f(&mut self.body["nodes"][i]);
        self.last_node_change = self.clock.max(unix_now());
        self.clock = self.last_node_change + 1;
    }

    /// Marks the partitions changed now too.
    pub fn touch_partitions(&mut self) {
        self.last_part_change = self.clock.max(unix_now());
        self.clock = self.last_part_change + 1;
    }

    fn answer(&mut self, path_and_query: &str) -> Option<Response<Body>> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let rest = path.strip_prefix(&format!("/slurm/{}/", self.version.as_str()))?;
        if rest.trim_end_matches('/') != "nodes" {
            return None;
        }
        self.clock += 1;
        let json = |code: u16, body: String| {
            full(
                StatusCode::from_u16(code).unwrap(),
                "application/json",
                body,
            )
        };
        if let Some(code) = self.fault {
            return Some(json(
                code,
                r#"{"errors":[{"error":"Unspecified error"}]}"#.into(),
            ));
        }
        if self.stall {
            let mut r = Response::new(fed_body(|tx| {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    drop(tx);
                })
            }));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            return Some(r);
        }
        let mut body = self.body.clone();
        if self.version != ApiVersion::V0038 {
            body["last_update"] =
                serde_json::json!({"set": true, "infinite": false, "number": self.clock});
        }
        let since = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("update_time="))
            .map(|t| t.parse::<i64>().unwrap());
        if let (Some(_), Some((code, ct, b))) = (since, &self.conditional_answer) {
            return Some(full(StatusCode::from_u16(*code).unwrap(), ct, b.clone()));
        }
        if let Some(t) = since {
            if self.last_node_change < t {
                if self.version == ApiVersion::V0038 {
                    return Some(full(StatusCode::NOT_MODIFIED, "application/json", ""));
                }
                body["nodes"] = serde_json::json!([]);
                if self.no_change_warning {
                    body["warnings"] = serde_json::json!([{
                        "description": format!("No node changes since update_time={t}"),
                        "source": "_dump_nodes"
                    }]);
                    return Some(json(200, body.to_string()));
                }
                body["errors"] = serde_json::json!([{
                    "description": "Failure to query nodes",
                    "error_number": 1900,
                    "error": "Data has not changed since time specified",
                    "source": "_dump_nodes"
                }]);
                return Some(json(500, body.to_string()));
            }
            if self.last_part_change < t {
                let recorded = fixtures()
                    .join("slurmrestd/v0.0.38/_err_nodes_update_time_partitions_unchanged.json");
                return Some(json(500, std::fs::read_to_string(recorded).unwrap()));
            }
        }
        Some(json(200, body.to_string()))
    }
}

pub type Mock = Arc<Mutex<MockState>>;

pub fn mock(recordings: Vec<(ApiVersion, Recording)>) -> Mock {
    Arc::new(Mutex::new(MockState {
        recordings,
        token: None,
        user_name: None,
        jobs_fault: JobsFault::None,
        requests: Vec::new(),
        live: None,
        live_nodes: None,
        assoc_db: None,
        deletes: Vec::new(),
    }))
}

fn stream_body(
    s: impl futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync + 'static,
) -> Body {
    BodyExt::boxed(StreamBody::new(s))
}

struct ChunkStream {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl futures_core::Stream for ChunkStream {
    type Item = Result<Frame<Bytes>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A body fed by a task, for endless and slow-drip responses.
fn fed_body(
    chunks: impl FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> tokio::task::JoinHandle<()>,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    chunks(tx);
    stream_body(ChunkStream { rx })
}

pub fn handler(state: Mock) -> Handler {
    Arc::new(move |req: Request<Incoming>| {
        let state = state.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let path_and_query = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| path.clone());
            let token = req
                .headers()
                .get("X-SLURM-USER-TOKEN")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let user = req
                .headers()
                .get("X-SLURM-USER-NAME")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let method = req.method().clone();
            let posted = if method == http::Method::POST {
                req.into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default()
            } else {
                Bytes::new()
            };
            let (expected, fault, body) = {
                let mut s = state.lock().unwrap();
                if let Some(t) = s.token.clone() {
                    if s.assoc_db.is_some() && token.as_deref() != Some(t.as_str()) {
                        return full(
                            StatusCode::UNAUTHORIZED,
                            "text/plain",
                            "Authentication failure",
                        );
                    }
                }
                if s.assoc_db.as_ref().is_some_and(|db| path == db.path()) {
                    s.requests
                        .push((path_and_query.clone(), token.clone(), user.clone()));
                }
                if let Some(db) = s.assoc_db.as_mut() {
                    if path == db.path() {
                        if method == http::Method::POST {
                            return db.post(&posted);
                        }
                        return full(
                            StatusCode::OK,
                            "application/json",
                            serde_json::to_vec(&db.body).unwrap(),
                        );
                    }
                }
                s.requests
                    .push((path_and_query.clone(), token.clone(), user.clone()));
                if method == http::Method::DELETE {
                    if let Some(r) = s.live.as_mut().and_then(|l| l.cancel(&path)) {
                        s.deletes.push(path.clone());
                        return r;
                    }
                    return full(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "text/plain",
                        "Method not allowed",
                    );
                }
                if let Some(r) = s.live.as_mut().and_then(|l| l.answer(&path_and_query)) {
                    return r;
                }
                if let Some(r) = s
                    .live_nodes
                    .as_mut()
                    .and_then(|l| l.answer(&path_and_query))
                {
                    return r;
                }
                let body = s.recordings.iter().find_map(|(_, r)| r.get(&path).cloned());
                (s.token.clone(), s.jobs_fault.clone(), body)
            };
            if let Some(t) = expected {
                match token {
                    None => {
                        return full(
                            StatusCode::UNAUTHORIZED,
                            "text/plain",
                            "Authentication failure",
                        )
                    }
                    Some(given) if given != t => {
                        return full(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "application/json",
                            r#"{"errors":[{"error_number":1007,"error":"Protocol authentication error"}]}"#,
                        )
                    }
                    _ => {}
                }
            }
            let Some(body) = body else {
                return full(StatusCode::NOT_FOUND, "text/plain", "Unable to find path");
            };
            if !path.contains("/jobs") {
                return full(StatusCode::OK, "application/json", body);
            }
            match fault {
                JobsFault::None => full(StatusCode::OK, "application/json", body),
                JobsFault::Html => full(
                    StatusCode::OK,
                    "text/html",
                    "<html><body><h1>502 Bad Gateway</h1></body></html>",
                ),
                JobsFault::Truncated => full(
                    StatusCode::OK,
                    "application/json",
                    body.slice(..body.len() / 2),
                ),
                JobsFault::Status(code, ct, text) => {
                    full(StatusCode::from_u16(code).unwrap(), ct, text)
                }
                JobsFault::Stall(d) => {
                    tokio::time::sleep(d).await;
                    full(StatusCode::OK, "application/json", body)
                }
                JobsFault::Endless => {
                    let mut r = Response::new(fed_body(|tx| {
                        tokio::spawn(async move {
                            let _ = tx.send(Bytes::from_static(b"{\"jobs\":[")).await;
                            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
                            while tx.send(chunk.clone()).await.is_ok() {}
                        })
                    }));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    r
                }
                JobsFault::SlowDrip(every) => {
                    let mut r = Response::new(fed_body(move |tx| {
                        tokio::spawn(async move {
                            for b in body.iter() {
                                tokio::time::sleep(every).await;
                                if tx.send(Bytes::copy_from_slice(&[*b])).await.is_err() {
                                    return;
                                }
                            }
                        })
                    }));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    r
                }
            }
        })
    })
}

/// Starts the mock on a loopback TCP port and returns its URL.
pub async fn start_tcp(state: Mock) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(replay::serve_tcp(listener, handler(state)));
    format!("http://{addr}")
}

pub fn client(url: &str, token: TokenSource, timeout: Duration, max: u64) -> Arc<Client> {
    Arc::new(
        Client::new(ClientOptions {
            url: url.to_string(),
            token,
            user_name: None,
            timeout,
            max_body_bytes: max,
            ca_file: None,
        })
        .unwrap(),
    )
}

pub fn poller(client: Arc<Client>) -> Poller {
    Poller::new(client, PollOptions::default())
}

/// What one run of the exporter binary printed.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the exporter binary with `args` (without `SLURM_JWT`) off the async
/// runtime, and checks that `secret` appears nowhere in what it printed.
pub async fn run_exporter(args: Vec<String>, secret: &str) -> Run {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_slurm-gpu-exporter"))
            .args(&args)
            .env_remove("SLURM_JWT")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let r = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !r.stdout.contains(secret) && !r.stderr.contains(secret),
        "secret leaked:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    r
}
