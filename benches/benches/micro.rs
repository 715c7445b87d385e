//! Micro-benchmarks through `GlobalAlloc`, each for ptalloc, the system allocator (glibc),
//! mimalloc and jemalloc: alloc/dealloc pairs by size, batches freed in LIFO, FIFO and random
//! order, realloc growth, calloc, frees from another thread, and many-thread churn.
//!
//! `cargo bench -p ptalloc-benches --features compare --bench micro`
//!
//! Each allocator is measured in a process of its own (the binary re-runs itself once per
//! allocator), and criterion's own allocations go to mimalloc, which does not use `brk`:
//! ptalloc and glibc both grow their heaps with `brk`, and a second heap moving the break
//! stops the first one's top chunk from growing in place (a realloc that should extend into
//! top copies instead), which would measure the neighbour rather than the allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::{exit, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion};
use mimalloc::MiMalloc;
use ptalloc::PtAlloc;
use ptalloc_testkit::Rng;
use tikv_jemallocator::Jemalloc;

/// The harness's allocator: not one that uses `brk` (see the module comment).
#[global_allocator]
static HARNESS: MiMalloc = MiMalloc;

const ALLOCATORS: [&str; 4] = ["ptalloc", "glibc", "mimalloc", "jemalloc"];
const SELECT_VAR: &str = "PTALLOC_MICRO_ALLOCATOR";

/// Whether this process measures allocator `name`.
fn selected(name: &str) -> bool {
    static SELECTED: OnceLock<String> = OnceLock::new();
    SELECTED.get_or_init(|| std::env::var(SELECT_VAR).unwrap_or_default()) == name
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

/// Run `$body` once per allocator, with `$a` bound to it (static dispatch for each).
/// Only the allocator this process measures runs.
macro_rules! for_each_allocator {
    ($name:ident, $a:ident, $body:block) => {{
        if selected("ptalloc") {
            let $name = "ptalloc";
            let $a = &PtAlloc;
            $body
        }
        if selected("glibc") {
            let $name = "glibc";
            let $a = &System;
            $body
        }
        if selected("mimalloc") {
            let $name = "mimalloc";
            let $a = &MiMalloc;
            $body
        }
        if selected("jemalloc") {
            let $name = "jemalloc";
            let $a = &Jemalloc;
            $body
        }
    }};
}

fn pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair");
    for size in [16usize, 64, 256, 1024, 4096, 16 << 10, 64 << 10, 256 << 10, 1 << 20] {
        for_each_allocator!(name, a, {
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                b.iter(|| {
                    // SAFETY: a valid layout; the block is freed at once.
                    unsafe {
                        let p = a.alloc(layout(black_box(size)));
                        p.write(1);
                        a.dealloc(black_box(p), layout(size));
                    }
                })
            });
        });
    }
    g.finish();
}

#[derive(Clone, Copy)]
enum Order {
    Lifo,
    Fifo,
    Random,
}

fn batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch-1000x64B");
    for (label, order) in [("lifo", Order::Lifo), ("fifo", Order::Fifo), ("random", Order::Random)] {
        for_each_allocator!(name, a, {
            let mut ptrs: Vec<*mut u8> = Vec::with_capacity(1000);
            let mut perm: Vec<usize> = (0..1000).collect();
            let mut rng = Rng::new(7);
            for i in (1..perm.len()).rev() {
                perm.swap(i, rng.below(i as u64 + 1) as usize);
            }
            g.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| {
                    // SAFETY: valid layouts; every block is freed once.
                    unsafe {
                        for _ in 0..1000 {
                            ptrs.push(a.alloc(layout(64)));
                        }
                        match order {
                            Order::Lifo => ptrs.iter().rev().for_each(|&p| a.dealloc(p, layout(64))),
                            Order::Fifo => ptrs.iter().for_each(|&p| a.dealloc(p, layout(64))),
                            Order::Random => perm.iter().for_each(|&i| a.dealloc(ptrs[i], layout(64))),
                        }
                        ptrs.clear();
                    }
                })
            });
        });
    }
    g.finish();
}

