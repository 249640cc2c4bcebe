//! The GPU data source: the [`GpuBackend`] trait, one method per NVML query,
//! and its real implementation on `nvml-wrapper`, which loads
//! `libnvidia-ml.so.1` at run time (no build-time dependency on CUDA; a node
//! without the driver fails [`NvmlBackend::load`] cleanly).
//!
//! A backend is used from a single thread (the collector's NVML worker), so
//! NVML calls never overlap. Implementations are not required to be `Send`:
//! the worker builds its backend itself.

use std::collections::HashMap;
use std::ffi::OsStr;

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::{SampleValue, UsedGpuMemory};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::gpm::{gpm_metrics_get, GpmSample};
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id;
use nvml_wrapper::{Device, EventSet, Nvml};

/// Why a GPU query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// The GPU or driver does not offer this value: the series is omitted.
    #[error("not supported")]
    NotSupported,
    /// The GPU fell off the bus or needs a reset: the GPU is reported down.
    #[error("GPU is lost (fallen off the bus or requires reset)")]
    GpuLost,
    #[error("no permission")]
    NoPermission,
    /// No NVML library, no driver, no GPU: the collector is reported down.
    #[error("NVML unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

/// Static identity of one GPU, read once and kept across collections (so a
/// GPU that is lost later is still reported with its labels).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuIdentity {
    /// NVML's index (PCI bus order): what NVML calls take.
    pub index: u32,
    pub uuid: String,
    pub model: String,
    pub pci_bus_id: String,
    /// Minor number of the device file `/dev/nvidiaN`, the name Slurm's
    /// gres.conf `File=` uses. `None` where NVML does not give it.
    pub minor: Option<u32>,
}

/// GPU performance monitoring (NVML GPM, Hopper and newer): means over the
/// interval between two samples. Ratios are 0..1; `None`: the GPU does not
/// offer that metric.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Profiling {
    /// Fraction of time at least one warp was assigned to an SM, averaged
    /// over SMs (DCGM's `PROF_SM_ACTIVE`).
    pub sm_active: Option<f64>,
    /// Resident warps relative to the SMs' maximum (`PROF_SM_OCCUPANCY`).
    pub sm_occupancy: Option<f64>,
    /// Any tensor pipe active (`PROF_PIPE_TENSOR_ACTIVE`).
    pub tensor_active: Option<f64>,
    /// Per pipe, in [`PIPES`] order.
    pub pipes: [Option<f64>; 7],
    /// DRAM bandwidth used, of the peak (`PROF_DRAM_ACTIVE`).
    pub dram_active: Option<f64>,
    pub pcie_tx_bytes_per_second: Option<f64>,
    pub pcie_rx_bytes_per_second: Option<f64>,
    pub nvlink_tx_bytes_per_second: Option<f64>,
    pub nvlink_rx_bytes_per_second: Option<f64>,
}

/// Label values of [`Profiling::pipes`].
pub const PIPES: [&str; 7] = [
    "fp16",
    "fp32",
    "fp64",
    "integer",
    "tensor_hmma",
    "tensor_imma",
    "tensor_dfma",
];

/// What one profiling read gave.
// Returned once per GPU per collection; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProfilingRead {
    /// The first sample of a GPU: values come with the next one.
    Warming,
    Ready(Profiling),
}

/// Row remapping state (Ampere and newer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemappedRows {
    pub correctable: u64,
    pub uncorrectable: u64,
    pub pending: bool,
    pub failure: bool,
}

/// NVLink error counters, summed over links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NvlinkErrors {
    pub replay: Option<u64>,
    pub recovery: Option<u64>,
    pub crc_flit: Option<u64>,
    pub crc_data: Option<u64>,
}

/// One process using a GPU, with its host PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuProcess {
    pub pid: u32,
    pub used_memory_bytes: Option<u64>,
}

/// One critical XID event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XidEvent {
    pub index: u32,
    pub xid: u64,
}

