//! Bad input never crashes the node agent or fails a collection: garbage
//! in every file, huge files, processes exiting mid-scan, thousands of
//! processes, no NVML, a GPU call that hangs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use slurm_gpu_exporter::cli::{Cli, Command};
use slurm_gpu_exporter::node::collectors::CollectorSelection;
use slurm_gpu_exporter::node::sources::fake::CallCosts;
use slurm_gpu_exporter::node::testkit;
use slurm_gpu_exporter::node::{Agent, AgentConfig};
use slurm_gpu_exporter::server::{self, Publisher};

fn up(set: &slurm_gpu_exporter::exposition::MetricSet, collector: &str) -> Option<f64> {
    set.value("slurm_node_collector_up", &[("collector", collector)])
}

/// Deterministic pseudo-random bytes.
fn garbage(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*seed >> 33) as u8
        })
        .collect()
}

fn overwrite_all_files(dir: &Path, seed: &mut u64) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            overwrite_all_files(&path, seed);
        } else {
            let len = (*seed % 300) as usize;
            let bytes = garbage(seed, len);
            std::fs::write(&path, bytes).unwrap();
        }
    }
}

#[test]
fn garbage_in_every_file_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let fx = testkit::write_p5(dir.path(), 300).unwrap();
    let mut seed = 42;
    overwrite_all_files(dir.path(), &mut seed);
    // And a few oversized files: reads are capped.
    std::fs::write(dir.path().join("proc/1/cgroup"), vec![b'/'; 5 << 20]).unwrap();
    std::fs::write(dir.path().join("proc/1/limits"), vec![b'9'; 5 << 20]).unwrap();
    let cfg = AgentConfig::new("n", dir.path().join("proc"), dir.path().join("sys"));
    let mut agent = Agent::new(cfg, Some(fx.gpus.factory())).unwrap();
    let set = agent.collect();
    for c in ["gpu", "jobs", "efa", "memlock"] {
        assert_eq!(up(&set, c), Some(1.0), "{c}");
    }
    // Garbage vendor files: no device qualifies as EFA.
    assert_eq!(set.value("slurm_efa_devices", &[]), Some(0.0));
    let text = set.encode_text();
    assert!(text.contains("slurm_gpu_up"));
}

#[test]
fn garbage_counters_with_valid_vendor_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    testkit::write_efa_device(&dir.path().join("sys"), "efa_0", 0, false).unwrap();
    let hw = dir
        .path()
        .join("sys/class/infiniband/efa_0/ports/1/hw_counters");
    std::fs::write(hw.join("tx_bytes"), "-1\n").unwrap();
    std::fs::write(hw.join("rx_bytes"), "99999999999999999999999\n").unwrap();
    std::fs::write(hw.join("tx_pkts"), "").unwrap();
    std::fs::remove_file(hw.join("rx_pkts")).unwrap();
    let cfg = AgentConfig {
        collectors: CollectorSelection::all().without(&["gpu", "jobs"]),
        ..AgentConfig::new("n", dir.path().join("proc"), dir.path().join("sys"))
    };
    let set = Agent::new(cfg, None).unwrap().collect();
    assert_eq!(up(&set, "efa"), Some(1.0));
    assert_eq!(set.value("slurm_efa_unreadable_counters", &[]), Some(3.0));
    assert_eq!(set.value("slurm_efa_port_tx_bytes_total", &[]), None);
    assert_eq!(set.value("slurm_efa_port_rx_pkts_total", &[]), None);
    assert!(set.value("slurm_efa_port_send_bytes_total", &[]).is_some());
    // No /proc: memlock is down (not disabled here), the rest is fine.
    assert_eq!(up(&set, "memlock"), Some(0.0));
    assert_eq!(up(&set, "gpu"), None);
}

