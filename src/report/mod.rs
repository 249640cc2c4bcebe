//! `report`: a month of `slurm_account_tres_usage_seconds_total` from any
//! Prometheus-compatible query API, printed with the columns of
//! `sreport cluster AccountUtilizationByUser` (`Cluster|Account|Login|Proper Name|TRES Name|Used`).
//!
//! Per series, the month's usage is `value at month end − value at month
//! start`, both read with `last_over_time` so scrape gaps do not matter (the
//! counter is cumulative and persisted, so a gap loses nothing). No
//! `increase()`: its extrapolation at the window edges is not exact. Series
//! with counter resets in the month (a scraper restart without its state
//! file) are recomputed from their raw samples.
//!
//! Money and budgets: `slurm_account_tres_cost_total` (usage × the price
//! table, credited with the usage) goes through the same arithmetic, so the
//! Cost columns are exactly the month's usage × price; the Budget column is
//! `slurm_account_budget_seconds` at the window's end. Both columns appear
//! only when the scraper had prices or budgets.

pub mod budget;
pub mod format;
pub mod job;
pub mod prom;

use std::collections::BTreeMap;

use anyhow::Context as _;

use crate::cluster::usage::{iso_utc, month_bounds};
use prom::{PromOptions, Prometheus, Series};

pub const METRIC: &str = "slurm_account_tres_usage_seconds_total";
pub const COST_METRIC: &str = "slurm_account_tres_cost_total";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i64,
    pub month: u32,
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

pub fn parse_month(s: &str) -> Result<Month, String> {
    let bad = || format!("invalid month {s:?} (use YYYY-MM, e.g. 2026-10)");
    let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
    let year: i64 = y.parse().map_err(|_| bad())?;
    let month: u32 = m.parse().map_err(|_| bad())?;
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || y.len() != 4 {
        return Err(bad());
    }
    Ok(Month { year, month })
}

/// sreport's `-t`: Seconds, Minutes, Hours or Percent (of the cluster total).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Minutes,
    Hours,
    Percent,
}

impl Unit {
    pub fn divisor(self) -> f64 {
        match self {
            Unit::Seconds | Unit::Percent => 1.0,
            Unit::Minutes => 60.0,
            Unit::Hours => 3600.0,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Unit::Seconds => "Seconds",
            Unit::Minutes => "Minutes",
            Unit::Hours => "Hours",
            Unit::Percent => "Percent",
        }
    }
}

pub fn parse_unit(s: &str) -> Result<Unit, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => Ok(Unit::Seconds),
        "m" | "min" | "mins" | "minute" | "minutes" => Ok(Unit::Minutes),
        "h" | "hour" | "hours" => Ok(Unit::Hours),
        "p" | "per" | "percent" => Ok(Unit::Percent),
        _ => Err(format!(
            "invalid time format {s:?} (use Hours, Minutes, Seconds or Percent)"
        )),
    }
}

/// Output format (`--format`; its value list: `crate::cli::report`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns, as sreport prints without -P.
    Table,
    /// `|`-separated, as `sreport -P` prints.
    Parsable,
    Csv,
    Json,
}

/// What `report` (the month) prints, built by the CLI layer
/// (`crate::cli::report::ReportArgs`).
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The query API; it must hold the whole month. Its selector picks one
    /// scraper's series.
    pub prom: PromOptions,
    /// Calendar month (UTC) to report.
    pub month: Month,
    /// TRES to report, as sreport names them.
    pub tres: Vec<String>,
    /// Unit of Used (sreport's -t).
    pub unit: Unit,
    pub format: Format,
    /// Same as `format: Parsable` (sreport's -P).
    pub parsable: bool,
    /// Cluster name for the Cluster column when series carry no `cluster` label.
    pub cluster: String,
}

/// The query answers the month's usage is computed from.
#[derive(Debug, Default)]
pub struct Inputs {
    /// `last_over_time(M[31d])` at the month start: each series' baseline.
    pub start: Vec<Series>,
    /// `last_over_time(M[month])` at the month end.
    pub end: Vec<Series>,
    /// `resets(M[month])` at the month end.
    pub resets: Vec<Series>,
    /// Raw samples in the month of the series that reset, by series key.
    pub raw: BTreeMap<String, Vec<(f64, f64)>>,
}

