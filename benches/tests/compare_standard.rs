//! `compare-standard` rejects a bad command line with one line on stderr and exit status 2.
//! Only the arguments are tested: running the programs needs a mimalloc-bench checkout,
//! which the tests do not have.

use std::path::Path;
use std::process::Command;

fn rejects(args: &[&str], expect: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_compare-standard")).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "compare-standard {args:?}");
    assert!(out.stdout.is_empty(), "compare-standard {args:?}: wrote to stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "compare-standard {args:?}: {err}");
    assert!(err.contains(expect), "compare-standard {args:?}: {err:?} does not say {expect:?}");
}

#[test]
fn bad_arguments() {
    // A folder with a CMakeLists.txt, for the arguments checked after the folder.
    let bench = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-standard-bench");
    std::fs::create_dir_all(&bench).unwrap();
    std::fs::write(bench.join("CMakeLists.txt"), "").unwrap();
    let bench = bench.to_str().unwrap();
    // This crate's folder has no CMakeLists.txt.
    let no_lists = env!("CARGO_MANIFEST_DIR");

    rejects(&["--bogus"], "unknown option \"--bogus\"");
    rejects(&[], "--bench DIR is required");
    rejects(&["--runs", "3"], "--bench DIR is required");
    rejects(&["--bench"], "--bench takes a directory");
    rejects(&["--bench", no_lists], "no CMakeLists.txt there");
    rejects(&["--bench", "/no/such/folder"], "no CMakeLists.txt there");
    rejects(&["--bench", bench, "--runs", "0"], "--runs takes a positive number");
    rejects(&["--bench", bench, "--threads", "x"], "--threads takes a positive number");
    rejects(&["--bench", bench, "--only", "cfrac,no-such-program"], "unknown program \"no-such-program\"");
    rejects(&["--bench", bench, "--lib", "/no/such/libptalloc.so"], "/no/such/libptalloc.so");
    rejects(&["--bench", bench, "--with"], "--with takes NAME=PATH");
    rejects(&["--bench", bench, "--with", "before"], "expected NAME=PATH");
    rejects(&["--bench", bench, "--with", "=/lib.so"], "expected NAME=PATH");
    rejects(&["--bench", bench, "--with", "glibc=/lib.so"], "glibc is already a column");
    rejects(&["--bench", bench, "--with", "before=/no/such/lib.so"], "/no/such/lib.so: No such file");
}

#[test]
fn help_is_not_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_compare-standard")).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("usage: compare-standard --bench DIR"));
}
