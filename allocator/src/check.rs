//! The heap checker: walks every arena chunk by chunk and every bin, and verifies the
//! invariants the algorithm relies on. Tests call it between operations so a broken
//! invariant fails at the step that broke it. It allocates nothing.
//!
//! Checked, per arena:
//! - walking each region from its first chunk reaches the top (or a fencepost) exactly,
//!   every chunk aligned and at least `MINSIZE`, `top` last in its region;
//! - boundary tags: a free chunk's size is repeated in the next chunk's `prev_size`, and
//!   the next chunk's `PREV_INUSE` is clear exactly for free chunks;
//! - no two free chunks are neighbours (they would have been coalesced);
//! - in-use chunks carry the arena's `NON_MAIN_ARENA` bit;
//! - every chunk in a bin is free, of a size that belongs to that bin, linked both ways,
//!   largebins sorted by decreasing size, non-empty bins marked in the binmap;
//! - fastbin chunks are in use (not coalescable) and of their bin's size;
//! - the free chunks found by the walk are exactly as many (and as large) as those in
//!   the bins: every free chunk is in exactly one bin;
//! - a heap arena's `system_mem` is the sum of its heaps' sizes, and no walk covers more
//!   than `system_mem`.

use crate::arena::{ArenaGuard, ArenaState, MAX_SEGMENTS};
use crate::bins::{bin_index, fastbin_index, in_smallbin_range, NBINS, NFASTBINS, UNSORTED};
use crate::chunk::{aligned_ok, Chunk, CHUNK_HDR_SZ, MINSIZE, NON_MAIN_ARENA, PREV_INUSE};
use crate::heap::HeapInfo;
use crate::kernel::Kernel;
use crate::malloc::Malloc;

/// What the checker saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapReport {
    pub arenas: usize,
    /// Chunks walked, top and fenceposts excluded.
    pub chunks: usize,
    pub in_use_chunks: usize,
    /// Free chunks in the regular bins (coalesced, not fast).
    pub free_chunks: usize,
    pub free_bytes: usize,
    pub fast_chunks: usize,
    /// Chunks in the calling thread's cache.
    pub tcache_chunks: usize,
    pub top_bytes: usize,
    pub system_bytes: usize,
    /// Every region was walked (the main arena remembers at most a few regions).
    pub walk_complete: bool,
}

/// A broken invariant: which arena (0 is the main one), at which chunk, and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapError {
    pub arena: usize,
    pub chunk: usize,
    pub what: &'static str,
}

impl core::fmt::Display for HeapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "arena {}: chunk {:#x}: {}", self.arena, self.chunk, self.what)
    }
}

struct Checker<'a> {
    arena_no: usize,
    av: &'a ArenaState,
    report: HeapReport,
    walk_free: usize,
    walk_free_bytes: usize,
    walk_in_use_bytes: usize,
    fast_bytes: usize,
    walked_bytes: usize,
}

