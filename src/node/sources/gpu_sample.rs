//! The NVML worker: the GPU sample of each collection cycle.
//!
//! All NVML use happens on one dedicated thread: sampling on request from
//! the collection loop, and between requests polling the XID event set
//! (non-blocking waits, so the two never overlap). Scrapes never reach it:
//! they are served from the last published snapshot.
//!
//! A GPU whose calls fail with `GpuLost` is reported down (`slurm_gpu_up
//! 0`, labelled with the identity read before) while the others keep
//! reporting. No NVML or no GPU: logged once, the sample is unavailable (the
//! GPU collector reports itself down), loading is retried quietly every minute.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::node::sources::gres_conf::GpuOrder;
use crate::node::sources::nvml::{
    BackendFactory, GpuBackend, GpuError, GpuIdentity, GpuProcess, NvlinkErrors, Profiling,
    ProfilingRead, RemappedRows,
};

/// How often the worker retries loading NVML after a failure.
const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// One reading of one GPU. `None`: not supported, or that call failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReading {
    pub identity: GpuIdentity,
    /// Slurm's index of this GPU on the node (the `gpu` label; see
    /// [`crate::node::sources::gres_conf`]). NVML's until numbered.
    pub slurm_index: u32,
    pub up: bool,
    /// Why the GPU is down.
    pub error: Option<String>,
    /// (GPU, memory) utilization, percent.
    pub utilization: Option<(u32, u32)>,
    /// (used, total) bytes.
    pub memory: Option<(u64, u64)>,
    pub power_mw: Option<u32>,
    pub energy_mj: Option<u64>,
    pub temperature_c: Option<u32>,
    pub memory_temperature_c: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
    pub memory_clock_mhz: Option<u32>,
    pub clock_event_reasons: Option<u64>,
    /// corrected volatile, corrected aggregate, uncorrected volatile, uncorrected aggregate.
    pub ecc: [Option<u64>; 4],
    pub remapped_rows: Option<RemappedRows>,
    pub pcie_replays: Option<u64>,
    pub nvlink: Option<NvlinkErrors>,
    pub processes: Option<Vec<GpuProcess>>,
    pub mig_enabled: Option<bool>,
    /// `Some(false)`: no GPM on this GPU (before Hopper, old driver, MIG).
    pub profiling_supported: Option<bool>,
    /// GPM values over the last collection interval (absent on the first).
    pub profiling: Option<Profiling>,
    /// GPM refused for lack of permission (said once in the log).
    pub profiling_denied: bool,
}

/// One sample of all GPUs of the node.
#[derive(Debug, Clone)]
pub struct GpuSample {
    /// `Err(reason)`: NVML missing, no GPU, or the worker did not answer.
    pub status: Result<(), String>,
    pub driver_version: Option<String>,
    pub gpus: Vec<GpuReading>,
    /// Cumulative XID counts: GPU index → XID → count.
    pub xids: BTreeMap<u32, BTreeMap<u64, u64>>,
    /// Time spent in NVML for this sample.
    pub duration: Duration,
    /// How the GPUs were numbered for Slurm: (order, where it was read).
    pub numbering: Option<(&'static str, String)>,
}

impl GpuSample {
    /// Sets each GPU's `slurm_index` (the `gpu` label) by slurmd's order,
    /// found at `source`.
    pub fn number_for_slurm(&mut self, order: &GpuOrder, source: &str) {
        self.numbering = Some((order.as_str(), source.to_string()));
        let ids: Vec<(u32, Option<u32>)> = self
            .gpus
            .iter()
            .map(|g| (g.identity.index, g.identity.minor))
            .collect();
        for (g, i) in self.gpus.iter_mut().zip(order.assign(&ids)) {
            g.slurm_index = i;
        }
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        GpuSample {
            status: Err(reason.into()),
            driver_version: None,
            gpus: Vec::new(),
            xids: BTreeMap::new(),
            duration: Duration::ZERO,
            numbering: None,
        }
    }
}

/// Keeps going on "not supported" and per-call errors; stops on a lost GPU
/// or NVML itself going away.
fn get<T>(r: Result<T, GpuError>, index: u32, what: &'static str) -> Result<Option<T>, GpuError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e @ (GpuError::GpuLost | GpuError::Unavailable(_))) => Err(e),
        Err(GpuError::NotSupported) => Ok(None),
        Err(e) => {
            tracing::debug!(gpu = index, what, error = %e, "NVML query failed");
            Ok(None)
        }
    }
}

