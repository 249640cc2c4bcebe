//! Golden `/metrics` tests of the node agent: one per fixture layout, each
//! running the whole collection (fake GPUs, fixture `/proc` and `/sys`) and
//! the text encoding, compared byte for byte with `tests/golden/node-*.prom`.
//!
//! `UPDATE_GOLDEN=1 cargo test --test golden_outputs node` rewrites the golden files.
//! Each golden file is also checked with `promtool check metrics` when
//! promtool is installed; with `REQUIRE_PROMTOOL=1` a missing promtool fails.

use crate::golden;
use std::path::{Path, PathBuf};

use slurm_gpu_exporter::node::sources::fake::FakeNvml;
use slurm_gpu_exporter::node::sources::nvml::GpuProcess;
use slurm_gpu_exporter::node::testkit;
use slurm_gpu_exporter::node::{Agent, AgentConfig, Timing};

const FIXED_NOW: f64 = 1_767_225_600.0; // 2026-01-01T00:00:00Z

fn fixture(layout: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/node")
        .join(layout)
}

fn agent(node: &str, root: &Path, fake: &FakeNvml, mapping: Vec<PathBuf>) -> Agent {
    let cfg = AgentConfig {
        mapping_dirs: mapping,
        timing: Timing::Fixed {
            unix_seconds: FIXED_NOW,
        },
        ..AgentConfig::new(node, root.join("proc"), root.join("sys"))
    };
    Agent::new(cfg, Some(fake.factory())).expect("agent starts")
}

fn proc_on(fake: &FakeNvml, gpu: usize, pid: u32, gib: u64) {
    let mut procs = fake.lock().gpus[gpu].processes.clone();
    procs.push(GpuProcess {
        pid,
        used_memory_bytes: Some(gib << 30),
    });
    fake.set_processes(gpu, procs);
}

fn check_golden(layout: &str, text: &str) {
    golden::check(&format!("node-{layout}.prom"), text);
}

#[test]
fn p4dn_cgroupv1() {
    let root = fixture("p4dn-cgroupv1");
    // A100: no GPM, so no profiling series (slurm_gpu_profiling_supported 0).
    let fake = FakeNvml::node("NVIDIA A100-SXM4-40GB", 8, 42_949_672_960).without_profiling();
    for (gpu, pid) in [
        (0, 3001),
        (1, 3002),
        (2, 3003),
        (3, 3004),
        (4, 4001),
        (5, 4002),
    ] {
        proc_on(&fake, gpu, pid, 20);
    }
    // A process outside Slurm, and one that exited after NVML listed it.
    proc_on(&fake, 6, 5000, 1);
    proc_on(&fake, 6, 99999, 1);
    // An older GPU: no NVLink field values, no memory temperature.
    {
        let mut f = fake.lock();
        f.gpus[7].nvlink = None;
        f.gpus[7].memory_temperature_c = None;
        f.gpus[7].ecc = [3, 17, 0, 1];
        f.gpus[7].pcie_replays = 12;
    }
    let text = agent("p4dn-st-1", &root, &fake, vec![])
        .collect()
        .encode_text();
    check_golden("p4dn-cgroupv1", &text);
}

#[test]
fn p5_cgroupv2() {
    let dir = tempfile::tempdir().unwrap();
    let fx = testkit::write_p5(dir.path(), 2000).unwrap();
    assert_eq!(fx.processes, 2000);
    let text = agent("p5-st-7", dir.path(), &fx.gpus, vec![])
        .collect()
        .encode_text();
    check_golden("p5-cgroupv2", &text);
}

#[test]
fn slinky_cgroupv2_pod() {
    let root = fixture("slinky-cgroupv2-pod");
    let fake = FakeNvml::node("NVIDIA H100 80GB HBM3", 4, 85_520_809_984);
    proc_on(&fake, 0, 901, 30);
    proc_on(&fake, 1, 902, 31);
    let mut agent = agent("slinky-gpu-0", &root, &fake, vec![root.join("job-mapping")]);
    let first = agent.collect();
    assert_eq!(first.sum("slurm_gpu_up", &[]), 4.0);
    // GPU 3 falls off the bus between collections, after an XID 79; GPU 1
    // reports XID 31 twice.
    fake.push_xid(3, 79);
    fake.push_xid(1, 31);
    fake.push_xid(1, 31);
    fake.set_lost(3, true);
    let text = agent.collect().encode_text();
    check_golden("slinky-cgroupv2-pod", &text);
}