impl Checker<'_> {
    fn fail(&self, chunk: usize, what: &'static str) -> HeapError {
        HeapError { arena: self.arena_no, chunk, what }
    }

    /// Walk one region from `start`; `end` is its exclusive end if known.
    fn walk_region(&mut self, start: usize, end: Option<usize>) -> Result<(), HeapError> {
        let av = self.av;
        let top = av.top();
        let limit = av.system_mem.get();
        let Some(mut c) = Chunk::new(start) else {
            return Err(self.fail(start, "region starts at address 0"));
        };
        let mut prev_free = false;
        // SAFETY: the walk reads headers of the held arena's regions: it starts at a region
        // start recorded by sysmalloc or heap creation, and each size is vetted (alignment,
        // MINSIZE, the region's end, system_mem) before the next header is read. A heap the
        // program corrupted could still lead it astray, as it would lead malloc.
        unsafe {
            loop {
                if !aligned_ok(c.addr()) {
                    return Err(self.fail(c.addr(), "misaligned chunk"));
                }
                if let Some(end) = end {
                    if c.addr() >= end {
                        return Err(self.fail(c.addr(), "walk ran past the end of its heap"));
                    }
                }
                if c == top {
                    let size = top.size();
                    if size < MINSIZE {
                        return Err(self.fail(c.addr(), "top smaller than MINSIZE"));
                    }
                    if !top.prev_inuse() {
                        return Err(self.fail(c.addr(), "chunk before top is free"));
                    }
                    if let Some(end) = end {
                        if top.addr() + size != end {
                            return Err(self.fail(c.addr(), "top does not end its heap"));
                        }
                    }
                    self.report.top_bytes += size;
                    self.walked_bytes += size;
                    return Ok(());
                }
                let size = c.size();
                if size == 0 {
                    // A heap's end mark, right after an in-use remnant of the old top.
                    if end != Some(c.addr() + CHUNK_HDR_SZ) {
                        return Err(self.fail(c.addr(), "zero-size chunk that is not a heap's end mark"));
                    }
                    self.walked_bytes += CHUNK_HDR_SZ;
                    return Ok(());
                }
                if size < MINSIZE {
                    // A fencepost closes the region: [16|P][16|P] (main) or [16|P][0|P] (heap).
                    if size != CHUNK_HDR_SZ {
                        return Err(self.fail(c.addr(), "bad fencepost"));
                    }
                    let next = c.plus(CHUNK_HDR_SZ);
                    if next.size() != CHUNK_HDR_SZ && next.size() != 0 {
                        return Err(self.fail(c.addr(), "bad second fencepost"));
                    }
                    if let Some(end) = end {
                        if next.addr() + CHUNK_HDR_SZ != end {
                            return Err(self.fail(c.addr(), "fencepost not at the end of its heap"));
                        }
                    }
                    self.walked_bytes += 2 * CHUNK_HDR_SZ;
                    return Ok(());
                }
                if !aligned_ok(size) {
                    return Err(self.fail(c.addr(), "chunk size not a multiple of 16"));
                }
                if c.is_mmapped() {
                    return Err(self.fail(c.addr(), "IS_MMAPPED chunk inside an arena"));
                }
                self.walked_bytes += size;
                if self.walked_bytes > limit {
                    return Err(self.fail(c.addr(), "walk covers more than system_mem"));
                }
                let next = c.next();
                let free = !next.prev_inuse();
                if c.prev_inuse() == prev_free {
                    return Err(self.fail(c.addr(), "PREV_INUSE disagrees with the previous chunk"));
                }
                self.report.chunks += 1;
                if free {
                    if prev_free {
                        return Err(self.fail(c.addr(), "two free chunks side by side"));
                    }
                    if next.prev_size() != size {
                        return Err(self.fail(c.addr(), "boundary tag differs from the size"));
                    }
                    self.walk_free += 1;
                    self.walk_free_bytes += size;
                } else {
                    self.report.in_use_chunks += 1;
                    self.walk_in_use_bytes += size;
                    let bit = c.head() & NON_MAIN_ARENA != 0;
                    if bit == av.is_main() {
                        return Err(self.fail(c.addr(), "in-use chunk has the wrong NON_MAIN_ARENA bit"));
                    }
                }
                prev_free = free;
                c = next;
            }
        }
    }

    fn check_bins(&mut self) -> Result<(), HeapError> {
        let av = self.av;
        // SAFETY: bins of the held arena, walked through their links (each chunk vetted
        // before the walk goes on; the walks are bounded); see `walk_region`.
        unsafe {
            for i in 1..NBINS {
                let bin = av.bin_at(i);
                let mut p = bin.fd();
                let mut prev = bin;
                let mut last_head = usize::MAX;
                let mut n = 0usize;
                while p != bin {
                    if p.bk() != prev {
                        return Err(self.fail(p.addr(), "bin list bk link broken"));
                    }
                    if !aligned_ok(p.addr()) {
                        return Err(self.fail(p.addr(), "misaligned chunk in a bin"));
                    }
                    let size = p.size();
                    if size < MINSIZE || p.next().prev_inuse() {
                        return Err(self.fail(p.addr(), "chunk in a bin is not free"));
                    }
                    if i != UNSORTED && bin_index(size) != i {
                        return Err(self.fail(p.addr(), "chunk in the wrong bin for its size"));
                    }
                    if i != UNSORTED && !in_smallbin_range(size) {
                        if p.head() > last_head {
                            return Err(self.fail(p.addr(), "largebin not sorted by decreasing size"));
                        }
                        let leads = p.fd_nextsize().is_some();
                        if leads != (p.head() != last_head) {
                            return Err(self.fail(p.addr(), "largebin skip list does not mark each new size"));
                        }
                        last_head = p.head();
                    }
                    self.report.free_chunks += 1;
                    self.report.free_bytes += size;
                    n += 1;
                    if n > 1 << 28 {
                        return Err(self.fail(p.addr(), "bin list does not end"));
                    }
                    prev = p;
                    p = p.fd();
                }
                if bin.bk() != prev {
                    return Err(self.fail(bin.addr(), "bin header bk link broken"));
                }
                if n > 0 && i != UNSORTED && !av.bin_is_marked(i) {
                    return Err(self.fail(bin.addr(), "non-empty bin not marked in the binmap"));
                }
            }
            for i in 0..NFASTBINS {
                let mut next = av.fastbin(i);
                let mut n = 0usize;
                while let Some(p) = next {
                    if !aligned_ok(p.addr()) {
                        return Err(self.fail(p.addr(), "misaligned fastbin chunk"));
                    }
                    if fastbin_index(p.size()) != i {
                        return Err(self.fail(p.addr(), "fastbin chunk of the wrong size"));
                    }
                    if !p.next().prev_inuse() {
                        return Err(self.fail(p.addr(), "fastbin chunk marked free"));
                    }
                    self.report.fast_chunks += 1;
                    self.fast_bytes += p.size();
                    n += 1;
                    if n > 1 << 28 {
                        return Err(self.fail(p.addr(), "fastbin list does not end"));
                    }
                    next = p.fd_revealed();
                }
            }
        }
        Ok(())
    }
}

