//! The cluster scraper's collectors, one per slurmrestd data set: each turns
//! part of the model into metrics. Each module declares its families as
//! constant [`MetricDesc`]s and lists them in its `METRICS`.

pub mod exporter;
pub mod fairshare;
pub mod limits;
pub mod nodes;
pub mod partitions;
pub mod queue;
pub mod scheduler;
pub mod usage;

use crate::exposition::MetricDesc;

/// Every family the cluster scraper's collectors declare, by collector.
pub const METRICS: &[&[&MetricDesc]] = &[
    queue::METRICS,
    nodes::METRICS,
    nodes::PER_NODE_METRICS,
    partitions::METRICS,
    fairshare::METRICS,
    scheduler::METRICS,
    usage::METRICS,
    limits::METRICS,
    exporter::ENDPOINT_METRICS,
    exporter::METRICS,
];
