//! Freeing a chunk into its arena (glibc's `_int_free`), and releasing mmapped chunks.
//!
//! A freed chunk goes, in order of preference, to the thread cache, to a fastbin (small
//! chunks, not coalesced), or is coalesced with its free neighbours and put in the unsorted
//! bin — or merged into top. Freeing something large afterwards also consolidates fastbins
//! and trims the heap if its top has grown past the trim threshold.

use core::sync::atomic::Ordering;

use crate::arena::{Arena, DEFER_ADDR_LIMIT};
use crate::bins::{fastbin_index, in_smallbin_range, unlink_chunk, FASTBIN_CONSOLIDATION_THRESHOLD};
use crate::chunk::{aligned_ok, protect_ptr, reveal_ptr, Chunk, CHUNK_HDR_SZ, MINSIZE, PREV_INUSE};
use crate::heap::heap_for_ptr;
use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::prim::single_threaded;
use crate::printerr::malloc_printerr;
use crate::tcache::{slot_of, Tcache};

impl<K: Kernel> Malloc<K> {
    /// Free chunk `p` of arena `av`. `have_lock`: the caller already holds `av` (or is the
    /// only thread).
    pub(crate) fn int_free(&'static self, av: &Arena, p: Chunk, have_lock: bool) {
        self.int_free_inline(av, p, have_lock)
    }

    /// `int_free`, inlined into `free`'s slow path (one call layer less on every free the
    /// thread cache cannot take).
    #[inline(always)]
    pub(crate) fn int_free_inline(&'static self, av: &Arena, p: Chunk, have_lock: bool) {
        let size = p.size();
        // The allocator never wraps around the end of the address space, and every chunk is
        // aligned and at least MINSIZE: anything else was not allocated here.
        if p.addr() > size.wrapping_neg() || !aligned_ok(p.addr()) {
            malloc_printerr("free(): invalid pointer");
        }
        if size < MINSIZE || !aligned_ok(size) {
            malloc_printerr("free(): invalid size");
        }

        let tc = self.thread_tcache();
        let slot = slot_of(size);
        if tc.serves(slot) {
            let key = self.key();
            let mem = p.mem();
            if Tcache::entry_key(mem) == key {
                tc.verify_not_cached(mem, slot);
                if !p.is_mmapped() {
                    self.free_marked(av, p, have_lock);
                    return;
                }
            }
            // Another arena's chunk goes back to it (deferred), not into this cache: see
            // `Tcache::home`.
            if tc.has_room(slot) && (have_lock || self.slot().is_home(av)) {
                tc.put(p, slot, key);
                return;
            }
        }

        if p.is_mmapped() {
            self.munmap_chunk(p);
            return;
        }
        self.int_free_chunk_inline(av, p, have_lock);
    }

    /// A chunk carrying the tcache key but not in this thread's cache: most likely one
    /// deferred to its arena and now freed again (else another thread's cached chunk, or user
    /// data that happens to equal the key). Free what waits for the arena first and then
    /// this chunk, in the arena: a double free is caught there as glibc catches it.
    #[cold]
    #[inline(never)]
    fn free_marked(&'static self, av: &Arena, p: Chunk, have_lock: bool) {
        if have_lock {
            self.drain_deferred(av);
            self.int_free_chunk(av, p, true);
        } else {
            let locked = self.lock_arena(av);
            self.int_free_chunk(av, p, true);
            self.unlock_arena(av, locked);
        }
    }

    /// Free the chunks other threads deferred to `av` (which the caller holds).
    #[inline(always)]
    pub(crate) fn drain_deferred(&'static self, av: &Arena) {
        // Nearly always empty: one load inline, the loop out of line.
        if av.has_deferred() {
            self.drain_deferred_slow(av);
        }
    }

