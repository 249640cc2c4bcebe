//! Cluster-scale benchmarks of the cluster scraper, on generated slurmrestd
//! responses shaped like the recorded fixtures (see `support/gen.rs`).
//!
//! ```text
//! cargo bench --bench cluster_scale -- ingest [--jobs N] [--reps N]
//! cargo bench --bench cluster_scale -- rss [--jobs N,N...]
//! cargo bench --bench cluster_scale -- scrape [--jobs N] [--scrapers N] [--secs N]
//! cargo bench --bench cluster_scale -- gen --out DIR [--version v0.0.44] [--jobs N]
//! ```
//!
//! This machine is shared and noisy: every figure is printed next to a
//! baseline measured in the same run, and the ratio is what to compare.

#[path = "support/gen.rs"]
mod gen;

use std::io::Write as _;
use std::time::{Duration, Instant};

use gen::{JobsBody, Shape, Version};
use slurm_gpu_exporter::cluster::collectors::jobs::JobAggregates;
use slurm_gpu_exporter::model::Job;
use slurm_gpu_exporter::slurmrestd::{self, ApiVersion, JobSink};

fn api(v: Version) -> ApiVersion {
    match v {
        Version::V0038 => ApiVersion::V0038,
        Version::V0044 => ApiVersion::V0044,
    }
}

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }
    fn usize(&self, name: &str, default: usize) -> usize {
        self.value(name)
            .map(|v| v.replace('_', "").parse().expect(name))
            .unwrap_or(default)
    }
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
}

fn main() {
    let args = Args(std::env::args().skip(1).collect());
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us with no
    // command: do a tiny smoke run then, so the bench code stays exercised.
    let cmd = args
        .0
        .iter()
        .find(|a| !a.starts_with("--") && a.parse::<usize>().is_err() && !a.contains(','))
        .cloned();
    match cmd.as_deref() {
        Some("ingest") => ingest(args.usize("--jobs", 10_000), args.usize("--reps", 3)),
        Some("gen") => generate(&args),
        Some("parse") => parse_only(&args),
        Some("all") => {
            ingest(args.usize("--jobs", 10_000), args.usize("--reps", 3));
        }
        _ if args.has("--bench") => ingest(10_000, 3),
        _ => {
            ingest(200, 1);
        }
    }
}

/// Counts jobs without aggregating: the parser alone.
#[derive(Default)]
struct CountSink(u64);

impl JobSink for CountSink {
    fn job(&mut self, job: Job) {
        self.0 += job.task_count;
    }
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Best of `reps` runs of `f`.
fn best(reps: usize, mut f: impl FnMut()) -> Duration {
    (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn ingest(jobs: usize, reps: usize) {
    println!("## ingest: {jobs} jobs, best of {reps}, one thread");
    println!();
    println!("| version | body MB | KB/job | what | MB/s | × baseline |");
    println!("|---|---:|---:|---|---:|---:|");
    for v in [Version::V0044, Version::V0038] {
        let shape = Shape::reference(jobs);
        let body = JobsBody::collect(v, shape);
        let mb = body.len() as f64 / 1e6;
        let kb_job = body.len() as f64 / 1e3 / jobs as f64;

        // Sanity: the parser sees every generated record.
        let mut agg = JobAggregates::new(false);
        slurmrestd::parse_jobs(api(v), &mut &body[..], &mut agg).expect("generated body parses");
        assert_eq!(agg.records, jobs as u64, "{v:?}");

        let base = best(reps, || {
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            std::hint::black_box(&value);
        });
        let parse_only = best(reps, || {
            let mut sink = CountSink::default();
            slurmrestd::parse_jobs(api(v), &mut &body[..], &mut sink).unwrap();
            std::hint::black_box(sink.0);
        });
        let aggregated = best(reps, || {
            let mut agg = JobAggregates::new(false);
            slurmrestd::parse_jobs(api(v), &mut &body[..], &mut agg).unwrap();
            std::hint::black_box(&agg);
        });
        let skim = best(reps, || {
            let v: serde::de::IgnoredAny = serde_json::from_slice(&body).unwrap();
            std::hint::black_box(v);
        });
        let b = mbps(body.len(), base);
        for (what, d) in [
            ("baseline `serde_json::from_slice::<Value>`", base),
            ("reference `from_slice::<IgnoredAny>` (skim only)", skim),
            ("`parse_jobs` → counting sink (parser only)", parse_only),
            ("`parse_jobs` → `JobAggregates`", aggregated),
        ] {
            let r = mbps(body.len(), d);
            println!(
                "| {} | {mb:.1} | {kb_job:.1} | {what} | {r:.0} | {:.2} |",
                v.as_str(),
                r / b
            );
        }
        std::io::stdout().flush().ok();
    }
    println!();
}

/// `parse_jobs` → `JobAggregates` only, for profilers (`perf record`).
fn parse_only(args: &Args) {
    let v = version_arg(args);
    let body = JobsBody::collect(v, Shape::reference(args.usize("--jobs", 10_000)));
    let d = best(args.usize("--reps", 5), || {
        let mut agg = JobAggregates::new(false);
        slurmrestd::parse_jobs(api(v), &mut &body[..], &mut agg).unwrap();
        std::hint::black_box(&agg);
    });
    println!("{} parse_jobs: {:.0} MB/s", v.as_str(), mbps(body.len(), d));
}

fn version_arg(args: &Args) -> Version {
    match args.value("--version").unwrap_or("v0.0.44") {
        "v0.0.38" => Version::V0038,
        "v0.0.44" => Version::V0044,
        other => panic!("unsupported version {other}"),
    }
}

/// Writes a generated cluster's responses to a directory, in the layout of
/// `tests/fixtures/slurmrestd/<version>/` (for `replay`, curl, wrk, ...).
fn generate(args: &Args) {
    let out = std::path::PathBuf::from(args.value("--out").expect("--out DIR"));
    let v = version_arg(args);
    let shape = Shape::reference(args.usize("--jobs", 100_000));
    std::fs::create_dir_all(&out).unwrap();
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(out.join("slurm_jobs.json")).unwrap());
    let mut n = 0;
    for chunk in JobsBody::new(v, shape, 1 << 20) {
        n += chunk.len();
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
    std::fs::write(out.join("slurm_nodes.json"), gen::nodes_body(v, &shape)).unwrap();
    std::fs::write(
        out.join("slurm_partitions.json"),
        gen::partitions_body(v, &shape),
    )
    .unwrap();
    if let Some(s) = gen::shares_body(v, &shape) {
        std::fs::write(out.join("slurm_shares.json"), s).unwrap();
    }
    std::fs::write(out.join("slurm_diag.json"), gen::diag_body(v)).unwrap();
    std::fs::write(out.join("slurm_ping.json"), gen::ping_body(v)).unwrap();
    println!("wrote {} ({n} bytes of jobs)", out.display());
}
