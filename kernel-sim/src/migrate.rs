//! Page migration (Linux's `mm/migrate.c`): moving a page's contents to another frame and
//! pointing every PTE that mapped it at the new one, so the old frame can be freed — what
//! compaction uses to empty a range of frames.
//!
//! The pages moved are those only page tables and the page cache hold (Linux's movable
//! pages of the common case): anonymous pages on an LRU list or mlocked
//! (`vm.compact_unevictable_allowed` is 1 by default), not in the swap cache nor lazily
//! freed, every reference a mapping; and page-cache pages of files and of shmem, mapped or
//! not, every reference but the cache's a mapping — their place in the file's index moves
//! with them (`folio_migrate_mapping`). Swap-cache, page-table and kernel pages stay where
//! they are.
//!
//! `migrate_page` follows `migrate_folio_unmap` / `migrate_folio_move`: first every view of
//! the page goes — the calling process's host mapping at once, the other processes'
//! through one shootdown — so no thread can write the old frame while it is copied; then
//! the bytes and the descriptor (flags, anon_vma and index, reference and map counts) move,
//! each PTE is rewritten with the new frame and its other bits kept (`remove_migration_pte`),
//! and the old frame is freed. The next touch of the page through any view faults and maps
//! the new frame (a minor fault, as after a TLB flush).

use crate::machine::State;
use crate::page::{
    Page, PAGE_SIZE, PG_ANON, PG_BUDDY, PG_FILE, PG_LAZYFREE, PG_LRU, PG_MLOCKED, PG_RADIX, PG_RESERVED,
    PG_SWAPBACKED, PG_SWAPCACHE,
};
use crate::page_table::pte_set_pfn;
use crate::tlb::TlbBatch;

/// Whether compaction may take the page to move it (`isolate_migratepages_block`'s tests
/// for the pages this simulation moves).
pub(crate) fn movable(page: &Page) -> bool {
    if page.has(PG_SWAPCACHE | PG_BUDDY | PG_RESERVED | PG_RADIX) || page.mapping.get() == 0 {
        return false;
    }
    if page.has(PG_ANON) {
        page.has(PG_LRU | PG_MLOCKED)
            && !page.has(PG_LAZYFREE)
            && page.mapcount.get() > 0
            && page.refcount.get() == page.mapcount.get()
    } else {
        page.has(PG_FILE | PG_SWAPBACKED) && page.refcount.get() == page.mapcount.get() + 1
    }
}

/// Move the isolated page `old` (off its LRU list, `movable`) into the isolated free frame
/// `new`. Returns false, with nothing changed, when its mappings cannot all be found (more
/// than the reverse map follows, or a count that does not match its PTEs): the caller puts
/// it back.
pub(crate) fn migrate_page(st: &mut State, old: usize, new: usize) -> bool {
    let hits = crate::rmap::find_mappings(st, old);
    let mapcount = st.phys.page(old).mapcount.get() as usize;
    let anon = st.phys.page(old).has(PG_ANON);
    if hits.overflow || hits.n != mapcount || (anon && hits.n == 0) {
        return false;
    }
    // Unmap: no view reaches the old frame once this is done. Compaction and CMA migrate
    // synchronously, so each PTE is cleared and flushed on its own (`try_to_migrate_one`'s
    // `ptep_clear_flush`, no deferred batch); other processes' host views drop the pages
    // in one round of signals.
    let mut batch = TlbBatch::new();
    for h in hits.hits[..hits.n].iter().flatten() {
        st.flush_tlb_task(h.task, h.addr, h.addr + PAGE_SIZE);
        if h.task == st.me {
            st.user_host.unmap(h.addr, PAGE_SIZE);
        } else {
            batch.add(h.task, h.addr);
        }
    }
    if !batch.is_empty() {
        batch.send_host(st);
    }
    // Move.
    // SAFETY: two distinct frames of the machine (`new` is an isolated free frame, `old` an
    // allocated one); no view reaches `old` any more (just unmapped and flushed), and
    // `new` is no one's until the PTEs below name it.
    unsafe { core::ptr::copy_nonoverlapping(st.phys.frame(old), st.phys.frame(new), PAGE_SIZE) };
    let (o, n) = (st.phys.page(old), st.phys.page(new));
    n.flags.set(o.flags.get() & !PG_LRU);
    n.refcount.set(o.refcount.get());
    n.mapcount.set(o.mapcount.get());
    n.mapping.set(o.mapping.get());
    n.index.set(o.index.get());
    for h in hits.hits[..hits.n].iter().flatten() {
        h.slot.set(pte_set_pfn(h.slot.get(), new));
    }
    if !anon {
        // SAFETY: a page-cache page's `mapping` is its inode, which the cache's reference
        // keeps alive (the machine lock is held).
        let inode = unsafe { &*(n.mapping.get() as *const crate::shmem::Inode) };
        crate::shmem::replace_page(&st.phys, inode, n.index.get() as usize, new);
    }
    st.phys.lru_putback(new);
    let o = st.phys.page(old);
    o.flags.set(0);
    o.mapcount.set(0);
    o.refcount.set(0);
    o.mapping.set(0);
    // SAFETY: no PTE maps the old frame (each was rewritten above) and no view reaches it
    // (unmapped and flushed before the copy); compaction does not run while a process's
    // view is stale.
    unsafe { st.phys.free_user_page(old) };
    st.phys.vmstat.pgmigrate_success += 1;
    true
}
