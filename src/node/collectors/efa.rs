//! EFA collector: every `<sysfs>/class/infiniband/<dev>` with PCI vendor
//! `0x1d0f` (`efa_N` or `rdmap*` names), its device counters
//! (`<dev>/hw_counters/`), and per port its counters
//! (`ports/<p>/hw_counters/`), state and link rate.
//!
//! Counters are u64, cumulative since driver load. A counter file missing
//! (older driver, no SRD) is skipped; one that exists but cannot be read or
//! parsed is skipped and counted in `slurm_efa_unreadable_counters`.

use std::path::Path;

use super::{node_labels, CollectError};
use crate::exposition::{Labels, MetricSet};
use crate::node::sources::fs::read_u64;
use crate::node::sources::sysfs::{ports, read_port_rate, read_port_state, SysFs};

/// `(file in ports/<p>/hw_counters, metric, help)`.
pub const PORT_COUNTERS: [(&str, &str, &str); 22] = [
    (
        "tx_bytes",
        "slurm_efa_port_tx_bytes_total",
        "Bytes transmitted by the EFA port.",
    ),
    (
        "rx_bytes",
        "slurm_efa_port_rx_bytes_total",
        "Bytes received by the EFA port.",
    ),
    (
        "tx_pkts",
        "slurm_efa_port_tx_pkts_total",
        "Packets transmitted by the EFA port.",
    ),
    (
        "rx_pkts",
        "slurm_efa_port_rx_pkts_total",
        "Packets received by the EFA port.",
    ),
    (
        "rx_drops",
        "slurm_efa_port_rx_drops_total",
        "Received packets dropped by the EFA port.",
    ),
    (
        "send_bytes",
        "slurm_efa_port_send_bytes_total",
        "Bytes sent with send work requests.",
    ),
    (
        "recv_bytes",
        "slurm_efa_port_recv_bytes_total",
        "Bytes received with receive work requests.",
    ),
    (
        "send_wrs",
        "slurm_efa_port_send_wrs_total",
        "Send work requests.",
    ),
    (
        "recv_wrs",
        "slurm_efa_port_recv_wrs_total",
        "Receive work requests.",
    ),
    (
        "rdma_read_wrs",
        "slurm_efa_port_rdma_read_wrs_total",
        "RDMA read work requests.",
    ),
    (
        "rdma_read_bytes",
        "slurm_efa_port_rdma_read_bytes_total",
        "Bytes read with RDMA read.",
    ),
    (
        "rdma_read_wr_err",
        "slurm_efa_port_rdma_read_wr_err_total",
        "RDMA read work requests that failed.",
    ),
    (
        "rdma_read_resp_bytes",
        "slurm_efa_port_rdma_read_resp_bytes_total",
        "Bytes sent in responses to remote RDMA reads.",
    ),
    (
        "rdma_write_wrs",
        "slurm_efa_port_rdma_write_wrs_total",
        "RDMA write work requests.",
    ),
    (
        "rdma_write_bytes",
        "slurm_efa_port_rdma_write_bytes_total",
        "Bytes written with RDMA write.",
    ),
    (
        "rdma_write_wr_err",
        "slurm_efa_port_rdma_write_wr_err_total",
        "RDMA write work requests that failed.",
    ),
    (
        "rdma_write_recv_bytes",
        "slurm_efa_port_rdma_write_recv_bytes_total",
        "Bytes received from remote RDMA writes.",
    ),
    (
        "retrans_bytes",
        "slurm_efa_port_retrans_bytes_total",
        "Bytes retransmitted (SRD).",
    ),
    (
        "retrans_pkts",
        "slurm_efa_port_retrans_pkts_total",
        "Packets retransmitted (SRD).",
    ),
    (
        "retrans_timeout_events",
        "slurm_efa_port_retrans_timeout_events_total",
        "Retransmission timeouts (SRD).",
    ),
    (
        "unresponsive_remote_events",
        "slurm_efa_port_unresponsive_remote_events_total",
        "Remote peers found unresponsive (SRD).",
    ),
    (
        "impaired_remote_conn_events",
        "slurm_efa_port_impaired_remote_conn_events_total",
        "Connections to remote peers found impaired (SRD).",
    ),
];