/// One method per NVML query; units are NVML's own.
pub trait GpuBackend {
    fn driver_version(&mut self) -> Result<String, GpuError>;
    fn device_count(&mut self) -> Result<u32, GpuError>;
    fn identity(&mut self, index: u32) -> Result<GpuIdentity, GpuError>;
    /// (GPU, memory) utilization, percent.
    fn utilization(&mut self, index: u32) -> Result<(u32, u32), GpuError>;
    /// (used, total) framebuffer memory, bytes.
    fn memory(&mut self, index: u32) -> Result<(u64, u64), GpuError>;
    fn power_mw(&mut self, index: u32) -> Result<u32, GpuError>;
    /// Energy since driver load, millijoules.
    fn energy_mj(&mut self, index: u32) -> Result<u64, GpuError>;
    fn temperature_c(&mut self, index: u32) -> Result<u32, GpuError>;
    fn memory_temperature_c(&mut self, index: u32) -> Result<u32, GpuError>;
    fn sm_clock_mhz(&mut self, index: u32) -> Result<u32, GpuError>;
    fn memory_clock_mhz(&mut self, index: u32) -> Result<u32, GpuError>;
    /// NVML clock-event (throttle) reason bitmask.
    fn clock_event_reasons(&mut self, index: u32) -> Result<u64, GpuError>;
    fn ecc_errors(&mut self, index: u32, corrected: bool, aggregate: bool)
        -> Result<u64, GpuError>;
    fn remapped_rows(&mut self, index: u32) -> Result<RemappedRows, GpuError>;
    fn pcie_replays(&mut self, index: u32) -> Result<u64, GpuError>;
    fn nvlink_errors(&mut self, index: u32) -> Result<NvlinkErrors, GpuError>;
    /// Compute and graphics processes, host PIDs.
    fn processes(&mut self, index: u32) -> Result<Vec<GpuProcess>, GpuError>;
    /// XID events that arrived since the last call; never blocks.
    fn poll_xid_events(&mut self) -> Vec<XidEvent>;
    /// Whether the GPU is partitioned into MIG instances.
    fn mig_enabled(&mut self, index: u32) -> Result<bool, GpuError>;
    /// GPM profiling over the interval since the previous call for this GPU;
    /// `NotSupported` on GPUs without GPM (before Hopper) and in MIG mode.
    fn profiling(&mut self, index: u32) -> Result<ProfilingRead, GpuError>;
}

/// Builds a backend on the NVML worker thread.
pub type BackendFactory = Box<dyn FnMut() -> Result<Box<dyn GpuBackend>, GpuError> + Send>;

/// Clock-event reason bits (`nvmlClocksEventReason*`) and their label values.
pub const CLOCK_EVENT_REASONS: [(u64, &str); 9] = [
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
];

pub fn map_err(e: NvmlError) -> GpuError {
    match e {
        NvmlError::GpuLost | NvmlError::ResetRequired => GpuError::GpuLost,
        NvmlError::NotSupported
        | NvmlError::FunctionNotFound
        | NvmlError::FailedToLoadSymbol(_) => GpuError::NotSupported,
        NvmlError::NoPermission => GpuError::NoPermission,
        NvmlError::LibloadingError(_)
        | NvmlError::LibraryNotFound
        | NvmlError::DriverNotLoaded
        | NvmlError::Uninitialized
        | NvmlError::LibRmVersionMismatch => GpuError::Unavailable(e.to_string()),
        other => GpuError::Other(other.to_string()),
    }
}

/// The real backend. The `Nvml` handle is leaked on purpose: it lives as
/// long as the process, and device and event-set handles borrow it.
pub struct NvmlBackend {
    nvml: &'static Nvml,
    devices: HashMap<u32, Device<'static>>,
    events: Option<EventSet<'static>>,
    events_tried: bool,
    /// Per GPU, the previous GPM sample (`None`: GPM checked unsupported).
    gpm: HashMap<u32, Option<GpmSample<'static>>>,
    /// Per GPU, MIG mode and when it was read: the call costs ~120 µs on an
    /// H200 (more than the rest of a collection without the energy counter)
    /// and the mode changes only with a GPU reset.
    mig: HashMap<u32, (bool, std::time::Instant)>,
}

/// How long a MIG mode reading is reused.
const MIG_MODE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// GPM metrics read per collection, one `nvmlGpmMetricsGet` call; the
/// order is [`gpm_values`]'s.
const GPM_METRICS: [GpmMetricId; 15] = [
    GpmMetricId::SmUtil,
    GpmMetricId::SmOccupancy,
    GpmMetricId::AnyTensorUtil,
    GpmMetricId::Fp16Util,
    GpmMetricId::Fp32Util,
    GpmMetricId::Fp64Util,
    GpmMetricId::IntegerUtil,
    GpmMetricId::HmmaTensorUtil,
    GpmMetricId::ImmaTensorUtil,
    GpmMetricId::DfmaTensorUtil,
    GpmMetricId::DramBwUtil,
    GpmMetricId::PcieTxPerSec,
    GpmMetricId::PcieRxPerSec,
    GpmMetricId::NvlinkTotalTxPerSec,
    GpmMetricId::NvlinkTotalRxPerSec,
];

