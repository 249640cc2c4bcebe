//! The benchmark generator (`benches/support/gen.rs`) prints responses the
//! real parsers accept, shaped like the recordings it starts from.

#[path = "../benches/support/gen.rs"]
mod gen;

use gen::{JobsBody, Shape, Version, J};
use slurm_gpu_exporter::cluster::collectors::queue::JobAggregates;
use slurm_gpu_exporter::model::JobState;
use slurm_gpu_exporter::slurmrestd::{self, ApiVersion};

fn api(v: Version) -> ApiVersion {
    match v {
        Version::V0038 => ApiVersion::V0038,
        Version::V0044 => ApiVersion::V0044,
    }
}

fn small() -> Shape {
    Shape {
        jobs: 3_000,
        nodes: 50,
        accounts: 20,
        users_per_account: 3,
        seed: 7,
    }
}

#[test]
fn templates_print_back_as_recorded() {
    for v in ["v0.0.38", "v0.0.44"] {
        for ep in ["jobs", "nodes", "partitions"] {
            let raw = std::fs::read(gen::fixtures_dir().join(v).join(format!("slurm_{ep}.json")))
                .unwrap();
            let again = J::parse(&raw).to_pretty(v != "v0.0.38");
            let (a, b) = (again.trim_ascii_end(), raw.trim_ascii_end());
            if a != b {
                let at = a
                    .iter()
                    .zip(b)
                    .position(|(x, y)| x != y)
                    .unwrap_or(a.len().min(b.len()));
                panic!(
                    "{v} {ep} differs at byte {at}: printed {:?}, recorded {:?}",
                    String::from_utf8_lossy(&a[at.saturating_sub(80)..(at + 80).min(a.len())]),
                    String::from_utf8_lossy(&b[at.saturating_sub(80)..(at + 80).min(b.len())]),
                );
            }
        }
    }
}

#[test]
fn generated_jobs_parse_with_every_record_seen() {
    for v in [Version::V0038, Version::V0044] {
        let shape = small();
        let chunks: Vec<Vec<u8>> = JobsBody::new(v, shape, 64 * 1024).collect();
        assert!(chunks.len() > 2, "body comes in chunks");
        let body = chunks.concat();
        assert_eq!(body, JobsBody::collect(v, shape), "deterministic");
        serde_json::from_slice::<serde_json::Value>(&body).expect("valid JSON");
        let mut agg = JobAggregates::new(true);
        slurmrestd::parse_jobs(api(v), &mut &body[..], &mut agg).unwrap();
        assert_eq!(agg.records, shape.jobs as u64);
        for s in [
            JobState::Pending,
            JobState::Running,
            JobState::Completed,
            JobState::Failed,
        ] {
            assert!(agg.count_state(s) > 0, "{v:?} {s:?}");
        }
        // Arrays: pending meta records stand for several tasks.
        let pending: u64 = agg.count_state(JobState::Pending);
        let pending_records = {
            let mut jobs = Vec::new();
            slurmrestd::parse_jobs(api(v), &mut &body[..], &mut jobs).unwrap();
            assert!(jobs.iter().any(|j| j.array_task_id.is_some()));
            assert!(jobs
                .iter()
                .any(|j| j.gpu_allocations.len() > 1 && !j.gpu_allocations[0].indices.is_empty()));
            assert!(jobs
                .iter()
                .any(|j| j.allocated.gpus == 8 && j.allocated.nodes == 1));
            jobs.iter()
                .filter(|j| j.state == Some(JobState::Pending))
                .count() as u64
        };
        assert!(pending > pending_records, "{v:?}");
        assert!(!agg.gpu_jobs.is_empty());
    }
}

#[test]
fn generated_nodes_partitions_shares_parse() {
    let shape = small();
    for v in [Version::V0038, Version::V0044] {
        let nodes = slurmrestd::parse_nodes(api(v), &mut &gen::nodes_body(v, &shape)[..]).unwrap();
        assert_eq!(nodes.len(), shape.nodes);
        assert_eq!(nodes[0].gpus, 8);
        assert!(nodes.iter().any(|n| n.has_flag("DRAIN")));
        let parts = slurmrestd::parse_partitions(api(v), &mut &gen::partitions_body(v, &shape)[..])
            .unwrap();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0].nodes.len(), shape.gpu_nodes());
        match gen::shares_body(v, &shape) {
            None => assert_eq!(v, Version::V0038),
            Some(body) => {
                let shares = slurmrestd::parse_shares(api(v), &mut &body[..]).unwrap();
                assert_eq!(
                    shares.len(),
                    1 + shape.accounts * (1 + shape.users_per_account)
                );
                assert!(shares
                    .iter()
                    .any(|s| s.user.as_deref() == Some("user00004")));
            }
        }
    }
}
