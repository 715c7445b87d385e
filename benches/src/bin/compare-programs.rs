//! Real programs on glibc's malloc and under libptalloc.so, side by side.
//!
//! `compare-programs [--runs N] [--lib PATH] [WORKLOAD...]` prepares the inputs of the
//! workloads in `preload/tests/programs/workload.sh` (the same ones the tests check for
//! identical output), then runs each workload N times on each allocator, alternating, and
//! prints a Markdown table: median wall time, the ptalloc/glibc ratio, and the median of the
//! peak resident set size (the largest process of the run's tree, from `wait4`).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ptalloc_benches::args::{die, positive};
use ptalloc_benches::child::{self, Finished};
use ptalloc_benches::stats::{geometric_mean, median};
use ptalloc_testkit::program_workloads;

const NAME: &str = "compare-programs";
const USAGE: &str = "usage: compare-programs [--runs N] [--lib PATH] [WORKLOAD...]";

struct Options {
    runs: usize,
    lib: Option<PathBuf>,
    /// The workloads named on the command line; empty: all of them.
    only: Vec<String>,
}

fn main() {
    let Some(o) = parse(std::env::args().skip(1)).unwrap_or_else(|e| die(NAME, &e)) else {
        println!("{USAGE}");
        return;
    };
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let lib = o.lib.unwrap_or_else(|| target.join("release/libptalloc.so"));
    let lib = lib.canonicalize().unwrap_or_else(|e| {
        die(NAME, &format!("{}: {e} (build it with cargo build --release)", lib.display()))
    });
    ptalloc_benches::allocators::warn_if_checked(NAME, [lib.as_path()]);
    let dir = target.join("workloads");
    if !program_workloads::is_prepared(&dir) {
        eprintln!("preparing inputs in {}", dir.display());
        program_workloads::prepare(&dir).unwrap_or_else(|e| die(NAME, &e));
    }
    let names: Vec<String> = program_workloads::names()
        .unwrap_or_else(|e| die(NAME, &e))
        .into_iter()
        .filter(|n| o.only.is_empty() || o.only.contains(n))
        .collect();

    println!("| program | glibc (s) | ptalloc (s) | ptalloc / glibc | glibc peak RSS | ptalloc peak RSS |");
    println!("|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for name in &names {
        let [g, p] = run_alternating(name, &dir, &lib, o.runs);
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
    println!("\ngeometric mean of ptalloc / glibc: {geo:.3} ({} runs of each, medians)", o.runs);
}

/// The options, or None for `--help`; an error is the one line to print.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut o = Options { runs: 5, lib: None, only: Vec::new() };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => o.runs = positive(&a, args.next().as_deref())?,
            "--lib" => o.lib = Some(PathBuf::from(args.next().ok_or("--lib needs a path")?)),
            "--help" | "-h" => return Ok(None),
            w if w.starts_with('-') => return Err(format!("unknown option {w:?}")),
            w => o.only.push(w.to_string()),
        }
    }
    Ok(Some(o))
}

/// `runs` runs of the workload on glibc and as many under `lib`, alternating: [glibc, ptalloc].
/// Any failure ends the program: a table with a run missing would mislead.
fn run_alternating(name: &str, dir: &Path, lib: &Path, runs: usize) -> [Vec<Finished>; 2] {
    let mut samples = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (ours, samples) in samples.iter_mut().enumerate() {
            let mut cmd = program_workloads::command(name, dir);
            cmd.env_remove("PTALLOC_STATS");
            if ours == 1 {
                cmd.env("LD_PRELOAD", lib);
            } else {
                cmd.env_remove("LD_PRELOAD");
            }
            // Each run in its own process group, so nothing it leaves behind lingers.
            cmd.process_group(0).stdout(Stdio::null()).stderr(Stdio::null());
            match child::run(&mut cmd) {
                Ok(s) => samples.push(s),
                Err(e) => die(NAME, &format!("{name} ({}) failed: {e}", ["glibc", "ptalloc"][ours])),
            }
        }
    }
    samples
}
