//! The node agent's file parsers: `/proc/<pid>/cgroup` files and cgroup
//! paths, `/proc/<pid>/limits`, `/proc/<pid>/environ`, sysfs values (EFA port
//! rate, plain integers). First byte picks the parser; the rest is the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slurm_gpu_exporter::node::sources::{cgroup, fs, procfs, sysfs};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let s = String::from_utf8_lossy(rest);
    match which % 6 {
        0 => {
            if let Some(j) = cgroup::job_from_cgroup_file(&s) {
                let _ = j.job.as_str();
            }
        }
        1 => {
            let _ = cgroup::job_from_path(&s);
            let _ = cgroup::is_sluid(&s);
        }
        2 => {
            if let Some(m) = procfs::parse_memlock(&s) {
                let _ = (m.soft.as_f64(), m.hard.as_f64(), m.soft.min(m.hard));
            }
        }
        3 => {
            let _ = procfs::parse_environ(rest);
        }
        4 => {
            if let Some(r) = sysfs::parse_rate(&s) {
                assert!(r.is_finite());
            }
        }
        _ => {
            let _ = fs::parse_u64(&s);
            let _ = fs::truncate(&s, 64);
        }
    }
});
