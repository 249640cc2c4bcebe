//! Synthetic slurmrestd responses at cluster scale, shaped like the recorded
//! fixtures in `tests/fixtures/slurmrestd/<version>/`.
//!
//! Real records are the templates: a running GPU job, a pending job, a node,
//! a partition and share rows are taken from the recordings, their varying
//! members (ids, users, accounts, states, arrays, TRES, `gres_detail`, node
//! lists, `job_resources`) are replaced, and the result is printed the way
//! slurmrestd prints it (2-space pretty JSON, member order as recorded).
//!
//! Jobs are rendered from pre-compiled text templates into chunks, so a
//! 100k-job v0.0.44 body (~1.2 GB) streams without being held in memory.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// API versions the generator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V0038,
    V0044,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0038 => "v0.0.38",
            Version::V0044 => "v0.0.44",
        }
    }

    fn fixture(self, endpoint: &str) -> Vec<u8> {
        let p = fixtures_dir()
            .join(self.as_str())
            .join(format!("slurm_{endpoint}.json"));
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Number members: objects `{set, infinite, number}` from v0.0.40.
    fn number_objects(self) -> bool {
        self == Version::V0044
    }

    /// v0.0.40+ prints empty arrays and objects over two lines.
    pub fn empty_nl(self) -> bool {
        self == Version::V0044
    }
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/slurmrestd")
}

/// Size of the simulated cluster.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub jobs: usize,
    /// GPU nodes (8 GPUs each) plus CPU-only nodes, 4:1.
    pub nodes: usize,
    pub accounts: usize,
    pub users_per_account: usize,
    pub seed: u64,
}

impl Shape {
    /// The reference cluster: 100k jobs, 10k nodes, 2,000 accounts × 5 users.
    pub fn reference(jobs: usize) -> Shape {
        Shape {
            jobs,
            nodes: 10_000,
            accounts: 2_000,
            users_per_account: 5,
            seed: 0x5eed,
        }
    }

    pub fn gpu_nodes(&self) -> usize {
        self.nodes * 4 / 5
    }

    pub fn cpu_nodes(&self) -> usize {
        self.nodes - self.gpu_nodes()
    }
}

pub const GPUS_PER_NODE: u32 = 8;
const CPUS_PER_GPU_NODE: u32 = 96;
const CPUS_PER_CPU_NODE: u32 = 128;
const MEM_PER_GPU_NODE_MB: u64 = 1_024_000;
const MEM_PER_CPU_NODE_MB: u64 = 512_000;

pub fn gpu_node_name(i: usize) -> String {
    format!("gpu{:05}", i + 1)
}

pub fn cpu_node_name(i: usize) -> String {
    format!("cpu{:05}", i + 1)
}

fn account_name(a: usize) -> String {
    format!("acct{a:04}")
}

fn user_name(a: usize, u: usize, per: usize) -> String {
    format!("user{:05}", a * per + u)
}

/// A small deterministic PRNG (SplitMix64): the same shape gives the same bytes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `pct`%.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// Skewed index in `0..n`: a few accounts submit most jobs.
    pub fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n as u64);
        let b = self.below(n as u64);
        a.min(b) as usize
    }
}

// ---------------------------------------------------------------------------
// An order-preserving JSON tree with slurmrestd's pretty printing.

/// JSON value keeping member order and the raw text of numbers and strings,
/// so a template prints back byte for byte as recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    /// Raw number text.
    Num(String),
    /// Raw (escaped) string content, without quotes.
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn parse(text: &[u8]) -> J {
        let mut p = Parser { s: text, i: 0 };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, text.len(), "trailing data in template");
        v
    }

    /// A string value; generated values are plain ASCII, escaped anyway.
    pub fn s(v: &str) -> J {
        let mut out = String::with_capacity(v.len());
        for c in v.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        J::Str(out)
    }

    pub fn n(v: impl std::fmt::Display) -> J {
        J::Num(v.to_string())
    }

    /// Slurm number object `{set, infinite, number}`.
    pub fn num_obj(v: Option<impl std::fmt::Display>) -> J {
        J::Obj(vec![
            ("set".into(), J::Bool(v.is_some())),
            ("infinite".into(), J::Bool(false)),
            (
                "number".into(),
                v.map(J::n).unwrap_or_else(|| J::Num("0".into())),
            ),
        ])
    }

    pub fn strs<S: AsRef<str>>(v: &[S]) -> J {
        J::Arr(v.iter().map(|s| J::s(s.as_ref())).collect())
    }

    pub fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut J> {
        match self {
            J::Obj(m) => m.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Replaces member `key` where it exists (templates differ by version).
    pub fn set(&mut self, key: &str, v: J) -> &mut Self {
        if let Some(slot) = self.get_mut(key) {
            *slot = v;
        }
        self
    }

    /// `a.b.c` path lookup.
    pub fn path_mut(&mut self, path: &str) -> Option<&mut J> {
        let mut cur = self;
        for k in path.split('.') {
            cur = cur.get_mut(k)?;
        }
        Some(cur)
    }

    pub fn arr_mut(&mut self) -> &mut Vec<J> {
        match self {
            J::Arr(a) => a,
            _ => panic!("not an array"),
        }
    }

    /// Prints as slurmrestd does: 2-space indentation, `"key": value`.
    /// `indent` is this value's own level. Empty containers are `[]`/`{}`,
    /// or with `empty_nl` (v0.0.40+) `[` newline, indentation, `]`.
    pub fn pretty(&self, out: &mut Vec<u8>, indent: usize, empty_nl: bool) {
        match self {
            J::Null => out.extend_from_slice(b"null"),
            J::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            J::Num(n) => out.extend_from_slice(n.as_bytes()),
            J::Str(s) => {
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            }
            J::Arr(a) if a.is_empty() => empty(out, b'[', b']', indent, empty_nl),
            J::Obj(m) if m.is_empty() => empty(out, b'{', b'}', indent, empty_nl),
            J::Arr(a) => {
                out.extend_from_slice(b"[\n");
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b",\n");
                    }
                    spaces(out, indent + 2);
                    v.pretty(out, indent + 2, empty_nl);
                }
                out.push(b'\n');
                spaces(out, indent);
                out.push(b']');
            }
            J::Obj(m) => {
                out.extend_from_slice(b"{\n");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b",\n");
                    }
                    spaces(out, indent + 2);
                    out.push(b'"');
                    out.extend_from_slice(k.as_bytes());
                    out.extend_from_slice(b"\": ");
                    v.pretty(out, indent + 2, empty_nl);
                }
                out.push(b'\n');
                spaces(out, indent);
                out.push(b'}');
            }
        }
    }

    pub fn to_pretty(&self, empty_nl: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.pretty(&mut out, 0, empty_nl);
        out.push(b'\n');
        out
    }
}