/// `(file in <dev>/hw_counters, metric, help)`.
pub const DEVICE_COUNTERS: [(&str, &str, &str); 12] = [
    (
        "submitted_cmds",
        "slurm_efa_device_submitted_cmds_total",
        "Admin commands submitted to the EFA device.",
    ),
    (
        "completed_cmds",
        "slurm_efa_device_completed_cmds_total",
        "Admin commands completed by the EFA device.",
    ),
    (
        "cmds_err",
        "slurm_efa_device_cmds_err_total",
        "Admin commands that failed.",
    ),
    (
        "no_completion_cmds",
        "slurm_efa_device_no_completion_cmds_total",
        "Admin commands that never completed.",
    ),
    (
        "keep_alive_rcvd",
        "slurm_efa_device_keep_alive_rcvd_total",
        "Keep-alive messages received from the device.",
    ),
    (
        "alloc_pd_err",
        "slurm_efa_device_alloc_pd_err_total",
        "Protection domain allocations that failed.",
    ),
    (
        "create_qp_err",
        "slurm_efa_device_create_qp_err_total",
        "Queue pair creations that failed.",
    ),
    (
        "create_cq_err",
        "slurm_efa_device_create_cq_err_total",
        "Completion queue creations that failed.",
    ),
    (
        "reg_mr_err",
        "slurm_efa_device_reg_mr_err_total",
        "Memory registrations that failed (often a memlock limit).",
    ),
    (
        "alloc_ucontext_err",
        "slurm_efa_device_alloc_ucontext_err_total",
        "User context allocations that failed.",
    ),
    (
        "create_ah_err",
        "slurm_efa_device_create_ah_err_total",
        "Address handle creations that failed.",
    ),
    (
        "mmap_err",
        "slurm_efa_device_mmap_err_total",
        "Memory mappings that failed.",
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

impl EfaCollector {
    pub fn collect(
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
        out.gauge(
            "slurm_efa_devices",
            "EFA devices found (PCI vendor 0x1d0f under /sys/class/infiniband).",
            node_labels(node),
            devices.len() as f64,
        );
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
                out.gauge(
                    "slurm_efa_port_state_id",
                    "EFA port state as a number (4 = ACTIVE), from ports/<p>/state.",
                    port_labels(di, port),
                    *id as f64,
                );
                out.gauge(
                    "slurm_efa_port_active",
                    "1 if the EFA port state is ACTIVE.",
                    port_labels(di, port),
                    if name.eq_ignore_ascii_case("ACTIVE") {
                        1.0
                    } else {
                        0.0
                    },
                );
            }
            if let Some(rate) = r.rate {
                out.gauge(
                    "slurm_efa_port_rate_bytes_per_second",
                    "EFA port link rate, from ports/<p>/rate.",
                    port_labels(di, port),
                    rate,
                );
            }
        }
        for (ci, (_, metric, help)) in PORT_COUNTERS.iter().enumerate() {
            for r in &port_readings {
                if let Some(v) = r.counters[ci] {
                    out.counter(metric, help, port_labels(r.dev, r.port), v as f64);
                }
            }
        }
        for (ci, (_, metric, help)) in DEVICE_COUNTERS.iter().enumerate() {
            for (di, values) in dev_values.iter().enumerate() {
                if let Some(v) = values[ci] {
                    out.counter(metric, help, dev_labels(di), v as f64);
                }
            }
        }
        out.gauge(
            "slurm_efa_unreadable_counters",
            "EFA counter files that exist but could not be read or parsed in the last collection.",
            node_labels(node),
            unreadable as f64,
        );
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
        c.collect(&sysfs, "n1", &mut set).unwrap();
        assert!(c.no_class, "a sysfs without class/infiniband is noted");
        assert_eq!(set.value("slurm_efa_devices", &[("node", "n1")]), Some(0.0));
        std::fs::create_dir_all(dir.path().join("class/infiniband")).unwrap();
        c.collect(&sysfs, "n1", &mut MetricSet::new()).unwrap();
        assert!(!c.no_class, "an existing (empty) class is not");
    }
}
