//! `ptalloc run`: run a program with libptalloc.so preloaded.
//!
//! The program replaces this process (`exec`), so its exit status — or the signal that
//! killed it — is exactly what the caller sees.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

pub struct RunConfig {
    pub stats: bool,
    pub lib: Option<PathBuf>,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// The library next to this executable (where cargo builds both).
fn default_lib() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    Ok(exe.with_file_name("libptalloc.so"))
}

/// libptalloc.so: `lib`, or the one next to this program, as an absolute path. `what` names
/// the subcommand in errors.
pub fn library_path(lib: Option<PathBuf>, what: &str) -> Result<PathBuf, String> {
    let lib = match lib {
        Some(l) => l,
        None => default_lib().map_err(|e| format!("{what}: {e}"))?,
    };
    lib.canonicalize().map_err(|e| {
        format!(
            "{what}: library {} not usable ({e}); build it with `cargo build --release` or give --lib",
            lib.display()
        )
    })
}

/// The value of `LD_PRELOAD` that puts `lib` (or the default library) first, keeping what
/// the environment already preloads.
pub fn preload_value(lib: Option<PathBuf>, what: &str) -> Result<OsString, String> {
    let lib = library_path(lib, what)?;
    Ok(match std::env::var_os("LD_PRELOAD") {
        Some(old) if !old.is_empty() => {
            let mut v = lib.into_os_string();
            v.push(":");
            v.push(old);
            v
        }
        _ => lib.into_os_string(),
    })
}

/// The exit status a shell gives a program it could not start: 127 for one not found, 126
/// for one that cannot run.
pub fn cannot_start_status(err: &std::io::Error) -> i32 {
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

/// Exec the program; returns only on failure, with the exit status to use.
pub fn run(cfg: RunConfig) -> Result<i32, String> {
    let preload = preload_value(cfg.lib, "run")?;
    let mut cmd = Command::new(&cfg.program);
    cmd.args(&cfg.args).env("LD_PRELOAD", preload);
    if cfg.stats {
        cmd.env("PTALLOC_STATS", "1");
    }
    let err = cmd.exec();
    eprintln!("ptalloc: run: cannot execute {}: {err}", cfg.program.to_string_lossy());
    Ok(cannot_start_status(&err))
}
