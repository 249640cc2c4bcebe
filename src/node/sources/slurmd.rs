//! The Slurm node name of the slurmd running on this host, found from the
//! slurmd process itself, so the `node` label equals the Slurm NodeName with
//! no per-node configuration.
//!
//! On Slinky, slurmd runs in a pod and Slurm names the node after the pod's
//! host name, which is not the Kubernetes node name a DaemonSet knows. The
//! agent sees slurmd under `--path.procfs` (host PID namespace) and reads,
//! in this order, what slurmd itself uses:
//!
//! 1. `-N NAME` on its command line (`/proc/<pid>/cmdline`, world-readable);
//! 2. else its host name, up to the first dot (slurmd's `gethostname_short`):
//!    `/proc/<pid>/root/etc/hostname`, the file the container runtime
//!    bind-mounts with the pod's UTS host name (on a bare host, the host's);
//! 3. else `HOSTNAME` in its environment (set by container runtimes).
//!
//! 2 and 3 need ptrace read access to slurmd (`CAP_SYS_PTRACE`, as for job
//! environments). A slurm.conf that maps `NodeName` to a different
//! `NodeHostname` without `-N` cannot be seen from here: set
//! `--slurm-node-name` there.

use std::collections::BTreeSet;
use std::io;

use super::fs::is_gone;
use super::procfs::ProcFs;

/// Longest node name accepted (Slurm's own limit is larger, host names are 64).
const MAX_NAME: usize = 255;
/// Most slurmd processes examined per scan (slurmd forks short-lived children).
const MAX_SLURMDS: usize = 64;
/// Collections between full scans while the known slurmds still run (a
/// second slurmd appearing next to them is noticed within this many).
pub const RESCAN_EVERY: u32 = 6;

/// Where a name was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NameSource {
    /// `-N NAME` in `/proc/<pid>/cmdline`.
    Cmdline,
    /// `/proc/<pid>/root/etc/hostname`.
    Hostname,
    /// `HOSTNAME` in `/proc/<pid>/environ`.
    Environ,
}

impl NameSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::Cmdline => "cmdline",
            NameSource::Hostname => "hostname",
            NameSource::Environ => "environ",
        }
    }
}

/// The name one slurmd process runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmdName {
    pub pid: u32,
    pub name: String,
    pub source: NameSource,
}

/// slurmd's short options with an argument (`bcCd:Df:F::GhL:Mn:N:svVZ` in
/// slurmd.c, Slurm 25.11 and 26.05); `F` takes an optional, attached one.
const SHORT_WITH_ARG: &[u8] = b"dfLnN";
const SHORT_NO_ARG: &[u8] = b"bcCDGhMsvVZ";
/// Long options with a required argument (getopt_long accepts unique prefixes).
const LONG_WITH_ARG: &[&str] = &[
    "authinfo",
    "ca-cert-file",
    "conf",
    "conf-server",
    "extra",
    "instance-id",
    "instance-type",
    "parameters",
];

/// The value of slurmd's `-N` in a NUL-separated command line, parsed as
/// getopt does (`-N name`, `-Nname`, `-DN name`; the last one wins).
pub fn node_name_from_cmdline(cmdline: &[u8]) -> Option<String> {
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    let mut found = None;
    let mut i = 1; // args[0] is the program
    while i < args.len() {
        let arg = args[i];
        i += 1;
        if arg == b"--" {
            break;
        }
        if let Some(long) = arg.strip_prefix(b"--") {
            if !long.contains(&b'=') {
                let long = String::from_utf8_lossy(long);
                if !long.is_empty() && LONG_WITH_ARG.iter().any(|o| o.starts_with(&*long)) {
                    i += 1; // its argument
                }
            }
            continue;
        }
        let Some(flags) = arg.strip_prefix(b"-").filter(|f| !f.is_empty()) else {
            continue; // an operand: getopt permutes them to the end
        };
        for (k, c) in flags.iter().enumerate() {
            if SHORT_NO_ARG.contains(c) {
                continue;
            }
            if SHORT_WITH_ARG.contains(c) {
                let attached = &flags[k + 1..];
                let value = if !attached.is_empty() {
                    Some(attached)
                } else if i < args.len() {
                    i += 1;
                    Some(args[i - 1])
                } else {
                    None
                };
                if *c == b'N' {
                    if let Some(v) = value.and_then(|v| valid_name(&String::from_utf8_lossy(v))) {
                        found = Some(v);
                    }
                }
            }
            break; // an option with an argument, `F`, or unknown: the rest is not flags
        }
    }
    found
}

