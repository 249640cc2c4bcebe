//! The demo's compute node `vm`: a synthetic p5-like procfs/sysfs tree and
//! eight fake H100s that follow the simulated cluster's GPU jobs.
//!
//! Every tick, the jobs holding GPUs of `vm` get processes in `/proc` (cgroup
//! `job_<id>`, Slurm environment, memlock limits) and on their fake GPUs; the
//! processes of ended jobs go. A GPU's readings follow its job: about one
//! job in four loads its model and then idles (so the idle-GPU panels and
//! alerts have something to show), the others run at 55–95 % with power,
//! temperature and memory to match; free GPUs idle at ~70 W. Energy is the
//! integral of power. The four EFA devices count NCCL-like traffic of the
//! busy GPUs: RDMA reads and writes of 256 KiB–1 MiB per work request,
//! small send/receive messages, ~8 KiB packets, rare drops and
//! retransmissions, and admin commands only when a job sets up its queue
//! pairs. Node counters advance in real time, so rates look like a real p5
//! whatever `--speed` is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::sim::{unit, Cluster, GpuJob, NODE_GPUS};
use crate::node::sources::fake::FakeNvml;
use crate::node::sources::nvml::GpuProcess;
use crate::node::sources::procfs::Limit;
use crate::node::testkit::{write_efa_device, write_process, ProcSpec};

/// EFA devices of the demo node (a p5.48xlarge has 32; four keep it small).
pub const EFA_DEVICES: [&str; 4] = ["rdmap16s0", "rdmap32s0", "rdmap48s0", "rdmap64s0"];

/// The EFA device whose remote peer is flaky (index into [`EFA_DEVICES`]).
pub const FLAKY_DEVICE: usize = 3;

/// Drained node `gpu-node03` ("PSU replacement"), whose agent still runs:
/// the faulty H100s of [`FakeNvml::h100x8_faulty`] (one fallen off the bus,
/// one with growing ECC errors and failed row remapping, one in thermal
/// slowdown, XIDs) and no EFA driver loaded (no `class/infiniband`: zero
/// EFA devices). Gives the GPU health panels and alerts something to show.
pub fn faulty_node(root: &Path) -> std::io::Result<(crate::node::Agent, FakeNvml)> {
    let proc_root = root.join("proc");
    let sys_root = root.join("sys");
    std::fs::create_dir_all(&sys_root)?;
    write_process(
        &proc_root,
        &ProcSpec {
            pid: 1180,
            comm: "slurmd",
            cgroup: "0::/system.slice/slurmd.service\n".into(),
            memlock: (Limit::Unlimited, Limit::Unlimited),
            environ: &[],
        },
    )?;
    let gpus = FakeNvml::h100x8_faulty();
    {
        // Drained: nothing runs; GPUs idle.
        let mut fleet = gpus.lock();
        for g in fleet.gpus.iter_mut() {
            g.utilization = (0, 0);
            g.memory.0 = 536_870_912;
            g.power_mw = 68_000;
        }
    }
    let agent = crate::node::Agent::new(
        crate::node::AgentConfig::new(FAULTY_NODE, proc_root, sys_root),
        Some(gpus.factory()),
    )?;
    Ok((agent, gpus))
}

