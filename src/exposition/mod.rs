//! Metric families built by collectors, and their encoding.
//!
//! Collectors fill a [`MetricSet`] on their own schedule; the set is encoded
//! once per collection into both exposition formats and served from memory,
//! so a scrape never triggers work against Slurm or the GPUs.
//!
//! OpenMetrics is encoded by `prometheus-client`. That crate speaks only
//! OpenMetrics, so the classic Prometheus text format (0.0.4), which
//! `promtool check metrics` and older scrapers read, is encoded here.
//!
//! Both encoders write to any `io::Write` (the server hands them a gzip
//! stream), so no plain-text copy of a large snapshot is ever held.
//! Each sample keeps its labels pre-rendered as one string: at 10k nodes /
//! 100k jobs a set holds ~265k samples, and one allocation per sample
//! instead of one per label value is most of the set's memory.

pub mod snapshot;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel as _, EncodeLabelSet, LabelSetEncoder,
};
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

/// What a metric family is, declared once as constant data next to the
/// collector that emits it (`pub const GPU_POWER: MetricDesc = ...`), so a
/// name and its help text are written in one place and every family can be
/// listed (`tests/metric_names/docs.rs` checks them against docs/metrics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDesc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Label names, in the order every sample carries them.
    pub labels: &'static [&'static str],
}

/// A self-metric family that says whether one data source answered (a
/// slurmrestd endpoint, a node collector). The producer that emits it marks
/// it on its set ([`MetricSet::mark_health`]); the snapshot store reads it
/// for `/readyz` and the landing page.
#[derive(Debug)]
pub struct HealthFamily {
    /// 1 when the source's last poll or collection succeeded.
    pub up: &'static MetricDesc,
    /// The label naming the source.
    pub label: &'static str,
    /// Shown before the source's name, e.g. `slurmrestd `.
    pub prefix: &'static str,
    /// 1 when the source failed but its last good data is served.
    pub stale: Option<&'static MetricDesc>,
}

#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// One sample: its labels rendered as in the text formats, without braces
/// (`a="x",b="y\"z"`; the escaping of 0.0.4 and OpenMetrics is the same),
/// and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    labels: Box<str>,
    pub value: f64,
}

impl Sample {
    pub fn new(labels: &Labels, value: f64) -> Self {
        let mut out = String::with_capacity(
            labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>(),
        );
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
        Sample {
            labels: out.into_boxed_str(),
            value,
        }
    }

    /// The labels as the text formats write them between the braces.
    pub fn rendered_labels(&self) -> &str {
        &self.labels
    }

    /// (name, unescaped value) pairs, in order.
    pub fn labels(&self) -> LabelPairs<'_> {
        LabelPairs(&self.labels)
    }

    pub fn label(&self, name: &str) -> Option<Cow<'_, str>> {
        self.labels().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    fn has_labels(&self, want: &[(&str, &str)]) -> bool {
        want.iter()
            .all(|(k, v)| self.labels().any(|(lk, lv)| lk == *k && lv == *v))
    }
}

/// Iterator over a sample's rendered labels; see [`Sample::labels`].
#[derive(Debug, Clone)]
pub struct LabelPairs<'a>(&'a str);

impl<'a> Iterator for LabelPairs<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.0.strip_prefix(',').unwrap_or(self.0);
        let (key, rest) = rest.split_once("=\"")?;
        // The value ends at the first quote not preceded by an escape.
        let bytes = rest.as_bytes();
        let mut i = 0;
        let mut escaped = false;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                b'"' => break,
                _ => i += 1,
            }
        }
        let i = i.min(rest.len());
        let raw = &rest[..i];
        self.0 = rest.get(i + 1..).unwrap_or("");
        let value = if escaped {
            let mut v = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('n') => v.push('\n'),
                        Some(o) => v.push(o),
                        None => {}
                    }
                } else {
                    v.push(c);
                }
            }
            Cow::Owned(v)
        } else {
            Cow::Borrowed(raw)
        };
        Some((key, value))
    }
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
    health: Vec<&'static HealthFamily>,
}

