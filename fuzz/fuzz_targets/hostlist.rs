//! Host list expressions (`vm,gpu-node[02-04]`, `rack[1-2]-n[01-02]`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use slurm_gpu_exporter::slurm_text::hostlist;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    // A small cap keeps each run fast; the cap itself is what is checked.
    if let Ok(names) = hostlist::expand_with_limit(&s, 10_000) {
        assert!(names.len() <= 10_000);
    }
});
