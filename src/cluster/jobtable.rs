//! The compact per-job table behind incremental `/jobs` polling.
//!
//! A full `/jobs` poll parses into a [`JobTable`]: per job only what
//! `collectors::queue::JobAggregates` and the usage accountant need, with partition, account,
//! user, reasons, node names and GPU types interned (`Arc<str>`, and one
//! shared `Arc<Assoc>` per (partition, account, user)), so 100k jobs cost
//! about a hundred bytes each. The published aggregates are rebuilt from
//! the table every poll ([`JobTable::aggregates`]) through the same
//! `JobAggregates::add` a streamed parse uses, so a table built from a
//! full poll gives exactly the metrics the streamed parse gives.
//!
//! Between full polls the table is patched from `/slurm/vX/jobs/state/`
//! (see [`JobTable::diff`]): jobs gone from the list are removed, new jobs
//! and jobs whose state changed are re-fetched one by one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::usage::{Alloc, UsageRow};
use crate::model::{Job, JobState};
use crate::slurmrestd::JobSink;

/// (partition, account, user) of a job, shared by every job that has it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Assoc {
    /// First partition of a multi-partition job, as squeue shows it.
    pub partition: Arc<str>,
    pub account: Arc<str>,
    pub user: Arc<str>,
}

/// Interns strings and associations. A full poll starts a fresh table with a
/// fresh interner, so strings no job uses any more are dropped then.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    strs: HashSet<Arc<str>>,
    assocs: HashSet<Arc<Assoc>>,
    /// Pending reasons, behind a thin pointer (8 bytes in each job).
    reasons: HashMap<String, Arc<String>>,
    /// (base state, sorted flags) -> small id; compared with `/jobs/state`.
    states: HashMap<(Option<JobState>, Vec<String>), u16>,
}

/// Id of a (state, flags) combination that is never equal to another: used
/// when more than 65,534 combinations were seen (never in practice), so the
/// job is simply re-fetched.
const STATE_OVERFLOW: u16 = u16::MAX;

fn state_key(state: Option<JobState>, flags: &[String]) -> (Option<JobState>, Vec<String>) {
    let mut flags = flags.to_vec();
    flags.sort_unstable();
    flags.dedup();
    (state, flags)
}

impl Interner {
    pub fn str(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strs.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strs.insert(a.clone());
        a
    }

    pub fn assoc(&mut self, partition: &str, account: &str, user: &str) -> Arc<Assoc> {
        let a = Assoc {
            partition: self.str(partition),
            account: self.str(account),
            user: self.str(user),
        };
        if let Some(x) = self.assocs.get(&a) {
            return x.clone();
        }
        let x = Arc::new(a);
        self.assocs.insert(x.clone());
        x
    }

    pub fn reason(&mut self, s: &str) -> Arc<String> {
        if let Some(a) = self.reasons.get(s) {
            return a.clone();
        }
        let a = Arc::new(s.to_string());
        self.reasons.insert(s.to_string(), a.clone());
        a
    }

    /// The id of a job's (base state, flags), as the adapters normalize them.
    pub fn state_id(&mut self, state: Option<JobState>, flags: &[String]) -> u16 {
        let key = state_key(state, flags);
        if let Some(id) = self.states.get(&key) {
            return *id;
        }
        let id = self.states.len();
        if id >= usize::from(STATE_OVERFLOW) {
            return STATE_OVERFLOW;
        }
        self.states.insert(key, id as u16);
        id as u16
    }

    /// Like [`Interner::state_id`] without adding: `None` for a combination
    /// no job in the table has.
    pub fn find_state_id(&self, state: Option<JobState>, flags: &[String]) -> Option<u16> {
        self.states.get(&state_key(state, flags)).copied()
    }

    fn heap_bytes(&self) -> usize {
        let strs: usize = self.strs.iter().map(|s| s.len() + 16).sum();
        strs + self.strs.capacity() * 17
            + self.assocs.len() * (48 + 16)
            + self.assocs.capacity() * 9
            + self
                .reasons
                .keys()
                .map(|k| 2 * k.len() + 24 + 40)
                .sum::<usize>()
            + self.states.len() * 64
    }
}

