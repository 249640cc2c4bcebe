//! Node metrics: counts by base state and flag, per-node capacity and allocation.

use std::collections::BTreeMap;

use crate::exposition::{Kind, MetricDesc, MetricSet};
use crate::model::{Node, NodeBaseState, NODE_FLAGS};

pub const CLUSTER_NODES: MetricDesc = MetricDesc {
    name: "slurm_cluster_nodes",
    help: "Nodes by base state (idle, mixed, allocated, down, ...), as sinfo shows it before the flags. FUTURE nodes are absent from slurmrestd and not counted.",
    kind: Kind::Gauge,
    labels: &["state"],
};

pub const CLUSTER_NODES_WITH_FLAG: MetricDesc = MetricDesc {
    name: "slurm_cluster_nodes_with_flag",
    help: "Nodes carrying a state flag (DRAIN, NOT_RESPONDING, POWERED_DOWN, CLOUD, MAINTENANCE, RESERVED, ...), whatever their base state.",
    kind: Kind::Gauge,
    labels: &["flag"],
};

pub const CLUSTER_NODE_STATE_INFO: MetricDesc = MetricDesc {
    name: "slurm_cluster_node_state_info",
    help: "Node state and reason: base state, flags joined by '+', and the drain/down reason.",
    kind: Kind::Info,
    labels: &["node", "state", "flags", "reason"],
};

pub const CLUSTER_NODE_CPUS: MetricDesc = MetricDesc {
    name: "slurm_cluster_node_cpus",
    help: "CPUs configured on the node.",
    kind: Kind::Gauge,
    labels: &["node"],
};

pub const CLUSTER_NODE_ALLOCATED_CPUS: MetricDesc = MetricDesc {
    name: "slurm_cluster_node_allocated_cpus",
    help: "CPUs allocated on the node.",
    kind: Kind::Gauge,
    labels: &["node"],
};

pub const CLUSTER_NODE_MEMORY_BYTES: MetricDesc = MetricDesc {
    name: "slurm_cluster_node_memory_bytes",
    help: "Memory configured on the node (RealMemory).",
    kind: Kind::Gauge,
    labels: &["node"],
};

pub const CLUSTER_NODE_ALLOCATED_MEMORY_BYTES: MetricDesc = MetricDesc {
    name: "slurm_cluster_node_allocated_memory_bytes",
    help: "Memory allocated on the node.",
    kind: Kind::Gauge,
    labels: &["node"],
};

pub const CLUSTER_NODE_FREE_MEMORY_BYTES: MetricDesc = MetricDesc {
    name: "slurm_cluster_node_free_memory_bytes",
    help: "Free memory the node reports.",
    kind: Kind::Gauge,
    labels: &["node"],
};

pub const CLUSTER_NODE_CPU_LOAD: MetricDesc = MetricDesc {
    name: "slurm_cluster_node_cpu_load",
    help: "CPU load average the node reports.",
    kind: Kind::Gauge,
    labels: &["node"],
};

pub const CLUSTER_NODE_GPUS: MetricDesc = MetricDesc {
    name: "slurm_cluster_node_gpus",
    help: "GPUs (gres/gpu) configured on the node.",
    kind: Kind::Gauge,
    labels: &["node"],
};

pub const CLUSTER_NODE_ALLOCATED_GPUS: MetricDesc = MetricDesc {
    name: "slurm_cluster_node_allocated_gpus",
    help: "GPUs (gres/gpu) allocated on the node, from gres_used.",
    kind: Kind::Gauge,
    labels: &["node"],
};

/// The node counts and the state info.
pub const METRICS: &[&MetricDesc] = &[
    &CLUSTER_NODES,
    &CLUSTER_NODES_WITH_FLAG,
    &CLUSTER_NODE_STATE_INFO,
];

/// The per-node families, declared together after the counts.
pub const PER_NODE_METRICS: &[&MetricDesc] = &[
    &CLUSTER_NODE_CPUS,
    &CLUSTER_NODE_ALLOCATED_CPUS,
    &CLUSTER_NODE_MEMORY_BYTES,
    &CLUSTER_NODE_ALLOCATED_MEMORY_BYTES,
    &CLUSTER_NODE_FREE_MEMORY_BYTES,
    &CLUSTER_NODE_CPU_LOAD,
    &CLUSTER_NODE_GPUS,
    &CLUSTER_NODE_ALLOCATED_GPUS,
];