/// NVML reports GPM percentages 0..100 and throughputs in MiB/s.
fn gpm_values(values: &[Option<f64>]) -> Profiling {
    let v = |i: usize| {
        values
            .get(i)
            .copied()
            .flatten()
            .filter(|x| x.is_finite() && *x >= 0.0)
    };
    let ratio = |i: usize| v(i).map(|x| (x / 100.0).min(1.0));
    let bytes = |i: usize| v(i).map(|x| x * 1_048_576.0);
    Profiling {
        sm_active: ratio(0),
        sm_occupancy: ratio(1),
        tensor_active: ratio(2),
        pipes: [
            ratio(3),
            ratio(4),
            ratio(5),
            ratio(6),
            ratio(7),
            ratio(8),
            ratio(9),
        ],
        dram_active: ratio(10),
        pcie_tx_bytes_per_second: bytes(11),
        pcie_rx_bytes_per_second: bytes(12),
        nvlink_tx_bytes_per_second: bytes(13),
        nvlink_rx_bytes_per_second: bytes(14),
    }
}

impl NvmlBackend {
    /// Loads `libnvidia-ml.so.1` (or `lib`) and initializes NVML.
    pub fn load(lib: Option<&OsStr>) -> Result<Self, GpuError> {
        let mut builder = Nvml::builder();
        if let Some(lib) = lib {
            builder.lib_path(lib);
        }
        let nvml = builder.init().map_err(|e| match map_err(e) {
            GpuError::Unavailable(s) | GpuError::Other(s) => GpuError::Unavailable(s),
            other => GpuError::Unavailable(other.to_string()),
        })?;
        Ok(NvmlBackend {
            nvml: Box::leak(Box::new(nvml)),
            devices: HashMap::new(),
            events: None,
            events_tried: false,
            gpm: HashMap::new(),
            mig: HashMap::new(),
        })
    }

    fn call<T>(
        &mut self,
        index: u32,
        f: impl FnOnce(&Device<'static>) -> Result<T, NvmlError>,
    ) -> Result<T, GpuError> {
        if !self.devices.contains_key(&index) {
            let d = self.nvml.device_by_index(index).map_err(map_err)?;
            self.devices.insert(index, d);
        }
        let d = self.devices.get(&index).ok_or(GpuError::GpuLost)?;
        let r = f(d).map_err(map_err);
        if matches!(r, Err(GpuError::GpuLost)) {
            // Fetch a fresh handle next time, in case the GPU comes back.
            self.devices.remove(&index);
        }
        r
    }

    fn fields(&mut self, index: u32, ids: &[u32]) -> Result<Vec<Option<u64>>, GpuError> {
        let ids: Vec<FieldId> = ids.iter().map(|i| FieldId(*i)).collect();
        let values = self.call(index, |d| d.field_values_for(&ids))?;
        Ok(values
            .into_iter()
            .map(|r| {
                r.ok().and_then(|s| match s.value.ok()? {
                    SampleValue::U32(v) => Some(v as u64),
                    SampleValue::U64(v) => Some(v),
                    SampleValue::I64(v) => u64::try_from(v).ok(),
                    SampleValue::F64(v) => (v.is_finite() && v >= 0.0).then_some(v as u64),
                })
            })
            .collect())
    }

    fn setup_events(&mut self) {
        self.events_tried = true;
        let nvml = self.nvml;
        let count = match nvml.device_count() {
            Ok(c) => c,
            Err(_) => return,
        };
        let mut set = match nvml.create_event_set() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create NVML event set; XID errors not counted");
                return;
            }
        };
        let mut registered = 0;
        for i in 0..count {
            let Ok(dev) = nvml.device_by_index(i) else {
                continue;
            };
            let supported = dev
                .supported_event_types()
                .map(|t| t.contains(EventTypes::CRITICAL_XID_ERROR))
                .unwrap_or(false);
            if !supported {
                tracing::info!(gpu = i, "GPU does not report XID events");
                continue;
            }
            let s = match set.take() {
                Some(s) => s,
                None => match nvml.create_event_set() {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            match dev.register_events(EventTypes::CRITICAL_XID_ERROR, s) {
                Ok(s) => {
                    set = Some(s);
                    registered += 1;
                }
                Err(e) => {
                    // NVML frees the set on failure; earlier registrations are lost.
                    tracing::warn!(gpu = i, error = %e.error, "cannot register XID events");
                    registered = 0;
                }
            }
        }
        tracing::debug!(gpus = registered, "listening for XID events");
        self.events = set.filter(|_| registered > 0);
    }
}

impl GpuBackend for NvmlBackend {
    fn driver_version(&mut self) -> Result<String, GpuError> {
        self.nvml.sys_driver_version().map_err(map_err)
    }

