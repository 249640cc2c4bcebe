//! Node metrics: counts by base state and flag, per-node capacity and allocation.

use std::collections::BTreeMap;

use crate::exposition::{Kind, MetricSet};
use crate::model::{Node, NodeBaseState, NODE_FLAGS};

pub fn collect(nodes: &[Node], set: &mut MetricSet) {
    const BY_STATE: &str = "Nodes by base state (idle, mixed, allocated, down, ...), as sinfo shows it before the flags. FUTURE nodes are absent from slurmrestd and not counted.";
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
    set.family("slurm_cluster_nodes", BY_STATE, Kind::Gauge);
    for (state, n) in by_state {
        set.gauge(
            "slurm_cluster_nodes",
            BY_STATE,
            vec![("state", state.to_string())],
            n as f64,
        );
    }
    const BY_FLAG: &str = "Nodes carrying a state flag (DRAIN, NOT_RESPONDING, POWERED_DOWN, CLOUD, MAINTENANCE, RESERVED, ...), whatever their base state.";
    set.family("slurm_cluster_nodes_with_flag", BY_FLAG, Kind::Gauge);
    for (flag, n) in by_flag {
        set.gauge(
            "slurm_cluster_nodes_with_flag",
            BY_FLAG,
            vec![("flag", flag)],
            n as f64,
        );
    }

    const INFO: &str =
        "Node state and reason: base state, flags joined by '+', and the drain/down reason.";
    const CPUS: &str = "CPUs configured on the node.";
    const ACPUS: &str = "CPUs allocated on the node.";
    const MEM: &str = "Memory configured on the node (RealMemory).";
    const AMEM: &str = "Memory allocated on the node.";
    const FMEM: &str = "Free memory the node reports.";
    const LOAD: &str = "CPU load average the node reports.";
    const GPUS: &str = "GPUs (gres/gpu) configured on the node.";
    const AGPUS: &str = "GPUs (gres/gpu) allocated on the node, from gres_used.";
    set.family("slurm_cluster_node_state_info", INFO, Kind::Info);
    for name in [
        ("slurm_cluster_node_cpus", CPUS),
        ("slurm_cluster_node_allocated_cpus", ACPUS),
        ("slurm_cluster_node_memory_bytes", MEM),
        ("slurm_cluster_node_allocated_memory_bytes", AMEM),
        ("slurm_cluster_node_free_memory_bytes", FMEM),
        ("slurm_cluster_node_cpu_load", LOAD),
        ("slurm_cluster_node_gpus", GPUS),
        ("slurm_cluster_node_allocated_gpus", AGPUS),
    ] {
        set.family(name.0, name.1, Kind::Gauge);
    }
    for n in nodes {
        let node = || vec![("node", n.name.clone())];
        set.info(
            "slurm_cluster_node_state_info",
            INFO,
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
        );
        set.gauge("slurm_cluster_node_cpus", CPUS, node(), n.cpus as f64);
        set.gauge(
            "slurm_cluster_node_allocated_cpus",
            ACPUS,
            node(),
            n.allocated_cpus as f64,
        );
        set.gauge(
            "slurm_cluster_node_memory_bytes",
            MEM,
            node(),
            n.memory_bytes as f64,
        );
        set.gauge(
            "slurm_cluster_node_allocated_memory_bytes",
            AMEM,
            node(),
            n.allocated_memory_bytes as f64,
        );
        if let Some(free) = n.free_memory_bytes {
            set.gauge(
                "slurm_cluster_node_free_memory_bytes",
                FMEM,
                node(),
                free as f64,
            );
        }
        if let Some(load) = n.cpu_load {
            set.gauge("slurm_cluster_node_cpu_load", LOAD, node(), load);
        }
        set.gauge("slurm_cluster_node_gpus", GPUS, node(), n.gpus as f64);
        set.gauge(
            "slurm_cluster_node_allocated_gpus",
            AGPUS,
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