/// One running job's GPUs on one node (`slurm_job_gpus` series).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuRow {
    pub node: Arc<str>,
    pub gpus: GpuSel,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GpuSel {
    /// Device indices 0-63 (bit i = index i): one series each, value 1.
    Mask(u64),
    /// One device index (64 and up, or listed twice): one series, value 1.
    Index(u32),
    /// No indices (`gpu=""`): one series with this count.
    Count(u64),
}

/// Usage-relevant times of a job that holds or held resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageTimes {
    pub start: i64,
    pub end: Option<i64>,
    pub suspended: bool,
}

/// Resources of a job that holds resources or produces a usage row.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub gpus: u64,
    pub billing: f64,
    pub gpus_by_type: Box<[(Arc<str>, u64)]>,
    /// Filled only while the job holds resources.
    pub gpu_rows: Box<[GpuRow]>,
    /// `Some` when [`UsageRow::from_job`] gives a row.
    pub usage: Option<UsageTimes>,
}

/// One job, as the aggregates see it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactJob {
    pub assoc: Arc<Assoc>,
    /// Pending reason (`"None"` when Slurm gives none); `None` unless pending.
    pub reason: Option<Arc<String>>,
    pub held: Option<Box<Held>>,
    /// Jobs this record stands for (a pending array meta record: its tasks).
    pub task_count: u32,
    /// Interned (base state, flags) as listed, compared with `/jobs/state`.
    pub state_id: u16,
    /// State as counted: `COMPLETING`-flagged jobs count as completing.
    pub state: JobState,
}

impl CompactJob {
    pub fn from_job(job: &Job, int: &mut Interner) -> CompactJob {
        // squeue shows a finished job whose nodes are still being released as
        // COMPLETING (CG); it still holds its resources.
        let state = if job.state_flags.iter().any(|f| f == "COMPLETING") {
            JobState::Completing
        } else {
            job.state_or_other()
        };
        let partition = job.primary_partition();
        let assoc = int.assoc(partition, &job.account, &job.user);
        let reason = (state == JobState::Pending)
            .then(|| int.reason(job.state_reason.as_deref().unwrap_or("None")));
        let usage = UsageRow::from_job(job).map(|r| UsageTimes {
            start: r.start,
            end: r.end,
            suspended: r.suspended,
        });
        let holds = state.holds_resources();
        let held = (holds || usage.is_some()).then(|| {
            let t = &job.allocated;
            let gpu_rows = if holds && (t.gpus > 0 || !job.gpu_allocations.is_empty()) {
                gpu_rows(job, int)
            } else {
                Vec::new()
            };
            Box::new(Held {
                cpus: t.cpus,
                memory_bytes: t.memory_bytes,
                gpus: t.gpus,
                billing: t.billing,
                gpus_by_type: t
                    .gpus_by_type
                    .iter()
                    .map(|(k, v)| (int.str(k), *v))
                    .collect(),
                gpu_rows: gpu_rows.into_boxed_slice(),
                usage,
            })
        });
        CompactJob {
            assoc,
            reason,
            held,
            state_id: int.state_id(job.state, &job.state_flags),
            task_count: u32::try_from(job.task_count.max(1)).unwrap_or(u32::MAX),
            state,
        }
    }

    /// The usage row [`UsageRow::from_job`] gave for this job, if any.
    pub fn usage_row(&self, job_id: u64) -> Option<UsageRow> {
        let h = self.held.as_ref()?;
        let u = h.usage?;
        Some(UsageRow {
            job_id,
            start: u.start,
            end: u.end,
            suspended: u.suspended,
            account: self.assoc.account.to_string(),
            user: self.assoc.user.to_string(),
            partition: self.assoc.partition.to_string(),
            alloc: Alloc::from_counts(
                h.cpus,
                h.memory_bytes,
                h.billing,
                h.gpus,
                h.gpus_by_type.iter().map(|(k, v)| (&**k, *v)),
            ),
        })
    }

    fn heap_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |h| {
            std::mem::size_of::<Held>()
                + h.gpus_by_type.len() * std::mem::size_of::<(Arc<str>, u64)>()
                + h.gpu_rows.len() * std::mem::size_of::<GpuRow>()
        })
    }
}

