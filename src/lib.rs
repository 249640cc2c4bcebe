//! slurm-gpu-exporter: a Prometheus exporter for GPU Slurm clusters.
//!
//! Architecture: data sources (`slurmrestd`, `node::sources`) parse into
//! normalized models (`model`); collectors turn models into a
//! [`exposition::MetricSet`]; `server` serves the latest encoded set
//! ([`exposition::snapshot`]). `cli` is the command-line layer on top:
//! clap structs turned into the plain option structs the modules take.

pub mod allocator;
pub mod budgets_apply;
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod duration;
pub mod exposition;
pub mod idle_jobs;
pub mod model;
pub mod node;
pub mod report;
pub mod server;
pub mod slurm_text;
pub mod slurmrestd;
#[doc(hidden)]
pub mod testkit;
