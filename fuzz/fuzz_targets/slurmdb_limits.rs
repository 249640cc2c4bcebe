//! `/slurmdb/vX/associations/`, `/slurmdb/vX/qos/` and the TRES usage of
//! `/slurm/vX/shares` (limits collector). First byte picks the version
//! (v0.0.38 – v0.0.45), second the endpoint; the rest is the body. What
//! parses is rendered through the limits collector.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slurm_gpu_exporter::cluster::collectors::limits;
use slurm_gpu_exporter::exposition::MetricSet;
use slurm_gpu_exporter::slurmrestd::{self, ApiVersion};

fuzz_target!(|data: &[u8]| {
    let [v, which, body @ ..] = data else {
        return;
    };
    let versions = ApiVersion::NEWEST_FIRST;
    let v = versions[*v as usize % versions.len()];
    let mut r = body;
    let mut set = MetricSet::new();
    match which % 3 {
        0 => {
            if let Ok(a) = slurmrestd::parse_associations(v, &mut r) {
                for l in a.iter().flat_map(|a| &a.limits.tres) {
                    assert!(!l.tres.is_empty());
                }
                let cluster = a.first().map(|a| a.cluster.clone());
                limits::collect_associations(&a, cluster.as_deref(), &mut set);
            }
        }
        1 => {
            if let Ok(q) = slurmrestd::parse_qos(v, &mut r) {
                limits::collect_qos(&q, &mut set);
            }
        }
        _ => {
            if let Ok(s) = slurmrestd::parse_shares(v, &mut r) {
                for s in &s {
                    assert!(s.tres_usage_seconds.len() <= 256 && s.tres_run_seconds.len() <= 256);
                    assert!(s.tres_usage_seconds.iter().all(|(_, v)| v.is_finite() && *v >= 0.0));
                }
                limits::collect_usage(&s, &mut set);
            }
        }
    }
    let text = set.encode_text();
    assert!(text.is_empty() || text.ends_with('\n'));
});
