//! Metric families built by collectors, and their encoding.
//!
//! Collectors fill a [`MetricSet`] on their own schedule; the set is encoded
//! once per collection into both exposition formats and served from memory,
//! so a scrape never triggers work against Slurm or the GPUs.
//!
//! OpenMetrics is encoded by `prometheus-client`. That crate speaks only
//! OpenMetrics, so the classic Prometheus text format (0.0.4), which
//! `promtool check metrics` and older scrapers read, is encoded here.

use std::collections::HashMap;
use std::fmt::Write as _;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    /// Family name must end in `_total`.
    Counter,
    /// Family name must end in `_info`; every value is 1.
    Info,
}

pub type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Labels, f64)>,
}

/// An ordered set of metric families. Adding to a family name twice appends
/// to the same family, so collectors can emit samples in any order.
///
/// The families sit behind an `Arc` (copied on write), so the clone that
/// OpenMetrics encoding hands to `prometheus-client` costs nothing: at 10k
/// nodes / 100k jobs the set is ~50 MiB.
#[derive(Debug, Clone, Default)]
pub struct MetricSet {
    families: std::sync::Arc<Vec<Family>>,
    index: HashMap<&'static str, usize>,
}

impl MetricSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a family (so it is exposed with HELP/TYPE even when empty)
    /// and returns it for adding samples.
    pub fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut Family {
        debug_assert!(kind != Kind::Counter || name.ends_with("_total"), "{name}");
        debug_assert!(kind != Kind::Info || name.ends_with("_info"), "{name}");
        let idx = match self.index.get(name) {
            Some(&i) => i,
            None => {
                let families = std::sync::Arc::make_mut(&mut self.families);
                families.push(Family {
                    name,
                    help,
                    kind,
                    samples: Vec::new(),
                });
                self.index.insert(name, families.len() - 1);
                families.len() - 1
            }
        };
        &mut std::sync::Arc::make_mut(&mut self.families)[idx]
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: Labels, value: f64) {
        self.family(name, help, Kind::Gauge)
            .samples
            .push((labels, value));
    }

    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: Labels, value: f64) {
        self.family(name, help, Kind::Counter)
            .samples
            .push((labels, value));
    }

    pub fn info(&mut self, name: &'static str, help: &'static str, labels: Labels) {
        self.family(name, help, Kind::Info)
            .samples
            .push((labels, 1.0));
    }

    /// Appends every family of `other`, merging families of the same name.
    pub fn extend(&mut self, other: MetricSet) {
        let families =
            std::sync::Arc::try_unwrap(other.families).unwrap_or_else(|shared| (*shared).clone());
        for f in families {
            let (name, help, kind) = (f.name, f.help, f.kind);
            self.family(name, help, kind).samples.extend(f.samples);
        }
    }

    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// The value of the sample whose labels include all of `labels`, when
    /// exactly one does. For tests and the CLI-equality checks.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let fam = self.families.iter().find(|f| f.name == name)?;
        let mut found = fam.samples.iter().filter(|(ls, _)| {
            labels
                .iter()
                .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
        });
        let first = found.next()?;
        if found.next().is_some() {
            return None;
        }
        Some(first.1)
    }

    /// Sum over all samples whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.families
            .iter()
            .filter(|f| f.name == name)
            .flat_map(|f| f.samples.iter())
            .filter(|(ls, _)| {
                labels
                    .iter()
                    .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// Classic Prometheus text format, version 0.0.4.
    pub fn encode_text(&self) -> String {
        let mut out = String::with_capacity(self.estimated_size());
        for f in self.families.iter() {
            let type_name = match f.kind {
                Kind::Gauge | Kind::Info => "gauge",
                Kind::Counter => "counter",
            };
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, type_name);
            for (labels, value) in &f.samples {
                out.push_str(f.name);
                write_labels(&mut out, labels);
                out.push(' ');
                write_value(&mut out, *value);
                out.push('\n');
            }
        }
        // The estimate is generous; the snapshot is kept until the next poll.
        out.shrink_to_fit();
        out
    }

    /// OpenMetrics 1.0 text, through `prometheus-client`.
    pub fn encode_openmetrics(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(SetCollector(self.clone())));
        let mut out = String::with_capacity(self.estimated_size());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out.shrink_to_fit();
        out
    }

    fn estimated_size(&self) -> usize {
        self.families
            .iter()
            .map(|f| 128 + f.samples.len() * (f.name.len() + 96))
            .sum()
    }
}