/// Node `gpu-node02`, DOWN in Slurm (slurmd not responding) after a driver
/// upgrade without a reboot: its agent runs, but NVML answers "Driver/library
/// version mismatch", so its GPU collector reports itself down.
pub fn mismatch_node(root: &Path) -> std::io::Result<(crate::node::Agent, FakeNvml)> {
    let proc_root = root.join("proc");
    let sys_root = root.join("sys");
    std::fs::create_dir_all(&proc_root)?;
    for (d, name) in EFA_DEVICES.iter().enumerate() {
        write_efa_device(&sys_root, name, d, false)?;
    }
    // No jobs since slurmd went down: the devices count no traffic, only
    // the firmware's keep-alives and the admin commands of their setup.
    for name in EFA_DEVICES {
        let dev = sys_root.join("class/infiniband").join(name);
        for (file, ..) in crate::node::collectors::efa::DEVICE_COUNTERS {
            let v = match file {
                "submitted_cmds" | "completed_cmds" => 96,
                "keep_alive_rcvd" => 86_400,
                _ => 0,
            };
            write_atomic(&dev.join("hw_counters").join(file), v)?;
        }
        for (file, ..) in crate::node::collectors::efa::PORT_COUNTERS {
            write_atomic(&dev.join("ports/1/hw_counters").join(file), 0)?;
        }
    }
    let gpus = FakeNvml::h100x8();
    gpus.set_unavailable(Some("Driver/library version mismatch"));
    let agent = crate::node::Agent::new(
        crate::node::AgentConfig::new(MISMATCH_NODE, proc_root, sys_root),
        Some(gpus.factory()),
    )?;
    Ok((agent, gpus))
}

/// The recorded cluster's node whose slurmd does not respond.
pub const MISMATCH_NODE: &str = "gpu-node02";

/// The recorded cluster's drained node.
pub const FAULTY_NODE: &str = "gpu-node03";

/// Whether a job leaves its GPUs idle (loaded model, no work).
pub fn idles(job_id: u64) -> bool {
    job_id % 4 == 2
}

/// Utilization of a job's GPU `rank` at real second `t` (0–1).
pub fn utilization(job_id: u64, rank: usize, t: f64) -> f64 {
    if idles(job_id) {
        return 0.0;
    }
    let base = 0.55 + 0.35 * unit(job_id, 2);
    let wobble = 0.05 * (t / 7.0 + rank as f64 + job_id as f64).sin();
    (base + wobble).clamp(0.0, 1.0)
}

/// Cumulative EFA counters of one device.
#[derive(Debug, Clone, Default)]
struct Efa {
    port: BTreeMap<&'static str, u64>,
    device: BTreeMap<&'static str, u64>,
}

pub struct DemoNode {
    cluster: Cluster,
    gpus: FakeNvml,
    proc_root: PathBuf,
    sys_root: PathBuf,
    /// Running jobs seen at the last tick, with their pids.
    jobs: BTreeMap<u64, Vec<u32>>,
    efa: Vec<Efa>,
    energy_mj: [f64; NODE_GPUS],
    last: Instant,
    started: Instant,
    ticks: u64,
}

fn pid_of(job_id: u64, rank: usize) -> u32 {
    (10_000 + (job_id % 400_000) * 8 + rank as u64) as u32
}

impl DemoNode {
    /// Writes the static part of the node under `root` (`proc/`, `sys/`):
    /// slurmd and the EFA devices.
    pub fn create(root: &Path, cluster: Cluster) -> std::io::Result<DemoNode> {
        let proc_root = root.join("proc");
        let sys_root = root.join("sys");
        for (d, name) in EFA_DEVICES.iter().enumerate() {
            write_efa_device(&sys_root, name, d, false)?;
        }
        write_process(
            &proc_root,
            &ProcSpec {
                pid: 1200,
                comm: "slurmd",
                cgroup: "0::/system.slice/slurmd.service\n".into(),
                memlock: (Limit::Unlimited, Limit::Unlimited),
                environ: &[],
            },
        )?;
        let gpus = FakeNvml::h100x8();
        {
            let mut fleet = gpus.lock();
            for (i, g) in fleet.gpus.iter_mut().enumerate() {
                g.energy_mj = 0;
                g.clock_event_reasons = 0x1;
                g.temperature_c = 31 + i as u32 % 3;
            }
        }
        let mut node = DemoNode {
            cluster,
            gpus,
            proc_root,
            sys_root,
            jobs: BTreeMap::new(),
            efa: vec![Efa::default(); EFA_DEVICES.len()],
            // Energy since the driver loaded: a week at ~300 W.
            energy_mj: std::array::from_fn(|i| 1.8e11 + i as f64 * 1.3e9),
            last: Instant::now(),
            started: Instant::now(),
            ticks: 0,
        };
        node.tick()?;
        Ok(node)
    }

