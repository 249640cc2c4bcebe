//! `/proc` under a configurable root (`--path.procfs`): process listing,
//! cgroup membership, `Max locked memory` limits, and the Slurm variables of
//! a process environment. Every read is bounded; a process that exits while
//! it is being read is skipped, never an error.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use super::cgroup::{job_from_cgroup_file, JobCgroup, JobKey};
use super::fs::{is_gone, read_into, ENVIRON_CAP, SMALL_FILE_CAP};

#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

/// One resource limit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Bytes(u64),
}

impl Limit {
    /// Bytes, `+Inf` for unlimited.
    pub fn as_f64(self) -> f64 {
        match self {
            Limit::Unlimited => f64::INFINITY,
            Limit::Bytes(b) => b as f64,
        }
    }

    pub fn min(self, other: Limit) -> Limit {
        match (self, other) {
            (Limit::Unlimited, x) | (x, Limit::Unlimited) => x,
            (Limit::Bytes(a), Limit::Bytes(b)) => Limit::Bytes(a.min(b)),
        }
    }
}

/// Soft and hard `RLIMIT_MEMLOCK` of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memlock {
    pub soft: Limit,
    pub hard: Limit,
}

/// One process, as found by [`ProcFs::scan`].
#[derive(Debug, Clone)]
pub struct ProcessEntry {
    pub pid: u32,
    /// `/proc/<pid>/comm`, when readable.
    pub comm: Option<String>,
    pub job: Option<JobCgroup>,
}

/// The Slurm variables of one process environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlurmEnv {
    pub job_id: Option<String>,
    pub user: Option<String>,
    pub account: Option<String>,
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcFs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, pid: u32, name: &str) -> PathBuf {
        let mut p = self.root.join(pid.to_string());
        p.push(name);
        p
    }

    /// Numeric entries of the procfs root, sorted. Fails only when the root
    /// itself cannot be listed.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let mut pids: Vec<u32> = std::fs::read_dir(&self.root)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Lists every process with its job cgroup (when any) and its `comm`.
    /// Processes that vanish mid-scan are dropped.
    pub fn scan(&self) -> io::Result<Vec<ProcessEntry>> {
        let pids = self.pids()?;
        let mut out = Vec::with_capacity(pids.len());
        let mut buf = Vec::with_capacity(1024);
        for pid in pids {
            let job = match self.read_cgroup(pid, &mut buf) {
                Ok(j) => j,
                Err(e) if is_gone(&e) => continue,
                Err(e) => {
                    tracing::debug!(pid, error = %e, "cannot read cgroup");
                    None
                }
            };
            let comm = match read_into(&self.file(pid, "comm"), SMALL_FILE_CAP, &mut buf) {
                Ok(()) => Some(String::from_utf8_lossy(&buf).trim_end().to_string()),
                Err(e) if is_gone(&e) => continue,
                Err(_) => None,
            };
            out.push(ProcessEntry { pid, comm, job });
        }
        Ok(out)
    }

    /// The job cgroup of one process (`Ok(None)`: not in a job).
    pub fn job_of(&self, pid: u32) -> io::Result<Option<JobCgroup>> {
        self.read_cgroup(pid, &mut Vec::new())
    }

    fn read_cgroup(&self, pid: u32, buf: &mut Vec<u8>) -> io::Result<Option<JobCgroup>> {
        read_into(&self.file(pid, "cgroup"), SMALL_FILE_CAP, buf)?;
        Ok(job_from_cgroup_file(&String::from_utf8_lossy(buf)))
    }

    /// `Max locked memory` of one process. `Ok(None)` when the file has no
    /// parsable row.
    pub fn memlock(&self, pid: u32) -> io::Result<Option<Memlock>> {
        let mut buf = Vec::new();
        read_into(&self.file(pid, "limits"), SMALL_FILE_CAP, &mut buf)?;
        Ok(parse_memlock(&String::from_utf8_lossy(&buf)))
    }

    /// `/proc/<pid>/comm`, without the trailing newline.
    pub fn comm(&self, pid: u32) -> io::Result<String> {
        let mut buf = Vec::new();
        read_into(&self.file(pid, "comm"), SMALL_FILE_CAP, &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
    }

    /// `/proc/<pid>/cmdline`: the NUL-separated arguments (world-readable).
    pub fn cmdline(&self, pid: u32) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        read_into(&self.file(pid, "cmdline"), SMALL_FILE_CAP, &mut buf)?;
        Ok(buf)
    }

    /// A small file inside the process's root directory (`/proc/<pid>/root/<rel>`,
    /// e.g. `etc/hostname` of a container). Opening `root` needs ptrace read
    /// access to the process, as `environ` does.
    pub fn root_file(&self, pid: u32, rel: &str) -> io::Result<Vec<u8>> {
        let mut p = self.file(pid, "root");
        p.push(rel);
        let mut buf = Vec::new();
        read_into(&p, SMALL_FILE_CAP, &mut buf)?;
        Ok(buf)
    }

    /// One variable of a process environment (`None`: not set). Same access
    /// as [`ProcFs::slurm_env`].
    pub fn environ_var(&self, pid: u32, name: &str) -> io::Result<Option<String>> {
        let mut buf = Vec::new();
        read_into(&self.file(pid, "environ"), ENVIRON_CAP, &mut buf)?;
        let prefix = format!("{name}=");
        Ok(buf
            .split(|b| *b == 0)
            .find_map(|v| v.strip_prefix(prefix.as_bytes()))
            .map(|v| String::from_utf8_lossy(v).into_owned()))
    }

    /// The Slurm variables of a process environment. Needs ptrace read
    /// access to the process (same uid, or CAP_SYS_PTRACE).
    pub fn slurm_env(&self, pid: u32) -> io::Result<SlurmEnv> {
        let mut buf = Vec::new();
        read_into(&self.file(pid, "environ"), ENVIRON_CAP, &mut buf)?;
        Ok(parse_environ(&buf))
    }
}

