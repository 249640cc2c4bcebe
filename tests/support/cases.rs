//! The recorded slurmrestd answers the parser tests run on, one case per
//! (API version, Slurm release): the shared recording set (`tests/fixtures/slurmrestd/<version>/`
//! with the CLI outputs in `tests/fixtures/slurm-cli/<release>/`) and the recordings of the live
//! e2e rigs (`tests/fixtures/live/<release>/{slurmrestd/<version>,slurm-cli}/`, made by
//! `tests/e2e/record.py`). Each directory's `_manifest.json` names the release
//! and the data parser; the cases are read from them, not listed by hand.

#![allow(dead_code)] // each test crate uses its part

use slurm_gpu_exporter::slurmrestd::ApiVersion;

pub struct Case {
    pub version: ApiVersion,
    /// Slurm release that served this version; its CLI outputs are the oracle.
    pub release: &'static str,
    /// Recorded from the live e2e rig (Debian's Slurm packages) rather than
    /// taken from the shared recording set.
    pub live: bool,
}

impl Case {
    /// Directory of the slurmrestd answers, relative to tests/fixtures.
    pub fn rest_dir(&self) -> String {
        if self.live {
            format!("live/{}/slurmrestd/{}", self.release, self.version)
        } else {
            format!("slurmrestd/{}", self.version)
        }
    }

    /// Directory of the CLI outputs taken with them, relative to tests/fixtures.
    pub fn cli_dir(&self) -> String {
        if self.live {
            format!("live/{}/slurm-cli", self.release)
        } else {
            format!("slurm-cli/{}", self.release)
        }
    }
}

/// Every case, read from the fixtures' `_manifest.json` files (their
/// `slurm_release` and `data_parser`): the shared recordings first, by API
/// version (some tests index them: `[0]` is v0.0.38, `[5]` v0.0.44), then the
/// live ones by release and version. Adding a recording adds its case.
pub static CASES: std::sync::LazyLock<Vec<Case>> = std::sync::LazyLock::new(|| {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut shared = manifests(&root.join("slurmrestd"), false);
    shared.sort_by_key(|c| c.version);
    let mut live = Vec::new();
    for release in subdirs(&root.join("live")) {
        live.extend(manifests(&release.join("slurmrestd"), true));
    }
    live.sort_by(|a, b| (a.release, a.version).cmp(&(b.release, b.version)));
    assert!(shared.len() >= 7 && !live.is_empty(), "fixtures missing");
    shared.into_iter().chain(live).collect()
});

/// The release that served API `v` in the shared recordings (whose CLI
/// outputs are under `slurm-cli/<release>/`).
pub fn shared_release(v: ApiVersion) -> &'static str {
    CASES
        .iter()
        .find(|c| !c.live && c.version == v)
        .unwrap_or_else(|| panic!("no shared recording of {v}"))
        .release
}

fn subdirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// One case per `<dir>/v*/_manifest.json`.
fn manifests(dir: &std::path::Path, live: bool) -> Vec<Case> {
    subdirs(dir)
        .into_iter()
        .filter_map(|d| {
            let version = ApiVersion::parse(d.file_name()?.to_str()?)?;
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(d.join("_manifest.json")).ok()?).ok()?;
            assert_eq!(
                m["data_parser"].as_str(),
                Some(version.as_str()),
                "{}",
                d.display()
            );
            let release = m["slurm_release"].as_str()?.to_string();
            Some(Case {
                version,
                // Leaked once per case for the test run: cases are `'static`.
                release: Box::leak(release.into_boxed_str()),
                live,
            })
        })
        .collect()
}
