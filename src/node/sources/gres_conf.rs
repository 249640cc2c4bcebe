//! How slurmd numbers this node's GPUs, so the agent's `gpu` label is the
//! index Slurm gives a job (`gres/gpu` `IDX:` in `scontrol show job -d`, the
//! scraper's `slurm_job_gpus{gpu}`) and not NVML's.
//!
//! NVML numbers GPUs in PCI bus order. slurmd numbers them in the order of its
//! GPU records (`gres_gpu.c`, the same in 22.05 through 26.05):
//!
//! - `AutoDetect=nvml`: the detected records are sorted by device file, then
//!   by their NVLink matrix ("links"), whose `-1` sits at the GPU's own NVML
//!   index — NVML's PCI order.
//! - `AutoDetect=nvidia` (24.11+, no NVML): sorted by device file in natural
//!   order (`strnatcmp`), i.e. by the minor number of `/dev/nvidiaN`.
//! - No auto-detection: the records as `gres.conf` lists them, `File=` ranges
//!   expanded in order — usually `/dev/nvidia[0-7]`, minor order.
//!
//! Minor numbers follow PCI order on most machines but need not, so where
//! they differ only the rule above attributes a GPU to the right job.
//! `gres.conf` is read from slurmd's own file system view
//! (`/proc/<slurmd>/root`: its conf-cache when configless, else
//! `/etc/slurm`), or from `--slurm.gres-conf`.

use std::path::{Path, PathBuf};

use super::fs::{is_gone, read_string, SMALL_FILE_CAP};
use super::procfs::ProcFs;
use super::slurmd;
use crate::slurm_text::hostlist;

/// Where gres.conf may be, relative to slurmd's root: conf-cache first
/// (configless slurmd ignores /etc/slurm), under the usual SlurmdSpoolDirs.
const CANDIDATES: [&str; 5] = [
    "var/spool/slurmd/conf-cache/gres.conf",
    "var/spool/slurm/d/conf-cache/gres.conf",
    "var/lib/slurm/slurmd/conf-cache/gres.conf",
    "var/spool/slurm/slurmd/conf-cache/gres.conf",
    "etc/slurm/gres.conf",
];
/// Collections between re-reads of gres.conf (slurmd reads it at start).
const REREAD_EVERY: u32 = 60;
/// Most device files one gres.conf may name for a node.
const MAX_FILES: usize = 4096;

/// The order slurmd gives this node's GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuOrder {
    /// NVML's (PCI bus) order.
    Nvml,
    /// By device minor number.
    DeviceFile,
    /// Device minors in gres.conf order.
    Listed(Vec<u32>),
}

impl GpuOrder {
    pub fn as_str(&self) -> &'static str {
        match self {
            GpuOrder::Nvml => "nvml",
            GpuOrder::DeviceFile => "device_file",
            GpuOrder::Listed(_) => "gres_conf",
        }
    }

    /// Slurm's index for each GPU, given per GPU its NVML index and minor.
    pub fn assign(&self, gpus: &[(u32, Option<u32>)]) -> Vec<u32> {
        match self {
            GpuOrder::Nvml => gpus.iter().map(|g| g.0).collect(),
            GpuOrder::DeviceFile => rank_by(gpus, |_| None),
            GpuOrder::Listed(minors) => rank_by(gpus, |m| {
                minors.iter().position(|x| *x == m).map(|p| p as u32)
            }),
        }
    }
}

/// Listed GPUs take their position; the others follow in minor order, then
/// NVML order (a GPU slurmd does not know, or one without a minor).
fn rank_by(gpus: &[(u32, Option<u32>)], listed: impl Fn(u32) -> Option<u32>) -> Vec<u32> {
    let fixed: Vec<Option<u32>> = gpus.iter().map(|g| g.1.and_then(&listed)).collect();
    let mut taken: Vec<u32> = fixed.iter().flatten().copied().collect();
    let mut rest: Vec<usize> = (0..gpus.len()).filter(|i| fixed[*i].is_none()).collect();
    rest.sort_by_key(|i| (gpus[*i].1.is_none(), gpus[*i].1, gpus[*i].0));
    let mut out: Vec<u32> = fixed.iter().map(|f| f.unwrap_or(0)).collect();
    let mut next = 0u32;
    for i in rest {
        while taken.contains(&next) {
            next += 1;
        }
        out[i] = next;
        taken.push(next);
    }
    out
}

