//! The allocation algorithm inside one arena (glibc's `_int_malloc`), and
//! `malloc_consolidate`, which empties the fastbins into the regular bins.
//!
//! Order of search for a chunk of normalised size `nb`:
//! 1. the fastbin of exactly `nb` (LIFO; the rest of the bin refills the thread cache);
//! 2. the smallbin of exactly `nb` (likewise);
//! 3. for a large request, consolidate fastbins first (large requests are where their
//!    fragmentation would hurt);
//! 4. the unsorted bin: take an exact fit (or, for a small request, split the last
//!    remainder if it is the only chunk), sorting every other chunk into its bin — the only
//!    place chunks enter the small and large bins;
//! 5. for a large request, the best fit in its own largebin;
//! 6. the next non-empty larger bin, found through the binmap;
//! 7. split the top chunk; failing that consolidate fastbins and retry, or ask the kernel
//!    (`sysmalloc`).
//!
//! ARCHITECTURE.md, "The life of a `malloc`", puts this step in its place.

use core::sync::atomic::Ordering;

use crate::arena::{ArenaGuard, ArenaState};
use crate::bins::{
    bin_index, fastbin_index, idx2bit, idx2block, in_smallbin_range, largebin_index, smallbin_index,
    unlink_chunk, BINMAPSHIFT, BINMAPSIZE, NFASTBINS,
};
use crate::check::CHUNK_CHECKS;
use crate::chunk::{aligned_ok, checked_request2size, Chunk, CHUNK_HDR_SZ, MINSIZE, PREV_INUSE, SIZE_BITS};
use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::printerr::malloc_printerr;
use crate::tcache::{slot_of, MID_MAX_CHUNK};

/// Bound on unsorted chunks sorted per call, so one malloc cannot take unbounded time.
const MAX_ITERS: usize = 10_000;

/// The largest request that carves the last remainder again. glibc does it for small
/// requests only (below 1 KiB); a run of requests of a few KiB (buffers, a parser's nodes)
/// then sorted the remainder into a largebin and found it again through the binmap at every
/// call, a third of a 4 KiB malloc + free pair that misses the thread cache. Up to the
/// largest chunk the thread cache's ring holds, the run carves it in place too.
const LAST_REMAINDER_MAX: usize = MID_MAX_CHUNK;

/// Whether a split for `nb` makes its remainder the last remainder, to be carved again by
/// the next request if it is the only chunk in the unsorted bin.
#[inline(always)]
fn carves_last_remainder(nb: usize) -> bool {
    nb <= LAST_REMAINDER_MAX
}

// Every `unsafe` block below touches chunks of the arena `av` holds — found in its bins,
// its top, or next to them through boundary tags that the corruption checks vet — or bin
// headers inside the arena itself; the guard makes them this thread's for the duration.

impl<K: Kernel> Malloc<K> {
    /// Allocate `bytes` from the arena `av` holds. Returns null if even the kernel has no
    /// more memory. For `calloc`, `memalign`, `realloc` and the cache itself: an exact-size
    /// bin refills the thread cache with at most glibc's count, since the calls that come
    /// here seldom take from the cache afterwards (cc1's callocs, for one, whose refills
    /// were cache misses on chunks nobody used).
    pub(crate) fn int_malloc(&'static self, av: &ArenaGuard, bytes: usize) -> *mut u8 {
        self.int_malloc_inline(av, bytes, false)
    }

