//! Golden-file comparison of a whole `/metrics` output, linted by
//! `promtool check metrics`. `UPDATE_GOLDEN=1` rewrites the files; with
//! `REQUIRE_PROMTOOL=1` a missing promtool fails the test instead of skipping the lint.

#![allow(dead_code)] // each test binary uses a part

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var("REQUIRE_PROMTOOL").as_deref() == Ok("1") {
        panic!("promtool not found but REQUIRE_PROMTOOL=1 (apt-get install prometheus)");
    }
    found
}

/// Compares `text` with `tests/golden/<name>` and lints the file.
pub fn check(name: &str, text: &str) {
    let path = golden_dir().join(name);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    if want != text {
        let diff: Vec<String> = want
            .lines()
            .zip(text.lines())
            .filter(|(a, b)| a != b)
            .take(10)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "{name} differs from the golden file ({} vs {} lines); first differences:\n{}\n(UPDATE_GOLDEN=1 to accept)",
            want.lines().count(),
            text.lines().count(),
            diff.join("\n")
        );
    }
    lint(name, text);
}

/// `promtool check metrics` on `text`: no error and no warning.
pub fn lint(name: &str, text: &str) {
    use std::io::Write as _;
    let Some(promtool) = promtool() else {
        eprintln!("promtool not found; {name} not linted");
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics {name}:\n{report}"
    );
}
