//! EFA collector: every `<sysfs>/class/infiniband/<dev>` with PCI vendor
//! `0x1d0f` (`efa_N` or `rdmap*` names), its device counters
//! (`<dev>/hw_counters/`), and per port its counters
//! (`ports/<p>/hw_counters/`), state and link rate.
//!
//! Counters are u64, cumulative since driver load. A counter file missing
//! (older driver, no SRD) is skipped; one that exists but cannot be read or
//! parsed is skipped and counted in `slurm_efa_unreadable_counters`.

use std::path::Path;

use super::{node_labels, CollectError, Collector, CollectorSpec, CycleInputs};
use crate::exposition::{Kind, Labels, MetricDesc, MetricSet};
use crate::node::sources::fs::read_u64;
use crate::node::sources::sysfs::{ports, read_port_rate, read_port_state, SysFs};

const DEVICE: &[&str] = &["node", "device"];
const PORT: &[&str] = &["node", "device", "port"];

pub const DEVICES: MetricDesc = MetricDesc {
    name: "slurm_efa_devices",
    help: "EFA devices found (PCI vendor 0x1d0f under /sys/class/infiniband).",
    kind: Kind::Gauge,
    labels: &["node"],
};

pub const PORT_STATE_ID: MetricDesc = MetricDesc {
    name: "slurm_efa_port_state_id",
    help: "EFA port state as a number (4 = ACTIVE), from ports/<p>/state.",
    kind: Kind::Gauge,
    labels: PORT,
};

pub const PORT_ACTIVE: MetricDesc = MetricDesc {
    name: "slurm_efa_port_active",
    help: "1 if the EFA port state is ACTIVE.",
    kind: Kind::Gauge,
    labels: PORT,
};

pub const PORT_RATE: MetricDesc = MetricDesc {
    name: "slurm_efa_port_rate_bytes_per_second",
    help: "EFA port link rate, from ports/<p>/rate.",
    kind: Kind::Gauge,
    labels: PORT,
};

pub const UNREADABLE_COUNTERS: MetricDesc = MetricDesc {
    name: "slurm_efa_unreadable_counters",
    help: "EFA counter files that exist but could not be read or parsed in the last collection.",
    kind: Kind::Gauge,
    labels: &["node"],
};

/// Every family of the EFA collector.
pub const METRICS: &[&MetricDesc] = &{
    const N: usize = 5 + PORT_COUNTERS.len() + DEVICE_COUNTERS.len();
    let mut all: [&MetricDesc; N] = [&DEVICES; N];
    all[1] = &PORT_STATE_ID;
    all[2] = &PORT_ACTIVE;
    all[3] = &PORT_RATE;
    all[4] = &UNREADABLE_COUNTERS;
    let mut i = 0;
    while i < PORT_COUNTERS.len() {
        all[5 + i] = &PORT_COUNTERS[i].1;
        i += 1;
    }
    let mut j = 0;
    while j < DEVICE_COUNTERS.len() {
        all[5 + i + j] = &DEVICE_COUNTERS[j].1;
        j += 1;
    }
    all
};

pub const NAME: &str = "efa";

/// The registry line of the EFA collector.
pub const SPEC: CollectorSpec = CollectorSpec {
    name: NAME,
    flag: "collector.efa",
    env: "SLURM_GPU_EXPORTER_COLLECTOR_EFA",
    help: "EFA collector (sysfs)",
    needs_gpu: false,
    metrics: METRICS,
    build: |_| Box::<EfaCollector>::default(),
};

