//! Allocator workloads after the classic benchmarks (larson, xmalloc-test, cache-scratch,
//! cache-thrash, mstress, and a fragmentation test), each generic over the allocator it
//! runs on. The workloads reserve their own bookkeeping before they start, so the measured
//! part calls nothing but the allocator under test.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Condvar, Mutex};

use ptalloc_testkit::Rng;

/// What a run reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Allocator calls made (malloc + free + realloc).
    pub calls: u64,
    /// Most bytes the workload held at once (blocks' requested sizes).
    pub peak_live: u64,
    /// A value that depends on the memory's contents, so nothing is optimised away.
    pub checksum: u64,
}

/// Sizes of a workload: `scale` multiplies its operation counts.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub threads: usize,
    pub scale: f64,
    pub seed: u64,
}

/// The layout of a `size`-byte block, aligned as malloc aligns a block that small (up to
/// 16): with an alignment above the size, Rust's `System` allocator calls `posix_memalign`
/// instead of `malloc`, and the workloads are meant to measure `malloc`.
fn layout(size: usize) -> Layout {
    let size = size.max(1);
    let align = (1usize << size.ilog2()).min(16);
    // SAFETY: size is non-zero and small; align is a power of two no larger than 16.
    unsafe { Layout::from_size_align_unchecked(size, align) }
}

/// Allocate, and write the first and last byte so the memory is really used.
#[inline]
fn get<A: GlobalAlloc>(a: &A, size: usize, tag: u8) -> *mut u8 {
    // SAFETY: a valid layout.
    let p = unsafe { a.alloc(layout(size)) };
    if p.is_null() {
        std::process::abort();
    }
    // SAFETY: inside the new block.
    unsafe {
        p.write(tag);
        p.add(size.max(1) - 1).write(tag);
    }
    p
}

#[inline]
fn put<A: GlobalAlloc>(a: &A, p: *mut u8, size: usize) -> u64 {
    // SAFETY: a live block of this size from `a`; its first byte was written by `get`.
    unsafe {
        let v = p.read() as u64;
        a.dealloc(p, layout(size));
        v
    }
}

fn scaled(n: u64, p: &Params) -> u64 {
    ((n as f64 * p.scale) as u64).max(1)
}

/// larson: a server that hands its connections on. Each thread owns a table of blocks and
/// replaces random ones (free, then malloc of 16–1000 bytes); after a round it hands the
/// table to a newly started thread and exits, so most frees release blocks another thread
/// allocated, and threads keep coming and going.
pub fn larson<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> Outcome {
    const SLOTS: usize = 2000;
    let rounds = 20;
    let per_round = scaled(1_200_000, p) as usize;
    let checksum = AtomicUsize::new(0);
    let calls = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..p.threads {
            let (checksum, calls) = (&checksum, &calls);
            s.spawn(move || {
                let mut table: Vec<(usize, usize)> = Vec::with_capacity(SLOTS);
                let mut rng = Rng::new(p.seed + t as u64);
                for i in 0..SLOTS {
                    let size = 16 + rng.below(985) as usize;
                    table.push((get(a, size, i as u8) as usize, size));
                }
                for round in 0..rounds {
                    // A new thread for each round takes the table over.
                    let (t2, sum) = std::thread::scope(|s2| {
                        s2.spawn(|| {
                            let mut rng = Rng::new(p.seed * 31 + (t * rounds + round) as u64);
                            let mut sum = 0u64;
                            for _ in 0..per_round {
                                let i = rng.below(SLOTS as u64) as usize;
                                let (q, size) = table[i];
                                sum += put(a, q as *mut u8, size);
                                let size = 16 + rng.below(985) as usize;
                                table[i] = (get(a, size, i as u8) as usize, size);
                            }
                            (std::mem::take(&mut table), sum)
                        })
                        .join()
                        .unwrap()
                    });
                    table = t2;
                    checksum.fetch_add(sum as usize, Ordering::Relaxed);
                    calls.fetch_add(2 * per_round, Ordering::Relaxed);
                }
                for (q, size) in table {
                    put(a, q as *mut u8, size);
                }
            });
        }
    });
    Outcome {
        calls: calls.into_inner() as u64,
        peak_live: (p.threads * SLOTS * 508) as u64,
        checksum: checksum.into_inner() as u64,
    }
}

