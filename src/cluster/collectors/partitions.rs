//! Partition metrics: capacity from the partition's TRES (the sum over its
//! nodes where the TRES string lacks a key), allocation and
//! job counts from the queue (a node in two partitions counts in both, as in sinfo).

use std::collections::HashMap;

use super::queue::JobAggregates;
use crate::exposition::{Kind, MetricDesc, MetricSet};
use crate::model::{Node, Partition};

pub const CLUSTER_PARTITION_NODES: MetricDesc = MetricDesc {
    name: "slurm_cluster_partition_nodes",
    help: "Nodes in the partition.",
    kind: Kind::Gauge,
    labels: &["partition"],
};

pub const CLUSTER_PARTITION_CPUS: MetricDesc = MetricDesc {
    name: "slurm_cluster_partition_cpus",
    help: "CPUs in the partition, as scontrol show partition counts them.",
    kind: Kind::Gauge,
    labels: &["partition"],
};

pub const CLUSTER_PARTITION_GPUS: MetricDesc = MetricDesc {
    name: "slurm_cluster_partition_gpus",
    help: "GPUs in the partition, as scontrol show partition counts them.",
    kind: Kind::Gauge,
    labels: &["partition"],
};

pub const CLUSTER_PARTITION_ALLOCATED_CPUS: MetricDesc = MetricDesc {
    name: "slurm_cluster_partition_allocated_cpus",
    help: "CPUs allocated to jobs of the partition.",
    kind: Kind::Gauge,
    labels: &["partition"],
};

pub const CLUSTER_PARTITION_ALLOCATED_GPUS: MetricDesc = MetricDesc {
    name: "slurm_cluster_partition_allocated_gpus",
    help: "GPUs allocated to jobs of the partition.",
    kind: Kind::Gauge,
    labels: &["partition"],
};

pub const CLUSTER_PARTITION_JOBS: MetricDesc = MetricDesc {
    name: "slurm_cluster_partition_jobs",
    help: "Jobs of the partition by state (pending, running); array tasks counted individually.",
    kind: Kind::Gauge,
    labels: &["partition", "state"],
};

/// Every family this collector declares.
pub const METRICS: &[&MetricDesc] = &[
    &CLUSTER_PARTITION_NODES,
    &CLUSTER_PARTITION_CPUS,
    &CLUSTER_PARTITION_GPUS,
    &CLUSTER_PARTITION_ALLOCATED_CPUS,
    &CLUSTER_PARTITION_ALLOCATED_GPUS,
    &CLUSTER_PARTITION_JOBS,
];

pub fn collect(
    partitions: &[Partition],
    nodes: &[Node],
    jobs: Option<&JobAggregates>,
    set: &mut MetricSet,
) {
    for d in METRICS {
        set.declare(d);
    }
    let by_name: HashMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    for p in partitions {
        let label = || vec![("partition", p.name.clone())];
        let members: Vec<&Node> = p
            .nodes
            .iter()
            .filter_map(|n| by_name.get(n.as_str()).copied())
            .collect();
        // The partition's TRES string counts what /nodes leaves out (FUTURE
        // nodes), as scontrol does; without it, sum the nodes we have.
        let node_count = p.tres_nodes.unwrap_or(if p.nodes.is_empty() {
            p.total_nodes
        } else {
            p.nodes.len() as u64
        });
        let cpus = p.tres_cpus.unwrap_or_else(|| {
            if members.len() == p.nodes.len() && !members.is_empty() {
                members.iter().map(|n| n.cpus).sum()
            } else {
                p.total_cpus.max(members.iter().map(|n| n.cpus).sum())
            }
        });
        let gpus = p
            .tres_gpus
            .unwrap_or_else(|| members.iter().map(|n| n.gpus).sum());
        set.add(&CLUSTER_PARTITION_NODES, label(), node_count as f64);
        set.add(&CLUSTER_PARTITION_CPUS, label(), cpus as f64);
        set.add(&CLUSTER_PARTITION_GPUS, label(), gpus as f64);
        if let Some(jobs) = jobs {
            let (mut acpus, mut agpus) = (0, 0);
            for ((part, _, _), a) in &jobs.allocated {
                if part == &p.name {
                    acpus += a.cpus;
                    agpus += a.gpus;
                }
            }
            set.add(&CLUSTER_PARTITION_ALLOCATED_CPUS, label(), acpus as f64);
            set.add(&CLUSTER_PARTITION_ALLOCATED_GPUS, label(), agpus as f64);
            let (pending, running) = jobs.by_partition.get(&p.name).copied().unwrap_or_default();
            for (state, n) in [("pending", pending), ("running", running)] {
                set.add(
                    &CLUSTER_PARTITION_JOBS,
                    vec![("partition", p.name.clone()), ("state", state.to_string())],
                    n as f64,
                );
            }
        }
    }
}
