//! Node agent benchmark (not a timed test): `cargo bench --bench node_agent`.
//!
//! On a p5-like fixture (8 fake H100s burning NVML's measured per-call
//! costs, 32 EFA devices, 2,000 processes) it measures, in the same run:
//!
//! * the baseline: the sum of the unavoidable reads of one collection, done
//!   back to back with nothing else (every NVML call the collector makes,
//!   every sysfs and procfs file it opens);
//! * one background collection (collect) and collection + encoding of both
//!   exposition formats (what the background loop does per interval);
//! * a scrape served from the cache, over HTTP on loopback.
//!
//! Figures go to docs/performance.md ("Node agent").

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use slurm_gpu_exporter::node::collectors::efa::{DEVICE_COUNTERS, PORT_COUNTERS};
use slurm_gpu_exporter::node::sources::cgroup::job_from_cgroup_file;
use slurm_gpu_exporter::node::sources::fake::{CallCosts, FakeNvml};
use slurm_gpu_exporter::node::sources::nvml::GpuBackend;
use slurm_gpu_exporter::node::testkit;
use slurm_gpu_exporter::node::{Agent, AgentConfig};
use slurm_gpu_exporter::server::{self, Publisher};

const RUNS: usize = 30;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn read(path: &Path) {
    let mut buf = Vec::with_capacity(4096);
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    std::hint::black_box(&buf);
}

/// Every file one steady-state collection opens, in the order it does.
fn files_read(root: &Path, fake: &FakeNvml) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let ib = root.join("sys/class/infiniband");
    let mut devs: Vec<PathBuf> = std::fs::read_dir(&ib)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    devs.sort();
    for d in &devs {
        files.push(d.join("device/vendor"));
        let efa = std::fs::read_to_string(d.join("device/vendor")).unwrap_or_default();
        if efa.trim() != "0x1d0f" {
            continue;
        }
        for (f, ..) in DEVICE_COUNTERS {
            files.push(d.join("hw_counters").join(f));
        }
        let p = d.join("ports/1");
        for (f, ..) in PORT_COUNTERS {
            files.push(p.join("hw_counters").join(f));
        }
        files.push(p.join("state"));
        files.push(p.join("rate"));
    }
    let gpu_pids: Vec<u32> = fake
        .lock()
        .gpus
        .iter()
        .flat_map(|g| g.processes.iter().map(|p| p.pid))
        .collect();
    let proc_root = root.join("proc");
    let mut pids: Vec<u32> = std::fs::read_dir(&proc_root)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect();
    pids.sort();
    for pid in pids {
        let dir = proc_root.join(pid.to_string());
        files.push(dir.join("cgroup"));
        files.push(dir.join("comm"));
        let cg = std::fs::read_to_string(dir.join("cgroup")).unwrap();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap();
        let job = job_from_cgroup_file(&cg).filter(|j| !j.stepd && comm.trim() != "slurmstepd");
        if job.is_some() || comm.trim() == "slurmd" {
            files.push(dir.join("limits"));
        }
        let _ = &gpu_pids; // environ is read once per job, then cached
    }
    files
}

fn gpu_calls(fake: &FakeNvml) {
    let mut b = fake.backend();
    let n = b.device_count().unwrap();
    for i in 0..n {
        let _ = b.utilization(i);
        let _ = b.memory(i);
        let _ = b.power_mw(i);
        let _ = b.energy_mj(i);
        let _ = b.temperature_c(i);
        let _ = b.memory_temperature_c(i);
        let _ = b.sm_clock_mhz(i);
        let _ = b.memory_clock_mhz(i);
        let _ = b.clock_event_reasons(i);
        for (c, a) in [(true, false), (true, true), (false, false), (false, true)] {
            let _ = b.ecc_errors(i, c, a);
        }
        let _ = b.remapped_rows(i);
        let _ = b.pcie_replays(i);
        let _ = b.nvlink_errors(i);
        let _ = b.processes(i);
    }
    let _ = b.poll_xid_events();
}

fn scrape(addr: std::net::SocketAddr) -> usize {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::with_capacity(1 << 18);
    s.read_to_end(&mut out).unwrap();
    out.len()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let fx = testkit::write_p5(dir.path(), 2000).unwrap();
    let fake = fx.gpus.with_costs(CallCosts::H100);
    println!(
        "fixture: {} processes, {} EFA devices, 8 fake H100 (per-call costs: {:?})",
        fx.processes,
        fx.efa_devices,
        CallCosts::H100
    );

    // Let the fixture's writeback finish so it does not compete with the
    // measurement.
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_secs(1));
    let files = files_read(dir.path(), &fake);
    let cfg = AgentConfig::new("p5-st-7", dir.path().join("proc"), dir.path().join("sys"));
    let mut agent = Agent::new(cfg, Some(fake.factory())).unwrap();
    // Warm-up: page cache, identities, environment cache.
    for _ in 0..3 {
        std::hint::black_box(agent.collect());
    }

    let mut base_gpu = Vec::new();
    let mut base_files = Vec::new();
    let mut collect = Vec::new();
    let mut collect_encode = Vec::new();
    let publisher = Publisher::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        gpu_calls(&fake);
        base_gpu.push(t.elapsed());
        let t = Instant::now();
        for f in &files {
            read(f);
        }
        base_files.push(t.elapsed());
        let t = Instant::now();
        let set = agent.collect();
        collect.push(t.elapsed());
        let t = Instant::now();
        let set2 = agent.collect();
        publisher.publish(&set2);
        collect_encode.push(t.elapsed());
        std::hint::black_box(set);
    }
    let (g, f) = (median(base_gpu), median(base_files));
    let baseline = g + f;
    let c = median(collect);
    let ce = median(collect_encode);
    println!("baseline, NVML calls (8 GPUs, serial):     {g:>10.2?}");
    println!(
        "baseline, {} file reads:                {f:>10.2?}",
        files.len()
    );
    println!("baseline, sum of unavoidable reads:        {baseline:>10.2?}");
    let longest = g.max(f);
    println!("longest leg (NVML thread || file reads):   {longest:>10.2?}");
    println!(
        "one collection (median of {RUNS}):            {c:>10.2?}  ({:+.1}% vs baseline)",
        (c.as_secs_f64() / baseline.as_secs_f64() - 1.0) * 100.0
    );
    println!(
        "collection + encoding both formats:        {ce:>10.2?}  ({:+.1}% vs baseline, {:+.1}% vs longest leg)",
        (ce.as_secs_f64() / baseline.as_secs_f64() - 1.0) * 100.0,
        (ce.as_secs_f64() / longest.as_secs_f64() - 1.0) * 100.0
    );
    let latest = publisher.latest().unwrap();
    println!(
        "encoded sizes: text {} B, OpenMetrics {} B",
        latest.text_len, latest.openmetrics_len
    );

    // Scrapes from the cache, over HTTP on loopback.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = server::router("/metrics", "bench", vec![publisher.clone()]);
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    });
    for _ in 0..50 {
        scrape(addr);
    }
    let mut lat = Vec::new();
    let mut bytes = 0;
    for _ in 0..1000 {
        let t = Instant::now();
        bytes = scrape(addr);
        lat.push(t.elapsed());
    }
    println!(
        "scrape from cache ({bytes} B response, new connection each): p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
}