/// A batch of blocks handed from a producer to a consumer.
struct Batch {
    blocks: [usize; 64],
    sizes: [u16; 64],
}

/// A bounded hand-off between one producer and one consumer; both sleep rather than spin
/// (with as many threads as cores, a spinning waiter takes the core its partner needs).
struct Handoff {
    queue: Mutex<Vec<Batch>>,
    not_empty: Condvar,
    not_full: Condvar,
}

/// xmalloc-test: producers allocate, consumers free. Threads are paired; each producer fills
/// batches of 64 blocks (16–1024 bytes) and hands them over through a bounded queue; its
/// consumer frees them. Nearly every free is of another thread's block.
pub fn xmalloc<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> Outcome {
    const QUEUE: usize = 64;
    let pairs = (p.threads / 2).max(1);
    let batches = scaled(80_000, p) as usize;
    let handoffs: Vec<Handoff> = (0..pairs)
        .map(|_| Handoff {
            queue: Mutex::new(Vec::with_capacity(QUEUE)),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
        })
        .collect();
    let checksum = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for (pair, h) in handoffs.iter().enumerate() {
            s.spawn(move || {
                let mut rng = Rng::new(p.seed + pair as u64);
                for _ in 0..batches {
                    let mut b = Batch { blocks: [0; 64], sizes: [0; 64] };
                    for i in 0..64 {
                        let size = 16 + rng.below(1009) as usize;
                        b.blocks[i] = get(a, size, i as u8) as usize;
                        b.sizes[i] = size as u16;
                    }
                    let mut q = h.not_full.wait_while(h.queue.lock().unwrap(), |q| q.len() >= QUEUE).unwrap();
                    q.push(b);
                    drop(q);
                    h.not_empty.notify_one();
                }
            });
            let checksum = &checksum;
            s.spawn(move || {
                let mut freed = 0;
                let mut sum = 0u64;
                let mut local: Vec<Batch> = Vec::with_capacity(QUEUE);
                while freed < batches {
                    let mut q = h.not_empty.wait_while(h.queue.lock().unwrap(), |q| q.is_empty()).unwrap();
                    std::mem::swap(&mut *q, &mut local);
                    drop(q);
                    h.not_full.notify_one();
                    for b in local.drain(..) {
                        for i in 0..64 {
                            sum += put(a, b.blocks[i] as *mut u8, b.sizes[i] as usize);
                        }
                        freed += 1;
                    }
                }
                checksum.fetch_add(sum as usize, Ordering::Relaxed);
            });
        }
    });
    Outcome {
        calls: (pairs * batches * 64 * 2) as u64,
        peak_live: (pairs * QUEUE * 64 * 520) as u64,
        checksum: checksum.into_inner() as u64,
    }
}

/// Write to every byte of a small object `rounds` times (the false-sharing probe).
#[inline(never)]
fn hammer(q: *mut u8, size: usize, rounds: usize) -> u64 {
    let mut v = 0u64;
    for r in 0..rounds {
        for j in 0..size {
            // SAFETY: inside the object; volatile so every write reaches memory.
            unsafe {
                let c = q.add(j);
                c.write_volatile(c.read_volatile().wrapping_add(r as u8));
            }
        }
        // SAFETY: inside the object.
        v = v.wrapping_add(unsafe { q.read_volatile() } as u64);
    }
    v
}

/// The false-sharing loop of cache-thrash and cache-scratch: allocate an 8-byte object,
/// write it 50 times over, free it; `iterations` times. Returns a checksum.
fn allocate_and_hammer<A: GlobalAlloc>(a: &A, iterations: usize) -> usize {
    let mut sum = 0u64;
    for _ in 0..iterations {
        let q = get(a, 8, 1);
        sum = sum.wrapping_add(hammer(q, 8, 50));
        put(a, q, 8);
    }
    sum as usize
}

/// cache-thrash (active false sharing): every thread repeatedly allocates a small object,
/// writes it many times, and frees it. An allocator that gives threads objects on the same
/// cache line makes them fight over it.
pub fn cache_thrash<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> Outcome {
    false_sharing(a, p, scaled(4_000_000, p) as usize, false)
}