impl MetricSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a family (so it is exposed with HELP/TYPE even when empty)
    /// and returns it for adding samples. Collectors go through their
    /// descriptors ([`MetricSet::declare`], [`MetricSet::add`]).
    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut Family {
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

    /// Declares the family of `d` (exposed with HELP/TYPE even when empty).
    pub fn declare(&mut self, d: &MetricDesc) -> &mut Family {
        self.family(d.name, d.help, d.kind)
    }

    /// Adds one sample to the family of `d` (an info sample's value is 1
    /// whatever `value` says). Debug builds check the label names against
    /// the descriptor.
    pub fn add(&mut self, d: &MetricDesc, labels: Labels, value: f64) {
        debug_assert!(
            labels.iter().map(|(k, _)| *k).eq(d.labels.iter().copied()),
            "{}: labels {:?} differ from the descriptor's {:?}",
            d.name,
            labels.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            d.labels
        );
        let value = if d.kind == Kind::Info { 1.0 } else { value };
        self.declare(d).samples.push(Sample::new(&labels, value));
    }

    /// Marks `h` as a family that says whether a source answered.
    pub fn mark_health(&mut self, h: &'static HealthFamily) {
        if !self.health.iter().any(|m| m.up.name == h.up.name) {
            self.health.push(h);
        }
    }

    /// The families marked with [`MetricSet::mark_health`].
    pub fn health_families(&self) -> &[&'static HealthFamily] {
        &self.health
    }

    /// Appends every family of `other`, merging families of the same name.
    pub fn extend(&mut self, other: MetricSet) {
        for h in &other.health {
            self.mark_health(h);
        }
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
        let mut found = fam.samples.iter().filter(|s| s.has_labels(labels));
        let first = found.next()?;
        if found.next().is_some() {
            return None;
        }
        Some(first.value)
    }

    /// Sum over all samples whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.families
            .iter()
            .filter(|f| f.name == name)
            .flat_map(|f| f.samples.iter())
            .filter(|s| s.has_labels(labels))
            .map(|s| s.value)
            .sum()
    }

    /// Classic Prometheus text format, version 0.0.4.
    pub fn encode_text(&self) -> String {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write_text(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes the classic text format (0.0.4) to `w`; returns the bytes written.
    pub fn write_text(&self, w: &mut dyn io::Write) -> io::Result<u64> {
        let mut w = Counted::new(w);
        let mut line = String::with_capacity(256);
        for f in self.families.iter() {
            let type_name = match f.kind {
                Kind::Gauge | Kind::Info => "gauge",
                Kind::Counter => "counter",
            };
            line.clear();
            let _ = writeln!(line, "# HELP {} {}", f.name, escape_help(f.help));
            let _ = writeln!(line, "# TYPE {} {}", f.name, type_name);
            w.write_all(line.as_bytes())?;
            for sample in &f.samples {
                line.clear();
                line.push_str(f.name);
                if !sample.labels.is_empty() {
                    line.push('{');
                    line.push_str(&sample.labels);
                    line.push('}');
                }
                line.push(' ');
                write_value(&mut line, sample.value);
                line.push('\n');
                w.write_all(line.as_bytes())?;
            }
        }
        Ok(w.count)
    }

    /// OpenMetrics 1.0 text, through `prometheus-client`.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = Vec::new();
        let _ = self.write_openmetrics(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes OpenMetrics 1.0 (through `prometheus-client`) to `w`; returns
    /// the bytes written.
    pub fn write_openmetrics(&self, w: &mut dyn io::Write) -> io::Result<u64> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(SetCollector(self.clone())));
        let mut adapter = FmtToIo {
            inner: Counted::new(w),
            error: None,
        };
        if prometheus_client::encoding::text::encode(&mut adapter, &registry).is_err() {
            return Err(adapter
                .error
                .unwrap_or_else(|| io::Error::other("OpenMetrics encoding failed")));
        }
        Ok(adapter.inner.count)
    }
}

/// Counts the bytes passed through to the inner writer.
struct Counted<'a> {
    inner: &'a mut dyn io::Write,
    count: u64,
}

impl<'a> Counted<'a> {
    fn new(inner: &'a mut dyn io::Write) -> Self {
        Counted { inner, count: 0 }
    }
}

impl io::Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `prometheus-client` writes to a `fmt::Write`; this forwards to an
/// `io::Write` and keeps the I/O error that `fmt::Error` cannot carry.
struct FmtToIo<'a> {
    inner: Counted<'a>,
    error: Option<io::Error>,
}

impl std::fmt::Write for FmtToIo<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        io::Write::write_all(&mut self.inner, s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            std::fmt::Error
        })
    }
}

