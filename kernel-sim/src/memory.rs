//! Page-level work on ranges of the address space (Linux's `mm/memory.c` and friends):
//! zapping pages and freeing the page tables under them (`unmap_region`), changing
//! protections (`change_protection`, from `mm/mprotect.c`), preallocating and moving
//! page-table entries (`move_page_tables`, from `mm/mremap.c`), each followed by the host
//! update that keeps the MMU in step; and counting resident pages for the views.

use crate::machine::State;
use crate::mm::{Mm, VmFlags, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS, VM_SHARED, VM_WRITE};
use crate::mmu::{Batch, Host};
use crate::page::{PG_ANON, PG_FILE, PG_MLOCKED, PG_SWAPBACKED, PG_SWAPCACHE};
use crate::page_table::{
    for_each_pte, is_swap_pte, pte_alloc, pte_host_prot, pte_modify, pte_pfn, pte_present, pte_special,
    pte_to_swp_offset, PTE_DIRTY,
};
use crate::physmem::PhysMem;
use crate::Errno;

/// Drop every page mapped in `[start, end)`: anonymous pages go back to the buddy
/// allocator, page-cache pages stay in their inode; RSS falls. The host range becomes
/// inaccessible, so the next touch faults again.
///
/// # Safety
/// The range rule (see `Machine`) for `[start, end)`: its contents are discarded.
pub(crate) unsafe fn zap_page_range(mm: &mut Mm, phys: &mut PhysMem, host: Host, start: usize, end: usize) {
    let mut tlb = crate::tlb::MmuGather::new();
    // SAFETY: the caller's promise.
    unsafe { zap_ptes(mm, phys, host, start, end, &mut tlb) };
    crate::tlb::tlb_finish_mmu(phys, &mut mm.context, &tlb);
}

/// `zap_page_range` without its flush: the present PTEs cleared go to `tlb`.
///
/// # Safety
/// As for `zap_page_range`.
unsafe fn zap_ptes(
    mm: &mut Mm,
    phys: &mut PhysMem,
    host: Host,
    start: usize,
    end: usize,
    tlb: &mut crate::tlb::MmuGather,
) {
    mm.update_hiwater_rss();
    let (dm, pgd) = (phys.direct_map(), mm.pgd);
    let mut any = false;
    for_each_pte(dm, pgd, start, end, &mut |addr, slot| {
        let e = slot.get();
        slot.set(0);
        any = true;
        if pte_present(e) {
            tlb.adjust(addr, crate::page::PAGE_SIZE);
        }
        if is_swap_pte(e) {
            mm.rss[MM_SWAPENTS] -= 1;
            phys.free_swap_and_cache(pte_to_swp_offset(e));
            return;
        }
        if !pte_present(e) || pte_special(e) {
            return;
        }
        let pfn = pte_pfn(e);
        let page = phys.page(pfn);
        page.unmap_ref();
        if page.has(PG_MLOCKED) {
            // Back on the lists; if a locked mapping still holds it, reclaim finds that and
            // takes it off again.
            phys.set_mlocked(pfn, false);
        }
        let page = phys.page(pfn);
        if page.has(PG_ANON) {
            mm.rss[MM_ANONPAGES] -= 1;
            if page.mapcount.get() != 0 {
                // Still mapped by another process (copy-on-write after fork).
                return;
            }
            let cached = page.has(PG_SWAPCACHE);
            phys.vmstat.nr_anon_pages -= 1;
            let page = phys.page(pfn);
            if cached {
                // The cache keeps it while a swap entry names its slot; otherwise it is
                // garbage (`free_swap_cache`).
                if phys.swap.swap_count(page.swap_slot()) == 0 {
                    // SAFETY: as below; no swap entry names it either.
                    unsafe { phys.free_cache_page(pfn) };
                }
                return;
            }
            // SAFETY: the last PTE that mapped the page is cleared, and its host mapping
            // goes below (or, for another process's, the frame waits: `free_user_page`),
            // before anything can take the frame again (all under the machine lock); the
            // caller promises nothing uses its contents.
            unsafe { phys.free_user_page(pfn) };
        } else if page.has(PG_SWAPBACKED) {
            mm.rss[MM_SHMEMPAGES] -= 1;
        } else if page.has(PG_FILE) {
            mm.rss[MM_FILEPAGES] -= 1;
        }
    });
    if any {
        host.unmap(start, end - start);
    }
}

