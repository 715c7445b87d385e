//! Getting memory from the kernel and giving it back (glibc's `sysmalloc`, `systrim`,
//! `mtrim`); chunks with a mapping of their own are in `mmap_chunk.rs`.
//!
//! - A request of at least `mmap_threshold` that top cannot serve gets its own mapping.
//! - Otherwise the main arena moves the program break up by the request plus `top_pad`,
//!   rounded to pages; if `brk` fails (an address-space hole, `RLIMIT_DATA`) it maps at least
//!   1 MiB instead and stops assuming its memory is contiguous. A heap arena grows its heap
//!   with `mprotect`, or chains a new heap.
//! - When top exceeds `trim_threshold` after a large free, the break moves back down.

use core::sync::atomic::Ordering;

use crate::arena::{ArenaGuard, ArenaState};
use crate::bins::{bin_index, NBINS};
use crate::chunk::{
    align_down, align_up, Chunk, CHUNK_HDR_SZ, MALLOC_ALIGNMENT, MALLOC_ALIGN_MASK, MINSIZE, NON_MAIN_ARENA,
    PREV_INUSE, SIZE_SZ,
};
use crate::heap::HEAP_INFO_SIZE;
use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::printerr::malloc_printerr;

/// The least the main arena maps when `brk` fails.
const MMAP_AS_MORECORE_SIZE: usize = 1024 * 1024;

/// Size of glibc's `struct malloc_chunk` (header and four links), used by `mtrim`.
const MALLOC_CHUNK_SIZE: usize = 6 * SIZE_SZ;

// The `unsafe` blocks below touch the held arena's top chunk, chunks next to it, and memory
// the kernel has just handed out for the arena: all of it the arena's, held by the guard.

impl<K: Kernel> Malloc<K> {
    /// Top cannot serve `nb`: get memory from the kernel, and serve it.
    pub(crate) fn sysmalloc(&'static self, nb: usize, av: &ArenaGuard) -> *mut u8 {
        let mut tried_mmap = false;
        if nb >= self.mp.mmap_threshold.load(Ordering::Relaxed)
            && self.mp.n_mmaps.load(Ordering::Relaxed) < self.mp.n_mmaps_max.load(Ordering::Relaxed)
        {
            if let Some(mem) = self.sysmalloc_mmap(nb) {
                return mem;
            }
            tried_mmap = true;
        }
        // As in glibc: checked after the mmap attempt, which does not touch top.
        self.check_top_before_growth(av);

        // What the thread's grown cache bins hold could have served this: they give it
        // back once the call that got here lets go of the arena (`shrink_if_due`).
        self.thread_tcache().note_heap_growth();
        if av.is_main() {
            self.grow_main_arena(nb, av);
        } else if !self.grow_heap_arena(nb, av) && !tried_mmap {
            if let Some(mem) = self.sysmalloc_mmap(nb) {
                return mem;
            }
        }

        // SAFETY: the held arena's top, just grown (or left alone) above.
        match unsafe { self.split_top(av, nb) } {
            Some(p) => p.mem(),
            None => core::ptr::null_mut(),
        }
    }

    /// glibc's assertion on entering `sysmalloc`: top is the initial top (size 0) or a chunk
    /// of at least `MINSIZE` after an in-use chunk, ending on a page. Growth is the first
    /// path to look at a top that an overflow of the block before it has overwritten (an
    /// emptied header reads as size 0, which no request fits); glibc aborts here too, in
    /// these words.
    fn check_top_before_growth(&self, av: &ArenaState) {
        let old_top = av.top();
        // SAFETY: the held arena's top (see the top of the file).
        let (old_size, prev_inuse) = unsafe { (old_top.size(), old_top.prev_inuse()) };
        let old_end = old_top.addr().wrapping_add(old_size);
        let ok = (old_top == av.initial_top() && old_size == 0)
            || (old_size >= MINSIZE && prev_inuse && old_end & (self.pagesize() - 1) == 0);
        if !ok {
            malloc_printerr(
                "Fatal glibc error: malloc assertion failure in sysmalloc: (old_top == initial_top (av) && \
                 old_size == 0) || ((unsigned long) (old_size) >= MINSIZE && prev_inuse (old_top) && \
                 ((unsigned long) old_end & (pagesize - 1)) == 0)",
            );
        }
    }