#[derive(Debug)]
struct SetCollector(MetricSet);

impl Collector for SetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in self.0.families.iter() {
            // prometheus-client appends `_total` / `_info` itself.
            let (base, metric_type) = match f.kind {
                Kind::Gauge => (f.name, MetricType::Gauge),
                Kind::Counter => (
                    f.name.strip_suffix("_total").unwrap_or(f.name),
                    MetricType::Counter,
                ),
                Kind::Info => (
                    f.name.strip_suffix("_info").unwrap_or(f.name),
                    MetricType::Info,
                ),
            };
            let mut metric = encoder.encode_descriptor(base, f.help, None, metric_type)?;
            for (labels, value) in &f.samples {
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                // An empty label set is encoded without braces.
                match (f.kind, labels.is_empty()) {
                    (Kind::Gauge, true) => metric.encode_gauge(value)?,
                    (Kind::Gauge, false) => metric.encode_family(&labels)?.encode_gauge(value)?,
                    (Kind::Counter, true) => {
                        metric.encode_counter::<Vec<(&str, &str)>, f64, f64>(value, None)?
                    }
                    (Kind::Counter, false) => metric
                        .encode_family(&labels)?
                        .encode_counter::<Vec<(&str, &str)>, f64, f64>(value, None)?,
                    (Kind::Info, _) => metric.encode_info(&labels)?,
                }
            }
        }
        Ok(())
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn write_labels(out: &mut String, labels: &Labels) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetricSet {
        let mut s = MetricSet::new();
        s.gauge("a_ratio", "A ratio.", vec![("x", "q\"\\\n".into())], 0.5);
        s.counter("b_total", "B.", vec![], 3.0);
        s.info("c_info", "C.", vec![("v", "1".into())]);
        s.family("empty_bytes", "Empty.", Kind::Gauge);
        s
    }

    #[test]
    fn classic_text_escapes_and_types() {
        let t = sample().encode_text();
        assert!(t.contains("# TYPE a_ratio gauge\na_ratio{x=\"q\\\"\\\\\\n\"} 0.5\n"));
        assert!(t.contains("# TYPE b_total counter\nb_total 3\n"));
        assert!(t.contains("# TYPE c_info gauge\nc_info{v=\"1\"} 1\n"));
        assert!(t.contains("# HELP empty_bytes Empty.\n# TYPE empty_bytes gauge\n"));
    }

    #[test]
    fn openmetrics_has_eof_and_suffixes() {
        let t = sample().encode_openmetrics();
        assert!(t.contains("# TYPE b counter\nb_total 3.0\n"), "{t}");
        assert!(t.contains("# TYPE c info\nc_info{v=\"1\"} 1"), "{t}");
        assert!(t.ends_with("# EOF\n"), "{t}");
    }

    #[test]
    fn value_lookup_requires_unique_match() {
        let mut s = MetricSet::new();
        s.gauge("g", "G.", vec![("a", "1".into()), ("b", "x".into())], 1.0);
        s.gauge("g", "G.", vec![("a", "1".into()), ("b", "y".into())], 2.0);
        assert_eq!(s.value("g", &[("b", "y")]), Some(2.0));
        assert_eq!(s.value("g", &[("a", "1")]), None);
        assert_eq!(s.sum("g", &[("a", "1")]), 3.0);
    }
}
