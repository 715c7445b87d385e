//! A model-based tester: an operation language over every allocator entry point, and an
//! executor that checks each result against what C's semantics promise.
//!
//! The same language drives the randomized tests (operations drawn from a seeded generator)
//! and the `cargo fuzz` target (operations decoded from the fuzzer's bytes). The executor
//! keeps a table of live blocks, each filled with a pattern derived from a per-block seed;
//! before a block is freed or reallocated the pattern is verified, so any overlap or
//! corruption shows up as a mismatch. New blocks are checked for alignment, usable size, not
//! overlapping any live block, and (for `calloc`) zero contents.
//!
//! It uses the host heap (for its own tables): it tests an allocator from outside, and is
//! never part of one.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ptalloc::{errno, set_errno, Kernel, MallInfo2, Malloc};

use crate::Rng;

/// glibc's smallest chunk (a fastbin chunk holds at least this many bytes).
const MINSIZE: usize = 32;

/// Blocks larger than this are checked sparsely (head, tail, one word a page).
const DENSE_LIMIT: usize = 64 * 1024;

/// One allocator operation on slot `slot` of the block table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Malloc {
        slot: usize,
        size: usize,
    },
    Calloc {
        slot: usize,
        n: usize,
        size: usize,
    },
    Realloc {
        slot: usize,
        size: usize,
    },
    ReallocArray {
        slot: usize,
        n: usize,
        size: usize,
    },
    Memalign {
        slot: usize,
        align: usize,
        size: usize,
    },
    PosixMemalign {
        slot: usize,
        align: usize,
        size: usize,
    },
    AlignedAlloc {
        slot: usize,
        align: usize,
        size: usize,
    },
    Valloc {
        slot: usize,
        size: usize,
    },
    Pvalloc {
        slot: usize,
        size: usize,
    },
    Free {
        slot: usize,
    },
    /// `malloc_trim(pad)`.
    Trim {
        pad: usize,
    },
    /// `mallinfo2`, checked for consistency.
    Info,
    /// Run the heap checker.
    Check,
}

/// The entry points the model exercises.
pub trait Allocator: Sync {
    fn malloc(&self, size: usize) -> *mut u8;
    fn calloc(&self, n: usize, size: usize) -> *mut u8;
    /// # Safety
    /// `p` is null or live.
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8;
    /// # Safety
    /// `p` is null or live.
    unsafe fn reallocarray(&self, p: *mut u8, n: usize, size: usize) -> *mut u8;
    fn memalign(&self, align: usize, size: usize) -> *mut u8;
    fn posix_memalign(&self, out: &mut *mut u8, align: usize, size: usize) -> i32;
    fn aligned_alloc(&self, align: usize, size: usize) -> *mut u8;
    fn valloc(&self, size: usize) -> *mut u8;
    fn pvalloc(&self, size: usize) -> *mut u8;
    /// # Safety
    /// `p` is null or live.
    unsafe fn free(&self, p: *mut u8);
    /// # Safety
    /// `p` is live.
    unsafe fn usable_size(&self, p: *mut u8) -> usize;
    fn trim(&self, pad: usize) -> i32;
    fn info(&self) -> Option<MallInfo2>;
    fn check(&self) -> Result<(), String>;
    fn page_size(&self) -> usize;
}

impl<K: Kernel> Allocator for &'static Malloc<K> {
    fn malloc(&self, size: usize) -> *mut u8 {
        Malloc::malloc(self, size)
    }
    fn calloc(&self, n: usize, size: usize) -> *mut u8 {
        Malloc::calloc(self, n, size)
    }
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { Malloc::realloc(self, p, size) }
    }
    unsafe fn reallocarray(&self, p: *mut u8, n: usize, size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { Malloc::reallocarray(self, p, n, size) }
    }
    fn memalign(&self, align: usize, size: usize) -> *mut u8 {
        Malloc::memalign(self, align, size)
    }
    fn posix_memalign(&self, out: &mut *mut u8, align: usize, size: usize) -> i32 {
        Malloc::posix_memalign(self, out, align, size)
    }
    fn aligned_alloc(&self, align: usize, size: usize) -> *mut u8 {
        Malloc::aligned_alloc(self, align, size)
    }
    fn valloc(&self, size: usize) -> *mut u8 {
        Malloc::valloc(self, size)
    }
    fn pvalloc(&self, size: usize) -> *mut u8 {
        Malloc::pvalloc(self, size)
    }
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { Malloc::free(self, p) }
    }
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: forwarded.
        unsafe { Malloc::usable_size(self, p) }
    }
    fn trim(&self, pad: usize) -> i32 {
        Malloc::malloc_trim(self, pad)
    }
    fn info(&self) -> Option<MallInfo2> {
        Some(Malloc::mallinfo2(self))
    }
    fn check(&self) -> Result<(), String> {
        Malloc::check_heap(self).map(|_| ()).map_err(|e| e.to_string())
    }
    fn page_size(&self) -> usize {
        self.kernel().page_size()
    }
}