/// Tear down `[start, end)` after its VMAs are gone: zap the pages, then free the page
/// tables that only mapped `[floor, ceiling)` (`unmap_region`).
///
/// # Safety
/// The range rule (see `Machine`) for `[start, end)`, and the free rule (see `kptr`) for
/// the slots of the page tables that map only `[floor, ceiling)`.
pub(crate) unsafe fn unmap_region(
    mm: &mut Mm,
    phys: &mut PhysMem,
    host: Host,
    start: usize,
    end: usize,
    floor: usize,
    ceiling: usize,
) {
    // One gather for the pages and the tables, as Linux's unmap_region has.
    let mut tlb = crate::tlb::MmuGather::new();
    // SAFETY: the caller's promises.
    unsafe {
        zap_ptes(mm, phys, host, start, end, &mut tlb);
        crate::page_table::free_pgtables(
            phys,
            &mut mm.pgtables_bytes,
            mm.pgd,
            floor,
            ceiling,
            start,
            end,
            &mut tlb,
        );
    }
    crate::tlb::tlb_finish_mmu(phys, &mut mm.context, &tlb);
}

/// Give the pages mapped in `[start, end)` the protection of `flags`
/// (`change_protection`). Anonymous pages of a private writable VMA may be written
/// straight away (they are the process's own); the zero page and page-cache pages of a
/// private mapping stay read-only so that a write still faults and copies.
///
/// # Safety
/// The range rule (see `Machine`) for `[start, end)`, unless `flags` only grows its
/// protection.
pub(crate) unsafe fn change_protection(st: &mut State, start: usize, end: usize, flags: VmFlags) {
    let (dm, pgd, host) = (st.phys.direct_map(), st.mm.pgd, st.host);
    let phys = &st.phys;
    let mut batch = Batch::protecting(host);
    let mut tlb = crate::tlb::MmuGather::new();
    for_each_pte(dm, pgd, start, end, &mut |addr, slot| {
        let e = slot.get();
        if !pte_present(e) {
            return;
        }
        let n = pte_modify(e, flags, pte_may_write(phys, e, flags));
        if crate::tlb::pte_needs_flush(e, n) {
            tlb.adjust(addr, crate::page::PAGE_SIZE);
        }
        slot.set(n);
        // SAFETY: `n` was just written to the PTE of `addr` (the walk's slot for it), and
        // the walk changes no other entry of that page before the flush.
        unsafe { batch.push(addr, 0, pte_host_prot(n)) };
    });
    batch.flush();
    crate::tlb::tlb_finish_mmu(&mut st.phys, &mut st.mm.context, &tlb);
}

/// Whether present entry `e` may allow writes under a VMA with `flags`: a shared file page
/// only once dirtied since its last write-back (write-notify; shmem pages need no notice);
/// in a private mapping only the process's own anonymous page — not one it shares
/// copy-on-write, nor one in the swap cache, whose slot a write would make stale.
pub(crate) fn pte_may_write(phys: &PhysMem, e: u64, flags: VmFlags) -> bool {
    if pte_special(e) || flags & VM_WRITE == 0 {
        return false;
    }
    let p = phys.page(pte_pfn(e));
    if flags & VM_SHARED != 0 {
        !p.has(PG_FILE) || e & PTE_DIRTY != 0
    } else {
        // Nor a lazily freed one, whose next write must be seen (it makes the page dirty).
        p.has(PG_ANON) && p.mapcount.get() == 1 && !p.has(PG_SWAPCACHE | crate::page::PG_LAZYFREE)
    }
}

