//! One collection cycle's `/proc` process table, shared by the collectors
//! that need it (memlock, jobs): scanned at most once per cycle, on first
//! use, so no cycle reads `/proc/<pid>/cgroup` of every process twice.

use std::cell::OnceCell;
use std::io;

use super::procfs::{ProcFs, ProcessEntry};

pub struct ProcessSnapshot<'a> {
    procfs: &'a ProcFs,
    scan: OnceCell<io::Result<Vec<ProcessEntry>>>,
}

impl<'a> ProcessSnapshot<'a> {
    pub fn new(procfs: &'a ProcFs) -> Self {
        ProcessSnapshot {
            procfs,
            scan: OnceCell::new(),
        }
    }

    /// The processes with their job cgroups; scans on the first call of the
    /// cycle, later calls get the same table (or the same error).
    pub fn get(&self) -> Result<&[ProcessEntry], &io::Error> {
        self.scan.get_or_init(|| self.procfs.scan()).as_deref()
    }

    /// Whether the table was scanned this cycle.
    pub fn taken(&self) -> bool {
        self.scan.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanned_once_and_shared() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("42");
        std::fs::create_dir_all(&pdir).unwrap();
        std::fs::write(
            pdir.join("cgroup"),
            "0::/system.slice/slurmstepd.scope/job_7/step_0/user/task_0\n",
        )
        .unwrap();
        std::fs::write(pdir.join("comm"), "python\n").unwrap();
        let procfs = ProcFs::new(dir.path());
        let snap = ProcessSnapshot::new(&procfs);
        assert!(!snap.taken());
        let first = snap.get().unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].pid, 42);
        // A process appearing later in the cycle is not seen: one table per cycle.
        let p43 = dir.path().join("43");
        std::fs::create_dir_all(&p43).unwrap();
        std::fs::write(p43.join("cgroup"), "0::/user.slice\n").unwrap();
        std::fs::write(p43.join("comm"), "bash\n").unwrap();
        assert!(std::ptr::eq(snap.get().unwrap(), first));
        assert_eq!(ProcessSnapshot::new(&procfs).get().unwrap().len(), 2);
    }

    #[test]
    fn unreadable_proc_is_an_error_for_every_reader() {
        let procfs = ProcFs::new("/nonexistent/proc");
        let snap = ProcessSnapshot::new(&procfs);
        assert!(snap.get().is_err());
        assert!(snap.get().is_err());
    }
}
