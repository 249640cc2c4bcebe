//! Allocated TRES of one job in sreport's units, and the TRES names the
//! accountant counts. A leaf: `budgets` prices these without importing the
//! accountant (which imports `budgets`).

use std::collections::BTreeMap;

/// TRES names as sreport prints them.
pub const TRES_CPU: &str = "cpu";
pub const TRES_MEM: &str = "mem";
pub const TRES_GPU: &str = "gres/gpu";
pub const TRES_BILLING: &str = "billing";
/// Always exported for every (account, user, partition) seen, zero included.
pub const BASE_TRES: [&str; 4] = [TRES_CPU, TRES_MEM, TRES_GPU, TRES_BILLING];

/// Whether `name` is a TRES this accountant counts (`gres/gpu:<type>` included).
pub fn is_known_tres(name: &str) -> bool {
    BASE_TRES.contains(&name)
        || name
            .strip_prefix("gres/gpu:")
            .is_some_and(|t| !t.is_empty() && !t.contains([',', '=', ' ']))
}

/// Allocated TRES of one job, in sreport units (memory in MB).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alloc {
    #[serde(default)]
    pub cpus: f64,
    #[serde(default)]
    pub mem_mb: f64,
    #[serde(default)]
    pub billing: f64,
    #[serde(default)]
    pub gpus: f64,
    #[serde(default)]
    pub gpus_by_type: BTreeMap<String, f64>,
}

impl Alloc {
    pub fn from_tres(t: &crate::model::Tres) -> Alloc {
        let by_type = t.gpus_by_type.iter().map(|(k, v)| (k.as_str(), *v));
        Alloc::from_counts(t.cpus, t.memory_bytes, t.billing, t.gpus, by_type)
    }

    /// From Slurm's counts (memory in bytes).
    pub fn from_counts<'a>(
        cpus: u64,
        memory_bytes: u64,
        billing: f64,
        gpus: u64,
        gpus_by_type: impl Iterator<Item = (&'a str, u64)>,
    ) -> Alloc {
        Alloc {
            cpus: cpus as f64,
            // sreport's mem TRES is MB (MiB): `mem=32G` is 32768.
            mem_mb: memory_bytes as f64 / (1024.0 * 1024.0),
            billing,
            gpus: gpus as f64,
            gpus_by_type: gpus_by_type
                .map(|(k, v)| (k.to_string(), v as f64))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cpus <= 0.0 && self.mem_mb <= 0.0 && self.billing <= 0.0 && self.gpus <= 0.0
    }

    /// (TRES name, amount): the base TRES always, typed GPUs when present.
    pub fn tres(&self) -> Vec<(String, f64)> {
        let mut v = vec![
            (TRES_CPU.to_string(), self.cpus),
            (TRES_MEM.to_string(), self.mem_mb),
            (TRES_GPU.to_string(), self.gpus),
            (TRES_BILLING.to_string(), self.billing),
        ];
        for (t, n) in &self.gpus_by_type {
            v.push((format!("gres/gpu:{t}"), *n));
        }
        v
    }
}
