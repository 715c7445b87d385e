//! `ptalloc run`: run a program with libptalloc.so preloaded.
//!
//! The program replaces this process (`exec`), so its exit status — or the signal that
//! killed it — is exactly what the caller sees.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

pub struct RunConfig {
    pub stats: bool,
    pub lib: Option<PathBuf>,
    pub program: String,
    pub args: Vec<String>,
}

/// Parse `run`'s arguments: `[--stats] [--lib PATH] [--] PROGRAM [ARGS...]`.
pub fn parse(args: &[String]) -> Result<RunConfig, String> {
    let mut stats = false;
    let mut lib = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--stats" => stats = true,
            "--lib" => {
                i += 1;
                lib = Some(PathBuf::from(args.get(i).ok_or("run: --lib needs a path")?));
            }
            "--" => {
                i += 1;
                break;
            }
            a if a.starts_with('-') => return Err(format!("run: unknown option {a:?} (see ptalloc --help)")),
            _ => break,
        }
        i += 1;
    }
    let program = args
        .get(i)
        .ok_or("run: no program given (usage: ptalloc run [--stats] [--lib PATH] -- PROGRAM [ARGS...])")?;
    Ok(RunConfig { stats, lib, program: program.clone(), args: args[i + 1..].to_vec() })
}

/// The library next to this executable (where cargo builds both).
fn default_lib() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("run: cannot find own executable: {e}"))?;
    Ok(exe.with_file_name("libptalloc.so"))
}

/// Exec the program; returns only on failure, with the exit status to use.
pub fn run(cfg: RunConfig) -> Result<i32, String> {
    let lib = match cfg.lib {
        Some(l) => l,
        None => default_lib()?,
    };
    let lib = lib.canonicalize().map_err(|e| {
        format!(
            "run: library {} not usable ({e}); build it with `cargo build --release` or give --lib",
            lib.display()
        )
    })?;
    let preload = match std::env::var_os("LD_PRELOAD") {
        Some(old) if !old.is_empty() => {
            let mut v = lib.clone().into_os_string();
            v.push(":");
            v.push(old);
            v
        }
        _ => lib.into_os_string(),
    };
    let mut cmd = Command::new(&cfg.program);
    cmd.args(&cfg.args).env("LD_PRELOAD", preload);
    if cfg.stats {
        cmd.env("PTALLOC_STATS", "1");
    }
    let err = cmd.exec();
    // As a shell reports it: 127 for a program not found, 126 for one that cannot run.
    let code = if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
    eprintln!("ptalloc: run: cannot execute {}: {err}", cfg.program);
    Ok(code)
}