    /// `int_malloc`, inlined into `malloc`'s slow path (one call layer less on every
    /// request the thread cache cannot serve), where `full_refill` lets an exact-size bin
    /// fill the bin of the thread cache up to its room.
    #[inline(always)]
    pub(crate) fn int_malloc_inline(
        &'static self,
        av: &ArenaGuard,
        bytes: usize,
        full_refill: bool,
    ) -> *mut u8 {
        let Some(nb) = checked_request2size(bytes) else {
            return core::ptr::null_mut();
        };
        let tc = self.thread_tcache();
        let key = self.key();
        let tslot = slot_of(nb);
        let tcache_fits = tc.serves(tslot);

        if nb <= self.mp.max_fast() {
            let idx = fastbin_index(nb);
            if let Some(victim) = av.fastbin(idx) {
                if !aligned_ok(victim.addr()) {
                    malloc_printerr("malloc(): unaligned fastbin chunk detected 2");
                }
                // SAFETY: the head of a fastbin of the held arena (see the top of the file).
                unsafe {
                    let next = victim.fd_revealed();
                    if next.is_some_and(|n| !aligned_ok(n.addr())) {
                        malloc_printerr("malloc(): unaligned fastbin chunk detected");
                    }
                    av.set_fastbin(idx, next);
                    if fastbin_index(victim.size()) != idx {
                        malloc_printerr("malloc(): memory corruption (fast)");
                    }
                }
                if tcache_fits {
                    let mut stash = if full_refill { usize::MAX } else { tc.max_count() };
                    while stash > 0 && tc.has_room(tslot) {
                        stash -= 1;
                        let Some(c) = av.fastbin(idx) else {
                            break;
                        };
                        if !aligned_ok(c.addr()) {
                            malloc_printerr("malloc(): unaligned fastbin chunk detected 3");
                        }
                        // SAFETY: as above; the chunk leaves the bin in use, for the cache.
                        unsafe {
                            av.set_fastbin(idx, c.fd_revealed());
                            self.taken(av, nb);
                            tc.put(c, tslot, key);
                        }
                    }
                }
                self.taken(av, nb);
                if CHUNK_CHECKS {
                    // SAFETY: the chunk just taken out of the bin.
                    unsafe { self.check_remalloced_chunk(av, victim, nb) };
                }
                // SAFETY: the chunk just taken out of the bin holds at least `bytes` bytes.
                return unsafe { self.alloc_perturb(victim.mem(), bytes) };
            }
        }

        let mut idx;
        if in_smallbin_range(nb) {
            idx = smallbin_index(nb);
            let bin = av.bin_at(idx);
            // SAFETY: a smallbin of the held arena and its chunks (see the top of the file).
            unsafe {
                let victim = bin.bk();
                if victim != bin {
                    let bck = victim.bk();
                    if bck.fd() != victim {
                        malloc_printerr("malloc(): smallbin double linked list corrupted");
                    }
                    victim.set_inuse_bit_at_offset(nb);
                    bin.set_bk(bck);
                    bck.set_fd(bin);
                    if !av.is_main() {
                        victim.set_non_main_arena();
                    }
                    if tcache_fits {
                        let mut stash = if full_refill { usize::MAX } else { tc.max_count() };
                        while stash > 0 && tc.has_room(tslot) {
                            stash -= 1;
                            let c = bin.bk();
                            if c == bin {
                                break;
                            }
                            let b = c.bk();
                            c.set_inuse_bit_at_offset(nb);
                            if !av.is_main() {
                                c.set_non_main_arena();
                            }
                            bin.set_bk(b);
                            b.set_fd(bin);
                            self.taken(av, nb);
                            tc.put(c, tslot, key);
                        }
                    }
                    self.taken(av, nb);
                    return self.malloced(av, victim, nb, bytes);
                }
            }
        } else {
            idx = largebin_index(nb);
            if av.have_fastchunks.get() {
                self.malloc_consolidate(av);
            }
        }

        // The cache gives chunks back at most once a call (see `tcache_give_back_to`).
        let mut gave_back = false;
        let tcache_unsorted_limit = self.mp.tcache_unsorted_limit.load(Ordering::Relaxed);
        let mut return_cached = false;
        let mut tcache_unsorted_count = 0usize;
        loop {
            let unsorted = av.unsorted();
            let mut iters = 0;
            // SAFETY: the unsorted bin of the held arena and its chunks (see the top of the
            // file); each chunk's neighbour is vetted before it is trusted. The cache's bin is
            // not empty when `return_cached` is set: an exact fit was cached.
            unsafe {
                loop {
                    let victim = unsorted.bk();
                    if victim == unsorted {
                        break;
                    }
                    let bck = victim.bk();
                    let size = victim.size();
                    let next = victim.plus(size);
                    let system_mem = av.system_mem.get();
                    if size <= CHUNK_HDR_SZ || size > system_mem {
                        malloc_printerr("malloc(): invalid size (unsorted)");
                    }
                    if next.head() < CHUNK_HDR_SZ || next.head() > system_mem {
                        malloc_printerr("malloc(): invalid next size (unsorted)");
                    }
                    if next.prev_size() & !SIZE_BITS != size {
                        malloc_printerr("malloc(): mismatching next->prev_size (unsorted)");
                    }
                    if bck.fd() != victim || victim.fd() != unsorted {
                        malloc_printerr("malloc(): unsorted double linked list corrupted");
                    }
                    if next.prev_inuse() {
                        malloc_printerr("malloc(): invalid next->prev_inuse (unsorted)");
                    }

                    // A run of requests carves the same remainder: better locality.
                    if carves_last_remainder(nb)
                        && bck == unsorted
                        && Some(victim) == av.last_remainder()
                        && size > nb + MINSIZE
                    {
                        let remainder_size = size - nb;
                        let remainder = victim.plus(nb);
                        unsorted.set_bk(remainder);
                        unsorted.set_fd(remainder);
                        av.set_last_remainder(remainder);
                        remainder.set_bk(unsorted);
                        remainder.set_fd(unsorted);
                        set_split_heads(av, victim, nb, remainder, remainder_size);
                        self.taken(av, nb);
                        return self.malloced(av, victim, nb, bytes);
                    }

                    if bck.fd() != victim {
                        malloc_printerr("malloc(): corrupted unsorted chunks 3");
                    }
                    unsorted.set_bk(bck);
                    bck.set_fd(unsorted);

                    if size == nb {
                        victim.set_inuse_bit_at_offset(size);
                        if !av.is_main() {
                            victim.set_non_main_arena();
                        }
                        // Fill the thread cache first; hand one out at the end.
                        self.taken(av, size);
                        if tcache_fits && tc.has_room(tslot) {
                            tc.put(victim, tslot, key);
                            return_cached = true;
                            continue;
                        }
                        return self.malloced(av, victim, nb, bytes);
                    }

                    self.place_in_bin(av, victim, size);

                    tcache_unsorted_count += 1;
                    if return_cached
                        && tcache_unsorted_limit > 0
                        && tcache_unsorted_count > tcache_unsorted_limit
                    {
                        return self.malloced_cached(av, tc.get(tslot), nb);
                    }
                    iters += 1;
                    if iters >= MAX_ITERS {
                        break;
                    }
                }
            }

            if return_cached {
                // SAFETY: a chunk of the held arena, cached by the loop above.
                return unsafe { self.malloced_cached(av, tc.get(tslot), nb) };
            }

            // Large request: the smallest chunk of its own bin that fits.
            if !in_smallbin_range(nb) {
                let bin = av.bin_at(idx);
                // SAFETY: a largebin of the held arena and its skip list (see the top of the
                // file): every chunk on it has both nextsize links.
                unsafe {
                    let first = bin.fd();
                    if first != bin && first.head() >= nb {
                        let mut victim = nextsize_link(first.bk_nextsize());
                        let mut size = victim.size();
                        while size < nb {
                            victim = nextsize_link(victim.bk_nextsize());
                            size = victim.size();
                        }
                        // Take a follower of that size if there is one: the skip list stays put.
                        if victim != bin.bk() && victim.head() == victim.fd().head() {
                            victim = victim.fd();
                        }
                        unlink_chunk(victim);
                        self.finish_split(av, victim, size, nb, false, "malloc(): corrupted unsorted chunks");
                        return self.malloced(av, victim, nb, bytes);
                    }
                }
            }

            // The next larger non-empty bin, through the binmap.
            if let Some(victim) = self.binmap_search(av, idx + 1) {
                // SAFETY: a chunk of the held arena's bins, found just now.
                unsafe {
                    let size = victim.size();
                    debug_assert!(size >= nb);
                    unlink_chunk(victim);
                    self.finish_split(
                        av,
                        victim,
                        size,
                        nb,
                        carves_last_remainder(nb),
                        "malloc(): corrupted unsorted chunks 2",
                    );
                    return self.malloced(av, victim, nb, bytes);
                }
            }

            // The top chunk.
            // SAFETY: the held arena's top chunk, its size vetted first.
            unsafe {
                if av.top().size() > av.system_mem.get() {
                    malloc_printerr("malloc(): corrupted top size");
                }
                if let Some(victim) = self.split_top(av, nb) {
                    return self.malloced(av, victim, nb, bytes);
                }
            }
            if av.have_fastchunks.get() {
                self.malloc_consolidate(av);
                idx = bin_index(nb);
                continue;
            }
            if !gave_back {
                gave_back = true;
                // A request for mmap goes to the kernel whatever the heap holds. Whole
                // give-backs only while the process has one thread: with threads that hand
                // blocks to each other (larson) they cost a third of the throughput, where
                // the memory they keep down is a small program's.
                let whole = nb < self.mp.mmap_threshold.load(Ordering::Relaxed)
                    && crate::prim::single_threaded()
                    && tc.full_give_back_due();
                if self.tcache_give_back_to(av, whole) > 0 {
                    self.malloc_consolidate(av);
                    idx = bin_index(nb);
                    continue;
                }
            }
            let p = self.sysmalloc(nb, av);
            if p.is_null() {
                return p;
            }
            // SAFETY: a block sysmalloc just allocated.
            return unsafe { self.malloced(av, Chunk::from_mem(p), nb, bytes) };
        }
    }

