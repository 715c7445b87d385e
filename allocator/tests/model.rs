//! The model-based random test on the real kernel: every entry point, sizes from 0 to 4 MiB,
//! alignments up to 64 KiB, each block filled with a pattern and verified before it is freed
//! or reallocated, no two live blocks overlapping, and the heap checker run periodically.
//!
//! The test harness itself runs on ptalloc (it is this binary's global allocator), so every
//! collection the tester uses is more traffic through the allocator under test.

#[global_allocator]
static GLOBAL: ptalloc::PtAlloc = ptalloc::PtAlloc;

use std::sync::Arc;

use ptalloc_testkit::model::{decode, Mix, Model, RunStats};

const OPS: u64 = 1_000_000;

#[test]
fn one_million_operations_single_thread() {
    let model = Model::new(ptalloc::linux(), 2000);
    let stats = model.run_random(&Mix::default(), 0x5eed_0001, OPS, 5000).unwrap();
    model.drain(&mut RunStats::default()).unwrap();
    let report = ptalloc::linux().check_heap().unwrap();
    println!("{stats:?}\n{report:?}");
    assert_eq!(stats.ops, OPS);
    assert!(stats.allocations > OPS / 2, "the mix allocates on most operations");
    assert!(stats.failures_expected > 0, "invalid arguments were exercised");
}

#[test]
fn eight_threads_freeing_each_others_blocks() {
    let model = Arc::new(Model::new(ptalloc::linux(), 4000));
    let per_thread = OPS / 8;
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let model = model.clone();
            std::thread::spawn(move || {
                // Every thread draws slots from the whole table, so most frees and reallocs
                // hit blocks another thread allocated.
                let mix = Mix { slots: 4000, ..Mix::default() };
                model.run_random(&mix, 0xbeef_0000 + t, per_thread, if t == 0 { 20_000 } else { 0 })
            })
        })
        .collect();
    let mut total = RunStats::default();
    for t in threads {
        let s = t.join().unwrap().unwrap();
        total.ops += s.ops;
        total.allocations += s.allocations;
        total.frees += s.frees;
    }
    model.drain(&mut RunStats::default()).unwrap();
    let report = ptalloc::linux().check_heap().unwrap();
    println!("{total:?}\n{report:?}");
    assert_eq!(total.ops, OPS);
    assert!(report.arenas > 1, "threads were spread over several arenas");
}

#[test]
fn decoded_operations_replay() {
    // The fuzz target's language: decode a fixed byte string and run it.
    let bytes: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let ops = decode(&bytes, 64);
    assert!(ops.len() > 1000);
    let model = Model::new(ptalloc::linux(), 64);
    let mut stats = RunStats::default();
    for (i, op) in ops.iter().enumerate() {
        model.apply(*op, i as u64, &mut stats).unwrap_or_else(|e| panic!("op {i} {op:?}: {e}"));
    }
    model.drain(&mut stats).unwrap();
    ptalloc::linux().check_heap().unwrap();
}
