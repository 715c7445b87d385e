//! The LRU lists (Linux keeps them in `mm/swap.c`, whatever the name says): every page of
//! user memory that reclaim may take — anonymous pages, page-cache pages of regular files,
//! pages in the swap cache — is on one of four lists, inactive or active, anonymous or
//! file. New pages go to the head of the inactive list (`folio_add_lru`); reclaim takes
//! from the tails (`vmscan`). The lists thread through the frames' descriptors (`next`,
//! `prev`), which only free blocks and slabs use otherwise.
//!
//! Not on any list: shmem pages (never swapped out here), page tables, slabs, the zero
//! page, and pages of `VM_LOCKED` mappings (`PG_MLOCKED`, Linux's unevictable list).

use crate::page::{Page, NIL, PG_ACTIVE, PG_ANON, PG_FILE, PG_LRU, PG_MLOCKED, PG_REFERENCED, PG_SWAPCACHE};
use crate::physmem::PhysMem;

pub const LRU_INACTIVE_ANON: usize = 0;
pub const LRU_ACTIVE_ANON: usize = 1;
pub const LRU_INACTIVE_FILE: usize = 2;
pub const LRU_ACTIVE_FILE: usize = 3;
pub const NR_LRU_LISTS: usize = 4;

/// One list: frame numbers of its head and tail, and its length.
#[derive(Clone, Copy, Debug)]
pub struct LruList {
    pub head: u32,
    pub tail: u32,
    pub nr: usize,
}

impl LruList {
    pub const EMPTY: LruList = LruList { head: NIL, tail: NIL, nr: 0 };
}

/// Whether a page belongs on the file lists (page cache) or the anonymous ones.
#[inline]
pub fn page_is_file_lru(page: &Page) -> bool {
    page.has(PG_FILE | crate::page::PG_LAZYFREE)
}

/// The list a page on the LRU is on.
#[inline]
pub fn page_lru(page: &Page) -> usize {
    let base = if page_is_file_lru(page) { LRU_INACTIVE_FILE } else { LRU_INACTIVE_ANON };
    base + usize::from(page.has(PG_ACTIVE))
}

/// Whether the page is of a kind the LRU lists hold: anonymous (in the swap cache or not)
/// or a page of a regular file.
#[inline]
pub fn page_lru_kind(page: &Page) -> bool {
    page.has(PG_ANON | PG_FILE | PG_SWAPCACHE)
}

/// Whether reclaim could take the page: of the LRU's kind and not locked in memory.
#[inline]
pub fn page_evictable(page: &Page) -> bool {
    page_lru_kind(page) && !page.has(PG_MLOCKED)
}

impl PhysMem {
    fn link_head(&mut self, pfn: usize, lru: usize) {
        let head = self.lru[lru].head;
        let p = self.page(pfn);
        p.prev.set(NIL);
        p.next.set(head);
        if head == NIL {
            self.lru[lru].tail = pfn as u32;
        } else {
            self.page(head as usize).prev.set(pfn as u32);
        }
        self.lru[lru].head = pfn as u32;
        self.lru[lru].nr += 1;
    }

    fn unlink(&mut self, pfn: usize, lru: usize) {
        let p = self.page(pfn);
        let (prev, next) = (p.prev.get(), p.next.get());
        if prev == NIL {
            self.lru[lru].head = next;
        } else {
            self.page(prev as usize).next.set(next);
        }
        if next == NIL {
            self.lru[lru].tail = prev;
        } else {
            self.page(next as usize).prev.set(prev);
        }
        let p = self.page(pfn);
        p.next.set(NIL);
        p.prev.set(NIL);
        self.lru[lru].nr -= 1;
    }

    /// Put a new page of user memory on the head of its inactive list (`folio_add_lru`);
    /// pages reclaim cannot take stay off.
    pub fn lru_add(&mut self, pfn: usize) {
        let p = self.page(pfn);
        if p.has(PG_LRU) || !page_evictable(p) {
            return;
        }
        p.clear(PG_ACTIVE);
        p.set(PG_LRU);
        let lru = page_lru(p);
        self.link_head(pfn, lru);
    }

    /// Put a page isolated from the LRU back on the head of the list its flags name, active
    /// or inactive, counting no move (`folio_putback_lru`); pages reclaim cannot take stay
    /// off.
    pub fn lru_putback(&mut self, pfn: usize) {
        let p = self.page(pfn);
        if p.has(PG_LRU) || !page_evictable(p) {
            return;
        }
        p.set(PG_LRU);
        let lru = page_lru(p);
        self.link_head(pfn, lru);
    }