    pub fn gpus(&self) -> &FakeNvml {
        &self.gpus
    }

    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    pub fn sys_root(&self) -> &Path {
        &self.sys_root
    }

    /// Follows the cluster to now: processes, GPU readings, EFA counters.
    pub fn tick(&mut self) -> std::io::Result<()> {
        let dt = self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        let t = self.started.elapsed().as_secs_f64();
        self.ticks += 1;
        let running = self.cluster.gpu_jobs();
        self.sync_processes(&running)?;

        let mut by_gpu: [Option<(&GpuJob, usize)>; NODE_GPUS] = [None; NODE_GPUS];
        for j in &running {
            for (rank, &g) in j.gpus.iter().enumerate() {
                if let Some(slot) = by_gpu.get_mut(g) {
                    *slot = Some((j, rank));
                }
            }
        }
        let mut busy = 0.0;
        {
            let mut fleet = self.gpus.lock();
            for (i, g) in fleet.gpus.iter_mut().enumerate() {
                let (util, mem_gib, procs) = match by_gpu[i] {
                    Some((j, rank)) => {
                        let u = utilization(j.job_id, rank, t);
                        let mem = 18.0 + 50.0 * unit(j.job_id, 4);
                        let proc = GpuProcess {
                            pid: pid_of(j.job_id, rank),
                            used_memory_bytes: Some((mem * 1_073_741_824.0) as u64),
                        };
                        (u, mem + 0.5, vec![proc])
                    }
                    None => (0.0, 0.5, Vec::new()),
                };
                busy += util;
                let power_w = if util > 0.0 {
                    140.0 + 540.0 * util
                } else if procs.is_empty() {
                    69.0 + i as f64
                } else {
                    112.0 + i as f64
                };
                g.utilization = ((util * 100.0).round() as u32, (util * 62.0).round() as u32);
                g.memory.0 = (mem_gib * 1_073_741_824.0) as u64;
                g.power_mw = (power_w * 1000.0) as u32;
                self.energy_mj[i] += power_w * 1000.0 * dt;
                g.energy_mj = self.energy_mj[i] as u64;
                g.temperature_c = (31.0 + 42.0 * util) as u32 + i as u32 % 3;
                g.memory_temperature_c = Some(g.temperature_c + 6);
                g.sm_clock_mhz = if util > 0.0 { 1980 } else { 345 };
                // Idle when doing nothing; software power cap under full load.
                g.clock_event_reasons = if util == 0.0 {
                    0x1
                } else if util > 0.85 {
                    0x4
                } else {
                    0x0
                };
                g.processes = procs;
            }
        }
        self.advance_efa(busy, dt, t)
    }