/// A sample's pre-rendered labels, handed to `prometheus-client` as a label
/// set (it escapes values again, so they are unescaped here).
struct RenderedLabels<'a>(&'a Sample);

impl EncodeLabelSet for RenderedLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for (k, v) in self.0.labels() {
            (k, v.as_ref()).encode(encoder.encode_label())?;
        }
        Ok(())
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
            for sample in &f.samples {
                let labels = RenderedLabels(sample);
                let value = &sample.value;
                // An empty label set is encoded without braces.
                match (f.kind, sample.labels.is_empty()) {
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

    const fn desc(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &'static [&'static str],
    ) -> MetricDesc {
        MetricDesc {
            name,
            help,
            kind,
            labels,
        }
    }

    fn sample() -> MetricSet {
        let mut s = MetricSet::new();
        s.add(
            &desc("a_ratio", "A ratio.", Kind::Gauge, &["x"]),
            vec![("x", "q\"\\\n".into())],
            0.5,
        );
        s.add(&desc("b_total", "B.", Kind::Counter, &[]), vec![], 3.0);
        s.add(
            &desc("c_info", "C.", Kind::Info, &["v"]),
            vec![("v", "1".into())],
            1.0,
        );
        s.declare(&desc("empty_bytes", "Empty.", Kind::Gauge, &[]));
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
    fn rendered_labels_round_trip() {
        let labels: Labels = vec![
            ("plain", "gpu[001-004]".into()),
            ("tricky", "a\"b\\c\nd,e=\"f".into()),
            ("empty", String::new()),
            ("utf8", "überjob ✓".into()),
        ];
        let s = Sample::new(&labels, 1.0);
        let back: Vec<(&str, String)> = s.labels().map(|(k, v)| (k, v.into_owned())).collect();
        let want: Vec<(&str, String)> = labels.iter().map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(back, want);
        assert_eq!(s.label("tricky").unwrap(), "a\"b\\c\nd,e=\"f");
        assert_eq!(s.label("missing"), None);
        assert_eq!(Sample::new(&vec![], 2.0).labels().count(), 0);
    }

    #[test]
    fn openmetrics_escapes_label_values_once() {
        let t = sample().encode_openmetrics();
        assert!(t.contains("a_ratio{x=\"q\\\"\\\\\\n\"} 0.5\n"), "{t}");
    }

    #[test]
    fn writers_report_the_bytes_they_wrote() {
        let set = sample();
        let mut text = Vec::new();
        assert_eq!(set.write_text(&mut text).unwrap(), text.len() as u64);
        assert_eq!(String::from_utf8(text).unwrap(), set.encode_text());
        let mut om = Vec::new();
        assert_eq!(set.write_openmetrics(&mut om).unwrap(), om.len() as u64);
    }

    #[test]
    fn value_lookup_requires_unique_match() {
        let mut s = MetricSet::new();
        let g = desc("g", "G.", Kind::Gauge, &["a", "b"]);
        s.add(&g, vec![("a", "1".into()), ("b", "x".into())], 1.0);
        s.add(&g, vec![("a", "1".into()), ("b", "y".into())], 2.0);
        assert_eq!(s.value("g", &[("b", "y")]), Some(2.0));
        assert_eq!(s.value("g", &[("a", "1")]), None);
        assert_eq!(s.sum("g", &[("a", "1")]), 3.0);
    }

    const D_INFO: MetricDesc = MetricDesc {
        name: "d_info",
        help: "D.",
        kind: Kind::Info,
        labels: &["a", "b"],
    };

    #[test]
    fn descriptors_declare_and_add() {
        let mut s = MetricSet::new();
        s.declare(&D_INFO);
        assert_eq!(s.encode_text(), "# HELP d_info D.\n# TYPE d_info gauge\n");
        // An info sample is 1 whatever the caller passes.
        s.add(&D_INFO, vec![("a", "x".into()), ("b", "y".into())], 7.0);
        assert_eq!(s.value("d_info", &[("a", "x")]), Some(1.0));
        assert_eq!(s.families().len(), 1);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "differ from the descriptor")]
    fn labels_other_than_the_descriptors_are_caught_in_debug_builds() {
        let mut s = MetricSet::new();
        s.add(&D_INFO, vec![("b", "y".into()), ("a", "x".into())], 1.0);
    }
}