    #[cold]
    #[inline(never)]
    fn drain_deferred_slow(&'static self, av: &Arena) {
        let mut c = av.take_deferred();
        while !c.is_null() {
            // SAFETY: the revealed link of a deferred chunk is another one or null.
            let next = unsafe { Chunk::at(reveal_ptr(c.fd_addr(), c.fd_word())) };
            // The key goes: once freed here the chunk may be handed out from a bin.
            c.set_bk_word(0);
            self.int_free_chunk(av, c, true);
            c = next;
        }
    }

    /// Take `av` to free `p` without waiting: `Some(locked)` when `p` can be freed now (after
    /// what was deferred), `None` when `p` was deferred for the lock's next holder instead.
    ///
    /// A chunk of an arena other than the thread's own is deferred even when the lock is
    /// free: one atomic push, where freeing it here would take the lock and pull the owner's
    /// bins into this thread's cache (the owner drains the stack under the lock it takes
    /// anyway). Large chunks, whose free may consolidate and trim, are freed in place. Once
    /// `DEFER_LIMIT` chunks wait, the freeing thread frees them all itself if the lock is
    /// free (and waits for it past `DEFER_HARD_LIMIT`), so memory does not pile up behind an
    /// owner that seldom allocates.
    #[inline(never)]
    fn take_or_defer(&'static self, av: &Arena, p: Chunk) -> Option<bool> {
        const DEFER_MAX_SIZE: usize = 16 * 1024;
        const DEFER_LIMIT: usize = 128;
        const DEFER_HARD_LIMIT: usize = 4096;
        let own = self.slot().arena().is_some_and(|a| core::ptr::eq(a, av));
        if (own || p.size() > DEFER_MAX_SIZE) && av.mutex.try_lock() {
            self.drain_deferred(av);
            return Some(true);
        }
        if p.addr() >= DEFER_ADDR_LIMIT {
            return Some(self.lock_and_drain(av));
        }
        let waiting = av.defer(p, self.key());
        if waiting >= DEFER_LIMIT {
            // A busy arena will be drained by its next holder soon; past the hard limit,
            // wait for it.
            if av.mutex.try_lock() {
                self.drain_deferred(av);
                av.mutex.unlock();
            } else if waiting >= DEFER_HARD_LIMIT {
                let locked = self.lock_and_drain(av);
                self.unlock_arena(av, locked);
            }
        }
        None
    }

    /// Free a non-mmapped chunk into arena `av` itself (fastbin, or coalesced into the
    /// unsorted bin or top), not into a thread cache. Without `have_lock`, a busy arena gets
    /// the chunk deferred instead: frees never wait for another thread's lock.
    fn int_free_chunk(&'static self, av: &Arena, p: Chunk, have_lock: bool) {
        self.int_free_chunk_inline(av, p, have_lock)
    }

    /// `int_free_chunk`, inlined into `free`'s slow path.
    #[inline(always)]
    fn int_free_chunk_inline(&'static self, av: &Arena, p: Chunk, have_lock: bool) {
        let size = p.size();
        // Nothing is ever deferred before the second thread starts.
        let locked = if have_lock || single_threaded() {
            false
        } else {
            match self.take_or_defer(av, p) {
                Some(locked) => locked,
                None => return,
            }
        };
        if size <= self.mp.max_fast() {
            let next = p.plus(size);
            if next.head() <= CHUNK_HDR_SZ || next.size() >= av.system_mem.get() {
                malloc_printerr("free(): invalid next size (fast)");
            }
            self.free_perturb(p.mem(), size - CHUNK_HDR_SZ);
            self.returned(av, size);
            av.have_fastchunks.set(true);
            let idx = fastbin_index(size);
            let old = av.fastbin(idx);
            // Freeing the chunk at the head of its bin again is a cheap double free to see.
            if old == p {
                malloc_printerr("double free or corruption (fasttop)");
            }
            p.set_fd_word(protect_ptr(p.fd_addr(), old.addr()));
            av.set_fastbin(idx, p);
            if !old.is_null() && fastbin_index(old.size()) != idx {
                malloc_printerr("invalid fastbin entry (free)");
            }
        } else {
            self.free_and_coalesce(av, p, size);
        }
        self.unlock_arena(av, locked);
    }