/// Labels that tell copies of one counter apart when two cluster scrapers of
/// one cluster (or two Prometheus replicas the store did not deduplicate)
/// export it: the scrape target's and the replica's, never Slurm's.
pub const REPLICA_LABELS: &[&str] = &[
    "instance",
    "pod",
    "pod_name",
    "kubernetes_pod_name",
    "prometheus_replica",
    "replica",
    "__replica__",
];

/// (cluster, account, user, tres) -> TRES-seconds in the month.
pub type UsageMap = BTreeMap<(String, String, String, String), f64>;

#[derive(Debug, Default)]
pub struct MonthUsage {
    pub usage: UsageMap,
    /// Money in the month per (cluster, account, user, priced TRES), from the
    /// cost counter; empty when the scraper had no prices.
    pub cost: UsageMap,
    /// The cost series' `currency` labels (one, unless the price table changed it).
    pub currencies: std::collections::BTreeSet<String>,
    /// (cluster, account, tres) -> monthly budget in TRES-seconds.
    pub budgets: BTreeMap<(String, String, String), f64>,
    pub notes: Vec<String>,
}

/// `v` to 12 significant digits. The engines store a sample differently
/// (Prometheus as a binary float64, VictoriaMetrics as a decimal mantissa and
/// exponent), so a window's difference can differ in its last bits, and a
/// value on a tie of the printed precision (19,260 GPU-seconds at 4.10 per
/// GPU-hour = 21.935) would round to 21.93 on one engine and 21.94 on the
/// other. Both agree far beyond 12 digits (a millisecond in 30 years).
pub fn snap(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 12 - v.abs().log10().ceil() as i32;
    let scale = 10f64.powi(digits);
    let r = (v * scale).round() / scale;
    if r.is_finite() {
        r
    } else {
        v
    }
}

/// Increase of one series from `baseline` through `samples`, a drop being a
/// counter reset (the counter restarted from zero).
pub fn increase_with_resets(baseline: f64, samples: &[(f64, f64)]) -> f64 {
    let mut prev = baseline;
    let mut total = 0.0;
    for &(_, v) in samples {
        if !v.is_finite() {
            continue;
        }
        total += if v >= prev { v - prev } else { v };
        prev = v;
    }
    total
}

/// The month's usage per (cluster, account, user, tres) from the query answers.
pub fn month_usage(inp: &Inputs, default_cluster: &str) -> MonthUsage {
    let start: BTreeMap<String, f64> = inp
        .start
        .iter()
        .filter_map(|s| Some((s.key(), s.value()?)))
        .collect();
    let resets: BTreeMap<String, f64> = inp
        .resets
        .iter()
        .filter_map(|s| Some((s.key(), s.value()?)))
        .collect();
    let mut out = MonthUsage::default();
    let mut reset_series = 0;
    // Series without their target labels -> (labels, usage, copies).
    let mut once: BTreeMap<String, (BTreeMap<String, String>, f64, usize)> = BTreeMap::new();
    for s in &inp.end {
        let Some(end) = s.value().filter(|v| v.is_finite()) else {
            continue;
        };
        let key = s.key();
        // No sample before the month: the series began in it, at zero.
        let baseline = start.get(&key).copied().unwrap_or(0.0);
        let n_resets = resets.get(&key).copied().unwrap_or(0.0);
        let used = match inp.raw.get(&key) {
            Some(samples) if n_resets > 0.0 => {
                reset_series += 1;
                increase_with_resets(baseline, samples)
            }
            _ if end >= baseline => end - baseline,
            // A drop without raw samples: count what the new counter shows.
            _ => {
                reset_series += 1;
                end
            }
        };
        let used = snap(used);
        // The same counter from two scrapers (or two un-deduplicated
        // Prometheus replicas) differs only in target labels: count it once.
        let mut same = s.labels.clone();
        same.retain(|k, _| !REPLICA_LABELS.contains(&k.as_str()));
        let e = once
            .entry(format!("{same:?}"))
            .or_insert_with(|| (same, 0.0, 0));
        e.1 = f64::max(e.1, used);
        e.2 += 1;
    }
    let mut duplicated = 0;
    for (labels, used, copies) in once.into_values() {
        if copies > 1 {
            duplicated += 1;
        }
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let cluster = Some(label("cluster"))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| default_cluster.to_string());
        *out.usage
            .entry((cluster, label("account"), label("user"), label("tres")))
            .or_default() += used;
    }
    if duplicated > 0 {
        out.notes.push(format!(
            "{duplicated} series came from more than one scraper or Prometheus replica (they differ only in {}): each is counted once, the copy with the largest usage; run one cluster scraper per cluster and deduplicate replicas in the store (docs/long-term-storage.md#high-availability)",
            REPLICA_LABELS.join("/")
        ));
    }
    if reset_series > 0 {
        out.notes.push(format!(
            "{reset_series} series had counter resets in the month (the scraper restarted without its --usage-state-file); usage between the last scrape before a reset and the reset is not in this report"
        ));
    }
    if inp.start.is_empty() && !inp.end.is_empty() {
        out.notes.push("no samples in the 31 days before the month start: every series counts from zero, which is right if the scraper started this month; otherwise this query API does not hold the month's start".to_string());
    }
    out
}

