//! Version-independent normalization: each adapter maps its wire structs to
//! the plain `*Fields` here, and these functions apply the model's rules
//! (state splitting, units, GPU attribution) the same way for every version.

use crate::model::{Job, JobState, Node, NodeBaseState, NodeGpuAllocation, Partition, Tres};
use crate::slurm_text::{array, gres, hostlist, tres};

const MIB: u64 = 1024 * 1024;

/// MB → bytes; a value that overflows is garbage and reads as 0.
pub(crate) fn mb_to_bytes(mb: u64) -> u64 {
    mb.checked_mul(MIB).unwrap_or(0)
}

/// A job as every API version can describe it.
#[derive(Debug, Default)]
pub(crate) struct JobFields {
    pub job_id: Option<u64>,
    pub array_job_id: Option<u64>,
    pub array_task_id: Option<u64>,
    pub array_task_string: String,
    pub name: String,
    pub user: String,
    pub account: String,
    pub partition: String,
    pub qos: String,
    pub state_words: Vec<String>,
    pub state_reason: String,
    pub nodes: String,
    pub submit_time: Option<i64>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub tres_alloc_str: String,
    pub gres_detail: Vec<String>,
    /// From `job_resources`, when the job has one.
    pub resources: Option<JobResources>,
}

#[derive(Debug, Default)]
pub(crate) struct JobResources {
    /// Allocated node list (host list expression).
    pub nodes: String,
    pub cpus: u64,
    pub memory_mb: u64,
    pub node_count: u64,
}

pub(crate) fn job(f: JobFields) -> Job {
    let (state, state_flags) = job_state(&f.state_words);
    let array_task_id = f.array_task_id.and_then(|t| u32::try_from(t).ok());
    let array_job_id = f.array_job_id.filter(|id| *id > 0);
    // A pending array meta record (`73_[3-9%3]`) stands for all its tasks.
    let task_count = if state == Some(JobState::Pending)
        && array_job_id.is_some()
        && array_task_id.is_none()
        && !f.array_task_string.is_empty()
    {
        array::count_tasks(&f.array_task_string).unwrap_or(1)
    } else {
        1
    };

    let alloc_nodes = match &f.resources {
        Some(r) if !r.nodes.is_empty() => r.nodes.as_str(),
        _ => f.nodes.as_str(),
    };
    let node_names = hostlist::expand(alloc_nodes).unwrap_or_default();
    let mut gpu_allocations = gpu_allocations(&f.gres_detail, &node_names);

    let allocated = match tres::parse(&f.tres_alloc_str) {
        Some(t) if !f.tres_alloc_str.trim().is_empty() => t,
        _ => f
            .resources
            .as_ref()
            .map(|r| Tres {
                cpus: r.cpus,
                memory_bytes: mb_to_bytes(r.memory_mb),
                nodes: r.node_count,
                gpus: gpu_allocations.iter().map(|a| a.count).sum(),
                ..Tres::default()
            })
            .unwrap_or_default(),
    };

    // Without gres_detail, a single-node job's GPUs can still be placed.
    let holds = state.is_some_and(JobState::holds_resources);
    if gpu_allocations.is_empty() && holds && allocated.gpus > 0 && node_names.len() == 1 {
        let gpu_type = match allocated.gpus_by_type.keys().collect::<Vec<_>>().as_slice() {
            [one] => (*one).clone(),
            _ => String::new(),
        };
        gpu_allocations.push(NodeGpuAllocation {
            node: node_names[0].clone(),
            gpu_type,
            count: allocated.gpus,
            indices: Vec::new(),
        });
    }

    Job {
        job_id: f.job_id.unwrap_or(0),
        array_job_id,
        array_task_id,
        task_count,
        name: f.name,
        user: f.user,
        account: f.account,
        partition: f.partition,
        qos: f.qos,
        state,
        state_flags,
        state_reason: reason(f.state_reason),
        nodes: f.nodes,
        submit_time: f.submit_time.filter(|t| *t > 0),
        start_time: f.start_time.filter(|t| *t > 0),
        end_time: f.end_time.filter(|t| *t > 0),
        allocated,
        gpu_allocations,
    }
}

/// `None` for Slurm's `None` and for empty reasons.
fn reason(r: String) -> Option<String> {
    let t = r.trim();
    (!t.is_empty() && t != "None").then(|| t.to_string())
}

