//! Normalized cluster model.
//!
//! Every slurmrestd API version parses into these types; metrics are computed
//! only from them. Field semantics are fixed here so adapters cannot drift:
//! memory is always bytes, times are Unix seconds, states are lower-case base
//! states plus upper-case flags, as `scontrol` prints them.

use std::collections::BTreeMap;

/// Trackable resources of one allocation or one node, as parsed from a TRES
/// string such as `cpu=8,mem=32G,node=1,billing=20,gres/gpu=2,gres/gpu:h100=2`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tres {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub nodes: u64,
    pub billing: f64,
    /// `gres/gpu` total.
    pub gpus: u64,
    /// `gres/gpu:<type>` counts, keyed by type (e.g. `h100`).
    pub gpus_by_type: BTreeMap<String, u64>,
}

/// Base job state, lower-case (`squeue` prints the same names upper-case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    Pending,
    Running,
    Suspended,
    Completing,
    Completed,
    Cancelled,
    Failed,
    Timeout,
    NodeFail,
    Preempted,
    BootFail,
    Deadline,
    OutOfMemory,
    /// A state this exporter does not know yet; kept so it still counts.
    Other,
}

impl JobState {
    pub const ALL: [JobState; 14] = [
        JobState::Pending,
        JobState::Running,
        JobState::Suspended,
        JobState::Completing,
        JobState::Completed,
        JobState::Cancelled,
        JobState::Failed,
        JobState::Timeout,
        JobState::NodeFail,
        JobState::Preempted,
        JobState::BootFail,
        JobState::Deadline,
        JobState::OutOfMemory,
        JobState::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Suspended => "suspended",
            JobState::Completing => "completing",
            JobState::Completed => "completed",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
            JobState::Timeout => "timeout",
            JobState::NodeFail => "node_fail",
            JobState::Preempted => "preempted",
            JobState::BootFail => "boot_fail",
            JobState::Deadline => "deadline",
            JobState::OutOfMemory => "out_of_memory",
            JobState::Other => "other",
        }
    }

    /// Parses one Slurm state word (`RUNNING`, `running`, `NODE_FAIL`, ...).
    /// Returns `None` for words that are flags rather than base states.
    pub fn from_slurm(word: &str) -> Option<JobState> {
        let s = match word.to_ascii_uppercase().as_str() {
            "PENDING" => JobState::Pending,
            "RUNNING" => JobState::Running,
            "SUSPENDED" => JobState::Suspended,
            "COMPLETING" => JobState::Completing,
            "COMPLETED" => JobState::Completed,
            "CANCELLED" => JobState::Cancelled,
            "FAILED" => JobState::Failed,
            "TIMEOUT" => JobState::Timeout,
            "NODE_FAIL" => JobState::NodeFail,
            "PREEMPTED" => JobState::Preempted,
            "BOOT_FAIL" => JobState::BootFail,
            "DEADLINE" => JobState::Deadline,
            "OUT_OF_MEMORY" => JobState::OutOfMemory,
            _ => return None,
        };
        Some(s)
    }

    /// True while the job holds resources on nodes.
    pub fn holds_resources(self) -> bool {
        matches!(
            self,
            JobState::Running | JobState::Suspended | JobState::Completing
        )
    }
}

/// GPUs a job holds on one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeGpuAllocation {
    pub node: String,
    /// GPU type from the gres string (`h100`), empty when untyped.
    pub gpu_type: String,
    pub count: u64,
    /// Device indices (`IDX:0-1`), empty when slurmrestd does not give them.
    pub indices: Vec<u32>,
}

