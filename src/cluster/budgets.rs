//! Monthly usage budgets per account (`--budgets FILE`, YAML).
//!
//! ```yaml
//! accounts:
//!   ai_project:
//!     gpu_hours: 5000        # gres/gpu
//!     cpu_hours: 100000      # cpu
//!     billing_hours: 20000   # billing
//!     tres_hours:            # any other counted TRES, by its sreport name
//!       "gres/gpu:h100": 2000
//!       mem: 5000000         # MB-hours
//! prices:                    # optional: money (docs/usage.md#prices)
//!   currency: USD            # named once; the `currency` label of the cost counter
//!   gpu_hour:                # per allocated GPU-hour
//!     default: 4.10
//!     partitions: {p5: 12.29}
//!     gpu_types: {h100: 12.29}   # most specific wins: type, partition, default
//!   cpu_hour: {default: 0.0}     # per allocated CPU-hour (default, partitions)
//!   billing_hour: {partitions: {cpu: 0.01}}  # per billing-unit-hour
//! ```
//!
//! Budgets are TRES-hours per calendar month (UTC). The file is checked
//! completely at start: YAML syntax, unknown keys, negative or non-finite
//! numbers, unknown TRES names; account names are checked against slurmdbd's
//! accounts ([`Budgets::check_accounts`]).
//!
//! Prices turn the exact usage credits into money: the accountant adds
//! `amount × seconds × price / 3600` to `slurm_account_tres_cost_total` in the
//! same step that adds `amount × seconds` to the usage counter
//! ([`Prices::rates`]), so cost over any window is usage × price. A price
//! applies to usage credited while it is loaded (the file is read at start).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::usage::alloc::{is_known_tres, Alloc, TRES_BILLING, TRES_CPU, TRES_GPU};

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("cannot read budgets file {path:?}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("budgets file {path:?} is not valid: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("budgets file {path:?}: {problems}")]
    Invalid { path: PathBuf, problems: String },
    #[error(
        "budgets file {path:?} names accounts slurmdbd does not know: {unknown}; known accounts: {known}"
    )]
    UnknownAccounts {
        path: PathBuf,
        unknown: String,
        known: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    accounts: BTreeMap<String, AccountBudget>,
    #[serde(default)]
    prices: Option<PriceFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    currency: String,
    gpu_hour: Option<GpuRate>,
    cpu_hour: Option<Rate>,
    billing_hour: Option<Rate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuRate {
    default: Option<f64>,
    #[serde(default)]
    partitions: BTreeMap<String, f64>,
    #[serde(default)]
    gpu_types: BTreeMap<String, f64>,
}

/// Price per hour of one TRES unit: per partition, else the default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub default: Option<f64>,
    #[serde(default)]
    pub partitions: BTreeMap<String, f64>,
}

impl Rate {
    /// Price per hour in `partition`, `None` when neither it nor a default is set.
    pub fn get(&self, partition: &str) -> Option<f64> {
        self.partitions.get(partition).copied().or(self.default)
    }
}

/// The price table: currency units per TRES-hour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    pub currency: String,
    /// Per GPU-hour by partition and default.
    pub gpu: Rate,
    /// Per GPU-hour of a typed GPU (`gres/gpu:<type>`): wins over `gpu`.
    pub gpu_types: BTreeMap<String, f64>,
    pub cpu: Rate,
    pub billing: Rate,
}

/// The TRES that carry a price, as the `tres` label of the cost counter.
pub const PRICED_TRES: [&str; 3] = [TRES_GPU, TRES_CPU, TRES_BILLING];

impl Prices {
    /// Price per GPU-hour of a GPU of `gpu_type` (None: untyped) in `partition`:
    /// the type's price, else the partition's, else the default, else 0.
    pub fn gpu_hour(&self, partition: &str, gpu_type: Option<&str>) -> f64 {
        gpu_type
            .and_then(|t| self.gpu_types.get(t).copied())
            .or_else(|| self.gpu.get(partition))
            .unwrap_or(0.0)
    }