    /// Grow a heap arena by `nb` (plus a chunk): extend its current heap, or chain a new
    /// one, closing the old heap with fenceposts. Returns whether top changed.
    fn grow_heap_arena(&'static self, nb: usize, av: &ArenaGuard) -> bool {
        let old_top = av.top();
        // SAFETY: the held arena's top (see the top of the file).
        let old_size = unsafe { old_top.size() };
        let Some(old_heap) = av.top_heap() else {
            return false;
        };
        let old_heap_size = old_heap.size();
        if MINSIZE + nb > old_size && self.grow_heap(old_heap, MINSIZE + nb - old_size) {
            av.add_system_mem(old_heap.size() - old_heap_size);
            // SAFETY: the top now reaches the heap's new end, which is mapped.
            unsafe { old_top.set_head((old_heap.end() - old_top.addr()) | PREV_INUSE) };
            return true;
        }
        let top_pad = self.mp.top_pad.load(Ordering::Relaxed);
        let Some(heap) = self.new_heap(nb + MINSIZE + HEAP_INFO_SIZE, top_pad) else {
            return false;
        };
        heap.link(av.arena(), old_heap);
        av.add_system_mem(heap.size());
        // SAFETY: the new heap's first chunk, right after its header, in memory just mapped
        // for this arena; then the old top and the fenceposts carved from its end.
        unsafe {
            let top = Chunk::at(heap.addr() + HEAP_INFO_SIZE);
            top.set_head((heap.size() - HEAP_INFO_SIZE) | PREV_INUSE);
            av.set_fresh_top(top);
            // Close the old heap: shrink the old top to leave room for a 16-byte in-use chunk
            // and a 0-size end mark, then free what is left of it.
            let old_size = (old_size - MINSIZE) & !MALLOC_ALIGN_MASK;
            old_top.plus(old_size + CHUNK_HDR_SZ).set_head(PREV_INUSE);
            if old_size >= MINSIZE {
                old_top.plus(old_size).set_head(CHUNK_HDR_SZ | PREV_INUSE);
                old_top.plus(old_size).set_foot(CHUNK_HDR_SZ);
                old_top.set_head(old_size | PREV_INUSE | NON_MAIN_ARENA);
                // Free space, not the program's: count it taken so that freeing it balances.
                self.taken(av, old_size);
                self.int_free_held(av, old_top);
            } else {
                old_top.set_head((old_size + CHUNK_HDR_SZ) | PREV_INUSE | NON_MAIN_ARENA);
                old_top.set_foot(old_size + CHUNK_HDR_SZ);
                if old_size + CHUNK_HDR_SZ >= MINSIZE {
                    // An in-use chunk that closes the heap.
                    self.taken(av, old_size + CHUNK_HDR_SZ);
                }
            }
        }
        true
    }

    /// Grow the main arena with `brk` (or `mmap` when `brk` fails).
    fn grow_main_arena(&'static self, nb: usize, av: &ArenaGuard) {
        let pagesize = self.pagesize();
        let old_top = av.top();
        // SAFETY: the held arena's top (see the top of the file).
        let old_size = unsafe { old_top.size() };
        let old_end = old_top.addr() + old_size;
        let top_pad = self.mp.top_pad.load(Ordering::Relaxed);

        // Signed arithmetic that wraps, as glibc's `long`: a "negative" top pad set through
        // mallopt or the environment cancels out rather than asking for the whole space.
        let mut size = (nb as isize).wrapping_add(top_pad as isize).wrapping_add(MINSIZE as isize);
        if av.contiguous() {
            // Hope to merge with the existing top; added back below if the break moved.
            size = size.wrapping_sub(old_size as isize);
        }
        size = size.wrapping_add(pagesize as isize - 1) & !(pagesize as isize - 1);

        let mut brk = None;
        let mut snd_brk = None;
        if size > 0 {
            // SAFETY: a positive increment gives nothing back.
            brk = unsafe { self.sys_sbrk(size) }.ok();
        }
        let mut size = size as usize;
        if brk.is_none() {
            // mmap as a backup, ignoring the mmap threshold and count: this memory becomes
            // part of the heap, not a chunk of its own.
            let mut msize = size;
            if av.contiguous() {
                msize = align_up(msize.saturating_add(old_size), pagesize);
            }
            msize = msize.max(MMAP_AS_MORECORE_SIZE);
            if msize > nb {
                if let Ok(m) = self.sys_mmap(0, msize, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE)
                {
                    brk = Some(m);
                    snd_brk = Some(m + msize);
                    size = msize;
                    // Never again assume contiguity: it could bridge foreign regions.
                    av.set_noncontiguous();
                }
            }
        }
        let Some(brk) = brk else {
            return;
        };

        if self.sbrk_base.load(Ordering::Relaxed) == 0 {
            self.sbrk_base.store(brk, Ordering::Relaxed);
        }
        av.add_system_mem(size);

        if brk == old_end && snd_brk.is_none() {
            // The break grew where our top ends: just make top bigger.
            // SAFETY: the top, which now reaches the new break.
            unsafe { old_top.set_head((size + old_size) | PREV_INUSE) };
            return;
        }
        if av.contiguous() && old_size != 0 && brk < old_end {
            malloc_printerr("break adjusted to free malloc space");
        }

        // A new region: the first one, one after a foreign sbrk, or a mapping.
        let mut correction = 0usize;
        let mut aligned_brk = brk;
        if av.contiguous() {
            if old_size != 0 {
                // Someone else moved the break: count the gap as ours, as glibc does.
                av.add_system_mem(brk - old_end);
            }
            let front_misalign = (brk + CHUNK_HDR_SZ) & MALLOC_ALIGN_MASK;
            if front_misalign > 0 {
                correction = MALLOC_ALIGNMENT - front_misalign;
                aligned_brk += correction;
            }
            // The old top cannot be merged: ask for its size again, and end on a page.
            correction += old_size;
            let end_misalign = brk + size + correction;
            correction += align_up(end_misalign, pagesize) - end_misalign;
            // SAFETY: a positive (or zero) increment gives nothing back.
            match unsafe { self.sys_sbrk(correction as isize) } {
                Ok(b) => snd_brk = Some(b),
                Err(_) => {
                    correction = 0;
                    snd_brk = self.current_break().ok();
                }
            }
        } else if snd_brk.is_none() {
            snd_brk = self.current_break().ok();
        }
        let Some(snd_brk) = snd_brk else {
            return;
        };

        // SAFETY: the start of the region just obtained, aligned (and not zero), then the
        // old top and the fenceposts carved from its end.
        unsafe {
            let top = Chunk::at(aligned_brk);
            top.set_head((snd_brk - aligned_brk + correction) | PREV_INUSE);
            av.set_fresh_top(top);
            av.add_system_mem(correction);
            av.add_segment(aligned_brk);

            if old_size != 0 {
                // Fence the old top off so nothing coalesces into memory we do not own: two
                // 16-byte in-use chunks at its end, and free the rest of it.
                let old_size = (old_size - 2 * CHUNK_HDR_SZ) & !MALLOC_ALIGN_MASK;
                old_top.set_head(old_size | PREV_INUSE);
                old_top.plus(old_size).set_head(CHUNK_HDR_SZ | PREV_INUSE);
                old_top.plus(old_size + CHUNK_HDR_SZ).set_head(CHUNK_HDR_SZ | PREV_INUSE);
                if old_size >= MINSIZE {
                    self.taken(av, old_size);
                    self.int_free_held(av, old_top);
                }
            }
        }
    }

