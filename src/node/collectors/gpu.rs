//! GPU collector: the families of one NVML sample
//! ([`crate::node::sources::gpu_sample`]), one small function per group.

use std::time::Duration;

use super::{node_labels, CollectError, Collector, CollectorSpec, CycleInputs};
use crate::exposition::{Kind, Labels, MetricDesc, MetricSet};
use crate::node::sources::gpu_sample::{GpuReading, GpuSample};
use crate::node::sources::nvml::{Profiling, CLOCK_EVENT_REASONS, PIPES};

/// Labels of every per-GPU series, in order.
const GPU: &[&str] = &["node", "gpu", "uuid", "model", "pci_bus_id", "minor"];

/// The per-GPU labels plus `extra`.
const fn gpu_and(extra: &'static str) -> [&'static str; 7] {
    [GPU[0], GPU[1], GPU[2], GPU[3], GPU[4], GPU[5], extra]
}

const GPU_AND_REASON: &[&str] = &gpu_and("reason");
const GPU_AND_ECC: &[&str] = &[
    GPU[0],
    GPU[1],
    GPU[2],
    GPU[3],
    GPU[4],
    GPU[5],
    "error_type",
    "counter",
];
const GPU_AND_CAUSE: &[&str] = &gpu_and("cause");
const GPU_AND_COUNTER: &[&str] = &gpu_and("counter");
const GPU_AND_PIPE: &[&str] = &gpu_and("pipe");
const GPU_AND_DIRECTION: &[&str] = &gpu_and("direction");
const GPU_AND_XID: &[&str] = &gpu_and("xid");

