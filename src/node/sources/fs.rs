//! Bounded reads of small kernel files.
//!
//! procfs and sysfs files are small, but a bind mount or a hostile process
//! can make anything big: every read is capped, and a file that is larger
//! than its cap is read only up to the cap (the caller decides whether a
//! truncated file still parses).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Cap for `/proc/<pid>/cgroup`, `/proc/<pid>/limits`, `/proc/<pid>/comm`.
pub const SMALL_FILE_CAP: usize = 64 * 1024;
/// Cap for `/proc/<pid>/environ` (job environments can be large; the Slurm
/// variables sit near the start, as slurmstepd sets them before the user's).
pub const ENVIRON_CAP: usize = 256 * 1024;
/// Cap for one sysfs attribute (a counter, a state line).
pub const SYSFS_CAP: usize = 4 * 1024;

/// Reads at most `cap` bytes of `path` into `buf` (cleared first).
pub fn read_into(path: &Path, cap: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let f = File::open(path)?;
    f.take(cap as u64).read_to_end(buf)?;
    Ok(())
}

/// Reads at most `cap` bytes of `path` as (lossy) UTF-8.
pub fn read_string(path: &Path, cap: usize) -> io::Result<String> {
    let mut buf = Vec::new();
    read_into(path, cap, &mut buf)?;
    Ok(match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Reads a sysfs attribute holding one unsigned integer (decimal, or hex
/// with `0x`). `Ok(None)` when the file does not exist; `Err` when it exists
/// but cannot be read or does not hold a number.
pub fn read_u64(path: &Path) -> Result<Option<u64>, ReadError> {
    match read_string(path, SYSFS_CAP) {
        Ok(s) => parse_u64(s.trim())
            .map(Some)
            .ok_or_else(|| ReadError::Garbage(truncate(s.trim(), 40))),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(ReadError::Io(e)),
    }
}

pub fn parse_u64(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// A file that vanished (process exited, device unplugged) or was never
/// there: not an error for a collector.
pub fn is_gone(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound) || e.raw_os_error() == Some(libc::ESRCH)
}

pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a number: {0:?}")]
    Garbage(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_caps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n");
        std::fs::write(&p, "0x1d0f\n").unwrap();
        assert_eq!(read_u64(&p).unwrap(), Some(0x1d0f));
        std::fs::write(&p, "18446744073709551615\n").unwrap();
        assert_eq!(read_u64(&p).unwrap(), Some(u64::MAX));
        std::fs::write(&p, "-3\n").unwrap();
        assert!(matches!(read_u64(&p), Err(ReadError::Garbage(_))));
        std::fs::write(&p, "12 34").unwrap();
        assert!(read_u64(&p).is_err());
        assert_eq!(read_u64(&dir.path().join("missing")).unwrap(), None);
        // A directory where a file is expected is an I/O error, not a panic.
        assert!(matches!(read_u64(dir.path()), Err(ReadError::Io(_))));
        std::fs::write(&p, vec![b'7'; 100_000]).unwrap();
        let mut buf = Vec::new();
        read_into(&p, 1000, &mut buf).unwrap();
        assert_eq!(buf.len(), 1000);
        assert!(read_u64(&p).is_err());
    }
}
