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

use crate::arena::Arena;
use crate::bins::{
    bin_index, fastbin_index, idx2bit, idx2block, in_smallbin_range, largebin_index, smallbin_index,
    unlink_chunk, BINMAPSHIFT, BINMAPSIZE, NFASTBINS,
};
use crate::chunk::{
    aligned_ok, checked_request2size, reveal_ptr, Chunk, CHUNK_HDR_SZ, MINSIZE, PREV_INUSE, SIZE_BITS,
};
use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::printerr::malloc_printerr;
use crate::tcache::slot_of;

/// Bound on unsorted chunks sorted per call, so one malloc cannot take unbounded time.
const MAX_ITERS: usize = 10_000;

impl<K: Kernel> Malloc<K> {
    /// Allocate `bytes` from arena `av`, which the caller holds (or the process is
    /// single-threaded). Returns null if even the kernel has no more memory.
    pub(crate) fn int_malloc(&'static self, av: &Arena, bytes: usize) -> *mut u8 {
        self.int_malloc_inline(av, bytes)
    }

    /// `int_malloc`, inlined into `malloc`'s slow path (one call layer less on every
    /// request the thread cache cannot serve).
    #[inline(always)]
    pub(crate) fn int_malloc_inline(&'static self, av: &Arena, bytes: usize) -> *mut u8 {
        let Some(nb) = checked_request2size(bytes) else {
            return core::ptr::null_mut();
        };
        let tc = self.thread_tcache();
        let key = self.key();
        let tslot = slot_of(nb);
        let tcache_fits = tc.serves(tslot);

        if nb <= self.mp.max_fast() {
            let idx = fastbin_index(nb);
            let victim = av.fastbin(idx);
            if !victim.is_null() {
                if !aligned_ok(victim.addr()) {
                    malloc_printerr("malloc(): unaligned fastbin chunk detected 2");
                }
                let next = reveal_ptr(victim.fd_addr(), victim.fd_word());
                if next != 0 && !aligned_ok(next) {
                    malloc_printerr("malloc(): unaligned fastbin chunk detected");
                }
                // SAFETY: the revealed link of a fastbin chunk is another chunk or null.
                av.set_fastbin(idx, unsafe { Chunk::at(next) });
                if fastbin_index(victim.size()) != idx {
                    malloc_printerr("malloc(): memory corruption (fast)");
                }
                if tcache_fits {
                    while tc.has_room(tslot) {
                        let c = av.fastbin(idx);
                        if c.is_null() {
                            break;
                        }
                        if !aligned_ok(c.addr()) {
                            malloc_printerr("malloc(): unaligned fastbin chunk detected 3");
                        }
                        // SAFETY: as above.
                        av.set_fastbin(idx, unsafe { Chunk::at(reveal_ptr(c.fd_addr(), c.fd_word())) });
                        self.taken(av, nb);
                        tc.put(c, tslot, key);
                    }
                }
                self.taken(av, nb);
                return self.alloc_perturb(victim.mem(), bytes);
            }
        }

        let mut idx;
        if in_smallbin_range(nb) {
            idx = smallbin_index(nb);
            let bin = av.bin_at(idx);
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
                    while tc.has_room(tslot) {
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
                return self.alloc_perturb(victim.mem(), bytes);
            }
        } else {
            idx = largebin_index(nb);
            if av.have_fastchunks.get() {
                self.malloc_consolidate(av);
            }
        }

        let tcache_unsorted_limit = self.mp.tcache_unsorted_limit.load(core::sync::atomic::Ordering::Relaxed);
        let mut return_cached = false;
        let mut tcache_unsorted_count = 0usize;
        loop {
            let unsorted = av.unsorted();
            let mut iters = 0;
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

                // A run of small requests carves the same remainder: better locality.
                if in_smallbin_range(nb)
                    && bck == unsorted
                    && victim == av.last_remainder.get()
                    && size > nb + MINSIZE
                {
                    let remainder_size = size - nb;
                    let remainder = victim.plus(nb);
                    unsorted.set_bk(remainder);
                    unsorted.set_fd(remainder);
                    av.last_remainder.set(remainder);
                    remainder.set_bk(unsorted);
                    remainder.set_fd(unsorted);
                    set_split_heads(av, victim, nb, remainder, remainder_size);
                    self.taken(av, nb);
                    return self.alloc_perturb(victim.mem(), bytes);
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
                    return self.alloc_perturb(victim.mem(), bytes);
                }

                self.place_in_bin(av, victim, size);

                tcache_unsorted_count += 1;
                if return_cached && tcache_unsorted_limit > 0 && tcache_unsorted_count > tcache_unsorted_limit
                {
                    return tc.get(tslot);
                }
                iters += 1;
                if iters >= MAX_ITERS {
                    break;
                }
            }

            if return_cached {
                return tc.get(tslot);
            }

            // Large request: the smallest chunk of its own bin that fits.
            if !in_smallbin_range(nb) {
                let bin = av.bin_at(idx);
                let first = bin.fd();
                if first != bin && first.head() >= nb {
                    let mut victim = first.bk_nextsize();
                    let mut size = victim.size();
                    while size < nb {
                        victim = victim.bk_nextsize();
                        size = victim.size();
                    }
                    // Take a follower of that size if there is one: the skip list stays put.
                    if victim != bin.bk() && victim.head() == victim.fd().head() {
                        victim = victim.fd();
                    }
                    unlink_chunk(victim);
                    self.finish_split(av, victim, size, nb, false, "malloc(): corrupted unsorted chunks");
                    return self.alloc_perturb(victim.mem(), bytes);
                }
            }

            // The next larger non-empty bin, through the binmap.
            idx += 1;
            let mut block = idx2block(idx);
            let mut map = av.binmap_word(block);
            let mut bit = idx2bit(idx);
            let mut i = idx;
            let mut found = Chunk::NULL;
            loop {
                if bit > map || bit == 0 {
                    loop {
                        block += 1;
                        if block >= BINMAPSIZE {
                            break;
                        }
                        map = av.binmap_word(block);
                        if map != 0 {
                            break;
                        }
                    }
                    if block >= BINMAPSIZE {
                        break;
                    }
                    i = block << BINMAPSHIFT;
                    bit = 1;
                }
                while bit & map == 0 {
                    i += 1;
                    bit <<= 1;
                }
                let bin = av.bin_at(i);
                let victim = bin.bk();
                if victim == bin {
                    // A stale bit: clear it and move on.
                    map &= !bit;
                    av.set_binmap_word(block, map);
                    i += 1;
                    bit <<= 1;
                } else {
                    found = victim;
                    break;
                }
            }
            if !found.is_null() {
                let victim = found;
                let size = victim.size();
                debug_assert!(size >= nb);
                unlink_chunk(victim);
                self.finish_split(
                    av,
                    victim,
                    size,
                    nb,
                    in_smallbin_range(nb),
                    "malloc(): corrupted unsorted chunks 2",
                );
                return self.alloc_perturb(victim.mem(), bytes);
            }

            // The top chunk.
            let victim = av.top();
            let size = victim.size();
            if size > av.system_mem.get() {
                malloc_printerr("malloc(): corrupted top size");
            }
            if size >= nb + MINSIZE {
                let remainder = victim.plus(nb);
                av.set_top(remainder);
                victim.set_head(nb | PREV_INUSE | av.arena_bit());
                remainder.set_head((size - nb) | PREV_INUSE);
                self.taken(av, nb);
                return self.alloc_perturb(victim.mem(), bytes);
            }
            if av.have_fastchunks.get() {
                self.malloc_consolidate(av);
                idx = bin_index(nb);
                continue;
            }
            let p = self.sysmalloc(nb, av);
            if p.is_null() {
                return p;
            }
            return self.alloc_perturb(p, bytes);
        }
    }

    /// Sort a chunk out of the unsorted bin into its small or large bin (largebins are kept
    /// in decreasing size order, with a skip list over distinct sizes).
    fn place_in_bin(&self, av: &Arena, victim: Chunk, size: usize) {
        let victim_index;
        let mut bck;
        let mut fwd;
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
                    victim.set_fd_nextsize(fwd.fd());
                    victim.set_bk_nextsize(fwd.fd().bk_nextsize());
                    fwd.fd().set_bk_nextsize(victim);
                    victim.bk_nextsize().set_fd_nextsize(victim);
                } else {
                    while head < fwd.head() {
                        fwd = fwd.fd_nextsize();
                    }
                    if head == fwd.head() {
                        // Same size as an existing one: insert after it, off the skip list.
                        fwd = fwd.fd();
                    } else {
                        victim.set_fd_nextsize(fwd);
                        victim.set_bk_nextsize(fwd.bk_nextsize());
                        if fwd.bk_nextsize().fd_nextsize() != fwd {
                            malloc_printerr("malloc(): largebin double linked list corrupted (nextsize)");
                        }
                        fwd.set_bk_nextsize(victim);
                        victim.bk_nextsize().set_fd_nextsize(victim);
                    }
                    bck = fwd.bk();
                    if bck.fd() != fwd {
                        malloc_printerr("malloc(): largebin double linked list corrupted (bk)");
                    }
                }
            } else {
                victim.set_fd_nextsize(victim);
                victim.set_bk_nextsize(victim);
            }
        }
        av.mark_bin(victim_index);
        victim.set_bk(bck);
        victim.set_fd(fwd);
        fwd.set_bk(victim);
        bck.set_fd(victim);
    }

    /// `victim` (of `size`, already unlinked) serves `nb`: hand it all out if the rest
    /// would be too small for a chunk, else split and put the remainder in the unsorted bin.
    fn finish_split(
        &self,
        av: &Arena,
        victim: Chunk,
        size: usize,
        nb: usize,
        remember: bool,
        corrupted: &str,
    ) {
        let remainder_size = size - nb;
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
            av.last_remainder.set(remainder);
        }
        set_split_heads(av, victim, nb, remainder, remainder_size);
    }

    #[inline(always)]
    pub(crate) fn alloc_perturb(&self, mem: *mut u8, bytes: usize) -> *mut u8 {
        if let Some(perturb) = self.mp.perturb() {
            // SAFETY: `bytes` bytes of the block just allocated.
            unsafe { core::ptr::write_bytes(mem, perturb ^ 0xff, bytes) };
        }
        mem
    }

    #[inline(always)]
    pub(crate) fn free_perturb(&self, mem: *mut u8, bytes: usize) {
        if let Some(perturb) = self.mp.perturb() {
            // SAFETY: `bytes` bytes of a block being freed.
            unsafe { core::ptr::write_bytes(mem, perturb, bytes) };
        }
    }

    /// Empty every fastbin, coalescing each chunk with free neighbours and putting the
    /// result in the unsorted bin (or into top).
    pub(crate) fn malloc_consolidate(&self, av: &Arena) {
        av.have_fastchunks.set(false);
        let unsorted = av.unsorted();
        for i in 0..NFASTBINS {
            let mut p = av.fastbin(i);
            av.set_fastbin(i, Chunk::NULL);
            while !p.is_null() {
                if !aligned_ok(p.addr()) {
                    malloc_printerr("malloc_consolidate(): unaligned fastbin chunk detected");
                }
                if fastbin_index(p.size()) != i {
                    malloc_printerr("malloc_consolidate(): invalid chunk size");
                }
                // SAFETY: the revealed link of a fastbin chunk is another chunk or null.
                let nextp = unsafe { Chunk::at(reveal_ptr(p.fd_addr(), p.fd_word())) };
                let mut size = p.size();
                let nextchunk = p.plus(size);
                let nextsize = nextchunk.size();
                let mut c = p;
                if !c.prev_inuse() {
                    let prevsize = c.prev_size();
                    size += prevsize;
                    c = c.minus(prevsize);
                    if c.size() != prevsize {
                        malloc_printerr("corrupted size vs. prev_size in fastbins");
                    }
                    unlink_chunk(c);
                }
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
                        c.set_fd_nextsize(Chunk::NULL);
                        c.set_bk_nextsize(Chunk::NULL);
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
                p = nextp;
            }
        }
    }
}

/// Headers after splitting `victim` into an allocated chunk of `nb` and a free `remainder`
/// (already linked into the unsorted bin; a large one starts off the skip list).
fn set_split_heads(av: &Arena, victim: Chunk, nb: usize, remainder: Chunk, remainder_size: usize) {
    if !in_smallbin_range(remainder_size) {
        remainder.set_fd_nextsize(Chunk::NULL);
        remainder.set_bk_nextsize(Chunk::NULL);
    }
    victim.set_head(nb | PREV_INUSE | av.arena_bit());
    remainder.set_head(remainder_size | PREV_INUSE);
    remainder.set_foot(remainder_size);
}
