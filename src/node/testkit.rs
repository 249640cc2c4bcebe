//! Synthetic `/proc` and `/sys` trees for tests, benchmarks and the demo.
//!
//! The small layouts (p4dn with cgroup v1, Slinky pods, SLUIDs) are
//! committed under `tests/fixtures/node/`; the p5-like layout (32 EFA
//! devices, thousands of processes) is too big to commit and is written
//! here. The file formats follow the kernel's exactly (`/proc/<pid>/limits`
//! column widths, NUL-separated `environ`, `N: STATE` port states).

use std::io;
use std::path::Path;

use crate::node::collectors::efa::{DEVICE_COUNTERS, PORT_COUNTERS};
use crate::node::sources::fake::FakeNvml;
use crate::node::sources::nvml::GpuProcess;
use crate::node::sources::procfs::Limit;

/// Port counters a pre-2.x EFA driver lacks (RDMA write, SRD retransmission
/// and remote-health counters).
pub const NEWER_PORT_COUNTERS: [&str; 10] = [
    "rdma_read_resp_bytes",
    "rdma_write_wrs",
    "rdma_write_bytes",
    "rdma_write_wr_err",
    "rdma_write_recv_bytes",
    "retrans_bytes",
    "retrans_pkts",
    "retrans_timeout_events",
    "unresponsive_remote_events",
    "impaired_remote_conn_events",
];

fn write(path: &Path, content: impl AsRef<[u8]>) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, content)
}

/// A `/proc/<pid>/limits` file as the kernel prints it.
pub fn limits_file(memlock_soft: Limit, memlock_hard: Limit) -> String {
    let fmt = |l: Limit| match l {
        Limit::Unlimited => "unlimited".to_string(),
        Limit::Bytes(b) => b.to_string(),
    };
    let rows: [(&str, String, String, &str); 16] = [
        (
            "Max cpu time",
            "unlimited".into(),
            "unlimited".into(),
            "seconds",
        ),
        (
            "Max file size",
            "unlimited".into(),
            "unlimited".into(),
            "bytes",
        ),
        (
            "Max data size",
            "unlimited".into(),
            "unlimited".into(),
            "bytes",
        ),
        (
            "Max stack size",
            "8388608".into(),
            "unlimited".into(),
            "bytes",
        ),
        (
            "Max core file size",
            "0".into(),
            "unlimited".into(),
            "bytes",
        ),
        (
            "Max resident set",
            "unlimited".into(),
            "unlimited".into(),
            "bytes",
        ),
        (
            "Max processes",
            "2062958".into(),
            "2062958".into(),
            "processes",
        ),
        (
            "Max open files",
            "1048576".into(),
            "1048576".into(),
            "files",
        ),
        (
            "Max locked memory",
            fmt(memlock_soft),
            fmt(memlock_hard),
            "bytes",
        ),
        (
            "Max address space",
            "unlimited".into(),
            "unlimited".into(),
            "bytes",
        ),
        (
            "Max file locks",
            "unlimited".into(),
            "unlimited".into(),
            "locks",
        ),
        (
            "Max pending signals",
            "2062958".into(),
            "2062958".into(),
            "signals",
        ),
        (
            "Max msgqueue size",
            "819200".into(),
            "819200".into(),
            "bytes",
        ),
        ("Max nice priority", "0".into(), "0".into(), ""),
        ("Max realtime priority", "0".into(), "0".into(), ""),
        (
            "Max realtime timeout",
            "unlimited".into(),
            "unlimited".into(),
            "us",
        ),
    ];
    let mut s = format!(
        "{:<25} {:<20} {:<20} {:<10}\n",
        "Limit", "Soft Limit", "Hard Limit", "Units"
    );
    for (name, soft, hard, unit) in rows {
        s.push_str(&format!("{name:<25} {soft:<20} {hard:<20} {unit:<10}\n"));
    }
    s
}