    /// Job processes in `/proc` and on the GPUs: new jobs get theirs, ended
    /// jobs lose theirs. A job that gets an XID 31 (an application's
    /// illegal memory access) does so when it starts, on its first GPU.
    fn sync_processes(&mut self, running: &[GpuJob]) -> std::io::Result<()> {
        let live: BTreeMap<u64, &GpuJob> = running.iter().map(|j| (j.job_id, j)).collect();
        let gone: Vec<u64> = self
            .jobs
            .keys()
            .filter(|id| !live.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            for pid in self.jobs.remove(&id).unwrap_or_default() {
                let _ = std::fs::remove_dir_all(self.proc_root.join(pid.to_string()));
            }
        }
        for (id, j) in live {
            if self.jobs.contains_key(&id) {
                continue;
            }
            let job = id.to_string();
            let env = [
                ("SLURM_JOB_ID", job.as_str()),
                ("SLURM_JOB_USER", j.user.as_str()),
                ("SLURM_JOB_ACCOUNT", j.account.as_str()),
            ];
            // md_sim's launcher forgot `ulimit -l unlimited`, as in the recording.
            let memlock = if j.name == "md_sim" {
                (Limit::Bytes(65536), Limit::Bytes(65536))
            } else {
                (Limit::Unlimited, Limit::Unlimited)
            };
            let mut pids = Vec::new();
            for rank in 0..j.gpus.len() {
                let pid = pid_of(id, rank);
                write_process(
                    &self.proc_root,
                    &ProcSpec {
                        pid,
                        comm: "python",
                        cgroup: format!(
                            "0::/system.slice/slurmstepd.scope/job_{id}/step_0/user/task_{rank}\n"
                        ),
                        memlock,
                        environ: &env,
                    },
                )?;
                pids.push(pid);
            }
            if id % 4 == 1 {
                if let Some(&g) = j.gpus.first() {
                    self.gpus.push_xid(g as u32, 31);
                }
            }
            // Queue pairs and memory registrations of the new job's NCCL.
            for e in &mut self.efa {
                *e.device.entry("submitted_cmds").or_default() += 48;
                *e.device.entry("completed_cmds").or_default() += 48;
            }
            self.jobs.insert(id, pids);
        }
        Ok(())
    }

    /// Adds `dt` seconds of traffic for `busy` GPUs' worth of utilization and
    /// writes every counter file.
    fn advance_efa(&mut self, busy: f64, dt: f64, t: f64) -> std::io::Result<()> {
        let n = self.efa.len() as f64;
        for (d, e) in self.efa.iter_mut().enumerate() {
            // ~2.5 GB/s of RDMA per device per fully busy GPU, split over devices.
            let rdma = busy * 2.5e9 * dt * 4.0 / n * (0.9 + 0.2 * unit(d as u64, 9));
            let read = (rdma * 0.55) as u64;
            let write = (rdma * 0.45) as u64;
            let read_wrs = read / (512 << 10);
            let write_wrs = write / (256 << 10);
            let send = (busy * 4.0e6 * dt) as u64;
            let send_wrs = send / 4096;
            let tx = write + send + (dt * 2_000.0) as u64;
            let rx = read + send + (dt * 2_000.0) as u64;
            let tx_pkts = tx / 8192 + (dt * 2.0) as u64;
            let rx_pkts = rx / 8192 + (dt * 2.0) as u64;
            let p = &mut e.port;
            let mut add = |k: &'static str, v: u64| *p.entry(k).or_default() += v;
            add("rdma_read_bytes", read);
            add("rdma_read_wrs", read_wrs);
            add("rdma_read_resp_bytes", write);
            add("rdma_write_bytes", write);
            add("rdma_write_wrs", write_wrs);
            add("rdma_write_recv_bytes", read);
            add("send_bytes", send);
            add("send_wrs", send_wrs);
            add("recv_bytes", send);
            add("recv_wrs", send_wrs);
            add("tx_bytes", tx);
            add("rx_bytes", rx);
            add("tx_pkts", tx_pkts);
            add("rx_pkts", rx_pkts);
            // Rare: about one drop and one retransmitted packet per 10^7
            // packets, a retransmission timeout per 10^9.
            let total = p.get("rx_pkts").copied().unwrap_or(0);
            p.insert("rx_drops", total / 10_000_000);
            let tx_total = p.get("tx_pkts").copied().unwrap_or(0);
            p.insert("retrans_pkts", tx_total / 5_000_000);
            p.insert("retrans_bytes", tx_total / 5_000_000 * 8192);
            p.insert("retrans_timeout_events", tx_total / 1_000_000_000);
            for k in [
                "rdma_read_wr_err",
                "rdma_write_wr_err",
                "unresponsive_remote_events",
                "impaired_remote_conn_events",
            ] {
                p.entry(k).or_insert(0);
            }
            if d == FLAKY_DEVICE {
                // A peer behind this device's path drops out now and then:
                // a retransmission timeout every ~20 s, the remote reported
                // unresponsive every ~30 s and the connection impaired every ~40 s.
                let at = |period: f64| (t / period) as u64;
                p.insert("retrans_timeout_events", at(20.0));
                p.insert("unresponsive_remote_events", at(30.0));
                p.insert("impaired_remote_conn_events", at(40.0));
            }
            let dev = &mut e.device;
            *dev.entry("keep_alive_rcvd").or_default() += dt.round() as u64;
            for k in [
                "submitted_cmds",
                "completed_cmds",
                "cmds_err",
                "no_completion_cmds",
                "alloc_pd_err",
                "create_qp_err",
                "create_cq_err",
                "reg_mr_err",
                "alloc_ucontext_err",
                "create_ah_err",
                "mmap_err",
            ] {
                dev.entry(k).or_insert(0);
            }
            let base = self.sys_root.join("class/infiniband").join(EFA_DEVICES[d]);
            for (k, v) in &e.device {
                write_atomic(&base.join("hw_counters").join(k), *v)?;
            }
            for (k, v) in &e.port {
                write_atomic(&base.join("ports/1/hw_counters").join(k), *v)?;
            }
        }
        Ok(())
    }
}

