//! Node collectors, one per file, behind one contract ([`Collector`]) and
//! one list ([`REGISTRY`]).
//!
//! Each collection cycle the agent gathers the shared inputs once
//! ([`CycleInputs`]: the GPU sample from the NVML worker, one `/proc`
//! snapshot) and runs every enabled collector over them into its own
//! [`MetricSet`]; it times each and reports `slurm_node_collector_*` for it.
//! The registry drives the collector names, their `--collector.<name>`
//! flags and environment variables, and the output order.
//!
//! Adding a collector: a new file with a type implementing [`Collector`],
//! its families as constant [`MetricDesc`]s and a `SPEC`, then one line in
//! [`REGISTRY`] (and its families in docs/metrics.md, which
//! `tests/metric_names/docs.rs` checks).

pub mod efa;
pub mod gpu;
pub mod gpu_jobs;
pub mod memlock;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::exposition::{HealthFamily, Kind, Labels, MetricDesc, MetricSet};
use crate::node::sources::gpu_sample::GpuSample;
use crate::node::sources::processes::ProcessSnapshot;
use crate::node::sources::procfs::{JobResolver, ProcFs};
use crate::node::sources::sysfs::SysFs;
use crate::node::AgentConfig;

/// Every node collector, in output order (self-metrics and families).
pub const REGISTRY: &[CollectorSpec] = &[gpu::SPEC, gpu_jobs::SPEC, efa::SPEC, memlock::SPEC];

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

/// What one collection cycle shares between the collectors.
pub struct CycleInputs<'a> {
    /// The `node` label.
    pub node: &'a str,
    /// This cycle's NVML sample; `None` for collectors that do not declare
    /// `needs_gpu` (they run while NVML is still working).
    pub gpu: Option<&'a GpuSample>,
    /// The `/proc` process table, scanned once per cycle on first use.
    pub processes: &'a ProcessSnapshot<'a>,
    pub procfs: &'a ProcFs,
    pub sysfs: &'a SysFs,
    /// PID → job id resolution, cached across the cycle's collectors.
    pub resolver: &'a RefCell<JobResolver>,
}

/// A node collector; its name is its registry line's ([`CollectorSpec`]).
pub trait Collector: Send {
    /// Adds this cycle's families to `out`; an error reports the collector
    /// down (what it added is still published).
    fn collect(
        &mut self,
        inputs: &CycleInputs<'_>,
        out: &mut MetricSet,
    ) -> Result<(), CollectError>;

    /// The duration to report instead of the wall time of `collect`.
    fn reported_duration(&self, _inputs: &CycleInputs<'_>) -> Option<Duration> {
        None
    }
}

/// A registry line: how a collector is named, switched and built.
pub struct CollectorSpec {
    /// The `collector` label of its self-metrics.
    pub name: &'static str,
    /// `collector.<name>` (a test checks the spelling).
    pub flag: &'static str,
    /// `SLURM_GPU_EXPORTER_COLLECTOR_<NAME>`.
    pub env: &'static str,
    /// The flag's help.
    pub help: &'static str,
    /// Reads [`CycleInputs::gpu`]: the NVML worker runs while one is enabled.
    pub needs_gpu: bool,
    /// The families it emits.
    pub metrics: &'static [&'static MetricDesc],
    pub build: fn(&AgentConfig) -> Box<dyn Collector>,
}

/// Which collectors are on: `--collector.<name>=<bool>` for every
/// registry entry (default true; the flags are made in `crate::cli::node`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorSelection(BTreeMap<&'static str, bool>);

impl CollectorSelection {
    /// Every collector on.
    pub fn all() -> Self {
        CollectorSelection(REGISTRY.iter().map(|s| (s.name, true)).collect())
    }

    /// The same with `names` off.
    pub fn without(mut self, names: &[&str]) -> Self {
        for (n, on) in self.0.iter_mut() {
            if names.contains(n) {
                *on = false;
            }
        }
        self
    }

    /// Switches a registry collector on or off (other names are ignored).
    pub fn set(&mut self, name: &str, on: bool) {
        if let Some(v) = self.0.get_mut(name) {
            *v = on;
        }
    }

    pub fn enabled(&self, name: &str) -> bool {
        self.0.get(name).copied().unwrap_or(false)
    }
}

impl Default for CollectorSelection {
    fn default() -> Self {
        Self::all()
    }
}

/// The agent's own families, per collector.
pub const COLLECTOR_UP: MetricDesc = MetricDesc {
    name: "slurm_node_collector_up",
    help: "1 if the collector's last run succeeded.",
    kind: Kind::Gauge,
    labels: &["node", "collector"],
};

/// Which collectors succeeded, for `/readyz` and the landing page.
pub const COLLECTOR_HEALTH: HealthFamily = HealthFamily {
    up: &COLLECTOR_UP,
    label: "collector",
    prefix: "collector ",
    stale: None,
};

pub const COLLECTOR_DURATION: MetricDesc = MetricDesc {
    name: "slurm_node_collector_duration_seconds",
    help: "Duration of the collector's last run (for gpu: time spent in NVML).",
    kind: Kind::Gauge,
    labels: &["node", "collector"],
};

pub const COLLECTOR_LAST_SUCCESS: MetricDesc = MetricDesc {
    name: "slurm_node_collector_last_success_timestamp_seconds",
    help: "Unix time of the collector's last successful run.",
    kind: Kind::Gauge,
    labels: &["node", "collector"],
};

pub const SELF_METRICS: &[&MetricDesc] =
    &[&COLLECTOR_UP, &COLLECTOR_DURATION, &COLLECTOR_LAST_SUCCESS];

/// Every family the node agent declares: its self-metrics, then each
/// collector's.
pub fn all_metrics() -> impl Iterator<Item = &'static MetricDesc> {
    SELF_METRICS
        .iter()
        .copied()
        .chain(REGISTRY.iter().flat_map(|s| s.metrics.iter().copied()))
}

/// The `node` label, first on every series.
pub(crate) fn node_labels(node: &str) -> Labels {
    vec![("node", node.to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_flags_and_env_vars_agree() {
        let mut names = std::collections::BTreeSet::new();
        for s in REGISTRY {
            assert!(names.insert(s.name), "{} twice", s.name);
            assert_eq!(s.flag, format!("collector.{}", s.name));
            assert_eq!(
                s.env,
                format!("SLURM_GPU_EXPORTER_COLLECTOR_{}", s.name.to_uppercase())
            );
        }
        assert_eq!(
            REGISTRY.iter().map(|s| s.name).collect::<Vec<_>>(),
            ["gpu", "jobs", "efa", "memlock"]
        );
    }

    #[test]
    fn selection_defaults_on_and_switches_off() {
        let sel = CollectorSelection::all().without(&["gpu", "jobs"]);
        assert!(!sel.enabled("gpu") && !sel.enabled("jobs"));
        assert!(sel.enabled("efa") && sel.enabled("memlock"));
        assert!(!sel.enabled("nonexistent"));
        let mut sel = sel;
        sel.set("gpu", true);
        sel.set("efa", false);
        sel.set("nonexistent", true);
        assert!(sel.enabled("gpu") && !sel.enabled("efa") && !sel.enabled("nonexistent"));
    }
}
