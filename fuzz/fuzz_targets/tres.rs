//! TRES strings (`cpu=8,mem=32G,node=1,billing=20,gres/gpu=2,gres/gpu:h100=2`)
//! and memory sizes (`32G`, `4000M`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use slurm_gpu_exporter::slurm_text::tres;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Some(t) = tres::parse(&s) {
        let by_type: u64 = t.gpus_by_type.values().fold(0, |a, b| a.saturating_add(*b));
        std::hint::black_box((t.gpus, by_type));
    }
    let _ = tres::memory_bytes(&s);
});