/// GPU rows of a job holding resources: one per device index, or one per
/// node with the count when there are no indices, plus the TRES GPUs the
/// per-node detail does not show.
fn gpu_rows(job: &Job, int: &mut Interner) -> Vec<GpuRow> {
    let mut rows = Vec::new();
    let mut listed = 0;
    for alloc in &job.gpu_allocations {
        let node = int.str(&alloc.node);
        if alloc.indices.is_empty() {
            rows.push(GpuRow {
                node,
                gpus: GpuSel::Count(alloc.count),
            });
        } else {
            let mut mask = 0u64;
            for &idx in &alloc.indices {
                if idx < 64 && mask & (1 << idx) == 0 {
                    mask |= 1 << idx;
                } else {
                    rows.push(GpuRow {
                        node: node.clone(),
                        gpus: GpuSel::Index(idx),
                    });
                }
            }
            if mask != 0 {
                rows.push(GpuRow {
                    node,
                    gpus: GpuSel::Mask(mask),
                });
            }
        }
        listed += alloc.count.max(alloc.indices.len() as u64);
    }
    // TRES says more GPUs than the per-node detail shows (detail missing in
    // this API version): keep the total so per-account sums stay right.
    if job.allocated.gpus > listed {
        rows.push(GpuRow {
            node: int.str(&job.nodes),
            gpus: GpuSel::Count(job.allocated.gpus - listed),
        });
    }
    rows
}

/// What a `/jobs/state` list says must change in the table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDiff {
    /// Jobs in the table but no longer listed.
    pub removed: Vec<u64>,
    /// Jobs listed but not in the table, or whose state or task count changed.
    pub refetch: Vec<u64>,
}

/// Why a `/jobs/state` list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownId(pub String);

/// A `/jobs/state` id: `"12"`, or `"<A>_<task>"` where A is the task's own
/// job id (Slurm 25.11, 26.05) or its array's job id (25.05; and always for
/// the tasks of a pending meta record). Other forms (heterogeneous `"12+0"`)
/// are refused: the caller polls in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateId {
    Job(u64),
    Task(u64, u32),
}

pub fn parse_state_id(id: &str) -> Option<StateId> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match id.split_once('_') {
        Some((a, t)) if digits(a) && digits(t) => {
            Some(StateId::Task(a.parse().ok()?, t.parse().ok()?))
        }
        None if digits(id) => Some(StateId::Job(id.parse().ok()?)),
        _ => None,
    }
}

/// All jobs from the last full `/jobs` poll, patched since.
#[derive(Debug, Clone, Default)]
pub struct JobTable {
    pub jobs: HashMap<u64, CompactJob>,
    /// Array records only: job id -> (array job id, task id; `None` for a
    /// pending meta record).
    arrays: HashMap<u64, (u64, Option<u32>)>,
    /// (array job id, task id) -> job id of an array task record.
    tasks: HashMap<(u64, u32), u64>,
    interner: Interner,
}

impl JobSink for JobTable {
    fn job(&mut self, job: Job) {
        self.upsert(&job);
    }
}