/// One job record as slurmrestd lists it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Job {
    pub job_id: u64,
    /// Array parent id; `None` for non-array jobs.
    pub array_job_id: Option<u64>,
    /// Array task id of this record; `None` for a non-array job or for the
    /// pending meta record that stands for several tasks.
    pub array_task_id: Option<u32>,
    /// How many jobs this record stands for, as `squeue -r` counts them: 1,
    /// except for a pending array meta record (`73_[3-9%3]` is 7).
    pub task_count: u64,
    pub name: String,
    pub user: String,
    pub account: String,
    pub partition: String,
    pub qos: String,
    pub state: Option<JobState>,
    /// Upper-case state flags (`COMPLETING`, `CONFIGURING`, `REQUEUED`, ...).
    pub state_flags: Vec<String>,
    /// Pending or hold reason (`Resources`, `Priority`, `JobHeldUser`); `None` when Slurm says `None`.
    pub state_reason: Option<String>,
    /// Node list as a Slurm host list expression (`vm,gpu-node[02-03]`).
    pub nodes: String,
    pub submit_time: Option<i64>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    /// Allocated TRES (empty for jobs that never started).
    pub allocated: Tres,
    /// Per-node GPU allocation with device indices where slurmrestd gives them.
    pub gpu_allocations: Vec<NodeGpuAllocation>,
}

impl Job {
    pub fn state_or_other(&self) -> JobState {
        self.state.unwrap_or(JobState::Other)
    }

    /// The partition a job counts under: a pending job submitted to several
    /// lists them comma-separated; it counts under the first, as squeue's
    /// default format and sreport show it.
    pub fn primary_partition(&self) -> &str {
        primary_partition(&self.partition)
    }
}

/// The first of a comma-separated partition list (see [`Job::primary_partition`]).
pub fn primary_partition(list: &str) -> &str {
    list.split(',').next().unwrap_or(list)
}

/// Base node state, lower-case as `sinfo` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeBaseState {
    Idle,
    Mixed,
    Allocated,
    Down,
    Error,
    Future,
    Unknown,
}

impl NodeBaseState {
    pub const ALL: [NodeBaseState; 7] = [
        NodeBaseState::Idle,
        NodeBaseState::Mixed,
        NodeBaseState::Allocated,
        NodeBaseState::Down,
        NodeBaseState::Error,
        NodeBaseState::Future,
        NodeBaseState::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeBaseState::Idle => "idle",
            NodeBaseState::Mixed => "mixed",
            NodeBaseState::Allocated => "allocated",
            NodeBaseState::Down => "down",
            NodeBaseState::Error => "error",
            NodeBaseState::Future => "future",
            NodeBaseState::Unknown => "unknown",
        }
    }

    pub fn from_slurm(word: &str) -> Option<NodeBaseState> {
        let s = match word.to_ascii_uppercase().as_str() {
            "IDLE" => NodeBaseState::Idle,
            "MIXED" => NodeBaseState::Mixed,
            "ALLOCATED" | "ALLOC" => NodeBaseState::Allocated,
            "DOWN" => NodeBaseState::Down,
            "ERROR" => NodeBaseState::Error,
            "FUTURE" => NodeBaseState::Future,
            "UNKNOWN" => NodeBaseState::Unknown,
            _ => return None,
        };
        Some(s)
    }
}

/// Node state flags the exporter counts explicitly; any other flag is kept
/// verbatim in [`Node::flags`].
pub const NODE_FLAGS: &[&str] = &[
    "DRAIN",
    "DRAINING",
    "DRAINED",
    "NOT_RESPONDING",
    "POWERED_DOWN",
    "POWERING_DOWN",
    "POWERING_UP",
    "POWER_DOWN",
    "CLOUD",
    "MAINTENANCE",
    "RESERVED",
    "COMPLETING",
    "FAIL",
    "REBOOT_REQUESTED",
    "REBOOT_ISSUED",
    "PLANNED",
    "INVALID_REG",
    "DYNAMIC_NORM",
    "BLOCKED",
];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub name: String,
    pub state: Option<NodeBaseState>,
    /// Upper-case flags (`DRAIN`, `NOT_RESPONDING`, `CLOUD`, ...), sorted.
    pub flags: Vec<String>,
    /// Drain/down reason; empty when none.
    pub reason: String,
    pub partitions: Vec<String>,
    pub cpus: u64,
    pub allocated_cpus: u64,
    pub memory_bytes: u64,
    pub allocated_memory_bytes: u64,
    /// Free memory as the node reports it, when known.
    pub free_memory_bytes: Option<u64>,
    /// 1-minute load average × 1 (Slurm reports ×100; adapters divide).
    pub cpu_load: Option<f64>,
    /// GPUs configured (from `gres`), total and by type.
    pub gpus: u64,
    /// GPUs in use (from `gres_used`).
    pub allocated_gpus: u64,
    pub gpu_type: String,
}

