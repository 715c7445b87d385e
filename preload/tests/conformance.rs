//! The C conformance program (tests/c/conformance.c): each case runs on glibc's malloc and
//! with libptalloc.so preloaded, and must pass on both — its expectations are glibc's.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use ptalloc_testkit::harness;

/// Every test compiles its C program first (on testkit's harness: without a C compiler
/// they are skipped, and say so).
fn main() {
    let tests = ptalloc_testkit::tests![
        every_case_is_run,
        malloc,
        free,
        calloc,
        realloc,
        memalign_family,
        brk_below_threshold_mmap_above,
        mallopt,
        mallinfo_trim_stats_info,
        corruption_aborts_with_glibc_messages,
        fastbin_double_free_aborts_with_glibc_message,
        overflow_into_top_aborts_at_growth_with_glibc_message,
        threads_with_cross_thread_frees,
        fork_while_threads_allocate_and_use_stdio,
        rlimit_as_exhaustion_and_recovery,
        twenty_thousand_threads_keep_rss_flat,
        glibc_tunables_apply,
        malloc_environment_names_apply,
        fork_from_a_signal_handler,
        late_thread_destructors_do_not_pin_arenas,
        fork_handlers_registered_first_may_allocate,
        interposition_names_libptalloc,
        the_library_brings_in_no_other_library,
    ];
    harness::run(tests.into_iter().map(|t| t.needs(common::c_compiler())).collect());
}

fn program() -> &'static PathBuf {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| common::compile_c("conformance.c", &[]))
}

fn case(name: &str) {
    case_with_env(name, &[]);
}

fn case_with_env(name: &str, env: &[(&str, &str)]) {
    let glibc = common::output_within(
        Command::new(program()).arg(name).env_remove("LD_PRELOAD").envs(env.iter().copied()),
    );
    assert!(glibc.status.success(), "case {name} fails on glibc itself:\n{}", common::describe(&glibc));
    let ours = common::output_within(
        common::with_ptalloc(Command::new(program()).arg(name))
            .env("EXPECT_MALLOC_FROM", "libptalloc.so")
            .envs(env.iter().copied()),
    );
    assert!(ours.status.success(), "case {name} fails on ptalloc:\n{}", common::describe(&ours));
}

fn every_case_is_run() {
    let out = Command::new(program()).arg("list").output().unwrap();
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    let here = [
        "malloc",
        "free",
        "calloc",
        "realloc",
        "memalign",
        "shape",
        "mallopt",
        "introspection",
        "corruption",
        "corruption_fastbin",
        "corruption_top",
        "threads",
        "fork",
        "rlimit_as",
        "thread_churn",
        "tunables",
        "env_aliases",
        "signal_fork",
        "exit_destructors",
        "interposed",
    ];
    assert_eq!(listed, here, "conformance.c and this file list different cases");
}

fn malloc() {
    case("malloc");
}
fn free() {
    case("free");
}
fn calloc() {
    case("calloc");
}
fn realloc() {
    case("realloc");
}
fn memalign_family() {
    case("memalign");
}
fn brk_below_threshold_mmap_above() {
    case("shape");
}
fn mallopt() {
    case("mallopt");
}
fn mallinfo_trim_stats_info() {
    case("introspection");
}
fn corruption_aborts_with_glibc_messages() {
    case("corruption");
}
fn fastbin_double_free_aborts_with_glibc_message() {
    case_with_env("corruption_fastbin", &[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")]);
}

fn overflow_into_top_aborts_at_growth_with_glibc_message() {
    case("corruption_top");
}

fn threads_with_cross_thread_frees() {
    case("threads");
}
fn fork_while_threads_allocate_and_use_stdio() {
    case("fork");
}
fn rlimit_as_exhaustion_and_recovery() {
    case("rlimit_as");
}
fn twenty_thousand_threads_keep_rss_flat() {
    case("thread_churn");
}

fn glibc_tunables_apply() {
    case_with_env("tunables", &[("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0:glibc.malloc.perturb=165")]);
}

fn malloc_environment_names_apply() {
    case_with_env("env_aliases", &[("MALLOC_MMAP_MAX_", "0"), ("MALLOC_PERTURB_", "90")]);
}

fn fork_from_a_signal_handler() {
    case("signal_fork");
}

fn late_thread_destructors_do_not_pin_arenas() {
    case("exit_destructors");
}

/// Fork handlers that allocate, registered by a library whose constructor runs before the
/// preloaded allocator's, run while the allocator holds its locks for the fork.
fn fork_handlers_registered_first_may_allocate() {
    let handlers = common::compile_c("atfork_handlers.c", &["-shared", "-fPIC"]);
    let program = common::compile_c("atfork.c", &[handlers.to_str().unwrap()]);
    let glibc = common::output_within(Command::new(&program).env_remove("LD_PRELOAD"));
    assert!(glibc.status.success(), "fails on glibc itself:\n{}", common::describe(&glibc));
    let ours = common::output_within(common::with_ptalloc(&mut Command::new(&program)));
    assert!(ours.status.success(), "fails on ptalloc:\n{}", common::describe(&ours));
    assert_eq!(String::from_utf8_lossy(&ours.stdout), "ok\n");
}

fn interposition_names_libptalloc() {
    // dladdr(dlsym(RTLD_DEFAULT, "malloc")) in the preloaded child names our library.
    let out = common::with_ptalloc(Command::new(program()).arg("interposed")).output().unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    let name = String::from_utf8_lossy(&out.stdout);
    assert!(name.trim_end().ends_with("libptalloc.so"), "malloc resolved to {name}");
    let plain = Command::new(program()).arg("interposed").env_remove("LD_PRELOAD").output().unwrap();
    assert!(String::from_utf8_lossy(&plain.stdout).contains("libc.so"));
}

fn the_library_brings_in_no_other_library() {
    // Built without std, libptalloc.so needs only libc: no unwinder (libgcc_s) is loaded into
    // the program, whose RSS its pages would add to.
    let out = common::with_ptalloc(Command::new("cat").arg("/proc/self/maps")).output().unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    let maps = String::from_utf8_lossy(&out.stdout);
    let mut libs: Vec<&str> =
        maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|p| p.contains(".so")).collect();
    libs.dedup();
    assert!(libs.iter().any(|l| l.ends_with("libptalloc.so")), "not preloaded: {libs:?}");
    let others: Vec<&&str> = libs
        .iter()
        .filter(|l| !l.ends_with("libptalloc.so") && !l.contains("/libc.so") && !l.contains("/ld-linux"))
        .collect();
    let plain = Command::new("cat").arg("/proc/self/maps").env_remove("LD_PRELOAD").output().unwrap();
    let plain = String::from_utf8_lossy(&plain.stdout);
    let extra: Vec<&&&str> = others.iter().filter(|l| !plain.contains(**l)).collect();
    assert!(extra.is_empty(), "libptalloc.so brought in {extra:?}");
}
