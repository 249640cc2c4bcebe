//! v0.0.40 – v0.0.45 responses (one wire family). First byte picks the
//! version, second the endpoint (jobs, nodes, partitions, diag, shares);
//! the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slurm_gpu_exporter::slurmrestd::ApiVersion;

mod common {
    include!("common.rs");
}

const VERSIONS: [ApiVersion; 6] = [
    ApiVersion::V0040,
    ApiVersion::V0041,
    ApiVersion::V0042,
    ApiVersion::V0043,
    ApiVersion::V0044,
    ApiVersion::V0045,
];

fuzz_target!(|data: &[u8]| {
    let Some((&v, rest)) = data.split_first() else {
        return;
    };
    common::parse_endpoint(VERSIONS[v as usize % VERSIONS.len()], rest);
});
