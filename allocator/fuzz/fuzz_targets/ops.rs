//! Fuzz the allocator with the model tester's operation language: the fuzzer's bytes decode
//! into malloc/calloc/realloc/memalign/free/trim/... operations on a table of 64 blocks, each
//! checked as the randomized tests check them. Run with `cargo fuzz run ops` in allocator/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ptalloc_testkit::model::{decode, Model, RunStats};

fuzz_target!(|data: &[u8]| {
    let model = Model::new(ptalloc::linux(), 64);
    let mut stats = RunStats::default();
    for (i, op) in decode(data, 64).into_iter().enumerate() {
        if let Err(e) = model.apply(op, i as u64, &mut stats) {
            panic!("operation {i} {op:?}: {e}");
        }
    }
    if let Err(e) = model.drain(&mut stats) {
        panic!("draining: {e}");
    }
    if let Err(e) = ptalloc::linux().check_heap() {
        panic!("heap check: {e}");
    }
});