/// Reads one GPU. The identity is read once and cached by the caller.
pub fn read_gpu(
    b: &mut dyn GpuBackend,
    index: u32,
    identity: &mut Option<GpuIdentity>,
) -> GpuReading {
    let mut r = GpuReading {
        identity: identity.clone().unwrap_or(GpuIdentity {
            index,
            ..Default::default()
        }),
        slurm_index: index,
        ..Default::default()
    };
    let res = (|| -> Result<(), GpuError> {
        if identity.is_none() {
            let id = b.identity(index)?;
            *identity = Some(id.clone());
            r.identity = id;
        }
        r.utilization = get(b.utilization(index), index, "utilization")?;
        r.memory = get(b.memory(index), index, "memory")?;
        r.power_mw = get(b.power_mw(index), index, "power")?;
        r.energy_mj = get(b.energy_mj(index), index, "energy")?;
        r.temperature_c = get(b.temperature_c(index), index, "temperature")?;
        r.memory_temperature_c = get(b.memory_temperature_c(index), index, "memory temperature")?;
        r.sm_clock_mhz = get(b.sm_clock_mhz(index), index, "SM clock")?;
        r.memory_clock_mhz = get(b.memory_clock_mhz(index), index, "memory clock")?;
        r.clock_event_reasons = get(b.clock_event_reasons(index), index, "clock events")?;
        for (i, (corrected, aggregate)) in
            [(true, false), (true, true), (false, false), (false, true)]
                .into_iter()
                .enumerate()
        {
            r.ecc[i] = get(
                b.ecc_errors(index, corrected, aggregate),
                index,
                "ECC errors",
            )?;
        }
        r.remapped_rows = get(b.remapped_rows(index), index, "remapped rows")?;
        r.pcie_replays = get(b.pcie_replays(index), index, "PCIe replays")?;
        r.nvlink = get(b.nvlink_errors(index), index, "NVLink errors")?;
        r.processes = get(b.processes(index), index, "processes")?;
        r.mig_enabled = get(b.mig_enabled(index), index, "MIG mode")?;
        match b.profiling(index) {
            Ok(ProfilingRead::Ready(p)) => {
                r.profiling_supported = Some(true);
                r.profiling = Some(p);
            }
            Ok(ProfilingRead::Warming) => r.profiling_supported = Some(true),
            Err(GpuError::NotSupported) => r.profiling_supported = Some(false),
            Err(GpuError::NoPermission) => {
                r.profiling_supported = Some(false);
                r.profiling_denied = true;
            }
            Err(e @ (GpuError::GpuLost | GpuError::Unavailable(_))) => return Err(e),
            Err(e) => tracing::debug!(gpu = index, error = %e, "GPM profiling read failed"),
        }
        Ok(())
    })();
    match res {
        Ok(()) => r.up = true,
        Err(e) => {
            // Drop partial values: a down GPU reports only slurm_gpu_up.
            r = GpuReading {
                identity: r.identity,
                slurm_index: index,
                error: Some(e.to_string()),
                ..Default::default()
            };
        }
    }
    r
}

