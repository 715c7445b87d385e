//! The command line shared by the `workload-*` programs:
//! `workload-X NAME [--threads N] [--scale X] [--seed N]` runs one workload on the program's
//! global allocator and prints `key=value` results (time, allocator calls, peak live bytes).

use std::alloc::GlobalAlloc;
use std::time::Instant;

use crate::workloads::{Dispatch, Params, WORKLOADS};

fn usage() -> String {
    let names: Vec<&str> = WORKLOADS.iter().map(|w| w.0).collect();
    format!("usage: workload NAME [--threads N] [--scale X] [--seed N]; NAME is one of {}", names.join(", "))
}

fn die(msg: &str) -> ! {
    eprintln!("workload: {msg}");
    std::process::exit(2);
}

/// Parse the arguments and run the workload on `alloc` (the program's global allocator).
pub fn main<A: GlobalAlloc + Sync>(alloc: &A) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else { die(&usage()) };
    if name == "--help" || name == "-h" {
        println!("{}", usage());
        return;
    }
    if !WORKLOADS.iter().any(|w| w.0 == name) {
        die(&format!("unknown workload {name:?}; {}", usage()));
    }
    let mut p = Params { threads: 2, scale: 1.0, seed: 1 };
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| die(&format!("{a} needs a value")));
        match a.as_str() {
            "--threads" => {
                p.threads = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| die("--threads takes a positive number"))
            }
            "--scale" => {
                p.scale = v
                    .parse()
                    .ok()
                    .filter(|&s: &f64| s > 0.0)
                    .unwrap_or_else(|| die("--scale takes a positive number"))
            }
            "--seed" => p.seed = v.parse().unwrap_or_else(|_| die("--seed takes a number")),
            _ => die(&format!("unknown option {a:?}; {}", usage())),
        }
    }
    let start = Instant::now();
    let out = alloc.run(name, &p).expect("known workload");
    let secs = start.elapsed().as_secs_f64();
    println!("time_s={secs:.4}");
    println!("calls={}", out.calls);
    println!("peak_live={}", out.peak_live);
    println!("checksum={}", out.checksum);
}
