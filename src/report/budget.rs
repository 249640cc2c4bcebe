//! The month's budgets next to the usage: `slurm_account_budget_seconds` and
//! `slurm_account_budget_used_seconds` (the cluster scraper's `--budgets`), as
//! they stood at the end of the reported window. Printed after the sreport
//! table (table and parsable formats) when the scraper has budgets.

use std::collections::BTreeMap;

use super::prom::{Prometheus, Series};
use super::{Unit, Window};

pub const BUDGET: &str = "slurm_account_budget_seconds";
pub const USED: &str = "slurm_account_budget_used_seconds";

/// One account's budget for one TRES.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRow {
    pub cluster: String,
    pub account: String,
    pub tres: String,
    pub budget_seconds: f64,
    pub used_seconds: f64,
}

/// (cluster, account, tres) rows from the two queries' answers.
pub fn rows(budget: &[Series], used: &[Series], default_cluster: &str) -> Vec<BudgetRow> {
    let key = |s: &Series| {
        let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        let cluster = s
            .labels
            .get("cluster")
            .cloned()
            .unwrap_or_else(|| default_cluster.to_string());
        (cluster, l("account"), l("tres"))
    };
    let mut out: BTreeMap<(String, String, String), (f64, f64)> = BTreeMap::new();
    for s in budget {
        let v = s.value().filter(|v| v.is_finite()).unwrap_or(0.0);
        let e = out.entry(key(s)).or_default();
        e.0 = e.0.max(v);
    }
    for s in used {
        let v = s.value().filter(|v| v.is_finite()).unwrap_or(0.0);
        if let Some(e) = out.get_mut(&key(s)) {
            e.1 = e.1.max(v);
        }
    }
    out.into_iter()
        .map(|((cluster, account, tres), (b, u))| BudgetRow {
            cluster,
            account,
            tres,
            budget_seconds: b,
            used_seconds: u,
        })
        .collect()
}

/// Queries the budgets of `tres` at the window's end.
pub async fn fetch(
    prom: &Prometheus,
    w: &Window,
    tres: &[String],
    extra: &str,
    default_cluster: &str,
) -> anyhow::Result<Vec<BudgetRow>> {
    let range = (w.end - w.start).max(1);
    let sel = |metric: &str| super::selector(tres, extra).replacen(super::METRIC, metric, 1);
    let budget = prom
        .query(&format!("last_over_time({}[{range}s])", sel(BUDGET)), w.end)
        .await?;
    if budget.is_empty() {
        return Ok(Vec::new());
    }
    let used = prom
        .query(&format!("last_over_time({}[{range}s])", sel(USED)), w.end)
        .await?;
    Ok(rows(&budget, &used, default_cluster))
}

/// The budget block: `Cluster|Account|TRES Name|Budget|Used|Used %`, `|`-separated
/// when `parsable`, aligned otherwise.
pub fn render(rows: &[BudgetRow], unit: Unit, parsable: bool) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let div = match unit {
        Unit::Percent => 3600.0,
        u => u.divisor(),
    };
    let unit_name = if unit == Unit::Percent {
        "Hours"
    } else {
        unit.name()
    };
    let cols = [
        "Cluster",
        "Account",
        "TRES Name",
        "Budget",
        "Used",
        "Used %",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let pct = if r.budget_seconds > 0.0 {
                format!("{:.1}%", 100.0 * r.used_seconds / r.budget_seconds)
            } else {
                "-".to_string()
            };
            [
                r.cluster.clone(),
                r.account.clone(),
                r.tres.clone(),
                format!("{:.0}", r.budget_seconds / div),
                format!("{:.0}", r.used_seconds / div),
                pct,
            ]
        })
        .collect();
    let mut out = format!(
        "\nBudgets for the month (--budgets of the cluster scraper), in TRES {unit_name}\n"
    );
    if parsable {
        out.push_str(&cols.join("|"));
        out.push('\n');
        for c in &cells {
            out.push_str(&c.join("|"));
            out.push('\n');
        }
        return out;
    }
    out.push_str(&super::format::aligned_table(&cols, &cells));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(account: &str, tres: &str, v: f64) -> Series {
        Series {
            labels: [("account", account), ("tres", tres), ("instance", "x")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            samples: vec![(0.0, v)],
        }
    }

    #[test]
    fn budget_rows_and_block() {
        let budget = [
            s("ai_project", "gres/gpu", 9_000_000.0),
            s("hpc_project", "cpu", 3600.0),
        ];
        let used = [
            s("ai_project", "gres/gpu", 4_500_000.0),
            s("nobudget", "gres/gpu", 1.0),
        ];
        let r = rows(&budget, &used, "demo");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].cluster, "demo");
        assert_eq!(r[0].used_seconds, 4_500_000.0);
        assert_eq!(r[1].used_seconds, 0.0);
        let table = render(&r, Unit::Hours, false);
        assert!(table.contains("TRES Hours"));
        assert!(
            table.contains("demo  ai_project  gres/gpu   2500 1250  50.0%"),
            "{table}"
        );
        let p = render(&r, Unit::Hours, true);
        assert!(p.contains("Cluster|Account|TRES Name|Budget|Used|Used %\ndemo|ai_project|gres/gpu|2500|1250|50.0%\n"), "{p}");
        assert_eq!(render(&[], Unit::Hours, true), "");
    }
}