impl JobTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn upsert(&mut self, job: &Job) {
        self.remove(job.job_id);
        let c = CompactJob::from_job(job, &mut self.interner);
        self.jobs.insert(job.job_id, c);
        if let Some(array) = job.array_job_id.filter(|&a| a > 0) {
            self.arrays.insert(job.job_id, (array, job.array_task_id));
            if let Some(t) = job.array_task_id {
                self.tasks.insert((array, t), job.job_id);
            }
        }
    }

    pub fn remove(&mut self, job_id: u64) {
        self.jobs.remove(&job_id);
        if let Some((array, Some(t))) = self.arrays.remove(&job_id) {
            if self.tasks.get(&(array, t)) == Some(&job_id) {
                self.tasks.remove(&(array, t));
            }
        }
    }

    /// The job record a `/jobs/state` id stands for, if the table has it.
    fn resolve(&self, id: StateId) -> Option<u64> {
        match id {
            StateId::Job(j) => self.jobs.contains_key(&j).then_some(j),
            StateId::Task(a, t) => self.tasks.get(&(a, t)).copied().or_else(|| {
                // Task t listed under its own job id a, or a pending task of
                // meta record a.
                match self.arrays.get(&a) {
                    Some((_, Some(task))) if *task == t => Some(a),
                    Some((_, None)) => Some(a),
                    _ => None,
                }
            }),
        }
    }

    /// The jobs in id order (so the usage rows built from them come out in
    /// a stable order): what `JobAggregates::from_table` adds up.
    pub fn jobs_by_id(&self) -> impl Iterator<Item = (u64, &CompactJob)> + '_ {
        let mut ids: Vec<u64> = self.jobs.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(move |id| self.jobs.get(&id).map(|c| (id, c)))
    }

    /// Compares the table with a `/jobs/state` list (`(id, state words)`).
    /// A pending array meta record is listed once per task (`34_3` … `34_9`),
    /// so the task count is compared too. An id the table cannot place (a
    /// new job, or a new array task) is re-fetched by its leading number.
    pub fn diff(&self, listed: &[(String, Vec<String>)]) -> Result<StateDiff, UnknownId> {
        // (state id, entries); `None`: a state no job in the table has.
        let mut seen: HashMap<u64, (Option<u16>, u32)> = HashMap::with_capacity(self.jobs.len());
        let mut refetch: HashSet<u64> = HashSet::new();
        for (raw, words) in listed {
            let id = parse_state_id(raw).ok_or_else(|| UnknownId(raw.clone()))?;
            let Some(job_id) = self.resolve(id) else {
                refetch.insert(match id {
                    StateId::Job(j) | StateId::Task(j, _) => j,
                });
                continue;
            };
            let (state, flags) = crate::slurmrestd::job_state_words(words);
            let id = self
                .interner
                .find_state_id(state, &flags)
                .filter(|&i| i != STATE_OVERFLOW);
            let e = seen.entry(job_id).or_insert((id, 0));
            if e.0 != id {
                // Tasks of one record in different states: the record changed.
                e.0 = None;
            }
            e.1 = e.1.saturating_add(1);
        }
        for (id, (h, n)) in &seen {
            match self.jobs.get(id) {
                // The task count matters (and is known) only while pending:
                // a finished meta record counts once whatever it lists.
                Some(c)
                    if *h == Some(c.state_id)
                        && (c.state != JobState::Pending || c.task_count == *n) => {}
                _ => {
                    refetch.insert(*id);
                }
            }
        }
        let mut d = StateDiff {
            removed: self
                .jobs
                .keys()
                .filter(|id| !seen.contains_key(id) && !refetch.contains(id))
                .copied()
                .collect(),
            refetch: refetch.into_iter().collect(),
        };
        d.refetch.sort_unstable();
        d.removed.sort_unstable();
        Ok(d)
    }

    /// Whether every id of a `/jobs/state` list now has its record here.
    pub fn places_all(&self, listed: &[(String, Vec<String>)]) -> bool {
        listed
            .iter()
            .all(|(raw, _)| parse_state_id(raw).is_some_and(|id| self.resolve(id).is_some()))
    }

    /// Approximate heap bytes held by the table (entries, boxes, interned strings).
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u64, CompactJob)>() + 1;
        self.jobs.capacity() * slot
            + self
                .jobs
                .values()
                .map(CompactJob::heap_bytes)
                .sum::<usize>()
            + self.interner.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_ids() {
        assert_eq!(parse_state_id("12"), Some(StateId::Job(12)));
        assert_eq!(parse_state_id("36_0"), Some(StateId::Task(36, 0)));
        assert_eq!(parse_state_id("12+0"), None);
        assert_eq!(parse_state_id("12_"), None);
        assert_eq!(parse_state_id(""), None);
        assert_eq!(parse_state_id("_1"), None);
    }

    #[test]
    fn compact_job_is_small() {
        assert_eq!(std::mem::size_of::<CompactJob>(), 32);
        assert_eq!(std::mem::size_of::<GpuRow>(), 32);
    }
}
