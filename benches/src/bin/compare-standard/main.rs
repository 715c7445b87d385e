//! The standard allocator benchmarks — the programs of mimalloc-bench's `bench/` folder that
//! allocators are judged on — under every installed allocator, side by side.
//!
//! ```text
//! compare-standard --bench DIR [--runs N] [--threads N] [--only NAME,...] [--svg FILE]
//!                  [--lib PATH] [--with NAME=PATH]... [--no-packaged] [--build-dir DIR]
//! ```
//!
//! DIR is the `bench/` folder of a mimalloc-bench checkout, which the person running the
//! benchmark fetches (nothing of it is in this repository). The runner reads the folder's
//! CMakeLists.txt and builds the programs it needs from it with `cc` and `c++` (no CMake;
//! see `cmake.rs` and `compile.rs`), into `target/standard-bench/` by default. Then it runs
//! each program with bench.sh's arguments (`programs.rs`) under glibc's malloc, libptalloc.so
//! and Debian's jemalloc, mimalloc and tcmalloc libraries where installed, all through
//! `LD_PRELOAD` (`--with NAME=PATH` adds a library, such as another build of ptalloc, and
//! `--no-packaged` leaves Debian's out): N runs of each (default 5), alternating, each a fresh process. It prints a
//! Markdown table of the median time (wall time, or bench.sh's relative time for the programs
//! that run for a fixed time), with the ratio to glibc and the range of the runs, and one of
//! the median peak RSS (from `wait4`); `--svg` also draws the time ratios.

mod cmake;
mod compile;
mod options;
mod plan;
mod programs;
mod runs;

use std::collections::BTreeSet;

use ptalloc_benches::allocators;
use ptalloc_benches::args::die;
use ptalloc_benches::svg;
use ptalloc_benches::tables::{self, Layout};

use crate::options::Parsed;

const NAME: &str = "compare-standard";

fn main() {
    let o = match options::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            println!("{}", options::USAGE);
            return;
        }
        Err(e) => die(NAME, &e),
    };
    allocators::warn_if_checked(
        NAME,
        std::iter::once(o.lib.as_path()).chain(o.with.iter().map(|(_, lib)| lib.as_path())),
    );
    let tc = compile::toolchain().unwrap_or_else(|e| die(NAME, &e));
    let lists = o.bench.join("CMakeLists.txt");
    let text =
        std::fs::read_to_string(&lists).unwrap_or_else(|e| die(NAME, &format!("{}: {e}", lists.display())));
    let project = cmake::read(&text, &tc.ids).unwrap_or_else(|e| die(NAME, &e));
    let wanted: BTreeSet<&str> = o.programs.iter().map(|p| p.target).collect();
    let (built, notes) = compile::build(&project, &wanted, &o.bench, &o.build_dir, &tc);
    let plan = plan::plan(&o, &built, notes);
    if plan.rows.is_empty() {
        die(NAME, "none of the programs could be built");
    }

    let results = runs::run(&plan, &o);
    let relative: Vec<&str> =
        plan.rows.iter().map(|r| r.program).filter(|p| p.is_relative()).map(|p| p.name).collect();
    let mut time_caption = format!(
        "Time in seconds (ratio to glibc) [fastest–slowest run], median of {} runs; {} threads; \
         built by {} with {}.",
        o.runs,
        o.threads,
        tc.version,
        compile::optimization()
    );
    if let Some((last, rest)) = relative.split_last() {
        time_caption += &if rest.is_empty() {
            format!(" {last} runs for a fixed time: its time is")
        } else {
            format!(" {} and {last} run for a fixed time: their time is", rest.join(", "))
        };
        time_caption += " the relative time bench.sh derives from the work reported (the inverse of \
                         the throughput), not wall time.";
    }
    let layout = Layout {
        rows: "program",
        time_caption,
        rss_caption: format!("Peak RSS in MiB (ratio to glibc), median of {} runs.", o.runs),
        live: false,
        spread: true,
    };
    print!("{}", tables::render(&layout, &results, &plan.notes));
    if let Some(path) = &o.svg {
        if let Err(e) = std::fs::write(path, svg::chart(&results)) {
            die(NAME, &format!("cannot write {}: {e}", path.display()));
        }
        eprintln!("chart written to {}", path.display());
    }
}
