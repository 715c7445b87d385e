//! Page reclaim (Linux's `mm/vmscan.c`, the classic two-list LRU without MGLRU).
//!
//! When an allocation finds the free pages of a zone below its low watermark it wakes
//! kswapd, which here runs as soon as the machine lock is let go (`Guard::drop`): it
//! reclaims until the zone is above its high watermark again (`balance_pgdat`). A fault
//! that finds free memory below the min watermark (with room for what it may allocate)
//! reclaims first itself (direct reclaim, `try_to_free_pages`); only when that frees
//! nothing does the fault fail, and the OOM killer runs.
//!
//! Each pass (`shrink_node`) scans each list by `size >> priority`, priority going from 12
//! down to 0, splitting the scan between anonymous and file pages by `vm.swappiness`
//! (anonymous pages only with swap space free: `get_scan_count` with equal costs).
//! - `shrink_active_list` moves pages from the tail of an active list to the inactive one
//!   when the inactive list is too short for its size (`inactive_is_low`), keeping
//!   accessed pages of executable file mappings active;
//! - `shrink_inactive_list` takes up to 32 pages from the tail of an inactive list and for
//!   each (`shrink_folio_list`): accessed through two PTEs, or again after being kept once
//!   (`PG_referenced`), it is activated; accessed once, it is kept on the inactive list
//!   with `PG_referenced`; otherwise it goes — an anonymous page into the swap cache, every
//!   PTE made a swap entry, the other processes' views flushed (`tlb`), written to its slot
//!   and freed; a page-cache page unmapped, written back if dirty, dropped from its file.
//!
//! Pages of `VM_LOCKED` mappings are never taken (`PG_MLOCKED`, off the lists).

use crate::buddy::{MAX_NR_ZONES, WMARK_HIGH, WMARK_MIN};
use crate::machine::State;
use crate::page::{PG_ANON, PG_DIRTY, PG_FILE, PG_LRU, PG_REFERENCED, PG_SWAPCACHE};
use crate::swap::{LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE};
use crate::tlb::TlbBatch;

pub const SWAP_CLUSTER_MAX: usize = 32;
const DEF_PRIORITY: u32 = 12;
/// Pages a fault must be able to allocate (its page and page tables; read-around and
/// swap read-ahead give up quietly when short): below the min watermark plus these, it
/// reclaims directly first.
const FAULT_RESERVE: usize = 4;

struct ScanControl {
    nr_to_reclaim: usize,
    nr_reclaimed: usize,
    priority: u32,
    kswapd: bool,
}

/// The zone user pages come from first: the highest populated one.
fn user_zone(st: &State) -> usize {
    (0..MAX_NR_ZONES).rev().find(|&z| st.phys.zones[z].populated()).unwrap_or(0)
}

pub(crate) fn zone_ok(st: &State, mark: usize, extra: usize) -> bool {
    let z = user_zone(st);
    let m = st.phys.zones[z].watermark[mark] + extra;
    st.phys.zone_watermark_ok(z, 0, m, z)
}

fn can_reclaim_anon(st: &State) -> bool {
    st.phys.swap.active() && st.phys.swap.free_pages() > 0
}

/// How many pages of each list this pass scans (`get_scan_count`).
fn get_scan_count(st: &State, sc: &ScanControl) -> [usize; 4] {
    let sizes = st.phys.lru_sizes();
    let swappiness = st.phys.swap.swappiness;
    // (anon, file) shares.
    let (ap, fp) = if !can_reclaim_anon(st) {
        (0, 1)
    } else if sc.priority == 0 && swappiness != 0 {
        (1, 1)
    } else if sizes[LRU_INACTIVE_FILE] + sizes[LRU_ACTIVE_FILE] + st.phys.nr_free_pages()
        <= st.phys.zones[user_zone(st)].watermark[WMARK_HIGH]
        && sizes[LRU_INACTIVE_ANON] >> sc.priority != 0
    {
        // The page cache is tiny: anonymous pages only (`file_is_tiny`).
        (1, 0)
    } else {
        (swappiness, 200 - swappiness)
    };
    let denominator = (ap + fp).max(1);
    core::array::from_fn(|lru| {
        let scan = sizes[lru] >> sc.priority;
        let share = if lru < LRU_INACTIVE_FILE { ap } else { fp };
        (scan * share).div_ceil(denominator)
    })
}

