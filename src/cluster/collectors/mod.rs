//! One collector per slurmrestd data set: each turns part of the model into metrics.

pub mod exporter;
pub mod fairshare;
pub mod jobs;
pub mod limits;
pub mod nodes;
pub mod partitions;
pub mod scheduler;
pub mod usage;
