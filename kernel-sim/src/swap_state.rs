//! The swap cache and swap-in (Linux's `mm/swap_state.c`, with the reads and writes of
//! `mm/page_io.c`).
//!
//! A page being swapped out is put in the swap cache under its new slot before any PTE is
//! changed, and every PTE that mapped it gets the slot's swap entry; once written and
//! unmapped everywhere it leaves the cache and its frame is freed. A fault on a swap entry
//! looks in the cache first — the page may still be there, or another process may have
//! read it back already — and only otherwise reads it, with the neighbouring slots of its
//! `2^page_cluster`-aligned cluster (`swap_cluster_readahead`), into new cache pages.
//! A page read back stays in the cache, and its slot keeps its bytes, while the slot is
//! still named by another PTE or until a write to it (the copy on swap is then stale): a
//! page in the swap cache is mapped read-only everywhere, so that write faults and frees
//! the slot first (`folio_free_swap`). The cache holds one reference on its pages.

use crate::page::{PG_ANON, PG_DIRTY, PG_SWAPCACHE};
use crate::physmem::PhysMem;
use crate::Errno;

impl PhysMem {
    /// Put anonymous page `pfn` in the swap cache under `slot` (`add_to_swap_cache`).
    pub(crate) fn add_to_swap_cache(&mut self, pfn: usize, slot: usize) {
        let p = self.page(pfn);
        p.set(PG_SWAPCACHE);
        p.set_swap_slot(slot);
        p.refcount.set(p.refcount.get() + 1);
        self.swap.set_cached_page(slot, Some(pfn));
    }

    /// Take page `pfn` out of the swap cache (`delete_from_swap_cache`), dropping the
    /// cache's reference; its slot is free once no PTE names it. Returns the references
    /// left (0: the caller frees the page).
    pub(crate) fn delete_from_swap_cache(&mut self, pfn: usize) -> u32 {
        let p = self.page(pfn);
        if !p.has(PG_SWAPCACHE) {
            crate::util::bug("delete_from_swap_cache of a page not in it", pfn, 0);
        }
        let slot = p.swap_slot();
        p.clear(PG_SWAPCACHE);
        p.set_swap_slot(crate::page::NIL as usize);
        let left = p.refcount.get() - 1;
        p.refcount.set(left);
        self.swap.set_cached_page(slot, None);
        left
    }

    /// Take page `pfn` out of the swap cache and free it if that was its last reference
    /// (`free_swap_cache`).
    ///
    /// # Safety
    /// No PTE maps the page (its mapcount is 0) and nothing else reaches its frame.
    pub(crate) unsafe fn free_cache_page(&mut self, pfn: usize) {
        if self.delete_from_swap_cache(pfn) == 0 {
            // SAFETY: the caller's promise; the cache's was the last reference.
            unsafe { self.free_user_page(pfn) };
        }
    }

    /// A PTE holding swap entry `slot` is gone (zap, exit): one count less, and when none
    /// is left the slot and a cached page nothing maps go too (`free_swap_and_cache`). A
    /// cached page still mapped leaves the cache instead: its bytes are its mappings' now.
    pub(crate) fn free_swap_and_cache(&mut self, slot: usize) {
        if self.swap.swap_put(slot) != 0 {
            return;
        }
        let Some(pfn) = self.swap.cached_page(slot) else { return };
        if self.page(pfn).mapcount.get() == 0 {
            // SAFETY: no PTE maps it and no swap entry names its slot: nothing reaches it.
            unsafe { self.free_cache_page(pfn) };
        } else {
            self.page(pfn).set(PG_DIRTY);
            self.delete_from_swap_cache(pfn);
        }
    }

    /// A page in the swap cache that only its mappings use gives its slot up
    /// (`folio_free_swap`): it becomes dirty anonymous memory. Returns whether it did.
    pub(crate) fn try_free_swap(&mut self, pfn: usize) -> bool {
        let p = self.page(pfn);
        if !p.has(PG_SWAPCACHE) || self.swap.swap_count(p.swap_slot()) != 0 {
            return false;
        }
        p.set(PG_DIRTY);
        self.delete_from_swap_cache(pfn);
        true
    }

    /// The page for swap entry `slot`: the cached one (a minor fault), or read from the
    /// area with the free-standing neighbours of its cluster (a major fault, `true`).
    /// `ENOMEM` if no frame can be had for the page itself, `EIO` if it cannot be read.
    pub(crate) fn swapin(&mut self, slot: usize) -> Result<(usize, bool), Errno> {
        if let Some(pfn) = self.swap.cached_page(slot) {
            return Ok((pfn, false));
        }
        let mask = (1usize << self.swap.page_cluster) - 1;
        let (start, end) = ((slot & !mask).max(1), (slot | mask).min(self.swap.max - 1));
        let pfn = self.read_swap_page(slot)?;
        for s in start..=end {
            if s == slot || self.swap.swap_count(s) == 0 || self.swap.cached_page(s).is_some() {
                continue;
            }
            // Read-ahead takes what is free and gives up quietly (`__GFP_NORETRY`).
            if self.read_swap_page(s).is_err() {
                break;
            }
            self.vmstat.swap_ra += 1;
        }
        Ok((pfn, true))
    }

    /// Read slot `slot` into a new page of the swap cache, on the inactive list.
    fn read_swap_page(&mut self, slot: usize) -> Result<usize, Errno> {
        let pfn = self.alloc_pages(0, false, crate::buddy::MIGRATE_MOVABLE)?;
        if let Err(e) = self.swap.read_slot(slot, self.frame(pfn)) {
            // SAFETY: just allocated, reached by nothing.
            unsafe { self.free_pages(pfn, 0) };
            return Err(e);
        }
        let p = self.page(pfn);
        p.set(PG_ANON);
        // The allocation's reference becomes the cache's.
        p.refcount.set(0);
        self.add_to_swap_cache(pfn, slot);
        self.lru_add(pfn);
        self.vmstat.pswpin += 1;
        Ok(pfn)
    }

    /// Write page `pfn` of the swap cache to its slot (`swap_writeout`), leaving it clean.
    pub(crate) fn swap_writepage(&mut self, pfn: usize) -> Result<(), Errno> {
        let slot = self.page(pfn).swap_slot();
        self.swap.write_slot(slot, self.frame(pfn))?;
        self.page(pfn).clear(PG_DIRTY);
        self.vmstat.pswpout += 1;
        Ok(())
    }
}