/// Whether the inactive list `inactive` is short for its kind (`inactive_is_low`): the
/// ratio grows with the square root of the memory on both lists, 1:1 below 1 GiB.
fn inactive_is_low(st: &State, inactive: usize) -> bool {
    let sizes = st.phys.lru_sizes();
    let (i, a) = (sizes[inactive], sizes[inactive + 1]);
    let gb = (i + a) >> (30 - crate::page::PAGE_SHIFT);
    let ratio = if gb != 0 { ((10 * gb) as f64).sqrt() as usize } else { 1 };
    i * ratio < a
}

/// Age up to `nr` pages from the tail of active list `lru` (`shrink_active_list`).
fn shrink_active_list(st: &mut State, lru: usize, nr: usize) {
    let mut pfn = st.phys.lru[lru].tail;
    for _ in 0..nr {
        if pfn == crate::page::NIL {
            break;
        }
        let cur = pfn as usize;
        pfn = st.phys.page(cur).prev.get();
        st.phys.vmstat.pgrefill += 1;
        let (referenced, flags) = crate::rmap::folio_referenced(st, cur);
        let file = st.phys.page(cur).has(PG_FILE);
        let keep = referenced != 0 && file && flags & crate::mm::VM_EXEC != 0;
        st.phys.lru_move_head(cur, keep);
    }
}

#[derive(PartialEq, Eq)]
enum Verdict {
    Activate,
    Keep,
    Reclaim,
}

/// `folio_check_references`.
fn check_references(st: &mut State, pfn: usize) -> Verdict {
    let (ptes, flags) = crate::rmap::folio_referenced(st, pfn);
    let p = st.phys.page(pfn);
    let referenced_page = p.has(PG_REFERENCED);
    p.clear(PG_REFERENCED);
    if ptes > 0 {
        p.set(PG_REFERENCED);
        if referenced_page || ptes > 1 || (p.has(PG_FILE) && flags & crate::mm::VM_EXEC != 0) {
            return Verdict::Activate;
        }
        return Verdict::Keep;
    }
    Verdict::Reclaim
}

/// Put an isolated page back on its list, active or not (`folio_putback_lru`).
fn putback(st: &mut State, pfn: usize, active: bool) {
    if st.phys.page(pfn).has(PG_LRU) {
        return;
    }
    st.phys.lru_add(pfn);
    if active {
        st.phys.lru_move_head(pfn, true);
    }
}

/// Reclaim up to `nr` pages from the tail of inactive list `lru`
/// (`shrink_inactive_list` and `shrink_folio_list`). Returns the pages freed.
fn shrink_inactive_list(st: &mut State, sc: &mut ScanControl, lru: usize, nr: usize) -> usize {
    let mut isolated = [0usize; SWAP_CLUSTER_MAX];
    let mut n = 0;
    while n < nr.min(SWAP_CLUSTER_MAX) {
        let tail = st.phys.lru[lru].tail;
        if tail == crate::page::NIL {
            break;
        }
        st.phys.lru_del(tail as usize);
        isolated[n] = tail as usize;
        n += 1;
    }
    if sc.kswapd {
        st.phys.vmstat.pgscan_kswapd += n as u64;
    } else {
        st.phys.vmstat.pgscan_direct += n as u64;
    }
    let freed = shrink_folio_list(st, &isolated[..n], false);
    if sc.kswapd {
        st.phys.vmstat.pgsteal_kswapd += freed as u64;
    } else {
        st.phys.vmstat.pgsteal_direct += freed as u64;
    }
    sc.nr_reclaimed += freed;
    freed
}