/// The shape of the random workload.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Slots in the block table.
    pub slots: usize,
    /// Largest request (bytes).
    pub max_size: usize,
    /// Largest alignment for the memalign family.
    pub max_align: usize,
    /// Percent of operations that pass invalid or impossible arguments.
    pub bad_args_percent: u64,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix { slots: 2000, max_size: 4 << 20, max_align: 64 << 10, bad_args_percent: 1 }
    }
}

impl Mix {
    /// A request size: mostly small, some medium, a few up to `max_size`.
    fn size(&self, rng: &mut Rng) -> usize {
        let r = rng.below(1000);
        let cap = self.max_size.max(1) as u64;
        let s = if r < 600 {
            rng.below(129)
        } else if r < 850 {
            rng.below(1100)
        } else if r < 960 {
            rng.below(16 << 10)
        } else if r < 990 {
            rng.below(256 << 10)
        } else {
            rng.below(cap + 1)
        };
        s.min(cap) as usize
    }

    fn align(&self, rng: &mut Rng) -> usize {
        let max_shift = (usize::BITS - 1 - self.max_align.max(16).leading_zeros()) as u64;
        1usize << (3 + rng.below(max_shift - 2))
    }

    /// One random operation.
    pub fn op(&self, rng: &mut Rng) -> Op {
        let slot = rng.below(self.slots as u64) as usize;
        if rng.chance(self.bad_args_percent) {
            return match rng.below(6) {
                0 => Op::Malloc { slot, size: usize::MAX - rng.below(64) as usize },
                1 => Op::Calloc { slot, n: usize::MAX / 3, size: 7 },
                2 => Op::Memalign { slot, align: usize::MAX / 2 + 2, size: 16 },
                3 => Op::PosixMemalign { slot, align: 24 + 8 * rng.below(3) as usize, size: 16 },
                4 => Op::ReallocArray { slot, n: usize::MAX / 2, size: 4 },
                _ => Op::Realloc { slot, size: isize::MAX as usize + 1 },
            };
        }
        match rng.below(100) {
            0..=39 => Op::Malloc { slot, size: self.size(rng) },
            40..=44 => {
                let size = self.size(rng);
                let n = 1 + rng.below(8) as usize;
                Op::Calloc { slot, n, size: size / n }
            }
            45..=57 => Op::Realloc { slot, size: self.size(rng) },
            58..=59 => Op::ReallocArray { slot, n: 1 + rng.below(4) as usize, size: self.size(rng) / 4 },
            60..=62 => {
                // memalign also takes alignments that are not powers of two.
                let align = if rng.chance(20) {
                    1 + rng.below(self.max_align as u64) as usize
                } else {
                    self.align(rng)
                };
                Op::Memalign { slot, align, size: self.size(rng) }
            }
            63..=64 => Op::PosixMemalign { slot, align: self.align(rng), size: self.size(rng) },
            65 => Op::AlignedAlloc { slot, align: self.align(rng), size: self.size(rng) },
            66 => Op::Valloc { slot, size: self.size(rng) },
            67 => Op::Pvalloc { slot, size: self.size(rng) },
            68..=98 => Op::Free { slot },
            _ => match rng.below(20) {
                0 => Op::Trim { pad: rng.below(1 << 20) as usize },
                1..=4 => Op::Info,
                _ => Op::Free { slot },
            },
        }
    }
}