/// Make sure page tables exist for every page of `[start, end)`.
pub(crate) fn prealloc_page_tables(st: &mut State, start: usize, end: usize) -> Result<(), Errno> {
    let pgd = st.mm.pgd;
    let mut a = start;
    while a < end {
        pte_alloc(&mut st.phys, &mut st.mm.pgtables_bytes, pgd, a)?;
        a = (a | (crate::page_table::entry_span(1) - 1)) + 1;
    }
    Ok(())
}

/// Move the entries of `[old, old + len)` to `[new, new + len)` (`move_page_tables`): the
/// same frames, mapped at the new place with their protection; nothing is copied. Page
/// tables for the new range must already exist. The old host range becomes inaccessible.
/// The ranges may not overlap (mremap refuses that): a moved entry would be moved again.
///
/// # Safety
/// The range rule (see `Machine`) for `[old, old + len)`: its contents move away.
pub(crate) unsafe fn move_page_tables(st: &mut State, old: usize, new: usize, len: usize) {
    if new < old.saturating_add(len) && old < new.saturating_add(len) {
        crate::util::bug("move_page_tables: the ranges overlap", old, new);
    }
    let (dm, pgd, host) = (st.phys.direct_map(), st.mm.pgd, st.host);
    // Linux moves a PMD's worth at most at a time (`get_extent`): a whole aligned one by
    // its table (`move_normal_pmd`, then a flush of all 512 pages), otherwise the PTEs,
    // flushing the extent if any of them was present (`move_ptes`).
    const PMD: usize = 512 << crate::page::PAGE_SHIFT;
    let mut extent = old;
    while extent < old + len {
        let next = ((extent | (PMD - 1)) + 1).min(old + len);
        let new_at = new + (extent - old);
        let next = next.min(new_at.saturating_add(PMD - (new_at & (PMD - 1))) - new + old);
        let whole = next - extent == PMD && crate::page_table::pte_lookup(&st.phys, pgd, extent).is_some();
        let present = whole || {
            let mut p = false;
            for_each_pte(dm, pgd, extent, next, &mut |_, s| p |= pte_present(s.get()));
            p
        };
        if present {
            crate::tlb::flush_tlb_mm_range(&mut st.phys, &mut st.mm.context, extent, next);
        }
        extent = next;
    }
    let phys = &st.phys;
    let mut batch = Batch::mapping(host);
    let mut any = false;
    for_each_pte(dm, pgd, old, old + len, &mut |addr, slot| {
        let e = slot.get();
        slot.set(0);
        any = true;
        let target = new + (addr - old);
        match crate::page_table::pte_lookup(phys, pgd, target) {
            Some(t) => t.set(e),
            None => crate::util::bug("move_page_tables: no table at the target", target, addr),
        }
        if pte_present(e) {
            // SAFETY: `e` was just written to the PTE of `target` (pte_lookup's slot for
            // it), and the walk changes only entries of the old range, which does not
            // overlap the new one (checked above), so it stays until the flush.
            unsafe { batch.push(target, pte_pfn(e), pte_host_prot(e)) };
        }
    });
    batch.flush();
    if any {
        host.unmap(old, len);
    }
}

/// Resident pages of `[start, end)`, counted by `f(page_kind)`; used by the views.
pub(crate) fn count_ptes(
    st: &State,
    start: usize,
    end: usize,
    f: &mut dyn FnMut(u64, Option<&crate::page::Page>),
) {
    let (dm, pgd) = (st.phys.direct_map(), st.mm.pgd);
    for_each_pte(dm, pgd, start, end, &mut |_addr, slot| {
        let e = slot.get();
        if !pte_present(e) {
            return;
        }
        if pte_special(e) {
            f(e, None);
        } else {
            f(e, Some(st.phys.page(pte_pfn(e))));
        }
    });
}