    fn device_count(&mut self) -> Result<u32, GpuError> {
        self.nvml.device_count().map_err(map_err)
    }

    fn identity(&mut self, index: u32) -> Result<GpuIdentity, GpuError> {
        let uuid = self.call(index, |d| d.uuid())?;
        let model = self.call(index, |d| d.name())?;
        let pci_bus_id = self.call(index, |d| d.pci_info()).map(|p| p.bus_id)?;
        let minor = match self.call(index, |d| d.minor_number()) {
            Ok(m) => Some(m),
            Err(e @ GpuError::GpuLost) => return Err(e),
            Err(_) => None,
        };
        Ok(GpuIdentity {
            index,
            uuid,
            model,
            pci_bus_id,
            minor,
        })
    }

    fn utilization(&mut self, index: u32) -> Result<(u32, u32), GpuError> {
        self.call(index, |d| d.utilization_rates())
            .map(|u| (u.gpu, u.memory))
    }

    fn memory(&mut self, index: u32) -> Result<(u64, u64), GpuError> {
        self.call(index, |d| d.memory_info())
            .map(|m| (m.used, m.total))
    }

    fn power_mw(&mut self, index: u32) -> Result<u32, GpuError> {
        self.call(index, |d| d.power_usage())
    }

    fn energy_mj(&mut self, index: u32) -> Result<u64, GpuError> {
        self.call(index, |d| d.total_energy_consumption())
    }

    fn temperature_c(&mut self, index: u32) -> Result<u32, GpuError> {
        self.call(index, |d| d.temperature(TemperatureSensor::Gpu))
    }

    fn memory_temperature_c(&mut self, index: u32) -> Result<u32, GpuError> {
        match self
            .fields(index, &[field_id::NVML_FI_DEV_MEMORY_TEMP])?
            .first()
        {
            Some(Some(v)) if *v > 0 => Ok(*v as u32),
            _ => Err(GpuError::NotSupported),
        }
    }

    fn sm_clock_mhz(&mut self, index: u32) -> Result<u32, GpuError> {
        self.call(index, |d| d.clock_info(Clock::SM))
    }

    fn memory_clock_mhz(&mut self, index: u32) -> Result<u32, GpuError> {
        self.call(index, |d| d.clock_info(Clock::Memory))
    }

    fn clock_event_reasons(&mut self, index: u32) -> Result<u64, GpuError> {
        self.call(index, |d| d.current_throttle_reasons())
            .map(|r| r.bits())
    }

    fn ecc_errors(
        &mut self,
        index: u32,
        corrected: bool,
        aggregate: bool,
    ) -> Result<u64, GpuError> {
        let t = if corrected {
            MemoryError::Corrected
        } else {
            MemoryError::Uncorrected
        };
        let c = if aggregate {
            EccCounter::Aggregate
        } else {
            EccCounter::Volatile
        };
        self.call(index, |d| d.total_ecc_errors(t, c))
    }

    fn remapped_rows(&mut self, index: u32) -> Result<RemappedRows, GpuError> {
        let v = self.fields(
            index,
            &[
                field_id::NVML_FI_DEV_REMAPPED_COR,
                field_id::NVML_FI_DEV_REMAPPED_UNC,
                field_id::NVML_FI_DEV_REMAPPED_PENDING,
                field_id::NVML_FI_DEV_REMAPPED_FAILURE,
            ],
        )?;
        match v.as_slice() {
            [Some(c), Some(u), p, f] => Ok(RemappedRows {
                correctable: *c,
                uncorrectable: *u,
                pending: p.unwrap_or(0) != 0,
                failure: f.unwrap_or(0) != 0,
            }),
            _ => Err(GpuError::NotSupported),
        }
    }

