//! A real Prometheus for tests: OpenMetrics samples turned into TSDB blocks
//! by `promtool tsdb create-blocks-from openmetrics`, served by `prometheus`
//! on a free loopback port, killed when dropped.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Kills and reaps the process when dropped.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn have(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Whether `prometheus` and `promtool` are installed. Outside CI a test
/// without them says so and returns; in CI (`CI=true`, where
/// tests/run-all.sh installs them) their absence fails it.
pub fn prometheus_installed() -> bool {
    if have("prometheus") && have("promtool") {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "prometheus/promtool not installed under CI (apt-get install prometheus)"
    );
    eprintln!("skipped: prometheus/promtool not installed (apt-get install prometheus)");
    false
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `om` (OpenMetrics, ending in `# EOF`) as TSDB blocks under `dir`
/// and starts Prometheus on them (log: `dir/prometheus.log`); returns its
/// base URL. It answers queries once the TSDB is loaded.
pub fn start_prometheus(dir: &Path, om: &str) -> (Kill, String) {
    let om_path = dir.join("data.om");
    std::fs::write(&om_path, om).unwrap();
    let tsdb = dir.join("tsdb");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(&om_path)
        .arg(&tsdb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global: {}\n").unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    (Kill(child), format!("http://127.0.0.1:{port}"))
}
