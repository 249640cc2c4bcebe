//! GRES strings: node `gres`/`gres_used`, job `gres_detail`, `tres_per_*`,
//! and `IDX:` index lists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slurm_gpu_exporter::slurm_text::gres;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Some(items) = gres::parse_list(&s) {
        if let Some(c) = gres::gpu_count(&items) {
            let _ = c.type_label();
        }
    }
    let _ = gres::parse_tres_per(&s);
    if let Some(c) = gres::gpus(&s) {
        let _ = c.type_label();
    }
    if let Some(idx) = gres::parse_indices(&s) {
        assert!(idx.len() <= 1 << 17, "index list is capped");
    }
});