/// Decide, unmap, write out and free isolated pages (`shrink_folio_list`); with
/// `ignore_references` (`MADV_PAGEOUT`'s `reclaim_pages`) every page is taken whatever its
/// use. Pages kept go back on their lists. Returns the pages freed.
fn shrink_folio_list(st: &mut State, isolated: &[usize], ignore_references: bool) -> usize {
    let n = isolated.len().min(SWAP_CLUSTER_MAX);
    // First every page's fate and its unmapping, then one flush of the other processes'
    // views, then the writes and frees that rely on it.
    let mut batch = TlbBatch::new();
    let mut go = [false; SWAP_CLUSTER_MAX];
    for i in 0..n {
        let pfn = isolated[i];
        let verdict = if ignore_references { Verdict::Reclaim } else { check_references(st, pfn) };
        match verdict {
            Verdict::Activate => {
                putback(st, pfn, true);
                continue;
            }
            Verdict::Keep => {
                putback(st, pfn, false);
                continue;
            }
            Verdict::Reclaim => {}
        }
        let p = st.phys.page(pfn);
        if p.has(PG_ANON) && !p.has(PG_SWAPCACHE | crate::page::PG_LAZYFREE) {
            let Some(slot) = st.phys.swap.get_swap_slot() else {
                putback(st, pfn, true);
                continue;
            };
            st.phys.add_to_swap_cache(pfn, slot);
            st.phys.page(pfn).set(PG_DIRTY);
        }
        if st.phys.page(pfn).mapcount.get() != 0 && !crate::rmap::try_to_unmap(st, pfn, &mut batch) {
            if crate::rmap::mapped_in_locked_vma(st, pfn) {
                // A locked mapping holds it: off the lists (Linux's cull to unevictable).
                st.phys.set_mlocked(pfn, true);
            } else {
                putback(st, pfn, true);
            }
            continue;
        }
        go[i] = true;
    }
    if !batch.is_empty() {
        // One batched flush (`try_to_unmap_flush`): the whole TLB here, one IPI round to
        // the other processes' CPUs.
        batch.flush(st);
    }
    // A process whose view is stale (a truncation took pages from it) may still reach
    // pages no PTE maps: frees wait until it has rebuilt its view.
    let stale = st.tasks.iter().any(|t| t.stale);
    st.phys.defer_user_frees |= stale;
    let mut freed = 0;
    for i in 0..n {
        if !go[i] {
            continue;
        }
        let pfn = isolated[i];
        if reclaim_page(st, pfn) {
            freed += 1;
        } else {
            putback(st, pfn, true);
        }
    }
    if stale {
        st.phys.defer_user_frees = false;
        st.free_deferred_if_settled();
    }
    freed
}