/// The GPU order gres.conf gives `node`; `None` when it says nothing about
/// GPUs there (no AutoDetect, no `Name=gpu` with `File=`).
pub fn parse(text: &str, node: &str) -> Option<GpuOrder> {
    let mut autodetect: Option<String> = None;
    let mut files: Vec<u32> = Vec::new();
    let mut joined = String::new();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("");
        // A trailing backslash continues the line.
        if let Some(l) = line.trim_end().strip_suffix('\\') {
            joined.push_str(l);
            joined.push(' ');
            continue;
        }
        joined.push_str(line);
        let line = std::mem::take(&mut joined);
        let pairs: Vec<(String, &str)> = line
            .split_whitespace()
            .filter_map(|t| t.split_once('='))
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
        if let Some(nodes) = get("nodename") {
            match hostlist::expand_with_limit(nodes, 1 << 20) {
                Ok(names) if names.iter().any(|n| n == node) => {}
                _ => continue,
            }
        }
        if let Some(a) = get("autodetect") {
            autodetect = Some(a.to_ascii_lowercase());
        }
        if get("name").is_some_and(|n| n.eq_ignore_ascii_case("gpu")) {
            if let Some(f) = get("file") {
                for path in hostlist::expand_with_limit(f, MAX_FILES).unwrap_or_default() {
                    if let Some(m) = minor_of(&path) {
                        if files.len() < MAX_FILES {
                            files.push(m);
                        }
                    }
                }
            }
        }
    }
    match autodetect.as_deref() {
        Some("nvml") => Some(GpuOrder::Nvml),
        Some("nvidia") => Some(GpuOrder::DeviceFile),
        _ if !files.is_empty() => Some(GpuOrder::Listed(files)),
        _ => None,
    }
}