/// `(file in ports/<p>/hw_counters, family)`.
pub const PORT_COUNTERS: [(&str, MetricDesc); 22] = [
    (
        "tx_bytes",
        MetricDesc {
            name: "slurm_efa_port_tx_bytes_total",
            help: "Bytes transmitted by the EFA port.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "rx_bytes",
        MetricDesc {
            name: "slurm_efa_port_rx_bytes_total",
            help: "Bytes received by the EFA port.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "tx_pkts",
        MetricDesc {
            name: "slurm_efa_port_tx_pkts_total",
            help: "Packets transmitted by the EFA port.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "rx_pkts",
        MetricDesc {
            name: "slurm_efa_port_rx_pkts_total",
            help: "Packets received by the EFA port.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "rx_drops",
        MetricDesc {
            name: "slurm_efa_port_rx_drops_total",
            help: "Received packets dropped by the EFA port.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "send_bytes",
        MetricDesc {
            name: "slurm_efa_port_send_bytes_total",
            help: "Bytes sent with send work requests.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "recv_bytes",
        MetricDesc {
            name: "slurm_efa_port_recv_bytes_total",
            help: "Bytes received with receive work requests.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "send_wrs",
        MetricDesc {
            name: "slurm_efa_port_send_wrs_total",
            help: "Send work requests.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "recv_wrs",
        MetricDesc {
            name: "slurm_efa_port_recv_wrs_total",
            help: "Receive work requests.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "rdma_read_wrs",
        MetricDesc {
            name: "slurm_efa_port_rdma_read_wrs_total",
            help: "RDMA read work requests.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "rdma_read_bytes",
        MetricDesc {
            name: "slurm_efa_port_rdma_read_bytes_total",
            help: "Bytes read with RDMA read.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "rdma_read_wr_err",
        MetricDesc {
            name: "slurm_efa_port_rdma_read_wr_err_total",
            help: "RDMA read work requests that failed.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "rdma_read_resp_bytes",
        MetricDesc {
            name: "slurm_efa_port_rdma_read_resp_bytes_total",
            help: "Bytes sent in responses to remote RDMA reads.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "rdma_write_wrs",
        MetricDesc {
            name: "slurm_efa_port_rdma_write_wrs_total",
            help: "RDMA write work requests.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "rdma_write_bytes",
        MetricDesc {
            name: "slurm_efa_port_rdma_write_bytes_total",
            help: "Bytes written with RDMA write.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "rdma_write_wr_err",
        MetricDesc {
            name: "slurm_efa_port_rdma_write_wr_err_total",
            help: "RDMA write work requests that failed.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "rdma_write_recv_bytes",
        MetricDesc {
            name: "slurm_efa_port_rdma_write_recv_bytes_total",
            help: "Bytes received from remote RDMA writes.",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "retrans_bytes",
        MetricDesc {
            name: "slurm_efa_port_retrans_bytes_total",
            help: "Bytes retransmitted (SRD).",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "retrans_pkts",
        MetricDesc {
            name: "slurm_efa_port_retrans_pkts_total",
            help: "Packets retransmitted (SRD).",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "retrans_timeout_events",
        MetricDesc {
            name: "slurm_efa_port_retrans_timeout_events_total",
            help: "Retransmission timeouts (SRD).",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "unresponsive_remote_events",
        MetricDesc {
            name: "slurm_efa_port_unresponsive_remote_events_total",
            help: "Remote peers found unresponsive (SRD).",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
    (
        "impaired_remote_conn_events",
        MetricDesc {
            name: "slurm_efa_port_impaired_remote_conn_events_total",
            help: "Connections to remote peers found impaired (SRD).",
            kind: Kind::Counter,
            labels: PORT,
        },
    ),
];

/// `(file in <dev>/hw_counters, family)`.
pub const DEVICE_COUNTERS: [(&str, MetricDesc); 12] = [
    (
        "submitted_cmds",
        MetricDesc {
            name: "slurm_efa_device_submitted_cmds_total",
            help: "Admin commands submitted to the EFA device.",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
    (
        "completed_cmds",
        MetricDesc {
            name: "slurm_efa_device_completed_cmds_total",
            help: "Admin commands completed by the EFA device.",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
    (
        "cmds_err",
        MetricDesc {
            name: "slurm_efa_device_cmds_err_total",
            help: "Admin commands that failed.",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
    (
        "no_completion_cmds",
        MetricDesc {
            name: "slurm_efa_device_no_completion_cmds_total",
            help: "Admin commands that never completed.",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
    (
        "keep_alive_rcvd",
        MetricDesc {
            name: "slurm_efa_device_keep_alive_rcvd_total",
            help: "Keep-alive messages received from the device.",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
    (
        "alloc_pd_err",
        MetricDesc {
            name: "slurm_efa_device_alloc_pd_err_total",
            help: "Protection domain allocations that failed.",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
    (
        "create_qp_err",
        MetricDesc {
            name: "slurm_efa_device_create_qp_err_total",
            help: "Queue pair creations that failed.",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
    (
        "create_cq_err",
        MetricDesc {
            name: "slurm_efa_device_create_cq_err_total",
            help: "Completion queue creations that failed.",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
    (
        "reg_mr_err",
        MetricDesc {
            name: "slurm_efa_device_reg_mr_err_total",
            help: "Memory registrations that failed (often a memlock limit).",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
    (
        "alloc_ucontext_err",
        MetricDesc {
            name: "slurm_efa_device_alloc_ucontext_err_total",
            help: "User context allocations that failed.",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
    (
        "create_ah_err",
        MetricDesc {
            name: "slurm_efa_device_create_ah_err_total",
            help: "Address handle creations that failed.",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
    (
        "mmap_err",
        MetricDesc {
            name: "slurm_efa_device_mmap_err_total",
            help: "Memory mappings that failed.",
            kind: Kind::Counter,
            labels: DEVICE,
        },
    ),
];

#[derive(Debug, Default)]
pub struct EfaCollector {
    /// `class/infiniband` was missing at the last collection (said once).
    no_class: bool,
}

struct PortReading {
    dev: usize,
    port: u32,
    counters: Vec<Option<u64>>,
    state: Option<(u32, String)>,
    rate: Option<f64>,
}

impl Collector for EfaCollector {
    fn collect(
        &mut self,
        inputs: &CycleInputs<'_>,
        out: &mut MetricSet,
    ) -> Result<(), CollectError> {
        self.collect_from(inputs.sysfs, inputs.node, out)
    }
}

impl EfaCollector {
    pub fn collect_from(
        &mut self,
        sysfs: &SysFs,
        node: &str,
        out: &mut MetricSet,
    ) -> Result<(), CollectError> {
        let devices = sysfs.efa_devices().map_err(|e| CollectError::Io {
            path: sysfs.root().join("class/infiniband").display().to_string(),
            source: e,
        })?;
        let class = sysfs.root().join("class/infiniband");
        let no_class = devices.is_empty() && !class.exists();
        if no_class && !self.no_class {
            // Not an error (a node without RDMA), but a wrong --path.sysfs
            // looks the same: say it once.
            tracing::warn!(
                path = %class.display(),
                "no class/infiniband under --path.sysfs: no RDMA driver is loaded here, or --path.sysfs is not the host's /sys; EFA metrics stay at 0 devices"
            );
        }
        self.no_class = no_class;
        out.add(&DEVICES, node_labels(node), devices.len() as f64);
        let mut unreadable = 0u64;
        // Families in table order, devices in name order within each.
        let mut dev_values: Vec<Vec<Option<u64>>> = Vec::with_capacity(devices.len());
        let mut port_readings: Vec<PortReading> = Vec::new();
        for (di, dev) in devices.iter().enumerate() {
            let hw = dev.path.join("hw_counters");
            dev_values.push(
                DEVICE_COUNTERS
                    .iter()
                    .map(|(file, ..)| read_counter(&hw.join(file), &dev.name, &mut unreadable))
                    .collect(),
            );
            for port in ports(&dev.path) {
                let pdir = dev.path.join("ports").join(port.to_string());
                let phw = pdir.join("hw_counters");
                port_readings.push(PortReading {
                    dev: di,
                    port,
                    counters: PORT_COUNTERS
                        .iter()
                        .map(|(file, ..)| read_counter(&phw.join(file), &dev.name, &mut unreadable))
                        .collect(),
                    state: read_port_state(&pdir),
                    rate: read_port_rate(&pdir),
                });
            }
        }
        let dev_labels = |di: usize| -> Labels {
            let mut l = node_labels(node);
            l.push(("device", devices[di].name.clone()));
            l
        };
        let port_labels = |di: usize, port: u32| -> Labels {
            let mut l = dev_labels(di);
            l.push(("port", port.to_string()));
            l
        };
        for r in &port_readings {
            let (di, port) = (r.dev, r.port);
            if let Some((id, name)) = &r.state {
                out.add(&PORT_STATE_ID, port_labels(di, port), *id as f64);
                out.add(
                    &PORT_ACTIVE,
                    port_labels(di, port),
                    if name.eq_ignore_ascii_case("ACTIVE") {
                        1.0
                    } else {
                        0.0
                    },
                );
            }
            if let Some(rate) = r.rate {
                out.add(&PORT_RATE, port_labels(di, port), rate);
            }
        }
        for (ci, (_, d)) in PORT_COUNTERS.iter().enumerate() {
            for r in &port_readings {
                if let Some(v) = r.counters[ci] {
                    out.add(d, port_labels(r.dev, r.port), v as f64);
                }
            }
        }
        for (ci, (_, d)) in DEVICE_COUNTERS.iter().enumerate() {
            for (di, values) in dev_values.iter().enumerate() {
                if let Some(v) = values[ci] {
                    out.add(d, dev_labels(di), v as f64);
                }
            }
        }
        out.add(&UNREADABLE_COUNTERS, node_labels(node), unreadable as f64);
        Ok(())
    }
}

fn read_counter(path: &Path, device: &str, unreadable: &mut u64) -> Option<u64> {
    match read_u64(path) {
        Ok(v) => v,
        Err(e) => {
            *unreadable += 1;
            tracing::debug!(device, path = %path.display(), error = %e, "skipping EFA counter");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_infiniband_class_is_zero_devices_and_noted_once() {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = SysFs::new(dir.path());
        let mut c = EfaCollector::default();
        let mut set = MetricSet::new();
        c.collect_from(&sysfs, "n1", &mut set).unwrap();
        assert!(c.no_class, "a sysfs without class/infiniband is noted");
        assert_eq!(set.value("slurm_efa_devices", &[("node", "n1")]), Some(0.0));
        std::fs::create_dir_all(dir.path().join("class/infiniband")).unwrap();
        c.collect_from(&sysfs, "n1", &mut MetricSet::new()).unwrap();
        assert!(!c.no_class, "an existing (empty) class is not");
    }
}
