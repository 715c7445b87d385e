//! Freeing a chunk into its arena (glibc's `_int_free`), and releasing mmapped chunks.
//!
//! A freed chunk goes, in order of preference, to the thread cache, to a fastbin (small
//! chunks, not coalesced), or is coalesced with its free neighbours and put in the unsorted
//! bin — or merged into top. Freeing something large afterwards also consolidates fastbins
//! and trims the heap if its top has grown past the trim threshold.

use core::sync::atomic::Ordering;

use crate::arena::single_threaded;
use crate::arena::Arena;
use crate::bins::{fastbin_index, in_smallbin_range, unlink_chunk, FASTBIN_CONSOLIDATION_THRESHOLD};
use crate::chunk::{aligned_ok, protect_ptr, reveal_ptr, Chunk, CHUNK_HDR_SZ, MINSIZE, PREV_INUSE};
use crate::heap::heap_for_ptr;
use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::printerr::malloc_printerr;
use crate::tcache::{slot_of, Tcache};

impl<K: Kernel> Malloc<K> {
    /// Free chunk `p` of arena `av`. `have_lock`: the caller already holds `av` (or is the
    /// only thread).
    pub(crate) fn int_free(&'static self, av: &Arena, p: Chunk, have_lock: bool) {
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
            }
            if tc.has_room(slot) {
                tc.put(p, slot, key);
                return;
            }
        }

        if p.is_mmapped() {
            self.munmap_chunk(p);
            return;
        }
        self.int_free_chunk(av, p, have_lock);
    }

    /// Free the chunks other threads deferred to `av` (which the caller holds).
    #[inline]
    pub(crate) fn drain_deferred(&'static self, av: &Arena) {
        let mut c = av.take_deferred();
        while !c.is_null() {
            // SAFETY: the revealed link of a deferred chunk is another one or null.
            let next = unsafe { Chunk::at(reveal_ptr(c.fd_addr(), c.fd_word())) };
            self.int_free_chunk(av, c, true);
            c = next;
        }
    }

    /// Take `av` for a free without waiting: `Some(locked)` when the chunk can be freed now
    /// (after freeing what was deferred), `None` when another thread holds the arena — the
    /// chunk is then deferred to it rather than waited for.
    #[inline]
    fn try_take(&'static self, av: &Arena) -> Option<bool> {
        let locked = if single_threaded() {
            false
        } else if av.mutex.try_lock() {
            true
        } else {
            return None;
        };
        self.drain_deferred(av);
        Some(locked)
    }

    /// Free a non-mmapped chunk into arena `av` itself (fastbin, or coalesced into the
    /// unsorted bin or top), not into a thread cache. Without `have_lock`, a busy arena gets
    /// the chunk deferred instead: frees never wait for another thread's lock.
    fn int_free_chunk(&'static self, av: &Arena, p: Chunk, have_lock: bool) {
        let size = p.size();
        let locked = if have_lock {
            false
        } else {
            match self.try_take(av) {
                Some(locked) => locked,
                None => {
                    av.defer(p);
                    return;
                }
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