    /// The first non-empty bin from `idx` up, through the binmap; clears the bits of bins
    /// found empty on the way. Its last chunk is the one to use (the smallest, in a
    /// largebin).
    fn binmap_search(&self, av: &ArenaState, idx: usize) -> Option<Chunk> {
        let mut block = idx2block(idx);
        let mut map = av.binmap_word(block);
        let mut bit = idx2bit(idx);
        let mut i = idx;
        loop {
            if bit > map || bit == 0 {
                loop {
                    block += 1;
                    if block >= BINMAPSIZE {
                        return None;
                    }
                    map = av.binmap_word(block);
                    if map != 0 {
                        break;
                    }
                }
                i = block << BINMAPSHIFT;
                bit = 1;
            }
            while bit & map == 0 {
                i += 1;
                bit <<= 1;
            }
            let bin = av.bin_at(i);
            // SAFETY: a bin's fake chunk inside the arena.
            let victim = unsafe { bin.bk() };
            if victim != bin {
                return Some(victim);
            }
            // A stale bit: clear it and move on.
            map &= !bit;
            av.set_binmap_word(block, map);
            i += 1;
            bit <<= 1;
        }
    }

    /// Sort a chunk out of the unsorted bin into its small or large bin (largebins are kept
    /// in decreasing size order, with a skip list over distinct sizes).
    ///
    /// # Safety
    /// `victim` is a free chunk of `size` bytes of the held arena, just taken out of the
    /// unsorted bin.
    unsafe fn place_in_bin(&self, av: &ArenaState, victim: Chunk, size: usize) {
        let victim_index;
        let mut bck;
        let mut fwd;
        // SAFETY: the caller's chunk and the bins of the held arena (see the top of the
        // file); largebin chunks on the skip list have both nextsize links.
        unsafe {
            if in_smallbin_range(size) {
                victim_index = smallbin_index(size);
                bck = av.bin_at(victim_index);
                fwd = bck.fd();
            } else {
                victim_index = largebin_index(size);
                bck = av.bin_at(victim_index);
                fwd = bck.fd();
                if fwd != bck {
                    // Binned chunks always have PREV_INUSE set; compare whole head words.
                    let head = size | PREV_INUSE;
                    if head < bck.bk().head() {
                        // Smaller than everything: goes last.
                        fwd = bck;
                        bck = bck.bk();
                        let largest = fwd.fd();
                        victim.set_fd_nextsize(Some(largest));
                        victim.set_bk_nextsize(largest.bk_nextsize());
                        largest.set_bk_nextsize(Some(victim));
                        nextsize_link(victim.bk_nextsize()).set_fd_nextsize(Some(victim));
                    } else {
                        while head < fwd.head() {
                            fwd = nextsize_link(fwd.fd_nextsize());
                        }
                        if head == fwd.head() {
                            // Same size as an existing one: insert after it, off the skip list.
                            fwd = fwd.fd();
                        } else {
                            // The skip list runs from larger to smaller sizes through fd.
                            let larger = nextsize_link(fwd.bk_nextsize());
                            victim.set_fd_nextsize(Some(fwd));
                            victim.set_bk_nextsize(Some(larger));
                            if larger.fd_nextsize() != Some(fwd) {
                                malloc_printerr("malloc(): largebin double linked list corrupted (nextsize)");
                            }
                            fwd.set_bk_nextsize(Some(victim));
                            larger.set_fd_nextsize(Some(victim));
                        }
                        bck = fwd.bk();
                        if bck.fd() != fwd {
                            malloc_printerr("malloc(): largebin double linked list corrupted (bk)");
                        }
                    }
                } else {
                    victim.set_fd_nextsize(Some(victim));
                    victim.set_bk_nextsize(Some(victim));
                }
            }
            av.mark_bin(victim_index);
            victim.set_bk(bck);
            victim.set_fd(fwd);
            fwd.set_bk(victim);
            bck.set_fd(victim);
        }
    }