/// cache-scratch (passive false sharing): the main thread allocates one small object per
/// thread, side by side, and hands them out; each thread frees its object and then
/// allocates, writes and frees small objects in a loop. An allocator that reuses the freed
/// object (next to the other threads') makes the threads share cache lines.
pub fn cache_scratch<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> Outcome {
    false_sharing(a, p, scaled(1_000_000, p) as usize, true)
}

/// The two false-sharing tests: each thread runs `allocate_and_hammer`, after freeing an
/// object the main thread allocated for it if `hand_out`.
fn false_sharing<A: GlobalAlloc + Sync>(a: &A, p: &Params, iterations: usize, hand_out: bool) -> Outcome {
    let objects: Vec<usize> =
        (0..p.threads).map(|i| if hand_out { get(a, 8, i as u8) as usize } else { 0 }).collect();
    let checksum = AtomicUsize::new(0);
    let barrier = Barrier::new(p.threads);
    std::thread::scope(|s| {
        for &first in &objects {
            let (checksum, barrier) = (&checksum, &barrier);
            s.spawn(move || {
                if first != 0 {
                    put(a, first as *mut u8, 8);
                }
                barrier.wait();
                checksum.fetch_add(allocate_and_hammer(a, iterations), Ordering::Relaxed);
            });
        }
    });
    Outcome {
        calls: (p.threads * iterations * 2) as u64,
        peak_live: (p.threads * 8) as u64,
        checksum: checksum.into_inner() as u64,
    }
}

/// mstress: objects migrate between threads. All threads share a table of slots; each step
/// a thread allocates a block (mostly small, some up to 256 KiB) and swaps it into a random
/// slot, freeing whatever was there — usually another thread's block. Some slots are
/// long-lived: they change only rarely.
pub fn mstress<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> Outcome {
    const SLOTS: usize = 20_000;
    let steps = scaled(2_000_000, p) as usize;
    // A slot is a block address and its size, swapped together under one of a few striped
    // locks (taken only for the swap, never while allocating).
    let slots: Vec<AtomicUsize> = (0..SLOTS).map(|_| AtomicUsize::new(0)).collect();
    let sizes: Vec<AtomicUsize> = (0..SLOTS).map(|_| AtomicUsize::new(0)).collect();
    let locks: Vec<Mutex<()>> = (0..SLOTS.div_ceil(64)).map(|_| Mutex::new(())).collect();
    let live = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let checksum = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..p.threads {
            let (slots, sizes, locks, live, peak, checksum) =
                (&slots, &sizes, &locks, &live, &peak, &checksum);
            s.spawn(move || {
                let mut rng = Rng::new(p.seed + 77 * t as u64);
                let mut sum = 0u64;
                for _ in 0..steps {
                    let r = rng.below(1000);
                    let size = if r < 900 {
                        16 + rng.below(240) as usize
                    } else if r < 990 {
                        256 + rng.below(8 << 10) as usize
                    } else {
                        (8 << 10) + rng.below(248 << 10) as usize
                    };
                    // The first tenth of the slots is long-lived: replaced 1 time in 20.
                    let mut i = rng.below(SLOTS as u64) as usize;
                    if i < SLOTS / 10 && rng.below(20) != 0 {
                        i += SLOTS / 10;
                    }
                    let q = get(a, size, t as u8);
                    let (old, old_size) = {
                        let _g = locks[i / 64].lock().unwrap();
                        (slots[i].swap(q as usize, Ordering::Relaxed), sizes[i].swap(size, Ordering::Relaxed))
                    };
                    let now = live.fetch_add(size, Ordering::Relaxed) + size;
                    peak.fetch_max(now, Ordering::Relaxed);
                    if old != 0 {
                        sum += put(a, old as *mut u8, old_size);
                        live.fetch_sub(old_size, Ordering::Relaxed);
                    }
                }
                checksum.fetch_add(sum as usize, Ordering::Relaxed);
            });
        }
    });
    for i in 0..SLOTS {
        let q = slots[i].load(Ordering::Relaxed);
        if q != 0 {
            put(a, q as *mut u8, sizes[i].load(Ordering::Relaxed));
        }
    }
    Outcome {
        calls: (p.threads * steps * 2) as u64,
        peak_live: peak.into_inner() as u64,
        checksum: checksum.into_inner() as u64,
    }
}