impl Node {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Partition {
    pub name: String,
    /// Node names, host list expanded.
    pub nodes: Vec<String>,
    /// Total CPUs as slurmctld reports them for the partition.
    pub total_cpus: u64,
    pub total_nodes: u64,
    /// `UP`, `DOWN`, `DRAIN`, `INACTIVE`, upper-case.
    pub state: String,
    /// Totals from the partition's TRES string (`scontrol show partition`
    /// `TRES=cpu=…,node=4,gres/gpu=32`), each `None` when the string lacks
    /// that key (a `gres/gpu` that is not in AccountingStorageTRES) or is
    /// absent. They count nodes that `/nodes` leaves out (FUTURE).
    pub tres_cpus: Option<u64>,
    pub tres_nodes: Option<u64>,
    pub tres_gpus: Option<u64>,
}

/// One row of `sshare -a -l`: an account (user `None`) or an association of a
/// user under an account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Share {
    pub account: String,
    pub user: Option<String>,
    /// Parent account; empty for `root`.
    pub parent: String,
    pub raw_shares: Option<f64>,
    pub normalized_shares: f64,
    pub raw_usage: f64,
    pub effective_usage: f64,
    /// Fairshare factor (`FairShare` column; `Level FS` under fair tree for accounts).
    pub fairshare: Option<f64>,
    /// Decayed TRES usage in TRES-seconds by TRES name (`tres.usage`; sshare's
    /// `GrpTRESRaw` in minutes): what Slurm counts against `GrpTRESMins`.
    /// Memory stays in MB-seconds as Slurm counts it.
    pub tres_usage_seconds: Vec<(String, f64)>,
    /// TRES-seconds still allocated to running jobs (`tres.run_seconds`;
    /// sshare's `TRESRunMins` in minutes): what counts against `GrpTRESRunMins`.
    pub tres_run_seconds: Vec<(String, f64)>,
}

/// A limit Slurm enforces on an association or a QOS, by sacctmgr's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitKind {
    /// `GrpTRES`: TRES in use by all jobs of the association/QOS (and children).
    GrpTres,
    /// `GrpTRESMins`: decayed TRES-minutes ever used; reaching it holds and, with
    /// `safe`, ends jobs.
    GrpTresMins,
    /// `GrpTRESRunMins`: TRES-minutes still allocated to running jobs.
    GrpTresRunMins,
    MaxTresPerJob,
    MaxTresPerNode,
    /// QOS `MaxTRESPerUser` (`MaxTRESPU`).
    MaxTresPerUser,
    /// QOS `MaxTRESPerAccount` (`MaxTRESPA`).
    MaxTresPerAccount,
    MaxTresMinsPerJob,
    /// QOS `MaxTRESRunMinsPerUser`.
    MaxTresRunMinsPerUser,
    /// QOS `MaxTRESRunMinsPerAccount`.
    MaxTresRunMinsPerAccount,
    /// Running jobs of the association (and children) / QOS.
    GrpJobs,
    /// Running plus pending jobs (`GrpSubmitJobs`, sacctmgr column `GrpSubmit`).
    GrpSubmit,
    /// Association `MaxJobs`: running jobs of this association.
    MaxJobs,
    /// Association `MaxSubmitJobs` (column `MaxSubmit`).
    MaxSubmit,
    /// QOS `MaxJobsPerUser` (`MaxJobsPU`).
    MaxJobsPerUser,
    MaxJobsPerAccount,
    /// QOS `MaxSubmitJobsPerUser` (`MaxSubmitPU`).
    MaxSubmitPerUser,
    MaxSubmitPerAccount,
}

