// Shared by the slurmrestd targets (included, not a module file of its own).

use slurm_gpu_exporter::cluster::collectors::queue::JobAggregates;
use slurm_gpu_exporter::exposition::MetricSet;
use slurm_gpu_exporter::slurmrestd::{self, ApiVersion};

/// Parses `data[1..]` as the body of the endpoint `data[0]` picks, the way
/// the poller does (jobs stream into `JobAggregates`), then renders the
/// result so the collectors see whatever the parser let through.
pub fn parse_endpoint(v: ApiVersion, data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    // Any body may come back with an HTTP error status.
    let _ = slurmrestd::slurm_error_numbers(body);
    let mut r = body;
    let mut set = MetricSet::new();
    match which % 5 {
        0 => {
            let mut agg = JobAggregates::new(which & 0x80 != 0);
            if slurmrestd::parse_jobs(v, &mut r, &mut agg).is_ok() {
                agg.collect(&mut set);
            }
        }
        1 => {
            if let Ok(nodes) = slurmrestd::parse_nodes(v, &mut r) {
                slurm_gpu_exporter::cluster::collectors::nodes::collect(&nodes, &mut set);
            }
        }
        2 => {
            let _ = slurmrestd::parse_partitions(v, &mut r);
        }
        3 => {
            if let Ok(d) = slurmrestd::parse_diag(v, &mut r) {
                slurm_gpu_exporter::cluster::collectors::scheduler::collect(&d, &mut set);
            }
        }
        _ => {
            if let Ok(s) = slurmrestd::parse_shares(v, &mut r) {
                slurm_gpu_exporter::cluster::collectors::fairshare::collect(&s, &mut set);
            }
        }
    }
    let text = set.encode_text();
    assert!(text.is_empty() || text.ends_with('\n'));
}
