//! The demo's living Slurm 25.11 cluster (API v0.0.44), served over HTTP as
//! slurmrestd would serve it.
//!
//! It starts from the bundled recordings, their times shifted so that the
//! recording is "now", and then moves on under a [`SimClock`] that may run
//! faster than real time (`demo --speed`): running jobs end (COMPLETED,
//! some FAILED or TIMEOUT), pending jobs start when node `vm` has room,
//! array tasks follow their throttle, held jobs stay held, new jobs are
//! submitted from the recorded ones, finished jobs leave `/jobs` after
//! `MinJobAge` and stay in slurmdbd. Every later state is derived from a
//! recorded record of the same job shape: only ids, states, times, reasons
//! and allocations change.
//!
//! The HTTP side answers like slurmctld through slurmrestd does, including
//! the conditional and incremental paths the poller uses: `/jobs?update_time=`
//! (an empty list with a warning when nothing changed), `/jobs/state`,
//! `/job/{id}`, `/nodes?update_time=` (error 1900 when no node changed; the
//! "partitions unchanged" error when only nodes did), `/slurmdb/v0.0.44/jobs`
//! with a time window, `/slurmdb/v0.0.44/accounts`, and the limits in
//! `/slurmdb/v0.0.44/associations` and `/slurmdb/v0.0.44/qos` (recorded; see
//! [`demo_associations`] for the one limit the demo adds).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use http::StatusCode;
use serde_json::{json, Value};

use crate::testkit::replay::{full, Body, Handler};

/// The recording's own "now": `last_update` of its `/jobs`.
const RECORDED_AT: i64 = 1_795_374_636;
/// Times within this distance of the recording are shifted with it.
const SHIFT_WINDOW: i64 = 60 * 86_400;
/// Finished jobs stay in `/jobs` this long (the rig's `MinJobAge=3600`).
const MIN_JOB_AGE: i64 = 3600;
/// A new job is considered for submission this often (sim seconds).
const SUBMIT_EVERY: i64 = 15 * 60;
/// Eligible pending GPU jobs the submitter keeps in the queue.
const GPU_QUEUE_DEPTH: usize = 3;
/// slurmdbd keeps at most this many finished jobs (oldest dropped).
const DB_MAX_JOBS: usize = 20_000;
/// One `/diag` request in this many fails as a busy slurmctld's does.
const DIAG_FAIL_EVERY: u64 = 7;
/// Upper bound of events processed per request, so no speed can hang a request.
const MAX_EVENTS_PER_STEP: usize = 100_000;

/// The node the jobs run on and its size (from the recorded `/nodes`).
pub const NODE: &str = "vm";
const NODE_CPUS: u64 = 64;
const NODE_MEM_MB: u64 = 256_000;
pub const NODE_GPUS: usize = 8;

const V: &str = "v0.0.44";

macro_rules! bundled {
    ($file:literal) => {
        include_bytes!(concat!("../../tests/fixtures/slurmrestd/v0.0.44/", $file))
    };
}

/// Simulated time: Unix seconds, starting at the real clock, advancing
/// `speed` times faster.
#[derive(Debug, Clone)]
pub struct SimClock {
    start_unix: f64,
    started: Instant,
    speed: f64,
}

