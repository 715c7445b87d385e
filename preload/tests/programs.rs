//! Real programs under libptalloc.so, with output identical to a run on glibc's malloc:
//! Python (with PYTHONMALLOC=malloc, on a workload script and on modules of CPython's own
//! regression suite), sqlite3, git, perl, gcc, sort, xz, node and bash. The workloads live
//! in tests/programs/workload.sh, shared with the speed comparison; each reaches the mmap
//! path, and the multi-threaded ones use several arenas — the statistics ptalloc writes at
//! exit show it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/workload.sh")
}

/// The inputs, made once per build directory.
fn inputs() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("workloads");
        let done = dir.join(".prepared");
        if !done.exists() {
            let out = Command::new(script()).arg("prepare").arg(&dir).output().unwrap();
            assert!(out.status.success(), "preparing the workloads failed:\n{}", common::describe(&out));
            std::fs::write(&done, "").unwrap();
        }
        dir
    })
}

/// The largest value of `what` ("arenas", "mmap") over the processes' exit reports.
fn most(report: &str, what: &str) -> u64 {
    report
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().map(|w| w.trim_end_matches(',')).collect();
            let i = words.iter().position(|w| *w == what)?;
            match what {
                "arenas" => words.get(i.checked_sub(1)?)?.parse().ok(),
                _ => words.get(i + 1)?.parse().ok(),
            }
        })
        .max()
        .unwrap_or(0)
}

fn check(name: &str, threaded: bool) {
    let dir = inputs();
    let glibc = Command::new(script())
        .args(["run", name])
        .arg(dir)
        .env_remove("LD_PRELOAD")
        .env_remove("PTALLOC_STATS")
        .output()
        .unwrap();
    assert!(glibc.status.success(), "{name} fails on glibc:\n{}", common::describe(&glibc));
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("stats-{name}.log"));
    let _ = std::fs::remove_file(&report);
    let ours = common::with_ptalloc(Command::new(script()).args(["run", name]).arg(dir))
        .env("PTALLOC_STATS", &report)
        .output()
        .unwrap();
    assert!(ours.status.success(), "{name} fails under ptalloc:\n{}", common::describe(&ours));
    assert!(!glibc.stdout.is_empty(), "{name} printed nothing");
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&glibc.stdout),
        "{name}: output under ptalloc differs from glibc's"
    );
    let report = std::fs::read_to_string(&report).expect("no ptalloc statistics: was the library loaded?");
    assert!(most(&report, "mmap") > 0, "{name} never reached the mmap path:\n{report}");
    if threaded {
        assert!(most(&report, "arenas") >= 2, "{name} used one arena only:\n{report}");
    }
}

#[test]
fn workloads_are_all_tested() {
    let out = Command::new(script()).arg("list").output().unwrap();
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    assert_eq!(
        names,
        ["python", "python-tests", "sqlite", "git", "perl", "gcc", "sort", "xz", "node", "bash"]
    );
}

#[test]
fn python() {
    check("python", true);
}

#[test]
fn python_regression_tests() {
    check("python-tests", false);
}

#[test]
fn sqlite3() {
    check("sqlite", true);
}

#[test]
fn git() {
    check("git", true);
}

#[test]
fn perl() {
    check("perl", false);
}

#[test]
fn gcc() {
    check("gcc", false);
}

#[test]
fn sort() {
    check("sort", true);
}

#[test]
fn xz() {
    check("xz", true);
}

#[test]
fn node() {
    check("node", true);
}

#[test]
fn bash() {
    check("bash", false);
}