pub fn collect(nodes: &[Node], set: &mut MetricSet) {
    let mut by_state: BTreeMap<&'static str, u64> =
        NodeBaseState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let mut by_flag: BTreeMap<String, u64> =
        NODE_FLAGS.iter().map(|f| (f.to_string(), 0)).collect();
    for n in nodes {
        *by_state
            .entry(n.state.unwrap_or(NodeBaseState::Unknown).as_str())
            .or_default() += 1;
        for f in &n.flags {
            *by_flag.entry(f.clone()).or_default() += 1;
        }
    }
    set.declare(&CLUSTER_NODES);
    for (state, n) in by_state {
        set.add(&CLUSTER_NODES, vec![("state", state.to_string())], n as f64);
    }
    set.declare(&CLUSTER_NODES_WITH_FLAG);
    for (flag, n) in by_flag {
        set.add(&CLUSTER_NODES_WITH_FLAG, vec![("flag", flag)], n as f64);
    }
    set.declare(&CLUSTER_NODE_STATE_INFO);
    for d in PER_NODE_METRICS {
        set.declare(d);
    }
    for n in nodes {
        let node = || vec![("node", n.name.clone())];
        set.add(
            &CLUSTER_NODE_STATE_INFO,
            vec![
                ("node", n.name.clone()),
                (
                    "state",
                    n.state
                        .unwrap_or(NodeBaseState::Unknown)
                        .as_str()
                        .to_string(),
                ),
                ("flags", n.flags.join("+")),
                ("reason", n.reason.clone()),
            ],
            1.0,
        );
        set.add(&CLUSTER_NODE_CPUS, node(), n.cpus as f64);
        set.add(
            &CLUSTER_NODE_ALLOCATED_CPUS,
            node(),
            n.allocated_cpus as f64,
        );
        set.add(&CLUSTER_NODE_MEMORY_BYTES, node(), n.memory_bytes as f64);
        set.add(
            &CLUSTER_NODE_ALLOCATED_MEMORY_BYTES,
            node(),
            n.allocated_memory_bytes as f64,
        );
        if let Some(free) = n.free_memory_bytes {
            set.add(&CLUSTER_NODE_FREE_MEMORY_BYTES, node(), free as f64);
        }
        if let Some(load) = n.cpu_load {
            set.add(&CLUSTER_NODE_CPU_LOAD, node(), load);
        }
        set.add(&CLUSTER_NODE_GPUS, node(), n.gpus as f64);
        set.add(
            &CLUSTER_NODE_ALLOCATED_GPUS,
            node(),
            n.allocated_gpus as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_flags_are_counted_with_zeroes() {
        let nodes = vec![
            Node {
                name: "a".into(),
                state: Some(NodeBaseState::Idle),
                flags: vec!["DRAIN".into()],
                reason: "PSU".into(),
                ..Default::default()
            },
            Node {
                name: "b".into(),
                state: Some(NodeBaseState::Down),
                flags: vec!["DRAIN".into(), "NOT_RESPONDING".into()],
                ..Default::default()
            },
        ];
        let mut set = MetricSet::new();
        collect(&nodes, &mut set);
        assert_eq!(
            set.value("slurm_cluster_nodes", &[("state", "idle")]),
            Some(1.0)
        );
        assert_eq!(
            set.value("slurm_cluster_nodes", &[("state", "mixed")]),
            Some(0.0)
        );
        assert_eq!(
            set.value("slurm_cluster_nodes_with_flag", &[("flag", "DRAIN")]),
            Some(2.0)
        );
        assert_eq!(
            set.value("slurm_cluster_nodes_with_flag", &[("flag", "CLOUD")]),
            Some(0.0)
        );
        assert_eq!(
            set.value(
                "slurm_cluster_node_state_info",
                &[("node", "b"), ("flags", "DRAIN+NOT_RESPONDING")]
            ),
            Some(1.0)
        );
    }
}