fn empty(out: &mut Vec<u8>, open: u8, close: u8, indent: usize, nl: bool) {
    out.push(open);
    if nl {
        out.push(b'\n');
        spaces(out, indent);
    }
    out.push(close);
}

fn spaces(out: &mut Vec<u8>, n: usize) {
    const SP: &[u8] = &[b' '; 64];
    let mut n = n;
    while n > 0 {
        let k = n.min(SP.len());
        out.extend_from_slice(&SP[..k]);
        n -= k;
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(self.s[self.i], c, "template JSON at byte {}", self.i);
        self.i += 1;
    }
    fn raw_str(&mut self) -> String {
        self.eat(b'"');
        let start = self.i;
        while self.s[self.i] != b'"' {
            if self.s[self.i] == b'\\' {
                self.i += 1;
            }
            self.i += 1;
        }
        let out = String::from_utf8(self.s[start..self.i].to_vec()).expect("UTF-8 template");
        self.i += 1;
        out
    }
    fn value(&mut self) -> J {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return J::Obj(m);
                }
                loop {
                    let k = self.raw_str();
                    self.eat(b':');
                    m.push((k, self.value()));
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b'}' {
                        return J::Obj(m);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return J::Arr(a);
                }
                loop {
                    a.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.s[self.i - 1] == b']' {
                        return J::Arr(a);
                    }
                }
            }
            b'"' => J::Str(self.raw_str()),
            b't' => {
                self.i += 4;
                J::Bool(true)
            }
            b'f' => {
                self.i += 5;
                J::Bool(false)
            }
            b'n' => {
                self.i += 4;
                J::Null
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                J::Num(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Text templates: a record printed once with `"@@NAME@@"` placeholders, then
// filled by concatenation.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    JobId,
    Name,
    User,
    Account,
    Partition,
    Qos,
    State,
    Reason,
    Nodes,
    BatchHost,
    ArrayJobId,
    ArrayTaskId,
    ArrayTaskString,
    TresAlloc,
    TresReq,
    TresPerNode,
    GresDetail,
    Submit,
    Start,
    End,
    JrList,
    JrCount,
    JrCpus,
    JrAlloc,
    AIndex,
    AName,
    ACpus,
    AMem,
}

impl Var {
    const ALL: [Var; 28] = [
        Var::JobId,
        Var::Name,
        Var::User,
        Var::Account,
        Var::Partition,
        Var::Qos,
        Var::State,
        Var::Reason,
        Var::Nodes,
        Var::BatchHost,
        Var::ArrayJobId,
        Var::ArrayTaskId,
        Var::ArrayTaskString,
        Var::TresAlloc,
        Var::TresReq,
        Var::TresPerNode,
        Var::GresDetail,
        Var::Submit,
        Var::Start,
        Var::End,
        Var::JrList,
        Var::JrCount,
        Var::JrCpus,
        Var::JrAlloc,
        Var::AIndex,
        Var::AName,
        Var::ACpus,
        Var::AMem,
    ];

    fn placeholder(self) -> J {
        J::Str(format!("@@{self:?}@@"))
    }
}

#[derive(Debug, Clone)]
enum Seg {
    Lit(Vec<u8>),
    /// A variable and the indentation of the line it sits on.
    Var(Var, usize),
}

#[derive(Debug, Clone)]
struct Template {
    segs: Vec<Seg>,
}

impl Template {
    /// Prints `v` at indentation `indent` (first line not indented) and
    /// splits it at the placeholders.
    fn compile(v: &J, indent: usize, empty_nl: bool) -> Template {
        let mut text = Vec::new();
        v.pretty(&mut text, indent, empty_nl);
        let mut segs = Vec::new();
        let mut lit_start = 0;
        let mut i = 0;
        while i + 3 < text.len() {
            if &text[i..i + 3] == b"\"@@" {
                let rest = &text[i + 3..];
                let end = rest
                    .windows(3)
                    .position(|w| w == b"@@\"")
                    .expect("closed placeholder");
                let name = std::str::from_utf8(&rest[..end]).unwrap();
                let var = *Var::ALL
                    .iter()
                    .find(|v| format!("{v:?}") == name)
                    .expect("known placeholder");
                let line_start = text[..i]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |p| p + 1);
                let line_indent = text[line_start..i]
                    .iter()
                    .take_while(|&&c| c == b' ')
                    .count();
                segs.push(Seg::Lit(text[lit_start..i].to_vec()));
                segs.push(Seg::Var(var, line_indent));
                i += 3 + end + 3;
                lit_start = i;
            } else {
                i += 1;
            }
        }
        segs.push(Seg::Lit(text[lit_start..].to_vec()));
        Template { segs }
    }

    fn render(&self, out: &mut Vec<u8>, mut var: impl FnMut(Var, usize, &mut Vec<u8>)) {
        for s in &self.segs {
            match s {
                Seg::Lit(l) => out.extend_from_slice(l),
                Seg::Var(v, ind) => var(*v, *ind, out),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Jobs.

/// One generated job, before printing.
#[derive(Debug, Clone)]
pub struct GenJob {
    pub id: u64,
    pub name: &'static str,
    pub account: usize,
    pub user: usize,
    pub partition: &'static str,
    pub qos: &'static str,
    pub state: &'static str,
    /// Extra state word (v0.0.40+ arrays; v0.0.38 prints the base only).
    pub flag: Option<&'static str>,
    pub reason: &'static str,
    pub array_job_id: u64,
    pub array_task_id: Option<u64>,
    pub array_task_string: String,
    pub alloc: Option<Alloc>,
    /// GPUs requested (for pending jobs' `tres_req_str`).
    pub req_gpus: u32,
    pub submit: i64,
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// Consecutive nodes held by a job.
#[derive(Debug, Clone)]
pub struct Alloc {
    pub gpu: bool,
    pub first_node: usize,
    pub nodes: usize,
    pub gpus_per_node: u32,
    /// First device index on each node.
    pub first_idx: u32,
    pub cpus_per_node: u32,
    pub mem_per_node_mb: u64,
}

impl Alloc {
    fn node_name(&self, k: usize) -> String {
        if self.gpu {
            gpu_node_name(self.first_node + k)
        } else {
            cpu_node_name(self.first_node + k)
        }
    }

    /// Host list expression, as Slurm compresses it.
    pub fn hostlist(&self) -> String {
        let prefix = if self.gpu { "gpu" } else { "cpu" };
        if self.nodes == 1 {
            self.node_name(0)
        } else {
            format!(
                "{prefix}[{:05}-{:05}]",
                self.first_node + 1,
                self.first_node + self.nodes
            )
        }
    }

    fn gres_detail(&self, gpu_type: &str) -> Vec<String> {
        if !self.gpu {
            return Vec::new();
        }
        let last = self.first_idx + self.gpus_per_node - 1;
        let idx = if self.gpus_per_node == 1 {
            format!("{}", self.first_idx)
        } else {
            format!("{}-{}", self.first_idx, last)
        };
        (0..self.nodes)
            .map(|_| format!("gpu:{gpu_type}:{}(IDX:{idx})", self.gpus_per_node))
            .collect()
    }
}

const JOB_NAMES: &[&str] = &[
    "train-llama",
    "finetune",
    "eval-sweep",
    "preprocess",
    "bash",
    "inference",
    "rl-rollout",
    "tokenize",
];
const PENDING_REASONS: &[&str] = &[
    "Priority",
    "Priority",
    "Priority",
    "Resources",
    "Resources",
    "QOSMaxGRESPerUser",
    "Dependency",
    "JobHeldUser",
    "AssocGrpGRES",
    "BeginTime",
    "ReqNodeNotAvail, Reserved for maintenance",
];
const QOS: &[&str] = &["normal", "normal", "high", "gpu_limit"];

/// Hands out GPUs node by node; when the GPU partition is full, further
/// running jobs stay pending for `Resources`, as on a real full cluster.
#[derive(Debug)]
struct Allocator {
    gpu_nodes: usize,
    cpu_nodes: usize,
    node: usize,
    used: u32,
    cpu_cursor: usize,
}

impl Allocator {
    fn gpus(&mut self, nodes: usize, per_node: u32) -> Option<Alloc> {
        if (nodes > 1 || self.used + per_node > GPUS_PER_NODE) && self.used > 0 {
            self.node += 1;
            self.used = 0;
        }
        if self.node + nodes > self.gpu_nodes {
            return None;
        }
        let a = Alloc {
            gpu: true,
            first_node: self.node,
            nodes,
            gpus_per_node: per_node,
            first_idx: self.used,
            cpus_per_node: per_node * (CPUS_PER_GPU_NODE / GPUS_PER_NODE),
            mem_per_node_mb: per_node as u64 * (MEM_PER_GPU_NODE_MB / GPUS_PER_NODE as u64),
        };
        if nodes > 1 {
            self.node += nodes;
        } else {
            self.used += per_node;
        }
        Some(a)
    }

    fn cpus(&mut self, cpus: u32) -> Alloc {
        let first = self.cpu_cursor % self.cpu_nodes.max(1);
        self.cpu_cursor += 1;
        Alloc {
            gpu: false,
            first_node: first,
            nodes: 1,
            gpus_per_node: 0,
            first_idx: 0,
            cpus_per_node: cpus,
            mem_per_node_mb: cpus as u64 * 4000,
        }
    }
}

/// The job mix: ~45% pending (10% of records in arrays, pending array meta
/// records with `array_task_string`), ~25% running (GPU jobs of 1-8 GPUs and
/// multi-node 8-GPU jobs, CPU jobs), ~30% recently finished.
pub struct JobStream {
    shape: Shape,
    rng: Rng,
    alloc: Allocator,
    next_id: u64,
    emitted: usize,
    queue: std::collections::VecDeque<GenJob>,
}

const NOW: i64 = 1_795_374_636;

impl JobStream {
    pub fn new(shape: Shape) -> JobStream {
        JobStream {
            rng: Rng::new(shape.seed),
            alloc: Allocator {
                gpu_nodes: shape.gpu_nodes(),
                cpu_nodes: shape.cpu_nodes(),
                node: 0,
                used: 0,
                cpu_cursor: 0,
            },
            next_id: 1_000_000,
            emitted: 0,
            queue: Default::default(),
            shape,
        }
    }

    fn base(&mut self) -> GenJob {
        let account = self.rng.skewed(self.shape.accounts);
        let user = self.rng.below(self.shape.users_per_account as u64) as usize;
        let id = self.next_id;
        self.next_id += 1;
        GenJob {
            id,
            name: self.rng.pick(JOB_NAMES),
            account,
            user,
            partition: "gpu",
            qos: self.rng.pick(QOS),
            state: "PENDING",
            flag: None,
            reason: "None",
            array_job_id: 0,
            array_task_id: None,
            array_task_string: String::new(),
            alloc: None,
            req_gpus: 0,
            submit: NOW - 3600 - self.rng.below(86_400 * 3) as i64,
            start: None,
            end: None,
        }
    }

    /// A running (or, when the cluster is full, pending) job of `j`'s shape.
    fn start(&mut self, j: &mut GenJob) {
        let cpu_job = self.rng.pct(10);
        let alloc = if cpu_job {
            j.partition = "cpu";
            let c = self.rng.pick(&[8, 16, 32, 64, 128]);
            Some(self.alloc.cpus(c))
        } else {
            let (nodes, per) = match self.rng.below(10) {
                0..=2 => (1, 1),
                3..=4 => (1, 2),
                5..=6 => (1, 4),
                7..=8 => (1, 8),
                _ => (2 + self.rng.below(3) as usize, 8),
            };
            j.req_gpus = per * nodes as u32;
            if nodes > 1 || self.rng.pct(30) {
                j.partition = "gpu-long";
            }
            self.alloc.gpus(nodes, per)
        };
        match alloc {
            Some(a) => {
                j.state = "RUNNING";
                j.start = Some(j.submit + self.rng.below(3600) as i64);
                j.end = Some(NOW + 3600 + self.rng.below(86_400) as i64);
                j.alloc = Some(a);
            }
            None => {
                j.state = "PENDING";
                j.reason = "Resources";
            }
        }
    }

    fn refill(&mut self) {
        let roll = self.rng.below(100);
        let mut j = self.base();
        if roll < 10 {
            // A job array: some tasks running or done, the rest pending in one meta record.
            let n = 4 + self.rng.below(60);
            let done = self.rng.below(n / 2);
            let running = (self.rng.below(4)).min(n - done);
            j.array_job_id = j.id;
            let mut tasks = Vec::new();
            for t in 0..done + running {
                let mut task = j.clone();
                if t > 0 {
                    task.id = self.next_id;
                    self.next_id += 1;
                }
                task.array_task_id = Some(t);
                if t < done {
                    self.finish(&mut task);
                } else {
                    self.start(&mut task);
                    if task.array_task_id.is_some() && task.state == "PENDING" {
                        task.reason = "Resources";
                    }
                }
                tasks.push(task);
            }
            if done + running < n {
                let mut meta = j.clone();
                if done + running > 0 {
                    meta.id = self.next_id;
                    self.next_id += 1;
                }
                meta.array_task_id = None;
                meta.array_task_string =
                    format!("{}-{}%{}", done + running, n - 1, 2 + self.rng.below(8));
                meta.state = "PENDING";
                meta.reason = "JobArrayTaskLimit";
                meta.req_gpus = 1;
                tasks.push(meta);
            }
            self.queue.extend(tasks);
        } else if roll < 50 {
            j.reason = self.rng.pick(PENDING_REASONS);
            j.req_gpus = self.rng.pick(&[1, 2, 4, 8, 16]);
            if self.rng.pct(10) {
                j.partition = "gpu,gpu-long";
            }
            self.queue.push_back(j);
        } else if roll < 73 {
            self.start(&mut j);
            self.queue.push_back(j);
        } else {
            self.finish(&mut j);
            self.queue.push_back(j);
        }
    }

    fn finish(&mut self, j: &mut GenJob) {
        let (state, reason) = self.rng.pick(&[
            ("COMPLETED", "None"),
            ("COMPLETED", "None"),
            ("COMPLETED", "None"),
            ("CANCELLED", "None"),
            ("FAILED", "NonZeroExitCode"),
            ("TIMEOUT", "TimeLimit"),
            ("OUT_OF_MEMORY", "OutOfMemory"),
        ]);
        j.state = state;
        j.reason = reason;
        if self.rng.pct(5) {
            j.flag = Some("COMPLETING");
        }
        // Finished jobs keep their (released) allocation on a GPU node.
        let node = self.rng.below(self.shape.gpu_nodes() as u64) as usize;
        let per = self.rng.pick(&[1, 2, 4, 8]);
        j.alloc = Some(Alloc {
            gpu: true,
            first_node: node,
            nodes: 1,
            gpus_per_node: per,
            first_idx: 0,
            cpus_per_node: per * 12,
            mem_per_node_mb: per as u64 * 128_000,
        });
        j.req_gpus = per;
        j.start = Some(j.submit + 60);
        j.end = Some(NOW - self.rng.below(300) as i64);
    }
}

impl Iterator for JobStream {
    type Item = GenJob;
    fn next(&mut self) -> Option<GenJob> {
        if self.emitted >= self.shape.jobs {
            return None;
        }
        while self.queue.is_empty() {
            self.refill();
        }
        self.emitted += 1;
        self.queue.pop_front()
    }
}

/// Prints jobs into a `/jobs` body, one job at a time.
pub struct JobsRenderer {
    version: Version,
    head: Vec<u8>,
    tail: Vec<u8>,
    with_alloc: Template,
    without_alloc: Template,
    alloc_entry: Template,
    alloc_entry_indent: usize,
}

impl JobsRenderer {
    pub fn new(version: Version) -> JobsRenderer {
        let doc = J::parse(&version.fixture("jobs"));
        let jobs = match doc.get("jobs") {
            Some(J::Arr(a)) => a.clone(),
            _ => panic!("fixture has no jobs"),
        };
        let state_of = |j: &J| match j.get("job_state") {
            Some(J::Arr(a)) => a.first().cloned(),
            Some(s) => Some(s.clone()),
            None => None,
        };
        let running = jobs
            .iter()
            .find(|j| {
                state_of(j) == Some(J::s("RUNNING"))
                    && matches!(j.get("gres_detail"), Some(J::Arr(a)) if !a.is_empty())
            })
            .expect("a running GPU job in the fixture")
            .clone();
        let pending = jobs
            .iter()
            .find(|j| {
                state_of(j) == Some(J::s("PENDING"))
                    && j.get("array_task_string") == Some(&J::s(""))
            })
            .expect("a pending job in the fixture")
            .clone();

        let mut with_alloc = running;
        let mut without_alloc = pending;
        for t in [&mut with_alloc, &mut without_alloc] {
            for (key, var) in [
                ("job_id", Var::JobId),
                ("name", Var::Name),
                ("user_name", Var::User),
                ("account", Var::Account),
                ("partition", Var::Partition),
                ("qos", Var::Qos),
                ("job_state", Var::State),
                ("state_reason", Var::Reason),
                ("nodes", Var::Nodes),
                ("batch_host", Var::BatchHost),
                ("array_job_id", Var::ArrayJobId),
                ("array_task_id", Var::ArrayTaskId),
                ("array_task_string", Var::ArrayTaskString),
                ("tres_alloc_str", Var::TresAlloc),
                ("tres_req_str", Var::TresReq),
                ("tres_per_node", Var::TresPerNode),
                ("gres_detail", Var::GresDetail),
                ("submit_time", Var::Submit),
                ("start_time", Var::Start),
                ("end_time", Var::End),
            ] {
                t.set(key, var.placeholder());
            }
        }
        // job_resources of the running template: node list, counts, one
        // allocation entry per node (its sockets/cores are most of the bytes).
        let jr = with_alloc.get_mut("job_resources").expect("job_resources");
        let entry;
        match version {
            Version::V0044 => {
                jr.set("cpus", Var::JrCpus.placeholder());
                let nodes = jr.get_mut("nodes").expect("job_resources.nodes");
                nodes.set("count", Var::JrCount.placeholder());
                nodes.set("list", Var::JrList.placeholder());
                let alloc = nodes.get_mut("allocation").expect("allocation");
                let mut e = alloc.arr_mut()[0].clone();
                e.set("index", Var::AIndex.placeholder());
                e.set("name", Var::AName.placeholder());
                if let Some(c) = e.get_mut("cpus") {
                    c.set("count", Var::ACpus.placeholder());
                }
                if let Some(m) = e.get_mut("memory") {
                    m.set("allocated", Var::AMem.placeholder());
                }
                entry = e;
                *alloc = Var::JrAlloc.placeholder();
            }
            Version::V0038 => {
                jr.set("nodes", Var::JrList.placeholder());
                jr.set("allocated_cores", Var::JrCpus.placeholder());
                jr.set("allocated_hosts", Var::JrCount.placeholder());
                let alloc = jr.get_mut("allocated_nodes").expect("allocated_nodes");
                let mut e = alloc.arr_mut()[0].clone();
                e.set("nodename", Var::AName.placeholder());
                e.set("memory_allocated", Var::AMem.placeholder());
                entry = e;
                *alloc = Var::JrAlloc.placeholder();
            }
        }

        let mut top = doc.clone();
        top.set("jobs", J::Str("@@JOBS@@".into()));
        let mut text = top.to_pretty(version.empty_nl());
        let at = text.windows(10).position(|w| w == b"\"@@JOBS@@\"").unwrap();
        let tail_text = text.split_off(at + 10);
        text.truncate(at);
        let mut head = text;
        head.extend_from_slice(b"[\n");
        let mut tail = b"\n  ]".to_vec();
        tail.extend_from_slice(&tail_text);

        let with_alloc = Template::compile(&with_alloc, 4, version.empty_nl());
        let alloc_entry_indent = with_alloc
            .segs
            .iter()
            .find_map(|s| match s {
                Seg::Var(Var::JrAlloc, ind) => Some(*ind + 2),
                _ => None,
            })
            .expect("allocation placeholder");
        JobsRenderer {
            version,
            head,
            tail,
            with_alloc,
            without_alloc: Template::compile(&without_alloc, 4, version.empty_nl()),
            alloc_entry: Template::compile(&entry, alloc_entry_indent, version.empty_nl()),
            alloc_entry_indent,
        }
    }

    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn tail(&self) -> &[u8] {
        &self.tail
    }

    /// Appends one job (indented as an element of `jobs`), without separator.
    pub fn job(&self, j: &GenJob, shape: &Shape, out: &mut Vec<u8>) {
        let v = self.version;
        let gpu_type = if j.alloc.as_ref().is_some_and(|a| a.first_node % 5 == 4) {
            "a100"
        } else {
            "h100"
        };
        let tres = |a: Option<&Alloc>| -> String {
            let (cpus, mem_mb, nodes, gpus) = match a {
                Some(a) => (
                    a.cpus_per_node as u64 * a.nodes as u64,
                    a.mem_per_node_mb * a.nodes as u64,
                    a.nodes as u64,
                    a.gpus_per_node as u64 * a.nodes as u64,
                ),
                None => (
                    j.req_gpus as u64 * 12,
                    j.req_gpus as u64 * 128_000,
                    1,
                    j.req_gpus as u64,
                ),
            };
            let mut s = format!(
                "cpu={cpus},mem={}G,node={nodes},billing={}",
                mem_mb / 1000,
                cpus + gpus * 10
            );
            if gpus > 0 {
                let _ = write!(s, ",gres/gpu={gpus}");
                if v == Version::V0038 {
                    let _ = write!(s, ",gres/gpu:{gpu_type}={gpus}");
                }
            }
            s
        };
        let alloc = j.alloc.as_ref();
        let tmpl = if alloc.is_some() {
            &self.with_alloc
        } else {
            &self.without_alloc
        };
        spaces(out, 4);
        tmpl.render(out, |var, ind, out| match var {
            Var::JobId => push_num(out, j.id),
            Var::Name => push_str(out, j.name),
            Var::User => push_str(out, &user_name(j.account, j.user, shape.users_per_account)),
            Var::Account => push_str(out, &account_name(j.account)),
            Var::Partition => push_str(out, j.partition),
            Var::Qos => push_str(out, j.qos),
            Var::State => match v {
                Version::V0038 => push_str(out, j.state),
                Version::V0044 => {
                    let mut words = vec![j.state];
                    words.extend(j.flag);
                    J::strs(&words).pretty(out, ind, true);
                }
            },
            Var::Reason => push_str(out, j.reason),
            Var::Nodes => push_str(out, &alloc.map(Alloc::hostlist).unwrap_or_default()),
            Var::BatchHost => push_str(out, &alloc.map(|a| a.node_name(0)).unwrap_or_default()),
            Var::ArrayJobId => num_member(v, out, Some(j.array_job_id), ind, false),
            Var::ArrayTaskId => num_member(v, out, j.array_task_id, ind, true),
            Var::ArrayTaskString => push_str(out, &j.array_task_string),
            Var::TresAlloc => push_str(out, &alloc.map(|a| tres(Some(a))).unwrap_or_default()),
            Var::TresReq => push_str(out, &tres(alloc)),
            Var::TresPerNode => push_str(
                out,
                &match alloc {
                    Some(a) if a.gpu => format!("gres/gpu:{}", a.gpus_per_node),
                    Some(_) => String::new(),
                    None if j.req_gpus > 0 => format!("gres/gpu:{}", j.req_gpus.min(8)),
                    None => String::new(),
                },
            ),
            Var::GresDetail => {
                let d = match alloc {
                    Some(a) if j.state == "RUNNING" => a.gres_detail(gpu_type),
                    _ => Vec::new(),
                };
                J::strs(&d).pretty(out, ind, v.empty_nl());
            }
            Var::Submit => num_member(v, out, Some(j.submit), ind, false),
            Var::Start => num_member(v, out, Some(j.start.unwrap_or(0)), ind, false),
            Var::End => num_member(v, out, Some(j.end.unwrap_or(0)), ind, false),
            Var::JrList => push_str(out, &alloc.map(Alloc::hostlist).unwrap_or_default()),
            Var::JrCount => push_num(out, alloc.map_or(0, |a| a.nodes as u64)),
            Var::JrCpus => push_num(
                out,
                alloc.map_or(0, |a| a.cpus_per_node as u64 * a.nodes as u64),
            ),
            Var::JrAlloc => {
                let a = alloc.expect("allocation template only for allocated jobs");
                out.extend_from_slice(b"[\n");
                for k in 0..a.nodes {
                    if k > 0 {
                        out.extend_from_slice(b",\n");
                    }
                    spaces(out, self.alloc_entry_indent);
                    self.alloc_entry.render(out, |var, _, out| match var {
                        Var::AIndex => push_num(out, k as u64),
                        Var::AName => push_str(out, &a.node_name(k)),
                        Var::ACpus => push_num(out, a.cpus_per_node as u64),
                        Var::AMem => push_num(out, a.mem_per_node_mb),
                        _ => unreachable!(),
                    });
                }
                out.push(b'\n');
                spaces(out, ind);
                out.push(b']');
            }
            Var::AIndex | Var::AName | Var::ACpus | Var::AMem => unreachable!(),
        });
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn push_num(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    let _ = std::io::Write::write_fmt(out, format_args!("{n}"));
}

/// v0.0.38 prints plain numbers (`null` for an unset array task id);
/// v0.0.40+ prints number objects.
fn num_member<T: std::fmt::Display>(
    v: Version,
    out: &mut Vec<u8>,
    n: Option<T>,
    indent: usize,
    null_when_unset: bool,
) {
    if v.number_objects() {
        J::num_obj(n).pretty(out, indent, true);
    } else {
        match n {
            Some(n) => push_num(out, n),
            None if null_when_unset => out.extend_from_slice(b"null"),
            None => out.push(b'0'),
        }
    }
}

/// A whole `/jobs` body in chunks of about `chunk` bytes, rendered lazily.
pub struct JobsBody {
    renderer: JobsRenderer,
    jobs: JobStream,
    shape: Shape,
    chunk: usize,
    started: bool,
    done: bool,
    first: bool,
}

impl JobsBody {
    pub fn new(version: Version, shape: Shape, chunk: usize) -> JobsBody {
        JobsBody {
            renderer: JobsRenderer::new(version),
            jobs: JobStream::new(shape),
            shape,
            chunk,
            started: false,
            done: false,
            first: true,
        }
    }

    /// The whole body in memory (for the ingest benchmark's sizes only).
    pub fn collect(version: Version, shape: Shape) -> Vec<u8> {
        let mut out = Vec::new();
        for c in JobsBody::new(version, shape, 1 << 20) {
            out.extend_from_slice(&c);
        }
        out
    }
}

impl Iterator for JobsBody {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let mut out = Vec::with_capacity(self.chunk + 64 * 1024);
        if !self.started {
            out.extend_from_slice(self.renderer.head());
            self.started = true;
        }
        while out.len() < self.chunk {
            match self.jobs.next() {
                Some(j) => {
                    if !self.first {
                        out.extend_from_slice(b",\n");
                    }
                    self.first = false;
                    self.renderer.job(&j, &self.shape, &mut out);
                }
                None => {
                    out.extend_from_slice(self.renderer.tail());
                    self.done = true;
                    break;
                }
            }
        }
        Some(out)
    }
}

// ---------------------------------------------------------------------------
// Nodes, partitions, shares.

fn replace_list(version: Version, doc: &J, key: &str, items: Vec<J>) -> Vec<u8> {
    let mut top = doc.clone();
    top.set(key, J::Arr(items));
    top.to_pretty(version.empty_nl())
}

fn first_of(doc: &J, key: &str, pred: impl Fn(&J) -> bool) -> J {
    match doc.get(key) {
        Some(J::Arr(a)) => a.iter().find(|x| pred(x)).expect("template record").clone(),
        _ => panic!("fixture has no {key}"),
    }
}

/// `/nodes`: 80% GPU nodes (8 × h100 or a100), 20% CPU nodes; states mixed,
/// allocated, idle, drained, down.
pub fn nodes_body(version: Version, shape: &Shape) -> Vec<u8> {
    let doc = J::parse(&version.fixture("nodes"));
    let tmpl = first_of(
        &doc,
        "nodes",
        |n| matches!(n.get("gres"), Some(J::Str(s)) if s.starts_with("gpu")),
    );
    let mut rng = Rng::new(shape.seed ^ 0x40de);
    let mut out = Vec::with_capacity(shape.nodes);
    for i in 0..shape.nodes {
        let gpu = i < shape.gpu_nodes();
        let k = if gpu { i } else { i - shape.gpu_nodes() };
        let name = if gpu {
            gpu_node_name(k)
        } else {
            cpu_node_name(k)
        };
        let (base, flags): (&str, &[&str]) = match rng.below(100) {
            0..=54 => ("ALLOCATED", &[]),
            55..=79 => ("MIXED", &[]),
            80..=91 => ("IDLE", &[]),
            92..=95 => ("IDLE", &["DRAIN"]),
            96..=97 => ("MIXED", &["DRAIN"]),
            _ => ("DOWN", &["NOT_RESPONDING"]),
        };
        let cpus = if gpu {
            CPUS_PER_GPU_NODE
        } else {
            CPUS_PER_CPU_NODE
        } as u64;
        let mem = if gpu {
            MEM_PER_GPU_NODE_MB
        } else {
            MEM_PER_CPU_NODE_MB
        };
        let used_gpus = match base {
            "ALLOCATED" => GPUS_PER_NODE,
            "MIXED" => 1 + rng.below(GPUS_PER_NODE as u64 - 1) as u32,
            _ => 0,
        };
        let alloc_cpus = match base {
            "ALLOCATED" => cpus,
            "MIXED" => 1 + rng.below(cpus - 1),
            _ => 0,
        };
        let gpu_type = if k % 5 == 4 { "a100" } else { "h100" };
        let (gres, gres_used) = if gpu {
            let used = if used_gpus == 0 {
                format!("gpu:{gpu_type}:0")
            } else if used_gpus == 1 {
                format!("gpu:{gpu_type}:1(IDX:0)")
            } else {
                format!("gpu:{gpu_type}:{used_gpus}(IDX:0-{})", used_gpus - 1)
            };
            (format!("gpu:{gpu_type}:{GPUS_PER_NODE}"), used)
        } else {
            (String::new(), "gpu:0".to_string())
        };
        let partitions: Vec<&str> = if gpu {
            if k < shape.gpu_nodes() / 4 {
                vec!["gpu", "gpu-long"]
            } else {
                vec!["gpu"]
            }
        } else {
            vec!["cpu"]
        };
        let mut n = tmpl.clone();
        let ip = format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256);
        n.set("name", J::s(&name))
            .set("hostname", J::s(&name))
            .set("address", J::s(&ip))
            .set("gres", J::s(&gres))
            .set("gres_used", J::s(&gres_used))
            .set("partitions", J::strs(&partitions))
            .set("cpus", J::n(cpus))
            .set("alloc_cpus", J::n(alloc_cpus))
            .set("real_memory", J::n(mem))
            .set("alloc_memory", J::n(mem * alloc_cpus / cpus))
            .set(
                "reason",
                J::s(if flags.is_empty() {
                    ""
                } else {
                    "ECC errors, replace GPU"
                }),
            )
            .set("cpu_load", J::n(rng.below(cpus * 100)));
        let free = mem - mem * alloc_cpus / cpus;
        match version {
            Version::V0044 => {
                let mut words = vec![base];
                words.extend_from_slice(flags);
                n.set("state", J::strs(&words))
                    .set("free_mem", J::num_obj(Some(free)));
            }
            Version::V0038 => {
                n.set("state", J::s(&base.to_ascii_lowercase()))
                    .set("state_flags", J::strs(flags))
                    .set("free_memory", J::n(free));
            }
        }
        out.push(n);
    }
    replace_list(version, &doc, "nodes", out)
}

/// `/partitions`: gpu, gpu-long (a quarter of the GPU nodes), cpu, debug.
pub fn partitions_body(version: Version, shape: &Shape) -> Vec<u8> {
    let doc = J::parse(&version.fixture("partitions"));
    let tmpl = first_of(&doc, "partitions", |_| true);
    let g = shape.gpu_nodes();
    let c = shape.cpu_nodes();
    let parts = [
        (
            "gpu",
            format!("gpu[00001-{g:05}]"),
            g,
            g * CPUS_PER_GPU_NODE as usize,
        ),
        (
            "gpu-long",
            format!("gpu[00001-{:05}]", g / 4),
            g / 4,
            g / 4 * CPUS_PER_GPU_NODE as usize,
        ),
        (
            "cpu",
            format!("cpu[00001-{c:05}]"),
            c,
            c * CPUS_PER_CPU_NODE as usize,
        ),
        (
            "debug",
            format!("gpu[{:05}-{g:05}],cpu[{:05}-{c:05}]", g - 3, c - 3),
            8,
            4 * (CPUS_PER_GPU_NODE + CPUS_PER_CPU_NODE) as usize,
        ),
    ];
    let mut out = Vec::new();
    for (name, nodes, total_nodes, total_cpus) in parts {
        let mut p = tmpl.clone();
        p.set("name", J::s(name));
        match version {
            Version::V0044 => {
                if let Some(n) = p.get_mut("nodes") {
                    n.set("configured", J::s(&nodes))
                        .set("total", J::n(total_nodes));
                }
                if let Some(cp) = p.get_mut("cpus") {
                    cp.set("total", J::n(total_cpus));
                }
            }
            Version::V0038 => {
                p.set("nodes", J::s(&nodes))
                    .set("total_nodes", J::n(total_nodes))
                    .set("total_cpus", J::n(total_cpus));
            }
        }
        out.push(p);
    }
    replace_list(version, &doc, "partitions", out)
}

/// `/shares` (v0.0.40+): root, `accounts` accounts under it, each with
/// `users_per_account` user associations.
pub fn shares_body(version: Version, shape: &Shape) -> Option<Vec<u8>> {
    if version == Version::V0038 {
        return None;
    }
    let doc = J::parse(&version.fixture("shares"));
    let rows = match doc.get("shares").and_then(|s| s.get("shares")) {
        Some(J::Arr(a)) => a.clone(),
        _ => panic!("fixture has no shares.shares"),
    };
    let kind = |r: &J| match r.get("type") {
        Some(J::Arr(a)) => a.first().cloned(),
        _ => None,
    };
    let root = rows[0].clone();
    let acct = rows
        .iter()
        .find(|r| kind(r) == Some(J::s("ASSOCIATION")) && r.get("parent") != Some(&J::s("")))
        .expect("account row")
        .clone();
    let user = rows
        .iter()
        .find(|r| kind(r) == Some(J::s("USER")) && r.get("parent") != Some(&J::s("root")))
        .expect("user row")
        .clone();
    let mut rng = Rng::new(shape.seed ^ 0x5a5e);
    let mut out = vec![root];
    let mut id = 2u64;
    let f = |x: f64| J::num_obj(Some(format!("{x:?}")));
    for a in 0..shape.accounts {
        let mut r = acct.clone();
        r.set("id", J::n(id))
            .set("name", J::s(&account_name(a)))
            .set("parent", J::s("root"))
            .set("shares", J::num_obj(Some(1 + rng.below(100))))
            .set("usage", J::n(rng.below(10_000_000)))
            .set("effective_usage", f(rng.below(1000) as f64 / 1e5));
        if let Some(fs) = r.get_mut("fairshare") {
            fs.set("level", f(rng.below(2000) as f64 / 1000.0));
        }
        out.push(r);
        id += 1;
        for u in 0..shape.users_per_account {
            let mut r = user.clone();
            r.set("id", J::n(id))
                .set("name", J::s(&user_name(a, u, shape.users_per_account)))
                .set("parent", J::s(&account_name(a)))
                .set("shares", J::num_obj(Some(1)))
                .set("usage", J::n(rng.below(1_000_000)))
                .set("effective_usage", f(rng.below(1000) as f64 / 1e6));
            if let Some(fs) = r.get_mut("fairshare") {
                fs.set("factor", f(rng.below(1000) as f64 / 1000.0))
                    .set("level", f(rng.below(2000) as f64 / 1000.0));
            }
            out.push(r);
            id += 1;
        }
    }
    let mut top = doc.clone();
    if let Some(s) = top.get_mut("shares") {
        s.set("shares", J::Arr(out));
    }
    Some(top.to_pretty(version.empty_nl()))
}

pub fn diag_body(version: Version) -> Vec<u8> {
    version.fixture("diag")
}

pub fn ping_body(version: Version) -> Vec<u8> {
    version.fixture("ping")
}