impl<K: Kernel> Malloc<K> {
    /// Verify every arena's invariants (see the module documentation). Takes each arena's
    /// lock in turn, so it may run while other threads allocate.
    pub fn check_heap(&'static self) -> Result<HeapReport, HeapError> {
        self.ensure_ready();
        let mut total = HeapReport { walk_complete: true, ..HeapReport::default() };
        let mut result = Ok(());
        let mut arena_no = 0;
        self.arenas().for_each(|av| {
            if result.is_err() {
                return;
            }
            result = self.check_arena(arena_no, &self.lock_and_drain(av), &mut total);
            arena_no += 1;
        });
        result?;
        total.arenas = arena_no;
        self.thread_tcache().for_each(|_, _| total.tcache_chunks += 1);
        Ok(total)
    }

    fn check_arena(&self, arena_no: usize, av: &ArenaGuard, total: &mut HeapReport) -> Result<(), HeapError> {
        let mut ck = Checker {
            arena_no,
            av,
            report: HeapReport::default(),
            walk_free: 0,
            walk_free_bytes: 0,
            walk_in_use_bytes: 0,
            fast_bytes: 0,
            walked_bytes: 0,
        };
        let mut complete = true;
        if av.is_main() {
            let n = av.nsegments.get();
            if n > MAX_SEGMENTS {
                complete = false;
            }
            for s in 0..n.min(MAX_SEGMENTS) {
                ck.walk_region(av.segments[s].get(), None)?;
            }
            // SAFETY: the held arena's top.
            let top_end = av.top().addr() + unsafe { av.top().size() };
            if n > 0 && av.contiguous() && !top_end.is_multiple_of(self.pagesize()) {
                return Err(ck.fail(av.top().addr(), "top of the brk heap does not end on a page"));
            }
        } else {
            let mut heap: Option<&HeapInfo> = av.top_heap();
            let mut heap_bytes = 0;
            while let Some(h) = heap {
                if !core::ptr::eq(h.ar_ptr(), av.arena()) {
                    return Err(ck.fail(h.addr(), "heap names another arena"));
                }
                heap_bytes += h.size();
                ck.walk_region(h.first_chunk().addr(), Some(h.end()))?;
                heap = h.prev();
            }
            if heap_bytes != av.system_mem.get() {
                return Err(ck.fail(av.top().addr(), "system_mem differs from the heaps' sizes"));
            }
        }
        ck.check_bins()?;
        if complete && (ck.walk_free != ck.report.free_chunks || ck.walk_free_bytes != ck.report.free_bytes) {
            return Err(ck.fail(av.top().addr(), "free chunks in the heap and in the bins differ"));
        }
        // In-use chunks (fastbin chunks look in use but are free) add up to the arena's count.
        if complete && ck.walk_in_use_bytes - ck.fast_bytes != av.in_use.get() {
            return Err(ck.fail(av.top().addr(), "in-use bytes differ from the arena's count"));
        }
        let r = &ck.report;
        total.chunks += r.chunks;
        total.in_use_chunks += r.in_use_chunks;
        total.free_chunks += r.free_chunks;
        total.free_bytes += r.free_bytes;
        total.fast_chunks += r.fast_chunks;
        total.top_bytes += r.top_bytes;
        total.system_bytes += av.system_mem.get();
        total.walk_complete &= complete;
        Ok(())
    }
}

