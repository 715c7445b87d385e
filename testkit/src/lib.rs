//! Test machinery shared by ptalloc's crates, kept out of the allocator itself.
//!
//! - [`model`]: the model-based tester — an operation language over every malloc entry
//!   point and an executor that checks each result against C's promises; it drives the
//!   randomized tests on both kernels and the fuzz target.
//! - [`Rng`]: a seeded generator for the tests, the benchmark workloads and the
//!   demonstration.
//! - [`harness`]: the test harness of the test files that run other programs (or this
//!   one again, in a child process): a test whose program is not installed is skipped, and
//!   says so, unless `PTALLOC_REQUIRE_ALL_TESTS=1`.
//! - [`program_workloads`]: the real programs' workloads (`workload.sh`), which preload's
//!   tests check and `compare-programs` times.

pub mod harness;
pub mod model;
pub mod program_workloads;
mod rng;

pub use rng::Rng;
