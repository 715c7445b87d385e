//! The `ptalloc` command: `run` passes exit statuses and signals through and preloads the
//! library; `--stats` reports; bad arguments get one line and status 2.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use ptalloc_testkit::harness;

/// On testkit's harness: the tests that run `sh` or `sort` are skipped, saying so, where it
/// is not installed.
fn main() {
    harness::run(ptalloc_testkit::tests![
        help_explains_every_subcommand,
        bad_arguments_get_one_line_and_status_2,
        run_passes_exit_status_and_signals_through needs("sh"),
        run_preloads_the_library_into_the_program needs("sh"),
        stats_report_at_exit needs("sort"),
    ]);
}

fn ptalloc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ptalloc"))
}

fn run(args: &[&str]) -> Command {
    let mut c = ptalloc();
    c.arg("run").arg("--lib").arg(common::library()).args(args);
    c
}

fn help_explains_every_subcommand() {
    let out = ptalloc().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "record", "trace-stats", "demo", "GLIBC_TUNABLES", "PTALLOC_RECORD"] {
        assert!(text.contains(word), "--help does not mention {word}:\n{text}");
    }
    let options: &[(&str, &[&str])] = &[
        ("run", &["--stats", "--lib", "PROGRAM"]),
        ("record", &["--output", "--stats", "--lib", "PROGRAM", "FILE.PID"]),
        ("trace-stats", &["--largest", "--calls", "<FILE>"]),
        ("demo", &["--threads", "--ops", "--seed"]),
    ];
    for (cmd, words) in options {
        let out = ptalloc().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        for word in *words {
            assert!(text.contains(word), "{cmd} --help does not mention {word}:\n{text}");
        }
        // `help CMD` says the same.
        let out = ptalloc().args(["help", cmd]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), text, "help {cmd}");
    }
}

fn bad_arguments_get_one_line_and_status_2() {
    for args in [
        &["frob"][..],
        &["run"],
        &["run", "--bogus", "x"],
        &["run", "--lib"],
        &["demo", "--threads", "x"],
        &["demo", "--threads", "0"],
        &["record"],
        &["trace-stats"],
        &["trace-stats", "a", "b"],
        &["trace-stats", "--largest", "-1", "f"],
    ] {
        let out = ptalloc().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("ptalloc: "), "{err}");
    }
}

fn run_passes_exit_status_and_signals_through() {
    let out = run(&["--", "sh", "-c", "exit 7"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    let out = run(&["sh", "-c", "kill -SEGV $$"]).output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV));
    let out = run(&["--", "/nonexistent/program"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
}

fn run_preloads_the_library_into_the_program() {
    let out = run(&["--", "sh", "-c", "echo $LD_PRELOAD"]).env("LD_PRELOAD", "/other.so").output().unwrap();
    let preload = String::from_utf8_lossy(&out.stdout);
    let first = preload.trim().split(':').next().unwrap().to_string();
    assert!(first.ends_with("libptalloc.so"), "{preload}");
    assert!(preload.trim().ends_with(":/other.so"), "an existing LD_PRELOAD is kept: {preload}");
}

fn stats_report_at_exit() {
    // A program that allocates on brk and mmap and uses threads: sort with two threads.
    let input: String = (0..200_000).map(|i| format!("{}\n", (i * 7919) % 100_003)).collect();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("numbers.txt");
    std::fs::write(&path, input).unwrap();
    let out = run(&["--stats", "--", "sort", "-n", "--parallel=2", "-S", "64M"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("ptalloc[")).collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].contains("in use") && lines[0].contains("at peak"), "{err}");
    assert!(lines[1].contains("brk") && lines[1].contains("mmap") && lines[1].contains("munmap"), "{err}");
    assert!(lines[1].contains("mremap"), "{err}");
    assert!(lines[2].contains("arenas") && lines[2].contains("threads seen"), "{err}");
    // The sorted output is right.
    let sorted: Vec<u64> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(sorted.len(), 200_000);
    assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
}
