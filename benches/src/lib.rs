//! ptalloc's benchmarks: allocator workloads after the classic benchmarks, the programs that
//! run them on any allocator, and the comparison runner (`compare`).
//!
//! Each workload runs on an allocator in one of two ways: as the program's Rust global
//! allocator (binaries `workload-ptalloc`, `workload-system`, and with feature `compare`
//! `workload-mimalloc` and `workload-jemalloc`), or through the C `malloc` of whatever
//! library is preloaded (`workload-system` under `LD_PRELOAD`).

pub mod cli;
pub mod workloads;

/// The median of some samples (NaN for none), as the comparison runners report them.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
