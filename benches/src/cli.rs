//! The command line shared by the `workload-*` programs:
//! `workload-X NAME [--threads N] [--scale X] [--seed N]` runs one workload on the program's
//! global allocator and prints `key=value` results (time, allocator calls, peak live bytes).

use std::alloc::GlobalAlloc;
use std::io::Write;
use std::time::Instant;

use crate::args::{die, positive};
use crate::workloads::{Params, Workload};

fn usage() -> String {
    format!("usage: workload NAME [--threads N] [--scale X] [--seed N]; NAME is one of {}", Workload::names())
}

/// Parse the arguments and run the workload on `alloc` (the program's global allocator).
pub fn main<A: GlobalAlloc + Sync>(alloc: &A) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("--help" | "-h")) {
        println!("{}", usage());
        return;
    }
    let (workload, p) = parse(&args).unwrap_or_else(|e| die("workload", &e));
    let start = Instant::now();
    let out = workload.run(alloc, &p);
    let secs = start.elapsed().as_secs_f64();
    let text = format!(
        "time_s={secs:.4}\ncalls={}\npeak_live={}\nchecksum={}\n",
        out.calls, out.peak_live, out.checksum
    );
    // A reader that stops early (`| head -1`) closes the pipe: not an error of ours, and
    // not worth the panic `println!` makes of it.
    let _ = std::io::stdout().write_all(text.as_bytes());
}

fn parse(args: &[String]) -> Result<(Workload, Params), String> {
    let Some(name) = args.first() else { return Err(usage()) };
    let workload = Workload::named(name).ok_or_else(|| format!("unknown workload {name:?}; {}", usage()))?;
    let mut p = Params { threads: 2, scale: 1.0, seed: 1 };
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--threads" => p.threads = positive(a, Some(v))?,
            "--scale" => p.scale = positive(a, Some(v))?,
            "--seed" => p.seed = v.parse().map_err(|_| "--seed takes a number")?,
            _ => return Err(format!("unknown option {a:?}; {}", usage())),
        }
    }
    Ok((workload, p))
}
