//! Chunks in a mapping of their own (glibc's `sysmalloc_mmap`, `munmap_chunk`,
//! `mremap_chunk`): requests at or above the mmap threshold that top cannot serve.
//!
//! Such a chunk starts `prev_size` bytes into its mapping (0, or the lead `memalign` cut
//! off) and is flagged `IS_MMAPPED`; the mapping ends where the chunk does, on a page. It
//! belongs to no arena: it is allocated and freed without a lock, resized with `mremap`,
//! and freeing it may raise the dynamic mmap threshold.

use core::sync::atomic::Ordering;

use crate::chunk::{Chunk, CHUNK_HDR_SZ, IS_MMAPPED, SIZE_SZ};
use crate::kernel::Kernel;
use crate::malloc::Malloc;
use crate::params::DEFAULT_MMAP_THRESHOLD_MAX;
use crate::printerr::malloc_printerr;

impl<K: Kernel> Malloc<K> {
    /// A chunk of at least `nb` bytes in its own mapping: the size rounded up to pages, the
    /// offset from the mapping's start (0 here) in `prev_size`.
    pub(crate) fn sysmalloc_mmap(&self, nb: usize) -> Option<*mut u8> {
        let pagesize = self.pagesize();
        let size = nb.checked_add(SIZE_SZ + pagesize - 1)? & !(pagesize - 1);
        if size <= nb {
            return None;
        }
        let mm = self.sys_mmap(0, size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE).ok()?;
        // SAFETY: a fresh, page-aligned (so non-zero) mapping of `size` bytes, ours alone.
        let p = unsafe {
            let p = Chunk::at(mm);
            p.set_prev_size(0);
            p.set_head(size | IS_MMAPPED);
            p
        };
        let n = self.mp.n_mmaps.fetch_add(1, Ordering::Relaxed) + 1;
        self.mp.max_n_mmaps.fetch_max(n, Ordering::Relaxed);
        let sum = self.mp.mmapped_mem.fetch_add(size, Ordering::Relaxed) + size;
        self.mp.max_mmapped_mem.fetch_max(sum, Ordering::Relaxed);
        self.mmap_taken(size as isize);
        Some(p.mem())
    }

    /// The mapping an mmapped chunk lives in, `(start, length)`, after checking that its
    /// header describes one (else abort with glibc's words for `who`).
    ///
    /// # Safety
    /// The header rule (see [`Chunk`]) for `p`.
    unsafe fn mapping_of(&self, p: Chunk, who: &str) -> (usize, usize) {
        let pagesize = self.pagesize();
        // SAFETY: the caller's promise.
        let (offset, size) = unsafe { (p.prev_size(), p.size()) };
        let block = p.addr().wrapping_sub(offset);
        let total = offset.wrapping_add(size);
        // The user pointer of an mmapped chunk is at a power-of-two offset in its page
        // (memalign moves it, by a power of two) — or at offset 0.
        let in_page = p.mem() as usize & (pagesize - 1);
        if (block | total) & (pagesize - 1) != 0 || in_page & in_page.wrapping_sub(1) != 0 {
            malloc_printerr(who);
        }
        (block, total)
    }

    /// Release an mmapped chunk, raising the mmap threshold to its size first if glibc's
    /// dynamic threshold applies (a freed mapping larger than the threshold, up to 32 MiB,
    /// says such sizes are better served from the heap).
    ///
    /// # Safety
    /// `p` is an in-use mmapped chunk of the caller's.
    pub(crate) unsafe fn free_mmapped(&self, p: Chunk) {
        // SAFETY: the caller's chunk.
        let head = unsafe { p.head() };
        if !self.mp.no_dyn_threshold.load(Ordering::Relaxed)
            && head > self.mp.mmap_threshold.load(Ordering::Relaxed)
            && head <= DEFAULT_MMAP_THRESHOLD_MAX
        {
            let size = head & !crate::chunk::SIZE_BITS;
            self.mp.mmap_threshold.store(size, Ordering::Relaxed);
            self.mp.trim_threshold.store(2 * size, Ordering::Relaxed);
        }
        // SAFETY: forwarded.
        unsafe { self.munmap_chunk(p) };
    }

