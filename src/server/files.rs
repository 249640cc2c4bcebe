//! Documentation, dashboards and rules bundled into the binary and served
//! from the landing page, so a newcomer can read the metric reference and
//! download the Grafana dashboards and Prometheus rules of exactly this
//! build from the exporter itself.

macro_rules! files {
    ($($dir:literal / $name:literal),* $(,)?) => {
        &[$(($dir, $name, include_str!(concat!("../../", $dir, "/", $name)))),*]
    };
}

/// (directory, file name, content).
pub const FILES: &[(&str, &str, &str)] = files![
    "docs" / "metrics.md",
    "docs" / "dashboards.md",
    "docs" / "alerts.md",
    "docs" / "usage.md",
    "docs" / "node-agent.md",
    "dashboards" / "cluster-overview.json",
    "dashboards" / "gpu-usage-by-account.json",
    "dashboards" / "job-view.json",
    "dashboards" / "monthly-usage.json",
    "dashboards" / "node-gpu-efa-health.json",
    "alerts" / "recording-rules.yaml",
    "alerts" / "exporter-slurm.yaml",
    "alerts" / "jobs.yaml",
    "alerts" / "gpu.yaml",
    "alerts" / "efa.yaml",
    "alerts" / "cost.yaml",
    "alerts" / "limits.yaml",
];

/// The bundled file `dir/name` and its content type.
pub fn get(dir: &str, name: &str) -> Option<(&'static str, &'static str)> {
    let (_, n, body) = FILES.iter().find(|(d, n, _)| *d == dir && *n == name)?;
    let ct = match n.rsplit('.').next() {
        Some("json") => "application/json",
        Some("yaml") => "text/plain; charset=utf-8",
        _ => "text/markdown; charset=utf-8",
    };
    Some((ct, body))
}

/// HTML list items linking every bundled file of `dir`.
pub fn links(dir: &str) -> String {
    FILES
        .iter()
        .filter(|(d, ..)| *d == dir)
        .map(|(d, n, _)| format!("<li><a href=\"/{d}/{n}\">{d}/{n}</a></li>"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_shipped_dashboard_and_rule_file_is_bundled() {
        for dir in ["dashboards", "alerts"] {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            for e in std::fs::read_dir(root).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().to_string();
                if name.ends_with(".json") || name.ends_with(".yaml") {
                    assert!(super::get(dir, &name).is_some(), "{dir}/{name} not bundled");
                }
            }
        }
    }
}