/// One synthetic process.
pub struct ProcSpec<'a> {
    pub pid: u32,
    pub comm: &'a str,
    /// Full content of `/proc/<pid>/cgroup`.
    pub cgroup: String,
    pub memlock: (Limit, Limit),
    /// `(name, value)` pairs for `environ`.
    pub environ: &'a [(&'a str, &'a str)],
}

pub fn write_process(proc_root: &Path, p: &ProcSpec<'_>) -> io::Result<()> {
    let dir = proc_root.join(p.pid.to_string());
    write(&dir.join("comm"), format!("{}\n", p.comm))?;
    write(&dir.join("cgroup"), &p.cgroup)?;
    write(&dir.join("limits"), limits_file(p.memlock.0, p.memlock.1))?;
    let mut env = Vec::new();
    for (k, v) in p.environ {
        env.extend_from_slice(k.as_bytes());
        env.push(b'=');
        env.extend_from_slice(v.as_bytes());
        env.push(0);
    }
    write(&dir.join("environ"), env)
}

/// Deterministic counter value for device `d`, counter `c`.
fn counter_value(d: usize, c: usize) -> u64 {
    (d as u64 + 1) * 1_000_003 + c as u64 * 7_919
}

/// One EFA device under `<sys>/class/infiniband/<name>`; `old_driver`
/// leaves out [`NEWER_PORT_COUNTERS`].
pub fn write_efa_device(sys_root: &Path, name: &str, d: usize, old_driver: bool) -> io::Result<()> {
    let dev = sys_root.join("class/infiniband").join(name);
    write(&dev.join("device/vendor"), "0x1d0f\n")?;
    write(&dev.join("device/device"), "0xefa1\n")?;
    write(&dev.join("hw_counters/lifespan"), "12\n")?;
    for (c, (file, ..)) in DEVICE_COUNTERS.iter().enumerate() {
        write(
            &dev.join("hw_counters").join(file),
            format!("{}\n", counter_value(d, c) % 1000),
        )?;
    }
    let port = dev.join("ports/1");
    write(&port.join("state"), "4: ACTIVE\n")?;
    write(&port.join("phys_state"), "5: LinkUp\n")?;
    write(&port.join("rate"), "100 Gb/sec (4X EDR)\n")?;
    write(&port.join("hw_counters/lifespan"), "12\n")?;
    for (c, (file, ..)) in PORT_COUNTERS.iter().enumerate() {
        if old_driver && NEWER_PORT_COUNTERS.contains(file) {
            continue;
        }
        write(
            &port.join("hw_counters").join(file),
            format!("{}\n", counter_value(d, c)),
        )?;
    }
    Ok(())
}

/// What [`write_p5`] put where.
pub struct P5Fixture {
    /// Fake GPUs whose processes are the job ranks of the tree.
    pub gpus: FakeNvml,
    pub processes: usize,
    pub efa_devices: usize,
}

