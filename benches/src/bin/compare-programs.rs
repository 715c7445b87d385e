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

use ptalloc_benches::args::{die, positive};
use ptalloc_benches::child;
use ptalloc_benches::stats::{geometric_mean, median};

const NAME: &str = "compare-programs";

fn workload_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../preload/tests/programs/workload.sh")
}

fn main() {
    let mut runs = 5usize;
    let mut lib: Option<PathBuf> = None;
    let mut only: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = positive("--runs", args.next().as_deref()).unwrap_or_else(|e| die(NAME, &e)),
            "--lib" => {
                lib = Some(PathBuf::from(args.next().unwrap_or_else(|| die(NAME, "--lib needs a path"))))
            }
            "--help" | "-h" => {
                println!("usage: compare-programs [--runs N] [--lib PATH] [WORKLOAD...]");
                return;
            }
            w if w.starts_with('-') => die(NAME, &format!("unknown option {w:?}")),
            w => only.push(w.to_string()),
        }
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let lib = lib.unwrap_or_else(|| target.join("release/libptalloc.so"));
    let lib = lib.canonicalize().unwrap_or_else(|e| {
        die(NAME, &format!("{}: {e} (build it with cargo build --release)", lib.display()))
    });
    let script = workload_script();
    let dir = target.join("workloads");
    if !dir.join(".prepared").exists() {
        eprintln!("preparing inputs in {}", dir.display());
        let ok =
            Command::new(&script).arg("prepare").arg(&dir).status().map(|s| s.success()).unwrap_or(false);
        if !ok {
            die(NAME, "preparing the workloads failed");
        }
        let _ = std::fs::write(dir.join(".prepared"), "");
    }
    let list = Command::new(&script).arg("list").output().unwrap_or_else(|e| die(NAME, &e.to_string()));
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
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
                match child::run(&mut cmd) {
                    Ok(s) if ours => p.push(s),
                    Ok(s) => g.push(s),
                    Err(e) => {
                        die(NAME, &format!("{name} ({}) failed: {e}", if ours { "ptalloc" } else { "glibc" }))
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
    let geo = geometric_mean(&ratios);
    println!("\ngeometric mean of ptalloc / glibc: {geo:.3} ({runs} runs of each, medians)");
}