/// Decode fuzzer bytes into operations (the `cargo fuzz` target's input language): one
/// opcode byte, then little-endian operands as the opcode needs them.
pub fn decode(bytes: &[u8], slots: usize) -> Vec<Op> {
    struct Input<'a>(&'a [u8]);
    impl Input<'_> {
        fn byte(&mut self) -> Option<u8> {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            Some(b)
        }
        fn u16(&mut self) -> Option<usize> {
            Some(self.byte()? as usize | (self.byte()? as usize) << 8)
        }
        /// A size: small by default, scaled up by a class byte.
        fn size(&mut self) -> Option<usize> {
            let class = self.byte()?;
            let v = self.u16()?;
            Some(match class % 8 {
                0..=3 => v % 160,
                4 | 5 => v % 2048,
                6 => v * 16,
                _ => v * 64,
            })
        }
        fn align(&mut self) -> Option<usize> {
            Some(1usize << (self.byte()? % 17))
        }
    }
    let mut input = Input(bytes);
    let mut ops = Vec::new();
    let slots = slots.max(1);
    while let Some(code) = input.byte() {
        let Some(s) = input.byte() else { break };
        let slot = s as usize % slots;
        let op = match code % 14 {
            0..=2 => input.size().map(|size| Op::Malloc { slot, size }),
            3 => (|| Some(Op::Calloc { slot, n: input.byte()? as usize % 9, size: input.size()? }))(),
            4 | 5 => input.size().map(|size| Op::Realloc { slot, size }),
            6 => (|| Some(Op::ReallocArray { slot, n: input.byte()? as usize % 5, size: input.size()? }))(),
            7 => (|| {
                Some(Op::Memalign {
                    slot,
                    align: input.align()? + input.byte()? as usize % 2,
                    size: input.size()?,
                })
            })(),
            8 => (|| Some(Op::PosixMemalign { slot, align: input.align()?, size: input.size()? }))(),
            9 => (|| Some(Op::AlignedAlloc { slot, align: input.align()?, size: input.size()? }))(),
            10 => input.size().map(|size| {
                if size % 2 == 0 {
                    Op::Valloc { slot, size }
                } else {
                    Op::Pvalloc { slot, size }
                }
            }),
            11 | 12 => Some(Op::Free { slot }),
            _ => Some(match s % 3 {
                0 => Op::Trim { pad: s as usize * 4096 },
                1 => Op::Info,
                _ => Op::Check,
            }),
        };
        match op {
            Some(op) => ops.push(op),
            None => break,
        }
    }
    ops
}

#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: usize,
    size: usize,
    seed: u64,
}

/// The executor's shared state: the slot table and the map of live address ranges. Several
/// threads may run operations on one `Model` at once (each slot is locked while in use), so
/// blocks allocated by one thread are freed by another.
pub struct Model<A: Allocator> {
    alloc: A,
    slots: Vec<Mutex<Option<Block>>>,
    live: Mutex<BTreeMap<usize, usize>>,
    page_size: usize,
}

/// Counts of what a run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    pub ops: u64,
    pub allocations: u64,
    pub frees: u64,
    pub failures_expected: u64,
    pub bytes_checked: u64,
}

fn pattern_word(seed: u64, index: usize) -> u64 {
    (seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).rotate_left((index % 61) as u32)
}

/// Word offsets (in 8-byte units) that carry the pattern for a block of `size` bytes.
fn pattern_words(size: usize, mut visit: impl FnMut(usize)) {
    let words = size / 8;
    if size <= DENSE_LIMIT {
        (0..words).for_each(&mut visit);
    } else {
        let edge = 512; // 4 KiB at each end
        (0..edge).for_each(&mut visit);
        (edge..words - edge).step_by(512).for_each(&mut visit);
        (words - edge..words).for_each(&mut visit);
    }
}

fn fill(b: &Block) {
    let base = b.ptr as *mut u64;
    pattern_words(b.size, |i| {
        // SAFETY: i < size / 8, inside the live block; blocks are at least 8-byte aligned.
        unsafe { base.add(i).write(pattern_word(b.seed, i)) }
    });
    let tail = b.size % 8;
    for j in 0..tail {
        // SAFETY: the last `tail` bytes of the block.
        unsafe { ((b.ptr + b.size - tail + j) as *mut u8).write((b.seed >> (8 * j)) as u8) }
    }
}

