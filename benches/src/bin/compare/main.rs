//! The comparison runner: every workload on every allocator, repeated, side by side.
//!
//! ```text
//! compare [--runs N] [--threads N] [--scale X] [--only WORKLOAD,...] [--svg FILE]
//!         [-- COMMAND ARGS...]
//! ```
//!
//! Two ways of running an allocator:
//! - as the Rust global allocator: `workload-ptalloc`, `workload-system` (glibc), and when
//!   built with `--features compare`, `workload-mimalloc` and `workload-jemalloc`;
//! - under `LD_PRELOAD`: `workload-system` (whose malloc is whatever library is preloaded) with
//!   libptalloc.so, and Debian's libjemalloc2, libmimalloc2.0 and libtcmalloc-minimal4 when
//!   installed. After `--`, any command is run the same way instead of the workloads.
//!
//! Each run happens in a fresh process; runs of the different allocators alternate, and the
//! table gives the median time, the median peak RSS (from `wait4`) and the ratio to glibc.
//! An allocator that is not available is skipped with a note.

mod options;
mod plan;
mod runs;

use ptalloc_benches::args::die;
use ptalloc_benches::svg;
use ptalloc_benches::tables::{self, Layout};

use crate::options::Parsed;

const NAME: &str = "compare";

fn main() {
    let o = match options::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            println!("{}", options::USAGE);
            return;
        }
        Err(e) => die(NAME, &e),
    };
    let plan = plan::plan(&o);
    let results = runs::run(&plan, o.runs);
    let layout = Layout {
        rows: "workload",
        time_caption: format!(
            "Time in seconds (ratio to glibc), median of {} runs; {} threads, scale {}.",
            o.runs, o.threads, o.scale
        ),
        rss_caption: "Peak RSS in MiB (ratio to glibc); for workloads that report it, peak live data in MiB."
            .into(),
        live: true,
        spread: false,
    };
    print!("{}", tables::render(&layout, &results, &plan.notes));
    if let Some(path) = &o.svg {
        if let Err(e) = std::fs::write(path, svg::chart(&results)) {
            die(NAME, &format!("cannot write {}: {e}", path.display()));
        }
        eprintln!("chart written to {}", path.display());
    }
}
