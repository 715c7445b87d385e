//! ptalloc's benchmarks: allocator workloads after the classic benchmarks, the programs that
//! run them on any allocator, and the comparison runner (`compare`).
//!
//! Each workload runs on an allocator in one of two ways: as the program's Rust global
//! allocator (binaries `workload-ptalloc`, `workload-system`, and with feature `compare`
//! `workload-mimalloc` and `workload-jemalloc`), or through the C `malloc` of whatever
//! library is preloaded (`workload-system` under `LD_PRELOAD`).

pub mod cli;
pub mod workloads;