    /// `victim` (of `size`, already unlinked) serves `nb`: hand it all out if the rest
    /// would be too small for a chunk, else split and put the remainder in the unsorted bin.
    ///
    /// # Safety
    /// `victim` is a free chunk of `size >= nb` bytes of the held arena, out of its bin.
    unsafe fn finish_split(
        &self,
        av: &ArenaState,
        victim: Chunk,
        size: usize,
        nb: usize,
        remember: bool,
        corrupted: &str,
    ) {
        let remainder_size = size - nb;
        // SAFETY: the caller's chunk, its successor and the unsorted bin of the held arena.
        unsafe {
            if remainder_size < MINSIZE {
                victim.set_inuse_bit_at_offset(size);
                if !av.is_main() {
                    victim.set_non_main_arena();
                }
                self.taken(av, size);
                return;
            }
            self.taken(av, nb);
            let remainder = victim.plus(nb);
            let bck = av.unsorted();
            let fwd = bck.fd();
            if fwd.bk() != bck {
                malloc_printerr(corrupted);
            }
            remainder.set_bk(bck);
            remainder.set_fd(fwd);
            bck.set_fd(remainder);
            fwd.set_bk(remainder);
            if remember {
                av.set_last_remainder(remainder);
            }
            set_split_heads(av, victim, nb, remainder, remainder_size);
        }
    }