impl LimitKind {
    /// The name sacctmgr uses (`limit` label value).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::GrpTres => "GrpTRES",
            LimitKind::GrpTresMins => "GrpTRESMins",
            LimitKind::GrpTresRunMins => "GrpTRESRunMins",
            LimitKind::MaxTresPerJob => "MaxTRESPerJob",
            LimitKind::MaxTresPerNode => "MaxTRESPerNode",
            LimitKind::MaxTresPerUser => "MaxTRESPerUser",
            LimitKind::MaxTresPerAccount => "MaxTRESPerAccount",
            LimitKind::MaxTresMinsPerJob => "MaxTRESMinsPerJob",
            LimitKind::MaxTresRunMinsPerUser => "MaxTRESRunMinsPerUser",
            LimitKind::MaxTresRunMinsPerAccount => "MaxTRESRunMinsPerAccount",
            LimitKind::GrpJobs => "GrpJobs",
            LimitKind::GrpSubmit => "GrpSubmit",
            LimitKind::MaxJobs => "MaxJobs",
            LimitKind::MaxSubmit => "MaxSubmit",
            LimitKind::MaxJobsPerUser => "MaxJobsPerUser",
            LimitKind::MaxJobsPerAccount => "MaxJobsPerAccount",
            LimitKind::MaxSubmitPerUser => "MaxSubmitPerUser",
            LimitKind::MaxSubmitPerAccount => "MaxSubmitPerAccount",
        }
    }

    /// Whether the limit is in TRES-minutes rather than TRES counts.
    pub fn is_minutes(self) -> bool {
        matches!(
            self,
            LimitKind::GrpTresMins
                | LimitKind::GrpTresRunMins
                | LimitKind::MaxTresMinsPerJob
                | LimitKind::MaxTresRunMinsPerUser
                | LimitKind::MaxTresRunMinsPerAccount
        )
    }
}

/// One TRES of a TRES limit, in Slurm's unit: a count (memory in MB) or,
/// for `*Mins` limits, TRES-minutes. Only set limits are listed.
#[derive(Debug, Clone, PartialEq)]
pub struct TresLimit {
    pub limit: LimitKind,
    /// `cpu`, `mem`, `node`, `billing`, `gres/gpu`, `license/matlab`, ...
    pub tres: String,
    pub value: u64,
}

/// The limits set on an association or QOS; unset ones are absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub tres: Vec<TresLimit>,
    /// Job-count limits (`GrpJobs`, `MaxSubmit`, ...).
    pub jobs: Vec<(LimitKind, u64)>,
}

/// One association from `/slurmdb/vX/associations` (`sacctmgr show assoc`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Association {
    pub cluster: String,
    pub account: String,
    /// `None` for the account's own association.
    pub user: Option<String>,
    /// `None` unless the association is per partition.
    pub partition: Option<String>,
    pub parent: String,
    pub qos: Vec<String>,
    pub limits: Limits,
}

/// One QOS from `/slurmdb/vX/qos` (`sacctmgr show qos`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Qos {
    pub name: String,
    pub limits: Limits,
}

/// One RPC row of `sdiag`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RpcStat {
    pub name: String,
    pub count: u64,
    pub total_time_seconds: f64,
}

/// Scheduler statistics from `/diag` (`sdiag`). Counters reset at
/// midnight or on `sdiag -r`; Prometheus `rate()` copes with that.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diag {
    pub server_thread_count: u64,
    pub agent_queue_size: u64,
    pub agent_count: u64,
    pub dbd_agent_queue_size: u64,
    pub jobs_submitted: u64,
    pub jobs_started: u64,
    pub jobs_completed: u64,
    pub jobs_canceled: u64,
    pub jobs_failed: u64,
    pub schedule_cycle_last_seconds: f64,
    pub schedule_cycle_max_seconds: f64,
    pub schedule_cycle_mean_seconds: f64,
    pub schedule_cycle_total: u64,
    pub schedule_queue_length: u64,
    pub backfill_active: bool,
    pub backfill_cycle_last_seconds: f64,
    pub backfill_cycle_max_seconds: f64,
    pub backfill_cycle_mean_seconds: f64,
    pub backfill_cycle_total: u64,
    pub backfill_last_depth: u64,
    pub backfill_queue_length: u64,
    pub backfilled_jobs_total: u64,
    pub rpcs_by_type: Vec<RpcStat>,
    pub rpcs_by_user: Vec<RpcStat>,
}
