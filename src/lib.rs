//! slurm-gpu-exporter: a Prometheus exporter for GPU Slurm clusters.
//!
//! Architecture: data sources (`slurmrestd`, `node::sources`) parse into
//! normalized models (`model`); collectors turn models into a
//! [`exposition::MetricSet`]; `server` serves the latest encoded set.

pub mod budgets_apply;
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod exposition;
pub mod idle_jobs;
pub mod memory;
pub mod model;
pub mod node;
pub mod replay;
pub mod report;
pub mod server;
pub mod slurm;
pub mod slurmrestd;