/// A host name as slurmd shortens it: the first line, up to the first dot.
pub fn short_host_name(raw: &str) -> Option<String> {
    let line = raw.lines().next()?.trim();
    valid_name(line.split('.').next()?)
}

/// A name usable as a label value and plausible as a Slurm node name: no
/// whitespace, control characters or hostlist syntax, bounded length.
fn valid_name(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, ',' | '[' | ']' | '"' | '\\'));
    ok.then(|| s.to_string())
}

/// The name of one slurmd process. `Ok(None)`: nothing readable gave one.
pub fn name_of(procfs: &ProcFs, pid: u32) -> io::Result<Option<SlurmdName>> {
    let make = |name, source| Some(SlurmdName { pid, name, source });
    let cmdline = procfs.cmdline(pid)?;
    if let Some(name) = node_name_from_cmdline(&cmdline) {
        return Ok(make(name, NameSource::Cmdline));
    }
    // The process exited (its directory is gone): an error; a file it lacks
    // or that cannot be read: try the next source.
    let exited = |e: &io::Error| is_gone(e) && !procfs.root().join(pid.to_string()).exists();
    match procfs.root_file(pid, "etc/hostname") {
        Ok(raw) => {
            if let Some(name) = short_host_name(&String::from_utf8_lossy(&raw)) {
                return Ok(make(name, NameSource::Hostname));
            }
        }
        Err(e) if exited(&e) => return Err(e),
        Err(e) => tracing::debug!(pid, error = %e, "cannot read slurmd's /etc/hostname"),
    }
    match procfs.environ_var(pid, "HOSTNAME") {
        Ok(Some(raw)) => Ok(short_host_name(&raw).and_then(|n| make(n, NameSource::Environ))),
        Ok(None) => Ok(None),
        Err(e) if exited(&e) => Err(e),
        Err(e) => {
            tracing::debug!(pid, error = %e, "cannot read slurmd's environment");
            Ok(None)
        }
    }
}

/// Every slurmd process under the procfs root (`comm` = `slurmd`) with the
/// name it runs under, at most [`MAX_SLURMDS`]. Processes that exit while
/// being read are skipped.
pub fn discover(procfs: &ProcFs) -> io::Result<Vec<SlurmdName>> {
    let mut out = Vec::new();
    for pid in procfs.pids()? {
        match procfs.comm(pid) {
            Ok(c) if c == "slurmd" => {}
            _ => continue,
        }
        match name_of(procfs, pid) {
            Ok(Some(n)) => out.push(n),
            Ok(None) => tracing::debug!(pid, "slurmd found, but no node name readable"),
            Err(e) if is_gone(&e) => {}
            Err(e) => tracing::debug!(pid, error = %e, "cannot read slurmd"),
        }
        if out.len() >= MAX_SLURMDS {
            break;
        }
    }
    Ok(out)
}

/// What the `node` label is, decided once per collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `--slurm-node-name` was given.
    Override,
    /// One slurmd name (several slurmd processes may share it).
    Discovered(SlurmdName),
    /// No slurmd with a readable name: the fallback.
    NoSlurmd,
    /// slurmds with different names: the fallback (the agent cannot tell
    /// which GPUs belong to which).
    Ambiguous(Vec<String>),
}

/// Keeps the `node` label: an override, else the discovered slurmd name
/// (re-checked every collection, a full scan only when the known slurmd
/// processes are gone), else the fallback.
#[derive(Debug)]
pub struct NodeNamer {
    override_name: Option<String>,
    fallback: String,
    known: Vec<SlurmdName>,
    since_scan: u32,
    last: Option<(String, Decision)>,
}

impl NodeNamer {
    pub fn new(override_name: Option<String>, fallback: String) -> Self {
        NodeNamer {
            override_name,
            fallback,
            known: Vec::new(),
            since_scan: 0,
            last: None,
        }
    }

    /// The name to use now, and why.
    pub fn current(&mut self, procfs: &ProcFs) -> (String, Decision) {
        let (name, decision) = self.decide(procfs);
        let changed = self.last.as_ref().map(|(n, d)| (n, d)) != Some((&name, &decision));
        if changed {
            match &decision {
                Decision::Override => {
                    tracing::info!(node = %name, "node name from --slurm-node-name")
                }
                Decision::Discovered(d) => tracing::info!(
                    node = %name, pid = d.pid, source = d.source.as_str(),
                    "node name from the slurmd process"
                ),
                Decision::NoSlurmd => tracing::info!(
                    node = %name,
                    "no slurmd with a readable node name under --path.procfs; using the fallback name"
                ),
                Decision::Ambiguous(names) => tracing::warn!(
                    node = %name, slurmd_names = ?names,
                    "slurmd processes with different node names; using the fallback name (set --slurm-node-name)"
                ),
            }
            self.last = Some((name.clone(), decision.clone()));
        }
        (name, decision)
    }

