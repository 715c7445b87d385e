//! Real programs on glibc's malloc and under libptalloc.so, side by side.
//!
//! `compare-programs [--runs N] [--lib PATH] [WORKLOAD...]` prepares the inputs of the
//! workloads in `preload/tests/programs/workload.sh` (the same ones the tests check for
//! identical output), then runs each workload N times on each allocator, alternating, and
//! prints a Markdown table: median wall time, the ptalloc/glibc ratio, and the median of the
//! peak resident set size (the largest process of the run's tree, from `wait4`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ptalloc_benches::median;

struct Sample {
    seconds: f64,
    max_rss_kib: u64,
}

fn workload_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../preload/tests/programs/workload.sh")
}

/// Run the command to completion; wall time and the peak RSS of its process tree.
fn measure(cmd: &mut Command) -> Result<Sample, String> {
    let start = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for the child we just spawned.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    if r < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("exit status {status:#x}"));
    }
    Ok(Sample { seconds, max_rss_kib: usage.ru_maxrss as u64 })
}

fn main() {
    let mut runs = 5usize;
    let mut lib: Option<PathBuf> = None;
    let mut only: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => runs = n,
                _ => die("--runs takes a positive number"),
            },
            "--lib" => lib = Some(PathBuf::from(args.next().unwrap_or_else(|| die("--lib needs a path")))),
            "--help" | "-h" => {
                println!("usage: compare-programs [--runs N] [--lib PATH] [WORKLOAD...]");
                return;
            }
            w if w.starts_with('-') => die(&format!("unknown option {w:?}")),
            w => only.push(w.to_string()),
        }
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let lib = lib.unwrap_or_else(|| target.join("release/libptalloc.so"));
    let lib = lib
        .canonicalize()
        .unwrap_or_else(|e| die(&format!("{}: {e} (build it with cargo build --release)", lib.display())));
    let script = workload_script();
    let dir = target.join("workloads");
    if !dir.join(".prepared").exists() {
        eprintln!("preparing inputs in {}", dir.display());
        let ok =
            Command::new(&script).arg("prepare").arg(&dir).status().map(|s| s.success()).unwrap_or(false);
        if !ok {
            die("preparing the workloads failed");
        }
        let _ = std::fs::write(dir.join(".prepared"), "");
    }
    let list = Command::new(&script).arg("list").output().unwrap_or_else(|e| die(&e.to_string()));
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(String::from)
        .filter(|n| only.is_empty() || only.contains(n))
        .collect();

    println!("| program | glibc (s) | ptalloc (s) | ptalloc / glibc | glibc peak RSS | ptalloc peak RSS |");
    println!("|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for name in &names {
        let mut g = Vec::new();
        let mut p = Vec::new();
        for _ in 0..runs {
            for ours in [false, true] {
                let mut cmd = Command::new(&script);
                cmd.args(["run", name]).arg(&dir).env_remove("PTALLOC_STATS");
                if ours {
                    cmd.env("LD_PRELOAD", &lib);
                } else {
                    cmd.env_remove("LD_PRELOAD");
                }
                // Each run in its own process group, so nothing it leaves behind lingers.
                cmd.process_group(0);
                match measure(&mut cmd) {
                    Ok(s) if ours => p.push(s),
                    Ok(s) => g.push(s),
                    Err(e) => {
                        die(&format!("{name} ({}) failed: {e}", if ours { "ptalloc" } else { "glibc" }))
                    }
                }
            }
        }
        let gt = median(g.iter().map(|s| s.seconds).collect());
        let pt = median(p.iter().map(|s| s.seconds).collect());
        let gr = median(g.iter().map(|s| s.max_rss_kib as f64).collect());
        let pr = median(p.iter().map(|s| s.max_rss_kib as f64).collect());
        ratios.push(pt / gt);
        println!(
            "| {name} | {gt:.3} | {pt:.3} | {:.2} | {:.1} MiB | {:.1} MiB |",
            pt / gt,
            gr / 1024.0,
            pr / 1024.0
        );
    }
    let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len().max(1) as f64).exp();
    println!("\ngeometric mean of ptalloc / glibc: {geo:.3} ({runs} runs of each, medians)");
}

fn die(msg: &str) -> ! {
    eprintln!("compare-programs: {msg}");
    std::process::exit(2);
}
