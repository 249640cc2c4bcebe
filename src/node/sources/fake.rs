//! A scriptable in-memory [`GpuBackend`] for tests, benchmarks and the demo.
//!
//! Every call can burn a configurable time (busy-waiting, so microsecond
//! costs are honoured; `sleep` would round them up to the timer slack), to
//! model NVML's measured per-call costs on an H100. Tests script failures
//! (a GPU lost mid-run, NVML missing) and XID events through the shared
//! handle while the agent runs.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::nvml::{
    BackendFactory, GpuBackend, GpuError, GpuIdentity, GpuProcess, NvlinkErrors, Profiling,
    ProfilingRead, RemappedRows, XidEvent,
};

/// Time one fake call takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCosts {
    /// Most reads (utilization, power, temperatures, clocks, ECC, ...).
    pub fast: Duration,
    pub memory: Duration,
    pub processes: Duration,
    pub pcie_replay: Duration,
    pub energy: Duration,
    /// One GPM sample plus one metrics computation.
    pub gpm: Duration,
}

impl CallCosts {
    pub const ZERO: CallCosts = CallCosts {
        fast: Duration::ZERO,
        memory: Duration::ZERO,
        processes: Duration::ZERO,
        pcie_replay: Duration::ZERO,
        energy: Duration::ZERO,
        gpm: Duration::ZERO,
    };

    /// Measured on an H100 with driver 580 (see docs/performance.md); GPM on
    /// an H200 with the same driver.
    pub const H100: CallCosts = CallCosts {
        fast: Duration::from_micros(2),
        memory: Duration::from_micros(9),
        processes: Duration::from_micros(10),
        pcie_replay: Duration::from_micros(140),
        energy: Duration::from_millis(3),
        // Measured on an H200, driver 580.159.04 (docs/node-agent.md).
        gpm: Duration::from_micros(35),
    };
}

/// State of one fake GPU; tests change it freely.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeGpu {
    pub identity: GpuIdentity,
    pub utilization: (u32, u32),
    pub memory: (u64, u64),
    pub power_mw: u32,
    pub energy_mj: u64,
    pub temperature_c: u32,
    pub memory_temperature_c: Option<u32>,
    pub sm_clock_mhz: u32,
    pub memory_clock_mhz: u32,
    pub clock_event_reasons: u64,
    /// corrected volatile, corrected aggregate, uncorrected volatile, uncorrected aggregate.
    pub ecc: [u64; 4],
    pub remapped_rows: Option<RemappedRows>,
    pub pcie_replays: u64,
    pub nvlink: Option<NvlinkErrors>,
    pub processes: Vec<GpuProcess>,
    /// Every call on this GPU fails with `GpuLost`.
    pub lost: bool,
    /// GPM profiling: `Some(e)` derives SM activity as utilization × `e`
    /// (the share of the sample window's SMs a kernel really kept busy);
    /// `None`: the GPU has no GPM (before Hopper).
    pub sm_efficiency: Option<f64>,
    /// MIG mode on (no GPM for the whole GPU then).
    pub mig: bool,
    /// GPM refused with "no permission".
    pub gpm_denied: bool,
}

