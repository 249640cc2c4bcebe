//! sreport-shaped output: a `root` row with the cluster total, then per
//! account its subtotal row (empty Login) followed by one row per user,
//! every requested TRES on its own row, as `sreport cluster
//! AccountUtilizationByUser -T ...` prints them. Parent accounts other than
//! root are not printed: the counters carry no account tree.
//!
//! After sreport's columns, when the scraper had them: `Budget` (the
//! account's monthly budget for the row's TRES, on account rows, in the `-t`
//! unit, hours for Percent), `Cost` (money for the row's TRES: gres/gpu, cpu
//! and billing carry prices, other TRES print empty) and `Total Cost` (all
//! priced TRES of the row's account or user), both named with the currency.

use std::collections::{BTreeMap, BTreeSet};

use super::{Format, MonthUsage, Unit, Window};
use crate::cluster::usage::iso_utc;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    pub cluster: String,
    pub account: String,
    pub login: String,
    pub proper_name: String,
    pub tres: String,
    /// As printed in the chosen unit.
    pub used: String,
    pub used_seconds: f64,
    /// Monthly budget as printed (account rows with a budget), else empty.
    pub budget: String,
    pub budget_seconds: Option<f64>,
    /// Money for this row's TRES as printed, empty when it carries no price.
    pub cost: String,
    pub cost_amount: Option<f64>,
    /// Money for all priced TRES of this row's account or user, as printed.
    pub total_cost: String,
    pub total_cost_amount: Option<f64>,
}

fn money(v: f64) -> String {
    format!("{v:.2}")
}

/// cluster -> account -> user -> tres -> value
type Tree = BTreeMap<String, BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>>;

fn tree_of(flat: &super::UsageMap) -> Tree {
    let mut tree = Tree::new();
    for ((cluster, account, user, t), v) in flat {
        *tree
            .entry(cluster.clone())
            .or_default()
            .entry(account.clone())
            .or_default()
            .entry(user.clone())
            .or_default()
            .entry(t.clone())
            .or_default() += v;
    }
    tree
}