/// Replaces a counter file whole, so the agent never reads half a number.
fn write_atomic(path: &Path, v: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{v}\n"))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::super::sim::SimClock;
    use super::*;

    fn read(p: &Path) -> u64 {
        std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
    }

    #[test]
    fn gpus_follow_jobs_and_efa_looks_like_nccl() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::new(SimClock::new(1.0));
        let mut node = DemoNode::create(dir.path(), cluster).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        node.tick().unwrap();
        {
            let fleet = node.gpus().lock();
            // Recorded: job 29 on GPUs 0-1 busy, job 30 on 2-3 idle, 7 free.
            assert!(fleet.gpus[0].utilization.0 >= 50);
            assert_eq!(fleet.gpus[2].utilization.0, 0);
            assert_eq!(fleet.gpus[2].processes.len(), 1);
            assert!(fleet.gpus[7].processes.is_empty());
            assert!(fleet.gpus[0].power_mw > fleet.gpus[2].power_mw);
            assert!(fleet.gpus[2].power_mw > fleet.gpus[7].power_mw);
        }
        let cg = std::fs::read_to_string(
            node.proc_root()
                .join(pid_of(29, 0).to_string())
                .join("cgroup"),
        )
        .unwrap();
        assert!(cg.contains("job_29"));
        let port = node
            .sys_root()
            .join("class/infiniband/rdmap16s0/ports/1/hw_counters");
        let bytes = read(&port.join("rdma_read_bytes"));
        let wrs = read(&port.join("rdma_read_wrs"));
        assert!(wrs > 0);
        let per_wr = bytes / wrs;
        assert!(
            (64 << 10..=1 << 20).contains(&per_wr),
            "{per_wr} bytes per WR"
        );
        let dev = node
            .sys_root()
            .join("class/infiniband/rdmap16s0/hw_counters");
        assert_eq!(read(&dev.join("cmds_err")), 0);
        assert!(read(&dev.join("submitted_cmds")) >= 48);
        assert!(read(&port.join("rx_drops")) * 1_000_000 <= read(&port.join("rx_pkts")));
    }

    #[test]
    fn idle_node_counters_are_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let (_agent, gpus) = mismatch_node(dir.path()).unwrap();
        assert!(gpus.lock().unavailable.is_some());
        let dev = dir.path().join("sys/class/infiniband/rdmap16s0");
        assert_eq!(read(&dev.join("hw_counters/cmds_err")), 0);
        assert_eq!(
            read(&dev.join("hw_counters/submitted_cmds")),
            read(&dev.join("hw_counters/completed_cmds"))
        );
        assert_eq!(read(&dev.join("ports/1/hw_counters/rdma_read_bytes")), 0);
    }
}