    /// Give the main arena's top back to the kernel beyond `pad` bytes by lowering the break
    /// (only if the break is still where we left it). Returns whether memory was released.
    pub(crate) fn systrim(&self, pad: usize, av: &ArenaState) -> bool {
        let pagesize = self.pagesize();
        let top = av.top();
        // SAFETY: the held arena's top (see the top of the file).
        let top_size = unsafe { top.size() };
        let top_area = top_size as isize - MINSIZE as isize - 1;
        if top_area < 0 || top_area as usize <= pad {
            return false;
        }
        let extra = align_down(top_area as usize - pad, pagesize);
        if extra == 0 || extra > isize::MAX as usize {
            return false;
        }
        let Ok(current_brk) = self.current_break() else {
            return false;
        };
        if current_brk != top.addr() + top_size {
            return false;
        }
        // Ask, then look where the break really is: it may have moved less.
        // SAFETY: the break is where top ends, and the `extra` bytes below it are the end of
        // top (which keeps at least MINSIZE + pad): nothing uses them.
        let _ = unsafe { self.sys_sbrk(-(extra as isize)) };
        let Ok(new_brk) = self.current_break() else {
            return false;
        };
        let released = current_brk.saturating_sub(new_brk);
        if released == 0 {
            return false;
        }
        av.system_mem.set(av.system_mem.get() - released);
        // SAFETY: as above; the top shrinks to the new break.
        unsafe { top.set_head((top_size - released) | PREV_INUSE) };
        av.top_trimmed_to(new_brk);
        true
    }

    /// `malloc_trim` for one arena (held): consolidate, drop the pages inside every free
    /// chunk of at least a page, and trim the main arena's top.
    pub(crate) fn mtrim(&self, av: &ArenaState, pad: usize) -> bool {
        self.malloc_consolidate(av);
        let ps = self.pagesize();
        let psindex = bin_index(ps);
        let mut result = false;
        for i in 1..NBINS {
            if i != 1 && i < psindex {
                continue;
            }
            let bin = av.bin_at(i);
            // SAFETY: a bin of the held arena and its free chunks; the pages discarded lie
            // inside a free chunk, past its header and links, so nothing uses them.
            unsafe {
                let mut p = bin.bk();
                while p != bin {
                    let size = p.size();
                    if size > ps - 1 + MALLOC_CHUNK_SIZE {
                        // Keep the chunk's header and links; whole pages after them can go.
                        let paligned = align_up(p.addr() + MALLOC_CHUNK_SIZE, ps);
                        let rest = p.addr() + size - paligned;
                        if rest > ps - 1 {
                            self.sys_madvise_dontneed(paligned, rest & !(ps - 1));
                            result = true;
                        }
                    }
                    p = p.bk();
                }
            }
        }
        result | (av.is_main() && self.systrim(pad, av))
    }
}
