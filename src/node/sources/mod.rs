//! Data sources of the node agent: bounded file reads under configurable
//! `/proc` and `/sys` roots, cgroup path parsing, and the GPU backend.

pub mod cgroup;
pub mod fake;
pub mod fs;
pub mod gpu_sample;
pub mod gres_conf;
pub mod nvml;
pub mod processes;
pub mod procfs;
pub mod slurmd;
pub mod sysfs;