    /// Carve a chunk of `nb` bytes from the bottom of top, if top can spare it and remain a
    /// chunk.
    ///
    /// # Safety
    /// `av` is held (which `&ArenaState` proves) and its top chunk's header is intact.
    pub(crate) unsafe fn split_top(&self, av: &ArenaState, nb: usize) -> Option<Chunk> {
        let victim = av.top();
        // SAFETY: the held arena's top; the split stays inside it.
        unsafe {
            let size = victim.size();
            if size < nb + MINSIZE {
                return None;
            }
            let remainder = victim.plus(nb);
            av.set_top(remainder);
            victim.set_head(nb | PREV_INUSE | av.arena_bit());
            remainder.set_head((size - nb) | PREV_INUSE);
        }
        self.taken(av, nb);
        Some(victim)
    }

    /// The exit of every path that hands a chunk out of the arena: the chunk is checked (in
    /// builds with chunk checks), perturbed if asked, and its user pointer returned.
    ///
    /// # Safety
    /// `p` is a chunk of at least `nb` bytes of the held arena, just allocated.
    #[inline(always)]
    unsafe fn malloced(&self, av: &ArenaState, p: Chunk, nb: usize, bytes: usize) -> *mut u8 {
        if CHUNK_CHECKS {
            // SAFETY: forwarded.
            unsafe { self.check_malloced_chunk(av, p, nb) };
        }
        // SAFETY: the caller's chunk holds at least `nb - 8 >= bytes` bytes.
        unsafe { self.alloc_perturb(p.mem(), bytes) }
    }

    /// The exit through the thread cache (which glibc does not perturb).
    ///
    /// # Safety
    /// `mem` is a block of at least `nb` bytes of the held arena, just taken from the cache.
    #[inline(always)]
    unsafe fn malloced_cached(&self, av: &ArenaState, mem: *mut u8, nb: usize) -> *mut u8 {
        if CHUNK_CHECKS {
            // SAFETY: forwarded.
            unsafe { self.check_malloced_chunk(av, Chunk::from_mem(mem), nb) };
        }
        mem
    }

    /// `M_PERTURB`'s fill of a block just allocated.
    ///
    /// # Safety
    /// `mem` holds at least `bytes` bytes, the caller's alone.
    #[inline(always)]
    pub(crate) unsafe fn alloc_perturb(&self, mem: *mut u8, bytes: usize) -> *mut u8 {
        if let Some(perturb) = self.mp.perturb() {
            // SAFETY: the caller's promise.
            unsafe { core::ptr::write_bytes(mem, perturb ^ 0xff, bytes) };
        }
        mem
    }

