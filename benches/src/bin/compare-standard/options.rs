//! `compare-standard`'s command line.

use std::path::PathBuf;

use crate::programs::{Program, PROGRAMS};
use ptalloc_benches::allocators;
use ptalloc_benches::args::positive;

pub const USAGE: &str = "usage: compare-standard --bench DIR [--runs N] [--threads N] [--only NAME,...] \
                         [--svg FILE] [--lib PATH] [--with NAME=PATH]... [--no-packaged] [--build-dir DIR]\n\
                         DIR: the bench/ folder of a mimalloc-bench checkout (github.com/daanx/mimalloc-bench)\n\
                         --with NAME=PATH: one more library to preload, a column of its own (two builds side by side)\n\
                         --no-packaged: leave out Debian's jemalloc, mimalloc and tcmalloc";

pub struct Options {
    /// The folder, absolute (the programs run elsewhere, and get its files by path).
    pub bench: PathBuf,
    /// Runs of each allocator on each program.
    pub runs: usize,
    pub threads: usize,
    /// The programs to run, in the tables' order.
    pub programs: Vec<&'static Program>,
    pub svg: Option<PathBuf>,
    /// libptalloc.so.
    pub lib: PathBuf,
    /// More libraries to run as allocators of their own (`--with NAME=PATH`), in order.
    pub with: Vec<(String, PathBuf)>,
    /// Run Debian's packaged allocators too.
    pub packaged: bool,
    /// Where the programs are built (and run: rptest writes a file into its directory).
    pub build_dir: PathBuf,
}

pub enum Parsed {
    Run(Options),
    Help,
}

/// Read the arguments (the program's name excluded) and check the paths they name; an error
/// is the one line to print.
pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut bench = None;
    let mut runs = 5;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut only: Option<String> = None;
    let mut svg = None;
    let mut lib = None;
    let mut build_dir = None;
    let mut with = Vec::new();
    let mut packaged = true;
    while let Some(a) = args.next() {
        let mut path = |what: &str| args.next().map(PathBuf::from).ok_or(format!("{a} takes {what}"));
        match a.as_str() {
            "--bench" => bench = Some(path("a directory")?),
            "--svg" => svg = Some(path("a file")?),
            "--lib" => lib = Some(path("a path")?),
            "--build-dir" => build_dir = Some(path("a directory")?),
            "--runs" => runs = positive(&a, args.next().as_deref())?,
            "--threads" => threads = positive(&a, args.next().as_deref())?,
            "--only" => only = Some(args.next().ok_or("--only takes program names")?),
            "--with" => with.push(named_lib(args.next().as_deref())?),
            "--no-packaged" => packaged = false,
            "--help" | "-h" => return Ok(Parsed::Help),
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    let programs = match only {
        None => PROGRAMS.iter().collect(),
        Some(names) => select(&names)?,
    };
    let bench = bench.ok_or("--bench DIR is required: the bench/ folder of a mimalloc-bench checkout")?;
    if !bench.join("CMakeLists.txt").is_file() {
        return Err(format!(
            "{}: no CMakeLists.txt there (DIR is a mimalloc-bench checkout's bench/)",
            bench.display()
        ));
    }
    let bench = bench.canonicalize().map_err(|e| format!("{}: {e}", bench.display()))?;
    let lib = lib.unwrap_or_else(allocators::ptalloc_lib);
    let lib = lib.canonicalize().map_err(|e| {
        format!("{}: {e} (build it with cargo build --release, or give --lib)", lib.display())
    })?;
    let build_dir = build_dir.unwrap_or_else(|| {
        // The target directory: the parent of the `release/` this program runs from.
        let bin = allocators::bin_dir();
        bin.parent().unwrap_or(&bin).join("standard-bench")
    });
    Ok(Parsed::Run(Options { bench, runs, threads, programs, svg, lib, with, packaged, build_dir }))
}

/// `--with`'s NAME=PATH, the library made absolute (the programs run in another directory).
fn named_lib(arg: Option<&str>) -> Result<(String, PathBuf), String> {
    let arg = arg.ok_or("--with takes NAME=PATH")?;
    let Some((name, path)) = arg.split_once('=').filter(|(n, p)| !n.is_empty() && !p.is_empty()) else {
        return Err(format!("--with {arg:?}: expected NAME=PATH"));
    };
    if ["glibc", "ptalloc"].contains(&name) {
        return Err(format!("--with {arg:?}: {name} is already a column"));
    }
    let lib = PathBuf::from(path).canonicalize().map_err(|e| format!("{path}: {e}"))?;
    Ok((name.to_string(), lib))
}

/// The programs `--only` names, each by its row (`alloc-test1`) or its target (`alloc-test`:
/// all the rows that run it), in the tables' order.
fn select(names: &str) -> Result<Vec<&'static Program>, String> {
    let names: Vec<&str> = names.split(',').collect();
    if let Some(bad) = names.iter().find(|n| !PROGRAMS.iter().any(|p| p.name == **n || p.target == **n)) {
        let all: Vec<&str> = PROGRAMS.iter().map(|p| p.name).collect();
        return Err(format!("unknown program {bad:?} (one of {})", all.join(", ")));
    }
    Ok(PROGRAMS.iter().filter(|p| names.iter().any(|n| p.name == *n || p.target == *n)).collect())
}