#[test]
fn sluid_cgroupv2() {
    let root = fixture("sluid-cgroupv2");
    let fake = FakeNvml::node("NVIDIA H200", 2, 150_754_820_096);
    proc_on(&fake, 0, 1200, 50);
    proc_on(&fake, 0, 1201, 2);
    proc_on(&fake, 1, 1300, 70);
    let text = agent("gpu-st-26", &root, &fake, vec![])
        .collect()
        .encode_text();
    check_golden("sluid-cgroupv2", &text);
}

/// Slinky on EKS: the DaemonSet knows only the Kubernetes node name
/// (`ip-10-0-1-23`, the fallback), but Slurm names the node after the slurmd
/// pod's host name. The agent reads that name from the slurmd process
/// (`/proc/<pid>/root/etc/hostname`; slurmd runs without `-N`), so its GPU
/// series join the cluster scraper's `slurm_job_gpus` with no per-node setting.
#[test]
fn slinky_slurmd_pod_node_name_discovered() {
    const SLURM_NODE: &str = "slurm-worker-gpu-h100-0";
    let root = fixture("slinky-slurmd-pod");
    let fake = FakeNvml::node("NVIDIA H100 80GB HBM3", 4, 85_520_809_984);
    proc_on(&fake, 0, 901, 30);
    proc_on(&fake, 1, 902, 30);
    proc_on(&fake, 2, 911, 20);
    let discovering = |node_from_slurmd: bool| {
        let cfg = AgentConfig {
            node_from_slurmd,
            timing: Timing::Fixed {
                unix_seconds: FIXED_NOW,
            },
            ..AgentConfig::new("ip-10-0-1-23", root.join("proc"), root.join("sys"))
        };
        Agent::new(cfg, Some(fake.factory())).expect("agent starts")
    };
    let set = discovering(true).collect();
    check_golden("slinky-slurmd-pod", &set.encode_text());

    // What the cluster scraper emits for these jobs from slurmrestd:
    // slurm_job_gpus{job_id, account, user, partition, node = Slurm NodeName, gpu = index}.
    let cluster_join = [("7101", "0"), ("7101", "1"), ("7102", "2")];
    let joins = |set: &slurm_gpu_exporter::exposition::MetricSet, node: &str| {
        cluster_join
            .iter()
            .filter(|(job, gpu)| {
                let on = [("node", node), ("gpu", *gpu)];
                set.value("slurm_gpu_utilization_ratio", &on).is_some()
                    && set.value("slurm_gpu_power_watts", &on).is_some()
                    && set
                        .value(
                            "slurm_gpu_job_info",
                            &[("node", node), ("gpu", gpu), ("job_id", job)],
                        )
                        .is_some()
            })
            .count()
    };
    assert_eq!(joins(&set, SLURM_NODE), 3, "every allocated GPU joins");
    // Every series carries the discovered name, none the Kubernetes one.
    let text = set.encode_text();
    assert!(!text.contains("ip-10-0-1-23"));
    assert_eq!(
        text.matches(&format!("node=\"{SLURM_NODE}\"")).count(),
        text.lines().filter(|l| !l.starts_with('#')).count()
    );

    // Without discovery (the old behaviour with the Kubernetes node name), the join is empty.
    let set = discovering(false).collect();
    assert_eq!(joins(&set, SLURM_NODE), 0);
    assert_eq!(set.sum("slurm_gpu_up", &[("node", "ip-10-0-1-23")]), 4.0);
}