/// Columns right-aligned to their widest cell under a line of dashes, as
/// sreport prints them without -P.
pub fn aligned_table<H, R, C>(header: &[H], rows: &[R]) -> String
where
    H: AsRef<str>,
    R: AsRef<[C]>,
    C: AsRef<str>,
{
    let mut width: Vec<usize> = header.iter().map(|c| c.as_ref().chars().count()).collect();
    for r in rows {
        for (i, f) in r.as_ref().iter().enumerate() {
            if let Some(w) = width.get_mut(i) {
                *w = (*w).max(f.as_ref().chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut s = String::new();
        for (c, w) in cells.zip(&width) {
            s.push_str(&format!("{c:>w$} "));
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut header.iter().map(AsRef::as_ref));
    let dashes: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&dashes.join(" "));
    out.push('\n');
    for r in rows {
        out.push_str(&line(&mut r.as_ref().iter().map(AsRef::as_ref)));
    }
    out
}

/// Rows in sreport order.
pub fn rows(usage: &MonthUsage, tres: &[String], unit: Unit) -> Vec<Row> {
    let tree = tree_of(&usage.usage);
    let cost_tree = tree_of(&usage.cost);
    let has_cost = !usage.cost.is_empty();
    let priced = |t: &str| crate::cluster::budgets::PRICED_TRES.contains(&t);
    let budget_div = match unit {
        Unit::Percent => 3600.0,
        u => u.divisor(),
    };
    let mut out = Vec::new();
    for (cluster, accounts) in &tree {
        let empty = BTreeMap::new();
        let costs = cost_tree.get(cluster).unwrap_or(&empty);
        // (account or "" for all, user or "" for all) -> tres -> money
        let cost_of = |account: Option<&str>, user: Option<&str>| -> BTreeMap<String, f64> {
            let mut m: BTreeMap<String, f64> = BTreeMap::new();
            for (a, users) in costs {
                if account.is_some_and(|x| x != a) {
                    continue;
                }
                for (u, per) in users {
                    if user.is_some_and(|x| x != u) {
                        continue;
                    }
                    for (t, v) in per {
                        *m.entry(t.clone()).or_default() += v;
                    }
                }
            }
            m
        };
        let mut cluster_total: BTreeMap<&str, f64> = BTreeMap::new();
        for users in accounts.values() {
            for per in users.values() {
                for (t, v) in per {
                    *cluster_total.entry(t.as_str()).or_default() += v;
                }
            }
        }
        let fmt = |t: &str, secs: f64| -> String {
            match unit {
                Unit::Percent => {
                    let total = cluster_total.get(t).copied().unwrap_or(0.0);
                    let pct = if total > 0.0 {
                        100.0 * secs / total
                    } else {
                        0.0
                    };
                    format!("{pct:.2}%")
                }
                // sreport prints "%.0lf": rounds half to even.
                _ => format!("{}", (secs / unit.divisor()).round_ties_even() as i64),
            }
        };
        let mut push = |account: &str,
                        login: &str,
                        per: &dyn Fn(&str) -> f64,
                        cost: BTreeMap<String, f64>,
                        budget_of: bool| {
            // fold from +0.0: an empty f64 sum is -0.0, printed "-0.00".
            let total = cost.values().fold(0.0, |a, b| a + b);
            for t in tres {
                let secs = per(t);
                let budget_seconds = if budget_of {
                    usage
                        .budgets
                        .get(&(cluster.clone(), account.to_string(), t.clone()))
                        .copied()
                } else {
                    None
                };
                let cost_amount =
                    (has_cost && priced(t)).then(|| cost.get(t).copied().unwrap_or(0.0));
                out.push(Row {
                    cluster: cluster.clone(),
                    account: account.to_string(),
                    login: login.to_string(),
                    proper_name: String::new(),
                    tres: t.clone(),
                    used: fmt(t, secs),
                    used_seconds: secs,
                    budget: budget_seconds
                        .map(|b| format!("{}", (b / budget_div).round_ties_even() as i64))
                        .unwrap_or_default(),
                    budget_seconds,
                    cost: cost_amount.map(money).unwrap_or_default(),
                    cost_amount,
                    total_cost: if has_cost {
                        money(total)
                    } else {
                        String::new()
                    },
                    total_cost_amount: has_cost.then_some(total),
                });
            }
        };
        // root first: the cluster total, then jobs charged to root itself.
        push(
            "root",
            "",
            &|t| cluster_total.get(t).copied().unwrap_or(0.0),
            cost_of(None, None),
            false,
        );
        let mut order: Vec<&String> = accounts.keys().collect();
        order.sort_by_key(|a| (a.as_str() != "root", a.as_str()));
        for account in order {
            let users = &accounts[account];
            if account != "root" {
                push(
                    account,
                    "",
                    &|t| users.values().filter_map(|per| per.get(t)).sum::<f64>(),
                    cost_of(Some(account), None),
                    true,
                );
            }
            let logins: BTreeSet<&String> = users.keys().collect();
            for user in logins {
                let per = &users[user];
                push(
                    account,
                    user,
                    &|t| per.get(t).copied().unwrap_or(0.0),
                    cost_of(Some(account), Some(user)),
                    false,
                );
            }
        }
    }
    out
}

fn header_block(w: &Window, unit: Unit) -> String {
    let line = "-".repeat(80);
    let unit_line = match unit {
        Unit::Percent => "Usage reported in Percentage of Total".to_string(),
        u => format!("Usage reported in TRES {}", u.name()),
    };
    format!(
        "{line}\nCluster/Account/User Utilization {} - {} ({} secs)\n{unit_line}\n{line}\n",
        iso_utc(w.start),
        iso_utc(w.end - 1),
        w.end - w.start
    )
}

const COLUMNS: [&str; 6] = [
    "Cluster",
    "Account",
    "Login",
    "Proper Name",
    "TRES Name",
    "Used",
];

/// Which optional columns the report has, and their headers.
struct Layout {
    budget: bool,
    cost: bool,
    currency: String,
}

impl Layout {
    fn of(usage: &MonthUsage) -> Layout {
        Layout {
            budget: !usage.budgets.is_empty(),
            cost: !usage.cost.is_empty(),
            currency: usage
                .currencies
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("+"),
        }
    }

    fn columns(&self) -> Vec<String> {
        let mut c: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
        if self.budget {
            c.push("Budget".into());
        }
        if self.cost {
            let cur = if self.currency.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.currency)
            };
            c.push(format!("Cost{cur}"));
            c.push(format!("Total Cost{cur}"));
        }
        c
    }

    fn fields<'a>(&self, r: &'a Row) -> Vec<&'a str> {
        let mut f: Vec<&str> = vec![
            &r.cluster,
            &r.account,
            &r.login,
            &r.proper_name,
            &r.tres,
            &r.used,
        ];
        if self.budget {
            f.push(&r.budget);
        }
        if self.cost {
            f.push(&r.cost);
            f.push(&r.total_cost);
        }
        f
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn render(w: &Window, usage: &MonthUsage, tres: &[String], unit: Unit, fmt: Format) -> String {
    let rows = rows(usage, tres, unit);
    let layout = Layout::of(usage);
    let columns = layout.columns();
    let mut out = String::new();
    match fmt {
        Format::Parsable => {
            out.push_str(&header_block(w, unit));
            out.push_str(&columns.join("|"));
            out.push('\n');
            for r in &rows {
                out.push_str(&layout.fields(r).join("|"));
                out.push('\n');
            }
        }
        Format::Table => {
            out.push_str(&header_block(w, unit));
            let cells: Vec<Vec<&str>> = rows.iter().map(|r| layout.fields(r)).collect();
            out.push_str(&aligned_table(&columns, &cells));
        }
        Format::Csv => {
            let head: Vec<String> = columns.iter().map(|s| csv_field(s)).collect();
            out.push_str(&head.join(","));
            out.push('\n');
            for r in &rows {
                let f: Vec<String> = layout.fields(r).iter().map(|s| csv_field(s)).collect();
                out.push_str(&f.join(","));
                out.push('\n');
            }
        }
        Format::Json => {
            let v = serde_json::json!({
                "month": w.month.to_string(),
                "start": format!("{}Z", iso_utc(w.start)),
                "end": format!("{}Z", iso_utc(w.end)),
                "seconds": w.end - w.start,
                "unit": unit.name(),
                "currency": (!layout.currency.is_empty()).then_some(&layout.currency),
                "rows": rows,
                "notes": usage.notes,
            });
            out.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Month;
    use super::*;

    fn usage() -> MonthUsage {
        let mut u = MonthUsage::default();
        for (acc, user, t, v) in [
            ("ai_project", "alice", "gres/gpu", 878.0),
            ("ai_project", "gildong", "gres/gpu", 878.0),
            ("hpc_project", "alice", "gres/gpu", 885.0),
            ("hpc_project", "gildong", "gres/gpu", 439.0),
            ("hpc_project", "gildong", "cpu", 1831.0),
        ] {
            u.usage
                .insert(("rig25".into(), acc.into(), user.into(), t.into()), v);
        }
        u
    }

    fn window() -> Window {
        Window {
            month: Month {
                year: 2026,
                month: 11,
            },
            start: 1_795_370_400,
            end: 1_795_374_000,
        }
    }

    #[test]
    fn parsable_matches_sreport_layout() {
        let out = render(
            &window(),
            &usage(),
            &["gres/gpu".to_string()],
            Unit::Minutes,
            Format::Parsable,
        );
        // The rows of the recorded sreport (-t Minutes -T gres/gpu), less
        // research_dept (a parent account the counters cannot know).
        let want = "\
--------------------------------------------------------------------------------
Cluster/Account/User Utilization 2026-11-22T18:00:00 - 2026-11-22T18:59:59 (3600 secs)
Usage reported in TRES Minutes
--------------------------------------------------------------------------------
Cluster|Account|Login|Proper Name|TRES Name|Used
rig25|root|||gres/gpu|51
rig25|ai_project|||gres/gpu|29
rig25|ai_project|alice||gres/gpu|15
rig25|ai_project|gildong||gres/gpu|15
rig25|hpc_project|||gres/gpu|22
rig25|hpc_project|alice||gres/gpu|15
rig25|hpc_project|gildong||gres/gpu|7
";
        assert_eq!(out, want);
    }

    #[test]
    fn other_formats() {
        let tres = ["cpu".to_string(), "gres/gpu".to_string()];
        let t = render(&window(), &usage(), &tres, Unit::Seconds, Format::Table);
        assert!(
            t.contains(
                "Cluster     Account   Login Proper Name TRES Name Used\n------- -----------"
            ),
            "{t}"
        );
        assert!(
            t.contains("  rig25 hpc_project gildong                   cpu 1831\n"),
            "{t}"
        );
        let c = render(&window(), &usage(), &tres, Unit::Hours, Format::Csv);
        assert!(
            c.starts_with("Cluster,Account,Login,Proper Name,TRES Name,Used\nrig25,root,,,cpu,1\n"),
            "{c}"
        );
        let p = render(&window(), &usage(), &tres, Unit::Percent, Format::Parsable);
        assert!(p.contains("rig25|root|||gres/gpu|100.00%"), "{p}");
        assert!(
            p.contains("rig25|hpc_project|gildong||gres/gpu|14.25%"),
            "{p}"
        );
        let j = render(&window(), &usage(), &tres, Unit::Hours, Format::Json);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["rows"][0]["tres"], "cpu");
        assert_eq!(v["rows"].as_array().unwrap().len(), 14);
    }

    #[test]
    fn budget_and_cost_columns() {
        let mut u = usage();
        // GPU-seconds × 12.29 / 3600 and CPU-seconds × 0.05 / 3600.
        for (acc, user, t, v) in [
            ("ai_project", "alice", "gres/gpu", 878.0 * 12.29 / 3600.0),
            ("ai_project", "gildong", "gres/gpu", 878.0 * 12.29 / 3600.0),
            ("hpc_project", "gildong", "gres/gpu", 439.0 * 12.29 / 3600.0),
            ("hpc_project", "gildong", "cpu", 1831.0 * 0.05 / 3600.0),
        ] {
            u.cost
                .insert(("rig25".into(), acc.into(), user.into(), t.into()), v);
        }
        u.currencies.insert("USD".into());
        u.budgets.insert(
            ("rig25".into(), "ai_project".into(), "gres/gpu".into()),
            7200.0,
        );
        let tres = ["gres/gpu".to_string(), "mem".to_string()];
        let p = render(&window(), &u, &tres, Unit::Seconds, Format::Parsable);
        assert!(
            p.contains("Cluster|Account|Login|Proper Name|TRES Name|Used|Budget|Cost (USD)|Total Cost (USD)\n"),
            "{p}"
        );
        // The account row carries the budget; cost is the row's TRES, total all priced TRES.
        assert!(
            p.contains("rig25|ai_project|||gres/gpu|1756|7200|5.99|5.99\n"),
            "{p}"
        );
        assert!(
            p.contains("rig25|hpc_project|gildong||gres/gpu|439||1.50|1.52\n"),
            "{p}"
        );
        // mem carries no price: empty Cost, the Total still shown.
        assert!(
            p.contains("rig25|hpc_project|gildong||mem|0|||1.52\n"),
            "{p}"
        );
        // alice in hpc_project has usage but no cost series: 0.00.
        assert!(
            p.contains("rig25|hpc_project|alice||gres/gpu|885||0.00|0.00\n"),
            "{p}"
        );
        assert!(p.contains("rig25|root|||gres/gpu|3080||7.49|7.52\n"), "{p}");
        let j = render(&window(), &u, &tres, Unit::Hours, Format::Json);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["currency"], "USD");
        let row = &v["rows"][2];
        assert_eq!(row["account"], "ai_project");
        assert_eq!(row["budget"], "2");
        assert_eq!(row["budget_seconds"], 7200.0);
        assert_eq!(row["cost_amount"], 2.0 * 878.0 * 12.29 / 3600.0);
        let c = render(&window(), &u, &tres, Unit::Hours, Format::Csv);
        assert!(c.starts_with("Cluster,Account,Login,Proper Name,TRES Name,Used,Budget,Cost (USD),Total Cost (USD)\n"), "{c}");
        let t = render(&window(), &u, &tres, Unit::Hours, Format::Table);
        assert!(t.contains("Budget Cost (USD) Total Cost (USD)"), "{t}");
    }
}