    /// Coalesce `p` with free neighbours and file it in the unsorted bin or the top chunk;
    /// then, after a large free, consolidate and trim. `av` is held.
    fn free_and_coalesce(&'static self, av: &Arena, p: Chunk, size: usize) {
        let next = p.plus(size);
        if p == av.top() {
            malloc_printerr("double free or corruption (top)");
        }
        if av.contiguous() && next.addr() >= av.top().addr() + av.top().size() {
            malloc_printerr("double free or corruption (out)");
        }
        if !next.prev_inuse() {
            malloc_printerr("double free or corruption (!prev)");
        }
        let nextsize = next.size();
        if next.head() <= CHUNK_HDR_SZ || nextsize >= av.system_mem.get() {
            malloc_printerr("free(): invalid next size (normal)");
        }
        self.free_perturb(p.mem(), size - CHUNK_HDR_SZ);
        self.returned(av, size);

        let mut p = p;
        let mut size = size;
        if !p.prev_inuse() {
            let prevsize = p.prev_size();
            size += prevsize;
            p = p.minus(prevsize);
            if p.size() != prevsize {
                malloc_printerr("corrupted size vs. prev_size while consolidating");
            }
            unlink_chunk(p);
        }
        if next != av.top() {
            if !next.inuse_bit_at_offset(nextsize) {
                unlink_chunk(next);
                size += nextsize;
            } else {
                next.clear_inuse_bit_at_offset(0);
            }
            // Freed chunks get one chance in the unsorted bin before they are sorted.
            let bck = av.unsorted();
            let fwd = bck.fd();
            if fwd.bk() != bck {
                malloc_printerr("free(): corrupted unsorted chunks");
            }
            p.set_fd(fwd);
            p.set_bk(bck);
            if !in_smallbin_range(size) {
                p.set_fd_nextsize(Chunk::NULL);
                p.set_bk_nextsize(Chunk::NULL);
            }
            bck.set_fd(p);
            fwd.set_bk(p);
            p.set_head(size | PREV_INUSE);
            p.set_foot(size);
        } else {
            size += nextsize;
            p.set_head(size | PREV_INUSE);
            av.merge_into_top(p);
        }

        if size >= FASTBIN_CONSOLIDATION_THRESHOLD {
            if av.have_fastchunks.get() {
                self.malloc_consolidate(av);
            }
            let top_pad = self.mp.top_pad.load(Ordering::Relaxed);
            if av.is_main() {
                if av.top().size() >= self.mp.trim_threshold.load(Ordering::Relaxed) {
                    self.systrim(top_pad, av);
                }
            } else {
                self.heap_trim(heap_for_ptr(av.top().addr()), top_pad);
            }
        }
    }

    /// Unmap an mmapped chunk (with the mapping's leading offset kept in `prev_size`).
    pub(crate) fn munmap_chunk(&self, p: Chunk) {
        let pagesize = self.pagesize();
        let size = p.size();
        let offset = p.prev_size();
        let block = p.addr().wrapping_sub(offset);
        let total = offset.wrapping_add(size);
        let in_page = p.mem() as usize & (pagesize - 1);
        if (block | total) & (pagesize - 1) != 0 || in_page & in_page.wrapping_sub(1) != 0 {
            malloc_printerr("munmap_chunk(): invalid pointer");
        }
        self.mp.n_mmaps.fetch_sub(1, Ordering::Relaxed);
        self.mp.mmapped_mem.fetch_sub(total, Ordering::Relaxed);
        self.mmap_taken(-(total as isize));
        // A failing munmap leaves the mapping in place; there is nothing better to do.
        self.sys_munmap(block, total);
    }
}