    /// `M_PERTURB`'s fill of a block being freed.
    ///
    /// # Safety
    /// As for [`Malloc::alloc_perturb`].
    #[inline(always)]
    pub(crate) unsafe fn free_perturb(&self, mem: *mut u8, bytes: usize) {
        if let Some(perturb) = self.mp.perturb() {
            // SAFETY: the caller's promise.
            unsafe { core::ptr::write_bytes(mem, perturb, bytes) };
        }
    }

    /// Empty every fastbin, coalescing each chunk with free neighbours and putting the
    /// result in the unsorted bin (or into top).
    pub(crate) fn malloc_consolidate(&self, av: &ArenaState) {
        av.have_fastchunks.set(false);
        let unsorted = av.unsorted();
        for i in 0..NFASTBINS {
            let mut next = av.take_fastbin(i);
            while let Some(p) = next {
                if !aligned_ok(p.addr()) {
                    malloc_printerr("malloc_consolidate(): unaligned fastbin chunk detected");
                }
                // SAFETY: a fastbin chunk of the held arena and its neighbours, reached
                // through boundary tags that are vetted first (see the top of the file).
                unsafe {
                    if fastbin_index(p.size()) != i {
                        malloc_printerr("malloc_consolidate(): invalid chunk size");
                    }
                    next = p.fd_revealed();
                    let mut size = p.size();
                    let nextchunk = p.plus(size);
                    let nextsize = nextchunk.size();
                    let c;
                    (c, size) = merge_with_prev(p, size, "corrupted size vs. prev_size in fastbins");
                    if nextchunk != av.top() {
                        if !nextchunk.inuse_bit_at_offset(nextsize) {
                            size += nextsize;
                            unlink_chunk(nextchunk);
                        } else {
                            nextchunk.clear_inuse_bit_at_offset(0);
                        }
                        let first = unsorted.fd();
                        unsorted.set_fd(c);
                        first.set_bk(c);
                        if !in_smallbin_range(size) {
                            c.set_fd_nextsize(None);
                            c.set_bk_nextsize(None);
                        }
                        c.set_head(size | PREV_INUSE);
                        c.set_bk(unsorted);
                        c.set_fd(first);
                        c.set_foot(size);
                    } else {
                        size += nextsize;
                        c.set_head(size | PREV_INUSE);
                        av.merge_into_top(c);
                    }
                }
            }
        }
    }
}

/// Coalesce a chunk `p` of `size` bytes being freed with its predecessor if that is free:
/// the predecessor leaves its bin, and the merged chunk and its size are returned. glibc's
/// check that the predecessor's size agrees with the boundary tag aborts with `corrupted`.
///
/// # Safety
/// `p` is a chunk of a held arena whose `prev_size`, when its predecessor is free, leads to
/// that predecessor.
#[inline(always)]
pub(crate) unsafe fn merge_with_prev(p: Chunk, size: usize, corrupted: &str) -> (Chunk, usize) {
    // SAFETY: the caller's chunk; a free predecessor is in a bin of the same arena.
    unsafe {
        if p.prev_inuse() {
            return (p, size);
        }
        let prevsize = p.prev_size();
        let prev = p.prev();
        if prev.size() != prevsize {
            malloc_printerr(corrupted);
        }
        unlink_chunk(prev);
        (prev, size + prevsize)
    }
}

/// A link of a largebin's skip list, which is never missing on a chunk that is on the list;
/// a missing one means the list was overwritten.
#[inline(always)]
fn nextsize_link(link: Option<Chunk>) -> Chunk {
    match link {
        Some(c) => c,
        None => malloc_printerr("malloc(): largebin double linked list corrupted (nextsize)"),
    }
}

/// Headers after splitting `victim` into an allocated chunk of `nb` and a free `remainder`
/// (already linked into the unsorted bin; a large one starts off the skip list).
///
/// # Safety
/// `victim` and `remainder` are chunks of the held arena (`remainder` = `victim` + `nb`).
unsafe fn set_split_heads(
    av: &ArenaState,
    victim: Chunk,
    nb: usize,
    remainder: Chunk,
    remainder_size: usize,
) {
    // SAFETY: the caller's chunks.
    unsafe {
        if !in_smallbin_range(remainder_size) {
            remainder.set_fd_nextsize(None);
            remainder.set_bk_nextsize(None);
        }
        victim.set_head(nb | PREV_INUSE | av.arena_bit());
        remainder.set_head(remainder_size | PREV_INUSE);
        remainder.set_foot(remainder_size);
    }
}