fn realloc_growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("realloc-16B-to-1MiB");
    for_each_allocator!(name, a, {
        g.bench_function(name, |b| {
            b.iter(|| {
                // SAFETY: each realloc gets the block's current layout; the last one is freed.
                unsafe {
                    let mut size = 16;
                    let mut p = a.alloc(layout(size));
                    while size < 1 << 20 {
                        let new = size * 2;
                        p = a.realloc(p, layout(size), new);
                        p.add(new - 1).write(1);
                        size = new;
                    }
                    a.dealloc(black_box(p), layout(size));
                }
            })
        });
    });
    g.finish();
}

fn calloc(c: &mut Criterion) {
    let mut g = c.benchmark_group("calloc");
    for size in [4096usize, 256 << 10] {
        for_each_allocator!(name, a, {
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                b.iter(|| {
                    // SAFETY: a valid layout; the block is freed at once.
                    unsafe {
                        // black_box: the compiler may otherwise drop a calloc+free pair
                        // whose memory it knows to be zero.
                        let p = black_box(a.alloc_zeroed(layout(size)));
                        black_box(p.add(size / 2).read());
                        a.dealloc(p, layout(size));
                    }
                })
            });
        });
    }
    g.finish();
}

/// Blocks allocated by one thread and freed by another, in batches of 256.
fn cross_thread<A: GlobalAlloc + Sync>(a: &A, batches: u64) -> Duration {
    let queue: Mutex<Vec<Vec<usize>>> = Mutex::new(Vec::with_capacity(1024));
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..batches {
                // SAFETY: valid layouts.
                let batch: Vec<usize> =
                    (0..256).map(|i| unsafe { a.alloc(layout(16 + i % 200)) } as usize).collect();
                queue.lock().unwrap().push(batch);
            }
        });
        s.spawn(|| {
            let mut done = 0;
            while done < batches {
                let got: Vec<Vec<usize>> = std::mem::take(&mut *queue.lock().unwrap());
                if got.is_empty() {
                    std::thread::yield_now();
                }
                for batch in got {
                    for (i, p) in batch.into_iter().enumerate() {
                        // SAFETY: a block the producer allocated with this layout.
                        unsafe { a.dealloc(p as *mut u8, layout(16 + i % 200)) };
                    }
                    done += 1;
                }
            }
        });
    });
    start.elapsed()
}

fn producer_consumer(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross-thread-free-256-blocks");
    for_each_allocator!(name, a, {
        g.bench_function(name, |b| b.iter_custom(|iters| cross_thread(a, iters)));
    });
    g.finish();
}

/// Four threads each allocating and freeing random small blocks, 64 held at a time.
fn churn<A: GlobalAlloc + Sync>(a: &A, rounds: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                let mut rng = Rng::new(t);
                let mut held = [(0usize, 0usize); 64];
                for _ in 0..rounds {
                    for slot in held.iter_mut() {
                        if slot.0 != 0 {
                            // SAFETY: a live block with this layout.
                            unsafe { a.dealloc(slot.0 as *mut u8, layout(slot.1)) };
                        }
                        let size = 16 + rng.below(500) as usize;
                        // SAFETY: a valid layout.
                        *slot = (unsafe { a.alloc(layout(size)) } as usize, size);
                    }
                }
                for slot in held {
                    // SAFETY: live blocks.
                    unsafe { a.dealloc(slot.0 as *mut u8, layout(slot.1)) };
                }
            });
        }
    });
    start.elapsed()
}

fn many_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("4-thread-churn-64-blocks");
    for_each_allocator!(name, a, {
        g.bench_function(name, |b| b.iter_custom(|iters| churn(a, iters)));
    });
    g.finish();
}

criterion_group!(benches, pairs, batches, realloc_growth, calloc, producer_consumer, many_threads);
/// With no allocator selected, run this binary once per allocator with the same arguments;
/// with one selected, run criterion on it.
fn main() {
    if std::env::var_os(SELECT_VAR).is_some() {
        benches();
        Criterion::default().configure_from_args().final_summary();
        return;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| {
        eprintln!("micro: cannot find this benchmark's executable: {e}");
        exit(1)
    });
    for name in ALLOCATORS {
        let status = Command::new(&exe).args(std::env::args_os().skip(1)).env(SELECT_VAR, name).status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("micro: the {name} run failed ({s})");
                exit(1)
            }
            Err(e) => {
                eprintln!("micro: cannot run {}: {e}", exe.display());
                exit(1)
            }
        }
    }
}