    /// Cost per second of holding `alloc` in `partition`, per priced TRES
    /// ([`PRICED_TRES`] order). Typed GPUs are priced by type, the GPUs
    /// without a type (gres/gpu minus the typed ones) as untyped.
    pub fn rates(&self, partition: &str, alloc: &Alloc) -> [(&'static str, f64); 3] {
        let pos = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
        let mut typed = 0.0;
        let mut gpu = 0.0;
        for (t, n) in &alloc.gpus_by_type {
            let n = pos(*n);
            typed += n;
            gpu += n * self.gpu_hour(partition, Some(t));
        }
        gpu += (pos(alloc.gpus) - typed).max(0.0) * self.gpu_hour(partition, None);
        let cpu = pos(alloc.cpus) * self.cpu.get(partition).unwrap_or(0.0);
        let billing = pos(alloc.billing) * self.billing.get(partition).unwrap_or(0.0);
        [
            (TRES_GPU, gpu / 3600.0),
            (TRES_CPU, cpu / 3600.0),
            (TRES_BILLING, billing / 3600.0),
        ]
    }
}

fn check_prices(p: PriceFile, problems: &mut Vec<String>) -> Prices {
    let currency = p.currency.trim().to_string();
    if currency.is_empty()
        || currency.chars().count() > 16
        || currency
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '"')
    {
        problems.push(format!(
            "prices: currency must be a short name without spaces (e.g. USD), got {:?}",
            p.currency
        ));
    }
    fn check(problems: &mut Vec<String>, what: String, v: f64) {
        if !v.is_finite() || v < 0.0 {
            problems.push(format!("prices: {what} must be a number >= 0, got {v}"));
        }
    }
    let rate = |problems: &mut Vec<String>, key: &str, r: &Rate| {
        if let Some(v) = r.default {
            check(problems, format!("{key}.default"), v);
        }
        for (part, v) in &r.partitions {
            check(problems, format!("{key}.partitions.{part}"), *v);
        }
    };
    let gpu = p.gpu_hour.unwrap_or(GpuRate {
        default: None,
        partitions: BTreeMap::new(),
        gpu_types: BTreeMap::new(),
    });
    let gpu_rate = Rate {
        default: gpu.default,
        partitions: gpu.partitions,
    };
    let cpu = p.cpu_hour.unwrap_or_default();
    let billing = p.billing_hour.unwrap_or_default();
    rate(problems, "gpu_hour", &gpu_rate);
    rate(problems, "cpu_hour", &cpu);
    rate(problems, "billing_hour", &billing);
    for (t, v) in &gpu.gpu_types {
        if !is_known_tres(&format!("gres/gpu:{t}")) {
            problems.push(format!(
                "prices: gpu_hour.gpu_types: {t:?} is not a GPU type name (as in gres/gpu:<type>)"
            ));
        }
        check(problems, format!("gpu_hour.gpu_types.{t}"), *v);
    }
    let empty = |r: &Rate| r.default.is_none() && r.partitions.is_empty();
    if empty(&gpu_rate) && gpu.gpu_types.is_empty() && empty(&cpu) && empty(&billing) {
        problems
            .push("prices: no price given (set gpu_hour, cpu_hour or billing_hour)".to_string());
    }
    Prices {
        currency,
        gpu: gpu_rate,
        gpu_types: gpu.gpu_types,
        cpu,
        billing,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBudget {
    gpu_hours: Option<f64>,
    cpu_hours: Option<f64>,
    billing_hours: Option<f64>,
    #[serde(default)]
    tres_hours: BTreeMap<String, f64>,
}

/// Validated budgets: (account, tres) -> TRES-seconds per calendar month,
/// and the price table when the file has one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budgets {
    pub path: PathBuf,
    pub seconds: BTreeMap<(String, String), f64>,
    pub prices: Option<Prices>,
}

impl Budgets {
    pub fn load(path: &Path) -> Result<Budgets, BudgetError> {
        let text = std::fs::read_to_string(path).map_err(|source| BudgetError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Budgets::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Budgets, BudgetError> {
        let file: File = serde_norway::from_str(text).map_err(|e| BudgetError::Yaml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        let mut seconds = BTreeMap::new();
        if file.accounts.is_empty() && file.prices.is_none() {
            problems.push("no accounts under `accounts:` and no `prices:`".to_string());
        }
        let prices = file.prices.map(|p| check_prices(p, &mut problems));
        for (account, b) in file.accounts {
            if account.trim().is_empty() {
                problems.push("an account name is empty".to_string());
                continue;
            }
            let mut items: Vec<(String, &str, f64)> = Vec::new();
            for (key, tres, v) in [
                ("gpu_hours", TRES_GPU, b.gpu_hours),
                ("cpu_hours", TRES_CPU, b.cpu_hours),
                ("billing_hours", TRES_BILLING, b.billing_hours),
            ] {
                if let Some(v) = v {
                    items.push((tres.to_string(), key, v));
                }
            }
            for (tres, v) in &b.tres_hours {
                items.push((tres.clone(), "tres_hours", *v));
            }
            if items.is_empty() {
                problems.push(format!("account {account:?} has no budget (set gpu_hours, cpu_hours, billing_hours or tres_hours)"));
            }
            for (tres, key, hours) in items {
                if !is_known_tres(&tres) {
                    problems.push(format!(
                        "account {account:?}: unknown TRES {tres:?} under {key} (use cpu, mem, gres/gpu, gres/gpu:<type> or billing)"
                    ));
                } else if !hours.is_finite() || hours < 0.0 {
                    problems.push(format!(
                        "account {account:?}: {key} for {tres} must be a number >= 0, got {hours}"
                    ));
                } else if seconds
                    .insert((account.clone(), tres.clone()), hours * 3600.0)
                    .is_some()
                {
                    problems.push(format!(
                        "account {account:?}: {tres} is given twice (a *_hours key and tres_hours)"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(BudgetError::Invalid {
                path: path.to_path_buf(),
                problems: problems.join("; "),
            });
        }
        Ok(Budgets {
            path: path.to_path_buf(),
            seconds,
            prices,
        })
    }

    pub fn accounts(&self) -> BTreeSet<&str> {
        self.seconds.keys().map(|(a, _)| a.as_str()).collect()
    }

    /// Fails when the file names accounts not in `known` (slurmdbd's list).
    pub fn check_accounts(&self, known: &BTreeSet<String>) -> Result<(), BudgetError> {
        let unknown: Vec<&str> = self
            .accounts()
            .into_iter()
            .filter(|a| !known.contains(*a))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(BudgetError::UnknownAccounts {
            path: self.path.clone(),
            unknown: unknown.join(", "),
            known: known.iter().cloned().collect::<Vec<_>>().join(", "),
        })
    }
}

pub use crate::slurmrestd::parse_accounts;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Budgets, BudgetError> {
        Budgets::parse(Path::new("budgets.yaml"), s)
    }

    #[test]
    fn good_file() {
        let b = parse(
            "accounts:\n  ai_project:\n    gpu_hours: 5000\n    cpu_hours: 100000\n    tres_hours:\n      gres/gpu:h100: 10\n      mem: 2.5\n  hpc_project:\n    billing_hours: 0\n",
        )
        .unwrap();
        assert_eq!(
            b.seconds[&("ai_project".into(), "gres/gpu".into())],
            5000.0 * 3600.0
        );
        assert_eq!(
            b.seconds[&("ai_project".into(), "gres/gpu:h100".into())],
            36000.0
        );
        assert_eq!(b.seconds[&("ai_project".into(), "mem".into())], 9000.0);
        assert_eq!(b.seconds[&("hpc_project".into(), "billing".into())], 0.0);
        assert_eq!(b.seconds.len(), 5);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let e = parse("accounts:\n  ai: {gpu_hours: -5}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be a number >= 0, got -5"), "{e}");
        let e = parse("accounts:\n  ai: {gpu_hour: 5}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `gpu_hour`"), "{e}");
        let e = parse("accounts:\n  ai: {gpu_hours: 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid"), "{e}");
        let e = parse("accounts:\n  ai: {gpu_hours: lots}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid"), "{e}");
        let e = parse("accounts:\n  ai: {tres_hours: {gres/fpga: 1}}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown TRES \"gres/fpga\""), "{e}");
        let e = parse("accounts:\n  ai: {gpu_hours: 1, tres_hours: {gres/gpu: 2}}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("given twice"), "{e}");
        let e = parse("accounts:\n  ai: {}\n").unwrap_err().to_string();
        assert!(e.contains("has no budget"), "{e}");
        assert!(parse("accounts: {}\n").is_err());
        assert!(parse("acounts: {ai: {gpu_hours: 1}}\n").is_err());
    }

    #[test]
    fn prices_most_specific_wins() {
        let b = parse(
            "prices:\n  currency: USD\n  gpu_hour:\n    default: 4.10\n    partitions: {p5: 12.29}\n    gpu_types: {h100: 12.5}\n  cpu_hour: {partitions: {cpu: 0.04}}\n  billing_hour: {default: 0.01}\n",
        )
        .unwrap();
        assert!(b.seconds.is_empty());
        let p = b.prices.unwrap();
        assert_eq!(p.currency, "USD");
        assert_eq!(p.gpu_hour("p5", Some("h100")), 12.5);
        assert_eq!(p.gpu_hour("p5", Some("a100")), 12.29);
        assert_eq!(p.gpu_hour("p5", None), 12.29);
        assert_eq!(p.gpu_hour("p4d", None), 4.10);
        let alloc = Alloc {
            cpus: 96.0,
            gpus: 8.0,
            billing: 10.0,
            gpus_by_type: [("h100".to_string(), 6.0)].into(),
            ..Default::default()
        };
        // 6 typed H100s at 12.5, 2 untyped at the partition's 12.29.
        let r = p.rates("p5", &alloc);
        assert_eq!(r[0], ("gres/gpu", (6.0 * 12.5 + 2.0 * 12.29) / 3600.0));
        // No cpu price in p5 (only in cpu, no default): CPUs are free there.
        assert_eq!(r[1], ("cpu", 0.0));
        assert_eq!(r[2], ("billing", 10.0 * 0.01 / 3600.0));
        assert_eq!(p.rates("cpu", &alloc)[1].1, 96.0 * 0.04 / 3600.0);
        // No default GPU price and no match: unpriced, cost 0.
        let b = parse("prices: {currency: EUR, cpu_hour: {default: 1}}\n").unwrap();
        assert_eq!(b.prices.unwrap().rates("x", &alloc)[0].1, 0.0);
    }

    #[test]
    fn bad_prices_say_what_is_wrong() {
        for (text, want) in [
            (
                "prices: {currency: USD, gpu_hour: {default: -1}}",
                "gpu_hour.default must be a number >= 0, got -1",
            ),
            (
                "prices: {currency: USD, gpu_hour: {default: .nan}}",
                "gpu_hour.default must be a number >= 0, got NaN",
            ),
            (
                "prices: {currency: USD, cpu_hour: {partitions: {cpu: .inf}}}",
                "cpu_hour.partitions.cpu must be a number >= 0",
            ),
            (
                "prices: {currency: USD, gpu_hour: {gpu_types: {h100: -2}}}",
                "gpu_hour.gpu_types.h100 must be",
            ),
            (
                "prices: {currency: USD, gpu_hour: {gpu_types: {\"a,b\": 2}}}",
                "not a GPU type name",
            ),
            (
                "prices: {currency: US D, gpu_hour: {default: 1}}",
                "currency must be",
            ),
            (
                "prices: {currency: \"\", gpu_hour: {default: 1}}",
                "currency must be",
            ),
            ("prices: {currency: USD}", "no price given"),
            (
                "prices: {gpu_hour: {default: 1}}",
                "missing field `currency`",
            ),
            (
                "prices: {currency: USD, gpu_hours: {default: 1}}",
                "unknown field `gpu_hours`",
            ),
            (
                "prices: {currency: USD, gpu_hour: {defualt: 1}}",
                "unknown field `defualt`",
            ),
            (
                "prices: {currency: USD, cpu_hour: {gpu_types: {h100: 1}}}",
                "unknown field `gpu_types`",
            ),
            ("prices: {currency: USD, gpu_hour: 4.1}", "not valid"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_accounts_are_named() {
        let b = parse("accounts:\n  ai_project: {gpu_hours: 1}\n  typo_project: {gpu_hours: 1}\n")
            .unwrap();
        let body = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/slurmrestd/v0.0.44/slurmdb_accounts.json"),
        )
        .unwrap();
        let known = parse_accounts(&mut &body[..]).unwrap();
        assert!(known.contains("ai_project") && known.contains("root"));
        let e = b.check_accounts(&known).unwrap_err().to_string();
        assert!(
            e.contains("typo_project") && e.contains("known accounts: ai_project"),
            "{e}"
        );
    }
}