/// A p5.48xlarge-like node under `root/{proc,sys}`: 32 EFA devices
/// (`rdmap*`; the eighth with an old driver lacking the newer counters),
/// one non-EFA RDMA device, and `processes` processes: systemd, kernel
/// threads, slurmd, and two jobs on cgroup v2 (4242 on GPUs 0–3 with
/// unlimited memlock; 4243 on GPUs 4–7 whose rank 3 runs with 65536) with
/// data-loader workers, plus user-session processes.
pub fn write_p5(root: &Path, processes: usize) -> io::Result<P5Fixture> {
    let sys = root.join("sys");
    let proc_root = root.join("proc");
    std::fs::create_dir_all(&proc_root)?;
    for d in 0..32 {
        let name = format!("rdmap{}s0", 79 + d * 4);
        write_efa_device(&sys, &name, d, d == 7)?;
    }
    let mlx = sys.join("class/infiniband/mlx5_0");
    write(&mlx.join("device/vendor"), "0x15b3\n")?;
    write(&mlx.join("ports/1/state"), "4: ACTIVE\n")?;

    let unlimited = (Limit::Unlimited, Limit::Unlimited);
    let n = std::cell::Cell::new(0usize);
    let put = |p: ProcSpec<'_>| -> io::Result<()> {
        n.set(n.get() + 1);
        write_process(&proc_root, &p)
    };
    put(ProcSpec {
        pid: 1,
        comm: "systemd",
        cgroup: "0::/init.scope\n".into(),
        memlock: (Limit::Bytes(8_388_608), Limit::Bytes(8_388_608)),
        environ: &[],
    })?;
    put(ProcSpec {
        pid: 2100,
        comm: "slurmd",
        cgroup: "0::/system.slice/slurmd.service\n".into(),
        memlock: unlimited,
        environ: &[],
    })?;
    let fake = FakeNvml::h100x8();
    let jobs = [("4242", "alice", "ml-research"), ("4243", "bob", "infra")];
    let mut next_pid = 10_000u32;
    let workers_per_rank = processes.saturating_sub(64) / 4 / 8;
    for (j, (job, user, account)) in jobs.iter().enumerate() {
        let scope = "0::/system.slice/slurmstepd.scope";
        let env: Vec<(&str, &str)> = vec![
            ("PATH", "/usr/bin:/bin"),
            ("SLURM_JOB_ID", job),
            ("SLURM_JOB_USER", user),
            ("SLURM_JOB_ACCOUNT", account),
        ];
        for step in ["extern", "0"] {
            put(ProcSpec {
                pid: next_pid,
                comm: "slurmstepd",
                cgroup: format!("{scope}/job_{job}/step_{step}/slurm\n"),
                memlock: (Limit::Bytes(65536), Limit::Bytes(65536)),
                environ: &[],
            })?;
            next_pid += 1;
        }
        put(ProcSpec {
            pid: next_pid,
            comm: "sleep",
            cgroup: format!("{scope}/job_{job}/step_extern/user/task_special\n"),
            memlock: unlimited,
            environ: &env,
        })?;
        next_pid += 1;
        for rank in 0..4u32 {
            let gpu = j as u32 * 4 + rank;
            let limited = *job == "4243" && rank == 3;
            let memlock = if limited {
                (Limit::Bytes(65536), Limit::Unlimited)
            } else {
                unlimited
            };
            let cgroup = format!("{scope}/job_{job}/step_0/user/task_{rank}\n");
            let pid = next_pid;
            put(ProcSpec {
                pid,
                comm: "python",
                cgroup: cgroup.clone(),
                memlock,
                environ: &env,
            })?;
            next_pid += 1;
            fake.set_processes(
                gpu as usize,
                vec![GpuProcess {
                    pid,
                    used_memory_bytes: Some(40 * 1_073_741_824 + gpu as u64 * 1_048_576),
                }],
            );
            for _ in 0..workers_per_rank {
                put(ProcSpec {
                    pid: next_pid,
                    comm: "pt_data_worker",
                    cgroup: cgroup.clone(),
                    memlock,
                    environ: &env,
                })?;
                next_pid += 1;
            }
        }
    }
    // Kernel threads and session processes fill up the rest.
    let mut pid = 3u32;
    while n.get() < processes {
        let (comm, cgroup) = if pid % 5 == 0 {
            ("bash", "0::/user.slice/user-1000.slice/session-1.scope\n")
        } else {
            ("kworker/0:1", "0::/\n")
        };
        put(ProcSpec {
            pid,
            comm,
            cgroup: cgroup.into(),
            memlock: (Limit::Bytes(8_388_608), Limit::Bytes(8_388_608)),
            environ: &[],
        })?;
        pid += 1;
        if pid == 2100 {
            pid += 1;
        }
    }
    Ok(P5Fixture {
        gpus: fake,
        processes: n.get(),
        efa_devices: 32,
    })
}
