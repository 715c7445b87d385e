//! Helpers shared by the preload tests: where libptalloc.so is, compiling C test programs,
//! and running a program with the library preloaded into that child process only.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

/// libptalloc.so, freshly built. `cargo test` compiles a cdylib only as an rlib for test
/// dependencies, so the tests build the real library themselves (a no-op when it is up to
/// date) in a target directory of their own; `PTALLOC_LIB` names a prebuilt one instead.
pub fn library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        if let Some(lib) = std::env::var_os("PTALLOC_LIB") {
            return PathBuf::from(lib);
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = manifest.parent().unwrap().join("target").join("preload-tests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(&cargo)
            .args(["build", "--release", "--quiet", "--lib", "-p", "ptalloc-preload", "--target-dir"])
            .arg(&target)
            .current_dir(manifest)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
        assert!(out.status.success(), "building libptalloc.so failed:\n{}", describe(&out));
        let lib = target.join("release").join("libptalloc.so");
        assert!(lib.exists(), "{} was not built", lib.display());
        lib
    })
    .clone()
}

/// The C compiler the tests use: `$CC`, or else `cc`.
pub fn c_compiler() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// Compile `source` (under tests/c) with the system C compiler; returns the executable.
pub fn compile_c(source: &str, extra: &[&str]) -> PathBuf {
    let flags = ["-O2", "-g", "-fno-builtin", "-Wall", "-pthread"];
    compile(&c_compiler(), "tests/c", source, ".c", &flags, extra)
}

/// The C++ compiler the tests use: `$CXX`, or else `c++`.
pub fn cxx_compiler() -> String {
    std::env::var("CXX").unwrap_or_else(|_| "c++".into())
}

/// Compile `source` (under tests/cxx) with the system C++ compiler; returns the executable.
pub fn compile_cxx(source: &str) -> PathBuf {
    // A block of new freed by free and the other way round is tested on purpose.
    let flags = ["-O2", "-g", "-Wall", "-Wno-mismatched-new-delete", "-std=c++17", "-pthread"];
    compile(&cxx_compiler(), "tests/cxx", source, ".cpp", &flags, &[])
}

/// Compile `dir/source` with `compiler` and `flags`, then `extra` (objects and libraries to
/// link come after the source) and `-ldl`, into the tests' directory.
fn compile(compiler: &str, dir: &str, source: &str, suffix: &str, flags: &[&str], extra: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(source);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(source.trim_end_matches(suffix));
    let status = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .args(extra)
        .args(["-ldl"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run the compiler {compiler}: {e}"));
    assert!(status.success(), "compiling {} failed", src.display());
    out
}

/// Run `cmd` with libptalloc.so preloaded (in the child only).
pub fn with_ptalloc(cmd: &mut Command) -> &mut Command {
    cmd.env("LD_PRELOAD", library())
}

/// Run `cmd` to completion, killing it after two minutes (a deadlock must fail the test, not
/// hang the suite).
pub fn output_within(cmd: &mut Command) -> Output {
    const LIMIT: Duration = Duration::from_secs(120);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(LIMIT) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: signalling our own child, which has not been reaped (no output yet).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx.recv().unwrap();
            panic!("{cmd:?} still running after {LIMIT:?} (deadlock?):\n{}", describe(&out));
        }
    }
}

pub fn describe(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