impl SimClock {
    pub fn new(speed: f64) -> SimClock {
        let start_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        SimClock {
            start_unix,
            started: Instant::now(),
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        }
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    pub fn now(&self) -> i64 {
        (self.start_unix + self.started.elapsed().as_secs_f64() * self.speed) as i64
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting; `held` jobs (user/admin hold, QOS limit) never start.
    Pending {
        held: bool,
    },
    Running,
    Finished,
}

/// Resources a job asks for, from its `tres_req_str`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Req {
    cpus: u64,
    mem_mb: u64,
    gpus: usize,
    billing: f64,
}

fn parse_req(s: &str) -> Req {
    let mut r = Req::default();
    for kv in s.split(',') {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        match k {
            "cpu" => r.cpus = v.parse().unwrap_or(0),
            "mem" => {
                let (num, mult) = match v.as_bytes().last() {
                    Some(b'G') => (&v[..v.len() - 1], 1024.0),
                    Some(b'M') => (&v[..v.len() - 1], 1.0),
                    Some(b'T') => (&v[..v.len() - 1], 1024.0 * 1024.0),
                    _ => (v, 1.0),
                };
                r.mem_mb = (num.parse::<f64>().unwrap_or(0.0) * mult) as u64;
            }
            "gres/gpu" => r.gpus = v.parse().unwrap_or(0),
            "billing" => r.billing = v.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    r
}

#[derive(Debug, Clone)]
struct SimJob {
    id: u64,
    /// The record as `/slurm/v0.0.44/jobs` prints it.
    rec: Value,
    phase: Phase,
    req: Req,
    gpus: Vec<usize>,
    start: i64,
    /// Running: when it will end; finished: when it ended.
    end: i64,
    /// Final state when it ends on its own.
    outcome: &'static str,
    /// Job whose end releases this one (`afterok`).
    after: Option<u64>,
    /// Not before this time (`--begin`).
    begin: i64,
    /// The array meta record: tasks still to start (lo, hi), max running.
    array: Option<(u32, u32, usize)>,
    /// Array id of a task record.
    array_of: Option<u64>,
}

impl SimJob {
    /// A newly submitted job (or array task) waiting to start.
    fn pending(
        id: u64,
        outcome: &'static str,
        rec: Value,
        req: Req,
        array_of: Option<u64>,
    ) -> SimJob {
        SimJob {
            id,
            outcome,
            rec,
            phase: Phase::Pending { held: false },
            req,
            gpus: Vec::new(),
            start: 0,
            end: 0,
            after: None,
            begin: 0,
            array: None,
            array_of,
        }
    }
}

/// A job holding GPUs of node `vm`, for the demo node.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuJob {
    pub job_id: u64,
    pub name: String,
    pub user: String,
    pub account: String,
    pub gpus: Vec<usize>,
    pub start: i64,
}

struct State {
    now: i64,
    next_id: u64,
    jobs: Vec<SimJob>,
    /// slurmdbd's job records (recorded history and jobs finished since).
    db: Vec<Value>,
    /// Record templates by job name: `/jobs` and slurmdbd shapes.
    templates: BTreeMap<String, Value>,
    db_templates: BTreeMap<String, Value>,
    /// Job resources of a running recorded job, patched per job.
    resources_template: Value,
    next_submit: i64,
    submit_cycle: usize,
    last_job_change: i64,
    last_node_change: i64,
    last_part_change: i64,
    nodes: Value,
    partitions: Value,
    shares: Value,
    diag: Value,
    ping: Value,
    accounts: Value,
    associations: Value,
    qos: Value,
    requests: u64,
    diag_requests: u64,
}

/// The living cluster, shared by the HTTP handler and the demo node.
#[derive(Clone)]
pub struct Cluster {
    state: Arc<Mutex<State>>,
    clock: SimClock,
}

fn parse(bytes: &[u8]) -> Value {
    // Bundled at build time: a parse failure is a build defect, caught by the tests.
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// Shifts every time-like number (plain or `{set, number}`) within
/// [`SHIFT_WINDOW`] of the recording by `delta`.
fn shift_times(v: &mut Value, delta: i64) {
    let near = |n: i64| (n - RECORDED_AT).abs() < SHIFT_WINDOW;
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64().filter(|&i| near(i)) {
                *v = json!(i + delta);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| shift_times(x, delta)),
        Value::Object(o) => o.values_mut().for_each(|x| shift_times(x, delta)),
        _ => {}
    }
}

fn number(n: i64) -> Value {
    json!({"set": true, "infinite": false, "number": n})
}

fn unset() -> Value {
    json!({"set": false, "infinite": false, "number": 0})
}

fn num(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::Object(o) if o.get("set") != Some(&Value::Bool(false)) => {
            o.get("number").and_then(Value::as_i64)
        }
        _ => None,
    }
}

fn text(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// A deterministic pseudo-random number in [0, 1) from a job id.
pub fn unit(id: u64, salt: u64) -> f64 {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// `0-1,4` style index list.
fn idx_list(gpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < gpus.len() {
        let mut j = i;
        while j + 1 < gpus.len() && gpus[j + 1] == gpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            gpus[i].to_string()
        } else {
            format!("{}-{}", gpus[i], gpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

impl Cluster {
    /// The recorded cluster, its clock at `clock.now()`.
    pub fn new(clock: SimClock) -> Cluster {
        let now = clock.now();
        let delta = now - RECORDED_AT;
        let mut jobs_body = parse(bundled!("slurm_jobs.json"));
        shift_times(&mut jobs_body, delta);
        let mut db = parse(bundled!("slurmdb_jobs.json"));
        shift_times(&mut db, delta);
        let mut nodes = parse(bundled!("slurm_nodes.json"));
        shift_times(&mut nodes, delta);
        let mut diag = parse(bundled!("slurm_diag.json"));
        shift_times(&mut diag, delta);
        let mut partitions = parse(bundled!("slurm_partitions.json"));
        shift_times(&mut partitions, delta);

        let records: Vec<Value> = jobs_body["jobs"].as_array().cloned().unwrap_or_default();
        let mut templates = BTreeMap::new();
        let mut resources_template = Value::Null;
        for r in &records {
            let name = text(r, "name");
            let running = r["job_state"][0] == "RUNNING";
            if running && r["job_resources"].is_object() && resources_template.is_null() {
                resources_template = r["job_resources"].clone();
            }
            // Prefer the latest record of each name (the current run).
            templates.insert(name, r.clone());
        }
        let db_records: Vec<Value> = db["jobs"].as_array().cloned().unwrap_or_default();
        let mut db_templates = BTreeMap::new();
        for r in &db_records {
            db_templates.insert(text(r, "name"), r.clone());
        }
        // slurmdbd keeps only finished jobs here; running ones come back when they end.
        let db_finished: Vec<Value> = db_records
            .into_iter()
            .filter(|r| num(&r["time"]["end"]).unwrap_or(0) > 0)
            .collect();

        let mut jobs = Vec::new();
        let mut next_id = 0;
        for rec in records {
            let id = num(&rec["job_id"]).unwrap_or(0) as u64;
            next_id = next_id.max(id + 1);
            let state = rec["job_state"][0].as_str().unwrap_or("").to_string();
            let reason = text(&rec, "state_reason");
            let req = parse_req(&text(&rec, "tres_req_str"));
            let gpus = rec["gres_detail"][0]
                .as_str()
                .and_then(|g| g.split("IDX:").nth(1))
                .and_then(|l| crate::slurm_text::gres::parse_indices(l.trim_end_matches(')')))
                .unwrap_or_default()
                .into_iter()
                .map(|g| g as usize)
                .collect();
            let start = num(&rec["start_time"]).unwrap_or(0);
            let phase = match state.as_str() {
                "PENDING" => Phase::Pending {
                    held: matches!(
                        reason.as_str(),
                        "JobHeldUser" | "JobHeldAdmin" | "QOSMaxGRESPerUser"
                    ),
                },
                "RUNNING" => Phase::Running,
                _ => Phase::Finished,
            };
            let end = match phase {
                Phase::Running => start + runtime(id, &rec),
                _ => num(&rec["end_time"]).unwrap_or(now),
            };
            let after = text(&rec, "dependency")
                .strip_prefix("afterok:")
                .and_then(|d| d.split('(').next())
                .and_then(|d| d.parse().ok());
            let begin = if reason == "BeginTime" {
                num(&rec["eligible_time"]).unwrap_or(0)
            } else {
                0
            };
            let array = (state == "PENDING" && reason == "JobArrayTaskLimit")
                .then(|| {
                    let s = text(&rec, "array_task_string");
                    let (range, max) = s.split_once('%').unwrap_or((s.as_str(), "3"));
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    Some((lo.parse().ok()?, hi.parse().ok()?, max.parse().ok()?))
                })
                .flatten();
            let array_of = num(&rec["array_job_id"])
                .filter(|&a| a > 0 && num(&rec["array_task_id"]).is_some())
                .map(|a| a as u64);
            jobs.push(SimJob {
                id,
                outcome: outcome(id, &text(&rec, "name")),
                rec,
                phase,
                req,
                gpus,
                start,
                end,
                after,
                begin,
                array,
                array_of,
            });
        }
        let state = State {
            now,
            next_id,
            jobs,
            db: db_finished,
            templates,
            db_templates,
            resources_template,
            next_submit: now + SUBMIT_EVERY,
            submit_cycle: 0,
            last_job_change: now,
            last_node_change: now,
            last_part_change: now - 3600,
            nodes,
            partitions,
            shares: parse(bundled!("slurm_shares.json")),
            diag,
            ping: parse(bundled!("slurm_ping.json")),
            accounts: parse(bundled!("slurmdb_accounts.json")),
            associations: demo_associations(parse(bundled!("slurmdb_associations.json"))),
            qos: parse(bundled!("slurmdb_qos.json")),
            requests: 0,
            diag_requests: 0,
        };
        let c = Cluster {
            state: Arc::new(Mutex::new(state)),
            clock,
        };
        c.lock().update_node(now);
        c
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Moves the cluster to the clock's now and returns the jobs holding GPUs.
    pub fn gpu_jobs(&self) -> Vec<GpuJob> {
        let mut st = self.lock();
        st.advance(self.clock.now());
        st.jobs
            .iter()
            .filter(|j| j.phase == Phase::Running && !j.gpus.is_empty())
            .map(|j| GpuJob {
                job_id: j.id,
                name: text(&j.rec, "name"),
                user: text(&j.rec, "user_name"),
                account: text(&j.rec, "account"),
                gpus: j.gpus.clone(),
                start: j.start,
            })
            .collect()
    }

    /// Jobs listed in `/jobs` by state word, for tests.
    pub fn job_states(&self) -> BTreeMap<String, usize> {
        let mut st = self.lock();
        st.advance(self.clock.now());
        let mut out = BTreeMap::new();
        for j in &st.jobs {
            let s = j.rec["job_state"][0].as_str().unwrap_or("").to_string();
            *out.entry(s).or_default() += 1;
        }
        out
    }

    /// The slurmrestd this cluster answers as.
    pub fn handler(&self) -> Handler {
        let me = self.clone();
        Arc::new(move |req: http::Request<hyper::body::Incoming>| {
            let me = me.clone();
            Box::pin(async move {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                me.answer(&pq)
            })
        })
    }

    /// Answers one GET (path with query) at the clock's now.
    pub fn answer(&self, path_and_query: &str) -> http::Response<Body> {
        let now = self.clock.now();
        let mut st = self.lock();
        st.advance(now);
        st.requests += 1;
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let path = path.trim_end_matches('/');
        let since = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("update_time="))
            .and_then(|t| t.parse::<i64>().ok());
        let ok = |v: &Value| full(StatusCode::OK, "application/json", v.to_string());
        let slurm = format!("/slurm/{V}/");
        let slurmdb = format!("/slurmdb/{V}/");
        if let Some(rest) = path.strip_prefix(&slurm) {
            st.count_rpc(rest);
            if rest == "diag" {
                st.diag_requests += 1;
                // slurmctld busy now and then: the scraper keeps the last
                // good data (stale) and counts the error.
                if st.diag_requests % DIAG_FAIL_EVERY == 0 {
                    return full(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "application/json",
                        r#"{"errors":[{"description":"slurm_get_statistics() failed","error_number":5004,"error":"Socket timed out on send/recv operation","source":"slurm_get_statistics"}],"statistics":{}}"#,
                    );
                }
            }
            return match rest {
                "ping" => ok(&st.ping),
                "jobs" => st.jobs_answer(since),
                "jobs/state" => ok(&st.jobs_state()),
                "nodes" => st.nodes_answer(since),
                "partitions" => {
                    let mut b = st.partitions.clone();
                    b["last_update"] = number(st.last_part_change);
                    ok(&b)
                }
                "shares" => ok(&st.shares),
                "diag" => ok(&st.diag),
                _ => match rest
                    .strip_prefix("job/")
                    .and_then(|i| i.parse::<u64>().ok())
                {
                    Some(id) => st.job_answer(id),
                    None => not_found(),
                },
            };
        }
        if let Some(rest) = path.strip_prefix(&slurmdb) {
            return match rest {
                "jobs" => {
                    let param = |k: &str| {
                        query
                            .split('&')
                            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                            .and_then(|t| t.parse::<i64>().ok())
                    };
                    let from = param("start_time").unwrap_or(0);
                    let to = param("end_time").unwrap_or(i64::MAX);
                    let jobs: Vec<&Value> = st
                        .db
                        .iter()
                        .filter(|r| {
                            let s = num(&r["time"]["start"]).unwrap_or(0);
                            let e = num(&r["time"]["end"]).unwrap_or(0);
                            s <= to && e >= from
                        })
                        .collect();
                    ok(&json!({"jobs": jobs, "meta": {}, "errors": [], "warnings": []}))
                }
                "accounts" => ok(&st.accounts),
                "associations" => ok(&st.associations),
                "qos" => ok(&st.qos),
                _ => not_found(),
            };
        }
        not_found()
    }
}

/// GPU-minutes of the `GrpTRESMins` the demo gives `ai_project`.
pub const DEMO_GRP_GPU_MINUTES: u64 = 6000;

/// The recorded associations (ai_project has `GrpTRES=gres/gpu=16`), plus a
/// `GrpTRESMins=gres/gpu=6000` on ai_project that the rig did not have, so
/// the dashboards' quota and runway panels have a TRES-minutes limit to show.
fn demo_associations(mut body: Value) -> Value {
    if let Some(list) = body["associations"].as_array_mut() {
        for a in list
            .iter_mut()
            .filter(|a| a["account"] == "ai_project" && a["user"].as_str().unwrap_or("").is_empty())
        {
            a["max"]["tres"]["group"]["minutes"] = json!([
                {"type": "gres", "name": "gpu", "id": 1001, "count": DEMO_GRP_GPU_MINUTES}
            ]);
        }
    }
    body
}

fn not_found() -> http::Response<Body> {
    full(StatusCode::NOT_FOUND, "text/plain", "Unable to find path")
}

/// How long a job runs (sim seconds): between a third and most of its time
/// limit; TIMEOUT jobs run exactly their limit, FAILED ones a few minutes.
fn runtime(id: u64, rec: &Value) -> i64 {
    let limit = num(&rec["time_limit"]).unwrap_or(60).max(1) * 60;
    match outcome(id, &text(rec, "name")) {
        "TIMEOUT" => limit,
        "FAILED" => 120 + (unit(id, 3) * 600.0) as i64,
        _ => (limit as f64 * (0.35 + 0.55 * unit(id, 1))) as i64,
    }
}

/// How a job ends on its own: mostly COMPLETED, one in nine FAILED and one
/// in thirteen TIMEOUT, by job id (the recorded jobs keep their fate).
fn outcome(id: u64, name: &str) -> &'static str {
    match name {
        "failed_exit1" => "FAILED",
        "timeout_job" => "TIMEOUT",
        _ if id % 9 == 4 => "FAILED",
        _ if id % 13 == 6 => "TIMEOUT",
        _ => "COMPLETED",
    }
}

/// Job templates the submitter cycles through: GPU jobs, by recorded name.
const GPU_SUBMISSIONS: [&str; 6] = [
    "train_llm",
    "finetune_bert",
    "cfd_gpu",
    "md_sim",
    "big_train",
    "eval_after_train",
];

impl State {
    /// Processes every event up to `t` in order: job ends, submissions, starts.
    fn advance(&mut self, t: i64) {
        let mut steps = 0;
        while steps < MAX_EVENTS_PER_STEP {
            steps += 1;
            let next_end = self
                .jobs
                .iter()
                .filter(|j| j.phase == Phase::Running)
                .map(|j| j.end)
                .min()
                .unwrap_or(i64::MAX);
            let ev = next_end.min(self.next_submit);
            if ev > t {
                break;
            }
            let ev = ev.max(self.now);
            self.now = ev;
            if next_end <= ev {
                self.end_jobs(ev);
            }
            if self.next_submit <= ev {
                self.submit(ev);
                self.next_submit += SUBMIT_EVERY;
            }
            self.schedule(ev);
        }
        if steps >= MAX_EVENTS_PER_STEP {
            // Far behind (a suspended process): skip ahead rather than replay.
            self.next_submit = self.next_submit.max(t + SUBMIT_EVERY);
        }
        self.now = self.now.max(t);
        self.schedule(self.now);
        let before = self.jobs.len();
        let now = self.now;
        self.jobs
            .retain(|j| j.phase != Phase::Finished || now - j.end < MIN_JOB_AGE);
        if self.jobs.len() != before {
            self.last_job_change = now;
        }
    }

    fn end_jobs(&mut self, t: i64) {
        let mut ended = Vec::new();
        for j in self.jobs.iter_mut() {
            if j.phase != Phase::Running || j.end > t {
                continue;
            }
            j.phase = Phase::Finished;
            let state = j.outcome;
            j.rec["job_state"] = json!([state]);
            j.rec["end_time"] = number(j.end);
            j.rec["state_reason"] = json!(if state == "TIMEOUT" {
                "TimeLimit"
            } else {
                "None"
            });
            if state == "FAILED" {
                j.rec["exit_code"]["status"] = json!(["ERROR"]);
                j.rec["exit_code"]["return_code"] = number(1);
                j.rec["derived_exit_code"]["status"] = json!(["ERROR"]);
                j.rec["derived_exit_code"]["return_code"] = number(1);
            }
            ended.push(j.clone());
        }
        for j in ended {
            self.bump_diag(if j.outcome == "FAILED" {
                "jobs_failed"
            } else {
                "jobs_completed"
            });
            self.record_in_db(&j);
        }
        self.last_job_change = t;
        self.update_node(t);
    }

    /// The slurmdbd record of a finished job, from the recorded record of its name.
    fn record_in_db(&mut self, j: &SimJob) {
        let name = text(&j.rec, "name");
        let Some(mut r) = self.db_templates.get(&name).cloned() else {
            return;
        };
        r["job_id"] = json!(j.id);
        r["time"]["start"] = json!(j.start);
        r["time"]["end"] = json!(j.end);
        r["time"]["elapsed"] = json!(j.end - j.start);
        r["time"]["submission"] = json!(num(&j.rec["submit_time"]).unwrap_or(j.start));
        r["time"]["eligible"] = json!(num(&j.rec["eligible_time"]).unwrap_or(j.start));
        r["state"]["current"] = json!([j.outcome]);
        r["exit_code"] = j.rec["exit_code"].clone();
        r["nodes"] = json!(NODE);
        if let Some(a) = j.array_of {
            r["array"]["job_id"] = json!(a);
            r["array"]["task_id"] = j.rec["array_task_id"].clone();
        }
        self.db.push(r);
        if self.db.len() > DB_MAX_JOBS {
            let drop = self.db.len() - DB_MAX_JOBS;
            self.db.drain(..drop);
        }
    }

    /// Keeps a few eligible GPU jobs queued, and a CPU solver when none is.
    fn submit(&mut self, t: i64) {
        let queued_gpu = self
            .jobs
            .iter()
            .filter(|j| {
                matches!(j.phase, Phase::Pending { held: false })
                    && j.req.gpus > 0
                    && j.req.gpus < NODE_GPUS
            })
            .count();
        if queued_gpu < GPU_QUEUE_DEPTH {
            let name = GPU_SUBMISSIONS[self.submit_cycle % GPU_SUBMISSIONS.len()];
            self.submit_cycle += 1;
            self.new_job(name, t);
        }
        let solver = self
            .jobs
            .iter()
            .any(|j| text(&j.rec, "name") == "cpu_solver" && j.phase != Phase::Finished);
        if !solver {
            self.new_job("cpu_solver", t);
        }
    }

    fn new_job(&mut self, name: &str, t: i64) {
        let Some(mut rec) = self.templates.get(name).cloned() else {
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        rec["job_id"] = json!(id);
        rec["step_id"]["job_id"] = number(id as i64);
        rec["array_job_id"] = number(0);
        rec["array_task_id"] = unset();
        rec["array_task_string"] = json!("");
        rec["job_state"] = json!(["PENDING"]);
        rec["state_reason"] = json!("Priority");
        rec["dependency"] = json!("");
        for k in ["submit_time", "eligible_time", "accrue_time"] {
            rec[k] = number(t);
        }
        rec["start_time"] = number(0);
        rec["end_time"] = number(0);
        rec["job_resources"] = Value::Null;
        rec["gres_detail"] = json!([]);
        rec["tres_alloc_str"] = json!("");
        rec["nodes"] = json!("");
        rec["batch_host"] = json!("");
        rec["billable_tres"] = unset();
        rec["exit_code"]["status"] = json!(["SUCCESS"]);
        rec["exit_code"]["return_code"] = number(0);
        rec["stdout_expanded"] = json!(format!("/var/tmp/slurm25/jobout/{name}-{id}.out"));
        let req = parse_req(&text(&rec, "tres_req_str"));
        self.jobs
            .push(SimJob::pending(id, outcome(id, name), rec, req, None));
        self.bump_diag("jobs_submitted");
        self.last_job_change = t;
    }

    fn used(&self) -> (u64, u64, [bool; NODE_GPUS]) {
        let mut cpus = 0;
        let mut mem = 0;
        let mut gpus = [false; NODE_GPUS];
        for j in self.jobs.iter().filter(|j| j.phase == Phase::Running) {
            cpus += j.req.cpus;
            mem += j.req.mem_mb;
            for &g in &j.gpus {
                if let Some(x) = gpus.get_mut(g) {
                    *x = true;
                }
            }
        }
        (cpus, mem, gpus)
    }

    /// Starts what fits, by priority; the first job that does not fit waits
    /// for `Resources`, the others behind it for `Priority`.
    fn schedule(&mut self, t: i64) {
        let live: Vec<u64> = self
            .jobs
            .iter()
            .filter(|j| j.phase != Phase::Finished)
            .map(|j| j.id)
            .collect();
        let mut order: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| matches!(self.jobs[i].phase, Phase::Pending { held: false }))
            .collect();
        order.sort_by_key(|&i| {
            let j = &self.jobs[i];
            (-num(&j.rec["priority"]).unwrap_or(0), j.id)
        });
        let mut blocked = false;
        let mut changed = false;
        for i in order {
            let (cpus, mem, gpus) = self.used();
            let j = &self.jobs[i];
            // Dependency: released when the job it waits for has ended.
            if j.after.is_some_and(|dep| live.contains(&dep)) {
                continue;
            }
            if j.begin > t {
                continue;
            }
            if j.array.is_some() {
                changed |= self.start_array_tasks(i, t);
                continue;
            }
            let free: Vec<usize> = (0..NODE_GPUS).filter(|&g| !gpus[g]).collect();
            let fits = cpus + j.req.cpus <= NODE_CPUS
                && mem + j.req.mem_mb <= NODE_MEM_MB
                && free.len() >= j.req.gpus;
            if fits {
                let take = free[..j.req.gpus].to_vec();
                self.start(i, t, take);
                changed = true;
            } else {
                let reason = if blocked { "Priority" } else { "Resources" };
                blocked = true;
                let j = &mut self.jobs[i];
                if j.rec["state_reason"] != reason {
                    j.rec["state_reason"] = json!(reason);
                    changed = true;
                }
            }
        }
        if changed {
            self.last_job_change = t;
            self.update_node(t);
        }
    }

    fn start(&mut self, i: usize, t: i64, gpus: Vec<usize>) {
        let resources = self.resources_template.clone();
        let j = &mut self.jobs[i];
        j.phase = Phase::Running;
        j.start = t;
        j.end = t + runtime(j.id, &j.rec);
        let limit = num(&j.rec["time_limit"]).unwrap_or(60) * 60;
        j.rec["job_state"] = json!(["RUNNING"]);
        j.rec["state_reason"] = json!("None");
        j.rec["start_time"] = number(t);
        j.rec["end_time"] = number(t + limit);
        j.rec["nodes"] = json!(NODE);
        j.rec["batch_host"] = json!(NODE);
        j.rec["scheduled_nodes"] = json!("");
        j.rec["dependency"] = json!("");
        j.rec["tres_alloc_str"] = j.rec["tres_req_str"].clone();
        j.rec["billable_tres"] = json!({"set": true, "infinite": false, "number": j.req.billing});
        j.rec["gres_detail"] = if gpus.is_empty() {
            json!([])
        } else {
            json!([format!("gpu:h100:{}(IDX:{})", gpus.len(), idx_list(&gpus))])
        };
        let mut res = resources;
        if let Some(o) = res.as_object_mut() {
            o.insert("cpus".into(), json!(j.req.cpus));
        }
        if let Some(a) = res.pointer_mut("/nodes/allocation/0/cpus/count") {
            *a = json!(j.req.cpus);
        }
        if let Some(a) = res.pointer_mut("/nodes/allocation/0/memory/allocated") {
            *a = json!(j.req.mem_mb);
        }
        j.rec["job_resources"] = res;
        j.gpus = gpus;
        self.bump_diag("jobs_started");
    }

    /// Starts the next tasks of a throttled array while they fit; returns
    /// whether any started.
    fn start_array_tasks(&mut self, meta: usize, t: i64) -> bool {
        let Some((mut lo, hi, max)) = self.jobs[meta].array else {
            return false;
        };
        let array_id = self.jobs[meta].id;
        let template = self
            .jobs
            .iter()
            .find(|j| j.array_of == Some(array_id))
            .map(|j| j.rec.clone())
            .or_else(|| {
                self.templates
                    .get(&text(&self.jobs[meta].rec, "name"))
                    .cloned()
            });
        let Some(template) = template else {
            return false;
        };
        let req = self.jobs[meta].req;
        let mut started = false;
        loop {
            let running = self
                .jobs
                .iter()
                .filter(|j| j.array_of == Some(array_id) && j.phase == Phase::Running)
                .count();
            let (cpus, mem, _) = self.used();
            if lo > hi
                || running >= max
                || cpus + req.cpus > NODE_CPUS
                || mem + req.mem_mb > NODE_MEM_MB
            {
                break;
            }
            let id = self.next_id;
            self.next_id += 1;
            let mut rec = template.clone();
            rec["job_id"] = json!(id);
            rec["step_id"]["job_id"] = number(id as i64);
            rec["array_job_id"] = number(array_id as i64);
            rec["array_task_id"] = number(lo as i64);
            rec["array_task_string"] = json!("");
            self.jobs
                .push(SimJob::pending(id, "COMPLETED", rec, req, Some(array_id)));
            let i = self.jobs.len() - 1;
            self.start(i, t, Vec::new());
            lo += 1;
            started = true;
        }
        if started {
            if lo > hi {
                // Every task started: the meta record goes (after this
                // scheduling pass, which holds indices into the list).
                self.jobs[meta].array = Some((lo, hi, max));
                self.jobs[meta].phase = Phase::Finished;
                self.jobs[meta].end = i64::MIN / 2;
            } else {
                self.jobs[meta].array = Some((lo, hi, max));
                self.jobs[meta].rec["array_task_string"] = json!(format!("{lo}-{hi}%{max}"));
            }
        }
        started
    }

    /// Node `vm`'s allocation as slurmctld reports it.
    fn update_node(&mut self, t: i64) {
        let (cpus, mem, gpus) = self.used();
        let held: Vec<usize> = (0..NODE_GPUS).filter(|&g| gpus[g]).collect();
        let Some(nodes) = self.nodes["nodes"].as_array_mut() else {
            return;
        };
        let Some(vm) = nodes.iter_mut().find(|n| n["name"] == NODE) else {
            return;
        };
        let state = if cpus == 0 && held.is_empty() {
            "IDLE"
        } else if cpus >= NODE_CPUS || held.len() >= NODE_GPUS {
            "ALLOCATED"
        } else {
            "MIXED"
        };
        let changed = vm["alloc_cpus"] != json!(cpus)
            || vm["alloc_memory"] != json!(mem)
            || vm["state"][0] != state;
        vm["alloc_cpus"] = json!(cpus);
        vm["alloc_idle_cpus"] = json!(NODE_CPUS.saturating_sub(cpus));
        vm["alloc_memory"] = json!(mem);
        vm["state"] = json!([state]);
        vm["gres_used"] = json!(if held.is_empty() {
            "gpu:h100:0(IDX:N/A)".to_string()
        } else {
            format!("gpu:h100:{}(IDX:{})", held.len(), idx_list(&held))
        });
        vm["tres_used"] = json!(format!("cpu={cpus},mem={mem}M,gres/gpu={}", held.len()));
        if changed {
            self.last_node_change = t;
        }
    }

    fn bump_diag(&mut self, field: &str) {
        let s = &mut self.diag["statistics"];
        if let Some(n) = s[field].as_i64() {
            s[field] = json!(n + 1);
        }
    }

    /// Each request is an RPC to slurmctld: count it in `/diag`'s statistics.
    fn count_rpc(&mut self, rest: &str) {
        let rpc = match rest {
            "jobs" | "jobs/state" => "REQUEST_JOB_INFO",
            "nodes" => "REQUEST_NODE_INFO",
            "partitions" => "REQUEST_PARTITION_INFO",
            "diag" => "REQUEST_STATS_INFO",
            "shares" => "REQUEST_SHARE_INFO",
            _ if rest.starts_with("job/") => "REQUEST_JOB_INFO_SINGLE",
            _ => "REQUEST_PING",
        };
        let now = self.now;
        let requests = self.requests;
        let (pending, running) = self.jobs.iter().fold((0, 0), |(p, r), j| match j.phase {
            Phase::Pending { .. } => (p + 1, r),
            Phase::Running => (p, r + 1),
            Phase::Finished => (p, r),
        });
        let s = &mut self.diag["statistics"];
        s["req_time"] = number(now);
        s["jobs_pending"] = json!(pending);
        s["jobs_running"] = json!(running);
        // A scheduling cycle per request, its length varying a little.
        let cycle = 150 + (unit(requests, 7) * 400.0) as i64;
        s["schedule_cycle_last"] = json!(cycle);
        for k in ["schedule_cycle_total", "bf_cycle_counter"] {
            if let Some(n) = s[k].as_i64() {
                s[k] = json!(n + 1);
            }
        }
        for (k, add) in [("schedule_cycle_sum", cycle), ("bf_cycle_sum", cycle * 2)] {
            if let Some(n) = s[k].as_i64() {
                s[k] = json!(n + add);
            }
        }
        s["bf_cycle_last"] = json!(cycle * 2);
        s["bf_when_last_cycle"] = number(now);
        let time = 100 + (unit(requests, 8) * 900.0) as i64;
        if let Some(list) = s["rpcs_by_message_type"].as_array_mut() {
            if let Some(e) = list.iter_mut().find(|e| e["message_type"] == rpc) {
                e["count"] = json!(e["count"].as_i64().unwrap_or(0) + 1);
                e["total_time"] = json!(e["total_time"].as_i64().unwrap_or(0) + time);
            }
        }
        if let Some(list) = s["rpcs_by_user"].as_array_mut() {
            if let Some(e) = list.iter_mut().find(|e| e["user"] == "root") {
                e["count"] = json!(e["count"].as_i64().unwrap_or(0) + 1);
                e["total_time"] = json!(e["total_time"].as_i64().unwrap_or(0) + time);
            }
        }
    }

    fn jobs_body(&self, jobs: Vec<&Value>, warnings: Value) -> Value {
        json!({
            "jobs": jobs,
            "last_backfill": number(self.now - 5),
            "last_update": number(self.now),
            "meta": {},
            "errors": [],
            "warnings": warnings,
        })
    }

    /// `/jobs`, conditional on `update_time` as slurmctld answers it.
    fn jobs_answer(&self, since: Option<i64>) -> http::Response<Body> {
        if let Some(t) = since {
            if self.last_job_change < t {
                let w = json!([{
                    "description": format!("No job changes since update_time={t}"),
                    "source": "_op_handler_jobs"
                }]);
                let b = self.jobs_body(Vec::new(), w);
                return full(StatusCode::OK, "application/json", b.to_string());
            }
        }
        let b = self.jobs_body(self.jobs.iter().map(|j| &j.rec).collect(), json!([]));
        full(StatusCode::OK, "application/json", b.to_string())
    }

    /// `/job/{id}`: the records of that job id, all tasks of an array id.
    fn job_answer(&self, id: u64) -> http::Response<Body> {
        let recs: Vec<&Value> = self
            .jobs
            .iter()
            .filter(|j| j.id == id || j.array_of == Some(id))
            .map(|j| &j.rec)
            .collect();
        if recs.is_empty() {
            return full(
                StatusCode::NOT_FOUND,
                "application/json",
                r#"{"errors":[{"error_number":2017,"error":"Invalid job id specified"}],"jobs":[]}"#,
            );
        }
        let b = self.jobs_body(recs, json!([]));
        full(StatusCode::OK, "application/json", b.to_string())
    }

    /// `/jobs/state`: ids as Slurm 25.11 lists them (array tasks as
    /// `<job id>_<task>`, a pending meta record once per task).
    fn jobs_state(&self) -> Value {
        let mut list = Vec::new();
        for j in &self.jobs {
            let state = j.rec["job_state"].clone();
            match (j.array_of, j.array) {
                (Some(_), _) => {
                    let task = num(&j.rec["array_task_id"]).unwrap_or(0);
                    list.push(json!({"job_id": format!("{}_{task}", j.id), "state": state}));
                }
                (None, Some((lo, hi, _))) => {
                    for task in lo..=hi {
                        list.push(json!({"job_id": format!("{}_{task}", j.id), "state": state}));
                    }
                }
                _ => list.push(json!({"job_id": j.id.to_string(), "state": state})),
            }
        }
        json!({"jobs": list, "meta": {}, "errors": [], "warnings": []})
    }

    /// `/nodes`, conditional on `update_time` as slurmrestd 25.11 answers it.
    fn nodes_answer(&self, since: Option<i64>) -> http::Response<Body> {
        let mut body = self.nodes.clone();
        body["last_update"] = number(self.now);
        if let Some(t) = since {
            if self.last_node_change < t {
                body["nodes"] = json!([]);
                body["errors"] = json!([{
                    "description": "Failure to query nodes",
                    "error_number": 1900,
                    "error": "Data has not changed since time specified",
                    "source": "_dump_nodes"
                }]);
                return full(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "application/json",
                    body.to_string(),
                );
            }
            if self.last_part_change < t {
                // slurmrestd passes the time to slurm_load_partitions too.
                return full(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "application/json",
                    r#"{"errors":[{"error":"Unspecified error","errno":-1}],"nodes":[]}"#,
                );
            }
        }
        full(StatusCode::OK, "application/json", body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster::new(SimClock::new(1.0))
    }

    fn body(c: &Cluster, pq: &str) -> Value {
        let r = c.answer(pq);
        assert_eq!(r.status(), StatusCode::OK, "{pq}");
        let bytes = futures_executor(r);
        serde_json::from_slice(&bytes).unwrap()
    }

    fn futures_executor(r: http::Response<Body>) -> Vec<u8> {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { r.into_body().collect().await.unwrap().to_bytes().to_vec() })
    }

    #[test]
    fn starts_as_recorded_shifted_to_now() {
        let c = cluster();
        let now = c.clock().now();
        let jobs = body(&c, "/slurm/v0.0.44/jobs/");
        let j29 = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_id"] == 29)
            .unwrap();
        assert_eq!(j29["job_state"][0], "RUNNING");
        let start = num(&j29["start_time"]).unwrap();
        assert!((now - 300..=now).contains(&start), "{start} vs {now}");
        let gpu = c.gpu_jobs();
        assert_eq!(gpu.len(), 4, "{gpu:?}");
        assert_eq!(gpu[0].gpus, vec![0, 1]);
    }

    #[test]
    fn time_moves_jobs_end_start_and_reach_slurmdbd() {
        let c = cluster();
        let t0 = c.clock().now();
        let mut st = c.lock();
        st.advance(t0 + 6 * 3600);
        let running: Vec<u64> = st
            .jobs
            .iter()
            .filter(|j| j.phase == Phase::Running)
            .map(|j| j.id)
            .collect();
        // The recorded GPU jobs have ended and new ones run.
        assert!(
            !running.contains(&29) && !running.contains(&32),
            "{running:?}"
        );
        assert!(running.iter().any(|&id| id > 45), "{running:?}");
        // Submitted jobs keep the GPU queue filled; held jobs stay held.
        assert!(st
            .jobs
            .iter()
            .any(|j| j.id == 42 && j.rec["state_reason"] == "JobHeldUser"));
        // Every allocation fits node vm, and no GPU is held twice.
        let (cpus, mem, _) = st.used();
        assert!(cpus <= NODE_CPUS && mem <= NODE_MEM_MB);
        let mut gpus: Vec<usize> = st
            .jobs
            .iter()
            .filter(|j| j.phase == Phase::Running)
            .flat_map(|j| j.gpus.clone())
            .collect();
        let n = gpus.len();
        gpus.sort();
        gpus.dedup();
        assert_eq!(gpus.len(), n);
        // Finished jobs are in slurmdbd with their times.
        let ended = st
            .db
            .iter()
            .find(|r| r["job_id"] == 29)
            .expect("job 29 in slurmdbd");
        assert!(num(&ended["time"]["end"]).unwrap() > t0);
        drop(st);
        // The array's remaining tasks ran.
        let states = c.job_states();
        assert!(
            states.get("RUNNING").copied().unwrap_or(0) > 0,
            "{states:?}"
        );
    }

    #[test]
    fn conditional_answers() {
        let c = cluster();
        let future = c.clock().now() + 10;
        let r = body(&c, &format!("/slurm/v0.0.44/jobs/?update_time={future}"));
        assert_eq!(r["jobs"].as_array().unwrap().len(), 0);
        assert!(r["warnings"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("No job changes"));
        let r = c.answer(&format!("/slurm/v0.0.44/nodes/?update_time={future}"));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let state = body(&c, "/slurm/v0.0.44/jobs/state/");
        let ids: Vec<&str> = state["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["job_id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&"36_0") && ids.contains(&"34_9"), "{ids:?}");
        let one = body(&c, "/slurm/v0.0.44/job/29");
        assert_eq!(one["jobs"][0]["job_id"], 29);
        assert_eq!(
            c.answer("/slurm/v0.0.45/ping/").status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn slurmdb_window() {
        let c = cluster();
        let t0 = c.clock().now();
        c.lock().advance(t0 + 4 * 3600);
        let r = body(
            &c,
            &format!(
                "/slurmdb/v0.0.44/jobs/?start_time={}&end_time={}",
                t0 + 3600,
                t0 + 4 * 3600
            ),
        );
        let rows =
            crate::cluster::usage::slurmdb::parse_jobs(&mut r.to_string().as_bytes()).unwrap();
        assert!(!rows.is_empty());
        for row in rows {
            assert!(row.end.unwrap() >= t0 + 3600 && row.start <= t0 + 4 * 3600);
        }
    }

    #[test]
    fn serves_limits_with_the_demo_grp_tres_mins() {
        use crate::model::LimitKind;
        let c = cluster();
        let a = body(&c, "/slurmdb/v0.0.44/associations/");
        let assocs = crate::slurmrestd::parse_associations(
            crate::slurmrestd::ApiVersion::V0044,
            &mut a.to_string().as_bytes(),
        )
        .unwrap();
        let ai = assocs
            .iter()
            .find(|a| a.account == "ai_project" && a.user.is_none())
            .unwrap();
        let l: Vec<_> = ai
            .limits
            .tres
            .iter()
            .map(|t| (t.limit, t.tres.as_str(), t.value))
            .collect();
        assert_eq!(
            l,
            vec![
                (LimitKind::GrpTres, "gres/gpu", 16),
                (LimitKind::GrpTresMins, "gres/gpu", DEMO_GRP_GPU_MINUTES)
            ]
        );
        let q = body(&c, "/slurmdb/v0.0.44/qos/");
        let qos = crate::slurmrestd::parse_qos(
            crate::slurmrestd::ApiVersion::V0044,
            &mut q.to_string().as_bytes(),
        )
        .unwrap();
        assert!(qos.iter().any(|q| q.name == "gpu_limit"));
    }

    #[test]
    fn request_shapes() {
        assert_eq!(
            parse_req("cpu=32,mem=62.50G,node=1,billing=63,gres/gpu=8"),
            Req {
                cpus: 32,
                mem_mb: 64000,
                gpus: 8,
                billing: 63.0
            }
        );
        assert_eq!(idx_list(&[0, 1, 2, 5, 7]), "0-2,5,7");
    }
}