/// Finds the `Max locked memory` row of a `/proc/<pid>/limits` file.
pub fn parse_memlock(limits: &str) -> Option<Memlock> {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max locked memory"))?;
    let mut fields = line.split_whitespace();
    let soft = parse_limit(fields.next()?)?;
    let hard = parse_limit(fields.next()?)?;
    Some(Memlock { soft, hard })
}

fn parse_limit(s: &str) -> Option<Limit> {
    if s == "unlimited" {
        Some(Limit::Unlimited)
    } else {
        s.parse().ok().map(Limit::Bytes)
    }
}

/// Extracts `SLURM_JOB_ID`, `SLURM_JOB_USER` and `SLURM_JOB_ACCOUNT` from a
/// NUL-separated environment block.
pub fn parse_environ(env: &[u8]) -> SlurmEnv {
    let mut out = SlurmEnv::default();
    for var in env.split(|b| *b == 0) {
        let take = |prefix: &[u8]| -> Option<String> {
            var.strip_prefix(prefix)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .filter(|v| !v.is_empty() && v.len() <= 256)
        };
        if let Some(v) = take(b"SLURM_JOB_ID=") {
            if v.bytes().all(|b| b.is_ascii_digit()) {
                out.job_id = Some(v);
            }
        } else if let Some(v) = take(b"SLURM_JOB_USER=") {
            out.user = Some(v);
        } else if let Some(v) = take(b"SLURM_JOB_ACCOUNT=") {
            out.account = Some(v);
        }
    }
    out
}

/// User and account of a job, from the environment of one of its processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobMeta {
    pub user: String,
    pub account: String,
}

/// Resolves job cgroup keys to job ids (SLUIDs through `SLURM_JOB_ID`) and
/// caches user/account per job, so a process environment is read once per
/// job rather than once per collection. Entries of jobs not seen in a
/// collection are dropped at its end.
#[derive(Debug, Default)]
pub struct JobResolver {
    sluids: HashMap<String, String>,
    meta: HashMap<String, JobMeta>,
    seen: HashSet<String>,
}

