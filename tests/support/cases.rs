//! The recorded slurmrestd answers the parser tests run on, one case per
//! (API version, Slurm release): the shared recording set (`tests/fixtures/slurmrestd/<version>/`
//! with the CLI outputs in `tests/fixtures/slurm-cli/<release>/`) and the recordings of the live
//! e2e rigs (`tests/fixtures/live/<release>/{slurmrestd/<version>,slurm-cli}/`, made by
//! `tests/e2e/record.py`). Each directory's `_manifest.json` names the release
//! (`tests/adapters.rs` checks it against this list).

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

const fn shared(version: ApiVersion, release: &'static str) -> Case {
    Case {
        version,
        release,
        live: false,
    }
}

const fn live(version: ApiVersion, release: &'static str) -> Case {
    Case {
        version,
        release,
        live: true,
    }
}

/// The shared recordings first (some tests index them), then the live ones:
/// Debian trixie's 24.11 (what auto-detection meets on 23.11-24.11, with the
/// bare `Infinity` of v0.0.40/41) and sid's 26.05 (v0.0.42-45).
pub const CASES: [Case; 14] = [
    shared(ApiVersion::V0038, "22.05.8"),
    shared(ApiVersion::V0040, "25.05.8"),
    shared(ApiVersion::V0041, "25.11.7"),
    shared(ApiVersion::V0042, "25.11.7"),
    shared(ApiVersion::V0043, "25.11.7"),
    shared(ApiVersion::V0044, "25.11.7"),
    shared(ApiVersion::V0045, "26.05.3"),
    live(ApiVersion::V0040, "24.11.5"),
    live(ApiVersion::V0041, "24.11.5"),
    live(ApiVersion::V0042, "24.11.5"),
    live(ApiVersion::V0042, "26.05.5"),
    live(ApiVersion::V0043, "26.05.5"),
    live(ApiVersion::V0044, "26.05.5"),
    live(ApiVersion::V0045, "26.05.5"),
];
