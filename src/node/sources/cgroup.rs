//! Slurm job identity from a process's cgroup membership.
//!
//! `/proc/<pid>/cgroup` lists `hierarchy-id:controllers:path` lines. Slurm
//! puts job processes in cgroups named after the job:
//!
//! * cgroup v1: `/slurm/uid_<u>/job_<id>/step_<s>/task_<n>` (or
//!   `/slurm_<node>/...` with multiple slurmd per host);
//! * cgroup v2: `.../slurmstepd.scope/job_<id>/step_<s>/user/task_<n>`, the
//!   scope possibly named `<node>_slurmstepd.scope`, and slurmstepd itself in
//!   `.../job_<id>/step_<s>/slurm`;
//! * Slurm 26.05: the job directory may carry a SLUID (`s` + 13 base32
//!   characters) instead of the numeric id.
//!
//! Paths are relative to the *reader's* cgroup namespace (a containerised
//! agent sees `/../../kubepods.slice/.../slurmstepd.scope/job_5/...`), and a
//! Slinky slurmd runs inside a pod slice, so matching works on path
//! components from the end and never anchors at `/`.

/// How a job is named in its cgroup path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKey {
    /// The numeric job id, as a string (`"4242"`).
    Id(String),
    /// A Slurm 26.05 SLUID (`"s0123456789abc"`); the numeric id must come
    /// from the process environment.
    Sluid(String),
}

impl JobKey {
    pub fn as_str(&self) -> &str {
        match self {
            JobKey::Id(s) | JobKey::Sluid(s) => s,
        }
    }
}

/// The Slurm placement of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCgroup {
    pub job: JobKey,
    /// `"0"`, `"batch"`, `"extern"`, `"interactive"`, ... when present.
    pub step: Option<String>,
    /// The `uid_<u>` component of cgroup v1 paths.
    pub uid: Option<u32>,
    /// The process sits in slurmstepd's own cgroup (`step_<s>/slurm`, v2).
    pub stepd: bool,
}

/// Parses the content of `/proc/<pid>/cgroup`. The first line that names a
/// job wins, preferring one that also names the step.
pub fn job_from_cgroup_file(content: &str) -> Option<JobCgroup> {
    let mut fallback = None;
    for line in content.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let Some(j) = job_from_path(path) {
            if j.step.is_some() {
                return Some(j);
            }
            fallback.get_or_insert(j);
        }
    }
    fallback
}

/// Parses one cgroup path. A `job_<id>` component counts only when it sits
/// under a Slurm component (`slurm*`, `uid_<u>`, `*slurmstepd.scope`) or is
/// followed by a `step_<s>` component, so unrelated `job_` directories do not
/// match.
pub fn job_from_path(path: &str) -> Option<JobCgroup> {
    let comps: Vec<&str> = path
        .trim_end()
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .collect();
    for i in (0..comps.len()).rev() {
        let Some(rest) = comps[i].strip_prefix("job_") else {
            continue;
        };
        let key =
            if !rest.is_empty() && rest.len() <= 20 && rest.bytes().all(|b| b.is_ascii_digit()) {
                JobKey::Id(rest.to_string())
            } else if is_sluid(rest) {
                JobKey::Sluid(rest.to_string())
            } else {
                continue;
            };
        let before = &comps[..i];
        let after = &comps[i + 1..];
        let step = after
            .first()
            .and_then(|c| c.strip_prefix("step_"))
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let under_slurm = before.iter().any(|c| {
            c.starts_with("slurm") || c.ends_with("slurmstepd.scope") || c.starts_with("uid_")
        });
        if !under_slurm && step.is_none() {
            continue;
        }
        let uid = before
            .last()
            .and_then(|c| c.strip_prefix("uid_"))
            .and_then(|u| u.parse().ok());
        let stepd = step.is_some() && after.get(1) == Some(&"slurm");
        return Some(JobCgroup {
            job: key,
            step,
            uid,
            stepd,
        });
    }
    None
}

/// A Slurm Lightweight Unique IDentifier: `s` followed by 13 base32
/// characters (either alphabet, either case).
pub fn is_sluid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 14 && (b[0] == b's' || b[0] == b'S') && b[1..].iter().all(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: &str) -> Option<(String, Option<String>)> {
        job_from_path(path).map(|j| (j.job.as_str().to_string(), j.step))
    }

    #[test]
    fn v1_layout() {
        let j = job_from_path("/slurm/uid_1000/job_4242/step_0/task_1").unwrap();
        assert_eq!(j.job, JobKey::Id("4242".into()));
        assert_eq!(j.step.as_deref(), Some("0"));
        assert_eq!(j.uid, Some(1000));
        assert!(!j.stepd);
        assert_eq!(
            id("/slurm_node-1/uid_0/job_7/step_batch"),
            Some(("7".into(), Some("batch".into())))
        );
        assert_eq!(id("/slurm/uid_1000/job_9"), Some(("9".into(), None)));
    }

    #[test]
    fn v2_layouts() {
        assert_eq!(
            id("/system.slice/slurmstepd.scope/job_12/step_0/user/task_0"),
            Some(("12".into(), Some("0".into())))
        );
        assert_eq!(
            id("/system.slice/gpu-node-3_slurmstepd.scope/job_12/step_extern/user/task_special"),
            Some(("12".into(), Some("extern".into())))
        );
        let j = job_from_path("/system.slice/slurmstepd.scope/job_12/step_0/slurm").unwrap();
        assert!(j.stepd);
        // Slinky: slurmd in a pod; seen from another cgroup namespace.
        assert_eq!(
            id("/../../kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/cri-containerd-abc.scope/system.slice/slurmstepd.scope/job_77/step_0/user/task_3"),
            Some(("77".into(), Some("0".into())))
        );
        // Relative to a namespace rooted inside the scope.
        assert_eq!(
            id("/job_77/step_1/user/task_0"),
            Some(("77".into(), Some("1".into())))
        );
    }

    #[test]
    fn sluid() {
        let j =
            job_from_path("/system.slice/slurmstepd.scope/job_s0ab12cd34ef56/step_0/user/task_0")
                .unwrap();
        assert_eq!(j.job, JobKey::Sluid("s0ab12cd34ef56".into()));
        assert!(!is_sluid("s0ab12"));
        assert!(!is_sluid("x0ab12cd34ef56"));
    }

    #[test]
    fn non_jobs() {
        for p in [
            "/",
            "/user.slice/user-1000.slice/session-3.scope",
            "/system.slice/slurmd.service",
            "/system.slice/slurmstepd.scope/system",
            "/home/job_12",
            "/slurm/uid_1000/job_/step_0",
            "/slurm/uid_1000/job_12x/step_0",
            "",
        ] {
            assert_eq!(job_from_path(p), None, "{p}");
        }
    }

    #[test]
    fn cgroup_files() {
        let v1 = "12:pids:/system.slice/slurmd.service\n\
                  11:freezer:/slurm/uid_1000/job_5/step_0/task_0\n\
                  4:cpuset:/slurm/uid_1000/job_5/step_0\n\
                  0::/system.slice/slurmd.service\n";
        let j = job_from_cgroup_file(v1).unwrap();
        assert_eq!(j.job, JobKey::Id("5".into()));
        assert_eq!(j.step.as_deref(), Some("0"));
        assert_eq!(job_from_cgroup_file("0::/init.scope\n"), None);
        assert_eq!(job_from_cgroup_file("garbage\n\n:::\n"), None);
        assert_eq!(job_from_cgroup_file("\u{0}\u{1}binary"), None);
    }
}