/// Verify the first `upto` bytes of a block's pattern.
fn verify(b: &Block, upto: usize) -> Result<u64, String> {
    let base = b.ptr as *const u64;
    let mut err = None;
    let mut checked = 0u64;
    pattern_words(b.size, |i| {
        if (i + 1) * 8 <= upto && err.is_none() {
            // SAFETY: inside the live block.
            let v = unsafe { base.add(i).read() };
            checked += 8;
            if v != pattern_word(b.seed, i) {
                err = Some(format!("block {:#x} (size {}): word {} overwritten", b.ptr, b.size, i));
            }
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let tail = b.size % 8;
    if upto >= b.size {
        for j in 0..tail {
            // SAFETY: the last bytes of the block.
            let v = unsafe { ((b.ptr + b.size - tail + j) as *const u8).read() };
            if v != (b.seed >> (8 * j)) as u8 {
                return Err(format!("block {:#x} (size {}): tail byte {} overwritten", b.ptr, b.size, j));
            }
        }
    }
    Ok(checked)
}

impl<A: Allocator> Model<A> {
    pub fn new(alloc: A, slots: usize) -> Model<A> {
        let page_size = alloc.page_size();
        Model {
            alloc,
            slots: (0..slots.max(1)).map(|_| Mutex::new(None)).collect(),
            live: Mutex::new(BTreeMap::new()),
            page_size,
        }
    }

    pub fn allocator(&self) -> &A {
        &self.alloc
    }

    /// Record a new block after checking it against C's promises and the live blocks.
    fn admit(&self, p: *mut u8, size: usize, align: usize, seed: u64, zeroed: bool) -> Result<Block, String> {
        let addr = p as usize;
        if !addr.is_multiple_of(align.max(16)) {
            return Err(format!("{:#x} is not aligned to {}", addr, align.max(16)));
        }
        // SAFETY: a live block just returned.
        let usable = unsafe { self.alloc.usable_size(p) };
        if usable < size {
            return Err(format!("{:#x}: usable size {} < requested {}", addr, usable, size));
        }
        {
            let mut live = self.live.lock().unwrap();
            let end = addr + usable.max(1);
            if let Some((&start, &prev_end)) = live.range(..=addr).next_back() {
                if prev_end > addr {
                    return Err(format!(
                        "{:#x}+{} overlaps live block {:#x}..{:#x}",
                        addr, usable, start, prev_end
                    ));
                }
            }
            if let Some((&start, &next_end)) = live.range(addr..).next() {
                if start < end {
                    return Err(format!(
                        "{:#x}+{} overlaps live block {:#x}..{:#x}",
                        addr, usable, start, next_end
                    ));
                }
            }
            live.insert(addr, end);
        }
        if zeroed {
            let check = |i: usize| -> bool {
                // SAFETY: inside the block.
                unsafe { *p.add(i) == 0 }
            };
            let ok = if size <= DENSE_LIMIT {
                (0..size).all(check)
            } else {
                (0..4096).all(check) && (size - 4096..size).all(check) && (0..size).step_by(4093).all(check)
            };
            if !ok {
                return Err(format!("calloc block {:#x} (size {}) is not zeroed", addr, size));
            }
        }
        let b = Block { ptr: addr, size, seed };
        fill(&b);
        Ok(b)
    }

    fn forget(&self, b: &Block) {
        self.live.lock().unwrap().remove(&b.ptr);
    }

    /// Verify a block's pattern, then free it (which must leave errno alone).
    fn release(&self, b: Block, stats: &mut RunStats) -> Result<(), String> {
        stats.bytes_checked += verify(&b, b.size)?;
        self.forget(&b);
        let saved = 4242;
        set_errno(saved);
        // SAFETY: a live block of the table, taken out of it.
        unsafe { self.alloc.free(b.ptr as *mut u8) };
        if errno() != saved {
            return Err(format!("free({:#x}) changed errno", b.ptr));
        }
        stats.frees += 1;
        Ok(())
    }

    /// Apply one operation; `seed` makes the new block's pattern.
    pub fn apply(&self, op: Op, seed: u64, stats: &mut RunStats) -> Result<(), String> {
        stats.ops += 1;
        let slot_of = |s: usize| &self.slots[s % self.slots.len()];
        match op {
            Op::Malloc { size, .. } if size > isize::MAX as usize => {
                self.expect_failure(stats, libc::ENOMEM, "malloc above PTRDIFF_MAX", || {
                    self.alloc.malloc(size)
                })
            }
            Op::Malloc { slot, size } => {
                self.replace(slot_of(slot), stats, size, 1, seed, false, |a| a.malloc(size))
            }
            Op::Calloc { slot, n, size } => match n.checked_mul(size) {
                Some(total) if total <= isize::MAX as usize => {
                    self.replace(slot_of(slot), stats, total, 1, seed, true, |a| a.calloc(n, size))
                }
                _ => {
                    self.expect_failure(stats, libc::ENOMEM, "calloc overflow", || self.alloc.calloc(n, size))
                }
            },
            Op::Memalign { slot, align, size } => {
                if align > usize::MAX / 2 + 1 {
                    return self.expect_failure(stats, libc::EINVAL, "memalign huge alignment", || {
                        self.alloc.memalign(align, size)
                    });
                }
                let effective = if align <= 16 { 16 } else { align.next_power_of_two() };
                self.replace(slot_of(slot), stats, size, effective, seed, false, |a| a.memalign(align, size))
            }
            Op::AlignedAlloc { slot, align, size } => {
                let effective = align.max(16).next_power_of_two();
                self.replace(slot_of(slot), stats, size, effective, seed, false, |a| {
                    a.aligned_alloc(align, size)
                })
            }
            Op::PosixMemalign { slot, align, size } => {
                let valid = align != 0 && align % 8 == 0 && (align / 8).is_power_of_two();
                if !valid {
                    let mut out = 0x1234 as *mut u8;
                    let r = self.alloc.posix_memalign(&mut out, align, size);
                    if r != libc::EINVAL || out as usize != 0x1234 {
                        return Err(format!(
                            "posix_memalign({align}) returned {r}, expected EINVAL with *memptr untouched"
                        ));
                    }
                    stats.failures_expected += 1;
                    return Ok(());
                }
                self.replace(slot_of(slot), stats, size, align, seed, false, |a| {
                    let mut out = core::ptr::null_mut();
                    match a.posix_memalign(&mut out, align, size) {
                        0 => out,
                        _ => core::ptr::null_mut(),
                    }
                })
            }
            Op::Valloc { slot, size } => {
                let ps = self.page_size;
                self.replace(slot_of(slot), stats, size, ps, seed, false, |a| a.valloc(size))
            }
            Op::Pvalloc { slot, size } => {
                let ps = self.page_size;
                let rounded = size.div_ceil(ps) * ps;
                self.replace(slot_of(slot), stats, rounded, ps, seed, false, |a| a.pvalloc(size))
            }
            Op::Free { slot } => {
                let mut s = slot_of(slot).lock().unwrap();
                if let Some(b) = s.take() {
                    self.release(b, stats)?;
                }
                Ok(())
            }
            Op::Realloc { slot, size } => {
                if size > isize::MAX as usize {
                    let s = slot_of(slot).lock().unwrap();
                    let old = s.map_or(core::ptr::null_mut(), |b| b.ptr as *mut u8);
                    let r = self.expect_failure(stats, libc::ENOMEM, "realloc above PTRDIFF_MAX", || {
                        // SAFETY: a live block of the table, or null.
                        unsafe { self.alloc.realloc(old, size) }
                    });
                    if let Some(b) = *s {
                        stats.bytes_checked += verify(&b, b.size)?;
                    }
                    return r;
                }
                self.resize(slot_of(slot), stats, size, seed, |a, old| {
                    // SAFETY: a live block of the table, or null.
                    unsafe { a.realloc(old, size) }
                })
            }
            Op::ReallocArray { slot, n, size } => match n.checked_mul(size) {
                Some(total) if total <= isize::MAX as usize => {
                    self.resize(slot_of(slot), stats, total, seed, |a, old| {
                        // SAFETY: a live block of the table, or null.
                        unsafe { a.reallocarray(old, n, size) }
                    })
                }
                _ => {
                    let s = slot_of(slot).lock().unwrap();
                    let old = s.map_or(core::ptr::null_mut(), |b| b.ptr as *mut u8);
                    let r = self.expect_failure(stats, libc::ENOMEM, "reallocarray overflow", || {
                        // SAFETY: a live block of the table, or null.
                        unsafe { self.alloc.reallocarray(old, n, size) }
                    });
                    if let Some(b) = *s {
                        stats.bytes_checked += verify(&b, b.size)?;
                    }
                    r
                }
            },
            Op::Trim { pad } => {
                self.alloc.trim(pad);
                Ok(())
            }
            Op::Info => {
                if let Some(m) = self.alloc.info() {
                    if m.uordblks + m.fordblks != m.arena {
                        return Err(format!(
                            "mallinfo2: in use {} + free {} != arena {}",
                            m.uordblks, m.fordblks, m.arena
                        ));
                    }
                    // As in glibc, ordblks counts the free chunks in bins and top, and
                    // smblks the fastbin chunks apart from them (there may be more of those).
                    let min_fast_bytes = m.smblks * MINSIZE;
                    if m.fsmblks > m.fordblks || m.fsmblks < min_fast_bytes || m.ordblks == 0 {
                        return Err(format!("mallinfo2 counters inconsistent: {m:?}"));
                    }
                }
                Ok(())
            }
            Op::Check => self.alloc.check(),
        }
    }

    /// Allocate into a slot, freeing (after verifying) what was there.
    #[allow(clippy::too_many_arguments)]
    fn replace(
        &self,
        slot: &Mutex<Option<Block>>,
        stats: &mut RunStats,
        size: usize,
        align: usize,
        seed: u64,
        zeroed: bool,
        f: impl FnOnce(&A) -> *mut u8,
    ) -> Result<(), String> {
        let mut s = slot.lock().unwrap();
        if let Some(b) = s.take() {
            self.release(b, stats)?;
        }
        let p = f(&self.alloc);
        if p.is_null() {
            return Err(format!("allocation of {size} bytes (alignment {align}) failed: errno {}", errno()));
        }
        stats.allocations += 1;
        *s = Some(self.admit(p, size, align, seed, zeroed)?);
        Ok(())
    }

    /// realloc-like operation on a slot: contents preserved up to the smaller size.
    fn resize(
        &self,
        slot: &Mutex<Option<Block>>,
        stats: &mut RunStats,
        size: usize,
        seed: u64,
        f: impl FnOnce(&A, *mut u8) -> *mut u8,
    ) -> Result<(), String> {
        let mut s = slot.lock().unwrap();
        let old = *s;
        if let Some(b) = old {
            stats.bytes_checked += verify(&b, b.size)?;
        }
        // Forget the old range first: once realloc frees it another thread may get it.
        if let Some(b) = old {
            self.forget(&b);
        }
        let p = f(&self.alloc, old.map_or(core::ptr::null_mut(), |b| b.ptr as *mut u8));
        if size == 0 && old.is_some() {
            // realloc(p, 0) frees p and returns NULL.
            if !p.is_null() {
                return Err("realloc(p, 0) did not return NULL".into());
            }
            *s = None;
            stats.frees += 1;
            return Ok(());
        }
        if p.is_null() {
            return Err(format!("realloc to {size} bytes failed: errno {}", errno()));
        }
        stats.allocations += 1;
        if let Some(b) = old {
            // The common prefix must have survived the move.
            let moved = Block { ptr: p as usize, ..b };
            stats.bytes_checked +=
                verify(&moved, b.size.min(size)).map_err(|e| format!("realloc lost data: {e}"))?;
        }
        *s = Some(self.admit(p, size, 1, seed, false)?);
        Ok(())
    }

    fn expect_failure(
        &self,
        stats: &mut RunStats,
        want: i32,
        what: &str,
        f: impl FnOnce() -> *mut u8,
    ) -> Result<(), String> {
        set_errno(0);
        let p = f();
        if !p.is_null() {
            return Err(format!("{what}: expected failure, got {p:?}"));
        }
        if errno() != want {
            return Err(format!("{what}: errno {} instead of {want}", errno()));
        }
        stats.failures_expected += 1;
        Ok(())
    }

    /// Verify and free every live block.
    pub fn drain(&self, stats: &mut RunStats) -> Result<(), String> {
        for slot in &self.slots {
            let mut s = slot.lock().unwrap();
            if let Some(b) = s.take() {
                self.release(b, stats)?;
            }
        }
        Ok(())
    }

    /// Run `ops` random operations from `seed`, checking the heap every `check_every`.
    pub fn run_random(&self, mix: &Mix, seed: u64, ops: u64, check_every: u64) -> Result<RunStats, String> {
        let mut rng = Rng::new(seed);
        let mut stats = RunStats::default();
        for i in 0..ops {
            let op = mix.op(&mut rng);
            let block_seed = rng.next_u64();
            self.apply(op, block_seed, &mut stats).map_err(|e| format!("seed {seed}, op {i} {op:?}: {e}"))?;
            if check_every > 0 && i % check_every == check_every - 1 {
                self.alloc.check().map_err(|e| format!("seed {seed}, after op {i}: heap check: {e}"))?;
            }
        }
        Ok(stats)
    }
}