/// `MADV_COLD` and `MADV_PAGEOUT` over `[start, end)` of the running process
/// (`madvise_cold_or_pageout_pte_range`): each page mapped there and by no other mapping has
/// its accessed bit and `PG_referenced` cleared and goes to its inactive list; with
/// `pageout` it is reclaimed at once (`reclaim_pages`: swapped out, or written back and
/// dropped). Pages shared with other mappings are left alone, as Linux leaves them.
pub(crate) fn madvise_cold_or_pageout(st: &mut State, start: usize, end: usize, pageout: bool) {
    let pgd = st.mm.pgd;
    let mut addr = start;
    let mut batch = [0usize; SWAP_CLUSTER_MAX];
    let mut n = 0;
    let mut tlb = crate::tlb::MmuGather::new();
    while addr < end {
        let a = addr;
        addr += crate::page::PAGE_SIZE;
        let Some(slot) = crate::page_table::pte_lookup(&st.phys, pgd, a) else { continue };
        let e = slot.get();
        if !crate::page_table::pte_present(e) || crate::page_table::pte_special(e) {
            continue;
        }
        let pfn = crate::page_table::pte_pfn(e);
        let p = st.phys.page(pfn);
        if p.mapcount.get() != 1 || !p.has(PG_LRU) || !crate::swap::page_evictable(p) {
            continue;
        }
        if e & crate::page_table::PTE_ACCESSED != 0 {
            slot.set(e & !crate::page_table::PTE_ACCESSED);
            // Only MADV_COLD gathers it; pageout's own unmapping flushes.
            if !pageout {
                tlb.adjust(a, crate::page::PAGE_SIZE);
            }
            // SAFETY: PROT_NONE allows less than any PTE (the re-arm of `rmap`).
            unsafe { st.user_host.protect(a, crate::page::PAGE_SIZE, libc::PROT_NONE) };
        }
        st.phys.page(pfn).clear(PG_REFERENCED);
        if !pageout {
            // folio_deactivate: only an active page moves.
            if st.phys.page(pfn).has(crate::page::PG_ACTIVE) {
                st.phys.lru_move_head(pfn, false);
            }
            continue;
        }
        st.phys.lru_del(pfn);
        batch[n] = pfn;
        n += 1;
        if n == SWAP_CLUSTER_MAX {
            shrink_folio_list(st, &batch[..n], true);
            n = 0;
        }
    }
    crate::tlb::tlb_finish_mmu(&mut st.phys, &mut st.mm.context, &tlb);
    if n > 0 {
        shrink_folio_list(st, &batch[..n], true);
    }
}

/// Write out and free page `pfn`, unmapped everywhere (`pageout` and `__remove_mapping`).
/// False if it must stay (a write failed, or it is mapped again).
fn reclaim_page(st: &mut State, pfn: usize) -> bool {
    let p = st.phys.page(pfn);
    if p.mapcount.get() != 0 {
        return false;
    }
    if p.has(PG_SWAPCACHE) {
        if p.has(PG_DIRTY) && st.phys.swap_writepage(pfn).is_err() {
            return false;
        }
        if st.phys.delete_from_swap_cache(pfn) != 0 {
            crate::util::bug("reclaim: a swap-cache page with other references", pfn, 0);
        }
        // SAFETY: no PTE maps the page (checked), every view of it is flushed (the calling
        // process's by try_to_unmap, the others' by the batch before this), and the swap
        // entries that named it now find its bytes in its slot.
        unsafe { st.phys.free_user_page(pfn) };
        return true;
    }
    if p.has(PG_ANON) && p.has(crate::page::PG_LAZYFREE) {
        if p.has(PG_DIRTY) {
            return false;
        }
        // SAFETY: unmapped everywhere (checked) and every view flushed, as above; its bytes
        // were given up with MADV_FREE and not written since.
        unsafe { st.phys.free_user_page(pfn) };
        st.phys.vmstat.pglazyfreed += 1;
        return true;
    }
    if !p.has(PG_FILE) || p.mapping.get() == 0 {
        return false;
    }
    // SAFETY: a page-cache page points at its inode, which lives while it has pages.
    let inode: crate::shmem::InodePtr = unsafe { crate::kptr::KPtr::from_addr(p.mapping.get()) };
    if !inode.is_host() {
        // Nothing to read it back from (the boot image's inode).
        return false;
    }
    let index = p.index.get() as usize;
    if p.has(PG_DIRTY)
        && crate::page_writeback::write_dirty_pages(&mut st.phys, &inode, index, index + 1).is_err()
    {
        return false;
    }
    // SAFETY: no PTE maps the page and no view reaches it (as above); it is clean, so a
    // later fault reads the file's bytes again.
    unsafe { crate::shmem::truncate_range(&mut st.phys, &inode, index, index + 1) };
    true
}

