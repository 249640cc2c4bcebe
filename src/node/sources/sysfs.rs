//! `/sys` under a configurable root (`--path.sysfs`): EFA devices and their
//! counters.

use std::io;
use std::path::{Path, PathBuf};

use super::fs::{is_gone, read_string, read_u64, SYSFS_CAP};

/// PCI vendor id of Amazon (EFA devices).
pub const AMAZON_PCI_VENDOR: u64 = 0x1d0f;

#[derive(Debug, Clone)]
pub struct SysFs {
    root: PathBuf,
}

/// One RDMA device (`<sysfs>/class/infiniband/<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdmaDevice {
    pub name: String,
    pub path: PathBuf,
}

impl SysFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SysFs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// EFA devices: entries of `class/infiniband` whose `device/vendor` is
    /// `0x1d0f`, sorted by name. No `class/infiniband` means no devices.
    pub fn efa_devices(&self) -> io::Result<Vec<RdmaDevice>> {
        let class = self.root.join("class/infiniband");
        let entries = match std::fs::read_dir(&class) {
            Ok(e) => e,
            Err(e) if is_gone(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let path = entry.path();
            match read_u64(&path.join("device/vendor")) {
                Ok(Some(AMAZON_PCI_VENDOR)) => out.push(RdmaDevice { name, path }),
                Ok(_) => {}
                Err(e) => tracing::debug!(device = %name, error = %e, "cannot read PCI vendor"),
            }
        }
        out.sort_by_key(|d| natural_key(&d.name));
        Ok(out)
    }
}

/// Port numbers under `<device>/ports`, sorted.
pub fn ports(device: &Path) -> Vec<u32> {
    let mut ports: Vec<u32> = match std::fs::read_dir(device.join("ports")) {
        Ok(e) => e
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect(),
        Err(_) => Vec::new(),
    };
    ports.sort_unstable();
    ports
}

/// A port's `state` file: `"4: ACTIVE"` → `(4, "ACTIVE")`.
pub fn read_port_state(port: &Path) -> Option<(u32, String)> {
    let s = read_string(&port.join("state"), SYSFS_CAP).ok()?;
    let (id, name) = s.trim().split_once(':')?;
    Some((id.trim().parse().ok()?, name.trim().to_string()))
}

/// A port's `rate` file (`"100 Gb/sec (4X EDR)"`), in bytes per second.
pub fn read_port_rate(port: &Path) -> Option<f64> {
    let s = read_string(&port.join("rate"), SYSFS_CAP).ok()?;
    parse_rate(&s)
}

pub fn parse_rate(s: &str) -> Option<f64> {
    let mut it = s.split_whitespace();
    let value: f64 = it.next()?.parse().ok()?;
    let unit = it.next()?;
    let bits = match unit {
        "Gb/sec" => 1e9,
        "Mb/sec" => 1e6,
        "Tb/sec" => 1e12,
        _ => return None,
    };
    let v = value * bits / 8.0;
    v.is_finite().then_some(v)
}

/// Sorts `efa_2` before `efa_10`, `rdmap16s27` before `rdmap113s27`.
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut num: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            num = Some(num.unwrap_or(0).saturating_mul(10).saturating_add(d as u64));
        } else {
            if let Some(n) = num.take() {
                out.push((std::mem::take(&mut text), n));
            }
            text.push(c);
        }
    }
    out.push((text, num.unwrap_or(0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_states() {
        assert_eq!(parse_rate("100 Gb/sec (4X EDR)\n"), Some(12.5e9));
        assert_eq!(parse_rate("25 Gb/sec"), Some(3.125e9));
        assert_eq!(parse_rate("fast"), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state"), "4: ACTIVE\n").unwrap();
        assert_eq!(read_port_state(dir.path()), Some((4, "ACTIVE".into())));
        std::fs::write(dir.path().join("state"), "ACTIVE\n").unwrap();
        assert_eq!(read_port_state(dir.path()), None);
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["efa_10", "efa_2", "rdmap113s27", "rdmap16s27"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(v, ["efa_2", "efa_10", "rdmap16s27", "rdmap113s27"]);
    }
}
