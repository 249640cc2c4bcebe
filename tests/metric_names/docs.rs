//! docs/metrics.md against the code, both ways:
//!
//! - every family a collector declares (its constant `MetricDesc`s: node
//!   agent, cluster scraper, exporter self-metrics) is in the reference
//!   tables, with the same type;
//! - every family the reference documents is emitted by a whole `/metrics`
//!   output: the golden files (cluster and node, kept byte-identical to the
//!   code's output by `tests/golden_outputs/`) or the demo's
//!   `/metrics` (cluster scraper and node agents), scraped here;
//! - every family in those outputs is documented, with the same type.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slurm_gpu_exporter::exposition::{Kind, MetricDesc};

/// Family name → type as docs/metrics.md's tables write it (`gauge`,
/// `counter`, `info` for "gauge (info)"). A row `slurm_x_<counter>_total`
/// stands for one family per word of the first space-separated list in
/// backticks of its meaning column.
fn documented(md: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in md.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[0].is_empty() {
            continue;
        }
        let Some(name) = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        let kind = match cells[2] {
            "gauge" => "gauge",
            "counter" => "counter",
            "gauge (info)" | "info" => "info",
            _ => continue, // not a metric table (e.g. the renamed-names table)
        };
        if !name.starts_with("slurm_") {
            continue;
        }
        match name.split_once("<counter>") {
            None => {
                out.insert(name.to_string(), kind.to_string());
            }
            Some((prefix, suffix)) => {
                let meaning = cells.get(4).copied().unwrap_or("");
                let list = meaning
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .find(|s| s.contains(' '))
                    .unwrap_or_else(|| panic!("{name}: no counter list in {meaning:?}"));
                for c in list.split_whitespace() {
                    out.insert(format!("{prefix}{c}{suffix}"), kind.to_string());
                }
            }
        }
    }
    out
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Gauge => "gauge",
        Kind::Counter => "counter",
        Kind::Info => "info",
    }
}

/// Every descriptor of the code.
fn descriptors() -> Vec<&'static MetricDesc> {
    let mut all: Vec<&'static MetricDesc> =
        slurm_gpu_exporter::node::collectors::all_metrics().collect();
    for c in slurm_gpu_exporter::cluster::collectors::METRICS {
        all.extend(c.iter().copied());
    }
    all
}

/// Problems of descriptors against the documentation.
fn undocumented(descs: &[&MetricDesc], docs: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for d in descs {
        match docs.get(d.name) {
            None => problems.push(format!("{} is not in docs/metrics.md", d.name)),
            Some(t) if t != kind_name(d.kind) => problems.push(format!(
                "{}: docs/metrics.md says {t}, the code {}",
                d.name,
                kind_name(d.kind)
            )),
            Some(_) => {}
        }
    }
    problems
}

/// `# TYPE` lines of a text-format output: family → type (0.0.4 writes
/// info families as gauges).
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.trim().to_string()))
        .collect()
}

fn golden_outputs() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "prom") {
            out.push((
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
    assert!(out.len() >= 4, "golden files missing in {}", dir.display());
    out
}

fn get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

/// The demo's `/metrics`, once it carries every family in `want` (GPM
/// values need a second node collection) or after 60 s.
fn demo_output(want: &BTreeSet<String>) -> String {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slurm-gpu-exporter"))
        .args(["demo", "--web.listen-address", &addr])
        .args(["--poll-interval", "500ms", "--collect-interval", "500ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut body = String::new();
    while Instant::now() < deadline {
        if let Some(b) = get(&addr, "/metrics") {
            body = b;
            let have = families(&body);
            if want.iter().all(|n| have.contains_key(n)) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!body.is_empty(), "the demo served no /metrics");
    body
}

fn docs() -> BTreeMap<String, String> {
    let md = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"))
        .unwrap();
    let docs = documented(&md);
    assert!(
        docs.len() > 100,
        "docs/metrics.md parsed to {} families",
        docs.len()
    );
    docs
}

#[test]
fn every_descriptor_is_documented_with_its_type() {
    let descs = descriptors();
    let mut seen: BTreeMap<&str, &MetricDesc> = BTreeMap::new();
    for d in &descs {
        if let Some(prev) = seen.insert(d.name, d) {
            assert_eq!(prev, *d, "two different descriptors named {}", d.name);
        }
    }
    let problems = undocumented(&descs, &docs());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The check above catches a family the docs lack, and a wrong type.
#[test]
fn a_missing_or_mistyped_row_is_reported() {
    let md = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"))
        .unwrap();
    let without: String = md
        .lines()
        .filter(|l| !l.starts_with("| `slurm_gpu_power_watts` |"))
        .map(|l| format!("{l}\n"))
        .collect();
    let problems = undocumented(&descriptors(), &documented(&without));
    assert_eq!(
        problems,
        ["slurm_gpu_power_watts is not in docs/metrics.md"]
    );
    let mistyped = md.replace(
        "| `slurm_gpu_energy_joules_total` | counter |",
        "| `slurm_gpu_energy_joules_total` | gauge |",
    );
    let problems = undocumented(&descriptors(), &documented(&mistyped));
    assert_eq!(
        problems,
        ["slurm_gpu_energy_joules_total: docs/metrics.md says gauge, the code counter"]
    );
    // A templated row expands to one family per listed counter.
    let docs = documented(&md);
    assert_eq!(
        docs.get("slurm_efa_port_rdma_read_bytes_total")
            .map(String::as_str),
        Some("counter")
    );
}

#[test]
fn every_documented_family_is_emitted_and_every_emitted_one_documented() {
    let docs = docs();
    let mut emitted: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (file, text) in golden_outputs() {
        for (n, t) in families(&text) {
            emitted.entry(n).or_insert((t, file.clone()));
        }
    }
    let missing: BTreeSet<String> = docs
        .keys()
        .filter(|n| !emitted.contains_key(*n))
        .cloned()
        .collect();
    for (n, t) in families(&demo_output(&missing)) {
        emitted.entry(n).or_insert((t, "the demo".into()));
    }
    let mut problems = Vec::new();
    for n in docs.keys() {
        if !emitted.contains_key(n) {
            problems.push(format!(
                "{n} is documented but in no golden file nor the demo's output"
            ));
        }
    }
    for (n, (t, from)) in &emitted {
        match docs.get(n).map(String::as_str) {
            None => problems.push(format!("{n} (emitted in {from}) is not in docs/metrics.md")),
            Some(doc) => {
                // The text format writes info families as gauges.
                let doc = if doc == "info" { "gauge" } else { doc };
                if doc != t {
                    problems.push(format!("{n}: docs/metrics.md says {doc}, {from} {t}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