pub const DRIVER_INFO: MetricDesc = MetricDesc {
    name: "slurm_gpu_driver_info",
    help: "NVIDIA driver version.",
    kind: Kind::Info,
    labels: &["node", "driver_version"],
};
pub const DEVICES: MetricDesc = MetricDesc {
    name: "slurm_gpu_devices",
    help: "GPUs NVML reports on this node.",
    kind: Kind::Gauge,
    labels: &["node"],
};
pub const NUMBERING_INFO: MetricDesc = MetricDesc {
    name: "slurm_gpu_numbering_info",
    help: "How the gpu label numbers this node's GPUs: slurmd's order (nvml = PCI order as with AutoDetect=nvml, device_file = /dev/nvidiaN order, gres_conf = as gres.conf lists them) and where it was read.",
    kind: Kind::Info,
    labels: &["node", "order", "source"],
};
pub const UP: MetricDesc = MetricDesc {
    name: "slurm_gpu_up",
    help: "1 if the GPU answered NVML queries in the last collection, 0 if it is lost (fallen off the bus) or failing.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const UTILIZATION: MetricDesc = MetricDesc {
    name: "slurm_gpu_utilization_ratio",
    help: "Fraction of the last sample period during which a kernel ran on the GPU.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const MEMORY_UTILIZATION: MetricDesc = MetricDesc {
    name: "slurm_gpu_memory_utilization_ratio",
    help: "Fraction of the last sample period during which device memory was read or written.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const MEMORY_USED: MetricDesc = MetricDesc {
    name: "slurm_gpu_memory_used_bytes",
    help: "Framebuffer memory allocated.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const MEMORY_TOTAL: MetricDesc = MetricDesc {
    name: "slurm_gpu_memory_total_bytes",
    help: "Framebuffer memory installed.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const POWER: MetricDesc = MetricDesc {
    name: "slurm_gpu_power_watts",
    help: "Power draw.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const ENERGY: MetricDesc = MetricDesc {
    name: "slurm_gpu_energy_joules_total",
    help: "Energy consumed since the driver was loaded.",
    kind: Kind::Counter,
    labels: GPU,
};
pub const TEMPERATURE: MetricDesc = MetricDesc {
    name: "slurm_gpu_temperature_celsius",
    help: "GPU die temperature.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const MEMORY_TEMPERATURE: MetricDesc = MetricDesc {
    name: "slurm_gpu_memory_temperature_celsius",
    help: "HBM memory temperature.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const SM_CLOCK: MetricDesc = MetricDesc {
    name: "slurm_gpu_sm_clock_hertz",
    help: "Current SM clock.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const MEMORY_CLOCK: MetricDesc = MetricDesc {
    name: "slurm_gpu_memory_clock_hertz",
    help: "Current memory clock.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const CLOCK_EVENT_ACTIVE: MetricDesc = MetricDesc {
    name: "slurm_gpu_clock_event_active",
    help: "1 if this clock-event (throttle) reason currently holds the GPU clocks down.",
    kind: Kind::Gauge,
    labels: GPU_AND_REASON,
};
pub const ECC_ERRORS: MetricDesc = MetricDesc {
    name: "slurm_gpu_ecc_errors_total",
    help: "ECC errors; counter=volatile since driver load, aggregate over the GPU's life.",
    kind: Kind::Counter,
    labels: GPU_AND_ECC,
};
pub const REMAPPED_ROWS: MetricDesc = MetricDesc {
    name: "slurm_gpu_remapped_rows",
    help: "Memory rows remapped, by the error cause.",
    kind: Kind::Gauge,
    labels: GPU_AND_CAUSE,
};
pub const ROW_REMAP_PENDING: MetricDesc = MetricDesc {
    name: "slurm_gpu_row_remap_pending",
    help: "1 if a row remapping is pending (GPU reset needed).",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const ROW_REMAP_FAILURE: MetricDesc = MetricDesc {
    name: "slurm_gpu_row_remap_failure",
    help: "1 if a row remapping failed (GPU needs service).",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const PCIE_REPLAYS: MetricDesc = MetricDesc {
    name: "slurm_gpu_pcie_replays_total",
    help: "PCIe replay counter.",
    kind: Kind::Counter,
    labels: GPU,
};
pub const NVLINK_ERRORS: MetricDesc = MetricDesc {
    name: "slurm_gpu_nvlink_errors_total",
    help: "NVLink errors summed over the GPU's links, by counter.",
    kind: Kind::Counter,
    labels: GPU_AND_COUNTER,
};
pub const MIG_MODE_ENABLED: MetricDesc = MetricDesc {
    name: "slurm_gpu_mig_mode_enabled",
    help: "1 if the GPU is partitioned into MIG instances (jobs are then attributed per physical GPU only; no profiling series).",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const PROFILING_SUPPORTED: MetricDesc = MetricDesc {
    name: "slurm_gpu_profiling_supported",
    help: "1 if NVML GPM profiling (SM activity, occupancy, tensor, DRAM) works on this GPU; 0 before Hopper, without driver support, or in MIG mode.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const SM_ACTIVE: MetricDesc = MetricDesc {
    name: "slurm_gpu_sm_active_ratio",
    help: "Fraction of time the SMs had at least one warp assigned, averaged over SMs, over the last collection interval (NVML GPM; DCGM's SM_ACTIVE).",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const SM_OCCUPANCY: MetricDesc = MetricDesc {
    name: "slurm_gpu_sm_occupancy_ratio",
    help: "Warps resident on the SMs relative to their maximum, over the last collection interval (NVML GPM; DCGM's SM_OCCUPANCY).",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const TENSOR_ACTIVE: MetricDesc = MetricDesc {
    name: "slurm_gpu_tensor_active_ratio",
    help: "Fraction of time any tensor pipe was active, over the last collection interval (NVML GPM; DCGM's PIPE_TENSOR_ACTIVE).",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const DRAM_ACTIVE: MetricDesc = MetricDesc {
    name: "slurm_gpu_dram_active_ratio",
    help: "Device memory bandwidth used relative to its peak, over the last collection interval (NVML GPM; DCGM's DRAM_ACTIVE).",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const PIPE_ACTIVE: MetricDesc = MetricDesc {
    name: "slurm_gpu_pipe_active_ratio",
    help: "Fraction of time the SMs issued work to this pipe, over the last collection interval (NVML GPM).",
    kind: Kind::Gauge,
    labels: GPU_AND_PIPE,
};
pub const PCIE_THROUGHPUT: MetricDesc = MetricDesc {
    name: "slurm_gpu_pcie_throughput_bytes_per_second",
    help: "PCIe traffic of the GPU, mean over the last collection interval (NVML GPM).",
    kind: Kind::Gauge,
    labels: GPU_AND_DIRECTION,
};
pub const NVLINK_THROUGHPUT: MetricDesc = MetricDesc {
    name: "slurm_gpu_nvlink_throughput_bytes_per_second",
    help: "NVLink traffic of the GPU summed over its links, mean over the last collection interval (NVML GPM).",
    kind: Kind::Gauge,
    labels: GPU_AND_DIRECTION,
};
pub const PROCESSES: MetricDesc = MetricDesc {
    name: "slurm_gpu_processes",
    help: "Compute and graphics processes running on the GPU.",
    kind: Kind::Gauge,
    labels: GPU,
};
pub const XID_ERRORS: MetricDesc = MetricDesc {
    name: "slurm_gpu_xid_errors_total",
    help: "Critical XID errors seen since the agent started, by XID code (NVML event set).",
    kind: Kind::Counter,
    labels: GPU_AND_XID,
};

/// Every family of the GPU collector, in output order.
pub const METRICS: &[&MetricDesc] = &[
    &DRIVER_INFO,
    &DEVICES,
    &NUMBERING_INFO,
    &UP,
    &UTILIZATION,
    &MEMORY_UTILIZATION,
    &MEMORY_USED,
    &MEMORY_TOTAL,
    &POWER,
    &ENERGY,
    &TEMPERATURE,
    &MEMORY_TEMPERATURE,
    &SM_CLOCK,
    &MEMORY_CLOCK,
    &CLOCK_EVENT_ACTIVE,
    &ECC_ERRORS,
    &REMAPPED_ROWS,
    &ROW_REMAP_PENDING,
    &ROW_REMAP_FAILURE,
    &PCIE_REPLAYS,
    &NVLINK_ERRORS,
    &MIG_MODE_ENABLED,
    &PROFILING_SUPPORTED,
    &SM_ACTIVE,
    &SM_OCCUPANCY,
    &TENSOR_ACTIVE,
    &DRAM_ACTIVE,
    &PIPE_ACTIVE,
    &PCIE_THROUGHPUT,
    &NVLINK_THROUGHPUT,
    &PROCESSES,
    &XID_ERRORS,
];

pub const NAME: &str = "gpu";

/// The registry line of the GPU collector.
pub const SPEC: CollectorSpec = CollectorSpec {
    name: NAME,
    flag: "collector.gpu",
    env: "SLURM_GPU_EXPORTER_COLLECTOR_GPU",
    help: "GPU collector (NVML)",
    needs_gpu: true,
    metrics: METRICS,
    build: |_| Box::new(GpuCollector),
};

/// Emits the cycle's GPU sample; down when the sample is unavailable.
#[derive(Debug, Default)]
pub struct GpuCollector;

impl Collector for GpuCollector {
    fn collect(
        &mut self,
        inputs: &CycleInputs<'_>,
        out: &mut MetricSet,
    ) -> Result<(), CollectError> {
        let Some(sample) = inputs.gpu else {
            return Err(CollectError::Unavailable("no GPU sample".into()));
        };
        if sample.status.is_ok() {
            emit(sample, inputs.node, out);
        }
        sample.status.clone().map_err(CollectError::Unavailable)
    }

    /// The time spent in NVML, not the (overlapped) wall time.
    fn reported_duration(&self, inputs: &CycleInputs<'_>) -> Option<Duration> {
        inputs.gpu.map(|s| s.duration)
    }
}

fn gpu_labels(node: &str, g: &GpuReading) -> Labels {
    let id = &g.identity;
    let mut l = node_labels(node);
    l.push(("gpu", g.slurm_index.to_string()));
    l.push(("uuid", id.uuid.clone()));
    l.push(("model", id.model.clone()));
    l.push(("pci_bus_id", id.pci_bus_id.clone()));
    l.push(("minor", id.minor.map(|m| m.to_string()).unwrap_or_default()));
    l
}

/// The per-GPU labels plus one more.
fn gpu_labels_with(node: &str, g: &GpuReading, name: &'static str, value: &str) -> Labels {
    let mut l = gpu_labels(node, g);
    l.push((name, value.to_string()));
    l
}

type Reading = fn(&GpuReading) -> Option<f64>;

/// One value per GPU, in the order they are emitted between `slurm_gpu_up`
/// and the clock events.
const READINGS: [(&MetricDesc, Reading); 10] = [
    (&UTILIZATION, |g| g.utilization.map(|u| u.0 as f64 / 100.0)),
    (&MEMORY_UTILIZATION, |g| {
        g.utilization.map(|u| u.1 as f64 / 100.0)
    }),
    (&MEMORY_USED, |g| g.memory.map(|m| m.0 as f64)),
    (&MEMORY_TOTAL, |g| g.memory.map(|m| m.1 as f64)),
    (&POWER, |g| g.power_mw.map(|p| p as f64 / 1000.0)),
    (&ENERGY, |g| g.energy_mj.map(|e| e as f64 / 1000.0)),
    (&TEMPERATURE, |g| g.temperature_c.map(f64::from)),
    (&MEMORY_TEMPERATURE, |g| {
        g.memory_temperature_c.map(f64::from)
    }),
    (&SM_CLOCK, |g| g.sm_clock_mhz.map(|c| c as f64 * 1e6)),
    (&MEMORY_CLOCK, |g| {
        g.memory_clock_mhz.map(|c| c as f64 * 1e6)
    }),
];

/// Writes the GPU families of one sample.
pub fn emit(sample: &GpuSample, node: &str, out: &mut MetricSet) {
    emit_node(sample, node, out);
    let up: Vec<&GpuReading> = sample.gpus.iter().filter(|g| g.up).collect();
    for (d, f) in READINGS {
        per_gpu(&up, node, d, f, out);
    }
    emit_clock_events(&up, node, out);
    emit_ecc(&up, node, out);
    emit_row_remapping(&up, node, out);
    per_gpu(
        &up,
        node,
        &PCIE_REPLAYS,
        |g| g.pcie_replays.map(|v| v as f64),
        out,
    );
    emit_nvlink_errors(&up, node, out);
    emit_profiling(&up, node, out);
    per_gpu(
        &up,
        node,
        &PROCESSES,
        |g| g.processes.as_ref().map(|p| p.len() as f64),
        out,
    );
    emit_xids(sample, node, out);
}

/// One sample per up GPU where `f` has a value.
fn per_gpu(up: &[&GpuReading], node: &str, d: &MetricDesc, f: Reading, out: &mut MetricSet) {
    for g in up {
        if let Some(v) = f(g) {
            out.add(d, gpu_labels(node, g), v);
        }
    }
}

/// Driver, GPU count, numbering, and `slurm_gpu_up` of every GPU.
fn emit_node(sample: &GpuSample, node: &str, out: &mut MetricSet) {
    if let Some(v) = &sample.driver_version {
        let mut l = node_labels(node);
        l.push(("driver_version", v.clone()));
        out.add(&DRIVER_INFO, l, 1.0);
    }
    out.add(&DEVICES, node_labels(node), sample.gpus.len() as f64);
    if let Some((order, source)) = &sample.numbering {
        let mut l = node_labels(node);
        l.push(("order", order.to_string()));
        l.push(("source", source.clone()));
        out.add(&NUMBERING_INFO, l, 1.0);
    }
    for g in &sample.gpus {
        out.add(&UP, gpu_labels(node, g), if g.up { 1.0 } else { 0.0 });
    }
}

fn emit_clock_events(up: &[&GpuReading], node: &str, out: &mut MetricSet) {
    for g in up {
        let Some(bits) = g.clock_event_reasons else {
            continue;
        };
        for (bit, reason) in CLOCK_EVENT_REASONS {
            let l = gpu_labels_with(node, g, "reason", reason);
            out.add(
                &CLOCK_EVENT_ACTIVE,
                l,
                if bits & bit != 0 { 1.0 } else { 0.0 },
            );
        }
    }
}

fn emit_ecc(up: &[&GpuReading], node: &str, out: &mut MetricSet) {
    const KINDS: [(&str, &str); 4] = [
        ("corrected", "volatile"),
        ("corrected", "aggregate"),
        ("uncorrected", "volatile"),
        ("uncorrected", "aggregate"),
    ];
    for g in up {
        for ((error_type, counter), v) in KINDS.into_iter().zip(g.ecc) {
            if let Some(v) = v {
                let mut l = gpu_labels_with(node, g, "error_type", error_type);
                l.push(("counter", counter.to_string()));
                out.add(&ECC_ERRORS, l, v as f64);
            }
        }
    }
}

fn emit_row_remapping(up: &[&GpuReading], node: &str, out: &mut MetricSet) {
    for g in up {
        let Some(rr) = g.remapped_rows else { continue };
        for (cause, v) in [
            ("correctable", rr.correctable),
            ("uncorrectable", rr.uncorrectable),
        ] {
            out.add(
                &REMAPPED_ROWS,
                gpu_labels_with(node, g, "cause", cause),
                v as f64,
            );
        }
    }
    per_gpu(
        up,
        node,
        &ROW_REMAP_PENDING,
        |g| g.remapped_rows.map(|r| r.pending as u8 as f64),
        out,
    );
    per_gpu(
        up,
        node,
        &ROW_REMAP_FAILURE,
        |g| g.remapped_rows.map(|r| r.failure as u8 as f64),
        out,
    );
}

fn emit_nvlink_errors(up: &[&GpuReading], node: &str, out: &mut MetricSet) {
    for g in up {
        let Some(n) = g.nvlink else { continue };
        for (kind, v) in [
            ("replay", n.replay),
            ("recovery", n.recovery),
            ("crc_flit", n.crc_flit),
            ("crc_data", n.crc_data),
        ] {
            if let Some(v) = v {
                out.add(
                    &NVLINK_ERRORS,
                    gpu_labels_with(node, g, "counter", kind),
                    v as f64,
                );
            }
        }
    }
}

/// MIG mode and the GPM profiling families (absent where GPM is not).
fn emit_profiling(up: &[&GpuReading], node: &str, out: &mut MetricSet) {
    for g in up {
        if let Some(m) = g.mig_enabled {
            out.add(&MIG_MODE_ENABLED, gpu_labels(node, g), m as u8 as f64);
        }
        if let Some(s) = g.profiling_supported {
            out.add(&PROFILING_SUPPORTED, gpu_labels(node, g), s as u8 as f64);
        }
    }
    type Get = fn(&Profiling) -> Option<f64>;
    let ratios: [(&MetricDesc, Get); 4] = [
        (&SM_ACTIVE, |p| p.sm_active),
        (&SM_OCCUPANCY, |p| p.sm_occupancy),
        (&TENSOR_ACTIVE, |p| p.tensor_active),
        (&DRAM_ACTIVE, |p| p.dram_active),
    ];
    for (d, f) in ratios {
        for g in up {
            if let Some(v) = g.profiling.as_ref().and_then(f) {
                out.add(d, gpu_labels(node, g), v);
            }
        }
    }
    for g in up {
        let Some(p) = &g.profiling else { continue };
        for (pipe, v) in PIPES.iter().zip(p.pipes) {
            let Some(v) = v else { continue };
            out.add(&PIPE_ACTIVE, gpu_labels_with(node, g, "pipe", pipe), v);
        }
    }
    type Bytes = fn(&Profiling) -> [Option<f64>; 2];
    let links: [(&MetricDesc, Bytes); 2] = [
        (&PCIE_THROUGHPUT, |p| {
            [p.pcie_tx_bytes_per_second, p.pcie_rx_bytes_per_second]
        }),
        (&NVLINK_THROUGHPUT, |p| {
            [p.nvlink_tx_bytes_per_second, p.nvlink_rx_bytes_per_second]
        }),
    ];
    for (d, f) in links {
        for g in up {
            let Some(p) = &g.profiling else { continue };
            for (direction, v) in ["tx", "rx"].into_iter().zip(f(p)) {
                let Some(v) = v else { continue };
                out.add(d, gpu_labels_with(node, g, "direction", direction), v);
            }
        }
    }
}

/// XID counts of every GPU, up or not (declared even when none was seen).
fn emit_xids(sample: &GpuSample, node: &str, out: &mut MetricSet) {
    out.declare(&XID_ERRORS);
    for g in &sample.gpus {
        let Some(counts) = sample.xids.get(&g.identity.index) else {
            continue;
        };
        for (xid, n) in counts {
            out.add(
                &XID_ERRORS,
                gpu_labels_with(node, g, "xid", &xid.to_string()),
                *n as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::sources::fake::FakeNvml;
    use crate::node::sources::gpu_sample::GpuWorker;

    #[test]
    fn lost_gpu_mid_run_is_down_with_its_identity_others_keep_reporting() {
        let fake = FakeNvml::h100x8();
        let mut w = GpuWorker::spawn(fake.factory(), Duration::from_millis(5)).unwrap();
        w.request();
        let s = w.wait(Duration::from_secs(5));
        assert!(s.status.is_ok());
        assert!(s.gpus.iter().all(|g| g.up));
        let uuid3 = s.gpus[3].identity.uuid.clone();
        fake.set_lost(3, true);
        fake.push_xid(3, 79);
        fake.push_xid(3, 79);
        fake.push_xid(1, 48);
        w.request();
        let s = w.wait(Duration::from_secs(5));
        assert!(!s.gpus[3].up);
        assert_eq!(s.gpus[3].identity.uuid, uuid3);
        assert_eq!(s.gpus.iter().filter(|g| g.up).count(), 7);
        assert_eq!(s.xids[&3][&79], 2);
        assert_eq!(s.xids[&1][&48], 1);
        let mut out = MetricSet::new();
        emit(&s, "n1", &mut out);
        assert_eq!(
            out.value("slurm_gpu_up", &[("gpu", "3"), ("uuid", &uuid3)]),
            Some(0.0)
        );
        assert_eq!(out.value("slurm_gpu_power_watts", &[("gpu", "3")]), None);
        assert_eq!(
            out.value("slurm_gpu_power_watts", &[("gpu", "2")]),
            Some(150.0)
        );
        assert_eq!(
            out.value("slurm_gpu_xid_errors_total", &[("gpu", "3"), ("xid", "79")]),
            Some(2.0)
        );
        // Back on the bus: up again.
        fake.set_lost(3, false);
        w.request();
        assert!(w.wait(Duration::from_secs(5)).gpus[3].up);
    }

    /// GPM present on H100s, absent on a GPU in MIG mode and on an A100: the
    /// profiling families are emitted exactly where NVML has them.
    #[test]
    fn profiling_present_absent_and_mig() {
        let fake = FakeNvml::h100x8();
        {
            let mut f = fake.lock();
            f.gpus[2].mig = true;
            f.gpus[3].gpm_denied = true;
            f.gpus[0].utilization = (100, 40);
            f.gpus[1].utilization = (100, 40);
            f.gpus[1].sm_efficiency = Some(0.05); // "100 %" busy, 5 % of SMs
        }
        let mut w = GpuWorker::spawn(fake.factory(), Duration::from_millis(5)).unwrap();
        w.request();
        let s = w.wait(Duration::from_secs(5));
        let mut out = MetricSet::new();
        emit(&s, "n1", &mut out);
        let v = |name: &str, gpu: &str| out.value(name, &[("gpu", gpu)]);
        assert_eq!(v("slurm_gpu_utilization_ratio", "1"), Some(1.0));
        assert_eq!(v("slurm_gpu_sm_active_ratio", "1"), Some(0.05));
        assert_eq!(v("slurm_gpu_sm_active_ratio", "0"), Some(0.55));
        assert_eq!(v("slurm_gpu_profiling_supported", "0"), Some(1.0));
        // MIG: supported 0, the mode says why, no profiling series.
        assert_eq!(v("slurm_gpu_mig_mode_enabled", "2"), Some(1.0));
        assert_eq!(v("slurm_gpu_profiling_supported", "2"), Some(0.0));
        assert_eq!(v("slurm_gpu_sm_active_ratio", "2"), None);
        // No permission: the same, and the reading says why.
        assert_eq!(v("slurm_gpu_profiling_supported", "3"), Some(0.0));
        assert_eq!(v("slurm_gpu_sm_active_ratio", "3"), None);
        assert!(s.gpus[3].profiling_denied && !s.gpus[2].profiling_denied);
        assert_eq!(
            out.value(
                "slurm_gpu_pipe_active_ratio",
                &[("gpu", "0"), ("pipe", "tensor_hmma")]
            ),
            Some(0.385)
        );
        assert_eq!(
            out.value(
                "slurm_gpu_nvlink_throughput_bytes_per_second",
                &[("gpu", "0"), ("direction", "rx")]
            ),
            Some(1.2e11)
        );
        // No GPM at all: only slurm_gpu_profiling_supported 0 remains.
        let a100 = FakeNvml::node("NVIDIA A100-SXM4-80GB", 2, 1).without_profiling();
        let mut w = GpuWorker::spawn(a100.factory(), Duration::from_millis(5)).unwrap();
        w.request();
        let s = w.wait(Duration::from_secs(5));
        let mut out = MetricSet::new();
        emit(&s, "n1", &mut out);
        assert_eq!(out.sum("slurm_gpu_profiling_supported", &[]), 0.0);
        assert_eq!(
            out.value("slurm_gpu_profiling_supported", &[("gpu", "1")]),
            Some(0.0)
        );
        let text = out.encode_text();
        for family in [
            "sm_active",
            "sm_occupancy",
            "tensor_active",
            "pipe_active",
            "dram_active",
            "throughput",
        ] {
            assert!(!text.contains(family), "{family} emitted without GPM");
        }
    }
}