/// Base state is the first word that names one; the rest are flags.
/// `COMPLETING` is a flag next to a base state (`["COMPLETED","COMPLETING"]`)
/// and the base state only when it stands alone (v0.0.38's string form).
pub(crate) fn job_state(words: &[String]) -> (Option<JobState>, Vec<String>) {
    let base_idx = words
        .iter()
        .position(|w| w != "COMPLETING" && JobState::from_slurm(w).is_some())
        .or_else(|| words.iter().position(|w| JobState::from_slurm(w).is_some()));
    let state = base_idx.and_then(|i| JobState::from_slurm(&words[i]));
    let mut flags: Vec<String> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if Some(i) != base_idx && !flags.contains(w) {
            flags.push(w.clone());
        }
    }
    (state, flags)
}

/// `gres_detail[i]` describes the i-th allocated node.
fn gpu_allocations(details: &[String], nodes: &[String]) -> Vec<NodeGpuAllocation> {
    let mut out = Vec::new();
    for (detail, node) in details.iter().zip(nodes) {
        for item in gres::parse_list(detail).unwrap_or_default() {
            if item.name != "gpu" || item.count == 0 {
                continue;
            }
            out.push(NodeGpuAllocation {
                node: node.clone(),
                gpu_type: item.gres_type.unwrap_or_default(),
                count: item.count,
                indices: item.indices,
            });
        }
    }
    out
}

/// A node as every API version can describe it.
#[derive(Debug, Default)]
pub(crate) struct NodeFields {
    pub name: String,
    pub state_words: Vec<String>,
    pub reason: String,
    pub partitions: Vec<String>,
    pub cpus: Option<u64>,
    pub alloc_cpus: Option<u64>,
    pub real_memory_mb: Option<u64>,
    pub alloc_memory_mb: Option<u64>,
    pub free_memory_mb: Option<u64>,
    /// Load × 100, as Slurm reports it.
    pub cpu_load: Option<f64>,
    pub gres: String,
    pub gres_used: String,
}

pub(crate) fn node(f: NodeFields) -> Node {
    let (state, flags) = node_state(&f.state_words);
    let configured = gres::gpus(&f.gres).unwrap_or_default();
    let used = gres::gpus(&f.gres_used).unwrap_or_default();
    Node {
        name: f.name,
        state,
        flags,
        reason: f.reason.trim().to_string(),
        partitions: f.partitions,
        cpus: f.cpus.unwrap_or(0),
        allocated_cpus: f.alloc_cpus.unwrap_or(0),
        memory_bytes: f.real_memory_mb.map(mb_to_bytes).unwrap_or(0),
        allocated_memory_bytes: f.alloc_memory_mb.map(mb_to_bytes).unwrap_or(0),
        free_memory_bytes: f.free_memory_mb.map(mb_to_bytes),
        cpu_load: f.cpu_load.filter(|l| *l >= 0.0).map(|l| l / 100.0),
        gpus: configured.total,
        allocated_gpus: used.total,
        gpu_type: configured.type_label(),
    }
}

/// First base word is the base state (`["IDLE","DRAIN"]`, `["DOWN","NOT_RESPONDING"]`);
/// every other word is a flag. Flags come back sorted and deduplicated.
pub(crate) fn node_state(words: &[String]) -> (Option<NodeBaseState>, Vec<String>) {
    let base_idx = words
        .iter()
        .position(|w| NodeBaseState::from_slurm(w).is_some());
    let state = base_idx.and_then(|i| NodeBaseState::from_slurm(&words[i]));
    let mut flags: Vec<String> = words
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != base_idx)
        .map(|(_, w)| w.clone())
        .collect();
    flags.sort();
    flags.dedup();
    (state, flags)
}

#[derive(Debug, Default)]
pub(crate) struct PartitionFields {
    pub name: String,
    pub nodes: String,
    pub total_cpus: Option<u64>,
    pub total_nodes: Option<u64>,
    pub state_words: Vec<String>,
    /// The partition's configured TRES string (v0.0.38 `tres`, v0.0.40+
    /// `tres.configured`); empty when absent.
    pub tres: String,
}

pub(crate) fn partition(f: PartitionFields) -> Partition {
    let (tres_cpus, tres_nodes, tres_gpus) = partition_tres(&f.tres);
    Partition {
        name: f.name,
        nodes: hostlist::expand(&f.nodes).unwrap_or_default(),
        total_cpus: f.total_cpus.unwrap_or(0),
        total_nodes: f.total_nodes.unwrap_or(0),
        state: f.state_words.join("+"),
        tres_cpus,
        tres_nodes,
        tres_gpus,
    }
}