    fn decide(&mut self, procfs: &ProcFs) -> (String, Decision) {
        if let Some(n) = &self.override_name {
            return (n.clone(), Decision::Override);
        }
        // The slurmds found last time, if all still run, keep their name
        // between full scans.
        self.since_scan += 1;
        let still_running = !self.known.is_empty()
            && self.since_scan < RESCAN_EVERY
            && self
                .known
                .iter()
                .all(|k| procfs.comm(k.pid).is_ok_and(|c| c == "slurmd"));
        if !still_running {
            self.since_scan = 0;
            self.known = match discover(procfs) {
                Ok(found) => found,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot list processes for slurmd");
                    Vec::new()
                }
            };
        }
        let names: BTreeSet<&str> = self.known.iter().map(|k| k.name.as_str()).collect();
        match names.len() {
            0 => (self.fallback.clone(), Decision::NoSlurmd),
            1 => {
                let first = self.known[0].clone();
                (first.name.clone(), Decision::Discovered(first))
            }
            _ => (
                self.fallback.clone(),
                Decision::Ambiguous(names.into_iter().map(String::from).collect()),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for a in args {
            v.extend_from_slice(a.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn cmdline_forms() {
        let n = |a: &[&str]| node_name_from_cmdline(&cmd(a));
        assert_eq!(
            n(&["slurmd", "-D", "-N", "gpu-1"]).as_deref(),
            Some("gpu-1")
        );
        assert_eq!(n(&["slurmd", "-Ngpu-2"]).as_deref(), Some("gpu-2"));
        assert_eq!(
            n(&["slurmd", "-DN", "gpu-3", "-v"]).as_deref(),
            Some("gpu-3")
        );
        assert_eq!(
            n(&["/usr/sbin/slurmd", "-N", "a", "-N", "b"]).as_deref(),
            Some("b")
        );
        // The argument of another option is not a flag cluster.
        assert_eq!(n(&["slurmd", "-f", "-N", "-D"]), None);
        assert_eq!(n(&["slurmd", "-fN", "x"]), None);
        assert_eq!(
            n(&["slurmd", "--conf-server", "-Nnot", "-N", "w-0"]).as_deref(),
            Some("w-0")
        );
        assert_eq!(n(&["slurmd", "--conf", "Features=x", "-Z"]), None);
        assert_eq!(n(&["slurmd", "--conf-s", "-Nx"]), None, "getopt prefix");
        assert_eq!(
            n(&["slurmd", "--conf-server=h:6817", "-N", "z"]).as_deref(),
            Some("z")
        );
        assert_eq!(
            n(&["slurmd", "-D", "-Z", "--conf-server", "ctld:6817"]),
            None
        );
        assert_eq!(n(&["slurmd", "--", "-N", "x"]), None);
        assert_eq!(n(&["slurmd", "-N"]), None);
        assert_eq!(n(&["slurmd", "-N", "bad name"]), None);
        assert_eq!(n(&["slurmd", "-N", "gpu[1-2]"]), None);
        assert_eq!(n(&[]), None);
        assert_eq!(node_name_from_cmdline(b"slurmd\0-N\0\xff\xfe\0"), None);
        let long = "x".repeat(300);
        assert_eq!(n(&["slurmd", "-N", &long]), None);
    }

    #[test]
    fn host_names() {
        assert_eq!(
            short_host_name("slurm-worker-gpu-0\n").as_deref(),
            Some("slurm-worker-gpu-0")
        );
        assert_eq!(
            short_host_name("gpu-7.ec2.internal\n").as_deref(),
            Some("gpu-7")
        );
        assert_eq!(short_host_name("  a\nb\n").as_deref(), Some("a"));
        assert_eq!(short_host_name(""), None);
        assert_eq!(short_host_name("\n"), None);
        assert_eq!(short_host_name(".x"), None);
        assert_eq!(short_host_name("a b"), None);
    }

    fn proc_entry(
        root: &std::path::Path,
        pid: u32,
        comm: &str,
        cmdline: &[&str],
    ) -> std::path::PathBuf {
        let d = root.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(d.join("cmdline"), cmd(cmdline)).unwrap();
        d
    }

    #[test]
    fn discovery_order_and_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let procfs = ProcFs::new(root);
        proc_entry(root, 1, "systemd", &["/sbin/init"]);
        let mut namer = NodeNamer::new(None, "k8s-node".into());
        assert_eq!(
            namer.current(&procfs),
            ("k8s-node".into(), Decision::NoSlurmd)
        );

        // slurmd without -N: its /etc/hostname, shortened.
        let d = proc_entry(root, 50, "slurmd", &["slurmd", "-D", "-Z"]);
        std::fs::create_dir_all(d.join("root/etc")).unwrap();
        std::fs::write(d.join("root/etc/hostname"), "worker-0.pods.local\n").unwrap();
        std::fs::write(d.join("environ"), b"HOSTNAME=from-env\0").unwrap();
        let (name, why) = namer.current(&procfs);
        assert_eq!(name, "worker-0");
        assert!(matches!(
            why,
            Decision::Discovered(SlurmdName {
                pid: 50,
                source: NameSource::Hostname,
                ..
            })
        ));

        // Cached while pid 50 is slurmd: a new file content is not re-read.
        std::fs::write(d.join("root/etc/hostname"), "other\n").unwrap();
        assert_eq!(namer.current(&procfs).0, "worker-0");

        // slurmd restarts (new pid) with -N: cmdline wins over the host name.
        std::fs::remove_dir_all(&d).unwrap();
        let d = proc_entry(root, 60, "slurmd", &["slurmd", "-N", "named-0"]);
        std::fs::create_dir_all(d.join("root/etc")).unwrap();
        std::fs::write(d.join("root/etc/hostname"), "worker-0\n").unwrap();
        let (name, why) = namer.current(&procfs);
        assert_eq!(name, "named-0");
        assert!(matches!(
            why,
            Decision::Discovered(SlurmdName {
                source: NameSource::Cmdline,
                ..
            })
        ));

        // Root unreadable (no ptrace access): HOSTNAME from the environment.
        std::fs::remove_dir_all(&d).unwrap();
        let d = proc_entry(root, 70, "slurmd", &["slurmd"]);
        std::fs::write(d.join("environ"), b"PATH=/bin\0HOSTNAME=env-0\0").unwrap();
        let (name, why) = namer.current(&procfs);
        assert_eq!(name, "env-0");
        assert!(matches!(
            why,
            Decision::Discovered(SlurmdName {
                source: NameSource::Environ,
                ..
            })
        ));

        // A forked child with the same name is fine; a second slurmd with
        // another name is ambiguous: the fallback, not a guess.
        proc_entry(root, 71, "slurmd", &["slurmd", "-N", "env-0"]);
        std::fs::remove_dir_all(&d).unwrap(); // force a rescan
        proc_entry(root, 70, "slurmd", &["slurmd", "-N", "env-0"]);
        assert_eq!(namer.current(&procfs).0, "env-0");
        std::fs::remove_dir_all(root.join("71")).unwrap();
        proc_entry(root, 72, "slurmd", &["slurmd", "-N", "other-1"]);
        // Noticed at the next full scan, within RESCAN_EVERY collections.
        let mut calls = 0;
        let (name, why) = loop {
            calls += 1;
            let now = namer.current(&procfs);
            if now.0 != "env-0" || calls > RESCAN_EVERY {
                break now;
            }
        };
        assert!(calls <= RESCAN_EVERY, "{calls}");
        assert_eq!(name, "k8s-node");
        assert_eq!(
            why,
            Decision::Ambiguous(vec!["env-0".into(), "other-1".into()])
        );

        // The override always wins.
        let mut fixed = NodeNamer::new(Some("given".into()), "k8s-node".into());
        assert_eq!(fixed.current(&procfs), ("given".into(), Decision::Override));
    }

    #[test]
    fn hostile_input() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let procfs = ProcFs::new(root);
        // Huge cmdline and hostname files are read up to the cap only.
        let d = proc_entry(root, 5, "slurmd", &["slurmd"]);
        std::fs::write(d.join("cmdline"), vec![b'-'; 1 << 20]).unwrap();
        std::fs::create_dir_all(d.join("root/etc")).unwrap();
        std::fs::write(d.join("root/etc/hostname"), vec![b'a'; 1 << 20]).unwrap();
        assert_eq!(name_of(&procfs, 5).unwrap(), None);
        // A directory where a file is expected, binary garbage: no name, no panic.
        let d = proc_entry(root, 6, "slurmd", &["slurmd"]);
        std::fs::create_dir_all(d.join("root/etc/hostname")).unwrap();
        std::fs::write(d.join("environ"), b"HOSTNAME=\xff\xfe\0").unwrap();
        assert_eq!(name_of(&procfs, 6).unwrap(), None);
        // A process that is gone.
        assert!(name_of(&procfs, 7).is_err());
        assert!(discover(&procfs).unwrap().is_empty());
    }
}
