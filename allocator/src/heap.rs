//! Heaps of the non-main arenas: mmapped regions aligned to their maximum size.
//!
//! Each heap reserves `HEAP_MAX_SIZE` (64 MiB) of address space with `PROT_NONE`, aligned to
//! that size, and makes its front readable and writable with `mprotect` as it grows. The
//! alignment is what lets `free` find a chunk's arena: mask the chunk's address down to the
//! heap start, where a [`HeapInfo`] names the arena. An arena whose heap is full chains a new
//! heap in front of it (`prev` points back); a heap that empties is unmapped again.
//!
//! The end of a heap that is no longer the top's is closed with two fenceposts: a 16-byte
//! in-use chunk and a 0-size header, so coalescing never walks past it.

use core::cell::Cell;
use core::sync::atomic::Ordering;

use crate::arena::{Arena, ArenaState, CACHE_LINE};
use crate::bins::unlink_chunk;
use crate::chunk::{
    align_down, align_up, Chunk, CHUNK_HDR_SZ, MALLOC_ALIGN_MASK, MINSIZE, PREV_INUSE, SIZE_SZ,
};
use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::params::DEFAULT_MMAP_THRESHOLD_MAX;

/// Address space reserved for each heap; a power of two.
pub(crate) const HEAP_MAX_SIZE: usize = 2 * DEFAULT_MMAP_THRESHOLD_MAX;
pub(crate) const HEAP_MIN_SIZE: usize = 32 * 1024;

/// The header at the start of every heap (glibc's `heap_info`).
#[repr(C)]
pub(crate) struct HeapInfo {
    ar_ptr: Cell<*const Arena>,
    prev: Cell<*const HeapInfo>,
    /// Bytes in use by the arena, from the heap start.
    size: Cell<usize>,
    /// Bytes made readable and writable (at least `size`).
    mprotect_size: Cell<usize>,
    pagesize: Cell<usize>,
    _pad: usize,
}

// The first chunk after the header must give a 16-byte aligned user pointer.
const _: () = assert!((core::mem::size_of::<HeapInfo>() + 2 * SIZE_SZ) & MALLOC_ALIGN_MASK == 0);

pub(crate) const HEAP_INFO_SIZE: usize = core::mem::size_of::<HeapInfo>();

/// The heap containing `addr`.
///
/// # Safety
/// `addr` lies in a heap of a non-main arena that stays mapped while the result is used
/// (it does as long as any chunk of the heap exists).
#[inline(always)]
pub(crate) unsafe fn heap_for_ptr(addr: usize) -> &'static HeapInfo {
    // SAFETY: heaps are aligned to HEAP_MAX_SIZE and start with their HeapInfo.
    unsafe { &*((addr & !(HEAP_MAX_SIZE - 1)) as *const HeapInfo) }
}

/// Where a heap arena's header goes in its first heap: after the heap's header, on a cache
/// line of its own.
pub(crate) const fn arena_addr(heap: usize) -> usize {
    align_up(heap + HEAP_INFO_SIZE, CACHE_LINE)
}

impl HeapInfo {
    #[inline(always)]
    pub(crate) fn ar_ptr(&self) -> *const Arena {
        self.ar_ptr.get()
    }

    pub(crate) fn prev(&self) -> Option<&'static HeapInfo> {
        let p = self.prev.get();
        // SAFETY: `prev` is null or a live heap of the same arena.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    pub(crate) fn size(&self) -> usize {
        self.size.get()
    }

    /// Make this heap the newest one of `ar`, chained in front of `prev`.
    pub(crate) fn link(&self, ar: &'static Arena, prev: &'static HeapInfo) {
        self.ar_ptr.set(ar);
        self.prev.set(prev);
    }

    pub(crate) fn mprotect_size(&self) -> usize {
        self.mprotect_size.get()
    }

    pub(crate) fn addr(&self) -> usize {
        self as *const HeapInfo as usize
    }

    pub(crate) fn end(&self) -> usize {
        self.addr() + self.size.get()
    }

    /// The first chunk of this heap (after the arena header in an arena's first heap).
    pub(crate) fn first_chunk(&self) -> Chunk {
        let start = if arena_addr(self.addr()) == self.ar_ptr.get() as usize {
            first_chunk_after_arena(arena_addr(self.addr()))
        } else {
            self.addr() + HEAP_INFO_SIZE
        };
        // SAFETY: an address inside a live heap, so not zero.
        unsafe { Chunk::at(start) }
    }
}