/// Escapes a PromQL string literal's content.
fn promql_str(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A regex alternative matching `s` literally, as a PromQL string's content.
fn regex_literal(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    promql_str(&out)
}

/// The series selector for the requested TRES and extra matchers.
pub fn selector(tres: &[String], extra: &str) -> String {
    metric_selector(METRIC, tres, extra)
}

/// [`selector`] for another metric with the same labels.
pub fn metric_selector(metric: &str, tres: &[String], extra: &str) -> String {
    let alts: Vec<String> = tres.iter().map(|t| regex_literal(t)).collect();
    let extra = extra
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim();
    let mut s = format!("{metric}{{tres=~\"{}\"", alts.join("|"));
    if !extra.is_empty() {
        s.push(',');
        s.push_str(extra);
    }
    s.push('}');
    s
}

fn exact_selector(metric: &str, labels: &BTreeMap<String, String>) -> String {
    let m: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", promql_str(v)))
        .collect();
    format!("{metric}{{{}}}", m.join(","))
}

/// The extra headers for the query API: `--header`s and the bearer token,
/// marked sensitive so they are never logged (shared by `job-report`).
pub fn query_headers(
    headers: &[String],
    bearer_token_file: Option<&std::path::Path>,
) -> anyhow::Result<Vec<(http::HeaderName, http::HeaderValue)>> {
    let mut out = Vec::new();
    for h in headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?}: use `Name: value`"))?;
        let name = http::HeaderName::from_bytes(k.trim().as_bytes())
            .with_context(|| format!("--header {h:?}: bad header name"))?;
        let mut value = http::HeaderValue::from_str(v.trim())
            .with_context(|| format!("--header {h:?}: bad header value"))?;
        value.set_sensitive(true);
        out.push((name, value));
    }
    if let Some(p) = bearer_token_file {
        let t = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read --bearer-token-file {p:?}"))?;
        let mut value = http::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
            .context("--bearer-token-file holds characters not allowed in a header")?;
        value.set_sensitive(true);
        out.push((http::header::AUTHORIZATION, value));
    }
    Ok(out)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What the report covers.
#[derive(Debug, Clone)]
pub struct Window {
    pub month: Month,
    pub start: i64,
    /// Month end, or now for the month in progress.
    pub end: i64,
}