    fn pcie_replays(&mut self, index: u32) -> Result<u64, GpuError> {
        self.call(index, |d| d.pcie_replay_counter()).map(u64::from)
    }

    fn nvlink_errors(&mut self, index: u32) -> Result<NvlinkErrors, GpuError> {
        let v = self.fields(
            index,
            &[
                field_id::NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
                field_id::NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
                field_id::NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
                field_id::NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
            ],
        )?;
        let e = NvlinkErrors {
            replay: v.first().copied().flatten(),
            recovery: v.get(1).copied().flatten(),
            crc_flit: v.get(2).copied().flatten(),
            crc_data: v.get(3).copied().flatten(),
        };
        if e == NvlinkErrors::default() {
            return Err(GpuError::NotSupported);
        }
        Ok(e)
    }

    fn processes(&mut self, index: u32) -> Result<Vec<GpuProcess>, GpuError> {
        let mut out: Vec<GpuProcess> = Vec::new();
        let compute = self.call(index, |d| d.running_compute_processes());
        let graphics = self.call(index, |d| d.running_graphics_processes());
        if let (Err(e), Err(_)) = (&compute, &graphics) {
            return Err(e.clone());
        }
        for p in compute.into_iter().chain(graphics).flatten() {
            if out.iter().any(|q| q.pid == p.pid) {
                continue;
            }
            out.push(GpuProcess {
                pid: p.pid,
                used_memory_bytes: match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b),
                    UsedGpuMemory::Unavailable => None,
                },
            });
        }
        Ok(out)
    }

    fn mig_enabled(&mut self, index: u32) -> Result<bool, GpuError> {
        if let Some((on, at)) = self.mig.get(&index) {
            if at.elapsed() < MIG_MODE_TTL {
                return Ok(*on);
            }
        }
        let on = self.call(index, |d| d.mig_mode()).map(|m| m.current == 1)?;
        self.mig.insert(index, (on, std::time::Instant::now()));
        Ok(on)
    }

    fn profiling(&mut self, index: u32) -> Result<ProfilingRead, GpuError> {
        if let Some(None) = self.gpm.get(&index) {
            return Err(GpuError::NotSupported);
        }
        if !self.gpm.contains_key(&index) {
            // Checked once per GPU: GPM needs Hopper+ and a driver that has it.
            let supported = self.call(index, |d| d.gpm_support());
            match supported {
                Ok(true) => {}
                Ok(false) | Err(GpuError::NotSupported) => {
                    self.gpm.insert(index, None);
                    return Err(GpuError::NotSupported);
                }
                Err(e) => return Err(e),
            }
        }
        let sample = self.call(index, |d| d.gpm_sample())?;
        let nvml = self.nvml;
        let previous = self.gpm.insert(index, Some(sample)).flatten();
        let result = match (previous, self.gpm.get(&index)) {
            (Some(previous), Some(Some(current))) => {
                gpm_metrics_get(nvml, &previous, current, &GPM_METRICS)
            }
            _ => return Ok(ProfilingRead::Warming),
        };
        let values: Vec<Option<f64>> = match result {
            Ok(results) => results
                .into_iter()
                .map(|r| r.ok().map(|m| m.value))
                .collect(),
            Err(e) => {
                let e = map_err(e);
                if matches!(e, GpuError::GpuLost) {
                    self.devices.remove(&index);
                    self.gpm.remove(&index);
                }
                return Err(e);
            }
        };
        Ok(ProfilingRead::Ready(gpm_values(&values)))
    }

    fn poll_xid_events(&mut self) -> Vec<XidEvent> {
        if !self.events_tried {
            self.setup_events();
        }
        let Some(set) = &self.events else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // Bounded, so an event storm cannot starve sampling.
        for _ in 0..256 {
            match set.wait(0) {
                Ok(ev) => {
                    if !ev.event_type.contains(EventTypes::CRITICAL_XID_ERROR) {
                        continue;
                    }
                    let xid = match ev.event_data {
                        Some(XidError::Value(v)) => v,
                        _ => continue,
                    };
                    match ev.device.index() {
                        Ok(index) => out.push(XidEvent { index, xid }),
                        Err(e) => tracing::warn!(xid, error = %e, "XID event from an unknown GPU"),
                    }
                }
                Err(NvmlError::Timeout) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "NVML event wait failed");
                    break;
                }
            }
        }
        out
    }
}