/// Where the first chunk goes after an arena header at `arena`: aligned so its user pointer
/// is 16-byte aligned.
fn first_chunk_after_arena(arena: usize) -> usize {
    let ptr = arena + core::mem::size_of::<Arena>();
    let misalign = (ptr + CHUNK_HDR_SZ) & MALLOC_ALIGN_MASK;
    if misalign > 0 {
        ptr + (MALLOC_ALIGN_MASK + 1 - misalign)
    } else {
        ptr
    }
}

impl<K: Kernel> Malloc<K> {
    /// Map a new heap with at least `size` bytes usable (plus `top_pad` if it fits), aligned
    /// to `HEAP_MAX_SIZE`. Only the used part is made accessible.
    pub(crate) fn new_heap(&self, size: usize, top_pad: usize) -> Option<&'static HeapInfo> {
        let pagesize = self.pagesize();
        // Unsigned arithmetic that wraps, as glibc's: a "negative" top pad is no pad.
        let padded = size.wrapping_add(top_pad);
        let size = if padded < HEAP_MIN_SIZE {
            HEAP_MIN_SIZE
        } else if padded <= HEAP_MAX_SIZE {
            padded
        } else if size > HEAP_MAX_SIZE {
            return None;
        } else {
            HEAP_MAX_SIZE
        };
        let size = align_up(size, pagesize);
        let flags = libc::MAP_PRIVATE | libc::MAP_NORESERVE;
        let mut p2: Option<usize> = None;
        // Every munmap below gives back part of a reservation just made here, which nothing
        // uses yet (the range rule holds).
        // Reuse the aligned half left over from the last double-size reservation.
        let hint = self.aligned_heap_area.swap(0, Ordering::Relaxed);
        if hint != 0 {
            if let Ok(p) = self.sys_mmap(hint, HEAP_MAX_SIZE, libc::PROT_NONE, flags) {
                if p & (HEAP_MAX_SIZE - 1) == 0 {
                    p2 = Some(p);
                } else {
                    // SAFETY: a reservation just made (see above).
                    unsafe { self.sys_munmap(p, HEAP_MAX_SIZE) };
                }
            }
        }
        if p2.is_none() {
            match self.sys_mmap(0, HEAP_MAX_SIZE << 1, libc::PROT_NONE, flags) {
                Ok(p1) => {
                    let p = align_up(p1, HEAP_MAX_SIZE);
                    let lead = p - p1;
                    if lead != 0 {
                        // SAFETY: a reservation just made (see above).
                        unsafe { self.sys_munmap(p1, lead) };
                    } else {
                        self.aligned_heap_area.store(p + HEAP_MAX_SIZE, Ordering::Relaxed);
                    }
                    // SAFETY: a reservation just made (see above).
                    unsafe { self.sys_munmap(p + HEAP_MAX_SIZE, HEAP_MAX_SIZE - lead) };
                    p2 = Some(p);
                }
                Err(_) => {
                    // Maybe one heap's worth of space is left and happens to be aligned.
                    let p = self.sys_mmap(0, HEAP_MAX_SIZE, libc::PROT_NONE, flags).ok()?;
                    if p & (HEAP_MAX_SIZE - 1) != 0 {
                        // SAFETY: a reservation just made (see above).
                        unsafe { self.sys_munmap(p, HEAP_MAX_SIZE) };
                        return None;
                    }
                    p2 = Some(p);
                }
            }
        }
        let p = p2?;
        // SAFETY: the protection only grows, on a reservation nothing uses yet.
        if unsafe { self.sys_mprotect(p, size, libc::PROT_READ | libc::PROT_WRITE) }.is_err() {
            // SAFETY: a reservation just made (see above).
            unsafe { self.sys_munmap(p, HEAP_MAX_SIZE) };
            return None;
        }
        // SAFETY: the first `size` bytes at `p` are now ours, readable and writable, and a
        // HeapInfo (all Cells and plain words) may be written there.
        let h = unsafe {
            let h = p as *mut HeapInfo;
            h.write(HeapInfo {
                ar_ptr: Cell::new(core::ptr::null()),
                prev: Cell::new(core::ptr::null()),
                size: Cell::new(size),
                mprotect_size: Cell::new(size),
                pagesize: Cell::new(pagesize),
                _pad: 0,
            });
            &*h
        };
        self.stats.heaps_created.fetch_add(1, Ordering::Relaxed);
        Some(h)
    }

    /// Make `diff` more bytes of the heap usable.
    pub(crate) fn grow_heap(&self, h: &HeapInfo, diff: usize) -> bool {
        let diff = align_up(diff, h.pagesize.get());
        let new_size = h.size.get() + diff;
        if new_size > HEAP_MAX_SIZE {
            return false;
        }
        if new_size > h.mprotect_size.get() {
            let start = h.addr() + h.mprotect_size.get();
            let len = new_size - h.mprotect_size.get();
            // SAFETY: the protection only grows (PROT_NONE to read-write) past the heap's end.
            if unsafe { self.sys_mprotect(start, len, libc::PROT_READ | libc::PROT_WRITE) }.is_err() {
                return false;
            }
            h.mprotect_size.set(new_size);
        }
        h.size.set(new_size);
        true
    }

    /// Give the last `diff` bytes of the heap back to the kernel (the pages are dropped; the
    /// address range stays reserved and writable for later growth).
    ///
    /// # Safety
    /// The last `diff` bytes hold nothing anyone uses (they are the end of the top chunk).
    pub(crate) unsafe fn shrink_heap(&self, h: &HeapInfo, diff: usize) -> bool {
        let Some(new_size) = h.size.get().checked_sub(diff) else {
            return false;
        };
        if new_size < HEAP_INFO_SIZE {
            return false;
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.sys_madvise_dontneed(h.addr() + new_size, diff) };
        h.size.set(new_size);
        true
    }

    /// Unmap a whole heap.
    ///
    /// # Safety
    /// Nothing in the heap is used any more, its header included (it is off its arena's
    /// chain, and its only chunk was the top, now moved to the previous heap).
    unsafe fn delete_heap(&self, h: &HeapInfo) {
        let addr = h.addr();
        let _ = self.aligned_heap_area.compare_exchange(
            addr + HEAP_MAX_SIZE,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded from the caller.
        unsafe { self.sys_munmap(addr, HEAP_MAX_SIZE) };
    }

    /// Create a new arena at the start of a fresh heap big enough for `size` (glibc's
    /// `_int_new_arena` without the bookkeeping of the arena list).
    pub(crate) fn new_heap_arena(&self, size: usize) -> Option<&'static Arena> {
        let overhead = CACHE_LINE + core::mem::size_of::<Arena>() + MALLOC_ALIGN_MASK + 1;
        let top_pad = self.mp.top_pad.load(Ordering::Relaxed);
        let h = match self.new_heap(size.saturating_add(overhead), top_pad) {
            Some(h) => h,
            // The request may be served by mmap instead: make a minimal arena.
            None => self.new_heap(overhead, top_pad)?,
        };
        let arena_addr = arena_addr(h.addr());
        // SAFETY: the heap's first page holds the header and the arena struct, at an address
        // aligned as an Arena must be; an Arena is valid when built by Arena::new.
        let a: &'static Arena = unsafe {
            let a = arena_addr as *mut Arena;
            a.write(Arena::new(false));
            &*a
        };
        h.ar_ptr.set(a);
        // SAFETY: nobody else knows the arena yet.
        let av = unsafe {
            a.init();
            a.assume_held()
        };
        av.system_mem.set(h.size());
        av.max_system_mem.set(h.size());
        let top_addr = first_chunk_after_arena(arena_addr);
        // SAFETY: inside the heap's accessible part, after the arena.
        unsafe {
            let top = Chunk::at(top_addr);
            top.set_head((h.end() - top_addr) | PREV_INUSE);
            av.set_fresh_top(top);
        }
        Some(a)
    }

    /// Trim the heap arena `av` holds after a large free: unmap whole heaps that hold
    /// nothing but the top, then give back the tail of the top beyond `pad` once it passes
    /// the trim threshold.
    pub(crate) fn heap_trim(&self, av: &ArenaState, pad: usize) -> bool {
        let Some(heap) = av.top_heap() else {
            return false;
        };
        let pagesize = heap.pagesize.get();
        let mut heap = heap;
        let mut top = av.top();
        // A heap whose only chunk is the top can go, if the previous heap has room to be
        // the top's home again.
        while top.addr() == heap.addr() + HEAP_INFO_SIZE {
            let Some(prev_heap) = heap.prev() else {
                break;
            };
            // SAFETY: the end mark, fencepost and the free chunk before them are chunks of
            // the held arena at the end of its previous heap, which sysmalloc closed so: a
            // [0 | P] header whose prev_size reaches back over the in-use fencepost. The heap
            // deleted holds nothing but the top, which moves back to the previous heap.
            unsafe {
                let end_mark = Chunk::at(prev_heap.end() - CHUNK_HDR_SZ);
                debug_assert_eq!(end_mark.head(), PREV_INUSE);
                let mut p = end_mark.minus(end_mark.prev_size());
                let fence_size = p.size();
                let mut new_size = fence_size + CHUNK_HDR_SZ;
                let prev_free = !p.prev_inuse();
                if prev_free {
                    new_size += p.prev_size();
                }
                if new_size + (HEAP_MAX_SIZE - prev_heap.size()) < pad + MINSIZE + pagesize {
                    break;
                }
                av.system_mem.set(av.system_mem.get() - heap.size());
                if fence_size >= MINSIZE {
                    // The in-use remnant that closed the heap goes back to top.
                    self.returned(av, fence_size);
                }
                self.delete_heap(heap);
                heap = prev_heap;
                if prev_free {
                    p = p.prev();
                    unlink_chunk(p);
                }
                top = p;
                top.set_head(new_size | PREV_INUSE);
                av.set_top(top);
            }
            // The fenceposts and whatever was freed before them are not known to be zero.
            av.clean_from.set(heap.end());
        }
        // SAFETY: the held arena's top.
        let top_size = unsafe { top.size() };
        if top_size < self.mp.trim_threshold.load(Ordering::Relaxed) {
            return false;
        }
        let top_area = top_size as isize - MINSIZE as isize - 1;
        if top_area < 0 || top_area as usize <= pad {
            return false;
        }
        let extra = align_down(top_area as usize - pad, pagesize);
        // SAFETY: the heap's last `extra` bytes are the end of the top chunk, which stays at
        // least MINSIZE + pad.
        if extra == 0 || !unsafe { self.shrink_heap(heap, extra) } {
            return false;
        }
        av.system_mem.set(av.system_mem.get() - extra);
        // SAFETY: as above; the top shrinks with its heap.
        unsafe { top.set_head((top_size - extra) | PREV_INUSE) };
        av.top_trimmed_to(heap.end());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_geometry() {
        assert_eq!(HEAP_MAX_SIZE, 64 << 20);
        assert!(HEAP_MAX_SIZE.is_power_of_two());
        assert_eq!(HEAP_INFO_SIZE, 48);
        let arena = arena_addr(0x1000_0000);
        assert_eq!(arena % CACHE_LINE, 0);
        assert!(arena >= 0x1000_0000 + HEAP_INFO_SIZE);
        let first = first_chunk_after_arena(arena);
        assert_eq!((first + CHUNK_HDR_SZ) % 16, 0);
        assert!(first >= arena + core::mem::size_of::<Arena>());
    }
}
