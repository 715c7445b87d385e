//! `compare`'s command line.

use std::path::PathBuf;

use ptalloc_benches::args::positive;
use ptalloc_benches::workloads::Workload;

pub const USAGE: &str =
    "usage: compare [--runs N] [--threads N] [--scale X] [--only W,...] [--svg FILE] [-- COMMAND ARGS...]";

pub struct Options {
    /// Runs of each allocator (on each workload).
    pub runs: usize,
    pub threads: usize,
    pub scale: f64,
    /// The workloads to run (`--only`); None: all of them.
    pub only: Option<Vec<Workload>>,
    /// Where to write the chart, if anywhere.
    pub svg: Option<PathBuf>,
    /// The command given after `--`, run instead of the workloads; empty if none.
    pub command: Vec<String>,
}

pub enum Parsed {
    Run(Options),
    Help,
}

/// Read the arguments (the program's name excluded); an error is the one line to print.
pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut o = Options { runs: 5, threads: 2, scale: 1.0, only: None, svg: None, command: Vec::new() };
    let mut only: Option<Vec<String>> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => o.runs = positive(&a, args.next().as_deref())?,
            "--threads" => o.threads = positive(&a, args.next().as_deref())?,
            "--scale" => o.scale = positive(&a, args.next().as_deref())?,
            "--only" => {
                let names = args.next().ok_or("--only takes workload names")?;
                only = Some(names.split(',').map(String::from).collect());
            }
            "--svg" => o.svg = Some(PathBuf::from(args.next().ok_or("--svg takes a file")?)),
            "--" => {
                o.command = args.by_ref().collect();
                if o.command.is_empty() {
                    return Err("nothing after --".into());
                }
            }
            "--help" | "-h" => return Ok(Parsed::Help),
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    if let Some(names) = only {
        let workloads = names
            .iter()
            .map(|n| {
                Workload::named(n)
                    .ok_or_else(|| format!("unknown workload {n:?} (one of {})", Workload::names()))
            })
            .collect::<Result<_, _>>()?;
        o.only = Some(workloads);
    }
    Ok(Parsed::Run(o))
}
