//! C++'s operator new and delete under libptalloc.so (tests/cxx/new_delete.cpp): each case
//! runs with libstdc++'s own operators on glibc's malloc and with libptalloc.so preloaded,
//! and must pass on both — its expectations are C++'s.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use ptalloc_testkit::harness;

fn main() {
    let tests = ptalloc_testkit::tests![
        every_form_is_ptalloc_s,
        blocks_of_every_form,
        failure_throws_bad_alloc_into_the_program,
        the_new_handler_runs_until_it_gives_up,
        a_recording_shows_new_as_malloc_and_memalign,
    ];
    harness::run(tests.into_iter().map(|t| t.needs(common::cxx_compiler())).collect());
}

fn program() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| common::compile_cxx("new_delete.cpp"))
}

fn case(name: &str) {
    let libstdcxx = common::output_within(Command::new(program()).arg(name).env_remove("LD_PRELOAD"));
    assert!(
        libstdcxx.status.success(),
        "case {name} fails without ptalloc:\n{}",
        common::describe(&libstdcxx)
    );
    let ours = common::output_within(
        common::with_ptalloc(Command::new(program()).arg(name)).env("EXPECT_NEW_FROM", "libptalloc.so"),
    );
    assert!(ours.status.success(), "case {name} fails on ptalloc:\n{}", common::describe(&ours));
}

fn every_form_is_ptalloc_s() {
    case("interposed");
    // The check can fail: the operators of a preloaded run are not libstdc++'s.
    let out = common::output_within(common::with_ptalloc(Command::new(program()).arg("interposed")));
    assert!(!out.status.success(), "{}", common::describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("libptalloc.so, not libstdc++"),
        "{}",
        common::describe(&out)
    );
}

fn blocks_of_every_form() {
    case("blocks");
}

fn failure_throws_bad_alloc_into_the_program() {
    case("failure");
}

fn the_new_handler_runs_until_it_gives_up() {
    case("handler");
}

/// `ptalloc record` sees what `new` does: the aligned forms as memalign, the others as
/// malloc — 17 alignments of two forms, two `alignas(128)` objects.
fn a_recording_shows_new_as_malloc_and_memalign() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cxx-record");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("new.trace");
    let out = Command::new(env!("CARGO_BIN_EXE_ptalloc"))
        .arg("record")
        .arg("-o")
        .arg(&file)
        .arg("--lib")
        .arg(common::library())
        .arg("--")
        .arg(program())
        .arg("blocks")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_ptalloc")).arg("trace-stats").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let count = |kind: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(kind).filter(|r| r.starts_with(' ')))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {kind} line in:\n{text}"))
    };
    assert_eq!(count("memalign"), 2 * 17 + 2, "{text}");
    // 4,000 strings, 20 arrays, two single objects and the vectors' own blocks.
    assert!(count("malloc") >= 4000 + 20 + 2, "{text}");
    assert!(count("free") >= count("malloc") + count("memalign"), "{text}");
}