impl JobResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// The job id for a process placed in job cgroup `key`. With
    /// `want_meta`, also learns the job's user and account. A SLUID whose
    /// environment cannot be read is returned as is.
    pub fn resolve(&mut self, procfs: &ProcFs, pid: u32, key: &JobKey, want_meta: bool) -> String {
        self.seen.insert(key.as_str().to_string());
        let known_id = match key {
            JobKey::Id(id) => Some(id.clone()),
            JobKey::Sluid(s) => self.sluids.get(s).cloned(),
        };
        let need_env = known_id.is_none()
            || (want_meta
                && known_id
                    .as_ref()
                    .is_some_and(|id| !self.meta.contains_key(id)));
        if !need_env {
            let id = known_id.unwrap_or_default();
            self.seen.insert(id.clone());
            return id;
        }
        let env = match procfs.slurm_env(pid) {
            Ok(env) => Some(env),
            Err(e) if is_gone(&e) => None,
            Err(e) => {
                tracing::debug!(pid, error = %e, "cannot read process environment");
                // Remember the failure (usually EACCES) so it is not retried
                // for every process of the job.
                Some(SlurmEnv::default())
            }
        };
        let id = match (known_id, key, env.as_ref().and_then(|e| e.job_id.clone())) {
            (Some(id), _, _) => id,
            (None, JobKey::Sluid(s), Some(id)) => {
                self.sluids.insert(s.clone(), id.clone());
                id
            }
            (None, _, _) => key.as_str().to_string(),
        };
        if let Some(env) = env {
            if want_meta {
                self.meta.entry(id.clone()).or_insert(JobMeta {
                    user: env.user.unwrap_or_default(),
                    account: env.account.unwrap_or_default(),
                });
            }
        }
        self.seen.insert(id.clone());
        id
    }

    pub fn meta(&self, job_id: &str) -> Option<&JobMeta> {
        self.meta.get(job_id)
    }

    /// Forgets jobs not resolved since the previous call.
    pub fn end_cycle(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.sluids.retain(|k, _| seen.contains(k));
        self.meta.retain(|k, _| seen.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max locked memory         65536                unlimited            bytes     \n\
Max address space         unlimited            unlimited            bytes     \n";

    #[test]
    fn limits() {
        assert_eq!(
            parse_memlock(LIMITS),
            Some(Memlock {
                soft: Limit::Bytes(65536),
                hard: Limit::Unlimited
            })
        );
        assert_eq!(parse_memlock("Max locked memory  x y bytes"), None);
        assert_eq!(parse_memlock("Max locked memory"), None);
        assert_eq!(parse_memlock(""), None);
        assert_eq!(Limit::Unlimited.min(Limit::Bytes(3)), Limit::Bytes(3));
        assert_eq!(Limit::Unlimited.min(Limit::Unlimited), Limit::Unlimited);
    }

    #[test]
    fn environ() {
        let env =
            b"PATH=/bin\0SLURM_JOB_ID=123\0SLURM_JOB_USER=alice\0SLURM_JOB_ACCOUNT=ml\0X=\xff\0";
        assert_eq!(
            parse_environ(env),
            SlurmEnv {
                job_id: Some("123".into()),
                user: Some("alice".into()),
                account: Some("ml".into())
            }
        );
        assert_eq!(parse_environ(b"SLURM_JOB_ID=abc\0"), SlurmEnv::default());
        assert_eq!(parse_environ(b""), SlurmEnv::default());
    }

    #[test]
    fn resolver_maps_sluids_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("10");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("environ"), b"SLURM_JOB_ID=900\0SLURM_JOB_USER=bob\0").unwrap();
        let procfs = ProcFs::new(dir.path());
        let mut r = JobResolver::new();
        let key = JobKey::Sluid("s0000000000001".into());
        assert_eq!(r.resolve(&procfs, 10, &key, true), "900");
        assert_eq!(r.meta("900").unwrap().user, "bob");
        // Cached: the environment is not needed any more.
        std::fs::remove_file(p.join("environ")).unwrap();
        assert_eq!(r.resolve(&procfs, 10, &key, true), "900");
        r.end_cycle();
        r.end_cycle();
        // Forgotten, and the environment is gone: the SLUID stands in.
        assert_eq!(r.resolve(&procfs, 10, &key, true), "s0000000000001");
    }
}
