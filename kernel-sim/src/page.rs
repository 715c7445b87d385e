//! `struct page`: what the kernel records about each page frame. The array of them
//! (`mem_map`) lives in simulated physical memory itself, in frames reserved at boot, as
//! Linux's does.

use core::cell::Cell;

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
pub const PAGE_MASK: usize = !(PAGE_SIZE - 1);

/// The null link in the intrusive lists threaded through `mem_map`.
pub const NIL: u32 = u32::MAX;

/// The frame is not managed by the buddy allocator (firmware, the zero page, `mem_map`).
pub const PG_RESERVED: u32 = 1 << 0;
/// The first frame of a free block on a buddy free list; `order` says how big.
pub const PG_BUDDY: u32 = 1 << 1;
/// A slab: frames carved into kernel objects of one cache.
pub const PG_SLAB: u32 = 1 << 2;
/// A page-table page.
pub const PG_PGTABLE: u32 = 1 << 3;
/// Anonymous memory mapped by a process.
pub const PG_ANON: u32 = 1 << 4;
/// Page cache of a shmem inode (shared anonymous memory).
pub const PG_SWAPBACKED: u32 = 1 << 5;
/// Page cache of a regular file.
pub const PG_FILE: u32 = 1 << 6;
/// Written since it was read in (page cache) or since it was allocated.
pub const PG_DIRTY: u32 = 1 << 7;
/// A node of a shmem inode's page index.
pub const PG_RADIX: u32 = 1 << 8;
/// On one of the LRU lists (`next`/`prev` link it there).
pub const PG_LRU: u32 = 1 << 9;
/// On an active LRU list rather than an inactive one.
pub const PG_ACTIVE: u32 = 1 << 10;
/// Seen used once since reclaim last looked (a second look activates it).
pub const PG_REFERENCED: u32 = 1 << 11;
/// In the swap cache: an anonymous page with a swap slot (`swap_slot`), being written
/// out or read in, or kept after a read while its slot still holds the same bytes.
pub const PG_SWAPCACHE: u32 = 1 << 12;
/// Mapped by a `VM_LOCKED` VMA: on no LRU list, never reclaimed.
pub const PG_MLOCKED: u32 = 1 << 13;
/// The first page of a block `kmalloc` took whole (`kmalloc_large`); `order` says how big.
pub const PG_LARGE_KMALLOC: u32 = 1 << 14;
/// An anonymous page given up with `MADV_FREE` and not written since (Linux's anonymous
/// folio without `PG_swapbacked`): on the file lists, dropped rather than swapped when
/// reclaimed.
pub const PG_LAZYFREE: u32 = 1 << 15;

/// One page frame's descriptor. Fields are `Cell`s: the whole of `mem_map` is reached
/// through shared references while the machine lock is held.
#[repr(C)]
pub struct Page {
    pub flags: Cell<u32>,
    /// Order of the free block this frame heads (with `PG_BUDDY`).
    pub order: Cell<u8>,
    /// On the first frame of each pageblock: the pageblock's migratetype (Linux keeps it
    /// in the zone's `pageblock_flags` bitmap).
    pub pageblock_mt: Cell<u8>,
    /// Which slab cache owns the frame (with `PG_SLAB`).
    pub slab_cache: Cell<u16>,
    /// Links of the buddy free list or of a slab cache's partial list (frame numbers).
    pub next: Cell<u32>,
    pub prev: Cell<u32>,
    /// References to the frame: its allocation's (an anonymous page's first mapping, or the
    /// page cache's), and one for each further page-table entry that maps it.
    pub refcount: Cell<u32>,
    /// How many page-table entries map this frame.
    pub mapcount: Cell<u32>,
    /// First free object of a slab (an object index, or `NIL`); for a page in the swap
    /// cache, its swap slot (`swap_slot`): the two share a word as slab fields and
    /// `page->private` share one in Linux's `struct page`.
    pub freelist: Cell<u32>,
    /// Objects in use in a slab.
    pub inuse: Cell<u32>,
    /// Offset in pages within its inode, for page-cache pages.
    pub index: Cell<u64>,
    /// The inode of a page-cache page (a direct-map address), or 0.
    pub mapping: Cell<usize>,
}

impl Page {
    #[inline]
    pub fn has(&self, flag: u32) -> bool {
        self.flags.get() & flag != 0
    }

    #[inline]
    pub fn set(&self, flag: u32) {
        self.flags.set(self.flags.get() | flag)
    }

    #[inline]
    pub fn clear(&self, flag: u32) {
        self.flags.set(self.flags.get() & !flag)
    }

    /// One more PTE maps the page, holding a reference (`folio_add_*_rmap` with
    /// `folio_get`).
    #[inline]
    pub fn map_ref(&self) {
        self.mapcount.set(self.mapcount.get() + 1);
        self.refcount.set(self.refcount.get() + 1);
    }

    /// A PTE that mapped the page is gone, and its reference (`folio_remove_rmap_pte` and
    /// `folio_put`).
    #[inline]
    pub fn unmap_ref(&self) {
        self.mapcount.set(self.mapcount.get().saturating_sub(1));
        self.refcount.set(self.refcount.get().saturating_sub(1));
    }

    /// The swap slot of a page in the swap cache (`PG_SWAPCACHE`).
    #[inline]
    pub fn swap_slot(&self) -> usize {
        self.freelist.get() as usize
    }

    #[inline]
    pub fn set_swap_slot(&self, slot: usize) {
        self.freelist.set(slot as u32)
    }

    /// Reset to the state of a frame just taken from the buddy allocator.
    pub fn reset_allocated(&self) {
        self.flags.set(0);
        self.order.set(0);
        self.slab_cache.set(0);
        self.next.set(NIL);
        self.prev.set(NIL);
        self.refcount.set(1);
        self.mapcount.set(0);
        self.freelist.set(NIL);
        self.inuse.set(0);
        self.index.set(0);
        self.mapping.set(0);
    }
}

/// The order of the smallest block of pages that holds `bytes` (Linux's `get_order`).
#[inline]
pub const fn get_order(bytes: usize) -> usize {
    bytes.div_ceil(PAGE_SIZE).next_power_of_two().trailing_zeros() as usize
}

#[inline]
pub const fn page_align(x: usize) -> usize {
    x.wrapping_add(PAGE_SIZE - 1) & PAGE_MASK
}

#[inline]
pub const fn offset_in_page(x: usize) -> usize {
    x & (PAGE_SIZE - 1)
}