    /// Take a page off its list (`lruvec_del_folio`), keeping its flags but `PG_LRU`.
    pub fn lru_del(&mut self, pfn: usize) {
        let p = self.page(pfn);
        if !p.has(PG_LRU) {
            return;
        }
        let lru = page_lru(p);
        self.unlink(pfn, lru);
        self.page(pfn).clear(PG_LRU);
    }

    /// Move a page on the LRU to the head of the active (`active`) or inactive list of its
    /// kind, counting an activation or deactivation.
    pub fn lru_move_head(&mut self, pfn: usize, active: bool) {
        let p = self.page(pfn);
        if !p.has(PG_LRU) {
            return;
        }
        let was = p.has(PG_ACTIVE);
        let from = page_lru(p);
        self.unlink(pfn, from);
        let p = self.page(pfn);
        if active {
            p.set(PG_ACTIVE);
        } else {
            p.clear(PG_ACTIVE);
        }
        let to = page_lru(p);
        self.link_head(pfn, to);
        self.count_move(active, was);
    }

    fn count_move(&mut self, active: bool, was: bool) {
        if active && !was {
            self.vmstat.pgactivate += 1;
        } else if !active && was {
            self.vmstat.pgdeactivate += 1;
        }
    }

    /// A use of the page through a system call (`folio_mark_accessed`): the first marks it
    /// referenced, the second activates it.
    pub fn mark_page_accessed(&mut self, pfn: usize) {
        let p = self.page(pfn);
        if !p.has(PG_REFERENCED) {
            p.set(PG_REFERENCED);
        } else if p.has(PG_LRU) && !p.has(PG_ACTIVE) {
            p.clear(PG_REFERENCED);
            self.lru_move_head(pfn, true);
        }
    }

    /// The page's mapping by a `VM_LOCKED` VMA makes it unevictable, or its last such
    /// mapping going makes it evictable again (`mlock_folio`, `munlock_folio`).
    pub fn set_mlocked(&mut self, pfn: usize, locked: bool) {
        let p = self.page(pfn);
        if locked == p.has(PG_MLOCKED) {
            return;
        }
        if locked {
            self.lru_del(pfn);
            self.page(pfn).set(PG_MLOCKED);
            self.vmstat.nr_mlock += 1;
        } else {
            self.page(pfn).clear(PG_MLOCKED);
            self.vmstat.nr_mlock -= 1;
            self.lru_add(pfn);
        }
    }

    /// `MADV_FREE` of an anonymous page (`folio_mark_lazyfree`): clean, unreferenced, at the
    /// head of the inactive file list.
    pub fn mark_lazyfree(&mut self, pfn: usize) {
        let on = self.page(pfn).has(PG_LRU);
        self.lru_del(pfn);
        let p = self.page(pfn);
        p.set(crate::page::PG_LAZYFREE);
        p.clear(PG_ACTIVE | PG_REFERENCED | crate::page::PG_DIRTY);
        self.vmstat.pglazyfree += 1;
        if on {
            self.lru_add(pfn);
        }
    }

    /// A lazily freed page written again: ordinary dirty anonymous memory once more
    /// (`folio_set_swapbacked`).
    pub fn clear_lazyfree(&mut self, pfn: usize) {
        if !self.page(pfn).has(crate::page::PG_LAZYFREE) {
            return;
        }
        let on = self.page(pfn).has(PG_LRU);
        self.lru_del(pfn);
        let p = self.page(pfn);
        p.clear(crate::page::PG_LAZYFREE);
        p.set(crate::page::PG_DIRTY);
        if on {
            self.lru_add(pfn);
        }
    }

    /// Pages on each list.
    pub fn lru_sizes(&self) -> [usize; NR_LRU_LISTS] {
        core::array::from_fn(|i| self.lru[i].nr)
    }

    /// Walk every list: links consistent both ways, lengths right, every page flagged as
    /// on its list and evictable.
    pub fn check_lru(&self) -> Result<(), crate::check::CheckError> {
        for lru in 0..NR_LRU_LISTS {
            let (mut n, mut prev, mut cur) = (0usize, NIL, self.lru[lru].head);
            while cur != NIL {
                let p = self.page(cur as usize);
                if !p.has(PG_LRU) || page_lru(p) != lru || p.prev.get() != prev || !page_evictable(p) {
                    return crate::check::fail("LRU page not of its list or badly linked", cur as usize, lru);
                }
                n += 1;
                if n > self.nr_frames() {
                    return crate::check::fail("LRU list loops", lru, n);
                }
                prev = cur;
                cur = p.next.get();
            }
            if prev != self.lru[lru].tail || n != self.lru[lru].nr {
                return crate::check::fail("LRU list tail or length wrong", lru, n);
            }
        }
        Ok(())
    }
}
