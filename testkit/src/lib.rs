//! Test machinery shared by ptalloc's crates, kept out of the allocator itself.
//!
//! - [`model`]: the model-based tester — an operation language over every malloc entry
//!   point and an executor that checks each result against C's promises; it drives the
//!   randomized tests on both kernels and the fuzz target.
//! - [`Rng`]: a seeded generator for the tests, the benchmark workloads and the
//!   demonstration.

pub mod model;
mod rng;

pub use rng::Rng;
