//! `ptalloc record`: run a program under libptalloc.so with its recorder on, then say what
//! was written.
//!
//! The program runs as a child (not `exec`), so that the command can report the trace
//! after it ends; its exit status is passed through, and a signal that killed it kills this
//! process the same way. Interrupts from the terminal go to the program: the command
//! ignores SIGINT and SIGQUIT while it waits, as `time` does.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::Command;

use crate::run::{cannot_start_status, preload_value};
use crate::tracefile;

pub struct RecordConfig {
    pub output: PathBuf,
    pub stats: bool,
    pub lib: Option<PathBuf>,
    pub program: OsString,
    pub args: Vec<OsString>,
}

pub fn record(cfg: RecordConfig) -> Result<i32, String> {
    let preload = preload_value(cfg.lib, "record")?;
    let cwd = std::env::current_dir().map_err(|e| format!("record: no current directory: {e}"))?;
    let output = cwd.join(&cfg.output);
    if output.is_dir() {
        return Err(format!("record: {} is a directory", output.display()));
    }
    match output.parent() {
        Some(d) if d.is_dir() => {}
        _ => return Err(format!("record: cannot write {}: no such directory", output.display())),
    }
    // The library takes FILE only if it is free (else it writes FILE.PID): a new recording
    // replaces the old one.
    match std::fs::remove_file(&output) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("record: cannot replace {}: {e}", output.display())),
    }
    let session =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            ^ (std::process::id() as u64) << 40
            | 1;
    let mut cmd = Command::new(&cfg.program);
    cmd.args(&cfg.args)
        .env("LD_PRELOAD", preload)
        .env("PTALLOC_RECORD", &output)
        .env("PTALLOC_RECORD_SESSION", session.to_string());
    if cfg.stats {
        cmd.env("PTALLOC_STATS", "1");
    }
    // SAFETY: signal() is async-signal-safe; between fork and exec the child puts back the
    // default handling this process is about to turn off for itself.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ptalloc: record: cannot execute {}: {e}", cfg.program.to_string_lossy());
            return Ok(cannot_start_status(&e));
        }
    };
    // SAFETY: ignoring two signals in this process; nothing else here handles them.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let status = child.wait().map_err(|e| format!("record: waiting for the program: {e}"))?;

    let files = tracefile::session_files(&output);
    let mut code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    };
    if files.is_empty() {
        eprintln!(
            "ptalloc: record: {} wrote no trace (a statically linked program cannot be preloaded)",
            cfg.program.to_string_lossy()
        );
        if code == 0 {
            code = 1;
        }
    } else {
        let mut total = 0usize;
        let mut size = 0u64;
        for f in &files {
            size += std::fs::metadata(f).map_or(0, |m| m.len());
            match tracefile::count(f) {
                Ok(n) => total += n,
                Err(e) => eprintln!("ptalloc: record: {e}"),
            }
        }
        let children = if files.len() > 1 {
            let names: Vec<String> = files[1..].iter().map(|f| f.display().to_string()).collect();
            format!("; {} child processes: {}", files.len() - 1, names.join(", "))
        } else {
            String::new()
        };
        eprintln!(
            "ptalloc: record: {total} calls in {} ({}){children}",
            output.display(),
            crate::trace_stats::bytes(size),
        );
    }
    if let Some(sig) = status.signal() {
        eprintln!("ptalloc: record: the program was killed by signal {sig}");
        // SAFETY: the default action for the signal the program died of, then that signal.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
    Ok(code)
}