/// `/dev/nvidia3` → 3 (not `/dev/nvidiactl`, `/dev/nvidia-caps/...`).
fn minor_of(path: &str) -> Option<u32> {
    let digits = path.strip_prefix("/dev/nvidia")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `--gpu.slurm-order` (the flag's values: `crate::cli::node`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderFlag {
    /// From gres.conf (slurmd's view, or --slurm.gres-conf); NVML order if none is found.
    Auto,
    /// NVML's PCI order (Slurm's order with AutoDetect=nvml).
    Nvml,
    /// Device minor order (AutoDetect=nvidia, or File=/dev/nvidia[0-N]).
    DeviceFile,
}

/// Decides, and re-decides now and then, how slurmd numbers the GPUs.
#[derive(Debug)]
pub struct GpuNumbering {
    flag: OrderFlag,
    explicit: Option<PathBuf>,
    cached: Option<(GpuOrder, String)>,
    since_read: u32,
}

impl GpuNumbering {
    pub fn new(flag: OrderFlag, explicit: Option<PathBuf>) -> Self {
        GpuNumbering {
            flag,
            explicit,
            cached: None,
            since_read: 0,
        }
    }

    /// The order to use and where it came from (`flag`, a gres.conf path, or
    /// `default`).
    pub fn current(&mut self, procfs: &ProcFs, node: &str) -> (GpuOrder, String) {
        match self.flag {
            OrderFlag::Nvml => return (GpuOrder::Nvml, "flag".into()),
            OrderFlag::DeviceFile => return (GpuOrder::DeviceFile, "flag".into()),
            OrderFlag::Auto => {}
        }
        self.since_read += 1;
        if let Some(c) = self
            .cached
            .as_ref()
            .filter(|_| self.since_read < REREAD_EVERY)
        {
            return c.clone();
        }
        self.since_read = 0;
        let found = self.read(procfs, node);
        if self.cached.as_ref() != Some(&found) {
            tracing::info!(order = found.0.as_str(), source = %found.1, "GPU numbering (gpu label) follows slurmd's");
        }
        self.cached = Some(found.clone());
        found
    }

    fn read(&self, procfs: &ProcFs, node: &str) -> (GpuOrder, String) {
        // (path to read, how to name it: the path as slurmd sees it, without
        // the pid, so the label survives slurmd restarts)
        let paths: Vec<(PathBuf, String)> = match &self.explicit {
            Some(p) => vec![(p.clone(), display(p))],
            None => slurmd::discover(procfs)
                .unwrap_or_default()
                .iter()
                .flat_map(|s| {
                    let root = procfs.root().join(s.pid.to_string()).join("root");
                    CANDIDATES
                        .iter()
                        .map(move |c| (root.join(c), format!("slurmd:/{c}")))
                })
                .collect(),
        };
        for (p, name) in &paths {
            match read_string(p, SMALL_FILE_CAP) {
                Ok(text) => {
                    if let Some(order) = parse(&text, node) {
                        return (order, name.clone());
                    }
                    tracing::debug!(path = %p.display(), "gres.conf says nothing about this node's GPUs");
                }
                Err(e) if is_gone(&e) => {}
                Err(e) => tracing::debug!(path = %p.display(), error = %e, "cannot read gres.conf"),
            }
        }
        (GpuOrder::Nvml, "default".into())
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCI: [(u32, Option<u32>); 4] = [(0, Some(2)), (1, Some(0)), (2, Some(3)), (3, Some(1))];

    #[test]
    fn orders() {
        assert_eq!(GpuOrder::Nvml.assign(&PCI), vec![0, 1, 2, 3]);
        // NVML 0 is /dev/nvidia2: third by device file.
        assert_eq!(GpuOrder::DeviceFile.assign(&PCI), vec![2, 0, 3, 1]);
        assert_eq!(
            GpuOrder::Listed(vec![3, 2, 1, 0]).assign(&PCI),
            vec![1, 3, 0, 2]
        );
        // A GPU gres.conf does not list, and one without a minor, go last.
        let odd = [(0, Some(5)), (1, None), (2, Some(0))];
        assert_eq!(GpuOrder::Listed(vec![0]).assign(&odd), vec![1, 2, 0]);
        assert_eq!(GpuOrder::DeviceFile.assign(&odd), vec![1, 2, 0]);
    }

    #[test]
    fn parses_gres_conf() {
        let node = "gpu-node01";
        assert_eq!(parse("AutoDetect=nvml\n", node), Some(GpuOrder::Nvml));
        assert_eq!(
            parse("AutoDetect=nvidia\nName=gpu File=/dev/nvidia[0-1]", node),
            Some(GpuOrder::DeviceFile)
        );
        assert_eq!(
            parse(
                "# comment\nName=gpu Type=h100 File=/dev/nvidia[2-3] # tail\nName=gpu Type=h100 File=/dev/nvidia0,/dev/nvidia1\n",
                node
            ),
            Some(GpuOrder::Listed(vec![2, 3, 0, 1]))
        );
        // Per-node lines: only ours count; the other node's AutoDetect does not.
        let text = "NodeName=gpu-node[02-04] AutoDetect=nvml\nNodeName=gpu-node01 Name=gpu File=/dev/nvidia[0-7] \\\n Cores=0-31\nName=mps Count=100\n";
        assert_eq!(parse(text, node), Some(GpuOrder::Listed((0..8).collect())));
        assert_eq!(parse(text, "gpu-node03"), Some(GpuOrder::Nvml));
        // Keys are case-insensitive; nothing about GPUs: None.
        assert_eq!(parse("autodetect=NVML", node), Some(GpuOrder::Nvml));
        assert_eq!(parse("Name=mps Count=100\n", node), None);
        assert_eq!(parse("", node), None);
        // Hostile: not device files, huge ranges, garbage.
        assert_eq!(parse("Name=gpu File=/dev/nvidia-caps/x\n", node), None);
        assert_eq!(
            parse("Name=gpu File=/dev/nvidia[0-99999999999]\n=\n\0", node),
            None
        );
    }

    #[test]
    fn reads_gres_conf_from_slurmds_root() {
        let dir = tempfile::tempdir().unwrap();
        let proc_ = dir.path();
        let pid = proc_.join("4242");
        std::fs::create_dir_all(pid.join("root/var/spool/slurmd/conf-cache")).unwrap();
        std::fs::create_dir_all(pid.join("root/etc/slurm")).unwrap();
        std::fs::write(pid.join("comm"), "slurmd\n").unwrap();
        std::fs::write(pid.join("cmdline"), b"slurmd\0-N\0gpu-node01\0").unwrap();
        // configless: the conf-cache wins over a stale /etc/slurm one.
        std::fs::write(
            pid.join("root/var/spool/slurmd/conf-cache/gres.conf"),
            "Name=gpu File=/dev/nvidia[0-3]\n",
        )
        .unwrap();
        std::fs::write(pid.join("root/etc/slurm/gres.conf"), "AutoDetect=nvml\n").unwrap();
        let procfs = ProcFs::new(proc_);
        let mut n = GpuNumbering::new(OrderFlag::Auto, None);
        let (order, source) = n.current(&procfs, "gpu-node01");
        assert_eq!(order, GpuOrder::Listed(vec![0, 1, 2, 3]));
        assert_eq!(source, "slurmd:/var/spool/slurmd/conf-cache/gres.conf");
        // The flag overrides; no slurmd: NVML order by default.
        let mut f = GpuNumbering::new(OrderFlag::DeviceFile, None);
        assert_eq!(f.current(&procfs, "x").0, GpuOrder::DeviceFile);
        let empty = tempfile::tempdir().unwrap();
        let mut d = GpuNumbering::new(OrderFlag::Auto, None);
        assert_eq!(
            d.current(&ProcFs::new(empty.path()), "x"),
            (GpuOrder::Nvml, "default".to_string())
        );
    }
}