/// CPU, node and GPU totals of a partition TRES string, each only when its
/// key is present (a missing `gres/gpu` means "not tracked", not zero). An
/// invalid string gives nothing.
fn partition_tres(s: &str) -> (Option<u64>, Option<u64>, Option<u64>) {
    let Some(t) = tres::parse(s) else {
        return (None, None, None);
    };
    let has = |pred: &dyn Fn(&str) -> bool| {
        s.split(',')
            .filter_map(|e| e.split_once('='))
            .any(|(k, _)| pred(k.trim()))
    };
    (
        has(&|k| k == "cpu").then_some(t.cpus),
        has(&|k| k == "node").then_some(t.nodes),
        has(&|k| k == "gres/gpu" || k.starts_with("gres/gpu:")).then_some(t.gpus),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn partition_tres_totals() {
        assert_eq!(
            partition_tres(
                "cpu=256,mem=1000G,node=4,billing=570,gres/gpu=32,gres/gpu:h100=32,license/ansys=4"
            ),
            (Some(256), Some(4), Some(32))
        );
        assert_eq!(
            partition_tres("gres/gpu:a100=4,gres/gpu:h100=8"),
            (None, None, Some(12))
        );
        // gres/gpu not tracked: unknown, not zero.
        assert_eq!(
            partition_tres("cpu=64,mem=250G,node=1"),
            (Some(64), Some(1), None)
        );
        for bad in ["", "cpu", "cpu=x,node=1", "node=-1"] {
            assert_eq!(partition_tres(bad).2, None, "{bad}");
        }
        assert_eq!(partition_tres("cpu=x,node=1"), (None, None, None));
    }

    #[test]
    fn job_states() {
        assert_eq!(
            job_state(&w(&["RUNNING"])),
            (Some(JobState::Running), vec![])
        );
        assert_eq!(
            job_state(&w(&["COMPLETED", "COMPLETING"])),
            (Some(JobState::Completed), w(&["COMPLETING"]))
        );
        assert_eq!(
            job_state(&w(&["COMPLETING"])),
            (Some(JobState::Completing), vec![])
        );
        assert_eq!(
            job_state(&w(&["PENDING", "REQUEUED", "REQUEUED"])),
            (Some(JobState::Pending), w(&["REQUEUED"]))
        );
        assert_eq!(job_state(&w(&["WEIRD"])), (None, w(&["WEIRD"])));
        assert_eq!(job_state(&[]), (None, vec![]));
    }

    #[test]
    fn node_states() {
        assert_eq!(
            node_state(&w(&["IDLE", "DRAIN"])),
            (Some(NodeBaseState::Idle), w(&["DRAIN"]))
        );
        assert_eq!(
            node_state(&w(&["DOWN", "NOT_RESPONDING", "DRAIN"])),
            (Some(NodeBaseState::Down), w(&["DRAIN", "NOT_RESPONDING"]))
        );
        assert_eq!(node_state(&w(&["DRAIN"])), (None, w(&["DRAIN"])));
    }

    #[test]
    fn pending_array_meta_counts_tasks() {
        let j = job(JobFields {
            array_job_id: Some(10),
            array_task_string: "3-9%3".into(),
            state_words: w(&["PENDING"]),
            state_reason: "JobArrayTaskLimit".into(),
            ..JobFields::default()
        });
        assert_eq!(j.task_count, 7);
        assert_eq!(j.array_task_id, None);
        assert_eq!(j.state_reason.as_deref(), Some("JobArrayTaskLimit"));
    }

    #[test]
    fn falls_back_to_job_resources() {
        let j = job(JobFields {
            state_words: w(&["RUNNING"]),
            nodes: "n[1-2]".into(),
            gres_detail: w(&["gpu:a100:2(IDX:0-1)", "gpu:a100:1(IDX:3)"]),
            resources: Some(JobResources {
                nodes: "n[1-2]".into(),
                cpus: 16,
                memory_mb: 1024,
                node_count: 2,
            }),
            ..JobFields::default()
        });
        assert_eq!(j.allocated.cpus, 16);
        assert_eq!(j.allocated.memory_bytes, 1 << 30);
        assert_eq!(j.allocated.gpus, 3);
        assert_eq!(j.gpu_allocations.len(), 2);
        assert_eq!(j.gpu_allocations[1].node, "n2");
        assert_eq!(j.gpu_allocations[1].indices, vec![3]);
        assert_eq!(j.state_reason, None);
    }

    #[test]
    fn single_node_gpu_fallback_without_detail() {
        let j = job(JobFields {
            state_words: w(&["RUNNING"]),
            nodes: "vm".into(),
            tres_alloc_str: "cpu=1,gres/gpu=2,gres/gpu:h100=2".into(),
            ..JobFields::default()
        });
        assert_eq!(
            j.gpu_allocations,
            vec![NodeGpuAllocation {
                node: "vm".into(),
                gpu_type: "h100".into(),
                count: 2,
                indices: vec![],
            }]
        );
    }
}