/// Whether the chunk checks at the exits of `int_malloc` and `int_free` run (glibc's
/// `check_inuse_chunk` and friends, compiled in with `MALLOC_DEBUG`): in debug builds, and
/// with feature `debug-checks`, which the workspace's own tests turn on. In a release build
/// without it they compile to nothing.
/// One of the chunk checks' messages: it is in a library built with them and only there,
/// which lets a benchmark runner tell a test build of `libptalloc.so` from the real one.
pub const CHUNK_CHECK_MARK: &str = "chunk check: in-use chunk marked free";

pub(crate) const CHUNK_CHECKS: bool = cfg!(any(debug_assertions, feature = "debug-checks"));

/// A chunk check: when it fails, the heap is not what the algorithm just made it; report
/// it in the corruption checks' manner (one line, then abort).
#[inline(always)]
fn ensure(ok: bool, what: &'static str) {
    if !ok {
        crate::printerr::malloc_printerr(what);
    }
}

impl<K: Kernel> Malloc<K> {
    /// Where any chunk of arena `av` may be (glibc's `do_check_chunk`): an mmapped chunk
    /// in a page-aligned mapping of its own; the top at least `MINSIZE` with an in-use
    /// predecessor; any other chunk aligned, at least `MINSIZE`, and in a contiguous arena
    /// between the start of its memory and the top.
    ///
    /// # Safety
    /// `p` is a chunk of the held arena `av`, or an mmapped chunk of the caller's.
    pub(crate) unsafe fn check_chunk(&self, av: &ArenaState, p: Chunk) {
        // SAFETY: the caller's chunk; the top is the held arena's.
        unsafe {
            let size = p.size();
            if p.is_mmapped() {
                let ps = self.pagesize();
                let offset = p.prev_size();
                ensure(aligned_ok(p.mem() as usize), "chunk check: misaligned mmapped chunk");
                ensure(
                    (p.addr().wrapping_sub(offset) | offset.wrapping_add(size)) & (ps - 1) == 0,
                    "chunk check: mmapped chunk is not a whole mapping",
                );
                return;
            }
            let top = av.top();
            if p == top {
                ensure(size >= MINSIZE, "chunk check: top smaller than MINSIZE");
                ensure(p.prev_inuse(), "chunk check: chunk before top is free");
                return;
            }
            ensure(aligned_ok(p.mem() as usize), "chunk check: misaligned chunk");
            ensure(size >= MINSIZE && aligned_ok(size), "chunk check: bad chunk size");
            if av.contiguous() {
                let max_address = top.addr() + top.size();
                let min_address = max_address - av.system_mem.get();
                ensure(p.addr() >= min_address, "chunk check: chunk below the arena's memory");
                ensure(p.addr() + size <= top.addr(), "chunk check: chunk overlaps top");
            }
        }
    }