    /// Unmap an mmapped chunk.
    ///
    /// # Safety
    /// `p` is an in-use mmapped chunk of the caller's; it is gone afterwards.
    pub(crate) unsafe fn munmap_chunk(&self, p: Chunk) {
        // SAFETY: the caller's chunk.
        let (block, total) = unsafe { self.mapping_of(p, "munmap_chunk(): invalid pointer") };
        self.mp.n_mmaps.fetch_sub(1, Ordering::Relaxed);
        self.mp.mmapped_mem.fetch_sub(total, Ordering::Relaxed);
        self.mmap_taken(-(total as isize));
        // A failing munmap leaves the mapping in place; there is nothing better to do.
        // SAFETY: the whole mapping of the caller's chunk, which is gone from now on.
        unsafe { self.sys_munmap(block, total) };
    }

    /// Resize an mmapped chunk to chunk size `nb` with `mremap`, moving it if need be.
    /// `None` if the kernel refuses; the old chunk is then untouched.
    ///
    /// # Safety
    /// `p` is an in-use mmapped chunk of the caller's.
    pub(crate) unsafe fn mremap_chunk(&self, p: Chunk, nb: usize) -> Option<Chunk> {
        let pagesize = self.pagesize();
        // SAFETY: the caller's chunk.
        let (block, total) = unsafe { self.mapping_of(p, "mremap_chunk(): invalid pointer") };
        let offset = p.addr() - block;
        let new_size = nb.checked_add(offset + SIZE_SZ + pagesize - 1)? & !(pagesize - 1);
        if new_size == total {
            return Some(p);
        }
        // SAFETY: the caller's own mapping; its contents move with it, and the caller uses
        // the chunk returned from here on.
        let cp = unsafe { self.sys_mremap(block, total, new_size, libc::MREMAP_MAYMOVE) }.ok()?;
        // SAFETY: the chunk header at the same offset in the (possibly moved) mapping, which
        // is the caller's; the offset word moved with it.
        let p = unsafe {
            let p = Chunk::at(cp + offset);
            p.set_head((new_size - offset) | IS_MMAPPED);
            p
        };
        self.mmap_taken(new_size as isize - total as isize);
        let sum = if new_size >= total {
            self.mp.mmapped_mem.fetch_add(new_size - total, Ordering::Relaxed) + (new_size - total)
        } else {
            self.mp.mmapped_mem.fetch_sub(total - new_size, Ordering::Relaxed) - (total - new_size)
        };
        self.mp.max_mmapped_mem.fetch_max(sum, Ordering::Relaxed);
        Some(p)
    }

    /// `realloc` of an mmapped chunk to `bytes` (chunk size `nb`): `mremap` it; failing
    /// that keep it if it is large enough, else move the data to a new block.
    ///
    /// # Safety
    /// `oldp` is an in-use mmapped chunk of the caller's.
    pub(crate) unsafe fn realloc_mmapped(&'static self, oldp: Chunk, bytes: usize, nb: usize) -> *mut u8 {
        // SAFETY: the caller's chunk.
        unsafe {
            if let Some(newp) = self.mremap_chunk(oldp, nb) {
                return newp.mem();
            }
            let oldsize = oldp.size();
            if oldsize - SIZE_SZ >= nb {
                return oldp.mem();
            }
            let new = self.malloc(bytes);
            if !new.is_null() {
                // Both blocks are ours and distinct; the old one holds oldsize - 16 bytes.
                core::ptr::copy_nonoverlapping(oldp.mem(), new, oldsize - CHUNK_HDR_SZ);
                self.munmap_chunk(oldp);
            }
            new
        }
    }
}