impl FakeGpu {
    /// The profiling values this GPU's utilization implies.
    pub fn profiling(&self) -> Option<Profiling> {
        let e = self.sm_efficiency?;
        let util = self.utilization.0.min(100) as f64 / 100.0;
        // Rounded so golden files read plainly.
        let r = |x: f64| (x * 1e4).round() / 1e4;
        let sm = r(util * e);
        let tensor = r(sm * 0.7);
        Some(Profiling {
            sm_active: Some(sm),
            sm_occupancy: Some(r(sm * 0.6)),
            tensor_active: Some(tensor),
            pipes: [
                Some(r(sm * 0.5)),
                Some(r(sm * 0.3)),
                Some(r(sm * 0.01)),
                Some(r(sm * 0.1)),
                Some(tensor),
                Some(0.0),
                Some(0.0),
            ],
            dram_active: Some(r(sm * 0.45)),
            pcie_tx_bytes_per_second: Some(util * 2.0e9),
            pcie_rx_bytes_per_second: Some(util * 6.0e9),
            nvlink_tx_bytes_per_second: Some(util * 1.2e11),
            nvlink_rx_bytes_per_second: Some(util * 1.2e11),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct FakeFleet {
    pub gpus: Vec<FakeGpu>,
    pub driver_version: String,
    pub pending_xids: Vec<XidEvent>,
    /// `Some(reason)`: loading the backend fails as if NVML were missing.
    pub unavailable: Option<String>,
    /// Calls made so far (all methods).
    pub calls: u64,
    /// Backends built so far.
    pub loads: u64,
    /// GPU whose corrected volatile ECC count grows by one per read (a
    /// degrading HBM row), for the faulty scenario. Uncorrected too.
    pub ecc_drift: Option<u32>,
}

/// Shared handle on a fake fleet of GPUs.
#[derive(Debug, Clone)]
pub struct FakeNvml {
    fleet: Arc<Mutex<FakeFleet>>,
    costs: CallCosts,
}

const P5_BUSES: [u8; 8] = [0x53, 0x64, 0x75, 0x86, 0x97, 0xa8, 0xb9, 0xca];

impl FakeNvml {
    /// `n` GPUs of `model` with deterministic, plausible readings.
    pub fn node(model: &str, n: u32, memory_total: u64) -> Self {
        let gpus = (0..n)
            .map(|i| FakeGpu {
                identity: GpuIdentity {
                    index: i,
                    uuid: format!("GPU-{:08x}-1111-2222-3333-{:012x}", 0xfa4e0000u32 + i, i),
                    model: model.to_string(),
                    pci_bus_id: format!("00000000:{:02X}:00.0", P5_BUSES[i as usize % 8]),
                    minor: Some(i),
                },
                utilization: ((i * 13) % 101, (i * 7) % 101),
                memory: ((i as u64 + 1) * 1_073_741_824, memory_total),
                power_mw: 100_000 + i * 25_000,
                energy_mj: 1_000_000_000 + i as u64 * 1_000,
                temperature_c: 35 + i,
                memory_temperature_c: Some(40 + i),
                sm_clock_mhz: 1980,
                memory_clock_mhz: 2619,
                clock_event_reasons: if i % 2 == 0 { 0x1 } else { 0x4 },
                ecc: [0; 4],
                remapped_rows: Some(RemappedRows::default()),
                pcie_replays: 0,
                nvlink: Some(NvlinkErrors {
                    replay: Some(0),
                    recovery: Some(0),
                    crc_flit: Some(0),
                    crc_data: Some(0),
                }),
                processes: Vec::new(),
                lost: false,
                sm_efficiency: Some(0.55 + 0.05 * (i % 8) as f64),
                mig: false,
                gpm_denied: false,
            })
            .collect();
        FakeNvml {
            fleet: Arc::new(Mutex::new(FakeFleet {
                gpus,
                driver_version: "580.65.06".into(),
                ..FakeFleet::default()
            })),
            costs: CallCosts::ZERO,
        }
    }

    /// Eight H100 80GB, as on a p5.48xlarge.
    pub fn h100x8() -> Self {
        Self::node("NVIDIA H100 80GB HBM3", 8, 85_520_809_984)
    }

    /// Eight H100s with the faults an operator must be told about: GPU 7
    /// fallen off the bus (after an XID 79), GPU 6 with growing corrected and
    /// uncorrectable ECC counts, an XID 48, a pending and a failed row remap,
    /// GPU 5 in hardware thermal slowdown, an XID 13 on GPUs 0-5, and GPUs 1
    /// and 4 idle.
    pub fn h100x8_faulty() -> Self {
        let fake = Self::h100x8();
        {
            let mut fleet = fake.lock();
            fleet.ecc_drift = Some(6);
            let g6 = &mut fleet.gpus[6];
            g6.ecc = [10, 120, 2, 4];
            g6.remapped_rows = Some(RemappedRows {
                correctable: 1,
                uncorrectable: 2,
                pending: true,
                failure: true,
            });
            fleet.gpus[5].clock_event_reasons = 0x40; // HW thermal slowdown
                                                      // Two allocated-looking GPUs doing nothing (any 6 of 8 GPUs a
                                                      // scheduler hands out include at least one of them).
            fleet.gpus[1].utilization = (0, 0);
            fleet.gpus[4].utilization = (0, 0);
            fleet.gpus[7].lost = true;
        }
        fake.push_xid(7, 79);
        fake.push_xid(6, 48);
        // XID 13 (graphics engine exception), typically an application fault,
        // on every other GPU.
        for i in 0..6 {
            fake.push_xid(i, 13);
        }
        fake
    }

    /// GPUs `indices` at 0 % utilization (unknown indices are ignored).
    pub fn idle(self, indices: &[u32]) -> Self {
        {
            let mut fleet = self.lock();
            for g in fleet.gpus.iter_mut() {
                if indices.contains(&g.identity.index) {
                    g.utilization = (0, 0);
                }
            }
        }
        self
    }

    /// The same GPUs without GPM profiling (an A100 node, or an old driver).
    pub fn without_profiling(self) -> Self {
        for g in &mut self.lock().gpus {
            g.sm_efficiency = None;
        }
        self
    }

    /// Gives GPU `i` (NVML/PCI order) device minor `minors[i]`: the device
    /// files need not follow PCI order.
    pub fn with_minors(self, minors: &[u32]) -> Self {
        for (g, m) in self.lock().gpus.iter_mut().zip(minors) {
            g.identity.minor = Some(*m);
        }
        self
    }

    pub fn with_costs(mut self, costs: CallCosts) -> Self {
        self.costs = costs;
        self
    }

    pub fn costs(&self) -> CallCosts {
        self.costs
    }

    pub fn lock(&self) -> MutexGuard<'_, FakeFleet> {
        self.fleet.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_processes(&self, index: usize, procs: Vec<GpuProcess>) {
        if let Some(g) = self.lock().gpus.get_mut(index) {
            g.processes = procs;
        }
    }

    pub fn set_lost(&self, index: usize, lost: bool) {
        if let Some(g) = self.lock().gpus.get_mut(index) {
            g.lost = lost;
        }
    }

    pub fn push_xid(&self, index: u32, xid: u64) {
        self.lock().pending_xids.push(XidEvent { index, xid });
    }

    pub fn set_unavailable(&self, reason: Option<&str>) {
        self.lock().unavailable = reason.map(str::to_string);
    }

    /// A factory for the agent's NVML worker.
    pub fn factory(&self) -> BackendFactory {
        let me = self.clone();
        Box::new(move || {
            let mut fleet = me.lock();
            if let Some(r) = &fleet.unavailable {
                return Err(GpuError::Unavailable(r.clone()));
            }
            fleet.loads += 1;
            drop(fleet);
            Ok(Box::new(FakeBackend(me.clone())) as Box<dyn GpuBackend>)
        })
    }

    /// A backend directly (benchmarks measure calls without the worker).
    pub fn backend(&self) -> FakeBackend {
        FakeBackend(self.clone())
    }
}

/// Burns `d` of CPU time, like a blocking ioctl into the driver.
pub fn spin(d: Duration) {
    if d.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

pub struct FakeBackend(FakeNvml);

impl FakeBackend {
    fn with<T>(
        &mut self,
        cost: Duration,
        index: u32,
        f: impl FnOnce(&FakeGpu) -> Result<T, GpuError>,
    ) -> Result<T, GpuError> {
        spin(cost);
        let mut fleet = self.0.lock();
        fleet.calls += 1;
        if let Some(r) = &fleet.unavailable {
            return Err(GpuError::Unavailable(r.clone()));
        }
        let g = fleet
            .gpus
            .get(index as usize)
            .ok_or_else(|| GpuError::Other(format!("invalid GPU index {index}")))?;
        if g.lost {
            return Err(GpuError::GpuLost);
        }
        f(g)
    }
}

fn opt<T>(v: Option<T>) -> Result<T, GpuError> {
    v.ok_or(GpuError::NotSupported)
}

impl GpuBackend for FakeBackend {
    fn driver_version(&mut self) -> Result<String, GpuError> {
        spin(self.0.costs.fast);
        Ok(self.0.lock().driver_version.clone())
    }

    fn device_count(&mut self) -> Result<u32, GpuError> {
        spin(self.0.costs.fast);
        let fleet = self.0.lock();
        if let Some(r) = &fleet.unavailable {
            return Err(GpuError::Unavailable(r.clone()));
        }
        Ok(fleet.gpus.len() as u32)
    }

    fn identity(&mut self, index: u32) -> Result<GpuIdentity, GpuError> {
        let c = self.0.costs.fast * 3;
        self.with(c, index, |g| Ok(g.identity.clone()))
    }

    fn utilization(&mut self, index: u32) -> Result<(u32, u32), GpuError> {
        self.with(self.0.costs.fast, index, |g| Ok(g.utilization))
    }

    fn memory(&mut self, index: u32) -> Result<(u64, u64), GpuError> {
        self.with(self.0.costs.memory, index, |g| Ok(g.memory))
    }

    fn power_mw(&mut self, index: u32) -> Result<u32, GpuError> {
        self.with(self.0.costs.fast, index, |g| Ok(g.power_mw))
    }

    fn energy_mj(&mut self, index: u32) -> Result<u64, GpuError> {
        self.with(self.0.costs.energy, index, |g| Ok(g.energy_mj))
    }

    fn temperature_c(&mut self, index: u32) -> Result<u32, GpuError> {
        self.with(self.0.costs.fast, index, |g| Ok(g.temperature_c))
    }

    fn memory_temperature_c(&mut self, index: u32) -> Result<u32, GpuError> {
        self.with(self.0.costs.fast, index, |g| opt(g.memory_temperature_c))
    }

    fn sm_clock_mhz(&mut self, index: u32) -> Result<u32, GpuError> {
        self.with(self.0.costs.fast, index, |g| Ok(g.sm_clock_mhz))
    }

    fn memory_clock_mhz(&mut self, index: u32) -> Result<u32, GpuError> {
        self.with(self.0.costs.fast, index, |g| Ok(g.memory_clock_mhz))
    }

    fn clock_event_reasons(&mut self, index: u32) -> Result<u64, GpuError> {
        self.with(self.0.costs.fast, index, |g| Ok(g.clock_event_reasons))
    }

    fn ecc_errors(
        &mut self,
        index: u32,
        corrected: bool,
        aggregate: bool,
    ) -> Result<u64, GpuError> {
        let i = match (corrected, aggregate) {
            (true, false) => 0,
            (true, true) => 1,
            (false, false) => 2,
            (false, true) => 3,
        };
        // Volatile counts of the drifting GPU grow with every read.
        if i == 0 || i == 2 {
            let mut fleet = self.0.lock();
            if fleet.ecc_drift == Some(index) {
                if let Some(g) = fleet.gpus.get_mut(index as usize) {
                    g.ecc[i] += 1;
                }
            }
        }
        self.with(self.0.costs.fast, index, |g| Ok(g.ecc[i]))
    }

    fn remapped_rows(&mut self, index: u32) -> Result<RemappedRows, GpuError> {
        self.with(self.0.costs.fast, index, |g| opt(g.remapped_rows))
    }

    fn pcie_replays(&mut self, index: u32) -> Result<u64, GpuError> {
        self.with(self.0.costs.pcie_replay, index, |g| Ok(g.pcie_replays))
    }

    fn nvlink_errors(&mut self, index: u32) -> Result<NvlinkErrors, GpuError> {
        self.with(self.0.costs.fast, index, |g| opt(g.nvlink))
    }

    fn processes(&mut self, index: u32) -> Result<Vec<GpuProcess>, GpuError> {
        self.with(self.0.costs.processes, index, |g| Ok(g.processes.clone()))
    }

    fn poll_xid_events(&mut self) -> Vec<XidEvent> {
        std::mem::take(&mut self.0.lock().pending_xids)
    }

    fn mig_enabled(&mut self, index: u32) -> Result<bool, GpuError> {
        self.with(self.0.costs.fast, index, |g| Ok(g.mig))
    }

    fn profiling(&mut self, index: u32) -> Result<ProfilingRead, GpuError> {
        self.with(self.0.costs.gpm, index, |g| {
            if g.mig {
                return Err(GpuError::NotSupported);
            }
            if g.gpm_denied {
                return Err(GpuError::NoPermission);
            }
            opt(g.profiling()).map(ProfilingRead::Ready)
        })
    }
}

#[cfg(test)]
mod idle_tests {
    use super::*;

    #[test]
    fn idle_zeroes_only_the_named_gpus() {
        let f = FakeNvml::h100x8().idle(&[2, 5, 99]);
        let fleet = f.lock();
        let util: Vec<u32> = fleet.gpus.iter().map(|g| g.utilization.0).collect();
        assert_eq!(util[2], 0);
        assert_eq!(util[5], 0);
        assert_eq!(util[3], 39, "{util:?}");
        // GPM SM activity follows utilization on the fake: 0 too.
        let sm = |i: usize| fleet.gpus[i].profiling().and_then(|p| p.sm_active);
        assert_eq!(sm(2), Some(0.0));
        assert!(sm(3).unwrap() > 0.0);
    }
}