#[test]
fn processes_vanishing_mid_scan_and_thousands_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let fx = testkit::write_p5(dir.path(), 3000).unwrap();
    let proc_root = dir.path().join("proc");
    let stop = Arc::new(AtomicBool::new(false));
    let reaper = {
        let stop = stop.clone();
        let proc_root = proc_root.clone();
        std::thread::spawn(move || {
            // Kill processes one file at a time, as the kernel would
            // remove a whole /proc/<pid> while a reader is in it.
            let mut pids: Vec<_> = std::fs::read_dir(&proc_root)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .collect();
            pids.sort();
            for p in pids.iter().rev() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for f in ["limits", "environ", "comm", "cgroup"] {
                    let _ = std::fs::remove_file(p.join(f));
                }
                let _ = std::fs::remove_dir(p);
            }
        })
    };
    let cfg = AgentConfig::new("n", &proc_root, dir.path().join("sys"));
    let mut agent = Agent::new(cfg, Some(fx.gpus.factory())).unwrap();
    for _ in 0..5 {
        let set = agent.collect();
        assert_eq!(up(&set, "memlock"), Some(1.0));
        assert_eq!(up(&set, "jobs"), Some(1.0));
    }
    stop.store(true, Ordering::Relaxed);
    reaper.join().unwrap();
    // Everything gone: still a clean collection.
    let set = agent.collect();
    assert_eq!(up(&set, "memlock"), Some(1.0));
}

#[test]
fn no_nvml_reports_gpu_down_and_the_rest_up() {
    let dir = tempfile::tempdir().unwrap();
    let fx = testkit::write_p5(dir.path(), 100).unwrap();
    fx.gpus
        .set_unavailable(Some("libnvidia-ml.so.1: cannot open shared object file"));
    let cfg = AgentConfig::new("n", dir.path().join("proc"), dir.path().join("sys"));
    let mut agent = Agent::new(cfg, Some(fx.gpus.factory())).unwrap();
    for _ in 0..2 {
        let set = agent.collect();
        assert_eq!(up(&set, "gpu"), Some(0.0));
        assert_eq!(up(&set, "efa"), Some(1.0));
        assert_eq!(up(&set, "memlock"), Some(1.0));
        assert_eq!(up(&set, "jobs"), Some(1.0));
        assert_eq!(set.value("slurm_gpu_devices", &[]), None);
        assert_eq!(
            set.value(
                "slurm_node_collector_last_success_timestamp_seconds",
                &[("collector", "gpu")]
            ),
            None
        );
    }
}

#[test]
fn a_hanging_gpu_call_does_not_hold_the_collection() {
    let dir = tempfile::tempdir().unwrap();
    let fx = testkit::write_p5(dir.path(), 100).unwrap();
    let fake = fx.gpus.with_costs(CallCosts {
        energy: Duration::from_millis(400),
        ..CallCosts::ZERO
    });
    let cfg = AgentConfig {
        gpu_timeout: Duration::from_millis(300),
        ..AgentConfig::new("n", dir.path().join("proc"), dir.path().join("sys"))
    };
    let mut agent = Agent::new(cfg, Some(fake.factory())).unwrap();
    let t = Instant::now();
    let set = agent.collect();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(up(&set, "gpu"), Some(0.0));
    assert_eq!(up(&set, "efa"), Some(1.0));
}

#[tokio::test]
async fn scrapes_are_served_from_the_published_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let fx = testkit::write_p5(dir.path(), 100).unwrap();
    let cfg = AgentConfig::new("n", dir.path().join("proc"), dir.path().join("sys"));
    let mut agent = Agent::new(cfg, Some(fx.gpus.factory())).unwrap();
    let publisher = Publisher::new();
    publisher.publish(&agent.collect());
    let app = server::router("/metrics", "node", vec![publisher]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("slurm_gpu_up{node=\"n\",gpu=\"0\""));
    assert!(body.contains(
        "slurm_efa_port_rdma_read_bytes_total{node=\"n\",device=\"rdmap79s0\",port=\"1\"}"
    ));
}

#[test]
fn node_flags_parse() {
    let cli = Cli::try_parse_from([
        "slurm-gpu-exporter",
        "node",
        "--collector.gpu=false",
        "--collector.efa",
        "true",
        "--path.procfs",
        "/host/proc",
        "--collector.jobs.mapping-dir",
        "/a",
        "--collector.jobs.mapping-dir",
        "/b",
        "--collect-interval",
        "15s",
    ])
    .unwrap();
    let Command::Node(a) = cli.command else {
        panic!("not node")
    };
    assert!(!a.collectors.enabled("gpu"));
    assert!(["efa", "memlock", "jobs"]
        .iter()
        .all(|c| a.collectors.enabled(c)));
    assert_eq!(a.procfs, Path::new("/host/proc"));
    assert_eq!(a.sysfs, Path::new("/sys"));
    assert_eq!(a.mapping_dirs.len(), 2);
    assert_eq!(a.collect_interval, Duration::from_secs(15));
    assert!(Cli::try_parse_from(["x", "node", "--collector.gpu=maybe"]).is_err());
}
