//! ptalloc's benchmarks: allocator workloads after the classic benchmarks, the programs that
//! run them on any allocator, and the comparison runners (`compare`, `compare-programs`,
//! `compare-standard`).
//!
//! Each workload runs on an allocator in one of two ways: as the program's Rust global
//! allocator (binaries `workload-ptalloc`, `workload-system`, and with feature `compare`
//! `workload-mimalloc` and `workload-jemalloc`), or through the C `malloc` of whatever
//! library is preloaded (`workload-system` under `LD_PRELOAD`).
//!
//! - [`workloads`]: the workloads, and the one list of them;
//! - [`cli`]: the `workload-*` programs' command line;
//! - [`args`], [`child`], [`stats`]: what the runners share — one-line complaints and
//!   numeric options, measuring one run of a program, medians and geometric means;
//! - [`allocators`], [`runs`], [`tables`], [`svg`]: what `compare` and `compare-standard`
//!   share — finding the allocators to preload, alternating runs and their results, the
//!   Markdown report and the chart.

pub mod allocators;
pub mod args;
pub mod child;
pub mod cli;
pub mod runs;
pub mod stats;
pub mod svg;
pub mod tables;
pub mod workloads;
