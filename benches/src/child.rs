//! One run of a program, as the comparison runners measure it: wall time, and the peak
//! resident set size that `wait4` reports.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Instant;

/// A run that exited with status 0.
pub struct Finished {
    pub seconds: f64,
    /// What it wrote to stdout, if `cmd` had it piped (else empty).
    pub stdout: Vec<u8>,
    /// `ru_maxrss`: the peak RSS of the largest process of its tree (the child and the
    /// descendants it waited for), in KiB.
    pub max_rss_kib: u64,
}

/// Run `cmd` (with the stdio it was given) to completion, reading its stdout and stderr if
/// they are piped. Fails on any exit but status 0, saying the status and what it wrote to a
/// piped stderr.
pub fn run(cmd: &mut Command) -> Result<Finished, String> {
    // A child that std spawns with vfork (posix_spawn) starts its peak RSS at the runner's:
    // exec records the old address space's high-water mark in the process's `ru_maxrss`, and
    // after vfork that space is the runner's (a few MiB, above the peak of the smallest
    // programs). A real fork's copy holds only the runner's anonymous pages, below any
    // program's; an empty pre_exec hook is how std is told to fork.
    // SAFETY: the hook does nothing, so nothing in it can break between fork and exec.
    unsafe { cmd.pre_exec(|| Ok(())) };
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let mut stdout = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut stdout).map_err(|e| e.to_string())?;
    }
    let mut stderr = None;
    if let Some(mut s) = child.stderr.take() {
        let mut text = Vec::new();
        s.read_to_end(&mut text).map_err(|e| e.to_string())?;
        stderr = Some(text);
    }
    // std's `wait` gives no rusage, so the child is reaped here instead (std never waits for
    // it: `child` is only dropped, which closes handles and leaves the process alone).
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, which nothing else waits for; both pointers are to
    // live locals.
    let r = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    if r < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(match stderr {
            Some(text) => format!("exit status {status:#x}: {}", String::from_utf8_lossy(&text).trim()),
            None => format!("exit status {status:#x}"),
        });
    }
    Ok(Finished { seconds, stdout, max_rss_kib: usage.ru_maxrss as u64 })
}
