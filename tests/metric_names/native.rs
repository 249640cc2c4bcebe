//! Our metric names must never be one of Slurm's own (MetricsType=metrics/openmetrics, Slurm 25.11+).
//!
//! Slinky's chart scrapes slurmctld's native metrics by default, so both land in one Prometheus. A family
//! of ours with one of Slurm's names, but other labels and meaning, mixes the two: `sum(slurm_node_gpus)`
//! would count every GPU twice. The list of Slurm's names is data, tests/fixtures/slurm-native-metric-names.txt
//! (generated from the recordings and the plugin source by tests/ops/slurm_native_names.py); our names are
//! every family and sample of the golden `/metrics` files plus every name in docs/metrics.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// name -> releases, from the committed list.
fn slurm_names() -> BTreeMap<String, BTreeSet<String>> {
    let text = read(&root().join("tests/fixtures/slurm-native-metric-names.txt"));
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.split_whitespace();
        let name = cols.next().unwrap().to_string();
        let releases = cols
            .next()
            .unwrap_or_else(|| panic!("no releases for {name}"))
            .split(',')
            .map(str::to_string)
            .collect();
        assert!(
            name.starts_with("slurm_"),
            "{name}: not a Slurm native name"
        );
        out.insert(name, releases);
    }
    out
}

/// Families in the `# TYPE` lines of a recorded native `/metrics/*` answer.
fn recorded_families(release: &str) -> BTreeSet<String> {
    let dir = root().join("tests/fixtures/slurm-cli").join(release);
    let mut names = BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if !(file.starts_with("metrics_") && file.ends_with(".txt")) {
            continue;
        }
        files += 1;
        for line in read(&path).lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                names.insert(rest.split_whitespace().next().unwrap().to_string());
            }
        }
    }
    assert!(
        files >= 5,
        "{}: expected the 5 native metrics recordings",
        dir.display()
    );
    names
}

/// Every name the exporter emits or documents: golden families and samples, docs/metrics.md.
fn our_names() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let golden = root().join("tests/golden");
    let mut goldens = 0;
    for entry in std::fs::read_dir(&golden).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("prom") {
            continue;
        }
        goldens += 1;
        let file = format!(
            "tests/golden/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        for line in read(&path).lines() {
            let name = match line.strip_prefix("# TYPE ") {
                Some(rest) => rest.split_whitespace().next(),
                None if line.starts_with('#') || line.is_empty() => None,
                None => line.split(['{', ' ']).next(),
            };
            if let Some(name) = name {
                out.entry(name.to_string()).or_insert_with(|| file.clone());
            }
        }
    }
    assert!(goldens >= 4, "golden files not found");
    for name in documented_names(&read(&root().join("docs/metrics.md"))) {
        out.entry(name)
            .or_insert_with(|| "docs/metrics.md".to_string());
    }
    out
}

/// Backquoted `slurm_…` names in the first column of the tables of docs/metrics.md (templates such as
/// `slurm_efa_port_<counter>_total` are skipped; their expansions are in the goldens).
fn documented_names(md: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in md.lines() {
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        let name = cell.split('`').next().unwrap_or("");
        if name.starts_with("slurm_")
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            out.insert(name.to_string());
        }
    }
    out
}