/// NVML numbers GPUs in PCI order; slurmd, with `File=/dev/nvidia[0-3]` in
/// gres.conf and no AutoDetect, in device-file (minor) order. Here they
/// differ: NVML GPU i is /dev/nvidia`MINORS[i]`. The agent reads slurmd's
/// gres.conf (configless conf-cache under /proc/<slurmd>/root), so its `gpu`
/// label is Slurm's index and the join with the scraper's
/// `slurm_job_gpus{node, gpu}` names the GPU the job's processes really run on.
#[test]
fn pci_and_minor_order_differ() {
    const SLURM_NODE: &str = "slurm-worker-gpu-h100-0";
    const MINORS: [u32; 4] = [2, 0, 3, 1];
    let root = fixture("minor-order");
    let fake = FakeNvml::node("NVIDIA H100 80GB HBM3", 4, 85_520_809_984).with_minors(&MINORS);
    // Job 7101's processes run on NVML GPUs 0 and 1, job 7102's on NVML GPU 2.
    proc_on(&fake, 0, 901, 30);
    proc_on(&fake, 1, 902, 30);
    proc_on(&fake, 2, 911, 20);
    let uuid = |nvml: usize| fake.lock().gpus[nvml].identity.uuid.clone();
    // What slurmctld allocated, by Slurm's index (= rank of the minor):
    // NVML 0 → /dev/nvidia2 → IDX 2, NVML 1 → IDX 0, NVML 2 → IDX 3.
    // This is what the scraper's slurm_job_gpus{gpu} carries.
    let slurm_job_gpus = [("7101", "2", 0), ("7101", "0", 1), ("7102", "3", 2)];
    let run = |order: Option<&str>| {
        let mut cfg = AgentConfig {
            node_from_slurmd: true,
            timing: Timing::Fixed {
                unix_seconds: FIXED_NOW,
            },
            ..AgentConfig::new("ip-10-0-1-23", root.join("proc"), root.join("sys"))
        };
        if order == Some("nvml") {
            cfg.gpu_order = slurm_gpu_exporter::node::sources::gres_conf::OrderFlag::Nvml;
        }
        Agent::new(cfg, Some(fake.factory()))
            .expect("agent starts")
            .collect()
    };
    let right = |set: &slurm_gpu_exporter::exposition::MetricSet| {
        slurm_job_gpus
            .iter()
            .filter(|(job, gpu, nvml)| {
                let u = uuid(*nvml);
                let on = [("node", SLURM_NODE), ("gpu", *gpu), ("uuid", u.as_str())];
                // The node series at (node, gpu) are the GPU the job runs on...
                set.value("slurm_gpu_utilization_ratio", &on).is_some()
                    // ...and the agent's own attribution agrees with Slurm's.
                    && set
                        .value(
                            "slurm_gpu_job_info",
                            &[("node", SLURM_NODE), ("gpu", gpu), ("job_id", job), ("uuid", &u)],
                        )
                        .is_some()
            })
            .count()
    };
    let set = run(None);
    assert_eq!(
        right(&set),
        3,
        "every allocated GPU joins to the right device"
    );
    assert_eq!(
        set.value("slurm_gpu_numbering_info", &[("order", "gres_conf")]),
        Some(1.0)
    );
    assert_eq!(
        set.value("slurm_gpu_up", &[("gpu", "2"), ("minor", "2")]),
        Some(1.0)
    );
    check_golden("minor-order", &set.encode_text());
    // Numbered in NVML order (the agent's old behaviour), the join puts
    // jobs on the wrong devices.
    assert_eq!(right(&run(Some("nvml"))), 0);
}

/// The flags as the binary wires them: by default the `node` label is the
/// slurmd's name, `--slurm-node-name` overrides it, and the fallback is used
/// only while no slurmd is visible.
#[test]
fn node_name_flags_of_the_binary() {
    let root = fixture("slinky-slurmd-pod");
    let empty = tempfile::tempdir().unwrap();
    let once = |procfs: &Path, extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_slurm-gpu-exporter"))
            .arg("node")
            .arg("--once")
            .arg("--gpu.backend=fake")
            .arg(format!("--path.procfs={}", procfs.display()))
            .arg(format!("--path.sysfs={}", root.join("sys").display()))
            .args(extra)
            .env_remove("SLURM_GPU_EXPORTER_SLURM_NODE_NAME")
            .env_remove("SLURM_GPU_EXPORTER_SLURM_NODE_NAME_FALLBACK")
            .output()
            .expect("run the binary");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .find(|l| l.starts_with("slurm_gpu_devices{"))
            .unwrap_or_else(|| panic!("no slurm_gpu_devices in\n{text}"))
            .to_string()
    };
    let proc_ = root.join("proc");
    let fallback = ["--slurm-node-name.fallback=ip-10-0-1-23"];
    assert_eq!(
        once(&proc_, &fallback),
        "slurm_gpu_devices{node=\"slurm-worker-gpu-h100-0\"} 8"
    );
    assert_eq!(
        once(&proc_, &["--slurm-node-name=given-0", fallback[0]]),
        "slurm_gpu_devices{node=\"given-0\"} 8"
    );
    assert_eq!(
        once(empty.path(), &fallback),
        "slurm_gpu_devices{node=\"ip-10-0-1-23\"} 8"
    );
}