/// State owned by the NVML worker thread.
struct Worker {
    factory: BackendFactory,
    backend: Option<Box<dyn GpuBackend>>,
    next_load: Instant,
    /// Last reason NVML was unavailable (logged once per distinct reason).
    unavailable: Option<String>,
    identities: Vec<Option<GpuIdentity>>,
    /// Per GPU, whether it was down in the last sample (logged on change).
    down: Vec<bool>,
    /// Per GPU, whether "no profiling" was logged.
    no_profiling_logged: Vec<bool>,
    xids: BTreeMap<u32, BTreeMap<u64, u64>>,
    driver_version: Option<String>,
}

impl Worker {
    fn ensure_backend(&mut self) -> Result<(), String> {
        if self.backend.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if now < self.next_load {
            return Err(self.unavailable.clone().unwrap_or_default());
        }
        match (self.factory)() {
            Ok(mut b) => {
                self.driver_version = b.driver_version().ok();
                if self.unavailable.take().is_some() {
                    tracing::info!("NVML loaded; GPU collector up");
                }
                self.backend = Some(b);
                Ok(())
            }
            Err(e) => {
                self.next_load = now + RELOAD_EVERY;
                Err(self.note_unavailable(e.to_string()))
            }
        }
    }

    fn note_unavailable(&mut self, reason: String) -> String {
        if self.unavailable.as_deref() != Some(reason.as_str()) {
            tracing::warn!(reason = %reason, "no GPU metrics: GPU collector reports down; other collectors go on");
        }
        self.unavailable = Some(reason.clone());
        reason
    }

    fn poll_events(&mut self) {
        let Some(b) = self.backend.as_mut() else {
            return;
        };
        for ev in b.poll_xid_events() {
            tracing::warn!(gpu = ev.index, xid = ev.xid, "XID error");
            *self
                .xids
                .entry(ev.index)
                .or_default()
                .entry(ev.xid)
                .or_insert(0) += 1;
        }
    }

    fn sample(&mut self) -> GpuSample {
        let start = Instant::now();
        if let Err(reason) = self.ensure_backend() {
            return GpuSample::unavailable(reason);
        }
        self.poll_events();
        let Some(b) = self.backend.as_mut() else {
            return GpuSample::unavailable("NVML not loaded");
        };
        let count = match b.device_count() {
            Ok(0) => return GpuSample::unavailable(self.note_unavailable("no GPU found".into())),
            Ok(c) => c,
            Err(e) => {
                if matches!(e, GpuError::Unavailable(_)) {
                    self.backend = None;
                }
                return GpuSample::unavailable(
                    self.note_unavailable(format!("cannot count GPUs: {e}")),
                );
            }
        };
        if self.unavailable.take().is_some() {
            tracing::info!(gpus = count, "GPUs found; GPU collector up");
        }
        self.identities.resize(count as usize, None);
        self.down.resize(count as usize, false);
        self.no_profiling_logged.resize(count as usize, false);
        let mut gpus = Vec::with_capacity(count as usize);
        for i in 0..count {
            let r = read_gpu(b.as_mut(), i, &mut self.identities[i as usize]);
            let was_down = std::mem::replace(&mut self.down[i as usize], !r.up);
            match (&r.error, was_down) {
                (Some(e), false) => {
                    tracing::warn!(gpu = i, uuid = %r.identity.uuid, error = %e, "GPU down; the other GPUs keep reporting")
                }
                (None, true) => tracing::info!(gpu = i, uuid = %r.identity.uuid, "GPU up again"),
                _ => {}
            }
            if r.profiling_supported == Some(false) && !self.no_profiling_logged[i as usize] {
                self.no_profiling_logged[i as usize] = true;
                let why = if r.profiling_denied {
                    "NVML refused GPM: no permission (drivers that restrict profiling to admin users, NVreg_RestrictProfilingToAdminUsers=1, need the agent to hold CAP_SYS_ADMIN)"
                } else if r.mig_enabled == Some(true) {
                    "the GPU is in MIG mode (GPM per MIG instance is not collected)"
                } else {
                    "NVML GPM is not supported here (needs Hopper or newer and a driver with GPM)"
                };
                tracing::info!(gpu = i, uuid = %r.identity.uuid, model = %r.identity.model, why, "no GPU profiling series (SM activity, tensor, DRAM) for this GPU; utilization still reported");
            }
            gpus.push(r);
        }
        GpuSample {
            status: Ok(()),
            driver_version: self.driver_version.clone(),
            gpus,
            xids: self.xids.clone(),
            duration: start.elapsed(),
            numbering: None,
        }
    }
}