/// Names of ours equal to one of Slurm's: a sample name, or an OpenMetrics family name (a counter's
/// family is its name without `_total`, an info family's without `_info`).
fn clashes<'a>(
    ours: impl IntoIterator<Item = &'a str>,
    slurm: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in ours {
        let family = name
            .strip_suffix("_total")
            .or_else(|| name.strip_suffix("_info"))
            .unwrap_or(name);
        for candidate in [name, family] {
            if slurm.contains_key(candidate) {
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[test]
fn list_matches_the_recorded_native_metrics() {
    let list = slurm_names();
    for release in ["25.11.7", "26.05.3"] {
        let recorded = recorded_families(release);
        let listed: BTreeSet<String> = list
            .iter()
            .filter(|(_, rels)| rels.contains(release))
            .map(|(name, _)| name.clone())
            .collect();
        let missing: Vec<_> = recorded.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "{release}: recorded but not listed: {missing:?}"
        );
        let unrecorded: Vec<_> = listed.difference(&recorded).collect();
        // Names from the source the recording did not hit would be marked `source-only`; none so far.
        let text = read(&root().join("tests/fixtures/slurm-native-metric-names.txt"));
        for name in &unrecorded {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{name} ")) && l.ends_with("source-only")),
                "{release}: {name} listed but neither recorded nor marked source-only"
            );
        }
    }
    // Slurm 26.05 added the GPU families; 25.11 has none of them.
    assert!(list["slurm_node_gpus"].contains("26.05.3"));
    assert!(!list["slurm_node_gpus"].contains("25.11.7"));
    assert!(list["slurm_nodes_future"].contains("25.11.7"));
}

#[test]
fn the_check_catches_the_names_we_used_to_emit() {
    // Our names before the `slurm_cluster_` rename: each one clashed with a Slurm 25.11/26.05 family.
    let old = [
        "slurm_jobs",
        "slurm_jobs_pending",
        "slurm_user_jobs",
        "slurm_nodes",
        "slurm_node_cpus",
        "slurm_node_gpus",
        "slurm_node_memory_bytes",
        "slurm_partition_cpus",
        "slurm_partition_gpus",
        "slurm_partition_jobs",
        "slurm_partition_nodes",
    ];
    let found = clashes(old, &slurm_names());
    assert_eq!(found, old.iter().map(|s| s.to_string()).collect());
    // A counter whose family is a Slurm name clashes too.
    assert_eq!(
        clashes(["slurm_jobs_started_total"], &slurm_names()).len(),
        1
    );
}

/// `slurm_…` words in the dashboards and rule files: each must be a name of ours, never one of Slurm's,
/// and no query may select by a `__name__` pattern, so that every panel and rule gives the same answer
/// whether or not Slurm's own metrics are in the same Prometheus.
#[test]
fn dashboards_and_rules_query_only_our_names() {
    let slurm = slurm_names();
    let mut files = Vec::new();
    for dir in ["dashboards", "alerts"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("json" | "yaml")
            ) {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 5, "dashboards and rule files not found");
    let mut bad = Vec::new();
    for path in &files {
        let text = read(path);
        for pattern in ["__name__=", "__name__!", "{__name__"] {
            if text.contains(pattern) {
                bad.push(format!("{}: selects by {pattern}", path.display()));
            }
        }
        let words = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("slurm_"));
        for word in clashes(words, &slurm) {
            bad.push(format!("{}: {word}", path.display()));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn no_metric_of_ours_has_a_slurm_native_name() {
    let ours = our_names();
    assert!(
        ours.len() > 100,
        "only {} names found in goldens and docs",
        ours.len()
    );
    assert!(ours.contains_key("slurm_job_gpus"), "join series not found");
    let found = clashes(ours.keys().map(String::as_str), &slurm_names());
    let report: Vec<String> = found
        .iter()
        .map(|name| format!("{name} (in {})", ours[name]))
        .collect();
    assert!(
        report.is_empty(),
        "these names of ours are also Slurm's own metric names (tests/fixtures/slurm-native-metric-names.txt), \
         so Slurm's series and ours mix in one Prometheus: {report:#?}"
    );
}

/// Samples of a text exposition: (name, sorted labels) -> value.
type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

fn samples(text: &str) -> Samples {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut labels: Vec<(String, String)> = labels
            .split("\",")
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        labels.sort();
        out.insert((name.to_string(), labels), value.parse().unwrap());
    }
    out
}

/// `sum by (label) (name)` over samples.
fn sum_by(s: &Samples, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for ((n, labels), v) in s {
        if n == name {
            let key = labels
                .iter()
                .find(|(k, _)| k == label)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            *out.entry(key).or_insert(0.0) += v;
        }
    }
    out
}

/// The conversions docs/metrics.md gives for combining Slurm's metrics with ours hold on the Slurm 25.11.7
/// recording: our `/metrics` from its slurmrestd v0.0.44 answers (tests/golden/cluster-v0.0.44.prom) against
/// slurmctld's own metrics recorded at the same moment.
#[test]
fn documented_combinations_hold_on_the_25_11_recording() {
    let ours = samples(&read(&root().join("tests/golden/cluster-v0.0.44.prom")));
    let mut native_text = String::new();
    for f in [
        "jobs",
        "nodes",
        "partitions",
        "scheduler",
        "jobs-users-accts",
    ] {
        native_text +=
            &read(&root().join(format!("tests/fixtures/slurm-cli/25.11.7/metrics_{f}.txt")));
    }
    let native = samples(&native_text);
    let one = |name: &str| native[&(name.to_string(), vec![])];
    const MIB: f64 = 1048576.0;

    // Slurm's "bytes" are megabytes (MiB): allocated memory per account and configured memory per node.
    let mem = sum_by(
        &ours,
        "slurm_cluster_jobs_allocated_memory_bytes",
        "account",
    );
    let slurm_mem = sum_by(&native, "slurm_account_jobs_memory_alloc", "account");
    assert_eq!(mem.len(), 2);
    for (account, bytes) in &mem {
        assert_eq!(*bytes, slurm_mem[account] * MIB, "{account}");
    }
    let cpus = sum_by(&ours, "slurm_cluster_jobs_allocated_cpus", "account");
    assert_eq!(
        cpus,
        sum_by(&native, "slurm_account_jobs_cpus_alloc", "account")
    );
    let node_mem = sum_by(&ours, "slurm_cluster_node_memory_bytes", "node");
    let slurm_node_mem = sum_by(&native, "slurm_node_memory_bytes", "node");
    for (node, bytes) in &node_mem {
        assert_eq!(*bytes, slurm_node_mem[node] * MIB, "{node}");
    }
    let free = sum_by(&ours, "slurm_cluster_node_free_memory_bytes", "node");
    let slurm_free = sum_by(&native, "slurm_node_memory_free_bytes", "node");
    assert!(!free.is_empty());
    for (node, bytes) in &free {
        assert_eq!(*bytes, slurm_free[node] * MIB, "{node}");
    }
    // FUTURE nodes: absent from slurmrestd, counted by Slurm.
    let nodes: f64 = sum_by(&ours, "slurm_cluster_nodes", "state").values().sum();
    assert_eq!(nodes + one("slurm_nodes_future"), one("slurm_nodes"));
    assert_eq!(one("slurm_nodes_future"), 1.0);
    assert_eq!(node_mem.len() + 1, slurm_node_mem.len());
    // Running and pending jobs per partition.
    for state in ["running", "pending"] {
        let mut ours_by_partition = BTreeMap::new();
        for ((n, labels), v) in &ours {
            if n == "slurm_cluster_partition_jobs"
                && labels.contains(&("state".to_string(), state.to_string()))
            {
                let p = labels.iter().find(|(k, _)| k == "partition").unwrap();
                ours_by_partition.insert(p.1.clone(), *v);
            }
        }
        assert_eq!(
            ours_by_partition,
            sum_by(
                &native,
                &format!("slurm_partition_jobs_{state}"),
                "partition"
            ),
            "{state}"
        );
    }
    // Slurm's scheduler times are microseconds.
    let bf = ours[&(
        "slurm_scheduler_backfill_cycle_last_seconds".to_string(),
        vec![],
    )];
    assert!((bf * 1e6 - one("slurm_bf_cycle_last")).abs() < 1e-6);
}
