//! The thread-cache fast path, for instruction counting: `fastpath ALLOCATOR N` makes N
//! `alloc(32)` + `dealloc` pairs through `GlobalAlloc`. Run it under
//! `valgrind --tool=callgrind` for two values of N: the difference in instructions divided
//! by the difference in N is the cost of one loop iteration, start-up excluded. The `null`
//! allocator (returns a fixed block, frees nothing) measures the loop itself, to subtract.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

#[inline(never)]
fn pairs<A: GlobalAlloc>(a: &A, n: u64) {
    for _ in 0..n {
        // The size is opaque to the compiler (as a real program's would be); the alignment
        // is the constant a `Box<[u64; 4]>` would have.
        // SAFETY: a valid non-zero layout; the block is released at once.
        unsafe {
            let layout = Layout::from_size_align_unchecked(black_box(32), 8);
            let p = a.alloc(layout);
            a.dealloc(black_box(p), layout);
        }
    }
}

/// The benchmark loop's own cost: an "allocator" that hands out one static block.
struct NullAlloc;

static mut BLOCK: [u64; 4] = [0; 4];

// SAFETY: never used for real storage; the block is only passed around.
unsafe impl GlobalAlloc for NullAlloc {
    #[inline(always)]
    unsafe fn alloc(&self, _layout: Layout) -> *mut u8 {
        core::ptr::addr_of_mut!(BLOCK) as *mut u8
    }
    #[inline(always)]
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: fastpath ptalloc|system|null N";
    if args.len() != 3 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let Ok(n) = args[2].parse::<u64>() else {
        eprintln!("fastpath: N must be a number ({usage})");
        std::process::exit(2);
    };
    match args[1].as_str() {
        "ptalloc" => pairs(&ptalloc::PtAlloc, n),
        "system" => pairs(&System, n),
        "null" => pairs(&NullAlloc, n),
        other => {
            eprintln!("fastpath: unknown allocator {other:?} ({usage})");
            std::process::exit(2);
        }
    }
}