    /// A free chunk (glibc's `do_check_free_chunk`): marked free, its boundary tag equal to
    /// its size, both neighbours in use (it was coalesced), linked both ways in its list.
    ///
    /// # Safety
    /// As for [`Malloc::check_chunk`], `p` not mmapped.
    pub(crate) unsafe fn check_free_chunk(&self, av: &ArenaState, p: Chunk) {
        // SAFETY: the caller's chunk, its neighbours (reached through sizes check_chunk
        // vetted) and its list neighbours in the held arena.
        unsafe {
            self.check_chunk(av, p);
            let size = p.size();
            let next = p.plus(size);
            ensure(!p.is_mmapped(), "chunk check: free chunk flagged mmapped");
            ensure(!next.prev_inuse(), "chunk check: free chunk marked in use");
            ensure(next.prev_size() == size, "chunk check: boundary tag differs from the size");
            ensure(p.prev_inuse(), "chunk check: free chunk after a free chunk");
            ensure(next == av.top() || next.inuse(), "chunk check: free chunk before a free chunk");
            ensure(p.fd().bk() == p && p.bk().fd() == p, "chunk check: free chunk badly linked");
        }
    }

    /// An in-use chunk (glibc's `do_check_inuse_chunk`): marked in use by its successor,
    /// carrying its arena's `NON_MAIN_ARENA` bit, and agreeing with free neighbours on
    /// where it starts and ends.
    ///
    /// # Safety
    /// As for [`Malloc::check_chunk`].
    pub(crate) unsafe fn check_inuse_chunk(&self, av: &ArenaState, p: Chunk) {
        // SAFETY: as in `check_free_chunk`.
        unsafe {
            self.check_chunk(av, p);
            if p.is_mmapped() {
                return;
            }
            ensure(p.inuse(), CHUNK_CHECK_MARK);
            ensure((p.head() & NON_MAIN_ARENA == 0) == av.is_main(), "chunk check: wrong NON_MAIN_ARENA bit");
            let next = p.next();
            if !p.prev_inuse() {
                let prev = p.prev();
                ensure(prev.next() == p, "chunk check: free predecessor does not end at the chunk");
                self.check_free_chunk(av, prev);
            }
            if next == av.top() {
                ensure(next.prev_inuse(), "chunk check: top says its predecessor is free");
                ensure(next.size() >= MINSIZE, "chunk check: top smaller than MINSIZE");
            } else if !next.inuse() {
                self.check_free_chunk(av, next);
            }
        }
    }

    /// A chunk `int_malloc` is about to hand out from a fastbin for a chunk size of `nb`
    /// (glibc's `do_check_remalloced_chunk`): in use, at least `nb` but less than a chunk
    /// more.
    ///
    /// # Safety
    /// As for [`Malloc::check_chunk`].
    pub(crate) unsafe fn check_remalloced_chunk(&self, av: &ArenaState, p: Chunk, nb: usize) {
        // SAFETY: as in `check_free_chunk`.
        unsafe {
            let size = p.size();
            ensure(size >= nb, "chunk check: chunk smaller than the request");
            if !p.is_mmapped() {
                ensure(size - nb < MINSIZE, "chunk check: chunk a whole chunk larger than the request");
            }
            self.check_inuse_chunk(av, p);
        }
    }

    /// A chunk `int_malloc` is about to hand out from anywhere but a fastbin (glibc's
    /// `do_check_malloced_chunk`): as [`Malloc::check_remalloced_chunk`], and with an in-use
    /// predecessor — chunks are carved from the low end of free space, which is always
    /// coalesced; only a fastbin chunk may follow a free one.
    ///
    /// # Safety
    /// As for [`Malloc::check_chunk`].
    pub(crate) unsafe fn check_malloced_chunk(&self, av: &ArenaState, p: Chunk, nb: usize) {
        // SAFETY: as in `check_free_chunk`.
        unsafe {
            self.check_remalloced_chunk(av, p, nb);
            ensure(
                p.is_mmapped() || p.head() & PREV_INUSE != 0,
                "chunk check: allocated chunk after a free chunk",
            );
        }
    }
}
