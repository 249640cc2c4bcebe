//! v0.0.38 responses. First byte picks the endpoint (jobs, nodes,
//! partitions, diag, shares); the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slurm_gpu_exporter::slurmrestd::ApiVersion;

mod common {
    include!("common.rs");
}

fuzz_target!(|data: &[u8]| {
    common::parse_endpoint(ApiVersion::V0038, data);
});
