//! Array task strings (`3-9%3`, `1,3,5-7`, `0-15:4`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use slurm_gpu_exporter::slurm_text::array;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = array::count_tasks(&s);
});
