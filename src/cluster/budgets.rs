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
//! ```
//!
//! Budgets are TRES-hours per calendar month (UTC). The file is checked
//! completely at start: YAML syntax, unknown keys, negative or non-finite
//! numbers, unknown TRES names; account names are checked against slurmdbd's
//! accounts ([`Budgets::check_accounts`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::usage::{is_known_tres, TRES_BILLING, TRES_CPU, TRES_GPU};

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

/// Validated budgets: (account, tres) -> TRES-seconds per calendar month.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budgets {
    pub path: PathBuf,
    pub seconds: BTreeMap<(String, String), f64>,
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
        if file.accounts.is_empty() {
            problems.push("no accounts under `accounts:`".to_string());
        }
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

/// Account names from `/slurmdb/vX/accounts` (same shape in every version).
pub fn parse_accounts(
    body: &mut dyn std::io::Read,
) -> Result<BTreeSet<String>, crate::slurmrestd::ParseError> {
    #[derive(Deserialize)]
    struct Resp {
        #[serde(default)]
        accounts: Vec<Acc>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Acc {
        #[serde(default)]
        name: Option<String>,
    }
    let r: Resp = serde_json::from_reader(body)?;
    if r.accounts.is_empty() && !r.errors.is_empty() {
        return Err(crate::slurmrestd::ParseError::Slurm(
            r.errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    Ok(r.accounts.into_iter().filter_map(|a| a.name).collect())
}

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
