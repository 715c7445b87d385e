//! Real programs under libptalloc.so, with output identical to a run on glibc's malloc:
//! Python (with PYTHONMALLOC=malloc, on a workload script and on modules of CPython's own
//! regression suite), sqlite3, git, perl, gcc, sort, xz, node and bash. The workloads live
//! in tests/programs/workload.sh, shared with the speed comparison; each reaches the mmap
//! path, and the multi-threaded ones use several arenas — the statistics ptalloc writes at
//! exit show it.
//!
//! On testkit's harness: a workload whose program is not installed is skipped, and says so
//! (it fails instead under PTALLOC_REQUIRE_ALL_TESTS=1).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ptalloc_testkit::harness::{self, Test};
use ptalloc_testkit::program_workloads;

/// The workloads of workload.sh, in its order: the test's name, the workload's, whether it
/// must spread over several arenas, and the programs it runs.
const WORKLOADS: &[(&str, &str, bool, &[&str])] = &[
    ("python", "python", true, &["python3"]),
    ("python_regression_tests", "python-tests", false, &["python3"]),
    ("sqlite3", "sqlite", true, &["sqlite3"]),
    ("git", "git", true, &["git"]),
    ("perl", "perl", false, &["perl"]),
    ("gcc", "gcc", false, &["gcc"]),
    ("sort", "sort", true, &["sort"]),
    ("xz", "xz", true, &["xz"]),
    ("node", "node", true, &["node"]),
    ("bash", "bash", false, &["bash"]),
];

fn main() {
    let mut tests = vec![Test::new("workloads_are_all_tested", workloads_are_all_tested).needs("bash")];
    tests.extend(WORKLOADS.iter().map(|&(test, name, threaded, programs)| {
        // workload.sh is a bash script, and makes the inputs with awk.
        let t = Test::new(test, move || check(name, threaded)).needs("bash").needs("awk");
        let t = programs.iter().fold(t, |t, p| t.needs(*p));
        if name == "python-tests" {
            t.needs_that(
                "CPython's test suite is not installed (python3 -c 'import test.support' fails; \
                 Debian: libpython3.X-testsuite)",
                cpython_test_suite_installed,
            )
        } else {
            t
        }
    }));
    harness::run(tests);
}

fn cpython_test_suite_installed() -> bool {
    Command::new("python3").args(["-c", "import test.support"]).output().is_ok_and(|o| o.status.success())
}

/// The inputs, made once per build directory.
fn inputs() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("workloads");
        program_workloads::prepare(&dir).unwrap_or_else(|e| panic!("{e}"));
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
    let glibc = program_workloads::command(name, dir)
        .env_remove("LD_PRELOAD")
        .env_remove("PTALLOC_STATS")
        .output()
        .unwrap();
    assert!(glibc.status.success(), "{name} fails on glibc:\n{}", common::describe(&glibc));
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("stats-{name}.log"));
    let _ = std::fs::remove_file(&report);
    let ours = common::with_ptalloc(&mut program_workloads::command(name, dir))
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

fn workloads_are_all_tested() {
    let names = program_workloads::names().unwrap();
    let here: Vec<&str> = WORKLOADS.iter().map(|w| w.1).collect();
    assert_eq!(names, here, "workload.sh and this file list different workloads");
}