/// Fragmentation: phases of allocating many blocks of one size range, then freeing a random
/// two thirds of them, leaving holes that the next phase's (larger) sizes do not fit. Live
/// data stays bounded; what matters is how much memory the allocator holds for it (peak RSS
/// against peak live bytes).
pub fn fragmentation<A: GlobalAlloc + Sync>(a: &A, p: &Params) -> Outcome {
    let per_phase = scaled(240_000, p) as usize;
    let phases = 12;
    let mut rng = Rng::new(p.seed);
    let mut held: Vec<(usize, usize)> = Vec::with_capacity(per_phase * phases);
    let mut live = 0u64;
    let mut peak = 0u64;
    let mut calls = 0u64;
    let mut sum = 0u64;
    for phase in 0..phases {
        let base = 16usize << (phase % 6);
        for _ in 0..per_phase {
            let size = base + rng.below(base as u64) as usize;
            held.push((get(a, size, phase as u8) as usize, size));
            live += size as u64;
            calls += 1;
        }
        peak = peak.max(live);
        let mut kept = Vec::with_capacity(held.len());
        for (q, size) in held.drain(..) {
            if rng.below(3) == 0 {
                kept.push((q, size));
            } else {
                sum += put(a, q as *mut u8, size);
                live -= size as u64;
                calls += 1;
            }
        }
        held = kept;
    }
    for (q, size) in held {
        put(a, q as *mut u8, size);
        calls += 1;
    }
    Outcome { calls, peak_live: peak, checksum: sum }
}

/// A workload, in report order in [`WORKLOADS`]: the one list of them that the `workload-*`
/// programs, `compare` and the tests all take their names from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Larson,
    Xmalloc,
    CacheScratch,
    CacheThrash,
    Mstress,
    Fragmentation,
}

/// Every workload, in report order.
pub const WORKLOADS: [Workload; 6] = [
    Workload::Larson,
    Workload::Xmalloc,
    Workload::CacheScratch,
    Workload::CacheThrash,
    Workload::Mstress,
    Workload::Fragmentation,
];

impl Workload {
    /// The workload called `name` on command lines, if there is one.
    pub fn named(name: &str) -> Option<Workload> {
        WORKLOADS.into_iter().find(|w| w.name() == name)
    }

    /// Every workload's name, as command lines list them: `larson, xmalloc, ...`.
    pub fn names() -> String {
        WORKLOADS.map(Workload::name).join(", ")
    }

    pub fn name(self) -> &'static str {
        self.about().0
    }

    pub fn description(self) -> &'static str {
        self.about().1
    }

    /// Name and one-line description.
    fn about(self) -> (&'static str, &'static str) {
        match self {
            Workload::Larson => (
                "larson",
                "server churn: threads replace random blocks, then hand their tables to new threads",
            ),
            Workload::Xmalloc => {
                ("xmalloc", "producer/consumer: blocks allocated in one thread are freed in another")
            }
            Workload::CacheScratch => (
                "cache-scratch",
                "passive false sharing: threads reuse small objects handed out side by side",
            ),
            Workload::CacheThrash => {
                ("cache-thrash", "active false sharing: threads allocate and write small objects")
            }
            Workload::Mstress => (
                "mstress",
                "objects migrate: threads swap blocks into a shared table, freeing others' blocks",
            ),
            Workload::Fragmentation => (
                "fragmentation",
                "phases of growing sizes with two thirds freed in between: peak RSS vs live bytes",
            ),
        }
    }

    /// Run on allocator `a` (statically dispatched: the workload calls it directly).
    pub fn run<A: GlobalAlloc + Sync>(self, a: &A, p: &Params) -> Outcome {
        match self {
            Workload::Larson => larson(a, p),
            Workload::Xmalloc => xmalloc(a, p),
            Workload::CacheScratch => cache_scratch(a, p),
            Workload::CacheThrash => cache_thrash(a, p),
            Workload::Mstress => mstress(a, p),
            Workload::Fragmentation => fragmentation(a, p),
        }
    }
}