/// One pass over the lists at `sc.priority` (`shrink_node` → `shrink_lruvec`).
fn shrink_node(st: &mut State, sc: &mut ScanControl) {
    let mut nr = get_scan_count(st, sc);
    let target = sc.nr_reclaimed + sc.nr_to_reclaim;
    while nr[LRU_INACTIVE_ANON] + nr[LRU_ACTIVE_FILE] + nr[LRU_INACTIVE_FILE] != 0 {
        for lru in [LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE] {
            let scan = nr[lru].min(SWAP_CLUSTER_MAX);
            if scan == 0 {
                continue;
            }
            nr[lru] -= scan;
            if lru == LRU_ACTIVE_ANON || lru == LRU_ACTIVE_FILE {
                if inactive_is_low(st, lru - 1) {
                    shrink_active_list(st, lru, scan);
                }
            } else {
                shrink_inactive_list(st, sc, lru, scan);
            }
        }
        if sc.nr_reclaimed >= target {
            break;
        }
    }
    // Keep the anonymous lists aged even when only the file lists were scanned.
    if can_reclaim_anon(st) && inactive_is_low(st, LRU_INACTIVE_ANON) {
        shrink_active_list(st, LRU_ACTIVE_ANON, SWAP_CLUSTER_MAX);
    }
}

/// kswapd's run (`balance_pgdat`): reclaim until the user zone is above its high
/// watermark, or nothing more can be had.
pub(crate) fn kswapd(st: &mut State) {
    st.phys.kswapd_woken = false;
    st.phys.vmstat.pageoutrun += 1;
    let mut sc = ScanControl { nr_to_reclaim: 0, nr_reclaimed: 0, priority: DEF_PRIORITY, kswapd: true };
    loop {
        if zone_ok(st, WMARK_HIGH, 0) {
            break;
        }
        let z = user_zone(st);
        let want = st.phys.zones[z].watermark[WMARK_HIGH].saturating_sub(st.phys.zones[z].free_pages);
        sc.nr_to_reclaim = want.max(SWAP_CLUSTER_MAX);
        let before = sc.nr_reclaimed;
        shrink_node(st, &mut sc);
        if sc.nr_reclaimed == before {
            if sc.priority == 0 {
                break;
            }
            sc.priority -= 1;
        }
    }
    // Its own allocations (page tables of swapped-in neighbours aside) do not wake it again.
    st.phys.kswapd_woken = false;
    st.free_deferred_if_settled();
}

/// Direct reclaim (`try_to_free_pages`): up to 32 pages, lowering the priority until they
/// are found. Returns the pages freed.
pub(crate) fn try_to_free_pages(st: &mut State) -> usize {
    st.phys.vmstat.allocstall += 1;
    let mut sc = ScanControl {
        nr_to_reclaim: SWAP_CLUSTER_MAX,
        nr_reclaimed: 0,
        priority: DEF_PRIORITY,
        kswapd: false,
    };
    loop {
        shrink_node(st, &mut sc);
        if sc.nr_reclaimed >= SWAP_CLUSTER_MAX || sc.priority == 0 {
            break;
        }
        sc.priority -= 1;
    }
    sc.nr_reclaimed
}

/// Before a fault or a system call allocates: while free memory is below the min watermark plus what the
/// fault may take, reclaim directly. Stops when reclaim frees nothing (the allocation may
/// then fail, and the fault with it).
pub(crate) fn reclaim_before_alloc(st: &mut State) {
    reclaim_for(st, FAULT_RESERVE);
}

/// As `reclaim_before_alloc`, for a call that will allocate up to `pages` pages.
pub(crate) fn reclaim_for(st: &mut State, pages: usize) {
    if st.phys.reclaim_disabled || zone_ok(st, WMARK_MIN, pages) {
        return;
    }
    crate::kstack::on_kernel_stack(st, &mut |st| {
        while !zone_ok(st, WMARK_MIN, pages) {
            if try_to_free_pages(st) == 0 {
                break;
            }
        }
        0
    });
}
