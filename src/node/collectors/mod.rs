//! Node collectors, one per file. Each fills its own [`MetricSet`]; the
//! agent times it and reports `slurm_node_collector_*` for it.

pub mod efa;
pub mod gpu;
pub mod jobs;
pub mod memlock;

use crate::exposition::Labels;

/// Why a collector failed; it is reported down and the agent goes on.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unavailable(String),
}

/// The `node` label, first on every series.
pub(crate) fn node_labels(node: &str) -> Labels {
    vec![("node", node.to_string())]
}