/// Handle on the NVML worker thread. Dropping it stops the thread (after
/// any NVML call in progress returns).
pub struct GpuWorker {
    requests: Sender<u64>,
    samples: Receiver<(u64, GpuSample)>,
    seq: u64,
}

impl GpuWorker {
    /// Starts the worker; `event_poll` is how often XID events are polled
    /// between samples.
    pub fn spawn(factory: BackendFactory, event_poll: Duration) -> std::io::Result<Self> {
        let (req_tx, req_rx) = mpsc::channel::<u64>();
        let (s_tx, s_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("nvml".into())
            .spawn(move || {
                let mut w = Worker {
                    factory,
                    backend: None,
                    next_load: Instant::now(),
                    unavailable: None,
                    identities: Vec::new(),
                    down: Vec::new(),
                    no_profiling_logged: Vec::new(),
                    xids: BTreeMap::new(),
                    driver_version: None,
                };
                loop {
                    match req_rx.recv_timeout(event_poll) {
                        Ok(seq) => {
                            let s = w.sample();
                            if s_tx.send((seq, s)).is_err() {
                                break;
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => w.poll_events(),
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            })?;
        Ok(GpuWorker {
            requests: req_tx,
            samples: s_rx,
            seq: 0,
        })
    }

    /// Asks for a sample; collect it with [`GpuWorker::wait`].
    pub fn request(&mut self) {
        self.seq += 1;
        let _ = self.requests.send(self.seq);
    }

    /// Waits up to `timeout` for the sample last requested. A worker stuck
    /// in NVML yields an unavailable sample; its late answer is discarded.
    pub fn wait(&mut self, timeout: Duration) -> GpuSample {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.samples.recv_timeout(left) {
                Ok((seq, s)) if seq == self.seq => return s,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    tracing::debug!(?timeout, "NVML worker did not answer in time");
                    return GpuSample::unavailable(format!(
                        "NVML did not answer within {timeout:?}"
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return GpuSample::unavailable("NVML worker stopped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::sources::fake::FakeNvml;

    #[test]
    fn unsupported_values_are_omitted_not_fatal() {
        let fake = FakeNvml::h100x8();
        {
            let mut f = fake.lock();
            f.gpus[0].nvlink = None;
            f.gpus[0].memory_temperature_c = None;
            f.gpus[0].remapped_rows = None;
        }
        let mut ident = None;
        let r = read_gpu(&mut fake.backend(), 0, &mut ident);
        assert!(r.up);
        assert_eq!(r.nvlink, None);
        assert!(r.memory.is_some());
        assert_eq!(ident.unwrap().index, 0);
    }

    #[test]
    fn no_nvml_reports_unavailable_and_retries_quietly() {
        let fake = FakeNvml::h100x8();
        fake.set_unavailable(Some("libnvidia-ml.so.1: cannot open shared object file"));
        let mut w = GpuWorker::spawn(fake.factory(), Duration::from_millis(5)).unwrap();
        for _ in 0..3 {
            w.request();
            let s = w.wait(Duration::from_secs(5));
            assert!(s.status.unwrap_err().contains("libnvidia-ml"));
        }
        assert_eq!(fake.lock().loads, 0);
    }

    #[test]
    fn zero_gpus_is_unavailable() {
        let fake = FakeNvml::node("none", 0, 0);
        let mut w = GpuWorker::spawn(fake.factory(), Duration::from_millis(5)).unwrap();
        w.request();
        assert_eq!(
            w.wait(Duration::from_secs(5)).status,
            Err("no GPU found".into())
        );
    }
}