/// Queries the month and returns its usage; `now` bounds a month in progress.
pub async fn fetch(
    prom: &Prometheus,
    month: Month,
    tres: &[String],
    extra: &str,
    default_cluster: &str,
    now: i64,
) -> anyhow::Result<(Window, MonthUsage)> {
    let (m0, m1) = month_bounds(month.year, month.month);
    if m0 >= now {
        anyhow::bail!("month {month} has not started yet");
    }
    let end = m1.min(now);
    let window = Window {
        month,
        start: m0,
        end,
    };
    let sel = selector(tres, extra);
    let Some(inp) = month_inputs(prom, METRIC, tres, extra, &window).await? else {
        anyhow::bail!(
            "no {sel} samples between {}Z and {}Z in {}: this query API does not hold month {month} (point --prometheus at the long-term store: Thanos Query, Mimir, VictoriaMetrics), or --tres/--selector match nothing",
            iso_utc(m0),
            iso_utc(end),
            prom.url
        );
    };
    let mut usage = month_usage(&inp, default_cluster);
    // Money: every priced TRES (the Total Cost column needs them all).
    let priced: Vec<String> = crate::cluster::budgets::PRICED_TRES
        .iter()
        .map(|t| t.to_string())
        .collect();
    if let Some(cost) = month_inputs(prom, COST_METRIC, &priced, extra, &window).await? {
        usage.currencies = cost
            .end
            .iter()
            .filter_map(|s| s.labels.get("currency").cloned())
            .collect();
        let c = month_usage(&cost, default_cluster);
        usage.cost = c.usage;
        for n in c.notes {
            if !usage.notes.contains(&n) {
                usage.notes.push(format!("cost: {n}"));
            }
        }
        if usage.currencies.len() > 1 {
            usage.notes.push(format!(
                "the cost counters carry several currencies ({}): the Cost columns add them up; report each with --selector 'currency=\"...\"'",
                usage.currencies.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for r in budget::fetch(prom, &window, tres, extra, default_cluster).await? {
        usage
            .budgets
            .insert((r.cluster, r.account, r.tres), r.budget_seconds);
    }
    if end < m1 {
        usage.notes.push(format!(
            "month {month} is in progress: usage up to {}Z",
            iso_utc(end)
        ));
    }
    Ok((window, usage))
}

/// The query answers for one counter over the window, `None` when the
/// window holds no sample of it.
async fn month_inputs(
    prom: &Prometheus,
    metric: &str,
    tres: &[String],
    extra: &str,
    window: &Window,
) -> anyhow::Result<Option<Inputs>> {
    let sel = metric_selector(metric, tres, extra);
    let (m0, end) = (window.start, window.end);
    let range = end - m0;
    let mut inp = Inputs {
        end: prom
            .query(&format!("last_over_time({sel}[{range}s])"), end)
            .await?,
        ..Default::default()
    };
    if inp.end.is_empty() {
        return Ok(None);
    }
    inp.start = prom
        .query(&format!("last_over_time({sel}[31d])"), m0)
        .await?;
    inp.resets = prom.query(&format!("resets({sel}[{range}s])"), end).await?;
    for s in &inp.resets {
        if s.value().unwrap_or(0.0) > 0.0 {
            // Rare (a restart without the state file): fetch just this series raw.
            let raw = prom
                .query(
                    &format!("{}[{range}s]", exact_selector(metric, &s.labels)),
                    end,
                )
                .await?;
            if let Some(r) = raw.into_iter().next() {
                inp.raw.insert(s.key(), r.samples);
            }
        }
    }
    Ok(Some(inp))
}

pub async fn run(args: ReportOptions) -> anyhow::Result<()> {
    let prom = args.prom.connect()?;
    let tres: Vec<String> = args
        .tres
        .iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if tres.is_empty() {
        anyhow::bail!("--tres is empty");
    }
    let (window, usage) = fetch(
        &prom,
        args.month,
        &tres,
        &args.prom.selector,
        &args.cluster,
        unix_now(),
    )
    .await?;
    let fmt = if args.parsable {
        Format::Parsable
    } else {
        args.format
    };
    let mut out = format::render(&window, &usage, &tres, args.unit, fmt);
    if matches!(fmt, Format::Table | Format::Parsable) {
        let budgets =
            budget::fetch(&prom, &window, &tres, &args.prom.selector, &args.cluster).await?;
        out.push_str(&budget::render(
            &budgets,
            args.unit,
            fmt == Format::Parsable,
        ));
    }
    print!("{out}");
    if fmt != Format::Json {
        for n in &usage.notes {
            eprintln!("note: {n}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(f64, f64)]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn months_and_units() {
        assert_eq!(
            parse_month("2026-10").unwrap(),
            Month {
                year: 2026,
                month: 10
            }
        );
        assert!(parse_month("2026-13").is_err());
        assert!(parse_month("26-10").is_err());
        assert!(parse_month("october").is_err());
        assert_eq!(parse_unit("Hours").unwrap(), Unit::Hours);
        assert_eq!(parse_unit("percent").unwrap(), Unit::Percent);
        assert!(parse_unit("days").is_err());
    }

    #[test]
    fn selectors_escape() {
        assert_eq!(
            selector(&["gres/gpu".into(), "gres/gpu:a100.80gb".into()], "{job=\"s\"}"),
            "slurm_account_tres_usage_seconds_total{tres=~\"gres/gpu|gres/gpu:a100\\\\.80gb\",job=\"s\"}"
        );
        let l: BTreeMap<String, String> = [("user".to_string(), "a\"b".to_string())].into();
        assert_eq!(
            exact_selector(METRIC, &l),
            "slurm_account_tres_usage_seconds_total{user=\"a\\\"b\"}"
        );
    }

    #[test]
    fn usage_from_start_end_and_resets() {
        let a = [
            ("account", "ai"),
            ("user", "bob"),
            ("partition", "gpu"),
            ("tres", "gres/gpu"),
        ];
        let b = [
            ("account", "ai"),
            ("user", "bob"),
            ("partition", "cpu"),
            ("tres", "gres/gpu"),
        ];
        let c = [
            ("account", "hpc"),
            ("user", "eve"),
            ("partition", "gpu"),
            ("tres", "gres/gpu"),
            ("cluster", "rig"),
        ];
        let inp = Inputs {
            start: vec![series(&a, &[(0.0, 1000.0)]), series(&b, &[(0.0, 50.0)])],
            end: vec![
                series(&a, &[(9.0, 4600.0)]),
                series(&b, &[(9.0, 30.0)]),
                series(&c, &[(9.0, 700.0)]),
            ],
            resets: vec![series(&b, &[(9.0, 1.0)])],
            // b: 50 -> 80 -> 90 | reset | 10 -> 30: 40 + 30 = 70.
            raw: [(
                series(&b, &[]).key(),
                vec![(1.0, 80.0), (2.0, 90.0), (3.0, 10.0), (4.0, 30.0)],
            )]
            .into(),
        };
        let u = month_usage(&inp, "c1");
        let k = |cl: &str, acc: &str, user: &str| {
            (
                cl.to_string(),
                acc.to_string(),
                user.to_string(),
                "gres/gpu".to_string(),
            )
        };
        assert_eq!(u.usage[&k("c1", "ai", "bob")], 3600.0 + 70.0);
        // A series new in the month counts from zero.
        assert_eq!(u.usage[&k("rig", "hpc", "eve")], 700.0);
        assert_eq!(u.notes.len(), 1, "{:?}", u.notes);
        assert!(u.notes[0].contains("counter resets"));
    }

    #[test]
    fn snapped_values_agree_across_engines() {
        // The same cost as Prometheus and VictoriaMetrics returned it.
        let (prom, vm) = (21.934999999999995_f64, 21.935000000000002_f64);
        assert_ne!(format!("{prom:.2}"), format!("{vm:.2}"));
        assert_eq!(snap(prom), snap(vm));
        assert_eq!(format!("{:.2}", snap(prom)), format!("{:.2}", snap(vm)));
        assert_eq!(snap(1234.5), 1234.5);
        assert_eq!(snap(0.0), 0.0);
        assert_eq!(snap(123_456_789_012_345.0), 123_456_789_012_000.0);
        assert!(snap(f64::NAN).is_nan());
        assert_eq!(snap(-2.5e-7), -2.5e-7);
    }

    #[test]
    fn copies_from_two_scrapers_count_once() {
        let l = |inst: &'static str, user: &'static str| {
            [
                ("account", "ai"),
                ("user", user),
                ("partition", "gpu"),
                ("tres", "gres/gpu"),
                ("cluster", "c1"),
                ("instance", inst),
            ]
        };
        // Two scraper replicas credit the same usage (one started later:
        // its copy is smaller); bob has one scraper only.
        let inp = Inputs {
            start: vec![
                series(&l("a:9342", "eve"), &[(0.0, 100.0)]),
                series(&l("b:9342", "eve"), &[(0.0, 40.0)]),
            ],
            end: vec![
                series(&l("a:9342", "eve"), &[(9.0, 1100.0)]),
                series(&l("b:9342", "eve"), &[(9.0, 1000.0)]),
                series(&l("a:9342", "bob"), &[(9.0, 50.0)]),
            ],
            ..Default::default()
        };
        let u = month_usage(&inp, "");
        let k = |user: &str| {
            (
                "c1".to_string(),
                "ai".to_string(),
                user.to_string(),
                "gres/gpu".to_string(),
            )
        };
        assert_eq!(u.usage[&k("eve")], 1000.0, "not 1000 + 960");
        assert_eq!(u.usage[&k("bob")], 50.0);
        assert!(
            u.notes
                .iter()
                .any(|n| n.starts_with("1 series came from more than one scraper")),
            "{:?}",
            u.notes
        );
    }

    #[test]
    fn increase_handles_resets_and_nan() {
        assert_eq!(
            increase_with_resets(5.0, &[(1.0, 7.0), (2.0, f64::NAN), (3.0, 2.0), (4.0, 3.0)]),
            2.0 + 2.0 + 1.0
        );
    }
}
